//! Reading the environment: defaults, errors naming the variable, and the
//! Node.js Paastis's variables.

use std::collections::HashMap;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = env_from_map(&map);
    Config::from_env(&Env::new(&get))
}

#[test]
fn defaults_with_a_token() {
    let c = config(&[("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc")]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(c.scalingo.auth_url.as_str(), "https://auth.scalingo.com/");
    assert_eq!(c.wake_timeout, Duration::from_secs(60));
    assert_eq!(c.pause_after_429, Duration::from_secs(60));
    assert_eq!(c.registry, RegistryKind::InMemory);
    assert!(c.ignored_apps.is_empty());
}

#[test]
fn token_is_required_and_never_printed() {
    let e = config(&[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "PROVIDER_SCALINGO_API_TOKEN: is required (a Scalingo API token, tk-us-...)"
    );
    let c = config(&[("SCALINGO_API_TOKEN", "tk-us-secret-value")]).unwrap();
    assert!(!format!("{c:?}").contains("secret-value"));
}

#[test]
fn env_errors_name_the_variable() {
    let base = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");
    let cases = [
        ("PAASTIS_LISTEN", "nowhere", "PAASTIS_LISTEN:"),
        (
            "REGISTRY_IGNORED_APPS",
            "good-app,Bad_App",
            "REGISTRY_IGNORED_APPS: \"Bad_App\"",
        ),
        ("REGISTRY_TYPE", "mongo", "REGISTRY_TYPE:"),
        ("REGISTRY_TYPE", "redis", "REGISTRY_REDIS_URL: is required"),
        (
            "PAASTIS_SCHEDULER_INTERVAL",
            "0",
            "PAASTIS_SCHEDULER_INTERVAL:",
        ),
        (
            "PAASTIS_SCALINGO_CALLS_PER_MINUTE",
            "0",
            "PAASTIS_SCALINGO_CALLS_PER_MINUTE:",
        ),
        (
            "PAASTIS_ADMIN_TOKEN",
            "short",
            "PAASTIS_ADMIN_TOKEN: must be",
        ),
        ("PAASTIS_LOG_FORMAT", "xml", "PAASTIS_LOG_FORMAT:"),
        ("HOOKS_TIMEOUT", "0", "HOOKS_TIMEOUT:"),
        (
            "START_AND_STOP_MAX_IDLE_TIME",
            "soon",
            "START_AND_STOP_MAX_IDLE_TIME:",
        ),
        ("PAASTIS_WAKE_TIMEOUT", "0", "PAASTIS_WAKE_TIMEOUT:"),
        (
            "PAASTIS_DEFAULT_STRATEGY",
            "waiting-page",
            "PAASTIS_DEFAULT_STRATEGY: \"waiting-page\" is not a strategy",
        ),
        (
            "PROVIDER_SCALINGO_AUTH_URL",
            "ftp://x",
            "PROVIDER_SCALINGO_AUTH_URL:",
        ),
        (
            "PAASTIS_SCALINGO_PAUSE_AFTER_429",
            "301",
            "PAASTIS_SCALINGO_PAUSE_AFTER_429:",
        ),
        (
            "PROVIDER_SCALINGO_REGIONS",
            "osc-fr1,OSC",
            "PROVIDER_SCALINGO_REGIONS:",
        ),
        (
            "PAASTIS_RULES_FILE",
            "/nonexistent/paastis.yml",
            "/nonexistent/paastis.yml: cannot read",
        ),
    ];
    for (name, value, expected) in cases {
        let e = config(&[base, (name, value)]).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{name}={value}: {e}");
    }
}

#[test]
fn strategy_from_the_rules_and_the_environment() {
    let text = "rules:\n  - pattern: '^shop-'\n    strategy: waiting_page\n  - pattern: '-api$'\n    strategy: blocking\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paastis.yml");
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    let token = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");
    let c = config(&[token, ("PAASTIS_RULES_FILE", file)]).unwrap();
    assert_eq!(c.rules.default_strategy(), Strategy::Blocking);
    let strategy = |c: &Config, app: &str| c.rules.resolve(app).unwrap().strategy;
    assert_eq!(strategy(&c, "shop-front"), Strategy::WaitingPage);
    assert_eq!(strategy(&c, "shop-api"), Strategy::Blocking);
    assert_eq!(strategy(&c, "blog-app"), Strategy::Blocking);
    let c = config(&[
        token,
        ("PAASTIS_RULES_FILE", file),
        ("PAASTIS_DEFAULT_STRATEGY", "waiting_page"),
    ])
    .unwrap();
    assert_eq!(strategy(&c, "blog-app"), Strategy::WaitingPage);
    assert_eq!(strategy(&c, "shop-api"), Strategy::Blocking);
    // Without a rules file too.
    let c = config(&[token, ("PAASTIS_DEFAULT_STRATEGY", "waiting_page")]).unwrap();
    assert_eq!(strategy(&c, "blog-app"), Strategy::WaitingPage);
}

const TOKEN: (&str, &str) = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");

#[test]
fn managed_apps_and_dry_run() {
    let c = config(&[TOKEN]).unwrap();
    assert_eq!(c.managed_apps.pattern(), None, "every app by default");
    assert!(!c.dry_run);
    let c = config(&[
        TOKEN,
        ("PAASTIS_MANAGED_APPS", "review-.*|.*-staging"),
        ("REGISTRY_IGNORED_APPS", "review-keep"),
        ("PAASTIS_DRY_RUN", "true"),
    ])
    .unwrap();
    assert!(c.dry_run);
    let scope = c.scope();
    assert!(scope.is_managed("review-pr7"));
    assert!(scope.is_managed("shop-staging"));
    assert_eq!(scope.unmanaged("shop-prod"), Some(Unmanaged::NotMatching));
    assert_eq!(scope.unmanaged("review-keep"), Some(Unmanaged::Ignored));

    let e = config(&[TOKEN, ("PAASTIS_MANAGED_APPS", "review-(")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("PAASTIS_MANAGED_APPS: \"review-(\" is not a regular expression"),
        "{e}"
    );
    let e = config(&[TOKEN, ("PAASTIS_DRY_RUN", "maybe")])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "PAASTIS_DRY_RUN: \"maybe\" is not true or false");
}

#[test]
fn a_too_short_ignored_name_is_a_warning_not_a_refusal() {
    let c = config(&[TOKEN, ("REGISTRY_IGNORED_APPS", "paastis-gw,api,db")]).unwrap();
    assert_eq!(
        c.ignored_apps.iter().collect::<Vec<_>>(),
        ["paastis-gw"],
        "the valid name is still ignored"
    );
    assert_eq!(
        c.warnings,
        [
            "REGISTRY_IGNORED_APPS: \"api\" cannot be a Scalingo app name (at least 6 characters): it ignores no app",
            "REGISTRY_IGNORED_APPS: \"db\" cannot be a Scalingo app name (at least 6 characters): it ignores no app",
        ]
    );
}

#[test]
fn paastis_cron_sets_the_pass_schedule() {
    let c = config(&[TOKEN]).unwrap();
    assert!(matches!(c.scheduler_schedule, PassSchedule::Every(d) if d == Duration::from_secs(60)));
    let c = config(&[
        TOKEN,
        ("START_AND_STOP_CHECKING_INTERVAL_CRON", "*/5 * * * *"),
    ])
    .unwrap();
    match &c.scheduler_schedule {
        PassSchedule::Cron(cron) => assert_eq!(cron.expr(), "*/5 * * * *"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.scheduler_interval, Duration::from_secs(300));

    let e = config(&[
        TOKEN,
        ("START_AND_STOP_CHECKING_INTERVAL_CRON", "every 5 min"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "START_AND_STOP_CHECKING_INTERVAL_CRON: \"every 5 min\" is not a cron expression"
        ),
        "{e}"
    );
    let e = config(&[
        TOKEN,
        ("START_AND_STOP_CHECKING_INTERVAL_CRON", "* * * * *"),
        ("PAASTIS_SCHEDULER_INTERVAL", "60"),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "START_AND_STOP_CHECKING_INTERVAL_CRON: and PAASTIS_SCHEDULER_INTERVAL are both set: keep one"
    );
}

#[test]
fn paastis_variables_are_honoured_refused_or_reported() {
    let c = config(&[
        ("SCALINGO_API_TOKEN", "tk-us-abc"),
        ("PROVIDER_NAME", "scalingo"),
        ("PROVIDER_REGION", "osc-fr1"),
        ("SCALINGO_OPERATION_TIMEOUT", "45"),
        ("REGISTRY_TYPE", "redis"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("ROUTING_SYSTEM_API_ENABLED", "true"),
        ("ROUTING_SYSTEM_API_TOKEN", "abcd-1234-efgh"),
        ("PORT", "3000"),
    ])
    .unwrap();
    assert_eq!(c.regions_var, "PROVIDER_REGION");
    assert_eq!(c.scalingo.regions, Some(vec!["osc-fr1".to_owned()]));
    assert_eq!(c.wake_timeout, Duration::from_secs(45));
    assert!(matches!(c.registry, RegistryKind::Redis { .. }));
    let ignored: Vec<&str> = c.ignored_vars.iter().map(|v| v.name).collect();
    assert_eq!(
        ignored,
        [
            "ROUTING_SYSTEM_API_ENABLED",
            "ROUTING_SYSTEM_API_TOKEN",
            "PORT"
        ]
    );

    let e = config(&[TOKEN, ("PROVIDER_NAME", "heroku")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("PROVIDER_NAME: \"heroku\" is not supported: only scalingo is supported"),
        "{e}"
    );
}

#[test]
fn blank_tokens_are_refused_not_read_as_off() {
    let base = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");
    for name in ["PAASTIS_ADMIN_TOKEN", "PAASTIS_SIDECAR_TOKEN"] {
        for blank in ["", "   ", "\t"] {
            let e = config(&[base, (name, blank)]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{name}: is set but blank")), "{e}");
        }
    }
}

#[test]
fn the_sidecar_token_is_checked_and_never_printed() {
    let base = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");
    let e = config(&[base, ("PAASTIS_SIDECAR_TOKEN", "short-secret")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("PAASTIS_SIDECAR_TOKEN: must be"), "{e}");
    assert!(!e.contains("short-secret"), "{e}");
    let c = config(&[base, ("PAASTIS_SIDECAR_TOKEN", "0123456789abcdef-sidecar")]).unwrap();
    assert_eq!(
        c.sidecar_token.as_ref().map(Secret::expose),
        Some("0123456789abcdef-sidecar")
    );
    assert!(!format!("{c:?}").contains("0123456789abcdef-sidecar"));
}

#[test]
fn a_non_loopback_listen_needs_the_sidecar_token() {
    let base = ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-abc");
    for addr in ["0.0.0.0:7070", "10.1.2.3:7070", "[::]:7070"] {
        let e = config(&[base, ("PAASTIS_LISTEN", addr)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("PAASTIS_LISTEN:"), "{e}");
        assert!(e.contains("PAASTIS_SIDECAR_TOKEN"), "{e}");
        let ok = config(&[
            base,
            ("PAASTIS_LISTEN", addr),
            ("PAASTIS_SIDECAR_TOKEN", "0123456789abcdef-sidecar"),
        ]);
        assert!(ok.is_ok(), "{addr}");
    }
    for addr in ["127.0.0.1:7070", "[::1]:7070", "127.0.0.2:0"] {
        assert!(config(&[base, ("PAASTIS_LISTEN", addr)]).is_ok(), "{addr}");
    }
}

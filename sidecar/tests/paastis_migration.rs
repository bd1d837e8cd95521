//! Moving from the Node.js Paastis: the binary run in a directory holding a
//! Paastis-style `.env` and `paastis.yml` (written here after the variables
//! and rules Paastis documents), then `check-config --apps` and the start's
//! region check against the fake Scalingo.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use paastis_e2e::fake::FakeApp;
use paastis_e2e::harness::sidecar_bin;
use paastis_e2e::setup::fake_with;

/// A `.env` as a Paastis user on Scalingo wrote it: every variable of
/// Paastis's documentation that such a user would set.
const PAASTIS_ENV: &str = r#"# Paastis configuration
HOST=0.0.0.0
PORT=3000
PROVIDER_NAME=scalingo
PROVIDER_REGION=osc-fr1
PROVIDER_SCALINGO_API_TOKEN=tk-us-migrating-secret-token
PROVIDER_SCALINGO_OPERATION_TIMEOUT=40
REGISTRY_TYPE=in-memory
REGISTRY_REDIS_URL=redis://127.0.0.1:6379
REGISTRY_IGNORED_APPS=paastis-engine,api
START_AND_STOP_CHECKING_INTERVAL_CRON="*/5 * * * *"
START_AND_STOP_MAX_IDLE_TIME=20
ROUTING_SYSTEM_API_ENABLED=true
ROUTING_SYSTEM_API_TOKEN=system-api-secret-token
HOOKS_BEFORE_START=echo waking
EVENTS_STORE_TYPE=in-memory
"#;

/// Rules in Paastis's `paastis.yml` shape: review apps woken with their
/// front, a renamed app, apps never paused.
const PAASTIS_RULES: &str = r#"rules:
  - pattern: 'shop-review-pr(\d+)-(back|front)'
    linked_apps:
      - 'shop-review-pr$1-front'
  - pattern: 'legacy-blog'
    app_name: 'blog-v2-app'
  - pattern: '.*-always-on'
    app_max_idle_time: 0
"#;

fn paastis_dir(env: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), env).unwrap();
    std::fs::write(dir.path().join("paastis.yml"), PAASTIS_RULES).unwrap();
    dir
}

fn sidecar(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(sidecar_bin())
        .env_clear()
        .envs(vars.iter().copied())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the sidecar binary runs (make build)")
}

/// [`sidecar`] off the runtime's threads (the fake is served on them).
async fn sidecar_off_runtime(dir: &Path, args: &[&'static str], vars: &[(&str, &str)]) -> Output {
    let dir = dir.to_owned();
    let args = args.to_vec();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sidecar(&dir, &args, &vars)
    })
    .await
    .expect("the sidecar ran")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_paastis_env_and_rules_pass_check_config_with_each_variable_accounted_for() {
    let dir = paastis_dir(PAASTIS_ENV);
    let out = sidecar(
        dir.path(),
        &["check-config", "shop-review-pr7-back.example.com"],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "configuration: ok",
        "environment file   .env",
        "regions            osc-fr1",
        // The cron expression drives the scheduler: every 5 minutes.
        "scheduler          at cron \"*/5 * * * *\"",
        "ignored apps       paastis-engine",
        "rules: 3 from paastis.yml",
        // A name too short to be an app: a warning, not a refusal.
        "warnings:\n  REGISTRY_IGNORED_APPS: \"api\" cannot be a Scalingo app name",
        "ignored (Paastis variables with no effect here):",
        "  ROUTING_SYSTEM_API_ENABLED: ",
        "  ROUTING_SYSTEM_API_TOKEN: ",
        "  HOST: ",
        "  PORT: ",
        "  EVENTS_STORE_TYPE: ",
        "  REGISTRY_REDIS_URL: REGISTRY_TYPE is in-memory",
        "app shop-review-pr7-back, region found by listing the regions, wakes with [shop-review-pr7-front], paused after 20 min idle",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }
    assert!(!stdout.contains("secret-token"), "{stdout}");

    // The process environment wins over the file.
    let out = sidecar(
        dir.path(),
        &["check-config"],
        &[("START_AND_STOP_CHECKING_INTERVAL_CRON", "0 * * * *")],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("at cron \"0 * * * *\""), "{stdout}");
}

#[test]
fn another_provider_or_a_region_that_does_not_exist_is_refused() {
    let cases = [
        (
            "PROVIDER_NAME=scalingo",
            "PROVIDER_NAME=clever-cloud",
            "invalid configuration: PROVIDER_NAME: \"clever-cloud\" is not supported: only scalingo is supported",
        ),
        (
            "PROVIDER_REGION=osc-fr1",
            "PROVIDER_REGION=osc-fr-1",
            "invalid configuration: PROVIDER_REGION: \"osc-fr-1\" is not a Scalingo region (did you mean \"osc-fr1\"?); known regions: osc-fr1, osc-secnum-fr1",
        ),
        (
            "START_AND_STOP_CHECKING_INTERVAL_CRON=\"*/5 * * * *\"",
            "START_AND_STOP_CHECKING_INTERVAL_CRON=\"every 5 minutes\"",
            "invalid configuration: START_AND_STOP_CHECKING_INTERVAL_CRON: \"every 5 minutes\" is not a cron expression",
        ),
    ];
    for (line, replacement, expected) in cases {
        let dir = paastis_dir(&PAASTIS_ENV.replace(line, replacement));
        let out = sidecar(dir.path(), &["check-config"], &[]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(64), "{replacement}: {stdout}");
        assert!(stderr.starts_with(expected), "{replacement}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_unknown_to_scalingo_is_refused_at_start_with_the_names_that_exist() {
    let fake = fake_with(Vec::new(), Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = sidecar_off_runtime(
        dir.path(),
        &[],
        &[
            ("PROVIDER_SCALINGO_API_TOKEN", &fake.config().api_token),
            ("PROVIDER_SCALINGO_AUTH_URL", &fake.auth_url()),
            ("PROVIDER_REGION", "osc-fr-1"),
            ("PAASTIS_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("invalid configuration: PROVIDER_REGION: \"osc-fr-1\" is not a Scalingo region (did you mean \"osc-fr1\"?); Scalingo lists: osc-fr1, osc-secnum-fr1"),
        "{stderr}"
    );
    assert!(!stdout.contains("listening on"), "nothing bound: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_apps_lists_every_app_managed_or_not_and_why() {
    let fake = fake_with(
        vec![
            FakeApp::web("shop-review-pr7-back", "osc-fr1", 1),
            FakeApp::web("shop-review-pr7-front", "osc-fr1", 0),
            FakeApp::web("shop-always-on", "osc-fr1", 1),
            FakeApp::web("paastis-engine", "osc-fr1", 1),
            FakeApp::web("billing-prod", "osc-secnum-fr1", 2),
        ],
        Duration::from_millis(10),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("paastis.yml"),
        format!("{PAASTIS_RULES}  - pattern: '^shop-review-'\n    strategy: waiting_page\n"),
    )
    .unwrap();
    let token = fake.config().api_token.clone();
    let auth = fake.auth_url();
    let base = [
        ("PROVIDER_SCALINGO_API_TOKEN", token.as_str()),
        ("PROVIDER_SCALINGO_AUTH_URL", auth.as_str()),
        ("REGISTRY_IGNORED_APPS", "paastis-engine"),
        ("PAASTIS_MANAGED_APPS", "shop-.*|paastis-.*"),
    ];
    let out = sidecar_off_runtime(dir.path(), &["check-config", "--apps"], &base).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "managed apps       names matching ^(?:shop-.*|paastis-.*)$ (PAASTIS_MANAGED_APPS)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("apps:\nregion osc-fr1: 4 apps\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("region osc-secnum-fr1: 1 apps\n  billing-prod ["),
        "{stdout}"
    );
    // `[status]` as listed: Scalingo may leave it out of a list entry
    // (`unknown` then), so only what follows it is checked.
    for (app, verdict) in [
        (
            "paastis-engine",
            "not managed (in REGISTRY_IGNORED_APPS), strategy blocking",
        ),
        (
            "shop-always-on",
            "managed, never paused (idle limit 0), strategy blocking",
        ),
        (
            "shop-review-pr7-back",
            "managed, paused after 15 min idle, strategy waiting_page",
        ),
        (
            "shop-review-pr7-front",
            "managed, paused after 15 min idle, strategy waiting_page",
        ),
        (
            "billing-prod",
            "not managed (not matching PAASTIS_MANAGED_APPS), strategy blocking",
        ),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {app} [")))
            .unwrap_or_else(|| panic!("{app} listed in\n{stdout}"));
        assert!(line.ends_with(&format!("] {verdict}")), "{line}");
    }

    // Restricted to a region, only that one is listed; one Scalingo does
    // not list is a configuration error naming those it lists.
    let mut restricted = base.to_vec();
    restricted.push(("PROVIDER_SCALINGO_REGIONS", "osc-secnum-fr1"));
    let out = sidecar_off_runtime(dir.path(), &["check-config", "--apps"], &restricted).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("region osc-secnum-fr1: 1 apps"), "{stdout}");
    assert!(!stdout.contains("region osc-fr1"), "{stdout}");

    let mut unknown = base.to_vec();
    unknown.push(("PROVIDER_SCALINGO_REGIONS", "osc-fr1,osc-fr2"));
    let out = sidecar_off_runtime(dir.path(), &["check-config", "--apps"], &unknown).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("invalid configuration: PROVIDER_SCALINGO_REGIONS: \"osc-fr2\" is not a Scalingo region; Scalingo lists: osc-fr1, osc-secnum-fr1"),
        "{stderr}"
    );
}

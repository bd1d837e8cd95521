//! `paastis-sidecar check-config [--filter-config FILE] [HOST|APP ...]`:
//! validates the environment and `paastis.yml` (and the filter's JSON
//! configuration when given) exactly as the gateway would, prints what was
//! resolved, and for each sample host prints the app, region, linked apps
//! and idle time it maps to. Makes no network call; prints no secret.

use std::fmt::Write as _;

use paastis_rules::{normalize_host, HostMatch, HostRules};

use crate::config::{Config, LogFormat, RegistryKind};

/// The filter's view of hosts, from its plugin configuration, or the
/// default rule (first label is the app) when none is given.
pub enum HostView {
    Filter(Box<paastis_filter_config::Config>),
    FirstLabel,
}

impl HostView {
    /// Parses the filter's JSON plugin configuration with the parser the
    /// filter itself uses (`paastis-filter-config`), so both agree on every
    /// field.
    pub fn from_filter_json(bytes: &[u8]) -> Result<Self, String> {
        paastis_filter_config::Config::parse(bytes)
            .map(|c| Self::Filter(Box::new(c)))
            .map_err(|e| e.to_string())
    }

    fn rules(&self) -> Option<&HostRules> {
        match self {
            HostView::Filter(c) => Some(&c.rules),
            HostView::FirstLabel => None,
        }
    }
}

/// The report printed by `check-config` (the configuration is valid: it
/// was built by [`Config::from_env`]).
pub fn report(config: &Config, hosts: &HostView, samples: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "configuration: ok");
    let _ = writeln!(out, "  listen             {}", config.listen);
    let _ = writeln!(out, "  scalingo token     [set, not shown]");
    let _ = writeln!(out, "  auth url           {}", config.scalingo.auth_url);
    let regions = match &config.scalingo.regions {
        Some(regions) if !regions.is_empty() => regions.join(", "),
        _ => "every region Scalingo lists".to_owned(),
    };
    let _ = writeln!(out, "  regions            {regions}");
    let registry = match &config.registry {
        RegistryKind::InMemory => "in-memory (one instance)".to_owned(),
        RegistryKind::Redis { prefix, .. } => format!("redis, key prefix {prefix:?}"),
    };
    let _ = writeln!(out, "  registry           {registry}");
    let ignored: Vec<&str> = config.ignored_apps.iter().map(String::as_str).collect();
    let _ = writeln!(
        out,
        "  ignored apps       {}",
        if ignored.is_empty() {
            "none".to_owned()
        } else {
            ignored.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  wake timeout       {} s",
        config.wake_timeout.as_secs()
    );
    let _ = writeln!(
        out,
        "  scheduler          every {} s, {} Scalingo calls a minute at most",
        config.scheduler_interval.as_secs(),
        config.scheduler_calls_per_minute
    );
    let admin = match &config.admin {
        Some(a) => format!("on {} (token set, not shown)", a.listen),
        None => "off (no PAASTIS_ADMIN_TOKEN)".to_owned(),
    };
    let _ = writeln!(out, "  admin API          {admin}");
    let hooks: Vec<&str> = [
        ("before_start", &config.hooks.before_start),
        ("after_start", &config.hooks.after_start),
        ("before_stop", &config.hooks.before_stop),
        ("after_stop", &config.hooks.after_stop),
    ]
    .into_iter()
    .filter(|(_, cmd)| cmd.is_some())
    .map(|(name, _)| name)
    .collect();
    let _ = writeln!(
        out,
        "  hooks              {}",
        if hooks.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{} (at most {} s each)",
                hooks.join(", "),
                config.hooks.timeout.as_secs()
            )
        }
    );
    let _ = writeln!(
        out,
        "  logs               {}",
        match config.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    );
    match &config.rules_file {
        Some(file) => {
            let _ = writeln!(out, "rules: {} from {}", config.rules.len(), file.display());
            // Printed as written (already validated): the file is the
            // operator's words, easier to recognise than a re-rendering.
            if let Ok(text) = std::fs::read_to_string(file) {
                if let Ok(value) = serde_yaml::from_str::<serde_json::Value>(&text) {
                    for (i, rule) in value["rules"].as_array().into_iter().flatten().enumerate() {
                        let _ = writeln!(out, "  rules[{i}] {rule}");
                    }
                }
            }
        }
        None => {
            let _ = writeln!(out, "rules: none (no paastis.yml)");
        }
    }
    if !samples.is_empty() {
        let _ = writeln!(out, "samples:");
    }
    for sample in samples {
        let _ = writeln!(out, "  {sample}");
        let _ = writeln!(out, "    {}", describe_sample(config, hosts, sample));
    }
    out
}

fn describe_sample(config: &Config, hosts: &HostView, sample: &str) -> String {
    let host = match normalize_host(sample) {
        Ok(h) => h.into_owned(),
        Err(e) => return format!("refused (400 invalid_host): {e}"),
    };
    let (app, host_region) = match hosts.rules() {
        Some(rules) => match rules.match_host(&host) {
            HostMatch::App { app, region } => (app, region.map(str::to_owned)),
            HostMatch::InvalidApp => {
                return "refused (400 invalid_app): not a valid Scalingo app name".to_owned()
            }
            HostMatch::NoMatch => return "matches no host rule nor domain".to_owned(),
        },
        None => {
            let first = host.split('.').next().unwrap_or_default().to_owned();
            if !paastis_rules::is_valid_app_name(&first) {
                return format!(
                    "refused (400 invalid_app): {first:?} is not a valid Scalingo app name"
                );
            }
            (first, None)
        }
    };
    let set = match config.rules.wake_set(&app) {
        Ok(set) => set,
        Err(e) => return format!("app {app}: the rules cannot resolve it: {e}"),
    };
    let Some(main) = set.first() else {
        return format!("app {app}: nothing to wake");
    };
    let region = main
        .region
        .clone()
        .or(host_region)
        .unwrap_or_else(|| "found by listing the regions".to_owned());
    let linked: Vec<&str> = set.iter().skip(1).map(|a| a.name.as_str()).collect();
    let idle = if config.ignored_apps.contains(&main.name) {
        "ignored: routed, never scaled".to_owned()
    } else if main.max_idle_minutes == 0 {
        "never paused".to_owned()
    } else {
        format!("paused after {} min idle", main.max_idle_minutes)
    };
    let renamed = if main.name == app {
        String::new()
    } else {
        format!(" (host names {app})")
    };
    format!(
        "app {}{renamed}, region {region}, wakes with [{}], {idle}, strategy {}",
        main.name,
        linked.join(", "),
        main.strategy.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{env_from_map, Env};
    use std::collections::HashMap;

    fn config(rules: &str, extra: &[(&str, &str)]) -> (Config, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paastis.yml");
        std::fs::write(&file, rules).unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert(
            "PROVIDER_SCALINGO_API_TOKEN".into(),
            "tk-us-secret-value".into(),
        );
        vars.insert("PAASTIS_RULES_FILE".into(), file.display().to_string());
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let get = env_from_map(&vars);
        (Config::from_env(&Env::new(&get)).unwrap(), dir)
    }

    #[test]
    fn samples_show_app_region_links_and_idle_time() {
        let (c, _d) = config(
            "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api']\n    app_max_idle_time: 30\n",
            &[("PAASTIS_ADMIN_TOKEN", "a-very-long-admin-token")],
        );
        let hosts = HostView::from_filter_json(
            br#"{"sidecar_cluster": "paastis_sidecar", "domains": ["gateway.example.com"],
                 "host_rules": [{"pattern": "^vault\\.secure\\.example\\.com$", "app": "shop-vault", "region": "osc-secnum-fr1"}]}"#,
        )
        .unwrap();
        let text = report(
            &c,
            &hosts,
            &[
                "shop-front.gateway.example.com".into(),
                "vault.secure.example.com".into(),
                "x.gateway.example.com".into(),
                "example.org".into(),
            ],
        );
        assert!(text.contains("app shop-front, region found by listing the regions, wakes with [shop-api], paused after 30 min idle"), "{text}");
        assert!(
            text.contains(
                "app shop-vault, region osc-secnum-fr1, wakes with [], paused after 15 min idle"
            ),
            "{text}"
        );
        assert!(text.contains("refused (400 invalid_app)"), "{text}");
        assert!(text.contains("matches no host rule nor domain"), "{text}");
        assert!(text.contains("rules[0] {"), "{text}");
        assert!(!text.contains("tk-us-secret-value"), "{text}");
        assert!(!text.contains("a-very-long-admin-token"), "{text}");
    }

    #[test]
    fn without_a_filter_config_the_first_label_is_the_app() {
        let (c, _d) = config("rules: []\n", &[("START_AND_STOP_MAX_IDLE_TIME", "0")]);
        let text = report(
            &c,
            &HostView::FirstLabel,
            &["demo-app.localhost:8080".into()],
        );
        assert!(
            text.contains(
                "app demo-app, region found by listing the regions, wakes with [], never paused"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_bad_filter_config_names_the_field() {
        let err = HostView::from_filter_json(br#"{"sidecar_cluster": "s", "cache_ttl_ms": 0}"#)
            .err()
            .unwrap();
        assert!(err.contains("cache_ttl_ms"), "{err}");
    }
}

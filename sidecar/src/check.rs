//! `paastis-sidecar check-config [--apps] [--filter-config FILE] [HOST|APP ...]`:
//! validates the environment and `paastis.yml` (and the filter's JSON
//! configuration when given) exactly as the gateway would, prints what was
//! resolved, the warnings and the Paastis variables that have no effect,
//! and for each sample host prints the app, region, linked apps and idle
//! time it maps to. It tells whether each region's app fronts can be
//! reached from here ([`fronts_report`]: one request each, no API call).
//! Without `--apps` it makes no other network call (configured
//! regions are checked against [`KNOWN_REGIONS`]); with `--apps` it asks
//! Scalingo for its regions and lists every app the token sees, managed or
//! not and why ([`apps_report`]). Prints no secret.

use std::fmt::Write as _;

use paastis_rules::{normalize_host, HostMatch, HostRules};
use thiserror::Error;

use crate::clock::now_ms;
use crate::config::paastis::check_regions;
use crate::config::{Config, ConfigError, LogFormat, RegistryKind, KNOWN_REGIONS};
use crate::keep_awake;
use crate::platform::front::{self, FrontProber};
use crate::platform::scalingo::{listed_apps, region_names};
use crate::scalingo::{ScalingoClient, ScalingoError};
use crate::scheduler::plan::max_idle_minutes;

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
    if let Some(file) = &config.env_file {
        let _ = writeln!(
            out,
            "  environment file   {} (the process environment wins)",
            file.display()
        );
    }
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
    let _ = writeln!(
        out,
        "  managed apps       {}",
        match config.managed_apps.pattern() {
            Some(p) => format!("names matching ^(?:{p})$ (PAASTIS_MANAGED_APPS)"),
            None => "every app the token can see, collaborations included".to_owned(),
        }
    );
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
    let _ = writeln!(out, "  readiness probes   {}", config.front_urls);
    let _ = writeln!(
        out,
        "  scheduler          {}, {} Scalingo calls a minute at most{}",
        config.scheduler_schedule,
        config.scheduler_calls_per_minute,
        if config.dry_run {
            "; DRY RUN: records would_pause, pauses nothing"
        } else {
            ""
        }
    );
    let admin = match &config.admin {
        Some(a) => format!("on {} (token set, not shown)", a.listen),
        None => "off (no PAASTIS_ADMIN_TOKEN)".to_owned(),
    };
    let _ = writeln!(out, "  admin API          {admin}");
    let filter_auth = if config.sidecar_token.is_some() {
        "token required (PAASTIS_SIDECAR_TOKEN set, not shown)"
    } else {
        "none (loopback only; no PAASTIS_SIDECAR_TOKEN)"
    };
    let _ = writeln!(out, "  filter API auth    {filter_auth}");
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
    if !config.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for warning in &config.warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    if !config.ignored_vars.is_empty() {
        let _ = writeln!(out, "ignored (Paastis variables with no effect here):");
        for var in &config.ignored_vars {
            let _ = writeln!(out, "  {}: {}", var.name, var.why);
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
    let idle = if let Some(why) = config.scope().unmanaged(&main.name) {
        format!("not managed ({why}): routed, never scaled")
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
    let window = keep_awake::describe(&main.keep_awake, main.prewarm_minutes, now_ms())
        .map(|w| format!(", {w}"))
        .unwrap_or_default();
    format!(
        "app {}{renamed}, region {region}, wakes with [{}], {idle}, strategy {}{window}",
        main.name,
        linked.join(", "),
        main.strategy.as_str()
    )
}

/// Checks the configured regions without a network call, against
/// [`KNOWN_REGIONS`] (`check-config` without `--apps`).
pub fn check_known_regions(config: &Config) -> Result<(), ConfigError> {
    match &config.scalingo.regions {
        Some(regions) => check_regions(config.regions_var, regions, KNOWN_REGIONS, "known regions"),
        None => Ok(()),
    }
}

/// Whether each configured region's (or each known region's) app fronts
/// answer from here, one request each at the same time, no API call
/// ([`FrontProber::reach`]); with the line to print or log
/// ([`front::reach_line`]) and whether it is a warning.
pub async fn fronts_report(config: &Config) -> Vec<(bool, String)> {
    let prober = match FrontProber::new(config.front_urls.clone()) {
        Ok(p) => p,
        Err(e) => return vec![(true, format!("the fronts cannot be checked: {e}"))],
    };
    let regions: Vec<String> = match &config.scalingo.regions {
        Some(configured) => configured.clone(),
        None => KNOWN_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
    };
    let reached =
        futures::future::join_all(regions.iter().map(|region| prober.reach(region))).await;
    regions
        .iter()
        .zip(reached)
        .map(|(region, reached)| {
            (
                reached.is_err(),
                front::reach_line(region, &reached, config.scheduler_calls_per_minute),
            )
        })
        .collect()
}

/// Why `check-config --apps` failed.
#[derive(Debug, Error)]
pub enum AppsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("scalingo: {0}")]
    Scalingo(#[from] ScalingoError),
}

/// A client over every region `/v1/regions` lists (not only the configured
/// ones), so that unknown configured names can be told apart.
fn unrestricted_client(config: &Config) -> Result<ScalingoClient, ScalingoError> {
    let mut scalingo = config.scalingo.clone();
    scalingo.regions = None;
    ScalingoClient::new(scalingo)
}

/// Checks the configured regions against Scalingo's `/v1/regions` (one
/// call, none when no region is configured). When Scalingo cannot be asked,
/// falls back to [`KNOWN_REGIONS`] and says so in the returned warning.
pub async fn verify_regions(config: &Config) -> Result<Option<String>, ConfigError> {
    let Some(configured) = &config.scalingo.regions else {
        return Ok(None);
    };
    let listed = match unrestricted_client(config) {
        Ok(client) => region_names(&client).await,
        Err(e) => Err(e),
    };
    match listed {
        Ok(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            check_regions(config.regions_var, configured, &names, "Scalingo lists")?;
            Ok(None)
        }
        Err(e) => {
            check_known_regions(config)?;
            Ok(Some(format!(
                "{}: not checked with Scalingo ({e}); the names are among the known regions",
                config.regions_var
            )))
        }
    }
}

/// `check-config --apps`: every app of each region (the configured ones, or
/// all that Scalingo lists), whether it is managed and why not, its idle
/// limit and strategy from the rules. One call for the regions, one per
/// region for its apps.
pub async fn apps_report(config: &Config) -> Result<String, AppsError> {
    let client = unrestricted_client(config)?;
    let listed: Vec<String> = region_names(&client).await?;
    let regions = match &config.scalingo.regions {
        Some(configured) => {
            let names: Vec<&str> = listed.iter().map(String::as_str).collect();
            check_regions(config.regions_var, configured, &names, "Scalingo lists")?;
            configured.clone()
        }
        None => listed,
    };
    let scope = config.scope();
    let mut out = String::new();
    for region in regions {
        let mut apps = listed_apps(&client, &region).await?;
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        let _ = writeln!(out, "region {region}: {} apps", apps.len());
        for app in apps {
            let resolved = config.rules.resolve(&app.name).ok();
            let strategy = resolved
                .as_ref()
                .map_or(config.rules.default_strategy(), |r| r.strategy);
            let window = resolved
                .and_then(|r| keep_awake::describe(&r.keep_awake, r.prewarm_minutes, now_ms()))
                .map(|w| format!(", {w}"))
                .unwrap_or_default();
            let managed = match scope.unmanaged(&app.name) {
                Some(why) => format!("not managed ({why})"),
                None => match max_idle_minutes(&config.rules, &app.name) {
                    0 => "managed, never paused (idle limit 0)".to_owned(),
                    minutes => format!("managed, paused after {minutes} min idle"),
                },
            };
            let _ = writeln!(
                out,
                "  {} [{}] {managed}, strategy {}{window}",
                app.name,
                app.status,
                strategy.as_str()
            );
        }
    }
    Ok(out)
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
    fn the_report_shows_scope_dry_run_warnings_and_ignored_variables() {
        let (c, _d) = config(
            "rules: []\n",
            &[
                ("PAASTIS_MANAGED_APPS", "review-.*"),
                ("PAASTIS_DRY_RUN", "true"),
                ("REGISTRY_IGNORED_APPS", "api"),
                ("ROUTING_SYSTEM_API_TOKEN", "abcd-secret-1234"),
                ("START_AND_STOP_CHECKING_INTERVAL_CRON", "*/5 * * * *"),
            ],
        );
        let text = report(
            &c,
            &HostView::FirstLabel,
            &["prod-front.example.com".into()],
        );
        for expected in [
            "managed apps       names matching ^(?:review-.*)$ (PAASTIS_MANAGED_APPS)",
            "scheduler          at cron \"*/5 * * * *\", ",
            " Scalingo calls a minute at most; DRY RUN: records would_pause, pauses nothing",
            "warnings:\n  REGISTRY_IGNORED_APPS: \"api\" cannot be a Scalingo app name",
            "ignored (Paastis variables with no effect here):\n  ROUTING_SYSTEM_API_TOKEN: ",
            "app prod-front, region found by listing the regions, wakes with [], not managed (not matching PAASTIS_MANAGED_APPS): routed, never scaled",
        ] {
            assert!(text.contains(expected), "{expected}\n---\n{text}");
        }
        assert!(!text.contains("abcd-secret-1234"), "{text}");
        let (c, _d) = config("rules: []\n", &[]);
        let text = report(&c, &HostView::FirstLabel, &[]);
        assert!(
            text.contains(
                "managed apps       every app the token can see, collaborations included"
            ),
            "{text}"
        );
    }

    #[test]
    fn regions_are_checked_offline_against_the_known_list() {
        let (c, _d) = config("", &[("PROVIDER_REGION", "osc-fr-1")]);
        let e = check_known_regions(&c).unwrap_err().to_string();
        assert_eq!(
            e,
            "PROVIDER_REGION: \"osc-fr-1\" is not a Scalingo region (did you mean \"osc-fr1\"?); known regions: osc-fr1, osc-secnum-fr1"
        );
        let (c, _d) = config(
            "",
            &[("PROVIDER_SCALINGO_REGIONS", "osc-fr1,osc-secnum-fr1")],
        );
        assert!(check_known_regions(&c).is_ok());
    }

    #[test]
    fn a_bad_filter_config_names_the_field() {
        let err = HostView::from_filter_json(br#"{"sidecar_cluster": "s", "cache_ttl_ms": 0}"#)
            .err()
            .unwrap();
        assert!(err.contains("cache_ttl_ms"), "{err}");
    }
}

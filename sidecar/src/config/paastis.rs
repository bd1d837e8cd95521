//! Moving from the Node.js Paastis: each of its variables is honoured (by
//! [`super::Config::from_env`]), refused with what to use instead, or
//! reported by `check-config` as having no effect here ([`ignored_vars`]).
//! Nothing of an old `.env` is dropped silently.

use super::env::Env;
use super::error::{env_error, ConfigError};

/// The Scalingo regions known when this was written, checked when the
/// sidecar cannot ask `/v1/regions` (`check-config` without `--apps`, or
/// Scalingo unreachable at start).
pub const KNOWN_REGIONS: &[&str] = &["osc-fr1", "osc-secnum-fr1"];

/// A variable that is set but has no effect here, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredVar {
    pub name: &'static str,
    pub why: &'static str,
}

const ENVOY_ROUTES: &str =
    "Envoy is the routing system: its listener and the filter's host rules route requests";

/// Paastis variables with no effect here, and why.
const IGNORED: &[(&str, &str)] = &[
    ("ROUTING_SYSTEM", ENVOY_ROUTES),
    (
        "ROUTING_SYSTEM_API_ENABLED",
        "Paastis's system API is replaced by the admin API (PAASTIS_ADMIN_TOKEN)",
    ),
    (
        "ROUTING_SYSTEM_API_TOKEN",
        "Paastis's system API is replaced by the admin API (PAASTIS_ADMIN_TOKEN)",
    ),
    (
        "HOST",
        "the proxy is Envoy; the sidecar listens on PAASTIS_LISTEN",
    ),
    (
        "PORT",
        "the proxy is Envoy; the sidecar listens on PAASTIS_LISTEN",
    ),
    (
        "EVENTS_STORE_TYPE",
        "events are kept where REGISTRY_TYPE says (in memory or Redis)",
    ),
    ("PROVIDER_HEROKU_API_TOKEN", "only Scalingo is supported"),
    (
        "PROVIDER_HEROKU_OPERATION_TIMEOUT",
        "only Scalingo is supported",
    ),
    ("PROVIDER_CLEVER_API_HOST", "only Scalingo is supported"),
    (
        "PROVIDER_CLEVER_OAUTH_CONSUMER_KEY",
        "only Scalingo is supported",
    ),
    (
        "PROVIDER_CLEVER_OAUTH_CONSUMER_SECRET",
        "only Scalingo is supported",
    ),
    ("PROVIDER_CLEVER_TOKEN", "only Scalingo is supported"),
    ("PROVIDER_CLEVER_SECRET", "only Scalingo is supported"),
    (
        "PROVIDER_CLEVER_OPERATION_TIMEOUT",
        "only Scalingo is supported",
    ),
];

/// The Paastis variables set in `env` that have no effect here.
pub fn ignored_vars(env: &Env<'_>) -> Vec<IgnoredVar> {
    IGNORED
        .iter()
        .filter(|(name, _)| env.first(&[name]).is_some())
        .map(|&(name, why)| IgnoredVar { name, why })
        .collect()
}

/// `PROVIDER_NAME`: Paastis also drove Heroku and Clever Cloud; this
/// gateway drives Scalingo only, so any other provider is refused rather
/// than Scalingo managed in its place.
pub fn check_provider(env: &Env<'_>) -> Result<(), ConfigError> {
    match env.first(&["PROVIDER_NAME"]) {
        None => Ok(()),
        Some((_, v)) if v.eq_ignore_ascii_case("scalingo") => Ok(()),
        Some((name, v)) => Err(env_error(
            name,
            format!(
                "{v:?} is not supported: only scalingo is supported (set PROVIDER_NAME=scalingo or unset it)"
            ),
        )),
    }
}

/// Checks configured regions against the names that exist (`existing`,
/// from `/v1/regions` or [`KNOWN_REGIONS`]); the error lists them and the
/// likely one meant (`osc-fr-1` for `osc-fr1`).
pub fn check_regions(
    name: &'static str,
    configured: &[String],
    existing: &[&str],
    source: &str,
) -> Result<(), ConfigError> {
    for region in configured {
        if existing.contains(&region.as_str()) {
            continue;
        }
        let squeezed: String = region.chars().filter(|c| *c != '-').collect();
        let hint = existing
            .iter()
            .find(|e| e.chars().filter(|c| *c != '-').collect::<String>() == squeezed)
            .map(|e| format!(" (did you mean {e:?}?)"))
            .unwrap_or_default();
        return Err(env_error(
            name,
            format!(
                "{region:?} is not a Scalingo region{hint}; {source}: {}",
                existing.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::env_from_map;

    fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce(&Env<'_>) -> T) -> T {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = env_from_map(&map);
        f(&Env::new(&get))
    }

    #[test]
    fn only_scalingo_is_a_provider() {
        with_env(&[], |env| assert!(check_provider(env).is_ok()));
        with_env(&[("PROVIDER_NAME", "scalingo")], |env| {
            assert!(check_provider(env).is_ok())
        });
        let e = with_env(&[("PROVIDER_NAME", "clever-cloud")], |env| {
            check_provider(env).unwrap_err().to_string()
        });
        assert_eq!(
            e,
            "PROVIDER_NAME: \"clever-cloud\" is not supported: only scalingo is supported (set PROVIDER_NAME=scalingo or unset it)"
        );
    }

    #[test]
    fn routing_system_variables_are_reported_as_ignored() {
        let vars = [
            ("ROUTING_SYSTEM_API_ENABLED", "true"),
            ("ROUTING_SYSTEM_API_TOKEN", "abcd-1234"),
            ("PROVIDER_SCALINGO_API_TOKEN", "tk-us-x"),
            ("EVENTS_STORE_TYPE", " "),
        ];
        let names: Vec<&str> = with_env(&vars, |env| {
            ignored_vars(env).iter().map(|v| v.name).collect()
        });
        assert_eq!(
            names,
            ["ROUTING_SYSTEM_API_ENABLED", "ROUTING_SYSTEM_API_TOKEN"],
            "blank values are unset; honoured variables are not listed"
        );
    }

    #[test]
    fn an_unknown_region_lists_the_existing_ones() {
        let e = check_regions(
            "PROVIDER_REGION",
            &["osc-fr-1".to_owned()],
            KNOWN_REGIONS,
            "known regions",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "PROVIDER_REGION: \"osc-fr-1\" is not a Scalingo region (did you mean \"osc-fr1\"?); known regions: osc-fr1, osc-secnum-fr1"
        );
        assert!(check_regions(
            "PROVIDER_REGION",
            &["osc-fr1".to_owned()],
            KNOWN_REGIONS,
            "known"
        )
        .is_ok());
    }
}

//! Host normalisation and the host rules that map a host to an app.

use std::borrow::Cow;

use regex_lite::Regex;
use thiserror::Error;

use crate::app::is_valid_app_name;
use crate::template::{highest_group, interpolate};

/// Longest host name (RFC 1035), port excluded.
const HOST_MAX: usize = 253;

/// Why a Host header was refused. Every variant is the client's fault and
/// maps to a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostError {
    #[error("the Host header is missing or empty")]
    Empty,
    #[error("the Host header is too long")]
    TooLong,
    #[error("the Host header has a character a host name cannot have")]
    InvalidCharacter,
    #[error("the Host header has an empty label")]
    EmptyLabel,
    #[error("the Host header has an invalid port")]
    InvalidPort,
    #[error("the Host header has an invalid IPv6 literal")]
    InvalidIpv6,
}

/// Lower-cases `raw`, strips its port (IPv6 literals too: `[::1]:8080` gives
/// `::1`) and one trailing dot, and checks that what is left can be a host
/// name: ASCII letters, digits, `-` and `.`, no empty label, at most 253
/// bytes. Borrows when nothing changes, so the hot path does not allocate for
/// a well-formed lower-case host without a port.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if raw.len() > HOST_MAX + 6 {
        return Err(HostError::TooLong);
    }
    if let Some(rest) = raw.strip_prefix('[') {
        return normalize_ipv6(rest);
    }
    let name = match raw.split_once(':') {
        Some((name, port)) => {
            check_port(port)?;
            name
        }
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > HOST_MAX {
        return Err(HostError::TooLong);
    }
    let mut has_upper = false;
    let mut previous_dot = true;
    for &b in name.as_bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => previous_dot = false,
            b'A'..=b'Z' => {
                has_upper = true;
                previous_dot = false;
            }
            b'.' if previous_dot => return Err(HostError::EmptyLabel),
            b'.' => previous_dot = true,
            _ => return Err(HostError::InvalidCharacter),
        }
    }
    if has_upper {
        Ok(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(name))
    }
}

fn check_port(port: &str) -> Result<(), HostError> {
    let valid = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
    if valid {
        Ok(())
    } else {
        Err(HostError::InvalidPort)
    }
}

fn normalize_ipv6(after_bracket: &str) -> Result<Cow<'_, str>, HostError> {
    let (literal, tail) = after_bracket
        .split_once(']')
        .ok_or(HostError::InvalidIpv6)?;
    if literal.is_empty()
        || !literal
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err(HostError::InvalidIpv6);
    }
    if !tail.is_empty() {
        check_port(tail.strip_prefix(':').ok_or(HostError::InvalidPort)?)?;
    }
    if literal.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(literal.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(literal))
    }
}

/// A configuration error in host rules, naming the rule (0-based index) and
/// the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("host_rules[{index}].pattern: {message}")]
    InvalidPattern { index: usize, message: String },
    #[error("host_rules[{index}].app: uses ${group} but the pattern has only {groups} group(s)")]
    MissingGroup {
        index: usize,
        group: usize,
        groups: usize,
    },
    #[error("host_rules[{index}].app: must not be empty")]
    EmptyTemplate { index: usize },
    #[error("{field}: {value:?} is not a valid region name")]
    InvalidRegion { field: String, value: String },
    #[error("domains[{index}]: {value:?} is not a valid domain")]
    InvalidDomain { index: usize, value: String },
}

/// One host rule: when `pattern` matches the whole (normalised) host, the app
/// is `app` with `$1..$9` replaced by the pattern's groups.
#[derive(Debug, Clone)]
pub struct HostRule {
    pattern: Regex,
    app: String,
    region: Option<String>,
}

impl HostRule {
    /// Compiles a rule. The pattern is anchored at both ends, so a rule can
    /// never match a host that merely contains the expected one.
    pub fn new(
        index: usize,
        pattern: &str,
        app: &str,
        region: Option<&str>,
    ) -> Result<Self, RuleError> {
        let compiled =
            Regex::new(&format!("^(?:{pattern})$")).map_err(|e| RuleError::InvalidPattern {
                index,
                message: e.to_string(),
            })?;
        if app.is_empty() {
            return Err(RuleError::EmptyTemplate { index });
        }
        let groups = compiled.captures_len() - 1;
        let group = highest_group(app);
        if group > groups {
            return Err(RuleError::MissingGroup {
                index,
                group,
                groups,
            });
        }
        if let Some(region) = region {
            check_region(&format!("host_rules[{index}].region"), region)?;
        }
        Ok(Self {
            pattern: compiled,
            app: app.to_owned(),
            region: region.map(str::to_owned),
        })
    }
}

/// Checks that `value` looks like a Scalingo region name (`osc-fr1`).
pub fn check_region(field: &str, value: &str) -> Result<(), RuleError> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(RuleError::InvalidRegion {
            field: field.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// What a host maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch<'r> {
    /// The host names this app (a valid Scalingo app name), with the region
    /// the matching rule pins, if any.
    App {
        app: String,
        region: Option<&'r str>,
    },
    /// A rule or domain matched but the app it names is not a valid Scalingo
    /// name: the request must be refused, never sent to the sidecar.
    InvalidApp,
    /// No rule and no domain matched.
    NoMatch,
}

/// Host rules in order, then the default rule over `domains`: the single
/// label right under one of them is the app
/// (`app-1.gateway.example.com` gives `app-1`).
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    rules: Vec<HostRule>,
    /// Lower-case, without leading or trailing dot.
    domains: Vec<String>,
}

impl HostRules {
    /// Builds the rules, checking every domain.
    pub fn new(rules: Vec<HostRule>, domains: &[String]) -> Result<Self, RuleError> {
        let mut normalized = Vec::with_capacity(domains.len());
        for (index, domain) in domains.iter().enumerate() {
            let trimmed = domain.trim_start_matches('.');
            match normalize_host(trimmed) {
                Ok(d) if !d.contains(':') && !trimmed.contains(':') => {
                    normalized.push(d.into_owned())
                }
                _ => {
                    return Err(RuleError::InvalidDomain {
                        index,
                        value: domain.clone(),
                    })
                }
            }
        }
        Ok(Self {
            rules,
            domains: normalized,
        })
    }

    /// Maps a normalised host (see [`normalize_host`]) to an app. Explicit
    /// rules are tried first, in order; the first that matches decides.
    pub fn match_host(&self, host: &str) -> HostMatch<'_> {
        for rule in &self.rules {
            if let Some(captures) = rule.pattern.captures(host) {
                let app = interpolate(&rule.app, &captures);
                return if is_valid_app_name(&app) {
                    HostMatch::App {
                        app,
                        region: rule.region.as_deref(),
                    }
                } else {
                    HostMatch::InvalidApp
                };
            }
        }
        for domain in &self.domains {
            let Some(prefix) = host
                .strip_suffix(domain.as_str())
                .and_then(|p| p.strip_suffix('.'))
            else {
                continue;
            };
            if prefix.contains('.') {
                // A deeper name (`a.b.gateway.example.com`) is not an app host.
                return HostMatch::NoMatch;
            }
            return if is_valid_app_name(prefix) {
                HostMatch::App {
                    app: prefix.to_owned(),
                    region: None,
                }
            } else {
                HostMatch::InvalidApp
            };
        }
        HostMatch::NoMatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> HostRules {
        HostRules::new(
            vec![
                HostRule::new(
                    0,
                    r"([a-z0-9-]+)\.secure\.example\.org",
                    "$1",
                    Some("osc-secnum-fr1"),
                )
                .unwrap(),
                HostRule::new(1, r"review-(\d+)\.example\.org", "front-pr$1", None).unwrap(),
            ],
            &["gateway.example.com".to_owned(), ".localhost".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(
            normalize_host("App-1.Gateway.example.com:8080").unwrap(),
            "app-1.gateway.example.com"
        );
        assert_eq!(
            normalize_host("app.example.com.").unwrap(),
            "app.example.com"
        );
        assert_eq!(normalize_host("[::1]:8080").unwrap(), "::1");
        assert_eq!(normalize_host("[FE80::1]").unwrap(), "fe80::1");
        assert!(matches!(
            normalize_host("app.example.com"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn refuses_hostile_hosts() {
        let cases = [
            ("", HostError::Empty),
            (":80", HostError::Empty),
            ("a..b", HostError::EmptyLabel),
            (".a.b", HostError::EmptyLabel),
            ("a b", HostError::InvalidCharacter),
            ("app/../x", HostError::InvalidCharacter),
            ("app%2f.example.com", HostError::InvalidCharacter),
            ("app\r\nx-y", HostError::InvalidCharacter),
            ("app.example.com:http", HostError::InvalidPort),
            ("app.example.com:99999", HostError::InvalidPort),
            ("app.example.com:1:2", HostError::InvalidPort),
            ("[::1", HostError::InvalidIpv6),
            ("[zz::1]", HostError::InvalidIpv6),
            ("[::1]x", HostError::InvalidPort),
            ("ex\u{e9}mple.com", HostError::InvalidCharacter),
        ];
        for (host, expected) in cases {
            assert_eq!(normalize_host(host), Err(expected), "{host:?}");
        }
        assert_eq!(normalize_host(&"a".repeat(300)), Err(HostError::TooLong));
    }

    #[test]
    fn maps_hosts_to_apps() {
        let r = rules();
        assert_eq!(
            r.match_host("app-1x.gateway.example.com"),
            HostMatch::App {
                app: "app-1x".into(),
                region: None
            }
        );
        assert_eq!(
            r.match_host("demo-front.localhost"),
            HostMatch::App {
                app: "demo-front".into(),
                region: None
            }
        );
        assert_eq!(
            r.match_host("my-bank.secure.example.org"),
            HostMatch::App {
                app: "my-bank".into(),
                region: Some("osc-secnum-fr1")
            }
        );
        assert_eq!(
            r.match_host("review-42.example.org"),
            HostMatch::App {
                app: "front-pr42".into(),
                region: None
            }
        );
        assert_eq!(r.match_host("gateway.example.com"), HostMatch::NoMatch);
        assert_eq!(r.match_host("a.b.gateway.example.com"), HostMatch::NoMatch);
        assert_eq!(r.match_host("other.org"), HostMatch::NoMatch);
        assert_eq!(r.match_host("evilgateway.example.com"), HostMatch::NoMatch);
        assert_eq!(r.match_host("x.gateway.example.com"), HostMatch::InvalidApp);
        assert_eq!(
            r.match_host("bad--name.gateway.example.com"),
            HostMatch::InvalidApp
        );
        // Anchored: a host that merely contains a rule's host does not match it.
        assert_eq!(
            r.match_host("review-42.example.org.evil.net"),
            HostMatch::NoMatch
        );
    }

    #[test]
    fn config_errors_name_the_rule_and_field() {
        let e = HostRule::new(3, "(", "$1", None).unwrap_err();
        assert!(e.to_string().starts_with("host_rules[3].pattern:"), "{e}");
        let e = HostRule::new(1, "a(b)", "$2", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "host_rules[1].app: uses $2 but the pattern has only 1 group(s)"
        );
        let e = HostRule::new(0, "a", "x", Some("OSC FR1")).unwrap_err();
        assert!(e.to_string().starts_with("host_rules[0].region:"), "{e}");
        let e = HostRules::new(vec![], &["bad domain".into()]).unwrap_err();
        assert!(e.to_string().starts_with("domains[0]:"), "{e}");
    }

    proptest! {
        /// Host-like inputs (names, ports, trailing dots, IPv6 literals) as
        /// often as arbitrary text, so that both outcomes are reached; a
        /// plain lower-case DNS name is never refused.
        #[test]
        fn any_host_is_refused_or_normalized_safely(
            raw in prop_oneof![
                "\\PC{0,80}",
                "[a-zA-Z0-9-]{1,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}\\.?(:[0-9]{1,6})?",
                "\\[[0-9a-fA-F:]{2,20}\\](:[0-9]{1,5})?",
            ],
        ) {
            match normalize_host(&raw) {
                Ok(host) => {
                    prop_assert!(!host.is_empty());
                    prop_assert!(host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b':'));
                    prop_assert!(!host.contains(".."));
                }
                Err(e) => {
                    let plain = raw.len() <= 253
                        && raw.split('.').all(|label| {
                            !label.is_empty()
                                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        });
                    prop_assert!(!plain, "{:?} refused: {}", raw, e);
                }
            }
        }

        /// Hosts built on purpose under the rules' suffixes (valid and
        /// invalid app labels, ports) as well as under other suffixes: every
        /// outcome is reached and checked.
        #[test]
        fn any_matched_app_is_a_valid_name(
            label in "[a-zA-Z0-9-]{0,52}",
            suffix in prop_oneof![
                Just(".gateway.example.com".to_owned()),
                Just(".secure.example.org".to_owned()),
                Just(".localhost".to_owned()),
                "[a-z0-9.:\\-\\[\\]]{0,20}",
            ],
            port in proptest::option::of(1u32..70_000),
        ) {
            let raw = match port {
                Some(port) => format!("{label}{suffix}:{port}"),
                None => format!("{label}{suffix}"),
            };
            let mapped = [".gateway.example.com", ".secure.example.org"].contains(&suffix.as_str());
            let valid_label = is_valid_app_name(&label.to_ascii_lowercase());
            let usable = mapped && valid_label && port.is_none_or(|p| p <= 65_535);
            match normalize_host(&raw) {
                Ok(host) => match rules().match_host(&host) {
                    HostMatch::App { app, .. } => {
                        prop_assert!(is_valid_app_name(&app));
                        if mapped {
                            prop_assert_eq!(app, label.to_ascii_lowercase());
                        }
                    }
                    other => prop_assert!(!usable, "{:?} gave {:?}", raw, other),
                },
                Err(e) => prop_assert!(!usable, "{:?} refused: {}", raw, e),
            }
        }

        #[test]
        fn suffix_hosts_map_to_their_label(label in "[a-z0-9]{3,10}-[a-z0-9]{3,10}") {
            let host = format!("{label}.gateway.example.com");
            let rules = rules();
            prop_assert_eq!(rules.match_host(&host), HostMatch::App { app: label, region: None });
        }
    }
}

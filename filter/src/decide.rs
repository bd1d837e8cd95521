//! The request-path decisions: which app a request is for, and which headers
//! to set once the upstream is known.

use paastis_rules::{normalize_host, HostMatch};

use crate::config::{Config, UnmatchedHosts};
use crate::headers::{rewrite_origin, RequestView, FORWARDED_HOST};
use crate::reply::{LocalReply, ReplyKind};

/// What to do with a request, before looking at the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'c> {
    /// Answer locally (400 for a bad host or app name, 404 for an unmatched
    /// host when `unmatched_hosts` is `reject`).
    Reply(LocalReply),
    /// Unmatched host with `unmatched_hosts: pass`: continue untouched, no
    /// routing header.
    PassThrough,
    /// The request is for `app`: route it from the cache or wake it.
    Route(Target<'c>),
}

/// The app a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'c> {
    /// A valid Scalingo app name (guaranteed by `HostRules::match_host`).
    pub app: String,
    /// The region pinned by the matching host rule, if any.
    pub region: Option<&'c str>,
}

/// Maps a request to a [`Decision`]. Pure and total: any header set gives a
/// decision, and nothing that fails [`normalize_host`] ever reaches the
/// rules (let alone the sidecar).
pub fn decide<'c>(config: &'c Config, view: &RequestView<'_>) -> Decision<'c> {
    let Some(raw) = view.authority_str() else {
        return Decision::Reply(LocalReply::new(ReplyKind::InvalidHost));
    };
    let Ok(host) = normalize_host(raw) else {
        return Decision::Reply(LocalReply::new(ReplyKind::InvalidHost));
    };
    match config.rules.match_host(&host) {
        HostMatch::App { app, region } => Decision::Route(Target { app, region }),
        HostMatch::InvalidApp => Decision::Reply(LocalReply::new(ReplyKind::InvalidApp)),
        HostMatch::NoMatch => match config.unmatched_hosts {
            UnmatchedHosts::Reject => Decision::Reply(LocalReply::new(ReplyKind::UnknownHost)),
            UnmatchedHosts::Pass => Decision::PassThrough,
        },
    }
}

/// The request headers to set to route a request to its upstream, in the
/// order the glue applies them. Built the same way on a cache hit, after a
/// wake and for `failure_policy: open`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEdits<'a> {
    /// `(routing_header, cluster)`: what the Envoy route's `cluster_header`
    /// reads.
    pub cluster: (&'a str, &'a str),
    /// `("x-forwarded-host", original host as received)`.
    pub forwarded_host: (&'static str, &'a str),
    /// `(":authority", upstream host)`: Scalingo routes on the Host.
    pub authority: (&'static str, &'a str),
    /// `("origin", <scheme>://<upstream host>)` when the request's `Origin`
    /// was the original host's origin.
    pub origin: Option<(&'static str, String)>,
}

impl<'a> RouteEdits<'a> {
    /// The edits as `(name, value)` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        [self.cluster, self.forwarded_host, self.authority]
            .into_iter()
            .chain(self.origin.as_ref().map(|(n, v)| (*n, v.as_str())))
    }
}

/// Builds the [`RouteEdits`] for a request whose original `:authority` was
/// `original_host` and `Origin` was `origin`, going to `cluster` and
/// `upstream_host` (both validated by the caller: they come from the cache,
/// the sidecar or the configuration).
pub fn route_edits<'a>(
    config: &'a Config,
    original_host: &'a str,
    origin: Option<&str>,
    cluster: &'a str,
    upstream_host: &'a str,
) -> RouteEdits<'a> {
    RouteEdits {
        cluster: (config.routing_header.as_str(), cluster),
        forwarded_host: (FORWARDED_HOST, original_host),
        authority: (":authority", upstream_host),
        origin: origin
            .and_then(|o| {
                rewrite_origin(
                    o,
                    original_host,
                    config.upstream_scheme.as_str(),
                    upstream_host,
                )
            })
            .map(|o| ("origin", o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache;
    use paastis_rules::is_valid_app_name;
    use proptest::prelude::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            format!(
                r#"{{"sidecar_cluster":"sidecar","domains":["gw.example.com"],
                "host_rules":[{{"pattern":"([a-z0-9-]+)\\.secure\\.example\\.org","app":"$1","region":"osc-secnum-fr1"}}]
                {extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn decide_for<'c>(config: &'c Config, authority: &str) -> Decision<'c> {
        let pairs: [(&[u8], &[u8]); 1] = [(b":authority", authority.as_bytes())];
        decide(config, &RequestView::new(&config.routing_header, pairs))
    }

    #[test]
    fn decides() {
        let c = config("");
        assert_eq!(
            decide_for(&c, "My-App.gw.example.com:443"),
            Decision::Route(Target {
                app: "my-app".into(),
                region: None
            })
        );
        assert_eq!(
            decide_for(&c, "my-bank.secure.example.org"),
            Decision::Route(Target {
                app: "my-bank".into(),
                region: Some("osc-secnum-fr1")
            })
        );
        assert_eq!(
            decide_for(&c, "bad host"),
            Decision::Reply(LocalReply::new(ReplyKind::InvalidHost))
        );
        assert_eq!(
            decide_for(&c, "ab.gw.example.com"),
            Decision::Reply(LocalReply::new(ReplyKind::InvalidApp))
        );
        assert_eq!(
            decide_for(&c, "elsewhere.example.net"),
            Decision::Reply(LocalReply::new(ReplyKind::UnknownHost))
        );
        let pass = config(r#","unmatched_hosts":"pass""#);
        assert_eq!(
            decide_for(&pass, "elsewhere.example.net"),
            Decision::PassThrough
        );
        // Still refused: a bad host is never passed through.
        assert_eq!(
            decide_for(&pass, "a\u{0}b"),
            Decision::Reply(LocalReply::new(ReplyKind::InvalidHost))
        );
    }

    #[test]
    fn missing_or_binary_host_is_invalid() {
        let c = config("");
        let view = RequestView::new(&c.routing_header, Vec::<(&[u8], &[u8])>::new());
        assert_eq!(
            decide(&c, &view),
            Decision::Reply(LocalReply::new(ReplyKind::InvalidHost))
        );
        let pairs: [(&[u8], &[u8]); 1] = [(b":authority", b"\xffapp.gw.example.com")];
        let view = RequestView::new(&c.routing_header, pairs);
        assert_eq!(
            decide(&c, &view),
            Decision::Reply(LocalReply::new(ReplyKind::InvalidHost))
        );
    }

    #[test]
    fn edits() {
        let c = config("");
        let e = route_edits(
            &c,
            "my-app.gw.example.com",
            Some("https://my-app.gw.example.com"),
            "osc-fr1",
            "my-app.osc-fr1.scalingo.io",
        );
        let pairs: Vec<_> = e.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("x-paastis-cluster", "osc-fr1"),
                ("x-forwarded-host", "my-app.gw.example.com"),
                (":authority", "my-app.osc-fr1.scalingo.io"),
                ("origin", "https://my-app.osc-fr1.scalingo.io"),
            ]
        );
        let e = route_edits(
            &c,
            "my-app.gw.example.com",
            Some("https://other.example"),
            "c",
            "u.io",
        );
        assert_eq!(e.origin, None);
    }

    /// A model of the host: applies what the glue does with the pure
    /// functions to a header list, given what the cache holds.
    fn simulate(
        config: &Config,
        headers: &[(String, String)],
        cached: Option<&str>,
    ) -> (Vec<(String, String)>, Option<String>) {
        let buf = crate::headers::serialize_pairs(headers);
        let pairs = crate::headers::HeaderPairs::new(&buf).unwrap();
        let view = RequestView::new(&config.routing_header, pairs);
        let mut out: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| {
                !view
                    .strip
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(n.as_bytes()))
            })
            .cloned()
            .collect();
        let mut routed = None;
        if let Decision::Route(target) = decide(config, &view) {
            assert!(is_valid_app_name(&target.app), "{}", target.app);
            routed = Some(target.app.clone());
            let entry = cached.and_then(|v| cache::decode(v.as_bytes()).ok());
            if let (Some(entry), Some(original)) = (entry, view.authority_str()) {
                let edits = route_edits(
                    config,
                    original,
                    view.origin,
                    entry.cluster,
                    entry.upstream_host,
                );
                for (name, value) in edits.pairs() {
                    out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    out.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        (out, routed)
    }

    #[test]
    fn hostile_headers_on_a_hit() {
        let c = config("");
        let headers: Vec<(String, String)> = [
            (":authority", "my-app.gw.example.com"),
            ("x-paastis-cluster", "attacker-cluster"),
            ("X-PAASTIS-CLUSTER", "attacker-cluster"),
            ("x-paastis-whatever", "1"),
            ("x-forwarded-host", "evil.example.com"),
            ("origin", "https://my-app.gw.example.com"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let (out, routed) = simulate(
            &c,
            &headers,
            Some("99\nosc-fr1\nmy-app.osc-fr1.scalingo.io"),
        );
        assert_eq!(routed.as_deref(), Some("my-app"));
        let mut out: Vec<(&str, &str)> =
            out.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        out.sort();
        assert_eq!(
            out,
            [
                (":authority", "my-app.osc-fr1.scalingo.io"),
                ("origin", "https://my-app.osc-fr1.scalingo.io"),
                ("x-forwarded-host", "my-app.gw.example.com"),
                ("x-paastis-cluster", "osc-fr1"),
            ]
        );
        // A miss: the client's values are gone and nothing is set yet.
        let (out, _) = simulate(&c, &headers, None);
        assert!(out
            .iter()
            .all(|(n, _)| !n.to_ascii_lowercase().starts_with("x-paastis-")
                && !n.eq_ignore_ascii_case("x-forwarded-host")));
    }

    fn header_strategy() -> impl Strategy<Value = (String, String)> {
        let name = prop_oneof![
            Just(":authority".to_owned()),
            Just("host".to_owned()),
            Just("origin".to_owned()),
            Just("accept".to_owned()),
            Just("x-paastis-cluster".to_owned()),
            Just("X-Paastis-Cluster".to_owned()),
            Just("x-forwarded-host".to_owned()),
            "x-paastis-[a-z]{0,8}",
            "[a-zA-Z:-]{1,12}",
        ];
        let value = prop_oneof![
            Just("my-app.gw.example.com".to_owned()),
            Just("https://my-app.gw.example.com".to_owned()),
            "[a-z0-9-]{0,10}\\.gw\\.example\\.com(:[0-9]{1,5})?",
            "[a-z0-9-]{0,10}\\.secure\\.example\\.org",
            "\\PC{0,30}",
        ];
        (name, value)
    }

    proptest! {
        /// Whatever the client sends, the routing header and every
        /// `x-paastis-*` header are removed, and the routing header is only
        /// ever set from the cache (the sidecar path uses the same edits).
        #[test]
        fn routing_header_only_comes_from_the_cache(
            headers in prop::collection::vec(header_strategy(), 0..10),
            hit in any::<bool>(),
        ) {
            let c = config("");
            let cached = "99\nsecret-cluster\nmy-app.osc-fr1.scalingo.io";
            let (out, routed) = simulate(&c, &headers, hit.then_some(cached));
            let routing: Vec<_> = out.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-paastis-cluster")).collect();
            if hit && routed.is_some() {
                prop_assert_eq!(routing.len(), 1);
                prop_assert_eq!(routing[0].1.as_str(), "secret-cluster");
            } else {
                prop_assert!(routing.is_empty());
            }
            let internal = out.iter().filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-paastis-")).count();
            prop_assert_eq!(internal, routing.len());
            let forwarded = out.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-host")).count();
            prop_assert_eq!(forwarded, routing.len());
        }

        #[test]
        fn decide_never_panics_and_routes_only_valid_apps(
            headers in prop::collection::vec(header_strategy(), 0..10),
            pass in any::<bool>(),
        ) {
            let c = config(if pass { r#","unmatched_hosts":"pass""# } else { "" });
            let (_, routed) = simulate(&c, &headers, None);
            if let Some(app) = routed {
                prop_assert!(is_valid_app_name(&app));
            }
        }

        #[test]
        fn arbitrary_authorities(authority in prop::collection::vec(any::<u8>(), 0..80)) {
            let c = config("");
            let pairs: [(&[u8], &[u8]); 1] = [(b":authority", &authority)];
            let view = RequestView::new(&c.routing_header, pairs);
            match decide(&c, &view) {
                Decision::Route(t) => prop_assert!(is_valid_app_name(&t.app)),
                Decision::Reply(r) => prop_assert!(matches!(r.kind.status(), 400 | 404)),
                Decision::PassThrough => prop_assert!(false, "pass-through with unmatched_hosts: reject"),
            }
        }
    }
}

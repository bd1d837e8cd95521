//! Reading request headers: the proxy-wasm serialized header map, the
//! headers the filter strips from every request, and the few it reads.
//!
//! The filter reads the whole request header map with one host call and
//! walks it here, borrowing: no per-header allocation, and no assumption that
//! names or values are UTF-8 (the SDK's own map helpers panic on non-UTF-8).

use std::str;

use thiserror::Error;

/// Prefix of every header the filter uses for internal signalling. Every
/// inbound header with this prefix is removed, so a client can never send one.
pub const INTERNAL_PREFIX: &str = "x-paastis-";
/// Set by the filter to the host the client asked for.
pub const FORWARDED_HOST: &str = "x-forwarded-host";

/// A serialized header map that does not follow the proxy-wasm layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed serialized header map")]
pub struct HeaderMapError;

/// The pairs of a proxy-wasm serialized header map:
/// `u32 count`, then `count` pairs of `u32 name_len, u32 value_len`, then each
/// name and value followed by a NUL byte (all integers little-endian).
///
/// Invariant: [`HeaderPairs::new`] checked the whole layout, so iteration
/// never meets an out-of-range slice (and stops quietly if it somehow did).
#[derive(Debug, Clone)]
pub struct HeaderPairs<'a> {
    buf: &'a [u8],
    remaining: usize,
    /// Offset of the next size entry.
    size_at: usize,
    /// Offset of the next name.
    data_at: usize,
}

fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    let array: [u8; 4] = bytes.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(array)).ok()
}

impl<'a> HeaderPairs<'a> {
    /// Validates the layout of `buf`. An empty buffer is an empty map (what a
    /// host returns for a map without entries).
    pub fn new(buf: &'a [u8]) -> Result<Self, HeaderMapError> {
        if buf.is_empty() {
            return Ok(Self {
                buf,
                remaining: 0,
                size_at: 0,
                data_at: 0,
            });
        }
        let count = read_u32(buf, 0).ok_or(HeaderMapError)?;
        let data_start = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .ok_or(HeaderMapError)?;
        let mut data_at = data_start;
        for i in 0..count {
            let size_at = 4 + i * 8;
            for len_at in [size_at, size_at + 4] {
                let len = read_u32(buf, len_at).ok_or(HeaderMapError)?;
                let end = data_at.checked_add(len).ok_or(HeaderMapError)?;
                if buf.get(end) != Some(&0) {
                    return Err(HeaderMapError);
                }
                data_at = end + 1;
            }
        }
        if data_at > buf.len() {
            return Err(HeaderMapError);
        }
        Ok(Self {
            buf,
            remaining: count,
            size_at: 4,
            data_at: data_start,
        })
    }
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let name_len = read_u32(self.buf, self.size_at)?;
        let value_len = read_u32(self.buf, self.size_at + 4)?;
        let name_end = self.data_at.checked_add(name_len)?;
        let name = self.buf.get(self.data_at..name_end)?;
        let value_at = name_end + 1;
        let value_end = value_at.checked_add(value_len)?;
        let value = self.buf.get(value_at..value_end)?;
        self.size_at += 8;
        self.data_at = value_end + 1;
        self.remaining -= 1;
        Some((name, value))
    }
}

/// Serializes pairs in the proxy-wasm layout (what a host sends; used by
/// tests and by nothing on the request path).
pub fn serialize_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = u32::try_from(pairs.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in pairs {
        for part in [name.as_ref(), value.as_ref()] {
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

/// True for the headers the filter removes from every request before
/// anything else: the routing header, every `x-paastis-*` header, and
/// `x-forwarded-host` (re-set by the filter). Compared without regard to
/// case, as the host does when it removes them.
pub fn must_strip(name: &[u8], routing_header: &str) -> bool {
    name.eq_ignore_ascii_case(routing_header.as_bytes())
        || name.eq_ignore_ascii_case(FORWARDED_HOST.as_bytes())
        || name
            .get(..INTERNAL_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(INTERNAL_PREFIX.as_bytes()))
}

/// What the filter needs from the request headers, borrowed from the
/// serialized map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView<'a> {
    /// `:authority`, or `host` when `:authority` is absent or empty; as
    /// received (not normalised), maybe not UTF-8.
    pub authority: Option<&'a [u8]>,
    /// The first `Origin`, when it is UTF-8.
    pub origin: Option<&'a str>,
    /// True when an `Accept` header mentions `text/html` (a browser).
    pub wants_html: bool,
    /// `:path` as received (query included), maybe not UTF-8.
    pub path: Option<&'a [u8]>,
    /// True when `:method` is `GET`.
    pub is_get: bool,
    /// `x-request-id`, when it is a short visible-ASCII value (safe to copy
    /// into the callout).
    pub request_id: Option<&'a str>,
    /// Names of the inbound headers to remove (see [`must_strip`]), each once.
    pub strip: Vec<&'a [u8]>,
}

/// Longest `x-request-id` copied to the sidecar.
const REQUEST_ID_MAX: usize = 200;

impl<'a> RequestView<'a> {
    /// Walks the request headers once. Does not allocate unless the request
    /// carries headers to strip.
    pub fn new<I>(routing_header: &str, pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut view = Self::default();
        let mut host = None;
        for (name, value) in pairs {
            if must_strip(name, routing_header) {
                if !view.strip.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    view.strip.push(name);
                }
            } else if name.eq_ignore_ascii_case(b":authority") {
                if view.authority.is_none() && !value.is_empty() {
                    view.authority = Some(value);
                }
            } else if name == b":path" {
                view.path = Some(value);
            } else if name == b":method" {
                view.is_get = value == b"GET";
            } else if name.eq_ignore_ascii_case(b"host") {
                if host.is_none() && !value.is_empty() {
                    host = Some(value);
                }
            } else if name.eq_ignore_ascii_case(b"origin") {
                if view.origin.is_none() {
                    view.origin = str::from_utf8(value).ok();
                }
            } else if name.eq_ignore_ascii_case(b"accept") {
                view.wants_html |= contains_ignore_case(value, b"text/html");
            } else if name.eq_ignore_ascii_case(b"x-request-id")
                && view.request_id.is_none()
                && !value.is_empty()
                && value.len() <= REQUEST_ID_MAX
                && value.iter().all(u8::is_ascii_graphic)
            {
                view.request_id = str::from_utf8(value).ok();
            }
        }
        if view.authority.is_none() {
            view.authority = host;
        }
        view
    }

    /// The authority as a string, when it is UTF-8.
    pub fn authority_str(&self) -> Option<&'a str> {
        self.authority.and_then(|a| str::from_utf8(a).ok())
    }

    /// True for a browser navigating: a `GET` that accepts `text/html`.
    /// Only such a request may get the waiting page (reloading it repeats
    /// the request as it was).
    pub fn is_browser_get(&self) -> bool {
        self.wants_html && self.is_get
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    // `windows(0)` would panic.
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The value to give `Origin` on the way to the upstream: when the browser's
/// `Origin` is exactly the origin of the host it asked for
/// (`http(s)://<original host as received>`), the upstream's own origin
/// `<scheme>://<upstream_host>`, so that the app's CSRF checks see a
/// same-origin request. Any other `Origin` (another site, `null`) is left
/// alone: `None`.
pub fn rewrite_origin(
    origin: &str,
    original_host: &str,
    scheme: &str,
    upstream_host: &str,
) -> Option<String> {
    let (given_scheme, rest) = origin.split_once("://")?;
    let known_scheme =
        given_scheme.eq_ignore_ascii_case("https") || given_scheme.eq_ignore_ascii_case("http");
    (known_scheme && rest.eq_ignore_ascii_case(original_host))
        .then(|| format!("{scheme}://{upstream_host}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view<'a>(pairs: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
        RequestView::new(
            "x-paastis-cluster",
            pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn reads_what_it_needs() {
        let v = view(&[
            (":authority", "App-1.gw.example.com:8443"),
            ("host", "ignored.example.com"),
            ("origin", "https://app-1.gw.example.com:8443"),
            ("accept", "text/html,application/xhtml+xml"),
            (":method", "GET"),
            (":path", "/shop?page=2"),
            ("x-request-id", "abc-123"),
            ("x-paastis-cluster", "evil"),
            ("X-Paastis-Debug", "1"),
            ("x-forwarded-host", "evil.example.com"),
            ("x-paastis-cluster", "evil-again"),
        ]);
        assert_eq!(v.authority_str(), Some("App-1.gw.example.com:8443"));
        assert_eq!(v.origin, Some("https://app-1.gw.example.com:8443"));
        assert!(v.wants_html);
        assert!(v.is_browser_get());
        assert_eq!(v.path, Some(b"/shop?page=2".as_slice()));
        assert_eq!(v.request_id, Some("abc-123"));
        let strip: Vec<_> = v.strip.iter().map(|n| str::from_utf8(n).unwrap()).collect();
        assert_eq!(
            strip,
            ["x-paastis-cluster", "X-Paastis-Debug", "x-forwarded-host"]
        );
    }

    #[test]
    fn falls_back_to_host() {
        let v = view(&[(":authority", ""), ("host", "app-1.gw.example.com")]);
        assert_eq!(v.authority_str(), Some("app-1.gw.example.com"));
        let v = view(&[("accept", "application/json")]);
        assert_eq!(v.authority, None);
        assert!(!v.wants_html);
        assert_eq!(v.path, None);
        let v = view(&[("accept", "text/html"), (":method", "POST")]);
        assert!(v.wants_html && !v.is_browser_get());
    }

    #[test]
    fn refuses_unsafe_request_ids() {
        assert_eq!(view(&[("x-request-id", "a b")]).request_id, None);
        let long = "a".repeat(201);
        assert_eq!(view(&[("x-request-id", &long)]).request_id, None);
    }

    #[test]
    fn strips_custom_routing_header() {
        let pairs: [(&[u8], &[u8]); 2] = [(b"x-upstream", b"c"), (b"x-other", b"d")];
        let v = RequestView::new("x-upstream", pairs);
        assert_eq!(v.strip, [b"x-upstream".as_slice()]);
    }

    #[test]
    fn rewrites_only_the_same_origin() {
        let r = |o| {
            rewrite_origin(
                o,
                "app-1.gw.example.com",
                "https",
                "app-1.osc-fr1.scalingo.io",
            )
        };
        assert_eq!(
            r("https://app-1.gw.example.com").as_deref(),
            Some("https://app-1.osc-fr1.scalingo.io")
        );
        assert_eq!(
            r("http://APP-1.gw.example.com").as_deref(),
            Some("https://app-1.osc-fr1.scalingo.io")
        );
        assert_eq!(r("https://evil.example.com"), None);
        assert_eq!(r("https://app-1.gw.example.com.evil.com"), None);
        assert_eq!(r("ftp://app-1.gw.example.com"), None);
        assert_eq!(r("null"), None);
        assert_eq!(r("app-1.gw.example.com"), None);
        // The port is part of the host as received.
        assert_eq!(
            rewrite_origin("http://a.gw:8080", "a.gw:8080", "http", "b.io").as_deref(),
            Some("http://b.io")
        );
        assert_eq!(
            rewrite_origin("http://a.gw:8080", "a.gw", "http", "b.io"),
            None
        );
    }

    #[test]
    fn parses_serialized_maps() {
        let pairs = [(":authority", "a.example.com"), ("x", ""), ("", "v")];
        let buf = serialize_pairs(&pairs);
        let parsed: Vec<_> = HeaderPairs::new(&buf).unwrap().collect();
        let expected: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(parsed, expected);
        assert_eq!(HeaderPairs::new(&[]).unwrap().count(), 0);
        assert_eq!(
            HeaderPairs::new(&buf[..buf.len() - 1]).unwrap_err(),
            HeaderMapError
        );
        assert!(HeaderPairs::new(&[1, 0, 0]).is_err());
        assert!(HeaderPairs::new(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    proptest! {
        #[test]
        fn serialized_maps_round_trip(
            pairs in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..20), prop::collection::vec(any::<u8>(), 0..40)),
                0..20,
            )
        ) {
            let buf = serialize_pairs(&pairs);
            let parsed: Vec<(Vec<u8>, Vec<u8>)> = HeaderPairs::new(&buf)
                .unwrap()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            prop_assert_eq!(parsed, pairs);
        }

        /// Maps damaged on purpose (a valid map cut short or with one byte
        /// changed) as well as random bytes: both outcomes are reached.
        #[test]
        fn garbage_maps_never_panic(
            pairs in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 0..8), prop::collection::vec(any::<u8>(), 0..8)),
                0..6,
            ),
            damage in 0usize..4,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            random in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut buf = serialize_pairs(&pairs);
            match damage {
                0 => {}
                1 => buf.truncate(at.index(buf.len() + 1)),
                2 if !buf.is_empty() => {
                    let i = at.index(buf.len());
                    buf[i] = byte;
                }
                _ => buf = random,
            }
            match HeaderPairs::new(&buf) {
                Ok(parsed) => {
                    let mut total = 0;
                    for (name, value) in parsed {
                        total += name.len() + value.len();
                    }
                    prop_assert!(total <= buf.len());
                }
                // A map left whole always parses.
                Err(_) => prop_assert!(damage != 0),
            }
        }

        #[test]
        fn every_internal_header_is_stripped(
            names in prop::collection::vec("(x-paastis-|X-PAASTIS-|x-forwarded-|x-|)[a-zA-Z-]{0,12}", 0..12)
        ) {
            let pairs: Vec<(&[u8], &[u8])> = names.iter().map(|n| (n.as_bytes(), b"v".as_slice())).collect();
            let v = RequestView::new("x-route", pairs);
            for name in &names {
                let lower = name.to_ascii_lowercase();
                let expected = lower.starts_with("x-paastis-") || lower == "x-forwarded-host" || lower == "x-route";
                let stripped = v.strip.iter().any(|n| n.eq_ignore_ascii_case(name.as_bytes()));
                prop_assert_eq!(stripped, expected, "{}", name);
            }
        }

        /// The host's own origin is generated on purpose (in either scheme,
        /// in any case) as often as other sites and arbitrary text, and
        /// every input is checked against the rule: rewritten exactly when
        /// the `Origin` is `http(s)://` + the host, ASCII case aside.
        #[test]
        fn origin_is_rewritten_exactly_for_the_hosts_own_origin(
            host in "[a-zA-Z0-9.-]{1,20}(:[0-9]{1,5})?",
            kind in 0usize..6,
            other in "\\PC{0,40}",
        ) {
            let origin = match kind {
                0 => format!("https://{host}"),
                1 => format!("HTTP://{}", host.to_ascii_uppercase()),
                2 => format!("http://{}", host.to_ascii_lowercase()),
                3 => format!("https://{host}.other.example"),
                4 => format!("ftp://{host}"),
                _ => other,
            };
            let lower = (origin.to_ascii_lowercase(), host.to_ascii_lowercase());
            let same_origin = lower.0 == format!("https://{}", lower.1)
                || lower.0 == format!("http://{}", lower.1);
            let rewritten = rewrite_origin(&origin, &host, "https", "u.example.com");
            prop_assert_eq!(rewritten.is_some(), same_origin, "{} {}", origin, host);
            prop_assert!(kind > 2 || same_origin, "built as the host's own origin");
            if let Some(o) = rewritten {
                prop_assert_eq!(o, "https://u.example.com");
            }
        }

        #[test]
        fn origin_rewrite_never_panics(origin in "\\PC{0,40}", host in "\\PC{0,20}") {
            let rewritten = rewrite_origin(&origin, &host, "https", "u.example.com");
            prop_assert!(rewritten.is_none() || rewritten.as_deref() == Some("https://u.example.com"));
        }
    }
}

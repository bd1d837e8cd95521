//! The "awake" cache kept in proxy-wasm shared data (one store per VM id,
//! shared by every worker thread).
//!
//! Key: `paastis/app/<app>` where `<app>` is the app named by the host (a
//! valid Scalingo app name). Value: `<expiry_ms>\n<cluster>\n<upstream_host>`,
//! `expiry_ms` in milliseconds since the Unix epoch (the host clock, as read
//! by `get_current_time`).
//!
//! Entries are written only from a validated sidecar answer (wake or
//! activity), and every read validates again, so a corrupt or foreign value
//! is a miss, never a route.
//!
//! Shared data cannot be deleted; an entry is dropped by overwriting it:
//! - with an empty value when the sidecar says the app is not awake (an
//!   activity answer's `asleep`): a plain miss;
//! - with a tombstone `!<dropped_ms>` ([`tombstone`]) when the traffic
//!   showed the app not running (the router answered 502/503/504 for a
//!   routed request): a miss whose wake asks the sidecar to verify the app
//!   before trusting its memory ([`CacheError::Dropped`]).
//!
//! Neither is ever routed, not even stale.

use std::fmt::Write as _;
use std::str;

use paastis_rules::normalize_host;
use thiserror::Error;

use crate::config::is_cluster_name;

/// Prefix of every cache key.
pub const KEY_PREFIX: &str = "paastis/app/";

/// Why a cache value was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CacheError {
    #[error("cache value is not UTF-8")]
    NotUtf8,
    #[error("cache value does not have three lines")]
    Shape,
    #[error("cache value has an invalid expiry")]
    Expiry,
    #[error("cache value has an invalid cluster")]
    Cluster,
    #[error("cache value has an invalid upstream host")]
    UpstreamHost,
    /// Dropped on the sidecar's word (a plain miss, not a corruption).
    #[error("cache entry dropped")]
    Empty,
    /// Dropped because the traffic showed the app not running.
    #[error("cache entry dropped by the traffic")]
    Dropped,
}

impl CacheError {
    /// True for a value the filter itself wrote to drop the entry (not
    /// worth a warning).
    pub fn is_drop(self) -> bool {
        matches!(self, Self::Empty | Self::Dropped)
    }
}

/// One decoded entry, borrowed from the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheEntry<'a> {
    pub expiry_ms: u64,
    /// A valid cluster name.
    pub cluster: &'a str,
    /// A valid upstream host (see [`is_upstream_host`]).
    pub upstream_host: &'a str,
}

impl CacheEntry<'_> {
    /// True while the entry may be used (strictly before its expiry).
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expiry_ms
    }

    /// True while an expired entry may still route when the sidecar cannot
    /// be reached (strictly before `expiry + stale_ttl_ms`; never with a
    /// `stale_ttl_ms` of 0).
    pub fn is_usable_stale(&self, now_ms: u64, stale_ttl_ms: u64) -> bool {
        now_ms < self.expiry_ms.saturating_add(stale_ttl_ms)
    }

    /// True when the entry was written before `at_ms` (entries live
    /// `cache_ttl_ms` from their write): an answer computed after `at_ms`
    /// may overrule it, not a newer entry.
    pub fn written_before(&self, at_ms: u64, cache_ttl_ms: u64) -> bool {
        self.expiry_ms < at_ms.saturating_add(cache_ttl_ms)
    }
}

/// The value that drops an entry because the traffic showed the app not
/// running (see the module's documentation).
pub fn tombstone(now_ms: u64) -> String {
    format!("!{now_ms}")
}

/// Writes the key of `app` into `buf` (cleared first), so that the hot path
/// can reuse one buffer instead of allocating a key per request.
pub fn write_key(buf: &mut String, app: &str) {
    buf.clear();
    buf.push_str(KEY_PREFIX);
    buf.push_str(app);
}

/// The key of `app`.
pub fn key(app: &str) -> String {
    let mut buf = String::with_capacity(KEY_PREFIX.len() + app.len());
    write_key(&mut buf, app);
    buf
}

/// Encodes an entry. The caller passes values that passed validation (a
/// cluster from the configuration, an upstream host from a checked answer).
pub fn encode(expiry_ms: u64, cluster: &str, upstream_host: &str) -> String {
    let mut out = String::with_capacity(24 + cluster.len() + upstream_host.len());
    // Writing to a String cannot fail.
    let _ = write!(out, "{expiry_ms}\n{cluster}\n{upstream_host}");
    out
}

/// Decodes and validates an entry, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<CacheEntry<'_>, CacheError> {
    if bytes.is_empty() {
        return Err(CacheError::Empty);
    }
    if bytes.first() == Some(&b'!') {
        return Err(CacheError::Dropped);
    }
    let text = str::from_utf8(bytes).map_err(|_| CacheError::NotUtf8)?;
    let mut lines = text.split('\n');
    let (Some(expiry), Some(cluster), Some(upstream_host), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(CacheError::Shape);
    };
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CacheError::Expiry);
    }
    let expiry_ms = expiry.parse().map_err(|_| CacheError::Expiry)?;
    if !is_cluster_name(cluster) {
        return Err(CacheError::Cluster);
    }
    if !is_upstream_host(upstream_host) {
        return Err(CacheError::UpstreamHost);
    }
    Ok(CacheEntry {
        expiry_ms,
        cluster,
        upstream_host,
    })
}

/// True for a host the filter may send traffic to and put in `:authority`:
/// already normalised (lower-case, no trailing dot), a DNS name or IPv4
/// address, and without a port.
pub fn is_upstream_host(host: &str) -> bool {
    !host.contains(':') && normalize_host(host).is_ok_and(|n| n == host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let value = encode(1_700_000_000_123, "osc-fr1", "my-app.osc-fr1.scalingo.io");
        assert_eq!(value, "1700000000123\nosc-fr1\nmy-app.osc-fr1.scalingo.io");
        let entry = decode(value.as_bytes()).unwrap();
        assert_eq!(entry.expiry_ms, 1_700_000_000_123);
        assert_eq!(entry.cluster, "osc-fr1");
        assert_eq!(entry.upstream_host, "my-app.osc-fr1.scalingo.io");
        assert!(entry.is_fresh(1_700_000_000_122));
        assert!(!entry.is_fresh(1_700_000_000_123));
        assert_eq!(key("my-app"), "paastis/app/my-app");
        let mut buf = String::from("junk");
        write_key(&mut buf, "other-app");
        assert_eq!(buf, "paastis/app/other-app");
    }

    #[test]
    fn refuses_corrupt_values() {
        let cases: [(&[u8], CacheError); 10] = [
            (b"", CacheError::Empty),
            (b"!1700000000000", CacheError::Dropped),
            (b"1\nc", CacheError::Shape),
            (b"1\nc\nh.io\nextra", CacheError::Shape),
            (b"x\nc\nh.io", CacheError::Expiry),
            (b"+1\nc\nh.io", CacheError::Expiry),
            (b"99999999999999999999999\nc\nh.io", CacheError::Expiry),
            (b"1\n\nh.io", CacheError::Cluster),
            (b"1\nc\nh.io:443", CacheError::UpstreamHost),
            (b"1\nc\n\xff", CacheError::NotUtf8),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(bytes), Err(expected), "{bytes:?}");
        }
        assert_eq!(decode(b"1\nc\nH.io"), Err(CacheError::UpstreamHost));
        assert_eq!(decode(b"1\nc d\nh.io"), Err(CacheError::Cluster));
    }

    #[test]
    fn stale_and_write_time() {
        let value = encode(10_000, "osc-fr1", "my-app.osc-fr1.scalingo.io");
        let entry = decode(value.as_bytes()).unwrap();
        assert!(!entry.is_usable_stale(10_000, 0), "0 turns stale off");
        assert!(entry.is_usable_stale(10_000, 5_000));
        assert!(entry.is_usable_stale(14_999, 5_000));
        assert!(!entry.is_usable_stale(15_000, 5_000));
        // Written at 9,000 with a TTL of 1,000.
        assert!(entry.written_before(9_001, 1_000));
        assert!(!entry.written_before(9_000, 1_000));
        assert_eq!(decode(tombstone(5).as_bytes()), Err(CacheError::Dropped));
        assert!(CacheError::Dropped.is_drop() && CacheError::Empty.is_drop());
        assert!(!CacheError::Shape.is_drop());
    }

    #[test]
    fn upstream_hosts() {
        assert!(is_upstream_host("my-app.osc-fr1.scalingo.io"));
        assert!(is_upstream_host("127.0.0.1"));
        for bad in [
            "", "a.io:443", "A.io", "a.io.", "::1", "[::1]", "a..io", "a b", "a/b",
        ] {
            assert!(!is_upstream_host(bad), "{bad}");
        }
    }

    proptest! {
        /// Entries damaged on purpose (a valid one cut short or with one
        /// byte changed) as well as random bytes: both outcomes are reached,
        /// and whatever decodes is valid.
        #[test]
        fn decode_never_panics(
            expiry in any::<u64>(),
            cluster in "[a-z0-9_.-]{1,12}",
            host in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}",
            damage in 0usize..4,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            random in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = encode(expiry, &cluster, &host).into_bytes();
            match damage {
                0 => {}
                1 => bytes.truncate(at.index(bytes.len() + 1)),
                2 => {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                _ => bytes = random,
            }
            match decode(&bytes) {
                Ok(entry) => {
                    prop_assert!(is_cluster_name(entry.cluster));
                    prop_assert!(is_upstream_host(entry.upstream_host));
                }
                // A whole entry of a valid cluster and host always decodes.
                Err(e) => prop_assert!(damage != 0, "{:?}", e),
            }
        }

        #[test]
        fn valid_entries_round_trip(
            expiry in any::<u64>(),
            cluster in "[a-z0-9_.-]{1,30}",
            host in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
        ) {
            let value = encode(expiry, &cluster, &host);
            let entry = decode(value.as_bytes()).unwrap();
            prop_assert_eq!(entry, CacheEntry { expiry_ms: expiry, cluster: &cluster, upstream_host: &host });
        }
    }
}

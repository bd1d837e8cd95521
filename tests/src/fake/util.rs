//! Small helpers: random ids, ISO-8601 dates, fake JWTs and the app-name rule.
//!
//! Nothing here needs to be cryptographically strong: ids and JWT signatures
//! only have to be unique and unpredictable enough that a client cannot rely
//! on them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A random 64-bit value (std's per-process random hasher keys, a counter and
/// the clock). Two calls never hash the same counter value.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(unix_duration(SystemTime::now()).as_nanos());
    hasher.finish()
}

/// `len` random lower-case hex digits.
pub(crate) fn random_hex(len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        out.push_str(&format!("{:016x}", random_u64()));
    }
    out.truncate(len);
    out
}

/// A uuid-shaped random hex string (`8-4-4-4-12`), used for `X-Request-Id`.
pub(crate) fn uuid_like() -> String {
    let hex = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A 24-hex-digit opaque id, the shape Scalingo uses for apps and operations.
pub(crate) fn object_id() -> String {
    random_hex(24)
}

fn unix_duration(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
}

/// Seconds since the Unix epoch, rounded up (so that `exp` is never earlier
/// than the instant the fake really stops accepting the token).
pub(crate) fn unix_secs_ceil(t: SystemTime) -> u64 {
    let d = unix_duration(t);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// ISO-8601 UTC with milliseconds: `2021-03-19T15:01:25.088Z`.
pub fn iso_ms(t: SystemTime) -> String {
    let d = unix_duration(t);
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 -> (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y + 1 } else { y };
    // Both are in range by construction.
    (y, m as u32, d as u32)
}

/// Scalingo's app-name rule: 6 to 48 characters, `^[a-z0-9]+(-[a-z0-9]+)*$`.
pub fn is_valid_app_name(name: &str) -> bool {
    (6..=48).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A JWT-shaped token: `base64url(header).base64url(payload).base64url(sig)`.
///
/// The signature is random bytes: the fake recognises its tokens by keeping
/// every one it issued, and clients are only expected to decode `exp`.
pub(crate) fn make_jwt(iat: SystemTime, exp: Option<u64>) -> String {
    let header = serde_json::json!({ "alg": "HS512", "typ": "JWT" });
    let mut payload = serde_json::json!({
        "iat": unix_duration(iat).as_secs(),
        "iss": "fake-scalingo",
        "uuid": uuid_like(),
    });
    if let Some(exp) = exp {
        payload["exp"] = exp.into();
    }
    let sig: Vec<u8> = (0..4).flat_map(|_| random_u64().to_le_bytes()).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_have_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_616_166_085_088);
        assert_eq!(iso_ms(t), "2021-03-19T15:01:25.088Z");
        assert_eq!(iso_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso_ms(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn app_name_rule() {
        for ok in ["my-app", "abcdef", "a1-b2-c3", "parent-app-pr12"] {
            assert!(is_valid_app_name(ok), "{ok}");
        }
        for bad in [
            "short", "-myapp", "myapp-", "my--app", "MyApp1", "my_app", "my.app1",
        ] {
            assert!(!is_valid_app_name(bad), "{bad}");
        }
        assert!(is_valid_app_name(&"a".repeat(48)));
        assert!(!is_valid_app_name(&"a".repeat(49)));
    }

    #[test]
    fn ids_are_distinct_and_shaped() {
        let a = object_id();
        assert_eq!(a.len(), 24);
        assert_ne!(a, object_id());
        assert_eq!(uuid_like().len(), 36);
    }

    #[test]
    fn jwt_payload_has_exp() {
        let jwt = make_jwt(SystemTime::now(), Some(42));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(v["exp"], 42);
        let jwt = make_jwt(SystemTime::now(), None);
        let payload = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).expect("payload"))
            .expect("base64url");
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert!(v.get("exp").is_none());
    }
}

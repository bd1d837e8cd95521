//! Secrets and the cached JWT.
//!
//! Scalingo exchanges the long-lived API token for a JWT valid about one hour.
//! `TokenCache` keeps one JWT for every caller: its tokio mutex is held
//! across the exchange, so concurrent callers wait for (and share) a single
//! exchange instead of each sending their own. The HTTP call itself lives in
//! the client; this module only decides when one is needed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::ScalingoError;

/// Exchange again this long before the JWT's `exp` (or a tenth of its
/// remaining life when that is shorter, for short-lived tokens).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long a JWT without a readable `exp` is reused (the real ones last ~1 h).
pub const LIFETIME_WITHOUT_EXP: Duration = Duration::from_secs(55 * 60);
/// Shortest reuse of a fresh JWT, so a skewed clock (an `exp` that already
/// looks past) cannot make every call exchange again; a 401 still forces a
/// re-exchange.
pub const MIN_REUSE: Duration = Duration::from_secs(30);

/// A secret string (API token, JWT). `Debug` and `Display` print
/// `[redacted]`; the value is only reachable through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The secret itself: only to put it in a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// The `exp` claim (seconds since the epoch) of a JWT, read from its payload
/// without checking the signature: we only need to know when to renew it, and
/// the server remains the judge of its validity.
pub fn jwt_exp(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a JWT has exactly three parts
                   // Tolerate padding, which some encoders add although JWTs should not carry it.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(|e| e as u64)
    })
}

/// When to exchange again a JWT obtained at `now` (`now_unix` seconds since
/// the epoch), given its `exp`.
pub fn refresh_deadline(now: Instant, now_unix: u64, exp: Option<u64>) -> Instant {
    let reuse = match exp {
        None => LIFETIME_WITHOUT_EXP,
        Some(exp) => {
            let remaining = Duration::from_secs(exp.saturating_sub(now_unix));
            let margin = REFRESH_MARGIN.min(remaining / 10);
            remaining.saturating_sub(margin).max(MIN_REUSE)
        }
    };
    now + reuse
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct CachedJwt {
    token: Secret,
    refresh_at: Instant,
}

/// One JWT shared by every caller, exchanged on demand.
#[derive(Default)]
pub(crate) struct TokenCache {
    state: Mutex<Option<CachedJwt>>,
}

impl TokenCache {
    /// The current JWT, exchanging a new one (through `exchange`) when there
    /// is none or it is due for renewal. Concurrent callers share one exchange.
    pub async fn get<F, Fut>(&self, exchange: F) -> Result<Secret, ScalingoError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Secret, ScalingoError>>,
    {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.as_ref() {
            if Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        Self::exchange_into(&mut state, exchange).await
    }

    /// `rejected` was refused with a 401: exchange a new JWT, unless another
    /// caller already replaced it (then that newer JWT is returned, so a burst
    /// of 401s costs one exchange, not one each).
    pub async fn renew<F, Fut>(
        &self,
        rejected: &Secret,
        exchange: F,
    ) -> Result<Secret, ScalingoError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Secret, ScalingoError>>,
    {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.as_ref() {
            if cached.token != *rejected && Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        Self::exchange_into(&mut state, exchange).await
    }

    async fn exchange_into<F, Fut>(
        state: &mut Option<CachedJwt>,
        exchange: F,
    ) -> Result<Secret, ScalingoError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Secret, ScalingoError>>,
    {
        // Drop the old JWT first: if the exchange fails, nobody reuses a token
        // we already decided not to trust.
        *state = None;
        let token = exchange().await?;
        let exp = jwt_exp(token.expose());
        let refresh_at = refresh_deadline(Instant::now(), unix_now(), exp);
        tracing::debug!(
            has_exp = exp.is_some(),
            reuse_secs = refresh_at
                .saturating_duration_since(Instant::now())
                .as_secs(),
            "exchanged the Scalingo API token for a JWT"
        );
        *state = Some(CachedJwt {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn secret_is_redacted() {
        let secret = Secret::from("tk-us-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
        assert_eq!(secret.expose(), "tk-us-very-secret");
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            jwt_exp(&jwt(r#"{"sub":"u","exp":1700000000}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(
            jwt_exp(&jwt(r#"{"exp":1700000000.5}"#)),
            Some(1_700_000_000)
        );
        // Padded payload.
        let padded = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":42}"#)
        );
        assert_eq!(jwt_exp(&padded), Some(42));
    }

    #[test]
    fn exp_missing_or_garbage_is_none() {
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"u"}"#)), None);
        assert_eq!(jwt_exp(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(jwt_exp(&jwt(r#"{"exp":-5}"#)), None);
        assert_eq!(jwt_exp(&jwt("not json")), None);
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp("a.b"), None);
        assert_eq!(jwt_exp("a.!!!.c"), None);
        assert_eq!(jwt_exp("a.b.c.d"), None);
    }

    #[test]
    fn refresh_deadline_rules() {
        let now = Instant::now();
        let unix = 1_000_000;
        // One hour: renewed five minutes before exp.
        assert_eq!(
            refresh_deadline(now, unix, Some(unix + 3600)),
            now + Duration::from_secs(3300)
        );
        // No exp: ~55 minutes.
        assert_eq!(
            refresh_deadline(now, unix, None),
            now + LIFETIME_WITHOUT_EXP
        );
        // Short-lived: a tenth of the life as margin.
        assert_eq!(
            refresh_deadline(now, unix, Some(unix + 600)),
            now + Duration::from_secs(540)
        );
        // Already expired by our clock: still reused briefly.
        assert_eq!(
            refresh_deadline(now, unix, Some(unix - 10)),
            now + MIN_REUSE
        );
    }

    // On the paused clock: the exchange's 20 ms only make the callers
    // overlap, they take no real time.
    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_exchange() {
        let cache = Arc::new(TokenCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    cache
                        .get(|| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(Secret::from("jwt-1"))
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().expose(), "jwt-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn renew_exchanges_once_per_rejected_token() {
        let cache = TokenCache::default();
        let first = cache
            .get(|| async { Ok(Secret::from("jwt-1")) })
            .await
            .unwrap();
        let second = cache
            .renew(&first, || async { Ok(Secret::from("jwt-2")) })
            .await
            .unwrap();
        assert_eq!(second.expose(), "jwt-2");
        // A late caller still holding jwt-1 gets jwt-2 without another exchange.
        let late = cache
            .renew(&first, || async { panic!("must not exchange again") })
            .await
            .unwrap();
        assert_eq!(late.expose(), "jwt-2");
    }

    #[tokio::test]
    async fn failed_exchange_is_not_cached() {
        let cache = TokenCache::default();
        let err = cache
            .get(|| async { Err(ScalingoError::Unauthorized) })
            .await
            .unwrap_err();
        assert_eq!(err, ScalingoError::Unauthorized);
        let ok = cache
            .get(|| async { Ok(Secret::from("jwt")) })
            .await
            .unwrap();
        assert_eq!(ok.expose(), "jwt");
    }
}

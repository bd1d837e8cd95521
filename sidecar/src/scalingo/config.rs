//! What the operator configures ([`ScalingoConfig`]) and the timing knobs
//! with their defaults ([`ScalingoTuning`], [`RetryPolicy`]).
//!
//! Plain data: this module depends on no other module of the client, so
//! every one of them may read it.

use std::time::Duration;

use url::Url;

use super::auth::Secret;

/// Scalingo's authentication service, which exchanges API tokens and lists regions.
pub const DEFAULT_AUTH_URL: &str = "https://auth.scalingo.com";
/// Default bound on one HTTP call (connect + response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of tries for a call answered 429/503 (the first try included).
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;
/// Default delay before the first retry; it doubles on each further retry.
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// Default cap on one retry delay (also caps a `Retry-After`).
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// Default time during which a full scan of the regions answers "not found"
/// for any name it did not see, so bogus names cannot trigger a listing per request.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Default longest pause between two polls of an operation (official clients
/// poll about every second); the first polls come faster, see
/// [`super::polling::operation_poll_delay`].
pub const DEFAULT_OPERATION_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How calls answered 429 (rate limited) or 503 (unavailable) are retried
/// (also 502/504 and transport errors of idempotent calls, and connect
/// errors of any call; never a timed-out call).
///
/// The delay before retry `n` (1-based) is `base_delay * 2^(n-1)`, capped at
/// `max_delay`, plus up to 20 % jitter; a `Retry-After` (delay-seconds or
/// HTTP-date) replaces it (still capped). After `attempts` tries the last
/// answer becomes [`ScalingoError::RateLimited`](super::ScalingoError::RateLimited)
/// or [`ScalingoError::Server`](super::ScalingoError::Server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included; at least 1.
    pub attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Cap on any one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: DEFAULT_RETRY_ATTEMPTS,
            base_delay: DEFAULT_RETRY_BASE_DELAY,
            max_delay: DEFAULT_RETRY_MAX_DELAY,
        }
    }
}

/// Everything the client needs from the operator. Tuning knobs with sane
/// defaults live apart, in [`ScalingoTuning`].
#[derive(Debug, Clone)]
pub struct ScalingoConfig {
    /// Long-lived API token (`tk-us-...`), only ever sent to `auth_url`.
    pub api_token: Secret,
    /// Base of the authentication service (`https://auth.scalingo.com`).
    pub auth_url: Url,
    /// Restrict the client to these regions; `None` = every region `/v1/regions` lists.
    /// A name here that `/v1/regions` does not list makes [`ScalingoClient::regions`](super::ScalingoClient::regions)
    /// (and so every call needing a region) fail with
    /// [`ScalingoError::UnknownRegion`](super::ScalingoError::UnknownRegion): a configuration error, surfaced loudly.
    pub regions: Option<Vec<String>>,
    /// Bound on each HTTP call.
    pub request_timeout: Duration,
    /// `User-Agent` sent with every call.
    pub user_agent: String,
}

impl ScalingoConfig {
    /// The defaults: Scalingo's auth URL, every region, 10 s per call.
    pub fn new(api_token: impl Into<Secret>) -> Self {
        Self {
            api_token: api_token.into(),
            auth_url: Url::parse(DEFAULT_AUTH_URL).expect("DEFAULT_AUTH_URL is a valid URL"),
            regions: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            user_agent: concat!("paastis-sidecar/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// How long a call waits for a slot of the API budget when its caller gave
/// no deadline ([`ScalingoClient::with_deadline`](super::ScalingoClient::with_deadline)).
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(30);

/// Timing knobs; the defaults suit the real API, tests shorten them
/// (see [`ScalingoClient::with_tuning`](super::ScalingoClient::with_tuning)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingoTuning {
    /// Retries of 429/503 answers (default: 3 tries, 1 s then 2 s apart).
    pub retry: RetryPolicy,
    /// See [`DEFAULT_NEGATIVE_TTL`] (default 30 s).
    pub negative_ttl: Duration,
    /// Longest pause between polls in [`ScalingoClient::wait_operation`](super::ScalingoClient::wait_operation)
    /// (default 1 s); the first ones are a quarter of it.
    pub operation_poll_interval: Duration,
}

impl Default for ScalingoTuning {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            operation_poll_interval: DEFAULT_OPERATION_POLL_INTERVAL,
        }
    }
}

//! The one retry policy of the client: which answers and errors are tried
//! again, how long to wait before each new try, and how a `Retry-After` is read.
//!
//! The pauses run on tokio's clock, so a test with `tokio::time::pause()`
//! sees them without waiting.

use std::future::Future;
use std::time::Duration;

use super::config::RetryPolicy;

/// What one try gave: a final value, or one that another try may improve.
pub(crate) enum Tried<T> {
    /// Return it as is.
    Final(T),
    /// Try again if the policy allows, after `retry_after` (capped) when the
    /// server gave one; once tries run out, this value is returned.
    Retryable {
        value: T,
        retry_after: Option<Duration>,
    },
}

/// Runs `attempt` (given the 1-based try number) until it gives a
/// [`Tried::Final`] value or `policy.attempts` tries were made, pausing
/// between tries as [`RetryPolicy`] says. `on_retry` sees each value that is
/// about to be retried, its try number and the pause before the next try.
pub(crate) async fn retrying<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
    mut on_retry: impl FnMut(&T, u32, Duration),
) -> T
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Tried<T>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Tried::Final(value) => return value,
            Tried::Retryable { value, retry_after } => {
                if n >= policy.attempts {
                    return value;
                }
                let delay = retry_delay(policy, n, retry_after);
                on_retry(&value, n, delay);
                tokio::time::sleep(delay).await;
                n += 1;
            }
        }
    }
}

/// True when an answer with this status is worth another try: 429 and 503
/// always (the request was refused before any work), 502 and 504 only for an
/// idempotent call (the request may have been handled).
pub(crate) fn status_is_retryable(status: u16, idempotent: bool) -> bool {
    match status {
        429 | 503 => true,
        502 | 504 => idempotent,
        _ => false,
    }
}

/// True when a call that got no answer is worth another try: a connect error
/// always (nothing was sent), another error only for an idempotent call, and
/// never a timed-out call (it would likely time out again and multiply the
/// caller's wait).
pub(crate) fn transport_error_is_retryable(e: &reqwest::Error, idempotent: bool) -> bool {
    !e.is_timeout() && (e.is_connect() || idempotent)
}

/// The `Retry-After` delay in seconds, if any.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Delay before retry number `attempt` (1 = the first retry).
fn retry_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = match retry_after {
        Some(after) => after,
        None => policy
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16)),
    };
    let delay = base.min(policy.max_delay);
    delay + jitter(delay / 5)
}

/// Up to `max` of jitter, so that callers rate limited together do not all
/// come back at the same instant (no RNG crate: the clock's nanoseconds do).
fn jitter(max: Duration) -> Duration {
    let max_nanos = max.as_nanos() as u64;
    if max_nanos == 0 {
        return Duration::ZERO;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_nanos(nanos % max_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        };
        let within = |d: Duration, lo: u64| {
            d >= Duration::from_secs(lo) && d <= Duration::from_secs(lo) * 6 / 5
        };
        assert!(within(retry_delay(&policy, 1, None), 1));
        assert!(within(retry_delay(&policy, 2, None), 2));
        assert!(within(retry_delay(&policy, 3, None), 3));
        assert!(within(retry_delay(&policy, 30, None), 3));
        assert!(within(
            retry_delay(&policy, 1, Some(Duration::from_secs(2))),
            2
        ));
        assert!(within(
            retry_delay(&policy, 1, Some(Duration::from_secs(60))),
            3
        ));
    }
}

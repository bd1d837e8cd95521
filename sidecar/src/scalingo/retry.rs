//! The one retry policy of the client ([`RetryPolicy`] run by `backon`):
//! which answers and errors are tried again, how long to wait before each
//! new try, and how a `Retry-After` is read.
//!
//! The pauses run on tokio's clock (`tokio::time::sleep`), so a test with
//! `tokio::time::pause()` sees them without waiting.

use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

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

/// A retryable value on its way through `backon` (which retries errors).
struct Again<T> {
    value: T,
    retry_after: Option<Duration>,
    /// 1-based number of the try that gave it.
    attempt: u32,
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
    let mut tries = 0;
    let outcome = (|| {
        tries += 1;
        let n = tries;
        let tried = attempt(n);
        async move {
            match tried.await {
                Tried::Final(value) => Ok(value),
                Tried::Retryable { value, retry_after } => Err(Again {
                    value,
                    retry_after,
                    attempt: n,
                }),
            }
        }
    })
    .retry(backoff(policy))
    .sleep(tokio::time::sleep)
    // `None` means the back-off is spent: no more tries, whatever the server said.
    .adjust(|again: &Again<T>, delay| delay.map(|d| pause(policy, d, again.retry_after)))
    .notify(|again: &Again<T>, delay| on_retry(&again.value, again.attempt, delay))
    .await;
    match outcome {
        Ok(value) | Err(Again { value, .. }) => value,
    }
}

/// The pauses between tries, before jitter: `attempts - 1` of them,
/// `base_delay` then doubling, each capped at `max_delay`.
fn backoff(policy: &RetryPolicy) -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
    let max = policy.max_delay;
    let retries = usize::try_from(policy.attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    ExponentialBuilder::new()
        .with_min_delay(policy.base_delay)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(retries)
        .build()
        // The first pause is `base_delay` as is, even above the cap.
        .map(move |delay| delay.min(max))
}

/// The pause before a retry: the back-off's, or the server's `Retry-After`
/// when it gave one, capped at `max_delay`, plus up to 20 % jitter so that
/// callers rate limited together do not all come back at the same instant.
fn pause(policy: &RetryPolicy, backoff: Duration, retry_after: Option<Duration>) -> Duration {
    let delay = retry_after.unwrap_or(backoff).min(policy.max_delay);
    delay + jitter(delay / 5)
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=max_nanos))
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

/// How a call that got no answer failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendFailure {
    /// The per-request timeout passed.
    Timeout,
    /// No connection was made: nothing was sent.
    Connect,
    /// Anything else (reset, broken body ...): the request may have been handled.
    Other,
}

impl SendFailure {
    pub fn of(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect
        } else {
            Self::Other
        }
    }

    /// True when another try is worth it: a connect error always, another
    /// error only for an idempotent call, and never a timed-out call (it
    /// would likely time out again and multiply the caller's wait).
    pub fn is_retryable(self, idempotent: bool) -> bool {
        match self {
            Self::Timeout => false,
            Self::Connect => true,
            Self::Other => idempotent,
        }
    }
}

/// The delay a `Retry-After` header asks for, given as delay-seconds or as
/// an HTTP-date (a date already past asks for no delay); `None` when the
/// value is neither. The caller caps it.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: SECOND,
            max_delay: 8 * SECOND,
        }
    }

    /// `d` is `at_least` plus at most 20 % jitter.
    fn jittered(d: Duration, at_least: Duration) -> bool {
        d >= at_least && d <= at_least + at_least / 5
    }

    /// Runs `retrying` with tries that give `outcome(n)`; returns the value
    /// and the time (on tokio's clock) at which each try started.
    async fn run(
        policy: &RetryPolicy,
        outcome: impl Fn(u32) -> Tried<u32>,
    ) -> (u32, Vec<Duration>) {
        let start = Instant::now();
        let mut starts = Vec::new();
        let value = retrying(
            policy,
            |n| {
                starts.push(start.elapsed());
                let tried = outcome(n);
                async move { tried }
            },
            |_, _, _| {},
        )
        .await;
        (value, starts)
    }

    fn retryable(n: u32) -> Tried<u32> {
        Tried::Retryable {
            value: n,
            retry_after: None,
        }
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        let policy = RetryPolicy {
            attempts: 31,
            base_delay: SECOND,
            max_delay: 3 * SECOND,
        };
        let delays: Vec<Duration> = backoff(&policy).map(|d| pause(&policy, d, None)).collect();
        assert_eq!(delays.len(), 30, "one pause between two tries");
        assert!(jittered(delays[0], SECOND));
        assert!(jittered(delays[1], 2 * SECOND));
        assert!(jittered(delays[2], 3 * SECOND));
        assert!(jittered(delays[29], 3 * SECOND));
        assert!(jittered(
            pause(&policy, SECOND, Some(2 * SECOND)),
            2 * SECOND
        ));
        assert!(jittered(
            pause(&policy, SECOND, Some(60 * SECOND)),
            3 * SECOND
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_values_are_tried_attempts_times_with_doubling_pauses() {
        let (value, starts) = run(&policy(4), retryable).await;
        assert_eq!(value, 4, "the last try's value is returned");
        assert_eq!(starts.len(), 4);
        let pauses: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (pause, expected) in pauses.iter().zip([SECOND, 2 * SECOND, 4 * SECOND]) {
            assert!(jittered(*pause, expected), "{pause:?} for {expected:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_are_capped_at_max_delay() {
        let capped = RetryPolicy {
            attempts: 6,
            base_delay: SECOND,
            max_delay: 3 * SECOND,
        };
        let (_, starts) = run(&capped, retryable).await;
        let pauses: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        let expected = [SECOND, 2 * SECOND, 3 * SECOND, 3 * SECOND, 3 * SECOND];
        assert_eq!(pauses.len(), expected.len());
        for (pause, expected) in pauses.iter().zip(expected) {
            assert!(jittered(*pause, expected), "{pause:?} for {expected:?}");
        }
        // A base delay above the cap is capped too.
        let odd = RetryPolicy {
            attempts: 2,
            base_delay: 10 * SECOND,
            max_delay: 2 * SECOND,
        };
        let (_, starts) = run(&odd, retryable).await;
        assert!(jittered(starts[1] - starts[0], 2 * SECOND), "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_value_ends_at_once() {
        let (value, starts) = run(&policy(3), |n| {
            if n == 2 {
                Tried::Final(20)
            } else {
                retryable(n)
            }
        })
        .await;
        assert_eq!(value, 20);
        assert_eq!(starts.len(), 2);

        let (value, starts) = run(&policy(3), |_| Tried::Final(7)).await;
        assert_eq!((value, starts), (7, vec![Duration::ZERO]));
    }

    #[tokio::test(start_paused = true)]
    async fn one_attempt_means_no_retry() {
        let (value, starts) = run(&policy(1), retryable).await;
        assert_eq!((value, starts), (1, vec![Duration::ZERO]));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_backoff_and_is_capped() {
        let after = |seconds: u64| {
            move |n: u32| Tried::Retryable {
                value: n,
                retry_after: Some(Duration::from_secs(seconds)),
            }
        };
        let (_, starts) = run(&policy(2), after(5)).await;
        assert!(jittered(starts[1], 5 * SECOND), "{starts:?}");
        let (_, starts) = run(&policy(2), after(600)).await;
        assert!(jittered(starts[1], 8 * SECOND), "{starts:?}");
        let (_, starts) = run(&policy(2), after(0)).await;
        assert_eq!(starts, vec![Duration::ZERO, Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn on_retry_sees_each_retried_value_and_its_pause() {
        let seen = AtomicU32::new(0);
        let value = retrying(
            &policy(3),
            |n| async move { retryable(n) },
            |value, attempt, pause| {
                assert_eq!(*value, attempt);
                assert!(jittered(pause, SECOND * 2u32.pow(attempt - 1)), "{pause:?}");
                seen.fetch_add(1, Ordering::Relaxed);
            },
        )
        .await;
        assert_eq!(value, 3);
        assert_eq!(
            seen.load(Ordering::Relaxed),
            2,
            "no pause after the last try"
        );
    }

    #[test]
    fn which_statuses_are_retried() {
        for status in [429, 503] {
            assert!(status_is_retryable(status, true), "{status}");
            assert!(status_is_retryable(status, false), "{status}");
        }
        for status in [502, 504] {
            assert!(status_is_retryable(status, true), "{status}");
            assert!(!status_is_retryable(status, false), "{status}");
        }
        for status in [200, 202, 400, 401, 402, 404, 409, 422, 500] {
            assert!(!status_is_retryable(status, true), "{status}");
        }
    }

    #[test]
    fn which_transport_failures_are_retried() {
        assert!(SendFailure::Connect.is_retryable(false));
        assert!(SendFailure::Connect.is_retryable(true));
        assert!(SendFailure::Other.is_retryable(true));
        assert!(!SendFailure::Other.is_retryable(false));
        assert!(!SendFailure::Timeout.is_retryable(true));
        assert!(!SendFailure::Timeout.is_retryable(false));
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("120", now), Some(120 * SECOND));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(30 * SECOND)
        );
        // The obsolete formats HTTP still accepts.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(10 * SECOND)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:38 1994", now),
            Some(SECOND)
        );
        // A date already past asks for no delay.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for value in [
            "",
            "soon",
            "-5",
            "1.5",
            "18446744073709551616",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }
}

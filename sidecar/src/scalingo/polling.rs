//! The loops that wait for a scale to take effect: until an operation ends,
//! and until `ps` shows a running web container.
//!
//! Each loop is given the call to repeat, so it knows nothing of HTTP and
//! runs on tokio's clock (testable with `tokio::time::pause()`). Both are
//! bounded by the caller's deadline; transient errors (rate limit, 5xx,
//! transport) are logged and polling goes on, other errors end it.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::error::ScalingoError;
use super::types::{web_running, Operation, OperationStatus, Process};

/// Backoff of [`ScalingoClient::wait_web_running`](super::ScalingoClient::wait_web_running):
/// delays between `ps` checks.
pub const WEB_POLL_DELAYS: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

/// The pause before the next poll of an operation that started `waited`
/// ago: a quarter of the wait so far, at least `interval / 4` and at most
/// `interval` (the `operation_poll_interval`, 1 s by default).
///
/// Why: the gateway notices a finished boot late by up to one pause, and
/// that lateness is most of a wake's overhead (`make bench`, cold wake). A
/// fixed 1 s pause made every quick boot wait half a second more on
/// average; this schedule keeps the lateness under a quarter of the boot
/// time (250 ms for a boot under a second) while a long boot is polled about
/// once a second, as before, which matters under Scalingo's 60 calls a
/// minute per token: 11 polls for the first 5 s instead of 5, then the same.
pub fn operation_poll_delay(waited: Duration, interval: Duration) -> Duration {
    (waited / 4).clamp(interval / 4, interval)
}

/// Polls `fetch` (one operation of `app` in `region`, id `id`, named for the
/// logs) after each [`operation_poll_delay`] until it is `done` (returned) or
/// `error` ([`ScalingoError::OperationFailed`]), at most until `deadline`
/// ([`ScalingoError::Timeout`]).
pub(crate) async fn until_operation_ends<F, Fut>(
    (region, app, id): (&str, &str, &str),
    interval: Duration,
    deadline: Instant,
    mut fetch: F,
) -> Result<Operation, ScalingoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Operation, ScalingoError>>,
{
    let started = Instant::now();
    let polling = async {
        loop {
            tokio::time::sleep(operation_poll_delay(started.elapsed(), interval)).await;
            match fetch().await {
                Ok(op) if op.status == OperationStatus::Done => return Ok(op),
                Ok(op) if op.status == OperationStatus::Error => {
                    let message = op
                        .error
                        .clone()
                        .unwrap_or_else(|| format!("operation {id} ended in error"));
                    tracing::warn!(app, region, operation_id = id, %message, "operation failed");
                    return Err(ScalingoError::OperationFailed(message));
                }
                Ok(op) => {
                    tracing::trace!(app, operation_id = id, status = %op.status, "operation pending")
                }
                Err(e) if polling_may_continue(&e) => {
                    tracing::warn!(app, region, operation_id = id, error = %e, "polling the operation failed; trying again")
                }
                Err(e) => return Err(e),
            }
        }
    };
    with_deadline(deadline, polling).await
}

/// Calls `ps` (the processes of `app` in `region`) at once, then after each
/// of [`WEB_POLL_DELAYS`] and every last delay after, until a `web` container
/// is running, at most until `deadline` ([`ScalingoError::Timeout`]).
pub(crate) async fn until_web_runs<F, Fut>(
    (region, app): (&str, &str),
    deadline: Instant,
    mut ps: F,
) -> Result<(), ScalingoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Vec<Process>, ScalingoError>>,
{
    let polling = async {
        let mut delays = WEB_POLL_DELAYS.iter().copied();
        let max_delay = WEB_POLL_DELAYS[WEB_POLL_DELAYS.len() - 1];
        loop {
            match ps().await {
                Ok(processes) if web_running(&processes) => return Ok(()),
                Ok(_) => tracing::trace!(app, "no web container running yet"),
                Err(e) if polling_may_continue(&e) => {
                    tracing::warn!(app, region, error = %e, "polling ps failed; trying again")
                }
                Err(e) => return Err(e),
            }
            tokio::time::sleep(delays.next().unwrap_or(max_delay)).await;
        }
    };
    with_deadline(deadline, polling).await
}

/// Runs `fut` until `deadline`, mapping a late end to [`ScalingoError::Timeout`].
async fn with_deadline<T>(
    deadline: Instant,
    fut: impl Future<Output = Result<T, ScalingoError>>,
) -> Result<T, ScalingoError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .unwrap_or(Err(ScalingoError::Timeout))
}

/// Errors after which polling goes on (until the deadline): they may clear by themselves.
fn polling_may_continue(e: &ScalingoError) -> bool {
    matches!(
        e,
        ScalingoError::RateLimited | ScalingoError::Server { .. } | ScalingoError::Transport(_)
    )
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    const WHERE: (&str, &str, &str) = ("osc-fr1", "my-app-one", "op-1");

    fn operation(status: &str, error: Option<&str>) -> Result<Operation, ScalingoError> {
        Ok(serde_json::from_value(serde_json::json!({
            "id": "op-1", "status": status, "error": error,
        }))
        .expect("an operation"))
    }

    fn ps(states: &[&str]) -> Result<Vec<Process>, ScalingoError> {
        Ok(states
            .iter()
            .map(|state| {
                serde_json::from_value(serde_json::json!({ "type": "web", "state": state }))
                    .expect("a process")
            })
            .collect())
    }

    fn server_error() -> ScalingoError {
        ScalingoError::Server {
            status: 500,
            request_id: None,
            message: "oops".into(),
        }
    }

    /// Gives the scripted answers in order (the last one again once they
    /// run out) and records when (tokio's clock, from its creation) each call came.
    struct Script<T> {
        start: Instant,
        answers: Mutex<VecDeque<T>>,
        calls: Mutex<Vec<Duration>>,
    }

    impl<T: Clone> Script<T> {
        fn new(answers: impl IntoIterator<Item = T>) -> Self {
            Self {
                start: Instant::now(),
                answers: Mutex::new(answers.into_iter().collect()),
                calls: Mutex::new(Vec::new()),
            }
        }

        async fn next(&self) -> T {
            self.calls.lock().unwrap().push(self.start.elapsed());
            let mut answers = self.answers.lock().unwrap();
            if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers.front().cloned().unwrap()
            }
        }

        fn calls(&self) -> Vec<Duration> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_is_polled_until_done_through_transient_errors() {
        let script = Script::new([
            operation("pending", None),
            Err(server_error()),
            Err(ScalingoError::RateLimited),
            Err(ScalingoError::Transport("reset".into())),
            operation("running", None),
            operation("done", None),
        ]);
        let interval = Duration::from_secs(1);
        let op = until_operation_ends(WHERE, interval, far(), || script.next())
            .await
            .unwrap();
        assert_eq!(op.status, OperationStatus::Done);
        let calls = script.calls();
        assert_eq!(calls.len(), 6);
        // The first poll waits a quarter of the interval; none waits more than it.
        assert_eq!(calls[0], interval / 4);
        for pause in calls.windows(2).map(|w| w[1] - w[0]) {
            assert!(pause >= interval / 4 && pause <= interval, "{pause:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_in_error_fails_with_its_message() {
        let script = Script::new([operation("error", Some("container web-1 failed"))]);
        let err = until_operation_ends(WHERE, Duration::from_secs(1), far(), || script.next())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ScalingoError::OperationFailed("container web-1 failed".into())
        );
        let script = Script::new([operation("error", None)]);
        let err = until_operation_ends(WHERE, Duration::from_secs(1), far(), || script.next())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ScalingoError::OperationFailed("operation op-1 ended in error".into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_end_the_polling() {
        let script = Script::new([Err(ScalingoError::NotFound), operation("done", None)]);
        let err = until_operation_ends(WHERE, Duration::from_secs(1), far(), || script.next())
            .await
            .unwrap_err();
        assert_eq!(err, ScalingoError::NotFound);
        assert_eq!(script.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn polling_stops_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let script = Script::new([operation("running", None)]);
        let err = until_operation_ends(WHERE, Duration::from_secs(1), deadline, || script.next())
            .await
            .unwrap_err();
        assert_eq!(err, ScalingoError::Timeout);
        assert_eq!(Instant::now(), deadline);

        let script = Script::new([ps(&["booting"])]);
        let err = until_web_runs(
            ("osc-fr1", "my-app-one"),
            deadline + Duration::from_secs(5),
            || script.next(),
        )
        .await
        .unwrap_err();
        assert_eq!(err, ScalingoError::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn ps_is_checked_at_once_then_after_growing_delays() {
        let script = Script::new([
            ps(&[]),
            Err(server_error()),
            ps(&["booting"]),
            ps(&["stopping"]),
            ps(&["booting", "running"]),
        ]);
        until_web_runs(("osc-fr1", "my-app-one"), far(), || script.next())
            .await
            .unwrap();
        let ms = Duration::from_millis;
        assert_eq!(
            script.calls(),
            [ms(0), ms(250), ms(750), ms(1750), ms(2750)]
        );

        let script = Script::new([Err(ScalingoError::Unauthorized)]);
        let err = until_web_runs(("osc-fr1", "my-app-one"), far(), || script.next())
            .await
            .unwrap_err();
        assert_eq!(err, ScalingoError::Unauthorized);
    }

    #[test]
    fn operation_polls_start_fast_and_slow_down_to_the_interval() {
        let second = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert_eq!(operation_poll_delay(Duration::ZERO, second), ms(250));
        assert_eq!(operation_poll_delay(ms(900), second), ms(250));
        assert_eq!(operation_poll_delay(ms(2000), second), ms(500));
        assert_eq!(operation_poll_delay(ms(4000), second), second);
        assert_eq!(
            operation_poll_delay(Duration::from_secs(50), second),
            second
        );
        // Polls within the first 5 s, then one a second as with a fixed pause.
        let mut waited = Duration::ZERO;
        let mut polls = 0;
        loop {
            waited += operation_poll_delay(waited, second);
            if waited > Duration::from_secs(5) {
                break;
            }
            polls += 1;
        }
        assert_eq!(polls, 11);
    }
}

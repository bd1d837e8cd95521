//! Waiting until a woken app serves, at almost no Scalingo API cost.
//!
//! After the scale call the app's own front is probed ([`Platform::probe_front`]:
//! `https://APP.REGION.scalingo.io` + the rule's `health_path`, no API
//! call): [`FIRST_PROBE`] after the scale, then every [`FAST_PROBE`] for
//! the first [`FAST_PHASE`], then every [`SLOW_PROBE`]. The app is ready
//! when the app itself answers, not the router's 502/503/504 (see
//! [`crate::platform::front`] for the signal).
//!
//! Only now and then is the API read, to end a broken wake before its
//! deadline: the scale operation (until it is `done`; `error` fails the
//! wake) and the app's status (`crashed` fails it), alternately, the first
//! [`CHECK_EVERY`] after the scale and then further and further apart
//! ([`check_pause`]: 5, 15, 35, 55 s ...). A 20 s boot thus costs two reads
//! (5 s: operation, 15 s: app) besides the scale call, a broken app four
//! in a minute. Each read is sent only if the gateway's API budget has a
//! slot free right now ([`Platform::operation_state`]): a read that finds
//! none is skipped, never waited for, and never fails the wake. Transient
//! errors of those reads (rate limit, 5xx, transport, busy) and reads
//! slower than [`CHECK_WAIT`] are skipped as well: the next read tries
//! again, and probing never waits behind the API.
//!
//! When the front gets no HTTP answer at all (it cannot be reached from
//! where the gateway runs: no DNS, an egress policy), readiness is read
//! from the API instead: `ps` (a running `web` container), [`API_READS`]
//! apart and then every [`API_READ_EVERY`], the checks above going on.
//! Each `ps` read costs a call, so a burst of such wakes is bound by the
//! gateway's API budget: a read waits for its turn in the budget until the
//! wake's deadline (it fails the wake only when no slot would come by
//! then), and the reads are few (a 20 s boot costs 6, where polling the
//! operation and then `ps` cost about 25), so that a burst of first requests
//! is served, later, rather than failed.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::types::WakeError;
use crate::platform::{AppStatus, FrontProbe, OperationState, Platform, ScalingoError};

/// Delay of the first probe after a scale call. Probes fall on multiples
/// of [`FAST_PROBE`] from the scale call (the app cannot serve sooner).
pub const FIRST_PROBE: Duration = Duration::from_millis(250);
/// Pause between probes at first (a boot often takes a few seconds).
pub const FAST_PROBE: Duration = Duration::from_millis(250);
/// How long probes are [`FAST_PROBE`] apart.
pub const FAST_PHASE: Duration = Duration::from_secs(5);
/// Pause between probes after that.
pub const SLOW_PROBE: Duration = Duration::from_millis(500);
/// Delay of the first read of the API (operation or app status) after the
/// scale call; each pause after doubles, up to [`CHECK_PAUSE_MAX`].
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The longest pause between two reads of the API.
pub const CHECK_PAUSE_MAX: Duration = Duration::from_secs(20);
/// Longest a read may take (waiting for a slot of the gateway's API budget
/// included) before it is skipped: probing must go on meanwhile.
pub const CHECK_WAIT: Duration = Duration::from_secs(2);

/// Pauses between the `ps` reads that stand in for probes when the front
/// cannot be reached, the first one after the switch to the API (or no
/// pause when no scale was made: the app may run already).
pub const API_READS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(3),
];
/// Pause between `ps` reads after [`API_READS`].
pub const API_READ_EVERY: Duration = Duration::from_secs(5);

/// The pause before the `ps` read that follows `done` reads.
pub fn api_read_pause(done: usize) -> Duration {
    API_READS.get(done).copied().unwrap_or(API_READ_EVERY)
}

/// The pause before the next API read once `done` reads were made: the
/// first [`CHECK_EVERY`] after the scale, then twice the last pause, at
/// most [`CHECK_PAUSE_MAX`]. Most boots end before the third read; a broken
/// app costs a read every 20 s, not every few seconds, until its deadline.
pub fn check_pause(done: u32) -> Duration {
    CHECK_EVERY
        .saturating_mul(1u32 << done.min(16))
        .min(CHECK_PAUSE_MAX)
}

/// The app a readiness wait is about.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub region: &'a str,
    pub app: &'a str,
    /// Probed on the app's front.
    pub health_path: &'a str,
}

/// Where readiness is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The app's own front (no API call).
    Front,
    /// `ps`, after `reads` reads (the front cannot be reached).
    Api { reads: usize },
}

/// Waits until `target` serves, at most until `deadline`. `operation` is the
/// scale operation to follow, if the wake started one; `first_probe` how
/// long after now the front is first probed (0 when no scale was needed).
pub async fn wait_ready(
    platform: &dyn Platform,
    target: Target<'_>,
    operation: Option<&str>,
    first_probe: Duration,
    deadline: Instant,
) -> Result<(), WakeError> {
    let started = Instant::now();
    let app = target.app;
    let mut operation = operation.map(str::to_owned);
    let mut source = Source::Front;
    let mut next_probe = started + first_probe;
    let mut next_check = started + check_pause(0);
    let mut checks: u32 = 0;
    loop {
        let probing = next_probe <= next_check;
        let at = if probing { next_probe } else { next_check };
        if at >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(WakeError::Timeout(app.to_owned()));
        }
        tokio::time::sleep_until(at).await;
        if probing {
            let pause = match source {
                Source::Front => {
                    match platform
                        .probe_front(target.region, app, target.health_path)
                        .await
                    {
                        FrontProbe::App => return Ok(()),
                        FrontProbe::Router => {}
                        FrontProbe::Unreachable(reason) => {
                            warn!(%reason, "the app's front cannot be probed, reading `ps` instead (one API call a read)");
                            source = Source::Api { reads: 0 };
                        }
                    }
                    match source {
                        Source::Front if started.elapsed() < FAST_PHASE => FAST_PROBE,
                        Source::Front => SLOW_PROBE,
                        Source::Api { .. } if first_probe.is_zero() => Duration::ZERO,
                        Source::Api { .. } => api_read_pause(0),
                    }
                }
                Source::Api { reads } => {
                    if read_ps(platform, target, deadline).await? {
                        return Ok(());
                    }
                    source = Source::Api { reads: reads + 1 };
                    api_read_pause(reads + 1)
                }
            };
            // Never a burst after a slow probe (or a read that waited for
            // its turn in the budget).
            next_probe = Instant::now().max(next_probe) + pause;
        } else {
            let read_operation = operation.is_some() && checks.is_multiple_of(2);
            checks += 1;
            next_check += check_pause(checks);
            if read_operation {
                let op = operation.as_deref().unwrap_or("");
                match tokio::time::timeout(CHECK_WAIT, check_operation(platform, target, op)).await
                {
                    Ok(done) => {
                        if done? {
                            operation = None;
                        }
                    }
                    Err(_) => debug!("operation read skipped: too slow"),
                }
            } else if let Ok(checked) =
                tokio::time::timeout(CHECK_WAIT, check_app(platform, target)).await
            {
                checked?;
            } else {
                debug!("app status read skipped: too slow");
            }
        }
    }
}

/// One read of `ps`, waiting for its turn in the API budget until
/// `deadline`: whether `web` runs. A transient failure reads as not yet
/// (the next read tries again); no slot before the deadline ends the wake.
async fn read_ps(
    platform: &dyn Platform,
    target: Target<'_>,
    deadline: Instant,
) -> Result<bool, WakeError> {
    match platform
        .web_running_until(target.region, target.app, deadline)
        .await
    {
        Ok(running) => Ok(running),
        Err(ScalingoError::BudgetExhausted) => {
            warn!("no Scalingo API call left before the wake's deadline to read `ps`");
            Err(WakeError::provider(
                target.app,
                ScalingoError::BudgetExhausted,
            ))
        }
        Err(e) if e.is_transient() => {
            debug!(error = %e, "`ps` not read, next time");
            Ok(false)
        }
        Err(e) => Err(WakeError::provider(target.app, e)),
    }
}

/// One read of the operation: `Ok(true)` when it is done, an error when it
/// failed.
async fn check_operation(
    platform: &dyn Platform,
    target: Target<'_>,
    operation: &str,
) -> Result<bool, WakeError> {
    match platform
        .operation_state(target.region, target.app, operation)
        .await
    {
        Ok(OperationState::Done) => Ok(true),
        Ok(OperationState::Running) => Ok(false),
        Ok(OperationState::Failed(message)) => Err(WakeError::AppFailed {
            app: target.app.to_owned(),
            reason: format!("the scale operation failed: {message}"),
        }),
        Err(e) if e.is_transient() => {
            debug!(error = %e, "operation not read, next time");
            Ok(false)
        }
        Err(e) => Err(WakeError::provider(target.app, e)),
    }
}

/// One read of the app's status: an error when it crashed.
async fn check_app(platform: &dyn Platform, target: Target<'_>) -> Result<(), WakeError> {
    match platform.app_status(target.region, target.app).await {
        Ok(AppStatus::Crashed) => Err(WakeError::AppFailed {
            app: target.app.to_owned(),
            reason: "the app crashed: its containers keep failing to boot".to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.is_transient() => {
            debug!(error = %e, "app status not read, next time");
            Ok(())
        }
        Err(e) => Err(WakeError::provider(target.app, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_further_apart_up_to_their_cap() {
        let secs: Vec<u64> = (0..6).map(|n| check_pause(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 20, 20, 20]);
        assert_eq!(check_pause(u32::MAX), CHECK_PAUSE_MAX);
    }

    #[test]
    fn a_minute_of_a_broken_app_costs_four_reads() {
        let mut at = Duration::ZERO;
        let mut reads = Vec::new();
        for done in 0.. {
            at += check_pause(done);
            if at >= Duration::from_secs(60) {
                break;
            }
            reads.push(at.as_secs());
        }
        assert_eq!(reads, [5, 15, 35, 55]);
    }

    #[test]
    fn ps_reads_come_one_two_three_then_five_seconds_apart() {
        let secs: Vec<u64> = (0..6).map(|n| api_read_pause(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 3, 5, 5, 5]);
    }
}

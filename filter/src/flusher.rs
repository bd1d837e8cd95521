//! The glue of the activity flush (the root context): on each tick, sends
//! the batch of apps served (and of apps seen not running) to the sidecar,
//! with the renewal of every awake lease the VM holds (so an idle VM sends
//! one too, while it holds any), refreshes the cache from its answer
//! (drops the entries of the apps it does not know awake, and gives their
//! leases back), and merges a failed batch back for the next tick. While
//! the sidecar is down the flush is also what sees it come back.

use log::{debug, warn};

use crate::activity::parse_activity_answer;
use crate::answer::AnswerError;
use crate::cache;
use crate::callout::{answered, dispatch, Callout, InFlight};
use crate::host::Host;
use crate::metrics::Metric;
use crate::shared::Shared;

/// Margin past an activity callout's timeout after which its answer is
/// taken as lost.
const LOST_ANSWER_MARGIN_MS: u64 = 5_000;

/// The activity flush of one VM.
#[derive(Debug, Default)]
pub struct Flusher {
    /// The flush waiting for its answer (at most one at a time).
    inflight: Option<InFlight>,
}

impl Flusher {
    /// The tick: sends the pending batch, unless a flush still waits for its
    /// answer.
    pub fn tick(&mut self, host: &impl Host, shared: &Shared) {
        shared.flush_counts(host);
        // Also what lets a hit skip its clock read (`Shared::surely_before`).
        let now = shared.now_ms(host);
        if let Some(inflight) = &self.inflight {
            // Envoy answers every callout, if only with a timeout; this is a
            // guard against a lost answer blocking activity forever.
            // Only activity callouts are sent from here.
            let started_ms = match &inflight.callout {
                Callout::Activity { started_ms, .. } => *started_ms,
                Callout::Wake(_) | Callout::Status { .. } => 0,
            };
            let deadline = started_ms.saturating_add(
                inflight.callout.timeout_ms(&shared.config) + LOST_ANSWER_MARGIN_MS,
            );
            if now <= deadline {
                return;
            }
            if let Some(InFlight {
                callout:
                    Callout::Activity {
                        batch, not_running, ..
                    },
                ..
            }) = self.inflight.take()
            {
                self.failed(host, shared, batch, not_running, "no answer");
            }
        }
        let mut taken = (Vec::new(), 0, Vec::new(), Vec::new());
        shared.with_activity(|a| {
            let (batch, dropped) = a.take_batch();
            let held = a.held_besides(&batch);
            taken = (batch, dropped, a.take_not_running(), held);
        });
        let (batch, dropped, not_running, held) = taken;
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
        // No lease held, nothing to report: nothing to send (an idle VM
        // that holds leases renews them on every tick).
        if batch.is_empty() && not_running.is_empty() && held.is_empty() {
            return;
        }
        let flush = Callout::Activity {
            batch,
            not_running,
            held,
            vm: shared.vm_id(),
            started_ms: now,
        };
        match dispatch(host, &shared.config, flush, None) {
            Ok(inflight) => {
                host.count(Metric::ActivityFlush);
                if let Callout::Activity { batch, .. } = &inflight.callout {
                    debug!("activity flush of {} apps sent", batch.len());
                }
                self.inflight = Some(inflight);
            }
            Err((
                Callout::Activity {
                    batch, not_running, ..
                },
                e,
            )) => {
                self.failed(host, shared, batch, not_running, &format!("dispatch: {e}"));
            }
            Err((other, e)) => warn!("{} callout not sent ({e})", other.kind()),
        }
    }

    /// A callout of the root context was answered.
    pub fn on_call_answer(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let (batch, not_running, held, started_ms) = match answered(&mut self.inflight, token) {
            Some(Callout::Activity {
                batch,
                not_running,
                held,
                started_ms,
                ..
            }) => (batch, not_running, held, started_ms),
            Some(other) => {
                warn!("{} answer on the root context ({token})", other.kind());
                return;
            }
            None => {
                debug!("ignoring a late activity answer");
                return;
            }
        };
        let result = match host.call_answer(num_headers, body_size) {
            None => Err(AnswerError::NoResponse),
            Some(answer) => parse_activity_answer(
                &batch,
                &held,
                answer.header(b":status"),
                answer.header(b"content-type"),
                &answer.body,
            ),
        };
        match result {
            Ok(outcome) => {
                shared.sidecar_answered(host);
                let now = host.now_ms();
                let mut refreshed = 0;
                let mut renewed = Vec::with_capacity(outcome.awake.len());
                for item in &outcome.awake {
                    // Never refreshed from an answer to their own report.
                    if not_running.binary_search(&item.app).is_ok() {
                        continue;
                    }
                    // A lease renewed without traffic only extends an entry
                    // still there: one the traffic dropped (a tombstone) or
                    // the sidecar took back meanwhile stays dropped.
                    if batch.binary_search(&item.app).is_err()
                        && !routable(host, shared, &item.app, now)
                    {
                        continue;
                    }
                    let cluster = shared.config.cluster_for(&item.awake.region);
                    shared.write_cache(host, &item.app, cluster, &item.awake.upstream_host, now);
                    renewed.push(item.app.as_str());
                    refreshed += 1;
                }
                let mut dropped = 0;
                for app in &outcome.asleep {
                    if drop_if_older(host, shared, app, started_ms) {
                        dropped += 1;
                    }
                }
                // Leases given back: taken back by the sidecar, or held
                // without a renewal while their entry is gone.
                let mut released = Vec::new();
                for app in batch.iter().chain(&held) {
                    if renewed.contains(&app.as_str()) {
                        continue;
                    }
                    if outcome.asleep.contains(app) || !routable(host, shared, app, now) {
                        released.push(app.as_str());
                    }
                }
                shared.with_activity(|a| {
                    for app in &released {
                        a.release(app);
                    }
                });
                debug!(
                    "activity flush of {} apps and {} leases acknowledged, {refreshed} refreshed, {dropped} dropped, {} released",
                    batch.len(),
                    held.len(),
                    released.len(),
                );
            }
            Err(e) => self.failed(host, shared, batch, not_running, &e.to_string()),
        }
    }

    fn failed(
        &mut self,
        host: &impl Host,
        shared: &Shared,
        batch: Vec<String>,
        not_running: Vec<String>,
        why: &str,
    ) {
        host.count(Metric::ActivityFlushError);
        let apps = batch.len();
        let mut dropped = 0;
        shared.with_activity(|a| {
            dropped = a.restore(batch);
            a.restore_not_running(not_running);
        });
        shared.sidecar_failed(
            host,
            &format_args!("activity flush of {apps} apps: {why}; kept for the next flush"),
        );
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
    }
}

/// True when the cache holds an entry that routes `app` (fresh, by the
/// clock the tick read).
fn routable(host: &impl Host, shared: &Shared, app: &str, now: u64) -> bool {
    shared
        .cached(host, app)
        .is_some_and(|value| matches!(cache::decode(&value), Ok(entry) if entry.is_fresh(now)))
}

/// Drops the cache entry of `app` (the sidecar does not know it awake)
/// unless it was written after the flush started at `started_ms` (a wake
/// that ended meanwhile is newer than the answer). A tombstone stays (its
/// wake must still verify). True when dropped.
fn drop_if_older(host: &impl Host, shared: &Shared, app: &str, started_ms: u64) -> bool {
    let Some(value) = shared.cached(host, app) else {
        return false;
    };
    match cache::decode(&value) {
        Ok(entry) if entry.written_before(started_ms, shared.config.cache_ttl_ms) => {
            shared.drop_cache(host, app, "");
            true
        }
        _ => false,
    }
}

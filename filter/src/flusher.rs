//! The glue of the activity flush (the root context): on each tick, sends
//! the batch of apps served to the sidecar, refreshes the cache from its
//! answer, and merges a failed batch back for the next tick.

use log::{debug, warn};

use crate::activity::parse_activity_answer;
use crate::answer::AnswerError;
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
    /// Consecutive failed flushes, to log a down sidecar without flooding.
    failed_flushes: u64,
}

impl Flusher {
    /// The tick: sends the pending batch, unless a flush still waits for its
    /// answer.
    pub fn tick(&mut self, host: &impl Host, shared: &Shared) {
        let now = host.now_ms();
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
                callout: Callout::Activity { batch, .. },
                ..
            }) = self.inflight.take()
            {
                self.failed(host, shared, batch, "no answer");
            }
        }
        let mut taken = (Vec::new(), 0);
        shared.with_activity(|a| taken = a.take_batch());
        let (batch, dropped) = taken;
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
        if batch.is_empty() {
            return;
        }
        let flush = Callout::Activity {
            batch,
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
            Err((Callout::Activity { batch, .. }, e)) => {
                self.failed(host, shared, batch, &format!("dispatch: {e}"));
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
        let batch = match answered(&mut self.inflight, token) {
            Some(Callout::Activity { batch, .. }) => batch,
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
                answer.header(b":status"),
                answer.header(b"content-type"),
                &answer.body,
            ),
        };
        match result {
            Ok(awake) => {
                self.failed_flushes = 0;
                let now = host.now_ms();
                for item in &awake {
                    let cluster = shared.config.cluster_for(&item.awake.region);
                    shared.write_cache(host, &item.app, cluster, &item.awake.upstream_host, now);
                }
                debug!(
                    "activity flush of {} apps acknowledged, {} refreshed",
                    batch.len(),
                    awake.len()
                );
            }
            Err(e) => self.failed(host, shared, batch, &e.to_string()),
        }
    }

    fn failed(&mut self, host: &impl Host, shared: &Shared, batch: Vec<String>, why: &str) {
        host.count(Metric::ActivityFlushError);
        self.failed_flushes += 1;
        let apps = batch.len();
        let mut dropped = 0;
        shared.with_activity(|a| dropped = a.restore(batch));
        // Logged at 1, 2, 4, 8... failures in a row.
        if self.failed_flushes.is_power_of_two() {
            warn!(
                "activity flush of {apps} apps failed ({why}; {} in a row); kept for the next flush",
                self.failed_flushes
            );
        }
        if dropped > 0 {
            warn!("activity of {dropped} apps dropped: more than the pending limit");
        }
    }
}

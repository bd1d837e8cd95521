//! Whether the sidecar answers, as one VM sees it, and the rate limit of
//! the warnings about it.
//!
//! Any callout that gets no usable answer (not dispatched, no response, a
//! status or body the protocol does not have) marks the sidecar down; any
//! usable answer marks it up. While it is down, apps whose cache entry
//! expired less than `stale_ttl_ms` ago are routed without a callout (serve
//! stale), and the activity flush (which keeps its batches, bounded) is the
//! probe that sees it come back.
//!
//! Logging: the first failure is logged at once, then at most one line per
//! [`LOG_PERIOD_MS`] with the number of failures since the previous line,
//! and one line when the sidecar answers again: a long outage under load
//! costs a few lines, never one per request.

/// At most one warning line per this period while the sidecar is down.
pub const LOG_PERIOD_MS: u64 = 10_000;

/// The sidecar's state as seen by one VM.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outage {
    /// When the current outage began (`None`: the sidecar answers).
    down_since_ms: Option<u64>,
    /// Failures not reported in a log line yet.
    unlogged: u64,
    /// Failures since the outage began.
    total: u64,
    /// When the last warning line was written.
    last_line_ms: u64,
}

/// A line to log about the outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutageLine {
    /// `failures` callouts failed since the previous line (or the start).
    Failing { failures: u64, down_for_ms: u64 },
    /// The sidecar answers again after `down_for_ms` and `failures` failed
    /// callouts.
    Recovered { failures: u64, down_for_ms: u64 },
}

impl Outage {
    /// True while the sidecar is taken as unreachable.
    pub fn is_down(&self) -> bool {
        self.down_since_ms.is_some()
    }

    /// A callout failed at `now_ms`; the line to log, if one is due.
    pub fn failed(&mut self, now_ms: u64) -> Option<OutageLine> {
        self.unlogged = self.unlogged.saturating_add(1);
        self.total = self.total.saturating_add(1);
        let since = match self.down_since_ms {
            Some(since) => {
                if now_ms.saturating_sub(self.last_line_ms) < LOG_PERIOD_MS {
                    return None;
                }
                since
            }
            None => {
                self.down_since_ms = Some(now_ms);
                now_ms
            }
        };
        self.last_line_ms = now_ms;
        Some(OutageLine::Failing {
            failures: std::mem::take(&mut self.unlogged),
            down_for_ms: now_ms.saturating_sub(since),
        })
    }

    /// A callout got a usable answer at `now_ms`; the recovery line when
    /// the sidecar was down.
    pub fn answered(&mut self, now_ms: u64) -> Option<OutageLine> {
        let since = self.down_since_ms.take()?;
        let line = OutageLine::Recovered {
            failures: self.total,
            down_for_ms: now_ms.saturating_sub(since),
        };
        *self = Self::default();
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_a_count() {
        let mut o = Outage::default();
        assert!(!o.is_down());
        assert_eq!(
            o.failed(1_000),
            Some(OutageLine::Failing {
                failures: 1,
                down_for_ms: 0
            })
        );
        assert!(o.is_down());
        let lines = (1..3_000)
            .filter_map(|i| o.failed(1_000 + i * 10))
            .collect::<Vec<_>>();
        // 30 s of failures every 10 ms: one line per 10 s.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            lines[0],
            OutageLine::Failing {
                failures: 1_000,
                down_for_ms: 10_000
            }
        );
        assert_eq!(
            o.answered(40_000),
            Some(OutageLine::Recovered {
                failures: 3_000,
                down_for_ms: 39_000
            })
        );
        assert!(!o.is_down());
        assert_eq!(o.answered(41_000), None);
        assert!(matches!(
            o.failed(42_000),
            Some(OutageLine::Failing { failures: 1, .. })
        ));
    }
}

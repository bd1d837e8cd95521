//! The arithmetic of the budget, shared by the in-memory window and the
//! Redis script: how many calls each [`Rank`] may find already spent in the
//! window and still take one, and the sliding log of one instance's calls.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Rank;

/// How many calls may already be in the window for `rank` to take one more,
/// out of `limit`: a wake's scale call may use all of it; its other calls
/// leave a fifth (at least one) to scale calls, so that a burst of cold
/// wakes, whose status reads take what is free, still finds room for the
/// scale calls of the wakes that follow; the background leaves a
/// quarter (at least one) to wakes. Never below 1, so no rank starves
/// forever when the limit is tiny.
pub(crate) fn allowed(limit: u32, rank: Rank) -> u32 {
    let reserve = match rank {
        Rank::WakeScale => 0,
        Rank::WakeCheck => (limit / 5).max(1),
        Rank::Background => limit.div_ceil(4),
    };
    limit.saturating_sub(reserve).max(1)
}

/// The calls one instance made in the last window (oldest first), on
/// tokio's clock. Invariant: after [`prune`](Self::prune), every entry is
/// younger than the window.
#[derive(Debug, Default)]
pub(crate) struct CallLog {
    calls: VecDeque<Instant>,
}

impl CallLog {
    /// Drops the calls made `window` or longer ago.
    pub fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .calls
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= window)
        {
            self.calls.pop_front();
        }
    }

    /// Calls in the window (after a prune).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Records a call made now.
    pub fn record(&mut self, now: Instant) {
        self.calls.push_back(now);
    }

    /// Takes a call if fewer than `allowed` are in the window; otherwise
    /// says how long until enough of them have left it.
    pub fn take(&mut self, now: Instant, window: Duration, allowed: u32) -> Result<(), Duration> {
        self.prune(now, window);
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        if self.calls.len() < allowed {
            self.record(now);
            return Ok(());
        }
        // The call whose leaving brings the count under `allowed`.
        let blocking = self.calls[self.calls.len() - allowed];
        Err((blocking + window).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_by_rank() {
        assert_eq!(allowed(55, Rank::WakeScale), 55);
        assert_eq!(allowed(55, Rank::WakeCheck), 44);
        assert_eq!(allowed(55, Rank::Background), 41);
        assert_eq!(allowed(4, Rank::WakeCheck), 3);
        assert_eq!(allowed(4, Rank::Background), 3);
        for rank in [Rank::WakeScale, Rank::WakeCheck, Rank::Background] {
            assert_eq!(allowed(1, rank), 1, "{rank:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_frees_slots_as_calls_age() {
        let window = Duration::from_secs(60);
        let mut log = CallLog::default();
        let start = Instant::now();
        assert_eq!(log.take(start, window, 2), Ok(()));
        assert_eq!(log.take(start + Duration::from_secs(10), window, 2), Ok(()));
        assert_eq!(
            log.take(start + Duration::from_secs(20), window, 2),
            Err(Duration::from_secs(40))
        );
        // With one allowed, the newest call must leave.
        assert_eq!(
            log.take(start + Duration::from_secs(20), window, 1),
            Err(Duration::from_secs(50))
        );
        assert_eq!(log.take(start + window, window, 2), Ok(()));
        assert_eq!(log.len(), 2);
    }
}

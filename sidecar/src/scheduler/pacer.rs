//! [`Pacer`]: spaces the scheduler's platform calls to stay under the API's
//! rate limit.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces calls evenly: at most `n` a minute, never a burst.
///
/// Invariant: two calls let through are at least `60 s / n` apart.
#[derive(Debug)]
pub struct Pacer {
    spacing: Duration,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn per_minute(n: u32) -> Self {
        Self {
            spacing: Duration::from_secs(60) / n.max(1),
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for this call's slot.
    pub async fn ready(&self) {
        // Held across the sleep: callers queue in order.
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let slot = next.map_or(now, |n| n.max(now));
        tokio::time::sleep_until(slot).await;
        *next = Some(slot + self.spacing);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_calls_and_never_bursts() {
        let pacer = Pacer::per_minute(60);
        let start = Instant::now();
        let mut slots = Vec::new();
        for _ in 0..5 {
            pacer.ready().await;
            slots.push(start.elapsed());
        }
        // First call at once, then one a second: 5 calls span 4 s, so no
        // minute ever sees more than 60.
        assert_eq!(
            slots,
            (0..5).map(Duration::from_secs).collect::<Vec<_>>(),
            "{slots:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_does_not_save_up_idle_time_for_a_burst() {
        let pacer = Pacer::per_minute(60);
        pacer.ready().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let start = Instant::now();
        pacer.ready().await;
        pacer.ready().await;
        pacer.ready().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_queue_for_their_slots() {
        let pacer = Arc::new(Pacer::per_minute(120));
        let start = Instant::now();
        let calls = (0..4).map(|_| {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move {
                pacer.ready().await;
                start.elapsed()
            })
        });
        let mut slots: Vec<Duration> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect();
        slots.sort();
        assert_eq!(
            slots,
            (0..4)
                .map(|i| Duration::from_millis(500 * i))
                .collect::<Vec<_>>()
        );
    }
}

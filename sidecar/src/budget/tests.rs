//! The budget on tokio's paused clock: every wait below is virtual.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

const MINUTE: Duration = Duration::from_secs(60);
/// The window calls are counted over: a minute and its margin.
const COUNTED: Duration = Duration::from_secs(62);

fn budget(calls_per_minute: u32) -> Arc<Budget> {
    Arc::new(Budget::in_memory(BudgetConfig::new(calls_per_minute)).unwrap())
}

fn far() -> Instant {
    Instant::now() + 100 * MINUTE
}

/// Grant times, relative to the start, of `calls` acquisitions started together.
async fn grant_times(budget: &Arc<Budget>, rank: Rank, calls: usize) -> Vec<Duration> {
    let start = Instant::now();
    let deadline = far();
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget.acquire(rank, deadline).await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.unwrap());
    }
    times.sort();
    times
}

#[test]
fn unusable_settings_are_refused() {
    assert!(Budget::in_memory(BudgetConfig::new(0)).is_err());
    let mut config = BudgetConfig::new(10);
    config.expected_instances = 0;
    assert!(Budget::in_memory(config).is_err());
    let mut config = BudgetConfig::new(10);
    config.expected_instances = 4;
    assert_eq!(config.share(), 2);
    config.expected_instances = 40;
    assert_eq!(config.share(), 1, "never below one call");
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_limit_in_any_window() {
    let budget = budget(5);
    let times = grant_times(&budget, Rank::WakeScale, 23).await;
    assert_eq!(times.len(), 23);
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..].iter().filter(|t| **t < *start + MINUTE).count();
        assert!(
            in_window <= 5,
            "{in_window} calls in the window from {start:?}: {times:?}"
        );
    }
    // Slots are used as soon as they free: 5 at once, then 5 a counted
    // window (a minute and its margin).
    assert_eq!(times[4], Duration::ZERO);
    assert_eq!(times[5], COUNTED);
    assert_eq!(times[22], 4 * COUNTED);
    assert_eq!(budget.stats().spent_total(), 23);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_before_the_next_slot_fails_at_once() {
    let budget = budget(2);
    for _ in 0..2 {
        budget.acquire(Rank::WakeScale, far()).await.unwrap();
    }
    let start = Instant::now();
    assert_eq!(
        budget
            .acquire(Rank::WakeCheck, start + Duration::from_secs(30))
            .await,
        Err(BudgetError::Exhausted { rank: "wake_check" })
    );
    assert_eq!(
        Instant::now(),
        start,
        "no wait for a slot that frees too late"
    );
    assert_eq!(budget.stats().exhausted(), 1);
    // A deadline after the next slot waits for it.
    budget
        .acquire(Rank::WakeCheck, start + COUNTED)
        .await
        .unwrap();
    assert_eq!(start.elapsed(), COUNTED);
}

#[test]
fn calls_are_counted_over_a_minute_and_a_margin() {
    assert_eq!(BudgetConfig::new(55).counted_window(), COUNTED);
    let mut config = BudgetConfig::new(5);
    config.window = Duration::from_secs(3);
    assert_eq!(config.counted_window(), Duration::from_millis(3100));
}

/// Scalingo counts a call when it arrives: a call granted at the start of
/// the window that arrives late, and one granted a window later that
/// arrives at once, must still be a window apart as Scalingo sees them.
#[tokio::test(start_paused = true)]
async fn calls_arriving_up_to_the_margin_late_never_exceed_the_limit() {
    let budget = budget(5);
    let times = grant_times(&budget, Rank::WakeScale, 20).await;
    // The worst case: each grant of an even rank arrives 1.9 s late, the
    // others at once.
    let arrivals: Vec<Duration> = {
        let mut a: Vec<Duration> = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i % 2 == 0 {
                    *t + Duration::from_millis(1900)
                } else {
                    *t
                }
            })
            .collect();
        a.sort();
        a
    };
    for (i, start) in arrivals.iter().enumerate() {
        let seen = arrivals[i..]
            .iter()
            .filter(|t| **t < *start + MINUTE)
            .count();
        assert!(seen <= 5, "{seen} arrivals within a minute of {start:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_try_takes_a_free_slot_and_never_waits() {
    let budget = budget(5);
    // Checks may fill the window up to 4 of 5 (a fifth left to scale calls).
    for _ in 0..4 {
        assert!(budget.try_acquire(Rank::WakeCheck).await);
    }
    let start = Instant::now();
    assert!(!budget.try_acquire(Rank::WakeCheck).await);
    assert_eq!(Instant::now(), start, "no wait");
    assert_eq!(budget.stats().skipped(), 1);
    assert_eq!(budget.stats().exhausted(), 0, "a skip is no failure");
    // The scale call still finds its slot.
    budget.acquire(Rank::WakeScale, start).await.unwrap();
    assert!(!budget.try_acquire(Rank::WakeScale).await);
}

#[tokio::test(start_paused = true)]
async fn a_try_yields_to_a_waiting_higher_rank() {
    let budget = budget(1);
    budget.acquire(Rank::WakeScale, far()).await.unwrap();
    let waiter = {
        let budget = budget.clone();
        tokio::spawn(async move { budget.acquire(Rank::WakeScale, far()).await })
    };
    tokio::task::yield_now().await;
    tokio::time::advance(COUNTED).await;
    // The slot is free now, but a scale call waits for it.
    assert!(!budget.try_acquire(Rank::WakeCheck).await);
    waiter.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_background_leaves_a_reserve_to_wakes() {
    let budget = budget(8);
    // The background may fill the window only up to 6 of 8.
    for _ in 0..6 {
        budget.acquire(Rank::Background, far()).await.unwrap();
    }
    let soon = Instant::now() + Duration::from_secs(1);
    assert!(budget.acquire(Rank::Background, soon).await.is_err());
    // A wake's checks still get one, and its scale call the last one.
    budget.acquire(Rank::WakeCheck, soon).await.unwrap();
    assert!(budget.acquire(Rank::WakeCheck, soon).await.is_err());
    budget.acquire(Rank::WakeScale, soon).await.unwrap();
    assert!(budget.acquire(Rank::WakeScale, soon).await.is_err());
    assert_eq!(budget.stats().spent(Rank::Background), 6);
    assert_eq!(budget.stats().spent(Rank::WakeCheck), 1);
    assert_eq!(budget.stats().spent(Rank::WakeScale), 1);
    assert_eq!(budget.stats().remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_wake_goes_before_a_background_caller_that_waited_longer() {
    let budget = budget(1);
    budget.rate_limited(Some(Duration::from_secs(10))).await;
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |rank: Rank| {
        let budget = budget.clone();
        let order = order.clone();
        tokio::spawn(async move {
            budget.acquire(rank, far()).await.unwrap();
            order.lock().unwrap().push((rank, start.elapsed()));
        })
    };
    let background = spawn(Rank::Background);
    tokio::task::yield_now().await; // the background caller waits first
    let wake = spawn(Rank::WakeScale);
    wake.await.unwrap();
    background.await.unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        [
            (Rank::WakeScale, Duration::from_secs(10)),
            (Rank::Background, Duration::from_secs(10) + COUNTED),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_stops_all_spending_until_retry_after_or_a_minute() {
    let budget = budget(50);
    let start = Instant::now();
    budget.rate_limited(Some(Duration::from_secs(5))).await;
    assert!(budget
        .acquire(Rank::WakeScale, start + Duration::from_secs(4))
        .await
        .is_err());
    budget.acquire(Rank::WakeScale, far()).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    // Without Retry-After: a minute; a shorter pause does not cut a longer one.
    let start = Instant::now();
    budget.rate_limited(None).await;
    budget.rate_limited(Some(Duration::from_secs(1))).await;
    budget.acquire(Rank::Background, far()).await.unwrap();
    assert_eq!(start.elapsed(), MINUTE);

    // A huge Retry-After is capped.
    let start = Instant::now();
    budget.rate_limited(Some(10 * DEFAULT_MAX_PAUSE)).await;
    budget.acquire(Rank::WakeCheck, far()).await.unwrap();
    assert_eq!(start.elapsed(), DEFAULT_MAX_PAUSE);
    assert_eq!(budget.stats().rate_limited(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_pause_wakes_waiters_that_would_otherwise_go_earlier() {
    let budget = budget(1);
    budget.acquire(Rank::WakeScale, far()).await.unwrap();
    let start = Instant::now();
    let waiter = {
        let budget = budget.clone();
        tokio::spawn(async move { budget.acquire(Rank::WakeScale, far()).await })
    };
    tokio::time::sleep(Duration::from_secs(50)).await;
    budget.rate_limited(Some(Duration::from_secs(30))).await;
    waiter.await.unwrap().unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(80),
        "the pause holds the slot freed at 62 s"
    );
}

/// A shared store that fails, or grants and counts.
struct ScriptedStore {
    fail: bool,
    takes: Arc<AtomicUsize>,
    pauses: Arc<Mutex<Vec<Duration>>>,
}

#[async_trait]
impl SharedStore for ScriptedStore {
    async fn take(&self, allowed: u32, limit: u32, _window: Duration) -> Result<Take, StoreError> {
        let n = self.takes.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(StoreError("down".into()));
        }
        match u32::try_from(n).unwrap() {
            n if n < allowed => Ok(Take::Granted {
                remaining: limit - n - 1,
            }),
            _ => Ok(Take::Paused(Duration::from_secs(7))),
        }
    }

    async fn pause(&self, pause: Duration) -> Result<(), StoreError> {
        self.pauses.lock().unwrap().push(pause);
        if self.fail {
            Err(StoreError("down".into()))
        } else {
            Ok(())
        }
    }
}

fn scripted(
    fail: bool,
    config: BudgetConfig,
) -> (Budget, Arc<AtomicUsize>, Arc<Mutex<Vec<Duration>>>) {
    let takes = Arc::new(AtomicUsize::new(0));
    let pauses = Arc::new(Mutex::new(Vec::new()));
    let store = ScriptedStore {
        fail,
        takes: takes.clone(),
        pauses: pauses.clone(),
    };
    (Budget::shared(config, store).unwrap(), takes, pauses)
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_leaves_each_instance_its_share() {
    let mut config = BudgetConfig::new(6);
    config.expected_instances = 3;
    let (budget, takes, _) = scripted(true, config);
    let soon = Instant::now() + Duration::from_secs(1);
    budget.acquire(Rank::WakeScale, soon).await.unwrap();
    budget.acquire(Rank::WakeScale, soon).await.unwrap();
    assert!(
        budget.acquire(Rank::WakeScale, soon).await.is_err(),
        "share of 2 spent"
    );
    assert_eq!(
        takes.load(Ordering::SeqCst),
        1,
        "not asked again while known down"
    );
    assert_eq!(budget.stats().store_failures(), 1);
    // Asked again after STORE_RETRY (and still down: the share still holds).
    tokio::time::advance(STORE_RETRY).await;
    assert!(budget
        .acquire(Rank::WakeScale, Instant::now() + Duration::from_secs(1))
        .await
        .is_err());
    assert_eq!(takes.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_store_decides_while_it_answers() {
    let (budget, takes, pauses) = scripted(false, BudgetConfig::new(4));
    for _ in 0..4 {
        budget.acquire(Rank::WakeScale, far()).await.unwrap();
    }
    assert_eq!(budget.stats().remaining(), 0);
    // The store says another instance got a 429: waiters wait it out locally.
    let start = Instant::now();
    assert!(budget
        .acquire(Rank::WakeScale, start + Duration::from_secs(3))
        .await
        .is_err());
    assert_eq!(takes.load(Ordering::SeqCst), 5);
    assert!(budget
        .acquire(Rank::WakeScale, start + Duration::from_secs(5))
        .await
        .is_err());
    assert_eq!(
        takes.load(Ordering::SeqCst),
        5,
        "the known pause spares the store"
    );
    // A 429 seen here is passed on to the store.
    budget.rate_limited(Some(Duration::from_secs(9))).await;
    assert_eq!(*pauses.lock().unwrap(), [Duration::from_secs(9)]);
}

/// A store that never answers (a Redis stopped with SIGSTOP).
struct HungStore {
    takes: Arc<AtomicUsize>,
}

#[async_trait]
impl SharedStore for HungStore {
    async fn take(&self, _: u32, _: u32, _: Duration) -> Result<Take, StoreError> {
        self.takes.fetch_add(1, Ordering::SeqCst);
        std::future::pending().await
    }

    async fn pause(&self, _: Duration) -> Result<(), StoreError> {
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_costs_a_wake_one_short_timeout_then_the_share_at_once() {
    let mut config = BudgetConfig::new(6);
    config.expected_instances = 2;
    let takes = Arc::new(AtomicUsize::new(0));
    let budget = Budget::shared(
        config,
        HungStore {
            takes: takes.clone(),
        },
    )
    .unwrap();
    // The clock is tokio's paused one: these instants are exact, not measured.
    let start = Instant::now();
    budget.acquire(Rank::WakeCheck, far()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        WAKE_STORE_TIMEOUT,
        "a wake waits for the store only the short bound"
    );
    let then = Instant::now();
    budget.acquire(Rank::WakeScale, far()).await.unwrap();
    budget.rate_limited(Some(Duration::from_secs(1))).await;
    assert_eq!(
        then.elapsed(),
        WAKE_STORE_TIMEOUT,
        "the next call takes the share at once; a 429's pause waits the short bound"
    );
    assert_eq!(
        takes.load(Ordering::SeqCst),
        1,
        "not asked again while down"
    );
    assert_eq!(budget.stats().store_failures(), 2);
    // The background waits longer for the store (nobody waits on it).
    tokio::time::advance(STORE_RETRY).await;
    let later = Instant::now();
    budget.acquire(Rank::Background, far()).await.unwrap();
    assert!(later.elapsed() >= STORE_TIMEOUT);
}

//! The shared API budget on a private redis-server: two [`Budget`]s stand
//! for two gateway instances on one Redis and one key prefix.
//!
//! Real time here (Redis keeps its own clock); windows are long enough that
//! no slot frees during a test, except in the one test about sliding.

use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::redis::TestRedis;
use paastis_sidecar::budget::redis::RedisBudgetStore;
use paastis_sidecar::budget::{Budget, BudgetConfig, BudgetError, Rank};
use redis::aio::ConnectionManager;
use tokio::time::Instant;

const PREFIX: &str = "test:";

async fn connection(redis: &TestRedis) -> ConnectionManager {
    redis::Client::open(redis.url())
        .expect("redis URL")
        .get_connection_manager()
        .await
        .expect("connect to the test redis")
}

/// Two instances sharing `calls_per_minute` through `redis`.
async fn two_instances(redis: &TestRedis, config: BudgetConfig) -> (Arc<Budget>, Arc<Budget>) {
    let mut budgets = Vec::new();
    for _ in 0..2 {
        let store = RedisBudgetStore::new(connection(redis).await, PREFIX);
        budgets.push(Arc::new(
            Budget::shared(config.clone(), store).expect("budget"),
        ));
    }
    let second = budgets.pop().expect("two budgets");
    (budgets.pop().expect("two budgets"), second)
}

fn config(calls_per_minute: u32) -> BudgetConfig {
    BudgetConfig {
        expected_instances: 2,
        ..BudgetConfig::new(calls_per_minute)
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_millis(300)
}

#[tokio::test]
async fn the_limit_holds_across_instances() {
    let redis = TestRedis::start();
    let (a, b) = two_instances(&redis, config(6)).await;
    let deadline = soon();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let budget = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { budget.acquire(Rank::WakeScale, deadline).await })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => granted += 1,
            Err(e) => assert!(matches!(e, BudgetError::Exhausted { .. }), "{e}"),
        }
    }
    assert_eq!(granted, 6, "six calls a minute for both instances together");
    assert_eq!(a.stats().spent_total() + b.stats().spent_total(), 6);
    assert_eq!(a.stats().store_failures() + b.stats().store_failures(), 0);
}

#[tokio::test]
async fn wakes_keep_their_reserve_across_instances() {
    let redis = TestRedis::start();
    let (a, b) = two_instances(&redis, config(8)).await;
    // The background of both instances together stops at 6 of 8.
    for i in 0..6 {
        let budget = if i % 2 == 0 { &a } else { &b };
        budget
            .acquire(Rank::Background, soon())
            .await
            .expect("background slot");
    }
    assert!(b.acquire(Rank::Background, soon()).await.is_err());
    assert!(a.acquire(Rank::Background, soon()).await.is_err());
    b.acquire(Rank::WakeCheck, soon())
        .await
        .expect("a wake's check");
    assert!(a.acquire(Rank::WakeCheck, soon()).await.is_err());
    a.acquire(Rank::WakeScale, soon())
        .await
        .expect("a wake's scale call");
    assert!(b.acquire(Rank::WakeScale, soon()).await.is_err());
    assert_eq!(a.stats().remaining(), 0);
}

#[tokio::test]
async fn a_429_seen_by_one_instance_stops_the_other() {
    let redis = TestRedis::start();
    let (a, b) = two_instances(&redis, config(50)).await;
    b.acquire(Rank::WakeScale, soon())
        .await
        .expect("before the 429");
    a.rate_limited(Some(Duration::from_secs(30))).await;
    let start = Instant::now();
    assert!(matches!(
        b.acquire(Rank::WakeScale, start + Duration::from_secs(5))
            .await,
        Err(BudgetError::Exhausted { .. })
    ));
    assert_eq!(b.stats().exhausted(), 1);
    // The pause outlives the wait, whichever instance asks.
    assert!(a.acquire(Rank::WakeCheck, soon()).await.is_err());
}

#[tokio::test]
async fn slots_free_as_the_window_slides() {
    let redis = TestRedis::start();
    let window = Duration::from_millis(600);
    let (a, b) = two_instances(
        &redis,
        BudgetConfig {
            window,
            ..config(2)
        },
    )
    .await;
    let start = Instant::now();
    a.acquire(Rank::WakeScale, soon()).await.expect("first");
    a.acquire(Rank::WakeScale, soon()).await.expect("second");
    b.acquire(Rank::WakeScale, start + Duration::from_secs(10))
        .await
        .expect("a slot once the first call left the window");
    // A lower bound, which a loaded machine cannot break. Redis counts
    // whole milliseconds: allow one of rounding.
    assert!(start.elapsed() >= window - Duration::from_millis(1));
}

#[tokio::test]
async fn without_redis_each_instance_spends_only_its_share() {
    let mut redis = TestRedis::start();
    let (a, b) = two_instances(&redis, config(6)).await;
    redis.kill();
    for budget in [&a, &b] {
        for _ in 0..3 {
            budget
                .acquire(Rank::WakeScale, soon())
                .await
                .expect("within the share");
        }
        assert!(budget.acquire(Rank::WakeScale, soon()).await.is_err());
        assert!(budget.stats().store_failures() >= 1);
    }
}

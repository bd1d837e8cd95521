//! The registry contract ([`Registry`], [`Coordinator`], [`EventLog`] in
//! `sidecar/src/registry/mod.rs`), written once and run against both
//! stores: the in-memory ones (on tokio's paused clock, so leases and notes
//! expire without waiting) and the Redis one (a private `redis-server` per
//! test, see [`TestRedis`]). What only one store has (Redis outages, TLS,
//! passwords, RESP3, foreign stream entries) is in `redis_registry.rs`.
//!
//! Each case is a generic async function over a [`Backend`]; the
//! [`contract!`] macro at the bottom turns every case into one test per
//! store.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{apps, event, eventually, meta};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use paastis_sidecar::registry::redis::RedisStore;
use paastis_sidecar::registry::{
    AppRecord, Coordinator, Event, EventKind, EventLog, InMemoryCoordinator, InMemoryEventLog,
    InMemoryRegistry, Registry,
};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// One gateway instance's view of a store.
#[derive(Clone)]
struct Stores {
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    events: Arc<dyn EventLog>,
}

/// A store under test.
trait Backend {
    /// A handle on the store under test, as one gateway instance sees it.
    /// Every handle reads and writes the same data (for Redis, each has its
    /// own connection).
    async fn instance(&self) -> Stores;
    /// A store that shares nothing with the handles of [`instance`](Self::instance).
    async fn separate(&self) -> Stores;
}

/// The in-memory stores; their handles share the same objects.
struct Memory {
    shared: Stores,
    events_capacity: usize,
}

impl Memory {
    fn new(events_capacity: usize) -> Self {
        Self {
            shared: Self::fresh(events_capacity),
            events_capacity,
        }
    }

    fn fresh(events_capacity: usize) -> Stores {
        Stores {
            registry: Arc::new(InMemoryRegistry::new()),
            coordinator: Arc::new(InMemoryCoordinator::new()),
            events: Arc::new(InMemoryEventLog::new(events_capacity)),
        }
    }
}

impl Backend for Memory {
    async fn instance(&self) -> Stores {
        self.shared.clone()
    }

    async fn separate(&self) -> Stores {
        Self::fresh(self.events_capacity)
    }
}

/// The Redis store: a private server, one key prefix per test.
struct Redis {
    redis: TestRedis,
    prefix: String,
    events_capacity: usize,
}

impl Redis {
    fn new(test: &str, events_capacity: usize) -> Self {
        Self {
            redis: TestRedis::start(),
            prefix: unique_prefix(test),
            events_capacity,
        }
    }

    async fn connect(&self, prefix: &str) -> Stores {
        let store = RedisStore::connect(&self.redis.url(), prefix, self.events_capacity)
            .await
            .expect("connect to the test redis");
        Stores {
            registry: Arc::new(store.clone()),
            coordinator: Arc::new(store.clone()),
            events: Arc::new(store),
        }
    }
}

impl Backend for Redis {
    async fn instance(&self) -> Stores {
        self.connect(&self.prefix).await
    }

    async fn separate(&self) -> Stores {
        // Another prefix on the same server.
        self.connect(&format!("{}other:", self.prefix)).await
    }
}

async fn last_access_never_moves_backwards(backend: impl Backend) {
    let r = backend.instance().await.registry;
    r.touch(&apps(&["front-app"]), 2_000).await.unwrap();
    r.touch(&apps(&["front-app"]), 1_000).await.unwrap();
    assert_eq!(
        r.get("front-app").await.unwrap().unwrap().last_access_ms,
        2_000
    );
    r.touch(&apps(&["front-app", "back-app"]), 3_000)
        .await
        .unwrap();
    let all = r.list().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|a| (a.app.as_str(), a.last_access_ms))
            .collect::<Vec<_>>(),
        [("back-app", 3_000), ("front-app", 3_000)]
    );
    r.touch(&[], 9_000).await.unwrap();
    assert_eq!(r.len().await.unwrap(), 2);
}

async fn concurrent_writers_in_any_order_keep_the_latest_access(backend: impl Backend) {
    let one = backend.instance().await.registry;
    let two = backend.instance().await.registry;
    // Two instances report the same accesses, one in increasing order and the
    // other in decreasing order, all at once; registrations race with them.
    let stamps: Vec<u64> = (1..=50).map(|i| i * 1_000).collect();
    let mut tasks = JoinSet::new();
    for (i, &at) in stamps.iter().enumerate() {
        let (a, b) = (Arc::clone(&one), Arc::clone(&two));
        let reversed = stamps[stamps.len() - 1 - i];
        tasks.spawn(async move {
            a.touch(&apps(&["app-shared", "app-one"]), at)
                .await
                .unwrap();
            b.touch(&apps(&["app-shared", "app-two"]), reversed)
                .await
                .unwrap();
            b.register("app-shared", meta("osc-fr1", 20, &[]), reversed / 2)
                .await
                .unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    for (app, store) in [("app-shared", &one), ("app-one", &two), ("app-two", &one)] {
        assert_eq!(
            store.get(app).await.unwrap().unwrap().last_access_ms,
            50_000,
            "{app}"
        );
    }
    assert_eq!(
        one.get("app-shared")
            .await
            .unwrap()
            .unwrap()
            .max_idle_minutes,
        20
    );
}

async fn register_keeps_access_and_formation(backend: impl Backend) {
    let r = backend.instance().await.registry;
    r.touch(&apps(&["my-app-1"]), 5_000).await.unwrap();
    r.remember_formation("my-app-1", vec![("web".into(), 2)])
        .await
        .unwrap();
    r.register("my-app-1", meta("osc-fr1", 30, &["my-api-1"]), 4_000)
        .await
        .unwrap();
    let rec = r.get("my-app-1").await.unwrap().unwrap();
    assert_eq!(
        rec,
        AppRecord {
            app: "my-app-1".into(),
            region: Some("osc-fr1".into()),
            last_access_ms: 5_000,
            max_idle_minutes: 30,
            linked_apps: apps(&["my-api-1"]),
            formation: vec![("web".into(), 2)],
            autoscalers: Vec::new(),
        }
    );
    // Registering again updates the facts, keeps the formation, moves access forward.
    r.register("my-app-1", meta("osc-secnum-fr1", 45, &[]), 6_000)
        .await
        .unwrap();
    let rec = r.get("my-app-1").await.unwrap().unwrap();
    assert_eq!(
        (rec.region.as_deref(), rec.max_idle_minutes),
        (Some("osc-secnum-fr1"), 45)
    );
    assert_eq!((rec.last_access_ms, rec.linked_apps.len()), (6_000, 0));
    assert_eq!(rec.formation, vec![("web".to_string(), 2)]);
    r.remember_autoscalers("my-app-1", vec!["as-1".into()])
        .await
        .unwrap();
    let rec = r.get("my-app-1").await.unwrap().unwrap();
    assert_eq!(
        (rec.autoscalers, rec.formation),
        (vec!["as-1".to_string()], vec![("web".to_string(), 2)]),
        "each kept beside the other"
    );

    r.forget("my-app-1").await.unwrap();
    assert!(r.get("my-app-1").await.unwrap().is_none());
    assert_eq!(r.len().await.unwrap(), 0);
    assert!(r.is_empty().await.unwrap());
    r.forget("my-app-1").await.unwrap();
}

async fn apps_known_by_name_only_read_as_blank(backend: impl Backend) {
    let r = backend.instance().await.registry;
    assert_eq!(r.get("nobody").await.unwrap(), None);
    r.touch(&apps(&["touched-app"]), 7_000).await.unwrap();
    let mut expected = AppRecord::blank("touched-app");
    expected.last_access_ms = 7_000;
    assert_eq!(r.get("touched-app").await.unwrap(), Some(expected));
    // A formation remembered for an unknown app registers it, never accessed.
    r.remember_formation("paused-app", vec![("web".into(), 3), ("worker".into(), 1)])
        .await
        .unwrap();
    let rec = r.get("paused-app").await.unwrap().unwrap();
    assert_eq!((rec.last_access_ms, rec.formation.len()), (0, 2));
    // ... and does not move an existing access.
    r.remember_formation("touched-app", vec![]).await.unwrap();
    assert_eq!(
        r.get("touched-app").await.unwrap().unwrap().last_access_ms,
        7_000
    );
    assert_eq!(r.len().await.unwrap(), 2);
}

async fn accessed_before_is_a_range_oldest_first(backend: impl Backend) {
    let r = backend.instance().await.registry;
    r.touch(&apps(&["app-aaaa"]), 3_000).await.unwrap();
    r.touch(&apps(&["app-bbbb"]), 1_000).await.unwrap();
    r.touch(&apps(&["app-cccc"]), 2_000).await.unwrap();
    r.touch(&apps(&["app-bbbb"]), 4_000).await.unwrap();
    r.register("app-cccc", meta("osc-fr1", 5, &[]), 0)
        .await
        .unwrap();
    let idle = r.accessed_before(3_000, 10).await.unwrap();
    assert_eq!(
        idle.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(),
        ["app-cccc", "app-aaaa"]
    );
    assert_eq!(
        (idle[0].last_access_ms, idle[0].max_idle_minutes),
        (2_000, 5),
        "records come with their facts"
    );
    let first = r.accessed_before(3_000, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].app, "app-cccc");
    assert!(r.accessed_before(3_000, 0).await.unwrap().is_empty());
    assert!(r.accessed_before(1_999, 10).await.unwrap().is_empty());
    // Ties come in name order.
    r.touch(&apps(&["app-zz", "app-dd"]), 500).await.unwrap();
    let idle: Vec<_> = r
        .accessed_before(u64::MAX, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.app)
        .collect();
    assert_eq!(idle, ["app-dd", "app-zz", "app-cccc"]);
}

async fn list_is_sorted_by_name_and_len_counts_apps(backend: impl Backend) {
    let r = backend.instance().await.registry;
    assert!(r.list().await.unwrap().is_empty());
    assert_eq!(r.len().await.unwrap(), 0);
    assert!(r.is_empty().await.unwrap());
    r.touch(&apps(&["zeta-app", "alpha-app"]), 1_000)
        .await
        .unwrap();
    r.register("mid-app", meta("osc-fr1", 15, &["zeta-app"]), 10)
        .await
        .unwrap();
    let all = r.list().await.unwrap();
    assert_eq!(
        all.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(),
        ["alpha-app", "mid-app", "zeta-app"]
    );
    assert_eq!(all[1].linked_apps, ["zeta-app"]);
    assert_eq!(r.len().await.unwrap(), 3);
    assert!(!r.is_empty().await.unwrap());
}

async fn leases_are_exclusive_extended_by_their_holder_and_expire(backend: impl Backend) {
    let c = backend.instance().await.coordinator;
    // Long enough that a stalled machine cannot let it expire between two
    // steps that expect it held.
    let ttl = Duration::from_secs(2);
    assert!(c.acquire("pass", "one", ttl).await.unwrap());
    assert!(!c.acquire("pass", "two", ttl).await.unwrap());
    assert!(!c.release("pass", "two").await.unwrap());
    assert_eq!(c.holder("pass").await.unwrap().as_deref(), Some("one"));

    // The holder extends its lease past the first ttl. The waits let the
    // time under test pass (on the in-memory store's paused clock they are
    // instant); the check comes just after the first ttl, nearly 3 s before
    // the extended one, so that a stalled machine cannot make it flaky: a
    // stall before the renewal only makes it a fresh acquire by the same
    // holder, which the assertions accept too.
    let long = Duration::from_secs(5);
    let first = Instant::now();
    assert!(c.acquire("extended", "one", long).await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let renewed = Instant::now();
    assert!(
        c.acquire("extended", "one", long).await.unwrap(),
        "the holder extends it"
    );
    tokio::time::sleep_until(first + long + Duration::from_millis(200)).await;
    let holder = c.holder("extended").await.unwrap();
    // Conclusive only while the renewed lease cannot have expired: a stall
    // of nearly 3 s between the renewal and the check makes it say nothing
    // (it is skipped, never failed).
    if renewed.elapsed() < long {
        assert_eq!(
            holder.as_deref(),
            Some("one"),
            "still held after the first ttl"
        );
    } else {
        eprintln!("lease extension not checked: the machine stalled");
    }

    // A dead holder's lease expires; the old holder cannot release the new one.
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.holder("pass").await.unwrap().is_none()
        })
        .await
    );
    assert!(
        c.acquire("pass", "two", ttl).await.unwrap(),
        "a dead holder's lease expires"
    );
    assert!(
        !c.release("pass", "one").await.unwrap(),
        "the old holder cannot release the new lease"
    );
    assert_eq!(c.holder("pass").await.unwrap().as_deref(), Some("two"));
    assert!(c.release("pass", "two").await.unwrap());
    assert_eq!(c.holder("pass").await.unwrap(), None);
    assert!(!c.release("pass", "two").await.unwrap());
}

async fn one_lease_for_many_contenders_across_instances(backend: impl Backend) {
    let one = backend.instance().await.coordinator;
    let two = backend.instance().await.coordinator;
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let store = Arc::clone(if i % 2 == 0 { &one } else { &two });
        tasks.spawn(async move {
            let holder = format!("instance-{i}");
            store
                .acquire("wake/my-app", &holder, Duration::from_secs(10))
                .await
                .unwrap()
                .then_some(holder)
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = tasks.join_next().await {
        winners.extend(done.unwrap());
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        two.holder("wake/my-app").await.unwrap(),
        Some(winners[0].clone())
    );
}

async fn notes_expire_after_their_ttl(backend: impl Backend) {
    let c = backend.instance().await.coordinator;
    assert_eq!(c.note("wake/app").await.unwrap(), None);
    c.put_note("wake/app", "done", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(c.note("wake/app").await.unwrap().as_deref(), Some("done"));
    c.put_note("wake/app", "failed: timeout", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        c.note("wake/app").await.unwrap().as_deref(),
        Some("failed: timeout")
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.note("wake/app").await.unwrap().is_none()
        })
        .await
    );
    // A zero ttl is accepted (Redis rounds it up to 1 ms rather than refusing it).
    c.put_note("instant", "x", Duration::ZERO).await.unwrap();
}

async fn the_event_log_is_bounded_newest_first(backend: impl Backend) {
    let log = backend.instance().await.events;
    assert!(log.recent(10).await.unwrap().is_empty());
    for (i, app) in ["app-one1", "app-two2", "app-three"].iter().enumerate() {
        log.record(event(i as u64, app, EventKind::Registered))
            .await
            .unwrap();
    }
    let recent: Vec<_> = log
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.app)
        .collect();
    assert_eq!(recent, ["app-three", "app-two2"]);
    assert_eq!(log.recent(1).await.unwrap().len(), 1);
    assert!(log.recent(0).await.unwrap().is_empty());
}

/// Every kind of event, as recorded.
fn every_kind_of_event() -> Vec<Event> {
    vec![
        event(1, "app-a", EventKind::Registered),
        event(2, "app-a", EventKind::Discovered),
        event(3, "app-a", EventKind::Woken { duration_ms: 4_200 }),
        event(
            4,
            "app-b",
            EventKind::WakeFailed {
                error: "timeout \"quoted\"".into(),
            },
        ),
        event(
            5,
            "app-a",
            EventKind::Paused {
                formation: vec![("web".into(), 2)],
            },
        ),
        event(6, "app-b", EventKind::Forgotten),
    ]
}

async fn events_round_trip(backend: impl Backend) {
    let log = backend.instance().await.events;
    let events = every_kind_of_event();
    for e in &events {
        log.record(e.clone()).await.unwrap();
    }
    let recent = log.recent(100).await.unwrap();
    assert_eq!(recent, events.into_iter().rev().collect::<Vec<_>>());
}

async fn instances_share_one_store_and_separate_stores_isolate(backend: impl Backend) {
    let one = backend.instance().await;
    let two = backend.instance().await;
    let other = backend.separate().await;

    one.registry
        .register("my-app", meta("osc-fr1", 30, &[]), 1_000)
        .await
        .unwrap();
    two.registry.touch(&apps(&["my-app"]), 2_000).await.unwrap();
    two.registry
        .remember_formation("my-app", vec![("web".into(), 1)])
        .await
        .unwrap();
    let rec = one.registry.get("my-app").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.last_access_ms,
            rec.formation.len(),
            rec.max_idle_minutes
        ),
        (2_000, 1, 30)
    );
    assert!(one
        .coordinator
        .acquire("scheduler", "one", Duration::from_secs(10))
        .await
        .unwrap());
    assert!(!two
        .coordinator
        .acquire("scheduler", "two", Duration::from_secs(10))
        .await
        .unwrap());
    one.coordinator
        .put_note("wake/my-app", "ok", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        two.coordinator
            .note("wake/my-app")
            .await
            .unwrap()
            .as_deref(),
        Some("ok")
    );
    two.events
        .record(event(3, "my-app", EventKind::Forgotten))
        .await
        .unwrap();
    assert_eq!(one.events.recent(5).await.unwrap().len(), 1);
    two.registry.forget("my-app").await.unwrap();
    assert_eq!(one.registry.len().await.unwrap(), 0);

    // A separate store (for Redis, another prefix on the same server) sees
    // none of it.
    other.registry.touch(&apps(&["my-app"]), 5).await.unwrap();
    assert!(other
        .coordinator
        .acquire("scheduler", "other", Duration::from_secs(10))
        .await
        .unwrap());
    assert_eq!(other.coordinator.note("wake/my-app").await.unwrap(), None);
    assert!(other.events.recent(5).await.unwrap().is_empty());
    assert_eq!(one.registry.len().await.unwrap(), 0);
}

/// One test per store for each `case(events_capacity)`: the in-memory
/// stores on a paused clock, Redis on a private server with real time.
macro_rules! contract {
    ($($case:ident($capacity:expr)),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $case() {
                    super::$case(super::Memory::new($capacity)).await;
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Redis::new(stringify!($case), $capacity)).await;
                }
            )*
        }
    };
}

contract! {
    last_access_never_moves_backwards(100),
    concurrent_writers_in_any_order_keep_the_latest_access(10),
    register_keeps_access_and_formation(100),
    apps_known_by_name_only_read_as_blank(100),
    accessed_before_is_a_range_oldest_first(100),
    list_is_sorted_by_name_and_len_counts_apps(100),
    leases_are_exclusive_extended_by_their_holder_and_expire(100),
    one_lease_for_many_contenders_across_instances(10),
    notes_expire_after_their_ttl(100),
    the_event_log_is_bounded_newest_first(2),
    events_round_trip(100),
    instances_share_one_store_and_separate_stores_isolate(10),
}

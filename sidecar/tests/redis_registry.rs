//! The Redis registry, coordinator and event log against a real, private
//! `redis-server` per test (see [`TestRedis`]): the semantics of the
//! in-memory implementations, sharing between instances, and outages.

use std::time::{Duration, Instant};

use paastis_e2e::redis::{free_port, unique_prefix, TestRedis};
use paastis_sidecar::registry::redis::RedisStore;
use paastis_sidecar::registry::{
    AppMeta, AppRecord, Coordinator, Event, EventKind, EventLog, Registry,
};
use tokio::task::JoinSet;

fn apps(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn store(redis: &TestRedis, test: &str) -> RedisStore {
    RedisStore::connect(&redis.url(), &unique_prefix(test), 100)
        .await
        .expect("connect to the test redis")
}

fn meta(region: &str, max_idle_minutes: u64, linked: &[&str]) -> AppMeta {
    AppMeta {
        region: region.into(),
        max_idle_minutes,
        linked_apps: apps(linked),
    }
}

fn event(at_ms: u64, app: &str, kind: EventKind) -> Event {
    Event {
        at_ms,
        app: app.into(),
        instance: "test".into(),
        kind,
    }
}

/// Polls `check` every 50 ms until it is true or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn last_access_never_moves_backwards() {
    let redis = TestRedis::start();
    let r = store(&redis, "backwards").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_any_order_keep_the_latest_access() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("concurrent");
    let one = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let two = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    // Two instances report the same accesses, one in increasing order and the
    // other in decreasing order, all at once; registrations race with them.
    let stamps: Vec<u64> = (1..=50).map(|i| i * 1_000).collect();
    let mut tasks = JoinSet::new();
    for (i, &at) in stamps.iter().enumerate() {
        let (a, b) = (one.clone(), two.clone());
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

#[tokio::test]
async fn register_keeps_access_and_formation() {
    let redis = TestRedis::start();
    let r = store(&redis, "register").await;
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

    r.forget("my-app-1").await.unwrap();
    assert!(r.get("my-app-1").await.unwrap().is_none());
    assert_eq!(r.len().await.unwrap(), 0);
    r.forget("my-app-1").await.unwrap();
}

#[tokio::test]
async fn apps_known_by_name_only_read_as_blank() {
    let redis = TestRedis::start();
    let r = store(&redis, "blank").await;
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

#[tokio::test]
async fn accessed_before_is_a_range_oldest_first() {
    let redis = TestRedis::start();
    let r = store(&redis, "range").await;
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
    assert_eq!(
        r.accessed_before(3_000, 1).await.unwrap()[0].app,
        "app-cccc"
    );
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

#[tokio::test]
async fn list_is_sorted_by_name_and_len_counts_apps() {
    let redis = TestRedis::start();
    let r = store(&redis, "list").await;
    assert!(r.list().await.unwrap().is_empty());
    assert_eq!(r.len().await.unwrap(), 0);
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
}

#[tokio::test]
async fn leases_are_exclusive_extended_by_their_holder_and_expire() {
    let redis = TestRedis::start();
    let c = store(&redis, "leases").await;
    let ttl = Duration::from_millis(300);
    assert!(c.acquire("pass", "one", ttl).await.unwrap());
    assert!(!c.acquire("pass", "two", ttl).await.unwrap());
    assert!(!c.release("pass", "two").await.unwrap());
    assert_eq!(c.holder("pass").await.unwrap().as_deref(), Some("one"));

    // The holder extends its lease past the first ttl.
    let long = Duration::from_millis(1_000);
    assert!(c.acquire("extended", "one", long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        c.acquire("extended", "one", long).await.unwrap(),
        "the holder extends it"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.holder("extended").await.unwrap().as_deref(),
        Some("one"),
        "still held after the first ttl"
    );

    // A dead holder's lease expires; the old holder cannot release the new one.
    assert!(
        eventually(Duration::from_secs(3), || async {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_for_many_contenders_across_instances() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("contenders");
    let one = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let two = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
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

#[tokio::test]
async fn notes_expire_after_their_ttl() {
    let redis = TestRedis::start();
    let c = store(&redis, "notes").await;
    assert_eq!(c.note("wake/app").await.unwrap(), None);
    c.put_note("wake/app", "done", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(c.note("wake/app").await.unwrap().as_deref(), Some("done"));
    c.put_note("wake/app", "failed: timeout", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        c.note("wake/app").await.unwrap().as_deref(),
        Some("failed: timeout")
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            c.note("wake/app").await.unwrap().is_none()
        })
        .await
    );
    // A zero ttl is rounded up to 1 ms rather than refused.
    c.put_note("instant", "x", Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn the_event_log_is_bounded_newest_first() {
    let redis = TestRedis::start();
    let log = RedisStore::connect(&redis.url(), &unique_prefix("events"), 2)
        .await
        .unwrap();
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

#[tokio::test]
async fn events_round_trip_and_unreadable_entries_are_skipped() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("kinds");
    let log = RedisStore::connect(&redis.url(), &prefix, 100)
        .await
        .unwrap();
    let events = vec![
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
    ];
    for e in &events {
        log.record(e.clone()).await.unwrap();
    }
    // Someone else wrote garbage in the stream.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}events");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("event")
        .arg("{not json")
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("other")
        .arg("1")
        .query_async(&mut raw)
        .await
        .unwrap();

    let recent = log.recent(100).await.unwrap();
    assert_eq!(recent, events.into_iter().rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn two_instances_share_one_redis_and_prefixes_isolate() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("shared");
    let one = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let two = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let other = store(&redis, "other").await;

    one.register("my-app", meta("osc-fr1", 30, &[]), 1_000)
        .await
        .unwrap();
    two.touch(&apps(&["my-app"]), 2_000).await.unwrap();
    two.remember_formation("my-app", vec![("web".into(), 1)])
        .await
        .unwrap();
    let rec = one.get("my-app").await.unwrap().unwrap();
    assert_eq!(
        (
            rec.last_access_ms,
            rec.formation.len(),
            rec.max_idle_minutes
        ),
        (2_000, 1, 30)
    );
    assert!(one
        .acquire("scheduler", "one", Duration::from_secs(10))
        .await
        .unwrap());
    assert!(!two
        .acquire("scheduler", "two", Duration::from_secs(10))
        .await
        .unwrap());
    one.put_note("wake/my-app", "ok", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        two.note("wake/my-app").await.unwrap().as_deref(),
        Some("ok")
    );
    two.record(event(3, "my-app", EventKind::Forgotten))
        .await
        .unwrap();
    assert_eq!(one.recent(5).await.unwrap().len(), 1);
    two.forget("my-app").await.unwrap();
    assert_eq!(one.len().await.unwrap(), 0);

    // Another prefix on the same server sees none of it.
    other.touch(&apps(&["my-app"]), 5).await.unwrap();
    assert!(other
        .acquire("scheduler", "other", Duration::from_secs(10))
        .await
        .unwrap());
    assert!(other.recent(5).await.unwrap().is_empty());
    assert_eq!(one.len().await.unwrap(), 0);
}

#[tokio::test]
async fn resp3_connections_read_the_same() {
    let redis = TestRedis::start();
    let url = format!("{}?protocol=resp3", redis.url());
    let r = RedisStore::connect(&url, &unique_prefix("resp3"), 2)
        .await
        .unwrap();
    r.touch(&apps(&["app-b", "app-a"]), 1_000).await.unwrap();
    r.register("app-a", meta("osc-fr1", 30, &["app-b"]), 2_000)
        .await
        .unwrap();
    r.remember_formation("app-a", vec![("web".into(), 2)])
        .await
        .unwrap();
    let all = r.list().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|a| (a.app.as_str(), a.last_access_ms))
            .collect::<Vec<_>>(),
        [("app-a", 2_000), ("app-b", 1_000)]
    );
    assert_eq!(all[0].formation, vec![("web".to_string(), 2)]);
    assert_eq!(r.accessed_before(1_500, 10).await.unwrap()[0].app, "app-b");
    assert_eq!(
        r.get("app-a").await.unwrap().unwrap().linked_apps,
        ["app-b"]
    );
    assert!(r
        .acquire("lease", "me", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(r.release("lease", "me").await.unwrap());
    for i in 0..3 {
        r.record(event(i, "app-a", EventKind::Registered))
            .await
            .unwrap();
    }
    assert_eq!(
        r.recent(10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.at_ms)
            .collect::<Vec<_>>(),
        [2, 1]
    );
}

#[tokio::test]
async fn calls_fail_fast_while_redis_is_down_and_work_again_after_it_restarts() {
    let mut redis = TestRedis::start();
    let r = store(&redis, "outage").await;
    r.touch(&apps(&["my-app"]), 1_000).await.unwrap();
    assert!(r
        .acquire("pass", "me", Duration::from_secs(60))
        .await
        .unwrap());

    redis.kill();
    for round in 0..3 {
        let started = Instant::now();
        let results = [
            r.touch(&apps(&["my-app"]), 2_000).await.err(),
            r.get("my-app").await.err(),
            r.acquire("pass", "me", Duration::from_secs(60)).await.err(),
            r.record(event(1, "my-app", EventKind::Registered))
                .await
                .err(),
            r.recent(5).await.err(),
        ];
        let elapsed = started.elapsed();
        for (i, result) in results.iter().enumerate() {
            assert!(
                result.is_some(),
                "call {i} of round {round} succeeded with redis down"
            );
        }
        assert!(
            elapsed < Duration::from_secs(5),
            "five calls took {elapsed:?} with redis down"
        );
        eprintln!(
            "round {round}: {elapsed:?}, e.g. {}",
            results[0].as_ref().unwrap()
        );
    }

    // Let the reconnection attempts started by those calls fail too (the
    // restart below blocks this single-threaded runtime).
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A fresh, empty server on the same port: the same store works again,
    // from the very first call.
    redis.restart();
    r.touch(&apps(&["my-app"]), 3_000)
        .await
        .expect("the first call after the restart");
    assert_eq!(
        r.get("my-app").await.unwrap().unwrap().last_access_ms,
        3_000
    );
    assert!(
        r.acquire("pass", "me", Duration::from_secs(60))
            .await
            .unwrap(),
        "scripts are loaded again"
    );
    assert!(r.release("pass", "me").await.unwrap());
    r.record(event(2, "my-app", EventKind::Registered))
        .await
        .unwrap();
    assert_eq!(r.recent(5).await.unwrap().len(), 1);

    // And again when it restarts without any call while it was down.
    redis.restart();
    assert!(
        eventually(Duration::from_secs(5), || async { r.len().await.is_ok() }).await,
        "calls keep failing after a silent restart"
    );
    assert_eq!(r.len().await.unwrap(), 0);
}

#[tokio::test]
async fn calls_time_out_while_redis_hangs_and_work_again_after() {
    let redis = TestRedis::start();
    let r = store(&redis, "hang").await;
    r.touch(&apps(&["my-app"]), 1_000).await.unwrap();

    redis.pause();
    let started = Instant::now();
    let error = r
        .get("my-app")
        .await
        .expect_err("no answer from a frozen redis");
    let elapsed = started.elapsed();
    redis.resume();
    eprintln!("{elapsed:?}: {error}");
    assert!(
        elapsed < Duration::from_secs(6),
        "the call waited {elapsed:?}"
    );

    // The connection was kept; the late answer is dropped, not mistaken for
    // the next one.
    r.touch(&apps(&["my-app"]), 2_000).await.unwrap();
    assert_eq!(
        r.get("my-app").await.unwrap().unwrap().last_access_ms,
        2_000
    );
    assert_eq!(r.len().await.unwrap(), 1);
}

#[tokio::test]
async fn connecting_fails_fast_and_never_shows_the_password() {
    // Nobody listens on this port.
    let url = format!("redis://:hunter2@127.0.0.1:{}/", free_port());
    let started = Instant::now();
    let error = RedisStore::connect(&url, "p:", 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(!error.contains("hunter2"), "{error}");
    assert!(
        error.contains("127.0.0.1") && error.contains("***"),
        "{error}"
    );

    // A server that wants another password.
    let redis = TestRedis::start_with(&["--requirepass", "the-real-one"]);
    let url = format!("redis://:hunter2@127.0.0.1:{}/", redis.port());
    let error = RedisStore::connect(&url, "p:", 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        !error.contains("hunter2") && !error.contains("the-real-one"),
        "{error}"
    );
    let url = format!("redis://:the-real-one@127.0.0.1:{}/", redis.port());
    let store = RedisStore::connect(&url, "p:", 10).await.unwrap();
    store.touch(&apps(&["my-app"]), 1).await.unwrap();
    assert!(!format!("{store:?}").contains("the-real-one"));

    let error = RedisStore::connect("not a url hunter2", "p:", 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_talk_tls() {
    // A self-signed certificate: `#insecure` skips verification (a managed
    // Redis presents a certificate the bundled roots verify instead).
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let tls_port = free_port().to_string();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let redis = TestRedis::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &cert,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    let tls = RedisStore::connect(&url, &unique_prefix("tls"), 10)
        .await
        .expect("TLS connection");
    tls.touch(&apps(&["tls-app"]), 42).await.unwrap();
    assert_eq!(
        tls.get("tls-app").await.unwrap().unwrap().last_access_ms,
        42
    );
    drop(redis);
}

//! What only the Redis store has, against a real, private `redis-server`
//! per test (see [`TestRedis`]): foreign entries in its stream, RESP3,
//! outages and hangs, passwords and TLS. The contract it shares with the
//! in-memory stores is in `registry_contract.rs`.

use std::time::{Duration, Instant};

mod common;

use common::{apps, event, eventually, meta};
use paastis_e2e::redis::{free_port, unique_prefix, TestRedis};
use paastis_sidecar::registry::redis::RedisStore;
use paastis_sidecar::registry::{Coordinator, EventKind, EventLog, Registry};

/// The store gave up waiting (its own timeouts), rather than failing on a
/// refused or dropped connection.
fn is_timeout(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("no answer within") || text.contains("timed out") || text.contains("timeout")
}

async fn store(redis: &TestRedis, test: &str) -> RedisStore {
    RedisStore::connect(&redis.url(), &unique_prefix(test), 100)
        .await
        .expect("connect to the test redis")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
        // Failed fast, on the refused connection: no call waited for a
        // timeout (told by the errors, not by the clock).
        for result in results.iter().flatten() {
            assert!(!is_timeout(result), "round {round}: {result}");
        }
        eprintln!(
            "round {round}: {elapsed:?}, e.g. {}",
            results[0].as_ref().unwrap()
        );
    }

    // A fresh, empty server on the same port: the same store works again,
    // from the very first call. The restart blocks its thread only: the
    // reconnection attempts started by the calls above fail meanwhile on
    // the runtime's other worker, as they would in a sidecar.
    tokio::task::block_in_place(|| redis.restart());
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
    tokio::task::block_in_place(|| redis.restart());
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
    // Ended by the store's own timeout, not by the resume above (which
    // comes only after the call returned).
    assert!(is_timeout(&error), "{error}");

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
    eprintln!("{:?}: {error}", started.elapsed());
    // Refused at once, not given up after a timeout.
    assert!(!is_timeout(&error), "{error}");
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

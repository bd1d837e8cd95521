//! Several gateway instances (sidecars) sharing one real Redis: one wake per
//! app across instances, one scheduler pass at a time, and wakes that keep
//! working while Redis is down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::fake::{FakeApp, FakeScalingo};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::wake::now_ms;
use paastis_sidecar::Gateway;

async fn instance(fake: &FakeScalingo, redis: &TestRedis, prefix: &str, name: &str) -> Gateway {
    instance_with(fake, redis, prefix, name, &[]).await
}

async fn instance_with(
    fake: &FakeScalingo,
    redis: &TestRedis,
    prefix: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Gateway {
    let url = redis.url();
    let mut vars: Vec<(&str, &str)> = vec![
        ("REGISTRY_TYPE", "redis"),
        ("REGISTRY_REDIS_URL", &url),
        ("REGISTRY_REDIS_KEY_PREFIX", prefix),
        ("PAASTIS_INSTANCE", name),
    ];
    vars.extend_from_slice(extra);
    let vars = sidecar_env(fake, Path::new("/dev/null"), &vars);
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).expect("valid config");
    paastis_sidecar::build(&config)
        .await
        .expect("gateway builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_first_requests_split_across_two_instances_make_one_scale_call() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("one_wake");
    let fake = fake_with(
        vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        Duration::from_millis(800),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    let two = instance(&fake, &redis, &prefix, "two").await;

    let wakes = (0..50).map(|i| {
        let waker = Arc::clone(if i % 2 == 0 { &one.waker } else { &two.waker });
        tokio::spawn(async move { waker.wake("shop-front", None).await })
    });
    for result in futures::future::join_all(wakes).await {
        let answer = result.unwrap().expect("woken");
        assert_eq!(answer.region, "osc-fr1");
    }
    assert_eq!(fake.scale_calls("shop-front"), 1);
    assert!(fake.app("shop-front").unwrap().web_running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_pause_each_idle_app_once() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("one_pass");
    let apps: Vec<FakeApp> = (1..=6)
        .map(|i| FakeApp::web(format!("idle-app-{i}"), "osc-fr1", 1))
        .collect();
    let fake = fake_with(apps, Duration::from_millis(100)).await;
    // A scale-down as the real one behaves (`scaling`, 422 `is scaling`,
    // `stopping` containers) but 3 s long instead of up to 30 s, so that
    // a wake right after a pause fits this suite's 20 s wake timeout.
    fake.set_stop_delay(Duration::from_secs(3));
    let one = instance(&fake, &redis, &prefix, "one").await;
    let two = instance(&fake, &redis, &prefix, "two").await;

    let now = paastis_sidecar::wake::now_ms();
    // Both discover concurrently; then both pass 20 minutes later.
    let (a, b) = tokio::join!(one.scheduler.pass(now), two.scheduler.pass(now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.discovered.len() + b.discovered.len(), 6, "{a:?} {b:?}");

    let later = now + 20 * 60_000;
    let (a, b) = tokio::join!(one.scheduler.pass(later), two.scheduler.pass(later));
    let (a, b) = (a.unwrap(), b.unwrap());
    let third = one.scheduler.pass(later).await.unwrap();
    assert_eq!(
        a.paused.len() + b.paused.len() + third.paused.len(),
        6,
        "{a:?} {b:?} {third:?}"
    );
    for i in 1..=6 {
        assert_eq!(
            fake.scale_calls(&format!("idle-app-{i}")),
            1,
            "idle-app-{i} paused once"
        );
    }
    // The formation was remembered in Redis: the other instance restores it.
    two.waker.wake("idle-app-3", None).await.unwrap();
    assert!(fake.app("idle-app-3").unwrap().web_running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_work_while_redis_is_down_and_the_scheduler_pauses_nothing() {
    let mut redis = TestRedis::start();
    let prefix = unique_prefix("redis_down");
    let fake = fake_with(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("other-app", "osc-fr1", 1),
        ],
        Duration::from_millis(100),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    let now = paastis_sidecar::wake::now_ms();
    one.scheduler.pass(now).await.unwrap();

    redis.kill();
    one.waker
        .wake("shop-front", None)
        .await
        .expect("woken without Redis");
    assert!(fake.app("shop-front").unwrap().web_running);
    // Without last accesses every app would look idle: nothing is paused.
    assert!(one.scheduler.pass(now + 60 * 60_000).await.is_err());
    assert_eq!(fake.scale_calls("other-app"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_during_a_redis_outage_is_kept_and_no_active_app_is_paused() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("outage");
    let fake = fake_with(
        vec![
            FakeApp::web("busy-app", "osc-fr1", 1),
            FakeApp::web("idle-app", "osc-fr1", 1),
        ],
        Duration::from_millis(100),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    let two = instance(&fake, &redis, &prefix, "two").await;
    let minute = 60_000;
    // Both discovered half an hour ago: both idle past the 15 minutes.
    let report = one.scheduler.pass(now_ms() - 30 * minute).await.unwrap();
    assert_eq!(report.discovered.len(), 2, "{report:?}");

    // Redis freezes mid-traffic: instance two serves busy-app.
    redis.pause();
    let used_at = now_ms();
    two.waker.activity(&["busy-app".to_owned()]).await;
    assert_eq!(two.waker.pending_activity(), 1, "kept in memory");
    // Instance one cannot read last accesses: it pauses nothing.
    assert!(one.scheduler.pass(now_ms()).await.is_err());

    redis.resume();
    // Back, but two has not written its activity yet: one's first pass
    // after the outage gives it an interval and pauses nothing.
    let report = one.scheduler.pass(now_ms()).await.unwrap();
    assert!(report.recovering, "{report:?}");
    assert!(report.paused.is_empty(), "{report:?}");

    // Two writes what it kept (its flusher or its next batch does this).
    assert_eq!(two.waker.flush_activity().await.unwrap(), 1);
    assert_eq!(two.waker.pending_activity(), 0);
    let record = one.waker.registry().get("busy-app").await.unwrap().unwrap();
    assert!(record.last_access_ms >= used_at, "activity not lost");

    let report = one.scheduler.pass(now_ms()).await.unwrap();
    assert_eq!(report.paused, vec!["idle-app".to_owned()], "{report:?}");
    assert_eq!(
        fake.scale_calls("busy-app"),
        0,
        "the used app keeps running"
    );
    assert!(fake.app("busy-app").unwrap().web_running);
    assert_eq!(fake.scale_calls("idle-app"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_empty_redis_gets_the_kept_activity_back() {
    let mut redis = TestRedis::start();
    let prefix = unique_prefix("restart");
    let fake = fake_with(
        vec![FakeApp::web("busy-app", "osc-fr1", 1)],
        Duration::from_millis(100),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    one.scheduler.pass(now_ms()).await.unwrap();

    redis.kill();
    let used_at = now_ms();
    one.waker.activity(&["busy-app".to_owned()]).await;
    one.waker.activity(&["busy-app".to_owned()]).await;
    assert_eq!(one.waker.pending_activity(), 1, "one entry per app");
    assert!(one.scheduler.pass(now_ms()).await.is_err());

    // A fresh server on the same port knows nothing: the pass writes the
    // kept activity first, so busy-app's clock is its last use, not zero.
    redis.restart();
    let report = one.scheduler.pass(now_ms() + 16 * 60_000).await.unwrap();
    assert!(report.recovering, "{report:?}");
    assert_eq!(one.waker.pending_activity(), 0);
    let record = one.waker.registry().get("busy-app").await.unwrap().unwrap();
    assert!(record.last_access_ms >= used_at);
    assert_eq!(fake.scale_calls("busy-app"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_dead_instance_expire_and_the_others_finish_its_work() {
    use paastis_sidecar::registry::redis::RedisStore;
    use paastis_sidecar::registry::Coordinator;

    let redis = TestRedis::start();
    let prefix = unique_prefix("dead_leader");
    let fake = fake_with(
        vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        Duration::from_millis(100),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    // An instance that took both leases and was killed before it released
    // them (its heartbeat stopped: the leases run out).
    let dead = RedisStore::connect(&redis.url(), &prefix, 10)
        .await
        .unwrap();
    let ttl = Duration::from_millis(1_500);
    assert!(dead.acquire("scheduler", "dead", ttl).await.unwrap());
    assert!(dead.acquire("wake:shop-front", "dead", ttl).await.unwrap());

    let report = one.scheduler.pass(now_ms()).await.unwrap();
    assert!(report.skipped, "the dead instance still holds the lease");

    // The request waits on the dead leader, then takes over and wakes.
    let answer = one.waker.wake("shop-front", None).await.expect("woken");
    assert_eq!(answer.region, "osc-fr1");
    assert_eq!(fake.scale_calls("shop-front"), 1);
    assert!(fake.app("shop-front").unwrap().web_running);

    let report = one.scheduler.pass(now_ms()).await.unwrap();
    assert!(!report.skipped, "the expired lease was taken: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_starts_while_redis_is_down_and_uses_it_once_it_answers() {
    let mut redis = TestRedis::start();
    redis.kill();
    let prefix = unique_prefix("start_down");
    let fake = fake_with(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("busy-app", "osc-fr1", 1),
        ],
        Duration::from_millis(100),
    )
    .await;
    // Starts (a restart during an outage must not take the gateway down).
    let one = instance(&fake, &redis, &prefix, "one").await;
    one.waker
        .wake("shop-front", None)
        .await
        .expect("woken without Redis");
    one.waker.activity(&["busy-app".to_owned()]).await;
    assert!(one.waker.pending_activity() >= 1, "activity kept");
    assert!(
        one.scheduler.pass(now_ms()).await.is_err(),
        "pauses nothing"
    );

    redis.restart();
    // The next connection attempt is at most a second away.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        match one.scheduler.pass(now_ms()).await {
            Ok(report) => break report,
            Err(e) if std::time::Instant::now() > deadline => panic!("still down: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert!(report.paused.is_empty(), "{report:?}");
    assert_eq!(one.waker.pending_activity(), 0, "kept activity written");
    let busy = one.waker.registry().get("busy-app").await.unwrap();
    assert!(busy.is_some(), "the activity reached Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_sees_the_wake_another_instance_leads() {
    use paastis_sidecar::wake::WakeState;
    let redis = TestRedis::start();
    let prefix = unique_prefix("shared_state");
    let fake = fake_with(
        vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        Duration::from_millis(800),
    )
    .await;
    let one = instance(&fake, &redis, &prefix, "one").await;
    let two = instance(&fake, &redis, &prefix, "two").await;
    assert_eq!(
        two.waker.wake_state_shared("shop-front").await,
        WakeState::Idle
    );

    let waker = Arc::clone(&one.waker);
    let wake = tokio::spawn(async move { waker.wake("shop-front", None).await });
    // What a waiting page polling instance two is told while one wakes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.scale_calls("shop-front") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        two.waker.wake_state_shared("shop-front").await,
        WakeState::Waking
    );
    wake.await.unwrap().expect("woken");
    // The note for the other instances is written right after the answer.
    one.waker.settled().await;
    assert!(matches!(
        two.waker.wake_state_shared("shop-front").await,
        WakeState::Running(a) if a.region == "osc-fr1"
    ));
    assert_eq!(fake.scale_calls("shop-front"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_through_one_instance_reaches_the_memory_of_the_other() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("pause_reaches");
    let fake = fake_with(
        vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        Duration::from_millis(300),
    )
    .await;
    // A real scale-down's behaviour, 3 s long instead of up to 30 s (this
    // suite's wake timeout is 20 s).
    fake.set_stop_delay(Duration::from_secs(3));
    let one = instance(&fake, &redis, &prefix, "one").await;
    let two = instance(&fake, &redis, &prefix, "two").await;
    let batch = vec!["shop-front".to_owned()];

    two.waker.wake("shop-front", None).await.expect("woken");
    two.waker.settled().await;
    assert_eq!(two.waker.activity(&batch).await.len(), 1, "awake on two");

    // Paused through one (the admin API's pause).
    one.scheduler.pause_now("shop-front").await.expect("paused");
    assert!(
        two.waker.activity(&batch).await.is_empty(),
        "two no longer answers it awake"
    );
    let scales = fake.scale_calls("shop-front");
    let answer = two.waker.wake("shop-front", None).await.expect("woken");
    assert!(
        answer.waited_ms > 0,
        "a real wake, not a memory: {answer:?}"
    );
    assert!(fake.scale_calls("shop-front") > scales, "scaled up again");
    assert!(fake.app("shop-front").unwrap().web_running);
    two.waker.settled().await;
    let record = one.waker.registry().get("shop-front").await.unwrap();
    let record = record.expect("registered");
    assert_eq!(record.region.as_deref(), Some("osc-fr1"));
    assert_eq!(two.waker.activity(&batch).await.len(), 1, "awake again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_wake_is_served_while_redis_hangs() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("hung_redis");
    let fake = fake_with(
        vec![FakeApp::web("cold-app", "osc-fr1", 0)],
        Duration::from_millis(300),
    )
    .await;
    // A 5 s wake timeout: the wake's registry and lease calls are bounded
    // (the first that hangs costs a quarter of a second, the others then
    // fail at once), and so are the API budget's calls to Redis on a wake's
    // path (a quarter of a second, then this instance's share at once): the
    // wake takes about 1.5 s here with Redis up and about 2 s hung, while
    // the store's own timeouts are 2 s a call, four or more in a row.
    // Served within 5 s is the invariant; the margin is what keeps it from
    // flaking on a loaded machine.
    let one = instance_with(
        &fake,
        &redis,
        &prefix,
        "one",
        &[("PAASTIS_WAKE_TIMEOUT", "5")],
    )
    .await;
    // The connection is open and used before Redis freezes.
    one.scheduler.pass(now_ms()).await.unwrap();
    redis.pause();
    let answer = one.waker.wake("cold-app", None).await;
    redis.resume();
    let answer = answer.expect("served while Redis hangs");
    assert_eq!(answer.region, "osc-fr1");
    assert!(fake.app("cold-app").unwrap().web_running);
    // Its bookkeeping reaches Redis once it answers again.
    one.waker.settled().await;
}

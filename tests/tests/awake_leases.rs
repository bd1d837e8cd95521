//! The lifecycle's turns as a user meets them, end to end (real Envoy with
//! two workers and the built filter, the sidecar binary, the strict fake
//! Scalingo): "awake" is a lease the sidecar grants and takes back, so a
//! user never meets the platform's error page for an app the gateway
//! manages:
//! - a quiet app (no traffic for a while) paused, then requested: woken
//!   and served by the app;
//! - a request during a pause's drain (after the stop, before the scale to
//!   0): the pause is cancelled, the app served;
//! - a request during the platform's scale-down: held, then served;
//! - instance B pauses while instance A's sidecar is down; A's sidecar comes
//!   back; A's next request wakes the app and is served;
//! - a request for a sleeping app while its instance's sidecar restarts,
//!   and one held for a wake when the sidecar dies under it: held by
//!   Envoy's route to the sidecar (it retries while the sidecar cannot be
//!   reached), then served by the app;
//! - an app stopped outside the gateway: a browser gets the waiting page,
//!   an API client our 503 with `Retry-After`, never the router's page, and
//!   the wake starts at once.
//!
//! Every wait is on a condition, with a deadline only to fail instead of
//! hanging.

use std::time::{Duration, Instant};

use paastis_e2e::fake::{FakeApp, FakeConfig, APP_HEADER, ROUTER_MARKER};
use paastis_e2e::harness::{admin_env, Reply, Sidecar, Stack, StackOptions};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use serde_json::json;

const APP: &str = "shop-front";
const ADMIN_TOKEN: &str = "leases-admin-token-0123456789abcdef";
/// Deadline of the waits below (only reached when the gateway is broken).
const GIVE_UP: Duration = Duration::from_secs(120);

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// Served by the app itself.
fn by_the_app(reply: &Reply, app: &str) -> bool {
    reply.status == 200 && reply.header(APP_HEADER) == Some(app)
}

/// The platform's router answered.
fn by_the_router(reply: &Reply) -> bool {
    reply.header(APP_HEADER).is_none() && reply.body.contains(ROUTER_MARKER)
}

/// Waits until `done` holds (polled every 50 ms).
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + GIVE_UP;
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn paused(stack: &Stack, app: &str) -> bool {
    stack.fake.app(app).is_some_and(|a| a.status == "stopped")
}

async fn admin_pause(client: &reqwest::Client, admin: &str, app: &str) -> (u16, String) {
    let reply = client
        .post(format!("http://{admin}/admin/v1/apps/{app}/pause"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("the admin API answers");
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}

/// Sends `n` requests, each on its own connection (so both Envoy workers
/// get some), and checks every one was served by the app.
async fn served_every_time(stack: &Stack, app: &str, n: usize) {
    for i in 0..n {
        let reply = stack.get(&host(app), "/").await;
        assert!(
            by_the_app(&reply, app),
            "request {i} not served by the app: {reply:?}\nsidecar log:\n{}\nenvoy log:\n{}",
            stack.sidecar.log(),
            stack.envoy.log()
        );
    }
}

async fn admin_stack(extra_env: Vec<(String, String)>, fake: FakeConfig) -> (Stack, String) {
    let mut env = admin_env(ADMIN_TOKEN);
    env.extend(extra_env);
    let stack = Stack::start(StackOptions {
        fake,
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        sidecar_env: env,
        ..StackOptions::default()
    })
    .await;
    let admin = stack
        .sidecar
        .admin
        .expect("the admin API listens")
        .to_string();
    (stack, admin)
}

/// Waits until every Envoy worker renewed at least `n` more times after
/// `since` (the filter's activity flushes, counted by Envoy).
async fn renewed(stack: &Stack, since: u64, n: u64) {
    let give_up = Instant::now() + GIVE_UP;
    while stack.envoy.counter("paastis.activity_flush") < since + n {
        assert!(Instant::now() < give_up, "the filters never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_app_paused_then_requested_is_woken_never_the_router_page() {
    let (stack, admin) = admin_stack(Vec::new(), FakeConfig::default()).await;
    // A scale-down as slow as Scalingo's would only lengthen the test.
    stack.fake.set_stop_delay(Duration::from_secs(2));
    served_every_time(&stack, APP, 4).await;
    // Quiet: no traffic while the filters renew their leases several times.
    let flushes = stack.envoy.counter("paastis.activity_flush");
    renewed(&stack, flushes, 6).await;

    let (status, body) = admin_pause(&stack.client, &admin, APP).await;
    assert_eq!(status, 200, "{body}");
    wait_until("the app is stopped", || paused(&stack, APP)).await;
    let scales = stack.fake.scale_calls(APP);

    // The next requests: held while the app wakes, then served by it.
    let reply = stack.get(&host(APP), "/").await;
    assert!(!by_the_router(&reply), "the router's page: {reply:?}");
    assert!(
        by_the_app(&reply, APP),
        "{reply:?}\n{}",
        stack.sidecar.log()
    );
    assert_eq!(stack.fake.scale_calls(APP), scales + 1, "woken once");
    served_every_time(&stack, APP, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_the_drain_cancels_the_pause() {
    let marks = tempfile::tempdir().unwrap();
    let started = marks.path().join("stopping");
    let hook = format!("touch {}; sleep 3", started.display());
    let stack = Stack::start(StackOptions {
        fake: FakeConfig {
            stop_delay: Duration::from_secs(2),
            ..FakeConfig::default()
        },
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        sidecar_env: vec![
            ("PAASTIS_SCHEDULER_INTERVAL".into(), "2".into()),
            ("START_AND_STOP_MAX_IDLE_TIME".into(), "1".into()),
            ("PROVIDER_SCALINGO_REGIONS".into(), "osc-fr1".into()),
            // Runs after the stop, before the drain and the scale call:
            // the test's window for a request "during the drain".
            ("HOOKS_BEFORE_STOP".into(), hook),
        ],
        ..StackOptions::default()
    })
    .await;
    served_every_time(&stack, APP, 2).await;
    wait_until("the scheduler starts pausing the idle app", || {
        started.exists()
    })
    .await;
    // A user, while the pause drains.
    let reply = stack.get(&host(APP), "/").await;
    assert!(by_the_app(&reply, APP), "{reply:?}");
    wait_until("the pause gives up", || {
        stack
            .sidecar
            .log()
            .contains("used or being woken: kept running")
    })
    .await;
    let app = stack.fake.app(APP).unwrap();
    assert!(app.web_running, "the app was paused under its user");
    assert_eq!(stack.fake.scale_calls(APP), 1, "its first wake only");
    served_every_time(&stack, APP, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_during_the_scale_down_is_held_then_served() {
    let (stack, admin) = admin_stack(Vec::new(), FakeConfig::default()).await;
    stack.fake.set_stop_delay(Duration::from_secs(4));
    served_every_time(&stack, APP, 2).await;
    let (status, body) = admin_pause(&stack.client, &admin, APP).await;
    assert_eq!(status, 200, "{body}");
    // The platform still scales it down.
    assert!(!paused(&stack, APP), "scaled down too soon for this test");
    let reply = stack.get(&host(APP), "/").await;
    assert!(
        by_the_app(&reply, APP),
        "{reply:?}\nsidecar log:\n{}",
        stack.sidecar.log()
    );
    served_every_time(&stack, APP, 2).await;
}

fn redis_env(redis: &TestRedis, prefix: &str, instance: &str) -> Vec<(String, String)> {
    vec![
        ("REGISTRY_TYPE".into(), "redis".into()),
        ("REGISTRY_REDIS_URL".into(), redis.url()),
        ("REGISTRY_REDIS_KEY_PREFIX".into(), prefix.into()),
        ("PAASTIS_INSTANCE".into(), instance.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_elsewhere_while_this_sidecar_is_down_is_learnt_when_it_is_back() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("leases_restart");
    let mut stack = Stack::start(StackOptions {
        fake: FakeConfig {
            stop_delay: Duration::from_secs(2),
            ..FakeConfig::default()
        },
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        sidecar_env: redis_env(&redis, &prefix, "a"),
        // A's filters keep a lease 5 s without hearing from their sidecar.
        filter: json!({ "cache_ttl_ms": 5000 }),
        ..StackOptions::default()
    })
    .await;
    let mut b_env = redis_env(&redis, &prefix, "b");
    b_env.extend(admin_env(ADMIN_TOKEN));
    let rules = stack.dir().join("paastis.yml");
    let b_dir = stack.dir().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b = Sidecar::start(&stack.fake, &rules, &b_dir, &b_env).expect("sidecar b");
    let admin = b.admin.expect("b's admin API listens").to_string();

    served_every_time(&stack, APP, 2).await;
    let flushes = stack.envoy.counter("paastis.activity_flush");
    renewed(&stack, flushes, 4).await;

    // A's sidecar dies; B pauses the app meanwhile (once A's leases ran out).
    let a_port = stack.sidecar.addr.port();
    let a_token = stack.sidecar.token.clone();
    stack.sidecar.stop();
    let (status, body) = admin_pause(&stack.client, &admin, APP).await;
    assert_eq!(status, 200, "{body}\nb's log:\n{}", b.log());
    wait_until("the app is stopped", || paused(&stack, APP)).await;
    let scales = stack.fake.scale_calls(APP);

    // A's sidecar comes back (same port, same token); its filters renew.
    let mut a_env = redis_env(&redis, &prefix, "a");
    a_env.push(("PAASTIS_LISTEN".into(), format!("127.0.0.1:{a_port}")));
    a_env.push(("PAASTIS_SIDECAR_TOKEN".into(), a_token));
    stack.sidecar = Sidecar::start(&stack.fake, &rules, stack.dir(), &a_env).expect("restart");
    // The filters renew their lease with it (and are told asleep).
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let metrics = stack
            .client
            .get(format!("http://{}/metrics", stack.sidecar.addr))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        let batches = metrics
            .lines()
            .find_map(|l| l.strip_prefix("paastis_activity_batches_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if batches >= 1.0 {
            break;
        }
        assert!(Instant::now() < give_up, "the filters never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A's next request wakes the app; never the router's page (a worker
    // that had not renewed yet answers our 503 and the wake goes on).
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let reply = stack.get(&host(APP), "/").await;
        assert!(!by_the_router(&reply), "{reply:?}");
        if by_the_app(&reply, APP) {
            break;
        }
        assert_eq!(
            reply.status,
            503,
            "{reply:?}\na's log:\n{}",
            stack.sidecar.log()
        );
        assert!(Instant::now() < give_up, "never woken: {reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(stack.fake.scale_calls(APP), scales + 1, "woken once");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_stopped_outside_gets_the_waiting_page_or_our_503_never_the_router_page() {
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        ..StackOptions::default()
    })
    .await;
    served_every_time(&stack, APP, 2).await;
    // Stopped by its owner, not by the gateway: the filters still hold a
    // lease on it.
    assert!(stack.fake.stop_app(APP));
    wait_until("the app is stopped", || paused(&stack, APP)).await;

    let browser = stack
        .request(
            &host(APP),
            "/",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert!(!by_the_router(&browser), "{browser:?}");
    assert_eq!(browser.status, 503, "{browser:?}");
    assert!(browser.body.contains("paastis-waiting"), "{browser:?}");
    // The wake started at once: an API client is held until the app runs,
    // or told to retry with our JSON; never the router's page.
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let reply = stack.get(&host(APP), "/").await;
        assert!(!by_the_router(&reply), "{reply:?}");
        if by_the_app(&reply, APP) {
            break;
        }
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(reply.header("retry-after").is_some(), "{reply:?}");
        assert!(Instant::now() < give_up, "never woken: {reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        stack.fake.scale_calls(APP),
        2,
        "its first wake and this one"
    );
}

/// Stops the stack's sidecar; returns what starts it again on the same
/// address (the one Envoy's cluster knows) with the same token.
fn stop_sidecar(stack: &mut Stack) -> Vec<(String, String)> {
    let env = vec![
        (
            "PAASTIS_LISTEN".to_owned(),
            format!("127.0.0.1:{}", stack.sidecar.addr.port()),
        ),
        (
            "PAASTIS_SIDECAR_TOKEN".to_owned(),
            stack.sidecar.token.clone(),
        ),
    ];
    stack.sidecar.stop();
    env
}

fn start_sidecar(stack: &mut Stack, env: &[(String, String)]) {
    let rules = stack.dir().join("paastis.yml");
    stack.sidecar = Sidecar::start(&stack.fake, &rules, stack.dir(), env).expect("restart");
}

/// `GET /` for `app` through the stack's Envoy, from a client of its own
/// (so that the stack may be changed meanwhile).
fn request_apart(stack: &Stack, app: &str) -> tokio::task::JoinHandle<(u16, Option<String>)> {
    let url = format!("http://{}/", stack.envoy.listen);
    let host = host(app);
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a client");
        let reply = client
            .get(url)
            .header("host", host)
            .send()
            .await
            .expect("an answer");
        let status = reply.status().as_u16();
        let app = reply
            .headers()
            .get(APP_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, app)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_held_across_a_restart_of_the_sidecar_then_served() {
    let other = "shop-back";
    let mut stack = Stack::start(StackOptions {
        apps: vec![
            FakeApp::web(APP, "osc-fr1", 0),
            FakeApp::web(other, "osc-fr1", 0),
        ],
        ..StackOptions::default()
    })
    .await;
    // A sleeping app asked for while the sidecar is down: held until it is
    // back (2 s later), woken, served.
    let again = stop_sidecar(&mut stack);
    let held = request_apart(&stack, APP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!held.is_finished(), "answered while the sidecar was down");
    start_sidecar(&mut stack, &again);
    let (status, by) = held.await.expect("the request");
    assert_eq!(
        (status, by.as_deref()),
        (200, Some(APP)),
        "held, then served by the app\n{}",
        stack.envoy.log()
    );

    // A request held for a wake whose sidecar dies under it (a 4 s boot):
    // the call is sent again to the sidecar once it is back, which waits
    // for the boot under way.
    stack.fake.set_boot_delay(Duration::from_secs(4));
    let held = request_apart(&stack, other);
    wait_until("the wake's scale call", || {
        stack.fake.scale_calls(other) == 1
    })
    .await;
    let again = stop_sidecar(&mut stack);
    tokio::time::sleep(Duration::from_secs(1)).await;
    start_sidecar(&mut stack, &again);
    let (status, by) = held.await.expect("the request");
    assert_eq!(
        (status, by.as_deref()),
        (200, Some(other)),
        "held across the restart, then served\n{}",
        stack.sidecar.log()
    );
    // The restarted sidecar (a registry in memory) knows nothing of the
    // wake: its one scale call meets the platform's `is scaling` and it
    // waits for that boot.
    assert!(
        stack.fake.scale_calls(other) <= 2,
        "{}",
        stack.sidecar.log()
    );
    assert!(stack
        .sidecar
        .log()
        .contains("another operation is running, waiting"));
}

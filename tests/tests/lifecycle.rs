//! End-to-end lifecycle: real Envoy with the built `.wasm`, the sidecar
//! binary, the strict fake Scalingo. What a user of a sleeping app lives
//! through, asserted from the fake's side (formation, containers, scale
//! calls), waiting on conditions, never on fixed sleeps:
//! - a 20 MiB upload to a sleeping app is held through its wake and reaches
//!   the app whole (digest checked);
//! - a WebSocket held open past the app's idle time keeps the app awake
//!   (open streams count as activity), while an idle app next to it is
//!   paused;
//! - the whole idle lifecycle with linked apps: woken, idle, paused by the
//!   scheduler, woken again by the next request with the formation it had.
//!
//! The sidecar's idle time cannot be shorter than a minute (it is counted in
//! minutes, as in Paastis), so the two idle tests last a little over a
//! minute each; they run side by side.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::harness::{Stack, StackOptions};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

/// The shortest max idle time the sidecar takes (minutes).
const IDLE: Duration = Duration::from_secs(60);
/// Give-up bound of the waits below: only there so that a broken gateway
/// fails the test instead of hanging it; never reached when it works (an
/// idle app is paused one scheduler pass, 2 s, after its idle time).
const GIVE_UP: Duration = Duration::from_secs(150);

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// A stack whose scheduler runs a pass every 2 s and pauses apps idle for a
/// minute.
async fn idle_stack(apps: Vec<FakeApp>, rules_yaml: &str) -> Stack {
    Stack::start(StackOptions {
        fake: FakeConfig {
            boot_delay: Duration::from_millis(300),
            // Kinder than the real 30 s scale-down: the pause is asserted
            // once its containers are gone, and 30 s more would only
            // lengthen the test (the wake during a scale-down has its own
            // tests in the sidecar's suite).
            stop_delay: Duration::from_secs(1),
            ..FakeConfig::default()
        },
        apps,
        rules_yaml: rules_yaml.to_owned(),
        // The filter's cache keeps an app "known awake" far shorter than its
        // idle time, as in production (30 s against 15 min): the request
        // after a pause goes to the sidecar, not to the stopped app.
        filter: json!({ "cache_ttl_ms": 5000 }),
        sidecar_env: vec![
            ("PAASTIS_SCHEDULER_INTERVAL".into(), "2".into()),
            ("START_AND_STOP_MAX_IDLE_TIME".into(), "1".into()),
            // One region: one app listing a pass keeps the scheduler well
            // inside the Scalingo budget at a pass every 2 s.
            ("PROVIDER_SCALINGO_REGIONS".into(), "osc-fr1".into()),
        ],
        ..StackOptions::default()
    })
    .await
}

/// Polls `done` every 100 ms until it holds; panics after [`GIVE_UP`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + GIVE_UP;
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The amount of `web` containers in the app's formation.
fn web_amount(fake: &FakeScalingo, app: &str) -> u32 {
    fake.app(app)
        .and_then(|a| a.formation.into_iter().find(|(t, _, _)| t == "web"))
        .map_or(0, |(_, amount, _)| amount)
}

/// Running: `amount` web containers in the formation, all of them running,
/// and the front serving the app itself.
fn runs_with(fake: &FakeScalingo, app: &str, amount: u32) -> bool {
    fake.app(app).is_some_and(|a| {
        a.status == "running"
            && web_amount(fake, app) == amount
            && a.running_web == amount as usize
            && a.front_serves_app
    })
}

/// Paused: stopped, web amount 0, no container left.
fn is_paused(fake: &FakeScalingo, app: &str) -> bool {
    fake.app(app).is_some_and(|a| {
        a.status == "stopped" && web_amount(fake, app) == 0 && a.containers.is_empty()
    })
}

/// App listings (one per scheduler pass: the fake sees a listing only when a
/// pass starts) received after `since`.
fn listings_since(fake: &FakeScalingo, since: Instant) -> usize {
    fake.call_log()
        .iter()
        .filter(|r| r.endpoint == Endpoint::ListApps && r.at > since)
        .count()
}

/// Deterministic bytes that are not UTF-8 (a xorshift stream).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_upload_is_held_through_the_wake_and_reaches_the_app_whole() {
    const APP: &str = "upload-app";
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        ..StackOptions::default()
    })
    .await;
    let body = noise(20 * 1024 * 1024);
    let digest = hex(&Sha256::digest(&body));

    let reply = stack
        .client
        .post(format!("http://{}/upload?part=1", stack.envoy.listen))
        .header("host", host(APP))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("the upload is answered");
    assert_eq!(reply.status().as_u16(), 200, "{reply:?}");
    let echo: Value = reply.json().await.expect("the app's JSON echo");
    assert_eq!(echo["app"], APP, "answered by the app itself: {echo}");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 20 * 1024 * 1024);
    assert_eq!(echo["body_sha256"], digest.as_str(), "every byte, in order");
    assert_eq!(echo["body"], Value::Null, "too large to echo as text");
    assert_eq!(stack.fake.scale_calls(APP), 1, "woken once");
    assert!(runs_with(&stack.fake, APP, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_app_awake_past_its_idle_time() {
    const CHAT: &str = "chat-app";
    // The witness: woken after the chat app, idle all along, so the
    // scheduler pauses it no later than it would pause an idle chat app.
    const WITNESS: &str = "idle-app";
    let stack = idle_stack(
        vec![
            FakeApp::web(CHAT, "osc-fr1", 0),
            FakeApp::web(WITNESS, "osc-fr1", 0),
        ],
        "",
    )
    .await;

    // The upgrade wakes the chat app.
    let mut request = format!("ws://{}/socket", host(CHAT))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "host",
        host(CHAT).parse().expect("a valid host header value"),
    );
    let tcp = tokio::net::TcpStream::connect(stack.envoy.listen)
        .await
        .expect("connect to envoy");
    let (mut socket, upgrade) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("the upgrade goes through the wake");
    assert_eq!(upgrade.status().as_u16(), 101);
    socket.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        socket.next().await.expect("echo").expect("frame"),
        Message::text("hello")
    );
    assert!(runs_with(&stack.fake, CHAT, 1));

    let reply = stack.get(&host(WITNESS), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], WITNESS);

    // The socket stays open and silent while the witness idles out.
    wait_until("the idle witness is paused", || {
        is_paused(&stack.fake, WITNESS)
    })
    .await;
    let paused_seen = Instant::now();
    // The pass that paused the witness and the whole next one are over
    // once a second pass has started since: had the chat app been idle,
    // one of them would have paused it.
    wait_until("two more scheduler passes", || {
        listings_since(&stack.fake, paused_seen) >= 2
    })
    .await;

    assert!(
        runs_with(&stack.fake, CHAT, 1),
        "an app with an open WebSocket is never paused: {:?}",
        stack.fake.app(CHAT)
    );
    assert_eq!(stack.fake.scale_calls(CHAT), 1, "only its wake");
    socket
        .send(Message::text("still here"))
        .await
        .expect("send");
    assert_eq!(
        socket.next().await.expect("echo").expect("frame"),
        Message::text("still here"),
        "the socket outlived the idle time"
    );
    socket.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_linked_apps_are_paused_by_the_scheduler_and_woken_again_as_they_were() {
    const FRONT: &str = "shop-front";
    const API: &str = "shop-api-1";
    // The API runs two web containers before the gateway starts: the
    // scheduler discovers it, and its pause remembers the two.
    let stack = idle_stack(
        vec![
            FakeApp::web(FRONT, "osc-fr1", 0),
            FakeApp::web(API, "osc-fr1", 2),
        ],
        "rules:\n  - pattern: '^(.*)-front$'\n    linked_apps: ['$1-api-1']\n    app_max_idle_time: 1\n",
    )
    .await;

    // Woken (the front; the API already runs).
    let woken = Instant::now();
    let reply = stack.get(&host(FRONT), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], FRONT);
    assert!(runs_with(&stack.fake, FRONT, 1));
    assert!(runs_with(&stack.fake, API, 2));
    assert_eq!(stack.fake.scale_calls(FRONT), 1);
    assert_eq!(stack.fake.scale_calls(API), 0, "it was running");

    // Idle, then paused by the scheduler, both of them.
    wait_until("both apps paused", || {
        is_paused(&stack.fake, FRONT) && is_paused(&stack.fake, API)
    })
    .await;
    // A lower bound, which a loaded machine cannot break (it only makes
    // the pause later): the front's last access is its wake, after
    // `woken`, so it is not paused before `woken + IDLE`.
    assert!(
        woken.elapsed() >= IDLE,
        "paused before its idle time: {:?}",
        woken.elapsed()
    );
    assert_eq!(stack.fake.scale_calls(FRONT), 2, "its wake and its pause");
    assert_eq!(stack.fake.scale_calls(API), 1, "its pause");

    // Woken again by the next request, with the formation each had.
    let reply = stack.get(&host(FRONT), "/again").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], FRONT);
    assert_eq!(reply.json()["path"], "/again");
    assert!(runs_with(&stack.fake, FRONT, 1));
    wait_until("the linked app runs its two containers again", || {
        runs_with(&stack.fake, API, 2)
    })
    .await;
    assert_eq!(stack.fake.scale_calls(FRONT), 3);
    assert_eq!(stack.fake.scale_calls(API), 2);
}

//! Faults of the sidecar's lifecycle, on real processes: two sidecars on
//! one Redis (a pause through one reaches the other's memory), made-up
//! names (no registry growth), and Redis hung then restarted empty during
//! traffic through Envoy (cold wakes served, no active app paused). Each
//! asserts an invariant, never a timing.

use std::process::Command;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, Fault, FaultKind};
use paastis_e2e::harness::{admin_env, Sidecar, Stack, StackOptions};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "lifecycle-admin-token-0123456789";

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

fn redis_env(redis: &TestRedis, prefix: &str, instance: &str) -> Vec<(String, String)> {
    [
        ("REGISTRY_TYPE", "redis".to_owned()),
        ("REGISTRY_REDIS_URL", redis.url()),
        ("REGISTRY_REDIS_KEY_PREFIX", prefix.to_owned()),
        ("PAASTIS_INSTANCE", instance.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// POSTs `body` to `path` on `sidecar`, with its token.
async fn post(
    client: &reqwest::Client,
    sidecar: &Sidecar,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let reply = client
        .post(format!("http://{}{path}", sidecar.addr))
        .header("authorization", sidecar.authorization())
        .json(&body)
        .send()
        .await
        .expect("answer");
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn registered(client: &reqwest::Client, sidecar: &Sidecar) -> Vec<String> {
    let url = format!("http://{}/v1/apps", sidecar.addr);
    let apps: Value = client
        .get(url)
        .header("authorization", sidecar.authorization())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["app"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (10 s at most) until `check` holds.
async fn until<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_through_one_sidecar_reaches_the_other_before_it_answers_awake() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("fault_two_sidecars");
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web("shop-front", "osc-fr1", 0)],
        sidecar_env: redis_env(&redis, &prefix, "two"),
        ..StackOptions::default()
    })
    .await;
    // A real scale-down's behaviour, 2 s long instead of up to 30 s.
    stack.fake.set_stop_delay(Duration::from_secs(2));
    let mut one_env = redis_env(&redis, &prefix, "one");
    one_env.extend(admin_env(ADMIN_TOKEN));
    let rules = stack.dir().join("paastis.yml");
    let one_dir = stack.dir().join("one");
    std::fs::create_dir_all(&one_dir).unwrap();
    let one = Sidecar::start(&stack.fake, &rules, &one_dir, &one_env).expect("sidecar one");
    let admin_addr = one.admin.expect("one's admin API listens").to_string();
    let client = &stack.client;

    // Woken through two (through Envoy, as users do).
    assert_eq!(stack.get(&host("shop-front"), "/").await.status, 200);
    let batch = json!({"apps": ["shop-front"]});
    let (_, answer) = post(client, &stack.sidecar, "/v1/activity", batch.clone()).await;
    assert_eq!(
        answer["awake"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    // Paused through one's admin API.
    let paused = client
        .post(format!(
            "http://{admin_addr}/admin/v1/apps/shop-front/pause"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("admin answers: {e}; its log:\n{}", one.log()));
    assert_eq!(paused.status(), 200, "{:?}", paused.text().await);

    let (_, answer) = post(client, &stack.sidecar, "/v1/activity", batch.clone()).await;
    assert_eq!(
        answer["awake"].as_array().map(Vec::len),
        Some(0),
        "two no longer lists it awake: {answer}"
    );
    let scales = stack.fake.scale_calls("shop-front");
    let (status, woken) = post(
        client,
        &stack.sidecar,
        "/v1/wake",
        json!({"app": "shop-front"}),
    )
    .await;
    assert_eq!(status, 200, "{woken}");
    assert!(
        woken["waited_ms"].as_u64() > Some(0),
        "a real wake, not a memory: {woken}"
    );
    assert!(
        stack.fake.scale_calls("shop-front") > scales,
        "scaled up again"
    );
    assert!(stack.fake.app("shop-front").unwrap().web_running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_made_up_names_never_grow_the_registry() {
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web("real-app-1", "osc-fr1", 1)],
        ..StackOptions::default()
    })
    .await;
    let client = &stack.client;
    // The real app is known (woken through Envoy).
    assert_eq!(stack.get(&host("real-app-1"), "/").await.status, 200);
    until("the wake registers the real app", || async {
        registered(client, &stack.sidecar).await == ["real-app-1"]
    })
    .await;

    // Random, valid-looking names, as a client (or a pod) could post them.
    let seed = std::process::id() as u64;
    let names: Vec<String> = (0..1_000u64)
        .map(|i| format!("x{:016x}", (seed ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    for chunk in names.chunks(250) {
        let body = json!({ "apps": chunk });
        let (status, answer) = post(client, &stack.sidecar, "/v1/activity", body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["awake"], json!([]), "none is awake");
    }
    // And a hundred made-up hosts through Envoy: unknown apps, not routed.
    for name in names.iter().take(100) {
        let reply = stack.get(&host(name), "/").await;
        assert_eq!(reply.status, 404, "{reply:?}");
    }
    let apps = registered(client, &stack.sidecar).await;
    assert!(
        apps == ["real-app-1"],
        "the registry grew to {} apps, first {:?}",
        apps.len(),
        &apps[..apps.len().min(5)]
    );
    let metrics = client
        .get(format!("http://{}/metrics", stack.sidecar.addr))
        .header("authorization", stack.sidecar.authorization())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("paastis_registry_refused_total{reason=\"unknown\"} 1000"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_then_restarted_empty_during_traffic() {
    let mut redis = TestRedis::start();
    let prefix = unique_prefix("fault_redis");
    let mut env = redis_env(&redis, &prefix, "solo");
    // Passes every second, so that several run during the outage and after.
    env.push(("PAASTIS_SCHEDULER_INTERVAL".into(), "1".into()));
    let stack = Stack::start(StackOptions {
        apps: vec![
            FakeApp::web("busy-app-1", "osc-fr1", 0),
            FakeApp::web("cold-app-1", "osc-fr1", 0),
        ],
        sidecar_env: env,
        ..StackOptions::default()
    })
    .await;
    assert_eq!(stack.get(&host("busy-app-1"), "/").await.status, 200);

    // Redis freezes: a cold wake is still served.
    redis.pause();
    let cold = stack.get(&host("cold-app-1"), "/").await;
    redis.resume();
    assert_eq!(cold.status, 200, "{cold:?}");
    assert_eq!(cold.json()["app"], "cold-app-1", "the app itself served it");

    // Killed and restarted empty while busy-app-1 is used.
    redis.kill();
    for _ in 0..5 {
        assert_eq!(stack.get(&host("busy-app-1"), "/").await.status, 200);
    }
    redis.restart();
    let client = &stack.client;
    // The passes find the running apps again (their idle clock starts then).
    until("the running apps are registered again", || async {
        let apps = registered(client, &stack.sidecar).await;
        apps.contains(&"busy-app-1".to_owned()) && apps.contains(&"cold-app-1".to_owned())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(stack.get(&host("busy-app-1"), "/").await.status, 200);
    }
    for app in ["busy-app-1", "cold-app-1"] {
        assert!(stack.fake.app(app).unwrap().web_running, "{app} paused");
        assert_eq!(stack.fake.scale_calls(app), 1, "{app}: its wake only");
    }
}

/// Writes a registry record as a pause by the gateway leaves it (see the
/// Redis layout in `sidecar/src/registry/redis/layout.rs`): last used
/// `idle_minutes` ago, `web: 1` to restore.
fn paused_long_ago(redis: &TestRedis, prefix: &str, app: &str, idle_minutes: u64) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let port = redis.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "{out:?}");
    };
    let at = (now_ms - idle_minutes * 60_000).to_string();
    cli(&["ZADD", &format!("{prefix}last_access"), &at, app]);
    cli(&[
        "HSET",
        &format!("{prefix}app:{app}"),
        "region",
        "osc-fr1",
        "max_idle_minutes",
        "15",
        "formation",
        r#"[["web",1]]"#,
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_during_a_wake_with_a_slow_ps_and_a_slow_linked_app_pause_nothing() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("fault_mid_wake");
    let mut env = redis_env(&redis, &prefix, "solo");
    // A pass every second, so that several run during the wake. The budget
    // (and the fake's limit) are raised so that they all run: what is under
    // test is what a pass decides, not the pacing.
    env.push(("PAASTIS_SCHEDULER_INTERVAL".into(), "1".into()));
    env.push(("PAASTIS_SCALINGO_CALLS_PER_MINUTE".into(), "6000".into()));
    // Both asleep for an hour, paused by the gateway.
    paused_long_ago(&redis, &prefix, "shop-front", 60);
    paused_long_ago(&redis, &prefix, "shop-api-1", 60);
    let stack = Stack::start(StackOptions {
        fake: FakeConfig {
            boot_delay: Duration::from_millis(300),
            rate_limit_per_minute: None,
            ..FakeConfig::default()
        },
        apps: vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("shop-api-1", "osc-fr1", 0),
        ],
        rules_yaml: "rules:\n  - pattern: '^shop-front$'\n    linked_apps: ['shop-api-1']\n".into(),
        sidecar_env: env,
        ..StackOptions::default()
    })
    .await;
    // `ps` and the formation answer after 2 s; the linked app's scale after 4 s.
    for endpoint in [Endpoint::Ps, Endpoint::Containers] {
        let slow = Fault::new(endpoint, FaultKind::Delay(Duration::from_secs(2))).times(100);
        stack.fake.inject(slow);
    }
    let slow_api =
        Fault::new(Endpoint::Scale, FaultKind::Delay(Duration::from_secs(4))).for_app("shop-api-1");
    stack.fake.inject(slow_api);

    let reply = stack.get(&host("shop-front"), "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], "shop-front");
    // Three more passes list the apps running (each lists every region).
    let listed = stack.fake.calls(Endpoint::ListApps);
    until("three more passes", || async {
        stack.fake.calls(Endpoint::ListApps) >= listed + 6
    })
    .await;
    for app in ["shop-front", "shop-api-1"] {
        assert!(stack.fake.app(app).unwrap().web_running, "{app} paused");
        assert_eq!(stack.fake.scale_calls(app), 1, "{app}: its wake only");
    }
}

//! Prewarm across two gateway instances sharing one real Redis: each app
//! whose keep-awake window is open (or opens within `prewarm`) is woken
//! once, one at a time, and apps without `prewarm` are left asleep.

use std::time::Duration;

use paastis_e2e::fake::{FakeApp, FakeScalingo};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::registry::AppMeta;
use paastis_sidecar::wake::now_ms;
use paastis_sidecar::Gateway;
use tokio_util::sync::CancellationToken;

const RULES: &str = "rules:
  - pattern: '^office-'
    keep_awake: ['Daily 00:00-24:00 UTC']
    prewarm: 5
  - pattern: '^lazy-'
    keep_awake: ['Daily 00:00-24:00 UTC']
";

async fn instance(
    fake: &FakeScalingo,
    redis: &TestRedis,
    rules: &std::path::Path,
    prefix: &str,
    name: &str,
) -> Gateway {
    let url = redis.url();
    let vars = sidecar_env(
        fake,
        rules,
        &[
            ("REGISTRY_TYPE", "redis"),
            ("REGISTRY_REDIS_URL", &url),
            ("REGISTRY_REDIS_KEY_PREFIX", prefix),
            ("PAASTIS_INSTANCE", name),
        ],
    );
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).expect("valid config");
    paastis_sidecar::build(&config)
        .await
        .expect("gateway builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_prewarm_each_app_once_and_only_apps_with_prewarm() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("prewarm");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("paastis.yml");
    std::fs::write(&rules, RULES).unwrap();
    let fake = fake_with(
        vec![
            FakeApp::web("office-one", "osc-fr1", 0),
            FakeApp::web("office-two", "osc-fr1", 0),
            FakeApp::web("lazy-app", "osc-fr1", 0),
        ],
        Duration::from_millis(200),
    )
    .await;
    let one = instance(&fake, &redis, &rules, &prefix, "one").await;
    let two = instance(&fake, &redis, &rules, &prefix, "two").await;
    // Known to the registry, as apps the scheduler once paused are.
    for app in ["office-one", "office-two", "lazy-app"] {
        let meta = AppMeta {
            region: "osc-fr1".to_owned(),
            max_idle_minutes: 15,
            linked_apps: Vec::new(),
        };
        one.waker
            .registry()
            .register(app, meta, now_ms() - 3_600_000)
            .await
            .unwrap();
    }

    let stop = CancellationToken::new();
    let now = now_ms();
    let (a, b) = tokio::join!(one.prewarm.pass(now, &stop), two.prewarm.pass(now, &stop));
    let mut woken: Vec<String> = a.iter().chain(&b).cloned().collect();
    woken.sort();
    assert_eq!(woken, ["office-one", "office-two"], "{a:?} {b:?}");
    for app in ["office-one", "office-two"] {
        assert!(fake.app(app).unwrap().web_running, "{app}");
        assert_eq!(fake.scale_calls(app), 1, "{app}: one wake across instances");
    }
    assert!(
        !fake.app("lazy-app").unwrap().web_running,
        "no prewarm, no wake"
    );

    // The same occurrence is not prewarmed again, even once the awake
    // cache has forgotten the apps.
    one.waker.forget_awake("office-one");
    two.waker.forget_awake("office-one");
    let (a, b) = tokio::join!(one.prewarm.pass(now, &stop), two.prewarm.pass(now, &stop));
    assert!(a.is_empty() && b.is_empty(), "{a:?} {b:?}");
    assert_eq!(fake.scale_calls("office-one"), 1);
}

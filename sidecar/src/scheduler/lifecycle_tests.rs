//! Wakes against pauses and forgets, on the in-process platform with
//! tokio's paused clock: a slow `ps` (formation read), a slow linked app,
//! two instances sharing one coordinator.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::awake::AwakeCache;
use crate::platform::memory::{Call, InProcessPlatform};
use crate::platform::ContainerAmount;
use crate::registry::AppMeta;
use crate::wake::Waker;

const REGION: &str = "osc-fr1";
const MINUTE: u64 = 60_000;
const TIMEOUT: Duration = Duration::from_secs(60);

/// An app of the platform: name, formation, boot time.
type App<'a> = (&'a str, &'a [(&'a str, u32)], Duration);

fn deps(apps: &[App<'_>]) -> (Arc<InProcessPlatform>, Deps) {
    let platform = Arc::new(InProcessPlatform::new(&[REGION]));
    for (app, formation, boot) in apps {
        platform.add_app(REGION, app, formation);
        platform.set_boot(app, *boot);
    }
    let rules = crate::config::parse_rules(
        Path::new("paastis.yml"),
        "rules:\n  - pattern: '^shop-front$'\n    linked_apps: ['shop-api']\n",
        15,
    )
    .expect("rules");
    let deps = Deps::in_memory(platform.clone(), rules, Duration::from_secs(600));
    (platform, deps)
}

/// `app` last used `idle_minutes` ago (wall clock: wakes mark with it).
async fn used(deps: &Deps, app: &str, idle_minutes: u64, linked: &[&str]) {
    let meta = AppMeta {
        region: REGION.to_owned(),
        max_idle_minutes: 15,
        linked_apps: linked.iter().map(|a| (*a).to_owned()).collect(),
    };
    deps.registry
        .register(app, meta, now_ms() - idle_minutes * MINUTE)
        .await
        .unwrap();
}

fn scaled_to_zero(platform: &InProcessPlatform, app: &str) -> bool {
    platform
        .scales_of(app)
        .iter()
        .any(|changes| changes.iter().any(|c| c.amount == 0))
}

#[tokio::test(start_paused = true)]
async fn a_pass_during_the_wake_of_an_app_with_a_slow_linked_app_pauses_neither() {
    let (platform, deps) = deps(&[
        ("shop-front", &[("web", 0)], Duration::from_secs(2)),
        ("shop-api", &[("web", 0)], Duration::from_secs(40)),
    ]);
    // Both asleep for long, paused by the gateway (formation remembered).
    used(&deps, "shop-front", 60, &["shop-api"]).await;
    used(&deps, "shop-api", 60, &[]).await;
    for app in ["shop-front", "shop-api"] {
        deps.registry
            .remember_formation(app, vec![("web".to_owned(), 1)])
            .await
            .unwrap();
    }
    let waker = Waker::new(deps.clone(), TIMEOUT);
    let scheduler = Scheduler::new(deps.clone(), 600);
    let wake = tokio::spawn({
        let waker = waker.clone();
        async move { waker.wake("shop-front", None).await }
    });
    // The front runs, the api still boots: the listing says both run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!wake.is_finished());
    let report = scheduler.pass(now_ms()).await.unwrap();
    assert!(report.paused.is_empty(), "{report:?}");
    let answer = wake.await.unwrap().expect("woken");
    assert!(answer.linked_apps[0].running, "{answer:?}");
    for app in ["shop-front", "shop-api"] {
        assert!(!scaled_to_zero(&platform, app), "{app} paused mid-wake");
        assert_eq!(platform.formation_of(app), [("web".to_owned(), 1)]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_wake_that_starts_while_a_pause_reads_a_slow_ps_keeps_the_app() {
    let (platform, deps) = deps(&[("idle-app", &[("web", 1)], Duration::from_secs(2))]);
    used(&deps, "idle-app", 30, &[]).await;
    // The pause's formation read (`ps`) takes 4 s.
    platform.set_delay(Call::Formation, Duration::from_secs(4));
    let waker = Waker::new(deps.clone(), TIMEOUT);
    let scheduler = Arc::new(Scheduler::new(deps.clone(), 600));
    let pass = tokio::spawn({
        let scheduler = scheduler.clone();
        let now = now_ms();
        async move { scheduler.pass(now).await }
    });
    // The pause holds the app's wake lease, in its formation read.
    while deps
        .coordinator
        .holder(&format!("wake:{}", "idle-app"))
        .await
        .unwrap()
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answer = waker.wake("idle-app", None).await.expect("woken");
    assert_eq!(answer.region, REGION);
    let report = pass.await.unwrap().unwrap();
    assert!(report.paused.is_empty(), "{report:?}");
    assert!(!scaled_to_zero(&platform, "idle-app"), "paused mid-wake");
    assert_eq!(platform.formation_of("idle-app"), [("web".to_owned(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn an_app_is_paused_only_once_it_is_idle_again_after_a_wake() {
    let (platform, deps) = deps(&[("idle-app", &[("web", 0)], Duration::from_secs(2))]);
    used(&deps, "idle-app", 60, &[]).await;
    let waker = Waker::new(deps.clone(), TIMEOUT);
    let scheduler = Scheduler::new(deps.clone(), 600);
    let began = now_ms();
    waker.wake("idle-app", None).await.expect("woken");
    waker.settled().await;
    // Just under the max idle time after the wake began: kept.
    let report = scheduler.pass(began + 15 * MINUTE - 1).await.unwrap();
    assert!(report.paused.is_empty(), "{report:?}");
    let report = scheduler.pass(now_ms() + 15 * MINUTE).await.unwrap();
    assert_eq!(report.paused, ["idle-app"]);
    assert_eq!(
        platform.scales_of("idle-app").last().unwrap(),
        &vec![ContainerAmount::new("web", 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_forget_never_acts_on_a_listing_older_than_a_wake() {
    let (_platform, deps) = deps(&[("lazy-app", &[("web", 0)], Duration::from_secs(20))]);
    used(&deps, "lazy-app", 1, &[]).await;
    let waker = Waker::new(deps.clone(), TIMEOUT);
    let scheduler = Scheduler::new(deps.clone(), 600);
    let pass_began = now_ms() - 1;
    // A wake under way (it holds the lease while the app boots).
    let wake = tokio::spawn({
        let waker = waker.clone();
        async move { waker.wake("lazy-app", None).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!scheduler
        .forget_stopped("lazy-app", now_ms())
        .await
        .unwrap());
    wake.await.unwrap().expect("woken");
    waker.settled().await;
    // A pass that began (and listed the app stopped) before the wake.
    assert!(!scheduler
        .forget_stopped("lazy-app", pass_began)
        .await
        .unwrap());
    assert!(deps.registry.get("lazy-app").await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_pause_on_one_instance_stops_the_other_answering_awake() {
    let (platform, one) = deps(&[("my-app-1", &[("web", 0)], Duration::from_secs(2))]);
    let mut two = one.clone();
    two.instance = Arc::from("two");
    two.awake = Arc::new(AwakeCache::new(Duration::from_secs(600)));
    let waker_two = Waker::new(two.clone(), TIMEOUT);
    let scheduler_one = Scheduler::new(one.clone(), 600);

    waker_two.wake("my-app-1", None).await.expect("woken");
    waker_two.settled().await;
    let batch = ["my-app-1".to_owned()];
    assert_eq!(waker_two.activity(&batch).await.len(), 1, "awake on two");

    // Instances' clocks compare at ms: the pause comes after the wake.
    std::thread::sleep(Duration::from_millis(2));
    scheduler_one.pause_now("my-app-1").await.expect("paused");
    assert!(
        waker_two.activity(&batch).await.is_empty(),
        "two no longer answers it awake"
    );
    let scales = platform.scales_of("my-app-1").len();
    let answer = waker_two.wake("my-app-1", None).await.expect("woken again");
    assert!(answer.waited_ms > 0, "a real wake: {answer:?}");
    assert_eq!(platform.scales_of("my-app-1").len(), scales + 1);
    // The record keeps what the gateway knows of the app.
    let record = one.registry.get("my-app-1").await.unwrap().unwrap();
    assert_eq!(record.region.as_deref(), Some(REGION));
}

#[tokio::test(start_paused = true)]
async fn the_registry_never_holds_more_apps_than_its_cap() {
    let (_platform, mut deps) = deps(&[
        ("run-app-1", &[("web", 1)], Duration::ZERO),
        ("run-app-2", &[("web", 1)], Duration::ZERO),
        ("run-app-3", &[("web", 1)], Duration::ZERO),
    ]);
    deps.registry_cap = 2;
    let scheduler = Scheduler::new(deps.clone(), 600);
    let report = scheduler.pass(now_ms()).await.unwrap();
    assert_eq!(report.discovered, ["run-app-1", "run-app-2"]);
    assert_eq!(deps.registry.len().await.unwrap(), 2);
    let metrics = deps.metrics.encode();
    assert!(
        metrics.contains(r#"paastis_registry_refused_total{reason="cap"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_waiting_pages_status_never_says_running_after_a_pause_elsewhere() {
    let (_platform, one) = deps(&[("my-app-1", &[("web", 0)], Duration::from_secs(2))]);
    let mut two = one.clone();
    two.instance = Arc::from("two");
    two.awake = Arc::new(AwakeCache::new(Duration::from_secs(600)));
    let waker_two = Waker::new(two.clone(), TIMEOUT);
    waker_two.wake("my-app-1", None).await.expect("woken");
    waker_two.settled().await;
    assert!(matches!(
        waker_two.wake_state_shared("my-app-1").await,
        crate::wake::WakeState::Running(_)
    ));
    std::thread::sleep(Duration::from_millis(2));
    Scheduler::new(one.clone(), 600)
        .pause_now("my-app-1")
        .await
        .expect("paused");
    assert_eq!(
        waker_two.wake_state_shared("my-app-1").await,
        crate::wake::WakeState::Idle
    );
}

#[tokio::test(start_paused = true)]
async fn a_discovered_apps_idle_clock_starts_when_it_is_registered_not_when_the_pass_began() {
    // The registry lost the app (Redis restarted empty): activity reported
    // for it while the pass lists the apps is refused, so its idle clock
    // must not start before the listing ends.
    let (platform, deps) = deps(&[("lost-app", &[("web", 1)], Duration::ZERO)]);
    platform.set_delay(Call::ListApps, Duration::from_secs(7));
    let scheduler = Scheduler::new(deps.clone(), 600);
    let began = now_ms();
    let report = scheduler.pass(began).await.unwrap();
    assert_eq!(report.discovered, ["lost-app"]);
    let record = deps
        .registry
        .get("lost-app")
        .await
        .unwrap()
        .expect("registered");
    assert!(
        record.last_access_ms >= began + 7_000,
        "idle clock started at {} for a pass begun at {began}",
        record.last_access_ms
    );
}

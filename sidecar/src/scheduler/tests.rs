//! Passes on the in-process platform, with tokio's paused clock.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::platform::memory::{Call, InProcessPlatform};
use crate::registry::AppMeta;

const REGION: &str = "osc-fr1";
const MINUTE: u64 = 60_000;
const NOW: u64 = 1_000 * MINUTE;

fn setup(apps: &[(&str, &[(&str, u32)])]) -> (Arc<InProcessPlatform>, Deps, Scheduler) {
    let platform = Arc::new(InProcessPlatform::new(&[REGION]));
    for (app, formation) in apps {
        platform.add_app(REGION, app, formation);
    }
    let rules = crate::config::parse_rules(
        Path::new("paastis.yml"),
        "rules:\n  - pattern: '^keep-'\n    app_max_idle_time: 0\n",
        15,
    )
    .expect("rules");
    let deps = Deps::in_memory(platform.clone(), rules, Duration::from_secs(600));
    let scheduler = Scheduler::new(deps.clone(), 60);
    (platform, deps, scheduler)
}

async fn accessed(deps: &Deps, app: &str, idle_minutes: u64) {
    let meta = AppMeta {
        region: REGION.to_owned(),
        max_idle_minutes: 15,
        linked_apps: Vec::new(),
    };
    deps.registry
        .register(app, meta, NOW - idle_minutes * MINUTE)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pass_pauses_only_apps_idle_beyond_their_limit() {
    let (platform, deps, scheduler) = setup(&[
        ("idle-app", &[("web", 2), ("worker", 1)]),
        ("busy-app", &[("web", 1)]),
        ("keep-app", &[("web", 1)]),
    ]);
    accessed(&deps, "idle-app", 16).await;
    accessed(&deps, "busy-app", 14).await;
    accessed(&deps, "keep-app", 600).await;
    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.paused, ["idle-app"]);
    assert!(report.failed.is_empty() && report.discovered.is_empty());
    assert_eq!(
        platform.formation_of("idle-app"),
        [("web".to_owned(), 0), ("worker".to_owned(), 0)]
    );
    assert_eq!(platform.scales_of("busy-app").len(), 0);
    assert_eq!(platform.scales_of("keep-app").len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pause_records_the_formation_and_the_event() {
    let (_platform, deps, scheduler) = setup(&[("idle-app", &[("web", 2), ("worker", 1)])]);
    accessed(&deps, "idle-app", 30).await;
    deps.awake
        .insert("idle-app", crate::awake::Awake::new("idle-app", REGION));
    scheduler.pass(NOW).await.unwrap();
    let remembered = vec![("web".to_owned(), 2), ("worker".to_owned(), 1)];
    let record = deps.registry.get("idle-app").await.unwrap().unwrap();
    assert_eq!(record.formation, remembered);
    assert_eq!(
        deps.awake.entry("idle-app"),
        None,
        "no longer known running"
    );
    let events = deps.events.recent(10).await.unwrap();
    assert_eq!(
        events[0].kind,
        EventKind::Paused {
            formation: remembered
        }
    );
}

#[tokio::test(start_paused = true)]
async fn running_apps_are_discovered_and_stopped_ones_forgotten() {
    let (_platform, deps, scheduler) =
        setup(&[("new-app", &[("web", 1)]), ("stopped-app", &[("web", 0)])]);
    accessed(&deps, "stopped-app", 1).await;
    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.discovered, ["new-app"]);
    assert_eq!(report.forgotten, ["stopped-app"]);
    let record = deps.registry.get("new-app").await.unwrap().unwrap();
    assert_eq!(record.last_access_ms, NOW, "its idle clock starts now");
    assert_eq!(deps.registry.get("stopped-app").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_ends_the_pass_and_calls_are_paced() {
    let (platform, deps, scheduler) =
        setup(&[("idle-a", &[("web", 1)]), ("idle-b", &[("web", 1)])]);
    accessed(&deps, "idle-a", 40).await;
    accessed(&deps, "idle-b", 30).await;
    platform.fail_next(Call::Scale, ScalingoError::RateLimited);
    let started = Instant::now();
    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "idle-a", "oldest first");
    assert!(report.paused.is_empty(), "idle-b waits for the next pass");
    assert_eq!(platform.calls(Call::Scale), 1);
    // list, formation, scale: one a second at 60 a minute (tokio's paused
    // clock: exact); no filter holds a lease here, so the drain is over at
    // once.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.paused, ["idle-a", "idle-b"]);
}

#[tokio::test(start_paused = true)]
async fn a_pass_skips_when_another_instance_holds_the_lease() {
    let (platform, deps, scheduler) = setup(&[("idle-app", &[("web", 1)])]);
    accessed(&deps, "idle-app", 30).await;
    assert!(deps
        .coordinator
        .acquire(LEASE, "another", LEASE_TTL)
        .await
        .unwrap());
    let report = scheduler.pass(NOW).await.unwrap();
    assert!(report.skipped);
    assert_eq!(platform.calls(Call::Regions), 0);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_paused_in_the_pass_after_a_registry_failure() {
    let (platform, deps, scheduler) = setup(&[("idle-app", &[("web", 1)])]);
    accessed(&deps, "idle-app", 30).await;
    platform.fail_next(Call::Regions, ScalingoError::Transport("down".into()));
    assert!(matches!(
        scheduler.pass(NOW).await,
        Err(PassError::Scalingo(_))
    ));
    // A platform failure is not a registry failure: this pass pauses.
    let report = scheduler.pass(NOW).await.unwrap();
    assert!(!report.recovering);
    assert_eq!(report.paused, ["idle-app"]);
}

#[tokio::test(start_paused = true)]
async fn activity_that_arrives_during_the_pass_keeps_its_app_running() {
    let (platform, deps, scheduler) =
        setup(&[("idle-a", &[("web", 1)]), ("idle-b", &[("web", 1)])]);
    accessed(&deps, "idle-a", 40).await;
    accessed(&deps, "idle-b", 30).await;
    // The pass lists at 0 s and pauses idle-a at 1 s and 2 s (paced); idle-b
    // is used at 1.5 s, after the registry was read for the plan.
    let registry = deps.registry.clone();
    let user = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        registry.touch(&["idle-b".to_owned()], NOW).await.unwrap();
    });
    let report = scheduler.pass(NOW).await.unwrap();
    user.await.expect("task");
    assert_eq!(report.paused, ["idle-a"]);
    assert_eq!(platform.scales_of("idle-b").len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pass_whose_lease_was_taken_over_stops_before_the_next_pause() {
    let (platform, deps, scheduler) =
        setup(&[("idle-a", &[("web", 1)]), ("idle-b", &[("web", 1)])]);
    accessed(&deps, "idle-a", 40).await;
    accessed(&deps, "idle-b", 30).await;
    // Reading idle-a's formation stalls beyond the lease's lifetime, and
    // another instance takes the expired lease meanwhile.
    platform.set_delay(Call::Formation, LEASE_TTL + Duration::from_secs(60));
    let coordinator = deps.coordinator.clone();
    let other = tokio::spawn(async move {
        tokio::time::sleep(LEASE_TTL + Duration::from_secs(30)).await;
        coordinator
            .acquire(LEASE, "other", LEASE_TTL)
            .await
            .unwrap()
    });
    let report = scheduler.pass(NOW).await.unwrap();
    assert!(other.await.expect("task"), "the other instance took over");
    assert!(report.lost_lease);
    assert_eq!(report.paused, ["idle-a"], "the pause under way ends");
    assert_eq!(platform.scales_of("idle-b").len(), 0, "the rest is theirs");
}

#[tokio::test(start_paused = true)]
async fn an_app_still_stopping_is_not_paused_again() {
    let (platform, deps, scheduler) = setup(&[("idle-app", &[("web", 1)])]);
    platform.set_scale_down("idle-app", Duration::from_secs(30));
    accessed(&deps, "idle-app", 20).await;
    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.paused, ["idle-app"]);
    // Still `scaling` (listed as running) while its containers stop.
    let report = scheduler.pass(NOW).await.unwrap();
    assert!(report.paused.is_empty(), "{report:?}");
    assert_eq!(platform.scales_of("idle-app").len(), 1);
    let paused_events = deps
        .events
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EventKind::Paused { .. }))
        .count();
    assert_eq!(paused_events, 1);
}

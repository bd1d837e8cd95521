//! Dry run and managed apps, on the in-process platform with tokio's paused
//! clock: what a pass scales, records and reports.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::ManagedApps;
use crate::platform::memory::{Call, InProcessPlatform};
use crate::registry::{AppMeta, Event};
use crate::wake::Waker;

const REGION: &str = "osc-fr1";
const MINUTE: u64 = 60_000;
const NOW: u64 = 1_000 * MINUTE;

fn deps(apps: &[&str]) -> (Arc<InProcessPlatform>, Deps) {
    let platform = Arc::new(InProcessPlatform::new(&[REGION]));
    for app in apps {
        platform.add_app(REGION, app, &[("web", 1)]);
    }
    let rules = crate::config::parse_rules(Path::new("paastis.yml"), "", 15).expect("rules");
    let deps = Deps::in_memory(platform.clone(), rules, Duration::from_secs(600));
    (platform, deps)
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
async fn a_dry_run_records_would_pause_and_scales_nothing() {
    let (platform, deps) = deps(&["idle-app", "busy-app", "new-app-1"]);
    accessed(&deps, "idle-app", 16).await;
    accessed(&deps, "busy-app", 1).await;
    let scheduler = Scheduler::new(deps.clone(), 60).with_dry_run(true);

    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.would_pause, ["idle-app"]);
    assert!(report.paused.is_empty(), "{report:?}");
    assert_eq!(report.discovered, ["new-app-1"], "discovery still runs");
    assert_eq!(platform.calls(Call::Scale), 0);
    assert_eq!(platform.calls(Call::Formation), 0, "not even read");
    let record = deps.registry.get("idle-app").await.unwrap().unwrap();
    assert!(
        record.formation.is_empty(),
        "nothing to restore: not paused"
    );
    let events = deps.events.recent(10).await.unwrap();
    let would: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WouldPause { .. }))
        .collect();
    assert_eq!(would.len(), 1, "{events:?}");
    assert_eq!(would[0].app, "idle-app");
    assert_eq!(
        would[0].kind,
        EventKind::WouldPause {
            max_idle_minutes: 15
        }
    );
    // The event reads as documented in the admin API.
    let json = serde_json::to_value(would[0]).unwrap();
    assert_eq!(json["event"], "would_pause");
    assert_eq!(json["max_idle_minutes"], 15);

    // The next pass reports it again but records no second event for the
    // same idle period; once used and idle again, it does.
    let report = scheduler.pass(NOW + MINUTE).await.unwrap();
    assert_eq!(report.would_pause, ["idle-app"]);
    let would_pause_events = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::WouldPause { .. }))
            .count()
    };
    assert_eq!(
        would_pause_events(&deps.events.recent(20).await.unwrap()),
        1
    );
    deps.registry
        .touch(&["idle-app".to_owned()], NOW - 10 * MINUTE)
        .await
        .unwrap();
    scheduler.pass(NOW + 10 * MINUTE).await.unwrap();
    assert_eq!(
        would_pause_events(&deps.events.recent(20).await.unwrap()),
        2
    );

    // The same scheduler without dry run pauses it.
    let scheduler = Scheduler::new(deps.clone(), 60);
    let report = scheduler.pass(NOW + 10 * MINUTE).await.unwrap();
    assert_eq!(report.paused, ["idle-app"]);
    assert_eq!(platform.formation_of("idle-app"), [("web".to_owned(), 0)]);
}

#[tokio::test(start_paused = true)]
async fn unmanaged_apps_are_never_discovered_paused_nor_woken() {
    let (platform, mut deps) = deps(&["review-pr1", "prod-api", "prod-front"]);
    deps.managed = Arc::new(ManagedApps::matching("review-.*").unwrap());
    // Registered before PAASTIS_MANAGED_APPS was set, idle for an hour.
    accessed(&deps, "prod-front", 60).await;
    accessed(&deps, "review-pr1", 60).await;
    let scheduler = Scheduler::new(deps.clone(), 60);

    let report = scheduler.pass(NOW).await.unwrap();
    assert_eq!(report.paused, ["review-pr1"]);
    assert!(report.discovered.is_empty(), "{report:?}");
    assert!(platform.scales_of("prod-front").is_empty());
    assert!(platform.scales_of("prod-api").is_empty());
    assert_eq!(deps.registry.get("prod-api").await.unwrap(), None);

    // The admin API's pause says why it refuses.
    let e = scheduler.pause_now("prod-api").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"prod-api\" is not matching PAASTIS_MANAGED_APPS: the gateway never scales it"
    );

    // A request for it is routed like one for an ignored app, never scaled:
    // stopped by someone else, it stays stopped.
    platform.add_app(REGION, "prod-stopped", &[("web", 0)]);
    let waker = Waker::new(deps.clone(), Duration::from_secs(20));
    let answer = waker.wake("prod-stopped", None).await.expect("routed");
    assert_eq!(answer.region, REGION);
    assert!(platform.scales_of("prod-stopped").is_empty());
}

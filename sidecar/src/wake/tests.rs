//! The wake logic on the in-process platform, with tokio's paused clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::platform::memory::{Call, InProcessPlatform};
use crate::platform::{ContainerAmount, ScalingoError};

const REGION: &str = "osc-fr1";
const TIMEOUT: Duration = Duration::from_secs(60);

fn rules(text: &str) -> AppRules {
    crate::config::parse_rules(Path::new("paastis.yml"), text, 15).expect("rules")
}

/// A waker over `platform` with in-memory parts.
fn waker(platform: &Arc<InProcessPlatform>, rules_text: &str) -> Arc<Waker> {
    let deps = Deps::in_memory(
        platform.clone(),
        rules(rules_text),
        Duration::from_secs(600),
    );
    Waker::new(deps, TIMEOUT)
}

fn platform_with(apps: &[(&str, &[(&str, u32)])]) -> Arc<InProcessPlatform> {
    let platform = Arc::new(InProcessPlatform::new(&[REGION]));
    for (app, formation) in apps {
        platform.add_app(REGION, app, formation);
        platform.set_boot(app, Duration::from_secs(20));
    }
    platform
}

#[tokio::test(start_paused = true)]
async fn many_concurrent_wakes_make_one_scale_call() {
    let platform = platform_with(&[("my-app", &[("web", 0)])]);
    let waker = waker(&platform, "");
    let started = Instant::now();
    let wakes = (0..50).map(|_| {
        let waker = waker.clone();
        tokio::spawn(async move { waker.wake("my-app", None).await })
    });
    for result in futures::future::join_all(wakes).await {
        let answer = result.expect("task").expect("woken");
        assert_eq!(answer.upstream_host, "my-app.osc-fr1.scalingo.io");
    }
    assert_eq!(platform.calls(Call::Scale), 1);
    assert_eq!(platform.calls(Call::Locate), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(20), "the app's boot");
    // Known running now: no more platform calls.
    let calls = platform.api_calls();
    waker.wake("my-app", None).await.expect("woken");
    assert_eq!(platform.api_calls(), calls);
    assert_eq!(
        platform.calls(Call::Formation),
        0,
        "located: known to exist, scaled at once"
    );
    assert_eq!(waker.wakes_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn linked_apps_are_woken_with_the_app_and_registered() {
    let platform = platform_with(&[
        ("shop-front", &[("web", 0)]),
        ("shop-api", &[("web", 0), ("worker", 0)]),
    ]);
    let waker = waker(
        &platform,
        "rules:\n  - pattern: '^shop-front$'\n    linked_apps: ['shop-api']\n",
    );
    let answer = waker.wake("shop-front", None).await.expect("woken");
    assert_eq!(answer.linked_apps.len(), 1);
    assert!(answer.linked_apps[0].running, "{:?}", answer.linked_apps);
    assert_eq!(
        platform.scales_of("shop-api"),
        [vec![ContainerAmount::new("web", 1)]]
    );
    assert_eq!(platform.formation_of("shop-front"), [("web".to_owned(), 1)]);
    let registered: Vec<String> = waker
        .registry()
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.app)
        .collect();
    assert_eq!(registered, ["shop-api", "shop-front"]);
    let events = waker.events().recent(10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Woken { .. }))
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_wake_restores_the_formation_the_registry_remembered() {
    let platform = platform_with(&[("my-app", &[("web", 0), ("worker", 0), ("clock", 0)])]);
    let waker = waker(&platform, "");
    waker
        .registry()
        .remember_formation(
            "my-app",
            vec![("web".to_owned(), 2), ("worker".to_owned(), 3)],
        )
        .await
        .unwrap();
    waker.wake("my-app", None).await.expect("woken");
    assert_eq!(
        platform.formation_of("my-app"),
        [
            ("web".to_owned(), 2),
            ("worker".to_owned(), 3),
            ("clock".to_owned(), 0)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_remembered_process_type_gone_since_the_pause_is_read_and_skipped() {
    let platform = platform_with(&[("my-app", &[("web", 0), ("worker", 0)])]);
    let waker = waker(&platform, "");
    waker
        .registry()
        .remember_formation("my-app", vec![("web".to_owned(), 2), ("old".to_owned(), 1)])
        .await
        .unwrap();
    waker.wake("my-app", None).await.expect("woken");
    // The blind scale got a 404 container_type: the formation is read, and
    // the types that exist are restored.
    assert_eq!(platform.calls(Call::Scale), 2);
    assert_eq!(platform.calls(Call::Formation), 1);
    assert_eq!(
        platform.formation_of("my-app"),
        [("web".to_owned(), 2), ("worker".to_owned(), 0)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_whose_front_answers_costs_no_api_call() {
    // Running, but this instance does not know it (a restart, an expired
    // cache): the front says so for free.
    let platform = platform_with(&[("busy-app", &[("web", 3)])]);
    let waker = waker(&platform, "");
    super::tests_broken::known(&waker, "busy-app").await;
    waker
        .wake("busy-app", Some("osc-fr1"))
        .await
        .expect("woken");
    assert_eq!(platform.api_calls(), 0);
    assert_eq!(platform.formation_of("busy-app"), [("web".to_owned(), 3)]);
}

#[tokio::test(start_paused = true)]
async fn a_boot_longer_than_the_wake_timeout_times_out_at_the_timeout() {
    let platform = platform_with(&[("slow-app", &[("web", 0)])]);
    platform.set_boot("slow-app", Duration::from_secs(300));
    let waker = waker(&platform, "");
    let started = Instant::now();
    let err = waker.wake("slow-app", None).await.unwrap_err();
    assert!(
        matches!(err, WakeError::Timeout(ref app) if app == "slow-app"),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), TIMEOUT);
    // The wake task ends at its own deadline, the same instant.
    waker.drained().await;
    assert_eq!(started.elapsed(), TIMEOUT);
    let text = waker.metrics().encode();
    assert!(
        text.contains("paastis_wakes_total{result=\"timeout\"} 1"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_busy_app_is_retried_after_a_pause() {
    let platform = platform_with(&[("busy-app", &[("web", 0)])]);
    platform.fail_next(Call::Scale, ScalingoError::Busy("is scaling".into()));
    let waker = waker(&platform, "");
    let started = Instant::now();
    waker.wake("busy-app", None).await.expect("woken");
    assert_eq!(platform.calls(Call::Scale), 2);
    assert_eq!(
        platform.calls(Call::Formation),
        1,
        "read once after the first `is scaling`"
    );
    assert_eq!(
        started.elapsed(),
        scale::BUSY_PAUSE + Duration::from_secs(20)
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_and_ignored_apps_are_never_scaled() {
    let platform = platform_with(&[("kept-app", &[("web", 0)])]);
    let mut deps = Deps::in_memory(platform.clone(), rules(""), Duration::from_secs(600));
    deps.ignored = Arc::new(["kept-app".to_owned()].into());
    let waker = Waker::new(deps, TIMEOUT);
    assert!(matches!(
        waker.wake("nobody-here", None).await,
        Err(WakeError::UnknownApp(_))
    ));
    assert!(matches!(
        waker.wake("Bad_Name", None).await,
        Err(WakeError::InvalidApp(_))
    ));
    let answer = waker.wake("kept-app", None).await.expect("routed");
    assert_eq!(answer.region, REGION);
    assert_eq!(platform.calls(Call::Scale), 0);
}

#[tokio::test(start_paused = true)]
async fn an_instance_waits_for_the_wake_another_leads() {
    let platform = platform_with(&[("my-app", &[("web", 0)])]);
    let one = Deps::in_memory(platform.clone(), rules(""), Duration::from_secs(600));
    let mut two = one.clone();
    two.instance = Arc::from("two");
    two.awake = Arc::new(crate::awake::AwakeCache::new(Duration::from_secs(600)));
    let (one, two) = (Waker::new(one, TIMEOUT), Waker::new(two, TIMEOUT));
    let leader = tokio::spawn({
        let one = one.clone();
        async move { one.wake("my-app", None).await }
    });
    // The leader holds the lease while the app boots.
    while two.wake_state_shared("my-app").await != WakeState::Waking {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let followed = two.wake("my-app", None).await.expect("woken elsewhere");
    assert_eq!(followed.region, REGION);
    leader.await.expect("task").expect("woken");
    assert_eq!(
        platform.calls(Call::Scale),
        1,
        "one scale for both instances"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_a_wake_a_caller_gave_up_on() {
    let platform = platform_with(&[("my-app", &[("web", 0)])]);
    let waker = waker(&platform, "");
    let started = Instant::now();
    // The caller gives up after a second; the wake goes on.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), waker.wake("my-app", None)).await;
    assert!(gave_up.is_err());
    assert_eq!(waker.wakes_in_flight(), 1);
    waker.drained().await;
    assert_eq!(started.elapsed(), Duration::from_secs(20));
    assert_eq!(
        waker.wake_state("my-app"),
        WakeState::Running(Awake::new("my-app", REGION))
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_leaders_wake_is_taken_over_when_its_lease_expires() {
    let platform = platform_with(&[("my-app", &[("web", 0)])]);
    let waker = waker(&platform, "");
    // Another instance took the lease, then died without a note.
    let taken = waker
        .deps()
        .coordinator
        .acquire("wake:my-app", "dead", WAKE_LEASE_TTL)
        .await
        .unwrap();
    assert!(taken);
    let started = Instant::now();
    waker.wake("my-app", None).await.expect("woken");
    assert!(
        started.elapsed() >= WAKE_LEASE_TTL,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(platform.calls(Call::Scale), 1);
}

#[tokio::test(start_paused = true)]
async fn the_leaders_failure_reaches_the_instances_that_waited() {
    let platform = platform_with(&[("my-app", &[("web", 0)])]);
    platform.fail_next(
        Call::Scale,
        ScalingoError::Rejected {
            status: 402,
            message: "payment required".into(),
        },
    );
    let one = Deps::in_memory(platform.clone(), rules(""), Duration::from_secs(600));
    let mut two = one.clone();
    two.instance = Arc::from("two");
    // Scaling stalls a while, so that `two` finds the lease held.
    platform.set_delay(Call::Scale, Duration::from_secs(5));
    let (one, two) = (Waker::new(one, TIMEOUT), Waker::new(two, TIMEOUT));
    let leader = tokio::spawn({
        let one = one.clone();
        async move { one.wake("my-app", None).await }
    });
    while two.wake_state_shared("my-app").await != WakeState::Waking {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = two.wake("my-app", None).await.unwrap_err();
    assert!(
        matches!(&err, WakeError::Elsewhere { message, .. } if message.contains("payment required")),
        "{err:?}"
    );
    assert!(matches!(
        leader.await.expect("task"),
        Err(WakeError::Provider { .. })
    ));
    assert_eq!(platform.calls(Call::Scale), 1);
}

#[tokio::test(start_paused = true)]
async fn the_leaders_timeout_reaches_the_instances_that_waited_as_a_timeout() {
    let platform = platform_with(&[("slow-app", &[("web", 0)])]);
    platform.set_boot("slow-app", Duration::from_secs(300));
    let one = Deps::in_memory(platform.clone(), rules(""), Duration::from_secs(600));
    let mut two = one.clone();
    two.instance = Arc::from("two");
    let (one, two) = (Waker::new(one, TIMEOUT), Waker::new(two, TIMEOUT));
    let leader = tokio::spawn({
        let one = one.clone();
        async move { one.wake("slow-app", None).await }
    });
    while two.wake_state_shared("slow-app").await != WakeState::Waking {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `two` starts later, so its own deadline is after the leader's: what
    // it answers is what the leader's note says.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let err = two.wake("slow-app", None).await.unwrap_err();
    assert!(
        started.elapsed() < TIMEOUT,
        "answered by the note, not by its own deadline"
    );
    assert!(
        matches!(&err, WakeError::Timeout(app) if app == "slow-app"),
        "{err:?}"
    );
    assert!(matches!(
        leader.await.expect("task"),
        Err(WakeError::Timeout(_))
    ));
    assert_eq!(platform.calls(Call::Scale), 1);
}

//! Wakes against the real platform's hard parts, on the in-process platform
//! with tokio's paused clock: the API calls a cold wake costs, busy apps,
//! broken apps and their back-off, a front that cannot be reached.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::backoff::FIRST_BACKOFF;
use crate::platform::memory::{Call, InProcessPlatform};
use crate::platform::{ContainerAmount, Platform, ScalingoError};

const REGION: &str = "osc-fr1";
const TIMEOUT: Duration = Duration::from_secs(60);
const BOOT: Duration = Duration::from_secs(20);

fn waker_on(platform: &Arc<InProcessPlatform>, rules_text: &str) -> Arc<Waker> {
    let rules =
        crate::config::parse_rules(Path::new("paastis.yml"), rules_text, 15).expect("rules");
    Waker::new(
        Deps::in_memory(platform.clone(), rules, Duration::from_secs(600)),
        TIMEOUT,
    )
}

/// Records `app` in the registry, as a pause or the scheduler's discovery
/// does: its wakes then start from a look at its front.
pub(super) async fn known(waker: &Waker, app: &str) {
    let meta = AppMeta {
        region: REGION.to_owned(),
        max_idle_minutes: 15,
        linked_apps: Vec::new(),
    };
    waker
        .registry()
        .register(app, meta, 0)
        .await
        .expect("registered");
}

fn platform_with(app: &str, formation: &[(&str, u32)]) -> Arc<InProcessPlatform> {
    let platform = Arc::new(InProcessPlatform::new(&[REGION]));
    platform.add_app(REGION, app, formation);
    platform.set_boot(app, BOOT);
    platform
}

#[tokio::test(start_paused = true)]
async fn a_cold_wake_of_a_20s_boot_costs_at_most_6_api_calls() {
    let platform = platform_with("my-app", &[("web", 0)]);
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    waker.wake("my-app", None).await.expect("woken");
    assert_eq!(
        started.elapsed(),
        BOOT,
        "seen up at the first probe after it"
    );
    let api = platform.api_calls();
    assert!(api <= 6, "{api} API calls");
    // An app never seen: locate (which also says it exists), the scale
    // (no formation read: its front said it does not serve), then the
    // checks at 5 and 15 s.
    assert_eq!(
        (
            platform.calls(Call::Locate),
            platform.calls(Call::Formation),
            platform.calls(Call::Scale),
            platform.calls(Call::OperationState),
            platform.calls(Call::AppStatus),
        ),
        (1, 0, 1, 1, 1)
    );
    assert_eq!(platform.calls(Call::WebRunning), 0);
    assert!(platform.calls(Call::ProbeFront) > 20, "probed often");
}

#[tokio::test(start_paused = true)]
async fn a_cold_wake_of_a_known_app_costs_its_scale_call_and_two_reads() {
    let platform = platform_with("my-app", &[("web", 0)]);
    let waker = waker_on(&platform, "");
    known(&waker, "my-app").await;
    waker.wake("my-app", None).await.expect("woken");
    // The region from the registry, no formation read (its front said it
    // does not serve), the scale, the checks at 5 and 15 s.
    assert_eq!(
        (
            platform.calls(Call::Locate),
            platform.calls(Call::Formation),
            platform.calls(Call::Scale),
            platform.calls(Call::OperationState),
            platform.calls(Call::AppStatus),
        ),
        (0, 0, 1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_that_serves_only_later_is_ready_when_its_front_answers() {
    let platform = platform_with("slow-start", &[("web", 0)]);
    // The container runs at 20 s, the app listens 3 s later.
    platform.set_front_delay("slow-start", Duration::from_secs(3));
    let waker = waker_on(
        &platform,
        "rules:\n  - pattern: '^slow-start$'\n    health_path: /healthz\n",
    );
    let started = Instant::now();
    waker.wake("slow-start", Some(REGION)).await.expect("woken");
    assert_eq!(started.elapsed(), BOOT + Duration::from_secs(3));
    assert_eq!(
        platform.probed_path("slow-start").as_deref(),
        Some("/healthz")
    );
    assert_eq!(platform.calls(Call::Locate), 0, "the region hint is used");
}

#[tokio::test(start_paused = true)]
async fn a_wake_during_a_slow_scale_down_waits_it_out_paced() {
    let platform = platform_with("my-app", &[("web", 1)]);
    platform.set_scale_down("my-app", Duration::from_secs(30));
    platform
        .scale(REGION, "my-app", &[ContainerAmount::new("web", 0)])
        .await
        .expect("paused");
    let waker = waker_on(&platform, "");
    known(&waker, "my-app").await;
    let started = Instant::now();
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    // Tries at 0, 1, 3, 6, 10, 15, 20, 25 and 30 s: the last one scales.
    // Each costs the scale call alone (the front, free, said it is down),
    // but for one formation read after the first `is scaling` (web at 0:
    // still stopping, so tried again).
    assert_eq!(started.elapsed(), Duration::from_secs(30) + BOOT);
    assert_eq!(platform.calls(Call::Scale), 1 + 9);
    assert_eq!(platform.calls(Call::Formation), 1);
}

#[tokio::test(start_paused = true)]
async fn an_operation_in_error_ends_the_wake_at_its_first_check() {
    let platform = platform_with("broken-app", &[("web", 0)]);
    platform.set_boot("broken-app", Duration::from_secs(3));
    platform.set_operation_error("broken-app", "container web-1 exited with 1");
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    let err = waker.wake("broken-app", Some(REGION)).await.unwrap_err();
    assert!(
        matches!(&err, WakeError::AppFailed { reason, .. } if reason.contains("exited with 1")),
        "{err:?}"
    );
    assert_eq!(
        started.elapsed(),
        ready::CHECK_EVERY,
        "not the wake timeout"
    );
    let events = waker.events().recent(10).await.unwrap();
    assert!(
        matches!(&events[0].kind, EventKind::WakeFailed { error } if error.contains("exited with 1")),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashed_app_ends_the_wake_and_backs_off_without_scalingo_calls() {
    let platform = platform_with("crashy-app", &[("web", 0)]);
    platform.set_crash_loop("crashy-app", Duration::from_secs(8));
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    let err = waker.wake("crashy-app", Some(REGION)).await.unwrap_err();
    assert!(matches!(err, WakeError::AppFailed { .. }), "{err:?}");
    // Checks at 5 s (the operation: running) and 15 s (the app: crashed).
    assert_eq!(
        started.elapsed(),
        ready::check_pause(0) + ready::check_pause(1)
    );
    let calls = platform.api_calls();

    // Clients retry hard: every request is answered at once, for free.
    for _ in 0..50 {
        let err = waker.wake("crashy-app", Some(REGION)).await.unwrap_err();
        let WakeError::BackingOff {
            retry_after,
            reason,
            ..
        } = err
        else {
            panic!("{err:?}");
        };
        assert!(retry_after <= FIRST_BACKOFF && retry_after >= Duration::from_secs(1));
        assert!(reason.contains("crashed"), "{reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(platform.api_calls(), calls, "no Scalingo call meanwhile");

    // After the back-off one wake tries again, fails again, and the next
    // back-off is twice as long.
    tokio::time::sleep(FIRST_BACKOFF).await;
    assert!(matches!(
        waker.wake("crashy-app", Some(REGION)).await,
        Err(WakeError::AppFailed { .. })
    ));
    assert_eq!(
        platform.calls(Call::Scale),
        1,
        "still scaled up: no new scale"
    );
    let active = waker.backoff("crashy-app").await.expect("backing off");
    assert_eq!(active.failures, 2);

    // Mended and woken by an operator: the back-off is cleared.
    platform.mend("crashy-app");
    platform
        .scale(REGION, "crashy-app", &[ContainerAmount::new("web", 0)])
        .await
        .expect("stopped");
    waker
        .wake_now("crashy-app", Some(REGION))
        .await
        .expect("woken");
    assert_eq!(waker.backoff("crashy-app").await, None);
}

#[tokio::test(start_paused = true)]
async fn a_failed_wake_backs_off_the_other_instances_too() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.fail_next(
        Call::Scale,
        crate::platform::ScalingoError::Server {
            status: 500,
            request_id: None,
            message: "boom".into(),
        },
    );
    let one = Deps::in_memory(
        platform.clone(),
        crate::config::parse_rules(Path::new("p.yml"), "", 15).expect("rules"),
        Duration::from_secs(600),
    );
    let mut two = one.clone();
    two.instance = Arc::from("two");
    // Each instance has its own memory; the coordinator is shared.
    two.backoff = Arc::new(crate::backoff::WakeBackoff::new());
    two.awake = Arc::new(crate::awake::AwakeCache::new(Duration::from_secs(600)));
    let (one, two) = (Waker::new(one, TIMEOUT), Waker::new(two, TIMEOUT));
    assert!(matches!(
        one.wake("my-app", Some(REGION)).await,
        Err(WakeError::Provider { .. })
    ));
    let scales = platform.calls(Call::Scale);
    assert!(matches!(
        two.wake("my-app", Some(REGION)).await,
        Err(WakeError::BackingOff { .. })
    ));
    assert_eq!(platform.calls(Call::Scale), scales);
    // The app seen running elsewhere (a success) clears it for everyone.
    tokio::time::sleep(FIRST_BACKOFF).await;
    two.wake("my-app", Some(REGION)).await.expect("woken");
    assert_eq!(one.backoff("my-app").await, None);
}

#[tokio::test(start_paused = true)]
async fn a_front_that_cannot_be_reached_falls_back_to_the_api() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.set_front_unreachable(true);
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    // The front probed once (250 ms after the scale), then `ps` read 1, 2,
    // 3 and then 5 s apart: at 1.25, 3.25, 6.25, 11.25, 16.25 and 21.25 s.
    assert_eq!(started.elapsed(), Duration::from_millis(21_250));
    assert_eq!(platform.calls(Call::ProbeFront), 1);
    assert_eq!(platform.calls(Call::WebRunning), 6);
    // Besides: the formation read (an app neither the registry nor a
    // listing knows), the scale and the checks at 5 and 15 s (the
    // operation, the app's status), where following the operation polled
    // it about 25 times.
    assert_eq!(
        (
            platform.calls(Call::Formation),
            platform.calls(Call::Scale),
            platform.calls(Call::OperationState),
            platform.calls(Call::AppStatus),
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(platform.api_calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn without_a_front_a_running_app_is_read_in_ps_at_once() {
    let platform = platform_with("my-app", &[("web", 1)]);
    platform.set_front_unreachable(true);
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(platform.calls(Call::Scale), 0);
    assert_eq!(platform.calls(Call::WebRunning), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_front_a_failed_ps_read_is_read_again_later() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.set_front_unreachable(true);
    platform.fail_next(Call::WebRunning, ScalingoError::RateLimited);
    platform.fail_next(
        Call::WebRunning,
        ScalingoError::Server {
            status: 502,
            request_id: None,
            message: "bad gateway".into(),
        },
    );
    let waker = waker_on(&platform, "");
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    assert_eq!(platform.calls(Call::WebRunning), 6);
}

#[tokio::test(start_paused = true)]
async fn without_a_front_no_budget_left_before_the_deadline_fails_the_wake_unbacked() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.set_front_unreachable(true);
    platform.fail_next(Call::WebRunning, ScalingoError::BudgetExhausted);
    let waker = waker_on(&platform, "");
    let err = waker.wake("my-app", Some(REGION)).await.unwrap_err();
    assert!(
        matches!(
            &err,
            WakeError::Provider {
                source: ScalingoError::BudgetExhausted,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.backs_off(), "the app boots: no back-off");
}

#[tokio::test(start_paused = true)]
async fn a_pause_records_the_autoscaler_and_the_wake_turns_it_back_on() {
    let platform = platform_with("scaled-app", &[("web", 2), ("worker", 1)]);
    platform.add_autoscaler("scaled-app", "as-web", "web", false);
    platform.add_autoscaler("scaled-app", "as-off", "worker", true);
    let waker = waker_on(&platform, "");
    let scheduler = crate::scheduler::Scheduler::new(waker.deps().clone(), 600);
    scheduler.pause_now("scaled-app").await.expect("paused");
    assert!(
        platform
            .autoscalers_of("scaled-app")
            .iter()
            .all(|a| a.disabled),
        "the manual scale turned them off"
    );
    let record = waker.registry().get("scaled-app").await.unwrap().unwrap();
    assert_eq!(record.autoscalers, ["as-web"], "only the enabled one");

    waker.wake("scaled-app", Some(REGION)).await.expect("woken");
    let autoscalers = platform.autoscalers_of("scaled-app");
    assert!(!autoscalers[0].disabled, "{autoscalers:?}");
    assert!(autoscalers[1].disabled, "left as it was: {autoscalers:?}");
    assert_eq!(
        platform.formation_of("scaled-app"),
        [("web".to_owned(), 2), ("worker".to_owned(), 1)]
    );
    let record = waker.registry().get("scaled-app").await.unwrap().unwrap();
    assert!(record.autoscalers.is_empty(), "restored once");
    let kinds: Vec<EventKind> = waker
        .events()
        .recent(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&EventKind::AutoscalersRecorded {
        autoscalers: vec!["as-web".into()]
    }));
    assert!(kinds.contains(&EventKind::AutoscalersRestored {
        autoscalers: vec!["as-web".into()]
    }));
}

#[tokio::test(start_paused = true)]
async fn the_app_listed_running_clears_its_backoff() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.set_operation_error("my-app", "boom");
    let waker = waker_on(&platform, "");
    assert!(waker.wake("my-app", Some(REGION)).await.is_err());
    assert!(waker.backoff("my-app").await.is_some());
    // Someone mends and starts it by hand; the scheduler lists it running.
    platform.mend("my-app");
    platform.add_app(REGION, "my-app", &[("web", 1)]);
    let scheduler = crate::scheduler::Scheduler::new(waker.deps().clone(), 600);
    scheduler.pass(crate::clock::now_ms()).await.expect("pass");
    assert_eq!(waker.backoff("my-app").await, None);
}

#[tokio::test(start_paused = true)]
async fn clients_hammering_a_broken_app_for_a_minute_cost_few_scalingo_calls() {
    let platform = platform_with("broken-app", &[("web", 0)]);
    for _ in 0..100 {
        platform.fail_next(
            Call::Scale,
            crate::platform::ScalingoError::Server {
                status: 500,
                request_id: None,
                message: "internal error".into(),
            },
        );
    }
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    let mut answered = 0;
    // 20 requests a second for 60 s.
    while started.elapsed() < Duration::from_secs(60) {
        assert!(waker.wake("broken-app", None).await.is_err());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, 1200);
    // Tries at 0, 10 s (back-off 10 s) and 30 s (20 s); the next at 70 s.
    assert_eq!(platform.calls(Call::Scale), 3);
    let api = platform.api_calls();
    assert!(api <= 10, "{api} Scalingo calls");
}

#[tokio::test(start_paused = true)]
async fn a_slow_api_read_never_holds_the_probes_back() {
    let platform = platform_with("my-app", &[("web", 0)]);
    platform.set_boot("my-app", Duration::from_secs(6));
    // Reads that wait long (e.g. for a slot of the API budget).
    platform.set_delay(Call::OperationState, Duration::from_secs(30));
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    // The read at 5 s is given up at 7 s; the probe then sees the app.
    assert_eq!(started.elapsed(), ready::CHECK_EVERY + ready::CHECK_WAIT);
}

#[tokio::test(start_paused = true)]
async fn status_reads_without_budget_are_skipped_and_never_fail_the_wake() {
    let platform = platform_with("my-app", &[("web", 0)]);
    for call in [Call::OperationState, Call::AppStatus] {
        for _ in 0..10 {
            platform.fail_next(call, crate::platform::ScalingoError::BudgetExhausted);
        }
    }
    let waker = waker_on(&platform, "");
    let started = Instant::now();
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    assert_eq!(started.elapsed(), BOOT, "seen up by its front");
    assert_eq!(platform.calls(Call::Scale), 1);
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_for_the_whole_wake_costs_a_handful_of_calls() {
    let platform = platform_with("crashy-app", &[("web", 0)]);
    // `crashed` only after the wake's deadline (the platform's 12 boots).
    platform.set_crash_loop("crashy-app", Duration::from_secs(600));
    let waker = waker_on(&platform, "");
    known(&waker, "crashy-app").await;
    let err = waker.wake("crashy-app", Some(REGION)).await.unwrap_err();
    assert!(matches!(err, WakeError::Timeout(_)), "{err:?}");
    // The scale, then reads at 5, 15, 35 and 55 s.
    assert_eq!(platform.api_calls(), 1 + 4);
    assert_eq!(
        (
            platform.calls(Call::OperationState),
            platform.calls(Call::AppStatus)
        ),
        (2, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_known_app_crash_looping_under_its_operation_is_waited_for_not_rescaled() {
    let platform = platform_with("crashy-app", &[("web", 0)]);
    platform.set_crash_loop("crashy-app", Duration::from_secs(8));
    let waker = waker_on(&platform, "");
    known(&waker, "crashy-app").await;
    assert!(waker.wake("crashy-app", Some(REGION)).await.is_err());
    tokio::time::sleep(FIRST_BACKOFF).await;
    // Its front says it does not serve: scaled at once, `is scaling` (its
    // crash loop's operation runs), the formation read (web at 1), and
    // from then on waited for (and found crashed), not scaled again.
    let err = waker.wake("crashy-app", Some(REGION)).await.unwrap_err();
    assert!(matches!(err, WakeError::AppFailed { .. }), "{err:?}");
    assert_eq!(platform.calls(Call::Scale), 2);
    assert_eq!(platform.calls(Call::Formation), 1);
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_app_a_listing_found_is_scaled_at_once_without_a_locate() {
    let platform = platform_with("my-app", &[("web", 0)]);
    let waker = waker_on(&platform, "");
    // A scheduler pass listed the region: the app exists, stopped.
    platform.list_apps(REGION).await.expect("listed");
    waker.wake("my-app", None).await.expect("woken");
    assert_eq!(
        (
            platform.calls(Call::Locate),
            platform.calls(Call::Formation),
            platform.calls(Call::Scale)
        ),
        (0, 0, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_known_only_by_a_region_hint_is_read_before_it_is_scaled() {
    let platform = platform_with("my-app", &[("web", 0)]);
    let waker = waker_on(&platform, "");
    // Nothing says the app exists (an unknown domain's front could pass for
    // an app's answer): the formation read does.
    waker.wake("my-app", Some(REGION)).await.expect("woken");
    assert_eq!(
        (
            platform.calls(Call::Locate),
            platform.calls(Call::Formation),
            platform.calls(Call::Scale)
        ),
        (0, 1, 1)
    );
}

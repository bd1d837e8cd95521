//! The sidecar's Scalingo client against the fake Scalingo, over real HTTP.
//!
//! Only the base URLs differ from production. Retry delays and poll
//! intervals are shortened through `ScalingoTuning`; the retry and re-exchange
//! counts are the production ones. Timing assertions only bound from below
//! or use generous deadlines.

use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo, Fault, FaultKind};
use paastis_sidecar::budget::{Budget, BudgetConfig};
use paastis_sidecar::scalingo::{
    AppStatus, ContainerAmount, OperationStatus, ProcessState, RetryPolicy, ScaleOutcome,
    ScalingoClient, ScalingoConfig, ScalingoError, ScalingoTuning, Url,
};
use tokio::time::Instant;

const TOKEN: &str = "tk-us-fake-token";
const FR: &str = "osc-fr1";
const SECNUM: &str = "osc-secnum-fr1";
/// Far above any boot delay used here.
const DEADLINE: Duration = Duration::from_secs(10);

fn tuning() -> ScalingoTuning {
    ScalingoTuning {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        negative_ttl: Duration::from_secs(30),
        operation_poll_interval: Duration::from_millis(100),
    }
}

fn config(fake: &FakeScalingo, token: &str) -> ScalingoConfig {
    ScalingoConfig {
        api_token: token.into(),
        auth_url: Url::parse(&fake.auth_url()).expect("auth URL"),
        regions: None,
        request_timeout: Duration::from_secs(5),
        user_agent: "paastis-tests".to_owned(),
    }
}

/// The default budget, but a 429 pauses it only 50 ms: these tests check how
/// the client handles 429 answers, not how long the budget then waits
/// (unit-tested in the sidecar, on tokio's paused clock).
fn budget() -> Arc<Budget> {
    let config = BudgetConfig {
        pause_after_429: Duration::from_millis(50),
        max_pause: Duration::from_millis(50),
        ..BudgetConfig::default()
    };
    Arc::new(Budget::in_memory(config).expect("budget"))
}

fn client(fake: &FakeScalingo) -> ScalingoClient {
    ScalingoClient::with_budget(config(fake, TOKEN), tuning(), budget()).expect("client")
}

async fn start_with(config: FakeConfig) -> FakeScalingo {
    FakeScalingo::start(config).await.expect("fake starts")
}

async fn start() -> FakeScalingo {
    start_with(FakeConfig {
        boot_delay: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await
}

fn deadline() -> Instant {
    Instant::now() + DEADLINE
}

#[tokio::test]
async fn one_exchange_serves_many_calls() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);

    let regions = client.regions().await.unwrap();
    let names: Vec<_> = regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [FR, SECNUM]);
    assert_eq!(
        regions[0].api.as_str().trim_end_matches('/'),
        fake.api_url(FR).unwrap()
    );

    let calls = (0..10).map(|_| {
        let client = client.clone();
        async move { client.get_app(FR, "my-app-one").await }
    });
    for app in futures::future::join_all(calls).await {
        let app = app.unwrap();
        assert_eq!(app.name, "my-app-one");
        assert_eq!(app.status, AppStatus::Running);
    }
    client.formation(FR, "my-app-one").await.unwrap();
    client.ps(FR, "my-app-one").await.unwrap();

    assert_eq!(fake.calls(Endpoint::Exchange), 1);
    assert_eq!(fake.calls(Endpoint::Regions), 1, "regions are cached");
    assert_eq!(fake.calls(Endpoint::GetApp), 10);
    fake.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_calls_share_one_exchange() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    let calls = (0..8).map(|_| {
        let client = client.clone();
        async move { client.ps(FR, "my-app-one").await }
    });
    for ps in futures::future::join_all(calls).await {
        ps.unwrap();
    }
    assert_eq!(fake.calls(Endpoint::Exchange), 1);
    assert_eq!(fake.calls(Endpoint::Regions), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn expired_jwt_is_exchanged_again_once() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    client.get_app(FR, "my-app-one").await.unwrap();
    assert_eq!(fake.calls(Endpoint::Exchange), 1);

    fake.expire_tokens();
    client.get_app(FR, "my-app-one").await.unwrap();
    assert_eq!(fake.calls(Endpoint::Exchange), 2);
    // 1 before, then the refused call and its single retry.
    assert_eq!(fake.calls(Endpoint::GetApp), 3);

    // The new JWT is reused.
    client.get_app(FR, "my-app-one").await.unwrap();
    assert_eq!(fake.calls(Endpoint::Exchange), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_second_401_is_unauthorized_without_more_retries() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    client.get_app(FR, "my-app-one").await.unwrap();
    fake.inject(Fault::new(Endpoint::GetApp, FaultKind::Status(401)).times(5));

    let err = client.get_app(FR, "my-app-one").await.unwrap_err();
    assert_eq!(err, ScalingoError::Unauthorized);
    assert_eq!(fake.calls(Endpoint::GetApp), 3, "one retry only");
    assert_eq!(fake.calls(Endpoint::Exchange), 2, "one re-exchange only");
    fake.shutdown().await;
}

#[tokio::test]
async fn expired_jwt_on_the_regions_call_is_exchanged_again() {
    let fake = start().await;
    let client = client(&fake);
    // Obtain a JWT (through a call that does not cache the regions), then revoke it.
    fake.inject(Fault::new(Endpoint::Regions, FaultKind::Status(503)).times(3));
    assert!(matches!(
        client.regions().await,
        Err(ScalingoError::Server { status: 503, .. })
    ));
    assert_eq!(fake.calls(Endpoint::Exchange), 1);
    fake.expire_tokens();
    assert_eq!(client.regions().await.unwrap().len(), 2);
    assert_eq!(fake.calls(Endpoint::Exchange), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn bad_api_token_is_unauthorized() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client =
        ScalingoClient::with_tuning(config(&fake, "tk-us-wrong"), tuning()).expect("client");
    assert_eq!(
        client.locate("my-app-one").await.unwrap_err(),
        ScalingoError::Unauthorized
    );
    assert_eq!(
        client.get_app(FR, "my-app-one").await.unwrap_err(),
        ScalingoError::Unauthorized
    );
    // A refused exchange is not retried within a call.
    assert_eq!(fake.calls(Endpoint::Exchange), 2);
    assert_eq!(fake.calls(Endpoint::Regions), 0);
    assert_eq!(fake.calls(Endpoint::GetApp), 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn jwt_without_exp_is_used() {
    let fake = start_with(FakeConfig {
        jwt_without_exp: true,
        ..FakeConfig::default()
    })
    .await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    for _ in 0..3 {
        client.get_app(FR, "my-app-one").await.unwrap();
    }
    assert_eq!(fake.calls(Endpoint::Exchange), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn locate_lists_regions_once_and_caches() {
    let fake = start().await;
    fake.add_app(FakeApp::web("paris-app", FR, 1));
    fake.add_app(FakeApp::web("secure-app", SECNUM, 1));
    fake.add_app(FakeApp::web("secure-two", SECNUM, 0));
    let client = client(&fake);

    assert_eq!(
        client.locate("secure-app").await.unwrap().as_deref(),
        Some(SECNUM)
    );
    assert_eq!(fake.calls(Endpoint::ListApps), 2, "both regions listed");
    // Every app seen is cached.
    assert_eq!(
        client.locate("paris-app").await.unwrap().as_deref(),
        Some(FR)
    );
    assert_eq!(
        client.locate("secure-two").await.unwrap().as_deref(),
        Some(SECNUM)
    );
    assert_eq!(fake.calls(Endpoint::ListApps), 2);

    // Unknown names: answered from the last scan, whatever the name.
    for bogus in ["nobody-home", "nobody-else", "nobody-third"] {
        assert_eq!(client.locate(bogus).await.unwrap(), None);
    }
    assert_eq!(fake.calls(Endpoint::ListApps), 2);

    // The app found in the other region is a 404 in this one.
    assert_eq!(
        client.get_app(FR, "secure-app").await.unwrap_err(),
        ScalingoError::NotFound
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn locate_misses_are_rechecked_after_the_negative_ttl() {
    let fake = start().await;
    let client = ScalingoClient::with_tuning(
        config(&fake, TOKEN),
        ScalingoTuning {
            negative_ttl: TTL,
            ..tuning()
        },
    )
    .unwrap();
    const TTL: Duration = Duration::from_secs(1);

    let before_miss = Instant::now();
    assert_eq!(client.locate("late-comer").await.unwrap(), None);
    assert_eq!(fake.calls(Endpoint::ListApps), 2);
    fake.add_app(FakeApp::web("late-comer", SECNUM, 1));
    // Asked again and again: the miss is served from memory (no listing)
    // until the TTL has passed, then one scan finds the app. Every answer
    // is checked against the clock, so a stalled machine changes nothing.
    let mut cached_misses = 0;
    loop {
        let asked = Instant::now();
        let found = client.locate("late-comer").await.unwrap();
        if found.is_some() {
            assert_eq!(found.as_deref(), Some(SECNUM));
            // A lower bound: the miss was recorded after `before_miss`.
            assert!(before_miss.elapsed() >= TTL, "rescanned within the TTL");
            break;
        }
        assert!(
            asked.duration_since(before_miss) < TTL + Duration::from_secs(5),
            "never rescanned"
        );
        assert_eq!(fake.calls(Endpoint::ListApps), 2, "a miss from memory");
        cached_misses += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.calls(Endpoint::ListApps), 4, "one scan after the TTL");
    eprintln!("{cached_misses} misses answered from memory");
    fake.shutdown().await;
}

#[tokio::test]
async fn concurrent_locate_misses_share_one_scan() {
    let fake = start().await;
    fake.add_app(FakeApp::web("secure-app", SECNUM, 1));
    let client = client(&fake);
    let calls = ["secure-app", "nobody-home", "secure-app", "nobody-else"]
        .into_iter()
        .map(|name| {
            let client = client.clone();
            async move { client.locate(name).await }
        });
    let found = futures::future::join_all(calls).await;
    assert_eq!(found[0].as_ref().unwrap().as_deref(), Some(SECNUM));
    assert_eq!(found[1].as_ref().unwrap().as_deref(), None);
    assert_eq!(fake.calls(Endpoint::ListApps), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn configured_regions_restrict_the_client() {
    let fake = start().await;
    fake.add_app(FakeApp::web("secure-app", SECNUM, 1));
    let mut only_fr = config(&fake, TOKEN);
    only_fr.regions = Some(vec![FR.to_owned()]);
    let client = ScalingoClient::with_tuning(only_fr, tuning()).unwrap();
    assert_eq!(client.regions().await.unwrap().len(), 1);
    assert_eq!(client.locate("secure-app").await.unwrap(), None);
    assert_eq!(fake.calls(Endpoint::ListApps), 1);
    assert_eq!(
        client.get_app(SECNUM, "secure-app").await.unwrap_err(),
        ScalingoError::UnknownRegion(SECNUM.to_owned())
    );

    let mut typo = config(&fake, TOKEN);
    typo.regions = Some(vec!["osc-fr2".to_owned()]);
    let client = ScalingoClient::with_tuning(typo, tuning()).unwrap();
    assert_eq!(
        client.regions().await.unwrap_err(),
        ScalingoError::UnknownRegion("osc-fr2".to_owned())
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn scale_from_zero_then_wait_until_running() {
    let fake = start().await;
    fake.add_app(FakeApp::web("sleepy-app", SECNUM, 0));
    let client = client(&fake);

    let region = client.locate("sleepy-app").await.unwrap().unwrap();
    assert_eq!(
        client.get_app(&region, "sleepy-app").await.unwrap().status,
        AppStatus::Stopped
    );
    let formation = client.formation(&region, "sleepy-app").await.unwrap();
    assert_eq!(formation.len(), 1);
    assert_eq!(
        (formation[0].name.as_str(), formation[0].amount),
        ("web", 0)
    );

    let outcome = client
        .scale(&region, "sleepy-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    let ScaleOutcome::Started {
        operation_id,
        formation,
    } = outcome
    else {
        panic!("expected Started, got {outcome:?}");
    };
    assert_eq!(formation[0].amount, 1);
    assert_eq!(
        client.get_app(&region, "sleepy-app").await.unwrap().status,
        AppStatus::Scaling
    );

    let started = Instant::now();
    let op = client
        .wait_operation(&region, "sleepy-app", &operation_id, deadline())
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Done);
    assert_eq!(op.id, operation_id);
    // A lower bound (the fake's boot), which a loaded machine cannot break.
    assert!(started.elapsed() >= Duration::from_millis(150));

    client
        .wait_web_running(&region, "sleepy-app", deadline())
        .await
        .unwrap();
    let snapshot = fake.app("sleepy-app").unwrap();
    assert!(snapshot.web_running);
    assert_eq!(snapshot.status, "running");
    assert_eq!(fake.scale_calls("sleepy-app"), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn wait_web_running_times_out_at_the_deadline() {
    let fake = start().await;
    fake.add_app(FakeApp::web("slow-app", FR, 0));
    fake.set_boot_delay(Duration::from_secs(30));
    let client = client(&fake);
    let outcome = client
        .scale(FR, "slow-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    let ScaleOutcome::Started { operation_id, .. } = outcome else {
        panic!("expected Started, got {outcome:?}");
    };
    let short = Instant::now() + Duration::from_millis(400);
    assert_eq!(
        client
            .wait_web_running(FR, "slow-app", short)
            .await
            .unwrap_err(),
        ScalingoError::Timeout
    );
    let short = Instant::now() + Duration::from_millis(300);
    assert_eq!(
        client
            .wait_operation(FR, "slow-app", &operation_id, short)
            .await
            .unwrap_err(),
        ScalingoError::Timeout
    );
    // No bound on the time taken: the boot lasts 30 s, so a wait that
    // ignored its deadline would end in `Ok`, not `Timeout`.
    // ps was checked at once, then backed off (250, 500 ms ...): few calls.
    assert!(
        fake.calls(Endpoint::Ps) <= 4,
        "{}",
        fake.calls(Endpoint::Ps)
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn scale_to_zero_reads_not_running_with_stopped_entries_kept() {
    // The strict default: the scale-down takes 30 s (SIGTERM, then SIGKILL),
    // `is scaling` meanwhile.
    let fake = start_with(FakeConfig {
        keep_stopped_in_ps: true,
        ..FakeConfig::default()
    })
    .await;
    fake.add_app(FakeApp::web("busy-bee-app", FR, 1));
    let client = client(&fake);
    let outcome = client
        .scale(FR, "busy-bee-app", &[ContainerAmount::new("web", 0)])
        .await
        .unwrap();
    let ScaleOutcome::Started { operation_id, .. } = &outcome else {
        panic!("a scale-down starts an operation: {outcome:?}");
    };
    // While the containers stop: not running, the operation not done, and
    // another scale refused as busy.
    let ps = client.ps(FR, "busy-bee-app").await.unwrap();
    assert!(!paastis_sidecar::scalingo::web_running(&ps));
    assert!(ps.iter().all(|p| p.state != ProcessState::Running));
    let short = Instant::now() + Duration::from_millis(300);
    assert_eq!(
        client
            .wait_operation(FR, "busy-bee-app", operation_id, short)
            .await
            .unwrap_err(),
        ScalingoError::Timeout
    );
    assert!(matches!(
        client
            .scale(FR, "busy-bee-app", &[ContainerAmount::new("web", 1)])
            .await,
        Err(ScalingoError::Busy(_))
    ));
    // The end of the stop, without waiting its 30 s: the fake serves real
    // sockets, which tokio's paused clock cannot drive, so the platform's
    // own stop is asked for (its containers stopped at once).
    assert!(fake.stop_app("busy-bee-app"));
    let ps = client.ps(FR, "busy-bee-app").await.unwrap();
    assert!(!ps.is_empty(), "stopped entries kept");
    assert!(!paastis_sidecar::scalingo::web_running(&ps));
    assert!(ps.iter().all(|p| p.state != ProcessState::Running));
    let short = Instant::now() + Duration::from_millis(300);
    assert_eq!(
        client
            .wait_web_running(FR, "busy-bee-app", short)
            .await
            .unwrap_err(),
        ScalingoError::Timeout
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn same_formation_is_no_change() {
    let fake = start().await;
    fake.add_app(FakeApp::web("steady-app", FR, 2));
    let client = client(&fake);
    assert_eq!(
        client
            .scale(FR, "steady-app", &[ContainerAmount::new("web", 2)])
            .await
            .unwrap(),
        ScaleOutcome::NoChange
    );
    assert_eq!(fake.scale_calls("steady-app"), 1);
    // An empty change set makes no call at all.
    assert_eq!(
        client.scale(FR, "steady-app", &[]).await.unwrap(),
        ScaleOutcome::NoChange
    );
    assert_eq!(fake.scale_calls("steady-app"), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn undeployed_app_scales_without_operation() {
    let fake = start().await;
    fake.add_app(FakeApp::web("fresh-app", FR, 0).undeployed());
    let client = client(&fake);
    match client
        .scale(FR, "fresh-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap()
    {
        ScaleOutcome::Done { formation } => assert_eq!(formation[0].amount, 1),
        other => panic!("expected Done, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn busy_app_is_busy() {
    let fake = start().await;
    fake.add_app(FakeApp::web("busy-app", FR, 0));
    fake.set_boot_delay(Duration::from_secs(30));
    let client = client(&fake);
    let one = [ContainerAmount::new("web", 1)];

    fake.inject(Fault::new(Endpoint::Scale, FaultKind::IsScaling).for_app("busy-app"));
    assert_eq!(
        client.scale(FR, "busy-app", &one).await.unwrap_err(),
        ScalingoError::Busy("is scaling".into())
    );
    fake.inject(Fault::new(
        Endpoint::Scale,
        FaultKind::AppBusy("is restarting".into()),
    ));
    assert_eq!(
        client.scale(FR, "busy-app", &one).await.unwrap_err(),
        ScalingoError::Busy("is restarting".into())
    );

    // A real scale in progress.
    assert!(matches!(
        client.scale(FR, "busy-app", &one).await.unwrap(),
        ScaleOutcome::Started { .. }
    ));
    let err = client
        .scale(FR, "busy-app", &[ContainerAmount::new("web", 2)])
        .await
        .unwrap_err();
    assert_eq!(err, ScalingoError::Busy("is scaling".into()));
    assert!(err.is_transient());
    assert_eq!(fake.scale_calls("busy-app"), 4, "422 is not retried");
    fake.shutdown().await;
}

#[tokio::test]
async fn other_scale_rejections_keep_the_message() {
    let fake = start().await;
    fake.add_app(FakeApp::web("picky-app", FR, 1));
    let client = client(&fake);
    match client
        .scale(FR, "picky-app", &[ContainerAmount::new("web", 11)])
        .await
        .unwrap_err()
    {
        ScalingoError::Rejected { status, message } => {
            assert_eq!(status, 422);
            assert!(message.contains("amount"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    fake.inject(Fault::new(Endpoint::Scale, FaultKind::Status(402)));
    match client
        .scale(FR, "picky-app", &[ContainerAmount::new("web", 2)])
        .await
        .unwrap_err()
    {
        ScalingoError::Rejected { status, message } => {
            assert_eq!(status, 402);
            assert!(message.contains("free trial"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limited_in_both_formats_then_success() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    client.get_app(FR, "my-app-one").await.unwrap();

    fake.inject(Fault::new(Endpoint::GetApp, FaultKind::TooManyPlainText));
    fake.inject(Fault::new(Endpoint::GetApp, FaultKind::Status(429)));
    client.get_app(FR, "my-app-one").await.unwrap();
    assert_eq!(fake.calls(Endpoint::GetApp), 1 + 3);

    fake.inject(Fault::new(Endpoint::GetApp, FaultKind::TooManyPlainText).times(3));
    assert_eq!(
        client.get_app(FR, "my-app-one").await.unwrap_err(),
        ScalingoError::RateLimited
    );
    assert_eq!(fake.calls(Endpoint::GetApp), 4 + 3, "3 tries in all");

    // A POST is retried on 429 too (scaling to an absolute amount is idempotent).
    fake.inject(Fault::new(Endpoint::Scale, FaultKind::Status(429)));
    assert_eq!(
        client
            .scale(FR, "my-app-one", &[ContainerAmount::new("web", 1)])
            .await
            .unwrap(),
        ScaleOutcome::NoChange
    );
    assert_eq!(fake.scale_calls("my-app-one"), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_fakes_own_rate_limit_is_reported() {
    // The token exchange and the regions list draw from the same budget: 2 + 3.
    let fake = start_with(FakeConfig {
        rate_limit_per_minute: Some(2 + 3),
        ..FakeConfig::default()
    })
    .await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    for _ in 0..3 {
        client.ps(FR, "my-app-one").await.unwrap();
    }
    assert_eq!(
        client.ps(FR, "my-app-one").await.unwrap_err(),
        ScalingoError::RateLimited
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn unavailable_is_retried_then_server_error() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    client.ps(FR, "my-app-one").await.unwrap();

    fake.inject(Fault::new(Endpoint::Ps, FaultKind::Status(503)).times(2));
    client.ps(FR, "my-app-one").await.unwrap();
    assert_eq!(fake.calls(Endpoint::Ps), 1 + 3);

    fake.inject(Fault::new(Endpoint::Ps, FaultKind::Status(503)).times(3));
    match client.ps(FR, "my-app-one").await.unwrap_err() {
        ScalingoError::Server {
            status, request_id, ..
        } => {
            assert_eq!(status, 503);
            assert!(request_id.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn internal_error_is_a_server_error_with_message() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let client = client(&fake);
    client.formation(FR, "my-app-one").await.unwrap();
    fake.inject(Fault::new(Endpoint::Containers, FaultKind::Status(500)).for_app("my-app-one"));
    let err = client.formation(FR, "my-app-one").await.unwrap_err();
    match &err {
        ScalingoError::Server {
            status,
            request_id,
            message,
        } => {
            assert_eq!(*status, 500);
            assert_eq!(message, "Internal server error");
            assert!(request_id.as_deref().is_some_and(|id| !id.is_empty()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_transient());
    assert_eq!(fake.calls(Endpoint::Containers), 2, "500 is not retried");
    fake.shutdown().await;
}

#[tokio::test]
async fn failed_operation_is_operation_failed() {
    let fake = start().await;
    fake.add_app(FakeApp::web("crashy-app", FR, 0));
    fake.inject(Fault::new(
        Endpoint::Scale,
        FaultKind::OperationError("container web-1 failed to restart".into()),
    ));
    let client = client(&fake);
    let outcome = client
        .scale(FR, "crashy-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    let ScaleOutcome::Started { operation_id, .. } = outcome else {
        panic!("expected Started, got {outcome:?}");
    };
    assert_eq!(
        client
            .wait_operation(FR, "crashy-app", &operation_id, deadline())
            .await
            .unwrap_err(),
        ScalingoError::OperationFailed("container web-1 failed to restart".into())
    );
    let op = client
        .operation(FR, "crashy-app", &operation_id)
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Error);
    fake.shutdown().await;
}

#[tokio::test]
async fn polling_survives_transient_errors() {
    let fake = start().await;
    fake.add_app(FakeApp::web("sleepy-app", FR, 0));
    let client = client(&fake);
    let outcome = client
        .scale(FR, "sleepy-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    let ScaleOutcome::Started { operation_id, .. } = outcome else {
        panic!("expected Started, got {outcome:?}");
    };
    fake.inject(Fault::new(Endpoint::Operation, FaultKind::Status(500)).times(2));
    fake.inject(Fault::new(Endpoint::Ps, FaultKind::Status(500)).times(2));
    client
        .wait_operation(FR, "sleepy-app", &operation_id, deadline())
        .await
        .unwrap();
    client
        .wait_web_running(FR, "sleepy-app", deadline())
        .await
        .unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn request_timeout_is_a_transport_error() {
    let fake = start().await;
    fake.add_app(FakeApp::web("my-app-one", FR, 1));
    let mut config = config(&fake, TOKEN);
    config.request_timeout = Duration::from_millis(300);
    let client = ScalingoClient::with_tuning(
        config,
        ScalingoTuning {
            retry: RetryPolicy {
                attempts: 1,
                ..tuning().retry
            },
            ..tuning()
        },
    )
    .unwrap();
    client.get_app(FR, "my-app-one").await.unwrap();
    fake.inject(Fault::new(
        Endpoint::GetApp,
        FaultKind::Delay(Duration::from_secs(2)),
    ));
    assert!(matches!(
        client.get_app(FR, "my-app-one").await.unwrap_err(),
        ScalingoError::Transport(_)
    ));
    fake.shutdown().await;
}

#[tokio::test]
async fn invalid_names_make_no_http_call() {
    let fake = start().await;
    let client = client(&fake);
    let bad_names = [
        "",
        "short",
        "Upper-Case-App",
        "-leading-hyphen",
        "double--hyphen",
        "../../v1/regions",
        "my-app%2F..",
        "my-app.evil.example",
        "my-app?x=1",
        "my-app#frag",
        "spaced app",
    ];
    let one = [ContainerAmount::new("web", 1)];
    for name in bad_names {
        let invalid = |r: Result<(), ScalingoError>| {
            assert!(
                matches!(r, Err(ScalingoError::InvalidAppName(_))),
                "{name:?}: {r:?}"
            )
        };
        invalid(client.locate(name).await.map(drop));
        invalid(client.get_app(FR, name).await.map(drop));
        invalid(client.formation(FR, name).await.map(drop));
        invalid(client.scale(FR, name, &one).await.map(drop));
        invalid(client.operation(FR, name, "op-1").await.map(drop));
        invalid(client.ps(FR, name).await.map(drop));
        invalid(
            client
                .wait_operation(FR, name, "op-1", deadline())
                .await
                .map(drop),
        );
        invalid(client.wait_web_running(FR, name, deadline()).await);
    }
    for endpoint in Endpoint::ALL {
        assert_eq!(fake.calls(endpoint), 0, "{endpoint:?}");
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let fake = start().await;
    let jwt_probe = fake.mint_token();
    let config = config(&fake, TOKEN);
    let client = ScalingoClient::with_tuning(config.clone(), tuning()).unwrap();
    client.regions().await.unwrap();
    for text in [format!("{config:?}"), format!("{client:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains(&jwt_probe[..20]), "{text}");
    }
    fake.shutdown().await;
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_show_the_token_or_a_jwt() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // current-thread runtime: every span and event of this test lands here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = start().await;
    fake.add_app(FakeApp::web("sleepy-app", FR, 0));
    let client = client(&fake);
    let region = client.locate("sleepy-app").await.unwrap().unwrap();
    fake.expire_tokens();
    fake.inject(Fault::new(Endpoint::Scale, FaultKind::TooManyPlainText));
    let outcome = client
        .scale(&region, "sleepy-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    if let ScaleOutcome::Started { operation_id, .. } = outcome {
        client
            .wait_operation(&region, "sleepy-app", &operation_id, deadline())
            .await
            .unwrap();
    }
    fake.inject(Fault::new(Endpoint::Ps, FaultKind::Status(500)));
    client.ps(&region, "sleepy-app").await.unwrap_err();
    let bad = ScalingoClient::with_tuning(config(&fake, "tk-us-wrong-token"), tuning()).unwrap();
    bad.regions().await.unwrap_err();
    fake.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("exchanging the API token again"), "{logs}");
    assert!(logs.contains("request_id"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(!logs.contains("tk-us-wrong-token"), "{logs}");
    // Every JWT starts with the base64url of `{"`.
    assert!(!logs.contains("eyJ"), "{logs}");
}

//! The in-process platform's own behaviour.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_scale_up_boots_for_the_apps_delay() {
    let p = InProcessPlatform::new(&["osc-fr1"]);
    p.add_app("osc-fr1", "my-app", &[("web", 0), ("worker", 0)]);
    p.set_boot("my-app", Duration::from_secs(20));
    let started = Instant::now();
    let outcome = p
        .scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 2)])
        .await
        .unwrap();
    let ScaleOutcome::Started { operation_id, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(matches!(
        p.scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 3)])
            .await,
        Err(ScalingoError::Busy(_))
    ));
    let deadline = started + Duration::from_secs(60);
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert_eq!(
        p.operation_state("osc-fr1", "my-app", &operation_id).await,
        Ok(OperationState::Running)
    );
    assert_eq!(
        p.web_running_until("osc-fr1", "my-app", deadline).await,
        Ok(false)
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        p.operation_state("osc-fr1", "my-app", &operation_id).await,
        Ok(OperationState::Done)
    );
    assert_eq!(
        p.web_running_until("osc-fr1", "my-app", deadline).await,
        Ok(true)
    );
    assert_eq!(p.formation_of("my-app")[0], ("web".to_owned(), 2));
    assert_eq!(p.calls(Call::Scale), 2);
}

#[tokio::test(start_paused = true)]
async fn reads_do_not_wait_and_failures_are_served_in_order() {
    let p = InProcessPlatform::new(&["osc-fr1"]);
    p.add_app("osc-fr1", "stopped-app", &[("web", 0)]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    assert_eq!(
        p.web_running_until("osc-fr1", "stopped-app", deadline)
            .await,
        Ok(false)
    );
    assert_eq!(Instant::now(), started);
    p.fail_next(Call::Locate, ScalingoError::RateLimited);
    assert_eq!(
        p.locate("stopped-app").await,
        Err(ScalingoError::RateLimited)
    );
    assert_eq!(
        p.locate("stopped-app").await,
        Ok(Some("osc-fr1".to_owned()))
    );
    assert_eq!(p.locate("nobody").await, Ok(None));
    let listed = p.list_apps("osc-fr1").await.unwrap();
    assert!(!listed[0].is_running());
}

#[tokio::test(start_paused = true)]
async fn a_scale_down_keeps_the_app_busy_for_its_delay() {
    let p = InProcessPlatform::new(&["osc-fr1"]);
    p.add_app("osc-fr1", "my-app", &[("web", 2)]);
    p.set_scale_down("my-app", Duration::from_secs(30));
    p.scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 0)])
        .await
        .unwrap();
    assert_eq!(
        p.app_status("osc-fr1", "my-app").await,
        Ok(AppStatus::Scaling)
    );
    assert_eq!(
        p.scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 1)])
            .await,
        Err(ScalingoError::Busy("is scaling".into()))
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        p.app_status("osc-fr1", "my-app").await,
        Ok(AppStatus::Stopped)
    );
    assert!(p
        .scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 1)])
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn broken_boots_crash_or_end_in_error_and_the_front_says_so() {
    let p = InProcessPlatform::new(&["osc-fr1"]);
    p.add_app("osc-fr1", "crashy-app", &[("web", 0)]);
    p.add_app("osc-fr1", "failing-app", &[("web", 0)]);
    p.set_crash_loop("crashy-app", Duration::from_secs(40));
    p.set_boot("failing-app", Duration::from_secs(5));
    p.set_operation_error("failing-app", "build failed");
    let web = [ContainerAmount::new("web", 1)];
    let Ok(ScaleOutcome::Started {
        operation_id: crash_op,
        ..
    }) = p.scale("osc-fr1", "crashy-app", &web).await
    else {
        panic!("no operation");
    };
    let Ok(ScaleOutcome::Started {
        operation_id: fail_op,
        ..
    }) = p.scale("osc-fr1", "failing-app", &web).await
    else {
        panic!("no operation");
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        p.operation_state("osc-fr1", "failing-app", &fail_op).await,
        Ok(OperationState::Failed("build failed".into()))
    );
    assert_eq!(
        p.operation_state("osc-fr1", "crashy-app", &crash_op).await,
        Ok(OperationState::Running)
    );
    assert_eq!(
        p.probe_front("osc-fr1", "crashy-app", "/").await,
        FrontProbe::Router
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        p.app_status("osc-fr1", "crashy-app").await,
        Ok(AppStatus::Crashed)
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(
        p.web_running_until("osc-fr1", "failing-app", deadline)
            .await,
        Ok(false)
    );
    p.set_front_unreachable(true);
    assert!(matches!(
        p.probe_front("osc-fr1", "failing-app", "/").await,
        FrontProbe::Unreachable(_)
    ));
    assert_eq!(p.calls(Call::ProbeFront), 2);
    assert_eq!(p.api_calls(), 6, "probes are not API calls");
}

#[tokio::test(start_paused = true)]
async fn the_front_answers_after_its_delay_and_manual_scales_disable_autoscalers() {
    let p = InProcessPlatform::new(&["osc-fr1"]);
    p.add_app("osc-fr1", "my-app", &[("web", 0)]);
    p.set_boot("my-app", Duration::from_secs(3));
    p.set_front_delay("my-app", Duration::from_secs(1));
    p.add_autoscaler("my-app", "as-1", "web", false);
    p.scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 1)])
        .await
        .unwrap();
    assert!(p.autoscalers_of("my-app")[0].disabled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        p.probe_front("osc-fr1", "my-app", "/").await,
        FrontProbe::Router
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        p.probe_front("osc-fr1", "my-app", "/").await,
        FrontProbe::App
    );
    p.set_autoscaler_disabled("osc-fr1", "my-app", "as-1", false)
        .await
        .unwrap();
    assert!(!p.autoscalers("osc-fr1", "my-app").await.unwrap()[0].disabled);
}

//! Faults on the traffic side of the lifecycle, end to end (real Envoy with
//! the built filter, the sidecar binary, the strict fake Scalingo): the
//! traffic tells the truth (an app stopped outside the gateway, or paused by
//! it, is woken by the next requests, never left to the router's 503) and
//! the filter serves known-awake apps while the sidecar is down.
//!
//! Every test asserts an invariant; the waits are on conditions, with a
//! deadline only to fail instead of hanging.

use std::time::{Duration, Instant};

use paastis_e2e::fake::{FakeApp, APP_HEADER, ROUTER_MARKER};
use paastis_e2e::harness::{admin_env, Reply, Sidecar, Stack, StackOptions};
use serde_json::json;

const APP: &str = "shop-front";

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// Served by the app itself (not the router's page, not a local reply).
fn by_the_app(reply: &Reply, app: &str) -> bool {
    reply.status == 200 && reply.header(APP_HEADER) == Some(app)
}

/// The platform's router answered (no container serves the app).
fn by_the_router(reply: &Reply) -> bool {
    reply.header(APP_HEADER).is_none() && reply.body.contains(ROUTER_MARKER)
}

/// Requests `app` until `done` holds for an answer (or panics after
/// `within`); returns every answer.
async fn until(
    stack: &Stack,
    app: &str,
    within: Duration,
    done: impl Fn(&Reply) -> bool,
) -> Vec<Reply> {
    let deadline = Instant::now() + within;
    let mut replies = Vec::new();
    loop {
        let reply = stack.get(&host(app), "/").await;
        let finished = done(&reply);
        replies.push(reply);
        if finished {
            return replies;
        }
        assert!(
            Instant::now() < deadline,
            "no answer as expected for {app} within {within:?}: {:?}",
            replies.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_stopped_outside_is_woken_again_by_the_next_request() {
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        ..StackOptions::default()
    })
    .await;
    let first = stack.get(&host(APP), "/").await;
    assert!(by_the_app(&first, APP), "{first:?}");
    for _ in 0..5 {
        assert!(by_the_app(&stack.get(&host(APP), "/").await, APP));
    }
    assert_eq!(stack.fake.scale_calls(APP), 1);

    // Stopped behind the gateway's back (a scale to 0 from the dashboard).
    assert!(stack.fake.stop_app(APP));

    // The filter's cache still knows it awake: the next request meets the
    // router, whose page the filter holds back (the backstop): our 503
    // with Retry-After, and the wake starts at once ...
    let replies = until(&stack, APP, Duration::from_secs(30), |r| {
        !by_the_app(r, APP)
    })
    .await;
    let held_back = replies.last().expect("one answer");
    assert!(!by_the_router(held_back), "{held_back:?}");
    assert_eq!(held_back.status, 503, "{held_back:?}");
    assert!(held_back.header("retry-after").is_some(), "{held_back:?}");
    // ... so the next requests are served by the app once it runs, never
    // the router's 503 while traffic lasts.
    let replies = until(&stack, APP, Duration::from_secs(30), |r| by_the_app(r, APP)).await;
    assert!(replies.iter().all(|r| !by_the_router(r)), "{replies:?}");
    assert!(stack.fake.app(APP).expect("app").web_running);
    assert_eq!(stack.fake.scale_calls(APP), 2, "woken once more");
    assert!(stack.envoy.counter("paastis.not_running") >= 1);
    for _ in 0..5 {
        let again = stack.get(&host(APP), "/").await;
        assert!(by_the_app(&again, APP), "{again:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_paused_by_the_gateway_is_woken_never_left_to_the_router() {
    const TOKEN: &str = "admin-token-for-the-fault-tests";
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        sidecar_env: admin_env(TOKEN),
        ..StackOptions::default()
    })
    .await;
    let admin_port = stack.sidecar.admin.expect("the admin API listens").port();
    // Shorter than the strict 30 s so that the test sees a whole
    // scale-down and the wake after it in a few seconds.
    stack.fake.set_stop_delay(Duration::from_secs(3));
    assert!(by_the_app(&stack.get(&host(APP), "/").await, APP));
    for _ in 0..5 {
        assert!(by_the_app(&stack.get(&host(APP), "/").await, APP));
    }

    let paused = stack
        .client
        .post(format!(
            "http://127.0.0.1:{admin_port}/admin/v1/apps/{APP}/pause"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API");
    assert!(paused.status().is_success(), "{paused:?}");

    // Right after the pause, during its scale-down, and once it is done:
    // every request is served by the app (the gateway stops routing it and
    // wakes it), never answered by the router.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut served = 0;
    while Instant::now() < deadline {
        let reply = stack.get(&host(APP), "/").await;
        assert!(!by_the_router(&reply), "the router answered: {reply:?}");
        if by_the_app(&reply, APP) {
            served += 1;
        }
        // Paces the traffic (a load generator), synchronises nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served > 0);
    let final_reply = until(&stack, APP, Duration::from_secs(30), |r| by_the_app(r, APP)).await;
    assert!(final_reply.iter().all(|r| !by_the_router(r)));
    assert!(stack.fake.app(APP).expect("app").web_running);
}

/// The filter's warning lines in Envoy's log, and those of them about the
/// sidecar being unreachable.
fn filter_warnings(stack: &Stack) -> (usize, usize) {
    let log = stack.envoy.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[warning][wasm]"))
        .collect();
    let outage = warnings
        .iter()
        .filter(|l| l.contains("sidecar unreachable"))
        .count();
    (warnings.len(), outage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sidecar_leaves_warm_apps_served_and_cold_apps_503_until_it_is_back() {
    let warm = ["warm-app-1", "warm-app-2", "warm-app-3"];
    let cold = "cold-app-1";
    let mut apps: Vec<FakeApp> = warm
        .iter()
        .map(|a| FakeApp::web(*a, "osc-fr1", 0))
        .collect();
    apps.push(FakeApp::web(cold, "osc-fr1", 0));
    let mut stack = Stack::start(StackOptions {
        apps,
        // Cache entries expire during the outage: only serve stale keeps
        // the warm apps routed.
        filter: json!({ "cache_ttl_ms": 1500, "activity_flush_ms": 500 }),
        ..StackOptions::default()
    })
    .await;
    for app in warm {
        assert!(by_the_app(&stack.get(&host(app), "/").await, app));
    }
    let port = stack.sidecar.addr.port();

    // SIGKILL under load.
    stack.sidecar.stop();
    let outage_started = Instant::now();
    let mut warm_served = 0;
    // A cold request is held while Envoy's route to the sidecar retries
    // (about 15 s: a restart would be over), then answered our 503.
    let cold_request = async {
        let reply = stack.get(&host(cold), "/").await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(reply.header("retry-after").is_some(), "{reply:?}");
    };
    let warm_traffic = async {
        // Past several cache TTLs, so that every entry expired.
        while outage_started.elapsed() < Duration::from_secs(6) {
            let round = warm.iter().map(|app| {
                let stack = &stack;
                async move { (*app, stack.get(&host(app), "/").await) }
            });
            for (app, reply) in futures::future::join_all(round).await {
                assert!(
                    by_the_app(&reply, app),
                    "a warm app is served during the outage: {reply:?}"
                );
                warm_served += 1;
            }
        }
    };
    tokio::join!(cold_request, warm_traffic);
    let cold_refused = 1;
    assert!(
        stack
            .envoy
            .counter("cluster.paastis_sidecar.upstream_rq_retry")
            >= 1,
        "the cold request was held"
    );
    assert!(stack.envoy.counter("paastis.stale_hit") > 0);
    assert_eq!(stack.fake.scale_calls(cold), 0);
    // One line per period (and worker), not one per request.
    let (lines, outage) = filter_warnings(&stack);
    assert!(outage >= 1, "the outage is logged");
    assert!(
        lines <= 8,
        "{lines} warning lines for {warm_served} + {cold_refused} requests"
    );

    // Restarted on the same port: the cold app is woken, the warm ones are
    // still served, and their activity kept through the outage arrives.
    let rules = stack.dir().join("paastis.yml");
    // Same port and same token: the filter's configuration names both.
    let listen = vec![
        ("PAASTIS_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
        (
            "PAASTIS_SIDECAR_TOKEN".to_owned(),
            stack.sidecar.token.clone(),
        ),
    ];
    stack.sidecar = Sidecar::start(&stack.fake, &rules, stack.dir(), &listen).expect("restart");
    until(&stack, cold, Duration::from_secs(30), |r| {
        by_the_app(r, cold)
    })
    .await;
    for app in warm {
        until(&stack, app, Duration::from_secs(30), |r| by_the_app(r, app)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("http://{}/v1/apps", stack.sidecar.addr);
        let known: serde_json::Value = stack
            .client
            .get(url)
            .send()
            .await
            .expect("sidecar")
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = known["apps"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["app"].as_str()).collect())
            .unwrap_or_default();
        if warm.iter().all(|w| names.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "activity not received: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! End-to-end, the `waiting_page` strategy: real Envoy with the built
//! `.wasm`, the sidecar binary, the fake Scalingo, requests as curl sends
//! them. (The same in a real Chromium: `tests/browser.rs`.)

use std::time::{Duration, Instant};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, Fault, FaultKind};
use paastis_e2e::harness::{Reply, Stack, StackOptions};
use serde_json::{json, Value};

const FRONT: &str = "shop-front";
const API: &str = "shop-api-1";
const STATUS: &str = "/.well-known/paastis/status";
const HTML: (&str, &str) = (
    "accept",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
);
/// How long a woken app boots.
const BOOT: Duration = Duration::from_secs(2);

const RULES: &str = "rules:
  - pattern: '^(.*)-front$'
    linked_apps: ['$1-api-1']
    strategy: waiting_page
";

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

async fn waiting_stack(apps: Vec<FakeApp>) -> Stack {
    Stack::start(StackOptions {
        fake: FakeConfig {
            boot_delay: BOOT,
            ..FakeConfig::default()
        },
        apps,
        rules_yaml: RULES.to_owned(),
        ..StackOptions::default()
    })
    .await
}

fn sleeping_shop() -> Vec<FakeApp> {
    vec![
        FakeApp::web(FRONT, "osc-fr1", 0),
        FakeApp::web(API, "osc-fr1", 0),
    ]
}

fn state_of(status: &Value, app: &str) -> Option<String> {
    status["apps"]
        .as_array()?
        .iter()
        .find(|a| a["app"] == app)?["state"]
        .as_str()
        .map(str::to_owned)
}

async fn status(stack: &Stack) -> Reply {
    stack
        .request(&host(FRONT), STATUS, &[("accept", "application/json")])
        .await
}

/// Polls the status path until `done` says so (bounded).
async fn status_until(stack: &Stack, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = status(stack).await;
        if reply.status == 200 {
            let body = reply.json();
            if done(&body) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the status never said {what}; last: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_waiting_page_at_once_while_the_app_wakes() {
    let stack = waiting_stack(sleeping_shop()).await;
    // Both apps stay "booting" (running, not listening yet) until the test
    // opens their fronts below: what the page and the status say meanwhile
    // does not depend on how fast this machine is.
    stack.fake.set_front_boot_window(Duration::from_secs(3600));

    // Answered at once: a request held for the wake would get the app's
    // 200, and the app cannot answer before the test lets it.
    let page = stack.request(&host(FRONT), "/cart?item=7", &[HTML]).await;
    assert_eq!(page.status, 503, "{page:?}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("retry-after"), Some("5"));
    assert!(page.header("content-security-policy").is_some());
    assert!(page.body.contains("<title>Waking up shop-front</title>"));
    assert!(page.body.contains(r#"<li data-app="shop-front""#));
    assert!(page.body.contains(r#"<li data-app="shop-api-1""#));
    assert!(page.body.contains(STATUS));
    assert!(page.body.contains("http-equiv=\"refresh\""));
    assert_eq!(stack.envoy.counter("paastis.waiting_page"), 1);

    // The wake goes on without the browser's request: one scale call each.
    let deadline = Instant::now() + Duration::from_secs(5);
    while stack.fake.scale_calls(FRONT) == 0 || stack.fake.scale_calls(API) == 0 {
        assert!(Instant::now() < deadline, "the wake never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The status path: answered by the gateway, never by the app.
    let first = status(&stack).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let body = first.json();
    assert_eq!(body["app"], FRONT);
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(state_of(&body, FRONT).as_deref(), Some("waking"), "{body}");
    assert_eq!(state_of(&body, API).as_deref(), Some("waking"), "{body}");

    // A second browser meanwhile gets the page too, without another wake.
    let again = stack.request(&host(FRONT), "/", &[HTML]).await;
    assert_eq!(again.status, 503, "{again:?}");

    // The apps start listening.
    assert!(stack.fake.open_front(FRONT) && stack.fake.open_front(API));
    let ready = status_until(&stack, "ready", |s| s["ready"] == true).await;
    assert_eq!(state_of(&ready, FRONT).as_deref(), Some("running"));
    assert_eq!(state_of(&ready, API).as_deref(), Some("running"));
    assert_eq!(stack.fake.front_hits(FRONT), 0, "nothing reached the app");

    // The page's reload: served by the app, from the filter's cache (the
    // ready status wrote it).
    let callouts = stack.envoy.counter("paastis.callout");
    let landed = stack.request(&host(FRONT), "/cart?item=7", &[HTML]).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    let app = landed.json();
    assert_eq!(app["app"], FRONT);
    assert_eq!(app["path"], "/cart");
    assert_eq!(app["query"], "item=7");
    assert_eq!(stack.envoy.counter("paastis.callout"), callouts);
    assert_eq!(stack.fake.scale_calls(FRONT), 1);
    assert_eq!(stack.fake.scale_calls(API), 1);

    // Once the app runs, the status answers from the cache.
    let cached = status(&stack).await.json();
    assert_eq!(cached["ready"], true);
    assert_eq!(stack.fake.front_hits(FRONT), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clients_of_a_waiting_page_app_wait_for_it_and_get_json() {
    let stack = waiting_stack(sleeping_shop()).await;

    let reply = stack
        .request(
            &host(FRONT),
            "/api/items",
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], FRONT);
    // A lower bound, which a loaded machine cannot break: the boot starts
    // after the request is sent and lasts BOOT (the margin is for timer
    // granularity).
    assert!(
        reply.elapsed >= BOOT - Duration::from_millis(200),
        "held until the app ran: {:?}",
        reply.elapsed
    );
    assert_eq!(stack.envoy.counter("paastis.waiting_page"), 0);

    // A browser's form POST is held too: reloading a page would lose its body.
    drop(stack);
    let stack = waiting_stack(vec![FakeApp::web("form-front", "osc-fr1", 0)]).await;
    let url = format!("http://{}/submit", stack.envoy.listen);
    let reply = stack
        .client
        .post(url)
        .header("host", host("form-front"))
        .header(HTML.0, HTML.1)
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["app"], "form-front");
    assert_eq!(body["body"], "name=x");

    // An app whose rules say nothing keeps the blocking default, browsers
    // included.
    drop(stack);
    let stack = waiting_stack(vec![FakeApp::web("blog-app", "osc-fr1", 0)]).await;
    let reply = stack.request(&host("blog-app"), "/", &[HTML]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["app"], "blog-app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wake_shows_as_an_error_and_a_retry_wakes_the_app() {
    let stack = waiting_stack(sleeping_shop()).await;
    stack.fake.inject(
        Fault::new(Endpoint::Scale, FaultKind::Status(500))
            .for_app(FRONT)
            .times(10),
    );
    let page = stack.request(&host(FRONT), "/", &[HTML]).await;
    assert_eq!(page.status, 503, "{page:?}");
    assert!(page.body.contains("Waking up"));

    let failed = status_until(&stack, "an error", |s| s.get("error").is_some()).await;
    assert_eq!(failed["error"], "wake_failed", "{failed}");
    assert_eq!(failed["ready"], false);
    assert_eq!(state_of(&failed, FRONT).as_deref(), Some("failed"));

    // "Try again" (a reload) starts a new wake once Scalingo answers again
    // and the failed wake's back-off is over; a reload before that shows
    // the failure again, at no Scalingo cost.
    stack.fake.clear_faults();
    let give_up = Instant::now() + Duration::from_secs(40);
    let ready = loop {
        let page = stack.request(&host(FRONT), "/", &[HTML]).await;
        assert_eq!(page.status, 503, "{page:?}");
        let settled = status_until(&stack, "ready or failed", |s| {
            s["ready"] == true || s.get("error").is_some()
        })
        .await;
        if settled["ready"] == true {
            break settled;
        }
        assert!(Instant::now() < give_up, "never woken: {settled}");
        // The pace of a user clicking "Try again" (not a synchronisation:
        // the loop waits on the status).
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(ready.get("error").is_none(), "{ready}");
    let landed = stack.request(&host(FRONT), "/", &[HTML]).await;
    assert_eq!(landed.status, 200, "{landed:?}");
    assert_eq!(landed.json()["app"], FRONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_path_is_answered_by_the_gateway_and_cannot_steer_routing() {
    let stack = waiting_stack(vec![FakeApp::web("blog-app", "osc-fr1", 1)]).await;
    let blog = host("blog-app");

    // Not known awake yet: the sidecar's view (it knows nothing of it).
    let reply = stack
        .request(
            &blog,
            &format!("{STATUS}?x=1"),
            &[("x-paastis-cluster", "osc-fr1")],
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["ready"], false);
    assert_eq!(
        state_of(&reply.json(), "blog-app").as_deref(),
        Some("asleep")
    );
    assert_eq!(stack.envoy.counter("paastis.status_callout"), 1);

    assert_eq!(stack.get(&blog, "/").await.status, 200);
    let reply = stack
        .request(&blog, STATUS, &[("x-paastis-cluster", "osc-secnum-fr1")])
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"app": "blog-app", "ready": true, "apps": [{"app": "blog-app", "state": "running"}]})
    );
    assert_eq!(
        stack.envoy.counter("paastis.status_callout"),
        1,
        "from the cache"
    );
    assert_eq!(stack.fake.front_hits("blog-app"), 1, "never forwarded");

    // Only that exact path is reserved.
    let reply = stack.get(&blog, "/.well-known/paastis/statusx").await;
    assert_eq!(reply.json()["path"], "/.well-known/paastis/statusx");

    // Hosts are checked first, as for any request.
    let reply = stack.get("x.gateway.example.com", STATUS).await;
    assert_eq!(reply.status, 400);
    let reply = stack.get("example.org", STATUS).await;
    assert_eq!(reply.status, 404);

    // Sidecar down: "unavailable" (the page keeps polling a while).
    let mut stack = stack;
    stack.sidecar.stop();
    let reply = stack.get(&host("other-app"), STATUS).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.json()["error"], "unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_answers_202_only_to_browsers_of_waiting_page_apps() {
    let stack = waiting_stack(sleeping_shop()).await;
    let wake = |body: Value| {
        let url = format!("http://{}/v1/wake", stack.sidecar.addr);
        let client = stack.client.clone();
        let token = stack.sidecar.token.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let sidecar_status = |app: &str| {
        let url = format!("http://{}/v1/status?app={app}", stack.sidecar.addr);
        let client = stack.client.clone();
        let token = stack.sidecar.token.clone();
        async move {
            let r = client.get(url).bearer_auth(&token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (code, body) = wake(json!({"app": FRONT, "region": null, "client": "browser"})).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        body,
        json!({"waiting": true, "app": FRONT, "target": FRONT, "linked_apps": [API]})
    );
    let (code, body) = sidecar_status(FRONT).await;
    assert_eq!(code, 200);
    assert_eq!(body["ready"], false);
    assert_eq!(body["target"], FRONT);

    // An API client waits, and gets the usual answer.
    let (code, body) = wake(json!({"app": FRONT, "client": "api"})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["upstream_host"], "shop-front.osc-fr1.scalingo.io");
    assert_eq!(stack.fake.scale_calls(FRONT), 1, "joined the running wake");

    // Known running: a browser is not shown the page any more.
    let (code, _) = wake(json!({"app": FRONT, "client": "browser"})).await;
    assert_eq!(code, 200);
    let (_, body) = sidecar_status(FRONT).await;
    assert_eq!(body["ready"], true);
    assert_eq!(body["region"], "osc-fr1");

    let (code, body) = wake(json!({"app": "x", "client": "browser"})).await;
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_app")));
    let (code, _) = wake(json!({"app": FRONT, "client": "robot"})).await;
    assert!((400..500).contains(&code), "{code}");
    let (code, body) = sidecar_status("Bad_App").await;
    assert_eq!((code, body["error"].as_str()), (400, Some("invalid_app")));
}

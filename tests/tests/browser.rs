//! The waiting page in a real headless Chromium (Debian's `chromium`, driven
//! by `chromedriver`) through the real Envoy with the built `.wasm`: open a
//! sleeping app, see the waiting page, end on the app's own answer with no
//! navigation in between. Screenshots of both go to `target/screenshots/`
//! (paths printed in the test's output).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paastis_e2e::browser::{self, Browser, BrowserOptions};
use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, Fault, FaultKind};
use paastis_e2e::harness::{workspace_root, Stack, StackOptions};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use serde_json::Value;

const FRONT: &str = "shop-front";
const API: &str = "shop-api-1";

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("screenshots").join(name)
}

async fn shop_stack() -> Stack {
    Stack::start(StackOptions {
        fake: FakeConfig {
            boot_delay: Duration::from_millis(2500),
            ..FakeConfig::default()
        },
        apps: vec![
            FakeApp::web(FRONT, "osc-fr1", 0),
            FakeApp::web(API, "osc-fr1", 0),
        ],
        rules_yaml: "rules:
  - pattern: '^(.*)-front$'
    linked_apps: ['$1-api-1']
    strategy: waiting_page
"
        .to_owned(),
        ..StackOptions::default()
    })
    .await
}

/// The shop stack on a Redis registry under `prefix`, so that a test can
/// write what earlier wakes left (their durations) before opening the page.
async fn shop_stack_on_redis(redis: &TestRedis, prefix: &str) -> Stack {
    Stack::start(StackOptions {
        fake: FakeConfig {
            boot_delay: Duration::from_millis(2500),
            ..FakeConfig::default()
        },
        apps: vec![
            FakeApp::web(FRONT, "osc-fr1", 0),
            FakeApp::web(API, "osc-fr1", 0),
        ],
        rules_yaml: "rules:
  - pattern: '^(.*)-front$'
    linked_apps: ['$1-api-1']
    strategy: waiting_page
"
        .to_owned(),
        sidecar_env: vec![
            ("REGISTRY_TYPE".to_owned(), "redis".to_owned()),
            ("REGISTRY_REDIS_URL".to_owned(), redis.url()),
            ("REGISTRY_REDIS_KEY_PREFIX".to_owned(), prefix.to_owned()),
        ],
        ..StackOptions::default()
    })
    .await
}

async fn chromium(stack: &Stack) -> Browser {
    Browser::start(BrowserOptions {
        host_resolver_rules: Some("MAP *.gateway.example.com 127.0.0.1".to_owned()),
        window: (1000, 700),
        log_dir: stack.dir().to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sees_the_waiting_page_then_lands_on_the_app_by_itself() {
    let stack = shop_stack().await;
    let browser = chromium(&stack).await;

    let url = format!(
        "http://{FRONT}.gateway.example.com:{}/welcome?from=test",
        stack.envoy.listen.port()
    );
    // The apps stay "booting" (running, not listening yet) until the
    // waiting page has been looked at: what it shows does not depend on how
    // fast this machine is.
    stack.fake.set_front_boot_window(Duration::from_secs(3600));
    let opened = Instant::now();
    browser.goto(&url).await.expect("navigation");

    // The waiting page, at once.
    let title = browser.title().await.expect("title");
    assert_eq!(
        title,
        "Waking up shop-front",
        "after {:?}",
        opened.elapsed()
    );
    let listed = browser
        .execute(
            "var l=document.querySelectorAll('#paastis-apps li');\
             return Array.prototype.map.call(l,function(e){return e.getAttribute('data-app');});",
        )
        .await
        .expect("app list");
    assert_eq!(listed, serde_json::json!([FRONT, API]));
    let waiting_png = screenshot_path("waiting-page.png");
    browser
        .screenshot(&waiting_png)
        .await
        .expect("screenshot of the waiting page");
    println!("screenshot of the waiting page: {}", waiting_png.display());
    // The apps start listening.
    assert!(stack.fake.open_front(FRONT) && stack.fake.open_front(API));
    assert_eq!(stack.fake.front_hits(FRONT), 0);

    // Then, with no navigation call from here, the page polls, reloads
    // itself and shows the app's own answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Some(answer) = browser::app_answer(&browser).await {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "still not on the app after 30 s; title {:?}",
            browser.title().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let took = opened.elapsed();
    assert_eq!(answer["app"], FRONT);
    assert_eq!(answer["path"], "/welcome");
    assert_eq!(answer["query"], "from=test");
    assert_eq!(
        browser.current_url().await.expect("url"),
        url,
        "the same URL, reloaded"
    );
    let app_png = screenshot_path("app-page.png");
    browser
        .screenshot(&app_png)
        .await
        .expect("screenshot of the app");
    println!(
        "screenshot of the app after the wake ({took:?}): {}",
        app_png.display()
    );

    assert_eq!(stack.fake.scale_calls(FRONT), 1);
    assert_eq!(stack.fake.scale_calls(API), 1);
    assert!(stack.fake.app(API).unwrap().web_running);
    assert_eq!(stack.envoy.counter("paastis.waiting_page"), 1);
    assert!(stack.envoy.counter("paastis.status_callout") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_a_failed_wake_as_an_error_instead_of_spinning() {
    let stack = shop_stack().await;
    stack.fake.inject(
        Fault::new(Endpoint::Scale, FaultKind::Status(500))
            .for_app(FRONT)
            .times(10),
    );
    let browser = chromium(&stack).await;
    let url = format!(
        "http://{FRONT}.gateway.example.com:{}/",
        stack.envoy.listen.port()
    );
    browser.goto(&url).await.expect("navigation");
    assert_eq!(
        browser.title().await.expect("title"),
        "Waking up shop-front"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = browser
            .execute(
                "return document.getElementById('paastis-waiting').getAttribute('data-state');",
            )
            .await;
        if state.as_ref().ok().and_then(Value::as_str) == Some("failed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed the failure: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        browser.title().await.expect("title"),
        "Could not wake shop-front"
    );
    let heading = browser
        .execute("return document.getElementById('paastis-title').innerText;")
        .await
        .expect("heading");
    assert_eq!(heading, "Could not wake shop-front");
    let message = browser
        .execute("return document.getElementById('paastis-message').innerText;")
        .await
        .expect("message");
    assert!(
        message
            .as_str()
            .unwrap_or("")
            .starts_with("shop-front could not be started."),
        "{message}"
    );
    let png = screenshot_path("waiting-page-failed.png");
    browser.screenshot(&png).await.expect("screenshot");
    println!("screenshot of a failed wake: {}", png.display());
    // It stopped polling: the page stays as it is. A window watched for
    // polls that must not come (a polling page sends one a second), not a
    // synchronisation: a page that stopped sends none, however slow the
    // machine.
    let polls = stack.envoy.counter("paastis.status_callout");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(stack.envoy.counter("paastis.status_callout"), polls);
    assert_eq!(stack.fake.front_hits(FRONT), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_usual_wake_time_and_a_progress_bar() {
    let redis = TestRedis::start();
    let prefix = unique_prefix("browser_estimate");
    // Three earlier wakes of shop-front, as the sidecar keeps them (newest
    // first): the estimate is their median, 6 s.
    for (at, duration) in [(1_000, 9_000), (2_000, 6_000), (3_000, 4_000)] {
        let sample = format!(r#"{{"at_ms":{at},"duration_ms":{duration}}}"#);
        let pushed = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port().to_string(), "LPUSH"])
            .arg(format!("{prefix}wakes:{FRONT}"))
            .arg(sample)
            .output()
            .expect("redis-cli");
        assert!(pushed.status.success());
    }
    let stack = shop_stack_on_redis(&redis, &prefix).await;
    let browser = chromium(&stack).await;
    let url = format!(
        "http://{FRONT}.gateway.example.com:{}/",
        stack.envoy.listen.port()
    );
    browser.goto(&url).await.expect("navigation");
    assert_eq!(
        browser.title().await.expect("title"),
        "Waking up shop-front"
    );
    // Rendered by the filter with the page (no script needed), not hidden.
    let estimate = browser
        .execute(
            "var e=document.getElementById('paastis-estimate');\
             var b=e.querySelector('.bar span');\
             return [e.hidden, e.firstChild.textContent, getComputedStyle(b).animationDuration];",
        )
        .await
        .expect("estimate");
    assert_eq!(
        estimate,
        serde_json::json!([false, "Usually ready in about 6 s.", "6s"])
    );
    let png = screenshot_path("waiting-page-estimate.png");
    browser.screenshot(&png).await.expect("screenshot");
    println!(
        "screenshot of the waiting page with its estimate: {}",
        png.display()
    );

    // The page still lands on the app, and that wake joins the samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser::app_answer(&browser).await.is_none() {
        assert!(Instant::now() < deadline, "still not on the app after 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let kept = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "LLEN"])
        .arg(format!("{prefix}wakes:{FRONT}"))
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&kept.stdout).trim(), "4");
}

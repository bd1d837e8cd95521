//! The operator dashboard in a real headless Chromium (Debian's `chromium`
//! driven by `chromedriver`) against the real sidecar binary on the admin
//! listener: the token form, the apps and events once signed in, and a
//! pause from the page's button that changes what the page shows.
//! Screenshots of every state go to `target/screenshots/dashboard-*.png`
//! (paths printed in the test's output).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use paastis_e2e::browser::{self, Browser, BrowserOptions};
use paastis_e2e::fake::{FakeApp, ListEntries};
use paastis_e2e::harness::{admin_env, workspace_root, Stack, StackOptions};
use serde_json::Value;

const TOKEN: &str = "admin-token-for-the-dashboard-test";
const FRONT: &str = "shop-front";
const API: &str = "shop-api-1";
const BLOG: &str = "blog-front";

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("screenshots").join(name)
}

/// Runs `script` until it returns `want` (a condition, not a delay).
async fn wait_for(browser: &Browser, script: &str, want: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = browser.execute(script).await;
        if got.as_ref().ok().and_then(Value::as_str) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {got:?} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn shot(browser: &Browser, name: &str) {
    let png = screenshot_path(name);
    browser.screenshot(&png).await.expect("screenshot");
    println!("screenshot of the dashboard: {}", png.display());
}

fn row_state(app: &str) -> String {
    format!(
        "var r=document.querySelector('#apps-body tr[data-app=\"{app}\"]');\
         return r ? r.getAttribute('data-state') : 'missing';"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_lists_the_apps_and_pauses_one_with_the_keyboard() {
    let stack = Stack::start(StackOptions {
        apps: vec![
            FakeApp::web(FRONT, "osc-fr1", 1),
            FakeApp::web(API, "osc-fr1", 1),
            FakeApp::web(BLOG, "osc-fr1", 0),
        ],
        rules_yaml: "rules:
  - pattern: '^(.*)-front$'
    linked_apps: ['$1-api-1']
"
        .to_owned(),
        sidecar_env: admin_env(TOKEN),
        ..StackOptions::default()
    })
    .await;
    let admin_port = stack.sidecar.admin.expect("the admin API listens").port();
    // Scalingo's status in every list entry, so that the page can show
    // running and asleep apps; and a 3 s scale-down instead of the strict
    // 30 s, so that the page sees the pause end.
    stack.fake.set_list_entries(ListEntries::Full);
    stack.fake.set_stop_delay(Duration::from_secs(3));
    // Traffic: the front is served (and registered), the blog woken.
    assert_eq!(
        stack
            .get(&format!("{FRONT}.gateway.example.com"), "/")
            .await
            .status,
        200
    );
    assert_eq!(
        stack
            .get(&format!("{BLOG}.gateway.example.com"), "/")
            .await
            .status,
        200
    );

    let browser = Browser::start(BrowserOptions {
        host_resolver_rules: None,
        window: (1400, 900),
        log_dir: stack.dir().to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
    let base = format!("http://127.0.0.1:{admin_port}");
    browser
        .goto(&format!("{base}/dashboard"))
        .await
        .expect("navigation");
    assert_eq!(browser.title().await.expect("title"), "Paastis dashboard");

    // No token yet: the form, with the field focused.
    wait_for(
        &browser,
        "return document.body.getAttribute('data-state');",
        "login",
        "the token form",
    )
    .await;
    let focused = browser
        .execute("return document.activeElement.id;")
        .await
        .expect("focus");
    assert_eq!(focused, "token");
    let label = browser
        .execute("return document.querySelector('label[for=token]').innerText;")
        .await
        .expect("label");
    assert!(label.as_str().unwrap_or("").contains("Admin bearer token"));
    shot(&browser, "dashboard-login.png").await;

    // A wrong token: refused, the form again, nothing kept.
    browser
        .send_keys("#token", "not-the-token\u{E007}")
        .await
        .expect("typing");
    wait_for(
        &browser,
        "return document.getElementById('login-error').innerText;",
        "The admin API refused this token.",
        "the refusal",
    )
    .await;
    let kept = browser
        .execute("return sessionStorage.getItem('paastis-admin-token');")
        .await
        .expect("storage");
    assert_eq!(kept, Value::Null);

    // The token, typed and submitted with Enter.
    browser
        .send_keys("#token", &format!("{TOKEN}\u{E007}"))
        .await
        .expect("typing");
    wait_for(
        &browser,
        "return document.body.getAttribute('data-state');",
        "ready",
        "the apps",
    )
    .await;
    // Kept for the tab, never as a cookie.
    let storage = browser
        .execute("return [sessionStorage.getItem('paastis-admin-token'), localStorage.length, document.cookie];")
        .await
        .expect("storage");
    assert_eq!(storage, serde_json::json!([TOKEN, 0, ""]));
    let form_shown = browser
        .execute("return document.getElementById('login').offsetParent !== null;")
        .await
        .expect("form");
    assert_eq!(form_shown, false, "the token form is gone once signed in");
    wait_for(&browser, &row_state(FRONT), "running", "the front running").await;
    wait_for(&browser, &row_state(BLOG), "running", "the woken blog").await;
    let linked = browser
        .execute(&format!(
            "return document.querySelector('#apps-body tr[data-app=\"{FRONT}\"] td:nth-child(6)').innerText;"
        ))
        .await
        .expect("linked apps");
    assert_eq!(linked, API);
    let region = browser
        .execute(&format!(
            "return document.querySelector('#apps-body tr[data-app=\"{FRONT}\"] td:nth-child(3)').innerText;"
        ))
        .await
        .expect("region");
    assert_eq!(region, "osc-fr1");
    // Every button has a name a screen reader reads, and is reachable.
    let unnamed = browser
        .execute(
            "return Array.prototype.filter.call(document.querySelectorAll('button'),\
             function(b){return !(b.getAttribute('aria-label')||b.innerText).trim() || b.tabIndex < 0;}).length;",
        )
        .await
        .expect("buttons");
    assert_eq!(unnamed, 0);
    shot(&browser, "dashboard-apps.png").await;

    // Pause the front from its button, with the keyboard (focus + Enter).
    let pause = format!("#apps-body button[data-action=pause][data-app=\"{FRONT}\"]");
    browser
        .send_keys(&pause, "\u{E007}")
        .await
        .expect("Enter on the pause button");
    // The page shows it: the event in the log, the row no longer running.
    wait_for(
        &browser,
        &format!(
            "return document.querySelector('#events li[data-event=paused][data-app=\"{FRONT}\"]') ? 'yes' : 'no';"
        ),
        "yes",
        "the pause in the events",
    )
    .await;
    let after = browser.execute(&row_state(FRONT)).await.expect("state");
    assert!(
        after == "pausing" || after == "asleep",
        "the row after the pause: {after}"
    );
    let status = browser
        .execute("return document.getElementById('status').innerText;")
        .await
        .expect("status");
    assert_eq!(status, format!("{FRONT} paused."));
    shot(&browser, "dashboard-paused.png").await;
    // And Scalingo really scaled it down.
    let deadline = Instant::now() + Duration::from_secs(20);
    while stack.fake.app(FRONT).is_some_and(|a| a.web_running) {
        assert!(Instant::now() < deadline, "{FRONT} still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The total saved is on the page, a number.
    let total = browser
        .execute("return document.getElementById('total-saved').innerText;")
        .await
        .expect("total");
    assert!(
        total.as_str().unwrap_or("").parse::<f64>().is_ok(),
        "{total}"
    );

    // Forgetting the token brings the form back and clears the tab's copy.
    browser.click("#sign-out").await.expect("sign out");
    wait_for(
        &browser,
        "return document.body.getAttribute('data-state');",
        "login",
        "the form after signing out",
    )
    .await;
    let kept = browser
        .execute("return sessionStorage.getItem('paastis-admin-token');")
        .await
        .expect("storage");
    assert_eq!(kept, Value::Null);
}

/// Waits, with no navigation from here, until the page is the app's own
/// answer (the waiting page reloads itself once the app runs).
async fn until_on_the_app(browser: &Browser) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = browser::app_answer(browser).await {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "still not on the app after 30 s; title {:?}",
            browser.title().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The demo's flow as a new user tries it: the app open in the browser,
/// **Pause** on the dashboard, then the app again: the waiting page (never
/// the platform's "app is stopped"), which wakes it and lands on the app
/// with no reload by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pauses_from_the_dashboard_then_the_app_shows_the_waiting_page_then_itself() {
    let stack = Stack::start(StackOptions {
        apps: vec![
            FakeApp::web(FRONT, "osc-fr1", 1),
            FakeApp::web(API, "osc-fr1", 1),
        ],
        // The demo's rules (`demo/paastis.yml`), for the shop's apps.
        rules_yaml: "rules:
  - pattern: '^(.*)-front$'
    linked_apps: ['$1-api-1']
    app_max_idle_time: 5
    strategy: waiting_page
"
        .to_owned(),
        sidecar_env: admin_env(TOKEN),
        ..StackOptions::default()
    })
    .await;
    let admin_port = stack.sidecar.admin.expect("the admin API listens").port();
    stack.fake.set_list_entries(ListEntries::Full);
    // A scale-down of 3 s instead of the strict 30 s: the test waits for it.
    stack.fake.set_stop_delay(Duration::from_secs(3));
    let browser = Browser::start(BrowserOptions {
        host_resolver_rules: Some("MAP *.gateway.example.com 127.0.0.1".to_owned()),
        window: (1200, 800),
        log_dir: stack.dir().to_owned(),
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start Chromium: {e}"));
    let app_url = format!(
        "http://{FRONT}.gateway.example.com:{}/",
        stack.envoy.listen.port()
    );

    // The app, open in the browser (through the waiting page, the gateway
    // not knowing it awake yet): served, the filters hold its lease.
    browser.goto(&app_url).await.expect("the app");
    assert_eq!(until_on_the_app(&browser).await["app"], FRONT);

    // The dashboard: signed in, Pause on the front.
    browser
        .goto(&format!("http://127.0.0.1:{admin_port}/dashboard"))
        .await
        .expect("the dashboard");
    wait_for(
        &browser,
        "return document.body.getAttribute('data-state');",
        "login",
        "the token form",
    )
    .await;
    browser
        .send_keys("#token", &format!("{TOKEN}\u{E007}"))
        .await
        .expect("typing");
    wait_for(&browser, &row_state(FRONT), "running", "the front running").await;
    browser
        .click(&format!(
            "#apps-body button[data-action=pause][data-app=\"{FRONT}\"]"
        ))
        .await
        .expect("Pause");
    wait_for(
        &browser,
        "return document.getElementById('status').innerText;",
        &format!("{FRONT} paused."),
        "the pause",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.fake.app(FRONT).is_some_and(|a| a.status != "stopped") {
        assert!(Instant::now() < deadline, "{FRONT} never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(&browser, "dashboard-demo-paused.png").await;
    let scales = stack.fake.scale_calls(FRONT);

    // The app again: the waiting page, at once.
    browser.goto(&app_url).await.expect("the app again");
    let title = browser.title().await.expect("title");
    let text = browser
        .execute("return document.body ? document.body.innerText : '';")
        .await
        .expect("text");
    assert_eq!(title, format!("Waking up {FRONT}"), "{text}");
    assert!(
        !text.as_str().unwrap_or("").contains("app is stopped"),
        "the platform's page: {text}"
    );
    shot(&browser, "dashboard-demo-waiting.png").await;

    // Then the app, with no navigation from here.
    let answer = until_on_the_app(&browser).await;
    assert_eq!(answer["app"], FRONT);
    assert_eq!(browser.current_url().await.expect("url"), app_url);
    assert_eq!(stack.fake.scale_calls(FRONT), scales + 1, "woken once");
    shot(&browser, "dashboard-demo-app.png").await;
}

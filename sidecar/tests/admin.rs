//! The admin API against the fake Scalingo: bearer checks, every operation,
//! and every answer checked against `sidecar/openapi/admin.yaml`.

use std::sync::Arc;
use std::time::Duration;

use paastis_e2e::fake::{FakeApp, FakeScalingo, ListEntries};
use paastis_e2e::harness::workspace_root;
use paastis_e2e::openapi::OpenApi;
use paastis_e2e::setup::{fake_with, sidecar_env};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::scalingo::Secret;
use serde_json::Value;

const TOKEN: &str = "admin-token-for-tests-0123";

struct Admin {
    fake: FakeScalingo,
    gateway: paastis_sidecar::Gateway,
    base: String,
    spec: OpenApi,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Admin {
    async fn start(apps: Vec<FakeApp>, extra: &[(&str, &str)]) -> Admin {
        let fake = fake_with(apps, Duration::from_millis(200)).await;
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("paastis.yml");
        std::fs::write(
            &rules,
            "rules:\n  - pattern: '^shop-front$'\n    linked_apps: [shop-api-1]\n",
        )
        .unwrap();
        let mut extra = extra.to_vec();
        extra.push(("PAASTIS_ADMIN_TOKEN", TOKEN));
        let vars = sidecar_env(&fake, &rules, &extra);
        let get = env_from_map(&vars);
        let config = Config::from_env(&Env::new(&get)).expect("valid config");
        let gateway = paastis_sidecar::build(&config).await.expect("builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(paastis_sidecar::admin::run(
            listener,
            Arc::clone(&gateway.waker),
            Arc::clone(&gateway.scheduler),
            Secret::new(TOKEN),
            async {
                let _ = stopped.await;
            },
        ));
        let spec = OpenApi::load(&workspace_root().join("sidecar/openapi/admin.yaml"))
            .expect("the OpenAPI document loads");
        Admin {
            fake,
            gateway,
            base: format!("http://{addr}"),
            spec,
            http: reqwest::Client::new(),
            _stop: stop,
            _dir: dir,
        }
    }

    /// Calls `method path` (a concrete path), checks the answer against the
    /// operation `template` of the spec, returns status and JSON body.
    async fn call(&self, method: &str, path: &str, template: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        if let Err(e) = self.spec.check(method, template, status, &body) {
            panic!("answer does not follow the OpenAPI document: {e}");
        }
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let spec = OpenApi::load(&workspace_root().join("sidecar/openapi/admin.yaml")).unwrap();
    let mut routes: Vec<(String, String)> = paastis_sidecar::admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    routes.sort();
    assert_eq!(spec.operations(), routes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_is_required_and_checked() {
    let a = Admin::start(vec![], &[]).await;
    for auth in [
        None,
        Some("Bearer wrong-token-of-some-length"),
        Some("Basic abc"),
    ] {
        let mut request = a.http.get(format!("{}/admin/v1/apps", a.base));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"paastis-admin\""
        );
        let body = response.text().await.unwrap();
        a.spec
            .check("get", "/admin/v1/apps", 401, &body)
            .expect("401 follows the document");
    }
    // Unknown routes are refused the same way before anything else.
    let response = a
        .http
        .post(format!("{}/admin/v1/nothing", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_without_auth_under_a_strict_policy_and_the_api_still_needs_the_token(
) {
    let a = Admin::start(vec![], &[]).await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ] {
        let response = a
            .http
            .get(format!("{}{path}", a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(
            headers["content-security-policy"],
            paastis_sidecar::dashboard::CSP
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers.get("set-cookie").is_none());
        let body = response.text().await.unwrap();
        assert!(!body.contains(TOKEN), "the page holds no secret");
    }
    // The page's own calls still need the token.
    let response = a
        .http
        .get(format!("{}/admin/v1/events", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Other paths are not opened by the dashboard's routes.
    let response = a
        .http
        .get(format!("{}/dashboard/other.js", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_wake_pause_and_forget_apps() {
    let a = Admin::start(
        vec![
            FakeApp::web("shop-front", "osc-fr1", 0),
            FakeApp::web("shop-api-1", "osc-fr1", 0),
            FakeApp::web("busy-app", "osc-secnum-fr1", 2),
            FakeApp::web("ignored-app", "osc-fr1", 1),
        ],
        &[("REGISTRY_IGNORED_APPS", "ignored-app")],
    )
    .await;
    // A scale-down as the real one behaves (`scaling`, 422 `is scaling`,
    // `stopping` containers) but 3 s long instead of up to 30 s, so that
    // a wake right after a pause fits this suite's 20 s wake timeout.
    a.fake.set_stop_delay(Duration::from_secs(3));
    // What this test checks is that the admin API shows the status Scalingo
    // lists; list entries without one (the strict default) read `unknown`,
    // which the client's decoding tests cover.
    a.fake.set_list_entries(ListEntries::Full);

    // Before anything: Scalingo's view only.
    let (status, list) = a.call("get", "/admin/v1/apps", "/admin/v1/apps").await;
    assert_eq!(status, 200);
    let apps = list["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 4, "{list}");
    let busy = apps.iter().find(|x| x["app"] == "busy-app").unwrap();
    assert_eq!(busy["provider_status"], "running");
    assert_eq!(busy["region"], "osc-secnum-fr1");
    assert_eq!(busy["registered"], false);
    assert_eq!(list["provider_error"], Value::Null);

    // Force a wake: the app and its linked app run.
    let (status, woken) = a
        .call(
            "post",
            "/admin/v1/apps/shop-front/wake",
            "/admin/v1/apps/{app}/wake",
        )
        .await;
    assert_eq!(status, 200, "{woken}");
    assert_eq!(woken["linked_apps"][0]["app"], "shop-api-1");
    assert!(a.fake.app("shop-front").unwrap().web_running);
    assert!(a.fake.app("shop-api-1").unwrap().web_running);

    let (status, front) = a
        .call("get", "/admin/v1/apps/shop-front", "/admin/v1/apps/{app}")
        .await;
    assert_eq!(status, 200);
    assert_eq!(front["registered"], true);
    assert_eq!(front["linked_apps"], serde_json::json!(["shop-api-1"]));
    let last = front["last_access_ms"].as_u64().unwrap();
    assert_eq!(front["pause_at_ms"].as_u64().unwrap(), last + 15 * 60_000);

    // Force a pause of an app running with web=2: remembered, scaled to 0.
    let (status, paused) = a
        .call(
            "post",
            "/admin/v1/apps/busy-app/pause",
            "/admin/v1/apps/{app}/pause",
        )
        .await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["formation"]["web"], 2);
    assert!(!a.fake.app("busy-app").unwrap().web_running);
    // The log now shows it asleep: its saving runs from the pause.
    let (_, busy) = a
        .call("get", "/admin/v1/apps/busy-app", "/admin/v1/apps/{app}")
        .await;
    assert!(busy["asleep_since_ms"].as_u64().is_some(), "{busy}");
    assert!(busy["container_hours_saved"].as_f64().unwrap() >= 0.0);
    // ...and the next wake restores web=2.
    a.call(
        "post",
        "/admin/v1/apps/busy-app/wake",
        "/admin/v1/apps/{app}/wake",
    )
    .await;
    let (_, list) = a.call("get", "/admin/v1/apps", "/admin/v1/apps").await;
    let shown = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["app"] == "busy-app")
        .unwrap();
    assert_eq!(
        shown["asleep_since_ms"],
        Value::Null,
        "awake again: {shown}"
    );
    assert!(list["saved"]["total_container_hours"].as_f64().unwrap() >= 0.0);
    let busy = a.fake.app("busy-app").unwrap();
    assert!(busy
        .formation
        .iter()
        .any(|(name, amount, _)| name == "web" && *amount == 2));

    // Refusals.
    let (status, body) = a
        .call(
            "post",
            "/admin/v1/apps/ignored-app/pause",
            "/admin/v1/apps/{app}/pause",
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("ignored_app")));
    let (status, _) = a
        .call(
            "post",
            "/admin/v1/apps/nobody-here/pause",
            "/admin/v1/apps/{app}/pause",
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = a
        .call("get", "/admin/v1/apps/nobody-here", "/admin/v1/apps/{app}")
        .await;
    assert_eq!(status, 404);
    let (status, _) = a
        .call("get", "/admin/v1/apps/Bad_Name", "/admin/v1/apps/{app}")
        .await;
    assert_eq!(status, 400);
    let (status, _) = a
        .call(
            "post",
            "/admin/v1/apps/nobody-here/wake",
            "/admin/v1/apps/{app}/wake",
        )
        .await;
    assert_eq!(status, 404);

    // Forget: out of the registry, Scalingo untouched.
    let (status, _) = a
        .call(
            "delete",
            "/admin/v1/apps/shop-front",
            "/admin/v1/apps/{app}",
        )
        .await;
    assert_eq!(status, 204);
    assert!(a
        .gateway
        .waker
        .registry()
        .get("shop-front")
        .await
        .unwrap()
        .is_none());
    assert!(a.fake.app("shop-front").unwrap().web_running);

    // The event log tells the story, newest first.
    let (status, events) = a
        .call("get", "/admin/v1/events?limit=20", "/admin/v1/events")
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["app"].as_str().unwrap(), e["event"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&("shop-front", "forgotten")),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("busy-app", "paused")), "{kinds:?}");
    assert!(kinds.contains(&("shop-api-1", "woken")), "{kinds:?}");
}

//! The fake Scalingo over real HTTP: every behaviour the contract
//! (`shared/scalingo-api.md`) pins down, plus fault injection, counters,
//! the control API and the binary.
//!
//! Timing: boot delays are small and tests poll with a generous deadline;
//! nothing asserts an upper bound on wall-clock time, and nothing sleeps to
//! synchronise: tests wait on conditions, or set a delay far longer than
//! the test (so that the state under test cannot end before it is read).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use paastis_e2e::fake::{
    Endpoint, FakeApp, FakeConfig, FakeScalingo, Fault, FaultKind, ListEntries, RateLimitBody,
    UnknownTypeAnswer, APP_HEADER, ROUTER_MARKER,
};
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

const TOKEN: &str = "tk-us-fake-token";
const FR: &str = "osc-fr1";
const SECNUM: &str = "osc-secnum-fr1";
/// Upper bound for polls: far above any delay used here.
const POLL_DEADLINE: Duration = Duration::from_secs(10);

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// The strict defaults, but with short scale-downs and no front boot window,
/// so that the cycles tested here end within the poll deadline. Both strict
/// defaults have their own tests below (which start from
/// `FakeConfig::default()`).
fn config(boot_ms: u64) -> FakeConfig {
    FakeConfig {
        boot_delay: Duration::from_millis(boot_ms),
        stop_delay: Duration::from_millis(50),
        front_boot_window: Duration::ZERO,
        ..FakeConfig::default()
    }
}

async fn start(boot_ms: u64) -> FakeScalingo {
    FakeScalingo::start(config(boot_ms))
        .await
        .expect("fake starts")
}

fn basic(password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!(":{password}")))
}

async fn exchange(fake: &FakeScalingo) -> String {
    let res = client()
        .post(format!("{}/v1/tokens/exchange", fake.auth_url()))
        .header("Authorization", basic(TOKEN))
        .send()
        .await
        .expect("exchange");
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    body["token"].as_str().expect("token").to_string()
}

fn jwt_payload(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT has three parts");
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url payload");
    serde_json::from_slice(&payload).expect("JSON payload")
}

/// A bearer-authenticated request to a regional API.
async fn api(
    fake: &FakeScalingo,
    region: &str,
    method: Method,
    path: &str,
    jwt: &str,
    body: Option<Value>,
) -> Response {
    let url = format!("{}{path}", fake.api_url(region).expect("region"));
    let mut req = client()
        .request(method, url)
        .bearer_auth(jwt)
        .header("Accept", "application/json");
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("request")
}

async fn get(fake: &FakeScalingo, path: &str, jwt: &str) -> Response {
    api(fake, FR, Method::GET, path, jwt, None).await
}

async fn scale(fake: &FakeScalingo, app: &str, amount: i64, jwt: &str) -> Response {
    let body = json!({ "containers": [{ "name": "web", "amount": amount }] });
    api(
        fake,
        FR,
        Method::POST,
        &format!("/v1/apps/{app}/scale"),
        jwt,
        Some(body),
    )
    .await
}

async fn json_of(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, body)
}

async fn front(fake: &FakeScalingo, region: &str, host: &str, path: &str) -> Response {
    let addr = fake.front_addr(region).expect("front");
    client()
        .get(format!("http://{addr}{path}"))
        .header("Host", host)
        .header("X-Custom", "yes")
        .send()
        .await
        .expect("front request")
}

/// Polls `f` until it returns `Some`, panicking after [`POLL_DEADLINE`].
async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < POLL_DEADLINE,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_iso_ms(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

// ---- auth API -------------------------------------------------------------

#[tokio::test]
async fn exchange_accepts_the_api_token_only() {
    let fake = start(50).await;
    let url = format!("{}/v1/tokens/exchange", fake.auth_url());

    let res = client()
        .post(&url)
        .header("Authorization", basic(TOKEN))
        .json(&json!({}))
        .send()
        .await
        .expect("exchange");
    assert!(res.headers().contains_key("x-request-id"));
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::OK);
    let jwt = body["token"].as_str().expect("token");
    let payload = jwt_payload(jwt);
    let exp = payload["exp"].as_u64().expect("numeric exp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        exp > now + 3000 && exp <= now + 3601,
        "exp about an hour ahead"
    );

    for auth in [
        basic("tk-us-wrong"),
        format!("Basic {}", STANDARD.encode(format!("user:{TOKEN}"))),
        format!("Bearer {TOKEN}"),
    ] {
        let res = client()
            .post(&url)
            .header("Authorization", auth)
            .send()
            .await
            .expect("exchange");
        let (status, body) = json_of(res).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"].is_string());
    }
    let (status, body) = json_of(client().post(&url).send().await.expect("exchange")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    assert_eq!(fake.calls(Endpoint::Exchange), 5);
}

#[tokio::test]
async fn jwt_without_exp_when_configured() {
    let fake = FakeScalingo::start(FakeConfig {
        jwt_without_exp: true,
        ..config(50)
    })
    .await
    .expect("fake starts");
    let jwt = exchange(&fake).await;
    assert!(jwt_payload(&jwt).get("exp").is_none());
    let (status, _) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn regions_list_points_at_the_fake() {
    let fake = start(50).await;
    let url = format!("{}/v1/regions", fake.auth_url());
    let (status, body) = json_of(client().get(&url).send().await.expect("regions")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());

    let jwt = exchange(&fake).await;
    let (status, body) = json_of(
        client()
            .get(&url)
            .bearer_auth(&jwt)
            .send()
            .await
            .expect("regions"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let regions = body["regions"].as_array().expect("regions array");
    assert_eq!(regions.len(), 2);
    for (i, (region, r)) in [FR, SECNUM].iter().zip(regions).enumerate() {
        assert_eq!(r["name"], *region);
        assert_eq!(r["api"], fake.api_url(region).expect("api url").as_str());
        assert_eq!(r["default"], i == 0);
        for key in ["display_name", "dashboard", "database_api", "ssh"] {
            assert!(r[key].is_string(), "{key}");
        }
    }
}

// ---- regional API ---------------------------------------------------------

#[tokio::test]
async fn regional_api_requires_a_valid_bearer() {
    let fake = start(50).await;
    fake.add_app(FakeApp::web("my-app", FR, 1));
    let url = format!("{}/v1/apps", fake.api_url(FR).expect("api"));
    let res = client().get(&url).send().await.expect("apps");
    assert!(res.headers().contains_key("x-request-id"));
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    for bad in ["garbage", "a.b.c", TOKEN] {
        let (status, body) = json_of(get(&fake, "/v1/apps", bad).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(body["error"].is_string());
    }
    let (status, _) = json_of(
        client()
            .get(&url)
            .basic_auth("", Some(TOKEN))
            .send()
            .await
            .expect("apps"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let jwt = fake.mint_token();
    let (status, _) = json_of(get(&fake, "/v1/apps/my-app", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn list_and_get_apps_per_region() {
    let fake = start(50).await;
    fake.add_app(FakeApp::web("front-app", FR, 1).with_type("worker", 2, "L"));
    fake.add_app(FakeApp::web("secret-app", SECNUM, 0));
    fake.add_app(FakeApp::web("fresh-app", FR, 0).undeployed());
    let jwt = exchange(&fake).await;

    let (status, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["fresh-app", "front-app"]);

    let (status, body) = json_of(get(&fake, "/v1/apps/front-app", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    let app = &body["app"];
    assert_eq!(app["name"], "front-app");
    assert_eq!(app["region"], FR);
    assert_eq!(app["status"], "running");
    assert_eq!(app["base_url"], "https://front-app.osc-fr1.scalingo.io");
    assert!(app["url"].is_string());
    assert_eq!(app["force_https"], false);
    assert_eq!(app["sticky_session"], false);
    for key in ["created_at", "updated_at", "last_deployed_at"] {
        assert!(
            is_iso_ms(app[key].as_str().expect(key)),
            "{key}: {}",
            app[key]
        );
    }
    let id = app["id"].as_str().expect("id").to_string();

    let (status, by_id) = json_of(get(&fake, &format!("/v1/apps/{id}"), &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["app"]["name"], "front-app");

    let (status, body) = json_of(get(&fake, "/v1/apps/fresh-app", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["app"]["last_deployed_at"].is_null());
    assert_eq!(body["app"]["status"], "new");

    // An app of another region, and an unknown one, are 404 here.
    for path in [
        "/v1/apps/secret-app",
        "/v1/apps/no-such-app",
        "/v1/apps/secret-app/containers",
    ] {
        let (status, body) = json_of(get(&fake, path, &jwt).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, json!({ "resource": "app", "error": "not found" }));
    }
    let (status, body) = json_of(
        api(
            &fake,
            SECNUM,
            Method::GET,
            "/v1/apps/secret-app",
            &jwt,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["app"]["status"], "stopped");

    let (status, body) = json_of(get(&fake, "/v1/apps/front-app/containers", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "containers": [
            { "name": "web", "amount": 1, "size": "M" },
            { "name": "worker", "amount": 2, "size": "L" },
        ]})
    );

    let (status, body) = json_of(get(&fake, "/v1/apps/front-app/ps", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    let ps = body["containers"].as_array().expect("ps");
    let labels: Vec<&str> = ps.iter().filter_map(|c| c["label"].as_str()).collect();
    assert_eq!(labels, ["web-1", "worker-1", "worker-2"]);
    assert!(ps.iter().all(|c| c["state"] == "running"));
    assert_eq!(ps[2]["type"], "worker");
    assert_eq!(ps[2]["type_index"], 2);
    assert!(is_iso_ms(ps[0]["created_at"].as_str().expect("created_at")));
    assert!(ps[0]["id"].is_string());
}

#[tokio::test]
async fn scale_from_zero_runs_the_whole_cycle() {
    let fake = start(150).await;
    fake.add_app(FakeApp::web("sleepy-app", FR, 0));
    let host = "sleepy-app.osc-fr1.scalingo.io";
    let jwt = exchange(&fake).await;

    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.expect("page").contains("app is stopped"));
    assert_eq!(fake.app("sleepy-app").expect("app").status, "stopped");

    let res = scale(&fake, "sleepy-app", 1, &jwt).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let api_base = fake.api_url(FR).expect("api");
    assert!(
        location.starts_with(&format!("{api_base}/v1/apps/sleepy-app/operations/")),
        "{location}"
    );
    let (_, body) = json_of(res).await;
    assert_eq!(
        body,
        json!({ "containers": [{ "name": "web", "amount": 1, "size": "M" }] })
    );

    // Right after: scaling, the container is booting (or already running).
    let snapshot = fake.app("sleepy-app").expect("app");
    if snapshot.status == "scaling" {
        assert!(!snapshot.web_running);
        assert_eq!(snapshot.containers[0].state, "booting");
    }

    let op_path = location
        .strip_prefix(&api_base)
        .expect("same host")
        .to_string();
    let op = poll("operation done", || async {
        let (status, body) = json_of(get(&fake, &op_path, &jwt).await).await;
        assert_eq!(status, StatusCode::OK);
        let op = body["operation"].clone();
        let s = op["status"].as_str().expect("status");
        assert!(["pending", "running", "done"].contains(&s), "{s}");
        if s != "done" {
            assert!(op["finished_at"].is_null());
        }
        (s == "done").then_some(op)
    })
    .await;
    assert_eq!(op["type"], "scale");
    assert!(op["error"].is_null());
    assert!(is_iso_ms(op["created_at"].as_str().expect("created_at")));
    assert!(is_iso_ms(op["finished_at"].as_str().expect("finished_at")));
    assert_eq!(
        op["app_id"],
        fake.app("sleepy-app").expect("app").id.as_str()
    );

    let (_, ps) = json_of(get(&fake, "/v1/apps/sleepy-app/ps", &jwt).await).await;
    assert_eq!(ps["containers"][0]["label"], "web-1");
    assert_eq!(ps["containers"][0]["state"], "running");
    let (_, app) = json_of(get(&fake, "/v1/apps/sleepy-app", &jwt).await).await;
    assert_eq!(app["app"]["status"], "running");

    let res = front(
        &fake,
        FR,
        "Sleepy-App.osc-fr1.scalingo.io:8080",
        "/hello?x=1",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-fake-app"], "sleepy-app");
    let (_, echo) = json_of(res).await;
    assert_eq!(echo["app"], "sleepy-app");
    assert_eq!(echo["region"], FR);
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/hello");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-custom"], "yes");
    assert_eq!(fake.front_hits("sleepy-app"), 2);
    assert_eq!(fake.scale_calls("sleepy-app"), 1);

    // An unknown operation id is a 404 too.
    let (status, body) =
        json_of(get(&fake, "/v1/apps/sleepy-app/operations/nope", &jwt).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not found");

    // Scale back to zero: stopped, no web container left.
    let res = scale(&fake, "sleepy-app", 0, &jwt).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let snapshot = poll("stopped", || async {
        fake.app("sleepy-app").filter(|a| a.status == "stopped")
    })
    .await;
    assert!(snapshot.containers.is_empty());
    let (_, ps) = json_of(get(&fake, "/v1/apps/sleepy-app/ps", &jwt).await).await;
    assert_eq!(ps, json!({ "containers": [] }));
    assert_eq!(
        front(&fake, FR, host, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn keep_stopped_in_ps_lists_stopped_containers() {
    let fake = FakeScalingo::start(FakeConfig {
        keep_stopped_in_ps: true,
        stop_delay: Duration::from_millis(50),
        ..config(50)
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("awake-app", FR, 2));
    let jwt = exchange(&fake).await;
    assert_eq!(
        scale(&fake, "awake-app", 0, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    poll("stopped", || async {
        fake.app("awake-app").filter(|a| a.status == "stopped")
    })
    .await;
    let (_, ps) = json_of(get(&fake, "/v1/apps/awake-app/ps", &jwt).await).await;
    let states: Vec<&str> = ps["containers"]
        .as_array()
        .expect("ps")
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(states, ["stopped", "stopped"]);
    // Waking replaces them.
    assert_eq!(
        scale(&fake, "awake-app", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    let app = poll("running", || async {
        fake.app("awake-app").filter(|a| a.status == "running")
    })
    .await;
    assert_eq!(app.containers.len(), 1);
    assert_eq!(app.containers[0].state, "running");
}

#[tokio::test]
async fn scale_errors_follow_the_contract() {
    // The 422 variant for an unknown container type (the default, 404, is
    // tested in `not_found_answers_name_the_resource`).
    let fake = FakeScalingo::start(FakeConfig {
        unknown_type: UnknownTypeAnswer::Unprocessable,
        ..config(300)
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("busy-app", FR, 1));
    fake.add_app(FakeApp::web("new-app1", FR, 0).undeployed());
    let jwt = exchange(&fake).await;

    let (status, body) = json_of(scale(&fake, "busy-app", 1, &jwt).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "no change in containers formation" })
    );

    for bad in [
        json!({ "containers": [{ "name": "web", "amount": 11 }] }),
        json!({ "containers": [{ "name": "web", "amount": -1 }] }),
        json!({ "containers": [{ "name": "worker", "amount": 1 }] }),
        json!({ "containers": [{ "name": "web", "amount": 1, "size": "XXXL" }] }),
        json!({ "containers": "web" }),
        json!({}),
    ] {
        let res = api(
            &fake,
            FR,
            Method::POST,
            "/v1/apps/busy-app/scale",
            &jwt,
            Some(bad.clone()),
        )
        .await;
        let (status, body) = json_of(res).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(body["errors"].is_object(), "{bad}: {body}");
    }

    let res = scale(&fake, "busy-app", 2, &jwt).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let app = poll("running", || async {
        fake.app("busy-app").filter(|a| a.status == "running")
    })
    .await;
    assert_eq!(app.running_web, 2);
    assert_eq!(app.formation, vec![("web".to_string(), 2, "M".to_string())]);

    // A scale that cannot finish during the test: the next one is refused,
    // whatever it asks (even the same formation).
    fake.add_app(FakeApp::web("stuck-app", FR, 0));
    fake.set_boot_delay(Duration::from_secs(3600));
    assert_eq!(
        scale(&fake, "stuck-app", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    fake.set_boot_delay(Duration::from_millis(50));
    assert_eq!(fake.app("stuck-app").expect("app").status, "scaling");
    for amount in [1, 3, 0] {
        let (status, body) = json_of(scale(&fake, "stuck-app", amount, &jwt).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body, json!({ "errors": { "app": ["is scaling"] } }));
    }
    let (_, body) = json_of(get(&fake, "/v1/apps/stuck-app", &jwt).await).await;
    assert_eq!(body["app"]["status"], "scaling");
    let (_, ps) = json_of(get(&fake, "/v1/apps/stuck-app/ps", &jwt).await).await;
    assert_eq!(ps["containers"][0]["state"], "booting");

    // Not deployed: 200 with the formation and no Location.
    let res = scale(&fake, "new-app1", 1, &jwt).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("location").is_none());
    let (_, body) = json_of(res).await;
    assert_eq!(
        body,
        json!({ "containers": [{ "name": "web", "amount": 1, "size": "M" }] })
    );
    assert_eq!(fake.app("new-app1").expect("app").status, "new");

    let (status, body) = json_of(scale(&fake, "no-such-app", 1, &jwt).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["resource"], "app");
    assert_eq!(fake.scale_calls("busy-app"), 8);
    assert_eq!(fake.scale_calls("stuck-app"), 4);
}

#[tokio::test]
async fn front_routes_by_host() {
    let fake = start(50).await;
    fake.add_app(FakeApp::web("up-app", FR, 1));
    fake.add_app(FakeApp::web("down-app", FR, 0));
    fake.add_app(FakeApp::web("other-app", SECNUM, 1));

    let res = front(&fake, FR, "up-app.osc-fr1.scalingo.io", "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(
        front(&fake, FR, "down-app.osc-fr1.scalingo.io", "/")
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    for host in [
        "unknown-app.osc-fr1.scalingo.io",
        "other-app.osc-fr1.scalingo.io",
        "up-app.osc-secnum-fr1.scalingo.io",
        "example.com",
    ] {
        let res = front(&fake, FR, host, "/").await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{host}");
        assert!(res.headers().get("x-fake-app").is_none());
    }
    assert_eq!(
        front(&fake, SECNUM, "other-app.osc-secnum-fr1.scalingo.io", "/")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(fake.front_hits("up-app"), 1);
    assert_eq!(fake.front_hits("unknown-app"), 1);
    assert_eq!(fake.front_hits("other-app"), 2);
    assert_eq!(fake.calls(Endpoint::Front), 7);
}

#[tokio::test]
async fn expired_tokens_get_401_until_a_new_exchange() {
    let fake = start(50).await;
    let old = exchange(&fake).await;
    assert_eq!(get(&fake, "/v1/apps", &old).await.status(), StatusCode::OK);
    fake.expire_tokens();
    let (status, body) = json_of(get(&fake, "/v1/apps", &old).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].is_string());
    let new = exchange(&fake).await;
    assert_eq!(get(&fake, "/v1/apps", &new).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn jwt_ttl_is_enforced() {
    let fake = FakeScalingo::start(FakeConfig {
        jwt_ttl: Duration::from_millis(100),
        ..config(50)
    })
    .await
    .expect("fake starts");
    let jwt = exchange(&fake).await;
    poll("token expiry", || async {
        (get(&fake, "/v1/apps", &jwt).await.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

// ---- faults ---------------------------------------------------------------

#[tokio::test]
async fn injected_status_faults() {
    let fake = start(50).await;
    fake.add_app(FakeApp::web("fault-app", FR, 1));
    fake.add_app(FakeApp::web("other-app", FR, 1));
    let jwt = exchange(&fake).await;

    fake.inject(Fault::new(Endpoint::ListApps, FaultKind::Status(429)));
    let (status, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].is_string() && body["code"].is_string());
    // Used up: the next call is normal.
    assert_eq!(get(&fake, "/v1/apps", &jwt).await.status(), StatusCode::OK);

    fake.inject(Fault::new(Endpoint::ListApps, FaultKind::TooManyPlainText));
    let res = get(&fake, "/v1/apps", &jwt).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("x-request-id"));
    assert_eq!(res.text().await.expect("text"), "Retry later");

    // Per app, twice.
    fake.inject(
        Fault::new(Endpoint::GetApp, FaultKind::Status(500))
            .for_app("fault-app")
            .times(2),
    );
    assert_eq!(
        get(&fake, "/v1/apps/other-app", &jwt).await.status(),
        StatusCode::OK
    );
    for _ in 0..2 {
        let (status, body) = json_of(get(&fake, "/v1/apps/fault-app", &jwt).await).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body["error"].is_string());
    }
    assert_eq!(
        get(&fake, "/v1/apps/fault-app", &jwt).await.status(),
        StatusCode::OK
    );

    for (code, key) in [
        (400, "error"),
        (401, "error"),
        (402, "url"),
        (404, "resource"),
        (422, "errors"),
        (503, "error"),
    ] {
        fake.inject(Fault::new(Endpoint::Ps, FaultKind::Status(code)));
        let (status, body) = json_of(get(&fake, "/v1/apps/fault-app/ps", &jwt).await).await;
        assert_eq!(status.as_u16(), code);
        assert!(!body[key].is_null(), "{code}: {body}");
    }

    fake.inject(Fault::new(Endpoint::Scale, FaultKind::IsScaling));
    let (status, body) = json_of(scale(&fake, "fault-app", 2, &jwt).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, json!({ "errors": { "app": ["is scaling"] } }));

    fake.inject(Fault::new(Endpoint::Exchange, FaultKind::Status(503)));
    let res = client()
        .post(format!("{}/v1/tokens/exchange", fake.auth_url()))
        .header("Authorization", basic(TOKEN))
        .send()
        .await
        .expect("exchange");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    fake.inject(Fault::new(Endpoint::Front, FaultKind::Status(502)).times(5));
    assert_eq!(
        front(&fake, FR, "fault-app.osc-fr1.scalingo.io", "/")
            .await
            .status(),
        StatusCode::BAD_GATEWAY
    );
    fake.clear_faults();
    assert_eq!(
        front(&fake, FR, "fault-app.osc-fr1.scalingo.io", "/")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn injected_delay_answers_normally_later() {
    let fake = start(50).await;
    let jwt = exchange(&fake).await;
    let delay = Duration::from_millis(200);
    fake.inject(Fault::new(Endpoint::ListApps, FaultKind::Delay(delay)));
    let started = Instant::now();
    let (status, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    // A lower bound, which a loaded machine cannot break.
    assert!(
        started.elapsed() >= delay,
        "the answer came after the delay"
    );
    assert_eq!(status, StatusCode::OK);
    assert!(body["apps"].is_array());
}

#[tokio::test]
async fn injected_operation_error() {
    let fake = start(50).await;
    fake.add_app(FakeApp::web("crash-app", FR, 0));
    let jwt = exchange(&fake).await;
    // Not used up by a refused scale.
    fake.inject(Fault::new(
        Endpoint::Scale,
        FaultKind::OperationError("container web-1 failed to start".into()),
    ));
    assert_eq!(
        scale(&fake, "crash-app", 0, &jwt).await.status(),
        StatusCode::BAD_REQUEST
    );

    let res = scale(&fake, "crash-app", 1, &jwt).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let op_path = location
        .strip_prefix(&fake.api_url(FR).expect("api"))
        .expect("same host")
        .to_string();
    let op = poll("operation error", || async {
        let (_, body) = json_of(get(&fake, &op_path, &jwt).await).await;
        let op = body["operation"].clone();
        assert_ne!(op["status"], "done");
        (op["status"] == "error").then_some(op)
    })
    .await;
    assert_eq!(op["error"], "container web-1 failed to start");
    assert!(op["finished_at"].is_string());
    let app = fake.app("crash-app").expect("app");
    assert!(!app.web_running);
    assert_ne!(app.status, "running");
    assert_eq!(
        front(&fake, FR, "crash-app.osc-fr1.scalingo.io", "/")
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The fault is used up: a retry wakes the app.
    assert_eq!(
        scale(&fake, "crash-app", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    poll("running", || async {
        fake.app("crash-app").filter(|a| a.web_running)
    })
    .await;
}

// ---- counters, rate limit, control API -----------------------------------

#[tokio::test]
async fn counters_count_every_call() {
    let fake = start(0).await;
    fake.add_app(FakeApp::web("count-app", FR, 0));
    let jwt = exchange(&fake).await;
    get(&fake, "/v1/apps", &jwt).await;
    get(&fake, "/v1/apps", "bad-token").await;
    get(&fake, "/v1/apps/count-app", &jwt).await;
    get(&fake, "/v1/apps/count-app/containers", &jwt).await;
    get(&fake, "/v1/apps/count-app/ps", &jwt).await;
    scale(&fake, "count-app", 1, "bad-token").await;
    let res = scale(&fake, "count-app", 1, &jwt).await;
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    client()
        .get(location)
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("op");
    assert_eq!(fake.calls(Endpoint::Exchange), 1);
    assert_eq!(fake.calls(Endpoint::Regions), 0);
    assert_eq!(fake.calls(Endpoint::ListApps), 2);
    assert_eq!(fake.calls(Endpoint::GetApp), 1);
    assert_eq!(fake.calls(Endpoint::Containers), 1);
    assert_eq!(fake.calls(Endpoint::Ps), 1);
    assert_eq!(fake.calls(Endpoint::Scale), 2);
    assert_eq!(fake.calls(Endpoint::Operation), 1);
    assert_eq!(fake.scale_calls("count-app"), 2);
    assert_eq!(fake.scale_calls("other-app"), 0);
}

#[tokio::test]
async fn call_log_records_every_api_call_in_order() {
    // A limit of 3 calls: the exchange and two reads; the third read is
    // refused, and logged all the same.
    let fake = FakeScalingo::start(FakeConfig {
        rate_limit_per_minute: Some(3),
        ..config(0)
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("log-app", FR, 1));
    let started = Instant::now();
    let jwt = exchange(&fake).await;
    get(&fake, "/v1/apps", &jwt).await;
    get(&fake, "/v1/apps/log-app", &jwt).await;
    let refused = get(&fake, "/v1/apps/log-app/ps", &jwt).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Front-end requests are not API calls.
    front(&fake, FR, "log-app.osc-fr1.scalingo.io", "/").await;

    let log = fake.call_log();
    let seen: Vec<(Endpoint, Option<&str>)> =
        log.iter().map(|r| (r.endpoint, r.app.as_deref())).collect();
    assert_eq!(
        seen,
        vec![
            (Endpoint::Exchange, None),
            (Endpoint::ListApps, None),
            (Endpoint::GetApp, Some("log-app")),
            (Endpoint::Ps, Some("log-app")),
        ]
    );
    assert!(log.iter().all(|r| r.at >= started));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn rate_limit_answers_429_json() {
    // The exchange is one call of the budget: 1 + 5.
    let fake = FakeScalingo::start(FakeConfig {
        rate_limit_per_minute: Some(6),
        rate_limit_body: RateLimitBody::Json,
        ..config(50)
    })
    .await
    .expect("fake starts");
    let jwt = exchange(&fake).await;
    for _ in 0..5 {
        assert_eq!(get(&fake, "/v1/apps", &jwt).await.status(), StatusCode::OK);
    }
    let (status, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].is_string());
    // Per API token, not per JWT: a fresh token does not reset it (the
    // exchange itself would be refused now: mint one).
    let again = fake.mint_token();
    assert_eq!(
        get(&fake, "/v1/apps", &again).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn control_api() {
    let fake = start(50).await;
    let c = client();
    let base = format!("{}/_fake", fake.auth_url());

    let res = c
        .post(format!("{base}/apps"))
        .json(&json!({ "name": "ctl-app", "region": FR, "formation": [{ "name": "web", "amount": 1 }] }))
        .send()
        .await
        .expect("add");
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["app"]["status"], "running");
    let res = c
        .post(format!("{base}/apps"))
        .json(&json!({ "name": "Bad", "region": FR }))
        .send()
        .await
        .expect("add");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let (_, body) = json_of(c.get(format!("{base}/apps")).send().await.expect("apps")).await;
    assert_eq!(body["apps"][0]["name"], "ctl-app");
    assert_eq!(body["apps"][0]["web_running"], true);

    let res = c
        .post(format!("{base}/faults"))
        .json(&json!({ "endpoint": "get_app", "app": "ctl-app", "kind": "status", "status": 500, "times": 2 }))
        .send()
        .await
        .expect("fault");
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = c
        .post(format!("{base}/faults"))
        .json(&json!({ "endpoint": "nope", "kind": "status", "status": 500 }))
        .send()
        .await
        .expect("fault");
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let jwt = exchange(&fake).await;
    assert_eq!(
        get(&fake, "/v1/apps/ctl-app", &jwt).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let (_, body) = json_of(
        c.delete(format!("{base}/faults"))
            .send()
            .await
            .expect("clear"),
    )
    .await;
    assert_eq!(body["cleared"], 1);
    assert_eq!(
        get(&fake, "/v1/apps/ctl-app", &jwt).await.status(),
        StatusCode::OK
    );

    let (_, body) = json_of(
        c.get(format!("{base}/counters"))
            .send()
            .await
            .expect("counters"),
    )
    .await;
    assert_eq!(body["endpoints"]["get_app"], 2);
    assert_eq!(body["endpoints"]["exchange"], 1);

    let res = c
        .put(format!("{base}/boot-delay"))
        .json(&json!({ "ms": 0 }))
        .send()
        .await
        .expect("delay");
    assert_eq!(res.status(), StatusCode::OK);

    let res = c
        .post(format!("{base}/expire-tokens"))
        .send()
        .await
        .expect("expire");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        get(&fake, "/v1/apps", &jwt).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn shutdown_closes_the_listeners() {
    let fake = start(50).await;
    let url = format!("{}/v1/regions", fake.auth_url());
    assert_eq!(
        client().get(&url).send().await.expect("up").status(),
        StatusCode::UNAUTHORIZED
    );
    fake.shutdown().await;
    assert!(client().get(&url).send().await.is_err());
}

// ---- the binary -----------------------------------------------------------

#[tokio::test]
async fn binary_prints_its_addresses_and_serves() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    let dir = tempfile::tempdir().expect("tempdir");
    let apps = dir.path().join("apps.json");
    std::fs::write(
        &apps,
        json!([{ "name": "demo-app", "region": FR, "formation": [{ "name": "web", "amount": 0, "size": "S" }] }]).to_string(),
    )
    .expect("write apps");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-scalingo"))
        .args(["--token", "tk-us-demo", "--boot-delay-ms", "20", "--apps"])
        .arg(&apps)
        .args(["--rate-limit-body", "json", "--router-status", "504"])
        .args(["--list-entries", "full", "--front-boot-window-ms", "0"])
        .env("FAKE_SCALINGO_RATE_LIMIT", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fake-scalingo");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("first line");
    let info: Value = serde_json::from_str(&line).expect("JSON line");
    let auth_url = info["auth_url"].as_str().expect("auth_url");
    let api_url = info["api"][FR].as_str().expect("api url");
    assert!(info["front"][SECNUM].is_string());
    assert_eq!(info["regions"], json!([FR, SECNUM]));

    let c = client();
    let (_, body) = json_of(
        c.post(format!("{auth_url}/v1/tokens/exchange"))
            .header("Authorization", basic("tk-us-demo"))
            .send()
            .await
            .expect("exchange"),
    )
    .await;
    let jwt = body["token"].as_str().expect("token");
    let (status, body) = json_of(
        c.get(format!("{api_url}/v1/apps/demo-app/containers"))
            .bearer_auth(jwt)
            .send()
            .await
            .expect("containers"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "containers": [{ "name": "web", "amount": 0, "size": "S" }] })
    );
    let (status, knobs) = json_of(
        c.get(format!("{auth_url}/_fake/knobs"))
            .send()
            .await
            .expect("knobs"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(knobs["rate_limit_per_minute"], Value::Null);
    assert_eq!(knobs["rate_limit_body"], "json");
    assert_eq!(knobs["router_status"], 504);
    assert_eq!(knobs["list_entries"], "full");
    assert_eq!(knobs["front_boot_window_ms"], 0);
    assert_eq!(knobs["stop_delay_ms"], 30_000);

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(POLL_DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn binary_rejects_bad_flags() {
    for args in [
        &["--nope"][..],
        &["--boot-delay-ms", "soon"],
        &["--api", "osc-fr1"],
        &["--token"],
        &["--router-status", "500"],
        &["--list-entries", "some"],
        &["--rate-limit-body", "xml"],
        &["--rate-limit", "0"],
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-scalingo"))
            .args(args)
            .output()
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty());
        assert!(out.stdout.is_empty());
    }
}

// ---- strict by default ------------------------------------------------------

/// A fake with every strict default, apps booting in `boot_ms`.
async fn strict(boot_ms: u64) -> FakeScalingo {
    FakeScalingo::start(FakeConfig {
        boot_delay: Duration::from_millis(boot_ms),
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts")
}

async fn knobs(fake: &FakeScalingo, change: Value) -> (StatusCode, Value) {
    json_of(
        client()
            .put(format!("{}/_fake/knobs", fake.auth_url()))
            .json(&change)
            .send()
            .await
            .expect("knobs"),
    )
    .await
}

#[test]
fn defaults_are_at_least_as_strict_as_the_real_platform() {
    let c = FakeConfig::default();
    assert_eq!(c.rate_limit_per_minute, Some(60));
    assert_eq!(c.rate_limit_body, RateLimitBody::PlainText);
    assert_eq!(c.rate_limit_retry_after, None);
    assert_eq!(c.stop_delay, Duration::from_secs(30));
    assert_eq!(c.crashed_after, 12);
    assert_eq!(c.boot_retries, 20);
    assert_eq!(c.router_status, 503);
    assert!(c.front_boot_window > Duration::ZERO);
    assert_eq!(c.list_entries, ListEntries::SomeSparse);
    assert_eq!(c.unknown_type, UnknownTypeAnswer::NotFound);
}

#[tokio::test]
async fn rate_limit_is_60_a_minute_per_token_in_plain_text_by_default() {
    let fake = strict(50).await;
    fake.add_app(FakeApp::web("count-me", FR, 1));
    // 1 exchange + 1 regions + 58 regional calls (spread over endpoints and
    // regions) = 60.
    let jwt = exchange(&fake).await;
    let res = client()
        .get(format!("{}/v1/regions", fake.auth_url()))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("regions");
    assert_eq!(res.status(), StatusCode::OK);
    for i in 0..58 {
        let res = match i % 3 {
            0 => get(&fake, "/v1/apps/count-me/ps", &jwt).await,
            1 => api(&fake, SECNUM, Method::GET, "/v1/apps", &jwt, None).await,
            _ => get(&fake, "/v1/apps/count-me", &jwt).await,
        };
        assert_eq!(res.status(), StatusCode::OK, "call {i}");
    }
    let res = get(&fake, "/v1/apps", &jwt).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_none());
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    assert_eq!(res.text().await.expect("text"), "Retry later");
    // The auth API's calls draw from the same budget.
    let res = client()
        .post(format!("{}/v1/tokens/exchange", fake.auth_url()))
        .header("Authorization", basic(TOKEN))
        .send()
        .await
        .expect("exchange");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = client()
        .get(format!("{}/v1/regions", fake.auth_url()))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("regions");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(fake.rate_limited(Endpoint::ListApps), 1);
    assert_eq!(fake.rate_limited(Endpoint::Exchange), 1);
    assert_eq!(fake.rate_limited(Endpoint::Regions), 1);
    assert_eq!(fake.rate_limited_total(), 3);
    // Counted calls include the refused ones.
    assert_eq!(fake.calls(Endpoint::ListApps), 1 + 19);
    let (_, counters) = json_of(
        client()
            .get(format!("{}/_fake/counters", fake.auth_url()))
            .send()
            .await
            .expect("counters"),
    )
    .await;
    assert_eq!(counters["rate_limited"]["list_apps"], 1);
    assert_eq!(counters["rate_limited_total"], 3);
}

#[tokio::test]
async fn rate_limit_knobs_change_the_budget_body_and_retry_after() {
    let fake = strict(50).await;
    let (status, body) = knobs(
        &fake,
        json!({ "rate_limit_per_minute": 2, "rate_limit_body": "json", "retry_after_s": 7 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rate_limit_per_minute"], 2);
    let jwt = exchange(&fake).await;
    assert_eq!(get(&fake, "/v1/apps", &jwt).await.status(), StatusCode::OK);
    let res = get(&fake, "/v1/apps", &jwt).await;
    assert_eq!(res.headers()["retry-after"], "7");
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].is_string() && body["code"].is_string());
    // A bad knob changes nothing.
    let (status, _) = knobs(
        &fake,
        json!({ "rate_limit_per_minute": null, "router_status": 500 }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        get(&fake, "/v1/apps", &jwt).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Kinder: no limit at all.
    fake.set_rate_limit(None);
    assert_eq!(get(&fake, "/v1/apps", &jwt).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_crash_looping_app_keeps_its_operation_running_and_reads_crashed() {
    // Short boots and back-offs so that the loop turns quickly; an unlimited
    // budget because the test polls.
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: Duration::from_millis(20),
        crash_backoff: Duration::from_millis(5),
        crash_backoff_max: Duration::from_millis(20),
        crashed_after: 3,
        boot_retries: 100_000,
        rate_limit_per_minute: None,
        ..FakeConfig::default()
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("broken-app", FR, 0).crash_on_boot());
    let jwt = exchange(&fake).await;
    let res = scale(&fake, "broken-app", 1, &jwt).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let op_path = location
        .strip_prefix(&fake.api_url(FR).expect("api"))
        .expect("same host")
        .to_string();
    poll("crashed", || async {
        fake.app("broken-app").filter(|a| a.status == "crashed")
    })
    .await;
    // 100 000 retries are far from done: the operation still runs.
    let (_, body) = json_of(get(&fake, &op_path, &jwt).await).await;
    assert_eq!(body["operation"]["status"], "running");
    assert!(body["operation"]["error"].is_null());
    let (_, app) = json_of(get(&fake, "/v1/apps/broken-app", &jwt).await).await;
    assert_eq!(app["app"]["status"], "crashed");
    let (_, ps) = json_of(get(&fake, "/v1/apps/broken-app/ps", &jwt).await).await;
    let state = ps["containers"][0]["state"].as_str().expect("state");
    assert!(["booting", "crashed"].contains(&state), "{state}");
    let (status, body) = json_of(scale(&fake, "broken-app", 1, &jwt).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body, json!({ "errors": { "app": ["is scaling"] } }));
    let res = front(&fake, FR, "broken-app.osc-fr1.scalingo.io", "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(APP_HEADER).is_none());
    assert!(res.text().await.expect("page").contains(ROUTER_MARKER));
    // Both ps states are seen while it loops.
    for wanted in ["booting", "crashed"] {
        poll(wanted, || async {
            fake.app("broken-app")
                .filter(|a| a.containers.first().is_some_and(|c| c.state == wanted))
        })
        .await;
    }

    // With few retries, the operation ends in `error` and the app stays
    // crashed with nothing running.
    let (status, _) = knobs(&fake, json!({ "boot_retries": 2, "crashed_after": 12 })).await;
    assert_eq!(status, StatusCode::OK);
    fake.add_app(FakeApp::web("short-loop", FR, 0));
    assert!(fake.set_crash_on_boot("short-loop", true));
    let res = scale(&fake, "short-loop", 1, &jwt).await;
    let location = res.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let op_path = location
        .strip_prefix(&fake.api_url(FR).expect("api"))
        .expect("same host")
        .to_string();
    let op = poll("operation error", || async {
        let (_, body) = json_of(get(&fake, &op_path, &jwt).await).await;
        let op = body["operation"].clone();
        assert_ne!(op["status"], "done");
        (op["status"] == "error").then_some(op)
    })
    .await;
    assert_eq!(op["error"], "container web-1 failed to boot");
    let app = fake.app("short-loop").expect("app");
    assert_eq!(app.status, "crashed");
    assert!(!app.web_running);
    assert!(app.crash_on_boot);
}

#[tokio::test]
async fn a_scale_down_takes_the_stop_delay_and_refuses_scales_meanwhile() {
    // The default stop delay (30 s) is far longer than the reads below.
    let fake = strict(50).await;
    fake.add_app(FakeApp::web("slow-stop", FR, 2));
    let jwt = exchange(&fake).await;
    assert_eq!(
        scale(&fake, "slow-stop", 0, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    let (_, app) = json_of(get(&fake, "/v1/apps/slow-stop", &jwt).await).await;
    assert_eq!(app["app"]["status"], "scaling");
    let (_, ps) = json_of(get(&fake, "/v1/apps/slow-stop/ps", &jwt).await).await;
    let states: Vec<&str> = ps["containers"]
        .as_array()
        .expect("ps")
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(states, ["stopping", "stopping"]);
    for amount in [1, 2, 0] {
        let (status, body) = json_of(scale(&fake, "slow-stop", amount, &jwt).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body, json!({ "errors": { "app": ["is scaling"] } }));
    }
    // A shorter stop delay (knob) ends in `stopped`.
    fake.set_stop_delay(Duration::from_millis(30));
    fake.add_app(FakeApp::web("fast-stop", FR, 1));
    assert_eq!(
        scale(&fake, "fast-stop", 0, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    poll("stopped", || async {
        fake.app("fast-stop").filter(|a| a.status == "stopped")
    })
    .await;
    assert_eq!(fake.app("slow-stop").expect("app").status, "scaling");
}

#[tokio::test]
async fn autoscalers_are_listed_patched_and_disabled_by_a_manual_scale() {
    let fake = strict(50).await;
    fake.add_app(FakeApp::web("auto-app", FR, 2).with_autoscaler("web", 1, 4));
    let jwt = exchange(&fake).await;
    let (status, body) = json_of(get(&fake, "/v1/apps/auto-app/autoscalers", &jwt).await).await;
    assert_eq!(status, StatusCode::OK);
    let a = &body["autoscalers"][0];
    assert_eq!(a["container_type"], "web");
    assert_eq!(a["min_containers"], 1);
    assert_eq!(a["max_containers"], 4);
    assert_eq!(a["disabled"], false);
    assert_eq!(a["app_id"], fake.app("auto-app").expect("app").id.as_str());
    assert!(a["metric"].is_string() && a["target"].is_number());
    let id = a["id"].as_str().expect("id").to_string();

    // A manual scale turns it off.
    assert_eq!(
        scale(&fake, "auto-app", 3, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    let (_, body) = json_of(get(&fake, "/v1/apps/auto-app/autoscalers", &jwt).await).await;
    assert_eq!(body["autoscalers"][0]["disabled"], true);
    assert!(fake.app("auto-app").expect("app").autoscalers[0].disabled);

    // PATCH turns it back on.
    let path = format!("/v1/apps/auto-app/autoscalers/{id}");
    let body = json!({ "autoscaler": { "disabled": false } });
    let (status, body) =
        json_of(api(&fake, FR, Method::PATCH, &path, &jwt, Some(body)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["autoscaler"]["disabled"], false);
    assert!(!fake.app("auto-app").expect("app").autoscalers[0].disabled);
    let body = json!({ "autoscaler": { "disabled": false } });
    let (status, body) = json_of(
        api(
            &fake,
            FR,
            Method::PATCH,
            "/v1/apps/auto-app/autoscalers/nope",
            &jwt,
            Some(body),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["resource"], "autoscaler");
    assert_eq!(fake.calls(Endpoint::Autoscalers), 2);
    assert_eq!(fake.calls(Endpoint::UpdateAutoscaler), 2);

    // Through the control API too.
    let res = client()
        .post(format!("{}/_fake/apps", fake.auth_url()))
        .json(&json!({ "name": "ctl-auto", "region": FR,
            "formation": [{ "name": "web", "amount": 1 }],
            "autoscalers": [{ "container_type": "web", "min_containers": 1, "max_containers": 3 }] }))
        .send()
        .await
        .expect("add");
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["app"]["autoscalers"][0]["disabled"], false);
}

#[tokio::test]
async fn collaborations_are_listed_and_scaled_like_owned_apps() {
    let fake = FakeScalingo::start(FakeConfig {
        list_entries: ListEntries::Full,
        ..config(50)
    })
    .await
    .expect("fake starts");
    fake.add_app(FakeApp::web("mine-app", FR, 1));
    fake.add_app(FakeApp::web("theirs-app", FR, 1).owned_by("alice"));
    let jwt = exchange(&fake).await;
    let (_, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    let owners: Vec<&str> = body["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["owner"]["username"].as_str())
        .collect();
    assert_eq!(owners, ["fake-owner", "alice"]);
    assert_eq!(
        fake.app("theirs-app").expect("app").owner.as_deref(),
        Some("alice")
    );
    assert_eq!(
        scale(&fake, "theirs-app", 0, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn list_entries_lack_optional_fields_by_default() {
    let fake = strict(50).await;
    for name in ["list-app-a", "list-app-b", "list-app-c"] {
        fake.add_app(FakeApp::web(name, FR, 1));
    }
    let jwt = exchange(&fake).await;
    let keys = |entry: &Value| -> Vec<String> {
        let mut k: Vec<String> = entry.as_object().expect("entry").keys().cloned().collect();
        k.sort();
        k
    };
    let (_, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    let apps = body["apps"].as_array().expect("apps");
    assert_eq!(keys(&apps[0]), ["id", "name"]);
    assert!(apps[1]["status"].is_string() && apps[1]["url"].is_string());
    assert_eq!(keys(&apps[2]), ["id", "name"]);
    // The single-app answer always has every field.
    let (_, body) = json_of(get(&fake, "/v1/apps/list-app-a", &jwt).await).await;
    assert_eq!(body["app"]["status"], "running");

    fake.set_list_entries(ListEntries::Full);
    let (_, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert!(body["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .all(|a| a["status"] == "running"));
    fake.set_list_entries(ListEntries::AllSparse);
    let (_, body) = json_of(get(&fake, "/v1/apps", &jwt).await).await;
    assert!(body["apps"]
        .as_array()
        .expect("apps")
        .iter()
        .all(|a| keys(a) == ["id", "name"]));
}

#[tokio::test]
async fn not_found_answers_name_the_resource() {
    let fake = strict(50).await;
    fake.add_app(FakeApp::web("known-app", FR, 1));
    let jwt = exchange(&fake).await;
    for path in [
        "/v1/apps/no-such-app",
        "/v1/apps/no-such-app/ps",
        "/v1/apps/no-such-app/containers",
        "/v1/apps/no-such-app/autoscalers",
        "/v1/apps/no-such-app/operations/x",
    ] {
        let (status, body) = json_of(get(&fake, path, &jwt).await).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["resource"], "app", "{path}");
    }
    let (status, body) = json_of(scale(&fake, "no-such-app", 1, &jwt).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["resource"], "app");
    let worker = json!({ "containers": [{ "name": "worker", "amount": 1 }] });
    let path = "/v1/apps/known-app/scale";
    let (status, body) =
        json_of(api(&fake, FR, Method::POST, path, &jwt, Some(worker.clone())).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "resource": "container_type", "error": "not found" })
    );
    let (status, _) = knobs(&fake, json!({ "unknown_type": "unprocessable" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        json_of(api(&fake, FR, Method::POST, path, &jwt, Some(worker)).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["errors"].is_object());
}

// ---- the app's front --------------------------------------------------------

#[tokio::test]
async fn the_front_answers_the_router_error_until_the_boot_window_ends() {
    let fake = strict(30).await;
    fake.add_app(FakeApp::web("window-app", FR, 0));
    fake.add_app(FakeApp::web("quick-app1", FR, 0));
    let jwt = exchange(&fake).await;
    let host = "window-app.osc-fr1.scalingo.io";
    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(APP_HEADER).is_none());
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    let page = res.text().await.expect("page");
    assert!(page.contains(ROUTER_MARKER) && page.contains("app is stopped"));

    // A window far longer than the test: `ps` reads running, the router
    // still answers.
    fake.set_front_boot_window(Duration::from_secs(3600));
    assert_eq!(
        scale(&fake, "window-app", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    let booting = front(&fake, FR, host, "/").await;
    assert_eq!(booting.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(booting
        .text()
        .await
        .expect("page")
        .contains("app is booting"));
    poll("running", || async {
        fake.app("window-app").filter(|a| a.status == "running")
    })
    .await;
    let (_, ps) = json_of(get(&fake, "/v1/apps/window-app/ps", &jwt).await).await;
    assert_eq!(ps["containers"][0]["state"], "running");
    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(APP_HEADER).is_none());
    assert!(!fake.app("window-app").expect("app").front_serves_app);

    // A short window: the app answers once it is over, with the header.
    fake.set_front_boot_window(Duration::from_millis(50));
    assert_eq!(
        scale(&fake, "quick-app1", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    let res = poll("the app answers", || async {
        let res = front(&fake, FR, "quick-app1.osc-fr1.scalingo.io", "/").await;
        (res.status() == StatusCode::OK).then_some(res)
    })
    .await;
    assert_eq!(res.headers()[APP_HEADER], "quick-app1");
    assert!(fake.app("quick-app1").expect("app").front_serves_app);

    // The router's status is a knob.
    for status in [502, 504] {
        fake.set_router_status(status);
        let res = front(&fake, FR, host, "/").await;
        assert_eq!(res.status().as_u16(), status);
        assert!(res.text().await.expect("page").contains(ROUTER_MARKER));
    }
}

#[tokio::test]
async fn open_front_lets_a_held_app_serve_at_once() {
    let fake = strict(30).await;
    fake.add_app(FakeApp::web("held-app1", FR, 0));
    fake.add_app(FakeApp::web("held-app2", FR, 0));
    let jwt = exchange(&fake).await;
    fake.set_front_boot_window(Duration::from_secs(3600));

    // Held: running in `ps`, the router answers, until the test opens it.
    assert_eq!(
        scale(&fake, "held-app1", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    poll("running", || async {
        fake.app("held-app1").filter(|a| a.status == "running")
    })
    .await;
    let host = "held-app1.osc-fr1.scalingo.io";
    assert_eq!(
        front(&fake, FR, host, "/").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(fake.open_front("held-app1"));
    assert!(fake.app("held-app1").expect("app").front_serves_app);
    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[APP_HEADER], "held-app1");

    // Opened while still booting: it serves as soon as it runs.
    fake.set_boot_delay(Duration::from_millis(200));
    assert_eq!(
        scale(&fake, "held-app2", 1, &jwt).await.status(),
        StatusCode::ACCEPTED
    );
    assert!(fake.open_front("held-app2"));
    poll("served once running", || async {
        fake.app("held-app2")
            .filter(|a| a.status == "running" && a.front_serves_app)
    })
    .await;
    assert!(!fake.open_front("nobody-here"));
}

#[tokio::test]
async fn apps_can_be_stopped_or_crashed_behind_the_clients_back() {
    let fake = strict(30).await;
    fake.add_app(FakeApp::web("victim-app", FR, 2).with_autoscaler("web", 1, 3));
    fake.add_app(FakeApp::web("crashy-app", FR, 1));
    fake.add_app(FakeApp::web("remote-app", FR, 1));
    let host = "victim-app.osc-fr1.scalingo.io";
    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[APP_HEADER], "victim-app");

    assert!(fake.stop_app("victim-app"));
    let app = fake.app("victim-app").expect("app");
    assert_eq!(app.status, "stopped");
    assert!(app.containers.is_empty());
    assert_eq!(app.formation[0].1, 0);
    assert!(app.autoscalers[0].disabled);
    let res = front(&fake, FR, host, "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.expect("page").contains("app is stopped"));

    assert!(fake.crash_app("crashy-app"));
    let app = fake.app("crashy-app").expect("app");
    assert_eq!(app.status, "crashed");
    assert_eq!(app.containers[0].state, "crashed");
    let res = front(&fake, FR, "crashy-app.osc-fr1.scalingo.io", "/").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.expect("page").contains("app is crashed"));
    assert!(!fake.stop_app("no-such-app"));

    // Through the control API.
    let c = client();
    let base = format!("{}/_fake/apps", fake.auth_url());
    let (status, body) = json_of(
        c.post(format!("{base}/remote-app/stop"))
            .send()
            .await
            .expect("stop"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["app"]["status"], "stopped");
    let (status, body) = json_of(
        c.post(format!("{base}/remote-app/crash"))
            .send()
            .await
            .expect("crash"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["app"]["status"], "crashed");
    let (status, body) = json_of(
        c.put(format!("{base}/remote-app/crash-on-boot"))
            .json(&json!({ "crash": true }))
            .send()
            .await
            .expect("crash-on-boot"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["app"]["crash_on_boot"], true);
    let res = c
        .post(format!("{base}/no-such-app/stop"))
        .send()
        .await
        .expect("stop");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_front_streams_answers() {
    let fake = strict(30).await;
    fake.add_app(FakeApp::web("stream-app", FR, 1));
    let host = "stream-app.osc-fr1.scalingo.io";
    let res = front(&fake, FR, host, "/stream?chunks=5&interval_ms=20").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[APP_HEADER], "stream-app");
    let mut res = res;
    let mut pieces = 0;
    let mut text = Vec::new();
    while let Some(chunk) = res.chunk().await.expect("chunk") {
        text.extend_from_slice(&chunk);
        pieces += 1;
    }
    assert!(pieces >= 1);
    assert_eq!(
        String::from_utf8(text).expect("utf-8"),
        "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"
    );
    let res = front(&fake, FR, host, "/stream?chunks=lots").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_front_echoes_websocket_messages() {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::Message;

    let fake = strict(30).await;
    fake.add_app(FakeApp::web("socket-app", FR, 1));
    fake.add_app(FakeApp::web("closed-app", FR, 0));
    let addr = fake.front_addr(FR).expect("front");
    let request = |app: &str| {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "host",
            format!("{app}.osc-fr1.scalingo.io").parse().expect("host"),
        );
        req
    };
    let (mut ws, res) = tokio_tungstenite::connect_async(request("socket-app"))
        .await
        .expect("upgrade");
    assert_eq!(res.headers()[APP_HEADER], "socket-app");
    ws.send(Message::text("hello")).await.expect("send");
    let bytes: Vec<u8> = (0..=255).collect();
    ws.send(Message::binary(bytes.clone())).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("frame"),
        Message::text("hello")
    );
    assert_eq!(
        ws.next().await.expect("echo").expect("frame"),
        Message::binary(bytes)
    );
    ws.close(None).await.expect("close");

    // No upgrade through the router's error.
    match tokio_tungstenite::connect_async(request("closed-app")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 503);
        }
        other => panic!("expected the router's 503, got {other:?}"),
    }
}

#[tokio::test]
async fn the_front_digests_bodies_of_any_size() {
    use sha2::{Digest as _, Sha256};

    let fake = strict(30).await;
    fake.add_app(FakeApp::web("upload-app", FR, 1));
    let addr = fake.front_addr(FR).expect("front");
    let post = |body: Vec<u8>| {
        client()
            .post(format!("http://{addr}/upload"))
            .header("Host", "upload-app.osc-fr1.scalingo.io")
            .body(body)
            .send()
    };
    // 20 MiB + 1 of bytes that are not UTF-8.
    let big: Vec<u8> = (0..(20 << 20) + 1)
        .map(|i: u32| (i % 251) as u8 | 0x80)
        .collect();
    let digest: String = Sha256::digest(&big)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, echo) = json_of(post(big.clone()).await.expect("upload")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["body_len"], big.len() as u64);
    assert_eq!(echo["body_sha256"], digest.as_str());
    assert_eq!(echo["body"], Value::Null);

    let (_, echo) = json_of(post(b"hello".to_vec()).await.expect("small")).await;
    assert_eq!(echo["body"], "hello");
    assert_eq!(echo["body_len"], 5);
    // Invalid UTF-8 is never decoded lossily.
    let (_, echo) = json_of(post(vec![0xff, 0xfe]).await.expect("bytes")).await;
    assert_eq!(echo["body"], Value::Null);
    assert_eq!(echo["body_len"], 2);
}

#[tokio::test]
async fn binary_lenient_is_the_base_other_flags_apply_to() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-scalingo"))
        .args(["--rate-limit", "5", "--lenient"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fake-scalingo");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("first line");
    let info: Value = serde_json::from_str(&line).expect("JSON line");
    let control = info["control_url"].as_str().expect("control_url");
    let (_, knobs) = json_of(
        client()
            .get(format!("{control}/knobs"))
            .send()
            .await
            .expect("knobs"),
    )
    .await;
    assert_eq!(knobs["rate_limit_per_minute"], 5);
    assert_eq!(knobs["stop_delay_ms"], 0);
    assert_eq!(knobs["list_entries"], "full");
    assert_eq!(knobs["front_boot_window_ms"], 0);
    assert_eq!(knobs["unknown_type"], "unprocessable");
    let lenient = FakeConfig::lenient();
    assert_eq!(lenient.rate_limit_per_minute, None);
    assert_eq!(lenient.router_status, 503);
    child.kill().await.expect("kill");
}

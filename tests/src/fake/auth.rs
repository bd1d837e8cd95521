//! The auth API (`https://auth.scalingo.com`) and the fake's control API.
//!
//! - `POST /v1/tokens/exchange`: Basic auth with an EMPTY user name and the
//!   API token as password -> 200 `{"token": JWT}`, else 401 `{"error"}`.
//! - `GET /v1/regions` (bearer JWT) -> `{"regions":[..]}` whose `api` is the
//!   fake's own regional listener for each region.
//!
//! Both draw from the API token's rate-limit budget (a successful exchange
//! and an authenticated `/v1/regions` call count, as regional calls do).
//!
//! Control API, no auth (the fake listens on loopback only), JSON in/out:
//! - `GET /_fake/apps` -> `{"apps":[snapshot..]}`
//! - `POST /_fake/apps` `{"name","region","formation":[{"name","amount","size"?}],"deployed"?}`
//!   -> 201 `{"app":snapshot}` or 422 `{"errors":{"app":[msg]}}`
//! - `GET /_fake/counters` -> `{"endpoints":{name:n},"rate_limited":{name:n},"rate_limited_total":n,"scale_calls":{app:n},"front_hits":{app:n}}`
//! - `POST /_fake/faults` `{"endpoint":"scale","app"?:"x","times"?:1,"kind":"status","status":500}`
//!   (kinds: `status`+`status`, `too_many_plain_text`, `is_scaling`,
//!   `app_busy`+`message`, `delay`+`ms`, `operation_error`+`message`)
//!   -> 201 `{"active_faults":n}`
//! - `DELETE /_fake/faults` -> `{"cleared":n}`
//! - `POST /_fake/expire-tokens` -> `{"expired":n}`
//! - `PUT /_fake/boot-delay` `{"ms":N}` -> `{"boot_delay_ms":N}`
//! - `GET /_fake/knobs` -> the live knobs; `PUT /_fake/knobs` with any of
//!   `{"rate_limit_per_minute":N|null,"rate_limit_body":"plain"|"json",
//!   "retry_after_s":N|null,"boot_delay_ms","stop_delay_ms",
//!   "keep_stopped_in_ps":bool,"list_entries":"full"|"some-sparse"|"all-sparse",
//!   "unknown_type":"not-found"|"unprocessable","crashed_after","boot_retries",
//!   "crash_backoff_ms","crash_backoff_max_ms","router_status":502|503|504,
//!   "front_boot_window_ms"}` -> the knobs after the change (422 on a bad
//!   field, and then nothing changes)
//! - `POST /_fake/apps/{name}/stop` and `POST /_fake/apps/{name}/crash`: stop
//!   or crash the app behind the clients' back -> `{"app":snapshot}` (404 if
//!   unknown)
//! - `PUT /_fake/apps/{name}/crash-on-boot` `{"crash":bool}` -> `{"app":snapshot}`

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::http::rate_limited;
use super::http::{
    bad_method, bearer, error, fault_response, json_response, no_route, ok, unprocessable,
};
use super::model::{Endpoint, FakeApp, Fault, FaultKind};
use super::model::{ListEntries, RateLimitBody, UnknownTypeAnswer};
use super::state::{Knobs, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/tokens/exchange", post(exchange))
        .route("/v1/regions", get(regions))
        .route("/_fake/apps", get(control_apps).post(control_add_app))
        .route("/_fake/counters", get(control_counters))
        .route(
            "/_fake/faults",
            post(control_add_fault).delete(control_clear_faults),
        )
        .route("/_fake/expire-tokens", post(control_expire))
        .route("/_fake/boot-delay", put(control_boot_delay))
        .route("/_fake/knobs", get(control_knobs).put(control_set_knobs))
        .route("/_fake/apps/{name}/stop", post(control_stop))
        .route("/_fake/apps/{name}/crash", post(control_crash))
        .route(
            "/_fake/apps/{name}/crash-on-boot",
            put(control_crash_on_boot),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(bad_method)
        .with_state(shared)
}

/// Counts the call and applies an injected fault; `Err` is the answer.
async fn count_and_fault(shared: &Shared, endpoint: Endpoint) -> Result<(), Response> {
    let fault = {
        let mut inner = shared.lock();
        inner.count(endpoint);
        inner.take_fault(endpoint, None)
    };
    match fault {
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
        Some(kind) => fault_response(&kind).map_or(Ok(()), Err),
        None => Ok(()),
    }
}

/// The password of a Basic `Authorization` whose user name is empty.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    user.is_empty().then(|| password.to_string())
}

async fn exchange(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(res) = count_and_fault(&shared, Endpoint::Exchange).await {
        return res;
    }
    match basic_password(&headers) {
        Some(password) if password == shared.config.api_token => {
            let config = &shared.config;
            let mut inner = shared.lock();
            if !inner.rate_allow(&password, Endpoint::Exchange) {
                return rate_limited(&inner.knobs);
            }
            let token = inner.issue_token(&password, config.jwt_ttl, !config.jwt_without_exp);
            ok(json!({ "token": token }))
        }
        Some(_) => error(StatusCode::UNAUTHORIZED, "invalid or revoked API token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "missing Basic authorization with an empty user and the API token as password",
        ),
    }
}

fn display_name(region: &str) -> String {
    match region {
        "osc-fr1" => "Paris - Outscale".to_string(),
        "osc-secnum-fr1" => "Paris - SecNumCloud - Outscale".to_string(),
        other => format!("Fake region {other}"),
    }
}

async fn regions(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(res) = count_and_fault(&shared, Endpoint::Regions).await {
        return res;
    }
    let Some(jwt) = bearer(&headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "not authenticated: missing bearer token",
        );
    };
    {
        let mut inner = shared.lock();
        let owner = match inner.check_bearer(jwt) {
            Ok(owner) => owner,
            Err(reason) => return error(StatusCode::UNAUTHORIZED, reason),
        };
        if !inner.rate_allow(&owner, Endpoint::Regions) {
            return rate_limited(&inner.knobs);
        }
    }
    let regions: Vec<Value> = shared
        .api_urls
        .iter()
        .enumerate()
        .map(|(i, (name, api))| {
            json!({
                "name": name,
                "display_name": display_name(name),
                "api": api,
                "dashboard": "https://dashboard.scalingo.com",
                "database_api": format!("https://db-api.{name}.scalingo.com"),
                "ssh": format!("ssh.{name}.scalingo.com:22"),
                "default": i == 0,
            })
        })
        .collect();
    ok(json!({ "regions": regions }))
}

async fn control_apps(State(shared): State<Arc<Shared>>) -> Response {
    let apps: Vec<Value> = shared
        .lock()
        .snapshots()
        .iter()
        .map(|a| a.to_json())
        .collect();
    ok(json!({ "apps": apps }))
}

async fn control_add_app(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let app: FakeApp = match serde_json::from_slice(&body) {
        Ok(app) => app,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid app JSON: {e}")),
    };
    let added = shared.lock().add_app(&shared.config.regions, app);
    match added {
        Ok(snapshot) => json_response(StatusCode::CREATED, json!({ "app": snapshot.to_json() })),
        Err(e) => unprocessable(json!({ "app": [e.to_string()] })),
    }
}

async fn control_counters(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.lock().counters_json();
    ok(body)
}

/// Parses the control API's fault JSON.
fn parse_fault(v: &Value) -> Result<Fault, String> {
    let endpoint = v
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or("missing \"endpoint\"")?;
    let endpoint =
        Endpoint::parse(endpoint).ok_or_else(|| format!("unknown endpoint {endpoint:?}"))?;
    let app = match v.get("app") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("\"app\" must be a string".to_string()),
    };
    let times = match v.get("times") {
        None | Some(Value::Null) => 1,
        Some(t) => t
            .as_u64()
            .and_then(|t| usize::try_from(t).ok())
            .ok_or("\"times\" must be a non-negative integer")?,
    };
    Ok(Fault {
        endpoint,
        app,
        kind: FaultKind::from_json(v)?,
        times,
    })
}

async fn control_add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    match parse_fault(&v) {
        Ok(fault) => {
            let mut inner = shared.lock();
            inner.inject(fault);
            json_response(
                StatusCode::CREATED,
                json!({ "active_faults": inner.faults_len() }),
            )
        }
        Err(message) => unprocessable(json!({ "fault": [message] })),
    }
}

async fn control_clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    let cleared = shared.lock().clear_faults();
    ok(json!({ "cleared": cleared }))
}

async fn control_expire(State(shared): State<Arc<Shared>>) -> Response {
    let expired = shared.lock().expire_tokens();
    ok(json!({ "expired": expired }))
}

async fn control_boot_delay(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let ms = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ms").and_then(Value::as_u64));
    let Some(ms) = ms else {
        return unprocessable(json!({ "ms": ["must be a non-negative integer"] }));
    };
    shared.lock().knobs.boot_delay = Duration::from_millis(ms);
    ok(json!({ "boot_delay_ms": ms }))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The JSON shape of `GET /_fake/knobs`.
pub(crate) fn knobs_json(k: &Knobs) -> Value {
    json!({
        "rate_limit_per_minute": k.rate_limit,
        "rate_limit_body": match k.rate_body {
            RateLimitBody::PlainText => "plain",
            RateLimitBody::Json => "json",
        },
        "retry_after_s": k.retry_after.map(|d| d.as_secs()),
        "boot_delay_ms": millis(k.boot_delay),
        "stop_delay_ms": millis(k.stop_delay),
        "keep_stopped_in_ps": k.keep_stopped,
        "list_entries": match k.list_entries {
            ListEntries::Full => "full",
            ListEntries::SomeSparse => "some-sparse",
            ListEntries::AllSparse => "all-sparse",
        },
        "unknown_type": match k.unknown_type {
            UnknownTypeAnswer::NotFound => "not-found",
            UnknownTypeAnswer::Unprocessable => "unprocessable",
        },
        "crashed_after": k.crashed_after,
        "boot_retries": k.boot_retries,
        "crash_backoff_ms": millis(k.crash_backoff),
        "crash_backoff_max_ms": millis(k.crash_backoff_max),
        "router_status": k.router_status,
        "front_boot_window_ms": millis(k.front_boot_window),
    })
}

/// Applies the fields present in `v` to a copy of `k`; `Err` names the
/// first bad field (and nothing is applied).
pub(crate) fn apply_knobs(k: &Knobs, v: &Value) -> Result<Knobs, String> {
    let Some(map) = v.as_object() else {
        return Err("expected a JSON object".to_string());
    };
    let mut k = k.clone();
    for (field, value) in map {
        let bad = || format!("bad value for {field:?}: {value}");
        let uint = || value.as_u64().ok_or_else(bad);
        let ms = || uint().map(Duration::from_millis);
        let u32v = || uint().and_then(|n| u32::try_from(n).map_err(|_| bad()));
        let text = || value.as_str().ok_or_else(bad);
        match field.as_str() {
            "rate_limit_per_minute" => {
                k.rate_limit = match value {
                    Value::Null => None,
                    _ => Some(u32v()?.max(1)),
                }
            }
            "rate_limit_body" => k.rate_body = RateLimitBody::parse(text()?).ok_or_else(bad)?,
            "retry_after_s" => {
                k.retry_after = match value {
                    Value::Null => None,
                    _ => Some(Duration::from_secs(uint()?)),
                }
            }
            "boot_delay_ms" => k.boot_delay = ms()?,
            "stop_delay_ms" => k.stop_delay = ms()?,
            "keep_stopped_in_ps" => k.keep_stopped = value.as_bool().ok_or_else(bad)?,
            "list_entries" => k.list_entries = ListEntries::parse(text()?).ok_or_else(bad)?,
            "unknown_type" => k.unknown_type = UnknownTypeAnswer::parse(text()?).ok_or_else(bad)?,
            "crashed_after" => k.crashed_after = u32v()?,
            "boot_retries" => k.boot_retries = u32v()?,
            "crash_backoff_ms" => k.crash_backoff = ms()?,
            "crash_backoff_max_ms" => k.crash_backoff_max = ms()?,
            "router_status" => {
                k.router_status = u32v()?
                    .try_into()
                    .ok()
                    .filter(|s| [502, 503, 504].contains(s))
                    .ok_or_else(bad)?
            }
            "front_boot_window_ms" => k.front_boot_window = ms()?,
            other => return Err(format!("unknown knob {other:?}")),
        }
    }
    Ok(k)
}

async fn control_knobs(State(shared): State<Arc<Shared>>) -> Response {
    let body = knobs_json(&shared.lock().knobs);
    ok(body)
}

async fn control_set_knobs(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    let mut inner = shared.lock();
    match apply_knobs(&inner.knobs, &v) {
        Ok(knobs) => {
            inner.knobs = knobs;
            ok(knobs_json(&inner.knobs))
        }
        Err(message) => unprocessable(json!({ "knobs": [message] })),
    }
}

/// Applies `f` to the app named `name`, answering its snapshot or 404.
fn on_app(
    shared: &Shared,
    name: &str,
    f: impl FnOnce(&mut super::state::Inner, &str) -> bool,
) -> Response {
    let mut inner = shared.lock();
    if !f(&mut inner, name) {
        return super::http::not_found("app");
    }
    match inner.snapshot(name) {
        Some(app) => ok(json!({ "app": app.to_json() })),
        None => super::http::not_found("app"),
    }
}

async fn control_stop(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    on_app(&shared, &name, |inner, name| inner.stop_app(name))
}

async fn control_crash(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    on_app(&shared, &name, |inner, name| inner.crash_app(name))
}

async fn control_crash_on_boot(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let crash = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("crash").and_then(Value::as_bool));
    let Some(crash) = crash else {
        return unprocessable(json!({ "crash": ["must be a boolean"] }));
    };
    on_app(&shared, &name, |inner, name| {
        inner.set_crash_on_boot(name, crash)
    })
}

//! A regional API (`https://api.REGION.scalingo.com` on the real service).
//!
//! Every request goes through [`guard`], in this order: count the call (and
//! the scale call per app), apply an injected fault (which may answer
//! instead), check the bearer JWT (401), then the rate limit (429, see
//! [`FakeConfig::rate_limit_per_minute`](super::FakeConfig)). Only then is
//! the request served, from this region's apps only: an app of another
//! region is a 404 `{"resource":"app"}` here.
//!
//! Autoscalers: `GET /v1/apps/{app}/autoscalers` ->
//! `{"autoscalers":[{"id","app_id","container_type","metric","target",
//! "min_containers","max_containers","disabled"}]}`;
//! `PATCH /v1/apps/{app}/autoscalers/{id}` `{"autoscaler":{"disabled":bool}}`
//! -> `{"autoscaler":{..}}` (404 `{"resource":"autoscaler"}` if unknown).
//! An accepted scale disables the autoscalers of the types it names.
//!
//! `POST /scale` checks, in order: the app exists (404), the body is JSON
//! (400), the request is valid (422 `{"errors":{"containers":[..]}}`; an
//! unknown container type is a 404 `{"resource":"container_type"}` unless
//! the `unknown_type` knob asks for the 422), no
//! operation is in progress (422 `is scaling`), the formation changes (400
//! `no change in containers formation`), the app is deployed (else 200, no
//! operation); then 202 with an absolute `Location`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use serde_json::Value;

use super::http::{
    bad_method, bearer, error, fault_response, json_response, no_route, not_found, ok,
    rate_limited, unprocessable,
};
use super::model::{Endpoint, FaultKind};
use super::state::{ScaleItem, ScaleOutcome, Shared};

/// What a regional listener knows about itself.
#[derive(Clone)]
pub(crate) struct Regional {
    pub shared: Arc<Shared>,
    pub region: String,
    /// This listener's own base URL, for `Location`.
    pub base_url: String,
}

pub(crate) fn router(ctx: Regional) -> Router {
    Router::new()
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/{app}", get(get_app))
        .route("/v1/apps/{app}/containers", get(containers))
        .route("/v1/apps/{app}/scale", post(scale))
        .route("/v1/apps/{app}/operations/{op}", get(operation))
        .route("/v1/apps/{app}/ps", get(ps))
        .route("/v1/apps/{app}/autoscalers", get(autoscalers))
        .route("/v1/apps/{app}/autoscalers/{id}", patch(update_autoscaler))
        .fallback(no_route)
        .method_not_allowed_fallback(bad_method)
        .with_state(ctx)
}

/// Counts, applies faults, authenticates and rate-limits; `Err` is the
/// answer to send instead of serving the request.
async fn guard(
    ctx: &Regional,
    endpoint: Endpoint,
    app: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Response> {
    let fault = {
        let mut inner = ctx.shared.lock();
        inner.count(endpoint);
        let app_name = app.map(|a| inner.resolve_any(a).unwrap_or_else(|| a.to_string()));
        if let (Endpoint::Scale, Some(name)) = (endpoint, &app_name) {
            inner.count_scale(name);
        }
        inner.take_fault(endpoint, app_name.as_deref())
    };
    if let Some(kind) = fault {
        if let FaultKind::Delay(d) = kind {
            tokio::time::sleep(d).await;
        } else if let Some(res) = fault_response(&kind) {
            return Err(res);
        }
    }
    let Some(jwt) = bearer(headers) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "not authenticated: missing bearer token",
        ));
    };
    let mut inner = ctx.shared.lock();
    let owner = inner
        .check_bearer(jwt)
        .map_err(|reason| error(StatusCode::UNAUTHORIZED, reason))?;
    if !inner.rate_allow(&owner, endpoint) {
        return Err(rate_limited(&inner.knobs));
    }
    Ok(())
}

async fn list_apps(State(ctx): State<Regional>, headers: HeaderMap) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::ListApps, None, &headers).await {
        return res;
    }
    let body = ctx.shared.lock().list_json(&ctx.region);
    ok(body)
}

async fn get_app(
    State(ctx): State<Regional>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::GetApp, Some(&app), &headers).await {
        return res;
    }
    let body = ctx.shared.lock().app_json(&ctx.region, &app);
    body.map_or_else(|| not_found("app"), ok)
}

async fn containers(
    State(ctx): State<Regional>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::Containers, Some(&app), &headers).await {
        return res;
    }
    let body = ctx.shared.lock().containers_json(&ctx.region, &app);
    body.map_or_else(|| not_found("app"), ok)
}

async fn ps(State(ctx): State<Regional>, Path(app): Path<String>, headers: HeaderMap) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::Ps, Some(&app), &headers).await {
        return res;
    }
    let body = ctx.shared.lock().ps_json(&ctx.region, &app);
    body.map_or_else(|| not_found("app"), ok)
}

async fn operation(
    State(ctx): State<Regional>,
    Path((app, op)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::Operation, Some(&app), &headers).await {
        return res;
    }
    let body = ctx.shared.lock().operation_json(&ctx.region, &app, &op);
    match body {
        Ok(body) => ok(body),
        Err(true) => not_found("app"),
        Err(false) => not_found("operation"),
    }
}

async fn autoscalers(
    State(ctx): State<Regional>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::Autoscalers, Some(&app), &headers).await {
        return res;
    }
    let body = ctx.shared.lock().autoscalers_json(&ctx.region, &app);
    body.map_or_else(|| not_found("app"), ok)
}

async fn update_autoscaler(
    State(ctx): State<Regional>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::UpdateAutoscaler, Some(&app), &headers).await {
        return res;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    let Some(disabled) = body
        .get("autoscaler")
        .and_then(|a| a.get("disabled"))
        .and_then(Value::as_bool)
    else {
        return unprocessable(serde_json::json!({ "disabled": ["must be a boolean"] }));
    };
    let outcome = ctx
        .shared
        .lock()
        .update_autoscaler(&ctx.region, &app, &id, disabled);
    match outcome {
        Ok(body) => ok(body),
        Err(true) => not_found("app"),
        Err(false) => not_found("autoscaler"),
    }
}

/// Parses `{"containers":[{"name","amount"?,"size"?}]}`; `Err` is a 422
/// errors map.
fn parse_scale(body: &Value) -> Result<Vec<ScaleItem>, Value> {
    let Some(list) = body.get("containers").and_then(Value::as_array) else {
        return Err(
            serde_json::json!({ "containers": ["must be a list of {name, amount, size}"] }),
        );
    };
    let mut items = Vec::with_capacity(list.len());
    for entry in list {
        let kind = entry
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let amount = match entry.get("amount") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(a) => Some(a),
                None => {
                    return Err(
                        serde_json::json!({ "containers": [format!("{kind}: amount is not an integer")] }),
                    )
                }
            },
        };
        let size = match entry.get("size") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(
                    serde_json::json!({ "containers": [format!("{kind}: size is not a string")] }),
                )
            }
        };
        items.push(ScaleItem { kind, amount, size });
    }
    Ok(items)
}

async fn scale(
    State(ctx): State<Regional>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(res) = guard(&ctx, Endpoint::Scale, Some(&app), &headers).await {
        return res;
    }
    if ctx.shared.lock().app_json(&ctx.region, &app).is_none() {
        return not_found("app");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid JSON body");
    };
    let items = match parse_scale(&body) {
        Ok(items) => items,
        Err(errors) => return unprocessable(errors),
    };
    let outcome = ctx.shared.lock().scale(&ctx.region, &app, items);
    match outcome {
        ScaleOutcome::NotFound => not_found("app"),
        ScaleOutcome::UnknownType => not_found("container_type"),
        ScaleOutcome::Invalid(errors) => unprocessable(errors),
        ScaleOutcome::Busy(message) => unprocessable(serde_json::json!({ "app": [message] })),
        ScaleOutcome::NoChange => {
            error(StatusCode::BAD_REQUEST, "no change in containers formation")
        }
        ScaleOutcome::Immediate(formation) => ok(formation),
        ScaleOutcome::Started {
            app_name,
            op_id,
            formation,
        } => {
            let mut res = json_response(StatusCode::ACCEPTED, formation);
            let location = format!("{}/v1/apps/{app_name}/operations/{op_id}", ctx.base_url);
            match HeaderValue::from_str(&location) {
                Ok(value) => {
                    res.headers_mut().insert(LOCATION, value);
                    res
                }
                Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "fake: bad Location"),
            }
        }
    }
}

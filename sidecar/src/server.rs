//! The HTTP API the filter calls.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/v1/wake` | `{"app": "my-app", "region": "osc-fr1" \| null, "client"?: "browser" \| "api"}` | 200 `WakeAnswer`; 202 `WaitingAnswer` (a browser, `waiting_page` strategy, see [`crate::waiting`]); 400 `invalid_app`; 404 `unknown_app`; 503 `wake_failed`; 504 `wake_timeout` |
//! | GET | `/v1/status?app=NAME` | | 200 `StatusAnswer`: where the wake of a waiting page stands; 400 `invalid_app` |
//! | POST | `/v1/activity` | `{"apps": ["my-app", ...]}` | 200 `{"awake": [{"app", "region", "upstream_host"}]}` |
//! | GET | `/v1/apps` | | 200 `{"apps": [AppRecord...]}`: the registry, for operators and tests |
//! | GET | `/v1/events?limit=N` | | 200 `{"events": [Event...]}`: newest first (default 100, at most 1000) |
//! | GET | `/healthz` | | 200 `{"status": "ok"}` |
//! | GET | `/metrics` | | 200 OpenMetrics text (see [`crate::metrics`]) |
//!
//! The API is meant for the filter on loopback (or the pod network); it
//! carries no secret and changes nothing but the registry.
//!
//! Errors are JSON `{"error": code, "message": text, "retry_after"?: seconds}`
//! and are mapped from [`WakeError`] here and nowhere else.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::scalingo::ScalingoError;
use crate::waiting::{Client, Waiting};
use crate::wake::{Awake, WakeError, Waker};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WakeRequest {
    app: String,
    #[serde(default)]
    region: Option<String>,
    /// `browser` when the filter may show the waiting page.
    #[serde(default)]
    client: Option<Client>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityRequest {
    apps: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct ActivityAnswer {
    awake: Vec<Awake>,
}

/// A wake failure as an HTTP answer.
pub(crate) struct ApiError(pub(crate) WakeError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, retry_after) = match &self.0 {
            WakeError::InvalidApp(_) => (StatusCode::BAD_REQUEST, "invalid_app", None),
            WakeError::UnknownApp(_) => (StatusCode::NOT_FOUND, "unknown_app", None),
            WakeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "wake_timeout", Some(5)),
            WakeError::Provider {
                source: ScalingoError::RateLimited,
                ..
            } => (StatusCode::SERVICE_UNAVAILABLE, "wake_failed", Some(30)),
            WakeError::NoWebProcess(_)
            | WakeError::Rules(_)
            | WakeError::Provider { .. }
            | WakeError::Aborted(_)
            | WakeError::Elsewhere { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "wake_failed", Some(10))
            }
        };
        let mut body = json!({ "error": code, "message": self.0.to_string() });
        if let Some(seconds) = retry_after {
            body["retry_after"] = json!(seconds);
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("-")
        .to_owned()
}

async fn wake(
    State(waker): State<Arc<Waker>>,
    Extension(waiting): Extension<Arc<Waiting>>,
    headers: HeaderMap,
    Json(req): Json<WakeRequest>,
) -> Response {
    let span = tracing::info_span!("request", request_id = %request_id(&headers), app = %req.app);
    async move {
        if req.client == Some(Client::Browser) {
            match waiting.begin(&waker, &req.app, req.region.as_deref()) {
                Ok(Some(answer)) => return (StatusCode::ACCEPTED, Json(answer)).into_response(),
                Ok(None) => {}
                Err(e) => return ApiError(e).into_response(),
            }
        }
        match waker.wake(&req.app, req.region.as_deref()).await {
            Ok(answer) => Json(answer).into_response(),
            Err(e) => ApiError(e).into_response(),
        }
    }
    .instrument(span)
    .await
}

#[derive(Debug, Deserialize)]
struct StatusQuery {
    app: String,
}

async fn status(
    State(waker): State<Arc<Waker>>,
    Extension(waiting): Extension<Arc<Waiting>>,
    Query(q): Query<StatusQuery>,
) -> Response {
    match waiting.status(&waker, &q.app).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

async fn activity(
    State(waker): State<Arc<Waker>>,
    Json(req): Json<ActivityRequest>,
) -> Json<ActivityAnswer> {
    Json(ActivityAnswer {
        awake: waker.activity(&req.apps).await,
    })
}

async fn apps(State(waker): State<Arc<Waker>>) -> Response {
    match waker.registry().list().await {
        Ok(apps) => Json(json!({ "apps": apps })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "registry_unavailable", "message": e.to_string() })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default = "default_events_limit")]
    limit: usize,
}

fn default_events_limit() -> usize {
    100
}

async fn events(
    State(waker): State<Arc<Waker>>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
) -> Response {
    match waker
        .events()
        .recent(q.limit.min(crate::registry::EVENTS_CAPACITY))
        .await
    {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "registry_unavailable", "message": e.to_string() })),
        )
            .into_response(),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: refreshes the gauges read at scrape time, then encodes.
async fn metrics(State(waker): State<Arc<Waker>>) -> Response {
    let metrics = waker.metrics();
    if let Ok(n) = waker.registry().len().await {
        metrics
            .registry_apps
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    waker.pending_activity();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// The sidecar's routes.
pub fn router(waker: Arc<Waker>) -> Router {
    Router::new()
        .route("/v1/wake", post(wake))
        .route("/v1/status", get(status))
        .route("/v1/activity", post(activity))
        .route("/v1/apps", get(apps))
        .route("/v1/events", get(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // An activity batch of 10,000 names fits in well under 1 MiB.
        .layer(DefaultBodyLimit::max(1 << 20))
        .layer(Extension(Arc::new(Waiting::new())))
        .with_state(waker)
}

/// Serves the API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    waker: Arc<Waker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(waker))
        .with_graceful_shutdown(shutdown)
        .await
}

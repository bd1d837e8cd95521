//! The sidecar's HTTP API.
//!
//! The endpoints the filter calls (`/v1/wake`, `/v1/status`,
//! `/v1/activity`) are the contract of the `paastis_api` crate, whose docs
//! describe them; their types come from there. The apps the filter reports
//! not running (`not_running` in an activity batch, `verify` on a wake) are
//! checked by [`crate::verify`] (once per app per period) before the
//! sidecar answers from its memory of "awake" again. The others are for operators
//! and tests:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/apps` | 200 `{"apps": [AppRecord...]}`: the registry |
//! | GET | `/v1/events?limit=N` | 200 `{"events": [Event...]}`: newest first (default 100, at most 1000) |
//! | GET | `/healthz` | 200 `{"status": "ok"}` |
//! | GET | `/metrics` | 200 OpenMetrics text (see [`crate::metrics`]) |
//!
//! The filter's endpoints require `Authorization: Bearer TOKEN` when
//! `PAASTIS_SIDECAR_TOKEN` is set (401 `unauthorized` otherwise, see
//! [`crate::auth`]); without it the sidecar listens on loopback only. The
//! operator endpoints read and change nothing but the registry's view and
//! stay open (probes and scrapers carry no token). The listener has a
//! header-read timeout and a connection cap ([`crate::listener`]).
//!
//! Errors are [`ErrorAnswer`]s; a [`WakeError`] becomes an [`ErrorCode`]
//! (and a `Retry-After`) here and nowhere else (`ApiError`).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use paastis_api::{
    ActivityAnswer, ActivityRequest, Client, ErrorAnswer, ErrorCode, RunningApp, StatusQuery,
    WakeRequest, ACTIVITY_PATH, STATUS_PATH, WAKE_PATH,
};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::listener::Limits;
use crate::scalingo::{ScalingoError, Secret};
use crate::verify::Verifier;
use crate::waiting::Waiting;
use crate::wake::{WakeError, Waker};

impl From<&WakeError> for ErrorCode {
    fn from(e: &WakeError) -> Self {
        match e {
            WakeError::InvalidApp(_) => ErrorCode::InvalidApp,
            WakeError::UnknownApp(_) => ErrorCode::UnknownApp,
            WakeError::Timeout(_) => ErrorCode::WakeTimeout,
            WakeError::NoWebProcess(_)
            | WakeError::Rules(_)
            | WakeError::Provider { .. }
            | WakeError::Aborted(_)
            | WakeError::Elsewhere { .. }
            | WakeError::AppFailed { .. }
            | WakeError::BackingOff { .. } => ErrorCode::WakeFailed,
        }
    }
}

/// The `Retry-After` (seconds) the filter is told for `e`: soon for a slow
/// app, later when Scalingo rate-limits us, the time left of a failed
/// app's back-off, none when retrying cannot help.
fn retry_after(e: &WakeError) -> Option<u64> {
    match e {
        WakeError::InvalidApp(_) | WakeError::UnknownApp(_) => None,
        WakeError::Timeout(_) => Some(5),
        WakeError::Provider {
            source: ScalingoError::RateLimited,
            ..
        } => Some(30),
        // Rounded up: a client retrying then finds the back-off over.
        WakeError::BackingOff { retry_after, .. } => {
            Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
        }
        WakeError::NoWebProcess(_)
        | WakeError::Rules(_)
        | WakeError::Provider { .. }
        | WakeError::Aborted(_)
        | WakeError::Elsewhere { .. }
        | WakeError::AppFailed { .. } => Some(10),
    }
}

/// An [`ErrorAnswer`] as an HTTP answer: the status of its code, and the
/// `Retry-After` header when it has one.
struct ErrorResponse(ErrorAnswer);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.0.retry_after;
        let mut response = (status, Json(self.0)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A wake failure as an HTTP answer.
pub(crate) struct ApiError(pub(crate) WakeError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let answer = ErrorAnswer::new(ErrorCode::from(&self.0), self.0.to_string())
            .retry_after(retry_after(&self.0));
        ErrorResponse(answer).into_response()
    }
}

/// The registry cannot be read (operator endpoints).
fn registry_unavailable(e: impl std::fmt::Display) -> Response {
    ErrorResponse(ErrorAnswer::new(
        ErrorCode::RegistryUnavailable,
        e.to_string(),
    ))
    .into_response()
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
    Extension(verifier): Extension<Arc<Verifier>>,
    headers: HeaderMap,
    Json(req): Json<WakeRequest>,
) -> Response {
    let span = tracing::info_span!("request", request_id = %request_id(&headers), app = %req.app);
    async move {
        if req.verify {
            // The filter's traffic saw the app not running: the memory of
            // "awake" is not trusted before the app was checked.
            let verdict = verifier.check(waker.deps(), &req.app).await;
            tracing::debug!(?verdict, "checked before the wake");
        }
        if req.client == Some(Client::Browser) || req.background {
            match waiting.begin(&waker, &req.app, req.region.as_deref(), req.background) {
                Ok(Some(mut answer)) => {
                    // The page is rendered with the estimate when one is known.
                    answer.expected_ms = crate::waiting::expected(&waker, &answer.target).await;
                    return (StatusCode::ACCEPTED, Json(answer)).into_response();
                }
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
    Extension(verifier): Extension<Arc<Verifier>>,
    Json(req): Json<ActivityRequest<'static>>,
) -> Json<ActivityAnswer> {
    let reported: Vec<String> = req
        .not_running
        .iter()
        .filter(|a| paastis_rules::is_valid_app_name(a))
        .take(crate::activity::MAX_ACTIVITY_BATCH)
        .cloned()
        .collect();
    if !reported.is_empty() {
        // In the background: the filter already dropped these apps, and
        // the answer must not wait for their fronts or the API.
        let deps = waker.deps().clone();
        let verifier = Arc::clone(&verifier);
        let reports = reported.clone();
        tokio::spawn(async move {
            verifier.check_all(&deps, &reports).await;
        });
    }
    let awake = waker.activity(&req.apps).await;
    let mut answer = activity_answer(&req.apps, &reported, awake);
    if let Some(vm) = req.vm.as_deref() {
        let deps = waker.deps();
        // Stops name the app the rules resolve to (`app_name`).
        let routed: Vec<String> = req
            .routed()
            .take(2 * crate::activity::MAX_ACTIVITY_BATCH)
            .filter(|a| paastis_rules::is_valid_app_name(a))
            .map(|a| deps.rules.resolve(a).map_or_else(|_| a.clone(), |r| r.name))
            .collect();
        deps.leases
            .renewed(vm, req.lease_ms.unwrap_or(DEFAULT_LEASE_MS), routed.iter());
        renew_held(deps, &req.held, &req.apps, &reported, &mut answer);
        // The VM drops what the answer takes back: an idle VM then sends
        // no renewal at all, and its release must not wait for its lease.
        let taken: Vec<String> = answer
            .asleep
            .iter()
            .map(|a| deps.rules.resolve(a).map_or_else(|_| a.clone(), |r| r.name))
            .collect();
        deps.leases.taken_back(vm, &taken);
    }
    Json(answer)
}

/// The lease of a VM that does not say how long it keeps routing (the
/// filter's default `cache_ttl_ms`).
const DEFAULT_LEASE_MS: u64 = 30_000;

/// Answers the apps a VM holds but did not serve since its last batch,
/// from this instance's memory (no registry call): `awake` when it saw the
/// app running within its awake TTL and no stop since, `asleep` when it
/// knows a stop newer than any sighting (a pause on any instance: the
/// lease is taken back), neither when it knows nothing (an instance that
/// just restarted: the VM's lease runs out by itself).
fn renew_held(
    deps: &crate::deps::Deps,
    held: &[String],
    apps: &[String],
    reported: &[String],
    answer: &mut ActivityAnswer,
) {
    for app in held
        .iter()
        .take(crate::activity::MAX_ACTIVITY_BATCH)
        .filter(|a| paastis_rules::is_valid_app_name(a))
    {
        if apps.contains(app) || reported.contains(app) {
            continue;
        }
        let resolved = deps.rules.resolve(app).map(|r| r.name).ok();
        let target = resolved.as_deref().unwrap_or(app);
        let stopped = deps.leases.stopped_at(target);
        let seen = deps.awake.seen_at_ms(target);
        match (deps.awake.fresh(target), stopped) {
            (Some(awake), stop) if stop.is_none_or(|s| seen.is_some_and(|seen| seen > s)) => {
                answer.awake.push(RunningApp {
                    app: app.clone(),
                    region: awake.region,
                    upstream_host: awake.upstream_host,
                });
            }
            (_, Some(s)) if seen.is_none_or(|seen| seen <= s) => answer.asleep.push(app.clone()),
            _ => {}
        }
    }
}

/// The answer to an activity batch of `apps`: those known to run are
/// `awake`, every other valid name of the batch `asleep` (an app reported
/// not running is asleep until a wake says otherwise).
fn activity_answer(
    apps: &[String],
    reported: &[String],
    awake: Vec<crate::awake::Awake>,
) -> ActivityAnswer {
    let awake: Vec<RunningApp> = awake
        .into_iter()
        .filter(|a| !reported.contains(&a.app))
        .map(|a| RunningApp {
            app: a.app,
            region: a.region,
            upstream_host: a.upstream_host,
        })
        .collect();
    let known: std::collections::HashSet<&str> = awake.iter().map(|a| a.app.as_str()).collect();
    let asleep = apps
        .iter()
        .take(crate::activity::MAX_ACTIVITY_BATCH)
        .filter(|a| paastis_rules::is_valid_app_name(a) && !known.contains(a.as_str()))
        .cloned()
        .collect();
    ActivityAnswer { awake, asleep }
}

async fn apps(State(waker): State<Arc<Waker>>) -> Response {
    match waker.registry().list().await {
        Ok(apps) => Json(json!({ "apps": apps })).into_response(),
        Err(e) => registry_unavailable(e),
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
        Err(e) => registry_unavailable(e),
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

/// How the API is served: the filter's token and the listener's bounds.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Required on the filter's endpoints when set; never logged.
    pub token: Option<Secret>,
    pub limits: Limits,
}

/// The sidecar's routes, open to any caller (loopback use, tests).
pub fn router(waker: Arc<Waker>) -> Router {
    router_with(waker, None)
}

/// The sidecar's routes; with `token`, the filter's endpoints require it.
pub fn router_with(waker: Arc<Waker>, token: Option<Secret>) -> Router {
    let filter_routes = Router::new()
        .route(WAKE_PATH, post(wake))
        .route(STATUS_PATH, get(status))
        .route(ACTIVITY_PATH, post(activity))
        .route_layer(middleware::from_fn_with_state(
            token,
            crate::auth::require_sidecar_token,
        ));
    Router::new()
        .merge(filter_routes)
        .route("/v1/apps", get(apps))
        .route("/v1/events", get(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // An activity batch of 10,000 names fits in well under 1 MiB.
        .layer(DefaultBodyLimit::max(1 << 20))
        .layer(Extension(Arc::new(Waiting::new())))
        .layer(Extension(Verifier::new()))
        .with_state(waker)
}

/// Serves the API, open to any caller and with the default listener
/// bounds, on `listener` until `shutdown` completes, then lets in-flight
/// requests finish.
pub async fn run(
    listener: TcpListener,
    waker: Arc<Waker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, waker, ServeOptions::default(), shutdown).await
}

/// [`run`] with the filter's token and the listener's bounds.
pub async fn run_with(
    listener: TcpListener,
    waker: Arc<Waker>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(
        listener,
        router_with(waker, options.token),
        options.limits,
        shutdown,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_answers_say_which_apps_are_asleep() {
        let batch = vec![
            "app-one".to_owned(),
            "app-two".to_owned(),
            "app-three".to_owned(),
            "Bad_Name".to_owned(),
        ];
        let awake = vec![
            crate::awake::Awake::new("app-one", "osc-fr1"),
            crate::awake::Awake::new("app-three", "osc-fr1"),
        ];
        let answer = activity_answer(&batch, &["app-three".to_owned()], awake);
        let names: Vec<&str> = answer.awake.iter().map(|a| a.app.as_str()).collect();
        assert_eq!(names, ["app-one"]);
        assert_eq!(answer.asleep, ["app-two", "app-three"]);
    }

    #[test]
    fn error_codes_match_the_api() {
        assert_eq!(
            ErrorCode::from(&WakeError::UnknownApp("x".into())).as_str(),
            "unknown_app"
        );
        assert_eq!(
            ErrorCode::from(&WakeError::Timeout("x".into())).as_str(),
            "wake_timeout"
        );
        assert_eq!(
            ErrorCode::from(&WakeError::Aborted("x".into())).as_str(),
            "wake_failed"
        );
    }

    #[test]
    fn wake_errors_answer_with_their_code_status_and_retry_after() {
        let cases = [
            (WakeError::InvalidApp("X".into()), 400, None),
            (WakeError::UnknownApp("x".into()), 404, None),
            (WakeError::Timeout("x".into()), 504, Some("5")),
            (WakeError::Aborted("x".into()), 503, Some("10")),
            (
                WakeError::BackingOff {
                    app: "x".into(),
                    reason: "crashed".into(),
                    retry_after: std::time::Duration::from_millis(19_200),
                },
                503,
                Some("20"),
            ),
            (
                WakeError::AppFailed {
                    app: "x".into(),
                    reason: "crashed".into(),
                },
                503,
                Some("10"),
            ),
            (
                WakeError::Provider {
                    app: "x".into(),
                    source: ScalingoError::RateLimited,
                },
                503,
                Some("30"),
            ),
        ];
        for (e, status, retry) in cases {
            let response = ApiError(e).into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                retry
            );
        }
    }
}

//! The admin API, for operators: on its own listener (loopback by default),
//! only when `PAASTIS_ADMIN_TOKEN` is set, every call with
//! `Authorization: Bearer TOKEN` (the scheme in any case; compared in
//! constant time, see [`crate::auth`]).
//!
//! The contract is `sidecar/openapi/admin.yaml`; the tests check this
//! implementation against it. Routes ([`ROUTES`]):
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/admin/v1/apps` | every app the registry or Scalingo knows, with both views |
//! | GET | `/admin/v1/apps/{app}` | one app |
//! | POST | `/admin/v1/apps/{app}/wake` | wakes it (and its linked apps), waits like a request; clears a failed wake's back-off first |
//! | POST | `/admin/v1/apps/{app}/pause` | pauses it now, remembering its formation |
//! | DELETE | `/admin/v1/apps/{app}` | forgets it (registry and awake cache); Scalingo untouched |
//! | GET | `/admin/v1/events?limit=N` | the event log, newest first |
//!
//! Each app carries the container-hours its sleeps saved
//! ([`crate::saved`], from the registry's event log), and the list their
//! total. The same listener serves the operator dashboard without auth
//! ([`crate::dashboard`]: a static page that asks for the token and calls
//! these routes).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use paastis_rules::is_valid_app_name;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

use crate::clock::now_ms;
use crate::deps::Deps;
use crate::keep_awake::{self, NextWindow};
use crate::registry::{
    expected_ms, AppRecord, EventKind, RegistryError, WakeSample, EVENTS_CAPACITY,
};
use crate::saved::{container_hours_saved, hours, AppSaved};
use crate::scalingo::Secret;
use crate::scheduler::{PassError, PauseError, Scheduler};
use crate::server::ApiError;
use crate::wake::Waker;

/// Every route, as `(method, path)` in the OpenAPI file's spelling.
pub const ROUTES: [(&str, &str); 6] = [
    ("get", "/admin/v1/apps"),
    ("get", "/admin/v1/apps/{app}"),
    ("delete", "/admin/v1/apps/{app}"),
    ("post", "/admin/v1/apps/{app}/wake"),
    ("post", "/admin/v1/apps/{app}/pause"),
    ("get", "/admin/v1/events"),
];

#[derive(Clone)]
struct Admin {
    waker: Arc<Waker>,
    scheduler: Arc<Scheduler>,
    token: Secret,
}

/// One app as the admin API shows it: what the registry knows and what
/// Scalingo says.
#[derive(Debug, Serialize)]
struct AdminApp {
    app: String,
    region: Option<String>,
    /// Scalingo's status (`running`, `stopped`, ...); null when Scalingo
    /// could not be asked or does not list the app.
    provider_status: Option<String>,
    /// Whether the registry has the app.
    registered: bool,
    ignored: bool,
    last_access_ms: Option<u64>,
    idle_seconds: Option<u64>,
    max_idle_minutes: u64,
    /// When the scheduler will pause it if nobody uses it; null for never
    /// (max idle 0, ignored, not running or not registered). Never inside
    /// a keep-awake window: at the window's end at the earliest.
    pause_at_ms: Option<u64>,
    /// The keep-awake window open now, else the next one to open; null when
    /// its rules give none.
    next_keep_awake: Option<NextWindow>,
    linked_apps: Vec<String>,
    /// Formation the next wake restores (amount per process type).
    formation: BTreeMap<String, u32>,
    /// Sleep times the containers it would otherwise have run, over the
    /// event log's span ([`crate::saved`]).
    container_hours_saved: f64,
    /// When its current sleep began, per the event log; null when awake.
    asleep_since_ms: Option<u64>,
    /// Its last wakes that scaled it up, newest first (at most
    /// [`crate::registry::WAKE_SAMPLES`]), shared by the instances.
    last_wakes: Vec<WakeSample>,
    /// The usual wake time (their median), what the waiting page shows;
    /// null without wakes.
    expected_ms: Option<u64>,
}

fn admin_app(
    admin: &Admin,
    name: &str,
    record: Option<&AppRecord>,
    provider: Option<&(String, String)>,
    saved: Option<&AppSaved>,
    last_wakes: Vec<WakeSample>,
    now: u64,
) -> AdminApp {
    let resolved = admin.waker.rules().resolve(name).ok();
    let max_idle_minutes = resolved.as_ref().map_or(0, |r| r.max_idle_minutes);
    let ignored = admin.waker.is_ignored(name);
    let running = provider.is_some_and(|(_, status)| status != "stopped" && status != "new");
    let last_access_ms = record.map(|r| r.last_access_ms);
    let next_keep_awake = resolved
        .as_ref()
        .and_then(|r| keep_awake::next_window(&r.keep_awake, now));
    let kept_until = next_keep_awake
        .as_ref()
        .filter(|w| w.open)
        .map_or(0, |w| w.interval.end_ms);
    AdminApp {
        app: name.to_owned(),
        region: provider
            .map(|(region, _)| region.clone())
            .or_else(|| record.and_then(|r| r.region.clone())),
        provider_status: provider.map(|(_, status)| status.clone()),
        registered: record.is_some(),
        ignored,
        last_access_ms,
        idle_seconds: last_access_ms.map(|at| now.saturating_sub(at) / 1_000),
        max_idle_minutes,
        pause_at_ms: match last_access_ms {
            Some(at) if running && !ignored && max_idle_minutes > 0 => {
                Some((at + max_idle_minutes * 60_000).max(kept_until))
            }
            _ => None,
        },
        next_keep_awake,
        linked_apps: record
            .map(|r| r.linked_apps.clone())
            .filter(|l| !l.is_empty())
            .or_else(|| resolved.map(|r| r.linked_apps))
            .unwrap_or_default(),
        formation: record
            .map(|r| r.formation.iter().cloned().collect())
            .unwrap_or_default(),
        container_hours_saved: saved.map_or(0.0, AppSaved::container_hours),
        asleep_since_ms: saved.and_then(|s| s.asleep_since_ms),
        expected_ms: expected_ms(&last_wakes),
        last_wakes,
    }
}

/// What every app saved, from the whole event log.
async fn saved_by_app(
    admin: &Admin,
    now: u64,
) -> Result<BTreeMap<String, AppSaved>, RegistryError> {
    let events = admin.waker.events().recent(EVENTS_CAPACITY).await?;
    Ok(container_hours_saved(&events, now))
}

/// The last wakes of `app`; none when the store cannot be read (logged:
/// the rest of the answer is still worth having).
async fn last_wakes(admin: &Admin, app: &str) -> Vec<WakeSample> {
    admin
        .waker
        .deps()
        .wakes
        .recent_wakes(app)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(app, error = %e, "admin: wake durations unavailable");
            Vec::new()
        })
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.to_string() })),
    )
        .into_response()
}

fn invalid_app(app: &str) -> Option<Response> {
    (!is_valid_app_name(app)).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_app",
            format!("{app:?} is not a valid Scalingo app name"),
        )
    })
}

async fn auth(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    if !crate::auth::presents(request.headers(), &admin.token) {
        return crate::auth::unauthorized("paastis-admin");
    }
    next.run(request).await
}

async fn list_apps(State(admin): State<Admin>) -> Response {
    let records = match admin.waker.registry().list().await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    };
    let (provider, provider_error) = match admin.scheduler.provider_apps().await {
        Ok(p) => (p, None),
        Err(e) => (BTreeMap::new(), Some(e.to_string())),
    };
    let now = now_ms();
    let saved = match saved_by_app(&admin, now).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    };
    let records: BTreeMap<&str, &AppRecord> = records.iter().map(|r| (r.app.as_str(), r)).collect();
    let names: std::collections::BTreeSet<&str> = records
        .keys()
        .copied()
        .chain(provider.keys().map(String::as_str))
        .collect();
    let mut apps: Vec<AdminApp> = Vec::with_capacity(names.len());
    for name in names {
        let wakes = last_wakes(&admin, name).await;
        apps.push(admin_app(
            &admin,
            name,
            records.get(name).copied(),
            provider.get(name),
            saved.get(name),
            wakes,
            now,
        ));
    }
    let total: u64 = saved.values().map(|s| s.container_seconds).sum();
    Json(json!({
        "apps": apps,
        "provider_error": provider_error,
        "saved": { "total_container_hours": hours(total) },
    }))
    .into_response()
}

async fn get_app(State(admin): State<Admin>, Path(app): Path<String>) -> Response {
    if let Some(bad) = invalid_app(&app) {
        return bad;
    }
    let record = match admin.waker.registry().get(&app).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    };
    let provider = match admin.scheduler.provider_apps().await {
        Ok(p) => p.get(&app).cloned(),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", e),
    };
    if record.is_none() && provider.is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_app",
            format!("no app named {app:?} in the registry or any region"),
        );
    }
    let now = now_ms();
    let saved = match saved_by_app(&admin, now).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    };
    let wakes = last_wakes(&admin, &app).await;
    Json(admin_app(
        &admin,
        &app,
        record.as_ref(),
        provider.as_ref(),
        saved.get(&app),
        wakes,
        now,
    ))
    .into_response()
}

async fn wake_app(State(admin): State<Admin>, Path(app): Path<String>) -> Response {
    match admin.waker.wake_now(&app, None).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

#[derive(Debug, Serialize)]
struct PauseAnswer {
    app: String,
    region: String,
    formation: BTreeMap<String, u32>,
}

async fn pause_app(State(admin): State<Admin>, Path(app): Path<String>) -> Response {
    if let Some(bad) = invalid_app(&app) {
        return bad;
    }
    match admin.scheduler.pause_now(&app).await {
        Ok((region, formation)) => Json(PauseAnswer {
            app,
            region,
            formation: formation.into_iter().collect(),
        })
        .into_response(),
        Err(e @ PauseError::Ignored(..)) => error(StatusCode::CONFLICT, "ignored_app", e),
        Err(e @ PauseError::UnknownApp(_)) => error(StatusCode::NOT_FOUND, "unknown_app", e),
        Err(e @ PauseError::Pass(PassError::Registry(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e)
        }
        Err(e @ PauseError::Pass(PassError::Scalingo(_))) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "provider_error", e)
        }
    }
}

async fn forget_app(State(admin): State<Admin>, Path(app): Path<String>) -> Response {
    if let Some(bad) = invalid_app(&app) {
        return bad;
    }
    match forget(admin.waker.deps(), &app).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    }
}

/// Forgets `app`: out of the registry (its remembered formation too), of
/// the awake cache and of the activity kept in memory, on every instance
/// (the stop note, see [`crate::awake`]). The platform is not touched.
async fn forget(deps: &Deps, app: &str) -> Result<(), RegistryError> {
    deps.mark_stopped(app).await?;
    deps.activity.forget(app);
    deps.registry.forget(app).await?;
    deps.record(app, EventKind::Forgotten).await;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

async fn events(State(admin): State<Admin>, Query(q): Query<EventsQuery>) -> Response {
    match admin
        .waker
        .events()
        .recent(q.limit.clamp(1, EVENTS_CAPACITY))
        .await
    {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", e),
    }
}

/// The admin routes, every one behind the bearer check, beside the
/// dashboard's static files (no auth: they hold no data).
pub fn router(waker: Arc<Waker>, scheduler: Arc<Scheduler>, token: Secret) -> Router {
    let admin = Admin {
        waker,
        scheduler,
        token,
    };
    Router::new()
        .route("/admin/v1/apps", get(list_apps))
        .route("/admin/v1/apps/{app}", get(get_app).delete(forget_app))
        .route("/admin/v1/apps/{app}/wake", post(wake_app))
        .route("/admin/v1/apps/{app}/pause", post(pause_app))
        .route("/admin/v1/events", get(events))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such admin route") })
        .layer(middleware::from_fn_with_state(admin.clone(), auth))
        .with_state(admin)
        .merge(crate::dashboard::router())
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    waker: Arc<Waker>,
    scheduler: Arc<Scheduler>,
    token: Secret,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(
        listener,
        router(waker, scheduler, token),
        crate::listener::Limits::default(),
        shutdown,
    )
    .await
}

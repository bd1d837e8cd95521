//! An app front-end (`*.REGION.scalingo.io` on the real service): Scalingo's
//! router in front of the app's `web` containers.
//!
//! A request is routed by its `Host` (or the URI authority), lower-cased,
//! stripped of its port and of a trailing dot, which must read
//! `APP.REGION.scalingo.io` with this listener's region:
//! - the app exists here and a `web` container has been `running` for the
//!   boot window ([`FakeConfig::front_boot_window`](super::FakeConfig)):
//!   **the app answers** (see below);
//! - the app exists but no `web` container serves (stopped, booting, in its
//!   boot window, crashed): **the router's error page**, status
//!   [`FakeConfig::router_status`](super::FakeConfig) (503 by default; 502
//!   and 504 are the knob's other values), `text/html`, with the body marker
//!   [`ROUTER_MARKER`] and a heading `app is stopped|booting|crashed`;
//! - anything else: the router's 404 page (same marker).
//!
//! **How to tell the app from the router** (the signal the gateway's
//! readiness probe relies on): every answer of the app itself carries the
//! header [`APP_HEADER`] `x-paastis-fake-app: APP` (and the older
//! `x-fake-app: APP`); the router's answers never do, and always contain
//! [`ROUTER_MARKER`]. On the real platform the equivalent is an answer
//! other than the router's 502/503/504 HTML page, or one the app marks.
//!
//! What the app answers:
//! - `GET /stream?chunks=N&interval_ms=M` (defaults 10 and 100): 200
//!   `text/plain`, N chunks `chunk I\n` sent M ms apart (the first at once);
//! - a WebSocket upgrade on any path: echoes every text and binary message;
//! - anything else: 200 with a JSON echo `{"app","region","method","path",
//!   "query","headers","body","body_len","body_sha256"}` (`path` without the
//!   query string, `query` null when absent, header names lower-case,
//!   repeated headers joined with `", "`). The request body may be of any
//!   size: it is streamed through SHA-256 (`body_sha256`, lower-case hex) and
//!   counted (`body_len`), never decoded lossily; `body` is the body as text
//!   when it is valid UTF-8 of at most 64 KiB, else null.
//!
//! Every request whose host names an app (existing or not) counts as one
//! front hit for that name. Injected [`Endpoint::Front`] faults apply.
//! Except for the gateway's readiness probes (header [`PROBE_HEADER`]):
//! they count as [`Endpoint::Front`] calls but not as hits of the app, and
//! take no injected fault, so that tests count and disturb only the
//! traffic the gateway forwards.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST, UPGRADE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::http::fault_response;
use super::model::{Endpoint, FaultKind};
use super::state::{FrontState, Shared};

/// The header every answer of the app itself carries (value: the app name),
/// and the router's answers never do.
pub const APP_HEADER: &str = "x-paastis-fake-app";
/// A fixed marker in the body of every router page (error or 404).
pub const ROUTER_MARKER: &str = "<!-- scalingo-router-error-page -->";
/// The header of the gateway's readiness probes (`x-paastis-probe:
/// readiness`).
pub const PROBE_HEADER: &str = "x-paastis-probe";

/// Largest body echoed back as text (larger ones: digest and length only).
const MAX_TEXT_BODY: usize = 64 * 1024;
/// Bounds of `/stream`'s parameters.
const MAX_CHUNKS: u64 = 100_000;
const MAX_INTERVAL_MS: u64 = 600_000;

#[derive(Clone)]
pub(crate) struct Front {
    pub shared: Arc<Shared>,
    pub region: String,
}

pub(crate) fn router(ctx: Front) -> Router {
    Router::new().fallback(serve).with_state(ctx)
}

/// The app a host names in `region`, if it has the right shape.
pub(crate) fn app_from_host(host: &str, region: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(&host);
    let app = host.strip_suffix(&format!(".{region}.scalingo.io"))?;
    (!app.is_empty() && !app.contains('.')).then(|| app.to_string())
}

/// The router's page while no web container of `app` serves.
fn router_page(status: u16, app: &str, reason: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let page = format!(
        "<!doctype html>\n{ROUTER_MARKER}\n<html><head><title>Scalingo - app is {reason}</title></head>\
         <body><h1>app is {reason}</h1><p>{app} has no web container ready to answer.</p></body></html>\n"
    );
    (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn unknown_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!doctype html>\n{ROUTER_MARKER}\n<html><body><h1>404 no such app</h1></body></html>\n"),
    )
        .into_response()
}

async fn serve(State(ctx): State<Front>, req: Request<Body>) -> Response {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let app = app_from_host(&host, &ctx.region);
    let probe = req.headers().contains_key(PROBE_HEADER);
    let fault = {
        let mut inner = ctx.shared.lock();
        inner.count(Endpoint::Front);
        match &app {
            Some(_) if probe => None,
            Some(app) => {
                inner.count_front(app);
                inner.take_fault(Endpoint::Front, Some(app))
            }
            None => inner.take_fault(Endpoint::Front, None),
        }
    };
    if let Some(kind) = fault {
        if let FaultKind::Delay(d) = kind {
            tokio::time::sleep(d).await;
        } else if let Some(res) = fault_response(&kind) {
            return res;
        }
    }
    let Some(app) = app else {
        return unknown_page();
    };
    let (state, router_status) = {
        let mut inner = ctx.shared.lock();
        (
            inner.front_state(&ctx.region, &app),
            inner.knobs.router_status,
        )
    };
    match state {
        FrontState::Unknown => unknown_page(),
        FrontState::Router(reason) => router_page(router_status, &app, reason),
        FrontState::App => {
            let mut res = app_answer(&ctx.region, &app, req).await;
            if let Ok(value) = HeaderValue::from_str(&app) {
                res.headers_mut().insert(APP_HEADER, value.clone());
                res.headers_mut().insert("x-fake-app", value);
            }
            res
        }
    }
}

/// What the app itself answers.
async fn app_answer(region: &str, app: &str, req: Request<Body>) -> Response {
    let is_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_upgrade {
        return match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.on_upgrade(echo_ws),
            Err(rejection) => rejection.into_response(),
        };
    }
    if req.uri().path() == "/stream" {
        return stream(req.uri().query());
    }
    echo(region, app, req).await
}

async fn echo_ws(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            Message::Close(_) => break,
            // Pings are answered by the library.
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

/// `chunks` chunks `interval_ms` apart.
fn stream(query: Option<&str>) -> Response {
    let param = |name: &str, default: u64, max: u64| -> Result<u64, String> {
        let raw = query
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')));
        match raw {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{name} must be an integer in 0..={max}")),
        }
    };
    let (chunks, interval) = match (
        param("chunks", 10, MAX_CHUNKS),
        param("interval_ms", 100, MAX_INTERVAL_MS),
    ) {
        (Ok(c), Ok(i)) => (c, Duration::from_millis(i)),
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let body = futures::stream::unfold(0u64, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn echo(region: &str, app: &str, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut hasher = Sha256::new();
    let mut len: u64 = 0;
    let mut text: Vec<u8> = Vec::new();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return (StatusCode::BAD_REQUEST, "request body broken").into_response();
        };
        hasher.update(&chunk);
        len += chunk.len() as u64;
        if text.len() <= MAX_TEXT_BODY {
            let room = MAX_TEXT_BODY + 1 - text.len();
            text.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    let body = (text.len() <= MAX_TEXT_BODY)
        .then(|| String::from_utf8(text).ok())
        .flatten();
    let echo = json!({
        "app": app,
        "region": region,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": body,
        "body_len": len,
        "body_sha256": hex(&hasher.finalize()),
    });
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        echo.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::app_from_host;

    #[test]
    fn hosts() {
        let r = "osc-fr1";
        assert_eq!(
            app_from_host("my-app.osc-fr1.scalingo.io", r).as_deref(),
            Some("my-app")
        );
        assert_eq!(
            app_from_host("My-App.OSC-FR1.scalingo.io:8080", r).as_deref(),
            Some("my-app")
        );
        assert_eq!(
            app_from_host("my-app.osc-fr1.scalingo.io.", r).as_deref(),
            Some("my-app")
        );
        assert_eq!(app_from_host("my-app.osc-secnum-fr1.scalingo.io", r), None);
        assert_eq!(app_from_host("a.b.osc-fr1.scalingo.io", r), None);
        assert_eq!(app_from_host("osc-fr1.scalingo.io", r), None);
        assert_eq!(app_from_host("127.0.0.1:1234", r), None);
    }
}

//! An app front-end (`*.REGION.scalingo.io` on the real service).
//!
//! A request is routed by its `Host` (or the URI authority), lower-cased,
//! stripped of its port and of a trailing dot, which must read
//! `APP.REGION.scalingo.io` with this listener's region:
//! - the app exists here and runs a `web` container: 200 with a JSON echo
//!   `{"app","region","method","path","query","headers","body"}` (`path`
//!   without the query string, `query` null when absent, header names
//!   lower-case, repeated headers joined with `", "`, `body` decoded as
//!   lossy UTF-8) and the header `x-fake-app: APP`;
//! - the app exists but no `web` container runs: 503 with a small HTML page;
//! - anything else: 404.
//!
//! Every request whose host names an app (existing or not) counts as one
//! front hit for that name. Injected [`Endpoint::Front`] faults apply.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use super::http::fault_response;
use super::model::{Endpoint, FaultKind};
use super::state::Shared;

/// Largest request body echoed back.
const MAX_BODY: usize = 1 << 20;

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

fn stopped_page(app: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><title>{app} is stopped</title></head>\
         <body><h1>app is stopped</h1><p>{app} has no running web container.</p></body></html>\n"
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn unknown_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html>\n<html><body><h1>404 no such app</h1></body></html>\n",
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
    let fault = {
        let mut inner = ctx.shared.lock();
        inner.count(Endpoint::Front);
        if let Some(app) = &app {
            inner.count_front(app);
        }
        inner.take_fault(Endpoint::Front, app.as_deref())
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
    let running = ctx.shared.lock().front_state(&ctx.region, &app);
    match running {
        None => unknown_page(),
        Some(false) => stopped_page(&app),
        Some(true) => echo(&ctx.region, &app, req).await,
    }
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
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };
    let echo = json!({
        "app": app,
        "region": region,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": body,
    });
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE.as_str(), "application/json"),
            ("x-fake-app", app),
        ],
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

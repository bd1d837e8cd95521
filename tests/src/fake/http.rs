//! Response helpers shared by every listener: JSON bodies, the contract's
//! error bodies, injected faults and the `X-Request-Id` middleware.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::model::{FaultKind, RateLimitBody};
use super::state::Knobs;
use super::util::uuid_like;

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// 200 with a JSON body.
pub(crate) fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

/// 404 `{"resource": resource, "error": "not found"}`.
pub(crate) fn not_found(resource: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({ "resource": resource, "error": "not found" }),
    )
}

/// 422 `{"errors": errors}`.
pub(crate) fn unprocessable(errors: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "errors": errors }),
    )
}

/// The rate limit's 429, in the body variant and with the `Retry-After`
/// the knobs ask for.
pub(crate) fn rate_limited(knobs: &Knobs) -> Response {
    let mut res = match knobs.rate_body {
        RateLimitBody::PlainText => too_many_plain(),
        RateLimitBody::Json => too_many_json(),
    };
    if let Some(after) = knobs.retry_after {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// 429 in the JSON variant the contract allows.
pub(crate) fn too_many_json() -> Response {
    json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({ "error": "Too many requests, retry later", "code": "rate_limit_exceeded" }),
    )
}

/// 429 in the plain-text variant.
pub(crate) fn too_many_plain() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Retry later",
    )
        .into_response()
}

/// The contract's body for an error status.
pub(crate) fn status_response(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match code {
        400 => json_response(
            status,
            json!({ "error": "bad request (injected)", "code": "injected" }),
        ),
        401 => error(status, "You are not authorized to do this operation"),
        402 => json_response(
            status,
            json!({
                "name": "free-trial-exceeded",
                "error": "Your free trial has exceeded its limit",
                "url": "https://dashboard.scalingo.com/billing",
            }),
        ),
        404 => not_found("app"),
        422 => unprocessable(json!({ "app": ["injected error"] })),
        429 => too_many_json(),
        500 => error(status, "Internal server error"),
        503 => error(status, "Service temporarily unavailable"),
        _ => error(status, &format!("injected status {code}")),
    }
}

/// The answer an injected fault replaces the normal one with; `None` for the
/// kinds that do not replace it (`Delay`, `OperationError`).
pub(crate) fn fault_response(kind: &FaultKind) -> Option<Response> {
    match kind {
        FaultKind::Status(code) => Some(status_response(*code)),
        FaultKind::TooManyPlainText => Some(too_many_plain()),
        FaultKind::TooManyRetryAfter(secs) => {
            let mut res = too_many_plain();
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(*secs));
            Some(res)
        }
        FaultKind::IsScaling => Some(unprocessable(json!({ "app": ["is scaling"] }))),
        FaultKind::AppBusy(message) => Some(unprocessable(json!({ "app": [message] }))),
        FaultKind::Delay(_) | FaultKind::OperationError(_) => None,
    }
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// JSON 404 for unknown routes.
pub(crate) async fn no_route() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

/// JSON 405 for known routes with the wrong method.
pub(crate) async fn bad_method() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// Middleware: gives every response a fresh `X-Request-Id` and logs the
/// request line and status (never headers: they carry tokens).
pub(crate) async fn request_id(
    State(listener): State<Arc<str>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut res = next.run(req).await;
    let id = uuid_like();
    tracing::info!(
        listener = &*listener,
        %method,
        path,
        status = res.status().as_u16(),
        request_id = id,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", value);
    }
    res
}

//! Bearer tokens on the sidecar's listeners: the admin API's
//! (`PAASTIS_ADMIN_TOKEN`) and the filter-facing API's
//! (`PAASTIS_SIDECAR_TOKEN`). One parser (the scheme is case-insensitive,
//! RFC 7235), one constant-time comparison, one 401 answer.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use paastis_api::{ErrorAnswer, ErrorCode};
use subtle::ConstantTimeEq;

use crate::scalingo::Secret;

/// The credentials of `Authorization: Bearer CREDENTIALS`: the scheme in
/// any case, then one or more spaces. `None` for another scheme, a missing
/// or non-ASCII header, or empty credentials.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let credentials = rest.trim_matches(' ');
    (!credentials.is_empty()).then_some(credentials)
}

/// True when `headers` carry exactly `token`. Constant time over the bytes:
/// only the length can leak, and a token's length is not the secret.
pub fn presents(headers: &HeaderMap, token: &Secret) -> bool {
    bearer(headers)
        .unwrap_or("")
        .as_bytes()
        .ct_eq(token.expose().as_bytes())
        .into()
}

/// 401 `unauthorized` with `WWW-Authenticate: Bearer realm="REALM"`; never
/// says what was presented.
pub fn unauthorized(realm: &'static str) -> Response {
    let answer = ErrorAnswer::new(ErrorCode::Unauthorized, "a valid bearer token is required");
    let mut response = (StatusCode::UNAUTHORIZED, Json(answer)).into_response();
    let challenge = match realm {
        "paastis-admin" => "Bearer realm=\"paastis-admin\"",
        _ => "Bearer realm=\"paastis-sidecar\"",
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// Middleware of the filter-facing routes: with a token configured, a
/// request without it gets [`unauthorized`]; without one (loopback only,
/// see `config::tokens`) everything passes.
pub async fn require_sidecar_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    match &token {
        Some(token) if !presents(request.headers(), token) => unauthorized("paastis-sidecar"),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "bEaReR  tok",
            "Bearer tok ",
        ] {
            assert_eq!(bearer(&with(value)), Some("tok"), "{value:?}");
        }
    }

    #[test]
    fn other_schemes_and_empty_credentials_are_none() {
        for value in ["Basic dG9rOg==", "Bearertok", "Bearer", "Bearer   ", "tok"] {
            assert_eq!(bearer(&with(value)), None, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn presents_only_the_exact_token() {
        let token = Secret::new("0123456789abcdef");
        assert!(presents(&with("bearer 0123456789abcdef"), &token));
        assert!(!presents(&with("Bearer 0123456789abcdeF"), &token));
        assert!(!presents(&with("Bearer 0123456789abcde"), &token));
        assert!(!presents(&HeaderMap::new(), &token));
    }
}

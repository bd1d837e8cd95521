//! The operator dashboard: one static page on the admin listener that asks
//! for the admin token once (kept in the tab's `sessionStorage`, never in a
//! cookie) and calls the admin JSON API with it ([`crate::admin`]).
//!
//! The page holds no data, so its three files are served without auth:
//!
//! | path | what |
//! |---|---|
//! | `/`, `/dashboard` | the page (`index.html`) |
//! | `/dashboard/dashboard.js` | its script |
//! | `/dashboard/dashboard.css` | its style |
//!
//! Every one is embedded in the binary (`include_str!`, no asset from
//! elsewhere) and carries [`CSP`]: only same-origin scripts, styles and
//! API calls, no inline script or style, no framing.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page's Content-Security-Policy: same origin for scripts, styles and
/// calls, nothing inline, no plugin, no framing, no form posted elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// Paths of the page and its assets, for the docs and the tests.
pub const PATHS: [&str; 4] = [
    "/",
    "/dashboard",
    "/dashboard/dashboard.js",
    "/dashboard/dashboard.css",
];

const INDEX_HTML: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The page changes with the binary only; no-cache keeps an upgraded
    // sidecar from serving a stale script beside a new page.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The dashboard's routes, without auth (merge them beside the admin API's
/// authenticated ones).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/dashboard.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_has_no_inline_code() {
        assert!(INDEX_HTML.contains(r#"<script src="/dashboard/dashboard.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/dashboard/dashboard.css">"#));
        // One script tag (the external one), no inline style or handler.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        for inline in [
            "<style",
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!INDEX_HTML.contains(inline), "{inline} in the page");
        }
        // Nothing from elsewhere.
        for text in [INDEX_HTML, SCRIPT, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
    }

    #[test]
    fn the_token_stays_in_the_tab() {
        assert!(SCRIPT.contains("sessionStorage"));
        assert!(!SCRIPT.contains("localStorage"));
        assert!(!SCRIPT.contains("document.cookie"));
        // innerHTML would let an app name or event text inject markup.
        assert!(!SCRIPT.contains("innerHTML"));
    }

    #[test]
    fn the_policy_is_at_least_the_required_one() {
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CSP.contains(part), "{part}");
        }
        assert!(!CSP.contains("unsafe"));
    }
}

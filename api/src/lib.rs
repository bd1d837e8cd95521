//! `paastis-api`: the contract between the filter and the sidecar, written
//! once. Both sides build their requests and answers from these types; this
//! page is the protocol's one description.
//!
//! It owns the paths, every request and answer body, the error codes
//! ([`ErrorCode`]) and the wake note one sidecar instance leaves for the
//! others ([`WakeNote`]). It must depend on nothing but `serde` (and
//! `serde_json` for the note's text form), plus `miniserde` behind the
//! feature of the same name, which only the filter enables: module `mini`,
//! the filter's JSON for the same types, far smaller in its `.wasm` than
//! serde_json, and checked against serde by this crate's tests. It builds
//! for `wasm32-wasip1` (the filter) and natively (the sidecar), and knows neither proxy-wasm nor
//! tokio. It checks shapes, not meanings: the filter validates what it
//! receives on top (app names, regions, upstream hosts).
//!
//! # Conventions
//!
//! - Bodies are JSON (`content-type: application/json`), both ways.
//! - Requests are strict: the sidecar refuses unknown fields (422, axum's
//!   rejection, plain text: not an [`ErrorAnswer`]).
//! - Answers may gain fields: readers ignore the ones they do not know, and
//!   the fields a reader does not need have defaults (noted per type).
//! - Every error answer is [`ErrorAnswer`]:
//!   `{"error": code, "message": text, "retry_after"?: seconds}`, with the
//!   HTTP status of its code ([`ErrorCode::status`]). `wake_failed` and
//!   `wake_timeout` carry `retry_after`, and a `Retry-After` header with
//!   the same seconds.
//!
//! # Endpoints (sidecar, called by the filter)
//!
//! Every request carries `Authorization: Bearer TOKEN` when the filter has
//! a `sidecar_token`; a sidecar with `PAASTIS_SIDECAR_TOKEN` answers 401
//! `unauthorized` (with `WWW-Authenticate: Bearer`) to a request of these
//! endpoints without it or with another token. The scheme is
//! case-insensitive (RFC 7235).
//!
//! | method | path | request | answers |
//! |---|---|---|---|
//! | POST | [`WAKE_PATH`] | [`WakeRequest`] `{"app", "region": name \| null, "client"?: "browser" \| "api", "verify"?: true}` | 200 [`WakeAnswer`] (the app runs); 202 [`WaitingAnswer`] (a browser, `waiting_page` strategy: the wake goes on in the background); 400 `invalid_app`; 404 `unknown_app`; 503 `wake_failed`; 504 `wake_timeout` |
//! | GET | [`STATUS_PATH`]`?app=NAME` ([`StatusQuery`]) | | 200 [`StatusAnswer`] (where the wake of a waiting page stands; a failed wake carries `error` and its human `reason`); 400 `invalid_app`; 503 `wake_failed` (the rules cannot resolve the app) |
//! | POST | [`ACTIVITY_PATH`] | [`ActivityRequest`] `{"apps": [names], "not_running"?: [names], "held"?: [names], "vm"?: id, "lease_ms"?: ms}` (also the renewal of the VM's awake leases, see [`ActivityRequest`]'s module) | 200 [`ActivityAnswer`] `{"awake": [{"app", "region", "upstream_host"}], "asleep": [names]}` |
//!
//! # The traffic tells the truth, and the router's page never reaches a user
//!
//! The filter watches the answers to the requests it routed: a 502, 503 or
//! 504 ([`is_router_status`]) is what the platform's router answers for an
//! app with no serving container (stopped, crashed, booting). The filter
//! then drops the app from its cache at once, gives its lease back,
//! reports it in the next activity flush (`not_running`), and **holds the
//! answer**: it asks the sidecar `{"verify": true, "background": true}`.
//! The sidecar checks the app (its front on `health_path`, once per app
//! per period). An app that serves answers 200, and the filter passes the
//! app's own answer on; otherwise the sidecar starts the wake in the
//! background and answers 202, and the filter replaces the router's page
//! with the waiting page (a browser) or a 503 JSON with `Retry-After` (any
//! other client). The cost of the choice: an app that answers 503 itself
//! gets one deduplicated check per period, and each of its 503s a callout
//! (answered from the sidecar's memory) before it is passed on.
//!
//! # Public status (filter, called by the waiting page)
//!
//! [`PUBLIC_STATUS_PATH`] on every host the filter maps to an app is
//! answered by the filter itself: 200 [`PublicStatus`] `{"app", "ready",
//! "apps": [{"app", "state"}], "error"?: code}`, or 503 (with `Retry-After`)
//! and `"error": "unavailable"` when the sidecar cannot tell.
//!
//! # Local replies (filter, to clients)
//!
//! When the filter answers a request itself (bad host, unknown app, a wake
//! that failed, the sidecar unreachable), a program gets
//! [`LocalReplyBody`] `{"error": code, "message": text, "app": name | null}`
//! and a browser an HTML page, both with `cache-control: no-store` (and
//! `Retry-After` on 503s).
//!
//! # Between sidecar instances
//!
//! The instance that led a wake leaves a [`WakeNote`] in the registry for
//! the instances that waited on it: where the app runs, or the failure with
//! its [`ErrorCode`] (so a leader's timeout reaches them as `wake_timeout`).

mod activity;
mod error;
// Also in this crate's own tests, which check it against serde.
#[cfg(any(test, feature = "miniserde"))]
pub mod mini;
#[cfg(test)]
mod mini_tests;
mod note;
mod status;
mod wake;

pub use activity::{ActivityAnswer, ActivityRequest, RunningApp};
pub use error::{ErrorAnswer, ErrorCode, LocalReplyBody, UnknownCode};
pub use note::WakeNote;
pub use status::{AppState, AppStatus, PublicStatus, StatusAnswer, StatusQuery};
pub use wake::{Client, LinkedResult, WaitingAnswer, WakeAnswer, WakeRequest};

/// True for a status the platform's router answers with while no web
/// container of the app serves (stopped, booting, crashed, paused): 502,
/// 503 or 504, the codes Scalingo documents for its router's error pages.
///
/// This is the one definition of the signal, used by the filter (an answer
/// to a request it routed) and the sidecar (its readiness and verify
/// probes of the app's front). The status alone cannot tell the router's
/// page from an app that answers 503 itself, so the filter never acts on
/// it alone: it holds the answer and asks the sidecar, which probes the
/// app's `health_path` on its front; an app that answers there serves, and
/// its own 503 is passed on. The project's fake Scalingo gives the same
/// signal (its router pages are 503 by default, 502 or 504 by a knob, and
/// never carry the fake app's header).
pub const fn is_router_status(status: u32) -> bool {
    matches!(status, 502..=504)
}

/// `POST`: wake an app (see [`WakeRequest`]).
pub const WAKE_PATH: &str = "/v1/wake";
/// `GET ?app=NAME`: where the wake of a waiting page stands (see
/// [`StatusQuery`]).
pub const STATUS_PATH: &str = "/v1/status";
/// `POST`: the apps the filter served (see [`ActivityRequest`]).
pub const ACTIVITY_PATH: &str = "/v1/activity";
/// The waiting page's status, reserved on every gateway host and answered by
/// the filter (never routed).
pub const PUBLIC_STATUS_PATH: &str = "/.well-known/paastis/status";

//! Client for the subset of the Scalingo API that the sidecar needs: token
//! exchange, regions, apps, formation, scaling, operations and processes.
//!
//! The contract is `/work/shared/scalingo-api.md`; this module follows it and
//! works against the real API unchanged (only base URLs differ in tests).
//! Besides the calls above it reads and re-enables autoscalers.
//!
//! - [`auth`]: the [`Secret`] wrapper and the API-token -> JWT exchange, with
//!   one cached JWT shared by every caller.
//! - [`client`]: [`ScalingoClient`], thin: one method per API call, made of
//!   the parts below.
//! - `transport`: the HTTP requests, the bearer and the JWT exchange, reading
//!   and decoding answers, with the one retry policy of `retry` (back-off and
//!   `Retry-After`); every try first takes a slot of the gateway's
//!   [`Budget`](crate::budget::Budget) at its caller's priority, and a 429
//!   pauses that budget.
//! - `locator`: the region list cache and the app -> region cache.
//! - [`polling`]: the loops that wait for an operation to end or for `ps` to
//!   show a running web container.
//! - `urls`: the URLs the client builds (validated names, encoded segments)
//!   and the `Location` it trusts.
//! - [`config`]: [`ScalingoConfig`], [`ScalingoTuning`], [`RetryPolicy`].
//! - [`types`]: what the API returns, with open enums for status strings.
//! - [`error`]: [`ScalingoError`] and the mapping of error responses.
//!
//! Invariants kept throughout:
//! - an app name is checked with [`paastis_rules::is_valid_app_name`] before
//!   any URL is built from it, and every path segment is percent-encoded;
//! - the API token and the JWT never reach a log line or a `Debug` output;
//! - the bearer is only sent to the auth URL and to the regional API bases
//!   listed by `/v1/regions` (redirects are not followed; a `Location` on
//!   another host is refused);
//! - every call is bounded (per-request timeout, bounded retries, and the
//!   `wait_*` helpers take a deadline);
//! - no request leaves without a budget slot (the token exchange included).

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
mod locator;
pub mod polling;
mod retry;
mod transport;
pub mod types;
mod urls;

#[cfg(test)]
mod stub;

/// Re-exported so that callers can build a [`ScalingoConfig`] without their own `url` dependency.
pub use url::Url;

pub use auth::Secret;
pub use client::ScalingoClient;
pub use config::{
    RetryPolicy, ScalingoConfig, ScalingoTuning, DEFAULT_AUTH_URL, DEFAULT_BUDGET_WAIT,
    DEFAULT_NEGATIVE_TTL, DEFAULT_OPERATION_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_BASE_DELAY, DEFAULT_RETRY_MAX_DELAY,
};
pub use error::ScalingoError;
pub use locator::{FAILED_SCAN_RETRY, REGIONS_TTL};
pub use polling::WEB_POLL_DELAYS;
pub use types::{
    web_running, App, AppStatus, Autoscaler, ContainerAmount, ContainerType, Operation,
    OperationStatus, Process, ProcessState, Region, ScaleOutcome,
};

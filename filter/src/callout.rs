//! The filter's three callouts to the sidecar (wake, status, activity): one
//! kind enum, one place that builds their headers and dispatches them, and
//! the bookkeeping that ties an answer to its callout by token.

use std::time::Duration;

use paastis_api::{StatusQuery, ACTIVITY_PATH, WAKE_PATH};

use crate::activity::{activity_body, Renewal, ACTIVITY_TIMEOUT_MS};
use crate::config::Config;
use crate::host::{Host, HostError};
use crate::waiting::STATUS_TIMEOUT_MS;
use crate::wake::wake_body;

/// A request held while the sidecar wakes its app, with what routing it
/// afterwards needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeCall {
    pub app: String,
    /// The region the host rule pins, if any.
    pub rule_region: Option<String>,
    /// The region of the app's last cache entry, expired or not: where
    /// `failure_policy: open` sends it when no rule pins one.
    pub last_region: Option<String>,
    /// `:authority` as received.
    pub original_host: String,
    pub origin: Option<String>,
    pub wants_html: bool,
    /// A browser navigating: the sidecar may answer with the waiting page.
    pub browser: bool,
    /// The cache held a tombstone (the traffic showed the app not running):
    /// the sidecar must verify the app before answering from memory.
    pub verify: bool,
    /// The expired entry (cluster, upstream host) that may still route if
    /// the sidecar cannot be reached (serve stale).
    pub stale: Option<(String, String)>,
    /// The backstop: the request was routed and the platform's router
    /// answered it; its answer is held while the sidecar checks the app
    /// (and wakes it in the background): see [`crate::stream`].
    pub backstop: bool,
}

/// One callout to the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callout {
    /// `POST /v1/wake`, from an HTTP context whose request is paused (boxed:
    /// the other kinds are small).
    Wake(Box<WakeCall>),
    /// `GET /v1/status?app=`, for the waiting page's status path (the
    /// request is answered with the status, never routed).
    Status { app: String },
    /// `POST /v1/activity`, from the root context's tick.
    Activity {
        /// Sorted (the answer is checked against it by binary search).
        batch: Vec<String>,
        /// Apps the traffic showed not running (reported, never refreshed
        /// from this answer).
        not_running: Vec<String>,
        /// The other apps the VM holds a lease on (sorted): renewed.
        held: Vec<String>,
        /// The VM's id (see [`crate::shared::Shared::vm_id`]).
        vm: std::rc::Rc<str>,
        started_ms: u64,
    },
}

impl WakeCall {
    /// The region `failure_policy: open` routes to, when any is known: the
    /// host rule's, else the one the cache last knew.
    pub fn known_region(&self) -> Option<&str> {
        self.rule_region.as_deref().or(self.last_region.as_deref())
    }
}

impl Callout {
    /// For logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Wake(_) => "wake",
            Self::Status { .. } => "status",
            Self::Activity { .. } => "activity",
        }
    }

    /// How long the host waits for the answer: the configured callout
    /// timeout, bounded for the callouts the sidecar answers from memory.
    pub fn timeout_ms(&self, config: &Config) -> u64 {
        match self {
            Self::Wake(_) => config.callout_timeout_ms,
            Self::Status { .. } => config.callout_timeout_ms.min(STATUS_TIMEOUT_MS),
            Self::Activity { .. } => config.callout_timeout_ms.min(ACTIVITY_TIMEOUT_MS),
        }
    }

    /// The cluster the callout goes to: a first request's wake (no usable
    /// entry, not the backstop's check) may wait for the sidecar to come
    /// back (`sidecar_hold_cluster`); every other callout must fail fast, so
    /// that the filter knows the sidecar is down and serves stale entries
    /// without waiting.
    pub fn cluster<'c>(&self, config: &'c Config) -> &'c str {
        match self {
            Self::Wake(call) if call.stale.is_none() && !call.backstop => {
                &config.sidecar_hold_cluster
            }
            _ => &config.sidecar_cluster,
        }
    }
}

/// A callout waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub token: u32,
    pub callout: Callout,
}

/// The callout `token` answers, taken out of `slot`; `None` (and `slot`
/// left as it was) for an answer to no callout of this context.
pub fn answered(slot: &mut Option<InFlight>, token: u32) -> Option<Callout> {
    match slot.take() {
        Some(inflight) if inflight.token == token => Some(inflight.callout),
        other => {
            *slot = other;
            None
        }
    }
}

/// Sends `callout` to the sidecar cluster, with `Authorization: Bearer
/// TOKEN` when the configuration has a `sidecar_token` (every kind of
/// callout: this is their one dispatch). `request_id` (the client request's
/// `x-request-id`) is passed on for the sidecar's logs. On failure the
/// callout is handed back with the host's error.
pub fn dispatch(
    host: &impl Host,
    config: &Config,
    callout: Callout,
    request_id: Option<&str>,
) -> Result<InFlight, (Callout, HostError)> {
    let (method, path, body) = match &callout {
        Callout::Wake(w) => (
            "POST",
            WAKE_PATH.to_owned(),
            Some(wake_body(
                &w.app,
                w.rule_region.as_deref(),
                w.browser,
                w.verify,
                w.backstop,
            )),
        ),
        Callout::Status { app } => ("GET", StatusQuery::path(app), None),
        Callout::Activity {
            batch,
            not_running,
            held,
            vm,
            ..
        } => (
            "POST",
            ACTIVITY_PATH.to_owned(),
            Some(activity_body(
                batch,
                not_running,
                held,
                Some(Renewal {
                    vm,
                    lease_ms: config.cache_ttl_ms,
                }),
            )),
        ),
    };
    let mut headers = vec![
        (":method", method),
        (":path", path.as_str()),
        (":authority", config.sidecar_authority.as_str()),
    ];
    headers.push(match body {
        Some(_) => ("content-type", "application/json"),
        None => ("accept", "application/json"),
    });
    if let Some(id) = request_id {
        headers.push(("x-request-id", id));
    }
    // The shared secret of a sidecar that requires one; never logged.
    let authorization = config.sidecar_token.as_ref().map(|t| t.authorization());
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    let timeout = Duration::from_millis(callout.timeout_ms(config));
    match host.dispatch(callout.cluster(config), &headers, body.as_deref(), timeout) {
        Ok(token) => Ok(InFlight { token, callout }),
        Err(e) => Err((callout, e)),
    }
}

//! `paastis-filter`: the proxy-wasm HTTP filter of the Paastis gateway.
//!
//! Public traffic for `APP.gateway.example.com` reaches Envoy; this filter
//! maps the host to a Scalingo app and sets the request header that the Envoy
//! route reads with `cluster_header` to pick the regional upstream cluster.
//! An app known to be awake is routed at once from a shared cache; otherwise
//! the request is paused while the sidecar wakes the app.
//!
//! It owns the request path and its glue; the wire contract is
//! `paastis-api`'s, the configuration `paastis-filter-config`'s, the host
//! rules `paastis-rules`'. Only `ffi` and `plugin` (wasm32) may call
//! proxy-wasm; nothing here depends on the sidecar.
//!
//! # Configuration
//!
//! The plugin `configuration` is a JSON object, validated once in the root
//! context's `on_configure` by the `paastis-filter-config` crate (re-exported
//! here as [`config`]; its docs list every field). On any error the filter
//! logs `invalid configuration: <field>: <why>` at critical level and refuses
//! to load.
//!
//! # Request path
//!
//! 1. Every inbound header used for routing or internal signalling is
//!    removed first: the routing header, every `x-paastis-*` header and
//!    `x-forwarded-host`. A client can never pick a cluster.
//! 2. `:authority` (or `host`) is normalised ([`paastis_rules::normalize_host`])
//!    and matched against the host rules: an invalid host or app name is a
//!    local 400; an unmatched host a 404 or a pass-through.
//! 3. Cache hit (shared data `paastis/app/<app>`, see [`cache`]): set the
//!    routing header to the cluster, `x-forwarded-host` to the host as
//!    received, `:authority` to the upstream host, and `Origin` to the
//!    upstream's origin when it was the original host's; record activity and
//!    continue. No callout, and no clock read unless the entry expires within
//!    two ticks of the VM's last reading ([`shared::Shared::surely_before`]).
//! 4. Miss: `POST /v1/wake {"app","region"}` to the sidecar, request paused;
//!    a browser's `GET` (`Accept: text/html`) adds `"client":"browser"`.
//! 5. The sidecar's answer ([`wake`]): 200 writes the cache, sets the headers
//!    as on a hit and resumes; 202 (the app's rules say `waiting_page`, the
//!    wake goes on in the background) sends the waiting page ([`waiting`]);
//!    404/400 become local 404/400; 503/504 a local 503 with `Retry-After`;
//!    anything else applies `failure_policy`.
//! 6. Local replies ([`reply`]) are HTML for browsers, JSON otherwise, never
//!    cached.
//! 7. `/.well-known/paastis/status` on a host that maps to an app is the
//!    waiting page's status, answered by the filter and never routed: ready
//!    from a fresh cache entry, else from `GET /v1/status?app=NAME` to the
//!    sidecar (a ready answer writes the cache).
//! 8. Activity ([`activity`]): apps routed since the last tick, plus apps
//!    with open streams, are sent in one `POST /v1/activity {"apps":[...]}`
//!    per tick; the answer refreshes the cache entries of the apps the
//!    sidecar knows awake and drops the others (`asleep`). A failed flush is
//!    merged back (at most 10,000 apps).
//! 9. The response to a routed request ([`stream`]): a 502/503/504 is the
//!    platform's router answering for an app with no serving container; the
//!    app's entry is dropped (a tombstone: its next wake asks the sidecar to
//!    verify) and it is reported in the next flush (`not_running`).
//! 10. Sidecar outage ([`outage`]): once a callout got no usable answer,
//!     apps whose entry expired less than `stale_ttl_ms` ago are routed
//!     without a callout until a callout succeeds again; the warnings are
//!     rate-limited (one line per period, with a count).
//!
//! # Metrics
//!
//! Counters (see [`metrics`]), shown by Envoy with its `wasmcustom.` prefix:
//! `paastis.cache_hit`, `paastis.cache_miss`, `paastis.callout`,
//! `paastis.callout_error`, `paastis.wake_failed`, `paastis.host_rejected`,
//! `paastis.unmatched`, `paastis.activity_flush`,
//! `paastis.activity_flush_error`, `paastis.waiting_page`,
//! `paastis.status_callout`, `paastis.stale_hit`, `paastis.not_running`.
//!
//! # Layout
//!
//! Every decision is a pure function in a plain-Rust module, tested natively
//! (`cargo test -p paastis-filter`). The wire types come from `paastis-api`
//! (the filter defines none of its own); [`answer`] is the vocabulary of
//! reading them (status, content type, [`answer::AnswerError`], a validated
//! [`answer::Awake`]), used by the three callout modules ([`wake`],
//! [`waiting`], [`activity`]), none of which imports another but `wake` ->
//! `waiting` (for the page).
//!
//! The glue carries the decisions out through the [`host::Host`] seam, and
//! is tested natively against a fake host (`glue_tests`): [`stream`] (one
//! HTTP context: headers, local replies, the wake and status callouts),
//! [`flusher`] (the root context's activity flush), [`callout`] (the one
//! callout kind enum, keyed by token, and the one place that builds and
//! dispatches callouts) and [`shared`] (the per-VM state). Compiled only for
//! `wasm32`: `ffi` (the raw host calls, the real `Host`) and `plugin` (the
//! proxy-wasm contexts, which only hand each event to the glue).

pub mod activity;
pub mod answer;
pub mod cache;
/// The plugin configuration (the `paastis-filter-config` crate).
pub use paastis_filter_config as config;
pub mod decide;
pub mod headers;
pub mod metrics;
pub mod outage;
pub mod reply;
pub mod waiting;
pub mod wake;

pub mod callout;
pub mod flusher;
pub mod host;
pub mod shared;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod ffi;
#[cfg(target_arch = "wasm32")]
mod plugin;

#[cfg(test)]
mod fake_host;
#[cfg(test)]
mod glue_hot_tests;
#[cfg(test)]
mod glue_open_tests;
#[cfg(test)]
mod glue_tests;
#[cfg(test)]
mod glue_tests_truth;
#[cfg(test)]
mod glue_token_tests;

pub use config::{Config, ConfigError, FailurePolicy, Scheme, UnmatchedHosts};
pub use decide::{decide, route_edits, Decision, RouteEdits, Target};
pub use headers::{HeaderPairs, RequestView};
pub use reply::{LocalReply, RenderedReply, ReplyKind};
pub use waiting::{is_status_path, StatusReport, WaitingPage, STATUS_PATH};
pub use wake::{after_wake, failure_action, parse_wake_answer, WakeAction, WakeOutcome};

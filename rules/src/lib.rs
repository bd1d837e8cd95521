//! The rules model shared by the filter and the sidecar, so that both agree
//! on what a host means and which app it names.
//!
//! - [`host`]: strict Host/`:authority` normalisation and the host rules that
//!   map a host to an app (used by the filter on every request).
//! - [`app`]: Scalingo's app-name rule (applied before a name is used anywhere).
//! - [`paastis`]: the `paastis.yml` rule semantics of the Node.js Paastis
//!   (`pattern`, `app_name`, `linked_apps`, `app_max_idle_time`, `$1..$9`),
//!   plus `region` and the wake `strategy`.
//!
//! Everything here is pure and allocation-light; it compiles for
//! `wasm32-wasip1` and never panics on any input. It must depend on no other
//! crate of the workspace (both sides depend on it) and on nothing that does
//! I/O or needs a host (no proxy-wasm, no tokio).

pub mod app;
pub mod host;
pub mod paastis;
pub mod template;

pub use app::{is_valid_app_name, APP_NAME_MAX, APP_NAME_MIN};
pub use host::{
    check_region, normalize_host, HostError, HostMatch, HostRule, HostRules, RuleError,
};
pub use paastis::{
    is_valid_health_path, AppRule, AppRuleError, AppRules, ResolveError, ResolvedApp, Strategy,
    DEFAULT_HEALTH_PATH, MAX_HEALTH_PATH, MAX_LINKED_APPS, MAX_PREWARM_MINUTES,
};

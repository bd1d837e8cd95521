//! The seam between orchestration (waking, pausing, the admin API) and the
//! platform that runs the apps.
//!
//! [`Platform`] is exactly what the orchestration asks of Scalingo: where an
//! app lives, its formation, a scale and the wait for it to take effect
//! (single reads of the operation and of the app's status, and a probe of
//! the app's own front, which is no API call: [`front`]), its autoscalers,
//! and the listing of regions and apps. [`scalingo::ScalingoPlatform`]
//! implements it over the [`ScalingoClient`](crate::scalingo::ScalingoClient)
//! and the fronts; [`memory::InProcessPlatform`] is a controllable
//! implementation on tokio's clock (crash loops, operation errors, slow
//! scale-downs, autoscalers, fronts), so that the wake and pause logic is
//! unit tested without HTTP.
//!
//! This module knows nothing of the registry, the waker or the scheduler.
//! Errors are [`ScalingoError`]: the vocabulary the callers already map to
//! answers (not found, busy, rate limited, timeout ...).

pub mod front;
pub mod memory;
pub mod scalingo;

use async_trait::async_trait;
use tokio::time::Instant;

pub use crate::scalingo::{AppStatus, ContainerAmount, ContainerType, ScaleOutcome, ScalingoError};

/// One app as a region lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedApp {
    pub name: String,
    pub status: AppStatus,
}

impl ListedApp {
    /// Whether the app runs containers (neither stopped nor never deployed):
    /// the apps the scheduler may pause.
    pub fn is_running(&self) -> bool {
        !matches!(self.status, AppStatus::Stopped | AppStatus::New)
    }
}

/// Where a scale operation stands, from one read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationState {
    /// `pending` or `running` (or a status this gateway does not know).
    Running,
    Done,
    /// `error`, with its message.
    Failed(String),
}

/// What one request to an app's own front (not the API) tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontProbe {
    /// The app itself answered: it serves requests.
    App,
    /// The platform's router answered for it (502/503/504): no `web`
    /// container serves yet (stopped, booting, crashed).
    Router,
    /// No HTTP answer (DNS, connect, TLS, timeout): the front cannot be
    /// probed from here, readiness falls back to the API.
    Unreachable(String),
}

/// An app's autoscaler, as far as a pause and a wake need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoscalerState {
    pub id: String,
    /// The process type it scales (`web` ...).
    pub container_type: String,
    pub disabled: bool,
}

/// What the orchestration needs of the platform that runs the apps.
///
/// Invariants every implementation keeps:
/// - `wait_*` return by `deadline` at the latest ([`ScalingoError::Timeout`]);
/// - `scale` with no change is [`ScaleOutcome::NoChange`], not an error;
///   another operation in progress is [`ScalingoError::Busy`].
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// The names of the usable regions.
    async fn regions(&self) -> Result<Vec<String>, ScalingoError>;
    /// Every app of `region`.
    async fn list_apps(&self, region: &str) -> Result<Vec<ListedApp>, ScalingoError>;
    /// The region of `app`, or `None` when no usable region has it.
    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError>;
    /// The region a listing or a locate of this process last found `app`
    /// in, if any: no call (a cache). An app found there exists.
    fn listed_region(&self, app: &str) -> Option<String> {
        let _ = app;
        None
    }
    /// The formation (amount per process type); empty for a never-deployed app.
    async fn formation(&self, region: &str, app: &str)
        -> Result<Vec<ContainerType>, ScalingoError>;
    /// [`formation`](Self::formation) for a caller that may wait for the
    /// API budget until `deadline` (a wake: its own deadline). The default
    /// ignores the deadline (a platform without a budget).
    async fn formation_until(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        let _ = deadline;
        self.formation(region, app).await
    }
    /// Sets the amounts of the given process types; others keep theirs.
    async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError>;
    /// [`scale`](Self::scale) for a caller that may wait for the API
    /// budget until `deadline` (a wake: its own deadline). The default
    /// ignores the deadline (a platform without a budget).
    async fn scale_until(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
        deadline: Instant,
    ) -> Result<ScaleOutcome, ScalingoError> {
        let _ = deadline;
        self.scale(region, app, changes).await
    }
    /// One read of `ps` (one API call): whether at least one `web`
    /// container runs. The read waits for a slot of the API budget until
    /// `deadline` (a wake's own deadline); when none would come by then it
    /// fails at once with [`ScalingoError::BudgetExhausted`].
    async fn web_running_until(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<bool, ScalingoError>;
    /// One read of an operation (one API call), sent only if the API budget
    /// has a slot free right now: otherwise [`ScalingoError::BudgetExhausted`]
    /// at once (the read is skipped, never waited for).
    async fn operation_state(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
    ) -> Result<OperationState, ScalingoError>;
    /// One read of the app's status (one API call), sent only if the API
    /// budget has a slot free right now, as [`Self::operation_state`].
    async fn app_status(&self, region: &str, app: &str) -> Result<AppStatus, ScalingoError>;
    /// One request to the app's own front at `path` (no API call).
    async fn probe_front(&self, region: &str, app: &str, path: &str) -> FrontProbe;
    /// The app's autoscalers (one API call).
    async fn autoscalers(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<AutoscalerState>, ScalingoError>;
    /// Turns autoscaler `id` off or back on (one API call).
    async fn set_autoscaler_disabled(
        &self,
        region: &str,
        app: &str,
        id: &str,
        disabled: bool,
    ) -> Result<(), ScalingoError>;
}

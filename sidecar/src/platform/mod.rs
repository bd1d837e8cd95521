//! The seam between orchestration (waking, pausing, the admin API) and the
//! platform that runs the apps.
//!
//! [`Platform`] is exactly what the orchestration asks of Scalingo: where an
//! app lives, its formation, a scale and the wait for it to take effect, and
//! the listing of regions and apps. [`ScalingoClient`](crate::scalingo::ScalingoClient)
//! implements it ([`scalingo`]); [`memory::InProcessPlatform`] is a
//! controllable implementation on tokio's clock, so that the wake and pause
//! logic is unit tested without HTTP.
//!
//! This module knows nothing of the registry, the waker or the scheduler.
//! Errors are [`ScalingoError`]: the vocabulary the callers already map to
//! answers (not found, busy, rate limited, timeout ...).

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
    /// The formation (amount per process type); empty for a never-deployed app.
    async fn formation(&self, region: &str, app: &str)
        -> Result<Vec<ContainerType>, ScalingoError>;
    /// Sets the amounts of the given process types; others keep theirs.
    async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError>;
    /// Waits until the operation a scale started is done.
    async fn wait_operation(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError>;
    /// Waits until at least one `web` container runs.
    async fn wait_web_running(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError>;
}

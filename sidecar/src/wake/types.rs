//! The vocabulary of a wake: its answer, its errors, and what this instance
//! knows of an app. A leaf of the `wake` module (its siblings import it, it
//! imports none of them).

use std::time::Duration;

use paastis_rules::ResolveError;
use thiserror::Error;

use crate::awake::Awake;
use crate::scalingo::ScalingoError;

/// Why a wake failed. Mapped to HTTP answers in one place (`server`).
#[derive(Debug, Clone, Error)]
pub enum WakeError {
    #[error("{0:?} is not a valid Scalingo app name")]
    InvalidApp(String),
    #[error("no app named {0:?} in any region")]
    UnknownApp(String),
    #[error("app {0:?} has no web process type (never deployed?)")]
    NoWebProcess(String),
    #[error("app {0:?} did not start in time")]
    Timeout(String),
    #[error("{0}")]
    Rules(#[from] ResolveError),
    #[error("waking {app:?} failed: {source}")]
    Provider {
        app: String,
        #[source]
        source: ScalingoError,
    },
    #[error("waking {0:?} stopped unexpectedly")]
    Aborted(String),
    #[error("waking {app:?} failed on another gateway instance: {message}")]
    Elsewhere { app: String, message: String },
    /// The app itself cannot start: its scale operation ended in `error`,
    /// or it crashed.
    #[error("app {app:?} failed to start: {reason}")]
    AppFailed { app: String, reason: String },
    /// A recent wake of the app failed: no new one before `retry_after`.
    #[error("app {app:?} failed to start recently ({reason}); next try in {} s", retry_after.as_secs())]
    BackingOff {
        app: String,
        reason: String,
        retry_after: Duration,
    },
}

impl WakeError {
    /// A platform error while waking `app`, with the errors that have a
    /// meaning of their own (unknown app, timeout ...) lifted out.
    pub fn provider(app: &str, source: ScalingoError) -> Self {
        match source {
            ScalingoError::NotFound => Self::UnknownApp(app.to_owned()),
            ScalingoError::InvalidAppName(_) => Self::InvalidApp(app.to_owned()),
            ScalingoError::Timeout => Self::Timeout(app.to_owned()),
            ScalingoError::OperationFailed(message) => Self::AppFailed {
                app: app.to_owned(),
                reason: format!("the scale operation failed: {message}"),
            },
            source => Self::Provider {
                app: app.to_owned(),
                source,
            },
        }
    }

    /// Why the wake failed, for the waiting page: the app's own failure,
    /// or the error's text.
    pub fn reason(&self) -> String {
        match self {
            Self::AppFailed { reason, .. } | Self::BackingOff { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }

    /// Whether this failure starts a back-off for the app
    /// ([`crate::backoff`]): failures of the app or of its scale, not those
    /// of the request (bad or unknown name, rules), of the gateway's own
    /// budget (rate limit) or already counted (another instance's, a
    /// back-off).
    pub fn backs_off(&self) -> bool {
        match self {
            Self::AppFailed { .. } | Self::Timeout(_) | Self::NoWebProcess(_) => true,
            Self::Provider { source, .. } => !matches!(
                source,
                ScalingoError::RateLimited | ScalingoError::BudgetExhausted
            ),
            Self::InvalidApp(_)
            | Self::UnknownApp(_)
            | Self::Rules(_)
            | Self::Aborted(_)
            | Self::Elsewhere { .. }
            | Self::BackingOff { .. } => false,
        }
    }
}

/// The answer to one wake request (a type of the filter-sidecar contract).
pub use paastis_api::{LinkedResult, WakeAnswer};

/// What an instance knows of an app right now, without asking the platform:
/// seen running within the awake TTL, being woken, or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeState {
    Running(Awake),
    Waking,
    Idle,
}

//! Failed wakes are remembered per app, with a back-off, so that a broken
//! app costs no Scalingo call while its users (and their clients' retries)
//! keep asking for it.
//!
//! After a failed wake of an app (its operation in `error`, the app
//! `crashed`, a timeout, Scalingo refusing or failing the scale ...) the
//! next wake may start only after a back-off of [`FIRST_BACKOFF`] doubling
//! with each failure in a row, up to [`MAX_BACKOFF`]. Meanwhile a wake
//! request is answered at once (503 with `Retry-After`: the time left) and
//! makes no Scalingo call. A success, an admin wake, or the app seen
//! running (the scheduler's listing) clears it.
//!
//! Shared across instances through the registry's coordinator notes:
//! `wake-backoff:{app}` lives exactly as long as the back-off and holds
//! `{"failures", "until_ms", "reason"}` (`until_ms` only for the
//! `Retry-After` of other instances: presence is what counts, so clock skew
//! cannot lengthen a back-off); `wake-failures:{app}` holds the number of
//! failures in a row for [`FAILURE_MEMORY`] after the last one, so that
//! the next failure doubles the back-off. Every instance also keeps its own
//! copy in memory: alone, or while the registry is unreachable, it still
//! backs off.
//!
//! A leaf over the registry's [`Coordinator`] and the clock: it knows
//! nothing of the waker.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::debug;

use crate::clock::now_ms;
use crate::registry::Coordinator;

/// The back-off after a first failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long the count of failures in a row is kept after the last one.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(1800);
/// Longest reason kept.
const MAX_REASON_CHARS: usize = 300;

/// The back-off after `failures` failures in a row (at least one).
pub fn backoff_for(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// A back-off under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// Time left (at least a second).
    pub remaining: Duration,
    /// Why the last wake failed.
    pub reason: String,
    /// Failures in a row.
    pub failures: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    failures: u32,
    until_ms: u64,
    reason: String,
}

#[derive(Debug, Clone)]
struct Local {
    failures: u32,
    until: Instant,
    forget_at: Instant,
    reason: String,
}

fn backoff_note(app: &str) -> String {
    format!("wake-backoff:{app}")
}

fn failures_note(app: &str) -> String {
    format!("wake-failures:{app}")
}

/// The failed wakes of one gateway instance, shared with the others through
/// the coordinator; see the module's documentation.
#[derive(Debug, Default)]
pub struct WakeBackoff {
    local: Mutex<HashMap<String, Local>>,
}

impl WakeBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    fn local(&self) -> MutexGuard<'_, HashMap<String, Local>> {
        // Single map operations: a poisoned lock is still consistent.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The back-off of `app`, if one runs (this instance's or another's).
    /// A registry that cannot be read counts as no back-off from others.
    pub async fn active(&self, coordinator: &dyn Coordinator, app: &str) -> Option<Active> {
        let text = match coordinator.note(&backoff_note(app)).await {
            Ok(Some(text)) if !text.is_empty() => text,
            // The shared view wins when there is one: another instance may
            // have cleared the back-off.
            Ok(_) => return None,
            Err(e) => {
                debug!(error = %e, "back-off note not read, using this instance's");
                let now = Instant::now();
                return self
                    .local()
                    .get(app)
                    .filter(|l| l.until > now)
                    .map(|l| Active {
                        remaining: (l.until - now).max(Duration::from_secs(1)),
                        reason: l.reason.clone(),
                        failures: l.failures,
                    });
            }
        };
        let note: Note = serde_json::from_str(&text).ok()?;
        let left_ms = note.until_ms.saturating_sub(now_ms());
        Some(Active {
            remaining: Duration::from_millis(left_ms).clamp(Duration::from_secs(1), MAX_BACKOFF),
            reason: note.reason,
            failures: note.failures,
        })
    }

    /// Records a failed wake of `app`; returns the back-off it starts.
    pub async fn failed(&self, coordinator: &dyn Coordinator, app: &str, reason: &str) -> Duration {
        let now = Instant::now();
        let before = match coordinator.note(&failures_note(app)).await {
            Ok(Some(text)) => text.parse::<u32>().unwrap_or(0),
            Ok(None) => 0,
            // Registry unreachable: this instance's own count.
            Err(_) => self
                .local()
                .get(app)
                .filter(|l| l.forget_at > now)
                .map_or(0, |l| l.failures),
        };
        let failures = before.saturating_add(1);
        let backoff = backoff_for(failures);
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        self.local().insert(
            app.to_owned(),
            Local {
                failures,
                until: now + backoff,
                forget_at: now + backoff + FAILURE_MEMORY,
                reason: reason.clone(),
            },
        );
        let note = Note {
            failures,
            until_ms: now_ms().saturating_add(u64::try_from(backoff.as_millis()).unwrap_or(0)),
            reason,
        };
        let written = match serde_json::to_string(&note) {
            Ok(text) => coordinator
                .put_note(&backoff_note(app), &text, backoff)
                .await
                .and(
                    coordinator
                        .put_note(
                            &failures_note(app),
                            &failures.to_string(),
                            backoff + FAILURE_MEMORY,
                        )
                        .await,
                ),
            Err(e) => Err(crate::registry::RegistryError(e.to_string())),
        };
        if let Err(e) = written {
            debug!(error = %e, "back-off kept in memory only");
        }
        backoff
    }

    /// Forgets the failures of `app` (it runs, or an operator asked).
    pub async fn clear(&self, coordinator: &dyn Coordinator, app: &str) {
        self.local().remove(app);
        // The coordinator has no delete: an empty note that expires at once.
        for name in [backoff_note(app), failures_note(app)] {
            if let Err(e) = coordinator
                .put_note(&name, "", Duration::from_millis(1))
                .await
            {
                debug!(error = %e, "back-off not cleared in the registry");
            }
        }
    }

    /// Like [`Self::clear`], writing only when something is remembered
    /// (one read otherwise).
    pub async fn clear_if_any(&self, coordinator: &dyn Coordinator, app: &str) {
        let remembered = self.local().contains_key(app)
            || matches!(
                coordinator.note(&failures_note(app)).await,
                Ok(Some(text)) if !text.is_empty()
            );
        if remembered {
            self.clear(coordinator, app).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{InMemoryCoordinator, RegistryError};

    #[test]
    fn the_backoff_doubles_up_to_five_minutes() {
        let secs = |n| backoff_for(n).as_secs();
        assert_eq!(
            [
                secs(0),
                secs(1),
                secs(2),
                secs(3),
                secs(5),
                secs(6),
                secs(40)
            ],
            [10, 10, 20, 40, 160, 300, 300]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_seen_by_another_instance_and_doubles_the_next() {
        let shared = InMemoryCoordinator::new();
        let (one, two) = (WakeBackoff::new(), WakeBackoff::new());
        assert_eq!(one.active(&shared, "my-app").await, None);
        assert_eq!(
            one.failed(&shared, "my-app", "crashed").await,
            FIRST_BACKOFF
        );
        let seen = two.active(&shared, "my-app").await.expect("shared");
        assert_eq!(seen.reason, "crashed");
        assert_eq!(seen.failures, 1);
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(two.active(&shared, "my-app").await, None);
        assert_eq!(one.active(&shared, "my-app").await, None);
        // The next failure, on the other instance, doubles it.
        assert_eq!(
            two.failed(&shared, "my-app", "crashed").await,
            FIRST_BACKOFF * 2
        );
        assert!(one.active(&shared, "my-app").await.is_some());
        two.clear_if_any(&shared, "my-app").await;
        assert_eq!(
            one.active(&shared, "my-app").await,
            None,
            "cleared everywhere"
        );
        assert_eq!(
            one.failed(&shared, "my-app", "crashed").await,
            FIRST_BACKOFF,
            "the count starts again"
        );
    }

    /// A registry that never answers.
    struct Down;

    #[async_trait::async_trait]
    impl Coordinator for Down {
        async fn acquire(&self, _: &str, _: &str, _: Duration) -> Result<bool, RegistryError> {
            Err(RegistryError("down".into()))
        }
        async fn release(&self, _: &str, _: &str) -> Result<bool, RegistryError> {
            Err(RegistryError("down".into()))
        }
        async fn holder(&self, _: &str) -> Result<Option<String>, RegistryError> {
            Err(RegistryError("down".into()))
        }
        async fn put_note(&self, _: &str, _: &str, _: Duration) -> Result<(), RegistryError> {
            Err(RegistryError("down".into()))
        }
        async fn note(&self, _: &str) -> Result<Option<String>, RegistryError> {
            Err(RegistryError("down".into()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_registry_down_each_instance_backs_off_on_its_own() {
        let backoff = WakeBackoff::new();
        assert_eq!(backoff.failed(&Down, "my-app", "boom").await, FIRST_BACKOFF);
        let active = backoff
            .active(&Down, "my-app")
            .await
            .expect("kept in memory");
        assert_eq!((active.failures, active.reason.as_str()), (1, "boom"));
        tokio::time::sleep(FIRST_BACKOFF).await;
        assert_eq!(backoff.active(&Down, "my-app").await, None);
        assert_eq!(
            backoff.failed(&Down, "my-app", "boom").await,
            FIRST_BACKOFF * 2,
            "its own count doubles it"
        );
        backoff.clear(&Down, "my-app").await;
        assert_eq!(backoff.active(&Down, "my-app").await, None);
    }
}

//! One wake per app across gateway instances: the wake lease and the note.
//!
//! Protocol: the instance that takes the lease `wake:{app}` leads the wake,
//! renewing the lease every third of [`WAKE_LEASE_TTL`] while it works, and
//! leaves its outcome in the note `woken:{app}` for [`NOTE_TTL`] before it
//! releases the lease. Every other instance polls the note; when the lease
//! is gone without a note (the leader died) it tries to lead.
//!
//! The coordinator (the registry) being down never blocks a wake: the
//! instance then wakes the app without the lease.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use paastis_api::{ErrorCode, WakeNote};

use super::types::{WakeError, WakeState};
use crate::awake::Awake;
use crate::registry::Coordinator;

/// How long the note of a finished wake stays readable by the instances
/// that waited on it.
pub const NOTE_TTL: Duration = Duration::from_secs(15);
/// How often an instance waiting on another's wake looks for its note.
pub const NOTE_POLL: Duration = Duration::from_millis(100);
/// Lifetime of a wake lease. The leader renews it every third of it while
/// it works, so a leader that dies (killed, partitioned) hands over to a
/// waiting instance within this time, not at the end of the wake timeout.
pub const WAKE_LEASE_TTL: Duration = Duration::from_secs(10);

fn lease_name(app: &str) -> String {
    format!("wake:{app}")
}

fn note_name(app: &str) -> String {
    format!("woken:{app}")
}

/// How this instance takes part in the wake of one app.
pub enum Role {
    /// It holds the lease: it wakes the app, then [`WakeLease::finish`]es.
    Leader,
    /// Coordination is unavailable: it wakes the app on its own.
    Alone,
    /// Another instance woke the app (or failed to): its outcome.
    Followed(Result<Awake, WakeError>),
}

/// The holder name a pause (or a forget) of `instance` takes an app's wake
/// lease under: distinct from the instance's own wakes, so that a pause
/// never extends a lease this instance's wake holds.
pub fn pause_holder(instance: &str) -> String {
    format!("{instance}/pause")
}

/// The lease protocol for one app, on behalf of `instance`.
pub struct WakeLease<'a> {
    coordinator: &'a dyn Coordinator,
    instance: &'a str,
    app: &'a str,
    lease: String,
    note: String,
}

impl<'a> WakeLease<'a> {
    pub fn new(coordinator: &'a dyn Coordinator, instance: &'a str, app: &'a str) -> Self {
        Self {
            coordinator,
            instance,
            app,
            lease: lease_name(app),
            note: note_name(app),
        }
    }

    /// Leads the wake, or waits (until `deadline`) for the instance that
    /// leads it.
    pub async fn lead_or_follow(&self, deadline: Instant) -> Result<Role, WakeError> {
        loop {
            match self
                .coordinator
                .acquire(&self.lease, self.instance, WAKE_LEASE_TTL)
                .await
            {
                Ok(true) => {
                    // A note from an earlier wake must not answer this one.
                    let _ = self
                        .coordinator
                        .put_note(&self.note, "", Duration::from_millis(1))
                        .await;
                    return Ok(Role::Leader);
                }
                Ok(false) => {
                    if let Some(result) = self.follow(deadline).await? {
                        return Ok(Role::Followed(result));
                    }
                }
                Err(e) => {
                    // Waking must not depend on the registry being up.
                    warn!(error = %e, "coordination unavailable, waking without it");
                    return Ok(Role::Alone);
                }
            }
        }
    }

    /// Takes the lease to stop the app (a pause or a forget; `instance` is
    /// then a [`pause_holder`]): true when taken, false when a wake holds
    /// it. Taken, it also clears the note of the last wake, which must not
    /// answer anyone once the app is stopped. Released with
    /// [`WakeLease::release`], no note left: a wake waiting on it then
    /// leads.
    pub async fn hold_to_stop(&self) -> Result<bool, crate::registry::RegistryError> {
        if !self
            .coordinator
            .acquire(&self.lease, self.instance, WAKE_LEASE_TTL)
            .await?
        {
            return Ok(false);
        }
        self.coordinator
            .put_note(&self.note, "", Duration::from_millis(1))
            .await?;
        Ok(true)
    }

    /// Releases the lease without leaving a note.
    pub async fn release(&self) {
        if let Err(e) = self.coordinator.release(&self.lease, self.instance).await {
            warn!(error = %e, "wake lease not released (it will expire)");
        }
    }

    /// Runs `work` while renewing the lease (the heartbeat of a leader).
    pub async fn renewing<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut beat =
            tokio::time::interval_at(Instant::now() + WAKE_LEASE_TTL / 3, WAKE_LEASE_TTL / 3);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = beat.tick() => {
                    match self.coordinator.acquire(&self.lease, self.instance, WAKE_LEASE_TTL).await {
                        Ok(true) => {}
                        // Taken over after a stall: both scale the app up,
                        // which the platform treats as no change.
                        Ok(false) => warn!("wake lease taken over by another instance"),
                        Err(e) => debug!(error = %e, "wake lease not renewed"),
                    }
                }
            }
        }
    }

    /// Leaves the outcome for the followers, then releases the lease.
    pub async fn finish(&self, result: &Result<Awake, WakeError>) {
        let note = match result {
            Ok(awake) => WakeNote::Woken {
                region: awake.region.clone(),
            },
            Err(e) => WakeNote::Failed {
                code: ErrorCode::from(e),
                message: e.to_string(),
            },
        };
        if let Err(e) = self
            .coordinator
            .put_note(&self.note, &note.encode(), NOTE_TTL)
            .await
        {
            warn!(error = %e, "wake note not written");
        }
        if let Err(e) = self.coordinator.release(&self.lease, self.instance).await {
            warn!(error = %e, "wake lease not released (it will expire)");
        }
    }

    /// What a follower answers for the leader's `note`: the leader's error
    /// code is kept (its timeout is this instance's `wake_timeout` too).
    fn outcome_of(&self, note: WakeNote) -> Result<Awake, WakeError> {
        let app = self.app.to_owned();
        match note {
            WakeNote::Woken { region } => Ok(Awake::new(self.app, &region)),
            WakeNote::Failed { code, message } => Err(match code {
                ErrorCode::WakeTimeout => WakeError::Timeout(app),
                ErrorCode::UnknownApp => WakeError::UnknownApp(app),
                ErrorCode::InvalidApp => WakeError::InvalidApp(app),
                _ => WakeError::Elsewhere { app, message },
            }),
        }
    }

    /// Waits for the wake another instance leads. `Some(result)` when its
    /// note arrived; `None` when its lease is gone without a note (the
    /// leader died): the caller then tries to lead.
    async fn follow(
        &self,
        deadline: Instant,
    ) -> Result<Option<Result<Awake, WakeError>>, WakeError> {
        info!("another gateway instance is waking the app, waiting for it");
        loop {
            let note = match self.coordinator.note(&self.note).await {
                Ok(Some(text)) => WakeNote::decode(&text),
                _ => None,
            };
            if let Some(note) = note {
                return Ok(Some(self.outcome_of(note)));
            }
            match self.coordinator.holder(&self.lease).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ok(None),
            }
            if Instant::now() + NOTE_POLL >= deadline {
                return Err(WakeError::Timeout(self.app.to_owned()));
            }
            tokio::time::sleep(NOTE_POLL).await;
        }
    }
}

/// What the other instances sharing `coordinator` do with `app`: a fresh
/// success note reads as running, a held lease as waking. Registry errors
/// read as "nothing known".
pub async fn shared_state(coordinator: &dyn Coordinator, app: &str) -> WakeState {
    if let Ok(Some(text)) = coordinator.note(&note_name(app)).await {
        if let Some(WakeNote::Woken { region }) = WakeNote::decode(&text) {
            return WakeState::Running(Awake::new(app, &region));
        }
    }
    match coordinator.holder(&lease_name(app)).await {
        Ok(Some(_)) => WakeState::Waking,
        _ => WakeState::Idle,
    }
}

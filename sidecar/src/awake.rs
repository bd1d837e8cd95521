//! What this instance saw running: the [`Awake`] answer and the
//! [`AwakeCache`], shared by the waker (which fills it), the activity
//! buffer (which answers from it) and the scheduler (which empties an entry
//! before it pauses the app).
//!
//! # Every instance forgets a stopped app
//!
//! The cache is per process; a pause or a forget on another instance
//! reaches it through the coordinator: the instance that stops or forgets
//! an app leaves the note `stopped:{app}` (the time it did, ms since the
//! epoch) for longer than any entry is trusted ([`AwakeCache::stop_ttl`]),
//! *before* it scales the app to 0. The next successful wake clears it.
//! An entry is only answered as awake ([`AwakeCache::verified`]) when it is
//! fresh and no such note is newer than it; an entry older than a note is
//! dropped. So after a pause on any instance, no instance answers the app
//! awake (to `/v1/wake` or in an activity answer) until a wake ran again.
//! While the coordinator cannot be read (Redis down or hung past
//! [`VERIFY_TIMEOUT`]) the entries are trusted as they are: pauses need the
//! coordinator too (they hold the app's wake lease), so none happens then.
//! Instances' clocks are assumed within a second of each other (an entry
//! and a note less than that apart compare by their clocks).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::clock::now_ms;
use crate::registry::{Coordinator, RegistryError};

/// Bound on the read of the stop notes on the request path (a hung Redis
/// must not hold a wake or an activity answer).
pub const VERIFY_TIMEOUT: Duration = Duration::from_millis(250);

/// The coordinator note that says `app` was stopped (paused or forgotten)
/// at the time it holds, since its last successful wake.
pub fn stopped_note(app: &str) -> String {
    format!("stopped:{app}")
}

/// Leaves the note that `app` was stopped now, for `ttl` (see the module's
/// documentation). Written before the app is scaled to 0. Returns the
/// stop's time (ms). [`crate::deps::Deps::mark_stopped`] also leaves the
/// mark that takes the filters' awake leases back.
pub async fn mark_stopped(
    coordinator: &dyn Coordinator,
    app: &str,
    ttl: Duration,
) -> Result<u64, RegistryError> {
    let at = now_ms();
    coordinator
        .put_note(&stopped_note(app), &at.to_string(), ttl)
        .await?;
    Ok(at)
}

/// Clears the stop note of `app` (a wake has made it run again).
pub async fn clear_stopped(coordinator: &dyn Coordinator, app: &str) -> Result<(), RegistryError> {
    coordinator
        .put_note(&stopped_note(app), "", Duration::from_millis(1))
        .await
}

/// An app that runs, and where to send its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awake {
    pub app: String,
    pub region: String,
    /// Host of the app's default domain on its region's front-end.
    pub upstream_host: String,
}

impl Awake {
    pub fn new(app: &str, region: &str) -> Self {
        Self {
            app: app.to_owned(),
            region: region.to_owned(),
            upstream_host: format!("{app}.{region}.scalingo.io"),
        }
    }
}

/// Apps seen running, with when that was checked.
///
/// Invariant: an entry is trusted ([`AwakeCache::fresh`]) for `ttl` after
/// it was seen; an app being paused is removed first, so that the next
/// request for it goes through a full wake.
#[derive(Debug)]
pub struct AwakeCache {
    ttl: Duration,
    /// The answer, when it was checked, and that time in ms since the epoch
    /// (compared with other instances' stop notes).
    seen: Mutex<HashMap<String, (Awake, Instant, u64)>>,
}

impl AwakeCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Awake, Instant, u64)>> {
        // Every critical section is a single map operation: a panic cannot
        // leave the map inconsistent, so a poisoned lock is still usable.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `app` was seen running now.
    pub fn insert(&self, app: &str, awake: Awake) {
        self.lock()
            .insert(app.to_owned(), (awake, Instant::now(), now_ms()));
    }

    /// How long an entry is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long a stop note must live: longer than any entry written before
    /// it can be trusted, with a margin for clocks.
    pub fn stop_ttl(&self) -> Duration {
        self.ttl + Duration::from_secs(60)
    }

    /// The fresh entries of `apps` that no instance stopped since they were
    /// seen (see the module's documentation); entries a stop note is newer
    /// than are dropped. One read of the notes, bounded by
    /// [`VERIFY_TIMEOUT`]; when it fails the fresh entries are trusted.
    pub async fn verified(&self, coordinator: &dyn Coordinator, apps: &[String]) -> Vec<Awake> {
        let fresh: Vec<(Awake, u64)> = {
            let seen = self.lock();
            apps.iter()
                .filter_map(|app| seen.get(app))
                .filter(|(_, checked, _)| checked.elapsed() < self.ttl)
                .map(|(a, _, at)| (a.clone(), *at))
                .collect()
        };
        if fresh.is_empty() {
            return fresh.into_iter().map(|(a, _)| a).collect();
        }
        let names: Vec<String> = fresh.iter().map(|(a, _)| stopped_note(&a.app)).collect();
        let notes = match tokio::time::timeout(VERIFY_TIMEOUT, coordinator.notes(&names)).await {
            Ok(Ok(notes)) if notes.len() == fresh.len() => notes,
            Ok(Ok(_)) => return fresh.into_iter().map(|(a, _)| a).collect(),
            Ok(Err(e)) => {
                debug!(error = %e, "stop notes not read; trusting this instance's memory");
                return fresh.into_iter().map(|(a, _)| a).collect();
            }
            Err(_) => {
                debug!("stop notes not read in time; trusting this instance's memory");
                return fresh.into_iter().map(|(a, _)| a).collect();
            }
        };
        let mut out = Vec::with_capacity(fresh.len());
        for ((awake, seen_at), note) in fresh.into_iter().zip(notes) {
            let stopped_at = note.and_then(|n| n.parse::<u64>().ok());
            match stopped_at {
                Some(at) if at >= seen_at => self.forget_if_seen_before(&awake.app, at),
                _ => out.push(awake),
            }
        }
        out
    }

    /// Forgets `app` unless it was seen again after `at_ms`.
    pub fn forget_if_seen_before(&self, app: &str, at_ms: u64) {
        let mut seen = self.lock();
        if seen
            .get(app)
            .is_some_and(|(_, _, seen_at)| *seen_at <= at_ms)
        {
            seen.remove(app);
        }
    }

    /// Forgets that `app` runs.
    pub fn forget(&self, app: &str) {
        self.lock().remove(app);
    }

    /// The last sighting of `app`, however old.
    pub fn entry(&self, app: &str) -> Option<Awake> {
        self.lock().get(app).map(|(a, _, _)| a.clone())
    }

    /// When `app` was last seen running (ms since the epoch), however old.
    pub fn seen_at_ms(&self, app: &str) -> Option<u64> {
        self.lock().get(app).map(|(_, _, at)| *at)
    }

    /// The sighting of `app` if it is younger than the TTL.
    pub fn fresh(&self, app: &str) -> Option<Awake> {
        self.lock()
            .get(app)
            .filter(|(_, checked, _)| checked.elapsed() < self.ttl)
            .map(|(a, _, _)| a.clone())
    }
}

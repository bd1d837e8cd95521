//! What this instance saw running: the [`Awake`] answer and the
//! [`AwakeCache`], shared by the waker (which fills it), the activity
//! buffer (which answers from it) and the scheduler (which empties an entry
//! before it pauses the app).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

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
    seen: Mutex<HashMap<String, (Awake, Instant)>>,
}

impl AwakeCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Awake, Instant)>> {
        // Every critical section is a single map operation: a panic cannot
        // leave the map inconsistent, so a poisoned lock is still usable.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `app` was seen running now.
    pub fn insert(&self, app: &str, awake: Awake) {
        self.lock().insert(app.to_owned(), (awake, Instant::now()));
    }

    /// Forgets that `app` runs.
    pub fn forget(&self, app: &str) {
        self.lock().remove(app);
    }

    /// The last sighting of `app`, however old.
    pub fn entry(&self, app: &str) -> Option<Awake> {
        self.lock().get(app).map(|(a, _)| a.clone())
    }

    /// The sighting of `app` if it is younger than the TTL.
    pub fn fresh(&self, app: &str) -> Option<Awake> {
        self.lock()
            .get(app)
            .filter(|(_, checked)| checked.elapsed() < self.ttl)
            .map(|(a, _)| a.clone())
    }
}

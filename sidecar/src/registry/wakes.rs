//! Each app's recent wake durations, shared by the instances like the rest
//! of the registry: the waiting page's "usually ready in about N s" and the
//! admin API's last wakes.
//!
//! One contract ([`WakeLog`]), two stores: [`InMemoryWakeLog`] here and the
//! Redis store (`registry/redis/wakes.rs`). Invariants: at most
//! [`WAKE_SAMPLES`] samples per app, newest first; only wakes that scaled
//! the app up are recorded (a wake that found it running says nothing about
//! how long a cold start takes).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::RegistryError;

/// Samples kept per app.
pub const WAKE_SAMPLES: usize = 10;

/// One wake: when it ended and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeSample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub duration_ms: u64,
}

#[async_trait]
pub trait WakeLog: Send + Sync + 'static {
    /// Keeps `sample` as `app`'s newest, dropping the oldest beyond
    /// [`WAKE_SAMPLES`].
    async fn record_wake(&self, app: &str, sample: WakeSample) -> Result<(), RegistryError>;
    /// `app`'s samples, newest first, at most [`WAKE_SAMPLES`].
    async fn recent_wakes(&self, app: &str) -> Result<Vec<WakeSample>, RegistryError>;
}

/// The expected wake time: the median of the samples (the lower middle of
/// an even count: an estimate a little short beats one a little long, the
/// page then says "almost ready"); `None` without samples.
pub fn expected_ms(samples: &[WakeSample]) -> Option<u64> {
    let mut durations: Vec<u64> = samples.iter().map(|s| s.duration_ms).collect();
    durations.sort_unstable();
    let middle = durations.len().checked_sub(1)? / 2;
    durations.get(middle).copied()
}

/// The wake log of one instance, in memory.
#[derive(Debug, Default)]
pub struct InMemoryWakeLog {
    apps: Mutex<HashMap<String, VecDeque<WakeSample>>>,
}

impl InMemoryWakeLog {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WakeLog for InMemoryWakeLog {
    async fn record_wake(&self, app: &str, sample: WakeSample) -> Result<(), RegistryError> {
        // One map operation per lock: a poisoned lock is still consistent.
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let samples = apps.entry(app.to_owned()).or_default();
        samples.push_front(sample);
        samples.truncate(WAKE_SAMPLES);
        Ok(())
    }

    async fn recent_wakes(&self, app: &str) -> Result<Vec<WakeSample>, RegistryError> {
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        Ok(apps
            .get(app)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(durations: &[u64]) -> Vec<WakeSample> {
        durations
            .iter()
            .map(|&duration_ms| WakeSample {
                at_ms: 0,
                duration_ms,
            })
            .collect()
    }

    #[test]
    fn the_estimate_is_the_median() {
        assert_eq!(expected_ms(&[]), None);
        assert_eq!(expected_ms(&samples(&[4_000])), Some(4_000));
        assert_eq!(expected_ms(&samples(&[9_000, 3_000, 4_000])), Some(4_000));
        assert_eq!(
            expected_ms(&samples(&[60_000, 3_000, 4_000, 5_000])),
            Some(4_000),
            "one slow wake does not move it"
        );
    }
}

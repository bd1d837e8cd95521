//! Helpers shared by the registry suites (`registry_contract`, `redis_registry`).
// Each suite uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use paastis_sidecar::registry::{AppMeta, Event, EventKind};
use tokio::time::Instant;

pub fn apps(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub fn meta(region: &str, max_idle_minutes: u64, linked: &[&str]) -> AppMeta {
    AppMeta {
        region: region.into(),
        max_idle_minutes,
        linked_apps: apps(linked),
    }
}

pub fn event(at_ms: u64, app: &str, kind: EventKind) -> Event {
    Event {
        at_ms,
        app: app.into(),
        instance: "test".into(),
        kind,
    }
}

/// Polls `check` every 50 ms until it is true or `within` has passed, on
/// tokio's clock (so on a paused clock it waits no real time).
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

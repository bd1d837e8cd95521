//! The gateway's sidecar: it wakes Scalingo apps for the Envoy filter and
//! keeps the registry of running apps.
//!
//! The filter calls it only when it does not know an app to be awake
//! (`POST /v1/wake`), and sends it batches of the apps it served
//! (`POST /v1/activity`); see [`server`] for the API. A wake resolves the
//! `paastis.yml` rules ([`config`]), finds the app's region, scales it back
//! up on Scalingo and waits until a web container runs ([`wake`]), through
//! the Scalingo client ([`scalingo`]), which follows the API contract in
//! `shared/scalingo-api.md`. Last accesses go to the [`registry`].
//!
//! Entry point: [`server::run`] over a bound listener, with a shutdown
//! future; the binary only reads the configuration and binds.

pub mod admin;
pub mod budget;
pub mod check;
pub mod config;
pub mod hooks;
pub mod metrics;
pub mod registry;
pub mod scalingo;
pub mod scheduler;
pub mod server;
pub mod waiting;
pub mod wake;

use std::sync::Arc;

use config::{Config, RegistryKind};
use hooks::HookRunner;
use registry::lazy::LazyRedis;
use registry::{
    Coordinator, EventLog, InMemoryCoordinator, InMemoryEventLog, InMemoryRegistry, Registry,
};
use scalingo::ScalingoClient;
use scheduler::Scheduler;
use wake::{Waker, WakerParts};

/// How many events the log keeps.
pub const EVENTS_CAPACITY: usize = 1_000;

/// The sidecar's working parts, built from a checked configuration.
pub struct Gateway {
    pub waker: Arc<Waker>,
    pub scheduler: Arc<Scheduler>,
    pub metrics: Arc<metrics::Metrics>,
}

/// Builds the client, the registry (connecting to Redis when configured),
/// the waker and the scheduler.
pub async fn build(config: &Config) -> Result<Gateway, String> {
    let metrics = Arc::new(metrics::Metrics::new());
    let client = ScalingoClient::new(config.scalingo.clone()).map_err(|e| e.to_string())?;
    client.set_metrics(metrics.clone());
    let (registry, coordinator, events): (
        Arc<dyn Registry>,
        Arc<dyn Coordinator>,
        Arc<dyn EventLog>,
    ) = match &config.registry {
        RegistryKind::InMemory => (
            Arc::new(InMemoryRegistry::new()),
            Arc::new(InMemoryCoordinator::new()),
            Arc::new(InMemoryEventLog::new(EVENTS_CAPACITY)),
        ),
        RegistryKind::Redis { url, prefix } => {
            // Started even while Redis is down: wakes must not depend on it.
            let store = Arc::new(
                LazyRedis::connect(url, prefix, EVENTS_CAPACITY)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            (store.clone(), store.clone(), store)
        }
    };
    let hooks = HookRunner::new(config.hooks.clone(), metrics.clone());
    let waker = Waker::new(WakerParts {
        client: client.clone(),
        rules: config.rules.clone(),
        ignored: config.ignored_apps.clone(),
        registry: registry.clone(),
        coordinator: coordinator.clone(),
        events: events.clone(),
        instance: config.instance.clone(),
        wake_timeout: config.wake_timeout,
        awake_ttl: config.awake_ttl,
        metrics: metrics.clone(),
        hooks: hooks.clone(),
    });
    let scheduler = Arc::new(
        Scheduler::new(
            client,
            config.rules.clone(),
            config.ignored_apps.clone(),
            registry,
            coordinator,
            events,
            waker.clone(),
            config.instance.clone(),
        )
        .with_pace(config.scheduler_calls_per_minute)
        .with_metrics(metrics.clone())
        .with_hooks(hooks),
    );
    Ok(Gateway {
        waker,
        scheduler,
        metrics,
    })
}

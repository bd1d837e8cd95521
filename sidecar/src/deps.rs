//! [`Deps`]: what the waker, the scheduler and the admin API work with, in
//! one place instead of long argument lists.
//!
//! Holds shared handles only (cheap to clone); no logic beyond recording an
//! event and registering an app within the registry's cap. Must not depend
//! on the waker or the scheduler.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use paastis_rules::AppRules;
use tracing::warn;

use crate::activity::ActivityBuffer;
use crate::awake::AwakeCache;
use crate::backoff::WakeBackoff;
use crate::clock::now_ms;
use crate::config::{AppScope, ManagedApps};
use crate::hooks::{HookRunner, Hooks};
use crate::leases::Leases;
use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::registry::{
    AppMeta, Coordinator, Event, EventKind, EventLog, InMemoryCoordinator, InMemoryEventLog,
    InMemoryRegistry, Registry, RegistryError, DEFAULT_MAX_APPS, EVENTS_CAPACITY,
};

/// The shared parts of one gateway.
#[derive(Clone)]
pub struct Deps {
    /// Where the apps run (Scalingo, or an in-process platform in tests).
    pub platform: Arc<dyn Platform>,
    pub registry: Arc<dyn Registry>,
    pub coordinator: Arc<dyn Coordinator>,
    pub events: Arc<dyn EventLog>,
    /// Each app's recent wake durations, shared like the registry.
    pub wakes: Arc<dyn crate::registry::WakeLog>,
    pub metrics: Arc<Metrics>,
    pub hooks: Arc<HookRunner>,
    pub rules: Arc<AppRules>,
    /// Apps routed but never scaled (`REGISTRY_IGNORED_APPS`).
    pub ignored: Arc<BTreeSet<String>>,
    /// `PAASTIS_MANAGED_APPS`: apps not matching it are left alone like
    /// ignored ones.
    pub managed: Arc<ManagedApps>,
    /// This instance's name in leases and events.
    pub instance: Arc<str>,
    /// Apps this instance saw running.
    pub awake: Arc<AwakeCache>,
    /// Activity not written to the registry yet.
    pub activity: Arc<ActivityBuffer>,
    /// Failed wakes and their back-off.
    pub backoff: Arc<WakeBackoff>,
    /// Most apps the registry may hold (`PAASTIS_REGISTRY_MAX_APPS`).
    pub registry_cap: usize,
    /// The awake leases this instance granted to its filters.
    pub leases: Arc<Leases>,
}

impl Deps {
    /// A single-instance gateway's parts on `platform`: in-memory registry,
    /// coordination and events, no hooks, nothing ignored. `awake_ttl`
    /// bounds how long an app seen running is trusted.
    pub fn in_memory(platform: Arc<dyn Platform>, rules: AppRules, awake_ttl: Duration) -> Self {
        let registry: Arc<dyn Registry> = Arc::new(InMemoryRegistry::new());
        let metrics = Arc::new(Metrics::new());
        Self {
            platform,
            activity: Arc::new(ActivityBuffer::new(registry.clone(), metrics.clone())),
            registry,
            coordinator: Arc::new(InMemoryCoordinator::new()),
            events: Arc::new(InMemoryEventLog::new(EVENTS_CAPACITY)),
            wakes: Arc::new(crate::registry::InMemoryWakeLog::new()),
            hooks: HookRunner::new(Hooks::default(), metrics.clone()),
            metrics,
            rules: Arc::new(rules),
            ignored: Arc::new(BTreeSet::new()),
            managed: Arc::new(ManagedApps::all()),
            instance: Arc::from("local"),
            leases: Arc::new(Leases::new("local")),
            awake: Arc::new(AwakeCache::new(awake_ttl)),
            backoff: Arc::new(WakeBackoff::new()),
            registry_cap: DEFAULT_MAX_APPS as usize,
        }
    }

    /// Registers (or updates) `app`, an app the gateway resolved (woken, or
    /// seen in a listing), unless that would take the registry beyond its
    /// cap: then it is refused (counted, logged) and `Ok(false)`.
    pub async fn register(
        &self,
        app: &str,
        meta: AppMeta,
        at_ms: u64,
    ) -> Result<bool, RegistryError> {
        if self.registry.get(app).await?.is_none()
            && self.registry.len().await? >= self.registry_cap
        {
            self.metrics.registry_refused("cap", 1);
            warn!(%app, cap = self.registry_cap, "registry full (PAASTIS_REGISTRY_MAX_APPS): app not registered");
            return Ok(false);
        }
        self.registry.register(app, meta, at_ms).await?;
        Ok(true)
    }

    /// Records that `app` is stopped now (paused, or forgotten): the stop
    /// note and mark every instance reads, this instance's memory of it
    /// awake forgotten, its filters' leases taken back. Returns the stop's
    /// time (ms), what the drain waits to be acknowledged.
    pub async fn mark_stopped(&self, app: &str) -> Result<u64, RegistryError> {
        let at = crate::awake::mark_stopped(self.coordinator.as_ref(), app, self.awake.stop_ttl())
            .await?;
        crate::leases::mark_stop(self.coordinator.as_ref(), app, at).await?;
        self.awake.forget(app);
        self.leases.learn_stop(app, at);
        Ok(at)
    }

    /// Whether `app` is routed but never scaled: ignored, or not matching
    /// `PAASTIS_MANAGED_APPS` (see [`AppScope`]).
    pub fn is_ignored(&self, app: &str) -> bool {
        !self.scope().is_managed(app)
    }

    /// Which apps the gateway manages.
    pub fn scope(&self) -> AppScope<'_> {
        AppScope {
            ignored: &self.ignored,
            managed: &self.managed,
        }
    }

    /// Records an event for `app` now; a failure is logged, never returned
    /// (the event log is for operators, not a condition of the work).
    pub async fn record(&self, app: &str, kind: EventKind) {
        let event = Event {
            at_ms: now_ms(),
            app: app.to_owned(),
            instance: self.instance.to_string(),
            kind,
        };
        if let Err(e) = self.events.record(event).await {
            warn!(error = %e, "event not recorded");
        }
    }
}

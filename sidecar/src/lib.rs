//! The gateway's sidecar: it wakes Scalingo apps for the Envoy filter and
//! keeps the registry of running apps.
//!
//! The filter calls it only when it does not know an app to be awake
//! (`POST /v1/wake`), and sends it batches of the apps it served
//! (`POST /v1/activity`); see [`server`] for the API. A wake resolves the
//! `paastis.yml` rules ([`config`]), finds the app's region, scales it back
//! up and waits until a web container runs ([`wake`]), through the
//! [`platform::Platform`] seam, which the Scalingo client ([`scalingo`])
//! implements following the API contract in `shared/scalingo-api.md`. Last
//! accesses go to the [`registry`] ([`activity`]); the [`scheduler`] pauses
//! idle apps. What they share is one [`deps::Deps`].
//!
//! Dependencies: the sidecar speaks to the filter only through
//! `paastis-api` and reads the filter's configuration through
//! `paastis-filter-config`; it must not depend on the filter crate nor on
//! proxy-wasm.
//!
//! Layering (no module imports one that imports it back): `clock`,
//! `metrics`, `registry`, `scalingo`, `listener`, `hooks`, `keep_awake`
//! and `dashboard` are leaves (`auth` on `scalingo`'s `Secret`, `backoff`
//! on `registry` and `clock`, `saved` on `registry`); `platform`
//! and `config` sit on those; `awake`, `activity` and `deps` on those (`deps`
//! asks `config` which apps are managed); `wake`, `verify` and
//! `scheduler` on `deps` (`prewarm` on `wake`); `server`, `waiting` and `admin` on top; this root
//! only wires them ([`build`]).
//!
//! Entry point: [`server::run`] over a bound listener, with a shutdown
//! future; the binary only reads the configuration and binds.

pub mod activity;
pub mod admin;
pub mod auth;
pub mod awake;
pub mod backoff;
pub mod budget;
pub mod check;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod deps;
pub mod hooks;
pub mod keep_awake;
pub mod leases;
pub mod listener;
pub mod metrics;
pub mod platform;
pub mod prewarm;
pub mod registry;
pub mod saved;
pub mod scalingo;
pub mod scheduler;
pub mod server;
pub mod verify;
pub mod waiting;
pub mod wake;

use std::sync::Arc;

use activity::ActivityBuffer;
use awake::AwakeCache;
use budget::redis::RedisBudgetStore;
use budget::{Budget, BudgetConfig, Priority};
use config::{Config, RegistryKind};
use deps::Deps;
use hooks::HookRunner;
use platform::front::FrontProber;
use platform::scalingo::ScalingoPlatform;
use registry::lazy::LazyRedis;
use registry::{
    Coordinator, EventLog, InMemoryCoordinator, InMemoryEventLog, InMemoryRegistry, Registry,
};
use scalingo::{ScalingoClient, ScalingoTuning};
use scheduler::Scheduler;
use wake::Waker;

pub use registry::EVENTS_CAPACITY;

/// The sidecar's working parts, built from a checked configuration.
pub struct Gateway {
    pub waker: Arc<Waker>,
    pub scheduler: Arc<Scheduler>,
    /// Wakes apps before their keep-awake windows (background rank).
    pub prewarm: Arc<prewarm::Prewarmer>,
    pub metrics: Arc<metrics::Metrics>,
}

/// What the instances of a gateway share: the registry, its coordination,
/// the event log, and the Scalingo API budget.
struct Stores {
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    events: Arc<dyn EventLog>,
    wakes: Arc<dyn registry::WakeLog>,
    budget: Arc<Budget>,
}

/// In memory for one instance, or in Redis (connecting lazily) for several.
async fn stores(kind: &RegistryKind, budget_config: BudgetConfig) -> Result<Stores, String> {
    Ok(match kind {
        RegistryKind::InMemory => Stores {
            registry: Arc::new(InMemoryRegistry::new()),
            coordinator: Arc::new(InMemoryCoordinator::new()),
            events: Arc::new(InMemoryEventLog::new(EVENTS_CAPACITY)),
            wakes: Arc::new(registry::InMemoryWakeLog::new()),
            budget: Arc::new(Budget::in_memory(budget_config).map_err(|e| e.to_string())?),
        },
        RegistryKind::Redis { url, prefix } => {
            // Started even while Redis is down: wakes must not depend on it.
            let store = Arc::new(
                LazyRedis::connect(url, prefix, EVENTS_CAPACITY)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            // One API budget for every instance sharing this Redis.
            let budget =
                Budget::shared(budget_config, RedisBudgetStore::new(store.clone(), prefix))
                    .map_err(|e| e.to_string())?;
            Stores {
                registry: store.clone(),
                coordinator: store.clone(),
                events: store.clone(),
                wakes: store,
                budget: Arc::new(budget),
            }
        }
    })
}

/// Builds the client, the registry (connecting to Redis when configured),
/// the waker and the scheduler.
pub async fn build(config: &Config) -> Result<Gateway, String> {
    let metrics = Arc::new(metrics::Metrics::new());
    let budget_config = BudgetConfig {
        expected_instances: config.gateway_instances,
        pause_after_429: config.pause_after_429,
        ..BudgetConfig::new(config.scheduler_calls_per_minute)
    };
    let Stores {
        registry,
        coordinator,
        events,
        wakes,
        budget,
    } = stores(&config.registry, budget_config).await?;
    let client =
        ScalingoClient::with_budget(config.scalingo.clone(), ScalingoTuning::default(), budget)
            .map_err(|e| e.to_string())?;
    client.set_metrics(metrics.clone());
    let budget = client.budget().clone();
    metrics.on_scrape(move |m| {
        let stats = budget.stats();
        m.record_budget(&metrics::BudgetReading {
            remaining: stats.remaining(),
            spent: budget::Rank::ALL
                .iter()
                .map(|r| (r.as_str(), stats.spent(*r)))
                .collect(),
            exhausted: stats.exhausted(),
            rate_limited: stats.rate_limited(),
            store_failures: stats.store_failures(),
        })
    });
    let front = FrontProber::new(config.front_urls.clone())?;
    let platform = ScalingoPlatform::new(client, front);
    let deps = Deps {
        platform: Arc::new(platform.with_priority(Priority::Wake)),
        activity: Arc::new(ActivityBuffer::new(registry.clone(), metrics.clone())),
        registry,
        coordinator,
        events,
        wakes,
        hooks: HookRunner::new(config.hooks.clone(), metrics.clone()),
        metrics: metrics.clone(),
        rules: Arc::new(config.rules.clone()),
        ignored: Arc::new(config.ignored_apps.clone()),
        managed: Arc::new(config.managed_apps.clone()),
        instance: Arc::from(config.instance.as_str()),
        leases: Arc::new(leases::Leases::new(&config.instance)),
        awake: Arc::new(AwakeCache::new(config.awake_ttl)),
        backoff: Arc::new(backoff::WakeBackoff::new()),
        registry_cap: config.registry_max_apps as usize,
    };
    let waker = Waker::new(deps.clone(), config.wake_timeout);
    // The scheduler takes only what wakes leave of the budget.
    let scheduler_deps = Deps {
        platform: Arc::new(platform.with_priority(Priority::Background)),
        ..deps
    };
    // Prewarm wakes nobody waits on: the background rank too.
    let prewarm = Arc::new(prewarm::Prewarmer::new(Waker::new(
        scheduler_deps.clone(),
        config.wake_timeout,
    )));
    let scheduler = Arc::new(
        Scheduler::new(scheduler_deps, config.scheduler_calls_per_minute)
            .with_dry_run(config.dry_run),
    );
    Ok(Gateway {
        waker,
        scheduler,
        prewarm,
        metrics,
    })
}

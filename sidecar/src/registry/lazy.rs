//! A Redis store that the sidecar can start without.
//!
//! A sidecar restarted while Redis is down (a rollout during an outage) must
//! still wake apps: [`LazyRedis`] starts without a connection when Redis does
//! not answer, reports every call as unavailable until it does, and then
//! behaves as the [`RedisStore`] it opened. Callers already treat an
//! unavailable registry as an outage (activity kept in memory, wakes without
//! coordination, a scheduler that pauses nothing).
//!
//! Invariant: at most one connection attempt per [`RETRY_EVERY`], so calls
//! during an outage fail at once instead of each waiting for a connect
//! timeout.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::{info, warn};

use super::redis::{redact_url, RedisStore};
use super::{AppMeta, AppRecord, Coordinator, Event, EventLog, Registry, RegistryError};

/// Least time between two connection attempts.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct LazyRedis {
    url: String,
    prefix: String,
    events_capacity: usize,
    store: OnceCell<RedisStore>,
    last_attempt: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for LazyRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRedis")
            .field("target", &redact_url(&self.url))
            .field("connected", &self.store.initialized())
            .finish()
    }
}

impl LazyRedis {
    /// Connects now if Redis answers; otherwise starts unconnected (logged)
    /// and connects on a later call. Fails only for a URL that can never
    /// work.
    pub async fn connect(
        url: &str,
        prefix: &str,
        events_capacity: usize,
    ) -> Result<Self, RegistryError> {
        redis::Client::open(url)
            .map_err(|e| RegistryError(format!("redis at {}: {e}", redact_url(url))))?;
        let lazy = Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            events_capacity,
            store: OnceCell::new(),
            last_attempt: Mutex::new(None),
        };
        if let Err(e) = lazy.store().await {
            warn!(error = %e, "redis unreachable at start: running without the shared registry until it answers");
        }
        Ok(lazy)
    }

    /// Whether a connection was opened (it reconnects by itself afterwards).
    pub fn is_connected(&self) -> bool {
        self.store.initialized()
    }

    async fn store(&self) -> Result<&RedisStore, RegistryError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < RETRY_EVERY) {
                return Err(RegistryError(format!(
                    "redis at {}: not connected yet",
                    redact_url(&self.url)
                )));
            }
            *last = Some(Instant::now());
        }
        let store = self
            .store
            .get_or_try_init(|| RedisStore::connect(&self.url, &self.prefix, self.events_capacity))
            .await?;
        info!("connected to redis");
        Ok(store)
    }
}

/// The API budget shares the registry's Redis connection; while it is not
/// connected the budget falls back to this instance's share.
#[async_trait]
impl crate::budget::redis::RedisConnection for LazyRedis {
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, crate::budget::StoreError> {
        self.store()
            .await
            .map(RedisStore::connection)
            .map_err(|e| crate::budget::StoreError(e.to_string()))
    }
}

#[async_trait]
impl Registry for LazyRedis {
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError> {
        self.store().await?.touch(apps, at_ms).await
    }
    async fn touch_known(&self, apps: &[String], at_ms: u64) -> Result<Vec<String>, RegistryError> {
        self.store().await?.touch_known(apps, at_ms).await
    }
    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError> {
        self.store().await?.register(app, meta, at_ms).await
    }
    async fn get(&self, app: &str) -> Result<Option<AppRecord>, RegistryError> {
        self.store().await?.get(app).await
    }
    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        self.store().await?.list().await
    }
    async fn accessed_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<AppRecord>, RegistryError> {
        self.store().await?.accessed_before(before_ms, limit).await
    }
    async fn remember_formation(
        &self,
        app: &str,
        formation: Vec<(String, u32)>,
    ) -> Result<(), RegistryError> {
        self.store().await?.remember_formation(app, formation).await
    }
    async fn remember_autoscalers(
        &self,
        app: &str,
        autoscalers: Vec<String>,
    ) -> Result<(), RegistryError> {
        self.store()
            .await?
            .remember_autoscalers(app, autoscalers)
            .await
    }
    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        self.store().await?.forget(app).await
    }
    async fn forget_if_accessed_before(
        &self,
        app: &str,
        before_ms: u64,
    ) -> Result<bool, RegistryError> {
        self.store()
            .await?
            .forget_if_accessed_before(app, before_ms)
            .await
    }
    async fn len(&self) -> Result<usize, RegistryError> {
        self.store().await?.len().await
    }
}

#[async_trait]
impl Coordinator for LazyRedis {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        self.store().await?.acquire(name, holder, ttl).await
    }
    async fn release(&self, name: &str, holder: &str) -> Result<bool, RegistryError> {
        self.store().await?.release(name, holder).await
    }
    async fn holder(&self, name: &str) -> Result<Option<String>, RegistryError> {
        self.store().await?.holder(name).await
    }
    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        self.store().await?.put_note(name, value, ttl).await
    }
    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError> {
        self.store().await?.note(name).await
    }
    async fn notes(&self, names: &[String]) -> Result<Vec<Option<String>>, RegistryError> {
        self.store().await?.notes(names).await
    }
    async fn mark(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
        keep: Duration,
    ) -> Result<(), RegistryError> {
        self.store().await?.mark(set, member, at_ms, keep).await
    }
    async fn marked_since(
        &self,
        set: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, u64)>, RegistryError> {
        self.store().await?.marked_since(set, since_ms).await
    }
}

#[async_trait]
impl EventLog for LazyRedis {
    async fn record(&self, event: Event) -> Result<(), RegistryError> {
        self.store().await?.record(event).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<Event>, RegistryError> {
        self.store().await?.recent(limit).await
    }
}

#[async_trait]
impl super::WakeLog for LazyRedis {
    async fn record_wake(&self, app: &str, sample: super::WakeSample) -> Result<(), RegistryError> {
        self.store().await?.record_wake(app, sample).await
    }
    async fn recent_wakes(&self, app: &str) -> Result<Vec<super::WakeSample>, RegistryError> {
        self.store().await?.recent_wakes(app).await
    }
}

//! The registry and coordinator as the request path uses them: every call
//! bounded by a short timeout, so that a hung Redis (stopped, partitioned
//! without a reset) adds a fraction of a second to a wake instead of the
//! store's own multi-second timeouts, one after another.
//!
//! A call that does not answer in time is an [`RegistryError`], which the
//! waker already treats as "registry unavailable" (wake without
//! coordination, region from the platform, access kept in memory). After
//! such a timeout the calls fail at once for [`HOLD_OFF`]: a wake makes
//! several calls one after another, and a hung Redis then costs it one
//! timeout, not one per call.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{AppMeta, AppRecord, Coordinator, Registry, RegistryError};

/// Bound on one registry or coordinator call on the request path.
pub const REQUEST_PATH_TIMEOUT: Duration = Duration::from_millis(250);
/// How long calls fail at once after one timed out.
pub const HOLD_OFF: Duration = Duration::from_secs(2);

/// A registry and a coordinator whose calls each last at most `timeout`.
pub struct Bounded {
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    timeout: Duration,
    /// Until when calls fail at once (a call timed out).
    held_off_until: Mutex<Option<Instant>>,
}

impl Bounded {
    pub fn new(
        registry: Arc<dyn Registry>,
        coordinator: Arc<dyn Coordinator>,
        timeout: Duration,
    ) -> Self {
        Self {
            registry,
            coordinator,
            timeout,
            held_off_until: Mutex::new(None),
        }
    }

    async fn bound<T>(
        &self,
        op: &str,
        call: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let held_off = |m: &Mutex<Option<Instant>>| {
            // One assignment per critical section: a poisoned lock is
            // still consistent.
            *m.lock().unwrap_or_else(|p| p.into_inner())
        };
        if held_off(&self.held_off_until).is_some_and(|until| Instant::now() < until) {
            return Err(RegistryError(format!(
                "{op}: not asked, the store did not answer in time just before"
            )));
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                *self
                    .held_off_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + HOLD_OFF);
                Err(RegistryError(format!(
                    "{op}: no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }
}

#[async_trait]
impl Registry for Bounded {
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError> {
        self.bound("touch", self.registry.touch(apps, at_ms)).await
    }
    async fn touch_known(&self, apps: &[String], at_ms: u64) -> Result<Vec<String>, RegistryError> {
        self.bound("touch_known", self.registry.touch_known(apps, at_ms))
            .await
    }
    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError> {
        self.bound("register", self.registry.register(app, meta, at_ms))
            .await
    }
    async fn get(&self, app: &str) -> Result<Option<AppRecord>, RegistryError> {
        self.bound("get", self.registry.get(app)).await
    }
    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        self.bound("list", self.registry.list()).await
    }
    async fn accessed_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<AppRecord>, RegistryError> {
        self.bound(
            "accessed_before",
            self.registry.accessed_before(before_ms, limit),
        )
        .await
    }
    async fn remember_formation(
        &self,
        app: &str,
        formation: Vec<(String, u32)>,
    ) -> Result<(), RegistryError> {
        self.bound(
            "remember_formation",
            self.registry.remember_formation(app, formation),
        )
        .await
    }
    async fn remember_autoscalers(
        &self,
        app: &str,
        autoscalers: Vec<String>,
    ) -> Result<(), RegistryError> {
        self.bound(
            "remember_autoscalers",
            self.registry.remember_autoscalers(app, autoscalers),
        )
        .await
    }
    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        self.bound("forget", self.registry.forget(app)).await
    }
    async fn forget_if_accessed_before(
        &self,
        app: &str,
        before_ms: u64,
    ) -> Result<bool, RegistryError> {
        self.bound(
            "forget_if_accessed_before",
            self.registry.forget_if_accessed_before(app, before_ms),
        )
        .await
    }
    async fn len(&self) -> Result<usize, RegistryError> {
        self.bound("len", self.registry.len()).await
    }
}

#[async_trait]
impl Coordinator for Bounded {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        self.bound("acquire", self.coordinator.acquire(name, holder, ttl))
            .await
    }
    async fn release(&self, name: &str, holder: &str) -> Result<bool, RegistryError> {
        self.bound("release", self.coordinator.release(name, holder))
            .await
    }
    async fn holder(&self, name: &str) -> Result<Option<String>, RegistryError> {
        self.bound("holder", self.coordinator.holder(name)).await
    }
    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        self.bound("put_note", self.coordinator.put_note(name, value, ttl))
            .await
    }
    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError> {
        self.bound("note", self.coordinator.note(name)).await
    }
    async fn notes(&self, names: &[String]) -> Result<Vec<Option<String>>, RegistryError> {
        self.bound("notes", self.coordinator.notes(names)).await
    }
    async fn mark(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
        keep: Duration,
    ) -> Result<(), RegistryError> {
        self.bound("mark", self.coordinator.mark(set, member, at_ms, keep))
            .await
    }
    async fn marked_since(
        &self,
        set: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, u64)>, RegistryError> {
        self.bound("marked_since", self.coordinator.marked_since(set, since_ms))
            .await
    }
}

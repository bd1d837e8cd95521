//! The registry of running apps and the coordination between gateway
//! instances.
//!
//! - [`Registry`]: when each app was last accessed, and what the gateway knows
//!   of it (region, idle limit, linked apps, the formation to restore).
//! - [`Coordinator`]: named leases (one scheduler pass at a time, one wake
//!   per app across instances) and short-lived notes (a wake's outcome, for
//!   the instances that waited on it).
//! - [`EventLog`]: a bounded log of what happened to apps.
//!
//! Each has an in-memory implementation ([`memory`]) for a single instance
//! and a Redis one ([`redis`]) shared by several instances.

pub mod bounded;
pub mod lazy;
pub mod memory;
pub mod redis;
pub mod wakes;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use wakes::{expected_ms, InMemoryWakeLog, WakeLog, WakeSample, WAKE_SAMPLES};

pub use memory::{InMemoryCoordinator, InMemoryEventLog, InMemoryRegistry};

/// How many events the log keeps.
pub const EVENTS_CAPACITY: usize = 1_000;

/// Idle time before an app is paused when no rule says otherwise (Paastis's
/// default), in minutes: also the idle limit of a record created before any
/// rule was applied to it.
pub const DEFAULT_MAX_IDLE_MINUTES: u64 = 15;

/// Most apps the registry holds unless `PAASTIS_REGISTRY_MAX_APPS` says
/// otherwise.
pub const DEFAULT_MAX_APPS: u32 = 10_000;

/// A store that cannot be reached or answered something unreadable.
#[derive(Debug, Clone, Error)]
#[error("registry unavailable: {0}")]
pub struct RegistryError(pub String);

/// What the gateway remembers of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app: String,
    pub region: Option<String>,
    /// Milliseconds since the Unix epoch. Never moves backwards.
    pub last_access_ms: u64,
    pub max_idle_minutes: u64,
    pub linked_apps: Vec<String>,
    /// Amount per process type before the app was paused, to restore on
    /// wake; empty when unknown.
    pub formation: Vec<(String, u32)>,
    /// Autoscalers (ids) enabled before the app was paused, which the
    /// pause's manual scale turned off: the wake turns them back on.
    #[serde(default)]
    pub autoscalers: Vec<String>,
}

impl AppRecord {
    /// A record for an app only known by name.
    pub fn blank(app: &str) -> Self {
        Self {
            app: app.to_owned(),
            region: None,
            last_access_ms: 0,
            max_idle_minutes: DEFAULT_MAX_IDLE_MINUTES,
            linked_apps: Vec::new(),
            formation: Vec::new(),
            autoscalers: Vec::new(),
        }
    }
}

/// Facts learnt about an app when it is woken or discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMeta {
    pub region: String,
    pub max_idle_minutes: u64,
    pub linked_apps: Vec<String>,
}

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Records an access at `at_ms` for each app; an app not registered yet
    /// is registered. Last access only ever moves forward, whatever the order
    /// in which concurrent writers arrive.
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError>;
    /// Like [`Registry::touch`] for the apps already registered only; the
    /// others are left out (never registered by an access) and returned.
    /// The registry holds only apps the gateway resolved (woken, or seen in
    /// a listing), so a name nobody resolved never gets in this way.
    async fn touch_known(&self, apps: &[String], at_ms: u64) -> Result<Vec<String>, RegistryError>;
    /// Registers or updates an app's facts, keeping its remembered formation;
    /// its last access moves forward to `at_ms` if that is later.
    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError>;
    async fn get(&self, app: &str) -> Result<Option<AppRecord>, RegistryError>;
    /// Every app, sorted by name.
    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError>;
    /// Apps last accessed at or before `before_ms`, oldest first, at most
    /// `limit` (a range query on last access, not a scan).
    async fn accessed_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<AppRecord>, RegistryError>;
    /// Remembers the formation to restore on the next wake.
    async fn remember_formation(
        &self,
        app: &str,
        formation: Vec<(String, u32)>,
    ) -> Result<(), RegistryError>;
    /// Remembers the autoscalers to turn back on at the next wake (empty:
    /// none).
    async fn remember_autoscalers(
        &self,
        app: &str,
        autoscalers: Vec<String>,
    ) -> Result<(), RegistryError>;
    async fn forget(&self, app: &str) -> Result<(), RegistryError>;
    /// Forgets `app` only if its last access is before `before_ms`, in one
    /// step (an access arriving meanwhile wins). True when forgotten (or
    /// absent already).
    async fn forget_if_accessed_before(
        &self,
        app: &str,
        before_ms: u64,
    ) -> Result<bool, RegistryError>;
    async fn len(&self) -> Result<usize, RegistryError>;
    async fn is_empty(&self) -> Result<bool, RegistryError> {
        Ok(self.len().await? == 0)
    }
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// Takes lease `name` for `ttl` when it is free, or extends it when
    /// `holder` already holds it. True when `holder` holds it afterwards. A
    /// holder that dies loses the lease when its ttl runs out.
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration)
        -> Result<bool, RegistryError>;
    /// Releases lease `name` only if `holder` still holds it (never someone
    /// else's lease that replaced an expired one). True when released.
    async fn release(&self, name: &str, holder: &str) -> Result<bool, RegistryError>;
    /// The current holder of lease `name`, if any.
    async fn holder(&self, name: &str) -> Result<Option<String>, RegistryError>;
    /// Leaves a note readable by every instance for `ttl`.
    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError>;
    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError>;
    /// The notes `names`, in that order (one round trip where the store
    /// allows it).
    async fn notes(&self, names: &[String]) -> Result<Vec<Option<String>>, RegistryError> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.note(name).await?);
        }
        Ok(out)
    }
    /// Marks `member` of the set `set` at `at_ms` (a mark only moves
    /// forward), and drops the set's marks older than `keep` before it:
    /// the instances' heartbeats and the stops of apps (see
    /// [`crate::leases`]). The default refuses: a store that cannot keep
    /// marks cannot take part in the awake leases.
    async fn mark(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
        keep: Duration,
    ) -> Result<(), RegistryError> {
        let _ = (set, member, at_ms, keep);
        Err(RegistryError(format!("{set}: marks not supported")))
    }
    /// The marks of `set` later than `since_ms` (member, ms), oldest first.
    async fn marked_since(
        &self,
        set: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, u64)>, RegistryError> {
        let _ = since_ms;
        Err(RegistryError(format!("{set}: marks not supported")))
    }
}

/// Something that happened to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub app: String,
    /// Which gateway instance saw it.
    pub instance: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Registered,
    Discovered,
    Woken {
        duration_ms: u64,
    },
    WakeFailed {
        error: String,
    },
    Paused {
        formation: Vec<(String, u32)>,
    },
    /// Dry run (`PAASTIS_DRY_RUN`): the scheduler would have paused it.
    WouldPause {
        max_idle_minutes: u64,
    },
    /// A pause recorded the app's enabled autoscalers (its manual scale
    /// turned them off) for the next wake.
    AutoscalersRecorded {
        autoscalers: Vec<String>,
    },
    /// A wake turned the app's recorded autoscalers back on.
    AutoscalersRestored {
        autoscalers: Vec<String>,
    },
    Forgotten,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends an event; the log keeps only the most recent ones (bounded).
    async fn record(&self, event: Event) -> Result<(), RegistryError>;
    /// The `limit` most recent events, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<Event>, RegistryError>;
}

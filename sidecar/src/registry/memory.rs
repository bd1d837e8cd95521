//! In-memory registry, coordinator and event log: the defaults for a single
//! gateway instance.
//!
//! Their contract is tested with the Redis store's, by the same cases
//! (`sidecar/tests/registry_contract.rs`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{AppMeta, AppRecord, Coordinator, Event, EventLog, Registry, RegistryError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section below is a handful of assignments that cannot
    // panic half-way, so a poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Default)]
struct Apps {
    records: HashMap<String, AppRecord>,
    /// (last access, app): the range index behind `accessed_before`.
    by_access: BTreeSet<(u64, String)>,
}

impl Apps {
    fn entry(&mut self, app: &str) -> &mut AppRecord {
        if !self.records.contains_key(app) {
            self.by_access.insert((0, app.to_owned()));
        }
        self.records
            .entry(app.to_owned())
            .or_insert_with(|| AppRecord::blank(app))
    }

    fn advance(&mut self, app: &str, at_ms: u64) {
        let record = self.entry(app);
        let before = record.last_access_ms;
        if at_ms > before {
            record.last_access_ms = at_ms;
            self.by_access.remove(&(before, app.to_owned()));
            self.by_access.insert((at_ms, app.to_owned()));
        }
    }
}

/// The registry of a single gateway instance.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    apps: Mutex<Apps>,
}

impl InMemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Registry for InMemoryRegistry {
    async fn touch(&self, apps: &[String], at_ms: u64) -> Result<(), RegistryError> {
        let mut guard = lock(&self.apps);
        for app in apps {
            guard.advance(app, at_ms);
        }
        Ok(())
    }

    async fn touch_known(&self, apps: &[String], at_ms: u64) -> Result<Vec<String>, RegistryError> {
        let mut guard = lock(&self.apps);
        let mut unknown = Vec::new();
        for app in apps {
            if guard.records.contains_key(app) {
                guard.advance(app, at_ms);
            } else {
                unknown.push(app.clone());
            }
        }
        Ok(unknown)
    }

    async fn register(&self, app: &str, meta: AppMeta, at_ms: u64) -> Result<(), RegistryError> {
        let mut guard = lock(&self.apps);
        let record = guard.entry(app);
        record.region = Some(meta.region);
        record.max_idle_minutes = meta.max_idle_minutes;
        record.linked_apps = meta.linked_apps;
        guard.advance(app, at_ms);
        Ok(())
    }

    async fn get(&self, app: &str) -> Result<Option<AppRecord>, RegistryError> {
        Ok(lock(&self.apps).records.get(app).cloned())
    }

    async fn list(&self) -> Result<Vec<AppRecord>, RegistryError> {
        let mut all: Vec<AppRecord> = lock(&self.apps).records.values().cloned().collect();
        all.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(all)
    }

    async fn accessed_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<AppRecord>, RegistryError> {
        let guard = lock(&self.apps);
        Ok(guard
            .by_access
            .iter()
            .take_while(|(at, _)| *at <= before_ms)
            .take(limit)
            .filter_map(|(_, app)| guard.records.get(app).cloned())
            .collect())
    }

    async fn remember_formation(
        &self,
        app: &str,
        formation: Vec<(String, u32)>,
    ) -> Result<(), RegistryError> {
        lock(&self.apps).entry(app).formation = formation;
        Ok(())
    }

    async fn remember_autoscalers(
        &self,
        app: &str,
        autoscalers: Vec<String>,
    ) -> Result<(), RegistryError> {
        lock(&self.apps).entry(app).autoscalers = autoscalers;
        Ok(())
    }

    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        let mut guard = lock(&self.apps);
        if let Some(record) = guard.records.remove(app) {
            guard
                .by_access
                .remove(&(record.last_access_ms, app.to_owned()));
        }
        Ok(())
    }

    async fn forget_if_accessed_before(
        &self,
        app: &str,
        before_ms: u64,
    ) -> Result<bool, RegistryError> {
        let mut guard = lock(&self.apps);
        let Some(at) = guard.records.get(app).map(|r| r.last_access_ms) else {
            return Ok(true);
        };
        if at >= before_ms {
            return Ok(false);
        }
        guard.records.remove(app);
        guard.by_access.remove(&(at, app.to_owned()));
        Ok(true)
    }

    async fn len(&self) -> Result<usize, RegistryError> {
        Ok(lock(&self.apps).records.len())
    }
}

/// Leases and notes inside one process (one instance needs no more).
#[derive(Debug, Default)]
pub struct InMemoryCoordinator {
    leases: Mutex<HashMap<String, (String, Instant)>>,
    notes: Mutex<HashMap<String, (String, Instant)>>,
    /// Set -> member -> mark (ms).
    marks: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl InMemoryCoordinator {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Coordinator for InMemoryCoordinator {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, RegistryError> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        match leases.get(name) {
            Some((owner, until)) if *until > now && owner != holder => Ok(false),
            _ => {
                leases.insert(name.to_owned(), (holder.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release(&self, name: &str, holder: &str) -> Result<bool, RegistryError> {
        let mut leases = lock(&self.leases);
        match leases.get(name) {
            Some((owner, until)) if owner == holder && *until > Instant::now() => {
                leases.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, RegistryError> {
        Ok(lock(&self.leases)
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(owner, _)| owner.clone()))
    }

    async fn put_note(&self, name: &str, value: &str, ttl: Duration) -> Result<(), RegistryError> {
        lock(&self.notes).insert(name.to_owned(), (value.to_owned(), Instant::now() + ttl));
        Ok(())
    }

    async fn note(&self, name: &str) -> Result<Option<String>, RegistryError> {
        Ok(lock(&self.notes)
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(value, _)| value.clone()))
    }

    async fn mark(
        &self,
        set: &str,
        member: &str,
        at_ms: u64,
        keep: Duration,
    ) -> Result<(), RegistryError> {
        let mut marks = lock(&self.marks);
        let marks = marks.entry(set.to_owned()).or_default();
        let at = marks.entry(member.to_owned()).or_insert(at_ms);
        *at = (*at).max(at_ms);
        let oldest = at_ms.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
        marks.retain(|_, at| *at >= oldest);
        Ok(())
    }

    async fn marked_since(
        &self,
        set: &str,
        since_ms: u64,
    ) -> Result<Vec<(String, u64)>, RegistryError> {
        let marks = lock(&self.marks);
        let mut out: Vec<(String, u64)> = marks
            .get(set)
            .map(|m| {
                m.iter()
                    .filter(|(_, at)| **at > since_ms)
                    .map(|(member, at)| (member.clone(), *at))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}

/// A bounded in-memory event log.
#[derive(Debug)]
pub struct InMemoryEventLog {
    capacity: usize,
    events: Mutex<VecDeque<Event>>,
}

impl InMemoryEventLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            events: Mutex::new(VecDeque::new()),
        }
    }
}

#[async_trait]
impl EventLog for InMemoryEventLog {
    async fn record(&self, event: Event) -> Result<(), RegistryError> {
        let mut events = lock(&self.events);
        if events.len() == self.capacity {
            events.pop_front();
        }
        events.push_back(event);
        Ok(())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Event>, RegistryError> {
        Ok(lock(&self.events)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }
}

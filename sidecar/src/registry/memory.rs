//! In-memory registry, coordinator and event log: the defaults for a single
//! gateway instance.

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

    async fn forget(&self, app: &str) -> Result<(), RegistryError> {
        let mut guard = lock(&self.apps);
        if let Some(record) = guard.records.remove(app) {
            guard
                .by_access
                .remove(&(record.last_access_ms, app.to_owned()));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::super::EventKind;
    use super::*;

    fn apps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn last_access_never_moves_backwards() {
        let r = InMemoryRegistry::new();
        r.touch(&apps(&["front-app"]), 2_000).await.unwrap();
        r.touch(&apps(&["front-app"]), 1_000).await.unwrap();
        assert_eq!(
            r.get("front-app").await.unwrap().unwrap().last_access_ms,
            2_000
        );
        r.touch(&apps(&["front-app", "back-app"]), 3_000)
            .await
            .unwrap();
        let all = r.list().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|a| (a.app.as_str(), a.last_access_ms))
                .collect::<Vec<_>>(),
            [("back-app", 3_000), ("front-app", 3_000)]
        );
    }

    #[tokio::test]
    async fn register_keeps_access_and_formation() {
        let r = InMemoryRegistry::new();
        r.touch(&apps(&["my-app-1"]), 5_000).await.unwrap();
        r.remember_formation("my-app-1", vec![("web".into(), 2)])
            .await
            .unwrap();
        let meta = AppMeta {
            region: "osc-fr1".into(),
            max_idle_minutes: 30,
            linked_apps: apps(&["my-api-1"]),
        };
        r.register("my-app-1", meta, 4_000).await.unwrap();
        let rec = r.get("my-app-1").await.unwrap().unwrap();
        assert_eq!(rec.last_access_ms, 5_000);
        assert_eq!(rec.formation, vec![("web".to_string(), 2)]);
        assert_eq!(rec.region.as_deref(), Some("osc-fr1"));
        r.forget("my-app-1").await.unwrap();
        assert!(r.get("my-app-1").await.unwrap().is_none());
        assert_eq!(r.len().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn accessed_before_is_a_range_oldest_first() {
        let r = InMemoryRegistry::new();
        r.touch(&apps(&["app-aaaa"]), 3_000).await.unwrap();
        r.touch(&apps(&["app-bbbb"]), 1_000).await.unwrap();
        r.touch(&apps(&["app-cccc"]), 2_000).await.unwrap();
        r.touch(&apps(&["app-bbbb"]), 4_000).await.unwrap();
        let idle: Vec<_> = r
            .accessed_before(3_000, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.app)
            .collect();
        assert_eq!(idle, ["app-cccc", "app-aaaa"]);
        assert_eq!(r.accessed_before(3_000, 1).await.unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_and_are_released_only_by_their_holder() {
        let c = InMemoryCoordinator::new();
        let ttl = Duration::from_secs(10);
        assert!(c.acquire("pass", "one", ttl).await.unwrap());
        assert!(!c.acquire("pass", "two", ttl).await.unwrap());
        assert!(!c.release("pass", "two").await.unwrap());
        assert!(
            c.acquire("pass", "one", ttl).await.unwrap(),
            "the holder extends it"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            c.acquire("pass", "two", ttl).await.unwrap(),
            "a dead holder's lease expires"
        );
        assert!(
            !c.release("pass", "one").await.unwrap(),
            "the old holder cannot release the new lease"
        );
        assert_eq!(c.holder("pass").await.unwrap().as_deref(), Some("two"));
        assert!(c.release("pass", "two").await.unwrap());
        assert_eq!(c.holder("pass").await.unwrap(), None);

        c.put_note("wake/app", "done", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(c.note("wake/app").await.unwrap().as_deref(), Some("done"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.note("wake/app").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_event_log_is_bounded_newest_first() {
        let log = InMemoryEventLog::new(2);
        for (i, app) in ["app-one1", "app-two2", "app-three"].iter().enumerate() {
            let event = Event {
                at_ms: i as u64,
                app: app.to_string(),
                instance: "test".into(),
                kind: EventKind::Registered,
            };
            log.record(event).await.unwrap();
        }
        let recent: Vec<_> = log
            .recent(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.app)
            .collect();
        assert_eq!(recent, ["app-three", "app-two2"]);
    }
}

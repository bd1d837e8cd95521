//! The activity the filter reports, and its way to the registry.
//!
//! Invariants:
//! - Activity is never lost to a registry outage: what cannot be written is
//!   kept in memory (latest access per app, at most [`MAX_PENDING_APPS`]
//!   apps) and written by the next batch, the background flusher
//!   ([`ActivityBuffer::run_flusher`]) or the scheduler before its pass.
//! - An app's kept access only moves forward.
//! - Activity never registers an app: only apps the gateway resolved (woken,
//!   or seen in a listing) are in the registry, and an access moves theirs
//!   forward. Names the registry does not hold are dropped (counted in
//!   `paastis_registry_refused_total{reason="unknown"}`), so posting any
//!   number of made-up names never grows it.
//! - An answer lists an app as running only when this instance saw it
//!   running within its awake TTL and no instance stopped it since
//!   ([`AwakeCache::verified`]): activity never extends "awake".

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use paastis_rules::{is_valid_app_name, AppRules};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::awake::{Awake, AwakeCache};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::registry::{Coordinator, Registry, RegistryError};

/// Most apps one activity batch may name (larger batches are cut).
pub const MAX_ACTIVITY_BATCH: usize = 10_000;
/// Most apps whose activity is kept while the registry is unreachable.
/// Beyond it new apps are dropped (logged); apps already kept still move
/// forward. 50k entries are a few MiB.
pub const MAX_PENDING_APPS: usize = 50_000;

/// Accesses on their way to the registry.
pub struct ActivityBuffer {
    registry: Arc<dyn Registry>,
    metrics: Arc<Metrics>,
    /// Accesses not written to the registry yet (app -> latest, ms).
    pending: Mutex<HashMap<String, u64>>,
}

impl ActivityBuffer {
    pub fn new(registry: Arc<dyn Registry>, metrics: Arc<Metrics>) -> Self {
        Self {
            registry,
            metrics,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        // Single map operations: a poisoned lock is still consistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records activity for a batch of apps the filter served (and, as in
    /// Paastis, for their linked apps, so a back end stays awake while its
    /// front end is used). Returns those of the batch known to run, so the
    /// filter can refresh its cache.
    pub async fn record_batch(
        &self,
        rules: &AppRules,
        awake: &AwakeCache,
        coordinator: &dyn Coordinator,
        apps: &[String],
    ) -> Vec<Awake> {
        let mut touched = BTreeSet::new();
        // (requested, resolved) of the names the rules resolve.
        let mut named: Vec<(String, String)> = Vec::new();
        for requested in apps
            .iter()
            .filter(|a| is_valid_app_name(a))
            .take(MAX_ACTIVITY_BATCH)
        {
            let resolved = match rules.resolve(requested) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "activity for an app the rules cannot resolve");
                    continue;
                }
            };
            named.push((requested.clone(), resolved.name.clone()));
            touched.insert(resolved.name);
            touched.extend(resolved.linked_apps);
        }
        let touched: Vec<String> = touched.into_iter().collect();
        self.metrics.activity_batches.inc();
        self.metrics.activity_apps.inc_by(apps.len() as u64);
        self.keep(&touched, now_ms());
        let resolved: Vec<String> = named.iter().map(|(_, r)| r.clone()).collect();
        let (verified, flushed) =
            futures::future::join(awake.verified(coordinator, &resolved), self.flush()).await;
        if let Err(e) = flushed {
            warn!(error = %e, pending = self.pending(), "activity kept in memory until the registry is back");
        }
        named
            .into_iter()
            .filter_map(|(requested, resolved)| {
                verified.iter().find(|a| a.app == resolved).map(|a| Awake {
                    app: requested,
                    ..a.clone()
                })
            })
            .collect()
    }

    /// Adds accesses to the pending ones (each app keeps its latest).
    pub fn keep(&self, apps: &[String], at_ms: u64) {
        let mut pending = self.lock();
        let mut dropped = 0usize;
        for app in apps {
            if let Some(at) = pending.get_mut(app) {
                *at = (*at).max(at_ms);
            } else if pending.len() < MAX_PENDING_APPS {
                pending.insert(app.clone(), at_ms);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            warn!(
                dropped,
                kept = MAX_PENDING_APPS,
                "registry unreachable for long: activity of some apps dropped"
            );
        }
    }

    /// Drops what is kept for `app` (it is being forgotten).
    pub fn forget(&self, app: &str) {
        self.lock().remove(app);
    }

    /// How many apps have activity not written to the registry yet (also
    /// refreshes the gauge).
    pub fn pending(&self) -> usize {
        let n = self.lock().len();
        self.metrics
            .activity_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        n
    }

    /// Writes the pending activity to the registry, for the apps it holds
    /// (the others are dropped and counted). On failure what was not written
    /// is kept (merged with what arrived meanwhile) and the error is
    /// returned. Returns how many apps were written.
    pub async fn flush(&self) -> Result<usize, RegistryError> {
        let taken = std::mem::take(&mut *self.lock());
        if taken.is_empty() {
            return Ok(0);
        }
        // One touch per distinct instant: a live batch is a single one.
        let mut by_time: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (app, at) in taken {
            by_time.entry(at).or_default().push(app);
        }
        let mut written = 0;
        let mut groups = by_time.into_iter();
        while let Some((at, apps)) = groups.next() {
            match self.registry.touch_known(&apps, at).await {
                Ok(unknown) => {
                    if !unknown.is_empty() {
                        self.metrics
                            .registry_refused("unknown", unknown.len() as u64);
                        tracing::debug!(
                            dropped = unknown.len(),
                            "activity for apps the registry does not hold dropped"
                        );
                    }
                    written += apps.len() - unknown.len();
                }
                Err(e) => {
                    self.keep(&apps, at);
                    for (at, apps) in groups {
                        self.keep(&apps, at);
                    }
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    /// Retries writing pending activity every `every` until `stop` is
    /// cancelled, so that it reaches a recovered registry before another
    /// instance's scheduler reads it.
    pub async fn run_flusher(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    if self.pending() == 0 {
                        continue;
                    }
                    match self.flush().await {
                        Ok(n) => info!(apps = n, "pending activity written to the registry"),
                        Err(e) => tracing::debug!(error = %e, "registry still unreachable"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{AppMeta, InMemoryCoordinator, InMemoryRegistry};

    fn meta() -> AppMeta {
        AppMeta {
            region: "osc-fr1".to_owned(),
            max_idle_minutes: 15,
            linked_apps: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn names_the_registry_does_not_hold_never_get_in() {
        let registry = Arc::new(InMemoryRegistry::new());
        let metrics = Arc::new(Metrics::new());
        let buffer = ActivityBuffer::new(registry.clone(), metrics.clone());
        registry.register("real-app", meta(), 0).await.unwrap();
        let rules =
            crate::config::parse_rules(std::path::Path::new("paastis.yml"), "", 15).expect("rules");
        let awake = AwakeCache::new(Duration::from_secs(60));
        let mut names: Vec<String> = (0..1_000).map(|i| format!("made-up-{i:04}")).collect();
        names.push("real-app".to_owned());
        let answer = buffer
            .record_batch(&rules, &awake, &InMemoryCoordinator::new(), &names)
            .await;
        assert!(answer.is_empty(), "nothing verified running: {answer:?}");
        assert_eq!(
            registry.len().await.unwrap(),
            1,
            "no made-up name registered"
        );
        let record = registry.get("real-app").await.unwrap().unwrap();
        assert!(record.last_access_ms > 0, "the real app's access is kept");
        assert_eq!(buffer.pending(), 0, "dropped, not kept for later");
        let text = metrics.encode();
        assert!(
            text.contains(r#"paastis_registry_refused_total{reason="unknown"} 1000"#),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_never_lists_an_app_stopped_since_or_seen_too_long_ago() {
        let registry = Arc::new(InMemoryRegistry::new());
        let buffer = ActivityBuffer::new(registry.clone(), Arc::new(Metrics::new()));
        let rules =
            crate::config::parse_rules(std::path::Path::new("paastis.yml"), "", 15).expect("rules");
        let coordinator = InMemoryCoordinator::new();
        let awake = AwakeCache::new(Duration::from_secs(60));
        let batch = [
            "old-app-1".to_owned(),
            "paused-app".to_owned(),
            "live-app-1".to_owned(),
        ];
        for app in &batch {
            registry.register(app, meta(), 0).await.unwrap();
        }
        awake.insert("old-app-1", Awake::new("old-app-1", "osc-fr1"));
        tokio::time::advance(Duration::from_secs(61)).await;
        awake.insert("paused-app", Awake::new("paused-app", "osc-fr1"));
        awake.insert("live-app-1", Awake::new("live-app-1", "osc-fr1"));
        // Another instance paused it after this one saw it running.
        std::thread::sleep(Duration::from_millis(2));
        crate::awake::mark_stopped(&coordinator, "paused-app", Duration::from_secs(600))
            .await
            .unwrap();
        let answer = buffer
            .record_batch(&rules, &awake, &coordinator, &batch)
            .await;
        assert_eq!(answer, [Awake::new("live-app-1", "osc-fr1")]);
        assert_eq!(awake.entry("paused-app"), None, "forgotten here too");
    }

    #[tokio::test]
    async fn a_batch_touches_linked_apps_and_answers_the_running_ones() {
        let registry = Arc::new(InMemoryRegistry::new());
        let buffer = ActivityBuffer::new(registry.clone(), Arc::new(Metrics::new()));
        let rules = crate::config::parse_rules(
            std::path::Path::new("paastis.yml"),
            "rules:\n  - pattern: '^shop-front$'\n    linked_apps: ['shop-api']\n",
            15,
        )
        .expect("rules");
        let awake = AwakeCache::new(Duration::from_secs(60));
        awake.insert("shop-front", Awake::new("shop-front", "osc-fr1"));
        // Both resolved by the gateway before (woken).
        for app in ["shop-front", "shop-api"] {
            registry.register(app, meta(), 0).await.unwrap();
        }
        let coordinator = InMemoryCoordinator::new();
        let answer = buffer
            .record_batch(
                &rules,
                &awake,
                &coordinator,
                &["shop-front".to_owned(), "Bad_Name".to_owned()],
            )
            .await;
        assert_eq!(answer, vec![Awake::new("shop-front", "osc-fr1")]);
        let names: Vec<String> = registry
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.app)
            .collect();
        assert_eq!(names, ["shop-api", "shop-front"]);
        assert_eq!(buffer.pending(), 0);
    }

    #[test]
    fn kept_accesses_only_move_forward() {
        let buffer =
            ActivityBuffer::new(Arc::new(InMemoryRegistry::new()), Arc::new(Metrics::new()));
        buffer.keep(&["a".to_owned()], 20);
        buffer.keep(&["a".to_owned()], 10);
        assert_eq!(buffer.lock().get("a"), Some(&20));
        buffer.forget("a");
        assert_eq!(buffer.pending(), 0);
    }
}

//! Waking apps: resolve the rules, find the region, scale `web` back up (or
//! restore the remembered formation), wait until a web container runs.
//!
//! Invariants:
//! - At most one wake per app runs at a time in this process: every caller
//!   asking for an app that is being woken joins the running wake (single
//!   flight), so N concurrent requests make one scale call.
//! - A wake runs in its own task with its own deadline: a caller that gives
//!   up (its request timed out or was cancelled) does not cancel it, and later
//!   callers still get its result.
//! - An app and its linked apps are woken concurrently.
//! - Activity is never lost to a registry outage: what cannot be written is
//!   kept in memory (latest access per app, at most [`MAX_PENDING_APPS`]
//!   apps) and written by the next batch, the background flusher
//!   ([`Waker::run_flusher`]) or the scheduler before its pass.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::{BoxFuture, FutureExt, Shared};
use paastis_rules::{is_valid_app_name, AppRules, ResolveError, ResolvedApp};
use thiserror::Error;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::hooks::{Hook, HookRunner};
use crate::registry::{AppMeta, Coordinator, Event, EventKind, EventLog, Registry};
use crate::scalingo::{ContainerAmount, ScaleOutcome, ScalingoClient, ScalingoError};

/// How many times a wake re-reads the formation when Scalingo says another
/// operation is in progress (422 "is scaling") before it gives up.
const BUSY_RETRIES: u32 = 5;
/// Pause between those re-reads.
const BUSY_PAUSE: Duration = Duration::from_secs(1);
/// Most apps one activity batch may name (larger batches are cut).
pub const MAX_ACTIVITY_BATCH: usize = 10_000;
/// Most apps whose activity is kept while the registry is unreachable.
/// Beyond it new apps are dropped (logged); apps already kept still move
/// forward. 50k entries are a few MiB.
pub const MAX_PENDING_APPS: usize = 50_000;

/// An app that runs, and where to send its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awake {
    pub app: String,
    pub region: String,
    /// Host of the app's default domain on its region's front-end.
    pub upstream_host: String,
}

impl Awake {
    fn new(app: &str, region: &str) -> Self {
        Self {
            app: app.to_owned(),
            region: region.to_owned(),
            upstream_host: format!("{app}.{region}.scalingo.io"),
        }
    }
}

/// Why a wake failed. Mapped to HTTP answers in one place (`server`).
#[derive(Debug, Clone, Error)]
pub enum WakeError {
    #[error("{0:?} is not a valid Scalingo app name")]
    InvalidApp(String),
    #[error("no app named {0:?} in any region")]
    UnknownApp(String),
    #[error("app {0:?} has no web process type (never deployed?)")]
    NoWebProcess(String),
    #[error("app {0:?} did not start in time")]
    Timeout(String),
    #[error("{0}")]
    Rules(#[from] ResolveError),
    #[error("waking {app:?} failed: {source}")]
    Provider {
        app: String,
        #[source]
        source: ScalingoError,
    },
    #[error("waking {0:?} stopped unexpectedly")]
    Aborted(String),
    #[error("waking {app:?} failed on another gateway instance: {message}")]
    Elsewhere { app: String, message: String },
}

/// What the instance that woke an app tells the others that waited on it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WakeNote {
    region: Option<String>,
    error: Option<String>,
}

/// How long the note of a finished wake stays readable by the instances
/// that waited on it.
const NOTE_TTL: Duration = Duration::from_secs(15);
/// How often an instance waiting on another's wake looks for its note.
const NOTE_POLL: Duration = Duration::from_millis(100);
/// Lifetime of a wake lease. The leader renews it every third of it while
/// it works, so a leader that dies (killed, partitioned) hands over to a
/// waiting instance within this time, not at the end of the wake timeout.
pub const WAKE_LEASE_TTL: Duration = Duration::from_secs(10);

impl WakeError {
    fn provider(app: &str, source: ScalingoError) -> Self {
        match source {
            ScalingoError::NotFound => Self::UnknownApp(app.to_owned()),
            ScalingoError::InvalidAppName(_) => Self::InvalidApp(app.to_owned()),
            ScalingoError::Timeout => Self::Timeout(app.to_owned()),
            source => Self::Provider {
                app: app.to_owned(),
                source,
            },
        }
    }
}

/// The answer to one wake request (a type of the filter-sidecar contract).
pub use paastis_api::{LinkedResult, WakeAnswer};

type SharedWake = Shared<BoxFuture<'static, Result<Awake, WakeError>>>;

/// Wakes apps; shared by every request of the sidecar.
pub struct Waker {
    client: ScalingoClient,
    rules: AppRules,
    ignored: BTreeSet<String>,
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    events: Arc<dyn EventLog>,
    instance: String,
    wake_timeout: Duration,
    awake_ttl: Duration,
    inflight: Mutex<HashMap<String, SharedWake>>,
    /// Apps seen running, with when that was checked.
    awake: Mutex<HashMap<String, (Awake, Instant)>>,
    /// Accesses not written to the registry yet (app -> latest, ms).
    pending: Mutex<HashMap<String, u64>>,
    metrics: Arc<crate::metrics::Metrics>,
    hooks: Arc<HookRunner>,
}

/// What a [`Waker`] is built from.
pub struct WakerParts {
    pub client: ScalingoClient,
    pub rules: AppRules,
    /// Apps routed but never scaled.
    pub ignored: BTreeSet<String>,
    pub registry: Arc<dyn Registry>,
    pub coordinator: Arc<dyn Coordinator>,
    pub events: Arc<dyn EventLog>,
    /// This instance's name in leases and events.
    pub instance: String,
    /// Bound on one wake request.
    pub wake_timeout: Duration,
    /// How long an app seen running is trusted to still run.
    pub awake_ttl: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub hooks: Arc<HookRunner>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a single map operation: a panic cannot leave
    // the map inconsistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Waker {
    pub fn new(parts: WakerParts) -> Arc<Self> {
        Arc::new(Self {
            client: parts.client,
            rules: parts.rules,
            ignored: parts.ignored,
            registry: parts.registry,
            coordinator: parts.coordinator,
            events: parts.events,
            instance: parts.instance,
            wake_timeout: parts.wake_timeout,
            awake_ttl: parts.awake_ttl,
            inflight: Mutex::new(HashMap::new()),
            awake: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            metrics: parts.metrics,
            hooks: parts.hooks,
        })
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    pub fn events(&self) -> &Arc<dyn EventLog> {
        &self.events
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Wakes running now in this process.
    pub fn wakes_in_flight(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Waits until no wake runs in this process (used at shutdown, under the
    /// caller's deadline: an app mid-boot is followed to its end rather than
    /// abandoned with its waiters).
    pub async fn drained(&self) {
        while self.wakes_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `app` is routed but never scaled (`REGISTRY_IGNORED_APPS`).
    pub fn is_ignored(&self, app: &str) -> bool {
        self.ignored.contains(app)
    }

    /// Forgets `app`: out of the registry (its remembered formation too)
    /// and of the awake cache. Scalingo is not touched.
    pub async fn forget(&self, app: &str) -> Result<(), crate::registry::RegistryError> {
        self.forget_awake(app);
        lock(&self.pending).remove(app);
        self.registry.forget(app).await?;
        let event = Event {
            at_ms: now_ms(),
            app: app.to_owned(),
            instance: self.instance.clone(),
            kind: EventKind::Forgotten,
        };
        if let Err(e) = self.events.record(event).await {
            warn!(error = %e, "event not recorded");
        }
        Ok(())
    }

    /// Wakes the app a host named (`requested`) and its linked apps, and
    /// waits until they run or the wake timeout passes. `region_hint` comes
    /// from the filter's host rule; a `region` in `paastis.yml` wins over it.
    pub async fn wake(
        self: &Arc<Self>,
        requested: &str,
        region_hint: Option<&str>,
    ) -> Result<WakeAnswer, WakeError> {
        if !is_valid_app_name(requested) {
            return Err(WakeError::InvalidApp(requested.to_owned()));
        }
        let started = Instant::now();
        let set = self.rules.wake_set(requested)?;
        // A request that finds every app known running is not a cold start.
        let cold = set.iter().any(|a| self.awake_fresh(&a.name).is_none());
        let waits = set.iter().enumerate().map(|(i, app)| {
            // The host's region hint is about the app it named, not its links.
            let hint = if i == 0 { region_hint } else { None };
            self.wake_shared(app, hint)
        });
        let results = tokio::time::timeout(self.wake_timeout, futures::future::join_all(waits))
            .await
            .map_err(|_| WakeError::Timeout(requested.to_owned()))?;

        let mut results = results.into_iter();
        let main = results
            .next()
            .ok_or_else(|| WakeError::Aborted(requested.to_owned()))??;
        let mut linked_apps = Vec::new();
        for (app, result) in set.iter().skip(1).zip(results) {
            if let Err(e) = &result {
                warn!(app = %app.name, linked_to = %main.app, error = %e, "linked app did not wake");
            }
            linked_apps.push(LinkedResult {
                app: app.name.clone(),
                running: result.is_ok(),
                error: result.err().map(|e| e.to_string()),
            });
        }

        let at = now_ms();
        for (app, linked) in set
            .iter()
            .zip(std::iter::once(true).chain(linked_apps.iter().map(|l| l.running)))
        {
            if !linked {
                continue;
            }
            let region = if app.name == main.app {
                main.region.clone()
            } else {
                match self.awake_entry(&app.name) {
                    Some(a) => a.region,
                    None => continue,
                }
            };
            let meta = AppMeta {
                region,
                max_idle_minutes: app.max_idle_minutes,
                linked_apps: app.linked_apps.clone(),
            };
            if let Err(e) = self.registry.register(&app.name, meta, at).await {
                warn!(app = %app.name, error = %e, "could not record the wake in the registry; kept in memory");
                // Its access at least is kept; region and idle time are
                // learnt again from Scalingo and the rules.
                self.keep_pending(std::slice::from_ref(&app.name), at);
            }
        }

        if cold {
            self.metrics
                .wake_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(WakeAnswer {
            app: Some(requested.to_owned()),
            target: main.app.clone(),
            region: main.region.clone(),
            upstream_host: main.upstream_host.clone(),
            linked_apps,
            waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Forgets that `app` runs (it is being paused): the next request for it
    /// goes through a full wake.
    pub fn forget_awake(&self, app: &str) {
        lock(&self.awake).remove(app);
    }

    fn awake_entry(&self, app: &str) -> Option<Awake> {
        lock(&self.awake).get(app).map(|(a, _)| a.clone())
    }

    fn awake_fresh(&self, app: &str) -> Option<Awake> {
        lock(&self.awake)
            .get(app)
            .filter(|(_, checked)| checked.elapsed() < self.awake_ttl)
            .map(|(a, _)| a.clone())
    }

    /// Joins the wake of `app` that is running, or starts one.
    fn wake_shared(self: &Arc<Self>, app: &ResolvedApp, region_hint: Option<&str>) -> SharedWake {
        if let Some(awake) = self.awake_fresh(&app.name) {
            return futures::future::ready(Ok(awake)).boxed().shared();
        }
        let mut inflight = lock(&self.inflight);
        if let Some(running) = inflight.get(&app.name) {
            return running.clone();
        }
        let this = Arc::clone(self);
        let app = app.clone();
        let region = app
            .region
            .clone()
            .or_else(|| region_hint.map(str::to_owned));
        let name = app.name.clone();
        let span = tracing::info_span!("wake", app = %name);
        let task = tokio::spawn(
            async move {
                let result = this.wake_app(&app.name, region.as_deref()).await;
                match &result {
                    Ok(awake) => {
                        this.metrics.wake("woken");
                        lock(&this.awake).insert(app.name.clone(), (awake.clone(), Instant::now()));
                    }
                    Err(e) => {
                        this.metrics.wake(match e {
                            WakeError::Timeout(_) => "timeout",
                            WakeError::UnknownApp(_) | WakeError::InvalidApp(_) => "unknown_app",
                            _ => "failed",
                        });
                        warn!(error = %e, "wake failed");
                    }
                }
                // Removed only after the awake map is updated, so that a
                // caller arriving now finds one or the other.
                lock(&this.inflight).remove(&app.name);
                result
            }
            .instrument(span),
        );
        let abort_name = name.clone();
        let shared = async move { task.await.unwrap_or(Err(WakeError::Aborted(abort_name))) }
            .boxed()
            .shared();
        inflight.insert(name, shared.clone());
        shared
    }

    /// One wake, run by exactly one task per app at a time.
    async fn wake_app(&self, app: &str, region: Option<&str>) -> Result<Awake, WakeError> {
        let started = Instant::now();
        let deadline = started + self.wake_timeout;
        let region = match region {
            Some(r) => r.to_owned(),
            None => self
                .client
                .locate(app)
                .await
                .map_err(|e| WakeError::provider(app, e))?
                .ok_or_else(|| WakeError::UnknownApp(app.to_owned()))?,
        };
        if self.ignored.contains(app) {
            // Ignored apps are routed but never scaled.
            return Ok(Awake::new(app, &region));
        }

        // Across instances: one leads the wake (the lease), the others wait
        // for the note it leaves. A leader that dies loses the lease at its
        // expiry and a waiter takes over.
        let lease = format!("wake:{app}");
        let note = format!("woken:{app}");
        let mut leased = false;
        loop {
            match self
                .coordinator
                .acquire(&lease, &self.instance, WAKE_LEASE_TTL)
                .await
            {
                Ok(true) => {
                    leased = true;
                    // A note from an earlier wake must not answer this one.
                    let _ = self
                        .coordinator
                        .put_note(&note, "", Duration::from_millis(1))
                        .await;
                    break;
                }
                Ok(false) => {
                    if let Some(result) = self.wait_for_other(app, &lease, &note, deadline).await? {
                        return result;
                    }
                }
                Err(e) => {
                    // Waking must not depend on the registry being up.
                    warn!(error = %e, "coordination unavailable, waking without it");
                    break;
                }
            }
        }

        self.hooks.run(Hook::BeforeStart, app).await;
        let result = if leased {
            self.renewing(&lease, self.scale_up(app, &region, deadline))
                .await
        } else {
            self.scale_up(app, &region, deadline).await
        };
        if result.is_ok() {
            self.hooks.spawn(Hook::AfterStart, app);
        }
        let (kind, message) = match &result {
            Ok(_) => (
                EventKind::Woken {
                    duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                WakeNote {
                    region: Some(region.clone()),
                    error: None,
                },
            ),
            Err(e) => (
                EventKind::WakeFailed {
                    error: e.to_string(),
                },
                WakeNote {
                    region: None,
                    error: Some(e.to_string()),
                },
            ),
        };
        if leased {
            if let Ok(text) = serde_json::to_string(&message) {
                if let Err(e) = self.coordinator.put_note(&note, &text, NOTE_TTL).await {
                    warn!(error = %e, "wake note not written");
                }
            }
            if let Err(e) = self.coordinator.release(&lease, &self.instance).await {
                warn!(error = %e, "wake lease not released (it will expire)");
            }
        }
        let event = Event {
            at_ms: now_ms(),
            app: app.to_owned(),
            instance: self.instance.clone(),
            kind,
        };
        if let Err(e) = self.events.record(event).await {
            warn!(error = %e, "event not recorded");
        }
        result
    }

    /// Waits for the wake another instance leads. `Some(result)` when its
    /// note arrived; `None` when its lease is gone without a note (the leader
    /// died): the caller then tries to lead.
    /// Runs `work` while renewing `lease` (the heartbeat of a wake leader).
    async fn renewing<T>(&self, lease: &str, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut beat =
            tokio::time::interval_at(Instant::now() + WAKE_LEASE_TTL / 3, WAKE_LEASE_TTL / 3);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = beat.tick() => {
                    match self.coordinator.acquire(lease, &self.instance, WAKE_LEASE_TTL).await {
                        Ok(true) => {}
                        // Taken over after a stall: both scale the app up,
                        // which Scalingo treats as no change.
                        Ok(false) => warn!("wake lease taken over by another instance"),
                        Err(e) => tracing::debug!(error = %e, "wake lease not renewed"),
                    }
                }
            }
        }
    }

    async fn wait_for_other(
        &self,
        app: &str,
        lease: &str,
        note: &str,
        deadline: Instant,
    ) -> Result<Option<Result<Awake, WakeError>>, WakeError> {
        info!("another gateway instance is waking the app, waiting for it");
        loop {
            let parsed = match self.coordinator.note(note).await {
                Ok(Some(text)) if !text.is_empty() => serde_json::from_str::<WakeNote>(&text).ok(),
                _ => None,
            };
            if let Some(n) = parsed {
                return Ok(Some(match (n.region, n.error) {
                    (Some(region), None) => Ok(Awake::new(app, &region)),
                    (_, error) => Err(WakeError::Elsewhere {
                        app: app.to_owned(),
                        message: error.unwrap_or_default(),
                    }),
                }));
            }
            match self.coordinator.holder(lease).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ok(None),
            }
            if Instant::now() + NOTE_POLL >= deadline {
                return Err(WakeError::Timeout(app.to_owned()));
            }
            tokio::time::sleep(NOTE_POLL).await;
        }
    }

    /// Scales the app back up and waits until a web container runs.
    async fn scale_up(
        &self,
        app: &str,
        region: &str,
        deadline: Instant,
    ) -> Result<Awake, WakeError> {
        let started = Instant::now();
        let region = region.to_owned();
        let fail = |e| WakeError::provider(app, e);
        let mut busy = 0;
        loop {
            let formation = self.client.formation(&region, app).await.map_err(fail)?;
            let Some(web) = formation.iter().find(|c| c.name == "web") else {
                return Err(WakeError::NoWebProcess(app.to_owned()));
            };
            if web.amount > 0 {
                // Running already, or booting: wait for a running container.
                self.client
                    .wait_web_running(&region, app, deadline)
                    .await
                    .map_err(fail)?;
                break;
            }
            let changes = self.restore_plan(app, &formation).await;
            info!(region = %region, ?changes, "scaling up");
            match self.client.scale(&region, app, &changes).await {
                Ok(ScaleOutcome::Started { operation_id, .. }) => {
                    self.client
                        .wait_operation(&region, app, &operation_id, deadline)
                        .await
                        .map_err(fail)?;
                    self.client
                        .wait_web_running(&region, app, deadline)
                        .await
                        .map_err(fail)?;
                    break;
                }
                Ok(ScaleOutcome::Done { .. } | ScaleOutcome::NoChange) => {
                    self.client
                        .wait_web_running(&region, app, deadline)
                        .await
                        .map_err(fail)?;
                    break;
                }
                Err(ScalingoError::Busy(reason)) if busy < BUSY_RETRIES => {
                    busy += 1;
                    info!(%reason, "another operation is running, waiting");
                    if Instant::now() + BUSY_PAUSE >= deadline {
                        return Err(WakeError::Timeout(app.to_owned()));
                    }
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                Err(e) => return Err(fail(e)),
            }
        }
        info!(region = %region, took_ms = started.elapsed().as_millis() as u64, "app is running");
        Ok(Awake::new(app, &region))
    }

    /// The amounts to scale to: the formation remembered when the app was
    /// paused (only types that still exist and are at 0 now), else `web: 1`.
    async fn restore_plan(
        &self,
        app: &str,
        current: &[crate::scalingo::ContainerType],
    ) -> Vec<ContainerAmount> {
        let remembered = match self.registry.get(app).await {
            Ok(Some(record)) => record.formation,
            Ok(None) => Vec::new(),
            Err(e) => {
                warn!(error = %e, "registry unavailable, waking with web=1");
                Vec::new()
            }
        };
        let mut plan: Vec<ContainerAmount> = remembered
            .into_iter()
            .filter(|(name, amount)| {
                *amount > 0 && current.iter().any(|c| &c.name == name && c.amount == 0)
            })
            .map(|(name, amount)| ContainerAmount { name, amount })
            .collect();
        if !plan.iter().any(|c| c.name == "web") {
            plan.push(ContainerAmount {
                name: "web".to_owned(),
                amount: 1,
            });
        }
        plan
    }

    /// Records activity for a batch of apps the filter served (and, as in
    /// Paastis, for their linked apps, so a back end stays awake while its
    /// front end is used). Returns those of the batch known to run, so the
    /// filter can refresh its cache.
    pub async fn activity(&self, apps: &[String]) -> Vec<Awake> {
        let mut touched = BTreeSet::new();
        let mut awake = Vec::new();
        for requested in apps
            .iter()
            .filter(|a| is_valid_app_name(a))
            .take(MAX_ACTIVITY_BATCH)
        {
            let resolved = match self.rules.resolve(requested) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "activity for an app the rules cannot resolve");
                    continue;
                }
            };
            if let Some(a) = self.awake_entry(&resolved.name) {
                awake.push(Awake {
                    app: requested.clone(),
                    ..a
                });
            }
            touched.insert(resolved.name);
            touched.extend(resolved.linked_apps);
        }
        let touched: Vec<String> = touched.into_iter().collect();
        self.metrics.activity_batches.inc();
        self.metrics.activity_apps.inc_by(apps.len() as u64);
        self.keep_pending(&touched, now_ms());
        if let Err(e) = self.flush_activity().await {
            warn!(error = %e, pending = self.pending_activity(), "activity kept in memory until the registry is back");
        }
        awake
    }

    /// Adds accesses to the pending ones (each app keeps its latest).
    fn keep_pending(&self, apps: &[String], at_ms: u64) {
        let mut pending = lock(&self.pending);
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

    /// How many apps have activity not written to the registry yet.
    pub fn pending_activity(&self) -> usize {
        let n = lock(&self.pending).len();
        self.metrics
            .activity_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        n
    }

    /// Writes the pending activity to the registry. On failure what was not
    /// written is kept (merged with what arrived meanwhile) and the error is
    /// returned. Returns how many apps were written.
    pub async fn flush_activity(&self) -> Result<usize, crate::registry::RegistryError> {
        let taken = std::mem::take(&mut *lock(&self.pending));
        if taken.is_empty() {
            return Ok(0);
        }
        // One touch per distinct instant: a live batch is a single one.
        let mut by_time: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
        for (app, at) in taken {
            by_time.entry(at).or_default().push(app);
        }
        let mut written = 0;
        let mut groups = by_time.into_iter();
        while let Some((at, apps)) = groups.next() {
            if let Err(e) = self.registry.touch(&apps, at).await {
                self.keep_pending(&apps, at);
                for (at, apps) in groups {
                    self.keep_pending(&apps, at);
                }
                return Err(e);
            }
            written += apps.len();
        }
        Ok(written)
    }

    /// Retries writing pending activity every `every` until `shutdown`, so
    /// that it reaches a recovered registry before another instance's
    /// scheduler reads it.
    pub async fn run_flusher(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {
                    if self.pending_activity() == 0 {
                        continue;
                    }
                    match self.flush_activity().await {
                        Ok(n) => info!(apps = n, "pending activity written to the registry"),
                        Err(e) => tracing::debug!(error = %e, "registry still unreachable"),
                    }
                }
            }
        }
    }

    /// The rules this waker resolves apps with.
    pub fn rules(&self) -> &AppRules {
        &self.rules
    }

    /// What this instance knows of `app` (a resolved name) right now, without
    /// asking Scalingo: seen running within the awake TTL, being woken, or
    /// neither. Read by the waiting page's status.
    pub fn wake_state(&self, app: &str) -> WakeState {
        if let Some(awake) = self.awake_fresh(app) {
            return WakeState::Running(awake);
        }
        if lock(&self.inflight).contains_key(app) {
            WakeState::Waking
        } else {
            WakeState::Idle
        }
    }
}

impl Waker {
    /// Like [`Waker::wake_state`], and when this instance knows nothing, what
    /// the other instances sharing the registry do: an app whose wake lease
    /// is held is waking; one with a fresh success note runs. Registry
    /// errors read as "nothing known".
    pub async fn wake_state_shared(&self, app: &str) -> WakeState {
        let local = self.wake_state(app);
        if local != WakeState::Idle {
            return local;
        }
        if let Ok(Some(text)) = self.coordinator.note(&format!("woken:{app}")).await {
            if let Ok(WakeNote {
                region: Some(region),
                error: None,
            }) = serde_json::from_str::<WakeNote>(&text)
            {
                return WakeState::Running(Awake::new(app, &region));
            }
        }
        match self.coordinator.holder(&format!("wake:{app}")).await {
            Ok(Some(_)) => WakeState::Waking,
            _ => WakeState::Idle,
        }
    }
}

/// See [`Waker::wake_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeState {
    Running(Awake),
    Waking,
    Idle,
}

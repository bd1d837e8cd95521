//! The idle scheduler: every interval, one pass puts to sleep the apps idle
//! longer than their max idle time.
//!
//! One pass:
//! 1. takes the `scheduler` lease, so that one gateway instance works at a
//!    time (a crashed holder's lease expires after [`LEASE_TTL`]);
//! 2. lists the apps of each region once (one call per region, whatever the
//!    number of apps);
//! 3. registers running apps it does not know (discovery: their idle clock
//!    starts now) and forgets stopped apps that it has no formation to
//!    restore for;
//! 4. pauses every running app whose last access is older than its max idle
//!    time: it re-reads the last access right before (activity that arrived
//!    meanwhile wins), remembers the formation, then scales every type to 0.
//!
//! Before all that, the instance writes the activity it kept in memory while
//! the registry was unreachable. A pass that cannot read or write the
//! registry pauses nothing, and neither does the next one: it gives the other
//! instances one interval to write the activity they kept meanwhile.
//!
//! Scalingo calls of a pass are paced ([`Pacer`]) to stay under the API's
//! rate limit (60 a minute per token by default); a 429 ends the pass, the
//! rest waits for the next one. A long pass renews its lease before each
//! pause and stops if another instance took it over.
//!
//! Max idle time: minutes, from the rules (`app_max_idle_time`) or
//! `START_AND_STOP_MAX_IDLE_TIME` (default 15). `0` means "never pause
//! automatically": an app matched by such a rule is kept running, which is the
//! safe reading of a value that would otherwise stop an app under its users.
//! Ignored apps are never touched.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paastis_rules::AppRules;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::hooks::{Hook, HookRunner};
use crate::registry::{AppMeta, Coordinator, Event, EventKind, EventLog, Registry, RegistryError};
use crate::scalingo::{AppStatus, ContainerAmount, ScaleOutcome, ScalingoClient, ScalingoError};
use crate::wake::{now_ms, Waker};

/// How long a pass may hold the lease before another instance may take over.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
const LEASE: &str = "scheduler";

/// Default pace of the scheduler's Scalingo calls: Scalingo's rate limit.
pub const DEFAULT_CALLS_PER_MINUTE: u32 = 60;

/// Spaces calls evenly: at most `n` a minute, never a burst.
///
/// Invariant: two calls let through are at least `60 s / n` apart.
#[derive(Debug)]
pub struct Pacer {
    spacing: Duration,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn per_minute(n: u32) -> Self {
        Self {
            spacing: Duration::from_secs(60) / n.max(1),
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits for this call's slot.
    pub async fn ready(&self) {
        // Held across the sleep: callers queue in order.
        let mut next = self.next.lock().await;
        let now = Instant::now();
        let slot = next.map_or(now, |n| n.max(now));
        tokio::time::sleep_until(slot).await;
        *next = Some(slot + self.spacing);
    }
}

/// Why a pass stopped before its end.
#[derive(Debug, Error)]
pub enum PassError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("scalingo: {0}")]
    Scalingo(#[from] ScalingoError),
}

/// Why an app could not be paused on request.
#[derive(Debug, Error)]
pub enum PauseError {
    #[error("{0:?} is in REGISTRY_IGNORED_APPS: the gateway never scales it")]
    Ignored(String),
    #[error("no app named {0:?} in any region")]
    UnknownApp(String),
    #[error(transparent)]
    Pass(#[from] PassError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Another instance held the lease: nothing was done.
    pub skipped: bool,
    /// The previous pass could not use the registry: this one discovered and
    /// forgot apps but paused none.
    pub recovering: bool,
    /// Another instance took the lease over during the pass.
    pub lost_lease: bool,
    pub discovered: Vec<String>,
    pub forgotten: Vec<String>,
    pub paused: Vec<String>,
    /// Apps that could not be paused, with why.
    pub failed: Vec<(String, String)>,
}

pub struct Scheduler {
    client: ScalingoClient,
    rules: AppRules,
    ignored: BTreeSet<String>,
    registry: Arc<dyn Registry>,
    coordinator: Arc<dyn Coordinator>,
    events: Arc<dyn EventLog>,
    waker: Arc<Waker>,
    instance: String,
    pacer: Pacer,
    /// The last pass failed on the registry.
    registry_failed: AtomicBool,
    metrics: Arc<crate::metrics::Metrics>,
    hooks: Option<Arc<HookRunner>>,
}

impl Scheduler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: ScalingoClient,
        rules: AppRules,
        ignored: BTreeSet<String>,
        registry: Arc<dyn Registry>,
        coordinator: Arc<dyn Coordinator>,
        events: Arc<dyn EventLog>,
        waker: Arc<Waker>,
        instance: String,
    ) -> Self {
        Self {
            client,
            rules,
            ignored,
            registry,
            coordinator,
            events,
            waker,
            instance,
            pacer: Pacer::per_minute(DEFAULT_CALLS_PER_MINUTE),
            registry_failed: AtomicBool::new(false),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            hooks: None,
        }
    }

    /// Runs the stop hooks around each pause.
    pub fn with_hooks(mut self, hooks: Arc<HookRunner>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Counts passes and pauses in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Paces the pass's Scalingo calls to `n` a minute.
    pub fn with_pace(mut self, calls_per_minute: u32) -> Self {
        self.pacer = Pacer::per_minute(calls_per_minute);
        self
    }

    async fn event(&self, app: &str, kind: EventKind) {
        let event = Event {
            at_ms: now_ms(),
            app: app.to_owned(),
            instance: self.instance.clone(),
            kind,
        };
        if let Err(e) = self.events.record(event).await {
            warn!(error = %e, "event not recorded");
        }
    }

    fn max_idle_minutes(&self, app: &str) -> u64 {
        match self.rules.resolve(app) {
            Ok(resolved) => resolved.max_idle_minutes,
            // A rule that cannot resolve this name: keep the app (safe side).
            Err(_) => 0,
        }
    }

    /// One pass at `now` (ms since the epoch). Nothing is paused when the
    /// registry cannot be read: without last accesses every app would look
    /// idle.
    pub async fn pass(&self, now: u64) -> Result<PassReport, PassError> {
        let started = Instant::now();
        let result = self.pass_inner(now).await;
        match &result {
            Ok(r) if r.skipped => self.metrics.pass("skipped"),
            Ok(_) => {
                self.metrics.pass("done");
                self.metrics
                    .scheduler_pass_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(_) => self.metrics.pass("failed"),
        }
        let registry_failed = matches!(result, Err(PassError::Registry(_)));
        let recovering = self.registry_failed.swap(registry_failed, Ordering::SeqCst);
        result.map(|mut report| {
            report.recovering = recovering && !report.skipped;
            report
        })
    }

    async fn pass_inner(&self, now: u64) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        // This instance's own kept activity goes first, lease or not: the
        // pass of whichever instance holds it must see it.
        self.waker.flush_activity().await?;
        if !self
            .coordinator
            .acquire(LEASE, &self.instance, LEASE_TTL)
            .await?
        {
            report.skipped = true;
            return Ok(report);
        }
        let may_pause = !self.registry_failed.load(Ordering::SeqCst);
        let result = self.pass_holding_lease(now, may_pause, &mut report).await;
        if let Err(e) = self.coordinator.release(LEASE, &self.instance).await {
            warn!(error = %e, "scheduler lease not released (it will expire)");
        }
        result.map(|()| report)
    }

    async fn pass_holding_lease(
        &self,
        now: u64,
        may_pause: bool,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        let regions = self.client.regions().await?;
        // app -> (region, running)
        let mut seen: HashMap<String, (String, bool)> = HashMap::new();
        for region in &regions {
            self.pacer.ready().await;
            let apps = self.client.list_apps(&region.name).await?;
            for app in apps {
                let running = !matches!(app.status, AppStatus::Stopped | AppStatus::New);
                seen.insert(app.name, (region.name.clone(), running));
            }
        }

        // One pipelined read of the whole registry, not a round trip per
        // app listed by Scalingo.
        let known: HashMap<String, crate::registry::AppRecord> = self
            .registry
            .list()
            .await?
            .into_iter()
            .map(|r| (r.app.clone(), r))
            .collect();
        for (app, (region, running)) in &seen {
            if self.ignored.contains(app) {
                continue;
            }
            let record = known.get(app);
            match (record, running) {
                (None, true) => {
                    let meta = AppMeta {
                        region: region.clone(),
                        max_idle_minutes: self.max_idle_minutes(app),
                        linked_apps: self
                            .rules
                            .resolve(app)
                            .map(|r| r.linked_apps)
                            .unwrap_or_default(),
                    };
                    self.registry.register(app, meta, now).await?;
                    self.event(app, EventKind::Discovered).await;
                    report.discovered.push(app.clone());
                }
                (Some(record), false) if record.formation.is_empty() => {
                    // Stopped by someone else: nothing of ours to restore.
                    self.registry.forget(app).await?;
                    self.event(app, EventKind::Forgotten).await;
                    report.forgotten.push(app.clone());
                }
                _ => {}
            }
        }

        if !may_pause {
            return Ok(());
        }
        let candidates = self.registry.accessed_before(now, usize::MAX).await?;
        for record in candidates {
            let Some((region, true)) = seen.get(&record.app) else {
                continue;
            };
            if self.ignored.contains(&record.app) {
                continue;
            }
            let max_idle = self.max_idle_minutes(&record.app);
            if max_idle == 0 || now.saturating_sub(record.last_access_ms) < max_idle * 60_000 {
                continue;
            }
            // A long (paced) pass may have been taken over after its lease
            // ran out: the new holder does the rest.
            if !self
                .coordinator
                .acquire(LEASE, &self.instance, LEASE_TTL)
                .await?
            {
                report.lost_lease = true;
                return Ok(());
            }
            // Activity may have arrived since the range query.
            if let Some(fresh) = self.registry.get(&record.app).await? {
                if now.saturating_sub(fresh.last_access_ms) < max_idle * 60_000 {
                    continue;
                }
            }
            match self.pause(&record.app, region).await {
                Ok(formation) => {
                    self.metrics.pause("paused");
                    info!(app = %record.app, %region, ?formation, "paused");
                    self.event(&record.app, EventKind::Paused { formation })
                        .await;
                    report.paused.push(record.app.clone());
                }
                Err(PassError::Registry(e)) => return Err(e.into()),
                Err(PassError::Scalingo(e)) => {
                    self.metrics.pause("failed");
                    warn!(app = %record.app, error = %e, "could not pause");
                    report.failed.push((record.app.clone(), e.to_string()));
                    if matches!(e, ScalingoError::RateLimited) {
                        // The rest of the pass waits for the next one.
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every app Scalingo lists in the managed regions: name -> (region,
    /// status). One call per region.
    pub async fn provider_apps(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (String, String)>, ScalingoError> {
        let mut apps = std::collections::BTreeMap::new();
        for region in self.client.regions().await? {
            for app in self.client.list_apps(&region.name).await? {
                apps.insert(app.name, (region.name.clone(), app.status.to_string()));
            }
        }
        Ok(apps)
    }

    /// Pauses `app` now, whatever its idle time (the admin API's "pause"):
    /// remembers its formation, scales every type to 0, records the event.
    /// Returns its region and the formation that the next wake restores.
    pub async fn pause_now(&self, app: &str) -> Result<(String, Vec<(String, u32)>), PauseError> {
        if self.ignored.contains(app) {
            return Err(PauseError::Ignored(app.to_owned()));
        }
        let region = self
            .client
            .locate(app)
            .await
            .map_err(PassError::from)?
            .ok_or_else(|| PauseError::UnknownApp(app.to_owned()))?;
        match self.pause(app, &region).await {
            Ok(formation) => {
                self.metrics.pause("paused");
                info!(%app, %region, ?formation, "paused on request");
                self.event(
                    app,
                    EventKind::Paused {
                        formation: formation.clone(),
                    },
                )
                .await;
                Ok((region, formation))
            }
            Err(e) => {
                self.metrics.pause("failed");
                Err(e.into())
            }
        }
    }

    /// Remembers the formation, then scales every type to 0.
    async fn pause(&self, app: &str, region: &str) -> Result<Vec<(String, u32)>, PassError> {
        self.pacer.ready().await;
        let formation = self.client.formation(region, app).await?;
        let running: Vec<(String, u32)> = formation
            .iter()
            .filter(|c| c.amount > 0)
            .map(|c| (c.name.clone(), c.amount))
            .collect();
        if running.is_empty() {
            return Ok(running);
        }
        // Written first: a crash between the two steps leaves a record from
        // which the next wake restores the app, never an app without one.
        self.registry
            .remember_formation(app, running.clone())
            .await?;
        let changes: Vec<ContainerAmount> = running
            .iter()
            .map(|(name, _)| ContainerAmount {
                name: name.clone(),
                amount: 0,
            })
            .collect();
        self.waker.forget_awake(app);
        if let Some(hooks) = &self.hooks {
            hooks.run(Hook::BeforeStop, app).await;
        }
        self.pacer.ready().await;
        match self.client.scale(region, app, &changes).await? {
            ScaleOutcome::Started { .. } | ScaleOutcome::Done { .. } | ScaleOutcome::NoChange => {
                if let Some(hooks) = &self.hooks {
                    hooks.spawn(Hook::AfterStop, app);
                }
                Ok(running)
            }
        }
    }

    /// Runs a pass every `interval` until `shutdown` completes.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {
                    match self.pass(now_ms()).await {
                        Ok(r) if r.skipped => {}
                        Ok(r) => info!(paused = r.paused.len(), discovered = r.discovered.len(), forgotten = r.forgotten.len(), failed = r.failed.len(), recovering = r.recovering, lost_lease = r.lost_lease, "scheduler pass"),
                        Err(e) => warn!(error = %e, "scheduler pass failed; nothing paused"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_calls_and_never_bursts() {
        let pacer = Pacer::per_minute(60);
        let start = Instant::now();
        let mut slots = Vec::new();
        for _ in 0..5 {
            pacer.ready().await;
            slots.push(start.elapsed());
        }
        // First call at once, then one a second: 5 calls span 4 s, so no
        // minute ever sees more than 60.
        assert_eq!(
            slots,
            (0..5).map(Duration::from_secs).collect::<Vec<_>>(),
            "{slots:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_does_not_save_up_idle_time_for_a_burst() {
        let pacer = Pacer::per_minute(60);
        pacer.ready().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let start = Instant::now();
        pacer.ready().await;
        pacer.ready().await;
        pacer.ready().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_queue_for_their_slots() {
        let pacer = Arc::new(Pacer::per_minute(120));
        let start = Instant::now();
        let calls = (0..4).map(|_| {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move {
                pacer.ready().await;
                start.elapsed()
            })
        });
        let mut slots: Vec<Duration> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .collect();
        slots.sort();
        assert_eq!(
            slots,
            (0..4)
                .map(|i| Duration::from_millis(500 * i))
                .collect::<Vec<_>>()
        );
    }
}

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
//! Max idle time: minutes, from the rules (`app_max_idle_time`) or
//! `START_AND_STOP_MAX_IDLE_TIME` (default 15). `0` means "never pause
//! automatically": an app matched by such a rule is kept running, which is the
//! safe reading of a value that would otherwise stop an app under its users.
//! Ignored apps are never touched.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use paastis_rules::AppRules;
use tracing::{info, warn};

use crate::registry::{AppMeta, Coordinator, Event, EventKind, EventLog, Registry};
use crate::scalingo::{AppStatus, ContainerAmount, ScaleOutcome, ScalingoClient, ScalingoError};
use crate::wake::{now_ms, Waker};

/// How long a pass may hold the lease before another instance may take over.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
const LEASE: &str = "scheduler";

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Another instance held the lease: nothing was done.
    pub skipped: bool,
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
        }
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
    pub async fn pass(&self, now: u64) -> Result<PassReport, String> {
        let mut report = PassReport::default();
        match self
            .coordinator
            .acquire(LEASE, &self.instance, LEASE_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                report.skipped = true;
                return Ok(report);
            }
            Err(e) => return Err(e.to_string()),
        }
        let result = self.pass_holding_lease(now, &mut report).await;
        if let Err(e) = self.coordinator.release(LEASE, &self.instance).await {
            warn!(error = %e, "scheduler lease not released (it will expire)");
        }
        result.map(|()| report)
    }

    async fn pass_holding_lease(&self, now: u64, report: &mut PassReport) -> Result<(), String> {
        let regions = self.client.regions().await.map_err(|e| e.to_string())?;
        // app -> (region, running)
        let mut seen: HashMap<String, (String, bool)> = HashMap::new();
        for region in &regions {
            let apps = self
                .client
                .list_apps(&region.name)
                .await
                .map_err(|e| e.to_string())?;
            for app in apps {
                let running = !matches!(app.status, AppStatus::Stopped | AppStatus::New);
                seen.insert(app.name, (region.name.clone(), running));
            }
        }

        for (app, (region, running)) in &seen {
            if self.ignored.contains(app) {
                continue;
            }
            let record = self.registry.get(app).await.map_err(|e| e.to_string())?;
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
                    self.registry
                        .register(app, meta, now)
                        .await
                        .map_err(|e| e.to_string())?;
                    self.event(app, EventKind::Discovered).await;
                    report.discovered.push(app.clone());
                }
                (Some(record), false) if record.formation.is_empty() => {
                    // Stopped by someone else: nothing of ours to restore.
                    self.registry.forget(app).await.map_err(|e| e.to_string())?;
                    self.event(app, EventKind::Forgotten).await;
                    report.forgotten.push(app.clone());
                }
                _ => {}
            }
        }

        let candidates = self
            .registry
            .accessed_before(now, usize::MAX)
            .await
            .map_err(|e| e.to_string())?;
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
            // Activity may have arrived since the range query.
            match self.registry.get(&record.app).await {
                Ok(Some(fresh)) if now.saturating_sub(fresh.last_access_ms) < max_idle * 60_000 => {
                    continue
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            match self.pause(&record.app, region).await {
                Ok(formation) => {
                    info!(app = %record.app, %region, ?formation, "paused");
                    self.event(&record.app, EventKind::Paused { formation })
                        .await;
                    report.paused.push(record.app.clone());
                }
                Err(e) => {
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

    /// Remembers the formation, then scales every type to 0.
    async fn pause(&self, app: &str, region: &str) -> Result<Vec<(String, u32)>, ScalingoError> {
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
            .await
            .map_err(|e| ScalingoError::Transport(e.to_string()))?;
        let changes: Vec<ContainerAmount> = running
            .iter()
            .map(|(name, _)| ContainerAmount {
                name: name.clone(),
                amount: 0,
            })
            .collect();
        self.waker.forget_awake(app);
        match self.client.scale(region, app, &changes).await? {
            ScaleOutcome::Started { .. } | ScaleOutcome::Done { .. } | ScaleOutcome::NoChange => {
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
                        Ok(r) => info!(paused = r.paused.len(), discovered = r.discovered.len(), forgotten = r.forgotten.len(), failed = r.failed.len(), "scheduler pass"),
                        Err(e) => warn!(error = %e, "scheduler pass failed; nothing paused"),
                    }
                }
            }
        }
    }
}

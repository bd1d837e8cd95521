//! The idle scheduler: every interval, one pass puts to sleep the apps idle
//! longer than their max idle time.
//!
//! One pass:
//! 1. takes the `scheduler` lease, so that one gateway instance works at a
//!    time (a crashed holder's lease expires after [`LEASE_TTL`]);
//! 2. lists the apps of each region once (one call per region, whatever the
//!    number of apps);
//! 3. clears the wake back-off of the apps listed `running`
//!    ([`crate::backoff`]), registers running apps it does not know (discovery: their idle clock
//!    starts now) and forgets stopped apps that it has no formation to
//!    restore for;
//! 4. pauses every running app whose last access is older than its max idle
//!    time: it remembers the formation and the enabled autoscalers (the
//!    manual scale turns them off; the wake turns them back on), then scales
//!    every type to 0.
//!
//! Wakes and pauses exclude each other, across instances: a pause (and a
//! forget) holds the app's wake lease ([`crate::wake::lease`]) from before
//! its first Scalingo call to its scale to 0, and re-reads the last access
//! once it got its turn to call Scalingo, right before the scale; a wake
//! marks its apps used when it starts, before it takes their leases. So a
//! pause either sees a wake's access (and keeps the app), or holds the lease
//! the wake then waits for (and the wake scales the app back up after it).
//! A pause or a forget leaves the stop note ([`crate::awake`]) before it
//! scales to 0: no instance answers the app awake afterwards until a wake
//! ran again. A forget acts only on an app whose last access is older than
//! the pass (so older than the listing it is based on).
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
//! Unmanaged apps (`REGISTRY_IGNORED_APPS`, or not matching
//! `PAASTIS_MANAGED_APPS`) are never discovered nor touched.
//!
//! Dry run (`PAASTIS_DRY_RUN=true`): a pass discovers and forgets as usual
//! (registry only) but, instead of pausing an idle app, records a
//! `would_pause` event (once per idle period and instance; the pass report
//! lists it every time) and scales nothing. The admin API's explicit pause
//! still pauses: it is an operator's decision, not the scheduler's.
//!
//! The decisions of a pass are pure ([`plan::plan_pass`]); this module
//! carries them out ([`Scheduler::pass`]) and paces the calls ([`pacer`]).

pub mod pacer;
mod pause;
pub mod plan;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::config::{PassSchedule, Unmanaged};
use crate::deps::Deps;
use crate::platform::{AppStatus, ScalingoError};
use crate::registry::{EventKind, RegistryError};
use pacer::Pacer;
use pause::Paused;
use plan::{is_idle, plan_pass, Listed, Listing, SeenAsleep};

/// How long a pass may hold the lease before another instance may take over.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
const LEASE: &str = "scheduler";

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
    #[error("{0:?} is {1}: the gateway never scales it")]
    Ignored(String, Unmanaged),
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
    /// Dry run: the idle apps a pass would have paused.
    pub would_pause: Vec<String>,
    /// Apps that could not be paused, with why.
    pub failed: Vec<(String, String)>,
}

/// Puts idle apps to sleep; one per gateway, shared with the admin API.
pub struct Scheduler {
    deps: Deps,
    pacer: Pacer,
    /// The last pass failed on the registry.
    registry_failed: AtomicBool,
    /// `PAASTIS_DRY_RUN`: passes record `would_pause` and scale nothing.
    dry_run: bool,
    /// Dry run: the last access each app was reported idle at.
    would_pause_seen: Mutex<HashMap<String, Option<u64>>>,
    /// Apps a pause found with nothing running (see [`plan`]'s rules).
    asleep: Mutex<SeenAsleep>,
}

impl Scheduler {
    /// A scheduler over `deps` whose passes make at most
    /// `calls_per_minute` platform calls a minute.
    pub fn new(deps: Deps, calls_per_minute: u32) -> Self {
        Self {
            deps,
            pacer: Pacer::per_minute(calls_per_minute),
            registry_failed: AtomicBool::new(false),
            dry_run: false,
            would_pause_seen: Mutex::new(HashMap::new()),
            asleep: Mutex::new(SeenAsleep::new()),
        }
    }

    /// In dry run, passes record `would_pause` events instead of pausing.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// One pass at `now` (ms since the epoch). Nothing is paused when the
    /// registry cannot be read: without last accesses every app would look
    /// idle.
    pub async fn pass(&self, now: u64) -> Result<PassReport, PassError> {
        let metrics = &self.deps.metrics;
        let started = Instant::now();
        let result = self.pass_inner(now).await;
        match &result {
            Ok(r) if r.skipped => metrics.pass("skipped"),
            Ok(_) => {
                metrics.pass("done");
                metrics
                    .scheduler_pass_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(_) => metrics.pass("failed"),
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
        self.deps.activity.flush().await?;
        if !self.acquire_lease().await? {
            report.skipped = true;
            return Ok(report);
        }
        let may_pause = !self.registry_failed.load(Ordering::SeqCst);
        let result = self.pass_holding_lease(now, may_pause, &mut report).await;
        if let Err(e) = self
            .deps
            .coordinator
            .release(LEASE, &self.deps.instance)
            .await
        {
            warn!(error = %e, "scheduler lease not released (it will expire)");
        }
        result.map(|()| report)
    }

    async fn acquire_lease(&self) -> Result<bool, RegistryError> {
        self.deps
            .coordinator
            .acquire(LEASE, &self.deps.instance, LEASE_TTL)
            .await
    }

    /// Lists the apps of each region once (one paced call per region).
    async fn listing(&self) -> Result<Listing, ScalingoError> {
        let mut listing = Listing::new();
        for region in self.deps.platform.regions().await? {
            self.pacer.ready().await;
            for app in self.deps.platform.list_apps(&region).await? {
                let running = app.is_running();
                if app.status == AppStatus::Running {
                    // Seen serving: a failed wake's back-off is over.
                    self.deps
                        .backoff
                        .clear_if_any(self.deps.coordinator.as_ref(), &app.name)
                        .await;
                }
                listing.insert(
                    app.name,
                    Listed {
                        region: region.clone(),
                        running,
                        status_known: app.status.is_known(),
                    },
                );
            }
        }
        Ok(listing)
    }

    /// Carries out the plan of a pass.
    async fn pass_holding_lease(
        &self,
        now: u64,
        may_pause: bool,
        report: &mut PassReport,
    ) -> Result<(), PassError> {
        let deps = &self.deps;
        let started = tokio::time::Instant::now();
        let listing = self.listing().await?;
        // One pipelined read of the whole registry, not a round trip per
        // app listed by the platform.
        let known = deps.registry.list().await?;
        let asleep = self
            .asleep
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let plan = plan_pass(&listing, &known, &deps.rules, deps.scope(), &asleep, now);

        for (app, meta) in plan.discover {
            // Its idle clock starts when it is registered, not when the pass
            // began: activity reported for it before this point was refused
            // (the registry did not hold it, e.g. Redis restarted empty), so
            // an older start could pause it before its max idle time after
            // its last use.
            let at = now
                .saturating_add(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            // Within the registry's cap (refusals are counted and logged).
            if deps.register(&app, meta, at).await? {
                deps.record(&app, EventKind::Discovered).await;
                report.discovered.push(app);
            }
        }
        for app in plan.forget {
            // Stopped by someone else: nothing of ours to restore. Not if a
            // wake of it runs or ran since the pass began (the listing is
            // older than that wake).
            if self.forget_stopped(&app, now).await? {
                deps.record(&app, EventKind::Forgotten).await;
                report.forgotten.push(app);
            }
        }

        if !may_pause {
            return Ok(());
        }
        for candidate in plan.pause {
            let app = candidate.app;
            // A long (paced) pass may have been taken over after its lease
            // ran out: the new holder does the rest.
            if !self.acquire_lease().await? {
                report.lost_lease = true;
                return Ok(());
            }
            // Activity may have arrived since the registry was read.
            let mut last_access_ms = None;
            if let Some(fresh) = deps.registry.get(&app).await? {
                if !is_idle(fresh.last_access_ms, now, candidate.max_idle_minutes) {
                    continue;
                }
                last_access_ms = Some(fresh.last_access_ms);
            }
            if self.dry_run {
                // One event per idle period, not one a pass: the bounded
                // event log must keep what else happened.
                let first = self.would_pause_seen(&app, last_access_ms);
                if first {
                    info!(%app, region = %candidate.region, "would pause (dry run)");
                    deps.record(
                        &app,
                        EventKind::WouldPause {
                            max_idle_minutes: candidate.max_idle_minutes,
                        },
                    )
                    .await;
                }
                report.would_pause.push(app);
                continue;
            }
            match self
                .pause(
                    &app,
                    &candidate.region,
                    Some((now, candidate.max_idle_minutes)),
                )
                .await
            {
                Ok(Paused::Kept) => {
                    debug!(%app, "used or being woken: kept running");
                }
                // Nothing ran: the listing said running only because its
                // entry lacked a status (Scalingo may leave it out), e.g.
                // an app this gateway paused already. Not a pause.
                Ok(Paused::NothingRunning) => {
                    // Not read again until its next access.
                    debug!(%app, "nothing to pause: no container runs");
                    if let Some(at) = last_access_ms {
                        self.asleep
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(app, at);
                    }
                }
                Ok(Paused::Stopped(formation)) => {
                    deps.metrics.pause("paused");
                    info!(%app, region = %candidate.region, ?formation, "paused");
                    deps.record(&app, EventKind::Paused { formation }).await;
                    report.paused.push(app);
                }
                Err(PassError::Registry(e)) => return Err(e.into()),
                Err(PassError::Scalingo(e)) => {
                    deps.metrics.pause("failed");
                    warn!(%app, error = %e, "could not pause");
                    let rate_limited = matches!(
                        e,
                        ScalingoError::RateLimited | ScalingoError::BudgetExhausted
                    );
                    report.failed.push((app, e.to_string()));
                    if rate_limited {
                        // The rest of the pass waits for the next one.
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Dry run: whether `app`, idle since `last_access_ms`, is reported for
    /// the first time in this idle period (per instance).
    fn would_pause_seen(&self, app: &str, last_access_ms: Option<u64>) -> bool {
        let mut seen = self
            .would_pause_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.insert(app.to_owned(), last_access_ms) != Some(last_access_ms)
    }

    /// Every app the platform lists in the managed regions: name -> (region,
    /// status). One call per region.
    pub async fn provider_apps(&self) -> Result<BTreeMap<String, (String, String)>, ScalingoError> {
        let platform = &self.deps.platform;
        let mut apps = BTreeMap::new();
        for region in platform.regions().await? {
            for app in platform.list_apps(&region).await? {
                apps.insert(app.name, (region.clone(), app.status.to_string()));
            }
        }
        Ok(apps)
    }

    /// Pauses `app` now, whatever its idle time (the admin API's "pause"):
    /// remembers its formation, scales every type to 0, records the event.
    /// Returns its region and the formation that the next wake restores.
    pub async fn pause_now(&self, app: &str) -> Result<(String, Vec<(String, u32)>), PauseError> {
        let deps = &self.deps;
        if let Some(why) = deps.scope().unmanaged(app) {
            return Err(PauseError::Ignored(app.to_owned(), why));
        }
        let region = deps
            .platform
            .locate(app)
            .await
            .map_err(PassError::from)?
            .ok_or_else(|| PauseError::UnknownApp(app.to_owned()))?;
        let paused = loop {
            match self.pause(app, &region, None).await {
                // A wake runs: the operator's pause comes after it.
                Ok(Paused::Kept) => {
                    tokio::time::sleep(crate::wake::lease::NOTE_POLL).await;
                }
                Ok(Paused::NothingRunning) => break Ok(Vec::new()),
                Ok(Paused::Stopped(formation)) => break Ok(formation),
                Err(e) => break Err(e),
            }
        };
        match paused {
            Ok(formation) => {
                deps.metrics.pause("paused");
                info!(%app, %region, ?formation, "paused on request");
                deps.record(
                    app,
                    EventKind::Paused {
                        formation: formation.clone(),
                    },
                )
                .await;
                Ok((region, formation))
            }
            Err(e) => {
                deps.metrics.pause("failed");
                Err(e.into())
            }
        }
    }

    /// Runs a pass at each tick of `schedule` (a period, or a cron
    /// expression) until `stop` is cancelled (a pass under way is dropped
    /// then; its lease expires).
    pub async fn run(self: Arc<Self>, schedule: impl Into<PassSchedule>, stop: CancellationToken) {
        let mut ticker = schedule.into().ticks();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                result = self.pass(now_ms()) => result,
            };
            match result {
                Ok(r) if r.skipped => {}
                Ok(r) => info!(
                    paused = r.paused.len(),
                    would_pause = r.would_pause.len(),
                    discovered = r.discovered.len(),
                    forgotten = r.forgotten.len(),
                    failed = r.failed.len(),
                    recovering = r.recovering,
                    lost_lease = r.lost_lease,
                    "scheduler pass"
                ),
                Err(e) => warn!(error = %e, "scheduler pass failed; nothing paused"),
            }
        }
    }
}

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod scope_tests;
#[cfg(test)]
mod tests;

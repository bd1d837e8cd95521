//! Waking apps: resolve the rules, find the region, scale `web` back up (or
//! restore the remembered formation), wait until a web container runs.
//!
//! - this module: the [`Waker`], its single flight per app and the wake of
//!   an app with its linked apps;
//! - [`lease`], one wake per app across gateway instances (lease and note);
//! - [`scale`], the scale calls and the pure restore plan;
//! - [`ready`], the wait until the app serves (its front, and the API only
//!   every few seconds);
//! - [`types`], the answer, errors and states.
//!
//! Invariants:
//! - At most one wake per app runs at a time in this process: every caller
//!   asking for an app that is being woken joins the running wake (single
//!   flight), so N concurrent requests make one scale call.
//! - A wake runs in its own task with its own deadline: a caller that gives
//!   up (its request timed out or was cancelled) does not cancel it, and later
//!   callers still get its result. Those tasks are tracked, so that shutdown
//!   waits for them ([`Waker::drained`]).
//! - An app and its linked apps are woken concurrently.
//! - A failed wake starts a back-off for the app, shared by the instances
//!   ([`crate::backoff`]): until it ends a wake of the app fails at once
//!   ([`WakeError::BackingOff`]) without any Scalingo call.
//! - A wake marks its apps (the one named and its linked apps) as used when
//!   it *starts*, before it takes any app's wake lease: a pause holds that
//!   lease and re-reads the last access right before it scales to 0, so it
//!   either sees this access (and keeps the app) or holds the lease, which
//!   this wake then waits for. No app is paused less than its max idle time
//!   after a wake of it began.
//! - An app is answered awake without a wake only when this instance saw it
//!   running and no instance stopped it since ([`crate::awake`]).
//! - Redis on the request path is bounded: each registry or coordinator
//!   call of a wake lasts at most [`REQUEST_PATH_TIMEOUT`], independent
//!   ones run together, and the bookkeeping of a successful wake (the
//!   registration, the note for other instances, the event) runs after the
//!   answer, in a tracked task.

pub mod lease;
pub mod ready;
pub mod scale;
pub mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use paastis_rules::{is_valid_app_name, AppRules, ResolvedApp};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{warn, Instrument};

use crate::awake::clear_stopped;
use crate::deps::Deps;
use crate::hooks::Hook;
use crate::metrics::Metrics;
use crate::registry::bounded::{Bounded, REQUEST_PATH_TIMEOUT};
use crate::registry::{
    AppMeta, Coordinator, EventKind, EventLog, Registry, RegistryError, WakeSample,
};
use lease::{Role, WakeLease};

pub use crate::activity::{MAX_ACTIVITY_BATCH, MAX_PENDING_APPS};
pub use crate::awake::Awake;
pub use crate::clock::now_ms;
pub use lease::WAKE_LEASE_TTL;
pub use types::{LinkedResult, WakeAnswer, WakeError, WakeState};

type SharedWake = Shared<BoxFuture<'static, Result<Awake, WakeError>>>;

/// Wakes apps; shared by every request of the sidecar.
pub struct Waker {
    deps: Deps,
    /// Bound on one wake request.
    wake_timeout: Duration,
    inflight: Mutex<HashMap<String, SharedWake>>,
    /// The wake tasks, so that shutdown can wait for them.
    tasks: TaskTracker,
    /// The registry and coordinator as the request path uses them (each
    /// call bounded by [`REQUEST_PATH_TIMEOUT`]).
    fast: Arc<Bounded>,
}

impl Waker {
    /// A waker over `deps`; each wake request waits at most `wake_timeout`.
    pub fn new(deps: Deps, wake_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            fast: Arc::new(Bounded::new(
                deps.registry.clone(),
                deps.coordinator.clone(),
                REQUEST_PATH_TIMEOUT,
            )),
            deps,
            wake_timeout,
            inflight: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    fn inflight(&self) -> MutexGuard<'_, HashMap<String, SharedWake>> {
        // Every critical section is a single map operation: a panic cannot
        // leave the map inconsistent, so a poisoned lock is still usable.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The parts this waker works with.
    pub fn deps(&self) -> &Deps {
        &self.deps
    }

    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.deps.registry
    }

    pub fn events(&self) -> &Arc<dyn EventLog> {
        &self.deps.events
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.deps.metrics
    }

    /// The rules this waker resolves apps with.
    pub fn rules(&self) -> &AppRules {
        &self.deps.rules
    }

    /// Whether `app` is routed but never scaled (`REGISTRY_IGNORED_APPS`).
    pub fn is_ignored(&self, app: &str) -> bool {
        self.deps.is_ignored(app)
    }

    /// Wakes running now in this process.
    pub fn wakes_in_flight(&self) -> usize {
        self.inflight().len()
    }

    /// Waits until no wake task runs in this process (used at shutdown,
    /// under the caller's deadline: an app mid-boot is followed to its end
    /// rather than abandoned with its waiters).
    pub async fn drained(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Waits until the wake tasks and the bookkeeping that follows the
    /// answers have run (for tests and tools: the waker keeps working).
    pub async fn settled(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    /// Records a batch of activity (see [`crate::activity`]); returns the
    /// apps of the batch known to run.
    pub async fn activity(&self, apps: &[String]) -> Vec<Awake> {
        self.deps
            .activity
            .record_batch(&self.deps.rules, &self.deps.awake, self.fast.as_ref(), apps)
            .await
    }

    /// How many apps have activity not written to the registry yet.
    pub fn pending_activity(&self) -> usize {
        self.deps.activity.pending()
    }

    /// Writes the activity kept in memory; see [`crate::activity`].
    pub async fn flush_activity(&self) -> Result<usize, RegistryError> {
        self.deps.activity.flush().await
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
        let set = self.deps.rules.wake_set(requested)?;
        let names: Vec<String> = set.iter().map(|a| a.name.clone()).collect();
        // Together, each bounded: whether any instance stopped what this
        // one saw running, and the mark that the apps are used from now on
        // (see the module's invariants; only apps already registered move).
        let at_start = now_ms();
        let (verified, touched) = futures::future::join(
            self.deps
                .awake
                .verified(self.deps.coordinator.as_ref(), &names),
            self.fast.touch_known(&names, at_start),
        )
        .await;
        if let Err(e) = touched {
            warn!(error = %e, "wake not marked in the registry; kept in memory");
            self.deps.activity.keep(&names, at_start);
        }
        // A request that finds every app known running is not a cold start.
        let cold = set
            .iter()
            .any(|a| !verified.iter().any(|v| v.app == a.name));
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

        if cold {
            self.register_after_answer(&set, &main, &linked_apps);
        }

        if cold {
            self.deps
                .metrics
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

    /// Registers the apps of a cold wake that run (an app the gateway
    /// resolved), in a tracked task: bookkeeping never delays the answer.
    fn register_after_answer(
        self: &Arc<Self>,
        set: &[ResolvedApp],
        main: &Awake,
        linked: &[LinkedResult],
    ) {
        let running = std::iter::once(true).chain(linked.iter().map(|l| l.running));
        let mut woken = Vec::new();
        for (app, running) in set.iter().zip(running) {
            if !running {
                continue;
            }
            let region = if app.name == main.app {
                main.region.clone()
            } else {
                match self.deps.awake.entry(&app.name) {
                    Some(a) => a.region,
                    None => continue,
                }
            };
            let meta = AppMeta {
                region,
                max_idle_minutes: app.max_idle_minutes,
                linked_apps: app.linked_apps.clone(),
            };
            woken.push((app.name.clone(), meta));
        }
        let deps = self.deps.clone();
        self.tasks.spawn(async move {
            let at = now_ms();
            for (app, meta) in woken {
                if let Err(e) = deps.register(&app, meta, at).await {
                    warn!(%app, error = %e, "could not record the wake in the registry; kept in memory");
                    // Its access at least is kept; region and idle time are
                    // learnt again from the platform and the rules.
                    deps.activity.keep(std::slice::from_ref(&app), at);
                }
            }
        });
    }

    /// Wakes `requested` on an operator's request: any back-off of the apps
    /// it wakes is cleared first.
    pub async fn wake_now(
        self: &Arc<Self>,
        requested: &str,
        region_hint: Option<&str>,
    ) -> Result<WakeAnswer, WakeError> {
        if is_valid_app_name(requested) {
            if let Ok(set) = self.deps.rules.wake_set(requested) {
                for app in &set {
                    self.deps
                        .backoff
                        .clear(self.deps.coordinator.as_ref(), &app.name)
                        .await;
                }
            }
        }
        self.wake(requested, region_hint).await
    }

    /// The back-off of `app` (a resolved name), if one runs.
    pub async fn backoff(&self, app: &str) -> Option<crate::backoff::Active> {
        self.deps
            .backoff
            .active(self.deps.coordinator.as_ref(), app)
            .await
    }

    /// Forgets that `app` runs (it is being paused): the next request for it
    /// goes through a full wake.
    pub fn forget_awake(&self, app: &str) {
        self.deps.awake.forget(app);
    }

    /// Joins the wake of `app` that is running, or starts one.
    fn wake_shared(self: &Arc<Self>, app: &ResolvedApp, region_hint: Option<&str>) -> SharedWake {
        if let Some(awake) = self.deps.awake.fresh(&app.name) {
            return futures::future::ready(Ok(awake)).boxed().shared();
        }
        let mut inflight = self.inflight();
        if let Some(running) = inflight.get(&app.name) {
            return running.clone();
        }
        let this = Arc::clone(self);
        let name = app.name.clone();
        let region = app
            .region
            .clone()
            .or_else(|| region_hint.map(str::to_owned));
        let health_path = app.health_path.clone();
        let span = tracing::info_span!("wake", app = %name);
        let task_name = name.clone();
        let task = self.tasks.spawn(
            async move {
                let result = this
                    .wake_app(&task_name, region.as_deref(), &health_path)
                    .await;
                match &result {
                    Ok(awake) => {
                        this.deps.metrics.wake("woken");
                        this.deps.awake.insert(&task_name, awake.clone());
                    }
                    Err(e) => {
                        this.deps.metrics.wake(match e {
                            WakeError::Timeout(_) => "timeout",
                            WakeError::BackingOff { .. } => "backing_off",
                            WakeError::UnknownApp(_) | WakeError::InvalidApp(_) => "unknown_app",
                            _ => "failed",
                        });
                        if matches!(e, WakeError::BackingOff { .. }) {
                            // Answered at once with no call, one per
                            // request while clients insist: the failure
                            // that started the back-off was logged (warn),
                            // these are counted in the metric.
                            tracing::debug!(error = %e, "wake refused: backing off");
                        } else {
                            warn!(error = %e, "wake failed");
                        }
                    }
                }
                // Removed only after the awake map is updated, so that a
                // caller arriving now finds one or the other.
                this.inflight().remove(&task_name);
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
    async fn wake_app(
        &self,
        app: &str,
        region: Option<&str>,
        health_path: &str,
    ) -> Result<Awake, WakeError> {
        let deps = &self.deps;
        let fast_registry: &dyn Registry = self.fast.as_ref();
        let fast_coordinator: &dyn Coordinator = self.fast.as_ref();
        let started = Instant::now();
        let deadline = started + self.wake_timeout;
        // Read together: the back-off (a broken app costs nothing while it
        // runs) and the region the registry knows for every app the gateway
        // woke, paused or discovered, or the platform's cache for every app
        // a listing found (no locate calls then).
        let (backoff, known) =
            futures::future::join(deps.backoff.active(fast_coordinator, app), async {
                match region {
                    Some(r) => Some(r.to_owned()),
                    None => match fast_registry.get(app).await {
                        Ok(Some(record)) => record.region,
                        _ => None,
                    }
                    .or_else(|| deps.platform.listed_region(app)),
                }
            })
            .await;
        if let Some(active) = backoff {
            return Err(WakeError::BackingOff {
                app: app.to_owned(),
                reason: active.reason,
                retry_after: active.remaining,
            });
        }
        let region = match known {
            Some(r) => r,
            None => deps
                .platform
                .locate(app)
                .await
                .map_err(|e| WakeError::provider(app, e))?
                .ok_or_else(|| WakeError::UnknownApp(app.to_owned()))?,
        };
        if deps.is_ignored(app) {
            // Ignored apps are routed but never scaled.
            return Ok(Awake::new(app, &region));
        }

        // Across instances: one leads the wake (the lease), the others wait
        // for the note it leaves.
        let lease = WakeLease::new(fast_coordinator, &deps.instance, app);
        let leader = match lease.lead_or_follow(deadline).await? {
            Role::Followed(result) => return result,
            Role::Leader => true,
            Role::Alone => false,
        };

        deps.hooks.run(Hook::BeforeStart, app).await;
        let target = ready::Target {
            region: &region,
            app,
            health_path,
        };
        let scaling = scale::scale_up(deps.platform.as_ref(), fast_registry, target, deadline);
        let scaled = if leader {
            lease.renewing(scaling).await
        } else {
            scaling.await
        };
        // Only a wake that scaled the app up tells how long a wake takes.
        let mut scaled_up = false;
        let result = match scaled {
            Ok(up) => {
                if !up.autoscalers.is_empty() {
                    let autoscalers = scale::restore_autoscalers(
                        deps.platform.as_ref(),
                        fast_registry,
                        &region,
                        app,
                        &up.autoscalers,
                    )
                    .await;
                    if !autoscalers.is_empty() {
                        deps.record(app, EventKind::AutoscalersRestored { autoscalers })
                            .await;
                    }
                }
                scaled_up = up.scaled;
                Ok(up.awake)
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => deps.hooks.spawn(Hook::AfterStart, app),
            // Written before the answer (and the note): a request arriving
            // right after the failure, here or elsewhere, sees the back-off.
            Err(e) if e.backs_off() => {
                let backoff = deps
                    .backoff
                    .failed(fast_coordinator, app, &e.reason())
                    .await;
                warn!(error = %e, backoff_s = backoff.as_secs(), "wake failed, backing off");
            }
            Err(_) => {}
        }
        let elapsed = started.elapsed();
        self.bookkeeping_after_answer(app, result.clone(), elapsed, scaled_up);
        result
    }

    /// What a wake this instance led (or ran alone) leaves once its answer
    /// is out: the back-off cleared and the stop note of the app gone on
    /// success, the outcome for the instances that waited, the event, and
    /// the wake's duration when it scaled the app up (`scaled_up`).
    fn bookkeeping_after_answer(
        &self,
        app: &str,
        result: Result<Awake, WakeError>,
        elapsed: Duration,
        scaled_up: bool,
    ) {
        let deps = self.deps.clone();
        let app = app.to_owned();
        self.tasks.spawn(async move {
            let coordinator = deps.coordinator.as_ref();
            if result.is_ok() {
                deps.backoff.clear_if_any(coordinator, &app).await;
                if let Err(e) = clear_stopped(coordinator, &app).await {
                    warn!(%app, error = %e, "stop note not cleared (other instances wake it once more)");
                }
            }
            // Also when this instance woke the app alone: a lease it took
            // without hearing the answer is released, its note left.
            WakeLease::new(coordinator, &deps.instance, &app)
                .finish(&result)
                .await;
            let duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            if result.is_ok() && scaled_up {
                let sample = WakeSample {
                    at_ms: now_ms(),
                    duration_ms,
                };
                if let Err(e) = deps.wakes.record_wake(&app, sample).await {
                    warn!(%app, error = %e, "wake duration not recorded");
                }
            }
            let kind = match &result {
                Ok(_) => EventKind::Woken { duration_ms },
                Err(e) => EventKind::WakeFailed {
                    error: e.to_string(),
                },
            };
            deps.record(&app, kind).await;
        });
    }

    /// What this instance knows of `app` (a resolved name) right now, without
    /// asking the platform: seen running within the awake TTL, being woken,
    /// or neither. Read by the waiting page's status.
    pub fn wake_state(&self, app: &str) -> WakeState {
        if let Some(awake) = self.deps.awake.fresh(app) {
            return WakeState::Running(awake);
        }
        if self.inflight().contains_key(app) {
            WakeState::Waking
        } else {
            WakeState::Idle
        }
    }

    /// Like [`Waker::wake_state`], and when this instance knows nothing, what
    /// the other instances sharing the registry do: an app whose wake lease
    /// is held is waking; one with a fresh success note runs. Registry
    /// errors read as "nothing known". This instance's own sighting counts
    /// only if no instance stopped the app since ([`crate::awake`]).
    pub async fn wake_state_shared(&self, app: &str) -> WakeState {
        if self.deps.awake.fresh(app).is_some() {
            let names = [app.to_owned()];
            let verified = self.deps.awake.verified(self.fast.as_ref(), &names).await;
            if let Some(awake) = verified.into_iter().next() {
                return WakeState::Running(awake);
            }
        }
        let local = self.wake_state(app);
        if local != WakeState::Idle {
            return local;
        }
        lease::shared_state(self.fast.as_ref(), app).await
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_broken;

//! Pauses and forgets, each under the app's wake lease (see the
//! scheduler's module documentation): what excludes them from wakes on any
//! instance, and the stop note that reaches every instance's memory.

use tracing::warn;

use super::plan::{is_idle, max_idle_minutes, pause_changes};
use super::{PassError, Scheduler};
use crate::awake::clear_stopped;
use crate::hooks::Hook;
use crate::leases::{wait_released, Drain};
use crate::platform::{ScaleOutcome, ScalingoError};
use crate::registry::{AppMeta, EventKind};
use crate::wake::lease::{pause_holder, WakeLease};

/// What a pause did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Paused {
    /// Scaled to 0; the formation the next wake restores.
    Stopped(Vec<(String, u32)>),
    /// Nothing ran.
    NothingRunning,
    /// A wake of the app runs, or it was used since it was found idle:
    /// kept running.
    Kept,
}

impl Scheduler {
    /// With `idle` (`(now, max idle minutes)`, a pass's pause), whether the
    /// app's last access is still idle; always true without (an operator's
    /// pause).
    /// [`Self::still_idle`] for the drain's checks (a registry error ends
    /// the drain as an error).
    async fn still_idle_now(
        &self,
        app: &str,
        idle: Option<(u64, u64)>,
    ) -> Result<bool, crate::registry::RegistryError> {
        match self.still_idle(app, idle).await {
            Ok(idle) => Ok(idle),
            Err(PassError::Registry(e)) => Err(e),
            Err(e) => Err(crate::registry::RegistryError(e.to_string())),
        }
    }

    async fn still_idle(&self, app: &str, idle: Option<(u64, u64)>) -> Result<bool, PassError> {
        let Some((now, max_idle)) = idle else {
            return Ok(true);
        };
        Ok(match self.deps.registry.get(app).await? {
            Some(fresh) => is_idle(fresh.last_access_ms, now, max_idle),
            None => false,
        })
    }

    /// Forgets `app`, listed stopped, unless it was used at or after `now`
    /// (the start of the pass, before its listing) or a wake of it runs:
    /// under its wake lease, with the stop note left for every instance.
    /// True when forgotten.
    pub(super) async fn forget_stopped(&self, app: &str, now: u64) -> Result<bool, PassError> {
        let deps = &self.deps;
        let holder = pause_holder(&deps.instance);
        let lease = WakeLease::new(deps.coordinator.as_ref(), &holder, app);
        if !lease.hold_to_stop().await? {
            return Ok(false);
        }
        let result = async {
            if !deps.registry.forget_if_accessed_before(app, now).await? {
                return Ok(false);
            }
            deps.mark_stopped(app).await?;
            deps.activity.forget(app);
            Ok(true)
        }
        .await;
        lease.release().await;
        result
    }

    /// Pauses `app`: holds its wake lease (a wake running keeps the app:
    /// [`Paused::Kept`]), remembers the formation and the enabled
    /// autoscalers, then, once it is its turn to call Scalingo, re-reads the
    /// last access (with `idle`, `(now, max idle minutes)`: a pass's pause,
    /// an app used since is kept), leaves the stop note and scales every
    /// type to 0.
    pub(super) async fn pause(
        &self,
        app: &str,
        region: &str,
        idle: Option<(u64, u64)>,
    ) -> Result<Paused, PassError> {
        let deps = &self.deps;
        self.pacer.ready().await;
        let holder = pause_holder(&deps.instance);
        let lease = WakeLease::new(deps.coordinator.as_ref(), &holder, app);
        if !lease.hold_to_stop().await? {
            return Ok(Paused::Kept);
        }
        let result = lease
            .renewing(self.pause_holding_lease(app, region, idle))
            .await;
        lease.release().await;
        result
    }

    async fn pause_holding_lease(
        &self,
        app: &str,
        region: &str,
        idle: Option<(u64, u64)>,
    ) -> Result<Paused, PassError> {
        let deps = &self.deps;
        let formation = deps.platform.formation(region, app).await?;
        let (running, changes) = pause_changes(&formation);
        if running.is_empty() {
            // Not running: no instance may answer it awake either.
            deps.mark_stopped(app).await?;
            return Ok(Paused::NothingRunning);
        }
        // The manual scale below turns the app's autoscalers off (Scalingo
        // does): the enabled ones are recorded for the wake to turn back on.
        // Not knowing them must not keep the app running. This read shares
        // the formation read's pacing slot (the gateway's API budget, when
        // the client draws from one, counts it anyway).
        let autoscalers: Vec<String> = match deps.platform.autoscalers(region, app).await {
            Ok(list) => list
                .into_iter()
                .filter(|a| !a.disabled)
                .map(|a| a.id)
                .collect(),
            Err(ScalingoError::RateLimited) => return Err(ScalingoError::RateLimited.into()),
            Err(e) => {
                warn!(%app, error = %e, "autoscalers not read; none will be restored");
                Vec::new()
            }
        };
        // The record keeps what the gateway knows of the app (region, idle
        // time, linked apps) even if it was not registered: a later access
        // finds it whole. Its last access does not move.
        let resolved = deps.rules.resolve(app).ok();
        let meta = AppMeta {
            region: region.to_owned(),
            max_idle_minutes: max_idle_minutes(&deps.rules, app),
            linked_apps: resolved.map(|r| r.linked_apps).unwrap_or_default(),
        };
        deps.registry.register(app, meta, 0).await?;
        // Written first: a crash between the two steps leaves a record from
        // which the next wake restores the app, never an app without one.
        deps.registry
            .remember_formation(app, running.clone())
            .await?;
        deps.registry
            .remember_autoscalers(app, autoscalers.clone())
            .await?;
        if !autoscalers.is_empty() {
            deps.record(app, EventKind::AutoscalersRecorded { autoscalers })
                .await;
        }
        // Used since the pass found it idle: kept (nothing told yet).
        if !self.still_idle(app, idle).await? {
            return Ok(Paused::Kept);
        }
        // Every instance stops answering it awake now, so that every filter
        // stops routing it (their next activity answer says so) before it
        // scales to 0: requests then wake it instead of meeting the router.
        let stopped_at = deps.mark_stopped(app).await?;
        deps.hooks.run(Hook::BeforeStop, app).await;
        // The drain: every filter of every instance gives its lease back
        // (or a silent one's runs out). A request meanwhile wakes the app,
        // and a wake marks it used when it starts: the pause is cancelled.
        let drain = async {
            let drain = wait_released(deps.coordinator.as_ref(), app, stopped_at, || {
                self.still_idle_now(app, idle)
            })
            .await?;
            Ok::<_, PassError>(drain)
        };
        let (_, drain) = futures::future::join(self.pacer.ready(), drain).await;
        let drain = drain?;
        // Its turn to call Scalingo: the last word goes to the activity that
        // arrived meanwhile (a wake marks its apps when it starts).
        if drain == Drain::Used || !self.still_idle(app, idle).await? {
            // Still running: no instance needs to wake it first.
            if let Err(e) = clear_stopped(deps.coordinator.as_ref(), app).await {
                warn!(%app, error = %e, "stop note not cleared (the next request wakes it once more)");
            }
            return Ok(Paused::Kept);
        }
        match deps.platform.scale(region, app, &changes).await? {
            ScaleOutcome::Started { .. } | ScaleOutcome::Done { .. } | ScaleOutcome::NoChange => {
                deps.hooks.spawn(Hook::AfterStop, app);
                Ok(Paused::Stopped(running))
            }
        }
    }
}

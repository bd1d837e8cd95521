//! [`InProcessPlatform`]: a [`Platform`] held in memory, on tokio's clock,
//! for unit tests of the wake and pause logic (with `tokio::time::pause()`
//! a boot of a minute takes no real time).
//!
//! What it models of Scalingo: apps in regions with a formation; a scale
//! that changes something starts an operation, which ends after the app's
//! boot delay when it brings `web` up from 0, after the scale-down delay
//! when it stops every type ([`InProcessPlatform::set_scale_down`]), at
//! once otherwise; a scale while an operation runs is
//! [`ScalingoError::Busy`] (`is scaling`); a scale that changes nothing is
//! [`ScaleOutcome::NoChange`]. A manual scale disables the app's
//! autoscalers, as on Scalingo.
//!
//! Broken apps: a crash loop ([`InProcessPlatform::set_crash_loop`]) keeps
//! the boot's operation `running` for ever, no `web` container ever runs,
//! and the app is `crashed` after a while; an operation error
//! ([`InProcessPlatform::set_operation_error`]) ends the boot's operation in
//! `error`. The app's front answers as the app from the moment its `web`
//! container runs plus [`InProcessPlatform::set_front_delay`], as the router
//! before; [`InProcessPlatform::set_front_unreachable`] makes every probe
//! get no answer.
//!
//! Tests queue failures per call kind and read how many calls of each kind
//! were made ([`Call::is_api`] tells the Scalingo API calls from the front
//! probes).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{AutoscalerState, FrontProbe, ListedApp, OperationState, Platform};
use crate::scalingo::{AppStatus, ContainerAmount, ContainerType, ScaleOutcome, ScalingoError};

/// The kinds of calls, to count them and to queue failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Regions,
    ListApps,
    Locate,
    Formation,
    Scale,
    /// One read of `ps`.
    WebRunning,
    OperationState,
    AppStatus,
    /// A request to the app's front (not a Scalingo API call).
    ProbeFront,
    Autoscalers,
    SetAutoscaler,
}

impl Call {
    /// Every kind of call.
    pub const ALL: [Call; 11] = [
        Call::Regions,
        Call::ListApps,
        Call::Locate,
        Call::Formation,
        Call::Scale,
        Call::WebRunning,
        Call::OperationState,
        Call::AppStatus,
        Call::ProbeFront,
        Call::Autoscalers,
        Call::SetAutoscaler,
    ];

    /// Whether the call reaches Scalingo's API (the waits poll it too).
    pub fn is_api(self) -> bool {
        self != Call::ProbeFront
    }
}

/// A scale operation: its id, when it ends (`None`: never), and how.
#[derive(Debug, Clone)]
struct SimOperation {
    id: String,
    end: Option<Instant>,
    error: Option<String>,
}

impl SimOperation {
    fn running(&self, now: Instant) -> bool {
        self.end.is_none_or(|end| end > now)
    }
}

#[derive(Debug)]
struct SimApp {
    region: String,
    formation: Vec<ContainerType>,
    /// How long bringing `web` up from 0 takes.
    boot: Duration,
    /// When a `web` container runs (past or future); `None`: none will.
    web_up_at: Option<Instant>,
    /// The last operation.
    operation: Option<SimOperation>,
    /// How long a scale to 0 takes (SIGTERM, then the wait for the kill).
    scale_down: Duration,
    /// Boots crash; the app reads `crashed` this long after a boot starts.
    crash_loop: Option<Duration>,
    /// When the app reads `crashed`.
    crashed_at: Option<Instant>,
    /// Boots end with their operation in `error` with this message.
    operation_error: Option<String>,
    /// How long after its `web` container runs the app answers on its front.
    front_delay: Duration,
    autoscalers: Vec<AutoscalerState>,
}

impl SimApp {
    fn status(&self, now: Instant) -> AppStatus {
        if self.formation.is_empty() {
            AppStatus::New
        } else if self.crashed_at.is_some_and(|at| at <= now) {
            AppStatus::Crashed
        } else if self.operation.as_ref().is_some_and(|o| o.running(now)) {
            AppStatus::Scaling
        } else if self.formation.iter().any(|c| c.amount > 0) {
            AppStatus::Running
        } else {
            AppStatus::Stopped
        }
    }
}

#[derive(Debug, Default)]
struct State {
    regions: Vec<String>,
    apps: BTreeMap<String, SimApp>,
    calls: HashMap<Call, usize>,
    failures: HashMap<Call, VecDeque<ScalingoError>>,
    /// How long each kind of call takes before it acts.
    delays: HashMap<Call, Duration>,
    /// Every scale call that reached an app: (app, changes).
    scales: Vec<(String, Vec<ContainerAmount>)>,
    next_operation: u64,
    /// No probe of a front gets an answer.
    front_unreachable: bool,
    /// The path of the last probe of each app's front.
    probed_paths: HashMap<String, String>,
    /// Where listings and locates found apps (as the client's cache).
    listed: HashMap<String, String>,
}

/// An in-memory platform; see the module's documentation.
#[derive(Debug, Default)]
pub struct InProcessPlatform {
    state: Mutex<State>,
}

impl InProcessPlatform {
    /// A platform with these regions and no app.
    pub fn new(regions: &[&str]) -> Self {
        let state = State {
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            ..State::default()
        };
        Self {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the state consistent: a panic in a
        // test does not make it unusable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) `app` in `region` with `formation` (type, amount);
    /// `web` above 0 runs at once. Boot delay: none until [`Self::set_boot`].
    pub fn add_app(&self, region: &str, app: &str, formation: &[(&str, u32)]) {
        let formation: Vec<ContainerType> = formation
            .iter()
            .map(|(name, amount)| ContainerType {
                name: (*name).to_owned(),
                amount: *amount,
                size: None,
            })
            .collect();
        let web_up_at = web_amount(&formation)
            .filter(|n| *n > 0)
            .map(|_| Instant::now());
        self.lock().apps.insert(
            app.to_owned(),
            SimApp {
                region: region.to_owned(),
                formation,
                boot: Duration::ZERO,
                web_up_at,
                operation: None,
                scale_down: Duration::ZERO,
                crash_loop: None,
                crashed_at: None,
                operation_error: None,
                front_delay: Duration::ZERO,
                autoscalers: Vec::new(),
            },
        );
    }

    /// How long bringing `app`'s `web` up from 0 takes.
    pub fn set_boot(&self, app: &str, boot: Duration) {
        if let Some(a) = self.lock().apps.get_mut(app) {
            a.boot = boot;
        }
    }

    fn with_app(&self, app: &str, f: impl FnOnce(&mut SimApp)) {
        if let Some(a) = self.lock().apps.get_mut(app) {
            f(a);
        }
    }

    /// How long a scale of every type to 0 keeps `app` busy (`is scaling`).
    pub fn set_scale_down(&self, app: &str, delay: Duration) {
        self.with_app(app, |a| a.scale_down = delay);
    }

    /// `app`'s boots crash in a loop: the operation stays `running`, no
    /// `web` container runs, the app reads `crashed` `crashed_after` a boot
    /// started.
    pub fn set_crash_loop(&self, app: &str, crashed_after: Duration) {
        self.with_app(app, |a| a.crash_loop = Some(crashed_after));
    }

    /// `app`'s boots end, after its boot delay, with the operation in
    /// `error` (`message`) and no `web` container.
    pub fn set_operation_error(&self, app: &str, message: &str) {
        self.with_app(app, |a| a.operation_error = Some(message.to_owned()));
    }

    /// Mends `app`: a crash loop's endless operation ends now, and its
    /// next boots work.
    pub fn mend(&self, app: &str) {
        let now = Instant::now();
        self.with_app(app, |a| {
            a.crash_loop = None;
            a.crashed_at = None;
            a.operation_error = None;
            if let Some(op) = a.operation.as_mut().filter(|op| op.end.is_none()) {
                op.end = Some(now);
            }
        });
    }

    /// How long after its `web` container runs `app` answers on its front.
    pub fn set_front_delay(&self, app: &str, delay: Duration) {
        self.with_app(app, |a| a.front_delay = delay);
    }

    /// Whether front probes get no answer at all.
    pub fn set_front_unreachable(&self, unreachable: bool) {
        self.lock().front_unreachable = unreachable;
    }

    /// Gives `app` an autoscaler of `container_type`.
    pub fn add_autoscaler(&self, app: &str, id: &str, container_type: &str, disabled: bool) {
        self.with_app(app, |a| {
            a.autoscalers.push(AutoscalerState {
                id: id.to_owned(),
                container_type: container_type.to_owned(),
                disabled,
            })
        });
    }

    /// `app`'s autoscalers now.
    pub fn autoscalers_of(&self, app: &str) -> Vec<AutoscalerState> {
        self.lock()
            .apps
            .get(app)
            .map(|a| a.autoscalers.clone())
            .unwrap_or_default()
    }

    /// The path the last probe of `app`'s front asked for.
    pub fn probed_path(&self, app: &str) -> Option<String> {
        self.lock().probed_paths.get(app).cloned()
    }

    /// How many Scalingo API calls were made (front probes excluded).
    pub fn api_calls(&self) -> usize {
        Call::ALL
            .into_iter()
            .filter(|c| c.is_api())
            .map(|c| self.calls(c))
            .sum()
    }

    /// The next call of kind `call` fails with `error` (queued in order).
    pub fn fail_next(&self, call: Call, error: ScalingoError) {
        self.lock()
            .failures
            .entry(call)
            .or_default()
            .push_back(error);
    }

    /// Calls of kind `call` take `delay` (on tokio's clock) before they act.
    pub fn set_delay(&self, call: Call, delay: Duration) {
        self.lock().delays.insert(call, delay);
    }

    /// How many calls of kind `call` were made.
    pub fn calls(&self, call: Call) -> usize {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    /// The scale calls that reached `app`, in order.
    pub fn scales_of(&self, app: &str) -> Vec<Vec<ContainerAmount>> {
        self.lock()
            .scales
            .iter()
            .filter(|(a, _)| a == app)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// `app`'s formation now, as (type, amount).
    pub fn formation_of(&self, app: &str) -> Vec<(String, u32)> {
        self.lock()
            .apps
            .get(app)
            .map(|a| {
                a.formation
                    .iter()
                    .map(|c| (c.name.clone(), c.amount))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for the call's delay, counts the call and takes its queued
    /// failure, if any.
    async fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>, ScalingoError> {
        let delay = self.lock().delays.get(&call).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        *state.calls.entry(call).or_default() += 1;
        match state.failures.get_mut(&call).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(state),
        }
    }
}

fn web_amount(formation: &[ContainerType]) -> Option<u32> {
    formation.iter().find(|c| c.name == "web").map(|c| c.amount)
}

fn app_in<'a>(
    state: &'a mut State,
    region: &str,
    app: &str,
) -> Result<&'a mut SimApp, ScalingoError> {
    match state.apps.get_mut(app) {
        Some(a) if a.region == region => Ok(a),
        _ => Err(ScalingoError::NotFound),
    }
}

#[async_trait]
impl Platform for InProcessPlatform {
    async fn regions(&self) -> Result<Vec<String>, ScalingoError> {
        Ok(self.enter(Call::Regions).await?.regions.clone())
    }

    async fn list_apps(&self, region: &str) -> Result<Vec<ListedApp>, ScalingoError> {
        let mut state = self.enter(Call::ListApps).await?;
        if !state.regions.iter().any(|r| r == region) {
            return Err(ScalingoError::UnknownRegion(region.to_owned()));
        }
        let now = Instant::now();
        let listed: Vec<ListedApp> = state
            .apps
            .iter()
            .filter(|(_, a)| a.region == region)
            .map(|(name, a)| ListedApp {
                name: name.clone(),
                status: a.status(now),
            })
            .collect();
        state.listed.retain(|_, r| r != region);
        for app in &listed {
            state.listed.insert(app.name.clone(), region.to_owned());
        }
        Ok(listed)
    }

    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        let mut state = self.enter(Call::Locate).await?;
        let region = state.apps.get(app).map(|a| a.region.clone());
        if let Some(region) = &region {
            state.listed.insert(app.to_owned(), region.clone());
        }
        Ok(region)
    }

    fn listed_region(&self, app: &str) -> Option<String> {
        self.lock().listed.get(app).cloned()
    }

    async fn formation(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<ContainerType>, ScalingoError> {
        let mut state = self.enter(Call::Formation).await?;
        Ok(app_in(&mut state, region, app)?.formation.clone())
    }

    async fn scale(
        &self,
        region: &str,
        app: &str,
        changes: &[ContainerAmount],
    ) -> Result<ScaleOutcome, ScalingoError> {
        let mut state = self.enter(Call::Scale).await?;
        if changes.is_empty() {
            return Ok(ScaleOutcome::NoChange);
        }
        state.scales.push((app.to_owned(), changes.to_vec()));
        state.next_operation += 1;
        let operation_id = format!("op-{}", state.next_operation);
        let sim = app_in(&mut state, region, app)?;
        let now = Instant::now();
        if sim.operation.as_ref().is_some_and(|o| o.running(now)) {
            return Err(ScalingoError::Busy("is scaling".to_owned()));
        }
        // As Scalingo: a 404 about the container type, and nothing changes.
        if changes
            .iter()
            .any(|change| !sim.formation.iter().any(|c| c.name == change.name))
        {
            return Err(ScalingoError::ResourceNotFound {
                resource: "container_type".to_owned(),
            });
        }
        let web_before = web_amount(&sim.formation).unwrap_or(0);
        let mut changed = false;
        for change in changes {
            match sim.formation.iter_mut().find(|c| c.name == change.name) {
                Some(c) if c.amount != change.amount => {
                    c.amount = change.amount;
                    changed = true;
                }
                Some(_) | None => {}
            }
        }
        if !changed {
            return Ok(ScaleOutcome::NoChange);
        }
        // A manual scale turns the app's autoscalers off, as on Scalingo.
        for autoscaler in &mut sim.autoscalers {
            autoscaler.disabled = true;
        }
        let web_after = web_amount(&sim.formation).unwrap_or(0);
        let booting = web_before == 0 && web_after > 0;
        let stopping = sim.formation.iter().all(|c| c.amount == 0);
        let mut operation = SimOperation {
            id: operation_id.clone(),
            end: Some(now),
            error: None,
        };
        if booting {
            sim.crashed_at = None;
            if let Some(crashed_after) = sim.crash_loop {
                operation.end = None;
                sim.crashed_at = Some(now + crashed_after);
                sim.web_up_at = None;
            } else if let Some(message) = &sim.operation_error {
                operation.end = Some(now + sim.boot);
                operation.error = Some(message.clone());
                sim.web_up_at = None;
            } else {
                operation.end = Some(now + sim.boot);
                sim.web_up_at = Some(now + sim.boot);
            }
        } else if stopping {
            operation.end = Some(now + sim.scale_down);
        }
        if web_after == 0 {
            sim.web_up_at = None;
        }
        sim.operation = Some(operation);
        Ok(ScaleOutcome::Started {
            operation_id,
            formation: sim.formation.clone(),
        })
    }

    async fn web_running_until(
        &self,
        region: &str,
        app: &str,
        _deadline: Instant,
    ) -> Result<bool, ScalingoError> {
        let mut state = self.enter(Call::WebRunning).await?;
        let up = app_in(&mut state, region, app)?.web_up_at;
        Ok(up.is_some_and(|at| at <= Instant::now()))
    }

    async fn operation_state(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
    ) -> Result<OperationState, ScalingoError> {
        let mut state = self.enter(Call::OperationState).await?;
        let now = Instant::now();
        match &app_in(&mut state, region, app)?.operation {
            Some(op) if op.id == operation_id => Ok(if op.running(now) {
                OperationState::Running
            } else {
                match &op.error {
                    Some(message) => OperationState::Failed(message.clone()),
                    None => OperationState::Done,
                }
            }),
            _ => Err(ScalingoError::NotFound),
        }
    }

    async fn app_status(&self, region: &str, app: &str) -> Result<AppStatus, ScalingoError> {
        let mut state = self.enter(Call::AppStatus).await?;
        Ok(app_in(&mut state, region, app)?.status(Instant::now()))
    }

    async fn probe_front(&self, region: &str, app: &str, path: &str) -> FrontProbe {
        let mut state = match self.enter(Call::ProbeFront).await {
            Ok(state) => state,
            Err(e) => return FrontProbe::Unreachable(e.to_string()),
        };
        state.probed_paths.insert(app.to_owned(), path.to_owned());
        if state.front_unreachable {
            return FrontProbe::Unreachable("connection refused".to_owned());
        }
        let now = Instant::now();
        match app_in(&mut state, region, app) {
            Ok(sim) if sim.web_up_at.is_some_and(|up| up + sim.front_delay <= now) => {
                FrontProbe::App
            }
            _ => FrontProbe::Router,
        }
    }

    async fn autoscalers(
        &self,
        region: &str,
        app: &str,
    ) -> Result<Vec<AutoscalerState>, ScalingoError> {
        let mut state = self.enter(Call::Autoscalers).await?;
        Ok(app_in(&mut state, region, app)?.autoscalers.clone())
    }

    async fn set_autoscaler_disabled(
        &self,
        region: &str,
        app: &str,
        id: &str,
        disabled: bool,
    ) -> Result<(), ScalingoError> {
        let mut state = self.enter(Call::SetAutoscaler).await?;
        let sim = app_in(&mut state, region, app)?;
        match sim.autoscalers.iter_mut().find(|a| a.id == id) {
            Some(a) => {
                a.disabled = disabled;
                Ok(())
            }
            None => Err(ScalingoError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests;

//! [`InProcessPlatform`]: a [`Platform`] held in memory, on tokio's clock,
//! for unit tests of the wake and pause logic (with `tokio::time::pause()`
//! a boot of a minute takes no real time).
//!
//! What it models of Scalingo: apps in regions with a formation; a scale
//! that changes something starts an operation, which ends after the app's
//! boot delay when it brings `web` up from 0 (at once otherwise); a scale
//! while an operation runs is [`ScalingoError::Busy`]; a scale that changes
//! nothing is [`ScaleOutcome::NoChange`]. Tests queue failures per call kind
//! and read how many calls of each kind were made.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{ListedApp, Platform};
use crate::scalingo::{AppStatus, ContainerAmount, ContainerType, ScaleOutcome, ScalingoError};

/// The kinds of calls, to count them and to queue failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Regions,
    ListApps,
    Locate,
    Formation,
    Scale,
    WaitOperation,
    WaitWebRunning,
}

#[derive(Debug)]
struct SimApp {
    region: String,
    formation: Vec<ContainerType>,
    /// How long bringing `web` up from 0 takes.
    boot: Duration,
    /// When a `web` container runs (past or future); `None`: none will.
    web_up_at: Option<Instant>,
    /// The running operation's id and end.
    operation: Option<(String, Instant)>,
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
            },
        );
    }

    /// How long bringing `app`'s `web` up from 0 takes.
    pub fn set_boot(&self, app: &str, boot: Duration) {
        if let Some(a) = self.lock().apps.get_mut(app) {
            a.boot = boot;
        }
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

/// Sleeps until `at`, or fails with a timeout when `deadline` comes first.
async fn until(at: Option<Instant>, deadline: Instant) -> Result<(), ScalingoError> {
    match at {
        Some(at) if at <= deadline => {
            tokio::time::sleep_until(at).await;
            Ok(())
        }
        _ => {
            tokio::time::sleep_until(deadline).await;
            Err(ScalingoError::Timeout)
        }
    }
}

#[async_trait]
impl Platform for InProcessPlatform {
    async fn regions(&self) -> Result<Vec<String>, ScalingoError> {
        Ok(self.enter(Call::Regions).await?.regions.clone())
    }

    async fn list_apps(&self, region: &str) -> Result<Vec<ListedApp>, ScalingoError> {
        let state = self.enter(Call::ListApps).await?;
        if !state.regions.iter().any(|r| r == region) {
            return Err(ScalingoError::UnknownRegion(region.to_owned()));
        }
        Ok(state
            .apps
            .iter()
            .filter(|(_, a)| a.region == region)
            .map(|(name, a)| ListedApp {
                name: name.clone(),
                status: if a.formation.is_empty() {
                    AppStatus::New
                } else if a.formation.iter().any(|c| c.amount > 0) {
                    AppStatus::Running
                } else {
                    AppStatus::Stopped
                },
            })
            .collect())
    }

    async fn locate(&self, app: &str) -> Result<Option<String>, ScalingoError> {
        let state = self.enter(Call::Locate).await?;
        Ok(state.apps.get(app).map(|a| a.region.clone()))
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
        if sim.operation.as_ref().is_some_and(|(_, end)| *end > now) {
            return Err(ScalingoError::Busy(format!("{app} is scaling")));
        }
        let web_before = web_amount(&sim.formation).unwrap_or(0);
        let mut changed = false;
        for change in changes {
            match sim.formation.iter_mut().find(|c| c.name == change.name) {
                Some(c) if c.amount != change.amount => {
                    c.amount = change.amount;
                    changed = true;
                }
                Some(_) => {}
                None => {
                    return Err(ScalingoError::Rejected {
                        status: 422,
                        message: format!("no process type {:?}", change.name),
                    })
                }
            }
        }
        if !changed {
            return Ok(ScaleOutcome::NoChange);
        }
        let web_after = web_amount(&sim.formation).unwrap_or(0);
        let end = if web_before == 0 && web_after > 0 {
            now + sim.boot
        } else {
            now
        };
        if web_after == 0 {
            sim.web_up_at = None;
        } else if web_before == 0 {
            sim.web_up_at = Some(end);
        }
        sim.operation = Some((operation_id.clone(), end));
        Ok(ScaleOutcome::Started {
            operation_id,
            formation: sim.formation.clone(),
        })
    }

    async fn wait_operation(
        &self,
        region: &str,
        app: &str,
        operation_id: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError> {
        let end = {
            let mut state = self.enter(Call::WaitOperation).await?;
            match &app_in(&mut state, region, app)?.operation {
                Some((id, end)) if id == operation_id => *end,
                _ => return Err(ScalingoError::NotFound),
            }
        };
        until(Some(end), deadline).await
    }

    async fn wait_web_running(
        &self,
        region: &str,
        app: &str,
        deadline: Instant,
    ) -> Result<(), ScalingoError> {
        let up = {
            let mut state = self.enter(Call::WaitWebRunning).await?;
            app_in(&mut state, region, app)?.web_up_at
        };
        until(up, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scale_up_boots_for_the_apps_delay() {
        let p = InProcessPlatform::new(&["osc-fr1"]);
        p.add_app("osc-fr1", "my-app", &[("web", 0), ("worker", 0)]);
        p.set_boot("my-app", Duration::from_secs(20));
        let started = Instant::now();
        let outcome = p
            .scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 2)])
            .await
            .unwrap();
        let ScaleOutcome::Started { operation_id, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(matches!(
            p.scale("osc-fr1", "my-app", &[ContainerAmount::new("web", 3)])
                .await,
            Err(ScalingoError::Busy(_))
        ));
        let deadline = started + Duration::from_secs(60);
        p.wait_operation("osc-fr1", "my-app", &operation_id, deadline)
            .await
            .unwrap();
        p.wait_web_running("osc-fr1", "my-app", deadline)
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(p.formation_of("my-app")[0], ("web".to_owned(), 2));
        assert_eq!(p.calls(Call::Scale), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_at_the_deadline_and_failures_are_served_in_order() {
        let p = InProcessPlatform::new(&["osc-fr1"]);
        p.add_app("osc-fr1", "stopped-app", &[("web", 0)]);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            p.wait_web_running("osc-fr1", "stopped-app", deadline).await,
            Err(ScalingoError::Timeout)
        );
        assert_eq!(Instant::now(), deadline);
        p.fail_next(Call::Locate, ScalingoError::RateLimited);
        assert_eq!(
            p.locate("stopped-app").await,
            Err(ScalingoError::RateLimited)
        );
        assert_eq!(
            p.locate("stopped-app").await,
            Ok(Some("osc-fr1".to_owned()))
        );
        assert_eq!(p.locate("nobody").await, Ok(None));
        let listed = p.list_apps("osc-fr1").await.unwrap();
        assert!(!listed[0].is_running());
    }
}

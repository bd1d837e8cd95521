//! Scaling an app back up: how a wake starts ([`first_move`], pure), the
//! formation to restore ([`restore_plan`], pure) and the calls that bring
//! it up and wait until it serves ([`scale_up`]); an app busy with another
//! operation (`is scaling`) is waited out, paced, within the wake's
//! deadline.
//!
//! A cold wake of an app known to exist (the registry has it: woken,
//! paused or discovered before; or a listing of its region, such as the
//! scheduler's, found it there) costs one API call, the scale: the app's front is looked at
//! first (free: no API call), and an app that does not serve is scaled at
//! once to the formation the registry remembers from its pause (or
//! `web: 1`), without reading its formation. The formation is read first
//! for an app not known to exist (the read tells whether it does), when the front cannot be reached from here, or when a remembered process
//! type no longer exists (the scale answers 404 `container_type`), or
//! once after the first `is scaling` (an app booting or crash looping
//! under its own operation is then waited for, not scaled again and again).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::ready::{wait_ready, Target, FIRST_PROBE};
use super::types::WakeError;
use crate::awake::Awake;
use crate::platform::{
    ContainerAmount, ContainerType, FrontProbe, Platform, ScaleOutcome, ScalingoError,
};
use crate::registry::Registry;

/// The first pause after the platform says another operation is in
/// progress (422 `is scaling`: often a pause still stopping the app's
/// containers, which takes up to 30 s on Scalingo). Each further pause is
/// one more of it, up to [`BUSY_PAUSE_MAX`]: a 30 s scale-down costs nine
/// pairs of calls (formation, scale) spread over it, not thirty a second.
/// The wait ends at the wake's deadline.
pub const BUSY_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a busy app.
pub const BUSY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// The pause after the `busy`-th `is scaling` in a row (from 1).
pub fn busy_pause(busy: u32) -> Duration {
    BUSY_PAUSE.saturating_mul(busy.max(1)).min(BUSY_PAUSE_MAX)
}

/// How a wake starts, decided from one look at the app's front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMove {
    /// The app itself answers: it runs, nothing to scale.
    Serving,
    /// Scale to these amounts now, without reading the formation first.
    Scale(Vec<ContainerAmount>),
    /// The front tells nothing (no HTTP answer from here): read the
    /// formation first, as the API alone can tell whether `web` runs.
    ReadFormation,
}

/// The first move of a wake: an app whose front answers needs no call; one
/// behind the router's error page is scaled at once to the remembered
/// formation ([`restore_plan`] without a current formation): a scale to
/// the amounts it already has is a no-change on Scalingo, and a type that
/// no longer exists is a 404 the wake recovers from by reading the
/// formation.
pub fn first_move(probe: &FrontProbe, remembered: &[(String, u32)]) -> FirstMove {
    match probe {
        FrontProbe::App => FirstMove::Serving,
        FrontProbe::Router => FirstMove::Scale(restore_plan(remembered, None)),
        FrontProbe::Unreachable(_) => FirstMove::ReadFormation,
    }
}

/// The amounts to scale to: the formation remembered when the app was
/// paused (with a `current` formation read, only types that still exist
/// and are at 0 now; without one, every remembered type), else `web: 1`.
/// Always scales `web` up: the default domain routes only to it.
pub fn restore_plan(
    remembered: &[(String, u32)],
    current: Option<&[ContainerType]>,
) -> Vec<ContainerAmount> {
    let mut plan: Vec<ContainerAmount> = remembered
        .iter()
        .filter(|(name, amount)| {
            *amount > 0
                && current
                    .is_none_or(|current| current.iter().any(|c| &c.name == name && c.amount == 0))
        })
        .map(|(name, amount)| ContainerAmount::new(name.clone(), *amount))
        .collect();
    if !plan.iter().any(|c| c.name == "web") {
        plan.push(ContainerAmount::new("web", 1));
    }
    plan
}

/// Whether a scale refused `changes` because a process type does not exist
/// (Scalingo: 404 with `resource: container_type`).
fn unknown_process_type(e: &ScalingoError) -> bool {
    matches!(e, ScalingoError::ResourceNotFound { resource } if resource == "container_type")
}

/// What the registry knows of `app`: whether it has a record at all, and
/// the formation and the autoscalers it remembers (empty when none, or when
/// the registry cannot be read: the wake then restores `web: 1`).
async fn remembered(registry: &dyn Registry, app: &str) -> (bool, Vec<(String, u32)>, Vec<String>) {
    match registry.get(app).await {
        Ok(Some(record)) => (true, record.formation, record.autoscalers),
        Ok(None) => Default::default(),
        Err(e) => {
            warn!(error = %e, "registry unavailable, waking with web=1");
            Default::default()
        }
    }
}

/// An app brought up by [`scale_up`].
#[derive(Debug, Clone)]
pub struct ScaledUp {
    pub awake: Awake,
    /// The autoscalers its pause recorded, to turn back on now that this
    /// wake scaled it up (empty when the wake found it up already).
    pub autoscalers: Vec<String>,
}

/// Turns the recorded autoscalers of `app` back on, then forgets them.
/// Returns those turned on; a failure is logged (the app runs: the wake
/// succeeded) and the autoscaler stays recorded for the next wake.
pub async fn restore_autoscalers(
    platform: &dyn Platform,
    registry: &dyn Registry,
    region: &str,
    app: &str,
    ids: &[String],
) -> Vec<String> {
    let mut restored = Vec::new();
    let mut left = Vec::new();
    for id in ids {
        match platform
            .set_autoscaler_disabled(region, app, id, false)
            .await
        {
            Ok(()) => restored.push(id.clone()),
            Err(ScalingoError::NotFound | ScalingoError::ResourceNotFound { .. }) => {
                info!(autoscaler = %id, "autoscaler gone since the pause");
            }
            Err(e) => {
                warn!(autoscaler = %id, error = %e, "autoscaler not turned back on");
                left.push(id.clone());
            }
        }
    }
    if let Err(e) = registry.remember_autoscalers(app, left).await {
        warn!(error = %e, "restored autoscalers not forgotten in the registry");
    }
    restored
}

/// Scales `app` back up (unless it serves, or `web` already runs or boots)
/// and waits until it serves ([`wait_ready`]), at most until `deadline`.
/// The formation read and the scale call wait for a slot of the API budget
/// until `deadline`.
pub async fn scale_up(
    platform: &dyn Platform,
    registry: &dyn Registry,
    target: Target<'_>,
    deadline: Instant,
) -> Result<ScaledUp, WakeError> {
    let Target {
        app,
        region,
        health_path,
    } = target;
    let mut autoscalers = Vec::new();
    let started = Instant::now();
    let fail = |e| WakeError::provider(app, e);
    let (recorded, formation_then, autoscalers_then) = remembered(registry, app).await;
    let known = recorded || platform.listed_region(app).as_deref() == Some(region);
    // Read the formation at every try: for an app neither the registry nor
    // a listing knows (the read also tells that it exists: any front, even the
    // router's page for an unknown domain, could pass for an app's answer),
    // or when the front tells nothing. Or at the next try only: after the
    // first `is scaling`, the app may be booting, or crash looping, under
    // an operation of its own rather than still stopping; then it is
    // waited for, not scaled again.
    let mut read_formation = !known;
    let mut read_once = false;
    let mut busy = 0;
    loop {
        let changes = if read_formation || std::mem::take(&mut read_once) {
            let formation = platform
                .formation_until(region, app, deadline)
                .await
                .map_err(fail)?;
            let Some(web) = formation.iter().find(|c| c.name == "web") else {
                return Err(WakeError::NoWebProcess(app.to_owned()));
            };
            if web.amount > 0 {
                // Running already, or booting: wait until it serves.
                wait_ready(platform, target, None, Duration::ZERO, deadline).await?;
                break;
            }
            restore_plan(&formation_then, Some(&formation))
        } else {
            let probe = platform.probe_front(region, app, health_path).await;
            match first_move(&probe, &formation_then) {
                FirstMove::Serving => break,
                FirstMove::ReadFormation => {
                    read_formation = true;
                    continue;
                }
                FirstMove::Scale(changes) => changes,
            }
        };
        info!(region = %region, ?changes, "scaling up");
        match platform.scale_until(region, app, &changes, deadline).await {
            Ok(ScaleOutcome::Started { operation_id, .. }) => {
                wait_ready(platform, target, Some(&operation_id), FIRST_PROBE, deadline).await?;
                autoscalers = autoscalers_then;
                break;
            }
            Ok(ScaleOutcome::Done { .. } | ScaleOutcome::NoChange) => {
                wait_ready(platform, target, None, FIRST_PROBE, deadline).await?;
                autoscalers = autoscalers_then;
                break;
            }
            Err(ScalingoError::Busy(reason)) => {
                busy += 1;
                read_once = busy == 1;
                let pause = busy_pause(busy);
                info!(%reason, pause_ms = pause.as_millis() as u64, "another operation is running, waiting");
                if Instant::now() + pause >= deadline {
                    return Err(WakeError::Timeout(app.to_owned()));
                }
                tokio::time::sleep(pause).await;
            }
            Err(e) if !read_formation && unknown_process_type(&e) => {
                info!("a remembered process type is gone: reading the formation");
                read_formation = true;
            }
            Err(e) => return Err(fail(e)),
        }
    }
    info!(region = %region, took_ms = started.elapsed().as_millis() as u64, "app is running");
    Ok(ScaledUp {
        awake: Awake::new(app, region),
        autoscalers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(types: &[(&str, u32)]) -> Vec<ContainerType> {
        types
            .iter()
            .map(|(name, amount)| ContainerType {
                name: (*name).to_owned(),
                amount: *amount,
                size: None,
            })
            .collect()
    }

    fn remembered(types: &[(&str, u32)]) -> Vec<(String, u32)> {
        types.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect()
    }

    #[test]
    fn busy_pauses_grow_to_their_cap() {
        let secs = |n| busy_pause(n).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(5), secs(9)],
            [1, 2, 3, 5, 5]
        );
    }

    #[test]
    fn nothing_remembered_restores_one_web_container() {
        assert_eq!(
            restore_plan(&[], Some(&current(&[("web", 0), ("worker", 0)]))),
            [ContainerAmount::new("web", 1)]
        );
    }

    #[test]
    fn the_remembered_formation_is_restored_for_types_at_zero() {
        let plan = restore_plan(
            &remembered(&[("web", 3), ("worker", 2), ("clock", 1)]),
            Some(&current(&[("web", 0), ("worker", 0), ("clock", 1)])),
        );
        // `clock` runs already: left alone.
        assert_eq!(
            plan,
            [
                ContainerAmount::new("web", 3),
                ContainerAmount::new("worker", 2)
            ]
        );
    }

    #[test]
    fn types_gone_since_the_pause_are_skipped_and_web_is_always_scaled() {
        let plan = restore_plan(
            &remembered(&[("worker", 2), ("old", 4), ("web", 0)]),
            Some(&current(&[("web", 0), ("worker", 0)])),
        );
        assert_eq!(
            plan,
            [
                ContainerAmount::new("worker", 2),
                ContainerAmount::new("web", 1)
            ]
        );
    }

    #[test]
    fn without_a_formation_read_every_remembered_type_is_restored() {
        assert_eq!(
            restore_plan(
                &remembered(&[("web", 2), ("worker", 1), ("clock", 0)]),
                None
            ),
            [
                ContainerAmount::new("web", 2),
                ContainerAmount::new("worker", 1)
            ]
        );
        assert_eq!(restore_plan(&[], None), [ContainerAmount::new("web", 1)]);
    }

    #[test]
    fn the_front_decides_the_first_move() {
        let then = remembered(&[("web", 2)]);
        assert_eq!(first_move(&FrontProbe::App, &then), FirstMove::Serving);
        assert_eq!(
            first_move(&FrontProbe::Router, &then),
            FirstMove::Scale(vec![ContainerAmount::new("web", 2)])
        );
        assert_eq!(
            first_move(&FrontProbe::Router, &[]),
            FirstMove::Scale(vec![ContainerAmount::new("web", 1)])
        );
        assert_eq!(
            first_move(&FrontProbe::Unreachable("dns".into()), &then),
            FirstMove::ReadFormation
        );
    }

    #[test]
    fn only_a_missing_process_type_sends_the_wake_back_to_the_formation() {
        assert!(unknown_process_type(&ScalingoError::ResourceNotFound {
            resource: "container_type".into()
        }));
        assert!(!unknown_process_type(&ScalingoError::ResourceNotFound {
            resource: "app".into()
        }));
        assert!(!unknown_process_type(&ScalingoError::NotFound));
    }
}

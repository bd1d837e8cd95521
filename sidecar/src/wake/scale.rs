//! Scaling an app back up: the formation to restore ([`restore_plan`], pure)
//! and the calls that bring it up and wait for a running `web` container
//! ([`scale_up`]).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::types::WakeError;
use crate::awake::Awake;
use crate::platform::{ContainerAmount, ContainerType, Platform, ScaleOutcome, ScalingoError};
use crate::registry::Registry;

/// How many times a wake re-reads the formation when the platform says
/// another operation is in progress (422 "is scaling") before it gives up.
pub const BUSY_RETRIES: u32 = 5;
/// Pause between those re-reads.
pub const BUSY_PAUSE: Duration = Duration::from_secs(1);

/// The amounts to scale to: the formation remembered when the app was
/// paused (only types that still exist and are at 0 now), else `web: 1`.
/// Always scales `web` up: the default domain routes only to it.
pub fn restore_plan(
    remembered: &[(String, u32)],
    current: &[ContainerType],
) -> Vec<ContainerAmount> {
    let mut plan: Vec<ContainerAmount> = remembered
        .iter()
        .filter(|(name, amount)| {
            *amount > 0 && current.iter().any(|c| &c.name == name && c.amount == 0)
        })
        .map(|(name, amount)| ContainerAmount::new(name.clone(), *amount))
        .collect();
    if !plan.iter().any(|c| c.name == "web") {
        plan.push(ContainerAmount::new("web", 1));
    }
    plan
}

/// The formation the registry remembers for `app`; nothing when it has none
/// or cannot be read (the wake then restores `web: 1`).
async fn remembered(registry: &dyn Registry, app: &str) -> Vec<(String, u32)> {
    match registry.get(app).await {
        Ok(Some(record)) => record.formation,
        Ok(None) => Vec::new(),
        Err(e) => {
            warn!(error = %e, "registry unavailable, waking with web=1");
            Vec::new()
        }
    }
}

/// Scales `app` back up (unless `web` already runs or boots) and waits until
/// a web container runs, at most until `deadline`.
pub async fn scale_up(
    platform: &dyn Platform,
    registry: &dyn Registry,
    app: &str,
    region: &str,
    deadline: Instant,
) -> Result<Awake, WakeError> {
    let started = Instant::now();
    let fail = |e| WakeError::provider(app, e);
    let mut busy = 0;
    loop {
        let formation = platform.formation(region, app).await.map_err(fail)?;
        let Some(web) = formation.iter().find(|c| c.name == "web") else {
            return Err(WakeError::NoWebProcess(app.to_owned()));
        };
        if web.amount > 0 {
            // Running already, or booting: wait for a running container.
            platform
                .wait_web_running(region, app, deadline)
                .await
                .map_err(fail)?;
            break;
        }
        let changes = restore_plan(&remembered(registry, app).await, &formation);
        info!(region = %region, ?changes, "scaling up");
        match platform.scale(region, app, &changes).await {
            Ok(ScaleOutcome::Started { operation_id, .. }) => {
                platform
                    .wait_operation(region, app, &operation_id, deadline)
                    .await
                    .map_err(fail)?;
                platform
                    .wait_web_running(region, app, deadline)
                    .await
                    .map_err(fail)?;
                break;
            }
            Ok(ScaleOutcome::Done { .. } | ScaleOutcome::NoChange) => {
                platform
                    .wait_web_running(region, app, deadline)
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
    Ok(Awake::new(app, region))
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
    fn nothing_remembered_restores_one_web_container() {
        assert_eq!(
            restore_plan(&[], &current(&[("web", 0), ("worker", 0)])),
            [ContainerAmount::new("web", 1)]
        );
    }

    #[test]
    fn the_remembered_formation_is_restored_for_types_at_zero() {
        let plan = restore_plan(
            &remembered(&[("web", 3), ("worker", 2), ("clock", 1)]),
            &current(&[("web", 0), ("worker", 0), ("clock", 1)]),
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
            &current(&[("web", 0), ("worker", 0)]),
        );
        assert_eq!(
            plan,
            [
                ContainerAmount::new("worker", 2),
                ContainerAmount::new("web", 1)
            ]
        );
    }
}

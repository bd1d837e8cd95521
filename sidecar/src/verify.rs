//! The traffic tells the truth: checking an app the filter saw not running.
//!
//! The filter watches the answers to the requests it routes: a 502, 503 or
//! 504 is the platform's router answering for an app with no serving
//! container (see [`crate::platform::front::classify`]). It then drops the
//! app from its cache, reports it (`not_running` in the activity batch) and
//! marks its next wake `verify`. This module answers those reports:
//!
//! 1. one probe of the app's own front (no API call): if the app answers,
//!    it serves (an app that answers 503 itself), and its memory is kept;
//! 2. otherwise every memory of "awake" is cleared ([`AwakeCache::forget`]),
//!    so that the next request goes through a full wake, and the app's
//!    status is read once (one API call through the [`Platform`], which
//!    draws from the shared budget): an app stopped outside the gateway (no
//!    formation of ours to restore) is forgotten in the registry too, as the
//!    scheduler's pass forgets it.
//!
//! Invariants:
//! - at most one check per app per [`CHECK_PERIOD`] in this process: reports
//!   and `verify` wakes that arrive while a check runs, or within the
//!   period after it, share its verdict (single flight, deduplicated);
//! - a check runs in its own task: a caller that gives up does not cancel
//!   it;
//! - the map of recent checks is bounded ([`MAX_TRACKED`]).
//!
//! [`AwakeCache::forget`]: crate::awake::AwakeCache::forget
//! [`Platform`]: crate::platform::Platform

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use paastis_rules::is_valid_app_name;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::deps::Deps;
use crate::platform::FrontProbe;
use crate::registry::EventKind;

/// How long a check's verdict stands for an app: reports and `verify`
/// wakes within it cost nothing.
pub const CHECK_PERIOD: Duration = Duration::from_secs(15);
/// Most apps whose recent check is remembered (beyond it, checks older than
/// the period are dropped first; the map never grows past this bound).
pub const MAX_TRACKED: usize = 10_000;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The app itself answered its front: its memory of "awake" is kept.
    Serving,
    /// No container serves it (the router answered, or the front could not
    /// be reached) but it may run (booting, crashed ...): "awake" is
    /// forgotten, the next wake waits for it.
    NotServing,
    /// Scalingo says it is stopped: "awake" is forgotten, and the registry
    /// entry too when the gateway has no formation of its own to restore.
    Stopped,
    /// The gateway does not know where the app runs (never woken nor
    /// discovered): nothing to forget.
    Unknown,
}

type SharedCheck = Shared<BoxFuture<'static, Verdict>>;

/// Checks apps the filter reported; one per sidecar.
#[derive(Default)]
pub struct Verifier {
    /// Resolved app -> when its last check started, and its (shared) verdict.
    checks: Mutex<HashMap<String, (Instant, SharedCheck)>>,
}

impl Verifier {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Instant, SharedCheck)>> {
        // Single map operations: a poisoned lock is still consistent.
        self.checks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the app a host named (`requested`, resolved by the rules),
    /// or joins the check of it that ran within the period.
    pub async fn check(&self, deps: &Deps, requested: &str) -> Verdict {
        if !is_valid_app_name(requested) {
            return Verdict::Unknown;
        }
        let app = match deps.rules.resolve(requested) {
            Ok(resolved) => resolved,
            Err(e) => {
                debug!(app = %requested, error = %e, "report for an app the rules cannot resolve");
                return Verdict::Unknown;
            }
        };
        let shared = self.join_or_start(deps, &app.name, &app.health_path);
        match shared {
            Some(check) => check.await,
            // Every tracked check is recent: this one is not deduplicated.
            None => run(deps.clone(), app.name, app.health_path).await,
        }
    }

    /// The check of `app` that started within the period, or a new one
    /// (spawned); `None` when the map is full of recent checks.
    fn join_or_start(&self, deps: &Deps, app: &str, health_path: &str) -> Option<SharedCheck> {
        let mut checks = self.lock();
        let now = Instant::now();
        if let Some((started, check)) = checks.get(app) {
            if now.duration_since(*started) < CHECK_PERIOD {
                return Some(check.clone());
            }
        }
        if checks.len() >= MAX_TRACKED {
            checks.retain(|_, (started, _)| now.duration_since(*started) < CHECK_PERIOD);
            if checks.len() >= MAX_TRACKED {
                return None;
            }
        }
        let task = tokio::spawn(run(deps.clone(), app.to_owned(), health_path.to_owned()));
        let check = async move { task.await.unwrap_or(Verdict::Unknown) }
            .boxed()
            .shared();
        checks.insert(app.to_owned(), (now, check.clone()));
        Some(check)
    }

    /// Checks each reported app (each once per period), concurrently.
    pub async fn check_all(&self, deps: &Deps, apps: &[String]) -> Vec<Verdict> {
        futures::future::join_all(apps.iter().map(|app| self.check(deps, app))).await
    }
}

/// One check of `app` (a resolved name); see the module's documentation.
async fn run(deps: Deps, app: String, health_path: String) -> Verdict {
    let started_ms = now_ms();
    let region = match deps.awake.entry(&app) {
        Some(awake) => Some(awake.region),
        None => match deps.registry.get(&app).await {
            Ok(Some(record)) => record.region,
            Ok(None) => None,
            Err(e) => {
                // The front cannot be probed without a region: the next
                // wake finds it again.
                warn!(%app, error = %e, "registry unreadable; forgetting that the app runs");
                deps.awake.forget(&app);
                return Verdict::NotServing;
            }
        },
    };
    let Some(region) = region else {
        deps.awake.forget(&app);
        return Verdict::Unknown;
    };
    if deps.is_ignored(&app) {
        // Routed but never scaled: nothing a wake could change.
        return Verdict::Serving;
    }
    match deps.platform.probe_front(&region, &app, &health_path).await {
        FrontProbe::App => {
            debug!(%app, "reported not running, but the app answers: kept");
            return Verdict::Serving;
        }
        FrontProbe::Router => {}
        FrontProbe::Unreachable(e) => debug!(%app, error = %e, "front not probed"),
    }
    // Cleared before the API is asked, on every instance (the stop note of
    // `crate::awake`): a wake arriving now, anywhere, does the work.
    if let Err(e) = deps.mark_stopped(&app).await {
        warn!(%app, error = %e, "stop note not written; other instances trust their memory until it expires");
    }
    deps.awake.forget(&app);
    let status = match deps.platform.app_status(&region, &app).await {
        Ok(status) => status,
        Err(e) => {
            warn!(%app, error = %e, "status not read; the next request wakes the app");
            return Verdict::NotServing;
        }
    };
    if status.may_be_running() {
        info!(%app, %status, "traffic showed no serving container; the next request wakes it");
        return Verdict::NotServing;
    }
    // Stopped by someone else: forgotten as the scheduler forgets it, unless
    // the gateway paused it itself (then its formation is kept for the wake).
    match deps.registry.get(&app).await {
        Ok(Some(record)) if record.formation.is_empty() => {
            // Not if a wake marked it used since the check began.
            match deps
                .registry
                .forget_if_accessed_before(&app, started_ms)
                .await
            {
                Ok(true) => deps.record(&app, EventKind::Forgotten).await,
                Ok(false) => debug!(%app, "woken meanwhile: kept in the registry"),
                Err(e) => warn!(%app, error = %e, "stopped app not forgotten in the registry"),
            }
        }
        Ok(_) => {}
        Err(e) => warn!(%app, error = %e, "registry unreadable"),
    }
    info!(%app, "stopped outside the gateway; the next request wakes it");
    Verdict::Stopped
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::awake::Awake;
    use crate::platform::memory::{Call, InProcessPlatform};
    use crate::platform::{ContainerAmount, Platform};
    use crate::registry::AppMeta;

    const REGION: &str = "osc-fr1";

    fn deps(platform: &Arc<InProcessPlatform>) -> Deps {
        let rules = crate::config::parse_rules(Path::new("paastis.yml"), "", 15).expect("rules");
        Deps::in_memory(platform.clone(), rules, Duration::from_secs(600))
    }

    async fn woken(deps: &Deps, app: &str) {
        deps.awake.insert(app, Awake::new(app, REGION));
        let meta = AppMeta {
            region: REGION.to_owned(),
            max_idle_minutes: 15,
            linked_apps: Vec::new(),
        };
        deps.registry
            .register(app, meta, 1)
            .await
            .expect("register");
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_stopped_outside_is_forgotten_once_per_period() {
        let platform = Arc::new(InProcessPlatform::new(&[REGION]));
        platform.add_app(REGION, "my-app", &[("web", 1)]);
        let deps = deps(&platform);
        woken(&deps, "my-app").await;
        platform
            .scale(REGION, "my-app", &[ContainerAmount::new("web", 0)])
            .await
            .expect("stopped from outside");
        tokio::time::sleep(Duration::from_secs(60)).await;
        let before = platform.calls(Call::AppStatus);

        let verifier = Verifier::new();
        let reports = vec!["my-app".to_owned(); 20];
        let verdicts = verifier.check_all(&deps, &reports).await;
        assert!(
            verdicts.iter().all(|v| *v == Verdict::Stopped),
            "{verdicts:?}"
        );
        assert_eq!(platform.calls(Call::AppStatus) - before, 1, "deduplicated");
        assert_eq!(deps.awake.entry("my-app"), None);
        assert_eq!(deps.registry.get("my-app").await.expect("read"), None);
        // Within the period: the same verdict, no call.
        assert_eq!(verifier.check(&deps, "my-app").await, Verdict::Stopped);
        assert_eq!(platform.calls(Call::AppStatus) - before, 1);
        // After it: checked again, but nothing is left to forget (no call).
        tokio::time::sleep(CHECK_PERIOD).await;
        assert_eq!(verifier.check(&deps, "my-app").await, Verdict::Unknown);
        assert_eq!(platform.calls(Call::AppStatus) - before, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_that_answers_is_kept_without_an_api_call() {
        let platform = Arc::new(InProcessPlatform::new(&[REGION]));
        platform.add_app(REGION, "my-app", &[("web", 1)]);
        let deps = deps(&platform);
        woken(&deps, "my-app").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let before = platform.api_calls();
        let verdict = Verifier::new().check(&deps, "my-app").await;
        assert_eq!(verdict, Verdict::Serving);
        assert_eq!(platform.api_calls(), before);
        assert!(deps.awake.entry("my-app").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_app_keeps_its_formation_and_unknown_apps_cost_nothing() {
        let platform = Arc::new(InProcessPlatform::new(&[REGION]));
        platform.add_app(REGION, "my-app", &[("web", 0)]);
        let deps = deps(&platform);
        woken(&deps, "my-app").await;
        deps.registry
            .remember_formation("my-app", vec![("web".to_owned(), 2)])
            .await
            .expect("remember");
        let verifier = Verifier::new();
        assert_eq!(verifier.check(&deps, "my-app").await, Verdict::Stopped);
        assert_eq!(deps.awake.entry("my-app"), None);
        let record = deps.registry.get("my-app").await.expect("read");
        assert_eq!(
            record.map(|r| r.formation),
            Some(vec![("web".to_owned(), 2)])
        );

        let before = platform.api_calls();
        assert_eq!(verifier.check(&deps, "other-app").await, Verdict::Unknown);
        assert_eq!(verifier.check(&deps, "Not_Valid").await, Verdict::Unknown);
        assert_eq!(platform.api_calls(), before);
    }
}

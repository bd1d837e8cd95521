//! The `waiting_page` strategy, on the sidecar's side.
//!
//! A browser's first request for a sleeping app whose rules say
//! `strategy: waiting_page` is not held: the wake starts in the background
//! (the waker's single flight: one scale call however many requests) and
//! `POST /v1/wake` answers at once with 202 `WaitingAnswer`. The filter then
//! shows its waiting page, which polls the gateway's status path; the filter
//! asks `GET /v1/status?app=NAME` ([`Waiting::status`]) until the app runs.
//!
//! Everything else (API clients, the `blocking` strategy, an app known to
//! run) is a blocking wake as before.
//!
//! The outcome of each background wake is kept for [`KEEP_OUTCOME`], so that
//! a failed wake shows as an error on the page instead of a page that spins
//! forever. What this instance does not know (another instance woke the
//! app, the sidecar restarted) reads as `asleep`: the page then reloads,
//! which starts a wake again; an app that exists nowhere reads as `failed`
//! with `unknown_app` (the region lookup, cached, tells).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paastis_api::{AppState, AppStatus, Client, ErrorCode, StatusAnswer, WaitingAnswer};
use paastis_rules::{is_valid_app_name, Strategy};
use tokio::time::Instant;
use tracing::{info, Instrument};

use crate::wake::{WakeError, WakeState, Waker};

/// How long the outcome of a background wake stays readable.
pub const KEEP_OUTCOME: Duration = Duration::from_secs(300);
/// Most background wakes tracked at once; beyond it new ones still run but
/// their failures are not reported (the status then falls back to what the
/// waker knows).
pub const MAX_TRACKED: usize = 10_000;

/// True when the request gets the waiting page rather than waiting: the
/// rules say `waiting_page`, the client is a browser, and the app is not
/// known to run (then the blocking wake answers at once anyway).
pub fn shows_waiting_page(strategy: Strategy, client: Client, known_running: bool) -> bool {
    strategy == Strategy::WaitingPage && client == Client::Browser && !known_running
}

#[derive(Debug, Clone)]
enum Outcome {
    /// The wake runs.
    Pending,
    /// The target runs; the linked apps that did not wake.
    Woken { failed_links: Vec<String> },
    /// The target did not wake, and why.
    Failed { code: ErrorCode, reason: String },
}

#[derive(Debug, Clone)]
struct Tracked {
    at: Instant,
    outcome: Outcome,
}

/// The background wakes started for waiting pages, by requested app.
#[derive(Debug, Default)]
pub struct Waiting {
    wakes: Mutex<HashMap<String, Tracked>>,
}

impl Waiting {
    pub fn new() -> Self {
        Self::default()
    }

    fn wakes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        // Every critical section is one map operation: a poisoned lock is
        // still consistent.
        self.wakes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a background wake of `requested` as started. False when one is
    /// already running (nothing more to start).
    fn start(&self, requested: &str) -> bool {
        let mut wakes = self.wakes();
        if let Some(t) = wakes.get(requested) {
            if matches!(t.outcome, Outcome::Pending) && t.at.elapsed() < KEEP_OUTCOME {
                return false;
            }
        }
        if wakes.len() >= MAX_TRACKED {
            wakes.retain(|_, t| t.at.elapsed() < KEEP_OUTCOME);
        }
        if wakes.len() < MAX_TRACKED || wakes.contains_key(requested) {
            wakes.insert(
                requested.to_owned(),
                Tracked {
                    at: Instant::now(),
                    outcome: Outcome::Pending,
                },
            );
        }
        true
    }

    fn finish(&self, requested: &str, outcome: Outcome) {
        if let Some(t) = self.wakes().get_mut(requested) {
            t.at = Instant::now();
            t.outcome = outcome;
        }
    }

    fn outcome(&self, requested: &str) -> Option<Outcome> {
        self.wakes()
            .get(requested)
            .filter(|t| t.at.elapsed() < KEEP_OUTCOME)
            .map(|t| t.outcome.clone())
    }

    /// For a browser's wake request: when `requested` gets the waiting page,
    /// starts its wake in the background (or lets the one running go on) and
    /// returns the 202 answer; `None` when the request must wait as usual.
    /// With `background` (the filter answers the request itself, whatever
    /// the strategy) every app not known running gets the 202.
    pub fn begin(
        self: &Arc<Self>,
        waker: &Arc<Waker>,
        requested: &str,
        region_hint: Option<&str>,
        background: bool,
    ) -> Result<Option<WaitingAnswer>, WakeError> {
        if !is_valid_app_name(requested) {
            return Err(WakeError::InvalidApp(requested.to_owned()));
        }
        let set = waker.rules().wake_set(requested)?;
        let Some(main) = set.first() else {
            return Ok(None);
        };
        let running = matches!(waker.wake_state(&main.name), WakeState::Running(_));
        let page = if background {
            // An app the gateway never scales is not woken: the router's
            // page for it is passed on (200 after the usual wake).
            !running && !waker.is_ignored(&main.name)
        } else {
            shows_waiting_page(main.strategy, Client::Browser, running)
        };
        if !page {
            return Ok(None);
        }
        if self.start(requested) {
            info!("waiting page: waking in the background");
            let this = Arc::clone(self);
            let waker = Arc::clone(waker);
            let app = requested.to_owned();
            let hint = region_hint.map(str::to_owned);
            tokio::spawn(
                async move {
                    let outcome = match waker.wake(&app, hint.as_deref()).await {
                        Ok(answer) => Outcome::Woken {
                            failed_links: answer
                                .linked_apps
                                .into_iter()
                                .filter(|l| !l.running)
                                .map(|l| l.app)
                                .collect(),
                        },
                        Err(e) => Outcome::Failed {
                            code: ErrorCode::from(&e),
                            reason: e.reason(),
                        },
                    };
                    this.finish(&app, outcome);
                }
                .instrument(tracing::Span::current()),
            );
        }
        Ok(Some(WaitingAnswer {
            waiting: true,
            app: Some(requested.to_owned()),
            target: main.name.clone(),
            linked_apps: set.iter().skip(1).map(|a| a.name.clone()).collect(),
            // Filled in by the caller (`expected`: a store read).
            expected_ms: None,
        }))
    }

    /// Where the wake of `requested` and its linked apps stands, from what
    /// this instance knows and the other instances' wake leases and notes
    /// (no Scalingo call).
    pub async fn status(&self, waker: &Waker, requested: &str) -> Result<StatusAnswer, WakeError> {
        if !is_valid_app_name(requested) {
            return Err(WakeError::InvalidApp(requested.to_owned()));
        }
        let set = waker.rules().wake_set(requested)?;
        let outcome = self.outcome(requested);
        let mut apps = Vec::with_capacity(set.len());
        let mut awake = None;
        for (i, app) in set.iter().enumerate() {
            let state = match waker.wake_state_shared(&app.name).await {
                WakeState::Running(a) => {
                    if i == 0 {
                        awake = Some(a);
                    }
                    AppState::Running
                }
                WakeState::Waking => AppState::Waking,
                WakeState::Idle => match &outcome {
                    Some(Outcome::Pending) => AppState::Waking,
                    Some(Outcome::Failed { .. }) if i == 0 => AppState::Failed,
                    Some(Outcome::Woken { failed_links }) if failed_links.contains(&app.name) => {
                        AppState::Failed
                    }
                    _ => AppState::Asleep,
                },
            };
            apps.push(AppStatus {
                app: app.name.clone(),
                state,
            });
        }
        let ready = awake.is_some() && !apps.iter().any(|a| a.state == AppState::Waking);
        let (mut error, mut reason) = match (&outcome, apps.first().map(|a| a.state)) {
            (Some(Outcome::Failed { code, reason }), Some(AppState::Failed)) => {
                (Some(*code), Some(reason.clone()))
            }
            _ => (None, None),
        };
        // A back-off (this instance's or another's) is a failure the page
        // shows, not an app to wake again by reloading.
        if let (Some(first), Some(target)) = (apps.first_mut(), set.first()) {
            if first.state == AppState::Asleep {
                if let Some(active) = waker.backoff(&target.name).await {
                    first.state = AppState::Failed;
                    error = Some(ErrorCode::WakeFailed);
                    reason = Some(active.reason);
                } else if outcome.is_none() && !exists(waker, &target.name).await {
                    // Nothing to wake: the page says so instead of
                    // reloading for ever.
                    first.state = AppState::Failed;
                    error = Some(ErrorCode::UnknownApp);
                    reason = Some(format!("no app named {} in any region", target.name));
                }
            }
        }
        let (region, upstream_host) = match awake.filter(|_| ready) {
            Some(a) => (Some(a.region), Some(a.upstream_host)),
            None => (None, None),
        };
        Ok(StatusAnswer {
            app: Some(requested.to_owned()),
            target: set
                .first()
                .map_or_else(|| requested.to_owned(), |a| a.name.clone()),
            ready,
            region,
            upstream_host,
            apps,
            error,
            reason,
            expected_ms: match set.first() {
                Some(target) => expected(waker, &target.name).await,
                None => None,
            },
        })
    }
}

/// The usual wake time of `app` (the median of its recent wakes), `None`
/// when none was measured or the store cannot be read (the page then shows
/// no estimate: never a wrong one).
pub async fn expected(waker: &Waker, app: &str) -> Option<u64> {
    match waker.deps().wakes.recent_wakes(app).await {
        Ok(samples) => crate::registry::expected_ms(&samples),
        Err(e) => {
            tracing::debug!(error = %e, "no wake-time estimate");
            None
        }
    }
}

/// False only when `app` is known not to exist: not in the registry and not
/// found by the region lookup (the locator's cache; at most one listing of
/// the regions per negative TTL, shared by every name). Anything that
/// cannot be told (registry or Scalingo unreachable) counts as existing.
async fn exists(waker: &Waker, app: &str) -> bool {
    if !matches!(waker.registry().get(app).await, Ok(None)) {
        return true;
    }
    !matches!(waker.deps().platform.locate(app).await, Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_browsers_of_waiting_page_apps_not_running_get_the_page() {
        use Client::{Api, Browser};
        use Strategy::{Blocking, WaitingPage};
        assert!(shows_waiting_page(WaitingPage, Browser, false));
        assert!(!shows_waiting_page(WaitingPage, Browser, true));
        assert!(!shows_waiting_page(WaitingPage, Api, false));
        assert!(!shows_waiting_page(Blocking, Browser, false));
        assert!(!shows_waiting_page(Blocking, Api, false));
    }

    #[test]
    fn clients_parse_strictly() {
        assert_eq!(
            serde_json::from_str::<Client>(r#""browser""#).unwrap(),
            Client::Browser
        );
        assert_eq!(
            serde_json::from_str::<Client>(r#""api""#).unwrap(),
            Client::Api
        );
        assert!(serde_json::from_str::<Client>(r#""Browser""#).is_err());
    }

    #[test]
    fn one_background_wake_per_app_and_outcomes_are_kept() {
        let w = Waiting::new();
        assert!(w.start("shop-front"));
        assert!(!w.start("shop-front"), "one is running");
        assert!(matches!(w.outcome("shop-front"), Some(Outcome::Pending)));
        w.finish(
            "shop-front",
            Outcome::Failed {
                code: ErrorCode::WakeFailed,
                reason: "crashed".into(),
            },
        );
        assert!(matches!(
            w.outcome("shop-front"),
            Some(Outcome::Failed {
                code: ErrorCode::WakeFailed,
                ..
            })
        ));
        assert!(w.start("shop-front"), "a finished wake can start again");
        assert!(matches!(w.outcome("shop-front"), Some(Outcome::Pending)));
        assert!(w.outcome("other-app").is_none());
    }

    #[test]
    fn answers_serialize_as_documented() {
        let a = WaitingAnswer {
            waiting: true,
            app: Some("shop-front".into()),
            target: "shop-front".into(),
            linked_apps: vec!["shop-api-1".into()],
            expected_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"waiting": true, "app": "shop-front", "target": "shop-front", "linked_apps": ["shop-api-1"]})
        );
        let s = StatusAnswer {
            app: Some("shop-front".into()),
            target: "shop-front".into(),
            ready: false,
            region: None,
            upstream_host: None,
            apps: vec![AppStatus {
                app: "shop-front".into(),
                state: AppState::Failed,
            }],
            error: Some(ErrorCode::WakeFailed),
            reason: None,
            expected_ms: None,
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"app": "shop-front", "target": "shop-front", "ready": false, "apps": [{"app": "shop-front", "state": "failed"}], "error": "wake_failed"})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_wake_shows_its_reason_and_its_backoff_reads_failed() {
        use crate::platform::memory::InProcessPlatform;
        let platform = Arc::new(InProcessPlatform::new(&["osc-fr1"]));
        platform.add_app("osc-fr1", "shop-front", &[("web", 0)]);
        platform.set_boot("shop-front", Duration::from_secs(3));
        platform.set_operation_error("shop-front", "container web-1 exited with 1");
        let rules = crate::config::parse_rules(
            std::path::Path::new("paastis.yml"),
            "rules:\n  - pattern: '^shop-front$'\n    strategy: waiting_page\n",
            15,
        )
        .expect("rules");
        let deps = crate::deps::Deps::in_memory(platform, rules, Duration::from_secs(600));
        let waker = Waker::new(deps, Duration::from_secs(60));
        let waiting = Arc::new(Waiting::new());
        let page = waiting.begin(&waker, "shop-front", Some("osc-fr1"), false);
        assert!(matches!(page, Ok(Some(_))), "{page:?}");
        let status = loop {
            let status = waiting.status(&waker, "shop-front").await.expect("status");
            if status.error.is_some() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(status.error, Some(ErrorCode::WakeFailed));
        assert!(
            status
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("exited with 1")),
            "{status:?}"
        );
        // An instance that did not run the wake (a fresh page state) shows
        // the back-off as the failure, not as an app to wake again.
        let elsewhere = Waiting::new();
        let status = elsewhere
            .status(&waker, "shop-front")
            .await
            .expect("status");
        assert_eq!(status.apps[0].state, AppState::Failed);
        assert_eq!(status.error, Some(ErrorCode::WakeFailed));
        assert!(status.reason.is_some_and(|r| r.contains("exited with 1")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_app_that_exists_nowhere_is_unknown_not_asleep() {
        use crate::platform::memory::InProcessPlatform;
        let platform = Arc::new(InProcessPlatform::new(&["osc-fr1"]));
        platform.add_app("osc-fr1", "shop-front", &[("web", 0)]);
        let rules =
            crate::config::parse_rules(std::path::Path::new("paastis.yml"), "", 15).expect("rules");
        let deps = crate::deps::Deps::in_memory(platform, rules, Duration::from_secs(600));
        let waker = Waker::new(deps, Duration::from_secs(60));
        let waiting = Waiting::new();
        let status = waiting.status(&waker, "nobody-here").await.expect("status");
        assert_eq!(status.apps[0].state, AppState::Failed);
        assert_eq!(status.error, Some(ErrorCode::UnknownApp));
        assert!(!status.ready);
        // An app that exists but sleeps is asleep: the page wakes it.
        let status = waiting.status(&waker, "shop-front").await.expect("status");
        assert_eq!(status.apps[0].state, AppState::Asleep);
        assert_eq!(status.error, None);
    }
}

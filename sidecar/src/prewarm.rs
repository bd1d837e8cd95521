//! Prewarm: wakes sleeping apps shortly before one of their keep-awake
//! windows opens (`prewarm: MINUTES` in `paastis.yml`), so that the first
//! visitor of the morning finds them running.
//!
//! - Candidates are the apps the registry knows (the scheduler discovers
//!   every running app it manages, and keeps the ones it paused), managed,
//!   whose rules give windows and `prewarm`, and whose window opens within
//!   `prewarm` minutes or is open ([`plan`], pure).
//! - Each occurrence of a window prewarms an app once, across instances: a
//!   lease named after the app and the occurrence's start, held until the
//!   occurrence ends, is taken before the wake. An app known awake (the
//!   awake cache) costs nothing.
//! - Never a burst: one wake at a time, [`SPACING`] apart, through a waker
//!   whose Scalingo calls have the budget's `background` rank (they yield to
//!   the wakes users wait on).

use std::sync::Arc;
use std::time::Duration;

use paastis_rules::AppRules;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::config::AppScope;
use crate::keep_awake;
use crate::registry::AppRecord;
use crate::wake::Waker;

/// How often the candidates are computed again.
pub const EVERY: Duration = Duration::from_secs(30);
/// Least time between two prewarm wakes (one at a time, never a burst).
pub const SPACING: Duration = Duration::from_secs(5);

/// An app to prewarm for the occurrence of its window that opens at
/// `start_ms` and ends at `end_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub app: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Due {
    /// The lease that makes this occurrence's prewarm happen once.
    pub fn lease(&self) -> String {
        format!("prewarm:{}:{}", self.app, self.start_ms)
    }
}

/// The apps among `known` to prewarm at `now_ms`, the window that opens
/// first first (then by name).
pub fn plan(known: &[AppRecord], rules: &AppRules, scope: AppScope<'_>, now_ms: u64) -> Vec<Due> {
    let mut due: Vec<Due> = known
        .iter()
        .filter(|r| scope.is_managed(&r.app))
        .filter_map(|r| {
            let resolved = rules.resolve(&r.app).ok()?;
            let windows = keep_awake::parse_all(&resolved.keep_awake);
            if !keep_awake::prewarm_due(&windows, resolved.prewarm_minutes, now_ms) {
                return None;
            }
            let next = keep_awake::next_interval(&windows, now_ms)?;
            Some(Due {
                app: r.app.clone(),
                start_ms: next.start_ms,
                end_ms: next.end_ms,
            })
        })
        .collect();
    due.sort_by(|a, b| (a.start_ms, &a.app).cmp(&(b.start_ms, &b.app)));
    due
}

/// Runs the prewarm passes until `stop`.
pub struct Prewarmer {
    /// A waker whose platform calls have the background rank.
    waker: Arc<Waker>,
}

impl Prewarmer {
    pub fn new(waker: Arc<Waker>) -> Self {
        Self { waker }
    }

    /// One pass at `now_ms`: wakes the due apps one at a time. Returns the
    /// apps it woke.
    pub async fn pass(&self, now_ms: u64, stop: &CancellationToken) -> Vec<String> {
        let deps = self.waker.deps();
        let known = match deps.registry.list().await {
            Ok(known) => known,
            Err(e) => {
                warn!(error = %e, "prewarm: registry unreachable; nothing prewarmed");
                return Vec::new();
            }
        };
        let mut woken = Vec::new();
        for due in plan(&known, &deps.rules, deps.scope(), now_ms) {
            if stop.is_cancelled() {
                break;
            }
            if deps.awake.fresh(&due.app).is_some() {
                continue;
            }
            let ttl = Duration::from_millis(due.end_ms.saturating_sub(now_ms).max(1_000));
            // A holder of its own, never the instance's name alone: a lease
            // extends for the holder that has it, and a later pass of this
            // instance must find the occurrence taken.
            let holder = format!("{}:{}", deps.instance, fastrand::u64(..));
            match deps.coordinator.acquire(&due.lease(), &holder, ttl).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    warn!(app = %due.app, error = %e, "prewarm: lease unavailable; skipped");
                    continue;
                }
            }
            match self.waker.wake(&due.app, None).await {
                Ok(answer) => {
                    info!(app = %due.app, window_start = %keep_awake::rfc3339(due.start_ms), waited_ms = answer.waited_ms, "prewarmed before its keep-awake window");
                    woken.push(due.app.clone());
                }
                Err(e) => {
                    warn!(app = %due.app, error = %e, "prewarm wake failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(SPACING) => {}
            }
        }
        woken
    }

    /// Passes every [`EVERY`] until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.pass(now_ms(), &stop).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::config::ManagedApps;

    static NOTHING_IGNORED: BTreeSet<String> = BTreeSet::new();
    static EVERY_APP: ManagedApps = ManagedApps::all();

    fn scope() -> AppScope<'static> {
        AppScope {
            ignored: &NOTHING_IGNORED,
            managed: &EVERY_APP,
        }
    }

    const MINUTE: u64 = 60_000;
    /// Monday 5 January 2026, 08:00 UTC.
    const MONDAY_8: u64 = 1_767_600_000_000;

    #[test]
    fn apps_are_due_within_prewarm_of_their_window_first_opening_first() {
        let rules = crate::config::parse_rules(
            Path::new("paastis.yml"),
            "rules:\n  - pattern: '^early-'\n    keep_awake: ['Mon-Fri 08:10-18:00 UTC']\n    prewarm: 15\n  - pattern: '^late-'\n    keep_awake: ['Mon-Fri 08:20-18:00 UTC']\n    prewarm: 30\n  - pattern: '^cold-'\n    keep_awake: ['Mon-Fri 08:05-18:00 UTC']\n  - pattern: '^far-'\n    keep_awake: ['Mon-Fri 09:00-18:00 UTC']\n    prewarm: 10\n",
            15,
        )
        .unwrap();
        let known: Vec<AppRecord> = ["far-app", "late-app", "cold-app", "early-app", "plain-app"]
            .into_iter()
            .map(AppRecord::blank)
            .collect();
        let due = plan(&known, &rules, scope(), MONDAY_8);
        let names: Vec<&str> = due.iter().map(|d| d.app.as_str()).collect();
        assert_eq!(
            names,
            ["early-app", "late-app"],
            "no prewarm, too far, no window: not due"
        );
        assert_eq!(due[0].start_ms, MONDAY_8 + 10 * MINUTE);
        assert_eq!(
            due[0].lease(),
            format!("prewarm:early-app:{}", MONDAY_8 + 10 * MINUTE)
        );
        // Still due once open (the lease keeps it to one wake per occurrence).
        assert_eq!(
            plan(&known, &rules, scope(), MONDAY_8 + 60 * MINUTE).len(),
            3
        );
        // Saturday: nothing.
        assert!(plan(&known, &rules, scope(), MONDAY_8 + 5 * 24 * 60 * MINUTE).is_empty());
        let ignored: BTreeSet<String> = ["early-app".to_owned()].into();
        let everything = ManagedApps::all();
        let only_late = plan(
            &known,
            &rules,
            AppScope {
                ignored: &ignored,
                managed: &everything,
            },
            MONDAY_8,
        );
        assert_eq!(only_late.len(), 1, "unmanaged apps are never woken");
    }
}

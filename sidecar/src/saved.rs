//! Container-hours saved: how long each app slept times the containers it
//! would otherwise have run, from the registry's event log (a `paused`
//! event carries the formation the pause remembered, a `woken` event when
//! and how long the wake took).
//!
//! Pure: the admin API reads the log and calls [`container_hours_saved`].
//! The log is bounded ([`crate::registry::EVENTS_CAPACITY`]), so the figure
//! covers the log's span only: an app whose `paused` event has left the log
//! counts from nothing, which can only under-count.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::registry::{Event, EventKind};

/// What one app saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AppSaved {
    /// Container-seconds not run: for each sleep, its length times the
    /// containers of the formation the pause remembered.
    pub container_seconds: u64,
    /// When the current sleep began; `None` when the log shows it awake
    /// (or shows nothing).
    pub asleep_since_ms: Option<u64>,
}

impl AppSaved {
    /// Container-hours, rounded to the hundredth.
    pub fn container_hours(&self) -> f64 {
        hours(self.container_seconds)
    }
}

/// Container-seconds as hours, rounded to the hundredth.
pub fn hours(container_seconds: u64) -> f64 {
    (container_seconds as f64 / 36.0).round() / 100.0
}

/// Every app the log shows paused at least once, with what it saved up to
/// `now_ms`.
///
/// Invariants: events are taken in time order whatever the slice's order
/// (the log is newest first); a sleep runs from its `paused` event to the
/// start of the wake that ended it (`at_ms - duration_ms` of the `woken`
/// event, never before the pause), to a `forgotten` event, or to `now_ms`;
/// a second `paused` while asleep (another instance, a retry) does not
/// restart the sleep; `would_pause` (dry run) saves nothing; an app paused
/// with an empty formation saved nothing; no sleep counts past `now_ms`.
pub fn container_hours_saved(events: &[Event], now_ms: u64) -> BTreeMap<String, AppSaved> {
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered.sort_by_key(|e| e.at_ms);
    // Per app: what it saved so far, and the open sleep (since, containers).
    let mut apps: BTreeMap<String, (AppSaved, Option<(u64, u64)>)> = BTreeMap::new();
    let close = |saved: &mut AppSaved, sleep: &mut Option<(u64, u64)>, end: u64| {
        if let Some((since, containers)) = sleep.take() {
            let end = end.clamp(since, now_ms.max(since));
            saved.container_seconds += (end - since) / 1_000 * containers;
        }
    };
    for event in ordered {
        match &event.kind {
            EventKind::Paused { formation } => {
                let (_, sleep) = apps.entry(event.app.clone()).or_default();
                if sleep.is_none() {
                    let containers = formation.iter().map(|(_, n)| u64::from(*n)).sum();
                    *sleep = Some((event.at_ms, containers));
                }
            }
            EventKind::Woken { duration_ms } => {
                if let Some((saved, sleep)) = apps.get_mut(&event.app) {
                    close(saved, sleep, event.at_ms.saturating_sub(*duration_ms));
                }
            }
            EventKind::Forgotten => {
                if let Some((saved, sleep)) = apps.get_mut(&event.app) {
                    close(saved, sleep, event.at_ms);
                }
            }
            _ => {}
        }
    }
    apps.into_iter()
        .map(|(app, (mut saved, mut sleep))| {
            saved.asleep_since_ms = sleep.map(|(since, _)| since);
            close(&mut saved, &mut sleep, now_ms);
            (app, saved)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn event(at_ms: u64, app: &str, kind: EventKind) -> Event {
        Event {
            at_ms,
            app: app.to_owned(),
            instance: "pod-1".to_owned(),
            kind,
        }
    }

    fn paused(at_ms: u64, app: &str, formation: &[(&str, u32)]) -> Event {
        event(
            at_ms,
            app,
            EventKind::Paused {
                formation: formation.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            },
        )
    }

    fn woken(at_ms: u64, app: &str, duration_ms: u64) -> Event {
        event(at_ms, app, EventKind::Woken { duration_ms })
    }

    #[test]
    fn a_sleep_counts_its_length_times_the_remembered_containers() {
        let events = [
            paused(H, "shop", &[("web", 2), ("worker", 1)]),
            woken(3 * H + 20_000, "shop", 20_000),
        ];
        let saved = container_hours_saved(&events, 10 * H);
        assert_eq!(saved["shop"].container_seconds, 2 * 3 * 3_600);
        assert_eq!(saved["shop"].container_hours(), 6.0);
        assert_eq!(saved["shop"].asleep_since_ms, None);
    }

    #[test]
    fn the_log_order_does_not_matter_and_sleeps_add_up() {
        let mut events = vec![
            paused(0, "shop", &[("web", 1)]),
            woken(H, "shop", 0),
            paused(2 * H, "shop", &[("web", 3)]),
            woken(3 * H, "shop", 0),
        ];
        let forward = container_hours_saved(&events, 4 * H);
        events.reverse();
        assert_eq!(container_hours_saved(&events, 4 * H), forward);
        assert_eq!(forward["shop"].container_hours(), 4.0);
    }

    #[test]
    fn an_app_still_asleep_counts_up_to_now_and_says_since_when() {
        let events = [paused(H, "blog", &[("web", 1)])];
        let saved = container_hours_saved(&events, 3 * H + 1_800_000);
        assert_eq!(saved["blog"].container_hours(), 2.5);
        assert_eq!(saved["blog"].asleep_since_ms, Some(H));
        // A clock behind the log never gives a negative or huge figure.
        assert_eq!(
            container_hours_saved(&events, 0)["blog"].container_seconds,
            0
        );
    }

    #[test]
    fn a_second_pause_while_asleep_does_not_restart_the_sleep() {
        let events = [
            paused(0, "shop", &[("web", 1)]),
            paused(H, "shop", &[("web", 1)]),
            woken(2 * H, "shop", 0),
        ];
        assert_eq!(
            container_hours_saved(&events, 5 * H)["shop"].container_hours(),
            2.0
        );
    }

    #[test]
    fn dry_runs_empty_formations_wakes_without_pause_and_forgotten_apps() {
        let events = [
            event(
                0,
                "dry",
                EventKind::WouldPause {
                    max_idle_minutes: 5,
                },
            ),
            paused(0, "empty", &[]),
            woken(H, "never-paused", 1_000),
            paused(0, "gone", &[("web", 2)]),
            event(H, "gone", EventKind::Forgotten),
        ];
        let saved = container_hours_saved(&events, 10 * H);
        assert!(!saved.contains_key("dry"));
        assert!(!saved.contains_key("never-paused"));
        assert_eq!(saved["empty"].container_seconds, 0);
        assert_eq!(saved["gone"].container_hours(), 2.0);
        assert_eq!(saved["gone"].asleep_since_ms, None);
    }

    #[test]
    fn a_wake_longer_than_the_sleep_saves_nothing() {
        let events = [
            paused(H, "shop", &[("web", 4)]),
            woken(H + 5_000, "shop", 60_000),
        ];
        assert_eq!(
            container_hours_saved(&events, 2 * H)["shop"].container_seconds,
            0
        );
    }
}

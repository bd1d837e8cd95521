//! The decisions of a scheduler pass, without I/O: given what the platform
//! listed, what the registry holds, the rules and the clock, which apps to
//! discover, forget and pause ([`plan_pass`]).
//!
//! Rules of a pass:
//! - a running app the registry does not know is discovered (its idle clock
//!   starts now);
//! - a stopped app the registry knows without a formation to restore is
//!   forgotten (someone else stopped it);
//! - a running app last accessed at least its max idle time ago is paused,
//!   oldest first. Max idle `0` (or a name the rules cannot resolve) means
//!   never;
//! - an app inside one of its rules' keep-awake windows is never paused
//!   (checked at the pass's instant; the next pass after the window closes
//!   pauses it if it is idle);
//! - unmanaged apps (ignored, or not matching `PAASTIS_MANAGED_APPS`) are
//!   never discovered, forgotten nor paused, even when the registry knows
//!   them (registered before the setting changed);
//! - an app listed without a status (Scalingo's list entries may lack it)
//!   may be running, so it is a pause candidate, unless a pause already
//!   found it with nothing running and it has had no access since: that
//!   app costs one formation read, not one per pass.

use std::collections::{BTreeMap, HashMap};

use paastis_rules::AppRules;

use crate::config::AppScope;
use crate::keep_awake;
use crate::platform::{ContainerAmount, ContainerType};
use crate::registry::{AppMeta, AppRecord};

/// Where an app was listed, and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub region: String,
    /// Running, or may be (no status listed).
    pub running: bool,
    /// Whether the listing gave a status at all.
    pub status_known: bool,
}

/// Apps a pause found with nothing running, by name, with the last access
/// they had then (see the module's rules).
pub type SeenAsleep = HashMap<String, u64>;

/// Every app the platform listed, by name (an app listed in two regions
/// keeps the last one listed).
pub type Listing = BTreeMap<String, Listed>;

/// An app to pause, with the limit its idleness is checked against again
/// right before the pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseCandidate {
    pub app: String,
    pub region: String,
    pub max_idle_minutes: u64,
}

/// What one pass is to do, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassPlan {
    /// Running apps to register, by name.
    pub discover: Vec<(String, AppMeta)>,
    /// Stopped apps with nothing to restore, by name.
    pub forget: Vec<String>,
    /// Idle apps, least recently accessed first.
    pub pause: Vec<PauseCandidate>,
}

/// The idle limit of `app` in minutes; `0` (never) when the rules cannot
/// resolve it: keeping an app is the safe side.
pub fn max_idle_minutes(rules: &AppRules, app: &str) -> u64 {
    rules.resolve(app).map_or(0, |r| r.max_idle_minutes)
}

/// Whether `app`'s rules keep it awake at `now_ms` (inside one of its
/// `keep_awake` windows).
pub fn kept_awake(rules: &AppRules, app: &str, now_ms: u64) -> bool {
    rules.resolve(app).is_ok_and(|r| {
        !r.keep_awake.is_empty()
            && keep_awake::is_inside(&keep_awake::parse_all(&r.keep_awake), now_ms)
    })
}

/// Whether an app last accessed at `last_access_ms` is idle beyond
/// `max_idle_minutes` at `now_ms`. Never with a limit of 0.
pub fn is_idle(last_access_ms: u64, now_ms: u64, max_idle_minutes: u64) -> bool {
    max_idle_minutes > 0
        && now_ms.saturating_sub(last_access_ms) >= max_idle_minutes.saturating_mul(60_000)
}

/// Plans a pass at `now_ms` (see the module's rules). `known` is the
/// registry as read at the start of the pass.
pub fn plan_pass(
    listing: &Listing,
    known: &[AppRecord],
    rules: &AppRules,
    scope: AppScope<'_>,
    asleep: &SeenAsleep,
    now_ms: u64,
) -> PassPlan {
    let records: BTreeMap<&str, &AppRecord> = known.iter().map(|r| (r.app.as_str(), r)).collect();
    let mut plan = PassPlan::default();
    for (app, listed) in listing {
        if !scope.is_managed(app) {
            continue;
        }
        match (records.get(app.as_str()), listed.running) {
            (None, true) => plan.discover.push((
                app.clone(),
                AppMeta {
                    region: listed.region.clone(),
                    max_idle_minutes: max_idle_minutes(rules, app),
                    linked_apps: rules
                        .resolve(app)
                        .map(|r| r.linked_apps)
                        .unwrap_or_default(),
                },
            )),
            (Some(record), false) if record.formation.is_empty() => {
                plan.forget.push(app.clone());
            }
            _ => {}
        }
    }
    let mut idle: Vec<&AppRecord> = known
        .iter()
        .filter(|r| r.last_access_ms <= now_ms && scope.is_managed(&r.app))
        .collect();
    idle.sort_by(|a, b| (a.last_access_ms, &a.app).cmp(&(b.last_access_ms, &b.app)));
    for record in idle {
        let Some(Listed {
            region,
            running: true,
            status_known,
        }) = listing.get(&record.app)
        else {
            continue;
        };
        if !status_known && asleep.get(&record.app) == Some(&record.last_access_ms) {
            continue;
        }
        let max_idle = max_idle_minutes(rules, &record.app);
        if is_idle(record.last_access_ms, now_ms, max_idle)
            && !kept_awake(rules, &record.app, now_ms)
        {
            plan.pause.push(PauseCandidate {
                app: record.app.clone(),
                region: region.clone(),
                max_idle_minutes: max_idle,
            });
        }
    }
    plan
}

/// The formation to remember before a pause (the types that run) and the
/// changes that pause the app (each of them to 0).
pub fn pause_changes(formation: &[ContainerType]) -> (Vec<(String, u32)>, Vec<ContainerAmount>) {
    let running: Vec<(String, u32)> = formation
        .iter()
        .filter(|c| c.amount > 0)
        .map(|c| (c.name.clone(), c.amount))
        .collect();
    let changes = running
        .iter()
        .map(|(name, _)| ContainerAmount::new(name.clone(), 0))
        .collect();
    (running, changes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::collections::BTreeSet;

    use super::*;
    use crate::config::ManagedApps;

    static NOTHING_IGNORED: BTreeSet<String> = BTreeSet::new();
    static EVERY_APP: ManagedApps = ManagedApps::all();

    fn all() -> AppScope<'static> {
        AppScope {
            ignored: &NOTHING_IGNORED,
            managed: &EVERY_APP,
        }
    }

    const MINUTE: u64 = 60_000;
    const NOW: u64 = 1_000 * MINUTE;

    fn rules() -> AppRules {
        crate::config::parse_rules(
            Path::new("paastis.yml"),
            "rules:\n  - pattern: '^keep-'\n    app_max_idle_time: 0\n  - pattern: '^shop-front$'\n    linked_apps: ['shop-api']\n  - pattern: '^quick-'\n    app_max_idle_time: 5\n",
            15,
        )
        .expect("rules")
    }

    fn listing(apps: &[(&str, bool)]) -> Listing {
        apps.iter()
            .map(|(name, running)| {
                (
                    (*name).to_owned(),
                    Listed {
                        region: "osc-fr1".to_owned(),
                        running: *running,
                        status_known: true,
                    },
                )
            })
            .collect()
    }

    fn record(app: &str, idle_minutes: u64, formation: &[(&str, u32)]) -> AppRecord {
        AppRecord {
            last_access_ms: NOW - idle_minutes * MINUTE,
            formation: formation
                .iter()
                .map(|(n, a)| ((*n).to_owned(), *a))
                .collect(),
            ..AppRecord::blank(app)
        }
    }

    fn names(pause: &[PauseCandidate]) -> Vec<&str> {
        pause.iter().map(|c| c.app.as_str()).collect()
    }

    #[test]
    fn running_apps_unknown_to_the_registry_are_discovered_with_their_rules() {
        let plan = plan_pass(
            &listing(&[("shop-front", true), ("stopped-new", false)]),
            &[],
            &rules(),
            all(),
            &SeenAsleep::new(),
            NOW,
        );
        assert_eq!(
            plan.discover,
            [(
                "shop-front".to_owned(),
                AppMeta {
                    region: "osc-fr1".to_owned(),
                    max_idle_minutes: 15,
                    linked_apps: vec!["shop-api".to_owned()],
                }
            )]
        );
        assert!(plan.forget.is_empty() && plan.pause.is_empty());
    }

    #[test]
    fn stopped_apps_are_forgotten_only_without_a_formation_to_restore() {
        let plan = plan_pass(
            &listing(&[("stopped-by-hand", false), ("paused-by-us", false)]),
            &[
                record("stopped-by-hand", 1, &[]),
                record("paused-by-us", 60, &[("web", 2)]),
            ],
            &rules(),
            all(),
            &SeenAsleep::new(),
            NOW,
        );
        assert_eq!(plan.forget, ["stopped-by-hand"]);
        assert!(plan.pause.is_empty(), "stopped apps are not paused again");
    }

    #[test]
    fn only_running_apps_idle_beyond_their_limit_are_paused_oldest_first() {
        let known = [
            record("busy-app", 14, &[]),
            record("idle-app", 15, &[]),
            record("older-app", 40, &[]),
            record("quick-app", 5, &[]),
            record("keep-app", 500, &[]),
            record("gone-app", 500, &[]),
        ];
        let plan = plan_pass(
            &listing(&[
                ("busy-app", true),
                ("idle-app", true),
                ("older-app", true),
                ("quick-app", true),
                ("keep-app", true),
            ]),
            &known,
            &rules(),
            all(),
            &SeenAsleep::new(),
            NOW,
        );
        assert_eq!(names(&plan.pause), ["older-app", "idle-app", "quick-app"]);
        assert_eq!(plan.pause[2].max_idle_minutes, 5);
        assert!(plan.discover.is_empty() && plan.forget.is_empty());
    }

    #[test]
    fn an_app_inside_a_keep_awake_window_is_never_paused() {
        // NOW is Thursday 1 January 1970, 16:40 UTC.
        let rules = crate::config::parse_rules(
            Path::new("paastis.yml"),
            "rules:\n  - pattern: '^office-'\n    keep_awake: ['Mon-Fri 16:00-17:00 UTC']\n  - pattern: '^evening-'\n    keep_awake: ['Thu 17:00-18:00 UTC', 'Wed 16:00-17:00 Europe/Paris']\n  - pattern: '^night-'\n    keep_awake: ['Thu 01:00-00:30 UTC']\n",
            15,
        )
        .expect("rules");
        let plan = plan_pass(
            &listing(&[
                ("office-app", true),
                ("evening-app", true),
                ("night-app", true),
            ]),
            &[
                record("office-app", 600, &[]),
                record("evening-app", 600, &[]),
                record("night-app", 600, &[]),
            ],
            &rules,
            all(),
            &SeenAsleep::new(),
            NOW,
        );
        assert_eq!(
            names(&plan.pause),
            ["evening-app"],
            "inside a window (one spanning midnight too): kept"
        );
        let later = plan_pass(
            &listing(&[("office-app", true)]),
            &[record("office-app", 600, &[])],
            &rules,
            all(),
            &SeenAsleep::new(),
            NOW + 20 * MINUTE,
        );
        assert_eq!(names(&later.pause), ["office-app"], "the window has closed");
    }

    #[test]
    fn ignored_apps_and_future_accesses_are_left_alone() {
        let ignored: BTreeSet<String> = ["idle-app".to_owned(), "new-app".to_owned()].into();
        let everything = ManagedApps::all();
        let mut future = record("future-app", 0, &[]);
        future.last_access_ms = NOW + MINUTE;
        let plan = plan_pass(
            &listing(&[("idle-app", true), ("new-app", true), ("future-app", true)]),
            &[record("idle-app", 60, &[]), future],
            &rules(),
            AppScope {
                ignored: &ignored,
                managed: &everything,
            },
            &SeenAsleep::new(),
            NOW,
        );
        assert_eq!(plan, PassPlan::default());
    }

    #[test]
    fn an_app_listed_without_status_is_read_again_only_after_an_access() {
        let mut listed = listing(&[("sparse-app", true), ("other-app", true)]);
        for l in listed.values_mut() {
            l.status_known = false;
        }
        let known = [record("sparse-app", 60, &[]), record("other-app", 60, &[])];
        // A pause found `sparse-app` asleep, at the access it still has.
        let asleep: SeenAsleep = [("sparse-app".to_owned(), NOW - 60 * MINUTE)].into();
        let plan = plan_pass(&listed, &known, &rules(), all(), &asleep, NOW);
        assert_eq!(names(&plan.pause), ["other-app"]);
        // Accessed since (and idle again): a candidate once more.
        let known = [record("sparse-app", 30, &[]), record("other-app", 60, &[])];
        let plan = plan_pass(&listed, &known, &rules(), all(), &asleep, NOW);
        assert_eq!(names(&plan.pause), ["other-app", "sparse-app"]);
        // A listed status wins over what a pause saw.
        for l in listed.values_mut() {
            l.status_known = true;
        }
        let known = [record("sparse-app", 60, &[]), record("other-app", 60, &[])];
        let plan = plan_pass(&listed, &known, &rules(), all(), &asleep, NOW);
        assert_eq!(names(&plan.pause), ["other-app", "sparse-app"]);
    }

    #[test]
    fn idleness_needs_a_limit_and_the_whole_of_it() {
        assert!(is_idle(0, 15 * MINUTE, 15));
        assert!(!is_idle(1, 15 * MINUTE, 15));
        assert!(!is_idle(0, u64::MAX, 0));
        assert!(!is_idle(NOW + 1, NOW, 1), "an access after now is not idle");
    }

    #[test]
    fn a_pause_remembers_the_running_types_and_scales_them_to_zero() {
        let formation: Vec<ContainerType> = [("web", 2), ("worker", 1), ("clock", 0)]
            .iter()
            .map(|(name, amount)| ContainerType {
                name: (*name).to_owned(),
                amount: *amount,
                size: None,
            })
            .collect();
        let (remembered, changes) = pause_changes(&formation);
        assert_eq!(
            remembered,
            [("web".to_owned(), 2), ("worker".to_owned(), 1)]
        );
        assert_eq!(
            changes,
            [
                ContainerAmount::new("web", 0),
                ContainerAmount::new("worker", 0)
            ]
        );
    }
}

#[cfg(test)]
mod scope_tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::config::ManagedApps;

    const MINUTE: u64 = 60_000;
    const NOW: u64 = 1_000 * MINUTE;

    #[test]
    fn apps_not_matching_managed_apps_are_never_discovered_forgotten_nor_paused() {
        let rules = crate::config::parse_rules(Path::new("paastis.yml"), "", 15).expect("rules");
        let listing: Listing = [
            ("review-pr1", true),
            ("prod-api", true),
            ("prod-front", true),
            ("prod-old", false),
        ]
        .iter()
        .map(|(name, running)| {
            (
                (*name).to_owned(),
                Listed {
                    region: "osc-fr1".to_owned(),
                    running: *running,
                    status_known: true,
                },
            )
        })
        .collect();
        let idle = |app: &str| AppRecord {
            last_access_ms: NOW - 60 * MINUTE,
            ..AppRecord::blank(app)
        };
        // Registered before PAASTIS_MANAGED_APPS was set: still left alone.
        let known = [idle("prod-front"), idle("prod-old"), idle("review-pr1")];
        let ignored = BTreeSet::new();
        let managed = ManagedApps::matching("review-.*").unwrap();
        let scope = AppScope {
            ignored: &ignored,
            managed: &managed,
        };
        let plan = plan_pass(&listing, &known, &rules, scope, &SeenAsleep::new(), NOW);
        assert!(plan.discover.is_empty(), "{plan:?}");
        assert!(plan.forget.is_empty(), "{plan:?}");
        let paused: Vec<&str> = plan.pause.iter().map(|c| c.app.as_str()).collect();
        assert_eq!(paused, ["review-pr1"]);
    }
}

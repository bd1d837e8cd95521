//! The soak's judgements, pure functions of its logs (tested here): apps
//! paused while in use, activity the registry lost, and why a client saw
//! an error. Times are seconds since the soak's start.

use std::collections::{BTreeMap, HashMap};

use super::traffic::Record;

/// A scale to zero of an app, at the time of its scale call (the fake's
/// call log).
#[derive(Clone, Debug)]
pub struct Pause {
    pub app: String,
    pub at: f64,
}

/// A process killed (SIGKILL) at `down` and started again at `up`.
#[derive(Clone, Debug)]
pub struct Chaos {
    /// `Some(k)`: gateway instance k's sidecar; `None`: Redis.
    pub sidecar: Option<usize>,
    pub down: f64,
    pub up: f64,
}

impl Chaos {
    pub fn name(&self) -> String {
        match self.sidecar {
            Some(k) => format!("sidecar {k}"),
            None => "Redis".to_owned(),
        }
    }
}

/// A pause and the request that makes it wrong (or suspicious).
#[derive(Clone, Debug)]
pub struct Finding {
    pub pause: Pause,
    pub request: Record,
}

/// Pauses of apps in use: a request of the app was open at some point of
/// the `max_idle` seconds before the pause (it started before, and ended
/// after `pause - max_idle`). Requests that started within `race` seconds
/// before the pause (the filter's flush period and the scheduler's re-read
/// cannot have seen them) are returned apart, as raced, not in use.
/// One finding per pause (the latest request).
pub fn paused_in_use(
    pauses: &[Pause],
    records: &[Record],
    max_idle: f64,
    race: f64,
) -> (Vec<Finding>, Vec<Finding>) {
    let mut by_app: HashMap<&str, Vec<&Record>> = HashMap::new();
    for r in records {
        by_app.entry(r.app.as_str()).or_default().push(r);
    }
    let mut in_use = Vec::new();
    let mut raced = Vec::new();
    for pause in pauses {
        let Some(requests) = by_app.get(pause.app.as_str()) else {
            continue;
        };
        let latest = |keep: &dyn Fn(&Record) -> bool| {
            requests
                .iter()
                .filter(|r| keep(r))
                .max_by(|a, b| a.start.total_cmp(&b.start))
                .map(|r| Finding {
                    pause: pause.clone(),
                    request: (*r).clone(),
                })
        };
        let p = pause.at;
        if let Some(f) = latest(&|r| r.start <= p - race && r.end >= p - max_idle) {
            in_use.push(f);
        } else if let Some(f) = latest(&|r| r.start > p - race && r.start <= p) {
            raced.push(f);
        }
    }
    (in_use, raced)
}

/// An app whose last request the registry does not hold.
#[derive(Clone, Debug)]
pub struct Lost {
    pub app: String,
    /// Wall clock, ms since the epoch.
    pub last_request_ms: f64,
    pub registered_ms: Option<f64>,
}

/// What the activity check found.
#[derive(Default, Debug)]
pub struct ActivityCheck {
    /// Apps the app itself answered at least once, their last answered
    /// request started after Redis was last killed (what was written before
    /// is gone by design: Redis restarts empty).
    pub checked: usize,
    /// Apps whose last answered request started before Redis was last
    /// killed.
    pub excluded: usize,
    pub lost: Vec<Lost>,
}

/// Every app the app itself answered must be registered with a last access
/// no older than its last answered request's start minus `flush_ms`.
/// `registered` maps apps to their `last_access` (ms since the epoch);
/// `t0_ms` is the soak's start on the wall clock; `redis_killed` when Redis
/// was last killed (seconds since the start): a request after it was
/// flushed during the outage or after it, and the sidecars keep what they
/// cannot write until Redis is back.
pub fn lost_activity(
    records: &[Record],
    registered: &HashMap<String, Option<f64>>,
    t0_ms: f64,
    flush_ms: f64,
    redis_killed: Option<f64>,
) -> ActivityCheck {
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    for r in records.iter().filter(|r| r.from_app) {
        let entry = last.entry(r.app.as_str()).or_insert(r.start);
        *entry = entry.max(r.start);
    }
    let mut check = ActivityCheck::default();
    for (app, start) in last {
        if redis_killed.is_some_and(|killed| start < killed) {
            check.excluded += 1;
            continue;
        }
        check.checked += 1;
        let last_request_ms = t0_ms + start * 1000.0;
        let registered_ms = registered.get(app).copied().flatten();
        if registered_ms.is_none_or(|ms| ms < last_request_ms - flush_ms) {
            check.lost.push(Lost {
                app: app.to_owned(),
                last_request_ms,
                registered_ms,
            });
        }
    }
    check
}

/// Why a client most likely saw an error: the restart of its instance's
/// sidecar or of Redis around it, a pause of its app shortly before (the
/// 30 s scale-down), or nothing the soak did.
pub fn cause(record: &Record, chaos: &[Chaos], pauses: &[Pause]) -> String {
    // A restart disturbs the requests open while the process is down and
    // those of the next seconds (reconnections, the filter's cache).
    const AFTER: f64 = 10.0;
    let near = |c: &Chaos| record.end >= c.down - 1.0 && record.start <= c.up + AFTER;
    if let Some(c) = chaos
        .iter()
        .find(|c| c.sidecar == Some(record.instance) && near(c))
    {
        return format!("restart of its instance's {}", c.name());
    }
    if chaos.iter().any(|c| c.sidecar.is_none() && near(c)) {
        return "Redis restart".to_owned();
    }
    // A pause's scale-down lasts 30 s (the strict fake), and a wake must
    // wait for it.
    if pauses
        .iter()
        .any(|p| p.app == record.app && p.at <= record.end && p.at >= record.start - 40.0)
    {
        return "its app being paused".to_owned();
    }
    if chaos.iter().any(near) {
        return "restart of the other instance's sidecar".to_owned();
    }
    "none found".to_owned()
}

/// A turn of an app's lifecycle in the fake: woken (its `web` amount seen
/// leaving 0) or paused (its scale call to 0).
#[derive(Clone, Debug)]
pub struct Turn {
    pub app: String,
    pub up: bool,
    pub at: f64,
}

/// How long after its wake an app counts as awake: the fake's 2 s boot,
/// its router's page for 1 s after that, and the sidecar's readiness check.
pub const SETTLED_S: f64 = 5.0;

/// Whether `app` was awake at `t`: its last turn before `t` is a wake at
/// least [`SETTLED_S`] earlier (a pause counts from its scale call: a
/// request during the scale-down is one for a sleeping app, to be held
/// and woken). Every soak app starts asleep.
pub fn awake_at(turns: &[Turn], app: &str, t: f64) -> bool {
    turns
        .iter()
        .filter(|turn| turn.app == app && turn.at <= t)
        .max_by(|a, b| a.at.total_cmp(&b.at))
        .is_some_and(|turn| turn.up && turn.at <= t - SETTLED_S)
}

/// The class a request's error is counted in: its answer's class, and for
/// the gateway's `503 unavailable` (the sidecar could not be asked),
/// whether its app was awake (the filter must serve it: a defect) or
/// asleep (a first request that needed a wake).
pub fn error_class(record: &Record, turns: &[Turn]) -> String {
    if !record.class.starts_with("503 unavailable") {
        return record.class.clone();
    }
    if awake_at(turns, &record.app, record.start) {
        format!("{}, app awake", record.class)
    } else {
        format!("{}, app asleep", record.class)
    }
}

/// The most items of `times` (seconds, any order) within any window of
/// `window` seconds.
pub fn max_in_window(times: &[f64], window: f64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::super::traffic::Kind;
    use super::*;

    fn req(app: &str, start: f64, end: f64) -> Record {
        Record {
            app: app.into(),
            kind: Kind::Get,
            instance: 0,
            start,
            end,
            class: "ok".into(),
            from_app: true,
            detail: String::new(),
        }
    }

    fn pause(app: &str, at: f64) -> Pause {
        Pause {
            app: app.into(),
            at,
        }
    }

    #[test]
    fn a_pause_after_the_idle_time_is_fine_one_within_it_is_not() {
        let records = [req("a", 10.0, 10.1), req("b", 10.0, 10.1)];
        let pauses = [pause("a", 75.0), pause("b", 65.0)];
        let (in_use, raced) = paused_in_use(&pauses, &records, 60.0, 2.0);
        assert_eq!(in_use.len(), 1);
        assert_eq!(in_use[0].pause.app, "b");
        assert!(raced.is_empty());
    }

    #[test]
    fn an_open_stream_keeps_its_app_in_use() {
        let records = [req("a", 0.0, 100.0)];
        let (in_use, _) = paused_in_use(&[pause("a", 90.0)], &records, 60.0, 2.0);
        assert_eq!(in_use.len(), 1);
    }

    #[test]
    fn a_request_in_the_last_flush_is_raced_not_in_use() {
        let records = [req("a", 89.5, 89.6)];
        let (in_use, raced) = paused_in_use(&[pause("a", 90.0)], &records, 60.0, 2.0);
        assert!(in_use.is_empty());
        assert_eq!(raced.len(), 1);
        // Requests after the pause are neither.
        let (in_use, raced) = paused_in_use(&[pause("a", 80.0)], &records, 60.0, 2.0);
        assert!(in_use.is_empty() && raced.is_empty());
    }

    #[test]
    fn activity_is_lost_when_the_registry_is_older_than_the_last_request() {
        let records = [
            req("a", 10.0, 10.1),
            req("b", 10.0, 10.1),
            req("c", 1.0, 1.1),
        ];
        let registered = HashMap::from([
            ("a".to_owned(), Some(1_000_000.0 + 9_500.0)),
            ("b".to_owned(), Some(1_000_000.0 + 5_000.0)),
        ]);
        let check = lost_activity(&records, &registered, 1_000_000.0, 1_000.0, Some(5.0));
        assert_eq!(check.checked, 2);
        assert_eq!(check.excluded, 1);
        assert_eq!(check.lost.len(), 1);
        assert_eq!(check.lost[0].app, "b");
        // Not registered at all is lost too.
        let check = lost_activity(&records, &HashMap::new(), 0.0, 1_000.0, None);
        assert_eq!(check.lost.len(), 3);
    }

    #[test]
    fn causes_prefer_the_instance_then_redis_then_pauses() {
        let chaos = [
            Chaos {
                sidecar: Some(1),
                down: 100.0,
                up: 102.0,
            },
            Chaos {
                sidecar: None,
                down: 200.0,
                up: 201.0,
            },
        ];
        let mut r = req("a", 101.0, 101.5);
        assert_eq!(
            cause(&r, &chaos, &[]),
            "restart of the other instance's sidecar"
        );
        r.instance = 1;
        assert_eq!(
            cause(&r, &chaos, &[]),
            "restart of its instance's sidecar 1"
        );
        let r = req("a", 205.0, 206.0);
        assert_eq!(cause(&r, &chaos, &[]), "Redis restart");
        let r = req("a", 300.0, 301.0);
        assert_eq!(
            cause(&r, &chaos, &[pause("a", 290.0)]),
            "its app being paused"
        );
        assert_eq!(cause(&r, &chaos, &[pause("b", 290.0)]), "none found");
    }

    #[test]
    fn unavailable_is_split_by_the_apps_state_at_the_request() {
        let turn = |app: &str, up, at| Turn {
            app: app.into(),
            up,
            at,
        };
        let turns = [turn("a", true, 10.0), turn("a", false, 100.0)];
        assert!(!awake_at(&turns, "a", 5.0), "asleep before its first wake");
        assert!(!awake_at(&turns, "a", 12.0), "still booting");
        assert!(awake_at(&turns, "a", 50.0));
        assert!(!awake_at(&turns, "a", 110.0), "paused");
        assert!(!awake_at(&turns, "b", 50.0), "never woken");
        let mut r = req("a", 50.0, 50.1);
        r.class = "503 unavailable (Retry-After)".into();
        assert_eq!(
            error_class(&r, &turns),
            "503 unavailable (Retry-After), app awake"
        );
        r.start = 101.0;
        assert_eq!(
            error_class(&r, &turns),
            "503 unavailable (Retry-After), app asleep"
        );
        r.class = "503 router page".into();
        assert_eq!(error_class(&r, &turns), "503 router page");
    }

    #[test]
    fn windows_count_the_densest_minute() {
        assert_eq!(max_in_window(&[0.0, 10.0, 59.0, 61.0, 62.0], 60.0), 4);
        assert_eq!(max_in_window(&[], 60.0), 0);
    }
}

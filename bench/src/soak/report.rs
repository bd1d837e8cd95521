//! The section "Soak" of `BENCHMARKS.md`, written the way the bench writes
//! its sections (figures, then the method), and a short summary for the
//! terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::traffic::Kind;
use super::verdict::{self, Finding};
use super::{
    Outcome, Rss, APPS, FLUSH_MS, INSTANCES, MAX_IDLE_MINUTES, RACE_S, SCHEDULER_INTERVAL_S,
};
use crate::report::{f1, table};

const TITLE: &str = "Soak";

fn max_idle_s() -> f64 {
    MAX_IDLE_MINUTES as f64 * 60.0
}

/// `doc` (the current `BENCHMARKS.md`) with its section "Soak" replaced by
/// `section`, or added.
pub fn splice(doc: &str, section: &str) -> String {
    crate::report::splice(doc, TITLE, section)
}

fn findings(o: &Outcome) -> (Vec<Finding>, Vec<Finding>) {
    verdict::paused_in_use(&o.pauses, &o.records, max_idle_s(), RACE_S)
}

/// What a user must never meet, counted from the request log.
struct UserView {
    errors: usize,
    /// The platform's router page passed to a client.
    router_pages: usize,
    /// `503 unavailable` for an app that was awake (see
    /// [`verdict::awake_at`]): the filter must have served it.
    unavailable_awake: usize,
}

/// The error rate the lifecycle allows, in percent of all requests.
const MAX_ERROR_PERCENT: f64 = 0.2;

fn user_view(o: &Outcome) -> UserView {
    let failed = || o.records.iter().filter(|r| !r.ok());
    UserView {
        errors: failed().count(),
        router_pages: failed()
            .filter(|r| r.class.ends_with("router page"))
            .count(),
        unavailable_awake: failed()
            .filter(|r| verdict::error_class(r, &o.turns).ends_with("app awake"))
            .count(),
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The lines printed at the end of `make soak`.
pub fn summary(o: &Outcome) -> Vec<String> {
    let (in_use, raced) = findings(o);
    let ok = o.records.iter().filter(|r| r.ok()).count();
    let view = user_view(o);
    vec![
        format!("seed {}, {} min", o.seed, o.options_minutes),
        format!(
            "requests: {} ({} ok, {} errors)",
            o.records.len(),
            ok,
            o.records.len() - ok
        ),
        format!(
            "error rate {:.2} % (at most {MAX_ERROR_PERCENT} %); router pages {} (must be 0); \
             503 unavailable for an awake app {} (must be 0)",
            percent(view.errors, o.records.len()),
            view.router_pages,
            view.unavailable_awake
        ),
        format!(
            "wakes {}, pauses {}, restarts {}",
            o.wakes,
            o.pauses.len(),
            o.chaos.len()
        ),
        format!(
            "apps paused while in use: {} (must be 0); raced: {}",
            in_use.len(),
            raced.len()
        ),
        format!(
            "activity lost: {} of {} apps checked (must be 0)",
            o.activity.lost.len(),
            o.activity.checked
        ),
    ]
}

fn kib(v: Option<u64>) -> String {
    v.map_or("n/a".to_owned(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    })
}

fn at(s: f64) -> String {
    format!("{}:{:04.1}", (s / 60.0).floor() as u64, s % 60.0)
}

pub fn section(o: &Outcome) -> String {
    let mut body = String::new();
    let (in_use, raced) = findings(o);
    let ok = o.records.iter().filter(|r| r.ok()).count();
    let errors = o.records.len() - ok;
    let view = user_view(o);
    let _ = writeln!(
        body,
        "{} minutes, seed **{}** (`SOAK_SEED={} make soak` draws the same plan: traffic and restarts; \
         the processes' timing still varies). {} apps, {} gateway instances on one Redis, {} restarts.\n",
        o.options_minutes,
        o.seed,
        o.seed,
        APPS,
        INSTANCES,
        o.chaos.len()
    );
    body.push_str(&table(
        &["invariant", "must be", "this run"],
        &[
            vec![
                "apps paused while in use".into(),
                "0".into(),
                format!("**{}**", in_use.len()),
            ],
            vec![
                "activity lost (apps whose last request the registry does not hold)".into(),
                "0".into(),
                format!(
                    "**{}** of {} apps checked",
                    o.activity.lost.len(),
                    o.activity.checked
                ),
            ],
            vec![
                "the platform's router page passed to a client".into(),
                "0".into(),
                format!("**{}**", view.router_pages),
            ],
            vec![
                format!(
                    "`503 unavailable` for an app awake (woken at least {} s before the request, not paused since)",
                    verdict::SETTLED_S
                ),
                "0".into(),
                format!("**{}**", view.unavailable_awake),
            ],
            vec![
                "errors, of all requests".into(),
                format!("at most {MAX_ERROR_PERCENT} %"),
                format!("**{:.2} %** ({} of {})", percent(view.errors, o.records.len()), view.errors, o.records.len()),
            ],
        ],
    ));

    // Requests by kind and outcome.
    let mut kinds: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    for r in &o.records {
        let e = kinds.entry(r.kind).or_default();
        e.0 += 1;
        if r.ok() {
            e.1 += 1;
        }
    }
    let _ = writeln!(
        body,
        "\n### Requests\n\n{} requests: **{} ok** (the app's own answer, checked), **{} errors**.\n",
        o.records.len(),
        ok,
        errors
    );
    let rows: Vec<Vec<String>> = kinds
        .iter()
        .map(|(k, (n, good))| {
            vec![
                k.name().to_owned(),
                n.to_string(),
                good.to_string(),
                (n - good).to_string(),
            ]
        })
        .collect();
    body.push_str(&table(&["kind", "requests", "ok", "errors"], &rows));

    // Errors by class, with their likely cause.
    let mut classes: BTreeMap<String, (usize, BTreeMap<String, usize>, String)> = BTreeMap::new();
    for r in o.records.iter().filter(|r| !r.ok()) {
        let e = classes
            .entry(verdict::error_class(r, &o.turns))
            .or_default();
        e.0 += 1;
        *e.1.entry(verdict::cause(r, &o.chaos, &o.pauses))
            .or_default() += 1;
        if e.2.is_empty() {
            e.2 = format!(
                "{} {} at {}: {}",
                r.kind.name(),
                r.app,
                at(r.start),
                super::traffic::snippet(&r.detail)
            );
        }
    }
    if !classes.is_empty() {
        let _ = writeln!(
            body,
            "\nThe errors clients saw, by class, with what the soak did around them (a restart of the \
             sidecar of the instance the request went through, or of Redis, from 1 s before it was killed \
             to 10 s after it was up; else a pause of the app in the 40 s before the request). \
             `503 unavailable` (the filter could not ask its sidecar) is split by the app's state when the \
             request started: awake, or asleep (a first request that needed a wake):\n"
        );
        let mut sorted: Vec<_> = classes.into_iter().collect();
        sorted.sort_by_key(|(_, (n, _, _))| std::cmp::Reverse(*n));
        let rows: Vec<Vec<String>> = sorted
            .into_iter()
            .map(|(class, (n, causes, example))| {
                let causes = causes
                    .iter()
                    .map(|(c, n)| format!("{c}: {n}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                vec![
                    format!("`{class}`"),
                    n.to_string(),
                    causes,
                    example.replace('|', "\\|").replace('`', "'"),
                ]
            })
            .collect();
        body.push_str(&table(&["class", "requests", "around", "first one"], &rows));
    }

    // The lifecycle.
    let _ = writeln!(
        body,
        "\n### Lifecycle\n\n{} wakes and {} pauses seen in the fake (its apps' `web` amount leaving or \
         reaching 0), {} scale calls.\n",
        o.wakes,
        o.pauses.len(),
        o.scale_calls
    );
    let _ = writeln!(
        body,
        "**Apps paused while in use: {}.** A pause (at its scale call, from the fake's call log) is of \
         an app in use when one of the app's requests (from the soak's request log, whatever its \
         answer) was open at some point in the {} s before it and had started at least {} s before it.",
        in_use.len(),
        max_idle_s(),
        RACE_S
    );
    finding_rows(&mut body, &in_use);
    evidence(&mut body, o, &in_use);
    let _ = writeln!(
        body,
        "\nPauses that a request raced (it started less than {} s before the scale call: the filter \
         flushes activity every {} ms, and the scheduler re-reads the last access right before the \
         call): {}.",
        RACE_S,
        FLUSH_MS,
        raced.len()
    );
    finding_rows(&mut body, &raced);
    let _ = writeln!(
        body,
        "\n**Activity lost: {}.** After the traffic stopped (and 5 s for the last flushes), every app the \
         app itself answered must be registered in Redis (`last_access`) no earlier than its last such \
         request's start minus the flush period ({} ms). {} apps checked; {} left out because their last \
         answered request started before Redis was last killed (Redis restarts empty: what was written \
         before is gone by design, running apps are rediscovered; activity of the outage and after is \
         kept by the sidecars and must be there).",
        o.activity.lost.len(),
        FLUSH_MS,
        o.activity.checked,
        o.activity.excluded
    );
    if !o.activity.lost.is_empty() {
        let rows: Vec<Vec<String>> = o
            .activity
            .lost
            .iter()
            .map(|l| {
                vec![
                    l.app.clone(),
                    format!("{:.0}", l.last_request_ms),
                    l.registered_ms.map_or("not registered".into(), |r| {
                        format!("{:.0} ({:.1} s older)", r, (l.last_request_ms - r) / 1000.0)
                    }),
                ]
            })
            .collect();
        body.push('\n');
        body.push_str(&table(
            &["app", "last request (ms)", "registered last access (ms)"],
            &rows,
        ));
    }

    // Restarts.
    let _ = writeln!(body, "\n### Restarts\n");
    if o.chaos.is_empty() {
        let _ = writeln!(
            body,
            "None (the soak was too short for its first restart at 1:00)."
        );
    } else {
        let rows: Vec<Vec<String>> = o
            .chaos
            .iter()
            .map(|c| vec![c.name(), at(c.down), at(c.up), f1(c.up - c.down)])
            .collect();
        body.push_str(&table(
            &["killed (SIGKILL)", "at (m:s)", "up again", "down (s)"],
            &rows,
        ));
    }
    let _ = writeln!(
        body,
        "\nScalingo API: {} calls ({} in the busiest 60 s, the fake allowing {} and the sidecars budgeted \
         {}), {} answered 429.",
        o.api_calls,
        o.api_calls_peak_minute,
        super::FAKE_CALLS_PER_MINUTE,
        super::SIDECAR_CALLS_PER_MINUTE,
        o.rate_limited
    );

    // Memory.
    let _ = writeln!(body, "\n### Memory (RSS)\n");
    body.push_str(&table(
        &["process", "start", "end"],
        &rss_rows(&o.rss_start, &o.rss_end, &o.sidecar_runs),
    ));

    let _ = writeln!(
        body,
        "\nMethod: `make soak` (`paastis-bench soak`, `bench/src/soak/`), `SOAK_MINUTES` long (20 by default). \
         Two instances, each Envoy (2 workers, `-l warning`) on `envoy/fake.yaml.tmpl` with the shipped \
         filter configuration (`activity_flush_ms` {} ms) and the release sidecar (`REGISTRY_TYPE=redis`, \
         one private `redis-server`, one key prefix, `PAASTIS_SCHEDULER_INTERVAL={}`, \
         `PAASTIS_WAKE_TIMEOUT=60`), each sidecar on a fixed port so that its Envoy finds it again after a \
         restart. One `paastis.yml` rule gives the {} apps (`soak-app-01`..) `app_max_idle_time: {}` and \
         their region. The fake Scalingo is the strict one (30 s scale-downs, the router's 503 for 1 s after \
         a container runs, 2 s boots) but for its API budget, raised to {} calls a minute (the sidecars' \
         `PAASTIS_SCALINGO_CALLS_PER_MINUTE={}`): 50 apps that sleep and wake every few minutes need more \
         than Scalingo's 60; the budget under load is the `scalingo` section's subject. Every app starts \
         asleep; its users alternate quiet phases (70 to 180 s, one in five 10 to 50 s, shorter than the \
         idle time) and active phases of 15 to 60 s that open with a burst of 3 to 12 concurrent GETs over \
         both instances, then a request every 0.5 to 4 s: GETs (70 %), POST bodies of 1 B to 8 MiB whose \
         SHA-256 and length the app echoes (15 %), streams of 5 to 30 chunks 0.2 to 1.5 s apart (11 %), \
         WebSockets held 20 to 100 s with an echo every 5 s (4 %). From 1:00 to {} % of the run, every 30 \
         to 170 s one of the two sidecars or Redis is killed with SIGKILL and started again 0 to 3 s later \
         (Redis empty). A request is ok when the app itself answered 200 (its header) and the check of its \
         kind passed. The fake's RSS is that of the soak's own process (the fake runs in it, with the \
         clients); a restarted process's \"start\" is its first incarnation.\n",
        FLUSH_MS,
        SCHEDULER_INTERVAL_S,
        APPS,
        MAX_IDLE_MINUTES,
        super::FAKE_CALLS_PER_MINUTE,
        super::SIDECAR_CALLS_PER_MINUTE,
        (super::CHAOS_UNTIL * 100.0) as u32,
    );
    format!(
        "## {TITLE}\n\n{}\n_Took {:.0} s._\n\n",
        body.trim_end(),
        o.took.as_secs_f64()
    )
}

fn finding_rows(body: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.pause.app.clone(),
                at(f.pause.at),
                f.request.kind.name().to_owned(),
                format!("{} to {}", at(f.request.start), at(f.request.end)),
                format!("`{}`", f.request.class),
            ]
        })
        .collect();
    body.push('\n');
    body.push_str(&table(
        &["app", "paused at", "request", "open (m:s)", "its answer"],
        &rows,
    ));
}

/// The sidecars' log lines about each app paused in use, from its max idle
/// time before the pause to 2 s after (what the lead needs to find why).
fn evidence(body: &mut String, o: &Outcome, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    let stamp = |s: f64| {
        chrono::DateTime::from_timestamp_millis((o.t0_ms + s * 1000.0) as i64)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
            .unwrap_or_default()
    };
    let _ = writeln!(
        body,
        "\n<details><summary>The sidecars' log lines about these apps around each pause \
         (the run's logs are in `target/soak-run/`)</summary>\n\n```"
    );
    for f in findings {
        let (from, to) = (
            stamp(f.pause.at - max_idle_s() - 5.0),
            stamp(f.pause.at + 2.0),
        );
        let lines: Vec<&String> = o
            .logs
            .iter()
            .filter(|l| l.contains(f.pause.app.as_str()))
            .filter(|l| {
                let time = l.split("] ").nth(1).unwrap_or("").get(..23).unwrap_or("");
                time >= from.as_str() && time <= to.as_str()
            })
            .collect();
        let _ = writeln!(
            body,
            "# {} paused at {} ({} lines)",
            f.pause.app,
            at(f.pause.at),
            lines.len()
        );
        for l in lines.iter().rev().take(12).rev() {
            let _ = writeln!(body, "{}", l.chars().take(300).collect::<String>());
        }
    }
    let _ = writeln!(body, "```\n\n</details>");
}

fn rss_rows(start: &Rss, end: &Rss, runs: &[usize]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (k, (s, e)) in start.envoys.iter().zip(&end.envoys).enumerate() {
        rows.push(vec![format!("Envoy {k}"), kib(*s), kib(*e)]);
    }
    for (k, (s, e)) in start.sidecars.iter().zip(&end.sidecars).enumerate() {
        let runs = runs.get(k).copied().unwrap_or(1);
        rows.push(vec![
            format!("sidecar {k} ({} restarts)", runs.saturating_sub(1)),
            kib(*s),
            kib(*e),
        ]);
    }
    rows.push(vec![
        "redis-server".into(),
        kib(start.redis),
        kib(end.redis),
    ]);
    rows.push(vec![
        "fake Scalingo + soak clients (one process)".into(),
        kib(start.this),
        kib(end.this),
    ]);
    rows
}

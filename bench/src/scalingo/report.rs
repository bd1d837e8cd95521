//! The report of the `scalingo` benchmark: each run's table, what it
//! means, and its targets (met, missed, or only reported).

use super::{
    describe, first_error, served, status_counts, users_429_503, Broken, ColdWake, Crowd, Plan,
    Shared, CALLS_PER_MINUTE,
};
use crate::report::{f0, table, Target};
use crate::util::{self, max, median};
use paastis_e2e::fake::FakeConfig;

pub(super) fn cold_report(
    plan: &Plan,
    wakes: &[ColdWake],
    body: &mut String,
    targets: &mut Vec<Target>,
) {
    body.push_str(&format!(
        "### Calls and overhead of one cold wake ({:.0} s boot)\n\n\
         {} wake(s), each on a fresh fake, sidecar and Envoy. The app can answer {:.0} s after the scale \
         call (its boot, then the router's 1 s boot window); overhead = time to the app's answer − that.\n\n",
        plan.cold_boot.as_secs_f64(),
        wakes.len(),
        (plan.cold_boot + FakeConfig::default().front_boot_window).as_secs_f64(),
    ));
    let rows: Vec<Vec<String>> = wakes
        .iter()
        .map(|w| {
            vec![
                if served(&w.answer) {
                    "200 from the app".to_owned()
                } else {
                    w.answer.error.clone().unwrap_or_default()
                },
                f0(util::ms(w.answer.took)),
                if served(&w.answer) {
                    f0(w.overhead_ms())
                } else {
                    "–".to_owned()
                },
                describe(&w.calls),
                describe(&w.other_calls),
                format!("**{}**", w.calls_besides_exchange()),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "answer",
            "first answer (ms)",
            "overhead (ms)",
            "calls about the app",
            "other calls meanwhile",
            "calls (exchange aside)",
        ],
        &rows,
    ));
    for w in wakes.iter().filter(|w| !w.logs.is_empty()).take(1) {
        body.push_str(&format!(
            "\n<details><summary>Why (the gateway's logs)</summary>\n\n```\n{}\n```\n</details>\n",
            w.logs.replace("```", "'''")
        ));
    }
    let calls: Vec<f64> = wakes
        .iter()
        .map(|w| w.calls_besides_exchange() as f64)
        .collect();
    let worst_calls = max(&calls).unwrap_or(f64::NAN);
    targets.push(Target::new(
        &format!(
            "one cold wake ({:.0} s boot): Scalingo calls besides the token exchange (worst of {})",
            plan.cold_boot.as_secs_f64(),
            wakes.len()
        ),
        "≤ 6",
        f0(worst_calls),
        Some(worst_calls <= 6.0),
    ));
    let overheads: Vec<f64> = wakes
        .iter()
        .filter(|w| served(&w.answer))
        .map(ColdWake::overhead_ms)
        .collect();
    let unserved = wakes.len() - overheads.len();
    let p50 = median(&overheads).unwrap_or(f64::NAN);
    let measured = match (overheads.is_empty(), unserved) {
        (true, _) => format!("none of {} wakes served by the app", wakes.len()),
        (false, 0) => format!("{} ms", f0(p50)),
        (false, n) => format!("{} ms ({n} of {} wakes not served)", f0(p50), wakes.len()),
    };
    targets.push(Target::new(
        &format!(
            "one cold wake ({:.0} s boot): overhead beyond the boot at p50",
            plan.cold_boot.as_secs_f64()
        ),
        "< 250 ms",
        measured,
        // A wake the app did not answer is a miss.
        Some(unserved == 0 && p50 < 250.0),
    ));
}

pub(super) fn crowd_report(plan: &Plan, c: &Crowd, body: &mut String, targets: &mut Vec<Target>) {
    let served_n = c.answers.iter().filter(|a| served(a)).count();
    let to_users = users_429_503(&c.answers);
    let took: Vec<f64> = c.answers.iter().map(|a| util::ms(a.took)).collect();
    body.push_str(&format!(
        "\n### {} sleeping apps woken within {:.0} s\n\n\
         One request to each, sent {:.1} s apart through one gateway; every app boots in {:.0} s (+1 s \
         router window).\n\n",
        c.apps,
        plan.crowd_span.as_secs_f64(),
        plan.crowd_span.as_secs_f64() / c.apps.max(1) as f64,
        plan.crowd_boot.as_secs_f64(),
    ));
    body.push_str(&table(
        &[
            "served",
            "answers",
            "Scalingo 429s",
            "429/503 to users",
            "time to the last answer",
            "answer p50 / max (ms)",
            "API calls (most in 60 s)",
        ],
        &[vec![
            format!("**{served_n}/{}**", c.apps),
            status_counts(&c.answers),
            format!("**{}**", c.rate_limited),
            format!("**{to_users}**"),
            format!("{:.1} s", c.to_last_answer.as_secs_f64()),
            format!(
                "{} / {}",
                f0(median(&took).unwrap_or(f64::NAN)),
                f0(max(&took).unwrap_or(f64::NAN))
            ),
            format!("{} ({})", c.api_calls, c.max_per_minute),
        ]],
    ));
    if let Some(e) = first_error(&c.answers) {
        body.push_str(&format!("\nFirst answer other than the app's: `{e}`\n"));
    }
    if !c.logs.is_empty() {
        body.push_str(&format!(
            "\n<details><summary>Why (the gateway's logs)</summary>\n\n```\n{}\n```\n</details>\n",
            c.logs.replace("```", "'''")
        ));
    }
    let what = format!(
        "{} sleeping apps within {:.0} s",
        c.apps,
        plan.crowd_span.as_secs_f64()
    );
    targets.push(Target::new(
        &format!("{what}: served"),
        &format!("{}", c.apps),
        served_n.to_string(),
        Some(served_n == c.apps),
    ));
    targets.push(Target::new(
        &format!("{what}: 429/503 answers reaching a user"),
        "0",
        to_users.to_string(),
        Some(to_users == 0),
    ));
    targets.push(Target::new(
        &format!("{what}: Scalingo 429s"),
        "reported",
        c.rate_limited.to_string(),
        None,
    ));
    targets.push(Target::new(
        &format!("{what}: time to the last answer"),
        "reported",
        format!("{:.1} s", c.to_last_answer.as_secs_f64()),
        None,
    ));
}

pub(super) fn broken_report(plan: &Plan, b: &Broken, body: &mut String, targets: &mut Vec<Target>) {
    let calls: usize = b.calls.values().sum();
    let took: Vec<f64> = b.answers.iter().map(|a| util::ms(a.took)).collect();
    body.push_str(&format!(
        "\n### A broken app asked {} times a second for {:.0} s\n\n\
         The app crashes on every boot ({:.0} s per attempt, the strict fake's retries and back-off: its \
         operation stays `running`, the app reads `crashed` only after 12 failed boots). {} requests, \
         each on its own connection, none waiting for another.\n\n",
        plan.broken_rate,
        plan.broken_for.as_secs_f64(),
        b.boot_attempt.as_secs_f64(),
        b.requests,
    ));
    body.push_str(&table(
        &[
            "Scalingo calls about the app",
            "by endpoint",
            "other calls meanwhile",
            "Scalingo 429s",
            "what the clients got",
            "answer p50 / max (ms)",
        ],
        &[vec![
            format!("**{calls}**"),
            describe(&b.calls),
            describe(&b.other_calls),
            b.rate_limited.to_string(),
            status_counts(&b.answers),
            format!(
                "{} / {}",
                f0(median(&took).unwrap_or(f64::NAN)),
                f0(max(&took).unwrap_or(f64::NAN))
            ),
        ]],
    ));
    if let Some(e) = first_error(&b.answers) {
        body.push_str(&format!("\nFirst answer: `{e}`\n"));
    }
    let what = format!(
        "broken app, {} req/s for {:.0} s",
        plan.broken_rate,
        plan.broken_for.as_secs_f64()
    );
    targets.push(Target::new(
        &format!("{what}: Scalingo calls"),
        "≤ 10",
        calls.to_string(),
        Some(calls <= 10),
    ));
    targets.push(Target::new(
        &format!("{what}: what the clients got"),
        "reported",
        status_counts(&b.answers),
        None,
    ));
}

pub(super) fn shared_report(plan: &Plan, s: &Shared, body: &mut String, targets: &mut Vec<Target>) {
    let served_n = s.answers.iter().filter(|a| served(a)).count();
    let to_users = users_429_503(&s.answers);
    body.push_str(&format!(
        "\n### Two instances, one budget\n\n\
         Two sidecars (each behind its Envoy) on one private `redis-server`, one key prefix, \
         `PAASTIS_GATEWAY_INSTANCES=2`, `PAASTIS_SCALINGO_CALLS_PER_MINUTE={CALLS_PER_MINUTE}`, a scheduler \
         pass every 10 s. Load: {} sleeping apps (10 s boot) asked once each, spread over {:.0} s and \
         alternating between the instances, while {} running apps registered as idle for 30 minutes wait \
         for the scheduler to pause them. The fake's log is read over the first {:.0} s of the sidecars' \
         lives (their start included).\n\n",
        s.wakes,
        plan.shared_span.as_secs_f64(),
        s.idle,
        s.watched.as_secs_f64(),
    ));
    body.push_str(&table(
        &[
            "most calls in any 60 s",
            "limit",
            "API calls in all",
            "Scalingo 429s",
            "wakes served",
            "429/503 to users",
            "idle apps paused",
        ],
        &[vec![
            format!(
                "**{}** (from {:.1} s; its first and last calls {:.3} s apart)",
                s.max_per_minute,
                s.fullest_at,
                s.fullest_span.as_secs_f64()
            ),
            CALLS_PER_MINUTE.to_string(),
            s.api_calls.to_string(),
            s.rate_limited.to_string(),
            format!("{served_n}/{}", s.wakes),
            to_users.to_string(),
            format!("{}/{}", s.idle_paused, s.idle),
        ]],
    ));
    body.push_str(&format!(
        "\nThe calls of the fullest 60 s window: {}.\n",
        describe(&s.fullest)
    ));
    if let Some(e) = first_error(&s.answers) {
        body.push_str(&format!("\nFirst answer other than the app's: `{e}`\n"));
    }
    if !s.logs.is_empty() {
        body.push_str(&format!(
            "\n<details><summary>Why (the gateway's logs)</summary>\n\n```\n{}\n```\n</details>\n",
            s.logs.replace("```", "'''")
        ));
    }
    targets.push(Target::new(
        "2 instances, one budget: most Scalingo calls in any 60 s",
        &format!("≤ {CALLS_PER_MINUTE}"),
        s.max_per_minute.to_string(),
        Some(s.max_per_minute <= CALLS_PER_MINUTE),
    ));
    targets.push(Target::new(
        "2 instances, one budget: wakes served / 429-503 to users",
        "reported",
        format!("{served_n}/{} / {to_users}", s.wakes),
        None,
    ));
}

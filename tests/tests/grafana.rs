//! The Grafana dashboard (`envoy/grafana/paastis-dashboard.json`) names
//! only metrics that really exist: after some traffic through the real
//! Envoy with the built filter and the real sidecar (a cold wake, cached
//! hits, an admin pause), scrape the sidecar's `/metrics` and Envoy's
//! `/stats/prometheus`, and check every metric name in every panel's
//! PromQL against what they export.

use std::collections::BTreeSet;
use std::time::Duration;

use paastis_e2e::fake::FakeApp;
use paastis_e2e::harness::{admin_env, blocking_get, workspace_root, Stack, StackOptions};
use serde_json::Value;

const TOKEN: &str = "admin-token-for-the-grafana-test";
const APP: &str = "shop-front";
const DASHBOARD: &str = "envoy/grafana/paastis-dashboard.json";

/// Metric names in a Prometheus text exposition (`# TYPE`/`# HELP` lines
/// skipped; a sample's name is what precedes its labels or value).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every PromQL expression of the dashboard (`expr` of every target of
/// every panel, nested rows included).
fn expressions(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => expressions(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The metric names a PromQL expression reads: identifiers that are
/// neither functions (followed by `(`), nor label names (inside `{...}` or
/// `by (...)`), nor keywords. The dashboard only reads the gateway's own
/// metrics, so a name is one starting with `paastis_` or `envoy_paastis_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut depth_braces = 0;
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth_braces += 1;
        } else if c == '}' {
            depth_braces -= 1;
        } else if c == '"' {
            // Skip a string literal (label values).
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric()
                    || chars[i + 1] == '_'
                    || chars[i + 1] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..=i].iter().collect();
            if depth_braces == 0
                && (word.starts_with("paastis_") || word.starts_with("envoy_paastis_"))
            {
                names.insert(word);
            }
        }
        i += 1;
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.9, sum by (le) (rate(paastis_wake_duration_seconds_bucket{result="x_y"}[5m]))) / envoy_paastis_cache_hit"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "envoy_paastis_cache_hit",
            "paastis_wake_duration_seconds_bucket"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_grafana_dashboard_is_exported_after_some_traffic() {
    let stack = Stack::start(StackOptions {
        apps: vec![FakeApp::web(APP, "osc-fr1", 0)],
        sidecar_env: admin_env(TOKEN),
        ..StackOptions::default()
    })
    .await;
    let admin_port = stack.sidecar.admin.expect("the admin API listens").port();
    // Short scale-downs: the pause below ends within the test.
    stack.fake.set_stop_delay(Duration::from_secs(1));
    let host = format!("{APP}.gateway.example.com");
    // A cold wake (cache miss, callout, wake), then cached hits.
    for _ in 0..3 {
        assert_eq!(stack.get(&host, "/").await.status, 200);
    }
    // A pause from the admin API (the scheduler's pause path).
    let paused = stack
        .client
        .post(format!(
            "http://127.0.0.1:{admin_port}/admin/v1/apps/{APP}/pause"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin API");
    assert!(paused.status().is_success(), "{paused:?}");

    let sidecar_text = stack
        .client
        .get(format!("http://{}/metrics", stack.sidecar.addr))
        .send()
        .await
        .expect("sidecar /metrics")
        .text()
        .await
        .expect("body");
    let (status, envoy_text) =
        blocking_get(stack.envoy.admin, "/stats/prometheus").expect("Envoy /stats/prometheus");
    assert_eq!(status, 200);
    let mut exported = exported_names(&sidecar_text);
    exported.extend(exported_names(&envoy_text));
    let ours: Vec<&String> = exported
        .iter()
        .filter(|n| n.starts_with("paastis_") || n.starts_with("envoy_paastis_"))
        .collect();
    println!("exported: {ours:?}");

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join(DASHBOARD)).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "panels with queries: {exprs:?}");
    let mut read = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no gateway metric in {expr:?}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {expr:?}) is not exported; ours are {ours:?}"
            );
            read.insert(name);
        }
    }
    // The families the dashboard is for are all there.
    for family in [
        "paastis_wakes_total",
        "paastis_wake_duration_seconds_bucket",
        "paastis_pauses_total",
        "paastis_scalingo_calls_total",
        "paastis_scalingo_budget_remaining",
        // Envoy exports the filter's stats under their own names (no
        // `envoy_` prefix, no `_total`): checked here on a real Envoy.
        "paastis_cache_hit",
        "paastis_cache_miss",
    ] {
        assert!(read.contains(family), "the dashboard shows no {family}");
    }
}

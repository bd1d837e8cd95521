//! The sidecar's Prometheus metrics (OpenMetrics text on `GET /metrics`,
//! served by [`crate::server`]). A leaf: it knows nothing of what it counts.
//!
//! One [`Metrics`] per gateway (not a process global), so that several
//! gateways in one test process never mix their counts.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `paastis_wakes_total` | counter | `result`: `woken`, `failed`, `timeout`, `unknown_app` |
//! | `paastis_wake_duration_seconds` | histogram | | cold start seen by a request that waited for a wake |
//! | `paastis_pauses_total` | counter | `result`: `paused`, `failed` |
//! | `paastis_scalingo_calls_total` | counter | `endpoint`, `status` (HTTP status, or `error`) |
//! | `paastis_registry_apps` | gauge | | apps in the registry (read at scrape time) |
//! | `paastis_activity_pending_apps` | gauge | | activity kept in memory during a registry outage |
//! | `paastis_activity_batches_total` | counter | | activity batches received from the filter |
//! | `paastis_activity_apps_total` | counter | | app names in those batches |
//! | `paastis_registry_refused_total` | counter | `reason`: `unknown` (activity for an app the gateway never resolved, dropped), `cap` (registry full) |
//! | `paastis_scheduler_passes_total` | counter | `result`: `done`, `skipped`, `failed` |
//! | `paastis_scheduler_pass_duration_seconds` | histogram | | passes that did the work |
//! | `paastis_hooks_total` | counter | `hook`, `result`: `ok`, `failed`, `timeout` |
//! | `paastis_scalingo_budget_remaining` | gauge | | calls left in the API budget's window (read at scrape time) |
//! | `paastis_scalingo_budget_spent_total` | counter | `rank`: `wake_scale`, `wake_check`, `background` |
//! | `paastis_scalingo_budget_exhausted_total` | counter | | calls given up because the budget had no slot in time |
//! | `paastis_scalingo_budget_rate_limited_total` | counter | | 429s from Scalingo (each pauses the whole budget) |
//! | `paastis_scalingo_budget_store_failures_total` | counter | | shared-budget Redis failures (each falls back to this instance's share) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub endpoint: &'static str,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RankLabel {
    pub rank: &'static str,
}

/// What the API budget reports at a scrape (totals since start, and the
/// calls left in its window). Filled by whoever owns the budget, through a
/// scrape hook ([`Metrics::on_scrape`]): this module knows nothing of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetReading {
    pub remaining: u32,
    /// `(rank, calls granted since start)`.
    pub spent: Vec<(&'static str, u64)>,
    pub exhausted: u64,
    pub rate_limited: u64,
    pub store_failures: u64,
}

type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub hook: &'static str,
    pub result: &'static str,
}

/// Buckets of wake durations: a Scalingo boot takes seconds to a minute.
const WAKE_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0,
];
/// Buckets of scheduler passes: mostly paced Scalingo calls (1 s apart).
const PASS_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0];

pub struct Metrics {
    registry: Registry,
    pub wakes: Family<ResultLabel, Counter>,
    pub wake_duration: Histogram,
    pub pauses: Family<ResultLabel, Counter>,
    pub scalingo_calls: Family<CallLabels, Counter>,
    pub registry_apps: Gauge,
    pub activity_pending: Gauge,
    pub activity_batches: Counter,
    pub activity_apps: Counter,
    pub registry_refused: Family<ReasonLabel, Counter>,
    pub scheduler_passes: Family<ResultLabel, Counter>,
    pub scheduler_pass_duration: Histogram,
    pub hooks: Family<HookLabels, Counter>,
    pub budget_remaining: Gauge,
    pub budget_spent: Family<RankLabel, Counter>,
    pub budget_exhausted: Counter,
    pub budget_rate_limited: Counter,
    pub budget_store_failures: Counter,
    scrape_hooks: std::sync::Mutex<Vec<ScrapeHook>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paastis");
        let wakes = Family::<ResultLabel, Counter>::default();
        registry.register("wakes", "App wakes by result", wakes.clone());
        let wake_duration = Histogram::new(WAKE_BUCKETS);
        registry.register(
            "wake_duration_seconds",
            "Time a request waited for its app to wake (the cold start users see)",
            wake_duration.clone(),
        );
        let pauses = Family::<ResultLabel, Counter>::default();
        registry.register("pauses", "Idle apps paused by result", pauses.clone());
        let scalingo_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "scalingo_calls",
            "Scalingo API calls by endpoint and HTTP status",
            scalingo_calls.clone(),
        );
        let registry_apps = Gauge::default();
        registry.register(
            "registry_apps",
            "Apps in the registry",
            registry_apps.clone(),
        );
        let activity_pending = Gauge::default();
        registry.register(
            "activity_pending_apps",
            "Apps whose activity waits for the registry to come back",
            activity_pending.clone(),
        );
        let activity_batches = Counter::default();
        registry.register(
            "activity_batches",
            "Activity batches received from the filter",
            activity_batches.clone(),
        );
        let activity_apps = Counter::default();
        registry.register(
            "activity_apps",
            "App names received in activity batches",
            activity_apps.clone(),
        );
        let registry_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "registry_refused",
            "App names kept out of the registry, by reason",
            registry_refused.clone(),
        );
        let scheduler_passes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "scheduler_passes",
            "Scheduler passes by result",
            scheduler_passes.clone(),
        );
        let scheduler_pass_duration = Histogram::new(PASS_BUCKETS);
        registry.register(
            "scheduler_pass_duration_seconds",
            "Duration of the scheduler passes that did the work",
            scheduler_pass_duration.clone(),
        );
        let hooks = Family::<HookLabels, Counter>::default();
        registry.register("hooks", "Hooks run by hook and result", hooks.clone());
        let budget_remaining = Gauge::default();
        registry.register(
            "scalingo_budget_remaining",
            "Scalingo API calls left in the budget's window",
            budget_remaining.clone(),
        );
        let budget_spent = Family::<RankLabel, Counter>::default();
        registry.register(
            "scalingo_budget_spent",
            "Scalingo API calls granted by the budget, by rank",
            budget_spent.clone(),
        );
        let budget_exhausted = Counter::default();
        registry.register(
            "scalingo_budget_exhausted",
            "Scalingo calls given up because the budget had no slot in time",
            budget_exhausted.clone(),
        );
        let budget_rate_limited = Counter::default();
        registry.register(
            "scalingo_budget_rate_limited",
            "429s from Scalingo, each pausing the whole budget",
            budget_rate_limited.clone(),
        );
        let budget_store_failures = Counter::default();
        registry.register(
            "scalingo_budget_store_failures",
            "Shared-budget store failures (this instance then spends its share)",
            budget_store_failures.clone(),
        );
        Self {
            registry,
            wakes,
            wake_duration,
            pauses,
            scalingo_calls,
            registry_apps,
            activity_pending,
            activity_batches,
            activity_apps,
            registry_refused,
            scheduler_passes,
            scheduler_pass_duration,
            hooks,
            budget_remaining,
            budget_spent,
            budget_exhausted,
            budget_rate_limited,
            budget_store_failures,
            scrape_hooks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `hook` before each [`Metrics::encode`], to copy in figures that
    /// live elsewhere (read at scrape time).
    pub fn on_scrape(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.scrape_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// Copies the API budget's figures in (counters move by the difference,
    /// so they stay monotonic).
    pub fn record_budget(&self, reading: &BudgetReading) {
        fn catch_up(counter: &Counter, total: u64) {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.budget_remaining.set(i64::from(reading.remaining));
        for (rank, total) in &reading.spent {
            catch_up(
                &self.budget_spent.get_or_create(&RankLabel { rank }),
                *total,
            );
        }
        catch_up(&self.budget_exhausted, reading.exhausted);
        catch_up(&self.budget_rate_limited, reading.rate_limited);
        catch_up(&self.budget_store_failures, reading.store_failures);
    }

    pub fn wake(&self, result: &'static str) {
        self.wakes.get_or_create(&ResultLabel { result }).inc();
    }

    /// `n` app names kept out of the registry for `reason`.
    pub fn registry_refused(&self, reason: &'static str, n: u64) {
        self.registry_refused
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n);
    }

    pub fn pause(&self, result: &'static str) {
        self.pauses.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn pass(&self, result: &'static str) {
        self.scheduler_passes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub fn hook(&self, hook: &'static str, result: &'static str) {
        self.hooks.get_or_create(&HookLabels { hook, result }).inc();
    }

    /// A Scalingo call answered with `status` (`None`: no HTTP answer).
    pub fn scalingo_call(&self, endpoint: &'static str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.scalingo_calls
            .get_or_create(&CallLabels { endpoint, status })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        for hook in self
            .scrape_hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The endpoint a Scalingo API path is for, without app names or ids, so
/// that the label set stays small.
pub fn endpoint_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "tokens", "exchange"] => "tokens_exchange",
        ["v1", "regions"] => "regions",
        ["v1", "apps"] => "apps_list",
        ["v1", "apps", _] => "app",
        ["v1", "apps", _, "containers"] => "containers",
        ["v1", "apps", _, "scale"] => "scale",
        ["v1", "apps", _, "operations", _] => "operation",
        ["v1", "apps", _, "ps"] => "ps",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_figures_are_read_at_scrape_time_and_counters_stay_monotonic() {
        let metrics = std::sync::Arc::new(Metrics::new());
        let reading = std::sync::Arc::new(std::sync::Mutex::new(BudgetReading {
            remaining: 40,
            spent: vec![("wake_scale", 3), ("background", 12)],
            exhausted: 1,
            rate_limited: 2,
            store_failures: 0,
        }));
        let source = reading.clone();
        metrics.on_scrape(move |m| m.record_budget(&source.lock().unwrap()));
        let text = metrics.encode();
        assert!(
            text.contains("paastis_scalingo_budget_remaining 40"),
            "{text}"
        );
        assert!(
            text.contains("paastis_scalingo_budget_spent_total{rank=\"background\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("paastis_scalingo_budget_rate_limited_total 2"),
            "{text}"
        );
        {
            let mut r = reading.lock().unwrap();
            r.remaining = 55;
            r.spent = vec![("wake_scale", 5), ("background", 12)];
        }
        let text = metrics.encode();
        assert!(
            text.contains("paastis_scalingo_budget_remaining 55"),
            "{text}"
        );
        assert!(
            text.contains("paastis_scalingo_budget_spent_total{rank=\"wake_scale\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("paastis_scalingo_budget_exhausted_total 1"),
            "{text}"
        );
    }

    #[test]
    fn endpoint_labels_drop_names_and_ids() {
        assert_eq!(endpoint_label("/v1/tokens/exchange"), "tokens_exchange");
        assert_eq!(endpoint_label("/v1/apps"), "apps_list");
        assert_eq!(endpoint_label("/v1/apps/my-app"), "app");
        assert_eq!(endpoint_label("/v1/apps/my-app/scale"), "scale");
        assert_eq!(
            endpoint_label("/v1/apps/my-app/operations/op-1"),
            "operation"
        );
        assert_eq!(endpoint_label("/v1/apps/my-app/ps"), "ps");
        assert_eq!(endpoint_label("/v1/apps/my-app/containers"), "containers");
        assert_eq!(endpoint_label("/v1/somewhere/else"), "other");
    }

    #[test]
    fn the_exposition_names_every_metric_once() {
        let m = Metrics::new();
        m.wake("woken");
        m.wake_duration.observe(1.5);
        m.scalingo_call("scale", Some(202));
        m.scalingo_call("ps", None);
        let text = m.encode();
        for needle in [
            "paastis_wakes_total{result=\"woken\"} 1",
            "paastis_wake_duration_seconds_bucket{le=\"2.0\"} 1",
            "paastis_scalingo_calls_total{endpoint=\"scale\",status=\"202\"} 1",
            "paastis_scalingo_calls_total{endpoint=\"ps\",status=\"error\"} 1",
            "# TYPE paastis_registry_apps gauge",
            "# TYPE paastis_scheduler_pass_duration_seconds histogram",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}

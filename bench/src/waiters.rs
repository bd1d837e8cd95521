//! 3. Many waiters: a crowd of first requests for one sleeping app, through
//!    one gateway instance (Envoy + sidecar), then through two instances that
//!    share one Redis; then both again while threads of this process keep
//!    every core busy (a crowded node, a CI runner). One scale call is the
//!    target whatever the crowd, and no request may fail while the app boots,
//!    however slowly the machine answers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::harness::Sidecar;
use paastis_e2e::redis::{unique_prefix, TestRedis};

use crate::envoy::{self, Envoy};
use crate::report::{f0, table, Section, Target};
use crate::util::{self, max, median, min, percentile};

const APP: &str = "crowd-app";
const BOOT: Duration = Duration::from_millis(1000);

struct Outcome {
    instances: usize,
    /// Served while every core was kept busy ([`Busy`]).
    busy: bool,
    requests: usize,
    errors: usize,
    first_error: Option<String>,
    scale_calls: usize,
    callouts: u64,
    /// Connections the Envoys opened to their sidecar for the crowd, and
    /// callouts their circuit breakers refused.
    sidecar_connections: u64,
    overflows: u64,
    latencies_ms: Vec<f64>,
    /// Callouts to the sidecars a minute once the crowd is served and no
    /// request comes (the worker VMs renewing the app's lease), per Envoy;
    /// measured on the quiet machine only.
    idle_callouts_per_minute: Option<f64>,
}

/// Threads that spin on every core until dropped: the gateway's processes
/// get their share of the CPU, no more.
struct Busy {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Envoy's worker threads per instance: one wasm VM each holds leases.
const WORKERS: u32 = 2;
/// How long the idle gateway is watched after the crowd.
const IDLE: Duration = Duration::from_secs(30);
/// Every callout an Envoy made to its sidecar (wakes, flushes, renewals).
const SIDECAR_RQ: &str = "paastis_sidecar.upstream_rq_total";

/// Sum over the instances of an Envoy counter.
fn total(gateway: &[Instance], suffix: &str) -> u64 {
    gateway.iter().map(|i| i.envoy.counter(suffix)).sum()
}

/// The sidecar itself (first requests' wakes reach it through the
/// in-process `paastis_sidecar_hold`, which retries while it cannot be
/// reached).
const SIDECAR_CX: &str = "paastis_sidecar.upstream_cx_total";
const OVERFLOWS: [&str; 5] = [
    "paastis_sidecar.upstream_rq_pending_overflow",
    "paastis_sidecar.upstream_cx_overflow",
    "paastis_sidecar.upstream_rq_retry_overflow",
    "paastis_sidecar_hold.upstream_rq_pending_overflow",
    "paastis_sidecar_hold.upstream_cx_overflow",
];

pub async fn run(requests: usize, dir: PathBuf) -> Result<Section, String> {
    let began = Instant::now();
    let redis = tokio::task::block_in_place(TestRedis::start);
    let mut outcomes = Vec::new();
    for busy in [false, true] {
        for instances in [1, 2] {
            let sub = dir.join(format!(
                "{instances}-instances{}",
                if busy { "-busy" } else { "" }
            ));
            std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
            outcomes.push(crowd(instances, busy, requests, &redis, &sub).await?);
        }
    }
    drop(redis);
    Ok(section(&outcomes, began.elapsed()))
}

/// One gateway instance: its sidecar and its Envoy.
struct Instance {
    sidecar: Sidecar,
    envoy: Envoy,
}

async fn crowd(
    instances: usize,
    busy: bool,
    requests: usize,
    redis: &TestRedis,
    dir: &Path,
) -> Result<Outcome, String> {
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: BOOT,
        // kinder than the real platform until the sidecar lives within it (issue 9); the strict fake is for the tests
        ..FakeConfig::lenient()
    })
    .await
    .map_err(|e| e.to_string())?;
    fake.add_app(FakeApp::web(APP, "osc-fr1", 0));
    let prefix = unique_prefix("bench-waiters");
    let rules = dir.join("paastis.yml");
    std::fs::write(&rules, "").map_err(|e| e.to_string())?;
    let mut gateway = Vec::new();
    for k in 0..instances {
        let own = dir.join(format!("instance-{k}"));
        std::fs::create_dir_all(&own).map_err(|e| e.to_string())?;
        fake.add_app(FakeApp::web(format!("warm-up-app-{k}"), "osc-fr1", 0));
        let env: Vec<(String, String)> = [
            ("RUST_LOG", "info".to_owned()),
            ("REGISTRY_TYPE", "redis".to_owned()),
            ("REGISTRY_REDIS_URL", redis.url()),
            ("REGISTRY_REDIS_KEY_PREFIX", prefix.clone()),
            ("PAASTIS_INSTANCE", format!("bench-{k}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let sidecar = tokio::task::block_in_place(|| Sidecar::start(&fake, &rules, &own, &env))?;
        let envoy = envoy::gateway(&own, "gateway", &fake, &sidecar, WORKERS)?;
        gateway.push(Instance { sidecar, envoy });
    }
    // The crowd must open a connection per request: no idle pool to reuse.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let logs = |gateway: &[Instance]| {
        gateway
            .iter()
            .map(|i| {
                format!(
                    "envoy:\n{}\nsidecar:\n{}",
                    i.envoy.log_text(),
                    i.sidecar.log()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Not counted: each sidecar's first wake also exchanges the token and
    // lists the regions, once in its life.
    for (k, instance) in gateway.iter().enumerate() {
        let app = format!("warm-up-app-{k}");
        let reply = client
            .get(format!("http://{}/", instance.envoy.listen))
            .header("host", format!("{app}.gateway.example.com"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if reply.status() != 200 {
            return Err(format!(
                "warm-up answered {}\n{}",
                reply.status(),
                logs(&gateway)
            ));
        }
    }
    let callouts_before = total(&gateway, "paastis.callout");
    let connections_before = total(&gateway, SIDECAR_CX);
    let overflows_before: u64 = OVERFLOWS.iter().map(|o| total(&gateway, o)).sum();

    let targets: Vec<String> = gateway
        .iter()
        .map(|i| format!("http://{}/", i.envoy.listen))
        .collect();
    let host = format!("{APP}.gateway.example.com");
    let sends = (0..requests).map(|i| {
        let request = client
            .get(&targets[i % targets.len()])
            .header("host", &host);
        async move {
            let started = Instant::now();
            let result = match request.send().await {
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    let served_by = util::served_by(&reply);
                    let body = reply.text().await.unwrap_or_default();
                    if status == 200 && served_by == APP {
                        Ok(())
                    } else {
                        Err(format!("{status} {body}"))
                    }
                }
                Err(e) => Err(e.to_string()),
            };
            (started.elapsed(), result)
        }
    });
    // Every core busy from just before the crowd to its last answer.
    let load = busy.then(Busy::start);
    let results = futures::future::join_all(sends).await;
    drop(load);

    let callouts_after = total(&gateway, "paastis.callout");
    let connections_after = total(&gateway, SIDECAR_CX);
    let overflows_after: u64 = OVERFLOWS.iter().map(|o| total(&gateway, o)).sum();
    let mut latencies_ms = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for (elapsed, result) in results {
        match result {
            Ok(()) => latencies_ms.push(util::ms(elapsed)),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if errors == requests {
        return Err(format!(
            "every request failed ({})\n{}",
            first_error.unwrap_or_default(),
            logs(&gateway)
        ));
    }
    // The idle gateway: the crowd's last answers and flushes settle, then
    // no request for IDLE; what the Envoys still send is the renewal.
    let mut idle_callouts_per_minute = None;
    if !busy {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_before = total(&gateway, SIDECAR_RQ);
        tokio::time::sleep(IDLE).await;
        let idle_callouts = total(&gateway, SIDECAR_RQ).saturating_sub(idle_before);
        idle_callouts_per_minute =
            Some(idle_callouts as f64 * 60.0 / IDLE.as_secs_f64() / instances as f64);
    }
    Ok(Outcome {
        instances,
        busy,
        requests,
        errors,
        first_error,
        scale_calls: fake.scale_calls(APP),
        callouts: callouts_after.saturating_sub(callouts_before),
        sidecar_connections: connections_after.saturating_sub(connections_before),
        overflows: overflows_after.saturating_sub(overflows_before),
        latencies_ms,
        idle_callouts_per_minute,
    })
}

fn section(outcomes: &[Outcome], took: Duration) -> Section {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let l = &o.latencies_ms;
            vec![
                format!(
                    "{} Envoy{} + {} sidecar{}, one Redis{}",
                    o.instances,
                    if o.instances > 1 { "s" } else { "" },
                    o.instances,
                    if o.instances > 1 { "s" } else { "" },
                    if o.busy { ", every core busy" } else { "" }
                ),
                o.requests.to_string(),
                format!("**{}**", o.scale_calls),
                format!("**{}**", o.errors),
                o.callouts.to_string(),
                o.sidecar_connections.to_string(),
                o.overflows.to_string(),
                f0(min(l).unwrap_or(f64::NAN)),
                f0(median(l).unwrap_or(f64::NAN)),
                f0(percentile(l, 99.0).unwrap_or(f64::NAN)),
                f0(max(l).unwrap_or(f64::NAN)),
                o.idle_callouts_per_minute.map_or("-".to_owned(), |n| {
                    format!("{} ({} a VM)", f0(n), f0(n / f64::from(WORKERS)))
                }),
            ]
        })
        .collect();
    let mut body = format!(
        "Concurrent first requests to one sleeping app (boot delay {} ms), split evenly over the instances. \
         Latencies in ms, from each request's send to its answer.\n\n",
        BOOT.as_millis()
    );
    body.push_str(&table(
        &[
            "gateway",
            "requests",
            "scale calls",
            "errors",
            "wake callouts",
            "sidecar connections",
            "refused by circuit breakers",
            "min",
            "p50",
            "p99",
            "max",
            "idle: callouts a minute per Envoy",
        ],
        &rows,
    ));
    for o in outcomes.iter().filter(|o| o.errors > 0) {
        body.push_str(&format!(
            "\nWith {} instance(s){}, the first error was: `{}`\n",
            o.instances,
            if o.busy { ", every core busy" } else { "" },
            o.first_error.as_deref().unwrap_or("").replace('`', "'")
        ));
    }
    body.push_str(
        "\nMethod: per instance, the release sidecar (`REGISTRY_TYPE=redis`, one private `redis-server`, one key \
         prefix for both instances, `PAASTIS_INSTANCE` apart) and Envoy (2 workers) on `envoy/fake.yaml.tmpl`; \
         each sidecar woke another app first (not counted). The requests are sent at once from the bench, \
         one connection each; an error is a transport failure or any answer other than the app's own 200. \
         Every request makes its own wake callout (the filter pauses each one; the sidecar shares one wake \
         per app, and across instances the Redis lease makes the other wait for the first one's note). \
         Waiting callouts each hold a connection from Envoy to its sidecar (HTTP/1.1): Envoy's default \
         circuit breakers on that cluster (1,024 connections, pending and active requests, as the shipped \
         `envoy/gateway.yaml` leaves them) bound how many first requests one Envoy can hold at once; the \
         refused column counts callouts they turned away. Then no request for 30 s: the last column is \
         what each Envoy still sent its sidecar in that time (`cluster.paastis_sidecar.upstream_rq_total`), \
         scaled to a minute: each worker VM that holds the app's awake lease renews it on every tick of \
         its activity flush (`activity_flush_ms`, 1,000 ms), one small callout answered from the sidecar's \
         memory; the main thread's VM routes no request and holds no lease. The rows \"every core busy\" \
         are the same crowds while one thread of the bench per core spins from just before the crowd to \
         its last answer, as two `yes > /dev/null` would: Envoy, the sidecars, Redis and the fake get \
         their share of the CPU and no more, and no bound of the request path may turn a slow answer \
         into an error.\n",
    );
    let mut targets = Vec::new();
    for o in outcomes {
        let which = format!(
            "{} waiters, {} instance(s){}",
            o.requests,
            o.instances,
            if o.busy { ", every core busy" } else { "" }
        );
        targets.push(Target::new(
            &format!("{which}: scale calls"),
            "1",
            o.scale_calls.to_string(),
            Some(o.scale_calls == 1),
        ));
        targets.push(Target::new(
            &format!("{which}: errors"),
            "0",
            o.errors.to_string(),
            Some(o.errors == 0),
        ));
        if let Some(per_minute) = o.idle_callouts_per_minute {
            let per_vm = per_minute / f64::from(WORKERS);
            // One tick's callout may fall at either edge of the window.
            let most = (IDLE.as_secs_f64() + 1.0) * 60.0 / IDLE.as_secs_f64();
            targets.push(Target::new(
                &format!(
                    "idle gateway, {} instance(s): callouts a minute per VM",
                    o.instances
                ),
                "≤ 60 (one a tick)",
                f0(per_vm),
                Some(per_vm <= most + 0.01),
            ));
        }
    }
    Section {
        title: "3. Many waiters".to_owned(),
        body,
        targets,
        took,
    }
}

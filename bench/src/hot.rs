//! 1. The hot path: the cost of the filter on a request for an app it knows
//!    to be awake, against Envoy alone and a do-nothing wasm filter.
//!
//! Three Envoys are started alike (same listener, connection manager and
//! clusters; one worker each, all pinned to the same core, or two workers
//! each, unpinned: `Plan::workers`) in front of one upstream; wrk loads them in turn, round after round, the order
//! rotating every round so that no arm always runs first or last. The Paastis
//! arm's cache is warmed by one request that really wakes the app (sidecar +
//! fake Scalingo); its counters then prove that every measured request was a
//! cache hit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use paastis_e2e::fake::{FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::harness::{render_template, wasm_path, Sidecar};

use crate::envoy::{shipped_filter_config, Envoy};
use crate::perf::Recording;
use crate::report::{f0, f1, f2, table, Section, Target};
use crate::upstream::Upstream;
use crate::util::{self, children_cpu_time, cpu_time, machine_busy, median, vm_rss_kib};
use crate::wrk::{Load, Run, Wrk};

const TEMPLATE: &str = include_str!("../envoy-hot.yaml.tmpl");
const APP: &str = "bench-app";
pub const HOST: &str = "bench-app.gateway.example.com";

const PLAIN_ROUTES: &str = r#"              - match: { prefix: "/" }
                route: { cluster: osc-fr1, timeout: 60s }"#;

/// The routes of `envoy/gateway.yaml`.
const GATEWAY_ROUTES: &str = r#"              - match:
                  prefix: "/"
                  headers:
                  - name: x-paastis-cluster
                    present_match: true
                route:
                  cluster_header: x-paastis-cluster
                  cluster_not_found_response_code: SERVICE_UNAVAILABLE
                  timeout: 60s
                request_headers_to_remove: ["x-paastis-cluster"]
              - match: { prefix: "/" }
                direct_response:
                  status: 404
                  body: { inline_string: "no app for this host\n" }"#;

fn wasm_filter(name: &str, path: &Path, configuration: Option<&str>) -> String {
    let mut block = format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                root_id: {name}
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: {name}
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local:
                      filename: {path}"#,
        path = path.display()
    );
    if let Some(configuration) = configuration {
        // JSON holds no single quote: a single-quoted YAML scalar keeps it as is.
        block.push_str(&format!(
            r#"
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{configuration}'"#
        ));
    }
    block
}

pub fn noop_wasm_path() -> PathBuf {
    std::env::var_os("PAASTIS_NOOP_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            paastis_e2e::harness::workspace_root()
                .join("target/wasm32-wasip1/release/paastis_bench_noop_filter.wasm")
        })
}

/// What every arm's Envoy stands in front of: the fake Scalingo with the
/// app, the sidecar that wakes it, and the upstream that answers `200 ok`.
pub struct Backends {
    pub fake: FakeScalingo,
    pub sidecar: Sidecar,
    pub upstream: Upstream,
    /// The shipped filter configuration, with this sidecar's token.
    filter_config: String,
}

impl Backends {
    /// The upstream is pinned to `upstream_cpu` when given.
    pub async fn start(dir: &Path, upstream_cpu: Option<&str>) -> Result<Self, String> {
        let fake = FakeScalingo::start(FakeConfig {
            boot_delay: Duration::from_millis(200),
            // kinder than the real platform until the sidecar lives within it (issue 9); the strict fake is for the tests
            ..FakeConfig::lenient()
        })
        .await
        .map_err(|e| e.to_string())?;
        fake.add_app(FakeApp::web(APP, "osc-fr1", 0));
        let sidecar = util::start_sidecar(&fake, dir, "warn")?;
        let upstream = tokio::task::block_in_place(|| Upstream::start(upstream_cpu))?;
        let mut filter_config = shipped_filter_config(&sidecar.token);
        // `envoy-hot.yaml.tmpl` has no hold listener (nothing waits for a
        // restart of the sidecar here): the warm-up wake goes straight to it.
        if let Some(config) = filter_config.as_object_mut() {
            config.remove("sidecar_hold_cluster");
        }
        let filter_config = filter_config.to_string();
        Ok(Self {
            fake,
            sidecar,
            upstream,
            filter_config,
        })
    }

    /// The Envoy configuration of `arm`: `bench/envoy-hot.yaml.tmpl` with
    /// the arm's filters and routes, in front of these backends.
    pub fn config(&self, arm: Arm) -> Result<String, String> {
        let noop = noop_wasm_path();
        if arm == Arm::Noop && !noop.is_file() {
            return Err(format!(
                "{} is missing: make bench builds it (cargo build -p paastis-bench-noop-filter --target wasm32-wasip1 --release)",
                noop.display()
            ));
        }
        let (routes, filters) = match arm {
            Arm::Plain => (PLAIN_ROUTES, String::new()),
            Arm::Noop => (PLAIN_ROUTES, wasm_filter("noop", &noop, None)),
            Arm::Paastis => (
                GATEWAY_ROUTES,
                wasm_filter("paastis", &wasm_path(), Some(&self.filter_config)),
            ),
            Arm::Baseline => (
                GATEWAY_ROUTES,
                wasm_filter(
                    "paastis",
                    &baseline_wasm().unwrap_or_else(wasm_path),
                    Some(&self.filter_config),
                ),
            ),
        };
        render_template(
            TEMPLATE,
            &[
                ("ROUTES", routes.to_owned()),
                ("WASM_FILTER", filters),
                ("SIDECAR_PORT", self.sidecar.addr.port().to_string()),
                ("UPSTREAM_PORT", self.upstream.addr.port().to_string()),
            ],
        )
    }
}

/// The first request through an arm's Envoy, which must answer `200 ok`
/// from the upstream: for the Paastis arms, the one request that really
/// wakes the app (sidecar + fake) and so warms the cache. Returns how long
/// it took.
pub async fn first_request(
    client: &reqwest::Client,
    arm: Arm,
    envoy: &Envoy,
    sidecar: &Sidecar,
) -> Result<Duration, String> {
    let started = Instant::now();
    let reply = client
        .get(format!("http://{}/", envoy.listen))
        .header("host", HOST)
        .send()
        .await
        .map_err(|e| format!("{}: {e}", arm.label()))?;
    let status = reply.status().as_u16();
    let body = reply.text().await.unwrap_or_default();
    if status != 200 || body != "ok\n" {
        return Err(format!(
            "{}: first request answered {status} {body:?}; envoy log:\n{}\nsidecar log:\n{}",
            arm.label(),
            envoy.log_text(),
            sidecar.log()
        ));
    }
    Ok(started.elapsed())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Plain,
    Noop,
    Paastis,
    /// The Paastis filter from another `.wasm` (`PAASTIS_BASELINE_WASM`),
    /// for a before/after comparison within the same rounds.
    Baseline,
}

/// The `.wasm` of the before/after arm, when one is asked for.
pub fn baseline_wasm() -> Option<PathBuf> {
    std::env::var_os("PAASTIS_BASELINE_WASM").map(PathBuf::from)
}

impl Arm {
    /// The arms of this run: the three, plus the baseline when asked for.
    pub fn all() -> Vec<Arm> {
        let mut arms = vec![Arm::Plain, Arm::Noop, Arm::Paastis];
        if baseline_wasm().is_some() {
            arms.push(Arm::Baseline);
        }
        arms
    }

    pub fn label(self) -> &'static str {
        match self {
            Arm::Plain => "Envoy alone",
            Arm::Noop => "do-nothing wasm filter",
            Arm::Paastis => "Paastis filter, warm cache",
            Arm::Baseline => "Paastis filter, baseline .wasm",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arm::Plain => "plain",
            Arm::Noop => "noop",
            Arm::Paastis => "paastis",
            Arm::Baseline => "baseline",
        }
    }
}

#[derive(Clone, Copy)]
pub struct Plan {
    pub rounds: usize,
    /// Throughput runs: enough connections to keep the Envoy busy.
    pub load: Load,
    /// Latency runs: one connection, no queueing in front of the Envoy.
    pub light: Load,
    /// Unrecorded run before each throughput run.
    pub warmup: Duration,
    /// Envoy worker threads (`--concurrency`) of every arm. With one, the
    /// Envoys are pinned to one core and wrk with the upstream to the other;
    /// with more, nothing is pinned (the workers need the cores).
    pub workers: u32,
}

/// Memory of each Envoy, for the footprint section.
pub struct EnvoyMemory {
    pub label: &'static str,
    pub rss_idle_kib: Option<u64>,
    pub rss_loaded_kib: Option<u64>,
    pub heap_allocated: Option<u64>,
}

/// One arm's runs, one entry per round.
#[derive(Default)]
struct ArmRuns {
    load: Vec<Run>,
    light: Vec<Run>,
    cpu_us_per_request: Vec<f64>,
    envoy_cpu_share: Vec<f64>,
    /// `perf` split of the last round's throughput run.
    profile: Option<crate::perf::Split>,
}

struct Started {
    envoys: Vec<(Arm, Envoy)>,
    _upstream: Upstream,
    rss_idle: Vec<Option<u64>>,
    /// Every process of ours besides the Envoys (upstream, sidecar).
    others: Vec<u32>,
}

/// CPU time used so far by every process of the benchmark: the Envoys, the
/// upstream, the sidecar, this process and the children it reaped (wrk).
fn our_cpu(started: &Started) -> Duration {
    let me = std::process::id();
    started
        .envoys
        .iter()
        .filter_map(|(_, e)| e.pid())
        .chain(started.others.iter().copied())
        .chain(std::iter::once(me))
        .filter_map(cpu_time)
        .sum::<Duration>()
        + children_cpu_time(me).unwrap_or_default()
}

pub async fn run(plan: Plan, dir: &Path) -> Result<(Section, Vec<EnvoyMemory>), String> {
    let began = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One core for the measured Envoys, the other for wrk and the upstream:
    // the Envoy under test is then what limits throughput.
    let (envoy_cpu, load_cpu) = if cores >= 2 && plan.workers == 1 {
        (Some("1"), Some("0"))
    } else {
        (None, None)
    };
    let pinned = envoy_cpu.is_some() && util::has_command("taskset");

    let backends = Backends::start(dir, load_cpu).await?;
    let mut envoys = Vec::new();
    for arm in Arm::all() {
        let config = backends.config(arm)?;
        let envoy = tokio::task::block_in_place(|| {
            Envoy::start(dir, arm.name(), &config, plan.workers, envoy_cpu)
        })?;
        envoys.push((arm, envoy));
    }

    // Every arm answers 200 from the upstream; the Paastis arm wakes the app
    // on its first request (the only callout of the run).
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut warm_ms = 0.0;
    for (arm, envoy) in &envoys {
        let took = first_request(&client, *arm, envoy, &backends.sidecar).await?;
        if *arm == Arm::Paastis {
            warm_ms = util::ms(took);
        }
    }
    let Backends {
        fake,
        sidecar,
        upstream,
        ..
    } = backends;
    let rss_idle = envoys
        .iter()
        .map(|(_, e)| e.pid().and_then(vm_rss_kib))
        .collect();
    let wrk = Wrk::new(dir, load_cpu)?;
    let profile_dir = dir.to_owned();
    let others = [upstream.pid(), sidecar.pid()]
        .into_iter()
        .flatten()
        .collect();
    let started = Started {
        envoys,
        _upstream: upstream,
        rss_idle,
        others,
    };
    // wrk and /proc readings block: off the runtime that serves the fake.
    let mut measured =
        tokio::task::spawn_blocking(move || measure(plan, &wrk, started, &profile_dir))
            .await
            .map_err(|e| e.to_string())??;
    drop(sidecar);
    drop(fake);

    let memory = std::mem::take(&mut measured.memory);
    Ok((
        section(plan, &measured, warm_ms, pinned, began.elapsed()),
        memory,
    ))
}

/// The Paastis arm's counters over its measured runs (warm-ups excluded).
#[derive(Default)]
struct CacheEvidence {
    hits: u64,
    misses: u64,
    callouts: u64,
    /// Requests wrk completed in those runs.
    requests: u64,
    runs: u64,
    /// Misses in the unmeasured warm-up runs.
    warmup_misses: u64,
}

struct Measured {
    arms: Vec<(Arm, ArmRuns)>,
    cache: CacheEvidence,
    memory: Vec<EnvoyMemory>,
    /// Cores used by processes that are not the benchmark's, per throughput
    /// run.
    other_cores: Vec<f64>,
}

/// The filter adds the hits it counted to Envoy's counter on its tick
/// (`activity_flush_ms`, 1 s shipped): the counters are read this long
/// after the last request, so that they hold every request before them.
pub const TICKS_SETTLE: Duration = Duration::from_millis(2500);

fn measure(plan: Plan, wrk: &Wrk, started: Started, dir: &Path) -> Result<Measured, String> {
    let envoys = &started.envoys;
    let mut arms: Vec<(Arm, ArmRuns)> = Arm::all()
        .into_iter()
        .map(|a| (a, ArmRuns::default()))
        .collect();
    let counters = |e: &Envoy| {
        [
            e.counter("paastis.cache_hit"),
            e.counter("paastis.cache_miss"),
            e.counter("paastis.callout"),
        ]
    };
    let mut cache = CacheEvidence::default();
    let mut other_cores = Vec::new();
    for round in 0..plan.rounds {
        let last = round + 1 == plan.rounds;
        for i in 0..envoys.len() {
            // The order rotates: no arm always runs first or last.
            let (arm, envoy) = &envoys[(round + i) % envoys.len()];
            let pid = envoy.pid().ok_or("envoy is gone")?;
            let before_warmup = counters(envoy);
            let warmup = Load {
                duration: plan.warmup,
                ..plan.load
            };
            wrk.run(envoy.listen, HOST, warmup)?;
            let counted = matches!(arm, Arm::Paastis);
            if counted {
                // The warm-up's hits reach the counter on the next tick.
                std::thread::sleep(TICKS_SETTLE);
            }
            let before = counters(envoy);
            let cpu_before = cpu_time(pid).unwrap_or_default();
            let (busy_before, ours_before) = (machine_busy(), our_cpu(&started));
            let recording = (last && *arm != Arm::Plain)
                .then(|| Recording::start(pid, plan.load.duration, dir, arm.name()))
                .flatten();
            let load = wrk.run(envoy.listen, HOST, plan.load)?;
            let profile = recording.and_then(Recording::finish);
            let cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu_before);
            // Whatever else ran on the machine meanwhile perturbs the figures:
            // measured, so that a noisy run shows.
            if let (Some(busy_before), Some(busy_after)) = (busy_before, machine_busy()) {
                let ours = our_cpu(&started).saturating_sub(ours_before);
                let other = busy_after.saturating_sub(busy_before).saturating_sub(ours);
                if load.seconds > 0.0 {
                    other_cores.push(other.as_secs_f64() / load.seconds);
                }
            }
            let light = wrk.run(envoy.listen, HOST, plan.light)?;
            if counted {
                std::thread::sleep(TICKS_SETTLE);
                let after = counters(envoy);
                cache.hits += after[0].saturating_sub(before[0]);
                cache.misses += after[1].saturating_sub(before[1]);
                cache.callouts += after[2].saturating_sub(before[2]);
                cache.warmup_misses += before[1].saturating_sub(before_warmup[1]);
                cache.requests += load.requests + light.requests;
                cache.runs += 2;
            }
            let slot = &mut arms
                .iter_mut()
                .find(|(a, _)| a == arm)
                .ok_or("unknown arm")?
                .1;
            if load.requests > 0 {
                slot.cpu_us_per_request
                    .push(cpu.as_secs_f64() * 1e6 / load.requests as f64);
            }
            if load.seconds > 0.0 {
                slot.envoy_cpu_share.push(cpu.as_secs_f64() / load.seconds);
            }
            if profile.is_some() {
                slot.profile = profile;
            }
            slot.load.push(load);
            slot.light.push(light);
        }
    }
    let memory = envoys
        .iter()
        .zip(&started.rss_idle)
        .map(|((arm, envoy), idle)| EnvoyMemory {
            label: arm.label(),
            rss_idle_kib: *idle,
            rss_loaded_kib: envoy.pid().and_then(vm_rss_kib),
            heap_allocated: envoy.heap().map(|(allocated, _)| allocated),
        })
        .collect();
    Ok(Measured {
        arms,
        cache,
        memory,
        other_cores,
    })
}

fn medians(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
}

/// Round by round `f(a) / f(b)` (or `f(a) - f(b)`): arms of one round ran
/// next to each other, so the pair shares whatever else the machine did.
fn paired(a: &[Run], b: &[Run], f: impl Fn(&Run, &Run) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| f(a, b)).collect()
}

fn section(plan: Plan, m: &Measured, warm_ms: f64, pinned: bool, took: Duration) -> Section {
    let empty = ArmRuns::default();
    let get = |arm: Arm| {
        m.arms
            .iter()
            .find(|(a, _)| *a == arm)
            .map_or(&empty, |(_, r)| r)
    };
    let (plain, noop, ours) = (get(Arm::Plain), get(Arm::Noop), get(Arm::Paastis));
    let ratio = |a: &Run, b: &Run| {
        if b.rps() > 0.0 {
            a.rps() / b.rps()
        } else {
            0.0
        }
    };
    let vs_noop = paired(&ours.load, &noop.load, ratio);
    let vs_plain = paired(&ours.load, &plain.load, ratio);
    let noop_vs_plain = paired(&noop.load, &plain.load, ratio);
    let p99_added = |a: &Run, b: &Run| (a.p99_us - b.p99_us) / 1000.0;
    let added_light = paired(&ours.light, &plain.light, p99_added);
    let added_light_noop = paired(&ours.light, &noop.light, p99_added);
    let added_load = paired(&ours.load, &plain.load, p99_added);
    let med = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let range = |v: &[f64]| {
        format!(
            "{:.2}–{:.2}",
            util::min(v).unwrap_or(f64::NAN),
            util::max(v).unwrap_or(f64::NAN)
        )
    };

    let mut body = format!(
        "{} rounds; each round runs every arm in turn: a throughput run ({} connections, {} s) and a \
         light run (1 connection, {} s). Medians over the rounds; latencies in µs.\n\n",
        plan.rounds,
        plan.load.connections,
        plan.load.duration.as_secs(),
        plan.light.duration.as_secs()
    );
    let rows: Vec<Vec<String>> = m
        .arms
        .iter()
        .map(|(arm, r)| {
            let errors: u64 = r.load.iter().chain(&r.light).map(|x| x.errors).sum();
            vec![
                arm.label().to_owned(),
                f0(medians(&r.load, Run::rps)),
                f0(medians(&r.load, |x| x.p50_us)),
                f0(medians(&r.load, |x| x.p99_us)),
                f0(medians(&r.light, |x| x.p50_us)),
                f0(medians(&r.light, |x| x.p99_us)),
                f1(median(&r.cpu_us_per_request).unwrap_or(f64::NAN)),
                format!("{:.0} %", 100.0 * median(&r.envoy_cpu_share).unwrap_or(0.0)),
                errors.to_string(),
            ]
        })
        .collect();
    body.push_str(&table(
        &[
            "arm",
            "req/s",
            "p50",
            "p99",
            "p50 (1 conn)",
            "p99 (1 conn)",
            "Envoy CPU µs/req",
            "Envoy CPU",
            "errors",
        ],
        &rows,
    ));
    body.push_str(&format!(
        "\nThroughput ratios, round by round (median, and the range over the rounds):\n\
         Paastis / do-nothing **{}** ({}), Paastis / Envoy alone **{}** ({}), do-nothing / Envoy alone {} ({}).\n\n\
         p99 added by the Paastis filter, round by round (median): **{:+.3} ms** at one connection vs Envoy alone \
         ({:+.3} ms vs the do-nothing filter); {:+.3} ms under the throughput load.\n\n",
        f2(med(&vs_noop)),
        range(&vs_noop),
        f2(med(&vs_plain)),
        range(&vs_plain),
        f2(med(&noop_vs_plain)),
        range(&noop_vs_plain),
        med(&added_light),
        med(&added_light_noop),
        med(&added_load),
    ));

    // Where the CPU goes.
    let cpu = |r: &ArmRuns| median(&r.cpu_us_per_request).unwrap_or(f64::NAN);
    body.push_str(&format!(
        "Envoy CPU per request (`/proc/PID/stat` over each throughput run, median): Envoy alone {} µs; \
         the do-nothing filter adds {} µs (the floor any wasm filter pays: a VM context per stream and \
         one call into the VM per callback); the Paastis filter adds {} µs more (its own work).\n",
        f1(cpu(plain)),
        f1(cpu(noop) - cpu(plain)),
        f1(cpu(ours) - cpu(noop)),
    ));
    if let Some((_, base)) = m.arms.iter().find(|(a, _)| *a == Arm::Baseline) {
        // Same rounds, next to each other: the steadiest before/after.
        let per_round = |a: &ArmRuns, b: &ArmRuns| -> Vec<f64> {
            a.cpu_us_per_request
                .iter()
                .zip(&b.cpu_us_per_request)
                .map(|(x, y)| x - y)
                .collect()
        };
        let vs_base = paired(&ours.load, &base.load, ratio);
        body.push_str(&format!(
            "Before/after in the same rounds (the baseline arm runs the `.wasm` of `PAASTIS_BASELINE_WASM`, \
             {}): CPU per request beyond the do-nothing filter, median of the per-round differences, {} µs \
             for the baseline, {} µs for this `.wasm`; this `.wasm` minus the baseline, round by round: \
             median {} µs (range {}); throughput this / baseline {} ({}).\n",
            baseline_wasm().map_or(String::new(), |p| p.display().to_string()),
            f1(med(&per_round(base, noop))),
            f1(med(&per_round(ours, noop))),
            f1(med(&per_round(ours, base))),
            range(&per_round(ours, base)),
            f2(med(&vs_base)),
            range(&vs_base),
        ));
    }
    let profiled: Vec<(&str, &crate::perf::Split, f64)> = [Arm::Noop, Arm::Paastis]
        .iter()
        .filter_map(|a| {
            let r = get(*a);
            // The profile's shares are steadier than one run's CPU: they are
            // applied to the median CPU per request.
            let cpu = median(&r.cpu_us_per_request)?;
            r.profile.as_ref().map(|p| (a.label(), p, cpu))
        })
        .collect();
    if profiled.is_empty() {
        body.push_str("\n(No `perf` profile: perf is missing or not allowed here.)\n\n");
    } else {
        let rows: Vec<Vec<String>> = profiled
            .iter()
            .map(|(label, split, cpu)| {
                let [wasm, envoy, kernel, other] = split.shares();
                vec![
                    (*label).to_owned(),
                    f1(wasm * cpu),
                    f1(envoy * cpu),
                    f1(kernel * cpu),
                    f1(other * cpu),
                    split.total().to_string(),
                ]
            })
            .collect();
        body.push_str(
            "\nProfile of the last round's throughput runs (`perf record -F 999` on the Envoy): the median CPU \
             per request split by where the samples fell, µs. The wasm code is the filter itself with the SDK; \
             Envoy's own code holds the host side of every proxy-wasm call (header maps, shared data, \
             metrics, the calls into and out of the VM) besides proxying:\n\n",
        );
        body.push_str(&table(
            &[
                "arm",
                "wasm code (JIT)",
                "Envoy",
                "kernel",
                "libc, other",
                "samples",
            ],
            &rows,
        ));
        body.push('\n');
    }
    // Where the filter's own cost goes, from the two profiles.
    let part = |label: &str, index: usize| {
        profiled
            .iter()
            .find(|(l, _, _)| *l == label)
            .map(|(_, split, cpu)| split.shares()[index] * cpu)
    };
    let own = cpu(ours) - cpu(noop);
    let budget = 0.05 * cpu(noop);
    let own_share = own / cpu(noop);
    body.push_str(&format!(
        "Where the Paastis filter's own {} µs per request ({:.1} % of the do-nothing filter's CPU per request) \
         go: on each hit it reads the request's header map and the app's entry in shared data (two host calls \
         that each call back into the VM to allocate the copy) and sets three headers: five host calls \
         (pinned by the filter's test `a_warm_hit_makes_five_host_calls_and_reads_the_clock_only_near_expiry`: \
         the clock is read only when the entry expires within two ticks, the hit is counted in the VM and \
         added to the counter on the tick, and Envoy clears the route cache on each header change by \
         itself), and one more to read the response's `:status`; plus its own code (host matching, the \
         cache entry's checks, the activity record). Section 1c counts the instructions this costs.{}{}\n\n",
        f1(own),
        100.0 * own_share,
        match (
            part(Arm::Paastis.label(), 0).zip(part(Arm::Noop.label(), 0)),
            part(Arm::Paastis.label(), 1).zip(part(Arm::Noop.label(), 1)),
        ) {
            (Some((w1, w0)), Some((e1, e0))) => format!(
                " The profile puts {} µs of the difference in wasm code and {} µs in Envoy (the host side).",
                f1(w1 - w0),
                f1(e1 - e0)
            ),
            _ => String::new(),
        },
        if med(&vs_noop) < 0.95 {
            format!(
                " Reaching 0.95 of the do-nothing filter's throughput leaves the filter about {} µs \
                 per request here (5 % of the do-nothing filter's {} µs).",
                f1(budget),
                f1(cpu(noop))
            )
        } else {
            String::new()
        },
    ));
    let c = &m.cache;
    body.push_str(&format!(
        "Cache proof (the Paastis Envoy's counters over its {} measured runs): `paastis.cache_hit` +{} for {} \
         requests wrk completed (a run's requests still in flight when it stops are served but not counted by \
         wrk), `paastis.cache_miss` +{}, `paastis.callout` +{}. The one wake before the rounds took {:.0} ms. \
         Misses in the unmeasured warm-up runs: {} (the shipped `cache_ttl_ms` is 30 s and an idle arm gets \
         no activity refresh while the other arms run: its entry can expire between rounds, and the warm-up \
         wakes it again).\n\n",
        c.runs, c.hits, c.requests, c.misses, c.callouts, warm_ms, c.warmup_misses
    ));
    let other_median = median(&m.other_cores).unwrap_or(0.0);
    let other_max = util::max(&m.other_cores).unwrap_or(0.0);
    body.push_str(&format!(
        "Other processes on the machine (not the benchmark's) used {other_median:.2} cores at the median of \
         the throughput runs, {other_max:.2} at most{}.\n\n",
        if other_max > 0.1 {
            ": the machine was not quiet; the rounds below show how much that moved the figures"
        } else {
            ""
        }
    ));
    let per_round: Vec<Vec<String>> = (0..plan.rounds)
        .map(|round| {
            let mut row = vec![(round + 1).to_string()];
            for r in [plain, noop, ours] {
                row.push(r.load.get(round).map_or("-".into(), |x| f0(x.rps())));
            }
            for r in [plain, noop, ours] {
                row.push(
                    r.cpu_us_per_request
                        .get(round)
                        .map_or("-".into(), |x| f1(*x)),
                );
            }
            let runs = m.arms.len();
            let others = m.other_cores.get(round * runs..(round + 1) * runs);
            row.push(others.map_or("-".into(), |o| f2(o.iter().sum::<f64>() / o.len() as f64)));
            row
        })
        .collect();
    body.push_str(
        "Each round (req/s, then Envoy CPU µs/req; last column: cores used by other processes, mean of the round's runs):\n\n",
    );
    body.push_str(&table(
        &[
            "round",
            "alone",
            "do-nothing",
            "Paastis",
            "alone µs",
            "do-nothing µs",
            "Paastis µs",
            "other",
        ],
        &per_round,
    ));
    body.push_str(&format!(
        "\nMethod: one upstream (`paastis-bench upstream`, a one-thread HTTP/1.1 keep-alive server answering \
         `200 ok`), three Envoys started from `bench/envoy-hot.yaml.tmpl` with `--concurrency {}` and \
         `-l warning`, the Paastis one with the filter configuration of `envoy/gateway.yaml` (its cache warmed \
         by one request that wakes the app through the sidecar and the fake). {} \
         Before each throughput run, an unmeasured {} s warm-up. wrk runs one thread (`wrk -t1`); latencies \
         are wrk's, in the client. Under the throughput load every connection is always busy, so its latency \
         is mostly queueing (connections / throughput): the light runs show what one request pays.\n",
        plan.workers,
        if pinned {
            "The Envoys are pinned to CPU 1, wrk and the upstream to CPU 0 (`taskset`)."
        } else {
            "Nothing is pinned (one core, or no `taskset`)."
        },
        plan.warmup.as_secs(),
    ));

    let added_load_noop = med(&paired(&ours.load, &noop.load, p99_added));
    let (vs_noop, vs_plain, added_light, added_load) = (
        med(&vs_noop),
        med(&vs_plain),
        med(&added_light),
        med(&added_load),
    );
    let workers = match plan.workers {
        1 => "1 worker".to_owned(),
        n => format!("{n} workers"),
    };
    let what = |w: &str| format!("hot path, {workers}: {w}");
    let targets = vec![
        Target::new(
            &what("throughput vs do-nothing wasm filter"),
            ">= 0.95",
            f2(vs_noop),
            Some(vs_noop >= 0.95),
        ),
        Target::new(
            &what("throughput vs Envoy alone"),
            ">= 0.85",
            f2(vs_plain),
            Some(vs_plain >= 0.85),
        ),
        Target::new(
            &what("Envoy CPU per hit beyond the do-nothing filter"),
            "<= 5 %",
            format!("{:.1} % ({} µs)", 100.0 * own_share, f1(own)),
            Some(own_share <= 0.05),
        ),
        Target::new(
            &what("p99 added vs Envoy alone (1 connection)"),
            "< 0.2 ms",
            format!("{added_light:+.3} ms"),
            Some(added_light < 0.2),
        ),
        Target::new(
            &what("p99 added vs Envoy alone (throughput load)"),
            "< 0.2 ms",
            format!("{added_load:+.3} ms"),
            Some(added_load < 0.2),
        ),
        Target::new(
            &what("p99 added vs the do-nothing filter (throughput load)"),
            "< 0.1 ms",
            format!("{added_load_noop:+.3} ms"),
            Some(added_load_noop < 0.1),
        ),
    ];
    Section {
        title: if plan.workers == 1 {
            "1. Hot path (warm cache)".to_owned()
        } else {
            format!("1b. Hot path (warm cache), {workers}")
        },
        body,
        targets,
        took,
    }
}

//! 1c. Instructions per request: what one request costs each arm of the hot
//! path, counted in instructions by callgrind rather than timed.
//!
//! The hot path's CPU figures ([`crate::hot`]) are the judge of time, but on
//! a small shared machine they move by several µs from one round to the
//! next, more than the filter's own cost; and hardware counters are not
//! available here. Instructions are not time (cache misses and locks cost
//! time without instructions), but the count repeats whatever else the
//! machine does, so it can judge a change to the filter.
//!
//! Every arm's Envoy is started as the hot path starts it (same template,
//! filters, routes and backends, the Paastis arms' cache warmed by one real
//! wake through the sidecar and the fake), with one worker, under
//! `valgrind --tool=callgrind`. Then, arm after arm: warm-up batches until
//! two consecutive ones agree (V8's tier-up and Envoy's lazy set-up done:
//! measured, not assumed), then two measured batches of N sequential
//! requests on one keep-alive connection, each between a
//! `callgrind_control -z` (zero) and a `callgrind_control -d` (dump): the
//! dump's total `Ir` over N is the instructions per request of the whole
//! process, every thread. The Paastis arms' counters prove every measured
//! request a cache hit; the admin's V8 gauge proves the wasm ran under
//! valgrind.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::envoy::Envoy;
use crate::hot::{baseline_wasm, first_request, Arm, Backends, HOST, TICKS_SETTLE};
use crate::report::{table, Section, Target};
use crate::util::has_command;

/// The valgrind command line every arm's Envoy runs under, each flag with
/// its reason.
fn valgrind_args(out_file: &Path) -> Vec<String> {
    vec![
        "valgrind".to_owned(),
        // Counts every instruction executed, per thread, summed in a dump.
        "--tool=callgrind".to_owned(),
        // V8 writes machine code (the wasm tiers, its builtins' trampolines)
        // into anonymous memory and rewrites it in place: valgrind must
        // notice and translate it again, or it would run (and count) stale
        // translations. Code from files (Envoy itself) is never rewritten:
        // not checked, which keeps valgrind's cost down.
        "--smc-check=all-non-file".to_owned(),
        // Dumps (`callgrind_control -d`) go to OUT.1, OUT.2, ...
        format!("--callgrind-out-file={}", out_file.display()),
        // Valgrind's own messages, kept apart from Envoy's log.
        format!(
            "--log-file={}",
            out_file.with_extension("valgrind.log").display()
        ),
    ]
    // Not needed: `--vex-iropt-register-updates=allregs-at-mem-access` (V8's
    // wasm trap handler reads registers at a faulting memory access; no
    // request here makes one, and the count does not depend on it);
    // `--fair-sched` (valgrind runs one thread at a time either way, and
    // the count does not depend on the order).
}

#[derive(Clone, Copy)]
pub struct Plan {
    /// Requests per measured batch (N).
    pub requests: u32,
    /// Measured batches per arm, to show the figure repeat.
    pub batches: usize,
    /// Requests per warm-up batch.
    pub warmup_requests: u32,
    /// Warm-up batches at least and at most.
    pub warmup_min: usize,
    pub warmup_max: usize,
    /// The warm-up ends when two consecutive batches' instructions per
    /// request differ by this fraction or less.
    pub settled_within: f64,
    /// How long to wait for an Envoy under valgrind to be ready.
    pub startup: Duration,
    /// How long an idle Envoy's instructions are counted (its timers).
    pub idle: Duration,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            requests: 2000,
            batches: 2,
            warmup_requests: 250,
            warmup_min: 3,
            warmup_max: 10,
            settled_within: 0.01,
            startup: Duration::from_secs(300),
            idle: Duration::from_secs(2),
        }
    }

    pub fn quick() -> Self {
        Self {
            requests: 300,
            warmup_requests: 100,
            warmup_max: 5,
            ..Self::full()
        }
    }
}

/// The whole-process instruction count of a callgrind dump (`events: Ir`,
/// the default and only event without cache simulation): its `summary:`,
/// the events of the dumped part. (The `totals:` line sums the file's cost
/// lines and may differ by a little: the cost still on the stack of
/// functions that are running.)
pub fn parse_dump(text: &str) -> Option<u64> {
    let events = text.lines().find_map(|l| l.strip_prefix("events:"))?;
    if events.split_whitespace().collect::<Vec<_>>() != ["Ir"] {
        return None;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether the warm-up is over: the last two batches' instructions per
/// request differ by `within` (a fraction of the later one) or less.
pub fn settled(per_request: &[f64], within: f64) -> bool {
    match per_request {
        [.., a, b] if *b > 0.0 => ((a - b) / b).abs() <= within,
        _ => false,
    }
}

/// One Envoy under callgrind, driven by `callgrind_control`.
struct Callgrind {
    pid: u32,
    out_file: PathBuf,
    dumps: u32,
}

impl Callgrind {
    fn control(&self, flag: &str) -> Result<(), String> {
        let out = Command::new("callgrind_control")
            .arg(flag)
            .arg(self.pid.to_string())
            .output()
            .map_err(|e| format!("callgrind_control: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && text.contains("OK") {
            Ok(())
        } else {
            Err(format!("callgrind_control {flag} {}: {text}", self.pid))
        }
    }

    /// Zeroes the counters.
    fn zero(&self) -> Result<(), String> {
        self.control("-z")
    }

    /// Dumps the counters (since the last zero or dump) and reads them.
    fn dump(&mut self) -> Result<u64, String> {
        self.control("-d")?;
        self.dumps += 1;
        let file = PathBuf::from(format!("{}.{}", self.out_file.display(), self.dumps));
        // callgrind_control returns once valgrind has taken the command; the
        // file is complete when its `totals:` line (the last) is there.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(d) = std::fs::read_to_string(&file)
                .ok()
                .filter(|t| t.contains("\ntotals:"))
                .and_then(|t| parse_dump(&t))
            {
                // Kept for `callgrind_annotate` when asked for, else removed.
                if let Some(keep) = std::env::var_os(KEEP_DUMPS) {
                    let name = file.file_name().unwrap_or_default();
                    let _ = std::fs::copy(&file, PathBuf::from(keep).join(name));
                }
                let _ = std::fs::remove_file(&file);
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(format!("no callgrind dump in {}", file.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A folder where each batch's callgrind dump is copied (`<arm>.callgrind.<n>`),
/// to see where the instructions go: `callgrind_annotate --inclusive=no FILE`
/// splits them by object (Envoy's binary, V8's generated code as `???`,
/// libc).
const KEEP_DUMPS: &str = "PAASTIS_BENCH_CALLGRIND_KEEP";

/// One HTTP/1.1 keep-alive connection to an Envoy, sending wrk's request
/// (`GET /` with the app's host) again and again, one at a time: every
/// request of a batch is the same bytes on the same connection, so no
/// connection set-up is counted.
struct KeepAlive {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr, host: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        // An Envoy under valgrind is slow, not that slow.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            request: format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends the request and reads the whole answer: its status and body.
    fn get(&mut self) -> Result<(u16, Vec<u8>), String> {
        self.stream
            .write_all(&self.request)
            .map_err(|e| format!("send: {e}"))?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((status, head, body)) = parse_head(&self.buf)? {
                if self.buf.len() >= head + body {
                    let answer = self.buf[head..head + body].to_vec();
                    self.buf.drain(..head + body);
                    return Ok((status, answer));
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("Envoy closed the connection".to_owned()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

/// The status, the head's length and the body's length (its
/// `content-length`) of the answer at the start of `buf`; `None` until its
/// head is complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad answer: {e}")),
    };
    let status = response.code.ok_or("answer without a status")?;
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        // Envoy passes on the upstream's content-length (and its own
        // direct answers have one): anything else is not this bench's.
        .ok_or("answer without a content-length")?;
    Ok(Some((status, head, length)))
}

/// One batch of requests between a zero and a dump.
struct Batch {
    requests: u32,
    ir: u64,
    /// Connections Envoy accepted during the batch (0: the keep-alive
    /// connection opened before it carried every request).
    connections: u64,
}

impl Batch {
    fn per_request(&self) -> f64 {
        self.ir as f64 / f64::from(self.requests.max(1))
    }
}

const COUNTERS: &str =
    "paastis\\.|http\\.gateway\\.downstream_cx_total|wasm\\.envoy\\.wasm\\.runtime";
const CONNECTIONS: &str = "http.gateway.downstream_cx_total";

fn counter(stats: &[(String, u64)], suffix: &str) -> u64 {
    stats
        .iter()
        .filter(|(name, _)| name.ends_with(suffix))
        .map(|(_, v)| *v)
        .sum()
}

/// Sends `requests` sequential requests on `conn` between a zero and a
/// dump; every answer must be `200 ok`.
fn batch(
    conn: &mut KeepAlive,
    envoy: &Envoy,
    callgrind: &mut Callgrind,
    requests: u32,
) -> Result<Batch, String> {
    let before = counter(&envoy.stats(COUNTERS), CONNECTIONS);
    callgrind.zero()?;
    for i in 0..requests {
        let (status, body) = conn.get().map_err(|e| format!("request {i}: {e}"))?;
        if status != 200 || body != b"ok\n" {
            return Err(format!(
                "request {i} answered {status} {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    let ir = callgrind.dump()?;
    let after = counter(&envoy.stats(COUNTERS), CONNECTIONS);
    Ok(Batch {
        requests,
        ir,
        connections: after.saturating_sub(before),
    })
}

/// The Paastis filter's counters over an arm's measured batches.
#[derive(Default)]
struct CacheProof {
    hits: u64,
    misses: u64,
    callouts: u64,
    stale: u64,
}

/// One arm's figures.
struct ArmCount {
    arm: Arm,
    warmup: Vec<f64>,
    settled: bool,
    batches: Vec<Batch>,
    cache: CacheProof,
    /// Instructions per second of the idle Envoy (its timers).
    idle_per_second: f64,
    /// Seconds per measured request under callgrind.
    seconds_per_request: f64,
    /// `wasm.envoy.wasm.runtime.v8.active`: V8 VMs alive.
    v8_vms: u64,
    /// Lines valgrind wrote besides its banner (warnings, errors).
    valgrind_notes: Vec<String>,
}

impl ArmCount {
    fn mean(&self) -> f64 {
        let n = self.batches.len().max(1) as f64;
        self.batches.iter().map(Batch::per_request).sum::<f64>() / n
    }
}

async fn count_arm(
    plan: Plan,
    arm: Arm,
    envoy: &Envoy,
    out_file: &Path,
    backends: &Backends,
) -> Result<ArmCount, String> {
    // Generous: the first request through an Envoy under valgrind compiles
    // what it runs, and the Paastis arm's wakes the app.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    first_request(&client, arm, envoy, &backends.sidecar).await?;
    tokio::task::block_in_place(|| count_warm_arm(plan, arm, envoy, out_file))
}

/// [`count_arm`] once the arm answered its first request.
fn count_warm_arm(
    plan: Plan,
    arm: Arm,
    envoy: &Envoy,
    out_file: &Path,
) -> Result<ArmCount, String> {
    let pid = envoy.pid().ok_or("envoy is gone")?;
    let mut callgrind = Callgrind {
        pid,
        out_file: out_file.to_owned(),
        dumps: 0,
    };
    let mut conn = KeepAlive::connect(envoy.listen, HOST)?;
    let mut warmup = Vec::new();
    let mut is_settled = false;
    while warmup.len() < plan.warmup_max {
        let b = batch(&mut conn, envoy, &mut callgrind, plan.warmup_requests)?;
        warmup.push(b.per_request());
        if warmup.len() >= plan.warmup_min && settled(&warmup, plan.settled_within) {
            is_settled = true;
            break;
        }
    }
    std::thread::sleep(TICKS_SETTLE);
    let before = envoy.stats(COUNTERS);
    let mut batches = Vec::new();
    let started = Instant::now();
    for _ in 0..plan.batches {
        batches.push(batch(&mut conn, envoy, &mut callgrind, plan.requests)?);
    }
    let seconds_per_request =
        started.elapsed().as_secs_f64() / f64::from(plan.requests) / plan.batches as f64;
    // The idle Envoy's timers (stats flush, the filter's tick) also run
    // during a batch, about 50 times longer under valgrind than natively:
    // counted apart, to show how little of a batch they are.
    callgrind.zero()?;
    std::thread::sleep(plan.idle);
    let idle = callgrind.dump()?;
    std::thread::sleep(TICKS_SETTLE.saturating_sub(plan.idle));
    let after = envoy.stats(COUNTERS);
    let delta = |suffix: &str| counter(&after, suffix).saturating_sub(counter(&before, suffix));
    let valgrind_log =
        std::fs::read_to_string(out_file.with_extension("valgrind.log")).unwrap_or_default();
    Ok(ArmCount {
        arm,
        warmup,
        settled: is_settled,
        batches,
        cache: CacheProof {
            hits: delta("paastis.cache_hit"),
            misses: delta("paastis.cache_miss"),
            callouts: delta("paastis.callout"),
            stale: delta("paastis.stale_hit"),
        },
        idle_per_second: idle as f64 / plan.idle.as_secs_f64(),
        seconds_per_request,
        v8_vms: counter(&after, "wasm.envoy.wasm.runtime.v8.active"),
        valgrind_notes: valgrind_notes(&valgrind_log),
    })
}

/// Valgrind's log without its banner and the callgrind_control chatter:
/// what it says about the run (an unhandled instruction, a warning).
fn valgrind_notes(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| l.split_once("== ").map_or(l, |(_, rest)| rest).trim())
        .filter(|l| !l.is_empty())
        .filter(|l| {
            ![
                "Callgrind, a call-graph generating cache profiler",
                "Copyright (C)",
                "Using Valgrind-",
                "Command:",
                "Parent PID:",
                "For interactive control, run 'callgrind_control -h'.",
            ]
            .iter()
            .any(|banner| l.starts_with(banner))
        })
        .map(str::to_owned)
        .collect()
}

pub async fn run(plan: Plan, dir: PathBuf) -> Result<Section, String> {
    let dir = dir.as_path();
    let began = Instant::now();
    for tool in ["valgrind", "callgrind_control"] {
        if !has_command(tool) {
            return Err(format!(
                "{tool} is missing: make bench-tools installs valgrind"
            ));
        }
    }
    let backends = Backends::start(dir, None).await?;
    // Every arm's Envoy starts at once: under valgrind a start takes a
    // minute or more, and they overlap on the cores. Then they are counted
    // one after the other, the others idle meanwhile.
    let mut envoys = Vec::new();
    for arm in Arm::all() {
        let config = backends.config(arm)?;
        let out_file = dir.join(format!("{}.callgrind", arm.name()));
        let envoy = Envoy::spawn(dir, arm.name(), &config, 1, None, &valgrind_args(&out_file))?;
        envoys.push((arm, envoy, out_file));
    }
    for (_, envoy, _) in &mut envoys {
        let within = plan.startup.saturating_sub(began.elapsed());
        tokio::task::block_in_place(|| envoy.ready(within))?;
    }
    let startup = began.elapsed();
    let mut counts = Vec::new();
    for (arm, envoy, out_file) in &envoys {
        let count = count_arm(plan, *arm, envoy, out_file, &backends)
            .await
            .map_err(|e| format!("{}: {e}; envoy log:\n{}", arm.label(), envoy.log_text()))?;
        counts.push(count);
    }
    drop(envoys);
    Ok(section(plan, &counts, startup, began.elapsed()))
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn section(plan: Plan, counts: &[ArmCount], startup: Duration, took: Duration) -> Section {
    let get = |arm: Arm| counts.iter().find(|c| c.arm == arm);
    let mut body = format!(
        "Instructions Envoy executes per request (whole process, every thread), counted by callgrind: \
         for each arm, {} measured batches of {} sequential requests on one keep-alive connection, \
         after a warm-up.\n\n",
        plan.batches, plan.requests
    );
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|c| {
            let mut row = vec![c.arm.label().to_owned()];
            for b in &c.batches {
                row.push(thousands(b.per_request()));
            }
            let per: Vec<f64> = c.batches.iter().map(Batch::per_request).collect();
            let spread = match (crate::util::min(&per), crate::util::max(&per)) {
                (Some(lo), Some(hi)) if lo > 0.0 => format!("{:.2} %", 100.0 * (hi - lo) / lo),
                _ => "-".to_owned(),
            };
            row.push(spread);
            row.push(
                c.warmup
                    .iter()
                    .map(|v| thousands(*v))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if c.settled { "" } else { " (not settled)" },
            );
            row
        })
        .collect();
    let mut header: Vec<String> = vec!["arm".to_owned()];
    for i in 1..=plan.batches {
        header.push(format!("instructions/request, batch {i}"));
    }
    header.push("batch spread".to_owned());
    header.push(format!(
        "warm-up batches of {} (instructions/request)",
        plan.warmup_requests
    ));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    body.push_str(&table(&header, &rows));
    // How far the first warm-up batch (right after the first request) was
    // from the measured figure: what a warm-up had left to do.
    let first_off = counts
        .iter()
        .filter_map(|c| Some((c.warmup.first()? - c.mean()) / c.mean()))
        .fold(
            0.0_f64,
            |worst, off| if off.abs() > worst.abs() { off } else { worst },
        );
    body.push_str(&format!(
        "\nThe first warm-up batch, right after each arm's first request, differed from the measured \
         figure by {:+.2} % at most{}.\n",
        100.0 * first_off,
        if first_off.abs() <= plan.settled_within {
            ": nothing was left to warm up after the first request"
        } else {
            ""
        }
    ));

    let mut targets = Vec::new();
    if let (Some(plain), Some(noop)) = (get(Arm::Plain), get(Arm::Noop)) {
        body.push_str(&format!(
            "\nThe do-nothing filter adds {} instructions per request to Envoy alone ({:.1} %): the floor \
             any wasm filter pays.\n",
            thousands(noop.mean() - plain.mean()),
            100.0 * (noop.mean() - plain.mean()) / plain.mean()
        ));
        for arm in [Arm::Paastis, Arm::Baseline] {
            let Some(ours) = get(arm) else { continue };
            let beyond = ours.mean() - noop.mean();
            let share = beyond / noop.mean();
            let per_batch: Vec<String> = ours
                .batches
                .iter()
                .zip(&noop.batches)
                .map(|(a, b)| {
                    format!(
                        "{:.1} %",
                        100.0 * (a.per_request() - b.per_request()) / b.per_request()
                    )
                })
                .collect();
            body.push_str(&format!(
                "{}{}: {} instructions per request beyond the do-nothing filter, **{:.1} %** of the \
                 do-nothing filter's {} (batch by batch: {}).\n",
                ours.arm.label(),
                if arm == Arm::Baseline {
                    baseline_wasm().map_or(String::new(), |p| format!(" (`{}`)", p.display()))
                } else {
                    String::new()
                },
                thousands(beyond),
                100.0 * share,
                thousands(noop.mean()),
                per_batch.join(", "),
            ));
            // The timers (stats flush, the filter's tick: its flush and
            // lease renewal) cost instructions per second, not per
            // request: spread over callgrind's slow pace they weigh ~50
            // times what they weigh at native speed.
            let own = |c: &ArmCount| c.mean() - c.idle_per_second * c.seconds_per_request;
            let beyond_own = own(ours) - own(noop);
            body.push_str(&format!(
                "Without the timers (each arm's idle instructions per second times its measured pace, \
                 taken out of both arms): {} instructions per hit beyond the do-nothing filter, {:.1} %.\n",
                thousands(beyond_own),
                100.0 * beyond_own / own(noop)
            ));
            targets.push(Target::new(
                &format!(
                    "instructions per hit beyond the do-nothing filter{}",
                    if arm == Arm::Baseline {
                        " (baseline .wasm)"
                    } else {
                        ""
                    }
                ),
                "<= 5 %",
                format!("{:.1} % ({} instr.)", 100.0 * share, thousands(beyond)),
                // The baseline is reported, the build under test judged.
                (arm == Arm::Paastis).then_some(share <= 0.05),
            ));
        }
    }

    body.push_str("\nProof that the count is of what it claims:\n\n");
    for c in counts {
        let requests: u64 = c.batches.iter().map(|b| u64::from(b.requests)).sum();
        let mut line = format!(
            "- {}: {} V8 VM(s) alive (`wasm.envoy.wasm.runtime.v8.active`); {} new connection(s) during \
             the measured batches",
            c.arm.label(),
            c.v8_vms,
            c.batches.iter().map(|b| b.connections).sum::<u64>()
        );
        if matches!(c.arm, Arm::Paastis | Arm::Baseline) {
            let p = &c.cache;
            line.push_str(&format!(
                "; over its {requests} measured requests `paastis.cache_hit` +{}, `paastis.cache_miss` +{}, \
                 `paastis.callout` +{}, `paastis.stale_hit` +{}",
                p.hits, p.misses, p.callouts, p.stale
            ));
            line.push_str(if p.hits == requests && p.misses + p.callouts + p.stale == 0 {
                " (every measured request a cache hit)"
            } else {
                " (**not every measured request was a fresh cache hit**: the figure is not a hit's)"
            });
        }
        line.push_str(&format!(
            "; idle, {} instructions per second (timers), {} per request at the measured pace of {:.1} ms \
             per request under callgrind",
            thousands(c.idle_per_second),
            thousands(c.idle_per_second * c.seconds_per_request),
            1000.0 * c.seconds_per_request
        ));
        if c.valgrind_notes.is_empty() {
            line.push_str("; valgrind reported nothing.\n");
        } else {
            line.push_str(&format!(
                "; valgrind said: `{}`.\n",
                c.valgrind_notes.join(" / ")
            ));
        }
        body.push_str(&line);
    }

    body.push_str(&format!(
        "\nMethod: each arm's Envoy is the hot path's (`bench/envoy-hot.yaml.tmpl`, same filters, routes \
         and backends; the Paastis arm's cache warmed by one request that wakes the app through the \
         sidecar and the fake), with `--concurrency 1`, run under `valgrind --tool=callgrind \
         --smc-check=all-non-file` (V8 writes and rewrites machine code in anonymous memory: valgrind must \
         translate it again when it changes; Envoy's own code, from its file, is never rewritten, so it is \
         not checked). Their start under valgrind took {:.0} s. Then, arm after arm: warm-up batches of {} \
         requests, each counted, until two consecutive ones are within {:.0} % (at least {}, at most {}: \
         whatever Envoy sets up lazily, or V8 compiles late, would show as higher first batches; \
         proxy-wasm's V8 turns Liftoff off, so the wasm is compiled by TurboFan when it loads and no \
         tier-up is expected), then {} \
         batches of exactly {} sequential requests on one keep-alive connection (the bench's own \
         HTTP/1.1 client sends wrk's request, `GET /` with the app's host, and checks every answer is \
         `200 ok`; Envoy's `downstream_cx_total` proves no other connection was opened), each between `callgrind_control -z` and `callgrind_control -d`; \
         instructions per request is the dump's total `Ir` (`summary:`) over {}. Finally {} s idle, \
         counted the same way.\n\n\
         Instructions are not CPU time: a cache miss, a lock or a system call costs time that the count \
         does not show, and valgrind runs the threads one at a time. Callgrind counts the process's own \
         (user-space) instructions only: the kernel's work for each request (the sockets on loopback, \
         epoll) is not in the count, so the filter's share of the count is larger than its share of \
         Envoy's CPU time, and the 5 % target judged on instructions is the stricter reading. But the count is the same whatever \
         else the machine does, so it judges a change (a filter that executes fewer instructions per hit \
         is cheaper) where the CPU times of the hot path swing by more than the difference. The hot \
         path's wrk figures stay the judge of time.\n",
        startup.as_secs_f64(),
        plan.warmup_requests,
        100.0 * plan.settled_within,
        plan.warmup_min,
        plan.warmup_max,
        plan.batches,
        plan.requests,
        plan.requests,
        plan.idle.as_secs(),
    ));
    Section {
        title: "1c. Instructions per request (callgrind)".to_owned(),
        body,
        targets,
        took,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ir_of_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\npid: 19508\ncmd:  envoy -c cfg.yaml\n\
                    part: 1\n\ndesc: I1 cache: \ndesc: Trigger: dump\n\npositions: line\n\
                    events: Ir\nsummary: 27338787\n\n\nfl=(1) ???\nfn=(1) 0x0000000000a1b2c3\n\
                    0 12\n\ntotals: 27578918\n";
        assert_eq!(parse_dump(dump), Some(27_338_787));
        // Other events besides: not an instruction count alone.
        assert_eq!(parse_dump("events: Ir Dr\nsummary: 5 6\n"), None);
        assert_eq!(parse_dump("events: Ir\n"), None);
    }

    #[test]
    fn reads_an_answer_head_once_complete() {
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n";
        let head = answer.len() - 3;
        assert_eq!(parse_head(answer), Ok(Some((200, head, 3))));
        // The body need not be there yet; the head must.
        assert_eq!(parse_head(&answer[..head]), Ok(Some((200, head, 3))));
        assert_eq!(parse_head(&answer[..head - 1]), Ok(None));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"not http\r\n\r\n").is_err());
    }

    #[test]
    fn warm_up_settles_when_two_batches_agree() {
        assert!(!settled(&[], 0.01));
        assert!(!settled(&[100.0], 0.01));
        assert!(!settled(&[300.0, 150.0], 0.01));
        assert!(settled(&[300.0, 150.0, 149.0], 0.01));
        assert!(!settled(&[300.0, 149.0, 153.0], 0.01));
    }

    #[test]
    fn keeps_what_valgrind_says_beyond_its_banner() {
        let log = "==1== Callgrind, a call-graph generating cache profiler\n\
                   ==1== Copyright (C) 2002-2017, and GNU GPL'd, by Josef Weidendorfer et al.\n\
                   ==1== Using Valgrind-3.19.0 and LibVEX; rerun with -h for copyright info\n\
                   ==1== Command: envoy -c x.yaml\n==1== Parent PID: 7\n==1== \n\
                   ==1== For interactive control, run 'callgrind_control -h'.\n\
                   ==1== Warning: set address range perms: large range\n";
        assert_eq!(
            valgrind_notes(log),
            vec!["Warning: set address range perms: large range".to_owned()]
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-4321.0), "-4,321");
    }
}

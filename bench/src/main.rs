//! `paastis-bench`: the numbers every change is judged by (`make bench`).
//!
//! Runs, one after the other, on real parts (a real Envoy with the built
//! `.wasm`, the release sidecar binary, a private `redis-server`, the fake
//! Scalingo in process):
//!
//! 1. [`hot`]: the filter's cost on a cache hit, against Envoy alone and a
//!    do-nothing wasm filter (wrk, arms interleaved and repeated), with one
//!    and with two Envoy workers; `PAASTIS_BASELINE_WASM=FILE` adds an arm
//!    running another build of the filter, for a before/after in the same
//!    rounds; then [`instructions`]: the instructions Envoy executes per
//!    request in each of those arms, counted by callgrind (a figure that
//!    repeats where the CPU times swing);
//! 2. [`cold`]: the gateway's own overhead on a wake (time to the first
//!    answer minus the fake's boot delay);
//! 3. [`waiters`]: 1,000 concurrent first requests to one sleeping app, one
//!    then two gateway instances on one Redis;
//! 4. [`scheduler`]: one pass over 10,000 registered apps, 1 % idle;
//! 5. [`footprint`]: `.wasm` size, sidecar and Envoy memory;
//! 6. [`scalingo`]: against the strict fake, the Scalingo API calls of a
//!    cold wake, many apps woken within a minute, a broken app under load,
//!    two instances sharing one budget;
//!
//! then writes `BENCHMARKS.md` (figures, targets met or missed, method,
//! machine). A benchmark that cannot run is reported as such and makes the
//! exit code non-zero; the others still run. Every child process is killed
//! when its benchmark ends, failed or not.
//!
//! `paastis-bench upstream` is the hot path's upstream server (run by the
//! bench itself as a child process).
//!
//! `paastis-bench soak [--out FILE]` (`make soak`, not part of `make bench`)
//! is the [`soak`] run: it writes only the section "Soak" of the file, and
//! the bench keeps that section when it rewrites the others (as it keeps the
//! hand-written "Hot path analysis").
//!
//! Usage: `paastis-bench [--out FILE] [--only hot,instructions,cold,waiters,scheduler,footprint,scalingo] [--quick]`
//! (`--quick`: shorter runs, for trying the bench itself; its figures are
//! not worth recording).
//!
//! Depends on the test kit (`paastis-e2e`) for the fake and the Envoy
//! readiness wait, and on the sidecar's library only for the scheduler pass
//! it times in process; nothing depends on this crate.

mod cold;
mod envoy;
mod footprint;
mod hot;
mod instructions;
mod perf;
mod report;
mod scalingo;
mod scheduler;
mod soak;
mod upstream;
mod util;
mod waiters;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use report::Section;

struct Args {
    out: PathBuf,
    only: Option<Vec<String>>,
    quick: bool,
}

const NAMES: [&str; 7] = [
    "hot",
    "instructions",
    "cold",
    "waiters",
    "scheduler",
    "footprint",
    "scalingo",
];

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: paastis_e2e::harness::workspace_root().join("BENCHMARKS.md"),
        only: None,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => args.out = it.next().ok_or("--out needs a file")?.into(),
            "--only" => {
                let list: Vec<String> = it
                    .next()
                    .ok_or("--only needs a list")?
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                if let Some(bad) = list.iter().find(|n| !NAMES.contains(&n.as_str())) {
                    return Err(format!("unknown benchmark {bad:?} (one of {NAMES:?})"));
                }
                args.only = Some(list);
            }
            "--quick" => args.quick = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Sections of the output file that a run keeps as it found them: the
/// soak's (written by `make soak` alone) and the hot path's analysis (written
/// by hand from the profiles: which host calls and which code a hit pays
/// for, and what was tried).
const KEPT_SECTIONS: [&str; 2] = ["Hot path analysis", "Soak"];

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("upstream") {
        return match upstream::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("upstream: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if std::env::args().nth(1).as_deref() == Some("soak") {
        return soak_main();
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paastis-bench: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match release_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paastis-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (sections, failures, wall) = runtime.block_on(run_all(&args));
    let machine = util::Machine::read(&paastis_e2e::harness::envoy_bin());
    let mut text = report::render(&machine, &sections, &failures, wall);
    // Sections no run of this binary writes, kept as they were.
    let old = std::fs::read_to_string(&args.out).unwrap_or_default();
    for title in KEPT_SECTIONS {
        if let Some(kept) = report::section_text(&old, title) {
            text = report::splice(&text, title, kept);
        }
    }
    if let Err(e) = std::fs::write(&args.out, text) {
        eprintln!("paastis-bench: cannot write {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!(
        "paastis-bench: wrote {} in {:.0} s",
        args.out.display(),
        wall.as_secs_f64()
    );
    for section in &sections {
        for t in &section.targets {
            println!(
                "  {:<60} {:>14}  target {:<10} {}",
                t.what,
                t.measured,
                t.target,
                match t.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "",
                }
            );
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("paastis-bench: {f}");
        }
        ExitCode::FAILURE
    }
}

async fn run_all(args: &Args) -> (Vec<Section>, Vec<String>, Duration) {
    let began = Instant::now();
    let wanted = |name: &str| {
        args.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|n| n == name))
    };
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    let mut record = |name: &str, result: Result<Section, String>| match result {
        Ok(section) => {
            eprintln!(
                "paastis-bench: {name} done in {:.0} s",
                section.took.as_secs_f64()
            );
            sections.push(section);
        }
        Err(e) => failures.push(format!("{name}: {e}")),
    };
    let quick = args.quick;
    let mut envoy_memory = Vec::new();

    if wanted("hot") {
        eprintln!("paastis-bench: hot path...");
        let plan = if quick {
            hot::Plan {
                rounds: 1,
                load: wrk::Load {
                    connections: 16,
                    duration: Duration::from_secs(2),
                },
                light: wrk::Load {
                    connections: 1,
                    duration: Duration::from_secs(1),
                },
                warmup: Duration::from_secs(1),
                workers: 1,
            }
        } else {
            // Many short rounds rather than a few long ones: on a shared
            // machine the noise comes and goes, and every arm should see as
            // much of it as the others.
            hot::Plan {
                rounds: 8,
                load: wrk::Load {
                    connections: 16,
                    duration: Duration::from_secs(4),
                },
                light: wrk::Load {
                    connections: 1,
                    duration: Duration::from_secs(2),
                },
                warmup: Duration::from_secs(1),
                workers: 1,
            }
        };
        // One worker (the Envoys pinned to one core), then two (unpinned).
        for workers in [1, 2] {
            let plan = hot::Plan { workers, ..plan };
            let result = match tempfile::tempdir() {
                Ok(dir) => hot::run(plan, dir.path()).await.map(|(section, memory)| {
                    if workers == 1 {
                        envoy_memory = memory;
                    }
                    section
                }),
                Err(e) => Err(e.to_string()),
            };
            record(&format!("hot path, {workers} worker(s)"), result);
        }
    }
    if wanted("instructions") {
        eprintln!("paastis-bench: instructions per request (callgrind)...");
        let plan = if quick {
            instructions::Plan::quick()
        } else {
            instructions::Plan::full()
        };
        record(
            "instructions per request",
            with_dir(|dir| instructions::run(plan, dir)).await,
        );
    }
    if wanted("cold") {
        eprintln!("paastis-bench: cold wakes...");
        let plan = cold::Plan {
            wakes: if quick { 4 } else { 20 },
            ..cold::Plan::default()
        };
        record("cold wake", with_dir(|dir| cold::run(plan, dir)).await);
    }
    if wanted("waiters") {
        eprintln!("paastis-bench: many waiters...");
        let requests = if quick { 200 } else { 1000 };
        record(
            "many waiters",
            with_dir(|dir| waiters::run(requests, dir)).await,
        );
    }
    if wanted("scheduler") {
        eprintln!("paastis-bench: scheduler...");
        let apps = if quick { 1_000 } else { 10_000 };
        record("scheduler", scheduler::run(apps).await);
    }
    if wanted("footprint") {
        eprintln!("paastis-bench: footprint...");
        let apps = if quick { 1_000 } else { 10_000 };
        record(
            "footprint",
            with_dir(|dir| footprint::run(apps, envoy_memory, dir)).await,
        );
    }
    if wanted("scalingo") {
        eprintln!("paastis-bench: within Scalingo's limits...");
        let plan = if quick {
            scalingo::Plan::quick()
        } else {
            scalingo::Plan::full()
        };
        record(
            "within Scalingo's limits",
            with_dir(|dir| scalingo::run(plan, dir)).await,
        );
    }
    (sections, failures, began.elapsed())
}

/// `paastis-bench soak [--out FILE]`: the soak run (see [`soak`]), its
/// length and seed from `SOAK_MINUTES` and `SOAK_SEED`.
fn soak_main() -> ExitCode {
    let mut out = paastis_e2e::harness::workspace_root().join("BENCHMARKS.md");
    let mut it = std::env::args().skip(2);
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--out", Some(file)) => out = file.into(),
            _ => {
                eprintln!("paastis-bench soak: usage: paastis-bench soak [--out FILE]");
                return ExitCode::from(64);
            }
        }
    }
    let options = match soak::Options::from_env(out) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("paastis-bench soak: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match release_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paastis-bench soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(soak::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("paastis-bench soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a benchmark in a fresh temporary directory (removed afterwards).
async fn with_dir<F, Fut>(f: F) -> Result<Section, String>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<Section, String>>,
{
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    f(dir.path().to_owned()).await
}

/// The runtime of a run, after pointing the harness at the release sidecar
/// (what is measured; the harness's default is the debug build the tests
/// use). Called before any thread starts: it sets an environment variable.
fn release_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if std::env::var_os("PAASTIS_SIDECAR_BIN").is_none() {
        std::env::set_var(
            "PAASTIS_SIDECAR_BIN",
            util::target_bin("release", "paastis-sidecar"),
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

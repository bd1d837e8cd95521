//! `paastis-bench soak` (`make soak`, not part of `make test`): the gateway
//! left running for a while (20 minutes by default, `SOAK_MINUTES`) as a
//! small platform would run it, with its processes killed under it.
//!
//! Two gateway instances (each an Envoy with the built `.wasm` and a release
//! sidecar) share one private `redis-server`, in front of the fake Scalingo
//! (strict, but for its API budget: see [`FAKE_CALLS_PER_MINUTE`]). Fifty
//! apps have a max idle time of one minute and the scheduler passes every
//! 5 s, so that apps sleep and wake every few minutes under mixed traffic
//! (see [`traffic`]). At seeded random moments (`SOAK_SEED`, else the
//! clock; the seed is printed and reported) a sidecar or Redis is killed
//! (SIGKILL) and started again after up to 3 s.
//!
//! The soak then judges, from its own request log and the fake's call log
//! (see [`verdict`]): apps paused while in use (must be 0), activity lost
//! by the registry (must be 0), the errors clients saw and why; it reports
//! each process's RSS at start and end, and writes the section "Soak" of
//! `BENCHMARKS.md` (the other sections are left as they are).

mod report;
mod traffic;
mod verdict;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::harness::{fresh_sidecar_token, Sidecar};
use paastis_e2e::redis::{free_port, unique_prefix, TestRedis};

use crate::envoy::{self, Envoy};
use crate::util;
use verdict::{Chaos, Pause, Turn};

pub const APPS: usize = 50;
pub const INSTANCES: usize = 2;
const REGION: &str = "osc-fr1";
/// `app_max_idle_time` of every soak app, in minutes.
pub const MAX_IDLE_MINUTES: u64 = 1;
pub const SCHEDULER_INTERVAL_S: u64 = 5;
/// The shipped filter's `activity_flush_ms` (its default).
pub const FLUSH_MS: f64 = 1000.0;
/// Requests that started this close before a pause cannot have reached the
/// registry in time (one flush, plus the sidecar's write and the
/// scheduler's re-read): reported as raced, not as paused in use.
pub const RACE_S: f64 = 2.0;
/// The fake's API budget. Scalingo allows 60 calls a minute; the soak
/// needs more: 50 apps that sleep and wake every 2 to 4 minutes cost about
/// 4 calls a wake and 2 a pause, plus a listing per scheduler pass every
/// 5 s, some 100 to 170 calls a minute at peaks. The soak judges the
/// lifecycle under restarts, not the budget (the `scalingo` section of
/// `make bench` does, at 60 a minute): with 60 it would mostly measure the
/// budget's queue.
const FAKE_CALLS_PER_MINUTE: u32 = 300;
/// The sidecars' budget, below the fake's as 55 is below 60.
const SIDECAR_CALLS_PER_MINUTE: u32 = 280;
/// No restart in the last part of the soak: the end checks read a
/// registry that has settled.
const CHAOS_UNTIL: f64 = 0.85;

/// What `make soak` asks for.
pub struct Options {
    pub minutes: f64,
    pub seed: u64,
    pub out: PathBuf,
}

impl Options {
    pub fn from_env(out: PathBuf) -> Result<Self, String> {
        let minutes = match std::env::var("SOAK_MINUTES") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|m| *m >= 1.0)
                .ok_or_else(|| format!("SOAK_MINUTES={v:?}: a number of minutes, at least 1"))?,
            _ => 20.0,
        };
        let seed = match std::env::var("SOAK_SEED") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse()
                .map_err(|_| format!("SOAK_SEED={v:?}: an unsigned integer"))?,
            _ => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        Ok(Self { minutes, seed, out })
    }
}

/// One gateway instance's sidecar, restartable on its fixed port (its
/// Envoy's cluster points at that port).
struct SidecarSlot {
    sidecar: Sidecar,
    env: Vec<(String, String)>,
    dir: PathBuf,
    runs: usize,
}

impl SidecarSlot {
    fn start(
        fake: &FakeScalingo,
        rules: &Path,
        dir: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let run = dir.join("run-0");
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        let sidecar = tokio::task::block_in_place(|| Sidecar::start(fake, rules, &run, &env))?;
        Ok(Self {
            sidecar,
            env,
            dir: dir.to_owned(),
            runs: 1,
        })
    }

    /// Starts it again (its port may take a moment to be free).
    fn restart(&mut self, fake: &FakeScalingo, rules: &Path) -> Result<(), String> {
        let run = self.dir.join(format!("run-{}", self.runs));
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Sidecar::start(fake, rules, &run, &self.env) {
                Ok(s) => {
                    self.sidecar = s;
                    self.runs += 1;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// The processes whose memory is reported.
pub struct Rss {
    pub envoys: Vec<Option<u64>>,
    pub sidecars: Vec<Option<u64>>,
    pub redis: Option<u64>,
    pub this: Option<u64>,
}

fn rss(envoys: &[Envoy], sidecars: &[SidecarSlot], redis: &TestRedis) -> Rss {
    let read = |pid: Option<u32>| pid.and_then(util::vm_rss_kib);
    Rss {
        envoys: envoys.iter().map(|e| read(e.pid())).collect(),
        sidecars: sidecars.iter().map(|s| read(s.sidecar.pid())).collect(),
        redis: read(redis.pid()),
        this: read(Some(std::process::id())),
    }
}

/// Everything the report is made of.
pub struct Outcome {
    pub options_minutes: f64,
    pub seed: u64,
    pub took: Duration,
    pub records: Vec<traffic::Record>,
    pub pauses: Vec<Pause>,
    /// Wakes and pauses in time order (see [`verdict::awake_at`]).
    pub turns: Vec<Turn>,
    pub wakes: usize,
    pub chaos: Vec<Chaos>,
    pub activity: verdict::ActivityCheck,
    /// The soak's start on the wall clock (ms since the epoch).
    pub t0_ms: f64,
    /// Every sidecar log line (both instances, every run), in file order.
    pub logs: Vec<String>,
    pub rss_start: Rss,
    pub rss_end: Rss,
    pub sidecar_runs: Vec<usize>,
    pub api_calls: usize,
    pub api_calls_peak_minute: usize,
    pub rate_limited: usize,
    pub scale_calls: usize,
}

pub async fn run(options: Options) -> Result<(), String> {
    eprintln!(
        "paastis-bench soak: {} min, seed {} (SOAK_SEED={} repeats the plan)",
        options.minutes, options.seed, options.seed
    );
    // Kept after the run (the next one clears it): the logs behind the
    // report's findings.
    let dir = paastis_e2e::harness::workspace_root().join("target/soak-run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eprintln!("paastis-bench soak: logs in {}", dir.display());
    let outcome = soak(&options, &dir).await?;
    let section = report::section(&outcome);
    let old = std::fs::read_to_string(&options.out).unwrap_or_default();
    let text = report::splice(&old, &section);
    std::fs::write(&options.out, text)
        .map_err(|e| format!("cannot write {}: {e}", options.out.display()))?;
    eprintln!(
        "paastis-bench soak: wrote the section \"Soak\" of {}",
        options.out.display()
    );
    for line in report::summary(&outcome) {
        println!("  {line}");
    }
    Ok(())
}

async fn soak(options: &Options, dir: &Path) -> Result<Outcome, String> {
    let began = Instant::now();
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: Duration::from_secs(2),
        // See FAKE_CALLS_PER_MINUTE: everything else stays strict.
        rate_limit_per_minute: Some(FAKE_CALLS_PER_MINUTE),
        ..FakeConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let apps: Vec<String> = (1..=APPS).map(|i| format!("soak-app-{i:02}")).collect();
    for app in &apps {
        fake.add_app(FakeApp::web(app, REGION, 0));
    }
    let mut redis = tokio::task::block_in_place(TestRedis::start);
    let prefix = unique_prefix("soak");
    let rules = dir.join("paastis.yml");
    std::fs::write(
        &rules,
        format!(
            "rules:\n  - pattern: '^soak-app-\\d+$'\n    app_max_idle_time: {MAX_IDLE_MINUTES}\n    region: {REGION}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut sidecars = Vec::new();
    let mut envoys = Vec::new();
    for k in 0..INSTANCES {
        let own = dir.join(format!("instance-{k}"));
        std::fs::create_dir_all(&own).map_err(|e| e.to_string())?;
        let port = free_port();
        let env: Vec<(String, String)> = [
            ("RUST_LOG", "info".to_owned()),
            ("PAASTIS_LISTEN", format!("127.0.0.1:{port}")),
            // Set here, not drawn by each start: a restarted sidecar must
            // accept the token its Envoy's filter was configured with.
            ("PAASTIS_SIDECAR_TOKEN", fresh_sidecar_token()),
            ("REGISTRY_TYPE", "redis".to_owned()),
            ("REGISTRY_REDIS_URL", redis.url()),
            ("REGISTRY_REDIS_KEY_PREFIX", prefix.clone()),
            ("PAASTIS_INSTANCE", format!("soak-{k}")),
            (
                "PAASTIS_SCHEDULER_INTERVAL",
                SCHEDULER_INTERVAL_S.to_string(),
            ),
            ("PAASTIS_WAKE_TIMEOUT", "60".to_owned()),
            (
                "PAASTIS_SCALINGO_CALLS_PER_MINUTE",
                SIDECAR_CALLS_PER_MINUTE.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let slot = SidecarSlot::start(&fake, &rules, &own, env)?;
        envoys.push(envoy::gateway(&own, "gateway", &fake, &slot.sidecar, 2)?);
        sidecars.push(slot);
    }
    let rss_start = rss(&envoys, &sidecars, &redis);

    let length = Duration::from_secs_f64(options.minutes * 60.0);
    let t0 = Instant::now();
    let t0_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64()
        * 1000.0;
    let until = t0 + length;
    let traffic = Arc::new(traffic::Traffic::new(
        envoys.iter().map(|e| e.listen).collect(),
        t0,
        until,
    )?);
    let mut clients = tokio::task::JoinSet::new();
    for (i, app) in apps.iter().enumerate() {
        let seed = options.seed.wrapping_add(1 + i as u64);
        clients.spawn(traffic::app_loop(traffic.clone(), app.clone(), seed));
    }
    let watching = Arc::new(Mutex::new(true));
    let monitor = tokio::spawn(watch_formations(
        fake.clone(),
        apps.clone(),
        t0,
        watching.clone(),
    ));

    // The chaos runs here, on this task: it owns the processes it kills.
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut chaos = Vec::new();
    let mut next = Duration::from_secs(60);
    let chaos_until = length.mul_f64(CHAOS_UNTIL);
    while next < chaos_until {
        tokio::time::sleep_until((t0 + next).into()).await;
        let which = rng.usize(0..=INSTANCES);
        let down_for = Duration::from_millis(rng.u64(0..3_000));
        let down = t0.elapsed().as_secs_f64();
        let sidecar = (which < INSTANCES).then_some(which);
        match sidecar {
            Some(k) => {
                sidecars[k].sidecar.stop();
                tokio::time::sleep(down_for).await;
                let (slot, fake, rules) = (&mut sidecars[k], &fake, &rules);
                tokio::task::block_in_place(|| slot.restart(fake, rules))?;
            }
            None => {
                redis.kill();
                tokio::time::sleep(down_for).await;
                tokio::task::block_in_place(|| redis.restart());
            }
        }
        let event = Chaos {
            sidecar,
            down,
            up: t0.elapsed().as_secs_f64(),
        };
        eprintln!(
            "paastis-bench soak: {:>6.1} s killed {}, up again at {:.1} s",
            event.down,
            event.name(),
            event.up
        );
        chaos.push(event);
        // On average a restart every 100 s.
        next += Duration::from_millis(rng.u64(30_000..170_000));
    }

    while clients.join_next().await.is_some() {}
    eprintln!("paastis-bench soak: traffic over, settling");
    // The filters' last flush, the sidecars' write.
    tokio::time::sleep(Duration::from_secs(5)).await;
    if let Ok(mut w) = watching.lock() {
        *w = false;
    }
    let transitions = monitor.await.map_err(|e| e.to_string())?;
    let registered = last_accesses(&redis.url(), &prefix, &apps).await?;
    let rss_end = rss(&envoys, &sidecars, &redis);

    let log = fake.call_log();
    let scale_at: Vec<(String, f64)> = log
        .iter()
        .filter(|c| c.endpoint == Endpoint::Scale)
        .filter_map(|c| {
            Some((
                c.app.clone()?,
                c.at.saturating_duration_since(t0).as_secs_f64(),
            ))
        })
        .collect();
    // A pause is at its scale call: the last one for the app before the
    // formation was seen at zero.
    let pauses: Vec<Pause> = transitions
        .iter()
        .filter(|t| !t.up)
        .map(|t| {
            let at = scale_at
                .iter()
                .filter(|(a, at)| *a == t.app && *at <= t.at)
                .map(|(_, at)| *at)
                .fold(f64::NAN, f64::max);
            Pause {
                app: t.app.clone(),
                at: if at.is_nan() { t.at } else { at },
            }
        })
        .collect();
    let mut turns: Vec<Turn> = transitions
        .iter()
        .filter(|t| t.up)
        .map(|t| Turn {
            app: t.app.clone(),
            up: true,
            at: t.at,
        })
        .chain(pauses.iter().map(|p| Turn {
            app: p.app.clone(),
            up: false,
            at: p.at,
        }))
        .collect();
    turns.sort_by(|a, b| a.at.total_cmp(&b.at));
    let records = traffic.records();
    let logs = sidecar_logs(dir);
    let redis_killed = chaos
        .iter()
        .filter(|c| c.sidecar.is_none())
        .map(|c| c.down)
        .reduce(f64::max);
    let activity = verdict::lost_activity(&records, &registered, t0_ms, FLUSH_MS, redis_killed);
    let call_times: Vec<f64> = log
        .iter()
        .filter(|c| c.endpoint != Endpoint::Front)
        .map(|c| c.at.saturating_duration_since(t0).as_secs_f64())
        .collect();
    Ok(Outcome {
        options_minutes: options.minutes,
        seed: options.seed,
        took: began.elapsed(),
        wakes: transitions.iter().filter(|t| t.up).count(),
        pauses,
        turns,
        records,
        chaos,
        activity,
        t0_ms,
        logs,
        rss_start,
        rss_end,
        sidecar_runs: sidecars.iter().map(|s| s.runs).collect(),
        api_calls: call_times.len(),
        api_calls_peak_minute: verdict::max_in_window(&call_times, 60.0),
        rate_limited: fake.rate_limited_total(),
        scale_calls: apps.iter().map(|a| fake.scale_calls(a)).sum(),
    })
}

/// A change of an app's `web` amount seen in the fake: `up` from 0, or
/// down to 0.
struct Transition {
    app: String,
    up: bool,
    at: f64,
}

/// Polls the fake's formations (in process, no API call) every 250 ms
/// until told to stop.
async fn watch_formations(
    fake: FakeScalingo,
    apps: Vec<String>,
    t0: Instant,
    watching: Arc<Mutex<bool>>,
) -> Vec<Transition> {
    let mut web: HashMap<String, u32> = apps.iter().map(|a| (a.clone(), 0)).collect();
    let mut seen = Vec::new();
    while watching.lock().map(|w| *w).unwrap_or(false) {
        let at = t0.elapsed().as_secs_f64();
        for snapshot in fake.apps() {
            let Some(before) = web.get_mut(&snapshot.name) else {
                continue;
            };
            let now: u32 = snapshot
                .formation
                .iter()
                .filter(|(kind, _, _)| kind == "web")
                .map(|(_, amount, _)| *amount)
                .sum();
            if (*before == 0) != (now == 0) {
                seen.push(Transition {
                    app: snapshot.name.clone(),
                    up: now > 0,
                    at,
                });
            }
            *before = now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

/// The lines of every sidecar log of the run (`instance-K/run-N/`).
fn sidecar_logs(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for k in 0..INSTANCES {
        let own = dir.join(format!("instance-{k}"));
        for run in 0.. {
            let Ok(text) = std::fs::read_to_string(own.join(format!("run-{run}/sidecar.log")))
            else {
                break;
            };
            lines.extend(text.lines().map(|l| format!("[sidecar {k} run {run}] {l}")));
        }
    }
    lines
}

/// Each app's `last_access` in the registry (ms since the epoch).
async fn last_accesses(
    url: &str,
    prefix: &str,
    apps: &[String],
) -> Result<HashMap<String, Option<f64>>, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let key = format!("{prefix}last_access");
    let mut out = HashMap::new();
    for app in apps {
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(&key)
            .arg(app)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        out.insert(app.clone(), score);
    }
    Ok(out)
}

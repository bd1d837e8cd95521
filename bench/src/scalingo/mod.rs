//! 6. Within Scalingo's limits: what the gateway spends of the API budget,
//!    and what its users get when that budget is tight, against the STRICT
//!    fake (60 calls a minute per token then 429, 30 s scale-downs, router
//!    error pages for 1 s after a container runs, apps that crash on boot).
//!
//! Four runs, each on its own fake, through the release sidecar binary and
//! Envoy (the user's answers are what the filter makes of the sidecar's):
//!
//! 1. **one cold wake, 20 s boot**: the API calls it costs, by endpoint
//!    (the fake's call log, by app), and the gateway's overhead beyond the
//!    boot. Each wake runs on a fresh fake, sidecar and Envoy, so that one
//!    wake's spending does not slow the next.
//! 2. **30 sleeping apps woken within one minute**, one request each,
//!    spread evenly over the minute: how many were served, Scalingo's 429s,
//!    the 429/503 answers that reached a user, the time to the last answer.
//! 3. **a broken app** (crashes on every boot) asked 20 times a second for
//!    a minute: the calls it costs and what the clients got.
//! 4. **two instances sharing the budget** through one Redis, under more
//!    load than the budget holds (cold wakes of many apps on both instances
//!    while the scheduler wants to pause many idle apps): the most calls the
//!    fake received in any sliding 60 s window, against the configured
//!    limit.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use paastis_e2e::fake::{CallRecord, Endpoint, FakeApp, FakeConfig, FakeScalingo, ROUTER_MARKER};
use paastis_e2e::harness::Sidecar;
use paastis_e2e::redis::{unique_prefix, TestRedis};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::registry::AppMeta;

use crate::envoy::{self, Envoy};
use crate::report::Section;
use crate::util;

mod report;

use report::{broken_report, cold_report, crowd_report, shared_report};

const REGION: &str = "osc-fr1";
/// The sidecar's wake timeout in these runs (its default).
const WAKE_TIMEOUT_S: u64 = 60;
/// The budget the sidecars are given (the default, stated explicitly).
const CALLS_PER_MINUTE: usize = 55;
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
pub struct Plan {
    /// Run 1: wakes (each on a fresh gateway) and their boot delay.
    pub cold_wakes: usize,
    pub cold_boot: Duration,
    /// Run 2: apps, the span their first requests are spread over, boot.
    pub crowd_apps: usize,
    pub crowd_span: Duration,
    pub crowd_boot: Duration,
    /// Run 3: requests a second and for how long.
    pub broken_rate: u32,
    pub broken_for: Duration,
    /// Run 4: cold wakes spread over `shared_span` (alternating instances),
    /// idle apps for the scheduler, how long the fake's log is watched.
    pub shared_wakes: usize,
    pub shared_idle: usize,
    pub shared_span: Duration,
    pub shared_watch: Duration,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            cold_wakes: 3,
            cold_boot: Duration::from_secs(20),
            crowd_apps: 30,
            crowd_span: MINUTE,
            crowd_boot: Duration::from_secs(10),
            broken_rate: 20,
            broken_for: MINUTE,
            shared_wakes: 40,
            shared_idle: 40,
            shared_span: MINUTE,
            shared_watch: Duration::from_secs(100),
        }
    }

    pub fn quick() -> Self {
        Self {
            cold_wakes: 1,
            cold_boot: Duration::from_secs(5),
            crowd_apps: 10,
            crowd_span: Duration::from_secs(20),
            crowd_boot: Duration::from_secs(3),
            broken_rate: 20,
            broken_for: Duration::from_secs(15),
            shared_wakes: 12,
            shared_idle: 10,
            shared_span: Duration::from_secs(20),
            shared_watch: Duration::from_secs(40),
        }
    }
}

fn host(app: &str) -> String {
    format!("{app}.gateway.example.com")
}

/// One gateway instance: its sidecar and its Envoy.
struct Instance {
    sidecar: Sidecar,
    envoy: Envoy,
}

impl Instance {
    /// The sidecar's last warnings and errors (why a wake failed), and
    /// Envoy's log lines beyond its start-up warning: enough for the report.
    fn logs(&self) -> String {
        let sidecar = self.sidecar.log();
        let warnings: Vec<&str> = sidecar
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        // A wake's warnings say why a user got an error; the scheduler's
        // come after them and would hide them.
        let (wakes, others): (Vec<&str>, Vec<&str>) =
            warnings.iter().partition(|l| l.contains("wake{"));
        let envoy = self.envoy.log_text();
        let envoy: Vec<&str> = envoy
            .lines()
            .filter(|l| {
                !l.contains("no configured limit to the number of allowed active downstream")
            })
            .collect();
        let last = |lines: &[&str], n: usize| {
            lines[lines.len().saturating_sub(n)..]
                .iter()
                .map(|l| l.chars().take(400).collect::<String>())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if warnings.is_empty() && envoy.is_empty() {
            return String::new();
        }
        format!(
            "sidecar: {} warnings and errors of wakes, the last ones:\n{}\n\
             {} others, the last ones:\n{}\nenvoy:\n{}",
            wakes.len(),
            last(&wakes, 8),
            others.len(),
            last(&others, 4),
            last(&envoy, 5)
        )
    }
}

/// Starts a sidecar (no rules, `extra` on top of the bench's environment)
/// and an Envoy in front of it, in `dir`.
fn start_instance(
    fake: &FakeScalingo,
    dir: &Path,
    extra: &[(&str, String)],
) -> Result<Instance, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let rules = dir.join("paastis.yml");
    std::fs::write(&rules, "").map_err(|e| e.to_string())?;
    let mut env: Vec<(String, String)> = vec![
        ("RUST_LOG".to_owned(), "info".to_owned()),
        (
            "PAASTIS_WAKE_TIMEOUT".to_owned(),
            WAKE_TIMEOUT_S.to_string(),
        ),
        (
            "PAASTIS_SCALINGO_CALLS_PER_MINUTE".to_owned(),
            CALLS_PER_MINUTE.to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let sidecar = tokio::task::block_in_place(|| Sidecar::start(fake, &rules, dir, &env))?;
    let envoy = envoy::gateway(dir, "gateway", fake, &sidecar, 2)?;
    Ok(Instance { sidecar, envoy })
}

/// Wakes `warm-up-app` (which runs) through `gateway`: a fresh sidecar's
/// first wake exchanges the token and lists the regions, once in its life,
/// so that what is measured after it excludes those calls.
async fn warm_up(client: &reqwest::Client, gateway: &Instance) -> Result<(), String> {
    let reply = ask(client, gateway.envoy.listen, "warm-up-app").await;
    if served(&reply) {
        Ok(())
    } else {
        Err(format!(
            "warm-up: {}\n{}",
            reply.error.unwrap_or_default(),
            gateway.logs()
        ))
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(WAKE_TIMEOUT_S + 15))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())
}

/// What one user got.
#[derive(Clone)]
struct Answer {
    /// 0: no answer (transport error or the client's timeout).
    status: u16,
    /// The app itself answered (not the gateway, not the router).
    from_app: bool,
    /// The platform's router answered its error page (the app not
    /// listening yet), passed on to the user.
    router: bool,
    retry_after: bool,
    took: Duration,
    /// When the answer arrived.
    at: Instant,
    error: Option<String>,
}

async fn ask(client: &reqwest::Client, listen: std::net::SocketAddr, app: &str) -> Answer {
    let started = Instant::now();
    match client
        .get(format!("http://{listen}/"))
        .header("host", host(app))
        .send()
        .await
    {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let from_app = util::served_by(&reply) == app;
            let retry_after = reply.headers().contains_key("retry-after");
            let body = reply.text().await.unwrap_or_default();
            Answer {
                status,
                from_app,
                router: body.contains(ROUTER_MARKER),
                retry_after,
                took: started.elapsed(),
                at: Instant::now(),
                error: (status != 200 || !from_app).then(|| {
                    if body.contains(ROUTER_MARKER) {
                        return format!(
                            "{status}: the router's error page (the app not listening yet)"
                        );
                    }
                    let mut b: String = body
                        .replace(['\n', '`', '|'], " ")
                        .chars()
                        .take(160)
                        .collect();
                    b.truncate(b.trim_end().len());
                    format!("{status}: {b}")
                }),
            }
        }
        Err(e) => Answer {
            status: 0,
            from_app: false,
            router: false,
            retry_after: false,
            took: started.elapsed(),
            at: Instant::now(),
            error: Some(e.to_string()),
        },
    }
}

fn served(a: &Answer) -> bool {
    a.status == 200 && a.from_app
}

/// Answers by status, `0` standing for "no answer".
fn status_counts(answers: &[Answer]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let key = match (a.status, a.from_app, a.retry_after) {
            (0, ..) => "no answer".to_owned(),
            (200, true, _) => "200 from the app".to_owned(),
            (s, true, _) => format!("{s} from the app"),
            (s, false, _) if a.router => format!("{s} router error page"),
            (s, false, true) => format!("{s} (Retry-After)"),
            (s, false, false) => s.to_string(),
        };
        *by.entry(key).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn users_429_503(answers: &[Answer]) -> usize {
    answers
        .iter()
        .filter(|a| !a.from_app && matches!(a.status, 429 | 503))
        .count()
}

fn first_error(answers: &[Answer]) -> Option<String> {
    answers.iter().find_map(|a| a.error.clone())
}

/// API calls by endpoint, in the fake's order of endpoints.
fn by_endpoint<'a>(records: impl Iterator<Item = &'a CallRecord>) -> BTreeMap<Endpoint, usize> {
    let mut by = BTreeMap::new();
    for r in records {
        *by.entry(r.endpoint).or_default() += 1;
    }
    by
}

fn describe(by: &BTreeMap<Endpoint, usize>) -> String {
    if by.is_empty() {
        return "none".to_owned();
    }
    by.iter()
        .map(|(e, n)| format!("{} {n}", e.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most records in any window of `width` (closed at its start, open at
/// its end, as the fake's own limit counts), and where it starts.
fn max_in_window(records: &[CallRecord], width: Duration) -> (usize, Option<Instant>) {
    let mut times: Vec<Instant> = records.iter().map(|r| r.at).collect();
    times.sort();
    let (mut best, mut at, mut end) = (0, None, 0);
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end].duration_since(*t) < width {
            end += 1;
        }
        if end - start > best {
            best = end - start;
            at = Some(*t);
        }
    }
    (best, at)
}

/// Polls `done` every 50 ms until it holds (`true`) or `within` passed.
async fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- 1. one cold wake, 20 s boot ------------------------------------------

struct ColdWake {
    answer: Answer,
    /// Boot delay plus the front's boot window: when the app can answer.
    app_ready_after: Duration,
    /// Calls about the app, and calls about no app (exchange excepted) made
    /// while the wake ran.
    calls: BTreeMap<Endpoint, usize>,
    other_calls: BTreeMap<Endpoint, usize>,
    logs: String,
}

impl ColdWake {
    fn calls_besides_exchange(&self) -> usize {
        self.calls.values().sum::<usize>() + self.other_calls.values().sum::<usize>()
    }

    fn overhead_ms(&self) -> f64 {
        if served(&self.answer) {
            util::ms(self.answer.took) - util::ms(self.app_ready_after)
        } else {
            f64::NAN
        }
    }
}

async fn cold_wake(plan: &Plan, dir: &Path) -> Result<ColdWake, String> {
    let config = FakeConfig {
        boot_delay: plan.cold_boot,
        ..FakeConfig::default()
    };
    let window = config.front_boot_window;
    let fake = FakeScalingo::start(config)
        .await
        .map_err(|e| e.to_string())?;
    fake.add_app(FakeApp::web("cold-app", REGION, 0));
    fake.add_app(FakeApp::web("warm-up-app", REGION, 1));
    // No scheduler pass after the one at start: the wake's calls alone.
    let gateway = start_instance(
        &fake,
        dir,
        &[("PAASTIS_SCHEDULER_INTERVAL", "86400".to_owned())],
    )?;
    let client = client()?;
    // Not counted: a fresh sidecar's first wake exchanges the token and
    // lists the regions, once in its life.
    warm_up(&client, &gateway).await?;
    // The scheduler's first pass runs at start (it lists the apps): the
    // wake is measured once it is over, so that its calls are the wake's.
    let pass_over = wait_for(Duration::from_secs(15), || {
        gateway.sidecar.log().contains("scheduler pass")
    })
    .await;
    if !pass_over {
        return Err(format!(
            "the sidecar's first scheduler pass did not end\n{}",
            gateway.logs()
        ));
    }
    let seen = fake.call_log().len();
    let answer = ask(&client, gateway.envoy.listen, "cold-app").await;
    let log = fake.call_log();
    let during = &log[seen.min(log.len())..];
    let calls = by_endpoint(
        during
            .iter()
            .filter(|r| r.app.as_deref() == Some("cold-app")),
    );
    let other_calls = by_endpoint(
        during
            .iter()
            .filter(|r| r.app.is_none() && r.endpoint != Endpoint::Exchange),
    );
    let logs = if served(&answer) {
        String::new()
    } else {
        gateway.logs()
    };
    Ok(ColdWake {
        answer,
        app_ready_after: plan.cold_boot + window,
        calls,
        other_calls,
        logs,
    })
}

// ---- 2. many sleeping apps within one minute ------------------------------

struct Crowd {
    apps: usize,
    answers: Vec<Answer>,
    to_last_answer: Duration,
    rate_limited: usize,
    api_calls: usize,
    max_per_minute: usize,
    logs: String,
}

async fn crowd(plan: &Plan, dir: &Path) -> Result<Crowd, String> {
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: plan.crowd_boot,
        ..FakeConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let apps: Vec<String> = (1..=plan.crowd_apps)
        .map(|i| format!("sleepy-app-{i:02}"))
        .collect();
    for app in &apps {
        fake.add_app(FakeApp::web(app, REGION, 0));
    }
    fake.add_app(FakeApp::web("warm-up-app", REGION, 1));
    let gateway = start_instance(&fake, dir, &[])?;
    let client = client()?;
    warm_up(&client, &gateway).await?;
    let limited_before = fake.rate_limited_total();
    let seen = fake.call_log().len();
    let began = Instant::now();
    let step = plan.crowd_span / plan.crowd_apps.max(1) as u32;
    let listen = gateway.envoy.listen;
    let tasks: Vec<_> = apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let (client, app) = (client.clone(), app.clone());
            let at = tokio::time::Instant::from_std(began) + step * i as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                ask(&client, listen, &app).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.map_err(|e| e.to_string())?);
    }
    let to_last_answer = answers
        .iter()
        .map(|a| a.at.duration_since(began))
        .max()
        .unwrap_or_default();
    let log = fake.call_log();
    let during = &log[seen.min(log.len())..];
    let logs = if answers.iter().all(served) {
        String::new()
    } else {
        gateway.logs()
    };
    Ok(Crowd {
        apps: apps.len(),
        to_last_answer,
        rate_limited: fake.rate_limited_total() - limited_before,
        api_calls: during.len(),
        max_per_minute: max_in_window(during, MINUTE).0,
        answers,
        logs,
    })
}

// ---- 3. a broken app asked 20 times a second --------------------------------

struct Broken {
    requests: usize,
    answers: Vec<Answer>,
    calls: BTreeMap<Endpoint, usize>,
    other_calls: BTreeMap<Endpoint, usize>,
    rate_limited: usize,
    boot_attempt: Duration,
}

const BROKEN: &str = "broken-app";

async fn broken(plan: &Plan, dir: &Path) -> Result<Broken, String> {
    // Each boot attempt lasts this long before the container crashes; the
    // retries, their back-off and `crashed` after 12 are the strict fake's.
    let boot_attempt = Duration::from_secs(3);
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: boot_attempt,
        ..FakeConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    fake.add_app(FakeApp::web(BROKEN, REGION, 0).crash_on_boot());
    fake.add_app(FakeApp::web("warm-up-app", REGION, 1));
    let gateway = start_instance(&fake, dir, &[])?;
    let client = client()?;
    warm_up(&client, &gateway).await?;
    let limited_before = fake.rate_limited_total();
    let seen = fake.call_log().len();
    let requests = (plan.broken_for.as_secs_f64() * f64::from(plan.broken_rate)) as usize;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / plan.broken_rate.max(1));
    let listen = gateway.envoy.listen;
    let mut tasks = Vec::with_capacity(requests);
    for _ in 0..requests {
        ticker.tick().await;
        let client = client.clone();
        tasks.push(tokio::spawn(
            async move { ask(&client, listen, BROKEN).await },
        ));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.map_err(|e| e.to_string())?);
    }
    let log = fake.call_log();
    let during = &log[seen.min(log.len())..];
    Ok(Broken {
        requests,
        calls: by_endpoint(during.iter().filter(|r| r.app.as_deref() == Some(BROKEN))),
        other_calls: by_endpoint(during.iter().filter(|r| r.app.as_deref() != Some(BROKEN))),
        rate_limited: fake.rate_limited_total() - limited_before,
        answers,
        boot_attempt,
    })
}

// ---- 4. two instances sharing the budget --------------------------------------

struct Shared {
    wakes: usize,
    idle: usize,
    answers: Vec<Answer>,
    api_calls: usize,
    watched: Duration,
    max_per_minute: usize,
    /// Seconds from the first call to the start of the fullest window.
    fullest_at: f64,
    /// The calls in the fullest window, by endpoint, and the time from its
    /// first call to its last.
    fullest: BTreeMap<Endpoint, usize>,
    fullest_span: Duration,
    rate_limited: usize,
    idle_paused: usize,
    logs: String,
}

/// Registers `apps` in the registry the sidecars will share, last accessed
/// 30 minutes ago, through the sidecar's own library.
async fn register_idle(
    fake: &FakeScalingo,
    redis: &TestRedis,
    prefix: &str,
    apps: &[String],
) -> Result<(), String> {
    let vars: HashMap<String, String> = [
        (
            "PROVIDER_SCALINGO_API_TOKEN",
            fake.config().api_token.clone(),
        ),
        ("PROVIDER_SCALINGO_AUTH_URL", fake.auth_url()),
        ("PAASTIS_RULES_FILE", "/dev/null".to_owned()),
        ("REGISTRY_TYPE", "redis".to_owned()),
        ("REGISTRY_REDIS_URL", redis.url()),
        ("REGISTRY_REDIS_KEY_PREFIX", prefix.to_owned()),
        ("PAASTIS_INSTANCE", "bench-setup".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).map_err(|e| e.to_string())?;
    let gateway = paastis_sidecar::build(&config).await?;
    let long_ago = paastis_sidecar::wake::now_ms() - 30 * 60_000;
    for app in apps {
        let meta = AppMeta {
            region: REGION.to_owned(),
            max_idle_minutes: 15,
            linked_apps: Vec::new(),
        };
        gateway
            .waker
            .registry()
            .register(app, meta, long_ago)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn shared(plan: &Plan, dir: &Path) -> Result<Shared, String> {
    let redis = tokio::task::block_in_place(TestRedis::start);
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: Duration::from_secs(10),
        ..FakeConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let sleeping: Vec<String> = (1..=plan.shared_wakes)
        .map(|i| format!("shared-app-{i:02}"))
        .collect();
    let idle: Vec<String> = (1..=plan.shared_idle)
        .map(|i| format!("idle-app-{i:02}"))
        .collect();
    for app in &sleeping {
        fake.add_app(FakeApp::web(app, REGION, 0));
    }
    for app in &idle {
        fake.add_app(FakeApp::web(app, REGION, 1));
    }
    let prefix = unique_prefix("bench-budget");
    register_idle(&fake, &redis, &prefix, &idle).await?;
    // Only the two sidecars' calls are watched.
    let seen = fake.call_log().len();
    let limited_before = fake.rate_limited_total();

    let began = Instant::now();
    let mut gateway = Vec::new();
    for k in 0..2 {
        gateway.push(start_instance(
            &fake,
            &dir.join(format!("instance-{k}")),
            &[
                ("REGISTRY_TYPE", "redis".to_owned()),
                ("REGISTRY_REDIS_URL", redis.url()),
                ("REGISTRY_REDIS_KEY_PREFIX", prefix.clone()),
                ("PAASTIS_INSTANCE", format!("bench-{k}")),
                ("PAASTIS_GATEWAY_INSTANCES", "2".to_owned()),
                // A pass every 10 s: it starts at once and carries what the
                // budget left undone to the next.
                ("PAASTIS_SCHEDULER_INTERVAL", "10".to_owned()),
            ],
        )?);
    }
    let client = client()?;
    let step = plan.shared_span / plan.shared_wakes.max(1) as u32;
    let listens: Vec<_> = gateway.iter().map(|i| i.envoy.listen).collect();
    let tasks: Vec<_> = sleeping
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let (client, app) = (client.clone(), app.clone());
            let listen = listens[i % listens.len()];
            let at = tokio::time::Instant::now() + step * i as u32;
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                ask(&client, listen, &app).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.map_err(|e| e.to_string())?);
    }
    // Watch on (the scheduler goes on with what is left) until the end.
    let watch_until = tokio::time::Instant::from_std(began) + plan.shared_watch;
    tokio::time::sleep_until(watch_until).await;
    let watched = began.elapsed();
    let all = fake.call_log();
    let log = &all[seen.min(all.len())..];
    let first = log.first().map(|r| r.at);
    let (max_per_minute, at) = max_in_window(log, MINUTE);
    let in_fullest: Vec<&CallRecord> = match at {
        Some(start) => log
            .iter()
            .filter(|r| r.at >= start && r.at.duration_since(start) < MINUTE)
            .collect(),
        None => Vec::new(),
    };
    let fullest_span = match (in_fullest.first(), in_fullest.last()) {
        (Some(a), Some(b)) => b.at.duration_since(a.at),
        _ => Duration::ZERO,
    };
    let idle_paused = idle.iter().filter(|a| fake.scale_calls(a) > 0).count();
    let logs = if answers.iter().all(served) {
        String::new()
    } else {
        gateway
            .iter()
            .map(Instance::logs)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let result = Shared {
        wakes: sleeping.len(),
        idle: idle.len(),
        api_calls: log.len(),
        watched,
        max_per_minute,
        fullest_at: match (first, at) {
            (Some(f), Some(a)) => a.duration_since(f).as_secs_f64(),
            _ => f64::NAN,
        },
        fullest: by_endpoint(in_fullest.iter().copied()),
        fullest_span,
        rate_limited: fake.rate_limited_total() - limited_before,
        idle_paused,
        answers,
        logs,
    };
    drop(gateway);
    drop(redis);
    Ok(result)
}

// ---- the run and its report --------------------------------------------------

pub async fn run(plan: Plan, dir: PathBuf) -> Result<Section, String> {
    let began = Instant::now();
    let mut body = String::new();
    let mut targets = Vec::new();
    let mut failures = Vec::new();

    eprintln!("paastis-bench: scalingo 1/4: cold wakes...");
    let mut wakes = Vec::new();
    for i in 0..plan.cold_wakes {
        match cold_wake(&plan, &dir.join(format!("cold-{i}"))).await {
            Ok(w) => wakes.push(w),
            Err(e) => failures.push(format!("cold wake {i}: {e}")),
        }
    }
    cold_report(&plan, &wakes, &mut body, &mut targets);

    eprintln!("paastis-bench: scalingo 2/4: many apps in a minute...");
    match crowd(&plan, &dir.join("crowd")).await {
        Ok(c) => crowd_report(&plan, &c, &mut body, &mut targets),
        Err(e) => failures.push(format!("many apps: {e}")),
    }

    eprintln!("paastis-bench: scalingo 3/4: a broken app...");
    match broken(&plan, &dir.join("broken")).await {
        Ok(b) => broken_report(&plan, &b, &mut body, &mut targets),
        Err(e) => failures.push(format!("broken app: {e}")),
    }

    eprintln!("paastis-bench: scalingo 4/4: two instances, one budget...");
    match shared(&plan, &dir.join("shared")).await {
        Ok(s) => shared_report(&plan, &s, &mut body, &mut targets),
        Err(e) => failures.push(format!("shared budget: {e}")),
    }

    body.push_str(
        "\nMethod: the fake Scalingo in process with its strict defaults (`FakeConfig::default()`: 60 API \
         calls a minute per token, then 429 `Retry later` without `Retry-After`; 30 s scale-downs; the \
         front answers the router's 503 for 1 s after a container runs; crash loops as the platform's), \
         the release sidecar (`PAASTIS_SCALINGO_CALLS_PER_MINUTE=55`, `PAASTIS_WAKE_TIMEOUT=60`, no \
         rules: the default blocking strategy) and Envoy (2 workers) on `envoy/fake.yaml.tmpl` with the \
         shipped filter configuration. Calls are what the fake received (its call log, 429s included), \
         attributed to an app by the request's path. Each gateway first wakes an app that already runs \
         (not counted): a fresh sidecar exchanges its token and lists the regions once in its life.\n",
    );
    if !failures.is_empty() {
        return Err(format!(
            "{}\n(partial figures:\n{})",
            failures.join("\n"),
            targets
                .iter()
                .map(|t| format!("  {}: {} (target {})", t.what, t.measured, t.target))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    Ok(Section {
        title: "6. Within Scalingo's limits (strict fake)".to_owned(),
        body,
        targets,
        took: began.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> CallRecord {
        CallRecord {
            at: base + Duration::from_millis(ms),
            endpoint: Endpoint::Scale,
            app: None,
        }
    }

    #[test]
    fn fullest_window_is_half_open() {
        let base = Instant::now();
        let log: Vec<CallRecord> = [0, 10, 59_999, 60_000, 60_001, 61_000]
            .iter()
            .map(|ms| at(base, *ms))
            .collect();
        // [10, 60_010) holds 10, 59_999, 60_000, 60_001: four.
        let (n, start) = max_in_window(&log, MINUTE);
        assert_eq!(n, 4);
        assert_eq!(start, Some(base + Duration::from_millis(10)));
        assert_eq!(max_in_window(&[], MINUTE), (0, None));
    }
}

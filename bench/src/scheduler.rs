//! 4. Scheduler: one pass over 10,000 registered apps in Redis, 1 % of them
//!    idle. How long the pass takes, how much of that is registry work, and
//!    how many Scalingo calls it makes.
//!
//! The scheduler is the sidecar's own (`paastis_sidecar::build`, Redis
//! registry on a private `redis-server`), driven pass by pass with chosen
//! clocks: a first pass 30 minutes ago discovers and registers every app,
//! activity then touches 99 % of them now, and the measured pass finds the
//! other 1 % idle. A last pass, with nothing left to pause, is the registry
//! work alone (plus one app list per region, timed apart).
//!
//! Its Scalingo calls are paced (`PAASTIS_SCALINGO_CALLS_PER_MINUTE`); the
//! bench sets the pace far above any need, so that what is measured is the
//! work, and states what the default pace implies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use paastis_e2e::fake::{Endpoint, FakeApp, FakeConfig, FakeScalingo};
use paastis_e2e::redis::{unique_prefix, TestRedis};
use paastis_sidecar::config::{env_from_map, Config, Env};
use paastis_sidecar::scalingo::ScalingoClient;

use crate::report::{f0, f1, table, Section, Target};
use crate::util;

/// The pace the bench sets (calls a minute): never the limit here.
const BENCH_PACE: u32 = 100_000;
const IDLE_EVERY: usize = 100;

/// Requests the fake received, per endpoint.
fn calls(fake: &FakeScalingo) -> HashMap<Endpoint, usize> {
    Endpoint::ALL.iter().map(|e| (*e, fake.calls(*e))).collect()
}

fn delta(
    before: &HashMap<Endpoint, usize>,
    after: &HashMap<Endpoint, usize>,
) -> Vec<(Endpoint, usize)> {
    Endpoint::ALL
        .iter()
        .map(|e| {
            (
                *e,
                after.get(e).copied().unwrap_or(0) - before.get(e).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn describe(calls: &[(Endpoint, usize)]) -> String {
    if calls.is_empty() {
        return "none".to_owned();
    }
    calls
        .iter()
        .map(|(e, n)| format!("{e:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Calls to the regional API (those the pace applies to; the token exchange
/// and region list go to the auth API and are cached).
fn regional(calls: &[(Endpoint, usize)]) -> usize {
    calls
        .iter()
        .filter(|(e, _)| !matches!(e, Endpoint::Exchange | Endpoint::Regions | Endpoint::Front))
        .map(|(_, n)| n)
        .sum()
}

/// Redis commands served since the last `CONFIG RESETSTAT`: count and the
/// server's own time in them.
async fn redis_stats(conn: &mut redis::aio::MultiplexedConnection) -> Result<(u64, u64), String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut calls = 0;
    let mut usec = 0;
    for line in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        // Our own INFO and CONFIG are not the scheduler's work.
        if line.starts_with("cmdstat_info:") || line.starts_with("cmdstat_config") {
            continue;
        }
        for kv in line.split_once(':').map_or("", |(_, v)| v).split(',') {
            match kv.split_once('=') {
                Some(("calls", v)) => calls += v.parse::<u64>().unwrap_or(0),
                Some(("usec", v)) => usec += v.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok((calls, usec))
}

async fn reset_redis_stats(conn: &mut redis::aio::MultiplexedConnection) -> Result<(), String> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await
        .map_err(|e| e.to_string())
}

struct Measured {
    name: &'static str,
    took: Duration,
    paused: usize,
    failed: usize,
    discovered: usize,
    calls: Vec<(Endpoint, usize)>,
    redis_commands: u64,
    redis_usec: u64,
}

/// One pass at `at`, with the calls and Redis commands it made.
async fn measure(
    name: &'static str,
    at: u64,
    scheduler: &paastis_sidecar::scheduler::Scheduler,
    fake: &FakeScalingo,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<Measured, String> {
    reset_redis_stats(conn).await?;
    let before = calls(fake);
    let started = Instant::now();
    let report = scheduler.pass(at).await.map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let (redis_commands, redis_usec) = redis_stats(conn).await?;
    if report.skipped {
        return Err(format!("{name}: the pass was skipped (lease held)"));
    }
    Ok(Measured {
        name,
        took,
        paused: report.paused.len(),
        failed: report.failed.len(),
        discovered: report.discovered.len(),
        calls: delta(&before, &calls(fake)),
        redis_commands,
        redis_usec,
    })
}

pub async fn run(apps: usize) -> Result<Section, String> {
    let began = Instant::now();
    let redis = tokio::task::block_in_place(TestRedis::start);
    let fake = FakeScalingo::start(FakeConfig {
        boot_delay: Duration::ZERO,
        // kinder than the real platform until the sidecar lives within it (issue 9); the strict fake is for the tests
        ..FakeConfig::lenient()
    })
    .await
    .map_err(|e| e.to_string())?;
    let regions = fake.regions();
    let names: Vec<String> = (0..apps).map(|i| format!("sched-app-{i:05}")).collect();
    for (i, name) in names.iter().enumerate() {
        fake.add_app(FakeApp::web(name, &regions[i % regions.len()], 1));
    }
    let prefix = unique_prefix("bench-scheduler");
    let vars: HashMap<String, String> = [
        (
            "PROVIDER_SCALINGO_API_TOKEN",
            fake.config().api_token.clone(),
        ),
        ("PROVIDER_SCALINGO_AUTH_URL", fake.auth_url()),
        ("PAASTIS_RULES_FILE", "/dev/null".to_owned()),
        ("REGISTRY_TYPE", "redis".to_owned()),
        ("REGISTRY_REDIS_URL", redis.url()),
        ("REGISTRY_REDIS_KEY_PREFIX", prefix),
        ("PAASTIS_INSTANCE", "bench".to_owned()),
        ("PAASTIS_SCALINGO_CALLS_PER_MINUTE", BENCH_PACE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let get = env_from_map(&vars);
    let config = Config::from_env(&Env::new(&get)).map_err(|e| e.to_string())?;
    let gateway = paastis_sidecar::build(&config).await?;
    let mut conn = redis::Client::open(redis.url())
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;

    let now = paastis_sidecar::wake::now_ms();
    let scheduler = &gateway.scheduler;
    let mut passes = Vec::new();
    // Discovery, 30 minutes ago: every app registered, its idle clock
    // started then.
    passes.push(
        measure(
            "discovery (registers every app)",
            now - 30 * 60_000,
            scheduler,
            &fake,
            &mut conn,
        )
        .await?,
    );

    // Activity for 99 % of the apps, as the filter's batches bring it.
    let active: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| i % IDLE_EVERY != 0)
        .map(|(_, n)| n.clone())
        .collect();
    for batch in active.chunks(1_000) {
        gateway
            .waker
            .registry()
            .touch(batch, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    passes.push(
        measure(
            "1 % idle (the measured pass)",
            now + 1,
            scheduler,
            &fake,
            &mut conn,
        )
        .await?,
    );
    passes.push(
        measure(
            "nothing idle (registry work)",
            now + 2,
            scheduler,
            &fake,
            &mut conn,
        )
        .await?,
    );

    // The app lists alone, as the passes make them.
    let client = ScalingoClient::new(config.scalingo.clone()).map_err(|e| e.to_string())?;
    client.regions().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    for region in &regions {
        client.list_apps(region).await.map_err(|e| e.to_string())?;
    }
    let lists = started.elapsed();
    let registered = gateway
        .waker
        .registry()
        .len()
        .await
        .map_err(|e| e.to_string())?;
    drop(gateway);
    drop(redis);
    Ok(section(
        apps,
        config.scheduler_interval,
        registered,
        &passes,
        lists,
        began.elapsed(),
    ))
}

fn section(
    apps: usize,
    default_interval: Duration,
    registered: usize,
    passes: &[Measured],
    lists: Duration,
    took: Duration,
) -> Section {
    let rows: Vec<Vec<String>> = passes
        .iter()
        .map(|p| {
            vec![
                p.name.to_owned(),
                f0(util::ms(p.took)),
                p.discovered.to_string(),
                p.paused.to_string(),
                p.failed.to_string(),
                regional(&p.calls).to_string(),
                describe(&p.calls),
                p.redis_commands.to_string(),
                f0(p.redis_usec as f64 / 1000.0),
            ]
        })
        .collect();
    let mut body = format!(
        "{apps} running apps over {} regions in the fake, all registered in Redis ({registered} at the end); \
         activity touches 99 % of them, 1 % ({}) are idle for 30 minutes (max idle time 15). \
         Pace set to {BENCH_PACE} Scalingo calls a minute.\n\n",
        2,
        apps / IDLE_EVERY
    );
    body.push_str(&table(
        &[
            "pass",
            "time (ms)",
            "discovered",
            "paused",
            "failed",
            "regional API calls",
            "Scalingo calls by endpoint",
            "Redis commands",
            "Redis server time (ms)",
        ],
        &rows,
    ));
    let idle = passes.get(1);
    let registry_only = passes.get(2);
    let registry_ms = registry_only.map_or(f64::NAN, |p| util::ms(p.took) - util::ms(lists));
    body.push_str(&format!(
        "\nThe app lists alone (one per region, timed apart): {:.0} ms. Registry work of a pass over {apps} apps \
         (the pass with nothing idle minus the lists): **{:.0} ms**.\n",
        util::ms(lists),
        registry_ms
    ));
    if let Some(p) = registry_only {
        body.push_str(&format!(
            "That pass sent {} Redis commands ({:.1} per app, the records read in pipelined batches) and \
             Redis spent {:.0} ms in them: the rest of the registry work is the transfer and decoding of the \
             records and the sidecar's own work.\n",
            p.redis_commands,
            p.redis_commands as f64 / apps.max(1) as f64,
            p.redis_usec as f64 / 1000.0
        ));
    }
    let mut targets = vec![Target::new(
        &format!("scheduler: registry work of a pass over {apps} apps"),
        "reported",
        format!("{} ms", f0(registry_ms)),
        None,
    )];
    if let Some(p) = idle {
        let paced = regional(&p.calls);
        let at_default = paced.saturating_sub(1) as f64 * 60.0
            / paastis_sidecar::config::DEFAULT_CALLS_PER_MINUTE as f64;
        let interval = default_interval.as_secs_f64();
        let lease = paastis_sidecar::scheduler::LEASE_TTL.as_secs_f64();
        let consequence = if at_default > lease {
            format!(
                ": longer than the default pass interval ({interval:.0} s) and than the scheduler lease \
                 ({lease:.0} s), which the pass therefore renews before each pause"
            )
        } else if at_default > interval {
            format!(": longer than the default pass interval ({interval:.0} s)")
        } else {
            String::new()
        };
        body.push_str(&format!(
            "\nThe pass with {} idle apps took **{:.0} ms** and made **{paced}** regional API calls \
             ({}; the pace here spaces them by {:.1} ms). At the default pace \
             ({} calls a minute, Scalingo's limit), the same pass cannot take less than \
             **{at_default:.0} s** ({paced} calls one pace apart){consequence}. \
             Each pause also waits for its drain, alongside its turn at the pace: every filter VM that \
             renews a lease on the app gives it back first (one or two filter ticks, 1 s each by default; \
             no filter runs here, so no drain is waited). Its registry work is the same.\n",
            apps / IDLE_EVERY,
            util::ms(p.took),
            describe(&p.calls),
            60_000.0 / BENCH_PACE as f64,
            paastis_sidecar::config::DEFAULT_CALLS_PER_MINUTE,
        ));
        targets.push(Target::new(
            &format!("scheduler: pass over {apps} apps, 1 % idle"),
            "reported",
            format!("{} ms, {paced} Scalingo calls", f0(util::ms(p.took))),
            None,
        ));
        targets.push(Target::new(
            "scheduler: the same pass at the default pace (60/min)",
            "reported",
            format!(">= {} s", f1(at_default)),
            None,
        ));
    }
    body.push_str(
        "\nMethod: `paastis_sidecar::build` with `REGISTRY_TYPE=redis` on a private `redis-server` and the fake \
         Scalingo in process; `Scheduler::pass` called with chosen clocks. Redis figures come from \
         `INFO commandstats` (reset before each pass).\n",
    );
    Section {
        title: "4. Scheduler".to_owned(),
        body,
        targets,
        took,
    }
}

//! `fake-scalingo`: serves the fake Scalingo (auth API, regional APIs, app
//! front-ends and the `/_fake/` control API) until SIGINT or SIGTERM.
//!
//! On start it prints ONE JSON line on stdout:
//! `{"auth_url":"http://127.0.0.1:P","control_url":"http://127.0.0.1:P/_fake",
//!   "regions":["osc-fr1",..],"api":{"osc-fr1":"http://127.0.0.1:P",..},
//!   "front":{"osc-fr1":"127.0.0.1:P",..}}`
//! then logs to stderr (`RUST_LOG` filters, default `info`).
//!
//! The fake is strict by default (see the `fake` module docs): 60 calls a
//! minute per token, 30 s scale-downs, a 1 s front boot window, sparse list
//! entries. Flags make it kinder or select the contract's other variants;
//! `FAKE_SCALINGO_RATE_LIMIT` (a number, or `off`) sets the rate limit when
//! no rate-limit flag is given.
//!
//! Exit codes: 0 after a signal, 64 bad flags, 65 bad `--apps` content,
//! 66 unreadable `--apps` file, 71 cannot bind or start.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use paastis_e2e::fake::{
    FakeAddrs, FakeApp, FakeConfig, FakeScalingo, ListEntries, RateLimitBody, UnknownTypeAnswer,
};

const USAGE: &str = "usage: fake-scalingo [options]
  --token TOKEN          API token accepted by the exchange (default tk-us-fake-token)
  --boot-delay-ms N      scale-up to running delay (default 300)
  --stop-delay-ms N      scale-down to stopped delay (default 30000)
  --auth ADDR            auth + control API address (default 127.0.0.1:0)
  --api REGION=ADDR      regional API address (repeatable; default 127.0.0.1:0)
  --front REGION=ADDR    app front-end address (repeatable; default 127.0.0.1:0)
  --apps FILE            JSON array of {\"name\",\"region\",\"formation\":[{\"name\",\"amount\",\"size\"}],\"deployed\"?}
  --rate-limit N         calls per token per rolling minute (default 60; env FAKE_SCALINGO_RATE_LIMIT)
  --no-rate-limit        no rate limit
  --rate-limit-body B    body of a rate-limit 429: plain (default) or json
  --retry-after-s N      send Retry-After: N on a rate-limit 429 (default: none)
  --keep-stopped         keep stopped containers in ps after a scale to 0
  --list-entries M       full, some-sparse (default) or all-sparse GET /v1/apps entries
  --unknown-type A       scale of an unknown type: not-found (default) or unprocessable
  --crashed-after N      failed boots before a crash-looping app reads crashed (default 12)
  --boot-retries N       boot retries before a crash loop's operation fails (default 20)
  --crash-backoff-ms N   first back-off between boot retries, doubling (default 1000)
  --router-status N      status of the router's error page: 502, 503 (default) or 504
  --front-boot-window-ms N  router error after ps reads running (default 1000)
  --lenient              start from the kind fake of before (no rate limit, instant
                         scale-downs, full list entries, no boot window, 422 unknown types)
  --help                 this text
Regions are osc-fr1 and osc-secnum-fr1, plus any other region named by --api/--front.";

/// Parsed command line.
struct Args {
    config: FakeConfig,
    addrs: FakeAddrs,
    apps_file: Option<String>,
}

/// A positive integer, or the message for a bad `what`.
fn positive(what: &str, v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{what}: not a positive integer: {v:?}"))
}

/// `Err` is the message for a bad command line. `env_rate_limit` is
/// `FAKE_SCALINGO_RATE_LIMIT`, used when no rate-limit flag is given.
fn parse_args(raw: Vec<String>, env_rate_limit: Option<String>) -> Result<Option<Args>, String> {
    // `--lenient` is the base the other flags apply to, wherever it is.
    let mut config = if raw.iter().any(|a| a == "--lenient") {
        FakeConfig::lenient()
    } else {
        FakeConfig::default()
    };
    let mut addrs = FakeAddrs::default();
    let mut apps_file = None;
    let mut rate_limit_given = false;
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = !matches!(
            flag.as_str(),
            "--help" | "-h" | "--keep-stopped" | "--no-rate-limit" | "--lenient"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
            }
        } else {
            if inline.is_some() {
                return Err(format!("{flag} takes no value"));
            }
            String::new()
        };
        let millis = |v: &str| -> Result<Duration, String> {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag}: not a number of milliseconds: {v:?}"))
        };
        let addr = |v: &str| -> Result<SocketAddr, String> {
            v.parse::<SocketAddr>()
                .map_err(|_| format!("{flag}: not an address (IP:PORT): {v:?}"))
        };
        let region_addr = |v: &str| -> Result<(String, SocketAddr), String> {
            let (region, a) = v
                .split_once('=')
                .ok_or_else(|| format!("{flag}: expected REGION=ADDR, got {v:?}"))?;
            if region.is_empty() {
                return Err(format!("{flag}: empty region in {v:?}"));
            }
            Ok((region.to_string(), addr(a)?))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(None),
            "--keep-stopped" => config.keep_stopped_in_ps = true,
            "--lenient" => rate_limit_given = true,
            "--token" => {
                if value.is_empty() {
                    return Err("--token: empty token".to_string());
                }
                config.api_token = value;
            }
            "--boot-delay-ms" => config.boot_delay = millis(&value)?,
            "--stop-delay-ms" => config.stop_delay = millis(&value)?,
            "--auth" => addrs.auth = addr(&value)?,
            "--api" | "--front" => {
                let (region, a) = region_addr(&value)?;
                if !config.regions.contains(&region) {
                    config.regions.push(region.clone());
                }
                let list = if flag == "--api" {
                    &mut addrs.api
                } else {
                    &mut addrs.front
                };
                if list.iter().any(|(r, _)| *r == region) {
                    return Err(format!("{flag}: region {region:?} given twice"));
                }
                list.push((region, a));
            }
            "--apps" => apps_file = Some(value),
            "--rate-limit" => {
                config.rate_limit_per_minute = Some(positive(&flag, &value)?);
                rate_limit_given = true;
            }
            "--no-rate-limit" => {
                config.rate_limit_per_minute = None;
                rate_limit_given = true;
            }
            "--rate-limit-body" => {
                config.rate_limit_body = RateLimitBody::parse(&value)
                    .ok_or_else(|| format!("{flag}: plain or json, got {value:?}"))?
            }
            "--retry-after-s" => {
                config.rate_limit_retry_after =
                    Some(Duration::from_secs(u64::from(positive(&flag, &value)?)))
            }
            "--list-entries" => {
                config.list_entries = ListEntries::parse(&value).ok_or_else(|| {
                    format!("{flag}: full, some-sparse or all-sparse, got {value:?}")
                })?
            }
            "--unknown-type" => {
                config.unknown_type = UnknownTypeAnswer::parse(&value)
                    .ok_or_else(|| format!("{flag}: not-found or unprocessable, got {value:?}"))?
            }
            "--crashed-after" => config.crashed_after = positive(&flag, &value)?,
            "--boot-retries" => {
                config.boot_retries = value
                    .parse()
                    .map_err(|_| format!("{flag}: not an integer: {value:?}"))?
            }
            "--crash-backoff-ms" => config.crash_backoff = millis(&value)?,
            "--router-status" => {
                config.router_status = value
                    .parse::<u16>()
                    .ok()
                    .filter(|s| [502, 503, 504].contains(s))
                    .ok_or_else(|| format!("{flag}: 502, 503 or 504, got {value:?}"))?
            }
            "--front-boot-window-ms" => config.front_boot_window = millis(&value)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !rate_limit_given {
        if let Some(v) = env_rate_limit {
            config.rate_limit_per_minute = match v.as_str() {
                "off" | "none" => None,
                n => Some(positive("FAKE_SCALINGO_RATE_LIMIT", n)?),
            };
        }
    }
    Ok(Some(Args {
        config,
        addrs,
        apps_file,
    }))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let env_rate_limit = std::env::var("FAKE_SCALINGO_RATE_LIMIT").ok();
    let args = match parse_args(std::env::args().skip(1).collect(), env_rate_limit) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-scalingo: {message}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let apps: Vec<FakeApp> = match &args.apps_file {
        None => Vec::new(),
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("fake-scalingo: cannot read --apps {path}: {e}");
                    return ExitCode::from(66);
                }
            };
            match serde_json::from_str(&text) {
                Ok(apps) => apps,
                Err(e) => {
                    eprintln!("fake-scalingo: bad --apps {path}: {e}");
                    return ExitCode::from(65);
                }
            }
        }
    };

    let fake = match FakeScalingo::start_on(args.config, args.addrs).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-scalingo: cannot start: {e}");
            return ExitCode::from(71);
        }
    };
    for app in apps {
        let name = app.name.clone();
        if let Err(e) = fake.try_add_app(app) {
            eprintln!("fake-scalingo: bad app {name:?} in --apps: {e}");
            fake.shutdown().await;
            return ExitCode::from(65);
        }
    }

    let regions = fake.regions();
    let api: serde_json::Map<String, serde_json::Value> = regions
        .iter()
        .filter_map(|r| fake.api_url(r).map(|u| (r.clone(), u.into())))
        .collect();
    let front: serde_json::Map<String, serde_json::Value> = regions
        .iter()
        .filter_map(|r| {
            fake.front_addr(r)
                .map(|a| (r.clone(), a.to_string().into()))
        })
        .collect();
    let line = serde_json::json!({
        "auth_url": fake.auth_url(),
        "control_url": format!("{}/_fake", fake.auth_url()),
        "regions": regions,
        "api": api,
        "front": front,
    });
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // If stdout is gone nobody can learn the addresses: stop.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            fake.shutdown().await;
            return ExitCode::from(71);
        }
    }
    tracing::info!(auth_url = %fake.auth_url(), "fake-scalingo ready");

    wait_for_signal().await;
    tracing::info!("signal received, shutting down");
    fake.shutdown().await;
    ExitCode::SUCCESS
}

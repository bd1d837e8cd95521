//! `fake-scalingo`: serves the fake Scalingo (auth API, regional APIs, app
//! front-ends and the `/_fake/` control API) until SIGINT or SIGTERM.
//!
//! On start it prints ONE JSON line on stdout:
//! `{"auth_url":"http://127.0.0.1:P","control_url":"http://127.0.0.1:P/_fake",
//!   "regions":["osc-fr1",..],"api":{"osc-fr1":"http://127.0.0.1:P",..},
//!   "front":{"osc-fr1":"127.0.0.1:P",..}}`
//! then logs to stderr (`RUST_LOG` filters, default `info`).
//!
//! Exit codes: 0 after a signal, 64 bad flags, 65 bad `--apps` content,
//! 66 unreadable `--apps` file, 71 cannot bind or start.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use paastis_e2e::fake::{FakeAddrs, FakeApp, FakeConfig, FakeScalingo};

const USAGE: &str = "usage: fake-scalingo [options]
  --token TOKEN          API token accepted by the exchange (default tk-us-fake-token)
  --boot-delay-ms N      scale-up to running delay (default 300)
  --stop-delay-ms N      scale-down to stopped delay (default 0)
  --auth ADDR            auth + control API address (default 127.0.0.1:0)
  --api REGION=ADDR      regional API address (repeatable; default 127.0.0.1:0)
  --front REGION=ADDR    app front-end address (repeatable; default 127.0.0.1:0)
  --apps FILE            JSON array of {\"name\",\"region\",\"formation\":[{\"name\",\"amount\",\"size\"}],\"deployed\"?}
  --rate-limit N         authenticated regional calls per token per rolling minute
  --keep-stopped         keep stopped containers in ps after a scale to 0
  --help                 this text
Regions are osc-fr1 and osc-secnum-fr1, plus any other region named by --api/--front.";

/// Parsed command line.
struct Args {
    config: FakeConfig,
    addrs: FakeAddrs,
    apps_file: Option<String>,
}

/// `Err` is the message for a bad command line.
fn parse_args(raw: Vec<String>) -> Result<Option<Args>, String> {
    let mut config = FakeConfig::default();
    let mut addrs = FakeAddrs::default();
    let mut apps_file = None;
    let mut it = raw.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = !matches!(flag.as_str(), "--help" | "-h" | "--keep-stopped");
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
                let n = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("--rate-limit: not a positive integer: {value:?}"))?;
                config.rate_limit_per_minute = Some(n);
            }
            other => return Err(format!("unknown argument {other:?}")),
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
    let args = match parse_args(std::env::args().skip(1).collect()) {
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

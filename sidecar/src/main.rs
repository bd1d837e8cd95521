//! `paastis-sidecar`: reads its configuration from the environment (and
//! `paastis.yml`), binds, serves until SIGINT or SIGTERM, then drains.
//!
//! `paastis-sidecar check-config [--apps] [--filter-config FILE] [HOST ...]`
//! checks the configuration and shows what sample hosts map to; with
//! `--apps`, which apps of the token are managed (see
//! `paastis_sidecar::check`).
//!
//! Exit codes: 64 for a configuration error (`invalid configuration: ...`,
//! naming the variable, or the file, rule and field), 1 when Scalingo or a
//! port cannot be reached.

use std::process::ExitCode;
use std::time::Duration;

use paastis_sidecar::check::{self, HostView};
use paastis_sidecar::config::{Config, LogFormat};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// `EX_USAGE`: the configuration is wrong; nothing was started.
const EXIT_CONFIG: u8 = 64;
/// How often activity kept during a registry outage is retried: much shorter
/// than a scheduler interval, so another instance's pass sees it.
const PENDING_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Bound on the drain at shutdown: in-flight requests and wakes get this long
/// (below Kubernetes' default 30 s grace period).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Validate everything before a port is bound.
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match args.first().map(String::as_str) {
        None => serve(config),
        Some("check-config") => check_config(&config, &args[1..]),
        Some("-h" | "--help" | "help") => {
            println!(
                "usage: paastis-sidecar [check-config [--apps] [--filter-config FILE] [HOST ...]]"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("invalid configuration: unknown command {other:?} (try --help)");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn check_config(config: &Config, args: &[String]) -> ExitCode {
    let mut hosts = HostView::FirstLabel;
    let mut samples = Vec::new();
    let mut list_apps = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--apps" {
            list_apps = true;
        } else if arg == "--filter-config" {
            let Some(path) = args.next() else {
                eprintln!("invalid configuration: --filter-config needs a file");
                return ExitCode::from(EXIT_CONFIG);
            };
            let parsed = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| HostView::from_filter_json(&bytes));
            match parsed {
                Ok(view) => hosts = view,
                Err(e) => {
                    eprintln!("invalid configuration: {path}: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        } else {
            samples.push(arg.clone());
        }
    }
    if !list_apps {
        // No network call: the region names are checked against the known
        // list (`--apps` asks Scalingo).
        if let Err(e) = check::check_known_regions(config) {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    print!("{}", check::report(config, &hosts, &samples));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("fronts:");
    for (warning, line) in runtime.block_on(check::fronts_report(config)) {
        println!("  {}{line}", if warning { "WARNING " } else { "" });
    }
    if !list_apps {
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(check::apps_report(config)) {
        Ok(apps) => {
            println!("apps:");
            print!("{apps}");
            ExitCode::SUCCESS
        }
        Err(check::AppsError::Config(e)) => {
            eprintln!("invalid configuration: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("cannot list the apps: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

fn serve(config: Config) -> ExitCode {
    init_logs(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        for warning in &config.warnings {
            warn!("{warning}");
        }
        for var in &config.ignored_vars {
            warn!(variable = var.name, "ignored: {}", var.why);
        }
        // A region that does not exist would fail every wake: refused now.
        match check::verify_regions(&config).await {
            Ok(None) => {}
            Ok(Some(warning)) => warn!("{warning}"),
            Err(e) => {
                error!(error = %e, "invalid configuration");
                eprintln!("invalid configuration: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        let gateway = match paastis_sidecar::build(&config).await {
            Ok(g) => g,
            Err(e) => {
                error!(error = %e, "cannot start");
                eprintln!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => {
                error!(addr = %config.listen, error = %e, "cannot bind");
                return ExitCode::FAILURE;
            }
        };
        let admin_listener = match &config.admin {
            None => None,
            Some(admin) => match TcpListener::bind(admin.listen).await {
                Ok(l) => Some((l, admin.token.clone())),
                Err(e) => {
                    error!(addr = %admin.listen, error = %e, "cannot bind the admin API");
                    return ExitCode::FAILURE;
                }
            },
        };
        let addr = local_addr(&listener);
        info!(
            addr = %addr,
            rules = config.rules.len(),
            rules_file = ?config.rules_file,
            ignored = config.ignored_apps.len(),
            managed = config.managed_apps.pattern().unwrap_or("every app"),
            dry_run = config.dry_run,
            schedule = %config.scheduler_schedule,
            "sidecar listening"
        );
        // Whether readiness can be probed on the fronts or costs API calls:
        // said once, without delaying the start.
        let fronts_of = config.clone();
        tokio::spawn(async move {
            for (warning, line) in check::fronts_report(&fronts_of).await {
                if warning {
                    warn!("{line}");
                } else {
                    info!("{line}");
                }
            }
        });
        // Lines on stdout that tools (and tests binding port 0) can read.
        println!("listening on {addr}");

        // `stop` ends the listeners (they then drain their requests);
        // `background` ends the scheduler and the flusher, after the drain.
        let stop = CancellationToken::new();
        let background = CancellationToken::new();
        let mut servers = tokio::task::JoinSet::new();
        servers.spawn(paastis_sidecar::server::run_with(
            listener,
            gateway.waker.clone(),
            paastis_sidecar::server::ServeOptions {
                token: config.sidecar_token.clone(),
                limits: config.listener_limits,
            },
            stop.clone().cancelled_owned(),
        ));
        if let Some((listener, token)) = admin_listener {
            let admin_addr = local_addr(&listener);
            info!(addr = %admin_addr, "admin API listening");
            println!("admin listening on {admin_addr}");
            servers.spawn(paastis_sidecar::admin::run(
                listener,
                gateway.waker.clone(),
                gateway.scheduler.clone(),
                token,
                stop.clone().cancelled_owned(),
            ));
        }
        let tasks = TaskTracker::new();
        tasks.spawn(
            gateway
                .scheduler
                .clone()
                .run(config.scheduler_schedule.clone(), background.clone()),
        );
        tasks.spawn(gateway.prewarm.clone().run(background.clone()));
        // The awake leases: stops read, releases acknowledged, beats.
        let deps = gateway.waker.deps();
        tasks.spawn(deps.leases.clone().run(
            deps.coordinator.clone(),
            deps.awake.clone(),
            background.clone(),
        ));
        tasks.spawn(
            gateway
                .waker
                .deps()
                .activity
                .clone()
                .run_flusher(PENDING_FLUSH_EVERY, background.clone()),
        );
        tasks.close();

        let mut failed = false;
        tokio::select! {
            _ = shutdown_signal() => {}
            ended = servers.join_next() => {
                error!(result = ?ended, "a listener stopped unexpectedly");
                failed = true;
            }
        }
        info!(
            wakes_in_flight = gateway.waker.wakes_in_flight(),
            "shutting down: draining requests and wakes"
        );
        stop.cancel();
        let waker = gateway.waker.clone();
        let drain = async {
            while servers.join_next().await.is_some() {}
            waker.drained().await;
            // After the wakes: a wake that ends spawns its after_start hook.
            waker.deps().hooks.drained().await;
        };
        if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
            warn!(
                wakes_in_flight = waker.wakes_in_flight(),
                "drain timed out; stopping anyway"
            );
        }
        // A pass under way is dropped (its lease expires); the flusher
        // stops between two ticks.
        background.cancel();
        tasks.wait().await;
        // Last chance for activity kept during an outage.
        if let Err(e) = waker.flush_activity().await {
            error!(error = %e, pending = waker.pending_activity(), "activity lost at shutdown");
        }
        info!("sidecar stopped");
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

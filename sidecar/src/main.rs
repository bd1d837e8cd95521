//! `paastis-sidecar`: reads its configuration from the environment (and
//! `paastis.yml`), binds, serves until SIGINT or SIGTERM.

use std::process::ExitCode;

use paastis_sidecar::config::Config;
use tokio::net::TcpListener;
use tracing::{error, info};

/// `EX_USAGE`: the configuration is wrong; nothing was started.
const EXIT_CONFIG: u8 = 64;
/// How often activity kept during a registry outage is retried: much shorter
/// than a scheduler interval, so another instance's pass sees it.
const PENDING_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    // Validate everything before a port is bound.
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
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
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        info!(
            addr = %addr,
            rules = config.rules.len(),
            rules_file = ?config.rules_file,
            ignored = config.ignored_apps.len(),
            "sidecar listening"
        );
        // One line on stdout that tools (and tests binding port 0) can read.
        println!("listening on {addr}");
        let scheduler = tokio::spawn(
            gateway
                .scheduler
                .clone()
                .run(config.scheduler_interval, std::future::pending()),
        );
        let flusher = tokio::spawn(
            gateway
                .waker
                .clone()
                .run_flusher(PENDING_FLUSH_EVERY, std::future::pending()),
        );
        let waker = gateway.waker.clone();
        let served = paastis_sidecar::server::run(listener, gateway.waker, shutdown_signal()).await;
        scheduler.abort();
        flusher.abort();
        // Last chance for activity kept during an outage.
        if let Err(e) = waker.flush_activity().await {
            error!(error = %e, pending = waker.pending_activity(), "activity lost at shutdown");
        }
        match served {
            Ok(()) => {
                info!("sidecar stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
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

//! The accept loop of the sidecar's two listeners (the filter's API and the
//! admin API), bounded against slow or greedy clients:
//!
//! - a **header-read timeout**: a connection that has not sent a whole
//!   request head within it is closed (hyper's HTTP/1 timer; it also runs on
//!   an idle keep-alive connection, which Envoy's pool must therefore close
//!   first: the shipped configs give the sidecar cluster a shorter
//!   `idle_timeout`);
//! - a **connection cap**: past it the loop stops accepting (clients wait in
//!   the kernel's backlog, or time out connecting) until a connection ends;
//!   held wakes are one connection each, so it is far above any crowd the
//!   sidecar joins into one wake.
//!
//! Shutdown stops accepting, then lets every connection finish its request
//! (graceful: keep-alive connections are closed after their answer).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Default header-read timeout (`PAASTIS_HEADER_READ_TIMEOUT`).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default connection cap (`PAASTIS_MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A connection must deliver each request head within this (and may
    /// stay idle between requests no longer).
    pub header_read_timeout: Duration,
    /// Connections served at once; at least 1.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then waits for the connections' requests to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // HTTP/1 only (Envoy's callouts and every client of the sidecar speak
    // it): an HTTP/2 auto-detection would wait for the first bytes with no
    // timer, so a silent connection would be held for ever.
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // The permit first: at the cap, nothing more is accepted.
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                // Never closed; were it, stop serving rather than spin.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: back off a
                    // little instead of spinning (as axum::serve does).
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Header-read timeouts and client resets end up here.
                debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

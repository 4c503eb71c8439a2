//! The HTTP/1.1 connection loop: a cap on open connections and timeouts on
//! slow or idle clients, which `axum::serve` has neither of.
//!
//! - At most `max_connections` are open at once (lowered to fit the
//!   process's open-file limit, keeping room for model, index and log
//!   files); a connection past the cap is closed at once instead of
//!   queueing, so a flood of idle sockets cannot starve `/health` or make
//!   `accept` fail with "too many open files".
//! - A client must send a request's headers within `header_timeout`, and a
//!   kept-alive connection waiting for its next request is closed after the
//!   same time (hyper starts the header timer whenever it waits for a head).
//! - Each request carries its client address (`ConnectInfo`), for the
//!   failed-authentication throttle.
//!
//! Only HTTP/1.1 is served: hyper's automatic HTTP/2 detection runs without
//! a timer, and OpenAI clients speak HTTP/1.1.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Open files kept free for everything but client connections.
const RESERVED_FILES: u64 = 128;

/// Bounds of the connection loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Connection counters.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
}

impl ConnectionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new("ragd_http_connections", "Client connections open now")?;
        let refused = IntCounter::with_opts(Opts::new(
            "ragd_http_connections_refused_total",
            "Connections closed on accept because the connection cap was reached",
        ))?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self { open, refused })
    }
}

/// `wanted`, lowered so that client sockets can never use up the
/// process's open-file limit.
pub fn connection_cap(wanted: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match soft {
        Some(limit) => {
            let room = limit.saturating_sub(RESERVED_FILES).max(limit / 2).max(1);
            wanted.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
        None => wanted,
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of files or memory for a moment: back off rather
                    // than spin (the cap should keep this from happening).
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        let open = metrics.open.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

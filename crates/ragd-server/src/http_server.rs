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
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::drain::Drain;

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

/// Serves `app` on `listener` until `drain` has started and finished.
///
/// When the drain starts, connections open so far are asked to close:
/// idle ones at once, busy ones after the response in flight (hyper turns
/// keep-alive off, so that response says `Connection: close`). The loop
/// keeps accepting, without keep-alive, so a new request gets the drain's
/// 503 rather than a refused connection. Once no admitted request is left
/// in flight it stops accepting and waits for the open connections to
/// finish writing. Dropping the future (at the end of the grace period)
/// cuts every connection still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    drain: Drain,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Connections accepted before the drain, then those accepted during it.
    let mut before = Some(GracefulShutdown::new());
    let during = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let builder = |keep_alive: bool| {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(keep_alive);
        b
    };
    let (serving, closing) = (builder(true), builder(false));
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
            () = drain.started(), if before.is_some() => {
                if let Some(open) = before.take() {
                    tracing::info!(
                        connections = open.count(),
                        in_flight = drain.in_flight(),
                        "draining: closing idle connections, refusing new requests"
                    );
                    // Signals them now; done once they all closed.
                    tokio::spawn(open.shutdown());
                }
                continue;
            }
            () = drain.finished(), if before.is_none() => break,
            Some(_) = connections.join_next() => continue,
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
        let io = TokioIo::new(stream);
        let service = TowerToHyperService::new(service);
        let conn = match &before {
            Some(open) => open.watch(serving.serve_connection(io, service)),
            None => during.watch(closing.serve_connection(io, service)),
        };
        let open = metrics.open.clone();
        open.inc();
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "drained: no request in flight; closing the remaining connections"
    );
    tokio::join!(during.shutdown(), async {
        while connections.join_next().await.is_some() {}
    });
    Ok(())
}

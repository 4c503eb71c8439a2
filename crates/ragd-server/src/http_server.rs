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

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounter, IntGauge, Opts, Registry};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::drain::{hold_until_sent, Drain};

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
/// While draining, the loop keeps accepting, so a new request gets the
/// drain's 503 rather than a refused connection, and every response made
/// during the drain says `Connection: close`. A connection busy with a
/// request when the drain starts is closed once that answer (a stream
/// included) is sent; an idle one stays open for its next request (which
/// is answered, and closes it) until the drain ends. Once no admitted
/// request is left in flight the loop stops accepting, closes the idle
/// connections and waits for the others to finish writing. Dropping the
/// future (at the end of the grace period) cuts every connection still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    drain: Drain,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    // Set when the drain is over: the connections still open close.
    let (drained, drained_rx) = watch::channel(false);
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
            () = drain.finished() => break,
            Some(_) = connections.join_next() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let answering = Arc::new(AtomicUsize::new(0));
        let service = connection_service(app.clone(), peer, drain.clone(), answering.clone());
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let (drain, mut drained) = (drain.clone(), drained_rx.clone());
        let open = metrics.open.clone();
        open.inc();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = drain.started() => {
                    // Busy: hyper turns keep-alive off and closes the
                    // connection once the answer is sent.
                    if answering.load(Ordering::SeqCst) > 0 {
                        conn.as_mut().graceful_shutdown();
                    }
                    tokio::select! {
                        r = conn.as_mut() => r,
                        () = async { let _ = drained.wait_for(|d| *d).await; } => {
                            // Idle now: closed at once; else after its answer.
                            conn.as_mut().graceful_shutdown();
                            conn.await
                        }
                    }
                }
            };
            if let Err(e) = result {
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
    let _ = drained.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The app as one connection serves it: each request carries the client
/// address (`ConnectInfo`) and counts in `answering` until its response
/// body is sent; a response made while draining says `Connection: close`.
fn connection_service(
    app: Router,
    peer: SocketAddr,
    drain: Drain,
    answering: Arc<AtomicUsize>,
) -> impl tower::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = Answering::start(&answering);
        let (app, drain) = (app.clone(), drain.clone());
        async move {
            let Ok(response) = app.oneshot(req).await;
            let mut response = hold_until_sent(response, answer);
            if drain.is_draining() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        }
    })
}

/// One request of a connection being answered.
struct Answering(Arc<AtomicUsize>);

impl Answering {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

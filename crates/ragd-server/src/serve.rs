//! `ragd serve`: bind, load models in the background, serve until a signal.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::ServeArgs;
use crate::models;
use crate::state::{AppState, Limits, ServerState};

/// A started server: its address, its state, and the way to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    /// Taken by the first `wait_ready`.
    loader: Option<JoinHandle<anyhow::Result<()>>>,
    grace: Duration,
}

/// Binds and starts serving at once (`/health` answers); models load on the
/// blocking pool and `/ready` turns 200 when they are in.
pub async fn start(args: ServeArgs) -> anyhow::Result<RunningServer> {
    let registry = prometheus::Registry::new();
    let mut expected = Vec::new();
    if models::resolve(&args.embedder, &args.dir.models_dir)?.is_some() {
        expected.push("embedder");
    }
    if models::resolve(&args.guard, &args.dir.models_dir)?.is_some() {
        expected.push("guard");
    }
    if models::resolve(&args.generator, &args.dir.models_dir)?.is_some() {
        expected.push("generator");
    }
    let limits = Limits {
        max_inputs: args.max_inputs,
        max_input_bytes: args.max_input_bytes,
        guard_threshold: args.guard_threshold,
    };
    let state = ServerState::new(expected, limits, registry.clone())?;
    let app = crate::app::router(state.clone(), args.max_body_bytes);
    let listener = TcpListener::bind((args.host, args.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    // Scripts read this line to find a port-0 server.
    tracing::info!(%addr, "listening on http://{addr}");

    let (stop, stop_rx) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(stopped(stop_rx))
            .into_future(),
    );
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let loader_state = state.clone();
    let loader = tokio::task::spawn_blocking(move || {
        let loaded = models::load(&args, &registry)?;
        loader_state.set_models(loaded);
        tracing::info!("all models loaded; ready");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        stop,
        server,
        loader: Some(loader),
        grace,
    })
}

async fn await_loader(
    loader: Option<JoinHandle<anyhow::Result<()>>>,
    state: &AppState,
) -> anyhow::Result<()> {
    match loader {
        Some(loader) => loader.await.context("model loader panicked")?,
        None if state.is_ready() => Ok(()),
        None => anyhow::bail!("model loading failed earlier"),
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl RunningServer {
    /// Waits until the models are loaded. A load failure is returned.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        await_loader(self.loader.take(), &self.state).await
    }

    /// Asks the server to stop accepting and finish in-flight requests.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Serves until stopped (by [`Self::stop`] or a signal), then gives
    /// in-flight requests the grace period. A model that fails to load stops
    /// the server with its error: fail fast, loudly.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let stop = self.stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        tokio::select! {
            r = &mut self.server => return r.context("server task failed")?.context("server failed"),
            r = await_loader(self.loader.take(), &self.state) => if let Err(e) = r {
                self.server.abort();
                return Err(e);
            },
        }
        let grace = self.grace;
        tokio::select! {
            r = &mut self.server => r.context("server task failed")?.context("server failed")?,
            _ = async { stopped(self.stop.subscribe()).await; tokio::time::sleep(grace).await } => {
                tracing::warn!(seconds = grace.as_secs(), "grace period over; dropping remaining requests");
            }
        }
        Ok(())
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    start(args).await?.run_until_signal().await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

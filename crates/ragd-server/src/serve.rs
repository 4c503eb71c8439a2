//! `ragd serve`: bind, load models in the background, serve until a signal.
//!
//! A first SIGTERM or Ctrl-C starts the drain ([`crate::drain`]): `/ready`
//! turns 503, new requests are refused with 503, requests and streams in
//! flight get the grace period to finish, what is left after it is cut,
//! the knowledge base is checkpointed, and the process exits 0. A second
//! signal during the drain exits at once (status 130 for Ctrl-C, 143 for
//! SIGTERM): the store stays intact, as every acknowledged write is in its
//! fsynced write-ahead log and a checkpoint replaces its snapshot only by
//! renaming a complete, fsynced file over it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use ragd_service::cache::{CacheConfig, SemanticConfig, SharedCache};
use ragd_service::models;
use ragd_service::rag::{RagTemplate, DEFAULT_TEMPLATE};

use crate::auth::keys::KeyRing;
use crate::auth::{AdminKey, Auth};
use crate::config::{AuthConfig, ServeConfig};
use crate::drain::Drain;
use crate::http_server::{self, ConnectionLimits, ConnectionMetrics};
use crate::rate_limit::RateLimits;
use crate::shared::{Redis, RedisCache, RedisLimits};
use crate::state::{AppState, ServerState, StateConfig};

/// Shortest admin key accepted.
const MIN_ADMIN_KEY_CHARS: usize = 16;

/// A started server: its address, its state, and the way to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The server's drain (also `state.drain`): starting it is the stop.
    drain: Drain,
    server: JoinHandle<std::io::Result<()>>,
    /// Taken by the first `wait_ready`.
    loader: Option<JoinHandle<anyhow::Result<()>>>,
    grace: Duration,
    /// SIGTERM and Ctrl-C, once caught ([`Self::catch_signals`]).
    signals: Option<Signals>,
}

/// Binds and starts serving at once (`/health` answers); models load on the
/// blocking pool and `/ready` turns 200 when they are in.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    check_auth_flags(&config)?;
    let data_dir = data_dir(&config);
    let (store, pg) = crate::knowledge_base::open(&config, &data_dir).await?;
    let expected = models::models_configured(&config.models)?;
    let caches = &config.caches;
    if !expected.contains(&"embedder") && caches.semantic_threshold.is_some() {
        bail!("--semantic-cache-threshold needs the embedder (--embedder is `none`)");
    }
    if let Some(t) = caches.semantic_threshold.filter(|t| !(0.0..=1.0).contains(t)) {
        bail!("--semantic-cache-threshold must be a cosine similarity between 0 and 1 (got {t})");
    }
    if !expected.contains(&"guard") && config.guard.screen_chat {
        bail!("--guard-chat needs a guard model (--guard is `none`)");
    }
    let registry = prometheus::Registry::new();
    let redis = shared_redis(config.redis.as_ref(), &registry)?;
    let state_config = StateConfig {
        expected,
        request_limits: config.request_limits,
        guard: config.guard,
        auth: auth(&config.auth, &data_dir, pg.as_ref()).await?,
        store: Some(store),
        collection_limits: config.collection_limits,
        rag_template: rag_template(config.rag_template.as_deref())?,
        rate_limits: (config.auth.rate_limit_rpm).map(|rpm| {
            let limits = RateLimits::new(rpm, config.auth.rate_limit_burst);
            match &redis {
                Some(redis) => limits.with_shared(Arc::new(RedisLimits::new(redis.clone()))),
                None => limits,
            }
        }),
        auth_failures_per_minute: std::num::NonZeroU32::new(config.auth.auth_failures_per_minute),
        response_cache: (caches.response_cache_mb > 0).then_some(CacheConfig {
            max_bytes: caches.response_cache_mb << 20,
            ttl: caches.ttl,
        }),
        shared_cache: redis
            .clone()
            .map(|redis| Arc::new(RedisCache::new(redis)) as Arc<dyn SharedCache>),
        semantic_cache: caches.semantic_threshold.map(|threshold| SemanticConfig {
            threshold,
            max_entries: caches.semantic_entries,
            max_bytes: caches.semantic_mb << 20,
            ttl: caches.ttl,
        }),
        upstreams: config.upstreams.clone(),
        request_timeout: config.request_timeout,
    };
    let state = ServerState::build(state_config, registry.clone())?;
    if let Some(upstreams) = &state.upstreams {
        upstreams.spawn_discovery(Duration::from_secs(30));
    }
    let app = crate::app::router(state.clone(), config.max_body_bytes, config.ui).layer(
        tower_http::timeout::RequestBodyTimeoutLayer::new(config.connections.body_timeout),
    );
    let limits = ConnectionLimits {
        max_connections: http_server::connection_cap(config.connections.max_connections),
        header_timeout: config.connections.header_timeout,
    };
    let connection_metrics = ConnectionMetrics::register(&registry)?;
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .with_context(|| format!("cannot bind {}:{}", config.host, config.port))?;
    let addr = listener.local_addr()?;
    // Scripts read this line to find a port-0 server.
    tracing::info!(%addr, "listening on http://{addr}");
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        "connection limits"
    );

    let drain = state.drain.clone();
    let server = tokio::spawn(http_server::serve(
        listener,
        app,
        limits,
        connection_metrics,
        drain.clone(),
    ));
    let grace = config.shutdown_grace;
    let loader_state = state.clone();
    let models_config = config.models;
    let loader = tokio::task::spawn_blocking(move || {
        let loaded = models::load(&models_config, &registry)?;
        loader_state.set_models(loaded);
        tracing::info!("all models loaded; ready");
        Ok(())
    });
    Ok(RunningServer {
        addr,
        state,
        drain,
        server,
        loader: Some(loader),
        grace,
        signals: None,
    })
}

/// `--no-auth` only on a loopback address, and never with keys.
/// The Redis of `--redis-url`, not connected yet: pinged at once and
/// every few seconds from now on, so `ragd_redis_up` and the log say
/// whether it is reachable.
fn shared_redis(
    config: Option<&crate::config::RedisConfig>,
    registry: &prometheus::Registry,
) -> anyhow::Result<Option<Arc<Redis>>> {
    let Some(config) = config else {
        return Ok(None);
    };
    let redis = Arc::new(Redis::new(config, registry)?);
    redis.spawn_health_checks(Duration::from_secs(5));
    Ok(Some(redis))
}

fn check_auth_flags(config: &ServeConfig) -> anyhow::Result<()> {
    let args = &config.auth;
    if !args.no_auth {
        return Ok(());
    }
    if !config.host.is_loopback() {
        bail!(
            "--no-auth refuses to bind {host}: without API keys every request is the same tenant, so \
             single-user mode only listens on a loopback address (--host 127.0.0.1 or ::1). To serve \
             on {host}, drop --no-auth and use API keys (--admin-key-file, then POST /admin/keys).",
            host = config.host
        );
    }
    if args.keys_file.is_some() || args.admin_key_file.is_some() || args.admin_key.is_some() {
        bail!("--no-auth cannot be combined with --keys-file, --admin-key-file or RAGD_ADMIN_KEY");
    }
    Ok(())
}

/// The knowledge base folder: `--data-dir`, else `$XDG_DATA_HOME/ragd`,
/// else `~/.local/share/ragd`, else `./ragd-data`.
pub fn data_dir(config: &ServeConfig) -> PathBuf {
    if let Some(dir) = &config.data_dir {
        return dir.clone();
    }
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = nonempty("XDG_DATA_HOME") {
        return xdg.join("ragd");
    }
    if let Some(home) = nonempty("HOME") {
        return home.join(".local/share/ragd");
    }
    PathBuf::from("ragd-data")
}

async fn auth(args: &AuthConfig, data_dir: &Path, pg: Option<&ragd_pg::PgStore>) -> anyhow::Result<Auth> {
    if args.no_auth {
        tracing::warn!(
            "authentication is off (--no-auth): every request is the tenant `{}`",
            crate::auth::DEFAULT_TENANT
        );
        return Ok(Auth::Disabled);
    }
    let admin = match (&args.admin_key_file, &args.admin_key) {
        (Some(_), Some(_)) => bail!("give the admin key once: --admin-key-file or RAGD_ADMIN_KEY, not both"),
        (Some(path), None) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin key file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, Some(secret)) => Some(secret.0.trim().to_string()),
        (None, None) => None,
    };
    if let Some(key) = &admin {
        check_admin_key(key)?;
    }
    let keys = match (args.keys_in_postgres, pg) {
        (true, Some(pg)) => KeyRing::from_postgres(ragd_pg::PgKeys::new(pg)).await?,
        (true, None) => bail!("--keys postgres needs the Postgres store (--store postgres://...)"),
        (false, _) => {
            let path = (args.keys_file.clone()).unwrap_or_else(|| data_dir.join("keys.toml"));
            Arc::new(KeyRing::load(&path)?)
        }
    };
    tracing::info!(
        keys_in = %keys.describe(),
        keys = keys.list().len(),
        admin = admin.is_some(),
        "API keys loaded"
    );
    if keys.is_empty() && admin.is_none() {
        tracing::warn!(
            "no API keys and no admin key: every /v1 request will get 401. Set --admin-key-file \
             and create keys with POST /admin/keys, or use --no-auth on a loopback address"
        );
    }
    Ok(Auth::Keys {
        keys,
        admin: admin.as_deref().map(AdminKey::new),
    })
}

/// Refuses admin keys that are short or plainly guessable: fewer than
/// [`MIN_ADMIN_KEY_CHARS`] characters, fewer than 8 distinct ones, or one
/// string repeated (`passwordpassword`). A floor, not a strength meter:
/// generate the key (`openssl rand -hex 32`).
pub fn check_admin_key(key: &str) -> anyhow::Result<()> {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < MIN_ADMIN_KEY_CHARS {
        bail!("the admin key must be at least {MIN_ADMIN_KEY_CHARS} characters long");
    }
    let distinct: std::collections::BTreeSet<char> = chars.iter().copied().collect();
    let repeated = (1..=chars.len() / 2)
        .any(|n| chars.len().is_multiple_of(n) && chars.chunks(n).all(|c| c == &chars[..n]));
    if distinct.len() < 8 || repeated {
        bail!(
            "the admin key is too easy to guess (repeated or few distinct characters); \
             generate one, e.g. `openssl rand -hex 32`"
        );
    }
    Ok(())
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

impl RunningServer {
    /// Waits until the models are loaded. A load failure is returned.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        await_loader(self.loader.take(), &self.state).await
    }

    /// Starts the drain: `/ready` turns 503, new requests are refused,
    /// requests in flight go on.
    pub fn stop(&self) {
        self.drain.start();
    }

    /// From now on SIGTERM and Ctrl-C wait for [`Self::run_until_signal`]
    /// (which drains) instead of killing the process: call it before
    /// telling anyone the server is up, so an early signal is not lost.
    pub fn catch_signals(&mut self) -> anyhow::Result<()> {
        if self.signals.is_none() {
            self.signals = Some(Signals::new().context("cannot listen for SIGTERM and Ctrl-C")?);
        }
        Ok(())
    }

    /// Serves until stopped (by [`Self::stop`] or a signal), then drains:
    /// in-flight requests get the grace period. A second signal during the
    /// drain exits the process at once. A model that fails to load stops
    /// the server with its error: fail fast, loudly.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        self.catch_signals()?;
        let mut signals = self.signals.take().expect("caught above");
        let drain = self.drain.clone();
        tokio::spawn(async move {
            let first = signals.next().await;
            tracing::info!(
                signal = first.name,
                in_flight = drain.in_flight(),
                "shutdown signal received; draining (a second signal exits at once)"
            );
            drain.start();
            let second = signals.next().await;
            // Nothing to flush: acknowledged writes are in the fsynced
            // logs, and a checkpoint in progress only ever renames a
            // complete snapshot into place.
            tracing::warn!(
                signal = second.name,
                in_flight = drain.in_flight(),
                "second signal during the drain; exiting now"
            );
            std::process::exit(second.exit_code);
        });
        tokio::select! {
            // The loop only ends once drained (a stop while the models
            // load, with nothing in flight), or by failing.
            r = &mut self.server => {
                joined(r)?;
                self.checkpoint().await;
                return Ok(());
            }
            r = await_loader(self.loader.take(), &self.state) => if let Err(e) = r {
                self.server.abort();
                return Err(e);
            },
            () = self.drain.started() => {}
        }
        self.finish().await
    }

    /// Stops the server gracefully: drains (in-flight requests get the
    /// grace period), then checkpoints the knowledge base (so the next
    /// start loads snapshots instead of replaying logs).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop();
        self.finish().await
    }

    /// Once stopped: waits for the drain (at most the grace period, then
    /// cuts what is left), then checkpoints.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let grace = self.grace;
        let drain = self.drain.clone();
        drain.started().await;
        let t0 = std::time::Instant::now();
        tokio::select! {
            r = &mut self.server => {
                joined(r)?;
                tracing::info!(ms = t0.elapsed().as_millis() as u64, "drained");
            }
            () = tokio::time::sleep(grace) => {
                tracing::warn!(
                    seconds = grace.as_secs(),
                    in_flight = drain.in_flight(),
                    "grace period over; cutting the remaining requests"
                );
                // Dropping the connection loop drops every connection.
                self.server.abort();
                let _ = (&mut self.server).await;
            }
        }
        self.checkpoint().await;
        Ok(())
    }

    /// Checkpoints the knowledge base; a failure is only logged.
    async fn checkpoint(&self) {
        if let Some(backend) = self.state.collections.as_ref().map(|c| c.backend().clone()) {
            match backend.checkpoint().await {
                Ok(()) => tracing::info!(store = backend.kind(), "knowledge base checkpointed"),
                // Every acknowledged write is in the logs already.
                Err(e) => tracing::warn!(error = %e, "checkpoint at shutdown failed"),
            }
        }
    }
}

/// The connection loop's end as a result.
fn joined(r: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.context("server task failed")?.context("server failed")
}

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let mut server = start(config).await?;
    server.catch_signals()?;
    server.run_until_signal().await
}

/// The stop signals, listened for from start to exit (so that no second
/// signal falls between two listeners and kills the process unhandled).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

/// A signal received.
struct Received {
    name: &'static str,
    /// The status to exit with when it cuts the drain short: 128 + number.
    exit_code: i32,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next SIGTERM or Ctrl-C.
    async fn next(&mut self) -> Received {
        #[cfg(unix)]
        {
            let term = Received {
                name: "SIGTERM",
                exit_code: 143,
            };
            let int = Received {
                name: "SIGINT",
                exit_code: 130,
            };
            tokio::select! {
                Some(()) = self.term.recv() => term,
                Some(()) = self.int.recv() => int,
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Received {
                name: "Ctrl-C",
                exit_code: 130,
            }
        }
    }
}

/// The RAG prompt template: the file given, else the default.
fn rag_template(path: Option<&std::path::Path>) -> anyhow::Result<RagTemplate> {
    let source = match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading the RAG template {}", p.display()))?
        }
        None => DEFAULT_TEMPLATE.to_string(),
    };
    RagTemplate::new(&source).context("the RAG template does not compile")
}

#[cfg(test)]
mod tests {
    use super::check_admin_key;

    #[test]
    fn guessable_admin_keys_are_refused() {
        for weak in [
            "short",
            "aaaaaaaaaaaaaaaa",
            "passwordpassword",
            "abababababababababab",
            "1111222211112222",
        ] {
            assert!(check_admin_key(weak).is_err(), "{weak}");
        }
        for strong in ["a-long-admin-key-123", "3f9c2a7b1e8d4c6f0a5b9e2d7c1f8a3b"] {
            assert!(check_admin_key(strong).is_ok(), "{strong}");
        }
    }
}

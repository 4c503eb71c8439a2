//! What `ragd serve` runs with, as plain values: built by the command line
//! (flags, `RAGD_*` variables, TOML) or in code (tests). `Default` gives
//! the values of `ragd serve` with no flags, except `no_auth`, which is
//! off (a CLI test checks the two agree).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ragd_service::{CollectionLimits, GuardConfig, ModelsConfig, RequestLimits};

/// The configuration of one server.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address and port to bind; port 0 picks a free one.
    pub host: IpAddr,
    pub port: u16,
    pub models: ModelsConfig,
    pub request_limits: RequestLimits,
    pub guard: GuardConfig,
    pub collection_limits: CollectionLimits,
    /// Largest request body in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Time in-flight requests get after a stop signal.
    pub shutdown_grace: Duration,
    /// Deadline of a chat, completion or response request, streams
    /// included (`None`: only the client's own timeout header).
    pub request_timeout: Option<Duration>,
    /// Folder of the knowledge base; `None`: `$XDG_DATA_HOME/ragd`, else
    /// `~/.local/share/ragd`, else `./ragd-data`.
    pub data_dir: Option<PathBuf>,
    /// Keep collections in Postgres at this URL (`postgres://...`) instead
    /// of the data folder; a secret, since it may hold a password.
    pub store: Option<Secret>,
    /// Most collections per tenant and documents per collection (403 past them).
    pub max_collections_per_tenant: usize,
    pub max_documents_per_collection: usize,
    /// The RAG prompt template file; `None`: the built-in one.
    pub rag_template: Option<PathBuf>,
    pub auth: AuthConfig,
    pub connections: ConnectionConfig,
    pub caches: CacheSettings,
    /// Other servers to fall back to; empty: none.
    pub upstreams: UpstreamsConfig,
    /// Redis shared by replicas (rate limits, exact cache); `None`: all
    /// state is per process.
    pub redis: Option<RedisConfig>,
    /// Serve the web playground at `/` (`--no-ui`: off).
    pub ui: bool,
}

/// The Redis that replicas share (`--redis-url`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (`rediss://` is not
    /// built in); a secret, since it may hold a password.
    pub url: Secret,
    /// Longest any one Redis call may take before the request goes on
    /// with per-process state.
    pub timeout: Duration,
}

/// API keys, the admin key and request budgets.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Single-user mode: no keys, every request is the tenant `default`;
    /// only on a loopback address.
    pub no_auth: bool,
    /// The keys file; `None`: `keys.toml` in the data folder.
    pub keys_file: Option<PathBuf>,
    /// Keep the keys in the Postgres store instead (`--keys postgres`):
    /// shared by every replica using it.
    pub keys_in_postgres: bool,
    /// The admin key, from a file or given itself (not both).
    pub admin_key_file: Option<PathBuf>,
    pub admin_key: Option<Secret>,
    /// Requests per minute per key, and the burst; `None`: no limit.
    pub rate_limit_rpm: Option<NonZeroU32>,
    pub rate_limit_burst: Option<NonZeroU32>,
    /// Failed authentications per minute per client address; 0: no limit.
    pub auth_failures_per_minute: u32,
}

/// Client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionConfig {
    /// Most connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// Time to send a request's headers, and that a kept-alive connection may idle.
    pub header_timeout: Duration,
    /// Time to send a request's body (408 past it).
    pub body_timeout: Duration,
}

/// The response caches.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Memory for the exact cache, in MiB; 0: off.
    pub response_cache_mb: u64,
    /// Cosine similarity that turns on the semantic cache; `None`: off.
    pub semantic_threshold: Option<f32>,
    pub semantic_entries: usize,
    pub semantic_mb: usize,
    /// How long a cached answer is served (both caches).
    pub ttl: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            models: ModelsConfig::default(),
            request_limits: RequestLimits::default(),
            guard: GuardConfig::default(),
            collection_limits: CollectionLimits::default(),
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            request_timeout: Some(Duration::from_secs(600)),
            data_dir: None,
            store: None,
            max_collections_per_tenant: 100,
            max_documents_per_collection: 1_000_000,
            rag_template: None,
            auth: AuthConfig::default(),
            connections: ConnectionConfig::default(),
            caches: CacheSettings::default(),
            upstreams: UpstreamsConfig::default(),
            redis: None,
            ui: true,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            no_auth: false,
            keys_file: None,
            keys_in_postgres: false,
            admin_key_file: None,
            admin_key: None,
            rate_limit_rpm: None,
            rate_limit_burst: None,
            auth_failures_per_minute: 30,
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            response_cache_mb: 64,
            semantic_threshold: None,
            semantic_entries: 10_000,
            semantic_mb: 64,
            ttl: Duration::from_secs(600),
        }
    }
}

/// An OpenAI-compatible server ragd may send chat requests to.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    /// Its base URL (`http://host:port` or `.../v1`).
    pub url: String,
    /// The key ragd sends it (never the caller's), given or in a file.
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    /// The models it serves; `None`: asked from its `/v1/models`.
    pub models: Option<Vec<String>>,
}

/// Upstreams, routes, and how hard each target is tried.
#[derive(Debug, Clone)]
pub struct UpstreamsConfig {
    pub upstreams: Vec<UpstreamSpec>,
    /// Per model: its targets in order (`local` or upstream names).
    pub routes: Vec<(String, Vec<String>)>,
    /// Deadline of one upstream attempt (a stream's start, then each chunk).
    pub timeout: Duration,
    /// Deadline of a local generation that has a fallback (not streamed);
    /// `None`: none.
    pub local_timeout: Option<Duration>,
    pub retry: ragd_service::resilience::RetryPolicy,
    pub breaker: ragd_service::resilience::BreakerConfig,
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            routes: Vec::new(),
            timeout: Duration::from_secs(60),
            local_timeout: None,
            retry: Default::default(),
            breaker: Default::default(),
        }
    }
}

/// A secret given on the command line or in the environment: never printed.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

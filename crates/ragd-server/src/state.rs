//! What the handlers share: the models (once loaded), the services built
//! on them, and the HTTP-side state (authentication, limits, metrics).

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use prometheus::Registry;
use ragd_service::cache::{CacheConfig, ResponseCache, SemanticCache, SemanticConfig, SharedCache};
use ragd_service::chat::ChatPipeline;
use ragd_service::collections::{CollectionBackend, Collections};
use ragd_service::guard::Guard;
use ragd_service::guard_policy::GuardPolicy;
use ragd_service::metrics::{GuardMetrics, IndexMetrics};
use ragd_service::rag::{RagTemplate, DEFAULT_TEMPLATE};
use ragd_service::{
    CollectionLimits, GeneratorHandle, GuardConfig, ModelHandle, Models, RequestLimits, RerankerHandle,
    Tenant,
};

use crate::auth::{Auth, AuthState};
use crate::config::UpstreamsConfig;
use crate::drain::Drain;
use crate::error::ApiError;
use crate::metrics::HttpMetrics;
use crate::rate_limit::RateLimits;
use crate::upstream::Upstreams;

/// What the routes share.
pub type AppState = Arc<ServerState>;

pub struct ServerState {
    /// Set once, when every configured model has loaded.
    models: OnceLock<Models>,
    /// Roles configured at start (`embedder`, `guard`), for `/ready`.
    pub expected: Vec<&'static str>,
    pub request_limits: RequestLimits,
    pub guard: GuardConfig,
    pub guard_metrics: GuardMetrics,
    pub registry: Registry,
    pub http_metrics: HttpMetrics,
    pub auth: Arc<AuthState>,
    /// The knowledge base; `None` in router tests that need none.
    pub collections: Option<Collections>,
    pub rag_template: RagTemplate,
    /// Answers of deterministic requests; `None`: off.
    pub response_cache: Option<ResponseCache>,
    /// Answers of close questions; `None`: off.
    pub semantic_cache: Option<SemanticCache>,
    /// Started by a stop signal: `/ready` turns 503, new requests are refused.
    pub drain: Drain,
    /// Servers to fall back to; `None`: none configured.
    pub upstreams: Option<Arc<Upstreams>>,
    /// Deadline of a generation request (`None`: only the client's).
    pub request_timeout: Option<std::time::Duration>,
}

/// Everything a server state is built from besides its models. `default()`
/// is a server without knowledge base, authentication or caches (every
/// request is the tenant `default`): what router tests start from.
pub struct StateConfig {
    pub expected: Vec<&'static str>,
    pub request_limits: RequestLimits,
    pub guard: GuardConfig,
    pub auth: Auth,
    pub store: Option<Arc<dyn CollectionBackend>>,
    pub collection_limits: CollectionLimits,
    pub rag_template: RagTemplate,
    pub rate_limits: Option<RateLimits>,
    /// Failed authentications allowed per minute and client address;
    /// `None`: unlimited.
    pub auth_failures_per_minute: Option<NonZeroU32>,
    /// Size and lifetime of the response cache; `None`: no cache.
    pub response_cache: Option<CacheConfig>,
    /// A store the response cache shares with other replicas (Redis).
    pub shared_cache: Option<Arc<dyn SharedCache>>,
    /// The semantic cache's settings; `None`: no semantic cache.
    pub semantic_cache: Option<SemanticConfig>,
    /// Upstreams and routes for fallback.
    pub upstreams: UpstreamsConfig,
    pub request_timeout: Option<std::time::Duration>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            expected: Vec::new(),
            request_limits: RequestLimits::default(),
            guard: GuardConfig::default(),
            auth: Auth::Disabled,
            store: None,
            collection_limits: CollectionLimits::default(),
            rag_template: RagTemplate::new(DEFAULT_TEMPLATE).expect("the default RAG template compiles"),
            rate_limits: None,
            auth_failures_per_minute: None,
            response_cache: None,
            shared_cache: None,
            semantic_cache: None,
            upstreams: UpstreamsConfig::default(),
            request_timeout: None,
        }
    }
}

impl ServerState {
    /// Builds the state and registers its metrics in `registry`.
    pub fn build(config: StateConfig, registry: Registry) -> prometheus::Result<AppState> {
        let http_metrics = HttpMetrics::register(&registry)?;
        let upstreams = Upstreams::new(&config.upstreams, &registry)
            .map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        let index_metrics = IndexMetrics::register(&registry)?;
        let guard_metrics = GuardMetrics::register(&registry)?;
        let response_cache = (config.response_cache)
            .map(|c| {
                let cache = ResponseCache::new(c.max_bytes, c.ttl, &registry)?;
                match config.shared_cache {
                    Some(store) => cache.with_shared(store, &registry),
                    None => Ok(cache),
                }
            })
            .transpose()?;
        let semantic_cache = (config.semantic_cache)
            .map(|c| SemanticCache::new(c, &registry))
            .transpose()?;
        let max_query_bytes = config.request_limits.max_input_bytes;
        let collections = (config.store)
            .map(|store| Collections::new(store, config.collection_limits, max_query_bytes, index_metrics));
        let auth = AuthState::new(
            config.auth,
            config.auth_failures_per_minute,
            config.rate_limits,
            http_metrics.rate_limited.clone(),
        );
        Ok(Arc::new(Self {
            models: OnceLock::new(),
            expected: config.expected,
            request_limits: config.request_limits,
            guard: config.guard,
            guard_metrics,
            registry,
            http_metrics,
            auth: Arc::new(auth),
            collections,
            rag_template: config.rag_template,
            response_cache,
            semantic_cache,
            drain: Drain::default(),
            upstreams,
            request_timeout: config.request_timeout,
        }))
    }

    /// Publishes the loaded models; the server is ready from then on.
    pub fn set_models(&self, models: Models) {
        let _ = self.models.set(models);
    }

    pub fn models(&self) -> Option<&Models> {
        self.models.get()
    }

    pub fn is_ready(&self) -> bool {
        self.models.get().is_some()
    }

    fn loaded(&self) -> Result<&Models, ApiError> {
        self.models
            .get()
            .ok_or_else(|| ApiError::Unavailable("models are still loading; retry shortly".into()))
    }

    /// The knowledge base.
    pub fn collections(&self) -> Result<&Collections, ApiError> {
        self.collections
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("this server has no knowledge base".into()))
    }

    /// The embedding model, for the collections API, queued as `tenant`.
    pub fn embedder(&self, tenant: &Tenant) -> Result<ModelHandle, ApiError> {
        self.model_for("embedding", |m| m.embedder.as_ref(), None)
            .map(|h| h.for_tenant(tenant))
    }

    /// The generator, when `requested` names it (or names nothing).
    pub fn generator(&self, requested: Option<&str>) -> Result<GeneratorHandle, ApiError> {
        let models = self.loaded()?;
        match (&models.generator, requested) {
            (Some(g), Some(name)) if name != g.info.id => Err(ApiError::ModelNotFound(name.to_string())),
            (Some(g), _) => Ok(g.clone()),
            (None, Some(name)) => Err(ApiError::ModelNotFound(name.to_string())),
            (None, None) => Err(ApiError::NotFound("this server runs no generator model".into())),
        }
    }

    /// The reranker, when `requested` names it (or names nothing), queued
    /// as `tenant`.
    pub fn reranker(&self, requested: Option<&str>, tenant: &Tenant) -> Result<RerankerHandle, ApiError> {
        match (&self.loaded()?.reranker, requested) {
            (Some(r), Some(name)) if name != r.model.info.id => {
                Err(ApiError::ModelNotFound(name.to_string()))
            }
            (Some(r), _) => Ok(r.clone().for_tenant(tenant)),
            (None, _) => Err(ApiError::NotFound(
                "this server runs no reranker model (start it with `--reranker NAME`)".into(),
            )),
        }
    }

    /// The model a request names, of the role the endpoint serves.
    /// `requested = None` picks the role's model.
    pub fn model_for(
        &self,
        role: &'static str,
        pick: impl Fn(&Models) -> Option<&ModelHandle>,
        requested: Option<&str>,
    ) -> Result<ModelHandle, ApiError> {
        let models = self.loaded()?;
        let Some(handle) = pick(models) else {
            return Err(match requested {
                Some(name) => ApiError::ModelNotFound(name.to_string()),
                None => ApiError::NotFound(format!("this server runs no {role} model")),
            });
        };
        match requested {
            Some(name) if name != handle.info.id => Err(ApiError::ModelNotFound(name.to_string())),
            _ => Ok(handle.clone()),
        }
    }

    /// The chat pipeline for one request of `tenant`: its models queue as
    /// the tenant's; the guard is in when chat is screened.
    /// `tenant`'s guard policy: its own (keys file), else the server's.
    pub fn guard_policy(&self, tenant: &Tenant) -> GuardPolicy {
        let own = match &self.auth.auth {
            Auth::Keys { keys, .. } => keys.guard_policy(tenant.as_str()),
            Auth::Disabled => None,
        };
        own.unwrap_or_else(|| GuardPolicy::from_config(&self.guard))
    }

    pub fn chat_pipeline(&self, tenant: &Tenant) -> ChatPipeline<'_> {
        let models = self.models.get();
        let policy = self.guard_policy(tenant);
        // Guard handles are cloned only for a tenant whose policy screens.
        let guards = models.map_or(&[][..], |m| &m.guards[..]);
        let guard = (!guards.is_empty() && policy.screens()).then(|| Guard {
            handles: guards.iter().map(|g| g.clone().for_tenant(tenant)).collect(),
            policy,
            config: self.guard.clone(),
            metrics: self.guard_metrics.clone(),
        });
        ChatPipeline {
            embedder: models
                .and_then(|m| m.embedder.clone())
                .map(|h| h.for_tenant(tenant)),
            guard,
            collections: self.collections.as_ref(),
            rag_template: &self.rag_template,
            exact_cache: self.response_cache.as_ref(),
            semantic_cache: self.semantic_cache.as_ref(),
            reranker: models
                .and_then(|m| m.reranker.clone())
                .map(|r| r.for_tenant(tenant)),
        }
    }
}

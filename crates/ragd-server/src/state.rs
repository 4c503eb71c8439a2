//! Shared server state.

use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use prometheus::Registry;
use ragd_index::Store;

use crate::auth::throttle::AuthThrottle;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::generate::GeneratorHandle;
use crate::metrics::{GuardMetrics, HttpMetrics, IndexMetrics};
use crate::models::{ModelHandle, Models};
use crate::rag::{RagTemplate, DEFAULT_TEMPLATE};
use crate::rate_limit::RateLimits;
use crate::response_cache::{CacheConfig, ResponseCache};
use crate::semantic_cache::{SemanticCache, SemanticConfig};

/// Limits and settings the routes apply. (`Default` is all zeros, for
/// code that sets the fields it uses: the fuzz harness, `fuzz/`.)
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_inputs: usize,
    pub max_input_bytes: usize,
    /// Longest chat conversation (all message contents together), in bytes;
    /// each message is also held to `max_input_bytes`.
    pub max_chat_bytes: usize,
    pub guard_threshold: f32,
    /// Most guard windows (full forward passes) one request may cost.
    pub max_guard_windows: usize,
    /// Screen chat requests (last user message, retrieved chunks) with the guard.
    pub guard_chat: bool,
}

/// Bounds of the collections API.
#[derive(Debug, Clone)]
pub struct CollectionLimits {
    /// Most documents in one upsert request.
    pub max_documents: usize,
    /// Longest document text, in bytes.
    pub max_document_bytes: usize,
    /// Largest `top_k` of a search.
    pub max_top_k: usize,
}

impl Default for CollectionLimits {
    fn default() -> Self {
        Self {
            max_documents: 256,
            max_document_bytes: 1 << 20,
            max_top_k: 100,
        }
    }
}

/// What the routes share.
pub type AppState = Arc<ServerState>;

pub struct ServerState {
    /// Set once, when every configured model has loaded.
    models: OnceLock<Models>,
    /// Roles configured at start (`embedder`, `guard`), for `/ready`.
    pub expected: Vec<&'static str>,
    pub limits: Limits,
    pub registry: Registry,
    pub http_metrics: HttpMetrics,
    pub guard_metrics: GuardMetrics,
    pub auth: Auth,
    /// The knowledge base; `None` in router tests that need none.
    pub store: Option<Arc<Store>>,
    pub collection_limits: CollectionLimits,
    pub index_metrics: IndexMetrics,
    pub rag_template: Arc<RagTemplate>,
    /// Per-key request budgets; `None`: unlimited.
    pub rate_limits: Option<RateLimits>,
    /// Failed authentications allowed per client address; `None`: unlimited.
    pub auth_throttle: Option<AuthThrottle>,
    /// Answers of deterministic requests; `None`: off.
    pub response_cache: Option<ResponseCache>,
    /// Answers of close questions; `None`: off.
    pub semantic_cache: Option<SemanticCache>,
}

/// The parts of a server beyond its models (see [`ServerState::with`]).
pub struct Services {
    pub auth: Auth,
    pub store: Option<Arc<Store>>,
    pub collection_limits: CollectionLimits,
    pub rag_template: Arc<RagTemplate>,
    pub rate_limits: Option<RateLimits>,
    /// Failed authentications allowed per minute and client address;
    /// `None`: unlimited.
    pub auth_failures_per_minute: Option<NonZeroU32>,
    /// Size and lifetime of the response cache; `None`: no cache.
    pub response_cache: Option<CacheConfig>,
    /// The semantic cache's settings; `None`: no semantic cache.
    pub semantic_cache: Option<SemanticConfig>,
}

impl Limits {
    /// The bounds of an `input` field; `allow_tokens` for endpoints that take token ids.
    pub fn input(&self, allow_tokens: bool) -> crate::input::InputLimits {
        crate::input::InputLimits {
            max_inputs: self.max_inputs,
            max_input_bytes: self.max_input_bytes,
            allow_tokens,
        }
    }
}

impl ServerState {
    /// A state without knowledge base and without authentication (every
    /// request is the tenant `default`): for tests of the router.
    pub fn new(
        expected: Vec<&'static str>,
        limits: Limits,
        registry: Registry,
    ) -> prometheus::Result<AppState> {
        let services = Services {
            auth: Auth::Disabled,
            store: None,
            collection_limits: CollectionLimits::default(),
            rag_template: Arc::new(
                RagTemplate::new(DEFAULT_TEMPLATE).expect("the default RAG template compiles"),
            ),
            rate_limits: None,
            auth_failures_per_minute: None,
            response_cache: None,
            semantic_cache: None,
        };
        Self::with(expected, limits, registry, services)
    }

    pub fn with(
        expected: Vec<&'static str>,
        limits: Limits,
        registry: Registry,
        services: Services,
    ) -> prometheus::Result<AppState> {
        let http_metrics = HttpMetrics::register(&registry)?;
        let index_metrics = IndexMetrics::register(&registry)?;
        let guard_metrics = GuardMetrics::register(&registry)?;
        let response_cache = services
            .response_cache
            .map(|c| ResponseCache::new(c.max_bytes, c.ttl, &registry))
            .transpose()?;
        let semantic_cache = services
            .semantic_cache
            .map(|c| SemanticCache::new(c, &registry))
            .transpose()?;
        Ok(Arc::new(Self {
            models: OnceLock::new(),
            expected,
            limits,
            registry,
            http_metrics,
            guard_metrics,
            auth: services.auth,
            store: services.store,
            collection_limits: services.collection_limits,
            index_metrics,
            rag_template: services.rag_template,
            rate_limits: services.rate_limits,
            auth_throttle: services.auth_failures_per_minute.map(AuthThrottle::new),
            response_cache,
            semantic_cache,
        }))
    }

    /// The guard, when chat requests are screened (`--guard-chat`).
    pub fn chat_guard(&self) -> Option<ModelHandle> {
        if !self.limits.guard_chat {
            return None;
        }
        self.models.get().and_then(|m| m.guard.clone())
    }

    /// The knowledge base.
    pub fn store(&self) -> Result<Arc<Store>, ApiError> {
        self.store
            .clone()
            .ok_or_else(|| ApiError::Unavailable("this server has no knowledge base".into()))
    }

    /// The embedding model, for the collections API.
    pub fn embedder(&self) -> Result<ModelHandle, ApiError> {
        self.model_for("embedding", |m| m.embedder.as_ref(), None)
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

    /// The generator, when `requested` names it (or names nothing).
    pub fn generator(&self, requested: Option<&str>) -> Result<GeneratorHandle, ApiError> {
        let Some(models) = self.models.get() else {
            return Err(ApiError::Unavailable(
                "models are still loading; retry shortly".into(),
            ));
        };
        match (&models.generator, requested) {
            (Some(g), Some(name)) if name != g.info.id => Err(ApiError::ModelNotFound(name.to_string())),
            (Some(g), _) => Ok(g.clone()),
            (None, Some(name)) => Err(ApiError::ModelNotFound(name.to_string())),
            (None, None) => Err(ApiError::NotFound("this server runs no generator model".into())),
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
        let Some(models) = self.models.get() else {
            return Err(ApiError::Unavailable(
                "models are still loading; retry shortly".into(),
            ));
        };
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
}

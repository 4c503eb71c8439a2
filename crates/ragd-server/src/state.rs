//! Shared server state.

use std::sync::{Arc, OnceLock};

use prometheus::Registry;

use crate::error::ApiError;
use crate::generate::GeneratorHandle;
use crate::metrics::HttpMetrics;
use crate::models::{ModelHandle, Models};

/// Limits and settings the routes apply.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_inputs: usize,
    pub max_input_bytes: usize,
    pub guard_threshold: f32,
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
    pub fn new(
        expected: Vec<&'static str>,
        limits: Limits,
        registry: Registry,
    ) -> prometheus::Result<AppState> {
        let http_metrics = HttpMetrics::register(&registry)?;
        Ok(Arc::new(Self {
            models: OnceLock::new(),
            expected,
            limits,
            registry,
            http_metrics,
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

//! The handles the rest of the service uses for loaded models.

use std::sync::Arc;

use ragd_core::{ModelInfo, TextTokenizer};
use ragd_engine::{BatchLimits, BatchWorker, GenerationEngine, TenantKey};
use ragd_models::llama::ChatTemplate;
use ragd_models::rerank::PairFraming;

use crate::generation::structured::{Grammars, TokenBytes};
use crate::tenant::Tenant;
use crate::tool_format::ToolCallFormat;

/// A loaded embedder or classifier: its facts, its tokenizer, its queue.
#[derive(Clone)]
pub struct ModelHandle {
    pub info: ModelInfo,
    pub tokenizer: Arc<dyn TextTokenizer>,
    pub worker: BatchWorker,
    /// Label names, for classifiers.
    pub labels: Vec<String>,
    /// Length of each output vector: the embedding dimension, or the number of labels.
    pub output_dim: usize,
    /// The worker's batch budget: callers with many inputs send them in
    /// pieces of this size.
    pub batch: BatchLimits,
}

impl ModelHandle {
    /// This handle with its worker queueing for `tenant` (held to the
    /// tenant's share of the queue, served round-robin across tenants).
    pub fn for_tenant(mut self, tenant: &Tenant) -> Self {
        self.worker = self.worker.with_tenant(TenantKey::new(tenant.as_str()));
        self
    }
}

/// The loaded generator.
#[derive(Clone)]
pub struct GeneratorHandle {
    pub info: ModelInfo,
    pub tokenizer: Arc<dyn TextTokenizer>,
    /// The model's own chat template, when it has one.
    pub template: Option<Arc<ChatTemplate>>,
    pub engine: GenerationEngine,
    /// End-of-turn tokens: generation stops there (finish_reason `stop`).
    pub stop_tokens: Vec<u32>,
    /// Structured outputs' grammar compiler (`None`: the tokenizer cannot
    /// list its token bytes, and `response_format` is refused).
    pub grammars: Option<Arc<Grammars>>,
    /// Each token's bytes (`None`: the tokenizer cannot list them).
    pub token_bytes: Option<TokenBytes>,
    /// How the model writes tool calls.
    pub tool_format: ToolCallFormat,
}

/// The loaded reranker (cross-encoder): its batch handle, whose worker
/// returns one logit per framed (query, document) pair, and how it frames
/// a pair.
#[derive(Clone)]
pub struct RerankerHandle {
    pub model: ModelHandle,
    pub pairs: PairFraming,
}

impl RerankerHandle {
    /// This handle queueing for `tenant` (see [`ModelHandle::for_tenant`]).
    pub fn for_tenant(mut self, tenant: &Tenant) -> Self {
        self.model = self.model.for_tenant(tenant);
        self
    }
}

/// Every model the server runs, once loaded.
#[derive(Clone, Default)]
pub struct Models {
    pub embedder: Option<ModelHandle>,
    /// The guards, in `--guard` order (the first answers
    /// `/v1/moderations` unless another is named).
    pub guards: Vec<ModelHandle>,
    pub generator: Option<GeneratorHandle>,
    /// The cross-encoder of `/v1/rerank` and RAG's `rerank` (`--reranker`).
    pub reranker: Option<RerankerHandle>,
}

impl Models {
    /// The guard named `requested`, else the first.
    pub fn guard(&self, requested: Option<&str>) -> Option<&ModelHandle> {
        match requested {
            Some(id) => self.guards.iter().find(|g| g.info.id == id),
            None => self.guards.first(),
        }
    }

    /// Facts of every loaded model, for `/v1/models` and `/ready`.
    pub fn all(&self) -> impl Iterator<Item = &ModelInfo> {
        let batch = self.embedder.iter().chain(&self.guards).map(|h| &h.info);
        let batch = batch.chain(self.reranker.iter().map(|r| &r.model.info));
        batch.chain(self.generator.iter().map(|g| &g.info))
    }
}

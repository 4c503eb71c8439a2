//! Plain settings of the service layer, filled by the command line (flags,
//! `RAGD_*` variables, TOML) or in code by tests. `Default` gives the same
//! values as `ragd serve` with no flags (a CLI test checks they agree).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ragd_models::llama::{GeneratorBackend, KvDtype};
use ragd_models::DeviceChoice;

use crate::guard_combine::GuardCombine;
use crate::tool_format::ToolCallFormat;

/// Which models run, from where, on what, and their queue and batch budgets.
#[derive(Debug, Clone)]
pub struct ModelsConfig {
    /// Folder holding models by name (what `models/fetch` fills).
    pub models_dir: PathBuf,
    /// Each model: a name in `models_dir`, a folder, or `none`.
    pub embedder: String,
    /// The guards, run side by side on every screened text (none: empty).
    pub guards: Vec<String>,
    pub generator: String,
    /// The cross-encoder of `/v1/rerank` and RAG's `rerank` (default `none`).
    pub reranker: String,
    pub device: DeviceChoice,
    /// Requests that may wait per model before new ones get 429.
    pub queue_capacity: usize,
    /// Requests one tenant may have waiting per model (default: a quarter
    /// of `queue_capacity`).
    pub per_tenant_queue_capacity: Option<usize>,
    /// Most tokens and sequences in one embedding or classification batch.
    pub max_batch_tokens: usize,
    pub max_batch_seqs: usize,
    /// Use GGUF weights as stored (no re-quantizing to Q8_0 of the types
    /// ragd has no kernel for, such as Q4_0 and Q5_1).
    pub exact_weights: bool,
    /// The generator's KV cache: MiB, element type, positions per block.
    pub kv_cache_mb: usize,
    pub kv_cache_dtype: KvDtype,
    /// Which forward runs the generator.
    pub generator_backend: GeneratorBackend,
    pub kv_block_size: usize,
    /// Longest sequence (prompt + generated); capped by the model's own.
    pub max_context: usize,
    /// Most tokens in one generation step (decodes plus prefill chunks).
    pub max_step_tokens: usize,
    /// Most sequences generating at once.
    pub max_running: usize,
    /// Automatic prefix caching in the generator's KV cache, per tenant.
    pub prefix_cache: bool,
    /// The generator's tool-call syntax (`None`: judged from its chat
    /// template and name).
    pub tool_call_format: Option<ToolCallFormat>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            models_dir: PathBuf::from("models/cache"),
            embedder: "all-minilm-l6-v2".into(),
            guards: vec!["nanoguard".into()],
            generator: "smollm2-135m-instruct-q4_1".into(),
            reranker: "none".into(),
            device: DeviceChoice::Auto,
            queue_capacity: 1024,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 16_384,
            max_batch_seqs: 256,
            exact_weights: false,
            kv_cache_mb: 512,
            kv_cache_dtype: KvDtype::F16,
            generator_backend: GeneratorBackend::Auto,
            kv_block_size: 16,
            max_context: 4096,
            max_step_tokens: 256,
            max_running: 64,
            prefix_cache: true,
            tool_call_format: None,
        }
    }
}

/// Bounds on what one request may hand the models.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Most inputs in one embeddings or moderations request, and most
    /// documents in one rerank request.
    pub max_inputs: usize,
    /// Longest single input text (and chat message, and search query), in bytes.
    pub max_input_bytes: usize,
    /// Longest chat conversation, all message contents together, in bytes.
    pub max_chat_bytes: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_inputs: 2048,
            max_input_bytes: 64 * 1024,
            max_chat_bytes: 256 * 1024,
        }
    }
}

/// How the injection guard decides and what it may cost.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Injection probability at or above which a text is flagged.
    pub threshold: f32,
    /// A guard's own threshold, by model id (`--guard-threshold` given
    /// once per guard).
    pub thresholds: BTreeMap<String, f32>,
    /// How several guards' verdicts combine.
    pub combine: GuardCombine,
    /// Most guard windows (full forward passes) one request may cost.
    pub max_windows: usize,
    /// Screen chat requests (last user message, retrieved chunks).
    pub screen_chat: bool,
    /// Screen chat answers: the guard's score, and a canary in RAG prompts.
    pub screen_output: bool,
    /// The canary put in RAG prompts when answers are screened; `None`: a
    /// fresh random one per request.
    pub canary: Option<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            thresholds: BTreeMap::new(),
            combine: GuardCombine::Any,
            max_windows: 32,
            screen_chat: false,
            screen_output: false,
            canary: None,
        }
    }
}

/// Bounds of the collections API.
#[derive(Debug, Clone, Copy)]
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

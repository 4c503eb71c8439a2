//! The models a server runs: where they come from, loading them, and the
//! handles the routes use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use ragd_core::{Classifier, Embedder, Generator, ModelInfo, TextTokenizer};
use ragd_engine::{
    BatchLimits, BatchWorker, GenerationEngine, GenerationLimits, GenerationMetrics, WorkerMetrics,
};
use ragd_models::Device;

use crate::cli::{EmbedderFlags, ServeArgs};
use crate::generate::GeneratorHandle;

/// A loaded model as the routes see it: its facts, its tokenizer, its queue.
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
    pub fn for_tenant(mut self, tenant: &crate::auth::Tenant) -> Self {
        let key = ragd_engine::TenantKey::new(tenant.as_str());
        self.worker = self.worker.with_tenant(key);
        self
    }
}

/// Every model the server runs, once loaded.
#[derive(Clone, Default)]
pub struct Models {
    pub embedder: Option<ModelHandle>,
    pub guard: Option<ModelHandle>,
    pub generator: Option<GeneratorHandle>,
}

impl Models {
    /// Facts of every loaded model, for `/v1/models` and `/ready`.
    pub fn all(&self) -> impl Iterator<Item = &ModelInfo> {
        let batch = self.embedder.iter().chain(self.guard.iter()).map(|h| &h.info);
        batch.chain(self.generator.iter().map(|g| &g.info))
    }
}

/// Finds a model folder (see [`ragd_models::resolve_model_dir`]).
pub fn resolve(spec: &str, models_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    Ok(ragd_models::resolve_model_dir(spec, models_dir)?)
}

fn limits(flags: &EmbedderFlags) -> BatchLimits {
    BatchLimits {
        queue_capacity: flags.queue_capacity,
        per_tenant_queue_capacity: flags.per_tenant_queue_capacity,
        max_batch_tokens: flags.max_batch_tokens,
        max_batch_seqs: flags.max_batch_seqs,
    }
}

/// Loads the configured models, each on its own worker thread. Logs the
/// time each one took.
pub fn load(args: &ServeArgs, registry: &prometheus::Registry) -> anyhow::Result<Models> {
    let flags = &args.models;
    let device = flags.device.open()?;
    let models_dir = &flags.dir.models_dir;
    let mut models = Models {
        embedder: embedder(flags, &device, registry)?,
        ..Models::default()
    };
    if let Some(dir) = resolve(&args.guard, models_dir)? {
        models.guard = Some(timed("guard", &dir, || {
            load_guard(&dir, &device, flags, registry)
        })?);
    }
    if let Some(dir) = resolve(&args.generator, models_dir)? {
        models.generator = Some(timed("generator", &dir, || {
            load_generator(&dir, &device, args, registry)
        })?);
    }
    Ok(models)
}

/// The embedder `flags` name (`None` for `none`) on its own worker
/// thread: how `ragd serve` loads it, and the offline `ragd ingest` /
/// `ragd query --data-dir`.
pub fn embedder(
    flags: &EmbedderFlags,
    device: &Device,
    registry: &prometheus::Registry,
) -> anyhow::Result<Option<ModelHandle>> {
    let Some(dir) = resolve(&flags.embedder, &flags.dir.models_dir)? else {
        return Ok(None);
    };
    timed("embedder", &dir, || load_embedder(&dir, device, flags, registry)).map(Some)
}

fn timed<T>(role: &str, dir: &Path, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let t0 = Instant::now();
    tracing::info!(role, path = %dir.display(), "loading model");
    let out = f().with_context(|| format!("loading the {role} from {}", dir.display()))?;
    tracing::info!(role, seconds = t0.elapsed().as_secs_f64(), "model loaded");
    Ok(out)
}

fn register(metrics: &WorkerMetrics, registry: &prometheus::Registry) -> anyhow::Result<()> {
    for c in metrics.collectors() {
        registry.register(c)?;
    }
    Ok(())
}

fn load_embedder(
    dir: &Path,
    device: &Device,
    flags: &EmbedderFlags,
    registry: &prometheus::Registry,
) -> anyhow::Result<ModelHandle> {
    let id = ragd_models::model_id(dir)?;
    let (model, tokenizer) = ragd_models::BertEmbedder::load(dir, &id, device)?;
    let info = model.info().clone();
    let output_dim = model.dim();
    let metrics = WorkerMetrics::new(&id);
    register(&metrics, registry)?;
    let model: Box<dyn Embedder> = Box::new(model);
    let (worker, _thread) = BatchWorker::spawn(&id, model, limits(flags), metrics)?;
    Ok(ModelHandle {
        info,
        tokenizer,
        worker,
        labels: Vec::new(),
        output_dim,
        batch: limits(flags),
    })
}

fn load_guard(
    dir: &Path,
    device: &Device,
    flags: &EmbedderFlags,
    registry: &prometheus::Registry,
) -> anyhow::Result<ModelHandle> {
    let (model, tokenizer): (Box<dyn Classifier>, _) = ragd_models::guard::load_guard(dir, device)?;
    let info = model.info().clone();
    let labels = model.labels().to_vec();
    let metrics = WorkerMetrics::new(&info.id);
    register(&metrics, registry)?;
    let (worker, _thread) = BatchWorker::spawn(&info.id, model, limits(flags), metrics)?;
    Ok(ModelHandle {
        info,
        tokenizer,
        worker,
        output_dim: labels.len(),
        labels,
        batch: limits(flags),
    })
}

fn load_generator(
    dir: &Path,
    device: &Device,
    args: &ServeArgs,
    registry: &prometheus::Registry,
) -> anyhow::Result<GeneratorHandle> {
    let id = ragd_models::model_id(dir)?;
    let opts = ragd_models::llama::GeneratorOptions {
        kv: ragd_models::llama::KvBudget {
            bytes: args.kv_cache_mb << 20,
            block_size: args.kv_block_size,
            dtype: args.kv_cache_dtype,
        },
        max_context: Some(args.max_context),
        fast_weights: !args.exact_weights,
    };
    let loaded = ragd_models::llama::load_generator(dir, &id, device, &opts)?;
    let info = loaded.model.info().clone();
    let metrics = GenerationMetrics::new(&id);
    for c in metrics.collectors() {
        registry.register(c)?;
    }
    let limits = GenerationLimits {
        queue_capacity: args.models.queue_capacity,
        per_tenant_queue_capacity: args.models.per_tenant_queue_capacity,
        max_batch_tokens: args.max_step_tokens,
        max_running: args.max_running,
    };
    let engine = GenerationEngine::spawn(Box::new(loaded.model), limits, metrics);
    Ok(GeneratorHandle {
        info,
        tokenizer: loaded.tokenizer,
        template: loaded.chat_template.map(Arc::new),
        engine,
        stop_tokens: loaded.stop_tokens,
    })
}

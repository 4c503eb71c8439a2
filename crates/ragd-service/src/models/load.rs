//! Loading the models a [`ModelsConfig`] names, each on its own worker
//! thread (the generator on its engine thread).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ragd_core::Classifier;
use ragd_engine::{
    BatchLimits, BatchWorker, GenerationEngine, GenerationLimits, GenerationMetrics, WorkerMetrics,
};
use ragd_models::{resolve_model_dir, Device};

use super::handles::{GeneratorHandle, ModelHandle, Models};
use crate::config::ModelsConfig;
use crate::generation::structured;
use crate::tool_format::ToolCallFormat;

/// The roles `config` configures (`embedder`, `guard`, `generator`,
/// `reranker`), in
/// that order: what `/ready` waits for. Fails on a name that is not found.
pub fn models_configured(config: &ModelsConfig) -> anyhow::Result<Vec<&'static str>> {
    let mut roles = Vec::new();
    let guards = config.guards.iter().map(|g| ("guard", g));
    let specs = [("embedder", &config.embedder)].into_iter().chain(guards);
    for (role, spec) in specs.chain([("generator", &config.generator)]) {
        if resolve_model_dir(spec, &config.models_dir)?.is_some() && !roles.contains(&role) {
            roles.push(role);
        }
    }
    if resolve_model_dir(&config.reranker, &config.models_dir)?.is_some() {
        roles.push("reranker");
    }
    Ok(roles)
}

fn limits(flags: &ModelsConfig) -> BatchLimits {
    BatchLimits {
        queue_capacity: flags.queue_capacity,
        per_tenant_queue_capacity: flags.per_tenant_queue_capacity,
        max_batch_tokens: flags.max_batch_tokens,
        max_batch_seqs: flags.max_batch_seqs,
    }
}

/// Loads the configured models, each on its own worker thread. Logs the
/// time each one took.
pub fn load(config: &ModelsConfig, registry: &prometheus::Registry) -> anyhow::Result<Models> {
    let flags = config;
    let device = flags.device.open()?;
    let models_dir = &flags.models_dir;
    let mut models = Models {
        embedder: load_embedder(flags, &device, registry)?,
        ..Models::default()
    };
    for spec in &config.guards {
        if let Some(dir) = resolve_model_dir(spec, models_dir)? {
            let guard = timed("guard", &dir, || load_guard(&dir, &device, flags, registry))?;
            if models.guards.iter().any(|g| g.info.id == guard.info.id) {
                anyhow::bail!(
                    "--guard {spec}: a guard named {} is already loaded",
                    guard.info.id
                );
            }
            models.guards.push(guard);
        }
    }
    if let Some(dir) = resolve_model_dir(&config.generator, models_dir)? {
        models.generator = Some(timed("generator", &dir, || {
            load_generator(&dir, &device, config, registry)
        })?);
    }
    if let Some(dir) = resolve_model_dir(&config.reranker, models_dir)? {
        models.reranker = Some(timed("reranker", &dir, || {
            load_reranker(&dir, &device, flags, registry)
        })?);
    }
    Ok(models)
}

/// The embedder `config` names (`None` for `none`) on its own worker
/// thread: how `ragd serve` loads it, and the offline `ragd ingest` /
/// `ragd query --data-dir`, so both embed alike.
pub fn load_embedder(
    config: &ModelsConfig,
    device: &Device,
    registry: &prometheus::Registry,
) -> anyhow::Result<Option<ModelHandle>> {
    let Some(dir) = resolve_model_dir(&config.embedder, &config.models_dir)? else {
        return Ok(None);
    };
    timed("embedder", &dir, || embedder(&dir, device, config, registry)).map(Some)
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

fn embedder(
    dir: &Path,
    device: &Device,
    flags: &ModelsConfig,
    registry: &prometheus::Registry,
) -> anyhow::Result<ModelHandle> {
    let id = ragd_models::model_id(dir)?;
    // BERT or MPNet, by config.json's model_type.
    let (model, tokenizer) = ragd_models::embed::load_embedder(dir, &id, device)?;
    let info = model.info().clone();
    let output_dim = model.dim();
    let metrics = WorkerMetrics::new(&id);
    register(&metrics, registry)?;
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
    flags: &ModelsConfig,
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

/// A cross-encoder on a batch worker: one vector per framed pair, holding
/// its logit.
struct Reranker(ragd_models::CrossEncoder);

impl ragd_engine::BatchModel for Reranker {
    fn run(&mut self, batch: &ragd_core::TokenBatch) -> ragd_core::Result<Vec<Vec<f32>>> {
        Ok(self
            .0
            .score(batch)?
            .into_iter()
            .map(|logit| vec![logit])
            .collect())
    }
}

fn load_reranker(
    dir: &Path,
    device: &Device,
    flags: &ModelsConfig,
    registry: &prometheus::Registry,
) -> anyhow::Result<super::handles::RerankerHandle> {
    let id = ragd_models::model_id(dir)?;
    let (model, tokenizer) = ragd_models::CrossEncoder::load(dir, &id, device)?;
    let (info, pairs) = (model.info().clone(), model.pairs().clone());
    let metrics = WorkerMetrics::new(&id);
    register(&metrics, registry)?;
    let (worker, _thread) = BatchWorker::spawn(&id, Reranker(model), limits(flags), metrics)?;
    let model = ModelHandle {
        info,
        tokenizer,
        worker,
        labels: vec!["relevance".into()],
        output_dim: 1,
        batch: limits(flags),
    };
    Ok(super::handles::RerankerHandle { model, pairs })
}

fn load_generator(
    dir: &Path,
    device: &Device,
    config: &ModelsConfig,
    registry: &prometheus::Registry,
) -> anyhow::Result<GeneratorHandle> {
    let id = ragd_models::model_id(dir)?;
    let opts = ragd_models::llama::GeneratorOptions {
        kv: ragd_models::llama::KvBudget {
            bytes: config.kv_cache_mb << 20,
            block_size: config.kv_block_size,
            dtype: config.kv_cache_dtype,
        },
        max_context: Some(config.max_context),
        fast_weights: !config.exact_weights,
        backend: config.generator_backend,
    };
    let loaded = ragd_models::llama::load_generator(dir, &id, device, &opts)?;
    let info = loaded.model.info().clone();
    let metrics = GenerationMetrics::new(&id);
    for c in metrics.collectors() {
        registry.register(c)?;
    }
    let limits = GenerationLimits {
        queue_capacity: config.queue_capacity,
        per_tenant_queue_capacity: config.per_tenant_queue_capacity,
        max_batch_tokens: config.max_step_tokens,
        max_running: config.max_running,
        prefix_cache: config.prefix_cache,
    };
    let engine = GenerationEngine::spawn(loaded.model, limits, metrics);
    let (token_bytes, grammars) =
        structured::vocabulary(loaded.tokenizer.as_ref(), loaded.stop_tokens.first().copied())
            .context("building the structured-output grammar compiler")?;
    let tool_format = config
        .tool_call_format
        .unwrap_or_else(|| ToolCallFormat::detect(loaded.chat_template.as_ref().map(|t| t.source()), &id));
    tracing::info!(model = %id, %tool_format, "tool-call format");
    Ok(GeneratorHandle {
        tool_format,
        grammars,
        token_bytes,
        info,
        tokenizer: loaded.tokenizer,
        template: loaded.chat_template.map(Arc::new),
        engine,
        stop_tokens: loaded.stop_tokens,
    })
}

//! The batched Llama forward over a paged KV cache: one `step` runs a ragged
//! batch where every sequence brings its own chunk of tokens (a piece of its
//! prompt, or its last sampled token) at its own positions.
//!
//! Matmuls run over all tokens of the step at once (ragd's batched quantized
//! kernel on the CPU, candle's `QMatMul` otherwise); rotary embeddings and
//! attention run per token through `ragd-kernels`, reading K/V through each
//! sequence's block table. Every operation treats rows independently, so a
//! sequence's logits do not depend on what else is in the batch.

use std::path::Path;

use candle_core::Device;
use ragd_core::{Generator, KvLayout, ModelError, ModelInfo, Result, SeqChunk};
use ragd_kernels::{paged_attention, write_kv, KvDtype, KvShape, KvStore, QueryToken, Rope};

use super::{ops, LlamaConfig, LlamaWeights};
use crate::error::inference;

/// How much memory the KV cache may take, its block size and element type.
#[derive(Debug, Clone, Copy)]
pub struct KvBudget {
    pub bytes: usize,
    pub block_size: usize,
    pub dtype: KvDtype,
}

impl Default for KvBudget {
    fn default() -> Self {
        Self {
            bytes: 512 << 20,
            block_size: 16,
            dtype: KvDtype::default(),
        }
    }
}

/// How to load a generator.
#[derive(Debug, Clone, Copy)]
pub struct GeneratorOptions {
    pub kv: KvBudget,
    /// Caps the model's own context length.
    pub max_context: Option<usize>,
    /// Re-quantize GGUF matrices whose type has no ragd kernel (anything but
    /// Q8_0, Q4_1, Q5_0, Q4_K, Q5_K and Q6_K) to Q8_0 so they run the
    /// batched kernel; off: such matrices go through candle's `QMatMul`
    /// exactly as stored.
    pub fast_weights: bool,
    /// Which forward runs the model.
    pub backend: GeneratorBackend,
}

/// Which forward runs a generator: ragd's own CPU kernels (`native`), the
/// device-generic candle forward (`candle`), or `auto`: native on the CPU,
/// candle on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GeneratorBackend {
    #[default]
    Auto,
    Native,
    Candle,
}

impl GeneratorBackend {
    /// The backend `auto` means on `device`.
    pub fn resolve(self, device: &Device) -> Self {
        match self {
            Self::Auto if device.is_cpu() => Self::Native,
            Self::Auto => Self::Candle,
            other => other,
        }
    }
}

impl std::str::FromStr for GeneratorBackend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "candle" => Ok(Self::Candle),
            _ => Err(format!(
                "unknown generator backend {s:?}: use native, candle or auto"
            )),
        }
    }
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            kv: KvBudget::default(),
            max_context: None,
            fast_weights: true,
            backend: GeneratorBackend::Auto,
        }
    }
}

struct LayerCache {
    k: KvStore,
    v: KvStore,
}

pub struct LlamaGenerator {
    info: ModelInfo,
    cfg: LlamaConfig,
    weights: LlamaWeights,
    rope: Rope,
    cache: Vec<LayerCache>,
    kv_shape: KvShape,
    kv_dtype: KvDtype,
    context_len: usize,
}

impl LlamaGenerator {
    /// Loads a GGUF Llama or Qwen2.
    pub fn from_gguf(path: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<Self> {
        let fail = |e: std::io::Error| ModelError::load(path.display(), e);
        let mut file = std::fs::File::open(path).map_err(fail)?;
        let content = super::gguf_tokenizer::read_gguf_header(&mut file, path)?;
        let cfg = LlamaConfig::from_gguf(&content, &path.display().to_string())?;
        let weights = LlamaWeights::from_gguf(&content, &mut file, &cfg, path, device, opts.fast_weights)?;
        Ok(Self::new(id, cfg, weights, opts))
    }

    /// Loads a Hugging Face Llama or Qwen2 folder (`config.json` + safetensors).
    pub fn from_safetensors(dir: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<Self> {
        let cfg = LlamaConfig::from_hf_dir(dir)?;
        let weights = LlamaWeights::from_safetensors(dir, &cfg, device)?;
        Ok(Self::new(id, cfg, weights, opts))
    }

    fn new(id: &str, cfg: LlamaConfig, weights: LlamaWeights, opts: &GeneratorOptions) -> Self {
        let context_len = opts
            .max_context
            .map_or(cfg.context_len, |m| m.min(cfg.context_len));
        let kv_shape = kv_shape(&cfg, &opts.kv);
        // Zeroed allocations are lazily committed by the OS: an idle cache
        // costs address space, not memory.
        let cache = (0..cfg.n_layers)
            .map(|_| LayerCache {
                k: KvStore::zeroed(opts.kv.dtype, kv_shape.len()),
                v: KvStore::zeroed(opts.kv.dtype, kv_shape.len()),
            })
            .collect();
        tracing::info!(model = id, kv_dtype = ?opts.kv.dtype, kv_blocks = kv_shape.num_blocks, backend = "native", "generator loaded");
        Self {
            info: ModelInfo::generator(id, context_len),
            rope: Rope::new(cfg.head_dim, cfg.rope_base, context_len, cfg.rope_style),
            cfg,
            weights,
            cache,
            kv_shape,
            kv_dtype: opts.kv.dtype,
            context_len,
        }
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    fn forward(&mut self, chunks: &[SeqChunk<'_>]) -> candle_core::Result<Vec<Vec<f32>>> {
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        let mut logit_rows = Vec::new();
        for c in chunks {
            for (i, &t) in c.tokens.iter().enumerate() {
                ids.push(t);
                tokens.push(QueryToken {
                    blocks: c.blocks,
                    pos: c.start_pos + i,
                });
            }
            if c.want_logits {
                logit_rows.push(ids.len() - 1);
            }
        }
        let n = ids.len();
        let cfg = &self.cfg;
        let (d, q_dim, kv_dim) = (
            cfg.hidden,
            cfg.n_heads * cfg.head_dim,
            cfg.n_kv_heads * cfg.head_dim,
        );
        let scale = 1.0 / (cfg.head_dim as f32).sqrt();
        let mut x = self.weights.embed.lookup(&ids);
        let mut h = vec![0f32; n * d];
        let (mut q, mut k, mut v) = (
            vec![0f32; n * q_dim],
            vec![0f32; n * kv_dim],
            vec![0f32; n * kv_dim],
        );
        let mut att = vec![0f32; n * q_dim];
        for (layer, cache) in self.weights.layers.iter().zip(self.cache.iter_mut()) {
            ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps, &mut h);
            let mut qkv = layer.qkv.forward(&h, n)?;
            if let Some(bias) = &layer.qkv_bias {
                qkv.chunks_exact_mut(bias.len())
                    .for_each(|row| ops::add_assign(row, bias));
            }
            for (t, row) in qkv.chunks_exact(q_dim + 2 * kv_dim).enumerate() {
                let (rq, rest) = row.split_at(q_dim);
                let (rk, rv) = rest.split_at(kv_dim);
                let (tq, tk) = (
                    &mut q[t * q_dim..(t + 1) * q_dim],
                    &mut k[t * kv_dim..(t + 1) * kv_dim],
                );
                tq.copy_from_slice(rq);
                tk.copy_from_slice(rk);
                v[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(rv);
                self.rope.apply(tq, tokens[t].pos);
                self.rope.apply(tk, tokens[t].pos);
            }
            write_kv(&mut cache.k, &mut cache.v, self.kv_shape, &k, &v, &tokens);
            paged_attention(
                &q,
                cfg.n_heads,
                &cache.k,
                &cache.v,
                self.kv_shape,
                &tokens,
                scale,
                &mut att,
            );
            ops::add_assign(&mut x, &layer.wo.forward(&att, n)?);
            ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps, &mut h);
            let gate_up = layer.gate_up.forward(&h, n)?;
            let act = ops::silu_mul(&gate_up, gate_up.len() / (2 * n));
            ops::add_assign(&mut x, &layer.down.forward(&act, n)?);
        }
        if logit_rows.is_empty() {
            return Ok(Vec::new());
        }
        let last: Vec<f32> = logit_rows
            .iter()
            .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
            .collect();
        let mut normed = vec![0f32; last.len()];
        ops::rms_norm(&last, &self.weights.norm, cfg.rms_eps, &mut normed);
        let logits = self.weights.output.forward(&normed, logit_rows.len())?;
        Ok(logits.chunks_exact(cfg.vocab_size).map(<[f32]>::to_vec).collect())
    }
}

impl Generator for LlamaGenerator {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn context_len(&self) -> usize {
        self.context_len
    }

    fn kv_layout(&self) -> KvLayout {
        kv_layout(&self.cfg, self.kv_shape, self.kv_dtype)
    }

    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        check_chunks(chunks, self.context_len, self.kv_shape, self.cfg.vocab_size)?;
        // Run the whole step on a rayon worker: the matmuls' parallel loops
        // then fork inside the pool instead of each blocking this thread on
        // a latch and waking a sleeping worker (a futex round trip per
        // matmul, ~120 per token).
        rayon::scope(|_| self.forward(chunks)).map_err(inference)
    }
}

/// The KV cache shape `kv` buys for `cfg` (at least one block).
pub(super) fn kv_shape(cfg: &LlamaConfig, kv: &KvBudget) -> KvShape {
    let block_bytes = cfg.kv_bytes_per_token(kv.dtype) * kv.block_size;
    KvShape {
        num_blocks: (kv.bytes / block_bytes).max(1),
        block_size: kv.block_size,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    }
}

/// The layout the scheduler sees of a cache shaped `shape`.
pub(super) fn kv_layout(cfg: &LlamaConfig, shape: KvShape, dtype: KvDtype) -> KvLayout {
    KvLayout {
        block_size: shape.block_size,
        num_blocks: shape.num_blocks,
        bytes_per_block: cfg.kv_bytes_per_token(dtype) * shape.block_size,
    }
}

/// Guards the cache before any state changes. Requests are checked once,
/// by the engine at submit (prompt length, `max_tokens`, vocabulary); a
/// chunk failing here is a scheduler bug, not the caller's fault, so it is
/// an internal error (a bad position or block table would write outside a
/// sequence's cache, a bad token id outside the embeddings).
pub(super) fn check_chunks(
    chunks: &[SeqChunk<'_>],
    context_len: usize,
    shape: KvShape,
    vocab_size: usize,
) -> Result<()> {
    let bs = shape.block_size;
    let bug = |what: String| Err(ModelError::Inference(format!("the scheduler sent {what}")));
    for c in chunks {
        let end = c.start_pos + c.tokens.len();
        if c.tokens.is_empty() {
            return bug("an empty chunk".into());
        }
        if end > context_len {
            return bug(format!("position {end}, past the context length {context_len}"));
        }
        if c.blocks.len() * bs < end || c.blocks.iter().any(|&b| b as usize >= shape.num_blocks) {
            return bug(format!(
                "a block table of {} blocks for {end} positions",
                c.blocks.len()
            ));
        }
        if let Some(&t) = c.tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return bug(format!("token id {t}, outside the vocabulary"));
        }
    }
    Ok(())
}

//! The device-generic generator backend: the same batched Llama forward as
//! [`super::LlamaGenerator`], built from candle tensors so it runs on any
//! candle `Device` (CPU, CUDA, Metal). Same scheduler, block manager and
//! sampling: only the `Generator` behind the trait differs.
//!
//! Weights are `QMatMul`s as the file stores them; the paged KV cache is one
//! pair of device tensors per layer ([`DeviceKvCache`]); attention reads it
//! through each sequence's block table: on the CPU with ragd's own kernel
//! on the cache tensors' storage ([`cpu_attention`], batch-invariant to the
//! bit), elsewhere by gathering blocks into a masked matmul-softmax-matmul
//! ([`attention`], the portable path), with the fused CUDA kernel for
//! decodes when it is compiled in.

mod attention;
mod cpu_attention;
mod kv_cache;
mod weights;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use ragd_core::{Generator, KvLayout, ModelError, ModelInfo, Result, SeqChunk, StepOutput};
use ragd_kernels::{KvDtype, QueryToken, Rope, RopeStyle};

use self::attention::Heads;
use self::kv_cache::DeviceKvCache;
use self::weights::DeviceWeights;
use super::generator::{check_chunks, kv_layout, kv_shape};
use super::{GeneratorOptions, LlamaConfig};
use crate::error::inference;

pub struct CandleLlamaGenerator {
    info: ModelInfo,
    cfg: LlamaConfig,
    weights: DeviceWeights,
    cache: DeviceKvCache,
    kv_dtype: KvDtype,
    /// Rotary tables `[context_len, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    context_len: usize,
    device: Device,
    attention: AttentionPath,
}

/// How attention reads the paged cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPath {
    /// ragd's CPU kernel on the cache tensors' storage (CPU only).
    CpuKernel,
    /// Gathered blocks, masked matmul-softmax-matmul: any device.
    Portable,
}

fn candle_dtype(d: KvDtype) -> DType {
    match d {
        KvDtype::F32 => DType::F32,
        KvDtype::F16 => DType::F16,
    }
}

impl CandleLlamaGenerator {
    /// Loads a GGUF Llama or Qwen2 onto `device`.
    pub fn from_gguf(path: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<Self> {
        let fail = |e: std::io::Error| ModelError::load(path.display(), e);
        let mut file = std::fs::File::open(path).map_err(fail)?;
        let content = super::gguf_tokenizer::read_gguf_header(&mut file, path)?;
        let cfg = LlamaConfig::from_gguf(&content, &path.display().to_string())?;
        let weights = DeviceWeights::from_gguf(&content, &mut file, &cfg, path, device)?;
        Self::new(id, cfg, weights, opts, device)
    }

    /// Loads a Hugging Face Llama or Qwen2 folder onto `device`.
    pub fn from_safetensors(dir: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<Self> {
        let cfg = LlamaConfig::from_hf_dir(dir)?;
        let weights = DeviceWeights::from_safetensors(dir, &cfg, device)?;
        Self::new(id, cfg, weights, opts, device)
    }

    fn new(
        id: &str,
        cfg: LlamaConfig,
        weights: DeviceWeights,
        opts: &GeneratorOptions,
        device: &Device,
    ) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(id, e);
        let context_len = opts
            .max_context
            .map_or(cfg.context_len, |m| m.min(cfg.context_len));
        let shape = kv_shape(&cfg, &opts.kv);
        let cache =
            DeviceKvCache::new(cfg.n_layers, shape, candle_dtype(opts.kv.dtype), device).map_err(fail)?;
        let rope = Rope::new(cfg.head_dim, cfg.rope_base, context_len, cfg.rope_style);
        let (cos, sin) = rope.tables();
        let table = |v: &[f32]| Tensor::from_slice(v, (context_len, cfg.head_dim / 2), device);
        tracing::info!(
            model = id,
            device = ?device,
            kv_dtype = ?opts.kv.dtype,
            kv_blocks = shape.num_blocks,
            backend = "candle",
            "generator loaded"
        );
        Ok(Self {
            info: ModelInfo::generator(id, context_len),
            cos: table(cos).map_err(fail)?,
            sin: table(sin).map_err(fail)?,
            cfg,
            weights,
            cache,
            kv_dtype: opts.kv.dtype,
            context_len,
            attention: match device.is_cpu() {
                true => AttentionPath::CpuKernel,
                false => AttentionPath::Portable,
            },
            device: device.clone(),
        })
    }

    /// Runs attention the portable way even on the CPU (to test that path).
    pub fn with_attention(mut self, path: AttentionPath) -> Self {
        if path == AttentionPath::Portable || self.device.is_cpu() {
            self.attention = path;
        }
        self
    }

    /// Rotates `x` (`[n, heads * head_dim]`) by each row's position.
    fn rotate(&self, x: &Tensor, heads: usize, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let x = x.reshape((n, heads, 1, self.cfg.head_dim))?.contiguous()?;
        let out = match self.cfg.rope_style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, cos, sin)?,
            RopeStyle::Half => candle_nn::rotary_emb::rope(&x, cos, sin)?,
        };
        out.reshape((n, heads * self.cfg.head_dim))
    }

    /// The logits `[rows, vocab]` (f32, on the device) after each chunk
    /// with `want_logits`; `None` when no chunk wants them.
    fn forward(&self, chunks: &[SeqChunk<'_>]) -> candle_core::Result<Option<Tensor>> {
        let dev = &self.device;
        let cfg = &self.cfg;
        let shape = self.cache.shape();
        let bs = shape.block_size;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut slots = Vec::new();
        let mut logit_rows = Vec::new();
        let mut tokens = Vec::new();
        for c in chunks {
            for (i, &t) in c.tokens.iter().enumerate() {
                let pos = c.start_pos + i;
                tokens.push(QueryToken {
                    blocks: c.blocks,
                    pos,
                });
                ids.push(t);
                positions.push(pos as u32);
                slots.push(c.blocks[pos / bs] * bs as u32 + (pos % bs) as u32);
            }
            if c.want_logits {
                logit_rows.push(ids.len() as u32 - 1);
            }
        }
        let n = ids.len();
        let kv_dim = cfg.n_kv_heads * cfg.head_dim;
        let groups = match self.attention {
            AttentionPath::Portable => Some(attention::StepGroups::new(chunks, bs, dev)?),
            AttentionPath::CpuKernel => None,
        };
        let heads = Heads {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            block_size: bs,
        };
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();

        let positions = Tensor::from_slice(&positions, n, dev)?;
        let rope_shape = (n, 1, cfg.head_dim / 2);
        let cos = self.cos.index_select(&positions, 0)?.reshape(rope_shape)?;
        let sin = self.sin.index_select(&positions, 0)?.reshape(rope_shape)?;
        let slots = Tensor::from_slice(&slots, (n, 1), dev)?
            .broadcast_as((n, kv_dim))?
            .contiguous()?;

        let mut x = self
            .weights
            .embed
            .index_select(&Tensor::from_slice(&ids, n, dev)?, 0)?;
        for (l, layer) in self.weights.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps)?;
            let (mut q, mut k, mut v) = (layer.q.forward(&h)?, layer.k.forward(&h)?, layer.v.forward(&h)?);
            if let Some([bq, bk, bv]) = &layer.qkv_bias {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            let q = self.rotate(&q, cfg.n_heads, &cos, &sin)?;
            let k = self.rotate(&k, cfg.n_kv_heads, &cos, &sin)?;
            self.cache.write(l, &slots, &k, &v.contiguous()?)?;
            let att = match &groups {
                None => {
                    let [k_cache, v_cache] = self.cache.layer(l);
                    cpu_attention::attend(&q, k_cache, v_cache, shape, &tokens, cfg.n_heads, scale as f32)?
                }
                Some(groups) => {
                    let [k_cache, v_cache] = self.cache.blocks(l)?;
                    attention::attend(&q, &k_cache, &v_cache, groups, heads, scale)?
                }
            };
            x = (x + layer.o.forward(&att)?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps)?;
            let act = (layer.gate.forward(&h)?.silu()? * layer.up.forward(&h)?)?;
            x = (x + layer.down.forward(&act)?)?;
        }
        if logit_rows.is_empty() {
            return Ok(None);
        }
        let last = x.index_select(&Tensor::from_slice(&logit_rows, logit_rows.len(), dev)?, 0)?;
        let normed = candle_nn::ops::rms_norm(&last, &self.weights.norm, cfg.rms_eps)?;
        Ok(Some(self.weights.output.forward(&normed)?.to_dtype(DType::F32)?))
    }

    /// The step's outputs: the argmax picked on the device for the rows
    /// flagged greedy (one id copied back each), whole rows for the others.
    fn outputs(&self, logits: &Tensor, greedy: &[bool]) -> candle_core::Result<Vec<StepOutput>> {
        let rows = logits.dim(0)?;
        let flag = |i: usize| greedy.get(i).copied().unwrap_or(false);
        let ids: Vec<u32> = match (0..rows).any(flag) {
            true => logits.argmax(1)?.to_vec1()?,
            false => Vec::new(),
        };
        let full: Vec<u32> = (0..rows).filter(|&i| !flag(i)).map(|i| i as u32).collect();
        let mut full_rows = match full.len() {
            0 => Vec::new(),
            n if n == rows => logits.to_vec2()?,
            n => logits
                .index_select(&Tensor::from_slice(&full, n, logits.device())?, 0)?
                .to_vec2()?,
        }
        .into_iter();
        (0..rows)
            .map(|i| match flag(i) {
                true => Ok(StepOutput::Token(ids[i])),
                false => full_rows
                    .next()
                    .map(StepOutput::Logits)
                    .ok_or_else(|| candle_core::Error::Msg("a logits row went missing".into())),
            })
            .collect()
    }

    fn run_step(&self, chunks: &[SeqChunk<'_>], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        check_chunks(chunks, self.context_len, self.cache.shape(), self.cfg.vocab_size)?;
        let run = || match self.forward(chunks)? {
            Some(logits) => self.outputs(&logits, greedy),
            None => Ok(Vec::new()),
        };
        run().map_err(inference)
    }
}

impl Generator for CandleLlamaGenerator {
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
        kv_layout(&self.cfg, self.cache.shape(), self.kv_dtype)
    }

    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>> {
        self.run_step(chunks, &[])?
            .into_iter()
            .map(|o| match o {
                StepOutput::Logits(row) => Ok(row),
                StepOutput::Token(_) => {
                    Err(ModelError::Inference("an argmax where logits were asked".into()))
                }
            })
            .collect()
    }

    fn step_greedy(&mut self, chunks: &[SeqChunk<'_>], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        self.run_step(chunks, greedy)
    }
}

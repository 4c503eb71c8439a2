//! Llama weights: quantized from a GGUF file (`QMatMul` over the quantized
//! blocks) or full precision from Hugging Face safetensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use ragd_core::{ModelError, Result};

use super::LlamaConfig;

/// GGUF types candle multiplies with a scalar loop on CPU.
const SLOW_TYPES: [GgmlDType; 2] = [GgmlDType::Q4_1, GgmlDType::Q5_1];

pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub wq: QMatMul,
    pub wk: QMatMul,
    pub wv: QMatMul,
    pub wo: QMatMul,
    pub ffn_norm: Tensor,
    pub gate: QMatMul,
    pub up: QMatMul,
    pub down: QMatMul,
}

pub struct LlamaWeights {
    /// `[vocab, hidden]`, f32.
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,
    pub output: QMatMul,
}

impl LlamaWeights {
    /// GGUF names (llama.cpp's): `token_embd`, `blk.N.attn_q`, ..., `output`
    /// (absent when tied to the embedding).
    pub fn from_gguf(
        content: &gguf_file::Content,
        file: &mut std::fs::File,
        cfg: &LlamaConfig,
        path: &Path,
        device: &Device,
        fast: bool,
    ) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(path.display(), e);
        let mut q = |name: &str| content.tensor(file, name, device).map_err(fail);
        // candle has no SIMD dot product for some GGUF types (Q4_1 runs a
        // scalar loop, ~8x slower than llama.cpp): `fast` re-quantizes those
        // matrices to Q8_0, whose AVX2/NEON kernels exist. Near-lossless
        // (8 bits per weight for values that had 4), but not bit-exact.
        let mm_of = |t: QTensor| -> Result<QMatMul> {
            let t = if fast && SLOW_TYPES.contains(&t.dtype()) {
                let f = t.dequantize(device).map_err(fail)?;
                QTensor::quantize(&f, GgmlDType::Q8_0).map_err(fail)?
            } else {
                t
            };
            QMatMul::from_qtensor(t).map_err(fail)
        };
        let embed_q = q("token_embd.weight")?;
        let embed = embed_q.dequantize(device).map_err(fail)?;
        let norm = q("output_norm.weight")?.dequantize(device).map_err(fail)?;
        let output = match q("output.weight") {
            Ok(t) => t,
            Err(_) => embed_q,
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let mut mm = |n: &str| -> Result<QMatMul> { mm_of(q(&format!("blk.{i}.{n}.weight"))?) };
            let (wq, wk, wv, wo) = (mm("attn_q")?, mm("attn_k")?, mm("attn_v")?, mm("attn_output")?);
            let (gate, up, down) = (mm("ffn_gate")?, mm("ffn_up")?, mm("ffn_down")?);
            let mut f32_of = |n: &str| {
                q(&format!("blk.{i}.{n}.weight"))?
                    .dequantize(device)
                    .map_err(fail)
            };
            layers.push(LayerWeights {
                attn_norm: f32_of("attn_norm")?,
                ffn_norm: f32_of("ffn_norm")?,
                wq,
                wk,
                wv,
                wo,
                gate,
                up,
                down,
            });
        }
        Ok(Self {
            embed,
            layers,
            norm,
            output: mm_of(output)?,
        })
    }

    /// Hugging Face names (`model.layers.N.self_attn.q_proj`, ...), from every
    /// `*.safetensors` file of `dir`, converted to f32.
    pub fn from_safetensors(dir: &Path, cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(dir.display(), e);
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| ModelError::load(dir.display(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ModelError::load(dir.display(), "no .safetensors files"));
        }
        for f in files {
            tensors.extend(candle_core::safetensors::load(&f, device).map_err(fail)?);
        }
        let mut take = |name: &str| -> Result<Tensor> {
            tensors
                .remove(name)
                .ok_or_else(|| ModelError::load(dir.display(), format!("missing tensor {name}")))?
                .to_dtype(DType::F32)
                .map_err(fail)
        };
        let embed = take("model.embed_tokens.weight")?;
        let norm = take("model.norm.weight")?;
        let output = match take("lm_head.weight") {
            Ok(t) => t,
            Err(_) => embed.clone(),
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("model.layers.{i}");
            let mut mm = |n: &str| take(&format!("{p}.{n}.weight")).map(QMatMul::Tensor);
            let (wq, wk, wv, wo) = (
                mm("self_attn.q_proj")?,
                mm("self_attn.k_proj")?,
                mm("self_attn.v_proj")?,
                mm("self_attn.o_proj")?,
            );
            let (gate, up, down) = (mm("mlp.gate_proj")?, mm("mlp.up_proj")?, mm("mlp.down_proj")?);
            layers.push(LayerWeights {
                attn_norm: take(&format!("{p}.input_layernorm.weight"))?,
                ffn_norm: take(&format!("{p}.post_attention_layernorm.weight"))?,
                wq,
                wk,
                wv,
                wo,
                gate,
                up,
                down,
            });
        }
        Ok(Self {
            embed,
            layers,
            norm,
            output: QMatMul::Tensor(output),
        })
    }
}

//! Llama weights: quantized from a GGUF file or full precision from Hugging
//! Face safetensors, in the shapes the batched forward wants (Q, K and V as
//! one matrix; gate and up as one).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use ragd_core::{ModelError, Result};

use super::linear::{Embedding, Linear};
use super::LlamaConfig;

pub struct LayerWeights {
    pub attn_norm: Vec<f32>,
    /// Q, K and V stacked: `[q_dim + 2 * kv_dim, hidden]`.
    pub qkv: Linear,
    /// Their biases stacked alike (Qwen2 has them, Llama not).
    pub qkv_bias: Option<Vec<f32>>,
    pub wo: Linear,
    pub ffn_norm: Vec<f32>,
    /// Gate and up stacked: `[2 * ff, hidden]`.
    pub gate_up: Linear,
    pub down: Linear,
}

pub struct LlamaWeights {
    pub embed: Embedding,
    pub layers: Vec<LayerWeights>,
    pub norm: Vec<f32>,
    pub output: Linear,
}

/// The tensors of one layer, named independently of the file format.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl Part {
    /// llama.cpp's name in a GGUF file.
    pub(super) fn gguf(self) -> &'static str {
        match self {
            Self::AttnNorm => "attn_norm",
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::FfnNorm => "ffn_norm",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    /// Hugging Face's name in a safetensors file.
    pub(super) fn hf(self) -> &'static str {
        match self {
            Self::AttnNorm => "input_layernorm",
            Self::Q => "self_attn.q_proj",
            Self::K => "self_attn.k_proj",
            Self::V => "self_attn.v_proj",
            Self::O => "self_attn.o_proj",
            Self::FfnNorm => "post_attention_layernorm",
            Self::Gate => "mlp.gate_proj",
            Self::Up => "mlp.up_proj",
            Self::Down => "mlp.down_proj",
        }
    }
}

/// Builds every layer from three loaders: a norm vector, a matrix and a
/// bias (`None` when the file has none) by layer and part.
fn build_layers(
    n_layers: usize,
    mut norm: impl FnMut(usize, Part) -> Result<Vec<f32>>,
    mut matrix: impl FnMut(usize, Part) -> Result<Linear>,
    mut bias: impl FnMut(usize, Part) -> Result<Option<Vec<f32>>>,
) -> Result<Vec<LayerWeights>> {
    (0..n_layers)
        .map(|i| {
            let mut mm = |p| matrix(i, p);
            Ok(LayerWeights {
                attn_norm: norm(i, Part::AttnNorm)?,
                qkv: Linear::stack(vec![mm(Part::Q)?, mm(Part::K)?, mm(Part::V)?]),
                qkv_bias: stacked_bias([bias(i, Part::Q)?, bias(i, Part::K)?, bias(i, Part::V)?], i)?,
                wo: mm(Part::O)?,
                ffn_norm: norm(i, Part::FfnNorm)?,
                gate_up: Linear::stack(vec![mm(Part::Gate)?, mm(Part::Up)?]),
                down: mm(Part::Down)?,
            })
        })
        .collect()
}

/// Q, K and V biases as one vector: all three or none.
fn stacked_bias(parts: [Option<Vec<f32>>; 3], layer: usize) -> Result<Option<Vec<f32>>> {
    match parts {
        [Some(q), Some(k), Some(v)] => Ok(Some([q, k, v].concat())),
        [None, None, None] => Ok(None),
        _ => Err(ModelError::load(
            format!("layer {layer}"),
            "biases on some of Q, K and V but not all",
        )),
    }
}

/// The `*.safetensors` files of `dir`, sorted; at least one.
pub(super) fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::load(dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::load(dir.display(), "no .safetensors files"));
    }
    Ok(files)
}

fn to_f32_vec(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

impl LlamaWeights {
    /// GGUF names (llama.cpp's): `token_embd`, `blk.N.attn_q`, ..., `output`
    /// (absent when tied to the embedding). With `requantize`, matrices of
    /// types ragd has no kernel for are converted to Q8_0 (see [`Linear`]).
    pub fn from_gguf(
        content: &gguf_file::Content,
        file: &mut std::fs::File,
        cfg: &LlamaConfig,
        path: &Path,
        device: &Device,
        requantize: bool,
    ) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(path.display(), e);
        let mut file = file;
        let mut read =
            |name: &str| -> Result<QTensor> { content.tensor(&mut file, name, device).map_err(fail) };
        let linear = |t: QTensor| Linear::from_qtensor(t, device, requantize).map_err(fail);
        let float = |t: QTensor| t.dequantize(device).and_then(|t| to_f32_vec(&t)).map_err(fail);

        let has_output = content.tensor_infos.contains_key("output.weight");
        let output_q = if has_output {
            Some(read("output.weight")?)
        } else {
            None
        };
        let norm = float(read("output_norm.weight")?)?;
        let layers = {
            let read = std::cell::RefCell::new(&mut read);
            build_layers(
                cfg.n_layers,
                |i, p| float((read.borrow_mut())(&format!("blk.{i}.{}.weight", p.gguf()))?),
                |i, p| linear((read.borrow_mut())(&format!("blk.{i}.{}.weight", p.gguf()))?),
                |i, p| {
                    let name = format!("blk.{i}.{}.bias", p.gguf());
                    if !content.tensor_infos.contains_key(&name) {
                        return Ok(None);
                    }
                    float((read.borrow_mut())(&name)?).map(Some)
                },
            )?
        };
        let embed_linear = linear(read("token_embd.weight")?)?;
        let embed = match &embed_linear {
            Linear::Quant(m) => Embedding::Quant(Arc::clone(m)),
            _ => Embedding::Dense {
                table: float(read("token_embd.weight")?)?,
                dim: cfg.hidden,
            },
        };
        let output = match output_q {
            Some(t) => linear(t)?,
            None => embed_linear,
        };
        Ok(Self {
            embed,
            layers,
            norm,
            output,
        })
    }

    /// Hugging Face names (`model.layers.N.self_attn.q_proj`, ...), from every
    /// `*.safetensors` file of `dir`, converted to f32.
    pub fn from_safetensors(dir: &Path, cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(dir.display(), e);
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for f in safetensors_files(dir)? {
            tensors.extend(candle_core::safetensors::load(&f, device).map_err(fail)?);
        }
        let take = |tensors: &mut HashMap<String, Tensor>, name: &str| -> Result<Tensor> {
            tensors
                .remove(name)
                .ok_or_else(|| ModelError::load(dir.display(), format!("missing tensor {name}")))?
                .to_dtype(DType::F32)
                .map_err(fail)
        };
        let embed = take(&mut tensors, "model.embed_tokens.weight")?;
        let norm = to_f32_vec(&take(&mut tensors, "model.norm.weight")?).map_err(fail)?;
        let output = match take(&mut tensors, "lm_head.weight") {
            Ok(t) => t,
            Err(_) => embed.clone(),
        };
        let layers = {
            let tensors = std::cell::RefCell::new(&mut tensors);
            let name = |i: usize, p: Part| format!("model.layers.{i}.{}.weight", p.hf());
            build_layers(
                cfg.n_layers,
                |i, p| to_f32_vec(&take(&mut tensors.borrow_mut(), &name(i, p))?).map_err(fail),
                |i, p| Linear::dense(take(&mut tensors.borrow_mut(), &name(i, p))?).map_err(fail),
                |i, p| {
                    let name = format!("model.layers.{i}.{}.bias", p.hf());
                    if !tensors.borrow().contains_key(&name) {
                        return Ok(None);
                    }
                    to_f32_vec(&take(&mut tensors.borrow_mut(), &name)?)
                        .map(Some)
                        .map_err(fail)
                },
            )?
        };
        Ok(Self {
            embed: Embedding::Dense {
                table: to_f32_vec(&embed).map_err(fail)?,
                dim: cfg.hidden,
            },
            layers,
            norm,
            output: Linear::dense(output).map_err(fail)?,
        })
    }
}

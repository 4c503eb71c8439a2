//! The generator's weights as candle tensors on the model's device: GGUF
//! matrices as `QMatMul` exactly as stored (candle has CPU, CUDA and Metal
//! kernels for every GGUF type), safetensors matrices dense.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Tensor};
use ragd_core::{ModelError, Result};

use super::super::weights::Part;
use super::super::LlamaConfig;

pub struct DeviceLayer {
    pub attn_norm: Tensor,
    pub q: QMatMul,
    pub k: QMatMul,
    pub v: QMatMul,
    /// Q, K and V biases (Qwen2 has them, Llama not).
    pub qkv_bias: Option<[Tensor; 3]>,
    pub o: QMatMul,
    pub ffn_norm: Tensor,
    pub gate: QMatMul,
    pub up: QMatMul,
    pub down: QMatMul,
}

pub struct DeviceWeights {
    /// `[vocab, hidden]`, f32.
    pub embed: Tensor,
    pub layers: Vec<DeviceLayer>,
    pub norm: Tensor,
    pub output: QMatMul,
}

/// Builds every layer from a loader of vectors (norms, biases; `None` when
/// absent) and one of matrices, by layer and part.
fn build_layers(
    n_layers: usize,
    mut vector: impl FnMut(usize, Part, &str) -> Result<Option<Tensor>>,
    mut matrix: impl FnMut(usize, Part) -> Result<QMatMul>,
) -> Result<Vec<DeviceLayer>> {
    (0..n_layers)
        .map(|i| {
            let mut norm = |p| {
                vector(i, p, "weight")?
                    .ok_or_else(|| ModelError::load(format!("layer {i}"), format!("no {p:?} weight")))
            };
            let (attn_norm, ffn_norm) = (norm(Part::AttnNorm)?, norm(Part::FfnNorm)?);
            let biases = [
                vector(i, Part::Q, "bias")?,
                vector(i, Part::K, "bias")?,
                vector(i, Part::V, "bias")?,
            ];
            let qkv_bias = match biases {
                [Some(q), Some(k), Some(v)] => Some([q, k, v]),
                [None, None, None] => None,
                _ => {
                    return Err(ModelError::load(
                        format!("layer {i}"),
                        "biases on some of Q, K and V but not all",
                    ))
                }
            };
            Ok(DeviceLayer {
                attn_norm,
                q: matrix(i, Part::Q)?,
                k: matrix(i, Part::K)?,
                v: matrix(i, Part::V)?,
                qkv_bias,
                o: matrix(i, Part::O)?,
                ffn_norm,
                gate: matrix(i, Part::Gate)?,
                up: matrix(i, Part::Up)?,
                down: matrix(i, Part::Down)?,
            })
        })
        .collect()
}

impl DeviceWeights {
    /// GGUF names (llama.cpp's); the output matrix is the embedding's when
    /// the file has none (tied).
    pub fn from_gguf(
        content: &gguf_file::Content,
        file: &mut std::fs::File,
        cfg: &LlamaConfig,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(path.display(), e);
        let read = std::cell::RefCell::new(|name: &str| content.tensor(file, name, device).map_err(fail));
        let float = |name: &str| -> Result<Tensor> {
            (read.borrow_mut())(name)?
                .dequantize(device)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(fail)
        };
        let layers = build_layers(
            cfg.n_layers,
            |i, p, kind| {
                let name = format!("blk.{i}.{}.{kind}", p.gguf());
                match content.tensor_infos.contains_key(&name) {
                    true => float(&name).map(Some),
                    false => Ok(None),
                }
            },
            |i, p| {
                let t = (read.borrow_mut())(&format!("blk.{i}.{}.weight", p.gguf()))?;
                QMatMul::from_qtensor(t).map_err(fail)
            },
        )?;
        let embed_q = (read.borrow_mut())("token_embd.weight")?;
        let embed = embed_q
            .dequantize(device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(fail)?;
        let output = match content.tensor_infos.contains_key("output.weight") {
            true => (read.borrow_mut())("output.weight")?,
            false => embed_q,
        };
        Ok(Self {
            embed,
            layers,
            norm: float("output_norm.weight")?,
            output: QMatMul::from_qtensor(output).map_err(fail)?,
        })
    }

    /// Hugging Face names, from every `*.safetensors` file of `dir`, in f32.
    pub fn from_safetensors(dir: &Path, cfg: &LlamaConfig, device: &Device) -> Result<Self> {
        let fail = |e: candle_core::Error| ModelError::load(dir.display(), e);
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for f in super::super::weights::safetensors_files(dir)? {
            tensors.extend(candle_core::safetensors::load(&f, device).map_err(fail)?);
        }
        let tensors = std::cell::RefCell::new(tensors);
        let take = |name: &str| -> Result<Option<Tensor>> {
            tensors
                .borrow_mut()
                .remove(name)
                .map(|t| t.to_dtype(DType::F32).map_err(fail))
                .transpose()
        };
        let need = |name: &str| {
            take(name)?.ok_or_else(|| ModelError::load(dir.display(), format!("missing tensor {name}")))
        };
        let layers = build_layers(
            cfg.n_layers,
            |i, p, kind| take(&format!("model.layers.{i}.{}.{kind}", p.hf())),
            |i, p| {
                Ok(QMatMul::Tensor(need(&format!(
                    "model.layers.{i}.{}.weight",
                    p.hf()
                ))?))
            },
        )?;
        let embed = need("model.embed_tokens.weight")?;
        let output = take("lm_head.weight")?.unwrap_or_else(|| embed.clone());
        Ok(Self {
            embed,
            layers,
            norm: need("model.norm.weight")?,
            output: QMatMul::Tensor(output),
        })
    }
}

//! A weight matrix the generator multiplies a batch of rows by: ragd's
//! batched quantized kernel where it applies (CPU; Q8_0, Q4_1, Q5_0, Q4_K,
//! Q5_K, Q6_K as stored), candle's `QMatMul` for everything else (other
//! GGUF types, dense safetensors weights, GPU devices).

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use ragd_kernels::{QMatrix, QuantFormat};

pub enum Linear {
    Quant(Arc<QMatrix>),
    Candle {
        mm: QMatMul,
        rows: usize,
        device: Device,
    },
    /// Matrices with the same input that could not be fused into one:
    /// their outputs are concatenated per row.
    Stack(Vec<Linear>),
}

/// The kernel format of a GGUF type, if ragd has one.
fn kernel_format(dtype: GgmlDType) -> Option<QuantFormat> {
    match dtype {
        GgmlDType::Q8_0 => Some(QuantFormat::Q8_0),
        GgmlDType::Q4_1 => Some(QuantFormat::Q4_1),
        GgmlDType::Q5_0 => Some(QuantFormat::Q5_0),
        GgmlDType::Q4K => Some(QuantFormat::Q4K),
        GgmlDType::Q5K => Some(QuantFormat::Q5K),
        GgmlDType::Q6K => Some(QuantFormat::Q6K),
        _ => None,
    }
}

fn is_float(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

impl Linear {
    /// A GGUF matrix `[rows, cols]`. On the CPU, the types of
    /// [`kernel_format`] run ragd's kernel as stored (every value and scale
    /// kept, whatever `requantize` says); with `requantize`, other quantized
    /// types (Q4_0, Q5_1, Q2_K, Q3_K, ...) are converted to Q8_0 to run it
    /// too (near-lossless, not bit-exact), else they run candle's `QMatMul`.
    pub fn from_qtensor(t: QTensor, device: &Device, requantize: bool) -> candle_core::Result<Self> {
        let (rows, cols) = t.shape().dims2()?;
        let mut t = t;
        if device.is_cpu() && cols.is_multiple_of(ragd_kernels::QUANT_BLOCK) {
            if kernel_format(t.dtype()).is_none() && requantize && !is_float(t.dtype()) {
                t = QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?;
            }
            if let Some(format) = kernel_format(t.dtype()).filter(|f| cols.is_multiple_of(f.block_len())) {
                let m =
                    QMatrix::from_ggml(format, rows, cols, &t.data()?).map_err(candle_core::Error::wrap)?;
                return Ok(Self::Quant(Arc::new(m)));
            }
        }
        Ok(Self::Candle {
            mm: QMatMul::from_qtensor(t)?,
            rows,
            device: device.clone(),
        })
    }

    /// A dense `[rows, cols]` matrix (f32).
    pub fn dense(w: Tensor) -> candle_core::Result<Self> {
        let (rows, _) = w.dims2()?;
        Ok(Self::Candle {
            device: w.device().clone(),
            mm: QMatMul::Tensor(w),
            rows,
        })
    }

    /// One matrix for several with the same input (Q, K and V; gate and up).
    pub fn stack(parts: Vec<Linear>) -> Self {
        let quant: Vec<&QMatrix> = parts
            .iter()
            .filter_map(|p| match p {
                Self::Quant(m) => Some(m.as_ref()),
                _ => None,
            })
            .collect();
        if quant.len() == parts.len() {
            let owned: Vec<QMatrix> = quant.into_iter().cloned().collect();
            if let Ok(m) = QMatrix::concat_rows(&owned) {
                return Self::Quant(Arc::new(m));
            }
        }
        Self::Stack(parts)
    }

    /// Output values per row.
    pub fn rows(&self) -> usize {
        match self {
            Self::Quant(m) => m.rows(),
            Self::Candle { rows, .. } => *rows,
            Self::Stack(parts) => parts.iter().map(Self::rows).sum(),
        }
    }

    /// `x` (`[n, cols]`) times the transposed matrix: `[n, rows]`.
    pub fn forward(&self, x: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        match self {
            Self::Quant(m) => {
                let mut out = vec![0f32; n * m.rows()];
                m.matmul(x, n, &mut out);
                Ok(out)
            }
            Self::Candle { mm, device, .. } => {
                let cols = x.len() / n.max(1);
                let t = Tensor::from_slice(x, (n, cols), device)?;
                mm.forward(&t)?.flatten_all()?.to_vec1()
            }
            Self::Stack(parts) => {
                let outs = parts
                    .iter()
                    .map(|p| p.forward(x, n))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let mut out = Vec::with_capacity(n * self.rows());
                for i in 0..n {
                    for (p, o) in parts.iter().zip(&outs) {
                        out.extend_from_slice(&o[i * p.rows()..(i + 1) * p.rows()]);
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Token embeddings: rows of a quantized matrix (dequantized on lookup,
/// shared with a tied output layer), or a dense f32 table.
pub enum Embedding {
    Quant(Arc<QMatrix>),
    Dense { table: Vec<f32>, dim: usize },
}

impl Embedding {
    pub fn dim(&self) -> usize {
        match self {
            Self::Quant(m) => m.cols(),
            Self::Dense { dim, .. } => *dim,
        }
    }

    /// `[ids.len(), dim]` rows; ids were checked against the vocabulary.
    pub fn lookup(&self, ids: &[u32]) -> Vec<f32> {
        let dim = self.dim();
        let mut out = vec![0f32; ids.len() * dim];
        for (&id, row) in ids.iter().zip(out.chunks_exact_mut(dim)) {
            let id = id as usize;
            match self {
                Self::Quant(m) => m.dequantize_row(id, row),
                Self::Dense { table, .. } => row.copy_from_slice(&table[id * dim..(id + 1) * dim]),
            }
        }
        out
    }
}

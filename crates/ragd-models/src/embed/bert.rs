//! BERT sentence embedder (all-MiniLM-L6-v2 and other sentence-transformers
//! BERT checkpoints): BERT, then mean pooling and L2 normalisation.
//!
//! On the CPU it runs [`PackedBert`] (no padding, flash attention per
//! sequence). On other devices it runs candle-transformers' `BertModel` on
//! padded sub-batches; the batch is sorted by length first so that short
//! queries are not padded to the longest passage.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use ragd_core::{Embedder, Framing, ModelError, ModelInfo, ModelKind, Overflow, Result, TokenBatch};

use super::bert_packed::PackedBert;
use super::pooling::mean_pool_normalize;
use crate::error::inference;
use crate::hf_tokenizer::HfTokenizer;

/// Most sequences in one padded forward pass.
const SUB_BATCH_SEQS: usize = 32;
/// Most tokens in one packed forward pass (bounds the activations' memory).
const SUB_BATCH_TOKENS: usize = 2048;

enum Backend {
    Packed(PackedBert),
    Padded(BertModel),
}

pub struct BertEmbedder {
    backend: Backend,
    info: ModelInfo,
    dim: usize,
    pad_id: u32,
    device: Device,
}

/// `max_seq_length` of sentence-transformers' `sentence_bert_config.json`.
#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: usize,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::load(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))
}

/// What a sentence-transformers embedder folder shows: its framing
/// (`[cls] text [sep]`, truncated) and window, `sentence_bert_config.json`'s
/// `max_seq_length` when present, within the model's `position_limit`.
pub(crate) fn sentence_embedder_info(
    dir: &Path,
    id: &str,
    tokenizer: &HfTokenizer,
    [cls, sep]: [&str; 2],
    position_limit: usize,
) -> Result<ModelInfo> {
    let max_len = match dir.join("sentence_bert_config.json") {
        p if p.is_file() => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
        _ => position_limit,
    }
    .min(position_limit);
    let special = |t: &str| {
        tokenizer
            .token_id(t)
            .ok_or_else(|| ModelError::load(dir.display(), format!("tokenizer has no {t} token")))
    };
    Ok(ModelInfo {
        id: id.to_string(),
        kind: ModelKind::Embedder,
        framing: Framing {
            prefix: vec![special(cls)?],
            suffix: vec![special(sep)?],
            max_len,
            overflow: Overflow::Truncate,
        },
    })
}

impl BertEmbedder {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from
    /// `dir`. The window is `sentence_bert_config.json`'s `max_seq_length`
    /// when present, else the model's position limit.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        Self::load_with(dir, id, device, device.is_cpu())
    }

    /// [`Self::load`] with candle-transformers' `BertModel` on padded
    /// sub-batches whatever the device: the path GPUs take, here also on
    /// the CPU (for tests that check it there).
    pub fn load_padded(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<HfTokenizer>)> {
        Self::load_with(dir, id, device, false)
    }

    fn load_with(dir: &Path, id: &str, device: &Device, packed: bool) -> Result<(Self, Arc<HfTokenizer>)> {
        let config: Config = read_json(&dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let backend = if packed {
            PackedBert::load(vb, &config).map(Backend::Packed)
        } else {
            BertModel::load(vb, &config).map(Backend::Padded)
        }
        .map_err(|e| ModelError::load(weights.display(), e))?;
        let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let info = sentence_embedder_info(
            dir,
            id,
            &tokenizer,
            ["[CLS]", "[SEP]"],
            config.max_position_embeddings,
        )?;
        let backend_name = match backend {
            Backend::Packed(_) => "packed-cpu",
            Backend::Padded(_) => "candle-bert",
        };
        crate::device::log_model_loaded(id, device, DType::F32, backend_name);
        let embedder = Self {
            backend,
            info,
            dim: config.hidden_size,
            pad_id: config.pad_token_id as u32,
            device: device.clone(),
        };
        Ok((embedder, Arc::new(tokenizer)))
    }

    /// One padded forward over sequences of similar length.
    fn forward_padded(&self, model: &BertModel, seqs: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (ids, mask) = crate::padding::pad(seqs, self.pad_id, None, &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        mean_pool_normalize(&hidden, &mask)?.to_vec2()
    }
}

impl BertEmbedder {
    /// End of the sub-batch starting at `order[start]`: a token budget when
    /// packed, a sequence count when padded. Always at least one sequence.
    fn sub_batch_end(&self, batch: &TokenBatch, order: &[usize], start: usize) -> usize {
        match self.backend {
            Backend::Padded(_) => (start + SUB_BATCH_SEQS).min(order.len()),
            Backend::Packed(_) => packed_sub_batch_end(batch, order, start),
        }
    }
}

/// End of the packed sub-batch starting at `order[start]`: within
/// [`SUB_BATCH_TOKENS`], always at least one sequence.
pub(crate) fn packed_sub_batch_end(batch: &TokenBatch, order: &[usize], start: usize) -> usize {
    let mut tokens = 0;
    let mut end = start;
    while end < order.len() && (end == start || tokens + batch.seq(order[end]).len() <= SUB_BATCH_TOKENS) {
        tokens += batch.seq(order[end]).len();
        end += 1;
    }
    end
}

/// Runs `run` on sub-batches of `batch` sorted by length (equal lengths
/// share attention matmuls when packed; short sequences are not padded to
/// long ones), each from `order[start]` to `end(order, start)`, and
/// returns the outputs in the batch's order.
pub(crate) fn by_length<T: Default + Clone>(
    batch: &TokenBatch,
    end: impl Fn(&[usize], usize) -> usize,
    mut run: impl FnMut(&[&[u32]]) -> candle_core::Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch.seq(i).len());
    let mut out = vec![T::default(); batch.len()];
    let mut start = 0;
    while start < order.len() {
        let end = end(&order, start);
        let chunk = &order[start..end];
        let seqs: Vec<&[u32]> = chunk.iter().map(|&i| batch.seq(i)).collect();
        let _span = tracing::trace_span!("bert_forward", seqs = seqs.len()).entered();
        for (&i, v) in chunk.iter().zip(run(&seqs).map_err(inference)?) {
            out[i] = v;
        }
        start = end;
    }
    Ok(out)
}

impl Embedder for BertEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        crate::padding::check_window(batch, self.info.framing.max_len)?;
        let end = |order: &[usize], start| self.sub_batch_end(batch, order, start);
        by_length(batch, end, |seqs| match &self.backend {
            Backend::Packed(m) => m.embed(seqs).and_then(|t| t.to_vec2()),
            Backend::Padded(m) => self.forward_padded(m, seqs),
        })
    }
}

//! NanoGuard (PyPI `metatronnanoguard`), a 4-layer prompt-injection
//! classifier, behind [`Classifier`].
//!
//! Like the original scanner, every sequence is padded to the full window
//! (512) with the PAD token and attended over in full: the model has no
//! attention mask, so padding to anything else would change the scores.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ragd_core::{
    Classifier, Framing, ModelError, ModelInfo, ModelKind, Overflow, Result, TextTokenizer, TokenBatch,
};

use super::nanoguard_checkpoint::{Checkpoint, NanoGuardConfig};
use super::nanoguard_model::NanoGuardModel;
use super::tiktoken::TiktokenTokenizer;
use crate::error::inference;

/// Special token prepended to every text.
pub const BOS_TOKEN: &str = "<|reserved_0|>";
/// Special token the window is filled up with.
pub const PAD_TOKEN: &str = "<|reserved_1|>";
/// Sequences per forward pass (each is a full window). On 2 CPU cores one
/// at a time measured fastest (135 ms a window; 8 at a time: 190 ms a window,
/// the activations then spill out of the caches); accelerators want more.
const CPU_SUB_BATCH_SEQS: usize = 1;
const ACCEL_SUB_BATCH_SEQS: usize = 16;

pub struct NanoGuard {
    model: NanoGuardModel,
    info: ModelInfo,
    labels: Vec<String>,
    pad_id: u32,
    device: Device,
    per_pass: usize,
}

impl NanoGuard {
    /// Loads `model.pt` and `tokenizer.pkl` from `dir`.
    pub fn load(dir: &Path, id: &str, device: &Device) -> Result<(Self, Arc<TiktokenTokenizer>)> {
        let tokenizer = TiktokenTokenizer::from_pickle(&dir.join("tokenizer.pkl"))?;
        let weights = dir.join("model.pt");
        let checkpoint = Checkpoint::read(&weights)?;
        let special = |name: &str| {
            tokenizer
                .special_token(name)
                .ok_or_else(|| ModelError::load(dir.display(), format!("tokenizer has no {name} token")))
        };
        let (bos, pad) = (special(BOS_TOKEN)?, special(PAD_TOKEN)?);
        if tokenizer.vocab_size() > checkpoint.config.vocab_size {
            return Err(ModelError::load(
                dir.display(),
                format!(
                    "tokenizer has {} ids, the model {}",
                    tokenizer.vocab_size(),
                    checkpoint.config.vocab_size
                ),
            ));
        }
        let model = NanoGuardModel::new(checkpoint.config, &checkpoint.tensors, device)
            .map_err(|e| ModelError::load(weights.display(), e))?;
        crate::device::log_model_loaded(id, device, DType::F32, "candle-nanoguard");
        let guard = Self::with_model(model, id, bos, pad, device);
        Ok((guard, Arc::new(tokenizer)))
    }

    fn with_model(model: NanoGuardModel, id: &str, bos: u32, pad_id: u32, device: &Device) -> Self {
        let c = model.config();
        let labels = if c.num_classes == 2 {
            vec!["safe".to_string(), "injection".to_string()]
        } else {
            (0..c.num_classes).map(|i| format!("class_{i}")).collect()
        };
        let framing = Framing {
            prefix: vec![bos],
            suffix: vec![],
            max_len: c.sequence_len,
            overflow: Overflow::Windows,
        };
        Self {
            info: ModelInfo {
                id: id.to_string(),
                kind: ModelKind::Guard,
                framing,
            },
            labels,
            pad_id,
            per_pass: if device.is_cpu() {
                CPU_SUB_BATCH_SEQS
            } else {
                ACCEL_SUB_BATCH_SEQS
            },
            device: device.clone(),
            model,
        }
    }

    pub fn config(&self) -> &NanoGuardConfig {
        self.model.config()
    }

    /// How many windows one forward pass runs (at least 1); the default
    /// depends on the device.
    pub fn set_sequences_per_pass(&mut self, n: usize) {
        self.per_pass = n.max(1);
    }

    /// The pooled features the classification head reads (`n_embd` per
    /// sequence), for heads trained on top of NanoGuard. Each sequence is a
    /// framed window, as for [`Classifier::classify`].
    pub fn pooled_features(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        self.per_window(batch, |model, ids, mask| model.pooled(ids, mask))
    }

    /// `f` over the windows of `batch`, `per_pass` at a time, each padded
    /// to the full window (`f` gets ids and the F32 pooling mask).
    fn per_window(
        &self,
        batch: &TokenBatch,
        f: impl Fn(&NanoGuardModel, &Tensor, &Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Vec<Vec<f32>>> {
        crate::padding::check_window(batch, self.info.framing.max_len)?;
        let vocab = self.model.vocab_size();
        if let Some(&id) = batch.input_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::InvalidInput(format!(
                "token id {id} is not below {vocab}"
            )));
        }
        let width = self.model.config().sequence_len;
        let seqs: Vec<&[u32]> = batch.seqs().collect();
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(self.per_pass) {
            let _span = tracing::trace_span!("nanoguard_forward", seqs = chunk.len()).entered();
            let rows = crate::padding::pad(chunk, self.pad_id, Some(width), &self.device)
                .and_then(|(ids, mask)| f(&self.model, &ids, &mask.to_dtype(DType::F32)?))
                .and_then(|t| t.to_vec2());
            out.extend(rows.map_err(inference)?);
        }
        Ok(out)
    }
}

impl Classifier for NanoGuard {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn classify(&mut self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        self.per_window(batch, |model, ids, mask| model.forward(ids, mask))
    }
}

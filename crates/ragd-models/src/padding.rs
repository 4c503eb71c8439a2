//! Helpers shared by the models that run padded batches.

use candle_core::{Device, Tensor};
use ragd_core::{ModelError, TokenBatch};

/// Token ids of `seqs` padded with `pad_id` to `width` (default: the longest
/// sequence), and the matching 0/1 attention mask (u32), both `[n, width]`.
pub fn pad(
    seqs: &[&[u32]],
    pad_id: u32,
    width: Option<usize>,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let width = width.unwrap_or(longest).max(longest);
    let mut ids = Vec::with_capacity(seqs.len() * width);
    let mut mask = Vec::with_capacity(seqs.len() * width);
    for s in seqs {
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(pad_id, width - s.len()));
        mask.extend(std::iter::repeat_n(1u32, s.len()));
        mask.extend(std::iter::repeat_n(0u32, width - s.len()));
    }
    let shape = (seqs.len(), width);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

/// An error for the first sequence longer than the model's window.
pub fn check_window(batch: &TokenBatch, max: usize) -> Result<(), ModelError> {
    match batch.seqs().find(|s| s.len() > max) {
        Some(s) => Err(ModelError::InvalidInput(format!(
            "sequence of {} tokens exceeds the window of {max}",
            s.len()
        ))),
        None => Ok(()),
    }
}

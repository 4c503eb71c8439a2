//! The trait the generation scheduler drives. A generator owns its paged KV
//! cache (fixed-size blocks); the scheduler owns which blocks each sequence
//! holds and passes the block table with every step.

use crate::{ModelInfo, Result};

/// One sequence's share of a generation step: a chunk of its prompt
/// (prefill) or its last sampled token (decode).
#[derive(Debug, Clone, Copy)]
pub struct SeqChunk<'a> {
    /// Tokens fed this step; never empty.
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`. Positions `0..start_pos` are already in the
    /// KV cache, written by earlier steps through the same block table.
    pub start_pos: usize,
    /// The sequence's KV blocks, in order: position `p` lives in block
    /// `blocks[p / block_size]`, slot `p % block_size`. Covers at least
    /// `start_pos + tokens.len()` positions.
    pub blocks: &'a [u32],
    /// Whether the logits after the last token of `tokens` are wanted
    /// (decode, or the last chunk of a prompt).
    pub want_logits: bool,
}

/// Shape of the paged KV cache a generator allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    /// Token slots per block.
    pub block_size: usize,
    /// Blocks in the cache.
    pub num_blocks: usize,
    /// Bytes one block takes over all layers (K and V).
    pub bytes_per_block: usize,
}

/// A causal language model run one ragged batch at a time.
pub trait Generator: Send {
    fn info(&self) -> &ModelInfo;
    /// Logits per position.
    fn vocab_size(&self) -> usize;
    /// Most positions a sequence may reach (prompt + generated).
    fn context_len(&self) -> usize;
    fn kv_layout(&self) -> KvLayout;
    /// Runs one step over every chunk and returns one row of logits
    /// (`vocab_size` long) per chunk with `want_logits`, in chunk order.
    /// Each chunk's result is independent of the other chunks in the batch.
    fn step(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>>;

    /// [`Generator::step`] where, for each chunk with `want_logits` whose
    /// flag in `greedy` is set (one flag per such chunk, in order), only the
    /// most likely token is wanted. A device backend picks it on the device
    /// and copies one id back instead of a vocabulary-long row. The default
    /// runs `step` and picks it on the host.
    fn step_greedy(&mut self, chunks: &[SeqChunk<'_>], greedy: &[bool]) -> Result<Vec<StepOutput>> {
        let rows = self.step(chunks)?;
        Ok(rows
            .into_iter()
            .zip(greedy.iter().chain(std::iter::repeat(&false)))
            .map(|(row, &g)| match g {
                true => StepOutput::Token(argmax(&row)),
                false => StepOutput::Logits(row),
            })
            .collect())
    }
}

/// What a step gives for one chunk that wanted logits.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutput {
    /// The whole row (`vocab_size` values).
    Logits(Vec<f32>),
    /// Only the most likely token (greedy decoding).
    Token(u32),
}

/// Index of the largest logit (the first one on ties; NaN is never chosen
/// unless every logit is NaN or -inf, when it is 0).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_x = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        if x > best_x {
            best = i;
            best_x = x;
        }
    }
    best as u32
}

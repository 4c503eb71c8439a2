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
}

//! Causal attention of ragged query tokens over the paged KV cache (CPU):
//! the public API, the split of a batch into tasks, and the choice between
//! the portable kernel (`portable.rs`) and the AVX2 + FMA + F16C one
//! (`x86.rs`).

use std::ops::Range;

use rayon::prelude::*;

use crate::kv_store::{KvStore, KvView};

mod portable;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Shape of one layer's K (or V) cache: `[num_blocks, block_size, n_kv_heads, head_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub num_blocks: usize,
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// Values in one layer's K (or V) array.
    pub fn len(&self) -> usize {
        self.num_blocks * self.block_size * self.row_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per token slot: every KV head of one position.
    pub fn row_len(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Offset of position `pos`'s row in a sequence with block table `blocks`.
    pub(crate) fn row_offset(&self, blocks: &[u32], pos: usize) -> usize {
        let block = blocks[pos / self.block_size] as usize;
        (block * self.block_size + pos % self.block_size) * self.row_len()
    }
}

/// One query token: its sequence's block table and its position. It attends
/// to positions `0..=pos` of that sequence.
#[derive(Debug, Clone, Copy)]
pub struct QueryToken<'a> {
    pub blocks: &'a [u32],
    pub pos: usize,
}

/// Stores each token's new K and V rows (`[T, n_kv_heads * head_dim]`) in its
/// slot of the cache.
pub fn write_kv(
    k_cache: &mut KvStore,
    v_cache: &mut KvStore,
    shape: KvShape,
    k: &[f32],
    v: &[f32],
    tokens: &[QueryToken<'_>],
) {
    let row = shape.row_len();
    for (t, tok) in tokens.iter().enumerate() {
        let at = shape.row_offset(tok.blocks, tok.pos);
        k_cache.write(at, &k[t * row..(t + 1) * row]);
        v_cache.write(at, &v[t * row..(t + 1) * row]);
    }
}

/// Most query tokens one attention task takes. Consecutive tokens of one
/// sequence (a prefill chunk) share a task, so each cache row is read and
/// widened once for all of them instead of once per token.
const TILE_TOKENS: usize = 8;

/// `out[t, h] = softmax(q[t, h] · K[0..=pos_t] * scale) · V[0..=pos_t]`, with
/// K/V read through token `t`'s block table and query head `h` using KV head
/// `h / (n_heads / n_kv_heads)` (grouped-query attention).
///
/// `q` and `out` are `[T, n_heads, head_dim]`. Work is split over (tile,
/// KV head) pairs, a tile being up to eight (`TILE_TOKENS`) consecutive positions
/// of one sequence. Each query row's arithmetic is the same whatever tile
/// it lands in, so a token gets the same output, to the bit, whatever else
/// is in the batch.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    q: &[f32],
    n_heads: usize,
    k_cache: &KvStore,
    v_cache: &KvStore,
    shape: KvShape,
    tokens: &[QueryToken<'_>],
    scale: f32,
    out: &mut [f32],
) {
    paged_attention_over(
        q,
        n_heads,
        k_cache.view(),
        v_cache.view(),
        shape,
        tokens,
        scale,
        out,
    );
}

/// [`paged_attention`] over borrowed cache arrays.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention_over(
    q: &[f32],
    n_heads: usize,
    k_cache: KvView<'_>,
    v_cache: KvView<'_>,
    shape: KvShape,
    tokens: &[QueryToken<'_>],
    scale: f32,
    out: &mut [f32],
) {
    let (hd, n_kv) = (shape.head_dim, shape.n_kv_heads);
    let group = n_heads / n_kv;
    assert_eq!(group * n_kv, n_heads, "heads must be a multiple of KV heads");
    assert_eq!(q.len(), tokens.len() * n_heads * hd);
    assert_eq!(out.len(), q.len());
    // The output of one (token, KV head) is the `group` query heads sharing
    // that KV head; each task takes those of its tile's tokens.
    let mut outs: Vec<Option<&mut [f32]>> = out.chunks_mut(group * hd).map(Some).collect();
    let mut tasks = Vec::new();
    for tile in tiles(tokens) {
        for kv_head in 0..n_kv {
            let tile_outs: Vec<&mut [f32]> = tile
                .clone()
                .map(|t| outs[t * n_kv + kv_head].take().expect("one task per output"))
                .collect();
            tasks.push((tile.clone(), kv_head, tile_outs));
        }
    }
    let simd = has_simd(hd);
    tasks.into_par_iter().for_each_init(
        Scratch::default,
        |scratch: &mut Scratch, (tile, kv_head, mut outs)| {
            let job = HeadGroup {
                q,
                n_heads,
                first_token: tile.start,
                tokens: &tokens[tile],
                k_cache,
                v_cache,
                shape,
                kv_head,
                group,
                scale,
            };
            job.run_dispatch(simd, scratch, &mut outs);
        },
    );
}

/// Splits the batch into runs of consecutive positions of one sequence, at
/// most [`TILE_TOKENS`] long.
fn tiles(tokens: &[QueryToken<'_>]) -> Vec<Range<usize>> {
    let mut tiles = Vec::new();
    let mut start = 0;
    for t in 1..=tokens.len() {
        let continues = t < tokens.len()
            && t - start < TILE_TOKENS
            && tokens[t].pos == tokens[t - 1].pos + 1
            && tokens[t].blocks == tokens[t - 1].blocks;
        if !continues {
            tiles.push(start..t);
            start = t;
        }
    }
    tiles
}

/// Per-task buffers, reused across a worker's tasks: the scores, the cache
/// row offsets and widened cache rows (SIMD path), and a widened row (f16
/// cache, portable path).
#[derive(Default)]
pub(crate) struct Scratch {
    pub scores: Vec<f32>,
    pub offsets: Vec<usize>,
    pub widened: Vec<f32>,
    row: Vec<f32>,
}

/// Whether the AVX2 + FMA + F16C kernel (`x86.rs`) can run here. The
/// choice is the same for every call of a process, so a token's result
/// never depends on its batch.
fn has_simd(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86::usable(head_dim)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// The query heads sharing one KV head, for a tile of consecutive positions
/// of one sequence.
pub(crate) struct HeadGroup<'a> {
    /// The whole batch's queries, `[T, n_heads, head_dim]`.
    pub q: &'a [f32],
    pub n_heads: usize,
    /// The batch index of the tile's first token.
    pub first_token: usize,
    /// The tile: one block table, increasing positions.
    pub tokens: &'a [QueryToken<'a>],
    pub k_cache: KvView<'a>,
    pub v_cache: KvView<'a>,
    pub shape: KvShape,
    pub kv_head: usize,
    pub group: usize,
    pub scale: f32,
}

impl HeadGroup<'_> {
    /// Query head `h` of the group, for the tile's token `i`.
    pub fn query(&self, i: usize, h: usize) -> &[f32] {
        let hd = self.shape.head_dim;
        let head = (self.first_token + i) * self.n_heads + self.kv_head * self.group + h;
        &self.q[head * hd..(head + 1) * hd]
    }

    /// Positions the tile's last token attends to (all the others attend to
    /// a prefix of them).
    pub fn positions(&self) -> usize {
        self.tokens.last().map_or(0, |t| t.pos + 1)
    }

    /// `outs[i]` receives the group's output for the tile's token `i`.
    fn run_dispatch(&self, simd: bool, scratch: &mut Scratch, outs: &mut [&mut [f32]]) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` comes from `has_simd`, which detected AVX2,
            // FMA and F16C and checked the head size.
            #[allow(unsafe_code)]
            unsafe {
                return x86::run(self, scratch, outs);
            }
        }
        let _ = simd;
        portable::run(self, scratch, outs);
    }
}

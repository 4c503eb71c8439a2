//! Causal attention of ragged query tokens over the paged KV cache (CPU).

use std::ops::Range;

use rayon::prelude::*;

use crate::kv_store::{KvStore, KvView};
use crate::vector::dot_portable as dot;

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
/// KV head) pairs, a tile being up to [`TILE_TOKENS`] consecutive positions
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
    let (k_cache, v_cache) = (k_cache.view(), v_cache.view());
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

/// Whether the AVX2 + FMA + F16C kernel (`attention_x86.rs`) can run here. The
/// choice is the same for every call of a process, so a token's result
/// never depends on its batch.
fn has_simd(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::attention_x86::usable(head_dim)
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
                return crate::attention_x86::run(self, scratch, outs);
            }
        }
        let _ = simd;
        self.run(scratch, outs);
    }

    /// The portable version: one token at a time.
    fn run(&self, scratch: &mut Scratch, outs: &mut [&mut [f32]]) {
        let (shape, hd, group) = (self.shape, self.shape.head_dim, self.group);
        let g = self.kv_head;
        let Scratch { scores, row, .. } = scratch;
        for ((i, tok), out) in self.tokens.iter().enumerate().zip(outs.iter_mut()) {
            let n = tok.pos + 1;
            scores.clear();
            scores.resize(group * n, 0.0);
            // Scores, head-major: scores[h * n + p].
            for p in 0..n {
                let at = shape.row_offset(tok.blocks, p) + g * hd;
                let k = self.k_cache.row(at, hd, row);
                for h in 0..group {
                    scores[h * n + p] = dot(self.query(i, h), k) * self.scale;
                }
            }
            for h in 0..group {
                softmax_in_place(&mut scores[h * n..(h + 1) * n]);
            }
            out.fill(0.0);
            for p in 0..n {
                let at = shape.row_offset(tok.blocks, p) + g * hd;
                let v = self.v_cache.row(at, hd, row);
                for h in 0..group {
                    axpy(scores[h * n + p], v, &mut out[h * hd..(h + 1) * hd]);
                }
            }
        }
    }
}

/// `y += a * x`.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn softmax_in_place(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in xs.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    xs.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KvDtype;

    /// Plain attention over contiguous K/V, the reference.
    fn naive(q: &[f32], k: &[Vec<f32>], v: &[Vec<f32>], n_heads: usize, n_kv: usize, hd: usize) -> Vec<f32> {
        let group = n_heads / n_kv;
        let mut out = vec![0f32; n_heads * hd];
        for h in 0..n_heads {
            let g = h / group;
            let qh = &q[h * hd..(h + 1) * hd];
            let s: Vec<f32> = k
                .iter()
                .map(|kr| {
                    qh.iter()
                        .zip(&kr[g * hd..(g + 1) * hd])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * 0.5
                })
                .collect();
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f32 = e.iter().sum();
            for (p, vr) in v.iter().enumerate() {
                for d in 0..hd {
                    out[h * hd + d] += e[p] / z * vr[g * hd + d];
                }
            }
        }
        out
    }

    fn val(seed: usize) -> f32 {
        ((seed as f32 * 12.9898).sin() * 43758.547).fract()
    }

    #[test]
    fn matches_contiguous_attention_through_scattered_blocks() {
        let (n_heads, n_kv, hd, bs) = (6, 2, 16, 4);
        let shape = KvShape {
            num_blocks: 16,
            block_size: bs,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        let row = shape.row_len();
        // Unwritten slots hold NaN: reading one would show in the output.
        let mut kc = KvStore::F32(vec![f32::NAN; shape.len()]);
        let mut vc = KvStore::F32(vec![f32::NAN; shape.len()]);
        // Two sequences with interleaved, out-of-order blocks.
        let tables: [&[u32]; 2] = [&[7, 2, 11], &[0, 9, 3, 5]];
        let lens = [10usize, 14];
        let mut contiguous = vec![(Vec::new(), Vec::new()); 2];
        for s in 0..2 {
            for p in 0..lens[s] {
                let k: Vec<f32> = (0..row).map(|j| val(s * 1000 + p * 50 + j)).collect();
                let v: Vec<f32> = (0..row).map(|j| val(s * 1000 + p * 50 + j + 7)).collect();
                let tok = [QueryToken {
                    blocks: tables[s],
                    pos: p,
                }];
                write_kv(&mut kc, &mut vc, shape, &k, &v, &tok);
                contiguous[s].0.push(k);
                contiguous[s].1.push(v);
            }
        }
        // A ragged batch: last token of seq 0, three tokens of seq 1.
        let tokens = [
            QueryToken {
                blocks: tables[0],
                pos: 9,
            },
            QueryToken {
                blocks: tables[1],
                pos: 5,
            },
            QueryToken {
                blocks: tables[1],
                pos: 6,
            },
            QueryToken {
                blocks: tables[1],
                pos: 13,
            },
        ];
        let q: Vec<f32> = (0..tokens.len() * n_heads * hd).map(|j| val(j + 99)).collect();
        let mut out = vec![0f32; q.len()];
        paged_attention(&q, n_heads, &kc, &vc, shape, &tokens, 0.5, &mut out);
        for (t, tok) in tokens.iter().enumerate() {
            let s = if t == 0 { 0 } else { 1 };
            let n = tok.pos + 1;
            let qt = &q[t * n_heads * hd..(t + 1) * n_heads * hd];
            let want = naive(
                qt,
                &contiguous[s].0[..n],
                &contiguous[s].1[..n],
                n_heads,
                n_kv,
                hd,
            );
            for (a, b) in out[t * n_heads * hd..(t + 1) * n_heads * hd].iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "token {t}: {a} vs {b}");
            }
        }
        // Batch invariance: token 3 alone gives bit-identical output.
        let mut alone = vec![0f32; n_heads * hd];
        paged_attention(
            &q[3 * n_heads * hd..],
            n_heads,
            &kc,
            &vc,
            shape,
            &tokens[3..],
            0.5,
            &mut alone,
        );
        assert_eq!(&out[3 * n_heads * hd..], alone.as_slice());
    }

    /// `x` as the cache stores it.
    fn stored(dtype: KvDtype, x: &[f32]) -> Vec<f32> {
        match dtype {
            KvDtype::F32 => x.to_vec(),
            KvDtype::F16 => x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        }
    }

    /// The portable kernel, one (token, KV head) at a time.
    fn portable(
        q: &[f32],
        n_heads: usize,
        kc: &KvStore,
        vc: &KvStore,
        shape: KvShape,
        tokens: &[QueryToken<'_>],
    ) -> Vec<f32> {
        let (hd, n_kv) = (shape.head_dim, shape.n_kv_heads);
        let group = n_heads / n_kv;
        let mut out = vec![0f32; q.len()];
        let mut scratch = Scratch::default();
        for (i, o) in out.chunks_mut(group * hd).enumerate() {
            let (t, kv_head) = (i / n_kv, i % n_kv);
            let job = HeadGroup {
                q,
                n_heads,
                first_token: t,
                tokens: &tokens[t..t + 1],
                k_cache: kc.view(),
                v_cache: vc.view(),
                shape,
                kv_head,
                group,
                scale: 0.5,
            };
            job.run(&mut scratch, &mut [o]);
        }
        out
    }

    #[test]
    fn every_path_and_dtype_matches_naive_attention_at_model_sizes() {
        // SmolLM2's shape (9 heads over 3 KV heads of 64), and the other
        // head sizes the SIMD kernel is compiled for.
        for (n_heads, n_kv, hd) in [(9, 3, 64), (4, 2, 32), (4, 1, 128)] {
            check_prefill_and_decode(n_heads, n_kv, hd);
        }
    }

    /// A 120-token prefill (tiles of eight positions) checked at lengths
    /// that end inside and on a group of eight positions, against naive
    /// attention, the portable kernel, and the same token decoded alone.
    fn check_prefill_and_decode(n_heads: usize, n_kv: usize, hd: usize) {
        let bs = 16;
        let shape = KvShape {
            num_blocks: 8,
            block_size: bs,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        let row = shape.row_len();
        let len = 120;
        let table: Vec<u32> = (0..8).rev().collect();
        let tokens: Vec<QueryToken<'_>> = (0..len).map(|pos| QueryToken { blocks: &table, pos }).collect();
        let q: Vec<f32> = (0..len * n_heads * hd).map(|j| val(j + 31)).collect();
        let q_of = |t: usize| &q[t * n_heads * hd..(t + 1) * n_heads * hd];
        for dtype in [KvDtype::F32, KvDtype::F16] {
            let (mut kc, mut vc) = (
                KvStore::zeroed(dtype, shape.len()),
                KvStore::zeroed(dtype, shape.len()),
            );
            let k: Vec<f32> = (0..len * row).map(|j| val(j * 7 + 1)).collect();
            let v: Vec<f32> = (0..len * row).map(|j| val(j * 5 + 3)).collect();
            write_kv(&mut kc, &mut vc, shape, &k, &v, &tokens);
            let contiguous: (Vec<_>, Vec<_>) = (0..len)
                .map(|p| {
                    (
                        stored(dtype, &k[p * row..(p + 1) * row]),
                        stored(dtype, &v[p * row..(p + 1) * row]),
                    )
                })
                .unzip();
            let mut out = vec![0f32; q.len()];
            paged_attention(&q, n_heads, &kc, &vc, shape, &tokens, 0.5, &mut out);
            let slow = portable(&q, n_heads, &kc, &vc, shape, &tokens);
            for pos in [0usize, 6, 7, 8, 9, 40, 119] {
                let want = naive(
                    q_of(pos),
                    &contiguous.0[..=pos],
                    &contiguous.1[..=pos],
                    n_heads,
                    n_kv,
                    hd,
                );
                let at = pos * n_heads * hd..(pos + 1) * n_heads * hd;
                for (got, name) in [(&out[at.clone()], "dispatched"), (&slow[at.clone()], "portable")] {
                    for (a, b) in got.iter().zip(&want) {
                        assert!(
                            (a - b).abs() < 1e-4,
                            "hd {hd} {dtype:?} {name} pos {pos}: {a} vs {b}"
                        );
                    }
                }
                // Alone (a decode step) it gives the same bits as in its tile.
                let mut alone = vec![0f32; n_heads * hd];
                paged_attention(
                    q_of(pos),
                    n_heads,
                    &kc,
                    &vc,
                    shape,
                    &tokens[pos..=pos],
                    0.5,
                    &mut alone,
                );
                assert_eq!(alone.as_slice(), &out[at], "hd {hd} {dtype:?} pos {pos} alone");
            }
        }
    }

    #[test]
    fn tiles_are_runs_of_one_sequence_at_most_eight_long() {
        let (a, b): (Vec<u32>, Vec<u32>) = (vec![0, 1], vec![2, 3]);
        let tok = |blocks, pos| QueryToken { blocks, pos };
        let mut batch = vec![tok(&a[..], 3), tok(&b[..], 9)];
        batch.extend((0..19).map(|p| tok(&a[..], p)));
        batch.extend([tok(&a[..], 30), tok(&b[..], 10), tok(&b[..], 11)]);
        let got = tiles(&batch);
        assert_eq!(got, vec![0..1, 1..2, 2..10, 10..18, 18..21, 21..22, 22..24]);
    }
}

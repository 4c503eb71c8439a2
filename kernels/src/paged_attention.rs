//! Causal attention of ragged query tokens over the paged KV cache (CPU).

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

/// `out[t, h] = softmax(q[t, h] · K[0..=pos_t] * scale) · V[0..=pos_t]`, with
/// K/V read through token `t`'s block table and query head `h` using KV head
/// `h / (n_heads / n_kv_heads)` (grouped-query attention).
///
/// `q` and `out` are `[T, n_heads, head_dim]`. Work is split over (token,
/// KV head) pairs; each pair's result depends only on its own inputs, so a
/// token gets the same output whatever else is in the batch.
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
    let hd = shape.head_dim;
    let group = n_heads / shape.n_kv_heads;
    assert_eq!(
        group * shape.n_kv_heads,
        n_heads,
        "heads must be a multiple of KV heads"
    );
    assert_eq!(q.len(), tokens.len() * n_heads * hd);
    assert_eq!(out.len(), q.len());
    // One chunk = the `group` query heads of one token sharing one KV head.
    let simd = has_simd(hd);
    let (k_cache, v_cache) = (k_cache.view(), v_cache.view());
    out.par_chunks_mut(group * hd).enumerate().for_each_init(
        Scratch::default,
        |scratch: &mut Scratch, (i, out)| {
            let (t, g) = (i / shape.n_kv_heads, i % shape.n_kv_heads);
            let q = &q[i * group * hd..(i + 1) * group * hd];
            let job = HeadGroup {
                q,
                k_cache,
                v_cache,
                shape,
                token: tokens[t],
                kv_head: g,
                group,
                scale,
            };
            job.run_dispatch(simd, scratch, out);
        },
    );
}

/// Per-task buffers, reused across a worker's tasks: the scores, the cache
/// row offsets (SIMD path) and a widened row (f16 cache, portable path).
#[derive(Default)]
pub(crate) struct Scratch {
    pub scores: Vec<f32>,
    pub offsets: Vec<usize>,
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

/// The query heads of one token that share one KV head.
pub(crate) struct HeadGroup<'a> {
    pub q: &'a [f32],
    pub k_cache: KvView<'a>,
    pub v_cache: KvView<'a>,
    pub shape: KvShape,
    pub token: QueryToken<'a>,
    pub kv_head: usize,
    pub group: usize,
    pub scale: f32,
}

impl HeadGroup<'_> {
    fn run_dispatch(&self, simd: bool, scratch: &mut Scratch, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` comes from `has_simd`, which detected AVX2,
            // FMA and F16C and checked the head size.
            #[allow(unsafe_code)]
            unsafe {
                return crate::attention_x86::run(self, scratch, out);
            }
        }
        let _ = simd;
        self.run(scratch, out);
    }

    /// The portable version.
    fn run(&self, scratch: &mut Scratch, out: &mut [f32]) {
        let (shape, hd, group) = (self.shape, self.shape.head_dim, self.group);
        let g = self.kv_head;
        let tok = self.token;
        let q = self.q;
        let n = tok.pos + 1;
        let Scratch { scores, row, .. } = scratch;
        scores.clear();
        scores.resize(group * n, 0.0);
        // Scores, head-major: scores[h * n + p].
        for p in 0..n {
            let at = shape.row_offset(tok.blocks, p) + g * hd;
            let k = self.k_cache.row(at, hd, row);
            for h in 0..group {
                scores[h * n + p] = dot(&q[h * hd..(h + 1) * hd], k) * self.scale;
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

    #[test]
    fn every_path_and_dtype_matches_naive_attention_at_model_sizes() {
        // SmolLM2's shape: 9 heads over 3 KV heads of 64; lengths that end
        // inside and on a group of eight positions.
        let (n_heads, n_kv, hd, bs) = (9, 3, 64, 16);
        let shape = KvShape {
            num_blocks: 8,
            block_size: bs,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        let row = shape.row_len();
        let table: Vec<u32> = (0..8).rev().collect();
        for dtype in [KvDtype::F32, KvDtype::F16] {
            let (mut kc, mut vc) = (
                KvStore::zeroed(dtype, shape.len()),
                KvStore::zeroed(dtype, shape.len()),
            );
            let mut contiguous = (Vec::new(), Vec::new());
            for p in 0..120 {
                let k: Vec<f32> = (0..row).map(|j| val(p * 997 + j)).collect();
                let v: Vec<f32> = (0..row).map(|j| val(p * 991 + j + 3)).collect();
                let tok = [QueryToken {
                    blocks: &table,
                    pos: p,
                }];
                write_kv(&mut kc, &mut vc, shape, &k, &v, &tok);
                contiguous.0.push(stored(dtype, &k));
                contiguous.1.push(stored(dtype, &v));
            }
            for pos in [0usize, 6, 7, 8, 40, 119] {
                let q: Vec<f32> = (0..n_heads * hd).map(|j| val(j + pos * 31)).collect();
                let want = naive(
                    &q,
                    &contiguous.0[..=pos],
                    &contiguous.1[..=pos],
                    n_heads,
                    n_kv,
                    hd,
                );
                let tokens = [QueryToken { blocks: &table, pos }];
                let mut out = vec![0f32; q.len()];
                paged_attention(&q, n_heads, &kc, &vc, shape, &tokens, 0.5, &mut out);
                let mut portable = vec![0f32; q.len()];
                let mut scratch = Scratch::default();
                for (g, o) in portable.chunks_mut(3 * hd).enumerate() {
                    let job = HeadGroup {
                        q: &q[g * 3 * hd..(g + 1) * 3 * hd],
                        k_cache: kc.view(),
                        v_cache: vc.view(),
                        shape,
                        token: tokens[0],
                        kv_head: g,
                        group: 3,
                        scale: 0.5,
                    };
                    job.run(&mut scratch, o);
                }
                for (got, name) in [(&out, "dispatched"), (&portable, "portable")] {
                    for (a, b) in got.iter().zip(&want) {
                        assert!((a - b).abs() < 1e-4, "{dtype:?} {name} pos {pos}: {a} vs {b}");
                    }
                }
            }
        }
    }
}

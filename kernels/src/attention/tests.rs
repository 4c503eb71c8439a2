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
        portable::run(&job, &mut scratch, &mut [o]);
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

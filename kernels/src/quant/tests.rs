use half::f16;

use super::dot::{self, Kernel};
use super::*;

/// A small deterministic generator (no dependency for tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    fn uniform(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 31) as f32 * 2.0 - 1.0
    }
}

fn random_ggml(format: QuantFormat, rows: usize, cols: usize, rng: &mut Lcg) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..rows * cols / BLOCK {
        bytes.extend_from_slice(&f16::from_f32(0.01 + 0.02 * rng.uniform().abs()).to_le_bytes());
        if format == QuantFormat::Q4_1 {
            bytes.extend_from_slice(&f16::from_f32(-0.1 * rng.uniform().abs()).to_le_bytes());
        }
        for _ in 0..format.qs_bytes() {
            bytes.push(rng.next() as u8);
        }
    }
    bytes
}

fn random_rows(m: usize, k: usize, rng: &mut Lcg) -> Vec<f32> {
    (0..m * k).map(|_| 3.0 * rng.uniform()).collect()
}

/// The exact value the kernels approximate: dequantized weights times
/// dequantized activations, summed in f64.
fn reference(w: &QMatrix, acts: &QuantizedRows) -> Vec<f64> {
    let (m, n, k) = (acts.rows(), w.rows(), w.cols());
    let mut row = vec![0f32; k];
    let mut out = vec![0f64; m * n];
    for j in 0..n {
        w.dequantize_row(j, &mut row);
        for i in 0..m {
            let (q, d, s) = acts.row(i);
            // A Q4_1 minimum multiplies the block's stored `d * sum(q)`.
            let min = |c: usize| w.min(j, c / BLOCK) as f64;
            out[i * n + j] = (0..k)
                .map(|c| (row[c] as f64 - min(c)) * q[c] as f64 * d[c / BLOCK] as f64)
                .sum::<f64>()
                + (0..k / BLOCK).map(|b| min(b * BLOCK) * s[b] as f64).sum::<f64>();
        }
    }
    out
}

fn kernels() -> Vec<Kernel> {
    let mut all = vec![Kernel::Portable];
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::features().avx2_fma {
        all.push(Kernel::Avx2);
    }
    all
}

fn run(kernel: Kernel, w: &QMatrix, acts: &QuantizedRows) -> Vec<f32> {
    let (m, n) = (acts.rows(), w.rows());
    let mut out = vec![0f32; m * n];
    let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(n).collect();
    kernel.tile(w, 0, acts, &mut outs);
    out
}

#[test]
fn every_kernel_computes_the_quantized_product() {
    let mut rng = Lcg(7);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
        let (m, n, k) = (7, 13, 6 * BLOCK);
        let w = QMatrix::from_ggml(format, n, k, &random_ggml(format, n, k, &mut rng)).unwrap();
        let x = random_rows(m, k, &mut rng);
        let acts = QuantizedRows::quantize(&x, m, k);
        let want = reference(&w, &acts);
        for kernel in kernels() {
            let got = run(kernel, &w, &acts);
            for (g, r) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "{format:?} {kernel:?}: {g} vs {r}"
                );
            }
        }
    }
}

#[test]
fn quantized_product_is_close_to_the_float_product() {
    let mut rng = Lcg(11);
    let (m, n, k) = (3, 5, 4 * BLOCK);
    let w = QMatrix::from_ggml(
        QuantFormat::Q4_1,
        n,
        k,
        &random_ggml(QuantFormat::Q4_1, n, k, &mut rng),
    )
    .unwrap();
    let x = random_rows(m, k, &mut rng);
    let mut out = vec![0f32; m * n];
    w.matmul(&x, m, &mut out);
    let mut row = vec![0f32; k];
    for j in 0..n {
        w.dequantize_row(j, &mut row);
        for i in 0..m {
            let exact: f32 = (0..k).map(|c| row[c] * x[i * k + c]).sum();
            let scale: f32 = (0..k).map(|c| (row[c] * x[i * k + c]).abs()).sum();
            assert!(
                (out[i * n + j] - exact).abs() < 0.02 * scale,
                "{} vs {exact}",
                out[i * n + j]
            );
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_alone_and_in_any_batch() {
    let mut rng = Lcg(3);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
        let (m, n, k) = (11, 300, 18 * BLOCK);
        let w = QMatrix::from_ggml(format, n, k, &random_ggml(format, n, k, &mut rng)).unwrap();
        let x = random_rows(m, k, &mut rng);
        let mut batch = vec![0f32; m * n];
        w.matmul(&x, m, &mut batch);
        for i in 0..m {
            let mut alone = vec![0f32; n];
            w.matmul(&x[i * k..(i + 1) * k], 1, &mut alone);
            assert_eq!(alone, batch[i * n..(i + 1) * n], "{format:?} row {i}");
        }
        let mut pair = vec![0f32; 2 * n];
        w.matmul(&x[3 * k..5 * k], 2, &mut pair);
        assert_eq!(pair, batch[3 * n..5 * n]);
    }
}

#[test]
fn concatenated_rows_multiply_like_the_parts() {
    let mut rng = Lcg(5);
    let k = 2 * BLOCK;
    let a = QMatrix::from_ggml(
        QuantFormat::Q8_0,
        3,
        k,
        &random_ggml(QuantFormat::Q8_0, 3, k, &mut rng),
    )
    .unwrap();
    let b = QMatrix::from_ggml(
        QuantFormat::Q8_0,
        5,
        k,
        &random_ggml(QuantFormat::Q8_0, 5, k, &mut rng),
    )
    .unwrap();
    let ab = QMatrix::concat_rows(&[a.clone(), b.clone()]).unwrap();
    let x = random_rows(2, k, &mut rng);
    let (mut oa, mut ob, mut oab) = (vec![0f32; 6], vec![0f32; 10], vec![0f32; 16]);
    a.matmul(&x, 2, &mut oa);
    b.matmul(&x, 2, &mut ob);
    ab.matmul(&x, 2, &mut oab);
    for i in 0..2 {
        assert_eq!(oab[i * 8..i * 8 + 3], oa[i * 3..i * 3 + 3]);
        assert_eq!(oab[i * 8 + 3..i * 8 + 8], ob[i * 5..i * 5 + 5]);
    }
}

#[test]
fn wrong_sizes_are_refused() {
    assert!(QMatrix::from_ggml(QuantFormat::Q8_0, 2, 33, &[0; 100]).is_err());
    assert!(QMatrix::from_ggml(QuantFormat::Q4_1, 2, 32, &[0; 39]).is_err());
    assert!(QMatrix::concat_rows(&[]).is_err());
}

#[test]
fn simd_and_portable_quantization_agree() {
    let mut rng = Lcg(9);
    let mut x = random_rows(4, 8 * BLOCK, &mut rng);
    // Ties and zeros: a block of exact halves and an all-zero block.
    for (i, v) in x[..BLOCK].iter_mut().enumerate() {
        *v = i as f32 - 15.5;
    }
    x[BLOCK..2 * BLOCK].fill(0.0);
    for block in x.chunks_exact(BLOCK) {
        let (mut a, mut b) = ([0i8; BLOCK], [0i8; BLOCK]);
        let pa = super::activations::quantize_block(false, block, &mut a);
        let pb = super::activations::quantize_block(dot::select() != Kernel::Portable, block, &mut b);
        assert_eq!((a, pa), (b, pb));
        assert!(a.iter().all(|&q| q >= -127));
    }
}

#[test]
fn every_kernel_gives_the_same_bits() {
    let mut rng = Lcg(13);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
        // 21 rows: two full panels and a padded one.
        let (m, n, k) = (6, 21, 5 * BLOCK);
        let w = QMatrix::from_ggml(format, n, k, &random_ggml(format, n, k, &mut rng)).unwrap();
        let x = random_rows(m, k, &mut rng);
        let acts = QuantizedRows::quantize(&x, m, k);
        let want = run(Kernel::Portable, &w, &acts);
        for kernel in kernels() {
            assert_eq!(run(kernel, &w, &acts), want, "{format:?} {kernel:?}");
        }
    }
}

#[test]
fn panels_keep_every_value_scale_and_minimum() {
    let mut rng = Lcg(17);
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
        let (n, k) = (11, 3 * BLOCK);
        let bytes = random_ggml(format, n, k, &mut rng);
        let w = QMatrix::from_ggml(format, n, k, &bytes).unwrap();
        let bb = format.ggml_block_bytes();
        let half = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        let mut row = vec![0f32; k];
        for j in 0..n {
            w.dequantize_row(j, &mut row);
            for b in 0..k / BLOCK {
                let blk = &bytes[(j * k / BLOCK + b) * bb..][..bb];
                for c in 0..BLOCK {
                    let want = match format {
                        QuantFormat::Q8_0 => half(blk, 0) * blk[2 + c] as i8 as f32,
                        QuantFormat::Q4_1 => {
                            let q = blk[4 + c % 16];
                            let q = if c < 16 { q & 0x0F } else { q >> 4 };
                            half(blk, 0) * q as f32 + half(blk, 2)
                        }
                    };
                    assert_eq!(
                        row[b * BLOCK + c],
                        want,
                        "{format:?} row {j} col {}",
                        b * BLOCK + c
                    );
                }
            }
        }
        // Concatenation repacks across a panel boundary.
        let both = QMatrix::concat_rows(&[w.clone(), w.clone()]).unwrap();
        let mut again = vec![0f32; k];
        for j in 0..n {
            w.dequantize_row(j, &mut row);
            both.dequantize_row(n + j, &mut again);
            assert_eq!(row, again);
        }
    }
}

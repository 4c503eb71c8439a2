//! ragd's quantized kernels (ragd-kernels' `QMatrix`) against candle's own
//! reading of the same GGUF blocks: `QTensor::dequantize` then an f32
//! matmul. Blocks come from candle's quantizer (realistic scales) and from
//! random bytes (every bit pattern of values, high bits and sub-scales).

use std::borrow::Cow;

mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use ragd_kernels::{QMatrix, QuantFormat, QuantizedRows};
use ragd_models::llama::Linear;

const TYPES: [(GgmlDType, QuantFormat); 6] = [
    (GgmlDType::Q8_0, QuantFormat::Q8_0),
    (GgmlDType::Q4_1, QuantFormat::Q4_1),
    (GgmlDType::Q5_0, QuantFormat::Q5_0),
    (GgmlDType::Q4K, QuantFormat::Q4K),
    (GgmlDType::Q5K, QuantFormat::Q5K),
    (GgmlDType::Q6K, QuantFormat::Q6K),
];

/// 19 rows: two full panels of eight and a padded one.
const ROWS: usize = 19;
const COLS: usize = 512;

fn qtensor(dtype: GgmlDType, bytes: &[u8]) -> QTensor {
    let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype).unwrap();
    QTensor::new(storage, (ROWS, COLS)).unwrap()
}

/// Blocks as llama.cpp's quantizer (candle's port) writes them.
fn quantized_blocks(dtype: GgmlDType, rng: &mut common::Lcg) -> Vec<u8> {
    let w = Tensor::from_vec(rng.floats(ROWS * COLS), (ROWS, COLS), &Device::Cpu).unwrap();
    QTensor::quantize(&w, dtype).unwrap().data().unwrap().into_owned()
}

/// Random bytes, with each block's f16 scale (and minimum or `dmin`) set
/// to a small finite value.
fn random_blocks(format: QuantFormat, rng: &mut common::Lcg) -> Vec<u8> {
    let bb = format.ggml_block_bytes();
    let mut bytes: Vec<u8> = (0..ROWS * COLS / format.block_len() * bb)
        .map(|_| rng.next() as u8)
        .collect();
    for block in bytes.chunks_exact_mut(bb) {
        for &at in format.ggml_f16_fields() {
            let v = half::f16::from_f32(0.001 + 0.002 * rng.normal().abs());
            block[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

/// Both kinds of blocks for every type: (type, format, blocks).
fn cases(seed: u64) -> Vec<(GgmlDType, QuantFormat, Vec<u8>)> {
    let mut rng = common::Lcg(seed);
    TYPES
        .iter()
        .flat_map(|&(dtype, format)| {
            let a = quantized_blocks(dtype, &mut rng);
            let b = random_blocks(format, &mut rng);
            [(dtype, format, a), (dtype, format, b)]
        })
        .collect()
}

/// A tensor's values, in order.
fn values(t: candle_core::Result<Tensor>) -> Vec<f32> {
    t.and_then(|t| t.flatten_all()?.to_vec1()).unwrap()
}

fn dequantized(dtype: GgmlDType, bytes: &[u8]) -> Tensor {
    qtensor(dtype, bytes).dequantize(&Device::Cpu).unwrap()
}

#[test]
fn weights_dequantize_to_candles_bits() {
    for (dtype, format, bytes) in cases(1) {
        let m = QMatrix::from_ggml(format, ROWS, COLS, &bytes).unwrap();
        let want: Vec<Vec<f32>> = dequantized(dtype, &bytes).to_vec2().unwrap();
        let mut row = vec![0f32; COLS];
        for (j, want) in want.iter().enumerate() {
            m.dequantize_row(j, &mut row);
            assert_eq!(&row, want, "{dtype:?} row {j}");
        }
    }
}

/// The kernel equals candle's dequantized weights times the kernel's own
/// 8-bit activations (dequantized), multiplied in f32 by candle, within
/// 1e-4 of each output's scale `sum |w x|` and of the whole output's norm
/// (Q4_1: 1e-3), at batch 1, 5 and 64; each row's output is the same in
/// every batch.
#[test]
fn kernel_equals_the_dequantized_f32_matmul() {
    let mut rng = common::Lcg(2);
    for (dtype, format, bytes) in cases(3) {
        let m = QMatrix::from_ggml(format, ROWS, COLS, &bytes).unwrap();
        let w = dequantized(dtype, &bytes);
        // Q4_1 keeps llama.cpp's Q8_1 convention: its minimums multiply an
        // f16-rounded `d * sum(x)` (relative 2^-11 per block).
        let tol = if format == QuantFormat::Q4_1 { 1e-3 } else { 1e-4 };
        let x64 = rng.floats(64 * COLS);
        let mut alone = vec![vec![0f32; ROWS]; 64];
        for (i, out) in alone.iter_mut().enumerate() {
            m.matmul(&x64[i * COLS..(i + 1) * COLS], 1, out);
        }
        for batch in [1, 5, 64] {
            let acts = QuantizedRows::quantize(&x64[..batch * COLS], batch, COLS);
            let mut got = vec![0f32; batch * ROWS];
            m.matmul_quantized(&acts, &mut got);
            let x = Tensor::from_vec(acts.dequantize(), (batch, COLS), &Device::Cpu).unwrap();
            let want = values(x.matmul(&w.t().unwrap()));
            let scale = values(x.abs().unwrap().matmul(&w.abs().unwrap().t().unwrap()));
            for ((g, r), s) in got.iter().zip(&want).zip(&scale) {
                assert!(
                    (g - r).abs() <= tol * s,
                    "{dtype:?} batch {batch}: {g} vs {r} (scale {s})"
                );
            }
            let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|a| (a as f64).powi(2)).sum::<f64>().sqrt();
            let err = norm(&mut got.iter().zip(&want).map(|(g, r)| g - r));
            assert!(
                err <= tol as f64 * norm(&mut want.iter().copied()),
                "{dtype:?} batch {batch}: {err}"
            );
            for (i, row) in got.chunks_exact(ROWS).enumerate() {
                assert_eq!(row, alone[i], "{dtype:?}: row {i} of a batch of {batch}");
            }
        }
    }
}

/// With f32 activations the only loss is their 8-bit quantization, per
/// block of 32: no more than candle's own quantized matmul loses (which
/// quantizes activations per 256 for K-quants) on realistic blocks.
#[test]
fn activation_rounding_costs_no_more_than_in_candle() {
    let mut rng = common::Lcg(4);
    for (dtype, format) in TYPES {
        let bytes = quantized_blocks(dtype, &mut rng);
        let m = QMatrix::from_ggml(format, ROWS, COLS, &bytes).unwrap();
        let w = dequantized(dtype, &bytes);
        let batch = 64;
        let xs = rng.floats(batch * COLS);
        let x = Tensor::from_vec(xs.clone(), (batch, COLS), &Device::Cpu).unwrap();
        let exact = values(x.matmul(&w.t().unwrap()));
        let mut ours = vec![0f32; batch * ROWS];
        m.matmul(&xs, batch, &mut ours);
        let candle = values(QMatMul::from_qtensor(qtensor(dtype, &bytes)).unwrap().forward(&x));
        let err = |v: &[f32]| {
            v.iter()
                .zip(&exact)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let norm = exact.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
        let (ours, candle) = (err(&ours) / norm, err(&candle) / norm);
        assert!(ours < 0.01, "{dtype:?}: relative error {ours}");
        assert!(ours <= 1.01 * candle, "{dtype:?}: ours {ours} vs candle {candle}");
    }
}

/// `--exact-weights` (no re-quantization) still runs these types on ragd's
/// kernel, as stored; other quantized types go to candle unless re-quantized.
#[test]
fn kernel_types_run_ragds_kernel_with_or_without_requantizing() {
    let mut rng = common::Lcg(5);
    for (dtype, _, bytes) in cases(6) {
        for requantize in [false, true] {
            let linear = Linear::from_qtensor(qtensor(dtype, &bytes), &Device::Cpu, requantize).unwrap();
            assert!(
                matches!(linear, Linear::Quant(_)),
                "{dtype:?} requantize {requantize}"
            );
        }
    }
    let q4_0 = quantized_blocks(GgmlDType::Q4_0, &mut rng);
    let exact = Linear::from_qtensor(qtensor(GgmlDType::Q4_0, &q4_0), &Device::Cpu, false).unwrap();
    assert!(matches!(exact, Linear::Candle { .. }));
    let fast = Linear::from_qtensor(qtensor(GgmlDType::Q4_0, &q4_0), &Device::Cpu, true).unwrap();
    assert!(matches!(fast, Linear::Quant(m) if m.format() == QuantFormat::Q8_0));
}

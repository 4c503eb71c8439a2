//! Checks ragd's quantized kernels on every matrix of a real GGUF file
//! whose type they run (Q8_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K), against candle:
//! the dequantized weights must be candle's bits, and the kernel's product
//! with a batch of activations must equal candle's dequantize-then-f32
//! matmul of the same 8-bit activations within 1e-4 of `sum |w x|`.
//!
//!     cargo run -p ragd-models --example gguf_kernel_check GGUF [BATCH]
//!
//! Prints, per type, the matrices and weights checked and the worst error.

use std::collections::BTreeMap;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use ragd_kernels::{QMatrix, QuantFormat, QuantizedRows};

fn kernel_format(dtype: GgmlDType) -> Option<QuantFormat> {
    Some(match dtype {
        GgmlDType::Q8_0 => QuantFormat::Q8_0,
        GgmlDType::Q4_1 => QuantFormat::Q4_1,
        GgmlDType::Q5_0 => QuantFormat::Q5_0,
        GgmlDType::Q4K => QuantFormat::Q4K,
        GgmlDType::Q5K => QuantFormat::Q5K,
        GgmlDType::Q6K => QuantFormat::Q6K,
        _ => return None,
    })
}

#[derive(Default)]
struct Tally {
    matrices: usize,
    weights: usize,
    worst: f64,
}

fn main() -> candle_core::Result<()> {
    let path = std::env::args().nth(1).expect("GGUF path");
    let batch: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    let mut seed = 7u64;
    for name in names {
        let info = &content.tensor_infos[name];
        let Some(format) = kernel_format(info.ggml_dtype) else {
            continue;
        };
        let Ok((rows, cols)) = info.shape.dims2() else {
            continue;
        };
        let t = content.tensor(&mut file, name, &Device::Cpu)?;
        let m = QMatrix::from_ggml(format, rows, cols, &t.data()?).map_err(candle_core::Error::wrap)?;
        let w = t.dequantize(&Device::Cpu)?;
        // Embedding tables are large: their first 4096 rows.
        let check_rows = rows.min(4096);
        let want: Vec<Vec<f32>> = w.narrow(0, 0, check_rows)?.to_vec2()?;
        let mut row = vec![0f32; cols];
        for (j, want) in want.iter().enumerate() {
            m.dequantize_row(j, &mut row);
            assert!(
                &row == want,
                "{name}: row {j} differs from candle's dequantization"
            );
        }
        let x: Vec<f32> = (0..batch * cols)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        let acts = QuantizedRows::quantize(&x, batch, cols);
        let mut got = vec![0f32; batch * rows];
        m.matmul_quantized(&acts, &mut got);
        let xd = Tensor::from_vec(acts.dequantize(), (batch, cols), &Device::Cpu)?;
        let want: Vec<f32> = xd.matmul(&w.t()?)?.flatten_all()?.to_vec1()?;
        let scale: Vec<f32> = xd.abs()?.matmul(&w.abs()?.t()?)?.flatten_all()?.to_vec1()?;
        let worst = got
            .iter()
            .zip(&want)
            .zip(&scale)
            .map(|((g, r), s)| ((g - r).abs() / s.max(f32::MIN_POSITIVE)) as f64)
            .fold(0f64, f64::max);
        assert!(worst <= 1e-4, "{name}: relative error {worst}");
        let e = tally.entry(format!("{format:?}")).or_default();
        e.matrices += 1;
        e.weights += rows * cols;
        e.worst = e.worst.max(worst);
    }
    for (format, t) in &tally {
        println!(
            "{format}: {} matrices, {} weights: dequantized rows equal candle's; worst kernel error {:.2e} of sum |w x| (batch {batch})",
            t.matrices, t.weights, t.worst
        );
    }
    Ok(())
}

//! The fused CUDA paged decode attention against the portable version on
//! random blocks. Compiled always; skipped (passing, with a note on stderr)
//! without the `cuda` feature or a CUDA device.

mod common;

use candle_core::{DType, Device};
use common::{max_abs_diff, Case};
use ragd_kernels::device::{paged_attention_decode, paged_attention_decode_portable};

fn cuda_device() -> Option<Device> {
    if !cfg!(feature = "cuda") || !candle_core::utils::cuda_is_available() {
        eprintln!("skipped: no CUDA device");
        return None;
    }
    Some(Device::new_cuda(0).expect("CUDA device 0"))
}

#[test]
fn fused_kernel_equals_portable_path() {
    let Some(gpu) = cuda_device() else { return };
    let shapes = [
        (3, 4, 4, 32, 16),
        (5, 9, 3, 64, 16),
        (4, 14, 2, 64, 8),
        (3, 6, 2, 40, 4),
        (2, 12, 2, 128, 16),
        (2, 8, 8, 256, 16),
    ];
    for (i, &(seqs, heads, kv, dim, bs)) in shapes.iter().enumerate() {
        let case = Case::random(100 + i as u64, seqs, heads, kv, dim, bs);
        for q_dtype in [DType::F32, DType::F16, DType::BF16] {
            for kv_dtype in [DType::F16, DType::F32, DType::BF16] {
                let [q, k, v, tables, lens] = case.tensors(&gpu, q_dtype, kv_dtype).unwrap();
                let fused = paged_attention_decode(&q, &k, &v, &tables, &lens, case.scale).unwrap();
                let portable =
                    paged_attention_decode_portable(&q, &k, &v, &tables, &lens, case.scale).unwrap();
                assert_eq!(fused.dtype(), q_dtype);
                let flat = |t: candle_core::Tensor| -> Vec<f32> {
                    t.to_dtype(DType::F32)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap()
                };
                let diff = max_abs_diff(&flat(fused), &flat(portable));
                // Both round the output to q's dtype: bf16 keeps 8 bits.
                let tolerance = if q_dtype == DType::BF16 { 1e-2 } else { 1e-3 };
                assert!(
                    diff <= tolerance,
                    "case {i} q {q_dtype:?} kv {kv_dtype:?}: max |fused - portable| = {diff}"
                );
            }
        }
    }
}

#[test]
fn fused_kernel_handles_long_contexts_and_an_empty_one() {
    let Some(gpu) = cuda_device() else { return };
    // 6 blocks of 512 positions: 3,072 positions for sequence 0.
    let mut case = Case::random(7, 3, 9, 3, 64, 512);
    case.lens[2] = 0;
    let [q, k, v, tables, lens] = case.tensors(&gpu, DType::F32, DType::F16).unwrap();
    let fused = paged_attention_decode(&q, &k, &v, &tables, &lens, case.scale).unwrap();
    let portable = paged_attention_decode_portable(&q, &k, &v, &tables, &lens, case.scale).unwrap();
    let fused: Vec<f32> = fused.flatten_all().unwrap().to_vec1().unwrap();
    let portable: Vec<f32> = portable.flatten_all().unwrap().to_vec1().unwrap();
    let diff = max_abs_diff(&fused, &portable);
    assert!(diff <= 1e-3, "max |fused - portable| = {diff}");
    assert!(fused[2 * 9 * 64..].iter().all(|&x| x == 0.0));
}

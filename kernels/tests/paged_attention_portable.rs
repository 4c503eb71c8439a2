//! The portable (candle-ops) paged decode attention against a per-sequence
//! loop on the CPU: random blocks, grouped-query heads, ragged contexts.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, Case};
use ragd_kernels::device::{paged_attention_decode, paged_attention_decode_portable};

fn run(case: &Case, kv_dtype: DType) -> Vec<f32> {
    let [q, k, v, tables, lens] = case.tensors(&Device::Cpu, DType::F32, kv_dtype).unwrap();
    let out = paged_attention_decode_portable(&q, &k, &v, &tables, &lens, case.scale).unwrap();
    assert_eq!(out.dims(), [case.num_seqs, case.n_heads, case.head_dim]);
    out.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn portable_equals_naive_loop_f32_cache() {
    // (seqs, heads, kv heads, head_dim, block_size): MHA, GQA 3:1 (SmolLM2's
    // 9/3), GQA 7:1 (Qwen2.5-0.5B's 14/2), an odd head size.
    for (i, &(seqs, heads, kv, dim, bs)) in [
        (3, 4, 4, 32, 16),
        (5, 9, 3, 64, 16),
        (4, 14, 2, 64, 8),
        (3, 6, 2, 40, 4),
    ]
    .iter()
    .enumerate()
    {
        let case = Case::random(i as u64 + 1, seqs, heads, kv, dim, bs);
        let diff = max_abs_diff(&run(&case, DType::F32), &case.naive());
        assert!(diff <= 1e-5, "case {i}: max |portable - naive| = {diff}");
    }
}

#[test]
fn portable_reads_f16_and_bf16_caches() {
    for (kv_dtype, tolerance) in [(DType::F16, 2e-3), (DType::BF16, 2e-2)] {
        let case = Case::random(11, 4, 8, 2, 64, 16);
        let diff = max_abs_diff(&run(&case, kv_dtype), &case.naive());
        assert!(diff <= tolerance, "{kv_dtype:?}: max |portable - naive| = {diff}");
    }
}

#[test]
fn portable_keeps_the_query_dtype_and_zeroes_an_empty_context() {
    let mut case = Case::random(5, 3, 4, 2, 32, 8);
    case.lens[2] = 0;
    let [q, k, v, tables, lens] = case.tensors(&Device::Cpu, DType::BF16, DType::F16).unwrap();
    let out = paged_attention_decode(&q, &k, &v, &tables, &lens, case.scale).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    let last: Vec<f32> = out
        .get(2)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(last.iter().all(|&x| x == 0.0), "{last:?}");
}

#[test]
fn mismatched_shapes_are_errors() {
    let case = Case::random(3, 2, 4, 2, 32, 8);
    let [q, k, v, tables, lens] = case.tensors(&Device::Cpu, DType::F32, DType::F32).unwrap();
    let wrong_heads = Tensor::zeros((2, 3, 32), DType::F32, &Device::Cpu).unwrap();
    assert!(paged_attention_decode(&wrong_heads, &k, &v, &tables, &lens, 1.0).is_err());
    let i64_lens = lens.to_dtype(DType::I64).unwrap();
    assert!(paged_attention_decode(&q, &k, &v, &tables, &i64_lens, 1.0).is_err());
    assert!(paged_attention_decode(&q, &k, &v.narrow(3, 0, 16).unwrap(), &tables, &lens, 1.0).is_err());
}

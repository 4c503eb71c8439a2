// Fused paged attention for decode: one query token per sequence attends to
// its positions 0..context_len, read block by block through its block table.
//
// Layouts (all contiguous):
//   q            [num_seqs, n_heads, head_dim]
//   k/v cache    [num_blocks, block_size, n_kv_heads, head_dim]
//   block_tables [num_seqs, max_blocks_per_seq]  (u32)
//   context_lens [num_seqs]                       (u32)
//   out          [num_seqs, n_heads, head_dim]    (q's type)
// Head h reads kv head h / (n_heads / n_kv_heads) (grouped-query attention).
//
// Launch: grid (n_heads, num_seqs), NUM_WARPS warps per block, dynamic shared
// memory NUM_WARPS * (head_dim + 2) floats. Each warp takes every
// NUM_WARPS-th position and keeps an online softmax (running max, sum and
// weighted V) in registers, its 32 lanes splitting head_dim (lane i holds
// dims i, i + 32, ...); the block then merges the warps' partial results.
// Unlike vLLM's v1 kernel no logits are kept in shared memory, so the
// context length is not bounded by it. All arithmetic is f32.

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

#define NUM_WARPS 8
#define WARP 32

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = WARP / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// ELEMS = ceil(head_dim / 32): the dims each lane holds (head_dim <= 32 * ELEMS).
template <typename QT, typename KVT, int ELEMS>
__device__ void paged_attention_decode(QT* __restrict__ out, const QT* __restrict__ q,
                                       const KVT* __restrict__ k_cache,
                                       const KVT* __restrict__ v_cache,
                                       const uint32_t* __restrict__ block_tables,
                                       const uint32_t* __restrict__ context_lens, float scale,
                                       int n_heads, int n_kv_heads, int head_dim, int block_size,
                                       int max_blocks_per_seq) {
  extern __shared__ float shared[];
  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int warp = threadIdx.x / WARP;
  const int lane = threadIdx.x % WARP;
  const int kv_head = head / (n_heads / n_kv_heads);
  const int context_len = (int)context_lens[seq];
  const uint32_t* table = block_tables + (size_t)seq * max_blocks_per_seq;

  // The query, pre-scaled, in registers.
  const QT* q_row = q + ((size_t)seq * n_heads + head) * head_dim;
  float q_reg[ELEMS];
#pragma unroll
  for (int e = 0; e < ELEMS; e++) {
    const int d = lane + e * WARP;
    q_reg[e] = d < head_dim ? to_f32(q_row[d]) * scale : 0.f;
  }

  float running_max = -INFINITY;
  float running_sum = 0.f;
  float acc[ELEMS];
#pragma unroll
  for (int e = 0; e < ELEMS; e++) acc[e] = 0.f;

  const size_t token_stride = (size_t)n_kv_heads * head_dim;
  for (int pos = warp; pos < context_len; pos += NUM_WARPS) {
    const size_t block = table[pos / block_size];
    const size_t row = (block * block_size + pos % block_size) * token_stride +
                       (size_t)kv_head * head_dim;
    const KVT* k_row = k_cache + row;
    float dot = 0.f;
#pragma unroll
    for (int e = 0; e < ELEMS; e++) {
      const int d = lane + e * WARP;
      if (d < head_dim) dot += q_reg[e] * to_f32(k_row[d]);
    }
    const float score = warp_sum(dot);
    const float new_max = fmaxf(running_max, score);
    const float correction = __expf(running_max - new_max);
    const float weight = __expf(score - new_max);
    running_sum = running_sum * correction + weight;
    running_max = new_max;
    const KVT* v_row = v_cache + row;
#pragma unroll
    for (int e = 0; e < ELEMS; e++) {
      const int d = lane + e * WARP;
      const float v = d < head_dim ? to_f32(v_row[d]) : 0.f;
      acc[e] = acc[e] * correction + weight * v;
    }
  }

  // Merge the warps: shared = [max x NUM_WARPS][sum x NUM_WARPS][acc x NUM_WARPS x head_dim].
  float* warp_max = shared;
  float* warp_sum_ = shared + NUM_WARPS;
  float* warp_acc = shared + 2 * NUM_WARPS;
  if (lane == 0) {
    warp_max[warp] = running_max;
    warp_sum_[warp] = running_sum;
  }
#pragma unroll
  for (int e = 0; e < ELEMS; e++) {
    const int d = lane + e * WARP;
    if (d < head_dim) warp_acc[warp * head_dim + d] = acc[e];
  }
  __syncthreads();

  float block_max = -INFINITY;
#pragma unroll
  for (int w = 0; w < NUM_WARPS; w++) block_max = fmaxf(block_max, warp_max[w]);
  QT* out_row = out + ((size_t)seq * n_heads + head) * head_dim;
  if (block_max == -INFINITY) {  // an empty context attends to nothing
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out_row[d] = from_f32<QT>(0.f);
    return;
  }
  float total = 0.f;
  float factor[NUM_WARPS];
#pragma unroll
  for (int w = 0; w < NUM_WARPS; w++) {
    factor[w] = __expf(warp_max[w] - block_max);  // 0 for a warp that saw no position
    total += warp_sum_[w] * factor[w];
  }
  const float inv_total = 1.f / total;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float value = 0.f;
#pragma unroll
    for (int w = 0; w < NUM_WARPS; w++) value += warp_acc[w * head_dim + d] * factor[w];
    out_row[d] = from_f32<QT>(value * inv_total);
  }
}

// One exported entry point per (query type, cache type, lanes' dims):
// paged_attention_decode_<q>_<kv>_<elems>, e.g. ..._f32_f16_4 for head_dim <= 128.
#define ENTRY(QNAME, QT, KVNAME, KVT, ELEMS)                                                  \
  extern "C" __global__ void paged_attention_decode_##QNAME##_##KVNAME##_##ELEMS(              \
      QT* out, const QT* q, const KVT* k_cache, const KVT* v_cache,                            \
      const uint32_t* block_tables, const uint32_t* context_lens, float scale, int n_heads,    \
      int n_kv_heads, int head_dim, int block_size, int max_blocks_per_seq) {                  \
    paged_attention_decode<QT, KVT, ELEMS>(out, q, k_cache, v_cache, block_tables,             \
                                           context_lens, scale, n_heads, n_kv_heads, head_dim, \
                                           block_size, max_blocks_per_seq);                    \
  }

#define ENTRIES_FOR_ELEMS(QNAME, QT, KVNAME, KVT) \
  ENTRY(QNAME, QT, KVNAME, KVT, 1)                \
  ENTRY(QNAME, QT, KVNAME, KVT, 2)                \
  ENTRY(QNAME, QT, KVNAME, KVT, 4)                \
  ENTRY(QNAME, QT, KVNAME, KVT, 8)

#define ENTRIES_FOR_CACHE(QNAME, QT)                 \
  ENTRIES_FOR_ELEMS(QNAME, QT, f32, float)           \
  ENTRIES_FOR_ELEMS(QNAME, QT, f16, __half)          \
  ENTRIES_FOR_ELEMS(QNAME, QT, bf16, __nv_bfloat16)

ENTRIES_FOR_CACHE(f32, float)
ENTRIES_FOR_CACHE(f16, __half)
ENTRIES_FOR_CACHE(bf16, __nv_bfloat16)

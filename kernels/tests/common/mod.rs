//! Random paged-attention cases shared by the portable and device tests.

#![allow(dead_code)] // each test binary uses a subset

use candle_core::{DType, Device, Result, Tensor};

/// A small deterministic generator (xorshift), so no `rand` dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `[-1, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.unit()).collect()
    }
}

/// One decode call's inputs, on the host.
pub struct Case {
    pub num_seqs: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_blocks_per_seq: usize,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// `[num_seqs][max_blocks_per_seq]`: distinct blocks per sequence, padded
    /// with random valid ids past its context.
    pub tables: Vec<Vec<u32>>,
    pub lens: Vec<u32>,
    pub scale: f32,
}

impl Case {
    /// Ragged context lengths (one of them a full table, one a single
    /// position), blocks drawn at random from the pool.
    pub fn random(
        seed: u64,
        num_seqs: usize,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        block_size: usize,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let max_blocks_per_seq = 6;
        let num_blocks = num_seqs * max_blocks_per_seq + 3;
        let mut pool: Vec<u32> = (0..num_blocks as u32).collect();
        for i in (1..pool.len()).rev() {
            pool.swap(i, rng.below(i + 1));
        }
        let cap = max_blocks_per_seq * block_size;
        let lens: Vec<u32> = (0..num_seqs)
            .map(|s| match s {
                0 => cap,
                1 => 1,
                _ => 1 + rng.below(cap),
            } as u32)
            .collect();
        let tables = (0..num_seqs)
            .map(|s| {
                let used = (lens[s] as usize).div_ceil(block_size);
                (0..max_blocks_per_seq)
                    .map(|b| {
                        if b < used {
                            pool[s * max_blocks_per_seq + b]
                        } else {
                            rng.below(num_blocks) as u32
                        }
                    })
                    .collect()
            })
            .collect();
        let cache_len = num_blocks * block_size * n_kv_heads * head_dim;
        Self {
            num_seqs,
            n_heads,
            n_kv_heads,
            head_dim,
            num_blocks,
            block_size,
            max_blocks_per_seq,
            q: rng.values(num_seqs * n_heads * head_dim),
            k: rng.values(cache_len),
            v: rng.values(cache_len),
            tables,
            lens,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }

    /// (q, k_cache, v_cache, block_tables, context_lens) as tensors on
    /// `device`, q in `q_dtype`, the caches in `kv_dtype`.
    pub fn tensors(&self, device: &Device, q_dtype: DType, kv_dtype: DType) -> Result<[Tensor; 5]> {
        let cache_shape = (self.num_blocks, self.block_size, self.n_kv_heads, self.head_dim);
        let flat: Vec<u32> = self.tables.iter().flatten().copied().collect();
        Ok([
            Tensor::from_slice(&self.q, (self.num_seqs, self.n_heads, self.head_dim), device)?
                .to_dtype(q_dtype)?,
            Tensor::from_slice(&self.k, cache_shape, device)?.to_dtype(kv_dtype)?,
            Tensor::from_slice(&self.v, cache_shape, device)?.to_dtype(kv_dtype)?,
            Tensor::from_slice(&flat, (self.num_seqs, self.max_blocks_per_seq), device)?,
            Tensor::from_slice(&self.lens, self.num_seqs, device)?,
        ])
    }

    /// The reference: each sequence and head in plain loops, f64 sums.
    pub fn naive(&self) -> Vec<f32> {
        let (hd, kvh) = (self.head_dim, self.n_kv_heads);
        let group = self.n_heads / kvh;
        let mut out = vec![0f32; self.num_seqs * self.n_heads * hd];
        for s in 0..self.num_seqs {
            for h in 0..self.n_heads {
                let q = &self.q[(s * self.n_heads + h) * hd..][..hd];
                let row = |p: usize| {
                    let block = self.tables[s][p / self.block_size] as usize;
                    ((block * self.block_size + p % self.block_size) * kvh + h / group) * hd
                };
                let len = self.lens[s] as usize;
                let scores: Vec<f64> = (0..len)
                    .map(|p| {
                        let k = &self.k[row(p)..][..hd];
                        q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>() * self.scale as f64
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = weights.iter().sum();
                let o = &mut out[(s * self.n_heads + h) * hd..][..hd];
                for (p, w) in weights.iter().enumerate() {
                    let v = &self.v[row(p)..][..hd];
                    for (o, v) in o.iter_mut().zip(v) {
                        *o += (w / total * *v as f64) as f32;
                    }
                }
            }
        }
        out
    }
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

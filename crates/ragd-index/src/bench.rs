//! Not a stable API: the HNSW shard a collection serves with, reachable
//! without a collection, for `examples/hnsw_bench.rs` (see
//! `benches/hnsw_vs_hnswlib.sh`). It measures the graph alone: no
//! write-ahead log, no document store, no [`crate::Hit`] assembly.

use crate::config::HnswParams;
use crate::shard::Shard;

/// A shard whose chunk ids are the vectors' positions.
pub struct BenchShard(Shard);

impl BenchShard {
    /// Builds the graph as a collection does when it loads a snapshot or
    /// compacts ([`Shard::build`]: one batch, inserted in parallel through
    /// rayon's global pool); vector `i` gets chunk id `i`.
    pub fn build(params: &HnswParams, vectors: &[&[f32]]) -> Self {
        let items: Vec<(u64, &[f32])> = vectors.iter().enumerate().map(|(i, v)| (i as u64, *v)).collect();
        Self(Shard::build(params, &items))
    }

    /// The unfiltered search of [`crate::Collection::search`]: the nearest
    /// `k` as `(chunk id, cosine distance)`, nearest first, with `ef`
    /// raised to `k` when smaller.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        self.0.search(query, k, ef.max(k), None)
    }

    pub fn len(&self) -> usize {
        self.0.nodes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.nodes() == 0
    }
}

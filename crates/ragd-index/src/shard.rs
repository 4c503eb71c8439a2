//! One collection's HNSW graph (hnsw_rs) with tombstones.
//!
//! hnsw_rs cannot delete or update a point, so a removed chunk's node stays
//! in the graph as a tombstone: its slot is emptied and searches skip it
//! through hnsw_rs's `FilterT`. [`Shard::build`] makes a fresh graph without
//! them (compaction). Graph node ids ("data ids") are positions in `slots`;
//! they live only in memory: a graph is always rebuilt from vectors on load.

use hnsw_rs::prelude::{Distance, Hnsw};

use crate::config::HnswParams;

/// A chunk's id (stable for the chunk's lifetime, never reused).
pub(crate) type ChunkId = u64;

/// hnsw_rs caps layers at 16; its own examples use that.
const MAX_LAYERS: usize = 16;
/// Batches at least this large are inserted in parallel (rayon).
const PARALLEL_INSERT: usize = 64;

pub(crate) struct Shard {
    params: HnswParams,
    hnsw: Hnsw<'static, f32, Cosine>,
    /// Data id -> chunk, `None` for a tombstone.
    slots: Vec<Option<ChunkId>>,
    live: usize,
}

/// Cosine distance (0 identical .. 2 opposite), used for exact search too so
/// both paths score alike.
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    Cosine.eval(a, b)
}

/// Cosine distance in f32 with eight partial sums, which the compiler turns
/// into SIMD (hnsw_rs's `DistCosine` sums one element at a time in f64:
/// about 3x slower searches and builds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cosine;

impl Distance<f32> for Cosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let (mut dot, mut na, mut nb) = ([0f32; 8], [0f32; 8], [0f32; 8]);
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for j in 0..8 {
                dot[j] += x[j] * y[j];
                na[j] += x[j] * x[j];
                nb[j] += y[j] * y[j];
            }
        }
        let (mut d, mut n1, mut n2) = (
            dot.iter().sum::<f32>(),
            na.iter().sum::<f32>(),
            nb.iter().sum::<f32>(),
        );
        for (x, y) in ra.iter().zip(rb) {
            d += x * y;
            n1 += x * x;
            n2 += y * y;
        }
        if n1 == 0.0 || n2 == 0.0 {
            return 1.0;
        }
        (1.0 - d / (n1 * n2).sqrt()).max(0.0)
    }
}

impl Shard {
    /// A graph holding `items`; their data ids are their positions.
    pub fn build(params: &HnswParams, items: &[(ChunkId, &[f32])]) -> Self {
        // `max_elements` only sizes hnsw_rs's tables and its layer scale.
        let hnsw = Hnsw::new(
            params.m,
            items.len().max(10_000),
            MAX_LAYERS,
            params.ef_construction,
            Cosine,
        );
        let mut shard = Self {
            params: params.clone(),
            hnsw,
            slots: Vec::with_capacity(items.len()),
            live: 0,
        };
        shard.insert(items);
        shard
    }

    /// Adds `items` to the graph and returns their data ids.
    pub fn insert(&mut self, items: &[(ChunkId, &[f32])]) -> Vec<usize> {
        let first = self.slots.len();
        let batch: Vec<(&[f32], usize)> = items
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (*v, first + i))
            .collect();
        if batch.len() >= PARALLEL_INSERT {
            self.hnsw.parallel_insert_slice(&batch);
        } else {
            batch.iter().for_each(|&item| self.hnsw.insert_slice(item));
        }
        self.slots.extend(items.iter().map(|(id, _)| Some(*id)));
        self.live += items.len();
        (first..self.slots.len()).collect()
    }

    /// Turns a node into a tombstone.
    pub fn remove(&mut self, data_id: usize) {
        if let Some(slot) = self.slots.get_mut(data_id) {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
    }

    /// Tombstones still in the graph.
    pub fn tombstones(&self) -> usize {
        self.slots.len() - self.live
    }

    /// All nodes, live and dead.
    pub fn nodes(&self) -> usize {
        self.slots.len()
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Approximate nearest live chunks accepted by `accept`, nearest first,
    /// as `(chunk, cosine distance)`; at most `k`, fewer when the search
    /// ran out of accepted candidates within `ef`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(ChunkId) -> bool,
    ) -> Vec<(ChunkId, f32)> {
        let filter = |data_id: &usize| self.slots.get(*data_id).copied().flatten().is_some_and(accept);
        // hnsw_rs filters only the first `k` of its `ef` candidates, and a
        // rejected entry point can sit among them: ask for all `ef`, keep `k`.
        let ef = ef.max(k);
        let mut hits: Vec<(ChunkId, f32)> = self
            .hnsw
            .search_filter(query, ef, ef, Some(&filter))
            .into_iter()
            .filter_map(|n| {
                let chunk = self.slots.get(n.d_id).copied().flatten()?;
                accept(chunk).then_some((chunk, n.distance))
            })
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.dedup_by_key(|h| h.0);
        hits.truncate(k);
        hits
    }
}

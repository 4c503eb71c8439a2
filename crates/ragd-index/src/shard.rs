//! One collection's HNSW graph (hnsw_rs) with tombstones.
//!
//! hnsw_rs cannot delete or update a point, so a removed chunk's node stays
//! in the graph as a tombstone: its slot is emptied and searches skip it
//! through hnsw_rs's `FilterT`. [`Shard::build`] makes a fresh graph without
//! them (compaction). Graph node ids ("data ids") are positions in `slots`;
//! they live only in memory: a graph is always rebuilt from vectors on load.

use hnsw_rs::prelude::{Distance, Hnsw};
use ragd_kernels::vector::dot;

use crate::config::HnswParams;

/// A chunk's id (stable for the chunk's lifetime, never reused).
pub(crate) type ChunkId = u64;

/// hnsw_rs caps layers at 16; its own examples use that.
const MAX_LAYERS: usize = 16;
/// Batches at least this large are inserted in parallel (rayon).
const PARALLEL_INSERT: usize = 64;

pub(crate) struct Shard {
    params: HnswParams,
    hnsw: Hnsw<'static, f32, UnitCosine>,
    /// Data id -> chunk, `None` for a tombstone.
    slots: Vec<Option<ChunkId>>,
    live: usize,
}

/// Cosine distance (0 identical .. 2 opposite) of two vectors of any
/// length, for exact search; the graph scores unit vectors alike.
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let norms = (dot(a, a) * dot(b, b)).sqrt();
    if norms == 0.0 || !norms.is_finite() {
        return 1.0;
    }
    (1.0 - dot(a, b) / norms).max(0.0)
}

/// `v / |v|`; a zero vector stays zero (distance 1 to everything).
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

/// Cosine distance of unit vectors, `1 - a.b`: the graph stores vectors
/// normalised and normalises each query, so a distance is one dot product
/// (as hnswlib's "cosine" space does; hnsw_rs's `DistCosine` computes both
/// norms every time, in f64, about 5x slower).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
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
            UnitCosine,
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
        let units: Vec<Vec<f32>> = items.iter().map(|(_, v)| unit(v)).collect();
        let batch: Vec<(&[f32], usize)> = units
            .iter()
            .enumerate()
            .map(|(i, v)| (v.as_slice(), first + i))
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

    /// Approximate nearest live chunks accepted by `accept` (every live
    /// chunk when `None`), nearest first, as `(chunk, cosine distance)`; at
    /// most `k`, fewer when the search ran out of accepted candidates
    /// within `ef`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(ChunkId) -> bool>,
    ) -> Vec<(ChunkId, f32)> {
        let query = unit(query);
        let ef = ef.max(k);
        let live = |data_id: usize| self.slots.get(data_id).copied().flatten();
        let neighbours = match accept {
            // Nothing to skip: hnsw_rs's plain search.
            None if self.live == self.slots.len() => self.hnsw.search(&query, k, ef),
            _ => {
                let accept = accept.unwrap_or(&|_| true);
                let filter = |data_id: &usize| live(*data_id).is_some_and(accept);
                // hnsw_rs filters only the first `k` of its `ef` candidates,
                // and a rejected entry point can sit among them: ask for all
                // `ef`, keep `k`.
                self.hnsw
                    .search_filter(&query, ef, ef, Some(&filter))
                    .into_iter()
                    .filter(|n| filter(&n.d_id))
                    .collect()
            }
        };
        let mut hits: Vec<(ChunkId, f32)> = neighbours
            .into_iter()
            .filter_map(|n| Some((live(n.d_id)?, n.distance)))
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.dedup_by_key(|h| h.0);
        hits.truncate(k);
        hits
    }
}

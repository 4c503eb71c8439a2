//! One collection's HNSW graph (hnsw_rs) with tombstones.
//!
//! hnsw_rs cannot delete or update a point, so a removed chunk's node stays
//! in the graph as a tombstone: its slot is emptied and searches skip it
//! through hnsw_rs's `FilterT`. [`Shard::build`] makes a fresh graph without
//! them (compaction). Graph node ids ("data ids") are positions in `slots`;
//! they live only in memory: a graph is always rebuilt from vectors on load.
//!
//! Searches run on a compact copy of the graph ([`FrozenGraph`]), made when
//! the shard is built and refreshed as it grows: nodes inserted since the
//! last copy (the delta, at most 1/64 of the shard and never more than
//! 4,096) are searched exactly beside it.

use hnsw_rs::prelude::{Distance, Hnsw};
use ragd_kernels::vector::dot;

use crate::config::HnswParams;
use crate::graph::FrozenGraph;

/// A chunk's id (stable for the chunk's lifetime, never reused).
/// A chunk's id in its collection (what [`crate::fuse`] ranks and breaks ties by).
pub type ChunkId = u64;

/// hnsw_rs caps layers at 16; its own examples use that.
const MAX_LAYERS: usize = 16;
/// Batches at least this large are inserted in parallel (rayon).
const PARALLEL_INSERT: usize = 64;
/// The delta is copied into the frozen graph once it holds this many
/// nodes, or 1/64 of the shard if more, up to `MAX_DELTA`: copying costs
/// O(shard) and an exact scan of the delta O(delta) per query.
const MIN_DELTA: usize = 256;
const MAX_DELTA: usize = 4_096;

pub(crate) struct Shard {
    params: HnswParams,
    hnsw: Hnsw<'static, f32, UnitCosine>,
    /// Data id -> chunk, `None` for a tombstone.
    slots: Vec<Option<ChunkId>>,
    live: usize,
    /// What searches walk: data ids `0..frozen.len()`.
    frozen: FrozenGraph,
    /// Unit vectors of the nodes inserted since `frozen` was copied (data
    /// ids `frozen.len()..`), `dim` floats each.
    delta: Vec<f32>,
    dim: usize,
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
            frozen: FrozenGraph::default(),
            delta: Vec::new(),
            dim: 0,
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
        if let Some(v) = units.first() {
            self.dim = v.len();
        }
        units.iter().for_each(|v| self.delta.extend_from_slice(v));
        let delta_nodes = self.slots.len() - self.frozen.len();
        if delta_nodes >= (self.slots.len() / 64).clamp(MIN_DELTA, MAX_DELTA) {
            self.frozen = FrozenGraph::copy_of(&self.hnsw, self.slots.len(), self.params.m);
            self.delta.clear();
        }
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
    /// most `k`, fewer when the graph walk reaches fewer accepted chunks.
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
        let takes = |data_id: usize| live(data_id).is_some_and(|c| accept.is_none_or(|f| f(c)));
        let takes_node = |node: u32| takes(node as usize);
        // Nothing to skip: no filter call per node.
        let filter: Option<&dyn Fn(u32) -> bool> = match accept {
            None if self.live == self.slots.len() => None,
            _ => Some(&takes_node),
        };
        let frozen = self.frozen.search(&query, ef, filter);
        let first_delta = self.frozen.len();
        let delta = self
            .delta
            .chunks_exact(self.dim.max(1))
            .enumerate()
            .map(|(i, v)| (first_delta + i, v))
            .filter(|&(data_id, _)| takes(data_id))
            .map(|(data_id, v)| (data_id, (1.0 - dot(&query, v)).max(0.0)));
        let neighbours = frozen.into_iter().map(|(n, d)| (n as usize, d)).chain(delta);
        let mut hits: Vec<(ChunkId, f32)> = neighbours
            .filter_map(|(data_id, d)| Some((live(data_id)?, d)))
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.dedup_by_key(|h| h.0);
        hits.truncate(k);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SplitMix64;

    const DIM: usize = 24;

    fn vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64(seed);
        (0..n).map(|_| (0..DIM).map(|_| rng.unit()).collect()).collect()
    }

    fn items(vs: &[Vec<f32>], first: u64) -> Vec<(ChunkId, &[f32])> {
        vs.iter()
            .enumerate()
            .map(|(i, v)| (first + i as u64, v.as_slice()))
            .collect()
    }

    /// The exact top `k` chunk ids among `vs` (chunk id = position) that `keep` takes.
    fn exact(vs: &[Vec<f32>], query: &[f32], k: usize, keep: impl Fn(u64) -> bool) -> Vec<u64> {
        let mut all: Vec<(u64, f32)> = (0..vs.len() as u64)
            .filter(|&id| keep(id))
            .map(|id| (id, cosine_distance(query, &vs[id as usize])))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all.into_iter().take(k).map(|(id, _)| id).collect()
    }

    /// Mean recall@10 of the shard against exact search over 50 queries.
    fn recall(shard: &Shard, vs: &[Vec<f32>], keep: &dyn Fn(u64) -> bool) -> f64 {
        let queries = vectors(50, 99);
        let mut found = 0;
        for q in &queries {
            let want = exact(vs, q, 10, keep);
            let accept: &dyn Fn(ChunkId) -> bool = keep;
            let got = shard.search(q, 10, 64, Some(accept));
            assert!(got.iter().all(|(id, _)| keep(*id)), "a rejected chunk came back");
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "not nearest first");
            found += got.iter().filter(|(id, _)| want.contains(id)).count();
        }
        found as f64 / (10 * queries.len()) as f64
    }

    #[test]
    fn the_frozen_graph_finds_the_exact_neighbours_and_honours_filters_and_tombstones() {
        let vs = vectors(3_000, 1);
        let mut shard = Shard::build(&HnswParams::default(), &items(&vs, 0));
        assert_eq!(
            shard.frozen.len(),
            3_000,
            "a built shard is searched through its copy"
        );
        let all = recall(&shard, &vs, &|_| true);
        assert!(all >= 0.95, "recall@10 {all}");
        let even = recall(&shard, &vs, &|id| id % 2 == 0);
        assert!(even >= 0.95, "recall@10 with a filter {even}");
        for id in (0..3_000).step_by(3) {
            shard.remove(id);
        }
        let live = recall(&shard, &vs, &|id| id % 3 != 0);
        assert!(live >= 0.95, "recall@10 with tombstones {live}");
    }

    /// Layer-0 lists of 2 * M up to `MAX_M`: every neighbour is scored
    /// (a search step once kept at most 128 of them).
    #[test]
    fn a_large_m_keeps_every_layer_0_neighbour_searchable() {
        let vs = vectors(1_500, 3);
        let params = HnswParams {
            m: crate::config::MAX_M,
            ..HnswParams::default()
        };
        let shard = Shard::build(&params, &items(&vs, 0));
        let r = recall(&shard, &vs, &|_| true);
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn nodes_inserted_after_the_copy_are_found_before_and_after_it_is_refreshed() {
        let vs = vectors(1_500, 2);
        let mut shard = Shard::build(&HnswParams::default(), &items(&vs[..1_000], 0));
        for (i, v) in vs[1_000..].iter().enumerate() {
            let id = 1_000 + i as u64;
            shard.insert(&[(id, v.as_slice())]);
            if i == 10 {
                assert_eq!(shard.frozen.len(), 1_000, "ten inserts stay in the delta");
            }
            let hit = shard.search(v, 1, 32, None);
            assert_eq!(hit[0].0, id, "insert {i} is its own nearest neighbour");
        }
        assert!(shard.frozen.len() > 1_000, "the delta was copied into the graph");
        assert!(shard.frozen.len() + MIN_DELTA > 1_500);
        let r = recall(&shard, &vs, &|_| true);
        assert!(r >= 0.95, "recall@10 {r}");
    }
}

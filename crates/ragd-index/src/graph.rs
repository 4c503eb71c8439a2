//! A compact, read-only copy of a shard's HNSW graph, which searches run on.
//!
//! hnsw_rs builds the graph and takes inserts, but its search walks
//! `Arc`ed points behind locks, keeps the visited set in a hash set and
//! finds vectors scattered over the heap: it ran at 0.3-0.4x hnswlib's
//! queries/s. This copy uses hnswlib's layout: vectors in one contiguous
//! array, layer-0 neighbour lists at a fixed stride in one `u32` array, the
//! upper layers (a few percent of the nodes) in a second one, and a visited
//! set cleared in O(1) per query by bumping a generation stamp. A node's id
//! is its hnsw_rs data id. The cost is a second copy of the vectors.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use hnsw_rs::prelude::{Distance, Hnsw};
use ragd_kernels::memory::advise_huge_pages;
use ragd_kernels::vector::{dot, prefetch};

use crate::config::MAX_M;

/// Marks a node without upper layers in `FrozenGraph::upper_at`.
const NO_UPPER: u32 = u32::MAX;
/// Layer-0 neighbours a node has at most: 2 * M, with M validated to
/// `MAX_M` (`write_list` never stores more than its slot holds).
const MAX_LINKS: usize = 2 * MAX_M;

#[derive(Default)]
pub(crate) struct FrozenGraph {
    dim: usize,
    /// Node `i`'s unit vector at `vectors[i * dim..][..dim]`.
    vectors: Vec<f32>,
    /// Node `i`'s layer-0 list at `base[i * base_stride..]`: the count,
    /// then the neighbours.
    base: Vec<u32>,
    base_stride: usize,
    /// Where node `i`'s layers 1..=level start in `upper` (each layer
    /// `upper_stride` long, count first), or `NO_UPPER`.
    upper_at: Vec<u32>,
    upper: Vec<u32>,
    upper_stride: usize,
    /// The node searches start from, and its level.
    entry: Option<(u32, usize)>,
}

impl FrozenGraph {
    /// Copies `hnsw`'s graph: `nodes` points with data ids `0..nodes`, at
    /// most `m` neighbours per upper layer and `2 * m` on layer 0 (hnsw_rs's
    /// caps).
    pub fn copy_of<D: Distance<f32> + Send + Sync>(
        hnsw: &Hnsw<'static, f32, D>,
        nodes: usize,
        m: usize,
    ) -> Self {
        let points = hnsw.get_point_indexation();
        if points.get_nb_point() == 0 {
            return Self::default();
        }
        let (base_stride, upper_stride) = (2 * m + 1, m + 1);
        let mut graph = Self {
            dim: points.get_data_dimension(),
            base_stride,
            upper_stride,
            ..Self::default()
        };
        graph.vectors = vec![0.0; nodes * graph.dim];
        graph.base = vec![0; nodes * base_stride];
        advise_huge_pages(&mut graph.vectors);
        advise_huge_pages(&mut graph.base);
        graph.upper_at = vec![NO_UPPER; nodes];
        // The iterator goes up the layers: its last point is on the top one.
        for point in points {
            let node = point.get_origin_id();
            let level = point.get_point_id().0 as usize;
            graph.vectors[node * graph.dim..][..graph.dim].copy_from_slice(point.get_v());
            let layers = point.get_neighborhood_id();
            write_list(&mut graph.base[node * base_stride..][..base_stride], &layers[0]);
            if level > 0 {
                graph.upper_at[node] = graph.upper.len() as u32;
                for layer in &layers[1..=level] {
                    let at = graph.upper.len();
                    graph.upper.resize(at + upper_stride, 0);
                    write_list(&mut graph.upper[at..], layer);
                }
            }
            if graph.entry.is_none_or(|(_, top)| level >= top) {
                graph.entry = Some((node as u32, level));
            }
        }
        graph
    }

    /// Nodes in the copy (data ids `0..len`).
    pub fn len(&self) -> usize {
        self.upper_at.len()
    }

    /// The `ef` nearest nodes to the unit vector `query` that `accept`
    /// takes (all when `None`), nearest first, as `(node, 1 - cos)`. As in
    /// hnswlib, rejected nodes are still walked through, and the walk goes
    /// on until `ef` accepted ones are found or the graph runs out.
    pub fn search(&self, query: &[f32], ef: usize, accept: Option<&dyn Fn(u32) -> bool>) -> Vec<(u32, f32)> {
        let Some((entry, top)) = self.entry else {
            return Vec::new();
        };
        let ef = ef.max(1);
        let accepts = |node: u32| accept.is_none_or(|f| f(node));
        let (mut nearest, mut nearest_d) = (entry, self.distance(query, entry));
        for level in (1..=top).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                for &n in self.upper_links(nearest, level) {
                    let d = self.distance(query, n);
                    if d < nearest_d {
                        (nearest, nearest_d, moved) = (n, d, true);
                    }
                }
            }
        }
        SCRATCH.with_borrow_mut(|s| {
            s.start(self.len());
            let Scratch {
                visited,
                candidates,
                results,
                ..
            } = s;
            visited.insert(nearest);
            candidates.push(Reverse(Scored(nearest_d, nearest)));
            if accepts(nearest) {
                results.push(Scored(nearest_d, nearest));
            }
            let bound = |results: &BinaryHeap<Scored>| results.peek().map_or(f32::INFINITY, |s| s.0);
            while let Some(Reverse(Scored(d, node))) = candidates.pop() {
                if d > bound(results) && (results.len() >= ef || accept.is_none()) {
                    break;
                }
                // Unvisited neighbours first, their vectors prefetched all at
                // once: the loads overlap instead of stalling one by one.
                let mut fresh = [0u32; MAX_LINKS];
                let mut count = 0;
                for &n in self.base_links(node) {
                    if visited.insert(n) {
                        prefetch(self.vector(n));
                        fresh[count] = n;
                        count += 1;
                    }
                }
                for &n in &fresh[..count] {
                    let d = self.distance(query, n);
                    if results.len() < ef || d < bound(results) {
                        candidates.push(Reverse(Scored(d, n)));
                        if accepts(n) {
                            results.push(Scored(d, n));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<(u32, f32)> = results.drain().map(|Scored(d, n)| (n, d.max(0.0))).collect();
            out.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            out
        })
    }

    fn vector(&self, node: u32) -> &[f32] {
        &self.vectors[node as usize * self.dim..][..self.dim]
    }

    fn distance(&self, query: &[f32], node: u32) -> f32 {
        1.0 - dot(query, self.vector(node))
    }

    fn base_links(&self, node: u32) -> &[u32] {
        list(&self.base[node as usize * self.base_stride..][..self.base_stride])
    }

    fn upper_links(&self, node: u32, level: usize) -> &[u32] {
        match self.upper_at[node as usize] {
            NO_UPPER => &[],
            at => list(&self.upper[at as usize + (level - 1) * self.upper_stride..][..self.upper_stride]),
        }
    }
}

/// Writes a neighbour list into its slot: the count, then the ids (as many
/// as fit).
fn write_list(slot: &mut [u32], neighbours: &[hnsw_rs::prelude::Neighbour]) {
    let n = neighbours.len().min(slot.len() - 1);
    slot[0] = n as u32;
    for (to, from) in slot[1..=n].iter_mut().zip(neighbours) {
        *to = from.d_id as u32;
    }
}

fn list(slot: &[u32]) -> &[u32] {
    &slot[1..=slot[0] as usize]
}

/// A node and its distance, ordered by distance (then node).
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// A search's working memory, kept per thread between searches.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<Scored>>,
    results: BinaryHeap<Scored>,
}

impl Scratch {
    fn start(&mut self, nodes: usize) {
        self.visited.clear(nodes);
        self.candidates.clear();
        self.results.clear();
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// The nodes seen by one search: a node is visited when its stamp equals
/// the current one, so clearing is one increment (and a real clear once
/// every 2^32 searches, when the stamp wraps).
#[derive(Default)]
struct Visited {
    stamps: Vec<u32>,
    now: u32,
}

impl Visited {
    fn clear(&mut self, nodes: usize) {
        if self.stamps.len() < nodes {
            self.stamps.resize(nodes, 0);
        }
        self.now = self.now.wrapping_add(1);
        if self.now == 0 {
            self.stamps.fill(0);
            self.now = 1;
        }
    }

    /// Marks `node`; false if it was already marked.
    fn insert(&mut self, node: u32) -> bool {
        let stamp = &mut self.stamps[node as usize];
        let new = *stamp != self.now;
        *stamp = self.now;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_visited_set_forgets_every_node_even_when_the_stamp_wraps() {
        let mut v = Visited::default();
        v.clear(4);
        assert!(v.insert(2) && !v.insert(2));
        v.clear(4);
        assert!(v.insert(2));
        v.now = u32::MAX;
        v.stamps.fill(0);
        v.insert(1);
        v.clear(4);
        assert_eq!(v.now, 1);
        assert!(v.insert(1) && v.insert(3));
    }
}

//! Not a stable API: the HNSW shard a collection serves with, reachable
//! without a collection, for `examples/hnsw_bench.rs` (see
//! `benches/hnsw_vs_hnswlib.sh`). It measures the graph alone: no
//! write-ahead log, no document store, no [`crate::Hit`] assembly.
//! Likewise the lexical index, for `examples/lexical_bench.rs`.

use crate::config::HnswParams;
use crate::lexical::LexicalIndex;
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

/// A collection's lexical (BM25) index alone.
#[derive(Default)]
pub struct BenchLexical(LexicalIndex);

impl BenchLexical {
    /// Indexes `text` as chunk `chunk` (as an upsert or a load does).
    pub fn insert(&mut self, chunk: u64, text: &str) {
        self.0.insert(chunk, text);
    }

    /// The unfiltered lexical search of [`crate::Collection::query`]: the
    /// best `k` as `(chunk id, BM25 score)`.
    pub fn search(&self, query: &str, k: usize) -> Vec<(u64, f32)> {
        self.0.search(query, k, None)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// Distinct terms.
    pub fn vocabulary(&self) -> usize {
        self.0.vocabulary()
    }

    /// Bytes of dictionary, postings and slots (see `LexicalIndex::heap_bytes`).
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

/// The index terms of `text` (segmented, lower-cased, stopwords out, stemmed).
pub fn lexical_terms(text: &str) -> Vec<String> {
    crate::lexical::terms(text)
}

//! Settings of one collection (fixed at creation, saved next to its data)
//! and of the whole store (chosen at each start).

use serde::{Deserialize, Serialize};

use crate::{IndexError, Metadata, Result};

/// Largest accepted `HnswParams::m` (hnsw_rs exits the process above 256).
pub(crate) const MAX_M: usize = 128;

/// Largest accepted vector dimension (keeps a typo from allocating gigabytes).
pub const MAX_DIM: usize = 65_536;

/// HNSW graph parameters of a collection's shard.
///
/// The defaults: M 16, ef_construction 128, ef_search 160. With them
/// recall@10 against exact search is about 0.996 on sentence embeddings
/// (`benches/hnsw_vs_hnswlib.sh`) and at least 0.98 on the `recall` test's
/// clustered random vectors (ef_search 128 gave 0.979 there).
/// ef_construction is below hnswlib's usual 200 because hnsw_rs builds at
/// about 2.4x hnswlib's time at equal settings (its per-node `Arc`s, locks
/// and hash sets): 128 builds in 1.2-1.9x hnswlib's time at 200, and a graph
/// is rebuilt from its vectors whenever a collection loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HnswParams {
    /// Links per node (hnsw_rs `max_nb_connection`). hnsw_rs exits the
    /// process above 256, so it is validated to 2..=128.
    pub m: usize,
    /// Candidate list size while building the graph.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to `top_k` when smaller).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 128,
            ef_search: 160,
        }
    }
}

/// What a collection is: its vector dimension, how documents are chunked,
/// its HNSW parameters. Saved in `collection.json` when the collection is
/// created and never changed afterwards (chunks and vectors depend on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// Length of every vector (the embedding model's output size).
    pub dim: usize,
    /// Maximum chunk length in tokens of the embedding model's tokenizer.
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunks of a document (< `chunk_tokens`).
    pub chunk_overlap: usize,
    /// The embedding model the vectors come from, for the record: the index
    /// never checks it, the server may refuse a query embedded by another.
    #[serde(default)]
    pub embedding_model: Option<String>,
    #[serde(default)]
    pub hnsw: HnswParams,
    /// The caller's notes about the collection (any JSON object), kept for
    /// the record; the index never reads them.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

impl CollectionConfig {
    /// A config with the default HNSW parameters and no model recorded.
    pub fn new(dim: usize, chunk_tokens: usize, chunk_overlap: usize) -> Self {
        Self {
            dim,
            chunk_tokens,
            chunk_overlap,
            embedding_model: None,
            hnsw: HnswParams::default(),
            metadata: Metadata::new(),
        }
    }

    /// Checks every field is in range (any store calls it before creating).
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(IndexError::InvalidInput(msg));
        if self.dim == 0 || self.dim > MAX_DIM {
            return fail(format!("dim must be in 1..={MAX_DIM}, got {}", self.dim));
        }
        if self.chunk_tokens == 0 {
            return fail("chunk_tokens must be at least 1".into());
        }
        if self.chunk_overlap >= self.chunk_tokens {
            return fail(format!(
                "chunk_overlap ({}) must be smaller than chunk_tokens ({})",
                self.chunk_overlap, self.chunk_tokens
            ));
        }
        let h = &self.hnsw;
        if !(2..=MAX_M).contains(&h.m) {
            return fail(format!("hnsw.m must be in 2..={MAX_M}, got {}", h.m));
        }
        if h.ef_construction < h.m || h.ef_construction > 4096 {
            return fail(format!(
                "hnsw.ef_construction must be in m..=4096, got {}",
                h.ef_construction
            ));
        }
        if h.ef_search == 0 || h.ef_search > 4096 {
            return fail(format!("hnsw.ef_search must be in 1..=4096, got {}", h.ef_search));
        }
        Ok(())
    }
}

/// Settings of a [`crate::Store`], chosen each time it is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A collection checkpoints (snapshot + empty log) after a write leaves
    /// its write-ahead log larger than this. Bounds both disk use and replay
    /// time at start-up.
    pub checkpoint_wal_bytes: u64,
    /// A collection's shard is rebuilt without tombstones after a write
    /// leaves more than this fraction of its graph nodes dead.
    pub compact_tombstone_ratio: f64,
    /// ...but only once the graph has at least this many nodes (rebuilding
    /// a tiny graph after every delete is wasted work).
    pub compact_min_points: usize,
    /// Most collections one tenant may have (quarantined ones included):
    /// creating one more fails with [`crate::IndexError::LimitExceeded`].
    /// Collections already on disk all open, whatever their number.
    pub max_collections_per_tenant: usize,
    /// Most documents one collection may hold: an upsert that would pass it
    /// fails with [`crate::IndexError::LimitExceeded`], writing nothing.
    pub max_documents_per_collection: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            checkpoint_wal_bytes: 64 << 20,
            compact_tombstone_ratio: 0.3,
            compact_min_points: 256,
            max_collections_per_tenant: 100,
            max_documents_per_collection: 1_000_000,
        }
    }
}

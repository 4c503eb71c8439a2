//! The data that goes in and out of a collection.
//!
//! Writes take their vectors from the caller, in two steps, so the server
//! can embed with its own batching and without holding any index lock:
//! [`crate::Collection::prepare`] chunks [`DocumentInput`]s into
//! [`PreparedDocument`]s, the caller embeds every chunk text, and
//! [`attach_vectors`] turns them into [`EmbeddedDocument`]s for
//! [`crate::Collection::upsert`].

use serde::{Deserialize, Serialize};

use std::collections::HashSet;

use ragd_core::TextTokenizer;

use crate::chunking::chunk_text_cancellable;
use crate::hybrid::Ranked;
use crate::{Cancel, CollectionConfig, IndexError, Result};

/// A document's metadata: any JSON object; filters compare its values.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Longest accepted document id, in bytes.
pub const MAX_DOC_ID_LEN: usize = 512;

/// A document to be chunked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentInput {
    /// Caller-chosen id; upserting an existing id replaces that document.
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
}

/// A chunked document waiting for its vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedDocument {
    pub id: String,
    pub metadata: Metadata,
    /// Chunk texts in document order; each needs one vector.
    pub chunks: Vec<String>,
}

/// A document ready to be stored: chunks with their vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedDocument {
    pub id: String,
    pub metadata: Metadata,
    pub chunks: Vec<EmbeddedChunk>,
}

/// One chunk and its embedding.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedChunk {
    pub text: String,
    pub vector: Vec<f32>,
}

/// Chunks documents for embedding as `config` says (nothing locked, nothing
/// written): the first step of a write, whatever store it goes to. Rejects
/// empty texts and invalid ids; gives up with [`IndexError::Cancelled`] once
/// `cancel` is set (checked per document and inside chunking).
pub fn prepare_documents(
    config: &CollectionConfig,
    docs: Vec<DocumentInput>,
    tokenizer: &dyn TextTokenizer,
    cancel: &Cancel,
) -> Result<Vec<PreparedDocument>> {
    check_ids(docs.iter().map(|d| d.id.as_str()))?;
    docs.into_iter()
        .map(|d| {
            cancel.check()?;
            let chunks = chunk_text_cancellable(
                &d.text,
                tokenizer,
                config.chunk_tokens,
                config.chunk_overlap,
                cancel,
            )?;
            if chunks.is_empty() {
                return Err(IndexError::InvalidInput(format!(
                    "document `{}` has no text",
                    d.id
                )));
            }
            Ok(PreparedDocument {
                id: d.id,
                metadata: d.metadata,
                chunks,
            })
        })
        .collect()
}

/// Document ids: non-empty, at most [`MAX_DOC_ID_LEN`] bytes, no duplicates
/// in one write (which copy would win is a guess the caller should make).
pub fn check_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for id in ids {
        if id.is_empty() || id.len() > MAX_DOC_ID_LEN {
            return Err(IndexError::InvalidInput(format!(
                "document ids must be 1 to {MAX_DOC_ID_LEN} bytes long"
            )));
        }
        if !seen.insert(id) {
            return Err(IndexError::InvalidInput(format!("document `{id}` appears twice")));
        }
    }
    Ok(())
}

/// A vector a collection of dimension `dim` can store or be searched by:
/// that length, finite, not all zeros (its cosine is undefined).
pub fn check_vector(dim: usize, v: &[f32]) -> Result<()> {
    if v.len() != dim {
        return Err(IndexError::DimensionMismatch {
            expected: dim,
            got: v.len(),
        });
    }
    if !v.iter().all(|x| x.is_finite()) {
        return Err(IndexError::InvalidInput(
            "vector has a NaN or infinite component".into(),
        ));
    }
    if v.iter().all(|&x| x == 0.0) {
        // Cosine distance is undefined for it (hnsw_rs returns 0: "identical").
        return Err(IndexError::InvalidInput("vector is all zeros".into()));
    }
    Ok(())
}

/// Every chunk text of `docs`, in order: the batch to embed for
/// [`attach_vectors`].
pub fn chunk_texts(docs: &[PreparedDocument]) -> Vec<String> {
    docs.iter().flat_map(|d| d.chunks.iter().cloned()).collect()
}

/// Pairs prepared documents with the vectors of [`chunk_texts`] (same
/// order, one per chunk).
pub fn attach_vectors(docs: Vec<PreparedDocument>, vectors: Vec<Vec<f32>>) -> Result<Vec<EmbeddedDocument>> {
    let needed: usize = docs.iter().map(|d| d.chunks.len()).sum();
    if vectors.len() != needed {
        return Err(IndexError::Embedding(format!(
            "{} vectors for {needed} chunks",
            vectors.len()
        )));
    }
    let mut vectors = vectors.into_iter();
    Ok(docs
        .into_iter()
        .map(|d| EmbeddedDocument {
            id: d.id,
            metadata: d.metadata,
            chunks: d
                .chunks
                .into_iter()
                .zip(vectors.by_ref())
                .map(|(text, vector)| EmbeddedChunk { text, vector })
                .collect(),
        })
        .collect())
}

/// What an upsert did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UpsertOutcome {
    /// Documents written.
    pub documents: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Documents among them that replaced an existing one.
    pub replaced: usize,
}

/// One search result: a chunk, its document and its similarity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hit {
    pub doc_id: String,
    /// Stable id of the chunk (unique in its collection, never reused).
    pub chunk_id: u64,
    /// Position of the chunk in its document, from 0.
    pub chunk_index: usize,
    /// The score the hits are ordered by: in a dense search the cosine
    /// similarity to the query (1 - cosine distance, -1..=1), in a lexical
    /// one the BM25 score, in a hybrid one the fused score.
    pub score: f32,
    /// Its rank and cosine similarity among the dense candidates; `None`
    /// when the dense search did not run or did not return it.
    pub dense: Option<Ranked>,
    /// Its rank and BM25 score among the lexical candidates; `None` when
    /// the lexical search did not run or did not return it.
    pub lexical: Option<Ranked>,
    pub text: String,
    /// The document's metadata.
    pub metadata: Metadata,
}

/// A stored document, as [`crate::Collection::document`] returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentInfo {
    pub id: String,
    pub metadata: Metadata,
    /// Its chunk texts in order.
    pub chunks: Vec<String>,
}

/// One document in a listing: its id, metadata and number of chunks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DocumentSummary {
    pub id: String,
    pub metadata: Metadata,
    pub chunks: usize,
}

/// Sizes of one collection (for gauges and listings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectionStats {
    pub documents: usize,
    pub chunks: usize,
    /// Dead graph nodes awaiting compaction.
    pub tombstones: usize,
    /// Bytes in the write-ahead log since the last checkpoint.
    pub wal_bytes: u64,
    /// Why the last automatic checkpoint failed, if it did (the writes are
    /// safe in the log; the log just keeps growing until one succeeds).
    pub checkpoint_error: Option<String>,
    /// Bytes of a torn last log record cut off when the collection was
    /// opened (0 after a clean stop): the write it held never returned `Ok`.
    pub torn_bytes_dropped: u64,
}

/// Totals over a store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Tenants with at least one collection.
    pub tenants: usize,
    pub collections: usize,
    pub documents: usize,
    pub chunks: usize,
}

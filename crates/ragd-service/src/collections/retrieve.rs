//! Retrieval: a query embedded, the nearest chunks of one collection.
//! The search endpoint, RAG chat and `ragd query --data-dir` all come here.

use std::sync::Arc;
use std::time::Instant;

use ragd_index::{Collection, Hit, Metadata, MetadataFilter};
use serde::Serialize;
use tracing::Instrument;

use super::blocking::blocking;
use crate::embedding::{embed, Input};
use crate::error::ServiceError;
use crate::models::ModelHandle;

/// A retrieved chunk: its place in the collection, its text and score.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetrievedChunk {
    pub document_id: String,
    pub chunk_id: u64,
    pub chunk_index: usize,
    /// Cosine similarity to the query.
    pub score: f32,
    pub text: String,
    pub metadata: Metadata,
}

impl From<Hit> for RetrievedChunk {
    fn from(h: Hit) -> Self {
        Self {
            document_id: h.doc_id,
            chunk_id: h.chunk_id,
            chunk_index: h.chunk_index,
            score: h.score,
            text: h.text,
            metadata: h.metadata,
        }
    }
}

/// What a search asks for.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub collection: String,
    pub query: String,
    pub top_k: usize,
    /// Metadata equality: every key must have exactly this value.
    pub filter: Metadata,
}

/// What [`search`] found, best first, the query's tokens and the seconds
/// the index search took (the embedding not included).
#[derive(Debug)]
pub struct Found {
    pub chunks: Vec<RetrievedChunk>,
    pub tokens: usize,
    pub seconds: f64,
}

/// Embeds `query` with `handle` and returns the `top_k` chunks of
/// `collection` closest to it that pass `filter` (`Metadata` equality;
/// empty: every chunk).
pub async fn search(
    collection: Arc<Collection>,
    handle: &ModelHandle,
    query: String,
    top_k: usize,
    filter: Metadata,
) -> Result<Found, ServiceError> {
    let filter = (!filter.is_empty()).then_some(MetadataFilter {
        equals: filter,
        doc_ids: None,
    });
    let (mut vectors, tokens) = embed(handle, vec![Input::Text(query)]).await?;
    let query = vectors
        .pop()
        .ok_or_else(|| ServiceError::Internal("the embedder returned no vector".into()))?;
    let span = tracing::info_span!("search", top_k = top_k as i64, hits = tracing::field::Empty);
    let (hits, seconds) = blocking(move || {
        let t0 = Instant::now();
        let hits = collection.search(&query, top_k, filter.as_ref())?;
        Ok((hits, t0.elapsed().as_secs_f64()))
    })
    .instrument(span.clone())
    .await?;
    span.record("hits", hits.len() as i64);
    Ok(Found {
        chunks: hits.into_iter().map(RetrievedChunk::from).collect(),
        tokens,
        seconds,
    })
}

//! Retrieval: the chunks of one collection best for a query, found by
//! its vector (dense), its words (lexical, BM25) or both fused (hybrid,
//! the default). The search endpoint, RAG chat and `ragd query --data-dir`
//! all come here.

use std::time::Instant;

use ragd_index::{Fusion, Hit, Metadata, MetadataFilter, SearchMode, DEFAULT_DENSE_WEIGHT, DEFAULT_RRF_K};
use serde::Serialize;
use tracing::Instrument;

use super::backend::{CollectionHandle, SearchRequest};
use crate::embedding::{embed, Input};
use crate::error::ServiceError;
use crate::models::ModelHandle;

/// A retrieved chunk: its place in the collection, its text and scores.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RetrievedChunk {
    pub document_id: String,
    pub chunk_id: u64,
    pub chunk_index: usize,
    /// The retrieval's score: the cosine similarity (`dense`), the BM25
    /// score (`lexical`) or the fused score (`hybrid`). What the chunks
    /// are ordered by, unless they were reranked.
    pub score: f32,
    /// Rank (from 1) and cosine similarity among the dense candidates;
    /// `None` when the dense search did not run or did not return it.
    pub dense_rank: Option<usize>,
    pub dense_score: Option<f32>,
    /// Rank (from 1) and BM25 score among the lexical candidates; `None`
    /// when the lexical search did not run or did not return it.
    pub lexical_rank: Option<usize>,
    pub lexical_score: Option<f32>,
    /// The cross-encoder's relevance score (sigmoid of its logit) when RAG
    /// reranked the candidates: then the chunks are ordered by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f32>,
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
            dense_rank: h.dense.map(|r| r.rank),
            dense_score: h.dense.map(|r| r.score),
            lexical_rank: h.lexical.map(|r| r.rank),
            lexical_score: h.lexical.map(|r| r.score),
            rerank_score: None,
            text: h.text,
            metadata: h.metadata,
        }
    }
}

/// How a search ranks: which retrievers, and how hybrid fuses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Ranking {
    pub mode: SearchMode,
    pub fusion: Fusion,
}

impl Ranking {
    /// The ranking a request asks for, from its optional fields: `mode`
    /// (`dense`, `lexical` or `hybrid`, the default), `fusion` (`rrf`, the
    /// default, or `weighted`), `rrf_k` (RRF's k >= 0, default 60; only
    /// with `rrf`) and `dense_weight` (0..=1, default 0.5; only with
    /// `weighted`). Anything else is a 400 naming the field.
    pub fn parse(
        mode: Option<&str>,
        fusion: Option<&str>,
        rrf_k: Option<f64>,
        dense_weight: Option<f64>,
    ) -> Result<Self, ServiceError> {
        let mode = match mode {
            None => SearchMode::default(),
            Some(m) => SearchMode::parse(m).ok_or_else(|| {
                ServiceError::invalid(
                    format!("`mode` must be `dense`, `lexical` or `hybrid`, got `{m}`"),
                    "mode",
                )
            })?,
        };
        let fusion = match fusion.unwrap_or("rrf") {
            "rrf" => {
                if dense_weight.is_some() {
                    return Err(ServiceError::invalid(
                        "`dense_weight` goes with `\"fusion\": \"weighted\"`",
                        "dense_weight",
                    ));
                }
                let k = rrf_k.unwrap_or(f64::from(DEFAULT_RRF_K));
                if !(k.is_finite() && (0.0..=1e6).contains(&k)) {
                    return Err(ServiceError::invalid(
                        format!("`rrf_k` must be a number from 0 to 1000000, got {k}"),
                        "rrf_k",
                    ));
                }
                Fusion::Rrf { k: k as f32 }
            }
            "weighted" => {
                if rrf_k.is_some() {
                    return Err(ServiceError::invalid(
                        "`rrf_k` goes with `\"fusion\": \"rrf\"`",
                        "rrf_k",
                    ));
                }
                let w = dense_weight.unwrap_or(f64::from(DEFAULT_DENSE_WEIGHT));
                if !(0.0..=1.0).contains(&w) {
                    return Err(ServiceError::invalid(
                        format!("`dense_weight` must be from 0 to 1, got {w}"),
                        "dense_weight",
                    ));
                }
                Fusion::Weighted {
                    dense_weight: w as f32,
                }
            }
            other => {
                return Err(ServiceError::invalid(
                    format!("`fusion` must be `rrf` or `weighted`, got `{other}`"),
                    "fusion",
                ))
            }
        };
        Ok(Self { mode, fusion })
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
    pub ranking: Ranking,
}

/// What [`search`] found, best first, the query's tokens (0 when it was
/// not embedded: a lexical search) and the seconds the index search took
/// (the embedding not included).
#[derive(Debug)]
pub struct Found {
    pub chunks: Vec<RetrievedChunk>,
    pub tokens: usize,
    pub seconds: f64,
}

/// The `top_k` chunks of `collection` best for `query` as `ranking`
/// says, among those passing `filter` (`Metadata` equality; empty: every
/// chunk). The query is embedded with `handle` unless the search is
/// lexical.
pub async fn search(
    collection: &dyn CollectionHandle,
    handle: &ModelHandle,
    query: String,
    top_k: usize,
    filter: Metadata,
    ranking: Ranking,
) -> Result<Found, ServiceError> {
    let filter = (!filter.is_empty()).then_some(MetadataFilter {
        equals: filter,
        doc_ids: None,
    });
    let (vector, tokens) = if ranking.mode.needs_vector() {
        let (mut vectors, tokens) = embed(handle, vec![Input::Text(query.clone())]).await?;
        let vector = vectors
            .pop()
            .ok_or_else(|| ServiceError::Internal("the embedder returned no vector".into()))?;
        (Some(vector), tokens)
    } else {
        (None, 0)
    };
    let span = tracing::info_span!(
        "search",
        top_k = top_k as i64,
        mode = ranking.mode.as_str(),
        hits = tracing::field::Empty
    );
    let request = SearchRequest {
        vector,
        text: query,
        mode: ranking.mode,
        fusion: ranking.fusion,
        top_k,
        filter,
    };
    let t0 = Instant::now();
    let hits = collection.query(request).instrument(span.clone()).await?;
    let seconds = t0.elapsed().as_secs_f64();
    span.record("hits", hits.len() as i64);
    Ok(Found {
        chunks: hits.into_iter().map(RetrievedChunk::from).collect(),
        tokens,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(e: ServiceError) -> Option<String> {
        match e {
            ServiceError::Invalid { param, .. } => param,
            other => panic!("not a 400: {other}"),
        }
    }

    #[test]
    fn ranking_defaults_and_errors_name_the_field() {
        let default = Ranking::parse(None, None, None, None).unwrap();
        assert_eq!(default.mode, SearchMode::Hybrid);
        assert_eq!(default.fusion, Fusion::Rrf { k: 60.0 });
        let r = Ranking::parse(Some("lexical"), Some("weighted"), None, Some(0.25)).unwrap();
        assert_eq!(r.mode, SearchMode::Lexical);
        assert_eq!(r.fusion, Fusion::Weighted { dense_weight: 0.25 });
        let r = Ranking::parse(Some("dense"), None, Some(10.0), None).unwrap();
        assert_eq!(r.fusion, Fusion::Rrf { k: 10.0 });
        let bad = [
            (Ranking::parse(Some("semantic"), None, None, None), "mode"),
            (Ranking::parse(Some("HYBRID"), None, None, None), "mode"),
            (Ranking::parse(None, Some("sum"), None, None), "fusion"),
            (Ranking::parse(None, None, Some(-1.0), None), "rrf_k"),
            (Ranking::parse(None, Some("weighted"), Some(60.0), None), "rrf_k"),
            (
                Ranking::parse(None, Some("weighted"), None, Some(1.5)),
                "dense_weight",
            ),
            (Ranking::parse(None, None, None, Some(0.5)), "dense_weight"),
        ];
        for (result, field) in bad {
            assert_eq!(param(result.unwrap_err()).as_deref(), Some(field));
        }
    }
}

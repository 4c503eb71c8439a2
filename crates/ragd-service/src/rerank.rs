//! Reranking with the cross-encoder: `/v1/rerank` ([`rerank`]) and RAG's
//! `"rerank": true` ([`rerank_chunks`]).
//!
//! The query and each document are tokenized on the blocking pool, framed
//! as one pair each (`[CLS] query [SEP] document [SEP]`, cut longest-first
//! to the model's window) and scored by the reranker's batch worker, in
//! pieces that fit one batch. A document's `relevance_score` is the
//! sigmoid of the model's logit, in (0, 1): what Text Embeddings Inference
//! returns by default (its `raw_scores: true`, also accepted here, gives
//! the logit itself).

use std::sync::Arc;

use ragd_core::TextTokenizer;
use ragd_models::rerank::{sigmoid, PairFraming};
use tracing::Instrument;

use crate::collections::RetrievedChunk;
use crate::config::RequestLimits;
use crate::embedding::pieces;
use crate::error::ServiceError;
use crate::models::RerankerHandle;

/// What a rerank request asks for.
#[derive(Debug, Clone)]
pub struct RerankQuery {
    pub query: String,
    pub documents: Vec<String>,
    /// Keep only the best `top_n` (default: all).
    pub top_n: Option<usize>,
    /// Return the logits instead of their sigmoid.
    pub raw_scores: bool,
}

/// One document's place and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Its position in the request's `documents`.
    pub index: usize,
    pub relevance_score: f32,
}

/// The documents best first, and the tokens the model read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reranked {
    pub results: Vec<Ranked>,
    pub tokens: usize,
}

/// Checks `q` against `limits`: a non-empty query, 1 to `max_inputs`
/// documents, each text at most `max_input_bytes`, `top_n` at least 1.
pub fn check(q: &RerankQuery, limits: &RequestLimits) -> Result<(), ServiceError> {
    let max_bytes = limits.max_input_bytes;
    if q.query.trim().is_empty() {
        return Err(ServiceError::invalid("`query` must not be empty", "query"));
    }
    if q.query.len() > max_bytes {
        return Err(ServiceError::too_long("query", q.query.len(), max_bytes, "query"));
    }
    if q.documents.is_empty() {
        return Err(ServiceError::invalid(
            "`documents` must not be empty",
            "documents",
        ));
    }
    if q.documents.len() > limits.max_inputs {
        return Err(ServiceError::invalid(
            format!(
                "`documents` holds {} texts; at most {} are allowed",
                q.documents.len(),
                limits.max_inputs
            ),
            "documents",
        ));
    }
    if let Some((i, d)) = q.documents.iter().enumerate().find(|(_, d)| d.len() > max_bytes) {
        let field = format!("documents[{i}]");
        return Err(ServiceError::too_long(&field, d.len(), max_bytes, "documents"));
    }
    if q.top_n == Some(0) {
        return Err(ServiceError::invalid("`top_n` must be at least 1", "top_n"));
    }
    Ok(())
}

/// Checks `q` ([`check`]), scores every document against the query and
/// returns them best first (ties: in request order), the best `top_n`.
pub async fn rerank(
    handle: &RerankerHandle,
    q: RerankQuery,
    limits: &RequestLimits,
) -> Result<Reranked, ServiceError> {
    check(&q, limits)?;
    let span = tracing::info_span!(
        "rerank",
        gen_ai.request.model = %handle.model.info.id,
        documents = q.documents.len() as i64,
        gen_ai.usage.input_tokens = tracing::field::Empty,
    );
    let (logits, tokens) = score(handle, q.query, q.documents)
        .instrument(span.clone())
        .await?;
    span.record("gen_ai.usage.input_tokens", tokens as i64);
    let mut results: Vec<Ranked> = (logits.into_iter().enumerate())
        .map(|(index, logit)| Ranked {
            index,
            relevance_score: if q.raw_scores { logit } else { sigmoid(logit) },
        })
        .collect();
    results.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
    results.truncate(q.top_n.unwrap_or(usize::MAX));
    Ok(Reranked { results, tokens })
}

/// RAG's rerank: scores `chunks` against `question`, sets each one's
/// `rerank_score` (the sigmoid) and keeps the best `top_k`, best first.
pub async fn rerank_chunks(
    handle: &RerankerHandle,
    question: String,
    chunks: Vec<RetrievedChunk>,
    top_k: usize,
) -> Result<Vec<RetrievedChunk>, ServiceError> {
    if chunks.is_empty() {
        return Ok(chunks);
    }
    let span = tracing::info_span!("rerank", gen_ai.request.model = %handle.model.info.id, documents = chunks.len() as i64);
    let texts = chunks.iter().map(|c| c.text.clone()).collect();
    let (logits, _) = score(handle, question, texts).instrument(span).await?;
    let mut chunks: Vec<RetrievedChunk> = (chunks.into_iter().zip(logits))
        .map(|(mut c, logit)| {
            c.rerank_score = Some(sigmoid(logit));
            c
        })
        .collect();
    // Stable: equal scores keep the retrieval's order.
    chunks.sort_by(|a, b| {
        b.rerank_score
            .unwrap_or(0.0)
            .total_cmp(&a.rerank_score.unwrap_or(0.0))
    });
    chunks.truncate(top_k);
    Ok(chunks)
}

/// The logit of each (query, document) pair, in order, and the tokens of
/// all pairs.
async fn score(
    handle: &RerankerHandle,
    query: String,
    documents: Vec<String>,
) -> Result<(Vec<f32>, usize), ServiceError> {
    let seqs = frame_pairs(
        handle.model.tokenizer.clone(),
        handle.pairs.clone(),
        query,
        documents,
    )
    .await?;
    let tokens = seqs.iter().map(Vec::len).sum();
    let mut logits = Vec::with_capacity(seqs.len());
    for piece in pieces(seqs, &handle.model.batch) {
        let out = handle.model.worker.run(piece).await?;
        logits.extend(out.into_iter().map(|v| v.first().copied().unwrap_or(f32::NAN)));
    }
    Ok((logits, tokens))
}

/// Tokenizes the texts (literally: special-token strings in them are
/// text) on the blocking pool and frames one pair per document.
async fn frame_pairs(
    tokenizer: Arc<dyn TextTokenizer>,
    pairs: PairFraming,
    query: String,
    documents: Vec<String>,
) -> Result<Vec<Vec<u32>>, ServiceError> {
    let span = tracing::debug_span!("tokenize", inputs = documents.len() + 1);
    tokio::task::spawn_blocking(move || {
        let q = tokenizer.encode_literal(&query)?;
        (documents.iter())
            .map(|d| Ok(pairs.frame(&q, &tokenizer.encode_literal(d)?)))
            .collect()
    })
    .instrument(span)
    .await
    .map_err(|e| ServiceError::task("tokenizer", e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(query: &str, documents: &[&str], top_n: Option<usize>) -> RerankQuery {
        RerankQuery {
            query: query.into(),
            documents: documents.iter().map(|d| d.to_string()).collect(),
            top_n,
            raw_scores: false,
        }
    }

    fn param(r: Result<(), ServiceError>) -> Option<String> {
        match r {
            Err(ServiceError::Invalid { param, .. }) => param,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn bad_requests_name_the_field() {
        let limits = RequestLimits {
            max_inputs: 2,
            max_input_bytes: 8,
            ..RequestLimits::default()
        };
        assert!(check(&query("q", &["a", ""], Some(5)), &limits).is_ok());
        let cases = [
            (query(" ", &["a"], None), "query"),
            (query("123456789", &["a"], None), "query"),
            (query("q", &[], None), "documents"),
            (query("q", &["a", "b", "c"], None), "documents"),
            (query("q", &["a", "123456789"], None), "documents"),
            (query("q", &["a"], Some(0)), "top_n"),
        ];
        for (q, field) in cases {
            assert_eq!(param(check(&q, &limits)).as_deref(), Some(field), "{q:?}");
        }
    }
}

//! `POST /v1/rerank` (and `/rerank`), in the shape Cohere, Jina, vLLM and
//! Text Embeddings Inference's Cohere-style route share: `{model, query,
//! documents, top_n?, return_documents?}` in, `{model, results: [{index,
//! relevance_score, document?: {text}}], usage}` out, best first.

use axum::extract::State;
use axum::Json as AxumJson;
use serde::{Deserialize, Serialize};

use ragd_service::rerank::{rerank, RerankQuery};
use ragd_service::Usage;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    /// The reranker's id; optional (the server runs one).
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<Document>,
    /// Keep only the best `top_n` (default: all).
    pub top_n: Option<usize>,
    /// Put each document's text in its result (default false).
    #[serde(default)]
    pub return_documents: bool,
    /// Text Embeddings Inference's switch: the model's logits instead of
    /// their sigmoid (default false).
    #[serde(default)]
    pub raw_scores: bool,
}

/// A document: a string, or `{"text": ...}` (Cohere v1, Jina).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) | Self::Object { text } => text,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RerankResponse {
    pub model: String,
    pub results: Vec<RerankResult>,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct RerankResult {
    /// The document's position in the request.
    pub index: usize,
    /// Sigmoid of the cross-encoder's logit, in (0, 1) (the logit with
    /// `raw_scores`).
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize)]
pub struct DocumentText {
    pub text: String,
}

pub async fn rerank_documents(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Json(req): Json<RerankRequest>,
) -> Result<AxumJson<RerankResponse>, ApiError> {
    let handle = state.reranker(req.model.as_deref(), &tenant)?;
    let documents: Vec<String> = req.documents.into_iter().map(Document::into_text).collect();
    // The texts go back in the answer only when asked.
    let mut returned = req.return_documents.then(|| documents.clone());
    let query = RerankQuery {
        query: req.query,
        documents,
        top_n: req.top_n,
        raw_scores: req.raw_scores,
    };
    let ranked = rerank(&handle, query, &state.request_limits).await?;
    let results = (ranked.results.into_iter())
        .map(|r| RerankResult {
            index: r.index,
            relevance_score: r.relevance_score,
            document: (returned.as_mut()).map(|texts| DocumentText {
                text: std::mem::take(&mut texts[r.index]),
            }),
        })
        .collect();
    Ok(AxumJson(RerankResponse {
        model: handle.model.info.id,
        results,
        usage: Usage::input(ranked.tokens),
    }))
}

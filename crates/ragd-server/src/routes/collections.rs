//! The collections API: each tenant's knowledge base over `ragd_index`.
//!
//! - `POST /v1/collections`, `GET /v1/collections`,
//!   `GET /v1/collections/{name}`, `DELETE /v1/collections/{name}`
//! - `POST /v1/collections/{name}/documents` (batch upsert),
//!   `DELETE /v1/collections/{name}/documents/{id}`
//! - `POST /v1/collections/{name}/search` (dense, lexical or hybrid)
//!
//! Every call is keyed by the request's tenant: another tenant's
//! collection is a 404 exactly like a missing one. The work itself
//! (chunking, embedding, upsert, search) is `ragd_service::collections`,
//! which the offline `ragd ingest --data-dir` shares.

use axum::extract::State;
use axum::Json as AxumJson;
use ragd_index::{DocumentInput, Metadata};
use ragd_service::collections::{CollectionSummary, Ranking, RetrievedChunk, SearchQuery, Upserted};
use ragd_service::Usage;
use serde::{Deserialize, Serialize};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::json::Json;
use crate::path::Path;
use crate::state::AppState;

/// Most `top_k` when the request gives none.
const DEFAULT_TOP_K: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    pub name: String,
    pub chunk_tokens: Option<usize>,
    pub chunk_overlap: Option<usize>,
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertDocuments {
    pub documents: Vec<DocumentBody>,
}

impl UpsertDocuments {
    /// The documents as the index takes them.
    pub fn into_inputs(self) -> Vec<DocumentInput> {
        self.documents
            .into_iter()
            .map(|d| DocumentInput {
                id: d.id,
                text: d.text,
                metadata: d.metadata,
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentBody {
    /// Upserting an existing id replaces that document.
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: Option<usize>,
    /// Metadata equality: every key must have exactly this value.
    #[serde(default)]
    pub filter: Metadata,
    /// `dense`, `lexical` or `hybrid` (default).
    pub mode: Option<String>,
    /// How `hybrid` fuses: `rrf` (default) or `weighted`.
    pub fusion: Option<String>,
    /// Reciprocal-rank fusion's k (default 60).
    pub rrf_k: Option<f64>,
    /// Weighted fusion's share of the dense score (default 0.5).
    pub dense_weight: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CollectionObject {
    pub object: &'static str,
    pub name: String,
    pub dim: usize,
    pub chunk_tokens: usize,
    pub chunk_overlap: usize,
    pub embedding_model: Option<String>,
    pub metadata: Metadata,
    pub documents: usize,
    pub chunks: usize,
}

#[derive(Debug, Serialize)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Serialize)]
pub struct UpsertResponse {
    pub object: &'static str,
    pub collection: String,
    /// Documents written.
    pub documents: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Documents among them that replaced one with the same id.
    pub replaced: usize,
    pub usage: Usage,
}

#[derive(Debug, Serialize)]
pub struct SearchHit {
    pub object: &'static str,
    pub document_id: String,
    pub chunk_id: u64,
    pub chunk_index: usize,
    /// The fused score in `hybrid` mode, else the one retriever's.
    pub score: f32,
    /// Rank (from 1) and cosine similarity among the dense candidates;
    /// null when the dense search did not run or did not return the chunk.
    pub dense_rank: Option<usize>,
    pub dense_score: Option<f32>,
    /// Rank (from 1) and BM25 score among the lexical candidates; null
    /// when the lexical search did not run or did not return the chunk.
    pub lexical_rank: Option<usize>,
    pub lexical_score: Option<f32>,
    /// RAG with `"rerank": true` only: the reranker's relevance score
    /// (sigmoid of its logit), what the sources are ordered by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f32>,
    pub text: String,
    pub metadata: Metadata,
}

#[derive(Debug, Serialize)]
pub struct SearchResponse {
    pub object: &'static str,
    pub data: Vec<SearchHit>,
    pub model: String,
    pub usage: Usage,
}

impl From<&RetrievedChunk> for SearchHit {
    fn from(c: &RetrievedChunk) -> Self {
        Self {
            object: "search.hit",
            document_id: c.document_id.clone(),
            chunk_id: c.chunk_id,
            chunk_index: c.chunk_index,
            score: c.score,
            dense_rank: c.dense_rank,
            dense_score: c.dense_score,
            lexical_rank: c.lexical_rank,
            lexical_score: c.lexical_score,
            rerank_score: c.rerank_score,
            text: c.text.clone(),
            metadata: c.metadata.clone(),
        }
    }
}

impl From<CollectionSummary> for CollectionObject {
    fn from(c: CollectionSummary) -> Self {
        Self {
            object: "collection",
            name: c.name,
            dim: c.config.dim,
            chunk_tokens: c.config.chunk_tokens,
            chunk_overlap: c.config.chunk_overlap,
            embedding_model: c.config.embedding_model,
            metadata: c.config.metadata,
            documents: c.documents,
            chunks: c.chunks,
        }
    }
}

/// `POST /v1/collections`.
pub async fn create(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Json(req): Json<CreateCollection>,
) -> Result<AxumJson<CollectionObject>, ApiError> {
    let collections = state.collections()?;
    let embedder = state.embedder(&tenant)?;
    let created = (collections)
        .create(
            &tenant,
            req.name,
            &embedder,
            req.chunk_tokens,
            req.chunk_overlap,
            req.metadata,
        )
        .await?;
    Ok(AxumJson(created.into()))
}

/// `GET /v1/collections`: this tenant's collections, by name.
pub async fn list(
    State(state): State<AppState>,
    Authed(tenant): Authed,
) -> Result<AxumJson<List<CollectionObject>>, ApiError> {
    let data = state.collections()?.list(&tenant).await?;
    Ok(AxumJson(List {
        object: "list",
        data: data.into_iter().map(CollectionObject::from).collect(),
    }))
}

/// `GET /v1/collections/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
) -> Result<AxumJson<CollectionObject>, ApiError> {
    let summary = state.collections()?.describe(&tenant, name).await?;
    Ok(AxumJson(summary.into()))
}

/// `DELETE /v1/collections/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
) -> Result<AxumJson<Deleted>, ApiError> {
    state.collections()?.delete(&tenant, name.clone()).await?;
    Ok(AxumJson(Deleted {
        id: name,
        object: "collection.deleted",
        deleted: true,
    }))
}

/// `POST /v1/collections/{name}/documents`: inserts or replaces documents,
/// all or none; durable (fsynced) when it answers 200.
pub async fn upsert(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
    Json(req): Json<UpsertDocuments>,
) -> Result<AxumJson<UpsertResponse>, ApiError> {
    let docs = req.into_inputs();
    let collections = state.collections()?;
    let embedder = state.embedder(&tenant)?;
    let (collection, Upserted { outcome, tokens }) =
        collections.upsert(&tenant, name, &embedder, docs).await?;
    Ok(AxumJson(UpsertResponse {
        object: "collection.upsert",
        collection,
        documents: outcome.documents,
        chunks: outcome.chunks,
        replaced: outcome.replaced,
        usage: Usage::input(tokens),
    }))
}

/// A stored document: its metadata and its chunk texts in order.
#[derive(Debug, Serialize)]
pub struct DocumentObject {
    pub object: &'static str,
    pub id: String,
    pub metadata: Metadata,
    pub chunks: Vec<String>,
}

/// `GET /v1/collections/{name}/documents/{id}`.
pub async fn get_document(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path((name, id)): Path<(String, String)>,
) -> Result<AxumJson<DocumentObject>, ApiError> {
    let found = state.collections()?.document(&tenant, name, id.clone()).await?;
    let doc = found.ok_or_else(|| ApiError::NotFound(format!("document `{id}` not found")))?;
    Ok(AxumJson(DocumentObject {
        object: "document",
        id: doc.id,
        metadata: doc.metadata,
        chunks: doc.chunks,
    }))
}

/// `DELETE /v1/collections/{name}/documents/{id}`.
pub async fn delete_document(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path((name, id)): Path<(String, String)>,
) -> Result<AxumJson<Deleted>, ApiError> {
    let removed = state
        .collections()?
        .delete_document(&tenant, name, id.clone())
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!("document `{id}` not found")));
    }
    Ok(AxumJson(Deleted {
        id,
        object: "document.deleted",
        deleted: true,
    }))
}

/// `POST /v1/collections/{name}/search`: the `top_k` chunks best for
/// `query`, best first: by meaning (`dense`), by words (`lexical`, BM25) or
/// both fused (`hybrid`, the default).
pub async fn search(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
    Json(req): Json<SearchRequest>,
) -> Result<AxumJson<SearchResponse>, ApiError> {
    let ranking = Ranking::parse(
        req.mode.as_deref(),
        req.fusion.as_deref(),
        req.rrf_k,
        req.dense_weight,
    )?;
    let collections = state.collections()?;
    let embedder = state.embedder(&tenant)?;
    let query = SearchQuery {
        collection: name,
        query: req.query,
        top_k: req.top_k.unwrap_or(DEFAULT_TOP_K),
        filter: req.filter,
        ranking,
    };
    let found = collections.retrieve(&tenant, &embedder, query).await?;
    Ok(AxumJson(SearchResponse {
        object: "list",
        data: found.chunks.iter().map(SearchHit::from).collect(),
        model: found.model,
        usage: Usage::input(found.tokens),
    }))
}

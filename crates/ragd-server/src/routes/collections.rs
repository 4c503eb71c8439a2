//! The collections API: each tenant's knowledge base over `ragd_index`.
//!
//! - `POST /v1/collections`, `GET /v1/collections`,
//!   `GET /v1/collections/{name}`, `DELETE /v1/collections/{name}`
//! - `POST /v1/collections/{name}/documents` (batch upsert),
//!   `DELETE /v1/collections/{name}/documents/{id}`
//! - `POST /v1/collections/{name}/search`
//!
//! Every call is keyed by the request's [`Tenant`]: another tenant's
//! collection is a 404 exactly like a missing one. The work itself (chunking,
//! embedding, upsert, search) is in [`crate::knowledge`], which the offline
//! `ragd ingest --data-dir` shares; index calls run on the blocking pool.

use std::sync::Arc;

use crate::path::Path;
use axum::extract::State;
use axum::Json as AxumJson;
use ragd_index::{Collection, DocumentInput, Hit, IndexError, Metadata, MetadataFilter, Store};
use serde::{Deserialize, Serialize};

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::json::Json;
use crate::knowledge::{self, blocking, check_embedder};
use crate::models::ModelHandle;
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
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    fn new(tokens: usize) -> Self {
        Self {
            prompt_tokens: tokens,
            total_tokens: tokens,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SearchHit {
    pub object: &'static str,
    pub document_id: String,
    pub chunk_id: u64,
    pub chunk_index: usize,
    pub score: f32,
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

impl From<Hit> for SearchHit {
    fn from(h: Hit) -> Self {
        Self {
            object: "search.hit",
            document_id: h.doc_id,
            chunk_id: h.chunk_id,
            chunk_index: h.chunk_index,
            score: h.score,
            text: h.text,
            metadata: h.metadata,
        }
    }
}

fn describe(c: &Collection) -> Result<CollectionObject, IndexError> {
    let stats = c.stats()?;
    let config = c.config();
    Ok(CollectionObject {
        object: "collection",
        name: c.name().to_string(),
        dim: config.dim,
        chunk_tokens: config.chunk_tokens,
        chunk_overlap: config.chunk_overlap,
        embedding_model: config.embedding_model.clone(),
        metadata: config.metadata.clone(),
        documents: stats.documents,
        chunks: stats.chunks,
    })
}

/// `tenant`'s collection `name`, and the embedder, which must be the one
/// its vectors came from.
async fn open(
    state: &AppState,
    tenant: &Tenant,
    name: String,
) -> Result<(Arc<Collection>, ModelHandle), ApiError> {
    let store = state.store()?;
    let owner = tenant.clone();
    let collection = blocking(move || store.collection(owner.as_str(), &name)).await?;
    let handle = state.embedder()?.for_tenant(tenant);
    check_embedder(&collection, &handle)?;
    Ok((collection, handle))
}

/// `POST /v1/collections`.
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    Json(req): Json<CreateCollection>,
) -> Result<AxumJson<CollectionObject>, ApiError> {
    let store = state.store()?;
    let handle = state.embedder()?;
    let config = knowledge::collection_config(&handle, req.chunk_tokens, req.chunk_overlap, req.metadata)?;
    let object = blocking(move || {
        let c = store.create_collection(tenant.as_str(), &req.name, config)?;
        describe(&c)
    })
    .await?;
    tracing::info!(collection = %object.name, "collection created");
    Ok(AxumJson(object))
}

/// `GET /v1/collections`: this tenant's collections, by name.
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<AxumJson<List<CollectionObject>>, ApiError> {
    let store = state.store()?;
    let data = blocking(move || {
        let mut out = Vec::new();
        for name in store.list_collections(tenant.as_str())? {
            // Deleted meanwhile: leave it out.
            match store
                .collection(tenant.as_str(), &name)
                .and_then(|c| describe(&c))
            {
                Ok(object) => out.push(object),
                Err(IndexError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })
    .await?;
    Ok(AxumJson(List { object: "list", data }))
}

/// `GET /v1/collections/{name}`.
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
) -> Result<AxumJson<CollectionObject>, ApiError> {
    let store = state.store()?;
    let object = blocking(move || describe(&*store.collection(tenant.as_str(), &name)?)).await?;
    Ok(AxumJson(object))
}

/// `DELETE /v1/collections/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
) -> Result<AxumJson<Deleted>, ApiError> {
    let store: Arc<Store> = state.store()?;
    let id = name.clone();
    blocking(move || store.delete_collection(tenant.as_str(), &name)).await?;
    tracing::info!(collection = %id, "collection deleted");
    Ok(AxumJson(Deleted {
        id,
        object: "collection.deleted",
        deleted: true,
    }))
}

/// `POST /v1/collections/{name}/documents`: inserts or replaces documents,
/// all or none; durable (fsynced) when it answers 200.
pub async fn upsert(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
    Json(req): Json<UpsertDocuments>,
) -> Result<AxumJson<UpsertResponse>, ApiError> {
    let docs = req.into_inputs();
    let (collection, handle) = open(&state, &tenant, name).await?;
    let knowledge::Upserted { outcome, tokens } =
        knowledge::upsert_documents(&collection, &handle, docs, &state.collection_limits).await?;
    state
        .index_metrics
        .ingested_documents
        .inc_by(outcome.documents as u64);
    Ok(AxumJson(UpsertResponse {
        object: "collection.upsert",
        collection: collection.name().to_string(),
        documents: outcome.documents,
        chunks: outcome.chunks,
        replaced: outcome.replaced,
        usage: Usage::new(tokens),
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
    tenant: Tenant,
    Path((name, id)): Path<(String, String)>,
) -> Result<AxumJson<DocumentObject>, ApiError> {
    let store = state.store()?;
    let doc = id.clone();
    let found = blocking(move || store.collection(tenant.as_str(), &name)?.document(&doc)).await?;
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
    tenant: Tenant,
    Path((name, id)): Path<(String, String)>,
) -> Result<AxumJson<Deleted>, ApiError> {
    let store = state.store()?;
    let doc = id.clone();
    let removed = blocking(move || store.collection(tenant.as_str(), &name)?.delete(&[doc])).await?;
    if removed == 0 {
        return Err(ApiError::NotFound(format!("document `{id}` not found")));
    }
    Ok(AxumJson(Deleted {
        id,
        object: "document.deleted",
        deleted: true,
    }))
}

/// `POST /v1/collections/{name}/search`: the `top_k` chunks closest to
/// `query`, best first.
pub async fn search(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
    Json(req): Json<SearchRequest>,
) -> Result<AxumJson<SearchResponse>, ApiError> {
    let top_k = req.top_k.unwrap_or(DEFAULT_TOP_K);
    let (hits, model, tokens) = retrieve(&state, &tenant, name, req.query, top_k, req.filter).await?;
    Ok(AxumJson(SearchResponse {
        object: "list",
        data: hits,
        model,
        usage: Usage::new(tokens),
    }))
}

/// Embeds `query` and searches `tenant`'s collection `name` (the search
/// endpoint and retrieval-augmented chat). Returns the hits, the embedding
/// model and the query's tokens.
pub async fn retrieve(
    state: &AppState,
    tenant: &Tenant,
    name: String,
    query: String,
    top_k: usize,
    filter: Metadata,
) -> Result<(Vec<SearchHit>, String, usize), ApiError> {
    let max_top_k = state.collection_limits.max_top_k;
    if top_k == 0 || top_k > max_top_k {
        return Err(ApiError::invalid(
            format!("`top_k` must be 1 to {max_top_k}, got {top_k}"),
            "top_k",
        ));
    }
    if query.trim().is_empty() {
        return Err(ApiError::invalid("`query` must not be empty", "query"));
    }
    let max_bytes = state.limits.max_input_bytes;
    if query.len() > max_bytes {
        return Err(ApiError::invalid(
            format!(
                "`query` is {} bytes long; at most {max_bytes} are allowed",
                query.len()
            ),
            "query",
        ));
    }
    let (collection, handle) = open(state, tenant, name).await?;
    let filter = if filter.is_empty() {
        None
    } else {
        Some(MetadataFilter {
            equals: filter,
            doc_ids: None,
        })
    };
    let knowledge::Found {
        hits,
        tokens,
        seconds,
    } = knowledge::search(collection, &handle, query, top_k, filter).await?;
    let m = &state.index_metrics;
    m.search_seconds.observe(seconds);
    if let Some(best) = hits.first() {
        m.top_score.observe(f64::from(best.score));
    }
    Ok((
        hits.into_iter().map(SearchHit::from).collect(),
        handle.info.id,
        tokens,
    ))
}

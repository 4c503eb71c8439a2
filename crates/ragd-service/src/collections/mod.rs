//! Each tenant's collections over `ragd_index`: create, list, describe,
//! delete, upsert documents, retrieve. Every call names its [`Tenant`]:
//! another tenant's collection is "not found", exactly like a missing one.
//! Index calls run on the blocking pool.

mod blocking;
mod retrieve;
mod upsert;

use std::sync::Arc;

use ragd_index::{Collection, CollectionConfig, DocumentInfo, DocumentSummary, IndexError, Metadata, Store};

pub use blocking::blocking;
pub use retrieve::{search, Found, Ranking, RetrievedChunk, SearchQuery};
pub use upsert::{check_embedder, collection_config, upsert_documents, Upserted};

use crate::config::CollectionLimits;
use crate::error::ServiceError;
use crate::metrics::IndexMetrics;
use crate::models::ModelHandle;
use crate::tenant::Tenant;

/// A collection as listed: its settings and what it holds.
#[derive(Debug, Clone)]
pub struct CollectionSummary {
    pub name: String,
    pub config: CollectionConfig,
    pub documents: usize,
    pub chunks: usize,
}

fn summary(c: &Collection) -> Result<CollectionSummary, IndexError> {
    let stats = c.stats()?;
    Ok(CollectionSummary {
        name: c.name().to_string(),
        config: c.config().clone(),
        documents: stats.documents,
        chunks: stats.chunks,
    })
}

/// What a retrieval found, the embedding model and the query's tokens.
#[derive(Debug)]
pub struct Retrieval {
    pub chunks: Vec<RetrievedChunk>,
    pub model: String,
    pub tokens: usize,
}

/// The knowledge base as requests use it.
pub struct Collections {
    store: Arc<Store>,
    limits: CollectionLimits,
    /// Longest search query, in bytes.
    max_query_bytes: usize,
    metrics: IndexMetrics,
}

impl Collections {
    pub fn new(
        store: Arc<Store>,
        limits: CollectionLimits,
        max_query_bytes: usize,
        metrics: IndexMetrics,
    ) -> Self {
        Self {
            store,
            limits,
            max_query_bytes,
            metrics,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Largest `top_k` of a search.
    pub fn max_top_k(&self) -> usize {
        self.limits.max_top_k
    }

    pub fn metrics(&self) -> &IndexMetrics {
        &self.metrics
    }

    /// `tenant`'s collection `name`, whose vectors must come from `embedder`.
    pub async fn open(
        &self,
        tenant: &Tenant,
        name: String,
        embedder: &ModelHandle,
    ) -> Result<Arc<Collection>, ServiceError> {
        let collection = self.collection(tenant, name).await?;
        check_embedder(&collection, embedder)?;
        Ok(collection)
    }

    /// `tenant`'s collection `name`, whatever embedded it.
    pub async fn collection(&self, tenant: &Tenant, name: String) -> Result<Arc<Collection>, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || store.collection(owner.as_str(), &name)).await
    }

    /// Creates a collection for vectors of `embedder` (chunking defaults
    /// when `None`).
    pub async fn create(
        &self,
        tenant: &Tenant,
        name: String,
        embedder: &ModelHandle,
        chunk_tokens: Option<usize>,
        chunk_overlap: Option<usize>,
        metadata: Metadata,
    ) -> Result<CollectionSummary, ServiceError> {
        let config = collection_config(embedder, chunk_tokens, chunk_overlap, metadata)?;
        let (store, owner) = (self.store.clone(), tenant.clone());
        let created =
            blocking(move || summary(&*store.create_collection(owner.as_str(), &name, config)?)).await?;
        tracing::info!(collection = %created.name, "collection created");
        Ok(created)
    }

    /// `tenant`'s collections, by name.
    pub async fn list(&self, tenant: &Tenant) -> Result<Vec<CollectionSummary>, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || {
            let mut out = Vec::new();
            for name in store.list_collections(owner.as_str())? {
                // Deleted meanwhile: leave it out.
                match store.collection(owner.as_str(), &name).and_then(|c| summary(&c)) {
                    Ok(s) => out.push(s),
                    Err(IndexError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn describe(&self, tenant: &Tenant, name: String) -> Result<CollectionSummary, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || summary(&*store.collection(owner.as_str(), &name)?)).await
    }

    pub async fn delete(&self, tenant: &Tenant, name: String) -> Result<(), ServiceError> {
        let (store, owner, id) = (self.store.clone(), tenant.clone(), name.clone());
        blocking(move || store.delete_collection(owner.as_str(), &id)).await?;
        tracing::info!(collection = %name, "collection deleted");
        Ok(())
    }

    /// Inserts or replaces `docs`, all or none; durable when it returns.
    pub async fn upsert(
        &self,
        tenant: &Tenant,
        name: String,
        embedder: &ModelHandle,
        docs: Vec<ragd_index::DocumentInput>,
    ) -> Result<(Arc<Collection>, Upserted), ServiceError> {
        let collection = self.open(tenant, name, embedder).await?;
        let upserted = upsert_documents(&collection, embedder, docs, &self.limits).await?;
        (self.metrics.ingested_documents).inc_by(upserted.outcome.documents as u64);
        Ok((collection, upserted))
    }

    /// A stored document (`None`: no such id).
    pub async fn document(
        &self,
        tenant: &Tenant,
        name: String,
        id: String,
    ) -> Result<Option<DocumentInfo>, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || store.collection(owner.as_str(), &name)?.document(&id)).await
    }

    /// Up to `limit` documents after the id `after`, in id order.
    pub async fn list_documents(
        &self,
        tenant: &Tenant,
        name: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DocumentSummary>, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || (store.collection(owner.as_str(), &name)?).list_documents(after.as_deref(), limit))
            .await
    }

    /// Deletes a document; whether it was there.
    pub async fn delete_document(
        &self,
        tenant: &Tenant,
        name: String,
        id: String,
    ) -> Result<bool, ServiceError> {
        let (store, owner) = (self.store.clone(), tenant.clone());
        blocking(move || Ok(store.collection(owner.as_str(), &name)?.delete(&[id])? > 0)).await
    }

    /// Checks the query, embeds it (unless the search is lexical) and
    /// searches `tenant`'s collection.
    pub async fn retrieve(
        &self,
        tenant: &Tenant,
        embedder: &ModelHandle,
        q: SearchQuery,
    ) -> Result<Retrieval, ServiceError> {
        let max_top_k = self.limits.max_top_k;
        if q.top_k == 0 || q.top_k > max_top_k {
            return Err(ServiceError::invalid(
                format!("`top_k` must be 1 to {max_top_k}, got {}", q.top_k),
                "top_k",
            ));
        }
        if q.query.trim().is_empty() {
            return Err(ServiceError::invalid("`query` must not be empty", "query"));
        }
        if q.query.len() > self.max_query_bytes {
            let (bytes, max) = (q.query.len(), self.max_query_bytes);
            return Err(ServiceError::too_long("query", bytes, max, "query"));
        }
        let collection = self.open(tenant, q.collection, embedder).await?;
        let found = search(collection, embedder, q.query, q.top_k, q.filter, q.ranking).await?;
        self.metrics.search_seconds.observe(found.seconds);
        // The best cosine similarity (fused and BM25 scores are on other
        // scales); a lexical search has none.
        let best_dense = (found.chunks.iter())
            .filter_map(|c| c.dense_score)
            .reduce(f32::max);
        if let Some(best) = best_dense {
            self.metrics.top_score.observe(f64::from(best));
        }
        Ok(Retrieval {
            chunks: found.chunks,
            model: embedder.info.id.clone(),
            tokens: found.tokens,
        })
    }

    /// Refreshes the store-wide gauges (at each `/metrics` scrape).
    pub async fn refresh_metrics(&self) {
        let store = self.store.clone();
        // Collection locks may be held by a write: off the async threads.
        if let Ok((stats, quarantined)) =
            tokio::task::spawn_blocking(move || (store.stats(), store.quarantined().len())).await
        {
            let m = &self.metrics;
            m.documents.set(stats.documents as i64);
            m.chunks.set(stats.chunks as i64);
            m.collections.set(stats.collections as i64);
            m.quarantined.set(quarantined as i64);
        }
    }
}

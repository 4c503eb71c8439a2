//! Each tenant's collections, in whichever store the server was started
//! with ([`CollectionBackend`]: in memory under the data folder, or in
//! Postgres): create, list, describe, delete, upsert documents, retrieve.
//! Every call names its [`Tenant`]: another tenant's collection is "not
//! found", exactly like a missing one.

mod backend;
mod blocking;
mod memory;
mod postgres;
mod retrieve;
mod upsert;

use std::sync::Arc;

use ragd_index::{
    CollectionConfig, CollectionStats, CollectionVersion, DocumentInfo, DocumentSummary, Metadata,
};

pub use backend::{CollectionBackend, CollectionHandle, SearchRequest, StoreTotals};
pub use blocking::blocking;
pub use memory::{MemoryBackend, MemoryCollection};
pub use postgres::PostgresBackend;
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

fn summary(c: &dyn CollectionHandle, stats: CollectionStats) -> CollectionSummary {
    CollectionSummary {
        name: c.name().to_string(),
        config: c.config().clone(),
        documents: stats.documents,
        chunks: stats.chunks,
    }
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
    backend: Arc<dyn CollectionBackend>,
    limits: CollectionLimits,
    /// Longest search query, in bytes.
    max_query_bytes: usize,
    metrics: IndexMetrics,
}

impl Collections {
    pub fn new(
        backend: Arc<dyn CollectionBackend>,
        limits: CollectionLimits,
        max_query_bytes: usize,
        metrics: IndexMetrics,
    ) -> Self {
        Self {
            backend,
            limits,
            max_query_bytes,
            metrics,
        }
    }

    pub fn backend(&self) -> &Arc<dyn CollectionBackend> {
        &self.backend
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
    ) -> Result<Arc<dyn CollectionHandle>, ServiceError> {
        let collection = self.collection(tenant, name).await?;
        check_embedder(collection.as_ref(), embedder)?;
        Ok(collection)
    }

    /// `tenant`'s collection `name`, whatever embedded it.
    pub async fn collection(
        &self,
        tenant: &Tenant,
        name: String,
    ) -> Result<Arc<dyn CollectionHandle>, ServiceError> {
        self.backend.open(tenant.as_str(), name).await
    }

    /// The version of `tenant`'s collection `name` (for caches).
    pub async fn version(&self, tenant: &Tenant, name: String) -> Result<CollectionVersion, ServiceError> {
        self.collection(tenant, name).await?.version().await
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
        let created = self.backend.create(tenant.as_str(), name, config).await?;
        tracing::info!(collection = %created.name(), "collection created");
        Ok(summary(created.as_ref(), CollectionStats::default()))
    }

    /// `tenant`'s collections, by name.
    pub async fn list(&self, tenant: &Tenant) -> Result<Vec<CollectionSummary>, ServiceError> {
        let listed = self.backend.list(tenant.as_str()).await?;
        Ok(listed
            .into_iter()
            .map(|(c, stats)| summary(c.as_ref(), stats))
            .collect())
    }

    pub async fn describe(&self, tenant: &Tenant, name: String) -> Result<CollectionSummary, ServiceError> {
        let c = self.collection(tenant, name).await?;
        let stats = c.stats().await?;
        Ok(summary(c.as_ref(), stats))
    }

    pub async fn delete(&self, tenant: &Tenant, name: String) -> Result<(), ServiceError> {
        self.backend.delete(tenant.as_str(), name.clone()).await?;
        tracing::info!(collection = %name, "collection deleted");
        Ok(())
    }

    /// Inserts or replaces `docs`, all or none; durable when it returns.
    /// Returns the collection's name and what was written.
    pub async fn upsert(
        &self,
        tenant: &Tenant,
        name: String,
        embedder: &ModelHandle,
        docs: Vec<ragd_index::DocumentInput>,
    ) -> Result<(String, Upserted), ServiceError> {
        let collection = self.open(tenant, name, embedder).await?;
        let upserted = upsert_documents(collection.as_ref(), embedder, docs, &self.limits).await?;
        (self.metrics.ingested_documents).inc_by(upserted.outcome.documents as u64);
        Ok((collection.name().to_string(), upserted))
    }

    /// A stored document (`None`: no such id).
    pub async fn document(
        &self,
        tenant: &Tenant,
        name: String,
        id: String,
    ) -> Result<Option<DocumentInfo>, ServiceError> {
        self.collection(tenant, name).await?.document(id).await
    }

    /// Up to `limit` documents after the id `after`, in id order.
    pub async fn list_documents(
        &self,
        tenant: &Tenant,
        name: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<DocumentSummary>, ServiceError> {
        (self.collection(tenant, name).await?)
            .list_documents(after, limit)
            .await
    }

    /// Deletes a document; whether it was there.
    pub async fn delete_document(
        &self,
        tenant: &Tenant,
        name: String,
        id: String,
    ) -> Result<bool, ServiceError> {
        Ok(self.collection(tenant, name).await?.delete(vec![id]).await? > 0)
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
        let found = search(
            collection.as_ref(),
            embedder,
            q.query,
            q.top_k,
            q.filter,
            q.ranking,
        )
        .await?;
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
        if let Some(StoreTotals { stats, quarantined }) = self.backend.totals().await {
            let m = &self.metrics;
            m.documents.set(stats.documents as i64);
            m.chunks.set(stats.chunks as i64);
            m.collections.set(stats.collections as i64);
            m.quarantined.set(quarantined as i64);
        }
    }
}

//! Where collections are kept, behind two small traits: a
//! [`CollectionBackend`] (a tenant's collections: create, open, list,
//! delete) hands out [`CollectionHandle`]s (one collection's documents and
//! searches). Two stores implement them: the in-memory store under the data
//! folder ([`super::memory`], the default) and Postgres
//! ([`super::postgres`], `--store postgres://...`). The service above them
//! (validation, chunking, embedding, metrics) is the same for both.
//!
//! Every call names or was opened for one tenant; another tenant's
//! collection is `NotFound`, exactly like a missing one.

use std::sync::Arc;

use async_trait::async_trait;
use ragd_index::{
    Cancel, CollectionConfig, CollectionStats, CollectionVersion, DocumentInfo, DocumentSummary,
    EmbeddedDocument, Fusion, Hit, MetadataFilter, Query, SearchMode, StoreStats, UpsertOutcome,
};

use crate::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A search, owned (it crosses to the blocking pool or the database).
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// The query's embedding: needed by `dense` and `hybrid`.
    pub vector: Option<Vec<f32>>,
    pub text: String,
    pub mode: SearchMode,
    pub fusion: Fusion,
    pub top_k: usize,
    pub filter: Option<MetadataFilter>,
}

impl SearchRequest {
    /// The index's borrowed form of it.
    pub fn as_query(&self) -> Query<'_> {
        Query {
            vector: self.vector.as_deref(),
            text: &self.text,
            mode: self.mode,
            fusion: self.fusion,
            top_k: self.top_k,
            filter: self.filter.as_ref(),
        }
    }
}

/// Store-wide figures for the gauges.
#[derive(Debug, Clone, Default)]
pub struct StoreTotals {
    pub stats: StoreStats,
    /// Collections out of service (the in-memory store's quarantine).
    pub quarantined: usize,
}

/// One collection of one tenant.
#[async_trait]
pub trait CollectionHandle: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn config(&self) -> &CollectionConfig;
    /// The version of its content (see `ragd_index::Collection::version`):
    /// changes with every write; caches key answers by it.
    async fn version(&self) -> Result<CollectionVersion>;
    async fn stats(&self) -> Result<CollectionStats>;
    /// Inserts or replaces documents, all or none; durable when it returns.
    async fn upsert(&self, docs: Vec<EmbeddedDocument>, cancel: Cancel) -> Result<UpsertOutcome>;
    /// Deletes documents by id; how many existed.
    async fn delete(&self, ids: Vec<String>) -> Result<usize>;
    async fn document(&self, id: String) -> Result<Option<DocumentInfo>>;
    /// Up to `limit` documents after the id `after`, in id order.
    async fn list_documents(&self, after: Option<String>, limit: usize) -> Result<Vec<DocumentSummary>>;
    /// The best `top_k` chunks, best first.
    async fn query(&self, q: SearchRequest) -> Result<Vec<Hit>>;
}

/// Every tenant's collections in one store.
#[async_trait]
pub trait CollectionBackend: Send + Sync + std::fmt::Debug {
    /// Which store, for logs (`memory`, `postgres`).
    fn kind(&self) -> &'static str;
    async fn create(
        &self,
        tenant: &str,
        name: String,
        config: CollectionConfig,
    ) -> Result<Arc<dyn CollectionHandle>>;
    async fn open(&self, tenant: &str, name: String) -> Result<Arc<dyn CollectionHandle>>;
    /// `tenant`'s collections by name, with their sizes.
    async fn list(&self, tenant: &str) -> Result<Vec<(Arc<dyn CollectionHandle>, CollectionStats)>>;
    async fn delete(&self, tenant: &str, name: String) -> Result<()>;
    /// Store-wide totals; `None` when they cannot be had now.
    async fn totals(&self) -> Option<StoreTotals>;
    /// Makes the next start fast (the in-memory store snapshots; a
    /// database has nothing to do).
    async fn checkpoint(&self) -> Result<()>;
}

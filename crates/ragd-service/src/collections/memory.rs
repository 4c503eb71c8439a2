//! The in-memory store (`ragd_index`, under the data folder) behind the
//! backend traits: every call goes to the blocking pool, nothing else
//! changes.

use std::sync::Arc;

use async_trait::async_trait;
use ragd_index::{
    Cancel, Collection, CollectionConfig, CollectionStats, CollectionVersion, DocumentInfo, DocumentSummary,
    EmbeddedDocument, Hit, IndexError, Store, UpsertOutcome,
};

use super::backend::{CollectionBackend, CollectionHandle, SearchRequest, StoreTotals};
use super::blocking::blocking;
use crate::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The data folder's store.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: Arc<Store>,
}

impl MemoryBackend {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// One collection of the in-memory store.
#[derive(Debug, Clone)]
pub struct MemoryCollection(pub Arc<Collection>);

fn handle(c: Arc<Collection>) -> Arc<dyn CollectionHandle> {
    Arc::new(MemoryCollection(c))
}

#[async_trait]
impl CollectionHandle for MemoryCollection {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn config(&self) -> &CollectionConfig {
        self.0.config()
    }

    async fn version(&self) -> Result<CollectionVersion> {
        Ok(self.0.version())
    }

    async fn stats(&self) -> Result<CollectionStats> {
        let c = self.0.clone();
        blocking(move || c.stats()).await
    }

    async fn upsert(&self, docs: Vec<EmbeddedDocument>, cancel: Cancel) -> Result<UpsertOutcome> {
        let c = self.0.clone();
        blocking(move || c.upsert_cancellable(docs, &cancel)).await
    }

    async fn delete(&self, ids: Vec<String>) -> Result<usize> {
        let c = self.0.clone();
        blocking(move || c.delete(&ids)).await
    }

    async fn document(&self, id: String) -> Result<Option<DocumentInfo>> {
        let c = self.0.clone();
        blocking(move || c.document(&id)).await
    }

    async fn list_documents(&self, after: Option<String>, limit: usize) -> Result<Vec<DocumentSummary>> {
        let c = self.0.clone();
        blocking(move || c.list_documents(after.as_deref(), limit)).await
    }

    async fn query(&self, q: SearchRequest) -> Result<Vec<Hit>> {
        let c = self.0.clone();
        blocking(move || c.query(&q.as_query())).await
    }
}

#[async_trait]
impl CollectionBackend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn create(
        &self,
        tenant: &str,
        name: String,
        config: CollectionConfig,
    ) -> Result<Arc<dyn CollectionHandle>> {
        let (store, tenant) = (self.store.clone(), tenant.to_string());
        blocking(move || store.create_collection(&tenant, &name, config).map(handle)).await
    }

    async fn open(&self, tenant: &str, name: String) -> Result<Arc<dyn CollectionHandle>> {
        let (store, tenant) = (self.store.clone(), tenant.to_string());
        blocking(move || store.collection(&tenant, &name).map(handle)).await
    }

    async fn list(&self, tenant: &str) -> Result<Vec<(Arc<dyn CollectionHandle>, CollectionStats)>> {
        let (store, tenant) = (self.store.clone(), tenant.to_string());
        blocking(move || {
            let mut out = Vec::new();
            for name in store.list_collections(&tenant)? {
                // Deleted meanwhile: leave it out.
                match store.collection(&tenant, &name).and_then(|c| Ok((c.stats()?, c))) {
                    Ok((stats, c)) => out.push((handle(c), stats)),
                    Err(IndexError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, tenant: &str, name: String) -> Result<()> {
        let (store, tenant) = (self.store.clone(), tenant.to_string());
        blocking(move || store.delete_collection(&tenant, &name)).await
    }

    async fn totals(&self) -> Option<StoreTotals> {
        let store = self.store.clone();
        // Collection locks may be held by a write: off the async threads.
        let (stats, quarantined) =
            tokio::task::spawn_blocking(move || (store.stats(), store.quarantined().len()))
                .await
                .ok()?;
        Some(StoreTotals { stats, quarantined })
    }

    async fn checkpoint(&self) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.checkpoint_all()).await
    }
}

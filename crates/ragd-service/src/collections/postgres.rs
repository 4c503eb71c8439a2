//! The Postgres store (`ragd_pg`, `--store postgres://...`) behind the
//! backend traits. Its calls are async database I/O: no blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use ragd_index::{
    Cancel, CollectionConfig, CollectionStats, CollectionVersion, DocumentInfo, DocumentSummary,
    EmbeddedDocument, Hit, UpsertOutcome,
};
use ragd_pg::{PgCollection, PgStore};

use super::backend::{CollectionBackend, CollectionHandle, SearchRequest, StoreTotals};
use crate::error::ServiceError;

type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Collections in one Postgres database, shared by every replica using it.
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    store: PgStore,
}

impl PostgresBackend {
    pub fn new(store: PgStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

#[derive(Debug)]
struct PostgresCollection(PgCollection);

fn handle(c: PgCollection) -> Arc<dyn CollectionHandle> {
    Arc::new(PostgresCollection(c))
}

#[async_trait]
impl CollectionHandle for PostgresCollection {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn config(&self) -> &CollectionConfig {
        self.0.config()
    }

    async fn version(&self) -> Result<CollectionVersion> {
        Ok(self.0.version().await?)
    }

    async fn stats(&self) -> Result<CollectionStats> {
        Ok(self.0.stats().await?)
    }

    async fn upsert(&self, docs: Vec<EmbeddedDocument>, cancel: Cancel) -> Result<UpsertOutcome> {
        Ok(self.0.upsert(docs, &cancel).await?)
    }

    async fn delete(&self, ids: Vec<String>) -> Result<usize> {
        Ok(self.0.delete(&ids).await?)
    }

    async fn document(&self, id: String) -> Result<Option<DocumentInfo>> {
        Ok(self.0.document(&id).await?)
    }

    async fn list_documents(&self, after: Option<String>, limit: usize) -> Result<Vec<DocumentSummary>> {
        Ok(self.0.list_documents(after.as_deref(), limit).await?)
    }

    async fn query(&self, q: SearchRequest) -> Result<Vec<Hit>> {
        Ok(self.0.query(&q.as_query()).await?)
    }
}

#[async_trait]
impl CollectionBackend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn create(
        &self,
        tenant: &str,
        name: String,
        config: CollectionConfig,
    ) -> Result<Arc<dyn CollectionHandle>> {
        Ok(handle(self.store.create_collection(tenant, &name, config).await?))
    }

    async fn open(&self, tenant: &str, name: String) -> Result<Arc<dyn CollectionHandle>> {
        Ok(handle(self.store.collection(tenant, &name).await?))
    }

    async fn list(&self, tenant: &str) -> Result<Vec<(Arc<dyn CollectionHandle>, CollectionStats)>> {
        let listed = self.store.list_collections(tenant).await?;
        Ok(listed.into_iter().map(|(c, s)| (handle(c), s)).collect())
    }

    async fn delete(&self, tenant: &str, name: String) -> Result<()> {
        Ok(self.store.delete_collection(tenant, &name).await?)
    }

    async fn totals(&self) -> Option<StoreTotals> {
        match self.store.stats().await {
            Ok(stats) => Some(StoreTotals {
                stats,
                quarantined: 0,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the Postgres store");
                None
            }
        }
    }

    async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }
}

//! Opening the knowledge base `ragd serve` was started with: the in-memory
//! store under the data folder (the default), or Postgres (`--store
//! postgres://...`), both behind `ragd_service`'s backend trait.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ragd_index::{Store, StoreOptions};
use ragd_pg::PgStore;
use ragd_service::collections::{CollectionBackend, MemoryBackend, PostgresBackend};

use crate::config::ServeConfig;

/// The store of `config`: Postgres at `config.store` when set, else the
/// data folder `data_dir`; opened (and, for Postgres, migrated) and its
/// size logged. Also the Postgres store itself, for what else lives there
/// (`--keys postgres`).
pub async fn open(
    config: &ServeConfig,
    data_dir: &Path,
) -> anyhow::Result<(Arc<dyn CollectionBackend>, Option<PgStore>)> {
    let options = StoreOptions {
        max_collections_per_tenant: config.max_collections_per_tenant,
        max_documents_per_collection: config.max_documents_per_collection,
        ..StoreOptions::default()
    };
    let (backend, pg): (Arc<dyn CollectionBackend>, _) = match &config.store {
        Some(url) => {
            let store = PgStore::connect(&url.0, options)
                .await
                .context("cannot open the knowledge base in Postgres (--store)")?;
            (Arc::new(PostgresBackend::new(store.clone())), Some(store))
        }
        None => {
            let store = open_folder(data_dir, options).await?;
            (Arc::new(MemoryBackend::new(Arc::new(store))), None)
        }
    };
    if let Some(totals) = backend.totals().await {
        let stats = totals.stats;
        tracing::info!(
            store = backend.kind(),
            tenants = stats.tenants,
            collections = stats.collections,
            documents = stats.documents,
            "knowledge base open"
        );
    }
    Ok((backend, pg))
}

/// The data folder's store, its quarantined collections logged.
async fn open_folder(data_dir: &Path, options: StoreOptions) -> anyhow::Result<Store> {
    let dir = data_dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, options))
        .await
        .context("opening the knowledge base panicked")?
        .with_context(|| format!("cannot open the knowledge base in {}", data_dir.display()))?;
    for q in store.quarantined() {
        tracing::error!(
            tenant = %q.tenant,
            collection = %q.name,
            error = %q.error,
            "collection quarantined: its files failed to load; every other collection serves"
        );
    }
    tracing::info!(path = %data_dir.display(), "data folder open");
    Ok(store)
}

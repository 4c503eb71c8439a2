//! The offline mode of `ragd ingest` and `ragd query` (`--data-dir`): the
//! knowledge base opened in this process, without a server, and the
//! embedder loaded as `ragd serve` loads it.
//!
//! The data folder's advisory lock keeps a running server and an offline
//! command apart: whichever comes second fails at once.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use ragd_index::{IndexError, Metadata, Store, StoreOptions};

use crate::collections::{check_embedder, collection_config, CollectionHandle, MemoryCollection};
use crate::config::ModelsConfig;
use crate::models;
use crate::models::ModelHandle;

/// One tenant's collection in a data folder opened by this process, with
/// the embedder its vectors come from.
pub struct LocalCollection {
    store: Store,
    pub collection: Arc<dyn CollectionHandle>,
    pub handle: ModelHandle,
}

impl LocalCollection {
    /// Opens the data folder `dir` and `tenant`'s collection `name` in it,
    /// creating the collection when `create` says so. The folder is locked
    /// first, so a running server fails this before the embedder loads.
    pub fn open(
        dir: &Path,
        tenant: &str,
        name: &str,
        create: bool,
        models: &ModelsConfig,
    ) -> anyhow::Result<Self> {
        let store = Store::open(dir, StoreOptions::default()).map_err(|e| match e {
            IndexError::Locked(_) => anyhow::anyhow!(
                "the data folder {} is in use (a `ragd serve` running on it?): stop that server, \
                 or drop --data-dir and go through it with --url",
                dir.display()
            ),
            e => {
                anyhow::Error::new(e).context(format!("cannot open the knowledge base in {}", dir.display()))
            }
        })?;
        let device = models.device.open()?;
        let handle = models::load_embedder(models, &device, &prometheus::Registry::new())?
            .context("--data-dir needs an embedding model (--embedder is `none`)")?;
        let collection = match store.collection(tenant, name) {
            Err(IndexError::NotFound(_)) if create => {
                let config = collection_config(&handle, None, None, Metadata::new())?;
                let c = store.create_collection(tenant, name, config)?;
                tracing::info!(tenant, collection = name, "collection created");
                c
            }
            Err(IndexError::NotFound(_)) => {
                anyhow::bail!(
                    "tenant `{tenant}` has no collection `{name}` in {}",
                    dir.display()
                )
            }
            other => other?,
        };
        let collection: Arc<dyn CollectionHandle> = Arc::new(MemoryCollection(collection));
        check_embedder(collection.as_ref(), &handle)?;
        Ok(Self {
            store,
            collection,
            handle,
        })
    }

    /// Checkpoints the data folder (as a server does when it stops, so the
    /// next start loads snapshots instead of replaying logs) and unlocks it.
    pub fn close(self) -> anyhow::Result<()> {
        self.store
            .checkpoint_all()
            .context("checkpointing the knowledge base")
    }
}

//! The store: a connection pool to one database, and each tenant's
//! collections in it (create, open, list, delete, store-wide counts).

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use ragd_index::{
    validate_collection, validate_tenant, CollectionConfig, CollectionStats, IndexError, StoreOptions,
    StoreStats,
};
use tokio_postgres::NoTls;

use crate::collection::PgCollection;
use crate::{migrate, tenant, PgError, Result};

/// Largest vector dimension: pgvector indexes `vector` columns up to 2,000
/// dimensions with HNSW.
pub const MAX_PG_DIM: usize = 2000;

/// Connections per replica.
const POOL_SIZE: usize = 16;

/// Every tenant's collections in one Postgres database.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    options: StoreOptions,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) and
    /// migrates its schema to this ragd's version.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| PgError::Url(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("ragd");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| PgError::Unavailable(e.to_string()))?;
        let mut client = pool.get().await?;
        let applied = migrate::migrate(&mut client).await?;
        tracing::info!(applied = ?applied, version = migrate::LATEST, "postgres store ready");
        Ok(Self { pool, options })
    }

    /// The pool (for other shared state kept in the same database: keys).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates an empty collection for `tenant`, with its HNSW index;
    /// durable when it returns.
    pub async fn create_collection(
        &self,
        tenant: &str,
        name: &str,
        config: CollectionConfig,
    ) -> Result<PgCollection> {
        validate_collection(name)?;
        config.validate()?;
        if config.dim > MAX_PG_DIM {
            return Err(IndexError::InvalidInput(format!(
                "dim must be at most {MAX_PG_DIM} in the Postgres store (pgvector's HNSW limit), got {}",
                config.dim
            ))
            .into());
        }
        let json = serde_json::to_value(&config).map_err(|e| IndexError::InvalidInput(e.to_string()))?;
        crate::collection::storable_json("the collection's metadata", &json)?;
        let incarnation = random_i64();
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, tenant).await?;
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM ragd_collections WHERE tenant = $1",
                &[&tenant],
            )
            .await?
            .get(0);
        let limit = self.options.max_collections_per_tenant;
        if count as usize >= limit {
            return Err(IndexError::LimitExceeded {
                what: "collections per tenant",
                limit,
            }
            .into());
        }
        // A racing create of the same name waits for the other's commit,
        // then inserts nothing.
        let row = tx
            .query_opt(
                "INSERT INTO ragd_collections (tenant, name, config, incarnation) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, name) DO NOTHING RETURNING id",
                &[&tenant, &name, &json, &incarnation],
            )
            .await?;
        let Some(row) = row else {
            return Err(IndexError::AlreadyExists(name.to_string()).into());
        };
        let id: i64 = row.get(0);
        // Index DDL needs the tables' owner.
        tx.batch_execute(&format!("SET LOCAL ROLE NONE; {}", hnsw_index_sql(id, &config)))
            .await?;
        tx.commit().await?;
        Ok(self.handle(tenant, name, id, config, incarnation))
    }

    /// `tenant`'s collection `name`; `NotFound` whether or not another
    /// tenant has one by that name.
    pub async fn collection(&self, tenant: &str, name: &str) -> Result<PgCollection> {
        validate_collection(name)?;
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, tenant).await?;
        // Every request opens its collection: a cached statement saves a
        // round trip each time.
        let lookup = tx
            .prepare_cached(
                "SELECT id, config, incarnation FROM ragd_collections WHERE tenant = $1 AND name = $2",
            )
            .await?;
        let row = tx
            .query_opt(&lookup, &[&tenant, &name])
            .await?
            .ok_or_else(|| IndexError::NotFound(name.to_string()))?;
        tx.commit().await?;
        self.handle_from_row(tenant, name, row.get(0), row.get(1), row.get(2))
    }

    /// `tenant`'s collections by name, with their sizes.
    pub async fn list_collections(&self, tenant: &str) -> Result<Vec<(PgCollection, CollectionStats)>> {
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, tenant).await?;
        let rows = tx
            .query(
                "SELECT c.id, c.name, c.config, c.incarnation,
                        (SELECT count(*) FROM ragd_documents d WHERE d.collection_id = c.id),
                        (SELECT count(*) FROM ragd_chunks k WHERE k.collection_id = c.id)
                 FROM ragd_collections c WHERE c.tenant = $1 ORDER BY c.name",
                &[&tenant],
            )
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                let name: String = r.get(1);
                let c = self.handle_from_row(tenant, &name, r.get(0), r.get(2), r.get(3))?;
                Ok((c, sizes(r.get(4), r.get(5))))
            })
            .collect()
    }

    /// Deletes `tenant`'s collection `name`, its documents, chunks and
    /// index; durable when it returns.
    pub async fn delete_collection(&self, tenant: &str, name: &str) -> Result<()> {
        validate_collection(name)?;
        let mut client = self.pool.get().await?;
        let tx = tenant::transaction(&mut client, tenant).await?;
        let id: i64 = tx
            .query_opt(
                "DELETE FROM ragd_collections WHERE tenant = $1 AND name = $2 RETURNING id",
                &[&tenant, &name],
            )
            .await?
            .ok_or_else(|| IndexError::NotFound(name.to_string()))?
            .get(0);
        tx.batch_execute(&format!(
            "SET LOCAL ROLE NONE; DROP INDEX IF EXISTS {}",
            index_name(id)
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Totals over every tenant (for the store-wide gauges: the owner's
    /// view, unfiltered).
    pub async fn stats(&self) -> Result<StoreStats> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(DISTINCT tenant) FROM ragd_collections),
                        (SELECT count(*) FROM ragd_collections),
                        (SELECT count(*) FROM ragd_documents),
                        (SELECT count(*) FROM ragd_chunks)",
                &[],
            )
            .await?;
        let n = |i: usize| row.get::<_, i64>(i) as usize;
        Ok(StoreStats {
            tenants: n(0),
            collections: n(1),
            documents: n(2),
            chunks: n(3),
        })
    }

    fn handle_from_row(
        &self,
        tenant: &str,
        name: &str,
        id: i64,
        config: serde_json::Value,
        incarnation: i64,
    ) -> Result<PgCollection> {
        validate_tenant(tenant)?;
        let config: CollectionConfig = serde_json::from_value(config).map_err(|e| {
            PgError::Unavailable(format!("collection `{name}` has an unreadable config: {e}"))
        })?;
        Ok(self.handle(tenant, name, id, config, incarnation))
    }

    fn handle(
        &self,
        tenant: &str,
        name: &str,
        id: i64,
        config: CollectionConfig,
        incarnation: i64,
    ) -> PgCollection {
        let max_documents = self.options.max_documents_per_collection;
        PgCollection::new(
            self.pool.clone(),
            tenant,
            name,
            id,
            config,
            incarnation,
            max_documents,
        )
    }
}

/// Sizes as a listing shows them (the rest is the in-memory store's).
pub(crate) fn sizes(documents: i64, chunks: i64) -> CollectionStats {
    CollectionStats {
        documents: documents as usize,
        chunks: chunks as usize,
        ..CollectionStats::default()
    }
}

pub(crate) fn index_name(collection_id: i64) -> String {
    format!("ragd_chunks_hnsw_{collection_id}")
}

/// The HNSW index of one collection: over its rows only, on the vectors
/// cast to its dimension, cosine like the in-memory graph, with its M and
/// ef_construction (clamped to pgvector's ranges: M 2..=100,
/// ef_construction 2M..=1000).
fn hnsw_index_sql(id: i64, config: &CollectionConfig) -> String {
    let m = config.hnsw.m.clamp(2, 100);
    let ef_construction = config.hnsw.ef_construction.clamp(2 * m, 1000);
    format!(
        "CREATE INDEX {} ON ragd_chunks USING hnsw ((embedding::vector({})) vector_cosine_ops)
         WITH (m = {m}, ef_construction = {ef_construction}) WHERE collection_id = {id}",
        index_name(id),
        config.dim
    )
}

/// A random `i64` for a collection's incarnation (std's random hash keys
/// and the clock: no `rand` needed).
fn random_i64() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish() as i64
}

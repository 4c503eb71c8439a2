//! API keys in Postgres (`ragd serve --keys postgres`), so every replica
//! sharing the database answers to the same keys: a key created on one is
//! usable on all, and a revocation reaches all within the refresh period of
//! their in-memory copy (see `ragd_server::auth::keys`). Only SHA-256s are
//! stored, as in the keys file. These tables are the server's, not a
//! tenant's: the owner role reads them, without row-level security.

use deadpool_postgres::Pool;
use serde_json::Value;

use crate::{PgStore, Result};

/// One key as stored (everything but the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub tenant: String,
    pub name: Option<String>,
    pub prefix: String,
    pub sha256: String,
    /// Unix seconds.
    pub created: i64,
}

/// Every key and every tenant's own guard policy (as JSON).
#[derive(Clone, Debug, Default)]
pub struct KeyTable {
    /// Oldest first.
    pub keys: Vec<KeyRow>,
    pub policies: Vec<(String, Value)>,
}

/// The keys tables of the store's database.
#[derive(Clone)]
pub struct PgKeys {
    pool: Pool,
}

impl std::fmt::Debug for PgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgKeys")
    }
}

impl PgKeys {
    pub fn new(store: &PgStore) -> Self {
        Self {
            pool: store.pool().clone(),
        }
    }

    /// Everything, in one snapshot (one transaction).
    pub async fn load(&self) -> Result<KeyTable> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().read_only(true).start().await?;
        let keys = tx
            .query(
                "SELECT id, tenant, name, prefix, sha256, created FROM ragd_api_keys ORDER BY created, id",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| KeyRow {
                id: r.get(0),
                tenant: r.get(1),
                name: r.get(2),
                prefix: r.get(3),
                sha256: r.get(4),
                created: r.get(5),
            })
            .collect();
        let policies = tx
            .query(
                "SELECT tenant, policy FROM ragd_guard_policies ORDER BY tenant",
                &[],
            )
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit().await?;
        Ok(KeyTable { keys, policies })
    }

    pub async fn insert(&self, k: &KeyRow) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO ragd_api_keys (id, tenant, name, prefix, sha256, created) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&k.id, &k.tenant, &k.name, &k.prefix, &k.sha256, &k.created],
            )
            .await?;
        Ok(())
    }

    /// Revokes the key `id`; whether there was one.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM ragd_api_keys WHERE id = $1", &[&id])
            .await?
            > 0)
    }

    /// Sets (`Some`) or removes (`None`) `tenant`'s guard policy; whether
    /// it had one.
    pub async fn set_policy(&self, tenant: &str, policy: Option<&Value>) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let had = tx
            .execute("DELETE FROM ragd_guard_policies WHERE tenant = $1", &[&tenant])
            .await?
            > 0;
        if let Some(policy) = policy {
            tx.execute(
                "INSERT INTO ragd_guard_policies (tenant, policy) VALUES ($1, $2)",
                &[&tenant, policy],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(had)
    }
}

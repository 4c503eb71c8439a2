//! API keys in Postgres (`ragd serve --keys postgres`, with `--store
//! postgres://...`): every replica reads the same tables, so a key created
//! through one works on all, and a revocation on one stops the key on all
//! within [`REFRESH`]. Checking a key stays a hash lookup in memory: each
//! replica reloads its copy every [`REFRESH`] (a poll rather than
//! LISTEN/NOTIFY: nothing to re-subscribe after a lost connection, and the
//! bound holds whatever happened). A replica that cannot reach the database
//! keeps its last copy and logs why.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use anyhow::Context;
use ragd_pg::{KeyRow, KeyTable, PgKeys};
use ragd_service::guard_policy::GuardPolicy;

use super::keys::{check_tenant, KeyRecord, KeyRing, Source, Table};

/// How stale a replica's copy of the keys may be.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The keys tables, and the runtime their async calls run on (the key
/// ring's changes are called from the blocking pool).
pub(super) struct PgSource {
    keys: PgKeys,
    runtime: tokio::runtime::Handle,
}

impl PgSource {
    fn block<T>(&self, f: impl std::future::Future<Output = ragd_pg::Result<T>>) -> std::io::Result<T> {
        self.runtime.block_on(f).map_err(std::io::Error::other)
    }

    /// The keys as they are now.
    async fn table(&self) -> ragd_pg::Result<Table> {
        Ok(table(self.keys.load().await?))
    }

    /// Stores a new key; the keys afterwards.
    pub(super) fn insert(&self, r: &KeyRecord) -> std::io::Result<Table> {
        let row = KeyRow {
            id: r.id.clone(),
            tenant: r.tenant.clone(),
            name: r.name.clone(),
            prefix: r.prefix.clone(),
            sha256: r.sha256.clone(),
            created: r.created as i64,
        };
        self.block(async {
            self.keys.insert(&row).await?;
            self.table().await
        })
    }

    /// Revokes the key `id`: whether it existed, and the keys afterwards.
    pub(super) fn delete(&self, id: &str) -> std::io::Result<(bool, Table)> {
        self.block(async { Ok((self.keys.delete(id).await?, self.table().await?)) })
    }

    /// Sets or removes `tenant`'s guard policy: whether it had one, and
    /// the keys afterwards.
    pub(super) fn set_policy(
        &self,
        tenant: &str,
        policy: Option<&GuardPolicy>,
    ) -> std::io::Result<(bool, Table)> {
        let json = policy
            .map(serde_json::to_value)
            .transpose()
            .map_err(std::io::Error::other)?;
        self.block(async {
            Ok((
                self.keys.set_policy(tenant, json.as_ref()).await?,
                self.table().await?,
            ))
        })
    }
}

/// The stored rows as the key ring's table; a row ragd would not have
/// written (a bad tenant, an unreadable policy) is left out and logged.
fn table(t: KeyTable) -> Table {
    let records = (t.keys.into_iter())
        .filter(|k| check_tenant(&k.tenant).is_ok() && k.sha256.len() == 64)
        .map(|k| KeyRecord {
            id: k.id,
            tenant: k.tenant,
            name: k.name,
            prefix: k.prefix,
            sha256: k.sha256,
            created: k.created.max(0) as u64,
        })
        .collect();
    let policies = (t.policies.into_iter())
        .filter_map(
            |(tenant, json)| match serde_json::from_value::<GuardPolicy>(json) {
                Ok(p) if check_tenant(&tenant).is_ok() && p.validate().is_ok() => Some((tenant, p)),
                _ => {
                    tracing::warn!(tenant, "unreadable guard policy in Postgres: ignored");
                    None
                }
            },
        )
        .collect();
    Table::new(records, policies)
}

impl KeyRing {
    /// The keys in Postgres, loaded now and refreshed every [`REFRESH`]
    /// for as long as the key ring lives.
    pub async fn from_postgres(keys: PgKeys) -> anyhow::Result<Arc<Self>> {
        let source = PgSource {
            keys,
            runtime: tokio::runtime::Handle::current(),
        };
        let first = source
            .table()
            .await
            .context("cannot read the API keys from Postgres")?;
        let ring = Arc::new(Self {
            source: Source::Postgres(source),
            table: RwLock::new(first),
            writer: Mutex::new(()),
        });
        tokio::spawn(refresh(Arc::downgrade(&ring)));
        Ok(ring)
    }
}

async fn refresh(ring: Weak<KeyRing>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(REFRESH).await;
        let Some(ring) = ring.upgrade() else { return };
        let Source::Postgres(pg) = &ring.source else {
            return;
        };
        match pg.table().await {
            Ok(table) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("API keys read from Postgres again");
                }
                ring.publish(table);
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot refresh the API keys from Postgres; keeping the last ones");
            }
            Err(_) => {}
        }
    }
}

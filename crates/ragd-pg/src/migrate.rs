//! Versioned schema migrations, applied at start-up.
//!
//! Each migration is a numbered SQL file compiled into ragd; the table
//! `ragd_schema_migrations` records which ran. Start-up applies the
//! missing ones in order, all in one transaction under an advisory lock,
//! so replicas starting together migrate once and a failed migration
//! leaves the schema as it was. A database migrated by a newer ragd is
//! refused rather than guessed at.

use deadpool_postgres::Client;

use crate::{PgError, Result};

/// One schema step.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "collections",
        sql: include_str!("../migrations/0001_collections.sql"),
    },
    Migration {
        version: 2,
        name: "api keys",
        sql: include_str!("../migrations/0002_api_keys.sql"),
    },
];

/// The schema version this ragd writes.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// An arbitrary constant naming ragd's migration lock among the
/// database's advisory locks.
const LOCK_KEY: i64 = 0x0072_6167_646d_6967; // "ragdmig"

/// Brings the schema to [`LATEST`]; returns the versions applied (none
/// when it was there already).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS ragd_schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM ragd_schema_migrations",
            &[],
        )
        .await?;
    let found: i32 = row.get(0);
    if found > LATEST {
        return Err(PgError::SchemaTooNew { found, known: LATEST });
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO ragd_schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tracing::info!(version = m.version, name = m.name, "database migration applied");
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
    }
}

//! Tenant isolation in the database: every request's transaction runs as
//! the role `ragd_tenant` with `ragd.tenant` set for that transaction only,
//! and row-level security policies on the tenant column let it read and
//! write only that tenant's rows.
//!
//! Why row-level security on a tenant column rather than a schema per
//! tenant: tenants come and go at run time (an API key names one), and a
//! schema per tenant would mean DDL on first use, a migration run per
//! tenant at every upgrade, and catalogue bloat with thousands of tenants;
//! one set of tables keeps migrations single and lets store-wide metrics
//! be one query. The policies make the tenant condition the database's job
//! too: a query that forgot `tenant = ...` still sees one tenant. (The
//! connecting role owns the tables and is not filtered; it is used only
//! for migrations, index DDL and store-wide counts.)

use deadpool_postgres::{Client, Transaction};
use ragd_index::validate_tenant;

use crate::Result;

/// A transaction of `tenant`: as the role `ragd_tenant`, with
/// `ragd.tenant` set to it until the transaction ends.
pub async fn transaction<'a>(client: &'a mut Client, tenant: &str) -> Result<Transaction<'a>> {
    transaction_with(client, tenant, "").await
}

/// [`transaction`] with more settings for it (`SET LOCAL ...` statements,
/// each starting with `;`), sent in the same round trip.
pub async fn transaction_with<'a>(
    client: &'a mut Client,
    tenant: &str,
    settings: &str,
) -> Result<Transaction<'a>> {
    // `[A-Za-z0-9_-]` only: safe as a literal (SET takes no parameters),
    // which saves a round trip per request over `set_config($1)`.
    validate_tenant(tenant)?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL ROLE ragd_tenant; SET LOCAL ragd.tenant = '{tenant}'{settings}"
    ))
    .await?;
    Ok(tx)
}

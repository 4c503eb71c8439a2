//! ragd-pg: collections in Postgres (`ragd serve --store postgres://...`).
//!
//! The same collections as `ragd_index` (documents chunked and embedded by
//! the caller, dense, lexical and hybrid search, metadata filters) kept in
//! Postgres, so several ragd replicas share one knowledge base:
//!
//! - documents and chunks are rows; vectors are pgvector `vector`s, each
//!   collection with its own HNSW index (cosine, as the in-memory graph);
//! - lexical search is Postgres full-text search (a generated `tsvector`
//!   column with a GIN index, ranked by `ts_rank`), fused with the dense
//!   list by `ragd_index::fuse`, the in-memory store's own fusion;
//! - tenants are isolated by row-level security on a tenant column (see
//!   [`tenant`] for why not a schema per tenant) as well as by every query
//!   naming its tenant;
//! - the schema is versioned and migrated at start-up ([`migrate`]).
//!
//! Why tokio-postgres with deadpool rather than sqlx: ragd needs a handful
//! of hand-written statements, a pool and versioned migrations. tokio-postgres
//! (with pgvector's binary codec) does the first without macros or a
//! database at compile time, deadpool the second, and [`migrate`] the third
//! in fifty lines; sqlx would bring its macro and driver stack for the same.
//! Connections are plain TCP or Unix socket (`NoTls`): keep the database on
//! a trusted network or behind a TLS sidecar.

mod collection;
mod error;
mod filter;
pub mod keys;
pub mod migrate;
mod search;
mod store;
pub mod tenant;

pub use collection::PgCollection;
pub use error::{PgError, Result};
pub use keys::{KeyRow, KeyTable, PgKeys};
pub use store::{PgStore, MAX_PG_DIM};

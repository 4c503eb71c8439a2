//! The one error type of the Postgres store. What the caller did wrong
//! (no such collection, a bad vector, a limit) is an [`IndexError`], the
//! same the in-memory store gives, so the server maps both alike; the
//! rest is the database's.

use ragd_index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The caller's fault, as the in-memory store would say it.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The database refused or failed a statement.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had (the database is down or unreachable).
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    /// The database's schema is newer than this ragd knows.
    #[error("the database schema is at version {found}; this ragd knows up to {known}: upgrade ragd")]
    SchemaTooNew { found: i32, known: i32 },
    /// A `postgres://` URL that does not parse.
    #[error("invalid Postgres URL: {0}")]
    Url(String),
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Self::Db(e),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl PgError {
    /// Whether the database could not be reached (a 503 rather than a 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Db(e) => e.is_closed() || e.code().is_none(),
            _ => false,
        }
    }
}

pub type Result<T, E = PgError> = std::result::Result<T, E>;

//! The one error type of the index layer. The server maps it to HTTP in one
//! place: `NotFound` 404, `AlreadyExists` 409, `InvalidName` / `InvalidInput`
//! / `DimensionMismatch` 422, `LimitExceeded` 403 (or 429), `Locked` 503
//! at start-up, `Quarantined` 503
//! (its details are in `Store::quarantined`, for the log), the rest 500
//! (`Cancelled` only reaches a caller that cancelled: its client is gone).

use std::path::{Path, PathBuf};

/// What can go wrong in the knowledge base.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// No such collection *for this tenant*. Another tenant's collection of
    /// the same name gives exactly this error, so its existence never leaks.
    #[error("collection `{0}` not found")]
    NotFound(String),
    /// `create_collection` with a name the tenant already uses.
    #[error("collection `{0}` already exists")]
    AlreadyExists(String),
    /// A tenant id or collection name that is not `[A-Za-z0-9_-]{1,64}`.
    #[error("invalid {what} `{name}`: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A request the index cannot accept (empty document id, NaN in a
    /// vector, bad collection config...): the caller's fault.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A vector whose length is not the collection's dimension.
    #[error("vector has dimension {got}, the collection expects {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    /// The tokenizer failed while chunking.
    #[error("tokenizer error: {0}")]
    Tokenizer(#[from] ragd_core::ModelError),
    /// The caller's embedding function failed (see `Collection::upsert_with`).
    #[error("embedding failed: {0}")]
    Embedding(String),
    /// Another process (or another `Store` in this one) holds the data folder.
    #[error("data folder {0} is in use by another store")]
    Locked(PathBuf),
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file on disk is damaged in a way recovery must not guess around
    /// (a bad record followed by good ones, a snapshot with a bad checksum).
    #[error("corrupt data in {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// A collection whose in-memory state may be inconsistent: a panic
    /// happened while it was being changed, or its log could not be rolled
    /// back after a failed write. Reopening the store recovers it from disk.
    #[error("collection `{0}` is unavailable until the store is reopened")]
    Unavailable(String),
    /// A collection that failed to open when the store did (see
    /// [`crate::Store::quarantined`] for why); its files are kept untouched
    /// and its name stays taken until it is deleted.
    #[error("collection `{0}` is quarantined: it could not be loaded and is out of service")]
    Quarantined(String),
    /// A per-tenant limit of [`crate::StoreOptions`] would be passed
    /// (`what`: "collections per tenant" or "documents per collection");
    /// nothing was written. The caller's fault: a 4xx.
    #[error("limit exceeded: at most {limit} {what}")]
    LimitExceeded { what: &'static str, limit: usize },
    /// The caller's [`crate::Cancel`] was set; nothing was written.
    #[error("operation cancelled")]
    Cancelled,
}

impl IndexError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl AsRef<Path>, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            path: path.as_ref().to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

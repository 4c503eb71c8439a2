//! The one error type of the service layer. Model, engine and index errors
//! are sorted here into what the client did wrong and what failed; the
//! server maps each kind to a status and an OpenAI error body.

use ragd_core::ModelError;
use ragd_engine::{EngineError, InvalidRequest, Param};
use ragd_index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request asks for something invalid; `param` names the field.
    #[error("{message}")]
    Invalid { message: String, param: Option<String> },
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    /// A quota of the tenant would be passed (collections, documents).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The request clashes with what exists (a collection name in use).
    #[error("{0}")]
    Conflict(String),
    /// A queue is full: back off and retry.
    #[error("{0}")]
    Overloaded(String),
    /// The guard flagged the request as a prompt injection.
    #[error("{0}")]
    Blocked(String),
    /// A model is configured but not loaded yet, or its worker stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The client went away and its work was stopped.
    #[error("the request was cancelled")]
    Cancelled,
    /// A bug or device failure; never the client's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<&'static str>>) -> Self {
        Self::Invalid {
            message: message.into(),
            param: param.into().map(str::to_string),
        }
    }

    /// A 400 for the text in `field` (`param`) being `bytes` long, over
    /// its limit of `max` bytes.
    pub fn too_long(field: &str, bytes: usize, max: usize, param: &'static str) -> Self {
        Self::invalid(
            format!("`{field}` is {bytes} bytes long; at most {max} are allowed"),
            param,
        )
    }

    /// An engine error. `prompt_field` is the request field that held the
    /// prompt (`messages` for chat, `prompt` for completions), the `param`
    /// of errors about the prompt.
    pub fn from_engine(e: EngineError, prompt_field: &'static str) -> Self {
        match e {
            EngineError::Overloaded { .. } => Self::Overloaded(e.to_string()),
            EngineError::Stopped(_) => Self::Unavailable(e.to_string()),
            EngineError::Invalid(why) => Self::invalid_request(&why, prompt_field),
            EngineError::Model(m) => m.into(),
        }
    }

    /// A generation request the engine refused: its message, and the field
    /// at fault as `param`.
    pub fn invalid_request(why: &InvalidRequest, prompt_field: &'static str) -> Self {
        let param = match why.param() {
            Param::Prompt => prompt_field,
            Param::MaxTokens => "max_tokens",
        };
        Self::invalid(why.to_string(), param)
    }

    /// A failed blocking-pool or tokenizer task (a panic: a bug).
    pub fn task(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{what} task failed: {e}"))
    }
}

impl From<ModelError> for ServiceError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidInput(m) => Self::Invalid {
                message: m,
                param: Some("input".into()),
            },
            ModelError::Tokenizer(m) => Self::Invalid {
                message: format!("cannot tokenize the input: {m}"),
                param: Some("input".into()),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Engine errors with no request at hand (the embedders' and classifiers'
/// batch workers): a prompt error names `prompt`.
impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        Self::from_engine(e, "prompt")
    }
}

impl From<IndexError> for ServiceError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NotFound(_) => Self::NotFound(e.to_string()),
            IndexError::AlreadyExists(_) => Self::Conflict(e.to_string()),
            IndexError::InvalidName { what, .. } => Self::Invalid {
                message: e.to_string(),
                param: (what == "collection name").then(|| "name".into()),
            },
            IndexError::InvalidInput(_) | IndexError::DimensionMismatch { .. } => Self::Invalid {
                message: e.to_string(),
                param: None,
            },
            IndexError::Tokenizer(m) => m.into(),
            IndexError::Cancelled => Self::Cancelled,
            IndexError::LimitExceeded { .. } => Self::QuotaExceeded(e.to_string()),
            IndexError::Quarantined(_) => {
                tracing::error!(error = %e, "request for a quarantined collection");
                Self::Unavailable(format!(
                    "{e}: its files failed to load and are kept for inspection; delete the collection to free the name"
                ))
            }
            IndexError::Locked(_) | IndexError::Unavailable(_) => Self::Unavailable(e.to_string()),
            IndexError::Embedding(_) | IndexError::Io { .. } | IndexError::Corrupt { .. } => {
                // The details (file paths) go to the log, not to the client.
                tracing::error!(error = %e, "knowledge base failure");
                Self::Internal("the knowledge base failed; see the server log".into())
            }
        }
    }
}

impl From<ragd_pg::PgError> for ServiceError {
    fn from(e: ragd_pg::PgError) -> Self {
        match e {
            ragd_pg::PgError::Index(e) => e.into(),
            e if e.is_unavailable() => {
                tracing::error!(error = %e, "postgres unreachable");
                Self::Unavailable("the knowledge base's database is unreachable; retry later".into())
            }
            e => {
                // The details (statements, constraint names) go to the log.
                tracing::error!(error = %e, "postgres failure");
                Self::Internal("the knowledge base failed; see the server log".into())
            }
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

//! The one place where errors become HTTP responses, in OpenAI's error shape:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ragd_core::ModelError;
use ragd_engine::EngineError;
use ragd_index::IndexError;
use serde::Serialize;

/// Every error a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is well-formed JSON but asks for something invalid.
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    /// The body is not valid JSON for this endpoint (syntax, types, missing fields).
    #[error("{message}")]
    BadJson { status: StatusCode, message: String },
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No API key, or one the server does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// A quota of the tenant would be passed (collections, documents).
    #[error("{0}")]
    Forbidden(String),
    /// The request clashes with what exists (a collection name in use).
    #[error("{0}")]
    Conflict(String),
    /// A queue is full: back off and retry.
    #[error("{0}")]
    Overloaded(String),
    /// The guard flagged the request as a prompt injection.
    #[error("{0}")]
    Blocked(String),
    /// The API key used up its request budget.
    #[error(
        "Rate limit reached: {} requests per minute for this API key. Retry in {} s.",
        .0.limit,
        .0.retry_after_secs()
    )]
    RateLimited(crate::rate_limit::Limited),
    /// The client address failed authentication too often.
    #[error(
        "Too many failed authentications from this address (more than {} a minute). Retry in {} s.",
        .0.per_minute,
        .0.retry_after_secs()
    )]
    AuthThrottled(crate::auth::throttle::ShutOut),
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

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: impl Into<Option<&'static str>>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: param.into().map(str::to_string),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::Blocked(_) => StatusCode::BAD_REQUEST,
            Self::BadJson { status, .. } => *status,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Overloaded(_) | Self::RateLimited(_) | Self::AuthThrottled(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's "client closed request": nobody reads it.
            Self::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::InvalidRequest { .. } => ("invalid_request_error", None),
            Self::BadJson { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                ("invalid_request_error", Some("request_too_large"))
            }
            Self::BadJson { .. } => ("invalid_request_error", Some("invalid_json")),
            Self::ModelNotFound(_) => ("invalid_request_error", Some("model_not_found")),
            Self::NotFound(_) => ("invalid_request_error", Some("not_found")),
            Self::MethodNotAllowed => ("invalid_request_error", Some("method_not_allowed")),
            Self::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            Self::Conflict(_) => ("invalid_request_error", Some("conflict")),
            Self::Forbidden(_) => ("invalid_request_error", Some("quota_exceeded")),
            Self::Blocked(_) => ("invalid_request_error", Some("prompt_injection_detected")),
            Self::Overloaded(_) => ("rate_limit_error", Some("overloaded")),
            Self::RateLimited(_) => ("requests", Some("rate_limit_exceeded")),
            Self::AuthThrottled(_) => ("requests", Some("too_many_failed_authentications")),
            Self::Unavailable(_) => ("server_error", Some("unavailable")),
            Self::Cancelled => ("invalid_request_error", Some("cancelled")),
            Self::Internal(_) => ("server_error", None),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request rejected");
        }
        let (kind, code) = self.kind_and_code();
        let param = match &self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind,
                param,
                code,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited(limited) = &self {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
            crate::rate_limit::add_headers(headers, limited.limit, 0);
        } else if let Self::AuthThrottled(shut) = &self {
            let secs = HeaderValue::from(shut.retry_after_secs());
            response.headers_mut().insert(header::RETRY_AFTER, secs);
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidInput(m) => Self::InvalidRequest {
                message: m,
                param: Some("input".into()),
            },
            ModelError::Tokenizer(m) => Self::InvalidRequest {
                message: format!("cannot tokenize the input: {m}"),
                param: Some("input".into()),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded { .. } => Self::Overloaded(e.to_string()),
            EngineError::Stopped(_) => Self::Unavailable(e.to_string()),
            EngineError::InvalidRequest(message) => Self::InvalidRequest { message, param: None },
            EngineError::Model(m) => m.into(),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NotFound(_) => Self::NotFound(e.to_string()),
            IndexError::AlreadyExists(_) => Self::Conflict(e.to_string()),
            IndexError::InvalidName { what, .. } => Self::InvalidRequest {
                message: e.to_string(),
                param: (what == "collection name").then(|| "name".into()),
            },
            IndexError::InvalidInput(_) | IndexError::DimensionMismatch { .. } => Self::InvalidRequest {
                message: e.to_string(),
                param: None,
            },
            IndexError::Tokenizer(m) => m.into(),
            IndexError::Cancelled => Self::Cancelled,
            IndexError::LimitExceeded { .. } => Self::Forbidden(e.to_string()),
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

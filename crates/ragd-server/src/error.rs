//! The one place where errors become HTTP responses, in OpenAI's error shape:
//! `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ragd_service::ServiceError;
use serde::Serialize;

/// `Retry-After` of a request refused while the server drains: enough for
/// a load balancer to see `/ready` fail, or for a restart.
pub const SHUTTING_DOWN_RETRY_AFTER_SECS: u64 = 5;

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
    /// The server is draining before it exits: retry elsewhere or later.
    #[error(
        "the server is shutting down; retry the request (on another replica, or once this one restarts)"
    )]
    ShuttingDown,
    /// The client went away and its work was stopped.
    #[error("the request was cancelled")]
    Cancelled,
    /// The request ran past its deadline and its work was stopped.
    #[error("the request did not finish within its deadline of {} s", .0.as_secs_f64())]
    Timeout(std::time::Duration),
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
            Self::Unavailable(_) | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's "client closed request": nobody reads it.
            Self::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
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
            Self::ShuttingDown => ("server_error", Some("shutting_down")),
            Self::Cancelled => ("invalid_request_error", Some("cancelled")),
            Self::Internal(_) => ("server_error", None),
            Self::Timeout(_) => ("timeout_error", Some("timeout")),
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
        // A refusal while draining is the plan, not a failure.
        if status.is_server_error() && !matches!(self, Self::ShuttingDown | Self::Timeout(_)) {
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
        let retry_after = match &self {
            Self::RateLimited(limited) => {
                crate::rate_limit::add_headers(response.headers_mut(), limited.limit, 0);
                Some(limited.retry_after_secs())
            }
            Self::AuthThrottled(shut) => Some(shut.retry_after_secs()),
            Self::ShuttingDown => Some(SHUTTING_DOWN_RETRY_AFTER_SECS),
            _ => (status == StatusCode::TOO_MANY_REQUESTS).then_some(1),
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The service layer's errors: each kind to its HTTP kind.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { message, param } => Self::InvalidRequest { message, param },
            ServiceError::ModelNotFound(m) => Self::ModelNotFound(m),
            ServiceError::NotFound(m) => Self::NotFound(m),
            ServiceError::QuotaExceeded(m) => Self::Forbidden(m),
            ServiceError::Conflict(m) => Self::Conflict(m),
            ServiceError::Overloaded(m) => Self::Overloaded(m),
            ServiceError::Blocked(m) => Self::Blocked(m),
            ServiceError::Unavailable(m) => Self::Unavailable(m),
            ServiceError::Cancelled => Self::Cancelled,
            ServiceError::Internal(m) => Self::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    use ragd_engine::InvalidRequest;

    #[tokio::test]
    async fn engine_refusals_are_400s_naming_the_field_at_fault() {
        let too_long = InvalidRequest::PromptTooLong {
            prompt_tokens: 5000,
            max_context: 2048,
        };
        let past = InvalidRequest::MaxTokensPastContext {
            prompt_tokens: 10,
            max_tokens: 100_000,
            max_context: 2048,
        };
        let oov = InvalidRequest::TokenOutOfVocabulary {
            token: 99_999_999,
            vocab_size: 32_000,
        };
        let cases = [
            (too_long.clone(), "messages", "messages", "context"),
            (too_long, "prompt", "prompt", "context"),
            (past.clone(), "messages", "max_tokens", "max_tokens"),
            (past, "prompt", "max_tokens", "context"),
            (
                InvalidRequest::ZeroMaxTokens,
                "messages",
                "max_tokens",
                "max_tokens",
            ),
            (InvalidRequest::EmptyPrompt, "prompt", "prompt", "empty"),
            (oov, "prompt", "prompt", "99999999"),
        ];
        for (why, field, param, needle) in cases {
            let (status, body) = body(ServiceError::from_engine(why.clone().into(), field).into()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{why:?}");
            let error = &body["error"];
            assert_eq!(error["param"], param, "{why:?}");
            assert_eq!(error["type"], "invalid_request_error");
            assert_eq!(error["message"], why.to_string());
            assert!(why.to_string().contains(needle), "{why}");
        }
    }
}

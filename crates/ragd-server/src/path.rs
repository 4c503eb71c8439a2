//! A path-parameter extractor whose rejections use the OpenAI error shape.

use axum::extract::rejection::PathRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;

use crate::error::ApiError;

/// Like `axum::extract::Path`, but a parameter that does not decode (bad
/// percent-encoding, not UTF-8) is a 400 in the OpenAI JSON shape, not
/// axum's plain-text rejection.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    axum::extract::Path<T>: FromRequestParts<S, Rejection = PathRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(match rejection.status() {
                s if s.is_server_error() => ApiError::Internal(rejection.body_text()),
                _ => ApiError::BadJson {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("invalid path parameter: {}", rejection.body_text()),
                },
            }),
        }
    }
}

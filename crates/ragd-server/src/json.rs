//! A JSON body extractor whose rejections use the OpenAI error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};

use crate::error::ApiError;

/// Like `axum::Json`, but malformed JSON, wrong types, a missing content type
/// or an oversize body all become an [`ApiError`].
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(ApiError::BadJson {
                status: rejection.status(),
                message: rejection.body_text(),
            }),
        }
    }
}

/// [`Json`] that also keeps the body as parsed JSON, for handlers that may
/// pass the request on (to an upstream server) with few changes.
pub struct JsonWithRaw<T>(pub T, pub serde_json::Value);

impl<S, T> FromRequest<S> for JsonWithRaw<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = (req.headers().get(axum::http::header::CONTENT_TYPE))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::BadJson {
                status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "Expected request with `Content-Type: application/json`".into(),
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::BadJson {
                status: rejection.status(),
                message: rejection.body_text(),
            })?;
        let reject = |rejection: JsonRejection| ApiError::BadJson {
            status: rejection.status(),
            message: rejection.body_text(),
        };
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(reject)?;
        let axum::Json(raw) = axum::Json::<serde_json::Value>::from_bytes(&bytes).map_err(reject)?;
        Ok(JsonWithRaw(value, raw))
    }
}

//! A bound on the request bodies held in memory at once, over all requests.
//!
//! `--max-body-bytes` bounds one body, but 32 clients each sending 8 MB at
//! once would still make the server hold (and parse) 256 MB plus the JSON
//! trees built from it. Each request with a body takes its declared size
//! (`Content-Length`, else the per-body maximum) from a shared budget for
//! as long as it is handled; when the budget is spent, the request gets 429
//! with `Retry-After` instead of being read.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Bytes of bodies in flight at most, unless one body alone may be larger.
pub const DEFAULT_BUDGET_BYTES: usize = 256 << 20;

/// Budget unit: permits count KiB.
const UNIT: usize = 1024;

#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    max_body_bytes: usize,
}

impl BodyBudget {
    /// `total_bytes` in flight at most (raised to one full body).
    pub fn new(total_bytes: usize, max_body_bytes: usize) -> Self {
        let total = total_bytes.max(max_body_bytes).div_ceil(UNIT);
        Self {
            permits: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            max_body_bytes,
        }
    }

    /// Middleware: takes the request's share of the budget while it runs.
    pub async fn hold(self, req: Request, next: Next) -> Response {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let has_body = declared.is_some_and(|n| n > 0)
            || req.headers().contains_key(axum::http::header::TRANSFER_ENCODING);
        if !has_body {
            return next.run(req).await;
        }
        // A body over the per-body limit is refused by that limit (413).
        let bytes = declared.unwrap_or(self.max_body_bytes).min(self.max_body_bytes);
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        match self.permits.clone().try_acquire_many_owned(units) {
            Ok(permit) => {
                let response = next.run(req).await;
                drop(permit);
                response
            }
            Err(_) => ApiError::Overloaded(
                "the server is reading too many large request bodies at once; retry shortly".into(),
            )
            .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tower::ServiceExt;

    /// Issue 10, finding 10: bodies were only bounded one by one (32
    /// concurrent 8 MB bodies: +405 MiB). With a 3 KiB budget, two 1 KiB
    /// bodies held at once leave room for one more, not two.
    #[tokio::test]
    async fn bodies_in_flight_share_one_budget() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let wait = gate.clone();
        let budget = BodyBudget::new(3 * 1024, 1024);
        let app = axum::Router::new()
            .route(
                "/",
                post(move |_: axum::body::Bytes| {
                    let wait = wait.clone();
                    async move { wait.notified().await }
                }),
            )
            .route_layer(axum::middleware::from_fn(move |req, next| {
                budget.clone().hold(req, next)
            }));
        let request = || {
            axum::http::Request::post("/")
                .header(CONTENT_LENGTH, "1000")
                .body(Body::from(vec![b'x'; 1000]))
                .unwrap()
        };
        let held: Vec<_> = (0..3)
            .map(|_| tokio::spawn(app.clone().oneshot(request())))
            .collect();
        // Let the three take their share and wait in the handler.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // A request without a body takes nothing.
        let empty = axum::http::Request::post("/").body(Body::empty()).unwrap();
        let app2 = app.clone();
        let no_body = tokio::spawn(app2.oneshot(empty));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.notify_waiters();
        for h in held {
            assert_eq!(h.await.unwrap().unwrap().status(), StatusCode::OK);
        }
        gate.notify_waiters();
        let _ = no_body.await;
        // Released: a new body fits again.
        let again = tokio::spawn(app.oneshot(request()));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.notify_waiters();
        assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

//! Graceful drain: what the server does between a stop signal and its exit.
//!
//! One [`Drain`] per server, shared by `serve.rs` (which starts it on
//! SIGTERM or Ctrl-C and times the grace period), the connection loop
//! (`http_server.rs`, which stops once nothing is in flight), `/ready`
//! (503 from the first moment) and the [`refuse_when_draining`] middleware
//! on `/v1/*` and `/admin/*`:
//!
//! - before the drain, every request is admitted and counted in flight
//!   until its response body has been sent in full (an SSE stream counts
//!   until its `data: [DONE]`) or dropped;
//! - once draining, new requests get 503 `shutting_down` with
//!   `Retry-After`; admitted ones run to the end;
//! - the drain is over when nothing admitted is left in flight.
//!
//! The connection loop adds `Connection: close` to every response made
//! while draining and closes connections as their answers end.
//!
//! `/health`, `/ready` and `/metrics` are never refused or counted.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{watch, Notify};

use crate::error::ApiError;

/// The drain state of one server; clones share it.
#[derive(Clone)]
pub struct Drain(Arc<Inner>);

struct Inner {
    /// Read on every request; `started` wakes those who wait for it.
    draining: AtomicBool,
    started: watch::Sender<bool>,
    in_flight: AtomicUsize,
    /// Woken whenever `in_flight` drops to zero.
    idle: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(Inner {
            draining: AtomicBool::new(false),
            started: watch::Sender::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
        }))
    }
}

impl Drain {
    /// Starts the drain; `false` when it had started already.
    pub fn start(&self) -> bool {
        let first = !self.0.draining.swap(true, Ordering::SeqCst);
        self.0.started.send_replace(true);
        first
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }

    /// Resolves once the drain has started (at once if it has).
    pub async fn started(&self) {
        let mut rx = self.0.started.subscribe();
        // The sender lives in `self`: this only returns once it is true.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Requests admitted and not yet answered in full.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once the drain has started and no admitted request is
    /// left in flight.
    pub async fn finished(&self) {
        self.started().await;
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            // Registered before the count is read: a drop to zero in
            // between still wakes it.
            idle.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Counts a request in flight, unless the drain has started. The count
    /// is raised before the flag is read (both `SeqCst`), so a request
    /// admitted concurrently with `start` is always seen by `finished`.
    fn admit(&self) -> Option<InFlight> {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let admitted = InFlight(self.clone());
        (!self.is_draining()).then_some(admitted)
    }
}

/// One admitted request; dropping it ends its time in flight.
struct InFlight(Drain);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 .0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

/// Middleware: refuses new requests once draining (503 `shutting_down`
/// with `Retry-After`; the connection loop adds `Connection: close`);
/// otherwise counts the request in flight until its response body is done.
pub async fn refuse_when_draining(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    match drain.admit() {
        Some(in_flight) => hold_until_sent(next.run(req).await, in_flight),
        None => ApiError::ShuttingDown.into_response(),
    }
}

/// `response`, holding `guard` until its body has been sent in full or
/// dropped (an SSE stream: until its last event).
pub fn hold_until_sent<G: Send + Unpin + 'static>(response: Response, guard: G) -> Response {
    response.map(|body| Body::new(Held { body, _guard: guard }))
}

/// A body and what it holds; sizes pass through, so `Content-Length` is kept.
struct Held<G> {
    body: Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Held<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    use std::time::Duration;
    use tower::ServiceExt;

    fn app(drain: &Drain, gate: Arc<Notify>) -> axum::Router {
        axum::Router::new()
            .route(
                "/slow",
                get(move || {
                    let gate = gate.clone();
                    async move {
                        gate.notified().await;
                        "done"
                    }
                }),
            )
            .route("/fast", get(|| async { "hello" }))
            .route_layer(axum::middleware::from_fn_with_state(
                drain.clone(),
                refuse_when_draining,
            ))
    }

    fn get_req(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn admitted_requests_finish_and_new_ones_are_refused() {
        let drain = Drain::default();
        let gate = Arc::new(Notify::new());
        let app = app(&drain, gate.clone());

        let fast = app.clone().oneshot(get_req("/fast")).await.unwrap();
        assert_eq!(fast.status(), StatusCode::OK);
        // Counted until its body is gone, and the length is kept.
        assert_eq!(fast.headers()[header::CONTENT_LENGTH], "5");
        assert_eq!(drain.in_flight(), 1);
        drop(fast);
        assert_eq!(drain.in_flight(), 0);

        let slow = tokio::spawn(app.clone().oneshot(get_req("/slow")));
        while drain.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(drain.start());
        assert!(!drain.start(), "a second start is not the first");
        let finished = tokio::spawn({
            let drain = drain.clone();
            async move { drain.finished().await }
        });

        let refused = app.clone().oneshot(get_req("/fast")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        let body = axum::body::to_bytes(refused.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "shutting_down");
        assert_eq!(body["error"]["type"], "server_error");
        assert_eq!(drain.in_flight(), 1, "a refused request is not counted");

        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!finished.is_finished(), "the slow request is still in flight");
        gate.notify_one();
        let slow = slow.await.unwrap().unwrap();
        let body = axum::body::to_bytes(slow.into_body(), usize::MAX).await.unwrap();
        assert_eq!(&body[..], b"done");
        tokio::time::timeout(Duration::from_secs(5), finished)
            .await
            .expect("the drain finishes once the last body is sent")
            .unwrap();
    }

    #[tokio::test]
    async fn an_idle_server_finishes_its_drain_at_once() {
        let drain = Drain::default();
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.finished().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "not before the drain starts");
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}

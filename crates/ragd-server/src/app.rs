//! The axum `Router`: routes, limits, request ids, tracing and metrics.

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{delete, get, post};
use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth;
use crate::body_budget::{BodyBudget, DEFAULT_BUDGET_BYTES};
use crate::error::ApiError;
use crate::routes::{
    admin, chat, collections, completions, document_list, embeddings, files, health, metrics, models,
    moderations, rerank, responses, tokenize, ui,
};
use crate::state::AppState;
use crate::{deadline, drain};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the application. `max_body_bytes` bounds every request body
/// (413 past it); `ui`: serve the web playground (see [`ui`]).
///
/// `/health`, `/ready`, `/metrics` and the playground's files are open; `/v1/*` needs a tenant's
/// API key and `/admin/*` the admin key (see [`crate::auth`]). Once the
/// server drains, `/v1/*` and `/admin/*` answer 503 before anything else
/// runs (see [`crate::drain`]).
pub fn router(state: AppState, max_body_bytes: usize, ui: bool) -> Router {
    let budget = BodyBudget::new(DEFAULT_BUDGET_BYTES, max_body_bytes);
    // Generation has a deadline (see [`crate::deadline`]).
    let generation = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/responses", post(responses::responses))
        .route_layer(middleware::from_fn_with_state(state.clone(), deadline::enforce));
    let v1 = generation
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/moderations", post(moderations::moderations))
        // Cohere's, Jina's and vLLM's paths (vLLM's also without a version).
        .route("/v1/rerank", post(rerank::rerank_documents))
        .route("/v2/rerank", post(rerank::rerank_documents))
        .route("/rerank", post(rerank::rerank_documents))
        .route(
            "/v1/collections",
            post(collections::create).get(collections::list),
        )
        .route(
            "/v1/collections/{name}",
            get(collections::get).delete(collections::delete),
        )
        .route(
            "/v1/collections/{name}/documents",
            post(collections::upsert).get(document_list::list),
        )
        .route("/v1/collections/{name}/files", post(files::upload))
        .route(
            "/v1/collections/{name}/documents/{id}",
            get(collections::get_document).delete(collections::delete_document),
        )
        .route("/v1/collections/{name}/search", post(collections::search))
        // vLLM's paths, without `/v1`, and with it.
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/v1/tokenize", post(tokenize::tokenize))
        .route("/v1/detokenize", post(tokenize::detokenize))
        // Inside authentication: a client without a key cannot take the
        // budget from those with one.
        .route_layer(middleware::from_fn(move |req, next| {
            budget.clone().hold(req, next)
        }))
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_tenant,
        ));
    let admin = Router::new()
        .route("/admin/keys", post(admin::create).get(admin::list))
        .route("/admin/keys/{id}", delete(admin::delete))
        .route(
            "/admin/tenants/{tenant}/guard-policy",
            get(admin::get_policy)
                .put(admin::put_policy)
                .delete(admin::delete_policy),
        )
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require_admin,
        ));
    // Outside authentication: a draining server refuses before any work.
    let api = v1
        .merge(admin)
        .route_layer(middleware::from_fn_with_state(
            state.drain.clone(),
            drain::refuse_when_draining,
        ))
        .route_layer(middleware::map_response(crate::upstream::mark_served_by))
        .route_layer(middleware::from_fn(crate::server_timing::add));
    let mut open = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::render));
    if ui {
        open = open.merge(ui::router(matches!(state.auth.auth, auth::Auth::Disabled)));
    }
    open.merge(api)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.http_metrics.clone(),
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal("handler panicked".into()))
        }))
        .layer(middleware::map_response(crate::trace_context::traceparent_header))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let span = tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %req.method(),
                        path = %req.uri().path(),
                        tenant = tracing::field::Empty,
                        trace_id = tracing::field::Empty,
                    );
                    crate::trace_context::continue_trace(&span, req.headers());
                    span
                })
                .on_response(
                    |res: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = res.status().as_u16(),
                            ms = latency.as_secs_f64() * 1e3,
                            "response"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_unsafe_request_id))
        .with_state(state)
}

/// Longest client-chosen request id kept.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Keeps a client's `x-request-id` only when it is short and made of
/// `[A-Za-z0-9._:-]`; otherwise it is dropped and a fresh UUID is set. The
/// id is written into log lines, where spaces, quotes or `key=value` text
/// could forge fields.
async fn drop_unsafe_request_id(mut req: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let safe = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
    };
    if req.headers().get(&REQUEST_ID).is_some_and(|v| !safe(v)) {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

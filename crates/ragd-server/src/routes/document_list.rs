//! `GET /v1/collections/{name}/documents?after=ID&limit=N`: a collection's
//! documents in id order, a page at a time (OpenAI's list shape with
//! `has_more`, `first_id` and `last_id`; the next page starts `after` the
//! last id).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json as AxumJson;
use ragd_index::Metadata;
use serde::Serialize;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::path::Path;
use crate::state::AppState;

/// Documents in a page when the request gives no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// Most documents in one page.
const MAX_LIMIT: usize = 1000;

#[derive(Debug, Serialize)]
pub struct DocumentSummary {
    pub object: &'static str,
    pub id: String,
    pub metadata: Metadata,
    /// Chunks the document was cut into.
    pub chunks: usize,
}

#[derive(Debug, Serialize)]
pub struct DocumentPage {
    pub object: &'static str,
    pub data: Vec<DocumentSummary>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// `limit` and `after` from the query string; a 400 naming the parameter
/// for anything else.
fn page_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(usize, Option<String>), ApiError> {
    let Query(mut params) =
        query.map_err(|e| ApiError::invalid(format!("invalid query string: {}", e.body_text()), None))?;
    let limit = match params.remove("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    format!("`limit` must be a whole number from 1 to {MAX_LIMIT} (got {v:?})"),
                    "limit",
                ))
            }
        },
    };
    let after = params.remove("after");
    if let Some(unknown) = params.keys().next() {
        return Err(ApiError::invalid(
            format!("unknown query parameter `{unknown}`: use `limit` and `after`"),
            None,
        ));
    }
    Ok((limit, after))
}

/// `GET /v1/collections/{name}/documents`.
pub async fn list(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<AxumJson<DocumentPage>, ApiError> {
    let (limit, after) = page_params(query)?;
    // One more than asked says whether another page follows.
    let mut docs = (state.collections()?)
        .list_documents(&tenant, name, after, limit + 1)
        .await?;
    let has_more = docs.len() > limit;
    docs.truncate(limit);
    let data: Vec<DocumentSummary> = (docs.into_iter())
        .map(|d| DocumentSummary {
            object: "document.summary",
            id: d.id,
            metadata: d.metadata,
            chunks: d.chunks,
        })
        .collect();
    Ok(AxumJson(DocumentPage {
        object: "list",
        first_id: data.first().map(|d| d.id.clone()),
        last_id: data.last().map(|d| d.id.clone()),
        has_more,
        data,
    }))
}

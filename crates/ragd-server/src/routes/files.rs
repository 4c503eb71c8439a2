//! `POST /v1/collections/{name}/files`: upload files (multipart, form
//! field `file`, repeatable) into a collection. Each file's text is taken
//! out by `ragd_docs` (PDF, HTML, Markdown, DOCX, text, JSONL; the format
//! from the file name); its document id is the file name (JSONL: each
//! line's own). A file that cannot be read is reported by name and the
//! others go in. The whole upload is bounded by `--max-body-bytes`.

use axum::extract::{Multipart, State};
use axum::Json as AxumJson;
use ragd_index::DocumentInput;
use serde::Serialize;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::path::Path;
use crate::state::AppState;
use ragd_service::Usage;

/// What became of one uploaded file.
#[derive(Debug, Serialize)]
pub struct FileOutcome {
    pub name: String,
    /// Documents found in it (0 when it could not be read or is empty).
    pub documents: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FilesResponse {
    pub object: &'static str,
    pub collection: String,
    pub files: Vec<FileOutcome>,
    /// Documents and chunks written.
    pub documents: usize,
    pub chunks: usize,
    pub replaced: usize,
    pub usage: Usage,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message, "file")
}

pub async fn upload(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Path(name): Path<String>,
    mut form: Multipart,
) -> Result<AxumJson<FilesResponse>, ApiError> {
    let (mut files, mut docs) = (Vec::new(), Vec::<DocumentInput>::new());
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("the multipart body cannot be read: {}", e.body_text())))?
    {
        if field.name() != Some("file") {
            return Err(bad(format!(
                "unknown form field {:?}: upload files in fields named `file`",
                field.name().unwrap_or("")
            )));
        }
        let file_name = (field.file_name())
            .filter(|n| !n.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| bad("each `file` needs a file name (its document id and format)"))?;
        let bytes = (field.bytes().await)
            .map_err(|e| bad(format!("`{file_name}` cannot be read: {}", e.body_text())))?;
        let parsing = file_name.clone();
        let extracted = tokio::task::spawn_blocking(move || ragd_docs::extract(&parsing, &bytes)).await;
        let outcome = match extracted {
            Ok(Ok(found)) => {
                let n = found.len();
                docs.extend(found.into_iter().map(|d| DocumentInput {
                    id: d.id,
                    text: d.text,
                    metadata: d.metadata,
                }));
                FileOutcome {
                    name: file_name,
                    documents: n,
                    error: None,
                }
            }
            Ok(Err(e)) => FileOutcome {
                name: file_name,
                documents: 0,
                error: Some(e.to_string()),
            },
            Err(_) => FileOutcome {
                name: file_name,
                documents: 0,
                error: Some("the file could not be parsed".into()),
            },
        };
        files.push(outcome);
    }
    if files.is_empty() {
        return Err(bad(
            "no file uploaded: send multipart/form-data with one or more `file` fields",
        ));
    }
    let collections = state.collections()?;
    let (collection, written) = match docs.is_empty() {
        // Nothing readable: the collection must still exist.
        true => (
            collections.collection(&tenant, name).await?.name().to_string(),
            None,
        ),
        false => {
            let embedder = state.embedder(&tenant)?;
            let (collection, upserted) = collections.upsert(&tenant, name, &embedder, docs).await?;
            (collection, Some(upserted))
        }
    };
    let (documents, chunks, replaced, tokens) = written.map_or((0, 0, 0, 0), |w| {
        (
            w.outcome.documents,
            w.outcome.chunks,
            w.outcome.replaced,
            w.tokens,
        )
    });
    Ok(AxumJson(FilesResponse {
        object: "collection.files",
        collection,
        files,
        documents,
        chunks,
        replaced,
        usage: Usage::input(tokens),
    }))
}

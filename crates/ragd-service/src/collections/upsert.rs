//! Writing to a collection, shared by the collections API and the offline
//! `ragd ingest --data-dir`: the configuration of a new collection, the
//! check that a collection's vectors come from the embedder at hand, and
//! document upsert (validate, chunk, embed, store).

use ragd_index::{
    attach_vectors, chunk_texts, prepare_documents, Cancel, CollectionConfig, DocumentInput, Metadata,
    UpsertOutcome,
};

use super::backend::CollectionHandle;
use super::blocking::blocking;
use crate::config::CollectionLimits;
use crate::embedding::{embed, Input};
use crate::error::ServiceError;
use crate::models::ModelHandle;

/// Chunk length when none is given (capped by the embedder's window).
const DEFAULT_CHUNK_TOKENS: usize = 200;
/// Overlap when none is given (capped at a quarter of the chunk).
const DEFAULT_CHUNK_OVERLAP: usize = 32;
/// Largest serialized metadata of a collection or a document, in bytes.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// The configuration of a new collection embedded by `handle`: chunk length
/// and overlap (defaults when `None`) checked against its window.
pub fn collection_config(
    handle: &ModelHandle,
    chunk_tokens: Option<usize>,
    chunk_overlap: Option<usize>,
    metadata: Metadata,
) -> Result<CollectionConfig, ServiceError> {
    let window = handle.info.framing.content_len();
    let chunk_tokens = chunk_tokens.unwrap_or(DEFAULT_CHUNK_TOKENS.min(window));
    if chunk_tokens == 0 || chunk_tokens > window {
        return Err(ServiceError::invalid(
            format!(
                "`chunk_tokens` must be 1 to {window} (the window of the embedding model `{}`), got {chunk_tokens}",
                handle.info.id
            ),
            "chunk_tokens",
        ));
    }
    let chunk_overlap = chunk_overlap.unwrap_or(DEFAULT_CHUNK_OVERLAP.min(chunk_tokens / 4));
    if chunk_overlap >= chunk_tokens {
        return Err(ServiceError::invalid(
            format!("`chunk_overlap` ({chunk_overlap}) must be smaller than `chunk_tokens` ({chunk_tokens})"),
            "chunk_overlap",
        ));
    }
    check_metadata(&metadata, "metadata")?;
    let mut config = CollectionConfig::new(handle.output_dim, chunk_tokens, chunk_overlap);
    config.embedding_model = Some(handle.info.id.clone());
    config.metadata = metadata;
    Ok(config)
}

/// A collection's vectors must come from the embedder `handle`: same model,
/// same dimension. Anything else is a conflict, never a mix.
pub fn check_embedder(collection: &dyn CollectionHandle, handle: &ModelHandle) -> Result<(), ServiceError> {
    let config = collection.config();
    match &config.embedding_model {
        Some(model) if *model != handle.info.id => Err(ServiceError::Conflict(format!(
            "collection `{}` holds vectors of the embedding model `{model}`, but this server runs `{}`",
            collection.name(),
            handle.info.id
        ))),
        _ if config.dim != handle.output_dim => Err(ServiceError::Conflict(format!(
            "collection `{}` holds {}-d vectors, but the embedding model `{}` makes {}-d ones",
            collection.name(),
            config.dim,
            handle.info.id,
            handle.output_dim
        ))),
        _ => Ok(()),
    }
}

fn check_metadata(metadata: &Metadata, param: &'static str) -> Result<(), ServiceError> {
    let bytes = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if bytes > MAX_METADATA_BYTES {
        return Err(ServiceError::invalid(
            format!("`{param}` is {bytes} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed"),
            param,
        ));
    }
    Ok(())
}

fn check_documents(docs: &[DocumentInput], limits: &CollectionLimits) -> Result<(), ServiceError> {
    if docs.is_empty() {
        return Err(ServiceError::invalid(
            "`documents` must not be empty",
            "documents",
        ));
    }
    if docs.len() > limits.max_documents {
        return Err(ServiceError::invalid(
            format!(
                "`documents` has {} items; at most {} are allowed per request",
                docs.len(),
                limits.max_documents
            ),
            "documents",
        ));
    }
    for (i, d) in docs.iter().enumerate() {
        if d.text.len() > limits.max_document_bytes {
            let (field, max) = (format!("documents[{i}].text"), limits.max_document_bytes);
            return Err(ServiceError::too_long(&field, d.text.len(), max, "documents"));
        }
        if d.text.trim().is_empty() {
            return Err(ServiceError::invalid(
                format!("`documents[{i}].text` is empty"),
                "documents",
            ));
        }
        check_metadata(&d.metadata, "documents")?;
    }
    Ok(())
}

/// What [`upsert_documents`] wrote, and the tokens it embedded.
#[derive(Debug)]
pub struct Upserted {
    pub outcome: UpsertOutcome,
    pub tokens: usize,
}

/// Inserts or replaces `docs` in `collection`, all or none: checks them
/// against `limits`, chunks them with the embedder's tokenizer, embeds the
/// chunks with `handle` and writes them; durable (fsynced) when it returns.
/// The one upsert path: `POST /v1/collections/{name}/documents` and the
/// offline `ragd ingest --data-dir` both call it. `handle` must be the
/// collection's embedder (see [`check_embedder`]).
pub async fn upsert_documents(
    collection: &dyn CollectionHandle,
    handle: &ModelHandle,
    docs: Vec<DocumentInput>,
    limits: &CollectionLimits,
) -> Result<Upserted, ServiceError> {
    check_documents(&docs, limits)?;
    // A client that leaves stops the chunking and the write on the
    // blocking pool: dropping this future (axum does when the connection
    // closes) sets the flag they check.
    let cancel = Cancel::new();
    let _cancel_on_drop = cancel.cancel_on_drop();
    let tokenizer = handle.tokenizer.clone();
    let (config, flag) = (collection.config().clone(), cancel.clone());
    let prepared = blocking(move || prepare_documents(&config, docs, tokenizer.as_ref(), &flag)).await?;
    let texts = chunk_texts(&prepared);
    let (vectors, tokens) = embed(handle, texts.into_iter().map(Input::Text).collect()).await?;
    let embedded = attach_vectors(prepared, vectors)?;
    let outcome = collection.upsert(embedded, cancel.clone()).await?;
    tracing::info!(
        collection = collection.name(),
        documents = outcome.documents,
        chunks = outcome.chunks,
        "documents upserted"
    );
    Ok(Upserted { outcome, tokens })
}

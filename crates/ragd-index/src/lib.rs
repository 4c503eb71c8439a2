//! ragd-index: each tenant's knowledge base.
//!
//! A [`Store`] is one data folder holding, per tenant, named
//! [`Collection`]s. A collection is one HNSW graph (hnsw_rs, cosine) over
//! the chunks of its documents and a lexical (BM25) index of their texts,
//! searched alone or fused ([`SearchMode`]), plus the documents' metadata
//! and chunk texts, made durable by a write-ahead log (every write fsynced
//! before it returns) and periodic snapshots. Documents are chunked by model tokens
//! ([`chunk_text`]); their vectors come from the caller, so this crate
//! needs no model (see [`document`] for the two-step write).
//!
//! Everything is synchronous (no tokio): an async server calls it from
//! blocking tasks. Tenants are separate by construction (every lookup is
//! keyed by tenant); another tenant's collection is simply `NotFound`.

#[doc(hidden)]
pub mod bench;
mod cancel;
mod chunking;
mod codec;
mod collection;
mod config;
pub mod document;
mod error;
mod filter;
mod fsutil;
mod graph;
mod hybrid;
mod lexical;
mod names;
mod record;
mod shard;
mod snapshot;
mod state;
mod store;
mod wal;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use cancel::{Cancel, CancelOnDrop};
pub use chunking::{chunk_text, chunk_text_cancellable};
pub use collection::{Collection, CollectionVersion};
pub use config::{CollectionConfig, HnswParams, StoreOptions, MAX_DIM};
pub use document::{
    attach_vectors, check_ids, check_vector, chunk_texts, prepare_documents, CollectionStats, DocumentInfo,
    DocumentInput, DocumentSummary, EmbeddedChunk, EmbeddedDocument, Hit, Metadata, PreparedDocument,
    StoreStats, UpsertOutcome,
};
pub use error::{IndexError, Result};
pub use filter::MetadataFilter;
pub use hybrid::{
    fuse, hybrid_window, Fused, Fusion, Query, Ranked, SearchMode, DEFAULT_DENSE_WEIGHT, DEFAULT_RRF_K,
};
pub use names::{validate_collection, validate_tenant, MAX_NAME_LEN};
pub use shard::ChunkId;
pub use store::{QuarantinedCollection, Store};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_and_collection_are_send_and_sync() {
        assert_send_sync::<super::Store>();
        assert_send_sync::<std::sync::Arc<super::Collection>>();
    }
}

//! Per-tenant limits (issue 10): one tenant cannot grow without bound.

mod common;

use common::*;
use ragd_index::{IndexError, Store, StoreOptions};
use serde_json::json;

fn limited(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        max_collections_per_tenant: 3,
        max_documents_per_collection: 5,
        ..StoreOptions::default()
    };
    Store::open(dir, options).unwrap()
}

#[test]
fn a_tenant_cannot_pass_its_collection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = limited(dir.path());
    for name in ["a", "b", "c"] {
        store.create_collection("t", name, config()).unwrap();
    }
    let err = store.create_collection("t", "d", config()).unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::LimitExceeded {
                what: "collections per tenant",
                limit: 3
            }
        ),
        "{err}"
    );
    // Nothing was made, other tenants are not affected, a delete frees one.
    assert_eq!(store.list_collections("t").unwrap(), ["a", "b", "c"]);
    assert!(!dir.path().join("tenants/t/d").exists());
    store.create_collection("u", "d", config()).unwrap();
    store.delete_collection("t", "a").unwrap();
    store.create_collection("t", "d", config()).unwrap();
}

#[test]
fn a_collection_cannot_pass_its_document_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = limited(dir.path());
    let c = store.create_collection("t", "c", config()).unwrap();
    let docs = |ids: std::ops::Range<usize>| -> Vec<_> {
        ids.map(|i| doc(&format!("d{i}"), &format!("text {i}"), json!({})))
            .collect()
    };
    upsert(&c, docs(0..4));
    let embedder = ragd_index::testing::HashEmbedder::new(DIM);
    let tok = ragd_index::testing::WhitespaceTokenizer;
    let err = c
        .upsert_with(docs(3..6), &tok, |t| embedder.embed(t))
        .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::LimitExceeded {
                what: "documents per collection",
                limit: 5
            }
        ),
        "{err}"
    );
    assert_eq!(c.stats().unwrap().documents, 4, "nothing written");
    // Replacing documents adds none: still allowed at the limit.
    upsert(&c, docs(4..5));
    upsert(&c, docs(0..5));
    assert_eq!(c.stats().unwrap().documents, 5);
    c.delete(&["d0"]).unwrap();
    upsert(&c, docs(5..6));
}

//! Recovery never takes the store down: a damaged collection is
//! quarantined (kept on disk, reported, refused), every other one serves.

mod common;

use std::path::Path;

use common::*;
use ragd_index::{IndexError, Store};
use serde_json::json;

/// The bytes of a write-ahead log frame around `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    [&len[..], &h.finalize().to_le_bytes(), payload].concat()
}

/// A valid frame (sequence number `seq`, an upsert tag, filler) whose
/// every byte is ASCII, so that it can be a document id.
fn frame_as_text(seq: u64) -> String {
    (0u32..)
        .map(|n| {
            let mut payload = seq.to_le_bytes().to_vec();
            payload.push(1);
            payload.extend_from_slice(format!("forged-{n:08}").as_bytes());
            frame(&payload)
        })
        .find(|f| f.is_ascii())
        .map(|f| String::from_utf8(f).unwrap())
        .unwrap()
}

/// Regression (security review, issue 10): a document id that is itself a
/// valid log frame, then a crash tearing the record that holds it, made
/// `Store::open` fail ("damaged record at byte 0 is followed by valid
/// records"): the whole server refused to start.
#[test]
fn a_torn_record_holding_a_forged_frame_does_not_stop_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_collection("other", "docs", config()).unwrap();
    upsert(
        &store.collection("other", "docs").unwrap(),
        vec![doc("d", "hello world", json!({}))],
    );
    let c = store.create_collection("t", "c", config()).unwrap();
    let id = frame_as_text(2);
    upsert(&c, vec![doc(&id, "some text", json!({}))]);
    drop(c);
    drop(store);

    let wal = dir.path().join("tenants/t/c/wal.log");
    let full = std::fs::read(&wal).unwrap();
    let at = full.windows(id.len()).position(|w| w == id.as_bytes()).unwrap();
    // A crash tore the append anywhere after the forged frame (not exactly
    // at its end: a chain of frames reaching the end of the file would be
    // taken for damage in the middle, see `wal.rs`).
    for cut in [at + id.len() + 1, at + id.len() + 9, full.len() - 1] {
        std::fs::write(&wal, &full[..cut]).unwrap();
        let store = open(dir.path());
        assert!(store.quarantined().is_empty(), "{:?}", store.quarantined());
        let c = store.collection("t", "c").unwrap();
        assert_eq!(c.stats().unwrap().documents, 0);
        assert_eq!(c.stats().unwrap().torn_bytes_dropped, cut as u64);
        upsert(&c, vec![doc("next", "a later write", json!({}))]);
        assert_eq!(
            store
                .collection("other", "docs")
                .unwrap()
                .stats()
                .unwrap()
                .documents,
            1
        );
        drop(c);
        drop(store);
        std::fs::write(&wal, &full).unwrap();
    }
}

fn collection_dir(root: &Path, tenant: &str, name: &str) -> std::path::PathBuf {
    root.join("tenants").join(tenant).join(name)
}

#[test]
fn a_damaged_collection_is_quarantined_and_the_others_serve() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (tenant, name) in [("a", "x"), ("a", "y"), ("b", "x")] {
        let c = store.create_collection(tenant, name, config()).unwrap();
        for i in 0..3 {
            upsert(
                &c,
                vec![doc(&format!("d{i}"), &words(&format!("w{i}"), 10), json!({}))],
            );
        }
    }
    drop(store);
    // Damage the middle record of a/x's log: history is missing, so the
    // collection must not open (nor be truncated).
    let wal = collection_dir(dir.path(), "a", "x").join("wal.log");
    let mut bytes = std::fs::read(&wal).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&wal, &bytes).unwrap();

    let store = open(dir.path());
    let q = store.quarantined();
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].tenant.as_str(), q[0].name.as_str()), ("a", "x"));
    assert!(q[0].error.contains("corrupt"), "{}", q[0].error);
    assert!(matches!(
        store.collection("a", "x"),
        Err(IndexError::Quarantined(_))
    ));
    for (tenant, name) in [("a", "y"), ("b", "x")] {
        let c = store.collection(tenant, name).unwrap();
        assert_eq!(c.stats().unwrap().documents, 3);
        assert_eq!(
            c.search(&query(&words("w1", 10)), 1, None).unwrap()[0].doc_id,
            "d1"
        );
        upsert(&c, vec![doc("d9", "more", json!({}))]);
    }
    assert_eq!(store.list_collections("a").unwrap(), ["y"]);
    // Its name stays taken, and its files untouched.
    assert!(matches!(
        store.create_collection("a", "x", config()),
        Err(IndexError::Quarantined(_))
    ));
    assert_eq!(std::fs::read(&wal).unwrap(), bytes);
    store.checkpoint_all().unwrap();
    drop(store);

    // Still quarantined after a restart; deleting it moves it aside.
    let store = open(dir.path());
    assert_eq!(store.quarantined().len(), 1);
    store.delete_collection("a", "x").unwrap();
    assert!(store.quarantined().is_empty());
    let c = store.create_collection("a", "x", config()).unwrap();
    assert_eq!(c.stats().unwrap().documents, 0);
    drop(c);
    drop(store);
    let store: Store = open(dir.path());
    assert!(store.quarantined().is_empty());
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("tenants/a"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".quarantine-x-"))
        .collect();
    assert_eq!(aside.len(), 1);
    let kept = dir.path().join("tenants/a").join(&aside[0]).join("wal.log");
    assert_eq!(std::fs::read(kept).unwrap(), bytes);
}

//! Idle collections hold no file descriptor (issue 10: one tenant creating
//! 241 collections under a 256-file limit made everyone else's requests
//! fail). Alone in its test binary so that no other test opens files
//! meanwhile.
#![cfg(target_os = "linux")]

mod common;

use common::*;
use serde_json::json;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn collections_hold_no_file_descriptor_while_idle() {
    const N: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let before = open_fds();
    let store = open(dir.path());
    for i in 0..N {
        let c = store.create_collection("t", &format!("c{i}"), config()).unwrap();
        upsert(&c, vec![doc("d", "some words here", json!({}))]);
    }
    // The store holds its LOCK file, and nothing per collection.
    assert!(open_fds() <= before + 2, "{} open, {before} before", open_fds());
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.list_collections("t").unwrap().len(), N);
    assert!(
        open_fds() <= before + 2,
        "{} open after reopening, {before} before",
        open_fds()
    );
    // Writes still work, and still hold nothing afterwards.
    let c = store.collection("t", "c7").unwrap();
    upsert(&c, vec![doc("e", "more words", json!({}))]);
    c.checkpoint().unwrap();
    upsert(&c, vec![doc("f", "and more", json!({}))]);
    assert!(open_fds() <= before + 2);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.collection("t", "c7").unwrap().stats().unwrap().documents, 3);
}

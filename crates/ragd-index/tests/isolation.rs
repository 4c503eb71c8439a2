//! Tenant isolation under a long random workload: several tenants with the
//! same collection names and the same document ids do thousands of random
//! upserts, deletes and searches (dense, lexical and hybrid); every hit
//! must be one of the searching tenant's own live documents, as last
//! written by that tenant.

mod common;

use std::collections::BTreeMap;

use common::*;
use ragd_index::testing::SplitMix64;
use ragd_index::{Fusion, IndexError, MetadataFilter, Query, SearchMode, Store, StoreOptions};
use serde_json::json;

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const COLLECTIONS: [&str; 2] = ["docs", "notes"];
const VOCAB: usize = 60;

/// What each (tenant, collection) should hold: doc id -> (text, version).
type Model = BTreeMap<(usize, usize), BTreeMap<String, (String, u64)>>;

fn random_text(rng: &mut SplitMix64) -> String {
    // A shared vocabulary, so every tenant's documents are near each other
    // in vector space and a leak would show up in the nearest hits.
    let n = 3 + rng.below(40);
    (0..n)
        .map(|_| format!("v{}", rng.below(VOCAB)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(store: &Store, model: &Model, rng: &mut SplitMix64, t: usize, c: usize) {
    let coll = store.collection(TENANTS[t], COLLECTIONS[c]).unwrap();
    let own = &model[&(t, c)];
    let top_k = 1 + rng.below(25);
    let filter = match rng.below(3) {
        0 => None,
        1 => Some(MetadataFilter::eq("parity", rng.below(2) as u64)),
        _ => Some(MetadataFilter::doc_ids(
            (0..5).map(|_| format!("d{}", rng.below(30))),
        )),
    };
    // Dense, lexical and hybrid searches alike: each index is the
    // collection's own.
    let text = random_text(rng);
    let vector = query(&text);
    let mode = SearchMode::ALL[rng.below(3)];
    let q = Query {
        vector: Some(&vector),
        text: &text,
        mode,
        fusion: Fusion::default(),
        top_k,
        filter: filter.as_ref(),
    };
    let hits = coll.query(&q).unwrap();
    let mut chunk_ids = std::collections::HashSet::new();
    for h in &hits {
        let (text, version) = own.get(&h.doc_id).unwrap_or_else(|| {
            panic!(
                "{} got a hit on `{}`, not one of its live documents",
                TENANTS[t], h.doc_id
            )
        });
        assert_eq!(h.metadata["tenant"], TENANTS[t], "leak from another tenant");
        assert_eq!(
            h.metadata["collection"], COLLECTIONS[c],
            "leak from another collection"
        );
        assert_eq!(
            h.metadata["version"], *version,
            "stale chunk of a replaced document"
        );
        assert!(text.contains(&h.text), "chunk text not in the document");
        assert!(chunk_ids.insert(h.chunk_id), "duplicate hit");
    }
    if filter.is_none() {
        // Lexical search finds exactly the own live chunks sharing a word
        // with the query (up to top_k).
        let available = match mode {
            SearchMode::Lexical => {
                let words: std::collections::HashSet<&str> = text.split(' ').collect();
                own.keys()
                    .flat_map(|id| coll.document(id).unwrap().unwrap().chunks)
                    .filter(|chunk| chunk.split(' ').any(|w| words.contains(w)))
                    .count()
            }
            _ => coll.stats().unwrap().chunks,
        };
        assert_eq!(hits.len(), top_k.min(available), "top_k not honoured ({mode:?})");
    }
}

#[test]
fn tenants_never_see_each_others_documents() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        // Exercise automatic checkpoints and compactions along the way.
        checkpoint_wal_bytes: 64 << 10,
        compact_min_points: 32,
        compact_tombstone_ratio: 0.3,
        ..StoreOptions::default()
    };
    let mut store = Store::open(dir.path(), options.clone()).unwrap();
    let mut model = Model::new();
    for (t, tenant) in TENANTS.iter().enumerate() {
        for (c, name) in COLLECTIONS.iter().enumerate() {
            store.create_collection(tenant, name, config()).unwrap();
            model.insert((t, c), BTreeMap::new());
        }
        // A collection only this tenant has.
        store
            .create_collection(tenant, &format!("private-{t}"), config())
            .unwrap();
    }

    let mut rng = SplitMix64(0x5eed);
    let mut version = 0u64;
    for step in 0..3000 {
        let t = rng.below(TENANTS.len());
        let c = rng.below(COLLECTIONS.len());
        let coll = store.collection(TENANTS[t], COLLECTIONS[c]).unwrap();
        match rng.below(10) {
            0..=4 => {
                let n = 1 + rng.below(3);
                let mut ids: Vec<String> = (0..n).map(|_| format!("d{}", rng.below(30))).collect();
                ids.sort();
                ids.dedup();
                let docs = ids
                    .iter()
                    .map(|id| {
                        version += 1;
                        let text = random_text(&mut rng);
                        model
                            .get_mut(&(t, c))
                            .unwrap()
                            .insert(id.clone(), (text.clone(), version));
                        doc(
                            id,
                            &text,
                            json!({"tenant": TENANTS[t], "collection": COLLECTIONS[c],
                                   "version": version, "parity": version % 2}),
                        )
                    })
                    .collect();
                upsert(&coll, docs);
            }
            5..=6 => {
                let id = format!("d{}", rng.below(30));
                let existed = model.get_mut(&(t, c)).unwrap().remove(&id).is_some();
                assert_eq!(coll.delete(&[id]).unwrap(), usize::from(existed));
            }
            _ => check(&store, &model, &mut rng, t, c),
        }
        if step == 1500 {
            // Halfway: restart from disk and go on.
            drop(coll);
            drop(store);
            store = Store::open(dir.path(), options.clone()).unwrap();
        }
    }

    // Every tenant's content is exactly its own, after a final restart too.
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    for ((t, c), own) in &model {
        let coll = store.collection(TENANTS[*t], COLLECTIONS[*c]).unwrap();
        assert_eq!(coll.stats().unwrap().documents, own.len());
        for (id, (_, version)) in own {
            let info = coll.document(id).unwrap().unwrap();
            assert_eq!(info.metadata["version"], *version);
        }
        for _ in 0..20 {
            check(&store, &model, &mut rng, *t, *c);
        }
    }

    // Another tenant's private collection is indistinguishable from a
    // missing one.
    for (t, tenant) in TENANTS.iter().enumerate() {
        for other in (0..TENANTS.len()).filter(|o| *o != t) {
            let name = format!("private-{other}");
            assert!(matches!(store.collection(tenant, &name), Err(IndexError::NotFound(n)) if n == name));
            assert!(matches!(
                store.delete_collection(tenant, &name),
                Err(IndexError::NotFound(_))
            ));
            assert!(!store.list_collections(tenant).unwrap().contains(&name));
        }
        assert!(matches!(
            store.collection(tenant, "no-such"),
            Err(IndexError::NotFound(_))
        ));
        assert_eq!(store.list_collections(tenant).unwrap().len(), 3);
    }
    assert!(matches!(
        store.collection("stranger", "docs"),
        Err(IndexError::NotFound(_))
    ));
    assert_eq!(store.stats().tenants, 4);
    assert_eq!(store.stats().collections, 12);
}

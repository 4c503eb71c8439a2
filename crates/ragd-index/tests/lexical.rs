//! The lexical (BM25) index of a collection and hybrid search: what it
//! finds, how replacements, deletes and compaction change it, that it
//! comes back the same after a restart, and how the fused list is made.

mod common;

use common::*;
use ragd_index::{Fusion, Hit, IndexError, MetadataFilter, Query, SearchMode, Store, StoreOptions};
use serde_json::json;

fn lexical<'a>(text: &'a str, top_k: usize, filter: Option<&'a MetadataFilter>) -> Query<'a> {
    Query {
        vector: None,
        text,
        mode: SearchMode::Lexical,
        fusion: Fusion::default(),
        top_k,
        filter,
    }
}

fn doc_ids(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.doc_id.as_str()).collect()
}

fn corpus() -> Vec<ragd_index::DocumentInput> {
    vec![
        doc(
            "cats",
            "Cats purr and sleep on warm windowsills",
            json!({"topic": "pets"}),
        ),
        doc(
            "rust",
            "The Rust borrow checker enforces lifetimes",
            json!({"topic": "code"}),
        ),
        doc(
            "bread",
            "Flour, water, salt and yeast: knead, then bake",
            json!({"topic": "food"}),
        ),
        doc(
            "dogs",
            "Dogs sleep a lot and bark at cats",
            json!({"topic": "pets"}),
        ),
    ]
}

#[test]
fn lexical_search_matches_stemmed_terms_and_follows_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "docs", config()).unwrap();
    upsert(&c, corpus());

    // Stemming on both sides: "baking" finds "bake", "checkers" "checker".
    let hits = c.query(&lexical("baking bread?", 10, None)).unwrap();
    assert_eq!(doc_ids(&hits), ["bread"]);
    let hits = c
        .query(&lexical("Who checks borrowing checkers", 10, None))
        .unwrap();
    assert_eq!(doc_ids(&hits), ["rust"]);
    let h = &hits[0];
    assert_eq!((h.lexical.unwrap().rank, h.dense), (1, None));
    assert_eq!(h.score, h.lexical.unwrap().score);
    assert!(h.score > 0.0);
    // Two documents share "sleep" and "cats", one has "purr" too: both
    // found, that one first; stopwords alone find nothing.
    let hits = c.query(&lexical("sleeping cats purr", 10, None)).unwrap();
    assert_eq!(doc_ids(&hits), ["cats", "dogs"]);
    assert!(hits[0].score > hits[1].score, "{hits:?}");
    assert_eq!(hits[1].lexical.unwrap().rank, 2);
    assert!(c.query(&lexical("the and a of", 10, None)).unwrap().is_empty());
    assert!(c.query(&lexical("zebra", 10, None)).unwrap().is_empty());
    // Filters apply.
    let food = MetadataFilter::eq("topic", "food");
    assert!(c
        .query(&lexical("sleeping cats", 10, Some(&food)))
        .unwrap()
        .is_empty());
    let pets = MetadataFilter::eq("topic", "pets");
    assert_eq!(
        doc_ids(&c.query(&lexical("cats", 1, Some(&pets))).unwrap()),
        ["cats"]
    );

    // A replacement drops the old text's terms and indexes the new ones.
    upsert(&c, vec![doc("rust", "Sourdough starter bubbles", json!({}))]);
    assert!(c.query(&lexical("borrow checker", 10, None)).unwrap().is_empty());
    assert_eq!(
        doc_ids(&c.query(&lexical("sourdough", 10, None)).unwrap()),
        ["rust"]
    );
    // A delete drops the document's chunks.
    c.delete(&["cats"]).unwrap();
    assert_eq!(
        doc_ids(&c.query(&lexical("sleeping cats", 10, None)).unwrap()),
        ["dogs"]
    );
    // Compaction changes nothing that is found, scores included.
    let before = c.query(&lexical("sleep cats sourdough yeast", 10, None)).unwrap();
    assert_eq!(before.len(), 3);
    c.compact().unwrap();
    assert_eq!(c.stats().unwrap().tombstones, 0);
    assert_eq!(
        c.query(&lexical("sleep cats sourdough yeast", 10, None)).unwrap(),
        before
    );
}

#[test]
fn hybrid_fuses_dense_and_lexical_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "docs", config()).unwrap();
    upsert(&c, corpus());
    let text = "dogs bark";
    let vector = query("cats purr and sleep on warm windowsills");
    let q = Query {
        vector: Some(&vector),
        text,
        mode: SearchMode::Hybrid,
        fusion: Fusion::Rrf { k: 60.0 },
        top_k: 10,
        filter: None,
    };
    let hits = c.query(&q).unwrap();
    // Every chunk comes back (the window covers them all), each with its
    // dense rank; only "dogs" has lexical terms in common.
    assert_eq!(hits.len(), 4);
    for h in &hits {
        let d = h.dense.expect("every chunk is a dense candidate");
        let l = h.lexical.map_or(0.0, |l| 1.0 / (60.0 + l.rank as f32));
        assert!(
            (h.score - (1.0 / (60.0 + d.rank as f32) + l)).abs() < 1e-6,
            "{h:?}"
        );
        assert_eq!(h.lexical.is_some(), h.doc_id == "dogs");
    }
    // The dense best and the lexical best share the top: "cats" is dense
    // rank 1; "dogs" has both ranks, so it is first.
    assert_eq!(hits[0].doc_id, "dogs");
    let dense = c.search(&vector, 10, None).unwrap();
    assert_eq!(dense[0].doc_id, "cats");
    assert_eq!(dense[0].dense.unwrap().rank, 1);
    assert_eq!(dense[0].score, dense[0].dense.unwrap().score);
    assert_eq!(
        hits.iter()
            .find(|h| h.doc_id == "cats")
            .unwrap()
            .dense
            .unwrap()
            .rank,
        1
    );
    // top_k cuts the fused list.
    assert_eq!(c.query(&Query { top_k: 1, ..q }).unwrap()[0].doc_id, "dogs");
    // Weighted fusion with all weight on the dense side is the dense order.
    let weighted = c
        .query(&Query {
            fusion: Fusion::Weighted { dense_weight: 1.0 },
            ..q
        })
        .unwrap();
    assert_eq!(doc_ids(&weighted), doc_ids(&dense));
    // Hybrid and dense need the vector; bad fusion settings are refused.
    for mode in [SearchMode::Dense, SearchMode::Hybrid] {
        let e = c
            .query(&Query {
                vector: None,
                mode,
                ..q
            })
            .unwrap_err();
        assert!(matches!(e, IndexError::InvalidInput(_)), "{e}");
    }
    let e = c
        .query(&Query {
            fusion: Fusion::Weighted { dense_weight: -0.1 },
            ..q
        })
        .unwrap_err();
    assert!(matches!(e, IndexError::InvalidInput(_)), "{e}");
}

#[test]
fn lexical_hits_survive_restarts_checkpoints_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_points: 20,
        compact_tombstone_ratio: 0.3,
        ..StoreOptions::default()
    };
    let unique = |i: usize| format!("w{i}x");
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let c = store.create_collection("t", "c", config()).unwrap();
    let write = |range: std::ops::Range<usize>, tag: &str| {
        let docs = range
            .map(|i| {
                doc(
                    &format!("d{i}"),
                    &format!("{} {tag} shared words", unique(i)),
                    json!({}),
                )
            })
            .collect();
        upsert(&c, docs);
    };
    write(0..40, "first");
    c.checkpoint().unwrap();
    write(30..60, "second"); // 10 replaced
    c.delete(&(0..10).map(|i| format!("d{i}")).collect::<Vec<_>>())
        .unwrap();
    let everything =
        |c: &ragd_index::Collection| c.query(&lexical("shared first second", 100, None)).unwrap();
    let before = everything(&c);
    assert_eq!(before.len(), 50);
    drop((c, store));

    for round in 0..2 {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        let c = store.collection("t", "c").unwrap();
        assert_eq!(everything(&c), before, "round {round}: same hits, same scores");
        for i in 10..60 {
            let hits = c.query(&lexical(&unique(i), 5, None)).unwrap();
            assert_eq!(doc_ids(&hits), [format!("d{i}")], "round {round}");
        }
        for i in 0..10 {
            assert!(c.query(&lexical(&unique(i), 5, None)).unwrap().is_empty());
        }
        // Replaced documents hold only their new text.
        let hits = c.query(&lexical("first", 100, None)).unwrap();
        assert_eq!(hits.len(), 20, "d10..d29");
        c.checkpoint().unwrap();
    }
}

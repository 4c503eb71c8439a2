//! Behaviour of one collection: writes, search, filters, tombstones,
//! compaction.

mod common;

use common::*;
use ragd_index::testing::{HashEmbedder, SplitMix64};
use ragd_index::{
    CollectionConfig, EmbeddedChunk, EmbeddedDocument, IndexError, Metadata, MetadataFilter, Store,
    StoreOptions,
};
use serde_json::json;

#[test]
fn upsert_search_delete_and_reupsert() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t1", "docs", config()).unwrap();

    let out = upsert(
        &c,
        vec![
            doc(
                "cats",
                "cats purr and sleep on warm windowsills",
                json!({"topic": "pets"}),
            ),
            doc(
                "rust",
                "rust borrow checker lifetimes and traits",
                json!({"topic": "code"}),
            ),
            doc(
                "bread",
                "flour water salt yeast knead bake",
                json!({"topic": "food"}),
            ),
        ],
    );
    assert_eq!((out.documents, out.chunks, out.replaced), (3, 3, 0));

    let hits = c.search(&query("borrow checker traits"), 2, None).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].doc_id, "rust");
    assert_eq!(hits[0].chunk_index, 0);
    assert_eq!(hits[0].metadata["topic"], "code");
    assert!(hits[0].text.contains("borrow"));
    assert!(hits[0].score > hits[1].score && hits[0].score <= 1.0 + 1e-6);

    // Exact text gives similarity 1.
    let exact = c
        .search(&query("flour water salt yeast knead bake"), 1, None)
        .unwrap();
    assert_eq!(exact[0].doc_id, "bread");
    assert!((exact[0].score - 1.0).abs() < 1e-5);

    // Re-upsert replaces the old chunks.
    let out = upsert(
        &c,
        vec![doc("rust", "sourdough starter bubbles", json!({"topic": "food"}))],
    );
    assert_eq!(out.replaced, 1);
    let hits = c.search(&query("borrow checker traits"), 10, None).unwrap();
    assert_eq!(hits.len(), 3, "three documents, one chunk each");
    assert!(
        hits.iter().all(|h| !h.text.contains("borrow")),
        "old chunk still found"
    );
    assert_eq!(
        c.document("rust").unwrap().unwrap().chunks,
        ["sourdough starter bubbles"]
    );

    // Delete.
    assert_eq!(c.delete(&["rust", "missing"]).unwrap(), 1);
    assert_eq!(c.delete(&["rust"]).unwrap(), 0);
    let hits = c.search(&query("sourdough starter bubbles"), 10, None).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.doc_id != "rust"));
    assert!(c.document("rust").unwrap().is_none());
    let stats = c.stats().unwrap();
    assert_eq!((stats.documents, stats.chunks, stats.tombstones), (2, 2, 2));
}

#[test]
fn long_documents_are_chunked_with_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "c", config()).unwrap();
    // 16-token chunks, 4 shared: 100 words -> ceil((100 - 16) / 12) + 1 = 8.
    let out = upsert(&c, vec![doc("long", &words("w", 100), json!({}))]);
    assert_eq!(out.chunks, 8);
    let info = c.document("long").unwrap().unwrap();
    assert_eq!(info.chunks.len(), 8);
    assert!(info.chunks.iter().all(|t| t.split_whitespace().count() <= 16));
    let hits = c.search(&query(&info.chunks[5]), 1, None).unwrap();
    assert_eq!((hits[0].doc_id.as_str(), hits[0].chunk_index), ("long", 5));
}

#[test]
fn metadata_filter_and_doc_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "c", config()).unwrap();
    let docs = (0..60)
        .map(|i| {
            doc(
                &format!("d{i}"),
                &format!("shared words here {}", words(&format!("u{i}x"), 5)),
                json!({"lang": if i % 3 == 0 { "fr" } else { "en" }, "year": 2000 + i % 2}),
            )
        })
        .collect();
    upsert(&c, docs);

    let q = query("shared words here");
    let fr = c
        .search(&q, 100, Some(&MetadataFilter::eq("lang", "fr")))
        .unwrap();
    assert_eq!(fr.len(), 20);
    assert!(fr.iter().all(|h| h.metadata["lang"] == "fr"));

    let mut both = MetadataFilter::eq("lang", "en");
    both.equals.insert("year".into(), json!(2001));
    let hits = c.search(&q, 100, Some(&both)).unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|h| h.metadata["lang"] == "en" && h.metadata["year"] == 2001));
    assert_eq!(hits.len(), (0..60).filter(|i| i % 3 != 0 && i % 2 == 1).count());

    let ids = MetadataFilter::doc_ids(["d1", "d2", "d3", "nope"]);
    let hits = c.search(&q, 2, Some(&ids)).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits
        .iter()
        .all(|h| ["d1", "d2", "d3"].contains(&h.doc_id.as_str())));

    let mut ids_and_lang = MetadataFilter::doc_ids(["d1", "d2", "d3"]);
    ids_and_lang.equals.insert("lang".into(), json!("fr"));
    let hits = c.search(&q, 10, Some(&ids_and_lang)).unwrap();
    assert_eq!(hits.iter().map(|h| h.doc_id.as_str()).collect::<Vec<_>>(), ["d3"]);

    assert!(c
        .search(&q, 10, Some(&MetadataFilter::eq("lang", "de")))
        .unwrap()
        .is_empty());
}

/// Random unit-ish vectors around a few centres, like sentence embeddings.
fn clustered(rng: &mut SplitMix64, n: usize, dim: usize) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| rng.unit()).collect()).collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.below(centres.len())];
            c.iter().map(|x| x + 0.6 * rng.unit()).collect()
        })
        .collect()
}

fn embedded(id: String, vector: Vec<f32>, metadata: Metadata) -> EmbeddedDocument {
    EmbeddedDocument {
        id,
        metadata,
        chunks: vec![EmbeddedChunk {
            text: String::new(),
            vector,
        }],
    }
}

#[test]
fn top_k_is_honoured_with_many_tombstones_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    // No automatic compaction: tombstones stay in the graph.
    let options = StoreOptions {
        compact_min_points: usize::MAX,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let dim = 16;
    let c = store
        .create_collection("t", "c", CollectionConfig::new(dim, 16, 0))
        .unwrap();
    let mut rng = SplitMix64(7);
    let vectors = clustered(&mut rng, 3000, dim);
    let docs = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let meta = json!({"bucket": i % 10}).as_object().unwrap().clone();
            embedded(format!("d{i}"), v.clone(), meta)
        })
        .collect();
    c.upsert(docs).unwrap();
    // Delete 90% of the documents.
    let dead: Vec<String> = (0..3000)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("d{i}"))
        .collect();
    c.delete(&dead).unwrap();
    assert_eq!(c.stats().unwrap().tombstones, 2700);

    for q in vectors.iter().step_by(97) {
        let hits = c.search(q, 50, None).unwrap();
        assert_eq!(hits.len(), 50);
        assert!(hits.iter().all(|h| h.metadata["bucket"] == 0));
        // A filter matching only 30 live documents still returns all 30.
        let mut few = MetadataFilter::eq("bucket", 0);
        few.doc_ids = Some((0..300).map(|i| format!("d{i}")).collect());
        assert_eq!(c.search(q, 100, Some(&few)).unwrap().len(), 30);
        // A filter matching none of the live ones returns nothing.
        assert!(c
            .search(q, 10, Some(&MetadataFilter::eq("bucket", 3)))
            .unwrap()
            .is_empty());
    }
    assert_eq!(c.search(&vectors[0], 10_000, None).unwrap().len(), 300);
}

#[test]
fn compaction_keeps_results() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_points: usize::MAX,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let dim = 16;
    let c = store
        .create_collection("t", "c", CollectionConfig::new(dim, 16, 0))
        .unwrap();
    let mut rng = SplitMix64(11);
    let vectors = clustered(&mut rng, 1000, dim);
    c.upsert(
        vectors
            .iter()
            .enumerate()
            .map(|(i, v)| embedded(format!("d{i}"), v.clone(), Metadata::new()))
            .collect(),
    )
    .unwrap();
    let dead: Vec<String> = (0..1000)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("d{i}"))
        .collect();
    c.delete(&dead).unwrap();
    let queries: Vec<&Vec<f32>> = vectors.iter().step_by(50).collect();
    let before: Vec<Vec<String>> = queries
        .iter()
        .map(|q| {
            c.search(q, 5, None)
                .unwrap()
                .into_iter()
                .map(|h| h.doc_id)
                .collect()
        })
        .collect();
    c.compact().unwrap();
    let stats = c.stats().unwrap();
    assert_eq!((stats.documents, stats.tombstones), (500, 0));
    for (q, before) in queries.iter().zip(&before) {
        let after: Vec<String> = c
            .search(q, 5, None)
            .unwrap()
            .into_iter()
            .map(|h| h.doc_id)
            .collect();
        assert_eq!(&after, before);
    }
}

#[test]
fn automatic_compaction_past_the_tombstone_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        compact_min_points: 100,
        compact_tombstone_ratio: 0.3,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let c = store.create_collection("t", "c", config()).unwrap();
    upsert(
        &c,
        (0..200)
            .map(|i| doc(&format!("d{i}"), &words(&format!("a{i}b"), 4), json!({})))
            .collect(),
    );
    c.delete(&(0..50).map(|i| format!("d{i}")).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(c.stats().unwrap().tombstones, 50, "25%: not yet");
    c.delete(&(50..70).map(|i| format!("d{i}")).collect::<Vec<_>>())
        .unwrap();
    let stats = c.stats().unwrap();
    assert_eq!((stats.documents, stats.tombstones), (130, 0), "35%: compacted");
    let hits = c.search(&query(&words("a100b", 4)), 2, None).unwrap();
    assert_eq!(hits[0].doc_id, "d100");
    assert!(hits[0].score > hits[1].score);
}

#[test]
fn recall_at_10_against_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let dim = 48;
    let c = store
        .create_collection("t", "c", CollectionConfig::new(dim, 16, 0))
        .unwrap();
    let mut rng = SplitMix64(42);
    let vectors = clustered(&mut rng, 4000, dim);
    c.upsert(
        vectors
            .iter()
            .enumerate()
            .map(|(i, v)| embedded(format!("d{i}"), v.clone(), Metadata::new()))
            .collect(),
    )
    .unwrap();
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    let queries = clustered(&mut rng, 100, dim);
    let mut found = 0;
    for q in &queries {
        let mut exact: Vec<(usize, f32)> = vectors.iter().enumerate().map(|(i, v)| (i, cos(q, v))).collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1));
        let truth: Vec<String> = exact[..10].iter().map(|(i, _)| format!("d{i}")).collect();
        let hits = c.search(q, 10, None).unwrap();
        found += hits.iter().filter(|h| truth.contains(&h.doc_id)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.98, "recall@10 = {recall}");
}

#[test]
fn bad_input_is_rejected_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "c", config()).unwrap();
    let good = HashEmbedder::new(DIM).embed_one("x");
    let with = |vector: Vec<f32>| {
        vec![EmbeddedDocument {
            id: "d".into(),
            metadata: Metadata::new(),
            chunks: vec![EmbeddedChunk {
                text: "x".into(),
                vector,
            }],
        }]
    };
    assert!(matches!(
        c.upsert(with(vec![1.0; 3])),
        Err(IndexError::DimensionMismatch { expected: 64, got: 3 })
    ));
    assert!(matches!(
        c.upsert(with(vec![0.0; DIM])),
        Err(IndexError::InvalidInput(_))
    ));
    let mut nan = good.clone();
    nan[1] = f32::NAN;
    assert!(matches!(c.upsert(with(nan)), Err(IndexError::InvalidInput(_))));
    let mut dup = with(good.clone());
    dup.extend(with(good.clone()));
    assert!(matches!(c.upsert(dup), Err(IndexError::InvalidInput(_))));
    let mut empty_id = with(good.clone());
    empty_id[0].id.clear();
    assert!(matches!(c.upsert(empty_id), Err(IndexError::InvalidInput(_))));
    assert!(matches!(
        c.search(&[1.0; 2], 1, None),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        c.prepare(
            vec![doc("e", "  ", json!({}))],
            &ragd_index::testing::WhitespaceTokenizer
        ),
        Err(IndexError::InvalidInput(_))
    ));
    assert_eq!(c.stats().unwrap().documents, 0);
    assert_eq!(c.stats().unwrap().wal_bytes, 0, "nothing logged");
    assert!(c.search(&good, 5, None).unwrap().is_empty());
    assert!(c.search(&good, 0, None).unwrap().is_empty());
}

#[test]
fn collection_names_and_configs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (tenant, name) in [
        ("t", "../x"),
        ("t/..", "x"),
        ("", "x"),
        ("t", ".hidden"),
        ("t", "a b"),
    ] {
        assert!(matches!(
            store.create_collection(tenant, name, config()),
            Err(IndexError::InvalidName { .. })
        ));
    }
    let bad = [
        CollectionConfig::new(0, 16, 0),
        CollectionConfig::new(8, 0, 0),
        CollectionConfig::new(8, 16, 16),
        CollectionConfig {
            hnsw: ragd_index::HnswParams {
                m: 300,
                ..Default::default()
            },
            ..config()
        },
    ];
    for cfg in bad {
        assert!(matches!(
            store.create_collection("t", "c", cfg),
            Err(IndexError::InvalidInput(_))
        ));
    }
    store.create_collection("t", "c", config()).unwrap();
    assert!(matches!(
        store.create_collection("t", "c", config()),
        Err(IndexError::AlreadyExists(_))
    ));
}

#[test]
fn concurrent_searches_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open(dir.path()));
    store.create_collection("t", "c", config()).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let c = store.collection("t", "c").unwrap();
                for i in 0..30 {
                    upsert(
                        &c,
                        vec![doc(
                            &format!("w{w}-{i}"),
                            &words(&format!("w{w}i{i}x"), 6),
                            json!({}),
                        )],
                    );
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let c = store.collection("t", "c").unwrap();
                for _ in 0..100 {
                    c.search(&query("w0i1x0"), 5, None).unwrap();
                }
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    assert_eq!(store.collection("t", "c").unwrap().stats().unwrap().documents, 60);
}

#[test]
fn documents_list_in_id_order_page_by_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let c = store.create_collection("t", "c", config()).unwrap();
    let ids = ["b", "a", "long", "c", "e", "d"];
    let docs = ids
        .iter()
        .map(|id| {
            let text = if *id == "long" {
                words("w", 40)
            } else {
                format!("text of {id}")
            };
            doc(id, &text, json!({"id": id}))
        })
        .collect();
    upsert(&c, docs);
    let all = c.list_documents(None, 100).unwrap();
    let listed: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    assert_eq!(listed, sorted);
    let long = all.iter().find(|d| d.id == "long").unwrap();
    assert_eq!(long.chunks, c.document("long").unwrap().unwrap().chunks.len());
    assert!(long.chunks > 1);
    assert_eq!(long.metadata["id"], "long");
    // Pages of two, each starting after the last id of the one before.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = c.list_documents(after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|d| d.id));
    }
    assert_eq!(paged, sorted);
    c.delete(&["c"]).unwrap();
    let after_b: Vec<String> = (c.list_documents(Some("b"), 2).unwrap().into_iter())
        .map(|d| d.id)
        .collect();
    assert_eq!(after_b, ["d", "e"]);
}

//! The Postgres store vs the in-memory store on the same real vectors, in
//! one run: load time, queries/s and recall@10 of dense searches at each
//! store's default settings (the collection defaults: HNSW M 16,
//! ef_construction 128, ef_search 160, in hnsw_rs and in pgvector alike).
//! `benches/pg_vs_memory.sh` starts the Postgres and runs it.
//!
//! ```text
//! pg_vs_memory --pg-url URL [--data DIR] [--queries N] [--clients 1,4] [--batch N]
//! ```
//!
//! Vectors: `base.npy` / `queries.npy` with the exact top 10 (`gt_ids.npy`,
//! `gt_dist.npy`) under `--data` (default `~/.cache/ragd/bench`), made by
//! `hnsw_bench` (see `benches/hnsw_vs_hnswlib.sh`). Each base vector becomes
//! a one-chunk document. Searches go through each store's own query call
//! (`Collection::query` on the blocking pool, as the service calls it;
//! `PgCollection::query`: one transaction, tenant set, index scan, rows
//! fetched), `--queries` evenly spaced queries, each client taking the next,
//! after `VACUUM ANALYZE` and `CHECKPOINT` in Postgres and an untimed pass
//! over a tenth of the queries in both.
//! A table goes to stderr and one JSON object to stdout.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ragd_index::bench::{le_f32, le_i32, read_npy, read_npy_f32, recall_hits, Mat};
use ragd_index::{
    CollectionConfig, EmbeddedChunk, EmbeddedDocument, Fusion, Hit, Metadata, Query, SearchMode, Store,
    StoreOptions,
};
use ragd_pg::PgStore;
use serde_json::{json, Value};

const K: usize = 10;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Opts {
    pg_url: String,
    data: PathBuf,
    queries: usize,
    clients: Vec<usize>,
    batch: usize,
}

fn opts() -> Res<Opts> {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let mut o = Opts {
        pg_url: String::new(),
        data: home.join(".cache/ragd/bench"),
        queries: 2000,
        clients: vec![1, 4],
        batch: 500,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            return Err(format!("{pair:?}: every flag takes a value").into());
        };
        match flag.as_str() {
            "--pg-url" => o.pg_url = value.clone(),
            "--data" => o.data = value.into(),
            "--queries" => o.queries = value.parse()?,
            "--batch" => o.batch = value.parse()?,
            "--clients" => {
                o.clients = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if o.pg_url.is_empty() {
        return Err("--pg-url is required".into());
    }
    Ok(o)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn documents(base: &Mat) -> Vec<EmbeddedDocument> {
    (0..base.rows)
        .map(|i| EmbeddedDocument {
            id: i.to_string(),
            metadata: Metadata::new(),
            chunks: vec![EmbeddedChunk {
                text: format!("vector {i}"),
                vector: base.row(i).to_vec(),
            }],
        })
        .collect()
}

fn query(vector: &[f32]) -> Query<'_> {
    Query {
        vector: Some(vector),
        text: "",
        mode: SearchMode::Dense,
        fusion: Fusion::default(),
        top_k: K,
        filter: None,
    }
}

/// What one store's searches gave: queries/s over the run, recall@10.
struct Measured {
    qps: f64,
    recall: f64,
}

/// Runs `picked` queries through `search` with `clients` concurrent
/// callers; recall against the ground truth.
async fn measure<F, Fut>(clients: usize, picked: &[usize], data: &Arc<Data>, search: F) -> Res<Measured>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Res<Vec<Hit>>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let found = Arc::new(Mutex::new(vec![Vec::new(); picked.len()]));
    let picked: Arc<Vec<usize>> = Arc::new(picked.to_vec());
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, found, picked, search) = (next.clone(), found.clone(), picked.clone(), search.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&q) = picked.get(i) else {
                    return Res::Ok(());
                };
                let hits = search(q).await?;
                let ids: Vec<u64> = hits
                    .iter()
                    .map(|h| h.doc_id.parse().unwrap_or(u64::MAX))
                    .collect();
                found.lock().expect("lock")[i] = ids;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let found = found.lock().expect("lock");
    let correct: usize = picked
        .iter()
        .zip(found.iter())
        .map(|(&q, ids)| {
            let gt = q * K..(q + 1) * K;
            recall_hits(
                &data.base,
                data.queries.row(q),
                ids,
                &data.gt_ids[gt.clone()],
                &data.gt_dist[gt],
                K,
            )
        })
        .sum();
    Ok(Measured {
        qps: picked.len() as f64 / seconds,
        recall: correct as f64 / (picked.len() * K) as f64,
    })
}

struct Data {
    base: Mat,
    queries: Mat,
    gt_ids: Vec<i32>,
    gt_dist: Vec<f32>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("pg_vs_memory: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Res<()> {
    let o = opts()?;
    let data = Arc::new(Data {
        base: read_npy_f32(&o.data.join("base.npy"))?,
        queries: read_npy_f32(&o.data.join("queries.npy"))?,
        gt_ids: le_i32(&read_npy(&o.data.join("gt_ids.npy"), "<i4")?.bytes),
        gt_dist: le_f32(&read_npy(&o.data.join("gt_dist.npy"), "<f4")?.bytes),
    });
    let n = o.queries.min(data.queries.rows);
    let picked: Vec<usize> = (0..n).map(|i| i * data.queries.rows / n).collect();
    let config = CollectionConfig::new(data.base.dim, 256, 32);
    let options = StoreOptions {
        max_documents_per_collection: 10_000_000,
        ..StoreOptions::default()
    };
    let load_before = load_avg();
    eprintln!(
        "{} base vectors x {}, {n} queries; load average {load_before}",
        data.base.rows, data.base.dim
    );

    // In memory, in a temporary data folder.
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path(), options.clone())?;
    let memory = store.create_collection("bench", "vectors", config.clone())?;
    let t0 = Instant::now();
    for batch in documents(&data.base).chunks(o.batch) {
        memory.upsert(batch.to_vec())?;
    }
    let memory_load = t0.elapsed().as_secs_f64();
    eprintln!("memory: loaded in {memory_load:.1} s");

    // Postgres.
    let pg = PgStore::connect(&o.pg_url, options).await?;
    let name = format!("vectors-{}", std::process::id());
    let postgres = pg.create_collection("bench", &name, config.clone()).await?;
    let t0 = Instant::now();
    for batch in documents(&data.base).chunks(o.batch) {
        postgres
            .upsert(batch.to_vec(), &ragd_index::Cancel::new())
            .await?;
    }
    let pg_load = t0.elapsed().as_secs_f64();
    eprintln!("postgres: loaded in {pg_load:.1} s");
    // What a database does after a bulk load anyway (statistics, flushing
    // the load's WAL), done now rather than during the timed searches.
    let admin = pg.pool().get().await?;
    // One statement each: VACUUM refuses to run in a multi-statement block.
    for sql in ["VACUUM ANALYZE ragd_chunks, ragd_documents", "CHECKPOINT"] {
        admin
            .batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e:?}"))?;
    }
    drop(admin);

    let mut results = Vec::new();
    eprintln!("\n{:>9} {:>7} {:>9} {:>9}", "store", "clients", "QPS", "R@10");
    // One untimed pass over a tenth of the queries each: caches warm.
    let warm: Vec<usize> = picked.iter().step_by(10).copied().collect();
    for &q in &warm {
        memory.query(&query(data.queries.row(q)))?;
        postgres.query(&query(data.queries.row(q))).await?;
    }
    for &clients in &o.clients {
        let (c, d) = (memory.clone(), data.clone());
        let m = measure(clients, &picked, &data, move |q| {
            let (c, d) = (c.clone(), d.clone());
            async move {
                tokio::task::spawn_blocking(move || c.query(&query(d.queries.row(q))))
                    .await?
                    .map_err(Into::into)
            }
        })
        .await?;
        let (c, d) = (postgres.clone(), data.clone());
        let p = measure(clients, &picked, &data, move |q| {
            let (c, d) = (c.clone(), d.clone());
            async move { c.query(&query(d.queries.row(q))).await.map_err(Into::into) }
        })
        .await?;
        for (store, x) in [("memory", &m), ("postgres", &p)] {
            eprintln!("{store:>9} {clients:>7} {:>9.0} {:>9.4}", x.qps, x.recall);
            results.push(json!({"store": store, "clients": clients, "qps": x.qps, "recall_at_10": x.recall}));
        }
        eprintln!("{:>9} {clients:>7} {:>9.3}", "pg/mem", p.qps / m.qps);
    }
    pg.delete_collection("bench", &name).await?;
    let load_after = load_avg();
    eprintln!("load average after: {load_after}");
    let out: Value = json!({
        "n_base": data.base.rows,
        "dim": data.base.dim,
        "n_queries": n,
        "k": K,
        "hnsw": {"m": config.hnsw.m, "ef_construction": config.hnsw.ef_construction, "ef_search": config.hnsw.ef_search},
        "load_s": {"memory": memory_load, "postgres": pg_load},
        "batch": o.batch,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

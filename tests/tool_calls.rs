//! Tool calls with the real generator through the official `openai`
//! Python client (`tests/python/tool_calls_check.py`): forced calls parsed
//! streamed and not, a second turn answered in text, `tool_choice: none`.
//!
//! Needs a Python with `openai`: `RAGD_TEST_PYTHON` names it (`scripts/test`
//! sets it up), else `python3`.

use std::process::Command;

use ragd_suite::{repo_root, start_on_own_thread};

#[test]
fn the_openai_client_gets_tool_calls_and_sends_results_back() {
    let (addr, _server) = start_on_own_thread(|c| {
        c.models.embedder = "none".into();
        c.models.guard = "none".into();
    });
    let python = std::env::var("RAGD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/python/tool_calls_check.py");
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
    assert!(stdout.contains("tool calls ok: get_weather("), "{stdout}");
}

//! Tool calls with the real generator through the official `openai`
//! Python client (`tests/python/tool_calls_check.py`): forced calls parsed
//! streamed and not, a second turn answered in text, `tool_choice: none`.
//!
//! Needs a Python with `openai`: `RAGD_TEST_PYTHON` names it (`scripts/test`
//! sets it up), else `python3`.

use ragd_suite::{generator_only, run_python_check, start_on_own_thread};

#[test]
fn the_openai_client_gets_tool_calls_and_sends_results_back() {
    let (addr, _server) = start_on_own_thread(generator_only);
    run_python_check(addr, "tool_calls_check.py", "tool calls ok: get_weather(");
}

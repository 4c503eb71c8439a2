//! `POST /v1/responses` with the real generator through the official
//! `openai` Python client (`tests/python/responses_check.py`).

use ragd_suite::{generator_only, run_python_check, start_on_own_thread};

#[test]
fn the_openai_client_uses_the_responses_api() {
    let (addr, _server) = start_on_own_thread(generator_only);
    run_python_check(addr, "responses_check.py", "responses ok: function_call");
}

//! Structured outputs (`response_format`) with the real generator through
//! the official `openai` Python client: 20 schemas x 5 seeds, streamed and
//! not, every output validated with Python's `jsonschema`.
//!
//! Needs a Python with `openai` and `jsonschema`: `RAGD_TEST_PYTHON` names
//! it (`scripts/test` sets it up), else `python3`.

use ragd_suite::{generator_only, run_python_check, start_on_own_thread};

#[test]
fn every_output_validates_against_its_json_schema() {
    let (addr, _server) = start_on_own_thread(generator_only);
    run_python_check(
        addr,
        "structured_outputs_check.py",
        "structured outputs ok: 200 outputs valid",
    );
}

//! The official `openai` Python client against a running ragd.
//!
//! Needs a Python with `openai` installed: `RAGD_TEST_PYTHON` names it
//! (`scripts/test` sets it up), else `python3`.

use ragd_suite::{run_python_check, shared_server};

#[test]
fn openai_python_client_gets_embeddings_moderations_chat_and_rag_answers() {
    run_python_check(
        shared_server(),
        "openai_client_check.py",
        "embeddings, moderations, chat and rag ok",
    );
}

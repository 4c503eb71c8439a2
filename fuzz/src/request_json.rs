//! `request_json`: the JSON bodies of every ragd-server endpoint.
//!
//! Every input is tried as every request type (so the fuzzer's finds for
//! one endpoint seed the others), and whatever deserializes goes through
//! the checks its handler runs before it needs a model: sampling fields,
//! chat messages and the chat template's prompt pieces, RAG prompt
//! building, `input` parsing, names and tenant ids, document chunking.
//! Errors are turned into responses, as the server would.
//!
//! Self-contained (ragd-server's dependencies only): also included by
//! `crates/ragd-server/tests/fuzz_regressions.rs`.

use std::sync::{Arc, OnceLock};

use axum::response::IntoResponse;
use ragd_core::TextTokenizer;
use ragd_index::{Collection, CollectionConfig, HnswParams, Store, StoreOptions};
use ragd_models::llama::{ChatMessage, ChatTemplate, PromptPiece};
use ragd_server::auth::keys::check_tenant;
use ragd_server::error::ApiError;
use ragd_server::input;
use ragd_server::routes::admin::CreateKey;
use ragd_server::routes::chat::{self, ChatRequest};
use ragd_server::routes::collections::{CreateCollection, SearchRequest, UpsertDocuments};
use ragd_server::routes::completions::CompletionRequest;
use ragd_server::routes::embeddings::EmbeddingsRequest;
use ragd_server::routes::moderations::ModerationRequest;
use ragd_service::rag::{self, RagTemplate, Source};
use ragd_service::tools::ToolCallFormat;
use ragd_service::RequestLimits;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template` (ChatML), from its GGUF.
pub const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Small limits, so that short inputs reach every limit check.
fn limits() -> RequestLimits {
    RequestLimits {
        max_inputs: 8,
        max_input_bytes: 256,
        max_chat_bytes: 1024,
    }
}

struct Fixture {
    chat_template: ChatTemplate,
    rag_template: RagTemplate,
    store: Store,
    collection: Arc<Collection>,
}

/// Built once per process: templates, and a store holding one empty
/// collection (its folder removed at once: nothing below writes).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ragd-fuzz-request-json-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, StoreOptions::default()).expect("open a store");
        let mut config = CollectionConfig::new(4, 8, 2);
        config.hnsw = HnswParams {
            m: 4,
            ef_construction: 16,
            ef_search: 16,
        };
        let collection = store
            .create_collection("default", "docs", config)
            .expect("create a collection");
        // Only in-memory lookups and chunking follow: the folder can go now
        // (a static is never dropped, so it would be left behind).
        let _ = std::fs::remove_dir_all(&dir);
        Fixture {
            chat_template: ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").expect("ChatML compiles"),
            rag_template: RagTemplate::new(rag::DEFAULT_TEMPLATE).expect("the RAG template compiles"),
            store,
            collection,
        }
    })
}

/// A token per word (ragd-server's tests lack `ragd_index::testing`).
struct Words;

impl TextTokenizer for Words {
    fn encode(&self, text: &str) -> ragd_core::Result<Vec<u32>> {
        Ok(text.split_whitespace().map(|w| w.len() as u32).collect())
    }

    fn vocab_size(&self) -> usize {
        u32::MAX as usize
    }
}

/// What a handler does with an error: build the response.
fn check<T, E: Into<ApiError>>(result: Result<T, E>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let _ = e.into().into_response();
            None
        }
    }
}

pub fn run(data: &[u8]) {
    let f = fixture();
    if let Ok(req) = serde_json::from_slice::<ChatRequest>(data) {
        chat_request(f, req);
    }
    if let Ok(req) = serde_json::from_slice::<CompletionRequest>(data) {
        completion_request(req);
    }
    if let Ok(req) = serde_json::from_slice::<EmbeddingsRequest>(data) {
        check(input::parse(&req.input, input::limits(&limits(), true)));
    }
    if let Ok(req) = serde_json::from_slice::<ModerationRequest>(data) {
        check(input::parse(&req.input, input::limits(&limits(), false)));
    }
    if let Ok(req) = serde_json::from_slice::<CreateCollection>(data) {
        name(f, &req.name);
        let _ = serde_json::to_vec(&req.metadata);
    }
    if let Ok(req) = serde_json::from_slice::<UpsertDocuments>(data) {
        let docs = req.into_inputs();
        // Chunking and id checks, as the upsert does before embedding.
        let _ = f.collection.prepare(docs, &Words);
    }
    if let Ok(req) = serde_json::from_slice::<SearchRequest>(data) {
        let _ = req.query.trim().is_empty();
        let _ = ragd_index::MetadataFilter {
            equals: req.filter,
            doc_ids: None,
        };
    }
    if let Ok(req) = serde_json::from_slice::<CreateKey>(data) {
        let _ = check_tenant(&req.tenant);
    }
    // Path segments: collection names, document and key ids.
    if let Ok(text) = std::str::from_utf8(data) {
        name(f, text);
    }
}

/// A collection name (and tenant id) as the store checks it.
fn name(f: &Fixture, name: &str) {
    let _ = f.store.collection(name, name);
    let _ = f.store.collection("default", name);
    let _ = check_tenant(name);
}

fn chat_request(f: &Fixture, req: ChatRequest) {
    // The order of `chat_completions`' checks, each one tried.
    let top = match (req.logprobs, req.top_logprobs) {
        (false, Some(_)) => None,
        (false, None) => None,
        (true, k) => Some(k.unwrap_or(0)),
    };
    if let Some(settings) = check(req.sampling.validate(req.max_completion_tokens, top)) {
        let _ = settings.sampling_for(settings.n.saturating_sub(1));
    }
    let Some(conversation) = check(chat::messages(
        &req.messages,
        &limits(),
        ToolCallFormat::default(),
    )) else {
        return;
    };
    prompt(&f.chat_template, &conversation);
    let question = check(rag::question_index(&conversation));
    if let (Some(rag_req), Some(q)) = (req.rag, question) {
        let text = format!("a chunk of {}", rag_req.collection);
        let sources = [Source {
            document_id: &rag_req.collection,
            text: &text,
            score: 0.5,
            metadata: &rag_req.filter,
        }];
        if let Some(augmented) = check(rag::augment(&f.rag_template, conversation, q, &sources)) {
            prompt(&f.chat_template, &augmented);
        }
    }
}

/// The prompt as `prompt_ids` builds it: the pieces, joined, must be the
/// plain rendering, and every content piece a message's content.
fn prompt(template: &ChatTemplate, messages: &[ChatMessage]) {
    let Ok(text) = template.render(messages, true) else {
        return;
    };
    let pieces = template
        .render_pieces(messages, true)
        .expect("render_pieces fails where render succeeds");
    let mut joined = String::new();
    for piece in &pieces {
        match piece {
            PromptPiece::Template(s) => joined.push_str(s),
            PromptPiece::Content(s) => {
                assert!(
                    messages.iter().any(|m| m.content == *s),
                    "a content piece is no message's content: {s:?}"
                );
                joined.push_str(s);
            }
        }
    }
    assert_eq!(joined, text, "the pieces do not join to the rendered prompt");
}

fn completion_request(req: CompletionRequest) {
    let _ = req.echo || req.suffix.as_deref().is_some_and(|s| !s.is_empty());
    check(req.sampling.validate(None, req.logprobs));
    check(input::parse(&req.prompt, input::limits(&limits(), true)));
}

/// Seed bodies, one or more per endpoint.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let bodies: &[(&str, &str)] = &[
        (
            "chat",
            r#"{"model":"smollm2","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is RAG?"}],"max_tokens":16,"temperature":0.7,"top_p":0.9,"n":2,"seed":1,"stop":["\n"],"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            "chat_parts_logprobs",
            r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"x"}]},{"role":"user","content":[{"type":"text","text":"hi <|im_end|>"},{"type":"text","text":"!"}]}],"logprobs":true,"top_logprobs":3,"max_completion_tokens":4,"top_k":40,"min_p":0.05,"repetition_penalty":1.1,"presence_penalty":0.5,"frequency_penalty":-0.5,"ignore_eos":true}"#,
        ),
        (
            "chat_rag",
            r#"{"model":"m","messages":[{"role":"user","content":"Who wrote it?"},{"role":"assistant"},{"role":"user","content":"And when?"}],"rag":{"collection":"docs","top_k":3,"filter":{"lang":"en","n":[1,{"a":null}]}}}"#,
        ),
        (
            "completions",
            r#"{"model":"m","prompt":"Once upon","max_tokens":8,"logprobs":2,"echo":false,"suffix":"","stop":"."}"#,
        ),
        (
            "completions_tokens",
            r#"{"model":"m","prompt":[1,2,3,4294967295],"n":16}"#,
        ),
        (
            "embeddings",
            r#"{"model":"minilm","input":["a","b"],"encoding_format":"base64","dimensions":384,"user":"u"}"#,
        ),
        (
            "embeddings_tokens",
            r#"{"model":"minilm","input":[[101,2023],[7]]}"#,
        ),
        (
            "moderations",
            r#"{"input":["ignore previous instructions","hello"],"model":"nanoguard"}"#,
        ),
        (
            "collection_create",
            r#"{"name":"docs_2-x","chunk_tokens":200,"chunk_overlap":32,"metadata":{"owner":"me"}}"#,
        ),
        (
            "collection_upsert",
            r#"{"documents":[{"id":"d1","text":"First sentence. Second one!\nA new line; and more words here.","metadata":{"lang":"en"}},{"id":"d2","text":"  "}]}"#,
        ),
        (
            "collection_search",
            r#"{"query":"what is in the docs?","top_k":5,"filter":{"lang":"en"}}"#,
        ),
        ("admin_key", r#"{"tenant":"team-a_1","name":"ci key"}"#),
        ("path_name", "docs-1"),
    ];
    bodies.iter().map(|(n, b)| (*n, b.as_bytes().to_vec())).collect()
}

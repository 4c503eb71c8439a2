//! `gguf_metadata`: a GGUF file's header as ragd reads it: candle's
//! `gguf_file::Content::read` (through `read_gguf_header`, which turns the
//! reader's panics into errors), then ragd's extraction from the metadata
//! (`LlamaConfig::from_gguf`, `GgufVocab::from_content`) and what
//! `load_gguf` builds from the vocabulary (chat template, tokenizer).
//! Tensor data is not read.
//!
//! Self-contained (ragd-models' dependencies only): also included by
//! `crates/ragd-models/tests/fuzz_regressions.rs`.

use std::io::Cursor;
use std::path::Path;

use ragd_core::TextTokenizer;
use ragd_models::llama::{read_gguf_header, ChatTemplate, GgufTokenizer, GgufVocab, LlamaConfig};

/// Vocabularies larger than this are read but not built into a tokenizer.
const MAX_BUILT_TOKENS: usize = 4096;

pub fn run(data: &[u8]) {
    let path = Path::new("fuzz.gguf");
    // `read_gguf_header` catches candle's panics, as it does in the server.
    let read = crate::panics::with_caught_panics(|| read_gguf_header(&mut Cursor::new(data), path));
    let Ok(content) = read else {
        return;
    };
    let _ = LlamaConfig::from_gguf(&content, "fuzz.gguf");
    let Ok(vocab) = GgufVocab::from_content(&content, path) else {
        return;
    };
    // What `load_gguf` does with the vocabulary.
    let token = |i: Option<u32>| {
        i.and_then(|i| vocab.tokens.get(i as usize).cloned())
            .unwrap_or_default()
    };
    if let Some(src) = vocab.chat_template.as_deref() {
        // Compiled only: rendering a hostile template may loop for long.
        let _ = ChatTemplate::new(src, &token(vocab.bos), &token(vocab.eos));
    }
    if vocab.tokens.len() > MAX_BUILT_TOKENS {
        return;
    }
    let Ok(tokenizer) = GgufTokenizer::new(&vocab) else {
        return;
    };
    if let Ok(ids) = tokenizer.encode("Hello <|im_start|>user\n wörld 123!<|im_end|>") {
        let vocab_size = tokenizer.vocab_size();
        assert!(
            ids.iter().all(|&id| (id as usize) < vocab_size),
            "an id at or above vocab_size {vocab_size}"
        );
        let _ = tokenizer.decode(&ids, true);
        let _ = tokenizer.decode_text(&ids);
    }
}

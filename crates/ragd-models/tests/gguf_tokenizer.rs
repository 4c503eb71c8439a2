//! The tokenizer rebuilt from the default generator's GGUF metadata against
//! reference ids (fixture from `scripts/reference/gguf_tokenizer.py`).

use std::path::PathBuf;

use ragd_core::TextTokenizer;
use ragd_models::llama::{GgufTokenizer, GgufVocab};
use serde_json::Value;

mod common;

fn gguf_path() -> PathBuf {
    common::model_file("smollm2-135m-instruct-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn ids_match_the_reference_on_the_corpus() {
    let vocab = GgufVocab::read(&gguf_path()).unwrap();
    assert_eq!(vocab.tokens.len(), 49152);
    assert_eq!((vocab.bos, vocab.eos), (Some(1), Some(2)));
    assert!(vocab.chat_template.as_deref().unwrap().contains("<|im_start|>"));
    let tok = GgufTokenizer::new(&vocab).unwrap();
    let fixture: Value = common::fixture_json("gguf_tokenizer.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let mut wrong = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text).unwrap();
        if got != want {
            wrong.push(format!("{text:?}: got {got:?}, want {want:?}"));
            continue;
        }
        // Decoding gives the text back (byte-level BPE is lossless).
        assert_eq!(tok.decode(&got, true).unwrap(), text);
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_gguf_chat_template_renders_like_transformers() {
    use ragd_models::llama::{ChatMessage, ChatTemplate};
    let vocab = GgufVocab::read(&gguf_path()).unwrap();
    let template = ChatTemplate::new(
        vocab.chat_template.as_deref().unwrap(),
        "<|im_start|>",
        "<|im_end|>",
    )
    .unwrap();
    let fixture: Value = common::fixture_json("gguf_tokenizer.json");
    let cases = fixture["chat_cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let messages: Vec<ChatMessage> = serde_json::from_value(c["messages"].clone()).unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            template.render(&messages, gen).unwrap(),
            c["text"].as_str().unwrap()
        );
    }
}

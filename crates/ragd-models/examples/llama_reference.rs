//! Reference greedy tokens for the default generator, from candle-transformers'
//! `quantized_llama` (one sequence at a time, its own KV cache): the fixture
//! that ragd's batched Llama forward is checked against.
//!
//!     cargo run --release -p ragd-models --example llama_reference [OUT.json]
//!
//! Prompts are chat-formatted with the GGUF's own template and tokenizer.
//! Writes `tests/fixtures/llama_greedy.json` by default.
//!
//! The quantized pipeline (activations rounded to 8 bits before every
//! matmul) turns any change in summation order into logit changes of up to
//! about 1.0: quantized_llama itself disagrees with itself by that much
//! between a one-shot prefill and token-by-token decoding. A greedy token
//! whose two best logits are closer than that is not a property of the
//! model but of rounding, so the fixture records each step's gap and keeps
//! the prompts whose smallest gap is largest.

use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use ragd_core::TextTokenizer;
use ragd_models::llama::{ChatMessage, ChatTemplate, GgufTokenizer, GgufVocab};

const NEW_TOKENS: usize = 40;
/// Prompts kept in the fixture.
const KEEP: usize = 8;

/// Candidates; the fixture keeps the `KEEP` whose greedy path is least
/// ambiguous (largest smallest gap between the two best logits).
const CANDIDATES: [&str; 24] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three primary colors.",
    "Describe how rain forms.",
    "What is 12 times 7?",
    "Give me a short tip for writing clean code.",
    "Who wrote Romeo and Juliet?",
    "List the days of the week.",
    "Count from 1 to 20.",
    "What is the chemical symbol for water?",
    "Spell the word 'banana' letter by letter.",
    "Recite the English alphabet.",
    "Translate 'hello' into French.",
    "Name the planets of the solar system in order.",
    "What color is the sky on a clear day?",
    "How many legs does a spider have?",
    "What is the largest ocean on Earth?",
    "Write the numbers from ten down to one.",
    "What is the boiling point of water in Celsius?",
    "Who painted the Mona Lisa?",
    "What is the square root of 81?",
    "Name the months of the year.",
    "What language is spoken in Brazil?",
];

/// Gap between the best and second-best logit.
fn margin(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in logits {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = std::env::var_os("RAGD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models/cache"));
    let path = models.join("smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures/llama_greedy.json"));

    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let vocab = GgufVocab::from_content(&content, &path)?;
    let tokenizer = GgufTokenizer::new(&vocab)?;
    let template = ChatTemplate::new(
        vocab.chat_template.as_deref().ok_or("no chat template")?,
        "<|im_start|>",
        "<|im_end|>",
    )?;
    let eos = vocab.eos.ok_or("no eos")?;
    let device = Device::Cpu;
    let mut cases = Vec::new();
    for prompt in CANDIDATES {
        // A fresh model per prompt: quantized_llama keeps one KV cache inside.
        let mut file = std::fs::File::open(&path)?;
        let content = gguf_file::Content::read(&mut file)?;
        let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
        let text = template.render(
            &[ChatMessage {
                role: "user".into(),
                content: prompt.into(),
            }],
            true,
        )?;
        let prompt_ids = tokenizer.encode(&text)?;
        let mut ids = Vec::new();
        let mut margins = Vec::new();
        let mut input = Tensor::new(prompt_ids.as_slice(), &device)?.unsqueeze(0)?;
        let mut pos = 0;
        for _ in 0..NEW_TOKENS {
            let logits = model.forward(&input, pos)?.squeeze(0)?;
            pos += input.dim(1)?;
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            margins.push(margin(&logits.to_vec1::<f32>()?));
            ids.push(next);
            if next == eos {
                break;
            }
            input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
        }
        if ids.len() < NEW_TOKENS {
            eprintln!("{prompt:?}: stopped after {} tokens, skipped", ids.len());
            continue;
        }
        let completion = tokenizer.decode(&ids, false)?;
        let min_margin = margins.iter().copied().fold(f32::INFINITY, f32::min);
        eprintln!("{prompt:?} (smallest gap {min_margin:.3}) -> {completion:?}");
        cases.push(serde_json::json!({
            "prompt": prompt,
            "prompt_text": text,
            "prompt_ids": prompt_ids,
            "output_ids": ids,
            "output_text": completion,
            "logit_gaps": margins,
            "min_gap": min_margin,
        }));
    }
    cases.sort_by(|a, b| b["min_gap"].as_f64().partial_cmp(&a["min_gap"].as_f64()).expect("finite gaps"));
    cases.truncate(KEEP);
    if cases.len() < KEEP {
        return Err(format!("only {} prompts ran {NEW_TOKENS} tokens", cases.len()).into());
    }
    let fixture = serde_json::json!({
        "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "reference": "candle-transformers 0.11.1 quantized_llama, greedy, one sequence at a time, whole prompt in one forward",
        "new_tokens": NEW_TOKENS,
        "cases": cases,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&fixture)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

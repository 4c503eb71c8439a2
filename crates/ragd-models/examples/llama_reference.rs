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

const NEW_TOKENS: usize = 32;
/// Prompts kept in the fixture.
const KEEP: usize = 8;

/// Candidates; the fixture keeps the `KEEP` whose greedy path is least
/// ambiguous: the same tokens whether the prompt is prefilled at once or
/// token by token, and the largest smallest gap between the two best logits.
const CANDIDATES: [&str; 20] = [
    "Count from 1 to 20.",
    "Count from 1 to 30, one number per line.",
    "List the first ten even numbers.",
    "Name the months of the year.",
    "Explain what a hash table is in two sentences.",
    "Who painted the Mona Lisa?",
    "Write the numbers from ten down to one.",
    "What is 12 times 7?",
    "Who wrote Romeo and Juliet?",
    "List the days of the week.",
    "Count from 1 to 25.",
    "Count from 5 to 30.",
    "List the numbers from 1 to 15, separated by commas.",
    "List the first ten odd numbers.",
    "Count from 1 to 40.",
    "List the months of the year in order.",
    "Write the numbers 1 through 12, one per line.",
    "What are the days of the week?",
    "List the numbers from 100 to 110.",
    "Count by twos from 2 to 40.",
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
        let text = template.render(&[ChatMessage::new("user", prompt)], true)?;
        let prompt_ids = tokenizer.encode(&text)?;
        let (ids, margins) = greedy(&path, &device, &prompt_ids, eos, true)?;
        let (stepwise, _) = greedy(&path, &device, &prompt_ids, eos, false)?;
        if stepwise != ids {
            eprintln!("{prompt:?}: prefill modes disagree, skipped");
            continue;
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
    cases.sort_by(|a, b| {
        b["min_gap"]
            .as_f64()
            .partial_cmp(&a["min_gap"].as_f64())
            .expect("finite gaps")
    });
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

/// Greedy tokens (stopping at EOS) and each step's top-2 logit gap, from a
/// fresh model: the prompt in one forward (`one_shot`) or token by token.
fn greedy(
    path: &std::path::Path,
    device: &Device,
    prompt: &[u32],
    eos: u32,
    one_shot: bool,
) -> Result<(Vec<u32>, Vec<f32>), Box<dyn std::error::Error>> {
    let mut file = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, device)?;
    let mut pos = 0;
    let mut logits = None;
    let chunks: Vec<&[u32]> = if one_shot {
        vec![prompt]
    } else {
        prompt.chunks(1).collect()
    };
    for chunk in chunks {
        let input = Tensor::new(chunk, device)?.unsqueeze(0)?;
        logits = Some(model.forward(&input, pos)?.squeeze(0)?);
        pos += chunk.len();
    }
    let (mut ids, mut margins) = (Vec::new(), Vec::new());
    while let Some(l) = logits.take() {
        let next = l.argmax(0)?.to_scalar::<u32>()?;
        margins.push(margin(&l.to_vec1::<f32>()?));
        ids.push(next);
        if next == eos || ids.len() == NEW_TOKENS {
            break;
        }
        let input = Tensor::new(&[next], device)?.unsqueeze(0)?;
        logits = Some(model.forward(&input, pos)?.squeeze(0)?);
        pos += 1;
    }
    Ok((ids, margins))
}

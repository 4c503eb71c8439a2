//! Reference greedy tokens for a GGUF generator, from candle-transformers'
//! `quantized_llama` or `quantized_qwen2` (by the file's architecture; one
//! sequence at a time, its own KV cache): the fixture that ragd's batched
//! forward is checked against.
//!
//!     cargo run --release -p ragd-models --example llama_reference [MODEL GGUF_FILE OUT.json]
//!
//! Prompts are chat-formatted with the GGUF's own template and tokenizer.
//! By default the default generator (SmolLM2) into
//! `tests/fixtures/llama_greedy.json`; Qwen2 is `qwen2.5-coder-0.5b-instruct-q4_k_m
//! qwen2.5-coder-0.5b-instruct-q4_k_m.gguf tests/fixtures/qwen2_greedy.json`.
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
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use ragd_core::TextTokenizer;
use ragd_models::llama::{ChatMessage, ChatTemplate, GgufTokenizer, GgufVocab};

const NEW_TOKENS: usize = 32;
/// Prompts kept in the fixture.
const KEEP: usize = 8;

/// Candidates; the fixture keeps the `KEEP` whose greedy path is least
/// ambiguous: the same tokens whether the prompt is prefilled at once or
/// token by token, and the largest smallest gap between the two best logits.
const CANDIDATES: [&str; 32] = [
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
    // Longer answers, for models that stop early on the short ones.
    "Write a Python function that returns the factorial of n, with a docstring.",
    "Write a Rust function that reverses a string.",
    "Write a JavaScript function that checks whether a number is prime.",
    "Write a SQL query that counts the orders per customer.",
    "Write a bash script that prints the numbers from 1 to 10.",
    "Explain what a binary search is, step by step.",
    "Write a Python class for a stack with push and pop.",
    "Write a C function that sums an array of integers.",
    "Explain the difference between a list and a tuple in Python.",
    "Write a Python function that reads a file and counts its lines.",
    "Write a Go function that returns the maximum of a slice of ints.",
    "Explain recursion with an example in Python.",
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, gguf, out) = match args.as_slice() {
        [m, g, o] => (m.as_str(), g.as_str(), PathBuf::from(o)),
        [] => (
            "smollm2-135m-instruct-q4_1",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            root.join("tests/fixtures/llama_greedy.json"),
        ),
        _ => return Err("usage: llama_reference [MODEL GGUF_FILE OUT.json]".into()),
    };
    let path = models.join(model).join(gguf);

    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let vocab = GgufVocab::from_content(&content, &path)?;
    let tokenizer = GgufTokenizer::new(&vocab)?;
    let token = |id: Option<u32>| id.map_or("", |i| vocab.tokens[i as usize].as_str());
    let template = ChatTemplate::new(
        vocab.chat_template.as_deref().ok_or("no chat template")?,
        token(vocab.bos),
        token(vocab.eos),
    )?;
    let eos = vocab.eos.ok_or("no eos")?;
    let device = Device::Cpu;
    let mut cases = Vec::new();
    for prompt in CANDIDATES {
        let text = template.render(&[ChatMessage::new("user", prompt)], true)?;
        let prompt_ids = tokenizer.encode(&text)?;
        let (ids, margins) = greedy(&path, &device, &prompt_ids, eos, true)?;
        if ids.len() < NEW_TOKENS {
            eprintln!("{prompt:?}: stopped after {} tokens, skipped", ids.len());
            continue;
        }
        let (stepwise, _) = greedy(&path, &device, &prompt_ids, eos, false)?;
        if stepwise != ids {
            eprintln!("{prompt:?}: prefill modes disagree, skipped");
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
    let arch = Reference::load(&path, &device)?.name();
    let fixture = serde_json::json!({
        "gguf": gguf,
        "reference": format!("candle-transformers 0.11.1 {arch}, greedy, one sequence at a time, whole prompt in one forward"),
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
    let mut model = Reference::load(path, device)?;
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

/// candle-transformers' model for the file's architecture.
enum Reference {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Reference {
    fn load(path: &std::path::Path, device: &Device) -> Result<Self, Box<dyn std::error::Error>> {
        let mut file = std::fs::File::open(path)?;
        let content = gguf_file::Content::read(&mut file)?;
        let arch = content
            .metadata
            .get("general.architecture")
            .map(|v| v.to_string().cloned());
        Ok(match arch {
            Some(Ok(a)) if a == "qwen2" => Self::Qwen2(quantized_qwen2::ModelWeights::from_gguf(
                content, &mut file, device,
            )?),
            _ => Self::Llama(quantized_llama::ModelWeights::from_gguf(
                content, &mut file, device,
            )?),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Llama(_) => "quantized_llama",
            Self::Qwen2(_) => "quantized_qwen2",
        }
    }

    /// Logits of the last position of `input` (`[1, tokens]`) at `pos`.
    fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Llama(m) => m.forward(input, pos),
            Self::Qwen2(m) => m.forward(input, pos),
        }
    }
}

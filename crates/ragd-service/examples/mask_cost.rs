//! Time per structured-output mask on the default generator's vocabulary:
//! `cargo run --release -p ragd-service --example mask_cost -- GGUF`.
//! Feeds the tokens of a JSON answer to a schema's constraint and reports
//! the mean and p50/p99 of `mask` (compute + apply) per token.

use std::time::Instant;

use ragd_core::TextTokenizer;
use ragd_models::llama::{GgufTokenizer, GgufVocab};
use ragd_service::generation::structured::{Grammars, ResponseFormat};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("the GGUF file");
    let vocab = GgufVocab::read(std::path::Path::new(&path))?;
    let tok = GgufTokenizer::new(&vocab)?;
    let t0 = Instant::now();
    let grammars = Grammars::new(&tok.token_bytes().expect("token bytes"), 2)?;
    eprintln!(
        "grammar compiler built in {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let schema = json!({"type": "object", "properties": {"notes": {"type": "array", "items": {"type": "string"}}},
                        "required": ["notes"], "additionalProperties": false});
    let answer = r#"{"notes": ["the lighthouse keeper climbs two hundred steps", "bread rises slowly overnight because of wild yeast", "lava flows gently from shield volcanoes"]}"#;
    let ids = tok.encode(answer)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let c = grammars
            .constraint(&ResponseFormat::JsonSchema(schema.clone()))?
            .expect("a constraint");
        let mut logits = vec![0f32; vocab.tokens.len()];
        for &id in &ids {
            logits.iter_mut().for_each(|l| *l = 0.0);
            let t = Instant::now();
            c.mask(&mut logits).map_err(anyhow::Error::msg)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(logits[id as usize].is_finite(), "token {id} was masked out");
            c.accept(id).map_err(anyhow::Error::msg)?;
        }
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{} masks: mean {mean:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    Ok(())
}

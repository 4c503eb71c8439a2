//! Chunking time against text size with the real MiniLM tokenizer: each
//! doubling of the text should about double the time (linear chunking).
//!
//! ```text
//! cargo run --release -p ragd-index --example chunking_bench [-- TOKENIZER_JSON]
//! ```
//!
//! Texts of 32K, 64K, 128K and 256K characters: `a.a.a.` (one word with no
//! whitespace), Japanese prose (no whitespace either) and English prose,
//! chunked as the server does by default (200 tokens, 32 shared). The
//! tokenizer defaults to `~/.cache/ragd/models/all-minilm-l6-v2/tokenizer.json`.
//! Prints seconds per size (best of 3), the ratio to the size before, the
//! time of one encode of the whole text (for reference), and checks every
//! chunk against the limit.

use std::path::PathBuf;
use std::time::Instant;

use ragd_core::TextTokenizer;
use ragd_index::chunk_text;
use ragd_models::HfTokenizer;

const CHUNK_TOKENS: usize = 200;
const OVERLAP: usize = 32;
const SIZES: [usize; 4] = [32 << 10, 64 << 10, 128 << 10, 256 << 10];

const JAPANESE: &str = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\
何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。\
吾輩はここで始めて人間というものを見た。しかもあとで聞くとそれは書生という人間中で一番獰悪な種族であったそうだ。\
この書生というのは時々我々を捕えて煮て食うという話である。";

const ENGLISH: &str = "The quick brown fox jumps over the lazy dog. A retrieval server splits \
documents into chunks that fit the embedding model, embeds them, and searches them by cosine \
similarity; every chunk must stay within the model's window.\n";

/// `unit` repeated to exactly `chars` characters.
fn text_of(unit: &str, chars: usize) -> String {
    unit.chars().cycle().take(chars).collect()
}

fn main() {
    let path = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is not set");
        PathBuf::from(home).join(".cache/ragd/models/all-minilm-l6-v2/tokenizer.json")
    });
    let tokenizer = HfTokenizer::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!(
        "tokenizer {}; chunk {CHUNK_TOKENS} tokens, overlap {OVERLAP}",
        path.display()
    );
    println!(
        "{:<10} {:>8} {:>8} {:>10} {:>8} {:>12}",
        "text", "chars", "chunks", "seconds", "ratio", "one encode"
    );
    for (name, unit) in [("a.a.a.", "a."), ("japanese", JAPANESE), ("english", ENGLISH)] {
        let mut before: Option<f64> = None;
        for chars in SIZES {
            let text = text_of(unit, chars);
            let mut best = f64::INFINITY;
            let mut encode = f64::INFINITY;
            let mut chunks = Vec::new();
            for _ in 0..3 {
                let t0 = Instant::now();
                tokenizer.encode_with_offsets(&text).expect("encoding failed");
                encode = encode.min(t0.elapsed().as_secs_f64());
                let t0 = Instant::now();
                chunks = chunk_text(&text, &tokenizer, CHUNK_TOKENS, OVERLAP).expect("chunking failed");
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let max = chunks
                .iter()
                .map(|c| tokenizer.encode(c).map(|ids| ids.len()).unwrap_or(usize::MAX))
                .max()
                .unwrap_or(0);
            assert!(max <= CHUNK_TOKENS, "a chunk of {max} tokens");
            let ratio = before.map_or("-".to_string(), |b| format!("{:.2}x", best / b));
            println!(
                "{name:<10} {chars:>8} {:>8} {best:>10.4} {ratio:>8} {encode:>12.4}",
                chunks.len()
            );
            before = Some(best);
        }
    }
}

//! Chunking with the real MiniLM tokenizer (skipped when it is not under
//! `~/.cache/ragd/models`): texts without whitespace, cut inside their one
//! word at token boundaries, still give chunks within the limit as the
//! tokenizer counts them, covering the text.

use std::path::PathBuf;

use ragd_core::TextTokenizer;
use ragd_index::chunk_text;
use ragd_models::HfTokenizer;

fn minilm() -> Option<HfTokenizer> {
    let path =
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/ragd/models/all-minilm-l6-v2/tokenizer.json");
    path.exists().then(|| HfTokenizer::from_file(&path).unwrap())
}

#[test]
fn minilm_chunks_fit_and_cover_texts_without_whitespace() {
    let Some(tok) = minilm() else {
        eprintln!("skipped: no MiniLM tokenizer under ~/.cache/ragd/models");
        return;
    };
    let texts = [
        "a.".repeat(20_000),
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。".repeat(400),
        format!("{} tail words.\nNext line", "x".repeat(5_000)),
        "Ünïcode CAFÉ naïve façade, emoji 🎉🎉 and mixed 日本語text. ".repeat(300),
    ];
    for text in &texts {
        let chunks = chunk_text(text, &tok, 200, 32).unwrap();
        let mut from = 0;
        for c in &chunks {
            let n = tok.encode(c).unwrap().len();
            assert!(n <= 200, "a chunk of {n} tokens: {:?}", &c[..c.len().min(80)]);
            let at = text[from..]
                .find(c.as_str())
                .expect("a chunk is a slice, in order")
                + from;
            from = at + 1;
            while !text.is_char_boundary(from) {
                from += 1;
            }
        }
        let chars = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
        assert!(chunks.iter().map(|c| chars(c)).sum::<usize>() >= chars(text));
        assert!(text.trim_end().ends_with(chunks.last().unwrap().as_str()));
    }
}

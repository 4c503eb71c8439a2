//! `ragd models list` and `ragd models pull`.

use std::path::Path;

use anyhow::{bail, Context};

use crate::cli::ModelsCommand;

pub fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List { dir } => list(&dir.models_dir),
        ModelsCommand::Pull { repo, revision, dir } => pull(&repo, &revision, &dir.models_dir),
    }
}

/// What kind of model a folder holds, judged by its files.
pub fn detect_kind(dir: &Path) -> Option<&'static str> {
    let has = |f: &str| dir.join(f).is_file();
    if has("model.pt") && has("tokenizer.pkl") {
        return Some("guard (nanoguard)");
    }
    if std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "gguf"))
    {
        return Some("generator (gguf)");
    }
    let config = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&config).ok()?;
    let classifier = (config.get("architectures").and_then(|a| a.get(0)?.as_str()))
        .is_some_and(|a| a.ends_with("ForSequenceClassification"));
    match config.get("model_type").and_then(|v| v.as_str()) {
        Some("bert" | "roberta" | "xlm-roberta") if classifier => Some("reranker (cross-encoder)"),
        Some("bert") => Some("embedder (bert)"),
        Some("deberta-v2") => Some("guard (deberta-v2)"),
        Some("llama") => Some("generator (llama)"),
        _ => None,
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn list(models_dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(models_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no models in {} (run `models/fetch`)", models_dir.display());
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", models_dir.display())),
    };
    let mut rows: Vec<_> = entries
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().ends_with(".partial"))
        .map(|e| {
            let p = e.path();
            (
                e.file_name().to_string_lossy().into_owned(),
                detect_kind(&p).unwrap_or("unknown"),
                dir_size(&p),
            )
        })
        .collect();
    rows.sort();
    println!("{:<40} {:<22} {:>10}", "NAME", "KIND", "SIZE");
    for (name, kind, size) in rows {
        println!("{name:<40} {kind:<22} {:>8.1} MB", size as f64 / 1e6);
    }
    Ok(())
}

/// Files worth fetching from a repository: weights, configs, tokenizers.
fn wanted(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.ends_with(".safetensors")
        || name.ends_with(".gguf")
        || name.ends_with(".json")
        || name == "tokenizer.model"
        || name == "spm.model"
}

fn pull(repo: &str, revision: &str, models_dir: &Path) -> anyhow::Result<()> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .context("cannot start the Hugging Face hub client")?;
    let repo_api = api.repo(hf_hub::Repo::with_revision(
        repo.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    ));
    let info = repo_api.info().with_context(|| {
        format!("cannot reach the Hugging Face hub for {repo} (offline? copy the folder instead)")
    })?;
    let files: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|f| wanted(f))
        .collect();
    if files.is_empty() {
        bail!("{repo} has no safetensors, gguf or json files");
    }
    let target = models_dir.join(repo.replace('/', "--"));
    for file in &files {
        let cached = repo_api
            .get(file)
            .with_context(|| format!("downloading {file}"))?;
        let dest = target.join(file);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&cached, &dest).with_context(|| format!("copying {file} to {}", dest.display()))?;
    }
    println!(
        "pulled {repo}@{revision} into {} ({} files)",
        target.display(),
        files.len()
    );
    Ok(())
}

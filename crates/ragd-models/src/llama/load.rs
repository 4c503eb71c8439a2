//! Loading a generator folder: a GGUF file (weights, tokenizer and chat
//! template all inside), or a Hugging Face Llama (`config.json`,
//! `*.safetensors`, `tokenizer.json`, `tokenizer_config.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use ragd_core::{Generator, ModelError, Result, TextTokenizer};

use super::{
    CandleLlamaGenerator, ChatTemplate, GeneratorBackend, GeneratorOptions, GgufTokenizer, GgufVocab,
    LlamaGenerator,
};
use crate::HfTokenizer;

/// A generator with what the server needs around it.
pub struct LoadedGenerator {
    /// The forward `opts.backend` chose.
    pub model: Box<dyn Generator>,
    pub tokenizer: Arc<dyn TextTokenizer>,
    pub chat_template: Option<ChatTemplate>,
    /// Tokens that end a turn (EOS).
    pub stop_tokens: Vec<u32>,
}

/// The single `.gguf` file of `dir` (or `dir` itself when it is a file).
fn gguf_file(dir: &Path) -> Result<Option<PathBuf>> {
    if dir.is_file() {
        return Ok(Some(dir.to_path_buf()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::load(dir.display(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        n => Err(ModelError::load(
            dir.display(),
            format!("{n} .gguf files; keep one per folder"),
        )),
    }
}

/// Loads the generator in `dir` (GGUF if there is one, else safetensors).
pub fn load_generator(
    dir: &Path,
    id: &str,
    device: &Device,
    opts: &GeneratorOptions,
) -> Result<LoadedGenerator> {
    match gguf_file(dir)? {
        Some(path) => load_gguf(&path, id, device, opts),
        None => load_hf(dir, id, device, opts),
    }
}

fn load_gguf(path: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<LoadedGenerator> {
    let vocab = GgufVocab::read(path)?;
    let token = |i: Option<u32>| {
        i.and_then(|i| vocab.tokens.get(i as usize).cloned())
            .unwrap_or_default()
    };
    let chat_template = vocab
        .chat_template
        .as_deref()
        .map(|src| ChatTemplate::new(src, &token(vocab.bos), &token(vocab.eos)))
        .transpose()?;
    Ok(LoadedGenerator {
        model: match opts.backend.resolve(device) {
            GeneratorBackend::Candle => Box::new(CandleLlamaGenerator::from_gguf(path, id, device, opts)?),
            _ => Box::new(LlamaGenerator::from_gguf(path, id, device, opts)?),
        },
        tokenizer: Arc::new(GgufTokenizer::new(&vocab)?),
        chat_template,
        stop_tokens: vocab.eos.into_iter().collect(),
    })
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn special(cfg: &serde_json::Value, key: &str) -> Option<String> {
    let v = cfg.get(key)?;
    v.as_str()
        .or_else(|| v.get("content").and_then(|c| c.as_str()))
        .map(str::to_string)
}

fn load_hf(dir: &Path, id: &str, device: &Device, opts: &GeneratorOptions) -> Result<LoadedGenerator> {
    let tokenizer = HfTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: serde_json::Value = match std::fs::read_to_string(&cfg_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ModelError::load(cfg_path.display(), e))?,
        Err(_) => serde_json::Value::Null,
    };
    let (bos, eos) = (special(&cfg, "bos_token"), special(&cfg, "eos_token"));
    let chat_template = cfg
        .get("chat_template")
        .and_then(|t| t.as_str())
        .map(|src| ChatTemplate::new(src, bos.as_deref().unwrap_or(""), eos.as_deref().unwrap_or("")))
        .transpose()?;
    let stop_tokens = eos.and_then(|e| tokenizer.token_id(&e)).into_iter().collect();
    Ok(LoadedGenerator {
        model: match opts.backend.resolve(device) {
            GeneratorBackend::Candle => {
                Box::new(CandleLlamaGenerator::from_safetensors(dir, id, device, opts)?)
            }
            _ => Box::new(LlamaGenerator::from_safetensors(dir, id, device, opts)?),
        },
        tokenizer: Arc::new(tokenizer),
        chat_template,
        stop_tokens,
    })
}

//! Hyper-parameters of a Llama-family model (Llama, Qwen2), from GGUF
//! metadata or a Hugging Face `config.json`.

use candle_core::quantized::gguf_file;
use ragd_core::{ModelError, Result};
use ragd_kernels::{KvDtype, RopeStyle};

/// The architectures the forward runs. Qwen2 is Llama with biases on Q, K
/// and V, and its rotary pairs are the two halves of a head (llama.cpp
/// leaves its Q/K unpermuted), so the forward differs only in data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    /// The GGUF `general.architecture` value, also the prefix of its keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
        }
    }

    /// Rotary pairs as llama.cpp stores each architecture's Q/K.
    fn gguf_rope_style(self) -> RopeStyle {
        match self {
            // convert_hf_to_gguf permutes Llama's Q/K for interleaved pairs.
            Self::Llama => RopeStyle::Interleaved,
            Self::Qwen2 => RopeStyle::Half,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: Architecture,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
    /// Context length the model was trained for.
    pub context_len: usize,
}

impl LlamaConfig {
    /// Reads `llama.*` or `qwen2.*` keys (llama.cpp's names).
    pub fn from_gguf(content: &gguf_file::Content, path: &str) -> Result<Self> {
        let md = &content.metadata;
        let arch = match md.get("general.architecture").and_then(|v| v.to_string().ok()) {
            Some(a) if a == "llama" => Architecture::Llama,
            Some(a) if a == "qwen2" => Architecture::Qwen2,
            other => {
                return Err(ModelError::load(
                    path,
                    format!("architecture {other:?} is not supported (llama or qwen2)"),
                ))
            }
        };
        let key = |name: &str| format!("{}.{name}", arch.gguf_name());
        let get = |name: &str| -> Result<u32> {
            let key = key(name);
            md.get(&key)
                .ok_or_else(|| ModelError::load(path, format!("no {key} in the GGUF metadata")))?
                .to_u32()
                .map_err(|e| ModelError::load(path, format!("{key}: {e}")))
        };
        let float = |name: &str, default: f32| {
            md.get(&key(name))
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(default)
        };
        let hidden = get("embedding_length")? as usize;
        let n_heads = get("attention.head_count")? as usize;
        let vocab_size = match md.get(&key("vocab_size")).and_then(|v| v.to_u32().ok()) {
            Some(v) => v as usize,
            None => md
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(|v| v.len())
                .ok_or_else(|| ModelError::load(path, "no vocabulary size in the GGUF metadata"))?,
        };
        check_heads(hidden, n_heads, path)?;
        Self {
            arch,
            n_layers: get("block_count")? as usize,
            hidden,
            n_heads,
            n_kv_heads: get("attention.head_count_kv")? as usize,
            head_dim: hidden / n_heads,
            vocab_size,
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: float("rope.freq_base", 10_000.0),
            rope_style: arch.gguf_rope_style(),
            context_len: get("context_length")? as usize,
        }
        .checked(path)
    }

    /// Reads `dir/config.json`.
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::load(path.display(), e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::load(path.display(), e))?;
        Self::from_hf_json(&json, &path.display().to_string())
    }

    /// Reads a Hugging Face `LlamaForCausalLM` or `Qwen2ForCausalLM`
    /// `config.json`.
    pub fn from_hf_json(json: &serde_json::Value, path: &str) -> Result<Self> {
        let arch = match json.get("model_type").and_then(|v| v.as_str()) {
            Some("qwen2") => Architecture::Qwen2,
            _ => Architecture::Llama,
        };
        let int = |key: &str| -> Result<usize> {
            json.get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::load(path, format!("config.json has no integer {key}")))
        };
        let hidden = int("hidden_size")?;
        let n_heads = int("num_attention_heads")?;
        check_heads(hidden, n_heads, path)?;
        Self {
            arch,
            n_layers: int("num_hidden_layers")?,
            hidden,
            n_heads,
            n_kv_heads: int("num_key_value_heads").unwrap_or(n_heads),
            head_dim: int("head_dim").unwrap_or(hidden / n_heads),
            vocab_size: int("vocab_size")?,
            rms_eps: json.get("rms_norm_eps").and_then(|v| v.as_f64()).unwrap_or(1e-5) as f32,
            rope_base: json
                .get("rope_theta")
                .and_then(|v| v.as_f64())
                .unwrap_or(10_000.0) as f32,
            rope_style: RopeStyle::Half,
            context_len: int("max_position_embeddings")?,
        }
        .checked(path)
    }

    /// The shape as the forward pass needs it: every size non-zero, query
    /// heads a multiple of KV heads. A file saying otherwise (damaged or
    /// forged) is refused here rather than dividing by zero later.
    fn checked(self, path: &str) -> Result<Self> {
        let sizes = [
            self.n_layers,
            self.hidden,
            self.n_heads,
            self.n_kv_heads,
            self.head_dim,
            self.vocab_size,
            self.context_len,
        ];
        if sizes.contains(&0) || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(ModelError::load(
                path,
                format!("inconsistent model shape: {self:?}"),
            ));
        }
        Ok(self)
    }

    /// Bytes of K and V one token position takes over all layers.
    pub fn kv_bytes_per_token(&self, dtype: KvDtype) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.head_dim * dtype.bytes()
    }
}

/// `hidden / n_heads` gives the head size: refuses zero heads before it.
fn check_heads(hidden: usize, n_heads: usize, path: &str) -> Result<()> {
    if n_heads == 0 {
        return Err(ModelError::load(
            path,
            format!("0 attention heads for the hidden size {hidden}"),
        ));
    }
    Ok(())
}

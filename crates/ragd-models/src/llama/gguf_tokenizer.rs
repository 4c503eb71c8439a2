//! A byte-level BPE tokenizer rebuilt from a GGUF file's metadata
//! (`tokenizer.ggml.model = "gpt2"`: tokens, merges, token types), for
//! GGUF files that ship without a `tokenizer.json`.
//!
//! The pipeline matches what Hugging Face's GPT-2-style tokenizers do:
//! ByteLevel pre-tokenisation (GPT-2 regex, no prefix space; Qwen2's own
//! regex when `tokenizer.ggml.pre` is `qwen2`), BPE with the file's merges,
//! ByteLevel decoding. No Unicode normalisation: Qwen2's `tokenizer.json`
//! applies NFC, but llama.cpp and transformers' GGUF tokenizer (the
//! reference) do not, and a GGUF model runs as llama.cpp tokenizes. Control tokens (token type 3, such as
//! `<|im_start|>`) are special tokens: matched whole in the text, never split.

use std::path::Path;

use candle_core::quantized::gguf_file;
use ragd_core::{ModelError, Result, TextTokenizer};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::error::tokenizer as tok_err;

/// GGUF token type of control tokens (llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`).
const CONTROL: i32 = 3;

/// Qwen2's pre-tokenizer split (its `tokenizer.json`): like GPT-4's, with
/// single digits.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer metadata of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub chat_template: Option<String>,
    /// llama.cpp's name of the pre-tokenizer (`tokenizer.ggml.pre`), such
    /// as `smollm` or `qwen2`.
    pub pre: Option<String>,
}

impl GgufVocab {
    /// Reads the tokenizer metadata of an already parsed GGUF header.
    pub fn from_content(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let fail = |what: &str| ModelError::load(path.display(), what);
        let strings = |key: &str| -> Result<Vec<String>> {
            let v = md
                .get(key)
                .ok_or_else(|| fail(&format!("no {key} in the GGUF metadata")))?;
            v.to_vec()
                .map_err(|e| fail(&format!("{key}: {e}")))?
                .iter()
                .map(|s| s.to_string().cloned().map_err(|e| fail(&format!("{key}: {e}"))))
                .collect()
        };
        match md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()) {
            Some(m) if m == "gpt2" => {}
            other => {
                return Err(fail(&format!(
                    "tokenizer.ggml.model {other:?} is not supported (gpt2 only)"
                )))
            }
        }
        let tokens = strings("tokenizer.ggml.tokens")?;
        let token_types = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| fail(&e.to_string()))?
                .iter()
                .map(|t| t.to_i32().map_err(|e| fail(&e.to_string())))
                .collect::<Result<_>>()?,
            None => vec![1; tokens.len()],
        };
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        Ok(Self {
            merges: strings("tokenizer.ggml.merges")?,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            chat_template: md
                .get("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            pre: md
                .get("tokenizer.ggml.pre")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            tokens,
            token_types,
        })
    }

    /// Reads only the header of the GGUF file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| ModelError::load(path.display(), e))?;
        let content = read_gguf_header(&mut file, path)?;
        Self::from_content(&content, path)
    }
}

/// Reads the header of a GGUF file (`path` names it in errors) with
/// candle's `Content::read`, a panic of the reader turned into an error:
/// candle 0.11 divides by a `general.alignment` of 0 (seen through the
/// `gguf_metadata` fuzz target). ragd reads every GGUF header through here.
pub fn read_gguf_header<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    path: &Path,
) -> Result<gguf_file::Content> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gguf_file::Content::read(reader))) {
        Ok(read) => read.map_err(|e| ModelError::load(path.display(), e)),
        Err(_) => Err(ModelError::load(
            path.display(),
            "malformed GGUF header (candle's reader panicked on it)",
        )),
    }
}

/// [`TextTokenizer`] built from [`GgufVocab`].
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// The same tokenizer with special-token strings read as plain text.
    literal: Tokenizer,
    vocab_size: usize,
    /// The vocabulary as stored (byte-level strings) and which are control tokens.
    tokens: Vec<String>,
    control: Vec<bool>,
}

impl GgufTokenizer {
    pub fn new(vocab: &GgufVocab) -> Result<Self> {
        let ids: Vocab = vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = vocab
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("bad merge {m:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        if vocab.pre.as_deref() == Some("qwen2") {
            let split = Split::new(
                SplitPattern::Regex(QWEN2_SPLIT.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err)?;
            let steps = vec![
                PreTokenizerWrapper::Split(split),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
            ];
            inner.with_pre_tokenizer(Some(Sequence::new(steps)));
        } else {
            inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = vocab
            .tokens
            .iter()
            .zip(&vocab.token_types)
            .filter(|(_, &t)| t == CONTROL)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tok_err)?;
        let mut literal = inner.clone();
        literal.set_encode_special_tokens(true);
        Ok(Self {
            inner,
            literal,
            vocab_size: vocab.tokens.len(),
            tokens: vocab.tokens.clone(),
            control: vocab.token_types.iter().map(|&t| t == CONTROL).collect(),
        })
    }

    /// Text of `ids`, special tokens included when `keep_special`.
    pub fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String> {
        self.inner.decode(ids, !keep_special).map_err(tok_err)
    }
}

impl TextTokenizer for GgufTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    fn encode_literal(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .literal
            .encode(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.decode(ids, false)
    }

    fn token_bytes(&self) -> Option<Vec<Vec<u8>>> {
        let table = byte_level_inverse();
        let bytes = self
            .tokens
            .iter()
            .zip(&self.control)
            .map(|(token, &control)| {
                if control {
                    let mut b = vec![0xFF];
                    b.extend_from_slice(token.as_bytes());
                    return b;
                }
                // Byte-level BPE writes each byte as one char; a char
                // outside the table stands for itself.
                let mut out = Vec::with_capacity(token.len());
                for c in token.chars() {
                    match table.get(&c) {
                        Some(&b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            })
            .collect();
        Some(bytes)
    }
}

/// GPT-2's byte-level alphabet backwards: the char each byte is written
/// as, to that byte. Printable Latin-1 bytes stand for themselves; the
/// others are shifted to U+0100 and up, in byte order.
fn byte_level_inverse() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                char::from(b)
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap_or('\u{FFFD}')
            };
            (c, b)
        })
        .collect()
}

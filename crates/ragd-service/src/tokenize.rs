//! vLLM's `/tokenize` and `/detokenize` without HTTP: a prompt or a chat
//! conversation to the generator's token ids, and ids back to text. The
//! ids are exactly those the completion endpoints feed the model: a
//! prompt through the generator's tokenizer (special-token strings in it
//! are the special tokens, as for `/v1/completions`), messages through
//! [`crate::chat::prompt_ids`], the chat pipeline's own function.
//!
//! Tokenizing and decoding are CPU work: they run on the blocking pool.

use ragd_core::ModelError;
use ragd_models::llama::ChatMessage;

use crate::chat;
use crate::error::ServiceError;
use crate::models::GeneratorHandle;

/// Longest sequence the server runs for this generator, prompt and
/// completion together: the model's context, or the KV cache when smaller
/// (vLLM's `max_model_len`).
pub fn max_model_len(handle: &GeneratorHandle) -> usize {
    handle.engine.max_context()
}

/// Token ids of a prompt text, as `/v1/completions` feeds it to the model.
/// With `add_special_tokens`, the generator's framing (its special tokens
/// around every sequence) is added; the Llama generators have none, so
/// both give the same ids there.
pub async fn tokenize_text(
    handle: &GeneratorHandle,
    text: String,
    add_special_tokens: bool,
) -> Result<Vec<u32>, ServiceError> {
    let tokenizer = handle.tokenizer.clone();
    let ids = tokio::task::spawn_blocking(move || tokenizer.encode(&text))
        .await
        .map_err(|e| ServiceError::task("tokenizer", e))?
        .map_err(|e| prompt_error(e, "prompt"))?;
    Ok(frame(handle, ids, add_special_tokens))
}

/// Token ids of a conversation, exactly as a chat completion feeds them to
/// the model (with `add_generation_prompt`, which chat completions always
/// set): the chat template's text with its special tokens, message
/// contents literally. `add_special_tokens` adds the generator's framing
/// on top (none for the Llama generators; the template has its own).
pub async fn tokenize_messages(
    handle: &GeneratorHandle,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    add_special_tokens: bool,
) -> Result<Vec<u32>, ServiceError> {
    let ids = chat::prompt_ids(handle, messages, None, add_generation_prompt).await?;
    Ok(frame(handle, ids, add_special_tokens))
}

/// Text of `ids`, special tokens written out as their names (as vLLM's
/// `/detokenize` does) when the tokenizer can spell them, left out
/// otherwise. An id outside the vocabulary is refused (param `tokens`).
pub async fn detokenize(handle: &GeneratorHandle, ids: Vec<u32>) -> Result<String, ServiceError> {
    let vocab = handle.tokenizer.vocab_size();
    if let Some((i, bad)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        return Err(ServiceError::invalid(
            format!("`tokens[{i}]` is {bad}, outside the vocabulary of {vocab} tokens"),
            "tokens",
        ));
    }
    let (tokenizer, table) = (handle.tokenizer.clone(), handle.token_bytes.clone());
    tokio::task::spawn_blocking(move || match table {
        Some(table) => Ok(spell(&table, &ids)),
        None => tokenizer.decode_text(&ids).map_err(|e| prompt_error(e, "tokens")),
    })
    .await
    .map_err(|e| ServiceError::task("detokenizer", e))?
}

fn frame(handle: &GeneratorHandle, ids: Vec<u32>, add_special_tokens: bool) -> Vec<u32> {
    let framing = &handle.info.framing;
    if !add_special_tokens || (framing.prefix.is_empty() && framing.suffix.is_empty()) {
        return ids;
    }
    let mut out = Vec::with_capacity(framing.prefix.len() + ids.len() + framing.suffix.len());
    out.extend_from_slice(&framing.prefix);
    out.extend_from_slice(&ids);
    out.extend_from_slice(&framing.suffix);
    out
}

/// A tokenizer's failure on client text is the client's: `param` names the field.
fn prompt_error(e: ModelError, param: &'static str) -> ServiceError {
    match e {
        ModelError::Tokenizer(m) | ModelError::InvalidInput(m) => {
            ServiceError::invalid(format!("cannot tokenize `{param}`: {m}"), param)
        }
        other => other.into(),
    }
}

/// The text of `ids` from their bytes; bytes that are not UTF-8 (a
/// character cut between tokens) become U+FFFD, as in the tokenizers'
/// own byte-level decoder.
fn spell(table: &[Vec<u8>], ids: &[u32]) -> String {
    let mut bytes = Vec::new();
    for &id in ids {
        let token = &table[id as usize];
        // 0xFF never occurs in UTF-8: it marks a special token's name.
        bytes.extend_from_slice(token.strip_prefix(&[0xFF]).unwrap_or(token));
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

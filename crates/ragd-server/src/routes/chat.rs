//! `POST /v1/chat/completions`, streaming or not, in OpenAI's shapes.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ragd_models::llama::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::auth::Tenant;
use crate::error::ApiError;
use crate::generate::stream::{sse, ChunkFormat};
use crate::generate::{
    self, now_unix, GenSettings, GeneratorHandle, Piece, SamplingFields, TokenInfo, UsageJson,
};
use crate::guard;
use crate::json::Json;
use crate::models::ModelHandle;
use crate::rag::{self, RagRequest, Source};
use crate::response_cache::{self, CacheKeyParts};
use crate::routes::collections;
use crate::semantic_cache::{BucketParts, SemanticCache, SemanticQuery};
use crate::state::{AppState, Limits};

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<MessageIn>,
    /// OpenAI's newer name for `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    /// ragd's retrieval extension: answer from a collection's chunks.
    pub rag: Option<RagRequest>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content: a string or a list of parts (text parts only).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Validates the messages and takes their text: roles known, contents
/// text, each within `max_input_bytes` and all within `max_chat_bytes`
/// (checked before any tokenizer or guard spends time on them).
pub fn messages(input: &[MessageIn], limits: &Limits) -> Result<Vec<ChatMessage>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty", "messages"));
    }
    let mut total = 0usize;
    for (i, m) in input.iter().enumerate() {
        let bytes = match &m.content {
            None => 0,
            Some(Content::Text(t)) => t.len(),
            Some(Content::Parts(parts)) => parts.iter().map(|p| p.text.as_ref().map_or(0, String::len)).sum(),
        };
        if bytes > limits.max_input_bytes {
            return Err(ApiError::invalid(
                format!(
                    "`messages[{i}].content` is {bytes} bytes long; at most {} are allowed per message",
                    limits.max_input_bytes
                ),
                "messages",
            ));
        }
        total += bytes;
        if total > limits.max_chat_bytes {
            return Err(ApiError::invalid(
                format!(
                    "`messages` hold more than {} bytes of content in all",
                    limits.max_chat_bytes
                ),
                "messages",
            ));
        }
    }
    input
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::invalid(
                    format!("`messages[{i}].role` must be one of {ROLES:?} (got {:?})", m.role),
                    "messages",
                ));
            }
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .map(|p| match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => Ok(t.as_str()),
                        _ => Err(ApiError::invalid(
                            format!(
                                "`messages[{i}].content` parts must be text parts (got type {:?})",
                                p.kind
                            ),
                            "messages",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .concat(),
            };
            // Templates know `system`; `developer` is OpenAI's new name for it.
            let role = if m.role == "developer" { "system" } else { &m.role };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Renders and tokenizes the conversation off the async runtime.
async fn prompt_ids(handle: &GeneratorHandle, messages: Vec<ChatMessage>) -> Result<Vec<u32>, ApiError> {
    let template = handle.template.clone().ok_or_else(|| {
        ApiError::invalid(
            format!(
                "model `{}` has no chat template; use /v1/completions",
                handle.info.id
            ),
            "model",
        )
    })?;
    let tokenizer = handle.tokenizer.clone();
    tokio::task::spawn_blocking(move || {
        // Special tokens come only from the template's own text.
        template
            .encode(tokenizer.as_ref(), &messages, true)
            .map_err(|e| match e {
                ragd_core::ModelError::InvalidInput(m) => {
                    ApiError::invalid(format!("cannot apply the chat template: {m}"), "messages")
                }
                other => other.into(),
            })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// A chat request once the caches and retrieval had their say.
enum Prepared {
    /// An earlier answer to a close enough question.
    SemanticHit(Value),
    /// The conversation to generate from (with retrieved chunks for RAG).
    Prompt {
        messages: Vec<ChatMessage>,
        sources: Option<Value>,
        blocked: Option<Value>,
        semantic_query: Option<SemanticQuery>,
    },
}

/// What preparing a chat request needs besides its messages.
struct PreparedRequest<'a> {
    state: &'a AppState,
    tenant: &'a Tenant,
    model: &'a str,
    settings: &'a GenSettings,
    guard: Option<&'a ModelHandle>,
    /// The semantic cache and the question's index, when it is to be asked.
    semantic: Option<(&'a SemanticCache, usize)>,
}

impl PreparedRequest<'_> {
    /// Asks the semantic cache, then (for RAG) retrieves and builds the
    /// prompt.
    async fn prepare(
        &self,
        conversation: Vec<ChatMessage>,
        rag: Option<RagRequest>,
    ) -> Result<Prepared, ApiError> {
        let mut semantic_query = None;
        // The embedder is only fetched when the semantic cache is asked.
        let embedder = self.semantic.and_then(|_| self.state.embedder().ok());
        if let (Some((cache, question)), Some(embedder)) = (self.semantic, embedder) {
            let embedder = embedder.for_tenant(self.tenant);
            // Read before retrieval: an answer built from newer data than
            // this version lands in a bucket no later request asks.
            let collection_version = match &rag {
                Some(r) => Some(
                    self.state
                        .store()?
                        .collection(self.tenant.as_str(), &r.collection)?
                        .version(),
                ),
                None => None,
            };
            let parts = BucketParts {
                collection_version,
                tenant: self.tenant,
                model: self.model,
                settings: self.settings,
                messages: &conversation,
                question,
                rag: rag.as_ref(),
            };
            if let Some(query) = cache.query(&embedder, parts).await? {
                if let Some(body) = cache.get(&query) {
                    return Ok(Prepared::SemanticHit(body));
                }
                semantic_query = Some(query);
            }
        }
        let (messages, sources, blocked) = match rag {
            Some(rag) => {
                let a = retrieve_and_augment(self.state, self.tenant, rag, conversation, self.guard).await?;
                (a.messages, Some(a.sources), a.blocked)
            }
            None => (conversation, None, None),
        };
        Ok(Prepared::Prompt {
            messages,
            sources,
            blocked,
            semantic_query,
        })
    }
}

/// A RAG prompt and what the client is shown of its retrieval.
struct Augmented {
    messages: Vec<ChatMessage>,
    /// The chunks in the prompt.
    sources: Value,
    /// Chunks the guard left out (`None`: not screened).
    blocked: Option<Value>,
}

/// Retrieves the chunks for the question (the last user message), leaves
/// out those the guard flags (when given one), and puts the rest into the
/// question through the RAG template.
async fn retrieve_and_augment(
    state: &AppState,
    tenant: &Tenant,
    rag_req: RagRequest,
    messages: Vec<ChatMessage>,
    guard: Option<&ModelHandle>,
) -> Result<Augmented, ApiError> {
    let q = rag::question_index(&messages)?;
    let top_k = rag_req.top_k.unwrap_or(rag::DEFAULT_TOP_K);
    let question = messages[q].content.clone();
    let (mut hits, _, _) =
        collections::retrieve(state, tenant, rag_req.collection, question, top_k, rag_req.filter)
            .instrument(tracing::info_span!("retrieve"))
            .await?;
    let mut blocked = None;
    if let Some(guard) = guard {
        let texts = hits.iter().map(|h| h.text.clone()).collect();
        let verdicts = guard::screen_context(state, guard, texts).await?;
        let (kept, flagged): (Vec<_>, Vec<_>) =
            hits.into_iter().zip(verdicts).partition(|(_, v)| v.is_none());
        blocked = Some(Value::Array(
            flagged
                .iter()
                .map(|(h, score)| {
                    json!({"document_id": h.document_id, "chunk_id": h.chunk_id,
                           "chunk_index": h.chunk_index, "injection_score": score})
                })
                .collect(),
        ));
        hits = kept.into_iter().map(|(h, _)| h).collect();
    }
    let sources: Vec<Source<'_>> = hits
        .iter()
        .map(|h| Source {
            document_id: &h.document_id,
            text: &h.text,
            score: h.score,
            metadata: &h.metadata,
        })
        .collect();
    let messages = rag::augment(&state.rag_template, messages, q, &sources)?;
    Ok(Augmented {
        messages,
        sources: json!(hits),
        blocked,
    })
}

pub async fn chat_completions(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(req): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    let handle = state.generator(Some(&req.model))?;
    let top = match (req.logprobs, req.top_logprobs) {
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "`top_logprobs` needs `logprobs: true`",
                "top_logprobs",
            ))
        }
        (false, None) => None,
        (true, k) => Some(k.unwrap_or(0)),
    };
    let settings = req.sampling.validate(req.max_completion_tokens, top)?;
    let conversation = messages(&req.messages, &state.limits)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix();
    // The guard scores the question while the semantic cache is asked and
    // retrieval runs.
    let guard = state.chat_guard().map(|g| g.for_tenant(&tenant));
    let question = rag::question_index(&conversation).ok();
    let question_text = question.map(|q| conversation[q].content.clone());
    let input_check = guard::check_input(&state, guard.as_ref(), question_text);
    let request = PreparedRequest {
        state: &state,
        tenant: &tenant,
        model: &handle.info.id,
        settings: &settings,
        guard: guard.as_ref(),
        // Asked only for cacheable requests with a question.
        semantic: (state.semantic_cache.as_ref())
            .filter(|_| response_cache::cacheable(&settings, &headers))
            .zip(question),
    };
    let ((), prepared) = tokio::try_join!(input_check, request.prepare(conversation, req.rag))?;
    let semantic = request.semantic;
    let (conversation, sources, blocked_sources, semantic_query) = match prepared {
        Prepared::SemanticHit(body) => {
            return Ok(response_cache::reissue(body, &id, created, "semantic-hit"))
        }
        Prepared::Prompt {
            messages,
            sources,
            blocked,
            semantic_query,
        } => (messages, sources, blocked, semantic_query),
    };
    let prompt = prompt_ids(&handle, conversation).await?;
    let format = ChatFormat {
        id,
        created,
        model: handle.info.id.clone(),
        sources,
        blocked_sources,
    };
    let shown = json!([format.sources, format.blocked_sources]);
    let cache = state.response_cache.as_ref();
    let parts = CacheKeyParts {
        tenant: &tenant,
        endpoint: "chat",
        model: &format.model,
        prompt: &prompt,
        settings: &settings,
        extra: Some(&shown),
    };
    let key = match response_cache::lookup(cache, parts, &headers, &format.id, format.created) {
        Ok(key) => key,
        Err(hit) => return Ok(*hit),
    };
    let choices = generate::submit(&handle, &tenant, &prompt, &settings, "messages")?;
    if settings.stream {
        return Ok(sse(choices, prompt.len(), settings.include_usage, format).into_response());
    }
    let (pieces, completion_tokens) = generate::collect_all(choices).await?;
    let choices: Vec<Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": p.text},
                "logprobs": logprobs_json(top.is_some(), &p.logprobs),
                "finish_reason": p.finish_reason,
            })
        })
        .collect();
    let mut body = json!({
        "id": format.id,
        "object": "chat.completion",
        "created": format.created,
        "model": format.model,
        "choices": choices,
        "usage": UsageJson::new(prompt.len(), completion_tokens),
    });
    format.add_retrieval(&mut body);
    if let (Some((semantic, _)), Some(query)) = (semantic, semantic_query) {
        semantic.put(query, &body);
    }
    Ok(response_cache::store_and_respond(cache, key, body))
}

fn token_json(token: &str, logprob: f32) -> Value {
    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
}

fn logprobs_json(wanted: bool, tokens: &[TokenInfo]) -> Value {
    if !wanted {
        return Value::Null;
    }
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut v = token_json(&t.token, t.logprob);
            v["top_logprobs"] = t.top.iter().map(|(s, l)| token_json(s, *l)).collect();
            v
        })
        .collect();
    json!({ "content": content })
}

struct ChatFormat {
    id: String,
    created: u64,
    model: String,
    /// Retrieved chunks of a RAG answer: on the response, or on the first
    /// chunk of a stream.
    sources: Option<Value>,
    /// Retrieved chunks the guard left out, shown like `sources`.
    blocked_sources: Option<Value>,
}

impl ChatFormat {
    /// Puts the retrieval fields (when there are any) on `v`.
    fn add_retrieval(&self, v: &mut Value) {
        if let Some(s) = &self.sources {
            v["sources"] = s.clone();
        }
        if let Some(b) = &self.blocked_sources {
            v["blocked_sources"] = b.clone();
        }
    }

    fn chunk(&self, choices: Value, usage: Option<UsageJson>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = json!(u);
        }
        v
    }
}

impl ChunkFormat for ChatFormat {
    fn opening(&self, index: usize) -> Option<Value> {
        let mut chunk = self.chunk(
            json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            None,
        );
        if index == 0 {
            self.add_retrieval(&mut chunk);
        }
        Some(chunk)
    }

    fn piece(&self, index: usize, piece: &Piece) -> Value {
        let delta = if piece.text.is_empty() {
            json!({})
        } else {
            json!({"content": piece.text})
        };
        let logprobs = logprobs_json(!piece.logprobs.is_empty(), &piece.logprobs);
        self.chunk(
            json!([{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": piece.finish_reason}]),
            None,
        )
    }

    fn usage(&self, usage: UsageJson) -> Value {
        self.chunk(json!([]), Some(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_inputs: 4,
            max_input_bytes: 100,
            max_chat_bytes: 250,
            guard_threshold: 0.5,
            max_guard_windows: 8,
            guard_chat: false,
        }
    }

    fn user(text: String) -> MessageIn {
        MessageIn {
            role: "user".into(),
            content: Some(Content::Text(text)),
        }
    }

    /// Issue 10, finding 8: chat messages ignored `--max-input-bytes`; a
    /// 256 KB message cost 59 CPU-seconds in the guard before its 400.
    #[test]
    fn message_sizes_are_checked_before_any_model_work() {
        assert!(messages(&[user("a".repeat(100))], &limits()).is_ok());
        let err = messages(&[user("a".repeat(101))], &limits()).unwrap_err();
        assert!(err.to_string().contains("per message"), "{err}");
        let parts = MessageIn {
            role: "user".into(),
            content: Some(Content::Parts(vec![
                Part {
                    kind: "text".into(),
                    text: Some("b".repeat(60)),
                },
                Part {
                    kind: "text".into(),
                    text: Some("b".repeat(60)),
                },
            ])),
        };
        assert!(messages(&[parts], &limits()).is_err(), "parts count together");
        let three = [user("c".repeat(90)), user("c".repeat(90)), user("c".repeat(90))];
        let err = messages(&three, &limits()).unwrap_err();
        assert!(err.to_string().contains("in all"), "{err}");
        assert!(messages(&three[..2], &limits()).is_ok());
    }
}

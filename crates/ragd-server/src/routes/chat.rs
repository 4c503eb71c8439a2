//! `POST /v1/chat/completions`, streaming or not, in OpenAI's shapes.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use ragd_models::llama::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use ragd_service::chat::{self as pipeline, BlockedChunk, Prepared};
use ragd_service::collections::RetrievedChunk;
use ragd_service::generation::{self, now_unix, Piece, SamplingFields, TokenInfo};
use ragd_service::guard::GuardFlag;
use ragd_service::rag::RagRequest;
use ragd_service::tools::{render_calls, ToolCallFormat, Tools};
use ragd_service::{RequestLimits, Tenant, Usage};

use crate::auth::Authed;
use crate::cache_http;
use crate::error::ApiError;
use crate::json::JsonWithRaw;
use crate::routes::collections::SearchHit;
use crate::routes::tool_calls::{self, ToolCallIn};
use crate::sse::{self, sse, ChunkFormat};
use crate::state::AppState;
use crate::upstream::{Target, Upstream, Upstreams};

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
    /// Functions the model may call, and whether it must.
    pub tools: Option<Value>,
    pub tool_choice: Option<Value>,
    /// Accepted; several calls in one answer are always allowed.
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// Calls an assistant message made (rendered back into its text).
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// On a `tool` message: the call it answers (accepted).
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
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
pub fn messages(
    input: &[MessageIn],
    limits: &RequestLimits,
    tool_format: ToolCallFormat,
) -> Result<Vec<ChatMessage>, ApiError> {
    if input.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty", "messages"));
    }
    let mut total = 0usize;
    for (i, m) in input.iter().enumerate() {
        let calls: usize = (m.tool_calls.iter().flatten())
            .map(|c| c.function.name.len() + c.function.arguments.len())
            .sum();
        let bytes = calls
            + match &m.content {
                None => 0,
                Some(Content::Text(t)) => t.len(),
                Some(Content::Parts(parts)) => {
                    parts.iter().map(|p| p.text.as_ref().map_or(0, String::len)).sum()
                }
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
            let content = match &m.tool_calls {
                Some(calls) => render_calls(
                    tool_format,
                    &content,
                    &calls.iter().map(ToolCallIn::call).collect::<Vec<_>>(),
                ),
                None => content,
            };
            // Templates know `system`; `developer` is OpenAI's new name for it.
            let role = if m.role == "developer" { "system" } else { &m.role };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

pub async fn chat_completions(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    headers: HeaderMap,
    JsonWithRaw(req, raw): JsonWithRaw<ChatRequest>,
) -> Result<Response, ApiError> {
    let local = state.generator(Some(&req.model));
    let mut fallback = None;
    if let Some(upstreams) = &state.upstreams {
        let targets = upstreams.targets(&req.model, local.is_ok());
        let remote: Vec<Arc<Upstream>> = (targets.iter())
            .filter_map(|t| match t {
                Target::Upstream(u) => Some(u.clone()),
                Target::Local => None,
            })
            .collect();
        match targets.first() {
            None => return Err(local.err().unwrap_or(ApiError::ModelNotFound(req.model))),
            Some(Target::Upstream(_)) => {
                let fallback = Fallback {
                    upstreams: upstreams.clone(),
                    remote,
                    raw,
                };
                return fallback.forward_only(&state, tenant, req).await;
            }
            Some(Target::Local) if remote.is_empty() => {}
            Some(Target::Local) => {
                fallback = Some(Fallback {
                    upstreams: upstreams.clone(),
                    remote,
                    raw,
                })
            }
        }
    }
    let handle = local?;
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
    let mut settings = req.sampling.validate(req.max_completion_tokens, top)?;
    let tools = Tools::parse(req.tools.as_ref(), req.tool_choice.as_ref(), handle.tool_format)?;
    if let Some(tools) = &tools {
        tools.constrain(&mut settings)?;
    }
    let conversation = messages(&req.messages, &state.request_limits, handle.tool_format)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_unix();
    let pipeline = state.chat_pipeline(&tenant);
    let request = pipeline::ChatRequest {
        tenant: tenant.clone(),
        messages: conversation,
        rag: req.rag,
        settings: settings.clone(),
        client_bypass: cache_http::client_bypass(&headers),
        tools: tools.clone(),
    };
    let job = match pipeline.prepare(&handle, request).await? {
        Prepared::Cached { body, hit } => return Ok(cache_http::reissue(body, &id, created, hit)),
        Prepared::Generate(job) => *job,
    };
    let format = ChatFormat {
        id,
        created,
        model: handle.info.id.clone(),
        shown: Shown::new(job.sources.as_deref(), job.blocked.as_ref(), &job.guard_flags),
    };
    let prompt = job.prompt;
    let take_over = |error: ApiError| async {
        match &fallback {
            Some(f) => {
                f.take_over(error, settings.stream, &job.rag_question, &format)
                    .await
            }
            None => Err(error),
        }
    };
    let mut choices = match generation::submit(&handle, &tenant, &prompt, &settings, "messages") {
        Ok(choices) => choices,
        Err(e) => return take_over(e.into()).await,
    };
    if let Some(check) = &job.output {
        choices = choices.into_iter().map(|c| c.checked(check.clone())).collect();
    }
    let tools = tools.filter(Tools::offered);
    if settings.stream && tools.is_none() {
        return Ok(sse(choices, prompt.len(), settings.include_usage, format).into_response());
    }
    let deadline = (fallback.as_ref()).and_then(|f| f.upstreams.local_timeout());
    let (pieces, usage) = match within(deadline, generation::collect_all(choices, prompt.len())).await {
        Ok(done) => done,
        Err(e) => return take_over(e).await,
    };
    if let (true, Some(tools)) = (settings.stream, &tools) {
        let mut chunks = tool_calls::replay(tools, &pieces, |choices| format.chunk(choices, None));
        if let Some(first) = chunks.first_mut() {
            format.add_retrieval(first);
        }
        if settings.include_usage {
            chunks.push(format.chunk(json!([]), Some(usage)));
        }
        return Ok(sse::replay_chunks(&chunks).into_response());
    }
    let choices: Vec<Value> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (message, finish_reason) = match &tools {
                Some(tools) => tool_calls::message(tools, p),
                None => (json!({"role": "assistant", "content": p.text}), p.finish_reason),
            };
            json!({
                "index": i,
                "message": message,
                "logprobs": logprobs_json(top.is_some(), &p.logprobs),
                "finish_reason": finish_reason,
            })
        })
        .collect();
    let mut body = json!({
        "id": format.id,
        "object": "chat.completion",
        "created": format.created,
        "model": format.model,
        "choices": choices,
        "usage": usage,
    });
    format.add_retrieval(&mut body);
    // Answers a `flag` policy let through are listed with the rest.
    for (i, p) in pieces.iter().enumerate() {
        if let Some(score) = p.flagged {
            let flag = json!({"stage": "output", "score": score, "index": i});
            match body["guard_flags"].as_array_mut() {
                Some(flags) => flags.push(flag),
                None => body["guard_flags"] = json!([flag]),
            }
        }
    }
    let cache_missed = job.keys.exact_missed();
    pipeline.remember(job.keys, &body).await;
    Ok(cache_http::fresh(body, cache_missed))
}

/// Runs `work` within `deadline` (if any); past it the work is dropped
/// (which stops its generation) and the request may fall back.
async fn within<T>(
    deadline: Option<std::time::Duration>,
    work: impl std::future::Future<Output = Result<T, ragd_service::ServiceError>>,
) -> Result<T, ApiError> {
    match deadline {
        None => Ok(work.await?),
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(done) => Ok(done?),
            Err(_) => Err(ApiError::Unavailable(format!(
                "local generation passed its deadline of {} s",
                limit.as_secs_f64()
            ))),
        },
    }
}

/// The upstreams a chat request may go to when ragd's own generator
/// cannot answer it, or does not run its model.
struct Fallback {
    upstreams: Arc<Upstreams>,
    remote: Vec<Arc<Upstream>>,
    /// The request as the client sent it.
    raw: Value,
}

impl Fallback {
    /// After a local failure worth a fallback (overloaded, unavailable,
    /// failed, too slow): the upstreams answer instead; other errors stand.
    async fn take_over(
        &self,
        error: ApiError,
        stream: bool,
        rag_question: &Option<(usize, String)>,
        format: &ChatFormat,
    ) -> Result<Response, ApiError> {
        if !matches!(error.status().as_u16(), 429 | 500 | 503 | 504) {
            return Err(error);
        }
        tracing::warn!(error = %error, "local generation failed; falling back to upstreams");
        let body = self.upstream_body(rag_question);
        let forwarded = (self.upstreams)
            .forward(&self.remote, &body, stream, Some("local"))
            .await?;
        Ok(forwarded.into_response(|v| format.add_retrieval(v)))
    }

    /// A model ragd routes elsewhere first: the guard and retrieval run
    /// here, then the upstreams answer.
    async fn forward_only(
        self,
        state: &AppState,
        tenant: Tenant,
        req: ChatRequest,
    ) -> Result<Response, ApiError> {
        let settings = req.sampling.validate(req.max_completion_tokens, None)?;
        let request = pipeline::ChatRequest {
            tenant: tenant.clone(),
            messages: messages(&req.messages, &state.request_limits, ToolCallFormat::default())?,
            rag: req.rag,
            settings: settings.clone(),
            client_bypass: true,
            tools: None,
        };
        let job = state.chat_pipeline(&tenant).prepare_forward(request).await?;
        let body = self.upstream_body(&job.rag_question);
        let forwarded = (self.upstreams)
            .forward(&self.remote, &body, settings.stream, None)
            .await?;
        let shown = Shown::new(job.sources.as_deref(), job.blocked.as_ref(), &job.guard_flags);
        Ok(forwarded.into_response(|v| shown.add_to(v)))
    }

    /// The client's request for an upstream: ragd's `rag` extension taken
    /// out, the question replaced by the prompt with the retrieved context.
    fn upstream_body(&self, rag_question: &Option<(usize, String)>) -> Value {
        let mut body = self.raw.clone();
        if let Some(fields) = body.as_object_mut() {
            fields.remove("rag");
        }
        if let Some((i, content)) = rag_question {
            body["messages"][*i]["content"] = json!(content);
        }
        body
    }
}

/// Retrieved chunks as the response shows them: search hits.
fn sources_json(chunks: &[RetrievedChunk]) -> Value {
    json!(chunks.iter().map(SearchHit::from).collect::<Vec<_>>())
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

/// What an answer shows of its retrieval and screening (ragd's
/// extensions): on the response, or on the first chunk of a stream.
struct Shown(Vec<(&'static str, Value)>);

impl Shown {
    fn new(
        sources: Option<&[RetrievedChunk]>,
        blocked: Option<&Vec<BlockedChunk>>,
        flags: &[GuardFlag],
    ) -> Self {
        let mut fields = Vec::new();
        if let Some(s) = sources {
            fields.push(("sources", sources_json(s)));
        }
        // Retrieved chunks the guard left out, shown like `sources`.
        if let Some(b) = blocked {
            fields.push(("blocked_sources", json!(b)));
        }
        // Flagged texts a `flag` policy let through.
        if !flags.is_empty() {
            fields.push(("guard_flags", json!(flags)));
        }
        Self(fields)
    }

    fn add_to(&self, v: &mut Value) {
        for (name, value) in &self.0 {
            v[*name] = value.clone();
        }
    }
}

struct ChatFormat {
    id: String,
    created: u64,
    model: String,
    shown: Shown,
}

impl ChatFormat {
    /// Puts the retrieval and screening fields (when there are any) on `v`.
    fn add_retrieval(&self, v: &mut Value) {
        self.shown.add_to(v);
    }

    fn chunk(&self, choices: Value, usage: Option<Usage>) -> Value {
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

    fn usage(&self, usage: Usage) -> Value {
        self.chunk(json!([]), Some(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RequestLimits {
        RequestLimits {
            max_inputs: 4,
            max_input_bytes: 100,
            max_chat_bytes: 250,
        }
    }

    fn user(text: String) -> MessageIn {
        MessageIn {
            role: "user".into(),
            content: Some(Content::Text(text)),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }

    /// Issue 10, finding 8: chat messages ignored `--max-input-bytes`; a
    /// 256 KB message cost 59 CPU-seconds in the guard before its 400.
    #[test]
    fn message_sizes_are_checked_before_any_model_work() {
        assert!(messages(&[user("a".repeat(100))], &limits(), ToolCallFormat::Hermes).is_ok());
        let err = messages(&[user("a".repeat(101))], &limits(), ToolCallFormat::Hermes).unwrap_err();
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
            tool_calls: None,
            tool_call_id: None,
            name: None,
        };
        assert!(
            messages(&[parts], &limits(), ToolCallFormat::Hermes).is_err(),
            "parts count together"
        );
        let three = [user("c".repeat(90)), user("c".repeat(90)), user("c".repeat(90))];
        let err = messages(&three, &limits(), ToolCallFormat::Hermes).unwrap_err();
        assert!(err.to_string().contains("in all"), "{err}");
        assert!(messages(&three[..2], &limits(), ToolCallFormat::Hermes).is_ok());
    }
}

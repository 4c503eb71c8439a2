//! `POST /v1/responses`: OpenAI's Responses API, stateless. The request
//! (`input` as a string or items, `instructions`, `tools`, `text.format`,
//! `max_output_tokens`, ragd's `rag`) is turned into a chat request and
//! run through the same pipeline as `/v1/chat/completions`; the answer
//! comes back as `output` items (`message` with `output_text`,
//! `function_call`). Streamed, the answer is generated whole and then sent
//! as the Responses event sequence (`response.created` ...
//! `response.output_text.delta` ... `response.completed`). `store: true`
//! and `previous_response_id` need server-side state: a 400, not ignored.

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use ragd_service::chat::{ChatRequest as PipelineRequest, Prepared};
use ragd_service::generation::{self, now_unix, Piece, SamplingFields};
use ragd_service::rag::RagRequest;
use ragd_service::tools::Tools;
use ragd_service::Usage;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::json::Json;
use crate::routes::chat::{messages, MessageIn};
use crate::sse;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    pub model: String,
    #[serde(default)]
    pub input: Value,
    pub instructions: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub text: Option<Value>,
    #[serde(default)]
    pub stream: bool,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<i64>,
    pub store: Option<bool>,
    pub previous_response_id: Option<String>,
    /// ragd's retrieval extension, as in chat completions.
    pub rag: Option<RagRequest>,
}

fn invalid(message: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::invalid(message, param)
}

/// `input` (and `instructions`) as chat messages.
fn input_messages(req: &ResponsesRequest) -> Result<Vec<MessageIn>, ApiError> {
    let mut items: Vec<Value> = Vec::new();
    if let Some(text) = &req.instructions {
        items.push(json!({"role": "system", "content": text}));
    }
    match &req.input {
        Value::String(s) => items.push(json!({"role": "user", "content": s})),
        Value::Array(list) => {
            for (i, item) in list.iter().enumerate() {
                items.push(input_item(i, item)?);
            }
        }
        Value::Null => return Err(invalid("`input` is required", "input")),
        _ => return Err(invalid("`input` must be a string or a list of items", "input")),
    }
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| invalid(format!("`input` item: {e}"), "input")))
        .collect()
}

/// One input item as a chat message.
fn input_item(i: usize, item: &Value) -> Result<Value, ApiError> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    let field = |name: &str| item.get(name).cloned().unwrap_or(Value::Null);
    Ok(match kind {
        "message" => {
            let content = match field("content") {
                Value::Array(parts) => Value::Array(
                    parts
                        .iter()
                        .map(|p| match p.get("type").and_then(Value::as_str) {
                            Some("input_text" | "output_text" | "text") => Ok(json!({"type": "text", "text": p["text"]})),
                            other => Err(invalid(format!("`input[{i}]` has a content part of type {other:?}; only text parts are supported"), "input")),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                other => other,
            };
            json!({"role": field("role"), "content": content})
        }
        "function_call" => json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": field("call_id"), "type": "function", "function": {"name": field("name"), "arguments": field("arguments")}}]}),
        "function_call_output" => {
            json!({"role": "tool", "tool_call_id": field("call_id"), "content": field("output")})
        }
        other => {
            return Err(invalid(
                format!("`input[{i}]` has type {other:?}, which is not supported"),
                "input",
            ))
        }
    })
}

/// `text.format` as a chat `response_format`.
fn response_format(text: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let Some(format) = text.and_then(|t| t.get("format")) else {
        return Ok(None);
    };
    Ok(Some(match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => json!({"type": "json_schema", "json_schema": {
            "name": format.get("name"), "schema": format.get("schema"), "strict": format.get("strict")}}),
        Some(_) => format.clone(),
        None => return Err(invalid("`text.format` needs a `type`", "text")),
    }))
}

/// Responses tools (`{"type": "function", "name", "parameters"}`) in the
/// chat shape.
fn chat_tools(tools: &[Value]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| match t.get("type").and_then(Value::as_str) {
                Some("function") if t.get("function").is_none() => json!({"type": "function", "function": {
                    "name": t.get("name"), "description": t.get("description"), "parameters": t.get("parameters")}}),
                _ => t.clone(),
            })
            .collect(),
    )
}

pub async fn responses(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Json(req): Json<ResponsesRequest>,
) -> Result<Response, ApiError> {
    if req.store == Some(true) {
        return Err(invalid(
            "`store: true` is not supported: ragd keeps no responses (send `store: false`)",
            "store",
        ));
    }
    if req.previous_response_id.is_some() {
        return Err(invalid(
            "`previous_response_id` is not supported: ragd keeps no responses; send the conversation in `input`",
            "previous_response_id",
        ));
    }
    let handle = state.generator(Some(&req.model))?;
    let fields: SamplingFields = serde_json::from_value(json!({
        "max_tokens": req.max_output_tokens, "temperature": req.temperature, "top_p": req.top_p,
        "seed": req.seed, "response_format": response_format(req.text.as_ref())?,
    }))
    .map_err(|e| invalid(e.to_string(), "input"))?;
    let mut settings = fields.validate(None, None)?;
    // A named choice is `{"type": "function", "name": ...}` here.
    let tool_choice = req.tool_choice.as_ref().map(|c| match c.get("name") {
        Some(name) if c.get("function").is_none() => {
            json!({"type": c.get("type"), "function": {"name": name}})
        }
        _ => c.clone(),
    });
    let tools = Tools::parse(
        req.tools.as_deref().map(chat_tools).as_ref(),
        tool_choice.as_ref(),
        handle.tool_format,
    )?;
    if let Some(tools) = &tools {
        tools.constrain(&mut settings)?;
    }
    let conversation = messages(&input_messages(&req)?, &state.request_limits, handle.tool_format)?;
    let pipeline = state.chat_pipeline(&tenant);
    let request = PipelineRequest {
        tenant: tenant.clone(),
        messages: conversation,
        rag: req.rag.clone(),
        settings: settings.clone(),
        // The caches hold chat-shaped answers.
        client_bypass: true,
        tools: tools.clone(),
    };
    let job = match pipeline.prepare(&handle, request).await? {
        Prepared::Generate(job) => *job,
        Prepared::Cached { .. } => {
            return Err(ApiError::Internal("a cache answered a bypassing request".into()))
        }
    };
    let choices = generation::submit(&handle, &tenant, &job.prompt, &settings, "input")?;
    let (pieces, usage) = generation::collect_all(choices, job.prompt.len()).await?;
    let piece = pieces.into_iter().next().unwrap_or_default();
    let mut response = response_object(
        &req,
        &handle.info.id,
        &piece,
        tools.as_ref().filter(|t| t.offered()),
        usage,
    );
    if let Some(sources) = &job.sources {
        response["sources"] = json!(sources);
    }
    if req.stream {
        return Ok(stream(response).into_response());
    }
    Ok(axum::Json(response).into_response())
}

fn response_object(
    req: &ResponsesRequest,
    model: &str,
    piece: &Piece,
    tools: Option<&Tools>,
    usage: Usage,
) -> Value {
    let (text, calls) = match tools {
        Some(t) => t.parse_answer(&piece.text),
        None => (piece.text.clone(), Vec::new()),
    };
    let mut output: Vec<Value> = calls
        .iter()
        .map(|c| {
            let id = uuid::Uuid::new_v4().simple();
            json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": format!("call_{id}"),
                   "name": c.name, "arguments": c.arguments, "status": "completed"})
        })
        .collect();
    if !text.is_empty() || calls.is_empty() {
        output.insert(0, json!({
            "type": "message", "id": format!("msg_{}", uuid::Uuid::new_v4().simple()), "status": "completed",
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}],
        }));
    }
    let incomplete = piece.finish_reason == Some("length");
    json!({
        "id": format!("resp_{}", uuid::Uuid::new_v4().simple()),
        "object": "response",
        "created_at": now_unix(),
        "status": if incomplete { "incomplete" } else { "completed" },
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "error": null,
        "model": model,
        "output": output,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "parallel_tool_calls": true,
        "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        "tools": req.tools.clone().unwrap_or_default(),
        "temperature": req.temperature,
        "top_p": req.top_p,
        "text": req.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
        "store": false,
        "previous_response_id": null,
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens()},
            "output_tokens": usage.completion_tokens.unwrap_or(0),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total_tokens,
        },
    })
}

/// The Responses event sequence of a finished response.
fn stream(response: Value) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let mut events: Vec<Value> = Vec::new();
    let mut pending = response.clone();
    pending["status"] = json!("in_progress");
    pending["output"] = json!([]);
    events.push(json!({"type": "response.created", "response": pending}));
    events.push(json!({"type": "response.in_progress", "response": pending}));
    for (index, item) in response["output"].as_array().into_iter().flatten().enumerate() {
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if item["type"] == "message" {
            added["content"] = json!([]);
        }
        if item["type"] == "function_call" {
            added["arguments"] = json!("");
        }
        events.push(json!({"type": "response.output_item.added", "output_index": index, "item": added}));
        let id = &item["id"];
        if item["type"] == "message" {
            let text = &item["content"][0]["text"];
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            events.push(json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": 0, "part": part}));
            events.push(json!({"type": "response.output_text.delta", "item_id": id, "output_index": index, "content_index": 0, "delta": text}));
            events.push(json!({"type": "response.output_text.done", "item_id": id, "output_index": index, "content_index": 0, "text": text}));
            events.push(json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": 0, "part": item["content"][0]}));
        } else {
            let args = &item["arguments"];
            events.push(json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": args}));
            events.push(json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": index, "arguments": args}));
        }
        events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    let done = if response["status"] == "incomplete" {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(json!({"type": done, "response": response}));
    let events = (events.into_iter().enumerate())
        .map(|(n, mut e)| {
            e["sequence_number"] = json!(n);
            let kind = e["type"].as_str().unwrap_or_default().to_string();
            sse::data(&e).event(kind)
        })
        .collect();
    sse::replay(events)
}

//! Tool calls in chat responses, in OpenAI's shapes: `message.tool_calls`
//! with `finish_reason: "tool_calls"`, and, streamed, the same as
//! `delta.tool_calls` chunks. A choice that may call tools is generated
//! whole before it is shown (its text decides whether it is a call), then
//! streamed as a short replay.

use ragd_service::generation::Piece;
use ragd_service::tools::{ToolCall, Tools};
use serde::Deserialize;
use serde_json::{json, Value};

/// An earlier call on an assistant message of the conversation.
#[derive(Debug, Deserialize)]
pub struct ToolCallIn {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub function: FunctionCallIn,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCallIn {
    pub name: String,
    pub arguments: String,
}

impl ToolCallIn {
    pub fn call(&self) -> ToolCall {
        ToolCall {
            name: self.function.name.clone(),
            arguments: self.function.arguments.clone(),
        }
    }
}

/// One choice's message and finish reason, its calls taken out of its text.
pub fn message(tools: &Tools, piece: &Piece) -> (Value, Option<&'static str>) {
    let (text, calls) = tools.parse_answer(&piece.text);
    if calls.is_empty() {
        return (
            json!({"role": "assistant", "content": piece.text}),
            piece.finish_reason,
        );
    }
    let content = (!text.is_empty()).then_some(text);
    let calls: Vec<Value> = calls.iter().enumerate().map(|(i, c)| call_json(i, c)).collect();
    (
        json!({"role": "assistant", "content": content, "tool_calls": calls}),
        Some("tool_calls"),
    )
}

fn call_json(index: usize, call: &ToolCall) -> Value {
    json!({
        "index": index,
        "id": format!("call_{}", uuid::Uuid::new_v4().simple()),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

/// The chunks of a streamed answer replayed from its finished choices:
/// per choice the role, then its content and tool calls as one delta, then
/// the finish reason. `chunk` wraps a `choices` list into a chunk.
pub fn replay(tools: &Tools, pieces: &[Piece], chunk: impl Fn(Value) -> Value) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let (message, finish) = message(tools, piece);
        out.push(chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])));
        let mut delta = json!({});
        if let Some(c) = message
            .get("content")
            .filter(|c| c.as_str().is_some_and(|s| !s.is_empty()))
        {
            delta["content"] = c.clone();
        }
        if let Some(calls) = message.get("tool_calls") {
            delta["tool_calls"] = calls.clone();
        }
        out.push(chunk(
            json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": null}]),
        ));
        out.push(chunk(
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]),
        ));
    }
    out
}

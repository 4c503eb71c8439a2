//! Tool calling for chat completions: OpenAI's `tools` and `tool_choice`.
//!
//! Templates with a `tools` variable render the tools themselves; for the
//! others the tools are described in a system message, in the syntax of the
//! generator's [`ToolCallFormat`] (Hermes `<tool_call>` blocks by default).
//! `tool_choice: "required"` or a named function forces the call: the
//! answer is constrained (llguidance) to one call whose arguments satisfy
//! the tool's schema. `auto` lets the model choose; calls in its answer
//! become `tool_calls`. `none` leaves the tools out.

pub use crate::tool_format::ToolCallFormat;

use ragd_core::TextTokenizer;
use ragd_models::llama::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ServiceError;
use crate::generation::{GenSettings, ResponseFormat};

/// Most tools one request may define.
pub const MAX_TOOLS: usize = 64;

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    Named(String),
}

/// A request's tools and choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub specs: Vec<ToolSpec>,
    pub choice: ToolChoice,
    /// How the generator writes calls.
    pub format: ToolCallFormat,
}

/// A call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as JSON text (OpenAI's shape).
    pub arguments: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolIn {
    #[serde(rename = "type")]
    kind: String,
    function: FunctionIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionIn {
    name: String,
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

fn bad(param: &'static str, message: String) -> ServiceError {
    ServiceError::invalid(message, param)
}

impl Tools {
    /// `tools` and `tool_choice` of a request for a generator that writes
    /// calls in `format`; `None` without tools (a `tool_choice` other than
    /// `none`/`auto` then is a 400).
    pub fn parse(
        tools: Option<&Value>,
        choice: Option<&Value>,
        format: ToolCallFormat,
    ) -> Result<Option<Self>, ServiceError> {
        let specs: Vec<ToolSpec> = match tools {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => {
                let list: Vec<ToolIn> = serde_json::from_value(v.clone())
                    .map_err(|e| bad("tools", format!("`tools` must be a list of function tools: {e}")))?;
                if list.len() > MAX_TOOLS {
                    return Err(bad("tools", format!("at most {MAX_TOOLS} tools per request")));
                }
                let mut specs = Vec::with_capacity(list.len());
                for t in list {
                    if t.kind != "function" {
                        return Err(bad(
                            "tools",
                            format!("tool type must be `function` (got {:?})", t.kind),
                        ));
                    }
                    let f = t.function;
                    let valid_name = !f.name.is_empty()
                        && f.name.len() <= 64
                        && f.name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !valid_name {
                        return Err(bad(
                            "tools",
                            format!("tool name {:?} must be 1-64 of [A-Za-z0-9_-]", f.name),
                        ));
                    }
                    if specs.iter().any(|s: &ToolSpec| s.name == f.name) {
                        return Err(bad("tools", format!("tool `{}` is defined twice", f.name)));
                    }
                    let _ = f.strict;
                    let parameters = f
                        .parameters
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                    if !parameters.is_object() {
                        return Err(bad(
                            "tools",
                            format!("`parameters` of `{}` must be a JSON Schema object", f.name),
                        ));
                    }
                    specs.push(ToolSpec {
                        name: f.name,
                        description: f.description,
                        parameters,
                    });
                }
                specs
            }
        };
        let choice = match choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => return Err(bad("tool_choice", format!("`tool_choice` {other:?} is not none, auto or required"))),
            },
            Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
                Some(name) if v.get("type").and_then(Value::as_str) == Some("function") => {
                    ToolChoice::Named(name.to_string())
                }
                _ => {
                    return Err(bad(
                        "tool_choice",
                        "`tool_choice` must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}".into(),
                    ))
                }
            },
        };
        if specs.is_empty() {
            return match choice {
                ToolChoice::None | ToolChoice::Auto => Ok(None),
                _ => Err(bad("tool_choice", "`tool_choice` needs `tools`".into())),
            };
        }
        if let ToolChoice::Named(name) = &choice {
            if !specs.iter().any(|s| &s.name == name) {
                return Err(bad(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not in `tools`"),
                ));
            }
        }
        Ok(Some(Self {
            specs,
            choice,
            format,
        }))
    }

    /// Whether the model sees the tools at all.
    pub fn offered(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The system text that describes the tools and how to call them.
    pub fn system_prompt(&self) -> String {
        let signatures: Vec<String> = (self.template_json().as_array().into_iter().flatten())
            .map(Value::to_string)
            .collect();
        self.format.instructions(&signatures.join("\n"))
    }

    /// The tools as OpenAI lists them, for chat templates that render a
    /// `tools` variable themselves.
    pub fn template_json(&self) -> Value {
        Value::Array(
            (self.specs.iter())
                .map(|s| json!({"type": "function", "function": {"name": s.name, "description": s.description, "parameters": s.parameters}}))
                .collect(),
        )
    }

    /// Refuses tool definitions that spell a special token of `tokenizer`
    /// (`<|im_end|>` in a description): a template renders them as its
    /// own text, where such a string would become the token.
    pub fn check_literal(&self, tokenizer: &dyn TextTokenizer) -> Result<(), ServiceError> {
        let text = self.template_json().to_string();
        if tokenizer.encode(&text)? != tokenizer.encode_literal(&text)? {
            return Err(bad("tools", "`tools` must not contain special-token text".into()));
        }
        Ok(())
    }

    /// The conversation as a template without a `tools` variable needs
    /// it: tool results in the turn the format reads them from, and (when
    /// the tools are offered) their description in the system message
    /// (the first one, or a new one in front).
    pub fn describe_in(&self, messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        let mut messages: Vec<ChatMessage> = (messages.into_iter())
            .map(|m| match m.role.as_str() {
                "tool" => {
                    let (role, content) = self.format.tool_result(&m.content);
                    ChatMessage::new(role, content)
                }
                _ => m,
            })
            .collect();
        if !self.offered() {
            return messages;
        }
        crate::rag::add_to_system_message(&mut messages, &self.system_prompt());
        messages
    }

    /// For a forced call: the JSON Schema the whole answer must satisfy
    /// (`{"name": ..., "arguments": {...}}` of one of the allowed tools).
    pub fn forced_schema(&self) -> Option<Value> {
        let allowed: Vec<&ToolSpec> = match &self.choice {
            ToolChoice::Required => self.specs.iter().collect(),
            ToolChoice::Named(name) => self.specs.iter().filter(|s| &s.name == name).collect(),
            ToolChoice::None | ToolChoice::Auto => return None,
        };
        let calls = (allowed.iter())
            .map(|s| self.format.call_schema(&s.name, &s.parameters))
            .collect();
        Some(self.format.forced_schema(calls))
    }

    /// Makes a forced call's answer one JSON call of an allowed tool
    /// (constrained decoding); a `response_format` besides is a 400.
    pub fn constrain(&self, settings: &mut GenSettings) -> Result<(), ServiceError> {
        let Some(schema) = self.forced_schema() else {
            return Ok(());
        };
        if settings.response_format != ResponseFormat::Text {
            return Err(bad(
                "response_format",
                "`response_format` cannot be combined with a forced `tool_choice`".into(),
            ));
        }
        settings.response_format = ResponseFormat::JsonSchema(schema);
        Ok(())
    }

    /// The calls in an answer, and the text around them. A forced answer
    /// is the JSON of one call; otherwise the format's call syntax is taken
    /// out. Calls that do not parse, or name an unknown tool, stay text.
    pub fn parse_answer(&self, text: &str) -> (String, Vec<ToolCall>) {
        if self.forced_schema().is_some() {
            if let Some(calls) = self.format.forced_calls(text).and_then(|c| self.known(c)) {
                return (String::new(), calls);
            }
        }
        if self.choice != ToolChoice::Auto {
            return (text.to_string(), Vec::new());
        }
        let (rest, calls) = self.format.free_calls(text);
        match self.known(calls) {
            Some(calls) if !calls.is_empty() => (rest, calls),
            _ => (text.trim().to_string(), Vec::new()),
        }
    }

    /// The calls as OpenAI shows them, if each names one of the tools.
    fn known(&self, calls: Vec<(String, Value)>) -> Option<Vec<ToolCall>> {
        (calls.into_iter())
            .map(|(name, arguments)| {
                self.specs.iter().find(|s| s.name == name)?;
                let arguments = match arguments {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                Some(ToolCall { name, arguments })
            })
            .collect()
    }
}

/// An assistant message that made calls, as a model writing `format`
/// would have written it (for the next turn's prompt).
pub fn render_calls(format: ToolCallFormat, content: &str, calls: &[ToolCall]) -> String {
    let calls: Vec<(String, Value)> = (calls.iter())
        .map(|c| {
            let arguments =
                serde_json::from_str(&c.arguments).unwrap_or_else(|_| Value::String(c.arguments.clone()));
            (c.name.clone(), arguments)
        })
        .collect();
    format.render(content, &calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hermes(tools: Option<&Value>, choice: Option<&Value>) -> Result<Option<Tools>, ServiceError> {
        Tools::parse(tools, choice, ToolCallFormat::Hermes)
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
               {"type": "function", "function": {"name": "get_time"}}])
    }

    #[test]
    fn choices_parse_and_bad_ones_name_their_field() {
        let t = hermes(Some(&weather()), None).unwrap().unwrap();
        assert_eq!((t.specs.len(), &t.choice), (2, &ToolChoice::Auto));
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        let t = hermes(Some(&weather()), Some(&named)).unwrap().unwrap();
        assert_eq!(t.choice, ToolChoice::Named("get_time".into()));
        assert!(hermes(None, Some(&json!("none"))).unwrap().is_none());
        for (tools, choice, param) in [
            (Some(json!([{"type": "retrieval"}])), None, "tools"),
            (
                Some(json!([{"type": "function", "function": {"name": "a b"}}])),
                None,
                "tools",
            ),
            (Some(json!("x")), None, "tools"),
            (Some(weather()), Some(json!("sometimes")), "tool_choice"),
            (
                Some(weather()),
                Some(json!({"type": "function", "function": {"name": "nope"}})),
                "tool_choice",
            ),
            (None, Some(json!("required")), "tool_choice"),
        ] {
            match hermes(tools.as_ref(), choice.as_ref()) {
                Err(ServiceError::Invalid { param: Some(p), .. }) => assert_eq!(p, param),
                other => panic!("{tools:?} {choice:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn answers_become_calls_forced_or_in_tags() {
        let auto = hermes(Some(&weather()), None).unwrap().unwrap();
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let (rest, calls) = auto.parse_answer(text);
        assert_eq!(rest, "Let me check.");
        assert_eq!(
            calls,
            vec![ToolCall {
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }]
        );
        let (rest, calls) = auto.parse_answer("<tool_call>{\"name\": \"unknown\"}</tool_call> hi");
        assert!(calls.is_empty() && rest.contains("unknown"), "{rest}");
        let required = hermes(Some(&weather()), Some(&json!("required")))
            .unwrap()
            .unwrap();
        let (rest, calls) = required.parse_answer(r#"{"name": "get_time", "arguments": {}}"#);
        assert_eq!((rest.as_str(), calls[0].name.as_str()), ("", "get_time"));
        assert!(
            required.forced_schema().unwrap()["anyOf"]
                .as_array()
                .unwrap()
                .len()
                == 2
        );
        let want = format!(
            "<tool_call>\n{}\n</tool_call>",
            json!({"name": "get_time", "arguments": {}})
        );
        assert_eq!(render_calls(ToolCallFormat::Hermes, "", &calls), want);
    }

    #[test]
    fn the_tools_go_into_the_system_message() {
        let t = hermes(Some(&weather()), None).unwrap().unwrap();
        let out = t.describe_in(vec![ChatMessage::new("user", "hi")]);
        assert_eq!(out[0].role, "system");
        assert!(out[0].content.contains("<tools>") && out[0].content.contains("get_weather"));
        let out = t.describe_in(vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "hi"),
        ]);
        assert_eq!(out.len(), 2);
        assert!(out[0].content.starts_with("Be brief.\n\n"));
        let none = hermes(Some(&weather()), Some(&json!("none"))).unwrap().unwrap();
        assert_eq!(none.describe_in(vec![ChatMessage::new("user", "hi")]).len(), 1);
    }
}

//! How a model family writes tool calls: the instructions that describe
//! the tools where the chat template does not, the shape a forced call is
//! constrained to, where the calls sit in an answer, and how earlier calls
//! are written back into the next turn's prompt.
//!
//! Chosen per generator from its chat template and name
//! ([`ToolCallFormat::detect`]), or set with `--tool-call-format`.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

/// A model family's tool-call syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolCallFormat {
    /// One `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block
    /// per call (Hermes; Qwen2.5 and many fine-tunes).
    #[default]
    Hermes,
    /// One `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>`
    /// block holding a list of calls (SmolLM2's function-calling format).
    SmolLm2,
    /// Bare JSON `{"name": ..., "parameters": {...}}`, after an optional
    /// `<|python_tag|>`, calls separated by `;` (Llama 3.1-3.3).
    Llama3,
    /// `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (Mistral).
    Mistral,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_TAG: &str = "[TOOL_CALLS]";

impl ToolCallFormat {
    pub const NAMES: [&'static str; 4] = ["hermes", "smollm2", "llama3", "mistral"];

    /// The format a generator writes, judged from its chat template's
    /// source and its model name; Hermes when nothing says otherwise.
    pub fn detect(template_source: Option<&str>, model_name: &str) -> Self {
        let template = template_source.unwrap_or("");
        if template.contains(MISTRAL_TAG) {
            Self::Mistral
        } else if template.contains(PYTHON_TAG) || template.contains("ipython") {
            Self::Llama3
        } else if template.contains(OPEN) {
            Self::Hermes
        } else if model_name.to_ascii_lowercase().contains("smollm2") {
            Self::SmolLm2
        } else {
            Self::Hermes
        }
    }

    /// The key of a call's arguments object.
    fn arguments_key(self) -> &'static str {
        match self {
            Self::Llama3 => "parameters",
            _ => "arguments",
        }
    }

    /// Whether the calls of an answer form one JSON list.
    fn lists_calls(self) -> bool {
        matches!(self, Self::SmolLm2 | Self::Mistral)
    }

    /// The system text that describes `signatures` (one JSON function per
    /// line) and how to call them, for templates without a `tools` variable.
    pub fn instructions(self, signatures: &str) -> String {
        let example = self.render(
            "",
            &[("<function-name>".to_string(), json!({"<argument>": "<value>"}))],
        );
        format!(
            "You may call one or more functions to answer the user. The functions are listed in <tools></tools>:\n\
             <tools>\n{signatures}\n</tools>\n\
             To call a function, answer with its name and arguments as JSON, exactly in this form:\n{example}"
        )
    }

    /// The JSON Schema a forced answer is constrained to: one call of
    /// one of the `calls` (each a schema of `{"name", "arguments"}` written
    /// with [`Self::call_schema`]).
    pub fn forced_schema(self, calls: Vec<Value>) -> Value {
        let one = match <[Value; 1]>::try_from(calls) {
            Ok([call]) => call,
            Err(many) => json!({"anyOf": many}),
        };
        if self.lists_calls() {
            json!({"type": "array", "minItems": 1, "maxItems": 1, "items": one})
        } else {
            one
        }
    }

    /// The schema of one call of `name` with arguments `parameters`.
    pub fn call_schema(self, name: &str, parameters: &Value) -> Value {
        let key = self.arguments_key();
        json!({"type": "object", "additionalProperties": false, "required": ["name", key],
               "properties": {"name": {"const": name}, key: parameters}})
    }

    /// A forced answer's calls: the whole text is the JSON the schema of
    /// [`Self::forced_schema`] allows. `None` when it does not parse.
    pub fn forced_calls(self, text: &str) -> Option<Vec<(String, Value)>> {
        let v: Value = serde_json::from_str(text.trim()).ok()?;
        self.calls_in(&v)
    }

    /// The calls written in a free answer, and the text around them (all
    /// of it when it holds no well-formed call); a block that does not
    /// parse stays text.
    pub fn free_calls(self, text: &str) -> (String, Vec<(String, Value)>) {
        match self {
            Self::Hermes | Self::SmolLm2 => self.tagged_calls(text),
            Self::Llama3 => {
                let body = text.trim().trim_start_matches(PYTHON_TAG).trim();
                let calls: Option<Vec<_>> = (body.split(';'))
                    .filter(|part| !part.trim().is_empty())
                    .map(|part| {
                        let v: Value = serde_json::from_str(part.trim()).ok()?;
                        self.calls_in(&v)
                    })
                    .collect();
                match calls.map(|c| c.concat()) {
                    Some(calls) if !calls.is_empty() => (String::new(), calls),
                    _ => (text.trim().to_string(), Vec::new()),
                }
            }
            Self::Mistral => {
                let (before, list) = match text.find(MISTRAL_TAG) {
                    Some(at) => (&text[..at], &text[at + MISTRAL_TAG.len()..]),
                    None if text.trim_start().starts_with("[{") => ("", text),
                    None => return (text.trim().to_string(), Vec::new()),
                };
                match serde_json::from_str(list.trim())
                    .ok()
                    .and_then(|v: Value| self.calls_in(&v))
                {
                    Some(calls) => (before.trim().to_string(), calls),
                    None => (text.trim().to_string(), Vec::new()),
                }
            }
        }
    }

    /// `<tool_call>` blocks taken out of `text` (Hermes: one call each;
    /// SmolLM2: a list each).
    fn tagged_calls(self, text: &str) -> (String, Vec<(String, Value)>) {
        let (mut rest, mut calls, mut tail) = (String::new(), Vec::new(), text);
        while let Some(start) = tail.find(OPEN) {
            let after = &tail[start + OPEN.len()..];
            let Some(end) = after.find(CLOSE) else {
                break;
            };
            let parsed = serde_json::from_str(after[..end].trim())
                .ok()
                .and_then(|v: Value| self.calls_in(&v));
            match parsed {
                Some(found) => {
                    rest.push_str(&tail[..start]);
                    calls.extend(found);
                }
                None => rest.push_str(&tail[..start + OPEN.len() + end + CLOSE.len()]),
            }
            tail = &after[end + CLOSE.len()..];
        }
        rest.push_str(tail);
        (rest.trim().to_string(), calls)
    }

    /// The `(name, arguments)` pairs of a call object or a list of them.
    fn calls_in(self, v: &Value) -> Option<Vec<(String, Value)>> {
        let call = |c: &Value| {
            let name = c.get("name")?.as_str()?.to_string();
            let arguments = (c.get(self.arguments_key()))
                .or_else(|| c.get("arguments"))
                .cloned()
                .unwrap_or_else(|| json!({}));
            Some((name, arguments))
        };
        match v {
            Value::Array(list) => list.iter().map(call).collect(),
            one => Some(vec![call(one)?]),
        }
    }

    /// An assistant turn that made `calls`, as the model writes it.
    pub fn render(self, content: &str, calls: &[(String, Value)]) -> String {
        let key = self.arguments_key();
        let objects: Vec<Value> = (calls.iter())
            .map(|(name, arguments)| json!({"name": name, key: arguments}))
            .collect();
        let written = match self {
            Self::Hermes => (objects.iter())
                .map(|o| format!("{OPEN}\n{o}\n{CLOSE}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Self::SmolLm2 => {
                let lines: Vec<String> = objects.iter().map(Value::to_string).collect();
                format!("{OPEN}[\n{}\n]{CLOSE}", lines.join(",\n"))
            }
            Self::Llama3 => (objects.iter())
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Self::Mistral => format!("{MISTRAL_TAG}{}", Value::Array(objects)),
        };
        match (content.is_empty(), calls.is_empty()) {
            (_, true) => content.to_string(),
            (true, false) => written,
            (false, false) => format!("{content}\n{written}"),
        }
    }

    /// A tool's result as the turn the model was trained to read, for
    /// templates that do not render `tool` messages themselves.
    pub fn tool_result(self, content: &str) -> (&'static str, String) {
        match self {
            Self::Hermes | Self::SmolLm2 => ("user", format!("<tool_response>\n{content}\n</tool_response>")),
            Self::Llama3 => ("ipython", content.to_string()),
            Self::Mistral => ("user", format!("[TOOL_RESULTS]{content}[/TOOL_RESULTS]")),
        }
    }
}

impl fmt::Display for ToolCallFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = [Self::Hermes, Self::SmolLm2, Self::Llama3, Self::Mistral]
            .iter()
            .position(|x| x == self)
            .unwrap_or(0);
        f.write_str(Self::NAMES[i])
    }
}

impl FromStr for ToolCallFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hermes" => Ok(Self::Hermes),
            "smollm2" => Ok(Self::SmolLm2),
            "llama3" => Ok(Self::Llama3),
            "mistral" => Ok(Self::Mistral),
            other => Err(format!(
                "unknown tool-call format {other:?} (known: {})",
                Self::NAMES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ToolCallFormat; 4] = [
        ToolCallFormat::Hermes,
        ToolCallFormat::SmolLm2,
        ToolCallFormat::Llama3,
        ToolCallFormat::Mistral,
    ];

    fn calls() -> Vec<(String, Value)> {
        vec![
            ("get_weather".into(), json!({"city": "Paris"})),
            ("get_time".into(), json!({})),
        ]
    }

    #[test]
    fn each_format_reads_back_what_it_writes() {
        for f in ALL {
            let written = f.render("", &calls());
            assert_eq!(f.free_calls(&written), (String::new(), calls()), "{f}: {written}");
            assert_eq!(f.to_string().parse::<ToolCallFormat>(), Ok(f));
        }
        for f in [
            ToolCallFormat::Hermes,
            ToolCallFormat::SmolLm2,
            ToolCallFormat::Mistral,
        ] {
            let written = f.render("Let me check.", &calls());
            assert_eq!(f.free_calls(&written), ("Let me check.".into(), calls()), "{f}");
        }
    }

    #[test]
    fn family_outputs_parse() {
        let smol = "<tool_call>[\n{\"name\": \"get_time\", \"arguments\": {}}\n]</tool_call>";
        assert_eq!(ToolCallFormat::SmolLm2.free_calls(smol).1[0].0, "get_time");
        let llama = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}";
        let (rest, found) = ToolCallFormat::Llama3.free_calls(llama);
        assert_eq!((rest.as_str(), found[0].1["city"].as_str()), ("", Some("Oslo")));
        let mistral = "[TOOL_CALLS][{\"name\": \"get_time\", \"arguments\": {}}]";
        assert_eq!(ToolCallFormat::Mistral.free_calls(mistral).1.len(), 1);
        // Plain prose is no call in any format.
        for f in ALL {
            assert_eq!(f.free_calls(" It is sunny. ").0, "It is sunny.");
            assert!(f.free_calls("It is sunny.").1.is_empty());
        }
        // A broken block stays text.
        let (rest, found) = ToolCallFormat::Hermes.free_calls("<tool_call>{oops</tool_call> hi");
        assert!(found.is_empty() && rest.contains("oops"));
    }

    #[test]
    fn forced_answers_match_their_schema_shape() {
        let schema =
            |f: ToolCallFormat| f.forced_schema(vec![f.call_schema("get_time", &json!({"type": "object"}))]);
        assert_eq!(
            schema(ToolCallFormat::Hermes)["required"],
            json!(["name", "arguments"])
        );
        assert_eq!(
            schema(ToolCallFormat::Llama3)["required"],
            json!(["name", "parameters"])
        );
        assert_eq!(schema(ToolCallFormat::SmolLm2)["type"], "array");
        let two = ToolCallFormat::Hermes.forced_schema(vec![json!({}), json!({})]);
        assert_eq!(two["anyOf"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            ToolCallFormat::SmolLm2.forced_calls(r#"[{"name": "get_time", "arguments": {}}]"#),
            Some(vec![("get_time".into(), json!({}))])
        );
        assert_eq!(
            ToolCallFormat::Llama3.forced_calls(r#"{"name": "get_time", "parameters": {"a": 1}}"#),
            Some(vec![("get_time".into(), json!({"a": 1}))])
        );
    }

    #[test]
    fn detection_reads_the_template_then_the_name() {
        let detect = ToolCallFormat::detect;
        assert_eq!(
            detect(Some("{{ '<tool_call>' }}"), "qwen2.5-0.5b"),
            ToolCallFormat::Hermes
        );
        assert_eq!(
            detect(Some("<|python_tag|>"), "llama-3.1-8b"),
            ToolCallFormat::Llama3
        );
        assert_eq!(
            detect(Some("[TOOL_CALLS]"), "mistral-7b"),
            ToolCallFormat::Mistral
        );
        assert_eq!(
            detect(Some("<|im_start|>"), "smollm2-135m-instruct-q4_1"),
            ToolCallFormat::SmolLm2
        );
        assert_eq!(detect(None, "tinyllama"), ToolCallFormat::Hermes);
        assert!("xml".parse::<ToolCallFormat>().is_err());
    }
}

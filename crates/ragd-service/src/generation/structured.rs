//! Structured outputs: `response_format` (`json_object`, `json_schema`)
//! enforced token by token with llguidance, the constrained-decoding
//! library behind llama.cpp's, vLLM's and SGLang's guided decoding. Each
//! choice gets its own matcher; the engine asks it for a mask before every
//! token (`ragd_engine::TokenConstraint`).

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use ragd_core::TextTokenizer;
use ragd_engine::{Constraint, TokenConstraint};
use serde_json::{json, Value};
use toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};

use crate::error::ServiceError;

/// What shape the answer must have.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema.
    JsonSchema(Value),
}

impl ResponseFormat {
    /// OpenAI's `response_format`: `{"type": "text"}`, `{"type":
    /// "json_object"}` or `{"type": "json_schema", "json_schema": {"name",
    /// "schema", "strict"}}`.
    pub fn parse(v: &Value) -> Result<Self, ServiceError> {
        let bad = |m: &str| ServiceError::invalid(format!("`response_format` {m}"), "response_format");
        match v.get("type").and_then(Value::as_str) {
            Some("text") => Ok(Self::Text),
            Some("json_object") => Ok(Self::JsonObject),
            Some("json_schema") => {
                let spec = v
                    .get("json_schema")
                    .ok_or_else(|| bad("of type json_schema needs `json_schema`"))?;
                let schema = spec
                    .get("schema")
                    .filter(|s| s.is_object() || s.is_boolean())
                    .ok_or_else(|| bad("needs `json_schema.schema`, a JSON Schema object"))?;
                Ok(Self::JsonSchema(schema.clone()))
            }
            Some(other) => Err(bad(&format!(
                "type must be text, json_object or json_schema (got {other:?})"
            ))),
            None => Err(bad("must be an object with a `type`")),
        }
    }

    /// The schema to compile, with compact JSON whitespace (`", "` and
    /// `": "`, no free whitespace) unless it says otherwise: free
    /// whitespace lets a small model pad forever.
    fn schema(&self) -> Option<Value> {
        let mut schema = match self {
            Self::Text => return None,
            Self::JsonObject => json!({"type": "object"}),
            Self::JsonSchema(Value::Bool(true)) => json!({}),
            Self::JsonSchema(schema) => schema.clone(),
        };
        if let Some(object) = schema.as_object_mut() {
            object.entry("x-guidance").or_insert_with(
                || json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
            );
        }
        Some(schema)
    }
}

/// The grammar compiler of one generator: its vocabulary as a token trie.
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// The compiler over `words`, each token's bytes by id (see
    /// [`TextTokenizer::token_bytes`]); `end_token` ends an answer.
    pub fn new(words: &[Vec<u8>], end_token: u32) -> anyhow::Result<Self> {
        let info = TokRxInfo::new(u32::try_from(words.len())?, end_token);
        let env = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, words)));
        let mut factory = ParserFactory::new_simple(&(env as toktrie::TokEnv))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// A fresh constraint for one choice (`None` for plain text). An
    /// invalid or unsupported schema is a 400 naming the problem.
    pub fn constraint(&self, format: &ResponseFormat) -> Result<Option<Constraint>, ServiceError> {
        let Some(schema) = format.schema() else {
            return Ok(None);
        };
        let invalid = |e: String| {
            ServiceError::invalid(
                format!("`response_format` schema is not usable: {e}"),
                "response_format",
            )
        };
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_json_schema(schema))
            .map_err(|e| invalid(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(e));
        }
        Ok(Some(Constraint::new(Llg { matcher })))
    }
}

/// Each token's bytes, by id.
pub type TokenBytes = Arc<Vec<Vec<u8>>>;

/// What a generator's vocabulary gives, read once when it loads: each
/// token's bytes (when the tokenizer can list them for its whole
/// vocabulary; `/detokenize` spells special tokens with them) and, given
/// an end token, the structured-output grammar compiler over them.
pub fn vocabulary(
    tokenizer: &dyn TextTokenizer,
    end_token: Option<u32>,
) -> anyhow::Result<(Option<TokenBytes>, Option<Arc<Grammars>>)> {
    let Some(words) = tokenizer
        .token_bytes()
        .filter(|w| w.len() >= tokenizer.vocab_size())
    else {
        return Ok((None, None));
    };
    let grammars = end_token.map(|end| Grammars::new(&words, end)).transpose()?;
    Ok((Some(Arc::new(words)), grammars.map(Arc::new)))
}

/// One choice's matcher.
struct Llg {
    matcher: Matcher,
}

impl TokenConstraint for Llg {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        for (id, logit) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(id as u32) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<bool, String> {
        self.matcher.consume_token(token).map_err(|e| e.to_string())?;
        Ok(self.matcher.is_stopped())
    }
}

//! The sampling fields shared by `/v1/chat/completions` and
//! `/v1/completions`, validated into what the engine takes.

use ragd_engine::sampling::SamplingParams;
use ragd_engine::InvalidRequest;
use serde::Deserialize;

use super::structured::ResponseFormat;
use crate::error::ServiceError;

/// Most choices one request may ask for (`n`).
pub const MAX_N: u32 = 16;
/// Most alternatives per token (`top_logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most stop strings, as OpenAI allows.
pub const MAX_STOPS: usize = 4;
/// The bounds of `priority` (either sign; lower is served earlier).
pub const MAX_PRIORITY: i64 = 1000;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields both endpoints accept. Unknown fields are ignored, as OpenAI's
/// clients send fields a local server has no use for.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SamplingFields {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stop: Option<StopField>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Extensions (vLLM / llama.cpp names).
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub ignore_eos: bool,
    /// Structured outputs: `{"type": "json_object"}` or `{"type":
    /// "json_schema", "json_schema": {"schema": ...}}`.
    pub response_format: Option<serde_json::Value>,
    /// Admission priority (vLLM's): an integer in
    /// `-MAX_PRIORITY..=MAX_PRIORITY`, lower served earlier, 0 by default.
    /// Taken as any JSON so that a wrong type is a 400 naming `priority`.
    pub priority: Option<serde_json::Value>,
}

/// What the endpoints need once the fields are checked.
#[derive(Debug, Clone)]
pub struct GenSettings {
    pub sampling: SamplingParams,
    /// None: up to the end of the context.
    pub max_tokens: Option<usize>,
    pub n: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    pub response_format: ResponseFormat,
    /// The engine's admission priority (lower is served earlier); not
    /// part of the cache keys, as it does not change the answer.
    pub priority: i32,
}

fn range(
    value: Option<f32>,
    name: &'static str,
    lo: f32,
    hi: f32,
    default: f32,
) -> Result<f32, ServiceError> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(v),
        Some(v) => Err(ServiceError::invalid(
            format!("`{name}` must be between {lo} and {hi} (got {v})"),
            name,
        )),
    }
}

/// `priority`: absent or null is 0; otherwise an integer within
/// [`MAX_PRIORITY`] either way.
fn priority(value: Option<&serde_json::Value>) -> Result<i32, ServiceError> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(0);
    };
    (v.as_i64())
        .filter(|p| (-MAX_PRIORITY..=MAX_PRIORITY).contains(p))
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| {
            ServiceError::invalid(
                format!("`priority` must be an integer between -{MAX_PRIORITY} and {MAX_PRIORITY} (got {v})"),
                "priority",
            )
        })
}

impl SamplingFields {
    /// Checks every field. `logprobs` is the number of alternatives per
    /// token the endpoint asked for (its fields differ between the two).
    pub fn validate(
        &self,
        max_tokens: Option<u32>,
        logprobs: Option<u32>,
    ) -> Result<GenSettings, ServiceError> {
        let max_tokens = max_tokens.or(self.max_tokens).map(|m| m as usize);
        // The engine's own check, early: before the prompt is built.
        InvalidRequest::check_max_tokens(max_tokens)
            .map_err(|e| ServiceError::invalid_request(&e, "prompt"))?;
        let n = self.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return Err(ServiceError::invalid(
                format!("`n` must be between 1 and {MAX_N} (got {n})"),
                "n",
            ));
        }
        if let Some(k) = logprobs {
            if k > MAX_TOP_LOGPROBS {
                return Err(ServiceError::invalid(
                    format!("at most {MAX_TOP_LOGPROBS} top logprobs per token (got {k})"),
                    "top_logprobs",
                ));
            }
        }
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => 0,
            Some(k) if k > 0 => k as usize,
            Some(k) => {
                return Err(ServiceError::invalid(
                    format!("`top_k` must be -1, 0 or positive (got {k})"),
                    "top_k",
                ))
            }
        };
        let top_p = range(self.top_p, "top_p", 0.0, 1.0, 1.0)?;
        if top_p == 0.0 {
            return Err(ServiceError::invalid("`top_p` must be greater than 0", "top_p"));
        }
        let repetition_penalty = range(self.repetition_penalty, "repetition_penalty", 0.0, 10.0, 1.0)?;
        if repetition_penalty == 0.0 {
            return Err(ServiceError::invalid(
                "`repetition_penalty` must be greater than 0",
                "repetition_penalty",
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s.clone()],
            Some(StopField::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
            return Err(ServiceError::invalid(
                format!("`stop` takes up to {MAX_STOPS} non-empty strings"),
                "stop",
            ));
        }
        let sampling = SamplingParams {
            temperature: range(self.temperature, "temperature", 0.0, 2.0, 1.0)?,
            top_k,
            top_p,
            min_p: range(self.min_p, "min_p", 0.0, 1.0, 0.0)?,
            seed: self.seed.map(|s| s as u64),
            presence_penalty: range(self.presence_penalty, "presence_penalty", -2.0, 2.0, 0.0)?,
            frequency_penalty: range(self.frequency_penalty, "frequency_penalty", -2.0, 2.0, 0.0)?,
            repetition_penalty,
            logprobs: logprobs.map(|k| k as usize),
        };
        Ok(GenSettings {
            sampling,
            max_tokens,
            n: n as usize,
            stop,
            ignore_eos: self.ignore_eos,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            response_format: match &self.response_format {
                None | Some(serde_json::Value::Null) => ResponseFormat::Text,
                Some(v) => ResponseFormat::parse(v)?,
            },
            priority: priority(self.priority.as_ref())?,
        })
    }
}

impl GenSettings {
    /// The sampling params of choice `index`: with a seed, each choice gets
    /// its own (seed + index), so `n` choices differ but repeat exactly.
    pub fn sampling_for(&self, index: usize) -> SamplingParams {
        let mut s = self.sampling.clone();
        s.seed = s.seed.map(|seed| seed.wrapping_add(index as u64));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn priority_of(body: serde_json::Value) -> Result<i32, ServiceError> {
        let fields: SamplingFields = serde_json::from_value(body).unwrap();
        fields.validate(None, None).map(|s| s.priority)
    }

    #[test]
    fn priority_is_an_integer_within_bounds_and_0_by_default() {
        use serde_json::json;
        assert_eq!(priority_of(json!({})).unwrap(), 0);
        assert_eq!(priority_of(json!({"priority": null})).unwrap(), 0);
        for p in [-1000, -3, 0, 7, 1000] {
            assert_eq!(priority_of(json!({"priority": p})).unwrap(), p);
        }
        for bad in [
            json!("high"),
            json!(5000),
            json!(-1001),
            json!(1.5),
            json!(true),
            json!(1e12),
        ] {
            match priority_of(json!({ "priority": bad })) {
                Err(ServiceError::Invalid { param, message }) => {
                    assert_eq!(param.as_deref(), Some("priority"), "{bad}");
                    assert!(message.contains("-1000 and 1000"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}

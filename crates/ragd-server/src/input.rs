//! The `input` field of embeddings and moderations requests: a string, an
//! array of strings, an array of token ids, or an array of token-id arrays.
//! Parsed by hand from JSON so each mistake gets a precise message.

pub use ragd_service::embedding::Input;
use serde_json::Value;

use crate::error::ApiError;

/// Bounds an `input` field must respect.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Most items in the array.
    pub max_inputs: usize,
    /// Longest text item, in bytes.
    pub max_input_bytes: usize,
    /// Whether token-id arrays are accepted (embeddings) or only text (moderations).
    pub allow_tokens: bool,
}

/// The bounds of an `input` field; `allow_tokens` for endpoints that take token ids.
pub fn limits(limits: &ragd_service::RequestLimits, allow_tokens: bool) -> InputLimits {
    InputLimits {
        max_inputs: limits.max_inputs,
        max_input_bytes: limits.max_input_bytes,
        allow_tokens,
    }
}

/// Parses `input` and checks it against `limits`.
pub fn parse(value: &Value, limits: InputLimits) -> Result<Vec<Input>, ApiError> {
    let InputLimits {
        max_inputs,
        max_input_bytes,
        allow_tokens,
    } = limits;
    let bad = |m: String| ApiError::invalid(m, "input");
    // Bounds first, on the parsed JSON: no copy of an oversized input is
    // made before it is refused.
    // One item unless an array of items (an array of numbers is one
    // token-id item).
    let count = match value {
        Value::Array(a) if !a.first().is_some_and(Value::is_number) => a.len(),
        _ => 1,
    };
    if count > max_inputs {
        return Err(bad(format!(
            "`input` has {count} items; at most {max_inputs} are allowed"
        )));
    }
    let long = match value {
        Value::String(s) => (s.len() > max_input_bytes).then_some((0, s.len())),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| match v {
            Value::String(s) if s.len() > max_input_bytes => Some((i, s.len())),
            _ => None,
        }),
        _ => None,
    };
    if let Some((i, bytes)) = long {
        return Err(bad(format!(
            "`input[{i}]` is {bytes} bytes long; at most {max_input_bytes} are allowed per input"
        )));
    }
    let items = match value {
        Value::String(s) => vec![Input::Text(s.clone())],
        Value::Array(a) if a.is_empty() => return Err(bad("`input` must not be an empty array".into())),
        Value::Array(a) if a[0].is_number() => {
            if !allow_tokens {
                return Err(bad("`input` must be a string or an array of strings".into()));
            }
            vec![Input::Tokens(token_ids(a, None)?)]
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(Input::Text(s.clone())),
                Value::Array(ids) if allow_tokens => Ok(Input::Tokens(token_ids(ids, Some(i))?)),
                _ => Err(bad(format!(
                    "`input[{i}]` must be {}, got {}",
                    if allow_tokens {
                        "a string or an array of token ids"
                    } else {
                        "a string"
                    },
                    type_name(v)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Value::Null => return Err(bad("`input` is required".into())),
        v => {
            return Err(bad(format!(
                "`input` must be a string or an array, got {}",
                type_name(v)
            )))
        }
    };
    // Count and sizes were checked above, before the copies.
    for (i, item) in items.iter().enumerate() {
        let empty = match item {
            Input::Text(s) => s.is_empty(),
            Input::Tokens(t) => t.is_empty(),
        };
        if empty {
            return Err(bad(format!("`input[{i}]` is empty")));
        }
    }
    Ok(items)
}

fn token_ids(a: &[Value], at: Option<usize>) -> Result<Vec<u32>, ApiError> {
    let place = at
        .map(|i| format!("`input[{i}]`"))
        .unwrap_or_else(|| "`input`".into());
    if a.is_empty() {
        return Err(ApiError::invalid(
            format!("{place} is an empty token array"),
            "input",
        ));
    }
    a.iter()
        .map(|v| {
            v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                ApiError::invalid(
                    format!("{place} must hold only non-negative integer token ids, got {v}"),
                    "input",
                )
            })
        })
        .collect()
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: InputLimits = InputLimits {
        max_inputs: 10,
        max_input_bytes: 8,
        allow_tokens: true,
    };

    #[test]
    fn accepts_the_four_shapes() {
        assert_eq!(parse(&json!("a"), LIMITS).unwrap(), vec![Input::Text("a".into())]);
        assert_eq!(parse(&json!(["a", "b"]), LIMITS).unwrap().len(), 2);
        assert_eq!(
            parse(&json!([1, 2]), LIMITS).unwrap(),
            vec![Input::Tokens(vec![1, 2])]
        );
        assert_eq!(parse(&json!([[1], [2, 3]]), LIMITS).unwrap().len(), 2);
    }

    #[test]
    fn rejects_bad_shapes() {
        for bad in [
            json!(""),
            json!([]),
            json!([""]),
            json!([1, -2]),
            json!([1.5]),
            json!([[]]),
            json!({}),
            json!(3),
            json!(null),
            json!(["a", 3]),
        ] {
            assert!(parse(&bad, LIMITS).is_err(), "{bad} should be rejected");
        }
        let text_only = InputLimits {
            allow_tokens: false,
            ..LIMITS
        };
        assert!(parse(&json!([1, 2]), text_only).is_err());
        let two = InputLimits {
            max_inputs: 2,
            ..LIMITS
        };
        assert!(parse(&json!(["a", "b", "c"]), two).is_err());
        assert!(
            parse(&json!("123456789"), LIMITS).is_err(),
            "over max_input_bytes"
        );
    }
}

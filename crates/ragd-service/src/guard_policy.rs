//! A tenant's guard policy: which texts the guard screens (the question,
//! retrieved chunks, the answer), the score that flags a text, what a
//! flag does, and phrases that never count. The server's guard flags give
//! the default; a tenant may have its own (keys file, admin API).
//!
//! | action | flagged question | flagged retrieved chunk | flagged or leaking answer |
//! |---|---|---|---|
//! | `block` | 400 | 400 | withheld (`content_filter`) |
//! | `redact` (default) | 400 | left out of the prompt (`blocked_sources`) | withheld |
//! | `flag` | answered, listed in `guard_flags` | kept, listed | kept, listed |

use serde::{Deserialize, Serialize};

use crate::config::GuardConfig;

/// What a flagged text does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    Block,
    #[default]
    Redact,
    Flag,
}

/// Where the guard looks and what it does there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardPolicy {
    /// Screen the question (the last user message).
    #[serde(default)]
    pub input: bool,
    /// Screen retrieved chunks before they go into the prompt.
    #[serde(default)]
    pub context: bool,
    /// Screen the answer: the guard's score, and the canary of RAG prompts.
    #[serde(default)]
    pub output: bool,
    /// Score at or above which a text is flagged.
    pub threshold: f32,
    #[serde(default)]
    pub action: GuardAction,
    /// Phrases taken out of a text before it is scored (case-insensitive):
    /// a team's own boilerplate that reads like an instruction.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Most allow-list phrases, and longest phrase, in a policy.
pub const MAX_ALLOW: usize = 64;
pub const MAX_ALLOW_BYTES: usize = 256;

impl GuardPolicy {
    /// The server's default, from its guard flags.
    pub fn from_config(config: &GuardConfig) -> Self {
        Self {
            input: config.screen_chat,
            context: config.screen_chat,
            output: config.screen_output,
            threshold: config.threshold,
            action: GuardAction::Redact,
            allow: Vec::new(),
        }
    }

    /// Whether any check runs.
    pub fn screens(&self) -> bool {
        self.input || self.context || self.output
    }

    /// Refuses a policy that could not work.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.threshold) || self.threshold.is_nan() {
            return Err(format!(
                "`threshold` must be within 0 and 1 (got {})",
                self.threshold
            ));
        }
        if self.allow.len() > MAX_ALLOW {
            return Err(format!("at most {MAX_ALLOW} `allow` phrases"));
        }
        if let Some(p) = self
            .allow
            .iter()
            .find(|p| p.trim().is_empty() || p.len() > MAX_ALLOW_BYTES)
        {
            return Err(format!(
                "`allow` phrases must be 1 to {MAX_ALLOW_BYTES} bytes (got {p:?})"
            ));
        }
        Ok(())
    }

    /// `text` with the allowed phrases taken out, as the guard scores it.
    pub fn without_allowed(&self, text: &str) -> String {
        let mut out = text.to_string();
        for phrase in &self.allow {
            out = remove_ignoring_case(&out, phrase);
        }
        out
    }
}

/// `text` without any occurrence of `phrase`, compared without case.
fn remove_ignoring_case(text: &str, phrase: &str) -> String {
    let (hay, needle) = (text.to_lowercase(), phrase.to_lowercase());
    // Lower-casing can change byte lengths (rare scripts): then only exact matches.
    if hay.len() != text.len() {
        return text.replace(phrase, "");
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = hay[at..].find(&needle) {
        out.push_str(&text[at..at + found]);
        at += found + needle.len();
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_phrases_are_taken_out_whatever_their_case() {
        let p = GuardPolicy {
            allow: vec!["Ignore previous formatting".into()],
            ..GuardPolicy::from_config(&GuardConfig::default())
        };
        assert_eq!(
            p.without_allowed("Please IGNORE previous formatting and use tables."),
            "Please  and use tables."
        );
        assert_eq!(p.without_allowed("nothing here"), "nothing here");
    }

    #[test]
    fn policies_parse_and_bad_ones_are_refused() {
        let p: GuardPolicy =
            serde_json::from_str(r#"{"input": true, "threshold": 0.8, "action": "flag"}"#).unwrap();
        assert_eq!((p.input, p.context, p.action), (true, false, GuardAction::Flag));
        assert!(p.validate().is_ok());
        assert!(serde_json::from_str::<GuardPolicy>(r#"{"threshold": 0.5, "action": "shout"}"#).is_err());
        let bad = GuardPolicy { threshold: 1.5, ..p };
        assert!(bad.validate().is_err());
    }
}

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
//!
//! With several guards (`--guard` repeated), `combine` says when a text is
//! flagged: `any` guard flags it at its own threshold, `all` do, or the
//! highest of their scores (`max`) reaches `threshold`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::GuardConfig;
use crate::guard_combine::GuardCombine;

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
    /// A guard's own threshold, by model id, in place of `threshold`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, f32>,
    /// How several guards' verdicts combine.
    #[serde(default)]
    pub combine: GuardCombine,
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
            thresholds: config.thresholds.clone(),
            combine: config.combine,
            action: GuardAction::Redact,
            allow: Vec::new(),
        }
    }

    /// Whether any check runs.
    pub fn screens(&self) -> bool {
        self.input || self.context || self.output
    }

    /// The threshold of the guard `id`.
    pub fn threshold_of(&self, id: &str) -> f32 {
        self.thresholds.get(id).copied().unwrap_or(self.threshold)
    }

    /// Refuses a policy that could not work.
    pub fn validate(&self) -> Result<(), String> {
        let named = self
            .thresholds
            .iter()
            .map(|(id, &t)| (format!("thresholds.{id}"), t));
        for (name, t) in std::iter::once(("threshold".to_string(), self.threshold)).chain(named) {
            if !(0.0..=1.0).contains(&t) || t.is_nan() {
                return Err(format!("`{name}` must be within 0 and 1 (got {t})"));
            }
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
        let bad = GuardPolicy {
            threshold: 1.5,
            ..p.clone()
        };
        assert!(bad.validate().is_err());
        let bad: GuardPolicy =
            serde_json::from_str(r#"{"threshold": 0.5, "thresholds": {"trained-guard": 2.0}}"#).unwrap();
        assert!(bad.validate().unwrap_err().contains("thresholds.trained-guard"));
    }

    #[test]
    fn each_guard_may_have_its_own_threshold() {}
}

//! `POST /v1/moderations`, OpenAI's moderation shape backed by the guard.
//!
//! Each text is split into windows of the guard's length; its
//! `prompt_injection` score is the highest, over windows, of the
//! probability that the window is not safe (every label but the first).
//! Classifiers with several unsafe labels (Prompt-Guard's INJECTION and
//! JAILBREAK) also report each label as its own category. ragd
//! extensions on each result: `score` (the `prompt_injection` score) and
//! `threshold` (the score at which a text is flagged: `--guard-threshold`,
//! resolved from the guard's calibration when given as `fpr:RATE`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json as AxumJson;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ragd_service::guard;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::input;
use crate::json::Json;
use crate::state::AppState;

pub const PROMPT_INJECTION: &str = "prompt_injection";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    #[serde(default)]
    pub input: Value,
    pub model: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ModerationResponse {
    pub id: String,
    pub model: String,
    pub results: Vec<ModerationResult>,
}

#[derive(Debug, Serialize)]
pub struct ModerationResult {
    pub flagged: bool,
    pub categories: BTreeMap<String, bool>,
    pub category_scores: BTreeMap<String, f32>,
    /// ragd extension: the injection score, which `flagged` compares.
    pub score: f32,
    /// ragd extension: the threshold it was compared with.
    pub threshold: f32,
}

pub async fn moderations(
    State(state): State<AppState>,
    Authed(tenant): Authed,
    Json(req): Json<ModerationRequest>,
) -> Result<AxumJson<ModerationResponse>, ApiError> {
    let handle = state
        .model_for("guard", |m| m.guard(req.model.as_deref()), req.model.as_deref())?
        .for_tenant(&tenant);
    let inputs = input::parse(&req.input, input::limits(&state.request_limits, false))?;
    let threshold = (state.guard_policy(&tenant)).threshold_of(&handle.info.id);
    let results = guard::window_probs(&handle, inputs, state.guard.max_windows)
        .await?
        .iter()
        .map(|windows| score_text(windows, &handle.labels, threshold))
        .collect();
    Ok(AxumJson(ModerationResponse {
        id: format!("modr-{}", uuid::Uuid::new_v4().simple()),
        model: handle.info.id,
        results,
    }))
}

/// Combines the window probabilities of one text into its result.
fn score_text(windows: &[Vec<f32>], labels: &[String], threshold: f32) -> ModerationResult {
    let max_over = |f: &dyn Fn(&[f32]) -> f32| windows.iter().map(|p| f(p)).fold(0f32, f32::max);
    let injection = guard::injection(windows);
    let mut category_scores = BTreeMap::from([(PROMPT_INJECTION.to_string(), injection)]);
    if labels.len() > 2 {
        for (j, label) in labels.iter().enumerate().skip(1) {
            category_scores.insert(label.to_lowercase(), max_over(&|p| p[j]));
        }
    }
    let categories = category_scores
        .iter()
        .map(|(k, &v)| (k.clone(), v >= threshold))
        .collect();
    ModerationResult {
        flagged: injection >= threshold,
        categories,
        category_scores,
        score: injection,
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_worst_window_decides() {
        let r = score_text(
            &[vec![0.9, 0.1], vec![0.2, 0.8]],
            &labels(&["safe", "injection"]),
            0.5,
        );
        assert!(r.flagged);
        assert_eq!(r.category_scores[PROMPT_INJECTION], 0.8);
        assert_eq!(r.categories.len(), 1);
        assert_eq!((r.score, r.threshold), (0.8, 0.5));
    }

    #[test]
    fn several_unsafe_labels_add_up_and_are_reported() {
        let r = score_text(
            &[vec![0.4, 0.3, 0.3]],
            &labels(&["BENIGN", "INJECTION", "JAILBREAK"]),
            0.5,
        );
        assert!(r.flagged);
        assert!((r.category_scores[PROMPT_INJECTION] - 0.6).abs() < 1e-6);
        assert!(!r.categories["jailbreak"]);
    }
}

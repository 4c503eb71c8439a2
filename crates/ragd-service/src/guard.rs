//! The prompt-injection guard, shared by `/v1/moderations` and the chat
//! path (`--guard-chat`).
//!
//! On the chat path the last user message is scored while retrieval runs; a
//! flagged message is refused (400, `prompt_injection_detected`) before
//! anything reaches the generator. Retrieved chunks are scored before they
//! go into the prompt: flagged ones are left out and listed in
//! `blocked_sources`, so a poisoned document cannot steer the answer.
//!
//! Several guards (`--guard` repeated) score each text side by side; the
//! policy's `combine` makes one verdict of theirs.

use tracing::Instrument;

use serde::Serialize;

use crate::config::GuardConfig;
use crate::embedding::{tokenize_and_frame, Input};
use crate::error::ServiceError;
use crate::guard_policy::{GuardAction, GuardPolicy};
use crate::metrics::GuardMetrics;
use crate::models::ModelHandle;

/// Class probabilities of every window of every input (texts longer than
/// the guard's length are split into windows). At most `max_windows` are
/// scored for one request: each costs a full forward pass (about 135 ms on
/// 2 cores for NanoGuard), so one 64 KB input would otherwise cost 30
/// CPU-seconds. Past it, 400 before any forward pass.
pub async fn window_probs(
    handle: &ModelHandle,
    inputs: Vec<Input>,
    max_windows: usize,
) -> Result<Vec<Vec<Vec<f32>>>, ServiceError> {
    let windows = tokenize_and_frame(inputs, handle.tokenizer.clone(), handle.info.framing.clone()).await?;
    let counts: Vec<usize> = windows.iter().map(Vec::len).collect();
    let total: usize = counts.iter().sum();
    if total > max_windows {
        return Err(ServiceError::invalid(
            format!(
                "the input is too long for the guard: {total} windows of {} tokens; at most {max_windows} are scored per request",
                handle.info.framing.max_len
            ),
            "input",
        ));
    }
    let probs = handle.worker.run(windows.into_iter().flatten().collect()).await?;
    let mut probs = probs.into_iter();
    Ok(counts
        .into_iter()
        .map(|n| probs.by_ref().take(n).collect())
        .collect())
}

/// A text's injection score: the highest, over its windows, of the
/// probability that the window is not safe (every label but the first).
pub fn injection(windows: &[Vec<f32>]) -> f32 {
    windows
        .iter()
        .map(|p| p[1..].iter().sum::<f32>())
        .fold(0f32, f32::max)
}

/// The injection score of each text.
pub async fn injection_scores(
    handle: &ModelHandle,
    texts: Vec<String>,
    max_windows: usize,
) -> Result<Vec<f32>, ServiceError> {
    let inputs = texts.into_iter().map(Input::Text).collect();
    let windows = window_probs(handle, inputs, max_windows).await?;
    Ok(windows.iter().map(|w| injection(w)).collect())
}

/// The guard as the chat path uses it: the models (queued as the
/// request's tenant), the tenant's policy, the server's window budget and
/// the block counters.
#[derive(Clone)]
pub struct Guard {
    /// At least one.
    pub handles: Vec<ModelHandle>,
    pub policy: GuardPolicy,
    pub config: GuardConfig,
    pub metrics: GuardMetrics,
}

/// A text the guard flagged that the policy let through (`flag`), as the
/// response lists it in `guard_flags`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardFlag {
    /// `input`, `context` or `output`.
    pub stage: &'static str,
    pub score: f32,
    /// The flagged chunk's document (stage `context`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_id: Option<String>,
}

impl Guard {
    /// The verdict on each text, `Some(score)` when flagged: every guard
    /// scores it at once (the policy's allowed phrases taken out first),
    /// and the policy combines their scores.
    async fn verdicts(
        &self,
        texts: Vec<String>,
        max_windows: usize,
        stage: &'static str,
    ) -> Result<Vec<Option<f32>>, ServiceError> {
        let texts: Vec<String> = texts.iter().map(|t| self.policy.without_allowed(t)).collect();
        let per_guard = self.handles.iter().map(|handle| {
            let span = tracing::info_span!("guard", stage, model = %handle.info.id);
            injection_scores(handle, texts.clone(), max_windows).instrument(span)
        });
        let per_guard = futures::future::try_join_all(per_guard).await?;
        let thresholds: Vec<f32> = (self.handles.iter())
            .map(|h| self.policy.threshold_of(&h.info.id))
            .collect();
        Ok((0..texts.len())
            .map(|i| {
                let scores: Vec<(f32, f32)> = per_guard
                    .iter()
                    .map(|s| s[i])
                    .zip(thresholds.iter().copied())
                    .collect();
                self.policy.combine.verdict(&scores, self.policy.threshold)
            })
            .collect())
    }

    /// The question's verdict: refused (`block`, `redact`) or let through
    /// with a flag (`flag`) when flagged.
    pub async fn check_input(&self, text: String) -> Result<Option<GuardFlag>, ServiceError> {
        let verdict = self
            .verdicts(vec![text], self.config.max_windows, "input")
            .await?[0];
        let Some(score) = verdict else {
            return Ok(None);
        };
        if self.policy.action == GuardAction::Flag {
            self.metrics.flags.with_label_values(&["input"]).inc();
            return Ok(Some(GuardFlag {
                stage: "input",
                score,
                document_id: None,
            }));
        }
        self.metrics.blocks.with_label_values(&["input"]).inc();
        Err(ServiceError::Blocked(format!(
            "the last user message was flagged as a prompt injection (score {score:.3}) and was not sent to the model"
        )))
    }

    /// One verdict per retrieved text: `Some(score)` for a flagged one,
    /// `None` for one that may go in. What a flag does is the caller's.
    pub async fn screen(&self, texts: Vec<String>) -> Result<Vec<Option<f32>>, ServiceError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Retrieved chunks are each at most one embedder window long and
        // their number is bounded by `max_top_k`: no budget of their own.
        self.verdicts(texts, usize::MAX, "context").await
    }

    /// The answer's score when flagged.
    pub async fn check_output(&self, text: String) -> Result<Option<f32>, ServiceError> {
        Ok(self
            .verdicts(vec![text], self.config.max_windows, "output")
            .await?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_window_decides_and_unsafe_labels_add_up() {
        assert_eq!(injection(&[vec![0.9, 0.1], vec![0.2, 0.8]]), 0.8);
        assert!((injection(&[vec![0.4, 0.3, 0.3]]) - 0.6).abs() < 1e-6);
        assert_eq!(injection(&[]), 0.0);
    }
}

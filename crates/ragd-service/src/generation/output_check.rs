//! Checks of a chat answer while it is generated: the canary of a RAG
//! prompt must never come out (a system-prompt leak), and the guard
//! scores the finished answer. Text is held back by one canary's length
//! less one, so a canary split over pieces is caught before any of it is
//! sent; a leak or a flagged answer ends the choice with
//! `finish_reason: "content_filter"`.

use crate::error::ServiceError;
use crate::guard::Guard;
use crate::guard_policy::GuardAction;

/// What an answer is checked for.
#[derive(Clone, Default)]
pub struct OutputCheck {
    /// The marker placed in the prompt (RAG requests).
    pub canary: Option<String>,
    /// The guard, when the tenant's policy screens answers.
    pub guard: Option<Guard>,
}

/// What the check says of a piece or of the whole answer.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Send this text (possibly shorter than what came in: the rest is
    /// held back).
    Pass(String),
    /// The answer is withheld from here on.
    Withhold,
    /// Let through, flagged with this score (a `flag` policy).
    Flagged(String, f32),
}

pub(crate) struct OutputFilter {
    check: OutputCheck,
    held: String,
    answer: String,
}

impl OutputFilter {
    pub(crate) fn new(check: OutputCheck) -> Self {
        Self {
            check,
            held: String::new(),
            answer: String::new(),
        }
    }

    /// New text of the answer: what may be sent now.
    pub(crate) fn push(&mut self, text: &str) -> Verdict {
        self.held.push_str(text);
        self.answer.push_str(text);
        let Some(canary) = self.check.canary.as_deref().filter(|c| !c.is_empty()) else {
            return Verdict::Pass(std::mem::take(&mut self.held));
        };
        if self.held.contains(canary) {
            self.count_block();
            return Verdict::Withhold;
        }
        let mut cut = self.held.len().saturating_sub(canary.len() - 1);
        while !self.held.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.held.split_off(cut);
        Verdict::Pass(std::mem::replace(&mut self.held, rest))
    }

    /// The answer is complete: the held-back text, if the guard lets it out.
    pub(crate) async fn finish(&mut self) -> Result<Verdict, ServiceError> {
        let rest = std::mem::take(&mut self.held);
        let Some(guard) = &self.check.guard else {
            return Ok(Verdict::Pass(rest));
        };
        let Some(score) = guard.check_output(self.answer.clone()).await? else {
            return Ok(Verdict::Pass(rest));
        };
        if guard.policy.action == GuardAction::Flag {
            guard.metrics.flags.with_label_values(&["output"]).inc();
            return Ok(Verdict::Flagged(rest, score));
        }
        self.count_block();
        Ok(Verdict::Withhold)
    }

    fn count_block(&self) {
        if let Some(guard) = &self.check.guard {
            guard.metrics.blocks.with_label_values(&["output"]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(canary: &str) -> OutputFilter {
        OutputFilter::new(OutputCheck {
            canary: Some(canary.into()),
            guard: None,
        })
    }

    #[test]
    fn a_canary_split_over_pieces_never_gets_out() {
        let mut f = filter("CANARY42");
        let mut sent = String::new();
        for piece in ["The answer is ", "CAN", "ARY", "42 and more"] {
            match f.push(piece) {
                Verdict::Pass(text) => sent.push_str(&text),
                Verdict::Withhold => {
                    assert!(!sent.contains("CAN"), "{sent}");
                    return;
                }
                Verdict::Flagged(..) => unreachable!(),
            }
        }
        panic!("the canary was not caught: {sent}");
    }

    #[tokio::test]
    async fn text_without_the_canary_all_comes_out() {
        let mut f = filter("CANARY42");
        let mut sent = String::new();
        for piece in ["Paris is ", "the capital ", "of France. ÉÀ"] {
            if let Verdict::Pass(text) = f.push(piece) {
                sent.push_str(&text);
            }
        }
        if let Ok(Verdict::Pass(rest)) = f.finish().await {
            sent.push_str(&rest);
        }
        assert_eq!(sent, "Paris is the capital of France. ÉÀ");
    }
}

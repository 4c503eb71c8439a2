//! One choice of a completion: engine tokens turned into text pieces, with
//! stop strings applied across token boundaries and never sent.

use std::sync::Arc;

use ragd_core::TextTokenizer;
use ragd_engine::sampling::TokenLogprob;
use ragd_engine::text_stream::{IncrementalDecoder, StopMatcher};
use ragd_engine::{FinishReason, GenerationEvent, GenerationStream};

use super::output_check::{OutputCheck, OutputFilter, Verdict};
use crate::error::ServiceError;

/// A token's logprob with its text, for the response's `logprobs`.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<(String, f32)>,
}

/// What a choice produced since the last piece.
#[derive(Debug, Clone, Default)]
pub struct Piece {
    pub text: String,
    pub logprobs: Vec<TokenInfo>,
    /// `stop`, `length` or `content_filter` on the last piece.
    pub finish_reason: Option<&'static str>,
    /// The answer's guard score, on the last piece, when the guard flagged
    /// it and the tenant's policy let it through.
    pub flagged: Option<f32>,
}

/// Drives one engine stream. Dropping it cancels the generation.
pub struct Choice {
    stream: Option<GenerationStream>,
    tokenizer: Arc<dyn TextTokenizer>,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    pub completion_tokens: usize,
    /// Prompt tokens the engine found in its prefix cache.
    pub cached_tokens: usize,
    /// When the first token came (for `Server-Timing`'s `ttft`).
    first_token: Option<std::time::Instant>,
    /// Checks of the answer (canary, guard) before its text goes out.
    output: Option<OutputFilter>,
}

impl Choice {
    pub fn new(stream: GenerationStream, tokenizer: Arc<dyn TextTokenizer>, stop: Vec<String>) -> Self {
        Self {
            stream: Some(stream),
            tokenizer,
            decoder: IncrementalDecoder::new(),
            stop: StopMatcher::new(stop),
            completion_tokens: 0,
            cached_tokens: 0,
            first_token: None,
            output: None,
        }
    }

    /// The same choice with its answer checked before it goes out.
    pub fn checked(mut self, check: OutputCheck) -> Self {
        self.output = Some(OutputFilter::new(check));
        self
    }

    fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode_text(ids).unwrap_or_default()
    }

    fn token_info(&self, id: u32, lp: TokenLogprob) -> TokenInfo {
        TokenInfo {
            token: self.decode(&[id]),
            logprob: lp.logprob,
            top: lp.top.iter().map(|&(t, l)| (self.decode(&[t]), l)).collect(),
        }
    }

    /// The next piece with text or a finish reason; None once finished.
    /// With an output check, text is held back until it is known safe, and
    /// a leak or a flagged answer ends the choice with `content_filter`.
    pub async fn next(&mut self) -> Option<Result<Piece, ServiceError>> {
        loop {
            let mut piece = match self.next_unchecked().await? {
                Ok(piece) => piece,
                Err(e) => return Some(Err(e)),
            };
            let Some(filter) = self.output.as_mut() else {
                return Some(Ok(piece));
            };
            let mut verdict = filter.push(&piece.text);
            if piece.finish_reason.is_some() {
                if let Verdict::Pass(sent) = verdict {
                    verdict = match filter.finish().await {
                        Ok(Verdict::Pass(rest)) => Verdict::Pass(sent + &rest),
                        Ok(Verdict::Flagged(rest, score)) => Verdict::Flagged(sent + &rest, score),
                        Ok(Verdict::Withhold) => Verdict::Withhold,
                        Err(e) => return Some(Err(e)),
                    };
                }
            }
            match verdict {
                Verdict::Pass(text) => piece.text = text,
                Verdict::Flagged(text, score) => (piece.text, piece.flagged) = (text, Some(score)),
                Verdict::Withhold => {
                    // Dropping the stream stops the generation.
                    self.stream = None;
                    self.output = None;
                    piece.text.clear();
                    piece.finish_reason = Some("content_filter");
                    return Some(Ok(piece));
                }
            }
            if !piece.text.is_empty() || piece.finish_reason.is_some() {
                return Some(Ok(piece));
            }
        }
    }

    async fn next_unchecked(&mut self) -> Option<Result<Piece, ServiceError>> {
        let mut piece = Piece::default();
        loop {
            let stream = self.stream.as_mut()?;
            let event = stream.next().await;
            self.cached_tokens = stream.cached_tokens();
            let tokenizer = self.tokenizer.clone();
            let decode = move |ids: &[u32]| tokenizer.decode_text(ids).unwrap_or_default();
            match event {
                Some(GenerationEvent::Token { id, logprobs }) => {
                    self.completion_tokens += 1;
                    self.first_token.get_or_insert_with(std::time::Instant::now);
                    if let Some(lp) = logprobs {
                        piece.logprobs.push(self.token_info(id, lp));
                    }
                    let delta = self.decoder.push(id, &decode);
                    let step = self.stop.push(&delta);
                    piece.text.push_str(&step.text);
                    if step.stopped {
                        // Dropping the stream cancels the rest of the generation.
                        self.stream = None;
                        piece.finish_reason = Some("stop");
                        return Some(Ok(piece));
                    }
                    if !piece.text.is_empty() {
                        return Some(Ok(piece));
                    }
                }
                Some(GenerationEvent::Finished { reason, .. }) => {
                    self.stream = None;
                    let rest = self.decoder.finish(&decode);
                    let step = self.stop.push(&rest);
                    piece.text.push_str(&step.text);
                    let stopped = step.stopped;
                    if !stopped {
                        piece.text.push_str(&self.stop.flush());
                    }
                    piece.finish_reason = Some(match reason {
                        _ if stopped => "stop",
                        FinishReason::Length => "length",
                        _ => "stop",
                    });
                    return Some(Ok(piece));
                }
                Some(GenerationEvent::Failed(message)) => {
                    self.stream = None;
                    return Some(Err(ServiceError::Internal(message)));
                }
                None => {
                    self.stream = None;
                    return Some(Err(ServiceError::Unavailable("the generator stopped".into())));
                }
            }
        }
    }

    /// Every piece to the end, joined (non-streaming responses), with the
    /// token count, the prompt tokens found in the prefix cache and when the
    /// first token came.
    pub async fn collect(mut self) -> Result<(Piece, [usize; 2], Option<std::time::Instant>), ServiceError> {
        let mut all = Piece::default();
        while let Some(piece) = self.next().await {
            let piece = piece?;
            all.text.push_str(&piece.text);
            all.logprobs.extend(piece.logprobs);
            all.finish_reason = piece.finish_reason.or(all.finish_reason);
            all.flagged = piece.flagged.or(all.flagged);
        }
        // A withheld answer is withheld whole.
        if all.finish_reason == Some("content_filter") {
            all.text.clear();
            all.logprobs.clear();
        }
        Ok((
            all,
            [self.completion_tokens, self.cached_tokens],
            self.first_token,
        ))
    }
}

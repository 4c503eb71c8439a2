//! One choice of a completion: engine tokens turned into text pieces, with
//! stop strings applied across token boundaries and never sent.

use std::sync::Arc;

use ragd_core::TextTokenizer;
use ragd_engine::sampling::TokenLogprob;
use ragd_engine::text_stream::{IncrementalDecoder, StopMatcher};
use ragd_engine::{FinishReason, GenerationEvent, GenerationStream};

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
    /// `stop` or `length` on the last piece.
    pub finish_reason: Option<&'static str>,
}

/// Drives one engine stream. Dropping it cancels the generation.
pub struct Choice {
    stream: Option<GenerationStream>,
    tokenizer: Arc<dyn TextTokenizer>,
    decoder: IncrementalDecoder,
    stop: StopMatcher,
    pub completion_tokens: usize,
    /// When the first token came (for `Server-Timing`'s `ttft`).
    first_token: Option<std::time::Instant>,
}

impl Choice {
    pub fn new(stream: GenerationStream, tokenizer: Arc<dyn TextTokenizer>, stop: Vec<String>) -> Self {
        Self {
            stream: Some(stream),
            tokenizer,
            decoder: IncrementalDecoder::new(),
            stop: StopMatcher::new(stop),
            completion_tokens: 0,
            first_token: None,
        }
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
    pub async fn next(&mut self) -> Option<Result<Piece, ServiceError>> {
        let mut piece = Piece::default();
        loop {
            let event = self.stream.as_mut()?.next().await;
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
    /// token count and when the first token came.
    pub async fn collect(mut self) -> Result<(Piece, usize, Option<std::time::Instant>), ServiceError> {
        let mut all = Piece::default();
        while let Some(piece) = self.next().await {
            let piece = piece?;
            all.text.push_str(&piece.text);
            all.logprobs.extend(piece.logprobs);
            all.finish_reason = piece.finish_reason.or(all.finish_reason);
        }
        Ok((all, self.completion_tokens, self.first_token))
    }
}

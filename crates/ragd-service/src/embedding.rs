//! Text to vectors: the one path through the embedder's batch worker,
//! shared by `/v1/embeddings`, document ingestion, search queries and the
//! semantic cache.

use std::sync::Arc;

use ragd_core::{Framing, TextTokenizer};
use ragd_engine::BatchLimits;
use tracing::Instrument;

use crate::error::ServiceError;
use crate::models::ModelHandle;

/// One input item.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Tokens(Vec<u32>),
}

/// Tokenizes (on the blocking pool: long texts are CPU work) and frames
/// every input. Returns, per input, the framed sequences (one for an
/// embedder, one or more windows for a classifier).
pub async fn tokenize_and_frame(
    inputs: Vec<Input>,
    tokenizer: Arc<dyn TextTokenizer>,
    framing: Framing,
) -> Result<Vec<Vec<Vec<u32>>>, ServiceError> {
    let span = tracing::debug_span!("tokenize", inputs = inputs.len());
    tokio::task::spawn_blocking(move || {
        let vocab = tokenizer.vocab_size();
        inputs
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let ids = match item {
                    Input::Text(s) => tokenizer.encode(&s)?,
                    Input::Tokens(ids) => {
                        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                            return Err(ServiceError::invalid(
                                format!("`input[{i}]` has token id {bad}, outside the vocabulary of {vocab}"),
                                "input",
                            ));
                        }
                        ids
                    }
                };
                Ok(framing.frame(&ids))
            })
            .collect()
    })
    .instrument(span)
    .await
    .map_err(|e| ServiceError::task("tokenizer", e))?
}

/// Embeds `inputs` with the embedder `handle`: tokenized on the blocking
/// pool, framed, and sent to its batch worker in pieces that fit one batch,
/// one after the other (so other requests get their turn in between, and
/// a large request never becomes one oversized forward pass). This is the
/// one path from text to vectors: `/v1/embeddings`, document ingestion and
/// search queries all use it. Returns one vector per input and the number
/// of tokens embedded.
pub async fn embed(handle: &ModelHandle, inputs: Vec<Input>) -> Result<(Vec<Vec<f32>>, usize), ServiceError> {
    let span = tracing::info_span!(
        "embed",
        gen_ai.request.model = %handle.info.id,
        inputs = inputs.len() as i64,
        gen_ai.usage.input_tokens = tracing::field::Empty,
    );
    let (vectors, tokens) = embed_pieces(handle, inputs).instrument(span.clone()).await?;
    span.record("gen_ai.usage.input_tokens", tokens as i64);
    Ok((vectors, tokens))
}

async fn embed_pieces(
    handle: &ModelHandle,
    inputs: Vec<Input>,
) -> Result<(Vec<Vec<f32>>, usize), ServiceError> {
    let seqs: Vec<Vec<u32>> =
        tokenize_and_frame(inputs, handle.tokenizer.clone(), handle.info.framing.clone())
            .await?
            .into_iter()
            .flatten()
            .collect();
    let tokens: usize = seqs.iter().map(Vec::len).sum();
    let mut vectors = Vec::with_capacity(seqs.len());
    for piece in pieces(seqs, &handle.batch) {
        vectors.extend(handle.worker.run(piece).await?);
    }
    Ok((vectors, tokens))
}

/// Splits `seqs`, in order, into pieces within the batch budget (a
/// sequence over the budget alone is a piece of its own).
pub(crate) fn pieces(seqs: Vec<Vec<u32>>, limits: &BatchLimits) -> Vec<Vec<Vec<u32>>> {
    let mut out: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut tokens = 0;
    for seq in seqs {
        let n = seq.len();
        match out.last_mut() {
            Some(p) if p.len() < limits.max_batch_seqs && tokens + n <= limits.max_batch_tokens => {
                p.push(seq);
                tokens += n;
            }
            _ => {
                out.push(vec![seq]);
                tokens = n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_respect_the_batch_budget_and_keep_the_order() {
        let limits = BatchLimits {
            queue_capacity: 8,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 10,
            max_batch_seqs: 3,
        };
        let seqs: Vec<Vec<u32>> = [4, 4, 4, 1, 1, 1, 1, 12, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| vec![i as u32; n])
            .collect();
        let got = pieces(seqs.clone(), &limits);
        let lens: Vec<Vec<usize>> = got.iter().map(|p| p.iter().map(Vec::len).collect()).collect();
        assert_eq!(
            lens,
            vec![vec![4, 4], vec![4, 1, 1], vec![1, 1], vec![12], vec![2]]
        );
        assert_eq!(got.into_iter().flatten().collect::<Vec<_>>(), seqs);
        assert!(pieces(Vec::new(), &limits).is_empty());
    }
}

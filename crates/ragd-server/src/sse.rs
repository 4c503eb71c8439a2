//! Server-sent events for streamed completions: the choices run
//! concurrently, each piece becomes one `data:` chunk, then the optional
//! usage chunk and `data: [DONE]`. A client that goes away stops the task,
//! which drops the choices and so cancels their generations.

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use ragd_service::generation::{Choice, Piece};
use ragd_service::Usage;

/// How an endpoint shapes its chunks.
pub trait ChunkFormat: Send + 'static {
    /// Sent for every choice before any text (chat: the assistant role).
    fn opening(&self, index: usize) -> Option<Value>;
    fn piece(&self, index: usize, piece: &Piece) -> Value;
    /// The final chunk with `usage` (when the client asked for it).
    fn usage(&self, usage: Usage) -> Value;
}

/// Starts the choices and returns the SSE response that streams them.
pub fn sse<F: ChunkFormat>(
    choices: Vec<Choice>,
    prompt_tokens: usize,
    include_usage: bool,
    format: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(run(choices, prompt_tokens, include_usage, format, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// A stream of events known in advance (an answer generated whole).
pub fn replay(events: Vec<Event>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    Sse::new(futures::stream::iter(events.into_iter().map(Ok)))
}

/// Chat chunks known in advance, then `data: [DONE]`.
pub fn replay_chunks(chunks: &[Value]) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    replay(
        chunks
            .iter()
            .map(data)
            .chain([Event::default().data("[DONE]")])
            .collect(),
    )
}

/// One JSON chunk as an event.
pub fn data(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

async fn run<F: ChunkFormat>(
    choices: Vec<Choice>,
    prompt_tokens: usize,
    include_usage: bool,
    format: F,
    tx: mpsc::Sender<Event>,
) {
    for i in 0..choices.len() {
        if let Some(v) = format.opening(i) {
            if tx.send(data(&v)).await.is_err() {
                return;
            }
        }
    }
    let mut tokens = vec![0usize; choices.len()];
    // Prompt tokens found in the prefix cache (the choices share the prompt).
    let mut cached = 0;
    let streams = choices.into_iter().enumerate().map(|(i, c)| {
        Box::pin(futures::stream::unfold(Some(c), move |c| async move {
            let mut c = c?;
            let piece = c.next().await?;
            let counts = (c.completion_tokens, c.cached_tokens);
            Some(((i, piece, counts), Some(c)))
        }))
    });
    let mut all = futures::stream::select_all(streams);
    while let Some((i, piece, (n, n_cached))) = all.next().await {
        tokens[i] = n;
        cached = cached.max(n_cached);
        let event = match piece {
            Ok(piece) => data(&format.piece(i, &piece)),
            Err(e) => {
                let body = serde_json::json!({"error": {"message": e.to_string(), "type": "server_error"}});
                let _ = tx.send(data(&body)).await;
                return;
            }
        };
        if tx.send(event).await.is_err() {
            return; // the client left: dropping `all` cancels the choices
        }
    }
    if include_usage {
        let usage = Usage::completion(prompt_tokens, tokens.iter().sum(), cached);
        if tx.send(data(&format.usage(usage))).await.is_err() {
            return;
        }
    }
    let _ = tx.send(Event::default().data("[DONE]")).await;
}

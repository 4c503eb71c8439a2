//! The prompts of `ragd bench generate`: a request number, then about the
//! requested number of tokens of fixed English text; or, RAG-shaped, the
//! same sources for every request of a run, then a numbered question.

const WORDS: &str = "Retrieval augmented generation answers a question in two steps. First a search \
    engine finds the passages of a document collection that are closest in meaning to the question, \
    using dense vectors from an embedding model and an approximate nearest neighbour index. Then a \
    language model reads those passages together with the question and writes an answer that cites \
    them. The quality of the answer depends on both steps: a passage that is never retrieved cannot \
    be used, and a model that ignores its context will invent facts. Engineers therefore measure \
    recall of the retriever, faithfulness of the generator and the latency of the whole pipeline, \
    because users notice a slow first word more than a slow last one. Batching many requests \
    together keeps the hardware busy, while streaming tokens as they are produced keeps each user \
    informed that work is progressing.";

/// Words per token of [`WORDS`]: SmolLM2's tokenizer (Llama-style BPE)
/// counts 110 tokens for a 96-word prompt, so 0.87 words per token lands
/// near the requested length; other tokenizers differ by some percent.
const WORDS_PER_TOKEN: f64 = 0.87;

/// The prompt of request `id`: its number, then about `tokens` tokens of
/// English, the same text for every request after the number. `id` includes
/// a per-run prefix so a server's prompt cache does not serve a rerun either.
pub fn prompt(id: &str, tokens: usize) -> String {
    let mut out = format!("Request {id}.");
    push_words(&mut out, tokens, 2);
    out
}

/// A RAG-shaped prompt: about `shared_tokens` tokens of sources, the same
/// for every request of run `run` (what a prefix cache can hold), then
/// question `id` of about `question_tokens` tokens.
pub fn rag_prompt(run: u64, id: u64, shared_tokens: usize, question_tokens: usize) -> String {
    let mut out = format!("Answer from the sources of run {run}.\nSources:");
    push_words(&mut out, shared_tokens, 8);
    out.push_str(&format!("\nQuestion {id}:"));
    push_words(&mut out, question_tokens, 2);
    out
}

/// Questions about ragd's own docs, for RAG requests: plain questions a
/// guard should let through (a request number followed by bench text
/// reads like an injection to NanoGuard).
const QUESTIONS: [&str; 16] = [
    "How does ragd batch requests from many clients?",
    "Which models does ragd run by default?",
    "How are API keys mapped to tenants?",
    "What does the prefix cache store?",
    "Which endpoints does ragd serve?",
    "Which metrics does ragd export for Prometheus?",
    "What happens when the request queue is full?",
    "How does hybrid search combine dense and lexical results?",
    "What is the default chunk size of a collection?",
    "How can a tenant change its guard policy?",
    "How does the knowledge base survive a restart?",
    "Where are the benchmark results kept?",
    "What does the reranker do in a RAG request?",
    "How do upstream fallbacks work when the generator is busy?",
    "Which document formats can be uploaded?",
    "How is a streamed answer checked for a leaked canary?",
];

/// The question of RAG request `id` of run `run`: one of [`QUESTIONS`]
/// after its number, so no cache can answer it.
pub fn rag_question(run: u64, id: u64) -> String {
    format!("Request {run}-{id}. {}", QUESTIONS[id as usize % QUESTIONS.len()])
}

/// Appends about `tokens` tokens of [`WORDS`], less `taken` words already
/// spent on a header.
fn push_words(out: &mut String, tokens: usize, taken: usize) {
    let n_words = ((tokens as f64) * WORDS_PER_TOKEN).round().max(1.0) as usize;
    for w in WORDS
        .split_whitespace()
        .cycle()
        .take(n_words.saturating_sub(taken))
    {
        out.push(' ');
        out.push_str(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_differ_and_have_the_requested_length() {
        let (a, b) = (prompt("7-0", 128), prompt("7-1", 128));
        assert_ne!(a, b);
        assert_eq!(a.split_whitespace().count(), 111);
        assert!(a.starts_with("Request 7-0. Retrieval"));
        assert_eq!(prompt("3", 1), "Request 3.");
    }

    #[test]
    fn rag_prompts_share_their_sources_within_a_run() {
        let (a, b) = (rag_prompt(7, 0, 1000, 24), rag_prompt(7, 1, 1000, 24));
        let split = |p: &str| {
            p.split_once("\nQuestion")
                .map(|(s, q)| (s.to_string(), q.to_string()))
                .unwrap()
        };
        let ((sa, qa), (sb, qb)) = (split(&a), split(&b));
        assert_eq!(sa, sb);
        assert_ne!(qa, qb);
        assert_ne!(
            split(&rag_prompt(8, 0, 1000, 24)).0,
            sa,
            "another run, other sources"
        );
        assert_eq!(sa.split_whitespace().count(), 870);
        // "Question" went with the split: " 0:" and 19 words remain.
        assert_eq!(qa.split_whitespace().count(), 20);
    }
}

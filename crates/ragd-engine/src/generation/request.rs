//! The plain types of a generation request and of what comes back.

use crate::sampling::{SamplingParams, TokenLogprob};

/// Bounds of the generation engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationLimits {
    /// Requests that may wait to start; one more is refused with
    /// `EngineError::Overloaded`. (Preempted sequences going back to the
    /// queue do not count.)
    pub queue_capacity: usize,
    /// Requests one tenant may have waiting to start; one more from that
    /// tenant is refused with `EngineError::Overloaded` (`tenant_share`)
    /// while other tenants are still admitted. `None`: a quarter of
    /// `queue_capacity`, at least 1. Requests submitted without a tenant
    /// are held to `queue_capacity` only.
    pub per_tenant_queue_capacity: Option<usize>,
    /// Most tokens fed to the model in one step: one per decoding sequence
    /// plus the prefill chunks. At least 1.
    pub max_batch_tokens: usize,
    /// Most sequences running (holding KV blocks) at once. At least 1, and
    /// at most `max_batch_tokens` (so each running stream gets a token every
    /// step).
    pub max_running: usize,
    /// Automatic prefix caching: full KV blocks stay cached (by content,
    /// salted with the tenant, so tenants never share) after their request
    /// ends, and a request whose prompt starts with its tenant's cached
    /// blocks prefills only the rest. Evicted least recently used when
    /// blocks run out.
    pub prefix_cache: bool,
}

impl Default for GenerationLimits {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            per_tenant_queue_capacity: None,
            max_batch_tokens: 256,
            max_running: 64,
            prefix_cache: true,
        }
    }
}

impl GenerationLimits {
    /// The per-tenant cap in effect (see `per_tenant_queue_capacity`).
    pub fn per_tenant_capacity(&self) -> usize {
        self.per_tenant_queue_capacity
            .unwrap_or_else(|| crate::fair::default_share(self.queue_capacity))
    }
}

/// One completion to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// The prompt's token ids (chat template already applied); not empty.
    pub prompt: Vec<u32>,
    /// Most tokens to generate: at least 1, and `prompt.len() + max_tokens`
    /// must fit the model's context and the whole KV cache. `None`: up to
    /// the end of the context.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    /// Tokens that end the completion (EOS, end of turn). A stop token ends
    /// it with [`FinishReason::Stop`] and is not emitted as a token.
    pub stop_tokens: Vec<u32>,
    /// Ignore `stop_tokens` and always generate `max_tokens` tokens
    /// (benchmarks).
    pub ignore_eos: bool,
    /// Structured output: which tokens may come next (`None`: any).
    pub constraint: Option<crate::Constraint>,
    /// Admission priority, as vLLM's: lower values start earlier; 0 is the
    /// default. Waiting requests are grouped by priority, the best group
    /// first (round-robin across tenants within one), and a group passed
    /// over too often goes next, so worse priorities are slowed, not
    /// starved. It only orders admission: a running request is never
    /// preempted for a better one (see the scheduler's docs).
    pub priority: i32,
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was generated.
    Stop,
    /// `max_tokens` or the model's context was reached.
    Length,
    /// The caller went away (the stream was dropped). Never sent: there is
    /// nobody to send it to; it names the reason in logs.
    Cancelled,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Tokens the model generated, the stop token included (as vLLM and
    /// OpenAI bill it), so it can be one more than the `Token` events.
    pub completion_tokens: usize,
    /// Prompt tokens found in the prefix cache (not prefilled).
    pub cached_tokens: usize,
}

/// What a [`GenerationStream`](super::GenerationStream) yields: tokens in
/// order, then exactly one `Finished` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    Token {
        id: u32,
        logprobs: Option<TokenLogprob>,
    },
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
    /// The model failed on a step this request was in.
    Failed(String),
}

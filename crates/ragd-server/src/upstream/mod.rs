//! Other OpenAI-compatible servers ragd falls back to (another ragd, vLLM,
//! llama-server, a hosted API) when its own generator is overloaded,
//! fails or is too slow, or that serve models ragd does not run.
//!
//! Each model has a route: an ordered list of targets (`local` and
//! upstream names), from `--route MODEL=local,NAME` or, by default, local
//! first (when ragd runs the model) and then every upstream serving it.
//! Each target is tried with bounded retries (exponential backoff with
//! jitter, honouring `Retry-After`) behind its own circuit breaker. The
//! guard and retrieval always run here before the hop; the upstream gets
//! ragd's key, never the caller's.

mod forward;
mod metrics;
mod routing;

pub use forward::{Answer, Forwarded};
pub use routing::{mark_served_by, Target, Upstream, Upstreams, SERVED_BY};

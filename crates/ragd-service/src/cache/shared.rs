//! A response cache shared by replicas (Redis in `ragd serve
//! --redis-url`), asked when the local cache misses and given every answer
//! the local one stores. This crate only knows the trait: the store, its
//! connection, timeouts and metrics live at the server's edge.
//!
//! A shared store may be unreachable at any time: `get` then says
//! [`Unavailable`] and `put` drops the entry, and the local cache answers
//! alone. Implementations bound every call by a short timeout, so a hung
//! store slows no request by more than that.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The shared store could not be asked (down, slow, or failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// A boxed future of a shared store's answer.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a cached answer lives in the shared store: its tenant and model
/// (a namespace an operator can list or clear) and the request's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKey {
    pub tenant: String,
    pub model: String,
    /// Lowercase hex of the request's SHA-256 (which covers the tenant and
    /// the model too).
    pub digest: String,
}

/// A cache of response bodies (JSON text) shared by replicas.
pub trait SharedCache: Send + Sync {
    /// The body stored under `key`, `Ok(None)` when there is none.
    fn get<'a>(&'a self, key: &'a SharedKey) -> StoreFuture<'a, Result<Option<Arc<str>>, Unavailable>>;
    /// Stores `body` under `key` for `ttl` (best effort: a failure only
    /// means a later miss).
    fn put<'a>(&'a self, key: &'a SharedKey, body: Arc<str>, ttl: Duration) -> StoreFuture<'a, ()>;
}

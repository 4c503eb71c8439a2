//! How the load generators talk to the server under test, so that they
//! measure the server and not their own connection handling: one fresh
//! connection per request ([`Endpoint`]), one retry of a request whose
//! connection closed before any of the response arrived ([`send`]), and
//! every failure named by its cause ([`ErrorCause`], counted per cause in
//! an [`ErrorTally`]).
//!
//! Why: pooled keep-alive connections let a benchmark of llama-server reuse
//! connections the server had already closed (errors at 16 clients) and
//! once measured a single stream at 2.6 tok/s where a client opening one
//! connection per request measured 79-92 tok/s. A TCP connect on the same
//! network costs well under a millisecond, far below anything reported.

mod endpoint;
mod error;
mod send;
mod tally;

pub use endpoint::Endpoint;
pub use error::{ErrorCause, RequestError};
pub use send::{post_json, send, Sent};
pub use tally::ErrorTally;

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

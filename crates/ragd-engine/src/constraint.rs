//! Constrained decoding seen from the engine: a per-sequence object that
//! masks the logits before each token is sampled and learns each sampled
//! token. What the constraint is (a JSON schema, a grammar) and how masks
//! are computed is the caller's business (`ragd-service` uses llguidance).

use std::sync::{Arc, Mutex};

/// Restricts which tokens one sequence may generate next.
pub trait TokenConstraint: Send {
    /// Sets the logits of the tokens that may not come next to minus
    /// infinity. `Err`: the constraint cannot go on (the sequence fails).
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;
    /// Records the sampled token; `Ok(true)` when the output is complete
    /// (nothing but the end may follow: the sequence stops).
    fn accept(&mut self, token: u32) -> Result<bool, String>;
}

/// A request's constraint. Cloning shares it (a request runs once);
/// equality is identity.
#[derive(Clone)]
pub struct Constraint(Arc<Mutex<Box<dyn TokenConstraint>>>);

impl Constraint {
    pub fn new(c: impl TokenConstraint + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(c))))
    }

    pub fn mask(&self, logits: &mut [f32]) -> Result<(), String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).mask(logits)
    }

    pub fn accept(&self, token: u32) -> Result<bool, String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).accept(token)
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

//! Cooperative cancellation of long blocking work (chunking, preparing and
//! upserting documents), for a caller whose client has gone away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{IndexError, Result};

/// A cancellation flag shared between the caller and the work it started.
///
/// Clones share the flag. Work that takes a `&Cancel` checks it between
/// steps (per document, per chunk, every few thousand words) and returns
/// [`IndexError::Cancelled`] once it is set, having written nothing.
///
/// In an async handler: `let cancel = Cancel::new(); let _guard =
/// cancel.cancel_on_drop();` then move a clone into the blocking task. When
/// the client disconnects, the handler's future is dropped, the guard with
/// it, and the blocking task stops at its next check.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: work checking it stops at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that sets the flag when dropped (unless disarmed).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }

    /// `Err(Cancelled)` once the flag is set.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(IndexError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Sets its [`Cancel`] when dropped; see [`Cancel::cancel_on_drop`].
#[derive(Debug)]
#[must_use = "the flag is set when the guard is dropped"]
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// Drops the guard without setting the flag.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_the_guard_sets_it() {
        let c = Cancel::new();
        let work = c.clone();
        assert!(work.check().is_ok());
        c.cancel_on_drop().disarm();
        assert!(!work.is_cancelled());
        drop(c.cancel_on_drop());
        assert!(work.is_cancelled());
        assert!(matches!(work.check(), Err(IndexError::Cancelled)));
    }
}

//! The tenant a request acts for: what isolates collections, cache entries
//! and queue shares. The server's authentication decides it.

use std::sync::Arc;

/// The tenant of single-user mode (`--no-auth`) and of offline commands
/// that name none.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tenant(Arc<str>);

impl Tenant {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

//! Response caches: the exact one (same prompt and settings) and the
//! semantic one (a close question in the same context). Both hold answers
//! as JSON text, weighed in bytes; neither knows HTTP: the server decides
//! whether a client asked to bypass them and labels responses.

pub mod exact;
mod key;
mod lookups;
pub mod semantic;
pub mod shared;

pub use exact::{CacheConfig, CacheKey, CacheKeyParts, Lookup, ResponseCache};
pub use key::{cacheable, deserialize, digest, serialize_capped, settings_bytes, ENTRY_SHARE};
pub use semantic::{BucketParts, SemanticCache, SemanticConfig, SemanticQuery};
pub use shared::{SharedCache, SharedKey, StoreFuture, Unavailable};

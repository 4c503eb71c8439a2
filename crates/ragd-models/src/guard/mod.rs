//! Injection/jailbreak classifiers behind [`ragd_core::Classifier`].

pub mod nanoguard;
mod nanoguard_checkpoint;
mod nanoguard_model;
pub mod tiktoken;
mod tiktoken_pickle;

pub use nanoguard::NanoGuard;
pub use nanoguard_checkpoint::NanoGuardConfig;
pub use tiktoken::TiktokenTokenizer;

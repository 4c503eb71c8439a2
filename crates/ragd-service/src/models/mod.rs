//! The models a server runs: the handles the rest of the service uses
//! ([`handles`]), and loading them ([`load`]).

mod handles;
mod load;

pub use handles::{GeneratorHandle, ModelHandle, Models, RerankerHandle};
pub use load::{load, load_embedder, models_configured};

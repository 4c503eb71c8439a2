//! `ragd train`: models trained from labelled data. A new trainer goes in
//! a module of its own here, with its `...Args` and `run(args)`.

pub mod feature_cache;
pub mod guard;
mod guard_args;
mod model_card;

//! CPU kernels of ragd's generator: attention over the paged KV cache
//! (`attention`), rotary embeddings (`rope`), quantized weight matrices
//! times a batch of rows (`quant`), and f32 vector primitives: the dot
//! product of the index's distances and the MLP's SiLU (`vector`).
//!
//! A kernel with a SIMD version lives in a folder of its own: `mod.rs` holds
//! its public API and the dispatch, `portable.rs` the portable version (the
//! reference), `x86.rs` the AVX2 one. Which one runs is decided from the
//! CPU's features, detected once per process in `cpu.rs`, so every call of
//! a process takes the same path and a result never depends on its batch.
//!
//! The cache of one layer is two flat arrays (K and V, f16 by default or
//! f32: [`KvStore`]) shaped `[num_blocks, block_size, n_kv_heads, head_dim]`.
//! A sequence owns a list of blocks (its block table); position `p` of the
//! sequence lives in block `table[p / block_size]`, slot `p % block_size`.
//! The kernels read and write through the tables and never gather a sequence
//! into a contiguous copy.

mod attention;
mod cpu;
pub mod device;
mod kv_store;
pub mod memory;
mod quant;
mod rope;
pub mod vector;

pub use attention::{paged_attention, paged_attention_over, write_kv, KvShape, QueryToken};
pub use kv_store::{KvDtype, KvStore, KvView};
pub use quant::{QMatrix, QuantError, QuantFormat, QuantizedRows, BLOCK as QUANT_BLOCK};
pub use rope::{Rope, RopeStyle};

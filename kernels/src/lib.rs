//! CPU kernels of ragd's generator: attention over the paged KV cache,
//! rotary embeddings, and quantized weight matrices times a batch of rows
//! (`quant`), and f32 vector primitives: the dot product of the index's
//! distances, an eight-lane exp and SiLU (`vector`).
//!
//! The cache of one layer is two flat arrays (K and V, f16 or f32:
//! [`KvStore`]) shaped
//! `[num_blocks, block_size, n_kv_heads, head_dim]`. A sequence owns a list
//! of blocks (its block table); position `p` of the sequence lives in block
//! `table[p / block_size]`, slot `p % block_size`. The kernels read and write
//! through the tables and never gather a sequence into a contiguous copy.
//!
//! Only the CPU kernels exist so far; CUDA and Metal versions will sit behind
//! the `cuda` and `metal` features with these as their reference.

#[cfg(target_arch = "x86_64")]
mod attention_x86;
mod kv_store;
mod paged_attention;
mod quant;
mod rope;
pub mod vector;

pub use kv_store::{KvDtype, KvStore};
pub use paged_attention::{paged_attention, write_kv, KvShape, QueryToken};
pub use quant::{QMatrix, QuantError, QuantFormat, QuantizedRows, BLOCK as QUANT_BLOCK};
pub use rope::{Rope, RopeStyle};

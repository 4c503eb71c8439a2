//! One layer's K (or V) cache array, in f32 or f16.
//!
//! f16 halves the cache's memory and the bytes attention streams per step
//! (at 16 sequences of a few hundred tokens the cache reads outweigh the
//! weights); values are rounded to f16 when written and widened to f32 when
//! read, as llama.cpp's default cache does. f32 keeps them exact.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    F32,
    #[default]
    F16,
}

impl KvDtype {
    pub fn bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => Err(format!("KV cache dtype must be f16 or f32, got `{s}`")),
        }
    }
}

/// A zero-filled cache array. Zeroed allocations are committed lazily by the
/// OS, so an idle cache costs address space, not memory (f16 values are kept
/// as their `u16` bits for that reason).
#[derive(Debug, Clone)]
pub enum KvStore {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl KvStore {
    pub fn zeroed(dtype: KvDtype, len: usize) -> Self {
        match dtype {
            KvDtype::F32 => Self::F32(vec![0.0; len]),
            KvDtype::F16 => Self::F16(vec![0; len]),
        }
    }

    pub fn len(&self) -> usize {
        self.view().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `src` at element offset `at`.
    pub(crate) fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Self::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Self::F16(v) => v[at..at + src.len()]
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(src),
        }
    }

    pub fn view(&self) -> KvView<'_> {
        match self {
            Self::F32(v) => KvView::F32(v),
            Self::F16(v) => KvView::F16(v),
        }
    }
}

/// A read-only cache array, shared by the attention tasks: a [`KvStore`]'s,
/// or one borrowed from another owner (a candle tensor's CPU storage).
#[derive(Debug, Clone, Copy)]
pub enum KvView<'a> {
    F32(&'a [f32]),
    /// f16 values as their bits.
    F16(&'a [u16]),
}

impl<'a> KvView<'a> {
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    pub fn len(self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    /// `len` values from element `at` as f32: borrowed, or widened into `buf`.
    pub fn row<'b>(self, at: usize, len: usize, buf: &'b mut Vec<f32>) -> &'b [f32]
    where
        'a: 'b,
    {
        match self {
            Self::F32(v) => &v[at..at + len],
            Self::F16(v) => {
                buf.resize(len, 0.0);
                v[at..at + len]
                    .reinterpret_cast::<f16>()
                    .convert_to_f32_slice(buf);
                buf
            }
        }
    }
}

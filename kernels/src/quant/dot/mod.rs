//! Weight rows times every row of a quantized batch: the kernel choice (made
//! once per process, from the CPU's features in [`crate::cpu`]) and the
//! dispatch to the portable version (`portable.rs`) or the x86 one (`x86/`,
//! with AVX2 or AVX-512 VNNI integer dot products).

use super::panel::PANEL;
use super::{QMatrix, QuantizedRows};

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

/// One panel's blocks (eight weight rows, `panel.rs` layout).
pub(super) struct Panel<'a> {
    pub qs: &'a [u8],
    /// `[block][8]` scales.
    pub d: &'a [f32],
    /// `[block][8]` minimums; empty where the format has none.
    pub m: &'a [f32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

/// The fastest kernel this CPU runs, or a slower one named by
/// `RAGD_QUANT_KERNEL` (`portable` or `avx2`). Every call in a process gets
/// the same one, so results never depend on which rows share a call (and
/// every kernel gives the same bits anyway: `tests/`).
pub(super) fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static CHOICE: OnceLock<Kernel> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let cpu = crate::cpu::features();
            match std::env::var("RAGD_QUANT_KERNEL").as_deref() {
                Ok("portable") => Kernel::Portable,
                _ if !cpu.avx2_fma => Kernel::Portable,
                Ok("avx2") => Kernel::Avx2,
                _ if cpu.avx512_vnni => Kernel::Avx512Vnni,
                _ => Kernel::Avx2,
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    Kernel::Portable
}

impl Kernel {
    /// `outs[i][jj] = dot(weight row first + jj, activation row i)`: a tile
    /// of weight rows (as long as each `outs[i]`; `first` starts a panel)
    /// against every row of `acts`.
    pub fn tile(self, w: &QMatrix, first: usize, acts: &QuantizedRows, outs: &mut [&mut [f32]]) {
        debug_assert_eq!(first % PANEL, 0);
        match self {
            Self::Portable => portable::tile(w, first, acts, outs),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => x86::tile::<x86::Avx2>(w, first, acts, outs),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vnni => x86::tile::<x86::Vnni>(w, first, acts, outs),
        }
    }
}

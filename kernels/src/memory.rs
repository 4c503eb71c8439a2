//! Memory hints for large arrays read at random.

/// Asks Linux to back the whole 2 MiB pages inside `buf` with huge pages
/// (transparent huge pages in `madvise` mode, the usual default). For an
/// array read at random, such as the HNSW search's vectors, each 4 KiB
/// page would cost a TLB miss; call it before the array is first written.
/// A hint: nothing happens where it is not supported.
pub fn advise_huge_pages<T>(buf: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let (from, to) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if to > from {
            // SAFETY: the range lies inside `buf`, which we borrow mutably;
            // MADV_HUGEPAGE changes how pages are backed, never their contents.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

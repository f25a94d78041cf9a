//! The binary's global allocator: mimalloc, asked for an aligned block only
//! when a layout needs more alignment than `malloc` guarantees.
//!
//! The `mimalloc` crate's allocator passes every layout to
//! `mi_malloc_aligned`. That call's fast path covers only blocks of at most
//! 1 KiB; any larger request (a request's boxed future, read buffers, header
//! tables) falls through to the generic aligned path, which checks for a
//! naturally aligned size class, finds none, and over-allocates by
//! `align - 1` bytes before it reaches the plain allocation: about 300
//! instructions instead of a few dozen, on ~1.3 allocations of every proxied
//! HTTP/1 request and ~2.8 of every HTTP/2 stream (callgrind, stop 27).
//!
//! `mi_malloc` returns blocks aligned for any type of their size, as C's
//! `malloc` must (16 bytes on 64-bit targets for sizes of 16 and more:
//! mimalloc rounds its small size classes to double words for this). The
//! standard library's `System` allocator relies on the same guarantee of
//! `malloc` with the same test: a layout whose alignment is at most 16 and
//! at most its size takes `mi_malloc`; any other takes `mi_malloc_aligned`.
//! `mi_malloc` is asked for the size the aligned path allocated (see
//! [`malloc_size`]), so blocks keep the size classes, and an idle proxy the
//! memory, they had.

#![allow(unsafe_code)] // implementing `GlobalAlloc` over mimalloc's C functions

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every `mi_malloc` block of at least this many bytes has
/// (mimalloc's `MI_MAX_ALIGN_SIZE` on 64-bit targets, `max_align_t`'s).
const MALLOC_ALIGN: usize = 16;

/// mimalloc as the global allocator (see the module's documentation).
pub struct MiMalloc;

/// Whether `mi_malloc` of `size` bytes is aligned for `align`.
#[inline]
fn plain_malloc_fits(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

/// The largest block `mi_malloc_aligned`'s fast path serves
/// (`MI_SMALL_SIZE_MAX`), and the largest power of two it takes as
/// naturally aligned (`MI_PAGE_MAX_START_BLOCK_ALIGN2`).
const ALIGNED_FAST_MAX: usize = 1024;
const NATURALLY_ALIGNED_MAX: usize = 4096;

/// The size to ask `mi_malloc` for, for a layout `plain_malloc_fits`: the
/// size the aligned path asked for, so that every block stays in the size
/// class it had. Above 1 KiB, except for powers of two up to 4 KiB, that
/// path over-allocated by `align - 1` bytes, which moves a block of exactly
/// a class's size into the next class. Exact sizes measured worse: with
/// them the arena of an idle proxy kept ~50 more pages resident (+150 kB
/// of anonymous memory, docs/performance.md, stop 27); which of start-up's
/// long-lived blocks cause it was not looked into. (`realloc` asks for the
/// exact size, as `mi_realloc_aligned` did for alignments up to 8.)
#[inline]
fn malloc_size(align: usize, size: usize) -> usize {
    if size <= ALIGNED_FAST_MAX || (size <= NATURALLY_ALIGNED_MAX && size.is_power_of_two()) {
        size
    } else {
        size.saturating_add(align - 1)
    }
}

/// A block for `layout` from `plain` (mimalloc's `malloc` or `zalloc`) when
/// its alignment is what `malloc` guarantees, else from `aligned` (the same
/// function's aligned variant).
#[inline(always)]
fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: mimalloc's allocation functions take sizes and alignments
    // only; `Layout` guarantees a power-of-two alignment.
    unsafe {
        if plain_malloc_fits(layout.align(), layout.size()) {
            plain(malloc_size(layout.align(), layout.size())).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

// SAFETY: every block comes from mimalloc and goes back to it (`mi_free`
// takes blocks of either kind of allocation); blocks are at least
// `layout.size()` bytes and aligned to `layout.align()`: by `mi_malloc`'s
// guarantee when `plain_malloc_fits`, by `mi_malloc_aligned` otherwise.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (the caller's
        // contract), so by mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator with `layout` (the
        // caller's contract); the new block keeps `layout.align()` by the
        // same rule as `alloc`.
        unsafe {
            if plain_malloc_fits(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a Rust type can ask for, through each entry
    /// point, gets a block of its alignment that holds its size.
    #[test]
    fn blocks_have_the_layouts_alignment() {
        let a = MiMalloc;
        let mut live = Vec::new();
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in (0usize..=600).chain([1000, 1024, 1344, 2048, 4096, 7232, 70_000]) {
                // A Rust type's size is a multiple of its alignment.
                let size = size.next_multiple_of(align).max(align);
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero size; each block is written within its
                // size and freed once with its layout below.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc {size} / {align}");
                    p.write_bytes(0xa5, size);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed {size} / {align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    let grown = size * 3 / 2 + align;
                    let grown = grown.next_multiple_of(align);
                    let r = a.realloc(p, layout, grown);
                    assert_eq!(r as usize % align, 0, "realloc {size} -> {grown} / {align}");
                    assert!(
                        std::slice::from_raw_parts(r, size)
                            .iter()
                            .all(|&b| b == 0xa5)
                    );
                    // Keep some alive so that later blocks come from pages
                    // already in use, not only fresh ones.
                    live.push((r, Layout::from_size_align(grown, align).expect("layout")));
                    a.dealloc(z, layout);
                }
            }
        }
        for (p, layout) in live {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { a.dealloc(p, layout) }
        }
    }

    #[test]
    fn blocks_keep_the_aligned_paths_sizes() {
        assert_eq!(malloc_size(8, 24), 24);
        assert_eq!(malloc_size(8, 1024), 1024);
        assert_eq!(malloc_size(16, 2048), 2048);
        assert_eq!(malloc_size(1, 4096), 4096);
        assert_eq!(malloc_size(8, 1344), 1351);
        assert_eq!(malloc_size(8, 8192), 8199);
        assert_eq!(malloc_size(1, 70_000), 70_000);
        assert_eq!(malloc_size(8, usize::MAX), usize::MAX);
    }

    #[test]
    fn plain_malloc_only_within_its_guarantee() {
        assert!(plain_malloc_fits(8, 8));
        assert!(plain_malloc_fits(16, 16));
        assert!(plain_malloc_fits(8, 7232));
        assert!(!plain_malloc_fits(16, 8));
        assert!(!plain_malloc_fits(32, 64));
        assert!(!plain_malloc_fits(128, 256));
    }
}

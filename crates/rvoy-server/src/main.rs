//! The `rvoy` executable.
//!
//! The global allocator is mimalloc: the request path allocates little, but
//! what it does (header maps, buffers) is cheaper and returns memory to the
//! system sooner than with glibc's malloc (see docs/performance.md). It is
//! called through `rvoy_server::allocator`, which asks for aligned blocks
//! only when a layout needs them.
//!
//! Transparent huge pages are turned off for the process before anything
//! else: mimalloc asks for them on its arenas, and with THP each first touch
//! of an arena region maps 2 MiB, which tripled the idle RSS (46 MiB instead
//! of ~15) for no measurable gain on the request path.
//!
//! mimalloc's options are set by a constructor that runs before `main`: the
//! Rust runtime allocates before `main` (the main thread's name for its
//! stack-overflow handler), and that first allocation reserves mimalloc's
//! first arena (see `rvoy_server::memory::configure_allocator`).

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: rvoy_server::allocator::MiMalloc = rvoy_server::allocator::MiMalloc;

/// Sets mimalloc's options before anything allocates: the C runtime calls
/// the functions of `.init_array` before `main`, and so before the Rust
/// runtime's set-up.
#[allow(unsafe_code)] // placing a constructor in `.init_array`
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

extern "C" fn configure_allocator() {
    rvoy_server::memory::configure_allocator();
}

fn main() -> ExitCode {
    // Best effort: on kernels without PR_SET_THP_DISABLE nothing changes.
    let _ = nix::sys::prctl::set_thp_disable(true);
    rvoy_server::main_entry()
}

//! The `rvoy` executable.
//!
//! The global allocator is mimalloc: the request path allocates little, but
//! what it does (header maps, buffers) is cheaper and returns memory to the
//! system sooner than with glibc's malloc (see docs/performance.md).

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rvoy_server::main_entry()
}

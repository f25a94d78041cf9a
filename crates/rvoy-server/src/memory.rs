//! Giving freed heap memory back to the system.
//!
//! The binary's allocator is mimalloc (see `main.rs`). It keeps freed pages
//! committed for a purge delay (1 s) and purges them only from inside later
//! allocator calls. A proxy that has just started, or that has gone quiet
//! after a burst, makes no such calls: the ~17 MiB of the descriptor pool and
//! the config trees freed after start-up stayed resident for good (an idle
//! RSS of 35 MiB, of which 22 MiB anonymous). The main thread therefore
//! forces a purge once start-up has freed what it needed, and then lets
//! mimalloc run its own delayed purges once a second.
//!
//! With another global allocator (the test binaries use the system's) these
//! calls only look at mimalloc's own empty heap and do nothing.

#![allow(unsafe_code)] // one FFI call into the allocator, see `return_freed_memory`

use std::time::Duration;

/// How often the main thread lets the allocator purge pages freed more than
/// its purge delay ago.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// Returns the freed pages of the allocator's arenas to the system: all of
/// them with `force`, otherwise those freed more than the purge delay ago.
pub fn return_freed_memory(force: bool) {
    // SAFETY: `mi_collect` takes no pointers; it may be called from any
    // thread at any time.
    unsafe { libmimalloc_sys::mi_collect(force) }
}

/// Spawns the main thread's purge tick on the current tokio runtime.
pub fn spawn_purge_tick() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            return_freed_memory(false);
        }
    });
}

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

use tokio::sync::oneshot;

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

/// Drops `trees` on a thread of its own, then returns the freed pages to the
/// system (what start-up built and no longer needs: the config as a dynamic
/// message, its source maps). Start-up does not wait for the trees (tens of
/// MiB on a big config) to be taken apart. The receiver hears when that is
/// done (or that it never will be); see [`collect_after`]. Should no thread
/// start, `trees` are dropped right here.
///
/// The thread runs at the normal priority on purpose: at the lowest, it ran
/// only once start-up was over (3 ms sooner to the first request on one
/// core), but by then the snapshot had been built among the trees' pages,
/// and 1.3 MiB more stayed resident.
pub fn free_in_background(trees: impl Send + 'static) -> oneshot::Receiver<()> {
    let (done, freed) = oneshot::channel();
    let _ = std::thread::Builder::new()
        .name("config-free".into())
        .spawn(move || {
            drop(trees);
            return_freed_memory(true);
            let _ = done.send(());
        });
    freed
}

/// Once `freed` resolves, returns the pages freed in the current thread's
/// heap. Memory allocated by one thread and freed by another only goes back
/// to its owner's heap when the owner next allocates or collects: the main
/// thread, idle once started, would otherwise keep the pages of the config
/// trees it built.
pub fn collect_after(freed: oneshot::Receiver<()>) {
    tokio::task::spawn_local(async move {
        let _ = freed.await;
        return_freed_memory(true);
    });
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

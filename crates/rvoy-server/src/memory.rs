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
//!
//! It also sizes the allocator's arenas before the first allocation (see
//! [`configure_allocator`]).

#![allow(unsafe_code)] // FFI calls into the allocator: `return_freed_memory`, `configure_allocator`

use std::time::Duration;

use tokio::sync::oneshot;

/// How often the main thread lets the allocator purge pages freed more than
/// its purge delay ago.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// mimalloc's `mi_option_arena_reserve` (`include/mimalloc.h` of the v3
/// sources `libmimalloc-sys` builds; its Rust bindings do not name it). In
/// KiB. The unit test below checks the number against the option's default.
const MI_OPTION_ARENA_RESERVE: libmimalloc_sys::mi_option_t = 23;

/// The address space each of mimalloc's arenas reserves, in KiB: 64 MiB.
///
/// mimalloc's default is 1 GiB. Reserving costs nothing, but an arena keeps
/// its bookkeeping (a bitmap per state and per size class, one bit per
/// 64 KiB slice) at its start, written when the arena is set up: 192 KiB
/// resident for a 1 GiB arena, 37 pages more than for 64 MiB (measured with
/// pagemap on an idle rvoy: 388 resident pages of the arena against 351).
/// A proxy whose heap outgrows the first arena reserves more of them, the
/// same size, doubling every eight arenas (mimalloc's rule); an
/// allocation larger than an arena gets one of its own.
const ARENA_RESERVE_KIB: std::ffi::c_long = 64 * 1024;

/// Sets the allocator's options. The binary calls it from a constructor
/// (`.init_array`), before the first allocation reserves an arena: the Rust
/// runtime allocates before `main`. Calls no other Rust code.
pub fn configure_allocator() {
    // SAFETY: `mi_option_set` takes no pointers and only stores the value;
    // mimalloc reads it when it next reserves an arena.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_RESERVE, ARENA_RESERVE_KIB) }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The option number names the arena reserve: its default is mimalloc's
    /// 1 GiB (in KiB), which no other option of mimalloc has. Nothing in the
    /// test binaries calls `configure_allocator`.
    #[test]
    fn the_arena_reserve_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_ARENA_RESERVE").is_some() {
            return;
        }
        // SAFETY: reads an option; no pointers.
        let reserve = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_RESERVE) };
        assert_eq!(reserve, 1024 * 1024);
    }
}

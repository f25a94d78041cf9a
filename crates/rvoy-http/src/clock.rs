//! The worker's monotonic clock, read at most once per poll of a connection.
//!
//! Serving one request asks for the time a dozen times or more (the request's
//! start, its stream timers, the router's deadlines and attempt times, the
//! pool's idle stamps, the request's end), mostly within the same poll of
//! the connection's task, microseconds apart. Each `Instant::now()` is a
//! `clock_gettime` through the vDSO, which under a hypervisor costs a
//! paravirtual clock read.
//!
//! Envoy answers this with the dispatcher's approximate time, updated once
//! per event loop iteration. rvoy does the same at the granularity of a
//! connection's poll: a task wrapped in [`Clocked`] reads the clock on the
//! first [`now`] of each poll, and every later [`now`] of that poll gets the
//! same instant. Outside a `Clocked` poll (the main thread, tests, tasks
//! nobody wrapped) [`now`] is `Instant::now()`. Within one poll time does
//! not advance, as with Envoy's approximate time; across polls (every await
//! that waits) it does.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// What [`now`] answers on this thread.
#[derive(Clone, Copy)]
enum Reading {
    /// Not within a [`Clocked`] poll: every call reads the clock.
    Live,
    /// Within a poll that has not read the clock yet.
    Unread,
    /// Within a poll that read the clock at this instant.
    At(Instant),
}

thread_local! {
    static READING: Cell<Reading> = const { Cell::new(Reading::Live) };
    /// A monotonic instant and the wall-clock time read right after it.
    static WALL_ANCHOR: Cell<Option<(std::time::Instant, SystemTime)>> = const { Cell::new(None) };
}

/// How long a wall-clock anchor is used before the wall clock is read again:
/// a step of the system clock (an NTP step, an operator) shows within this.
const WALL_ANCHOR_FOR: Duration = Duration::from_secs(1);

/// The current time: within a [`Clocked`] poll, the instant of its first
/// call; elsewhere, `Instant::now()`.
#[inline]
pub fn now() -> std::time::Instant {
    tokio_now().into_std()
}

/// The time from `since` to [`now`] (zero if `since` is later): what
/// `since.elapsed()` is on the real clock.
#[inline]
pub fn elapsed(since: std::time::Instant) -> std::time::Duration {
    now().saturating_duration_since(since)
}

/// [`now`] as tokio's `Instant`, for deadlines of tokio timers. The clock
/// is tokio's: the system's monotonic clock, except in tests that pause
/// time.
#[inline]
pub fn tokio_now() -> Instant {
    READING.with(|r| match r.get() {
        Reading::At(t) => t,
        Reading::Live => Instant::now(),
        Reading::Unread => {
            let t = Instant::now();
            r.set(Reading::At(t));
            t
        }
    })
}

/// The wall-clock time that goes with [`now`]: the thread's anchor (a wall
/// clock reading, taken at most once a second) moved on by the monotonic
/// time since. For request start times and `date` headers, without a second
/// clock read per request.
pub fn system_now() -> SystemTime {
    let mono = now();
    WALL_ANCHOR.with(|a| {
        if let Some((at, wall)) = a.get()
            && let Some(since) = mono.checked_duration_since(at)
            && since < WALL_ANCHOR_FOR
        {
            return wall + since;
        }
        let wall = SystemTime::now();
        a.set(Some((mono, wall)));
        wall
    })
}

/// A task's future whose every poll shares one clock reading (see the
/// module's documentation). Wraps a pinned box (what the workers spawn), so
/// it needs no pin projection.
pub struct Clocked<F: ?Sized>(pub Pin<Box<F>>);

impl<F: Future + ?Sized> Future for Clocked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _restore = Restore(READING.with(|r| r.replace(Reading::Unread)));
        self.0.as_mut().poll(cx)
    }
}

/// Puts back the reading of the enclosing poll (or `Live`) when a poll
/// ends, also when it unwinds.
struct Restore(Reading);

impl Drop for Restore {
    fn drop(&mut self) {
        READING.with(|r| r.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn outside_a_poll_the_clock_moves() {
        let a = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() >= a + Duration::from_millis(2));
    }

    #[test]
    fn wall_clock_follows_the_system_clock() {
        let before = SystemTime::now();
        let a = system_now();
        std::thread::sleep(Duration::from_millis(5));
        let b = system_now();
        let after = SystemTime::now();
        assert!(a >= before - Duration::from_millis(1));
        assert!(b >= a + Duration::from_millis(5));
        assert!(b <= after + Duration::from_millis(1));
        // Past the anchor's lifetime the wall clock is read again.
        std::thread::sleep(WALL_ANCHOR_FOR);
        let c = system_now();
        assert!(c >= after + WALL_ANCHOR_FOR);
    }

    #[tokio::test]
    async fn one_reading_per_poll_and_a_new_one_after_a_wait() {
        let before = Instant::now();
        let task = Clocked(Box::pin(async {
            let a = now();
            std::thread::sleep(Duration::from_millis(2));
            // Same poll: same instant.
            assert_eq!(now(), a);
            tokio::time::sleep(Duration::from_millis(2)).await;
            // A later poll: read again.
            let b = now();
            assert!(b >= a + Duration::from_millis(2));
            (a, b)
        }));
        let (a, _) = task.await;
        assert!(a >= before);
        // Once the poll is over the clock is live again.
        let c = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() >= c + Duration::from_millis(2));
    }
}

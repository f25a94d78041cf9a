//! A worker's reusable timers, for the waits every request makes.
//!
//! Each request waits on two deadlines that almost never fire: its stream
//! timers (`stream_idle_timeout`, 5 minutes by default) and the router's
//! attempt timers (the route `timeout`, 15 seconds by default). A fresh
//! `tokio::time::Sleep` per wait is a timer-wheel insertion and removal per
//! request, whose deadline is always later than the previous request's.
//!
//! [`SleepPool`] keeps the sleeps of finished waits, still armed, and lends
//! them to later waits. A wait re-arms a lent sleep only when its own
//! deadline is earlier than the one the sleep holds; a sleep that fires
//! first (it was armed for an earlier wait) is re-armed then for the wait's
//! own deadline. So a busy worker touches the wheel about once per timeout
//! period per concurrent wait, not once per request. A sleep that fires
//! while it sits in the pool wakes the task that last waited on it, once:
//! a spurious wake-up that task's futures tolerate, as every future must.
//!
//! The pool belongs to one worker's runtime (a sleep is bound to the
//! runtime it was made on), in [`crate::WorkerContext`].

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// At most this many idle sleeps are kept: enough for the concurrent
/// requests of a busy worker; more are dropped when their wait ends.
const MAX_IDLE: usize = 256;

/// Far enough ahead to never fire: what a new sleep is armed for before its
/// first wait sets it.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Polls a wait until `deadline` on `sleep`, a timer kept across waits: it
/// is re-armed only for a deadline earlier than the one it holds (or once
/// it fired); when it fires for an earlier deadline it was still armed for,
/// it is re-armed for this one. Shared by the pool's lent sleeps and by
/// timers a connection keeps for itself.
pub(crate) fn poll_until(
    mut sleep: Pin<&mut Sleep>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    loop {
        if sleep.is_elapsed() || sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        ready!(sleep.as_mut().poll(cx));
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
    }
}

/// One worker's idle sleeps. See the module's documentation.
#[derive(Default)]
pub struct SleepPool {
    idle: RefCell<Vec<Pin<Box<Sleep>>>>,
}

impl std::fmt::Debug for SleepPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let idle = self.idle.try_borrow().map_or(0, |v| v.len());
        f.debug_struct("SleepPool").field("idle", &idle).finish()
    }
}

impl SleepPool {
    /// Completes at `deadline`, on a sleep lent by the pool (a new one when
    /// none is idle). The sleep goes back to the pool when the returned
    /// future is dropped.
    pub fn sleep_until(&self, deadline: Instant) -> PooledSleep<'_> {
        PooledSleep {
            pool: self,
            sleep: None,
            deadline,
        }
    }

    fn take(&self) -> Pin<Box<Sleep>> {
        self.idle
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Box::pin(tokio::time::sleep_until(Instant::now() + FAR_FUTURE)))
    }

    fn give_back(&self, sleep: Pin<Box<Sleep>>) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < MAX_IDLE {
            idle.push(sleep);
        }
    }

    /// How many sleeps are idle in the pool.
    pub fn idle(&self) -> usize {
        self.idle.borrow().len()
    }
}

/// A wait until a deadline on a pooled sleep ([`SleepPool::sleep_until`]).
pub struct PooledSleep<'a> {
    pool: &'a SleepPool,
    /// Taken from the pool on the first poll.
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Instant,
}

impl Future for PooledSleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let pool = this.pool;
        let sleep = this.sleep.get_or_insert_with(|| pool.take());
        poll_until(sleep.as_mut(), this.deadline, cx)
    }
}

impl Drop for PooledSleep<'_> {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.pool.give_back(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paused time: each wait ends at its own deadline, whatever the lent
    /// sleep was armed for, and the sleep goes back to the pool.
    #[tokio::test(start_paused = true)]
    async fn waits_end_at_their_own_deadlines_on_lent_sleeps() {
        let pool = SleepPool::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let elapsed = || (Instant::now() - start).as_secs();
        pool.sleep_until(at(10)).await;
        assert_eq!(elapsed(), 10);
        assert_eq!(pool.idle(), 1);
        // A wait cut short leaves its sleep armed for 60 s...
        let cut = tokio::time::timeout(Duration::from_secs(5), pool.sleep_until(at(60)));
        assert!(cut.await.is_err());
        assert_eq!(pool.idle(), 1);
        // ...a later deadline keeps it armed, fires at 60 and re-arms...
        pool.sleep_until(at(70)).await;
        assert_eq!(elapsed(), 70);
        // ...and an earlier one moves it.
        let cut = tokio::time::timeout(Duration::from_secs(1), pool.sleep_until(at(500)));
        assert!(cut.await.is_err());
        pool.sleep_until(at(80)).await;
        assert_eq!(elapsed(), 80);
        // Two waits at once: the second gets a sleep of its own.
        let (a, b) = (pool.sleep_until(at(90)), pool.sleep_until(at(85)));
        tokio::join!(a, b);
        assert_eq!(elapsed(), 90);
        assert_eq!(pool.idle(), 2);
    }
}

//! Circuit breakers: Envoy's resource manager, shared by all workers.
//!
//! Each limit (connections, pending requests, requests, retries) is an atomic
//! count checked before creating the resource, per priority (default, high).

use std::sync::atomic::{AtomicU64, Ordering};

use rvoy_model::cluster::Thresholds;

/// One limited resource.
#[derive(Debug)]
pub struct Resource {
    max: u64,
    count: AtomicU64,
}

impl Resource {
    pub fn new(max: u32) -> Self {
        Resource {
            max: u64::from(max),
            count: AtomicU64::new(0),
        }
    }

    /// Takes one unit if the limit allows; `false` when the breaker is open.
    pub fn try_acquire(&self) -> bool {
        let mut current = self.count.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                return false;
            }
            match self.count.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Takes one unit regardless of the limit (for accounting only).
    pub fn acquire_unchecked(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn release(&self) {
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(1))
            });
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether the breaker is open (at or over the limit).
    pub fn is_open(&self) -> bool {
        self.count() >= self.max
    }
}

/// The four limits of one priority.
#[derive(Debug)]
pub struct Resources {
    pub connections: Resource,
    pub pending_requests: Resource,
    pub requests: Resource,
    pub retries: Resource,
}

impl Resources {
    pub fn new(t: &Thresholds) -> Self {
        Resources {
            connections: Resource::new(t.max_connections),
            pending_requests: Resource::new(t.max_pending_requests),
            requests: Resource::new(t.max_requests),
            retries: Resource::new(t.max_retries),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let r = Resource::new(2);
        assert!(r.try_acquire());
        assert!(r.try_acquire());
        assert!(!r.try_acquire());
        assert!(r.is_open());
        r.release();
        assert!(r.try_acquire());
    }
}

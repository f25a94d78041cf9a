//! Spare read buffers of a worker, kept between the requests of its
//! connections.
//!
//! An idle HTTP/1 connection (downstream, or upstream in a pool) holds no
//! buffer memory: its read buffer goes back here once it is empty, and the
//! next read takes one. On a busy worker the same few buffers go round, so a
//! keep-alive request costs no buffer allocation on either side; an idle one
//! costs only what [`ReadBufPool`] keeps (at most `MAX_SPARE` buffers).
//!
//! A buffer whose bytes are still shared (header values or a body chunk of a
//! request in flight point into it) is kept too, and handed out again once it
//! is unique or while it still has room.

use std::cell::RefCell;

use bytes::BytesMut;

/// A worker's spare read buffers of one size class: a new buffer has room
/// for `CAPACITY` bytes, a kept one is handed out again while it has room for
/// `MIN_ROOM` without allocating; at most `MAX_SPARE` are kept, none larger
/// than `MAX_KEEP` bytes.
#[derive(Debug, Default)]
pub struct ReadBufPool<
    const CAPACITY: usize,
    const MIN_ROOM: usize,
    const MAX_KEEP: usize,
    const MAX_SPARE: usize,
> {
    spare: RefCell<Vec<BytesMut>>,
}

/// Downstream HTTP/1 connections' buffers (request heads and bodies; the
/// connection reads into one while it has 1 KiB of room).
pub type DownstreamReadBufs = ReadBufPool<4096, 1024, { 16 * 1024 }, 16>;

/// Upstream HTTP/1 connections' buffers (response heads and bodies; the
/// connection reads into one while it has 4 KiB of room).
pub type UpstreamReadBufs = ReadBufPool<{ 16 * 1024 }, 4096, { 32 * 1024 }, 8>;

impl<const CAPACITY: usize, const MIN_ROOM: usize, const MAX_KEEP: usize, const MAX_SPARE: usize>
    ReadBufPool<CAPACITY, MIN_ROOM, MAX_KEEP, MAX_SPARE>
{
    /// An empty buffer: the most recently kept one that has (or reclaims)
    /// room without allocating, else a new one. A kept buffer whose bytes are
    /// still shared (header values or a body chunk of a request in flight
    /// point into it) and that is short of room stays for later.
    pub fn take(&self) -> BytesMut {
        let mut spare = self.spare.borrow_mut();
        let usable = spare
            .iter_mut()
            .rposition(|b| b.try_reclaim(CAPACITY) || b.capacity() - b.len() >= MIN_ROOM);
        match usable {
            Some(i) => spare.swap_remove(i),
            None => BytesMut::with_capacity(CAPACITY),
        }
    }

    /// Keeps `buf` for a later [`take`](Self::take) if it is empty and of
    /// ordinary size (and the pool not full); drops it otherwise.
    pub fn put(&self, buf: BytesMut) {
        if !buf.is_empty() || buf.capacity() == 0 || buf.capacity() > MAX_KEEP {
            return;
        }
        let mut spare = self.spare.borrow_mut();
        if spare.len() < MAX_SPARE {
            spare.push(buf);
        }
    }

    /// Spare buffers held.
    pub fn spare(&self) -> usize {
        self.spare.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_round_and_the_pool_stays_bounded() {
        let pool = ReadBufPool::<4096, 1024, { 16 * 1024 }, 2>::default();
        let mut a = pool.take();
        assert!(a.capacity() >= 4096);
        a.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let ptr = a.as_ptr();
        let _ = a.split();
        pool.put(a);
        assert_eq!(pool.spare(), 1);
        // The same memory comes back, with room again.
        let b = pool.take();
        assert!(b.capacity() >= 4096 && b.is_empty());
        assert_eq!(b.as_ptr(), ptr);
        // Non-empty, unallocated and oversized buffers are not kept.
        let mut full = pool.take();
        full.extend_from_slice(b"x");
        pool.put(full);
        pool.put(BytesMut::new());
        pool.put(BytesMut::with_capacity(64 * 1024));
        assert_eq!(pool.spare(), 0);
        for _ in 0..5 {
            pool.put(BytesMut::with_capacity(4096));
        }
        assert_eq!(pool.spare(), 2);
        drop(b);
    }

    #[test]
    fn a_buffer_still_shared_and_short_of_room_waits_in_the_pool() {
        let pool = ReadBufPool::<4096, 1024, { 16 * 1024 }, 4>::default();
        let mut buf = pool.take();
        buf.extend_from_slice(&[b'x'; 4000]);
        let held = buf.split().freeze();
        pool.put(buf);
        let fresh = pool.take();
        assert!(fresh.capacity() >= 4096);
        assert_eq!(pool.spare(), 1);
        drop(held);
        // Unique again: reclaimed in place, whole.
        let again = pool.take();
        assert!(again.capacity() >= 4096);
        assert_eq!(pool.spare(), 0);
    }
}

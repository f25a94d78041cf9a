//! Spare `HeaderMap`s of a worker thread, reused by the HTTP/1 codec.
//!
//! Each `HeaderMap` owns two allocations (its index table and its entries).
//! A proxied HTTP/1 request builds two (the request head and the response
//! head) and drops them when the stream ends: [`put`] keeps them, cleared,
//! and the codec's next heads [`take`] them, so a keep-alive request costs
//! no map allocation. At most [`MAX_SPARE`] maps of at most
//! [`MAX_KEEP_CAPACITY`] headers are kept per thread.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread: about its concurrent requests' worth.
pub const MAX_SPARE: usize = 64;
/// A map grown past this many headers is dropped rather than kept.
pub const MAX_KEEP_CAPACITY: usize = 128;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `capacity` headers: a spare one when there is
/// one.
pub fn take(capacity: usize) -> HeaderMap {
    let spare = SPARE
        .try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match spare {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Keeps `map` (cleared) for a later [`take`], unless it is unallocated, too
/// large, or the thread has enough spare maps.
pub fn put(mut map: HeaderMap) {
    let capacity = map.capacity();
    if capacity == 0 || capacity > MAX_KEEP_CAPACITY {
        return;
    }
    let _ = SPARE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut()
            && s.len() < MAX_SPARE
        {
            map.clear();
            s.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn spare() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    #[test]
    fn maps_come_back_empty_and_the_pool_stays_bounded() {
        let mut map = take(8);
        map.insert(http::header::HOST, HeaderValue::from_static("a"));
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-a", HeaderValue::from_static("2"));
        let before = spare();
        put(map);
        assert_eq!(spare(), before + 1);
        let again = take(8);
        assert!(again.is_empty());
        assert!(again.get("x-a").is_none() && again.get(http::header::HOST).is_none());
        assert!(again.capacity() >= 8);
        // Unallocated and oversized maps are not kept.
        put(HeaderMap::new());
        put(HeaderMap::with_capacity(4 * MAX_KEEP_CAPACITY));
        assert_eq!(spare(), before);
        for _ in 0..2 * MAX_SPARE {
            put(HeaderMap::with_capacity(4));
        }
        assert_eq!(spare(), MAX_SPARE);
    }
}

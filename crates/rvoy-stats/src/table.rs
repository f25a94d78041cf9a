//! Compact containers for per-stat metadata: a chunked append-only vector
//! and a name arena whose clones share every chunk (so a [`Snapshot`]
//! keeps the metadata it was taken with while registration goes on, copying
//! at most one chunk), and an open-addressing index of ids whose keys live
//! in those containers (no key stored twice).
//!
//! [`Snapshot`]: crate::Snapshot

use std::sync::Arc;

const CHUNK_BITS: usize = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

/// An append-only vector stored in chunks of [`CHUNK`] elements behind
/// `Arc`s: cloning copies the chunk pointers; pushing to (or changing) a
/// chunk shared with a clone copies that chunk first.
#[derive(Debug)]
pub(crate) struct ChunkVec<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for ChunkVec<T> {
    fn default() -> Self {
        ChunkVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Clone for ChunkVec<T> {
    fn clone(&self) -> Self {
        ChunkVec {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> std::ops::Index<usize> for ChunkVec<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T: Clone> ChunkVec<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `v`, returning its index.
    pub(crate) fn push(&mut self, v: T) -> usize {
        if self.len & (CHUNK - 1) == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let i = self.chunks.len() - 1;
        self.chunk_mut(i).push(v);
        self.len += 1;
        self.len - 1
    }

    /// The element at `i`, copying its chunk first if it is shared.
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunk_mut(i >> CHUNK_BITS)[i & (CHUNK - 1)]
    }

    fn chunk_mut(&mut self, c: usize) -> &mut Vec<T> {
        let chunk = &mut self.chunks[c];
        if Arc::get_mut(chunk).is_none() {
            let mut copy = Vec::with_capacity(CHUNK);
            copy.extend_from_slice(chunk);
            *chunk = Arc::new(copy);
        }
        Arc::make_mut(chunk)
    }

    /// Calls `f(first_index, chunk)` for every chunk, in order.
    pub(crate) fn for_each_chunk(&self, mut f: impl FnMut(usize, &[T])) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            f(c << CHUNK_BITS, chunk);
        }
    }
}

const ARENA_BITS: u32 = 16;
const ARENA_CHUNK: usize = 1 << ARENA_BITS;

/// Stat names, stored back to back in 64 KiB chunks shared by clones like
/// [`ChunkVec`]'s. A name is `(position, length)`: chunk `position >> 16`,
/// offset `position & 0xffff`. A name longer than a chunk gets a chunk of
/// its own.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameArena {
    chunks: Vec<Arc<String>>,
    bytes: usize,
}

impl NameArena {
    /// Stores `name`; `None` when the 4 GiB position space is used up.
    pub(crate) fn push(&mut self, name: &str) -> Option<u32> {
        // A name starts below offset 2^16 of its chunk and, unless it is
        // longer than a chunk, ends within it.
        let need_new = match self.chunks.last() {
            None => true,
            Some(last) => last.len() >= ARENA_CHUNK || last.len() + name.len() > ARENA_CHUNK,
        };
        if need_new {
            if self.chunks.len() >= (1usize << (32 - ARENA_BITS)) {
                return None;
            }
            self.chunks
                .push(Arc::new(String::with_capacity(ARENA_CHUNK.max(name.len()))));
        }
        let c = self.chunks.len() - 1;
        let chunk = &mut self.chunks[c];
        if Arc::get_mut(chunk).is_none() {
            let mut copy = String::with_capacity(ARENA_CHUNK.max(chunk.len() + name.len()));
            copy.push_str(chunk);
            *chunk = Arc::new(copy);
        }
        let chunk = Arc::make_mut(chunk);
        let offset = chunk.len();
        chunk.push_str(name);
        self.bytes += name.len();
        Some(((c << ARENA_BITS) | offset) as u32)
    }

    #[inline]
    pub(crate) fn get(&self, pos: u32, len: u32) -> &str {
        let pos = pos as usize;
        let offset = pos & (ARENA_CHUNK - 1);
        self.chunks
            .get(pos >> ARENA_BITS)
            .and_then(|c| c.get(offset..offset + len as usize))
            .unwrap_or("")
    }

    /// Bytes of names stored.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The hash [`IdIndex`] users key names with: an Fx-style multiply-rotate
/// over 8-byte words with a final avalanche (both the low bits, which pick
/// the slot, and the high bits, kept as a tag, must be well mixed).
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The hasher of the registry's maps keyed by names (tag-extracted names,
/// tag names and values) and of the tag producer's prefix map:
/// [`hash_bytes`] instead of std's SipHash, which was a tenth of extracting
/// a stat's tags. Names come from the configuration and the control plane,
/// not from requests, so the unkeyed hash gives no one a lever.
pub(crate) type NameHashBuilder = std::hash::BuildHasherDefault<NameHasher>;

/// The [`std::hash::Hasher`] of [`NameHashBuilder`].
#[derive(Debug, Default)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = (self.0.rotate_left(5) ^ hash_bytes(bytes)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const ID_BITS: u32 = 26;
const ID_MASK: u32 = (1 << ID_BITS) - 1;
const EMPTY: u32 = u32::MAX;

/// Ids an [`IdIndex`] can hold are below this.
pub(crate) const MAX_INDEXED_ID: usize = ID_MASK as usize;

/// An open-addressing hash index of ids below [`MAX_INDEXED_ID`]
/// (triangular probing, at most 3/4 full). Keys are not stored: a slot holds
/// the id and 6 bits of its hash, lookups compare the key through a closure
/// only when those bits match, and growing rehashes every id through
/// another closure.
#[derive(Debug, Default)]
pub(crate) struct IdIndex {
    slots: Vec<u32>,
    len: usize,
}

#[inline]
fn tag(hash: u64) -> u32 {
    ((hash >> 58) as u32) << ID_BITS
}

impl IdIndex {
    /// The id with this `hash` for which `eq` holds.
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let t = tag(hash);
        let mut i = hash as usize & mask;
        let mut step = 0;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s & !ID_MASK == t && eq(s & ID_MASK) {
                return Some(s & ID_MASK);
            }
            step += 1;
            i = (i + step) & mask;
        }
    }

    /// Adds `id` (below [`MAX_INDEXED_ID`], not already present) under
    /// `hash`; `rehash` gives the hash of any id already in the index.
    pub(crate) fn insert(&mut self, hash: u64, id: u32, rehash: impl Fn(u32) -> u64) {
        debug_assert!((id as usize) < MAX_INDEXED_ID);
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let cap = (self.slots.len() * 2).max(64);
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; cap]);
            for s in old.into_iter().filter(|&x| x != EMPTY) {
                let id = s & ID_MASK;
                self.place(rehash(id), id);
            }
        }
        self.place(hash, id);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, id: u32) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        let mut step = 0;
        while self.slots[i] != EMPTY {
            step += 1;
            i = (i + step) & mask;
        }
        self.slots[i] = tag(hash) | (id & ID_MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_vec_clones_share_and_copy_on_write() {
        let mut v = ChunkVec::default();
        for i in 0..(CHUNK + 10) {
            assert_eq!(v.push(i), i);
        }
        let snap = v.clone();
        v.push(1);
        *v.get_mut(3) = 99;
        assert_eq!(snap.len(), CHUNK + 10);
        assert_eq!(snap[3], 3);
        assert_eq!(v[3], 99);
        assert_eq!(v[CHUNK + 10], 1);
        // Unshared chunks are not copied.
        let p = Arc::as_ptr(&v.chunks[1]);
        v.push(2);
        assert_eq!(p, Arc::as_ptr(&v.chunks[1]));
    }

    #[test]
    fn arena_names() {
        let mut a = NameArena::default();
        let long = "x".repeat(ARENA_CHUNK + 5);
        let mut names = Vec::new();
        for i in 0..20_000 {
            let n = if i == 7_000 {
                long.clone()
            } else {
                format!("cluster.c{i:05}.upstream_cx_total")
            };
            let pos = a.push(&n).expect("room");
            names.push((pos, n));
        }
        let snap = a.clone();
        let pos = a.push("after.snapshot").expect("room");
        for (pos, n) in &names {
            assert_eq!(a.get(*pos, n.len() as u32), n);
            assert_eq!(snap.get(*pos, n.len() as u32), n);
        }
        assert_eq!(a.get(pos, 14), "after.snapshot");
    }

    #[test]
    fn index_finds_ids() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let mut idx = IdIndex::default();
        for (i, k) in keys.iter().enumerate() {
            let h = hash_bytes(k.as_bytes());
            assert!(idx.find(h, |id| keys[id as usize] == *k).is_none());
            idx.insert(h, i as u32, |id| hash_bytes(keys[id as usize].as_bytes()));
        }
        for (i, k) in keys.iter().enumerate() {
            let h = hash_bytes(k.as_bytes());
            assert_eq!(idx.find(h, |id| keys[id as usize] == *k), Some(i as u32));
        }
        assert!(idx.find(hash_bytes(b"nope"), |_| false).is_none());
    }
}

//! A fixed-capacity open-addressing hash index from a key's hash to a record number.
//!
//! The records themselves (orders, accounts, symbols) live in the engine's arrays; the index
//! stores only `(hash, record + 1)` in one `u64` per slot and asks the caller to compare keys.
//! Linear probing with backward-shift deletion: no tombstones, so it never needs a rehash, never
//! allocates after construction, and its lookups stay short at a load factor of at most two
//! thirds. It is never iterated, so its layout cannot leak into behaviour.

use crate::alloc::reserve_exact;
use crate::config::ConfigError;
use crate::prefetch::prefetch;

/// Slot value for "empty".
const EMPTY: u64 = 0;

/// A lookup in progress: the key's hash and its first slot, already loaded.
#[derive(Clone, Copy)]
pub(crate) struct Probe {
    hash: u32,
    first: u64,
}

pub(crate) struct Index {
    slots: Vec<u64>,
    mask: usize,
    len: usize,
    capacity: usize,
}

impl Index {
    /// An index for up to `capacity` keys (a table of at least 1.5 times that, a power of two,
    /// so a full index is at most two thirds loaded, where linear probing still finds a key in
    /// about two probes; the engine's indexes run far below their capacity),
    /// or an error if the allocator refuses the memory.
    pub(crate) fn with_capacity(capacity: usize) -> Result<Index, ConfigError> {
        let size = (capacity + capacity / 2 + 1).next_power_of_two().max(8);
        // Probe fallibly, then take zeroed memory, which the allocator maps lazily: an index
        // costs no time until it fills.
        drop(reserve_exact::<u64>(size)?);
        Ok(Index {
            slots: vec![EMPTY; size],
            mask: size - 1,
            len: 0,
            capacity,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Writes every slot with its own value, so the table's pages (zeroed memory the kernel
    /// maps on first write) are mapped now rather than by a later insert.
    pub(crate) fn commit_memory(&mut self) {
        for slot in &mut self.slots {
            *slot = std::hint::black_box(*slot);
        }
    }

    fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// The record whose key has `hash` and satisfies `is_key`.
    #[inline]
    pub(crate) fn find(&self, hash: u32, is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_from(self.start(hash), is_key)
    }

    /// Starts a lookup: loads the key's first slot now. A lookup whose slot is likely cold (a
    /// large index) is started early so the load overlaps other work, then finished with
    /// [`Index::find_from`].
    #[inline]
    pub(crate) fn start(&self, hash: u32) -> Probe {
        let home = self.home(hash);
        Probe {
            hash,
            // `black_box` keeps the compiler from sinking the load to its use.
            first: std::hint::black_box(self.slots[home]),
        }
    }

    /// Asks the CPU to bring `hash`'s first slot into cache, without waiting for it: for a
    /// lookup or removal known to come a few commands later (forgetting finished orders).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u32) {
        prefetch(&self.slots[self.home(hash)], 1);
    }

    /// Finishes a lookup started with [`Index::start`].
    #[inline]
    pub(crate) fn find_from(
        &self,
        probe: Probe,
        mut is_key: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let hash = probe.hash;
        let mut pos = self.home(hash);
        let mut slot = probe.first;
        loop {
            if slot == EMPTY {
                return None;
            }
            if (slot >> 32) as u32 == hash {
                let record = (slot as u32) - 1;
                if is_key(record) {
                    return Some(record);
                }
            }
            pos = (pos + 1) & self.mask;
            slot = self.slots[pos];
        }
    }

    /// Adds `record` under `hash`. The caller has checked the key is absent.
    #[inline]
    pub(crate) fn insert(&mut self, hash: u32, record: u32) {
        assert!(
            self.len < self.capacity,
            "index capacity is checked by callers"
        );
        let mut pos = self.home(hash);
        while self.slots[pos] != EMPTY {
            pos = (pos + 1) & self.mask;
        }
        self.slots[pos] = (u64::from(hash) << 32) | u64::from(record + 1);
        self.len += 1;
    }

    /// The slot holding `record` under `hash`.
    fn position(&self, hash: u32, record: u32) -> usize {
        let wanted = (u64::from(hash) << 32) | u64::from(record + 1);
        let mut pos = self.home(hash);
        while self.slots[pos] != wanted {
            assert!(self.slots[pos] != EMPTY, "record must be indexed");
            pos = (pos + 1) & self.mask;
        }
        pos
    }

    /// Makes the entry of `record` (present under `hash`) name `new_record` instead, in place.
    #[inline]
    pub(crate) fn retag(&mut self, hash: u32, record: u32, new_record: u32) {
        let pos = self.position(hash, record);
        self.slots[pos] = (u64::from(hash) << 32) | u64::from(new_record + 1);
    }

    /// Removes the entry of `record` (present under `hash`).
    #[inline]
    pub(crate) fn remove(&mut self, hash: u32, record: u32) {
        let mut hole = self.position(hash, record);
        // Backward shift: pull later entries of the same probe run into the hole when their
        // home position does not lie strictly between the hole and them.
        let mut next = (hole + 1) & self.mask;
        loop {
            let slot = self.slots[next];
            if slot == EMPTY {
                break;
            }
            let home = self.home((slot >> 32) as u32);
            let distance_home = next.wrapping_sub(home) & self.mask;
            let distance_hole = next.wrapping_sub(hole) & self.mask;
            if distance_home >= distance_hole {
                self.slots[hole] = slot;
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }
}

/// Folded multiply: the mixing step of wyhash/foldhash.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;
const K3: u64 = 0x082e_fa98_ec4e_6c89;

/// Hashes up to five words and a seed to the 32 bits the index keeps.
#[inline]
pub(crate) fn hash_words(seed: u64, words: &[u64]) -> u32 {
    let mut h = seed ^ K0;
    for pair in words.chunks(2) {
        let b = pair.get(1).copied().unwrap_or(0);
        h = fold_mul(h ^ pair[0] ^ K1, b ^ seed ^ K2);
    }
    (fold_mul(h, K3) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The index agrees with std's HashMap over random inserts, removes and retags (a
        /// record renumbered in place, as a finishing order's entry is), including forced
        /// collisions (few distinct hashes).
        #[test]
        fn index_matches_a_hashmap(ops in proptest::collection::vec((0u8..3, 0u32..200, 0u32..6), 1..600)) {
            let mut index = Index::with_capacity(400).unwrap();
            let mut model: HashMap<u32, u32> = HashMap::new(); // record -> hash
            for (op, record, hash_class) in ops {
                let hash = hash_class.wrapping_mul(0x9e37_79b9) | (hash_class & 1);
                // A retag moves a record to its twin 200 above (and back), as a finished
                // order's slot is tagged apart from live records.
                let twin = if record < 200 { record + 200 } else { record - 200 };
                match (op, model.get(&record).copied()) {
                    (0, None) if !model.contains_key(&twin) => {
                        index.insert(hash, record);
                        model.insert(record, hash);
                    }
                    (1, Some(h)) => { index.remove(h, record); model.remove(&record); }
                    (2, Some(h)) if !model.contains_key(&twin) => {
                        index.retag(h, record, twin);
                        model.remove(&record);
                        model.insert(twin, h);
                    }
                    _ => {}
                }
                prop_assert_eq!(index.len(), model.len());
                for (&r, &h) in &model {
                    prop_assert_eq!(index.find(h, |x| x == r), Some(r));
                }
                prop_assert_eq!(index.find(hash, |x| x == 999), None);
            }
        }
    }

    #[test]
    fn hash_depends_on_every_word_and_the_seed() {
        let base = hash_words(1, &[1, 2, 3, 4, 5, 6]);
        assert_ne!(base, hash_words(2, &[1, 2, 3, 4, 5, 6]));
        for i in 0..6 {
            let mut words = [1, 2, 3, 4, 5, 6];
            words[i] ^= 1 << 40;
            assert_ne!(base, hash_words(1, &words), "word {i}");
        }
    }
}

//! The client order ids of finished orders, remembered for duplicate detection.
//!
//! A fixed ring of `retired_ids_max` entries, oldest overwritten first. Kept apart from the live
//! order records so that those stay few and hot (recycled most-recently-freed first), while this
//! ring is only ever written in order.

use crate::alloc::{commit_capacity, reserve};
use crate::config::ConfigError;
use crate::types::{AccountId, OrderId};

/// One remembered id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetiredId {
    pub(crate) account: AccountId,
    pub(crate) order_id: OrderId,
    /// Its hash in the order index.
    pub(crate) hash: u32,
}

pub(crate) struct RetiredIds {
    ids: Vec<RetiredId>,
    capacity: u32,
    /// Slot of the oldest id.
    oldest: u32,
    len: u32,
}

impl RetiredIds {
    pub(crate) fn with_capacity(capacity: u32) -> Result<RetiredIds, ConfigError> {
        Ok(RetiredIds {
            ids: reserve(capacity)?,
            capacity,
            oldest: 0,
            len: 0,
        })
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Maps the ring's memory now (see `Engine::commit_memory`).
    pub(crate) fn commit_memory(&mut self, filler: OrderId) {
        let filler = RetiredId {
            account: AccountId(0),
            order_id: filler,
            hash: 0,
        };
        commit_capacity(&mut self.ids, filler);
    }

    pub(crate) fn get(&self, slot: u32) -> &RetiredId {
        &self.ids[slot as usize]
    }

    /// Remembers `id` in a slot, which it returns with the id it overwrote when full.
    /// Needs a capacity of at least one.
    pub(crate) fn push(&mut self, id: RetiredId) -> (u32, Option<RetiredId>) {
        assert!(self.capacity > 0);
        if self.len < self.capacity {
            let slot = (self.oldest + self.len) % self.capacity;
            if slot as usize == self.ids.len() {
                self.ids.push(id);
            } else {
                self.ids[slot as usize] = id;
            }
            self.len += 1;
            (slot, None)
        } else {
            let slot = self.oldest;
            let evicted = std::mem::replace(&mut self.ids[slot as usize], id);
            self.oldest = (self.oldest + 1) % self.capacity;
            (slot, Some(evicted))
        }
    }

    /// Slots and ids, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &RetiredId)> + '_ {
        (0..self.len).map(move |i| {
            let slot = (self.oldest + i) % self.capacity;
            (slot, &self.ids[slot as usize])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RetiredId {
        RetiredId {
            account: AccountId(n),
            order_id: OrderId::new("x").unwrap(),
            hash: n as u32,
        }
    }

    #[test]
    fn the_ring_forgets_the_oldest_first() {
        let mut ring = RetiredIds::with_capacity(3).unwrap();
        let (slot, evicted) = ring.push(id(1));
        assert!(slot == 0 && evicted.is_none());
        ring.push(id(2));
        ring.push(id(3));
        let (slot, evicted) = ring.push(id(4));
        assert_eq!((slot, evicted.map(|e| e.account)), (0, Some(AccountId(1))));
        let kept: Vec<u64> = ring.iter().map(|(_, e)| e.account.0).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(ring.len(), 3);
    }
}

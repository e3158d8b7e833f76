//! Finished orders (filled, cancelled, replaced), remembered with their final state for the
//! dedup window.
//!
//! Two parts, so that forgetting costs little:
//! - **Records**: a slab of up to `retired_ids_max` entries, a freed slot reused first (most
//!   recently freed first), so the records in use stay a compact set the size of what one window
//!   finishes, however large the configured capacity. Only lookups read a record.
//! - **Due**: a ring of 16-byte entries `(finished_at, hash, slot)` in finishing order, which is
//!   also the order they leave the window (log time never goes back). Forgetting reads only
//!   this ring, front to back, a sequential stream the hardware prefetches: never the records.
//!
//! It never overwrites: the engine keeps a place here for every live order (see
//! `Engine::finished_room`), so a push always finds room. Kept apart from the live records so
//! those stay few and hot.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::alloc::{commit_capacity, reserve};
use crate::config::ConfigError;
use crate::event::CancelReason;
use crate::prefetch::prefetch;
use crate::types::{AccountId, Lots, OrdType, OrderId, OrderStatus, Side, Ticks, TimestampNs};

/// One finished order, frozen as it finished. Snapshots hold it as it is, but for its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FinishedRec {
    pub(crate) account: AccountId,
    pub(crate) order_id: OrderId,
    /// The id that replaced it (status `Replaced`).
    pub(crate) replaced_by: Option<OrderId>,
    pub(crate) symbol: u32,
    pub(crate) side: Side,
    pub(crate) ord_type: OrdType,
    pub(crate) status: OrderStatus,
    /// Why it was cancelled (status `Cancelled`).
    pub(crate) reason: Option<CancelReason>,
    pub(crate) price: Ticks,
    pub(crate) total: Lots,
    pub(crate) filled: Lots,
    /// Sum of price × quantity over its trades, in ticks × lots.
    pub(crate) notional: u128,
    pub(crate) session: u64,
    pub(crate) number: u64,
    /// The engine time of the command that finished it.
    pub(crate) finished_at: TimestampNs,
    /// Its hash in the finished index (recomputed on restore).
    #[serde(skip)]
    pub(crate) hash: u32,
}

/// When a record finished, its index hash and its slot: what forgetting it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) finished_at: u64,
    pub(crate) hash: u32,
    pub(crate) slot: u32,
}

pub(crate) struct Finished {
    records: Vec<FinishedRec>,
    /// Freed slots, most recently freed last.
    free: Vec<u32>,
    /// Every record in use, oldest first.
    due: VecDeque<Due>,
    capacity: u32,
}

impl Finished {
    pub(crate) fn with_capacity(capacity: u32) -> Result<Finished, ConfigError> {
        Ok(Finished {
            records: reserve(capacity)?,
            free: reserve(capacity)?,
            // A vector's buffer becomes the deque's as it is (no reallocation).
            due: VecDeque::from(reserve::<Due>(capacity)?),
            capacity,
        })
    }

    pub(crate) fn len(&self) -> u32 {
        self.due.len() as u32
    }

    /// Maps the memory of all three parts now (see `Engine::commit_memory`).
    pub(crate) fn commit_memory(&mut self, filler: FinishedRec) {
        commit_capacity(&mut self.records, filler);
        commit_capacity(&mut self.free, 0);
        let (len, capacity) = (self.due.len(), self.due.capacity());
        let filler = Due {
            finished_at: 0,
            hash: 0,
            slot: 0,
        };
        self.due.resize(capacity, filler);
        self.due.truncate(len);
        assert_eq!(self.due.capacity(), capacity);
    }

    pub(crate) fn get(&self, slot: u32) -> &FinishedRec {
        &self.records[slot as usize]
    }

    /// The oldest entry's due-ring entry.
    #[inline]
    pub(crate) fn oldest(&self) -> Option<Due> {
        self.due.front().copied()
    }

    /// The due-ring entry `n` places after the oldest.
    #[inline]
    pub(crate) fn due_at(&self, n: usize) -> Option<Due> {
        self.due.get(n).copied()
    }

    /// Appends `rec`, returning its slot. The caller keeps room (len below capacity).
    pub(crate) fn push(&mut self, rec: FinishedRec) -> u32 {
        assert!(
            self.len() < self.capacity,
            "room for every finish is reserved"
        );
        let slot = match self.free.pop() {
            Some(slot) => {
                self.records[slot as usize] = rec;
                slot
            }
            None => {
                self.records.push(rec);
                (self.records.len() - 1) as u32
            }
        };
        self.due.push_back(Due {
            finished_at: rec.finished_at.0,
            hash: rec.hash,
            slot,
        });
        self.prefetch_next();
        slot
    }

    /// Starts loading the slot the next push will write (last written a window ago, so cold),
    /// so that its write finds it in cache.
    #[inline]
    pub(crate) fn prefetch_next(&self) {
        let next = match self.free.last() {
            Some(&slot) => slot as usize,
            None => self.records.len(),
        };
        let lines = std::mem::size_of::<FinishedRec>().div_ceil(64) + 1;
        prefetch(self.records.as_ptr().wrapping_add(next), lines);
    }

    /// Takes the oldest entry off, returning its due-ring entry; its slot is free.
    pub(crate) fn pop_oldest(&mut self) -> Due {
        let due = self.due.pop_front().expect("an entry to forget");
        self.free.push(due.slot);
        due
    }

    /// Whether every due-ring entry has its record's hash and finish time, and no slot is
    /// both in use and free (for `Engine::check_invariants`).
    pub(crate) fn due_agrees(&self) -> bool {
        let agree = self.due.iter().all(|due| {
            let rec = &self.records[due.slot as usize];
            rec.hash == due.hash && rec.finished_at.0 == due.finished_at
        });
        agree && self.due.len() + self.free.len() == self.records.len()
    }

    /// Slots and entries, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &FinishedRec)> + '_ {
        self.due
            .iter()
            .map(|due| (due.slot, &self.records[due.slot as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> FinishedRec {
        FinishedRec {
            account: AccountId(n),
            order_id: OrderId::new("x").unwrap(),
            replaced_by: None,
            symbol: 0,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            status: OrderStatus::Filled,
            reason: None,
            price: Ticks(1),
            total: Lots(1),
            filled: Lots(1),
            notional: 1,
            session: 0,
            number: n,
            finished_at: TimestampNs(n),
            hash: n as u32,
        }
    }

    #[test]
    fn entries_leave_first_in_first_out_and_freed_slots_are_reused() {
        let mut ring = Finished::with_capacity(3).unwrap();
        assert_eq!(ring.push(rec(1)), 0);
        ring.push(rec(2));
        ring.push(rec(3));
        assert_eq!((ring.pop_oldest().slot, ring.get(0).number), (0, 1));
        assert_eq!(ring.push(rec(4)), 0, "the freed slot first");
        let kept: Vec<u64> = ring.iter().map(|(_, e)| e.account.0).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(ring.oldest().map(|due| due.finished_at), Some(2));
        assert_eq!(ring.due_at(2).map(|due| due.hash), Some(4));
        assert_eq!(ring.len(), 3);
        for (slot, hash) in [(1, 2), (2, 3), (0, 4)] {
            let due = ring.pop_oldest();
            assert_eq!(
                (due.slot, due.hash, due.finished_at),
                (slot, hash, hash.into())
            );
        }
        assert!(ring.oldest().is_none() && ring.iter().next().is_none());
        assert_eq!(ring.push(rec(5)), 0, "most recently freed first");
    }

    #[test]
    #[should_panic(expected = "room for every finish is reserved")]
    fn a_full_ring_never_overwrites() {
        let mut ring = Finished::with_capacity(1).unwrap();
        ring.push(rec(1));
        ring.push(rec(2));
    }
}

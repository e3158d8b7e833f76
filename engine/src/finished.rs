//! Finished orders (filled, cancelled, replaced), remembered with their final state for the
//! dedup window.
//!
//! A slab of up to `retired_ids_max` entries, linked in the order they finished, which is also
//! the order they leave the window (log time never goes back): the engine unlinks expired
//! entries from the head and links finished ones at the tail. A freed slot is reused first
//! (most recently freed first), so the entries in use stay a compact, cache-warm set, the size
//! of what one window finishes, however large the configured capacity: a ring would instead
//! walk the whole capacity, writing every new entry to memory untouched for a long while. It
//! never overwrites: the engine keeps a place here for every live order (see
//! `Engine::finished_room`), so a push always finds room. Kept apart from the live records so
//! those stay few and hot.

use serde::{Deserialize, Serialize};

use crate::alloc::{commit_capacity, reserve};
use crate::config::ConfigError;
use crate::event::CancelReason;
use crate::types::{AccountId, Lots, OrdType, OrderId, OrderStatus, Side, Ticks, TimestampNs};

/// "No slot".
const NONE: u32 = u32::MAX;

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

/// A slot: an entry and the next slot in finishing order (or in the free list).
#[derive(Clone, Copy, Debug)]
struct Slot {
    rec: FinishedRec,
    next: u32,
}

pub(crate) struct Finished {
    slots: Vec<Slot>,
    capacity: u32,
    /// The oldest entry and the newest (`NONE` when empty).
    head: u32,
    tail: u32,
    /// Freed slots, most recently freed first, linked through `next`.
    free: u32,
    len: u32,
}

impl Finished {
    pub(crate) fn with_capacity(capacity: u32) -> Result<Finished, ConfigError> {
        Ok(Finished {
            slots: reserve(capacity)?,
            capacity,
            head: NONE,
            tail: NONE,
            free: NONE,
            len: 0,
        })
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Maps the slab's memory now (see `Engine::commit_memory`).
    pub(crate) fn commit_memory(&mut self, filler: FinishedRec) {
        commit_capacity(
            &mut self.slots,
            Slot {
                rec: filler,
                next: NONE,
            },
        );
    }

    pub(crate) fn get(&self, slot: u32) -> &FinishedRec {
        &self.slots[slot as usize].rec
    }

    /// The oldest entry.
    pub(crate) fn oldest(&self) -> Option<&FinishedRec> {
        (self.head != NONE).then(|| &self.slots[self.head as usize].rec)
    }

    /// Appends `rec`, returning its slot. The caller keeps room (len below capacity).
    pub(crate) fn push(&mut self, rec: FinishedRec) -> u32 {
        assert!(
            self.len < self.capacity,
            "room for every finish is reserved"
        );
        let entry = Slot { rec, next: NONE };
        let slot = if self.free != NONE {
            let slot = self.free;
            self.free = self.slots[slot as usize].next;
            self.slots[slot as usize] = entry;
            slot
        } else {
            self.slots.push(entry);
            (self.slots.len() - 1) as u32
        };
        if self.tail == NONE {
            self.head = slot;
        } else {
            self.slots[self.tail as usize].next = slot;
        }
        self.tail = slot;
        self.len += 1;
        slot
    }

    /// Takes the oldest entry off, returning its slot and hash.
    pub(crate) fn pop_oldest(&mut self) -> (u32, u32) {
        assert!(self.len > 0);
        let slot = self.head;
        let entry = &mut self.slots[slot as usize];
        let (next, hash) = (entry.next, entry.rec.hash);
        entry.next = self.free;
        self.free = slot;
        self.head = next;
        if next == NONE {
            self.tail = NONE;
        }
        self.len -= 1;
        (slot, hash)
    }

    /// Slots and entries, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &FinishedRec)> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            (at != NONE).then(|| {
                let slot = at;
                at = self.slots[slot as usize].next;
                (slot, &self.slots[slot as usize].rec)
            })
        })
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
        assert_eq!(ring.pop_oldest(), (0, 1));
        assert_eq!(ring.push(rec(4)), 0, "the freed slot first");
        let kept: Vec<u64> = ring.iter().map(|(_, e)| e.account.0).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(ring.oldest().map(|e| e.account.0), Some(2));
        assert_eq!(ring.len(), 3);
        for expected in [(1, 2), (2, 3), (0, 4)] {
            assert_eq!(ring.pop_oldest(), expected);
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

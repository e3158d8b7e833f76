//! Finished orders (filled, cancelled, replaced), remembered with their final state for the
//! dedup window.
//!
//! A FIFO ring of up to `retired_ids_max` entries in the order they finished, which is also the
//! order they leave the window (log time never goes back): the engine pops expired entries from
//! the head and pushes finished ones at the tail. It never overwrites: the engine keeps a place
//! here for every live order (see `Engine::finished_room`), so a push always finds room. Kept
//! apart from the live records so those stay few and hot, while this ring is written in order.

use crate::alloc::{commit_capacity, reserve};
use crate::config::ConfigError;
use crate::event::CancelReason;
use crate::types::{AccountId, Lots, OrdType, OrderId, OrderStatus, Side, Ticks, TimestampNs};

/// One finished order, frozen as it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Its hash in the finished index.
    pub(crate) hash: u32,
}

pub(crate) struct Finished {
    recs: Vec<FinishedRec>,
    capacity: u32,
    /// Slot of the oldest entry.
    head: u32,
    len: u32,
}

impl Finished {
    pub(crate) fn with_capacity(capacity: u32) -> Result<Finished, ConfigError> {
        Ok(Finished {
            recs: reserve(capacity)?,
            capacity,
            head: 0,
            len: 0,
        })
    }

    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// Maps the ring's memory now (see `Engine::commit_memory`).
    pub(crate) fn commit_memory(&mut self, filler: FinishedRec) {
        commit_capacity(&mut self.recs, filler);
    }

    pub(crate) fn get(&self, slot: u32) -> &FinishedRec {
        &self.recs[slot as usize]
    }

    /// The oldest entry.
    pub(crate) fn oldest(&self) -> Option<&FinishedRec> {
        (self.len > 0).then(|| &self.recs[self.head as usize])
    }

    /// Appends `rec`, returning its slot. The caller keeps room (len below capacity).
    pub(crate) fn push(&mut self, rec: FinishedRec) -> u32 {
        assert!(
            self.len < self.capacity,
            "room for every finish is reserved"
        );
        let slot = (self.head + self.len) % self.capacity;
        if slot as usize == self.recs.len() {
            self.recs.push(rec);
        } else {
            self.recs[slot as usize] = rec;
        }
        self.len += 1;
        slot
    }

    /// Takes the oldest entry off the ring, returning its slot and hash.
    pub(crate) fn pop_oldest(&mut self) -> (u32, u32) {
        assert!(self.len > 0);
        let slot = self.head;
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        (slot, self.recs[slot as usize].hash)
    }

    /// Slots and entries, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &FinishedRec)> + '_ {
        (0..self.len).map(move |i| {
            let slot = (self.head + i) % self.capacity;
            (slot, &self.recs[slot as usize])
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
    fn the_ring_is_first_in_first_out_and_wraps() {
        let mut ring = Finished::with_capacity(3).unwrap();
        assert_eq!(ring.push(rec(1)), 0);
        ring.push(rec(2));
        ring.push(rec(3));
        assert_eq!(ring.pop_oldest(), (0, 1));
        assert_eq!(ring.push(rec(4)), 0);
        let kept: Vec<u64> = ring.iter().map(|(_, e)| e.account.0).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(ring.oldest().map(|e| e.account.0), Some(2));
        assert_eq!(ring.len(), 3);
    }

    #[test]
    #[should_panic(expected = "room for every finish is reserved")]
    fn a_full_ring_never_overwrites() {
        let mut ring = Finished::with_capacity(1).unwrap();
        ring.push(rec(1));
        ring.push(rec(2));
    }
}

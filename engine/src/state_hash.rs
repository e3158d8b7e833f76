//! `state_hash()`: a digest of the canonical state, independent of memory layout.
//!
//! It walks the state in an order defined by behaviour, never by storage: symbols in listing
//! order, each side best level first, each level oldest order first, accounts in the order of
//! their first accepted order (with their kill switch), finished orders oldest first with their
//! final state, armed switches sorted by (deadline, account, session), plus the counters and
//! the settings that decide rejects. Record numbers and the hash seed (layout only) are left out. Two replicas that
//! applied the same log, or one that restored a snapshot and replayed the rest, hash equal.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

use crate::engine::{Engine, NIL};
use crate::event::CancelReason;
use crate::finished::FinishedRec;
use crate::types::{OrdType, OrderStatus, Side, Stp, TradingStatus};

/// A 128-bit state digest (XXH3-128), printed as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StateHash(pub u128);

impl fmt::Display for StateHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

struct Feed(Xxh3);

impl Feed {
    fn u64(&mut self, value: u64) {
        self.0.update(&value.to_le_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.0.update(&value.to_le_bytes());
    }
    fn u128(&mut self, value: u128) {
        self.0.update(&value.to_le_bytes());
    }
    fn bytes(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.0.update(value.as_bytes());
    }
    fn finished(&mut self, f: &FinishedRec) {
        self.u64(f.account.0);
        self.bytes(f.order_id.as_str());
        self.bytes(f.replaced_by.as_ref().map_or("", |id| id.as_str()));
        self.u64(u64::from(f.symbol));
        let side = u64::from(f.side == Side::Sell);
        let ord_type = u64::from(f.ord_type == OrdType::Market) << 1;
        let status = (f.status as u64) << 8;
        let reason = f.reason.map_or(0, |r| r as u64 + 1) << 16;
        self.u64(side | ord_type | status | reason);
        self.i64(f.price.0);
        self.u64(f.total.0);
        self.u64(f.filled.0);
        self.u128(f.notional);
        self.u64(f.session);
        self.u64(f.number);
        self.u64(f.finished_at.0);
    }
}

/// Spelled out so a reordering of the enums cannot silently change the hash.
const _: () = {
    assert!(OrderStatus::Replaced as u64 == 4 && CancelReason::KillSwitch as u64 == 6);
};

fn stp_code(stp: Stp) -> u64 {
    match stp {
        Stp::None => 0,
        Stp::CancelTaker => 1,
        Stp::CancelMaker => 2,
        Stp::CancelBoth => 3,
    }
}

impl Engine {
    /// The digest of the canonical state; see the module docs. O(state): call it at
    /// checkpoints, not per command.
    pub fn state_hash(&self) -> StateHash {
        let mut feed = Feed(Xxh3::new());
        feed.bytes("exchange-engine-state-v2");
        let c = &self.config;
        for count in [
            c.symbols_max,
            c.accounts_max,
            c.orders_max,
            c.retired_ids_max,
            c.levels_max,
            c.levels_per_side_max,
            c.switches_max,
        ] {
            feed.u64(u64::from(count));
        }
        feed.u64(c.dedup_window_ns);
        feed.u64(self.clock.0);
        feed.u64(self.next_event_seq);
        feed.u64(self.next_prio);
        feed.u64(self.next_number);
        // Rules 1 hashes as before rules were in the state, so hashes stay comparable with
        // older binaries' reports.
        if self.rules != 1 {
            feed.u64(u64::from(self.rules));
        }

        feed.u64(self.books.len() as u64);
        for book in &self.books {
            feed.bytes(book.name.as_str());
            feed.i64(book.tick.0);
            feed.i64(book.lot.0);
            feed.u64(u64::from(book.status == TradingStatus::CancelOnly));
            feed.u64(book.updates);
            feed.u64(book.trades);
            for side in &book.sides {
                feed.u64(side.len() as u64);
                for level_ref in side.iter().rev() {
                    let level = &self.levels[level_ref.level as usize];
                    feed.i64(level.price.0);
                    feed.u64(u64::from(level.count));
                    let mut rec = level.head;
                    while rec != NIL {
                        let order = &self.orders[rec as usize];
                        let cold = &self.order_cold[rec as usize];
                        feed.u64(order.account.0);
                        feed.bytes(order.order_id.as_str());
                        feed.u64(order.leaves.0);
                        feed.u64(order.total.0);
                        feed.u128(cold.notional);
                        feed.u64(cold.session);
                        feed.u64(cold.number);
                        feed.u64(order.prio);
                        feed.u64(stp_code(order.stp) | (u64::from(order.post_only) << 8));
                        rec = order.next;
                    }
                }
            }
        }

        feed.u64(self.accounts.len() as u64);
        for account in &self.accounts {
            feed.u64(account.id.0);
            feed.u64(u64::from(account.disabled));
        }

        feed.u64(u64::from(self.finished.len()));
        for (_, f) in self.finished.iter() {
            feed.finished(f);
        }
        let switches = self.switches.sorted();
        feed.u64(switches.len() as u64);
        for s in &switches {
            feed.u64(s.deadline);
            feed.u64(s.account.0);
            feed.u64(s.session);
        }
        StateHash(feed.0.digest128())
    }
}

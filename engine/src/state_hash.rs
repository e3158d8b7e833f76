//! `state_hash()`: a digest of the canonical state, independent of memory layout.
//!
//! It walks the state in an order defined by behaviour, never by storage: symbols in listing
//! order, each side best level first, each level oldest order first, accounts in the order of
//! their first accepted order, retired ids oldest first, plus the counters and the capacities that decide
//! rejects. Record numbers and the hash seed (layout only) are left out. Two replicas that
//! applied the same log, or one that restored a snapshot and replayed the rest, hash equal.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

use crate::engine::{Engine, NIL};
use crate::types::Stp;

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
    fn bytes(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.0.update(value.as_bytes());
    }
}

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
        feed.bytes("exchange-engine-state-v1");
        let c = &self.config;
        for count in [
            c.symbols_max,
            c.accounts_max,
            c.orders_max,
            c.retired_ids_max,
            c.levels_max,
            c.levels_per_side_max,
        ] {
            feed.u64(u64::from(count));
        }
        feed.u64(self.clock.0);
        feed.u64(self.next_event_seq);
        feed.u64(self.next_prio);

        feed.u64(self.books.len() as u64);
        for book in &self.books {
            feed.bytes(book.name.as_str());
            feed.i64(book.tick.0);
            feed.i64(book.lot.0);
            for side in &book.sides {
                feed.u64(side.len() as u64);
                for level_ref in side.iter().rev() {
                    let level = &self.levels[level_ref.level as usize];
                    feed.i64(level.price.0);
                    feed.u64(u64::from(level.count));
                    let mut rec = level.head;
                    while rec != NIL {
                        let order = &self.orders[rec as usize];
                        feed.u64(order.account.0);
                        feed.bytes(order.order_id.as_str());
                        feed.u64(order.leaves.0);
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
        }

        feed.u64(u64::from(self.retired.len()));
        for (_, id) in self.retired.iter() {
            feed.u64(id.account.0);
            feed.bytes(id.order_id.as_str());
        }
        StateHash(feed.0.digest128())
    }
}

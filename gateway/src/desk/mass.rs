//! Mass cancels of every symbol on a site of several shards: one command per shard, one answer
//! to the session once every shard applied its part.

use std::collections::VecDeque;

use engine::{AccountId, MassCancel};

use super::report::ToSession;

/// A mass cancel of every symbol, sent to several shards, waiting for their answers.
struct PendingMass {
    id: u64,
    account: AccountId,
    /// Bit `s` is set while shard `s` has not applied its part.
    waiting: u64,
    cancelled: u32,
}

/// The mass cancels of every symbol submitted here to several shards, oldest first, until
/// every shard has applied its part.
#[derive(Default)]
pub struct MassCancels {
    pending: VecDeque<PendingMass>,
    next_id: u64,
}

impl MassCancels {
    /// Starts waiting for the shards in the mask `shards` to apply `account`'s mass cancel;
    /// returns its id.
    pub fn begin(&mut self, account: AccountId, shards: u64) -> u64 {
        self.next_id += 1;
        self.pending.push_back(PendingMass {
            id: self.next_id,
            account,
            waiting: shards,
            cancelled: 0,
        });
        self.next_id
    }

    /// Shard `shard`'s log refused its part of mass cancel `id`: no answer will come from it.
    /// Returns the orders cancelled if nothing is waiting any more (the answer is then due,
    /// if any shard took it).
    pub fn refused(&mut self, id: u64, shard: usize) -> Option<u32> {
        let at = self.pending.iter().position(|p| p.id == id)?;
        self.pending[at].waiting &= !(1 << shard);
        if self.pending[at].waiting != 0 {
            return None;
        }
        self.pending.remove(at).map(|done| done.cancelled)
    }

    /// The answer to a mass cancel that shard `shard` applied, having cancelled `cancelled`
    /// of the account's orders: at once for one symbol (or a site of one shard), or, for every
    /// symbol across shards, once the last shard answers the oldest such request of the
    /// account sent from here. One sent from another site (on a shared log) is answered shard
    /// by shard.
    pub fn done(&mut self, shard: usize, mass: MassCancel, cancelled: u32) -> Option<ToSession> {
        let answer = |cancelled| ToSession::MassCancelDone {
            symbol: mass.symbol,
            cancelled,
        };
        let bit = 1 << shard;
        let Some(at) = (mass.symbol.is_none())
            .then(|| {
                self.pending
                    .iter()
                    .position(|p| p.account == mass.account && p.waiting & bit != 0)
            })
            .flatten()
        else {
            return Some(answer(cancelled));
        };
        let pending = &mut self.pending[at];
        pending.waiting &= !bit;
        pending.cancelled = pending.cancelled.saturating_add(cancelled);
        if pending.waiting != 0 {
            return None;
        }
        let done = self.pending.remove(at).expect("found");
        Some(answer(done.cancelled))
    }
}

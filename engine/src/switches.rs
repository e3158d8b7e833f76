//! Dead-man's switches: the armed `(account, session)` pairs and their deadlines.
//!
//! A binary min-heap of switch records ordered by `(deadline, account, session)`, the order in
//! which due switches fire, plus an [`Index`] from `(account, session)` to the record. Records
//! are dense (a removal moves the last record into the hole), the heap holds record numbers and
//! each record its heap position, so arming, refreshing and disarming are O(log n) and nothing
//! is allocated after construction. The heap's layout never leaks: only its minimum is read,
//! and the state hash and snapshots list switches sorted.

use crate::alloc::{commit_capacity, reserve};
use crate::config::ConfigError;
use crate::index::{hash_words, Index};
use crate::types::AccountId;

/// One armed switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Switch {
    pub(crate) deadline: u64,
    pub(crate) account: AccountId,
    pub(crate) session: u64,
    hash: u32,
    /// Its position in the heap.
    at: u32,
}

impl Switch {
    fn key(&self) -> (u64, u64, u64) {
        (self.deadline, self.account.0, self.session)
    }
}

pub(crate) struct Switches {
    recs: Vec<Switch>,
    heap: Vec<u32>,
    index: Index,
    capacity: u32,
    seed: u64,
    /// The earliest deadline, `u64::MAX` when none is armed: one compare per command.
    next_deadline: u64,
}

impl Switches {
    pub(crate) fn with_capacity(capacity: u32, seed: u64) -> Result<Switches, ConfigError> {
        Ok(Switches {
            recs: reserve(capacity)?,
            heap: reserve(capacity)?,
            index: Index::with_capacity(capacity as usize)?,
            capacity,
            seed,
            next_deadline: u64::MAX,
        })
    }

    pub(crate) fn len(&self) -> u32 {
        self.recs.len() as u32
    }

    pub(crate) fn next_deadline(&self) -> u64 {
        self.next_deadline
    }

    /// Maps the tables' memory now (see `Engine::commit_memory`).
    pub(crate) fn commit_memory(&mut self) {
        let filler = Switch {
            deadline: 0,
            account: AccountId(0),
            session: 0,
            hash: 0,
            at: 0,
        };
        commit_capacity(&mut self.recs, filler);
        commit_capacity(&mut self.heap, 0);
        self.index.commit_memory();
    }

    fn hash(&self, account: AccountId, session: u64) -> u32 {
        hash_words(self.seed, &[account.0, session])
    }

    fn find(&self, account: AccountId, session: u64) -> Option<u32> {
        self.index.find(self.hash(account, session), |rec| {
            let s = &self.recs[rec as usize];
            s.account == account && s.session == session
        })
    }

    /// The deadline of (`account`, `session`), if armed.
    pub(crate) fn deadline(&self, account: AccountId, session: u64) -> Option<u64> {
        self.find(account, session)
            .map(|rec| self.recs[rec as usize].deadline)
    }

    /// Whether arming (`account`, `session`) needs a record that is not there.
    pub(crate) fn is_full_for(&self, account: AccountId, session: u64) -> bool {
        self.len() >= self.capacity && self.find(account, session).is_none()
    }

    /// Arms or refreshes (`account`, `session`) to `deadline`. The caller has checked room.
    pub(crate) fn arm(&mut self, account: AccountId, session: u64, deadline: u64) {
        match self.find(account, session) {
            Some(rec) => {
                let at = self.recs[rec as usize].at;
                self.recs[rec as usize].deadline = deadline;
                self.sift_up(at);
                let at = self.recs[rec as usize].at;
                self.sift_down(at);
            }
            None => {
                assert!(
                    self.len() < self.capacity,
                    "switch room is checked by callers"
                );
                let rec = self.len();
                let hash = self.hash(account, session);
                self.recs.push(Switch {
                    deadline,
                    account,
                    session,
                    hash,
                    at: rec,
                });
                self.heap.push(rec);
                self.index.insert(hash, rec);
                self.sift_up(rec);
            }
        }
        self.refresh_next();
    }

    /// Disarms (`account`, `session`) if armed.
    pub(crate) fn disarm(&mut self, account: AccountId, session: u64) {
        if let Some(rec) = self.find(account, session) {
            self.remove(rec);
        }
    }

    /// Takes off and returns the earliest switch if its deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Switch> {
        // `next_deadline` is `u64::MAX` when none is armed, which `now` can equal.
        if self.heap.is_empty() || self.next_deadline > now {
            return None;
        }
        let rec = self.heap[0];
        let due = self.recs[rec as usize];
        self.remove(rec);
        Some(due)
    }

    /// Every armed switch, sorted by (deadline, account, session).
    pub(crate) fn sorted(&self) -> Vec<Switch> {
        let mut all = self.recs.clone();
        all.sort_unstable_by_key(Switch::key);
        all
    }

    fn remove(&mut self, rec: u32) {
        let switch = self.recs[rec as usize];
        self.index.remove(switch.hash, rec);
        // Out of the heap: the last heap entry takes its position, then settles.
        let last_at = self.len() - 1;
        self.swap_heap(switch.at, last_at);
        self.heap.pop();
        if switch.at < last_at {
            let settling = self.heap[switch.at as usize];
            self.sift_up(switch.at);
            self.sift_down(self.recs[settling as usize].at);
        }
        // Out of the records: the last record moves into the hole.
        let last = self.len() - 1;
        if rec != last {
            let moved = self.recs[last as usize];
            self.index.remove(moved.hash, last);
            self.index.insert(moved.hash, rec);
            self.recs[rec as usize] = moved;
            self.heap[moved.at as usize] = rec;
        }
        self.recs.pop();
        self.refresh_next();
    }

    fn refresh_next(&mut self) {
        self.next_deadline = self
            .heap
            .first()
            .map_or(u64::MAX, |&rec| self.recs[rec as usize].deadline);
    }

    fn key_at(&self, at: u32) -> (u64, u64, u64) {
        self.recs[self.heap[at as usize] as usize].key()
    }

    fn swap_heap(&mut self, a: u32, b: u32) {
        self.heap.swap(a as usize, b as usize);
        let (ra, rb) = (self.heap[a as usize], self.heap[b as usize]);
        self.recs[ra as usize].at = a;
        self.recs[rb as usize].at = b;
    }

    fn sift_up(&mut self, mut at: u32) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.key_at(parent) <= self.key_at(at) {
                break;
            }
            self.swap_heap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: u32) {
        let len = self.heap.len() as u32;
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if left < len && self.key_at(left) < self.key_at(least) {
                least = left;
            }
            if right < len && self.key_at(right) < self.key_at(least) {
                least = right;
            }
            if least == at {
                break;
            }
            self.swap_heap(at, least);
            at = least;
        }
    }

    /// Checks the heap property, the positions and the index (for `check_invariants`).
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.heap.len() != self.recs.len() || self.index.len() != self.recs.len() {
            return Err("switch table sizes disagree".into());
        }
        for (at, &rec) in self.heap.iter().enumerate() {
            let s = &self.recs[rec as usize];
            if s.at as usize != at || self.find(s.account, s.session) != Some(rec) {
                return Err(format!("switch {}/{} misplaced", s.account.0, s.session));
            }
            if at > 0 && self.key_at(((at - 1) / 2) as u32) > s.key() {
                return Err("switch heap out of order".into());
            }
        }
        let min = self.sorted().first().map_or(u64::MAX, |s| s.deadline);
        if min != self.next_deadline {
            return Err("cached next deadline is stale".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Arm, disarm and pop agree with a sorted map, and due switches come out in
        /// (deadline, account, session) order.
        #[test]
        fn switches_match_a_sorted_map(
            ops in proptest::collection::vec((0u8..4, 0u64..4, 0u64..3, 0u64..50), 1..300),
        ) {
            let mut switches = Switches::with_capacity(12, 7).unwrap();
            let mut model: BTreeMap<(u64, u64), u64> = BTreeMap::new();
            for (op, account, session, t) in ops {
                match op {
                    0 | 1 => {
                        if !switches.is_full_for(AccountId(account), session) {
                            switches.arm(AccountId(account), session, t);
                            model.insert((account, session), t);
                        }
                    }
                    2 => {
                        switches.disarm(AccountId(account), session);
                        model.remove(&(account, session));
                    }
                    _ => {
                        let mut due: Vec<(u64, u64, u64)> = model
                            .iter()
                            .filter(|(_, &d)| d <= t)
                            .map(|(&(a, s), &d)| (d, a, s))
                            .collect();
                        due.sort();
                        for (d, a, s) in due {
                            let popped = switches.pop_due(t).unwrap();
                            prop_assert_eq!((popped.deadline, popped.account.0, popped.session), (d, a, s));
                            model.remove(&(a, s));
                        }
                        prop_assert!(switches.pop_due(t).is_none());
                    }
                }
                prop_assert_eq!(switches.check(), Ok(()));
                prop_assert_eq!(switches.len() as usize, model.len());
                for (&(a, s), &d) in &model {
                    prop_assert_eq!(switches.deadline(AccountId(a), s), Some(d));
                }
            }
        }
    }
}

//! `SimLog`: the Kafka partition a shard sequences into, in memory, with the semantics the
//! sites rely on.
//!
//! - A record is appended only by the leader, stamped with the log's clock (log-append time:
//!   the producer's stamp is kept beside it, as [`crate::tap::Tapped`] keeps it, for the
//!   dead-man's-switch check), and is committed at once: the simulator's partition has no
//!   follower lag, so its high watermark is its end.
//! - Idempotent producers: each producer (a site's incarnation, or its next epoch after a
//!   delivery timed out) numbers its records from 0; the leader appends only the next number
//!   it expects from it, a retry of a number already appended appends nothing (the broker's
//!   duplicate check) and a number past the expected one waits for the ones before it (out
//!   of order: the producer retries). A record whose delivery the producer gave up on may
//!   still be appended if it comes late, in its turn: its outcome was unknown, not failed.
//! - A leader move stalls the partition: nothing is appended or fetched until the new leader
//!   serves ([`SimLog::stall`]).

use std::collections::BTreeMap;

use engine::Command;

/// What became of a produce request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Append {
    /// Appended at this position.
    At(u64),
    /// Its producer's number was appended before: nothing appended (acknowledged again).
    Duplicate,
    /// A number past the next expected from its producer: refused (the producer retries).
    OutOfOrder,
    /// The leader is moving: no answer (the producer retries).
    Stalled,
}

/// The partition.
#[derive(Default)]
pub struct SimLog {
    /// Committed records: the command with the log's time, and its producer's stamp.
    records: Vec<(Command, u64)>,
    /// The number each producer's next record must have.
    expected: BTreeMap<u64, u64>,
    /// No leader before this simulated time.
    stalled_until: u64,
    /// The log's clock never goes back.
    clock: u64,
}

impl SimLog {
    /// Appends `command` from `producer`'s record `number` at simulated time `now`, unless
    /// the leader is moving or the record is a retry of one appended.
    pub fn append(&mut self, now: u64, producer: u64, number: u64, command: Command) -> Append {
        if now < self.stalled_until {
            return Append::Stalled;
        }
        let expected = self.expected.entry(producer).or_default();
        match number.cmp(expected) {
            std::cmp::Ordering::Less => return Append::Duplicate,
            std::cmp::Ordering::Greater => return Append::OutOfOrder,
            std::cmp::Ordering::Equal => *expected += 1,
        }
        self.clock = self.clock.max(now);
        let stamped = command.ts.0;
        self.records
            .push((Command::new(self.clock, command.kind), stamped));
        Append::At(self.records.len() as u64 - 1)
    }

    /// Appends a command no producer sent (the listing at the start of a run).
    pub fn seed(&mut self, command: Command) {
        self.clock = self.clock.max(command.ts.0);
        self.records.push((command, command.ts.0));
    }

    /// Up to `max` committed records from position `from`, or `None` while the leader moves.
    pub fn fetch(&self, now: u64, from: u64, max: usize) -> Option<&[(Command, u64)]> {
        if now < self.stalled_until {
            return None;
        }
        let from = (from as usize).min(self.records.len());
        let to = from.saturating_add(max).min(self.records.len());
        Some(&self.records[from..to])
    }

    /// The high watermark: the position of the next record.
    pub fn end(&self) -> u64 {
        self.records.len() as u64
    }

    /// The leader moves: no append or fetch is served until `until`.
    pub fn stall(&mut self, until: u64) {
        self.stalled_until = self.stalled_until.max(until);
    }

    /// Every committed record, from the first.
    pub fn records(&self) -> &[(Command, u64)] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::CommandKind;

    fn clock(ts: u64) -> Command {
        Command::new(ts, CommandKind::Clock)
    }

    #[test]
    fn a_retried_record_is_appended_once_in_its_turn_and_time_is_the_logs() {
        let mut log = SimLog::default();
        assert_eq!(log.append(10, 1, 0, clock(999)), Append::At(0));
        assert_eq!(log.append(20, 1, 0, clock(999)), Append::Duplicate);
        assert_eq!(log.append(25, 1, 2, clock(5)), Append::OutOfOrder);
        assert_eq!(log.append(30, 1, 1, clock(5)), Append::At(1));
        // Another producer (a restarted site) numbers from 0 again.
        assert_eq!(log.append(40, 2, 0, clock(5)), Append::At(2));
        let times: Vec<(u64, u64)> = log.records().iter().map(|(c, s)| (c.ts.0, *s)).collect();
        assert_eq!(times, vec![(10, 999), (30, 5), (40, 5)]);
        assert_eq!(log.end(), 3);
    }

    #[test]
    fn a_moving_leader_serves_nothing_until_it_has_moved() {
        let mut log = SimLog::default();
        log.append(0, 1, 0, clock(0));
        log.stall(100);
        assert_eq!(log.append(50, 1, 1, clock(50)), Append::Stalled);
        assert!(log.fetch(50, 0, 10).is_none());
        assert_eq!(log.fetch(100, 0, 10).map(<[_]>::len), Some(1));
        assert_eq!(log.append(100, 1, 1, clock(50)), Append::At(1));
        assert_eq!(log.fetch(100, 1, 10).map(<[_]>::len), Some(1));
        assert_eq!(log.fetch(100, 7, 10).map(<[_]>::len), Some(0));
    }
}

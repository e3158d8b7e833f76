//! Whether a site is behind its log. A site that restarted, or reads its log slowly, would
//! acknowledge a new order only once it has read everything before it, and would answer a
//! status question from old state; another site answers at once. So while a shard has not
//! read up to the log's committed end as it was `max_lag` ago, its site refuses the shard's
//! new orders, amends and status questions with `catching_up` (what takes risk off still
//! goes: `adds_risk` in `shard.rs`), and `/health` says `catching_up`.
//!
//! The feeder (the one thread that reads the log) says after every read where it is and
//! where the log ends ([`Freshness::observe`]). The end it must reach next is the end as it
//! was when it reached the previous one: a site steadily a few milliseconds behind a busy
//! log is never behind one end for long; a site replaying a backlog is behind the same end
//! until it has read it. A shard that has just started is behind from the start, until it
//! has read the end it saw first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `seen_ms` of the end a shard saw first: behind it since before it started.
const AT_START: u64 = u64::MAX;

/// One shard's reading position against its log's end.
pub struct Freshness {
    /// How long the shard may stay behind one end (`None`: never catching up, as on the
    /// journal, whose only site has nowhere else to send its members).
    max_lag: Option<Duration>,
    started: Instant,
    /// The committed end the shard has still to read...
    target: AtomicU64,
    /// ...and when it was seen, milliseconds after `started` ([`AT_START`] for the first).
    seen_ms: AtomicU64,
    /// The next position the shard reads.
    read: AtomicU64,
}

impl Freshness {
    /// A shard about to read from `read`, whose log ends at `end`.
    pub fn new(max_lag: Option<Duration>, read: u64, end: u64) -> Freshness {
        Freshness {
            max_lag,
            started: Instant::now(),
            target: AtomicU64::new(end),
            seen_ms: AtomicU64::new(AT_START),
            read: AtomicU64::new(read),
        }
    }

    /// The feeder reads `read` next; the log's committed end is `end` as last known.
    pub fn observe(&self, read: u64, end: u64) {
        self.read.store(read, Ordering::Release);
        if read >= self.target.load(Ordering::Relaxed) {
            self.seen_ms.store(self.now_ms(), Ordering::Relaxed);
            self.target.store(end, Ordering::Release);
        }
    }

    /// How long the shard has been behind the end it must reach next (zero when it has
    /// read it; `None` when it has been behind since it started).
    pub fn behind(&self) -> Option<Duration> {
        let target = self.target.load(Ordering::Acquire);
        let seen_ms = self.seen_ms.load(Ordering::Relaxed);
        if self.read.load(Ordering::Acquire) >= target {
            return Some(Duration::ZERO);
        }
        match seen_ms {
            AT_START => None,
            seen => Some(Duration::from_millis(self.now_ms().saturating_sub(seen))),
        }
    }

    /// Whether the shard has been behind one end longer than its limit (or since it started).
    pub fn catching_up(&self) -> bool {
        let Some(max_lag) = self.max_lag else {
            return false;
        };
        self.behind().is_none_or(|behind| behind > max_lag)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_millis(40);

    #[test]
    fn a_shard_that_starts_behind_catches_up_when_it_reads_the_first_end_it_saw() {
        let fresh = Freshness::new(Some(LAG), 100, 500);
        assert!(fresh.catching_up(), "behind since it started");
        fresh.observe(400, 700);
        assert!(fresh.catching_up(), "not yet at 500");
        fresh.observe(500, 700);
        assert!(!fresh.catching_up(), "read 500: the next end, 700, is new");
        assert!(fresh.behind().unwrap() < LAG);
    }

    #[test]
    fn a_shard_behind_one_end_longer_than_its_limit_is_catching_up() {
        let fresh = Freshness::new(Some(LAG), 0, 0);
        fresh.observe(0, 0);
        fresh.observe(0, 1_000);
        assert!(!fresh.catching_up(), "the end 1000 was seen just now");
        std::thread::sleep(LAG * 2);
        fresh.observe(10, 1_000);
        assert!(
            fresh.catching_up(),
            "still short of 1000 after twice the limit"
        );
        assert!(fresh.behind().unwrap() >= LAG * 2);
        fresh.observe(1_000, 1_200);
        assert!(!fresh.catching_up());
    }

    #[test]
    fn a_shard_a_little_behind_a_busy_log_is_never_catching_up() {
        let fresh = Freshness::new(Some(LAG), 0, 0);
        let mut end = 0;
        for _ in 0..20 {
            // Each read reaches the end seen at the read before, while the log moves on.
            fresh.observe(end, end + 50);
            end += 50;
            std::thread::sleep(LAG / 4);
            assert!(!fresh.catching_up());
        }
    }

    #[test]
    fn without_a_limit_a_shard_is_never_catching_up() {
        let fresh = Freshness::new(None, 0, 1_000_000);
        assert!(!fresh.catching_up());
        assert_eq!(fresh.behind(), None);
    }
}

//! Whether a site is behind its log. A site that restarted, or reads its log slowly, would
//! acknowledge a new order only once it has read everything before it, and would answer a
//! status question from old state; another site answers at once. So while a shard reads its
//! log more than `max_lag` behind (the log's committed end was where the shard reads now
//! more than `max_lag` ago), its site refuses the shard's new orders, amends and status
//! questions with `catching_up` (what takes risk off still goes: `adds_risk` in
//! `shard.rs`), and `/health` says `catching_up`.
//!
//! The feeder (the one thread that reads the log) says after every read where it is and
//! where the log ends ([`Freshness::observe`]). Freshness keeps the ends it has not yet read,
//! each with when it was first seen (one per [`RESOLUTION_MS`]), so the lag is the age of the
//! newest end the shard has read past: a site steadily a few milliseconds behind a busy log
//! lags a few milliseconds; one steadily three seconds behind lags three seconds all the
//! time. (It used to keep one end to reach: a site steadily seconds behind reached it, was
//! fresh for `max_lag`, then behind again; in between its clock check, which measures the
//! same lag in time, called its right clock skewed.) A shard that has just started lags
//! since it started, until it has read the end it saw first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Ends seen within this many milliseconds of the last one kept are merged into it.
pub const RESOLUTION_MS: u64 = 10;
/// At most this many ends kept (10 s of a log that grows all the time); beyond, the newest
/// is merged into, which can only make the lag look longer.
const CAPACITY: usize = 1024;

/// `level_ms` of a shard that has not read the first end it saw: behind since it started.
const AT_START: u64 = u64::MAX;
/// `level_ms` of a shard that has read the end as last known.
const CAUGHT_UP: u64 = u64::MAX - 1;

/// One shard's reading position against its log's end.
pub struct Freshness {
    /// How long the shard may lag (`None`: never catching up, as on the journal, whose only
    /// site has nowhere else to send its members).
    max_lag: Option<Duration>,
    started: Instant,
    /// The ends not yet read past, oldest first, behind the newest that was: the feeder's
    /// alone, so the lock is never contended.
    ends: Mutex<VecDeque<Seen>>,
    /// When the log last ended where the shard reads, milliseconds after `started` (or
    /// [`AT_START`], [`CAUGHT_UP`]).
    level_ms: AtomicU64,
}

/// A committed end of the log and when it was first seen, milliseconds after `started`.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at_ms: u64,
    end: u64,
}

impl Freshness {
    /// A shard about to read from `read`, whose log ends at `end`.
    pub fn new(max_lag: Option<Duration>, read: u64, end: u64) -> Freshness {
        let mut ends = VecDeque::with_capacity(CAPACITY);
        ends.push_back(Seen { at_ms: 0, end });
        let level = if read >= end { CAUGHT_UP } else { AT_START };
        Freshness {
            max_lag,
            started: Instant::now(),
            ends: Mutex::new(ends),
            level_ms: AtomicU64::new(level),
        }
    }

    /// The feeder reads `read` next; the log's committed end is `end` as last known.
    pub fn observe(&self, read: u64, end: u64) {
        self.observe_at(read, end, self.now_ms());
    }

    /// How long ago the log's committed end was where the shard reads now (zero when it has
    /// read the end as last known; `None` when it has been behind since it started).
    pub fn behind(&self) -> Option<Duration> {
        self.behind_at(self.now_ms())
    }

    /// Whether the shard lags more than its limit (or has since it started).
    pub fn catching_up(&self) -> bool {
        self.catching_up_at(self.now_ms())
    }

    /// [`Freshness::observe`] at `now_ms`, milliseconds after the shard started on a clock of
    /// the caller's (the simulator's, which has no wall clock).
    pub fn observe_at(&self, read: u64, end: u64, now_ms: u64) {
        let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        let full = ends.len() == CAPACITY;
        match ends.back_mut() {
            Some(last) if end <= last.end => {}
            Some(last) if now_ms < last.at_ms + RESOLUTION_MS || full => {
                last.end = end;
            }
            _ => ends.push_back(Seen { at_ms: now_ms, end }),
        }
        while ends.get(1).is_some_and(|next| next.end <= read) {
            ends.pop_front();
        }
        let level = match ends.front() {
            Some(first) if first.end <= read && ends.len() == 1 => CAUGHT_UP,
            Some(first) if first.end <= read => first.at_ms,
            _ => return,
        };
        self.level_ms.store(level, Ordering::Release);
    }

    /// [`Freshness::catching_up`] at `now_ms` on the caller's clock (see
    /// [`Freshness::observe_at`]).
    pub fn catching_up_at(&self, now_ms: u64) -> bool {
        let Some(max_lag) = self.max_lag else {
            return false;
        };
        self.behind_at(now_ms).is_none_or(|behind| behind > max_lag)
    }

    fn behind_at(&self, now_ms: u64) -> Option<Duration> {
        match self.level_ms.load(Ordering::Acquire) {
            AT_START => None,
            CAUGHT_UP => Some(Duration::ZERO),
            level => Some(Duration::from_millis(now_ms.saturating_sub(level))),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_millis(1_000);

    fn catching_up(fresh: &Freshness, now_ms: u64) -> bool {
        fresh.behind_at(now_ms).is_none_or(|behind| behind > LAG)
    }

    #[test]
    fn a_shard_that_starts_behind_lags_since_it_started_until_it_reads_the_first_end() {
        let fresh = Freshness::new(Some(LAG), 100, 500);
        assert_eq!(fresh.behind_at(0), None, "behind since it started");
        fresh.observe_at(400, 700, 300);
        assert_eq!(fresh.behind_at(300), None, "not yet at 500");
        fresh.observe_at(500, 700, 600);
        assert_eq!(fresh.behind_at(600), Some(Duration::from_millis(600)));
        fresh.observe_at(700, 700, 650);
        assert_eq!(fresh.behind_at(650), Some(Duration::ZERO));
    }

    /// Seen in a drill: a restarted site read its log steadily 2-4 s behind. With one end to
    /// reach, it reached it, was fresh for `max_lag`, then behind again; in the fresh
    /// moments its clock check (which measures the lag in time) called its clock skewed.
    #[test]
    fn a_shard_steadily_behind_longer_than_its_limit_is_catching_up_all_the_time() {
        let fresh = Freshness::new(Some(LAG), 0, 0);
        // The log grows one record a millisecond; the shard reads it 3 s late.
        for now in (0..20_000u64).step_by(5) {
            fresh.observe_at(now.saturating_sub(3_000), now, now);
            if now > 3_100 {
                let behind = fresh.behind_at(now).unwrap();
                assert!(catching_up(&fresh, now), "at {now} ms: {behind:?}");
                let ms = behind.as_millis() as u64;
                assert!((3_000..=3_000 + 2 * RESOLUTION_MS).contains(&ms), "{ms}");
            }
        }
    }

    #[test]
    fn a_shard_a_little_behind_a_busy_log_is_never_catching_up() {
        let fresh = Freshness::new(Some(LAG), 0, 0);
        for now in (0..20_000u64).step_by(5) {
            // Each read reaches the end seen at the read before, while the log moves on.
            fresh.observe_at(now.saturating_sub(5), now, now);
            assert!(!catching_up(&fresh, now), "at {now} ms");
        }
    }

    #[test]
    fn a_shard_that_reads_faster_than_its_log_grows_catches_up() {
        let fresh = Freshness::new(Some(LAG), 0, 10_000);
        let mut read = 0;
        let mut left_behind = None;
        for now in (0..20_000u64).step_by(5) {
            read = (read + 20).min(10_000 + now);
            fresh.observe_at(read, 10_000 + now, now);
            if left_behind.is_none() && !catching_up(&fresh, now) {
                left_behind = Some(now);
            }
        }
        // 10,000 records at 3 a millisecond net: caught up within about 3.4 s.
        assert!(left_behind.is_some_and(|ms| ms < 4_000), "{left_behind:?}");
        assert_eq!(fresh.behind_at(20_000), Some(Duration::ZERO));
    }

    #[test]
    fn a_backlog_longer_than_its_memory_never_looks_shorter_than_it_is() {
        let fresh = Freshness::new(Some(LAG), 0, 0);
        // The shard stands still for a minute while the log grows.
        for now in (0..60_000u64).step_by(5) {
            fresh.observe_at(0, now + 1, now);
            assert!(fresh.behind_at(now).unwrap() <= Duration::from_millis(now));
        }
        // Then reads forward, always 30 s behind: the lag it says is at least that.
        for now in (60_000..90_000u64).step_by(5) {
            fresh.observe_at(now - 30_000, now + 1, now);
            assert!(fresh.behind_at(now).unwrap() >= Duration::from_millis(30_000));
        }
    }

    #[test]
    fn without_a_limit_a_shard_is_never_catching_up() {
        let fresh = Freshness::new(None, 0, 1_000_000);
        assert!(!fresh.catching_up());
        assert_eq!(fresh.behind(), None);
    }
}

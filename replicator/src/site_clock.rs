//! A site's clock checked against its log's. On Kafka, log time is the records' timestamps:
//! the broker's append time on a production topic, the producers' create times on the
//! development brokers (librdkafka's mock cluster, tansu), where a site whose clock is fast
//! would move every site's log time by its error and fire every dead-man's switch early. So
//! each site keys its records with its name, and its reader measures the other sites'
//! records against its own clock: a record stamped `t` and read at monotonic instant `r`
//! says the log's time is at least `t + (now - r)` now. The best such bound (the largest:
//! a record read late only makes it smaller) against the site's clock says how far ahead of
//! the log's time that clock runs, give or take the shortest delivery delay.
//!
//! Nothing to check against, nothing is said: before the site has read another site's
//! record, or when none came for [`QUIET`] (the other sites dark or silent), its clock is
//! trusted. Only a clock ahead matters: one behind stamps records the engine's clock
//! ignores (log time never goes back).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// After this long without another site's record, a site's clock goes unchecked.
pub const QUIET: Duration = Duration::from_secs(5);

/// No record of another site read yet.
const NONE: i64 = i64::MIN;

/// The best bound on the log's time so far, kept as log time minus this clock's monotonic
/// time (both in nanoseconds), and when another site's record was last read.
#[derive(Debug)]
pub struct SiteClock {
    /// How long without another site's record before the clock goes unchecked.
    quiet: Duration,
    epoch: Instant,
    /// `max(t - r)` over the other sites' records read: `t` their log time, `r` when read.
    best: AtomicI64,
    /// When the last of them was read, nanoseconds after `epoch`.
    last_read: AtomicU64,
}

impl Default for SiteClock {
    fn default() -> SiteClock {
        SiteClock::new(QUIET)
    }
}

impl SiteClock {
    /// A clock unchecked after `quiet` without another site's record.
    pub fn new(quiet: Duration) -> SiteClock {
        SiteClock {
            quiet,
            epoch: Instant::now(),
            best: AtomicI64::new(NONE),
            last_read: AtomicU64::new(0),
        }
    }

    /// Another site's record, stamped `log_time_ns`, was read just now.
    pub fn read(&self, log_time_ns: u64) {
        let now = self.mono_ns();
        let bound = (log_time_ns as i64).saturating_sub(now as i64);
        self.best.fetch_max(bound, Ordering::Relaxed);
        self.last_read.store(now, Ordering::Relaxed);
    }

    /// How far `clock_ns` (this site's clock, now) is ahead of the log's time, in
    /// milliseconds (negative: behind); `None` when there is nothing to check it against.
    pub fn ahead_ms(&self, clock_ns: u64) -> Option<i64> {
        let best = self.best.load(Ordering::Relaxed);
        let now = self.mono_ns();
        let quiet = now.saturating_sub(self.last_read.load(Ordering::Relaxed));
        if best == NONE || quiet > self.quiet.as_nanos() as u64 {
            return None;
        }
        let log_now = best.saturating_add(now as i64);
        Some((clock_ns as i64).saturating_sub(log_now) / 1_000_000)
    }

    fn mono_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000_000 * MS;

    #[test]
    fn unchecked_until_another_sites_record_is_read() {
        let clock = SiteClock::default();
        assert_eq!(clock.ahead_ms(T0), None);
        clock.read(T0);
        let ahead = clock.ahead_ms(T0 + 300_000 * MS).unwrap();
        assert!((299_900..=300_000).contains(&ahead), "{ahead}");
    }

    #[test]
    fn a_record_read_late_does_not_lower_the_bound() {
        let clock = SiteClock::default();
        clock.read(T0);
        // Read now but stamped a second earlier: it was delivered late.
        clock.read(T0 - 1_000 * MS);
        let ahead = clock.ahead_ms(T0).unwrap();
        assert!((0..=50).contains(&ahead), "{ahead}");
    }

    /// Seen in the 100-fault drill: a restarted site reading its log steadily 0.5-1 s behind
    /// (not catching up: within `max_lag_ms`) found a right clock 0.5-1 s ahead, over the
    /// node's limit of 500 ms then, and refused orders as `clock_skew` for minutes. A reader
    /// behind sees its clock ahead by its lag: the node's limit adds `max_lag_ms`.
    #[test]
    fn a_reader_behind_its_log_finds_its_clock_ahead_by_its_lag() {
        let clock = SiteClock::default();
        // Every record read 800 ms after it was stamped.
        clock.read(T0 - 800 * MS);
        clock.read(T0 - 810 * MS);
        let ahead = clock.ahead_ms(T0).unwrap();
        assert!((790..=810).contains(&ahead), "{ahead}");
    }

    #[test]
    fn the_bound_moves_with_this_sites_monotonic_clock() {
        let clock = SiteClock::default();
        clock.read(T0);
        std::thread::sleep(Duration::from_millis(100));
        // A right clock has moved 100 ms too: not ahead.
        let ahead = clock.ahead_ms(T0 + 100 * MS).unwrap();
        assert!((-50..=5).contains(&ahead), "{ahead}");
        // One that did not move is behind.
        assert!(clock.ahead_ms(T0).unwrap() <= -95);
    }

    #[test]
    fn unchecked_again_when_no_other_sites_record_comes() {
        let clock = SiteClock::new(Duration::from_millis(50));
        clock.read(T0);
        assert!(clock.ahead_ms(T0).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(clock.ahead_ms(T0 + 300_000 * MS), None);
    }
}

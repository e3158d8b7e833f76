//! When the drill's load stops. It is planned to last the run's duration, but a fault waits
//! until every site is ready again (a restarted site replaying its backlog), so the plan's
//! last faults can come late; the control thread then pushes the end back, so that every
//! fault comes while the members trade and its clients have time to move and be answered,
//! and holds it while a fault is under way (its sites' return can take longer than any
//! margin: seen, a partition whose sites were ready 18.8 s after it healed, the planned end
//! passing meanwhile, and the members stopping while the faults went on for 300 s).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The load's end, shared by the tasks that make the load and the control thread that may
/// push it back (never forward).
#[derive(Clone, Debug)]
pub struct LoadEnd {
    started: Instant,
    /// Milliseconds after `started`.
    end_ms: Arc<AtomicU64>,
    /// Faults under way: the load does not end while there is one.
    holds: Arc<AtomicUsize>,
}

/// A fault under way: the load goes on at least until it is dropped.
#[derive(Debug)]
pub struct LoadHold(Arc<AtomicUsize>);

impl Drop for LoadHold {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoadEnd {
    /// A load from `started` for `planned`.
    pub fn new(started: Instant, planned: Duration) -> LoadEnd {
        LoadEnd {
            started,
            end_ms: Arc::new(AtomicU64::new(planned.as_millis() as u64)),
            holds: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// When the load started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When the load stops, as it stands now.
    pub fn at(&self) -> Instant {
        self.started + Duration::from_millis(self.end_ms.load(Ordering::Acquire))
    }

    /// Whether the load has stopped: its end has passed and no fault is under way.
    pub fn reached(&self) -> bool {
        self.holds.load(Ordering::Acquire) == 0 && Instant::now() >= self.at()
    }

    /// Holds the load on until the returned guard is dropped (a fault under way).
    pub fn hold(&self) -> LoadHold {
        self.holds.fetch_add(1, Ordering::AcqRel);
        LoadHold(self.holds.clone())
    }

    /// The load lasts at least until `at`.
    pub fn not_before(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.started).as_millis() as u64;
        self.end_ms.fetch_max(ms, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_moves_back_only() {
        let started = Instant::now();
        let end = LoadEnd::new(started, Duration::from_secs(10));
        let seen_by_a_task = end.clone();
        end.not_before(started + Duration::from_secs(5));
        assert_eq!(seen_by_a_task.at(), started + Duration::from_secs(10));
        end.not_before(started + Duration::from_secs(25));
        assert_eq!(seen_by_a_task.at(), started + Duration::from_secs(25));
        assert!(!seen_by_a_task.reached());
    }

    #[test]
    fn a_fault_under_way_holds_the_load_past_its_end() {
        let end = LoadEnd::new(Instant::now(), Duration::ZERO);
        assert!(end.reached());
        let hold = end.hold();
        let seen_by_a_task = end.clone();
        assert!(!seen_by_a_task.reached(), "held");
        drop(hold);
        assert!(seen_by_a_task.reached());
    }
}

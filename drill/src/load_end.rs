//! When the drill's load stops. It is planned to last the run's duration, but a fault waits
//! until every site is ready again (a restarted site replaying its backlog), so the plan's
//! last faults can come late; the control thread then pushes the end back, so that every
//! fault comes while the members trade and its clients have time to move and be answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The load's end, shared by the tasks that make the load and the control thread that may
/// push it back (never forward).
#[derive(Clone, Debug)]
pub struct LoadEnd {
    started: Instant,
    /// Milliseconds after `started`.
    end_ms: Arc<AtomicU64>,
}

impl LoadEnd {
    /// A load from `started` for `planned`.
    pub fn new(started: Instant, planned: Duration) -> LoadEnd {
        LoadEnd {
            started,
            end_ms: Arc::new(AtomicU64::new(planned.as_millis() as u64)),
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

    /// Whether the load has stopped.
    pub fn reached(&self) -> bool {
        Instant::now() >= self.at()
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
}

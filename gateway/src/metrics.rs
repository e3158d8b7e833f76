//! Counters and latency histograms the node exposes as metrics. Any thread records into them
//! (relaxed atomics); the node renders them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::RejectReason;

/// A latency histogram with fixed buckets that any thread can record into (Prometheus
/// exposition: cumulative buckets, sum and count).
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Bucket upper bounds, microseconds (the last bucket is +Inf).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000,
];

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record_us(&self, us: u64) {
        let at = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time from `ts` (nanoseconds since the Unix epoch: a command's log time, as
    /// its sequencer stamped it) to now.
    pub fn record_since(&self, ts: u64) {
        self.record_us(now_ns().saturating_sub(ts) / 1_000);
    }

    /// Cumulative counts per bound (the last is +Inf), the sum in µs, and the count.
    pub fn read(&self) -> (Vec<(Option<u64>, u64)>, u64, u64) {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (at, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            out.push((LATENCY_BOUNDS_US.get(at).copied(), total));
        }
        (
            out,
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Wall-clock nanoseconds since the Unix epoch (the gateway's stamp on commands, which the log
/// replaces with its own time).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Every engine reject reason, in the order of [`HubCounters::rejects`].
pub const REJECT_REASONS: [RejectReason; 13] = [
    RejectReason::UnknownSymbol,
    RejectReason::DuplicateOrderId,
    RejectReason::InvalidQty,
    RejectReason::InvalidPrice,
    RejectReason::InvalidTif,
    RejectReason::PostOnly,
    RejectReason::UnknownOrder,
    RejectReason::DuplicateSymbol,
    RejectReason::InvalidTick,
    RejectReason::InvalidLot,
    RejectReason::Capacity,
    RejectReason::AccountDisabled,
    RejectReason::CancelOnly,
];

/// Counters the node exposes as metrics.
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Engine rejects, by reason ([`REJECT_REASONS`] order).
    pub rejects: [AtomicU64; REJECT_REASONS.len()],
    /// From the log's stamp on a command (the journal writer's clock as it sequenced it, or
    /// the Kafka record's timestamp, in whole milliseconds) to the pump seeing it applied.
    pub applied_latency: LatencyHistogram,
    pub submitted: AtomicU64,
    pub submit_busy: AtomicU64,
    pub submit_unavailable: AtomicU64,
    pub submit_catching_up: AtomicU64,
    pub submit_clock_skew: AtomicU64,
    /// Binary new orders resent from longer ago than the dedup window under an id the site
    /// does not know, refused as `stale_resend` (FIX counts its own).
    pub stale_resends: AtomicU64,
    pub events: AtomicU64,
    pub applied: AtomicU64,
    pub reports: AtomicU64,
    pub slow_consumers: AtomicU64,
}

//! What a run measured ([`RunResult`], serialisable to JSON) and a text table of runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gateway::binary::reason;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles of acknowledged requests, in microseconds (recorded in nanoseconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests in the histogram.
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    /// The summary of a histogram of nanoseconds.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        let at = |q: f64| us(histogram.value_at_quantile(q));
        Latency {
            count: histogram.len(),
            min: us(histogram.min()),
            mean: histogram.mean().round() / 1_000.0,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            p9999: at(0.9999),
            max: us(histogram.max()),
        }
    }
}

/// Requests that did not get a usable acknowledgement, by cause.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    /// Refused by the gateway: the log's queue was full (`reason::BUSY`).
    pub busy: u64,
    /// Refused by the gateway: the log cannot take orders (`reason::UNAVAILABLE`), the
    /// site is far behind it (`reason::CATCHING_UP`) or its clock ahead of it
    /// (`reason::CLOCK_SKEW`).
    pub unavailable: u64,
    /// Refused by the gateway: over the session's message rate (`reason::THROTTLED`).
    pub throttled: u64,
    /// Acknowledged later than the timeout, or never (on a connection still up).
    pub timeout: u64,
    /// Sent on, or planned for, a connection that was lost before they were acknowledged.
    pub disconnected: u64,
    /// Answers the protocol does not allow (session rejects, undecodable frames).
    pub protocol: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.busy
            + self.unavailable
            + self.throttled
            + self.timeout
            + self.disconnected
            + self.protocol
    }

    pub(crate) fn add(&mut self, other: &Errors) {
        self.busy += other.busy;
        self.unavailable += other.unavailable;
        self.throttled += other.throttled;
        self.timeout += other.timeout;
        self.disconnected += other.disconnected;
        self.protocol += other.protocol;
    }
}

/// Requests sent and acknowledged per time bucket, from the start of the schedule (warm-up
/// included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bucket_ms: u64,
    pub sent: Vec<u64>,
    pub acked: Vec<u64>,
}

/// One run at one rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Requests per second the schedule asked for (every message type counts).
    pub rate_target: f64,
    /// Requests per second actually sent in the measured window.
    pub rate_achieved: f64,
    /// Requests sent in the measured window (after the warm-up).
    pub orders: u64,
    /// Of those, acknowledged by the engine (engine rejects included, gateway refusals not).
    pub acked: u64,
    /// Requests with no usable acknowledgement, over the whole run (setup and warm-up too).
    pub errors: u64,
    /// Latency from each request's intended send time to its acknowledgement, measured window.
    pub latency_us: Latency,
    /// The same per request type (`new`, `cancel`, `replace`, `mass_cancel`).
    pub latency_by_type: BTreeMap<String, Latency>,
    /// Percentile curves, `[percentile, µs]`, for `all` and per request type.
    pub percentiles: BTreeMap<String, Vec<[f64; 2]>>,
    pub error_counts: Errors,
    /// Engine rejects by reason (`unknown_order`, ...): answered, but not as the flow planned.
    pub rejects: BTreeMap<String, u64>,
    /// Scheduled requests per type (warm-up included).
    pub requests: BTreeMap<String, u64>,
    pub connections: usize,
    pub connections_lost: u64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Requests the generator sent more than 1 ms after their intended time (it fell behind
    /// and caught up; their latency still counts from the intended time).
    pub late_sends: u64,
    pub max_send_lag_us: f64,
    pub throughput: Throughput,
}

impl RunResult {
    /// Why this run does not hold its rate, if it does not: p99 above `p99_bound_us`, less than
    /// 95% of the target rate sent, or more than 0.1% errors.
    pub fn shortfall(&self, p99_bound_us: f64) -> Option<String> {
        if self.orders == 0 {
            return Some("nothing was sent".into());
        }
        if self.latency_us.p99 > p99_bound_us {
            return Some(format!(
                "p99 {:.1} µs above {:.1} µs",
                self.latency_us.p99, p99_bound_us
            ));
        }
        if self.rate_achieved < 0.95 * self.rate_target {
            return Some(format!(
                "sent {:.0}/s, below 95% of {:.0}/s",
                self.rate_achieved, self.rate_target
            ));
        }
        if self.errors as f64 > 0.001 * self.orders as f64 {
            return Some(format!(
                "{} errors in {} requests",
                self.errors, self.orders
            ));
        }
        None
    }
}

/// The name of an engine reject reason code (BINARY-PROTOCOL.md).
pub(crate) fn reject_name(code: u8) -> String {
    let name = match code {
        reason::UNKNOWN_SYMBOL => "unknown_symbol",
        reason::DUPLICATE_ORDER_ID => "duplicate_order_id",
        reason::INVALID_QTY => "invalid_qty",
        reason::INVALID_PRICE => "invalid_price",
        reason::INVALID_TIF => "invalid_tif",
        reason::POST_ONLY => "post_only",
        reason::UNKNOWN_ORDER => "unknown_order",
        reason::CAPACITY => "capacity",
        reason::DUPLICATE_SYMBOL => "duplicate_symbol",
        reason::INVALID_TICK => "invalid_tick",
        reason::INVALID_LOT => "invalid_lot",
        other => return format!("code_{other}"),
    };
    name.to_string()
}

/// A text table of runs, one line each: rates, counts and latency percentiles in µs.
pub fn table(runs: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "target/s",
        "sent/s",
        "requests",
        "errors",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "p99.99 µs",
        "max µs"
    );
    for run in runs {
        let l = &run.latency_us;
        let _ = writeln!(
            out,
            "{:>10.0} {:>10.0} {:>10} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1}",
            run.rate_target,
            run.rate_achieved,
            run.orders,
            run.errors,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.p9999,
            l.max
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for ns in 1..=1000u64 {
            h.record(ns * 1_000).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99 - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max - 1000.0).abs() < 1.0, "{l:?}");
        assert!((l.min - 1.0).abs() < 0.01, "{l:?}");
    }

    #[test]
    fn a_run_holds_only_within_every_bound() {
        let ok = RunResult {
            rate_target: 1000.0,
            rate_achieved: 990.0,
            orders: 10_000,
            latency_us: Latency {
                p99: 500.0,
                ..Latency::default()
            },
            ..RunResult::default()
        };
        assert_eq!(ok.shortfall(1000.0), None);
        assert!(ok.shortfall(400.0).unwrap().contains("p99"));
        let slow = RunResult {
            rate_achieved: 900.0,
            ..ok.clone()
        };
        assert!(slow.shortfall(1000.0).unwrap().contains("95%"));
        let failing = RunResult {
            errors: 11,
            ..ok.clone()
        };
        assert!(failing.shortfall(1000.0).unwrap().contains("errors"));
        let table = table(&[ok]);
        assert_eq!(table.lines().count(), 2);
        assert!(table.contains("500.0"));
    }
}

//! Latency against offered rate, open loop, as exchange-core publishes it: command `i` of a
//! run at rate R is due at `start + i / R`; the thread waits (spinning) until it is due, applies
//! it and records the time from when it was due to the end of `apply`. A command that finds
//! the engine still busy with earlier ones waits, and that wait counts: no coordinated
//! omission. Rates go 1 M, 2 M, 5 M, 10 M, ... commands/s until the median passes 10 µs.
//!
//! Each rate starts from the same state: the setup, then the first half of the stream applied
//! flat out (unmeasured, so the indexes and free lists are warm as in a running engine); the
//! second half is scheduled.

use std::time::{Duration, Instant};

use engine::{Engine, Event};

use crate::workload::Workload;
use crate::{histogram, ns};

/// Median beyond which the sweep stops.
const P50_LIMIT_NS: u64 = 10_000;
const RATES: [u64; 7] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];

/// How often the machine takes the CPU away from a spinning thread: over one second of reading
/// the clock in a loop, the gaps between consecutive reads longer than 1 µs and 10 µs, and the
/// share of the second they add up to. Every open-loop latency carries these stalls.
fn stalls() -> (u64, u64, f64) {
    let window = Duration::from_secs(1);
    let (mut over_1us, mut over_10us, mut stalled) = (0, 0, Duration::ZERO);
    let start = Instant::now();
    let mut last = start;
    while last - start < window {
        let now = Instant::now();
        let gap = now - last;
        if gap > Duration::from_micros(1) {
            over_1us += 1;
            stalled += gap;
        }
        if gap > Duration::from_micros(10) {
            over_10us += 1;
        }
        last = now;
    }
    (
        over_1us,
        over_10us,
        stalled.as_secs_f64() / (last - start).as_secs_f64(),
    )
}

pub fn sweep(workload: &Workload) {
    let (over_1us, over_10us, share) = stalls();
    println!(
        "Machine noise: in 1 s of spinning, this thread was stopped {over_1us} times for over \
         1 µs, {over_10us} of them for over 10 µs ({:.2}% of the time in all).",
        share * 100.0
    );
    println!();
    let (warm_up, scheduled) = workload.stream.split_at(workload.stream.len() / 2);
    let mut engine = Engine::new(workload.engine_config).expect("the workload's config");
    let mut sink: Vec<Event> = Vec::with_capacity(1 << 12);
    for cmd in workload.setup.iter().chain(warm_up) {
        sink.clear();
        engine.apply(cmd, &mut sink);
    }
    let start_state = engine.snapshot();
    drop(engine);
    println!(
        "Open loop, {}: {} scheduled commands per rate after {} unmeasured; latency from the \
         intended time to the end of `apply`",
        workload.name,
        scheduled.len(),
        warm_up.len()
    );
    println!();
    println!("| offered (commands/s) | achieved | p50 | p99 | p99.9 | p99.99 | max |");
    println!("|---|---|---|---|---|---|---|");
    for rate in RATES {
        let mut engine = Engine::restore(&start_state).expect("own snapshot restores");
        engine.commit_memory();
        let mut latency_ns = histogram();
        let interval_ps = 1_000_000_000_000 / rate;
        // A little ahead, so the first command is not due before the loop starts.
        let start = Instant::now() + Duration::from_micros(100);
        for (i, cmd) in scheduled.iter().enumerate() {
            let due = start + Duration::from_nanos(i as u64 * interval_ps / 1000);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            sink.clear();
            engine.apply(cmd, &mut sink);
            latency_ns.saturating_record(due.elapsed().as_nanos() as u64);
        }
        let achieved = scheduled.len() as f64 / start.elapsed().as_secs_f64();
        let q = |quantile| ns(latency_ns.value_at_quantile(quantile));
        println!(
            "| {} M | {:.2} M | {} | {} | {} | {} | {} |",
            rate / 1_000_000,
            achieved / 1e6,
            q(0.5),
            q(0.99),
            q(0.999),
            q(0.9999),
            ns(latency_ns.max())
        );
        if latency_ns.value_at_quantile(0.5) > P50_LIMIT_NS {
            break;
        }
    }
    println!();
}

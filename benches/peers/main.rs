//! Our engine beside two Rust order books, lobster 0.7.0 and orderbook-rs 0.15.3, on the same
//! command streams in one process, then an open-loop latency-versus-rate sweep of ours.
//!
//! `cargo bench --bench peers` (a few minutes). Each workload's stream is generated once as our
//! `Command`s (`workload.rs`) and translated once to the peers' operations (`translate.rs`).
//! Each engine, built and filled by the setup outside the clock, then applies the stream flat
//! out under one clock, `PEERS_ROUNDS` times from the same state, the engines taking turns
//! round by round so a burst of noise from elsewhere on the machine hits them alike; the
//! table shows each engine's best round (commands/s). A last pass with a clock read around
//! every command gives the latency percentiles (HdrHistogram). The peers keep one book per
//! symbol (a `Vec` indexed by symbol). Trades and traded lots are counted from each engine's
//! own output and printed, to show the translation is fair.
//!
//! The open-loop sweep (`open_loop.rs`) schedules ours at 1 M, 2 M, 5 M, ... commands/s and
//! measures from each command's intended time to the end of its `apply`.
//!
//! Environment: `PEERS_COMMANDS` (default 1,000,000 steady-state commands per workload),
//! `PEERS_ROUNDS` (default 3), `PEERS_ONLY` (run only the workloads whose name contains it;
//! `open_loop` for the sweep).

mod open_loop;
mod subjects;
mod translate;
mod workload;

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use subjects::{Info, Lobster, OrderbookRs, Ours, Subject, LOBSTER, ORDERBOOK_RS, OURS};
use workload::Workload;

/// One engine on one workload.
struct Row {
    workload: String,
    engine: &'static Info,
    /// Commands/s of each round.
    rounds: Vec<f64>,
    latency_ns: Histogram<u64>,
    trades: (u64, u64),
}

impl Row {
    fn best(&self) -> f64 {
        self.rounds.iter().copied().fold(0.0, f64::max)
    }
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name} must be a positive count, got {text:?}; using {default}");
                default
            }
        },
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Builds an engine in its state after the setup (untimed).
type Make<'a> = Box<dyn Fn() -> Box<dyn Subject + 'a> + 'a>;

/// Applies the whole stream to a fresh subject flat out: commands/s and the trades it made.
fn flat_out(make: &Make<'_>, commands: usize) -> (f64, (u64, u64)) {
    let mut subject = make();
    let started = Instant::now();
    for at in 0..commands {
        subject.apply(at);
    }
    let elapsed = started.elapsed();
    (commands as f64 / elapsed.as_secs_f64(), subject.trades())
}

/// Applies the whole stream to a fresh subject with a clock read around each command.
fn latencies(make: &Make<'_>, commands: usize) -> (Histogram<u64>, (u64, u64)) {
    let mut subject = make();
    let mut latency_ns = histogram();
    for at in 0..commands {
        let started = Instant::now();
        subject.apply(at);
        latency_ns.saturating_record(started.elapsed().as_nanos() as u64);
    }
    (latency_ns, subject.trades())
}

fn run(workload: &Workload, rounds: usize, rows: &mut Vec<Row>) {
    eprintln!("{}: {}", workload.name, workload.description);
    let started = Instant::now();
    let translated =
        translate::translate(workload.engine_config, &workload.setup, &workload.stream);
    let orders_per_book = (workload.engine_config.orders_max / translated.books.max(1)) as usize;
    eprintln!("  translated in {:.1?}", started.elapsed());
    let engines: [(&'static Info, Make<'_>); 3] = [
        (&OURS, Box::new(|| Box::new(Ours::new(workload)))),
        (
            &LOBSTER,
            Box::new(|| Box::new(Lobster::new(&translated, orders_per_book))),
        ),
        (
            &ORDERBOOK_RS,
            Box::new(|| Box::new(OrderbookRs::new(&translated))),
        ),
    ];
    let commands = workload.stream.len();
    let mut measured: Vec<(Vec<f64>, (u64, u64))> = vec![(Vec::new(), (0, 0)); engines.len()];
    for round in 0..rounds {
        for ((info, make), (per_s, trades)) in engines.iter().zip(&mut measured) {
            let (rate, made) = flat_out(make, commands);
            assert!(
                round == 0 || made == *trades,
                "{}: rounds trade alike",
                info.name
            );
            per_s.push(rate);
            *trades = made;
        }
    }
    for ((info, make), (per_s, trades)) in engines.iter().zip(measured) {
        let (latency_ns, made) = latencies(make, commands);
        assert_eq!(made, trades, "{}: the latency pass trades alike", info.name);
        let row = Row {
            workload: workload.name.clone(),
            engine: info,
            rounds: per_s,
            latency_ns,
            trades,
        };
        let rounds: Vec<String> = row.rounds.iter().map(|r| millions(*r)).collect();
        eprintln!(
            "  {:<20} {} commands/s; p50 {} p99 {}; {} trades, {} lots",
            info.name,
            rounds.join(", "),
            ns(row.latency_ns.value_at_quantile(0.5)),
            ns(row.latency_ns.value_at_quantile(0.99)),
            thousands(trades.0),
            thousands(trades.1)
        );
        rows.push(row);
    }
}

fn main() {
    let commands = env_count("PEERS_COMMANDS", 1_000_000);
    let rounds = env_count("PEERS_ROUNDS", 3);
    let only = std::env::var("PEERS_ONLY").unwrap_or_default();
    let selected = |name: &str| name.contains(only.as_str());
    let started = Instant::now();
    eprintln!(
        "clock read (Instant::now pair, included in every latency below): p50 {}",
        ns(clock_overhead_ns())
    );

    let mut rows = Vec::new();
    let mut open_loop_stream = None;
    for name in WORKLOADS {
        let wanted_open_loop = name == WORKLOADS[0] && selected("open_loop");
        if !selected(name) && !wanted_open_loop {
            continue;
        }
        let workload = generate(name, commands);
        if selected(name) {
            run(&workload, rounds, &mut rows);
        }
        if wanted_open_loop {
            open_loop_stream = Some(workload);
        }
    }
    if rows.is_empty() && open_loop_stream.is_none() {
        eprintln!("PEERS_ONLY={only:?} names no workload (nor open_loop): {WORKLOADS:?}");
    }
    if !rows.is_empty() {
        print_table(&rows);
    }
    if let Some(workload) = open_loop_stream {
        open_loop::sweep(&workload);
    }
    eprintln!("done in {:.0?}", started.elapsed());
}

/// The workloads, in the order they run; the first one's stream also drives the open loop.
const WORKLOADS: [&str; 5] = [
    "exchange_core/1_symbol",
    "exchange_core/100_symbols",
    "exchange_core/10000_symbols",
    "cancel_heavy/1_symbol",
    "sweep_heavy/1_symbol",
];

fn generate(name: &str, commands: usize) -> Workload {
    match name {
        "exchange_core/1_symbol" => workload::exchange_core(1, 1000, commands),
        "exchange_core/100_symbols" => workload::exchange_core(100, 1000, commands),
        // 100 resting orders each, a million in all: 1,000 each would be ten million orders
        // to set up four times per engine.
        "exchange_core/10000_symbols" => workload::exchange_core(10_000, 100, commands),
        "cancel_heavy/1_symbol" => workload::cancel_heavy(commands),
        "sweep_heavy/1_symbol" => workload::sweep_heavy(commands),
        _ => unreachable!("a name from WORKLOADS"),
    }
}

/// The median cost of the clock reads that bracket each measured command.
fn clock_overhead_ns() -> u64 {
    let mut hist = histogram();
    for _ in 0..100_000 {
        let started = Instant::now();
        hist.saturating_record(started.elapsed().as_nanos() as u64);
    }
    hist.value_at_quantile(0.5)
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| workload | engine | commands/s (best round) | ours ÷ engine | p50 | p99 | p99.9 | p99.99 | trades | traded lots |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let ours = rows
            .iter()
            .find(|r| r.workload == row.workload && r.engine.name == OURS.name)
            .expect("ours runs on every workload");
        let q = |quantile| ns(row.latency_ns.value_at_quantile(quantile));
        println!(
            "| {} | {} | {} | {:.1}× | {} | {} | {} | {} | {} | {} |",
            row.workload,
            row.engine.name,
            millions(row.best()),
            ours.best() / row.best(),
            q(0.5),
            q(0.99),
            q(0.999),
            q(0.9999),
            thousands(row.trades.0),
            thousands(row.trades.1),
        );
    }
    println!();
    for info in [&OURS, &LOBSTER, &ORDERBOOK_RS] {
        println!("- {}: {}", info.name, info.notes);
    }
    println!();
}

/// `12.3 M` or `456 k`.
fn millions(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else {
        format!("{:.0} k", per_s / 1e3)
    }
}

/// `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (at, c) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency: `85 ns`, `1.23 µs`, `4.5 ms`.
pub fn ns(ns: u64) -> String {
    let d = Duration::from_nanos(ns);
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

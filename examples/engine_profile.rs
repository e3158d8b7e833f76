//! The engine's hot path in isolation, for `valgrind --tool=callgrind` (`scripts/profile`).
//!
//! Generates the exchange-core-like mix (`flow`, one symbol, 1,000 resting orders,
//! 1,000 accounts, the same seed as `benches/engine.rs`), replays the setup into a fresh engine,
//! then applies `COMMANDS` steady-state commands (default 200,000) inside [`apply_stream`].
//! `scripts/profile` collects only inside that function, so callgrind's instruction count
//! divided by the command count is the engine's instructions per command, generation excluded.
//!
//! `cargo run --release --example engine_profile -- [COMMANDS] [SYMBOLS] [DEPTH]` also runs it
//! natively and prints the rate of `apply_stream`; SYMBOLS (default 1) and DEPTH (resting orders
//! per symbol, default 1,000) give the benchmarks' other mixes (`100`; `10000 100`).

use std::hint::black_box;

use engine::{Command, Engine, Event};
use flow::{FlowConfig, FlowGenerator};

/// Applies `stream` to `engine`, one command at a time, into a reused sink: what a matcher
/// thread does. Never inlined, so a profiler can collect exactly this.
#[inline(never)]
fn apply_stream(engine: &mut Engine, stream: &[Command], sink: &mut Vec<Event>) -> u64 {
    let mut events = 0;
    for cmd in stream {
        sink.clear();
        engine.apply(black_box(cmd), sink);
        events += sink.len() as u64;
    }
    events
}

fn main() {
    let commands = positive_arg(1, 200_000);
    let config = FlowConfig {
        seed: 0x00c0_ffee,
        symbols: positive_arg(2, 1) as u32,
        accounts: 1000,
        book_depth: positive_arg(3, 1000),
        ..FlowConfig::default()
    };
    let mut flow = FlowGenerator::new(config);
    let setup = flow.setup();
    let stream = flow.generate(commands);
    let mut engine = Engine::new(config.engine_config()).expect("the flow's config is valid");
    engine.commit_memory();
    let mut sink = Vec::with_capacity(1 << 12);
    apply_setup(&mut engine, &setup, &mut sink);
    let started = std::time::Instant::now();
    let events = apply_stream(&mut engine, &stream, &mut sink);
    let elapsed = started.elapsed();
    println!(
        "commands {commands}; applied in {elapsed:.2?} ({:.2} M/s); events {events}; {}; \
         state hash {}",
        commands as f64 / elapsed.as_secs_f64() / 1e6,
        flow.stats(),
        engine.state_hash()
    );
}

/// The `n`th argument as a positive count, `default` when absent; exits with usage otherwise.
fn positive_arg(n: usize, default: usize) -> usize {
    match std::env::args().nth(n) {
        None => default,
        Some(arg) => match arg.parse::<usize>() {
            Ok(value) if value > 0 && value <= u32::MAX as usize => value,
            _ => {
                eprintln!("usage: engine_profile [COMMANDS] [SYMBOLS] [DEPTH] (positive counts)");
                std::process::exit(2);
            }
        },
    }
}

/// The setup phase, outside the collected function.
#[inline(never)]
fn apply_setup(engine: &mut Engine, setup: &[Command], sink: &mut Vec<Event>) {
    for cmd in setup {
        sink.clear();
        engine.apply(cmd, sink);
    }
}

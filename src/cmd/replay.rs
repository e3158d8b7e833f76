//! `exchange replay`: a command file through a fresh engine (`crate::replay`).

use std::path::PathBuf;

use anyhow::Result;

/// `exchange replay`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// Commands, one JSON object a line (shared/replay-contract.md).
    #[arg(long = "in", value_name = "COMMANDS.jsonl")]
    pub input: PathBuf,
    /// Where to write the events, one JSON object a line.
    #[arg(long, value_name = "EVENTS.jsonl")]
    pub events_out: PathBuf,
    /// Where to write the final book.
    #[arg(long, value_name = "BOOK.json")]
    pub book_out: PathBuf,
    /// Where to write the orders the engine remembers at the end (live, and finished inside
    /// the dedup window).
    #[arg(long, value_name = "ORDERS.json")]
    pub orders_out: Option<PathBuf>,
    /// Engine settings (TOML with `EngineConfig` fields, e.g. `dedup_window_ns`); the
    /// contract's otherwise (default capacities, a one-day dedup window).
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
}

/// Replays the file and prints what happened.
pub fn run(args: Args) -> Result<()> {
    let started = std::time::Instant::now();
    let outputs = crate::replay::Outputs {
        events: &args.events_out,
        book: &args.book_out,
        orders: args.orders_out.as_deref(),
    };
    let s = crate::replay::run(&args.input, outputs, args.engine_config.as_deref())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replayed {} commands into {} events in {secs:.3} s: {} accepted, {} rejected, \
         {} trades, {} cancelled, {} amended; {} orders resting",
        s.commands,
        s.events,
        s.accepted,
        s.rejected,
        s.trades,
        s.cancelled,
        s.amended,
        s.live_orders
    );
    if let Some(hash) = s.state_hash {
        println!("state hash {hash}");
    }
    Ok(())
}

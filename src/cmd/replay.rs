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
    /// Engine capacities (TOML with `EngineConfig` fields); defaults otherwise.
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
}

/// Replays the file and prints what happened.
pub fn run(args: Args) -> Result<()> {
    let config = crate::load_engine_config(args.engine_config.as_deref())?;
    let started = std::time::Instant::now();
    let s = crate::replay::run(&args.input, &args.events_out, &args.book_out, config)?;
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

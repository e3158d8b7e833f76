//! `exchange`: the command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "exchange",
    version,
    about = "Multi-cloud active-active order-matching engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Apply a command file (JSON lines) to a fresh engine; write its events and final book.
    Replay {
        /// Commands, one JSON object a line (shared/replay-contract.md).
        #[arg(long = "in", value_name = "COMMANDS.jsonl")]
        input: PathBuf,
        /// Where to write the events, one JSON object a line.
        #[arg(long, value_name = "EVENTS.jsonl")]
        events_out: PathBuf,
        /// Where to write the final book.
        #[arg(long, value_name = "BOOK.json")]
        book_out: PathBuf,
        /// Engine capacities (TOML with `EngineConfig` fields); defaults otherwise.
        #[arg(long, value_name = "FILE")]
        engine_config: Option<PathBuf>,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Replay {
            input,
            events_out,
            book_out,
            engine_config,
        } => {
            let config = exchange::load_engine_config(engine_config.as_deref())?;
            let started = std::time::Instant::now();
            let s = exchange::replay::run(&input, &events_out, &book_out, config)?;
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
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

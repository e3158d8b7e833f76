//! `exchange demo`: a site on the embedded journal under load at a few rates (`crate::demo`).

use std::path::PathBuf;

use anyhow::Result;

use crate::demo::{demo, DemoOptions};

/// `exchange demo`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// Where results.json and report.html go.
    #[arg(long, value_name = "DIR", default_value = "target/demo")]
    pub out: PathBuf,
    /// Requests per second, each rate in turn.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
    pub rates: Vec<f64>,
    /// Measured seconds per rate (after a 2 s warm-up).
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// Binary sessions (one member each).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
}

/// Runs the demo; it prints and writes its results.
pub fn run(args: Args) -> Result<()> {
    demo(&DemoOptions {
        out: args.out,
        rates: args.rates,
        seconds: args.seconds,
        warmup: 2.0,
        connections: args.connections,
    })?;
    Ok(())
}

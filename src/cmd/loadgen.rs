//! `exchange loadgen`: open-loop load over the binary protocol against running gateways, at
//! given rates or as a sweep.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use flow::FlowConfig;
use loadgen::{LoadConfig, RunResult};

use crate::demo::{run_rates, write_results};

/// `exchange loadgen`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// Binary order-entry gateways (comma-separated); sessions are spread over them.
    #[arg(long, value_delimiter = ',', required = true)]
    pub target: Vec<SocketAddr>,
    /// Members as TOKEN:ACCOUNT (comma-separated); session k logs on as member k mod n.
    #[arg(long, value_delimiter = ',', required = true)]
    pub member: Vec<String>,
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests per second, each rate in turn.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub rates: Vec<f64>,
    /// Sweep START,STEP,MAX instead: stop at the first rate whose p99 exceeds --p99-bound-us.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Option<Vec<f64>>,
    #[arg(long, default_value_t = 1000.0)]
    pub p99_bound_us: f64,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// The flow's seed, symbols and book depth.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 10)]
    pub symbols: u32,
    #[arg(long, default_value_t = 1000)]
    pub book_depth: usize,
    #[arg(long, value_name = "DIR", default_value = "target/loadgen")]
    pub out: PathBuf,
}

/// Runs the load at each rate (or the sweep), prints and writes the results.
pub fn run(args: Args) -> Result<()> {
    let load = LoadConfig {
        connections: args.connections,
        duration: std::time::Duration::from_secs_f64(args.seconds),
        warmup: std::time::Duration::from_secs_f64(args.warmup),
        flow: FlowConfig {
            seed: args.seed,
            symbols: args.symbols,
            book_depth: args.book_depth,
            ..FlowConfig::default()
        },
        ..LoadConfig::new(args.target.clone(), members(&args.member)?)
    };
    let runs = match args.sweep.as_deref() {
        None => run_rates(&load, &args.rates)?,
        Some(&[start, step, max]) => sweep(&load, (start, step, max), args.p99_bound_us)?,
        Some(_) => bail!("--sweep takes START,STEP,MAX"),
    };
    write_results(&args.out, &runs)
}

/// `--member` as (token, account).
fn members(members: &[String]) -> Result<Vec<(String, u64)>> {
    members
        .iter()
        .map(|m| {
            let (token, account) = m
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("--member {m:?}: expected TOKEN:ACCOUNT"))?;
            Ok((
                token.to_string(),
                account
                    .parse::<u64>()
                    .map_err(|e| anyhow!("--member {m:?}: account: {e}"))?,
            ))
        })
        .collect()
}

/// Rates from `start` by `step` up to `max`, stopping at the first whose p99 exceeds
/// `p99_bound_us`; prints the highest that held.
fn sweep(
    load: &LoadConfig,
    (start, step, max): (f64, f64, f64),
    p99_bound_us: f64,
) -> Result<Vec<RunResult>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(loadgen::sweep(
        load,
        &loadgen::rate_steps(start, step, max),
        p99_bound_us,
        Some(indicatif::ProgressBar::new(0)),
    ))?;
    match result.max_rate {
        Some(rate) => println!("highest rate whose p99 held under {p99_bound_us} µs: {rate:.0}/s"),
        None => println!("no rate held p99 under {p99_bound_us} µs"),
    }
    if let Some(why) = &result.stopped {
        println!("stopped: {why}");
    }
    Ok(result.runs)
}

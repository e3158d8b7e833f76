//! `exchange demo` and `exchange loadgen`: a whole site under open-loop load.
//!
//! The demo starts a site on the embedded journal (fsync on) in a temporary directory, runs the
//! load generator over the binary protocol at a few rates, prints the results table, writes
//! `results.json` and `report.html`, and stops the site cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use engine::runner::WaitStrategy;
use engine::EngineConfig;
use flow::FlowConfig;
use gateway::Member;
use indicatif::ProgressBar;
use loadgen::{LoadConfig, RunResult};
use node::{Node, NodeConfig, SymbolSpec};
use replicator::journal::FsyncPolicy;
use replicator::log::LogConfig;

/// `n` members as (token, account), accounts 1..=n.
pub fn members(n: usize) -> Vec<(String, u64)> {
    (1..=n as u64)
        .map(|account| (format!("load-member-{account:06}"), account))
        .collect()
}

/// How the benchmark site's matcher waits when idle: spin briefly, then park 20 µs. On a
/// machine with fewer cores than busy threads (this 2-core VM runs the site and the load
/// generator), spinning or yielding in a loop starves the threads the matcher waits for.
pub const MATCHER_WAIT: WaitStrategy = node::config::SHARED_CORES_WAIT;

/// A site configured for `flow` and `members`, listening on `listen`, on the embedded journal
/// in `dir` with `fsync`.
pub fn site_config(
    dir: &Path,
    listen: SocketAddr,
    members: &[(String, u64)],
    flow: &FlowConfig,
    wait: WaitStrategy,
    fsync: FsyncPolicy,
) -> NodeConfig {
    let members = members
        .iter()
        .map(|(token, account)| Member {
            name: format!("member-{account}"),
            token: token.clone(),
            account: *account,
        })
        .collect();
    let mut config = NodeConfig::for_tests("bench", dir, members);
    config.engine = EngineConfig {
        hash_seed: config.engine.hash_seed,
        ..FlowConfig {
            accounts: config.members.len() as u32,
            ..*flow
        }
        .engine_config()
    };
    config.runner.wait = wait;
    config.log = LogConfig::Journal { fsync };
    config.listen.binary = listen;
    // The flow's add_symbol commands cannot go through a gateway: the site lists them.
    config.symbols = flow
        .symbol_specs()
        .into_iter()
        .map(|(symbol, tick, lot)| SymbolSpec {
            symbol,
            tick: tick.to_string(),
            lot: lot.to_string(),
        })
        .collect();
    config
}

/// What `exchange demo` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub out: PathBuf,
    pub rates: Vec<f64>,
    /// Measured seconds per rate (after `warmup`).
    pub seconds: f64,
    pub warmup: f64,
    pub connections: usize,
}

/// Runs the demo; returns the runs.
pub fn demo(options: &DemoOptions) -> Result<Vec<RunResult>> {
    if options.rates.is_empty() {
        bail!("no rate to run");
    }
    let data = tempfile::tempdir().context("a temporary directory for the site")?;
    let members = members(options.connections);
    let flow = FlowConfig::default();
    let config = site_config(
        data.path(),
        "127.0.0.1:0".parse()?,
        &members,
        &flow,
        MATCHER_WAIT,
        FsyncPolicy::PerBatch,
    );
    eprintln!(
        "demo: a site on the embedded journal (fsync per batch) in {}",
        data.path().display()
    );
    let site = Node::start(config)?;
    let load = LoadConfig {
        connections: options.connections,
        duration: Duration::from_secs_f64(options.seconds),
        warmup: Duration::from_secs_f64(options.warmup),
        flow,
        ..LoadConfig::new(vec![site.binary_addr()], members)
    };
    let result = run_rates(&load, &options.rates);
    let end = site.shutdown()?[0];
    let runs = result?;
    eprintln!("demo: the site stopped cleanly at log position {end}");
    write_results(&options.out, &runs)?;
    Ok(runs)
}

/// Runs `load` at each rate in turn, with a progress bar.
pub fn run_rates(load: &LoadConfig, rates: &[f64]) -> Result<Vec<RunResult>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let progress = ProgressBar::new(0);
    let mut runs = Vec::new();
    for &rate in rates {
        let config = LoadConfig {
            rate,
            ..load.clone()
        };
        runs.push(runtime.block_on(loadgen::run(&config, Some(progress.clone())))?);
    }
    progress.finish_and_clear();
    Ok(runs)
}

/// Prints the table and writes `results.json` and `report.html` to `out`.
pub fn write_results(out: &Path, runs: &[RunResult]) -> Result<()> {
    println!("{}", loadgen::table(runs));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let json = serde_json::to_string_pretty(runs)?;
    std::fs::write(out.join("results.json"), json).context("writing results.json")?;
    let html = out.join("report.html");
    loadgen::write_html(&html, runs).context("writing report.html")?;
    println!("results: {}", out.join("results.json").display());
    println!("report:  {}", html.display());
    Ok(())
}

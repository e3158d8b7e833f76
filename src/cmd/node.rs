//! `exchange node`: one site's process, configured by a TOML file plus flags (see
//! `config/node.toml` and [`node::NodeConfig`]). The node recovers, serves, and on SIGTERM or
//! Ctrl-C shuts down cleanly: sessions log out, everything committed is applied and reported,
//! the logs are closed and final snapshots written.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};
use node::{Node, NodeConfig, Overrides};

/// `exchange node`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Overrides the file's site name.
    #[arg(long)]
    pub site: Option<String>,
    /// Overrides the file's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Overrides the binary order-entry listen address.
    #[arg(long, value_name = "ADDR")]
    pub binary: Option<SocketAddr>,
    /// Overrides the HTTP (health, metrics, market data) listen address.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Overrides the FIX 4.4 listen address.
    #[arg(long, value_name = "ADDR")]
    pub fix: Option<SocketAddr>,
    /// For drills: the site's clock runs this many milliseconds off the machine's (a wrong
    /// clock; on Kafka, the site refuses orders with clock_skew while it runs ahead).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_ms: i64,
}

/// Runs the site until SIGTERM or SIGINT.
pub fn run(args: Args) -> Result<()> {
    let mut node = NodeConfig::load(&args.config)?;
    node.apply(Overrides {
        site: args.site,
        data_dir: args.data_dir,
        binary_listen: args.binary,
        http_listen: args.http,
        fix_listen: args.fix,
    });
    serve(&node, args.clock_offset_ms.saturating_mul(1_000_000))
}

/// Runs the node (its clock `clock_offset_ns` off) until SIGTERM or Ctrl-C, then shuts it
/// down cleanly.
fn serve(config: &NodeConfig, clock_offset_ns: i64) -> anyhow::Result<()> {
    let site = Node::start_with_clock_offset(config.clone(), clock_offset_ns)?;
    let names: Vec<String> = site.recovered.iter().map(|r| r.shard.clone()).collect();
    for recovered in &site.recovered {
        eprintln!(
            "node {}: shard {} recovered at log position {} (snapshot {:?}, {} records \
             replayed in {:.3} s: {} records/s)",
            config.site,
            recovered.shard,
            recovered.position,
            recovered.snapshot,
            recovered.replayed,
            recovered.elapsed.as_secs_f64(),
            recovered.replay_rate()
        );
    }
    eprintln!(
        "node {}: binary order entry on {}",
        config.site,
        site.binary_addr()
    );
    if let Some(addr) = site.http_addr() {
        eprintln!(
            "node {}: http on {addr} (/health, /metrics, /v1/book/SYMBOL, /ws)",
            config.site
        );
    }
    if let Some(addr) = site.fix_addr() {
        eprintln!("node {}: FIX 4.4 on {addr}", config.site);
    }
    if let Some(failure) = wait_for_termination(&site)? {
        if site.needs_newer_binary() {
            let why = format!("node {}: {failure}", config.site);
            return Err(node::NeedsNewerBinary(why).into());
        }
        bail!("node {}: {failure}", config.site);
    }
    eprintln!("node {}: stopping", config.site);
    for (name, end) in names.iter().zip(site.shutdown()?) {
        eprintln!(
            "node {}: shard {name} stopped cleanly at log position {end}",
            config.site
        );
    }
    Ok(())
}

/// Blocks until SIGTERM or SIGINT (`None`), or until the site fails (why).
fn wait_for_termination(site: &Node) -> anyhow::Result<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let failed = async {
            loop {
                if let Some(failure) = site.failure() {
                    return failure;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = term.recv() => Ok(None),
            _ = tokio::signal::ctrl_c() => Ok(None),
            failure = failed => Ok(Some(failure)),
        }
    })
}

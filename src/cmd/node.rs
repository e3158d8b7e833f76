//! `exchange node`: one site from a TOML file, with command-line overrides (`crate::node`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use crate::node::{NodeConfig, Overrides};

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
    crate::node::run(&node)
}

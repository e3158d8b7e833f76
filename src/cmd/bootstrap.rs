//! `exchange bootstrap`: a site starts from another site's snapshots (`node::ship`). For a
//! site that was down longer than the log keeps its records, or a brand-new site: fetch,
//! then start `exchange node` with the same config, which recovers from the fetched snapshot
//! and reads the log from its position.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use node::ship::{self, Took};
use node::NodeConfig;

/// `exchange bootstrap`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// This site's config (the one `exchange node` will start with): its shards, log, engine
    /// capacities and data directory.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// A running site's HTTP listener, e.g. `http://10.1.0.7:8080`.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// A file holding that site's admin token (its `[admin] token_file`); by default this
    /// site's own `[admin] token_file`.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Overrides the file's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Fetches, checks and saves every shard's snapshot; says what it did for each.
pub fn run(args: Args) -> Result<()> {
    let mut config = NodeConfig::load(&args.config)?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let token = match &args.token_file {
        Some(path) => super::admin::read_token(path)?,
        None => config
            .admin
            .as_ref()
            .context("no --token-file, and the config has no [admin] token_file")?
            .read_token()?,
    };
    if token.starts_with("sha256:") {
        bail!("the admin token file holds the token's digest, not the token: pass --token-file");
    }
    for (shard, took) in ship::bootstrap(&config, &args.from, &token)? {
        match took {
            Took::Saved { position, path } => println!(
                "shard {shard}: snapshot at log position {position} saved as {}",
                path.display()
            ),
            Took::Kept { position, newest } => println!(
                "shard {shard}: kept this site's snapshot at {newest} (the other site's is at \
                 {position})"
            ),
        }
    }
    println!("start the node with the same config: it recovers from these and reads the log");
    Ok(())
}

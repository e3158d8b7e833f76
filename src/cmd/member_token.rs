//! `exchange member-token`: a new member's token and the members-file entry that holds only
//! its SHA-256 (`node::credentials`); or, with `--hash`, the digest of a token read from
//! standard input (never from the command line, which shells keep in their history).

use std::io::Read;

use anyhow::{bail, Context, Result};
use gateway::members::token_digest;

/// `exchange member-token`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// The member's name (FIX Username and SenderCompID).
    #[arg(long, required_unless_present = "hash")]
    pub name: Option<String>,
    /// The member's account.
    #[arg(long, required_unless_present = "hash")]
    pub account: Option<u64>,
    /// Print the SHA-256 of the token on standard input instead of making one.
    #[arg(long, conflicts_with_all = ["name", "account"])]
    pub hash: bool,
}

/// Prints a random token and its members-file entry, or a given token's digest.
pub fn run(args: Args) -> Result<()> {
    if args.hash {
        let mut token = String::new();
        std::io::stdin()
            .read_to_string(&mut token)
            .context("reading the token from standard input")?;
        let token = token.trim();
        if token.is_empty() {
            bail!("no token on standard input");
        }
        println!("{}", token_digest(token));
        return Ok(());
    }
    let (Some(name), Some(account)) = (args.name, args.account) else {
        bail!("--name and --account are required");
    };
    let token = gateway::members::new_token();
    println!("# The member's token: give it to the member; keep it nowhere else.");
    println!("# {token}");
    println!("[[members]]");
    println!("name = {}", toml_string(&name));
    println!("account = {account}");
    println!("token_sha256 = \"{}\"", token_digest(&token));
    Ok(())
}

fn toml_string(text: &str) -> String {
    format!("{text:?}")
}

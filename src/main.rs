//! `exchange`: the command-line entry point. Each subcommand is a module of `exchange::cmd`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exchange::cmd;

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
    /// The operator's controls through a node's admin endpoint: show them, set trading
    /// status (open or cancel-only), turn an account's kill switch on or off.
    Admin(cmd::admin::Args),
    /// Fetch another site's newest snapshots into this site's data directory (a site down
    /// past the log's retention, or a new site), checked against this site's config; then
    /// start `exchange node` as usual.
    Bootstrap(cmd::bootstrap::Args),
    /// Start a site on the embedded journal in a temporary directory, run the load generator
    /// against it at a few rates (about 30 s), print the results and stop.
    Demo(cmd::demo::Args),
    /// The failover drill: three sites (`exchange node` processes on one Kafka log), load
    /// through all of them, random whole-site kills and restarts, then an audit: no
    /// acknowledged order lost, no duplicate, every site on the log's state hash. Exits
    /// non-zero when the audit fails.
    Drill(cmd::drill::Args),
    /// Open-loop load over the binary protocol against running gateways.
    Loadgen(cmd::loadgen::Args),
    /// A new member's random token and the members-file entry holding only its SHA-256; or
    /// with --hash, the digest of a token read from standard input.
    MemberToken(cmd::member_token::Args),
    /// Run one site: gateway + engine + log, from a TOML file (see config/node.toml).
    Node(cmd::node::Args),
    /// Apply a command file (JSON lines) to a fresh engine; write its events and final book.
    Replay(cmd::replay::Args),
    /// The deterministic simulator: three sites, the log, members and faults in one thread on
    /// simulated time, checked like the drill; every failure replays from its seed.
    Sim(cmd::sim::Args),
    /// Compare the state hashes replicas published; exit non-zero when sites disagree at a
    /// log position.
    Verify(cmd::verify::Args),
    /// Produce commands to a Kafka partition at a fixed rate and read them back; report the
    /// round-trip latency from each intended send time.
    KafkaBench(cmd::kafka_bench::Args),
    /// Append to a file journal as fast as one appender can; report appends/s and commit
    /// latency. Reopening the same directory continues where it stopped.
    JournalBench(cmd::journal_bench::Args),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Admin(args) => cmd::admin::run(args),
        Cmd::Bootstrap(args) => cmd::bootstrap::run(args),
        Cmd::Demo(args) => cmd::demo::run(args),
        Cmd::Drill(args) => cmd::drill::run(args),
        Cmd::Loadgen(args) => cmd::loadgen::run(args),
        Cmd::MemberToken(args) => cmd::member_token::run(args),
        Cmd::Node(args) => cmd::node::run(args),
        Cmd::Replay(args) => cmd::replay::run(args),
        Cmd::Sim(args) => cmd::sim::run(args),
        Cmd::Verify(args) => cmd::verify::run(args),
        Cmd::KafkaBench(args) => cmd::kafka_bench::run(args),
        Cmd::JournalBench(args) => cmd::journal_bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // What only a newer binary can apply: a distinct status, so that a supervisor does
        // not restart this one into the same stop.
        Err(err) if node::needs_newer_binary(&err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(node::EXIT_NEEDS_NEWER_BINARY)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `exchange`: the command-line entry point.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use drill::positive_seconds;
use replicator::divergence;
use replicator::journal::FsyncPolicy;

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
    /// Start a site on the embedded journal in a temporary directory, run the load generator
    /// against it at a few rates (about 30 s), print the results and stop.
    Demo {
        /// Where results.json and report.html go.
        #[arg(long, value_name = "DIR", default_value = "target/demo")]
        out: PathBuf,
        /// Requests per second, each rate in turn.
        #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
        rates: Vec<f64>,
        /// Measured seconds per rate (after a 2 s warm-up).
        #[arg(long, default_value_t = 8.0)]
        seconds: f64,
        /// Binary sessions (one member each).
        #[arg(long, default_value_t = 8)]
        connections: usize,
    },
    /// The failover drill: three sites (`exchange node` processes on one Kafka log), load
    /// through all of them, random whole-site kills and restarts, then an audit: no
    /// acknowledged order lost, no duplicate, every site on the log's state hash. Exits
    /// non-zero when the audit fails.
    Drill(drill::Args),
    /// Open-loop load over the binary protocol against running gateways.
    Loadgen {
        /// Binary order-entry gateways (comma-separated); sessions are spread over them.
        #[arg(long, value_delimiter = ',', required = true)]
        target: Vec<std::net::SocketAddr>,
        /// Members as TOKEN:ACCOUNT (comma-separated); session k logs on as member k mod n.
        #[arg(long, value_delimiter = ',', required = true)]
        member: Vec<String>,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Requests per second, each rate in turn.
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        rates: Vec<f64>,
        /// Sweep START,STEP,MAX instead: stop at the first rate whose p99 exceeds --p99-bound-us.
        #[arg(long, value_delimiter = ',')]
        sweep: Option<Vec<f64>>,
        #[arg(long, default_value_t = 1000.0)]
        p99_bound_us: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// The flow's seed, symbols and book depth.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 10)]
        symbols: u32,
        #[arg(long, default_value_t = 1000)]
        book_depth: usize,
        #[arg(long, value_name = "DIR", default_value = "target/loadgen")]
        out: PathBuf,
    },
    /// Run one site: gateway + engine + log, from a TOML file (see config/node.toml).
    Node {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Overrides the file's site name.
        #[arg(long)]
        site: Option<String>,
        /// Overrides the file's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Overrides the binary order-entry listen address.
        #[arg(long, value_name = "ADDR")]
        binary: Option<std::net::SocketAddr>,
        /// Overrides the HTTP (health, metrics, market data) listen address.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
        /// Overrides the FIX 4.4 listen address.
        #[arg(long, value_name = "ADDR")]
        fix: Option<std::net::SocketAddr>,
    },
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
    /// Compare the state hashes replicas published; exit non-zero when sites disagree at a
    /// log position.
    Verify {
        /// Hash-report files (JSON lines), e.g. one per site of an embedded deployment.
        #[arg(long, num_args = 1.., required_unless_present = "kafka", conflicts_with = "kafka")]
        hashes: Vec<PathBuf>,
        /// Read the reports from this Kafka cluster's hashes topic instead.
        #[arg(long, value_name = "BOOTSTRAP_SERVERS", requires = "topic")]
        kafka: Option<String>,
        /// The hashes topic (`<prefix>.hashes`).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Produce commands to a Kafka partition at a fixed rate and read them back; report the
    /// round-trip latency from each intended send time.
    KafkaBench {
        #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
        kafka: String,
        #[arg(long, default_value = "bench.commands")]
        topic: String,
        /// Commands per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
        seconds: f64,
    },
    /// Append to a file journal as fast as one appender can; report appends/s and commit
    /// latency. Reopening the same directory continues where it stopped.
    JournalBench {
        /// The journal directory (created if absent).
        #[arg(long)]
        dir: PathBuf,
        /// Stop after this many appends.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long, value_parser = positive_seconds)]
        seconds: Option<f64>,
        /// fsync after every batch (`batch`) or at most every N milliseconds (a number).
        #[arg(long, default_value = "batch", value_parser = parse_fsync)]
        fsync: FsyncPolicy,
        /// Segment size in bytes (default 64 MiB).
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Appends per second, paced open loop (latency from each intended send time);
        /// otherwise as fast as the journal takes them.
        #[arg(long)]
        rate: Option<u64>,
        /// Print `durable N` each time the durable position advances (for crash tests).
        #[arg(long)]
        print_acks: bool,
    },
}

fn parse_fsync(text: &str) -> Result<FsyncPolicy, String> {
    match text {
        "batch" => Ok(FsyncPolicy::PerBatch),
        ms => ms
            .parse()
            .map(|ms| FsyncPolicy::Interval { ms })
            .map_err(|_| format!("expected `batch` or milliseconds, got {ms:?}")),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Demo {
            out,
            rates,
            seconds,
            connections,
        } => {
            exchange::demo::demo(&exchange::demo::DemoOptions {
                out,
                rates,
                seconds,
                warmup: 2.0,
                connections,
            })?;
            Ok(())
        }
        Cmd::Drill(args) => {
            let result = drill::drill(&args, &std::env::current_exe()?)?;
            print!("{}", result.summary());
            if let Some(path) = &args.report {
                std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
                println!("report: {}", path.display());
            }
            if !result.passed() {
                anyhow::bail!("the drill failed: {}", result.problems.join("; "));
            }
            Ok(())
        }
        Cmd::Loadgen {
            target,
            member,
            connections,
            rates,
            sweep,
            p99_bound_us,
            seconds,
            warmup,
            seed,
            symbols,
            book_depth,
            out,
        } => {
            let members = member
                .iter()
                .map(|m| {
                    let (token, account) = m
                        .rsplit_once(':')
                        .ok_or_else(|| anyhow::anyhow!("--member {m:?}: expected TOKEN:ACCOUNT"))?;
                    Ok((
                        token.to_string(),
                        account
                            .parse::<u64>()
                            .map_err(|e| anyhow::anyhow!("--member {m:?}: account: {e}"))?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let load = loadgen::LoadConfig {
                connections,
                duration: std::time::Duration::from_secs_f64(seconds),
                warmup: std::time::Duration::from_secs_f64(warmup),
                flow: flow::FlowConfig {
                    seed,
                    symbols,
                    book_depth,
                    ..flow::FlowConfig::default()
                },
                ..loadgen::LoadConfig::new(target, members)
            };
            let runs = match sweep.as_deref() {
                None => exchange::demo::run_rates(&load, &rates)?,
                Some(&[start, step, max]) => {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let result = runtime.block_on(loadgen::sweep(
                        &load,
                        &loadgen::rate_steps(start, step, max),
                        p99_bound_us,
                        Some(indicatif::ProgressBar::new(0)),
                    ))?;
                    match result.max_rate {
                        Some(rate) => println!(
                            "highest rate whose p99 held under {p99_bound_us} µs: {rate:.0}/s"
                        ),
                        None => println!("no rate held p99 under {p99_bound_us} µs"),
                    }
                    if let Some(why) = &result.stopped {
                        println!("stopped: {why}");
                    }
                    result.runs
                }
                Some(_) => anyhow::bail!("--sweep takes START,STEP,MAX"),
            };
            exchange::demo::write_results(&out, &runs)
        }
        Cmd::Node {
            config,
            site,
            data_dir,
            binary,
            http,
            fix,
        } => {
            let mut node = exchange::node::NodeConfig::load(&config)?;
            node.apply(exchange::node::Overrides {
                site,
                data_dir,
                binary_listen: binary,
                http_listen: http,
                fix_listen: fix,
            });
            exchange::node::run(&node)
        }
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
        Cmd::Verify {
            hashes,
            kafka,
            topic,
        } => {
            let reports = match (kafka, topic) {
                (Some(bootstrap), Some(topic)) => {
                    let config = replicator::kafka::KafkaConfig::new(&bootstrap, &topic, 0);
                    divergence::read_kafka(&config, std::time::Duration::from_secs(30))?
                }
                _ => {
                    let mut all = Vec::new();
                    for path in &hashes {
                        all.extend(divergence::read_file(path)?);
                    }
                    all
                }
            };
            let verdict = divergence::compare(&reports);
            println!(
                "{} reports from {} sites ({}); {} positions compared, {} reported by one site only",
                reports.len(),
                verdict.sites.len(),
                verdict.sites.join(", "),
                verdict.compared,
                verdict.single
            );
            for d in &verdict.divergences {
                let hashes: Vec<String> = d
                    .hashes
                    .iter()
                    .map(|(site, hash)| format!("{site}={hash}"))
                    .collect();
                println!(
                    "DIVERGED shard {} position {}: {}",
                    d.shard,
                    d.position,
                    hashes.join(" ")
                );
            }
            if verdict.divergences.is_empty() {
                println!("all sites agree");
                Ok(())
            } else {
                anyhow::bail!(
                    "{} positions where sites disagree (first: shard {} position {})",
                    verdict.divergences.len(),
                    verdict.divergences[0].shard,
                    verdict.divergences[0].position
                )
            }
        }
        Cmd::KafkaBench {
            kafka,
            topic,
            rate,
            seconds,
        } => {
            let config = replicator::kafka::KafkaConfig::new(&kafka, &topic, 0);
            let report = exchange::kafka_bench::run(&config, rate, seconds)?;
            let h = &report.latency_us;
            println!(
                "produced {} and read back {} in {:.2} s at {rate}/s; round trip us p50 {} p99 {} \
                 p99.9 {} max {}",
                report.produced,
                report.consumed,
                report.seconds,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
            Ok(())
        }
        Cmd::JournalBench {
            dir,
            count,
            seconds,
            fsync,
            segment_bytes,
            rate,
            print_acks,
        } => {
            if count.is_none() && seconds.is_none() && !print_acks {
                anyhow::bail!("give --count or --seconds (or --print-acks to run until killed)");
            }
            let report = exchange::journal_bench::run(exchange::journal_bench::BenchArgs {
                dir,
                count,
                seconds,
                fsync,
                segment_bytes,
                rate,
                print_acks,
            })?;
            let h = &report.latency_us;
            eprintln!(
                "recovered {} records ({} torn bytes cut); appended {} in {:.2} s: {:.0} appends/s; \
                 commit latency us p50 {} p99 {} p99.9 {} max {}",
                report.recovered,
                report.truncated_bytes,
                report.appended,
                report.seconds,
                report.appended as f64 / report.seconds,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
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

//! Measures a whole site with the open-loop load generator.
//!
//! ```sh
//! # A site in this process (embedded journal, fsync per batch) and the load against it:
//! cargo run --release --example site_bench -- --rates 100000 --duration 10
//! cargo run --release --example site_bench -- --sweep 50000,25000,300000
//! # The generator alone, against a gateway that answers everything at once (no log, no engine):
//! cargo run --release --example site_bench -- --echo --rates 200000
//! # The site alone (to profile it apart), then the load from another process:
//! cargo run --release --example site_bench -- --serve 127.0.0.1:7001
//! cargo run --release --example site_bench -- --target 127.0.0.1:7001 --rates 100000
//! ```
//!
//! Writes `results.json`, `report.html` and the site's `metrics.txt` to `--out` (default
//! `target/site_bench`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use engine::runner::{RunnerConfig, WaitStrategy};
use exchange::demo::{members, site_config};
use flow::FlowConfig;
use indicatif::ProgressBar;
use loadgen::{LoadConfig, RunResult};
use node::Node;
use replicator::journal::FsyncPolicy;

#[derive(Parser)]
struct Args {
    /// Rates to run, requests/s (comma-separated), each in turn.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    rates: Vec<f64>,
    /// Sweep `start,step,max` instead, stopping at the first rate over `--p99-bound-us`.
    #[arg(long, value_delimiter = ',')]
    sweep: Option<Vec<f64>>,
    #[arg(long, default_value_t = 1_000.0)]
    p99_bound_us: f64,
    /// Measured seconds per rate (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    symbols: u32,
    #[arg(long, default_value_t = 1000)]
    book_depth: usize,
    /// The matcher parks this many µs between checks when idle, instead of yielding the CPU
    /// in a loop (the default `spin_then_yield`).
    #[arg(long)]
    matcher_park_us: Option<u32>,
    /// Fsync at most every this many ms instead of after every batch.
    #[arg(long)]
    fsync_interval_ms: Option<u32>,
    /// Only serve a site on this address (until Ctrl-C).
    #[arg(long, conflicts_with = "target")]
    serve: Option<SocketAddr>,
    /// Only generate load, against a site started with `--serve` (same flow options).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Instead of a site, an in-process gateway that answers every request at once.
    #[arg(long, conflicts_with_all = ["target", "serve"])]
    echo: bool,
    /// Where the site keeps its data (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "target/site_bench")]
    out: PathBuf,
}

fn flow(args: &Args) -> FlowConfig {
    FlowConfig {
        symbols: args.symbols,
        book_depth: args.book_depth,
        ..FlowConfig::default()
    }
}

fn start_site(args: &Args, dir: &Path, listen: SocketAddr) -> Result<Node> {
    let wait = match args.matcher_park_us {
        None => RunnerConfig::default().wait,
        Some(park_us) => WaitStrategy::Park {
            spins: 200,
            yields: 20,
            park_us,
        },
    };
    let fsync = match args.fsync_interval_ms {
        None => FsyncPolicy::PerBatch,
        Some(ms) => FsyncPolicy::Interval { ms },
    };
    let config = site_config(
        dir,
        listen,
        &members(args.connections),
        &flow(args),
        wait,
        fsync,
    );
    Node::start(config)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| temp.path().into());
    if let Some(listen) = args.serve {
        return serve(&args, &dir, listen);
    }
    let echo_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let site = match args.target {
        Some(_) => None,
        None if args.echo => None,
        None => Some(start_site(&args, &dir, "127.0.0.1:0".parse()?)?),
    };
    let target = match (&site, args.target) {
        (Some(site), _) => site.binary_addr(),
        (None, Some(target)) => target,
        (None, None) if args.echo => echo_runtime.block_on(echo::start())?,
        (None, None) => bail!("no site"),
    };
    let config = LoadConfig {
        connections: args.connections,
        rate: args.rates[0],
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        flow: flow(&args),
        ..LoadConfig::new(vec![target], members(args.connections))
    };
    // The generator's readers on one thread; its sender paces on a thread of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runs = run_rates(&args, &runtime, &config)?;
    print_runs(&runs);
    write_results(&args.out, &runs)?;
    if let Some(site) = site {
        // The site's own stage latencies (gateway stamp → committed → applied), all runs.
        std::fs::write(args.out.join("metrics.txt"), site.metrics())?;
        site.shutdown()?;
    }
    Ok(())
}

/// `--serve`: runs a site on `listen` until Ctrl-C.
fn serve(args: &Args, dir: &Path, listen: SocketAddr) -> Result<()> {
    let site = start_site(args, dir, listen)?;
    for shard in &site.recovered {
        eprintln!(
            "shard {}: recovered at log position {} from snapshot {:?}: {} records replayed \
             in {:.3} s, {} records/s",
            shard.shard,
            shard.position,
            shard.snapshot,
            shard.replayed,
            shard.elapsed.as_secs_f64(),
            shard.replay_rate()
        );
    }
    eprintln!(
        "serving on {} (data in {})",
        site.binary_addr(),
        dir.display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    site.shutdown()?;
    Ok(())
}

/// Runs `config` at each of the rates asked for (`--sweep` or `--rates`); the runs, in order.
fn run_rates(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    config: &LoadConfig,
) -> Result<Vec<RunResult>> {
    let rates = match args.sweep.as_deref() {
        Some(&[start, step, max]) => loadgen::rate_steps(start, step, max),
        Some(_) => bail!("--sweep takes start,step,max"),
        None => args.rates.clone(),
    };
    let progress = ProgressBar::new(0);
    if args.sweep.is_some() {
        let sweep = runtime.block_on(loadgen::sweep(
            config,
            &rates,
            args.p99_bound_us,
            Some(progress),
        ))?;
        match (sweep.max_rate, &sweep.stopped) {
            (Some(rate), _) => eprintln!("highest rate that held: {rate:.0}/s"),
            (None, _) => eprintln!("no rate held"),
        }
        if let Some(why) = &sweep.stopped {
            eprintln!("stopped at {why}");
        }
        return Ok(sweep.runs);
    }
    let mut runs = Vec::new();
    for &rate in &rates {
        let config = LoadConfig {
            rate,
            ..config.clone()
        };
        runs.push(runtime.block_on(loadgen::run(&config, Some(progress.clone())))?);
    }
    Ok(runs)
}

/// Prints the runs' table, then each run's latency by type and its errors.
fn print_runs(runs: &[RunResult]) {
    println!("{}", loadgen::table(runs));
    for run in runs {
        println!(
            "{:.0}/s: by type {:?}\n  errors {:?}, rejects {:?}, late sends {}, max send lag {:.0} µs",
            run.rate_target,
            run.latency_by_type
                .iter()
                .map(|(kind, l)| format!("{kind} p50 {:.1} p99 {:.1} max {:.1}", l.p50, l.p99, l.max))
                .collect::<Vec<_>>(),
            run.error_counts,
            run.rejects,
            run.late_sends,
            run.max_send_lag_us
        );
    }
}

/// Writes `results.json` and `report.html` into `out`.
fn write_results(out: &Path, runs: &[RunResult]) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let json = serde_json::to_string_pretty(runs)?;
    std::fs::write(out.join("results.json"), json).context("writing results.json")?;
    loadgen::write_html(&out.join("report.html"), runs)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

/// A gateway that answers every request at once, as if the log and the engine cost nothing.
mod echo {
    use std::net::SocketAddr;

    use engine::{AccountId, Price, Qty, Side};
    use gateway::binary::{self, Check, ClientMessage, ExecReport, ServerMessage};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub async fn start() -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
        });
        Ok(addr)
    }

    fn report(
        cl_ord_id: engine::OrderId,
        symbol: engine::Symbol,
        exec_type: u8,
        reason: u8,
    ) -> ServerMessage {
        ServerMessage::ExecutionReport(ExecReport {
            seq: 0,
            ts: 0,
            cl_ord_id,
            symbol,
            exec_type,
            ord_status: exec_type,
            side: Side::Buy,
            reason,
            price: Price(0),
            order_qty: Qty(0),
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
        })
    }

    async fn serve(mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            let mut done = false;
            while let Ok(Check::Frame(len)) = binary::check(&buf[at..]) {
                let Ok(message) = binary::decode_client(&buf[at..at + len]) else {
                    return;
                };
                at += len;
                let answer = match message {
                    ClientMessage::Logon { token, .. } => {
                        let text = String::from_utf8_lossy(&token);
                        let account = text
                            .trim_end_matches('\0')
                            .rsplit('-')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        ServerMessage::LogonAck {
                            account: AccountId(account),
                            heartbeat_secs: 30,
                        }
                    }
                    ClientMessage::Logout => {
                        done = true;
                        ServerMessage::Logout { reason: 0 }
                    }
                    ClientMessage::NewOrder(order) | ClientMessage::ResendOrder { order, .. } => {
                        report(order.cl_ord_id, order.symbol, b'0', 0)
                    }
                    ClientMessage::Cancel { cl_ord_id, symbol } => {
                        report(cl_ord_id, symbol, b'4', 20)
                    }
                    ClientMessage::Replace {
                        cl_ord_id, symbol, ..
                    } => report(cl_ord_id, symbol, b'5', 0),
                    ClientMessage::MassCancel { symbol } => ServerMessage::MassCancelReport {
                        symbol,
                        cancelled: 0,
                    },
                    ClientMessage::MassStatus { symbol } => ServerMessage::MassStatusReport {
                        symbol,
                        reports: 0,
                        behind: 0,
                    },
                    ClientMessage::CancelAfter { .. } => {
                        ServerMessage::SwitchReport { deadline: 0 }
                    }
                    ClientMessage::Heartbeat { .. } | ClientMessage::OrderStatus { .. } => continue,
                };
                binary::encode_server(&answer, &mut out);
            }
            buf.drain(..at);
            if stream.write_all(&out).await.is_err() || done {
                return;
            }
            out.clear();
        }
    }
}

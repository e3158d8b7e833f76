//! `exchange journal-bench`: appends commands to a file journal as fast as one appender can,
//! and reports appends/s and commit latency (append → durable). With `--print-acks` it prints
//! every durable position as it advances (`durable N`), which the SIGKILL test reads: every
//! position printed was acknowledged and must survive a crash.
//!
//! The command written at position `p` is [`command_at`]`(p)` (stamped with the writer's time,
//! like every journal record), so a reader can check any record without knowing what else
//! happened.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use drill::positive_seconds;
use engine::{
    AccountId, Command, CommandKind, NewOrder, OrdType, OrderId, Price, Qty, Side, Stp, Symbol,
    Tif, FIXED_ONE,
};
use hdrhistogram::Histogram;
use replicator::journal::{FsyncPolicy, Journal, JournalConfig};

/// The command the bench writes at log position `position`: a limit order of about the size
/// real ones have.
pub fn command_at(position: u64) -> Command {
    Command::new(
        position,
        CommandKind::New(NewOrder {
            account: AccountId(position % 1000),
            order_id: OrderId::new(&format!("bench-{position}")).expect("a valid id"),
            symbol: Symbol::new("BTC-USD").expect("a valid symbol"),
            side: if position.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            ord_type: OrdType::Limit,
            price: Some(Price((30_000 + (position % 100) as i64) * FIXED_ONE)),
            qty: Qty(FIXED_ONE / 100),
            tif: Tif::Gtc,
            post_only: false,
            stp: Stp::CancelTaker,
            session: 0,
        }),
    )
}

/// `exchange journal-bench`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    /// The journal directory (created if absent).
    #[arg(long)]
    pub dir: PathBuf,
    /// Stop after this many appends.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = positive_seconds)]
    pub seconds: Option<f64>,
    /// fsync after every batch (`batch`) or at most every N milliseconds (a number).
    #[arg(long, default_value = "batch", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,
    /// Segment size in bytes (default 64 MiB).
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Appends per second, paced open loop (latency from each intended send time);
    /// otherwise as fast as the journal takes them.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Print `durable N` each time the durable position advances (for crash tests).
    #[arg(long)]
    pub print_acks: bool,
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

/// Runs the bench and prints what it measured to stderr (stdout carries the acks).
pub fn run(args: Args) -> Result<()> {
    if args.count.is_none() && args.seconds.is_none() && !args.print_acks {
        anyhow::bail!("give --count or --seconds (or --print-acks to run until killed)");
    }
    let report = bench(&args)?;
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

/// What it measured.
struct BenchReport {
    recovered: u64,
    truncated_bytes: u64,
    appended: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
}

/// Runs the bench; prints acks to stdout as it goes when asked.
fn bench(args: &Args) -> Result<BenchReport> {
    let defaults = JournalConfig::new(&args.dir);
    let config = JournalConfig {
        fsync: args.fsync,
        segment_bytes_max: args.segment_bytes.unwrap_or(defaults.segment_bytes_max),
        ..defaults
    };
    let (journal, recovery) = Journal::open(config).context("cannot open the journal")?;
    let start_position = recovery.records;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let appending = spawn_appender(args, &journal, start_position, started, done.clone());

    // This thread watches the durable position.
    let mut acked = start_position;
    let mut stdout = std::io::stdout().lock();
    let mut seen_durable: Vec<(u64, Instant)> = Vec::new();
    loop {
        let durable = journal.durable_position();
        if durable > acked {
            let now = Instant::now();
            seen_durable.push((durable, now));
            if args.print_acks {
                writeln!(stdout, "durable {durable}")?;
                stdout.flush()?;
            }
            acked = durable;
        }
        if appending.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    done.store(true, Ordering::Relaxed);
    let submitted = appending.join().expect("appender thread")?;
    let appended = submitted.len() as u64;
    let last = journal.close();
    let seconds = started.elapsed().as_secs_f64();
    if args.print_acks && last > acked {
        writeln!(stdout, "durable {last}")?;
    }
    seen_durable.push((last, Instant::now()));
    Ok(BenchReport {
        recovered: recovery.records,
        truncated_bytes: recovery.truncated_bytes,
        appended,
        seconds,
        latency_us: latencies(start_position, &submitted, seen_durable)?,
    })
}

/// The appender thread: appends from `start_position` until `--count`, `--seconds` or `done`,
/// paced by `--rate` if given, and returns when it submitted each position.
fn spawn_appender(
    args: &Args,
    journal: &Journal,
    start_position: u64,
    started: Instant,
    done: Arc<AtomicBool>,
) -> JoinHandle<Result<Vec<Instant>>> {
    let total = args.count.unwrap_or(u64::MAX);
    let deadline = args.seconds.map(Duration::from_secs_f64);
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    let appender = journal.appender();
    std::thread::spawn(move || -> Result<Vec<Instant>> {
        let mut submitted = Vec::with_capacity(total.min(1 << 24) as usize);
        let mut position = start_position;
        while position - start_position < total
            && deadline.is_none_or(|d| started.elapsed() < d)
            && !done.load(Ordering::Relaxed)
        {
            let sent = match interval {
                None => Instant::now(),
                Some(interval) => {
                    let intended = started + interval * (position - start_position) as u32;
                    // Sleep until close, then spin: a spinning appender would take the core
                    // the journal writer needs (this machine has two).
                    let now = Instant::now();
                    if intended > now + Duration::from_micros(200) {
                        std::thread::sleep(intended - now - Duration::from_micros(100));
                    }
                    while Instant::now() < intended {
                        std::hint::spin_loop();
                    }
                    intended
                }
            };
            submitted.push(sent);
            appender.append(command_at(position))?;
            position += 1;
        }
        Ok(submitted)
    })
}

/// Each position's latency: from submission to the first time it was seen durable.
fn latencies(
    start_position: u64,
    submitted: &[Instant],
    seen_durable: Vec<(u64, Instant)>,
) -> Result<Histogram<u64>> {
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut from = start_position;
    for (durable, seen) in seen_durable {
        for position in from..durable {
            let sent = submitted[(position - start_position) as usize];
            let micros = seen.saturating_duration_since(sent).as_micros() as u64;
            latency_us.record(micros.max(1))?;
        }
        from = from.max(durable);
    }
    Ok(latency_us)
}

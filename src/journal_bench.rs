//! `exchange journal-bench`: appends commands to a file journal as fast as one appender can,
//! and reports appends/s and commit latency (append → durable). With `--print-acks` it prints
//! every durable position as it advances (`durable N`), which the SIGKILL test reads: every
//! position printed was acknowledged and must survive a crash.
//!
//! The command written at position `p` is [`command_at`]`(p)`, so a reader can check any record
//! without knowing what else happened.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
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
        }),
    )
}

/// What to run.
pub struct BenchArgs {
    pub dir: PathBuf,
    /// Stop after this many appends (`None`: run until `seconds` or killed).
    pub count: Option<u64>,
    pub seconds: Option<f64>,
    pub fsync: FsyncPolicy,
    /// Segment size (`None`: the journal's default).
    pub segment_bytes: Option<u64>,
    /// Appends per second, paced open loop; latency then counts from each append's intended
    /// time (no coordinated omission). `None`: as fast as the journal takes them.
    pub rate: Option<u64>,
    pub print_acks: bool,
}

/// What it measured.
pub struct BenchReport {
    pub recovered: u64,
    pub truncated_bytes: u64,
    pub appended: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
}

/// Runs the bench; prints acks to stdout as it goes when asked.
pub fn run(args: BenchArgs) -> Result<BenchReport> {
    let defaults = JournalConfig::new(&args.dir);
    let config = JournalConfig {
        fsync: args.fsync,
        segment_bytes_max: args.segment_bytes.unwrap_or(defaults.segment_bytes_max),
        ..defaults
    };
    let (journal, recovery) = Journal::open(config).context("cannot open the journal")?;
    let start_position = recovery.records;
    let total = args.count.unwrap_or(u64::MAX);
    let deadline = args.seconds.map(Duration::from_secs_f64);
    let appender = journal.appender();
    let done = Arc::new(AtomicBool::new(false));
    let rate = args.rate;
    let started = Instant::now();

    // The appender thread records when each position was submitted.
    let append_done = done.clone();
    let appending = std::thread::spawn(move || -> Result<Vec<Instant>> {
        let mut submitted = Vec::with_capacity(total.min(1 << 24) as usize);
        let mut position = start_position;
        let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
        while position - start_position < total
            && deadline.is_none_or(|d| started.elapsed() < d)
            && !append_done.load(Ordering::Relaxed)
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
    });

    // This thread watches the durable position.
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut acked = start_position;
    let mut stdout = std::io::stdout().lock();
    let mut pending_latency: Vec<(u64, Instant)> = Vec::new();
    loop {
        let durable = journal.durable_position();
        if durable > acked {
            let now = Instant::now();
            pending_latency.push((durable, now));
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
    pending_latency.push((last, Instant::now()));
    // Each position's latency: from submission to the first time it was seen durable.
    let mut from = start_position;
    for (durable, seen) in pending_latency {
        for position in from..durable {
            let sent = submitted[(position - start_position) as usize];
            let micros = seen.saturating_duration_since(sent).as_micros() as u64;
            latency_us.record(micros.max(1))?;
        }
        from = from.max(durable);
    }
    Ok(BenchReport {
        recovered: recovery.records,
        truncated_bytes: recovery.truncated_bytes,
        appended,
        seconds,
        latency_us,
    })
}

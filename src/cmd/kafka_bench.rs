//! `exchange kafka-bench`: the Kafka log's produce → consume round trip. Commands are produced
//! at a fixed rate (open loop) to a partition, a reader thread consumes them, and each
//! command's latency runs from its intended send time to the moment it is read back, which is
//! when an order would be acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use drill::positive_seconds;
use hdrhistogram::Histogram;
use replicator::kafka::{KafkaAppender, KafkaConfig, KafkaLog, KafkaLogError, KafkaReader};
use replicator::topic::create_topic;
use replicator::CommandLog;

use super::journal_bench::command_at;

/// `exchange kafka-bench`'s arguments (its help text is the doc comments).
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    pub kafka: String,
    #[arg(long, default_value = "bench.commands")]
    pub topic: String,
    /// Commands per second.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    pub seconds: f64,
}

/// Runs the bench and prints the round trip's latency.
pub fn run(args: Args) -> Result<()> {
    let config = KafkaConfig::new(&args.kafka, &args.topic, 0);
    let rate = args.rate;
    let report = bench(&config, rate, args.seconds)?;
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

/// What it measured.
struct KafkaBenchReport {
    produced: u64,
    consumed: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
}

/// Produces `rate` commands/s for `seconds` to `config`'s partition (creating the topic if
/// needed) and reads them back.
fn bench(config: &KafkaConfig, rate: u64, seconds: f64) -> Result<KafkaBenchReport> {
    create_topic(config, 1, 1, Duration::from_secs(10)).context("cannot create the topic")?;
    // A development broker: its topic may be unsafe, and its records may carry create times.
    let config = &KafkaConfig {
        allow_unsafe_topic: true,
        ..config.clone()
    };
    let log = KafkaLog::open(config.clone(), Duration::from_secs(10))?.0;
    let appender = log.appender();
    // Start reading at the end: other runs may have left records in the topic.
    // Warm up: one round trip, so connections and the first fetch are not in the figures.
    let warm = log.durable_position()?;
    let mut reader = KafkaReader::new(config, warm)?;
    appender.append(&command_at(warm))?;
    appender.flush(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while reader.poll(Duration::from_millis(50))?.is_none() {
        if Instant::now() > deadline {
            bail!("the warm-up record was not read back within 30 s");
        }
    }
    let pace = Pace {
        start: warm + 1,
        total: (rate as f64 * seconds) as u64,
        interval: Duration::from_secs_f64(1.0 / rate.max(1) as f64),
        started: Instant::now(),
    };
    let done = Arc::new(AtomicBool::new(false));
    let reading = spawn_reader(reader, pace, done.clone());
    let (produced, failure) = produce(appender, pace);
    if failure.is_none() {
        appender.flush(Duration::from_secs(30))?;
    }
    // Give the reader a bounded time to catch up, then stop it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reading.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    done.store(true, Ordering::Relaxed);
    let (consumed, latency_us) = reading.join().expect("reader thread")?;
    if let Some(err) = failure {
        return Err(err).context("producing failed");
    }
    if consumed < produced {
        bail!("read back {consumed} of {produced} commands within 30 s");
    }
    Ok(KafkaBenchReport {
        produced,
        consumed,
        seconds: pace.started.elapsed().as_secs_f64(),
        latency_us,
    })
}

/// The open-loop schedule: command `k` (at log position `start + k`) is due at
/// `started + k * interval`, for `total` commands.
#[derive(Clone, Copy)]
struct Pace {
    start: u64,
    total: u64,
    interval: Duration,
    started: Instant,
}

/// The reader thread: reads until it has every command or `done`, each latency from the
/// command's intended send time; returns how many it read and their latencies.
fn spawn_reader(
    mut reader: KafkaReader,
    pace: Pace,
    done: Arc<AtomicBool>,
) -> JoinHandle<Result<(u64, Histogram<u64>), KafkaLogError>> {
    std::thread::spawn(move || {
        let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let mut consumed = 0;
        while consumed < pace.total && !done.load(Ordering::Relaxed) {
            if let Some((offset, _)) = reader.poll(Duration::from_millis(50))? {
                let intended = pace.started + pace.interval * (offset - pace.start) as u32;
                let micros = intended.elapsed().as_micros() as u64;
                latency_us.record(micros.max(1)).expect("in bounds");
                consumed += 1;
            }
        }
        Ok((consumed, latency_us))
    })
}

/// Produces every command at its intended time; returns how many were produced and the
/// error that stopped it early, if one did.
fn produce(appender: &KafkaAppender, pace: Pace) -> (u64, Option<KafkaLogError>) {
    let mut produced = 0;
    while produced < pace.total {
        let intended = pace.started + pace.interval * produced as u32;
        let now = Instant::now();
        if intended > now + Duration::from_micros(200) {
            std::thread::sleep(intended - now - Duration::from_micros(100));
        }
        while Instant::now() < intended {
            std::hint::spin_loop();
        }
        if let Err(err) = appender.append(&command_at(pace.start + produced)) {
            return (produced, Some(err));
        }
        produced += 1;
    }
    (produced, None)
}

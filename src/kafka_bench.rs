//! `exchange kafka-bench`: the Kafka log's produce → consume round trip. Commands are produced
//! at a fixed rate (open loop) to a partition, a reader thread consumes them, and each
//! command's latency runs from its intended send time to the moment it is read back, which is
//! when an order would be acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use replicator::kafka::{create_topic, KafkaConfig, KafkaLog, KafkaLogError, KafkaReader};
use replicator::CommandLog;

use crate::journal_bench::command_at;

/// What it measured.
pub struct KafkaBenchReport {
    pub produced: u64,
    pub consumed: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
}

/// Produces `rate` commands/s for `seconds` to `config`'s partition (creating the topic if
/// needed) and reads them back.
pub fn run(config: &KafkaConfig, rate: u64, seconds: f64) -> Result<KafkaBenchReport> {
    create_topic(config, 1, 1, Duration::from_secs(10)).context("cannot create the topic")?;
    let log = KafkaLog::open(
        KafkaConfig {
            allow_unsafe_topic: true,
            ..config.clone()
        },
        Duration::from_secs(10),
    )?
    .0;
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
    let start = warm + 1;
    let total = (rate as f64 * seconds) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));

    let reading_done = done.clone();
    let reading = std::thread::spawn(move || -> Result<(u64, Histogram<u64>), KafkaLogError> {
        let mut latency_us = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        let mut consumed = 0;
        while consumed < total && !reading_done.load(Ordering::Relaxed) {
            if let Some((offset, _)) = reader.poll(Duration::from_millis(50))? {
                let intended = started + interval * (offset - start) as u32;
                let micros = intended.elapsed().as_micros() as u64;
                latency_us.record(micros.max(1)).expect("in bounds");
                consumed += 1;
            }
        }
        Ok((consumed, latency_us))
    });

    let mut produced = 0;
    let mut failure = None;
    while produced < total && failure.is_none() {
        let intended = started + interval * produced as u32;
        let now = Instant::now();
        if intended > now + Duration::from_micros(200) {
            std::thread::sleep(intended - now - Duration::from_micros(100));
        }
        while Instant::now() < intended {
            std::hint::spin_loop();
        }
        match appender.append(&command_at(start + produced)) {
            Ok(()) => produced += 1,
            Err(err) => failure = Some(err),
        }
    }
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
        seconds: started.elapsed().as_secs_f64(),
        latency_us,
    })
}

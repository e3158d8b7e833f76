//! The drill's copy of the shard's log, read from its first record while the drill runs.
//!
//! The audit replays the whole log. A cluster that keeps only the newest records (the mock
//! cluster keeps about 5 MB or 100,000 batches of a partition, whatever its configuration)
//! no longer has the first ones by the end of a long drill: read at the end, a 10-minute
//! drill at 500 orders/s failed with "no offset to automatically reset to". Following the log
//! as it grows keeps every record, in memory (a command is under 100 bytes: a 63-minute drill
//! at 500/s holds about 200 MB).
//!
//! It also watches the log's time against the drill's clock: a record stamped later than the
//! moment the tap reads it was stamped by a clock that runs ahead (a skewed site whose
//! records got in), and moved every site's log time with it.
//!
//! And it keeps the time each record's site stamped it with (its clock as it submitted it),
//! beside the log's: the switch check tells a log that held commands from sites that went
//! quiet.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use engine::{Command, TimestampNs};
use replicator::kafka::{KafkaConfig, KafkaReader};
use serde::Serialize;

/// A record stamped more than this after the drill's clock when read is ahead of time.
pub const AHEAD_LIMIT: Duration = Duration::from_secs(1);

/// How far ahead of the drill's clock the log's time ran, as the tap read the log.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LogAhead {
    /// Records stamped more than [`AHEAD_LIMIT`] after the drill's clock when read (must be
    /// 0).
    pub records: u64,
    /// The most a record was stamped after its reading, milliseconds (negative: every
    /// record was read after its time, as it should be).
    pub max_ms: i64,
}

impl LogAhead {
    /// What fails the drill: any record stamped ahead of time.
    pub fn problem(&self) -> Option<String> {
        (self.records > 0).then(|| {
            format!(
                "{} records stamped ahead of time (up to {} ms): a clock ahead moved the \
                 log's time",
                self.records, self.max_ms
            )
        })
    }
}

/// The log as the tap read it: its commands (at the log's time) and, for each, the time its
/// site stamped it with.
#[derive(Default)]
pub(crate) struct Tapped {
    pub commands: Vec<Command>,
    pub stamped: Vec<TimestampNs>,
}

/// A thread copying the log from its start.
pub(crate) struct LogTap {
    tapped: Arc<Mutex<Tapped>>,
    ahead: Arc<(AtomicU64, AtomicI64)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Counts `command` in `ahead` if it is stamped after now.
fn watch_time(command: &Command, ahead: &(AtomicU64, AtomicI64)) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ahead_ns = command.ts.0 as i64 - now.as_nanos() as i64;
    ahead.1.fetch_max(ahead_ns / 1_000_000, Ordering::Relaxed);
    if ahead_ns > AHEAD_LIMIT.as_nanos() as i64 {
        ahead.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl LogTap {
    /// Starts reading `kafka`'s partition from offset 0.
    pub(crate) fn start(kafka: &KafkaConfig) -> Result<LogTap> {
        let mut reader = KafkaReader::new(kafka, 0)?;
        let tapped = Arc::new(Mutex::new(Tapped::default()));
        let ahead = Arc::new((AtomicU64::new(0), AtomicI64::new(i64::MIN)));
        let stop = Arc::new(AtomicBool::new(false));
        let (copy, stopped, watch) = (tapped.clone(), stop.clone(), ahead.clone());
        let thread = std::thread::Builder::new()
            .name("log-tap".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    let read = reader.poll_stamped(Duration::from_millis(100))?;
                    if let Some((_, command, stamped)) = read {
                        watch_time(&command, &watch);
                        let mut copy = copy.lock().unwrap_or_else(PoisonError::into_inner);
                        copy.commands.push(command);
                        copy.stamped.push(stamped);
                    }
                }
                Ok(())
            })?;
        Ok(LogTap {
            tapped,
            ahead,
            stop,
            thread: Some(thread),
        })
    }

    /// The log's first `end` records, once read (waiting up to `timeout`), and how far
    /// ahead of time the log ran; stops the tap.
    pub(crate) fn until(mut self, end: u64, timeout: Duration) -> Result<(Tapped, LogAhead)> {
        let deadline = Instant::now() + timeout;
        loop {
            let read = self.read();
            if read >= end {
                break;
            }
            if Instant::now() > deadline {
                bail!("reading the log stalled at {read} of {end}");
            }
            if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(self
                    .finish()
                    .err()
                    .unwrap_or_else(|| anyhow!("the tap stopped")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.finish()?;
        let mut tapped =
            std::mem::take(&mut *self.tapped.lock().unwrap_or_else(PoisonError::into_inner));
        tapped.commands.truncate(end as usize);
        tapped.stamped.truncate(end as usize);
        let ahead = LogAhead {
            records: self.ahead.0.load(Ordering::Relaxed),
            max_ms: self.ahead.1.load(Ordering::Relaxed),
        };
        Ok((tapped, ahead))
    }

    fn read(&self) -> u64 {
        let tapped = self.tapped.lock().unwrap_or_else(PoisonError::into_inner);
        tapped.commands.len() as u64
    }

    /// Stops the thread and returns its outcome.
    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow!("the log tap panicked"))?
                .map_err(|err| anyhow!("reading the log: {err}")),
            None => Ok(()),
        }
    }
}

impl Drop for LogTap {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

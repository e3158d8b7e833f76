//! The drill's copy of the shard's log, read from its first record while the drill runs.
//!
//! The audit replays the whole log. A cluster that keeps only the newest records (the mock
//! cluster keeps about 5 MB or 100,000 batches of a partition, whatever its configuration)
//! no longer has the first ones by the end of a long drill: read at the end, a 10-minute
//! drill at 500 orders/s failed with "no offset to automatically reset to". Following the log
//! as it grows keeps every record, in memory (a command is under 100 bytes: a 63-minute drill
//! at 500/s holds about 200 MB).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use engine::Command;
use replicator::kafka::{KafkaConfig, KafkaReader};

/// A thread copying the log from its start.
pub(crate) struct LogTap {
    commands: Arc<Mutex<Vec<Command>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl LogTap {
    /// Starts reading `kafka`'s partition from offset 0.
    pub(crate) fn start(kafka: &KafkaConfig) -> Result<LogTap> {
        let mut reader = KafkaReader::new(kafka, 0)?;
        let commands = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (copy, stopped) = (commands.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("log-tap".into())
            .spawn(move || {
                while !stopped.load(Ordering::Acquire) {
                    if let Some((_, command)) = reader.poll(Duration::from_millis(100))? {
                        copy.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(command);
                    }
                }
                Ok(())
            })?;
        Ok(LogTap {
            commands,
            stop,
            thread: Some(thread),
        })
    }

    /// The log's first `end` records, once read (waiting up to `timeout`); stops the tap.
    pub(crate) fn until(mut self, end: u64, timeout: Duration) -> Result<Vec<Command>> {
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
        let mut commands =
            std::mem::take(&mut *self.commands.lock().unwrap_or_else(PoisonError::into_inner));
        commands.truncate(end as usize);
        Ok(commands)
    }

    fn read(&self) -> u64 {
        let commands = self.commands.lock().unwrap_or_else(PoisonError::into_inner);
        commands.len() as u64
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

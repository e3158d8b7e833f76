//! The log every site rebuilds the exchange from, and the files that make recovery fast.
//!
//! - [`journal`]: the embedded log, an append-only file journal with group commit and crash
//!   recovery (the default when no Kafka is configured).
//! - [`kafka`]: the Kafka log: producer, partition reader, watermarks.
//! - [`topic`]: the start-up check of a commands topic: durability, retention, broker version.
//! - [`log`]: a shard's log behind one handle ([`log::Log`], [`log::LogHandle`]), whichever
//!   backend holds it; the one place that knows which.
//! - [`record`]: the journal's record framing (length, CRC, position, durable mark).
//! - [`security`]: the Kafka clients' TLS and SASL settings.
//! - [`snapshots`]: engine snapshots on disk, each tied to a log position.
//! - [`recovery`]: newest valid snapshot + replay of the log after it.
//!
//! - [`divergence`]: state-hash reports every N records, and the comparison that finds sites
//!   that disagree (`exchange verify`).

#![forbid(unsafe_code)]

pub mod divergence;
pub mod journal;
pub mod kafka;
pub mod log;
pub mod record;
pub mod recovery;
pub mod security;
pub mod site_clock;
pub mod snapshots;
pub mod topic;

use std::time::Duration;

use engine::Command;

/// Any failure of a log backend.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaLogError),
}

impl LogError {
    /// Whether the log holds a record this binary cannot read but a newer one can: restarting
    /// this binary will not help.
    pub fn needs_newer_binary(&self) -> bool {
        matches!(
            self,
            LogError::Journal(journal::JournalError::NeedsNewerBinary { .. })
                | LogError::Kafka(kafka::KafkaLogError::NeedsNewerBinary { .. })
        )
    }
}

/// A shard's log, whichever backend holds it: the file journal or a Kafka partition.
pub trait CommandLog {
    type Reader: LogReader;

    /// Queues `command` for the log (the sequencer side). It is acknowledged when a reader
    /// reads it back, never before.
    fn append(&self, command: &Command) -> Result<(), LogError>;

    /// Reads committed records in order from position `from`.
    fn reader(&self, from: u64) -> Result<Self::Reader, LogError>;

    /// The durable (committed) end: every position below it can be read.
    fn durable_position(&self) -> Result<u64, LogError>;

    /// The first position the log still holds: 0 unless retention deleted records (Kafka's
    /// low watermark).
    fn first_position(&self) -> Result<u64, LogError> {
        Ok(0)
    }
}

/// Reads a log's committed records in order.
pub trait LogReader {
    /// The position of the next record.
    fn position(&self) -> u64;

    /// Hands up to `max` records to `each` (position, command), waiting up to `wait` for the
    /// first; returns how many.
    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(u64, Command),
    ) -> Result<usize, LogError>;
}

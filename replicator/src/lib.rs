//! The log every site rebuilds the exchange from, and the files that make recovery fast.
//!
//! - [`journal`]: the embedded log, an append-only file journal with group commit and crash
//!   recovery (the default when no Kafka is configured).
//! - [`kafka`]: the Kafka log: producer, partition reader, topic durability check.
//! - [`record`]: the journal's record framing (length, CRC, position, durable mark).
//! - [`snapshots`]: engine snapshots on disk, each tied to a log position.
//! - [`recovery`]: newest valid snapshot + replay of the log after it.
//!
//! - [`divergence`]: state-hash reports every N records, and the comparison that finds sites
//!   that disagree (`exchange verify`).

#![forbid(unsafe_code)]

pub mod divergence;
pub mod journal;
pub mod kafka;
pub mod record;
pub mod recovery;
pub mod snapshots;

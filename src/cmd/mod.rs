//! The `exchange` command's subcommands, one module each: its `Args` (the help text is their
//! doc comments) and its `run`.
//!
//! - [`admin`]: `exchange admin`, the operator's controls through a node's admin endpoint.
//! - [`bootstrap`]: `exchange bootstrap`, a site's snapshots fetched from another site.
//! - [`demo`]: `exchange demo`, a site under load at a few rates.
//! - [`drill`]: `exchange drill`, the failover drill on three sites (the `drill` crate).
//! - [`loadgen`]: `exchange loadgen`, open-loop load against running gateways.
//! - [`member_token`]: `exchange member-token`, a member's token and its members-file entry.
//! - [`node`]: `exchange node`, one site from a TOML file.
//! - [`replay`]: `exchange replay`, a command file through a fresh engine.
//! - [`sim`]: `exchange sim`, the deterministic simulator of three sites over many seeds.
//! - [`verify`]: `exchange verify`, the sites' state hashes compared.
//! - [`kafka_bench`]: `exchange kafka-bench`, the Kafka log's produce → consume round trip.
//! - [`journal_bench`]: `exchange journal-bench`, the journal's benchmark and crash-test writer.

pub mod admin;
pub mod bootstrap;
pub mod demo;
pub mod drill;
pub mod journal_bench;
pub mod kafka_bench;
pub mod loadgen;
pub mod member_token;
pub mod node;
pub mod replay;
pub mod sim;
pub mod verify;

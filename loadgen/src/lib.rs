//! Seeded order flows, the open-loop load generator and failover drills.
//!
//! - [`flow`]: a deterministic, exchange-core-like order flow ([`FlowGenerator`]) that yields
//!   valid [`engine::Command`]s, with statistics of what it generated ([`FlowStats`]).

#![forbid(unsafe_code)]

pub mod flow;

pub use flow::{FlowConfig, FlowGenerator, FlowStats, Mix};

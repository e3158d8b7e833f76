//! Seeded order flows, the open-loop load generator and failover drills.
//!
//! The flows it sends are the `flow` crate's ([`flow::FlowGenerator`]).
//! - [`run()`]: the open-loop load generator: the flow over many binary sessions at a fixed
//!   rate, latency from each request's intended send time ([`LoadConfig`], [`RunResult`]).
//! - [`sweep()`]: one rate after another up to the first that misses its p99 bound.
//! - [`table`], [`write_html`]: a text table and a self-contained HTML report of runs.
//! - [`failover`]: a client that fails over between sites, reconciles and resends
//!   unacknowledged orders with their client order ids.
//! - [`drill`]: failover drills: load through every site while sites are killed and
//!   restarted, then an audit against the log (lost acknowledged orders, duplicates,
//!   convergence, RTO, catch-up).

#![forbid(unsafe_code)]

pub mod drill;
pub mod failover;
mod html;
mod plan;
mod result;
mod run;
mod sweep;

pub use html::{html, write_html};
pub use plan::RequestKind;
pub use result::{table, Errors, Latency, RunResult, Throughput};
pub use run::{run, LoadConfig};
pub use sweep::{rate_steps, sweep, SweepResult};

//! The open-loop load generator: load only (failover drills are the `drill` crate's).
//!
//! The flows it sends are the `flow` crate's ([`flow::FlowGenerator`]).
//! - [`run()`]: the open-loop load generator: the flow over many binary sessions at a fixed
//!   rate, latency from each request's intended send time ([`LoadConfig`], [`RunResult`]).
//! - [`sweep()`]: one rate after another up to the first that misses its p99 bound.
//! - [`table`], [`write_html`]: a text table and a self-contained HTML report of runs.

#![forbid(unsafe_code)]

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

//! A deterministic simulator of three sites: any failure reproduced by its seed.
//!
//! One thread, simulated time, one seeded PRNG, no sockets, threads or wall clock (as
//! TigerBeetle's VOPR and FoundationDB's simulation do). In it:
//!
//! - `log`: the Kafka partition ([`log::SimLog`]): appends by the leader only, stamped with
//!   the log's time, idempotent producers, leader moves;
//! - `site`: three sites ([`site::SimSite`]), each the real engine and the real desk (what a
//!   member is told) fed by a feeder from the log, with the node's readiness rules, a producer
//!   that retries and gives up, cancel-on-disconnect sessions, snapshots and hashes;
//! - `client`: members with the failover client's rules ([`client::SimClient`]);
//! - `faults`: what goes wrong, drawn from the seed ([`faults::plan`]);
//! - `check`: the drill's checks over the whole history ([`check::Verdict`]).
//!
//! Messages take fixed times (a member's link 0.5 ms each way; the log 0.5 ms each way from
//! the clouds, 1.5 ms from metal), in order on each link; events at the same time keep the
//! order they were scheduled in, so a run is a function of its seed.

mod check;
mod client;
mod faults;
mod log;
mod msg;
mod site;
mod world;

use std::time::Duration;

use serde::Serialize;

pub use check::Verdict;
pub use faults::{Fault, FaultKind};

use world::World;

/// A bug planted on purpose, to show the simulator finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bug {
    /// A site acknowledges a new order as it sends it to the log, before the log commits it.
    AckBeforeCommit,
    /// A site's feeder applies again a record delivered twice (it should skip what it has
    /// applied): only faults that deliver records twice, or slow links, show it.
    ReapplyRedelivered,
}

/// One run's shape (the seed draws the rest).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How long members trade while faults come.
    pub duration: Duration,
    /// Then how long, without load or faults, before the checks.
    pub settle: Duration,
    pub clients: usize,
    /// Faults at all (without: a run that must pass however the checker is set).
    pub faults: bool,
    /// Log overloads among the faults (see [`faults::Extras`]).
    pub log_overload: bool,
    pub bug: Option<Bug>,
    /// Prints every event.
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            duration: Duration::from_secs(40),
            settle: Duration::from_secs(20),
            clients: 6,
            faults: true,
            log_overload: false,
            bug: None,
            trace: false,
        }
    }
}

/// What one seed's run did and what the checks found.
#[derive(Clone, Debug, Serialize)]
pub struct SimRun {
    pub seed: u64,
    pub simulated_ms: u64,
    pub events: u64,
    pub log_records: u64,
    pub orders_acknowledged: u64,
    pub failovers: u64,
    /// Moves of a member staying at a refusing site to another it found answering (among
    /// `failovers`).
    pub found_ready: u64,
    /// New orders a site refused before the log (busy, unavailable, catching up).
    pub refused: u64,
    /// Orders members gave up: resent from longer ago than the sites remember ids, refused as
    /// `stale_resend` (their outcome unknown to the member).
    pub stale_resends: u64,
    /// The longest a member waited from sending an order to its acknowledgement (resends and
    /// moves included), simulated milliseconds.
    pub slowest_ack_ms: u64,
    pub faults: Vec<Fault>,
    pub verdict: Verdict,
}

impl SimRun {
    pub fn passed(&self) -> bool {
        self.verdict.problems().is_empty()
    }
}

/// Runs seed `seed`.
pub fn run(seed: u64, config: &SimConfig) -> SimRun {
    let mut world = World::new(seed, config);
    let load_end = config.duration.as_nanos() as u64;
    world.run_until(load_end);
    let settled = load_end + config.settle.as_nanos() as u64;
    world.run_until(settled);
    // The sites stop sending (their idle clocks would always leave a record in flight), and
    // read what is in the log.
    world.quiesce();
    world.run_until(settled + 1_000_000_000);
    world.finish(seed)
}

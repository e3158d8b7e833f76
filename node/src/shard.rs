//! One shard's whole pipeline, in the order a command goes through it (ARCHITECTURE.md, "The
//! pipeline around the engine"):
//!
//! ```text
//!  0. open:     snapshot store + log, recover (newest snapshot + replay), map the engine's memory
//!  1. submit:   gateway ──ShardSequencer──▶ log            (refusals: busy, unavailable)
//!  2. feed:     log reader ──ring──▶                        (feeder thread, committed records only)
//!  3. match:    Runner: Engine::apply ──ring──▶             (matcher thread; Checkpoints after each)
//!  4. pump:     Hub::apply ──▶ desk ──▶ reports, market data (pump thread)
//!  5. stop:     close the log, feed to its end, drain, final snapshot
//! ```
//!
//! A shard whose log can no longer be read refuses its orders from then on and says why
//! ([`ShardView::failure`]); the node then exits so its supervisor restarts it into recovery.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_channel::Sender;
use engine::ring::{Producer, RingDepth};
use engine::runner::{drain, Runner, Waiter};
use engine::{Command, CommandKind, Engine, EngineConfig};
use gateway::{Hub, LatencyHistogram, Sequencer, SubmitError, PUMP_WAIT};
use replicator::log::{Log, LogHandle, Refused};
use replicator::recovery::{recover, RecoveryError};
use replicator::snapshots::SnapshotStore;
use replicator::topic::TopicSafety;
use replicator::{CommandLog, LogReader};

use crate::config::{NodeConfig, ShardPlan, SnapshotSection};
use crate::fence::Diverged;
use crate::freshness::Freshness;
use crate::persist::{Checkpoints, Persist};

/// Command ring from the feeder to the matcher.
const COMMAND_RING: usize = 1 << 14;
/// Output ring from the matcher to the pump.
const OUTPUT_RING: usize = 1 << 16;
/// Most items the pump hands the hub at once.
const PUMP_BATCH: usize = 4096;
/// At shutdown, how long a Kafka producer may take to flush, how long reading the
/// partition's end may take, and how long the feeder waits for the log to deliver (each).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What recovery did at start, for one shard.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub shard: String,
    pub snapshot: Option<u64>,
    pub replayed: u64,
    pub position: u64,
    /// How long recovery took: the snapshot's restore and the replay.
    pub elapsed: Duration,
}

impl Recovery {
    /// Records replayed per second of recovery (0 when nothing was replayed).
    pub fn replay_rate(&self) -> u64 {
        let seconds = self.elapsed.as_secs_f64();
        if self.replayed == 0 || seconds == 0.0 {
            return 0;
        }
        (self.replayed as f64 / seconds) as u64
    }
}

/// What the rest of the node reads of a running shard: its log, rings, latency and failure.
pub struct ShardView {
    pub name: String,
    pub log: LogHandle,
    /// The matcher's rings, once it runs.
    pub rings: OnceLock<Rings>,
    /// From the log's stamp on a command (the journal writer's clock as it sequences the
    /// batch, before its write and fsync; a Kafka record's timestamp, in whole milliseconds) to
    /// the feeder reading it back from the committed log: the log's commit latency.
    pub sequenced_latency: LatencyHistogram,
    /// How far behind the log the shard reads.
    pub freshness: Freshness,
    /// The site's clock against the shard's log.
    pub clock: ClockCheck,
    read_failure: OnceLock<String>,
    /// Set with `read_failure` when the log holds what only a newer binary can apply.
    pub needs_newer_binary: AtomicBool,
    /// Set once when this site's state hash is the minority's at a position ([`crate::fence`]).
    pub diverged: OnceLock<Diverged>,
}

/// How far ahead of the log's time the site's clock may run, and the clock itself.
#[derive(Clone, Copy, Debug)]
pub struct ClockCheck {
    /// Beyond this ahead the shard refuses everything the site would stamp (`None`:
    /// unchecked, as on the journal, whose writer stamps every record itself).
    pub max_ahead: Option<Duration>,
    /// The site's clock is the wall clock plus this (drills and tests set a wrong clock).
    pub offset_ns: i64,
}

/// How full a shard's two rings are.
pub struct Rings {
    pub commands: RingDepth,
    pub output: RingDepth,
}

impl ShardView {
    /// `(durable end, next position applied)` of the shard's log, shard number `at` of `hub`.
    /// The engine applies committed records only, so the durable end is at least the applied
    /// position even when the last read of the log's end is older than the last record read.
    pub fn positions(&self, hub: &Hub, at: usize) -> (u64, u64) {
        let applied = hub.next_position(at);
        (self.log.durable().max(applied), applied)
    }

    /// Why the shard stopped following its log, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.read_failure.get().map(String::as_str)
    }

    /// How far ahead of the log's time the site's clock runs now, in milliseconds (`None`:
    /// unchecked, or nothing to check it against).
    pub fn clock_ahead_ms(&self) -> Option<i64> {
        self.clock.max_ahead?;
        let now = gateway::now_ns().saturating_add_signed(self.clock.offset_ns);
        self.log.clock_ahead_ms(now)
    }

    /// Whether the site's clock runs too far ahead of the log's now.
    pub fn clock_skewed(&self) -> bool {
        self.clock_ahead_ms()
            .is_some_and(|ahead| self.too_far_ahead(ahead))
    }

    fn too_far_ahead(&self, ahead_ms: i64) -> bool {
        let max = self
            .clock
            .max_ahead
            .map_or(i64::MAX, |max| max.as_millis() as i64);
        ahead_ms > max
    }

    /// The stamp `command` goes to the log with: its own, checked against the log's time.
    /// A stamp too far ahead is refused as `clock_skew`; but while the shard replays a
    /// backlog the log's time it knows is old and the clock cannot be checked, and what it
    /// lets through then (what takes risk off) goes stamped no later than that time, so it
    /// moves no log time whatever the clock says.
    fn stamp(&self, command: &mut Command) -> Result<(), SubmitError> {
        let ahead = self
            .clock
            .max_ahead
            .and_then(|_| self.log.clock_ahead_ms(command.ts.0));
        match ahead.filter(|ahead| self.too_far_ahead(*ahead)) {
            None => Ok(()),
            Some(_) if !self.freshness.catching_up() => Err(SubmitError::ClockSkew),
            Some(ahead) => {
                let back = (ahead as u64).saturating_mul(1_000_000);
                command.ts = engine::TimestampNs(command.ts.0.saturating_sub(back));
                Ok(())
            }
        }
    }
}

// ----- 0. open -------------------------------------------------------------------------------

/// A shard with its log open and its engine recovered, not yet running.
pub struct OpenedShard {
    log: Log,
    engine: Engine,
    store: Arc<SnapshotStore>,
    pub recovery: Recovery,
}

/// Opens `shard`'s snapshot store and log under `data_dir` for `site`, and recovers its
/// engine.
pub fn open(
    site: &str,
    data_dir: &Path,
    shard: &ShardPlan,
    engine: EngineConfig,
    snapshots: &SnapshotSection,
) -> anyhow::Result<OpenedShard> {
    let dir = data_dir.join(&shard.dir);
    let store = Arc::new(
        SnapshotStore::open(&dir.join("snapshots"), snapshots.keep.max(1))
            .context("opening the snapshot store")?,
    );
    let log = Log::open(&shard.log, &dir, site)
        .with_context(|| format!("opening the {}", shard.log.kind()))?;
    if let Some(safety) = log.topic_safety() {
        say_topic(
            &shard.name,
            safety,
            Duration::from_secs(snapshots.every_seconds),
        );
    }
    let recovered = recover(&log, &store, engine).context("recovery")?;
    for skipped in &recovered.skipped {
        eprintln!(
            "node: shard {}: snapshot {} (log position {}) skipped: {}",
            shard.name,
            skipped.path.display(),
            skipped.position,
            skipped.reason
        );
    }
    let mut engine = recovered.engine;
    // Every reserved page mapped now, so no command takes a page fault later.
    engine.commit_memory();
    Ok(OpenedShard {
        log,
        engine,
        store,
        recovery: Recovery {
            shard: shard.name.clone(),
            snapshot: recovered.snapshot,
            replayed: recovered.replayed,
            position: recovered.position,
            elapsed: recovered.elapsed,
        },
    })
}

/// Says at start-up what the topic check allowed, could not check, and how long this site may
/// be down and still rejoin from its own snapshot.
fn say_topic(shard: &str, safety: &TopicSafety, snapshot_every: Duration) {
    for problem in &safety.problems {
        eprintln!("node: shard {shard}: unsafe topic, allowed for development: {problem}");
    }
    for unchecked in &safety.unchecked {
        eprintln!("node: shard {shard}: not checked: {unchecked}");
    }
    match safety.retention.down_time(snapshot_every) {
        Some(down) => eprintln!(
            "node: shard {shard}: this site may be down {down} and rejoin from its own \
             snapshot; longer, it needs another site's (exchange bootstrap)"
        ),
        None => eprintln!(
            "node: shard {shard}: how long this site may be down and rejoin from its own \
             snapshot is unknown (retention.ms not reported); longer than the topic keeps \
             records, it needs another site's (exchange bootstrap)"
        ),
    }
}

impl OpenedShard {
    /// Where the shard's snapshots go.
    pub fn store(&self) -> Arc<SnapshotStore> {
        self.store.clone()
    }

    /// Whether the recovered engine lists `symbol` already.
    pub fn lists(&self, symbol: &engine::Symbol) -> bool {
        self.engine.symbol_id(symbol).is_some()
    }

    /// The shard's view, before it runs: what the hub submits through and metrics read.
    /// On a Kafka log the site refuses the shard's new orders, amends and status questions
    /// while it is more than `max_lag` behind the log (`None`: never), and everything while
    /// its clock runs more than `clock.max_ahead` ahead of the log's; a journal's only site
    /// never does either.
    pub fn view(&self, name: &str, max_lag: Option<Duration>, clock: ClockCheck) -> ShardView {
        let log = self.log.handle();
        let kafka = log.kind() == "kafka";
        let max_lag = max_lag.filter(|_| kafka);
        let read = self.recovery.position;
        ShardView {
            name: name.into(),
            clock: ClockCheck {
                max_ahead: clock.max_ahead.filter(|_| kafka),
                ..clock
            },
            freshness: Freshness::new(max_lag, read, log.durable().max(read)),
            log,
            rings: OnceLock::new(),
            sequenced_latency: LatencyHistogram::default(),
            read_failure: OnceLock::new(),
            diverged: OnceLock::new(),
            needs_newer_binary: AtomicBool::new(false),
        }
    }
}

// ----- 1. submit -----------------------------------------------------------------------------

/// The gateway's way into a shard's log. A full queue is "busy"; a failed journal, an
/// unreachable Kafka leader, a log this site can no longer read or a shard fenced for
/// divergence ([`crate::fence`]) is "unavailable"; a shard
/// too far behind its log refuses new orders and amends as "catching up" (see [`adds_risk`]);
/// a site whose clock runs ahead of the log's refuses everything as "clock skew" (what it
/// stamped would move every site's log time on a broker that keeps create times).
/// Each is answered at once, never held.
pub struct ShardSequencer(pub Arc<ShardView>);

impl Sequencer for ShardSequencer {
    fn submit(&self, mut command: Command) -> Result<(), SubmitError> {
        if self.0.failure().is_some() || self.0.diverged.get().is_some() {
            return Err(SubmitError::Unavailable);
        }
        if adds_risk(&command.kind) && self.0.freshness.catching_up() {
            return Err(SubmitError::CatchingUp);
        }
        self.0.stamp(&mut command)?;
        if !goes_to_a_silent_leader(&command.kind) && !self.0.log.available() {
            return Err(SubmitError::Unavailable);
        }
        self.0
            .log
            .try_append(&command)
            .map_err(|refused| match refused {
                Refused::Busy => SubmitError::Busy,
                Refused::Unavailable => SubmitError::Unavailable,
            })
    }

    fn longest_delay_ns(&self) -> u64 {
        u64::try_from(self.0.log.longest_delay().as_nanos()).unwrap_or(u64::MAX)
    }

    fn ready(&self) -> Result<(), SubmitError> {
        let fenced = self.0.diverged.get().is_some();
        if self.0.failure().is_some() || fenced || !self.0.log.available() {
            Err(SubmitError::Unavailable)
        } else if self.0.freshness.catching_up() {
            Err(SubmitError::CatchingUp)
        } else if self.0.clock_skewed() {
            Err(SubmitError::ClockSkew)
        } else {
            Ok(())
        }
    }
}

/// Whether a site catching up with its log refuses `kind`: new orders and amends, which it
/// would acknowledge late and from old state (another site answers at once). It takes what
/// only takes risk off (cancels, mass cancels, a dead-man's switch's refreshes: getting them
/// into the log first matters more than a prompt answer, as in `cancel_only`), its own idle
/// clock (every site's switches need log time to move), its listing at start and the
/// operators' controls.
pub fn adds_risk(kind: &CommandKind) -> bool {
    matches!(kind, CommandKind::New(_) | CommandKind::Amend(_))
}

/// Whether `kind` goes to the log while its leader has not answered lately (the log is not
/// `available`): only the site's idle clock. Whatever a member sends is refused as
/// unavailable then, at once, rather than held in the producer's queue (its member moves to
/// a site that reaches the log). The clock goes all the same: a slow leader (a broker busy
/// serving a backlog) still appends it and keeps every site's log time, and so its
/// dead-man's switches, moving; one that lands late only moves the log's time to the log's
/// own. (Refusing it too, both surviving sites of a seed drill let log time stand still
/// for up to 2 s while tansu served a returning site's backlog: switches fired late.)
pub fn goes_to_a_silent_leader(kind: &CommandKind) -> bool {
    matches!(kind, CommandKind::Clock)
}

// ----- 2.-4. run -----------------------------------------------------------------------------

/// A shard's threads and log while the node runs.
pub struct RunningShard {
    log: Log,
    /// The log position the feeder stops at (`u64::MAX` while running).
    stop_feeder: Arc<AtomicU64>,
    feeder: JoinHandle<anyhow::Result<()>>,
    runner: Runner,
    pump: JoinHandle<()>,
    store: Arc<SnapshotStore>,
}

/// Starts shard number `at` of `hub`: the hub follows its recovered engine, the matcher takes
/// it (with snapshots and hashes handed to `persist`), the pump routes what it applies, and
/// the feeder feeds it the committed log. `view` must be the one the hub submits through.
pub fn start(
    opened: OpenedShard,
    at: usize,
    view: &Arc<ShardView>,
    hub: &Arc<Hub>,
    config: &NodeConfig,
    persist: Sender<Persist>,
) -> anyhow::Result<RunningShard> {
    let OpenedShard {
        log,
        engine,
        store,
        recovery,
    } = opened;
    let position = recovery.position;
    hub.seed(at, &engine, position);
    let checkpoints = Checkpoints::new(
        &config.site,
        at,
        position,
        config.snapshots.policy(),
        config.hash_every,
        persist,
    );
    let (commands, output, runner) =
        Runner::spawn::<COMMAND_RING, OUTPUT_RING>(engine, config.runner, position, checkpoints)?;
    let _ = view.rings.set(Rings {
        commands: commands.depth(),
        output: output.depth(),
    });
    let pump = {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name(format!("pump-{}", view.name))
            .spawn(move || drain(output, PUMP_BATCH, PUMP_WAIT, |batch| hub.apply(at, batch)))?
    };
    let reader = log.reader(position)?;
    let stop_feeder = Arc::new(AtomicU64::new(u64::MAX));
    let feeder = {
        let (view, stop) = (view.clone(), stop_feeder.clone());
        std::thread::Builder::new()
            .name(format!("feeder-{}", view.name))
            .spawn(move || feed(reader, commands, &view, &stop))?
    };
    Ok(RunningShard {
        log,
        stop_feeder,
        feeder,
        runner,
        pump,
        store,
    })
}

/// Feeds the committed log to the matcher until it reaches the position `stop` is set to (or
/// the log stops delivering for [`STOP_GRACE`] after that). A log it can no longer read is a
/// failure the shard reports and stops taking orders on.
fn feed<const N: usize>(
    mut reader: Box<dyn LogReader + Send>,
    mut commands: Producer<Command, N>,
    view: &ShardView,
    stop: &AtomicU64,
) -> anyhow::Result<()> {
    let mut waiter = Waiter::new(PUMP_WAIT);
    let mut idle_since: Option<Instant> = None;
    loop {
        // Stop only once everything committed before the stop was fed (or the log stopped
        // answering for the grace period: nothing more can be acknowledged).
        let stop_at = stop.load(Ordering::Acquire);
        if reader.position() >= stop_at {
            return Ok(());
        }
        let mut newer = None;
        let polled = reader.poll(1024, Duration::from_millis(2), &mut |at, command| {
            // Nothing is fed from a rules switch this binary does not implement on.
            newer = newer.or(command.needs_newer_binary().map(|version| (at, version)));
            if newer.is_some() {
                return;
            }
            view.sequenced_latency.record_since(command.ts.0);
            let mut command = command;
            while let Err(back) = commands.try_push(command) {
                command = back;
                waiter.wait();
            }
            waiter.reset();
        });
        view.freshness
            .observe(reader.position(), view.log.durable());
        if let Some((position, version)) = newer {
            // Said as recovery says it, where a restart would stop again.
            let why = RecoveryError::NewerRules { position, version }.to_string();
            return Err(fail(view, why, true));
        }
        // The site can no longer follow the log: it refuses the shard's orders and says so
        // on /health; the node exits so its supervisor restarts it into recovery (or, when
        // only a newer binary can read on, stops for good).
        let fed = polled.map_err(|err| {
            let why = format!("reading the log at {}: {err}", reader.position());
            fail(view, why, err.needs_newer_binary())
        })?;
        if stop_at == u64::MAX || fed > 0 {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() > STOP_GRACE {
            eprintln!(
                "node: shard {}: the log did not deliver up to position {stop_at} within \
                 {STOP_GRACE:?}; stopping at {}",
                view.name,
                reader.position()
            );
            return Ok(());
        }
    }
}

/// Records why the shard stopped following its log, says so, and returns it as the error.
fn fail(view: &ShardView, why: String, needs_newer_binary: bool) -> anyhow::Error {
    eprintln!("node: shard {}: {why}", view.name);
    view.needs_newer_binary
        .store(needs_newer_binary, Ordering::Release);
    let _ = view.read_failure.set(why.clone());
    anyhow!(why)
}

// ----- 5. stop -------------------------------------------------------------------------------

/// A shard whose log is closed, draining.
pub struct StoppingShard {
    feeder: JoinHandle<anyhow::Result<()>>,
    runner: Runner,
    pump: JoinHandle<()>,
    store: Arc<SnapshotStore>,
}

impl RunningShard {
    /// Closes the log (the journal syncs what is queued; the Kafka producer flushes) and tells
    /// the feeder to stop at its end: everything committed is still applied and reported.
    pub fn close(self) -> StoppingShard {
        let end = self.log.close(STOP_GRACE);
        self.stop_feeder.store(end, Ordering::Release);
        StoppingShard {
            feeder: self.feeder,
            runner: self.runner,
            pump: self.pump,
            store: self.store,
        }
    }
}

impl StoppingShard {
    /// Waits for the feeder, matcher and pump to finish; returns the final engine and where
    /// to save it.
    pub fn join(self) -> anyhow::Result<(Engine, Arc<SnapshotStore>)> {
        self.feeder
            .join()
            .map_err(|_| anyhow!("a feeder thread panicked"))??;
        let (engine, _) = self
            .runner
            .join()
            .map_err(|_| anyhow!("a matcher thread panicked"))?;
        self.pump
            .join()
            .map_err(|_| anyhow!("a pump thread panicked"))?;
        Ok((engine, self.store))
    }
}

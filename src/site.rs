//! One site's running exchange: per shard log → matcher → hub, and the gateway servers on top.
//!
//! ```text
//!   sessions ──submit──▶ Hub ──by symbol──▶ shard's log (journal writer thread, or Kafka producer → partition)
//!                                             │ committed records, in order
//!                                        feeder thread ──ring──▶ matcher thread (Engine) ──ring──▶ hub pump
//!                                                                    │ snapshot bytes, hashes        │ reports, market data
//!                                                                persist thread                     sessions
//! ```
//!
//! A site runs one or more shards ([`ShardConfig`]): each has its own log (a journal in its own
//! directory, or its own Kafka partition), engine, matcher, feeder, pump and snapshots, and holds
//! some of the symbols; the hub routes every request to its symbol's shard. Shards share the
//! gateway's servers, the members, the persist thread and `hashes.jsonl` (reports carry the
//! shard's number).
//!
//! [`Site::start`] recovers every shard (newest snapshot + replay), lists the configured symbols
//! through their shard's log (a duplicate listing is refused harmlessly by the engine), then
//! serves. [`Site::shutdown`] stops the servers (sessions log out), lets every matcher apply
//! everything already committed, closes the logs and writes final snapshots, so nothing
//! acknowledged is lost and the next start replays nothing.
//!
//! The log is the embedded journal or a Kafka partition ([`LogBackend`]); everything after the
//! feeder is the same. On Kafka every site reads the same partitions, so every site's engines
//! apply the same commands at the same positions, whichever site's gateway took them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use engine::ring::Pop;
use engine::runner::{Observer, Runner, RunnerConfig, Waiter};
use engine::{AddSymbol, Command, CommandKind, Engine, EngineConfig, Price, Qty, Symbol};
use gateway::binary_server::{self, BinaryConfig};
use gateway::fix::{FixConfig, FixGateway};
use gateway::hub::SHARDS_MAX;
use gateway::{
    Hub, LatencyHistogram, MdConfig, MdServer, Member, Members, Sequencer, SubmitError, PUMP_WAIT,
    REJECT_REASONS,
};
use replicator::divergence::{FileHashSink, HashCadence, HashReport, HashSink};
use replicator::journal::{Appender, FsyncPolicy, Journal, JournalConfig, JournalError};
use replicator::kafka::{KafkaConfig, KafkaLog, KafkaLogError, Watermarks};
use replicator::recovery::{recover, Checkpointer, SnapshotPolicy};
use replicator::snapshots::{self, SnapshotStore};
use replicator::{CommandLog, LogReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Command ring from the feeder to the matcher.
const COMMAND_RING: usize = 1 << 14;
/// Output ring from the matcher to the hub pump.
const OUTPUT_RING: usize = 1 << 16;
/// How often a Kafka partition's committed end is read (lag, reachability).
const WATERMARK_EVERY: Duration = Duration::from_millis(250);
/// A Kafka log whose partition leader has not answered for this long is unreachable: new
/// requests are refused as "unavailable" instead of piling up in the producer's queue.
const KAFKA_UNREACHABLE_AFTER: Duration = Duration::from_secs(4);
/// At shutdown, how long the feeder waits for the log's committed end it was asked to reach.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Hash reports kept in memory for `GET /v1/hashes`.
const RECENT_HASHES: usize = 256;

/// Where the site's log lives.
#[derive(Clone, Debug)]
pub enum LogBackend {
    /// The embedded file journal in `data_dir/journal`.
    Journal { fsync: FsyncPolicy },
    /// A partition of a Kafka topic that every site reads (three-site deployments).
    Kafka(KafkaConfig),
}

/// A symbol the site lists at start.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSpec {
    pub symbol: String,
    pub tick: String,
    pub lot: String,
}

/// One shard: some of the site's symbols, with their own log and engine.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    /// The shard's name, in metrics, health and logs.
    pub name: String,
    /// Holds the shard's `journal/` and `snapshots/`, relative to the site's `data_dir` (empty:
    /// the `data_dir` itself, as a site of one shard keeps them).
    pub dir: PathBuf,
    pub log: LogBackend,
    pub symbols: Vec<SymbolSpec>,
}

impl ShardConfig {
    /// A site's only shard, named `0`, holding `symbols` in the site's `data_dir`.
    pub fn only(log: LogBackend, symbols: Vec<SymbolSpec>) -> ShardConfig {
        ShardConfig {
            name: "0".into(),
            dir: PathBuf::new(),
            log,
            symbols,
        }
    }
}

/// Everything a site needs.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The site's name (in hash reports and logs).
    pub name: String,
    /// Holds `hashes.jsonl`, the FIX session store, and the shards' directories.
    pub data_dir: PathBuf,
    /// Every shard's engine capacities.
    pub engine: EngineConfig,
    pub runner: RunnerConfig,
    /// The shards, in an order every site of a deployment shares (a shard's number, in hash
    /// reports, is its place here). At most [`gateway::hub::SHARDS_MAX`].
    pub shards: Vec<ShardConfig>,
    pub snapshots: SnapshotPolicy,
    /// Snapshots kept on disk, per shard.
    pub snapshots_keep: usize,
    /// State hashes are written every this many records of a shard (0: never).
    pub hash_every: u64,
    pub members: Vec<Member>,
    pub binary_listen: SocketAddr,
    pub binary: BinaryConfig,
    /// Health, metrics and market data over HTTP (and WebSocket), if set.
    pub http_listen: Option<SocketAddr>,
    pub market_data: MdConfig,
    /// FIX 4.4 order entry, if set. Its `store_dir`, when relative, is under `data_dir`.
    pub fix_listen: Option<SocketAddr>,
    pub fix: FixConfig,
}

/// Each shard's symbols, and the shard of every symbol.
type Listings = (Vec<Vec<AddSymbol>>, HashMap<Symbol, usize>);

/// Labelled samples of one metric.
type Samples = Vec<(String, u64)>;

impl SiteConfig {
    /// Each shard's symbols, parsed, and the shard of every symbol. Refuses no shard, too
    /// many, a shard without symbols, two shards with one name or directory, and a symbol
    /// listed twice.
    fn listings(&self) -> anyhow::Result<Listings> {
        if !(1..=SHARDS_MAX).contains(&self.shards.len()) {
            bail!(
                "a site runs 1 to {SHARDS_MAX} shards, not {}",
                self.shards.len()
            );
        }
        let mut shard_of = HashMap::new();
        let mut listings = Vec::new();
        for (at, shard) in self.shards.iter().enumerate() {
            if let Some(other) = self.shards[..at]
                .iter()
                .find(|o| o.name == shard.name || o.dir == shard.dir)
            {
                bail!(
                    "shards {:?} and {:?} have the same name or directory",
                    other.name,
                    shard.name
                );
            }
            if shard.symbols.is_empty() {
                bail!("shard {:?} lists no symbol", shard.name);
            }
            let mut adds = Vec::new();
            for spec in &shard.symbols {
                let add = spec.parse()?;
                if shard_of.insert(add.symbol, at).is_some() {
                    bail!("symbol {} is listed twice", spec.symbol);
                }
                adds.push(add);
            }
            listings.push(adds);
        }
        Ok((listings, shard_of))
    }
}

impl SymbolSpec {
    fn parse(&self) -> anyhow::Result<AddSymbol> {
        let symbol =
            Symbol::new(&self.symbol).map_err(|e| anyhow!("symbol {:?}: {e}", self.symbol))?;
        let tick = Price::parse(&self.tick)
            .map_err(|e| anyhow!("symbol {}: tick {:?} {e}", self.symbol, self.tick))?;
        let lot = Qty::parse(&self.lot)
            .map_err(|e| anyhow!("symbol {}: lot {:?} {e}", self.symbol, self.lot))?;
        Ok(AddSymbol { symbol, tick, lot })
    }
}

/// The site's log, opened; closed at shutdown.
enum OpenLog {
    Journal(Journal),
    Kafka(Arc<KafkaLog>, Arc<Watermarks>),
}

impl OpenLog {
    fn handle(&self) -> LogHandle {
        match self {
            OpenLog::Journal(journal) => LogHandle::Journal(journal.appender()),
            OpenLog::Kafka(log, watermarks) => LogHandle::Kafka {
                log: log.clone(),
                watermarks: watermarks.clone(),
            },
        }
    }
}

/// A handle on the site's log for the gateway (submit) and for health and metrics.
#[derive(Clone)]
enum LogHandle {
    Journal(Appender),
    Kafka {
        log: Arc<KafkaLog>,
        watermarks: Arc<Watermarks>,
    },
}

impl LogHandle {
    /// The log's committed end as last known.
    fn durable(&self) -> u64 {
        match self {
            LogHandle::Journal(appender) => appender.durable_position(),
            LogHandle::Kafka { watermarks, .. } => watermarks.high(),
        }
    }

    /// Whether the log takes commands: the journal has not failed, the Kafka partition's
    /// leader answers.
    fn available(&self) -> bool {
        match self {
            LogHandle::Journal(appender) => !appender.failed(),
            LogHandle::Kafka { watermarks, .. } => watermarks.reachable(KAFKA_UNREACHABLE_AFTER),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            LogHandle::Journal(_) => "journal",
            LogHandle::Kafka { .. } => "kafka",
        }
    }
}

/// Why the feeder stopped reading the log, once it did (the site then takes no orders).
type ReadFailure = Arc<std::sync::OnceLock<String>>;

/// The gateway's way into the log. A full queue is "busy"; a failed journal, an unreachable
/// Kafka leader or a log this site can no longer read is "unavailable" (answered at once,
/// never held).
struct SiteSequencer {
    log: LogHandle,
    read_failure: ReadFailure,
}

impl Sequencer for SiteSequencer {
    fn submit(&self, command: Command) -> Result<(), SubmitError> {
        if self.read_failure.get().is_some() {
            return Err(SubmitError::Unavailable);
        }
        self.log.submit(command)
    }
}

impl LogHandle {
    fn submit(&self, command: Command) -> Result<(), SubmitError> {
        match self {
            LogHandle::Journal(appender) => appender.try_append(command).map_err(|err| match err {
                JournalError::Full => SubmitError::Busy,
                _ => SubmitError::Unavailable,
            }),
            LogHandle::Kafka { log, watermarks } => {
                if !watermarks.reachable(KAFKA_UNREACHABLE_AFTER) {
                    return Err(SubmitError::Unavailable);
                }
                log.appender().append(&command).map_err(|err| match err {
                    KafkaLogError::Full => SubmitError::Busy,
                    _ => SubmitError::Unavailable,
                })
            }
        }
    }
}

/// One shard's gauges and log, read by `/metrics` and `/health`.
struct ShardMetrics {
    name: String,
    commands_ring: engine::ring::RingDepth,
    output_ring: engine::ring::RingDepth,
    /// From the gateway's stamp to the feeder reading the command back from the committed
    /// log: the log's commit latency as sessions see it.
    sequenced_latency: LatencyHistogram,
    log: LogHandle,
    read_failure: ReadFailure,
}

impl ShardMetrics {
    /// `(durable end, next position applied)` of the shard's log.
    fn positions(&self, hub: &Hub, shard: usize) -> (u64, u64) {
        (self.log.durable(), hub.next_position(shard))
    }
}

/// What the site exposes besides the hub's counters (gauges read by `/metrics`).
pub struct SiteMetrics {
    site: String,
    shards: Vec<Arc<ShardMetrics>>,
}

impl SiteMetrics {
    /// Why a shard stopped following its log, if one did.
    fn failure(&self) -> Option<String> {
        self.shards.iter().find_map(|shard| {
            let why = shard.read_failure.get()?;
            Some(format!("shard {}: {why}", shard.name))
        })
    }

    /// The Prometheus text exposition of the site's metrics. Per-shard series carry a
    /// `shard` label.
    pub fn render(&self, hub: &Hub) -> String {
        use std::fmt::Write;
        let c = hub.counters();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let site = &self.site;
        let per_shard = |each: &dyn Fn(usize, &ShardMetrics) -> Samples| {
            let mut samples = Vec::new();
            for (at, shard) in self.shards.iter().enumerate() {
                for (labels, value) in each(at, shard) {
                    samples.push((format!(",shard=\"{}\"{labels}", shard.name), value));
                }
            }
            samples
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP exchange_{name} {help}");
            let _ = writeln!(out, "# TYPE exchange_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "exchange_{name}{{site=\"{site}\"{labels}}} {value}");
            }
        };
        metric(
            "commands_submitted_total",
            "counter",
            "Commands sessions queued for the log, by outcome.",
            &[
                (",outcome=\"queued\"".into(), load(&c.submitted)),
                (",outcome=\"busy\"".into(), load(&c.submit_busy)),
                (
                    ",outcome=\"unavailable\"".into(),
                    load(&c.submit_unavailable),
                ),
            ],
        );
        metric(
            "commands_applied_total",
            "counter",
            "Commands the engines applied from the logs.",
            &[(String::new(), load(&c.applied))],
        );
        metric(
            "events_total",
            "counter",
            "Engine events.",
            &[(String::new(), load(&c.events))],
        );
        let rejects: Vec<(String, u64)> = REJECT_REASONS
            .iter()
            .zip(&c.rejects)
            .map(|(reason, n)| (format!(",reason=\"{}\"", reason.as_str()), load(n)))
            .collect();
        metric(
            "rejects_total",
            "counter",
            "Engine rejects by reason.",
            &rejects,
        );
        metric(
            "reports_total",
            "counter",
            "Reports routed to sessions.",
            &[(String::new(), load(&c.reports))],
        );
        metric(
            "slow_consumers_total",
            "counter",
            "Sessions disconnected because their report queue was full.",
            &[(String::new(), load(&c.slow_consumers))],
        );
        metric(
            "ring_depth",
            "gauge",
            "Items waiting in a shard's matcher rings.",
            &per_shard(&|_, shard| {
                vec![
                    (
                        ",ring=\"commands\"".into(),
                        shard.commands_ring.get() as u64,
                    ),
                    (",ring=\"output\"".into(), shard.output_ring.get() as u64),
                ]
            }),
        );
        metric(
            "log_position",
            "gauge",
            "A shard log's durable end, and the next position its engine applies.",
            &per_shard(&|at, shard| {
                let (durable, applied) = shard.positions(hub, at);
                vec![
                    (",of=\"durable\"".into(), durable),
                    (",of=\"applied\"".into(), applied),
                ]
            }),
        );
        metric(
            "consumer_lag",
            "gauge",
            "Durable records of a shard's log its engine has not applied yet.",
            &per_shard(&|at, shard| {
                let (durable, applied) = shard.positions(hub, at);
                vec![(String::new(), durable.saturating_sub(applied))]
            }),
        );
        metric(
            "log_available",
            "gauge",
            "1 when a shard's log takes commands (journal not failed, Kafka leader reachable).",
            &per_shard(&|_, shard| {
                vec![(
                    format!(",log=\"{}\"", shard.log.kind()),
                    u64::from(shard.log.available()),
                )]
            }),
        );
        if self.shards.iter().any(|shard| shard.log.kind() == "kafka") {
            metric(
                "kafka_deliveries_total",
                "counter",
                "Produce outcomes: delivered (committed), or failed (fate unknown: the client \
                 resends with the same client order id).",
                &per_shard(&|_, shard| match &shard.log {
                    LogHandle::Kafka { log, .. } => {
                        let counts = log.appender().counts();
                        vec![
                            (",outcome=\"delivered\"".into(), load(&counts.delivered)),
                            (",outcome=\"failed\"".into(), load(&counts.failed)),
                        ]
                    }
                    LogHandle::Journal(_) => Vec::new(),
                }),
            );
        }
        let mut histogram = |name: &str, help: &str, series: &[(String, &LatencyHistogram)]| {
            let name = format!("stage_latency_{name}_microseconds");
            let _ = writeln!(out, "# HELP exchange_{name} {help}");
            let _ = writeln!(out, "# TYPE exchange_{name} histogram");
            for (labels, histogram) in series {
                let (buckets, sum, count) = histogram.read();
                for (bound, n) in buckets {
                    let le = bound.map_or("+Inf".to_string(), |b| b.to_string());
                    let _ = writeln!(
                        out,
                        "exchange_{name}_bucket{{site=\"{site}\"{labels},le=\"{le}\"}} {n}"
                    );
                }
                let _ = writeln!(out, "exchange_{name}_sum{{site=\"{site}\"{labels}}} {sum}");
                let _ = writeln!(
                    out,
                    "exchange_{name}_count{{site=\"{site}\"{labels}}} {count}"
                );
            }
        };
        let sequenced: Vec<(String, &LatencyHistogram)> = self
            .shards
            .iter()
            .map(|shard| {
                (
                    format!(",shard=\"{}\"", shard.name),
                    &shard.sequenced_latency,
                )
            })
            .collect();
        histogram(
            "sequenced",
            "From the gateway's stamp to the command read back from its shard's committed log.",
            &sequenced,
        );
        histogram(
            "applied",
            "From the gateway's stamp to the command applied by its shard's engine.",
            &[(String::new(), &c.applied_latency)],
        );
        out
    }

    /// The body and status of `GET /health`: `failed` when a shard can no longer read its
    /// log, `unavailable` when a shard's log takes no commands, else `ok`; each shard's log
    /// positions, and under `log` their sums.
    fn health(&self, hub: &Hub) -> (bool, serde_json::Value) {
        let failure = self.failure();
        let mut available = failure.is_none();
        let (mut durable_sum, mut applied_sum) = (0, 0);
        let shards: Vec<serde_json::Value> = self
            .shards
            .iter()
            .enumerate()
            .map(|(at, shard)| {
                let (durable, applied) = shard.positions(hub, at);
                durable_sum += durable;
                applied_sum += applied;
                let up = shard.log.available() && shard.read_failure.get().is_none();
                available &= up;
                serde_json::json!({
                    "name": shard.name,
                    "available": up,
                    "log": {
                        "kind": shard.log.kind(),
                        "durable": durable,
                        "applied": applied,
                        "lag": durable.saturating_sub(applied),
                    },
                })
            })
            .collect();
        let status = match (&failure, available) {
            (Some(_), _) => "failed",
            (None, true) => "ok",
            (None, false) => "unavailable",
        };
        let body = serde_json::json!({
            "status": status,
            "error": failure,
            "site": self.site,
            "log": {
                "kind": self.shards[0].log.kind(),
                "durable": durable_sum,
                "applied": applied_sum,
                "lag": durable_sum.saturating_sub(applied_sum),
            },
            "shards": shards,
        });
        (available, body)
    }
}

/// The newest hash reports, for `GET /v1/hashes`.
type RecentHashes = Arc<std::sync::Mutex<std::collections::VecDeque<HashReport>>>;

/// `/health`, `/metrics` and `/v1/hashes`.
fn http_router(hub: Arc<Hub>, metrics: Arc<SiteMetrics>, hashes: RecentHashes) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::routing::get;
    let health_hub = hub.clone();
    let health_metrics = metrics.clone();
    axum::Router::new()
        .route(
            "/health",
            get(move || {
                let (available, body) = health_metrics.health(&health_hub);
                let code = if available {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                async move { (code, axum::Json(body)) }
            }),
        )
        .route(
            "/v1/hashes",
            get(move || {
                let reports: Vec<HashReport> = hashes
                    .lock()
                    .map(|h| h.iter().cloned().collect())
                    .unwrap_or_default();
                async move { axum::Json(reports) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render(&hub);
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        )
}

/// What the matchers hand the persist thread.
enum Persist {
    /// Shard, position, snapshot bytes.
    Snapshot(usize, u64, Vec<u8>),
    Hash(HashReport),
}

/// Takes a shard's snapshots and hashes between commands, at log positions every site agrees
/// on.
struct SiteObserver {
    shard: usize,
    checkpointer: Checkpointer,
    hashes: Option<HashCadence>,
    tx: crossbeam_channel::Sender<Persist>,
}

impl Observer for SiteObserver {
    fn after_command(&mut self, engine: &Engine, next_position: u64) {
        if self.checkpointer.due(next_position) {
            // A writer still busy with the previous snapshot is not waited for: the next
            // command tries again.
            let bytes = snapshots::encode(next_position, engine);
            if self
                .tx
                .try_send(Persist::Snapshot(self.shard, next_position, bytes))
                .is_ok()
            {
                self.checkpointer.taken(next_position);
            }
        }
        if let Some(cadence) = &self.hashes {
            let mut sink = ChannelSink(&self.tx);
            let _ = cadence.maybe_publish(next_position, engine, &mut sink);
        }
    }
}

struct ChannelSink<'a>(&'a crossbeam_channel::Sender<Persist>);

impl HashSink for ChannelSink<'_> {
    fn publish(
        &mut self,
        report: &HashReport,
    ) -> Result<(), replicator::divergence::DivergenceError> {
        // Hash reports are small and rare; waiting for room keeps every one of them.
        let _ = self.0.send(Persist::Hash(report.clone()));
        Ok(())
    }
}

/// A running site.
pub struct Site {
    hub: Arc<Hub>,
    binary_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    fix_addr: Option<SocketAddr>,
    stop_servers: watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
    shards: Vec<RunningShard>,
    writer: JoinHandle<anyhow::Result<()>>,
    metrics: Arc<SiteMetrics>,
    /// Per shard, in configuration order: where recovery started and how much it replayed.
    pub recovered: Vec<Recovery>,
}

/// A shard's threads and log while the site runs.
struct RunningShard {
    log: OpenLog,
    /// The log position the feeder stops at (`u64::MAX` while running).
    stop_feeder: Arc<AtomicU64>,
    feeder: JoinHandle<anyhow::Result<()>>,
    runner: Runner,
    pump: JoinHandle<()>,
    store: Arc<SnapshotStore>,
}

/// What recovery did at start, for one shard.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub shard: String,
    pub snapshot: Option<u64>,
    pub replayed: u64,
    pub position: u64,
}

/// A shard with its log open and its engine recovered, not yet running.
struct OpenedShard {
    log: OpenLog,
    reader: Box<dyn LogReader + Send>,
    engine: Engine,
    store: Arc<SnapshotStore>,
    recovery: Recovery,
    read_failure: ReadFailure,
}

/// Opens `shard`'s snapshot store and log, and recovers its engine.
fn open_shard(site: &SiteConfig, shard: &ShardConfig) -> anyhow::Result<OpenedShard> {
    let dir = site.data_dir.join(&shard.dir);
    let store = Arc::new(
        SnapshotStore::open(&dir.join("snapshots"), site.snapshots_keep)
            .context("opening the snapshot store")?,
    );
    let (log, recovered, reader): (_, _, Box<dyn LogReader + Send>) = match &shard.log {
        LogBackend::Journal { fsync } => {
            let journal_config = JournalConfig {
                fsync: *fsync,
                ..JournalConfig::new(dir.join("journal"))
            };
            let (journal, _) = Journal::open(journal_config).context("opening the journal")?;
            let recovered = recover(&journal, &store, site.engine).context("recovery")?;
            let reader = Box::new(journal.reader(recovered.position)?);
            (OpenLog::Journal(journal), recovered, reader)
        }
        LogBackend::Kafka(kafka) => {
            let (log, _) = KafkaLog::open(kafka.clone(), Duration::from_secs(10))
                .with_context(|| format!("opening Kafka topic {}", kafka.topic))?;
            let watermarks = Watermarks::spawn(kafka, Duration::from_secs(10), WATERMARK_EVERY)?;
            let recovered = recover(&log, &store, site.engine).context("recovery")?;
            let reader = Box::new(log.reader(recovered.position)?);
            let log = OpenLog::Kafka(Arc::new(log), Arc::new(watermarks));
            (log, recovered, reader)
        }
    };
    let mut engine = recovered.engine;
    // Every reserved page mapped now, so no command takes a page fault later.
    engine.commit_memory();
    Ok(OpenedShard {
        log,
        reader,
        engine,
        store,
        recovery: Recovery {
            shard: shard.name.clone(),
            snapshot: recovered.snapshot,
            replayed: recovered.replayed,
            position: recovered.position,
        },
        read_failure: ReadFailure::default(),
    })
}

/// Feeds the committed log to the matcher until it reaches the position `stop` is set to (or
/// the log stops delivering for [`STOP_GRACE`] after that). A log it can no longer read is a
/// failure the site reports and stops taking orders on.
fn feed<const N: usize>(
    mut reader: Box<dyn LogReader + Send>,
    mut commands: engine::ring::Producer<Command, N>,
    metrics: &ShardMetrics,
    stop: &AtomicU64,
) -> anyhow::Result<()> {
    let mut waiter = engine::runner::Waiter::new(PUMP_WAIT);
    let mut idle_since: Option<std::time::Instant> = None;
    loop {
        // Stop only once everything committed before the stop was fed (or the log stopped
        // answering for the grace period: nothing more can be acknowledged).
        let stop_at = stop.load(Ordering::Acquire);
        if reader.position() >= stop_at {
            return Ok(());
        }
        let polled = reader.poll(1024, Duration::from_millis(2), &mut |_, command| {
            metrics.sequenced_latency.record_since(command.ts.0);
            let mut command = command;
            while let Err(back) = commands.try_push(command) {
                command = back;
                waiter.wait();
            }
            waiter.reset();
        });
        let fed = match polled {
            Ok(fed) => fed,
            Err(err) => {
                // The site can no longer follow the log: it refuses the shard's orders and says
                // so on /health; the node exits so its supervisor restarts it into recovery.
                let why = format!("reading the log at {}: {err}", reader.position());
                eprintln!("site: shard {}: {why}", metrics.name);
                let _ = metrics.read_failure.set(why);
                return Err(err.into());
            }
        };
        if stop_at != u64::MAX && fed == 0 {
            let since = *idle_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > STOP_GRACE {
                eprintln!(
                    "site: shard {}: the log did not deliver up to position {stop_at} within \
                     {STOP_GRACE:?}; stopping at {}",
                    metrics.name,
                    reader.position()
                );
                return Ok(());
            }
        } else {
            idle_since = None;
        }
    }
}

impl Site {
    /// Recovers every shard and starts serving.
    pub fn start(config: SiteConfig) -> anyhow::Result<Site> {
        let members = Members::new(config.members.clone()).context("members")?;
        let (listings, shard_of) = config.listings()?;
        let opened = config
            .shards
            .iter()
            .map(|shard| {
                open_shard(&config, shard).with_context(|| format!("shard {}", shard.name))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sequencers = opened
            .iter()
            .map(|shard| -> Arc<dyn Sequencer> {
                Arc::new(SiteSequencer {
                    log: shard.log.handle(),
                    read_failure: shard.read_failure.clone(),
                })
            })
            .collect();
        let hub = Hub::sharded(
            sequencers,
            shard_of,
            members,
            config.engine.retired_ids_max as usize,
        );

        let (persist_tx, persist_rx) = crossbeam_channel::bounded(opened.len());
        let hashes_path = config.data_dir.join("hashes.jsonl");
        let recent_hashes = RecentHashes::default();
        let writer_hashes = recent_hashes.clone();
        let writer_stores: Vec<Arc<SnapshotStore>> =
            opened.iter().map(|shard| shard.store.clone()).collect();
        let writer = std::thread::Builder::new().name("persist".into()).spawn(
            move || -> anyhow::Result<()> {
                let mut hashes = FileHashSink::open(&hashes_path)?;
                for item in persist_rx {
                    match item {
                        Persist::Snapshot(shard, position, bytes) => {
                            writer_stores[shard].save_encoded(position, &bytes)?;
                        }
                        Persist::Hash(report) => {
                            hashes.publish(&report)?;
                            if let Ok(mut recent) = writer_hashes.lock() {
                                if recent.len() == RECENT_HASHES {
                                    recent.pop_front();
                                }
                                recent.push_back(report);
                            }
                        }
                    }
                }
                Ok(())
            },
        )?;

        let mut shards = Vec::new();
        let mut shard_metrics = Vec::new();
        let mut recovered = Vec::new();
        let mut missing = Vec::new();
        for (at, (shard, adds)) in opened.into_iter().zip(listings).enumerate() {
            let name = &config.shards[at].name;
            let position = shard.recovery.position;
            hub.seed(at, &shard.engine, position);
            missing.extend(
                adds.into_iter()
                    .filter(|add| shard.engine.symbol_id(&add.symbol).is_none()),
            );
            let observer = SiteObserver {
                shard: at,
                checkpointer: Checkpointer::new(config.snapshots, position),
                hashes: (config.hash_every > 0)
                    .then(|| HashCadence::new(&config.name, at as u32, config.hash_every)),
                tx: persist_tx.clone(),
            };
            let (commands, output, runner) = Runner::spawn::<COMMAND_RING, OUTPUT_RING>(
                shard.engine,
                config.runner,
                position,
                observer,
            )?;
            let metrics = Arc::new(ShardMetrics {
                name: name.clone(),
                commands_ring: commands.depth(),
                output_ring: output.depth(),
                sequenced_latency: LatencyHistogram::default(),
                log: shard.log.handle(),
                read_failure: shard.read_failure,
            });
            let pump = {
                let (hub, mut output) = (hub.clone(), output);
                std::thread::Builder::new()
                    .name(format!("hub-pump-{at}"))
                    .spawn(move || {
                        let mut waiter = Waiter::new(PUMP_WAIT);
                        let mut batch = Vec::with_capacity(4096);
                        loop {
                            if output.pop_batch(4096, |item| batch.push(item)) > 0 {
                                hub.apply(at, &batch);
                                batch.clear();
                                waiter.reset();
                                continue;
                            }
                            match output.empty_or_closed() {
                                Pop::Closed => break,
                                Pop::Empty | Pop::Item(_) => waiter.wait(),
                            }
                        }
                    })?
            };
            let stop_feeder = Arc::new(AtomicU64::new(u64::MAX));
            let feeder = {
                let (metrics, stop) = (metrics.clone(), stop_feeder.clone());
                let reader = shard.reader;
                std::thread::Builder::new()
                    .name(format!("feeder-{name}"))
                    .spawn(move || feed(reader, commands, &metrics, &stop))?
            };
            shard_metrics.push(metrics);
            recovered.push(shard.recovery);
            shards.push(RunningShard {
                log: shard.log,
                stop_feeder,
                feeder,
                runner,
                pump,
                store: shard.store,
            });
        }
        drop(persist_tx);
        let metrics = Arc::new(SiteMetrics {
            site: config.name.clone(),
            shards: shard_metrics,
        });

        for add in missing {
            hub.submit(CommandKind::AddSymbol(add))
                .map_err(|e| anyhow!("listing {}: {e}", add.symbol))?;
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("gateway")
            .build()?;
        let (stop_servers, stop_rx) = watch::channel(false);
        let listener = runtime
            .block_on(TcpListener::bind(config.binary_listen))
            .with_context(|| format!("binding {}", config.binary_listen))?;
        let binary_addr = listener.local_addr()?;
        runtime.spawn(binary_server::serve(
            listener,
            hub.clone(),
            config.binary,
            stop_rx.clone(),
        ));
        let fix_addr = match config.fix_listen {
            Some(addr) => {
                let listener = runtime
                    .block_on(TcpListener::bind(addr))
                    .with_context(|| format!("binding {addr}"))?;
                let bound = listener.local_addr()?;
                let mut fix = config.fix.clone();
                if fix.store_dir.is_relative() {
                    fix.store_dir = config.data_dir.join(&fix.store_dir);
                }
                let gateway = runtime
                    .block_on(async { FixGateway::new(hub.clone(), fix) })
                    .context("the FIX gateway")?;
                let stop = stop_rx.clone();
                runtime.spawn(async move { gateway.serve(listener, stop).await });
                Some(bound)
            }
            None => None,
        };
        let http_addr = match config.http_listen {
            Some(addr) => {
                let listener = runtime
                    .block_on(TcpListener::bind(addr))
                    .with_context(|| format!("binding {addr}"))?;
                let bound = listener.local_addr()?;
                let md = MdServer::new(hub.clone(), config.market_data);
                let app =
                    http_router(hub.clone(), metrics.clone(), recent_hashes).merge(md.router());
                let mut stop = stop_rx;
                runtime.spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|stop| *stop).await;
                            // WebSockets are closed with 1001 (going away).
                            md.shutdown();
                        })
                        .await;
                });
                Some(bound)
            }
            None => None,
        };

        Ok(Site {
            hub,
            binary_addr,
            http_addr,
            fix_addr,
            stop_servers,
            runtime,
            shards,
            writer,
            metrics,
            recovered,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Why the site stopped following its log, if it did: it then refuses every order, and
    /// `exchange node` exits non-zero so that it is restarted into recovery.
    pub fn failure(&self) -> Option<String> {
        self.metrics.failure()
    }

    /// The Prometheus text exposition of the site's metrics.
    pub fn metrics(&self) -> String {
        self.metrics.render(&self.hub)
    }

    /// Where the HTTP server (health, metrics, market data) listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where the FIX acceptor listens, if it does.
    pub fn fix_addr(&self) -> Option<SocketAddr> {
        self.fix_addr
    }

    /// Where the binary order-entry server listens.
    pub fn binary_addr(&self) -> SocketAddr {
        self.binary_addr
    }

    /// Stops cleanly: sessions log out, everything committed is applied and reported, the
    /// logs are closed and final snapshots taken. Returns each shard's final log position.
    ///
    /// On Kafka, "everything committed" is the partition's end once this site's producer has
    /// flushed; other sites may still be appending, and their commands are applied at the
    /// next start.
    pub fn shutdown(self) -> anyhow::Result<Vec<u64>> {
        let _ = self.stop_servers.send(true);
        // Sessions get a moment to send their Logout.
        self.runtime.shutdown_timeout(Duration::from_secs(2));
        // Every log closed first, so every feeder knows where to stop.
        let mut stopping = Vec::new();
        for shard in self.shards {
            let end = match shard.log {
                OpenLog::Journal(journal) => journal.close(),
                OpenLog::Kafka(log, watermarks) => {
                    if let Err(err) = log.appender().flush(STOP_GRACE) {
                        eprintln!("site: flushing the Kafka producer: {err}");
                    }
                    log.durable_position().unwrap_or_else(|_| watermarks.high())
                }
            };
            shard.stop_feeder.store(end, Ordering::Release);
            stopping.push((shard.feeder, shard.runner, shard.pump, shard.store));
        }
        let mut engines = Vec::new();
        for (feeder, runner, pump, store) in stopping {
            feeder
                .join()
                .map_err(|_| anyhow!("a feeder thread panicked"))??;
            let (engine, _) = runner
                .join()
                .map_err(|_| anyhow!("a matcher thread panicked"))?;
            pump.join().map_err(|_| anyhow!("a hub pump panicked"))?;
            engines.push((engine, store));
        }
        // The matchers' observers are gone: the persist thread has seen its last item.
        self.writer
            .join()
            .map_err(|_| anyhow!("the persist thread panicked"))??;
        let mut ends = Vec::new();
        for (at, (engine, store)) in engines.into_iter().enumerate() {
            let applied = self.hub.next_position(at);
            store.save(applied, &engine).context("final snapshot")?;
            ends.push(applied);
        }
        Ok(ends)
    }
}

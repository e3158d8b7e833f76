//! One site's running exchange: log → matcher → hub, and the gateway servers on top.
//!
//! ```text
//!   sessions ──submit──▶ log (journal writer thread, or Kafka producer → partition)
//!                          │ committed records, in order
//!                     feeder thread ──ring──▶ matcher thread (Engine) ──ring──▶ hub pump
//!                                                 │ snapshot bytes, hashes        │ reports, market data
//!                                             writer thread                      sessions
//! ```
//!
//! [`Site::start`] recovers (newest snapshot + replay), lists the configured symbols through
//! the log (a duplicate listing is refused harmlessly by the engine), then serves.
//! [`Site::shutdown`] stops the servers (sessions log out), lets the matcher apply everything
//! already committed, closes the log and writes a final snapshot, so nothing acknowledged is
//! lost and the next start replays nothing.
//!
//! The log is the embedded journal or a Kafka partition ([`LogBackend`]); everything after the
//! feeder is the same. On Kafka every site reads the same partition, so every site's engine
//! applies the same commands at the same positions, whichever site's gateway took them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context};
use engine::runner::{Observer, Runner, RunnerConfig};
use engine::{AddSymbol, Command, CommandKind, Engine, EngineConfig, Price, Qty, Symbol};
use gateway::binary_server::{self, BinaryConfig};
use gateway::fix::{FixConfig, FixGateway};
use gateway::hub::{
    Hub, LatencyHistogram, Member, Members, Sequencer, SubmitError, PUMP_WAIT, REJECT_REASONS,
};
use gateway::md_server::{MdConfig, MdServer};
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

/// Everything a site needs.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// The site's name (in hash reports and logs).
    pub name: String,
    /// Holds `journal/`, `snapshots/` and `hashes.jsonl`.
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub runner: RunnerConfig,
    pub log: LogBackend,
    pub snapshots: SnapshotPolicy,
    /// Snapshots kept on disk.
    pub snapshots_keep: usize,
    /// State hashes are written every this many records (0: never).
    pub hash_every: u64,
    pub members: Vec<Member>,
    pub symbols: Vec<SymbolSpec>,
    pub binary_listen: SocketAddr,
    pub binary: BinaryConfig,
    /// Health, metrics and market data over HTTP (and WebSocket), if set.
    pub http_listen: Option<SocketAddr>,
    pub market_data: MdConfig,
    /// FIX 4.4 order entry, if set. Its `store_dir`, when relative, is under `data_dir`.
    pub fix_listen: Option<SocketAddr>,
    pub fix: FixConfig,
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

/// What the site exposes besides the hub's counters (gauges read by `/metrics`).
pub struct SiteMetrics {
    site: String,
    commands_ring: engine::ring::RingDepth,
    output_ring: engine::ring::RingDepth,
    /// From the gateway's stamp to the feeder reading the command back from the committed
    /// log: the log's commit latency as sessions see it.
    pub sequenced_latency: LatencyHistogram,
    log: LogHandle,
    read_failure: ReadFailure,
}

impl SiteMetrics {
    /// The Prometheus text exposition of the site's metrics.
    pub fn render(&self, hub: &Hub) -> String {
        use std::fmt::Write;
        let c = hub.counters();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let site = &self.site;
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
            "Commands the engine applied from the log.",
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
            "Items waiting in the matcher's rings.",
            &[
                (",ring=\"commands\"".into(), self.commands_ring.get() as u64),
                (",ring=\"output\"".into(), self.output_ring.get() as u64),
            ],
        );
        let applied = load(&c.next_position);
        let durable = self.log.durable();
        metric(
            "log_position",
            "gauge",
            "The log's durable end, and the next position the engine applies.",
            &[
                (",of=\"durable\"".into(), durable),
                (",of=\"applied\"".into(), applied),
            ],
        );
        metric(
            "consumer_lag",
            "gauge",
            "Durable records the engine has not applied yet.",
            &[(String::new(), durable.saturating_sub(applied))],
        );
        metric(
            "log_available",
            "gauge",
            "1 when the log takes commands (journal not failed, Kafka leader reachable).",
            &[(
                format!(",log=\"{}\"", self.log.kind()),
                u64::from(self.log.available()),
            )],
        );
        if let LogHandle::Kafka { log, .. } = &self.log {
            let counts = log.appender().counts();
            metric(
                "kafka_deliveries_total",
                "counter",
                "Produce outcomes: delivered (committed), or failed (fate unknown: the client \
                 resends with the same client order id).",
                &[
                    (",outcome=\"delivered\"".into(), load(&counts.delivered)),
                    (",outcome=\"failed\"".into(), load(&counts.failed)),
                ],
            );
        }
        for (stage, histogram, help) in [
            (
                "sequenced",
                &self.sequenced_latency,
                "From the gateway's stamp to the command read back from the committed log.",
            ),
            (
                "applied",
                &c.applied_latency,
                "From the gateway's stamp to the command applied by the engine.",
            ),
        ] {
            let name = format!("stage_latency_{stage}_microseconds");
            let _ = writeln!(out, "# HELP exchange_{name} {help}");
            let _ = writeln!(out, "# TYPE exchange_{name} histogram");
            let (buckets, sum, count) = histogram.read();
            for (bound, n) in buckets {
                let le = bound.map_or("+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "exchange_{name}_bucket{{site=\"{site}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(out, "exchange_{name}_sum{{site=\"{site}\"}} {sum}");
            let _ = writeln!(out, "exchange_{name}_count{{site=\"{site}\"}} {count}");
        }
        out
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
                let hub = health_hub.clone();
                let metrics = health_metrics.clone();
                async move {
                    let applied = hub.counters().next_position.load(Ordering::Relaxed);
                    let durable = metrics.log.durable();
                    let failure = metrics.read_failure.get().cloned();
                    let available = metrics.log.available() && failure.is_none();
                    let body = serde_json::json!({
                        "status": if failure.is_some() { "failed" } else if available { "ok" } else { "unavailable" },
                        "error": failure,
                        "site": metrics.site,
                        "log": {
                            "kind": metrics.log.kind(),
                            "durable": durable,
                            "applied": applied,
                            "lag": durable.saturating_sub(applied),
                        },
                    });
                    let code = if available {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, axum::Json(body))
                }
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

/// What the matcher hands the writer thread.
enum Persist {
    Snapshot(u64, Vec<u8>),
    Hash(HashReport),
}

/// Takes snapshots and hashes between commands, at log positions every site agrees on.
struct SiteObserver {
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
                .try_send(Persist::Snapshot(next_position, bytes))
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
    /// The log position the feeder stops at (`u64::MAX` while running).
    stop_feeder: Arc<AtomicU64>,
    runtime: tokio::runtime::Runtime,
    log: OpenLog,
    feeder: JoinHandle<anyhow::Result<()>>,
    runner: Runner,
    pump: JoinHandle<()>,
    writer: JoinHandle<anyhow::Result<()>>,
    store: Arc<SnapshotStore>,
    metrics: Arc<SiteMetrics>,
    /// Where recovery started and how much it replayed.
    pub recovered: Recovery,
}

/// What recovery did at start.
#[derive(Clone, Copy, Debug)]
pub struct Recovery {
    pub snapshot: Option<u64>,
    pub replayed: u64,
    pub position: u64,
}

impl Site {
    /// Recovers and starts serving.
    pub fn start(config: SiteConfig) -> anyhow::Result<Site> {
        let members = Members::new(config.members.clone()).context("members")?;
        let symbols = config
            .symbols
            .iter()
            .map(|spec| {
                let symbol = Symbol::new(&spec.symbol)
                    .map_err(|e| anyhow!("symbol {:?}: {e}", spec.symbol))?;
                let tick = Price::parse(&spec.tick)
                    .map_err(|e| anyhow!("symbol {}: tick {:?} {e}", spec.symbol, spec.tick))?;
                let lot = Qty::parse(&spec.lot)
                    .map_err(|e| anyhow!("symbol {}: lot {:?} {e}", spec.symbol, spec.lot))?;
                Ok(AddSymbol { symbol, tick, lot })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;

        let store = Arc::new(
            SnapshotStore::open(&config.data_dir.join("snapshots"), config.snapshots_keep)
                .context("opening the snapshot store")?,
        );
        let (log, recovered, reader): (_, _, Box<dyn LogReader + Send>) = match &config.log {
            LogBackend::Journal { fsync } => {
                let journal_config = JournalConfig {
                    fsync: *fsync,
                    ..JournalConfig::new(config.data_dir.join("journal"))
                };
                let (journal, _) = Journal::open(journal_config).context("opening the journal")?;
                let recovered = recover(&journal, &store, config.engine).context("recovery")?;
                let reader = Box::new(journal.reader(recovered.position)?);
                (OpenLog::Journal(journal), recovered, reader)
            }
            LogBackend::Kafka(kafka) => {
                let (log, _) = KafkaLog::open(kafka.clone(), Duration::from_secs(10))
                    .with_context(|| format!("opening Kafka topic {}", kafka.topic))?;
                let watermarks =
                    Watermarks::spawn(kafka, Duration::from_secs(10), WATERMARK_EVERY)?;
                let recovered = recover(&log, &store, config.engine).context("recovery")?;
                let reader = Box::new(log.reader(recovered.position)?);
                let log = OpenLog::Kafka(Arc::new(log), Arc::new(watermarks));
                (log, recovered, reader)
            }
        };
        let recovery = Recovery {
            snapshot: recovered.snapshot,
            replayed: recovered.replayed,
            position: recovered.position,
        };
        let mut engine = recovered.engine;
        // Every reserved page mapped now, so no command takes a page fault later.
        engine.commit_memory();
        let position = recovered.position;

        let read_failure = ReadFailure::default();
        let hub = Hub::new(
            Arc::new(SiteSequencer {
                log: log.handle(),
                read_failure: read_failure.clone(),
            }),
            members,
            config.engine.retired_ids_max as usize,
        );
        let pump_state = hub.seed(&engine, position);
        let missing: Vec<AddSymbol> = symbols
            .into_iter()
            .filter(|add| engine.symbol_id(&add.symbol).is_none())
            .collect();

        let (persist_tx, persist_rx) = crossbeam_channel::bounded(1);
        let observer = SiteObserver {
            checkpointer: Checkpointer::new(config.snapshots, position),
            hashes: (config.hash_every > 0)
                .then(|| HashCadence::new(&config.name, 0, config.hash_every)),
            tx: persist_tx,
        };
        let hashes_path = config.data_dir.join("hashes.jsonl");
        let recent_hashes = RecentHashes::default();
        let writer_hashes = recent_hashes.clone();
        let writer_store = store.clone();
        let writer = std::thread::Builder::new().name("persist".into()).spawn(
            move || -> anyhow::Result<()> {
                let mut hashes = FileHashSink::open(&hashes_path)?;
                for item in persist_rx {
                    match item {
                        Persist::Snapshot(position, bytes) => {
                            writer_store.save_encoded(position, &bytes)?;
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

        let (mut commands, output, runner) =
            Runner::spawn::<COMMAND_RING, OUTPUT_RING>(engine, config.runner, position, observer)?;
        let metrics = Arc::new(SiteMetrics {
            site: config.name.clone(),
            commands_ring: commands.depth(),
            output_ring: output.depth(),
            sequenced_latency: LatencyHistogram::default(),
            log: log.handle(),
            read_failure: read_failure.clone(),
        });
        let feeder_metrics = metrics.clone();
        let pump = hub.spawn_pump(pump_state, output, PUMP_WAIT)?;

        let stop_feeder = Arc::new(AtomicU64::new(u64::MAX));
        let mut reader = reader;
        let feeder_stop = stop_feeder.clone();
        let feeder = std::thread::Builder::new().name("feeder".into()).spawn(
            move || -> anyhow::Result<()> {
                let mut waiter = engine::runner::Waiter::new(PUMP_WAIT);
                let mut idle_since: Option<std::time::Instant> = None;
                loop {
                    // Stop only once everything committed before the stop was fed (or the log
                    // stopped answering for the grace period: nothing more can be acknowledged).
                    let stop_at = feeder_stop.load(Ordering::Acquire);
                    if reader.position() >= stop_at {
                        return Ok(());
                    }
                    let polled = reader.poll(1024, Duration::from_millis(2), &mut |_, command| {
                        feeder_metrics.sequenced_latency.record_since(command.ts.0);
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
                            // The site can no longer follow the log: it refuses orders and
                            // says so on /health; the node exits so its supervisor restarts
                            // it into recovery.
                            let why = format!("reading the log at {}: {err}", reader.position());
                            eprintln!("site: {why}");
                            let _ = feeder_metrics.read_failure.set(why);
                            return Err(err.into());
                        }
                    };
                    if stop_at != u64::MAX && fed == 0 {
                        let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() > STOP_GRACE {
                            eprintln!(
                                "site: the log did not deliver up to position {stop_at} within \
                                 {STOP_GRACE:?}; stopping at {}",
                                reader.position()
                            );
                            return Ok(());
                        }
                    } else {
                        idle_since = None;
                    }
                }
            },
        )?;

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
            stop_feeder,
            runtime,
            log,
            feeder,
            runner,
            pump,
            writer,
            store,
            metrics,
            recovered: recovery,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Why the site stopped following its log, if it did: it then refuses every order, and
    /// `exchange node` exits non-zero so that it is restarted into recovery.
    pub fn failure(&self) -> Option<String> {
        self.metrics.read_failure.get().cloned()
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
    /// log is closed and a final snapshot taken. Returns the final log position.
    ///
    /// On Kafka, "everything committed" is the partition's end once this site's producer has
    /// flushed; other sites may still be appending, and their commands are applied at the
    /// next start.
    pub fn shutdown(self) -> anyhow::Result<u64> {
        let _ = self.stop_servers.send(true);
        // Sessions get a moment to send their Logout.
        self.runtime.shutdown_timeout(Duration::from_secs(2));
        let end = match self.log {
            OpenLog::Journal(journal) => journal.close(),
            OpenLog::Kafka(log, watermarks) => {
                if let Err(err) = log.appender().flush(STOP_GRACE) {
                    eprintln!("site: flushing the Kafka producer: {err}");
                }
                log.durable_position().unwrap_or_else(|_| watermarks.high())
            }
        };
        self.stop_feeder.store(end, Ordering::Release);
        self.feeder
            .join()
            .map_err(|_| anyhow!("the feeder thread panicked"))??;
        let (engine, _) = self
            .runner
            .join()
            .map_err(|_| anyhow!("the matcher thread panicked"))?;
        self.pump
            .join()
            .map_err(|_| anyhow!("the hub pump panicked"))?;
        self.writer
            .join()
            .map_err(|_| anyhow!("the persist thread panicked"))??;
        let applied = self.hub.counters().next_position.load(Ordering::Acquire);
        self.store
            .save(applied, &engine)
            .context("final snapshot")?;
        Ok(applied)
    }
}

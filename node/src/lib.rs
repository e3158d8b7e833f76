//! One site's running exchange: every shard's pipeline, the gateway servers over them, and
//! the operations endpoints.
//!
//! ```text
//!   sessions ──submit──▶ Hub ──by symbol──▶ shard's log (journal writer thread, or Kafka producer → partition)
//!                                             │ committed records, in order
//!                                        feeder thread ──ring──▶ matcher thread (Engine) ──ring──▶ pump ──▶ Hub::apply
//!                                                                    │ snapshot bytes, hashes               │ reports, market data
//!                                                                persist thread                            sessions
//! ```
//!
//! - [`config`]: [`NodeConfig`], the file and the checked plan of shards.
//! - [`shard`]: one shard's pipeline, top to bottom (open, submit, feed, match, pump, stop).
//! - [`persist`]: snapshots and state hashes, and the thread that writes them.
//! - [`metrics`], [`http`]: `/metrics`, `/health`, `/v1/hashes`.
//! - [`admin`]: the operator's `/v1/admin/` (trading status, kill switches), by bearer token.
//!
//! [`Node::start`] recovers every shard (newest snapshot + replay), lists the configured
//! symbols through their shard's log (a duplicate listing is refused harmlessly by the
//! engine), then serves. [`Node::shutdown`] stops the servers (sessions log out), lets every
//! matcher apply everything already committed, closes the logs and writes final snapshots,
//! so nothing acknowledged is lost and the next start replays nothing.
//!
//! Shards share the gateway's servers, the members, the persist thread and `hashes.jsonl`
//! (reports carry the shard's number). On Kafka every site reads the same partitions, so
//! every site's engines apply the same commands at the same positions, whichever site's
//! gateway took them.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod credentials;
pub mod fence;
pub mod freshness;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod shard;
pub mod ship;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use engine::{AddSymbol, CommandKind};
use gateway::tls::{Acceptor, HttpsListener};
use gateway::{binary_server, FixGateway};
use gateway::{Hub, MdServer, Sequencer};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;

pub use config::{AdminSection, NodeConfig, Overrides, ShardSection, SymbolSpec, TlsSection};
pub use shard::Recovery;

use admin::AdminToken;
use config::ShardPlan;
use metrics::NodeMetrics;
use persist::RecentHashes;
use shard::{ClockCheck, OpenedShard, RunningShard, ShardSequencer, ShardView};
use ship::ShippedShard;

/// How long sessions get to send their Logout when the node stops.
pub const SESSIONS_GRACE: Duration = Duration::from_secs(2);
/// The most [`Node::shutdown`] takes before writing the final snapshots.
pub const STOP_BOUND: Duration = SESSIONS_GRACE.saturating_add(shard::STOP_GRACE.saturating_mul(3));

/// The exit status of `exchange node` when the log (or a snapshot) holds what only a newer
/// binary can apply: restarting this binary cannot help, so a supervisor should not (systemd:
/// `RestartPreventExitStatus=78`; 78 is `EX_CONFIG` of sysexits.h).
pub const EXIT_NEEDS_NEWER_BINARY: u8 = 78;

/// Whether `err` says the log or a snapshot needs a newer binary than this one.
pub fn needs_newer_binary(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<NeedsNewerBinary>()
            || cause
                .downcast_ref::<replicator::recovery::RecoveryError>()
                .is_some_and(replicator::recovery::RecoveryError::needs_newer_binary)
            || cause
                .downcast_ref::<replicator::LogError>()
                .is_some_and(replicator::LogError::needs_newer_binary)
    })
}

/// A running node stopped because its log holds what only a newer binary can apply.
#[derive(Debug)]
pub struct NeedsNewerBinary(pub String);

impl std::fmt::Display for NeedsNewerBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeedsNewerBinary {}

/// A running node.
pub struct Node {
    hub: Arc<Hub>,
    addrs: Addrs,
    stop_servers: watch::Sender<bool>,
    runtime: Runtime,
    shards: Vec<RunningShard>,
    writer: JoinHandle<anyhow::Result<()>>,
    /// The divergence fence's thread, on Kafka with state hashes on.
    fence: Option<JoinHandle<()>>,
    metrics: Arc<NodeMetrics>,
    /// Per shard, in configuration order: where recovery started and how much it replayed.
    pub recovered: Vec<Recovery>,
}

/// Where the servers listen.
struct Addrs {
    binary: SocketAddr,
    http: Option<SocketAddr>,
    fix: Option<SocketAddr>,
}

impl Node {
    /// Recovers every shard and starts serving.
    pub fn start(config: NodeConfig) -> anyhow::Result<Node> {
        Node::start_with_clock_offset(config, 0)
    }

    /// [`Node::start`] with a gateway whose clock is `clock_offset_ns` off the wall clock
    /// when it stamps commands: for tests that a wrong gateway clock moves no log time.
    pub fn start_with_clock_offset(
        config: NodeConfig,
        clock_offset_ns: i64,
    ) -> anyhow::Result<Node> {
        let plan = config.plan()?;
        let admin = admin_token(&config)?;
        let tls = tls_acceptor(&config)?;
        check_kafka_security(&config)?;
        let members = credentials::load(&config)?;
        let opened = open_shards(&config, &plan.shards)?;
        let limit = |ms: u64| Some(Duration::from_millis(ms)).filter(|limit| !limit.is_zero());
        let max_lag = limit(config.max_lag_ms);
        let clock = ClockCheck {
            // A site reading up to `max_lag` behind knows a log time that much old.
            max_ahead: limit(config.max_clock_ahead_ms.saturating_add(config.max_lag_ms))
                .filter(|_| config.max_clock_ahead_ms > 0),
            offset_ns: clock_offset_ns,
        };
        let views: Vec<Arc<ShardView>> = opened
            .iter()
            .zip(&plan.shards)
            .map(|(shard, planned)| Arc::new(shard.view(&planned.name, max_lag, clock)))
            .collect();
        let sequencers = views
            .iter()
            .map(|view| -> Arc<dyn Sequencer> { Arc::new(ShardSequencer(view.clone())) })
            .collect();
        let window_ns = config.engine.dedup_window_ns;
        let hub = Hub::sharded(
            sequencers,
            plan.shard_of,
            members,
            window_ns,
            clock_offset_ns,
        );
        let missing: Vec<_> = (opened.iter().zip(&plan.shards))
            .flat_map(|(shard, planned)| planned.symbols.iter().filter(|a| !shard.lists(&a.symbol)))
            .copied()
            .collect();
        let recovered = opened.iter().map(|shard| shard.recovery.clone()).collect();
        let shipped = shipped(&opened, &plan.shards);
        let hashes = RecentHashes::default();
        let (shards, (writer, fence)) =
            start_shards(opened, &views, &hub, &config, hashes.clone())?;
        for add in missing {
            list_symbol(&hub, add)?;
        }
        let (runtime, stop_servers, stop_rx) = gateway_runtime()?;
        let http = HttpRoutes {
            hashes,
            admin,
            shipped,
            tls,
        };
        let (addrs, metrics) = serve(&runtime, &config, &hub, views, http, stop_rx)?;
        Ok(Node {
            hub,
            addrs,
            stop_servers,
            runtime,
            shards,
            writer,
            fence,
            metrics,
            recovered,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Why the node stopped following a shard's log, if it did: it then refuses that shard's
    /// orders, and `exchange node` exits non-zero so that it is restarted into recovery.
    pub fn failure(&self) -> Option<String> {
        http::failure(&self.metrics)
    }

    /// Whether a shard stopped because its log holds what only a newer binary can apply.
    pub fn needs_newer_binary(&self) -> bool {
        self.metrics.shards.iter().any(|shard| {
            shard
                .needs_newer_binary
                .load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The Prometheus text exposition of the node's metrics.
    pub fn metrics(&self) -> String {
        self.metrics.render(&self.hub)
    }

    /// Where the HTTP server (health, metrics, market data) listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.addrs.http
    }

    /// Where the FIX acceptor listens, if it does.
    pub fn fix_addr(&self) -> Option<SocketAddr> {
        self.addrs.fix
    }

    /// Where the binary order-entry server listens.
    pub fn binary_addr(&self) -> SocketAddr {
        self.addrs.binary
    }

    /// Stops cleanly: sessions log out, everything committed is applied and reported, the
    /// logs are closed and final snapshots taken. Returns each shard's final log position.
    ///
    /// On Kafka, "everything committed" is the partition's end once this site's producer has
    /// flushed; other sites may still be appending, and their commands are applied at the
    /// next start.
    ///
    /// It takes at most [`SESSIONS_GRACE`] plus [`shard::STOP_GRACE`] three times (flush the
    /// producer, read the partition's end, feed up to it while the log keeps answering), plus
    /// the final snapshots: [`STOP_BOUND`] before the snapshots.
    pub fn shutdown(self) -> anyhow::Result<Vec<u64>> {
        let _ = self.stop_servers.send(true);
        // Sessions get a moment to send their Logout.
        self.runtime.shutdown_timeout(SESSIONS_GRACE);
        // Every log closed first, so every feeder knows where to stop.
        let stopping: Vec<_> = self.shards.into_iter().map(RunningShard::close).collect();
        let engines = stopping
            .into_iter()
            .map(|shard| shard.join())
            .collect::<anyhow::Result<Vec<_>>>()?;
        // The matchers' observers are gone: the persist thread has seen its last item.
        self.writer
            .join()
            .map_err(|_| anyhow!("the persist thread panicked"))??;
        // The persist thread held the fence's queue: the fence has stopped too.
        if let Some(fence) = self.fence {
            fence
                .join()
                .map_err(|_| anyhow!("the fence thread panicked"))?;
        }
        let mut ends = Vec::new();
        for (at, (engine, store)) in engines.into_iter().enumerate() {
            let applied = self.hub.next_position(at);
            store.save(applied, &engine).context("final snapshot")?;
            ends.push(applied);
        }
        Ok(ends)
    }
}

/// The operator's token, read at start when the node has an `[admin]` section (which needs
/// the HTTP listener it is served on).
fn admin_token(config: &NodeConfig) -> anyhow::Result<Option<AdminToken>> {
    let Some(section) = &config.admin else {
        return Ok(None);
    };
    if config.listen.http.is_none() {
        anyhow::bail!("[admin] is served on the HTTP listener: set listen.http");
    }
    Ok(Some(AdminToken::from_file_content(&section.read_token()?)?))
}

/// Opens (recovers) every planned shard.
fn open_shards(config: &NodeConfig, planned: &[ShardPlan]) -> anyhow::Result<Vec<OpenedShard>> {
    let open = |shard: &ShardPlan| {
        shard::open(
            &config.site,
            &config.data_dir,
            shard,
            config.engine,
            &config.snapshots,
        )
        .with_context(|| format!("shard {}", shard.name))
    };
    planned.iter().map(open).collect()
}

/// The shards whose snapshots `/v1/admin/snapshots/{shard}` serves.
fn shipped(opened: &[OpenedShard], planned: &[ShardPlan]) -> Vec<ShippedShard> {
    let ship = |(shard, planned): (&OpenedShard, &ShardPlan)| ShippedShard {
        name: planned.name.clone(),
        log: planned.log.identity(),
        store: shard.store(),
    };
    opened.iter().zip(planned).map(ship).collect()
}

/// What the HTTP listener serves besides health, metrics and market data.
struct HttpRoutes {
    hashes: RecentHashes,
    admin: Option<AdminToken>,
    shipped: Vec<ShippedShard>,
    /// Every member-facing listener's TLS (`None`: plaintext, allowed).
    tls: Option<Acceptor>,
}

/// A Kafka log's security settings, checked before any client is made: they can work, and
/// they encrypt unless the config allows plaintext.
fn check_kafka_security(config: &NodeConfig) -> anyhow::Result<()> {
    let Some(kafka) = config.log.kafka() else {
        return Ok(());
    };
    kafka
        .security
        .check()
        .map_err(|why| anyhow!("[log.security]: {why}"))?;
    if !kafka.security.encrypted() && !config.allow_plaintext {
        bail!(
            "the Kafka connections would be plaintext: set [log.security] protocol = \"ssl\" \
             (or \"sasl_ssl\"), or allow_plaintext = true (one trusted network)"
        );
    }
    Ok(())
}

/// The listeners' TLS from `[tls]`, checked now (readable, valid today, the key the
/// certificate's); `None` when the config allows plaintext instead, an error when it does
/// neither.
fn tls_acceptor(config: &NodeConfig) -> anyhow::Result<Option<Acceptor>> {
    match (&config.tls, config.allow_plaintext) {
        (Some(tls), _) => Ok(Some(
            Acceptor::from_files(&tls.cert_file, &tls.key_file).context("[tls]")?,
        )),
        (None, true) => Ok(None),
        (None, false) => bail!(
            "the member-facing listeners would be plaintext: set [tls] cert_file and key_file, \
             or allow_plaintext = true (one machine, or behind a proxy that terminates TLS)"
        ),
    }
}

/// A running persist thread, and the fence's when there is one.
type Writers = (JoinHandle<anyhow::Result<()>>, Option<JoinHandle<()>>);

/// Starts every opened shard's threads, the persist thread they hand snapshots and hashes
/// to, and on Kafka with state hashes on the divergence fence.
fn start_shards(
    opened: Vec<OpenedShard>,
    views: &[Arc<ShardView>],
    hub: &Arc<Hub>,
    config: &NodeConfig,
    hashes: RecentHashes,
) -> anyhow::Result<(Vec<RunningShard>, Writers)> {
    let (persist_tx, persist_rx) = crossbeam_channel::bounded(opened.len());
    let stores = opened.iter().map(OpenedShard::store).collect();
    let hashes_path = config.data_dir.join("hashes.jsonl");
    let (fence_tx, fence) = match config.log.kafka().filter(|_| config.hash_every > 0) {
        Some(commands) => {
            let (tx, rx) = crossbeam_channel::bounded(1_024);
            let topic = fence::hashes_topic(&commands);
            let thread = fence::spawn(&config.site, topic, views.to_vec(), rx)
                .context("starting the divergence fence")?;
            (Some(tx), Some(thread))
        }
        None => (None, None),
    };
    let writer = persist::spawn_writer(stores, &hashes_path, hashes, persist_rx, fence_tx)?;
    let shards = opened
        .into_iter()
        .enumerate()
        .map(|(at, shard)| shard::start(shard, at, &views[at], hub, config, persist_tx.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((shards, (writer, fence)))
}

/// The gateway's runtime and the signal that stops its servers.
fn gateway_runtime() -> anyhow::Result<(Runtime, watch::Sender<bool>, watch::Receiver<bool>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("gateway")
        .build()?;
    let (stop, stop_rx) = watch::channel(false);
    Ok((runtime, stop, stop_rx))
}

/// Binds and starts the servers: binary order entry, and FIX and HTTP when configured.
fn serve(
    runtime: &Runtime,
    config: &NodeConfig,
    hub: &Arc<Hub>,
    views: Vec<Arc<ShardView>>,
    routes: HttpRoutes,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Addrs, Arc<NodeMetrics>)> {
    let bind = |addr: SocketAddr| {
        runtime
            .block_on(TcpListener::bind(addr))
            .with_context(|| format!("binding {addr}"))
    };
    if config.clock_every_ms > 0 {
        let every = std::time::Duration::from_millis(config.clock_every_ms);
        runtime.spawn(tick_when_idle(hub.clone(), every, stop.clone()));
    }
    let shared = Arc::new(config.clone());
    runtime.spawn(credentials::reload(shared, hub.clone(), stop.clone()));
    let listener = bind(config.listen.binary)?;
    let binary = listener.local_addr()?;
    runtime.spawn(binary_server::serve(
        listener,
        routes.tls.clone(),
        hub.clone(),
        config.binary,
        stop.clone(),
    ));
    let mut fix = None;
    if let Some(addr) = config.listen.fix {
        fix = Some((bind(addr)?, fix_gateway(runtime, config, hub)?));
    }
    let md = config
        .listen
        .http
        .map(|addr| {
            Ok::<_, anyhow::Error>((bind(addr)?, MdServer::new(hub.clone(), config.market_data)))
        })
        .transpose()?;
    let metrics = Arc::new(NodeMetrics {
        site: config.site.clone(),
        shards: views,
        md: md.as_ref().map(|(_, md)| md.clone()),
        fix: fix.as_ref().map(|(_, gateway)| gateway.clone()),
    });
    let addrs = Addrs {
        binary,
        fix: fix.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
        http: md.as_ref().map(|(l, _)| l.local_addr()).transpose()?,
    };
    if let Some((listener, gateway)) = fix {
        let (stop, tls) = (stop.clone(), routes.tls.clone());
        runtime.spawn(async move { gateway.serve(listener, tls, stop).await });
    }
    if let Some((listener, md)) = md {
        let app = http::router(hub.clone(), metrics.clone(), routes.hashes)
            .merge(admin::router(hub.clone(), routes.admin, routes.shipped))
            .merge(md.router());
        runtime.spawn(serve_http(listener, routes.tls, app, md, stop));
    }
    Ok((addrs, metrics))
}

/// Sends `clock` whenever this site has submitted nothing for a while, until `stop`: log
/// time moves in a quiet market, so a dead-man's switch fires at most `every` after its
/// deadline ([`idle_cadence`]).
async fn tick_when_idle(
    hub: Arc<Hub>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (check, idle) = idle_cadence(every);
    let mut tick = tokio::time::interval(check);
    loop {
        tokio::select! {
            _ = tick.tick() => hub.tick_if_idle(idle),
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// For a clock interval `every`: how often the idle check runs, and how long the site must
/// have been idle to send `clock`. Checked every quarter interval, sent after half of one: an
/// idle site's commands are at most three quarters of `every` apart, plus the timer's
/// lateness. Checked every `every` for `every` of silence, they were up to twice `every`
/// apart: a check that came just short of it waited a whole interval more (the seed
/// scenario's two late switches, 597 and 764 ms between records with `every` 500 ms, while
/// the surviving sites' members were refused and only clocks came).
fn idle_cadence(every: std::time::Duration) -> (std::time::Duration, std::time::Duration) {
    (every / 4, every / 2)
}

/// The FIX acceptor, its session store under `data_dir` when relative.
fn fix_gateway(
    runtime: &Runtime,
    config: &NodeConfig,
    hub: &Arc<Hub>,
) -> anyhow::Result<Arc<FixGateway>> {
    let mut fix = config.fix.clone();
    if fix.store_dir.is_relative() {
        fix.store_dir = config.data_dir.join(&fix.store_dir);
    }
    let gateway = runtime
        .block_on(async { FixGateway::new(hub.clone(), fix) })
        .context("the FIX gateway")?;
    Ok(Arc::new(gateway))
}

/// Serves HTTP until `stop`; WebSockets are then closed with 1001 (going away).
async fn serve_http(
    listener: TcpListener,
    tls: Option<Acceptor>,
    app: axum::Router,
    md: MdServer,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|stop| *stop).await;
        md.shutdown();
    };
    let Some(tls) = tls else {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await;
        return;
    };
    match HttpsListener::new(listener, tls) {
        Ok(https) => {
            let _ = axum::serve(https, app)
                .with_graceful_shutdown(stopped)
                .await;
        }
        Err(err) => eprintln!("node: the HTTPS listener: {err}"),
    }
}

/// How long a starting node keeps trying to list a configured symbol while its log is busy or
/// unreachable (a broker still starting, or slow to answer on a loaded machine).
const LISTING_WAIT: Duration = Duration::from_secs(30);

/// Submits the listing of a configured symbol the recovered engine does not list, trying again
/// while the log refuses it as busy or unavailable, up to [`LISTING_WAIT`]. Seen on tansu beside
/// a drill: the partition's leader unanswered for a second at start, and the node exited.
fn list_symbol(hub: &Hub, add: AddSymbol) -> anyhow::Result<()> {
    let deadline = Instant::now() + LISTING_WAIT;
    loop {
        match hub.submit(CommandKind::AddSymbol(add)) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                bail!("listing {} (tried for {LISTING_WAIT:?}): {e}", add.symbol)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flow::SplitMix64;
    use replicator::log::LogConfig;
    use replicator::security::{KafkaProtocol, KafkaSecurity};

    use super::{check_kafka_security, idle_cadence, NodeConfig};

    #[test]
    fn a_kafka_log_in_plaintext_or_with_settings_that_cannot_work_is_refused() {
        let mut config = NodeConfig::for_tests("k", std::path::Path::new("data"), Vec::new());
        let kafka = |security: KafkaSecurity| LogConfig::Kafka {
            bootstrap_servers: "localhost:9093".into(),
            topic: "x.commands".into(),
            partition: None,
            delivery_timeout_ms: 30_000,
            request_timeout_ms: 500,
            allow_unsafe_topic: false,
            security: Box::new(security),
        };
        config.log = kafka(KafkaSecurity::default());
        assert!(check_kafka_security(&config).is_ok());
        config.allow_plaintext = false;
        let err = check_kafka_security(&config).unwrap_err().to_string();
        assert!(
            err.contains("Kafka connections would be plaintext"),
            "{err}"
        );
        config.log = kafka(KafkaSecurity {
            protocol: KafkaProtocol::SaslSsl,
            ..KafkaSecurity::default()
        });
        let err = check_kafka_security(&config).unwrap_err().to_string();
        assert!(err.contains("sasl_ssl needs"), "{err}");
        config.log = kafka(KafkaSecurity {
            protocol: KafkaProtocol::Ssl,
            ..KafkaSecurity::default()
        });
        assert!(check_kafka_security(&config).is_ok());
    }

    /// The longest time between an idle site's commands when its idle check runs every
    /// `check` (each run up to a fifth of `check` late, drawn from a seed) and sends `clock`
    /// after `idle` without one, over 10,000 checks.
    fn longest_gap_ms(check: Duration, idle: Duration) -> u64 {
        let mut rng = SplitMix64(7);
        let check_ns = check.as_nanos() as u64;
        let (mut last, mut longest) = (0u64, 0u64);
        for k in 1..10_000u64 {
            let now = k * check_ns + rng.below(check_ns / 5);
            if gateway::idle_due(last, now, idle) {
                longest = longest.max(now - last);
                last = now;
            }
        }
        longest / 1_000_000
    }

    /// Seen in the seed scenario: with the check every 500 ms for 500 ms of silence, an idle
    /// site's clocks came up to a second apart, and switches fired late. The cadence keeps
    /// them within the clock interval, late timers included.
    #[test]
    fn an_idle_sites_clocks_are_never_more_than_the_interval_apart() {
        let every = Duration::from_millis(500);
        let before = longest_gap_ms(every, every);
        assert!(before > 900, "the old cadence: {before} ms");
        let (check, idle) = idle_cadence(every);
        let after = longest_gap_ms(check, idle);
        assert!(after <= 400, "{after} ms between clocks, interval 500 ms");
    }
}

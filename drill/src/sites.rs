//! `exchange drill`: the failover drill on three local sites, or on a real deployment.
//!
//! Locally it runs a Kafka cluster of three brokers racked as the sites (librdkafka's mock
//! cluster in this process, with each site's round-trip time: [`SiteCluster`]; or one tansu
//! broker with `--broker tansu`; or `--kafka` for a running cluster), creates the shard's
//! topic, writes a node configuration per site (`cloud-a`, `cloud-b`, `metal`) and runs each
//! site as its own `exchange node` process, so a kill is a real SIGKILL of a whole site, and
//! on the mock cluster its broker goes dark with it (the leadership moving to a surviving
//! site's broker). The drill itself (load, kills, audit) is [`run_drill`].
//!
//! With `--deployment FILE` it drives an existing deployment instead: the file names each
//! site's gateway and HTTP addresses and the shell commands that kill and start it (see
//! `config/drill-deployment.toml`).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use engine::{EngineConfig, Price, Qty, Symbol};
use gateway::Member;
use node::config::{ListenSection, SnapshotSection};
use node::NodeConfig;
use replicator::divergence::HashReport;
use replicator::kafka::{KafkaConfig, KafkaLogError, DEFAULT_REQUEST_TIMEOUT_MS};
use replicator::log::LogConfig;
use replicator::topic::{check_topic, create_topic};
use serde::Deserialize;

use crate::cluster::SiteCluster;
use crate::partition::{Cut, Firewall, SiteCgroup};
use crate::tansu::Tansu;
use crate::{run_drill, DrillConfig, DrillReport, KillEffects, LogControl, SiteControl};

/// The three sites of a local drill.
pub const SITES: [&str; 3] = ["cloud-a", "cloud-b", "metal"];
/// How long a node may take to answer on HTTP after it was started. A restarted node replays
/// what it missed before it listens, an hour's outage being over a million records: with 60 s
/// the hour-long drill gave up on the returning site (whose broker, tansu, had also failed
/// under the catch-up).
const NODE_START: Duration = Duration::from_secs(900);
/// How long a node may take to stop after SIGTERM before it is killed: twice the node's own
/// bound before its final snapshot (`node::STOP_BOUND`, 17 s), for the snapshot and a loaded
/// machine.
const NODE_STOP: Duration = node::STOP_BOUND.saturating_mul(2);

/// `exchange drill`'s arguments (its help text is the doc comments).
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
    pub duration: f64,
    /// Whole-site kills (SIGKILL), one site down at a time, at random moments.
    #[arg(long, default_value_t = 3)]
    pub kills: usize,
    /// Node freezes (SIGSTOP, then SIGCONT after the down time: a long GC-like pause; the
    /// site's broker carries on), mixed in among the kills.
    #[arg(long, default_value_t = 0)]
    pub pauses: usize,
    /// Partitions (the node cut off from the brokers, so from the other sites, while its
    /// members still reach it; healed after the down time), mixed in among the kills. Cut
    /// for real with nftables on the node's cgroup: local sites only, as root.
    #[arg(long, default_value_t = 0)]
    pub partitions: usize,
    /// Isolations: partitions that cut the node off from its members too.
    #[arg(long, default_value_t = 0)]
    pub isolations: usize,
    /// Whole-Kafka outages (the local tansu broker stopped, every site up, then started
    /// again on its data), mixed in among the kills: `--broker tansu` only.
    #[arg(long, default_value_t = 0)]
    pub kafka_outages: usize,
    /// Clock skews, mixed in among the kills: the node restarted with its clock
    /// --skew-secs ahead, for the down time, then restarted with the right one. It must
    /// refuse with clock_skew, not move the log's time (`log_time_ahead` stays 0).
    #[arg(long, default_value_t = 0)]
    pub skews: usize,
    /// Rolling-upgrade steps, mixed in among the kills: the node stopped cleanly (SIGTERM),
    /// its broker up, and started after the down time on --upgrade-binary.
    #[arg(long, default_value_t = 0)]
    pub upgrades: usize,
    /// The binary an upgraded site starts on (by default the drill's own `exchange`); it
    /// must read this binary's snapshots and log.
    #[arg(long, value_name = "FILE")]
    pub upgrade_binary: Option<PathBuf>,
    /// How far ahead a skewed site's clock runs, seconds.
    #[arg(long, default_value_t = 300.0, value_parser = positive_seconds)]
    pub skew_secs: f64,
    /// New orders per second over all clients.
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    #[arg(long, default_value_t = 2)]
    pub clients_per_site: usize,
    /// Quote-only members per site: cancel-on-disconnect sessions that keep a bid and an
    /// offer resting away from the market and send nothing else; they move when their site
    /// goes silent or tells them it lost the log, and quote again there.
    #[arg(long, default_value_t = 1)]
    pub quoters_per_site: usize,
    /// Market-data subscribers per site: they follow the book and the trades over the site's
    /// WebSocket, move when it goes dark or says it is stale, and the audit checks their
    /// numbering and their books against the log (`md_gaps`).
    #[arg(long, default_value_t = 1)]
    pub md_per_site: usize,
    /// FIX members per site: order-entry clients like the binary ones (new orders, cancels,
    /// mass cancels, replaces with a new ClOrdID), each a QuickFIX C++ initiator that fails over by the
    /// same rules. Needs the fix-members feature (cmake builds QuickFIX).
    #[arg(long, default_value_t = 0)]
    pub fix_members_per_site: usize,
    /// A killed site stays down between these many seconds (MIN,MAX).
    #[arg(long, value_delimiter = ',', default_value = "2,6")]
    pub down_secs: Vec<f64>,
    /// A long outage instead of --kills and --pauses: one site (drawn by the seed) crashed,
    /// with its broker, at a tenth of the run and started again this many seconds later;
    /// it then catches up from the backlog (the report says how many records, how fast).
    /// The run must last a quarter longer than the outage.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds,
          conflicts_with_all = ["kills", "pauses", "partitions", "isolations", "kafka_outages", "skews", "upgrades",
                                "down_secs"])]
    pub outage: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long the local sites remember a finished order's client order id (log time,
    /// milliseconds): an id sent again within it is refused as a duplicate. Shorter than a
    /// site's longest silence (a freeze, a partition, the producer's delivery timeout) lets a
    /// late copy execute twice, which the audit's `duplicates` must catch.
    #[arg(long, default_value_t = 60_000)]
    pub dedup_window_ms: u64,
    /// The report as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// The timeline as a self-contained HTML page: orders acknowledged per second by site,
    /// the slowest acknowledgement of each second, each fault shaded, its RTO marked.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Where the local sites keep their files (a temporary directory otherwise).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The local sites' Kafka: `mock`, three brokers racked as the sites in this process
    /// (librdkafka's mock cluster; a killed site's broker goes dark with it), or `tansu`, one
    /// real broker process (for a whole-Kafka outage, or a restart on its data).
    #[arg(long, value_enum, default_value_t = Broker::Mock)]
    pub broker: Broker,
    /// Each site's broker round-trip time on the mock cluster, milliseconds
    /// (cloud-a,cloud-b,metal).
    #[arg(long, value_delimiter = ',', default_value = "1,1,3")]
    pub rtt_ms: Vec<u64>,
    /// On the mock cluster, how long the partition has no leader after the leader's site goes
    /// dark before the drill (as the controller) moves it: a real cluster's
    /// `broker.session.timeout.ms`.
    #[arg(long, default_value_t = 0)]
    pub election_ms: u64,
    /// A running Kafka cluster for the local sites instead of a local one.
    #[arg(long, value_name = "BOOTSTRAP_SERVERS")]
    pub kafka: Option<String>,
    /// The drill topic's replication factor on --kafka.
    #[arg(long, default_value_t = 3)]
    pub replication: i32,
    /// The commands topic (created if missing; default drill-SEED-PID.commands).
    #[arg(long)]
    pub topic: Option<String>,
    /// Trade on a topic that fails the durability check (replication 3,
    /// min.insync.replicas 2, unclean election off): development clusters only.
    #[arg(long)]
    pub allow_unsafe_topic: bool,
    /// Drill a running deployment instead (see config/drill-deployment.toml).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kafka", "dir", "topic"])]
    pub deployment: Option<PathBuf>,
}

/// The local Kafka a drill starts (see [`Args::broker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    Mock,
    Tansu,
}

/// The Kafka a local drill started, kept until the drill ends.
enum LocalBroker {
    /// `--kafka`: someone else's.
    External,
    /// Stopped and started for whole-Kafka outages; stopped when dropped.
    Tansu(Tansu),
    Mock(Rc<SiteCluster>),
}

impl Args {
    /// `--down-secs` as (MIN, MAX).
    fn down(&self) -> Result<(Duration, Duration)> {
        let &[down_min, down_max] = self.down_secs.as_slice() else {
            bail!("--down-secs takes MIN,MAX");
        };
        Ok((
            Duration::try_from_secs_f64(down_min)?,
            Duration::try_from_secs_f64(down_max)?,
        ))
    }
}

/// A number of seconds on the command line: positive and finite (the `exchange` command's
/// other durations take it too).
pub fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(seconds),
        _ => Err(format!(
            "expected a positive number of seconds, got {text:?}"
        )),
    }
}

/// Runs the drill `args` asks for, the local sites running `exe` (the `exchange` binary);
/// the report says whether it passed.
pub fn drill(args: &Args, exe: &Path) -> Result<DrillReport> {
    // Checked before anything starts.
    let down = args.down()?;
    match &args.deployment {
        Some(path) => drill_deployment(args, down, path),
        None => drill_local(args, down, exe),
    }
}

/// A site this process runs as an `exchange node` child.
struct LocalSite {
    name: String,
    /// Its place in [`SITES`] (and its broker's in the cluster).
    index: usize,
    /// The drill's own cluster, whose broker for this site goes dark with it.
    cluster: Option<Rc<SiteCluster>>,
    exe: PathBuf,
    /// The binary it starts on after an upgrade step.
    upgrade_exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
    binary: SocketAddr,
    http: SocketAddr,
    fix: SocketAddr,
    child: Option<Child>,
    /// Where the drill partitions: the firewall, the node's cgroup and the brokers' ports.
    fence: Option<Fence>,
    /// How far ahead of the machine's the node's clock runs (a clock skew).
    clock_ahead: Duration,
}

/// What partitioning a local site takes.
struct Fence {
    firewall: Rc<Firewall>,
    cgroup: SiteCgroup,
    brokers: Vec<u16>,
}

impl LocalSite {
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = match &self.fence {
            // Started in its cgroup, before it opens a socket: `sh` joins it, then execs.
            Some(fence) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", "echo $$ > \"$0\" && exec \"$@\""])
                    .arg(&fence.cgroup.procs)
                    .arg(&self.exe);
                sh
            }
            None => Command::new(&self.exe),
        };
        let child = command
            .arg("node")
            .arg("--config")
            .arg(&self.config)
            .arg(format!(
                "--clock-offset-ms={}",
                self.clock_ahead.as_millis()
            ))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + NODE_START;
        while std::net::TcpStream::connect(self.http).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "site {} exited at start ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("site {} did not listen within {NODE_START:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it does not stop in time.
    fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + NODE_STOP;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!(
                        "site {} stopped with {status}; see {}",
                        self.name,
                        self.log.display()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("site {} did not stop within {NODE_STOP:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl SiteControl for LocalSite {
    fn name(&self) -> &str {
        &self.name
    }
    fn binary(&self) -> SocketAddr {
        self.binary
    }
    fn http(&self) -> SocketAddr {
        self.http
    }
    fn fix(&self) -> Option<SocketAddr> {
        Some(self.fix)
    }
    fn kill(&mut self) -> Result<KillEffects> {
        self.kill_node()?;
        let Some(cluster) = &self.cluster else {
            return Ok(KillEffects::default());
        };
        Ok(KillEffects {
            broker_down: true,
            leader_moved_to: cluster.site_down(self.index)?,
        })
    }
    fn start(&mut self) -> Result<()> {
        if let Some(cluster) = &self.cluster {
            cluster.site_up(self.index)?;
        }
        self.spawn()
    }
    fn pause(&mut self) -> Result<()> {
        self.signal("STOP")
    }
    fn resume(&mut self) -> Result<()> {
        self.signal("CONT")
    }
    fn partition(&mut self, cut: Cut) -> Result<()> {
        let fence = self.fence()?;
        let members = match cut {
            Cut::Log => Vec::new(),
            Cut::LogAndMembers => vec![self.binary.port(), self.fix.port()],
        };
        fence.firewall.cut(&fence.cgroup, &fence.brokers, &members)
    }
    fn heal(&mut self) -> Result<()> {
        let fence = self.fence()?;
        fence.firewall.heal(&fence.cgroup)
    }
    fn restart_skewed(&mut self, ahead: Duration) -> Result<()> {
        self.kill_node()?;
        self.clock_ahead = ahead;
        self.spawn()
    }
    fn stop_for_upgrade(&mut self) -> Result<()> {
        self.terminate()
    }
    fn start_upgraded(&mut self) -> Result<()> {
        self.exe = self.upgrade_exe.clone();
        self.spawn()
    }
    fn hash_history(&self) -> Vec<HashReport> {
        let path = self.config.with_file_name("data").join("hashes.jsonl");
        // A line a SIGKILL tore is skipped; anything else unreadable is said, and the audit
        // then checks the site's recent reports (`/v1/hashes`) only.
        replicator::divergence::read_file(&path).unwrap_or_else(|err| {
            eprintln!("drill: {}'s hash reports: {err}", self.name);
            Vec::new()
        })
    }
}

impl LocalSite {
    fn fence(&self) -> Result<&Fence> {
        self.fence
            .as_ref()
            .ok_or_else(|| anyhow!("{} was started without a partitions firewall", self.name))
    }

    /// Sends the node `SIG<name>` (by `kill`: this crate has no unsafe code).
    fn signal(&self, name: &str) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("{} is not running", self.name))?;
        shell(&format!("kill -{name} {}", child.id()))
    }

    /// SIGKILL of the node, if it runs.
    fn kill_node(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for LocalSite {
    fn drop(&mut self) {
        let _ = self.kill_node();
    }
}

/// A loopback address free to listen on now, for a site to bind a moment later. Taken below
/// Linux's ephemeral range (32768 and up), so no outgoing connection (a client's, a Kafka
/// client's) can take it in between, and never the same twice from one process (a process-wide
/// cursor), so sites started together do not race for one port.
pub fn free_port() -> Result<SocketAddr> {
    const FIRST: u32 = 20_000;
    const PORTS: u32 = 12_000;
    static CURSOR: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % PORTS;
    for _ in 0..PORTS {
        let step = CURSOR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = FIRST + (start + step) % PORTS;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return Ok(listener.local_addr()?);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The drill's members as (name, token, account): one per client.
pub fn members(count: usize) -> Vec<(String, String, u64)> {
    (0..count)
        .map(|k| {
            (
                format!("drill-{k}"),
                format!("drill-token-{k:06}"),
                1000 + k as u64,
            )
        })
        .collect()
}

/// The engine every site and the audit use: room for every order of a 10-minute drill, and
/// finished orders' client order ids remembered for `dedup_window`.
pub fn drill_engine(seed: u64, dedup_window: Duration) -> EngineConfig {
    EngineConfig {
        orders_max: 1 << 18,
        retired_ids_max: 1 << 21,
        hash_seed: seed | 1,
        dedup_window_ns: dedup_window.as_nanos() as u64,
        ..EngineConfig::default()
    }
}

/// The local sites' idle `clock` interval: a quiet gateway moves log time this often, so a
/// dead-man's switch fires within its timeout plus this.
pub const CLOCK_EVERY: Duration = Duration::from_millis(500);

/// The node configuration of one local site, on the Kafka log `kafka`: the tests' small site
/// (BTC-USD, tick 0.5, lot 1) with the drill's engine, members and hash cadence, its files in
/// `data` beside the configuration file.
pub fn node_config(
    name: &str,
    kafka: &KafkaConfig,
    engine: &EngineConfig,
    (binary, http): (SocketAddr, SocketAddr),
    members: &[(String, String, u64)],
    hash_every: u64,
) -> NodeConfig {
    let members = members
        .iter()
        .map(|(name, token, account)| Member {
            name: name.clone(),
            token: token.clone(),
            account: *account,
        })
        .collect();
    let mut config = NodeConfig::for_tests(name, Path::new("data"), members);
    config.log = LogConfig::Kafka {
        bootstrap_servers: kafka.bootstrap_servers.clone(),
        topic: kafka.topic.clone(),
        partition: Some(kafka.partition),
        delivery_timeout_ms: kafka.delivery_timeout_ms,
        request_timeout_ms: kafka.request_timeout_ms,
        allow_unsafe_topic: kafka.allow_unsafe_topic,
        security: Box::new(kafka.security.clone()),
    };
    config.listen = ListenSection {
        binary,
        http: Some(http),
        fix: None,
    };
    config.engine = *engine;
    config.hash_every = hash_every;
    config.clock_every_ms = CLOCK_EVERY.as_millis() as u64;
    config.snapshots = SnapshotSection {
        every_records: 20_000,
        every_seconds: 10,
        keep: 2,
    };
    config
}

/// The one place a [`DrillConfig`] is made: from the arguments (`down` is
/// [`Args::down`]'s) and the shard the sites run, with their `hash_every` and idle clock
/// interval.
fn drill_config(
    args: &Args,
    down: (Duration, Duration),
    kafka: KafkaConfig,
    engine: EngineConfig,
    members: Vec<(String, String, u64)>,
    (hash_every, clock_every): (u64, Duration),
    (symbol, tick, lot): (Symbol, Price, Qty),
) -> DrillConfig {
    // `--outage` is the run's one fault.
    let faults = |count: usize| if args.outage.is_some() { 0 } else { count };
    DrillConfig {
        duration: Duration::from_secs_f64(args.duration),
        kills: faults(args.kills),
        pauses: faults(args.pauses),
        partitions: faults(args.partitions),
        isolations: faults(args.isolations),
        kafka_outages: faults(args.kafka_outages),
        skews: faults(args.skews),
        upgrades: faults(args.upgrades),
        skew: Duration::from_secs_f64(args.skew_secs),
        rate: args.rate,
        clients_per_site: args.clients_per_site,
        quoters_per_site: args.quoters_per_site,
        md_per_site: args.md_per_site,
        fix_members_per_site: args.fix_members_per_site,
        clock_every,
        down_min: down.0,
        down_max: down.1,
        outage: args.outage.map(Duration::from_secs_f64),
        seed: args.seed,
        members,
        symbol,
        tick,
        lot,
        kafka,
        engine,
        hash_every,
        drain_timeout: Duration::from_secs(30),
    }
}

fn btc() -> Result<(Symbol, Price, Qty)> {
    Ok((
        Symbol::new("BTC-USD").map_err(|e| anyhow!("{e:?}"))?,
        Price::parse("0.5").map_err(|e| anyhow!("{e:?}"))?,
        Qty::parse("1").map_err(|e| anyhow!("{e:?}"))?,
    ))
}

fn drill_local(args: &Args, down: (Duration, Duration), exe: &Path) -> Result<DrillReport> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let result = drill_local_in(args, down, exe, &dir);
    if args.dir.is_none() && !result.as_ref().is_ok_and(DrillReport::passed) {
        // Keep the evidence of a failed drill: node logs, configurations, data.
        let kept = temp.keep();
        eprintln!("drill: failed; its files are kept in {}", kept.display());
    }
    result
}

fn drill_local_in(
    args: &Args,
    down: (Duration, Duration),
    exe: &Path,
    dir: &Path,
) -> Result<DrillReport> {
    std::fs::create_dir_all(dir)?;
    let (mut broker, kafka) = local_log(args, dir)?;
    let cluster = match &broker {
        LocalBroker::Mock(cluster) => Some(cluster.clone()),
        LocalBroker::External | LocalBroker::Tansu(_) => None,
    };
    let engine = drill_engine(args.seed, Duration::from_millis(args.dedup_window_ms));
    let per_site = args.clients_per_site + args.quoters_per_site + args.fix_members_per_site;
    let clients = SITES.len() * per_site;
    let members = members(clients.max(1));
    let hash_every = 1000;
    let shard = Shard {
        kafka: &kafka,
        engine: &engine,
        members: &members,
        hash_every,
    };
    let mut sites = local_sites(args, exe, dir, &shard, cluster)?;
    for site in &mut sites {
        site.spawn()?;
    }
    eprintln!(
        "drill: sites {} on Kafka {} (topic {}), files in {}",
        SITES.join(", "),
        kafka.bootstrap_servers,
        kafka.topic,
        dir.display()
    );
    let config = drill_config(
        args,
        down,
        kafka,
        engine,
        members.clone(),
        (hash_every, CLOCK_EVERY),
        btc()?,
    );
    let log: Option<&mut dyn LogControl> = match &mut broker {
        LocalBroker::Tansu(tansu) => Some(tansu),
        LocalBroker::External | LocalBroker::Mock(_) => None,
    };
    let mut report = run_drill(&config, &mut sites, log)?;
    // Clean stops: each node applies what is committed and writes its final snapshot. A site
    // that does not stop cleanly (or had already exited on its own) fails the drill, whose
    // report is still written: a 30-minute run's figures were once thrown away for it.
    for site in &mut sites {
        if let Err(err) = site.terminate() {
            report.problems.push(format!("stopping the sites: {err}"));
        }
    }
    Ok(report)
}

/// What every local site runs: the shard's log, engine, members and hash interval.
struct Shard<'a> {
    kafka: &'a KafkaConfig,
    engine: &'a EngineConfig,
    members: &'a [(String, String, u64)],
    hash_every: u64,
}

/// The three local sites, configured in `dir` (not started), each in a cgroup of its own
/// behind the partitions' firewall when the drill partitions.
fn local_sites(
    args: &Args,
    exe: &Path,
    dir: &Path,
    shard: &Shard,
    cluster: Option<Rc<SiteCluster>>,
) -> Result<Vec<LocalSite>> {
    let mut firewall = (args.partitions + args.isolations > 0)
        .then(Firewall::new)
        .transpose()?;
    let cgroups = SITES
        .iter()
        .map(|name| firewall.as_mut().map(|f| f.site(name)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let firewall = firewall.map(Rc::new);
    let brokers = broker_ports(&shard.kafka.bootstrap_servers)?;
    let mut sites = Vec::new();
    for ((index, name), cgroup) in SITES.into_iter().enumerate().zip(cgroups) {
        let site_dir = dir.join(name);
        std::fs::create_dir_all(&site_dir)?;
        let (binary, http, fix) = (free_port()?, free_port()?, free_port()?);
        let config = site_dir.join("node.toml");
        let mut node = node_config(
            name,
            shard.kafka,
            shard.engine,
            (binary, http),
            shard.members,
            shard.hash_every,
        );
        node.listen.fix = Some(fix);
        std::fs::write(&config, toml::to_string(&node)?)?;
        let fence = firewall
            .clone()
            .zip(cgroup)
            .map(|(firewall, cgroup)| Fence {
                firewall,
                cgroup,
                brokers: brokers.clone(),
            });
        sites.push(LocalSite {
            name: name.into(),
            index,
            cluster: cluster.clone(),
            exe: exe.to_path_buf(),
            upgrade_exe: args
                .upgrade_binary
                .clone()
                .unwrap_or_else(|| exe.to_path_buf()),
            config,
            log: site_dir.join("node.log"),
            binary,
            http,
            fix,
            child: None,
            fence,
            clock_ahead: Duration::ZERO,
        });
    }
    Ok(sites)
}

/// The ports of a `host:port,host:port` bootstrap list: the brokers a partition cuts a site
/// off from (all of them: the mock cluster's, tansu's, or a local `--kafka`'s).
fn broker_ports(bootstrap: &str) -> Result<Vec<u16>> {
    bootstrap
        .split(',')
        .map(|broker| {
            let port = broker.trim().rsplit_once(':').map(|(_, port)| port);
            port.and_then(|p| p.parse().ok())
                .ok_or_else(|| anyhow!("no port in the broker address {broker:?}"))
        })
        .collect()
}

/// How long a request to tansu may take. Its SQLite storage answers in seconds when loaded
/// (a returning site reading its backlog, or builds beside the drill), and with the default
/// 500 ms every client of every site kept dropping its connection and resending (`Timed out 5
/// in-flight` all through the hour-long drill's log). tansu has one broker, so no leader move
/// is waited out here.
const TANSU_REQUEST_TIMEOUT_MS: u32 = 5_000;

/// The local sites' log: the mock cluster (or a tansu broker in `dir`, or `--kafka`), and the
/// commands topic on it, created if missing. A local broker stops when dropped.
fn local_log(args: &Args, dir: &Path) -> Result<(LocalBroker, KafkaConfig)> {
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("drill-{}-{}.commands", args.seed, std::process::id()));
    let (broker, bootstrap, replication) = match (&args.kafka, args.broker) {
        (Some(bootstrap), _) => (LocalBroker::External, bootstrap.clone(), args.replication),
        (None, Broker::Tansu) => {
            let broker = Tansu::start(&dir.join("kafka"))?;
            let bootstrap = broker.bootstrap();
            (LocalBroker::Tansu(broker), bootstrap, 1)
        }
        (None, Broker::Mock) => {
            let cluster = mock_cluster(args, &topic)?;
            let bootstrap = cluster.bootstrap();
            (LocalBroker::Mock(Rc::new(cluster)), bootstrap, 3)
        }
    };
    let mock = matches!(broker, LocalBroker::Mock(_));
    let tansu = matches!(broker, LocalBroker::Tansu(_));
    let kafka = KafkaConfig {
        // A single development broker cannot have three replicas; the mock cluster reports
        // no topic settings and keeps producers' create time (see ARCHITECTURE.md, "Time").
        allow_unsafe_topic: args.allow_unsafe_topic || replication < 3 || mock,
        request_timeout_ms: if tansu {
            TANSU_REQUEST_TIMEOUT_MS
        } else {
            DEFAULT_REQUEST_TIMEOUT_MS
        },
        ..KafkaConfig::new(&bootstrap, &topic, 0)
    };
    // An existing topic (created by the operators, or by a test's cluster) is used as it is.
    // Its hashes topic too, where the sites' divergence fences meet.
    let hashes = KafkaConfig {
        topic: replicator::divergence::hashes_topic(&topic),
        ..kafka.clone()
    };
    for config in [&kafka, &hashes] {
        if let Err(KafkaLogError::NoPartition(..)) = check_topic(config, Duration::from_secs(10)) {
            create_topic(config, 1, replication, Duration::from_secs(20))
                .with_context(|| format!("creating topic {} on {bootstrap}", config.topic))?;
        }
    }
    Ok((broker, kafka))
}

/// The drill's mock cluster: a broker per site with `--rtt-ms`, and the commands topic.
fn mock_cluster(args: &Args, topic: &str) -> Result<SiteCluster> {
    if args.rtt_ms.len() != SITES.len() {
        bail!(
            "--rtt-ms takes one round-trip time per site ({}), got {}",
            SITES.join(","),
            args.rtt_ms.len()
        );
    }
    let rtts: Vec<Duration> = args
        .rtt_ms
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    SiteCluster::start(
        &SITES,
        &rtts,
        topic,
        Duration::from_millis(args.election_ms),
    )
}

/// A site of an existing deployment, killed and started by shell commands.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployedSite {
    name: String,
    binary: SocketAddr,
    http: SocketAddr,
    /// Takes the whole site down at once (for example `ssh metal sudo systemctl kill -s
    /// KILL exchange-node`).
    kill: String,
    /// Starts it again.
    start: String,
    /// Freezes the site's node (for example `ssh metal sudo systemctl kill -s STOP
    /// exchange-node`); needed for `--pauses`.
    #[serde(default)]
    pause: Option<String>,
    /// Thaws it (`... -s CONT ...`).
    #[serde(default)]
    resume: Option<String>,
    /// Cuts the site's node off from the Kafka brokers, its members still reaching it (for
    /// example firewall rules on the site's egress); needed for `--partitions`.
    #[serde(default)]
    partition: Option<String>,
    /// Cuts it off from the brokers and from its members; needed for `--isolations`.
    #[serde(default)]
    isolate: Option<String>,
    /// Ends either cut.
    #[serde(default)]
    heal: Option<String>,
}

impl DeployedSite {
    /// Runs the optional command `what`, or says the deployment names none.
    fn run(&self, command: Option<&str>, what: &str) -> Result<()> {
        shell(
            command.ok_or_else(|| {
                anyhow!("the deployment names no {what} command for {}", self.name)
            })?,
        )
    }
}

impl SiteControl for DeployedSite {
    fn name(&self) -> &str {
        &self.name
    }
    fn binary(&self) -> SocketAddr {
        self.binary
    }
    fn http(&self) -> SocketAddr {
        self.http
    }
    fn kill(&mut self) -> Result<KillEffects> {
        shell(&self.kill)?;
        Ok(KillEffects::default())
    }
    fn start(&mut self) -> Result<()> {
        shell(&self.start)
    }
    fn pause(&mut self) -> Result<()> {
        self.run(self.pause.as_deref(), "pause")
    }
    fn resume(&mut self) -> Result<()> {
        self.run(self.resume.as_deref(), "resume")
    }
    fn partition(&mut self, cut: Cut) -> Result<()> {
        match cut {
            Cut::Log => self.run(self.partition.as_deref(), "partition"),
            Cut::LogAndMembers => self.run(self.isolate.as_deref(), "isolate"),
        }
    }
    fn heal(&mut self) -> Result<()> {
        self.run(self.heal.as_deref(), "heal")
    }
}

fn shell(command: &str) -> Result<()> {
    let status = Command::new("sh").args(["-c", command]).status()?;
    if !status.success() {
        bail!("`{command}` exited with {status}");
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployedMember {
    token: String,
    account: u64,
}

/// `--deployment FILE`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deployment {
    /// The shard's log, read for the audit.
    log: KafkaConfig,
    /// The nodes' engine section (the same hash seed: it is part of the state hash).
    engine: EngineConfig,
    /// The nodes' `hash_every`.
    hash_every: u64,
    /// The nodes' `clock_every_ms` (the node's default when absent).
    #[serde(default = "default_clock_every_ms")]
    clock_every_ms: u64,
    symbol: String,
    tick: String,
    lot: String,
    sites: Vec<DeployedSite>,
    /// One per client and quoter (sites × (clients + quoters per site)).
    members: Vec<DeployedMember>,
}

fn default_clock_every_ms() -> u64 {
    node::config::DEFAULT_CLOCK_EVERY_MS
}

fn drill_deployment(args: &Args, down: (Duration, Duration), path: &Path) -> Result<DrillReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let deployment: Deployment =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let symbol = (
        Symbol::new(&deployment.symbol).map_err(|e| anyhow!("symbol: {e:?}"))?,
        Price::parse(&deployment.tick).map_err(|e| anyhow!("tick: {e:?}"))?,
        Qty::parse(&deployment.lot).map_err(|e| anyhow!("lot: {e:?}"))?,
    );
    let config = drill_config(
        args,
        down,
        deployment.log,
        deployment.engine,
        deployment
            .members
            .iter()
            .map(|m| (String::new(), m.token.clone(), m.account))
            .collect(),
        (
            deployment.hash_every,
            Duration::from_millis(deployment.clock_every_ms),
        ),
        symbol,
    );
    let mut sites = deployment.sites;
    run_drill(&config, &mut sites, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped deployment example parses, and names three sites with enough members for
    /// the default two clients and one quoter per site.
    #[test]
    fn the_example_deployment_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/drill-deployment.toml");
        let deployment: Deployment = toml::from_str(&std::fs::read_to_string(path).unwrap())
            .expect("config/drill-deployment.toml is a valid deployment");
        assert_eq!(deployment.sites.len(), 3);
        assert_eq!(deployment.members.len(), 9);
        assert_ne!(deployment.engine.hash_seed, 0);
    }

    /// The node configuration the local drill writes is one `exchange node` loads and accepts,
    /// on Kafka, with the drill's engine and members.
    #[test]
    fn the_local_node_config_is_a_valid_node_config() {
        let kafka = KafkaConfig {
            allow_unsafe_topic: true,
            ..KafkaConfig::new("127.0.0.1:9092", "drill.commands", 0)
        };
        let addrs = (
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let config = node_config(
            "metal",
            &kafka,
            &drill_engine(7, Duration::from_secs(60)),
            addrs,
            &members(2),
            1000,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        let plan = loaded.plan().unwrap();
        assert_eq!(loaded.site, "metal");
        assert_eq!(plan.shards[0].log.kafka(), Some(kafka));
        assert_eq!(loaded.members.len(), 2);
        assert_eq!(loaded.engine, drill_engine(7, Duration::from_secs(60)));
        assert_eq!(loaded.data_dir, dir.path().join("data"));
        assert_eq!(loaded.listen.http, Some(addrs.1));
    }
}

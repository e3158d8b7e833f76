//! `exchange node`: one site's process, configured by a TOML file plus flags.
//!
//! The file (see `config/node.toml`) names the site, its data directory, the log, the
//! listen addresses, the engine's capacities, the snapshot policy, the members and the
//! symbols: either one shard's `[[symbols]]`, or `[[shards]]`, each with its symbols (and on
//! Kafka its partition), run as separate logs and engines behind one gateway. The node recovers, serves, and on SIGTERM or Ctrl-C shuts down cleanly: sessions
//! log out, everything committed is applied and reported, the journal is closed and a final
//! snapshot written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use engine::runner::RunnerConfig;
use engine::EngineConfig;
use gateway::binary_server::BinaryConfig;
use gateway::fix::FixConfig;
use gateway::MdConfig;
use gateway::Member;
use replicator::journal::FsyncPolicy;
use replicator::kafka::KafkaConfig;
use replicator::recovery::SnapshotPolicy;
use serde::Deserialize;

use crate::site::{LogBackend, ShardConfig, SiteConfig, SymbolSpec};

/// The node's configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The site's name: `cloud-a`, `cloud-b`, `metal`...
    pub site: String,
    /// Where the journal, snapshots and hash reports live (relative to the config file).
    pub data_dir: PathBuf,
    #[serde(default)]
    pub log: LogSection,
    pub listen: ListenSection,
    /// The engine's capacities. `hash_seed` must be a per-deployment secret (it keys the
    /// engine's hash tables against crafted order ids); the node refuses the default of 0.
    pub engine: EngineConfig,
    #[serde(default)]
    pub runner: RunnerConfig,
    #[serde(default)]
    pub snapshots: SnapshotSection,
    /// State hashes every this many records, for `exchange verify` (0: none).
    #[serde(default = "default_hash_every")]
    pub hash_every: u64,
    #[serde(default)]
    pub binary: BinaryConfig,
    #[serde(default)]
    pub market_data: MdConfig,
    /// FIX settings (`store_dir` relative to `data_dir`); served when `listen.fix` is set.
    #[serde(default)]
    pub fix: FixConfig,
    pub members: Vec<Member>,
    /// The symbols of a site of one shard (its journal and snapshots directly in `data_dir`).
    #[serde(default)]
    pub symbols: Vec<SymbolSpec>,
    /// Or several shards, each its own log and engine (in `data_dir/shards/NAME`). Every site
    /// of a deployment lists them in the same order: a shard's number is its place here.
    #[serde(default)]
    pub shards: Vec<ShardSection>,
}

/// One shard of a site of several.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSection {
    /// 1 to 32 of `A-Z a-z 0-9 - _`: in metrics, health and the shard's directory name.
    pub name: String,
    /// Kafka: the shard's partition of `log.topic` (required, one per shard).
    pub partition: Option<i32>,
    pub symbols: Vec<SymbolSpec>,
}

fn default_hash_every() -> u64 {
    100_000
}

/// The log backend: `kind = "journal"` (the embedded file journal, the default) or
/// `kind = "kafka"` (a partition every site of a three-site deployment reads).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub kind: String,
    /// Journal: `"batch"` (fsync every group commit) or a number of milliseconds between
    /// fsyncs.
    #[serde(default = "default_fsync")]
    pub fsync: toml::Value,
    /// Kafka: `host:port,...` of the cluster's brokers (at least one per site).
    pub bootstrap_servers: Option<String>,
    /// Kafka: the commands topic (`<prefix>.commands`).
    pub topic: Option<String>,
    /// Kafka, a site of one shard: its partition (default 0). With `[[shards]]`, each shard
    /// names its own.
    pub partition: Option<i32>,
    /// Kafka: a produce not acknowledged by then has an unknown fate (the client resends).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u32,
    /// Kafka, development only: trade on a topic without replication factor 3,
    /// `min.insync.replicas` 2 and unclean leader election off (a single tansu broker).
    #[serde(default)]
    pub allow_unsafe_topic: bool,
}

fn default_fsync() -> toml::Value {
    toml::Value::String("batch".into())
}

fn default_delivery_timeout_ms() -> u32 {
    30_000
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            kind: "journal".into(),
            fsync: default_fsync(),
            bootstrap_servers: None,
            topic: None,
            partition: None,
            delivery_timeout_ms: default_delivery_timeout_ms(),
            allow_unsafe_topic: false,
        }
    }
}

impl LogSection {
    /// The backend of a shard whose Kafka partition, if any, is `partition`.
    fn backend(&self, partition: Option<i32>) -> anyhow::Result<LogBackend> {
        match self.kind.as_str() {
            "journal" => {
                let fsync = match &self.fsync {
                    toml::Value::String(s) if s == "batch" => FsyncPolicy::PerBatch,
                    toml::Value::Integer(ms) if (1..=60_000).contains(ms) => {
                        FsyncPolicy::Interval { ms: *ms as u32 }
                    }
                    other => bail!(
                        "log.fsync {other}: \"batch\" or a number of milliseconds from 1 to 60000"
                    ),
                };
                if partition.is_some() {
                    bail!("a partition is set, but the log is the journal: partitions are Kafka's");
                }
                Ok(LogBackend::Journal { fsync })
            }
            "kafka" => {
                let (Some(servers), Some(topic)) = (&self.bootstrap_servers, &self.topic) else {
                    bail!("log.kind \"kafka\" needs log.bootstrap_servers and log.topic");
                };
                let Some(partition) = partition.filter(|p| *p >= 0) else {
                    bail!("partition {partition:?}: a partition number");
                };
                Ok(LogBackend::Kafka(KafkaConfig {
                    delivery_timeout_ms: self.delivery_timeout_ms,
                    allow_unsafe_topic: self.allow_unsafe_topic,
                    ..KafkaConfig::new(servers, topic, partition)
                }))
            }
            other => bail!("log.kind {other:?}: \"journal\" or \"kafka\""),
        }
    }
}

/// Listen addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub binary: SocketAddr,
    /// Health, Prometheus metrics and market data (HTTP and WebSocket).
    pub http: Option<SocketAddr>,
    /// FIX 4.4 order entry.
    pub fix: Option<SocketAddr>,
}

/// Snapshots: how often and how many to keep.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    pub every_records: u64,
    pub every_seconds: u64,
    pub keep: usize,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        let policy = SnapshotPolicy::default();
        SnapshotSection {
            every_records: policy.every_records,
            every_seconds: policy.every_seconds,
            keep: 3,
        }
    }
}

/// Flags that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub site: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub binary_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub fix_listen: Option<SocketAddr>,
}

impl NodeConfig {
    /// Reads `path`; a relative `data_dir` is taken relative to the file's directory.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: NodeConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }

    pub fn apply(&mut self, overrides: Overrides) {
        if let Some(site) = overrides.site {
            self.site = site;
        }
        if let Some(dir) = overrides.data_dir {
            self.data_dir = dir;
        }
        if let Some(addr) = overrides.binary_listen {
            self.listen.binary = addr;
        }
        if let Some(addr) = overrides.http_listen {
            self.listen.http = Some(addr);
        }
        if let Some(addr) = overrides.fix_listen {
            self.listen.fix = Some(addr);
        }
    }

    /// The site this configuration describes, checked.
    pub fn site_config(&self) -> anyhow::Result<SiteConfig> {
        if self.engine.hash_seed == 0 {
            bail!(
                "engine.hash_seed is 0: set a secret random 64-bit value per deployment \
                 (for example `od -An -N8 -tu8 /dev/urandom`)"
            );
        }
        Ok(SiteConfig {
            name: self.site.clone(),
            data_dir: self.data_dir.clone(),
            engine: self.engine,
            runner: self.runner,
            shards: self.shards()?,
            snapshots: SnapshotPolicy {
                every_records: self.snapshots.every_records,
                every_seconds: self.snapshots.every_seconds,
            },
            snapshots_keep: self.snapshots.keep.max(1),
            hash_every: self.hash_every,
            members: self.members.clone(),
            binary_listen: self.listen.binary,
            http_listen: self.listen.http,
            binary: self.binary,
            market_data: self.market_data,
            fix_listen: self.listen.fix,
            fix: self.fix.clone(),
        })
    }
}

impl NodeConfig {
    /// The shards: `[[symbols]]` as the only one, or each of `[[shards]]` (the site checks
    /// the symbols: none listed twice, none missing).
    fn shards(&self) -> anyhow::Result<Vec<ShardConfig>> {
        let kafka = self.log.kind == "kafka";
        match (self.symbols.is_empty(), self.shards.is_empty()) {
            (false, false) => bail!("list the symbols under [[symbols]] or [[shards]], not both"),
            (true, true) => bail!("no symbols: list them under [[symbols]] or [[shards]]"),
            (false, true) => {
                let partition = self.log.partition.or(kafka.then_some(0));
                let log = self.log.backend(partition)?;
                Ok(vec![ShardConfig::only(log, self.symbols.clone())])
            }
            (true, false) => {
                if self.log.partition.is_some() {
                    bail!("log.partition is for a site of one shard: give each shard its own");
                }
                let mut partitions = std::collections::HashSet::new();
                self.shards
                    .iter()
                    .map(|shard| {
                        let name = &shard.name;
                        let valid = (1..=32).contains(&name.len())
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if !valid {
                            bail!("shard name {name:?}: 1 to 32 of A-Z a-z 0-9 - _");
                        }
                        if kafka && !shard.partition.is_some_and(|p| partitions.insert(p)) {
                            bail!("shard {name}: each shard needs a partition of its own");
                        }
                        let log = self
                            .log
                            .backend(shard.partition)
                            .with_context(|| format!("shard {name}"))?;
                        Ok(ShardConfig {
                            name: name.clone(),
                            dir: Path::new("shards").join(name),
                            log,
                            symbols: shard.symbols.clone(),
                        })
                    })
                    .collect()
            }
        }
    }
}

/// Runs the node until SIGTERM or Ctrl-C, then shuts it down cleanly.
pub fn run(config: &NodeConfig) -> anyhow::Result<()> {
    let site_config = config.site_config()?;
    let names: Vec<String> = site_config.shards.iter().map(|s| s.name.clone()).collect();
    let site = crate::site::Site::start(site_config)?;
    for recovered in &site.recovered {
        eprintln!(
            "node {}: shard {} recovered at log position {} (snapshot {:?}, {} records replayed)",
            config.site,
            recovered.shard,
            recovered.position,
            recovered.snapshot,
            recovered.replayed
        );
    }
    eprintln!(
        "node {}: binary order entry on {}",
        config.site,
        site.binary_addr()
    );
    if let Some(addr) = site.http_addr() {
        eprintln!(
            "node {}: http on {addr} (/health, /metrics, /v1/book/SYMBOL, /ws)",
            config.site
        );
    }
    if let Some(addr) = site.fix_addr() {
        eprintln!("node {}: FIX 4.4 on {addr}", config.site);
    }
    if let Some(failure) = wait_for_termination(&site)? {
        bail!("node {}: {failure}", config.site);
    }
    eprintln!("node {}: stopping", config.site);
    for (name, end) in names.iter().zip(site.shutdown()?) {
        eprintln!(
            "node {}: shard {name} stopped cleanly at log position {end}",
            config.site
        );
    }
    Ok(())
}

/// Blocks until SIGTERM or SIGINT (`None`), or until the site fails (why).
fn wait_for_termination(site: &crate::site::Site) -> anyhow::Result<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let failed = async {
            loop {
                if let Some(failure) = site.failure() {
                    return failure;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = term.recv() => Ok(None),
            _ = tokio::signal::ctrl_c() => Ok(None),
            failure = failed => Ok(Some(failure)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example configuration stays valid.
    #[test]
    fn the_example_config_loads_and_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node.toml");
        let config = NodeConfig::load(&path).unwrap();
        let site = config.site_config().unwrap();
        assert_eq!(site.name, "cloud-a");
        assert_eq!(site.members.len(), 2);
        assert_eq!(site.shards.len(), 1);
        assert_eq!(site.shards[0].symbols.len(), 2);
        assert!(site.fix_listen.is_some() && site.http_listen.is_some());
        assert!(matches!(
            site.runner.wait,
            engine::runner::WaitStrategy::Park { park_us: 20, .. }
        ));
    }

    /// The three-site example runs on Kafka with the durability check on.
    #[test]
    fn the_kafka_example_config_loads_and_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node-kafka.toml");
        let site = NodeConfig::load(&path).unwrap().site_config().unwrap();
        match &site.shards[0].log {
            LogBackend::Kafka(kafka) => {
                assert_eq!(kafka.topic, "exchange.commands");
                assert!(!kafka.allow_unsafe_topic);
            }
            other => panic!("expected Kafka, got {other:?}"),
        }
    }

    /// The two-shard example: each shard in its own directory, symbols routed to it.
    #[test]
    fn the_sharded_example_config_loads_and_checks() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node-shards.toml");
        let mut config = NodeConfig::load(&path).unwrap();
        let site = config.site_config().unwrap();
        let shards: Vec<(&str, &Path, usize)> = site
            .shards
            .iter()
            .map(|s| (s.name.as_str(), s.dir.as_path(), s.symbols.len()))
            .collect();
        assert_eq!(
            shards,
            [
                ("btc", Path::new("shards/btc"), 1),
                ("alts", Path::new("shards/alts"), 2)
            ]
        );
        // Kafka needs a partition per shard, each its own.
        config.log.kind = "kafka".into();
        config.log.bootstrap_servers = Some("127.0.0.1:9092".into());
        config.log.topic = Some("exchange.commands".into());
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("a partition of its own"), "{err}");
        config.shards[0].partition = Some(3);
        config.shards[1].partition = Some(3);
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("shard alts"), "{err}");
        config.shards[1].partition = Some(4);
        let site = config.site_config().unwrap();
        assert!(matches!(&site.shards[1].log, LogBackend::Kafka(k) if k.partition == 4));
        // Names become directories: no path tricks.
        config.shards[0].name = "../x".into();
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("shard name"), "{err}");
        // Not both layouts at once.
        config.shards[0].name = "btc".into();
        config.symbols = config.shards[0].symbols.clone();
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_kafka_log_without_brokers_is_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node-kafka.toml");
        let mut config = NodeConfig::load(&path).unwrap();
        config.log.bootstrap_servers = None;
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("log.bootstrap_servers"), "{err}");
        config.log.kind = "zookeeper".into();
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("log.kind"), "{err}");
    }

    #[test]
    fn a_bad_fsync_setting_is_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/node.toml");
        let mut config = NodeConfig::load(&path).unwrap();
        config.log.fsync = toml::Value::String("sometimes".into());
        let err = config.site_config().unwrap_err().to_string();
        assert!(err.contains("log.fsync"), "{err}");
    }
}

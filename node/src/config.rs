//! A node's configuration: the TOML file (`config/node.toml`), flags over it, and the checked
//! plan of shards the node runs.
//!
//! One type, [`NodeConfig`], is what a file holds, what tests and the demo build in code, and
//! what [`crate::Node::start`] takes. [`NodeConfig::plan`] checks it and says which shard holds
//! which symbols, in which directory, on which log.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use engine::runner::{RunnerConfig, WaitStrategy};

/// How a matcher waits when idle on a machine with fewer cores than busy threads (tests,
/// drills, the demo: several sites, or a site and its load generator, on two cores): spin
/// briefly, then park 20 µs. Spinning or yielding in a loop starves the threads it waits for
/// and every other process: in a drill on tansu at 300 orders/s, each of the three nodes'
/// matchers, yielding, took about 75% of a core, and tests beside it timed out.
pub const SHARED_CORES_WAIT: WaitStrategy = WaitStrategy::Park {
    spins: 200,
    yields: 20,
    park_us: 20,
};
use engine::{AddSymbol, EngineConfig, Price, Qty, Symbol, PUBLIC_HASH_SEED};
use gateway::hub::SHARDS_MAX;
use gateway::{BinaryConfig, FixConfig, MdConfig, Member};
use replicator::log::LogConfig;
use replicator::recovery::SnapshotPolicy;
use serde::{Deserialize, Serialize};

/// A node: one site's process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The site's name: `cloud-a`, `cloud-b`, `metal`... (in hash reports, metrics, logs).
    pub site: String,
    /// Holds `hashes.jsonl`, the FIX session store and the shards' journals and snapshots
    /// (relative to the config file when loaded from one).
    pub data_dir: PathBuf,
    /// Every shard's log: the embedded journal (the default) or Kafka.
    #[serde(default)]
    pub log: LogConfig,
    pub listen: ListenSection,
    /// Every shard's engine capacities. `hash_seed` must be a secret (it keys the engine's
    /// hash tables against crafted order ids): the node refuses 0 and the public default,
    /// which a seed left out takes.
    pub engine: EngineConfig,
    #[serde(default)]
    pub runner: RunnerConfig,
    #[serde(default)]
    pub snapshots: SnapshotSection,
    /// State hashes every this many records of a shard, for `exchange verify` and, on Kafka,
    /// the divergence fence: published to the hashes topic (`<prefix>.hashes`, which must
    /// exist) and compared with the other sites' ([`crate::fence`]). 0: none, no fence.
    #[serde(default = "default_hash_every")]
    pub hash_every: u64,
    /// While this site submits nothing, it sends `clock` to its shards' logs so that its
    /// commands are never more than this many milliseconds apart (at most three quarters of
    /// it, see `idle_cadence`): log time moves in a quiet market and dead-man's switches fire
    /// at most this late (0: never; for tests that count log records).
    #[serde(default = "default_clock_every_ms")]
    pub clock_every_ms: u64,
    /// On a Kafka log, a shard that reads more than this many milliseconds behind (the log's
    /// committed end was where it reads longer ago than that), or has not yet read the end it
    /// saw at start, refuses new
    /// orders, amends and status questions with `catching_up`, and `/health` says so: its
    /// members get a late answer here and a prompt one at another site (0: never).
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    /// On a Kafka log, a site whose clock runs more than this many milliseconds, plus
    /// `max_lag_ms`, ahead of the log's time (as the other sites' records say it is) refuses
    /// everything with `clock_skew`, and `/health` says so: on a broker that keeps producers'
    /// create times what it stamped would move every site's log time (0: never). The lag is
    /// added because a site may read up to `max_lag_ms` behind its log without catching up,
    /// and the log's time it knows is then that old.
    #[serde(default = "default_max_clock_ahead_ms")]
    pub max_clock_ahead_ms: u64,
    #[serde(default)]
    pub binary: BinaryConfig,
    #[serde(default)]
    pub market_data: MdConfig,
    /// FIX settings (`store_dir` relative to `data_dir`); served when `listen.fix` is set.
    #[serde(default)]
    pub fix: FixConfig,
    /// Members with their tokens in clear: development only (`allow_plaintext`).
    #[serde(default)]
    pub members: Vec<Member>,
    /// The members file: each member's name, account and token SHA-256, read again whenever
    /// it changes (`node::credentials`); relative to the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_file: Option<PathBuf>,
    /// The symbols of a site of one shard (its journal and snapshots directly in `data_dir`).
    #[serde(default)]
    pub symbols: Vec<SymbolSpec>,
    /// Or several shards, each its own log and engine (in `data_dir/shards/NAME`). Every site
    /// of a deployment lists them in the same order: a shard's number is its place here.
    #[serde(default)]
    pub shards: Vec<ShardSection>,
    /// The operator's admin endpoint (`/v1/admin/` on the HTTP listener); none without it.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// TLS on every member-facing listener: binary order entry, FIX, HTTP and WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// Serve those listeners in plaintext: only when set (development on one machine, or
    /// behind a proxy that terminates TLS). Without `[tls]` and without this, the node does
    /// not start.
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// The listeners' certificate chain (PEM, the site's certificate first) and its private key
/// (PEM), relative to the config file when loaded from one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The operator's admin endpoint: trading status and kill switches (`node::admin`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Holds the operator's bearer token, or `sha256:` and its digest so that the node's disk
    /// holds no usable secret (relative to the config file when loaded from one); read at
    /// start. Not a member's credential: members never use the HTTP listener.
    pub token_file: PathBuf,
}

impl AdminSection {
    /// The token in `token_file`, without surrounding whitespace: an error if the file cannot
    /// be read or holds no token.
    pub fn read_token(&self) -> anyhow::Result<String> {
        let path = self.token_file.display();
        let text = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("admin.token_file: reading {path}"))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("admin.token_file: {path} holds no token");
        }
        Ok(token.to_string())
    }
}

/// One shard of a site of several.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSection {
    /// 1 to 32 of `A-Z a-z 0-9 - _`: in metrics, health and the shard's directory name.
    pub name: String,
    /// Kafka: the shard's partition of `log.topic` (required, one per shard).
    pub partition: Option<i32>,
    pub symbols: Vec<SymbolSpec>,
}

/// A symbol the site lists at start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSpec {
    pub symbol: String,
    pub tick: String,
    pub lot: String,
}

/// Listen addresses.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub binary: SocketAddr,
    /// Health, Prometheus metrics and market data (HTTP and WebSocket).
    pub http: Option<SocketAddr>,
    /// FIX 4.4 order entry.
    pub fix: Option<SocketAddr>,
}

/// Snapshots: how often, and how many to keep per shard.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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

impl SnapshotSection {
    pub fn policy(&self) -> SnapshotPolicy {
        SnapshotPolicy {
            every_records: self.every_records,
            every_seconds: self.every_seconds,
        }
    }
}

fn default_hash_every() -> u64 {
    100_000
}

/// A node's idle `clock` interval unless its file says otherwise.
pub const DEFAULT_CLOCK_EVERY_MS: u64 = 1_000;

fn default_clock_every_ms() -> u64 {
    DEFAULT_CLOCK_EVERY_MS
}

/// How far behind its Kafka log a site may read before it refuses orders (as long as the log
/// may go unanswered before the site calls it unreachable).
pub const DEFAULT_MAX_LAG_MS: u64 = 1_000;

fn default_max_lag_ms() -> u64 {
    DEFAULT_MAX_LAG_MS
}

/// How far ahead of its log's time a site's clock may run, beyond `max_lag_ms`, before it
/// refuses orders: well above a delivery between sites, well below the dead-man's switches'
/// timeouts.
pub const DEFAULT_MAX_CLOCK_AHEAD_MS: u64 = 1_000;

fn default_max_clock_ahead_ms() -> u64 {
    DEFAULT_MAX_CLOCK_AHEAD_MS
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

/// One shard as the node runs it: checked, its symbols parsed.
#[derive(Clone, Debug)]
pub struct ShardPlan {
    /// In metrics, health and logs.
    pub name: String,
    /// Holds the shard's `journal/` and `snapshots/`, relative to `data_dir` (empty: the
    /// `data_dir` itself, as a site of one shard keeps them).
    pub dir: PathBuf,
    /// The shard's log (on Kafka, with its partition).
    pub log: LogConfig,
    pub symbols: Vec<AddSymbol>,
}

/// The shards, in configuration order, and the shard of every symbol.
#[derive(Clone, Debug)]
pub struct Plan {
    pub shards: Vec<ShardPlan>,
    pub shard_of: HashMap<Symbol, usize>,
}

/// A random hash seed (from the standard library's random per-process keys), never 0 or the
/// public default: the tests' and drills' sites draw their own, as a deployment sets its own.
pub fn random_hash_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    if is_secret(seed) {
        seed
    } else {
        1
    }
}

/// Whether `seed` can key a node's hash tables: neither 0 nor the public default.
fn is_secret(seed: u64) -> bool {
    ![0, PUBLIC_HASH_SEED].contains(&seed)
}

/// Why a configuration file does not parse, and where (line and column), without the
/// offending text: a line may hold a member's token, a FIX password or a hash seed.
pub fn toml_error(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return redact(err.message().trim_end());
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |k| k + 1) + 1;
    format!(
        "{} (line {line}, column {column})",
        redact(err.message().trim_end())
    )
}

/// The parser's message with every value it quotes left out (strings in double quotes,
/// numbers and characters in backticks after their kind); the names of fields stay.
fn redact(message: &str) -> String {
    let mut out = message.to_string();
    for (lead, open, close) in [
        ("", '"', '"'),
        ("integer ", '`', '`'),
        ("floating point ", '`', '`'),
        ("character ", '`', '`'),
    ] {
        let mut from = 0;
        while let Some(at) = out[from..].find(&format!("{lead}{open}")) {
            let start = from + at + lead.len() + 1;
            let Some(len) = out[start..].find(close) else {
                break;
            };
            out.replace_range(start..start + len, "…");
            from = start + '…'.len_utf8() + 1;
        }
    }
    out
}

impl NodeConfig {
    /// Reads `path`; every relative path in it (`data_dir`, `admin.token_file`,
    /// `members_file`, `[tls]`'s and `[log.security]`'s files) is taken relative to the file's
    /// directory.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: NodeConfig = toml::from_str(&text)
            .map_err(|err| anyhow!("parsing {}: {}", path.display(), toml_error(&text, &err)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut paths: Vec<&mut PathBuf> = vec![&mut config.data_dir];
        paths.extend(config.admin.as_mut().map(|admin| &mut admin.token_file));
        paths.extend(config.members_file.as_mut());
        if let Some(tls) = &mut config.tls {
            paths.extend([&mut tls.cert_file, &mut tls.key_file]);
        }
        if let LogConfig::Kafka { security, .. } = &mut config.log {
            paths.extend(security.paths_mut());
        }
        for path in paths.into_iter().filter(|path| path.is_relative()) {
            *path = base.join(&*path);
        }
        Ok(config)
    }

    /// A small site for tests: named `site`, in `dir`, for `members`; small engine
    /// capacities and one symbol, BTC-USD (tick 0.5, lot 1), on the journal with fsync per
    /// batch; the binary server on a free loopback port, in plaintext (`allow_plaintext`:
    /// loopback only); no HTTP or FIX listener, snapshots
    /// at the defaults (2 kept), no hash reports and no idle `clock`s; the matcher parks
    /// when idle ([`SHARED_CORES_WAIT`]: tests and drills run several sites on two cores).
    pub fn for_tests(site: &str, dir: &Path, members: Vec<Member>) -> NodeConfig {
        NodeConfig {
            site: site.into(),
            data_dir: dir.to_path_buf(),
            log: LogConfig::default(),
            listen: ListenSection {
                binary: SocketAddr::from(([127, 0, 0, 1], 0)),
                http: None,
                fix: None,
            },
            engine: EngineConfig {
                orders_max: 1 << 12,
                retired_ids_max: 1 << 12,
                levels_max: 1 << 10,
                levels_per_side_max: 1 << 9,
                hash_seed: random_hash_seed(),
                ..EngineConfig::default()
            },
            runner: RunnerConfig {
                wait: SHARED_CORES_WAIT,
                ..RunnerConfig::default()
            },
            snapshots: SnapshotSection {
                keep: 2,
                ..SnapshotSection::default()
            },
            hash_every: 0,
            clock_every_ms: 0,
            max_lag_ms: DEFAULT_MAX_LAG_MS,
            max_clock_ahead_ms: DEFAULT_MAX_CLOCK_AHEAD_MS,
            binary: BinaryConfig::default(),
            market_data: MdConfig::default(),
            fix: FixConfig::default(),
            members,
            members_file: None,
            symbols: vec![SymbolSpec {
                symbol: "BTC-USD".into(),
                tick: "0.5".into(),
                lot: "1".into(),
            }],
            shards: Vec::new(),
            admin: None,
            tls: None,
            allow_plaintext: true,
        }
    }

    /// Applies the flags given on the command line.
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

    /// The shards the node runs, checked: the secret hash seed is set; one layout (the
    /// `[[symbols]]` of one shard, or `[[shards]]`); 1 to [`SHARDS_MAX`] shards with valid,
    /// distinct names, each with symbols; no symbol twice; on Kafka a partition per shard.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        if !is_secret(self.engine.hash_seed) {
            bail!(
                "engine.hash_seed is missing, 0 or the public default: set a secret random \
                 64-bit value (for example `od -An -N8 -tu8 /dev/urandom`); sites may share it \
                 or not, it changes no behaviour and no state hash"
            );
        }
        self.check_dedup_window()?;
        let sections = self.shard_sections()?;
        if !(1..=SHARDS_MAX).contains(&sections.len()) {
            bail!(
                "a site runs 1 to {SHARDS_MAX} shards, not {}",
                sections.len()
            );
        }
        let mut shard_of = HashMap::new();
        let mut shards: Vec<ShardPlan> = Vec::new();
        for (at, (section, log)) in sections.into_iter().enumerate() {
            let plan = self.shard_plan(section, log)?;
            if let Some(other) = shards.iter().find(|o| o.name == plan.name) {
                bail!(
                    "shards {:?} and {:?} have the same name",
                    other.name,
                    plan.name
                );
            }
            for add in &plan.symbols {
                if shard_of.insert(add.symbol, at).is_some() {
                    bail!("symbol {} is listed twice", add.symbol);
                }
            }
            shards.push(plan);
        }
        Ok(Plan { shards, shard_of })
    }

    /// On Kafka, a dedup window (other than 0: none) longer than the longest the log may take
    /// to land a command plus the resend margin: the sites take a resent order only when it is
    /// that much younger than the window, so a shorter one would refuse every resend as
    /// stale. (The journal lands a command at once; a short window there is a benchmark's
    /// choice, `exchange demo`'s 0.1 s.)
    fn check_dedup_window(&self) -> anyhow::Result<()> {
        let window_ns = self.engine.dedup_window_ns;
        let delay = self.log.longest_delay();
        if delay.is_zero() {
            return Ok(());
        }
        let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        // The sites' own rule: even a resend sent just now would be too old.
        let horizon_ns = window_ns.saturating_sub(delay_ns);
        if window_ns > 0 && gateway::desk::resend_too_old(0, horizon_ns) {
            bail!(
                "engine.dedup_window_ns ({:.1} s) must be longer than the log's longest \
                 delivery ({:.1} s: its delivery and request timeouts) plus 5 s, or every \
                 resent order is refused as stale; 0 turns deduplication off",
                window_ns as f64 / 1e9,
                delay.as_secs_f64()
            );
        }
        Ok(())
    }

    /// Each shard's section and log: `[[symbols]]` as the only one (named `0`), or each of
    /// `[[shards]]`.
    fn shard_sections(&self) -> anyhow::Result<Vec<(ShardSection, LogConfig)>> {
        let kafka = self.log.kind() == "kafka";
        match (self.symbols.is_empty(), self.shards.is_empty()) {
            (false, false) => bail!("list the symbols under [[symbols]] or [[shards]], not both"),
            (true, true) => bail!("no symbols: list them under [[symbols]] or [[shards]]"),
            (false, true) => {
                let only = ShardSection {
                    name: "0".into(),
                    partition: self.log.partition(),
                    symbols: self.symbols.clone(),
                };
                let log = self.log.with_partition(only.partition.unwrap_or(0));
                Ok(vec![(only, log)])
            }
            (true, false) => {
                if self.log.partition().is_some() {
                    bail!("log.partition is for a site of one shard: give each shard its own");
                }
                let mut partitions = HashSet::new();
                let mut sections = Vec::new();
                for shard in &self.shards {
                    let log = match (kafka, shard.partition) {
                        (false, None) => self.log.clone(),
                        (false, Some(_)) => bail!(
                            "shard {}: a partition is set, but the log is the journal: \
                             partitions are Kafka's",
                            shard.name
                        ),
                        (true, Some(p)) if p >= 0 && partitions.insert(p) => {
                            self.log.with_partition(p)
                        }
                        (true, _) => {
                            bail!(
                                "shard {}: each shard needs a partition of its own",
                                shard.name
                            )
                        }
                    };
                    sections.push((shard.clone(), log));
                }
                Ok(sections)
            }
        }
    }

    /// One shard, checked: its name (a directory under `shards/` when there are several),
    /// its symbols parsed.
    fn shard_plan(&self, section: ShardSection, log: LogConfig) -> anyhow::Result<ShardPlan> {
        let name = section.name;
        let only = self.shards.is_empty();
        let valid = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            bail!("shard name {name:?}: 1 to 32 of A-Z a-z 0-9 - _");
        }
        if section.symbols.is_empty() {
            bail!("shard {name:?} lists no symbol");
        }
        let symbols = section
            .symbols
            .iter()
            .map(SymbolSpec::parse)
            .collect::<anyhow::Result<_>>()?;
        let dir = if only {
            PathBuf::new()
        } else {
            Path::new("shards").join(&name)
        };
        Ok(ShardPlan {
            name,
            dir,
            log,
            symbols,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(name)
    }

    fn example(name: &str) -> NodeConfig {
        NodeConfig::load(&example_path(name)).unwrap()
    }

    /// Each example has its own seed, neither 0 nor the public default.
    #[test]
    fn the_examples_do_not_share_a_hash_seed() {
        let seeds: HashSet<u64> = ["node.toml", "node-kafka.toml", "node-shards.toml"]
            .into_iter()
            .map(|name| example(name).engine.hash_seed)
            .collect();
        assert_eq!(seeds.len(), 3, "{seeds:?}");
        assert!(!seeds.contains(&0) && !seeds.contains(&PUBLIC_HASH_SEED));
    }

    /// The shipped example configuration stays valid.
    #[test]
    fn the_example_config_loads_and_checks() {
        let config = example("node.toml");
        let plan = config.plan().unwrap();
        assert_eq!(config.site, "cloud-a");
        assert_eq!(config.members.len(), 2);
        assert_eq!(plan.shards.len(), 1);
        assert_eq!(plan.shards[0].symbols.len(), 2);
        assert!(config.listen.fix.is_some() && config.listen.http.is_some());
        assert!(matches!(
            config.runner.wait,
            engine::runner::WaitStrategy::Park { park_us: 20, .. }
        ));
    }

    /// The three-site example runs on Kafka with the durability check on.
    #[test]
    fn the_kafka_example_config_loads_and_checks() {
        let plan = example("node-kafka.toml").plan().unwrap();
        let kafka = plan.shards[0].log.kafka().expect("a Kafka log");
        assert_eq!(kafka.topic, "exchange.commands");
        assert_eq!(kafka.partition, 0);
        assert!(!kafka.allow_unsafe_topic);
    }

    /// A dedup window no longer than the log's longest delivery plus the resend margin would
    /// refuse every resent order as stale: refused, naming both; 0 (no dedup) is allowed.
    #[test]
    fn a_dedup_window_too_short_for_the_logs_delivery_is_refused() {
        let mut config = example("node-kafka.toml");
        config.engine.dedup_window_ns = 30_000_000_000;
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("engine.dedup_window_ns (30.0 s)"), "{err}");
        assert!(err.contains("(30.5 s:"), "{err}");
        config.engine.dedup_window_ns = 0;
        config.plan().unwrap();
        config.engine.dedup_window_ns = 60_000_000_000;
        config.plan().unwrap();
        // The journal lands a command at once: a benchmark's short window is its choice.
        let mut journal = example("node.toml");
        journal.engine.dedup_window_ns = 100_000_000;
        journal.plan().unwrap();
    }

    /// The two-shard example: each shard in its own directory, symbols routed to it.
    #[test]
    fn the_sharded_example_config_loads_and_checks() {
        let mut config = example("node-shards.toml");
        let plan = config.plan().unwrap();
        let shards: Vec<(&str, &Path, usize)> = plan
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
        config.log = LogConfig::Kafka {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic: "exchange.commands".into(),
            partition: None,
            delivery_timeout_ms: 30_000,
            request_timeout_ms: replicator::kafka::DEFAULT_REQUEST_TIMEOUT_MS,
            allow_unsafe_topic: false,
            security: Default::default(),
        };
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("a partition of its own"), "{err}");
        config.shards[0].partition = Some(3);
        config.shards[1].partition = Some(3);
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("shard alts"), "{err}");
        config.shards[1].partition = Some(4);
        let plan = config.plan().unwrap();
        assert_eq!(plan.shards[1].log.kafka().unwrap().partition, 4);
        // Names become directories: no path tricks.
        config.shards[0].name = "../x".into();
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("shard name"), "{err}");
        // Not both layouts at once.
        config.shards[0].name = "btc".into();
        config.symbols = config.shards[0].symbols.clone();
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
    }

    /// A journal has no partitions, and a site of several shards gives each its own.
    #[test]
    fn partitions_are_kafkas_and_per_shard() {
        let mut config = example("node-shards.toml");
        config.shards[0].partition = Some(1);
        let err = config.plan().unwrap_err().to_string();
        assert!(err.contains("partitions are Kafka's"), "{err}");
        let mut config = example("node-kafka.toml");
        config.shards = vec![ShardSection {
            name: "btc".into(),
            partition: Some(1),
            symbols: std::mem::take(&mut config.symbols),
        }];
        config.log = config.log.with_partition(0);
        let err = config.plan().unwrap_err().to_string();
        assert!(
            err.contains("log.partition is for a site of one shard"),
            "{err}"
        );
    }

    #[test]
    fn a_kafka_log_without_brokers_is_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node-kafka.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let without: String = text
            .lines()
            .filter(|line| !line.starts_with("bootstrap_servers"))
            .map(|line| format!("{line}\n"))
            .collect();
        let err = toml::from_str::<NodeConfig>(&without)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bootstrap_servers"), "{err}");
        let zookeeper = text.replace("kind = \"kafka\"", "kind = \"zookeeper\"");
        let err = toml::from_str::<NodeConfig>(&zookeeper)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zookeeper"), "{err}");
    }

    #[test]
    fn a_bad_fsync_setting_is_named() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.toml");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("fsync = \"batch\""), "the example sets fsync");
        let bad = text.replace("fsync = \"batch\"", "fsync = \"sometimes\"");
        let err = toml::from_str::<NodeConfig>(&bad).unwrap_err().to_string();
        assert!(err.contains("fsync"), "{err}");
    }

    /// A configuration written out (as the drill writes its sites') reads back the same, and
    /// the shipped examples survive the trip too.
    #[test]
    fn a_config_written_out_reads_back_the_same() {
        let mut configs = vec![NodeConfig::for_tests("t", Path::new("data"), Vec::new())];
        for name in ["node.toml", "node-kafka.toml", "node-shards.toml"] {
            configs.push(example(name));
        }
        for config in configs {
            let text = toml::to_string(&config).unwrap();
            let back: NodeConfig = toml::from_str(&text).unwrap();
            assert_eq!(toml::to_string(&back).unwrap(), text);
            assert_eq!(
                back.plan().unwrap().shards.len(),
                config.plan().unwrap().shards.len()
            );
        }
    }

    /// `[admin]`: its token file is relative to the config file, read at start without
    /// surrounding whitespace; a missing or empty file is named; unknown keys are refused; no
    /// section, no admin.
    #[test]
    fn the_admin_section_names_a_token_file_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/node.toml"),
        )
        .unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, &text).unwrap();
        assert!(NodeConfig::load(&path).unwrap().admin.is_none());

        let with_admin = format!("{text}\n[admin]\ntoken_file = \"secrets/admin.token\"\n");
        std::fs::write(&path, &with_admin).unwrap();
        let admin = NodeConfig::load(&path).unwrap().admin.unwrap();
        assert_eq!(admin.token_file, dir.path().join("secrets/admin.token"));
        let err = format!("{:#}", admin.read_token().unwrap_err());
        assert!(err.contains("admin.token_file: reading"), "{err}");
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        std::fs::write(&admin.token_file, " \n").unwrap();
        let err = admin.read_token().unwrap_err().to_string();
        assert!(err.contains("holds no token"), "{err}");
        std::fs::write(&admin.token_file, "s3cret-operator\n").unwrap();
        assert_eq!(admin.read_token().unwrap(), "s3cret-operator");

        let absolute = with_admin.replace("secrets/admin.token", "/etc/exchange/admin.token");
        std::fs::write(&path, absolute).unwrap();
        let admin = NodeConfig::load(&path).unwrap().admin.unwrap();
        assert_eq!(admin.token_file, Path::new("/etc/exchange/admin.token"));

        let unknown = with_admin.replace("token_file", "token");
        let err = toml::from_str::<NodeConfig>(&unknown)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token"), "{err}");
    }

    /// The secret seed is required: 0 and the public default (a seed left out) are refused,
    /// without the value in the message; the tests' site draws its own.
    #[test]
    fn a_zero_or_public_hash_seed_is_refused() {
        let dir = Path::new("/nonexistent");
        let mut config = NodeConfig::for_tests("t", dir, Vec::new());
        assert_eq!(config.plan().unwrap().shards[0].name, "0");
        assert_ne!(
            NodeConfig::for_tests("u", dir, Vec::new()).engine.hash_seed,
            config.engine.hash_seed
        );
        for seed in [0, PUBLIC_HASH_SEED] {
            config.engine.hash_seed = seed;
            let err = config.plan().unwrap_err().to_string();
            assert!(
                err.contains("hash_seed is missing, 0 or the public"),
                "{err}"
            );
            assert!(!err.contains(&PUBLIC_HASH_SEED.to_string()), "{err}");
        }
    }

    /// A file that does not parse is named with where and why, never with its text: a line
    /// may hold a member's token or a FIX password.
    #[test]
    fn a_config_that_does_not_parse_is_reported_without_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let text = std::fs::read_to_string(example_path("node.toml")).unwrap();
        let broken = text.replacen("[[members]]", "[[members]]\ntoken = s3cret-of-a-member", 1);
        assert_ne!(broken, text, "the example has members");
        std::fs::write(&path, broken).unwrap();
        let err = format!("{:#}", NodeConfig::load(&path).unwrap_err());
        assert!(err.contains("node.toml") && err.contains("line"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_values_a_parse_error_quotes_are_left_out() {
        assert_eq!(
            redact("invalid type: string \"pa55\", expected u64"),
            "invalid type: string \"…\", expected u64"
        );
        assert_eq!(
            redact("invalid type: integer `42`, expected a string; unknown field `tokn`"),
            "invalid type: integer `…`, expected a string; unknown field `tokn`"
        );
        assert_eq!(redact("a \"dangling"), "a \"dangling");
    }
}

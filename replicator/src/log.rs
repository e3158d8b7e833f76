//! A shard's log behind one handle, whichever backend holds it.
//!
//! [`Log::open`] opens the file journal or the Kafka partition a [`LogConfig`] names;
//! [`Log::handle`] is what the gateway appends through and what health and metrics read
//! ([`LogHandle`]); [`Log::reader`] reads committed records; [`Log::close`] ends it cleanly.
//! This is the one place that knows which backend is behind a shard: a node never matches
//! on it.
//!
//! | | journal | Kafka |
//! |---|---|---|
//! | durable end | last fsync | the partition's high watermark (read every 250 ms) |
//! | `Busy` | the writer's queue is full | the producer's queue is full |
//! | `Unavailable` | the writer failed or closed | the leader silent for 1 s (but for idle clocks), or a produce error |
//! | close | write and fsync what is queued | flush the producer (up to the grace), read the end |

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use engine::Command;
use serde::{Deserialize, Serialize};

use crate::journal::{Appender, FsyncPolicy, Journal, JournalConfig, JournalError};
use crate::kafka::{DeliveryCounts, KafkaConfig, KafkaLog, KafkaLogError, Watermarks};
use crate::security::KafkaSecurity;
use crate::topic::TopicSafety;
use crate::{CommandLog, LogError, LogReader};

/// How often a Kafka partition's committed end is read (lag, reachability).
const WATERMARK_EVERY: Duration = Duration::from_millis(250);
/// A Kafka log whose partition leader has not answered for this long is unreachable
/// ([`LogHandle::available`] is false): the node refuses its members' commands as
/// unavailable instead of piling them up in the producer's queue, and `/health` says
/// `unavailable`. Four polls ([`WATERMARK_EVERY`]) missed: short,
/// so a member of a site cut off from the cluster is told within about a second and fails
/// over (it was 4 s, longer than the clients' 3 s acknowledgement timeout, so a partitioned
/// site's members learned only from silence); a leader election longer than this is
/// refused honestly at every site.
pub const KAFKA_UNREACHABLE_AFTER: Duration = Duration::from_secs(1);
/// How long opening a Kafka log waits for the cluster (metadata, the topic check, the first
/// watermark).
const KAFKA_OPEN_WAIT: Duration = Duration::from_secs(10);

/// Where a shard's log lives, as a node's configuration says it (`[log]`, `kind = ...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LogConfig {
    /// The embedded file journal, in the shard's directory (`journal/`).
    Journal {
        /// `"batch"` (fsync every group commit) or a number of milliseconds between fsyncs.
        #[serde(default = "per_batch", with = "fsync_setting")]
        fsync: FsyncPolicy,
    },
    /// A partition of a Kafka topic every site reads (three-site deployments).
    Kafka {
        /// `host:port,...` of the cluster's brokers (at least one per site).
        bootstrap_servers: String,
        /// The commands topic (`<prefix>.commands`).
        topic: String,
        /// The shard's partition. A site of one shard may leave it out (partition 0); with
        /// several shards each names its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<i32>,
        /// A produce not acknowledged by then has an unknown fate (the client resends).
        #[serde(default = "default_delivery_timeout_ms")]
        delivery_timeout_ms: u32,
        /// How long any request to a broker may take (500 ms by default; see
        /// `replicator::kafka::DEFAULT_REQUEST_TIMEOUT_MS` for the trade-off).
        #[serde(default = "default_request_timeout_ms")]
        request_timeout_ms: u32,
        /// Development only: trade on a topic without replication factor 3,
        /// `min.insync.replicas` 2, unclean leader election off and log-append timestamps (a
        /// single tansu broker), and take records' create times as the log's time.
        #[serde(default)]
        allow_unsafe_topic: bool,
        /// TLS and SASL to the brokers (`[log.security]`); plaintext when absent. Boxed: the
        /// journal's variant is much smaller.
        #[serde(default)]
        security: Box<KafkaSecurity>,
    },
}

fn per_batch() -> FsyncPolicy {
    FsyncPolicy::PerBatch
}

fn default_delivery_timeout_ms() -> u32 {
    crate::kafka::DEFAULT_DELIVERY_TIMEOUT_MS
}

fn default_request_timeout_ms() -> u32 {
    crate::kafka::DEFAULT_REQUEST_TIMEOUT_MS
}

impl Default for LogConfig {
    /// The embedded journal, fsync per batch.
    fn default() -> Self {
        LogConfig::Journal { fsync: per_batch() }
    }
}

impl LogConfig {
    /// The Kafka client settings of a Kafka log (partition 0 when none is named).
    pub fn kafka(&self) -> Option<KafkaConfig> {
        match self {
            LogConfig::Journal { .. } => None,
            LogConfig::Kafka {
                bootstrap_servers,
                topic,
                partition,
                delivery_timeout_ms,
                request_timeout_ms,
                allow_unsafe_topic,
                security,
            } => Some(KafkaConfig {
                delivery_timeout_ms: *delivery_timeout_ms,
                request_timeout_ms: *request_timeout_ms,
                allow_unsafe_topic: *allow_unsafe_topic,
                security: (**security).clone(),
                ..KafkaConfig::new(bootstrap_servers, topic, partition.unwrap_or(0))
            }),
        }
    }

    /// The partition this configuration names, if any.
    pub fn partition(&self) -> Option<i32> {
        match self {
            LogConfig::Journal { .. } => None,
            LogConfig::Kafka { partition, .. } => *partition,
        }
    }

    /// The same log on `partition` (Kafka; a journal has no partitions and is returned as it
    /// is).
    pub fn with_partition(&self, at: i32) -> LogConfig {
        let mut config = self.clone();
        if let LogConfig::Kafka { partition, .. } = &mut config {
            *partition = Some(at);
        }
        config
    }

    /// The longest a command queued now may take to land in the log: on Kafka
    /// [`KafkaConfig::longest_delay`]; nothing for the journal, whose writer stamps each
    /// record as it appends it.
    pub fn longest_delay(&self) -> Duration {
        self.kafka()
            .map_or(Duration::ZERO, |kafka| kafka.longest_delay())
    }

    /// Which log this is, the same at every site that reads it: `kafka:<topic>/<partition>`,
    /// or `journal` (a site's own). A snapshot is only of use to a site of the same log.
    pub fn identity(&self) -> String {
        match self {
            LogConfig::Journal { .. } => "journal".into(),
            LogConfig::Kafka {
                topic, partition, ..
            } => format!("kafka:{topic}/{}", partition.unwrap_or(0)),
        }
    }

    /// `"journal"` or `"kafka"`.
    pub fn kind(&self) -> &'static str {
        match self {
            LogConfig::Journal { .. } => "journal",
            LogConfig::Kafka { .. } => "kafka",
        }
    }
}

/// `fsync = "batch"` or `fsync = <milliseconds, 1 to 60000>`.
mod fsync_setting {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    use crate::journal::FsyncPolicy;

    const EXPECTED: &str = "\"batch\" or a number of milliseconds from 1 to 60000";

    pub fn serialize<S: Serializer>(policy: &FsyncPolicy, out: S) -> Result<S::Ok, S::Error> {
        match policy {
            FsyncPolicy::PerBatch => out.serialize_str("batch"),
            FsyncPolicy::Interval { ms } => out.serialize_u32(*ms),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<FsyncPolicy, D::Error> {
        input.deserialize_any(Setting)
    }

    struct Setting;

    impl Visitor<'_> for Setting {
        type Value = FsyncPolicy;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTED)
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<FsyncPolicy, E> {
            match text {
                "batch" => Ok(FsyncPolicy::PerBatch),
                other => Err(E::custom(format!("fsync {other:?}: {EXPECTED}"))),
            }
        }

        fn visit_u64<E: de::Error>(self, ms: u64) -> Result<FsyncPolicy, E> {
            match u32::try_from(ms) {
                Ok(ms) if (1..=60_000).contains(&ms) => Ok(FsyncPolicy::Interval { ms }),
                _ => Err(E::custom(format!("fsync {ms}: {EXPECTED}"))),
            }
        }

        fn visit_i64<E: de::Error>(self, ms: i64) -> Result<FsyncPolicy, E> {
            match u64::try_from(ms) {
                Ok(ms) => self.visit_u64(ms),
                Err(_) => Err(E::custom(format!("fsync {ms}: {EXPECTED}"))),
            }
        }
    }
}

/// Why the log did not take a command. Either way it never reached the log: the client may
/// send it again with the same client order id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The queue in front of the log is full: try again shortly.
    Busy,
    /// The log takes nothing now: the journal failed or closed, or the Kafka producer
    /// cannot take commands.
    Unavailable,
}

/// A shard's log, open.
pub struct Log {
    backend: Backend,
    /// What the start-up check found of a Kafka topic.
    safety: Option<TopicSafety>,
}

enum Backend {
    Journal(Journal),
    Kafka {
        log: Arc<KafkaLog>,
        watermarks: Arc<Watermarks>,
    },
}

/// The gateway's and the metrics' view of a [`Log`]: append, durable end, availability.
/// Cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    inner: Handle,
}

#[derive(Clone)]
enum Handle {
    Journal(Appender),
    Kafka {
        log: Arc<KafkaLog>,
        watermarks: Arc<Watermarks>,
    },
}

impl Log {
    /// Opens the log `config` names for site `site`: the journal in `dir/journal`
    /// (recovering it), or the Kafka partition (checking the topic is safe to trade on,
    /// unless allowed, and reading its committed end every 250 ms from now on; the site's
    /// records keyed with its name, its clock checked against the others').
    pub fn open(config: &LogConfig, dir: &Path, site: &str) -> Result<Log, LogError> {
        let mut safety = None;
        let backend = match config {
            LogConfig::Journal { fsync } => {
                let journal_config = JournalConfig {
                    fsync: *fsync,
                    ..JournalConfig::new(dir.join("journal"))
                };
                Backend::Journal(Journal::open(journal_config)?.0)
            }
            LogConfig::Kafka { .. } => {
                let mut kafka = config.kafka().expect("a Kafka log");
                kafka.site = Some(site.to_string());
                let (log, checked) = KafkaLog::open(kafka.clone(), KAFKA_OPEN_WAIT)?;
                safety = Some(checked);
                let watermarks = Watermarks::spawn(&kafka, KAFKA_OPEN_WAIT, WATERMARK_EVERY)?;
                Backend::Kafka {
                    log: Arc::new(log),
                    watermarks: Arc::new(watermarks),
                }
            }
        };
        Ok(Log { backend, safety })
    }

    /// What the start-up check found of the topic (Kafka only): problems a development topic
    /// was allowed with, what could not be checked, and its retention.
    pub fn topic_safety(&self) -> Option<&TopicSafety> {
        self.safety.as_ref()
    }

    /// A handle to append through and to read the log's state from.
    pub fn handle(&self) -> LogHandle {
        let inner = match &self.backend {
            Backend::Journal(journal) => Handle::Journal(journal.appender()),
            Backend::Kafka { log, watermarks } => Handle::Kafka {
                log: log.clone(),
                watermarks: watermarks.clone(),
            },
        };
        LogHandle { inner }
    }

    /// Stops taking commands and returns the log's committed end: the journal writes and
    /// syncs what is queued; the Kafka producer is flushed and the partition's end read, each
    /// for at most `grace` (the last watermark read if the cluster does not answer).
    pub fn close(self, grace: Duration) -> u64 {
        match self.backend {
            Backend::Journal(journal) => journal.close(),
            Backend::Kafka { log, watermarks } => {
                if let Err(err) = log.appender().flush(grace) {
                    eprintln!("log: flushing the Kafka producer: {err}");
                }
                log.end(grace).unwrap_or_else(|err| {
                    eprintln!("log: reading the partition's end: {err}; using the last read");
                    watermarks.high()
                })
            }
        }
    }
}

impl CommandLog for Log {
    type Reader = Box<dyn LogReader + Send>;

    fn append(&self, command: &Command) -> Result<(), LogError> {
        match &self.backend {
            Backend::Journal(journal) => Ok(journal.append(*command)?),
            Backend::Kafka { log, .. } => log.append(command),
        }
    }

    fn reader(&self, from: u64) -> Result<Self::Reader, LogError> {
        Ok(match &self.backend {
            Backend::Journal(journal) => Box::new(journal.reader(from)?),
            Backend::Kafka { log, .. } => Box::new(log.reader(from)?),
        })
    }

    fn durable_position(&self) -> Result<u64, LogError> {
        match &self.backend {
            Backend::Journal(journal) => Ok(journal.durable_position()),
            Backend::Kafka { log, .. } => log.durable_position(),
        }
    }

    fn first_position(&self) -> Result<u64, LogError> {
        match &self.backend {
            Backend::Journal(_) => Ok(0),
            Backend::Kafka { log, .. } => log.first_position(),
        }
    }
}

impl LogHandle {
    /// Queues `command` for the log, or says at once why not (never waits). On Kafka it
    /// queues whether or not the leader has answered lately ([`LogHandle::available`]): what
    /// may still go to a silent leader is the caller's policy.
    pub fn try_append(&self, command: &Command) -> Result<(), Refused> {
        match &self.inner {
            Handle::Journal(appender) => appender.try_append(*command).map_err(|err| match err {
                JournalError::Full => Refused::Busy,
                _ => Refused::Unavailable,
            }),
            // Whether or not the leader answered lately: what may go to a silent one is the
            // caller's policy, with `available` to tell.
            Handle::Kafka { log, .. } => log.appender().append(command).map_err(|err| match err {
                KafkaLogError::Full => Refused::Busy,
                _ => Refused::Unavailable,
            }),
        }
    }

    /// The log's committed end as last known.
    pub fn durable(&self) -> u64 {
        match &self.inner {
            Handle::Journal(appender) => appender.durable_position(),
            Handle::Kafka { watermarks, .. } => watermarks.high(),
        }
    }

    /// How far `clock_ns` (the site's clock, now) runs ahead of the log's time, in
    /// milliseconds, as the site's readers have found it; `None` on the journal (its writer
    /// stamps every record with its own clock) or with nothing to check against.
    pub fn clock_ahead_ms(&self, clock_ns: u64) -> Option<i64> {
        match &self.inner {
            Handle::Journal(_) => None,
            Handle::Kafka { log, .. } => log.clock().ahead_ms(clock_ns),
        }
    }

    /// Whether the log takes commands: the journal has not failed, the Kafka partition's
    /// leader answers.
    pub fn available(&self) -> bool {
        match &self.inner {
            Handle::Journal(appender) => !appender.failed(),
            Handle::Kafka { watermarks, .. } => watermarks.reachable(KAFKA_UNREACHABLE_AFTER),
        }
    }

    /// The longest a command queued now may take to land in the log
    /// ([`LogConfig::longest_delay`]).
    pub fn longest_delay(&self) -> Duration {
        match &self.inner {
            Handle::Journal(_) => Duration::ZERO,
            Handle::Kafka { log, .. } => log.longest_delay(),
        }
    }

    /// `"journal"` or `"kafka"`.
    pub fn kind(&self) -> &'static str {
        match &self.inner {
            Handle::Journal(_) => "journal",
            Handle::Kafka { .. } => "kafka",
        }
    }

    /// A Kafka log's produce outcomes so far (a journal has none to report).
    pub fn deliveries(&self) -> Option<&DeliveryCounts> {
        match &self.inner {
            Handle::Journal(_) => None,
            Handle::Kafka { log, .. } => Some(log.appender().counts()),
        }
    }
}

impl LogReader for Box<dyn LogReader + Send> {
    fn position(&self) -> u64 {
        (**self).position()
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(u64, Command),
    ) -> Result<usize, LogError> {
        (**self).poll(max, wait, each)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Section {
        log: LogConfig,
    }

    fn parse(text: &str) -> Result<LogConfig, String> {
        toml::from_str::<Section>(text)
            .map(|s| s.log)
            .map_err(|e| e.to_string())
    }

    fn wall_ns() -> u64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.unwrap().as_nanos() as u64
    }

    #[test]
    fn a_journal_takes_batch_or_milliseconds() {
        let batch = parse("[log]\nkind = \"journal\"\nfsync = \"batch\"\n").unwrap();
        assert_eq!(batch, LogConfig::default());
        let ms = parse("[log]\nkind = \"journal\"\nfsync = 5\n").unwrap();
        assert_eq!(
            ms,
            LogConfig::Journal {
                fsync: FsyncPolicy::Interval { ms: 5 }
            }
        );
        assert_eq!(parse("[log]\nkind = \"journal\"\n").unwrap(), batch);
        for bad in ["\"always\"", "0", "60001", "-3", "2.5"] {
            let err = parse(&format!("[log]\nkind = \"journal\"\nfsync = {bad}\n")).unwrap_err();
            assert!(err.contains("milliseconds from 1 to 60000"), "{bad}: {err}");
        }
    }

    #[test]
    fn kafka_needs_servers_and_topic_and_defaults_the_rest() {
        let text = "[log]\nkind = \"kafka\"\nbootstrap_servers = \"a:9092\"\ntopic = \"t\"\n";
        let config = parse(text).unwrap();
        let kafka = config.kafka().unwrap();
        assert_eq!(kafka, KafkaConfig::new("a:9092", "t", 0));
        assert_eq!(config.partition(), None);
        assert_eq!(config.with_partition(3).kafka().unwrap().partition, 3);
        let err = parse("[log]\nkind = \"kafka\"\ntopic = \"t\"\n").unwrap_err();
        assert!(err.contains("bootstrap_servers"), "{err}");
        let err = parse("[log]\nkind = \"files\"\n").unwrap_err();
        assert!(err.contains("journal") && err.contains("kafka"), "{err}");
        let err = parse("[log]\nkind = \"journal\"\ntopic = \"t\"\n").unwrap_err();
        assert!(err.contains("topic"), "{err}");
    }

    #[test]
    fn a_config_written_out_reads_back_the_same() {
        for log in [
            LogConfig::default(),
            LogConfig::Journal {
                fsync: FsyncPolicy::Interval { ms: 20 },
            },
            LogConfig::Kafka {
                bootstrap_servers: "a:1,b:2".into(),
                topic: "x.commands".into(),
                partition: Some(2),
                delivery_timeout_ms: 5_000,
                request_timeout_ms: 2_000,
                allow_unsafe_topic: true,
                security: Default::default(),
            },
        ] {
            let text = toml::to_string(&Section { log: log.clone() }).unwrap();
            assert_eq!(parse(&text).unwrap(), log, "{text}");
        }
    }

    #[test]
    fn a_journal_log_appends_reads_and_closes_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(&LogConfig::default(), dir.path(), "test").unwrap();
        let handle = log.handle();
        assert_eq!((handle.kind(), handle.available()), ("journal", true));
        assert!(handle.deliveries().is_none());
        let command = Command {
            ts: engine::TimestampNs(1),
            kind: engine::CommandKind::MassCancel(engine::MassCancel {
                account: engine::AccountId(1),
                symbol: None,
                session: None,
            }),
        };
        let before = wall_ns();
        handle.try_append(&command).unwrap();
        handle.try_append(&command).unwrap();
        let mut reader = log.reader(0).unwrap();
        let mut read = Vec::new();
        while read.len() < 2 {
            reader
                .poll(8, Duration::from_millis(50), &mut |at, c| {
                    read.push((at, c))
                })
                .unwrap();
        }
        // Stamped by the journal's writer as it sequenced them, not with the submitter's ts.
        let after = wall_ns();
        for (at, (position, read)) in read.into_iter().enumerate() {
            assert_eq!((position, read.kind), (at as u64, command.kind));
            assert!((before..=after).contains(&read.ts.0), "{read:?}");
        }
        assert_eq!(log.close(Duration::from_secs(1)), 2);
        assert_eq!(handle.try_append(&command), Err(Refused::Unavailable));
        assert_eq!(handle.durable(), 2);
    }
}

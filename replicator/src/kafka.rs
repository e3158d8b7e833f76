//! The Kafka log: a shard's commands in one partition of a topic stretched over three sites.
//!
//! Topic layout (documented in ARCHITECTURE.md): `<prefix>.commands` with one partition per
//! shard; a record's value is `version u8 (1) | CRC-32 u32 LE | bincode Command`, and its
//! offset is its log position. Snapshots stay on each site's disk; state hashes go to
//! `<prefix>.hashes` (see `divergence`).
//!
//! - [`KafkaAppender`]: an idempotent producer with `acks=all`, bounded in-flight requests and
//!   a delivery timeout. A command is acknowledged to its client only when the engine reads it
//!   back, i.e. once it is committed (replicated to the in-sync replicas). A failed delivery
//!   report (a timeout) means "not known to be committed", not "not committed": the record may
//!   still land and be executed, so a gateway must never turn a delivery failure into a reject.
//!   It reports "unknown" and lets the client resend with the same client order id.
//! - [`KafkaReader`]: a consumer assigned explicitly to the shard's partition (no group
//!   rebalancing), positioned at an offset (from a snapshot), that refuses to skip: an offset
//!   out of range is an error, and so is a record that fails its checksum. Each command's `ts`
//!   is the record's timestamp as the broker returns it ([`log_time`]): the broker's append time
//!   on a topic with `message.timestamp.type=LogAppendTime` (every site reads the same record,
//!   so the same time); on a safe topic a record without it is refused.
//! - [`Watermarks`]: a background thread that reads the partition's high watermark (the
//!   committed end) every interval, for consumer lag and for knowing the log is reachable.
//! - [`crate::topic::check_topic`]: the start-up check of the topic (durability settings,
//!   retention, the brokers' version); a node refuses to trade on an unsafe topic unless
//!   started with the explicit development flag.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::{Command, TimestampNs};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message, Timestamp};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::security::KafkaSecurity;
use crate::site_clock::SiteClock;
use crate::topic::{check_topic, TopicSafety};

/// Record value format version.
const VERSION: u8 = 1;

/// The `message.timestamp.type` that makes the broker stamp each record as it appends it.
pub const LOG_APPEND_TIME: &str = "LogAppendTime";

/// Where a shard's log lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// The commands topic (`<prefix>.commands`).
    pub topic: String,
    /// The shard's partition.
    pub partition: i32,
    /// A produce not acknowledged by then is reported failed: its fate is unknown (it may
    /// still be committed), never "rejected".
    pub delivery_timeout_ms: u32,
    /// Requests in flight per broker connection (at most 5 keeps idempotent ordering).
    pub max_in_flight: u32,
    /// How long any request to a broker may take (librdkafka's `socket.timeout.ms`): see
    /// [`DEFAULT_REQUEST_TIMEOUT_MS`].
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u32,
    /// Development only: trade on a topic that does not meet the durability requirements.
    pub allow_unsafe_topic: bool,
    /// The site this client is part of: its producer keys records with it, and its readers
    /// check the site's clock against the other sites' records ([`SiteClock`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// TLS and SASL ([`KafkaSecurity`]); plaintext by default.
    #[serde(default)]
    pub security: KafkaSecurity,
}

/// How long a producer retries a record before it gives it up (librdkafka's
/// `delivery.timeout.ms`), by default: the longest the log can hold a command a site stamped.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: u32 = 30_000;

impl KafkaConfig {
    pub fn new(bootstrap_servers: &str, topic: &str, partition: i32) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            partition,
            delivery_timeout_ms: DEFAULT_DELIVERY_TIMEOUT_MS,
            max_in_flight: 5,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            allow_unsafe_topic: false,
            site: None,
            security: KafkaSecurity::default(),
        }
    }

    /// The longest a record queued now may take to be appended: the producer's delivery
    /// timeout with one request's timeout after it (a produce in flight when the producer
    /// gives up may still be appended).
    pub fn longest_delay(&self) -> Duration {
        let ms = u64::from(self.delivery_timeout_ms) + u64::from(self.request_timeout_ms);
        Duration::from_millis(ms)
    }

    /// Client settings shared by every producer, consumer and admin client of this log.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // Warnings and errors reach the clients' contexts (`Logged`, `Deliveries`), which
        // write them to standard error; rdkafka would otherwise keep only errors.
        config.set_log_level(RDKafkaLogLevel::Warning);
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            // Learn where the partition's leader went within a fraction of a second. When the
            // leader's broker goes dark, librdkafka's own leader lookups back off to a second
            // and more (measured on the mock cluster: producing and reading stalled 1-3 s after
            // the leadership moved, 110-220 ms with this), and a watermark read that fails does
            // not look at all. The cost is one small Metadata request per client per interval.
            .set(
                "topic.metadata.refresh.interval.ms",
                METADATA_REFRESH_MS.to_string(),
            )
            .set("socket.timeout.ms", self.request_timeout_ms.to_string())
            // Reconnect within seconds once a cut-off site's network is back. A connection
            // opened while the cut lasted waits out TCP's SYN retransmissions (1, 3, 7, 15 s
            // after the first) for up to 30 s, and failed connects back off to 10 s, by
            // default: seen in the drill, a site cut off for 6 s took 6.2 s after the cut
            // ended to catch up on 2,913 records. Not librdkafka's shortest (1 s): a loaded
            // broker can take longer than that to answer a new connection's ApiVersions
            // (tansu took 1.3-1.5 s beside a drill here, and a node then never connected).
            .set(
                "socket.connection.setup.timeout.ms",
                CONNECTION_SETUP_TIMEOUT_MS.to_string(),
            )
            .set("reconnect.backoff.max.ms", "1000");
        self.security.apply(&mut config);
        config
    }
}

/// How often every Kafka client of a site refreshes the partition's metadata (its leader).
pub const METADATA_REFRESH_MS: u64 = 100;

/// How long a new broker connection may take to be ready (TCP connect and the ApiVersions
/// handshake) before it is dropped and made again (librdkafka's default: 30 s).
pub const CONNECTION_SETUP_TIMEOUT_MS: u64 = 5_000;

/// The default of [`KafkaConfig::request_timeout_ms`]: how long any request to a broker may
/// take (librdkafka's `socket.timeout.ms`, 60 s by default).
///
/// It also bounds how long a client waits for a metadata answer that never comes: when the
/// leader's broker goes dark with a metadata request of a client in flight, librdkafka skips
/// its refreshes of the topic until this time has passed. Seen in the drill on the mock
/// cluster: every Kafka client of one surviving site, producer and readers, stalled for a
/// minute after a leader move while the other sites traded; with 1 s the stall was 1.0-1.9 s,
/// with 500 ms 0.5-1.0 s. The price: librdkafka drops a connection on one timed-out request,
/// so a broker slower than this for a while (a loaded test broker; a leader waiting out a dead
/// follower's `replica.lag.time.max.ms` before it shrinks the ISR) sees its clients reconnect
/// and resend (the idempotent producer keeps each record once and in order). Raise it where
/// the brokers' answers are slower.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 500;

fn default_request_timeout_ms() -> u32 {
    DEFAULT_REQUEST_TIMEOUT_MS
}

/// Kafka log failures.
#[derive(Debug, thiserror::Error)]
pub enum KafkaLogError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the producer's queue is full")]
    Full,
    #[error("record at offset {offset} is corrupt: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error("the record at offset {offset} needs a newer binary: {reason}")]
    NeedsNewerBinary { offset: i64, reason: String },
    #[error("expected the record at offset {expected}, got offset {found}")]
    OffsetGap { expected: u64, found: i64 },
    #[error("topic {topic} is not safe to trade on: {}", reasons.join("; "))]
    UnsafeTopic { topic: String, reasons: Vec<String> },
    #[error(
        "record at offset {offset} carries {found:?}, not the broker's log-append time: the \
         broker does not honour message.timestamp.type=LogAppendTime"
    )]
    NotAppendTime { offset: i64, found: Timestamp },
    #[error("topic {0} does not exist or has no partition {1}")]
    NoPartition(String, i32),
    #[error("starting a thread: {0}")]
    Thread(String),
}

/// Counts delivery outcomes.
#[derive(Default)]
pub struct DeliveryCounts {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

/// Producer context that records delivery reports.
pub struct Deliveries(Arc<DeliveryCounts>);

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        report("producer", level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        report_error("producer", &error, reason);
    }
}

/// The context of a site's Kafka consumers: librdkafka's warnings and errors go to the
/// process's standard error, named by the client's role (rdkafka's default hands them to the
/// `log` crate, which a node does not set up, so they were lost).
pub struct Logged(pub &'static str);

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        report(self.0, level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        report_error(self.0, &error, reason);
    }
}

impl ConsumerContext for Logged {}

/// One librdkafka log line of a client in `role`, warnings and worse. A configuration
/// warning is the same for every client of the process (librdkafka advises a request timeout
/// a second above `fetch.wait.max.ms`, which [`DEFAULT_REQUEST_TIMEOUT_MS`] is not on
/// purpose): it is written once.
fn report(role: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    static CONFIG_WARNED: AtomicBool = AtomicBool::new(false);
    if (level as i32) > RDKafkaLogLevel::Warning as i32
        || (facility == "CONFWARN" && CONFIG_WARNED.swap(true, Ordering::Relaxed))
    {
        return;
    }
    eprintln!("kafka {role}: {level:?} {facility}: {message}");
}

/// A client error librdkafka reported (a broker down, a fatal producer error).
fn report_error(role: &str, error: &KafkaError, reason: &str) {
    eprintln!("kafka {role}: error: {error}: {reason}");
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Encodes a command as a record value.
pub fn encode(command: &Command) -> Vec<u8> {
    let body = bincode::serialize(command).expect("commands always encode");
    let mut value = Vec::with_capacity(5 + body.len());
    value.push(VERSION);
    value.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    value.extend_from_slice(&body);
    value
}

/// Why a record value did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// Damaged, or not a command.
    Corrupt(String),
    /// A record version or a kind of command a newer binary wrote.
    Newer(String),
}

/// Decodes a record value.
pub fn decode(value: &[u8]) -> Result<Command, Undecodable> {
    match value {
        [VERSION, c0, c1, c2, c3, body @ ..] => {
            let stored = u32::from_le_bytes([*c0, *c1, *c2, *c3]);
            if crc32fast::hash(body) != stored {
                return Err(Undecodable::Corrupt("checksum mismatch".into()));
            }
            engine::decode_command(body).map_err(|err| match err {
                err @ engine::DecodeError::NewerKind(_) => Undecodable::Newer(err.to_string()),
                engine::DecodeError::Malformed(reason) => Undecodable::Corrupt(reason),
            })
        }
        [version, ..] if *version > VERSION => Err(Undecodable::Newer(format!(
            "record version {version} is newer than this binary's {VERSION}"
        ))),
        [version, ..] => Err(Undecodable::Corrupt(format!(
            "unknown record version {version}"
        ))),
        [] => Err(Undecodable::Corrupt("empty record".into())),
    }
}

/// Produces a shard's commands.
pub struct KafkaAppender {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    partition: i32,
    /// Each record's key: the site that wrote it.
    site: Option<String>,
    counts: Arc<DeliveryCounts>,
}

impl KafkaAppender {
    pub fn new(config: &KafkaConfig) -> Result<KafkaAppender, KafkaLogError> {
        let counts = Arc::new(DeliveryCounts::default());
        let producer = config
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "max.in.flight.requests.per.connection",
                config.max_in_flight.to_string(),
            )
            .set(
                "delivery.timeout.ms",
                config.delivery_timeout_ms.to_string(),
            )
            .set("linger.ms", "1")
            .create_with_context(Deliveries(counts.clone()))?;
        Ok(KafkaAppender {
            producer,
            topic: config.topic.clone(),
            partition: config.partition,
            site: config.site.clone(),
            counts,
        })
    }

    /// Queues `command` for the shard's partition, its `ts` as the record's create time (what
    /// a broker that keeps create times hands back as the log's time; one that stamps
    /// log-append times replaces it).
    pub fn append(&self, command: &Command) -> Result<(), KafkaLogError> {
        let value = encode(command);
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic)
            .partition(self.partition)
            .payload(value.as_slice())
            .timestamp((command.ts.0 / 1_000_000) as i64);
        if let Some(site) = &self.site {
            record = record.key(site.as_bytes());
        }
        self.producer.send(record).map_err(|(err, _)| match err {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => KafkaLogError::Full,
            other => KafkaLogError::Kafka(other),
        })
    }

    /// Delivery outcomes so far.
    pub fn counts(&self) -> &DeliveryCounts {
        &self.counts
    }

    /// Waits until every queued record is delivered or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaLogError> {
        Ok(self.producer.flush(timeout)?)
    }
}

/// Reads a shard's partition from an offset, in order.
pub struct KafkaReader {
    consumer: BaseConsumer<Logged>,
    next: u64,
    transient_errors: u64,
    /// Refuse a record whose timestamp is not the broker's log-append time (a safe topic).
    append_time_only: bool,
    /// This site's clock, checked against the records keyed by another site (or by none).
    clock: Option<(String, Arc<SiteClock>)>,
}

/// Consumer errors that mean the log cannot be read in order from here.
fn is_fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::OffsetOutOfRange
            | RDKafkaErrorCode::AutoOffsetReset
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Fatal
    )
}

impl KafkaReader {
    /// A reader of `config`'s partition starting at offset `from`.
    pub fn new(config: &KafkaConfig, from: u64) -> Result<KafkaReader, KafkaLogError> {
        let consumer: BaseConsumer<Logged> = config
            .client()
            .set("group.id", format!("exchange-reader-{}", config.topic))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Never jump to another offset on our own: a gap is an error.
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "10")
            .create_with_context(Logged("reader"))?;
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(
            &config.topic,
            config.partition,
            Offset::Offset(from as i64),
        )?;
        consumer.assign(&assignment)?;
        Ok(KafkaReader {
            consumer,
            next: from,
            transient_errors: 0,
            append_time_only: !config.allow_unsafe_topic,
            clock: None,
        })
    }

    /// Checks `site`'s clock against every record read that `site` did not write.
    pub fn checking(mut self, site: &str, clock: Arc<SiteClock>) -> KafkaReader {
        self.clock = Some((site.to_string(), clock));
        self
    }

    /// Transient consumer errors ridden out so far (for metrics).
    pub fn transient_errors(&self) -> u64 {
        self.transient_errors
    }

    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Waits up to `timeout` for the next record: `(offset, command)`, or `None` if none came.
    /// Transient errors (a broker down, a leader moving) are counted and ridden out, since
    /// librdkafka reconnects by itself; an error that means a gap or a misconfiguration is
    /// returned.
    pub fn poll(&mut self, timeout: Duration) -> Result<Option<(u64, Command)>, KafkaLogError> {
        Ok(self
            .poll_stamped(timeout)?
            .map(|(offset, command, _)| (offset, command)))
    }

    /// [`KafkaReader::poll`], with the time the writing site stamped the command with (its
    /// clock as it submitted it; the command's `ts` is the log's time). The two apart show
    /// how long the producer and the broker held a record (the drill's switch check).
    pub fn poll_stamped(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<(u64, Command, TimestampNs)>, KafkaLogError> {
        let Some(message) = self.consumer.poll(timeout) else {
            return Ok(None);
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::MessageConsumption(code)) if !is_fatal(code) => {
                self.transient_errors += 1;
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        let offset = message.offset();
        if offset != self.next as i64 {
            return Err(KafkaLogError::OffsetGap {
                expected: self.next,
                found: offset,
            });
        }
        let mut command = decode(message.payload().unwrap_or(&[])).map_err(|err| match err {
            Undecodable::Corrupt(reason) => KafkaLogError::Corrupt { offset, reason },
            Undecodable::Newer(reason) => KafkaLogError::NeedsNewerBinary { offset, reason },
        })?;
        let stamped = command.ts;
        let found = message.timestamp();
        command.ts = match (log_time(found), found) {
            (Some(ts), Timestamp::LogAppendTime(_)) => ts,
            (Some(ts), _) if !self.append_time_only => ts,
            (Some(_), _) => return Err(KafkaLogError::NotAppendTime { offset, found }),
            (None, _) => {
                let reason = "the record has no timestamp".to_string();
                return Err(KafkaLogError::Corrupt { offset, reason });
            }
        };
        if let Some((site, clock)) = &self.clock {
            if message.key() != Some(site.as_bytes()) {
                clock.read(command.ts.0);
            }
        }
        self.next += 1;
        Ok(Some((offset as u64, command, stamped)))
    }
}

/// A record's time as the log's time, in nanoseconds: its timestamp as the broker returns it,
/// whoever set it (the broker's append time with `LogAppendTime`, the producer's clock with
/// `CreateTime`). Every site reads the same record, so every site gets the same time; the
/// engine keeps the largest seen, so a broker clock that steps back never moves log time back.
pub fn log_time(timestamp: Timestamp) -> Option<TimestampNs> {
    let ms = timestamp.to_millis().filter(|&ms| ms >= 0)?;
    Some(TimestampNs((ms as u64).saturating_mul(1_000_000)))
}

/// A shard's log in Kafka: the producer and the settings to read it.
pub struct KafkaLog {
    config: KafkaConfig,
    appender: KafkaAppender,
    /// The site's clock against the log's, as its readers find it.
    clock: Arc<SiteClock>,
}

impl KafkaLog {
    /// The longest a record queued now may take to be appended
    /// ([`KafkaConfig::longest_delay`]).
    pub fn longest_delay(&self) -> Duration {
        self.config.longest_delay()
    }

    /// Connects to `config`'s partition, refusing an unsafe topic unless allowed (see
    /// [`check_topic`]).
    pub fn open(
        config: KafkaConfig,
        timeout: Duration,
    ) -> Result<(KafkaLog, TopicSafety), KafkaLogError> {
        let safety = check_topic(&config, timeout)?;
        let appender = KafkaAppender::new(&config)?;
        let clock = Arc::new(SiteClock::default());
        Ok((
            KafkaLog {
                config,
                appender,
                clock,
            },
            safety,
        ))
    }

    /// How far the site's clock runs ahead of the log's, as this log's readers have found
    /// it (see [`SiteClock`]); unchecked without a site name.
    pub fn clock(&self) -> &SiteClock {
        &self.clock
    }

    pub fn appender(&self) -> &KafkaAppender {
        &self.appender
    }

    /// The partition's high watermark (records below it are committed), asking its leader
    /// for at most `timeout`.
    pub fn end(&self, timeout: Duration) -> Result<u64, KafkaLogError> {
        Ok(self.watermarks(timeout)?.1)
    }

    /// The partition's low and high watermarks, asking its leader for at most `timeout`.
    fn watermarks(&self, timeout: Duration) -> Result<(u64, u64), KafkaLogError> {
        let consumer: BaseConsumer = self.config.client().create()?;
        let (low, high) =
            consumer.fetch_watermarks(&self.config.topic, self.config.partition, timeout)?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }
}

impl crate::CommandLog for KafkaLog {
    type Reader = KafkaReader;

    fn append(&self, command: &Command) -> Result<(), crate::LogError> {
        Ok(self.appender.append(command)?)
    }

    fn reader(&self, from: u64) -> Result<KafkaReader, crate::LogError> {
        let reader = KafkaReader::new(&self.config, from)?;
        Ok(match &self.config.site {
            Some(site) => reader.checking(site, self.clock.clone()),
            None => reader,
        })
    }

    /// The partition's high watermark: records below it are committed.
    fn durable_position(&self) -> Result<u64, crate::LogError> {
        Ok(self.end(Duration::from_secs(10))?)
    }

    /// The partition's low watermark: retention deleted the records below it.
    fn first_position(&self) -> Result<u64, crate::LogError> {
        Ok(self.watermarks(Duration::from_secs(10))?.0)
    }
}

impl crate::LogReader for KafkaReader {
    fn position(&self) -> u64 {
        self.next
    }

    fn poll(
        &mut self,
        max: usize,
        wait: Duration,
        each: &mut dyn FnMut(u64, Command),
    ) -> Result<usize, crate::LogError> {
        let mut count = 0;
        let mut wait = wait;
        while count < max {
            match KafkaReader::poll(self, wait)? {
                Some((offset, command)) => {
                    each(offset, command);
                    count += 1;
                    wait = Duration::ZERO;
                }
                None => break,
            }
        }
        Ok(count)
    }
}

/// The partition's committed end, read every interval by a background thread.
///
/// librdkafka caches the high watermark of a partition a consumer fetches, but rdkafka's safe
/// API does not expose that cache, so this asks the partition leader (a `ListOffsets`
/// request) instead. It is off every hot path: the sequencer reads two atomics.
pub struct Watermarks {
    shared: Arc<WatermarkState>,
    thread: Option<JoinHandle<()>>,
}

struct WatermarkState {
    high: AtomicU64,
    /// Milliseconds from `started` to the last successful read; `u64::MAX` before the first.
    last_ok_ms: AtomicU64,
    started: Instant,
    stop: AtomicBool,
}

impl Watermarks {
    /// Reads `config`'s partition once (waiting up to `first` for its leader), then every
    /// `every` in the background.
    pub fn spawn(
        config: &KafkaConfig,
        first: Duration,
        every: Duration,
    ) -> Result<Watermarks, KafkaLogError> {
        // A watermark read that fails against a leader gone dark does not make librdkafka
        // look for the new one (a site's committed end stayed stuck for minutes after the
        // leadership moved): the client's periodic metadata refresh finds it.
        let consumer: BaseConsumer<Logged> =
            config.client().create_with_context(Logged("watermarks"))?;
        let (_, high) = consumer.fetch_watermarks(&config.topic, config.partition, first)?;
        let shared = Arc::new(WatermarkState {
            high: AtomicU64::new(high.max(0) as u64),
            last_ok_ms: AtomicU64::new(0),
            started: Instant::now(),
            stop: AtomicBool::new(false),
        });
        let state = shared.clone();
        let (topic, partition) = (config.topic.clone(), config.partition);
        let thread = std::thread::Builder::new()
            .name("watermarks".into())
            .spawn(move || {
                while !state.stop.load(Ordering::Acquire) {
                    let asked = Instant::now();
                    // A loaded broker may answer slowly: wait longer than the interval, so
                    // slowness is not taken for an outage.
                    let patience = first.min(every * 8);
                    if let Ok((_, high)) = consumer.fetch_watermarks(&topic, partition, patience) {
                        state.high.fetch_max(high.max(0) as u64, Ordering::Relaxed);
                        let ms = state.started.elapsed().as_millis() as u64;
                        state.last_ok_ms.store(ms, Ordering::Release);
                    }
                    std::thread::sleep(every.saturating_sub(asked.elapsed()));
                }
            })
            .map_err(|err| KafkaLogError::Thread(err.to_string()))?;
        Ok(Watermarks {
            shared,
            thread: Some(thread),
        })
    }

    /// The highest committed end read so far.
    pub fn high(&self) -> u64 {
        self.shared.high.load(Ordering::Relaxed)
    }

    /// Whether the partition's leader answered within the last `within`.
    pub fn reachable(&self, within: Duration) -> bool {
        let last = self.shared.last_ok_ms.load(Ordering::Acquire);
        last != u64::MAX
            && self.shared.started.elapsed().as_millis() as u64 <= last + within.as_millis() as u64
    }
}

impl Drop for Watermarks {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_time_is_its_timestamp_in_nanoseconds_whoever_set_it() {
        let ns = Some(TimestampNs(1_700_000_000_123_000_000));
        assert_eq!(log_time(Timestamp::LogAppendTime(1_700_000_000_123)), ns);
        assert_eq!(log_time(Timestamp::CreateTime(1_700_000_000_123)), ns);
        assert_eq!(log_time(Timestamp::NotAvailable), None);
        assert_eq!(log_time(Timestamp::CreateTime(-1)), None);
    }
}

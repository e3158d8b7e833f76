//! The start-up check of a shard's commands topic: whether it is safe to trade on, how long a
//! site may be down and still rejoin from its own snapshot, and what the check could not see.
//!
//! [`check_topic`] reads the topic's replication factor and, through the admin API's
//! DescribeConfigs, `min.insync.replicas`, `unclean.leader.election.enable`,
//! `message.timestamp.type`, `cleanup.policy`, `retention.ms` and `retention.bytes`. A node
//! refuses an unsafe topic unless started with the explicit development flag, and says at
//! start-up what it could not check ([`TopicSafety::unchecked`]).
//!
//! **The broker's version.** Before Kafka 4.0 a partition has no Eligible Leader Replicas
//! (KIP-966): the in-sync set can shrink to the leader alone, and losing that leader then loses
//! records the high watermark had already passed, or stalls the partition for good with unclean
//! election off. The admin API librdkafka offers does not report a broker's version or the
//! cluster's finalized features, so the check reads the one sign DescribeConfigs gives: a
//! topic-level `message.format.version`, which Kafka 4.0 removed. Reported: the brokers are
//! older than 4.0, a problem. Not reported: 4.0 or later, but whether ELR is enabled
//! (`eligible.leader.replicas.version`, on by default for clusters created on 4.1) is left to the
//! operator (`kafka-features.sh describe`), and said so.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::kafka::{KafkaConfig, KafkaLogError, LOG_APPEND_TIME};

/// How long [`check_topic`] waits for a development topic's settings (see
/// `allow_unsafe_topic`): every start of a site on the mock cluster waited the whole 10 s.
pub const DEVELOPMENT_DESCRIBE_WAIT: Duration = Duration::from_millis(500);

/// What the durability check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSafety {
    pub partitions: usize,
    /// Smallest replica count over the partitions.
    pub replication_factor: usize,
    pub min_insync_replicas: Option<u32>,
    pub unclean_leader_election: Option<bool>,
    /// `message.timestamp.type`: `LogAppendTime` makes the broker the log's clock.
    pub timestamp_type: Option<String>,
    /// How long the topic keeps records.
    pub retention: Retention,
    /// Why it is unsafe; empty when safe.
    pub problems: Vec<String>,
    /// What the check could not verify, for the node to say at start-up.
    pub unchecked: Vec<String>,
}

/// How long the topic keeps records, as far as the cluster reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// `retention.ms`: `Some(None)` when unlimited (-1), `None` when not reported.
    pub time: Option<Option<Duration>>,
    /// `retention.bytes` per partition: `Some(None)` when unlimited (-1).
    pub bytes: Option<Option<u64>>,
}

impl Retention {
    /// From the reported `retention.ms` and `retention.bytes` (negative: unlimited).
    pub fn from_reported(ms: Option<i64>, bytes: Option<i64>) -> Retention {
        Retention {
            time: ms.map(|ms| u64::try_from(ms).ok().map(Duration::from_millis)),
            bytes: bytes.map(|bytes| u64::try_from(bytes).ok()),
        }
    }

    /// How long a site may be down and still rejoin from its own newest snapshot, taken at
    /// most `snapshot_every` apart: the log must still hold every record after it. Past that,
    /// the site needs a snapshot shipped from another site (`exchange bootstrap`). `None`
    /// when the cluster does not report `retention.ms`.
    pub fn down_time(&self, snapshot_every: Duration) -> Option<String> {
        let bytes = match self.bytes {
            Some(Some(bytes)) => format!(
                ", and while the partition holds under {bytes} bytes (retention.bytes): a \
                 busy log reaches that sooner"
            ),
            _ => String::new(),
        };
        Some(match self.time? {
            None if bytes.is_empty() => "unlimited (retention.ms and retention.bytes -1)".into(),
            None => format!("unlimited in time{bytes}"),
            Some(keep) => format!(
                "{} (retention.ms {} less the {} s between snapshots){bytes}",
                human(keep.saturating_sub(snapshot_every)),
                keep.as_millis(),
                snapshot_every.as_secs()
            ),
        })
    }
}

/// `d h m s` of `span`, the largest two units.
fn human(span: Duration) -> String {
    let s = span.as_secs();
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min {} s", s % 60),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The shortest `retention.ms` a safe topic may have: a site restarted after a long outage
/// (the 63-minute zone outage of April 2025, or a night) rejoins from its own snapshot.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3_600);

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

/// Checks that `config.topic` is safe to trade on: replication factor at least 3,
/// `min.insync.replicas` at least 2, unclean leader election off, and
/// `message.timestamp.type=LogAppendTime` (the broker, not each gateway, is the log's clock).
/// Errors when it is not, unless `allow_unsafe_topic` (then the problems are only reported).
pub fn check_topic(config: &KafkaConfig, timeout: Duration) -> Result<TopicSafety, KafkaLogError> {
    let consumer: BaseConsumer = config.client().create()?;
    let metadata = consumer.fetch_metadata(Some(&config.topic), timeout)?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == config.topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| KafkaLogError::NoPartition(config.topic.clone(), config.partition))?;
    if !topic
        .partitions()
        .iter()
        .any(|p| p.id() == config.partition)
    {
        return Err(KafkaLogError::NoPartition(
            config.topic.clone(),
            config.partition,
        ));
    }
    let replication_factor = topic
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .min()
        .unwrap_or(0);
    // A development topic's settings are only reported, so a broker that does not answer
    // DescribeConfigs (the mock cluster never does) costs it a moment, not the whole wait.
    let describe_wait = if config.allow_unsafe_topic {
        timeout.min(DEVELOPMENT_DESCRIBE_WAIT)
    } else {
        timeout
    };
    let reported = durability_configs(config, describe_wait)?;
    let safety = TopicSafety {
        partitions: topic.partitions().len(),
        replication_factor,
        problems: durability_problems(replication_factor, &reported),
        unchecked: unchecked(&reported),
        min_insync_replicas: reported.min_insync_replicas,
        unclean_leader_election: reported.unclean_leader_election,
        retention: Retention::from_reported(reported.retention_ms, reported.retention_bytes),
        timestamp_type: reported.timestamp_type,
    };
    if !safety.problems.is_empty() && !config.allow_unsafe_topic {
        return Err(KafkaLogError::UnsafeTopic {
            topic: config.topic.clone(),
            reasons: safety.problems,
        });
    }
    Ok(safety)
}

/// The topic settings the safety check reads, as far as the cluster reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    pub min_insync_replicas: Option<u32>,
    pub unclean_leader_election: Option<bool>,
    pub timestamp_type: Option<String>,
    pub cleanup_policy: Option<String>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    /// `message.format.version`, which Kafka 4.0 removed: reported, the brokers are older.
    pub message_format_version: Option<String>,
    /// Whether the cluster answered DescribeConfigs for the topic at all.
    pub described: bool,
}

/// The topic's settings that the check reads, as far as the cluster reports them (the mock
/// cluster reports none; tansu reports what the topic was created with, honoured or not).
fn durability_configs(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<TopicConfigs, KafkaLogError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(&config.topic)], &options));
    let entries = described
        .ok()
        .and_then(|results| results.into_iter().next())
        .and_then(Result::ok);
    let value = |name: &str| {
        entries
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(|e| e.value.clone())
    };
    Ok(TopicConfigs {
        min_insync_replicas: value("min.insync.replicas").and_then(|v| v.parse().ok()),
        unclean_leader_election: value("unclean.leader.election.enable").map(|v| v == "true"),
        timestamp_type: value("message.timestamp.type"),
        cleanup_policy: value("cleanup.policy"),
        retention_ms: value("retention.ms").and_then(|v| v.parse().ok()),
        retention_bytes: value("retention.bytes").and_then(|v| v.parse().ok()),
        message_format_version: value("message.format.version"),
        described: entries.is_some(),
    })
}

/// Why a topic with these settings is not safe to trade on (empty: it is).
pub fn durability_problems(replication_factor: usize, reported: &TopicConfigs) -> Vec<String> {
    let mut problems = Vec::new();
    if replication_factor < 3 {
        problems.push(format!(
            "replication factor {replication_factor} (need 3: one per site)"
        ));
    }
    match reported.min_insync_replicas {
        Some(n) if n >= 2 => {}
        Some(n) => problems.push(format!("min.insync.replicas {n} (need 2)")),
        None => problems.push("min.insync.replicas not reported".into()),
    }
    match reported.unclean_leader_election {
        Some(false) => {}
        Some(true) => problems.push("unclean.leader.election.enable is true".into()),
        None => problems.push("unclean.leader.election.enable not reported".into()),
    }
    match reported.timestamp_type.as_deref() {
        Some(LOG_APPEND_TIME) => {}
        Some(other) => problems.push(format!(
            "message.timestamp.type {other} (need {LOG_APPEND_TIME}: the broker's clock, not \
             each producer's, is the log's time)"
        )),
        None => problems.push("message.timestamp.type not reported".into()),
    }
    problems.extend(retention_problems(reported));
    if let Some(version) = &reported.message_format_version {
        problems.push(format!(
            "the brokers are older than Kafka 4.0 (the topic reports message.format.version \
             {version}, which 4.0 removed): without Eligible Leader Replicas the in-sync set \
             can shrink to the leader alone, and losing it loses committed records"
        ));
    }
    problems
}

/// A compacted topic (which keeps one record per key and drops the rest) or one that keeps
/// records less than [`MIN_RETENTION`].
fn retention_problems(reported: &TopicConfigs) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(policy) = &reported.cleanup_policy {
        if policy.split(',').any(|p| p.trim() == "compact") {
            problems.push(format!(
                "cleanup.policy {policy} (need delete: compaction keeps one record per key \
                 and drops the commands before it)"
            ));
        }
    }
    if let Some(ms) = reported.retention_ms.filter(|&ms| ms >= 0) {
        if (ms as u128) < MIN_RETENTION.as_millis() {
            problems.push(format!(
                "retention.ms {ms} (need at least {}: a site down longer than the log keeps \
                 its records cannot rejoin from its own snapshot)",
                MIN_RETENTION.as_millis()
            ));
        }
    }
    problems
}

/// What the check could not verify from what the cluster reported.
fn unchecked(reported: &TopicConfigs) -> Vec<String> {
    if !reported.described {
        return vec![
            "the topic's settings and the brokers' version: the cluster answers no \
             DescribeConfigs"
                .into(),
        ];
    }
    let mut unchecked = Vec::new();
    if reported.retention_ms.is_none() {
        unchecked.push("retention.ms: not reported".into());
    }
    if reported.cleanup_policy.is_none() {
        unchecked.push("cleanup.policy: not reported".into());
    }
    if reported.message_format_version.is_none() {
        unchecked.push(
            "Eligible Leader Replicas: the brokers look like Kafka 4.0 or later, but the \
             admin API does not report the cluster's features; check that \
             `kafka-features.sh describe` shows eligible.leader.replicas.version=1"
                .into(),
        );
    }
    unchecked
}

/// Creates the commands topic `config.topic` with `partitions`, and its hashes topic
/// ([`crate::divergence::hashes_topic`], one partition) where the sites' divergence fences
/// meet (development and tests; production topics are created by the operators with the
/// documented settings). A topic that exists is left as it is.
pub fn create_topic(
    config: &KafkaConfig,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<(), KafkaLogError> {
    let admin: AdminClient<DefaultClientContext> = config.client().create()?;
    // The request itself may take the whole timeout: creating a topic is slower than the
    // clients' request timeout on a loaded broker (tansu beside a drill here), and a request
    // that times out is not retried (CI's tansu tests failed so).
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    // Two in-sync replicas when there are three sites; a development topic with fewer replicas
    // could not take an `acks=all` write otherwise.
    let min_insync = replication.clamp(1, 2).to_string();
    let new = |name, partitions| {
        NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
            .set("min.insync.replicas", &min_insync)
            .set("unclean.leader.election.enable", "false")
            .set("message.timestamp.type", LOG_APPEND_TIME)
    };
    let hashes = crate::divergence::hashes_topic(&config.topic);
    let mut topics = vec![new(&config.topic, partitions)];
    if !config.topic.ends_with(".hashes") {
        topics.push(new(&hashes, 1));
    }
    let results = block_on(admin.create_topics(&topics, &options))?;
    for result in results {
        if let Err((_, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                return Err(KafkaError::AdminOp(code).into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe() -> TopicConfigs {
        TopicConfigs {
            min_insync_replicas: Some(2),
            unclean_leader_election: Some(false),
            timestamp_type: Some(LOG_APPEND_TIME.into()),
            cleanup_policy: Some("delete".into()),
            retention_ms: Some(7 * 86_400_000),
            retention_bytes: Some(-1),
            message_format_version: None,
            described: true,
        }
    }

    #[test]
    fn a_topic_whose_broker_does_not_stamp_records_is_unsafe() {
        assert!(durability_problems(3, &safe()).is_empty());
        let create_time = TopicConfigs {
            timestamp_type: Some("CreateTime".into()),
            ..safe()
        };
        let problems = durability_problems(3, &create_time);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("message.timestamp.type CreateTime"));
        let silent = TopicConfigs {
            timestamp_type: None,
            ..safe()
        };
        assert_eq!(
            durability_problems(3, &silent),
            vec!["message.timestamp.type not reported".to_string()]
        );
    }

    #[test]
    fn a_compacted_topic_or_one_kept_under_a_day_is_unsafe() {
        let compacted = TopicConfigs {
            cleanup_policy: Some("compact,delete".into()),
            ..safe()
        };
        let problems = durability_problems(3, &compacted);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("cleanup.policy compact,delete"));
        let short = TopicConfigs {
            retention_ms: Some(3_600_000),
            ..safe()
        };
        let problems = durability_problems(3, &short);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("retention.ms 3600000 (need at least 86400000"));
        let unlimited = TopicConfigs {
            retention_ms: Some(-1),
            ..safe()
        };
        assert!(durability_problems(3, &unlimited).is_empty());
    }

    #[test]
    fn brokers_older_than_kafka_4_are_unsafe_and_newer_ones_leave_elr_to_the_operator() {
        let old = TopicConfigs {
            message_format_version: Some("3.0-IV1".into()),
            ..safe()
        };
        let problems = durability_problems(3, &old);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("older than Kafka 4.0"), "{problems:?}");
        assert!(unchecked(&old).is_empty());
        let new = unchecked(&safe());
        assert_eq!(new.len(), 1, "{new:?}");
        assert!(
            new[0].contains("eligible.leader.replicas.version"),
            "{new:?}"
        );
        let silent = unchecked(&TopicConfigs::default());
        assert_eq!(silent.len(), 1, "{silent:?}");
        assert!(silent[0].contains("no DescribeConfigs"), "{silent:?}");
    }

    #[test]
    fn the_down_time_a_site_may_take_is_retention_less_the_snapshot_interval() {
        let every = Duration::from_secs(600);
        let week = Retention::from_reported(Some(7 * 86_400_000), Some(-1));
        assert_eq!(
            week.down_time(every).unwrap(),
            "6 d 23 h (retention.ms 604800000 less the 600 s between snapshots)"
        );
        let sized = Retention::from_reported(Some(-1), Some(1 << 30));
        assert!(sized.down_time(every).unwrap().starts_with(
            "unlimited in time, and while the \
            partition holds under 1073741824 bytes"
        ));
        assert_eq!(
            Retention::from_reported(Some(-1), Some(-1))
                .down_time(every)
                .unwrap(),
            "unlimited (retention.ms and retention.bytes -1)"
        );
        assert_eq!(Retention::default().down_time(every), None);
        assert_eq!(human(Duration::from_secs(3_780)), "1 h 3 min");
        assert_eq!(human(Duration::from_secs(75)), "1 min 15 s");
    }
}

//! Divergence detection: every replica publishes `(site, shard, log position, state hash)`
//! every N records; [`compare`] lines the reports up by shard and position and names every
//! position where sites disagree. Equal hashes at equal positions are the proof that the sites
//! hold the same exchange.
//!
//! Reports are JSON objects (`{"site","shard","position","hash"}`), one per Kafka record in the
//! `<prefix>.hashes` topic ([`KafkaHashSink`], [`read_kafka`]) or one per line in a file
//! ([`FileHashSink`], [`read_file`]) for the embedded journal.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::kafka::{KafkaConfig, KafkaLogError};

/// The hashes topic beside a commands topic: `<prefix>.hashes` for `<prefix>.commands`, else
/// the commands topic's name with `.hashes` added. One partition, whatever the shards.
pub fn hashes_topic(commands: &str) -> String {
    format!(
        "{}.hashes",
        commands.strip_suffix(".commands").unwrap_or(commands)
    )
}

/// One replica's state hash at one log position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashReport {
    pub site: String,
    pub shard: u32,
    pub position: u64,
    /// `Engine::state_hash()` as 32 hex digits.
    pub hash: String,
}

/// Divergence-check failures.
#[derive(Debug, thiserror::Error)]
pub enum DivergenceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a hash report: {reason}")]
    BadReport {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("hash report at offset {offset} of the hashes topic is not valid: {reason}")]
    BadKafkaReport { offset: i64, reason: String },
    #[error(transparent)]
    Kafka(#[from] KafkaLogError),
}

/// Where reports go.
pub trait HashSink {
    fn publish(&mut self, report: &HashReport) -> Result<(), DivergenceError>;
}

/// Publishes a report every `every` records.
pub struct HashCadence {
    site: String,
    shard: u32,
    every: u64,
}

impl HashCadence {
    pub fn new(site: &str, shard: u32, every: u64) -> HashCadence {
        HashCadence {
            site: site.into(),
            shard,
            every: every.max(1),
        }
    }

    /// With `position` records applied to `engine`: publishes its hash if `position` is a
    /// multiple of the cadence. Returns whether it did.
    pub fn maybe_publish(
        &self,
        position: u64,
        engine: &Engine,
        sink: &mut dyn HashSink,
    ) -> Result<bool, DivergenceError> {
        if position == 0 || !position.is_multiple_of(self.every) {
            return Ok(false);
        }
        sink.publish(&HashReport {
            site: self.site.clone(),
            shard: self.shard,
            position,
            hash: engine.state_hash().to_string(),
        })?;
        Ok(true)
    }
}

/// Appends reports as JSON lines to a file.
pub struct FileHashSink {
    file: File,
    path: PathBuf,
}

impl FileHashSink {
    /// Opens `path` for appending. A line a crash left torn at its end is ended first, so the
    /// next report starts a line of its own (appended to the torn one, it was unreadable too).
    pub fn open(path: &Path) -> Result<FileHashSink, DivergenceError> {
        let io = |source| DivergenceError::Io {
            path: path.into(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if ends_torn(&mut file).map_err(io)? {
            file.write_all(b"\n").map_err(io)?;
        }
        Ok(FileHashSink {
            file,
            path: path.into(),
        })
    }
}

/// Whether `file` is not empty and does not end with a newline.
fn ends_torn(file: &mut File) -> std::io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

impl HashSink for FileHashSink {
    fn publish(&mut self, report: &HashReport) -> Result<(), DivergenceError> {
        let line = serde_json::to_string(report).expect("reports serialize");
        writeln!(self.file, "{line}").map_err(|source| DivergenceError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a file of JSON-line reports. A line cut short (a crash in the middle of writing it:
/// the JSON ends early) is skipped; any other line that is not a report is an error.
pub fn read_file(path: &Path) -> Result<Vec<HashReport>, DivergenceError> {
    let io = |source| DivergenceError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut reports = Vec::new();
    for (at, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(report) => reports.push(report),
            Err(err) if err.classify() == serde_json::error::Category::Eof => {}
            Err(err) => {
                return Err(DivergenceError::BadReport {
                    path: path.into(),
                    line: at + 1,
                    reason: err.to_string(),
                })
            }
        }
    }
    Ok(reports)
}

/// Produces reports to the hashes topic (partition 0), keyed by site.
pub struct KafkaHashSink {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl KafkaHashSink {
    /// `config.topic` is the hashes topic.
    pub fn new(config: &KafkaConfig) -> Result<KafkaHashSink, DivergenceError> {
        let producer = config
            .client()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .map_err(KafkaLogError::from)?;
        Ok(KafkaHashSink {
            producer,
            topic: config.topic.clone(),
        })
    }

    /// Waits until every published report is delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), DivergenceError> {
        self.producer
            .flush(timeout)
            .map_err(|err| KafkaLogError::from(err).into())
    }
}

impl HashSink for KafkaHashSink {
    fn publish(&mut self, report: &HashReport) -> Result<(), DivergenceError> {
        let value = serde_json::to_vec(report).expect("reports serialize");
        let record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic)
            .partition(0)
            .key(report.site.as_str())
            .payload(&value);
        self.producer
            .send(record)
            .map_err(|(err, _)| KafkaLogError::from(err).into())
    }
}

/// A consumer of the hashes topic's partition as `group` (nothing committed), assigned at the
/// offset `from` picks from the partition's low and high watermarks; with those watermarks.
fn hashes_consumer(
    config: &KafkaConfig,
    group: &str,
    timeout: Duration,
    from: impl Fn(i64, i64) -> i64,
) -> Result<(BaseConsumer, i64, i64), DivergenceError> {
    let consumer: BaseConsumer = config
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaLogError::from)?;
    let (low, high) = consumer
        .fetch_watermarks(&config.topic, 0, timeout)
        .map_err(KafkaLogError::from)?;
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&config.topic, 0, Offset::Offset(from(low, high)))
        .map_err(KafkaLogError::from)?;
    consumer.assign(&assignment).map_err(KafkaLogError::from)?;
    Ok((consumer, low, high))
}

/// Reads every report in the hashes topic (`config.topic`, partition 0) up to its end now.
pub fn read_kafka(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<Vec<HashReport>, DivergenceError> {
    let (consumer, low, high) = hashes_consumer(config, "exchange-verify", timeout, |low, _| low)?;
    let mut reports = Vec::new();
    let mut next = low;
    let deadline = Instant::now() + timeout;
    while next < high {
        if Instant::now() > deadline {
            return Err(
                KafkaLogError::Kafka(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::error::RDKafkaErrorCode::RequestTimedOut,
                ))
                .into(),
            );
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.map_err(KafkaLogError::from)?;
        next = message.offset() + 1;
        let report = serde_json::from_slice(message.payload().unwrap_or(&[])).map_err(|err| {
            DivergenceError::BadKafkaReport {
                offset: message.offset(),
                reason: err.to_string(),
            }
        })?;
        reports.push(report);
    }
    Ok(reports)
}

/// Reports the hashes topic receives from now on (from a little before: the newest
/// [`HashReader::BACKLOG`] already there), read as they come: what a site's divergence fence
/// compares its own with.
pub struct HashReader {
    consumer: BaseConsumer,
}

impl HashReader {
    /// Reports already in the topic that a new reader reads first.
    pub const BACKLOG: i64 = 4_096;

    /// A reader of `config.topic`'s partition 0, from its newest [`Self::BACKLOG`] reports.
    pub fn new(config: &KafkaConfig) -> Result<HashReader, DivergenceError> {
        let from = |low: i64, high: i64| low.max(high - Self::BACKLOG);
        let wait = Duration::from_secs(10);
        let (consumer, _, _) = hashes_consumer(config, "exchange-fence", wait, from)?;
        Ok(HashReader { consumer })
    }

    /// The reports that have arrived, up to 4,096; none when nothing has. A record that is
    /// not a report, or an error of the consumer, is said on standard error and passed over
    /// (it is another site's problem, or transient: librdkafka reconnects).
    pub fn poll(&mut self) -> Vec<HashReport> {
        let mut reports = Vec::new();
        while reports.len() < 4_096 {
            let Some(message) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            match message {
                Ok(message) => match serde_json::from_slice(message.payload().unwrap_or(&[])) {
                    Ok(report) => reports.push(report),
                    Err(err) => eprintln!(
                        "hashes: the record at offset {} is not a hash report: {err}",
                        message.offset()
                    ),
                },
                Err(err) => {
                    eprintln!("hashes: reading the hashes topic: {err}");
                    break;
                }
            }
        }
        reports
    }
}

/// Sites that disagree at one position of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    pub shard: u32,
    pub position: u64,
    /// Each site's hash there.
    pub hashes: BTreeMap<String, String>,
}

/// What [`compare`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// (shard, position) pairs reported by at least two sites.
    pub compared: usize,
    /// Pairs reported by one site only (nothing to compare yet).
    pub single: usize,
    pub sites: Vec<String>,
    pub divergences: Vec<Divergence>,
}

/// Lines reports up by shard and position. A site reporting two hashes for one position
/// disagrees with itself and is reported too (as `site#2`).
pub fn compare(reports: &[HashReport]) -> Verdict {
    let mut at: BTreeMap<(u32, u64), BTreeMap<String, String>> = BTreeMap::new();
    let mut sites = std::collections::BTreeSet::new();
    for report in reports {
        sites.insert(report.site.clone());
        let hashes = at.entry((report.shard, report.position)).or_default();
        match hashes.get(&report.site) {
            Some(hash) if *hash != report.hash => {
                hashes.insert(format!("{}#2", report.site), report.hash.clone());
            }
            _ => {
                hashes.insert(report.site.clone(), report.hash.clone());
            }
        }
    }
    let mut verdict = Verdict {
        sites: sites.into_iter().collect(),
        ..Verdict::default()
    };
    for ((shard, position), hashes) in at {
        if hashes.len() < 2 {
            verdict.single += 1;
            continue;
        }
        verdict.compared += 1;
        let mut distinct: Vec<&String> = hashes.values().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            verdict.divergences.push(Divergence {
                shard,
                position,
                hashes,
            });
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(site: &str, position: u64, hash: &str) -> HashReport {
        HashReport {
            site: site.into(),
            shard: 0,
            position,
            hash: hash.into(),
        }
    }

    #[test]
    fn equal_sites_agree_and_a_differing_one_is_named() {
        let agree = [
            report("cloud-a", 100, "aa"),
            report("cloud-b", 100, "aa"),
            report("metal", 100, "aa"),
            report("cloud-a", 200, "bb"),
        ];
        let verdict = compare(&agree);
        assert_eq!((verdict.compared, verdict.single), (1, 1));
        assert!(verdict.divergences.is_empty());
        assert_eq!(verdict.sites, ["cloud-a", "cloud-b", "metal"]);

        let mut split = agree.to_vec();
        split.push(report("cloud-b", 200, "cc"));
        let verdict = compare(&split);
        assert_eq!(verdict.divergences.len(), 1);
        let divergence = &verdict.divergences[0];
        assert_eq!(divergence.position, 200);
        assert_eq!(divergence.hashes["cloud-a"], "bb");
        assert_eq!(divergence.hashes["cloud-b"], "cc");
    }

    #[test]
    fn a_site_contradicting_itself_is_a_divergence() {
        let verdict = compare(&[report("metal", 5, "aa"), report("metal", 5, "ab")]);
        assert_eq!(verdict.divergences.len(), 1);
    }

    /// A SIGKILL in the middle of a report leaves a torn last line. The node appended its
    /// next report to it after the restart, which made both unreadable (the drill's reader
    /// skipped the line, `exchange verify` refused the file). Now the torn line is ended at
    /// open and skipped when read; a line that is not a report at all is still an error.
    #[test]
    fn a_torn_last_line_is_sealed_at_open_and_skipped_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hashes.jsonl");
        let whole = serde_json::to_string(&report("metal", 1000, "aa")).unwrap();
        std::fs::write(&path, format!("{whole}\n{}", &whole[..20])).unwrap();
        FileHashSink::open(&path)
            .unwrap()
            .publish(&report("metal", 2000, "bb"))
            .unwrap();
        let positions: Vec<u64> = read_file(&path)
            .unwrap()
            .iter()
            .map(|r| r.position)
            .collect();
        assert_eq!(positions, [1000, 2000]);

        std::fs::write(&path, format!("{whole}\n{{\"site\": 7}}\n")).unwrap();
        assert!(matches!(
            read_file(&path),
            Err(DivergenceError::BadReport { line: 2, .. })
        ));
    }
}

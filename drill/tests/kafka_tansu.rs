//! The Kafka log against a real Kafka-protocol broker: tansu 0.6.0 (installed by `scripts/setup`),
//! started by each test (`drill::tansu`) on its own loopback port with SQLite storage in a
//! temporary directory.
//! A missing `tansu` binary fails these tests; it never skips them.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use drill::tansu::Tansu;
use engine::{AccountId, Command, CommandKind, Engine, Event, MassCancel};
use flow::{FlowConfig, FlowGenerator};
use replicator::divergence::{compare, read_kafka, HashCadence, KafkaHashSink};
use replicator::kafka::{KafkaAppender, KafkaConfig, KafkaLog, KafkaLogError, KafkaReader};
use replicator::recovery::recover;
use replicator::snapshots::SnapshotStore;
use replicator::topic::{check_topic, create_topic};
use replicator::CommandLog;

const TIMEOUT: Duration = Duration::from_secs(20);

/// One broker at a time: seven tansu processes (each committing to SQLite) at once on a
/// loaded 2-core machine answered admin requests in over 20 s, and a test timed out.
static ONE_BROKER: Mutex<()> = Mutex::new(());

/// A broker in its own temporary directory (removed after the broker stops).
struct Broker {
    tansu: Tansu,
    _dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Broker {
    fn start() -> Broker {
        let turn = ONE_BROKER.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tansu = Tansu::start(dir.path())
            .expect("tansu 0.6.0 must be installed (run scripts/setup); these tests need a broker");
        Broker {
            tansu,
            _dir: dir,
            _turn: turn,
        }
    }
}

impl std::ops::Deref for Broker {
    type Target = Tansu;
    fn deref(&self) -> &Tansu {
        &self.tansu
    }
}

impl std::ops::DerefMut for Broker {
    fn deref_mut(&mut self) -> &mut Tansu {
        &mut self.tansu
    }
}

fn topic_config(broker: &Broker, topic: &str) -> KafkaConfig {
    KafkaConfig {
        // tansu reports neither replication nor topic configs: a development topic.
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&broker.bootstrap(), topic, 0)
    }
}

fn command(n: u64) -> Command {
    Command::new(
        n,
        CommandKind::MassCancel(MassCancel {
            account: AccountId(n),
            symbol: None,
            session: None,
        }),
    )
}

/// A small exchange-core-like flow (setup included) and its configuration.
fn flow(seed: u64, count: usize) -> (FlowConfig, Vec<Command>) {
    let flow = FlowConfig {
        seed,
        book_depth: 100,
        accounts: 20,
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(flow);
    let mut commands = generator.setup();
    commands.extend(generator.generate(count));
    (flow, commands)
}

/// Appends `commands` and waits until every one is acknowledged.
fn append_acked(appender: &KafkaAppender, commands: &[Command]) {
    let before = appender
        .counts()
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    for cmd in commands {
        appender.append(cmd).unwrap();
    }
    appender.flush(TIMEOUT).unwrap();
    let counts = appender.counts();
    assert_eq!(counts.failed.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        counts.delivered.load(std::sync::atomic::Ordering::Relaxed) - before,
        commands.len() as u64
    );
}

/// Reads `count` records from `reader`.
fn read(reader: &mut KafkaReader, count: usize) -> Vec<(u64, Command)> {
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count}", out.len());
        if let Some(record) = reader.poll(Duration::from_millis(100)).unwrap() {
            out.push(record);
        }
    }
    out
}

#[test]
fn appended_commands_are_consumed_in_order_from_any_offset() {
    let broker = Broker::start();
    let config = topic_config(&broker, "shard.commands");
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    let appender = KafkaAppender::new(&config).unwrap();
    let commands: Vec<Command> = (0..500).map(command).collect();
    append_acked(&appender, &commands);

    let mut reader = KafkaReader::new(&config, 0).unwrap();
    let records = read(&mut reader, 500);
    for (n, (offset, cmd)) in records.iter().enumerate() {
        assert_eq!((*offset, cmd.kind), (n as u64, commands[n].kind));
    }
    // A consumer restarted from a snapshot's position carries on from there, reading the
    // same records (the same times too).
    let mut restarted = KafkaReader::new(&config, 321).unwrap();
    assert_eq!(read(&mut restarted, 179)[0], records[321]);
    assert_eq!(restarted.position(), 500);
}

#[test]
fn the_durability_check_refuses_a_topic_that_reports_nothing() {
    let broker = Broker::start();
    let config = KafkaConfig {
        allow_unsafe_topic: false,
        ..topic_config(&broker, "unsafe.commands")
    };
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    match check_topic(&config, TIMEOUT) {
        Err(KafkaLogError::UnsafeTopic { reasons, .. }) => {
            assert!(
                reasons.iter().any(|r| r.contains("replication factor 1")),
                "{reasons:?}"
            );
        }
        other => panic!("expected an unsafe-topic refusal, got {other:?}"),
    }
    // With the development flag the problems are reported, not fatal.
    let dev = KafkaConfig {
        allow_unsafe_topic: true,
        ..config
    };
    let safety = check_topic(&dev, TIMEOUT).unwrap();
    assert_eq!(safety.replication_factor, 1);
    assert!(!safety.problems.is_empty());
}

/// Creates `config.topic` with one replica and `settings` besides the project's own.
fn create_with(config: &KafkaConfig, settings: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .create()
        .unwrap();
    let mut topic = NewTopic::new(&config.topic, 1, TopicReplication::Fixed(1))
        .set("message.timestamp.type", "LogAppendTime");
    for (name, value) in settings {
        topic = topic.set(name, value);
    }
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let created = runtime
        .block_on(admin.create_topics([&topic], &options))
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}

#[test]
fn the_start_up_check_reads_retention_and_the_brokers_version_from_the_topic() {
    let broker = Broker::start();
    let kept = topic_config(&broker, "kept.commands");
    create_with(
        &kept,
        &[("retention.ms", "604800000"), ("cleanup.policy", "delete")],
    );
    let safety = check_topic(&kept, TIMEOUT).unwrap();
    let every = Duration::from_secs(10);
    assert_eq!(
        safety.retention.down_time(every).unwrap(),
        "6 d 23 h (retention.ms 604800000 less the 10 s between snapshots)"
    );
    assert!(
        !safety
            .problems
            .iter()
            .any(|p| p.contains("retention") || p.contains("cleanup")),
        "{:?}",
        safety.problems
    );
    // tansu answers as Kafka 4.0 does (no message.format.version): ELR is the operator's to
    // check, and the node says so.
    assert!(
        safety
            .unchecked
            .iter()
            .any(|u| u.contains("eligible.leader.replicas")),
        "{:?}",
        safety.unchecked
    );
    // A compacted topic kept an hour, on brokers that report a pre-4.0 message format.
    let wrong = topic_config(&broker, "wrong.commands");
    create_with(
        &wrong,
        &[
            ("retention.ms", "3600000"),
            ("cleanup.policy", "compact"),
            ("message.format.version", "3.0-IV1"),
        ],
    );
    let refused = KafkaConfig {
        allow_unsafe_topic: false,
        ..wrong
    };
    match check_topic(&refused, TIMEOUT) {
        Err(KafkaLogError::UnsafeTopic { reasons, .. }) => {
            for expected in [
                "cleanup.policy compact",
                "retention.ms 3600000",
                "older than Kafka 4.0",
            ] {
                assert!(
                    reasons.iter().any(|r| r.contains(expected)),
                    "{expected}: {reasons:?}"
                );
            }
        }
        other => panic!("expected an unsafe-topic refusal, got {other:?}"),
    }
}

#[test]
fn nothing_acknowledged_is_lost_across_a_broker_restart() {
    let mut broker = Broker::start();
    let config = topic_config(&broker, "restart.commands");
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    let first: Vec<Command> = (0..300).map(command).collect();
    append_acked(&KafkaAppender::new(&config).unwrap(), &first);

    broker.stop();
    assert!(broker.data_dir().join("tansu.db").exists());
    broker.resume().expect("tansu restarts");

    let second: Vec<Command> = (300..400).map(command).collect();
    append_acked(&KafkaAppender::new(&config).unwrap(), &second);
    let mut reader = KafkaReader::new(&config, 0).unwrap();
    let records = read(&mut reader, 400);
    for (n, (offset, cmd)) in records.iter().enumerate() {
        assert_eq!((*offset, cmd.kind), (n as u64, command(n as u64).kind));
    }
}

#[test]
fn two_engine_replicas_consuming_one_partition_reach_equal_hashes() {
    let broker = Broker::start();
    let config = topic_config(&broker, "replicas.commands");
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    let (flow, commands) = flow(11, 3_000);
    append_acked(&KafkaAppender::new(&config).unwrap(), &commands);

    let replica = |site: &str| {
        let mut engine = Engine::new(flow.engine_config()).unwrap();
        let mut events: Vec<Event> = Vec::new();
        let mut reader = KafkaReader::new(&config, 0).unwrap();
        for (_, cmd) in read(&mut reader, commands.len()) {
            engine.apply(&cmd, &mut events);
        }
        assert!(!events.is_empty(), "{site} produced events");
        engine.state_hash()
    };
    let (a, b) = (replica("cloud-a"), replica("cloud-b"));
    assert_eq!(a, b);
    // The log's commands (with the log's times) applied directly.
    let mut direct = Engine::new(flow.engine_config()).unwrap();
    let mut events = Vec::new();
    for (n, (_, cmd)) in read(&mut KafkaReader::new(&config, 0).unwrap(), commands.len())
        .into_iter()
        .enumerate()
    {
        assert_eq!(cmd.kind, commands[n].kind);
        direct.apply(&cmd, &mut events);
    }
    assert_eq!(a, direct.state_hash());
}

#[test]
fn replicas_publish_hashes_and_verify_finds_the_one_that_diverged() {
    let broker = Broker::start();
    let commands_topic = topic_config(&broker, "verify.commands");
    let hashes_topic = topic_config(&broker, "verify.hashes");
    create_topic(&commands_topic, 1, 1, TIMEOUT).unwrap();
    create_topic(&hashes_topic, 1, 1, TIMEOUT).unwrap();
    let (flow, commands) = flow(5, 2_000);
    append_acked(&KafkaAppender::new(&commands_topic).unwrap(), &commands);

    // Each site consumes the partition and publishes its hash every 500 records; metal
    // drops one command (a bug we want caught).
    let mut sink = KafkaHashSink::new(&hashes_topic).unwrap();
    for (site, skip) in [("cloud-a", None), ("cloud-b", None), ("metal", Some(1_700))] {
        let cadence = HashCadence::new(site, 0, 500);
        let mut engine = Engine::new(flow.engine_config()).unwrap();
        let mut events: Vec<Event> = Vec::new();
        let mut reader = KafkaReader::new(&commands_topic, 0).unwrap();
        for (offset, cmd) in read(&mut reader, commands.len()) {
            if Some(offset) != skip {
                engine.apply(&cmd, &mut events);
            }
            cadence
                .maybe_publish(offset + 1, &engine, &mut sink)
                .unwrap();
        }
    }
    sink.flush(TIMEOUT).unwrap();

    let reports = read_kafka(&hashes_topic, TIMEOUT).unwrap();
    let positions = commands.len() as u64 / 500;
    assert_eq!(reports.len() as u64, 3 * positions);
    let verdict = compare(&reports);
    assert_eq!(verdict.sites, ["cloud-a", "cloud-b", "metal"]);
    assert_eq!(verdict.compared as u64, positions);
    let diverged: Vec<u64> = verdict.divergences.iter().map(|d| d.position).collect();
    assert_eq!(
        diverged,
        (4..=positions).map(|n| n * 500).collect::<Vec<_>>()
    );
    assert_eq!(
        verdict.divergences[0].hashes["cloud-a"],
        verdict.divergences[0].hashes["cloud-b"]
    );
}

#[test]
fn recovery_from_a_snapshot_plus_the_partition_equals_a_full_replay() {
    let broker = Broker::start();
    let config = topic_config(&broker, "recover.commands");
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    let (log, safety) = KafkaLog::open(config.clone(), TIMEOUT).unwrap();
    assert!(
        !safety.problems.is_empty(),
        "tansu reports no durability settings"
    );
    let (flow, commands) = flow(9, 2_000);
    for cmd in &commands {
        CommandLog::append(&log, cmd).unwrap();
    }
    log.appender().flush(TIMEOUT).unwrap();
    assert_eq!(log.durable_position().unwrap(), commands.len() as u64);
    // The commands as the partition holds them, with the log's times.
    let commands: Vec<Command> = read(&mut KafkaReader::new(&config, 0).unwrap(), commands.len())
        .into_iter()
        .map(|(_, cmd)| cmd)
        .collect();

    // A snapshot taken at position 1,234 by a replica that read the partition.
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), 2).unwrap();
    let mut engine = Engine::new(flow.engine_config()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    for cmd in &commands[..1_234] {
        engine.apply(cmd, &mut events);
    }
    store.save(1_234, &engine).unwrap();

    let recovered = recover(&log, &store, flow.engine_config()).unwrap();
    assert_eq!(recovered.snapshot, Some(1_234));
    assert_eq!(recovered.replayed, commands.len() as u64 - 1_234);
    for cmd in &commands[1_234..] {
        engine.apply(cmd, &mut events);
    }
    assert_eq!(recovered.engine.state_hash(), engine.state_hash());
}

#[test]
fn tansu_reports_log_append_time_but_keeps_the_producers_create_time() {
    let broker = Broker::start();
    let config = topic_config(&broker, "time.commands");
    // Created as the project creates topics: message.timestamp.type=LogAppendTime.
    create_topic(&config, 1, 1, TIMEOUT).unwrap();
    let safety = check_topic(&config, TIMEOUT).unwrap();
    assert_eq!(safety.timestamp_type.as_deref(), Some("LogAppendTime"));
    assert!(
        !safety.problems.iter().any(|p| p.contains("timestamp")),
        "{:?}",
        safety.problems
    );
    // A producer ten minutes fast.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let ahead_ms = now.as_millis() as u64 + 600_000;
    let fast = Command {
        ts: engine::TimestampNs(ahead_ms * 1_000_000),
        ..command(0)
    };
    append_acked(&KafkaAppender::new(&config).unwrap(), &[fast]);
    // tansu 0.6.0 does not honour the setting it reports: the record keeps the producer's
    // create time, which a development reader takes as the log's time (the bound is the
    // producers' clock skew)...
    let read_back = read(&mut KafkaReader::new(&config, 0).unwrap(), 1);
    assert_eq!(read_back, vec![(0, fast)]);
    // ...and a reader of a topic that must be safe refuses it.
    let safe = KafkaConfig {
        allow_unsafe_topic: false,
        ..config
    };
    let mut reader = KafkaReader::new(&safe, 0).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let err = loop {
        assert!(Instant::now() < deadline, "no record");
        match reader.poll(Duration::from_millis(100)) {
            Ok(None) => continue,
            Ok(Some(record)) => panic!("took {record:?} without the broker's time"),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(err, KafkaLogError::NotAppendTime { offset: 0, .. }),
        "{err}"
    );
}

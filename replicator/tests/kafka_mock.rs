//! Kafka's own failover, which tansu (a single broker) cannot show: librdkafka's mock cluster
//! with three brokers (one per site), a replication-factor-3 partition whose leader moves to
//! another site's broker and whose first leader's broker goes down, mid-stream. The idempotent
//! producer keeps order and loses nothing acknowledged; the reader carries on.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine::{AccountId, Command, CommandKind, MassCancel};
use rdkafka::mocking::MockCluster;
use replicator::kafka::{check_topic, KafkaAppender, KafkaConfig, KafkaReader};

const TIMEOUT: Duration = Duration::from_secs(30);
const TOPIC: &str = "shard.commands";

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

#[test]
fn leader_moves_and_a_broker_goes_down_mid_stream_without_loss_or_reordering() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic(TOPIC, 1, 3).unwrap();
    for (broker, rack) in [(1, "cloud-a"), (2, "cloud-b"), (3, "metal")] {
        cluster.broker_rack(broker, rack).unwrap();
    }
    cluster.partition_leader(TOPIC, 0, Some(1)).unwrap();
    let config = KafkaConfig {
        allow_unsafe_topic: true,
        delivery_timeout_ms: 20_000,
        ..KafkaConfig::new(&cluster.bootstrap_servers(), TOPIC, 0)
    };
    let safety = check_topic(&config, TIMEOUT).unwrap();
    assert_eq!(safety.replication_factor, 3);

    let appender = KafkaAppender::new(&config).unwrap();
    let mut reader = KafkaReader::new(&config, 0).unwrap();
    let total = 3_000u64;
    let mut read = Vec::new();
    for n in 0..total {
        appender.append(&command(n)).unwrap();
        if n == 1_000 {
            // cloud-a loses the leadership to cloud-b...
            cluster.partition_leader(TOPIC, 0, Some(2)).unwrap();
        }
        if n == 2_000 {
            // ...and then cloud-a's broker goes dark altogether.
            cluster.broker_down(1).unwrap();
        }
        if n % 100 == 0 {
            while let Some(record) = reader.poll(Duration::ZERO).unwrap() {
                read.push(record);
            }
        }
    }
    // cloud-a's broker comes back.
    cluster.broker_up(1).unwrap();
    appender.flush(TIMEOUT).unwrap();
    let counts = appender.counts();
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "no delivery failed"
    );
    assert_eq!(counts.delivered.load(Ordering::Relaxed), total);

    let deadline = Instant::now() + TIMEOUT;
    while (read.len() as u64) < total {
        assert!(Instant::now() < deadline, "read {} of {total}", read.len());
        if let Some(record) = reader.poll(Duration::from_millis(100)).unwrap() {
            read.push(record);
        }
    }
    println!(
        "read {} records through the failover, riding out {} transient consumer errors",
        read.len(),
        reader.transient_errors()
    );
    // Every acknowledged command, once, in order, at contiguous offsets.
    for (n, (offset, cmd)) in read.iter().enumerate() {
        assert_eq!((*offset, *cmd), (n as u64, command(n as u64)));
    }
}

#[test]
fn a_reader_positioned_past_the_log_refuses_to_jump() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic(TOPIC, 1, 3).unwrap();
    let config = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&cluster.bootstrap_servers(), TOPIC, 0)
    };
    let appender = KafkaAppender::new(&config).unwrap();
    for n in 0..10 {
        appender.append(&command(n)).unwrap();
    }
    appender.flush(TIMEOUT).unwrap();
    // A snapshot claiming a position the log never reached: no silent skip to the end.
    let mut reader = KafkaReader::new(&config, 1_000).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let err = loop {
        assert!(
            Instant::now() < deadline,
            "no error for an offset past the end"
        );
        match reader.poll(Duration::from_millis(100)) {
            Ok(None) => continue,
            Ok(Some(record)) => panic!("read {record:?} past the end"),
            Err(err) => break err,
        }
    };
    assert!(err.to_string().contains("offset"), "{err}");
}

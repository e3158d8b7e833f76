//! A site behind its log sends its members elsewhere. A node starts on a Kafka log (librdkafka's
//! mock cluster, 25 ms round trips) that a producer fills faster than the node can read it:
//! its recovery ends behind the log, and it falls further behind. It then refuses new orders
//! with `catching_up` (reason 34), answers status questions with SessionReject 34, and
//! `/health` says `catching_up` with a 503, while its idle clocks still go to the log and a
//! mass cancel is taken (risk off). Once the producer stops and the node has read the backlog, it
//! is `ok` again and takes orders.
//!
//! The flood is paced and bounded so that the test does not depend on the machine's speed: the
//! mock broker answers a fetch with one produce batch, so at 25 ms a node reads 40 batches a
//! second, whatever their size; the producer sends a batch of [`BATCH`] every 10 ms (100 a
//! second), so the node falls behind on any machine. The mock keeps only 5 MB or 100,000 batches
//! of a partition and drops the oldest (a node behind them fails, as it did in CI when the flood
//! was unpaced), so the flood stops at [`FLOOD_CAP`] records, well inside that; and once it stops,
//! the round trips drop to 1 ms so that the backlog is read in seconds.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;
#[path = "common/orders.rs"]
mod orders;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{next, report, runtime};
use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use engine::{Command, CommandKind};
use gateway::binary::{exec_type, reason, session_reject, ClientMessage, ServerMessage};
use gateway::binary_client::BinaryClient;
use health::wait_health;
use node::Node;
use orders::buy;
use replicator::kafka::{KafkaAppender, KafkaConfig};

const TOKEN: &str = "catch-up-token-0001";

/// Records per produce batch of the flood.
const BATCH: u64 = 50;
/// The most records the flood appends: about 1.5 MB of the mock's 5 MB, 1,200 of its 100,000
/// batches.
const FLOOD_CAP: u64 = 60_000;

/// Appends idle clocks to the log, [`BATCH`] every 10 ms, until `stop` or [`FLOOD_CAP`].
fn flood(kafka: KafkaConfig, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let appender = KafkaAppender::new(&kafka).expect("a producer");
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) && sent < FLOOD_CAP {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            match appender.append(&Command::new(now.as_nanos() as u64, CommandKind::Clock)) {
                Ok(()) => sent += 1,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
            if sent % BATCH == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        sent
    })
}

#[test]
fn a_site_behind_its_log_refuses_orders_and_status_with_catching_up_until_it_has_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let rtt = [Duration::from_millis(25); 3];
    let topic = "catch-up.commands";
    let cluster = SiteCluster::start(
        &["cloud-a", "cloud-b", "metal"],
        &rtt,
        topic,
        Duration::ZERO,
    )
    .unwrap();
    let mut kafka = KafkaConfig::new(&cluster.bootstrap(), topic, 0);
    kafka.allow_unsafe_topic = true;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = flood(kafka.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    let (binary, http) = (free_port().unwrap(), free_port().unwrap());
    let member = [("m".to_string(), TOKEN.to_string(), 1000)];
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut config = node_config("cloud-b", &kafka, &engine, (binary, http), &member, 0);
    config.data_dir = dir.path().join("cloud-b");
    config.clock_every_ms = 100;
    let node = Node::start(config).unwrap();

    let body = wait_health(http, 503, "catching_up", Duration::from_secs(30));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["shards"][0]["catching_up"], true, "{body}");
    assert_eq!(health["shards"][0]["available"], true, "{body}");
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        client.send(&buy("o1", "1")).await.unwrap();
        let refused = report(&mut client).await;
        assert_eq!(
            (refused.exec_type, refused.reason),
            (exec_type::REJECTED, reason::CATCHING_UP)
        );
        // Taking risk off is not refused: it goes to the log, answered once applied here.
        client
            .send(&ClientMessage::MassCancel { symbol: None })
            .await
            .unwrap();
        // A mass status is answered, with the site's state at its position, saying the site
        // is catching up (how a member learns what happened between its sessions).
        client
            .send(&ClientMessage::MassStatus { symbol: None })
            .await
            .unwrap();
        loop {
            match next(&mut client).await {
                ServerMessage::MassStatusReport { behind, .. } => {
                    assert_eq!(behind, session_reject::CATCHING_UP as u8);
                    break;
                }
                ServerMessage::ExecutionReport(_) => {}
                other => panic!("expected the mass status, got {other:?}"),
            }
        }
    });
    let metrics = node.metrics();
    let sample = |prefix: &str| -> u64 {
        let line = metrics.lines().find(|line| line.starts_with(prefix));
        let value = line.and_then(|line| line.rsplit(' ').next());
        value.and_then(|v| v.parse().ok()).expect(prefix)
    };
    assert_eq!(sample("exchange_catching_up{"), 1, "{metrics}");
    // Only the member's order was refused, not its mass cancel; the site's idle clocks (every 100 ms while its
    // members send nothing) and its listing of BTC-USD went to the log: dead-man's switches
    // need log time to move, and a site that cannot list its symbols does not start.
    let outcome = |o: &str| {
        sample(&format!(
            "exchange_commands_submitted_total{{site=\"cloud-b\",outcome=\"{o}\"}}"
        ))
    };
    assert_eq!(outcome("catching_up"), 1, "{metrics}");
    assert!(outcome("queued") >= 1, "{metrics}");

    stop.store(true, Ordering::Relaxed);
    assert!(producer.join().unwrap() > 0);
    for site in 0..3 {
        cluster
            .set_round_trip_time(site, Duration::from_millis(1))
            .unwrap();
    }
    wait_health(http, 200, "ok", Duration::from_secs(120));
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        client.send(&buy("o2", "1")).await.unwrap();
        // The mass cancel's report may come first: the account's sessions hear of it when
        // this site applies it, which may be after this logon.
        let accepted = loop {
            match next(&mut client).await {
                ServerMessage::ExecutionReport(report) => break report,
                ServerMessage::MassCancelReport { cancelled: 0, .. } => continue,
                other => panic!("expected o2's report, got {other:?}"),
            }
        };
        assert_eq!(accepted.exec_type, exec_type::NEW, "{accepted:?}");
    });
    node.shutdown().unwrap();
}

//! A site whose clock runs ahead refuses, rather than move the log's time. On the mock cluster
//! (as on tansu) a record's time is its producer's create time, so a site ten minutes fast
//! would put every site's log time ten minutes ahead and fire every dead-man's switch early.
//! Here cloud-a (right clock) trades on the log; cloud-b starts with its clock ten minutes
//! ahead. It reads cloud-a's records, finds its clock ahead of the log's, and refuses a new
//! order (reason 35), a mass cancel and a mass status (SessionReject 35) with `clock_skew`;
//! `/health` says `clock_skew` (503) and the gauge is 1. No record of the log is stamped ahead
//! of time, and cloud-a still takes orders.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;
#[path = "common/orders.rs"]
mod orders;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{next, report, runtime};
use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use gateway::binary::{exec_type, msg_type, reason, session_reject, ClientMessage, ServerMessage};
use gateway::binary_client::BinaryClient;
use health::wait_health;
use node::{Node, NodeConfig};
use orders::buy;
use replicator::kafka::{KafkaConfig, KafkaReader};

const TOKEN: &str = "clock-skew-token-01";
const TEN_MINUTES_NS: i64 = 600_000_000_000;

/// A site on `kafka` with its ports, idle clocks every 100 ms.
fn site(name: &str, kafka: &KafkaConfig, dir: &std::path::Path) -> NodeConfig {
    let ports = (free_port().unwrap(), free_port().unwrap());
    let member = [("m".to_string(), TOKEN.to_string(), 1000)];
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut config = node_config(name, kafka, &engine, ports, &member, 0);
    config.data_dir = dir.join(name);
    config.clock_every_ms = 100;
    config
}

/// How far ahead of the wall clock as it reads them the log's first `end` records were
/// stamped, the most of them, milliseconds (negative: none was).
fn log_ahead_ms(kafka: &KafkaConfig, end: u64) -> i64 {
    let mut reader = KafkaReader::new(kafka, 0).unwrap();
    let mut ahead = i64::MIN;
    while reader.position() < end {
        let Some((_, command)) = reader.poll(Duration::from_secs(10)).unwrap() else {
            panic!("the log ended at {} of {end}", reader.position());
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        ahead = ahead.max((command.ts.0 as i64 - now.as_nanos() as i64) / 1_000_000);
    }
    ahead
}

/// Sends `order`, a mass cancel and a mass status on a new session at `binary`: the order's
/// report, the mass cancel's session reject code, and why the mass status answer (given
/// anyway, the state at the site's position) may be behind.
async fn refused(binary: std::net::SocketAddr) -> (u8, u8, Vec<(u16, u8)>) {
    let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
    client.send(&buy("b1", "1")).await.unwrap();
    let answer = report(&mut client).await;
    for message in [
        ClientMessage::MassCancel { symbol: None },
        ClientMessage::MassStatus { symbol: None },
    ] {
        client.send(&message).await.unwrap();
    }
    let mut rejects = Vec::new();
    while rejects.len() < 2 {
        match next(&mut client).await {
            ServerMessage::SessionReject {
                code,
                rejected_type,
            } => rejects.push((code, rejected_type)),
            ServerMessage::MassStatusReport { behind, .. } => {
                rejects.push((u16::from(behind), msg_type::MASS_STATUS));
            }
            ServerMessage::ExecutionReport(_) => {}
            other => panic!("expected a SessionReject or the mass status, got {other:?}"),
        }
    }
    (answer.exec_type, answer.reason, rejects)
}

#[test]
fn a_site_whose_clock_runs_ahead_refuses_with_clock_skew_and_moves_no_log_time() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "clock-skew.commands";
    let rtt = [Duration::from_millis(1); 3];
    let sites = ["cloud-a", "cloud-b", "metal"];
    let cluster = SiteCluster::start(&sites, &rtt, topic, Duration::ZERO).unwrap();
    let mut kafka = KafkaConfig::new(&cluster.bootstrap(), topic, 0);
    kafka.allow_unsafe_topic = true;

    let a = site("cloud-a", &kafka, dir.path());
    let a_http = a.listen.http.unwrap();
    let a_node = Node::start(a).unwrap();
    wait_health(a_http, 200, "ok", Duration::from_secs(60));
    let b = site("cloud-b", &kafka, dir.path());
    let (b_binary, b_http) = (b.listen.binary, b.listen.http.unwrap());
    let b_node = Node::start_with_clock_offset(b, TEN_MINUTES_NS).unwrap();

    let body = wait_health(b_http, 503, "clock_skew", Duration::from_secs(60));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["shards"][0]["clock_skew"], true, "{body}");
    let ahead = health["shards"][0]["clock_ahead_ms"].as_i64().unwrap();
    assert!((590_000..=610_000).contains(&ahead), "{body}");
    let (exec, why, rejects) = runtime().block_on(refused(b_binary));
    assert_eq!((exec, why), (exec_type::REJECTED, reason::CLOCK_SKEW));
    assert_eq!(
        rejects,
        [
            (session_reject::CLOCK_SKEW, msg_type::MASS_CANCEL),
            (session_reject::CLOCK_SKEW, msg_type::MASS_STATUS)
        ]
    );
    let metrics = b_node.metrics();
    assert!(
        metrics.contains("exchange_clock_skew{site=\"cloud-b\",shard=\"0\"} 1"),
        "{metrics}"
    );

    // Nothing cloud-b stamped got in: the log's time is the right clock's.
    let (_, body) = health::http_get(a_http, "/health");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let end = health["log"]["durable"].as_u64().unwrap();
    let ahead = log_ahead_ms(&kafka, end);
    assert!(ahead < 1_000, "a record stamped {ahead} ms ahead of time");
    runtime().block_on(async {
        let a_binary = a_node.binary_addr();
        let (mut client, _) = BinaryClient::logon(a_binary, TOKEN, false).await.unwrap();
        client.send(&buy("a1", "1")).await.unwrap();
        assert_eq!(report(&mut client).await.exec_type, exec_type::NEW);
    });
    b_node.shutdown().unwrap();
    a_node.shutdown().unwrap();
}

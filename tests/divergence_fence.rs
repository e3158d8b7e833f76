//! A site whose state departs from the others' fences itself (`node::fence`). Three sites on
//! one Kafka log (librdkafka's mock cluster) publish state hashes to the hashes topic every 20
//! records; the planted difference is `metal`'s engine configured with a 7 s dedup window
//! where the others have 60 s: a misconfiguration nothing else catches, which changes what
//! the engine remembers. One order is placed and cancelled; 7 s of log time later `metal`
//! forgets it and the others do not, so from the next hash on `metal` is the minority. It then
//! says `diverged` on `/health` (503, with the position and both hashes), refuses orders as
//! `unavailable`, and counts `exchange_diverged 1`; the other two stay `ok` and trade on.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;
#[path = "common/orders.rs"]
mod orders;

use std::net::SocketAddr;
use std::time::Duration;

use common::{report, runtime};
use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use engine::{EngineConfig, OrderId, Symbol};
use gateway::binary::{exec_type, reason, ClientMessage};
use gateway::binary_client::BinaryClient;
use health::{http_get, wait_health};
use node::Node;
use orders::buy;
use replicator::kafka::KafkaConfig;

const TOKEN: &str = "fence-member-0001";
const TOPIC: &str = "fence.commands";
const SITES: [&str; 3] = ["cloud-a", "cloud-b", "metal"];

fn site(name: &str, kafka: &KafkaConfig, engine: &EngineConfig, dir: &std::path::Path) -> Node {
    let (binary, http) = (free_port().unwrap(), free_port().unwrap());
    let member = [("m".to_string(), TOKEN.to_string(), 1000)];
    let mut config = node_config(name, kafka, engine, (binary, http), &member, 20);
    config.data_dir = dir.join(name);
    config.clock_every_ms = 100;
    Node::start(config).unwrap()
}

/// Sends `message` as the member through `binary` and returns the report's exec type and
/// reason.
fn send(binary: SocketAddr, message: ClientMessage) -> (u8, u8) {
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        client.send(&message).await.unwrap();
        let answer = report(&mut client).await;
        (answer.exec_type, answer.reason)
    })
}

#[test]
fn a_site_whose_state_hash_is_the_minoritys_is_fenced_and_the_others_trade_on() {
    let dir = tempfile::tempdir().unwrap();
    let rtt = [Duration::from_millis(1); 3];
    let cluster = SiteCluster::start(&SITES, &rtt, TOPIC, Duration::ZERO).unwrap();
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        // A short delivery timeout, so that a 7 s dedup window is allowed on Kafka.
        delivery_timeout_ms: 1_000,
        ..KafkaConfig::new(&cluster.bootstrap(), TOPIC, 0)
    };
    let agreed = drill_engine(7, Duration::from_secs(60));
    let planted = EngineConfig {
        dedup_window_ns: 7_000_000_000,
        ..agreed
    };
    let engines = [agreed, agreed, planted];
    let nodes: Vec<Node> = (SITES.iter().zip(&engines))
        .map(|(name, engine)| site(name, &kafka, engine, dir.path()))
        .collect();
    let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http_addr().unwrap()).collect();
    for addr in &http {
        wait_health(*addr, 200, "ok", Duration::from_secs(30));
    }
    let a = nodes[0].binary_addr();
    assert_eq!(send(a, buy("o1", "1")).0, exec_type::NEW);
    let cancel = ClientMessage::Cancel {
        cl_ord_id: OrderId::new("o1").unwrap(),
        symbol: Symbol::new("BTC-USD").unwrap(),
    };
    assert_eq!(send(a, cancel).0, exec_type::CANCELED);

    let body = wait_health(http[2], 503, "diverged", Duration::from_secs(60));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let diverged = &health["shards"][0]["diverged"];
    assert!(diverged["position"].as_u64().unwrap() > 0, "{body}");
    assert_ne!(diverged["ours"], diverged["majority"], "{body}");
    assert_eq!(
        diverged["sites"],
        serde_json::json!(["cloud-a", "cloud-b"]),
        "{body}"
    );
    let refused = send(nodes[2].binary_addr(), buy("o2", "1"));
    assert_eq!(refused, (exec_type::REJECTED, reason::UNAVAILABLE));
    let (_, metrics) = http_get(http[2], "/metrics");
    assert!(
        metrics.contains("exchange_diverged{site=\"metal\",shard=\"0\"} 1"),
        "{metrics}"
    );

    // The majority is not fenced, and trades on.
    for addr in &http[..2] {
        let (status, body) = http_get(*addr, "/health");
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        send(nodes[1].binary_addr(), buy("o3", "1")).0,
        exec_type::NEW
    );
    for node in nodes {
        node.shutdown().unwrap();
    }
}

//! A site whose state departs from the others' fences itself (`node::fence`). Three sites on
//! one Kafka log (librdkafka's mock cluster), configured alike, publish state hashes to the
//! hashes topic every 20 records. The planted difference: `metal` starts from a snapshot that
//! holds an order the log never had (as a bug, or a flipped bit, would leave it), so from its
//! first hash on it is the minority. It then says `diverged` on `/health` (503, with the
//! position and both hashes), refuses orders as `unavailable`, and counts
//! `exchange_diverged 1`; the other two stay `ok` and trade on. Without the planted order
//! nobody is fenced (checked first, with the same three sites).

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
use engine::{
    AccountId, Command, CommandKind, EngineConfig, EventKind, NewOrder, OrdType, OrderId, Price,
    Qty, Side, Stp, Symbol, Tif, TimestampNs,
};
use gateway::binary::{exec_type, reason, ClientMessage};
use gateway::binary_client::BinaryClient;
use health::{http_get, wait_health};
use node::Node;
use orders::buy;
use replicator::divergence::HashReport;
use replicator::kafka::KafkaConfig;
use replicator::snapshots::SnapshotStore;

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

/// Waits until every site published a hash at a common position past `past`; returns it.
fn common_hash_past(http: &[SocketAddr], past: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let positions: Vec<Vec<u64>> = (http.iter())
            .map(|addr| {
                let (_, body) = http_get(*addr, "/v1/hashes");
                let reports: Vec<HashReport> = serde_json::from_str(&body).unwrap();
                reports.iter().map(|r| r.position).collect()
            })
            .collect();
        let common = (positions[0].iter())
            .filter(|p| **p > past && positions.iter().all(|ps| ps.contains(p)))
            .max();
        if let Some(position) = common {
            return *position;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no common hash past {past}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Rewrites the newest snapshot in `dir` with an order added that the log never had.
fn plant_an_order(dir: &std::path::Path) {
    let store = SnapshotStore::open(&dir.join("snapshots"), 2).unwrap();
    let loaded = store.load_latest().unwrap().loaded.expect("a snapshot");
    let mut engine = loaded.engine;
    // Log time never moves back: an old stamp is applied at the engine's own time.
    let ts = TimestampNs(0);
    let planted = NewOrder {
        account: AccountId(1000),
        order_id: OrderId::new("planted").unwrap(),
        symbol: Symbol::new("BTC-USD").unwrap(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        price: Some(Price::parse("99").unwrap()),
        qty: Qty::parse("1").unwrap(),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        session: 0,
    };
    let mut events = Vec::new();
    engine.apply(
        &Command {
            ts,
            kind: CommandKind::New(planted),
        },
        &mut events,
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Accepted { .. })),
        "{events:?}"
    );
    store.save(loaded.position, &engine).unwrap();
}

#[test]
fn a_site_whose_state_hash_is_the_minoritys_is_fenced_and_the_others_trade_on() {
    let dir = tempfile::tempdir().unwrap();
    let rtt = [Duration::from_millis(1); 3];
    let cluster = SiteCluster::start(&SITES, &rtt, TOPIC, Duration::ZERO).unwrap();
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&cluster.bootstrap(), TOPIC, 0)
    };
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut nodes: Vec<Node> = (SITES.iter())
        .map(|name| site(name, &kafka, &engine, dir.path()))
        .collect();
    let mut http: Vec<SocketAddr> = nodes.iter().map(|n| n.http_addr().unwrap()).collect();
    for addr in &http {
        wait_health(*addr, 200, "ok", Duration::from_secs(30));
    }
    assert_eq!(
        send(nodes[0].binary_addr(), buy("o1", "1")).0,
        exec_type::NEW
    );
    // Alike, nobody is fenced.
    let agreed = common_hash_past(&http, 0);
    common_hash_past(&http, agreed);
    for addr in &http {
        let (status, body) = http_get(*addr, "/health");
        assert_eq!(status, 200, "{body}");
    }

    let metal = nodes.pop().unwrap();
    metal.shutdown().unwrap();
    plant_an_order(&dir.path().join("metal"));
    nodes.push(site("metal", &kafka, &engine, dir.path()));
    http[2] = nodes[2].http_addr().unwrap();
    let body = wait_health(http[2], 503, "diverged", Duration::from_secs(60));
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let diverged = &health["shards"][0]["diverged"];
    assert!(diverged["position"].as_u64().unwrap() > agreed, "{body}");
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

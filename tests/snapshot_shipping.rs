//! A new site starts from another site's snapshot (`exchange bootstrap`, `node::ship`): on a
//! Kafka log (librdkafka's mock cluster), site `cloud-a` trades and takes snapshots; site
//! `cloud-b`, with an empty data directory, fetches `cloud-a`'s newest snapshot over its HTTP
//! with the operator's token, starts from it, reads the log from its position, and publishes
//! the same state hashes as `cloud-a` at the same positions. Refused, saving nothing: a wrong
//! token, another log, other engine capacities, a body damaged in transit, a format version
//! this binary does not read.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;
#[path = "common/orders.rs"]
mod orders;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{report, runtime};
use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use gateway::binary::exec_type;
use gateway::binary_client::BinaryClient;
use health::{http_get, wait_health};
use node::ship::{self, Took};
use node::{AdminSection, Node, NodeConfig};
use orders::buy;
use replicator::divergence::HashReport;
use replicator::kafka::KafkaConfig;
use replicator::log::LogConfig;

const TOKEN: &str = "shipping-member-0001";
const ADMIN: &str = "shipping-admin-token-0001";
const TOPIC: &str = "shipping.commands";

/// Site `name` on `kafka`, its data and admin token under `dir`, a snapshot every 50 records
/// and a state hash every 20.
fn site(name: &str, kafka: &KafkaConfig, dir: &Path) -> NodeConfig {
    let (binary, http) = (free_port().unwrap(), free_port().unwrap());
    let member = [("m".to_string(), TOKEN.to_string(), 1000)];
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut config = node_config(name, kafka, &engine, (binary, http), &member, 20);
    config.data_dir = dir.join(name);
    config.clock_every_ms = 100;
    config.snapshots.every_records = 50;
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    config.admin = Some(AdminSection { token_file });
    config
}

/// Places `count` resting buys through `binary`, each acknowledged.
fn trade(binary: SocketAddr, from: usize, count: usize) {
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        for n in from..from + count {
            client.send(&buy(&format!("o{n}"), "1")).await.unwrap();
            let ack = report(&mut client).await;
            assert_eq!(ack.exec_type, exec_type::NEW, "{ack:?}");
        }
    });
}

/// The site's recent state hashes by position.
fn hashes(http: SocketAddr) -> BTreeMap<u64, String> {
    let (status, body) = http_get(http, "/v1/hashes");
    assert_eq!(status, 200, "{body}");
    let reports: Vec<HashReport> = serde_json::from_str(&body).unwrap();
    reports.into_iter().map(|r| (r.position, r.hash)).collect()
}

/// Waits until `a` and `b` both published hashes at a position past `past`, and returns
/// the positions both published, each with its hash, asserting they agree.
fn agree_past(a: SocketAddr, b: SocketAddr, past: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ours, theirs) = (hashes(a), hashes(b));
        let common: Vec<u64> = (ours.keys().filter(|p| theirs.contains_key(p)))
            .copied()
            .collect();
        for position in &common {
            assert_eq!(ours[position], theirs[position], "at position {position}");
        }
        if common.iter().any(|&p| p > past) {
            return common;
        }
        assert!(Instant::now() < deadline, "no common hash past {past}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fetches `url` until the site has a snapshot past `past`.
fn fetch_past(url: &str, past: u64) -> ship::Shipment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(shipment) = ship::fetch(url, ADMIN) {
            if shipment.position > past {
                return shipment;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot past {past} at {url}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_new_site_starts_from_another_sites_snapshot_and_agrees_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let rtt = [Duration::from_millis(1); 3];
    let cluster = SiteCluster::start(
        &["cloud-a", "cloud-b", "metal"],
        &rtt,
        TOPIC,
        Duration::ZERO,
    )
    .unwrap();
    let mut kafka = KafkaConfig::new(&cluster.bootstrap(), TOPIC, 0);
    kafka.allow_unsafe_topic = true;
    let a_config = site("cloud-a", &kafka, dir.path());
    let a = Node::start(a_config.clone()).unwrap();
    let a_http = a.http_addr().unwrap();
    wait_health(a_http, 200, "ok", Duration::from_secs(30));
    trade(a.binary_addr(), 0, 40);

    let url = format!("http://{a_http}/v1/admin/snapshots/0");
    let shipped = fetch_past(&url, 40);
    let b_config = site("cloud-b", &kafka, dir.path());
    let took = ship::bootstrap(&b_config, &format!("http://{a_http}"), ADMIN).unwrap();
    let Took::Saved { position, .. } = &took[0].1 else {
        panic!("expected the snapshot saved: {took:?}");
    };
    assert!(*position >= shipped.position, "{took:?}");
    // Fetched again, it is no newer than the one saved: left.
    let again = ship::bootstrap(&b_config, &format!("http://{a_http}"), ADMIN).unwrap();
    assert!(
        matches!(again[0].1, Took::Kept { .. } | Took::Saved { .. }),
        "{again:?}"
    );

    let b = Node::start(b_config).unwrap();
    assert!(
        b.recovered[0].snapshot >= Some(*position),
        "{:?}",
        b.recovered[0].snapshot
    );
    let b_http = b.http_addr().unwrap();
    wait_health(b_http, 200, "ok", Duration::from_secs(30));
    trade(b.binary_addr(), 40, 10);
    agree_past(a_http, b_http, *position + 20);

    refusals(&a_config, &url, dir.path());
    b.shutdown().unwrap();
    a.shutdown().unwrap();
}

/// Each refused with its reason, and nothing saved.
fn refusals(a_config: &NodeConfig, url: &str, dir: &Path) {
    let base = url.trim_end_matches("/v1/admin/snapshots/0");
    let fresh = |name: &str| {
        let mut config = a_config.clone();
        config.data_dir = dir.join(name);
        config
    };
    let wrong = ship::bootstrap(&fresh("c1"), base, "not-the-token").unwrap_err();
    assert!(
        format!("{wrong:#}").contains("refused the admin token"),
        "{wrong:#}"
    );

    let mut other_log = fresh("c2");
    if let LogConfig::Kafka { topic, .. } = &mut other_log.log {
        *topic = "other.commands".into();
    }
    let err = ship::bootstrap(&other_log, base, ADMIN).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("kafka:shipping.commands/0") && text.contains("another configuration"),
        "{text}"
    );

    let mut bigger = fresh("c3");
    bigger.engine.orders_max *= 2;
    let err = ship::bootstrap(&bigger, base, ADMIN).unwrap_err();
    assert!(
        format!("{err:#}").contains("other engine capacities"),
        "{err:#}"
    );

    let config = fresh("c4");
    let shard = &config.plan().unwrap().shards[0];
    let mut damaged = ship::fetch(url, ADMIN).unwrap();
    let middle = damaged.bytes.len() / 2;
    damaged.bytes[middle] ^= 1;
    let err = ship::accept(&config, shard, &damaged).unwrap_err();
    assert!(err.to_string().contains("damaged in transit"), "{err}");
    let mut newer = ship::fetch(url, ADMIN).unwrap();
    newer.version += 1;
    let err = ship::accept(&config, shard, &newer).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {}", newer.version)) && text.contains("reads version"),
        "{text}"
    );

    for name in ["c1", "c2", "c3", "c4"] {
        let snapshots = dir.join(name).join("snapshots");
        let saved = std::fs::read_dir(&snapshots)
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(saved, 0, "{name}: {}", snapshots.display());
    }
}

//! A site whose Kafka leader stops answering in time (librdkafka's mock cluster, every
//! broker's round trip made 2 s, as tansu's were while it served a returning site's backlog)
//! refuses its members' orders with `unavailable` at once, and `/health` says so; its idle
//! clocks still go to the log all the while, so log time, and every dead-man's switch, keeps
//! moving once the leader answers. When the round trips are short again it takes orders.

#[path = "common/binary.rs"]
mod common;
#[path = "common/health.rs"]
mod health;
#[path = "common/orders.rs"]
mod orders;

use std::time::Duration;

use common::{report, runtime};
use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use gateway::binary::{exec_type, reason};
use gateway::binary_client::BinaryClient;
use health::wait_health;
use node::Node;
use orders::buy;
use replicator::kafka::KafkaConfig;

const TOKEN: &str = "slow-leader-token-01";
const SITES: [&str; 3] = ["cloud-a", "cloud-b", "metal"];

#[test]
fn a_site_whose_leader_is_slow_refuses_its_members_and_still_sends_its_idle_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "slow-leader.commands";
    let rtt = [Duration::from_millis(1); 3];
    let cluster = SiteCluster::start(&SITES, &rtt, topic, Duration::ZERO).unwrap();
    let mut kafka = KafkaConfig::new(&cluster.bootstrap(), topic, 0);
    kafka.allow_unsafe_topic = true;
    let (binary, http) = (free_port().unwrap(), free_port().unwrap());
    let member = [("m".to_string(), TOKEN.to_string(), 1000)];
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut config = node_config("cloud-a", &kafka, &engine, (binary, http), &member, 0);
    config.data_dir = dir.path().join("cloud-a");
    config.clock_every_ms = 100;
    let node = Node::start(config).unwrap();
    wait_health(http, 200, "ok", Duration::from_secs(30));

    for site in 0..SITES.len() {
        cluster
            .set_round_trip_time(site, Duration::from_secs(2))
            .unwrap();
    }
    wait_health(http, 503, "unavailable", Duration::from_secs(30));
    let queued_then = outcome(&node, "queued");
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        client.send(&buy("o1", "1")).await.unwrap();
        let refused = report(&mut client).await;
        assert_eq!(
            (refused.exec_type, refused.reason),
            (exec_type::REJECTED, reason::UNAVAILABLE)
        );
    });
    std::thread::sleep(Duration::from_millis(1_000));
    wait_health(http, 503, "unavailable", Duration::ZERO);
    // Only the member's order was refused; the idle clocks (due every 50 ms while nothing
    // else goes) went to the producer.
    assert_eq!(outcome(&node, "unavailable"), 1, "{}", node.metrics());
    let clocks = outcome(&node, "queued") - queued_then;
    assert!(
        clocks >= 5,
        "{clocks} clocks queued in a second: {}",
        node.metrics()
    );

    for site in 0..SITES.len() {
        cluster
            .set_round_trip_time(site, Duration::from_millis(1))
            .unwrap();
    }
    wait_health(http, 200, "ok", Duration::from_secs(60));
    runtime().block_on(async {
        let (mut client, _) = BinaryClient::logon(binary, TOKEN, false).await.unwrap();
        client.send(&buy("o2", "1")).await.unwrap();
        let accepted = report(&mut client).await;
        assert_eq!(accepted.exec_type, exec_type::NEW, "{accepted:?}");
    });
    node.shutdown().unwrap();
}

/// The node's count of members' and its own commands with `outcome` at submission.
fn outcome(node: &Node, outcome: &str) -> u64 {
    let metrics = node.metrics();
    let name =
        format!("exchange_commands_submitted_total{{site=\"cloud-a\",outcome=\"{outcome}\"}}");
    let line = metrics.lines().find(|line| line.starts_with(&name));
    let value = line.and_then(|line| line.rsplit(' ').next());
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

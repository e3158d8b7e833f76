//! Rolling upgrades: the log says which rules apply from which command, and a binary that meets
//! what it cannot apply stops with a clear error and exit status 78, which a supervisor is told
//! not to restart (a restart would stop at the same record, for ever).
//!
//! - A rules switch to a version this binary implements (`POST /v1/admin/rules`) applies at
//!   every shard and changes nothing else; one it does not implement is refused by the admin
//!   endpoint, and, found in the log, stops the node: running, starting again, and as
//!   `exchange node` with exit status 78.
//! - A kind of command this binary does not know (written by a newer one) on a Kafka log
//!   stops the node the same way.

#[path = "common/health.rs"]
mod health;

use std::path::Path;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use drill::cluster::SiteCluster;
use drill::sites::{drill_engine, free_port, node_config};
use engine::{Command, CommandKind, SetRules, RULES_VERSION};
use gateway::Member;
use health::wait_health;
use node::{AdminSection, Node, NodeConfig};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use replicator::kafka::KafkaConfig;
use serde_json::{json, Value};

const TOKEN: &str = "rules-admin-token-0001";

/// A site on the journal in `dir/data`, with HTTP and the admin endpoint.
fn config(dir: &Path) -> NodeConfig {
    let member = Member {
        name: "m".into(),
        token: "rules-member-0001".into(),
        account: 1,
    };
    let mut config = NodeConfig::for_tests("rules", &dir.join("data"), vec![member]);
    config.listen.http = Some(free_port().unwrap());
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    config.admin = Some(AdminSection { token_file });
    config
}

/// POSTs `body` to `/v1/admin/rules`: the status and the answer.
fn post_rules(site: &Node, body: Value) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{}/v1/admin/rules", site.http_addr().unwrap());
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(body)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap())
}

/// Waits until the node stops following its log; returns why.
fn wait_failure(site: &Node) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(failure) = site.failure() {
            return failure;
        }
        assert!(Instant::now() < deadline, "the node never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rules_version_the_binary_does_not_implement_stops_it_for_good_with_status_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let site = Node::start(config.clone()).unwrap();
    let http = site.http_addr().unwrap();
    let body = wait_health(http, 200, "ok", Duration::from_secs(10));
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["rules_implemented"], RULES_VERSION, "{body}");
    // The admin endpoint takes a version this site implements, and refuses a newer one.
    let (status, answer) = post_rules(&site, json!({ "version": RULES_VERSION }));
    assert_eq!(status, 202, "{answer}");
    let newer = RULES_VERSION + 1;
    let (status, answer) = post_rules(&site, json!({ "version": newer }));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("implements 1 to"),
        "{answer}"
    );
    assert!(site.failure().is_none());

    // As a newer site's operator would: the switch is in the log.
    site.hub()
        .submit(CommandKind::Rules(SetRules { version: newer }))
        .unwrap();
    let failure = wait_failure(&site);
    assert!(
        failure.contains(&format!("switches to rules version {newer}")),
        "{failure}"
    );
    assert!(site.needs_newer_binary());
    wait_health(http, 503, "failed", Duration::from_secs(5));
    // Its shutdown reports the shard's failure.
    assert!(site.shutdown().is_err());

    // Started again, it stops in recovery, saying why, as one that a newer binary can pass.
    let err = Node::start(config.clone()).err().expect("refused");
    assert!(node::needs_newer_binary(&err), "{err:#}");
    assert!(
        format!("{err:#}").contains("start a binary that implements it"),
        "{err:#}"
    );

    // `exchange node` exits 78, so that a supervisor leaves it stopped.
    let path = dir.path().join("node.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let output = Process::new(env!("CARGO_BIN_EXE_exchange"))
        .args(["node", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("rules version {newer}")),
        "{stderr}"
    );
}

/// Appends a record whose command kind is past every kind this binary knows, framed as the
/// Kafka log frames commands (version 1, CRC-32, bincode: 8-byte time, 4-byte kind index).
fn append_unknown_kind(kafka: &KafkaConfig, kind: u32) {
    let mut body = Vec::new();
    body.extend_from_slice(&1_000_000u64.to_le_bytes());
    body.extend_from_slice(&kind.to_le_bytes());
    let mut value = vec![1];
    value.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    value.extend_from_slice(&body);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()
        .unwrap();
    let record: BaseRecord<'_, str, [u8]> =
        BaseRecord::to(&kafka.topic).partition(0).payload(&value);
    producer.send(record).map_err(|(err, _)| err).unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_kind_of_command_the_binary_does_not_know_stops_it_as_needing_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "rules.commands";
    let rtt = [Duration::from_millis(1); 3];
    let cluster = SiteCluster::start(
        &["cloud-a", "cloud-b", "metal"],
        &rtt,
        topic,
        Duration::ZERO,
    )
    .unwrap();
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new(&cluster.bootstrap(), topic, 0)
    };
    let (binary, http) = (free_port().unwrap(), free_port().unwrap());
    let engine = drill_engine(7, Duration::from_secs(60));
    let mut config = node_config("cloud-a", &kafka, &engine, (binary, http), &[], 0);
    config.data_dir = dir.path().join("cloud-a");
    let site = Node::start(config).unwrap();
    wait_health(http, 200, "ok", Duration::from_secs(30));
    // A command the engine knows keeps it going; then one it does not.
    let clock = Command::new(1, CommandKind::Clock);
    replicator::kafka::KafkaAppender::new(&kafka)
        .unwrap()
        .append(&clock)
        .unwrap();
    append_unknown_kind(&kafka, 40);
    let failure = wait_failure(&site);
    assert!(
        failure.contains("command kind 40 is newer than this binary"),
        "{failure}"
    );
    assert!(failure.contains("needs a newer binary"), "{failure}");
    assert!(site.needs_newer_binary());
    assert!(site.shutdown().is_err());
}

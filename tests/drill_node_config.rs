//! The node configuration `exchange drill` writes for its local sites (`drill::sites`) is one
//! `exchange node` accepts. The drill crate cannot load it itself: the node's configuration is
//! this crate's.

use drill::sites::{drill_engine, members, node_toml};
use node::NodeConfig;
use replicator::kafka::KafkaConfig;

/// The node configuration the local drill writes is one `exchange node` accepts, on Kafka.
#[test]
fn the_local_node_config_is_a_valid_node_config() {
    let kafka = KafkaConfig {
        allow_unsafe_topic: true,
        ..KafkaConfig::new("127.0.0.1:9092", "drill.commands", 0)
    };
    let text = node_toml(
        "metal",
        &kafka,
        &drill_engine(7),
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        &members(2),
        1000,
    )
    .unwrap();
    let config: NodeConfig = toml::from_str(&text).unwrap();
    let plan = config.plan().unwrap();
    assert_eq!(config.site, "metal");
    assert_eq!(plan.shards[0].log.kafka(), Some(kafka));
    assert_eq!(config.members.len(), 2);
}

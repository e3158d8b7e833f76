//! The failover client against a real site (an embedded node on its own journal): silence
//! means a test request went unanswered, not that the client itself stopped reading.

use std::time::{Duration, Instant};

use drill::failover::{FailoverClient, FailoverConfig};
use gateway::Member;
use node::{Node, NodeConfig};

/// Seen in the drill: its audit client pauses between reads (it waits for the sites to
/// settle), and on its next read it took the site for silent, for the whole pause, and moved
/// on, round every site, again and again. A site that answers its test request at once is
/// not silent, however long the client was away.
#[test]
fn a_client_that_stopped_reading_for_a_while_does_not_take_the_site_for_dead() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member {
        name: "alice".into(),
        token: "alice-token-0001".into(),
        account: 1,
    };
    let node = Node::start(NodeConfig::for_tests("solo", dir.path(), vec![member])).unwrap();
    let site = node.binary_addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The same site twice: a move would be to its second entry.
        let config = FailoverConfig::new(vec![site, site], "alice-token-0001");
        let mut client: FailoverClient = FailoverClient::connect(config, 0).await.unwrap();
        client
            .pump(Instant::now() + Duration::from_millis(300))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        client
            .pump(Instant::now() + Duration::from_millis(1500))
            .await;
        assert!(client.failovers().is_empty(), "{:?}", client.failovers());
        assert_eq!(client.site(), 0);
    });
}

//! The failover client against a real site (an embedded node on its own journal): silence
//! means a test request went unanswered, not that the client itself stopped reading; it goes
//! back to its first site only once that site answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drill::failover::{FailoverClient, FailoverConfig};
use engine::{Command, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::NewOrderMsg;
use gateway::binary_server::{self, BinaryConfig};
use gateway::{Hub, Member, Members, Sequencer, SubmitError};
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

/// A first site that takes logons but refuses its members' orders and status questions
/// (cut off from its log, or replaying a backlog) until it is made ready.
struct NotReadyUntilToggled(AtomicBool);

impl Sequencer for NotReadyUntilToggled {
    fn submit(&self, _command: Command) -> Result<(), SubmitError> {
        self.ready()?;
        Err(SubmitError::Busy)
    }

    fn ready(&self) -> Result<(), SubmitError> {
        if self.0.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(SubmitError::Unavailable)
        }
    }
}

/// Seen in CI: clients that had left their first site came home as soon as it had taken
/// logons for a while, in the middle of its partition from the log (it refused them at once
/// and they moved again), or missed its freeze altogether. A client goes home only to a site
/// that answers its status question.
#[test]
fn a_client_returns_home_only_once_its_first_site_answers_status_questions() {
    let dir = tempfile::tempdir().unwrap();
    let token = "alice-token-0001";
    let member = || Member {
        name: "alice".into(),
        token: token.into(),
        account: 1,
    };
    let node = Node::start(NodeConfig::for_tests("solo", dir.path(), vec![member()])).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let home = Arc::new(NotReadyUntilToggled(AtomicBool::new(false)));
    let hub = Hub::new(home.clone(), Members::new(vec![member()]).unwrap(), 16);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let first = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    runtime.spawn(binary_server::serve(
        listener,
        None,
        hub,
        BinaryConfig::default(),
        stopped,
    ));
    runtime.block_on(async {
        let mut config = FailoverConfig::new(vec![first, node.binary_addr()], token);
        config.home_every = Some(Duration::from_millis(100));
        config.home_settle = Duration::from_millis(300);
        let mut client: FailoverClient = FailoverClient::connect(config, 0).await.unwrap();
        client.submit(buy("o1")).await.unwrap();
        let acks = client.drain(Duration::from_secs(5)).await;
        assert_eq!(acks.len(), 1, "acknowledged at the second site");
        assert_eq!(client.site(), 1);
        // The first site still takes logons, for far longer than the settling time.
        client
            .pump(Instant::now() + Duration::from_millis(1500))
            .await;
        assert_eq!(client.counts().returns_home, 0, "{:?}", client.failovers());
        assert_eq!(client.site(), 1);
        home.0.store(true, Ordering::Relaxed);
        client
            .pump(Instant::now() + Duration::from_millis(1500))
            .await;
        assert_eq!(client.counts().returns_home, 1);
        assert_eq!(client.site(), 0);
    });
}

fn buy(id: &str) -> NewOrderMsg {
    NewOrderMsg {
        cl_ord_id: OrderId::new(id).unwrap(),
        symbol: Symbol::new("BTC-USD").unwrap(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::None,
        price: Some(Price(100)),
        qty: Qty(1),
    }
}

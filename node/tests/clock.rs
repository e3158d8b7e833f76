//! Time comes from the log, not from a gateway: a site whose gateway's clock is ten minutes
//! fast moves no log time, so it neither fires a dead-man's switch armed through another
//! (right) clock early nor stamps anything ahead.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::{
    AccountId, CancelAfter, CommandKind, NewOrder, OrdType, OrderId, Price, Qty, Side, Stp, Symbol,
    Tif, FIXED_ONE,
};
use gateway::{Member, OrdStatus, Report};
use node::{Node, NodeConfig};

const TEN_MINUTES_NS: i64 = 600_000_000_000;
const SESSION: u64 = 7;

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn btc() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn order(id: &str) -> CommandKind {
    CommandKind::New(NewOrder {
        account: AccountId(1),
        order_id: OrderId::new(id).unwrap(),
        symbol: btc(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        price: Some(Price(100 * FIXED_ONE)),
        qty: Qty(FIXED_ONE),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        session: SESSION,
    })
}

/// Waits until the node's only shard has applied everything before `position`.
fn applied(node: &Node, position: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.hub().next_position(0) < position {
        assert!(Instant::now() < deadline, "position {position} not applied");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn state(node: &Node, id: &str) -> Report {
    let id = OrderId::new(id).unwrap();
    node.hub().order_state(&btc(), AccountId(1), &id).unwrap()
}

#[test]
fn a_gateway_ten_minutes_fast_moves_no_log_time() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member {
        name: "alice".into(),
        token: "alice-token-0001".into(),
        account: 1,
    };
    let config = NodeConfig::for_tests("clock", dir.path(), vec![member]);

    // A right clock: an order resting, and its session's dead-man's switch armed for a minute.
    let node = Node::start(config.clone()).unwrap();
    applied(&node, 1);
    let hub = node.hub();
    hub.submit(order("resting")).unwrap();
    hub.submit(CommandKind::CancelAfter(CancelAfter {
        account: AccountId(1),
        session: SESSION,
        timeout_ns: 60_000_000_000,
    }))
    .unwrap();
    applied(&node, 3);
    node.shutdown().unwrap();

    // The same site again, its gateway's clock now ten minutes fast.
    let before = wall_ns();
    let node = Node::start_with_clock_offset(config, TEN_MINUTES_NS).unwrap();
    node.hub().submit(CommandKind::Clock).unwrap();
    node.hub().submit(order("second")).unwrap();
    applied(&node, 5);
    let after = wall_ns();
    assert_eq!(
        state(&node, "resting").ord_status,
        OrdStatus::New,
        "the switch fired nine minutes early"
    );
    let second = state(&node, "second");
    assert_eq!(second.ord_status, OrdStatus::New);
    assert!(
        (before..=after).contains(&second.ts),
        "stamped {} by the log, not {before}..={after}",
        second.ts
    );
    node.shutdown().unwrap();
}

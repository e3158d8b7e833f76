//! End to end over real sockets: binary sessions → gateway → embedded journal → engine →
//! reports, on a [`Node`] as the node runs it.

#[path = "common/binary.rs"]
mod binary;

use binary::{next, report, runtime};

use std::path::Path;
use std::time::Duration;

use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{ClientMessage, NewOrderMsg, ServerMessage};
use gateway::binary_client::BinaryClient;
use gateway::binary_server::{logout, BinaryConfig};
use gateway::Member;
use node::{Node, NodeConfig};

const ALICE: &str = "alice-token-0001";
const BOB: &str = "bob-token-000002";

fn config(dir: &Path, binary: BinaryConfig) -> NodeConfig {
    let mut config = NodeConfig {
        binary,
        ..NodeConfig::for_tests(
            "test",
            dir,
            vec![
                Member {
                    name: "alice".into(),
                    token: ALICE.into(),
                    account: 1,
                },
                Member {
                    name: "bob".into(),
                    token: BOB.into(),
                    account: 2,
                },
            ],
        )
    };
    config.listen.http = Some("127.0.0.1:0".parse().unwrap());
    config
}

fn btc() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn id(text: &str) -> OrderId {
    OrderId::new(text).unwrap()
}

fn px(text: &str) -> Price {
    Price::parse(text).unwrap()
}

fn qty(text: &str) -> Qty {
    Qty::parse(text).unwrap()
}

fn limit(cl_ord_id: &str, side: Side, price: &str, quantity: &str) -> ClientMessage {
    ClientMessage::NewOrder(NewOrderMsg {
        cl_ord_id: id(cl_ord_id),
        symbol: btc(),
        side,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        price: Some(px(price)),
        qty: qty(quantity),
    })
}

#[test]
fn an_order_lifecycle_with_two_members() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, account) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        assert_eq!(account, AccountId(1));
        let (mut bob, account) = BinaryClient::logon(addr, BOB, false).await.unwrap();
        assert_eq!(account, AccountId(2));

        alice
            .send(&limit("a-1", Side::Buy, "100", "10"))
            .await
            .unwrap();
        let new = report(&mut alice).await;
        assert_eq!((new.exec_type, new.ord_status), (b'0', b'0'));
        assert_eq!((new.cl_ord_id, new.leaves_qty), (id("a-1"), qty("10")));

        // Bob sells 4 into it: both sides hear of the fill.
        bob.send(&limit("b-1", Side::Sell, "99.5", "4"))
            .await
            .unwrap();
        let bob_new = report(&mut bob).await;
        assert_eq!(bob_new.exec_type, b'0');
        let bob_fill = report(&mut bob).await;
        assert_eq!((bob_fill.exec_type, bob_fill.ord_status), (b'F', b'2'));
        assert_eq!((bob_fill.last_px, bob_fill.last_qty), (px("100"), qty("4")));
        let alice_fill = report(&mut alice).await;
        assert_eq!((alice_fill.exec_type, alice_fill.ord_status), (b'F', b'1'));
        assert_eq!(
            (alice_fill.cum_qty, alice_fill.leaves_qty, alice_fill.avg_px),
            (qty("4"), qty("6"), px("100"))
        );

        // Replace: the total down to 9, 4 of it filled, 5 open (keeps its place).
        alice
            .send(&ClientMessage::Replace {
                cl_ord_id: id("a-1"),
                symbol: btc(),
                price: None,
                qty: Some(qty("9")),
            })
            .await
            .unwrap();
        let replaced = report(&mut alice).await;
        assert_eq!((replaced.exec_type, replaced.ord_status), (b'5', b'1'));
        assert_eq!(
            (replaced.order_qty, replaced.cum_qty, replaced.leaves_qty),
            (qty("9"), qty("4"), qty("5"))
        );

        // Bob cannot touch Alice's order, even knowing its id: his account is his session's.
        bob.send(&ClientMessage::Cancel {
            cl_ord_id: id("a-1"),
            symbol: btc(),
        })
        .await
        .unwrap();
        match next(&mut bob).await {
            ServerMessage::CancelReject {
                cl_ord_id, reason, ..
            } => {
                assert_eq!((cl_ord_id, reason), (id("a-1"), 7), "unknown_order");
            }
            other => panic!("expected a cancel reject, got {other:?}"),
        }

        // Status, then cancel, then status again.
        alice
            .send(&ClientMessage::OrderStatus {
                cl_ord_id: id("a-1"),
                symbol: btc(),
            })
            .await
            .unwrap();
        let status = report(&mut alice).await;
        assert_eq!((status.exec_type, status.ord_status), (b'I', b'1'));
        assert_eq!(status.leaves_qty, qty("5"));
        alice
            .send(&ClientMessage::Cancel {
                cl_ord_id: id("a-1"),
                symbol: btc(),
            })
            .await
            .unwrap();
        let cancelled = report(&mut alice).await;
        assert_eq!((cancelled.exec_type, cancelled.ord_status), (b'4', b'4'));
        assert_eq!(
            (cancelled.cum_qty, cancelled.leaves_qty),
            (qty("4"), qty("0"))
        );
        assert_eq!(cancelled.reason, 20, "user");

        // The cancel again (a resend): refused, then the order's current state.
        alice
            .send(&ClientMessage::Cancel {
                cl_ord_id: id("a-1"),
                symbol: btc(),
            })
            .await
            .unwrap();
        assert!(matches!(
            next(&mut alice).await,
            ServerMessage::CancelReject { reason: 7, .. }
        ));
        let state = report(&mut alice).await;
        assert_eq!(
            (state.exec_type, state.ord_status, state.cum_qty),
            (b'I', b'4', qty("4"))
        );

        // Mass status: every order alice has, live or finished inside the window.
        alice
            .send(&ClientMessage::MassStatus { symbol: None })
            .await
            .unwrap();
        let listed = report(&mut alice).await;
        assert_eq!(
            (listed.cl_ord_id, listed.exec_type, listed.ord_status),
            (id("a-1"), b'I', b'4')
        );
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::MassStatusReport {
                symbol: None,
                reports: 1,
                behind: 0,
            }
        );

        // Mass cancel: two resting orders, one report for each, then the summary.
        for n in ["a-2", "a-3"] {
            alice.send(&limit(n, Side::Sell, "200", "1")).await.unwrap();
            assert_eq!(report(&mut alice).await.exec_type, b'0');
        }
        alice
            .send(&ClientMessage::MassCancel { symbol: None })
            .await
            .unwrap();
        for n in ["a-2", "a-3"] {
            let r = report(&mut alice).await;
            assert_eq!((r.cl_ord_id, r.exec_type, r.reason), (id(n), b'4', 21));
        }
        match next(&mut alice).await {
            ServerMessage::MassCancelReport { symbol, cancelled } => {
                assert_eq!((symbol, cancelled), (None, 2));
            }
            other => panic!("expected a mass cancel report, got {other:?}"),
        }
        // A mass cancel with nothing to cancel is still answered.
        alice
            .send(&ClientMessage::MassCancel {
                symbol: Some(btc()),
            })
            .await
            .unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::MassCancelReport {
                symbol: Some(btc()),
                cancelled: 0
            }
        );

        // An engine reject names its reason, with the order's own side, price and quantity.
        alice
            .send(&limit("a-4", Side::Sell, "100.25", "1"))
            .await
            .unwrap();
        let rejected = report(&mut alice).await;
        assert_eq!(
            (rejected.exec_type, rejected.reason),
            (b'8', 4),
            "invalid_price"
        );
        assert_eq!((rejected.side, rejected.price), (Side::Sell, px("100.25")));

        alice.send(&ClientMessage::Logout).await.unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::Logout {
                reason: logout::REQUESTED
            }
        );
    });
    site.shutdown().unwrap();
}

#[test]
fn a_resent_order_returns_the_original_state_and_never_a_second_order() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice
            .send(&limit("r-1", Side::Buy, "100", "3"))
            .await
            .unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
        // A client that lost its connection resends the same order, at a different price even.
        let (mut again, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        again
            .send(&limit("r-1", Side::Buy, "101", "3"))
            .await
            .unwrap();
        let state = report(&mut again).await;
        assert_eq!((state.exec_type, state.ord_status), (b'I', b'0'));
        assert_eq!((state.price, state.leaves_qty), (px("100"), qty("3")));
        // Only one order rests.
        let book = site.hub().snapshot(&btc(), 10).unwrap();
        assert_eq!(book.bids.len(), 1);
        assert_eq!(
            (book.bids[0].price, book.bids[0].qty),
            (px("100"), qty("3"))
        );
    });
    site.shutdown().unwrap();
}

/// A resend (the NewOrder's resend flag) first sent longer ago than the engines remember ids,
/// less the margin, under an id the site does not know is refused as `stale_resend` (36): it
/// may have executed and been forgotten. The same old resend of an order the site knows is
/// answered with its state; a young resend of an unknown id is a new order. Seen in the
/// simulator with a log slow for longer than the window: a member's resend executed twice.
#[test]
fn a_resend_older_than_the_dedup_window_is_refused_unless_the_site_knows_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    let window_ms = (site.hub().dedup_window_ns() / 1_000_000) as u32;
    let resend = |cl_ord_id: &str, age_ms: u32| match limit(cl_ord_id, Side::Buy, "100", "1") {
        ClientMessage::NewOrder(order) => ClientMessage::ResendOrder { order, age_ms },
        _ => unreachable!("limit builds a NewOrder"),
    };
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice.send(&resend("old-1", window_ms)).await.unwrap();
        let refused = report(&mut alice).await;
        assert_eq!((refused.exec_type, refused.reason), (b'8', 36));
        alice.send(&resend("young-1", 1_000)).await.unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
        alice.send(&resend("young-1", window_ms)).await.unwrap();
        let state = report(&mut alice).await;
        assert_eq!((state.exec_type, state.ord_status), (b'I', b'0'));
    });
    let book = site.hub().snapshot(&btc(), 10).unwrap();
    assert_eq!((book.bids.len(), book.bids[0].qty), (1, qty("1")));
    assert_eq!(
        site.hub()
            .counters()
            .stale_resends
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    site.shutdown().unwrap();
}

#[test]
fn bad_input_is_answered_and_never_crashes_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        // Unknown token.
        let refused = BinaryClient::logon(addr, "not-a-member-tok", false).await;
        let err = refused.err().expect("refused");
        assert!(err.to_string().contains("reason: 10"), "{err}");

        // An order before logging on.
        let mut early = BinaryClient::connect(addr).await.unwrap();
        early.send(&limit("x", Side::Buy, "1", "1")).await.unwrap();
        assert_eq!(
            next(&mut early).await,
            ServerMessage::Logout {
                reason: logout::NOT_LOGGED_ON
            }
        );

        // An undecodable frame: a SessionReject naming it, then the connection closes.
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        let mut frame = Vec::new();
        gateway::binary::encode_client(&limit("y", Side::Buy, "1", "1"), &mut frame);
        frame[4 + 56] = 9; // side 9
        alice.writer.send_raw(&frame).await.unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::SessionReject {
                code: 5,
                rejected_type: 0x10
            }
        );
        assert_eq!(next(&mut alice).await, ServerMessage::Logout { reason: 5 });
        assert!(alice.recv().await.unwrap().is_none());

        // A length no frame can have.
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice.writer.send_raw(&[0xff, 0xff, 1, 0x10]).await.unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::SessionReject {
                code: 1,
                rejected_type: 0x10
            }
        );

        // The gateway still serves.
        let (mut bob, _) = BinaryClient::logon(addr, BOB, false).await.unwrap();
        bob.send(&limit("b-9", Side::Buy, "1", "1")).await.unwrap();
        assert_eq!(report(&mut bob).await.exec_type, b'0');
    });
    site.shutdown().unwrap();
}

/// A client with no order in flight asks whether the site still answers: a Heartbeat with a
/// test id is answered at once with a Heartbeat carrying it; a plain one is not answered.
#[test]
fn a_test_request_is_answered_at_once_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice
            .send(&ClientMessage::Heartbeat { test_id: 0 })
            .await
            .unwrap();
        alice
            .send(&ClientMessage::Heartbeat { test_id: 42 })
            .await
            .unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::Heartbeat { test_id: 42 }
        );
    });
    site.shutdown().unwrap();
}

#[test]
fn limits_are_enforced_with_a_reject_never_a_silent_drop() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BinaryConfig {
        max_connections: 1,
        max_msg_per_sec: 5,
        logon_timeout_secs: 5,
    };
    let site = Node::start(config(dir.path(), limits)).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        // One connection at a time.
        let mut second = BinaryClient::connect(addr).await.unwrap();
        assert_eq!(
            next(&mut second).await,
            ServerMessage::Logout {
                reason: logout::TOO_MANY_CONNECTIONS
            }
        );
        // Twenty orders in one burst at 5 per second: every one is answered, the excess
        // with reason 32 (throttled).
        for n in 0..20 {
            alice
                .writer
                .queue(&limit(&format!("t-{n}"), Side::Buy, "1", "1"));
        }
        alice.writer.flush().await.unwrap();
        let (mut accepted, mut throttled) = (0, 0);
        for _ in 0..20 {
            let r = report(&mut alice).await;
            match (r.exec_type, r.reason) {
                (b'0', 0) => accepted += 1,
                (b'8', 32) => throttled += 1,
                other => panic!("unexpected report {other:?}"),
            }
        }
        assert_eq!(accepted + throttled, 20);
        assert!((5..=6).contains(&accepted), "accepted {accepted}");
    });
    site.shutdown().unwrap();
}

#[test]
fn cancel_on_disconnect_cancels_the_accounts_orders_and_a_restart_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, true).await.unwrap();
        alice
            .send(&limit("c-1", Side::Buy, "100", "2"))
            .await
            .unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
        // Alice's second session, without cancel-on-disconnect: what it enters is its own.
        let (mut alice_too, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice_too
            .send(&limit("c-2", Side::Sell, "110", "1"))
            .await
            .unwrap();
        assert_eq!(report(&mut alice_too).await.exec_type, b'0');
        let (mut bob, _) = BinaryClient::logon(addr, BOB, false).await.unwrap();
        bob.send(&limit("k-1", Side::Sell, "105", "7"))
            .await
            .unwrap();
        assert_eq!(report(&mut bob).await.exec_type, b'0');
        drop(alice);
        // The orders of Alice's cancel-on-disconnect session go (by session, not account-wide:
        // her other session's order stays); Bob's stay.
        let mut book = site.hub().snapshot(&btc(), 10).unwrap();
        for _ in 0..500 {
            if book.bids.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            book = site.hub().snapshot(&btc(), 10).unwrap();
        }
        assert!(book.bids.is_empty(), "{book:?}");
        assert_eq!(book.asks.len(), 2, "{book:?}");
        let other = site
            .hub()
            .order_state(&btc(), AccountId(1), &id("c-2"))
            .unwrap();
        assert_eq!(other.ord_status, gateway::OrdStatus::New);
        let status = site
            .hub()
            .order_state(&btc(), AccountId(1), &id("c-1"))
            .unwrap();
        assert_eq!(
            status.why,
            Some(gateway::Reason::Cancelled(engine::CancelReason::Mass))
        );
    });
    let end = site.shutdown().unwrap()[0];

    // Restart: the final snapshot holds everything; Bob's order is still there.
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    assert_eq!(site.recovered[0].snapshot, Some(end));
    assert_eq!(site.recovered[0].replayed, 0);
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut bob, _) = BinaryClient::logon(addr, BOB, false).await.unwrap();
        bob.send(&ClientMessage::OrderStatus {
            cl_ord_id: id("k-1"),
            symbol: btc(),
        })
        .await
        .unwrap();
        let status = report(&mut bob).await;
        assert_eq!((status.exec_type, status.ord_status), (b'I', b'0'));
        assert_eq!((status.price, status.leaves_qty), (px("105"), qty("7")));
        let book = site.hub().snapshot(&btc(), 10).unwrap();
        assert_eq!(
            (book.asks[0].price, book.asks[0].qty),
            (px("105"), qty("7"))
        );
    });
    site.shutdown().unwrap();
}

/// A member sets its session's dead-man's switch itself: the answer is the deadline on log
/// time; once past it, the next command on the log fires it and the session's orders are
/// cancelled with reason `expired`; 0 disarms.
#[test]
fn a_members_own_dead_mans_switch_cancels_its_sessions_orders() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path(), BinaryConfig::default())).unwrap();
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        alice
            .send(&limit("d-1", Side::Buy, "100", "1"))
            .await
            .unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
        alice
            .send(&ClientMessage::CancelAfter { timeout_ms: 50 })
            .await
            .unwrap();
        let ServerMessage::SwitchReport { deadline } = next(&mut alice).await else {
            panic!("expected a switch report")
        };
        assert!(deadline > 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Any command moves log time past the deadline: the switch fires before it applies.
        alice
            .send(&limit("d-2", Side::Buy, "99", "1"))
            .await
            .unwrap();
        let fired = report(&mut alice).await;
        assert_eq!(
            (fired.cl_ord_id, fired.exec_type, fired.reason),
            (id("d-1"), b'4', gateway::binary::reason::EXPIRED)
        );
        assert_eq!(report(&mut alice).await.cl_ord_id, id("d-2"));
        alice
            .send(&ClientMessage::CancelAfter { timeout_ms: 0 })
            .await
            .unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::SwitchReport { deadline: 0 }
        );
    });
    site.shutdown().unwrap();
}

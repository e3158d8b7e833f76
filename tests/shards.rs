//! A site of two shards behind one gateway: orders routed by symbol to each shard's own
//! journal and engine, one answer to a mass cancel of every symbol, one client order id never
//! used twice across shards, and each shard recovered on restart.

#[path = "common/binary.rs"]
mod binary;

use binary::{next, report, runtime};

use std::path::Path;

use engine::{OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};
use gateway::binary::{ClientMessage, NewOrderMsg, ServerMessage};
use gateway::binary_client::BinaryClient;
use gateway::Member;
use node::{Node, NodeConfig, ShardSection, SymbolSpec};

const ALICE: &str = "alice-token-0001";

fn shard(name: &str, symbol: &str) -> ShardSection {
    ShardSection {
        name: name.into(),
        partition: None,
        symbols: vec![SymbolSpec {
            symbol: symbol.into(),
            tick: "0.5".into(),
            lot: "1".into(),
        }],
    }
}

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        symbols: Vec::new(),
        shards: vec![shard("btc", "BTC-USD"), shard("eth", "ETH-USD")],
        ..NodeConfig::for_tests(
            "test",
            dir,
            vec![Member {
                name: "alice".into(),
                token: ALICE.into(),
                account: 1,
            }],
        )
    }
}

fn limit(cl_ord_id: &str, symbol: &str, price: &str) -> ClientMessage {
    ClientMessage::NewOrder(NewOrderMsg {
        cl_ord_id: OrderId::new(cl_ord_id).unwrap(),
        symbol: Symbol::new(symbol).unwrap(),
        side: Side::Buy,
        ord_type: OrdType::Limit,
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        price: Some(Price::parse(price).unwrap()),
        qty: Qty::parse("2").unwrap(),
    })
}

/// Records in a shard's journal directory (its segments are not empty).
fn journal_bytes(dir: &Path, shard: &str) -> u64 {
    std::fs::read_dir(dir.join("shards").join(shard).join("journal"))
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn two_shards_route_by_symbol_answer_one_mass_cancel_and_recover_each() {
    let dir = tempfile::tempdir().unwrap();
    let site = Node::start(config(dir.path())).unwrap();
    let addr = site.binary_addr();
    // Two fresh logs, each recovered (from nothing) on its own.
    assert_eq!(
        site.recovered
            .iter()
            .map(|r| (r.shard.as_str(), r.position))
            .collect::<Vec<_>>(),
        [("btc", 0), ("eth", 0)]
    );
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        for (id, symbol) in [("b-1", "BTC-USD"), ("b-2", "BTC-USD"), ("e-1", "ETH-USD")] {
            alice.send(&limit(id, symbol, "100")).await.unwrap();
            let ack = report(&mut alice).await;
            assert_eq!((ack.exec_type, ack.symbol.as_str()), (b'0', symbol));
        }
        // An id in use on the BTC shard, sent for ETH: answered with the original's state,
        // never a second order on the other shard.
        alice.send(&limit("b-1", "ETH-USD", "50")).await.unwrap();
        let answer = report(&mut alice).await;
        assert_eq!(
            (answer.cl_ord_id.as_str(), answer.symbol.as_str()),
            ("b-1", "BTC-USD")
        );
        assert_eq!(
            (answer.ord_status, answer.price),
            (b'0', Price::parse("100").unwrap())
        );
        // Unknown symbols still get the engine's reject.
        alice.send(&limit("x-1", "DOGE-USD", "1")).await.unwrap();
        let rejected = report(&mut alice).await;
        assert_eq!(
            (rejected.exec_type, rejected.reason),
            (b'8', 1),
            "unknown_symbol"
        );

        // A mass cancel of every symbol goes to both shards and is answered once, with the sum.
        alice
            .send(&ClientMessage::MassCancel { symbol: None })
            .await
            .unwrap();
        let mut cancelled = Vec::new();
        loop {
            match next(&mut alice).await {
                ServerMessage::ExecutionReport(r) => {
                    assert_eq!(r.exec_type, b'4');
                    cancelled.push(r.cl_ord_id.as_str().to_string());
                }
                ServerMessage::MassCancelReport {
                    symbol,
                    cancelled: n,
                } => {
                    assert_eq!((symbol, n), (None, 3));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        cancelled.sort();
        assert_eq!(cancelled, ["b-1", "b-2", "e-1"]);
        // Nothing more: no second summary.
        alice
            .send(&ClientMessage::MassCancel {
                symbol: Some(Symbol::new("ETH-USD").unwrap()),
            })
            .await
            .unwrap();
        assert_eq!(
            next(&mut alice).await,
            ServerMessage::MassCancelReport {
                symbol: Some(Symbol::new("ETH-USD").unwrap()),
                cancelled: 0
            }
        );
        // One resting order per shard survives the restart.
        alice.send(&limit("b-3", "BTC-USD", "101")).await.unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
        alice.send(&limit("e-2", "ETH-USD", "102")).await.unwrap();
        assert_eq!(report(&mut alice).await.exec_type, b'0');
    });
    let metrics = site.metrics();
    for expected in [
        "exchange_log_position{site=\"test\",shard=\"btc\",of=\"applied\"} 6",
        "exchange_log_position{site=\"test\",shard=\"eth\",of=\"applied\"} 5",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    assert!(journal_bytes(dir.path(), "btc") > 0 && journal_bytes(dir.path(), "eth") > 0);
    let ends = site.shutdown().unwrap();
    // BTC: listing, b-1, b-2, the unknown symbol (shard 0's engine rejects it), mass cancel,
    // b-3; ETH: listing, e-1, mass cancel, the ETH mass cancel, e-2. The refused id reuse
    // never reached a log.
    assert_eq!(ends, [6, 5]);

    let site = Node::start(config(dir.path())).unwrap();
    let positions: Vec<u64> = site.recovered.iter().map(|r| r.position).collect();
    assert_eq!(positions, ends, "each shard recovered where it stopped");
    let addr = site.binary_addr();
    runtime().block_on(async {
        let (mut alice, _) = BinaryClient::logon(addr, ALICE, false).await.unwrap();
        for (id, symbol, status) in [("b-3", "BTC-USD", b'0'), ("e-2", "ETH-USD", b'0')] {
            alice
                .send(&ClientMessage::OrderStatus {
                    cl_ord_id: OrderId::new(id).unwrap(),
                    symbol: Symbol::new(symbol).unwrap(),
                })
                .await
                .unwrap();
            let r = report(&mut alice).await;
            assert_eq!((r.cl_ord_id.as_str(), r.ord_status), (id, status));
        }
    });
    site.shutdown().unwrap();
}

#[test]
fn a_site_refuses_shards_that_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let mut twice = config(dir.path());
    twice.shards[1].symbols[0].symbol = "BTC-USD".into();
    let err = Node::start(twice).err().expect("refused").to_string();
    assert!(err.contains("BTC-USD is listed twice"), "{err}");
    // A shard's directory is its name: one name twice is one directory twice.
    let mut same_dir = config(dir.path());
    same_dir.shards[1].name = same_dir.shards[0].name.clone();
    let err = Node::start(same_dir).err().expect("refused").to_string();
    assert!(err.contains("the same name"), "{err}");
    let mut none = config(dir.path());
    none.shards.clear();
    let err = Node::start(none).err().expect("refused").to_string();
    assert!(err.contains("no symbols"), "{err}");
    let mut too_many = config(dir.path());
    too_many.shards = (0..65)
        .map(|n| shard(&format!("s{n}"), &format!("SYM-{n}")))
        .collect();
    let err = Node::start(too_many).err().expect("refused").to_string();
    assert!(err.contains("1 to 64 shards"), "{err}");
}

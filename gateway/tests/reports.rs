//! Execution reports from the desk: FIX's CumQty, LeavesQty, AvgPx, OrdStatus and ExecType
//! follow each order, checked on worked cases and against the engine over a long flow (the one
//! order table follows exactly the engine's live orders).

use std::collections::HashMap;

use engine::runner::Emitted;
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, CancelReason, Command, CommandKind, Engine,
    EngineConfig, Event, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Request, Side, Stp,
    Symbol, Tif, FIXED_ONE,
};
use flow::{FlowConfig, FlowGenerator};
use gateway::{Desk, ExecType, OrdStatus, Outbox, Reason, Report, ToSession};

fn sym() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn d(units: f64) -> i64 {
    (units * FIXED_ONE as f64).round() as i64
}

fn new(
    ts: u64,
    account: u64,
    id: &str,
    side: Side,
    price: Option<f64>,
    qty: f64,
    tif: Tif,
) -> Command {
    Command::new(
        ts,
        CommandKind::New(NewOrder {
            account: AccountId(account),
            order_id: OrderId::new(id).unwrap(),
            symbol: sym(),
            side,
            ord_type: if price.is_some() {
                OrdType::Limit
            } else {
                OrdType::Market
            },
            price: price.map(|p| Price(d(p))),
            qty: Qty(d(qty)),
            tif,
            post_only: false,
            stp: Stp::CancelTaker,
            session: 0,
        }),
    )
}

/// A one-shard desk fed one command per batch, as the hub feeds it.
struct Fed {
    desk: Desk,
    outbox: Outbox,
    batch: Vec<Emitted>,
    position: u64,
}

impl Fed {
    fn new() -> Fed {
        Fed {
            desk: Desk::new(1, EngineConfig::default().dedup_window_ns),
            outbox: Outbox::default(),
            batch: Vec::new(),
            position: 0,
        }
    }

    /// Feeds one applied command; returns what the desk sends.
    fn apply(&mut self, command: &Command, events: &[Event]) -> &[(AccountId, ToSession)] {
        self.batch.clear();
        self.batch.extend(events.iter().map(|e| Emitted::Event(*e)));
        self.batch.push(Emitted::Applied {
            position: self.position,
            command: *command,
        });
        self.position += 1;
        self.desk.apply(0, &self.batch, &mut self.outbox);
        &self.outbox.sends
    }
}

/// Runs commands through an engine and a desk; returns every message it sends.
fn run(commands: &[Command]) -> Vec<ToSession> {
    run_on(&mut Fed::new(), commands)
}

fn run_on(fed: &mut Fed, commands: &[Command]) -> Vec<ToSession> {
    let mut engine = Engine::new(EngineConfig::default()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    let mut out = Vec::new();
    let mut all = vec![Command::new(
        0,
        CommandKind::AddSymbol(AddSymbol {
            symbol: sym(),
            tick: Price(d(0.5)),
            lot: Qty(d(0.5)),
        }),
    )];
    all.extend_from_slice(commands);
    for cmd in &all {
        events.clear();
        engine.apply(cmd, &mut events);
        out.extend(fed.apply(cmd, &events).iter().map(|(_, message)| *message));
    }
    out
}

fn reports_of<'a>(out: &'a [ToSession], id: &str) -> Vec<&'a Report> {
    out.iter()
        .filter_map(|o| match o {
            ToSession::Report(r) if r.cl_ord_id.as_str() == id => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn fills_accumulate_with_a_volume_weighted_average_price() {
    let out = run(&[
        new(1, 1, "a", Side::Sell, Some(100.0), 1.0, Tif::Gtc),
        new(2, 2, "b", Side::Sell, Some(101.0), 2.0, Tif::Gtc),
        new(3, 3, "c", Side::Buy, Some(101.0), 2.5, Tif::Gtc),
        Command::new(
            4,
            CommandKind::Cancel(CancelOrder {
                account: AccountId(2),
                symbol: sym(),
                order_id: OrderId::new("b").unwrap(),
            }),
        ),
    ]);
    let c = reports_of(&out, "c");
    let summary: Vec<_> = c
        .iter()
        .map(|r| {
            (
                r.exec_type,
                r.ord_status,
                r.last_qty.0,
                r.cum_qty.0,
                r.leaves_qty.0,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (ExecType::New, OrdStatus::New, 0, 0, d(2.5)),
            (
                ExecType::Trade,
                OrdStatus::PartiallyFilled,
                d(1.0),
                d(1.0),
                d(1.5)
            ),
            (ExecType::Trade, OrdStatus::Filled, d(1.5), d(2.5), 0),
        ]
    );
    // (100 × 1 + 101 × 1.5) / 2.5 = 100.6
    assert_eq!(c[2].avg_px, Price(d(100.6)));
    assert_eq!(c[2].last_px, Price(d(101.0)));

    let b = reports_of(&out, "b");
    let last = b.last().unwrap();
    assert_eq!(
        (last.exec_type, last.ord_status),
        (ExecType::Canceled, OrdStatus::Canceled)
    );
    assert_eq!(
        (last.order_qty.0, last.cum_qty.0, last.leaves_qty.0),
        (d(2.0), d(1.5), 0)
    );
    assert_eq!(last.why, Some(Reason::Cancelled(CancelReason::User)));
}

#[test]
fn rejects_become_rejected_reports_or_cancel_rejects() {
    let out = run(&[
        new(1, 1, "a", Side::Buy, Some(100.25), 1.0, Tif::Gtc),
        Command::new(
            2,
            CommandKind::Amend(AmendOrder {
                account: AccountId(1),
                symbol: sym(),
                order_id: OrderId::new("ghost").unwrap(),
                price: None,
                qty: Some(Qty(d(1.0))),
                new_order_id: None,
            }),
        ),
    ]);
    let a = reports_of(&out, "a");
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].exec_type, a[0].ord_status),
        (ExecType::Rejected, OrdStatus::Rejected)
    );
    assert_eq!(a[0].why, Some(Reason::Rejected(RejectReason::InvalidPrice)));
    let reject = out
        .iter()
        .find_map(|o| match o {
            ToSession::CancelReject(r) => Some(r),
            _ => None,
        })
        .expect("a cancel reject");
    assert_eq!(
        (reject.request, reject.reason),
        (Request::Amend, RejectReason::UnknownOrder)
    );
}

#[test]
fn a_replace_reports_the_new_total_and_an_ioc_rest_is_cancelled() {
    let out = run(&[
        new(1, 1, "a", Side::Sell, Some(100.0), 1.0, Tif::Gtc),
        new(2, 2, "m", Side::Buy, None, 3.0, Tif::Ioc),
        new(3, 1, "r", Side::Sell, Some(105.0), 2.0, Tif::Gtc),
        Command::new(
            4,
            CommandKind::Amend(AmendOrder {
                account: AccountId(1),
                symbol: sym(),
                order_id: OrderId::new("r").unwrap(),
                price: Some(Price(d(104.0))),
                qty: Some(Qty(d(1.5))),
                new_order_id: None,
            }),
        ),
    ]);
    let m = reports_of(&out, "m");
    let last = m.last().unwrap();
    assert_eq!(
        (last.exec_type, last.cum_qty.0, last.leaves_qty.0),
        (ExecType::Canceled, d(1.0), 0)
    );
    assert_eq!(last.why, Some(Reason::Cancelled(CancelReason::Ioc)));
    assert_eq!(last.price, None, "a market order has no price");
    let r = reports_of(&out, "r");
    let replaced = r.last().unwrap();
    assert_eq!(replaced.exec_type, ExecType::Replaced);
    assert_eq!(
        (replaced.price, replaced.order_qty.0, replaced.leaves_qty.0),
        (Some(Price(d(104.0))), d(1.5), d(1.5))
    );
}

/// Over a long exchange-core-like flow, the tracker follows exactly the engine's live orders,
/// and every order's CumQty is the sum of its fills.
#[test]
fn the_tracker_agrees_with_the_engine_over_a_long_flow() {
    let flow = FlowConfig {
        seed: 21,
        book_depth: 200,
        accounts: 30,
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(flow);
    let mut commands = generator.setup();
    commands.extend(generator.generate(50_000));
    let mut engine = Engine::new(flow.engine_config()).unwrap();
    let mut fed = Fed::new();
    let mut events: Vec<Event> = Vec::new();
    let mut fills: HashMap<(AccountId, OrderId), i64> = HashMap::new();
    for cmd in &commands {
        events.clear();
        engine.apply(cmd, &mut events);
        for (account, message) in fed.apply(cmd, &events) {
            if let ToSession::Report(r) = message {
                assert_eq!(*account, r.account);
                let key = (r.account, r.cl_ord_id);
                let cum = fills.entry(key).or_default();
                *cum += r.last_qty.0;
                assert_eq!(r.cum_qty.0, *cum, "{r:?}");
                assert!(r.cum_qty.0 + r.leaves_qty.0 <= r.order_qty.0, "{r:?}");
                if r.exec_type == ExecType::Trade {
                    assert!(r.avg_px.0 > 0 && r.last_qty.0 > 0, "{r:?}");
                }
            }
        }
    }
    assert_eq!(fed.desk.live_orders() as u32, engine.stats().live_orders);
    for info in engine.symbols() {
        for side in [Side::Buy, Side::Sell] {
            for order in engine.resting(info.id, side) {
                assert_eq!(
                    fed.desk
                        .order_state(0, order.account, &order.order_id)
                        .map(|r| r.leaves_qty),
                    Some(order.qty),
                    "{order:?}"
                );
            }
        }
    }
}

/// A new order the engine rejects reports what it asked for (side, price, quantity) from the
/// command on the log, so the report is right at every site: here the desk never saw the
/// order submitted (it came from another site's gateway). A market order shows no price.
#[test]
fn a_reject_of_an_order_from_another_site_reports_its_side_price_and_quantity() {
    let mut fed = Fed::new();
    let out = run_on(
        &mut fed,
        &[
            // Off the 0.5 tick.
            new(1, 7, "off-tick", Side::Sell, Some(100.25), 1.5, Tif::Gtc),
            // A market order cannot rest: GTC is refused.
            new(2, 7, "market-gtc", Side::Sell, None, 2.0, Tif::Gtc),
        ],
    );
    let check = |id: &str, price: Option<f64>, qty: f64, reason: RejectReason| {
        let reports = reports_of(&out, id);
        assert_eq!(reports.len(), 1, "{reports:?}");
        let r = reports[0];
        assert_eq!(
            (r.exec_type, r.ord_status, r.why),
            (
                ExecType::Rejected,
                OrdStatus::Rejected,
                Some(Reason::Rejected(reason))
            )
        );
        assert_eq!(
            (r.side, r.price, r.order_qty, r.cum_qty, r.leaves_qty),
            (
                Side::Sell,
                price.map(|p| Price(d(p))),
                Qty(d(qty)),
                Qty(0),
                Qty(0)
            ),
            "{r:?}"
        );
        // The engine does not remember a rejected order, nor does the desk: the reject was
        // the answer, and a restarted site could not say otherwise.
        let status = fed
            .desk
            .order_state(0, AccountId(7), &OrderId::new(id).unwrap());
        assert_eq!(status, None);
    };
    check("off-tick", Some(100.25), 1.5, RejectReason::InvalidPrice);
    check("market-gtc", None, 2.0, RejectReason::InvalidTif);
}

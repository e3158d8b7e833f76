//! The desk's order table on worked cases: a resent order gets its original's state, an id in
//! use on one shard is not entered on another, a refused submission is forgotten, done orders
//! are remembered for a window, a command may span batches, seeding follows the orders a
//! recovered engine holds, and one id entered on two shards at once (by two sites) is followed
//! as two orders, each shard's L2 equal to its engine's depth after every command.

use std::collections::HashMap;
use std::sync::Arc;

use engine::runner::Emitted;
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Side, Stp, Symbol, Tif, FIXED_ONE,
};
use gateway::desk::Admission;
use gateway::{
    Desk, ExecType, Hub, Members, OrdStatus, Outbox, Reason, Report, Sequencer, SubmitError,
    ToSession,
};

fn sym(name: &str) -> Symbol {
    Symbol::new(name).unwrap()
}

fn oid(id: &str) -> OrderId {
    OrderId::new(id).unwrap()
}

fn limit(account: u64, id: &str, symbol: &str, side: Side, price: i64, qty: i64) -> NewOrder {
    NewOrder {
        account: AccountId(account),
        order_id: oid(id),
        symbol: sym(symbol),
        side,
        ord_type: OrdType::Limit,
        price: Some(Price(price * FIXED_ONE)),
        qty: Qty(qty * FIXED_ONE),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::None,
        session: 0,
    }
}

fn cancel(account: u64, id: &str, symbol: &str) -> CancelOrder {
    CancelOrder {
        account: AccountId(account),
        symbol: sym(symbol),
        order_id: oid(id),
    }
}

/// One shard: its engine and its next log position.
struct Shard {
    engine: Engine,
    position: u64,
}

impl Shard {
    fn new(window_ns: u64) -> Shard {
        let config = EngineConfig {
            dedup_window_ns: window_ns,
            ..EngineConfig::default()
        };
        Shard {
            engine: Engine::new(config).unwrap(),
            position: 0,
        }
    }

    /// Applies `kind` at the next position: the matcher's output for it.
    fn run(&mut self, kind: CommandKind) -> Vec<Emitted> {
        let command = Command::new(self.position + 1, kind);
        let mut events: Vec<Event> = Vec::new();
        self.engine.apply(&command, &mut events);
        let mut items: Vec<Emitted> = events.into_iter().map(Emitted::Event).collect();
        items.push(Emitted::Applied {
            position: self.position,
            command,
        });
        self.position += 1;
        items
    }
}

/// A desk over shards whose engines each list one symbol.
struct Site {
    desk: Desk,
    shards: Vec<Shard>,
    outbox: Outbox,
}

impl Site {
    /// Shards whose engines remember finished orders for `window_ns` of log time; each
    /// command's `ts` is its log position plus one (nanoseconds).
    fn new(symbols: &[&str], window_ns: u64) -> Site {
        let mut site = Site {
            desk: Desk::new(symbols.len(), window_ns),
            shards: symbols.iter().map(|_| Shard::new(window_ns)).collect(),
            outbox: Outbox::default(),
        };
        for (shard, name) in symbols.iter().enumerate() {
            site.apply(
                shard,
                CommandKind::AddSymbol(AddSymbol {
                    symbol: sym(name),
                    tick: Price(FIXED_ONE),
                    lot: Qty(FIXED_ONE),
                }),
                usize::MAX,
            );
        }
        site
    }

    /// Applies `kind` on shard `shard`'s engine and feeds the desk its output in batches of
    /// `batch` items; returns what the desk sends.
    fn apply(&mut self, shard: usize, kind: CommandKind, batch: usize) -> Vec<ToSession> {
        let items = self.shards[shard].run(kind);
        let mut sent = Vec::new();
        for part in items.chunks(batch) {
            self.desk.apply(shard, part, &mut self.outbox);
            sent.extend(self.outbox.sends.iter().map(|(_, message)| *message));
        }
        sent
    }

    fn new_order(&mut self, shard: usize, new: NewOrder) -> Vec<ToSession> {
        self.apply(shard, CommandKind::New(new), usize::MAX)
    }
}

fn report(message: &ToSession) -> Report {
    match message {
        ToSession::Report(report) => *report,
        other => panic!("expected a report, got {other:?}"),
    }
}

#[test]
fn a_resent_order_is_answered_with_the_original_state() {
    let mut site = Site::new(&["BTC"], 1_000);
    site.new_order(0, limit(1, "a", "BTC", Side::Buy, 100, 5));
    let fill = site.new_order(0, limit(2, "b", "BTC", Side::Sell, 100, 2));
    // New, then the maker's fill, then the taker's.
    let original = report(&fill[2]);
    assert_eq!(
        (original.cl_ord_id, original.ord_status),
        (oid("b"), OrdStatus::Filled)
    );
    // The same id again, even with other terms: the original's state, no second order.
    let resent = site.new_order(0, limit(2, "b", "BTC", Side::Buy, 90, 7));
    assert_eq!(resent.len(), 1);
    let answer = report(&resent[0]);
    assert!(answer.seq > original.seq);
    assert_eq!(
        answer,
        Report {
            seq: answer.seq,
            ts: answer.ts,
            ..original.status()
        }
    );
    assert_eq!(site.desk.live_orders(), 1);
}

#[test]
fn an_id_in_use_on_another_shard_is_not_entered_there() {
    let mut site = Site::new(&["BTC", "ETH"], 1_000);
    let btc = limit(1, "x", "BTC", Side::Buy, 100, 5);
    let eth = limit(1, "x", "ETH", Side::Buy, 100, 5);
    assert_eq!(site.desk.submitted(0, &btc), Admission::Submit);
    // In flight on shard 0: its own report will answer.
    assert_eq!(site.desk.submitted(1, &eth), Admission::Known(None));
    assert_eq!(site.desk.order_state(0, AccountId(1), &oid("x")), None);
    // Resubmitted on its own shard: the engine sorts it out.
    assert_eq!(site.desk.submitted(0, &btc), Admission::Submit);
    site.new_order(0, btc);
    let state = site.desk.order_state(0, AccountId(1), &oid("x")).unwrap();
    assert_eq!(
        (state.exec_type, state.ord_status),
        (ExecType::OrderStatus, OrdStatus::New)
    );
    assert_eq!(
        site.desk.submitted(1, &eth),
        Admission::Known(Some(Box::new(state)))
    );
}

#[test]
fn a_submission_the_log_refused_is_forgotten() {
    let mut site = Site::new(&["BTC", "ETH"], 1_000);
    let btc = limit(1, "x", "BTC", Side::Buy, 100, 5);
    let eth = limit(1, "x", "ETH", Side::Buy, 100, 5);
    assert_eq!(site.desk.submitted(0, &btc), Admission::Submit);
    site.desk.refused(&btc);
    assert_eq!(site.desk.submitted(1, &eth), Admission::Submit);
}

impl Site {
    /// Whether the desk knows each of `ids` (of `account`, on `shard`) exactly when the
    /// shard's engine remembers it.
    fn knows_as_the_engine(&self, shard: usize, account: u64, ids: &[&str]) -> Vec<bool> {
        ids.iter()
            .map(|id| {
                let desk = self.desk.order_state(shard, AccountId(account), &oid(id));
                let engine = self.shards[shard]
                    .engine
                    .order(AccountId(account), &oid(id));
                assert_eq!(desk.is_some(), engine.is_some(), "{id}");
                desk.is_some()
            })
            .collect()
    }

    /// Advances shard `shard`'s log time by `n` commands that do nothing else.
    fn idle(&mut self, shard: usize, n: usize) {
        for _ in 0..n {
            self.apply(shard, CommandKind::Clock, usize::MAX);
        }
    }
}

/// Finished orders are remembered until the shard's log time reaches their finishing time
/// plus the window, exactly when the engine forgets them: the boundary included.
#[test]
fn done_orders_are_remembered_for_the_window_of_log_time_then_forgotten() {
    let mut site = Site::new(&["BTC"], 4);
    // `a` rests at ts 2 and fills at ts 3 with `b`; `c` fills at ts 5 with `d`.
    site.new_order(0, limit(1, "a", "BTC", Side::Buy, 100, 1));
    site.new_order(0, limit(2, "b", "BTC", Side::Sell, 100, 1));
    site.new_order(0, limit(1, "c", "BTC", Side::Buy, 100, 1));
    site.new_order(0, limit(2, "d", "BTC", Side::Sell, 100, 1));
    let state = |site: &Site, id| site.desk.order_state(0, AccountId(1), &oid(id));
    assert_eq!(state(&site, "a").unwrap().ord_status, OrdStatus::Filled);
    // ts 6: 3 + 4 > 6, both remembered.
    site.idle(0, 1);
    assert_eq!(site.knows_as_the_engine(0, 1, &["a", "c"]), [true, true]);
    // ts 7: `a`'s window has passed (3 + 4 <= 7); `c` (5 + 4) stays until ts 9.
    site.idle(0, 1);
    assert_eq!(site.knows_as_the_engine(0, 1, &["a", "c"]), [false, true]);
    site.idle(0, 2);
    assert_eq!(site.knows_as_the_engine(0, 1, &["a", "c"]), [false, false]);
    // A status answer carries no event and the shard's log time.
    site.new_order(0, limit(1, "e", "BTC", Side::Buy, 99, 1));
    let e = state(&site, "e").unwrap();
    assert_eq!((e.seq, e.ts), (0, site.shards[0].position));
}

#[test]
fn a_reject_split_from_its_command_across_batches_is_reported_from_the_command() {
    let mut site = Site::new(&["BTC"], 1_000);
    let mut off_tick = limit(3, "r", "BTC", Side::Sell, 100, 4);
    off_tick.price = Some(Price(100 * FIXED_ONE + 1));
    let sent = site.apply(0, CommandKind::New(off_tick), 1);
    assert_eq!(sent.len(), 1);
    let r = report(&sent[0]);
    assert_eq!(
        (r.side, r.price, r.order_qty, r.why),
        (
            Side::Sell,
            off_tick.price,
            Qty(4 * FIXED_ONE),
            Some(Reason::Rejected(RejectReason::InvalidPrice))
        )
    );
}

#[test]
fn a_seeded_desk_follows_the_orders_of_a_recovered_engine() {
    let mut site = Site::new(&["BTC"], 1_000);
    site.new_order(0, limit(1, "a", "BTC", Side::Buy, 100, 5));
    site.new_order(0, limit(2, "b", "BTC", Side::Sell, 100, 2));
    let mut seeded = Desk::new(1, 16);
    seeded.seed(0, &site.shards[0].engine, site.shards[0].position);
    // The engine keeps each order's total, filled quantity and notional: a restarted desk
    // answers as the one that followed the order from its start.
    let state = seeded.order_state(0, AccountId(1), &oid("a")).unwrap();
    assert_eq!(
        (
            state.order_qty,
            state.cum_qty,
            state.leaves_qty,
            state.avg_px
        ),
        (
            Qty(5 * FIXED_ONE),
            Qty(2 * FIXED_ONE),
            Qty(3 * FIXED_ONE),
            Price(100 * FIXED_ONE)
        )
    );
    assert_eq!(
        Some(state),
        site.desk.order_state(0, AccountId(1), &oid("a"))
    );
    let filled = seeded.order_state(0, AccountId(2), &oid("b")).unwrap();
    assert_eq!(
        (filled.ord_status, filled.cum_qty),
        (OrdStatus::Filled, Qty(2 * FIXED_ONE))
    );
    assert_eq!(seeded.live_orders(), 1);
    let book = seeded.snapshot(&sym("BTC"), 10).unwrap();
    assert_eq!(book.position, site.shards[0].position);
    assert_eq!(
        (book.bids[0].price, book.bids[0].qty),
        (Price(100 * FIXED_ONE), Qty(3 * FIXED_ONE))
    );
}

impl Site {
    /// Every shard's L2 books equal its engine's depth, and the desk follows as many orders as
    /// the engines hold.
    fn check_books(&self) {
        let mut live = 0;
        for (shard, state) in self.shards.iter().enumerate() {
            live += state.engine.stats().live_orders as usize;
            for info in state.engine.symbols() {
                let book = self.desk.snapshot(&info.name, usize::MAX).unwrap();
                assert_eq!(book.position, state.position, "{}", info.name);
                for (side, levels) in [(Side::Buy, &book.bids), (Side::Sell, &book.asks)] {
                    let depth: Vec<(Price, Qty)> = state
                        .engine
                        .depth(info.id, side)
                        .map(|l| (l.price, l.qty))
                        .collect();
                    let desk: Vec<(Price, Qty)> = levels.iter().map(|l| (l.price, l.qty)).collect();
                    assert_eq!(desk, depth, "shard {shard} {} {side:?}", info.name);
                }
            }
        }
        assert_eq!(self.desk.live_orders(), live);
    }
}

/// What a report says of its order: exec type, status, symbol, side, price, order quantity,
/// this fill, cum and leaves (whole units).
type Says = (ExecType, OrdStatus, Symbol, Side, i64, i64, i64, i64, i64);

fn says(message: &ToSession) -> Says {
    let r = report(message);
    let units = |q: Qty| q.0 / FIXED_ONE;
    let price = r.price.map_or(0, |p| p.0 / FIXED_ONE);
    (
        r.exec_type,
        r.ord_status,
        r.symbol,
        r.side,
        price,
        units(r.order_qty),
        units(r.last_qty),
        units(r.cum_qty),
        units(r.leaves_qty),
    )
}

/// What a status answer says of an order whose last report said `report`.
fn status(report: Says) -> Says {
    let (_, ord_status, symbol, side, price, order_qty, _, cum, leaves) = report;
    let exec_type = ExecType::OrderStatus;
    (
        exec_type, ord_status, symbol, side, price, order_qty, 0, cum, leaves,
    )
}

/// The reports of account 1's order `x` among `sent`.
fn of_x(sent: &[ToSession]) -> Vec<Says> {
    sent.iter()
        .filter(|m| matches!(m, ToSession::Report(r) if r.account == AccountId(1) && r.cl_ord_id == oid("x")))
        .map(says)
        .collect()
}

#[test]
fn one_id_live_on_two_shards_is_followed_as_two_orders() {
    use ExecType::{Canceled, Replaced, Trade};
    use OrdStatus::{Filled, PartiallyFilled};
    let mut site = Site::new(&["BTC", "ETH"], 1_000);
    let (btc, eth) = (sym("BTC"), sym("ETH"));
    // Two other sites took account 1's id "x" at once, one for each shard: both go through.
    let sent = site.new_order(0, limit(1, "x", "BTC", Side::Buy, 100, 5));
    let new_btc = (
        ExecType::New,
        OrdStatus::New,
        btc,
        Side::Buy,
        100,
        5,
        0,
        0,
        5,
    );
    assert_eq!(of_x(&sent), [new_btc]);
    site.check_books();
    let sent = site.new_order(1, limit(1, "x", "ETH", Side::Sell, 200, 3));
    let new_eth = (
        ExecType::New,
        OrdStatus::New,
        eth,
        Side::Sell,
        200,
        3,
        0,
        0,
        3,
    );
    assert_eq!(of_x(&sent), [new_eth]);
    site.check_books();
    // A status request names a symbol: it is answered with the order on the symbol's shard.
    let state_on = |site: &Site, shard| {
        let state = site.desk.order_state(shard, AccountId(1), &oid("x"));
        says(&ToSession::Report(state.unwrap()))
    };
    assert_eq!(state_on(&site, 0), status(new_btc));
    assert_eq!(state_on(&site, 1), status(new_eth));
    // Without a shard: the lowest one's; known on its own shard, the engine sorts it out.
    let state = site.desk.order_state(0, AccountId(1), &oid("x")).unwrap();
    assert_eq!(says(&ToSession::Report(state)), status(new_btc));
    let eth_again = limit(1, "x", "ETH", Side::Sell, 200, 3);
    assert_eq!(site.desk.submitted(1, &eth_again), Admission::Submit);
    // Part of each trades.
    let sent = site.new_order(1, limit(3, "e", "ETH", Side::Buy, 200, 1));
    let eth_fill = (Trade, PartiallyFilled, eth, Side::Sell, 200, 3, 1, 1, 2);
    assert_eq!(of_x(&sent), [eth_fill]);
    site.check_books();
    let sent = site.new_order(0, limit(2, "b", "BTC", Side::Sell, 100, 2));
    let btc_fill = (Trade, PartiallyFilled, btc, Side::Buy, 100, 5, 2, 2, 3);
    assert_eq!(of_x(&sent), [btc_fill]);
    site.check_books();
    // Cancelling the ETH one leaves the BTC one resting.
    let cancel = CancelOrder {
        account: AccountId(1),
        symbol: eth,
        order_id: oid("x"),
    };
    let sent = site.apply(1, CommandKind::Cancel(cancel), usize::MAX);
    let eth_cancel = (
        Canceled,
        OrdStatus::Canceled,
        eth,
        Side::Sell,
        200,
        3,
        0,
        1,
        0,
    );
    assert_eq!(of_x(&sent), [eth_cancel]);
    site.check_books();
    // The BTC one is amended out of its place, then filled.
    let amend = AmendOrder {
        account: AccountId(1),
        symbol: btc,
        order_id: oid("x"),
        price: Some(Price(101 * FIXED_ONE)),
        // The new total: 2 filled, 4 open.
        qty: Some(Qty(6 * FIXED_ONE)),
        new_order_id: None,
    };
    let sent = site.apply(0, CommandKind::Amend(amend), usize::MAX);
    let btc_amend = (Replaced, PartiallyFilled, btc, Side::Buy, 101, 6, 0, 2, 4);
    assert_eq!(of_x(&sent), [btc_amend]);
    site.check_books();
    let sent = site.new_order(0, limit(2, "c", "BTC", Side::Sell, 101, 4));
    let btc_done = (Trade, Filled, btc, Side::Buy, 101, 6, 4, 6, 0);
    assert_eq!(of_x(&sent), [btc_done]);
    site.check_books();
    assert_eq!(state_on(&site, 0), status(btc_done));
    assert_eq!(state_on(&site, 1), status(eth_cancel));
    // Resent on either shard, the id is answered with that shard's order.
    let sent = site.new_order(1, eth_again);
    assert_eq!(of_x(&sent), [status(eth_cancel)]);
    let sent = site.new_order(0, limit(1, "x", "BTC", Side::Buy, 100, 5));
    assert_eq!(of_x(&sent), [status(btc_done)]);
    site.check_books();
}

/// A log that takes every command (the test applies them itself).
struct Open;

impl Sequencer for Open {
    fn submit(&self, _: Command) -> Result<(), SubmitError> {
        Ok(())
    }
}

#[test]
fn a_status_request_is_answered_with_the_order_on_its_symbols_shard() {
    let (btc, eth) = (sym("BTC"), sym("ETH"));
    let log: Arc<dyn Sequencer> = Arc::new(Open);
    let hub = Hub::sharded(
        vec![log.clone(), log],
        HashMap::from([(btc, 0), (eth, 1)]),
        Members::new(Vec::new()).unwrap(),
        16,
        0,
    );
    let mut shards = [Shard::new(16), Shard::new(16)];
    for (shard, symbol) in [btc, eth].into_iter().enumerate() {
        let add = AddSymbol {
            symbol,
            tick: Price(FIXED_ONE),
            lot: Qty(FIXED_ONE),
        };
        hub.apply(shard, &shards[shard].run(CommandKind::AddSymbol(add)));
    }
    // Account 1's id "x" entered on both shards by two other sites.
    let orders = [
        limit(1, "x", "BTC", Side::Buy, 100, 5),
        limit(1, "x", "ETH", Side::Sell, 200, 3),
    ];
    for (shard, new) in orders.into_iter().enumerate() {
        hub.apply(shard, &shards[shard].run(CommandKind::New(new)));
    }
    for new in orders {
        let state = hub.order_state(&new.symbol, AccountId(1), &oid("x"));
        let state = state.unwrap();
        assert_eq!(
            (state.symbol, state.side, state.price, state.leaves_qty),
            (new.symbol, new.side, new.price, new.qty)
        );
    }
}

/// An id this desk knows on another shard is never sent to a second shard from here, even when
/// the order's own shard knows the id too (a reject there, still in the window): the member is
/// answered with the order on the other shard.
#[test]
fn an_id_known_on_another_shard_is_not_sent_even_if_its_own_shard_knows_it() {
    let mut site = Site::new(&["BTC", "ETH"], 1_000);
    // `x` rejected on BTC's shard (no price for a limit order), from another site.
    let mut bad = limit(1, "x", "BTC", Side::Buy, 100, 5);
    bad.price = None;
    let sent = site.new_order(0, bad);
    assert_eq!(report(&sent[0]).ord_status, OrdStatus::Rejected);
    // Then accepted on ETH's shard, from another site.
    site.new_order(1, limit(1, "x", "ETH", Side::Sell, 200, 3));
    // This site's member sends `x` for BTC again: the engine would take it (it forgets
    // rejected ids), so the desk answers with the live ETH order instead.
    let resent = limit(1, "x", "BTC", Side::Buy, 100, 5);
    match site.desk.submitted(0, &resent) {
        Admission::Known(Some(state)) => {
            assert_eq!(
                (state.symbol, state.ord_status),
                (sym("ETH"), OrdStatus::New)
            );
        }
        other => panic!("expected the ETH order's state, got {other:?}"),
    }
}

/// A limit order without a price: the engine rejects it, so it is done at once.
fn rejected_order(account: u64, id: &str, symbol: &str) -> NewOrder {
    let mut order = limit(account, id, symbol, Side::Buy, 100, 1);
    order.price = None;
    order
}

/// Each shard remembers its own finished orders by its own log time: what one shard remembers
/// does not depend on how far another shard's log went meanwhile (how the shards' batches
/// interleave here).
#[test]
fn each_shard_remembers_its_own_finished_orders() {
    let mut site = Site::new(&["BTC", "ETH"], 4);
    site.new_order(0, limit(1, "x", "BTC", Side::Buy, 100, 1));
    site.apply(0, CommandKind::Cancel(cancel(1, "x", "BTC")), usize::MAX);
    site.idle(1, 10);
    assert_eq!(site.knows_as_the_engine(0, 1, &["x"]), [true]);
    site.idle(0, 4);
    assert_eq!(site.knows_as_the_engine(0, 1, &["x"]), [false]);
}

/// A rejected order is not remembered (nor by the engine); its id may be used again, and that
/// order is followed.
#[test]
fn a_rejected_id_is_not_remembered_and_may_be_used_again() {
    let mut site = Site::new(&["BTC"], 1_000);
    site.new_order(0, rejected_order(1, "r", "BTC"));
    assert_eq!(site.knows_as_the_engine(0, 1, &["r"]), [false]);
    site.new_order(0, limit(1, "r", "BTC", Side::Buy, 100, 1));
    site.new_order(0, limit(2, "s", "BTC", Side::Sell, 100, 2));
    let state = site.desk.order_state(0, AccountId(1), &oid("r"));
    assert_eq!(state.map(|r| r.ord_status), Some(OrdStatus::Filled));
}

/// A log that takes every command and may take `delay_ns` to land one (a Kafka producer's
/// delivery timeout).
struct Slow {
    delay_ns: u64,
}

impl Sequencer for Slow {
    fn submit(&self, _: Command) -> Result<(), SubmitError> {
        Ok(())
    }

    fn longest_delay_ns(&self) -> u64 {
        self.delay_ns
    }
}

/// Seen in the mixed drill with FIX members (`duplicates` 1): a resend judged young enough
/// for a 60 s window (by 5 s) could land in the log up to the producer's 30 s delivery
/// timeout later, after the engines had forgotten the original, and execute again. A resend
/// is judged against the window less the longest its log may take to land it.
#[test]
fn a_resend_is_judged_against_the_window_less_the_logs_longest_delay() {
    const S: u64 = 1_000_000_000;
    let judge = |delay_ns: u64, age_ms: u64| {
        let log: Arc<dyn Sequencer> = Arc::new(Slow { delay_ns });
        let hub = Hub::new(log, Members::new(Vec::new()).unwrap(), 60 * S);
        hub.judge_resend(&limit(1, "x", "BTC", Side::Buy, 100, 1), age_ms)
    };
    let sent = |resend| matches!(resend, gateway::desk::Resend::Send);
    assert!(
        sent(judge(0, 50_000)),
        "a log that appends at once: 50 s is young"
    );
    assert!(!sent(judge(0, 56_000)));
    assert!(sent(judge(30 * S, 20_000)));
    assert!(
        !sent(judge(30 * S, 26_000)),
        "30 s to land: 26 s is too old"
    );
}

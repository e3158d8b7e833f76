//! Property tests of the engine: random command streams compared with the naive reference
//! model (`common::Model`), book and quantity invariants, snapshot + replay equal to full
//! replay, capacity rejects that change nothing, and corrupt snapshots that are errors.
//!
//! Case counts are modest so the file runs in seconds in debug builds; set `PROPTEST_CASES`
//! to run more (for example `PROPTEST_CASES=20000 cargo test --release -p engine --test
//! properties`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelAfter, CancelOrder, Command, CommandKind, DepthLevel,
    Engine, EngineConfig, EngineStats, Event, EventKind, KillSwitch, MassCancel, NewOrder, OrdType,
    OrderId, Price, Qty, RejectReason, RestingOrder, SetTradingStatus, Side, Stp, Symbol, Tif,
    TimestampNs, TradingStatus, FIXED_ONE,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

// ----- the command-stream generator ----------------------------------------------------------

/// Symbol names; `ZZ` is never listed.
const NAMES: [&str; 5] = ["S0", "S1", "S2", "S3", "ZZ"];
/// Ticks and lots a symbol may have: 1, 0.5 and 0.01.
const UNITS: [i64; 3] = [FIXED_ONE, FIXED_ONE / 2, FIXED_ONE / 100];
/// Prices cluster around this, a few ticks either side, so books cross often.
const MID: i64 = 100 * FIXED_ONE;
/// Client order ids are drawn from a small pool so duplicates and re-use happen.
const ID_POOL: u8 = 24;

#[derive(Clone, Copy, Debug)]
enum PriceSel {
    /// This many ticks more aggressive than `MID` (above it for a buy, below for a sell):
    /// mostly passive, so books grow deep, sometimes aggressive, so orders sweep levels.
    Level(i8),
    Zero,
    Negative,
    OffTick,
    Invalid,
    Missing,
}

#[derive(Clone, Copy, Debug)]
enum QtySel {
    Lots(u8),
    Zero,
    Negative,
    OffLot,
    Invalid,
}

/// A tick or lot in `add_symbol`: the symbol's own, or a bad one.
#[derive(Clone, Copy, Debug)]
enum UnitSel {
    Own,
    Zero,
    Negative,
}

#[derive(Clone, Copy, Debug)]
enum SymSel {
    /// One of the symbols listed at the start (modulo their number).
    Listed(u8),
    /// Any name, listed or not.
    Any(u8),
}

/// Which order a cancel or amend names, resolved against the engine's live orders.
#[derive(Clone, Copy, Debug)]
enum Target {
    Live(u16),
    LiveOtherAccount(u16),
    LiveOtherSymbol(u16),
    Pool {
        account: u64,
        id: u8,
        symbol: SymSel,
    },
}

#[derive(Clone, Debug)]
enum Op {
    AddSymbol {
        symbol: u8,
        tick: UnitSel,
        lot: UnitSel,
    },
    New {
        account: u64,
        id: u8,
        symbol: SymSel,
        side: Side,
        market: bool,
        price: PriceSel,
        qty: QtySel,
        tif: Tif,
        post_only: bool,
        stp: Stp,
        session: u64,
    },
    Cancel(Target),
    Amend {
        target: Target,
        price: Option<PriceSel>,
        qty: Option<QtySel>,
        /// A replace: the new id, from the pool.
        new_id: Option<u8>,
    },
    MassCancel {
        account: u64,
        symbol: Option<SymSel>,
        session: Option<u64>,
    },
    CancelAfter {
        account: u64,
        session: u64,
        timeout_ns: u64,
    },
    /// A quiet spell: the clock jumps `jump` ns more than the usual step, so several
    /// switches often fall due together.
    Clock {
        jump: u8,
    },
    TradingStatus {
        symbol: Option<SymSel>,
        cancel_only: bool,
    },
    KillSwitch {
        account: u64,
        on: bool,
    },
}

#[derive(Clone, Debug)]
struct Scenario {
    /// Tick and lot (indexes into `UNITS`) of `S0`..`S3`.
    specs: [(usize, usize); 4],
    /// How many of them are listed up front (the others can be listed mid-stream).
    listed: usize,
    /// Log-time step and operation.
    steps: Vec<(i8, Op)>,
}

fn price_sel() -> impl Strategy<Value = PriceSel> {
    prop_oneof![
        25 => (-5i8..=0).prop_map(PriceSel::Level),
        15 => (1i8..=4).prop_map(PriceSel::Level),
        1 => Just(PriceSel::Zero),
        1 => Just(PriceSel::Negative),
        1 => Just(PriceSel::OffTick),
        1 => Just(PriceSel::Invalid),
        1 => Just(PriceSel::Missing),
    ]
}

fn qty_sel() -> impl Strategy<Value = QtySel> {
    prop_oneof![
        40 => (1u8..=8).prop_map(QtySel::Lots),
        10 => (9u8..=30).prop_map(QtySel::Lots),
        1 => Just(QtySel::Zero),
        1 => Just(QtySel::Negative),
        1 => Just(QtySel::OffLot),
        1 => Just(QtySel::Invalid),
    ]
}

fn unit_sel() -> impl Strategy<Value = UnitSel> {
    prop_oneof![
        6 => Just(UnitSel::Own),
        1 => Just(UnitSel::Zero),
        1 => Just(UnitSel::Negative),
    ]
}

fn sym_sel() -> impl Strategy<Value = SymSel> {
    prop_oneof![
        8 => Just(SymSel::Listed(0)),
        8 => any::<u8>().prop_map(SymSel::Listed),
        1 => (0u8..5).prop_map(SymSel::Any),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn stp() -> impl Strategy<Value = Stp> {
    prop_oneof![
        Just(Stp::None),
        Just(Stp::CancelTaker),
        Just(Stp::CancelMaker),
        Just(Stp::CancelBoth),
    ]
}

fn limit_tif() -> impl Strategy<Value = Tif> {
    prop_oneof![7 => Just(Tif::Gtc), 2 => Just(Tif::Ioc), 2 => Just(Tif::Fok)]
}

fn market_tif() -> impl Strategy<Value = Tif> {
    prop_oneof![1 => Just(Tif::Gtc), 4 => Just(Tif::Ioc), 3 => Just(Tif::Fok)]
}

fn new_op(accounts: u64) -> impl Strategy<Value = Op> {
    (
        1..=accounts,
        0..ID_POOL,
        sym_sel(),
        side(),
        prop::bool::weighted(0.12),
        price_sel(),
        qty_sel(),
        (limit_tif(), market_tif()),
        prop::bool::weighted(0.1),
        stp(),
        session(),
    )
        .prop_map(
            |(account, id, symbol, side, market, price, qty, tifs, post_only, stp, session)| {
                Op::New {
                    account,
                    id,
                    symbol,
                    side,
                    market,
                    price,
                    qty,
                    tif: if market { tifs.1 } else { tifs.0 },
                    post_only,
                    stp,
                    session,
                }
            },
        )
}

/// Sessions 0 and 1: few, so switches and session mass cancels hit.
fn session() -> impl Strategy<Value = u64> {
    0u64..2
}

/// Short timeouts (the clock steps by 0-3 ns a command), sometimes a disarm. Mostly a few
/// round values, so switches of different accounts and sessions often share a deadline.
fn timeout() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        5 => prop::sample::select(vec![4u64, 8, 12]),
        3 => 1u64..=30,
    ]
}

fn target(accounts: u64) -> impl Strategy<Value = Target> {
    prop_oneof![
        8 => any::<u16>().prop_map(Target::Live),
        1 => any::<u16>().prop_map(Target::LiveOtherAccount),
        1 => any::<u16>().prop_map(Target::LiveOtherSymbol),
        2 => (1..=accounts, 0..ID_POOL, sym_sel())
            .prop_map(|(account, id, symbol)| Target::Pool { account, id, symbol }),
    ]
}

fn op(accounts: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        24 => new_op(accounts),
        3 => target(accounts).prop_map(Op::Cancel),
        6 => (
            target(accounts),
            prop::option::weighted(0.6, price_sel()),
            prop::option::weighted(0.6, qty_sel()),
            prop::option::weighted(0.3, 0..ID_POOL),
        )
            .prop_map(|(target, price, qty, new_id)| Op::Amend { target, price, qty, new_id }),
        1 => (1..=accounts, prop::option::of(sym_sel()), prop::option::weighted(0.4, session()))
            .prop_map(|(account, symbol, session)| Op::MassCancel { account, symbol, session }),
        1 => (0u8..4, unit_sel(), unit_sel())
            .prop_map(|(symbol, tick, lot)| Op::AddSymbol { symbol, tick, lot }),
        4 => (1..=accounts, session(), timeout())
            .prop_map(|(account, session, timeout_ns)| Op::CancelAfter { account, session, timeout_ns }),
        2 => (0u8..16).prop_map(|jump| Op::Clock { jump }),
        1 => (prop::option::weighted(0.7, sym_sel()), prop::bool::weighted(0.5))
            .prop_map(|(symbol, cancel_only)| Op::TradingStatus { symbol, cancel_only }),
        1 => (1..=accounts, prop::bool::weighted(0.4))
            .prop_map(|(account, on)| Op::KillSwitch { account, on }),
    ]
}

fn ts_step() -> impl Strategy<Value = i8> {
    prop_oneof![8 => 0i8..4, 1 => -3i8..0]
}

fn scenario(accounts: u64, max_steps: usize) -> impl Strategy<Value = Scenario> {
    (
        prop::array::uniform4((0usize..3, 0usize..3)),
        1usize..=3,
        prop::collection::vec((ts_step(), op(accounts)), 0..max_steps),
    )
        .prop_map(|(specs, listed, steps)| Scenario {
            specs,
            listed,
            steps,
        })
}

/// Live orders of `engine` as (account, order id, symbol), oldest first.
fn live_orders(engine: &Engine) -> Vec<(AccountId, OrderId, Symbol)> {
    let mut live = Vec::new();
    for info in engine.symbols() {
        for side in [Side::Buy, Side::Sell] {
            live.extend(
                engine
                    .resting(info.id, side)
                    .map(|o| (o.prio, o.account, o.order_id, info.name)),
            );
        }
    }
    live.sort_by_key(|entry| entry.0);
    live.into_iter().map(|(_, a, o, s)| (a, o, s)).collect()
}

impl Scenario {
    fn symbol_index(&self, sel: SymSel) -> usize {
        match sel {
            SymSel::Listed(k) => usize::from(k) % self.listed,
            SymSel::Any(k) => usize::from(k) % NAMES.len(),
        }
    }

    /// Tick and lot used to build values for symbol `index` (`ZZ`: 1 and 1).
    fn units(&self, index: usize) -> (i64, i64) {
        self.specs
            .get(index)
            .map_or((FIXED_ONE, FIXED_ONE), |&(t, l)| (UNITS[t], UNITS[l]))
    }

    fn price(&self, index: usize, side: Side, sel: PriceSel) -> Option<Price> {
        let (tick, _) = self.units(index);
        let toward = match side {
            Side::Buy => 1,
            Side::Sell => -1,
        };
        match sel {
            PriceSel::Level(k) => Some(Price(MID + toward * i64::from(k) * tick)),
            PriceSel::Zero => Some(Price(0)),
            PriceSel::Negative => Some(Price(-tick)),
            PriceSel::OffTick => Some(Price(MID + tick / 2)),
            PriceSel::Invalid => Some(Price::INVALID),
            PriceSel::Missing => None,
        }
    }

    fn qty(&self, index: usize, sel: QtySel) -> Qty {
        let (_, lot) = self.units(index);
        match sel {
            QtySel::Lots(n) => Qty(i64::from(n) * lot),
            QtySel::Zero => Qty(0),
            QtySel::Negative => Qty(-lot),
            QtySel::OffLot => Qty(2 * lot + lot / 2),
            QtySel::Invalid => Qty::INVALID,
        }
    }

    /// (account, order id, symbol) that `target` names, given the live orders.
    fn target(
        &self,
        target: Target,
        live: &[(AccountId, OrderId, Symbol)],
        accounts: u64,
    ) -> (AccountId, OrderId, Symbol) {
        let pick = |i: u16| live[usize::from(i) % live.len()];
        match target {
            Target::Live(i) if !live.is_empty() => pick(i),
            Target::LiveOtherAccount(i) if !live.is_empty() => {
                let (account, id, symbol) = pick(i);
                (AccountId(account.0 % accounts + 1), id, symbol)
            }
            Target::LiveOtherSymbol(i) if !live.is_empty() => {
                let (account, id, symbol) = pick(i);
                let at = NAMES
                    .iter()
                    .position(|n| *n == symbol.as_str())
                    .unwrap_or(0);
                (account, id, sym(NAMES[(at + 1) % NAMES.len()]))
            }
            Target::Pool {
                account,
                id,
                symbol,
            } => (
                AccountId(account),
                oid(&format!("o{id}")),
                sym(NAMES[self.symbol_index(symbol)]),
            ),
            _ => (AccountId(1), oid("o0"), sym(NAMES[0])),
        }
    }

    /// The concrete command stream. Cancels and amends are aimed at live orders as an engine
    /// built with `config` sees them, so they hit far more often than random ids would.
    fn commands(&self, config: EngineConfig, accounts: u64) -> Vec<Command> {
        let mut cmds = Vec::new();
        let mut ts: u64 = 0;
        for (index, &(tick, lot)) in self.specs.iter().enumerate().take(self.listed) {
            ts += 1;
            cmds.push(Command::new(
                ts,
                CommandKind::AddSymbol(AddSymbol {
                    symbol: sym(NAMES[index]),
                    tick: Price(UNITS[tick]),
                    lot: Qty(UNITS[lot]),
                }),
            ));
        }
        let mut scratch = Engine::new(config).expect("valid config");
        for cmd in &cmds {
            scratch.apply(cmd, &mut Vec::new());
        }
        for (step, op) in &self.steps {
            ts = ts.saturating_add_signed(i64::from(*step));
            if let Op::Clock { jump } = op {
                ts += u64::from(*jump);
            }
            let cmd = Command::new(ts, self.kind(op, &scratch, accounts));
            scratch.apply(&cmd, &mut Vec::new());
            cmds.push(cmd);
        }
        cmds
    }

    /// The command `op` stands for, given the live orders of `scratch`.
    fn kind(&self, op: &Op, scratch: &Engine, accounts: u64) -> CommandKind {
        match *op {
            Op::AddSymbol { symbol, tick, lot } => self.add_symbol(symbol, tick, lot),
            Op::New { .. } => self.new_order(op),
            Op::Cancel(target) => {
                let (account, order_id, symbol) =
                    self.target(target, &live_orders(scratch), accounts);
                CommandKind::Cancel(CancelOrder {
                    account,
                    symbol,
                    order_id,
                })
            }
            Op::Amend { target, .. } => {
                self.amend(op, &live_orders(scratch), target, scratch, accounts)
            }
            Op::MassCancel {
                account,
                symbol,
                session,
            } => CommandKind::MassCancel(MassCancel {
                account: AccountId(account),
                symbol: symbol.map(|s| sym(NAMES[self.symbol_index(s)])),
                session,
            }),
            Op::CancelAfter {
                account,
                session,
                timeout_ns,
            } => CommandKind::CancelAfter(CancelAfter {
                account: AccountId(account),
                session,
                timeout_ns,
            }),
            Op::Clock { .. } => CommandKind::Clock,
            Op::TradingStatus {
                symbol,
                cancel_only,
            } => CommandKind::TradingStatus(SetTradingStatus {
                symbol: symbol.map(|s| sym(NAMES[self.symbol_index(s)])),
                status: if cancel_only {
                    TradingStatus::CancelOnly
                } else {
                    TradingStatus::Open
                },
            }),
            Op::KillSwitch { account, on } => CommandKind::KillSwitch(KillSwitch {
                account: AccountId(account),
                on,
            }),
        }
    }

    fn amend(
        &self,
        op: &Op,
        live: &[(AccountId, OrderId, Symbol)],
        target: Target,
        scratch: &Engine,
        accounts: u64,
    ) -> CommandKind {
        let Op::Amend {
            price, qty, new_id, ..
        } = *op
        else {
            unreachable!("only for Op::Amend")
        };
        let (account, order_id, symbol) = self.target(target, live, accounts);
        let index = NAMES
            .iter()
            .position(|n| *n == symbol.as_str())
            .unwrap_or(NAMES.len() - 1);
        let side = scratch
            .live_order(account, &order_id)
            .map_or(Side::Buy, |o| o.side);
        CommandKind::Amend(AmendOrder {
            account,
            symbol,
            order_id,
            price: price.and_then(|p| self.price(index, side, p)),
            qty: qty.map(|q| self.qty(index, q)),
            new_order_id: new_id.map(|id| oid(&format!("o{id}"))),
        })
    }

    fn add_symbol(&self, symbol: u8, tick: UnitSel, lot: UnitSel) -> CommandKind {
        let index = usize::from(symbol);
        let (own_tick, own_lot) = self.units(index);
        let unit = |sel, own| match sel {
            UnitSel::Own => own,
            UnitSel::Zero => 0,
            UnitSel::Negative => -own,
        };
        CommandKind::AddSymbol(AddSymbol {
            symbol: sym(NAMES[index]),
            tick: Price(unit(tick, own_tick)),
            lot: Qty(unit(lot, own_lot)),
        })
    }

    fn new_order(&self, op: &Op) -> CommandKind {
        let Op::New {
            account,
            id,
            symbol,
            side,
            market,
            price,
            qty,
            tif,
            post_only,
            stp,
            session,
        } = *op
        else {
            unreachable!("only for Op::New")
        };
        let index = self.symbol_index(symbol);
        CommandKind::New(NewOrder {
            account: AccountId(account),
            order_id: oid(&format!("o{id}")),
            symbol: sym(NAMES[index]),
            side,
            ord_type: if market {
                OrdType::Market
            } else {
                OrdType::Limit
            },
            price: self.price(index, side, price),
            qty: self.qty(index, qty),
            tif,
            post_only,
            stp,
            session,
        })
    }
}

// ----- helpers -------------------------------------------------------------------------------

/// Accounts 1..=3: few enough that self-trades are common.
const ACCOUNTS: u64 = 3;
const MAX_STEPS: usize = 120;

/// The dedup window of the random streams: a few tens of commands (ts steps by 0-3), so
/// finished orders expire and ids are reused all the time.
const WINDOW_NS: u64 = 40;

/// Capacities the random streams never reach, so the engine never rejects `capacity`.
fn roomy() -> EngineConfig {
    EngineConfig {
        symbols_max: 8,
        accounts_max: 16,
        orders_max: 1024,
        retired_ids_max: 4096,
        dedup_window_ns: WINDOW_NS,
        switches_max: 64,
        levels_max: 256,
        levels_per_side_max: 64,
        ..EngineConfig::default()
    }
}

/// Capacities the random streams hit all the time.
fn tiny() -> EngineConfig {
    EngineConfig {
        symbols_max: 2,
        accounts_max: 3,
        orders_max: 8,
        retired_ids_max: 10,
        dedup_window_ns: 30,
        switches_max: 2,
        levels_max: 4,
        levels_per_side_max: 2,
        ..EngineConfig::default()
    }
}

/// `PROPTEST_CASES` if set, else `default`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn apply(engine: &mut Engine, cmd: &Command) -> Vec<Event> {
    let mut events = Vec::new();
    engine.apply(cmd, &mut events);
    events
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// Every resting order of every symbol, with its time priority.
fn all_resting(engine: &Engine) -> Vec<(Symbol, RestingOrder)> {
    let mut all = Vec::new();
    for info in engine.symbols() {
        for side in [Side::Buy, Side::Sell] {
            all.extend(engine.resting(info.id, side).map(|o| (info.name, o)));
        }
    }
    all
}

/// Stats without the event counter and clock, which every command may advance.
fn state_stats(engine: &Engine) -> EngineStats {
    EngineStats {
        next_event_seq: 0,
        clock: TimestampNs(0),
        ..engine.stats()
    }
}

/// Both sides of every book are in price-time priority, hold positive multiples of the tick
/// and lot, agree with `live_order` and `depth`, and do not cross.
fn check_books(engine: &Engine) -> Result<(), String> {
    let mut resting = 0;
    for info in engine.symbols() {
        let bids: Vec<RestingOrder> = engine.resting(info.id, Side::Buy).collect();
        let asks: Vec<RestingOrder> = engine.resting(info.id, Side::Sell).collect();
        for (side, orders) in [(Side::Buy, &bids), (Side::Sell, &asks)] {
            for pair in orders.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let better = match side {
                    Side::Buy => a.price > b.price,
                    Side::Sell => a.price < b.price,
                };
                if !(better || (a.price == b.price && a.prio < b.prio)) {
                    return Err(format!(
                        "{} {side:?} out of priority: {a:?} then {b:?}",
                        info.name
                    ));
                }
            }
            for o in orders.iter() {
                let valid = o.side == side
                    && o.qty.0 > 0
                    && o.qty.0 % info.lot.0 == 0
                    && o.price.0 > 0
                    && o.price.0 % info.tick.0 == 0;
                if !valid {
                    return Err(format!("{} bad resting order {o:?}", info.name));
                }
                if engine.live_order(o.account, &o.order_id) != Some(*o) {
                    return Err(format!("live_order disagrees with the book for {o:?}"));
                }
            }
            resting += orders.len();
            // The L2 view is the resting orders aggregated by price, best first.
            let mut aggregated: Vec<DepthLevel> = Vec::new();
            for o in orders.iter() {
                match aggregated.last_mut() {
                    Some(level) if level.price == o.price => {
                        level.qty.0 += o.qty.0;
                        level.orders += 1;
                    }
                    _ => aggregated.push(DepthLevel {
                        price: o.price,
                        qty: o.qty,
                        orders: 1,
                    }),
                }
            }
            let depth: Vec<DepthLevel> = engine.depth(info.id, side).collect();
            if depth != aggregated {
                return Err(format!(
                    "{} {side:?} depth {depth:?} != aggregated {aggregated:?}",
                    info.name
                ));
            }
        }
        if let (Some(bid), Some(ask)) = (bids.first(), asks.first()) {
            if bid.price >= ask.price {
                return Err(format!("{} rests crossed: {bid:?} / {ask:?}", info.name));
            }
        }
    }
    if resting != engine.stats().live_orders as usize {
        return Err(format!(
            "{resting} resting, stats say {}",
            engine.stats().live_orders
        ));
    }
    Ok(())
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

// ----- the properties ------------------------------------------------------------------------

fn engine_matches_model(cmds: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(roomy()).expect("valid config");
    let mut model = Model::with_window(WINDOW_NS);
    let mut next_seq = 0u64;
    let mut clock = 0u64;
    for (i, cmd) in cmds.iter().enumerate() {
        let events = apply(&mut engine, cmd);
        let expected = model.apply(cmd);
        let history = || listing(&cmds[..=i]);
        let actual = kinds(&events);
        if actual != expected {
            let show = |ks: &[EventKind]| -> String {
                ks.iter()
                    .map(|k| format!("    {}\n", describe_event(k)))
                    .collect()
            };
            return Err(fail(format!(
                "events differ at command #{i}\ncommands:\n{}engine:\n{}model:\n{}\
                 engine debug: {actual:?}\nmodel debug: {expected:?}",
                history(),
                show(&actual),
                show(&expected)
            )));
        }
        clock = clock.max(cmd.ts.0);
        for event in &events {
            prop_assert_eq!(event.seq, next_seq, "seq not contiguous\n{}", history());
            prop_assert_eq!(event.ts, TimestampNs(clock), "event ts\n{}", history());
            next_seq += 1;
        }
        if let Err(broken) = engine.check_invariants() {
            return Err(fail(format!("invariants: {broken}\n{}", history())));
        }
        let (engine_books, model_books) =
            (describe_engine_books(&engine), describe_model_books(&model));
        prop_assert_eq!(engine_books, model_books, "books differ\n{}", history());
        same_orders(&engine, &model, &history)?;
    }
    prop_assert_eq!(engine.stats().next_event_seq, next_seq);
    Ok(())
}

/// The engine remembers exactly the model's orders, in the listing and one by one.
fn same_orders(
    engine: &Engine,
    model: &Model,
    history: &dyn Fn() -> String,
) -> Result<(), TestCaseError> {
    let (engine_orders, model_orders) = (engine.orders(), model.orders());
    if engine_orders != model_orders {
        return Err(fail(format!(
            "orders differ\n{}engine:\n{}\nmodel:\n{}",
            history(),
            describe_orders(&engine_orders).join("\n"),
            describe_orders(&model_orders).join("\n")
        )));
    }
    prop_assert_eq!(
        engine.stats().clock.0,
        model.clock(),
        "clock\n{}",
        history()
    );
    // The single-order lookup answers as the listing does.
    for view in &model_orders {
        let found = engine.order(view.account, &view.order_id);
        prop_assert_eq!(found.as_ref(), Some(view), "order()\n{}", history());
    }
    for account in 1..=ACCOUNTS {
        for id in 0..ID_POOL {
            let (account, id) = (AccountId(account), oid(&format!("o{id}")));
            let known = model_orders
                .iter()
                .any(|v| v.account == account && v.order_id == id);
            let found = engine.order(account, &id).is_some();
            prop_assert_eq!(
                found,
                known,
                "order() of {}/{}\n{}",
                account.0,
                id,
                history()
            );
        }
    }
    Ok(())
}

fn books_stay_ordered_and_uncrossed(
    cmds: &[Command],
    config: EngineConfig,
) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(config).expect("valid config");
    for (i, cmd) in cmds.iter().enumerate() {
        apply(&mut engine, cmd);
        if let Err(broken) = check_books(&engine) {
            return Err(fail(format!("{broken}\n{}", listing(&cmds[..=i]))));
        }
    }
    Ok(())
}

/// What happened to the quantity of one order over its life (through replaces), in fixed-8
/// units. Exact: `accepted + adjusted + written_off == filled + open + cancelled`, where an
/// amend to a total `Q` below the filled quantity `F` writes off `F - Q` (the order finishes
/// with total `Q`, filled `F`, nothing open or cancelled).
#[derive(Default, Debug, Clone)]
struct Ledger {
    accepted: i64,
    /// Sum over amends of (new total - total just before).
    adjusted: i64,
    written_off: i64,
    filled: i64,
    cancelled: i64,
}

impl Ledger {
    fn total(&self) -> i64 {
        self.accepted + self.adjusted
    }
}

/// Ledgers of live orders by their current id, and of finished ones.
#[derive(Default)]
struct Ledgers {
    live: BTreeMap<(AccountId, OrderId), Ledger>,
    done: Vec<((AccountId, OrderId), Ledger)>,
}

impl Ledgers {
    fn get(&mut self, key: (AccountId, OrderId)) -> Result<&mut Ledger, TestCaseError> {
        self.live
            .get_mut(&key)
            .ok_or_else(|| fail(format!("event for {}/{} not live", key.0 .0, key.1)))
    }

    fn close(&mut self, key: (AccountId, OrderId)) {
        let ledger = self.live.remove(&key).expect("closing a live ledger");
        self.done.push((key, ledger));
    }

    /// Books one event, checking the quantities it reports against the ledger.
    fn book(&mut self, kind: &EventKind) -> Result<(), TestCaseError> {
        match *kind {
            EventKind::Accepted {
                account,
                order_id,
                qty,
                ..
            } => {
                let ledger = Ledger {
                    accepted: qty.0,
                    ..Ledger::default()
                };
                let fresh = self.live.insert((account, order_id), ledger).is_none();
                prop_assert!(fresh, "a live id accepted again");
            }
            EventKind::Trade { .. } => self.trade(kind)?,
            EventKind::Cancelled {
                account,
                order_id,
                qty,
                ..
            } => {
                let l = self.get((account, order_id))?;
                prop_assert!(qty.0 > 0, "empty cancel");
                prop_assert_eq!(qty.0, l.total() - l.filled, "cancel of other than the open");
                l.cancelled += qty.0;
                self.close((account, order_id));
            }
            EventKind::Amended {
                account,
                order_id,
                total,
                leaves,
                filled,
                new_order_id,
                ..
            } => {
                let mut l = self
                    .live
                    .remove(&(account, order_id))
                    .ok_or_else(|| fail(format!("amend of {}/{order_id}, not live", account.0)))?;
                prop_assert_eq!(filled.0, l.filled, "amended filled");
                l.adjusted += total.0 - l.total();
                prop_assert_eq!(leaves.0, (total.0 - filled.0).max(0), "amended leaves");
                l.written_off += (filled.0 - total.0).max(0);
                let key = (account, new_order_id.unwrap_or(order_id));
                prop_assert!(
                    self.live.insert(key, l).is_none(),
                    "replaced onto a live id"
                );
                if leaves.0 == 0 {
                    self.close(key);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn trade(&mut self, kind: &EventKind) -> Result<(), TestCaseError> {
        let EventKind::Trade {
            qty,
            maker_account,
            maker_order_id,
            taker_account,
            taker_order_id,
            maker_leaves,
            taker_leaves,
            maker_filled,
            taker_filled,
            ..
        } = *kind
        else {
            unreachable!("only for trades")
        };
        prop_assert!(qty.0 > 0, "empty trade");
        for (key, leaves, filled) in [
            ((maker_account, maker_order_id), maker_leaves, maker_filled),
            ((taker_account, taker_order_id), taker_leaves, taker_filled),
        ] {
            let l = self.get(key)?;
            l.filled += qty.0;
            prop_assert_eq!(filled.0, l.filled, "trade filled of {}/{}", key.0 .0, key.1);
            prop_assert_eq!(leaves.0, l.total() - l.filled, "trade leaves");
            if leaves.0 == 0 {
                self.close(key);
            }
        }
        Ok(())
    }
}

fn quantity_conserved(cmds: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(roomy()).expect("valid config");
    let mut ledgers = Ledgers::default();
    for (i, cmd) in cmds.iter().enumerate() {
        for event in apply(&mut engine, cmd) {
            ledgers
                .book(&event.kind)
                .map_err(|err| fail(format!("{err}\n{}", listing(&cmds[..=i]))))?;
        }
    }
    let open = |key: &(AccountId, OrderId)| engine.live_order(key.0, &key.1).map(|o| o.qty.0);
    let live = ledgers.live.iter().map(|(k, l)| (k, l, open(k)));
    let done = ledgers.done.iter().map(|(k, l)| (k, l, Some(0)));
    for ((account, order_id), l, open) in live.chain(done) {
        let open = open.ok_or_else(|| fail(format!("{}/{order_id} not live", account.0)))?;
        prop_assert_eq!(
            l.accepted + l.adjusted + l.written_off,
            l.filled + open + l.cancelled,
            "order {}/{} does not add up: {:?}, open {}\n{}",
            account.0,
            order_id,
            l,
            open,
            listing(cmds)
        );
    }
    // The engine's memory of live orders agrees with the ledgers.
    for view in engine.orders().iter().filter(|v| v.status.is_live()) {
        let l = &ledgers.live[&(view.account, view.order_id)];
        prop_assert_eq!((view.total.0, view.filled.0), (l.total(), l.filled));
    }
    Ok(())
}

fn snapshot_then_replay(cmds: &[Command], cut: usize) -> Result<(), TestCaseError> {
    let mut original = Engine::new(roomy()).expect("valid config");
    for cmd in &cmds[..cut] {
        apply(&mut original, cmd);
    }
    let bytes = original.snapshot();
    let mut restored = Engine::restore(&bytes)
        .map_err(|err| fail(format!("restore failed: {err}\n{}", listing(&cmds[..cut]))))?;
    let at_cut = || listing(&cmds[..cut]);
    prop_assert_eq!(
        restored.state_hash(),
        original.state_hash(),
        "hash at the cut\n{}",
        at_cut()
    );
    prop_assert_eq!(
        restored.stats(),
        original.stats(),
        "stats at the cut\n{}",
        at_cut()
    );
    prop_assert_eq!(restored.config(), original.config());
    prop_assert_eq!(
        restored.orders(),
        original.orders(),
        "orders at the cut\n{}",
        at_cut()
    );
    prop_assert!(
        restored.snapshot() == bytes,
        "snapshot of the restored engine differs\n{}",
        at_cut()
    );
    if let Err(broken) = restored.check_invariants() {
        return Err(fail(format!("restored invariants: {broken}\n{}", at_cut())));
    }
    for (i, cmd) in cmds.iter().enumerate().skip(cut) {
        let history = || format!("cut at #{cut}\n{}", listing(&cmds[..=i]));
        let expected = apply(&mut original, cmd);
        let actual = apply(&mut restored, cmd);
        prop_assert_eq!(
            actual,
            expected,
            "events after restore differ\n{}",
            history()
        );
        if let Err(broken) = restored.check_invariants() {
            return Err(fail(format!(
                "restored invariants: {broken}\n{}",
                history()
            )));
        }
    }
    prop_assert_eq!(
        restored.state_hash(),
        original.state_hash(),
        "final hash\n{}",
        listing(cmds)
    );
    prop_assert_eq!(
        restored.orders(),
        original.orders(),
        "final orders\n{}",
        listing(cmds)
    );
    prop_assert!(
        restored.snapshot() == original.snapshot(),
        "final snapshot\n{}",
        listing(cmds)
    );
    Ok(())
}

/// After every command: two states snapshot to the same bytes exactly when they hash equal.
fn hash_tracks_snapshot(cmds: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(roomy()).expect("valid config");
    let mut seen: Vec<(Vec<u8>, engine::StateHash, usize)> =
        vec![(engine.snapshot(), engine.state_hash(), 0)];
    for (i, cmd) in cmds.iter().enumerate() {
        apply(&mut engine, cmd);
        let (bytes, hash) = (engine.snapshot(), engine.state_hash());
        for (other_bytes, other_hash, j) in &seen {
            prop_assert_eq!(
                bytes == *other_bytes,
                hash == *other_hash,
                "after #{} and after {} commands: equal snapshots {}, equal hashes {}\n{}",
                i,
                j,
                bytes == *other_bytes,
                hash == *other_hash,
                listing(&cmds[..=i])
            );
        }
        seen.push((bytes, hash, i + 1));
    }
    Ok(())
}

fn hash_seed_is_layout_only(cmds: &[Command], seed: u64) -> Result<(), TestCaseError> {
    let mut a = Engine::new(roomy()).expect("valid config");
    let mut b = Engine::new(EngineConfig {
        hash_seed: seed,
        ..roomy()
    })
    .expect("valid config");
    for (i, cmd) in cmds.iter().enumerate() {
        let (ea, eb) = (apply(&mut a, cmd), apply(&mut b, cmd));
        prop_assert_eq!(
            ea,
            eb,
            "events differ with seed {:#x}\n{}",
            seed,
            listing(&cmds[..=i])
        );
    }
    prop_assert_eq!(
        a.state_hash(),
        b.state_hash(),
        "state hash depends on the seed"
    );
    Ok(())
}

fn is_capacity_reject(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Rejected {
            reason: RejectReason::Capacity,
            ..
        } | EventKind::SymbolRejected {
            reason: RejectReason::Capacity,
            ..
        } | EventKind::AccountRejected {
            reason: RejectReason::Capacity,
            ..
        }
    )
}

/// Runs `cmds` on a tiny engine, and on a shadow engine that gets a `clock` at the same `ts`
/// instead of every command the first rejects for capacity: if such a reject changes nothing
/// beyond what moving the clock does (expiry, switches firing: events that come before the
/// reject), the two never differ.
fn capacity_rejects_change_nothing(cmds: &[Command]) -> Result<(), TestCaseError> {
    let mut engine = Engine::new(tiny()).expect("valid config");
    let mut shadow = Engine::new(tiny()).expect("valid config");
    for (i, cmd) in cmds.iter().enumerate() {
        let history = || listing(&cmds[..=i]);
        let events = apply(&mut engine, cmd);
        if let Err(broken) = engine
            .check_invariants()
            .and_then(|()| check_books(&engine))
        {
            return Err(fail(format!("invariants: {broken}\n{}", history())));
        }
        let rejects = events
            .iter()
            .filter(|e| is_capacity_reject(&e.kind))
            .count();
        if rejects > 0 {
            // The command's own events are the reject alone; what comes before it is what
            // moving the clock did.
            prop_assert_eq!(rejects, 1, "two capacity rejects\n{}", history());
            let last = events.last().expect("the reject");
            prop_assert!(
                is_capacity_reject(&last.kind),
                "a reject with company\n{}",
                history()
            );
            let before = &events[..events.len() - 1];
            let clock = apply(&mut shadow, &Command::new(cmd.ts.0, CommandKind::Clock));
            prop_assert_eq!(kinds(before), kinds(&clock), "clock events\n{}", history());
        } else {
            let shadow_events = apply(&mut shadow, cmd);
            prop_assert_eq!(
                kinds(&events),
                kinds(&shadow_events),
                "diverged from the engine that skipped capacity rejects\n{}",
                history()
            );
        }
        same_state(&engine, &shadow, &history)?;
    }
    Ok(())
}

/// The engine and its shadow hold the same books, occupancy and remembered orders.
fn same_state(
    engine: &Engine,
    shadow: &Engine,
    history: &dyn Fn() -> String,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        all_resting(engine),
        all_resting(shadow),
        "books\n{}",
        history()
    );
    prop_assert_eq!(
        state_stats(engine),
        state_stats(shadow),
        "stats\n{}",
        history()
    );
    prop_assert_eq!(engine.orders(), shadow.orders(), "orders\n{}", history());
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// The engine's events (every field but seq and ts) and books equal the naive model's
    /// after every command; invariants hold; event seq is contiguous from 0 and ts is the
    /// largest command ts so far.
    #[test]
    fn engine_matches_naive_model(scn in scenario(ACCOUNTS, MAX_STEPS)) {
        engine_matches_model(&scn.commands(roomy(), ACCOUNTS))?;
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// After every command each side is in price-time priority (better price first, then
    /// smaller prio), holds positive tick/lot multiples, and the best bid is below the best
    /// ask; with roomy and with tiny capacities.
    #[test]
    fn book_never_rests_crossed(scn in scenario(ACCOUNTS + 1, MAX_STEPS), tiny_config in any::<bool>()) {
        let config = if tiny_config { tiny() } else { roomy() };
        books_stay_ordered_and_uncrossed(&scn.commands(config, ACCOUNTS + 1), config)?;
    }

    /// For every accepted order: accepted qty + amend adjustments = filled (as maker or
    /// taker) + open on the book + cancelled.
    #[test]
    fn quantity_is_conserved_per_order(scn in scenario(ACCOUNTS, MAX_STEPS)) {
        quantity_conserved(&scn.commands(roomy(), ACCOUNTS))?;
    }

    /// Snapshot at a random cut, restore, and apply the rest to both: identical events
    /// (seq and ts included), state hashes and snapshots, at the cut and at the end.
    #[test]
    fn snapshot_then_replay_equals_full_replay(
        scn in scenario(ACCOUNTS, MAX_STEPS),
        cut in any::<prop::sample::Index>(),
    ) {
        let cmds = scn.commands(roomy(), ACCOUNTS);
        snapshot_then_replay(&cmds, cut.index(cmds.len() + 1))?;
    }

    /// `state_hash()` covers the whole state: over the states a stream passes through, two
    /// are equal as snapshot bytes exactly when their hashes are equal.
    #[test]
    fn state_hash_tells_states_apart_like_snapshots(scn in scenario(ACCOUNTS, MAX_STEPS)) {
        hash_tracks_snapshot(&scn.commands(roomy(), ACCOUNTS))?;
    }

    /// The id-hash seed changes memory layout only: same events, same state hash.
    #[test]
    fn hash_seed_changes_nothing_observable(scn in scenario(ACCOUNTS, MAX_STEPS), seed in any::<u64>()) {
        hash_seed_is_layout_only(&scn.commands(roomy(), ACCOUNTS), seed)?;
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// With tiny capacities (4 accounts for 3 account slots, up to 4 symbols for 2, 8 order
    /// records, 4 levels, 2 a side) nothing panics, invariants hold after every command, and
    /// a `capacity` reject is the only event of its command and changes no state: an engine
    /// that never saw those commands stays identical.
    #[test]
    fn capacity_is_rejected_not_panicked(scn in scenario(ACCOUNTS + 1, MAX_STEPS)) {
        capacity_rejects_change_nothing(&scn.commands(tiny(), ACCOUNTS + 1))?;
    }
}

// ----- deterministic tests ---------------------------------------------------------------------

/// A snapshot with two symbols (one `cancel_only`), resting orders on both sides, finished
/// orders (a replaced one among them), armed switches and an account once kill-switched.
fn rich_snapshot() -> Vec<u8> {
    use Side::{Buy, Sell};
    let kinds = [
        add_symbol(BTC, "0.5", "0.01"),
        add_symbol("ETH", "0.01", "1"),
        new(limit(1, "a", Buy, "100", "1.5")),
        new(limit(2, "b", Buy, "99.5", "2").stp(Stp::CancelMaker)),
        new(limit(3, "c", Sell, "101", "0.25").post_only()),
        new(limit(1, "d", Sell, "102", "3").stp(Stp::None)),
        new(limit(2, "e", Sell, "100", "0.5").tif(Tif::Ioc)),
        new(limit(3, "f", Buy, "10.01", "4").on("ETH")),
        new(limit(1, "g", Sell, "10.02", "7")
            .on("ETH")
            .stp(Stp::CancelBoth)),
        cancel(2, "b"),
        new(limit(2, "h", Buy, "99", "1").session(4)),
        amend(1, "a", None, Some("2")),
        replace(2, "h", "h2", Some("98.5"), None),
        cancel_after(2, 4, 1_000),
        cancel_after(3, 1, 2_000),
        trading_status(Some("ETH"), TradingStatus::CancelOnly),
        kill_switch(3, true),
        kill_switch(3, false),
    ];
    let mut engine = Engine::new(roomy()).expect("valid config");
    for cmd in stamped(&kinds) {
        apply(&mut engine, &cmd);
    }
    let stats = engine.stats();
    assert!(
        stats.live_orders >= 4 && stats.finished >= 5 && stats.switches == 2,
        "{stats:?}"
    );
    engine.snapshot()
}

/// A small deterministic xorshift generator: the test needs no seed from outside.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn corrupt_snapshots_are_errors_not_panics() {
    let bytes = rich_snapshot();
    let restored = Engine::restore(&bytes).expect("the intact snapshot restores");
    assert_eq!(restored.snapshot(), bytes);
    for len in 0..bytes.len() {
        assert!(
            Engine::restore(&bytes[..len]).is_err(),
            "truncated to {len} bytes"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Engine::restore(&longer).is_err(), "trailing byte");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let at = (rng.next() % bytes.len() as u64) as usize;
        let flip = (rng.next() % 255 + 1) as u8;
        let mut corrupt = bytes.clone();
        corrupt[at] ^= flip;
        assert!(
            Engine::restore(&corrupt).is_err(),
            "byte {at} xor {flip:#04x} restored"
        );
    }
}

/// Byte flips behind a recomputed checksum reach the decoder and the consistency checks: they
/// must give an error or a consistent engine that snapshots back to the same bytes. The
/// configuration fields are left alone: a valid but huge capacity is a legal snapshot that
/// would allocate accordingly.
#[test]
fn corrupt_snapshot_bodies_behind_a_valid_checksum_are_errors_or_consistent() {
    // Magic, version and body length; the body opens with the configuration.
    const HEADER_LEN: usize = 8 + 4 + 8;
    let config_len = bincode::serialized_size(&roomy()).expect("config encodes") as usize;
    let bytes = rich_snapshot();
    let body = HEADER_LEN + config_len..bytes.len() - 4;
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        let at = body.start + (rng.next() % body.len() as u64) as usize;
        let flip = (rng.next() % 255 + 1) as u8;
        let mut corrupt = bytes.clone();
        corrupt[at] ^= flip;
        let crc_at = corrupt.len() - 4;
        let crc = crc32fast::hash(&corrupt[..crc_at]);
        corrupt[crc_at..].copy_from_slice(&crc.to_le_bytes());
        match Engine::restore(&corrupt) {
            Err(_) => err += 1,
            Ok(engine) => {
                ok += 1;
                if let Err(broken) = engine.check_invariants() {
                    panic!("byte {at} xor {flip:#04x}: restored but inconsistent: {broken}");
                }
                assert!(
                    engine.snapshot() == corrupt,
                    "byte {at} xor {flip:#04x}: restored but snapshots differently"
                );
            }
        }
    }
    assert!(err > 0 && ok > 0, "{ok} restored, {err} refused");
}

/// A name for the outcome an event stands for, for the coverage test. `reused` says whether
/// an accepted order's id had been accepted before (so it had left its dedup window).
fn outcome(cmd: &Command, kind: &EventKind, reused: bool) -> String {
    let is_fok = matches!(cmd.kind, CommandKind::New(NewOrder { tif: Tif::Fok, .. }));
    let is_amend = matches!(cmd.kind, CommandKind::Amend(_));
    match *kind {
        EventKind::Accepted { .. } if reused => "accepted reused id".to_string(),
        EventKind::Accepted { price: None, .. } => "accepted market".to_string(),
        EventKind::Accepted { .. } => "accepted limit".to_string(),
        EventKind::Rejected {
            request, reason, ..
        } => format!("rejected {} {}", request.as_str(), reason.as_str()),
        EventKind::SymbolRejected {
            request, reason, ..
        } => format!("symbol_rejected {} {}", request.as_str(), reason.as_str()),
        EventKind::AccountRejected {
            request, reason, ..
        } => format!("account_rejected {} {}", request.as_str(), reason.as_str()),
        EventKind::Trade {
            maker_account,
            taker_account,
            ..
        } => {
            if maker_account == taker_account {
                "self trade".to_string()
            } else if is_fok {
                "fok trade".to_string()
            } else if is_amend {
                "amend trade".to_string()
            } else {
                "trade".to_string()
            }
        }
        EventKind::Cancelled { reason, .. } => format!("cancelled {}", reason.as_str()),
        EventKind::Amended {
            leaves,
            new_order_id,
            ..
        } => match (new_order_id.is_some(), leaves.0 == 0) {
            (false, false) => "amended".to_string(),
            (true, false) => "amended replace".to_string(),
            (_, true) => "amended to filled".to_string(),
        },
        EventKind::CancelAfter { deadline, .. } => if deadline.0 == 0 {
            "cancel_after disarm"
        } else {
            "cancel_after arm"
        }
        .to_string(),
        EventKind::TradingStatus { status, .. } => format!("trading_status {}", status.as_str()),
        EventKind::KillSwitch { on, .. } => format!("kill_switch {on}"),
    }
}

const WANTED: [&str; 47] = [
    "accepted market",
    "accepted limit",
    "accepted reused id",
    "trade",
    "self trade",
    "fok trade",
    "amend trade",
    "amended",
    "amended replace",
    "amended to filled",
    "cancelled user",
    "cancelled mass",
    "cancelled ioc",
    "cancelled fok",
    "cancelled stp",
    "cancelled expired",
    "cancelled kill_switch",
    "rejected new unknown_symbol",
    "rejected new account_disabled",
    "rejected new cancel_only",
    "rejected new duplicate_order_id",
    "rejected new invalid_qty",
    "rejected new invalid_price",
    "rejected new invalid_tif",
    "rejected new post_only",
    "rejected new capacity",
    "rejected cancel unknown_order",
    "rejected amend unknown_order",
    "rejected amend cancel_only",
    "rejected amend invalid_price",
    "rejected amend invalid_qty",
    "rejected amend duplicate_order_id",
    "rejected amend post_only",
    "rejected amend capacity",
    "symbol_rejected add_symbol duplicate_symbol",
    "symbol_rejected add_symbol invalid_tick",
    "symbol_rejected add_symbol invalid_lot",
    "symbol_rejected add_symbol capacity",
    "symbol_rejected trading_status unknown_symbol",
    "account_rejected cancel_after capacity",
    "account_rejected kill_switch capacity",
    "cancel_after arm",
    "cancel_after disarm",
    "trading_status cancel_only",
    "trading_status open",
    "kill_switch true",
    "kill_switch false",
];

/// The generator reaches every outcome the contract names (so the properties above are not
/// vacuous), and the tiny configuration reaches every kind of capacity reject. (An amend's
/// `account_disabled` cannot happen: a kill switch cancels every live order of the account.)
#[test]
fn generator_covers_every_outcome() {
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (accounts, config) in [(ACCOUNTS, roomy()), (ACCOUNTS + 1, tiny())] {
        let strategy = scenario(accounts, MAX_STEPS);
        for _ in 0..300 {
            let scn = strategy
                .new_tree(&mut runner)
                .expect("a scenario")
                .current();
            let mut engine = Engine::new(config).expect("valid config");
            let mut accepted: BTreeSet<(AccountId, OrderId)> = BTreeSet::new();
            for cmd in scn.commands(config, accounts) {
                for event in apply(&mut engine, &cmd) {
                    let reused = match event.kind {
                        EventKind::Accepted {
                            account, order_id, ..
                        } => !accepted.insert((account, order_id)),
                        _ => false,
                    };
                    seen.insert(outcome(&cmd, &event.kind, reused));
                }
            }
        }
    }
    let missing: Vec<&str> = WANTED
        .iter()
        .copied()
        .filter(|w| !seen.contains(*w))
        .collect();
    assert!(
        missing.is_empty(),
        "never generated: {missing:?}\nseen: {seen:?}"
    );
}

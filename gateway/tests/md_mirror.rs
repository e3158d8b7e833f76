//! The desk's L2 books ([`Desk`]) against the engine: random command streams (the loadgen
//! flow, and hand-made streams with amends that keep or lose their place, crossing amends,
//! IOC/FOK/market orders, post-only, every STP mode, mass cancels and `add_symbol` duplicates)
//! go through an [`Engine`]; every event and the end-of-command marker go into a desk (one
//! item per batch, so commands span batches; a seeded desk takes a command per batch). After
//! every command, a client book built from the snapshot and the book updates so far, and the
//! desk's own snapshot, both equal [`Engine::depth`] on every symbol and side; the desk follows
//! as many orders as the engine has live; each symbol's updates are numbered contiguously;
//! trades are the engine's trades. A desk seeded from the engine mid-stream keeps up just the
//! same.
//!
//! `PROPTEST_CASES` raises the case count (e.g. `PROPTEST_CASES=2000`).

use std::collections::{BTreeMap, HashMap};

use engine::runner::Emitted;
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, EventKind, MassCancel, NewOrder, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif,
    FIXED_ONE,
};
use flow::{FlowConfig, FlowGenerator, Mix};
use gateway::{BookSnapshot, Desk, Level, MdMessage, Outbox};
use proptest::prelude::*;

// ----- the client side ------------------------------------------------------------------------

/// What a market-data client holds for one symbol.
#[derive(Default)]
struct ClientBook {
    seq: u64,
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
}

impl ClientBook {
    fn from_snapshot(snapshot: &BookSnapshot) -> ClientBook {
        let side = |levels: &[Level]| levels.iter().map(|l| (l.price, l.qty)).collect();
        ClientBook {
            seq: snapshot.seq,
            bids: side(&snapshot.bids),
            asks: side(&snapshot.asks),
        }
    }

    fn apply(&mut self, levels: &[Level], side: Side) {
        let book = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        for level in levels {
            assert!(level.qty.0 >= 0, "negative level {level:?}");
            if level.qty.0 == 0 {
                book.remove(&level.price);
            } else {
                book.insert(level.price, level.qty);
            }
        }
    }

    /// Best first, as the engine lists depth.
    fn levels(&self, side: Side) -> Vec<(Price, Qty)> {
        match side {
            Side::Buy => self.bids.iter().rev().map(|(p, q)| (*p, *q)).collect(),
            Side::Sell => self.asks.iter().map(|(p, q)| (*p, *q)).collect(),
        }
    }
}

/// A one-shard desk fed like the hub feeds it: the matcher's output in batches.
struct Fed {
    desk: Desk,
    outbox: Outbox,
    /// Each item its own batch (a command spans batches), or one batch per command.
    per_item: bool,
}

impl Fed {
    fn new(per_item: bool) -> Fed {
        Fed {
            desk: Desk::new(1, 1 << 16),
            outbox: Outbox::default(),
            per_item,
        }
    }

    /// Feeds one applied command, appending the market data it published to `out`.
    fn apply(
        &mut self,
        position: u64,
        command: Command,
        events: &[Event],
        out: &mut Vec<MdMessage>,
    ) {
        let mut batch: Vec<Emitted> = events.iter().map(|e| Emitted::Event(*e)).collect();
        batch.push(Emitted::Applied { position, command });
        let size = if self.per_item { 1 } else { batch.len() };
        // What a snapshot shows of the command's symbols before it: all it may show until the
        // command's end, however the batches split it.
        let before: Vec<Option<BookSnapshot>> = events
            .iter()
            .filter_map(|e| event_symbol(&e.kind))
            .map(|symbol| self.desk.snapshot(&symbol, usize::MAX))
            .collect();
        let parts = batch.chunks(size).count();
        for (n, part) in batch.chunks(size).enumerate() {
            self.desk.apply(0, part, &mut self.outbox);
            out.append(&mut self.outbox.market_data);
            if n + 1 < parts {
                let during: Vec<Option<BookSnapshot>> = events
                    .iter()
                    .filter_map(|e| event_symbol(&e.kind))
                    .map(|symbol| self.desk.snapshot(&symbol, usize::MAX))
                    .collect();
                assert_eq!(
                    during, before,
                    "a snapshot inside the command at {position}"
                );
            }
        }
    }

    fn live_orders(&self) -> usize {
        self.desk.live_orders()
    }

    fn snapshot(&self, symbol: &Symbol, depth: usize) -> Option<BookSnapshot> {
        self.desk.snapshot(symbol, depth)
    }
}

/// The symbol an event is about.
fn event_symbol(kind: &EventKind) -> Option<Symbol> {
    match *kind {
        EventKind::Accepted { symbol, .. }
        | EventKind::Rejected { symbol, .. }
        | EventKind::SymbolRejected { symbol, .. }
        | EventKind::Trade { symbol, .. }
        | EventKind::Cancelled { symbol, .. }
        | EventKind::Amended { symbol, .. }
        | EventKind::TradingStatus { symbol, .. } => Some(symbol),
        EventKind::AccountRejected { .. }
        | EventKind::CancelAfter { .. }
        | EventKind::KillSwitch { .. } => None,
    }
}

/// A desk fed like the hub feeds it, the client books its messages build, and the checks.
struct Follower {
    mirror: Fed,
    clients: HashMap<Symbol, ClientBook>,
    /// Each symbol's last trade id seen.
    last_trade: HashMap<Symbol, u64>,
}

impl Follower {
    fn new() -> Follower {
        Follower {
            mirror: Fed::new(true),
            clients: HashMap::new(),
            last_trade: HashMap::new(),
        }
    }

    /// A follower starting from `engine` (its next command at `position`), with clients that
    /// took a snapshot of every symbol.
    fn seeded(engine: &Engine, position: u64) -> Follower {
        let mut mirror = Fed::new(false);
        mirror.desk.seed(0, engine, position);
        let mut clients = HashMap::new();
        for info in engine.symbols() {
            let snapshot = mirror
                .snapshot(&info.name, usize::MAX)
                .expect("a seeded mirror knows every listed symbol");
            assert_eq!(snapshot.position, position);
            clients.insert(info.name, ClientBook::from_snapshot(&snapshot));
        }
        Follower {
            mirror,
            clients,
            last_trade: HashMap::new(),
        }
    }

    /// Feeds one applied command and checks everything against `engine`.
    fn follow(&mut self, engine: &Engine, position: u64, command: Command, events: &[Event]) {
        let mut out = Vec::new();
        self.mirror.apply(position, command, events, &mut out);

        let trades: Vec<MdMessage> = events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::Trade {
                    symbol,
                    price,
                    qty,
                    taker_side,
                    trade_id,
                    ..
                } => Some(MdMessage::Trade {
                    symbol,
                    id: trade_id,
                    ts: e.ts.0,
                    price,
                    qty,
                    taker_side,
                }),
                _ => None,
            })
            .collect();
        let got: Vec<MdMessage> = out
            .iter()
            .filter(|m| matches!(m, MdMessage::Trade { .. }))
            .cloned()
            .collect();
        assert_eq!(got, trades, "trades of command {position}");
        for trade in &got {
            let MdMessage::Trade { symbol, id, .. } = trade else {
                continue;
            };
            let last = self.last_trade.entry(*symbol).or_insert(0);
            if *last > 0 {
                assert_eq!(*id, *last + 1, "trade ids of {symbol} contiguous");
            }
            *last = *id;
        }

        let mut updated = Vec::new();
        for message in &out {
            let MdMessage::Book {
                symbol,
                seq,
                position: at,
                bids,
                asks,
            } = message
            else {
                continue;
            };
            assert_eq!(*at, position);
            assert!(
                !updated.contains(symbol),
                "one update per symbol and command"
            );
            updated.push(*symbol);
            assert!(
                bids.windows(2).all(|w| w[0].price > w[1].price),
                "bids best first: {bids:?}"
            );
            assert!(
                asks.windows(2).all(|w| w[0].price < w[1].price),
                "asks best first: {asks:?}"
            );
            let client = self.clients.entry(*symbol).or_default();
            assert_eq!(*seq, client.seq + 1, "contiguous seq for {symbol}");
            for (side, levels) in [(Side::Buy, bids), (Side::Sell, asks)] {
                let book = match side {
                    Side::Buy => &client.bids,
                    Side::Sell => &client.asks,
                };
                for level in levels {
                    let before = book.get(&level.price).copied().unwrap_or(Qty(0));
                    assert_ne!(
                        before, level.qty,
                        "an update that changes nothing: {level:?}"
                    );
                }
            }
            client.seq = *seq;
            client.apply(bids, Side::Buy);
            client.apply(asks, Side::Sell);
        }
        self.check(engine, position + 1);
    }

    fn check(&self, engine: &Engine, next_position: u64) {
        assert_eq!(
            self.mirror.live_orders(),
            engine.stats().live_orders as usize,
            "orders followed after position {next_position}"
        );
        for info in engine.symbols() {
            let snapshot = self
                .mirror
                .snapshot(&info.name, usize::MAX)
                .unwrap_or_else(|| panic!("no snapshot of listed {}", info.name));
            assert_eq!(snapshot.position, next_position);
            let empty = ClientBook::default();
            let client = self.clients.get(&info.name).unwrap_or(&empty);
            assert_eq!(snapshot.seq, client.seq, "{}", info.name);
            // The number is the engine's: the same at every site, and after a restart.
            let (updates, _) = engine.book_counters(info.id).expect("listed");
            assert_eq!(snapshot.seq, updates, "{}'s update number", info.name);
            for side in [Side::Buy, Side::Sell] {
                let depth: Vec<(Price, Qty)> = engine
                    .depth(info.id, side)
                    .map(|l| (l.price, l.qty))
                    .collect();
                assert_eq!(
                    client.levels(side),
                    depth,
                    "client book of {} {side:?} after position {next_position}",
                    info.name
                );
                let levels = match side {
                    Side::Buy => &snapshot.bids,
                    Side::Sell => &snapshot.asks,
                };
                let mirrored: Vec<(Price, Qty)> = levels.iter().map(|l| (l.price, l.qty)).collect();
                assert_eq!(mirrored, depth, "snapshot of {} {side:?}", info.name);
                // A limited depth is the best levels.
                let top = self.mirror.snapshot(&info.name, 2).expect("listed");
                let top_levels = match side {
                    Side::Buy => &top.bids,
                    Side::Sell => &top.asks,
                };
                assert_eq!(top_levels.as_slice(), &levels[..levels.len().min(2)]);
            }
        }
        assert!(self.mirror.snapshot(&sym("NOPE"), 10).is_none());
    }
}

/// Runs `commands` from position `first` through an engine with `config` and a follower,
/// and from `split` on (if any) also through a follower seeded from the engine there.
fn run(config: EngineConfig, commands: &[Command], first: u64, split: Option<usize>) -> Engine {
    let mut engine = Engine::new(config).expect("valid config");
    let mut follower = Follower::new();
    let mut seeded: Option<Follower> = None;
    let mut events = Vec::new();
    for (n, command) in commands.iter().enumerate() {
        if split == Some(n) {
            seeded = Some(Follower::seeded(&engine, first + n as u64));
        }
        events.clear();
        engine.apply(command, &mut events);
        let position = first + n as u64;
        follower.follow(&engine, position, *command, &events);
        if let Some(seeded) = &mut seeded {
            seeded.follow(&engine, position, *command, &events);
        }
    }
    engine
}

fn sym(name: &str) -> Symbol {
    Symbol::new(name).expect("valid symbol")
}

fn oid(id: &str) -> OrderId {
    OrderId::new(id).expect("valid order id")
}

// ----- the seeded flow -------------------------------------------------------------------------

fn flow(seed: u64, symbols: u32, cross_ppm: u32, n: usize) -> (EngineConfig, Vec<Command>) {
    let config = FlowConfig {
        seed,
        symbols,
        accounts: 5,
        book_depth: 30,
        cross_ppm,
        price_range: 12,
        max_move: 3,
        max_qty: 6,
        mix: Mix {
            gtc: 200_000,
            ioc: 100_000,
            cancel: 150_000,
            amend: 550_000,
        },
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(config);
    let mut commands = generator.setup();
    commands.extend(generator.generate(n));
    (config.engine_config(), commands)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_mirror_follows_the_seeded_flow(
        seed in any::<u64>(),
        symbols in 1u32..=3,
        cross_ppm in 0u32..=400_000,
        split in 0usize..600,
    ) {
        let (config, commands) = flow(seed, symbols, cross_ppm, 500);
        run(config, &commands, 7, Some(split));
    }
}

// ----- hand-made streams -----------------------------------------------------------------------

/// Symbols: `S0` and `S1` are listed first, `S2` may be listed mid-stream, `ZZ` never is.
const NAMES: [&str; 4] = ["S0", "S1", "S2", "ZZ"];
/// Tick and lot of each name.
const UNITS: [(i64, i64); 4] = [
    (FIXED_ONE, FIXED_ONE),
    (FIXED_ONE / 2, FIXED_ONE / 100),
    (FIXED_ONE / 100, FIXED_ONE / 10),
    (FIXED_ONE, FIXED_ONE),
];
const MID: i64 = 100 * FIXED_ONE;
const ACCOUNTS: u64 = 4;
/// New orders mostly get fresh ids; some take one of a small pool (duplicates happen).
const ID_POOL: u8 = 8;

/// How an amend changes its order.
#[derive(Clone, Copy, Debug)]
enum AmendSel {
    /// Same price, smaller quantity: keeps its place.
    Shrink(u8),
    /// Same price, the same quantity: keeps its place, changes nothing.
    Same,
    /// Same price, more quantity: loses its place.
    Grow(u8),
    /// A new price this many ticks towards (positive) or away from the other side.
    Move(i8),
    /// To the best opposite price: trades.
    Cross,
    /// Price and quantity both.
    Both(i8, u8),
    /// A quantity that is not a multiple of the lot: rejected.
    OffLot,
}

#[derive(Clone, Debug)]
enum Op {
    New {
        account: u64,
        /// A pool id, or a fresh one.
        id: Option<u8>,
        symbol: u8,
        side: Side,
        market: bool,
        /// Ticks towards the other side from `MID`.
        level: i8,
        lots: u8,
        tif: Tif,
        post_only: bool,
        stp: Stp,
    },
    /// The `n`-th resting order (modulo), or a pool id when nothing rests.
    Cancel(u16),
    Amend(u16, AmendSel),
    MassCancel {
        account: u64,
        symbol: Option<u8>,
    },
    AddSymbol {
        symbol: u8,
        bad_tick: bool,
    },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn stp() -> impl Strategy<Value = Stp> {
    prop_oneof![
        3 => Just(Stp::None),
        1 => Just(Stp::CancelTaker),
        1 => Just(Stp::CancelMaker),
        1 => Just(Stp::CancelBoth),
    ]
}

fn tif() -> impl Strategy<Value = Tif> {
    prop_oneof![6 => Just(Tif::Gtc), 2 => Just(Tif::Ioc), 2 => Just(Tif::Fok)]
}

fn amend_sel() -> impl Strategy<Value = AmendSel> {
    prop_oneof![
        3 => (1u8..=5).prop_map(AmendSel::Shrink),
        1 => Just(AmendSel::Same),
        2 => (1u8..=5).prop_map(AmendSel::Grow),
        3 => (-4i8..=4).prop_map(AmendSel::Move),
        2 => Just(AmendSel::Cross),
        1 => ((-4i8..=4), (1u8..=9)).prop_map(|(m, q)| AmendSel::Both(m, q)),
        1 => Just(AmendSel::OffLot),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (
            1..=ACCOUNTS,
            prop::option::weighted(0.1, 0..ID_POOL),
            0u8..4,
            side(),
            prop::bool::weighted(0.1),
            -6i8..=3,
            1u8..=9,
            tif(),
            prop::bool::weighted(0.15),
            stp(),
        )
            .prop_map(
                |(account, id, symbol, side, market, level, lots, tif, post_only, stp)| Op::New {
                    account,
                    id,
                    symbol: symbol % 3,
                    side,
                    market,
                    level,
                    lots,
                    // A market GTC order is rejected: keep a few.
                    tif: if market && tif == Tif::Gtc && lots % 3 != 0 { Tif::Ioc } else { tif },
                    post_only,
                    stp,
                },
            ),
        3 => any::<u16>().prop_map(Op::Cancel),
        6 => (any::<u16>(), amend_sel()).prop_map(|(n, sel)| Op::Amend(n, sel)),
        1 => (1..=ACCOUNTS, prop::option::of(0u8..4))
            .prop_map(|(account, symbol)| Op::MassCancel { account, symbol }),
        1 => (0u8..4, prop::bool::weighted(0.2))
            .prop_map(|(symbol, bad_tick)| Op::AddSymbol { symbol, bad_tick }),
    ]
}

/// Resting orders of `engine`, oldest first.
fn resting(engine: &Engine) -> Vec<(engine::RestingOrder, Symbol)> {
    let mut all = Vec::new();
    for info in engine.symbols() {
        for side in [Side::Buy, Side::Sell] {
            all.extend(engine.resting(info.id, side).map(|o| (o, info.name)));
        }
    }
    all.sort_by_key(|(o, _)| o.prio);
    all
}

fn price_at(symbol: usize, side: Side, level: i8) -> Price {
    let toward = match side {
        Side::Buy => 1,
        Side::Sell => -1,
    };
    Price(MID + toward * i64::from(level) * UNITS[symbol].0)
}

fn add_symbol(symbol: usize, bad_tick: bool) -> CommandKind {
    CommandKind::AddSymbol(AddSymbol {
        symbol: sym(NAMES[symbol]),
        tick: Price(if bad_tick { 0 } else { UNITS[symbol].0 }),
        lot: Qty(UNITS[symbol].1),
    })
}

/// The commands of `ops`, aimed at the live orders of an engine that applies them.
fn commands(config: EngineConfig, ops: &[Op]) -> Vec<Command> {
    let mut scratch = Engine::new(config).expect("valid config");
    let mut out = Vec::new();
    let mut fresh = 0u32;
    let mut push = |scratch: &mut Engine, kind: CommandKind| {
        let command = Command::new(out.len() as u64 + 1, kind);
        scratch.apply(&command, &mut Vec::new());
        out.push(command);
    };
    push(&mut scratch, add_symbol(0, false));
    push(&mut scratch, add_symbol(1, false));
    for op in ops {
        let kind = match *op {
            Op::New {
                account,
                id,
                symbol,
                side,
                market,
                level,
                lots,
                tif,
                post_only,
                stp,
            } => {
                let symbol = usize::from(symbol);
                let order_id = match id {
                    Some(id) => oid(&format!("p{id}")),
                    None => {
                        fresh += 1;
                        oid(&format!("f{fresh}"))
                    }
                };
                CommandKind::New(NewOrder {
                    account: AccountId(account),
                    order_id,
                    symbol: sym(NAMES[symbol]),
                    side,
                    ord_type: if market {
                        OrdType::Market
                    } else {
                        OrdType::Limit
                    },
                    price: Some(price_at(symbol, side, level)),
                    qty: Qty(i64::from(lots) * UNITS[symbol].1),
                    tif,
                    post_only,
                    stp,
                    session: 0,
                })
            }
            Op::Cancel(n) => {
                let live = resting(&scratch);
                match live.get(usize::from(n) % live.len().max(1)) {
                    Some((order, symbol)) => CommandKind::Cancel(CancelOrder {
                        account: order.account,
                        symbol: *symbol,
                        order_id: order.order_id,
                    }),
                    None => CommandKind::Cancel(CancelOrder {
                        account: AccountId(1),
                        symbol: sym("S0"),
                        order_id: oid("o1"),
                    }),
                }
            }
            Op::Amend(n, sel) => {
                let live = resting(&scratch);
                let Some((order, symbol)) = live.get(usize::from(n) % live.len().max(1)) else {
                    continue;
                };
                let index = NAMES
                    .iter()
                    .position(|name| *name == symbol.as_str())
                    .expect("a known name");
                let (tick, lot) = UNITS[index];
                let toward = match order.side {
                    Side::Buy => 1,
                    Side::Sell => -1,
                };
                let moved = |m: i8| Price((order.price.0 + toward * i64::from(m) * tick).max(tick));
                let lots = order.qty.0 / lot;
                let (price, qty) = match sel {
                    AmendSel::Shrink(k) => (None, Some(Qty((lots - i64::from(k)).max(1) * lot))),
                    AmendSel::Same => (Some(order.price), Some(order.qty)),
                    AmendSel::Grow(k) => (None, Some(Qty((lots + i64::from(k)) * lot))),
                    AmendSel::Move(m) => (Some(moved(m)), None),
                    AmendSel::Cross => {
                        let id = scratch.symbol_id(symbol).expect("listed");
                        let best = scratch.depth(id, order.side.opposite()).next();
                        (Some(best.map_or(order.price, |l| l.price)), None)
                    }
                    AmendSel::Both(m, k) => (Some(moved(m)), Some(Qty(i64::from(k) * lot))),
                    AmendSel::OffLot => (None, Some(Qty(lot + lot / 2))),
                };
                CommandKind::Amend(AmendOrder {
                    account: order.account,
                    symbol: *symbol,
                    order_id: order.order_id,
                    price,
                    qty,
                    new_order_id: None,
                })
            }
            Op::MassCancel { account, symbol } => CommandKind::MassCancel(MassCancel {
                account: AccountId(account),
                symbol: symbol.map(|s| sym(NAMES[usize::from(s)])),
                session: None,
            }),
            Op::AddSymbol { symbol, bad_tick } => add_symbol(usize::from(symbol), bad_tick),
        };
        push(&mut scratch, kind);
    }
    out
}

fn small_config() -> EngineConfig {
    EngineConfig {
        symbols_max: 3,
        accounts_max: 8,
        orders_max: 24,
        levels_max: 12,
        levels_per_side_max: 5,
        retired_ids_max: 16,
        ..EngineConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_mirror_follows_hand_made_streams(
        ops in prop::collection::vec(op(), 0..250),
        split in 0usize..260,
        small in any::<bool>(),
    ) {
        // Small capacities make `capacity` rejects (of new orders and amends) happen too.
        let config = if small { small_config() } else { EngineConfig::default() };
        let commands = commands(config, &ops);
        run(config, &commands, 0, Some(split));
    }
}

// ----- cases worth naming ------------------------------------------------------------------------

fn new_order(account: u64, id: &str, side: Side, price: i64, qty: i64, tif: Tif) -> CommandKind {
    CommandKind::New(NewOrder {
        account: AccountId(account),
        order_id: oid(id),
        symbol: sym("S0"),
        side,
        ord_type: OrdType::Limit,
        price: Some(Price(price * FIXED_ONE)),
        qty: Qty(qty),
        tif,
        post_only: false,
        stp: Stp::None,
        session: 0,
    })
}

fn stream(kinds: Vec<CommandKind>) -> Vec<Command> {
    let mut out = vec![Command::new(0, add_symbol(0, false))];
    out.extend(
        kinds
            .into_iter()
            .enumerate()
            .map(|(n, kind)| Command::new(n as u64 + 1, kind)),
    );
    out
}

/// A level whose total is beyond 64 bits is shown saturated, as the engine shows it, and
/// the mirror neither overflows nor loses count when it shrinks back.
#[test]
fn a_level_beyond_64_bits_saturates_like_the_engine() {
    // 5·10^18: two of them exceed i64::MAX.
    let big = 50_000_000_000 * FIXED_ONE;
    let commands = stream(vec![
        new_order(1, "a", Side::Buy, 100, big, Tif::Gtc),
        new_order(1, "b", Side::Buy, 100, big, Tif::Gtc),
        new_order(1, "c", Side::Buy, 100, big, Tif::Gtc),
        new_order(2, "d", Side::Sell, 100, big, Tif::Ioc),
        new_order(2, "e", Side::Sell, 100, big, Tif::Ioc),
        CommandKind::Cancel(CancelOrder {
            account: AccountId(1),
            symbol: sym("S0"),
            order_id: oid("c"),
        }),
    ]);
    let config = EngineConfig {
        symbols_max: 1,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).expect("valid config");
    let mut mirror = Fed::new(true);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for (position, command) in commands.iter().enumerate() {
        events.clear();
        engine.apply(command, &mut events);
        mirror.apply(position as u64, *command, &events, &mut out);
        let id = engine.symbol_id(&sym("S0")).expect("listed");
        let depth: Vec<(Price, Qty)> = engine
            .depth(id, Side::Buy)
            .map(|l| (l.price, l.qty))
            .collect();
        let snapshot = mirror.snapshot(&sym("S0"), 10).expect("listed");
        let bids: Vec<(Price, Qty)> = snapshot.bids.iter().map(|l| (l.price, l.qty)).collect();
        assert_eq!(bids, depth, "after command {position}");
    }
    // Saturated from the second order on; the third order and the first trade change
    // nothing that shows, so they send no update; then exact again.
    let totals: Vec<(u64, Qty)> = out
        .iter()
        .filter_map(|m| match m {
            MdMessage::Book { bids, position, .. } => bids.first().map(|l| (*position, l.qty)),
            MdMessage::Trade { .. } => None,
        })
        .collect();
    assert_eq!(
        totals,
        vec![
            (1, Qty(big)),
            (2, Qty(i64::MAX)),
            (5, Qty(big)),
            (6, Qty(0))
        ]
    );
}

/// An amend that keeps the order's price and size changes nothing visible: no update.
#[test]
fn an_amend_that_changes_nothing_sends_no_update() {
    let commands = stream(vec![
        new_order(1, "a", Side::Buy, 100, FIXED_ONE * 5, Tif::Gtc),
        CommandKind::Amend(AmendOrder {
            account: AccountId(1),
            symbol: sym("S0"),
            order_id: oid("a"),
            price: Some(Price(100 * FIXED_ONE)),
            qty: Some(Qty(FIXED_ONE * 5)),
            new_order_id: None,
        }),
    ]);
    // `run` checks that no update is empty and that seq numbers stay contiguous.
    run(EngineConfig::default(), &commands, 0, None);
}

/// An order that trades on entry and rests its remainder shows only the end state: the
/// maker's level gone and the remainder resting, in one update.
#[test]
fn a_crossing_order_shows_only_the_end_of_its_command() {
    let commands = stream(vec![
        new_order(1, "a", Side::Sell, 101, FIXED_ONE * 2, Tif::Gtc),
        new_order(2, "b", Side::Buy, 101, FIXED_ONE * 5, Tif::Gtc),
    ]);
    let mut engine = Engine::new(EngineConfig::default()).expect("valid config");
    let mut mirror = Fed::new(true);
    let mut out = Vec::new();
    for (position, command) in commands.iter().enumerate() {
        let mut events = Vec::new();
        engine.apply(command, &mut events);
        mirror.apply(position as u64, *command, &events, &mut out);
    }
    let level = |price: i64, qty: i64| Level {
        price: Price(price * FIXED_ONE),
        qty: Qty(qty * FIXED_ONE),
    };
    let books: Vec<&MdMessage> = out
        .iter()
        .filter(|m| matches!(m, MdMessage::Book { .. }))
        .collect();
    assert_eq!(books.len(), 2);
    assert_eq!(
        *books[1],
        MdMessage::Book {
            symbol: sym("S0"),
            seq: 2,
            position: 2,
            bids: vec![level(101, 3)],
            asks: vec![level(101, 0)],
        }
    );
}

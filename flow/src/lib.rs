//! A seeded, deterministic, exchange-core-like order flow.
//!
//! [`FlowGenerator`] yields [`Command`]s: first a setup phase (one `add_symbol` per symbol, then
//! GTC orders round-robin over the symbols until each book holds about
//! [`FlowConfig::book_depth`] resting orders spread around its mid), then the steady-state mix
//! of exchange-core's benchmark ([`Mix::EXCHANGE_CORE`]): 9% GTC limit orders, 3% IOC limit
//! orders, 6% cancels and 82% price amends ("moves"), of which about 6% trade.
//!
//! To generate only valid cancels and amends the generator runs its own [`Engine`] (with
//! [`FlowConfig::engine_config`]) and applies every command it yields; it follows the events to
//! know which orders rest and at which price. Everything is a function of the configuration
//! (seed included): the same configuration gives the same commands on every machine.
//!
//! How prices are chosen, per symbol, from the engine's best bid and ask:
//! - a *passive* order (most GTC orders) goes at the mid minus (buy) or plus (sell) a random
//!   offset below [`FlowConfig::price_range`] ticks, skewed towards the mid; it never trades;
//! - a *move* shifts a random live order by 1..=[`FlowConfig::max_move`] ticks, staying on its
//!   side of the mid (within `price_range` of it, drifting back when it is further), so it does
//!   not trade; a fraction [`FlowConfig::cross_ppm`] of the moves instead re-prices the order at
//!   the best opposite price, where it trades;
//! - the same fraction of GTC orders is priced at the best opposite price (they trade and rest
//!   any rest); IOC orders always are, with a quantity below the first maker's, so they trade
//!   without emptying the book.
//!
//! The books are held near `book_depth`: when a book is more than 1% below it, a cancel is
//! replaced by a GTC order; when it is more than 1% above it, a GTC order is replaced by a
//! cancel. A trading move always takes at least one order off the book (the mover or a maker),
//! so with the default mix the books shrink a little and about 0.7% of the commands move from
//! cancel to GTC (e.g. 9.8% GTC and 5.2% cancel). [`FlowStats`] counts what was actually
//! generated.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;

use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, EventKind, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Side, Stp, Symbol,
    SymbolId, Tif, COUNT_MAX,
};

/// Shares of the steady-state command kinds, in parts per million (they add up to 1,000,000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// New GTC limit orders.
    pub gtc: u32,
    /// New IOC limit orders.
    pub ioc: u32,
    /// Cancels of live orders.
    pub cancel: u32,
    /// Price amends ("moves") of live orders.
    pub amend: u32,
}

impl Mix {
    /// exchange-core's benchmark mix: 9% GTC, 3% IOC, 6% cancel, 82% move.
    pub const EXCHANGE_CORE: Mix = Mix {
        gtc: 90_000,
        ioc: 30_000,
        cancel: 60_000,
        amend: 820_000,
    };

    fn total(&self) -> u64 {
        u64::from(self.gtc) + u64::from(self.ioc) + u64::from(self.cancel) + u64::from(self.amend)
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix::EXCHANGE_CORE
    }
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Seed of the generator's PRNG: the only source of randomness.
    pub seed: u64,
    /// Symbols, named `S0000`, `S0001`, ...; each command picks one uniformly.
    pub symbols: u32,
    /// Accounts `1..=accounts`; each new order picks one uniformly.
    pub accounts: u32,
    /// Target number of resting orders per symbol (built by the setup phase, then held).
    pub book_depth: usize,
    /// Shares of the steady-state command kinds.
    pub mix: Mix,
    /// Parts per million of GTC orders and of moves priced to trade (IOC orders always are).
    /// The default makes about 6% of all steady-state commands trade.
    pub cross_ppm: u32,
    /// Every symbol's price increment.
    pub tick: Price,
    /// Every symbol's quantity increment.
    pub lot: Qty,
    /// Mid price of an empty book, in ticks.
    pub start_price: i64,
    /// How far from the mid passive orders are kept, in ticks.
    pub price_range: i64,
    /// Largest price step of a passive move, in ticks.
    pub max_move: i64,
    /// Largest quantity of a new order, in lots (quantities are uniform in `1..=max_qty`).
    pub max_qty: u64,
    /// Log time between two consecutive commands, in nanoseconds.
    pub ts_step: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            seed: 1,
            symbols: 1,
            accounts: 1000,
            book_depth: 1000,
            mix: Mix::EXCHANGE_CORE,
            cross_ppm: 33_000,
            tick: Price(1_000_000), // 0.01
            lot: Qty(100_000),      // 0.001
            start_price: 100_000,   // 1000.00
            price_range: 100,
            max_move: 5,
            max_qty: 20,
            ts_step: 1_000,
        }
    }
}

impl FlowConfig {
    /// The name of the flow's symbol number `index`: `S0000`, `S0001`, ...
    pub fn symbol_name(index: u32) -> String {
        format!("S{index:04}")
    }

    /// The symbols this flow trades, as (name, tick, lot): what a site must list for it. The
    /// setup's `add_symbol` commands cannot be sent through a gateway, so a site serving this
    /// flow is configured with these instead.
    pub fn symbol_specs(&self) -> Vec<(String, Price, Qty)> {
        (0..self.symbols)
            .map(|i| (FlowConfig::symbol_name(i), self.tick, self.lot))
            .collect()
    }

    /// Whether [`FlowGenerator::new`] accepts this configuration; the error names the first
    /// problem.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.symbols > 0 && self.symbols <= 10_000,
                "1..=10000 symbols",
            ),
            (self.accounts > 0, "at least one account"),
            (
                self.mix.total() == 1_000_000,
                "the mix adds up to 1,000,000",
            ),
            (
                self.cross_ppm <= 1_000_000,
                "cross_ppm is at most 1,000,000",
            ),
            (self.tick.0 > 0 && self.lot.0 > 0, "positive tick and lot"),
            (
                self.price_range > 0 && self.max_move > 0 && self.max_qty > 0,
                "positive price range, move and quantity",
            ),
            (
                self.start_price > 2 * self.price_range,
                "the start price leaves room below the book",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, problem)) => Err((*problem).to_string()),
            None => Ok(()),
        }
    }

    /// Engine capacities under which this flow is never rejected for capacity. The generator
    /// runs its own engine with them; an engine replaying the flow should use them too.
    ///
    /// The dedup window is [`FLOW_DEDUP_WINDOW_NS`] of log time, so a long flow expires finished
    /// orders in its steady state (as a node does) and benchmarks measure that. The engine needs
    /// room for live plus finished-in-window orders, which together are at most the orders live
    /// at the window's start plus one new id per command in it (a finish only ends an order
    /// counted there): `orders_max` plus the window's commands.
    pub fn engine_config(&self) -> EngineConfig {
        let clamp = |n: u64| n.clamp(1, u64::from(COUNT_MAX)) as u32;
        let symbols = u64::from(self.symbols.max(1));
        let per_side = EngineConfig::default()
            .levels_per_side_max
            .max(clamp(8 * self.price_range.max(1) as u64));
        let orders_max = clamp((symbols * self.book_depth as u64 * 4).max(1 << 10));
        let per_window = FLOW_DEDUP_WINDOW_NS / self.ts_step.max(1) + 1;
        EngineConfig {
            symbols_max: clamp(symbols),
            accounts_max: clamp(u64::from(self.accounts.max(1))),
            orders_max,
            retired_ids_max: clamp(u64::from(orders_max) + per_window),
            dedup_window_ns: FLOW_DEDUP_WINDOW_NS,
            levels_max: clamp(symbols * 2 * u64::from(per_side)),
            levels_per_side_max: per_side,
            ..EngineConfig::default()
        }
    }
}

/// The dedup window of [`FlowConfig::engine_config`]: 100 ms of log time (100,000 commands at the
/// default step of 1 µs).
pub const FLOW_DEDUP_WINDOW_NS: u64 = 100_000_000;

/// Counts of what a flow contains and what applying it caused. The kind counters and the
/// event counters cover the steady-state commands only; `setup` counts the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Setup commands (`add_symbol` and the pre-fill orders).
    pub setup: u64,
    /// New GTC limit orders.
    pub gtc: u64,
    /// New IOC limit orders.
    pub ioc: u64,
    /// Cancels.
    pub cancel: u64,
    /// Amends.
    pub amend: u64,
    /// Other commands (market, FOK, mass cancel, `add_symbol`) seen by [`FlowStats::record`].
    pub other: u64,
    /// Commands that caused at least one trade.
    pub trading: u64,
    /// Trade events.
    pub trades: u64,
    /// All events.
    pub events: u64,
    /// Rejected commands (any reason).
    pub rejected: u64,
    /// Rejected with `unknown_order`.
    pub unknown_order: u64,
    /// Rejected with `capacity`.
    pub capacity: u64,
}

impl FlowStats {
    /// Counts one steady-state command and the events it caused.
    pub fn record(&mut self, cmd: &Command, events: &[Event]) {
        match &cmd.kind {
            CommandKind::New(order) if order.ord_type == OrdType::Limit => match order.tif {
                Tif::Gtc => self.gtc += 1,
                Tif::Ioc => self.ioc += 1,
                Tif::Fok => self.other += 1,
            },
            CommandKind::Cancel(_) => self.cancel += 1,
            CommandKind::Amend(_) => self.amend += 1,
            _ => self.other += 1,
        }
        let mut trades = 0;
        for event in events {
            match event.kind {
                EventKind::Trade { .. } => trades += 1,
                EventKind::Rejected { reason, .. } | EventKind::SymbolRejected { reason, .. } => {
                    self.rejected += 1;
                    match reason {
                        RejectReason::UnknownOrder => self.unknown_order += 1,
                        RejectReason::Capacity => self.capacity += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        self.events += events.len() as u64;
        self.trades += trades;
        self.trading += u64::from(trades > 0);
    }

    /// Steady-state commands counted.
    pub fn commands(&self) -> u64 {
        self.gtc + self.ioc + self.cancel + self.amend + self.other
    }

    /// `count` as a fraction of the steady-state commands (0 when there are none).
    pub fn fraction(&self, count: u64) -> f64 {
        match self.commands() {
            0 => 0.0,
            total => count as f64 / total as f64,
        }
    }

    /// Fraction of the steady-state commands that caused at least one trade.
    pub fn trade_fraction(&self) -> f64 {
        self.fraction(self.trading)
    }
}

impl fmt::Display for FlowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |count| 100.0 * self.fraction(count);
        write!(
            f,
            "{} commands (+{} setup): gtc {:.2}%, ioc {:.2}%, cancel {:.2}%, amend {:.2}%; \
             trading {:.2}% ({} trades, {:.3} per trading command); {} events; \
             rejected {} (unknown_order {}, capacity {})",
            self.commands(),
            self.setup,
            pct(self.gtc),
            pct(self.ioc),
            pct(self.cancel),
            pct(self.amend),
            pct(self.trading),
            self.trades,
            self.trades as f64 / self.trading.max(1) as f64,
            self.events,
            self.rejected,
            self.unknown_order,
            self.capacity,
        )
    }
}

/// SplitMix64: tiny, fast, good enough for load, and the same everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    fn side(&mut self) -> Side {
        if self.coin() {
            Side::Buy
        } else {
            Side::Sell
        }
    }
}

/// A live (resting) order the generator knows of.
#[derive(Clone, Copy, Debug)]
struct Live {
    num: u64,
    account: AccountId,
    side: Side,
    /// In ticks.
    price: i64,
}

/// Where a live order is: its symbol and its place in that symbol's `live` list.
#[derive(Clone, Copy, Debug)]
struct Slot {
    book: u32,
    at: u32,
}

const NO_SLOT: Slot = Slot {
    book: u32::MAX,
    at: u32::MAX,
};

#[derive(Debug)]
struct BookState {
    name: Symbol,
    id: SymbolId,
    live: Vec<Live>,
}

/// The kinds of steady-state command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gtc,
    Ioc,
    Cancel,
    Amend,
}

/// A seeded generator of valid commands; see the module docs.
///
/// ```
/// use flow::{FlowConfig, FlowGenerator};
///
/// let mut flow = FlowGenerator::new(FlowConfig { book_depth: 100, ..FlowConfig::default() });
/// let setup = flow.setup(); // add_symbol and the pre-fill orders
/// let commands = flow.generate(1000); // the steady-state mix
/// assert_eq!(setup.len(), 1 + 100);
/// assert_eq!(flow.stats().commands(), 1000);
/// # let _ = commands;
/// ```
pub struct FlowGenerator {
    config: FlowConfig,
    rng: SplitMix64,
    engine: Engine,
    events: Vec<Event>,
    books: Vec<BookState>,
    /// By order number.
    slots: Vec<Slot>,
    ts: u64,
    setup_started: bool,
    /// Setup commands built (and applied) but not yet handed out.
    pending: VecDeque<Command>,
    stats: FlowStats,
}

impl FlowGenerator {
    /// A generator for `config`.
    ///
    /// # Panics
    /// When `config` is unusable: no symbols or accounts, a mix that does not add up to
    /// 1,000,000, a non-positive tick, lot, start price, price range or move, or `max_qty` 0.
    pub fn new(config: FlowConfig) -> FlowGenerator {
        if let Err(problem) = config.validate() {
            panic!("unusable flow configuration: {problem}");
        }
        let engine =
            Engine::new(config.engine_config()).expect("FlowConfig::engine_config is valid");
        FlowGenerator {
            config,
            rng: SplitMix64(config.seed),
            engine,
            events: Vec::with_capacity(1024),
            books: Vec::with_capacity(config.symbols as usize),
            slots: Vec::new(),
            ts: 0,
            setup_started: false,
            pending: VecDeque::new(),
            stats: FlowStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    /// The generator's engine: the state after every command handed out so far (and the setup
    /// commands not yet handed out, if any).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// What was generated so far.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// The setup commands not yet handed out: all of them (`add_symbol` for each symbol, then
    /// the pre-fill orders) on the first call, none once they have been handed out.
    pub fn setup(&mut self) -> Vec<Command> {
        self.ensure_setup();
        self.pending.drain(..).collect()
    }

    /// The next command: the setup commands first, then the steady-state mix.
    pub fn next_command(&mut self) -> Command {
        self.ensure_setup();
        if let Some(cmd) = self.pending.pop_front() {
            return cmd;
        }
        let cmd = self.steady_command();
        self.apply(&cmd);
        self.stats.record(&cmd, &self.events);
        cmd
    }

    /// The next `n` commands (see [`FlowGenerator::next_command`]).
    pub fn generate(&mut self, n: usize) -> Vec<Command> {
        let mut out = Vec::with_capacity(n);
        out.extend((0..n).map(|_| self.next_command()));
        out
    }

    // ----- setup -----------------------------------------------------------------------------

    fn ensure_setup(&mut self) {
        if self.setup_started {
            return;
        }
        self.setup_started = true;
        for i in 0..self.config.symbols {
            let name = Symbol::new(&FlowConfig::symbol_name(i)).expect("short ASCII name");
            let cmd = self.command(CommandKind::AddSymbol(AddSymbol {
                symbol: name,
                tick: self.config.tick,
                lot: self.config.lot,
            }));
            self.apply(&cmd);
            self.pending.push_back(cmd);
            let id = self.engine.symbol_id(&name).expect("symbol was just added");
            self.books.push(BookState {
                name,
                id,
                live: Vec::with_capacity(self.config.book_depth * 2),
            });
        }
        for _ in 0..self.config.book_depth {
            for book in 0..self.books.len() {
                let side = self.rng.side();
                let cmd = self.passive_new(book, side);
                self.apply(&cmd);
                self.pending.push_back(cmd);
            }
        }
        self.stats.setup = self.pending.len() as u64;
    }

    // ----- steady state ----------------------------------------------------------------------

    fn steady_command(&mut self) -> Command {
        let book = self.rng.below(self.books.len() as u64) as usize;
        let mix = self.config.mix;
        let roll = self.rng.below(1_000_000) as u32;
        let mut kind = if roll < mix.gtc {
            Kind::Gtc
        } else if roll < mix.gtc + mix.ioc {
            Kind::Ioc
        } else if roll < mix.gtc + mix.ioc + mix.cancel {
            Kind::Cancel
        } else {
            Kind::Amend
        };
        let live = self.books[book].live.len();
        let depth = self.config.book_depth;
        let slack = depth / 100;
        if live == 0 && matches!(kind, Kind::Cancel | Kind::Amend) {
            kind = Kind::Gtc;
        }
        // Hold the book near its target depth.
        if kind == Kind::Cancel && live + slack < depth {
            kind = Kind::Gtc;
        }
        let cross = self.rng.below(1_000_000) < u64::from(self.config.cross_ppm);
        match kind {
            Kind::Gtc if live > depth + slack => self.cancel(book),
            Kind::Gtc => {
                let side = self.rng.side();
                match cross.then(|| self.best(book, side.opposite())).flatten() {
                    Some(price) => {
                        let qty = 1 + self.rng.below(self.config.max_qty);
                        self.new_order(book, side, price, qty, Tif::Gtc)
                    }
                    None => self.passive_new(book, side),
                }
            }
            Kind::Ioc => self.ioc(book),
            Kind::Cancel => self.cancel(book),
            Kind::Amend => self.amend(book, cross),
        }
    }

    fn ioc(&mut self, book: usize) -> Command {
        let first = self.rng.side();
        let id = self.books[book].id;
        let lot = self.config.lot.0;
        // The first maker on the opposite side of each candidate side; prefer one with more
        // than one lot, so the IOC can trade without emptying the book.
        let candidates = [first, first.opposite()].map(|side| {
            (
                side,
                self.engine
                    .resting(id, side.opposite())
                    .next()
                    .map(|maker| {
                        (
                            maker.price.0 / self.config.tick.0,
                            (maker.qty.0 / lot) as u64,
                        )
                    }),
            )
        });
        let pick = candidates
            .iter()
            .find(|(_, maker)| maker.is_some_and(|(_, leaves)| leaves > 1))
            .or_else(|| candidates.iter().find(|(_, maker)| maker.is_some()));
        match pick {
            Some(&(side, Some((price, leaves)))) => {
                let qty = 1 + self.rng.below(self.config.max_qty.min(leaves.max(2) - 1));
                self.new_order(book, side, price, qty, Tif::Ioc)
            }
            _ => {
                let price = self.passive_price(book, first);
                let qty = 1 + self.rng.below(self.config.max_qty);
                self.new_order(book, first, price, qty, Tif::Ioc)
            }
        }
    }

    fn cancel(&mut self, book: usize) -> Command {
        let b = &self.books[book];
        let order = b.live[self.rng.below(b.live.len() as u64) as usize];
        let name = b.name;
        self.command(CommandKind::Cancel(CancelOrder {
            account: order.account,
            symbol: name,
            order_id: order_id(order.num),
        }))
    }

    fn amend(&mut self, book: usize, cross: bool) -> Command {
        let b = &self.books[book];
        let order = b.live[self.rng.below(b.live.len() as u64) as usize];
        let name = b.name;
        let crossing = cross
            .then(|| self.best(book, order.side.opposite()))
            .flatten();
        let price = match crossing {
            Some(price) => price,
            None => self.passive_move(book, order.side, order.price),
        };
        self.command(CommandKind::Amend(AmendOrder {
            account: order.account,
            symbol: name,
            order_id: order_id(order.num),
            price: Some(Price(price * self.config.tick.0)),
            qty: None,
            new_order_id: None,
        }))
    }

    // ----- prices ----------------------------------------------------------------------------

    /// The best price of `side`, in ticks.
    fn best(&self, book: usize, side: Side) -> Option<i64> {
        self.engine
            .resting(self.books[book].id, side)
            .next()
            .map(|order| order.price.0 / self.config.tick.0)
    }

    /// The highest price a passive buy and the lowest a passive sell may have: the mid rounded
    /// down and up, strictly inside the spread.
    fn mid(&self, book: usize) -> (i64, i64) {
        match (self.best(book, Side::Buy), self.best(book, Side::Sell)) {
            (Some(bid), Some(ask)) => ((bid + ask) / 2, (bid + ask + 1) / 2),
            (Some(bid), None) => (bid, bid + 1),
            (None, Some(ask)) => (ask - 1, ask),
            (None, None) => (self.config.start_price, self.config.start_price + 1),
        }
    }

    /// A price for a new passive order: inside `price_range` of the mid, more likely near it.
    fn passive_price(&mut self, book: usize, side: Side) -> i64 {
        let range = self.config.price_range as u64;
        let offset = self.rng.below(range).min(self.rng.below(range)) as i64;
        let (buy_top, sell_bottom) = self.mid(book);
        match side {
            Side::Buy => (buy_top - offset).max(1),
            Side::Sell => sell_bottom + offset,
        }
    }

    /// A new price for a resting order at `price` that keeps it passive: a small step, towards
    /// the band `price_range` wide on its side of the mid when it is outside it.
    fn passive_move(&mut self, book: usize, side: Side, price: i64) -> i64 {
        let (buy_top, sell_bottom) = self.mid(book);
        let range = self.config.price_range;
        let (low, high) = match side {
            Side::Buy => ((buy_top - range).max(1), buy_top),
            Side::Sell => (sell_bottom, sell_bottom + range),
        };
        let step = 1 + self.rng.below(self.config.max_move as u64) as i64;
        let up = if price < low {
            true
        } else if price > high {
            false
        } else {
            self.rng.coin()
        };
        let moved = if up {
            // Never above the band's top unless already there (then it moves down).
            (price + step).min(high.max(price - 1))
        } else {
            (price - step).max(low.min(price + 1))
        };
        match moved {
            _ if moved == price && price > low => price - 1,
            _ if moved == price => price + 1,
            _ => moved,
        }
    }

    // ----- commands and bookkeeping ----------------------------------------------------------

    fn command(&mut self, kind: CommandKind) -> Command {
        self.ts += self.config.ts_step;
        Command::new(self.ts, kind)
    }

    fn passive_new(&mut self, book: usize, side: Side) -> Command {
        let price = self.passive_price(book, side);
        let qty = 1 + self.rng.below(self.config.max_qty);
        self.new_order(book, side, price, qty, Tif::Gtc)
    }

    fn new_order(&mut self, book: usize, side: Side, price: i64, lots: u64, tif: Tif) -> Command {
        let account = AccountId(1 + self.rng.below(u64::from(self.config.accounts)));
        let num = self.slots.len() as u64;
        self.slots.push(NO_SLOT);
        let symbol = self.books[book].name;
        self.command(CommandKind::New(NewOrder {
            account,
            order_id: order_id(num),
            symbol,
            side,
            ord_type: OrdType::Limit,
            price: Some(Price(price * self.config.tick.0)),
            qty: Qty(lots as i64 * self.config.lot.0),
            tif,
            post_only: false,
            stp: Stp::CancelTaker,
            session: 0,
        }))
    }

    /// Applies `cmd` to the generator's engine and follows its events.
    fn apply(&mut self, cmd: &Command) {
        self.events.clear();
        self.engine.apply(cmd, &mut self.events);
        for i in 0..self.events.len() {
            match self.events[i].kind {
                EventKind::Trade {
                    maker_order_id,
                    maker_leaves,
                    taker_order_id,
                    taker_leaves,
                    ..
                } => {
                    if maker_leaves.0 == 0 {
                        self.forget(&maker_order_id);
                    }
                    if taker_leaves.0 == 0 {
                        self.forget(&taker_order_id);
                    }
                }
                EventKind::Cancelled { order_id, .. } => self.forget(&order_id),
                EventKind::Amended {
                    order_id, price, ..
                } => {
                    if let Some(slot) = self.slot(&order_id) {
                        self.books[slot.book as usize].live[slot.at as usize].price =
                            price.0 / self.config.tick.0;
                    }
                }
                _ => {}
            }
        }
        if matches!(&cmd.kind, CommandKind::New(order) if order.tif == Tif::Gtc) {
            self.track_if_resting(cmd);
        }
    }

    fn track_if_resting(&mut self, cmd: &Command) {
        let CommandKind::New(order) = &cmd.kind else {
            return;
        };
        let Some(num) = order_number(&order.order_id) else {
            return;
        };
        if self.slots[num as usize].book != u32::MAX {
            return;
        }
        let Some(resting) = self.engine.live_order(order.account, &order.order_id) else {
            return;
        };
        let Some(book) = self.books.iter().position(|b| b.name == order.symbol) else {
            return;
        };
        let live = &mut self.books[book].live;
        self.slots[num as usize] = Slot {
            book: book as u32,
            at: live.len() as u32,
        };
        live.push(Live {
            num,
            account: order.account,
            side: order.side,
            price: resting.price.0 / self.config.tick.0,
        });
    }

    fn slot(&self, id: &OrderId) -> Option<Slot> {
        let num = order_number(id)?;
        self.slots
            .get(num as usize)
            .copied()
            .filter(|slot| slot.book != u32::MAX)
    }

    /// Stops tracking an order that left the book (no-op for untracked ones).
    fn forget(&mut self, id: &OrderId) {
        let Some(slot) = self.slot(id) else {
            return;
        };
        let live = &mut self.books[slot.book as usize].live;
        let gone = live.swap_remove(slot.at as usize);
        self.slots[gone.num as usize] = NO_SLOT;
        if let Some(moved) = live.get(slot.at as usize) {
            self.slots[moved.num as usize] = slot;
        }
    }
}

impl Iterator for FlowGenerator {
    type Item = Command;

    /// Never ends.
    fn next(&mut self) -> Option<Command> {
        Some(self.next_command())
    }
}

/// The client order id of order number `num`: `o` and the number in decimal.
fn order_id(num: u64) -> OrderId {
    let mut buf = [0u8; 21];
    let mut at = buf.len();
    let mut n = num;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    at -= 1;
    buf[at] = b'o';
    OrderId::new(std::str::from_utf8(&buf[at..]).expect("ASCII")).expect("short ASCII id")
}

/// The number of a generated order id.
fn order_number(id: &OrderId) -> Option<u64> {
    id.as_str().strip_prefix('o')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange_core(seed: u64) -> FlowConfig {
        FlowConfig {
            seed,
            symbols: 1,
            accounts: 1000,
            book_depth: 1000,
            ..FlowConfig::default()
        }
    }

    #[test]
    fn order_ids_round_trip() {
        for num in [0, 7, 10, 123_456, u64::MAX] {
            let id = order_id(num);
            assert_eq!(id.as_str(), format!("o{num}"));
            assert_eq!(order_number(&id), Some(num));
        }
    }

    #[test]
    fn same_seed_gives_the_same_commands() {
        let config = FlowConfig {
            symbols: 3,
            book_depth: 200,
            ..exchange_core(42)
        };
        let a = FlowGenerator::new(config).generate(20_000);
        let b = FlowGenerator::new(config).generate(20_000);
        assert_eq!(a, b);
        let c = FlowGenerator::new(FlowConfig { seed: 43, ..config }).generate(20_000);
        assert_ne!(a, c);
    }

    /// Replays setup + `n` steady-state commands into a fresh engine and checks the mix, the
    /// trade fraction and that cancels and amends name live orders.
    fn check_flow(config: FlowConfig, n: usize) -> FlowStats {
        let mut flow = FlowGenerator::new(config);
        let setup = flow.setup();
        let commands = flow.generate(n);
        let generated = *flow.stats();

        let mut engine = Engine::new(config.engine_config()).unwrap();
        let mut events = Vec::new();
        for cmd in &setup {
            events.clear();
            engine.apply(cmd, &mut events);
            assert!(
                events
                    .iter()
                    .all(|e| !matches!(e.kind, EventKind::Rejected { .. })),
                "setup is never rejected"
            );
        }
        let mut replayed = FlowStats {
            setup: setup.len() as u64,
            ..FlowStats::default()
        };
        for cmd in &commands {
            events.clear();
            engine.apply(cmd, &mut events);
            replayed.record(cmd, &events);
        }
        assert_eq!(replayed, generated, "the generator saw what a replay sees");
        assert_eq!(engine.state_hash(), flow.engine().state_hash());

        let stats = replayed;
        eprintln!("{stats}");
        assert_eq!(stats.commands(), n as u64);
        let mix = config.mix;
        for (name, count, target) in [
            ("gtc", stats.gtc, mix.gtc),
            ("ioc", stats.ioc, mix.ioc),
            ("cancel", stats.cancel, mix.cancel),
            ("amend", stats.amend, mix.amend),
        ] {
            let share = 100.0 * stats.fraction(count);
            let target = f64::from(target) / 10_000.0;
            assert!(
                (share - target).abs() <= 1.5,
                "{name}: {share:.2}% vs {target}%"
            );
        }
        let trading = 100.0 * stats.trade_fraction();
        assert!((4.0..=8.0).contains(&trading), "trading {trading:.2}%");
        let unknown = stats.fraction(stats.unknown_order);
        assert!(unknown < 0.005, "unknown_order {unknown}");
        assert_eq!(stats.capacity, 0);

        let live = engine.stats().live_orders as f64;
        let target = (config.book_depth * config.symbols as usize) as f64;
        assert!(
            (live - target).abs() < 0.2 * target,
            "book depth held: {live} live vs {target}"
        );
        stats
    }

    #[test]
    fn one_symbol_matches_the_exchange_core_mix() {
        check_flow(exchange_core(7), 100_000);
    }

    #[test]
    fn many_symbols_match_the_exchange_core_mix() {
        let config = FlowConfig {
            symbols: 20,
            book_depth: 100,
            ..exchange_core(11)
        };
        check_flow(config, 100_000);
    }

    #[test]
    fn setup_builds_the_books_then_hands_out_nothing_more() {
        let config = FlowConfig {
            symbols: 2,
            book_depth: 50,
            ..exchange_core(3)
        };
        let mut flow = FlowGenerator::new(config);
        let setup = flow.setup();
        assert_eq!(setup.len(), 2 + 2 * 50);
        assert!(matches!(setup[0].kind, CommandKind::AddSymbol(_)));
        assert!(flow.setup().is_empty());
        assert_eq!(flow.engine().stats().live_orders, 100);
        assert_eq!(flow.stats().setup, setup.len() as u64);
        // The iterator starts with the same setup.
        let mut again = FlowGenerator::new(config);
        let first: Vec<Command> = again.by_ref().take(setup.len()).collect();
        assert_eq!(first, setup);
        assert_eq!(again.stats().commands(), 0);
    }
}

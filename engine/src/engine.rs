//! The matching state machine: books, order records, the id index, and `apply`.
//!
//! Storage is a handful of flat arrays allocated at construction (orders, price levels,
//! accounts, symbols) linked by `u32` record numbers:
//! - a price level holds a FIFO of its resting orders (intrusive doubly linked list);
//! - each book side is a vector of `(key, level)` sorted so the best price is last, reserved to
//!   `levels_per_side_max` at construction: best price in O(1), a level found by a search
//!   bounded by its key's distance from the best and worst keys (`find_level`), a new level
//!   made by a short shift near the top of the book;
//! - each account holds its live orders in acceptance order (for mass cancel, which sorts them
//!   by time priority); a move does not relink it, so it touches only the price levels;
//! - a finished order frees its record at once (recycled most-recently-freed first, so live
//!   orders stay few and hot) and leaves its final state in `Finished`, a ring that remembers
//!   it for `dedup_window_ns` of log time (duplicate detection, status after the fact), and
//!   never forgets one early: every live order keeps a place there for when it finishes;
//! - `Index`es map (account, client order id) to a live record (small and hot: every cancel
//!   and amend) or to a finished slot (large and cold: only a new order's duplicate check and
//!   finishing touch it), and symbol names and account ids to their records;
//! - `Switches` holds the armed dead-man's switches, earliest deadline first.
//!
//! Before each command, once the clock has moved to its `ts`, finished orders whose window has
//! passed are forgotten and due switches fire; both cost one compare when nothing is due.
//!
//! Nothing here allocates after construction (`add_symbol` takes sides reserved then).

use crate::alloc::{commit_capacity, reserve};
use crate::command::{
    AddSymbol, AmendOrder, CancelAfter, CancelOrder, Command, CommandKind, KillSwitch, MassCancel,
    NewOrder, SetTradingStatus, RULES_VERSION,
};
use crate::config::{ConfigError, EngineConfig};
use crate::event::{CancelReason, Event, EventKind, EventSink, RejectReason, Request};
use crate::finished::{Finished, FinishedRec};
use crate::index::{hash_words, Index, Probe};
use crate::switches::Switches;
use crate::types::{
    AccountId, Lots, OrdType, OrderId, OrderStatus, Price, Qty, Side, Stp, Symbol, SymbolId, Ticks,
    Tif, TimestampNs, TradingStatus,
};
use crate::units::Units;

/// "No record".
pub(crate) const NIL: u32 = u32::MAX;

/// How many of the next finished orders to forget have their index slots prefetched.
const EXPIRY_PREFETCH: usize = 2;

/// In the id index, the tag of a finished slot (an untagged value is a live record). Both are
/// below `COUNT_MAX`, so the tag bit is free.
const FINISHED_TAG: u32 = 1 << 31;

/// What the id index knows of an (account, order id): a live record or a finished slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdRef {
    Live(u32),
    Finished(u32),
}

impl IdRef {
    /// What the id index stores for it.
    pub(crate) fn value(self) -> u32 {
        match self {
            IdRef::Live(rec) => rec,
            IdRef::Finished(slot) => slot | FINISHED_TAG,
        }
    }

    fn decode(value: u32) -> IdRef {
        if value & FINISHED_TAG == 0 {
            IdRef::Live(value)
        } else {
            IdRef::Finished(value & !FINISHED_TAG)
        }
    }
}

/// One order record: a live order (resting, or being matched inside `apply`), or a free one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderRec {
    pub(crate) account: AccountId,
    pub(crate) order_id: OrderId,
    pub(crate) price: Ticks,
    /// Open quantity. Filled is `total - leaves`.
    pub(crate) leaves: Lots,
    /// Total quantity (filled part included); above `leaves` once something filled.
    pub(crate) total: Lots,
    /// Time priority: a global counter taken on entry and on re-entry after an amend.
    pub(crate) prio: u64,
    /// Hash of (account, order id) in the id index.
    pub(crate) hash: u32,
    /// The price level the order rests on, or `NIL`.
    pub(crate) level: u32,
    /// Neighbours in the level FIFO; `next` also links the free records.
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Neighbours in the account's list of live orders (acceptance order).
    pub(crate) acct_prev: u32,
    pub(crate) acct_next: u32,
    pub(crate) account_rec: u32,
    pub(crate) symbol: u32,
    pub(crate) side: Side,
    pub(crate) ord_type: OrdType,
    pub(crate) stp: Stp,
    pub(crate) post_only: bool,
    pub(crate) live: bool,
}

/// The part of a live order's record that only trades, finishing and queries touch: kept in a
/// parallel array so that the records every move and cancel walks stay two cache lines.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderCold {
    /// Sum of price × quantity over its trades, in ticks × lots.
    pub(crate) notional: u128,
    /// The session that entered it.
    pub(crate) session: u64,
    /// The venue's order number (see [`EventKind::Accepted`]).
    pub(crate) number: u64,
}

/// A price level: the FIFO of orders resting at one price.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub(crate) price: Ticks,
    pub(crate) total: u128,
    pub(crate) count: u32,
    /// First order; links the free list while the level is unused.
    pub(crate) head: u32,
    pub(crate) tail: u32,
}

/// A level of a book side; `key` orders the side so that the best price is last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LevelRef {
    pub(crate) key: i64,
    pub(crate) level: u32,
}

/// The order book of one symbol.
#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) name: Symbol,
    pub(crate) tick: Price,
    pub(crate) lot: Qty,
    units: Units,
    pub(crate) status: TradingStatus,
    /// Commands that changed this book's levels: its market-data sequence number, the same at
    /// every site (a command that touches several levels counts once).
    pub(crate) updates: u64,
    /// Trades in this book: the last trade's id (trade ids are contiguous per symbol).
    pub(crate) trades: u64,
    /// The command (`Engine::applied`) that last counted an update here.
    touched_in: u64,
    /// Index by `side_index`: bids, then asks.
    pub(crate) sides: [Vec<LevelRef>; 2],
}

/// An account: for now the head of its live orders and its kill switch; later its balances
/// and limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountRec {
    pub(crate) id: AccountId,
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) live: u32,
    /// The kill switch is on: new orders and amends are refused.
    pub(crate) disabled: bool,
}

pub(crate) fn side_index(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// Sort key of a price on a side: larger is better, so the best level is last.
pub(crate) fn side_key(side: Side, price: Ticks) -> i64 {
    match side {
        Side::Buy => price.0,
        Side::Sell => -price.0,
    }
}

/// Where the level with `key` is on a side (`Ok`), or where it would go (`Err`), as
/// `binary_search` answers.
///
/// Keys are distinct integers in ascending order, so the level `d` places below the best has a
/// key at most `best - d`, and the level `d` places above the worst a key at least `worst + d`:
/// the level with `key` lies between indexes `len - 1 - (best - key)` and `key - worst`. In a
/// book with a level at most ticks near the top (the usual shape) that range is a few levels
/// wide and its first index is the answer; a short scan, then a binary search of what is left
/// of the range, covers books with gaps.
#[inline]
pub(crate) fn find_level(refs: &[LevelRef], key: i64) -> Result<usize, usize> {
    const SCAN: usize = 4;
    let (Some(worst), Some(best)) = (refs.first(), refs.last()) else {
        return Err(0);
    };
    let last = refs.len() - 1;
    if key >= best.key {
        return if key == best.key {
            Ok(last)
        } else {
            Err(last + 1)
        };
    }
    if key <= worst.key {
        return if key == worst.key { Ok(0) } else { Err(0) };
    }
    // Every index below `floor` holds a smaller key, every index above `ceil` a larger one.
    let below_best = usize::try_from(best.key.abs_diff(key)).unwrap_or(usize::MAX);
    let floor = last.saturating_sub(below_best);
    let above_worst = usize::try_from(key.abs_diff(worst.key)).unwrap_or(usize::MAX);
    let end = above_worst.min(last) + 1;
    let scanned = (floor + SCAN).min(end);
    let mut at = floor;
    while at < scanned {
        let found = refs[at].key;
        if found >= key {
            return if found == key { Ok(at) } else { Err(at) };
        }
        at += 1;
    }
    match refs[scanned..end].binary_search_by_key(&key, |r| r.key) {
        Ok(at) => Ok(scanned + at),
        Err(at) => Err(scanned + at),
    }
}

/// The id index's capacity: every live order, and with a dedup window every finished one too,
/// which the room rule keeps to `retired_ids_max` together with the live ones.
fn ids_capacity(config: &EngineConfig) -> usize {
    let ids = if config.dedup_window_ns == 0 {
        config.orders_max
    } else {
        config.orders_max.max(config.retired_ids_max)
    };
    ids as usize
}

/// Whether an order on `side` with `limit` (`None`: market) trades with a resting `price`.
fn crosses(side: Side, limit: Option<Ticks>, price: Ticks) -> bool {
    match (limit, side) {
        (None, _) => true,
        (Some(limit), Side::Buy) => price <= limit,
        (Some(limit), Side::Sell) => price >= limit,
    }
}

impl Book {
    #[inline]
    pub(crate) fn units(&self) -> Units {
        self.units
    }
}

/// The finished state of an order (`order`, `cold`) with `status`, at `now`.
fn frozen(
    order: &OrderRec,
    cold: &OrderCold,
    status: OrderStatus,
    reason: Option<CancelReason>,
    now: TimestampNs,
) -> FinishedRec {
    FinishedRec {
        account: order.account,
        order_id: order.order_id,
        replaced_by: None,
        symbol: order.symbol,
        side: order.side,
        ord_type: order.ord_type,
        status,
        reason,
        price: order.price,
        total: order.total,
        filled: Lots(order.total.0 - order.leaves.0),
        notional: cold.notional,
        session: cold.session,
        number: cold.number,
        finished_at: now,
        hash: order.hash,
    }
}

/// A new order that passed its checks: where it goes and what it is in the book's units.
struct CheckedNew {
    book: u32,
    lots: Lots,
    /// `None` for a market order.
    limit: Option<Ticks>,
    /// `None` for an account's first order.
    account_rec: Option<u32>,
    hash: u32,
}

/// What an amend that passed its checks does to the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AmendOutcome {
    /// The new total is at or below the filled quantity: the order is filled.
    Finishes,
    /// Same price, total not raised: it keeps its time priority.
    KeepsPlace,
    /// It loses its place and re-enters as if new.
    Reenters,
}

/// An amend that passed its checks.
struct CheckedAmend {
    rec: u32,
    price: Ticks,
    total: Lots,
    filled: Lots,
    /// The hash of the new id, when the amend gives one.
    new_hash: Option<u32>,
    outcome: AmendOutcome,
}

/// How matching an incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MatchEnd {
    Filled,
    /// Nothing more crosses its limit.
    Exhausted,
    /// Self-trade prevention stopped it; its rest is to be cancelled.
    Stp,
}

/// Numbers events and writes them to the sink.
struct Emit<'a, S> {
    sink: &'a mut S,
    seq: u64,
    ts: TimestampNs,
}

impl<S: EventSink> Emit<'_, S> {
    #[inline]
    fn push(&mut self, kind: EventKind) {
        self.sink.push(Event {
            seq: self.seq,
            ts: self.ts,
            kind,
        });
        self.seq += 1;
    }
}

/// The deterministic matching engine of one shard.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) clock: TimestampNs,
    pub(crate) next_event_seq: u64,
    pub(crate) next_prio: u64,
    /// The number the next accepted order gets.
    pub(crate) next_number: u64,
    /// Commands this instance applied (a stamp for `Book::touched_in`; not state).
    applied: u64,
    pub(crate) books: Vec<Book>,
    pub(crate) book_index: Index,
    pub(crate) accounts: Vec<AccountRec>,
    pub(crate) account_index: Index,
    pub(crate) orders: Vec<OrderRec>,
    /// `OrderCold` of each record, by record number.
    pub(crate) order_cold: Vec<OrderCold>,
    /// Every id the engine knows, live (its record) or finished inside the window (its slot,
    /// tagged `FINISHED_TAG`): one table, so a new order's duplicate check is one probe and
    /// finishing an order retags its entry in place.
    pub(crate) ids: Index,
    /// Head of the free order records (LIFO).
    pub(crate) free_order: u32,
    pub(crate) finished: Finished,
    /// When the oldest finished order leaves its window (`u64::MAX`: none remembered).
    pub(crate) next_expiry: u64,
    pub(crate) switches: Switches,
    /// Accounts whose kill switch is on: while 0, orders skip the account check.
    pub(crate) disabled_accounts: u32,
    pub(crate) live_orders: u32,
    pub(crate) levels: Vec<Level>,
    /// Book sides reserved for the symbols not listed yet.
    spare_sides: Vec<[Vec<LevelRef>; 2]>,
    /// The orders a mass cancel is about to cancel (room for every live order).
    mass_scratch: Vec<u32>,
    /// Books in name order, for a `trading_status` of every symbol (room for every symbol).
    name_scratch: Vec<u32>,
    pub(crate) free_level: u32,
    pub(crate) levels_used: u32,
    /// The rules version in force ([`crate::command::SetRules`]); 1 from the start.
    pub(crate) rules: u32,
}

/// A listed symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolInfo {
    pub id: SymbolId,
    pub name: Symbol,
    pub tick: Price,
    pub lot: Qty,
}

/// A resting order as the book shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    pub account: AccountId,
    pub order_id: OrderId,
    pub side: Side,
    pub price: Price,
    /// Open quantity.
    pub qty: Qty,
    /// Time priority (smaller is older).
    pub prio: u64,
}

/// One price level of a book side, aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: Price,
    /// Open quantity at this price (saturates at the largest `Qty`).
    pub qty: Qty,
    /// Resting orders at this price.
    pub orders: u32,
}

/// Occupancy figures, for metrics and capacity planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub symbols: u32,
    pub accounts: u32,
    pub live_orders: u32,
    /// Finished orders remembered inside their dedup window.
    pub finished: u32,
    /// Armed dead-man's switches.
    pub switches: u32,
    pub levels: u32,
    pub next_event_seq: u64,
    pub clock: TimestampNs,
}

/// An order as the engine remembers it: live, or finished inside its dedup window. Every site
/// that applied the same log answers the same view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderView {
    pub account: AccountId,
    pub order_id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub ord_type: OrdType,
    /// `None` for a market order.
    pub price: Option<Price>,
    /// Total quantity. After an amend to a total at or below the filled quantity, it is that
    /// total, below `filled`.
    pub total: Qty,
    pub filled: Qty,
    /// Open quantity (0 once finished).
    pub leaves: Qty,
    /// Sum of price × quantity over its trades, exact, in units of 10^-16 (fixed-8 price
    /// times fixed-8 quantity). Average price = notional / filled.
    pub notional: u128,
    pub status: OrderStatus,
    /// Why it was cancelled (status `Cancelled`).
    pub reason: Option<CancelReason>,
    /// The id that replaced it (status `Replaced`).
    pub replaced_by: Option<OrderId>,
    pub session: u64,
    /// The venue's order number (see [`EventKind::Accepted`]).
    pub number: u64,
    /// When it finished (engine time); `None` while live.
    pub finished_at: Option<TimestampNs>,
}

impl Engine {
    /// An empty engine with `config`'s capacities. Memory is reserved fallibly, largest
    /// first, so a configuration this machine cannot hold is an error rather than an abort.
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        config.validate()?;
        let orders = reserve(config.orders_max)?;
        let finished = Finished::with_capacity(config.retired_ids_max)?;
        let ids = Index::with_capacity(ids_capacity(&config))?;
        let levels = reserve(config.levels_max)?;
        // Every book's sides up front: listing a symbol must never depend on the allocator,
        // or the same log could give different events on different machines.
        let mut spare_sides = reserve(config.symbols_max)?;
        for _ in 0..config.symbols_max {
            spare_sides.push([
                reserve(config.levels_per_side_max)?,
                reserve(config.levels_per_side_max)?,
            ]);
        }
        Ok(Engine {
            config,
            clock: TimestampNs(0),
            next_event_seq: 0,
            next_prio: 0,
            next_number: 0,
            applied: 0,
            books: reserve(config.symbols_max)?,
            book_index: Index::with_capacity(config.symbols_max as usize)?,
            accounts: reserve(config.accounts_max)?,
            account_index: Index::with_capacity(config.accounts_max as usize)?,
            orders,
            order_cold: reserve(config.orders_max)?,
            ids,
            free_order: NIL,
            finished,
            next_expiry: u64::MAX,
            switches: Switches::with_capacity(config.switches_max, config.hash_seed)?,
            disabled_accounts: 0,
            rules: 1,
            live_orders: 0,
            levels,
            spare_sides,
            mass_scratch: reserve(config.orders_max)?,
            name_scratch: reserve(config.symbols_max)?,
            free_level: NIL,
            levels_used: 0,
        })
    }

    /// The capacities this engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Maps every page of the memory reserved at construction now. `new` and `restore` only
    /// reserve it, and the kernel maps a page on its first write, a fault of microseconds;
    /// without this call those faults land on commands (each new order id remembered, each
    /// record or level first used) until every page has been written once. A node calls it
    /// once at start-up; it changes no state and allocates nothing. It costs the time to write
    /// the configured capacities (hundreds of megabytes for the defaults).
    pub fn commit_memory(&mut self) {
        // Written where nothing reads it: the spare capacity is taken off again at once.
        let id = OrderId::new("-").expect("a one-character id");
        let filler = OrderRec {
            account: AccountId(0),
            order_id: id,
            price: Ticks(0),
            leaves: Lots(0),
            total: Lots(0),
            prio: 0,
            hash: 0,
            level: NIL,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: NIL,
            account_rec: NIL,
            symbol: NIL,
            side: Side::Buy,
            ord_type: OrdType::Limit,
            stp: Stp::None,
            post_only: false,
            live: false,
        };
        commit_capacity(&mut self.orders, filler);
        let cold = OrderCold {
            notional: 0,
            session: 0,
            number: 0,
        };
        commit_capacity(&mut self.order_cold, cold);
        self.finished.commit_memory(frozen(
            &filler,
            &cold,
            OrderStatus::Filled,
            None,
            self.clock,
        ));
        self.switches.commit_memory();
        let level = Level {
            price: Ticks(0),
            total: 0,
            count: 0,
            head: NIL,
            tail: NIL,
        };
        commit_capacity(&mut self.levels, level);
        let account = AccountRec {
            id: AccountId(0),
            head: NIL,
            tail: NIL,
            live: 0,
            disabled: false,
        };
        commit_capacity(&mut self.accounts, account);
        commit_capacity(&mut self.mass_scratch, NIL);
        commit_capacity(&mut self.name_scratch, NIL);
        let level_ref = LevelRef { key: 0, level: NIL };
        let sides = self.books.iter_mut().map(|book| &mut book.sides);
        for side in sides.chain(&mut self.spare_sides).flatten() {
            commit_capacity(side, level_ref);
        }
        for index in [&mut self.ids, &mut self.book_index, &mut self.account_index] {
            index.commit_memory();
        }
    }

    /// Applies one command, writing what happened to `sink`.
    ///
    /// First the clock moves to the command's `ts` (never back); then finished orders whose
    /// dedup window has passed are forgotten and due dead-man's switches fire (their cancels
    /// are events of this command, before its own); then the command itself applies.
    pub fn apply<S: EventSink>(&mut self, cmd: &Command, sink: &mut S) {
        self.clock = self.clock.max(cmd.ts);
        self.applied += 1;
        let mut out = Emit {
            sink,
            seq: self.next_event_seq,
            ts: self.clock,
        };
        let now = self.clock.0;
        if now >= self.next_expiry {
            self.expire(now);
        }
        if now >= self.switches.next_deadline() {
            self.fire_switches(now, &mut out);
        }
        match &cmd.kind {
            CommandKind::AddSymbol(add) => self.add_symbol(add, &mut out),
            CommandKind::New(order) => self.new_order(order, &mut out),
            CommandKind::Cancel(cancel) => self.cancel(cancel, &mut out),
            CommandKind::Amend(amend) => self.amend(amend, &mut out),
            CommandKind::MassCancel(mass) => self.mass_cancel(mass, &mut out),
            CommandKind::CancelAfter(arm) => self.cancel_after(arm, &mut out),
            CommandKind::Clock => {}
            CommandKind::TradingStatus(set) => self.set_trading_status(set, &mut out),
            CommandKind::KillSwitch(kill) => self.kill_switch(kill, &mut out),
            CommandKind::Rules(set) => self.set_rules(set.version),
        }
        self.next_event_seq = out.seq;
    }

    /// Switches to rules `version` if this binary implements it; any other is left (see
    /// [`crate::command::SetRules`]). No event: the rules change what later commands do.
    fn set_rules(&mut self, version: u32) {
        if (1..=RULES_VERSION).contains(&version) {
            self.rules = version;
        }
    }

    // ----- queries -------------------------------------------------------------------------

    /// The rules version in force.
    pub fn rules(&self) -> u32 {
        self.rules
    }

    /// The listed symbols, in listing order.
    pub fn symbols(&self) -> impl Iterator<Item = SymbolInfo> + '_ {
        self.books.iter().enumerate().map(|(id, book)| SymbolInfo {
            id: SymbolId(id as u32),
            name: book.name,
            tick: book.tick,
            lot: book.lot,
        })
    }

    /// The id of a listed symbol.
    pub fn symbol_id(&self, name: &Symbol) -> Option<SymbolId> {
        self.find_book(name).map(SymbolId)
    }

    /// The resting orders of one side of a book, in priority order (best price first, then
    /// oldest first). Empty for an unknown symbol.
    pub fn resting(&self, symbol: SymbolId, side: Side) -> impl Iterator<Item = RestingOrder> + '_ {
        let refs: &[LevelRef] = self
            .books
            .get(symbol.0 as usize)
            .map_or(&[], |book| &book.sides[side_index(side)]);
        let units = self.books.get(symbol.0 as usize).map(Book::units);
        refs.iter().rev().flat_map(move |r| {
            let mut at = self.levels[r.level as usize].head;
            std::iter::from_fn(move || {
                (at != NIL).then(|| {
                    let order = &self.orders[at as usize];
                    at = order.next;
                    let units = units.expect("a book with levels exists");
                    RestingOrder {
                        account: order.account,
                        order_id: order.order_id,
                        side,
                        price: units.price(order.price),
                        qty: units.qty(order.leaves),
                        prio: order.prio,
                    }
                })
            })
        })
    }

    /// A live order of `account`, if it has one with this client order id.
    pub fn live_order(&self, account: AccountId, order_id: &OrderId) -> Option<RestingOrder> {
        let rec = self.find_order(account, order_id)?;
        let order = &self.orders[rec as usize];
        let units = self.books[order.symbol as usize].units();
        Some(RestingOrder {
            account,
            order_id: *order_id,
            side: order.side,
            price: units.price(order.price),
            qty: units.qty(order.leaves),
            prio: order.prio,
        })
    }

    /// What the engine remembers of `account`'s order `order_id`: live, or finished inside its
    /// dedup window (a replaced id answers as `replaced`, naming its successor).
    pub fn order(&self, account: AccountId, order_id: &OrderId) -> Option<OrderView> {
        let hash = self.order_hash(account, order_id);
        Some(
            match self.find_id(self.ids.start(hash), account, order_id)? {
                IdRef::Live(rec) => self.live_view(rec),
                IdRef::Finished(slot) => self.finished_view(self.finished.get(slot)),
            },
        )
    }

    /// Every order the engine remembers (live, and finished inside the window), sorted by
    /// account, then order id (byte order): `ORDERS.json` of the replay contract, and what a
    /// mass status answers. O(state).
    pub fn orders(&self) -> Vec<OrderView> {
        let mut all: Vec<OrderView> =
            Vec::with_capacity(self.live_orders as usize + self.finished.len() as usize);
        all.extend(
            (0..self.orders.len() as u32)
                .filter(|&rec| self.orders[rec as usize].live)
                .map(|rec| self.live_view(rec)),
        );
        all.extend(self.finished.iter().map(|(_, f)| self.finished_view(f)));
        all.sort_unstable_by_key(|o| (o.account, o.order_id));
        all
    }

    /// A symbol's market-data counters: the commands that changed its levels (its book's
    /// sequence number) and its trades (the last trade id), the same at every site.
    pub fn book_counters(&self, symbol: SymbolId) -> Option<(u64, u64)> {
        self.books
            .get(symbol.0 as usize)
            .map(|book| (book.updates, book.trades))
    }

    /// A symbol's trading status.
    pub fn trading_status(&self, symbol: SymbolId) -> Option<TradingStatus> {
        self.books.get(symbol.0 as usize).map(|book| book.status)
    }

    /// Whether `account`'s kill switch is on.
    pub fn kill_switch_on(&self, account: AccountId) -> bool {
        self.find_account(account)
            .is_some_and(|a| self.accounts[a as usize].disabled)
    }

    /// The accounts whose kill switch is on, in account-id order.
    pub fn kill_switched(&self) -> Vec<AccountId> {
        let mut on: Vec<AccountId> = (self.accounts.iter())
            .filter(|a| a.disabled)
            .map(|a| a.id)
            .collect();
        on.sort_unstable();
        on
    }

    /// The deadline of the dead-man's switch of (`account`, `session`), if armed.
    pub fn switch_deadline(&self, account: AccountId, session: u64) -> Option<TimestampNs> {
        self.switches.deadline(account, session).map(TimestampNs)
    }

    fn live_view(&self, rec: u32) -> OrderView {
        let (o, cold) = (&self.orders[rec as usize], &self.order_cold[rec as usize]);
        let book = &self.books[o.symbol as usize];
        let filled = Lots(o.total.0 - o.leaves.0);
        OrderView {
            account: o.account,
            order_id: o.order_id,
            symbol: book.name,
            side: o.side,
            ord_type: o.ord_type,
            price: (o.ord_type == OrdType::Limit).then(|| book.units().price(o.price)),
            total: book.units().qty(o.total),
            filled: book.units().qty(filled),
            leaves: book.units().qty(o.leaves),
            notional: book.units().notional(cold.notional),
            status: if filled.0 == 0 {
                OrderStatus::New
            } else {
                OrderStatus::PartiallyFilled
            },
            reason: None,
            replaced_by: None,
            session: cold.session,
            number: cold.number,
            finished_at: None,
        }
    }

    fn finished_view(&self, f: &FinishedRec) -> OrderView {
        let book = &self.books[f.symbol as usize];
        OrderView {
            account: f.account,
            order_id: f.order_id,
            symbol: book.name,
            side: f.side,
            ord_type: f.ord_type,
            price: (f.ord_type == OrdType::Limit).then(|| book.units().price(f.price)),
            total: book.units().qty(f.total),
            filled: book.units().qty(f.filled),
            leaves: Qty(0),
            notional: book.units().notional(f.notional),
            status: f.status,
            reason: f.reason,
            replaced_by: f.replaced_by,
            session: f.session,
            number: f.number,
            finished_at: Some(f.finished_at),
        }
    }

    /// The aggregated levels of one side of a book, best first: what an L2 market-data
    /// snapshot shows. Empty for an unknown symbol.
    pub fn depth(&self, symbol: SymbolId, side: Side) -> impl Iterator<Item = DepthLevel> + '_ {
        let book = self.books.get(symbol.0 as usize);
        let refs: &[LevelRef] = book.map_or(&[], |book| &book.sides[side_index(side)]);
        let units = book.map(Book::units);
        refs.iter().rev().map(move |r| {
            let level = &self.levels[r.level as usize];
            let units = units.expect("a book with levels exists");
            DepthLevel {
                price: units.price(level.price),
                qty: units.total(level.total),
                orders: level.count,
            }
        })
    }

    /// Occupancy figures.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            symbols: self.books.len() as u32,
            accounts: self.accounts.len() as u32,
            live_orders: self.live_orders,
            finished: self.finished.len(),
            switches: self.switches.len(),
            levels: self.levels_used,
            next_event_seq: self.next_event_seq,
            clock: self.clock,
        }
    }

    // ----- lookups ---------------------------------------------------------------------------

    pub(crate) fn symbol_hash(&self, name: &Symbol) -> u32 {
        hash_words(self.config.hash_seed, &name.words())
    }

    pub(crate) fn account_hash(&self, account: AccountId) -> u32 {
        hash_words(self.config.hash_seed, &[account.0])
    }

    /// The hash of (`account`, `order_id`). Ids are stored zero-padded to 40 bytes; most are
    /// short (a counter with a prefix), and for an id of at most 8 bytes the four padding words
    /// are left out, halving the multiplies on every order lookup. Still a function of the key.
    pub(crate) fn order_hash(&self, account: AccountId, order_id: &OrderId) -> u32 {
        let w = order_id.words();
        if w[1] | w[2] | w[3] | w[4] == 0 {
            hash_words(self.config.hash_seed, &[account.0, w[0]])
        } else {
            hash_words(
                self.config.hash_seed,
                &[account.0, w[0], w[1], w[2], w[3], w[4]],
            )
        }
    }

    pub(crate) fn find_book(&self, name: &Symbol) -> Option<u32> {
        self.book_index.find(self.symbol_hash(name), |b| {
            self.books[b as usize].name == *name
        })
    }

    pub(crate) fn find_account(&self, account: AccountId) -> Option<u32> {
        self.account_index.find(self.account_hash(account), |a| {
            self.accounts[a as usize].id == account
        })
    }

    /// The live record of (`account`, `order_id`), whose hash is `hash`.
    #[inline]
    fn find_live(&self, hash: u32, account: AccountId, order_id: &OrderId) -> Option<u32> {
        self.ids.find(hash, |value| match IdRef::decode(value) {
            IdRef::Live(rec) => {
                let order = &self.orders[rec as usize];
                order.account == account && order.order_id == *order_id
            }
            IdRef::Finished(_) => false,
        })
    }

    /// The finished slot remembering (`account`, `order_id`), whose hash is `hash`.
    pub(crate) fn find_finished(
        &self,
        hash: u32,
        account: AccountId,
        order_id: &OrderId,
    ) -> Option<u32> {
        match self.find_id(self.ids.start(hash), account, order_id)? {
            IdRef::Finished(slot) => Some(slot),
            IdRef::Live(_) => None,
        }
    }

    /// The live record or finished slot of (`account`, `order_id`), a lookup started by `probe`.
    #[inline]
    fn find_id(&self, probe: Probe, account: AccountId, order_id: &OrderId) -> Option<IdRef> {
        self.ids
            .find_from(probe, |value| match IdRef::decode(value) {
                IdRef::Live(rec) => {
                    let order = &self.orders[rec as usize];
                    order.account == account && order.order_id == *order_id
                }
                IdRef::Finished(slot) => {
                    let f = self.finished.get(slot);
                    f.account == account && f.order_id == *order_id
                }
            })
            .map(IdRef::decode)
    }

    /// Whether the account has an order with this id that is live or finished inside the window.
    pub(crate) fn id_known(&self, hash: u32, account: AccountId, order_id: &OrderId) -> bool {
        self.find_id(self.ids.start(hash), account, order_id)
            .is_some()
    }

    /// Whether the finished-order memory has a place for one more order that will finish (a
    /// new order, or the old id of a replace) on top of the places live orders hold.
    #[inline]
    fn finished_room(&self) -> bool {
        self.config.dedup_window_ns == 0
            || self.finished.len() + self.live_orders < self.config.retired_ids_max
    }

    /// Whether the account's kill switch is on.
    #[inline]
    fn is_disabled(&self, account: AccountId) -> bool {
        self.disabled_accounts != 0
            && self
                .find_account(account)
                .is_some_and(|a| self.accounts[a as usize].disabled)
    }

    /// The live record of (`account`, `order_id`).
    #[inline]
    pub(crate) fn find_order(&self, account: AccountId, order_id: &OrderId) -> Option<u32> {
        self.find_live(self.order_hash(account, order_id), account, order_id)
    }

    /// The resting order (`account`, `order_id`) in book `symbol`, if there is one. The order's
    /// own book is compared by name, which answers as looking the symbol up would (names are
    /// unique; an unknown one matches no book) without hashing it.
    #[inline]
    fn find_resting(&self, account: AccountId, symbol: &Symbol, order_id: &OrderId) -> Option<u32> {
        let rec = self.find_order(account, order_id)?;
        let order = &self.orders[rec as usize];
        (order.level != NIL && self.books[order.symbol as usize].name == *symbol).then_some(rec)
    }

    /// Whether the best opposite price trades with an order on `side` at `limit`.
    #[inline]
    fn crosses_book(&self, book: u32, side: Side, limit: Option<Ticks>) -> bool {
        let opposite = &self.books[book as usize].sides[side_index(side.opposite())];
        opposite
            .last()
            .is_some_and(|best| crosses(side, limit, self.levels[best.level as usize].price))
    }

    /// Whether an order could rest at `price` without exceeding a level capacity.
    #[inline]
    fn level_room(&self, book: u32, side: Side, price: Ticks) -> bool {
        let refs = &self.books[book as usize].sides[side_index(side)];
        let free = self.free_level != NIL || self.levels.len() < self.config.levels_max as usize;
        (free && refs.len() < self.config.levels_per_side_max as usize)
            || self.level_exists(book, side, price)
    }

    /// Whether the level at `price` exists (the slow half of [`Engine::level_room`]).
    #[inline(never)]
    fn level_exists(&self, book: u32, side: Side, price: Ticks) -> bool {
        find_level(
            &self.books[book as usize].sides[side_index(side)],
            side_key(side, price),
        )
        .is_ok()
    }

    // ----- commands --------------------------------------------------------------------------

    fn add_symbol<S: EventSink>(&mut self, add: &AddSymbol, out: &mut Emit<S>) {
        let reason = if self.find_book(&add.symbol).is_some() {
            Some(RejectReason::DuplicateSymbol)
        } else if !add.tick.is_positive() {
            Some(RejectReason::InvalidTick)
        } else if !add.lot.is_positive() {
            Some(RejectReason::InvalidLot)
        } else if self.books.len() >= self.config.symbols_max as usize {
            Some(RejectReason::Capacity)
        } else {
            None
        };
        match reason {
            Some(reason) => out.push(EventKind::SymbolRejected {
                symbol: add.symbol,
                request: Request::AddSymbol,
                reason,
            }),
            None => self.insert_book(add.symbol, add.tick, add.lot),
        }
    }

    /// Lists a symbol, giving it one of the book sides reserved at construction. The caller
    /// has checked that fewer than `symbols_max` are listed. It starts `open`.
    pub(crate) fn insert_book(&mut self, name: Symbol, tick: Price, lot: Qty) {
        let sides = self
            .spare_sides
            .pop()
            .expect("a reserved pair of sides per symbol up to symbols_max");
        let id = self.books.len() as u32;
        self.books.push(Book {
            name,
            tick,
            lot,
            units: Units::new(tick, lot),
            status: TradingStatus::Open,
            updates: 0,
            trades: 0,
            touched_in: 0,
            sides,
        });
        self.book_index.insert(self.symbol_hash(&name), id);
    }

    /// A new order's checks, in the contract's order (then `capacity`).
    #[inline(always)]
    fn check_new(&self, order: &NewOrder) -> Result<CheckedNew, RejectReason> {
        // The id index is large and its slot likely cold: start that lookup first.
        let hash = self.order_hash(order.account, &order.order_id);
        let id_probe = self.ids.start(hash);
        let book = self
            .find_book(&order.symbol)
            .ok_or(RejectReason::UnknownSymbol)?;
        if self.is_disabled(order.account) {
            return Err(RejectReason::AccountDisabled);
        }
        if self.books[book as usize].status != TradingStatus::Open {
            return Err(RejectReason::CancelOnly);
        }
        if self
            .find_id(id_probe, order.account, &order.order_id)
            .is_some()
        {
            return Err(RejectReason::DuplicateOrderId);
        }
        let units = self.books[book as usize].units();
        let lots = units.lots(order.qty).ok_or(RejectReason::InvalidQty)?;
        let limit = match order.ord_type {
            OrdType::Market => None,
            OrdType::Limit => Some(
                order
                    .price
                    .and_then(|p| units.ticks(p))
                    .ok_or(RejectReason::InvalidPrice)?,
            ),
        };
        let market = order.ord_type == OrdType::Market;
        if (market && order.tif == Tif::Gtc)
            || (order.post_only && (market || order.tif != Tif::Gtc))
        {
            return Err(RejectReason::InvalidTif);
        }
        if order.post_only && self.crosses_book(book, order.side, limit) {
            return Err(RejectReason::PostOnly);
        }
        let account_rec = self.find_account(order.account);
        let level_room = match (order.tif, limit) {
            (Tif::Gtc, Some(price)) => self.level_room(book, order.side, price),
            _ => true,
        };
        let room = (account_rec.is_some()
            || self.accounts.len() < self.config.accounts_max as usize)
            && self.live_orders < self.config.orders_max
            && level_room
            && self.finished_room();
        if !room {
            return Err(RejectReason::Capacity);
        }
        Ok(CheckedNew {
            book,
            lots,
            limit,
            account_rec,
            hash,
        })
    }

    fn new_order<S: EventSink>(&mut self, order: &NewOrder, out: &mut Emit<S>) {
        let c = match self.check_new(order) {
            Ok(checked) => checked,
            Err(reason) => {
                return out.push(EventKind::Rejected {
                    account: order.account,
                    order_id: order.order_id,
                    symbol: order.symbol,
                    request: Request::New,
                    reason,
                })
            }
        };
        // Accepted: from here on the order exists.
        let account_rec = c
            .account_rec
            .unwrap_or_else(|| self.insert_account(order.account));
        let prio = self.take_prio();
        let number = self.next_number;
        self.next_number += 1;
        let cold = OrderCold {
            notional: 0,
            session: order.session,
            number,
        };
        let rec = self.insert_live_order(
            OrderRec {
                account: order.account,
                order_id: order.order_id,
                price: c.limit.unwrap_or(Ticks(0)),
                leaves: c.lots,
                total: c.lots,
                prio,
                hash: c.hash,
                level: NIL,
                prev: NIL,
                next: NIL,
                acct_prev: NIL,
                acct_next: NIL,
                account_rec,
                symbol: c.book,
                side: order.side,
                ord_type: order.ord_type,
                stp: order.stp,
                post_only: order.post_only,
                live: true,
            },
            cold,
        );
        let units = self.books[c.book as usize].units();
        out.push(EventKind::Accepted {
            account: order.account,
            order_id: order.order_id,
            symbol: order.symbol,
            side: order.side,
            price: c.limit.map(|ticks| units.price(ticks)),
            qty: order.qty,
            number,
        });
        if order.tif == Tif::Fok && !self.fok_fillable(rec, c.limit) {
            self.cancel_order(rec, CancelReason::Fok, out);
            return;
        }
        let end = self.match_incoming(rec, c.limit, out);
        let rest = match order.tif {
            Tif::Gtc => None,
            Tif::Ioc => Some(CancelReason::Ioc),
            Tif::Fok => {
                assert_eq!(
                    end,
                    MatchEnd::Filled,
                    "a fillable FOK order fills completely"
                );
                None
            }
        };
        self.settle(rec, end, rest, out);
    }

    fn cancel<S: EventSink>(&mut self, cancel: &CancelOrder, out: &mut Emit<S>) {
        match self.find_resting(cancel.account, &cancel.symbol, &cancel.order_id) {
            Some(rec) => self.cancel_order(rec, CancelReason::User, out),
            None => out.push(EventKind::Rejected {
                account: cancel.account,
                order_id: cancel.order_id,
                symbol: cancel.symbol,
                request: Request::Cancel,
                reason: RejectReason::UnknownOrder,
            }),
        }
    }

    /// An amend's checks, in the contract's order (then `capacity`), and what it will do.
    #[inline(always)]
    fn check_amend(&self, amend: &AmendOrder) -> Result<CheckedAmend, RejectReason> {
        let rec = self
            .find_resting(amend.account, &amend.symbol, &amend.order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        let order = &self.orders[rec as usize];
        if self.disabled_accounts != 0 && self.accounts[order.account_rec as usize].disabled {
            return Err(RejectReason::AccountDisabled);
        }
        let book = &self.books[order.symbol as usize];
        if book.status != TradingStatus::Open {
            return Err(RejectReason::CancelOnly);
        }
        let units = book.units();
        let price = match amend.price {
            None => order.price,
            Some(p) => units.ticks(p).ok_or(RejectReason::InvalidPrice)?,
        };
        let total = match amend.qty {
            None => order.total,
            Some(q) => units.lots(q).ok_or(RejectReason::InvalidQty)?,
        };
        let new_hash = match &amend.new_order_id {
            None => None,
            Some(new_id) => Some(self.new_id_hash(amend, new_id)?),
        };
        if order.post_only && self.crosses_book(order.symbol, order.side, Some(price)) {
            return Err(RejectReason::PostOnly);
        }
        let filled = Lots(order.total.0 - order.leaves.0);
        let outcome = if total <= filled {
            AmendOutcome::Finishes
        } else if price == order.price && total <= order.total {
            AmendOutcome::KeepsPlace
        } else {
            AmendOutcome::Reenters
        };
        let needs_level = outcome == AmendOutcome::Reenters
            && price != order.price
            && self.levels[order.level as usize].count > 1;
        if (new_hash.is_some() && !self.finished_room())
            || (needs_level && !self.level_room(order.symbol, order.side, price))
        {
            return Err(RejectReason::Capacity);
        }
        Ok(CheckedAmend {
            rec,
            price,
            total,
            filled,
            new_hash,
            outcome,
        })
    }

    /// The hash of an amend's new id, if the account may take it (not its live or remembered
    /// ids, nor the order's own).
    #[inline(never)]
    fn new_id_hash(&self, amend: &AmendOrder, new_id: &OrderId) -> Result<u32, RejectReason> {
        let hash = self.order_hash(amend.account, new_id);
        if *new_id == amend.order_id || self.id_known(hash, amend.account, new_id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        Ok(hash)
    }

    fn amend<S: EventSink>(&mut self, amend: &AmendOrder, out: &mut Emit<S>) {
        let c = match self.check_amend(amend) {
            Ok(checked) => checked,
            Err(reason) => {
                return out.push(EventKind::Rejected {
                    account: amend.account,
                    order_id: amend.order_id,
                    symbol: amend.symbol,
                    request: Request::Amend,
                    reason,
                })
            }
        };
        let rec = c.rec;
        if let (Some(new_id), Some(new_hash)) = (amend.new_order_id, c.new_hash) {
            self.rename(rec, new_id, new_hash);
        }
        let (symbol, level, old_leaves) = {
            let o = &self.orders[rec as usize];
            (o.symbol, o.level, o.leaves)
        };
        let units = self.books[symbol as usize].units();
        let leaves = Lots(c.total.0.saturating_sub(c.filled.0));
        out.push(EventKind::Amended {
            account: amend.account,
            order_id: amend.order_id,
            symbol: amend.symbol,
            price: units.price(c.price),
            total: units.qty(c.total),
            leaves: units.qty(leaves),
            filled: units.qty(c.filled),
            new_order_id: amend.new_order_id,
        });
        match c.outcome {
            AmendOutcome::Finishes => {
                self.unrest(rec);
                let mut frozen = self.frozen(rec, OrderStatus::Filled, None);
                frozen.price = c.price;
                frozen.total = c.total;
                self.release(rec);
                self.remember(rec, frozen);
            }
            AmendOutcome::KeepsPlace => {
                if leaves != old_leaves {
                    self.touch(symbol);
                }
                let level = &mut self.levels[level as usize];
                level.total -= u128::from(old_leaves.0 - leaves.0);
                let o = &mut self.orders[rec as usize];
                o.leaves = leaves;
                o.total = c.total;
            }
            AmendOutcome::Reenters => self.reenter(rec, c.price, c.total, leaves, out),
        }
    }

    /// Resting order `rec` loses its place: it leaves the book and re-enters at the back of
    /// the level at `price` as if new, matching first if it crosses.
    fn reenter<S: EventSink>(
        &mut self,
        rec: u32,
        price: Ticks,
        total: Lots,
        leaves: Lots,
        out: &mut Emit<S>,
    ) {
        let prio = self.take_prio();
        let (symbol, side) = {
            let o = &mut self.orders[rec as usize];
            o.total = total;
            (o.symbol, o.side)
        };
        if self.crosses_book(symbol, side, Some(price)) {
            self.unrest(rec);
            let o = &mut self.orders[rec as usize];
            o.price = price;
            o.leaves = leaves;
            o.prio = prio;
            let end = self.match_crossing(rec, Some(price), out);
            self.settle(rec, end, None, out);
        } else {
            self.requeue(rec, price, leaves, prio);
        }
    }

    /// Live order `rec` gives up its id for `new_id`: the old id is finished as `replaced`
    /// (frozen as it is now), and the record goes by the new one.
    fn rename(&mut self, rec: u32, new_id: OrderId, new_hash: u32) {
        let mut frozen = self.frozen(rec, OrderStatus::Replaced, None);
        frozen.replaced_by = Some(new_id);
        self.remember(rec, frozen);
        let o = &mut self.orders[rec as usize];
        o.order_id = new_id;
        o.hash = new_hash;
        self.ids.insert(new_hash, rec);
    }

    fn mass_cancel<S: EventSink>(&mut self, mass: &MassCancel, out: &mut Emit<S>) {
        let Some(account) = self.find_account(mass.account) else {
            return;
        };
        let only = match &mass.symbol {
            None => None,
            Some(name) => match self.find_book(name) {
                Some(book) => Some(book),
                None => return,
            },
        };
        self.cancel_where(account, only, mass.session, CancelReason::Mass, out);
    }

    /// Cancels every live order of account record `account` (in book `only_book`, entered by
    /// `only_session`, when given) with `reason`, oldest time priority first.
    fn cancel_where<S: EventSink>(
        &mut self,
        account: u32,
        only_book: Option<u32>,
        only_session: Option<u64>,
        reason: CancelReason,
        out: &mut Emit<S>,
    ) {
        // The account's list is in acceptance order (a move does not relink it); cancels go
        // out in time priority.
        let mut doomed = std::mem::take(&mut self.mass_scratch);
        let mut rec = self.accounts[account as usize].head;
        while rec != NIL {
            let order = &self.orders[rec as usize];
            if only_book.is_none_or(|book| book == order.symbol)
                && only_session
                    .is_none_or(|session| session == self.order_cold[rec as usize].session)
            {
                doomed.push(rec);
            }
            rec = order.acct_next;
        }
        doomed.sort_unstable_by_key(|&rec| self.orders[rec as usize].prio);
        for &rec in &doomed {
            self.cancel_order(rec, reason, out);
        }
        doomed.clear();
        self.mass_scratch = doomed;
    }

    fn cancel_after<S: EventSink>(&mut self, arm: &CancelAfter, out: &mut Emit<S>) {
        let deadline = if arm.timeout_ns == 0 {
            self.switches.disarm(arm.account, arm.session);
            0
        } else {
            if self.switches.is_full_for(arm.account, arm.session) {
                return out.push(EventKind::AccountRejected {
                    account: arm.account,
                    session: arm.session,
                    request: Request::CancelAfter,
                    reason: RejectReason::Capacity,
                });
            }
            let deadline = self.clock.0.saturating_add(arm.timeout_ns);
            self.switches.arm(arm.account, arm.session, deadline);
            deadline
        };
        out.push(EventKind::CancelAfter {
            account: arm.account,
            session: arm.session,
            deadline: TimestampNs(deadline),
        });
    }

    /// Fires every switch due at `now`, in (deadline, account, session) order.
    #[inline(never)]
    fn fire_switches<S: EventSink>(&mut self, now: u64, out: &mut Emit<S>) {
        while let Some(due) = self.switches.pop_due(now) {
            if let Some(account) = self.find_account(due.account) {
                self.cancel_where(account, None, Some(due.session), CancelReason::Expired, out);
            }
        }
    }

    fn set_trading_status<S: EventSink>(&mut self, set: &SetTradingStatus, out: &mut Emit<S>) {
        let mut books = std::mem::take(&mut self.name_scratch);
        match &set.symbol {
            Some(name) => match self.find_book(name) {
                Some(book) => books.push(book),
                None => out.push(EventKind::SymbolRejected {
                    symbol: *name,
                    request: Request::TradingStatus,
                    reason: RejectReason::UnknownSymbol,
                }),
            },
            None => {
                books.extend(0..self.books.len() as u32);
                books.sort_unstable_by_key(|&book| self.books[book as usize].name);
            }
        }
        for &book in &books {
            let book = &mut self.books[book as usize];
            book.status = set.status;
            out.push(EventKind::TradingStatus {
                symbol: book.name,
                status: set.status,
            });
        }
        books.clear();
        self.name_scratch = books;
    }

    fn kill_switch<S: EventSink>(&mut self, kill: &KillSwitch, out: &mut Emit<S>) {
        let account = match self.find_account(kill.account) {
            Some(account) => Some(account),
            // Turning it on for an account never seen needs its record, to refuse its orders.
            None if kill.on && self.accounts.len() < self.config.accounts_max as usize => {
                Some(self.insert_account(kill.account))
            }
            None if kill.on => {
                return out.push(EventKind::AccountRejected {
                    account: kill.account,
                    session: 0,
                    request: Request::KillSwitch,
                    reason: RejectReason::Capacity,
                });
            }
            None => None,
        };
        out.push(EventKind::KillSwitch {
            account: kill.account,
            on: kill.on,
        });
        let Some(account) = account else {
            return;
        };
        let was = std::mem::replace(&mut self.accounts[account as usize].disabled, kill.on);
        match (was, kill.on) {
            (false, true) => self.disabled_accounts += 1,
            (true, false) => self.disabled_accounts -= 1,
            _ => {}
        }
        if kill.on {
            self.cancel_where(account, None, None, CancelReason::KillSwitch, out);
        }
    }

    // ----- matching --------------------------------------------------------------------------

    /// Matches live order `taker` against the opposite side while it crosses `limit`.
    #[inline]
    fn match_incoming<S: EventSink>(
        &mut self,
        taker: u32,
        limit: Option<Ticks>,
        out: &mut Emit<S>,
    ) -> MatchEnd {
        // Most orders and moves do not cross: answer those before setting up the match.
        let t = &self.orders[taker as usize];
        if t.leaves.0 > 0 && !self.crosses_book(t.symbol, t.side, limit) {
            return MatchEnd::Exhausted;
        }
        self.match_crossing(taker, limit, out)
    }

    /// [`Engine::match_incoming`] once something may trade.
    #[inline(never)]
    fn match_crossing<S: EventSink>(
        &mut self,
        taker: u32,
        limit: Option<Ticks>,
        out: &mut Emit<S>,
    ) -> MatchEnd {
        let t = self.orders[taker as usize];
        let book = t.symbol as usize;
        let opposite = side_index(t.side.opposite());
        let (name, units) = (self.books[book].name, self.books[book].units());
        let mut taker_leaves = t.leaves.0;
        let mut taker_notional = self.order_cold[taker as usize].notional;
        let end = 'levels: loop {
            if taker_leaves == 0 {
                break MatchEnd::Filled;
            }
            let Some(best) = self.books[book].sides[opposite].last() else {
                break MatchEnd::Exhausted;
            };
            let level = best.level;
            let level_price = self.levels[level as usize].price;
            if !crosses(t.side, limit, level_price) {
                break MatchEnd::Exhausted;
            }
            let mut maker = self.levels[level as usize].head;
            while maker != NIL {
                let m = self.orders[maker as usize];
                if m.account == t.account {
                    match t.stp {
                        Stp::None => {}
                        Stp::CancelTaker => break 'levels MatchEnd::Stp,
                        Stp::CancelBoth => {
                            self.cancel_order(maker, CancelReason::Stp, out);
                            break 'levels MatchEnd::Stp;
                        }
                        Stp::CancelMaker => {
                            self.cancel_order(maker, CancelReason::Stp, out);
                            maker = m.next;
                            continue;
                        }
                    }
                }
                let fill = m.leaves.0.min(taker_leaves);
                taker_leaves -= fill;
                let maker_leaves = m.leaves.0 - fill;
                let value = level_price.0 as u128 * u128::from(fill);
                taker_notional += value;
                self.orders[maker as usize].leaves = Lots(maker_leaves);
                self.order_cold[maker as usize].notional += value;
                self.levels[level as usize].total -= u128::from(fill);
                let trade_id = self.trade(book as u32);
                out.push(EventKind::Trade {
                    symbol: name,
                    price: units.price(level_price),
                    qty: units.qty(Lots(fill)),
                    maker_account: m.account,
                    maker_order_id: m.order_id,
                    taker_account: t.account,
                    taker_order_id: t.order_id,
                    taker_side: t.side,
                    maker_leaves: units.qty(Lots(maker_leaves)),
                    taker_leaves: units.qty(Lots(taker_leaves)),
                    maker_filled: units.qty(Lots(m.total.0 - maker_leaves)),
                    taker_filled: units.qty(Lots(t.total.0 - taker_leaves)),
                    trade_id,
                });
                if maker_leaves == 0 {
                    self.unrest(maker);
                    self.finish(maker, OrderStatus::Filled, None);
                }
                if taker_leaves == 0 {
                    break 'levels MatchEnd::Filled;
                }
                maker = m.next;
            }
        };
        self.orders[taker as usize].leaves = Lots(taker_leaves);
        self.order_cold[taker as usize].notional = taker_notional;
        end
    }

    /// Whether matching live order `rec` at `limit` would fill it completely, self-trade
    /// prevention included.
    fn fok_fillable(&self, rec: u32, limit: Option<Ticks>) -> bool {
        let t = &self.orders[rec as usize];
        let need = t.leaves.0;
        let mut found = 0u64;
        let refs = &self.books[t.symbol as usize].sides[side_index(t.side.opposite())];
        for r in refs.iter().rev() {
            let level = &self.levels[r.level as usize];
            if !crosses(t.side, limit, level.price) {
                return false;
            }
            let mut maker = level.head;
            while maker != NIL {
                let m = &self.orders[maker as usize];
                if m.account == t.account && t.stp != Stp::None {
                    if t.stp != Stp::CancelMaker {
                        return false;
                    }
                } else {
                    found += m.leaves.0;
                    if found >= need {
                        return true;
                    }
                }
                maker = m.next;
            }
        }
        false
    }

    /// What becomes of live order `rec` after matching ended with `end`: finished when filled,
    /// cancelled (`stp`) when self-trade prevention stopped it, else its rest is cancelled with
    /// `cancel_rest` or, when that is `None`, goes on the book.
    fn settle<S: EventSink>(
        &mut self,
        rec: u32,
        end: MatchEnd,
        cancel_rest: Option<CancelReason>,
        out: &mut Emit<S>,
    ) {
        match (end, cancel_rest) {
            (MatchEnd::Filled, _) => self.finish(rec, OrderStatus::Filled, None),
            (MatchEnd::Stp, _) => self.cancel_order(rec, CancelReason::Stp, out),
            (MatchEnd::Exhausted, Some(reason)) => self.cancel_order(rec, reason, out),
            (MatchEnd::Exhausted, None) => self.rest(rec),
        }
    }

    // ----- record keeping --------------------------------------------------------------------

    fn take_prio(&mut self) -> u64 {
        let prio = self.next_prio;
        self.next_prio += 1;
        prio
    }

    pub(crate) fn insert_account(&mut self, id: AccountId) -> u32 {
        let rec = self.accounts.len() as u32;
        let hash = self.account_hash(id);
        self.accounts.push(AccountRec {
            id,
            head: NIL,
            tail: NIL,
            live: 0,
            disabled: false,
        });
        self.account_index.insert(hash, rec);
        rec
    }

    /// Stores a new live `order` (not yet on the book), indexes its id and appends it to its
    /// account's list. The caller has checked that `live_orders < orders_max`.
    pub(crate) fn insert_live_order(&mut self, order: OrderRec, cold: OrderCold) -> u32 {
        assert!(order.live && order.level == NIL);
        assert!(self.live_orders < self.config.orders_max);
        let rec = if self.free_order != NIL {
            let rec = self.free_order;
            self.free_order = self.orders[rec as usize].next;
            self.orders[rec as usize] = order;
            self.order_cold[rec as usize] = cold;
            rec
        } else {
            self.orders.push(order);
            self.order_cold.push(cold);
            (self.orders.len() - 1) as u32
        };
        self.ids.insert(order.hash, rec);
        self.live_orders += 1;

        let account = &mut self.accounts[order.account_rec as usize];
        let acct_prev = account.tail;
        account.tail = rec;
        if acct_prev == NIL {
            account.head = rec;
        }
        account.live += 1;
        if acct_prev != NIL {
            self.orders[acct_prev as usize].acct_next = rec;
        }
        let o = &mut self.orders[rec as usize];
        o.acct_prev = acct_prev;
        o.acct_next = NIL;
        rec
    }

    /// Cancels live order `rec` (resting or incoming) with `reason`.
    fn cancel_order<S: EventSink>(&mut self, rec: u32, reason: CancelReason, out: &mut Emit<S>) {
        let order = self.orders[rec as usize];
        let book = &self.books[order.symbol as usize];
        out.push(EventKind::Cancelled {
            account: order.account,
            order_id: order.order_id,
            symbol: book.name,
            reason,
            qty: book.units().qty(order.leaves),
        });
        if order.level != NIL {
            self.unrest(rec);
        }
        self.finish(rec, OrderStatus::Cancelled, Some(reason));
    }

    /// Live order `rec`, not on the book, is done with `status`: its final state is remembered
    /// for the dedup window and its record is freed.
    pub(crate) fn finish(&mut self, rec: u32, status: OrderStatus, reason: Option<CancelReason>) {
        let frozen = self.frozen(rec, status, reason);
        self.release(rec);
        self.remember(rec, frozen);
    }

    /// The finished state of live order `rec` with `status`, as of now.
    pub(crate) fn frozen(
        &self,
        rec: u32,
        status: OrderStatus,
        reason: Option<CancelReason>,
    ) -> FinishedRec {
        let (order, cold) = (&self.orders[rec as usize], &self.order_cold[rec as usize]);
        frozen(order, cold, status, reason, self.clock)
    }

    /// Remembers a finished order for the dedup window (not at all with a window of 0): the
    /// id's entry, which named live record `rec`, now names its finished slot. Its place was
    /// reserved while it was live (or by the replace that froze it).
    pub(crate) fn remember(&mut self, rec: u32, frozen: FinishedRec) {
        match self.push_finished(frozen) {
            Some(slot) => self
                .ids
                .retag(frozen.hash, rec, IdRef::Finished(slot).value()),
            None => self.ids.remove(frozen.hash, rec),
        }
    }

    /// Keeps `frozen` for the dedup window, returning its slot (`None` with a window of 0).
    /// The caller indexes it.
    pub(crate) fn push_finished(&mut self, frozen: FinishedRec) -> Option<u32> {
        let window = self.config.dedup_window_ns;
        if window == 0 {
            return None;
        }
        if self.finished.len() == 0 {
            self.next_expiry = frozen.finished_at.0.saturating_add(window);
        }
        Some(self.finished.push(frozen))
    }

    /// Forgets the finished orders whose window has passed at `now`.
    #[inline(never)]
    fn expire(&mut self, now: u64) {
        let window = self.config.dedup_window_ns;
        while let Some(oldest) = self.finished.oldest() {
            // A finished_at + window past u64::MAX is never reached: that entry stays.
            let expiry = oldest.finished_at.checked_add(window);
            if expiry.is_none_or(|expiry| expiry > now) {
                self.next_expiry = expiry.unwrap_or(u64::MAX);
                self.prefetch_expiring();
                self.finished.prefetch_next();
                return;
            }
            self.finished.pop_oldest();
            self.ids
                .remove(oldest.hash, IdRef::Finished(oldest.slot).value());
        }
        self.next_expiry = u64::MAX;
    }

    /// Starts loading the index slots of the next finished orders to forget, so that their
    /// removal, a few commands later, finds them in cache rather than in memory.
    #[inline]
    fn prefetch_expiring(&self) {
        for n in 0..EXPIRY_PREFETCH {
            if let Some(due) = self.finished.due_at(n) {
                self.ids.prefetch(due.hash);
            }
        }
    }

    /// Frees live order `rec` (not on the book): it leaves its account's list and its record
    /// goes to the free list. Its id's entry is the caller's (see `remember`).
    pub(crate) fn release(&mut self, rec: u32) {
        let order = &mut self.orders[rec as usize];
        assert!(order.live && order.level == NIL);
        order.live = false;
        let (account_rec, acct_prev, acct_next) =
            (order.account_rec, order.acct_prev, order.acct_next);

        let a = &mut self.accounts[account_rec as usize];
        a.live -= 1;
        if acct_prev == NIL {
            a.head = acct_next;
        } else {
            self.orders[acct_prev as usize].acct_next = acct_next;
        }
        if acct_next == NIL {
            self.accounts[account_rec as usize].tail = acct_prev;
        } else {
            self.orders[acct_next as usize].acct_prev = acct_prev;
        }

        self.orders[rec as usize].next = self.free_order;
        self.free_order = rec;
        self.live_orders -= 1;
    }

    /// Puts live order `rec` at the back of its price level.
    pub(crate) fn rest(&mut self, rec: u32) {
        let order = self.orders[rec as usize];
        assert!(order.live && order.level == NIL && order.leaves.0 > 0);
        self.join_level(rec, &order);
    }

    /// Takes resting order `rec` off its level (dropping the level when empty). It stays live
    /// (and in its account's list).
    fn unrest(&mut self, rec: u32) {
        let order = self.orders[rec as usize];
        assert!(order.live && order.level != NIL);
        self.leave_level(&order);
        let o = &mut self.orders[rec as usize];
        o.level = NIL;
        o.prev = NIL;
        o.next = NIL;
    }

    /// Moves resting order `rec` to the back of the level at `price` on its side, with open
    /// quantity `leaves` and time priority `prio`: [`Engine::unrest`] then [`Engine::rest`] in
    /// one pass, for a move that trades with nothing.
    fn requeue(&mut self, rec: u32, price: Ticks, leaves: Lots, prio: u64) {
        let mut order = self.orders[rec as usize];
        assert!(order.live && order.level != NIL && leaves.0 > 0);
        self.leave_level(&order);
        order.price = price;
        order.leaves = leaves;
        order.prio = prio;
        let o = &mut self.orders[rec as usize];
        o.price = price;
        o.leaves = leaves;
        o.prio = prio;
        self.join_level(rec, &order);
    }

    /// Links order `rec` (whose record is `order`, not on a level) at the back of the level at
    /// its price, making the level when there is none, and sets its level links.
    /// Counts a change of book `book`'s levels in the command being applied (see
    /// `Book::updates`).
    #[inline(always)]
    fn touch(&mut self, book: u32) {
        let stamp = self.applied;
        let b = &mut self.books[book as usize];
        if b.touched_in != stamp {
            b.touched_in = stamp;
            b.updates += 1;
        }
    }

    /// A trade in book `book`, which changes its levels: returns the trade's id.
    #[inline(always)]
    fn trade(&mut self, book: u32) -> u64 {
        self.touch(book);
        let b = &mut self.books[book as usize];
        b.trades += 1;
        b.trades
    }

    #[inline(always)]
    fn join_level(&mut self, rec: u32, order: &OrderRec) {
        self.touch(order.symbol);
        let key = side_key(order.side, order.price);
        let refs = &self.books[order.symbol as usize].sides[side_index(order.side)];
        let level = match find_level(refs, key) {
            Ok(at) => refs[at].level,
            Err(at) => {
                let level = self.alloc_level(order.price);
                self.books[order.symbol as usize].sides[side_index(order.side)]
                    .insert(at, LevelRef { key, level });
                level
            }
        };
        let l = &mut self.levels[level as usize];
        let prev = l.tail;
        l.tail = rec;
        if prev == NIL {
            l.head = rec;
        }
        l.count += 1;
        l.total += u128::from(order.leaves.0);
        if prev != NIL {
            self.orders[prev as usize].next = rec;
        }
        let o = &mut self.orders[rec as usize];
        o.level = level;
        o.prev = prev;
        o.next = NIL;
    }

    /// Unlinks a resting order (whose record is `order`) from its level, dropping the level when
    /// it empties. The record's own level links are left for the caller.
    #[inline(always)]
    fn leave_level(&mut self, order: &OrderRec) {
        self.touch(order.symbol);
        let level = order.level;
        if order.prev == NIL {
            self.levels[level as usize].head = order.next;
        } else {
            self.orders[order.prev as usize].next = order.next;
        }
        if order.next == NIL {
            self.levels[level as usize].tail = order.prev;
        } else {
            self.orders[order.next as usize].prev = order.prev;
        }
        let l = &mut self.levels[level as usize];
        l.count -= 1;
        l.total -= u128::from(order.leaves.0);
        if l.count == 0 {
            let refs = &mut self.books[order.symbol as usize].sides[side_index(order.side)];
            if refs.last().is_some_and(|best| best.level == level) {
                refs.pop();
            } else {
                let at = find_level(refs, side_key(order.side, order.price))
                    .expect("an empty level is still on its side");
                refs.remove(at);
            }
            self.free_level(level);
        }
    }

    fn alloc_level(&mut self, price: Ticks) -> u32 {
        let level = Level {
            price,
            total: 0,
            count: 0,
            head: NIL,
            tail: NIL,
        };
        self.levels_used += 1;
        if self.free_level != NIL {
            let rec = self.free_level;
            self.free_level = self.levels[rec as usize].head;
            self.levels[rec as usize] = level;
            rec
        } else {
            assert!(self.levels.len() < self.config.levels_max as usize);
            self.levels.push(level);
            (self.levels.len() - 1) as u32
        }
    }

    fn free_level(&mut self, rec: u32) {
        let level = &mut self.levels[rec as usize];
        level.head = self.free_level;
        level.tail = NIL;
        self.free_level = rec;
        self.levels_used -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The bounded search answers exactly as a binary search would, in dense books and in
        /// books with gaps.
        #[test]
        fn find_level_agrees_with_binary_search(
            keys in proptest::collection::btree_set(-50i64..50, 0..60),
            key in -60i64..60,
        ) {
            let refs: Vec<LevelRef> = keys.iter().map(|&key| LevelRef { key, level: 0 }).collect();
            prop_assert_eq!(find_level(&refs, key), refs.binary_search_by_key(&key, |r| r.key));
        }
    }

    #[test]
    fn order_hash_leaves_out_only_padding() {
        let config = EngineConfig {
            symbols_max: 1,
            accounts_max: 4,
            orders_max: 16,
            retired_ids_max: 16,
            levels_max: 16,
            levels_per_side_max: 16,
            ..EngineConfig::default()
        };
        let engine = Engine::new(config).unwrap();
        let hash = |account, id| engine.order_hash(AccountId(account), &OrderId::new(id).unwrap());
        let long = "0123456789012345678901234567890123456789";
        for (a, b) in [
            ((1, "o1"), (2, "o1")),
            ((1, "o1"), (1, "o2")),
            ((1, "abcdefgh"), (1, "abcdefgh1")),
            ((1, long), (1, "0123456789012345678901234567890123456788")),
            ((1, long), (2, long)),
        ] {
            assert_ne!(hash(a.0, a.1), hash(b.0, b.1), "{a:?} and {b:?}");
        }
        assert_eq!(hash(7, long), hash(7, long));
    }

    #[test]
    fn committing_memory_changes_nothing() {
        let config = EngineConfig {
            symbols_max: 2,
            accounts_max: 8,
            orders_max: 64,
            retired_ids_max: 64,
            levels_max: 32,
            levels_per_side_max: 16,
            ..EngineConfig::default()
        };
        let symbol = Symbol::new("X").unwrap();
        let order = |ts: u64, account: u64, id: &str, side, price: i64| {
            Command::new(
                ts,
                CommandKind::New(NewOrder {
                    account: AccountId(account),
                    order_id: OrderId::new(id).unwrap(),
                    symbol,
                    side,
                    ord_type: OrdType::Limit,
                    price: Some(Price(price)),
                    qty: Qty(2),
                    tif: Tif::Gtc,
                    post_only: false,
                    stp: Stp::CancelTaker,
                    session: 0,
                }),
            )
        };
        let before = [
            Command::new(
                1,
                CommandKind::AddSymbol(AddSymbol {
                    symbol,
                    tick: Price(1),
                    lot: Qty(1),
                }),
            ),
            order(2, 1, "a", Side::Buy, 10),
            order(3, 2, "b", Side::Sell, 12),
        ];
        let after = [
            order(4, 3, "c", Side::Sell, 10),
            order(5, 1, "d", Side::Buy, 12),
        ];
        let run = |commit: bool| {
            let mut engine = Engine::new(config).unwrap();
            let mut events = Vec::with_capacity(64);
            for cmd in &before {
                engine.apply(cmd, &mut events);
            }
            let (hash, snapshot) = (engine.state_hash(), engine.snapshot());
            if commit {
                engine.commit_memory();
            }
            assert_eq!(engine.state_hash(), hash);
            assert_eq!(engine.snapshot(), snapshot);
            assert!(engine.orders.capacity() >= 64 && engine.orders.len() < 64);
            for cmd in &after {
                engine.apply(cmd, &mut events);
            }
            (events, engine.state_hash())
        };
        assert_eq!(run(true), run(false));
    }

    /// The kill-switched accounts are listed in account-id order, and leave the list when
    /// the switch is turned off.
    #[test]
    fn kill_switched_lists_the_accounts_in_id_order() {
        let config = EngineConfig {
            symbols_max: 1,
            accounts_max: 8,
            orders_max: 16,
            retired_ids_max: 16,
            levels_max: 16,
            levels_per_side_max: 16,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config).unwrap();
        let mut events = Vec::new();
        let mut kill = |engine: &mut Engine, account: u64, on: bool| {
            let kind = CommandKind::KillSwitch(KillSwitch {
                account: AccountId(account),
                on,
            });
            engine.apply(&Command::new(1, kind), &mut events);
        };
        assert!(engine.kill_switched().is_empty());
        for account in [9, 3, 5] {
            kill(&mut engine, account, true);
        }
        assert_eq!(
            engine.kill_switched(),
            [AccountId(3), AccountId(5), AccountId(9)]
        );
        kill(&mut engine, 5, false);
        kill(&mut engine, 4, false);
        assert_eq!(engine.kill_switched(), [AccountId(3), AccountId(9)]);
        assert!(engine.kill_switch_on(AccountId(3)) && !engine.kill_switch_on(AccountId(5)));
    }

    #[test]
    fn capacities_beyond_memory_are_an_error_not_an_abort() {
        // 2^30 order records of ~100 bytes: far beyond any machine this runs on. Linux's
        // default (heuristic) overcommit refuses a reservation larger than RAM plus swap.
        let config = EngineConfig {
            orders_max: crate::config::COUNT_MAX,
            ..EngineConfig::default()
        };
        assert!(matches!(
            Engine::new(config),
            Err(ConfigError::OutOfMemory { .. })
        ));
    }
}

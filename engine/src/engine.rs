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
//!   orders stay few and hot) and leaves its client order id in `RetiredIds`, a ring that
//!   remembers the last `retired_ids_max` ids for duplicate detection;
//! - `Index`es map (account, client order id) to a live record (small and hot: every cancel
//!   and amend) or to a retired slot (large and cold: only a new order's duplicate check and
//!   retirement touch it), and symbol names and account ids to their records.
//!
//! Nothing here allocates after construction (`add_symbol` takes sides reserved then).

use crate::alloc::{commit_capacity, reserve};
use crate::command::{
    AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, MassCancel, NewOrder,
};
use crate::config::{ConfigError, EngineConfig};
use crate::event::{CancelReason, Event, EventKind, EventSink, RejectReason, Request};
use crate::index::{hash_words, Index, Probe};
use crate::retired::{RetiredId, RetiredIds};
use crate::types::{
    AccountId, Lots, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, SymbolId, Ticks, Tif,
    TimestampNs,
};
use crate::units::Units;

/// "No record".
pub(crate) const NIL: u32 = u32::MAX;

/// One order record: a live order (resting, or being matched inside `apply`), or a free one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderRec {
    pub(crate) account: AccountId,
    pub(crate) order_id: OrderId,
    pub(crate) price: Ticks,
    pub(crate) leaves: Lots,
    /// Time priority: a global counter taken on entry and on re-entry after an amend.
    pub(crate) prio: u64,
    /// Hash of (account, order id) in the order index.
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
    pub(crate) stp: Stp,
    pub(crate) post_only: bool,
    pub(crate) live: bool,
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
    /// Index by `side_index`: bids, then asks.
    pub(crate) sides: [Vec<LevelRef>; 2],
}

/// An account: for now the head of its live orders; later its balances and limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountRec {
    pub(crate) id: AccountId,
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) live: u32,
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
    pub(crate) books: Vec<Book>,
    pub(crate) book_index: Index,
    pub(crate) accounts: Vec<AccountRec>,
    pub(crate) account_index: Index,
    pub(crate) orders: Vec<OrderRec>,
    pub(crate) order_index: Index,
    /// Head of the free order records (LIFO).
    pub(crate) free_order: u32,
    pub(crate) retired: RetiredIds,
    pub(crate) retired_index: Index,
    pub(crate) live_orders: u32,
    pub(crate) levels: Vec<Level>,
    /// Book sides reserved for the symbols not listed yet.
    spare_sides: Vec<[Vec<LevelRef>; 2]>,
    /// The orders a mass cancel is about to cancel (room for every live order).
    mass_scratch: Vec<u32>,
    pub(crate) free_level: u32,
    pub(crate) levels_used: u32,
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
    /// Retired orders whose client order ids are still remembered.
    pub retired_ids: u32,
    pub levels: u32,
    pub next_event_seq: u64,
    pub clock: TimestampNs,
}

impl Engine {
    /// An empty engine with `config`'s capacities. Memory is reserved fallibly, largest
    /// first, so a configuration this machine cannot hold is an error rather than an abort.
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        config.validate()?;
        let orders = reserve(config.orders_max)?;
        let retired = RetiredIds::with_capacity(config.retired_ids_max)?;
        let retired_index = Index::with_capacity(config.retired_ids_max as usize)?;
        let order_index = Index::with_capacity(config.orders_max as usize)?;
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
            books: reserve(config.symbols_max)?,
            book_index: Index::with_capacity(config.symbols_max as usize)?,
            accounts: reserve(config.accounts_max)?,
            account_index: Index::with_capacity(config.accounts_max as usize)?,
            orders,
            order_index,
            free_order: NIL,
            retired,
            retired_index,
            live_orders: 0,
            levels,
            spare_sides,
            mass_scratch: reserve(config.orders_max)?,
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
            stp: Stp::None,
            post_only: false,
            live: false,
        };
        commit_capacity(&mut self.orders, filler);
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
        };
        commit_capacity(&mut self.accounts, account);
        commit_capacity(&mut self.mass_scratch, NIL);
        let level_ref = LevelRef { key: 0, level: NIL };
        let sides = self.books.iter_mut().map(|book| &mut book.sides);
        for side in sides.chain(&mut self.spare_sides).flatten() {
            commit_capacity(side, level_ref);
        }
        self.retired.commit_memory(id);
        for index in [
            &mut self.order_index,
            &mut self.retired_index,
            &mut self.book_index,
            &mut self.account_index,
        ] {
            index.commit_memory();
        }
    }

    /// Applies one command, writing what happened to `sink`.
    pub fn apply<S: EventSink>(&mut self, cmd: &Command, sink: &mut S) {
        self.clock = self.clock.max(cmd.ts);
        let mut out = Emit {
            sink,
            seq: self.next_event_seq,
            ts: self.clock,
        };
        match &cmd.kind {
            CommandKind::AddSymbol(add) => self.add_symbol(add, &mut out),
            CommandKind::New(order) => self.new_order(order, &mut out),
            CommandKind::Cancel(cancel) => self.cancel(cancel, &mut out),
            CommandKind::Amend(amend) => self.amend(amend, &mut out),
            CommandKind::MassCancel(mass) => self.mass_cancel(mass, &mut out),
        }
        self.next_event_seq = out.seq;
    }

    // ----- queries -------------------------------------------------------------------------

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
            retired_ids: self.retired.len(),
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
        self.order_index.find(hash, |rec| {
            let order = &self.orders[rec as usize];
            order.account == account && order.order_id == *order_id
        })
    }

    /// The retired slot remembering (`account`, `order_id`), whose hash is `hash`.
    pub(crate) fn find_retired(
        &self,
        hash: u32,
        account: AccountId,
        order_id: &OrderId,
    ) -> Option<u32> {
        self.find_retired_from(self.retired_index.start(hash), account, order_id)
    }

    fn find_retired_from(
        &self,
        probe: Probe,
        account: AccountId,
        order_id: &OrderId,
    ) -> Option<u32> {
        self.retired_index.find_from(probe, |slot| {
            let id = self.retired.get(slot);
            id.account == account && id.order_id == *order_id
        })
    }

    /// Whether the account had an order accepted with this id that is live or remembered.
    pub(crate) fn id_known(&self, hash: u32, account: AccountId, order_id: &OrderId) -> bool {
        self.find_live(hash, account, order_id).is_some()
            || self.find_retired(hash, account, order_id).is_some()
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
                reason,
            }),
            None => self.insert_book(add.symbol, add.tick, add.lot),
        }
    }

    /// Lists a symbol, giving it one of the book sides reserved at construction. The caller
    /// has checked that fewer than `symbols_max` are listed.
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
            sides,
        });
        self.book_index.insert(self.symbol_hash(&name), id);
    }

    fn new_order<S: EventSink>(&mut self, order: &NewOrder, out: &mut Emit<S>) {
        let reject = |out: &mut Emit<S>, reason| {
            out.push(EventKind::Rejected {
                account: order.account,
                order_id: order.order_id,
                symbol: order.symbol,
                request: Request::New,
                reason,
            })
        };
        // The retired-id index is large and its slot likely cold: start that lookup first.
        let hash = self.order_hash(order.account, &order.order_id);
        let retired_probe = self.retired_index.start(hash);
        let Some(book) = self.find_book(&order.symbol) else {
            return reject(out, RejectReason::UnknownSymbol);
        };
        if self
            .find_live(hash, order.account, &order.order_id)
            .is_some()
            || self
                .find_retired_from(retired_probe, order.account, &order.order_id)
                .is_some()
        {
            return reject(out, RejectReason::DuplicateOrderId);
        }
        let units = self.books[book as usize].units();
        let Some(lots) = units.lots(order.qty) else {
            return reject(out, RejectReason::InvalidQty);
        };
        let limit = match order.ord_type {
            OrdType::Market => None,
            OrdType::Limit => match order.price.and_then(|p| units.ticks(p)) {
                Some(ticks) => Some(ticks),
                None => return reject(out, RejectReason::InvalidPrice),
            },
        };
        let market = order.ord_type == OrdType::Market;
        if (market && order.tif == Tif::Gtc)
            || (order.post_only && (market || order.tif != Tif::Gtc))
        {
            return reject(out, RejectReason::InvalidTif);
        }
        if order.post_only && self.crosses_book(book, order.side, limit) {
            return reject(out, RejectReason::PostOnly);
        }
        let account_rec = self.find_account(order.account);
        let level_room = match (order.tif, limit) {
            (Tif::Gtc, Some(price)) => self.level_room(book, order.side, price),
            _ => true,
        };
        let room = (account_rec.is_some()
            || self.accounts.len() < self.config.accounts_max as usize)
            && self.live_orders < self.config.orders_max
            && level_room;
        if !room {
            return reject(out, RejectReason::Capacity);
        }

        // Accepted: from here on the order exists.
        let account_rec = account_rec.unwrap_or_else(|| self.insert_account(order.account));
        let prio = self.take_prio();
        let rec = self.insert_live_order(OrderRec {
            account: order.account,
            order_id: order.order_id,
            price: limit.unwrap_or(Ticks(0)),
            leaves: lots,
            prio,
            hash,
            level: NIL,
            prev: NIL,
            next: NIL,
            acct_prev: NIL,
            acct_next: NIL,
            account_rec,
            symbol: book,
            side: order.side,
            stp: order.stp,
            post_only: order.post_only,
            live: true,
        });
        out.push(EventKind::Accepted {
            account: order.account,
            order_id: order.order_id,
            symbol: order.symbol,
            side: order.side,
            price: limit.map(|ticks| units.price(ticks)),
            qty: order.qty,
        });

        if order.tif == Tif::Fok && !self.fok_fillable(rec, limit) {
            self.cancel_order(rec, CancelReason::Fok, out);
            return;
        }
        let end = self.match_incoming(rec, limit, out);
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

    fn amend<S: EventSink>(&mut self, amend: &AmendOrder, out: &mut Emit<S>) {
        let reject = |out: &mut Emit<S>, reason| {
            out.push(EventKind::Rejected {
                account: amend.account,
                order_id: amend.order_id,
                symbol: amend.symbol,
                request: Request::Amend,
                reason,
            })
        };
        let Some(rec) = self.find_resting(amend.account, &amend.symbol, &amend.order_id) else {
            return reject(out, RejectReason::UnknownOrder);
        };
        let order = self.orders[rec as usize];
        let units = self.books[order.symbol as usize].units();
        let price = match amend.price {
            None => order.price,
            Some(p) => match units.ticks(p) {
                Some(ticks) => ticks,
                None => return reject(out, RejectReason::InvalidPrice),
            },
        };
        let leaves = match amend.qty {
            None => order.leaves,
            Some(q) => match units.lots(q) {
                Some(lots) => lots,
                None => return reject(out, RejectReason::InvalidQty),
            },
        };
        if order.post_only && self.crosses_book(order.symbol, order.side, Some(price)) {
            return reject(out, RejectReason::PostOnly);
        }
        let amended = EventKind::Amended {
            account: amend.account,
            order_id: amend.order_id,
            symbol: amend.symbol,
            price: units.price(price),
            qty: units.qty(leaves),
        };
        if price == order.price && leaves <= order.leaves {
            // Keeps its place.
            let level = &mut self.levels[order.level as usize];
            level.total -= u128::from(order.leaves.0 - leaves.0);
            self.orders[rec as usize].leaves = leaves;
            out.push(amended);
            return;
        }
        let frees_its_level = self.levels[order.level as usize].count == 1;
        if price != order.price
            && !frees_its_level
            && !self.level_room(order.symbol, order.side, price)
        {
            return reject(out, RejectReason::Capacity);
        }
        // Loses its place: leaves the book and re-enters as if new.
        let prio = self.take_prio();
        out.push(amended);
        if self.crosses_book(order.symbol, order.side, Some(price)) {
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
        // The account's list is in acceptance order (a move does not relink it); cancels go
        // out in time priority.
        let mut doomed = std::mem::take(&mut self.mass_scratch);
        let mut rec = self.accounts[account as usize].head;
        while rec != NIL {
            let order = &self.orders[rec as usize];
            if only.is_none_or(|book| book == order.symbol) {
                doomed.push(rec);
            }
            rec = order.acct_next;
        }
        doomed.sort_unstable_by_key(|&rec| self.orders[rec as usize].prio);
        for &rec in &doomed {
            self.cancel_order(rec, CancelReason::Mass, out);
        }
        doomed.clear();
        self.mass_scratch = doomed;
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
                self.orders[maker as usize].leaves = Lots(maker_leaves);
                self.levels[level as usize].total -= u128::from(fill);
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
                });
                if maker_leaves == 0 {
                    self.unrest(maker);
                    self.retire(maker);
                }
                if taker_leaves == 0 {
                    break 'levels MatchEnd::Filled;
                }
                maker = m.next;
            }
        };
        self.orders[taker as usize].leaves = Lots(taker_leaves);
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

    /// What becomes of live order `rec` after matching ended with `end`: retired when filled,
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
            (MatchEnd::Filled, _) => self.retire(rec),
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
        });
        self.account_index.insert(hash, rec);
        rec
    }

    /// Stores a new live `order` (not yet on the book), indexes its id and appends it to its
    /// account's list. The caller has checked that `live_orders < orders_max`.
    pub(crate) fn insert_live_order(&mut self, order: OrderRec) -> u32 {
        assert!(order.live && order.level == NIL);
        assert!(self.live_orders < self.config.orders_max);
        let rec = if self.free_order != NIL {
            let rec = self.free_order;
            self.free_order = self.orders[rec as usize].next;
            self.orders[rec as usize] = order;
            rec
        } else {
            self.orders.push(order);
            (self.orders.len() - 1) as u32
        };
        self.order_index.insert(order.hash, rec);
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
        self.retire(rec);
    }

    /// Live order `rec`, not on the book, is done: it leaves its account's list, its id moves to
    /// the retired ring (forgetting the oldest one there when full) and its record is freed.
    pub(crate) fn retire(&mut self, rec: u32) {
        let order = &mut self.orders[rec as usize];
        assert!(order.live && order.level == NIL);
        order.live = false;
        let (hash, account, order_id) = (order.hash, order.account, order.order_id);
        let (account_rec, acct_prev, acct_next) =
            (order.account_rec, order.acct_prev, order.acct_next);
        self.order_index.remove(hash, rec);

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

        if self.retired.capacity() > 0 {
            let (slot, forgotten) = self.retired.push(RetiredId {
                account,
                order_id,
                hash,
            });
            if let Some(forgotten) = forgotten {
                self.retired_index.remove(forgotten.hash, slot);
            }
            self.retired_index.insert(hash, slot);
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
    #[inline(always)]
    fn join_level(&mut self, rec: u32, order: &OrderRec) {
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

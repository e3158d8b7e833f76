//! Market data: per-symbol L2 books rebuilt from engine events, with sequence numbers.
//!
//! [`BookMirror`] is sans-IO: it follows the matcher's output (events and the end-of-command
//! markers) and, at the end of each command, says which price levels changed. An order that
//! trades on entry only rests once its command is over, so the mirror holds entering orders
//! aside until the marker; a book update never shows a state that existed only halfway
//! through a command.
//!
//! [`MarketData`] holds the mirror behind one lock with a broadcast channel: a subscriber takes
//! a snapshot and subscribes under the same lock, so the first update it receives is exactly
//! the one after its snapshot (`seq + 1`). Each symbol's book updates are numbered 1, 2, 3...;
//! a client that sees a gap asks for a new snapshot (resync).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::runner::Emitted;
use engine::{AccountId, EventKind, OrderId, Price, Qty, Side, Symbol};
use serde::Serialize;
use tokio::sync::broadcast;

/// One price level: the total open quantity resting at `price` (0: the level is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Level {
    #[serde(serialize_with = "as_decimal")]
    pub price: Price,
    #[serde(serialize_with = "as_decimal")]
    pub qty: Qty,
}

fn as_decimal<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn symbol_str<S: serde::Serializer>(v: &Symbol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// A message of the market data feed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MdMessage {
    /// Changed levels of one symbol's book; `seq` is the symbol's book sequence number.
    Book {
        #[serde(serialize_with = "symbol_str")]
        symbol: Symbol,
        seq: u64,
        /// The log position of the command that made the change.
        position: u64,
        bids: Vec<Level>,
        asks: Vec<Level>,
    },
    /// One trade.
    Trade {
        #[serde(serialize_with = "symbol_str")]
        symbol: Symbol,
        /// The engine event number: unique and increasing.
        id: u64,
        ts: u64,
        #[serde(serialize_with = "as_decimal")]
        price: Price,
        #[serde(serialize_with = "as_decimal")]
        qty: Qty,
        taker_side: Side,
    },
}

impl MdMessage {
    pub fn symbol(&self) -> Symbol {
        match self {
            MdMessage::Book { symbol, .. } | MdMessage::Trade { symbol, .. } => *symbol,
        }
    }
}

/// A symbol's book at one sequence number, best levels first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BookSnapshot {
    #[serde(serialize_with = "symbol_str")]
    pub symbol: Symbol,
    pub seq: u64,
    /// The log position of the next command (everything before it is in the snapshot).
    pub position: u64,
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
}

/// A level's total as it is shown: saturated at the largest `Qty`, like [`engine::Engine::depth`]
/// (a total beyond 64 bits is possible only in absurd books, but must not overflow).
fn shown(total: i128) -> Qty {
    Qty(i64::try_from(total).unwrap_or(i64::MAX))
}

/// Levels' totals are kept in 128 bits: the sum of many 64-bit quantities.
#[derive(Default)]
struct SymbolBook {
    seq: u64,
    bids: BTreeMap<Price, i128>,
    asks: BTreeMap<Price, i128>,
}

impl SymbolBook {
    fn side(&mut self, side: Side) -> &mut BTreeMap<Price, i128> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The total shown at `price` (0: no level).
    fn shown(&self, side: Side, price: Price) -> Qty {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        shown(levels.get(&price).copied().unwrap_or(0))
    }

    fn add(&mut self, side: Side, price: Price, qty: i64) {
        let levels = self.side(side);
        let total = levels.entry(price).or_insert(0);
        *total += i128::from(qty);
        if *total <= 0 {
            levels.remove(&price);
        }
    }

    fn levels(&self, side: Side, depth: usize) -> Vec<Level> {
        let level = |(price, total): (&Price, &i128)| Level {
            price: *price,
            qty: shown(*total),
        };
        match side {
            Side::Buy => self.bids.iter().rev().take(depth).map(level).collect(),
            Side::Sell => self.asks.iter().take(depth).map(level).collect(),
        }
    }
}

/// Where a live order is, as far as the book is concerned.
#[derive(Clone, Copy)]
struct Live {
    symbol: Symbol,
    side: Side,
    price: Option<Price>,
    leaves: i64,
    /// On the book (counted in its level), or still being matched in its command.
    resting: bool,
}

/// The L2 books, rebuilt from the matcher's output.
#[derive(Default)]
pub struct BookMirror {
    books: HashMap<Symbol, SymbolBook>,
    orders: HashMap<(AccountId, OrderId), Live>,
    /// Orders entering (or re-entering after an amend) in the current command.
    entering: Vec<(AccountId, OrderId)>,
    /// Levels the current command changed, with the total each showed before its first
    /// change.
    touched: Vec<(Symbol, Side, Price, Qty)>,
    /// The log position of the next command.
    position: u64,
    /// The current command (an `add_symbol`) was refused.
    symbol_rejected: bool,
}

impl BookMirror {
    /// Starts from a recovered engine whose next command is at `next_position`.
    pub fn seed(&mut self, engine: &engine::Engine, next_position: u64) {
        *self = BookMirror::default();
        self.position = next_position;
        for info in engine.symbols() {
            let book = self.books.entry(info.name).or_default();
            for side in [Side::Buy, Side::Sell] {
                for order in engine.resting(info.id, side) {
                    book.add(side, order.price, order.qty.0);
                    self.orders.insert(
                        (order.account, order.order_id),
                        Live {
                            symbol: info.name,
                            side,
                            price: Some(order.price),
                            leaves: order.qty.0,
                            resting: true,
                        },
                    );
                }
            }
        }
    }

    /// Follows one item; appends the messages it completes (trades at once, book updates at
    /// the end of their command).
    pub fn apply(&mut self, item: &Emitted, out: &mut Vec<MdMessage>) {
        match *item {
            Emitted::Event(event) => self.on_event(event, out),
            Emitted::Applied { position, command } => {
                if let engine::CommandKind::AddSymbol(add) = command.kind {
                    if !std::mem::take(&mut self.symbol_rejected) {
                        self.books.entry(add.symbol).or_default();
                    }
                }
                self.position = position + 1;
                self.end_command(position, out);
            }
        }
    }

    fn on_event(&mut self, event: engine::Event, out: &mut Vec<MdMessage>) {
        match event.kind {
            EventKind::Accepted {
                account,
                order_id,
                symbol,
                side,
                price,
                qty,
            } => {
                self.books.entry(symbol).or_default();
                self.orders.insert(
                    (account, order_id),
                    Live {
                        symbol,
                        side,
                        price,
                        leaves: qty.0,
                        resting: false,
                    },
                );
                self.entering.push((account, order_id));
            }
            EventKind::Trade {
                symbol,
                price,
                qty,
                maker_account,
                maker_order_id,
                taker_account,
                taker_order_id,
                taker_side,
                maker_leaves,
                taker_leaves,
            } => {
                self.reduce(maker_account, maker_order_id, qty.0, maker_leaves.0);
                self.reduce(taker_account, taker_order_id, qty.0, taker_leaves.0);
                out.push(MdMessage::Trade {
                    symbol,
                    id: event.seq,
                    ts: event.ts.0,
                    price,
                    qty,
                    taker_side,
                });
            }
            EventKind::Cancelled {
                account, order_id, ..
            } => {
                if let Some(live) = self.orders.remove(&(account, order_id)) {
                    self.unrest(&live, live.leaves);
                }
            }
            EventKind::Amended {
                account,
                order_id,
                price,
                qty,
                ..
            } => {
                let key = (account, order_id);
                let Some(mut live) = self.orders.get(&key).copied() else {
                    return;
                };
                if live.resting && live.price == Some(price) && qty.0 <= live.leaves {
                    // Keeps its place: only the open quantity shrinks.
                    self.unrest(&live, live.leaves - qty.0);
                    live.leaves = qty.0;
                } else {
                    // Loses its place: leaves its level and re-enters as if new.
                    self.unrest(&live, live.leaves);
                    live.price = Some(price);
                    live.leaves = qty.0;
                    live.resting = false;
                    self.entering.push(key);
                }
                self.orders.insert(key, live);
            }
            EventKind::SymbolRejected { .. } => self.symbol_rejected = true,
            EventKind::Rejected { .. } => {}
        }
    }

    /// A trade took `qty` from an order, leaving `leaves`.
    fn reduce(&mut self, account: AccountId, order_id: OrderId, qty: i64, leaves: i64) {
        let key = (account, order_id);
        let Some(live) = self.orders.get(&key).copied() else {
            return;
        };
        self.unrest(&live, qty);
        if leaves == 0 {
            self.orders.remove(&key);
        } else if let Some(live) = self.orders.get_mut(&key) {
            live.leaves = leaves;
        }
    }

    /// Takes `qty` of a resting order off its level.
    fn unrest(&mut self, live: &Live, qty: i64) {
        if let (true, Some(price)) = (live.resting, live.price) {
            self.change_level(live.symbol, live.side, price, -qty);
        }
    }

    /// Adds `qty` (negative: removes) to a level, remembering what it showed before.
    fn change_level(&mut self, symbol: Symbol, side: Side, price: Price, qty: i64) {
        let book = self.books.entry(symbol).or_default();
        self.touched
            .push((symbol, side, price, book.shown(side, price)));
        book.add(side, price, qty);
    }

    fn end_command(&mut self, position: u64, out: &mut Vec<MdMessage>) {
        // Taken and given back, so its capacity is reused.
        let mut entering = std::mem::take(&mut self.entering);
        for key in entering.drain(..) {
            let Some(live) = self.orders.get_mut(&key) else {
                continue;
            };
            match live.price {
                Some(price) if !live.resting && live.leaves > 0 => {
                    live.resting = true;
                    let live = *live;
                    self.change_level(live.symbol, live.side, price, live.leaves);
                }
                Some(_) => {}
                // A market order never rests; its events always finish it.
                None => {
                    self.orders.remove(&key);
                }
            }
        }
        self.entering = entering;
        if self.touched.is_empty() {
            return;
        }
        // By symbol, bids then asks, by price; a stable sort keeps each level's first entry
        // (what it showed before the command) first, and dedup keeps that one.
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_by(|a, b| {
            (a.0.as_str(), a.1 == Side::Sell, a.2).cmp(&(b.0.as_str(), b.1 == Side::Sell, b.2))
        });
        touched.dedup_by(|later, first| (later.0, later.1, later.2) == (first.0, first.1, first.2));
        let mut at = 0;
        while at < touched.len() {
            let symbol = touched[at].0;
            let end = touched[at..]
                .iter()
                .position(|t| t.0 != symbol)
                .map_or(touched.len(), |n| at + n);
            let book = self.books.entry(symbol).or_default();
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            for &(_, side, price, before) in &touched[at..end] {
                let qty = book.shown(side, price);
                if qty == before {
                    // Changed and changed back (or beyond what a total shows): not an update.
                    continue;
                }
                match side {
                    Side::Buy => bids.push(Level { price, qty }),
                    Side::Sell => asks.push(Level { price, qty }),
                }
            }
            at = end;
            if bids.is_empty() && asks.is_empty() {
                continue;
            }
            bids.reverse();
            book.seq += 1;
            out.push(MdMessage::Book {
                symbol,
                seq: book.seq,
                position,
                bids,
                asks,
            });
        }
        touched.clear();
        self.touched = touched;
    }

    /// Orders the mirror follows: as many as the engine has live, between commands.
    pub fn live_orders(&self) -> usize {
        self.orders.len()
    }

    /// The best `depth` levels of each side of `symbol`, if it is listed.
    pub fn snapshot(&self, symbol: &Symbol, depth: usize) -> Option<BookSnapshot> {
        let book = self.books.get(symbol)?;
        Some(BookSnapshot {
            symbol: *symbol,
            seq: book.seq,
            position: self.position,
            bids: book.levels(Side::Buy, depth),
            asks: book.levels(Side::Sell, depth),
        })
    }
}

/// Messages a subscriber may fall behind by before it is told to resync.
pub const FEED_BUFFER: usize = 16_384;

/// The site's market data: one mirror per shard (each follows its own matcher, at its own
/// log positions) and one feed for all of them. A symbol's messages all come from its shard's
/// pump, published under its mirror's lock, so a subscriber sees them in order after its
/// snapshot.
pub struct MarketData {
    mirrors: Vec<Mutex<BookMirror>>,
    feed: broadcast::Sender<Arc<MdMessage>>,
}

impl MarketData {
    /// Market data for a site of `shards` shards.
    pub fn new(shards: usize) -> MarketData {
        MarketData {
            mirrors: (0..shards).map(|_| Mutex::default()).collect(),
            feed: broadcast::channel(FEED_BUFFER).0,
        }
    }

    fn mirror(&self, shard: usize) -> MutexGuard<'_, BookMirror> {
        self.mirrors[shard]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The mirror of the shard that lists `symbol`, locked, with its snapshot.
    fn find(
        &self,
        symbol: &Symbol,
        depth: usize,
    ) -> Option<(MutexGuard<'_, BookMirror>, BookSnapshot)> {
        (0..self.mirrors.len()).find_map(|shard| {
            let mirror = self.mirror(shard);
            let snapshot = mirror.snapshot(symbol, depth)?;
            Some((mirror, snapshot))
        })
    }

    /// Starts shard `shard`'s mirror from its recovered engine (see [`BookMirror::seed`]).
    pub fn seed(&self, shard: usize, engine: &engine::Engine, next_position: u64) {
        self.mirror(shard).seed(engine, next_position);
    }

    /// Follows a batch of shard `shard`'s matcher output and publishes what it completes.
    pub fn apply(&self, shard: usize, batch: &[Emitted]) {
        let mut out = Vec::new();
        let mut mirror = self.mirror(shard);
        for item in batch {
            mirror.apply(item, &mut out);
        }
        for message in out {
            // No subscribers is not an error.
            let _ = self.feed.send(Arc::new(message));
        }
    }

    /// A snapshot of `symbol` (`None` if it is not listed) and a feed subscription whose
    /// first book message for it is `seq + 1`.
    pub fn subscribe(
        &self,
        symbol: &Symbol,
        depth: usize,
    ) -> (Option<BookSnapshot>, broadcast::Receiver<Arc<MdMessage>>) {
        match self.find(symbol, depth) {
            // Subscribed under the mirror's lock: no message of the symbol between the two.
            Some((_mirror, snapshot)) => (Some(snapshot), self.feed.subscribe()),
            None => (None, self.feed.subscribe()),
        }
    }

    /// A snapshot of `symbol` alone (the HTTP endpoint, or a resync).
    pub fn snapshot(&self, symbol: &Symbol, depth: usize) -> Option<BookSnapshot> {
        self.find(symbol, depth).map(|(_, snapshot)| snapshot)
    }
}

//! The L2 books: per symbol, each price level's total open quantity, with a sequence number.
//!
//! [`Books`] knows no orders: the order table tells it what changed ([`LevelDelta`]s), and it
//! holds the current command's changes aside. At the end of each command
//! ([`Books::end_command`]) it applies them and says which levels changed, as one
//! [`MdMessage::Book`] per symbol. An order that trades on entry only rests once its command
//! is over, and a command's changes reach the books only at its end, so neither an update nor
//! a snapshot (taken between two batches of one command) ever shows a state that existed only
//! halfway through a command.
//!
//! **Numbered by the log.** Each symbol's updates are numbered 1, 2, 3... by the engine: its
//! book's `updates` counts the commands that changed any of its levels, and one update goes out
//! per such command (its levels may show no change, when a command moved an order out of a
//! level and back). The engine keeps the count in its state and snapshots, and the desk is
//! seeded with it, so an update has the same number at every site, restarted or not: a
//! subscriber that switches sites continues from its last number, or sees the gap and resyncs.

use std::collections::{BTreeMap, HashMap};

use engine::{Price, Qty, Side, Symbol};
use serde::Serialize;

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
        /// The symbol's trade number (the engine's: 1, 2, 3... per symbol, the same at every
        /// site).
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

/// A change of one level's total: `qty` added (negative: taken off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelDelta {
    pub symbol: Symbol,
    pub side: Side,
    pub price: Price,
    pub qty: i64,
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

/// One shard's L2 books, following its matcher command by command.
#[derive(Default)]
pub struct Books {
    books: HashMap<Symbol, SymbolBook>,
    /// The current command's changes, applied at its end.
    pending: Vec<LevelDelta>,
    /// Levels the command being ended changed, with the total each showed before its first
    /// change.
    touched: Vec<(Symbol, Side, Price, Qty)>,
    /// The log position of the next command.
    position: u64,
}

impl Books {
    /// Empty books whose next command is at `next_position` (then [`Books::list`] and
    /// [`Books::seed`] what a recovered engine holds).
    pub fn new(next_position: u64) -> Books {
        Books {
            position: next_position,
            ..Books::default()
        }
    }

    /// Makes `symbol` known (its book empty if it is new).
    pub fn list(&mut self, symbol: Symbol) {
        self.books.entry(symbol).or_default();
    }

    /// Adds a recovered resting order's quantity, outside any command (no update is sent).
    pub fn seed(&mut self, delta: LevelDelta) {
        let book = self.books.entry(delta.symbol).or_default();
        book.add(delta.side, delta.price, delta.qty);
    }

    /// Sets a recovered symbol's update number (the engine's count of its book's updates).
    pub fn seed_seq(&mut self, symbol: Symbol, seq: u64) {
        self.books.entry(symbol).or_default().seq = seq;
    }

    /// Holds a change of the current command until its end (a change of nothing is none).
    pub fn change(&mut self, delta: LevelDelta) {
        if delta.qty != 0 {
            self.pending.push(delta);
        }
    }

    /// Ends the command at `position`: applies its changes and appends one update per symbol
    /// whose levels it changed (as the engine counts them), with the levels that show a
    /// change, bids best first then asks best first.
    pub fn end_command(&mut self, position: u64, out: &mut Vec<MdMessage>) {
        self.position = position + 1;
        for delta in self.pending.drain(..) {
            let book = self.books.entry(delta.symbol).or_default();
            let before = book.shown(delta.side, delta.price);
            self.touched
                .push((delta.symbol, delta.side, delta.price, before));
            book.add(delta.side, delta.price, delta.qty);
        }
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
            self.update(symbol, position, &touched[at..end], out);
            at = end;
        }
        // Given back, so its capacity is reused.
        touched.clear();
        self.touched = touched;
    }

    /// The update of `symbol` for its touched levels (sorted, one entry per level): the levels
    /// that show a change (none when the command moved quantity out and back).
    fn update(
        &mut self,
        symbol: Symbol,
        position: u64,
        touched: &[(Symbol, Side, Price, Qty)],
        out: &mut Vec<MdMessage>,
    ) {
        let book = self.books.entry(symbol).or_default();
        let (mut bids, mut asks) = (Vec::new(), Vec::new());
        for &(_, side, price, before) in touched {
            let qty = book.shown(side, price);
            if qty == before {
                // Changed and changed back (or beyond what a total shows): no level to show.
                continue;
            }
            match side {
                Side::Buy => bids.push(Level { price, qty }),
                Side::Sell => asks.push(Level { price, qty }),
            }
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

    /// The best `depth` levels of each side of `symbol`, if it is listed here.
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

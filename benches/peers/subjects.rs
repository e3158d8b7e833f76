//! The engines under test behind one interface: ours on `Command`s, the peers on the
//! translated stream. Each one counts the trades it made and their quantity, read from what it
//! returns (events, fills, its trade listener): consuming the output is part of the work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use engine::{Command, Engine, Event, EventKind, Side};
use orderbook_rs::{OrderBook as OrsBook, STPMode, TradeListener, TradeResult};
use pricelevel::{Hash32, Id, OrderUpdate, Price as OrsPrice, TimeInForce};

use crate::translate::{Op, PeerCommand, Translated};
use crate::workload::Workload;

/// An engine in the state after a workload's setup, ready to apply its stream.
pub trait Subject {
    /// Applies command `at` of the stream. Each implementation is `#[inline(never)]`: one call
    /// per command for every engine alike, and a symbol callgrind can collect by
    /// (`scripts/profile --peers`).
    fn apply(&mut self, at: usize);
    /// Trades made so far and their quantity in lots.
    fn trades(&self) -> (u64, u64);
}

/// What the table says about each engine.
pub struct Info {
    pub name: &'static str,
    /// How the operations map to this engine's API.
    pub notes: &'static str,
}

pub const OURS: Info = Info {
    name: "ours",
    notes: "`Engine::apply` into a reserved `Vec<Event>`; STP cancel-taker",
};

pub const LOBSTER: Info = Info {
    name: "lobster 0.7.0",
    notes: "move = cancel + new limit (no amend); IOC = limit + cancel of the rest (no IOC); \
            no STP",
};

pub const ORDERBOOK_RS: Info = Info {
    name: "orderbook-rs 0.15.3",
    notes: "move = `update_order(UpdatePrice)`; native IOC and market; STP cancel-taker; \
            trades counted by a trade listener",
};

// ----- ours --------------------------------------------------------------------------------

pub struct Ours<'a> {
    engine: Engine,
    sink: Vec<Event>,
    stream: &'a [Command],
    /// Every workload's symbols share one lot.
    lot: i64,
    trades: u64,
    qty: i64,
}

impl<'a> Ours<'a> {
    pub fn new(workload: &'a Workload) -> Ours<'a> {
        let mut engine = Engine::new(workload.engine_config).expect("the workload's config");
        let mut sink = Vec::with_capacity(1 << 12);
        for cmd in &workload.setup {
            sink.clear();
            engine.apply(cmd, &mut sink);
        }
        // As a node does at start-up: no page faults on the clock.
        engine.commit_memory();
        let lot = engine.symbols().next().expect("a listed symbol").lot.0;
        assert!(engine.symbols().all(|s| s.lot.0 == lot), "one lot for all");
        Ours {
            engine,
            sink,
            stream: &workload.stream,
            lot,
            trades: 0,
            qty: 0,
        }
    }
}

impl Subject for Ours<'_> {
    #[inline(never)]
    fn apply(&mut self, at: usize) {
        self.sink.clear();
        self.engine.apply(&self.stream[at], &mut self.sink);
        for event in &self.sink {
            if let EventKind::Trade { qty, .. } = event.kind {
                self.trades += 1;
                self.qty += qty.0;
            }
        }
    }

    fn trades(&self) -> (u64, u64) {
        (self.trades, (self.qty / self.lot) as u64)
    }
}

// ----- lobster -----------------------------------------------------------------------------

pub struct Lobster<'a> {
    books: Vec<lobster::OrderBook>,
    stream: &'a [PeerCommand],
    trades: u64,
    lots: u64,
}

impl<'a> Lobster<'a> {
    /// Books with room for `orders_per_book` orders preallocated (lobster grows beyond it).
    pub fn new(translated: &'a Translated, orders_per_book: usize) -> Lobster<'a> {
        let mut lobster = Lobster {
            books: (0..translated.books)
                .map(|_| lobster::OrderBook::new(orders_per_book, 16, false))
                .collect(),
            stream: &translated.stream,
            trades: 0,
            lots: 0,
        };
        for cmd in &translated.setup {
            lobster.exec(*cmd);
        }
        (lobster.trades, lobster.lots) = (0, 0);
        lobster
    }

    /// Executes one order and counts its fills; whether it filled completely.
    #[inline]
    fn execute(&mut self, book: usize, order: lobster::OrderType) -> bool {
        match self.books[book].execute(order) {
            lobster::OrderEvent::Filled { fills, .. } => {
                self.count(&fills);
                true
            }
            lobster::OrderEvent::PartiallyFilled { fills, .. } => {
                self.count(&fills);
                false
            }
            _ => false,
        }
    }

    fn count(&mut self, fills: &[lobster::FillMetadata]) {
        self.trades += fills.len() as u64;
        self.lots += fills.iter().map(|fill| fill.qty).sum::<u64>();
    }

    #[inline]
    fn exec(&mut self, cmd: PeerCommand) {
        let book = cmd.book as usize;
        let side = |side: Side| match side {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        };
        match cmd.op {
            Op::Limit {
                id,
                side: s,
                price,
                qty,
                ioc,
                ..
            } => {
                let id = u128::from(id);
                let order = lobster::OrderType::Limit {
                    id,
                    side: side(s),
                    qty,
                    price,
                };
                if !self.execute(book, order) && ioc {
                    self.execute(book, lobster::OrderType::Cancel { id });
                }
            }
            Op::Market {
                id, side: s, qty, ..
            } => {
                let order = lobster::OrderType::Market {
                    id: u128::from(id),
                    side: side(s),
                    qty,
                };
                self.execute(book, order);
            }
            Op::Cancel { id } => {
                let id = u128::from(id);
                self.execute(book, lobster::OrderType::Cancel { id });
            }
            Op::Move {
                id,
                side: s,
                price,
                qty,
                ..
            } => {
                let id = u128::from(id);
                self.execute(book, lobster::OrderType::Cancel { id });
                let order = lobster::OrderType::Limit {
                    id,
                    side: side(s),
                    qty,
                    price,
                };
                self.execute(book, order);
            }
        }
    }
}

impl Subject for Lobster<'_> {
    #[inline(never)]
    fn apply(&mut self, at: usize) {
        self.exec(self.stream[at]);
    }

    fn trades(&self) -> (u64, u64) {
        (self.trades, self.lots)
    }
}

// ----- orderbook-rs ------------------------------------------------------------------------

pub struct OrderbookRs<'a> {
    books: Vec<OrsBook<()>>,
    stream: &'a [PeerCommand],
    counts: Arc<[AtomicU64; 2]>,
}

impl<'a> OrderbookRs<'a> {
    pub fn new(translated: &'a Translated) -> OrderbookRs<'a> {
        let counts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let books = (0..translated.books)
            .map(|book| {
                let counts = Arc::clone(&counts);
                let listener: TradeListener = Arc::new(move |result: &TradeResult| {
                    let trades = result.match_result.trades().as_vec();
                    let lots: u64 = trades.iter().map(|t| t.quantity().as_u64()).sum();
                    counts[0].fetch_add(trades.len() as u64, Ordering::Relaxed);
                    counts[1].fetch_add(lots, Ordering::Relaxed);
                });
                let mut book = OrsBook::with_trade_listener(&format!("S{book}"), listener);
                book.set_stp_mode(STPMode::CancelTaker);
                book
            })
            .collect();
        let ors = OrderbookRs {
            books,
            stream: &translated.stream,
            counts,
        };
        for cmd in &translated.setup {
            ors.exec(*cmd);
        }
        for count in ors.counts.iter() {
            count.store(0, Ordering::Relaxed);
        }
        ors
    }

    #[inline]
    fn exec(&self, cmd: PeerCommand) {
        let book = &self.books[cmd.book as usize];
        let side = |side: Side| match side {
            Side::Buy => pricelevel::Side::Buy,
            Side::Sell => pricelevel::Side::Sell,
        };
        // Results are dropped: trades reach the listener, and a refusal (an IOC's unfilled
        // rest, a cancel that finds nothing) is an outcome, not a failure of the benchmark.
        match cmd.op {
            Op::Limit {
                id,
                account,
                side: s,
                price,
                qty,
                ioc,
            } => {
                let tif = if ioc {
                    TimeInForce::Ioc
                } else {
                    TimeInForce::Gtc
                };
                let _ = book.add_limit_order_with_user(
                    Id::from_u64(id),
                    u128::from(price),
                    qty,
                    side(s),
                    tif,
                    user(account),
                    None,
                );
            }
            Op::Market {
                id,
                account,
                side: s,
                qty,
            } => {
                let _ = book.submit_market_order_with_user(
                    Id::from_u64(id),
                    qty,
                    side(s),
                    user(account),
                );
            }
            Op::Cancel { id } => {
                let _ = book.cancel_order(Id::from_u64(id));
            }
            Op::Move { id, price, .. } => {
                let _ = book.update_order(OrderUpdate::UpdatePrice {
                    order_id: Id::from_u64(id),
                    new_price: OrsPrice::new(u128::from(price)),
                });
            }
        }
    }
}

/// orderbook-rs's owner identity for STP: the account number (never zero, which would opt the
/// order out of STP).
fn user(account: u64) -> Hash32 {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&account.to_le_bytes());
    Hash32(bytes)
}

impl Subject for OrderbookRs<'_> {
    #[inline(never)]
    fn apply(&mut self, at: usize) {
        self.exec(self.stream[at]);
    }

    fn trades(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
        )
    }
}

//! Shared by the engine's integration tests: a deliberately naive reference book written from
//! `shared/replay-contract.md` (not from `engine.rs`), a small command-building vocabulary, and
//! a compact text form of events and books for readable expectations and failure messages.
//!
//! The model is slow on purpose: every resting order of every symbol sits in one `Vec`, the
//! next order to match is found by scanning it for the best price and then the smallest time
//! priority, a FOK order is tried on a clone of the whole model, and accepted order ids are
//! remembered forever. It has no capacities; tests that compare against it use an
//! `EngineConfig` roomy enough that the engine's `capacity` rejects never trigger.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;

use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, CancelReason, Command, CommandKind, Engine,
    EventKind, MassCancel, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Request, Side,
    Stp, Symbol, Tif,
};

// ----- the naive model ---------------------------------------------------------------------------

/// A resting order of the model. Prices and quantities stay in fixed-8 units (`Price.0`,
/// `Qty.0`): the contract's multiples-of-tick/lot checks make ticks and lots unnecessary here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOrder {
    pub account: AccountId,
    pub order_id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub price: i64,
    /// Open quantity.
    pub qty: i64,
    /// Time priority: taken on acceptance and on re-entry after an amend; smaller is older.
    pub prio: u64,
    pub stp: Stp,
    pub post_only: bool,
}

#[derive(Clone, Debug)]
struct ModelSymbol {
    name: Symbol,
    tick: i64,
    lot: i64,
}

/// How matching an incoming order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Filled,
    /// Nothing (more) on the other side trades with it.
    Exhausted,
    /// Self-trade prevention stopped it; its rest is cancelled with reason `stp`.
    Stp,
}

/// The reference book.
#[derive(Clone, Debug, Default)]
pub struct Model {
    symbols: Vec<ModelSymbol>,
    /// Every resting order of every symbol, in no particular order.
    book: Vec<ModelOrder>,
    /// Every (account, order id) ever accepted; never forgotten.
    accepted_ids: BTreeSet<(AccountId, OrderId)>,
    next_prio: u64,
}

/// Whether an order on `taker_side` with `limit` (`None`: market) trades with a resting `price`.
fn crosses(taker_side: Side, limit: Option<i64>, price: i64) -> bool {
    match (taker_side, limit) {
        (_, None) => true,
        (Side::Buy, Some(limit)) => price <= limit,
        (Side::Sell, Some(limit)) => price >= limit,
    }
}

/// Whether resting order `a` comes before `b` (same symbol and side): better price, then older.
fn ahead_of(a: &ModelOrder, b: &ModelOrder) -> bool {
    let better_price = match a.side {
        Side::Buy => a.price > b.price,
        Side::Sell => a.price < b.price,
    };
    better_price || (a.price == b.price && a.prio < b.prio)
}

fn is_positive_multiple(value: i64, unit: i64) -> bool {
    value > 0 && value % unit == 0
}

fn cancelled(order: &ModelOrder, reason: CancelReason) -> EventKind {
    EventKind::Cancelled {
        account: order.account,
        order_id: order.order_id,
        symbol: order.symbol,
        reason,
        qty: Qty(order.qty),
    }
}

impl Model {
    /// Applies one command and returns the events it causes.
    pub fn apply(&mut self, cmd: &Command) -> Vec<EventKind> {
        let mut out = Vec::new();
        match &cmd.kind {
            CommandKind::AddSymbol(add) => self.add_symbol(add, &mut out),
            CommandKind::New(order) => self.new_order(order, &mut out),
            CommandKind::Cancel(cancel) => self.cancel(cancel, &mut out),
            CommandKind::Amend(amend) => self.amend(amend, &mut out),
            CommandKind::MassCancel(mass) => self.mass_cancel(mass, &mut out),
        }
        out
    }

    /// Listed symbols, in listing order.
    pub fn symbols(&self) -> Vec<Symbol> {
        self.symbols.iter().map(|s| s.name).collect()
    }

    /// One side of a book in priority order: best price first, then oldest first.
    pub fn resting(&self, symbol: &Symbol, side: Side) -> Vec<ModelOrder> {
        let mut orders: Vec<ModelOrder> = self
            .book
            .iter()
            .filter(|o| o.symbol == *symbol && o.side == side)
            .cloned()
            .collect();
        orders.sort_by(|a, b| {
            if ahead_of(a, b) {
                std::cmp::Ordering::Less
            } else if ahead_of(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        orders
    }

    fn symbol(&self, name: &Symbol) -> Option<ModelSymbol> {
        self.symbols.iter().find(|s| s.name == *name).cloned()
    }

    fn take_prio(&mut self) -> u64 {
        self.next_prio += 1;
        self.next_prio
    }

    /// Index in `book` of the next resting order that an incoming order on `taker_side` with
    /// `limit` would meet: opposite side, crossing, best price, then oldest.
    fn next_maker(&self, symbol: &Symbol, taker_side: Side, limit: Option<i64>) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, o) in self.book.iter().enumerate() {
            if o.symbol != *symbol
                || o.side != taker_side.opposite()
                || !crosses(taker_side, limit, o.price)
            {
                continue;
            }
            if best.is_none_or(|b| ahead_of(o, &self.book[b])) {
                best = Some(i);
            }
        }
        best
    }

    /// Matches `taker` (not on the book) while it has quantity and something crosses `limit`.
    fn match_incoming(
        &mut self,
        taker: &mut ModelOrder,
        limit: Option<i64>,
        out: &mut Vec<EventKind>,
    ) -> End {
        loop {
            if taker.qty == 0 {
                return End::Filled;
            }
            let Some(i) = self.next_maker(&taker.symbol, taker.side, limit) else {
                return End::Exhausted;
            };
            if self.book[i].account == taker.account {
                match taker.stp {
                    Stp::None => {}
                    Stp::CancelTaker => return End::Stp,
                    Stp::CancelMaker => {
                        let maker = self.book.remove(i);
                        out.push(cancelled(&maker, CancelReason::Stp));
                        continue;
                    }
                    Stp::CancelBoth => {
                        let maker = self.book.remove(i);
                        out.push(cancelled(&maker, CancelReason::Stp));
                        return End::Stp;
                    }
                }
            }
            let maker = &mut self.book[i];
            let fill = maker.qty.min(taker.qty);
            maker.qty -= fill;
            taker.qty -= fill;
            out.push(EventKind::Trade {
                symbol: taker.symbol,
                price: Price(maker.price),
                qty: Qty(fill),
                maker_account: maker.account,
                maker_order_id: maker.order_id,
                taker_account: taker.account,
                taker_order_id: taker.order_id,
                taker_side: taker.side,
                maker_leaves: Qty(maker.qty),
                taker_leaves: Qty(taker.qty),
            });
            if maker.qty == 0 {
                self.book.remove(i);
            }
        }
    }

    fn add_symbol(&mut self, add: &AddSymbol, out: &mut Vec<EventKind>) {
        let reason = if self.symbol(&add.symbol).is_some() {
            Some(RejectReason::DuplicateSymbol)
        } else if add.tick.0 <= 0 {
            Some(RejectReason::InvalidTick)
        } else if add.lot.0 <= 0 {
            Some(RejectReason::InvalidLot)
        } else {
            None
        };
        match reason {
            Some(reason) => out.push(EventKind::SymbolRejected {
                symbol: add.symbol,
                reason,
            }),
            None => self.symbols.push(ModelSymbol {
                name: add.symbol,
                tick: add.tick.0,
                lot: add.lot.0,
            }),
        }
    }

    fn new_order(&mut self, o: &NewOrder, out: &mut Vec<EventKind>) {
        let reject = |reason| EventKind::Rejected {
            account: o.account,
            order_id: o.order_id,
            symbol: o.symbol,
            request: Request::New,
            reason,
        };
        // The checks, in the contract's order; the first failure wins.
        let Some(symbol) = self.symbol(&o.symbol) else {
            return out.push(reject(RejectReason::UnknownSymbol));
        };
        if self.accepted_ids.contains(&(o.account, o.order_id)) {
            return out.push(reject(RejectReason::DuplicateOrderId));
        }
        if !is_positive_multiple(o.qty.0, symbol.lot) {
            return out.push(reject(RejectReason::InvalidQty));
        }
        let limit = match o.ord_type {
            OrdType::Market => None,
            OrdType::Limit => match o.price {
                Some(p) if is_positive_multiple(p.0, symbol.tick) => Some(p.0),
                _ => return out.push(reject(RejectReason::InvalidPrice)),
            },
        };
        let market = o.ord_type == OrdType::Market;
        if (market && o.tif == Tif::Gtc) || (o.post_only && (market || o.tif != Tif::Gtc)) {
            return out.push(reject(RejectReason::InvalidTif));
        }
        if o.post_only && self.next_maker(&o.symbol, o.side, limit).is_some() {
            return out.push(reject(RejectReason::PostOnly));
        }

        self.accepted_ids.insert((o.account, o.order_id));
        out.push(EventKind::Accepted {
            account: o.account,
            order_id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            price: limit.map(Price),
            qty: o.qty,
        });
        let mut taker = ModelOrder {
            account: o.account,
            order_id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            price: limit.unwrap_or(0),
            qty: o.qty.0,
            prio: self.take_prio(),
            stp: o.stp,
            post_only: o.post_only,
        };
        if o.tif == Tif::Fok {
            // Would the matching just described fill it completely? Try it on a copy.
            let mut trial = self.clone();
            let mut trial_taker = taker.clone();
            if trial.match_incoming(&mut trial_taker, limit, &mut Vec::new()) != End::Filled {
                return out.push(cancelled(&taker, CancelReason::Fok));
            }
        }
        match self.match_incoming(&mut taker, limit, out) {
            End::Filled => {}
            End::Stp => out.push(cancelled(&taker, CancelReason::Stp)),
            End::Exhausted if o.tif == Tif::Gtc => self.book.push(taker),
            End::Exhausted => out.push(cancelled(&taker, CancelReason::Ioc)),
        }
    }

    /// The resting order `order_id` of `account` in `symbol`.
    fn find(&self, account: AccountId, symbol: &Symbol, order_id: &OrderId) -> Option<usize> {
        self.book
            .iter()
            .position(|o| o.account == account && o.symbol == *symbol && o.order_id == *order_id)
    }

    fn cancel(&mut self, c: &CancelOrder, out: &mut Vec<EventKind>) {
        match self.find(c.account, &c.symbol, &c.order_id) {
            Some(i) => {
                let order = self.book.remove(i);
                out.push(cancelled(&order, CancelReason::User));
            }
            None => out.push(EventKind::Rejected {
                account: c.account,
                order_id: c.order_id,
                symbol: c.symbol,
                request: Request::Cancel,
                reason: RejectReason::UnknownOrder,
            }),
        }
    }

    fn amend(&mut self, a: &AmendOrder, out: &mut Vec<EventKind>) {
        let reject = |reason| EventKind::Rejected {
            account: a.account,
            order_id: a.order_id,
            symbol: a.symbol,
            request: Request::Amend,
            reason,
        };
        let Some(i) = self.find(a.account, &a.symbol, &a.order_id) else {
            return out.push(reject(RejectReason::UnknownOrder));
        };
        let symbol = self
            .symbol(&a.symbol)
            .expect("a resting order's symbol is listed");
        let old = self.book[i].clone();
        let price = match a.price {
            None => old.price,
            Some(p) if is_positive_multiple(p.0, symbol.tick) => p.0,
            Some(_) => return out.push(reject(RejectReason::InvalidPrice)),
        };
        let qty = match a.qty {
            None => old.qty,
            Some(q) if is_positive_multiple(q.0, symbol.lot) => q.0,
            Some(_) => return out.push(reject(RejectReason::InvalidQty)),
        };
        if old.post_only && self.next_maker(&a.symbol, old.side, Some(price)).is_some() {
            return out.push(reject(RejectReason::PostOnly));
        }
        out.push(EventKind::Amended {
            account: a.account,
            order_id: a.order_id,
            symbol: a.symbol,
            price: Price(price),
            qty: Qty(qty),
        });
        if price == old.price && qty <= old.qty {
            self.book[i].qty = qty;
            return;
        }
        // Loses its place: re-enters as if new, at the back of its price level.
        let mut order = self.book.remove(i);
        order.price = price;
        order.qty = qty;
        order.prio = self.take_prio();
        match self.match_incoming(&mut order, Some(price), out) {
            End::Filled => {}
            End::Stp => out.push(cancelled(&order, CancelReason::Stp)),
            End::Exhausted => self.book.push(order),
        }
    }

    fn mass_cancel(&mut self, m: &MassCancel, out: &mut Vec<EventKind>) {
        let mut doomed: Vec<ModelOrder> = self
            .book
            .iter()
            .filter(|o| o.account == m.account && m.symbol.is_none_or(|s| s == o.symbol))
            .cloned()
            .collect();
        doomed.sort_by_key(|o| o.prio);
        for order in doomed {
            let i = self
                .find(order.account, &order.symbol, &order.order_id)
                .expect("still resting");
            self.book.remove(i);
            out.push(cancelled(&order, CancelReason::Mass));
        }
    }
}

// ----- building commands ---------------------------------------------------------------------

/// The symbol most hand-written cases trade.
pub const BTC: &str = "BTC";

pub fn sym(name: &str) -> Symbol {
    Symbol::new(name).expect("valid symbol name")
}

pub fn oid(id: &str) -> OrderId {
    OrderId::new(id).expect("valid order id")
}

/// A price written as a decimal, such as `"100.5"`.
pub fn px(text: &str) -> Price {
    Price::parse(text).expect("a plain decimal")
}

/// A quantity written as a decimal, such as `"0.01"`.
pub fn qty(text: &str) -> Qty {
    Qty::parse(text).expect("a plain decimal")
}

pub fn add_symbol(name: &str, tick: &str, lot: &str) -> CommandKind {
    CommandKind::AddSymbol(AddSymbol {
        symbol: sym(name),
        tick: px(tick),
        lot: qty(lot),
    })
}

/// A GTC limit order on [`BTC`] with the default STP (`cancel_taker`).
pub fn limit(account: u64, id: &str, side: Side, price: &str, quantity: &str) -> NewOrder {
    NewOrder {
        account: AccountId(account),
        order_id: oid(id),
        symbol: sym(BTC),
        side,
        ord_type: OrdType::Limit,
        price: Some(px(price)),
        qty: qty(quantity),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
    }
}

/// An IOC market order on [`BTC`].
pub fn market(account: u64, id: &str, side: Side, quantity: &str) -> NewOrder {
    NewOrder {
        ord_type: OrdType::Market,
        price: None,
        tif: Tif::Ioc,
        ..limit(account, id, side, "1", quantity)
    }
}

/// Fluent changes to a [`NewOrder`].
pub trait NewOrderExt {
    fn tif(self, tif: Tif) -> Self;
    fn stp(self, stp: Stp) -> Self;
    fn post_only(self) -> Self;
    fn on(self, symbol: &str) -> Self;
}

impl NewOrderExt for NewOrder {
    fn tif(self, tif: Tif) -> Self {
        NewOrder { tif, ..self }
    }
    fn stp(self, stp: Stp) -> Self {
        NewOrder { stp, ..self }
    }
    fn post_only(self) -> Self {
        NewOrder {
            post_only: true,
            ..self
        }
    }
    fn on(self, symbol: &str) -> Self {
        NewOrder {
            symbol: sym(symbol),
            ..self
        }
    }
}

pub fn new(order: NewOrder) -> CommandKind {
    CommandKind::New(order)
}

pub fn cancel_on(symbol: &str, account: u64, id: &str) -> CommandKind {
    CommandKind::Cancel(CancelOrder {
        account: AccountId(account),
        symbol: sym(symbol),
        order_id: oid(id),
    })
}

pub fn cancel(account: u64, id: &str) -> CommandKind {
    cancel_on(BTC, account, id)
}

pub fn amend_on(
    symbol: &str,
    account: u64,
    id: &str,
    price: Option<&str>,
    quantity: Option<&str>,
) -> CommandKind {
    CommandKind::Amend(AmendOrder {
        account: AccountId(account),
        symbol: sym(symbol),
        order_id: oid(id),
        price: price.map(px),
        qty: quantity.map(qty),
    })
}

pub fn amend(account: u64, id: &str, price: Option<&str>, quantity: Option<&str>) -> CommandKind {
    amend_on(BTC, account, id, price, quantity)
}

pub fn mass_cancel(account: u64, symbol: Option<&str>) -> CommandKind {
    CommandKind::MassCancel(MassCancel {
        account: AccountId(account),
        symbol: symbol.map(sym),
    })
}

/// Stamps commands with log times 1, 2, 3, ...
pub fn stamped(kinds: &[CommandKind]) -> Vec<Command> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| Command::new(i as u64 + 1, *kind))
        .collect()
}

// ----- compact text ------------------------------------------------------------------------------

fn side_word(side: Side) -> &'static str {
    side.as_str()
}

/// One event as a line, e.g. `trade BTC 100 3 maker 2/r taker 1/t buy leaves 0 2`.
pub fn describe_event(kind: &EventKind) -> String {
    match *kind {
        EventKind::Accepted {
            account,
            order_id,
            symbol,
            side,
            price,
            qty,
        } => {
            let price = price.map_or("market".to_string(), |p| p.to_string());
            format!(
                "accepted {}/{order_id} {symbol} {} {price} {qty}",
                account.0,
                side_word(side)
            )
        }
        EventKind::Rejected {
            account,
            order_id,
            symbol,
            request,
            reason,
        } => format!(
            "rejected {}/{order_id} {symbol} {} {}",
            account.0,
            request.as_str(),
            reason.as_str()
        ),
        EventKind::SymbolRejected { symbol, reason } => {
            format!("symbol_rejected {symbol} {}", reason.as_str())
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
        } => format!(
            "trade {symbol} {price} {qty} maker {}/{maker_order_id} taker {}/{taker_order_id} {} \
             leaves {maker_leaves} {taker_leaves}",
            maker_account.0,
            taker_account.0,
            side_word(taker_side)
        ),
        EventKind::Cancelled {
            account,
            order_id,
            symbol,
            reason,
            qty,
        } => format!(
            "cancelled {}/{order_id} {symbol} {} {qty}",
            account.0,
            reason.as_str()
        ),
        EventKind::Amended {
            account,
            order_id,
            symbol,
            price,
            qty,
        } => format!("amended {}/{order_id} {symbol} {price} {qty}", account.0),
    }
}

/// One command as a line, for failure messages.
pub fn describe_command(cmd: &Command) -> String {
    let ts = cmd.ts.0;
    match &cmd.kind {
        CommandKind::AddSymbol(a) => format!(
            "@{ts} add_symbol {} tick {} lot {}",
            a.symbol, a.tick, a.lot
        ),
        CommandKind::New(o) => {
            let price = o.price.map_or("-".to_string(), |p| p.to_string());
            format!(
                "@{ts} new {}/{} {} {} {:?} price {price} qty {} {:?}{} stp {:?}",
                o.account.0,
                o.order_id,
                o.symbol,
                side_word(o.side),
                o.ord_type,
                o.qty,
                o.tif,
                if o.post_only { " post_only" } else { "" },
                o.stp
            )
        }
        CommandKind::Cancel(c) => {
            format!("@{ts} cancel {}/{} {}", c.account.0, c.order_id, c.symbol)
        }
        CommandKind::Amend(a) => {
            let price = a.price.map_or("-".to_string(), |p| p.to_string());
            let qty = a.qty.map_or("-".to_string(), |q| q.to_string());
            format!(
                "@{ts} amend {}/{} {} price {price} qty {qty}",
                a.account.0, a.order_id, a.symbol
            )
        }
        CommandKind::MassCancel(m) => {
            let symbol = m.symbol.map_or("*".to_string(), |s| s.to_string());
            format!("@{ts} mass_cancel {} {symbol}", m.account.0)
        }
    }
}

/// A numbered listing of commands, for failure messages.
pub fn listing(cmds: &[Command]) -> String {
    cmds.iter()
        .enumerate()
        .map(|(i, c)| format!("  #{i} {}\n", describe_command(c)))
        .collect()
}

fn book_line(
    symbol: &Symbol,
    side: Side,
    account: AccountId,
    id: &OrderId,
    price: Price,
    qty: Qty,
) -> String {
    let side = match side {
        Side::Buy => "bid",
        Side::Sell => "ask",
    };
    format!("book {symbol} {side} {}/{id} {price} {qty}", account.0)
}

/// The engine's books, one resting order a line, in priority order.
pub fn describe_engine_books(engine: &Engine) -> Vec<String> {
    let mut lines = Vec::new();
    for info in engine.symbols() {
        for side in [Side::Buy, Side::Sell] {
            for o in engine.resting(info.id, side) {
                lines.push(book_line(
                    &info.name,
                    side,
                    o.account,
                    &o.order_id,
                    o.price,
                    o.qty,
                ));
            }
        }
    }
    lines
}

/// The model's books, in the same form as [`describe_engine_books`].
pub fn describe_model_books(model: &Model) -> Vec<String> {
    let mut lines = Vec::new();
    for symbol in model.symbols() {
        for side in [Side::Buy, Side::Sell] {
            for o in model.resting(&symbol, side) {
                lines.push(book_line(
                    &symbol,
                    side,
                    o.account,
                    &o.order_id,
                    Price(o.price),
                    Qty(o.qty),
                ));
            }
        }
    }
    lines
}

//! Shared by the engine's integration tests: a deliberately naive reference model written from
//! `shared/replay-contract.md` version 2 (not from `engine.rs`), a small command-building
//! vocabulary, and a compact text form of events and books for readable expectations and
//! failure messages.
//!
//! The model is slow on purpose: every resting order of every symbol sits in one `Vec`, the
//! next order to match is found by scanning it for the best price and then the smallest time
//! priority, a FOK order is tried on a clone of the whole model, finished orders sit in a map
//! checked against the dedup window on every lookup, and due dead-man's switches are found by
//! scanning them all before each command. It has no capacities; tests that compare against it
//! use an `EngineConfig` roomy enough that the engine's `capacity` rejects never trigger. Where
//! the contract is silent it follows `docs/plans/issue-16-contract-v2.md` section 3 (a replaced
//! id is frozen as before the amend; `kill_switch` and `trading_status` emit even when already
//! set; a disarm emits deadline 0).

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use engine::{
    AccountId, AddSymbol, AmendOrder, CancelAfter, CancelOrder, CancelReason, Command, CommandKind,
    Engine, EventKind, KillSwitch, MassCancel, NewOrder, OrdType, OrderId, OrderStatus, OrderView,
    Price, Qty, RejectReason, Request, SetTradingStatus, Side, Stp, Symbol, Tif, TimestampNs,
    TradingStatus, DEFAULT_DEDUP_WINDOW_NS,
};

// ----- the naive model ---------------------------------------------------------------------------

/// A live order of the model. Prices and quantities stay in fixed-8 units (`Price.0`, `Qty.0`):
/// the contract's multiples-of-tick/lot checks make ticks and lots unnecessary here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOrder {
    pub account: AccountId,
    pub order_id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub market: bool,
    /// The limit (0 for a market order).
    pub price: i64,
    /// Total quantity.
    pub total: i64,
    pub filled: i64,
    /// Sum of price × quantity over its trades, in 10^-16 units.
    pub notional: u128,
    pub session: u64,
    /// The venue's order number: orders accepted before it, counted from 0.
    pub number: u64,
    /// Time priority: taken on acceptance and on re-entry after an amend; smaller is older.
    pub prio: u64,
    pub stp: Stp,
    pub post_only: bool,
}

impl ModelOrder {
    /// Open quantity.
    pub fn leaves(&self) -> i64 {
        self.total - self.filled
    }
}

/// A finished order, frozen as it finished.
#[derive(Clone, Debug)]
struct ModelFinished {
    order: ModelOrder,
    status: OrderStatus,
    reason: Option<CancelReason>,
    replaced_by: Option<OrderId>,
    finished_at: u64,
}

#[derive(Clone, Debug)]
struct ModelSymbol {
    name: Symbol,
    tick: i64,
    lot: i64,
    status: TradingStatus,
    /// Trades so far: the last trade id.
    trades: u64,
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

/// The reference state machine.
#[derive(Clone, Debug)]
pub struct Model {
    /// `dedup_window_ns`.
    window: u64,
    /// The largest `ts` seen.
    now: u64,
    symbols: Vec<ModelSymbol>,
    /// Every resting order of every symbol, in no particular order.
    book: Vec<ModelOrder>,
    /// Finished orders by (account, id); an entry counts only while inside its window.
    finished: BTreeMap<(AccountId, OrderId), ModelFinished>,
    /// Armed dead-man's switches: (account, session) → deadline.
    switches: BTreeMap<(AccountId, u64), u64>,
    /// Accounts whose kill switch is on.
    disabled: BTreeSet<AccountId>,
    next_prio: u64,
    /// Orders accepted so far: the next one's number.
    accepted: u64,
}

impl Default for Model {
    fn default() -> Model {
        Model::with_window(DEFAULT_DEDUP_WINDOW_NS)
    }
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

impl Model {
    /// An empty model whose finished orders are remembered for `window` ns of log time.
    pub fn with_window(window: u64) -> Model {
        Model {
            window,
            now: 0,
            symbols: Vec::new(),
            book: Vec::new(),
            finished: BTreeMap::new(),
            switches: BTreeMap::new(),
            disabled: BTreeSet::new(),
            next_prio: 0,
            accepted: 0,
        }
    }

    /// Applies one command and returns the events it causes: first the cancels of the
    /// dead-man's switches due at the command's `now`, then the command's own.
    pub fn apply(&mut self, cmd: &Command) -> Vec<EventKind> {
        self.now = self.now.max(cmd.ts.0);
        let mut out = Vec::new();
        self.fire_switches(&mut out);
        match &cmd.kind {
            CommandKind::AddSymbol(add) => self.add_symbol(add, &mut out),
            CommandKind::New(order) => self.new_order(order, &mut out),
            CommandKind::Cancel(cancel) => self.cancel(cancel, &mut out),
            CommandKind::Amend(amend) => self.amend(amend, &mut out),
            CommandKind::MassCancel(mass) => self.mass_cancel(mass, &mut out),
            CommandKind::CancelAfter(arm) => self.cancel_after(arm, &mut out),
            CommandKind::Clock => {}
            CommandKind::TradingStatus(set) => self.trading_status(set, &mut out),
            CommandKind::KillSwitch(kill) => self.kill_switch(kill, &mut out),
            // Rules 1 is the only version: the contract's rules, which this model is.
            CommandKind::Rules(_) => {}
        }
        // Forget what has left its window (only visible through `orders()`: every lookup
        // checks the window itself).
        let (now, window) = (self.now, self.window);
        self.finished
            .retain(|_, f| u128::from(now) < u128::from(f.finished_at) + u128::from(window));
        out
    }

    /// The clock: the largest `ts` applied so far.
    pub fn clock(&self) -> u64 {
        self.now
    }

    /// Listed symbols, in listing order.
    pub fn symbols(&self) -> Vec<Symbol> {
        self.symbols.iter().map(|s| s.name).collect()
    }

    /// A symbol's trading status.
    pub fn status(&self, symbol: &Symbol) -> Option<TradingStatus> {
        self.symbol(symbol).map(|s| s.status)
    }

    /// Whether the account's kill switch is on.
    pub fn kill_switch_on(&self, account: AccountId) -> bool {
        self.disabled.contains(&account)
    }

    /// The deadline of the switch of (account, session), if armed.
    pub fn switch_deadline(&self, account: AccountId, session: u64) -> Option<u64> {
        self.switches.get(&(account, session)).copied()
    }

    /// Finished orders inside their window.
    pub fn finished_count(&self) -> usize {
        self.finished.len()
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

    /// Every live order and every finished order inside its window, as `ORDERS.json` lists
    /// them: sorted by account, then order id (byte order).
    pub fn orders(&self) -> Vec<OrderView> {
        let mut all: Vec<OrderView> = self
            .book
            .iter()
            .map(|o| {
                let status = if o.filled == 0 {
                    OrderStatus::New
                } else {
                    OrderStatus::PartiallyFilled
                };
                view(o, status, o.leaves(), None, None, None)
            })
            .collect();
        for f in self.finished.values() {
            if self.remembered(f) {
                let at = Some(TimestampNs(f.finished_at));
                all.push(view(&f.order, f.status, 0, f.reason, f.replaced_by, at));
            }
        }
        all.sort_by(|a, b| {
            let key = |v: &OrderView| (v.account.0, v.order_id.as_str().as_bytes().to_vec());
            key(a).cmp(&key(b))
        });
        all
    }

    fn symbol(&self, name: &Symbol) -> Option<&ModelSymbol> {
        self.symbols.iter().find(|s| s.name == *name)
    }

    /// The id of the next trade of `name`: its trades counted from 1.
    fn next_trade_id(&mut self, name: &Symbol) -> u64 {
        let symbol = self
            .symbols
            .iter_mut()
            .find(|s| s.name == *name)
            .expect("trades happen on listed symbols");
        symbol.trades += 1;
        symbol.trades
    }

    fn take_prio(&mut self) -> u64 {
        self.next_prio += 1;
        self.next_prio
    }

    /// Whether a finished entry is still inside its dedup window: `now < finished_at + window`.
    fn remembered(&self, f: &ModelFinished) -> bool {
        u128::from(self.now) < u128::from(f.finished_at) + u128::from(self.window)
    }

    /// Whether the account has `id` live, or finished inside the dedup window.
    fn id_known(&self, account: AccountId, id: &OrderId) -> bool {
        self.book
            .iter()
            .any(|o| o.account == account && o.order_id == *id)
            || self
                .finished
                .get(&(account, *id))
                .is_some_and(|f| self.remembered(f))
    }

    /// Remembers `order` as finished now.
    fn finish(
        &mut self,
        order: ModelOrder,
        status: OrderStatus,
        reason: Option<CancelReason>,
        replaced_by: Option<OrderId>,
    ) {
        let key = (order.account, order.order_id);
        let entry = ModelFinished {
            order,
            status,
            reason,
            replaced_by,
            finished_at: self.now,
        };
        if let Some(old) = self.finished.insert(key, entry) {
            assert!(
                !self.remembered(&old),
                "an id finished twice inside its window"
            );
        }
    }

    /// Cancels `order` (already off the book, or never on it): its open quantity.
    fn cancel_order(&mut self, order: ModelOrder, reason: CancelReason, out: &mut Vec<EventKind>) {
        out.push(EventKind::Cancelled {
            account: order.account,
            order_id: order.order_id,
            symbol: order.symbol,
            reason,
            qty: Qty(order.leaves()),
        });
        self.finish(order, OrderStatus::Cancelled, Some(reason), None);
    }

    /// Cancels every live order that `doomed` selects, oldest time priority first.
    fn cancel_where(
        &mut self,
        doomed: impl Fn(&ModelOrder) -> bool,
        reason: CancelReason,
        out: &mut Vec<EventKind>,
    ) {
        let mut picked: Vec<ModelOrder> = self.book.iter().filter(|o| doomed(o)).cloned().collect();
        picked.sort_by_key(|o| o.prio);
        for order in picked {
            self.book.retain(|o| o.prio != order.prio);
            self.cancel_order(order, reason, out);
        }
    }

    /// Fires every armed switch whose deadline is `<= now`, in (deadline, account, session)
    /// order: that session's live orders are cancelled (`expired`) and the switch disarmed.
    fn fire_switches(&mut self, out: &mut Vec<EventKind>) {
        let mut due: Vec<(u64, AccountId, u64)> = self
            .switches
            .iter()
            .filter(|(_, &deadline)| deadline <= self.now)
            .map(|(&(account, session), &deadline)| (deadline, account, session))
            .collect();
        due.sort();
        for (_, account, session) in due {
            self.switches.remove(&(account, session));
            self.cancel_where(
                |o| o.account == account && o.session == session,
                CancelReason::Expired,
                out,
            );
        }
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
            if taker.leaves() == 0 {
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
                        self.cancel_order(maker, CancelReason::Stp, out);
                        continue;
                    }
                    Stp::CancelBoth => {
                        let maker = self.book.remove(i);
                        self.cancel_order(maker, CancelReason::Stp, out);
                        return End::Stp;
                    }
                }
            }
            let trade_id = self.next_trade_id(&taker.symbol);
            let maker = &mut self.book[i];
            let fill = maker.leaves().min(taker.leaves());
            let value = maker.price as u128 * fill as u128;
            maker.filled += fill;
            maker.notional += value;
            taker.filled += fill;
            taker.notional += value;
            out.push(EventKind::Trade {
                symbol: taker.symbol,
                price: Price(maker.price),
                qty: Qty(fill),
                maker_account: maker.account,
                maker_order_id: maker.order_id,
                taker_account: taker.account,
                taker_order_id: taker.order_id,
                taker_side: taker.side,
                maker_leaves: Qty(maker.leaves()),
                taker_leaves: Qty(taker.leaves()),
                maker_filled: Qty(maker.filled),
                taker_filled: Qty(taker.filled),
                trade_id,
            });
            if maker.leaves() == 0 {
                let maker = self.book.remove(i);
                self.finish(maker, OrderStatus::Filled, None, None);
            }
        }
    }

    /// What becomes of `order` (off the book) after matching ended with `end`: filled, its
    /// rest cancelled (`stp`, or `rest` when given), or on the book.
    fn settle(
        &mut self,
        order: ModelOrder,
        end: End,
        rest: Option<CancelReason>,
        out: &mut Vec<EventKind>,
    ) {
        match (end, rest) {
            (End::Filled, _) => self.finish(order, OrderStatus::Filled, None, None),
            (End::Stp, _) => self.cancel_order(order, CancelReason::Stp, out),
            (End::Exhausted, Some(reason)) => self.cancel_order(order, reason, out),
            (End::Exhausted, None) => self.book.push(order),
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
                request: Request::AddSymbol,
                reason,
            }),
            None => self.symbols.push(ModelSymbol {
                name: add.symbol,
                tick: add.tick.0,
                lot: add.lot.0,
                trades: 0,
                status: TradingStatus::Open,
            }),
        }
    }

    /// A new order's checks in the contract's order, the first failure winning; the limit.
    fn check_new(&self, o: &NewOrder) -> Result<Option<i64>, RejectReason> {
        let symbol = self.symbol(&o.symbol).ok_or(RejectReason::UnknownSymbol)?;
        if self.disabled.contains(&o.account) {
            return Err(RejectReason::AccountDisabled);
        }
        if symbol.status == TradingStatus::CancelOnly {
            return Err(RejectReason::CancelOnly);
        }
        if self.id_known(o.account, &o.order_id) {
            return Err(RejectReason::DuplicateOrderId);
        }
        if !is_positive_multiple(o.qty.0, symbol.lot) {
            return Err(RejectReason::InvalidQty);
        }
        let limit = match o.ord_type {
            OrdType::Market => None,
            OrdType::Limit => match o.price {
                Some(p) if is_positive_multiple(p.0, symbol.tick) => Some(p.0),
                _ => return Err(RejectReason::InvalidPrice),
            },
        };
        let market = o.ord_type == OrdType::Market;
        if (market && o.tif == Tif::Gtc) || (o.post_only && (market || o.tif != Tif::Gtc)) {
            return Err(RejectReason::InvalidTif);
        }
        if o.post_only && self.next_maker(&o.symbol, o.side, limit).is_some() {
            return Err(RejectReason::PostOnly);
        }
        Ok(limit)
    }

    fn new_order(&mut self, o: &NewOrder, out: &mut Vec<EventKind>) {
        let limit = match self.check_new(o) {
            Ok(limit) => limit,
            Err(reason) => {
                return out.push(EventKind::Rejected {
                    account: o.account,
                    order_id: o.order_id,
                    symbol: o.symbol,
                    request: Request::New,
                    reason,
                })
            }
        };
        let number = self.accepted;
        self.accepted += 1;
        out.push(EventKind::Accepted {
            account: o.account,
            order_id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            price: limit.map(Price),
            qty: o.qty,
            number,
        });
        let mut taker = ModelOrder {
            account: o.account,
            order_id: o.order_id,
            symbol: o.symbol,
            side: o.side,
            market: o.ord_type == OrdType::Market,
            price: limit.unwrap_or(0),
            total: o.qty.0,
            filled: 0,
            notional: 0,
            session: o.session,
            number,
            prio: self.take_prio(),
            stp: o.stp,
            post_only: o.post_only,
        };
        if o.tif == Tif::Fok {
            // Would the matching just described fill it completely? Try it on a copy.
            let mut trial = self.clone();
            let mut trial_taker = taker.clone();
            if trial.match_incoming(&mut trial_taker, limit, &mut Vec::new()) != End::Filled {
                return self.cancel_order(taker, CancelReason::Fok, out);
            }
        }
        let end = self.match_incoming(&mut taker, limit, out);
        let rest = match o.tif {
            Tif::Gtc => None,
            Tif::Ioc | Tif::Fok => Some(CancelReason::Ioc),
        };
        self.settle(taker, end, rest, out);
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
                self.cancel_order(order, CancelReason::User, out);
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

    /// An amend's checks in the contract's order: the order's index, new price and new total.
    fn check_amend(&self, a: &AmendOrder) -> Result<(usize, i64, i64), RejectReason> {
        let i = self
            .find(a.account, &a.symbol, &a.order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        let order = &self.book[i];
        if self.disabled.contains(&a.account) {
            return Err(RejectReason::AccountDisabled);
        }
        let symbol = self
            .symbol(&a.symbol)
            .expect("a live order's symbol is listed");
        if symbol.status == TradingStatus::CancelOnly {
            return Err(RejectReason::CancelOnly);
        }
        let price = match a.price {
            None => order.price,
            Some(p) if is_positive_multiple(p.0, symbol.tick) => p.0,
            Some(_) => return Err(RejectReason::InvalidPrice),
        };
        let total = match a.qty {
            None => order.total,
            Some(q) if is_positive_multiple(q.0, symbol.lot) => q.0,
            Some(_) => return Err(RejectReason::InvalidQty),
        };
        if let Some(new_id) = a.new_order_id {
            if new_id == a.order_id || self.id_known(a.account, &new_id) {
                return Err(RejectReason::DuplicateOrderId);
            }
        }
        if order.post_only
            && self
                .next_maker(&a.symbol, order.side, Some(price))
                .is_some()
        {
            return Err(RejectReason::PostOnly);
        }
        Ok((i, price, total))
    }

    fn amend(&mut self, a: &AmendOrder, out: &mut Vec<EventKind>) {
        let (i, price, total) = match self.check_amend(a) {
            Ok(checked) => checked,
            Err(reason) => {
                return out.push(EventKind::Rejected {
                    account: a.account,
                    order_id: a.order_id,
                    symbol: a.symbol,
                    request: Request::Amend,
                    reason,
                })
            }
        };
        let mut order = self.book.remove(i);
        if let Some(new_id) = a.new_order_id {
            // The old id is finished as `replaced`, frozen as it was before this amend.
            self.finish(order.clone(), OrderStatus::Replaced, None, Some(new_id));
            order.order_id = new_id;
        }
        out.push(EventKind::Amended {
            account: a.account,
            order_id: a.order_id,
            symbol: a.symbol,
            price: Price(price),
            total: Qty(total),
            leaves: Qty((total - order.filled).max(0)),
            filled: Qty(order.filled),
            new_order_id: a.new_order_id,
        });
        let keeps_place = price == order.price && total <= order.total;
        order.price = price;
        order.total = total;
        if total <= order.filled {
            self.finish(order, OrderStatus::Filled, None, None);
        } else if keeps_place {
            // Back where it was: `book` has no order, only priorities.
            self.book.push(order);
        } else {
            // Loses its place: re-enters as if new, at the back of its price level.
            order.prio = self.take_prio();
            let end = self.match_incoming(&mut order, Some(price), out);
            self.settle(order, end, None, out);
        }
    }

    fn mass_cancel(&mut self, m: &MassCancel, out: &mut Vec<EventKind>) {
        self.cancel_where(
            |o| {
                o.account == m.account
                    && m.symbol.is_none_or(|s| s == o.symbol)
                    && m.session.is_none_or(|s| s == o.session)
            },
            CancelReason::Mass,
            out,
        );
    }

    fn cancel_after(&mut self, c: &CancelAfter, out: &mut Vec<EventKind>) {
        let deadline = if c.timeout_ns == 0 {
            self.switches.remove(&(c.account, c.session));
            0
        } else {
            let deadline = self.now.saturating_add(c.timeout_ns);
            self.switches.insert((c.account, c.session), deadline);
            deadline
        };
        out.push(EventKind::CancelAfter {
            account: c.account,
            session: c.session,
            deadline: TimestampNs(deadline),
        });
    }

    fn trading_status(&mut self, set: &SetTradingStatus, out: &mut Vec<EventKind>) {
        let mut names: Vec<Symbol> = match set.symbol {
            Some(name) if self.symbol(&name).is_none() => {
                return out.push(EventKind::SymbolRejected {
                    symbol: name,
                    request: Request::TradingStatus,
                    reason: RejectReason::UnknownSymbol,
                })
            }
            Some(name) => vec![name],
            None => self.symbols(),
        };
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for name in names {
            let symbol = self.symbols.iter_mut().find(|s| s.name == name).unwrap();
            symbol.status = set.status;
            out.push(EventKind::TradingStatus {
                symbol: name,
                status: set.status,
            });
        }
    }

    fn kill_switch(&mut self, k: &KillSwitch, out: &mut Vec<EventKind>) {
        out.push(EventKind::KillSwitch {
            account: k.account,
            on: k.on,
        });
        if k.on {
            self.disabled.insert(k.account);
            let account = k.account;
            self.cancel_where(|o| o.account == account, CancelReason::KillSwitch, out);
        } else {
            self.disabled.remove(&k.account);
        }
    }
}

/// An order as `Engine::orders()` shows it.
fn view(
    o: &ModelOrder,
    status: OrderStatus,
    leaves: i64,
    reason: Option<CancelReason>,
    replaced_by: Option<OrderId>,
    finished_at: Option<TimestampNs>,
) -> OrderView {
    OrderView {
        account: o.account,
        order_id: o.order_id,
        symbol: o.symbol,
        side: o.side,
        ord_type: if o.market {
            OrdType::Market
        } else {
            OrdType::Limit
        },
        price: (!o.market).then_some(Price(o.price)),
        total: Qty(o.total),
        filled: Qty(o.filled),
        leaves: Qty(leaves),
        notional: o.notional,
        status,
        reason,
        replaced_by,
        session: o.session,
        number: o.number,
        finished_at,
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
        session: 0,
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
    fn session(self, session: u64) -> Self;
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
    fn session(self, session: u64) -> Self {
        NewOrder { session, ..self }
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
        new_order_id: None,
    })
}

/// An amend on [`BTC`]; `quantity` is the new total.
pub fn amend(account: u64, id: &str, price: Option<&str>, quantity: Option<&str>) -> CommandKind {
    amend_on(BTC, account, id, price, quantity)
}

/// An amend on [`BTC`] that also gives the order the id `new_id` (a replace).
pub fn replace(
    account: u64,
    id: &str,
    new_id: &str,
    price: Option<&str>,
    quantity: Option<&str>,
) -> CommandKind {
    match amend(account, id, price, quantity) {
        CommandKind::Amend(a) => CommandKind::Amend(AmendOrder {
            new_order_id: Some(oid(new_id)),
            ..a
        }),
        _ => unreachable!(),
    }
}

pub fn mass_cancel(account: u64, symbol: Option<&str>) -> CommandKind {
    CommandKind::MassCancel(MassCancel {
        account: AccountId(account),
        symbol: symbol.map(sym),
        session: None,
    })
}

/// A mass cancel of the orders `session` entered (in `symbol`, if given).
pub fn mass_cancel_session(account: u64, symbol: Option<&str>, session: u64) -> CommandKind {
    CommandKind::MassCancel(MassCancel {
        account: AccountId(account),
        symbol: symbol.map(sym),
        session: Some(session),
    })
}

/// Arms (or refreshes) the dead-man's switch of (account, session); 0 disarms it.
pub fn cancel_after(account: u64, session: u64, timeout_ns: u64) -> CommandKind {
    CommandKind::CancelAfter(CancelAfter {
        account: AccountId(account),
        session,
        timeout_ns,
    })
}

/// Only moves the clock.
pub fn clock() -> CommandKind {
    CommandKind::Clock
}

/// Sets the status of `symbol`, or of every listed symbol.
pub fn trading_status(symbol: Option<&str>, status: TradingStatus) -> CommandKind {
    CommandKind::TradingStatus(SetTradingStatus {
        symbol: symbol.map(sym),
        status,
    })
}

pub fn kill_switch(account: u64, on: bool) -> CommandKind {
    CommandKind::KillSwitch(KillSwitch {
        account: AccountId(account),
        on,
    })
}

/// Commands at the given log times.
pub fn timed(steps: &[(u64, CommandKind)]) -> Vec<Command> {
    steps
        .iter()
        .map(|(ts, kind)| Command::new(*ts, *kind))
        .collect()
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

/// A trade as a line, e.g. `trade BTC 100 3 maker 2/r taker 1/t buy leaves 0 2 filled 3 3`.
fn describe_trade(kind: &EventKind) -> String {
    let EventKind::Trade {
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
        maker_filled,
        taker_filled,
        ..
    } = *kind
    else {
        unreachable!("only for trades")
    };
    format!(
        "trade {symbol} {price} {qty} maker {}/{maker_order_id} taker {}/{taker_order_id} {} \
         leaves {maker_leaves} {taker_leaves} filled {maker_filled} {taker_filled}",
        maker_account.0,
        taker_account.0,
        side_word(taker_side)
    )
}

/// An amend as a line, e.g. `amended 1/a as a2 BTC 100 total 8 leaves 4 filled 4`.
fn describe_amended(kind: &EventKind) -> String {
    let EventKind::Amended {
        account,
        order_id,
        symbol,
        price,
        total,
        leaves,
        filled,
        new_order_id,
    } = *kind
    else {
        unreachable!("only for amends")
    };
    let renamed = new_order_id.map_or(String::new(), |id| format!(" as {id}"));
    format!(
        "amended {}/{order_id}{renamed} {symbol} {price} total {total} leaves {leaves} \
         filled {filled}",
        account.0
    )
}

/// One event as a line, e.g. `accepted 1/a BTC buy 100 5`.
pub fn describe_event(kind: &EventKind) -> String {
    match *kind {
        EventKind::Accepted {
            account,
            order_id,
            symbol,
            side,
            price,
            qty,
            ..
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
        EventKind::SymbolRejected {
            symbol,
            request,
            reason,
        } => format!(
            "symbol_rejected {symbol} {} {}",
            request.as_str(),
            reason.as_str()
        ),
        EventKind::AccountRejected {
            account,
            session,
            request,
            reason,
        } => format!(
            "account_rejected {} s{session} {} {}",
            account.0,
            request.as_str(),
            reason.as_str()
        ),
        EventKind::Trade { .. } => describe_trade(kind),
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
        EventKind::Amended { .. } => describe_amended(kind),
        EventKind::CancelAfter {
            account,
            session,
            deadline,
        } => format!(
            "cancel_after {} s{session} deadline {}",
            account.0, deadline.0
        ),
        EventKind::TradingStatus { symbol, status } => {
            format!("trading_status {symbol} {}", status.as_str())
        }
        EventKind::KillSwitch { account, on } => {
            format!(
                "kill_switch {} {}",
                account.0,
                if on { "on" } else { "off" }
            )
        }
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
                "@{ts} new {}/{} {} {} {:?} price {price} qty {} {:?}{} stp {:?} s{}",
                o.account.0,
                o.order_id,
                o.symbol,
                side_word(o.side),
                o.ord_type,
                o.qty,
                o.tif,
                if o.post_only { " post_only" } else { "" },
                o.stp,
                o.session
            )
        }
        CommandKind::Cancel(c) => {
            format!("@{ts} cancel {}/{} {}", c.account.0, c.order_id, c.symbol)
        }
        CommandKind::Amend(a) => {
            let price = a.price.map_or("-".to_string(), |p| p.to_string());
            let qty = a.qty.map_or("-".to_string(), |q| q.to_string());
            let renamed = a
                .new_order_id
                .map_or(String::new(), |id| format!(" as {id}"));
            format!(
                "@{ts} amend {}/{}{renamed} {} price {price} qty {qty}",
                a.account.0, a.order_id, a.symbol
            )
        }
        CommandKind::MassCancel(m) => {
            let symbol = m.symbol.map_or("*".to_string(), |s| s.to_string());
            let session = m.session.map_or("*".to_string(), |s| format!("s{s}"));
            format!("@{ts} mass_cancel {} {symbol} {session}", m.account.0)
        }
        CommandKind::CancelAfter(c) => format!(
            "@{ts} cancel_after {} s{} timeout {}",
            c.account.0, c.session, c.timeout_ns
        ),
        CommandKind::Clock => format!("@{ts} clock"),
        CommandKind::TradingStatus(t) => {
            let symbol = t.symbol.map_or("*".to_string(), |s| s.to_string());
            format!("@{ts} trading_status {symbol} {}", t.status.as_str())
        }
        CommandKind::KillSwitch(k) => format!("@{ts} kill_switch {} {}", k.account.0, k.on),
        CommandKind::Rules(r) => format!("@{ts} rules {}", r.version),
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
                    Qty(o.leaves()),
                ));
            }
        }
    }
    lines
}

/// A notional in 10^-16 units as a plain decimal.
pub fn notional_text(units: u128) -> String {
    const ONE: u128 = 10_000_000_000_000_000;
    let (whole, frac) = (units / ONE, units % ONE);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:016}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// One remembered order as a line, e.g.
/// `order 1/a BTC buy 100 total 10 filled 4 leaves 6 notional 400 s0 partially_filled`.
pub fn describe_order(v: &OrderView) -> String {
    let price = v.price.map_or("market".to_string(), |p| p.to_string());
    let mut line = format!(
        "order {}/{} {} {} {price} total {} filled {} leaves {} notional {} s{} {}",
        v.account.0,
        v.order_id,
        v.symbol,
        v.side.as_str(),
        v.total,
        v.filled,
        v.leaves,
        notional_text(v.notional),
        v.session,
        v.status.as_str()
    );
    if let Some(reason) = v.reason {
        line += &format!(" {}", reason.as_str());
    }
    if let Some(id) = v.replaced_by {
        line += &format!(" by {id}");
    }
    if let Some(at) = v.finished_at {
        line += &format!(" @{}", at.0);
    }
    line
}

/// Every remembered order, one a line, in `ORDERS.json` order.
pub fn describe_orders(orders: &[OrderView]) -> Vec<String> {
    orders.iter().map(describe_order).collect()
}

//! The order table: every order the desk follows, in one map, from submission to the end of
//! the remembered window.
//!
//! One [`OrderEntry`] per `(shard, account, client order id)` holds what every report needs
//! (the running quantities and average price), what the L2 books need (where the order rests),
//! and what a status request or a resent order is answered with (the last state, kept for
//! `finished_max` more finished orders of its shard after the order is done, the same window
//! as the engine's remembered ids). Following an event appends the [`Report`]s it causes and the
//! [`LevelDelta`]s of the levels it changed.
//!
//! **Colliding ids.** An engine refuses an account's id it knows, but only within its shard,
//! and a gateway refuses an id it knows on another shard only for its own submissions: two
//! sites can enter one id of one account on two shards at the same instant, and both orders
//! go through. The shard is part of the key, so the table follows them as two orders: each
//! shard's events only ever touch that shard's entry, and every report and book level is a
//! function of that shard's log alone. A lookup without a shard tries the shard it is given
//! first, then the others in shard order: a status request answers with the order on its
//! symbol's shard if there is one there (else the order on the lowest other shard), a new
//! order is refused with the state of the order on the lowest other shard that uses its id.

use std::collections::{HashMap, VecDeque};

use engine::{
    AccountId, Command, CommandKind, Event, EventKind, NewOrder, OrderId, Price, Qty, RejectReason,
    Request, RestingOrder, Side, Symbol,
};

use super::book::LevelDelta;
use super::report::{engine_reject, CancelReject, ExecType, OrdStatus, Reason, Report, ToSession};

/// An order's key: the shard whose engine holds it, the account, and the client's id. An
/// engine keeps an account's ids unique within its shard only, so the shard is part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    shard: usize,
    account: AccountId,
    id: OrderId,
}

/// New orders submitted here and not yet applied that the table holds; beyond this, one is not
/// held, and only the check against its id being used on another shard misses it.
pub const IN_FLIGHT_MAX: usize = 1 << 20;

/// Whether a new order may go to its shard's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Submit it.
    Submit,
    /// Do not: its id is in use on another shard, and a site never enters one id on two
    /// shards itself. Answer it like a resent order, with the original's state (`None`: the
    /// original is in flight, and its own report answers).
    Known(Option<Report>),
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Submitted from this site, not applied yet (nothing is reported from it).
    PendingNew,
    /// Live, but not on the book yet: accepted, or amended out of its place, in the command
    /// being applied. It rests when the command ends.
    Entering,
    /// On the book, counted in its level.
    Resting,
    /// Over, in this status (filled, cancelled or rejected).
    Done(OrdStatus),
}

/// One order's state.
#[derive(Clone, Copy, Debug)]
pub struct OrderEntry {
    symbol: Symbol,
    side: Side,
    /// The limit price (`None` for a market order).
    price: Option<Price>,
    /// FIX OrderQty: as entered, then the new total (filled + open) after each amend.
    order_qty: i64,
    cum: i64,
    leaves: i64,
    /// Sum of fill price × fill quantity, in fixed-8 × fixed-8 units.
    notional: i128,
    stage: Stage,
    /// The last reported event's sequence number and time.
    last_seq: u64,
    last_ts: u64,
    /// Why it is done (cancelled or rejected); `None` while it is live or once filled.
    reason: Option<Reason>,
}

impl OrderEntry {
    fn is_live(&self) -> bool {
        matches!(self.stage, Stage::Entering | Stage::Resting)
    }

    fn ord_status(&self) -> OrdStatus {
        match (self.stage, self.cum, self.leaves) {
            (Stage::Done(status), _, _) => status,
            (_, 0, _) => OrdStatus::New,
            (_, _, 0) => OrdStatus::Filled,
            _ => OrdStatus::PartiallyFilled,
        }
    }

    fn avg_px(&self) -> Price {
        if self.cum == 0 {
            Price(0)
        } else {
            Price((self.notional / i128::from(self.cum)) as i64)
        }
    }

    /// The order's state as a report of `exec_type` (no fill of its own).
    fn report(&self, key: &Key, exec_type: ExecType) -> Report {
        Report {
            seq: self.last_seq,
            ts: self.last_ts,
            price: self.price,
            order_qty: Qty(self.order_qty),
            cum_qty: Qty(self.cum),
            leaves_qty: Qty(self.leaves),
            avg_px: self.avg_px(),
            why: self.reason,
            ..Report::blank(
                key.account,
                key.id,
                self.symbol,
                self.side,
                exec_type,
                self.ord_status(),
            )
        }
    }

    /// `qty` added to its level, if it rests on the book.
    fn level(&self, qty: i64) -> Option<LevelDelta> {
        match (self.stage, self.price) {
            (Stage::Resting, Some(price)) => Some(LevelDelta {
                symbol: self.symbol,
                side: self.side,
                price,
                qty,
            }),
            _ => None,
        }
    }
}

/// A trade's price and quantity.
#[derive(Clone, Copy)]
struct Fill {
    price: Price,
    qty: Qty,
}

/// An amend as the engine reports it: the order's price, total, open and filled quantities,
/// and the id it goes by from now on if the amend gave it one.
#[derive(Clone, Copy)]
struct Amend {
    price: Price,
    total: Qty,
    leaves: Qty,
    filled: Qty,
    new_order_id: Option<OrderId>,
}

/// What a shard's command being applied has left to finish at its end.
#[derive(Default)]
pub struct InCommand {
    /// Orders entering (or re-entering after an amend) in the command.
    entering: Vec<Key>,
    /// The engine rejected the command's new order: the event's seq and ts, and why. The
    /// report is made at the end of the command, from the command itself.
    rejected: Option<(u64, u64, RejectReason)>,
}

/// Where following an event puts its results.
pub struct Effects<'a> {
    pub sends: &'a mut Vec<(AccountId, ToSession)>,
    pub deltas: &'a mut Vec<LevelDelta>,
}

/// Every order the desk follows, keyed by shard, account and client order id.
pub struct OrderTable {
    orders: HashMap<Key, OrderEntry>,
    /// How many shards there are: a lookup by account and id alone goes over all of them.
    shards: usize,
    /// Per shard, its orders done, oldest first, with the sequence number of the event that
    /// ended each: one is forgotten `finished_max` finished orders of its shard later. Per
    /// shard, so what a shard remembers depends on its log alone, not on how the shards'
    /// batches interleave here.
    finished: Vec<VecDeque<(Key, u64)>>,
    finished_max: usize,
    /// Entries in [`Stage::PendingNew`].
    pending: usize,
}

impl OrderTable {
    /// An empty table for `shards` shards, each remembering `finished_max` done orders.
    pub fn new(shards: usize, finished_max: usize) -> OrderTable {
        assert!(shards > 0, "a desk has a shard");
        OrderTable {
            orders: HashMap::new(),
            shards,
            finished: (0..shards).map(|_| VecDeque::new()).collect(),
            finished_max,
            pending: 0,
        }
    }

    /// Orders live on a book or being matched.
    pub fn live(&self) -> usize {
        self.orders.values().filter(|e| e.is_live()).count()
    }

    /// The keys the account's `id` may have: on `shard` first, then on every other shard in
    /// order (none with one shard).
    fn keys(&self, shard: usize, account: AccountId, id: OrderId) -> impl Iterator<Item = Key> {
        debug_assert!(shard < self.shards);
        let others = (0..self.shards).filter(move |&other| other != shard);
        std::iter::once(shard)
            .chain(others)
            .map(move |shard| Key { shard, account, id })
    }

    /// The last known state of an order (live, or done within the window) as a status answer:
    /// the one on `shard` if it is known there, else the one on the lowest other shard.
    pub fn status(&self, shard: usize, account: AccountId, cl_ord_id: &OrderId) -> Option<Report> {
        self.keys(shard, account, *cl_ord_id).find_map(|key| {
            let entry = self.orders.get(&key)?;
            (entry.stage != Stage::PendingNew).then(|| entry.report(&key, ExecType::OrderStatus))
        })
    }

    /// Follows a resting order of shard `shard`'s recovered engine (its events up to `seq`
    /// applied). The engine keeps only the open quantity, so the order's earlier fills are not
    /// known: it starts from `order_qty = leaves`, `cum = 0`. Returns its level's share.
    pub fn seed(
        &mut self,
        shard: usize,
        seq: u64,
        symbol: Symbol,
        order: &RestingOrder,
    ) -> LevelDelta {
        let entry = OrderEntry {
            symbol,
            side: order.side,
            price: Some(order.price),
            order_qty: order.qty.0,
            cum: 0,
            leaves: order.qty.0,
            notional: 0,
            stage: Stage::Resting,
            last_seq: seq,
            last_ts: 0,
            reason: None,
        };
        let key = Key {
            shard,
            account: order.account,
            id: order.order_id,
        };
        self.insert(key, entry);
        entry
            .level(order.qty.0)
            .expect("a resting order has a level")
    }

    /// A new order is about to be submitted to shard `shard`: see [`Admission`]. An id its own
    /// shard's engine will refuse as a duplicate (an order accepted there, or one in flight
    /// from here) is sent, and that engine answers it. Otherwise an id known on another shard
    /// is not sent (its own shard may know it only as rejected, which its engine forgets); one
    /// new here is held as [`Stage::PendingNew`].
    pub fn submitted(&mut self, shard: usize, new: &NewOrder) -> Admission {
        let mut keys = self.keys(shard, new.account, new.order_id);
        let key = keys.next().expect("the shard's own key comes first");
        let own = self.orders.get(&key).map(|entry| entry.stage);
        if own.is_some_and(|stage| stage != Stage::Done(OrdStatus::Rejected)) {
            return Admission::Submit;
        }
        let elsewhere = keys.find_map(|other| Some((other, self.orders.get(&other)?)));
        match elsewhere {
            Some((_, entry)) if entry.stage == Stage::PendingNew => Admission::Known(None),
            Some((other, entry)) => {
                Admission::Known(Some(entry.report(&other, ExecType::OrderStatus)))
            }
            None if own.is_some() => Admission::Submit,
            None if self.pending < IN_FLIGHT_MAX => {
                let entry = OrderEntry {
                    symbol: new.symbol,
                    side: new.side,
                    price: new.price,
                    order_qty: new.qty.0,
                    cum: 0,
                    leaves: 0,
                    notional: 0,
                    stage: Stage::PendingNew,
                    last_seq: 0,
                    last_ts: 0,
                    reason: None,
                };
                self.insert(key, entry);
                Admission::Submit
            }
            None => Admission::Submit,
        }
    }

    /// The log refused a new order [`OrderTable::submitted`] held: it is not pending any more.
    /// It is held on its symbol's shard: the one, of all shards, whose pending entry of its id
    /// has its symbol (a submission of the same id to another symbol stays in flight).
    pub fn refused(&mut self, new: &NewOrder) {
        let held = self.keys(0, new.account, new.order_id).find(|key| {
            self.orders
                .get(key)
                .is_some_and(|e| e.stage == Stage::PendingNew && e.symbol == new.symbol)
        });
        if let Some(key) = held {
            self.forget_pending(&key);
        }
    }

    fn forget_pending(&mut self, key: &Key) {
        if self.orders.get(key).map(|e| e.stage) == Some(Stage::PendingNew) {
            self.orders.remove(key);
            self.pending -= 1;
        }
    }

    fn insert(&mut self, key: Key, entry: OrderEntry) {
        let old = self.orders.insert(key, entry);
        if entry.stage == Stage::PendingNew {
            self.pending += 1;
        }
        if old.is_some_and(|old| old.stage == Stage::PendingNew) {
            self.pending -= 1;
        }
    }

    /// Follows one event of shard `shard`'s command being applied.
    pub fn on_event(
        &mut self,
        shard: usize,
        event: &Event,
        command: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        let at = (event.seq, event.ts.0);
        let key = |account, id| Key { shard, account, id };
        match event.kind {
            EventKind::Accepted { .. } => self.accepted(shard, event, command, out),
            EventKind::Rejected { .. } => self.engine_rejected(shard, event, command, out),
            EventKind::Trade {
                price,
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
            } => {
                let fill = Fill { price, qty };
                let maker = key(maker_account, maker_order_id);
                self.fill(maker, at, fill, (maker_leaves, maker_filled), out);
                let taker = key(taker_account, taker_order_id);
                self.fill(taker, at, fill, (taker_leaves, taker_filled), out);
            }
            EventKind::Cancelled {
                account,
                order_id,
                reason,
                ..
            } => self.cancelled(key(account, order_id), at, Reason::Cancelled(reason), out),
            EventKind::Amended {
                account,
                order_id,
                price,
                total,
                leaves,
                filled,
                new_order_id,
                ..
            } => {
                let amend = Amend {
                    price,
                    total,
                    leaves,
                    filled,
                    new_order_id,
                };
                self.amended(key(account, order_id), at, amend, command, out)
            }
            // Operator controls and switches report through the cancels they cause.
            EventKind::SymbolRejected { .. }
            | EventKind::AccountRejected { .. }
            | EventKind::CancelAfter { .. }
            | EventKind::TradingStatus { .. }
            | EventKind::KillSwitch { .. } => {}
        }
    }

    /// A new order was accepted in the current command: it is live, and rests if it is still open when
    /// the command ends.
    fn accepted(
        &mut self,
        shard: usize,
        event: &Event,
        command: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        let EventKind::Accepted {
            account,
            order_id,
            symbol,
            side,
            price,
            qty,
        } = event.kind
        else {
            return;
        };
        let key = Key {
            shard,
            account,
            id: order_id,
        };
        let entry = OrderEntry {
            symbol,
            side,
            price,
            order_qty: qty.0,
            cum: 0,
            leaves: qty.0,
            notional: 0,
            stage: Stage::Entering,
            last_seq: event.seq,
            last_ts: event.ts.0,
            reason: None,
        };
        self.insert(key, entry);
        command.entering.push(key);
        let report = entry.report(&key, ExecType::New);
        out.sends.push((account, ToSession::Report(report)));
    }

    /// The engine refused a request: a cancel or amend is answered at once; a new order is
    /// answered with its original's state if its id was already used, else at the end of the
    /// command, from the command.
    fn engine_rejected(
        &self,
        shard: usize,
        event: &Event,
        command: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        let EventKind::Rejected {
            account,
            order_id,
            symbol,
            request,
            reason,
        } = event.kind
        else {
            return;
        };
        let (seq, ts) = (event.seq, event.ts.0);
        if request != Request::New {
            let reject = CancelReject {
                seq,
                account,
                cl_ord_id: order_id,
                symbol,
                request,
                reason,
            };
            out.sends.push((account, ToSession::CancelReject(reject)));
        } else if let Some(message) = self.resent(shard, account, order_id, seq, ts, reason) {
            out.sends.push((account, message));
        } else {
            command.rejected = Some((seq, ts, reason));
        }
    }

    /// A resent order (its id already used on shard `shard`): the original's state, if it is
    /// known.
    fn resent(
        &self,
        shard: usize,
        account: AccountId,
        order_id: OrderId,
        seq: u64,
        ts: u64,
        reason: RejectReason,
    ) -> Option<ToSession> {
        if reason != RejectReason::DuplicateOrderId {
            return None;
        }
        let key = Key {
            shard,
            account,
            id: order_id,
        };
        let original = self.orders.get(&key)?;
        (original.stage != Stage::PendingNew).then(|| {
            ToSession::Report(Report {
                seq,
                ts,
                ..original.report(&key, ExecType::OrderStatus)
            })
        })
    }

    /// A trade `fill` of the order `key`, leaving it `leaves` open with `filled` in all (the
    /// engine's figures, so a desk seeded mid-life still reports the order's whole CumQty).
    fn fill(
        &mut self,
        key: Key,
        (seq, ts): (u64, u64),
        Fill { price, qty }: Fill,
        (leaves, filled): (Qty, Qty),
        out: &mut Effects<'_>,
    ) {
        let Some(entry) = self.orders.get_mut(&key).filter(|e| e.is_live()) else {
            return;
        };
        out.deltas.extend(entry.level(-qty.0));
        entry.cum = filled.0;
        entry.leaves = leaves.0;
        entry.notional += i128::from(price.0) * i128::from(qty.0);
        (entry.last_seq, entry.last_ts) = (seq, ts);
        if leaves.0 == 0 {
            entry.stage = Stage::Done(OrdStatus::Filled);
        }
        let report = Report {
            last_px: price,
            last_qty: qty,
            ..entry.report(&key, ExecType::Trade)
        };
        out.sends.push((key.account, ToSession::Report(report)));
        if leaves.0 == 0 {
            self.finish(key);
        }
    }

    /// The order `key` left the book (or will never rest) for `reason`.
    fn cancelled(
        &mut self,
        key: Key,
        (seq, ts): (u64, u64),
        reason: Reason,
        out: &mut Effects<'_>,
    ) {
        let Some(entry) = self.orders.get_mut(&key).filter(|e| e.is_live()) else {
            return;
        };
        out.deltas.extend(entry.level(-entry.leaves));
        entry.leaves = 0;
        entry.stage = Stage::Done(OrdStatus::Canceled);
        entry.reason = Some(reason);
        (entry.last_seq, entry.last_ts) = (seq, ts);
        let report = entry.report(&key, ExecType::Canceled);
        out.sends.push((key.account, ToSession::Report(report)));
        self.finish(key);
    }

    /// The order `key` was amended (see [`Amend`]). As in the engine, it keeps its place at
    /// the same price with a total not raised, is filled when the total is at or below what
    /// filled, and otherwise leaves its level and re-enters as if new. With a new id it goes
    /// by that id from now on.
    fn amended(
        &mut self,
        key: Key,
        (seq, ts): (u64, u64),
        amend: Amend,
        command: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        let Some(mut entry) = self.orders.get(&key).copied().filter(|e| e.is_live()) else {
            return;
        };
        let open = amend.leaves.0;
        let keeps_place = entry.stage == Stage::Resting
            && entry.price == Some(amend.price)
            && amend.total.0 <= entry.order_qty
            && open > 0;
        if keeps_place {
            out.deltas.extend(entry.level(open - entry.leaves));
        } else {
            out.deltas.extend(entry.level(-entry.leaves));
            entry.stage = if open > 0 {
                Stage::Entering
            } else {
                Stage::Done(OrdStatus::Filled)
            };
        }
        entry.price = Some(amend.price);
        entry.leaves = open;
        entry.cum = amend.filled.0;
        // A total below what filled finishes the order; FIX's OrderQty never shows less than
        // CumQty.
        entry.order_qty = amend.total.0.max(amend.filled.0);
        (entry.last_seq, entry.last_ts) = (seq, ts);
        let key = match amend.new_order_id {
            Some(id) => {
                self.orders.remove(&key);
                Key { id, ..key }
            }
            None => key,
        };
        self.orders.insert(key, entry);
        if entry.stage == Stage::Entering {
            command.entering.push(key);
        }
        let report = entry.report(&key, ExecType::Replaced);
        out.sends.push((key.account, ToSession::Report(report)));
        if open == 0 {
            self.finish(key);
        }
    }

    /// Ends shard `shard`'s `command`: reports its rejected new order (side, price and
    /// quantity from the command, so it is right whichever site took the order) and rests the
    /// orders that entered and are still open.
    pub fn end_command(
        &mut self,
        shard: usize,
        command: &Command,
        state: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        if let Some((seq, ts, reason)) = state.rejected.take() {
            let CommandKind::New(new) = command.kind else {
                unreachable!("the engine rejects a new order only for a New command");
            };
            self.rejected(shard, engine_reject(seq, ts, &new, reason), out);
        }
        for key in state.entering.drain(..) {
            let Some(entry) = self.orders.get_mut(&key) else {
                continue;
            };
            match entry.price {
                Some(_) if entry.stage == Stage::Entering && entry.leaves > 0 => {
                    entry.stage = Stage::Resting;
                    out.deltas.extend(entry.level(entry.leaves));
                }
                // Filled or cancelled in its command; a market order never rests, its events
                // always finish it.
                _ => {}
            }
        }
    }

    /// Records and reports the engine's reject of a new order.
    fn rejected(&mut self, shard: usize, report: Report, out: &mut Effects<'_>) {
        let key = Key {
            shard,
            account: report.account,
            id: report.cl_ord_id,
        };
        out.sends.push((key.account, ToSession::Report(report)));
        if report.why == Some(Reason::Rejected(RejectReason::DuplicateOrderId)) {
            // Its original is not known here: nothing to record.
            self.forget_pending(&key);
            return;
        }
        if self.orders.get(&key).is_some_and(|e| e.is_live()) {
            // The id is live on this shard (the engine refused the symbol before the id):
            // that order is followed.
            return;
        }
        let entry = OrderEntry {
            symbol: report.symbol,
            side: report.side,
            price: report.price,
            order_qty: report.order_qty.0,
            cum: 0,
            leaves: 0,
            notional: 0,
            stage: Stage::Done(OrdStatus::Rejected),
            last_seq: report.seq,
            last_ts: report.ts,
            reason: report.why,
        };
        self.insert(key, entry);
        self.finish(key);
    }

    /// The order `key` is done: it is remembered for `finished_max` more finished orders of
    /// its shard.
    fn finish(&mut self, key: Key) {
        let Some(ended) = self.orders.get(&key).map(|e| e.last_seq) else {
            return;
        };
        let finished = &mut self.finished[key.shard];
        finished.push_back((key, ended));
        while finished.len() > self.finished_max {
            let Some((old, ended)) = finished.pop_front() else {
                break;
            };
            // Only forget the order that ended then: its id may since have been used again (a
            // rejected id), and that order is remembered for its own window.
            if self
                .orders
                .get(&old)
                .is_some_and(|e| matches!(e.stage, Stage::Done(_)) && e.last_seq == ended)
            {
                self.orders.remove(&old);
            }
        }
    }
}

//! The order table: every order the desk follows, from submission to the end of its dedup
//! window: a mirror of what the engines remember, so that what a member is told about an order
//! is a function of the log alone.
//!
//! One [`OrderEntry`] per `(shard, account, client order id)` holds what every report needs
//! (the order's total, filled and open quantities, its notional for the average price), what
//! the L2 books need (where the order rests), and what a status request, a mass status or a
//! resent request is answered with. Following an event appends the [`Report`]s it causes and
//! the [`LevelDelta`]s of the levels it changed.
//!
//! **The same answer at every site.** The table holds exactly the orders the shard's engine
//! remembers: live ones, and finished ones (filled, cancelled, replaced) until the engine's
//! clock (the largest `ts` of the shard's log so far) reaches `finished_at + dedup_window_ns`,
//! the engine's own rule. At start it is seeded from the engine's memory ([`Engine::orders`]),
//! with each order's whole filled quantity and notional, so a restarted site answers as one that
//! never stopped. Status answers carry no event number and the shard's engine time as their
//! time: at one log position, every site answers every question byte for byte the same.
//! A new order the engine rejected is not remembered (the engine forgets it too; its reject
//! was the answer).
//!
//! **Replace chains.** An amend with a new id (FIX's ClOrdID of a replace) moves the order to
//! the new id; the old id is kept, frozen, as `replaced` and naming its successor. A status
//! request or a resend naming any id of the chain is answered with the order's current state.
//!
//! **Colliding ids.** An engine refuses an account's id it knows, but only within its shard,
//! and a gateway refuses an id it knows on another shard only for its own submissions: two
//! sites can enter one id of one account on two shards at the same instant, and both orders
//! go through. The shard is part of the key, so the table follows them as two orders. A lookup
//! without a shard tries the shard it is given first, then the others in shard order.

use std::collections::{HashMap, VecDeque};

use engine::{
    AccountId, Command, CommandKind, Engine, Event, EventKind, NewOrder, OrderId, OrderStatus,
    OrderView, Price, Qty, RejectReason, Request, Side, Symbol,
};

use super::book::LevelDelta;
use super::report::{
    engine_reject, CancelReject, ExecType, OrdStatus, Reason, Report, ToSession, VenueOrderId,
};

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Submit it.
    Submit,
    /// Do not: its id is in use on another shard, and a site never enters one id on two
    /// shards itself. Answer it like a resent order, with the original's state (`None`: the
    /// original is in flight, and its own report answers).
    Known(Option<Box<Report>>),
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
    /// Finished (filled, cancelled, or replaced by a new id), remembered for the window.
    Done(OrdStatus),
}

/// One order's state.
#[derive(Clone, Copy, Debug)]
pub struct OrderEntry {
    symbol: Symbol,
    side: Side,
    /// The limit price (`None` for a market order).
    price: Option<Price>,
    /// FIX OrderQty: the order's total, never shown below what filled.
    order_qty: i64,
    cum: i64,
    leaves: i64,
    /// Sum of fill price × fill quantity, in fixed-8 × fixed-8 units.
    notional: i128,
    stage: Stage,
    /// Why it was cancelled.
    reason: Option<Reason>,
    /// The id that replaced it (stage `Done(Replaced)`).
    replaced_by: Option<OrderId>,
    /// The engine time it finished at (0 until then).
    finished_at: u64,
    /// Its number on its shard (0 while pending: never reported then).
    number: u64,
}

impl OrderEntry {
    fn is_live(&self) -> bool {
        matches!(self.stage, Stage::Entering | Stage::Resting)
    }

    fn ord_status(&self) -> OrdStatus {
        match (self.stage, self.cum) {
            (Stage::Done(status), _) => status,
            (_, 0) => OrdStatus::New,
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

    /// The order's state as a report of `exec_type` (no fill of its own, no event).
    fn report(&self, key: &Key, exec_type: ExecType) -> Report {
        Report {
            price: self.price,
            order_qty: Qty(self.order_qty),
            cum_qty: Qty(self.cum),
            leaves_qty: Qty(self.leaves),
            avg_px: self.avg_px(),
            why: self.reason,
            order_id: Some(VenueOrderId {
                shard: key.shard,
                number: self.number,
            }),
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

    /// An order of the engine's memory, as the table follows it.
    fn from_view(order: &OrderView) -> OrderEntry {
        let stage = match order.status {
            OrderStatus::New | OrderStatus::PartiallyFilled => Stage::Resting,
            OrderStatus::Filled => Stage::Done(OrdStatus::Filled),
            OrderStatus::Cancelled => Stage::Done(OrdStatus::Canceled),
            OrderStatus::Replaced => Stage::Done(OrdStatus::Replaced),
        };
        OrderEntry {
            symbol: order.symbol,
            side: order.side,
            price: order.price,
            order_qty: order.total.0.max(order.filled.0),
            cum: order.filled.0,
            leaves: order.leaves.0,
            notional: i128::try_from(order.notional).unwrap_or(i128::MAX),
            stage,
            reason: order.reason.map(Reason::Cancelled),
            replaced_by: order.replaced_by,
            finished_at: order.finished_at.map_or(0, |ts| ts.0),
            number: order.number,
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

/// One shard's memory of finished orders and its engine's clock.
#[derive(Default)]
struct ShardMemory {
    /// Finished orders, in the order they finished (which is the order they leave the window),
    /// with the time each finished.
    finished: VecDeque<(Key, u64)>,
    /// The engine's clock: the largest `ts` of the shard's log so far.
    clock: u64,
}

/// Every order the desk follows, by account, then shard and client order id.
pub struct OrderTable {
    orders: HashMap<AccountId, HashMap<(usize, OrderId), OrderEntry>>,
    /// How many shards there are: a lookup by account and id alone goes over all of them.
    shards: usize,
    memory: Vec<ShardMemory>,
    /// The engines' `dedup_window_ns`.
    window_ns: u64,
    /// Entries in [`Stage::PendingNew`].
    pending: usize,
}

impl OrderTable {
    /// An empty table for `shards` shards whose engines remember finished orders for
    /// `window_ns` of log time.
    pub fn new(shards: usize, window_ns: u64) -> OrderTable {
        assert!(shards > 0, "a desk has a shard");
        OrderTable {
            orders: HashMap::new(),
            shards,
            memory: (0..shards).map(|_| ShardMemory::default()).collect(),
            window_ns,
            pending: 0,
        }
    }

    /// Orders live on a book or being matched.
    pub fn live(&self) -> usize {
        self.orders
            .values()
            .flat_map(HashMap::values)
            .filter(|e| e.is_live())
            .count()
    }

    fn get(&self, key: &Key) -> Option<&OrderEntry> {
        self.orders.get(&key.account)?.get(&(key.shard, key.id))
    }

    fn get_mut(&mut self, key: &Key) -> Option<&mut OrderEntry> {
        self.orders
            .get_mut(&key.account)?
            .get_mut(&(key.shard, key.id))
    }

    fn remove(&mut self, key: &Key) -> Option<OrderEntry> {
        let account = self.orders.get_mut(&key.account)?;
        let removed = account.remove(&(key.shard, key.id));
        if account.is_empty() {
            self.orders.remove(&key.account);
        }
        removed
    }

    fn insert(&mut self, key: Key, entry: OrderEntry) {
        let old = self
            .orders
            .entry(key.account)
            .or_default()
            .insert((key.shard, key.id), entry);
        if entry.stage == Stage::PendingNew {
            self.pending += 1;
        }
        if old.is_some_and(|old| old.stage == Stage::PendingNew) {
            self.pending -= 1;
        }
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

    /// The order `key` names now: itself, or the end of its replace chain.
    fn current(&self, key: Key) -> Option<(Key, &OrderEntry)> {
        let mut key = key;
        // A chain never loops (an id stays refused while its replaced entry is remembered);
        // the bound only guards against a table that disagrees with its engine.
        for _ in 0..=self.memory[key.shard].finished.len() {
            let entry = self.get(&key)?;
            match entry.replaced_by {
                Some(next) => key.id = next,
                None => return Some((key, entry)),
            }
        }
        None
    }

    /// The order's state as a status answer: no event, the shard's engine time.
    fn status_of(&self, key: &Key, entry: &OrderEntry) -> Report {
        Report {
            ts: self.memory[key.shard].clock,
            ..entry.report(key, ExecType::OrderStatus)
        }
    }

    /// The current state of the order an id of the account names (live, or finished inside
    /// the window; any id of a replace chain), as a status answer: the one on `shard` if it is
    /// known there, else the one on the lowest other shard.
    pub fn status(&self, shard: usize, account: AccountId, cl_ord_id: &OrderId) -> Option<Report> {
        self.keys(shard, account, *cl_ord_id).find_map(|key| {
            let (key, entry) = self.current(key)?;
            (entry.stage != Stage::PendingNew).then(|| self.status_of(&key, entry))
        })
    }

    /// Every order of the account the engines remember (live, and finished inside the window;
    /// a replace chain once, by its current id), by client order id then shard: the answer to
    /// a mass status request.
    pub fn mass_status(&self, account: AccountId) -> Vec<Report> {
        let Some(orders) = self.orders.get(&account) else {
            return Vec::new();
        };
        let mut keys: Vec<&(usize, OrderId)> = orders
            .iter()
            .filter(|(_, e)| e.stage != Stage::PendingNew && e.replaced_by.is_none())
            .map(|(key, _)| key)
            .collect();
        keys.sort_unstable_by_key(|&&(shard, id)| (id, shard));
        keys.into_iter()
            .map(|&(shard, id)| {
                let key = Key { shard, account, id };
                self.status_of(&key, &orders[&(shard, id)])
            })
            .collect()
    }

    /// Starts shard `shard` from its recovered `engine`: every order it remembers, and its
    /// clock. Done at start, before the shard's first command.
    pub fn seed(&mut self, shard: usize, engine: &Engine) {
        let mut finished = Vec::new();
        for order in engine.orders() {
            let key = Key {
                shard,
                account: order.account,
                id: order.order_id,
            };
            let entry = OrderEntry::from_view(&order);
            if let Some(at) = order.finished_at {
                finished.push((key, at.0));
            }
            self.insert(key, entry);
        }
        finished.sort_by_key(|&(_, at)| at);
        self.memory[shard] = ShardMemory {
            finished: finished.into(),
            clock: engine.stats().clock.0,
        };
    }

    /// A new order is about to be submitted to shard `shard`: see [`Admission`]. An id its own
    /// shard's engine knows (an order live or finished there, or one in flight from here) is
    /// sent, and that engine answers it. Otherwise an id known on another shard is not sent;
    /// one new here is held as [`Stage::PendingNew`].
    pub fn submitted(&mut self, shard: usize, new: &NewOrder) -> Admission {
        let mut keys = self.keys(shard, new.account, new.order_id);
        let key = keys.next().expect("the shard's own key comes first");
        if self.get(&key).is_some() {
            return Admission::Submit;
        }
        let elsewhere = keys.find_map(|other| Some((other, self.get(&other)?)));
        match elsewhere {
            Some((_, entry)) if entry.stage == Stage::PendingNew => Admission::Known(None),
            Some((other, _)) => {
                let state = self.status(other.shard, other.account, &other.id);
                Admission::Known(state.map(Box::new))
            }
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
                    reason: None,
                    replaced_by: None,
                    finished_at: 0,
                    number: 0,
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
            self.get(key)
                .is_some_and(|e| e.stage == Stage::PendingNew && e.symbol == new.symbol)
        });
        if let Some(key) = held {
            self.forget_pending(&key);
        }
    }

    fn forget_pending(&mut self, key: &Key) {
        if self.get(key).map(|e| e.stage) == Some(Stage::PendingNew) {
            self.remove(key);
            self.pending -= 1;
        }
    }

    /// Shard `shard`'s engine time moved to `ts` (if later): the finished orders whose window
    /// passed are forgotten, as the engine forgets them before it applies a command.
    fn tick(&mut self, shard: usize, ts: u64) {
        let memory = &mut self.memory[shard];
        memory.clock = memory.clock.max(ts);
        let (clock, window) = (memory.clock, self.window_ns);
        while let Some(&(key, at)) = self.memory[shard].finished.front() {
            if at.saturating_add(window) > clock {
                break;
            }
            self.memory[shard].finished.pop_front();
            // Only the order that finished then: its id may have been used again since.
            let same = self
                .get(&key)
                .is_some_and(|e| matches!(e.stage, Stage::Done(_)) && e.finished_at == at);
            if same {
                self.remove(&key);
            }
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
        self.tick(shard, event.ts.0);
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
            EventKind::CancelAfter {
                account,
                session,
                deadline,
            } => {
                let set = ToSession::SwitchSet {
                    session,
                    deadline: deadline.0,
                };
                out.sends.push((account, set));
            }
            // Operator controls report through the cancels they cause.
            EventKind::SymbolRejected { .. }
            | EventKind::AccountRejected { .. }
            | EventKind::TradingStatus { .. }
            | EventKind::KillSwitch { .. } => {}
        }
    }

    /// A new order was accepted in the current command: it is live, and rests if it is still
    /// open when the command ends.
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
            number,
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
            reason: None,
            replaced_by: None,
            finished_at: 0,
            number,
        };
        self.insert(key, entry);
        command.entering.push(key);
        let report = Report {
            seq: event.seq,
            ts: event.ts.0,
            ..entry.report(&key, ExecType::New)
        };
        out.sends.push((account, ToSession::Report(report)));
    }

    /// The engine refused a request. A cancel or amend is answered at once, with the current
    /// state of the order its id names if the table knows it (a resent cancel or replace finds
    /// its order finished, or moved to its new id). A new order is answered with its original's
    /// state if its id was already used, else at the end of the command, from the command.
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
            let state = self.status(shard, account, &order_id);
            let reject = CancelReject {
                seq,
                account,
                cl_ord_id: order_id,
                symbol,
                request,
                reason,
                state,
            };
            out.sends.push((account, ToSession::CancelReject(reject)));
        } else if let Some(message) = self.resent(shard, account, order_id, (seq, ts), reason) {
            out.sends.push((account, message));
        } else {
            command.rejected = Some((seq, ts, reason));
        }
    }

    /// A resent order (its id already used on shard `shard`): the current state of the order
    /// it names, if it is known.
    fn resent(
        &self,
        shard: usize,
        account: AccountId,
        order_id: OrderId,
        (seq, ts): (u64, u64),
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
        let (current, entry) = self.current(key)?;
        (entry.stage != Stage::PendingNew).then(|| {
            ToSession::Report(Report {
                seq,
                ts,
                ..entry.report(&current, ExecType::OrderStatus)
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
        let Some(entry) = self.get_mut(&key).filter(|e| e.is_live()) else {
            return;
        };
        out.deltas.extend(entry.level(-qty.0));
        entry.cum = filled.0;
        entry.leaves = leaves.0;
        entry.notional += i128::from(price.0) * i128::from(qty.0);
        if leaves.0 == 0 {
            entry.stage = Stage::Done(OrdStatus::Filled);
        }
        let report = Report {
            seq,
            ts,
            last_px: price,
            last_qty: qty,
            ..entry.report(&key, ExecType::Trade)
        };
        out.sends.push((key.account, ToSession::Report(report)));
        if leaves.0 == 0 {
            self.finish(key, ts);
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
        let Some(entry) = self.get_mut(&key).filter(|e| e.is_live()) else {
            return;
        };
        out.deltas.extend(entry.level(-entry.leaves));
        entry.leaves = 0;
        entry.stage = Stage::Done(OrdStatus::Canceled);
        entry.reason = Some(reason);
        let report = Report {
            seq,
            ts,
            ..entry.report(&key, ExecType::Canceled)
        };
        out.sends.push((key.account, ToSession::Report(report)));
        self.finish(key, ts);
    }

    /// The order `key` was amended (see [`Amend`]). As in the engine, it keeps its place at
    /// the same price with a total not raised, is filled when the total is at or below what
    /// filled, and otherwise leaves its level and re-enters as if new. With a new id it goes
    /// by that id from now on, and the old id is remembered as replaced, as it was.
    fn amended(
        &mut self,
        key: Key,
        (seq, ts): (u64, u64),
        amend: Amend,
        command: &mut InCommand,
        out: &mut Effects<'_>,
    ) {
        let Some(mut entry) = self.get(&key).copied().filter(|e| e.is_live()) else {
            return;
        };
        let (key, orig) = match amend.new_order_id {
            Some(id) => (self.replace(key, id, ts), Some(key.id)),
            None => (key, None),
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
        self.insert(key, entry);
        if entry.stage == Stage::Entering {
            command.entering.push(key);
        }
        let report = Report {
            seq,
            ts,
            orig_cl_ord_id: orig,
            ..entry.report(&key, ExecType::Replaced)
        };
        out.sends.push((key.account, ToSession::Report(report)));
        if open == 0 {
            self.finish(key, ts);
        }
    }

    /// The live order `key` gives up its id for `new_id` at `ts`: the old id is finished as
    /// replaced, frozen as it is now. Returns the order's new key.
    fn replace(&mut self, key: Key, new_id: OrderId, ts: u64) -> Key {
        if let Some(old) = self.get_mut(&key) {
            old.stage = Stage::Done(OrdStatus::Replaced);
            old.replaced_by = Some(new_id);
        }
        self.finish(key, ts);
        Key { id: new_id, ..key }
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
        self.tick(shard, command.ts.0);
        if let Some((seq, ts, reason)) = state.rejected.take() {
            let CommandKind::New(new) = command.kind else {
                unreachable!("the engine rejects a new order only for a New command");
            };
            let report = engine_reject(seq, ts, &new, reason);
            out.sends.push((new.account, ToSession::Report(report)));
            self.rejected(shard, &new);
        }
        for key in state.entering.drain(..) {
            let Some(entry) = self.get_mut(&key) else {
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

    /// The engine rejected `new`: it is not in flight any more, and, as in the engine, not
    /// remembered (an order live under its id on this shard is another order, and stays).
    fn rejected(&mut self, shard: usize, new: &NewOrder) {
        let key = Key {
            shard,
            account: new.account,
            id: new.order_id,
        };
        self.forget_pending(&key);
    }

    /// The order `key` finished at engine time `at`: it is remembered until the shard's clock
    /// reaches `at + window` (not at all with a window of 0, as in the engine).
    fn finish(&mut self, key: Key, at: u64) {
        if self.window_ns == 0 {
            self.remove(&key);
            return;
        }
        let Some(entry) = self.get_mut(&key) else {
            return;
        };
        entry.finished_at = at;
        self.memory[key.shard].finished.push_back((key, at));
    }
}

//! The desk: everything a site's gateway knows about orders and books, sans-IO.
//!
//! [`Desk::apply`] follows a batch of one shard's matcher output (its events and end-of-command
//! markers, [`Emitted`]) and returns what to do in an [`Outbox`]: the messages for sessions,
//! the market data to publish, and counts. It reads no clock, takes no lock, starts no thread
//! and does no I/O, so two sites that apply the same log produce the same outboxes; the
//! [`crate::hub::Hub`] is the runtime that locks it, publishes and delivers.
//!
//! - `report`: the messages ([`Report`], [`CancelReject`], [`ToSession`]).
//! - `orders`: the one order table, every order from submission to the end of its dedup
//!   window, a mirror of the engines' memory: quantities for reports, the state for status
//!   and mass status requests and resent orders, and where each order rests for the books.
//! - `book`: the L2 books, fed by the table's level changes, updated once per command.
//! - `mass`: mass cancels of every symbol, split over shards and answered once.
//! - `controls`: the operator controls (trading status, kill switches) as the log set them.

mod book;
mod controls;
mod mass;
mod orders;
mod report;

use engine::runner::Emitted;
use engine::{
    AccountId, CancelReason, Command, CommandKind, Engine, Event, EventKind, NewOrder, OrderId,
    Side, Symbol,
};

pub use book::{BookSnapshot, Level, LevelDelta, MdMessage};
pub use controls::{Controls, SymbolStatus};
pub use orders::{Admission, IN_FLIGHT_MAX};
pub use report::{
    gateway_reject, CancelReject, ExecType, GatewayReason, OrdStatus, Reason, Report, SubmitError,
    ToSession, VenueOrderId,
};

use crate::metrics::REJECT_REASONS;
use book::Books;
use controls::ShardControls;
use mass::MassCancels;
use orders::{Effects, InCommand, OrderTable};

/// How much younger than the engines' dedup window a resent order's first sending must be for
/// the venue to take it: room for the time between the member's sending and the log's
/// stamp, and for log time running ahead of the member's clock.
pub const RESEND_MARGIN_NS: u64 = 5_000_000_000;

/// Whether a new order first sent `age_ms` ago (the member's clock) may be older than the
/// engines still remember when it lands in the log, `horizon_ns` being their dedup window
/// less the longest the log may take to land it: its id may have executed and been
/// forgotten, so taken again it could execute twice. The binary protocol's resend age and
/// FIX's SendingTime less OrigSendingTime are both judged here.
pub fn resend_too_old(age_ms: u64, horizon_ns: u64) -> bool {
    age_ms
        .saturating_mul(1_000_000)
        .saturating_add(RESEND_MARGIN_NS)
        >= horizon_ns
}

/// What a site does with a new order resent under its id (binary's resend flag, FIX's
/// PossDupFlag), first sent `age_ms` ago by the member's clock ([`judge_resend`]).
#[derive(Debug)]
pub enum Resend {
    /// Young enough: sent to the log like any new order (the engine refuses an id it
    /// remembers, and the gateway answers with the original's state).
    Send,
    /// Too old, and this site knows the id: answered with its state, never sent to the log
    /// (by the time it landed there the log's engines might have forgotten the original).
    Answer(Box<Report>),
    /// Too old, under an id this site does not know: refused as `stale_resend`.
    Stale,
}

/// [`Resend`] for a resend first sent `age_ms` ago, against engines whose dedup window is
/// `window_ns` behind a log that may take up to `delay_ns` to land it ([`resend_too_old`]
/// of the window less the delay), at a site ready (`ready`) to answer status questions,
/// which knows the order as `known`. A site that is not ready sends it on: its submit
/// refuses it for that reason.
pub fn judge_resend(
    age_ms: u64,
    (window_ns, delay_ns): (u64, u64),
    ready: bool,
    known: Option<Report>,
) -> Resend {
    let horizon_ns = window_ns.saturating_sub(delay_ns);
    match known {
        _ if !ready || !resend_too_old(age_ms, horizon_ns) => Resend::Send,
        Some(state) => Resend::Answer(Box::new(state.status())),
        None => Resend::Stale,
    }
}

/// What one [`Desk::apply`] produced. Kept by the caller and reused: its vectors keep their
/// capacity, so a steady state allocates no new ones.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Messages for the sessions of an account, in log order.
    pub sends: Vec<(AccountId, ToSession)>,
    /// Market data to publish, in order.
    pub market_data: Vec<MdMessage>,
    /// Engine events followed.
    pub events: u64,
    /// Commands whose end was seen.
    pub applied: u64,
    /// Engine rejects, by reason ([`REJECT_REASONS`] order).
    pub rejects: [u64; REJECT_REASONS.len()],
    /// The log position of the shard's next command, if the batch ended a command.
    pub next_position: Option<u64>,
}

impl Outbox {
    /// Empties it, keeping its capacity.
    pub fn clear(&mut self) {
        self.sends.clear();
        self.market_data.clear();
        self.events = 0;
        self.applied = 0;
        self.rejects = [0; REJECT_REASONS.len()];
        self.next_position = None;
    }
}

/// One shard's books and the state of the command it is in the middle of.
#[derive(Default)]
struct ShardDesk {
    books: Books,
    controls: ShardControls,
    command: InCommand,
    /// Orders the current command cancelled with reason `mass` (for its MassCancelDone).
    mass_cancelled: u32,
    /// The current command (an `add_symbol`) was refused.
    symbol_rejected: bool,
}

/// A site's orders and books, over all its shards.
pub struct Desk {
    orders: OrderTable,
    shards: Vec<ShardDesk>,
    mass: MassCancels,
    /// Level changes of the event being followed (kept for its capacity).
    deltas: Vec<LevelDelta>,
}

impl Desk {
    /// A desk for `shards` shards whose engines remember finished orders for `window_ns` of
    /// log time (their `dedup_window_ns`).
    pub fn new(shards: usize, window_ns: u64) -> Desk {
        Desk {
            orders: OrderTable::new(shards, window_ns),
            shards: (0..shards).map(|_| ShardDesk::default()).collect(),
            mass: MassCancels::default(),
            deltas: Vec::new(),
        }
    }

    /// Starts shard `shard` from its recovered `engine`, whose next command is at
    /// `next_position`: its books, and every order it remembers.
    pub fn seed(&mut self, shard: usize, engine: &Engine, next_position: u64) {
        let state = &mut self.shards[shard];
        *state = ShardDesk {
            books: Books::new(next_position),
            controls: ShardControls::seed(engine),
            ..ShardDesk::default()
        };
        for info in engine.symbols() {
            state.books.list(info.name);
            let (updates, _) = engine.book_counters(info.id).expect("a listed symbol");
            state.books.seed_seq(info.name, updates);
            for side in [Side::Buy, Side::Sell] {
                for order in engine.resting(info.id, side) {
                    state.books.seed(LevelDelta {
                        symbol: info.name,
                        side,
                        price: order.price,
                        qty: order.qty.0,
                    });
                }
            }
        }
        self.orders.seed(shard, engine);
    }

    /// A session is about to submit `new` to shard `shard`'s log: whether it may (see
    /// [`Admission`]).
    pub fn submitted(&mut self, shard: usize, new: &NewOrder) -> Admission {
        self.orders.submitted(shard, new)
    }

    /// The log refused `new` after [`Desk::submitted`]: it is not in flight.
    pub fn refused(&mut self, new: &NewOrder) {
        self.orders.refused(new);
    }

    /// Starts waiting for the shards in the mask `shards` to apply `account`'s mass cancel of
    /// every symbol; returns its id.
    pub fn mass_cancel_begin(&mut self, account: AccountId, shards: u64) -> u64 {
        self.mass.begin(account, shards)
    }

    /// Shard `shard`'s log refused its part of mass cancel `id`. Returns how many orders the
    /// others cancelled if that was the last part outstanding.
    pub fn mass_cancel_refused(&mut self, id: u64, shard: usize) -> Option<u32> {
        self.mass.refused(id, shard)
    }

    /// Follows a batch of shard `shard`'s matcher output, replacing `out`'s contents with what
    /// it causes. Book updates come at the end of each command; a command may span batches.
    pub fn apply(&mut self, shard: usize, batch: &[Emitted], out: &mut Outbox) {
        out.clear();
        for item in batch {
            match *item {
                Emitted::Event(event) => self.on_event(shard, &event, out),
                Emitted::Applied { position, command } => {
                    self.end_command(shard, position, &command, out);
                }
            }
        }
    }

    fn on_event(&mut self, shard: usize, event: &Event, out: &mut Outbox) {
        out.events += 1;
        let state = &mut self.shards[shard];
        match event.kind {
            EventKind::Accepted { symbol, .. } => state.books.list(symbol),
            EventKind::Rejected { reason, .. } | EventKind::SymbolRejected { reason, .. } => {
                if let Some(at) = REJECT_REASONS.iter().position(|r| *r == reason) {
                    out.rejects[at] += 1;
                }
                state.symbol_rejected |= matches!(event.kind, EventKind::SymbolRejected { .. });
            }
            EventKind::Trade {
                symbol,
                price,
                qty,
                taker_side,
                trade_id,
                ..
            } => out.market_data.push(MdMessage::Trade {
                symbol,
                id: trade_id,
                ts: event.ts.0,
                price,
                qty,
                taker_side,
            }),
            EventKind::Cancelled {
                reason: CancelReason::Mass,
                ..
            } => state.mass_cancelled += 1,
            EventKind::AccountRejected { reason, .. } => {
                if let Some(at) = REJECT_REASONS.iter().position(|r| *r == reason) {
                    out.rejects[at] += 1;
                }
            }
            EventKind::TradingStatus { .. } | EventKind::KillSwitch { .. } => {
                state.controls.follow(&event.kind);
            }
            EventKind::Cancelled { .. }
            | EventKind::Amended { .. }
            | EventKind::CancelAfter { .. } => {}
        }
        let mut effects = Effects {
            sends: &mut out.sends,
            deltas: &mut self.deltas,
        };
        self.orders
            .on_event(shard, event, &mut state.command, &mut effects);
        for delta in self.deltas.drain(..) {
            state.books.change(delta);
        }
    }

    fn end_command(&mut self, shard: usize, position: u64, command: &Command, out: &mut Outbox) {
        out.applied += 1;
        out.next_position = Some(position + 1);
        let state = &mut self.shards[shard];
        let mut effects = Effects {
            sends: &mut out.sends,
            deltas: &mut self.deltas,
        };
        self.orders
            .end_command(shard, command, &mut state.command, &mut effects);
        for delta in self.deltas.drain(..) {
            state.books.change(delta);
        }
        let symbol_rejected = std::mem::take(&mut state.symbol_rejected);
        let cancelled = std::mem::take(&mut state.mass_cancelled);
        match command.kind {
            CommandKind::AddSymbol(add) if !symbol_rejected => {
                state.books.list(add.symbol);
                state.controls.list(add.symbol);
            }
            CommandKind::MassCancel(mass) => {
                if let Some(done) = self.mass.done(shard, mass, cancelled) {
                    out.sends.push((mass.account, done));
                }
            }
            _ => {}
        }
        state.books.end_command(position, &mut out.market_data);
    }

    /// The current state of the account's order `cl_ord_id` (live, or finished inside the
    /// dedup window; any id of its replace chain), as the answer to a status request: the
    /// order on shard `shard` if that shard knows the id (a status request names a symbol, and
    /// an id entered on two shards at once, by two sites, is two orders), else on the lowest
    /// shard that does.
    pub fn order_state(
        &self,
        shard: usize,
        account: AccountId,
        cl_ord_id: &OrderId,
    ) -> Option<Report> {
        self.orders.status(shard, account, cl_ord_id)
    }

    /// Every order of `account` the engines remember, as status answers (see
    /// [`OrderTable::mass_status`]).
    pub fn mass_status(&self, account: AccountId) -> Vec<Report> {
        self.orders.mass_status(account)
    }

    /// Orders live on a book or being matched: as many as the engines have, between commands.
    pub fn live_orders(&self) -> usize {
        self.orders.live()
    }

    /// The operator controls of every shard, as their logs set them.
    pub fn controls(&self) -> Controls {
        controls::merge(self.shards.iter().map(|shard| &shard.controls))
    }

    /// The best `depth` levels of each side of `symbol`, from the shard that lists it.
    pub fn snapshot(&self, symbol: &Symbol, depth: usize) -> Option<BookSnapshot> {
        self.shards
            .iter()
            .find_map(|shard| shard.books.snapshot(symbol, depth))
    }
}

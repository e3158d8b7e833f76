//! The hub: what every protocol's sessions share at one site.
//!
//! - **Into the log**: a session turns a client request into a [`Command`] whose account is the
//!   session's (never a client field), and [`Hub::submit`]s it to the [`Sequencer`] of the
//!   symbol's shard (its journal, or its Kafka partition). Nothing is acknowledged here.
//! - **Shards.** A site may run several shards, each its own log and engine, each holding some
//!   of the symbols ([`Hub::sharded`]). A request goes to its symbol's shard (a symbol no shard
//!   lists goes to shard 0, whose engine rejects it as `unknown_symbol`). A mass cancel of every
//!   symbol goes to every shard, and the session hears one answer with the orders of all of them
//!   added up. A client order id the hub knows on one shard (live, or done within the
//!   remembered window, or in flight) is not entered on another: the request is answered like a
//!   resent order, with the original's state. Within a shard the engine itself refuses reused
//!   ids, in log order.
//! - **Out of the engine**: one pump thread per shard ([`Hub::spawn_pump`]) drains its matcher's
//!   output ring. Everything it reads was applied from the committed log, so a report sent from
//!   here is an acknowledgement a member can rely on. It turns events into execution reports
//!   ([`OrderTracker`]), routes them to the sessions of the order's account, remembers each
//!   order's last state (status requests, resent orders) and feeds market data.
//!
//! A session whose outbound queue is full is disconnected (it reconnects and asks for status);
//! a report is never dropped silently.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use engine::ring::{Consumer, Pop};
use engine::runner::{Emitted, WaitStrategy, Waiter};
use engine::{
    AccountId, Command, CommandKind, EventKind, MassCancel, NewOrder, OrdType, OrderId, Qty,
    RejectReason, Symbol,
};
use tokio::sync::mpsc;

use crate::market_data::MarketData;
use crate::reports::{ExecType, GatewayReason, OrdStatus, OrderTracker, Output, Report, Why};

/// Where commands go: the shard's log.
pub trait Sequencer: Send + Sync + 'static {
    /// Queues `command` for the log. `Ok` is not an acknowledgement: the order is acknowledged
    /// when the engine applies it from the committed log. With Kafka, an `Ok` whose delivery
    /// later fails is *unknown*: the client resends with the same id and the engine dedups.
    fn submit(&self, command: Command) -> Result<(), SubmitError>;
}

/// Why a command was not queued. Both are answered with a reject naming them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The log's queue is full: back-pressure, try again.
    #[error("busy: the log is not keeping up")]
    Busy,
    /// The log cannot take commands (stopped, failed, or the brokers are unreachable).
    #[error("unavailable: the log cannot take orders")]
    Unavailable,
}

/// One member's credentials and account.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// FIX Username (553) and the name in logs.
    pub name: String,
    /// The secret: FIX Password (554), or the binary Logon's token (at most 32 bytes).
    pub token: String,
    pub account: u64,
}

/// The members allowed to log on.
#[derive(Clone, Debug, Default)]
pub struct Members {
    by_token: HashMap<String, Member>,
}

/// Why a member table is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembersError {
    #[error("member {0:?}: the token must be 8 to 32 printable ASCII characters")]
    BadToken(String),
    #[error("member {0:?}: a token or account is used twice")]
    Duplicate(String),
}

impl Members {
    /// Checks the table: tokens are 8..=32 printable ASCII (they fit the binary Logon), and no
    /// token or account appears twice.
    pub fn new(members: Vec<Member>) -> Result<Members, MembersError> {
        let mut by_token = HashMap::new();
        let mut accounts = std::collections::HashSet::new();
        for member in members {
            let token = &member.token;
            if !(8..=32).contains(&token.len())
                || !token.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(MembersError::BadToken(member.name));
            }
            if by_token.contains_key(token) || !accounts.insert(member.account) {
                return Err(MembersError::Duplicate(member.name));
            }
            by_token.insert(token.clone(), member);
        }
        Ok(Members { by_token })
    }

    /// The member holding `token` (the binary Logon).
    pub fn by_token(&self, token: &str) -> Option<&Member> {
        self.by_token.get(token)
    }

    /// The member with this name and token (the FIX Logon).
    pub fn login(&self, name: &str, token: &str) -> Option<&Member> {
        self.by_token(token).filter(|m| m.name == name)
    }

    /// Whether a member has this name (a FIX session is admitted only for a member's
    /// SenderCompID, before its credentials are checked).
    pub fn has_name(&self, name: &str) -> bool {
        self.by_token.values().any(|m| m.name == name)
    }
}

/// What the hub sends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToSession {
    /// An execution report for one of the account's orders (also `ExecType::OrderStatus` for a
    /// resent order whose id was already used: its current state).
    Report(Report),
    /// A refused cancel or replace.
    CancelReject(crate::reports::CancelReject),
    /// A mass cancel was applied: how many orders it cancelled.
    MassCancelDone {
        symbol: Option<Symbol>,
        cancelled: u32,
    },
    /// The session fell too far behind its reports and must reconnect.
    SlowConsumer,
}

/// Outbound reports a session may have queued before it is disconnected as too slow.
pub const SESSION_QUEUE: usize = 65_536;

/// A session's registration with the hub; detaches when dropped.
pub struct Attachment {
    hub: Arc<Hub>,
    id: u64,
    account: AccountId,
    /// The session's reports, in log order.
    pub rx: mpsc::Receiver<ToSession>,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut routes = self.hub.routes();
        if let Some(list) = routes.get_mut(&self.account) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                routes.remove(&self.account);
            }
        }
    }
}

/// A latency histogram with fixed buckets that any thread can record into (Prometheus
/// exposition: cumulative buckets, sum and count).
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Bucket upper bounds, microseconds (the last bucket is +Inf).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000,
];

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn record_us(&self, us: u64) {
        let at = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time from `ts` (nanoseconds since the Unix epoch, a command's gateway
    /// stamp) to now.
    pub fn record_since(&self, ts: u64) {
        self.record_us(now_ns().saturating_sub(ts) / 1_000);
    }

    /// Cumulative counts per bound (the last is +Inf), the sum in µs, and the count.
    pub fn read(&self) -> (Vec<(Option<u64>, u64)>, u64, u64) {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (at, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            out.push((LATENCY_BOUNDS_US.get(at).copied(), total));
        }
        (
            out,
            self.sum_us.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Wall-clock nanoseconds since the Unix epoch (the gateway's stamp on commands).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Every engine reject reason, in the order of [`HubCounters::rejects`].
pub const REJECT_REASONS: [RejectReason; 11] = [
    RejectReason::UnknownSymbol,
    RejectReason::DuplicateOrderId,
    RejectReason::InvalidQty,
    RejectReason::InvalidPrice,
    RejectReason::InvalidTif,
    RejectReason::PostOnly,
    RejectReason::UnknownOrder,
    RejectReason::DuplicateSymbol,
    RejectReason::InvalidTick,
    RejectReason::InvalidLot,
    RejectReason::Capacity,
];

/// Counters the node exposes as metrics.
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Engine rejects, by reason ([`REJECT_REASONS`] order).
    pub rejects: [AtomicU64; REJECT_REASONS.len()],
    /// From the gateway's stamp to the pump seeing the command applied.
    pub applied_latency: LatencyHistogram,
    pub submitted: AtomicU64,
    pub submit_busy: AtomicU64,
    pub submit_unavailable: AtomicU64,
    pub events: AtomicU64,
    pub applied: AtomicU64,
    pub reports: AtomicU64,
    pub slow_consumers: AtomicU64,
}

type Route = (u64, mpsc::Sender<ToSession>);

/// Shared by every session of a site.
pub struct Hub {
    /// Each shard's way into its log, by shard number.
    shards: Vec<Arc<dyn Sequencer>>,
    /// The shard of each configured symbol.
    shard_of: HashMap<Symbol, usize>,
    /// Per shard, the log position of the next command its engine will apply.
    positions: Vec<AtomicU64>,
    members: Members,
    routes: Mutex<HashMap<AccountId, Vec<Route>>>,
    orders: Mutex<OrderBookkeeping>,
    market_data: MarketData,
    next_session: AtomicU64,
    counters: HubCounters,
}

/// Each order's last state, kept after the order is done for `finished_max` more orders (the
/// same window as the engine's remembered ids), and the requests in flight.
struct OrderBookkeeping {
    last: HashMap<(AccountId, OrderId), Report>,
    finished: VecDeque<(AccountId, OrderId)>,
    finished_max: usize,
    /// New orders submitted here and not yet applied: what a reject report says they were.
    in_flight: HashMap<(AccountId, OrderId), NewOrder>,
    /// Mass cancels of every symbol submitted here to several shards, oldest first, until
    /// every shard has applied its part.
    mass_pending: VecDeque<PendingMass>,
    next_mass: u64,
}

/// A mass cancel of every symbol, sent to several shards, waiting for their answers.
struct PendingMass {
    id: u64,
    account: AccountId,
    /// Bit `s` is set while shard `s` has not applied its part.
    waiting: u64,
    cancelled: u32,
}

/// Most shards a hub routes to (a mass cancel's shards are a 64-bit mask).
pub const SHARDS_MAX: usize = 64;

/// In-flight new orders remembered for their reject reports; beyond this, a reject report
/// carries no side or price.
const IN_FLIGHT_MAX: usize = 1 << 20;

impl Hub {
    /// A hub over one shard's `sequencer`, for `members`, remembering `finished_max` done
    /// orders.
    pub fn new(sequencer: Arc<dyn Sequencer>, members: Members, finished_max: usize) -> Arc<Hub> {
        Hub::sharded(vec![sequencer], HashMap::new(), members, finished_max)
    }

    /// A hub over several shards: `shards[s]` is shard `s`'s sequencer and `shard_of` names
    /// each symbol's shard.
    ///
    /// # Panics
    /// With no shard, more than [`SHARDS_MAX`], or a symbol mapped to a shard that is not
    /// there: the site checks its configuration first.
    pub fn sharded(
        shards: Vec<Arc<dyn Sequencer>>,
        shard_of: HashMap<Symbol, usize>,
        members: Members,
        finished_max: usize,
    ) -> Arc<Hub> {
        assert!((1..=SHARDS_MAX).contains(&shards.len()), "1 to 64 shards");
        assert!(
            shard_of.values().all(|&s| s < shards.len()),
            "a symbol's shard"
        );
        Arc::new(Hub {
            positions: shards.iter().map(|_| AtomicU64::new(0)).collect(),
            market_data: MarketData::new(shards.len()),
            shards,
            shard_of,
            members,
            routes: Mutex::new(HashMap::new()),
            orders: Mutex::new(OrderBookkeeping {
                last: HashMap::new(),
                finished: VecDeque::new(),
                finished_max,
                in_flight: HashMap::new(),
                mass_pending: VecDeque::new(),
                next_mass: 0,
            }),
            next_session: AtomicU64::new(1),
            counters: HubCounters::default(),
        })
    }

    /// How many shards the hub routes to.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds `symbol` (shard 0 for a symbol no shard lists: its engine rejects
    /// it).
    pub fn shard_of(&self, symbol: &Symbol) -> usize {
        self.shard_of.get(symbol).copied().unwrap_or(0)
    }

    /// The log position of the next command shard `shard`'s engine will apply.
    pub fn next_position(&self, shard: usize) -> u64 {
        self.positions[shard].load(Ordering::Relaxed)
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    pub fn market_data(&self) -> &MarketData {
        &self.market_data
    }

    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<AccountId, Vec<Route>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn orders(&self) -> MutexGuard<'_, OrderBookkeeping> {
        self.orders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session of `account` for its reports.
    pub fn attach(self: &Arc<Hub>, account: AccountId) -> Attachment {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        self.routes().entry(account).or_default().push((id, tx));
        Attachment {
            hub: self.clone(),
            id,
            account,
            rx,
        }
    }

    /// Stamps `kind` with the gateway's clock and queues it for its shard's log.
    pub fn submit(&self, kind: CommandKind) -> Result<(), SubmitError> {
        let ts = now_ns();
        let shard = match kind {
            CommandKind::New(new) => self.shard_of(&new.symbol),
            CommandKind::Cancel(cancel) => self.shard_of(&cancel.symbol),
            CommandKind::Amend(amend) => self.shard_of(&amend.symbol),
            CommandKind::AddSymbol(add) => self.shard_of(&add.symbol),
            CommandKind::MassCancel(mass) => match mass.symbol {
                Some(symbol) => self.shard_of(&symbol),
                None if self.shards.len() > 1 => return self.mass_cancel_everywhere(ts, mass),
                None => 0,
            },
        };
        if let CommandKind::New(new) = kind {
            let mut orders = self.orders();
            if self.shards.len() > 1 {
                if let Some(known) = self.known_elsewhere(&orders, &new, shard) {
                    drop(orders);
                    // Never a second order under one id: answered like a resent order.
                    if let Some(original) = known {
                        deliver(&mut self.routes(), &self.counters, new.account, original);
                    }
                    return Ok(());
                }
            }
            if orders.in_flight.len() < IN_FLIGHT_MAX {
                orders.in_flight.insert((new.account, new.order_id), new);
            }
        }
        let result = self.submit_to(shard, Command::new(ts, kind));
        if let (Err(_), CommandKind::New(new)) = (result, kind) {
            self.orders().in_flight.remove(&(new.account, new.order_id));
        }
        result
    }

    fn submit_to(&self, shard: usize, command: Command) -> Result<(), SubmitError> {
        let result = self.shards[shard].submit(command);
        let counter = match result {
            Ok(()) => &self.counters.submitted,
            Err(SubmitError::Busy) => &self.counters.submit_busy,
            Err(SubmitError::Unavailable) => &self.counters.submit_unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Whether `new`'s client order id is in use on a shard other than `shard`:
    /// `Some(Some(state))` with the original's state to answer, `Some(None)` when the original
    /// is still in flight (its own report answers).
    fn known_elsewhere(
        &self,
        orders: &OrderBookkeeping,
        new: &NewOrder,
        shard: usize,
    ) -> Option<Option<ToSession>> {
        let key = (new.account, new.order_id);
        if let Some(original) = orders.in_flight.get(&key) {
            return (self.shard_of(&original.symbol) != shard).then_some(None);
        }
        let original = orders.last.get(&key)?;
        (self.shard_of(&original.symbol) != shard)
            .then(|| Some(ToSession::Report(original.status())))
    }

    /// A mass cancel of every symbol: one command to each shard, answered once all of them
    /// applied theirs (see [`Pump::flush`]). A shard that refuses it is reported as the error;
    /// what the others cancel is still answered.
    fn mass_cancel_everywhere(&self, ts: u64, mass: MassCancel) -> Result<(), SubmitError> {
        let all = u64::MAX >> (64 - self.shards.len());
        let id = {
            let mut orders = self.orders();
            orders.next_mass += 1;
            let id = orders.next_mass;
            orders.mass_pending.push_back(PendingMass {
                id,
                account: mass.account,
                waiting: all,
                cancelled: 0,
            });
            id
        };
        let command = Command::new(ts, CommandKind::MassCancel(mass));
        let mut result = Ok(());
        let mut accepted = false;
        for shard in 0..self.shards.len() {
            let Err(err) = self.submit_to(shard, command) else {
                accepted = true;
                continue;
            };
            result = Err(err);
            let mut orders = self.orders();
            let Some(at) = orders.mass_pending.iter().position(|p| p.id == id) else {
                continue;
            };
            orders.mass_pending[at].waiting &= !(1 << shard);
            // Only once every later shard was tried can nothing be waiting; then the shards
            // that took it have all answered (or none took it, and the error is the answer).
            if orders.mass_pending[at].waiting == 0 {
                let done = orders.mass_pending.remove(at).expect("found");
                drop(orders);
                if accepted {
                    let message = ToSession::MassCancelDone {
                        symbol: None,
                        cancelled: done.cancelled,
                    };
                    deliver(&mut self.routes(), &self.counters, mass.account, message);
                }
            }
        }
        result
    }

    /// The last known state of the account's order `cl_ord_id`: live, or done within the
    /// remembered window.
    pub fn order_state(&self, account: AccountId, cl_ord_id: &OrderId) -> Option<Report> {
        self.orders().last.get(&(account, *cl_ord_id)).copied()
    }

    /// Prepares shard `shard`'s pump from its `engine`, recovered with its next command at
    /// `next_position`, before the matcher takes it: the orders resting in it are followed
    /// from here on.
    pub fn seed(&self, shard: usize, engine: &engine::Engine, next_position: u64) -> Pump {
        let mut pump = Pump::new(shard);
        {
            let mut orders = self.orders();
            let seq = engine.stats().next_event_seq;
            for info in engine.symbols() {
                for side in [engine::Side::Buy, engine::Side::Sell] {
                    for order in engine.resting(info.id, side) {
                        let report = pump.tracker.seed(seq, info.name, &order);
                        orders.last.insert((order.account, order.order_id), report);
                    }
                }
            }
        }
        self.market_data.seed(shard, engine, next_position);
        self.positions[shard].store(next_position, Ordering::Relaxed);
        pump
    }

    /// Starts the thread that drains the matcher's output ring into the sessions and market
    /// data, with `pump` from [`Hub::seed`]. It stops when the ring is closed (the matcher
    /// stopped).
    pub fn spawn_pump<const N: usize>(
        self: &Arc<Hub>,
        mut pump: Pump,
        mut output: Consumer<Emitted, N>,
        wait: WaitStrategy,
    ) -> std::io::Result<JoinHandle<()>> {
        let hub = self.clone();
        std::thread::Builder::new()
            .name(format!("hub-pump-{}", pump.shard))
            .spawn(move || {
                let mut waiter = Waiter::new(wait);
                loop {
                    let taken = output.pop_batch(4096, |item| pump.take(item));
                    if taken > 0 {
                        pump.flush(&hub);
                        waiter.reset();
                        continue;
                    }
                    match output.empty_or_closed() {
                        Pop::Closed => break,
                        Pop::Empty | Pop::Item(_) => waiter.wait(),
                    }
                }
                pump.flush(&hub);
            })
    }
}

/// A park-based wait for the pump: it is not latency-critical enough to spin a core.
pub const PUMP_WAIT: WaitStrategy = WaitStrategy::Park {
    spins: 200,
    yields: 20,
    park_us: 50,
};

/// The pump's state: what it follows, and the batch being routed.
pub struct Pump {
    shard: usize,
    tracker: OrderTracker,
    batch: Vec<Emitted>,
    outputs: Vec<Output>,
    /// Orders the current command cancelled with reason `mass` (for its MassCancelDone).
    mass_cancelled: u32,
    sends: Vec<(AccountId, ToSession)>,
}

impl Pump {
    fn new(shard: usize) -> Pump {
        Pump {
            shard,
            tracker: OrderTracker::new(),
            batch: Vec::with_capacity(4096),
            outputs: Vec::new(),
            mass_cancelled: 0,
            sends: Vec::new(),
        }
    }

    fn take(&mut self, item: Emitted) {
        self.batch.push(item);
    }

    /// Routes the batch: order bookkeeping under one lock, market data under its lock, then
    /// the sends.
    fn flush(&mut self, hub: &Hub) {
        if self.batch.is_empty() {
            return;
        }
        {
            let mut orders = hub.orders();
            for item in &self.batch {
                match *item {
                    Emitted::Event(event) => {
                        hub.counters.events.fetch_add(1, Ordering::Relaxed);
                        if let EventKind::Rejected { reason, .. }
                        | EventKind::SymbolRejected { reason, .. } = event.kind
                        {
                            if let Some(at) = REJECT_REASONS.iter().position(|r| *r == reason) {
                                hub.counters.rejects[at].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if let EventKind::Cancelled {
                            reason: engine::CancelReason::Mass,
                            ..
                        } = event.kind
                        {
                            self.mass_cancelled += 1;
                        }
                        self.outputs.clear();
                        self.tracker.on_event(&event, &mut self.outputs);
                        for output in &self.outputs {
                            route(&mut orders, output, &mut self.sends);
                        }
                    }
                    Emitted::Applied { position, command } => {
                        hub.counters.applied.fetch_add(1, Ordering::Relaxed);
                        hub.counters.applied_latency.record_since(command.ts.0);
                        hub.positions[self.shard].store(position + 1, Ordering::Relaxed);
                        let cancelled = std::mem::take(&mut self.mass_cancelled);
                        if let CommandKind::MassCancel(mass) = command.kind {
                            if let Some(done) = mass_done(&mut orders, self.shard, mass, cancelled)
                            {
                                self.sends.push((mass.account, done));
                            }
                        }
                    }
                }
            }
        }
        hub.market_data.apply(self.shard, &self.batch);
        self.batch.clear();
        if self.sends.is_empty() {
            return;
        }
        let mut routes = hub.routes();
        for (account, message) in self.sends.drain(..) {
            deliver(&mut routes, &hub.counters, account, message);
        }
    }
}

/// The answer to a mass cancel that shard `shard` applied, having cancelled `cancelled` of
/// the account's orders: at once for one symbol (or a hub of one shard), or, for every symbol
/// across shards, once the last shard answers the oldest such request of the account sent from
/// here. One sent from another site (on a shared log) is answered shard by shard.
fn mass_done(
    orders: &mut OrderBookkeeping,
    shard: usize,
    mass: MassCancel,
    cancelled: u32,
) -> Option<ToSession> {
    let answer = |cancelled| ToSession::MassCancelDone {
        symbol: mass.symbol,
        cancelled,
    };
    let bit = 1 << shard;
    let Some(at) = (mass.symbol.is_none())
        .then(|| {
            orders
                .mass_pending
                .iter()
                .position(|p| p.account == mass.account && p.waiting & bit != 0)
        })
        .flatten()
    else {
        return Some(answer(cancelled));
    };
    let pending = &mut orders.mass_pending[at];
    pending.waiting &= !bit;
    pending.cancelled = pending.cancelled.saturating_add(cancelled);
    if pending.waiting != 0 {
        return None;
    }
    let done = orders.mass_pending.remove(at).expect("found");
    Some(answer(done.cancelled))
}

/// Sends `message` to every session of `account`. A session whose queue is full is told it is
/// too slow and detached (it reconnects and asks for status): never a silent drop.
fn deliver(
    routes: &mut HashMap<AccountId, Vec<Route>>,
    counters: &HubCounters,
    account: AccountId,
    message: ToSession,
) {
    let Some(list) = routes.get_mut(&account) else {
        return;
    };
    counters.reports.fetch_add(1, Ordering::Relaxed);
    list.retain(|(_, tx)| match tx.try_send(message) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
            let _ = tx.try_send(ToSession::SlowConsumer);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
    if list.is_empty() {
        routes.remove(&account);
    }
}

/// Records one tracker output as its order's last state and queues it for the account.
fn route(orders: &mut OrderBookkeeping, output: &Output, sends: &mut Vec<(AccountId, ToSession)>) {
    let report = match *output {
        Output::CancelReject(reject) => {
            sends.push((reject.account, ToSession::CancelReject(reject)));
            return;
        }
        Output::Report(report) => report,
    };
    let key = (report.account, report.cl_ord_id);
    if report.why == Some(Why::Rejected(RejectReason::DuplicateOrderId)) {
        // A resent order: answer with the original's state, never a second order.
        let message = match orders.last.get(&key) {
            Some(original) => ToSession::Report(Report {
                seq: report.seq,
                ts: report.ts,
                ..original.status()
            }),
            None => ToSession::Report(report),
        };
        sends.push((report.account, message));
        return;
    }
    let mut report = report;
    match report.exec_type {
        ExecType::New => {
            orders.in_flight.remove(&key);
        }
        ExecType::Rejected => {
            if let Some(new) = orders.in_flight.remove(&key) {
                report.side = new.side;
                report.price = match new.ord_type {
                    OrdType::Limit => new.price,
                    OrdType::Market => None,
                };
                report.order_qty = new.qty;
            }
        }
        _ => {}
    }
    let done = is_done(report.ord_status);
    orders.last.insert(key, report);
    if done {
        orders.finished.push_back(key);
        while orders.finished.len() > orders.finished_max {
            let Some(old) = orders.finished.pop_front() else {
                break;
            };
            // Only forget it if it is still done (a rejected id may have been reused).
            if orders.last.get(&old).is_some_and(|r| is_done(r.ord_status)) {
                orders.last.remove(&old);
            }
        }
    }
    sends.push((report.account, ToSession::Report(report)));
}

fn is_done(status: OrdStatus) -> bool {
    matches!(
        status,
        OrdStatus::Filled | OrdStatus::Canceled | OrdStatus::Rejected
    )
}

/// A new order a session refused before the log, as it appears in reports.
pub fn gateway_reject(account: AccountId, new: &NewOrder, reason: GatewayReason) -> Report {
    Report {
        seq: 0,
        ts: 0,
        account,
        cl_ord_id: new.order_id,
        symbol: new.symbol,
        side: new.side,
        exec_type: ExecType::Rejected,
        ord_status: OrdStatus::Rejected,
        price: new.price,
        order_qty: new.qty,
        last_px: engine::Price(0),
        last_qty: Qty(0),
        cum_qty: Qty(0),
        leaves_qty: Qty(0),
        avg_px: engine::Price(0),
        why: Some(Why::Gateway(reason)),
    }
}

//! The hub: what every protocol's sessions share at one site, and the runtime around the
//! [`Desk`].
//!
//! - **Into the log**: a session turns a client request into a [`Command`] whose account is the
//!   session's (never a client field), and [`Hub::submit`]s it to the [`Sequencer`] of the
//!   symbol's shard (its journal, or its Kafka partition). Nothing is acknowledged here.
//! - **Time comes from the log, not from here.** The hub stamps a command with its own clock,
//!   but that stamp is not the engine's time: the journal's writer replaces it with its clock
//!   as it sequences the command, and a Kafka reader with the record's timestamp (the broker's
//!   log-append time on a safe topic). A gateway whose clock is wrong moves no site's time.
//! - **Shards.** A site may run several shards, each its own log and engine, each holding some
//!   of the symbols ([`Hub::sharded`]). A request goes to its symbol's shard (a symbol no shard
//!   lists goes to shard 0, whose engine rejects it as `unknown_symbol`). A mass cancel of every
//!   symbol goes to every shard, and the session hears one answer with the orders of all of them
//!   added up. A client order id the desk knows on one shard (live, or done within the
//!   remembered window, or in flight) is not entered on another: the request is answered like a
//!   resent order, with the original's state. Within a shard the engine itself refuses reused
//!   ids, in log order. Two sites can still enter one id on two shards at the same instant:
//!   the desk follows them as two orders, and a request naming a symbol is answered with the
//!   order on the symbol's shard ([`Hub::order_state`]).
//! - **Out of the engine**: the node's pump thread of each shard drains its matcher's output
//!   ring and hands each batch to [`Hub::apply`]. Everything in it was applied from the
//!   committed log, so a report sent from here is an acknowledgement a member can rely on. The
//!   desk turns it into reports and market data; the hub publishes the market data under the
//!   desk's lock (so a subscriber's snapshot and feed meet exactly) and delivers the reports to
//!   the sessions of each order's account.
//!
//! A session whose outbound queue is full is disconnected (it reconnects and asks for status);
//! a report is never dropped silently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use engine::runner::{Emitted, WaitStrategy};
use engine::{
    AccountId, Command, CommandKind, MassCancel, NewOrder, OrderId, SetTradingStatus, Symbol,
};
use tokio::sync::{broadcast, mpsc};

use crate::desk::{
    judge_resend, Admission, BookSnapshot, Controls, Desk, MdMessage, Outbox, Report, Resend,
    SubmitError, ToSession,
};
use crate::members::Members;
use crate::metrics::{now_ns, HubCounters};

/// Where commands go: the shard's log.
pub trait Sequencer: Send + Sync + 'static {
    /// Queues `command` for the log. `Ok` is not an acknowledgement: the order is acknowledged
    /// when the engine applies it from the committed log. With Kafka, an `Ok` whose delivery
    /// later fails is *unknown*: the client resends with the same id and the engine dedups.
    fn submit(&self, command: Command) -> Result<(), SubmitError>;

    /// Whether this site's state is current enough to take orders and answer a status
    /// question from: the log takes commands now (the site is not cut off from it) and the
    /// site is not far behind it. Otherwise why not, as [`Sequencer::submit`] would say.
    fn ready(&self) -> Result<(), SubmitError> {
        Ok(())
    }

    /// The longest a command submitted now may take to land in the log (a Kafka producer's
    /// delivery timeout): landing later than the engines' dedup window after an order with
    /// its id finished, a resent order executes again, so resends are judged against the
    /// window less this ([`Hub::judge_resend`]). 0 for a log that appends at once.
    fn longest_delay_ns(&self) -> u64 {
        0
    }
}

/// Whether a site whose log last took a command from it at `last_ns` sends its idle clock at
/// `now_ns`: it has been idle for `idle`. ([`Hub::tick_if_idle`]'s rule, for its callers'
/// cadence.)
pub fn idle_due(last_ns: u64, now_ns: u64, idle: std::time::Duration) -> bool {
    let idle_ns = u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX);
    now_ns.saturating_sub(last_ns) >= idle_ns
}

/// Outbound reports a session may have queued before it is disconnected as too slow.
pub const SESSION_QUEUE: usize = 65_536;

/// Market data messages a subscriber may fall behind by before it is told to resync.
pub const FEED_BUFFER: usize = 16_384;

/// Most shards a hub routes to (a mass cancel's shards are a 64-bit mask).
pub const SHARDS_MAX: usize = 64;

/// A park-based wait for the threads around the matcher that are not latency-critical enough
/// to spin a core: the pump that feeds [`Hub::apply`], and the log feeder.
pub const PUMP_WAIT: WaitStrategy = WaitStrategy::Park {
    spins: 200,
    yields: 20,
    park_us: 50,
};

/// A session's registration with the hub; detaches when dropped.
pub struct Attachment {
    hub: Arc<Hub>,
    id: u64,
    account: AccountId,
    /// The session's id on the log (its orders' `session`): random, unique across sites and
    /// restarts ([`crate::switch::new_session_id`]).
    pub session: u64,
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

type Route = (u64, mpsc::Sender<ToSession>);

/// Shared by every session of a site.
pub struct Hub {
    /// Each shard's way into its log, by shard number.
    shards: Vec<Arc<dyn Sequencer>>,
    /// The shard of each configured symbol.
    shard_of: HashMap<Symbol, usize>,
    /// Per shard, the log position of the next command its engine will apply.
    positions: Vec<AtomicU64>,
    /// Swapped whole on a reload ([`Hub::replace_members`]); read at logons only.
    members: std::sync::RwLock<Arc<Members>>,
    routes: Mutex<HashMap<AccountId, Vec<Route>>>,
    desk: Mutex<Desk>,
    /// Market data for every subscriber, published under the desk's lock.
    feed: broadcast::Sender<Arc<MdMessage>>,
    /// Per shard, the outbox its pump's batches are applied into (reused).
    outboxes: Vec<Mutex<Outbox>>,
    next_session: AtomicU64,
    /// When a shard's log last took a command from here (gateway clock, ns), for
    /// [`Hub::tick_if_idle`].
    last_submit: AtomicU64,
    counters: HubCounters,
    /// Added to the wall clock when stamping commands: 0 but in tests of a wrong clock.
    clock_offset_ns: i64,
    /// The engines' dedup window, in log time.
    window_ns: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub over one shard's `sequencer`, for `members`, whose engine remembers finished
    /// orders for `window_ns` of log time (its `dedup_window_ns`).
    pub fn new(sequencer: Arc<dyn Sequencer>, members: Members, window_ns: u64) -> Arc<Hub> {
        Hub::sharded(vec![sequencer], HashMap::new(), members, window_ns, 0)
    }

    /// A hub over several shards: `shards[s]` is shard `s`'s sequencer and `shard_of` names
    /// each symbol's shard. `clock_offset_ns` is added to the wall clock the hub stamps
    /// commands with: 0 for a real site; tests give a gateway a wrong clock with it (the log
    /// must not take its time from it).
    ///
    /// # Panics
    /// With no shard, more than [`SHARDS_MAX`], or a symbol mapped to a shard that is not
    /// there: the site checks its configuration first.
    pub fn sharded(
        shards: Vec<Arc<dyn Sequencer>>,
        shard_of: HashMap<Symbol, usize>,
        members: Members,
        window_ns: u64,
        clock_offset_ns: i64,
    ) -> Arc<Hub> {
        assert!((1..=SHARDS_MAX).contains(&shards.len()), "1 to 64 shards");
        assert!(
            shard_of.values().all(|&s| s < shards.len()),
            "a symbol's shard"
        );
        Arc::new(Hub {
            positions: shards.iter().map(|_| AtomicU64::new(0)).collect(),
            desk: Mutex::new(Desk::new(shards.len(), window_ns)),
            window_ns,
            feed: broadcast::channel(FEED_BUFFER).0,
            outboxes: shards.iter().map(|_| Mutex::default()).collect(),
            shards,
            shard_of,
            members: std::sync::RwLock::new(Arc::new(members)),
            routes: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            last_submit: AtomicU64::new(0),
            counters: HubCounters::default(),
            clock_offset_ns,
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

    /// Whether `symbol`'s shard (every shard, for `None`) is ready here: a site that cannot
    /// reach its log may be behind the others without knowing it, and one catching up knows
    /// it is, so neither answers a status question (see [`Sequencer::ready`]).
    pub fn log_ready(&self, symbol: Option<&Symbol>) -> Result<(), SubmitError> {
        match symbol {
            Some(symbol) => self.shards[self.shard_of(symbol)].ready(),
            None => self.shards.iter().try_for_each(|shard| shard.ready()),
        }
    }

    /// How long, in log time, the engines remember a finished order's client order id (their
    /// `dedup_window_ns`): a copy sent later is a new order.
    pub fn dedup_window_ns(&self) -> u64 {
        self.window_ns
    }

    /// The log position of the next command shard `shard`'s engine will apply.
    pub fn next_position(&self, shard: usize) -> u64 {
        self.positions[shard].load(Ordering::Relaxed)
    }

    /// The members allowed to log on now.
    pub fn members(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the member table: logons from now on are checked against `members`; the
    /// sessions already logged on stay.
    pub fn replace_members(&self, members: Members) {
        *self
            .members
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(members);
    }

    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<AccountId, Vec<Route>>> {
        lock(&self.routes)
    }

    fn desk(&self) -> MutexGuard<'_, Desk> {
        lock(&self.desk)
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
            session: crate::switch::new_session_id(),
            rx,
        }
    }

    /// Sends a `clock` to every shard if no log took anything from here for `idle`: log time
    /// then moves in a quiet market (or while members are refused), so dead-man's switches
    /// fire and dedup windows end on time. The node calls it every `idle`.
    pub fn tick_if_idle(&self, idle: std::time::Duration) {
        if idle_due(self.last_submit.load(Ordering::Relaxed), now_ns(), idle) {
            let _ = self.submit(CommandKind::Clock);
        }
    }

    /// Stamps `kind` with the gateway's clock (a producer's create time; the log replaces it
    /// with its own time, see the module's notes) and queues it for its shard's log.
    pub fn submit(&self, kind: CommandKind) -> Result<(), SubmitError> {
        let ts = now_ns().saturating_add_signed(self.clock_offset_ns);
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
            CommandKind::TradingStatus(SetTradingStatus {
                symbol: Some(symbol),
                ..
            }) => self.shard_of(&symbol),
            CommandKind::TradingStatus(_)
            | CommandKind::CancelAfter(_)
            | CommandKind::Clock
            | CommandKind::KillSwitch(_)
            | CommandKind::Rules(_) => return self.submit_everywhere(Command::new(ts, kind)),
        };
        if let CommandKind::New(new) = kind {
            let admission = self.desk().submitted(shard, &new);
            if let Admission::Known(original) = admission {
                if let Some(original) = original {
                    let message = ToSession::Report(*original);
                    deliver(&mut self.routes(), &self.counters, new.account, message);
                }
                return Ok(());
            }
        }
        let result = self.submit_to(shard, Command::new(ts, kind));
        if let (Err(_), CommandKind::New(new)) = (result, kind) {
            self.desk().refused(&new);
        }
        result
    }

    /// Submits `command` to `shard`'s log. Only a command the log took counts as this site's
    /// last submission for [`Hub::tick_if_idle`]: a refusal moves no log time.
    fn submit_to(&self, shard: usize, command: Command) -> Result<(), SubmitError> {
        let result = self.shards[shard].submit(command);
        let counter = match result {
            Ok(()) => {
                self.last_submit.store(now_ns(), Ordering::Relaxed);
                &self.counters.submitted
            }
            Err(SubmitError::Busy) => &self.counters.submit_busy,
            Err(SubmitError::Unavailable) => &self.counters.submit_unavailable,
            Err(SubmitError::CatchingUp) => &self.counters.submit_catching_up,
            Err(SubmitError::ClockSkew) => &self.counters.submit_clock_skew,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// A command about an account or every symbol, not one book: one to each shard. The first
    /// shard's refusal is the answer; the others are still tried.
    fn submit_everywhere(&self, command: Command) -> Result<(), SubmitError> {
        let mut result = Ok(());
        for shard in 0..self.shards.len() {
            let submitted = self.submit_to(shard, command);
            result = result.and(submitted);
        }
        result
    }

    /// A mass cancel of every symbol: one command to each shard, answered once all of them
    /// applied theirs (see [`Desk::apply`]). A shard that refuses it is reported as the error;
    /// what the others cancel is still answered.
    fn mass_cancel_everywhere(&self, ts: u64, mass: MassCancel) -> Result<(), SubmitError> {
        let all = u64::MAX >> (64 - self.shards.len());
        let id = self.desk().mass_cancel_begin(mass.account, all);
        let command = Command::new(ts, CommandKind::MassCancel(mass));
        let mut result = Ok(());
        let mut accepted = false;
        for shard in 0..self.shards.len() {
            let Err(err) = self.submit_to(shard, command) else {
                accepted = true;
                continue;
            };
            result = Err(err);
            // Only once every later shard was tried can nothing be waiting; then the shards
            // that took it have all answered (or none took it, and the error is the answer).
            let done = self.desk().mass_cancel_refused(id, shard);
            if let (Some(cancelled), true) = (done, accepted) {
                let message = ToSession::MassCancelDone {
                    symbol: None,
                    cancelled,
                };
                deliver(&mut self.routes(), &self.counters, mass.account, message);
            }
        }
        result
    }

    /// The last known state of the account's order `cl_ord_id` (live, or done within the
    /// remembered window), as the answer to a request naming `symbol`: the order on `symbol`'s
    /// shard if that shard knows the id (one id entered on two shards at once, by two sites,
    /// is two orders), else on the lowest shard that does.
    pub fn order_state(
        &self,
        symbol: &Symbol,
        account: AccountId,
        cl_ord_id: &OrderId,
    ) -> Option<Report> {
        let shard = self.shard_of(symbol);
        self.desk().order_state(shard, account, cl_ord_id)
    }

    /// What to do with `new` resent `age_ms` after its first sending (see
    /// [`crate::desk::judge_resend`]): sent on, answered with the order's state, or refused
    /// as `stale_resend`. Judged against the dedup window less the longest its shard's log
    /// may take to land it ([`Sequencer::longest_delay_ns`]).
    pub fn judge_resend(&self, new: &NewOrder, age_ms: u64) -> Resend {
        let ready = self.log_ready(Some(&new.symbol)).is_ok();
        let known = self
            .order_state(&new.symbol, new.account, &new.order_id)
            .filter(|state| state.symbol == new.symbol);
        let delay_ns = self.shards[self.shard_of(&new.symbol)].longest_delay_ns();
        judge_resend(age_ms, (self.dedup_window_ns(), delay_ns), ready, known)
    }

    /// Every order of `account` the engines remember (live, and finished inside the dedup
    /// window), in `symbol` if given, as status answers: the answer to a mass status request.
    pub fn mass_status(&self, account: AccountId, symbol: Option<&Symbol>) -> Vec<Report> {
        let mut reports = self.desk().mass_status(account);
        reports.retain(|r| symbol.is_none_or(|s| r.symbol == *s));
        reports
    }

    /// Starts shard `shard` from its `engine`, recovered with its next command at
    /// `next_position`, before the matcher takes it: the orders resting in it are followed
    /// from here on.
    pub fn seed(&self, shard: usize, engine: &engine::Engine, next_position: u64) {
        self.desk().seed(shard, engine, next_position);
        self.positions[shard].store(next_position, Ordering::Relaxed);
    }

    /// Follows a batch of shard `shard`'s matcher output: the desk turns it into reports and
    /// market data, published under the desk's lock, then the reports are delivered. Called by
    /// one thread per shard, in output order.
    pub fn apply(&self, shard: usize, batch: &[Emitted]) {
        if batch.is_empty() {
            return;
        }
        let mut outbox = lock(&self.outboxes[shard]);
        {
            let mut desk = self.desk();
            desk.apply(shard, batch, &mut outbox);
            for message in outbox.market_data.drain(..) {
                // No subscribers is not an error.
                let _ = self.feed.send(Arc::new(message));
            }
        }
        self.count(shard, batch, &outbox);
        if outbox.sends.is_empty() {
            return;
        }
        let mut routes = self.routes();
        for (account, message) in outbox.sends.drain(..) {
            deliver(&mut routes, &self.counters, account, message);
        }
    }

    /// Adds a batch's counts to the counters, and moves the shard's position on.
    fn count(&self, shard: usize, batch: &[Emitted], outbox: &Outbox) {
        let counters = &self.counters;
        counters.events.fetch_add(outbox.events, Ordering::Relaxed);
        counters
            .applied
            .fetch_add(outbox.applied, Ordering::Relaxed);
        for (counter, n) in counters.rejects.iter().zip(outbox.rejects) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        for item in batch {
            if let Emitted::Applied { command, .. } = item {
                // `ts` is the log's stamp: from sequencing to applied here.
                counters.applied_latency.record_since(command.ts.0);
            }
        }
        if let Some(next) = outbox.next_position {
            self.positions[shard].store(next, Ordering::Relaxed);
        }
    }

    /// A snapshot of `symbol` (`None` if it is not listed) and a feed subscription whose
    /// first book message for it is `seq + 1`.
    pub fn subscribe(
        &self,
        symbol: &Symbol,
        depth: usize,
    ) -> (Option<BookSnapshot>, broadcast::Receiver<Arc<MdMessage>>) {
        // Subscribed under the desk's lock: no message of the symbol between the two.
        let desk = self.desk();
        (desk.snapshot(symbol, depth), self.feed.subscribe())
    }

    /// The operator controls (each symbol's trading status, the kill-switched accounts) as
    /// the applied log set them: the same at every site at the same positions.
    pub fn controls(&self) -> Controls {
        self.desk().controls()
    }

    /// A snapshot of `symbol` alone (the HTTP endpoint, or a resync).
    pub fn snapshot(&self, symbol: &Symbol, depth: usize) -> Option<BookSnapshot> {
        self.desk().snapshot(symbol, depth)
    }
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

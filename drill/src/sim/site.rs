//! `SimSite`: one site in the simulator: the real engine and the real desk (what a member is
//! told), fed from the [`super::log::SimLog`] by a feeder, with the node's rules for what it
//! takes and answers (its own functions where they take a clock: [`node::freshness`],
//! [`node::shard::adds_risk`], [`node::shard::goes_to_a_silent_leader`],
//! [`gateway::idle_due`]), a producer that retries and gives up as librdkafka does, sessions
//! with cancel-on-disconnect, snapshots and state hashes on its disk.
//!
//! Everything is on simulated time (`now`, nanoseconds); the site's own clock is that plus its
//! skew. It does no I/O: what it sends goes into an `Out` list the world delivers.

use std::collections::BTreeMap;
use std::time::Duration;

use engine::runner::Emitted;
use engine::{
    AccountId, AmendOrder, CancelAfter, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, MassCancel, NewOrder, Symbol,
};
use gateway::desk::{judge_resend, Admission, Resend};
use gateway::{Desk, ExecType, GatewayReason, OrdStatus, Outbox, Report, SubmitError};
use node::freshness::Freshness;

use super::msg::{Msg, Req};
use super::Bug;

const MS: u64 = 1_000_000;

/// How the sites are set up (the same at every site).
#[derive(Clone, Debug)]
pub struct SiteConfig {
    pub engine: EngineConfig,
    pub symbol: Symbol,
    /// Behind its log by more than this, a site is catching up.
    pub max_lag: Duration,
    /// A site idle this long sends its clock.
    pub clock_every: Duration,
    /// A state hash every this many positions.
    pub hash_every: u64,
    /// A leader silent this long: the log is not available.
    pub log_silent_ns: u64,
    /// A produce unanswered this long is sent again.
    pub retry_ns: u64,
    /// A produce unanswered this long is given up (librdkafka's `delivery.timeout.ms`).
    pub delivery_timeout_ns: u64,
    /// A session not heard from this long is ended (three heartbeats).
    pub session_timeout_ns: u64,
    /// A planted bug (tests of the simulator only).
    pub bug: Option<Bug>,
}

/// What a site sends.
#[derive(Clone, Debug)]
pub enum Out {
    ToClient {
        client: usize,
        conn: u64,
        msg: Msg,
    },
    Produce {
        producer: u64,
        number: u64,
        command: Command,
    },
}

/// A logged-on session.
struct Session {
    client: usize,
    account: AccountId,
    /// Its id on the log (its orders' `session`).
    log_session: u64,
    cancel_on_disconnect: bool,
    last_heard: u64,
    last_refresh: u64,
}

/// A record sent to the log and not yet acknowledged.
struct Flight {
    command: Command,
    first: u64,
    last: u64,
}

/// The site's producer: one epoch (`id`) numbering its records from 0.
struct Producer {
    id: u64,
    next: u64,
    flights: BTreeMap<u64, Flight>,
}

/// A site that is up.
struct Running {
    engine: Engine,
    desk: Desk,
    outbox: Outbox,
    events: Vec<Event>,
    batch: Vec<Emitted>,
    /// The position of the next record to apply.
    next: u64,
    freshness: Freshness,
    started: u64,
    last_heard_log: u64,
    producer: Producer,
    sessions: BTreeMap<u64, Session>,
    /// When the log last took a command from here (the site's clock).
    last_submit: u64,
}

/// One site.
pub struct SimSite {
    pub index: usize,
    /// Added to simulated time for the site's clock.
    pub skew_ns: i64,
    /// Its disk: the newest snapshots by position, and every state hash it reported.
    pub snapshots: Vec<(u64, Vec<u8>)>,
    pub hashes: Vec<(u64, String)>,
    snapshot_every: u64,
    epochs: u64,
    run: Option<Running>,
}

impl SimSite {
    pub fn new(index: usize, snapshot_every: u64) -> SimSite {
        SimSite {
            index,
            skew_ns: 0,
            snapshots: Vec::new(),
            hashes: Vec::new(),
            snapshot_every: snapshot_every.max(1),
            epochs: 0,
            run: None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.run.is_some()
    }

    /// The position of the next record it applies (`None` while down).
    pub fn next(&self) -> Option<u64> {
        self.run.as_ref().map(|r| r.next)
    }

    /// Its engine's state hash now (`None` while down).
    pub fn state_hash(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        Some(run.engine.state_hash().to_string())
    }

    /// Its producer's current epoch (records of older ones may still arrive at the log).
    fn new_producer(&mut self) -> Producer {
        self.epochs += 1;
        Producer {
            id: ((self.index as u64) << 32) | self.epochs,
            next: 0,
            flights: BTreeMap::new(),
        }
    }

    /// Starts (or restarts) from its newest snapshot, or from nothing, reading from there on;
    /// `end` is the log's end as it can see it at start.
    pub fn start(&mut self, now: u64, config: &SiteConfig, end: u64) {
        let restored = self.snapshots.last().map(|(at, bytes)| {
            let engine = Engine::restore(bytes).expect("a snapshot this site wrote");
            (engine, *at)
        });
        let (engine, next) = restored.unwrap_or_else(|| {
            let engine = Engine::new(config.engine).expect("the simulator's engine config");
            (engine, 0)
        });
        let mut desk = Desk::new(1, config.engine.dedup_window_ns);
        desk.seed(0, &engine, next);
        let producer = self.new_producer();
        self.run = Some(Running {
            engine,
            desk,
            outbox: Outbox::default(),
            events: Vec::new(),
            batch: Vec::new(),
            next,
            freshness: Freshness::new(Some(config.max_lag), next, end.max(next)),
            started: now,
            last_heard_log: now,
            producer,
            sessions: BTreeMap::new(),
            last_submit: 0,
        });
    }

    /// The process dies: everything in memory is gone (its disk stays). Returns the sessions'
    /// (client, connection) that were open.
    pub fn crash(&mut self) -> Vec<(usize, u64)> {
        let run = self.run.take();
        run.map(|r| r.sessions.iter().map(|(c, s)| (s.client, *c)).collect())
            .unwrap_or_default()
    }

    fn clock(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew_ns)
    }

    /// Whether its log's leader answered lately (`LogHandle::available`).
    fn available(&self, now: u64, config: &SiteConfig) -> bool {
        let run = self.run.as_ref();
        run.is_some_and(|run| now.saturating_sub(run.last_heard_log) < config.log_silent_ns)
    }

    /// Whether it is behind its log by more than the lag (`Freshness::catching_up`).
    fn catching_up(&self, now: u64) -> bool {
        let run = self.run.as_ref();
        run.is_some_and(|run| run.freshness.catching_up_at((now - run.started) / MS))
    }

    /// Whether it takes orders and answers status questions now: the node's
    /// `ShardSequencer::ready`.
    pub fn ready(&self, now: u64, config: &SiteConfig) -> Result<(), SubmitError> {
        if !self.available(now, config) {
            Err(SubmitError::Unavailable)
        } else if self.catching_up(now) {
            Err(SubmitError::CatchingUp)
        } else {
            Ok(())
        }
    }

    /// The node's `ShardSequencer::submit`: refused while catching up (what adds risk) or
    /// while the leader is silent (all but the idle clock), else queued for the log.
    fn submit(
        &mut self,
        now: u64,
        config: &SiteConfig,
        kind: CommandKind,
        out: &mut Vec<Out>,
    ) -> Result<(), SubmitError> {
        if node::shard::adds_risk(&kind) && self.catching_up(now) {
            return Err(SubmitError::CatchingUp);
        }
        if !node::shard::goes_to_a_silent_leader(&kind) && !self.available(now, config) {
            return Err(SubmitError::Unavailable);
        }
        let stamp = self.clock(now);
        let run = self.run.as_mut().ok_or(SubmitError::Unavailable)?;
        let command = Command::new(stamp, kind);
        let number = run.producer.next;
        run.producer.next += 1;
        let flight = Flight {
            command,
            first: now,
            last: now,
        };
        run.producer.flights.insert(number, flight);
        run.last_submit = stamp;
        out.push(Out::Produce {
            producer: run.producer.id,
            number,
            command,
        });
        Ok(())
    }

    /// The log acknowledged `producer`'s record `number`.
    pub fn on_produced(&mut self, now: u64, producer: u64, number: u64) {
        if let Some(run) = self.run.as_mut() {
            run.last_heard_log = now;
            if run.producer.id == producer {
                run.producer.flights.remove(&number);
            }
        }
    }

    /// A fetch answered: `records` from position `from`, the log ending at `end`. Records
    /// before its position (a fetch that overlapped another, or delivered twice) are skipped.
    pub fn on_fetched(
        &mut self,
        now: u64,
        config: &SiteConfig,
        from: u64,
        records: &[(Command, u64)],
        end: u64,
        out: &mut Vec<Out>,
    ) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.last_heard_log = now;
        let reapply = config.bug == Some(Bug::ReapplyRedelivered);
        for (k, (command, _)) in records.iter().enumerate() {
            let position = from + k as u64;
            let next = self.next().unwrap_or(u64::MAX);
            if position == next || (reapply && position < next) {
                self.apply(config, position, command, out);
            }
        }
        if let Some(run) = self.run.as_ref() {
            let ms = (now - run.started) / MS;
            run.freshness.observe_at(run.next, end, ms);
        }
    }

    /// Applies the record at `position`: the engine, then the desk, whose messages go to the
    /// sessions of their accounts; a hash and a snapshot when due.
    fn apply(&mut self, config: &SiteConfig, position: u64, command: &Command, out: &mut Vec<Out>) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.events.clear();
        run.engine.apply(command, &mut run.events);
        run.batch.clear();
        run.batch
            .extend(run.events.iter().map(|e| Emitted::Event(*e)));
        run.batch.push(Emitted::Applied {
            position,
            command: *command,
        });
        run.desk.apply(0, &run.batch, &mut run.outbox);
        for (account, message) in run.outbox.sends.drain(..) {
            for (conn, session) in &run.sessions {
                if session.account == account {
                    let msg = Msg::Session(message);
                    out.push(to(session.client, *conn, msg));
                }
            }
        }
        run.next = position + 1;
        if run.next % config.hash_every == 0 {
            let hash = run.engine.state_hash().to_string();
            self.hashes.push((run.next, hash));
        }
        if run.next % self.snapshot_every == 0 {
            self.snapshots.push((run.next, run.engine.snapshot()));
            if self.snapshots.len() > 2 {
                self.snapshots.remove(0);
            }
        }
    }

    /// Every `tick`: the idle clock, the sessions' switch refreshes and timeouts, the
    /// producer's retries and give-ups.
    pub fn tick(&mut self, now: u64, config: &SiteConfig, out: &mut Vec<Out>) {
        let Some(run) = self.run.as_ref() else {
            return;
        };
        if gateway::idle_due(run.last_submit, self.clock(now), config.clock_every) {
            let _ = self.submit(now, config, CommandKind::Clock, out);
        }
        self.refresh_switches(now, config, out);
        self.end_silent_sessions(now, config, out);
        self.retry(now, config, out);
    }

    fn refresh_switches(&mut self, now: u64, config: &SiteConfig, out: &mut Vec<Out>) {
        let refresh = gateway::switch::COD_REFRESH.as_nanos() as u64;
        let due: Vec<(u64, AccountId, u64)> = self.run.as_ref().map_or(Vec::new(), |run| {
            run.sessions
                .iter()
                .filter(|(_, s)| s.cancel_on_disconnect && now - s.last_refresh >= refresh)
                .map(|(c, s)| (*c, s.account, s.log_session))
                .collect()
        });
        for (conn, account, session) in due {
            let _ = self.submit(now, config, arm(account, session), out);
            if let Some(s) = self.run.as_mut().and_then(|r| r.sessions.get_mut(&conn)) {
                s.last_refresh = now;
            }
        }
    }

    fn end_silent_sessions(&mut self, now: u64, config: &SiteConfig, out: &mut Vec<Out>) {
        let silent: Vec<u64> = self.run.as_ref().map_or(Vec::new(), |run| {
            run.sessions
                .iter()
                .filter(|(_, s)| now - s.last_heard >= config.session_timeout_ns)
                .map(|(c, _)| *c)
                .collect()
        });
        for conn in silent {
            self.end_session(now, config, conn, out);
        }
    }

    /// Ends a session cleanly: a cancel-on-disconnect session's orders are cancelled at once
    /// by session and its switch disarmed (`DeadMan::end`); the connection closes.
    fn end_session(&mut self, now: u64, config: &SiteConfig, conn: u64, out: &mut Vec<Out>) {
        let Some(session) = self.run.as_mut().and_then(|r| r.sessions.remove(&conn)) else {
            return;
        };
        if session.cancel_on_disconnect {
            let mass = CommandKind::MassCancel(MassCancel {
                account: session.account,
                symbol: None,
                session: Some(session.log_session),
            });
            let _ = self.submit(now, config, mass, out);
            let disarm = CommandKind::CancelAfter(CancelAfter {
                account: session.account,
                session: session.log_session,
                timeout_ns: 0,
            });
            let _ = self.submit(now, config, disarm, out);
        }
        out.push(to(session.client, conn, Msg::Closed));
    }

    /// Sends again what the log has not acknowledged for a while; past the delivery timeout,
    /// gives up every record in flight (they expire in order) and starts a new epoch.
    fn retry(&mut self, now: u64, config: &SiteConfig, out: &mut Vec<Out>) {
        let expired = self.run.as_ref().is_some_and(|run| {
            run.producer
                .flights
                .values()
                .next()
                .is_some_and(|f| now - f.first >= config.delivery_timeout_ns)
        });
        if expired {
            let producer = self.new_producer();
            if let Some(run) = self.run.as_mut() {
                run.producer = producer;
            }
            return;
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let id = run.producer.id;
        for (number, flight) in run.producer.flights.iter_mut() {
            if now - flight.last >= config.retry_ns {
                flight.last = now;
                out.push(Out::Produce {
                    producer: id,
                    number: *number,
                    command: flight.command,
                });
            }
        }
    }
}

/// A dead-man's switch armed (or refreshed) for the session, as `DeadMan` arms it.
fn arm(account: AccountId, session: u64) -> CommandKind {
    CommandKind::CancelAfter(CancelAfter {
        account,
        session,
        timeout_ns: gateway::switch::COD_TIMEOUT.as_nanos() as u64,
    })
}

fn to(client: usize, conn: u64, msg: Msg) -> Out {
    Out::ToClient { client, conn, msg }
}

impl SimSite {
    /// A request from `client` on connection `conn` (numbered by the world, never reused). A
    /// logon opens a session, whose log session id is drawn from the connection's number
    /// (unique, as the gateway's random ids are); anything on a connection the site does not
    /// know (it restarted since) is answered by closing it.
    pub fn on_request(
        &mut self,
        now: u64,
        config: &SiteConfig,
        (client, conn): (usize, u64),
        req: Req,
        out: &mut Vec<Out>,
    ) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if let Req::Logon {
            cancel_on_disconnect,
        } = req
        {
            let account = account_of(client);
            let log_session = flow::SplitMix64(conn).next_u64() | 1;
            let session = Session {
                client,
                account,
                log_session,
                cancel_on_disconnect,
                last_heard: now,
                last_refresh: now,
            };
            run.sessions.insert(conn, session);
            if cancel_on_disconnect {
                let _ = self.submit(now, config, arm(account, log_session), out);
            }
            out.push(to(client, conn, Msg::LogonOk));
            return;
        }
        let Some(session) = run.sessions.get_mut(&conn) else {
            out.push(to(client, conn, Msg::Closed));
            return;
        };
        session.last_heard = now;
        if matches!(req, Req::Bye) {
            self.end_session(now, config, conn, out);
            return;
        }
        let (account, log_session) = (session.account, session.log_session);
        let reply = self.answer(now, config, account, log_session, req, out);
        if let Some(msg) = reply {
            out.push(to(client, conn, msg));
        }
    }

    /// What a session's request does, and its immediate answer if it has one.
    fn answer(
        &mut self,
        now: u64,
        config: &SiteConfig,
        account: AccountId,
        session: u64,
        req: Req,
        out: &mut Vec<Out>,
    ) -> Option<Msg> {
        let symbol = config.symbol;
        let refused = |err: SubmitError| Some(Msg::SessionRefused(err.into()));
        // The session's account and log session on a member's new order.
        let own = |new: NewOrder| NewOrder {
            account,
            session,
            ..new
        };
        match req {
            Req::Logon { .. } => None,
            Req::Heartbeat => Some(Msg::Heartbeat),
            Req::Bye => None,
            Req::New(new) => self.new_order(now, config, own(new), out),
            Req::Resend { new, age_ms } => self.resend_order(now, config, own(new), age_ms, out),
            Req::Cancel(order_id) => {
                let cancel = CancelOrder {
                    account,
                    symbol,
                    order_id,
                };
                let kind = CommandKind::Cancel(cancel);
                self.submit(now, config, kind, out).err().and_then(refused)
            }
            Req::Amend { id, qty } => {
                let amend = AmendOrder {
                    account,
                    symbol,
                    order_id: id,
                    price: None,
                    qty: Some(qty),
                    new_order_id: None,
                };
                let kind = CommandKind::Amend(amend);
                self.submit(now, config, kind, out).err().and_then(refused)
            }
            Req::MassCancel => {
                let mass = MassCancel {
                    account,
                    symbol: None,
                    session: None,
                };
                let kind = CommandKind::MassCancel(mass);
                self.submit(now, config, kind, out).err().and_then(refused)
            }
            Req::Status(id) => Some(match self.ready(now, config) {
                Err(err) => Msg::SessionRefused(err.into()),
                Ok(()) => Msg::Status {
                    id,
                    report: self.order_state(account, &id),
                },
            }),
            // Answered ready or not, as the binary server does: the state at the site's
            // position, and what it applies later reaches the session.
            Req::MassStatus => Some(Msg::MassStatus(self.mass_status(account))),
        }
    }

    /// A new order resent `age_ms` after its first sending: sent on, answered with its state,
    /// or refused as `stale_resend` (`judge_resend`, the gateway's rule).
    fn resend_order(
        &mut self,
        now: u64,
        config: &SiteConfig,
        new: NewOrder,
        age_ms: u64,
        out: &mut Vec<Out>,
    ) -> Option<Msg> {
        let ready = self.ready(now, config).is_ok();
        let known = self.order_state(new.account, &new.order_id);
        // The simulated producers give a record up after their delivery timeout.
        let window = (config.engine.dedup_window_ns, config.delivery_timeout_ns);
        match judge_resend(age_ms, window, ready, known) {
            Resend::Send => self.new_order(now, config, new, out),
            Resend::Answer(state) => Some(Msg::Session(gateway::ToSession::Report(*state))),
            Resend::Stale => Some(Msg::Refused {
                id: new.order_id,
                reason: GatewayReason::StaleResend,
            }),
        }
    }

    /// A new order: the hub's admission, then the log; refused, a rejected report.
    fn new_order(
        &mut self,
        now: u64,
        config: &SiteConfig,
        new: NewOrder,
        out: &mut Vec<Out>,
    ) -> Option<Msg> {
        let run = self.run.as_mut()?;
        if let Admission::Known(original) = run.desk.submitted(0, &new) {
            return original.map(|report| Msg::Session(gateway::ToSession::Report(*report)));
        }
        match self.submit(now, config, CommandKind::New(new), out) {
            Err(err) => {
                if let Some(run) = self.run.as_mut() {
                    run.desk.refused(&new);
                }
                Some(Msg::Refused {
                    id: new.order_id,
                    reason: err.into(),
                })
            }
            Ok(()) if config.bug == Some(Bug::AckBeforeCommit) => {
                Some(Msg::Session(gateway::ToSession::Report(early_ack(&new))))
            }
            Ok(()) => None,
        }
    }

    /// The desk's answer to a status question about the account's order.
    pub fn order_state(&self, account: AccountId, id: &engine::OrderId) -> Option<Report> {
        let run = self.run.as_ref()?;
        run.desk.order_state(0, account, id).map(|r| r.status())
    }

    /// The desk's answer to a mass status request of the account.
    pub fn mass_status(&self, account: AccountId) -> Vec<Report> {
        self.run
            .as_ref()
            .map_or(Vec::new(), |run| run.desk.mass_status(account))
    }
}

/// The account a client logs on as (its token names it).
pub fn account_of(client: usize) -> AccountId {
    AccountId(client as u64 + 1)
}

/// The planted bug's acknowledgement: "new", sent as the order goes to the log.
fn early_ack(new: &NewOrder) -> Report {
    Report {
        price: new.price,
        order_qty: new.qty,
        leaves_qty: new.qty,
        ..Report::blank(
            new.account,
            new.order_id,
            new.symbol,
            new.side,
            ExecType::New,
            OrdStatus::New,
        )
    }
}

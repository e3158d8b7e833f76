//! A binary order-entry client that survives its site going dark.
//!
//! [`FailoverClient`] knows every site's gateway. It stays logged on at one; when that site
//! stops answering (the connection closes, an order goes unanswered for
//! [`FailoverConfig::ack_timeout`], or nothing at all comes for
//! [`FailoverConfig::silence_timeout`] although the client asked with a test request), it logs
//! on at the next site that answers, reconciles and resends:
//!
//! 1. every order sent but not yet acknowledged is asked for by an `OrderStatus` request: an
//!    order the new site knows (it reached the log before the old site died) is acknowledged
//!    from its state;
//! 2. every order the new site does not know is resent with the **same client order id**. If
//!    it did reach the log after all (the status was asked before the new site applied it),
//!    the engine refuses the second copy as a duplicate and the gateway answers with the
//!    original's state: a client order id is never executed twice.
//!
//! An order is acknowledged only by a report the engine caused (new, fill, engine reject, or
//! state). A gateway refusal (busy, unavailable, catching up, throttled) means the order never
//! reached the log: it stays unacknowledged and is sent again after
//! [`FailoverConfig::retry_after`]. An "unavailable" (the site cannot reach the log) or a
//! "catching up" (the site is far behind it: a restarted site replaying its backlog) also
//! moves the client to the next site, unless every site has refused lately
//! ([`FailoverConfig::stay_when_all_refused`]): then the log itself is slow or down, and the
//! client stays where it is, still hearing the reports its site pushes as it applies the log.
//! (Circling instead, members heard of nothing for longer than the sites remember finished
//! orders, and missed fills; the simulator's `--log-overload`.) While it stays it looks at
//! the other sites in turn and moves to the first that answers a status question.
//!
//! A resend carries its first sending's age; the venue refuses one older than it remembers
//! ids as `stale_resend` unless it knows the order, and the client then gives the order up:
//! its outcome is unknown to the member (counted, [`ClientCounts::stale_resends`]), which
//! knows it lost track of it ([`FailoverClient::lost_track`]), as of an order the engine
//! refused while another copy may still be on its way.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use engine::{AccountId, OrderId, Qty, Symbol};
use gateway::binary::{
    exec_type, msg_type, ord_status, reason, session_reject, ClientMessage, ExecReport,
    NewOrderMsg, ServerMessage,
};
use gateway::binary_client::BinaryClient;

use crate::wire::{Login, ReplaceAs, Wire};

/// A session silent this long sends a heartbeat (the server's interval is 30 s).
const IDLE_HEARTBEAT: Duration = Duration::from_secs(10);

/// How long a probe of the first site (a logon and a status question) may take: a live,
/// ready site answers in milliseconds.
pub(crate) const HOME_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// How often a client staying at a refusing site looks at another site (a probe as of the
/// first site): a site that has caught up is found within a few of these.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(300);

/// The site a client staying at `site` of `sites` looks at on its `looks`-th look: the
/// others in turn.
pub(crate) fn look_site(site: usize, looks: usize, sites: usize) -> usize {
    (site + 1 + looks % (sites - 1)) % sites
}

/// Where the sites are and how patient to be.
#[derive(Clone, Debug)]
pub struct FailoverConfig {
    /// Every site's listener (binary, or FIX for a FIX member); the client starts at the
    /// first and moves round the list.
    pub sites: Vec<SocketAddr>,
    /// Who logs on (the same member is known at every site), with or without
    /// cancel-on-disconnect: the session's orders end with it (at once when it ends cleanly,
    /// by the dead-man's switch on the log when its site goes dark).
    pub login: Login,
    /// An order unanswered this long means the site stopped answering.
    pub ack_timeout: Duration,
    /// After this long without a frame from the site, the client sends a test request (a
    /// Heartbeat with a test id, which the gateway answers at once).
    pub probe_after: Duration,
    /// Nothing from the site for this long, a test request included, means it stopped
    /// answering: a frozen process, or a host gone dark without closing its connections.
    pub silence_timeout: Duration,
    /// How long one logon attempt may take.
    pub connect_timeout: Duration,
    /// How long to wait before trying the sites again when none answered, and the first
    /// pause after a gateway refusal (busy, unavailable, throttled). Refusals in a row double
    /// the pause, up to [`FailoverConfig::backoff_max`]; an acknowledgement resets it.
    pub retry_after: Duration,
    pub backoff_max: Duration,
    /// After a failover, how often to try the first site again; the client moves back once
    /// that site has taken the probe's logon and answered its status question for
    /// [`FailoverConfig::home_settle`] (it has restarted and caught up meanwhile). `None`:
    /// stay where it is.
    pub home_every: Option<Duration>,
    pub home_settle: Duration,
    /// A site refusing for the log's sake (unavailable, catching up, clock skew) is left for
    /// the next, unless every other site refused too within this long: then the log itself
    /// is slow or down, and the client stays logged on where it is (the site still pushes its
    /// reports as it applies the log; moving would lose them), asking again after its pause.
    pub stay_when_all_refused: Duration,
}

impl FailoverConfig {
    /// A binary member's: its token is all it logs on with (its account comes back).
    pub fn new(sites: Vec<SocketAddr>, token: &str) -> FailoverConfig {
        FailoverConfig {
            sites,
            login: Login {
                name: String::new(),
                token: token.into(),
                account: AccountId(0),
                cancel_on_disconnect: false,
            },
            ack_timeout: Duration::from_secs(3),
            probe_after: Duration::from_millis(250),
            silence_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            retry_after: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            home_every: Some(Duration::from_secs(3)),
            home_settle: Duration::from_secs(6),
            stay_when_all_refused: Duration::from_secs(5),
        }
    }
}

/// The engine's decision on an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In the log and accepted by the engine (its report, or its state after a failover).
    Accepted,
    /// In the log and refused by the engine, with the binary reason code.
    Rejected(u8),
}

/// An acknowledged order.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub cl_ord_id: OrderId,
    pub outcome: Outcome,
    /// The site (index into [`FailoverConfig::sites`]) that acknowledged it.
    pub site: usize,
    /// When the order was first sent, and when it was acknowledged.
    pub sent: Instant,
    pub at: Instant,
}

/// One move from a site that stopped answering to another.
#[derive(Clone, Copy, Debug)]
pub struct Failover {
    pub from: usize,
    pub to: usize,
    /// Why the client left `from`: `closed`, `logout`, `silent`, `ack_timeout`,
    /// `unavailable`, `catching_up`, `clock_skew`, or `found_ready` (it was staying at a
    /// refusing site and found another answering).
    pub why: &'static str,
    /// When the client noticed, and when it was logged on at `to`.
    pub detected: Instant,
    pub logged_on: Instant,
    /// Unacknowledged orders then: those the new site knew, and those resent.
    pub known: usize,
    pub resent: usize,
}

/// An order sent and not yet acknowledged.
#[derive(Clone, Copy, Debug)]
struct Pending {
    order: NewOrderMsg,
    first_sent: Instant,
    /// When it was last sent; `None` while it waits to be sent (again).
    sent: Option<Instant>,
    /// Not before this (after a gateway refusal).
    not_before: Instant,
    /// Sent at least once: sent again, it carries the resend flag and its age.
    resend: bool,
    /// Copies sent that may have reached the log (not refused before it).
    copies: u32,
}

/// The report that told a member an order's fill (the latest that raised it): what kind of
/// report, where and when; a failing fills check names it.
#[derive(Clone, Copy, Debug)]
pub struct ToldBy {
    pub exec_type: u8,
    pub ord_status: u8,
    /// The id the report named, when the fill moved to this order from it (a replace).
    pub moved_from: Option<OrderId>,
    pub site: usize,
    pub at: Instant,
}

/// Counts of what the client met.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientCounts {
    pub sent: u64,
    /// Orders a gateway refused without logging them, by reason.
    pub refused_busy: u64,
    pub refused_unavailable: u64,
    pub refused_catching_up: u64,
    pub refused_clock_skew: u64,
    pub refused_throttled: u64,
    /// Moves back to the first site after a failover.
    pub returns_home: u64,
    /// Refusals after which it stayed where it was, every site having refused lately.
    pub stays: u64,
    /// Moves while staying, to another site found answering.
    pub found_ready: u64,
    /// Orders given up: resent from longer ago than the venue remembers ids and refused as
    /// `stale_resend`; the member does not know whether they executed.
    pub stale_resends: u64,
    pub duplicates_answered: u64,
    pub fills: u64,
}

/// A member's session that fails over between sites, over the binary protocol or another
/// [`Wire`].
pub struct FailoverClient<W = BinaryClient> {
    config: FailoverConfig,
    site: usize,
    conn: Option<W>,
    account: AccountId,
    pending: BTreeMap<OrderId, Pending>,
    failovers: Vec<Failover>,
    counts: ClientCounts,
    last_sent: Instant,
    /// When the current site was last heard from, and when a test request went out since.
    last_heard: Instant,
    probed: Option<Instant>,
    tests_sent: u64,
    /// Since when the client has had no site (the first detection of the current outage).
    down_since: Option<Instant>,
    /// Why the client is leaving its site (the first reason met), until it has moved.
    leaving: Option<&'static str>,
    /// Refusals (unavailable, catching up) since the last acknowledgement.
    refusals: u32,
    /// When each site last refused for the log's sake.
    refused_at: Vec<Option<Instant>>,
    /// Since when it has stayed at a refusing site (every site had refused lately), and when
    /// it looks at another site next, and how many looks it has had (which site is next).
    staying: Option<Instant>,
    next_look: Instant,
    looks: usize,
    /// The site the client started at, and since when it has been ready at every probe.
    home: usize,
    home_up_since: Option<Instant>,
    next_home_probe: Instant,
    /// No new sends before this (after gateway refusals), and the current pause.
    hold_until: Instant,
    backoff: Duration,
    /// When each mass status it asked after a move was answered in full.
    mass_answered: Vec<Instant>,
    /// The most filled quantity the member was told of, per order (reports, status answers).
    told: BTreeMap<OrderId, Qty>,
    /// The report behind each of `told`'s figures.
    told_by: BTreeMap<OrderId, ToldBy>,
    /// Orders it knows it lost track of: given up as stale resends, or refused by the engine
    /// after more than one copy went out; until a report of the order (not a refusal).
    lost_track: BTreeSet<OrderId>,
    /// FIX replaces sent: the new id, and the id the order went by before.
    replaced: BTreeMap<OrderId, OrderId>,
    /// FIX replaces seen to take (a report named the new id): the old id, and the new.
    renamed: BTreeMap<OrderId, OrderId>,
    /// The symbol of the latest order submitted: the home probe asks a status question on it.
    traded: Option<Symbol>,
    /// Where the mass status the last move calls for stands.
    mass_status: MassStatus,
    /// When an order was last acknowledged.
    last_ack: Option<Instant>,
}

impl<W: Wire> FailoverClient<W> {
    /// Logs on at the first site that answers, starting with `first`.
    pub async fn connect(config: FailoverConfig, first: usize) -> io::Result<FailoverClient<W>> {
        if config.sites.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no sites"));
        }
        let home = first % config.sites.len();
        let sites = config.sites.len();
        let mut client = FailoverClient {
            site: home,
            config,
            conn: None,
            account: AccountId(0),
            pending: BTreeMap::new(),
            failovers: Vec::new(),
            counts: ClientCounts::default(),
            last_sent: Instant::now(),
            last_heard: Instant::now(),
            probed: None,
            tests_sent: 0,
            down_since: None,
            leaving: None,
            refusals: 0,
            refused_at: vec![None; sites],
            staying: None,
            next_look: Instant::now(),
            looks: 0,
            home,
            home_up_since: None,
            next_home_probe: Instant::now(),
            hold_until: Instant::now(),
            backoff: Duration::ZERO,
            told: BTreeMap::new(),
            told_by: BTreeMap::new(),
            lost_track: BTreeSet::new(),
            replaced: BTreeMap::new(),
            renamed: BTreeMap::new(),
            traded: None,
            mass_status: MassStatus::Done,
            mass_answered: Vec::new(),
            last_ack: None,
        };
        let deadline = Instant::now() + client.config.connect_timeout * 10;
        while !client.try_logon(client.site).await {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "no site accepted the logon",
                ));
            }
            client.site = (client.site + 1) % client.config.sites.len();
            tokio::time::sleep(client.config.retry_after).await;
        }
        Ok(client)
    }

    /// The member's account (from the logon).
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The site the client is logged on at (or last was).
    pub fn site(&self) -> usize {
        self.site
    }

    /// Orders sent and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.pending.len()
    }

    pub fn failovers(&self) -> &[Failover] {
        &self.failovers
    }

    pub fn counts(&self) -> ClientCounts {
        self.counts
    }

    /// Whether it logs on with cancel-on-disconnect.
    pub fn cancel_on_disconnect(&self) -> bool {
        self.config.login.cancel_on_disconnect
    }

    /// When each mass status it asked after a move was answered in full.
    pub fn mass_answered(&self) -> &[Instant] {
        &self.mass_answered
    }

    /// Replaces it sent whose new id no report has named yet: new id -> the id it replaced.
    pub fn replaced(&self) -> &BTreeMap<OrderId, OrderId> {
        &self.replaced
    }

    /// The most filled quantity the member was told of, per order: from its reports, and
    /// from the mass status it asks for after every move (fills while it was between sites).
    pub fn told(&self) -> &BTreeMap<OrderId, Qty> {
        &self.told
    }

    /// The report behind each of [`Self::told`]'s figures.
    pub fn told_by(&self) -> &BTreeMap<OrderId, ToldBy> {
        &self.told_by
    }

    /// Orders it knows it lost track of (their fills unknown to it): given up as stale
    /// resends, or refused by the engine with another copy possibly still on its way.
    pub fn lost_track(&self) -> &BTreeSet<OrderId> {
        &self.lost_track
    }

    /// Sends a new order; it is followed until acknowledged, across failovers. An id already
    /// waiting for its acknowledgement is refused.
    pub async fn submit(&mut self, order: NewOrderMsg) -> io::Result<()> {
        if self.pending.contains_key(&order.cl_ord_id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "that client order id is waiting for its acknowledgement",
            ));
        }
        let now = Instant::now();
        self.traded = Some(order.symbol);
        self.pending.insert(
            order.cl_ord_id,
            Pending {
                order,
                first_sent: now,
                sent: None,
                not_before: now,
                resend: false,
                copies: 0,
            },
        );
        self.send_due().await;
        Ok(())
    }

    /// Reads answers until `until`, failing over when the site stops answering; returns the
    /// acknowledgements.
    pub async fn pump(&mut self, until: Instant) -> Vec<Ack> {
        let mut acks = Vec::new();
        loop {
            if (self.conn.is_none() || self.overdue()) && !self.fail_over(&mut acks, until).await {
                return acks;
            }
            self.maybe_return_home(&mut acks).await;
            self.look_while_staying(&mut acks).await;
            self.send_due().await;
            self.ask_mass_status_when_due().await;
            let now = Instant::now();
            if now >= until {
                return acks;
            }
            if now.duration_since(self.last_sent) > IDLE_HEARTBEAT {
                self.send(&ClientMessage::Heartbeat { test_id: 0 }).await;
            }
            self.probe_if_quiet().await;
            // Wake for the caller's deadline, or to resend or check for overdue orders.
            let wake = until.min(now + self.config.retry_after);
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            match tokio::time::timeout_at(wake.into(), conn.recv()).await {
                Err(_) => {}
                Ok(Ok(Some(message))) => self.on_message(message, &mut acks),
                Ok(Ok(None)) | Ok(Err(_)) => self.leave("closed"),
            }
        }
    }

    /// Waits until every order is acknowledged and the mass status asked since the last move
    /// answered, or `timeout` passes; returns the acknowledgements.
    pub async fn drain(&mut self, timeout: Duration) -> Vec<Ack> {
        let deadline = Instant::now() + timeout;
        let mut acks = Vec::new();
        let busy = |c: &Self| !c.pending.is_empty() || c.mass_status != MassStatus::Done;
        while busy(self) && Instant::now() < deadline {
            let until = (Instant::now() + Duration::from_millis(50)).min(deadline);
            acks.extend(self.pump(until).await);
        }
        acks
    }

    /// Sends a request that needs no acknowledgement tracking (mass cancel, heartbeat) on the
    /// current site; false if it could not be sent.
    pub async fn send(&mut self, message: &ClientMessage) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let sent = conn.send(message).await.is_ok();
        self.after_send(sent)
    }

    /// A request went (the session was active) or could not (the site is gone): says which.
    fn after_send(&mut self, sent: bool) -> bool {
        if sent {
            self.last_sent = Instant::now();
        } else {
            self.leave("closed");
        }
        sent
    }

    /// Sends FIX's replace (the order goes by a new id from then on) on the current site;
    /// false if it could not be sent. Fills the member was told of under the old id go
    /// with the order to the new one once a report names it (as the history keeps them).
    pub async fn replace_as(&mut self, replace: ReplaceAs) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let sent = conn.replace_as(&replace).await.is_ok();
        if sent {
            self.replaced.insert(replace.new_id, replace.order);
        }
        self.after_send(sent)
    }

    /// An order unanswered for the ack timeout, or the site silent for the silence timeout: a
    /// test request unanswered for the part of it after the probe. Counted from the probe,
    /// not from the last frame: a client that has not read for a while (busy elsewhere) has
    /// not been ignored by the site (seen: the drill's audit client, pausing between its
    /// reads, moved round every site again and again).
    fn overdue(&self) -> bool {
        self.silent() || self.ack_overdue()
    }

    fn silent(&self) -> bool {
        let unanswered = self
            .config
            .silence_timeout
            .saturating_sub(self.config.probe_after);
        self.probed.is_some_and(|at| at.elapsed() > unanswered)
    }

    fn ack_overdue(&self) -> bool {
        let now = Instant::now();
        self.pending.values().any(|p| {
            p.sent
                .is_some_and(|sent| now.duration_since(sent) > self.config.ack_timeout)
        })
    }

    /// Why an overdue site is left.
    fn overdue_why(&self) -> &'static str {
        if self.silent() {
            "silent"
        } else if self.ack_overdue() {
            "ack_timeout"
        } else {
            "closed"
        }
    }

    /// Sends a test request when the site has been quiet for the probe interval and none is
    /// out yet.
    async fn probe_if_quiet(&mut self) {
        if self.conn.is_none()
            || self.probed.is_some()
            || self.last_heard.elapsed() < self.config.probe_after
        {
            return;
        }
        self.tests_sent += 1;
        let test_id = self.tests_sent;
        let sent = self.send(&ClientMessage::Heartbeat { test_id }).await;
        self.probed = sent.then(Instant::now);
    }

    /// The site answered: it is alive.
    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.probed = None;
    }

    /// Sends every order waiting to be sent whose time has come.
    async fn send_due(&mut self) {
        let now = Instant::now();
        if self.conn.is_none() || now < self.hold_until {
            return;
        }
        let due: Vec<OrderId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent.is_none() && p.not_before <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let p = self.pending[&id];
            let message = if p.resend {
                let age_ms = now.duration_since(p.first_sent).as_millis();
                ClientMessage::ResendOrder {
                    order: p.order,
                    age_ms: u32::try_from(age_ms).unwrap_or(u32::MAX),
                }
            } else {
                ClientMessage::NewOrder(p.order)
            };
            if !self.send(&message).await {
                return;
            }
            self.counts.sent += 1;
            if let Some(p) = self.pending.get_mut(&id) {
                p.sent = Some(now);
                p.resend = true;
                p.copies += 1;
            }
        }
    }

    fn on_message(&mut self, message: ServerMessage, acks: &mut Vec<Ack>) {
        self.heard();
        match message {
            ServerMessage::ExecutionReport(report) => self.on_report(&report, acks),
            ServerMessage::Logout { .. } => self.leave("logout"),
            ServerMessage::MassStatusReport { .. } if self.mass_status == MassStatus::Asked => {
                self.mass_status = MassStatus::Done;
                self.mass_answered.push(Instant::now());
            }
            ServerMessage::SessionReject {
                code:
                    code @ (session_reject::UNAVAILABLE
                    | session_reject::CATCHING_UP
                    | session_reject::CLOCK_SKEW),
                ..
            } => {
                // A status question (or a mass cancel) the site cannot answer: it is cut off
                // from the log, far behind it, or its clock is wrong. Another site can, unless
                // every site is refusing (a leader move, Kafka down): the refusals in a row
                // pace the moves.
                self.refused_here(code as u8);
            }
            ServerMessage::SessionReject {
                rejected_type: msg_type::MASS_STATUS,
                ..
            } => {
                // Busy or throttled: asked again after the next acknowledgement here.
                self.mass_status = MassStatus::Due(Instant::now());
            }
            ServerMessage::SessionReject {
                rejected_type: msg_type::NEW_ORDER,
                ..
            } => {
                // A new order refused by the session (throttled): nothing tells which, so
                // every order in flight is sent again later (a copy that did get in is
                // answered as a duplicate with its state).
                self.requeue_in_flight();
            }
            _ => {}
        }
    }

    /// The id the order `id` names goes by now, after the replaces the member has seen take.
    fn current_id(&self, id: OrderId) -> OrderId {
        let mut now = id;
        // A chain of replaces never loops; the bound guards against one that would.
        for _ in 0..self.renamed.len() {
            match self.renamed.get(&now) {
                Some(next) => now = *next,
                None => break,
            }
        }
        now
    }

    /// The member has been told `order` filled `qty` (at least), by `report`, or by a
    /// report under an id it replaced (`moved_from`) when the replace's report came.
    fn tell(&mut self, order: OrderId, qty: Qty, report: &ExecReport, moved_from: Option<OrderId>) {
        let told = self.told.entry(order).or_insert(Qty(0));
        if qty <= *told {
            return;
        }
        *told = qty;
        let by = ToldBy {
            exec_type: report.exec_type,
            ord_status: report.ord_status,
            moved_from,
            site: self.site,
            at: Instant::now(),
        };
        self.told_by.insert(order, by);
    }

    /// A report names the new id of the replace of `before`: the replace took. What was told
    /// under the old id is the order's, by the new one.
    fn replace_took(&mut self, before: OrderId, report: &ExecReport, acks: &mut Vec<Ack>) {
        let id = report.cl_ord_id;
        self.renamed.insert(before, id);
        if let Some(filled) = self.told.remove(&before) {
            self.told_by.remove(&before);
            self.tell(id, filled, report, Some(before));
        }
        // So the order it replaced is in the log: a report under the new id (a status answer
        // after a move names the order by the id it goes by now) acknowledges it if its own
        // acknowledgement was missed. Waiting for one under the old id, a client resent the
        // order once the sites had forgotten it: executed twice.
        if self.pending.contains_key(&before) {
            self.acknowledge(before, Outcome::Accepted, acks);
        }
    }

    fn on_report(&mut self, report: &ExecReport, acks: &mut Vec<Ack>) {
        let id = report.cl_ord_id;
        if let Some(before) = self.replaced.remove(&id) {
            self.replace_took(before, report, acks);
        }
        if report.ord_status != ord_status::REJECTED {
            // Whatever it had lost track of, it hears of now, fills so far included.
            self.lost_track.remove(&id);
        }
        if report.cum_qty.0 > 0 {
            // Under an id the order has given up (a site behind the replace answering about
            // it), the fills are the order's, by the id it goes by now.
            let now = self.current_id(id);
            self.tell(now, report.cum_qty, report, (now != id).then_some(id));
        }
        if !self.pending.contains_key(&id) {
            if report.last_qty.0 > 0 {
                self.counts.fills += 1;
            }
            return;
        }
        let outcome = match (report.exec_type, report.reason) {
            (exec_type::REJECTED, code) if reason::is_refusal(code) => {
                self.on_refused(id, code);
                return;
            }
            (exec_type::REJECTED, reason::STALE_RESEND) => {
                // First sent longer ago than the venue remembers ids, and the site does not
                // know it: it may have executed and been forgotten, so it must not be sent
                // again. Its outcome is unknown to the member (a missed fill if it traded).
                self.pending.remove(&id);
                self.counts.stale_resends += 1;
                self.lost_track.insert(id);
                return;
            }
            (_, reason::UNKNOWN_ORDER) if report.exec_type == exec_type::ORDER_STATUS => {
                // A status answer: this site has not seen it; send it (again).
                if let Some(p) = self.pending.get_mut(&id) {
                    p.sent = None;
                }
                return;
            }
            (exec_type::REJECTED, reason::DUPLICATE_ORDER_ID) => {
                // Already in the log (the gateway had no state to answer with).
                self.counts.duplicates_answered += 1;
                Outcome::Accepted
            }
            (exec_type::ORDER_STATUS, _) if report.ord_status == ord_status::REJECTED => {
                Outcome::Rejected(report.reason)
            }
            (exec_type::REJECTED, code) => Outcome::Rejected(code),
            _ => Outcome::Accepted,
        };
        if matches!(outcome, Outcome::Rejected(_)) && self.pending[&id].copies > 1 {
            // The engine refused one copy; another, sent later, may still reach the log and
            // be taken as a new order (a refused id is not remembered).
            self.lost_track.insert(id);
        }
        self.acknowledge(id, outcome, acks);
    }

    /// The pending order `id` is in the log, with `outcome`: acknowledged.
    fn acknowledge(&mut self, id: OrderId, outcome: Outcome, acks: &mut Vec<Ack>) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        self.backoff = Duration::ZERO;
        self.refusals = 0;
        self.staying = None;
        self.last_ack = Some(Instant::now());
        acks.push(Ack {
            cl_ord_id: id,
            outcome,
            site: self.site,
            sent: pending.first_sent,
            at: Instant::now(),
        });
    }

    /// A new order the gateway refused without logging it: sent again later. A site that
    /// cannot reach the log (cut off, or its journal failed) or is far behind it sends the
    /// client to the next site; busy and throttled are this member's to wait out where it is.
    fn on_refused(&mut self, id: OrderId, code: u8) {
        if let Some(p) = self.pending.get_mut(&id) {
            // That copy never reached the log.
            p.copies = p.copies.saturating_sub(1);
        }
        match code {
            reason::BUSY => self.counts.refused_busy += 1,
            reason::UNAVAILABLE => self.counts.refused_unavailable += 1,
            reason::CATCHING_UP => self.counts.refused_catching_up += 1,
            reason::CLOCK_SKEW => self.counts.refused_clock_skew += 1,
            _ => self.counts.refused_throttled += 1,
        }
        self.requeue(id);
        if matches!(
            code,
            reason::UNAVAILABLE | reason::CATCHING_UP | reason::CLOCK_SKEW
        ) {
            self.refused_here(code);
        } else {
            self.back_off();
        }
    }

    /// The site refused for itself (`code`: cut off from the log, far behind it, or its
    /// clock wrong): leave it. The moves are paced: the first at once, the next after a
    /// pause, doubled each time while sites are cut off (the whole log may be down: a leader
    /// move, Kafka down), but not while they are catching up or skewed (another site may be
    /// ready already).
    fn refused_here(&mut self, code: u8) {
        self.refusals += 1;
        if code == reason::UNAVAILABLE {
            self.back_off();
        } else {
            self.backoff = self.config.retry_after;
            self.hold_until = self.hold_until.max(Instant::now() + self.backoff);
        }
        let now = Instant::now();
        self.refused_at[self.site] = Some(now);
        let lately = |at: &Option<Instant>| {
            at.is_some_and(|at| now.duration_since(at) < self.config.stay_when_all_refused)
        };
        if self.refused_at.iter().all(lately) {
            // Every site refuses: stay, ask again here after the pause, and look at the
            // others meanwhile.
            self.counts.stays += 1;
            self.staying.get_or_insert(now);
            self.requeue_in_flight();
            if self.mass_status == MassStatus::Asked {
                self.mass_status = MassStatus::Due(now);
            }
            return;
        }
        self.leave(match code {
            reason::CATCHING_UP => "catching_up",
            reason::CLOCK_SKEW => "clock_skew",
            _ => "unavailable",
        });
    }

    /// Drops the connection to the site; `why` is the move's reason unless one was met first.
    fn leave(&mut self, why: &'static str) {
        self.conn = None;
        self.leaving.get_or_insert(why);
    }

    fn requeue(&mut self, id: OrderId) {
        let later = Instant::now() + self.config.retry_after;
        if let Some(p) = self.pending.get_mut(&id) {
            p.sent = None;
            p.not_before = later;
        }
    }

    /// A refusal: hold every send for the current pause, doubled each refusal in a row.
    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2)
            .max(self.config.retry_after)
            .min(self.config.backoff_max);
        self.hold_until = self.hold_until.max(Instant::now() + self.backoff);
    }

    /// Away from the first site: probes it now and then, and moves back (reconciling like a
    /// failover) once it has been ready for `home_settle`: it took the probe's logon and
    /// answered its status question (a site that took logons but refused orders, cut off
    /// from the log or replaying its backlog, once drew clients home only to send them away
    /// again at once).
    async fn maybe_return_home(&mut self, acks: &mut Vec<Ack>) {
        let Some(every) = self.config.home_every else {
            return;
        };
        let now = Instant::now();
        if self.site == self.home || self.conn.is_none() || now < self.next_home_probe {
            return;
        }
        self.next_home_probe = now + every;
        let Some((conn, account)) = self.probe(self.home).await else {
            self.home_up_since = None;
            return;
        };
        let up_since = *self.home_up_since.get_or_insert(now);
        if now.duration_since(up_since) < self.config.home_settle {
            return;
        }
        self.arrive(self.home, conn, account);
        self.home_up_since = None;
        self.counts.returns_home += 1;
        self.reconcile(acks).await;
        self.moved_here();
    }

    /// Staying at a site that refuses (every site had refused lately): looks at the other
    /// sites in turn, one every [`LOOK_EVERY`], and moves to the first that takes a logon
    /// and answers a status question. Seen in the mixed drill without it: a freeze's clients
    /// went to two catching-up sites, back to the frozen one once it resumed, and stayed
    /// there (every site had refused them) until it was ready 6 s later, while another site
    /// had been ready for seconds.
    async fn look_while_staying(&mut self, acks: &mut Vec<Ack>) {
        let now = Instant::now();
        let Some(since) = self.staying else {
            return;
        };
        let sites = self.config.sites.len();
        if self.conn.is_none() || now < self.next_look || sites < 2 {
            return;
        }
        self.next_look = now + LOOK_EVERY;
        self.looks += 1;
        let site = look_site(self.site, self.looks, sites);
        let Some((conn, account)) = self.probe(site).await else {
            return;
        };
        let from = self.site;
        self.arrive(site, conn, account);
        self.refused_at[site] = None;
        self.counts.found_ready += 1;
        let logged_on = Instant::now();
        let (known, resent) = self.reconcile(acks).await;
        self.moved_here();
        self.failovers.push(Failover {
            from,
            to: site,
            why: "found_ready",
            detected: since,
            logged_on,
            known,
            resent,
        });
    }

    /// A fresh session at `site` if it takes a logon and answers a status question within
    /// [`HOME_PROBE_TIMEOUT`]. Short: the probe holds up reading the current site's answers,
    /// and a frozen or cut-off site never answers (with the whole connect timeout, a client
    /// that had just moved read nothing for a second, took its new site for silent and moved
    /// again: half the RTO of a freeze).
    async fn probe(&self, site: usize) -> Option<(W, AccountId)> {
        let addr = self.config.sites[site];
        let (login, symbol) = (&self.config.login, self.traded);
        let probe = async move {
            let (mut conn, account) = W::logon(addr, login).await.ok()?;
            answers_status(&mut conn, symbol)
                .await
                .then_some((conn, account))
        };
        tokio::time::timeout(HOME_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten()
    }

    /// Logged on at a new site and reconciled: its mass status is due.
    fn moved_here(&mut self) {
        self.mass_status = MassStatus::Due(Instant::now());
    }

    /// Asks the site it moved to for its mass status once that site has acknowledged an
    /// order since the move (or nothing is pending, or the acknowledgement timeout has
    /// passed). The answer is every order of the member the site remembers, thousands in a
    /// busy minute: asked at once, it came on the session before the acknowledgements of the
    /// orders resent after the move, and the client's RTO waited for it.
    async fn ask_mass_status_when_due(&mut self) {
        let MassStatus::Due(moved) = self.mass_status else {
            return;
        };
        let acked = self.last_ack.is_some_and(|at| at >= moved);
        if acked || self.pending.is_empty() || moved.elapsed() >= self.config.ack_timeout {
            let sent = self.send(&ClientMessage::MassStatus { symbol: None }).await;
            self.mass_status = if sent {
                MassStatus::Asked
            } else {
                MassStatus::Done
            };
        }
    }

    fn requeue_in_flight(&mut self) {
        let ids: Vec<OrderId> = self.pending.keys().copied().collect();
        for id in ids {
            self.requeue(id);
        }
    }

    /// Now logged on at `site` as `account` over `conn` (a logon, or a probe's session kept),
    /// which has just answered; no longer staying anywhere.
    fn arrive(&mut self, site: usize, conn: W, account: AccountId) {
        self.conn = Some(conn);
        self.heard();
        self.account = account;
        self.site = site;
        self.staying = None;
    }

    async fn try_logon(&mut self, site: usize) -> bool {
        let addr = self.config.sites[site];
        let logon = W::logon(addr, &self.config.login);
        match tokio::time::timeout(self.config.connect_timeout, logon).await {
            Ok(Ok((conn, account))) => {
                self.arrive(site, conn, account);
                self.last_sent = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Logs on at the next site that answers, then reconciles: asks for every unacknowledged
    /// order's state and marks the unknown ones for resending. Tries the sites round the list
    /// at least once, and on until `until`; false if none took the logon.
    async fn fail_over(&mut self, acks: &mut Vec<Ack>, until: Instant) -> bool {
        let from = self.site;
        let detected = *self.down_since.get_or_insert_with(Instant::now);
        let why = self.leaving.take().unwrap_or_else(|| self.overdue_why());
        self.conn = None;
        self.staying = None;
        if self.refusals > 1 {
            // Refused again and again, wherever it went: every site is refusing for now.
            // The first refusal moves at once; the next ones wait their pause, or the client
            // would go round the sites as fast as they answer its logons.
            tokio::time::sleep_until(self.hold_until.into()).await;
        }
        let sites = self.config.sites.len();
        let mut next = (from + 1) % sites;
        loop {
            if self.try_logon(next).await {
                break;
            }
            next = (next + 1) % sites;
            if next == (from + 1) % sites {
                if Instant::now() >= until {
                    return false;
                }
                tokio::time::sleep(self.config.retry_after).await;
            }
        }
        self.down_since = None;
        let logged_on = Instant::now();
        // Not straight back: the first site has only just failed.
        if let Some(every) = self.config.home_every {
            self.next_home_probe = logged_on + every;
        }
        let (known, resent) = self.reconcile(acks).await;
        self.moved_here();
        self.failovers.push(Failover {
            from,
            to: self.site,
            why,
            detected,
            logged_on,
            known,
            resent,
        });
        true
    }

    /// Just logged on at a site: asks for every unacknowledged order's state, acknowledges
    /// the known ones and marks the others for resending. Returns (known, to resend).
    async fn reconcile(&mut self, acks: &mut Vec<Ack>) -> (usize, usize) {
        self.last_sent = Instant::now();
        let unacknowledged: Vec<NewOrderMsg> = self.pending.values().map(|p| p.order).collect();
        for order in &unacknowledged {
            let status = ClientMessage::OrderStatus {
                cl_ord_id: order.cl_ord_id,
                symbol: order.symbol,
            };
            if !self.send(&status).await {
                break;
            }
        }
        // Every pending order waits for its status answer, not for a resend, until answered.
        let asked = Instant::now();
        for p in self.pending.values_mut() {
            p.sent = Some(asked);
        }
        let before = acks.len();
        let deadline = asked + self.config.ack_timeout;
        let mut answered = 0;
        while answered < unacknowledged.len() && self.conn.is_some() {
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match tokio::time::timeout_at(deadline.into(), conn.recv()).await {
                Ok(Ok(Some(ServerMessage::ExecutionReport(report))))
                    if report.exec_type == exec_type::ORDER_STATUS =>
                {
                    answered += 1;
                    self.on_report(&report, acks);
                }
                Ok(Ok(Some(message))) => self.on_message(message, acks),
                Ok(Ok(None)) | Ok(Err(_)) => self.leave("closed"),
                Err(_) => break,
            }
        }
        let known = acks.len() - before;
        let resent = self.pending.values().filter(|p| p.sent.is_none()).count();
        (known, resent)
    }
}

/// The mass status a move calls for: due at the new site since the move (or since a busy or
/// throttled refusal), asked and not yet answered, or done (answered, or nothing to ask).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MassStatus {
    Done,
    Due(Instant),
    Asked,
}

/// The client order id of the home probe's status question (no order is sent with it).
const HOME_PROBE_ID: &str = "home-probe";

/// Whether the site of a fresh session `conn` answers a status question on `symbol` (for an
/// order it has never seen) rather than refusing it: unavailable, catching up, clock skew.
/// Without a symbol yet (the member has sent nothing), the logon is all there is to go by.
async fn answers_status<W: Wire>(conn: &mut W, symbol: Option<Symbol>) -> bool {
    let Some(symbol) = symbol else {
        return true;
    };
    let id = OrderId::new(HOME_PROBE_ID).expect("the probe's id is printable and short");
    let question = ClientMessage::OrderStatus {
        cl_ord_id: id,
        symbol,
    };
    if conn.send(&question).await.is_err() {
        return false;
    }
    loop {
        match conn.recv().await {
            Ok(Some(ServerMessage::ExecutionReport(report))) if report.cl_ord_id == id => {
                return true
            }
            Ok(Some(ServerMessage::SessionReject { .. })) | Ok(None) | Err(_) => return false,
            Ok(Some(_)) => {}
        }
    }
}

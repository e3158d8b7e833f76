//! The FIX 4.4 acceptor: members' FIX sessions on ironfix's session layer, mapped to engine
//! commands through the [`Hub`], with execution reports back. `gateway/FIX.md` is the member's
//! view: messages, tags, limits and policies.
//!
//! - **Session layer**: ironfix's [`AcceptorRegistry`] (framing, Logon, heartbeats,
//!   TestRequest, ResendRequest, SequenceReset, Logout, session-level Reject). A Logon is routed
//!   only when its SenderCompID (49) is a member's name and its TargetCompID (56) is ours;
//!   `from_admin` then checks Username (553) = that name and Password (554) = the member's
//!   token. The session's account is the member's, for every message.
//! - **Sequence numbers** persist per member in [`FixConfig::store_dir`] (`store.rs`:
//!   ironfix's `FileStore` with no frames filed), so a restarted gateway resumes them.
//! - **Resends**: application messages are never replayed; a ResendRequest gets a
//!   SequenceReset-GapFill. An execution report replayed from a journal would be stale (the
//!   order has moved on since), and the engine's state is the truth: a member that missed
//!   reports reconciles with OrderStatusRequest (H), answered from the order's current state.
//! - **Application messages** ([`mapping`], sans-IO) become commands submitted with
//!   [`Hub::submit`]; reports come back from the session's [`Attachment`]. Every request is
//!   answered: a refusal before the log (busy, unavailable, throttled) as a reject naming it,
//!   a malformed message as a session Reject naming the tag.

pub mod mapping;
mod store;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::throttle::Bucket;
use crate::tls::Acceptor as TlsAcceptor;

use async_trait::async_trait;
use engine::{
    AccountId, AmendOrder, CancelAfter, CancelOrder, CancelReason, CommandKind, MassCancel,
    OrderId, Price, Qty, RejectReason, Request, Symbol,
};
use ironfix_core::error::StoreError;
use ironfix_core::message::{MsgType, RawMessage};
use ironfix_core::types::CompId;
use ironfix_engine::{
    Acceptor, AcceptorRegistry, Application, CloseReason, Connection, EngineError, LogonIdentity,
    LookupError, OutboundMessage, RejectReason as FixReject, SendVerdict, SessionConfig, SessionId,
    SessionLookup,
};
use ironfix_store::{FileStore, FileStoreConfig, SyncPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::desk::{
    gateway_reject, ExecType, GatewayReason, Reason, Resend, SubmitError, ToSession,
};
use crate::hub::{Attachment, Hub};
use crate::metrics::now_ns;
use crate::switch::DeadMan;
use mapping::{business_reject, Inbound};
use store::CountersStore;

/// The FIX version served.
pub const BEGIN_STRING: &str = "FIX.4.4";

/// Limits and settings of the FIX acceptor.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FixConfig {
    /// Our CompID: SenderCompID (49) of what we send, TargetCompID (56) members address.
    pub sender_comp_id: String,
    /// Where each member's sequence numbers are kept (`<member>.journal`).
    pub store_dir: PathBuf,
    /// Flush the sequence-number store every N writes: 1 (the default) every write, so the
    /// numbers survive a power loss; 0 never (they survive a process crash only).
    pub store_sync_every: u32,
    /// Connections at once, logged on or not; one more is closed at once.
    pub max_connections: usize,
    /// Application messages per second a session may send (a token bucket with one second of
    /// burst); beyond it, a message is answered with BusinessMessageReject "throttled".
    pub max_msg_per_sec: u32,
    /// Largest message accepted, in bytes; a larger one ends the session with a Logout.
    pub max_message_size: usize,
    /// Largest HeartBtInt (108) a Logon may ask for, in seconds (it must be at least 1).
    pub max_heartbeat_secs: u64,
    /// Seconds a new connection has to send its Logon.
    pub logon_timeout_secs: u64,
}

impl Default for FixConfig {
    fn default() -> Self {
        FixConfig {
            sender_comp_id: "EXCHANGE".into(),
            store_dir: PathBuf::from("fix-sessions"),
            store_sync_every: 1,
            max_connections: 1024,
            max_msg_per_sec: 10_000,
            max_message_size: 4096,
            max_heartbeat_secs: 120,
            logon_timeout_secs: 10,
        }
    }
}

impl FixConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), String> {
        CompId::new(&self.sender_comp_id)
            .map_err(|err| format!("fix.sender_comp_id {:?}: {err}", self.sender_comp_id))?;
        if self.max_connections == 0 {
            return Err("fix.max_connections must be at least 1".into());
        }
        if self.max_msg_per_sec == 0 {
            return Err("fix.max_msg_per_sec must be at least 1".into());
        }
        if !(512..=1 << 20).contains(&self.max_message_size) {
            return Err("fix.max_message_size must be 512 to 1048576 bytes".into());
        }
        if !(1..=3600).contains(&self.max_heartbeat_secs) {
            return Err("fix.max_heartbeat_secs must be 1 to 3600".into());
        }
        if !(1..=300).contains(&self.logon_timeout_secs) {
            return Err("fix.logon_timeout_secs must be 1 to 300".into());
        }
        Ok(())
    }

    fn sync_policy(&self) -> SyncPolicy {
        match std::num::NonZeroU32::new(self.store_sync_every) {
            None => SyncPolicy::Never,
            Some(n) if n.get() == 1 => SyncPolicy::EveryWrite,
            Some(n) => SyncPolicy::EveryN(n),
        }
    }
}

/// Counters the node exposes as metrics.
#[derive(Debug, Default)]
pub struct FixCounters {
    pub connections: AtomicU64,
    /// Connections closed at once: `max_connections` were open.
    pub connections_refused: AtomicU64,
    pub logons: AtomicU64,
    /// Logons refused by their credentials, CompIDs, HeartBtInt or 8013.
    pub logons_refused: AtomicU64,
    /// Connections that never became a session (refused, timed out, not FIX).
    pub handshakes_failed: AtomicU64,
    pub app_messages: AtomicU64,
    pub throttled: AtomicU64,
    /// Malformed application messages (session Reject) and unsupported ones (35=j).
    pub malformed: AtomicU64,
    pub unsupported: AtomicU64,
    /// Requests the log refused (busy, unavailable), each answered with a reject.
    pub submit_refused: AtomicU64,
    /// New orders refused as resent from longer ago than the dedup window.
    pub stale_resends: AtomicU64,
    pub slow_consumers: AtomicU64,
    pub cancel_on_disconnect: AtomicU64,
    /// Cancel-on-disconnect mass cancels the log still refused after retrying.
    pub cancel_on_disconnect_failed: AtomicU64,
    /// Outbound messages the session refused (a bug if ever nonzero).
    pub send_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers a session queues for its writer, besides the hub's reports.
const REPLY_QUEUE: usize = 1024;
/// Cancel and replace requests in flight per session whose ClOrdID is echoed back; beyond it,
/// their answers carry the order's own ClOrdID.
const ECHOES_MAX: usize = 65_536;
/// Attempts at opening a session store that another connection's session is still closing.
const STORE_OPEN_TRIES: u32 = 50;
/// How long `serve` waits for sessions to log out after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The ClOrdIDs of a session's cancel, replace and mass cancel requests in flight, so their
/// answers echo them (11) while naming the order by its original ClOrdID (41). Answers come
/// in log order, which is the order the session submitted them.
#[derive(Default)]
struct Echoes {
    /// Per order (its original ClOrdID): cancel or replace, and the request's ClOrdID.
    orders: HashMap<OrderId, VecDeque<(Request, OrderId)>>,
    /// Mass cancels: their scope and ClOrdID.
    mass: VecDeque<(Option<Symbol>, OrderId)>,
    /// Requests held, bounded by `ECHOES_MAX`.
    len: usize,
}

impl Echoes {
    fn push(&mut self, order: OrderId, kind: Request, request: OrderId) {
        if self.len < ECHOES_MAX {
            self.orders
                .entry(order)
                .or_default()
                .push_back((kind, request));
            self.len += 1;
        }
    }

    /// The oldest request of `kind` on `order` (`newest`: the latest, for one the log refused).
    fn take(&mut self, order: &OrderId, kind: Request, newest: bool) -> Option<OrderId> {
        let list = self.orders.get_mut(order)?;
        let mut matching = list.iter().enumerate().filter(|(_, (k, _))| *k == kind);
        let at = if newest {
            matching.next_back()
        } else {
            matching.next()
        }
        .map(|(at, _)| at)?;
        let (_, request) = list.remove(at)?;
        if list.is_empty() {
            self.orders.remove(order);
        }
        self.len -= 1;
        Some(request)
    }

    fn push_mass(&mut self, symbol: Option<Symbol>, request: OrderId) {
        if self.len < ECHOES_MAX {
            self.mass.push_back((symbol, request));
            self.len += 1;
        }
    }

    fn take_mass(&mut self, symbol: Option<Symbol>, newest: bool) -> Option<OrderId> {
        let mut matching = self
            .mass
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == symbol);
        let at = if newest {
            matching.next_back()
        } else {
            matching.next()
        }
        .map(|(at, _)| at)?;
        let (_, request) = self.mass.remove(at)?;
        self.len -= 1;
        Some(request)
    }
}

/// A logged-on session: its account and what its writer needs.
struct Live {
    account: AccountId,
    /// The session's id on the log: its orders carry it.
    log_session: u64,
    /// Cancel-on-disconnect: the session's dead-man's switch, refreshed while it lives.
    dead_man: Mutex<Option<DeadMan>>,
    /// CancelAfterRequests (U1) whose report (U2) is still to come.
    switch_requests: AtomicU64,
    replies: mpsc::Sender<OutboundMessage>,
    bucket: Mutex<Bucket>,
    echoes: Mutex<Echoes>,
    /// Taken by the writer once the session is active.
    parts: Mutex<Option<(Attachment, mpsc::Receiver<OutboundMessage>)>>,
}

impl Live {
    async fn reply(&self, message: OutboundMessage) {
        // Waits for room: back-pressure on the session's inbound queue, never a drop. An error
        // means the writer is gone, i.e. the session is closing.
        let _ = self.replies.send(message).await;
    }

    /// The FIX message for one of the hub's messages (`None`: nothing to send).
    fn outbound(&self, message: ToSession) -> Option<OutboundMessage> {
        match message {
            ToSession::Report(report) => {
                let kind = match (report.exec_type, report.why) {
                    (ExecType::Canceled, Some(Reason::Cancelled(CancelReason::User))) => {
                        Some(Request::Cancel)
                    }
                    (ExecType::Replaced, _) => Some(Request::Amend),
                    _ => None,
                };
                // A replace's report names the order by its new ClOrdID; its echo was kept
                // under the one it replaced.
                let order = report.orig_cl_ord_id.unwrap_or(report.cl_ord_id);
                let request = kind.and_then(|kind| lock(&self.echoes).take(&order, kind, false));
                Some(mapping::execution_report(&report, request.as_ref()))
            }
            ToSession::CancelReject(reject) => {
                let request = lock(&self.echoes)
                    .take(&reject.cl_ord_id, reject.request, false)
                    .unwrap_or(reject.cl_ord_id);
                Some(mapping::cancel_reject(
                    &request,
                    &reject.cl_ord_id,
                    reject.account,
                    reject.request,
                    reject.state.as_ref(),
                    Reason::Rejected(reject.reason),
                ))
            }
            // A mass cancel this session did not ask for (cancel-on-disconnect of an earlier
            // session, another protocol's session): its orders' cancel reports say it all.
            ToSession::MassCancelDone { symbol, cancelled } => {
                let request = lock(&self.echoes).take_mass(symbol, false)?;
                Some(mapping::mass_cancel_report(
                    &request,
                    symbol.as_ref(),
                    Ok(cancelled),
                ))
            }
            // The answer to this session's CancelAfterRequest; the refreshes of a
            // cancel-on-disconnect switch, and other sessions' switches, are not reported.
            ToSession::SwitchSet { session, deadline } => {
                let asked = session == self.log_session
                    && self
                        .switch_requests
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                asked.then(|| mapping::cancel_after_report(deadline))
            }
            ToSession::SlowConsumer => None,
        }
    }
}

/// The ironfix application: every member session's callbacks.
struct FixApp {
    hub: Arc<Hub>,
    config: FixConfig,
    sessions: Mutex<HashMap<SessionId, Arc<Live>>>,
    counters: Arc<FixCounters>,
}

impl FixApp {
    fn live(&self, session_id: &SessionId) -> Option<Arc<Live>> {
        lock(&self.sessions).get(session_id).cloned()
    }

    /// Checks a Logon's credentials and settings; registers the session when they pass.
    fn logon(&self, logon: &RawMessage<'_>, session_id: &SessionId) -> Result<(), FixReject> {
        let refuse = |text: &str| {
            bump(&self.counters.logons_refused);
            Err(FixReject::new(99, text))
        };
        let (Some(user), Some(password)) = (logon.get_field_str(553), logon.get_field_str(554))
        else {
            return refuse("Username (553) and Password (554) are required");
        };
        let Some(member) = self.hub.members().login(user, password) else {
            return refuse("unknown Username (553) or Password (554)");
        };
        if member.name != session_id.target_comp_id {
            return refuse("SenderCompID (49) must be the Username (553)");
        }
        match logon.get_field_str(108).map(str::parse::<u64>) {
            Some(Ok(secs)) if (1..=self.config.max_heartbeat_secs).contains(&secs) => {}
            _ => return refuse("HeartBtInt (108) out of range"),
        }
        let cancel_on_disconnect = match logon.get_field_str(mapping::TAG_CANCEL_ON_DISCONNECT) {
            None | Some("N") => false,
            Some("Y") => true,
            Some(_) => return refuse("CancelOnDisconnect (8013) must be Y or N"),
        };
        let account = AccountId(member.account);
        let (replies, replies_rx) = mpsc::channel(REPLY_QUEUE);
        let attachment = self.hub.attach(account);
        let log_session = attachment.session;
        let dead_man =
            cancel_on_disconnect.then(|| DeadMan::arm(self.hub.clone(), account, log_session));
        let live = Live {
            account,
            log_session,
            dead_man: Mutex::new(dead_man),
            switch_requests: AtomicU64::new(0),
            replies,
            bucket: Mutex::new(Bucket::new(self.config.max_msg_per_sec)),
            echoes: Mutex::new(Echoes::default()),
            parts: Mutex::new(Some((attachment, replies_rx))),
        };
        lock(&self.sessions).insert(session_id.clone(), Arc::new(live));
        bump(&self.counters.logons);
        Ok(())
    }

    /// A new order the member may be resending from longer ago than the engines remember
    /// client order ids ([`mapping::resend_age_ms`]: a member that keeps its sequence numbers
    /// across a reconnect resends what the venue did not receive, with PossDupFlag, however
    /// old) is never sent to the log ([`Hub::judge_resend`]): one whose ClOrdID the venue
    /// knows is answered with that order's state (as a status request is), one it does not is
    /// refused as `stale_resend` (it may have executed and been forgotten, and taken it could
    /// execute again). A recent one goes on. (A replace cannot execute twice: once it took,
    /// or its order is gone, it finds nothing live to amend.)
    fn screen_resend(&self, raw: &RawMessage<'_>, inbound: Inbound) -> Inbound {
        let age_ms = match inbound {
            Inbound::New(_) | Inbound::Refused { .. } => mapping::resend_age_ms(raw),
            _ => None,
        };
        let (Some(age_ms), Inbound::New(new) | Inbound::Refused { new, .. }) = (age_ms, inbound)
        else {
            return inbound;
        };
        match self.hub.judge_resend(&new, age_ms) {
            Resend::Send => inbound,
            Resend::Answer(_) => Inbound::Status {
                order: new.order_id,
                symbol: new.symbol,
                side: new.side,
            },
            Resend::Stale => {
                bump(&self.counters.stale_resends);
                let why = GatewayReason::StaleResend;
                Inbound::Refused { new, why }
            }
        }
    }

    /// Acts on one well-formed application message; returns the direct answer, if any.
    fn handle(
        &self,
        live: &Live,
        inbound: Inbound,
        ref_seq: Option<u64>,
        msg_type: &str,
    ) -> Option<OutboundMessage> {
        let account = live.account;
        match inbound {
            Inbound::New(mut new) => {
                new.session = live.log_session;
                self.hub.submit(CommandKind::New(new)).err().map(|err| {
                    let mut report = gateway_reject(account, &new, self.refused(err));
                    report.ts = now_ns();
                    mapping::execution_report(&report, None)
                })
            }
            Inbound::Refused { new, why } => {
                let mut report = gateway_reject(account, &new, why);
                report.ts = now_ns();
                Some(mapping::execution_report(&report, None))
            }
            Inbound::Cancel { request, cancel } => self.cancel(live, request, cancel),
            Inbound::Replace {
                request,
                orig,
                symbol,
                price,
                order_qty,
            } => self.replace(live, request, orig, symbol, price, order_qty),
            Inbound::MassCancel { request, symbol } => {
                lock(&live.echoes).push_mass(symbol, request);
                let mass = MassCancel {
                    account,
                    symbol,
                    session: None,
                };
                let err = self.hub.submit(CommandKind::MassCancel(mass)).err()?;
                lock(&live.echoes).take_mass(symbol, true);
                Some(mapping::mass_cancel_report(
                    &request,
                    symbol.as_ref(),
                    Err(self.refused(err)),
                ))
            }
            Inbound::Status {
                order,
                symbol,
                side,
            } => Some(match self.hub.log_ready(Some(&symbol)) {
                Err(refused) => status_refused(refused, ref_seq, msg_type),
                Ok(()) => match self.hub.order_state(&symbol, account, &order) {
                    Some(state) => mapping::order_status(&state),
                    None => mapping::unknown_order_status(account, &order, &symbol, side),
                },
            }),
            Inbound::MassStatus { .. } => unreachable!("from_app answers a mass status itself"),
            Inbound::CancelAfter { timeout_ms } => self.cancel_after(live, timeout_ms, ref_seq),
            Inbound::Unsupported => {
                bump(&self.counters.unsupported);
                Some(mapping::business_message_reject(
                    ref_seq,
                    msg_type,
                    None,
                    business_reject::UNSUPPORTED_MESSAGE_TYPE,
                    "unsupported message type",
                ))
            }
        }
    }

    /// Sets the session's dead-man's switch (U1): its orders are cancelled `timeout_ms` after
    /// this, at every site, unless refreshed (0 disarms); the member manages the switch from
    /// now on. Answered by U2 once applied; refused, by a BusinessMessageReject.
    fn cancel_after(
        &self,
        live: &Live,
        timeout_ms: u32,
        ref_seq: Option<u64>,
    ) -> Option<OutboundMessage> {
        let kind = CommandKind::CancelAfter(CancelAfter {
            account: live.account,
            session: live.log_session,
            timeout_ns: u64::from(timeout_ms) * 1_000_000,
        });
        live.switch_requests.fetch_add(1, Ordering::Relaxed);
        let Err(err) = self.hub.submit(kind) else {
            if let Some(dead_man) = lock(&live.dead_man).as_ref() {
                dead_man.stop_refreshing();
            }
            return None;
        };
        live.switch_requests.fetch_sub(1, Ordering::Relaxed);
        let reason = self.refused(err);
        Some(mapping::business_message_reject(
            ref_seq,
            mapping::MSG_CANCEL_AFTER,
            None,
            business_reject::OTHER,
            reason.as_str(),
        ))
    }

    /// Counts a submission the log refused; the reason to give for it.
    fn refused(&self, err: SubmitError) -> GatewayReason {
        bump(&self.counters.submit_refused);
        GatewayReason::from(err)
    }

    /// Submits an OrderCancelRequest; a refusal is answered with an OrderCancelReject.
    fn cancel(
        &self,
        live: &Live,
        request: OrderId,
        cancel: CancelOrder,
    ) -> Option<OutboundMessage> {
        let account = live.account;
        let order = cancel.order_id;
        lock(&live.echoes).push(order, Request::Cancel, request);
        let err = self.hub.submit(CommandKind::Cancel(cancel)).err()?;
        lock(&live.echoes).take(&order, Request::Cancel, true);
        let state = self.hub.order_state(&cancel.symbol, account, &order);
        Some(mapping::cancel_reject(
            &request,
            &order,
            account,
            Request::Cancel,
            state.as_ref(),
            Reason::Gateway(self.refused(err)),
        ))
    }

    /// Submits an OrderCancelReplaceRequest as an amend to the new total (OrderQty) and/or
    /// price; an order unknown here or a refusal is answered with an OrderCancelReject.
    fn replace(
        &self,
        live: &Live,
        request: OrderId,
        orig: OrderId,
        symbol: Symbol,
        price: Option<Price>,
        order_qty: Option<Qty>,
    ) -> Option<OutboundMessage> {
        let account = live.account;
        let Some(state) = self.hub.order_state(&symbol, account, &orig) else {
            return Some(mapping::cancel_reject(
                &request,
                &orig,
                account,
                Request::Amend,
                None,
                Reason::Rejected(RejectReason::UnknownOrder),
            ));
        };
        let amend = AmendOrder {
            account,
            symbol,
            order_id: orig,
            price,
            // OrderQty is the order's new total, which is what the engine's amend takes: a
            // fill racing the replace, or a restart, cannot change what it means.
            qty: order_qty,
            // The replace's ClOrdID becomes the order's: a resent replace finds `orig` no
            // longer live and is answered with the order's current state.
            new_order_id: Some(request),
        };
        lock(&live.echoes).push(orig, Request::Amend, request);
        let err = self.hub.submit(CommandKind::Amend(amend)).err()?;
        lock(&live.echoes).take(&orig, Request::Amend, true);
        Some(mapping::cancel_reject(
            &request,
            &orig,
            account,
            Request::Amend,
            Some(&state),
            Reason::Gateway(self.refused(err)),
        ))
    }
}

#[async_trait]
impl Application for FixApp {
    async fn on_create(&self, _session_id: &SessionId) {}

    async fn on_logon(&self, _session_id: &SessionId) {}

    async fn on_logout(&self, _session_id: &SessionId) {}

    async fn on_session_closed(&self, session_id: &SessionId, reason: &CloseReason) {
        // A connection whose Logon failed never registered: closing it must not unregister
        // a good Logon of the same member that may have happened meanwhile.
        if !reason.was_active() {
            return;
        }
        let Some(live) = lock(&self.sessions).remove(session_id) else {
            return;
        };
        let dead_man = lock(&live.dead_man).take();
        if let Some(dead_man) = dead_man {
            bump(&self.counters.cancel_on_disconnect);
            // Submitted here, before the session is reported closed. If the log refuses it,
            // the switch, no longer refreshed, fires within its timeout at every site.
            if dead_man.end().is_err() {
                bump(&self.counters.cancel_on_disconnect_failed);
            }
        }
    }

    async fn to_admin(&self, _message: &mut OutboundMessage, _session_id: &SessionId) {}

    async fn from_admin(
        &self,
        message: &RawMessage<'_>,
        session_id: &SessionId,
    ) -> Result<(), FixReject> {
        if *message.msg_type() == MsgType::Logon {
            self.logon(message, session_id)
        } else {
            Ok(())
        }
    }

    async fn to_app(&self, _message: &mut OutboundMessage, _session_id: &SessionId) {}

    /// Application messages are never replayed: each is gap-filled. The order has moved on
    /// since the report was sent; the member reconciles with OrderStatusRequest (H).
    fn to_app_resend<'a>(
        &'a self,
        _message: &'a RawMessage<'_>,
        _session_id: &'a SessionId,
    ) -> SendVerdict<'a> {
        SendVerdict::ready(Err(FixReject::new(
            0,
            "execution reports are not replayed; use OrderStatusRequest",
        )))
    }

    async fn from_app(
        &self,
        message: &RawMessage<'_>,
        session_id: &SessionId,
    ) -> Result<(), FixReject> {
        bump(&self.counters.app_messages);
        let Some(live) = self.live(session_id) else {
            return Err(FixReject::new(99, "session is not logged on"));
        };
        let ref_seq = message.get_field_str(34).and_then(|s| s.parse().ok());
        let msg_type = message.msg_type().as_str();
        if !lock(&live.bucket).take() {
            bump(&self.counters.throttled);
            let text = format!(
                "throttled: more than {} messages per second",
                self.config.max_msg_per_sec
            );
            let reject = mapping::business_message_reject(
                ref_seq,
                msg_type,
                message.get_field_str(11),
                business_reject::OTHER,
                &text,
            );
            live.reply(reject).await;
            return Ok(());
        }
        let inbound = mapping::parse(message, live.account).map_err(|malformed| {
            bump(&self.counters.malformed);
            FixReject::new(malformed.reason, malformed.text).with_ref_tag(malformed.tag)
        })?;
        let inbound = self.screen_resend(message, inbound);
        if let Inbound::MassStatus { request, symbol } = inbound {
            // Several answers: one report per order, then done; answered at a site that is
            // not ready too, saying why its state may be behind (see the binary server's).
            let behind = self.hub.log_ready(symbol.as_ref()).err().map(behind_text);
            let states = self.hub.mass_status(live.account, symbol.as_ref());
            let (symbol, account) = (symbol.as_ref(), live.account);
            let reports = mapping::mass_status_reports(&states, &request, symbol, account, behind);
            for report in reports {
                live.reply(report).await;
            }
        } else if let Some(answer) = self.handle(&live, inbound, ref_seq, msg_type) {
            live.reply(answer).await;
        }
        Ok(())
    }
}

/// Why a mass status answer may be behind the log (the site is not ready), in its Text (58).
fn behind_text(refused: SubmitError) -> &'static str {
    match refused {
        SubmitError::CatchingUp => "catching_up: this site is behind the log",
        SubmitError::ClockSkew => "clock_skew: this site's clock is ahead of the log's",
        SubmitError::Unavailable => "unavailable: this site cannot reach the log",
        SubmitError::Busy => "busy: the log is not keeping up",
    }
}

/// The answer to a status question at a site cut off from the log (its state may be behind
/// the other sites' without its knowing) or catching up with it (its state is behind): it
/// says so instead, and the member asks elsewhere.
fn status_refused(refused: SubmitError, ref_seq: Option<u64>, msg_type: &str) -> OutboundMessage {
    let text = match refused {
        SubmitError::CatchingUp => "catching_up: this site is behind the log; ask another site",
        SubmitError::ClockSkew => {
            "clock_skew: this site's clock is ahead of the log's; ask another site"
        }
        SubmitError::Unavailable => "unavailable: this site cannot reach the log; ask another site",
        SubmitError::Busy => "busy: the log is not keeping up; try again",
    };
    mapping::business_message_reject(ref_seq, msg_type, None, business_reject::OTHER, text)
}

/// Admits a session for a Logon whose SenderCompID is a member's name and whose TargetCompID
/// is ours, with its sequence-number store; its credentials are checked next, in `from_admin`.
struct MemberLookup {
    app: Arc<FixApp>,
}

/// A member name as a store file name: letters, digits, `.` and `-` kept, anything else
/// (`_` included) as `_XX` hex, so different names never share a file.
fn store_name(member: &str) -> String {
    let mut name = String::from("member-");
    for b in member.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02X}"));
        }
    }
    name
}

#[async_trait]
impl SessionLookup<FixApp> for MemberLookup {
    async fn lookup(
        &self,
        identity: &LogonIdentity,
    ) -> Result<Option<Acceptor<FixApp>>, LookupError> {
        let app = &self.app;
        let member = identity.sender_comp_id();
        if identity.target_comp_id().as_str() != app.config.sender_comp_id
            || !app.hub.members().has_name(member.as_str())
        {
            return Ok(None);
        }
        let store_config =
            FileStoreConfig::try_new(&app.config.store_dir, store_name(member.as_str()))
                .map_err(|err| LookupError::new(format!("store name: {err}")))?
                .with_create_if_missing(true)
                .with_sync_policy(app.config.sync_policy());
        // The store of a session whose Logon was just refused may still be closing (its
        // lock held): retry briefly, within the registry's logon timeout.
        let mut tries = 0;
        let store = loop {
            match FileStore::open(store_config.clone()).await {
                Ok(store) => break store,
                Err(StoreError::Io(_)) if tries < STORE_OPEN_TRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(LookupError::new(format!("session store: {err}"))),
            }
        };
        let ours = CompId::new(&app.config.sender_comp_id)
            .map_err(|err| LookupError::new(err.to_string()))?;
        let session = SessionConfig::new(ours, member.clone(), BEGIN_STRING)
            .with_max_message_size(app.config.max_message_size)
            .with_logon_timeout(Duration::from_secs(app.config.logon_timeout_secs));
        Ok(Some(
            Acceptor::new(session, app.clone()).with_store(Arc::new(CountersStore(store))),
        ))
    }
}

/// The FIX acceptor of one site: build it, then [`FixGateway::serve`] a listener.
pub struct FixGateway {
    app: Arc<FixApp>,
    registry: Arc<AcceptorRegistry<FixApp>>,
}

impl FixGateway {
    /// An acceptor submitting to `hub`; creates `config.store_dir` if needed.
    pub fn new(hub: Arc<Hub>, config: FixConfig) -> io::Result<FixGateway> {
        config
            .validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        std::fs::create_dir_all(&config.store_dir)?;
        let logon_timeout = Duration::from_secs(config.logon_timeout_secs);
        let max_message_size = config.max_message_size;
        let app = Arc::new(FixApp {
            hub,
            config,
            sessions: Mutex::new(HashMap::new()),
            counters: Arc::new(FixCounters::default()),
        });
        let registry = AcceptorRegistry::new()
            .with_lookup(Arc::new(MemberLookup { app: app.clone() }))
            .with_logon_timeout(logon_timeout)
            .with_max_message_size(max_message_size);
        Ok(FixGateway {
            app,
            registry: Arc::new(registry),
        })
    }

    pub fn counters(&self) -> &FixCounters {
        &self.app.counters
    }

    /// Serves FIX sessions on `listener` (over TLS with `tls`: the handshake in the
    /// connection's task, a failed one counted with the refused handshakes) until `shutdown`
    /// turns true (or its sender is dropped); sessions then log out ("gateway shutting
    /// down"), and this returns once they have, or after a few seconds.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(self.app.config.max_connections));
        let mut tasks = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    // A connection that failed while being accepted is that connection's
                    // problem, not the server's.
                    let Ok((stream, _)) = accepted else { continue };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        bump(&self.app.counters.connections_refused);
                        drop(stream);
                        continue;
                    };
                    bump(&self.app.counters.connections);
                    let app = self.app.clone();
                    let registry = self.registry.clone();
                    let (shutdown, tls) = (shutdown.clone(), tls.clone());
                    tasks.spawn(async move {
                        match accept(&registry, stream, tls.as_ref()).await {
                            Ok(connection) => run_session(&app, connection, shutdown).await,
                            Err(err) => {
                                bump(&app.counters.handshakes_failed);
                                tracing::debug!(%err, "FIX connection refused");
                            }
                        }
                        drop(permit);
                    });
                }
                () = stopped(&mut stop) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let drained = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
        Ok(())
    }
}

/// Serves FIX sessions for `hub` on `listener` until `shutdown` turns true: see
/// [`FixGateway::serve`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hub: Arc<Hub>,
    config: FixConfig,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    FixGateway::new(hub, config)?
        .serve(listener, tls, shutdown)
        .await
}

/// A FIX session's connection on `stream`, through `tls`'s handshake when there is one.
async fn accept(
    registry: &AcceptorRegistry<FixApp>,
    stream: TcpStream,
    tls: Option<&TlsAcceptor>,
) -> Result<Connection, EngineError> {
    let Some(tls) = tls else {
        return registry.serve(stream).await;
    };
    let _ = stream.set_nodelay(true);
    let stream = tls.accept(stream).await.map_err(EngineError::from)?;
    registry.serve_stream(stream).await
}

/// Writes a logged-on session's outbound messages (the hub's reports and the direct answers)
/// until the session closes, the shutdown signal, or the session falls behind its reports.
async fn run_session(app: &FixApp, connection: Connection, mut shutdown: watch::Receiver<bool>) {
    let live = app.live(connection.session_id());
    let parts = live.as_ref().and_then(|live| lock(&live.parts).take());
    let (Some(live), Some((mut attachment, mut replies))) = (live, parts) else {
        // Closed while its Logon completed: nothing to write for it.
        return logout(&connection, "session closed").await;
    };
    loop {
        let message = tokio::select! {
            () = connection.wait_closed() => return,
            () = stopped(&mut shutdown) => {
                return logout(&connection, "gateway shutting down").await;
            }
            Some(reply) = replies.recv() => reply,
            report = attachment.rx.recv() => match report {
                Some(ToSession::SlowConsumer) | None => {
                    bump(&app.counters.slow_consumers);
                    let text = "slow consumer: log on again and request order status";
                    return logout(&connection, text).await;
                }
                Some(message) => match live.outbound(message) {
                    Some(message) => message,
                    None => continue,
                },
            },
        };
        match connection.send(message).await {
            Ok(()) => {}
            Err(EngineError::Closed) => return,
            Err(err) => {
                bump(&app.counters.send_errors);
                tracing::warn!(%err, "FIX message not sent");
            }
        }
    }
}

async fn logout(connection: &Connection, text: &str) {
    let _ = connection.logout_with_text(text).await;
    connection.wait_closed().await;
}

/// Returns once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

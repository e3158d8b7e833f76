//! The binary order-entry server: `gateway/BINARY-PROTOCOL.md` over TCP.
//!
//! One tokio task per connection. The first frame must be a Logon whose token names a member;
//! the session's account is that member's, and every command it sends carries it. Requests are
//! checked, turned into commands and submitted to the log; reports come back from the hub in
//! log order. Refusals are always answered: a request the gateway cannot take gets a reject
//! report naming the reason (busy, unavailable, throttled), a frame that cannot be decoded gets
//! a SessionReject and the connection is closed (a binary stream cannot be resynchronised).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tls::{Acceptor, Stream};
use engine::{
    AccountId, AmendOrder, CancelAfter, CancelOrder, CommandKind, MassCancel, NewOrder, OrderId,
    Price, Side, Symbol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::binary::{
    self, exec_type, msg_type, ord_status, reason, session_reject, CancelRequest, Check,
    ClientMessage, DecodeError, ExecReport, ServerMessage,
};
use crate::desk::{
    gateway_reject, ExecType, GatewayReason, OrdStatus, Reason, Report, Resend, ToSession,
};
use crate::hub::{Attachment, Hub};
use crate::switch::DeadMan;
use crate::throttle::Bucket;

/// Limits and timings of the binary server.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinaryConfig {
    /// Connections served at once; one more is told so (Logout 11) and closed.
    pub max_connections: usize,
    /// Messages per second a session may send (a token bucket with one second of burst);
    /// beyond it, requests are rejected with reason `throttled`.
    pub max_msg_per_sec: u32,
    /// Seconds a new connection has to log on.
    pub logon_timeout_secs: u64,
}

impl Default for BinaryConfig {
    fn default() -> Self {
        BinaryConfig {
            max_connections: 1024,
            max_msg_per_sec: 50_000,
            logon_timeout_secs: 5,
        }
    }
}

/// Logout reasons beyond the decode error codes (1-6), as in BINARY-PROTOCOL.md.
pub mod logout {
    pub const REQUESTED: u16 = 0;
    pub const BAD_CREDENTIALS: u16 = 10;
    pub const TOO_MANY_CONNECTIONS: u16 = 11;
    pub const NOT_LOGGED_ON: u16 = 12;
    pub const SLOW_CONSUMER: u16 = 13;
    pub const HEARTBEAT_TIMEOUT: u16 = 14;
    pub const SHUTTING_DOWN: u16 = 15;
    /// A cancel-on-disconnect session whose site has lost the log: its switch fires
    /// elsewhere.
    pub const LOG_UNAVAILABLE: u16 = 16;
}

/// A session's reading side: plain TCP or TLS.
type Reader = ReadHalf<Stream>;
/// A session's writing side.
type Writer = WriteHalf<Stream>;

/// Serves binary sessions on `listener` (over TLS with `tls`: each connection's handshake in
/// its own task, a failed one dropped before anything is read) until `shutdown` turns true;
/// sessions then log out with reason 15.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Acceptor>,
    hub: Arc<Hub>,
    config: BinaryConfig,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut stop = shutdown.clone();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A connection that failed while being accepted (reset, out of descriptors
                // for a moment) is that connection's problem, not the server's.
                Err(_) => continue,
            },
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let permit = slots.clone().try_acquire_owned();
        let (hub, shutdown, tls) = (hub.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            let Ok(stream) = Stream::accept(stream, tls.as_ref()).await else {
                return;
            };
            match permit {
                Ok(permit) => {
                    let _ = Session::run(stream, hub, config, shutdown).await;
                    drop(permit);
                }
                Err(_) => {
                    let (_, mut write) = tokio::io::split(stream);
                    let _ = send_now(
                        &mut write,
                        &ServerMessage::Logout {
                            reason: logout::TOO_MANY_CONNECTIONS,
                        },
                    )
                    .await;
                }
            }
        });
    }
}

async fn send_now(write: &mut Writer, message: &ServerMessage) -> io::Result<()> {
    let mut out = Vec::with_capacity(binary::FRAME_MAX);
    binary::encode_server(message, &mut out);
    write.write_all(&out).await?;
    write.shutdown().await
}

/// How a session ended.
enum End {
    /// Send this Logout reason, then close.
    Logout(u16),
    /// Send a SessionReject for a frame that cannot be decoded, then close.
    Undecodable(DecodeError, u8),
    /// The peer went away.
    Gone,
}

struct Session {
    hub: Arc<Hub>,
    account: AccountId,
    /// The session's id on the log: its orders carry it, its switch is keyed by it.
    log_session: u64,
    /// Cancel-on-disconnect: the session's dead-man's switch, refreshed while it lives.
    dead_man: Option<DeadMan>,
    /// CancelAfter requests whose answer (the switch's new deadline) is still to come.
    switch_requests: u32,
    out: Vec<u8>,
    bucket: Bucket,
}

impl Session {
    async fn run(
        stream: Stream,
        hub: Arc<Hub>,
        config: BinaryConfig,
        mut shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut buf = Vec::with_capacity(64 * 1024);

        // Logon first.
        let (token, heartbeat_secs, cancel_on_disconnect) =
            match read_logon(&mut read, &mut buf, &config).await {
                Ok(logon) => logon,
                Err(Some(end)) => return finish(&mut write, end).await,
                Err(None) => return Ok(()),
            };
        let Some(account) = token_account(&hub, &token) else {
            return finish(&mut write, End::Logout(logout::BAD_CREDENTIALS)).await;
        };
        let mut attachment = hub.attach(account);
        let heartbeat_secs = heartbeat_secs.clamp(1, 60);
        let log_session = attachment.session;
        let mut session = Session {
            hub: hub.clone(),
            account,
            log_session,
            dead_man: cancel_on_disconnect.then(|| DeadMan::arm(hub.clone(), account, log_session)),
            switch_requests: 0,
            out: Vec::with_capacity(64 * 1024),
            bucket: Bucket::new(config.max_msg_per_sec),
        };
        session.push(&ServerMessage::LogonAck {
            account,
            heartbeat_secs,
        });
        write.write_all(&session.out).await?;
        session.out.clear();

        let end = session
            .serve(
                &mut read,
                &mut write,
                &mut buf,
                &mut attachment,
                heartbeat_secs,
                &mut shutdown,
            )
            .await;
        drop(attachment);
        if let Some(dead_man) = session.dead_man.take() {
            // Opted in: the session's orders do not outlive it. If the log cannot take the
            // cancel now, the switch, no longer refreshed, fires within its timeout.
            let _ = dead_man.end();
        }
        if !session.out.is_empty() {
            let _ = write.write_all(&session.out).await;
        }
        finish(&mut write, end).await
    }

    /// Serves a logged-on session: requests, hub messages, heartbeats and shutdown, until
    /// it ends; returns how. What is queued in `out` when it ends is not yet written.
    async fn serve(
        &mut self,
        read: &mut Reader,
        write: &mut Writer,
        buf: &mut Vec<u8>,
        attachment: &mut Attachment,
        heartbeat_secs: u16,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let heartbeat = Duration::from_secs(u64::from(heartbeat_secs));
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.tick().await;
        let mut heard = Instant::now();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut lost = self.dead_man.as_ref().map(DeadMan::lost);
        loop {
            tokio::select! {
                n = read.read(&mut chunk) => {
                    let n = match n {
                        Ok(0) | Err(_) => break End::Gone,
                        Ok(n) => n,
                    };
                    heard = Instant::now();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = self.take_frames(buf) {
                        break end;
                    }
                }
                message = attachment.rx.recv() => {
                    let Some(message) = message else { break End::Logout(logout::SHUTTING_DOWN) };
                    if let Some(end) = self.report_queued(message, attachment) {
                        break end;
                    }
                }
                _ = ticker.tick() => {
                    if heard.elapsed() > heartbeat * 3 {
                        break End::Logout(logout::HEARTBEAT_TIMEOUT);
                    }
                    self.push(&ServerMessage::Heartbeat { test_id: 0 });
                }
                _ = shutdown.wait_for(|stop| *stop) => break End::Logout(logout::SHUTTING_DOWN),
                _ = log_lost(&mut lost) => break End::Logout(logout::LOG_UNAVAILABLE),
            }
            if !self.out.is_empty() {
                if write.write_all(&self.out).await.is_err() {
                    break End::Gone;
                }
                self.out.clear();
            }
        }
    }

    /// Queues `message` and whatever else the hub has already queued, so they go out in
    /// the same write; returns how the session ends, if it does.
    fn report_queued(&mut self, message: ToSession, attachment: &mut Attachment) -> Option<End> {
        if let Some(end) = self.report(message) {
            return Some(end);
        }
        while let Ok(message) = attachment.rx.try_recv() {
            let ended = self.report(message);
            if ended.is_some() {
                return ended;
            }
        }
        None
    }

    fn push(&mut self, message: &ServerMessage) {
        binary::encode_server(message, &mut self.out);
    }

    /// Handles every whole frame in `buf`; returns how the session ends, if it does.
    fn take_frames(&mut self, buf: &mut Vec<u8>) -> Option<End> {
        let mut at = 0;
        let end = loop {
            match binary::check(&buf[at..]) {
                Ok(Check::Incomplete) => break None,
                Err(err) => {
                    break Some(End::Undecodable(err, buf.get(at + 3).copied().unwrap_or(0)))
                }
                Ok(Check::Frame(len)) => {
                    let frame = &buf[at..at + len];
                    at += len;
                    match binary::decode_client(frame) {
                        Ok(message) => {
                            if let Some(end) = self.request(message) {
                                break Some(end);
                            }
                        }
                        Err(err) => break Some(End::Undecodable(err, frame[3])),
                    }
                }
            }
        };
        buf.drain(..at);
        end
    }

    /// Handles one decoded request.
    fn request(&mut self, message: ClientMessage) -> Option<End> {
        let account = self.account;
        if matches!(message, ClientMessage::Logout) {
            return Some(End::Logout(logout::REQUESTED));
        }
        if let ClientMessage::Heartbeat { test_id } = message {
            // A test request: answered at once, so a client can tell a live site from a
            // frozen one with no order in flight.
            if test_id != 0 {
                self.push(&ServerMessage::Heartbeat { test_id });
            }
            return None;
        }
        let throttled = !self.bucket.take();
        match message {
            ClientMessage::Logout | ClientMessage::Heartbeat { .. } => {}
            ClientMessage::Logon { .. } => self.push(&ServerMessage::SessionReject {
                code: session_reject::ALREADY_LOGGED_ON,
                rejected_type: 0x01,
            }),
            ClientMessage::NewOrder(order) => self.new_order(order, None, throttled),
            ClientMessage::ResendOrder { order, age_ms } => {
                self.new_order(order, Some(age_ms), throttled)
            }
            ClientMessage::Cancel { cl_ord_id, symbol } => {
                let kind = CommandKind::Cancel(CancelOrder {
                    account,
                    symbol,
                    order_id: cl_ord_id,
                });
                self.submit_or_refuse(kind, cl_ord_id, CancelRequest::Cancel, throttled);
            }
            ClientMessage::Replace {
                cl_ord_id,
                symbol,
                price,
                qty,
            } => {
                let kind = CommandKind::Amend(AmendOrder {
                    account,
                    symbol,
                    order_id: cl_ord_id,
                    price,
                    qty,
                    new_order_id: None,
                });
                self.submit_or_refuse(kind, cl_ord_id, CancelRequest::Replace, throttled);
            }
            ClientMessage::MassCancel { symbol } => self.mass_cancel(symbol, throttled),
            ClientMessage::OrderStatus { cl_ord_id, symbol } => {
                self.order_status(cl_ord_id, symbol, throttled)
            }
            ClientMessage::MassStatus { symbol } => self.mass_status(symbol, throttled),
            ClientMessage::CancelAfter { timeout_ms } => self.cancel_after(timeout_ms, throttled),
        }
        None
    }

    /// Submits a NewOrder (a possible resend of `resend_age_ms`); a refusal is answered with
    /// a rejected execution report. A resend from longer ago than the engines remember ids is
    /// never sent to the log: answered with the order's state if this site knows it, refused
    /// as `stale_resend` if not (it may have executed and been forgotten;
    /// [`Hub::judge_resend`]).
    fn new_order(
        &mut self,
        order: binary::NewOrderMsg,
        resend_age_ms: Option<u32>,
        throttled: bool,
    ) {
        let new = NewOrder {
            account: self.account,
            order_id: order.cl_ord_id,
            symbol: order.symbol,
            side: order.side,
            ord_type: order.ord_type,
            price: order.price,
            qty: order.qty,
            tif: order.tif,
            post_only: order.post_only,
            stp: order.stp,
            session: self.log_session,
        };
        let judged = match resend_age_ms {
            Some(age_ms) if !throttled => self.hub.judge_resend(&new, u64::from(age_ms)),
            _ => Resend::Send,
        };
        let refused = if throttled {
            Some(GatewayReason::Throttled)
        } else if let Resend::Answer(state) = judged {
            self.push(&ServerMessage::ExecutionReport(exec_report(&state)));
            return;
        } else if matches!(judged, Resend::Stale) {
            let stale = &self.hub.counters().stale_resends;
            stale.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(GatewayReason::StaleResend)
        } else {
            self.hub
                .submit(CommandKind::New(new))
                .err()
                .map(GatewayReason::from)
        };
        if let Some(reason) = refused {
            let report = gateway_reject(self.account, &new, reason);
            self.push(&ServerMessage::ExecutionReport(exec_report(&report)));
        }
    }

    /// Submits `kind` for a request of `rejected_type` that has no report of its own; a
    /// refusal (throttled, or by the log) is answered with a SessionReject. Whether it went.
    fn submit_or_session_reject(
        &mut self,
        kind: CommandKind,
        rejected_type: u8,
        throttled: bool,
    ) -> bool {
        let refused = if throttled {
            Some(session_reject::THROTTLED)
        } else {
            self.hub
                .submit(kind)
                .err()
                .map(|err| u16::from(gateway_code(GatewayReason::from(err))))
        };
        if let Some(code) = refused {
            self.push(&ServerMessage::SessionReject {
                code,
                rejected_type,
            });
        }
        refused.is_none()
    }

    /// Submits a MassCancel; a refusal is answered with a SessionReject.
    fn mass_cancel(&mut self, symbol: Option<Symbol>, throttled: bool) {
        let kind = CommandKind::MassCancel(MassCancel {
            account: self.account,
            symbol,
            session: None,
        });
        self.submit_or_session_reject(kind, msg_type::MASS_CANCEL, throttled);
    }

    /// Answers an OrderStatus with the order's status report (or an unknown-order one);
    /// throttled, with a SessionReject.
    fn order_status(&mut self, cl_ord_id: OrderId, symbol: Symbol, throttled: bool) {
        let account = self.account;
        if let Some(code) = self.status_refusal(Some(&symbol), throttled) {
            self.push(&ServerMessage::SessionReject {
                code,
                rejected_type: msg_type::ORDER_STATUS,
            });
            return;
        }
        let report = match self.hub.order_state(&symbol, account, &cl_ord_id) {
            Some(report) if report.symbol == symbol => report.status(),
            _ => unknown_order(account, cl_ord_id, symbol),
        };
        self.push(&ServerMessage::ExecutionReport(exec_report(&report)));
    }

    /// Sets the session's dead-man's switch: its orders are cancelled `timeout_ms` after this
    /// (0 disarms), at every site, unless refreshed. The member manages the switch from now on
    /// (a cancel-on-disconnect session's own refreshing stops). Answered with the deadline once
    /// applied (SwitchReport); refused, with a SessionReject.
    fn cancel_after(&mut self, timeout_ms: u32, throttled: bool) {
        let kind = CommandKind::CancelAfter(CancelAfter {
            account: self.account,
            session: self.log_session,
            timeout_ns: u64::from(timeout_ms) * 1_000_000,
        });
        if self.submit_or_session_reject(kind, msg_type::CANCEL_AFTER, throttled) {
            if let Some(dead_man) = &self.dead_man {
                dead_man.stop_refreshing();
            }
            self.switch_requests += 1;
        }
    }

    /// Why a status question is not answered: over the session's rate, the site cut off
    /// from the log (its answer could be stale without its knowing), or catching up (its
    /// answer would be stale and it knows).
    fn status_refusal(&self, symbol: Option<&Symbol>, throttled: bool) -> Option<u16> {
        if throttled {
            return Some(session_reject::THROTTLED);
        }
        self.hub
            .log_ready(symbol)
            .err()
            .map(|refused| u16::from(gateway_code(refused.into())))
    }

    /// Answers a MassStatus: an OrderStatus report for every order of the account the venue
    /// remembers (in the symbol, if given), then a MassStatusReport with their count and,
    /// when the site is not ready (cut off from the log, catching up, clock ahead), why its
    /// state may be behind (`behind`); throttled, with a SessionReject. Unlike a single
    /// status question it is answered at a site that is not ready: the state at the site's
    /// position is what every site answers there, what the site applies later reaches the
    /// session as reports, and it is how a member learns what happened between its sessions.
    /// (Refused, members moving between sites that all lagged a slow log heard of nothing for
    /// longer than the sites remember finished orders, and missed fills: the simulator's
    /// `--log-overload`.)
    fn mass_status(&mut self, symbol: Option<Symbol>, throttled: bool) {
        if throttled {
            self.push(&ServerMessage::SessionReject {
                code: session_reject::THROTTLED,
                rejected_type: msg_type::MASS_STATUS,
            });
            return;
        }
        let behind = self.status_refusal(symbol.as_ref(), false).unwrap_or(0);
        let reports = self.hub.mass_status(self.account, symbol.as_ref());
        for report in &reports {
            self.push(&ServerMessage::ExecutionReport(exec_report(report)));
        }
        self.push(&ServerMessage::MassStatusReport {
            symbol,
            reports: u32::try_from(reports.len()).unwrap_or(u32::MAX),
            behind: u8::try_from(behind).unwrap_or(u8::MAX),
        });
    }

    fn submit_or_refuse(
        &mut self,
        kind: CommandKind,
        cl_ord_id: OrderId,
        request: CancelRequest,
        throttled: bool,
    ) {
        let refused = if throttled {
            Some(GatewayReason::Throttled)
        } else {
            self.hub.submit(kind).err().map(GatewayReason::from)
        };
        if let Some(reason) = refused {
            self.push(&ServerMessage::CancelReject {
                cl_ord_id,
                request,
                reason: gateway_code(reason),
            });
        }
    }

    /// Queues one message from the hub; returns how the session ends, if it does.
    fn report(&mut self, message: ToSession) -> Option<End> {
        let message = match message {
            ToSession::Report(report) => ServerMessage::ExecutionReport(exec_report(&report)),
            ToSession::CancelReject(reject) => {
                self.push(&ServerMessage::CancelReject {
                    cl_ord_id: reject.cl_ord_id,
                    request: match reject.request {
                        engine::Request::Amend => CancelRequest::Replace,
                        _ => CancelRequest::Cancel,
                    },
                    reason: reject_code(reject.reason),
                });
                // A cancel or replace of an order no longer live under that id (resent after
                // it applied, or too late): its current state follows, as an OrderStatus.
                match reject.state {
                    Some(state) if reject.reason == engine::RejectReason::UnknownOrder => {
                        ServerMessage::ExecutionReport(exec_report(&state))
                    }
                    _ => return None,
                }
            }
            ToSession::MassCancelDone { symbol, cancelled } => {
                ServerMessage::MassCancelReport { symbol, cancelled }
            }
            // The answer to this session's CancelAfter; the refreshes of a cancel-on-disconnect
            // switch, and other sessions' switches, are not reported.
            ToSession::SwitchSet { session, deadline } => {
                if session != self.log_session || self.switch_requests == 0 {
                    return None;
                }
                self.switch_requests -= 1;
                ServerMessage::SwitchReport { deadline }
            }
            ToSession::SlowConsumer => return Some(End::Logout(logout::SLOW_CONSUMER)),
        };
        self.push(&message);
        None
    }
}

/// Resolves when a cancel-on-disconnect session's switch is lost (its refreshes refused for
/// long enough); never for a session without one, or whose member manages it.
async fn log_lost(lost: &mut Option<watch::Receiver<bool>>) {
    if let Some(lost) = lost {
        if lost.wait_for(|lost| *lost).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Waits (at most the logon timeout) for the first frame, which must be a Logon; returns its
/// token, heartbeat and cancel-on-disconnect flag. `Err(Some(end))`: end the session so;
/// `Err(None)`: the peer closed or the read failed, nothing to send.
async fn read_logon(
    read: &mut Reader,
    buf: &mut Vec<u8>,
    config: &BinaryConfig,
) -> Result<([u8; 32], u16, bool), Option<End>> {
    let logon = tokio::time::timeout(
        Duration::from_secs(config.logon_timeout_secs),
        read_frame(read, buf),
    )
    .await;
    match logon {
        Ok(Ok(Some(Ok(ClientMessage::Logon {
            token,
            heartbeat_secs,
            cancel_on_disconnect,
        })))) => Ok((token, heartbeat_secs, cancel_on_disconnect)),
        Ok(Ok(Some(Err((err, kind))))) => Err(Some(End::Undecodable(err, kind))),
        Ok(Ok(Some(Ok(_)))) | Err(_) => Err(Some(End::Logout(logout::NOT_LOGGED_ON))),
        Ok(Ok(None)) | Ok(Err(_)) => Err(None),
    }
}

/// The account of the member a Logon token (NUL-padded) names, if any.
fn token_account(hub: &Hub, token: &[u8]) -> Option<AccountId> {
    let token_len = token.iter().position(|&b| b == 0).unwrap_or(token.len());
    let member = std::str::from_utf8(&token[..token_len])
        .ok()
        .and_then(|token| hub.members().by_token(token));
    member.map(|member| AccountId(member.account))
}

/// Reads until one whole frame is buffered and decodes it; `None` when the peer closed.
async fn read_frame(
    read: &mut Reader,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Result<ClientMessage, (DecodeError, u8)>>> {
    let mut chunk = [0u8; 1024];
    loop {
        match binary::check(buf) {
            Err(err) => return Ok(Some(Err((err, buf.get(3).copied().unwrap_or(0))))),
            Ok(Check::Frame(len)) => {
                let decoded = binary::decode_client(&buf[..len]).map_err(|err| (err, buf[3]));
                buf.drain(..len);
                return Ok(Some(decoded));
            }
            Ok(Check::Incomplete) => {
                let n = read.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

async fn finish(write: &mut Writer, end: End) -> io::Result<()> {
    let message = match end {
        End::Gone => return Ok(()),
        End::Logout(reason) => ServerMessage::Logout { reason },
        End::Undecodable(err, kind) => {
            let mut out = Vec::new();
            binary::encode_server(
                &ServerMessage::SessionReject {
                    code: err.code(),
                    rejected_type: kind,
                },
                &mut out,
            );
            write.write_all(&out).await?;
            ServerMessage::Logout { reason: err.code() }
        }
    };
    send_now(write, &message).await
}

/// The answer to a status request for an order the gateway does not know.
fn unknown_order(account: AccountId, cl_ord_id: OrderId, symbol: Symbol) -> Report {
    Report {
        why: Some(Reason::Rejected(engine::RejectReason::UnknownOrder)),
        ..Report::blank(
            account,
            cl_ord_id,
            symbol,
            Side::Buy,
            ExecType::OrderStatus,
            OrdStatus::Rejected,
        )
    }
}

/// A report in the binary layout.
pub fn exec_report(report: &Report) -> ExecReport {
    ExecReport {
        seq: report.seq,
        ts: report.ts,
        cl_ord_id: report.cl_ord_id,
        symbol: report.symbol,
        exec_type: exec_type_code(report.exec_type),
        ord_status: ord_status_code(report.ord_status),
        side: report.side,
        reason: match report.why {
            None => reason::NONE,
            Some(Reason::Rejected(reason)) => reject_code(reason),
            Some(Reason::Cancelled(reason)) => cancel_code(reason),
            Some(Reason::Gateway(reason)) => gateway_code(reason),
        },
        price: report.price.unwrap_or(Price(0)),
        order_qty: report.order_qty,
        last_px: report.last_px,
        last_qty: report.last_qty,
        cum_qty: report.cum_qty,
        leaves_qty: report.leaves_qty,
        avg_px: report.avg_px,
    }
}

/// BINARY-PROTOCOL.md's reason code of an engine reject.
pub fn reject_code(why: engine::RejectReason) -> u8 {
    use engine::RejectReason as R;
    match why {
        R::UnknownSymbol => reason::UNKNOWN_SYMBOL,
        R::DuplicateOrderId => reason::DUPLICATE_ORDER_ID,
        R::InvalidQty => reason::INVALID_QTY,
        R::InvalidPrice => reason::INVALID_PRICE,
        R::InvalidTif => reason::INVALID_TIF,
        R::PostOnly => reason::POST_ONLY,
        R::UnknownOrder => reason::UNKNOWN_ORDER,
        R::Capacity => reason::CAPACITY,
        R::DuplicateSymbol => reason::DUPLICATE_SYMBOL,
        R::InvalidTick => reason::INVALID_TICK,
        R::InvalidLot => reason::INVALID_LOT,
        R::AccountDisabled => reason::ACCOUNT_DISABLED,
        R::CancelOnly => reason::CANCEL_ONLY,
    }
}

fn cancel_code(why: engine::CancelReason) -> u8 {
    use engine::CancelReason as C;
    match why {
        C::User => reason::USER,
        C::Mass => reason::MASS,
        C::Ioc => reason::IOC,
        C::Fok => reason::FOK,
        C::Stp => reason::STP,
        C::Expired => reason::EXPIRED,
        C::KillSwitch => reason::KILL_SWITCH,
    }
}

fn gateway_code(why: GatewayReason) -> u8 {
    match why {
        GatewayReason::Busy => reason::BUSY,
        GatewayReason::Unavailable => reason::UNAVAILABLE,
        GatewayReason::CatchingUp => reason::CATCHING_UP,
        GatewayReason::ClockSkew => reason::CLOCK_SKEW,
        GatewayReason::Throttled => reason::THROTTLED,
        GatewayReason::DayNotSupported => reason::DAY_NOT_SUPPORTED,
        GatewayReason::StaleResend => reason::STALE_RESEND,
    }
}

fn exec_type_code(kind: ExecType) -> u8 {
    match kind {
        ExecType::New => exec_type::NEW,
        ExecType::Trade => exec_type::TRADE,
        ExecType::Canceled => exec_type::CANCELED,
        ExecType::Replaced => exec_type::REPLACED,
        ExecType::Rejected => exec_type::REJECTED,
        ExecType::OrderStatus => exec_type::ORDER_STATUS,
    }
}

fn ord_status_code(status: OrdStatus) -> u8 {
    match status {
        OrdStatus::New => ord_status::NEW,
        OrdStatus::PartiallyFilled => ord_status::PARTIALLY_FILLED,
        OrdStatus::Filled => ord_status::FILLED,
        OrdStatus::Canceled => ord_status::CANCELED,
        OrdStatus::Replaced => ord_status::REPLACED,
        OrdStatus::Rejected => ord_status::REJECTED,
    }
}

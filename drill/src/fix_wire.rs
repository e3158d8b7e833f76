//! A FIX member's session at one site, through QuickFIX C++ (the `quickfix` crate): a FIX
//! engine nobody here wrote keeps the session (logon, sequence numbers, heartbeats, test
//! requests), and this wire translates between it and the failover client's binary terms.
//! Built with the `fix-members` feature (QuickFIX is C++, built with cmake).
//!
//! Each logon starts its own QuickFIX initiator for one site, on a thread of its own, with
//! `ResetOnLogon` (a member failing over starts its sequence numbers afresh at the next site)
//! and a session qualifier of its own (QuickFIX keeps one registry of sessions per process,
//! and a member's session at its last site may still be logging out). Dropping the wire
//! stops that initiator (a Logout to a live site) on its thread.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use engine::{AccountId, OrderId, Price, Qty, Side, Symbol};
use gateway::binary::{
    msg_type, reason, session_reject, CancelRequest, ClientMessage, ExecReport, NewOrderMsg,
    ServerMessage,
};
use quickfix::{
    send_to_target, Application, ApplicationCallback, ConnectionHandler, Dictionary, FieldMap,
    FixSocketServerKind, Initiator, LogFactory, MemoryMessageStoreFactory, Message,
    MsgFromAdminError, MsgFromAppError, NullLogger, QuickFixError, SessionId, SessionSettings,
};
use tokio::sync::mpsc;

use crate::wire::{Login, ReplaceAs, Wire};

/// The venue's CompID (the node's FIX `sender_comp_id`, default `EXCHANGE`).
pub const VENUE: &str = "EXCHANGE";
/// QuickFIX's heartbeat interval: a silent site is noticed within about two of them.
const HEARTBEAT_SECS: i32 = 1;

/// Tells every wire's session apart in QuickFIX's registry of sessions.
static NEXT_QUALIFIER: AtomicU64 = AtomicU64::new(1);

/// What QuickFIX's callbacks hand the wire.
#[derive(Debug)]
enum Event {
    LoggedOn,
    Message(ServerMessage),
    Closed,
}

/// A logged-on FIX session at one site.
pub struct FixWire {
    events: mpsc::UnboundedReceiver<Event>,
    /// The session's member (SenderCompID) and qualifier.
    sender: String,
    qualifier: String,
    /// Dropped with the wire: the session's thread then stops its initiator.
    _stop: std_mpsc::Sender<()>,
}

impl Wire for FixWire {
    const REPLACES_IN_PLACE: bool = false;
    const PROTOCOL: &'static str = "fix";

    async fn logon(addr: SocketAddr, login: &Login) -> io::Result<(FixWire, AccountId)> {
        let qualifier = format!("w{}", NEXT_QUALIFIER.fetch_add(1, Ordering::Relaxed));
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (stop, stopped) = std_mpsc::channel();
        let (login_c, qualifier_c) = (login.clone(), qualifier.clone());
        std::thread::Builder::new()
            .name(format!("fix-{}", login.name))
            .spawn(move || {
                if let Err(err) = run_session(addr, &login_c, &qualifier_c, &events_tx, stopped) {
                    eprintln!("drill: FIX member {} at {addr}: {err}", login_c.name);
                    let _ = events_tx.send(Event::Closed);
                }
            })?;
        match events.recv().await {
            Some(Event::LoggedOn) => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("FIX logon at {addr} refused or failed: {other:?}"),
                ))
            }
        }
        let wire = FixWire {
            events,
            sender: login.name.clone(),
            qualifier,
            _stop: stop,
        };
        Ok((wire, login.account))
    }

    async fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        match to_fix(message)? {
            Some(fix) => self.send_fix(fix),
            None => Ok(()),
        }
    }

    async fn replace_as(&mut self, replace: &ReplaceAs) -> io::Result<()> {
        let mut fields = vec![
            (11, replace.new_id.as_str().to_string()),
            (41, replace.order.as_str().to_string()),
            (55, replace.symbol.as_str().to_string()),
        ];
        fields.extend(replace.price.map(|p| (44, p.to_string())));
        fields.extend(replace.qty.map(|q| (38, q.to_string())));
        self.send_fix(fix_message("G", fields)?)
    }

    async fn recv(&mut self) -> io::Result<Option<ServerMessage>> {
        loop {
            match self.events.recv().await {
                Some(Event::Message(message)) => return Ok(Some(message)),
                Some(Event::LoggedOn) => continue,
                Some(Event::Closed) | None => return Ok(None),
            }
        }
    }
}

impl FixWire {
    fn send_fix(&self, fix: Message) -> io::Result<()> {
        let session = SessionId::try_new("FIX.4.4", &self.sender, VENUE, &self.qualifier)
            .map_err(quickfix_error)?;
        send_to_target(fix, &session).map_err(|err| {
            io::Error::new(io::ErrorKind::NotConnected, format!("FIX send: {err:?}"))
        })
    }
}

fn quickfix_error(err: QuickFixError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("QuickFIX: {err:?}"))
}

/// The session's thread: an initiator for `addr` until the wire is dropped.
fn run_session(
    addr: SocketAddr,
    login: &Login,
    qualifier: &str,
    events: &mpsc::UnboundedSender<Event>,
    stopped: std_mpsc::Receiver<()>,
) -> Result<(), QuickFixError> {
    let settings = settings(addr, login, qualifier)?;
    let bridge = Bridge {
        events: events.clone(),
        login: login.clone(),
    };
    let application = Application::try_new(&bridge)?;
    let store = MemoryMessageStoreFactory::new();
    let log = LogFactory::try_new(&NullLogger)?;
    let mut initiator = Initiator::try_new(
        &settings,
        &application,
        &store,
        &log,
        FixSocketServerKind::SingleThreaded,
    )?;
    initiator.start()?;
    // Until the wire (or a logon given up on) is dropped.
    let _ = stopped.recv();
    initiator.stop()
}

/// One session to `addr`, its numbers reset at logon, heartbeats every second.
fn settings(
    addr: SocketAddr,
    login: &Login,
    qualifier: &str,
) -> Result<SessionSettings, QuickFixError> {
    let mut settings = SessionSettings::new();
    let mut defaults = Dictionary::new();
    defaults.set("ConnectionType", "initiator")?;
    defaults.set("ReconnectInterval", 1)?;
    defaults.set("StartTime", "00:00:00")?;
    defaults.set("EndTime", "00:00:00")?;
    defaults.set("HeartBtInt", HEARTBEAT_SECS)?;
    defaults.set("UseDataDictionary", "N")?;
    defaults.set("ResetOnLogon", "Y")?;
    defaults.set("ResetOnLogout", "Y")?;
    defaults.set("ResetOnDisconnect", "Y")?;
    defaults.set("SocketConnectHost", addr.ip().to_string())?;
    defaults.set("SocketConnectPort", i32::from(addr.port()))?;
    settings.set(None, defaults)?;
    let session = SessionId::try_new("FIX.4.4", &login.name, VENUE, qualifier)?;
    let mut own = Dictionary::new();
    own.set("BeginString", "FIX.4.4")?;
    own.set("SenderCompID", login.name.as_str())?;
    own.set("TargetCompID", VENUE)?;
    own.set("SessionQualifier", qualifier)?;
    settings.set(Some(&session), own)?;
    Ok(settings)
}

/// QuickFIX's callbacks: credentials on the Logon; what the site sends, translated.
struct Bridge {
    events: mpsc::UnboundedSender<Event>,
    login: Login,
}

impl ApplicationCallback for Bridge {
    fn on_logon(&self, _: &SessionId) {
        let _ = self.events.send(Event::LoggedOn);
    }

    fn on_logout(&self, _: &SessionId) {
        let _ = self.events.send(Event::Closed);
    }

    fn on_msg_to_admin(&self, msg: &mut Message, _: &SessionId) {
        if msg.with_header(|h| h.get_field(35)).as_deref() == Some("A") {
            let cod = if self.login.cancel_on_disconnect {
                "Y"
            } else {
                "N"
            };
            let _ = msg.set_field(553, self.login.name.as_str());
            let _ = msg.set_field(554, self.login.token.as_str());
            let _ = msg.set_field(8013, cod);
        }
    }

    fn on_msg_from_admin(&self, msg: &Message, _: &SessionId) -> Result<(), MsgFromAdminError> {
        let message = match msg.with_header(|h| h.get_field(35)).as_deref() {
            Some("0") => msg
                .get_field(112)
                .and_then(|id| id.parse().ok())
                .map(|test_id| ServerMessage::Heartbeat { test_id }),
            Some("5") => Some(ServerMessage::Logout { reason: 0 }),
            _ => None,
        };
        if let Some(message) = message {
            let _ = self.events.send(Event::Message(message));
        }
        Ok(())
    }

    fn on_msg_from_app(&self, msg: &Message, _: &SessionId) -> Result<(), MsgFromAppError> {
        for message in from_fix(msg) {
            let _ = self.events.send(Event::Message(message));
        }
        Ok(())
    }
}

/// A request in FIX (`None`: nothing to send, as for a Logout, which dropping the wire does).
/// Not a replace in place: FIX's gives the order a new ClOrdID ([`Wire::replace_as`]).
fn to_fix(message: &ClientMessage) -> io::Result<Option<Message>> {
    let (kind, fields): (&str, Vec<(i32, String)>) = match *message {
        ClientMessage::NewOrder(order) => ("D", new_order_fields(&order)),
        ClientMessage::ResendOrder { order, age_ms } => return resend_order(&order, age_ms),
        ClientMessage::Cancel { cl_ord_id, symbol } => (
            "F",
            vec![
                (11, format!("{}-x", cl_ord_id.as_str())),
                (41, cl_ord_id.as_str().into()),
                (55, symbol.as_str().into()),
            ],
        ),
        ClientMessage::Replace { .. } => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a FIX replace gives the order a new ClOrdID: replace_as",
            ))
        }
        ClientMessage::MassCancel { symbol } => ("q", mass_fields(530, 11, symbol)),
        ClientMessage::OrderStatus { cl_ord_id, symbol } => (
            "H",
            vec![
                (11, cl_ord_id.as_str().into()),
                (55, symbol.as_str().into()),
                (54, "1".into()),
            ],
        ),
        ClientMessage::MassStatus { symbol } => ("AF", mass_fields(585, 584, symbol)),
        ClientMessage::Heartbeat { test_id } => ("1", vec![(112, test_id.to_string())]),
        ClientMessage::CancelAfter { timeout_ms } => ("U1", vec![(8014, timeout_ms.to_string())]),
        ClientMessage::Logon { .. } | ClientMessage::Logout => return Ok(None),
    };
    fix_message(kind, fields).map(Some)
}

/// A new order the member may have sent before, first sent `age_ms` ago: PossDupFlag (43) `Y`
/// and OrigSendingTime (122) in the header, which the venue judges its age by (QuickFIX
/// stamps SendingTime as it sends).
fn resend_order(order: &NewOrderMsg, age_ms: u32) -> io::Result<Option<Message>> {
    let mut msg = fix_message("D", new_order_fields(order))?;
    let first_ns = gateway::now_ns().saturating_sub(u64::from(age_ms) * 1_000_000);
    msg.with_header_mut(|h| {
        h.set_field(43, "Y")?;
        h.set_field(122, gateway::fix::mapping::utc_timestamp(first_ns).as_str())
    })
    .map_err(quickfix_error)?;
    Ok(Some(msg))
}

/// A FIX message of type `kind` with `fields`.
fn fix_message(kind: &str, fields: Vec<(i32, String)>) -> io::Result<Message> {
    let mut msg = Message::new();
    msg.with_header_mut(|h| h.set_field(35, kind))
        .map_err(quickfix_error)?;
    for (tag, value) in fields {
        msg.set_field(tag, value.as_str()).map_err(quickfix_error)?;
    }
    Ok(msg)
}

fn new_order_fields(order: &NewOrderMsg) -> Vec<(i32, String)> {
    let side = if order.side == Side::Buy { "1" } else { "2" };
    let tif = match order.tif {
        engine::Tif::Gtc => "1",
        engine::Tif::Ioc => "3",
        engine::Tif::Fok => "4",
    };
    let mut fields = vec![
        (11, order.cl_ord_id.as_str().to_string()),
        (55, order.symbol.as_str().to_string()),
        (54, side.to_string()),
        (60, "20260101-00:00:00.000".to_string()),
        (38, order.qty.to_string()),
        (59, tif.to_string()),
    ];
    match order.price {
        Some(price) => {
            fields.push((40, "2".into()));
            fields.push((44, price.to_string()));
        }
        None => fields.push((40, "1".into())),
    }
    if order.post_only {
        fields.push((18, "6".into()));
    }
    fields
}

/// A mass request's fields: its scope tag (`1` one symbol, `7` all), its id tag, the symbol.
fn mass_fields(scope_tag: i32, id_tag: i32, symbol: Option<Symbol>) -> Vec<(i32, String)> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!("m{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let mut fields = vec![(id_tag, id)];
    match symbol {
        Some(symbol) => {
            fields.push((scope_tag, "1".into()));
            fields.push((55, symbol.as_str().into()));
        }
        None => fields.push((scope_tag, "7".into())),
    }
    fields
}

/// What the site sent, in the binary protocol's terms (nothing the client uses: none). The
/// last report answering a mass status (912 LastRptRequested `Y`) also ends it, as the
/// binary protocol's MassStatusReport does.
fn from_fix(msg: &Message) -> Vec<ServerMessage> {
    let mut messages: Vec<ServerMessage> = from_fix_one(msg).into_iter().collect();
    if msg.get_field(912).as_deref() == Some("Y") {
        let reports = msg.get_field(911).and_then(|n| n.parse().ok()).unwrap_or(0);
        messages.push(ServerMessage::MassStatusReport {
            symbol: None,
            reports,
            behind: 0,
        });
    }
    messages
}

fn from_fix_one(msg: &Message) -> Option<ServerMessage> {
    match msg.with_header(|h| h.get_field(35))?.as_str() {
        "8" => exec_report(msg).map(ServerMessage::ExecutionReport),
        "9" => Some(ServerMessage::CancelReject {
            cl_ord_id: OrderId::new(&msg.get_field(41)?).ok()?,
            request: if msg.get_field(434).as_deref() == Some("2") {
                CancelRequest::Replace
            } else {
                CancelRequest::Cancel
            },
            reason: reason_code(&msg.get_field(58).unwrap_or_default()),
        }),
        "j" => business_reject(msg),
        _ => None,
    }
}

/// A BusinessMessageReject: a site refusing for itself (cut off, behind, its clock wrong),
/// or a request throttled.
fn business_reject(msg: &Message) -> Option<ServerMessage> {
    let text = msg.get_field(58).unwrap_or_default();
    let code = match reason_code(&text) {
        reason::UNAVAILABLE => session_reject::UNAVAILABLE,
        reason::CATCHING_UP => session_reject::CATCHING_UP,
        reason::CLOCK_SKEW => session_reject::CLOCK_SKEW,
        _ => 0,
    };
    let rejected_type = match msg.get_field(372).as_deref() {
        Some("D") => msg_type::NEW_ORDER,
        Some("H") => msg_type::ORDER_STATUS,
        Some("AF") => msg_type::MASS_STATUS,
        _ => 0,
    };
    Some(ServerMessage::SessionReject {
        code,
        rejected_type,
    })
}

fn exec_report(msg: &Message) -> Option<ExecReport> {
    let byte = |tag| msg.get_field(tag).and_then(|v| v.bytes().next());
    let price = |tag| {
        msg.get_field(tag)
            .and_then(|v| Price::parse(&v).ok())
            .unwrap_or(Price(0))
    };
    let qty = |tag| {
        msg.get_field(tag)
            .and_then(|v| Qty::parse(&v).ok())
            .unwrap_or(Qty(0))
    };
    let exec_type = byte(150)?;
    // The answer to a cancel echoes the cancel's ClOrdID in 11 and names the order in 41; a
    // replace's names the order's new ClOrdID in 11, which it goes by from then on.
    let order = match msg.get_field(41) {
        Some(order) if exec_type == b'4' => order,
        _ => msg.get_field(11)?,
    };
    Some(ExecReport {
        seq: 0,
        ts: 0,
        cl_ord_id: OrderId::new(&order).ok()?,
        symbol: Symbol::new(&msg.get_field(55)?).ok()?,
        exec_type,
        ord_status: byte(39)?,
        side: if byte(54) == Some(b'2') {
            Side::Sell
        } else {
            Side::Buy
        },
        reason: reason_code(&msg.get_field(58).unwrap_or_default()),
        price: price(44),
        order_qty: qty(38),
        last_px: price(31),
        last_qty: qty(32),
        cum_qty: qty(14),
        leaves_qty: qty(151),
        avg_px: price(6),
    })
}

/// The binary reason code of a FIX Text (58): the reason's name, before any `: detail`.
fn reason_code(text: &str) -> u8 {
    let name = text.split(':').next().unwrap_or_default().trim();
    match name {
        "unknown_symbol" => reason::UNKNOWN_SYMBOL,
        "duplicate_order_id" => reason::DUPLICATE_ORDER_ID,
        "invalid_qty" => reason::INVALID_QTY,
        "invalid_price" => reason::INVALID_PRICE,
        "invalid_tif" => reason::INVALID_TIF,
        "post_only" => reason::POST_ONLY,
        "unknown_order" | "unknown order" => reason::UNKNOWN_ORDER,
        "capacity" => reason::CAPACITY,
        "invalid_tick" => reason::INVALID_TICK,
        "invalid_lot" => reason::INVALID_LOT,
        "account_disabled" => reason::ACCOUNT_DISABLED,
        "cancel_only" => reason::CANCEL_ONLY,
        "user" => reason::USER,
        "mass" => reason::MASS,
        "ioc" => reason::IOC,
        "fok" => reason::FOK,
        "stp" => reason::STP,
        "expired" => reason::EXPIRED,
        "kill_switch" => reason::KILL_SWITCH,
        "busy" => reason::BUSY,
        "unavailable" => reason::UNAVAILABLE,
        "throttled" => reason::THROTTLED,
        "day_not_supported" => reason::DAY_NOT_SUPPORTED,
        "catching_up" => reason::CATCHING_UP,
        "clock_skew" => reason::CLOCK_SKEW,
        "stale_resend" => reason::STALE_RESEND,
        _ => reason::NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{OrdType, Stp, Tif};

    #[test]
    fn reasons_are_read_by_their_names_before_any_detail() {
        let catching_up = "catching_up: this site is behind the log; another site answers sooner";
        assert_eq!(reason_code(catching_up), reason::CATCHING_UP);
        assert_eq!(reason_code("unknown order"), reason::UNKNOWN_ORDER);
        assert_eq!(reason_code("post_only"), reason::POST_ONLY);
        assert_eq!(reason_code("mass"), reason::MASS);
        assert_eq!(reason_code("something else"), reason::NONE);
    }

    #[test]
    fn a_new_order_goes_as_a_new_order_single_and_a_replace_is_refused() {
        let order = NewOrderMsg {
            cl_ord_id: OrderId::new("f1-7").unwrap(),
            symbol: Symbol::new("BTC-USD").unwrap(),
            side: Side::Sell,
            ord_type: OrdType::Limit,
            tif: Tif::Ioc,
            post_only: false,
            stp: Stp::CancelTaker,
            price: Some(Price::parse("100.5").unwrap()),
            qty: Qty::parse("2").unwrap(),
        };
        let msg = to_fix(&ClientMessage::NewOrder(order)).unwrap().unwrap();
        assert_eq!(msg.with_header(|h| h.get_field(35)).as_deref(), Some("D"));
        for (tag, want) in [
            (11, "f1-7"),
            (54, "2"),
            (38, "2"),
            (40, "2"),
            (44, "100.5"),
            (59, "3"),
        ] {
            assert_eq!(msg.get_field(tag).as_deref(), Some(want), "tag {tag}");
        }
        let replace = ClientMessage::Replace {
            cl_ord_id: order.cl_ord_id,
            symbol: order.symbol,
            price: None,
            qty: None,
        };
        assert!(to_fix(&replace).is_err());
    }

    /// An ExecutionReport with `fields`, as the wire hands it to the failover client.
    fn report_of(fields: &[(i32, &str)]) -> ExecReport {
        let mut msg = Message::new();
        msg.with_header_mut(|h| h.set_field(35, "8")).unwrap();
        for (tag, value) in fields {
            msg.set_field(*tag, *value).unwrap();
        }
        match from_fix(&msg).as_slice() {
            [ServerMessage::ExecutionReport(report)] => *report,
            other => panic!("not a report: {other:?}"),
        }
    }

    #[test]
    fn an_execution_report_becomes_the_binary_one() {
        let report = report_of(&[
            (11, "f1-7"),
            (55, "BTC-USD"),
            (150, "F"),
            (39, "1"),
            (54, "1"),
            (38, "3"),
            (44, "100"),
            (31, "99.5"),
            (32, "1"),
            (14, "1"),
            (151, "2"),
            (6, "99.5"),
        ]);
        assert_eq!((report.exec_type, report.ord_status), (b'F', b'1'));
        assert_eq!(report.cum_qty, Qty::parse("1").unwrap());
        assert_eq!(report.leaves_qty, Qty::parse("2").unwrap());
        assert_eq!(report.last_px, Price::parse("99.5").unwrap());
        assert_eq!(report.side, Side::Buy);
    }

    /// A request refused for the site's own reasons or throttled (35=j) names what it refused
    /// (372): a throttled mass status is asked again, not waited for.
    #[test]
    fn a_business_reject_names_the_request_it_refused() {
        for (asked, want) in [
            ("D", msg_type::NEW_ORDER),
            ("H", msg_type::ORDER_STATUS),
            ("AF", msg_type::MASS_STATUS),
        ] {
            let mut msg = Message::new();
            msg.with_header_mut(|h| h.set_field(35, "j")).unwrap();
            msg.set_field(372, asked).unwrap();
            msg.set_field(58, "throttled: more than 10 messages per second")
                .unwrap();
            match from_fix(&msg).as_slice() {
                [ServerMessage::SessionReject {
                    code: 0,
                    rejected_type,
                }] => assert_eq!(*rejected_type, want, "{asked}"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A mass status's last report (912=Y) also ends it; with no order, the one report that
    /// says so (no ClOrdID) only ends it.
    #[test]
    fn the_last_report_of_a_mass_status_ends_it() {
        let mut last = Message::new();
        last.with_header_mut(|h| h.set_field(35, "8")).unwrap();
        for (tag, value) in [(11, "f1-7"), (55, "BTC-USD"), (150, "I"), (39, "0")] {
            last.set_field(tag, value).unwrap();
        }
        last.set_field(911, "2").unwrap();
        last.set_field(912, "Y").unwrap();
        match from_fix(&last).as_slice() {
            [ServerMessage::ExecutionReport(report), ServerMessage::MassStatusReport { reports: 2, .. }] =>
            {
                assert_eq!(report.cl_ord_id.as_str(), "f1-7")
            }
            other => panic!("{other:?}"),
        }
        let mut none = Message::new();
        none.with_header_mut(|h| h.set_field(35, "8")).unwrap();
        for (tag, value) in [(37, "NONE"), (150, "I"), (39, "8"), (911, "0"), (912, "Y")] {
            none.set_field(tag, value).unwrap();
        }
        assert!(matches!(
            from_fix(&none).as_slice(),
            [ServerMessage::MassStatusReport { reports: 0, .. }]
        ));
    }

    /// Seen in a drill: the answer to a cancel carries the cancel's ClOrdID in 11 (the order
    /// is in 41), and the member was "told" a fill of an order it never sent.
    #[test]
    fn the_answer_to_a_cancel_is_the_orders_report() {
        let report = report_of(&[
            (11, "f1-7-x"),
            (41, "f1-7"),
            (55, "BTC-USD"),
            (150, "4"),
            (39, "4"),
            (14, "1"),
        ]);
        assert_eq!(report.cl_ord_id.as_str(), "f1-7");
        assert_eq!(report.cum_qty, Qty::parse("1").unwrap());
    }
}

//! FIX 4.4 ⇄ engine, sans-IO: decoded application messages in, requests out; reports in,
//! message bodies out. Pure functions over ironfix's [`RawMessage`] and [`OutboundMessage`],
//! so the fuzz target and the unit tests call exactly what a session calls.
//!
//! The account is never read from a message: [`parse`] takes it from the session, and a
//! message whose `Account` (1) names another one is refused.

use std::fmt::Write as _;

use engine::{
    AccountId, CancelOrder, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Request, Side,
    Stp, Symbol, Tif,
};
use ironfix_core::message::{MsgType, RawMessage};
use ironfix_engine::OutboundMessage;
use ironfix_session::header::parse_utc_timestamp_millis;

use crate::desk::{ExecType, GatewayReason, OrdStatus, Reason, Report};

/// Custom tag on NewOrderSingle: self-trade prevention. `N` none, `T` cancel the taker (the
/// default), `M` cancel the maker, `B` cancel both.
pub const TAG_STP_MODE: u32 = 7928;
/// Custom tag on Logon: `Y` cancels the session's orders when it ends or its site goes dark.
pub const TAG_CANCEL_ON_DISCONNECT: u32 = 8013;
/// Custom message (`U1`, CancelAfterRequest): the session's dead-man's switch.
pub const MSG_CANCEL_AFTER: &str = "U1";
/// Custom message (`U2`, CancelAfterReport): the switch's deadline once applied.
pub const MSG_CANCEL_AFTER_REPORT: &str = "U2";
/// Custom tag on U1: milliseconds until the session's orders are cancelled (0 disarms).
pub const TAG_CANCEL_AFTER_MS: u32 = 8014;
/// Custom tag on U2: the switch's deadline on log time, in nanoseconds (0: disarmed).
pub const TAG_CANCEL_AFTER_DEADLINE: u32 = 8015;

/// SessionRejectReason (373) values this gateway sends.
pub mod session_reject {
    pub const REQUIRED_TAG_MISSING: u32 = 1;
    pub const VALUE_INCORRECT: u32 = 5;
    pub const INCORRECT_DATA_FORMAT: u32 = 6;
    pub const TAG_REPEATED: u32 = 13;
}

/// BusinessRejectReason (380) values this gateway sends.
pub mod business_reject {
    pub const OTHER: u32 = 0;
    pub const UNSUPPORTED_MESSAGE_TYPE: u32 = 3;
}

/// A malformed application message: answered with a session-level Reject (35=3) naming the
/// tag (371) and the reason (373); the session stays up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// RefTagID (371).
    pub tag: u32,
    /// SessionRejectReason (373), one of [`session_reject`].
    pub reason: u32,
    /// Text (58).
    pub text: String,
}

impl Malformed {
    fn new(tag: u32, reason: u32, text: impl Into<String>) -> Malformed {
        Malformed {
            tag,
            reason,
            text: text.into(),
        }
    }

    fn missing(tag: u32, name: &str) -> Malformed {
        Malformed::new(
            tag,
            session_reject::REQUIRED_TAG_MISSING,
            format!("{name} ({tag}) is required"),
        )
    }

    fn value(tag: u32, text: impl Into<String>) -> Malformed {
        Malformed::new(tag, session_reject::VALUE_INCORRECT, text)
    }

    fn format(tag: u32, text: impl Into<String>) -> Malformed {
        Malformed::new(tag, session_reject::INCORRECT_DATA_FORMAT, text)
    }
}

/// What an application message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// NewOrderSingle (D).
    New(NewOrder),
    /// A well-formed NewOrderSingle this market refuses before the log (TimeInForce Day):
    /// answered with an ExecutionReport rejected naming its ClOrdID.
    Refused { new: NewOrder, why: GatewayReason },
    /// OrderCancelRequest (F): `request` is its ClOrdID (11), echoed back.
    Cancel {
        request: OrderId,
        cancel: CancelOrder,
    },
    /// OrderCancelReplaceRequest (G). `order_qty` is FIX's total OrderQty (38), which is the
    /// engine's amend quantity too; `request` (11) becomes the order's ClOrdID.
    Replace {
        request: OrderId,
        orig: OrderId,
        symbol: Symbol,
        price: Option<Price>,
        order_qty: Option<Qty>,
    },
    /// OrderMassCancelRequest (q): one symbol, or every symbol (`None`).
    MassCancel {
        request: OrderId,
        symbol: Option<Symbol>,
    },
    /// OrderStatusRequest (H).
    Status {
        order: OrderId,
        symbol: Symbol,
        side: Side,
    },
    /// OrderMassStatusRequest (AF): `request` is its MassStatusReqID (584); one symbol
    /// (585=1) or every symbol (585=7, `None`).
    MassStatus {
        request: OrderId,
        symbol: Option<Symbol>,
    },
    /// CancelAfterRequest (U1, custom): the session's dead-man's switch, in milliseconds.
    CancelAfter { timeout_ms: u32 },
    /// A MsgType this gateway does not take: BusinessMessageReject, 380 = 3.
    Unsupported,
}

/// How long ago a resend (PossDupFlag 43 or PossResend 97 `Y`) was first sent, in
/// milliseconds: its SendingTime (52) less its OrigSendingTime (122), both on the member's
/// clock. `None`: not a resend. A resend without a readable OrigSendingTime, or with one after
/// its SendingTime, is taken as [`u64::MAX`] old: the venue cannot tell.
pub fn resend_age_ms(raw: &RawMessage<'_>) -> Option<u64> {
    let yes = |tag| raw.get_field_str(tag) == Some("Y");
    if !yes(43) && !yes(97) {
        return None;
    }
    let ms = |tag| raw.get_field_str(tag).and_then(parse_utc_timestamp_millis);
    let age = match (ms(122), ms(52)) {
        (Some(first), Some(sent)) => sent.checked_sub(first),
        _ => None,
    };
    Some(age.unwrap_or(u64::MAX))
}

/// The one value of `tag`, if present: a tag given twice, or not text, is malformed.
fn field<'a>(raw: &RawMessage<'a>, tag: u32) -> Result<Option<&'a str>, Malformed> {
    let mut found = None;
    for f in raw.fields().filter(|f| f.tag == tag) {
        if found.is_some() {
            return Err(Malformed::new(
                tag,
                session_reject::TAG_REPEATED,
                format!("tag {tag} appears more than once"),
            ));
        }
        found = Some(f);
    }
    match found {
        None => Ok(None),
        Some(f) => f
            .as_str()
            .map(Some)
            .map_err(|_| Malformed::format(tag, format!("tag {tag} is not ASCII text"))),
    }
}

fn required<'a>(raw: &RawMessage<'a>, tag: u32, name: &str) -> Result<&'a str, Malformed> {
    field(raw, tag)?.ok_or_else(|| Malformed::missing(tag, name))
}

fn order_id(raw: &RawMessage<'_>, tag: u32, name: &str) -> Result<OrderId, Malformed> {
    OrderId::new(required(raw, tag, name)?).map_err(|err| {
        Malformed::value(
            tag,
            format!("{name} ({tag}) {err}: 1 to 40 printable ASCII characters"),
        )
    })
}

fn symbol(raw: &RawMessage<'_>) -> Result<Symbol, Malformed> {
    Symbol::new(required(raw, 55, "Symbol")?)
        .map_err(|err| Malformed::value(55, format!("Symbol (55) {err}")))
}

fn side(raw: &RawMessage<'_>) -> Result<Side, Malformed> {
    match required(raw, 54, "Side")? {
        "1" => Ok(Side::Buy),
        "2" => Ok(Side::Sell),
        _ => Err(Malformed::value(
            54,
            "Side (54) must be 1 (buy) or 2 (sell)",
        )),
    }
}

/// A strict fixed-8 decimal. A well-formed number the engine cannot hold (more than 8
/// decimals, out of range) parses to `INVALID`, which the engine rejects with its reason.
fn decimal<T>(
    raw: &RawMessage<'_>,
    tag: u32,
    name: &str,
    parse: fn(&str) -> Result<T, engine::NotADecimal>,
) -> Result<Option<T>, Malformed> {
    field(raw, tag)?
        .map(|text| {
            parse(text).map_err(|err| Malformed::format(tag, format!("{name} ({tag}) {err}")))
        })
        .transpose()
}

/// `Account` (1), when given, must be the session's.
fn check_account(raw: &RawMessage<'_>, account: AccountId) -> Result<(), Malformed> {
    match field(raw, 1)? {
        Some(text) if text != account.0.to_string() => Err(Malformed::value(
            1,
            format!(
                "Account (1) must be absent or the session's account {}",
                account.0
            ),
        )),
        _ => Ok(()),
    }
}

/// Maps one application message of the session of `account` to what it asks for.
pub fn parse(raw: &RawMessage<'_>, account: AccountId) -> Result<Inbound, Malformed> {
    match raw.msg_type().as_str() {
        "D" => {
            let new = new_order(raw, account)?;
            Ok(match field(raw, 59)? {
                Some("0") => Inbound::Refused {
                    new,
                    why: GatewayReason::DayNotSupported,
                },
                _ => Inbound::New(new),
            })
        }
        "F" => {
            check_account(raw, account)?;
            let request = order_id(raw, 11, "ClOrdID")?;
            let cancel = CancelOrder {
                account,
                order_id: order_id(raw, 41, "OrigClOrdID")?,
                symbol: symbol(raw)?,
            };
            Ok(Inbound::Cancel { request, cancel })
        }
        "G" => {
            check_account(raw, account)?;
            Ok(Inbound::Replace {
                request: order_id(raw, 11, "ClOrdID")?,
                orig: order_id(raw, 41, "OrigClOrdID")?,
                symbol: symbol(raw)?,
                price: decimal(raw, 44, "Price", Price::parse)?,
                order_qty: decimal(raw, 38, "OrderQty", Qty::parse)?,
            })
        }
        "q" => {
            check_account(raw, account)?;
            let request = order_id(raw, 11, "ClOrdID")?;
            let symbol = match required(raw, 530, "MassCancelRequestType")? {
                "1" => Some(symbol(raw)?),
                "7" => None,
                _ => {
                    return Err(Malformed::value(
                        530,
                        "MassCancelRequestType (530) must be 1 (symbol) or 7 (all)",
                    ))
                }
            };
            Ok(Inbound::MassCancel { request, symbol })
        }
        "H" => {
            check_account(raw, account)?;
            Ok(Inbound::Status {
                order: order_id(raw, 11, "ClOrdID")?,
                symbol: symbol(raw)?,
                side: side(raw)?,
            })
        }
        MSG_CANCEL_AFTER => {
            let text = required(raw, TAG_CANCEL_AFTER_MS, "CancelAfterMs")?;
            let timeout_ms = text.parse::<u32>().map_err(|_| {
                Malformed::value(
                    TAG_CANCEL_AFTER_MS,
                    "CancelAfterMs (8014) must be 0 to 4294967295 milliseconds",
                )
            })?;
            Ok(Inbound::CancelAfter { timeout_ms })
        }
        "AF" => {
            check_account(raw, account)?;
            let request = order_id(raw, 584, "MassStatusReqID")?;
            let symbol = match required(raw, 585, "MassStatusReqType")? {
                "1" => Some(symbol(raw)?),
                "7" => None,
                _ => {
                    return Err(Malformed::value(
                        585,
                        "MassStatusReqType (585) must be 1 (symbol) or 7 (all)",
                    ))
                }
            };
            Ok(Inbound::MassStatus { request, symbol })
        }
        _ => Ok(Inbound::Unsupported),
    }
}

fn new_order(raw: &RawMessage<'_>, account: AccountId) -> Result<NewOrder, Malformed> {
    check_account(raw, account)?;
    let order_id = order_id(raw, 11, "ClOrdID")?;
    let symbol = symbol(raw)?;
    let side = side(raw)?;
    let ord_type = match required(raw, 40, "OrdType")? {
        "1" => OrdType::Market,
        "2" => OrdType::Limit,
        _ => {
            return Err(Malformed::value(
                40,
                "OrdType (40) must be 1 (market) or 2 (limit)",
            ))
        }
    };
    let qty = decimal(raw, 38, "OrderQty", Qty::parse)?
        .ok_or_else(|| Malformed::missing(38, "OrderQty"))?;
    let price = decimal(raw, 44, "Price", Price::parse)?;
    if ord_type == OrdType::Limit && price.is_none() {
        return Err(Malformed::new(
            44,
            session_reject::REQUIRED_TAG_MISSING,
            "Price (44) is required for a limit order",
        ));
    }
    let tif = time_in_force(raw)?;
    let post_only = post_only(raw)?;
    let stp = stp_mode(raw)?;
    Ok(NewOrder {
        account,
        order_id,
        symbol,
        side,
        ord_type,
        price,
        qty,
        tif,
        post_only,
        stp,
        session: 0,
    })
}

/// TimeInForce (59); GTC when absent (this market never closes, so FIX's default, Day, has no
/// meaning here). An explicit Day (0) reads as GTC here and is refused by [`parse`] as a
/// business reject, not a malformed message.
fn time_in_force(raw: &RawMessage<'_>) -> Result<Tif, Malformed> {
    Ok(match field(raw, 59)? {
        None | Some("0") | Some("1") => Tif::Gtc,
        Some("3") => Tif::Ioc,
        Some("4") => Tif::Fok,
        Some(_) => {
            return Err(Malformed::value(
                59,
                "TimeInForce (59) must be 1 (GTC), 3 (IOC) or 4 (FOK); 0 (Day) is refused",
            ))
        }
    })
}

/// ExecInst (18): post-only when given, and 6 is the only instruction taken.
fn post_only(raw: &RawMessage<'_>) -> Result<bool, Malformed> {
    Ok(match field(raw, 18)? {
        None => false,
        Some(text) => {
            if text.split(' ').any(|inst| inst != "6") {
                return Err(Malformed::value(
                    18,
                    "ExecInst (18): only 6 (participate don't initiate: post-only) is supported",
                ));
            }
            true
        }
    })
}

/// SelfTradePreventionMode (7928); the default when absent.
fn stp_mode(raw: &RawMessage<'_>) -> Result<Stp, Malformed> {
    Ok(match field(raw, TAG_STP_MODE)? {
        None => Stp::default(),
        Some("N") => Stp::None,
        Some("T") => Stp::CancelTaker,
        Some("M") => Stp::CancelMaker,
        Some("B") => Stp::CancelBoth,
        Some(_) => {
            return Err(Malformed::value(
                TAG_STP_MODE,
                "SelfTradePreventionMode (7928) must be N, T, M or B",
            ))
        }
    })
}

/// OrdRejReason (103) for an engine reject.
pub fn ord_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownSymbol => 1,
        RejectReason::UnknownOrder => 5,
        RejectReason::DuplicateOrderId => 6,
        RejectReason::InvalidTif => 11,
        RejectReason::InvalidQty => 13,
        // "Exchange closed": the symbol takes cancels only.
        RejectReason::CancelOnly => 2,
        RejectReason::InvalidPrice
        | RejectReason::AccountDisabled
        | RejectReason::PostOnly
        | RejectReason::DuplicateSymbol
        | RejectReason::InvalidTick
        | RejectReason::InvalidLot
        | RejectReason::Capacity => 99,
    }
}

/// CxlRejReason (102) for a refused cancel or replace.
pub fn cxl_rej_reason(why: Reason) -> u32 {
    match why {
        Reason::Rejected(RejectReason::UnknownOrder) => 1,
        Reason::Rejected(RejectReason::DuplicateOrderId) => 6,
        Reason::Gateway(_) => 2,
        Reason::Rejected(_) | Reason::Cancelled(_) => 99,
    }
}

fn why_text(why: Reason) -> &'static str {
    match why {
        Reason::Rejected(reason) => reason.as_str(),
        Reason::Cancelled(reason) => reason.as_str(),
        Reason::Gateway(reason) => reason.as_str(),
    }
}

fn side_code(side: Side) -> &'static str {
    match side {
        Side::Buy => "1",
        Side::Sell => "2",
    }
}

/// A fixed-8 value as FIX text, or nothing when the edge could not represent it.
fn push_fixed(message: &mut OutboundMessage, tag: u32, value: i64, invalid: bool) {
    if !invalid {
        message.push_str(tag, &Price(value).to_string());
    }
}

/// `YYYYMMDD-HH:MM:SS.sss` (UTC) of nanoseconds since the Unix epoch.
pub fn utc_timestamp(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let of_day = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(21);
    let _ = write!(
        out,
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{millis:03}",
        of_day / 3600,
        (of_day / 60) % 60,
        of_day % 60
    );
    out
}

/// OrderID (37): the order's identity at the venue, `SHARD-NUMBER` (the number its shard's
/// engine gave it on acceptance: the same at every site, kept through replaces), or `NONE`
/// for an order the venue never accepted.
pub fn order_id_field(report: Option<&Report>) -> String {
    report
        .and_then(|r| r.order_id)
        .map_or_else(|| "NONE".to_string(), |id| id.to_string())
}

/// ExecID (17) of a report: the engine event's sequence number and the order (a trade's two
/// reports share the event), or, for a request refused before the log, the refusal's time.
/// An answer to an OrderStatusRequest is `0`, as FIX 4.4 says.
fn exec_id(report: &Report) -> String {
    if report.seq == 0 {
        format!("gw{}-{}", report.ts, report.cl_ord_id)
    } else {
        format!("{}-{}", report.seq, report.cl_ord_id)
    }
}

/// ExecutionReport (8) of `report`. `request` is the ClOrdID (11) of the cancel or replace
/// this report answers: it is echoed in 11, with the order's own ClOrdID in OrigClOrdID (41).
pub fn execution_report(report: &Report, request: Option<&OrderId>) -> OutboundMessage {
    report_body(report, request, &exec_id(report))
}

/// ExecutionReport (8) with ExecType I answering an OrderStatusRequest: `state` is the order's
/// last known state.
pub fn order_status(state: &Report) -> OutboundMessage {
    report_body(&state.status(), None, "0")
}

fn report_body(report: &Report, request: Option<&OrderId>, exec_id: &str) -> OutboundMessage {
    let mut m = OutboundMessage::new(MsgType::ExecutionReport);
    m.push_str(37, &order_id_field(Some(report)));
    match (report.orig_cl_ord_id, request) {
        // A replace that gave the order a new ClOrdID: it goes by that one now.
        (Some(orig), _) => {
            m.push_str(11, report.cl_ord_id.as_str());
            m.push_str(41, orig.as_str());
        }
        (None, Some(request)) if *request != report.cl_ord_id => {
            m.push_str(11, request.as_str());
            m.push_str(41, report.cl_ord_id.as_str());
        }
        _ => {
            m.push_str(11, report.cl_ord_id.as_str());
        }
    }
    m.push_str(17, exec_id);
    m.push_char(150, char::from(report.exec_type.fix()));
    m.push_char(39, char::from(report.ord_status.fix()));
    m.push_str(1, &report.account.0.to_string());
    m.push_str(55, report.symbol.as_str());
    m.push_str(54, side_code(report.side));
    push_fixed(
        &mut m,
        38,
        report.order_qty.0,
        report.order_qty == Qty::INVALID,
    );
    match report.price {
        Some(price) => {
            m.push_char(40, '2');
            push_fixed(&mut m, 44, price.0, price == Price::INVALID);
        }
        None => {
            m.push_char(40, '1');
        }
    }
    if report.exec_type == ExecType::Trade {
        push_fixed(&mut m, 31, report.last_px.0, false);
        push_fixed(&mut m, 32, report.last_qty.0, false);
    }
    push_fixed(&mut m, 151, report.leaves_qty.0, false);
    push_fixed(&mut m, 14, report.cum_qty.0, false);
    push_fixed(&mut m, 6, report.avg_px.0, false);
    if report.ts != 0 {
        m.push_str(60, &utc_timestamp(report.ts));
    }
    if let Some(why) = report.why {
        if let (ExecType::Rejected, Reason::Rejected(reason)) = (report.exec_type, why) {
            m.push_uint(103, u64::from(ord_rej_reason(reason)));
        } else if report.exec_type == ExecType::Rejected {
            m.push_uint(103, 99);
        }
        m.push_str(58, why_text(why));
    }
    m
}

/// ExecutionReport (8) with ExecType I for an order the gateway does not know (never seen, or
/// done and forgotten): OrdStatus 8, Text "unknown order".
pub fn unknown_order_status(
    account: AccountId,
    order: &OrderId,
    symbol: &Symbol,
    side: Side,
) -> OutboundMessage {
    let mut m = OutboundMessage::new(MsgType::ExecutionReport);
    m.push_str(37, "NONE");
    m.push_str(11, order.as_str());
    m.push_str(17, "0");
    m.push_char(150, 'I');
    m.push_char(39, char::from(OrdStatus::Rejected.fix()));
    m.push_str(1, &account.0.to_string());
    m.push_str(55, symbol.as_str());
    m.push_str(54, side_code(side));
    m.push_str(151, "0");
    m.push_str(14, "0");
    m.push_str(6, "0");
    m.push_str(58, "unknown order");
    m
}

/// OrderCancelReject (9) for the cancel (`Request::Cancel`) or replace (`Request::Amend`)
/// `request` of the order `orig`, with the order's last known state if any.
pub fn cancel_reject(
    request: &OrderId,
    orig: &OrderId,
    account: AccountId,
    to: Request,
    state: Option<&Report>,
    why: Reason,
) -> OutboundMessage {
    let mut m = OutboundMessage::new(MsgType::OrderCancelReject);
    m.push_str(37, &order_id_field(state));
    m.push_str(11, request.as_str());
    m.push_str(41, orig.as_str());
    let status = state.map_or(OrdStatus::Rejected, |s| s.ord_status);
    m.push_char(39, char::from(status.fix()));
    m.push_str(1, &account.0.to_string());
    m.push_char(
        434,
        match to {
            Request::Amend => '2',
            _ => '1',
        },
    );
    m.push_uint(102, u64::from(cxl_rej_reason(why)));
    m.push_str(58, why_text(why));
    m
}

/// OrderMassCancelReport (r): `cancelled` orders, or the reason the request was refused
/// before the log.
pub fn mass_cancel_report(
    request: &OrderId,
    symbol: Option<&Symbol>,
    outcome: Result<u32, GatewayReason>,
) -> OutboundMessage {
    let mut m = OutboundMessage::new(MsgType::OrderMassCancelReport);
    m.push_str(37, &format!("mass:{request}"));
    m.push_str(11, request.as_str());
    let request_type = if symbol.is_some() { '1' } else { '7' };
    m.push_char(530, request_type);
    match outcome {
        Ok(cancelled) => {
            m.push_char(531, request_type);
            m.push_uint(533, u64::from(cancelled));
        }
        Err(reason) => {
            m.push_char(531, '0');
            m.push_uint(532, 99);
            m.push_str(58, reason.as_str());
        }
    }
    if let Some(symbol) = symbol {
        m.push_str(55, symbol.as_str());
    }
    m
}

/// The answer to an OrderMassStatusRequest `request` (584): one ExecutionReport (150=I) per
/// order, each with 584, 911 TotNumReports and 912 LastRptRequested (Y on the last). With no
/// order, one ExecutionReport says so: 37 `NONE`, 39=8, 911=0, 912=Y, 58 `no orders`. At a
/// site whose state may be behind the log's, `behind` says why, in 58 on every report.
pub fn mass_status_reports(
    states: &[Report],
    request: &OrderId,
    symbol: Option<&Symbol>,
    account: AccountId,
    behind: Option<&str>,
) -> Vec<OutboundMessage> {
    let total = states.len() as u64;
    let mut out: Vec<OutboundMessage> = states
        .iter()
        .enumerate()
        .map(|(at, state)| {
            let mut m = order_status(state);
            m.push_str(584, request.as_str());
            m.push_uint(911, total);
            m.push_char(912, if at + 1 == states.len() { 'Y' } else { 'N' });
            if let Some(text) = behind {
                m.push_str(58, text);
            }
            m
        })
        .collect();
    if out.is_empty() {
        let mut m = OutboundMessage::new(MsgType::ExecutionReport);
        m.push_str(37, "NONE");
        m.push_str(17, "0");
        m.push_char(150, 'I');
        m.push_char(39, char::from(OrdStatus::Rejected.fix()));
        m.push_str(1, &account.0.to_string());
        if let Some(symbol) = symbol {
            m.push_str(55, symbol.as_str());
        }
        m.push_str(54, "1");
        for tag in [151, 14, 6] {
            m.push_str(tag, "0");
        }
        m.push_str(584, request.as_str());
        m.push_uint(911, 0);
        m.push_char(912, 'Y');
        m.push_str(
            58,
            &behind.map_or("no orders".into(), |text| format!("no orders; {text}")),
        );
        out.push(m);
    }
    out
}

/// CancelAfterReport (U2, custom): the session's dead-man's switch fires at `deadline` (log
/// time, ns; 0: disarmed).
pub fn cancel_after_report(deadline: u64) -> OutboundMessage {
    let msg_type = MsgType::new(MSG_CANCEL_AFTER_REPORT).expect("a valid custom MsgType");
    let mut m = OutboundMessage::new(msg_type);
    m.push_uint(TAG_CANCEL_AFTER_DEADLINE, deadline);
    m
}

/// BusinessMessageReject (j) of the message numbered `ref_seq` (45), of type `ref_msg_type`
/// (372), for `reason` (380), naming the request's id (379) when it has one.
pub fn business_message_reject(
    ref_seq: Option<u64>,
    ref_msg_type: &str,
    ref_id: Option<&str>,
    reason: u32,
    text: &str,
) -> OutboundMessage {
    let mut m = OutboundMessage::new(MsgType::BusinessMessageReject);
    if let Some(seq) = ref_seq {
        m.push_uint(45, seq);
    }
    m.push_str(372, ref_msg_type);
    if let Some(id) = ref_id.filter(|id| !id.is_empty()) {
        m.push_str(379, id);
    }
    m.push_uint(380, u64::from(reason));
    m.push_str(58, text);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desk::resend_too_old;
    use ironfix_tagvalue::Decoder;

    /// A framed message (BodyLength and CheckSum computed) from `|`-separated body fields.
    fn frame(body: &str) -> Vec<u8> {
        let body = body.replace('|', "\x01");
        let mut out = format!("8=FIX.4.4\x019={}\x01{}", body.len(), body).into_bytes();
        let sum: u32 = out.iter().map(|b| u32::from(*b)).sum();
        out.extend_from_slice(format!("10={:03}\x01", sum % 256).as_bytes());
        out
    }

    fn parse_text(body: &str) -> Result<Inbound, Malformed> {
        let bytes = frame(body);
        let raw = Decoder::new(&bytes).decode().expect("test frame decodes");
        parse(&raw, AccountId(7))
    }

    const HEAD: &str = "49=M|56=V|34=2|52=20260101-00:00:00|";

    fn d(rest: &str) -> Result<Inbound, Malformed> {
        parse_text(&format!("35=D|{HEAD}{rest}"))
    }

    /// Whether a NewOrderSingle with these header fields (after 34) is a stale resend, with
    /// the engines' 60 s window.
    fn stale(header: &str) -> bool {
        let bytes = frame(&format!(
            "35=D|49=M|56=V|34=9|{header}11=a|55=X|54=1|40=1|38=1|"
        ));
        let raw = Decoder::new(&bytes).decode().expect("test frame decodes");
        resend_age_ms(&raw).is_some_and(|age| resend_too_old(age, 60_000_000_000))
    }

    /// A resend (43 or 97 `Y`) is stale when its first sending (122) is within the margin of
    /// the window before its sending (52), or cannot be told; anything else is not one.
    #[test]
    fn a_resend_older_than_the_dedup_window_less_the_margin_is_stale() {
        let sent = "52=20261207-10:01:00.000|";
        assert!(!stale(sent), "not a resend");
        assert!(!stale(&format!("{sent}43=N|122=20261207-09:00:00|")));
        let resend = |flag: &str, first: &str| stale(&format!("{sent}{flag}=Y|122={first}|"));
        assert!(!resend("43", "20261207-10:00:05.001"), "54.999 s old");
        assert!(resend("43", "20261207-10:00:05.000"), "55 s old");
        assert!(resend("97", "20261207-09:59:00"), "two minutes old");
        assert!(!resend("97", "20261207-10:00:59.5"));
        assert!(
            resend("43", "20261207-10:01:01"),
            "first sent after it was sent again"
        );
        assert!(resend("43", "yesterday"), "no telling");
        assert!(stale(&format!("{sent}43=Y|")), "no OrigSendingTime");
    }

    #[test]
    fn new_order_single_maps_every_field() {
        let got =
            d("11=a1|55=BTC-USD|54=2|40=2|44=100.5|38=0.25|59=3|18=6|7928=M|1=7|60=x|").unwrap();
        assert_eq!(
            got,
            Inbound::New(NewOrder {
                account: AccountId(7),
                order_id: OrderId::new("a1").unwrap(),
                symbol: Symbol::new("BTC-USD").unwrap(),
                side: Side::Sell,
                ord_type: OrdType::Limit,
                price: Some(Price(10_050_000_000)),
                qty: Qty(25_000_000),
                tif: Tif::Ioc,
                post_only: true,
                stp: Stp::CancelMaker,
                session: 0,
            })
        );
        // Defaults: GTC, not post-only, the engine's STP; a market order needs no price.
        let Inbound::New(market) = d("11=a|55=X|54=1|40=1|38=1|").unwrap() else {
            panic!()
        };
        assert_eq!(
            (market.ord_type, market.price, market.tif, market.post_only),
            (OrdType::Market, None, Tif::Gtc, false)
        );
        assert_eq!(market.stp, Stp::default());
        // Too many decimals is the engine's reject, not a malformed message.
        let Inbound::New(fine) = d("11=a|55=X|54=1|40=2|44=1.000000001|38=1|").unwrap() else {
            panic!()
        };
        assert_eq!(fine.price, Some(Price::INVALID));
    }

    #[test]
    fn malformed_fields_name_the_tag_and_reason() {
        let cases = [
            ("55=X|54=1|40=2|44=1|38=1|", 11, 1),
            ("11=a|54=1|40=2|44=1|38=1|", 55, 1),
            ("11=a|55=X|54=3|40=2|44=1|38=1|", 54, 5),
            ("11=a|55=X|54=1|40=3|44=1|38=1|", 40, 5),
            ("11=a|55=X|54=1|40=2|38=1|", 44, 1),
            ("11=a|55=X|54=1|40=2|44=1e3|38=1|", 44, 6),
            ("11=a|55=X|54=1|40=2|44=1|", 38, 1),
            ("11=a|55=X|54=1|40=2|44=1|38=1|38=2|", 38, 13),
            ("11=a|55=X|54=1|40=2|44=1|38=1|59=6|", 59, 5),
            ("11=a|55=X|54=1|40=2|44=1|38=1|18=6 E|", 18, 5),
            ("11=a|55=X|54=1|40=2|44=1|38=1|7928=Z|", 7928, 5),
            ("11=a|55=X|54=1|40=2|44=1|38=1|1=8|", 1, 5),
            ("11=a b|55=X|54=1|40=2|44=1|38=1|", 11, 5),
            ("11=a|55=WAY-TOO-LONG-SYMBOL|54=1|40=2|44=1|38=1|", 55, 5),
        ];
        for (rest, tag, reason) in cases {
            let err = d(rest).unwrap_err();
            assert_eq!((err.tag, err.reason), (tag, reason), "{rest}: {err:?}");
            assert!(!err.text.is_empty());
        }
    }

    /// AF asks for every order (585=7) or one symbol's (585=1 with 55); the answer is one
    /// ExecutionReport per order with 584, 911 and 912=Y on the last, or one saying none.
    #[test]
    fn mass_status_requests_and_their_reports() {
        let all = parse_text(&format!("35=AF|{HEAD}584=ms1|585=7|")).unwrap();
        assert_eq!(
            all,
            Inbound::MassStatus {
                request: OrderId::new("ms1").unwrap(),
                symbol: None
            }
        );
        let one = parse_text(&format!("35=AF|{HEAD}584=ms2|585=1|55=X|")).unwrap();
        assert!(matches!(
            one,
            Inbound::MassStatus {
                symbol: Some(_),
                ..
            }
        ));
        for (body, tag) in [("585=7|", 584), ("584=a|585=2|", 585), ("584=a|585=1|", 55)] {
            let err = parse_text(&format!("35=AF|{HEAD}{body}")).unwrap_err();
            assert_eq!(err.tag, tag, "{body}");
        }
        let request = OrderId::new("ms1").unwrap();
        let two = mass_status_reports(&[report(), report()], &request, None, AccountId(7), None);
        for (m, last) in two.iter().zip(["N", "Y"]) {
            assert_eq!(
                (text(m, 150), text(m, 584), text(m, 911), text(m, 912)),
                (Some("I"), Some("ms1"), Some("2"), Some(last))
            );
        }
        let none = mass_status_reports(&[], &request, None, AccountId(7), None);
        assert_eq!(none.len(), 1);
        assert_eq!(
            (text(&none[0], 37), text(&none[0], 911), text(&none[0], 912)),
            (Some("NONE"), Some("0"), Some("Y"))
        );
    }

    /// TimeInForce Day is a business refusal naming the order, not a malformed message: the
    /// member's order ends rejected instead of in limbo.
    #[test]
    fn a_day_order_is_refused_as_an_order_with_its_client_order_id() {
        let inbound = d("11=a|55=X|54=1|40=2|44=1|38=1|59=0|").unwrap();
        let Inbound::Refused { new, why } = inbound else {
            panic!("expected a refusal, got {inbound:?}")
        };
        assert_eq!(
            (new.order_id.as_str(), why),
            ("a", GatewayReason::DayNotSupported)
        );
        let report = crate::desk::gateway_reject(new.account, &new, why);
        let m = execution_report(&report, None);
        assert_eq!(
            (text(&m, 150), text(&m, 39), text(&m, 11), text(&m, 58)),
            (Some("8"), Some("8"), Some("a"), Some("day_not_supported"))
        );
        // Without 59 the order is GTC: this market never closes.
        assert!(matches!(
            d("11=a|55=X|54=1|40=2|44=1|38=1|").unwrap(),
            Inbound::New(NewOrder { tif: Tif::Gtc, .. })
        ));
    }

    #[test]
    fn cancel_replace_mass_cancel_status_and_unsupported() {
        let cancel = parse_text(&format!("35=F|{HEAD}11=c2|41=a1|55=X|54=1|")).unwrap();
        assert_eq!(
            cancel,
            Inbound::Cancel {
                request: OrderId::new("c2").unwrap(),
                cancel: CancelOrder {
                    account: AccountId(7),
                    order_id: OrderId::new("a1").unwrap(),
                    symbol: Symbol::new("X").unwrap(),
                },
            }
        );
        let replace = parse_text(&format!("35=G|{HEAD}11=r|41=a1|55=X|54=1|40=2|38=5|")).unwrap();
        assert_eq!(
            replace,
            Inbound::Replace {
                request: OrderId::new("r").unwrap(),
                orig: OrderId::new("a1").unwrap(),
                symbol: Symbol::new("X").unwrap(),
                price: None,
                order_qty: Some(Qty(500_000_000)),
            }
        );
        assert_eq!(
            parse_text(&format!("35=q|{HEAD}11=m|530=7|")).unwrap(),
            Inbound::MassCancel {
                request: OrderId::new("m").unwrap(),
                symbol: None
            }
        );
        assert_eq!(
            parse_text(&format!("35=q|{HEAD}11=m|530=1|55=X|")).unwrap(),
            Inbound::MassCancel {
                request: OrderId::new("m").unwrap(),
                symbol: Some(Symbol::new("X").unwrap())
            }
        );
        assert_eq!(
            parse_text(&format!("35=q|{HEAD}11=m|530=1|"))
                .unwrap_err()
                .tag,
            55
        );
        assert_eq!(
            parse_text(&format!("35=q|{HEAD}11=m|530=3|"))
                .unwrap_err()
                .tag,
            530
        );
        assert_eq!(
            parse_text(&format!("35=H|{HEAD}11=a1|55=X|54=2|")).unwrap(),
            Inbound::Status {
                order: OrderId::new("a1").unwrap(),
                symbol: Symbol::new("X").unwrap(),
                side: Side::Sell
            }
        );
        assert_eq!(
            parse_text(&format!("35=F|{HEAD}11=c|55=X|"))
                .unwrap_err()
                .tag,
            41
        );
        assert_eq!(
            parse_text(&format!("35=AE|{HEAD}571=x|")).unwrap(),
            Inbound::Unsupported
        );
    }

    fn report() -> Report {
        Report {
            seq: 42,
            ts: 1_767_225_600_123_000_000,
            account: AccountId(7),
            cl_ord_id: OrderId::new("a1").unwrap(),
            orig_cl_ord_id: None,
            order_id: Some(crate::desk::VenueOrderId {
                shard: 0,
                number: 12,
            }),
            symbol: Symbol::new("BTC-USD").unwrap(),
            side: Side::Buy,
            exec_type: ExecType::Trade,
            ord_status: OrdStatus::PartiallyFilled,
            price: Some(Price(10_050_000_000)),
            order_qty: Qty(1_000_000_000),
            last_px: Price(10_000_000_000),
            last_qty: Qty(400_000_000),
            cum_qty: Qty(400_000_000),
            leaves_qty: Qty(600_000_000),
            avg_px: Price(10_000_000_000),
            why: None,
        }
    }

    fn text(m: &OutboundMessage, tag: u32) -> Option<&str> {
        m.get(tag).map(|v| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn execution_reports_carry_the_order_state() {
        let m = execution_report(&report(), None);
        assert_eq!(m.msg_type().as_str(), "8");
        for (tag, want) in [
            (37, "0-12"),
            (11, "a1"),
            (17, "42-a1"),
            (150, "F"),
            (39, "1"),
            (55, "BTC-USD"),
            (54, "1"),
            (38, "10"),
            (44, "100.5"),
            (31, "100"),
            (32, "4"),
            (151, "6"),
            (14, "4"),
            (6, "100"),
            (60, "20260101-00:00:00.123"),
        ] {
            assert_eq!(text(&m, tag), Some(want), "tag {tag}");
        }
        assert_eq!(text(&m, 41), None);
        // A replace's report echoes its ClOrdID and names the order in 41.
        let replaced = Report {
            exec_type: ExecType::Replaced,
            ..report()
        };
        let m = execution_report(&replaced, Some(&OrderId::new("r2").unwrap()));
        assert_eq!((text(&m, 11), text(&m, 41)), (Some("r2"), Some("a1")));
        assert_eq!(text(&m, 31), None);
        // A reject names the engine's reason.
        let rejected = Report {
            exec_type: ExecType::Rejected,
            ord_status: OrdStatus::Rejected,
            price: Some(Price::INVALID),
            why: Some(Reason::Rejected(RejectReason::InvalidPrice)),
            ..report()
        };
        let m = execution_report(&rejected, None);
        assert_eq!(
            (text(&m, 103), text(&m, 58)),
            (Some("99"), Some("invalid_price"))
        );
        assert_eq!(text(&m, 44), None, "an unrepresentable price is left out");
        let busy = Report {
            seq: 0,
            why: Some(Reason::Gateway(GatewayReason::Busy)),
            ..rejected
        };
        let m = execution_report(&busy, None);
        assert_eq!(text(&m, 58), Some("busy"));
        assert!(text(&m, 17).unwrap().starts_with("gw"));
        // Status answers have ExecID 0 and no fill.
        let m = order_status(&report());
        assert_eq!(
            (text(&m, 150), text(&m, 17), text(&m, 32)),
            (Some("I"), Some("0"), None)
        );
    }

    #[test]
    fn cancel_rejects_mass_cancel_reports_and_business_rejects() {
        let req = OrderId::new("c9").unwrap();
        let orig = OrderId::new("a1").unwrap();
        let m = cancel_reject(
            &req,
            &orig,
            AccountId(7),
            Request::Amend,
            None,
            Reason::Rejected(RejectReason::UnknownOrder),
        );
        for (tag, want) in [
            (37, "NONE"),
            (11, "c9"),
            (41, "a1"),
            (39, "8"),
            (434, "2"),
            (102, "1"),
            (58, "unknown_order"),
        ] {
            assert_eq!(text(&m, tag), Some(want), "tag {tag}");
        }
        let m = mass_cancel_report(&req, None, Ok(3));
        assert_eq!(m.msg_type().as_str(), "r");
        assert_eq!(
            (text(&m, 530), text(&m, 531), text(&m, 533)),
            (Some("7"), Some("7"), Some("3"))
        );
        let m = mass_cancel_report(
            &req,
            Some(&Symbol::new("X").unwrap()),
            Err(GatewayReason::Busy),
        );
        assert_eq!(
            (text(&m, 530), text(&m, 531), text(&m, 58)),
            (Some("1"), Some("0"), Some("busy"))
        );
        let m = business_message_reject(Some(5), "AE", None, 3, "unsupported");
        assert_eq!(
            (text(&m, 45), text(&m, 372), text(&m, 380), text(&m, 379)),
            (Some("5"), Some("AE"), Some("3"), None)
        );
    }

    #[test]
    fn timestamps_are_utc() {
        assert_eq!(utc_timestamp(0), "19700101-00:00:00.000");
        assert_eq!(
            utc_timestamp(951_782_400_000_000_000),
            "20000229-00:00:00.000"
        );
        assert_eq!(
            utc_timestamp(4_102_444_799_999_999_999),
            "20991231-23:59:59.999"
        );
    }
}

//! The binary order-entry codec, version 1 (`gateway/BINARY-PROTOCOL.md` is its
//! specification). Sans-IO: [`check`] says whether a whole frame is buffered, the `decode_*`
//! functions turn one frame into a message, the `encode_*` functions append one. Decoding never
//! panics and never allocates; every malformed frame gets a [`DecodeError`] with the session
//! reject code the gateway sends before it closes the connection.

use engine::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};

/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;
/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;
/// Largest frame, header included.
pub const FRAME_MAX: usize = 512;

/// ExecutionReport and CancelReject `reason` codes: the engine's reject or cancel reason, or
/// the gateway's for a request it did not send to the log (30-31 are also the SessionReject
/// codes of a MassCancel the log refused).
pub mod reason {
    pub const NONE: u8 = 0;
    pub const UNKNOWN_SYMBOL: u8 = 1;
    pub const DUPLICATE_ORDER_ID: u8 = 2;
    pub const INVALID_QTY: u8 = 3;
    pub const INVALID_PRICE: u8 = 4;
    pub const INVALID_TIF: u8 = 5;
    pub const POST_ONLY: u8 = 6;
    pub const UNKNOWN_ORDER: u8 = 7;
    pub const CAPACITY: u8 = 8;
    pub const DUPLICATE_SYMBOL: u8 = 9;
    pub const INVALID_TICK: u8 = 10;
    pub const INVALID_LOT: u8 = 11;
    /// The account's kill switch is on (an operator's control).
    pub const ACCOUNT_DISABLED: u8 = 12;
    /// The symbol takes cancels only (an operator's control).
    pub const CANCEL_ONLY: u8 = 13;
    /// Cancelled at the member's request.
    pub const USER: u8 = 20;
    /// Cancelled by a mass cancel.
    pub const MASS: u8 = 21;
    /// The unfilled rest of an IOC order.
    pub const IOC: u8 = 22;
    /// A FOK order that could not fill completely.
    pub const FOK: u8 = 23;
    /// Self-trade prevention.
    pub const STP: u8 = 24;
    /// A dead-man's switch fired.
    pub const EXPIRED: u8 = 25;
    /// The account's kill switch was turned on.
    pub const KILL_SWITCH: u8 = 26;
    /// The log's queue is full: retry.
    pub const BUSY: u8 = 30;
    /// The log cannot take orders.
    pub const UNAVAILABLE: u8 = 31;
    /// Over the session's message rate.
    pub const THROTTLED: u8 = 32;
    /// FIX only: TimeInForce Day, which a market that never closes does not have.
    pub const DAY_NOT_SUPPORTED: u8 = 33;
    /// This site is behind the log (restarted, or slow): another site answers sooner.
    pub const CATCHING_UP: u8 = 34;
    /// This site's clock is ahead of the log's: another site takes it.
    pub const CLOCK_SKEW: u8 = 35;
    /// An order resent (the NewOrder resend flag, FIX's PossDupFlag or PossResend) from longer
    /// ago than the venue remembers client order ids: it cannot tell whether it already
    /// executed it.
    pub const STALE_RESEND: u8 = 36;

    /// Whether `code` refused a request before the log for a passing reason (busy,
    /// unavailable, catching up, clock skew, throttled): the request never reached the log,
    /// and the member may send it again with the same id.
    pub fn is_refusal(code: u8) -> bool {
        matches!(
            code,
            BUSY | UNAVAILABLE | CATCHING_UP | CLOCK_SKEW | THROTTLED
        )
    }
}

/// ExecutionReport `exec_type`: FIX's letters as ASCII bytes.
pub mod exec_type {
    pub const NEW: u8 = b'0';
    pub const CANCELED: u8 = b'4';
    pub const REPLACED: u8 = b'5';
    pub const REJECTED: u8 = b'8';
    /// A fill.
    pub const TRADE: u8 = b'F';
    /// An order's state: the answer to OrderStatus, or to a resent NewOrder.
    pub const ORDER_STATUS: u8 = b'I';
}

/// ExecutionReport `ord_status`: FIX's letters as ASCII bytes.
pub mod ord_status {
    pub const NEW: u8 = b'0';
    pub const PARTIALLY_FILLED: u8 = b'1';
    pub const FILLED: u8 = b'2';
    pub const CANCELED: u8 = b'4';
    /// Never sent: a question naming a replaced id is answered under the order's current id.
    pub const REPLACED: u8 = b'5';
    pub const REJECTED: u8 = b'8';
}

/// SessionReject codes (BINARY-PROTOCOL.md, "Session reject codes"). 1-6: a frame that cannot
/// be decoded (the connection is then closed); the others leave the session up.
pub mod session_reject {
    pub const LENGTH: u16 = 1;
    pub const VERSION: u16 = 2;
    pub const UNKNOWN_TYPE: u16 = 3;
    pub const BODY_LENGTH: u16 = 4;
    pub const VALUE: u16 = 5;
    pub const TEXT: u16 = 6;
    /// A second Logon on a logged-on session.
    pub const ALREADY_LOGGED_ON: u16 = 7;
    /// A MassCancel, OrderStatus or MassStatus over the session's message rate (no report of its own).
    pub const THROTTLED: u16 = 8;
    /// A MassCancel the log could not take: its queue is full.
    pub const BUSY: u16 = super::reason::BUSY as u16;
    /// A MassCancel the log could not take: it takes no orders now.
    pub const UNAVAILABLE: u16 = super::reason::UNAVAILABLE as u16;
    /// A MassCancel, OrderStatus or MassStatus at a site behind the log: ask another site.
    pub const CATCHING_UP: u16 = super::reason::CATCHING_UP as u16;
    /// A MassCancel, OrderStatus or MassStatus at a site whose clock is ahead of the log's.
    pub const CLOCK_SKEW: u16 = super::reason::CLOCK_SKEW as u16;
}

/// Message types (a SessionReject names the type it refuses).
pub mod msg_type {
    use super::kind;

    pub const LOGON: u8 = kind::LOGON.0;
    pub const NEW_ORDER: u8 = kind::NEW_ORDER.0;
    pub const CANCEL: u8 = kind::CANCEL.0;
    pub const REPLACE: u8 = kind::REPLACE.0;
    pub const MASS_CANCEL: u8 = kind::MASS_CANCEL.0;
    pub const ORDER_STATUS: u8 = kind::ORDER_STATUS.0;
    pub const MASS_STATUS: u8 = kind::MASS_STATUS.0;
    pub const CANCEL_AFTER: u8 = kind::CANCEL_AFTER.0;
}

/// What a receive buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not a whole frame yet: read more.
    Incomplete,
    /// A whole frame of this many bytes is at the start of the buffer.
    Frame(usize),
}

/// Why bytes are not a valid frame or message. [`DecodeError::code`] is the session reject code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame length {0} is outside {HEADER_LEN}..={FRAME_MAX}")]
    Length(usize),
    #[error("protocol version {0} is not supported (this gateway speaks {VERSION})")]
    Version(u8),
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("message type 0x{kind:02x} has a {expected}-byte body, got {got}")]
    BodyLength {
        kind: u8,
        expected: usize,
        got: usize,
    },
    #[error("field {field} holds {value}, outside its encoding")]
    Value { field: &'static str, value: u64 },
    #[error("field {0} is not zero-padded printable ASCII")]
    Text(&'static str),
}

impl DecodeError {
    /// The session reject code (BINARY-PROTOCOL.md, "Session reject codes").
    pub fn code(&self) -> u16 {
        match self {
            DecodeError::Length(_) => session_reject::LENGTH,
            DecodeError::Version(_) => session_reject::VERSION,
            DecodeError::UnknownType(_) => session_reject::UNKNOWN_TYPE,
            DecodeError::BodyLength { .. } => session_reject::BODY_LENGTH,
            DecodeError::Value { .. } => session_reject::VALUE,
            DecodeError::Text(_) => session_reject::TEXT,
        }
    }
}

/// Whether `buf` starts with a whole frame. Errors only on a header no frame can have.
pub fn check(buf: &[u8]) -> Result<Check, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(Check::Incomplete);
    }
    let len = usize::from(u16::from_le_bytes([buf[0], buf[1]]));
    if !(HEADER_LEN..=FRAME_MAX).contains(&len) {
        return Err(DecodeError::Length(len));
    }
    if buf[2] != VERSION {
        return Err(DecodeError::Version(buf[2]));
    }
    Ok(if buf.len() >= len {
        Check::Frame(len)
    } else {
        Check::Incomplete
    })
}

/// The largest resend age a NewOrder carries (24 bits of milliseconds, about 4.7 hours).
pub const RESEND_AGE_MAX_MS: u32 = 0x00FF_FFFF;

/// NewOrder flags: post-only, and "this may be a resend" (its age in the reserved bytes).
const FLAG_POST_ONLY: u8 = 1;
const FLAG_RESEND: u8 = 2;

/// A new order as a client sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewOrderMsg {
    pub cl_ord_id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub ord_type: OrdType,
    pub tif: Tif,
    pub post_only: bool,
    pub stp: Stp,
    /// `None` for a market order (its price field is ignored).
    pub price: Option<Price>,
    pub qty: Qty,
}

/// Client → gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Logon {
        token: [u8; 32],
        heartbeat_secs: u16,
        cancel_on_disconnect: bool,
    },
    Logout,
    Heartbeat {
        test_id: u64,
    },
    NewOrder(NewOrderMsg),
    /// A NewOrder the member may have sent before (a resend after a failover, under the same
    /// client order id), first sent `age_ms` ago by the member's clock (at most
    /// [`RESEND_AGE_MAX_MS`], which stands for "at least that long"). A venue that no longer
    /// remembers that long refuses it as `stale_resend` unless it knows the order.
    ResendOrder {
        order: NewOrderMsg,
        age_ms: u32,
    },
    Cancel {
        cl_ord_id: OrderId,
        symbol: Symbol,
    },
    Replace {
        cl_ord_id: OrderId,
        symbol: Symbol,
        price: Option<Price>,
        qty: Option<Qty>,
    },
    /// `None`: every symbol.
    MassCancel {
        symbol: Option<Symbol>,
    },
    OrderStatus {
        cl_ord_id: OrderId,
        symbol: Symbol,
    },
    /// Every order of the account the venue remembers (live, and finished inside the dedup
    /// window), in one symbol or (`None`) all.
    MassStatus {
        symbol: Option<Symbol>,
    },
    /// The session's dead-man's switch: cancel its orders `timeout_ms` from now unless
    /// refreshed (0 disarms it).
    CancelAfter {
        timeout_ms: u32,
    },
}

/// An execution report (FIX's ExecutionReport `8`, in fixed binary form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecReport {
    pub seq: u64,
    pub ts: u64,
    pub cl_ord_id: OrderId,
    pub symbol: Symbol,
    /// FIX ExecType as an ASCII byte (`b'0'` new, `b'4'` cancelled, `b'8'` rejected, ...).
    pub exec_type: u8,
    /// FIX OrdStatus as an ASCII byte.
    pub ord_status: u8,
    pub side: Side,
    /// Reject or cancel reason code (BINARY-PROTOCOL.md).
    pub reason: u8,
    pub price: Price,
    pub order_qty: Qty,
    pub last_px: Price,
    pub last_qty: Qty,
    pub cum_qty: Qty,
    pub leaves_qty: Qty,
    pub avg_px: Price,
}

/// Which request a [`ServerMessage::CancelReject`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelRequest {
    Cancel,
    Replace,
}

/// Gateway → client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    LogonAck {
        account: AccountId,
        heartbeat_secs: u16,
    },
    Logout {
        reason: u16,
    },
    Heartbeat {
        test_id: u64,
    },
    SessionReject {
        code: u16,
        rejected_type: u8,
    },
    ExecutionReport(ExecReport),
    CancelReject {
        cl_ord_id: OrderId,
        request: CancelRequest,
        reason: u8,
    },
    MassCancelReport {
        symbol: Option<Symbol>,
        cancelled: u32,
    },
    /// Ends the answer to a MassStatus: `reports` ExecutionReports (OrderStatus) came before.
    /// `behind`: 0, or why the site's state may be behind the log's (the session reject code
    /// it refuses other requests with: 31 unavailable, 34 catching up, 35 clock skew): the
    /// answer is still the state at the site's position, which every site gives there.
    MassStatusReport {
        symbol: Option<Symbol>,
        reports: u32,
        behind: u8,
    },
    /// The answer to a CancelAfter: the switch's deadline on log time (ns), 0 when disarmed.
    SwitchReport {
        deadline: u64,
    },
}

/// Message types and their body lengths.
mod kind {
    pub const LOGON: (u8, usize) = (0x01, 36);
    pub const LOGOUT: (u8, usize) = (0x02, 0);
    pub const HEARTBEAT: (u8, usize) = (0x03, 8);
    pub const NEW_ORDER: (u8, usize) = (0x10, 80);
    pub const CANCEL: (u8, usize) = (0x11, 56);
    pub const REPLACE: (u8, usize) = (0x12, 80);
    pub const MASS_CANCEL: (u8, usize) = (0x13, 16);
    pub const ORDER_STATUS: (u8, usize) = (0x14, 56);
    pub const MASS_STATUS: (u8, usize) = (0x15, 16);
    pub const CANCEL_AFTER: (u8, usize) = (0x16, 8);
    pub const LOGON_ACK: (u8, usize) = (0x81, 16);
    pub const SERVER_LOGOUT: (u8, usize) = (0x82, 8);
    pub const SERVER_HEARTBEAT: (u8, usize) = (0x83, 8);
    pub const SESSION_REJECT: (u8, usize) = (0x84, 8);
    pub const EXEC_REPORT: (u8, usize) = (0x90, 136);
    pub const CANCEL_REJECT: (u8, usize) = (0x91, 48);
    pub const MASS_CANCEL_REPORT: (u8, usize) = (0x92, 24);
    pub const MASS_STATUS_REPORT: (u8, usize) = (0x93, 24);
    pub const SWITCH_REPORT: (u8, usize) = (0x94, 8);
}

/// Reads fixed fields from a body whose length was checked.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.body[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes())
    }
    fn skip(&mut self, n: usize) {
        self.at += n;
    }
    /// Zero-padded printable ASCII; `None` when all zero.
    fn text<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<Option<&'a str>, DecodeError> {
        let raw = &self.body[self.at..self.at + N];
        self.at += N;
        let len = raw.iter().position(|b| *b == 0).unwrap_or(N);
        if !raw[len..].iter().all(|b| *b == 0)
            || !raw[..len].iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return Err(DecodeError::Text(field));
        }
        if len == 0 {
            return Ok(None);
        }
        std::str::from_utf8(&raw[..len])
            .map(Some)
            .map_err(|_| DecodeError::Text(field))
    }
    fn order_id(&mut self, field: &'static str) -> Result<OrderId, DecodeError> {
        self.text::<40>(field)?
            .and_then(|t| OrderId::new(t).ok())
            .ok_or(DecodeError::Text(field))
    }
    fn symbol(&mut self, field: &'static str) -> Result<Option<Symbol>, DecodeError> {
        self.text::<16>(field)?
            .map(|t| Symbol::new(t).map_err(|_| DecodeError::Text(field)))
            .transpose()
    }
    fn required_symbol(&mut self) -> Result<Symbol, DecodeError> {
        self.symbol("symbol")?.ok_or(DecodeError::Text("symbol"))
    }
}

fn bad(field: &'static str, value: impl Into<u64>) -> DecodeError {
    DecodeError::Value {
        field,
        value: value.into(),
    }
}

fn side(value: u8) -> Result<Side, DecodeError> {
    match value {
        1 => Ok(Side::Buy),
        2 => Ok(Side::Sell),
        other => Err(bad("side", other)),
    }
}

fn side_code(side: Side) -> u8 {
    match side {
        Side::Buy => 1,
        Side::Sell => 2,
    }
}

/// The body of a frame already checked by [`check`], with its type, if its length is right.
fn body(frame: &[u8], expected: (u8, usize)) -> Result<Reader<'_>, DecodeError> {
    let got = frame.len() - HEADER_LEN;
    if got != expected.1 {
        return Err(DecodeError::BodyLength {
            kind: expected.0,
            expected: expected.1,
            got,
        });
    }
    Ok(Reader {
        body: &frame[HEADER_LEN..],
        at: 0,
    })
}

/// Checks a frame's header as [`check`] does and returns its type.
fn frame_type(frame: &[u8]) -> Result<u8, DecodeError> {
    match check(frame)? {
        Check::Frame(len) if len == frame.len() => Ok(frame[3]),
        _ => Err(DecodeError::Length(frame.len())),
    }
}

/// Decodes one whole client frame (as delimited by [`check`]).
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    let ty = frame_type(frame)?;
    Ok(match ty {
        t if t == kind::LOGON.0 => decode_logon(frame)?,
        t if t == kind::LOGOUT.0 => {
            body(frame, kind::LOGOUT)?;
            ClientMessage::Logout
        }
        t if t == kind::HEARTBEAT.0 => ClientMessage::Heartbeat {
            test_id: body(frame, kind::HEARTBEAT)?.u64(),
        },
        t if t == kind::NEW_ORDER.0 => decode_new_order(frame)?,
        t if t == kind::CANCEL.0 || t == kind::ORDER_STATUS.0 => {
            let spec = if t == kind::CANCEL.0 {
                kind::CANCEL
            } else {
                kind::ORDER_STATUS
            };
            let mut r = body(frame, spec)?;
            let cl_ord_id = r.order_id("cl_ord_id")?;
            let symbol = r.required_symbol()?;
            if t == kind::CANCEL.0 {
                ClientMessage::Cancel { cl_ord_id, symbol }
            } else {
                ClientMessage::OrderStatus { cl_ord_id, symbol }
            }
        }
        t if t == kind::REPLACE.0 => decode_replace(frame)?,
        t if t == kind::MASS_STATUS.0 => ClientMessage::MassStatus {
            symbol: body(frame, kind::MASS_STATUS)?.symbol("symbol")?,
        },
        t if t == kind::CANCEL_AFTER.0 => ClientMessage::CancelAfter {
            timeout_ms: body(frame, kind::CANCEL_AFTER)?.u32(),
        },
        t if t == kind::MASS_CANCEL.0 => ClientMessage::MassCancel {
            symbol: body(frame, kind::MASS_CANCEL)?.symbol("symbol")?,
        },
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Decodes a Logon frame.
fn decode_logon(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    let mut r = body(frame, kind::LOGON)?;
    let token = r.bytes::<32>();
    let heartbeat_secs = r.u16();
    let flags = r.u8();
    if flags > 1 {
        return Err(bad("logon flags", flags));
    }
    Ok(ClientMessage::Logon {
        token,
        heartbeat_secs,
        cancel_on_disconnect: flags == 1,
    })
}

/// Decodes a NewOrder frame.
fn decode_new_order(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    let mut r = body(frame, kind::NEW_ORDER)?;
    let cl_ord_id = r.order_id("cl_ord_id")?;
    let symbol = r.required_symbol()?;
    let side = side(r.u8())?;
    let ord_type = match r.u8() {
        1 => OrdType::Limit,
        2 => OrdType::Market,
        other => return Err(bad("ord_type", other)),
    };
    let tif = match r.u8() {
        1 => Tif::Gtc,
        2 => Tif::Ioc,
        3 => Tif::Fok,
        other => return Err(bad("tif", other)),
    };
    let flags = r.u8();
    if flags > FLAG_POST_ONLY | FLAG_RESEND {
        return Err(bad("order flags", flags));
    }
    let stp = match r.u8() {
        0 => Stp::None,
        1 => Stp::CancelTaker,
        2 => Stp::CancelMaker,
        3 => Stp::CancelBoth,
        other => return Err(bad("stp", other)),
    };
    let [a, b, c] = r.bytes::<3>();
    let age_ms = u32::from_le_bytes([a, b, c, 0]);
    let price = Price(r.i64());
    let qty = Qty(r.i64());
    let order = NewOrderMsg {
        cl_ord_id,
        symbol,
        side,
        ord_type,
        tif,
        post_only: flags & FLAG_POST_ONLY != 0,
        stp,
        price: (ord_type == OrdType::Limit).then_some(price),
        qty,
    };
    Ok(if flags & FLAG_RESEND != 0 {
        ClientMessage::ResendOrder { order, age_ms }
    } else {
        ClientMessage::NewOrder(order)
    })
}

/// Decodes a Replace frame.
fn decode_replace(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    let mut r = body(frame, kind::REPLACE)?;
    let cl_ord_id = r.order_id("cl_ord_id")?;
    let symbol = r.required_symbol()?;
    let has = r.u8();
    if has > 3 {
        return Err(bad("replace has", has));
    }
    r.skip(7);
    let price = Price(r.i64());
    let qty = Qty(r.i64());
    Ok(ClientMessage::Replace {
        cl_ord_id,
        symbol,
        price: (has & 1 != 0).then_some(price),
        qty: (has & 2 != 0).then_some(qty),
    })
}

/// Appends fields to a frame being built.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    fn begin(out: &'a mut Vec<u8>, kind: (u8, usize)) -> Writer<'a> {
        let start = out.len();
        let len = (HEADER_LEN + kind.1) as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.push(VERSION);
        out.push(kind.0);
        Writer { out, start }
    }
    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.out.extend(std::iter::repeat_n(0, n));
        self
    }
    fn text<const N: usize>(&mut self, text: &str) -> &mut Self {
        let mut field = [0u8; N];
        field[..text.len()].copy_from_slice(text.as_bytes());
        self.put(&field)
    }
    fn end(&mut self, kind: (u8, usize)) {
        debug_assert_eq!(self.out.len() - self.start, HEADER_LEN + kind.1);
    }
}

/// Appends a NewOrder frame; with `resend`, flagged as a possible resend of that age (ms,
/// saturating at [`RESEND_AGE_MAX_MS`]).
fn encode_new_order(out: &mut Vec<u8>, o: &NewOrderMsg, resend: Option<u32>) {
    let mut flags = if o.post_only { FLAG_POST_ONLY } else { 0 };
    if resend.is_some() {
        flags |= FLAG_RESEND;
    }
    let age = resend.unwrap_or(0).min(RESEND_AGE_MAX_MS).to_le_bytes();
    Writer::begin(out, kind::NEW_ORDER)
        .text::<40>(o.cl_ord_id.as_str())
        .text::<16>(o.symbol.as_str())
        .put(&[
            side_code(o.side),
            match o.ord_type {
                OrdType::Limit => 1,
                OrdType::Market => 2,
            },
            match o.tif {
                Tif::Gtc => 1,
                Tif::Ioc => 2,
                Tif::Fok => 3,
            },
            flags,
            match o.stp {
                Stp::None => 0,
                Stp::CancelTaker => 1,
                Stp::CancelMaker => 2,
                Stp::CancelBoth => 3,
            },
        ])
        .put(&age[..3])
        .put(&o.price.map_or(0, |p| p.0).to_le_bytes())
        .put(&o.qty.0.to_le_bytes())
        .end(kind::NEW_ORDER);
}

/// Appends one client frame to `out`.
pub fn encode_client(message: &ClientMessage, out: &mut Vec<u8>) {
    match message {
        ClientMessage::Logon {
            token,
            heartbeat_secs,
            cancel_on_disconnect,
        } => Writer::begin(out, kind::LOGON)
            .put(token)
            .put(&heartbeat_secs.to_le_bytes())
            .put(&[u8::from(*cancel_on_disconnect), 0])
            .end(kind::LOGON),
        ClientMessage::Logout => Writer::begin(out, kind::LOGOUT).end(kind::LOGOUT),
        ClientMessage::Heartbeat { test_id } => Writer::begin(out, kind::HEARTBEAT)
            .put(&test_id.to_le_bytes())
            .end(kind::HEARTBEAT),
        ClientMessage::NewOrder(o) => encode_new_order(out, o, None),
        ClientMessage::ResendOrder { order, age_ms } => encode_new_order(out, order, Some(*age_ms)),
        ClientMessage::Cancel { cl_ord_id, symbol } => Writer::begin(out, kind::CANCEL)
            .text::<40>(cl_ord_id.as_str())
            .text::<16>(symbol.as_str())
            .end(kind::CANCEL),
        ClientMessage::OrderStatus { cl_ord_id, symbol } => Writer::begin(out, kind::ORDER_STATUS)
            .text::<40>(cl_ord_id.as_str())
            .text::<16>(symbol.as_str())
            .end(kind::ORDER_STATUS),
        ClientMessage::Replace {
            cl_ord_id,
            symbol,
            price,
            qty,
        } => Writer::begin(out, kind::REPLACE)
            .text::<40>(cl_ord_id.as_str())
            .text::<16>(symbol.as_str())
            .put(&[u8::from(price.is_some()) | (u8::from(qty.is_some()) << 1)])
            .zeros(7)
            .put(&price.map_or(0, |p| p.0).to_le_bytes())
            .put(&qty.map_or(0, |q| q.0).to_le_bytes())
            .end(kind::REPLACE),
        ClientMessage::MassStatus { symbol } => Writer::begin(out, kind::MASS_STATUS)
            .text::<16>(symbol.as_ref().map_or("", Symbol::as_str))
            .end(kind::MASS_STATUS),
        ClientMessage::CancelAfter { timeout_ms } => Writer::begin(out, kind::CANCEL_AFTER)
            .put(&timeout_ms.to_le_bytes())
            .zeros(4)
            .end(kind::CANCEL_AFTER),
        ClientMessage::MassCancel { symbol } => Writer::begin(out, kind::MASS_CANCEL)
            .text::<16>(symbol.as_ref().map_or("", Symbol::as_str))
            .end(kind::MASS_CANCEL),
    }
}

/// Appends one gateway frame to `out`.
pub fn encode_server(message: &ServerMessage, out: &mut Vec<u8>) {
    match message {
        ServerMessage::LogonAck {
            account,
            heartbeat_secs,
        } => Writer::begin(out, kind::LOGON_ACK)
            .put(&account.0.to_le_bytes())
            .put(&heartbeat_secs.to_le_bytes())
            .zeros(6)
            .end(kind::LOGON_ACK),
        ServerMessage::Logout { reason } => Writer::begin(out, kind::SERVER_LOGOUT)
            .put(&reason.to_le_bytes())
            .zeros(6)
            .end(kind::SERVER_LOGOUT),
        ServerMessage::Heartbeat { test_id } => Writer::begin(out, kind::SERVER_HEARTBEAT)
            .put(&test_id.to_le_bytes())
            .end(kind::SERVER_HEARTBEAT),
        ServerMessage::SessionReject {
            code,
            rejected_type,
        } => Writer::begin(out, kind::SESSION_REJECT)
            .put(&code.to_le_bytes())
            .put(&[*rejected_type])
            .zeros(5)
            .end(kind::SESSION_REJECT),
        ServerMessage::ExecutionReport(r) => encode_exec_report(out, r),
        ServerMessage::CancelReject {
            cl_ord_id,
            request,
            reason,
        } => Writer::begin(out, kind::CANCEL_REJECT)
            .text::<40>(cl_ord_id.as_str())
            .put(&[
                match request {
                    CancelRequest::Cancel => 1,
                    CancelRequest::Replace => 2,
                },
                *reason,
            ])
            .zeros(6)
            .end(kind::CANCEL_REJECT),
        ServerMessage::MassCancelReport { symbol, cancelled } => {
            Writer::begin(out, kind::MASS_CANCEL_REPORT)
                .text::<16>(symbol.as_ref().map_or("", Symbol::as_str))
                .put(&cancelled.to_le_bytes())
                .zeros(4)
                .end(kind::MASS_CANCEL_REPORT)
        }
        ServerMessage::MassStatusReport {
            symbol,
            reports,
            behind,
        } => Writer::begin(out, kind::MASS_STATUS_REPORT)
            .text::<16>(symbol.as_ref().map_or("", Symbol::as_str))
            .put(&reports.to_le_bytes())
            .put(&[*behind])
            .zeros(3)
            .end(kind::MASS_STATUS_REPORT),
        ServerMessage::SwitchReport { deadline } => Writer::begin(out, kind::SWITCH_REPORT)
            .put(&deadline.to_le_bytes())
            .end(kind::SWITCH_REPORT),
    }
}

fn encode_exec_report(out: &mut Vec<u8>, r: &ExecReport) {
    Writer::begin(out, kind::EXEC_REPORT)
        .put(&r.seq.to_le_bytes())
        .put(&r.ts.to_le_bytes())
        .text::<40>(r.cl_ord_id.as_str())
        .text::<16>(r.symbol.as_str())
        .put(&[r.exec_type, r.ord_status, side_code(r.side), r.reason])
        .zeros(4)
        .put(&r.price.0.to_le_bytes())
        .put(&r.order_qty.0.to_le_bytes())
        .put(&r.last_px.0.to_le_bytes())
        .put(&r.last_qty.0.to_le_bytes())
        .put(&r.cum_qty.0.to_le_bytes())
        .put(&r.leaves_qty.0.to_le_bytes())
        .put(&r.avg_px.0.to_le_bytes())
        .end(kind::EXEC_REPORT)
}

/// Decodes one whole gateway frame (the client side of the protocol, and tests).
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    let ty = frame_type(frame)?;
    Ok(match ty {
        t if t == kind::LOGON_ACK.0 => {
            let mut r = body(frame, kind::LOGON_ACK)?;
            ServerMessage::LogonAck {
                account: AccountId(r.u64()),
                heartbeat_secs: r.u16(),
            }
        }
        t if t == kind::SERVER_LOGOUT.0 => ServerMessage::Logout {
            reason: body(frame, kind::SERVER_LOGOUT)?.u16(),
        },
        t if t == kind::SERVER_HEARTBEAT.0 => ServerMessage::Heartbeat {
            test_id: body(frame, kind::SERVER_HEARTBEAT)?.u64(),
        },
        t if t == kind::SESSION_REJECT.0 => {
            let mut r = body(frame, kind::SESSION_REJECT)?;
            ServerMessage::SessionReject {
                code: r.u16(),
                rejected_type: r.u8(),
            }
        }
        t if t == kind::EXEC_REPORT.0 => decode_exec_report(frame)?,
        t if t == kind::CANCEL_REJECT.0 => {
            let mut r = body(frame, kind::CANCEL_REJECT)?;
            let cl_ord_id = r.order_id("cl_ord_id")?;
            let request = match r.u8() {
                1 => CancelRequest::Cancel,
                2 => CancelRequest::Replace,
                other => return Err(bad("request", other)),
            };
            ServerMessage::CancelReject {
                cl_ord_id,
                request,
                reason: r.u8(),
            }
        }
        t if t == kind::MASS_CANCEL_REPORT.0 => {
            let mut r = body(frame, kind::MASS_CANCEL_REPORT)?;
            ServerMessage::MassCancelReport {
                symbol: r.symbol("symbol")?,
                cancelled: r.u32(),
            }
        }
        t if t == kind::SWITCH_REPORT.0 => ServerMessage::SwitchReport {
            deadline: body(frame, kind::SWITCH_REPORT)?.u64(),
        },
        t if t == kind::MASS_STATUS_REPORT.0 => {
            let mut r = body(frame, kind::MASS_STATUS_REPORT)?;
            ServerMessage::MassStatusReport {
                symbol: r.symbol("symbol")?,
                reports: r.u32(),
                behind: r.u8(),
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Decodes an ExecutionReport frame.
fn decode_exec_report(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    let mut r = body(frame, kind::EXEC_REPORT)?;
    let seq = r.u64();
    let ts = r.u64();
    let cl_ord_id = r.order_id("cl_ord_id")?;
    let symbol = r.required_symbol()?;
    let exec_type = r.u8();
    let ord_status = r.u8();
    let side = side(r.u8())?;
    let reason = r.u8();
    r.skip(4);
    Ok(ServerMessage::ExecutionReport(ExecReport {
        seq,
        ts,
        cl_ord_id,
        symbol,
        exec_type,
        ord_status,
        side,
        reason,
        price: Price(r.i64()),
        order_qty: Qty(r.i64()),
        last_px: Price(r.i64()),
        last_qty: Qty(r.i64()),
        cum_qty: Qty(r.i64()),
        leaves_qty: Qty(r.i64()),
        avg_px: Price(r.i64()),
    }))
}

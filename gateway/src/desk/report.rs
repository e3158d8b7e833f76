//! What the desk tells sessions: execution reports, cancel rejects and mass-cancel answers.
//!
//! FIX 4.4 vocabulary: ExecType 0 new, 4 cancelled, 5 replaced, 8 rejected, F trade, I status;
//! OrdStatus 0 new, 1 partially filled, 2 filled, 4 cancelled, 8 rejected.

use engine::{
    AccountId, CancelReason, NewOrder, OrdType, OrderId, Price, Qty, RejectReason, Request, Side,
    Symbol,
};

/// FIX ExecType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecType {
    New,
    Trade,
    Canceled,
    Replaced,
    Rejected,
    /// The answer to a status request, or to a resent order whose id was already used.
    OrderStatus,
}

impl ExecType {
    /// The FIX 4.4 code.
    pub fn fix(self) -> u8 {
        match self {
            ExecType::New => b'0',
            ExecType::Trade => b'F',
            ExecType::Canceled => b'4',
            ExecType::Replaced => b'5',
            ExecType::Rejected => b'8',
            ExecType::OrderStatus => b'I',
        }
    }
}

/// FIX OrdStatus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrdStatus {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
    /// An id given up for a new one by a replace. Never reported: a question naming it is
    /// answered with the state of the order under its current id.
    Replaced,
}

impl OrdStatus {
    /// The FIX 4.4 code.
    pub fn fix(self) -> u8 {
        match self {
            OrdStatus::New => b'0',
            OrdStatus::PartiallyFilled => b'1',
            OrdStatus::Filled => b'2',
            OrdStatus::Canceled => b'4',
            OrdStatus::Replaced => b'5',
            OrdStatus::Rejected => b'8',
        }
    }
}

/// The engine's reject or cancel reason, or the gateway's reason for refusing a request
/// before the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Rejected(RejectReason),
    Cancelled(CancelReason),
    Gateway(GatewayReason),
}

/// Why a gateway refused a request without sending it to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayReason {
    /// The log's queue is full (back-pressure): try again.
    Busy,
    /// The log cannot take orders now.
    Unavailable,
    /// This site is behind its log: its answers would be late, another site's are not.
    CatchingUp,
    /// This site's clock runs ahead of the log's: what it stamped would move log time.
    ClockSkew,
    /// The session sent more messages per second than its limit.
    Throttled,
    /// A FIX order with TimeInForce Day (59=0): this market never closes, so it has no day.
    DayNotSupported,
    /// A FIX new order or replace resent (PossDupFlag or PossResend `Y`) from longer ago than
    /// the engine remembers client order ids: taken, it could execute a second time.
    StaleResend,
}

impl GatewayReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayReason::Busy => "busy",
            GatewayReason::Unavailable => "unavailable",
            GatewayReason::CatchingUp => "catching_up",
            GatewayReason::ClockSkew => "clock_skew",
            GatewayReason::Throttled => "throttled",
            GatewayReason::DayNotSupported => "day_not_supported",
            GatewayReason::StaleResend => "stale_resend",
        }
    }
}

/// Why a command was not queued for the log. Both are answered with a reject naming them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The log's queue is full: back-pressure, try again.
    #[error("busy: the log is not keeping up")]
    Busy,
    /// The log cannot take commands (stopped, failed, or the brokers are unreachable).
    #[error("unavailable: the log cannot take orders")]
    Unavailable,
    /// This site is behind its log by more than its limit (restarted, or slow): the order
    /// would be acknowledged late and its status would be old; another site answers sooner.
    #[error("catching_up: this site is behind the log; another site answers sooner")]
    CatchingUp,
    /// This site's clock runs ahead of the log's time by more than its limit: on a broker
    /// that keeps producers' create times, what it stamped would move every site's log time
    /// (and fire dead-man's switches early); another site takes it.
    #[error("clock_skew: this site's clock is ahead of the log's; another site takes it")]
    ClockSkew,
}

impl From<SubmitError> for GatewayReason {
    fn from(err: SubmitError) -> GatewayReason {
        match err {
            SubmitError::Busy => GatewayReason::Busy,
            SubmitError::Unavailable => GatewayReason::Unavailable,
            SubmitError::CatchingUp => GatewayReason::CatchingUp,
            SubmitError::ClockSkew => GatewayReason::ClockSkew,
        }
    }
}

/// The venue's id of an order (FIX OrderID): its shard and the number that shard's engine gave
/// it when it accepted it. A function of the log, the same at every site, and kept through
/// amends and replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VenueOrderId {
    pub shard: usize,
    pub number: u64,
}

impl std::fmt::Display for VenueOrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.shard, self.number)
    }
}

/// One execution report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The engine event it reports (its sequence number and time).
    pub seq: u64,
    pub ts: u64,
    pub account: AccountId,
    pub cl_ord_id: OrderId,
    /// The id the order went by before the replace this report answers (FIX OrigClOrdID).
    pub orig_cl_ord_id: Option<OrderId>,
    /// `None` for an order the venue never accepted.
    pub order_id: Option<VenueOrderId>,
    pub symbol: Symbol,
    pub side: Side,
    pub exec_type: ExecType,
    pub ord_status: OrdStatus,
    /// The order's limit price (`None` for market orders).
    pub price: Option<Price>,
    /// Total ordered: filled plus open.
    pub order_qty: Qty,
    /// This fill's price and quantity (zero unless a trade).
    pub last_px: Price,
    pub last_qty: Qty,
    pub cum_qty: Qty,
    pub leaves_qty: Qty,
    /// Volume-weighted average fill price, truncated to 8 decimals (zero before any fill).
    pub avg_px: Price,
    pub why: Option<Reason>,
}

impl Report {
    /// A report of nothing yet: no event (seq and ts 0), no price, every quantity zero, no
    /// reason. Every report starts here, so a field added later has one default.
    pub fn blank(
        account: AccountId,
        cl_ord_id: OrderId,
        symbol: Symbol,
        side: Side,
        exec_type: ExecType,
        ord_status: OrdStatus,
    ) -> Report {
        Report {
            seq: 0,
            ts: 0,
            account,
            cl_ord_id,
            orig_cl_ord_id: None,
            order_id: None,
            symbol,
            side,
            exec_type,
            ord_status,
            price: None,
            order_qty: Qty(0),
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: Qty(0),
            avg_px: Price(0),
            why: None,
        }
    }

    /// This order state as the answer to a status request (ExecType I): no fill of its own.
    pub fn status(&self) -> Report {
        Report {
            exec_type: ExecType::OrderStatus,
            last_px: Price(0),
            last_qty: Qty(0),
            ..*self
        }
    }
}

/// A new order a session refused before the log, as it appears in reports.
pub fn gateway_reject(account: AccountId, new: &NewOrder, reason: GatewayReason) -> Report {
    Report {
        price: new.price,
        order_qty: new.qty,
        why: Some(Reason::Gateway(reason)),
        ..Report::blank(
            account,
            new.order_id,
            new.symbol,
            new.side,
            ExecType::Rejected,
            OrdStatus::Rejected,
        )
    }
}

/// A new order the engine rejected, as it appears in reports: what it asked for (no price
/// for a market order), nothing filled.
pub(crate) fn engine_reject(seq: u64, ts: u64, new: &NewOrder, reason: RejectReason) -> Report {
    Report {
        seq,
        ts,
        price: match new.ord_type {
            OrdType::Limit => new.price,
            OrdType::Market => None,
        },
        order_qty: new.qty,
        why: Some(Reason::Rejected(reason)),
        ..Report::blank(
            new.account,
            new.order_id,
            new.symbol,
            new.side,
            ExecType::Rejected,
            OrdStatus::Rejected,
        )
    }
}

/// A refused cancel or amend (FIX OrderCancelReject).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelReject {
    pub seq: u64,
    pub account: AccountId,
    pub cl_ord_id: OrderId,
    pub symbol: Symbol,
    pub request: Request,
    pub reason: RejectReason,
    /// The current state of the order the refused request named, when the desk knows it (a
    /// live order; or, for a resent cancel or replace, the order finished or moved to its new
    /// id), as a status answer.
    pub state: Option<Report>,
}

/// What the hub sends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToSession {
    /// An execution report for one of the account's orders (also `ExecType::OrderStatus` for a
    /// resent order whose id was already used: its current state).
    Report(Report),
    /// A refused cancel or replace.
    CancelReject(CancelReject),
    /// A mass cancel was applied: how many orders it cancelled.
    MassCancelDone {
        symbol: Option<Symbol>,
        cancelled: u32,
    },
    /// A dead-man's switch of the account was set (`deadline` on log time, 0: disarmed): the
    /// answer to a session's own request (sessions of the account ignore the others').
    SwitchSet { session: u64, deadline: u64 },
    /// The session fell too far behind its reports and must reconnect.
    SlowConsumer,
}

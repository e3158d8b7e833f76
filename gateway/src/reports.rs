//! Engine events → execution reports, the state every order-entry protocol reports from.
//!
//! The engine's events say what happened; a member's FIX or binary session needs each order's
//! running state: cumulative and open quantity, average price, status. [`OrderTracker`]
//! follows the events (of every account: each site's gateway sees the whole log) and emits one
//! [`Report`] per order affected, or a [`CancelReject`] for a refused cancel or amend. It is
//! sans-IO and deterministic, so two sites produce the same reports from the same log.
//!
//! FIX 4.4 vocabulary: ExecType 0 new, 4 cancelled, 5 replaced, 8 rejected, F trade; OrdStatus
//! 0 new, 1 partially filled, 2 filled, 4 cancelled, 8 rejected.

use std::collections::HashMap;

use engine::{
    AccountId, CancelReason, Event, EventKind, OrderId, Price, Qty, RejectReason, Request, Side,
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
}

impl OrdStatus {
    /// The FIX 4.4 code.
    pub fn fix(self) -> u8 {
        match self {
            OrdStatus::New => b'0',
            OrdStatus::PartiallyFilled => b'1',
            OrdStatus::Filled => b'2',
            OrdStatus::Canceled => b'4',
            OrdStatus::Rejected => b'8',
        }
    }
}

/// Why: the engine's reject or cancel reason, or the gateway's reason for refusing a request
/// before the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
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
    /// The session sent more messages per second than its limit.
    Throttled,
}

impl GatewayReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayReason::Busy => "busy",
            GatewayReason::Unavailable => "unavailable",
            GatewayReason::Throttled => "throttled",
        }
    }
}

impl From<crate::hub::SubmitError> for GatewayReason {
    fn from(err: crate::hub::SubmitError) -> GatewayReason {
        match err {
            crate::hub::SubmitError::Busy => GatewayReason::Busy,
            crate::hub::SubmitError::Unavailable => GatewayReason::Unavailable,
        }
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
    pub why: Option<Why>,
}

impl Report {
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

/// A refused cancel or amend (FIX OrderCancelReject).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelReject {
    pub seq: u64,
    pub account: AccountId,
    pub cl_ord_id: OrderId,
    pub symbol: Symbol,
    pub request: Request,
    pub reason: RejectReason,
}

/// What the tracker produced for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Report(Report),
    CancelReject(CancelReject),
}

/// An order's running state.
#[derive(Clone, Copy, Debug)]
struct OrderState {
    symbol: Symbol,
    side: Side,
    price: Option<Price>,
    /// FIX OrderQty: as entered, then the new total (filled + open) after each amend.
    order_qty: i64,
    cum: i64,
    leaves: i64,
    /// Sum of fill price × fill quantity, in fixed-8 × fixed-8 units.
    notional: i128,
}

impl OrderState {
    fn avg_px(&self) -> Price {
        if self.cum == 0 {
            Price(0)
        } else {
            Price((self.notional / i128::from(self.cum)) as i64)
        }
    }

    fn status(&self) -> OrdStatus {
        match (self.cum, self.leaves) {
            (0, _) => OrdStatus::New,
            (_, 0) => OrdStatus::Filled,
            _ => OrdStatus::PartiallyFilled,
        }
    }
}

/// Follows engine events and reports per order. Orders that are done are forgotten.
#[derive(Default)]
pub struct OrderTracker {
    live: HashMap<(AccountId, OrderId), OrderState>,
}

impl OrderTracker {
    pub fn new() -> OrderTracker {
        OrderTracker::default()
    }

    /// Orders being followed (live on the book or being matched).
    pub fn live_orders(&self) -> usize {
        self.live.len()
    }

    /// The open quantity of a followed order (what an OrderStatusRequest answers from).
    pub fn open_qty(&self, account: AccountId, cl_ord_id: &OrderId) -> Option<Qty> {
        self.live.get(&(account, *cl_ord_id)).map(|s| Qty(s.leaves))
    }

    /// Starts following a resting order of a recovered engine, and returns its report. The
    /// engine keeps only the open quantity, so the order's earlier fills are not known: its
    /// report starts from `order_qty = leaves`, `cum_qty = 0`.
    pub fn seed(&mut self, seq: u64, symbol: Symbol, order: &engine::RestingOrder) -> Report {
        let state = OrderState {
            symbol,
            side: order.side,
            price: Some(order.price),
            order_qty: order.qty.0,
            cum: 0,
            leaves: order.qty.0,
            notional: 0,
        };
        self.live.insert((order.account, order.order_id), state);
        Report {
            seq,
            ts: 0,
            account: order.account,
            cl_ord_id: order.order_id,
            symbol,
            side: order.side,
            exec_type: ExecType::OrderStatus,
            ord_status: OrdStatus::New,
            price: Some(order.price),
            order_qty: order.qty,
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(0),
            leaves_qty: order.qty,
            avg_px: Price(0),
            why: None,
        }
    }

    /// Reports what `event` did, appending to `out`.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<Output>) {
        let (seq, ts) = (event.seq, event.ts.0);
        let report = |account, cl_ord_id, state: &OrderState, exec_type, ord_status, why| Report {
            seq,
            ts,
            account,
            cl_ord_id,
            symbol: state.symbol,
            side: state.side,
            exec_type,
            ord_status,
            price: state.price,
            order_qty: Qty(state.order_qty),
            last_px: Price(0),
            last_qty: Qty(0),
            cum_qty: Qty(state.cum),
            leaves_qty: Qty(state.leaves),
            avg_px: state.avg_px(),
            why,
        };
        match event.kind {
            EventKind::Accepted {
                account,
                order_id,
                symbol,
                side,
                price,
                qty,
            } => {
                let state = OrderState {
                    symbol,
                    side,
                    price,
                    order_qty: qty.0,
                    cum: 0,
                    leaves: qty.0,
                    notional: 0,
                };
                self.live.insert((account, order_id), state);
                out.push(Output::Report(report(
                    account,
                    order_id,
                    &state,
                    ExecType::New,
                    OrdStatus::New,
                    None,
                )));
            }
            EventKind::Rejected {
                account,
                order_id,
                symbol,
                request: Request::New,
                reason,
            } => {
                // The engine's reject carries no side or price: the session that sent the order
                // fills them in from its request.
                let state = OrderState {
                    symbol,
                    side: Side::Buy,
                    price: None,
                    order_qty: 0,
                    cum: 0,
                    leaves: 0,
                    notional: 0,
                };
                out.push(Output::Report(report(
                    account,
                    order_id,
                    &state,
                    ExecType::Rejected,
                    OrdStatus::Rejected,
                    Some(Why::Rejected(reason)),
                )));
            }
            EventKind::Rejected {
                account,
                order_id,
                symbol,
                request,
                reason,
            } => out.push(Output::CancelReject(CancelReject {
                seq,
                account,
                cl_ord_id: order_id,
                symbol,
                request,
                reason,
            })),
            EventKind::SymbolRejected { .. } => {}
            EventKind::Trade {
                price,
                qty,
                maker_account,
                maker_order_id,
                taker_account,
                taker_order_id,
                maker_leaves,
                taker_leaves,
                ..
            } => {
                for (account, order_id, leaves) in [
                    (maker_account, maker_order_id, maker_leaves),
                    (taker_account, taker_order_id, taker_leaves),
                ] {
                    let key = (account, order_id);
                    let Some(state) = self.live.get_mut(&key) else {
                        continue;
                    };
                    state.cum += qty.0;
                    state.leaves = leaves.0;
                    state.notional += i128::from(price.0) * i128::from(qty.0);
                    let state = *state;
                    let mut fill = report(
                        account,
                        order_id,
                        &state,
                        ExecType::Trade,
                        state.status(),
                        None,
                    );
                    fill.last_px = price;
                    fill.last_qty = qty;
                    out.push(Output::Report(fill));
                    if state.leaves == 0 {
                        self.live.remove(&key);
                    }
                }
            }
            EventKind::Cancelled {
                account,
                order_id,
                reason,
                ..
            } => {
                if let Some(mut state) = self.live.remove(&(account, order_id)) {
                    state.leaves = 0;
                    out.push(Output::Report(report(
                        account,
                        order_id,
                        &state,
                        ExecType::Canceled,
                        OrdStatus::Canceled,
                        Some(Why::Cancelled(reason)),
                    )));
                }
            }
            EventKind::Amended {
                account,
                order_id,
                price,
                qty,
                ..
            } => {
                if let Some(state) = self.live.get_mut(&(account, order_id)) {
                    state.price = Some(price);
                    state.leaves = qty.0;
                    state.order_qty = state.cum + qty.0;
                    let state = *state;
                    out.push(Output::Report(report(
                        account,
                        order_id,
                        &state,
                        ExecType::Replaced,
                        state.status(),
                        None,
                    )));
                }
            }
        }
    }
}

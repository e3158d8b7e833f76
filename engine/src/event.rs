//! Events: what happened, in the order it happened.
//!
//! Every event carries a sequence number, contiguous over the engine's life (a snapshot carries
//! the next one), and the engine time of the command that caused it. The engine writes events
//! into an [`EventSink`]; the sink decides where they go (a vector in tests, a ring towards the
//! gateways in the runner).

use serde::{Deserialize, Serialize};

use crate::types::{AccountId, OrderId, Price, Qty, Side, Symbol, TimestampNs};

/// One thing that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Contiguous event number.
    pub seq: u64,
    /// Engine time (the largest command `ts` seen so far).
    pub ts: TimestampNs,
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// An order passed its checks. Comes before anything else the order causes.
    Accepted {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        side: Side,
        /// `None` for a market order.
        price: Option<Price>,
        qty: Qty,
    },
    /// A `new`, `cancel` or `amend` was refused; nothing changed.
    Rejected {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        request: Request,
        reason: RejectReason,
    },
    /// An `add_symbol` was refused.
    SymbolRejected {
        symbol: Symbol,
        reason: RejectReason,
    },
    /// Two orders traded at the maker's price.
    Trade {
        symbol: Symbol,
        price: Price,
        qty: Qty,
        maker_account: AccountId,
        maker_order_id: OrderId,
        taker_account: AccountId,
        taker_order_id: OrderId,
        taker_side: Side,
        /// The maker's open quantity after this trade.
        maker_leaves: Qty,
        /// The taker's unfilled quantity after this trade.
        taker_leaves: Qty,
    },
    /// An order (or its unfilled rest) left the book or will never rest.
    Cancelled {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        reason: CancelReason,
        /// The quantity cancelled.
        qty: Qty,
    },
    /// A live order's price and open quantity after an amend.
    Amended {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        price: Price,
        qty: Qty,
    },
}

/// Which request a [`EventKind::Rejected`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    New,
    Cancel,
    Amend,
}

impl Request {
    /// The contract's spelling (the command's `op`).
    pub fn as_str(self) -> &'static str {
        match self {
            Request::New => "new",
            Request::Cancel => "cancel",
            Request::Amend => "amend",
        }
    }
}

/// Why a command was refused. The spelling is stable: clients and tools match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    UnknownSymbol,
    DuplicateOrderId,
    InvalidQty,
    InvalidPrice,
    InvalidTif,
    PostOnly,
    UnknownOrder,
    DuplicateSymbol,
    /// `add_symbol` with a tick that is not positive.
    InvalidTick,
    /// `add_symbol` with a lot that is not positive.
    InvalidLot,
    /// A configured capacity (symbols, accounts, orders, price levels) is full.
    Capacity,
}

impl RejectReason {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownSymbol => "unknown_symbol",
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::InvalidQty => "invalid_qty",
            RejectReason::InvalidPrice => "invalid_price",
            RejectReason::InvalidTif => "invalid_tif",
            RejectReason::PostOnly => "post_only",
            RejectReason::UnknownOrder => "unknown_order",
            RejectReason::DuplicateSymbol => "duplicate_symbol",
            RejectReason::InvalidTick => "invalid_tick",
            RejectReason::InvalidLot => "invalid_lot",
            RejectReason::Capacity => "capacity",
        }
    }
}

/// Why an order was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    User,
    Mass,
    Ioc,
    Fok,
    Stp,
}

impl CancelReason {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::User => "user",
            CancelReason::Mass => "mass",
            CancelReason::Ioc => "ioc",
            CancelReason::Fok => "fok",
            CancelReason::Stp => "stp",
        }
    }
}

/// Where the engine writes events. Implementations must not fail: a sink that can fill up
/// (a ring) waits for room, so no event is ever dropped.
pub trait EventSink {
    fn push(&mut self, event: Event);
}

/// Collects events; reserve capacity up front to keep the steady state allocation-free.
impl EventSink for Vec<Event> {
    fn push(&mut self, event: Event) {
        Vec::push(self, event);
    }
}

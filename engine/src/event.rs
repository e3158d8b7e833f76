//! Events: what happened, in the order it happened.
//!
//! Every event carries a sequence number, contiguous over the engine's life (a snapshot carries
//! the next one), and the engine time of the command that caused it. The engine writes events
//! into an [`EventSink`]; the sink decides where they go (a vector in tests, a ring towards the
//! gateways in the runner).

use serde::{Deserialize, Serialize};

use crate::types::{AccountId, OrderId, Price, Qty, Side, Symbol, TimestampNs, TradingStatus};

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
        /// The venue's number for the order: accepted orders counted from 0 on this shard's
        /// log, so the same at every site. It stays the order's through amends and replaces
        /// (FIX OrderID, when the ClOrdID changes).
        number: u64,
    },
    /// A `new`, `cancel` or `amend` was refused; nothing changed.
    Rejected {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        request: Request,
        reason: RejectReason,
    },
    /// An `add_symbol` or a `trading_status` was refused.
    SymbolRejected {
        symbol: Symbol,
        request: Request,
        reason: RejectReason,
    },
    /// A `cancel_after` or a `kill_switch` was refused (`capacity`); nothing changed.
    AccountRejected {
        account: AccountId,
        /// The `cancel_after`'s session; 0 for a `kill_switch`.
        session: u64,
        request: Request,
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
        /// The maker's filled quantity after this trade (over its whole life).
        maker_filled: Qty,
        /// The taker's filled quantity after this trade.
        taker_filled: Qty,
        /// The trade's id: trades of the symbol counted from 1, the same at every site.
        trade_id: u64,
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
    /// An order after an amend: its price, total, open and filled quantities. `order_id` is
    /// the id the amend named; with `new_order_id` the order goes by that id from now on.
    Amended {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        price: Price,
        /// The total quantity (filled part included).
        total: Qty,
        /// The open quantity; 0 when the amend finished the order (total at or below filled).
        leaves: Qty,
        filled: Qty,
        new_order_id: Option<OrderId>,
    },
    /// A dead-man's switch was armed or refreshed (`deadline` > 0) or disarmed (0).
    CancelAfter {
        account: AccountId,
        session: u64,
        deadline: TimestampNs,
    },
    /// A symbol's trading status was set (changed or confirmed).
    TradingStatus {
        symbol: Symbol,
        status: TradingStatus,
    },
    /// An account's kill switch was set.
    KillSwitch { account: AccountId, on: bool },
}

/// Which request a [`EventKind::Rejected`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    New,
    Cancel,
    Amend,
    AddSymbol,
    TradingStatus,
    CancelAfter,
    KillSwitch,
}

impl Request {
    /// The contract's spelling (the command's `op`).
    pub fn as_str(self) -> &'static str {
        match self {
            Request::New => "new",
            Request::Cancel => "cancel",
            Request::Amend => "amend",
            Request::AddSymbol => "add_symbol",
            Request::TradingStatus => "trading_status",
            Request::CancelAfter => "cancel_after",
            Request::KillSwitch => "kill_switch",
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
    /// A configured capacity (symbols, accounts, orders, price levels, finished orders inside
    /// their dedup window, dead-man's switches) is full.
    Capacity,
    /// The account's kill switch is on.
    AccountDisabled,
    /// The symbol is in `cancel_only`.
    CancelOnly,
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
            RejectReason::AccountDisabled => "account_disabled",
            RejectReason::CancelOnly => "cancel_only",
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
    /// A dead-man's switch fired.
    Expired,
    /// The account's kill switch was turned on.
    KillSwitch,
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
            CancelReason::Expired => "expired",
            CancelReason::KillSwitch => "kill_switch",
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

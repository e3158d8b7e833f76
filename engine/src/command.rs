//! Commands: what the log carries and the engine applies, one at a time, in log order.
//!
//! A command is plain data with a bincode encoding (`bincode::serialize`); its `ts` is the only
//! clock the engine sees. Values are validated by the engine, not here, so a command built from
//! bad client input still gets its exact, contract-ordered reject.
//!
//! Room to grow: new kinds of command (deposits, halts, kill switches) are appended as new
//! [`CommandKind`] variants, which keeps the bincode encoding of the existing ones unchanged.

use serde::{Deserialize, Serialize};

use crate::types::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif, TimestampNs};

/// One entry of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Log time in nanoseconds, stamped by the sequencer side.
    pub ts: TimestampNs,
    pub kind: CommandKind,
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandKind {
    AddSymbol(AddSymbol),
    New(NewOrder),
    Cancel(CancelOrder),
    Amend(AmendOrder),
    MassCancel(MassCancel),
}

/// Lists a symbol with its price increment and quantity increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSymbol {
    pub symbol: Symbol,
    pub tick: Price,
    pub lot: Qty,
}

/// Enters an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub account: AccountId,
    pub order_id: OrderId,
    pub symbol: Symbol,
    pub side: Side,
    pub ord_type: OrdType,
    /// Required for limit orders; ignored for market orders.
    pub price: Option<Price>,
    pub qty: Qty,
    pub tif: Tif,
    pub post_only: bool,
    pub stp: Stp,
}

/// Cancels one live order of the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub account: AccountId,
    pub symbol: Symbol,
    pub order_id: OrderId,
}

/// Changes a live order's price and/or open quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendOrder {
    pub account: AccountId,
    pub symbol: Symbol,
    pub order_id: OrderId,
    pub price: Option<Price>,
    /// The new open quantity.
    pub qty: Option<Qty>,
}

/// Cancels every live order of the account, in one symbol or in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassCancel {
    pub account: AccountId,
    pub symbol: Option<Symbol>,
}

impl Command {
    /// A command of `kind` at log time `ts` nanoseconds.
    pub fn new(ts: u64, kind: CommandKind) -> Command {
        Command {
            ts: TimestampNs(ts),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_bincode() {
        let cmd = Command::new(
            7,
            CommandKind::New(NewOrder {
                account: AccountId(3),
                order_id: OrderId::new("o-1").unwrap(),
                symbol: Symbol::new("BTC-USD").unwrap(),
                side: Side::Sell,
                ord_type: OrdType::Limit,
                price: Some(Price(100)),
                qty: Qty(5),
                tif: Tif::Ioc,
                post_only: false,
                stp: Stp::CancelBoth,
            }),
        );
        let bytes = bincode::serialize(&cmd).unwrap();
        assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), cmd);
        assert!(bincode::deserialize::<Command>(&bytes[..bytes.len() - 1]).is_err());
    }
}

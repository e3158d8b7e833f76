//! Commands: what the log carries and the engine applies, one at a time, in log order.
//!
//! A command is plain data with a bincode encoding (`bincode::serialize`); its `ts` is the only
//! clock the engine sees. Values are validated by the engine, not here, so a command built from
//! bad client input still gets its exact, contract-ordered reject.
//!
//! Encoding across versions: bincode names an enum variant by its index, and the log keeps
//! records for ever, so [`CommandKind`] is written through [`wire::CommandKindWire`], whose
//! indexes 0-4 are the version-1 shapes (decoded still, never written) and whose later indexes
//! are appended, never reordered. New kinds of command (deposits, stop orders) are appended
//! there the same way.

use serde::{Deserialize, Serialize};

use crate::types::{
    AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif, TimestampNs, TradingStatus,
};

/// One entry of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Log time in nanoseconds, stamped by the sequencer side.
    pub ts: TimestampNs,
    pub kind: CommandKind,
}

/// What a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "wire::CommandKindWire", into = "wire::CommandKindWire")]
pub enum CommandKind {
    AddSymbol(AddSymbol),
    New(NewOrder),
    Cancel(CancelOrder),
    Amend(AmendOrder),
    MassCancel(MassCancel),
    /// Arms, refreshes or disarms a dead-man's switch.
    CancelAfter(CancelAfter),
    /// Only moves the engine's clock (so deadlines fire in a quiet market).
    Clock,
    /// An operator's control: a symbol (or all) to `cancel_only` and back.
    TradingStatus(SetTradingStatus),
    /// An operator's control: an account's kill switch on or off.
    KillSwitch(KillSwitch),
    /// Switches the engine's rules to a version, from this command on (rolling upgrades).
    Rules(SetRules),
}

/// The newest rules version this binary implements. Rules version 1 is the replay contract
/// (version 2) as this engine implements it; a later version would change a rule (a reject's
/// order, a new order type's matching) from the [`SetRules`] command on, at every site at the
/// same command, once every site runs a binary that implements it.
pub const RULES_VERSION: u32 = 1;

/// Switches the engine's rules to `version` from this command on. A version this binary does
/// not implement (past [`RULES_VERSION`]) must not be applied: whoever feeds the engine stops
/// before it ([`Command::needs_newer_binary`]); the engine itself leaves its rules as they are
/// for such a version or 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetRules {
    pub version: u32,
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
    /// The order's total quantity.
    pub qty: Qty,
    pub tif: Tif,
    pub post_only: bool,
    pub stp: Stp,
    /// The session that entered it: what `mass_cancel` by session and the dead-man's switch
    /// select on. Kept through amends and replaces. 0 is an ordinary session.
    pub session: u64,
}

/// Cancels one live order of the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub account: AccountId,
    pub symbol: Symbol,
    pub order_id: OrderId,
}

/// Changes a live order's price and/or total quantity, and optionally its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmendOrder {
    pub account: AccountId,
    pub symbol: Symbol,
    pub order_id: OrderId,
    pub price: Option<Price>,
    /// The new total quantity (FIX's OrderQty), filled part included.
    pub qty: Option<Qty>,
    /// The id the order goes by from now on (FIX's ClOrdID of a replace); the old id is
    /// finished as `replaced`, so a resent replace finds it no longer live.
    pub new_order_id: Option<OrderId>,
}

/// Cancels every live order of the account, in one symbol or in all, of one session or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MassCancel {
    pub account: AccountId,
    pub symbol: Option<Symbol>,
    pub session: Option<u64>,
}

/// Sets the dead-man's switch of (`account`, `session`) to fire at `now + timeout_ns`, or
/// disarms it when `timeout_ns` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAfter {
    pub account: AccountId,
    pub session: u64,
    pub timeout_ns: u64,
}

/// Sets the trading status of `symbol`, or of every listed symbol when `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTradingStatus {
    pub symbol: Option<Symbol>,
    pub status: TradingStatus,
}

/// Turns an account's kill switch on (cancel its live orders, refuse new ones and amends) or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    pub account: AccountId,
    pub on: bool,
}

impl Command {
    /// A command of `kind` at log time `ts` nanoseconds.
    pub fn new(ts: u64, kind: CommandKind) -> Command {
        Command {
            ts: TimestampNs(ts),
            kind,
        }
    }

    /// The rules version this command switches to when this binary does not implement it:
    /// the log has gone past what this binary can apply.
    pub fn needs_newer_binary(&self) -> Option<u32> {
        match self.kind {
            CommandKind::Rules(SetRules { version }) if version > RULES_VERSION => Some(version),
            _ => None,
        }
    }
}

/// Why a command's bytes did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A kind of command this binary does not know: written by a newer one.
    #[error(
        "command kind {0} is newer than this binary, which knows kinds 0 to {last}",
        last = wire::KINDS - 1
    )]
    NewerKind(u32),
    #[error("{0}")]
    Malformed(String),
}

impl DecodeError {
    /// Whether a newer binary could read it.
    pub fn needs_newer_binary(&self) -> bool {
        matches!(self, DecodeError::NewerKind(_))
    }
}

/// Decodes a command from its bincode bytes (as `bincode::serialize` wrote it), telling a kind
/// written by a newer binary from damage.
pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
    bincode::deserialize(bytes).map_err(|err| {
        // Fixed-width encoding: the 8-byte time, then the kind's 4-byte variant index.
        let kind = bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")));
        match kind {
            Some(kind) if kind >= wire::KINDS => DecodeError::NewerKind(kind),
            _ => DecodeError::Malformed(err.to_string()),
        }
    })
}

/// The encoding of [`CommandKind`]: version-1 shapes kept at their indexes, later ones appended.
mod wire {
    use super::*;

    /// A version-1 order, which had no session: decoded as session 0.
    #[derive(Clone, Copy, Serialize, Deserialize)]
    pub(super) struct NewOrderV1 {
        account: AccountId,
        order_id: OrderId,
        symbol: Symbol,
        side: Side,
        ord_type: OrdType,
        price: Option<Price>,
        qty: Qty,
        tif: Tif,
        post_only: bool,
        stp: Stp,
    }

    /// A version-1 amend, which had no new id. Its quantity meant the open quantity; it is
    /// decoded as the total (the change of meaning is documented in ARCHITECTURE.md).
    #[derive(Clone, Copy, Serialize, Deserialize)]
    pub(super) struct AmendOrderV1 {
        account: AccountId,
        symbol: Symbol,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
    }

    /// A version-1 mass cancel, which had no session: decoded as every session.
    #[derive(Clone, Copy, Serialize, Deserialize)]
    pub(super) struct MassCancelV1 {
        account: AccountId,
        symbol: Option<Symbol>,
    }

    /// Variant indexes are the encoding: append only.
    #[derive(Clone, Copy, Serialize, Deserialize)]
    pub(super) enum CommandKindWire {
        AddSymbol(AddSymbol),
        NewV1(NewOrderV1),
        Cancel(CancelOrder),
        AmendV1(AmendOrderV1),
        MassCancelV1(MassCancelV1),
        New(NewOrder),
        Amend(AmendOrder),
        MassCancel(MassCancel),
        CancelAfter(CancelAfter),
        Clock,
        TradingStatus(SetTradingStatus),
        KillSwitch(KillSwitch),
        Rules(SetRules),
    }

    /// How many variants [`CommandKindWire`] has: an index at or past it is a kind of
    /// command added by a newer binary.
    pub(super) const KINDS: u32 = 13;

    impl From<CommandKindWire> for CommandKind {
        fn from(wire: CommandKindWire) -> CommandKind {
            match wire {
                CommandKindWire::AddSymbol(add) => CommandKind::AddSymbol(add),
                CommandKindWire::NewV1(o) => CommandKind::New(NewOrder {
                    account: o.account,
                    order_id: o.order_id,
                    symbol: o.symbol,
                    side: o.side,
                    ord_type: o.ord_type,
                    price: o.price,
                    qty: o.qty,
                    tif: o.tif,
                    post_only: o.post_only,
                    stp: o.stp,
                    session: 0,
                }),
                CommandKindWire::Cancel(cancel) => CommandKind::Cancel(cancel),
                CommandKindWire::AmendV1(a) => CommandKind::Amend(AmendOrder {
                    account: a.account,
                    symbol: a.symbol,
                    order_id: a.order_id,
                    price: a.price,
                    qty: a.qty,
                    new_order_id: None,
                }),
                CommandKindWire::MassCancelV1(m) => CommandKind::MassCancel(MassCancel {
                    account: m.account,
                    symbol: m.symbol,
                    session: None,
                }),
                CommandKindWire::New(order) => CommandKind::New(order),
                CommandKindWire::Amend(amend) => CommandKind::Amend(amend),
                CommandKindWire::MassCancel(mass) => CommandKind::MassCancel(mass),
                CommandKindWire::CancelAfter(c) => CommandKind::CancelAfter(c),
                CommandKindWire::Clock => CommandKind::Clock,
                CommandKindWire::TradingStatus(t) => CommandKind::TradingStatus(t),
                CommandKindWire::KillSwitch(k) => CommandKind::KillSwitch(k),
                CommandKindWire::Rules(r) => CommandKind::Rules(r),
            }
        }
    }

    impl From<CommandKind> for CommandKindWire {
        fn from(kind: CommandKind) -> CommandKindWire {
            match kind {
                CommandKind::AddSymbol(add) => CommandKindWire::AddSymbol(add),
                CommandKind::New(order) => CommandKindWire::New(order),
                CommandKind::Cancel(cancel) => CommandKindWire::Cancel(cancel),
                CommandKind::Amend(amend) => CommandKindWire::Amend(amend),
                CommandKind::MassCancel(mass) => CommandKindWire::MassCancel(mass),
                CommandKind::CancelAfter(c) => CommandKindWire::CancelAfter(c),
                CommandKind::Clock => CommandKindWire::Clock,
                CommandKind::TradingStatus(t) => CommandKindWire::TradingStatus(t),
                CommandKind::KillSwitch(k) => CommandKindWire::KillSwitch(k),
                CommandKind::Rules(r) => CommandKindWire::Rules(r),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rules_switch_has_its_own_kind_and_a_newer_kind_is_told_from_damage() {
        let newer = RULES_VERSION + 1;
        let switch = Command::new(5, CommandKind::Rules(SetRules { version: newer }));
        let bytes = bincode::serialize(&switch).unwrap();
        assert_eq!(bytes[8..12], 12u32.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(switch));
        assert_eq!(switch.needs_newer_binary(), Some(newer));
        let current = CommandKind::Rules(SetRules {
            version: RULES_VERSION,
        });
        assert_eq!(Command::new(5, current).needs_newer_binary(), None);
        let mut unknown = bytes.clone();
        unknown[8..12].copy_from_slice(&wire::KINDS.to_le_bytes());
        assert_eq!(decode(&unknown), Err(DecodeError::NewerKind(wire::KINDS)));
        assert!(decode(&unknown).unwrap_err().needs_newer_binary());
        let damaged = decode(&bytes[..10]).unwrap_err();
        assert!(matches!(damaged, DecodeError::Malformed(_)), "{damaged:?}");
        assert!(!damaged.needs_newer_binary());
    }

    #[test]
    fn switching_to_the_rules_in_force_changes_no_state() {
        let mut engine = crate::Engine::new(crate::EngineConfig::default()).unwrap();
        let mut events = Vec::new();
        engine.apply(&Command::new(9, CommandKind::Clock), &mut events);
        let before = engine.state_hash();
        let same = CommandKind::Rules(SetRules { version: 1 });
        engine.apply(&Command::new(9, same), &mut events);
        assert!(events.is_empty());
        assert_eq!((engine.rules(), engine.state_hash()), (1, before));
        // A version it does not implement is left (the node stops before applying one).
        let newer = CommandKind::Rules(SetRules {
            version: RULES_VERSION + 1,
        });
        engine.apply(&Command::new(9, newer), &mut events);
        assert_eq!(engine.rules(), 1);
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
            .collect()
    }

    fn ids() -> (OrderId, Symbol) {
        (
            OrderId::new("o-1").unwrap(),
            Symbol::new("BTC-USD").unwrap(),
        )
    }

    #[test]
    fn every_kind_round_trips_through_bincode() {
        let (o, s) = ids();
        let kinds = [
            CommandKind::New(NewOrder {
                account: AccountId(3),
                order_id: o,
                symbol: s,
                side: Side::Sell,
                ord_type: OrdType::Limit,
                price: Some(Price(100)),
                qty: Qty(5),
                tif: Tif::Ioc,
                post_only: false,
                stp: Stp::CancelBoth,
                session: 77,
            }),
            CommandKind::Amend(AmendOrder {
                account: AccountId(3),
                symbol: s,
                order_id: o,
                price: None,
                qty: Some(Qty(7)),
                new_order_id: Some(OrderId::new("o-2").unwrap()),
            }),
            CommandKind::MassCancel(MassCancel {
                account: AccountId(3),
                symbol: None,
                session: Some(5),
            }),
            CommandKind::CancelAfter(CancelAfter {
                account: AccountId(3),
                session: 5,
                timeout_ns: 3_000_000_000,
            }),
            CommandKind::Clock,
            CommandKind::TradingStatus(SetTradingStatus {
                symbol: Some(s),
                status: TradingStatus::CancelOnly,
            }),
            CommandKind::KillSwitch(KillSwitch {
                account: AccountId(3),
                on: true,
            }),
        ];
        for kind in kinds {
            let cmd = Command::new(7, kind);
            let bytes = bincode::serialize(&cmd).unwrap();
            assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), cmd);
            assert!(bincode::deserialize::<Command>(&bytes[..bytes.len() - 1]).is_err());
        }
    }

    /// Records written by version 1 (captured from that build) still decode: an order and a
    /// mass cancel as session 0 and every session, an amend with no new id.
    #[test]
    fn version_1_records_still_decode() {
        let (o, s) = ids();
        let v1 = [
            (
                "09000000000000000000000007000000000000004254432d55534401000000000000000200000000000000",
                CommandKind::AddSymbol(AddSymbol { symbol: s, tick: Price(1), lot: Qty(2) }),
            ),
            (
                "090000000000000001000000030000000000000003000000000000006f2d3107000000000000004254432d55534401000000000000000164000000000000000500000000000000010000000003000000",
                CommandKind::New(NewOrder {
                    account: AccountId(3),
                    order_id: o,
                    symbol: s,
                    side: Side::Sell,
                    ord_type: OrdType::Limit,
                    price: Some(Price(100)),
                    qty: Qty(5),
                    tif: Tif::Ioc,
                    post_only: false,
                    stp: Stp::CancelBoth,
                    session: 0,
                }),
            ),
            (
                "090000000000000002000000030000000000000007000000000000004254432d55534403000000000000006f2d31",
                CommandKind::Cancel(CancelOrder { account: AccountId(3), symbol: s, order_id: o }),
            ),
            (
                "090000000000000003000000030000000000000007000000000000004254432d55534403000000000000006f2d3100010700000000000000",
                CommandKind::Amend(AmendOrder {
                    account: AccountId(3),
                    symbol: s,
                    order_id: o,
                    price: None,
                    qty: Some(Qty(7)),
                    new_order_id: None,
                }),
            ),
            (
                "09000000000000000400000003000000000000000107000000000000004254432d555344",
                CommandKind::MassCancel(MassCancel { account: AccountId(3), symbol: Some(s), session: None }),
            ),
        ];
        for (hex, kind) in v1 {
            let decoded: Command = bincode::deserialize(&unhex(hex)).unwrap();
            assert_eq!(decoded, Command::new(9, kind));
            // Written again, it takes the current shape (index 5 and up, or unchanged).
            let again: Command =
                bincode::deserialize(&bincode::serialize(&decoded).unwrap()).unwrap();
            assert_eq!(again, decoded);
        }
    }
}

//! The replay contract's JSON: command lines in, event lines, the book and the orders out
//! (`shared/replay-contract.md`, version 2). This is an edge: decimals are parsed and printed here and
//! nowhere else on this path, and every malformed line is refused with a reason.

use std::collections::{BTreeMap, HashMap};

use engine::{
    AccountId, AddSymbol, AmendOrder, CancelAfter, CancelOrder, Command, CommandKind, Engine,
    Event, EventKind, KillSwitch, MassCancel, NewOrder, OrdType, OrderId, OrderView, Price, Qty,
    SetTradingStatus, Side, Stp, Symbol, Tif, TimestampNs, TradingStatus,
};
use serde::{Deserialize, Serialize};

/// A command line as the contract spells it.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum WireCommand {
    AddSymbol {
        ts: u64,
        symbol: Symbol,
        tick: String,
        lot: String,
    },
    New {
        ts: u64,
        account: u64,
        order_id: OrderId,
        symbol: Symbol,
        side: Side,
        #[serde(rename = "type")]
        ord_type: OrdType,
        price: Option<String>,
        qty: String,
        #[serde(default)]
        tif: Tif,
        #[serde(default)]
        post_only: bool,
        #[serde(default)]
        stp: Stp,
        #[serde(default)]
        session: u64,
    },
    Cancel {
        ts: u64,
        account: u64,
        symbol: Symbol,
        order_id: OrderId,
    },
    Amend {
        ts: u64,
        account: u64,
        symbol: Symbol,
        order_id: OrderId,
        price: Option<String>,
        qty: Option<String>,
        new_order_id: Option<OrderId>,
    },
    MassCancel {
        ts: u64,
        account: u64,
        symbol: Option<Symbol>,
        session: Option<u64>,
    },
    CancelAfter {
        ts: u64,
        account: u64,
        session: u64,
        timeout_ns: u64,
    },
    Clock {
        ts: u64,
    },
    TradingStatus {
        ts: u64,
        symbol: Option<Symbol>,
        status: TradingStatus,
    },
    KillSwitch {
        ts: u64,
        account: u64,
        on: bool,
    },
}

/// Parses a decimal string field exactly (see `Price::parse`): a well-formed number the engine
/// cannot hold becomes `INVALID`, so the engine rejects it in contract order.
fn price(field: &str, text: &str) -> Result<Price, String> {
    Price::parse(text).map_err(|err| format!("{field}: {text:?} {err}"))
}

fn qty(field: &str, text: &str) -> Result<Qty, String> {
    Qty::parse(text).map_err(|err| format!("{field}: {text:?} {err}"))
}

/// Parses one command line.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let wire: WireCommand = serde_json::from_str(line).map_err(|err| err.to_string())?;
    let (ts, kind) = match wire {
        WireCommand::AddSymbol {
            ts,
            symbol,
            tick,
            lot,
        } => (
            ts,
            CommandKind::AddSymbol(AddSymbol {
                symbol,
                tick: price("tick", &tick)?,
                lot: qty("lot", &lot)?,
            }),
        ),
        WireCommand::Cancel {
            ts,
            account,
            symbol,
            order_id,
        } => (
            ts,
            CommandKind::Cancel(CancelOrder {
                account: AccountId(account),
                symbol,
                order_id,
            }),
        ),
        order @ (WireCommand::New { .. } | WireCommand::Amend { .. }) => order_command(order)?,
        control => control_command(control),
    };
    Ok(Command {
        ts: TimestampNs(ts),
        kind,
    })
}

/// A command without decimals: a mass cancel, a dead-man's switch, the clock, an operator's
/// control.
fn control_command(wire: WireCommand) -> (u64, CommandKind) {
    match wire {
        WireCommand::MassCancel {
            ts,
            account,
            symbol,
            session,
        } => (
            ts,
            CommandKind::MassCancel(MassCancel {
                account: AccountId(account),
                symbol,
                session,
            }),
        ),
        WireCommand::CancelAfter {
            ts,
            account,
            session,
            timeout_ns,
        } => (
            ts,
            CommandKind::CancelAfter(CancelAfter {
                account: AccountId(account),
                session,
                timeout_ns,
            }),
        ),
        WireCommand::Clock { ts } => (ts, CommandKind::Clock),
        WireCommand::TradingStatus { ts, symbol, status } => (
            ts,
            CommandKind::TradingStatus(SetTradingStatus { symbol, status }),
        ),
        WireCommand::KillSwitch { ts, account, on } => (
            ts,
            CommandKind::KillSwitch(KillSwitch {
                account: AccountId(account),
                on,
            }),
        ),
        _ => unreachable!("parse_command passes only commands without decimals"),
    }
}

/// A new order or an amend, whose prices and quantities are decimals to parse.
fn order_command(wire: WireCommand) -> Result<(u64, CommandKind), String> {
    Ok(match wire {
        WireCommand::New {
            ts,
            account,
            order_id,
            symbol,
            side,
            ord_type,
            price: limit,
            qty: quantity,
            tif,
            post_only,
            stp,
            session,
        } => (
            ts,
            CommandKind::New(NewOrder {
                account: AccountId(account),
                order_id,
                symbol,
                side,
                ord_type,
                price: limit.as_deref().map(|p| price("price", p)).transpose()?,
                qty: qty("qty", &quantity)?,
                tif,
                post_only,
                stp,
                session,
            }),
        ),
        WireCommand::Amend {
            ts,
            account,
            symbol,
            order_id,
            price: new_price,
            qty: new_qty,
            new_order_id,
        } => (
            ts,
            CommandKind::Amend(AmendOrder {
                account: AccountId(account),
                symbol,
                order_id,
                price: new_price
                    .as_deref()
                    .map(|p| price("price", p))
                    .transpose()?,
                qty: new_qty.as_deref().map(|q| qty("qty", q)).transpose()?,
                new_order_id,
            }),
        ),
        _ => unreachable!("parse_command passes only new orders and amends"),
    })
}

/// A malformed command line.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// Parses a whole command file; blank lines are skipped. Stops at the first bad line.
pub fn parse_commands(text: &str) -> Result<Vec<Command>, LineError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(at, line)| {
            parse_command(line).map_err(|reason| LineError {
                line: at + 1,
                reason,
            })
        })
        .collect()
}

/// How many decimals to print for a symbol's prices and quantities: those of its tick and lot.
#[derive(Default)]
pub struct Scales(HashMap<Symbol, (u32, u32)>);

impl Scales {
    /// Learns the scales of every symbol listed in `engine`.
    pub fn refresh(&mut self, engine: &Engine) {
        for info in engine.symbols() {
            let scale = |units: i64| Price(units).to_decimal(0).scale();
            self.0
                .insert(info.name, (scale(info.tick.0), scale(info.lot.0)));
        }
    }

    fn price(&self, symbol: &Symbol, value: Price) -> String {
        let scale = self.0.get(symbol).map_or(0, |s| s.0);
        value.to_decimal(scale).to_string()
    }

    fn qty(&self, symbol: &Symbol, value: Qty) -> String {
        let scale = self.0.get(symbol).map_or(0, |s| s.1);
        value.to_decimal(scale).to_string()
    }

    /// A notional (fixed-16) with the decimals of a price times a quantity.
    fn notional(&self, symbol: &Symbol, value: u128) -> String {
        let (price, qty) = self.0.get(symbol).copied().unwrap_or((8, 8));
        fixed16(value, price + qty)
    }
}

/// An event line: the contract's fields first, then the extra ones.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum WireEvent<'a> {
    Accepted {
        account: u64,
        order_id: &'a str,
        symbol: &'a str,
        side: Side,
        #[serde(skip_serializing_if = "Option::is_none")]
        price: Option<String>,
        qty: String,
        number: u64,
        seq: u64,
        ts: u64,
    },
    Rejected {
        account: u64,
        order_id: &'a str,
        reason: &'static str,
        symbol: &'a str,
        request: &'static str,
        seq: u64,
        ts: u64,
    },
    #[serde(rename = "rejected")]
    SymbolRejected {
        symbol: &'a str,
        reason: &'static str,
        request: &'static str,
        seq: u64,
        ts: u64,
    },
    #[serde(rename = "rejected")]
    AccountRejected {
        account: u64,
        session: u64,
        reason: &'static str,
        request: &'static str,
        seq: u64,
        ts: u64,
    },
    Trade {
        symbol: &'a str,
        price: String,
        qty: String,
        maker_account: u64,
        maker_order_id: &'a str,
        taker_account: u64,
        taker_order_id: &'a str,
        taker_side: Side,
        maker_filled: String,
        taker_filled: String,
        maker_leaves: String,
        taker_leaves: String,
        trade_id: u64,
        seq: u64,
        ts: u64,
    },
    Cancelled {
        account: u64,
        order_id: &'a str,
        reason: &'static str,
        symbol: &'a str,
        qty: String,
        seq: u64,
        ts: u64,
    },
    Amended {
        account: u64,
        order_id: &'a str,
        price: String,
        qty: String,
        leaves: String,
        filled: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_order_id: Option<&'a str>,
        symbol: &'a str,
        seq: u64,
        ts: u64,
    },
    CancelAfter {
        account: u64,
        session: u64,
        deadline: u64,
        seq: u64,
        ts: u64,
    },
    TradingStatus {
        symbol: &'a str,
        status: &'static str,
        seq: u64,
        ts: u64,
    },
    KillSwitch {
        account: u64,
        on: bool,
        seq: u64,
        ts: u64,
    },
}

/// One event as a JSON line (without the newline).
pub fn event_json(event: &Event, scales: &Scales) -> String {
    let (seq, ts) = (event.seq, event.ts.0);
    let wire = match &event.kind {
        trade @ EventKind::Trade { .. } => trade_event(trade, seq, ts, scales),
        order @ (EventKind::Accepted { .. }
        | EventKind::Cancelled { .. }
        | EventKind::Amended { .. }) => order_event(order, seq, ts, scales),
        other => control_event(other, seq, ts),
    };
    serde_json::to_string(&wire).expect("event lines always serialize")
}

fn trade_event<'a>(kind: &'a EventKind, seq: u64, ts: u64, scales: &Scales) -> WireEvent<'a> {
    let EventKind::Trade {
        symbol,
        price,
        qty,
        maker_account,
        maker_order_id,
        taker_account,
        taker_order_id,
        taker_side,
        maker_leaves,
        taker_leaves,
        maker_filled,
        taker_filled,
        trade_id,
    } = kind
    else {
        unreachable!("trade_event takes trades")
    };
    WireEvent::Trade {
        symbol: symbol.as_str(),
        price: scales.price(symbol, *price),
        qty: scales.qty(symbol, *qty),
        maker_account: maker_account.0,
        maker_order_id: maker_order_id.as_str(),
        taker_account: taker_account.0,
        taker_order_id: taker_order_id.as_str(),
        taker_side: *taker_side,
        maker_filled: scales.qty(symbol, *maker_filled),
        taker_filled: scales.qty(symbol, *taker_filled),
        maker_leaves: scales.qty(symbol, *maker_leaves),
        taker_leaves: scales.qty(symbol, *taker_leaves),
        trade_id: *trade_id,
        seq,
        ts,
    }
}

/// An event about one order's life: accepted, cancelled or amended.
fn order_event<'a>(kind: &'a EventKind, seq: u64, ts: u64, scales: &Scales) -> WireEvent<'a> {
    match kind {
        EventKind::Accepted {
            account,
            order_id,
            symbol,
            side,
            price,
            qty,
            number,
        } => WireEvent::Accepted {
            account: account.0,
            order_id: order_id.as_str(),
            symbol: symbol.as_str(),
            side: *side,
            price: price.map(|p| scales.price(symbol, p)),
            qty: scales.qty(symbol, *qty),
            number: *number,
            seq,
            ts,
        },
        EventKind::Cancelled {
            account,
            order_id,
            symbol,
            reason,
            qty,
        } => WireEvent::Cancelled {
            account: account.0,
            order_id: order_id.as_str(),
            reason: reason.as_str(),
            symbol: symbol.as_str(),
            qty: scales.qty(symbol, *qty),
            seq,
            ts,
        },
        EventKind::Amended {
            account,
            order_id,
            symbol,
            price,
            total,
            leaves,
            filled,
            new_order_id,
        } => WireEvent::Amended {
            account: account.0,
            order_id: order_id.as_str(),
            price: scales.price(symbol, *price),
            qty: scales.qty(symbol, *total),
            leaves: scales.qty(symbol, *leaves),
            filled: scales.qty(symbol, *filled),
            new_order_id: new_order_id.as_ref().map(OrderId::as_str),
            symbol: symbol.as_str(),
            seq,
            ts,
        },
        _ => unreachable!("event_json passes only accepted, cancelled and amended events"),
    }
}

/// A reject, a dead-man's switch or an operator's control.
fn control_event(kind: &EventKind, seq: u64, ts: u64) -> WireEvent<'_> {
    match kind {
        EventKind::Rejected {
            account,
            order_id,
            symbol,
            request,
            reason,
        } => WireEvent::Rejected {
            account: account.0,
            order_id: order_id.as_str(),
            reason: reason.as_str(),
            symbol: symbol.as_str(),
            request: request.as_str(),
            seq,
            ts,
        },
        EventKind::SymbolRejected {
            symbol,
            request,
            reason,
        } => WireEvent::SymbolRejected {
            symbol: symbol.as_str(),
            reason: reason.as_str(),
            request: request.as_str(),
            seq,
            ts,
        },
        EventKind::AccountRejected {
            account,
            session,
            request,
            reason,
        } => WireEvent::AccountRejected {
            account: account.0,
            session: *session,
            reason: reason.as_str(),
            request: request.as_str(),
            seq,
            ts,
        },
        EventKind::CancelAfter {
            account,
            session,
            deadline,
        } => WireEvent::CancelAfter {
            account: account.0,
            session: *session,
            deadline: deadline.0,
            seq,
            ts,
        },
        EventKind::TradingStatus { symbol, status } => WireEvent::TradingStatus {
            symbol: symbol.as_str(),
            status: status.as_str(),
            seq,
            ts,
        },
        EventKind::KillSwitch { account, on } => WireEvent::KillSwitch {
            account: account.0,
            on: *on,
            seq,
            ts,
        },
        _ => unreachable!("event_json passes orders and trades elsewhere"),
    }
}

#[derive(Serialize)]
struct BookEntry {
    account: u64,
    order_id: String,
    price: String,
    qty: String,
}

#[derive(Serialize)]
struct BookSides {
    bids: Vec<BookEntry>,
    asks: Vec<BookEntry>,
}

/// The book file: every symbol (sorted by name) with its resting orders in priority order.
pub fn book_json(engine: &Engine, scales: &Scales) -> String {
    let mut books = BTreeMap::new();
    for info in engine.symbols() {
        let side = |side| {
            engine
                .resting(info.id, side)
                .map(|o| BookEntry {
                    account: o.account.0,
                    order_id: o.order_id.to_string(),
                    price: scales.price(&info.name, o.price),
                    qty: scales.qty(&info.name, o.qty),
                })
                .collect()
        };
        books.insert(
            info.name.to_string(),
            BookSides {
                bids: side(Side::Buy),
                asks: side(Side::Sell),
            },
        );
    }
    serde_json::to_string_pretty(&books).expect("books always serialize")
}

/// An entry of `ORDERS.json`.
#[derive(Serialize)]
struct OrderEntry {
    account: u64,
    order_id: String,
    symbol: String,
    side: Side,
    #[serde(rename = "type")]
    ord_type: OrdType,
    price: Option<String>,
    qty: String,
    filled: String,
    notional: String,
    status: &'static str,
    reason: Option<&'static str>,
    replaced_by: Option<String>,
    leaves: String,
    session: u64,
    number: u64,
}

/// The orders file: every order the engine remembers (live, and finished inside the dedup
/// window), sorted by account, then order id.
pub fn orders_json(engine: &Engine, scales: &Scales) -> String {
    let orders: Vec<OrderEntry> = engine
        .orders()
        .iter()
        .map(|o| order_entry(o, scales))
        .collect();
    serde_json::to_string_pretty(&orders).expect("orders always serialize")
}

fn order_entry(o: &OrderView, scales: &Scales) -> OrderEntry {
    let symbol = &o.symbol;
    OrderEntry {
        account: o.account.0,
        order_id: o.order_id.to_string(),
        symbol: symbol.to_string(),
        side: o.side,
        ord_type: o.ord_type,
        price: o.price.map(|p| scales.price(symbol, p)),
        qty: scales.qty(symbol, o.total),
        filled: scales.qty(symbol, o.filled),
        notional: scales.notional(symbol, o.notional),
        status: o.status.as_str(),
        reason: o.reason.map(|r| r.as_str()),
        replaced_by: o.replaced_by.map(|id| id.to_string()),
        leaves: scales.qty(symbol, o.leaves),
        session: o.session,
        number: o.number,
    }
}

/// A fixed-16 amount (`notional / 10^16`) as a decimal string with `scale` decimals (exact
/// when the amount is a multiple of `10^(16 - scale)`, as a price times a quantity of the
/// symbol's tick and lot is).
fn fixed16(notional: u128, scale: u32) -> String {
    const ONE: u128 = 10_u128.pow(16);
    let (whole, fraction) = (notional / ONE, notional % ONE);
    if scale == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:016}");
    format!("{whole}.{}", &digits[..scale.min(16) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("{", "EOF"),
            (r#"{"op":"fly","ts":1}"#, "unknown variant `fly`"),
            (
                r#"{"op":"cancel","ts":1,"account":1,"symbol":"X","order_id":"a","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"op":"new","ts":1,"account":1,"order_id":"a","symbol":"X","side":"buy","type":"limit","price":"ten","qty":"1"}"#,
                "price: \"ten\" is not a plain decimal number",
            ),
            (
                r#"{"op":"new","ts":1,"account":-1,"order_id":"a","symbol":"X","side":"buy","type":"limit","price":"1","qty":"1"}"#,
                "invalid value",
            ),
            (
                r#"{"op":"cancel","ts":1,"account":1,"symbol":"X","order_id":"has space"}"#,
                "order id has a character",
            ),
            (r#"{"op":"mass_cancel","account":1}"#, "missing field `ts`"),
            (
                r#"{"op":"amend","ts":1,"account":1,"symbol":"X","order_id":"a","qty":"1e29"}"#,
                "qty: \"1e29\" is not a plain decimal",
            ),
        ];
        for (line, expected) in cases {
            let err = parse_command(line).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn unrepresentable_decimals_reach_the_engine_as_invalid() {
        // Past 8 decimals or 64 bits the value is marked, never rounded: rounding
        // 1.00000000000000000000000000001 to 1 would let an off-lot quantity trade.
        let cmd = parse_command(
            r#"{"op":"new","ts":1,"account":1,"order_id":"a","symbol":"X","side":"buy","type":"limit","price":"99.999999999999999999999999999","qty":"1.00000000000000000000000000001"}"#,
        )
        .unwrap();
        let CommandKind::New(order) = cmd.kind else {
            panic!("not a new order")
        };
        assert_eq!(order.price, Some(Price::INVALID));
        assert_eq!(order.qty, Qty::INVALID);
        assert_eq!(order.tif, Tif::Gtc);
        assert_eq!(order.stp, Stp::CancelTaker);
    }

    #[test]
    fn notionals_print_exactly() {
        assert_eq!(fixed16(6001 * 10_u128.pow(16), 3), "6001.000");
        assert_eq!(fixed16(75_375 * 10_u128.pow(13), 3), "75.375");
        assert_eq!(fixed16(1, 16), "0.0000000000000001");
        assert_eq!(
            fixed16(u128::MAX / 2, 0),
            (u128::MAX / 2 / 10_u128.pow(16)).to_string()
        );
    }

    #[test]
    fn version_2_commands_parse_and_malformed_ones_say_why() {
        let ok = [
            r#"{"op":"cancel_after","ts":1,"account":1,"session":2,"timeout_ns":3}"#,
            r#"{"op":"clock","ts":1}"#,
            r#"{"op":"trading_status","ts":1,"status":"cancel_only"}"#,
            r#"{"op":"trading_status","ts":1,"symbol":"X","status":"open"}"#,
            r#"{"op":"kill_switch","ts":1,"account":1,"on":true}"#,
            r#"{"op":"mass_cancel","ts":1,"account":1,"session":4}"#,
            r#"{"op":"amend","ts":1,"account":1,"symbol":"X","order_id":"a","qty":"2","new_order_id":"b"}"#,
            r#"{"op":"new","ts":1,"account":1,"order_id":"a","symbol":"X","side":"buy","type":"limit","price":"1","qty":"1","session":9}"#,
        ];
        for line in ok {
            parse_command(line).unwrap_or_else(|err| panic!("{line}: {err}"));
        }
        let bad = [
            (
                r#"{"op":"trading_status","ts":1,"status":"halt"}"#,
                "unknown variant `halt`",
            ),
            (
                r#"{"op":"cancel_after","ts":1,"account":1,"session":2}"#,
                "missing field `timeout_ns`",
            ),
            (
                r#"{"op":"kill_switch","ts":1,"account":1}"#,
                "missing field `on`",
            ),
            (r#"{"op":"clock"}"#, "missing field `ts`"),
        ];
        for (line, expected) in bad {
            let err = parse_command(line).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let CommandKind::New(order) = parse_command(ok[7]).unwrap().kind else {
            panic!("not a new order")
        };
        assert_eq!(order.session, 9);
    }

    #[test]
    fn parse_commands_names_the_line() {
        let text = "\n{\"op\":\"mass_cancel\",\"ts\":1,\"account\":1}\n\n{\"op\":\"nope\"}\n";
        let err = parse_commands(text).unwrap_err();
        assert_eq!(err.line, 4);
    }
}

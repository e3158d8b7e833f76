//! The log's story of a few orders, for a failing check's examples (an id accepted twice, an
//! order told filled further than the history filled it): every command that names one of
//! them and what the engine made of it, with its position, its log time and the session that
//! sent it. Replacing an order adds its new id to the story.

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use engine::{AccountId, Command, CommandKind, Engine, EngineConfig, Event, EventKind, OrderId};

/// At most this many lines per story: an order lives for a handful of commands.
const LINES_MAX: usize = 24;

/// The story of `orders` in `commands` (the shard's log from its start), replayed through an
/// engine of `config`; log times in seconds after `wall_ns`, the load's start.
pub(crate) fn stories(
    config: EngineConfig,
    commands: &[Command],
    orders: &[(AccountId, OrderId)],
    wall_ns: u64,
) -> Result<Vec<String>> {
    let mut engine = Engine::new(config).map_err(|e| anyhow!("the sites' engine config: {e:?}"))?;
    let mut traced: HashSet<(AccountId, OrderId)> = orders.iter().copied().collect();
    let mut lines = Vec::new();
    let mut events: Vec<Event> = Vec::with_capacity(64);
    for (at, command) in commands.iter().enumerate() {
        events.clear();
        engine.apply(command, &mut events);
        let named = named(&command.kind).filter(|key| traced.contains(key));
        let outcomes: Vec<String> = events
            .iter()
            .filter_map(|event| outcome(&event.kind, &mut traced))
            .collect();
        if named.is_none() && outcomes.is_empty() {
            continue;
        }
        let secs = command.ts.0.saturating_sub(wall_ns) as f64 / 1e9;
        lines.push(format!(
            "@{at} +{secs:.3} s {}: {}",
            describe(&command.kind),
            outcomes.join("; ")
        ));
        if lines.len() >= LINES_MAX * orders.len().max(1) {
            lines.push("(story cut short)".into());
            break;
        }
    }
    Ok(lines)
}

/// The order a command names (a new order, a cancel, an amend), if any.
fn named(kind: &CommandKind) -> Option<(AccountId, OrderId)> {
    match kind {
        CommandKind::New(new) => Some((new.account, new.order_id)),
        CommandKind::Cancel(cancel) => Some((cancel.account, cancel.order_id)),
        CommandKind::Amend(amend) => Some((amend.account, amend.order_id)),
        _ => None,
    }
}

/// A command in a few words: its kind, the order it names, the session that sent it.
fn describe(kind: &CommandKind) -> String {
    match kind {
        CommandKind::New(new) => format!(
            "new {} {:?} {:?} qty {} (session {:016x})",
            new.order_id.as_str(),
            new.side,
            new.price.map(|p| p.0),
            new.qty.0,
            new.session
        ),
        CommandKind::Cancel(cancel) => format!("cancel {}", cancel.order_id.as_str()),
        CommandKind::Amend(amend) => format!(
            "amend {} -> {:?} price {:?}",
            amend.order_id.as_str(),
            amend.new_order_id.map(|id| id.as_str().to_string()),
            amend.price.map(|p| p.0)
        ),
        CommandKind::MassCancel(mass) => format!("mass cancel (session {:?})", mass.session),
        CommandKind::CancelAfter(switch) => {
            format!("cancel-after (session {:016x})", switch.session)
        }
        other => format!("{other:?}"),
    }
}

/// What an event did to a traced order, if it names one; a replace adds the new id to
/// `traced`.
fn outcome(kind: &EventKind, traced: &mut HashSet<(AccountId, OrderId)>) -> Option<String> {
    let is = |account: &AccountId, id: &OrderId| traced.contains(&(*account, *id));
    match *kind {
        EventKind::Accepted {
            account, order_id, ..
        } if is(&account, &order_id) => Some(format!("{} accepted", order_id.as_str())),
        EventKind::Rejected {
            account,
            order_id,
            request,
            reason,
            ..
        } if is(&account, &order_id) => Some(format!(
            "{} {} rejected {reason:?}",
            order_id.as_str(),
            request.as_str()
        )),
        EventKind::Trade { .. } => trade(kind, traced),
        EventKind::Cancelled {
            account,
            order_id,
            reason,
            ..
        } if is(&account, &order_id) => Some(format!(
            "{} cancelled {}",
            order_id.as_str(),
            reason.as_str()
        )),
        EventKind::Amended {
            account,
            order_id,
            filled,
            new_order_id,
            ..
        } if is(&account, &order_id) => {
            if let Some(new) = new_order_id {
                traced.insert((account, new));
            }
            let new = new_order_id.map_or("in place".into(), |id| format!("as {}", id.as_str()));
            Some(format!(
                "{} amended {new}, filled {}",
                order_id.as_str(),
                filled.0
            ))
        }
        _ => None,
    }
}

/// A trade's part for the traced orders among its two.
fn trade(kind: &EventKind, traced: &HashSet<(AccountId, OrderId)>) -> Option<String> {
    let EventKind::Trade {
        qty,
        maker_account,
        maker_order_id,
        taker_account,
        taker_order_id,
        maker_filled,
        taker_filled,
        ..
    } = *kind
    else {
        return None;
    };
    let sides = [
        (maker_account, maker_order_id, maker_filled, "maker"),
        (taker_account, taker_order_id, taker_filled, "taker"),
    ];
    let parts: Vec<String> = sides
        .iter()
        .filter(|(account, id, ..)| traced.contains(&(*account, *id)))
        .map(|(_, id, filled, role)| {
            format!(
                "{} traded {} as {role}, filled {}",
                id.as_str(),
                qty.0,
                filled.0
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{AmendOrder, NewOrder, OrdType, Price, Qty, Side, Stp, Symbol, Tif, TimestampNs};

    fn new(account: u64, id: &str, side: Side, ts: u64) -> Command {
        Command {
            ts: TimestampNs(ts),
            kind: CommandKind::New(NewOrder {
                account: AccountId(account),
                order_id: OrderId::new(id).unwrap(),
                symbol: Symbol::new("X").unwrap(),
                side,
                ord_type: OrdType::Limit,
                price: Some(Price(100)),
                qty: Qty(10),
                tif: Tif::Gtc,
                post_only: false,
                stp: Stp::None,
                session: 7,
            }),
        }
    }

    #[test]
    fn a_story_follows_an_order_through_its_replace_and_its_trade() {
        let mut config = crate::sites::drill_engine(1, std::time::Duration::from_secs(60));
        config.symbols_max = config.symbols_max.max(1);
        let add = Command {
            ts: TimestampNs(1),
            kind: CommandKind::AddSymbol(engine::AddSymbol {
                symbol: Symbol::new("X").unwrap(),
                tick: Price(1),
                lot: Qty(1),
            }),
        };
        let amend = Command {
            ts: TimestampNs(3),
            kind: CommandKind::Amend(AmendOrder {
                account: AccountId(1),
                symbol: Symbol::new("X").unwrap(),
                order_id: OrderId::new("a").unwrap(),
                price: Some(Price(100)),
                qty: None,
                new_order_id: Some(OrderId::new("b").unwrap()),
            }),
        };
        let log = [
            add,
            new(1, "a", Side::Buy, 2),
            amend,
            new(2, "c", Side::Sell, 4),
            new(1, "a", Side::Buy, 5),
        ];
        let traced = [(AccountId(1), OrderId::new("a").unwrap())];
        let story = stories(config, &log, &traced, 0).unwrap();
        assert_eq!(story.len(), 4, "{story:#?}");
        assert!(story[0].starts_with("@1 +0.000 s new a Buy"), "{story:#?}");
        assert!(story[0].ends_with("a accepted"), "{story:#?}");
        assert!(story[1].contains("a amended as b"), "{story:#?}");
        assert!(
            story[2].contains("b traded 10 as maker, filled 10"),
            "{story:#?}"
        );
        assert!(
            story[3].contains("a new rejected DuplicateOrderId"),
            "{story:#?}"
        );
    }
}

//! `missed_fills`: what each member was told of its fills against the log's history.
//!
//! A member hears of fills from its execution reports, and of those it missed while moving
//! between sites from the mass status it asks for at the new site; at the end it reconciles
//! once more (the status check's mass status). For every order, the most filled quantity
//! it was told must be the history's: less is a missed fill, more a false report.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use engine::{AccountId, OrderId, Qty};

use crate::ClientResult;

/// What the fills check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FillCheck {
    /// Orders the history filled further than their member was ever told, the member not
    /// knowing it.
    pub missed: u64,
    /// Orders the history filled further than their member was told that the member knew it
    /// had lost track of (`lost_track`: the simulator's members and the drill's).
    pub missed_known: u64,
    /// Orders a member was told were filled further than the history filled them.
    pub false_fills: u64,
    pub examples: Vec<String>,
    /// The first few orders filled further than their member was told.
    pub missed_orders: Vec<(AccountId, OrderId)>,
    /// The first few orders told filled further than the history filled them.
    pub false_orders: Vec<(AccountId, OrderId)>,
}

/// Each member's told fills (`results`, with `final_filled` from its last mass status, in the
/// same order) against `filled`, the history's filled quantity per (account, order).
pub(crate) fn check(
    filled: &HashMap<(AccountId, OrderId), Qty>,
    results: &[ClientResult],
    final_filled: &[BTreeMap<OrderId, Qty>],
) -> FillCheck {
    let told: Vec<Told> = results
        .iter()
        .enumerate()
        .map(|(k, result)| {
            let mut filled = told_with(&result.told, final_filled.get(k));
            follow_replaces(&mut filled, &result.replaced, final_filled.get(k));
            Told {
                account: result.account,
                filled,
                lost_track: result.lost_track.clone(),
            }
        })
        .collect();
    check_told(filled, &told)
}

/// Fills told under an id the member replaced, moved to the new id when its last mass status
/// names the new one, as the member moves them when any report names it
/// ([`crate::failover::FailoverClient`]; the history keeps an order's fills under its latest
/// id). Seen in the mixed drill: a FIX member's replace took in the log, the member heard of
/// no report under the new id before the end, and its fills under the old id were taken for
/// false fills (`false_reports` 1 and 4).
pub(crate) fn follow_replaces(
    told: &mut BTreeMap<OrderId, Qty>,
    replaced: &BTreeMap<OrderId, OrderId>,
    last: Option<&BTreeMap<OrderId, Qty>>,
) {
    for new in last.into_iter().flat_map(BTreeMap::keys) {
        let mut id = *new;
        // A chain of replaces never loops; the bound guards against one that would.
        for _ in 0..replaced.len() {
            let Some(old) = replaced.get(&id) else {
                break;
            };
            if let Some(filled) = told.remove(old) {
                let entry = told.entry(*new).or_insert(Qty(0));
                *entry = (*entry).max(filled);
            }
            id = *old;
        }
    }
}

/// What one member was told of its orders' fills, the most per order, and the orders it
/// knows it lost track of.
pub(crate) struct Told {
    pub account: AccountId,
    pub filled: BTreeMap<OrderId, Qty>,
    pub lost_track: BTreeSet<OrderId>,
}

/// What a member was told of its fills (`told`, from its reports) with its last mass status
/// (`last`), the most per order.
pub(crate) fn told_with(
    told: &BTreeMap<OrderId, Qty>,
    last: Option<&BTreeMap<OrderId, Qty>>,
) -> BTreeMap<OrderId, Qty> {
    let mut told = told.clone();
    for (order, qty) in last.into_iter().flatten() {
        let entry = told.entry(*order).or_insert(Qty(0));
        *entry = (*entry).max(*qty);
    }
    told
}

/// What each member (account) was told of its orders' fills against `filled`, the
/// history's: the drill's check and the simulator's. An order filled further than its member
/// was told is `missed`, or `missed_known` if the member knew it had lost track of it.
pub(crate) fn check_told(
    filled: &HashMap<(AccountId, OrderId), Qty>,
    members: &[Told],
) -> FillCheck {
    let mut by_account: HashMap<AccountId, Vec<(OrderId, Qty)>> = HashMap::new();
    for ((account, order), qty) in filled {
        by_account.entry(*account).or_default().push((*order, *qty));
    }
    let mut check = FillCheck::default();
    for Told {
        account,
        filled: told,
        lost_track,
    } in members
    {
        let history = |order: &OrderId| filled.get(&(*account, *order)).copied();
        for (order, qty) in told {
            if *qty > history(order).unwrap_or(Qty(0)) {
                check.false_fills += 1;
                if check.false_orders.len() < 10 {
                    check.false_orders.push((*account, *order));
                }
                check.example(*account, order, *qty, history(order));
            }
        }
        for (order, qty) in by_account.get(account).into_iter().flatten() {
            let was_told = told.get(order).copied().unwrap_or(Qty(0));
            if was_told >= *qty {
                continue;
            }
            if lost_track.contains(order) {
                check.missed_known += 1;
            } else {
                check.missed += 1;
                if check.missed_orders.len() < 10 {
                    check.missed_orders.push((*account, *order));
                }
                check.example(*account, order, was_told, Some(*qty));
            }
        }
    }
    check
}

impl FillCheck {
    fn example(&mut self, account: AccountId, order: &OrderId, told: Qty, history: Option<Qty>) {
        if self.examples.len() < 10 {
            self.examples.push(format!(
                "account {} order {}: told filled {}, the history {}",
                account.0,
                order.as_str(),
                told.0,
                history.map_or("nothing".to_string(), |q| q.0.to_string())
            ));
        }
    }
}

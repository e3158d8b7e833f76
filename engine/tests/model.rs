//! Hand-written cases of the replay contract, each checked against both the engine and the
//! naive reference model (`common::Model`), so the model that the property tests trust is
//! itself pinned to the contract. Capacity cases (an engine extension the model does not
//! have) run against the engine only.
//!
//! Each case is a list of commands (stamped with log times 1, 2, 3, ...) and the expected
//! transcript: every event, one a line, then every resting order (`book SYMBOL bid|ask
//! ACCOUNT/ID PRICE QTY`) in priority order.

mod common;

use common::*;
use engine::{CommandKind, Engine, EngineConfig, Side::Buy, Side::Sell, Stp, Tif};

fn engine_transcript(config: EngineConfig, kinds: &[CommandKind]) -> String {
    let mut engine = Engine::new(config).expect("valid config");
    let mut lines = Vec::new();
    for cmd in stamped(kinds) {
        let mut events = Vec::new();
        engine.apply(&cmd, &mut events);
        if let Err(broken) = engine.check_invariants() {
            panic!(
                "invariant broken after {}: {broken}",
                describe_command(&cmd)
            );
        }
        lines.extend(events.iter().map(|e| describe_event(&e.kind)));
    }
    lines.extend(describe_engine_books(&engine));
    lines.join("\n")
}

fn model_transcript(kinds: &[CommandKind]) -> String {
    let mut model = Model::default();
    let mut lines = Vec::new();
    for cmd in stamped(kinds) {
        lines.extend(model.apply(&cmd).iter().map(describe_event));
    }
    lines.extend(describe_model_books(&model));
    lines.join("\n")
}

fn normalize(expected: &str) -> String {
    expected
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Engine and model both produce exactly `expected`.
fn check(kinds: &[CommandKind], expected: &str) {
    let expected = normalize(expected);
    let engine = engine_transcript(EngineConfig::default(), kinds);
    assert!(
        engine == expected,
        "engine transcript differs\n--- engine:\n{engine}\n--- expected:\n{expected}"
    );
    let model = model_transcript(kinds);
    assert!(
        model == expected,
        "model transcript differs\n--- model:\n{model}\n--- expected:\n{expected}"
    );
}

/// The engine, built with `config`, produces exactly `expected`.
fn check_engine(config: EngineConfig, kinds: &[CommandKind], expected: &str) {
    let expected = normalize(expected);
    let engine = engine_transcript(config, kinds);
    assert!(
        engine == expected,
        "engine transcript differs\n--- engine:\n{engine}\n--- expected:\n{expected}"
    );
}

fn btc() -> CommandKind {
    add_symbol(BTC, "1", "1")
}

#[test]
fn price_then_time_priority_at_the_makers_price() {
    check(
        &[
            btc(),
            new(limit(1, "a", Sell, "101", "2")),
            new(limit(2, "b", Sell, "100", "2")),
            new(limit(3, "c", Sell, "100", "2")),
            new(limit(4, "t", Buy, "101", "5")),
            new(limit(4, "u", Buy, "102", "3")),
        ],
        "
        accepted 1/a BTC sell 101 2
        accepted 2/b BTC sell 100 2
        accepted 3/c BTC sell 100 2
        accepted 4/t BTC buy 101 5
        trade BTC 100 2 maker 2/b taker 4/t buy leaves 0 3
        trade BTC 100 2 maker 3/c taker 4/t buy leaves 0 1
        trade BTC 101 1 maker 1/a taker 4/t buy leaves 1 0
        accepted 4/u BTC buy 102 3
        trade BTC 101 1 maker 1/a taker 4/u buy leaves 0 2
        book BTC bid 4/u 102 2
        ",
    );
}

#[test]
fn checks_on_new_run_in_contract_order() {
    check(
        &[
            add_symbol(BTC, "0.01", "0.5"),
            new(limit(1, "a", Buy, "100", "1")),
            // unknown_symbol beats everything.
            new(limit(1, "a", Buy, "0", "0").on("ETH")),
            // duplicate_order_id beats a bad quantity.
            new(limit(1, "a", Buy, "100", "0")),
            // invalid_qty (off-lot) beats a bad price.
            new(limit(1, "b", Buy, "100.001", "0.7")),
            // invalid_price (off-tick) beats a bad time in force.
            new(limit(1, "b", Buy, "100.001", "1").tif(Tif::Ioc).post_only()),
            // invalid_tif beats post_only.
            new(limit(2, "c", Sell, "99", "1").tif(Tif::Fok).post_only()),
            new(limit(2, "c", Sell, "100", "1").post_only()),
            new(limit(2, "c", Sell, "100.01", "1.5").post_only()),
        ],
        "
        accepted 1/a BTC buy 100 1
        rejected 1/a ETH new unknown_symbol
        rejected 1/a BTC new duplicate_order_id
        rejected 1/b BTC new invalid_qty
        rejected 1/b BTC new invalid_price
        rejected 2/c BTC new invalid_tif
        rejected 2/c BTC new post_only
        accepted 2/c BTC sell 100.01 1.5
        book BTC bid 1/a 100 1
        book BTC ask 2/c 100.01 1.5
        ",
    );
}

#[test]
fn market_and_time_in_force_rules() {
    check(
        &[
            btc(),
            new(market(1, "m1", Buy, "1").tif(Tif::Gtc)),
            new(market(1, "m2", Buy, "1").post_only()),
            new(limit(1, "m3", Buy, "100", "1").tif(Tif::Ioc).post_only()),
            new(market(1, "m4", Buy, "1")),
            new(limit(2, "s", Sell, "100", "2")),
            new(market(1, "m5", Buy, "3").tif(Tif::Fok)),
            new(market(1, "m6", Buy, "3")),
            new(limit(2, "s2", Sell, "101", "1")),
            new(limit(1, "i", Buy, "100", "2").tif(Tif::Ioc)),
        ],
        "
        rejected 1/m1 BTC new invalid_tif
        rejected 1/m2 BTC new invalid_tif
        rejected 1/m3 BTC new invalid_tif
        accepted 1/m4 BTC buy market 1
        cancelled 1/m4 BTC ioc 1
        accepted 2/s BTC sell 100 2
        accepted 1/m5 BTC buy market 3
        cancelled 1/m5 BTC fok 3
        accepted 1/m6 BTC buy market 3
        trade BTC 100 2 maker 2/s taker 1/m6 buy leaves 0 1
        cancelled 1/m6 BTC ioc 1
        accepted 2/s2 BTC sell 101 1
        accepted 1/i BTC buy 100 2
        cancelled 1/i BTC ioc 2
        book BTC ask 2/s2 101 1
        ",
    );
}

#[test]
fn self_trade_prevention_modes() {
    check(
        &[
            btc(),
            new(limit(1, "r1", Sell, "100", "5")),
            new(limit(2, "r2", Sell, "100", "5")),
            new(limit(1, "t1", Buy, "100", "3")),
            new(limit(1, "t2", Buy, "100", "3").stp(Stp::CancelMaker)),
            new(limit(1, "r3", Sell, "101", "5")),
            new(limit(2, "r4", Sell, "101", "5")),
            new(limit(1, "t3", Buy, "101", "4").stp(Stp::CancelBoth)),
            new(limit(2, "t4", Buy, "101", "7").stp(Stp::None)),
        ],
        "
        accepted 1/r1 BTC sell 100 5
        accepted 2/r2 BTC sell 100 5
        accepted 1/t1 BTC buy 100 3
        cancelled 1/t1 BTC stp 3
        accepted 1/t2 BTC buy 100 3
        cancelled 1/r1 BTC stp 5
        trade BTC 100 3 maker 2/r2 taker 1/t2 buy leaves 2 0
        accepted 1/r3 BTC sell 101 5
        accepted 2/r4 BTC sell 101 5
        accepted 1/t3 BTC buy 101 4 
        trade BTC 100 2 maker 2/r2 taker 1/t3 buy leaves 0 2
        cancelled 1/r3 BTC stp 5
        cancelled 1/t3 BTC stp 2
        accepted 2/t4 BTC buy 101 7
        trade BTC 101 5 maker 2/r4 taker 2/t4 buy leaves 0 2
        book BTC bid 2/t4 101 2
        ",
    );
}

#[test]
fn fok_with_cancel_maker_skips_own_orders() {
    check(
        &[
            btc(),
            new(limit(1, "own", Sell, "100", "5")),
            new(limit(2, "r", Sell, "100", "3")),
            new(limit(2, "r2", Sell, "101", "2")),
            // Skipping its own 5, there are exactly 3 + 2: it fills, cancelling `own` on the way.
            new(limit(1, "t", Buy, "101", "5")
                .tif(Tif::Fok)
                .stp(Stp::CancelMaker)),
        ],
        "
        accepted 1/own BTC sell 100 5
        accepted 2/r BTC sell 100 3
        accepted 2/r2 BTC sell 101 2
        accepted 1/t BTC buy 101 5
        cancelled 1/own BTC stp 5
        trade BTC 100 3 maker 2/r taker 1/t buy leaves 0 2
        trade BTC 101 2 maker 2/r2 taker 1/t buy leaves 0 0
        ",
    );
}

#[test]
fn fok_that_would_not_fill_does_nothing_else() {
    check(
        &[
            btc(),
            new(limit(1, "own", Sell, "100", "5")),
            new(limit(2, "r", Sell, "100", "3")),
            // Own orders do not count for cancel_maker: only 3 of 4. No STP cancel either.
            new(limit(1, "t1", Buy, "100", "4")
                .tif(Tif::Fok)
                .stp(Stp::CancelMaker)),
            // cancel_taker would stop at `own` (first in time) before anything trades.
            new(limit(1, "t2", Buy, "100", "3").tif(Tif::Fok)),
            // cancel_both likewise, and must not cancel `own`.
            new(limit(1, "t3", Buy, "100", "1")
                .tif(Tif::Fok)
                .stp(Stp::CancelBoth)),
            // With `none` the account trades with itself.
            new(limit(1, "t4", Buy, "100", "3").tif(Tif::Fok).stp(Stp::None)),
        ],
        "
        accepted 1/own BTC sell 100 5
        accepted 2/r BTC sell 100 3
        accepted 1/t1 BTC buy 100 4
        cancelled 1/t1 BTC fok 4
        accepted 1/t2 BTC buy 100 3
        cancelled 1/t2 BTC fok 3
        accepted 1/t3 BTC buy 100 1
        cancelled 1/t3 BTC fok 1
        accepted 1/t4 BTC buy 100 3
        trade BTC 100 3 maker 1/own taker 1/t4 buy leaves 2 0
        book BTC ask 1/own 100 2
        book BTC ask 2/r 100 3
        ",
    );
}

#[test]
fn amend_that_reduces_quantity_keeps_priority() {
    check(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "10")),
            new(limit(2, "b", Buy, "100", "10")),
            amend(1, "a", None, Some("6")),
            // Neither field: same price and quantity, keeps its place.
            amend(1, "a", None, None),
            // Same price given explicitly, same quantity: keeps its place too.
            amend(1, "a", Some("100"), Some("6")),
            new(limit(3, "x", Sell, "100", "8").tif(Tif::Ioc)),
        ],
        "
        accepted 1/a BTC buy 100 10
        accepted 2/b BTC buy 100 10
        amended 1/a BTC 100 6
        amended 1/a BTC 100 6
        amended 1/a BTC 100 6
        accepted 3/x BTC sell 100 8
        trade BTC 100 6 maker 1/a taker 3/x sell leaves 0 2
        trade BTC 100 2 maker 2/b taker 3/x sell leaves 8 0
        book BTC bid 2/b 100 8
        ",
    );
}

#[test]
fn amend_that_raises_quantity_or_moves_price_loses_priority() {
    check(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "5")),
            new(limit(2, "b", Buy, "100", "5")),
            new(limit(3, "c", Buy, "100", "5")),
            amend(1, "a", None, Some("6")),
            // Away and back again: the back of the level.
            amend(2, "b", Some("99"), None),
            amend(2, "b", Some("100"), None),
        ],
        "
        accepted 1/a BTC buy 100 5
        accepted 2/b BTC buy 100 5
        accepted 3/c BTC buy 100 5
        amended 1/a BTC 100 6
        amended 2/b BTC 99 5
        amended 2/b BTC 100 5
        book BTC bid 3/c 100 5
        book BTC bid 1/a 100 6
        book BTC bid 2/b 100 5
        ",
    );
}

#[test]
fn amend_to_a_crossing_price_trades_and_applies_its_own_stp() {
    check(
        &[
            btc(),
            new(limit(1, "s", Sell, "101", "5")),
            new(limit(2, "t", Sell, "101", "3")),
            new(limit(1, "b1", Buy, "100", "4")),
            new(limit(1, "b2", Buy, "99", "4").stp(Stp::CancelMaker)),
            // cancel_taker: meets its own `s` first, so its rest is cancelled.
            amend(1, "b1", Some("101"), None),
            // cancel_maker: cancels `s`, trades with `t`, rests the remainder.
            amend(1, "b2", Some("101"), None),
        ],
        "
        accepted 1/s BTC sell 101 5
        accepted 2/t BTC sell 101 3
        accepted 1/b1 BTC buy 100 4
        accepted 1/b2 BTC buy 99 4
        amended 1/b1 BTC 101 4
        cancelled 1/b1 BTC stp 4
        amended 1/b2 BTC 101 4
        cancelled 1/s BTC stp 5
        trade BTC 101 3 maker 2/t taker 1/b2 buy leaves 0 1
        book BTC bid 1/b2 101 1
        ",
    );
}

#[test]
fn amend_of_a_post_only_order_to_a_crossing_price_is_rejected_and_the_order_stays() {
    check(
        &[
            btc(),
            new(limit(1, "p", Buy, "99", "5").post_only()),
            new(limit(3, "q", Buy, "99", "5")),
            new(limit(2, "s", Sell, "101", "5")),
            amend(1, "p", Some("101"), None),
            amend(1, "p", Some("102"), Some("9")),
            // Rejected amends change nothing: `p` is still first at 99.
            new(limit(4, "x", Sell, "99", "5").tif(Tif::Ioc)),
            new(limit(1, "p2", Buy, "98", "5").post_only()),
            amend(1, "p2", Some("100"), Some("7")),
        ],
        "
        accepted 1/p BTC buy 99 5
        accepted 3/q BTC buy 99 5
        accepted 2/s BTC sell 101 5
        rejected 1/p BTC amend post_only
        rejected 1/p BTC amend post_only
        accepted 4/x BTC sell 99 5
        trade BTC 99 5 maker 1/p taker 4/x sell leaves 0 0
        accepted 1/p2 BTC buy 98 5
        amended 1/p2 BTC 100 7
        book BTC bid 1/p2 100 7
        book BTC bid 3/q 99 5
        book BTC ask 2/s 101 5
        ",
    );
}

#[test]
fn checks_on_amend_and_cancel_run_in_contract_order() {
    check(
        &[
            add_symbol(BTC, "0.5", "0.01"),
            add_symbol("ETH", "1", "1"),
            new(limit(1, "a", Buy, "100", "1").post_only()),
            new(limit(2, "s", Sell, "101", "1")),
            // Another account, another symbol, an unknown symbol: unknown_order.
            amend(2, "a", Some("0"), None),
            amend_on("ETH", 1, "a", Some("0"), None),
            cancel(2, "a"),
            cancel_on("ETH", 1, "a"),
            cancel_on("XRP", 1, "a"),
            // invalid_price beats invalid_qty, which beats post_only.
            amend(1, "a", Some("100.25"), Some("0")),
            amend(1, "a", Some("101"), Some("0.001")),
            amend(1, "a", Some("101"), Some("-1")),
            amend(1, "a", Some("101"), Some("2")),
            cancel(1, "a"),
            // Not live any more.
            cancel(1, "a"),
            amend(1, "a", None, Some("1")),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 2/s BTC sell 101 1
        rejected 2/a BTC amend unknown_order
        rejected 1/a ETH amend unknown_order
        rejected 2/a BTC cancel unknown_order
        rejected 1/a ETH cancel unknown_order
        rejected 1/a XRP cancel unknown_order
        rejected 1/a BTC amend invalid_price
        rejected 1/a BTC amend invalid_qty
        rejected 1/a BTC amend invalid_qty
        rejected 1/a BTC amend post_only
        cancelled 1/a BTC user 1
        rejected 1/a BTC cancel unknown_order
        rejected 1/a BTC amend unknown_order
        book BTC ask 2/s 101 1
        ",
    );
}

#[test]
fn mass_cancel_across_symbols_goes_in_time_priority_order() {
    check(
        &[
            btc(),
            add_symbol("ETH", "0.01", "0.5"),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "b", Sell, "50", "1.5").on("ETH")),
            new(limit(2, "x", Buy, "49", "1").on("ETH")),
            new(limit(1, "c", Sell, "110", "2")),
            // Loses its time priority: now the newest of account 1.
            amend(1, "a", None, Some("3")),
            new(limit(1, "d", Buy, "49.5", "0.5").on("ETH")),
            // Nothing to cancel: no events.
            mass_cancel(9, None),
            mass_cancel(1, Some("XRP")),
            mass_cancel(2, Some(BTC)),
            mass_cancel(2, Some("ETH")),
            mass_cancel(1, None),
            mass_cancel(1, None),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b ETH sell 50 1.5
        accepted 2/x ETH buy 49 1
        accepted 1/c BTC sell 110 2
        amended 1/a BTC 100 3
        accepted 1/d ETH buy 49.5 0.5
        cancelled 2/x ETH mass 1
        cancelled 1/b ETH mass 1.5
        cancelled 1/c BTC mass 2
        cancelled 1/a BTC mass 3
        cancelled 1/d ETH mass 0.5
        ",
    );
}

#[test]
fn mass_cancel_of_one_symbol_leaves_the_others() {
    check(
        &[
            btc(),
            add_symbol("ETH", "1", "1"),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "b", Buy, "10", "1").on("ETH")),
            new(limit(1, "c", Buy, "99", "1")),
            mass_cancel(1, Some(BTC)),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b ETH buy 10 1
        accepted 1/c BTC buy 99 1
        cancelled 1/a BTC mass 1
        cancelled 1/c BTC mass 1
        book ETH bid 1/b 10 1
        ",
    );
}

#[test]
fn a_rejected_id_may_be_reused_an_accepted_one_never() {
    check(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "0")),
            new(limit(1, "a", Buy, "100", "5")),
            new(limit(1, "a", Buy, "100", "5")),
            // Ids are per account.
            new(limit(2, "a", Sell, "101", "1")),
            cancel(1, "a"),
            new(limit(1, "a", Buy, "100", "5")),
            // An IOC that never rested still used its id.
            new(limit(3, "i", Buy, "101", "2").tif(Tif::Ioc)),
            new(limit(3, "i", Buy, "101", "2")),
            // So did a filled order.
            new(limit(2, "a", Sell, "101", "1")),
        ],
        "
        rejected 1/a BTC new invalid_qty
        accepted 1/a BTC buy 100 5
        rejected 1/a BTC new duplicate_order_id
        accepted 2/a BTC sell 101 1
        cancelled 1/a BTC user 5
        rejected 1/a BTC new duplicate_order_id
        accepted 3/i BTC buy 101 2
        trade BTC 101 1 maker 2/a taker 3/i buy leaves 0 1
        cancelled 3/i BTC ioc 1
        rejected 3/i BTC new duplicate_order_id
        rejected 2/a BTC new duplicate_order_id
        ",
    );
}

#[test]
fn add_symbol_rejects() {
    check(
        &[
            btc(),
            add_symbol(BTC, "0.5", "0.5"),
            add_symbol("ETH", "0", "1"),
            add_symbol("ETH", "-1", "1"),
            add_symbol("ETH", "1", "0"),
            add_symbol("ETH", "1", "-0.5"),
            add_symbol("ETH", "1", "1"),
            add_symbol("ETH", "1", "1"),
        ],
        "
        symbol_rejected BTC duplicate_symbol
        symbol_rejected ETH invalid_tick
        symbol_rejected ETH invalid_tick
        symbol_rejected ETH invalid_lot
        symbol_rejected ETH invalid_lot
        symbol_rejected ETH duplicate_symbol
        ",
    );
}

#[test]
fn the_oldest_retired_id_is_forgotten_once_retired_ids_max_are_remembered() {
    let config = EngineConfig {
        retired_ids_max: 2,
        ..EngineConfig::default()
    };
    check_engine(
        config,
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "1")),
            cancel(1, "a"),
            new(limit(1, "b", Buy, "99", "1").tif(Tif::Ioc)),
            // Two ids remembered: `a` is still a duplicate.
            new(limit(1, "a", Buy, "96", "1")),
            // `c` finishes: the ring is full, so `a` (the oldest) is forgotten.
            new(limit(1, "c", Buy, "98", "1")),
            cancel(1, "c"),
            new(limit(1, "a", Buy, "96", "1")),
            new(limit(1, "b", Buy, "95", "1")),
        ],
        "
        accepted 1/a BTC buy 100 1
        cancelled 1/a BTC user 1
        accepted 1/b BTC buy 99 1
        cancelled 1/b BTC ioc 1
        rejected 1/a BTC new duplicate_order_id
        accepted 1/c BTC buy 98 1
        cancelled 1/c BTC user 1
        accepted 1/a BTC buy 96 1
        rejected 1/b BTC new duplicate_order_id
        book BTC bid 1/a 96 1
        ",
    );
}

#[test]
fn with_no_retired_ids_remembered_a_finished_id_is_free_at_once() {
    let config = EngineConfig {
        retired_ids_max: 0,
        ..EngineConfig::default()
    };
    check_engine(
        config,
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "a", Buy, "100", "1")),
            cancel(1, "a"),
            new(limit(1, "a", Buy, "99", "1")),
        ],
        "
        accepted 1/a BTC buy 100 1
        rejected 1/a BTC new duplicate_order_id
        cancelled 1/a BTC user 1
        accepted 1/a BTC buy 99 1
        book BTC bid 1/a 99 1
        ",
    );
}

#[test]
fn a_full_set_of_live_orders_rejects_capacity_until_one_finishes() {
    let config = EngineConfig {
        orders_max: 2,
        ..EngineConfig::default()
    };
    check_engine(
        config,
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(2, "b", Buy, "99", "1")),
            new(limit(3, "c", Buy, "98", "1")),
            // An IOC order needs a record too, even though it never rests.
            new(limit(3, "d", Sell, "100", "1").tif(Tif::Ioc)),
            cancel(2, "b"),
            new(limit(3, "c", Buy, "98", "1")),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 2/b BTC buy 99 1
        rejected 3/c BTC new capacity
        rejected 3/d BTC new capacity
        cancelled 2/b BTC user 1
        accepted 3/c BTC buy 98 1
        book BTC bid 1/a 100 1
        book BTC bid 3/c 98 1
        ",
    );
}

#[test]
fn full_price_levels_reject_capacity_unless_no_new_level_is_needed() {
    let config = EngineConfig {
        levels_max: 3,
        levels_per_side_max: 2,
        ..EngineConfig::default()
    };
    check_engine(
        config,
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "b", Buy, "99", "1")),
            new(limit(1, "c", Buy, "98", "1")),
            // An existing level, or an order that will never rest, needs no new level.
            new(limit(1, "d", Buy, "100", "1")),
            new(limit(1, "e", Buy, "98", "1").tif(Tif::Ioc)),
            // `d` shares its level: moving it needs a third bid level.
            amend(1, "d", Some("97"), None),
            // `b` is alone on its level: moving it frees one.
            amend(1, "b", Some("97"), None),
            new(limit(2, "s", Sell, "101", "1")),
            // All three levels are in use.
            new(limit(2, "t", Sell, "102", "1")),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        rejected 1/c BTC new capacity
        accepted 1/d BTC buy 100 1
        accepted 1/e BTC buy 98 1
        cancelled 1/e BTC ioc 1
        rejected 1/d BTC amend capacity
        amended 1/b BTC 97 1
        accepted 2/s BTC sell 101 1
        rejected 2/t BTC new capacity
        book BTC bid 1/a 100 1
        book BTC bid 1/d 100 1
        book BTC bid 1/b 97 1
        book BTC ask 2/s 101 1
        ",
    );
}

#[test]
fn full_symbols_and_accounts_reject_capacity() {
    let config = EngineConfig {
        symbols_max: 1,
        accounts_max: 2,
        ..EngineConfig::default()
    };
    check_engine(
        config,
        &[
            btc(),
            add_symbol("ETH", "1", "1"),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(2, "b", Buy, "99", "1").tif(Tif::Ioc)),
            new(limit(3, "c", Sell, "100", "1").tif(Tif::Ioc)),
            // An account keeps its record once it has had an order.
            new(limit(2, "d", Sell, "100", "1")),
        ],
        "
        symbol_rejected ETH capacity
        accepted 1/a BTC buy 100 1
        accepted 2/b BTC buy 99 1
        cancelled 2/b BTC ioc 1
        rejected 3/c BTC new capacity
        accepted 2/d BTC sell 100 1
        trade BTC 100 1 maker 1/a taker 2/d sell leaves 0 0
        ",
    );
}

//! Hand-written cases of the replay contract (version 2), each checked against both the engine
//! and the naive reference model (`common::Model`), so the model that the property tests trust
//! is itself pinned to the contract. Capacity cases (an engine extension the model does not
//! have) run against the engine only.
//!
//! Each case is a list of commands (stamped with log times 1, 2, 3, ..., or given times) and
//! the expected transcript: every event, one a line, then every resting order (`book SYMBOL
//! bid|ask ACCOUNT/ID PRICE QTY`) in priority order, and for some cases every remembered order
//! (`order ...`, as `ORDERS.json` lists them). After every command the engine's
//! `orders()` must equal the model's.

mod common;

use common::*;
use engine::{
    AccountId, Command, CommandKind, Engine, EngineConfig, Side::Buy, Side::Sell, Stp, Tif,
    TimestampNs, TradingStatus,
};

/// Runs `cmds` on an engine built with `config`: its transcript (events, then books, then the
/// remembered orders when `orders` is set) and the engine.
fn engine_run(config: EngineConfig, cmds: &[Command], orders: bool) -> (String, Engine) {
    let mut engine = Engine::new(config).expect("valid config");
    let mut lines = Vec::new();
    for cmd in cmds {
        let mut events = Vec::new();
        engine.apply(cmd, &mut events);
        if let Err(broken) = engine.check_invariants() {
            panic!("invariant broken after {}: {broken}", describe_command(cmd));
        }
        lines.extend(events.iter().map(|e| describe_event(&e.kind)));
    }
    lines.extend(describe_engine_books(&engine));
    if orders {
        lines.extend(describe_orders(&engine.orders()));
    }
    (lines.join("\n"), engine)
}

/// The model's transcript, in the same form; its `orders()` is compared with the engine's
/// after every command.
fn model_run(config: EngineConfig, cmds: &[Command], orders: bool) -> (String, Model) {
    let mut model = Model::with_window(config.dedup_window_ns);
    let mut engine = Engine::new(config).expect("valid config");
    let mut lines = Vec::new();
    for cmd in cmds {
        lines.extend(model.apply(cmd).iter().map(describe_event));
        engine.apply(cmd, &mut Vec::new());
        let (ours, theirs) = (model.orders(), engine.orders());
        assert!(
            ours == theirs,
            "orders differ after {}\n--- engine:\n{}\n--- model:\n{}",
            describe_command(cmd),
            describe_orders(&theirs).join("\n"),
            describe_orders(&ours).join("\n")
        );
    }
    lines.extend(describe_model_books(&model));
    if orders {
        lines.extend(describe_orders(&model.orders()));
    }
    (lines.join("\n"), model)
}

fn normalize(expected: &str) -> String {
    expected
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Engine and model, built with `config`, both produce exactly `expected` from `cmds`.
fn check_both(
    config: EngineConfig,
    cmds: &[Command],
    orders: bool,
    expected: &str,
) -> (Engine, Model) {
    let expected = normalize(expected);
    let (engine_text, engine) = engine_run(config, cmds, orders);
    assert!(
        engine_text == expected,
        "engine transcript differs\n--- engine:\n{engine_text}\n--- expected:\n{expected}"
    );
    let (model_text, model) = model_run(config, cmds, orders);
    assert!(
        model_text == expected,
        "model transcript differs\n--- model:\n{model_text}\n--- expected:\n{expected}"
    );
    (engine, model)
}

/// Engine and model both produce exactly `expected` (events and books), commands at 1, 2, 3...
fn check(kinds: &[CommandKind], expected: &str) {
    check_both(EngineConfig::default(), &stamped(kinds), false, expected);
}

/// As [`check`], with the remembered orders at the end of the transcript.
fn check_orders(kinds: &[CommandKind], expected: &str) {
    check_both(EngineConfig::default(), &stamped(kinds), true, expected);
}

/// Engine and model with `config`, commands at the given log times, orders in the transcript.
fn check_timed(
    config: EngineConfig,
    steps: &[(u64, CommandKind)],
    expected: &str,
) -> (Engine, Model) {
    check_both(config, &timed(steps), true, expected)
}

/// The engine, built with `config`, produces exactly `expected` (events and books).
fn check_engine(config: EngineConfig, kinds: &[CommandKind], expected: &str) {
    check_engine_timed(config, &stamped(kinds), expected);
}

fn check_engine_timed(config: EngineConfig, cmds: &[Command], expected: &str) {
    let expected = normalize(expected);
    let (engine, _) = engine_run(config, cmds, false);
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
        trade BTC 100 2 maker 2/b taker 4/t buy leaves 0 3 filled 2 2
        trade BTC 100 2 maker 3/c taker 4/t buy leaves 0 1 filled 2 4
        trade BTC 101 1 maker 1/a taker 4/t buy leaves 1 0 filled 1 5
        accepted 4/u BTC buy 102 3
        trade BTC 101 1 maker 1/a taker 4/u buy leaves 0 2 filled 2 1
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
        trade BTC 100 2 maker 2/s taker 1/m6 buy leaves 0 1 filled 2 2
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
        trade BTC 100 3 maker 2/r2 taker 1/t2 buy leaves 2 0 filled 3 3
        accepted 1/r3 BTC sell 101 5
        accepted 2/r4 BTC sell 101 5
        accepted 1/t3 BTC buy 101 4 
        trade BTC 100 2 maker 2/r2 taker 1/t3 buy leaves 0 2 filled 5 2
        cancelled 1/r3 BTC stp 5
        cancelled 1/t3 BTC stp 2
        accepted 2/t4 BTC buy 101 7
        trade BTC 101 5 maker 2/r4 taker 2/t4 buy leaves 0 2 filled 5 5
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
        trade BTC 100 3 maker 2/r taker 1/t buy leaves 0 2 filled 3 3
        trade BTC 101 2 maker 2/r2 taker 1/t buy leaves 0 0 filled 2 5
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
        trade BTC 100 3 maker 1/own taker 1/t4 buy leaves 2 0 filled 3 3
        book BTC ask 1/own 100 2
        book BTC ask 2/r 100 3
        ",
    );
}

#[test]
fn amend_that_reduces_the_total_keeps_priority() {
    // The amend's quantity is the new total, filled part included.
    check(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "10")),
            new(limit(2, "b", Buy, "100", "10")),
            new(limit(3, "y", Sell, "100", "2").tif(Tif::Ioc)),
            amend(1, "a", None, Some("6")),
            // Neither field: same price and total, keeps its place.
            amend(1, "a", None, None),
            // Same price given explicitly, same total: keeps its place too.
            amend(1, "a", Some("100"), Some("6")),
            new(limit(3, "x", Sell, "100", "8").tif(Tif::Ioc)),
        ],
        "
        accepted 1/a BTC buy 100 10
        accepted 2/b BTC buy 100 10
        accepted 3/y BTC sell 100 2
        trade BTC 100 2 maker 1/a taker 3/y sell leaves 8 0 filled 2 2
        amended 1/a BTC 100 total 6 leaves 4 filled 2
        amended 1/a BTC 100 total 6 leaves 4 filled 2
        amended 1/a BTC 100 total 6 leaves 4 filled 2
        accepted 3/x BTC sell 100 8
        trade BTC 100 4 maker 1/a taker 3/x sell leaves 0 4 filled 6 4
        trade BTC 100 4 maker 2/b taker 3/x sell leaves 6 0 filled 4 8
        book BTC bid 2/b 100 6
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
        amended 1/a BTC 100 total 6 leaves 6 filled 0
        amended 2/b BTC 99 total 5 leaves 5 filled 0
        amended 2/b BTC 100 total 5 leaves 5 filled 0
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
        amended 1/b1 BTC 101 total 4 leaves 4 filled 0
        cancelled 1/b1 BTC stp 4
        amended 1/b2 BTC 101 total 4 leaves 4 filled 0
        cancelled 1/s BTC stp 5
        trade BTC 101 3 maker 2/t taker 1/b2 buy leaves 0 1 filled 3 3
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
        trade BTC 99 5 maker 1/p taker 4/x sell leaves 0 0 filled 5 5
        accepted 1/p2 BTC buy 98 5
        amended 1/p2 BTC 100 total 7 leaves 7 filled 0
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
        amended 1/a BTC 100 total 3 leaves 3 filled 0
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
fn a_rejected_id_may_be_reused_an_accepted_one_not_inside_the_window() {
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
        trade BTC 101 1 maker 2/a taker 3/i buy leaves 0 1 filled 1 1
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
        symbol_rejected BTC add_symbol duplicate_symbol
        symbol_rejected ETH add_symbol invalid_tick
        symbol_rejected ETH add_symbol invalid_tick
        symbol_rejected ETH add_symbol invalid_lot
        symbol_rejected ETH add_symbol invalid_lot
        symbol_rejected ETH add_symbol duplicate_symbol
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
        amended 1/b BTC 97 total 1 leaves 1 filled 0
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
        symbol_rejected ETH add_symbol capacity
        accepted 1/a BTC buy 100 1
        accepted 2/b BTC buy 99 1
        cancelled 2/b BTC ioc 1
        rejected 3/c BTC new capacity
        accepted 2/d BTC sell 100 1
        trade BTC 100 1 maker 1/a taker 2/d sell leaves 0 0 filled 1 1
        ",
    );
}
// ----- amend by total, replace chains ----------------------------------------------------------

#[test]
fn amend_with_fills_keeps_place_finishes_or_goes_below_filled() {
    check_orders(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "10")),
            new(limit(2, "b", Buy, "100", "10")),
            new(limit(3, "x", Sell, "100", "4").tif(Tif::Ioc)),
            // F = 4 < Q = 8 < total 10, same price: keeps its place ahead of `b`.
            amend(1, "a", None, Some("8")),
            new(limit(3, "y", Sell, "100", "2").tif(Tif::Ioc)),
            // Q == F: finished as filled, `amended` with leaves 0 and no `cancelled`.
            amend(1, "a", None, Some("6")),
            new(limit(4, "z", Sell, "100", "3").tif(Tif::Ioc)),
            // Q = 2 < F = 3 (with a new price): finished as filled, total below filled.
            amend(2, "b", Some("99"), Some("2")),
            cancel(2, "b"),
            amend(1, "a", None, Some("7")),
        ],
        "
        accepted 1/a BTC buy 100 10
        accepted 2/b BTC buy 100 10
        accepted 3/x BTC sell 100 4
        trade BTC 100 4 maker 1/a taker 3/x sell leaves 6 0 filled 4 4
        amended 1/a BTC 100 total 8 leaves 4 filled 4
        accepted 3/y BTC sell 100 2
        trade BTC 100 2 maker 1/a taker 3/y sell leaves 2 0 filled 6 2
        amended 1/a BTC 100 total 6 leaves 0 filled 6
        accepted 4/z BTC sell 100 3
        trade BTC 100 3 maker 2/b taker 4/z sell leaves 7 0 filled 3 3
        amended 2/b BTC 99 total 2 leaves 0 filled 3
        rejected 2/b BTC cancel unknown_order
        rejected 1/a BTC amend unknown_order
        order 1/a BTC buy 100 total 6 filled 6 leaves 0 notional 600 s0 filled @7
        order 2/b BTC buy 99 total 2 filled 3 leaves 0 notional 300 s0 filled @9
        order 3/x BTC sell 100 total 4 filled 4 leaves 0 notional 400 s0 filled @4
        order 3/y BTC sell 100 total 2 filled 2 leaves 0 notional 200 s0 filled @6
        order 4/z BTC sell 100 total 3 filled 3 leaves 0 notional 300 s0 filled @8
        ",
    );
}

#[test]
fn amend_above_the_total_reenters_with_total_minus_filled_open() {
    check_orders(
        &[
            add_symbol(BTC, "0.5", "1"),
            new(limit(1, "a", Buy, "100", "10")),
            new(limit(2, "b", Buy, "100", "10")),
            new(limit(3, "x", Sell, "100", "4").tif(Tif::Ioc)),
            amend(1, "a", None, Some("12")),
            new(limit(3, "y", Sell, "99.5", "15").tif(Tif::Ioc)),
        ],
        "
        accepted 1/a BTC buy 100 10
        accepted 2/b BTC buy 100 10
        accepted 3/x BTC sell 100 4
        trade BTC 100 4 maker 1/a taker 3/x sell leaves 6 0 filled 4 4
        amended 1/a BTC 100 total 12 leaves 8 filled 4
        accepted 3/y BTC sell 99.5 15
        trade BTC 100 10 maker 2/b taker 3/y sell leaves 0 5 filled 10 10
        trade BTC 100 5 maker 1/a taker 3/y sell leaves 3 0 filled 9 15
        book BTC bid 1/a 100 3
        order 1/a BTC buy 100 total 12 filled 9 leaves 3 notional 900 s0 partially_filled
        order 2/b BTC buy 100 total 10 filled 10 leaves 0 notional 1000 s0 filled @6
        order 3/x BTC sell 100 total 4 filled 4 leaves 0 notional 400 s0 filled @4
        order 3/y BTC sell 99.5 total 15 filled 15 leaves 0 notional 1500 s0 filled @6
        ",
    );
}

#[test]
fn replace_chain_resend_own_id_and_trades_under_the_new_id() {
    check_orders(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "10").session(7)),
            new(limit(3, "x", Sell, "100", "4").tif(Tif::Ioc)),
            replace(1, "a", "a2", None, Some("12")),
            // The resend finds `a` no longer live: nothing is applied twice.
            replace(1, "a", "a2", None, Some("12")),
            cancel(1, "a"),
            // To its own id, and to its own old id: both duplicates.
            replace(1, "a2", "a2", None, Some("9")),
            replace(1, "a2", "a", None, Some("9")),
            new(limit(3, "y", Sell, "100", "3").tif(Tif::Ioc)),
            replace(1, "a2", "a3", Some("101"), None),
            new(limit(1, "a", Buy, "99", "1")),
        ],
        "
        accepted 1/a BTC buy 100 10
        accepted 3/x BTC sell 100 4
        trade BTC 100 4 maker 1/a taker 3/x sell leaves 6 0 filled 4 4
        amended 1/a as a2 BTC 100 total 12 leaves 8 filled 4
        rejected 1/a BTC amend unknown_order
        rejected 1/a BTC cancel unknown_order
        rejected 1/a2 BTC amend duplicate_order_id
        rejected 1/a2 BTC amend duplicate_order_id
        accepted 3/y BTC sell 100 3
        trade BTC 100 3 maker 1/a2 taker 3/y sell leaves 5 0 filled 7 3
        amended 1/a2 as a3 BTC 101 total 12 leaves 5 filled 7
        rejected 1/a BTC new duplicate_order_id
        book BTC bid 1/a3 101 5
        order 1/a BTC buy 100 total 10 filled 4 leaves 0 notional 400 s7 replaced by a2 @4
        order 1/a2 BTC buy 100 total 12 filled 7 leaves 0 notional 700 s7 replaced by a3 @10
        order 1/a3 BTC buy 101 total 12 filled 7 leaves 5 notional 700 s7 partially_filled
        order 3/x BTC sell 100 total 4 filled 4 leaves 0 notional 400 s0 filled @3
        order 3/y BTC sell 100 total 3 filled 3 leaves 0 notional 300 s0 filled @9
        ",
    );
}

#[test]
fn a_replace_that_crosses_trades_under_the_new_id_and_finishing_replace() {
    check_orders(
        &[
            btc(),
            new(limit(2, "s", Sell, "101", "3")),
            new(limit(1, "a", Buy, "100", "5")),
            // Re-enters at a crossing price under its new id: the trade names `b`.
            replace(1, "a", "b", Some("101"), None),
            // Q <= F with a new id: the old id is replaced, the new one finished as filled.
            replace(1, "b", "c", None, Some("3")),
        ],
        "
        accepted 2/s BTC sell 101 3
        accepted 1/a BTC buy 100 5
        amended 1/a as b BTC 101 total 5 leaves 5 filled 0
        trade BTC 101 3 maker 2/s taker 1/b buy leaves 0 2 filled 3 3
        amended 1/b as c BTC 101 total 3 leaves 0 filled 3
        order 1/a BTC buy 100 total 5 filled 0 leaves 0 notional 0 s0 replaced by b @4
        order 1/b BTC buy 101 total 5 filled 3 leaves 0 notional 303 s0 replaced by c @5
        order 1/c BTC buy 101 total 3 filled 3 leaves 0 notional 303 s0 filled @5
        order 2/s BTC sell 101 total 3 filled 3 leaves 0 notional 303 s0 filled @4
        ",
    );
}

// ----- the dedup window --------------------------------------------------------------------------

fn window(ns: u64) -> EngineConfig {
    EngineConfig {
        dedup_window_ns: ns,
        ..EngineConfig::default()
    }
}

#[test]
fn a_replaced_id_is_a_duplicate_until_its_window_ends() {
    check_timed(
        window(10),
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "5"))),
            (3, replace(1, "a", "b", Some("99"), None)),
            (12, new(limit(1, "a", Buy, "98", "1"))),
            // now == finished_at + window: forgotten.
            (13, new(limit(1, "a", Buy, "98", "1"))),
        ],
        "
        accepted 1/a BTC buy 100 5
        amended 1/a as b BTC 99 total 5 leaves 5 filled 0
        rejected 1/a BTC new duplicate_order_id
        accepted 1/a BTC buy 98 1
        book BTC bid 1/b 99 5
        book BTC bid 1/a 98 1
        order 1/a BTC buy 98 total 1 filled 0 leaves 1 notional 0 s0 new
        order 1/b BTC buy 99 total 5 filled 0 leaves 5 notional 0 s0 new
        ",
    );
}

#[test]
fn the_dedup_window_boundary_is_exact_on_log_time() {
    check_timed(
        window(10),
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (5, cancel(1, "a")),
            (6, new(limit(2, "i", Buy, "100", "1").tif(Tif::Ioc))),
            // A late ts does not move the clock back: now stays 14.
            (14, clock()),
            (3, new(limit(1, "a", Buy, "100", "1"))),
            (15, new(limit(1, "a", Buy, "100", "1"))),
            (15, new(limit(2, "i", Buy, "100", "1"))),
        ],
        "
        accepted 1/a BTC buy 100 1
        cancelled 1/a BTC user 1
        accepted 2/i BTC buy 100 1
        cancelled 2/i BTC ioc 1
        rejected 1/a BTC new duplicate_order_id
        accepted 1/a BTC buy 100 1
        rejected 2/i BTC new duplicate_order_id
        book BTC bid 1/a 100 1
        order 1/a BTC buy 100 total 1 filled 0 leaves 1 notional 0 s0 new
        order 2/i BTC buy 100 total 1 filled 0 leaves 0 notional 0 s0 cancelled ioc @6
        ",
    );
}

#[test]
fn with_a_zero_window_a_finished_id_is_free_at_once() {
    let config = EngineConfig {
        retired_ids_max: 0,
        dedup_window_ns: 0,
        ..EngineConfig::default()
    };
    check_timed(
        config,
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (3, new(limit(1, "a", Buy, "100", "1"))),
            (4, cancel(1, "a")),
            (5, new(limit(1, "a", Buy, "99", "1"))),
            (6, replace(1, "a", "b", None, None)),
            // The resent replace is still safe; a resent `new` of a finished id is not.
            (7, replace(1, "a", "b", None, None)),
            (8, new(limit(1, "a", Buy, "98", "1"))),
        ],
        "
        accepted 1/a BTC buy 100 1
        rejected 1/a BTC new duplicate_order_id
        cancelled 1/a BTC user 1
        accepted 1/a BTC buy 99 1
        amended 1/a as b BTC 99 total 1 leaves 1 filled 0
        rejected 1/a BTC amend unknown_order
        accepted 1/a BTC buy 98 1
        book BTC bid 1/b 99 1
        book BTC bid 1/a 98 1
        order 1/a BTC buy 98 total 1 filled 0 leaves 1 notional 0 s0 new
        order 1/b BTC buy 99 total 1 filled 0 leaves 1 notional 0 s0 new
        ",
    );
}

// ----- capacity of the finished-order memory (engine only) -------------------------------------

fn memory(ids: u32, window_ns: u64) -> EngineConfig {
    EngineConfig {
        retired_ids_max: ids,
        dedup_window_ns: window_ns,
        ..EngineConfig::default()
    }
}

#[test]
fn capacity_lasts_exactly_while_finished_and_live_orders_fill_the_memory() {
    check_engine_timed(
        memory(3, 10),
        &timed(&[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (3, new(limit(1, "b", Buy, "99", "1"))),
            (4, cancel(1, "a")),
            // 1 finished + 1 live + this one: full after it.
            (5, new(limit(1, "c", Buy, "98", "1"))),
            (6, new(limit(1, "d", Buy, "97", "1"))),
            (13, new(limit(1, "d", Buy, "97", "1"))),
            // `a` leaves its window (4 + 10): room again.
            (14, new(limit(1, "d", Buy, "97", "1"))),
            (15, new(limit(1, "e", Buy, "96", "1"))),
            // At full capacity a mass cancel of every live order still works.
            (16, mass_cancel(1, None)),
            (17, new(limit(1, "e", Buy, "96", "1"))),
            (25, new(limit(1, "e", Buy, "96", "1"))),
            (26, new(limit(1, "e", Buy, "96", "1"))),
        ]),
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        cancelled 1/a BTC user 1
        accepted 1/c BTC buy 98 1
        rejected 1/d BTC new capacity
        rejected 1/d BTC new capacity
        accepted 1/d BTC buy 97 1
        rejected 1/e BTC new capacity
        cancelled 1/b BTC mass 1
        cancelled 1/c BTC mass 1
        cancelled 1/d BTC mass 1
        rejected 1/e BTC new capacity
        rejected 1/e BTC new capacity
        accepted 1/e BTC buy 96 1
        book BTC bid 1/e 96 1
        ",
    );
}

#[test]
fn a_replace_at_full_capacity_is_rejected_capacity() {
    check_engine_timed(
        memory(2, 10),
        &timed(&[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (3, new(limit(1, "b", Buy, "99", "1"))),
            // The old id would need a place of its own.
            (4, replace(1, "a", "a2", Some("101"), None)),
            // A plain amend needs none.
            (5, amend(1, "a", Some("101"), None)),
            (6, cancel(1, "b")),
            (7, replace(1, "a", "a2", None, None)),
            (16, replace(1, "a", "a2", None, None)),
        ]),
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        rejected 1/a BTC amend capacity
        amended 1/a BTC 101 total 1 leaves 1 filled 0
        cancelled 1/b BTC user 1
        rejected 1/a BTC amend capacity
        amended 1/a as a2 BTC 101 total 1 leaves 1 filled 0
        book BTC bid 1/a2 101 1
        ",
    );
}

// ----- the dead-man's switch -------------------------------------------------------------------

#[test]
fn due_switches_fire_in_deadline_account_session_order() {
    let (engine, model) = check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            (2, new(limit(2, "a", Buy, "100", "1").session(1))),
            (3, new(limit(1, "b", Buy, "99", "1").session(2))),
            (4, new(limit(1, "c", Buy, "98", "1").session(1))),
            (5, new(limit(2, "d", Sell, "110", "1").session(1))),
            (6, new(limit(1, "e", Sell, "111", "1"))),
            (7, cancel_after(2, 1, 10)),
            (8, cancel_after(1, 2, 9)),
            (9, cancel_after(1, 1, 8)),
            (10, cancel_after(1, 9, 5)),
            (20, clock()),
            (21, clock()),
        ],
        "
        accepted 2/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        accepted 1/c BTC buy 98 1
        accepted 2/d BTC sell 110 1
        accepted 1/e BTC sell 111 1
        cancel_after 2 s1 deadline 17
        cancel_after 1 s2 deadline 17
        cancel_after 1 s1 deadline 17
        cancel_after 1 s9 deadline 15
        cancelled 1/c BTC expired 1
        cancelled 1/b BTC expired 1
        cancelled 2/a BTC expired 1
        cancelled 2/d BTC expired 1
        book BTC ask 1/e 111 1
        order 1/b BTC buy 99 total 1 filled 0 leaves 0 notional 0 s2 cancelled expired @20
        order 1/c BTC buy 98 total 1 filled 0 leaves 0 notional 0 s1 cancelled expired @20
        order 1/e BTC sell 111 total 1 filled 0 leaves 1 notional 0 s0 new
        order 2/a BTC buy 100 total 1 filled 0 leaves 0 notional 0 s1 cancelled expired @20
        order 2/d BTC sell 110 total 1 filled 0 leaves 0 notional 0 s1 cancelled expired @20
        ",
    );
    for (account, session) in [(1, 1), (1, 2), (1, 9), (2, 1)] {
        assert_eq!(engine.switch_deadline(AccountId(account), session), None);
        assert_eq!(model.switch_deadline(AccountId(account), session), None);
    }
    assert_eq!(engine.stats().switches, 0);
}

#[test]
fn a_refresh_at_or_after_the_deadline_comes_too_late_and_disarm_emits_zero() {
    check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1").session(3))),
            (3, new(limit(1, "b", Buy, "99", "1").session(3))),
            (4, cancel_after(1, 3, 6)),
            // At the deadline: the firing pass runs before the command.
            (10, cancel_after(1, 3, 100)),
            (11, new(limit(1, "c", Buy, "98", "1").session(3))),
            // After it.
            (120, cancel_after(1, 3, 5)),
            (121, new(limit(1, "d", Buy, "97", "1").session(3))),
            (122, cancel_after(1, 3, 0)),
            (500, clock()),
            // Disarming a switch that is not armed still answers.
            (501, cancel_after(1, 4, 0)),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        cancel_after 1 s3 deadline 10
        cancelled 1/a BTC expired 1
        cancelled 1/b BTC expired 1
        cancel_after 1 s3 deadline 110
        accepted 1/c BTC buy 98 1
        cancelled 1/c BTC expired 1
        cancel_after 1 s3 deadline 125
        accepted 1/d BTC buy 97 1
        cancel_after 1 s3 deadline 0
        cancel_after 1 s4 deadline 0
        book BTC bid 1/d 97 1
        order 1/a BTC buy 100 total 1 filled 0 leaves 0 notional 0 s3 cancelled expired @10
        order 1/b BTC buy 99 total 1 filled 0 leaves 0 notional 0 s3 cancelled expired @10
        order 1/c BTC buy 98 total 1 filled 0 leaves 0 notional 0 s3 cancelled expired @120
        order 1/d BTC buy 97 total 1 filled 0 leaves 1 notional 0 s3 new
        ",
    );
}

#[test]
fn clock_fires_switches_in_a_quiet_market_even_for_accounts_with_no_orders() {
    let (engine, model) = check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            // Account 5 has no record yet.
            (2, cancel_after(5, 0, 10)),
            (3, new(limit(5, "a", Buy, "100", "1"))),
            (4, new(limit(5, "b", Buy, "99", "1").session(1))),
            (12, clock()),
            // Account 6 never has an order.
            (13, cancel_after(6, 0, 3)),
            (16, clock()),
            // The deadline saturates.
            (17, cancel_after(5, 1, u64::MAX)),
            (18, clock()),
        ],
        &format!(
            "
            cancel_after 5 s0 deadline 12
            accepted 5/a BTC buy 100 1
            accepted 5/b BTC buy 99 1
            cancelled 5/a BTC expired 1
            cancel_after 6 s0 deadline 16
            cancel_after 5 s1 deadline {}
            book BTC bid 5/b 99 1
            order 5/a BTC buy 100 total 1 filled 0 leaves 0 notional 0 s0 cancelled expired @12
            order 5/b BTC buy 99 total 1 filled 0 leaves 1 notional 0 s1 new
            ",
            u64::MAX
        ),
    );
    let max = Some(TimestampNs(u64::MAX));
    assert_eq!(engine.switch_deadline(AccountId(5), 1), max);
    assert_eq!(model.switch_deadline(AccountId(5), 1), Some(u64::MAX));
    assert_eq!(engine.switch_deadline(AccountId(6), 0), None);
    assert_eq!(engine.stats().switches, 1);
}

#[test]
fn an_order_keeps_its_session_through_replaces() {
    check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            (2, add_symbol("ETH", "1", "1")),
            (3, new(limit(1, "a", Buy, "100", "5").session(2))),
            (4, new(limit(1, "b", Buy, "99", "5").session(1))),
            (5, new(limit(1, "e", Buy, "9", "5").session(1).on("ETH"))),
            (6, cancel_after(1, 2, 10)),
            (7, replace(1, "a", "a2", Some("101"), None)),
            (8, replace(1, "b", "b2", None, Some("3"))),
            (9, mass_cancel_session(1, Some(BTC), 1)),
            (10, mass_cancel_session(1, None, 3)),
            (16, clock()),
        ],
        "
        accepted 1/a BTC buy 100 5
        accepted 1/b BTC buy 99 5
        accepted 1/e ETH buy 9 5
        cancel_after 1 s2 deadline 16
        amended 1/a as a2 BTC 101 total 5 leaves 5 filled 0
        amended 1/b as b2 BTC 99 total 3 leaves 3 filled 0
        cancelled 1/b2 BTC mass 3
        cancelled 1/a2 BTC expired 5
        book ETH bid 1/e 9 5
        order 1/a BTC buy 100 total 5 filled 0 leaves 0 notional 0 s2 replaced by a2 @7
        order 1/a2 BTC buy 101 total 5 filled 0 leaves 0 notional 0 s2 cancelled expired @16
        order 1/b BTC buy 99 total 5 filled 0 leaves 0 notional 0 s1 replaced by b2 @8
        order 1/b2 BTC buy 99 total 3 filled 0 leaves 0 notional 0 s1 cancelled mass @9
        order 1/e ETH buy 9 total 5 filled 0 leaves 5 notional 0 s1 new
        ",
    );
}

// ----- operator controls -------------------------------------------------------------------------

#[test]
fn account_disabled_beats_cancel_only_beats_duplicate_order_id() {
    check(
        &[
            btc(),
            add_symbol("ETH", "1", "1"),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "e", Buy, "10", "2").on("ETH")),
            new(limit(1, "f", Buy, "9", "2").on("ETH")),
            trading_status(Some(BTC), TradingStatus::CancelOnly),
            // Amends on a cancel_only symbol: cancel_only beats invalid_price and a duplicate.
            trading_status(Some("ETH"), TradingStatus::CancelOnly),
            amend_on("ETH", 1, "e", Some("0"), None),
            amend_on("ETH", 2, "e", Some("0"), None),
            // Cancels and mass cancels always work.
            cancel_on("ETH", 1, "e"),
            trading_status(Some("ETH"), TradingStatus::Open),
            kill_switch(1, true),
            // unknown_symbol, then account_disabled (before cancel_only and duplicate `a`).
            new(limit(1, "a", Buy, "100", "0").on("XRP")),
            new(limit(1, "a", Buy, "100", "0")),
            cancel(1, "a"),
            mass_cancel(1, None),
            kill_switch(1, false),
            // cancel_only beats the duplicate `a`, which `ETH` (open) then reports.
            new(limit(1, "a", Buy, "100", "0")),
            new(limit(1, "a", Buy, "10", "0").on("ETH")),
            new(limit(1, "g", Buy, "10", "1").on("ETH")),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/e ETH buy 10 2
        accepted 1/f ETH buy 9 2
        trading_status BTC cancel_only
        trading_status ETH cancel_only
        rejected 1/e ETH amend cancel_only
        rejected 2/e ETH amend unknown_order
        cancelled 1/e ETH user 2
        trading_status ETH open
        kill_switch 1 on
        cancelled 1/a BTC kill_switch 1
        cancelled 1/f ETH kill_switch 2
        rejected 1/a XRP new unknown_symbol
        rejected 1/a BTC new account_disabled
        rejected 1/a BTC cancel unknown_order
        kill_switch 1 off
        rejected 1/a BTC new cancel_only
        rejected 1/a ETH new duplicate_order_id
        accepted 1/g ETH buy 10 1
        book ETH bid 1/g 10 1
        ",
    );
}

#[test]
fn amend_checks_with_operator_controls_and_mass_cancel_while_cancel_only() {
    check(
        &[
            btc(),
            new(limit(1, "a", Buy, "100", "1")),
            new(limit(1, "b", Buy, "99", "1")),
            // A replace to a live id: duplicate_order_id while open ...
            replace(1, "a", "b", Some("0.5"), None),
            replace(1, "a", "b", None, None),
            // ... but cancel_only first once the symbol is cancel_only.
            trading_status(None, TradingStatus::CancelOnly),
            replace(1, "a", "b", None, None),
            amend(1, "a", None, Some("1")),
            mass_cancel(1, None),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        rejected 1/a BTC amend invalid_price
        rejected 1/a BTC amend duplicate_order_id
        trading_status BTC cancel_only
        rejected 1/a BTC amend cancel_only
        rejected 1/a BTC amend cancel_only
        cancelled 1/a BTC mass 1
        cancelled 1/b BTC mass 1
        ",
    );
}

#[test]
fn trading_status_of_every_symbol_goes_in_name_order_and_later_symbols_start_open() {
    let (engine, model) = check_timed(
        EngineConfig::default(),
        &[
            (1, add_symbol("ETH", "1", "1")),
            (2, add_symbol(BTC, "1", "1")),
            (3, add_symbol("ADA", "1", "1")),
            (4, trading_status(None, TradingStatus::CancelOnly)),
            (5, trading_status(Some("XRP"), TradingStatus::Open)),
            (6, add_symbol("SOL", "1", "1")),
            (7, new(limit(1, "s", Buy, "1", "1").on("SOL"))),
            (8, new(limit(1, "b", Buy, "1", "1"))),
            // Confirming emits too.
            (9, trading_status(Some(BTC), TradingStatus::CancelOnly)),
            (10, trading_status(Some(BTC), TradingStatus::Open)),
            (11, new(limit(1, "b", Buy, "1", "1"))),
            // An account never seen; on twice, off while off: each emits.
            (12, kill_switch(9, false)),
            (13, kill_switch(9, true)),
            (14, kill_switch(9, true)),
            (15, new(limit(9, "x", Sell, "1", "1"))),
        ],
        "
        trading_status ADA cancel_only
        trading_status BTC cancel_only
        trading_status ETH cancel_only
        symbol_rejected XRP trading_status unknown_symbol
        accepted 1/s SOL buy 1 1
        rejected 1/b BTC new cancel_only
        trading_status BTC cancel_only
        trading_status BTC open
        accepted 1/b BTC buy 1 1
        kill_switch 9 off
        kill_switch 9 on
        kill_switch 9 on
        rejected 9/x BTC new account_disabled
        book BTC bid 1/b 1 1
        book SOL bid 1/s 1 1
        order 1/b BTC buy 1 total 1 filled 0 leaves 1 notional 0 s0 new
        order 1/s SOL buy 1 total 1 filled 0 leaves 1 notional 0 s0 new
        ",
    );
    assert!(engine.kill_switch_on(AccountId(9)) && model.kill_switch_on(AccountId(9)));
    for (info, name) in engine.symbols().zip(model.symbols()) {
        assert_eq!(info.name, name);
        assert_eq!(engine.trading_status(info.id), model.status(&name));
    }
}

#[test]
fn the_dedup_window_does_not_wrap_at_the_end_of_time() {
    // finished_at + window is past u64::MAX: `now` never reaches it, so the id stays known.
    let end = u64::MAX;
    let (engine, _) = check_timed(
        window(10),
        &[
            (1, btc()),
            (end - 5, new(limit(1, "a", Buy, "100", "1"))),
            (end - 5, cancel(1, "a")),
            (end, new(limit(1, "a", Buy, "100", "1"))),
        ],
        &format!(
            "
            accepted 1/a BTC buy 100 1
            cancelled 1/a BTC user 1
            rejected 1/a BTC new duplicate_order_id
            order 1/a BTC buy 100 total 1 filled 0 leaves 0 notional 0 s0 cancelled user @{}
            ",
            end - 5
        ),
    );
    // And a snapshot taken then restores it.
    let restored = Engine::restore(&engine.snapshot()).expect("a snapshot at the end of time");
    assert_eq!(restored.orders(), engine.orders());
    restored.check_invariants().unwrap();
}

#[test]
fn a_command_at_the_last_nanosecond_with_no_switch_armed_is_applied() {
    check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (u64::MAX, clock()),
            (u64::MAX, new(limit(1, "b", Buy, "99", "1"))),
        ],
        "
        accepted 1/a BTC buy 100 1
        accepted 1/b BTC buy 99 1
        book BTC bid 1/a 100 1
        book BTC bid 1/b 99 1
        order 1/a BTC buy 100 total 1 filled 0 leaves 1 notional 0 s0 new
        order 1/b BTC buy 99 total 1 filled 0 leaves 1 notional 0 s0 new
        ",
    );
}

/// A switch armed at the last nanosecond saturates its deadline at the end of time: a snapshot
/// taken then restores (the node can restart), and the switch fires at the next command.
#[test]
fn a_switch_armed_at_the_end_of_time_survives_a_snapshot_and_fires_next() {
    let end = u64::MAX;
    let (engine, _) = check_timed(
        EngineConfig::default(),
        &[
            (1, btc()),
            (2, new(limit(1, "a", Buy, "100", "1"))),
            (end, cancel_after(1, 0, 5)),
        ],
        &format!(
            "
            accepted 1/a BTC buy 100 1
            cancel_after 1 s0 deadline {end}
            book BTC bid 1/a 100 1
            order 1/a BTC buy 100 total 1 filled 0 leaves 1 notional 0 s0 new
            "
        ),
    );
    let mut restored = Engine::restore(&engine.snapshot()).expect("a snapshot at the end of time");
    restored.check_invariants().unwrap();
    let mut events = Vec::new();
    restored.apply(&Command::new(end, clock()), &mut events);
    assert!(
        matches!(
            events.as_slice(),
            [engine::Event {
                kind: engine::EventKind::Cancelled {
                    reason: engine::CancelReason::Expired,
                    ..
                },
                ..
            }]
        ),
        "{events:?}"
    );
}

/// Version 1 remembered the last 2^20 finished ids: a resend after more than that many other
/// orders finished (10 s of flow at 100,000 orders/s) executed a second time. Now the id is
/// refused for its whole window of log time, however many orders finish meanwhile.
#[test]
fn a_resend_after_more_than_the_old_count_of_finishes_is_refused_within_the_window() {
    let config = EngineConfig {
        retired_ids_max: (1 << 20) + 64,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let mut events = Vec::with_capacity(16);
    let mut apply = |engine: &mut Engine, ts: u64, kind: CommandKind| {
        events.clear();
        engine.apply(&Command::new(ts, kind), &mut events);
        events.last().map(|e| e.kind)
    };
    apply(&mut engine, 1, btc());
    let first = new(limit(1, "first", Buy, "100", "1").tif(Tif::Ioc));
    apply(&mut engine, 2, first);
    // 2^20 + 1 orders finish (IOC with nothing to trade), 1 µs of log time apart: 1.05 s.
    for n in 0..=(1u64 << 20) {
        let id = format!("f{n}");
        apply(
            &mut engine,
            3 + n * 1_000,
            new(limit(2, &id, Buy, "100", "1").tif(Tif::Ioc)),
        );
    }
    assert_eq!(engine.stats().finished, (1 << 20) + 2);
    let resent = apply(&mut engine, 2_000_000_000, first);
    assert!(
        matches!(
            resent,
            Some(engine::EventKind::Rejected {
                reason: engine::RejectReason::DuplicateOrderId,
                ..
            })
        ),
        "{resent:?}"
    );
}

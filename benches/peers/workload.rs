//! The command streams every engine is driven with: generated once, as our `Command`s.

use std::time::Instant;

use engine::{
    AccountId, Command, CommandKind, Engine, EngineConfig, Event, NewOrder, OrdType, OrderId,
    Price, Qty, Side, Stp, SymbolId, Tif,
};
use flow::{FlowConfig, FlowGenerator, FlowStats, Mix, SplitMix64};

/// A named stream: setup commands (listing the symbols and filling the books), then the
/// steady-state commands that are measured.
pub struct Workload {
    pub name: String,
    /// One line on how the stream was made, printed with the results.
    pub description: String,
    pub engine_config: EngineConfig,
    pub setup: Vec<Command>,
    pub stream: Vec<Command>,
}

/// The flow every workload starts from: exchange-core's benchmark shape (the seed of
/// `benches/engine.rs`, 1,000 accounts, prices within 100 ticks of the mid).
fn base_flow(symbols: u32, book_depth: usize) -> FlowConfig {
    FlowConfig {
        seed: 0x00c0_ffee,
        symbols,
        accounts: 1000,
        book_depth,
        ..FlowConfig::default()
    }
}

/// A `flow` stream of `commands` steady-state commands.
pub fn flow(name: &str, config: FlowConfig, commands: usize) -> Workload {
    let started = Instant::now();
    let mut generator = FlowGenerator::new(config);
    let setup = generator.setup();
    let stream = generator.generate(commands);
    let mix = config.mix;
    Workload {
        name: name.to_string(),
        description: format!(
            "{} symbol(s), {} resting orders each; mix {}% GTC, {}% IOC, {}% cancel, {}% move; \
             generated {}; in {:.1?}",
            config.symbols,
            config.book_depth,
            mix.gtc / 10_000,
            mix.ioc / 10_000,
            mix.cancel / 10_000,
            mix.amend / 10_000,
            generator.stats(),
            started.elapsed()
        ),
        engine_config: config.engine_config(),
        setup,
        stream,
    }
}

/// exchange-core's mix over `symbols` symbols of `book_depth` resting orders each.
pub fn exchange_core(symbols: u32, book_depth: usize, commands: usize) -> Workload {
    let name = match symbols {
        1 => "exchange_core/1_symbol".to_string(),
        n => format!("exchange_core/{n}_symbols"),
    };
    flow(&name, base_flow(symbols, book_depth), commands)
}

/// Mostly new orders and cancels: 40% GTC, 5% IOC, 45% cancel, 10% move.
pub fn cancel_heavy(commands: usize) -> Workload {
    let config = FlowConfig {
        mix: Mix {
            gtc: 400_000,
            ioc: 50_000,
            cancel: 450_000,
            amend: 100_000,
        },
        ..base_flow(1, 1000)
    };
    flow("cancel_heavy/1_symbol", config, commands)
}

/// Resting orders per book in the sweep-heavy stream: thin, so a sweep crosses many levels.
const SWEEP_DEPTH: usize = 200;
/// Fewest and most price levels one sweep takes whole.
const SWEEP_LEVELS: (u64, u64) = (5, 20);

/// Market orders that walk many levels. The book (one symbol, 200 resting orders over about
/// 100 ticks a side) is refilled with passive GTC orders near the mid while it holds fewer
/// than 200 orders; once full, a market order takes the best 5–20 levels of one side whole
/// (their total quantity; never the last level), on the side that moves the price back
/// towards where it started, and the refilling starts again.
pub fn sweep_heavy(commands: usize) -> Workload {
    let started = Instant::now();
    let config = base_flow(1, SWEEP_DEPTH);
    let mut generator = FlowGenerator::new(config);
    let setup = generator.setup();
    let mut engine = Engine::new(config.engine_config()).expect("the flow's config is valid");
    let mut events: Vec<Event> = Vec::with_capacity(1 << 12);
    for cmd in &setup {
        events.clear();
        engine.apply(cmd, &mut events);
    }
    let symbol = engine.symbols().next().expect("the setup lists a symbol");
    let tick = symbol.tick.0;
    let mut rng = SplitMix64(config.seed);
    let mut ts = setup.last().map_or(0, |cmd| cmd.ts.0);
    let mut stream = Vec::with_capacity(commands);
    let mut stats = FlowStats::default();
    for num in 0..commands as u64 {
        let resting: u32 = [Side::Buy, Side::Sell]
            .into_iter()
            .flat_map(|side| engine.depth(symbol.id, side))
            .map(|level| level.orders)
            .sum();
        let (bid, ask) = best(&engine, symbol.id, tick, config.start_price);
        // A sweep pushes the price back towards where it started (a buy takes asks and lifts
        // it), so the stream stays around one price instead of wandering off; it leaves at
        // least one level, so there is always a book to refill around.
        let sweep_side = if bid + ask < 2 * config.start_price {
            Side::Buy
        } else {
            Side::Sell
        };
        let levels = (SWEEP_LEVELS.0 + rng.below(SWEEP_LEVELS.1 - SWEEP_LEVELS.0 + 1)).min(
            engine
                .depth(symbol.id, sweep_side.opposite())
                .count()
                .saturating_sub(1) as u64,
        );
        let order = if resting as usize >= SWEEP_DEPTH && levels > 0 {
            let qty: i64 = engine
                .depth(symbol.id, sweep_side.opposite())
                .take(levels as usize)
                .map(|level| level.qty.0)
                .sum();
            NewOrder {
                ord_type: OrdType::Market,
                price: None,
                qty: Qty(qty),
                tif: Tif::Ioc,
                ..passive(&mut rng, &config, num, sweep_side, 0)
            }
        } else {
            let side = if rng.coin() { Side::Buy } else { Side::Sell };
            let offset = rng
                .below(config.price_range as u64)
                .min(rng.below(config.price_range as u64)) as i64;
            let price = match side {
                Side::Buy => ((bid + ask) / 2 - offset).max(1),
                Side::Sell => (bid + ask + 1) / 2 + offset,
            };
            passive(&mut rng, &config, num, side, price * tick)
        };
        ts += config.ts_step;
        let cmd = Command::new(ts, CommandKind::New(order));
        events.clear();
        engine.apply(&cmd, &mut events);
        stats.record(&cmd, &events);
        stream.push(cmd);
    }
    let sweeps = stream
        .iter()
        .filter(|cmd| matches!(&cmd.kind, CommandKind::New(o) if o.ord_type == OrdType::Market))
        .count();
    Workload {
        name: "sweep_heavy/1_symbol".to_string(),
        description: format!(
            "1 symbol, {SWEEP_DEPTH} resting orders refilled by passive GTC orders; {sweeps} \
             market orders each taking the best {}-{} levels whole; generated {stats}; in {:.1?}",
            SWEEP_LEVELS.0,
            SWEEP_LEVELS.1,
            started.elapsed()
        ),
        engine_config: config.engine_config(),
        setup,
        stream,
    }
}

/// The best bid and ask of a book in ticks, an empty side standing one tick from the other
/// (or from `start` when both are empty).
fn best(engine: &Engine, symbol: SymbolId, tick: i64, start: i64) -> (i64, i64) {
    let top = |side| {
        engine
            .depth(symbol, side)
            .next()
            .map(|level| level.price.0 / tick)
    };
    match (top(Side::Buy), top(Side::Sell)) {
        (Some(bid), Some(ask)) => (bid, ask),
        (Some(bid), None) => (bid, bid + 1),
        (None, Some(ask)) => (ask - 1, ask),
        (None, None) => (start, start + 1),
    }
}

/// A passive GTC limit order of a random account and quantity; its id `w<num>` never clashes
/// with the setup's `o<num>`.
fn passive(
    rng: &mut SplitMix64,
    config: &FlowConfig,
    num: u64,
    side: Side,
    price: i64,
) -> NewOrder {
    NewOrder {
        account: AccountId(1 + rng.below(u64::from(config.accounts))),
        order_id: OrderId::new(&format!("w{num}")).expect("a short ASCII id"),
        symbol: engine::Symbol::new(&FlowConfig::symbol_name(0)).expect("a short ASCII name"),
        side,
        ord_type: OrdType::Limit,
        price: Some(Price(price)),
        qty: Qty((1 + rng.below(config.max_qty)) as i64 * config.lot.0),
        tif: Tif::Gtc,
        post_only: false,
        stp: Stp::CancelTaker,
        session: 0,
    }
}

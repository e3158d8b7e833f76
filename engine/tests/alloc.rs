//! The steady state allocates nothing: a counting global allocator watches `Engine::apply`
//! over a mixed stream (limit, market, IOC, FOK, post-only, STP, cancels, moves, quantity
//! amends, mass cancels) long enough that the retired-id ring is full, so every finished order
//! also forgets the oldest remembered id. Commands are built before counting starts.
//!
//! A second phase proves the same for the runner path (input ring → matcher thread → output
//! ring). This file holds a single test so the harness's other threads stay idle while it
//! counts; the counter sees every thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use engine::ring::Pop;
use engine::runner::{Emitted, Runner, RunnerConfig, WaitStrategy, Waiter};
use engine::{
    AccountId, AddSymbol, AmendOrder, CancelOrder, Command, CommandKind, Engine, EngineConfig,
    Event, EventKind, MassCancel, NewOrder, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SYMBOLS: [&str; 3] = ["BTC-USD", "ETH-USD", "SOL-USD"];
const ACCOUNTS: u64 = 40;

fn stream(len: usize, seed: u64) -> Vec<Command> {
    let mut rng = Rng(seed);
    let mut commands = Vec::with_capacity(len + SYMBOLS.len());
    for (i, name) in SYMBOLS.iter().enumerate() {
        commands.push(Command::new(
            i as u64,
            CommandKind::AddSymbol(AddSymbol {
                symbol: Symbol::new(name).unwrap(),
                tick: Price(1_000_000),
                lot: Qty(100_000),
            }),
        ));
    }
    let mut sent: Vec<(AccountId, OrderId, Symbol)> = Vec::new();
    for n in 0..len {
        let ts = 10 + n as u64;
        let symbol = Symbol::new(SYMBOLS[rng.below(3) as usize]).unwrap();
        let account = AccountId(1 + rng.below(ACCOUNTS));
        let price = Price((10_000 + rng.below(40) as i64 - 20) * 1_000_000);
        let qty = Qty((1 + rng.below(20) as i64) * 100_000);
        let roll = rng.below(100);
        let kind = if roll < 30 || sent.is_empty() {
            let order_id = OrderId::new(&format!("o{n}")).unwrap();
            sent.push((account, order_id, symbol));
            let (ord_type, tif) = match rng.below(10) {
                0 => (OrdType::Market, Tif::Ioc),
                1 => (OrdType::Limit, Tif::Ioc),
                2 => (OrdType::Limit, Tif::Fok),
                _ => (OrdType::Limit, Tif::Gtc),
            };
            CommandKind::New(NewOrder {
                account,
                order_id,
                symbol,
                side: if rng.below(2) == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                },
                ord_type,
                price: Some(price),
                qty,
                tif,
                post_only: tif == Tif::Gtc && rng.below(10) == 0,
                stp: [
                    Stp::None,
                    Stp::CancelTaker,
                    Stp::CancelMaker,
                    Stp::CancelBoth,
                ][rng.below(4) as usize],
            })
        } else {
            let (account, order_id, symbol) =
                sent[sent.len() - 1 - rng.below(sent.len().min(60) as u64) as usize];
            match roll {
                30..=44 => CommandKind::Cancel(CancelOrder {
                    account,
                    symbol,
                    order_id,
                }),
                45..=98 => CommandKind::Amend(AmendOrder {
                    account,
                    symbol,
                    order_id,
                    price: (rng.below(4) != 0).then_some(price),
                    qty: (rng.below(3) == 0).then_some(qty),
                }),
                _ => CommandKind::MassCancel(MassCancel {
                    account,
                    symbol: (rng.below(2) == 0).then_some(symbol),
                }),
            }
        };
        commands.push(Command::new(ts, kind));
    }
    commands
}

/// Phase 1: `Engine::apply` on the calling thread.
fn bare_engine_allocates_nothing() {
    let config = EngineConfig {
        retired_ids_max: 4096,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config).unwrap();
    let commands = stream(400_000, 7);
    let (warm_up, measured) = commands.split_at(100_000);
    // A sink big enough for any one command of this stream (a mass cancel of every order).
    let mut events: Vec<Event> = Vec::with_capacity(1 << 16);
    for cmd in warm_up {
        events.clear();
        engine.apply(cmd, &mut events);
    }
    // The retired-id ring is full: from here on every finished order forgets the oldest id.
    assert_eq!(engine.stats().retired_ids, config.retired_ids_max);

    let mut tally = [0u64; 6];
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for cmd in measured {
        events.clear();
        engine.apply(cmd, &mut events);
        for event in &events {
            let slot = match event.kind {
                EventKind::Accepted { .. } => 0,
                EventKind::Trade { .. } => 1,
                EventKind::Cancelled { .. } => 2,
                EventKind::Amended { .. } => 3,
                EventKind::Rejected { .. } => 4,
                EventKind::SymbolRejected { .. } => 5,
            };
            tally[slot] += 1;
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    engine.check_invariants().unwrap();
    // The stream really exercised the paths it claims to.
    let [accepted, trades, cancelled, amended, rejected, _] = tally;
    assert!(accepted > 50_000 && trades > 20_000, "{tally:?}");
    assert!(
        cancelled > 20_000 && amended > 20_000 && rejected > 1_000,
        "{tally:?}"
    );
    println!(
        "{} commands, events {tally:?} (accepted, trades, cancelled, amended, rejected): \
         {allocations} allocations",
        measured.len()
    );
    assert_eq!(
        allocations, 0,
        "Engine::apply allocated in the steady state"
    );
}

/// Phase 2: the runner path: a feeder thread pushes commands into the input ring, the matcher
/// thread applies them and stages events into the output ring, this thread drains it. Every
/// thread is started, and the engine warmed up, before counting begins.
fn runner_path_allocates_nothing() {
    let config = EngineConfig {
        retired_ids_max: 4096,
        ..EngineConfig::default()
    };
    let commands = stream(400_000, 11);
    let total = commands.len();
    let engine = Engine::new(config).unwrap();
    let wait = WaitStrategy::SpinThenYield { spins: 100 };
    let runner_config = RunnerConfig {
        batch_max: 64,
        wait,
        core: None,
    };
    let (mut tx, mut rx, runner) =
        Runner::spawn::<1024, 4096>(engine, runner_config, 0, ()).unwrap();
    let fed = Arc::new(AtomicU64::new(0));
    let fed_by_feeder = fed.clone();
    let feeder = std::thread::spawn(move || {
        let mut waiter = Waiter::new(wait);
        for cmd in commands {
            let mut cmd = cmd;
            while let Err(back) = tx.try_push(cmd) {
                cmd = back;
                waiter.wait();
            }
            waiter.reset();
            fed_by_feeder.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut waiter = Waiter::new(wait);
    let mut events = 0u64;
    let mut counted_events = 0u64;
    loop {
        // Count from the 100,000th command fed until the 350,000th.
        let fed_now = fed.load(Ordering::Relaxed);
        let counting = (100_000..350_000).contains(&fed_now);
        if counting != COUNTING.load(Ordering::Relaxed) {
            COUNTING.store(counting, Ordering::SeqCst);
        }
        match rx.pop() {
            Pop::Item(Emitted::Applied { .. }) => waiter.reset(),
            Pop::Item(Emitted::Event(_)) => {
                events += 1;
                counted_events += u64::from(counting);
                waiter.reset();
            }
            Pop::Empty => waiter.wait(),
            Pop::Closed => break,
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    feeder.join().unwrap();
    let (engine, stats) = runner.join().unwrap();
    engine.check_invariants().unwrap();
    assert_eq!(stats.commands, total as u64);
    assert_eq!(stats.events, events);
    assert!(
        counted_events > 100_000,
        "counted over {counted_events} events"
    );
    println!(
        "runner: {} commands, {events} events ({counted_events} while counting), \
         {} output-full waits: {allocations} allocations",
        stats.commands, stats.output_full_waits
    );
    assert_eq!(
        allocations, 0,
        "the runner path allocated in the steady state"
    );
}

#[test]
fn steady_state_allocates_nothing() {
    bare_engine_allocates_nothing();
    ALLOCATIONS.store(0, Ordering::SeqCst);
    runner_path_allocates_nothing();
}

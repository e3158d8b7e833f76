//! The steady state allocates nothing: a counting global allocator watches `Engine::apply`
//! over a mixed stream (limit, market, IOC, FOK, post-only, STP, sessions, cancels, moves,
//! amends of the total, replaces to new ids, mass cancels by symbol and session, dead-man's
//! switches armed, refreshed, disarmed and firing, `clock`, trading status and kill switches
//! on and off) with a dedup window short enough that finished orders leave it all through the
//! measured phase. Commands are built before counting starts.
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
    AccountId, AddSymbol, AmendOrder, CancelAfter, CancelOrder, CancelReason, Command, CommandKind,
    Engine, EngineConfig, Event, EventKind, KillSwitch, MassCancel, NewOrder, OrdType, OrderId,
    Price, Qty, SetTradingStatus, Side, Stp, Symbol, Tif, TradingStatus,
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
/// Sessions per account: what mass cancels and dead-man's switches select on.
const SESSIONS: u64 = 4;
/// The dedup window, in ns of log time; the stream's ts steps by 1 ns a command, so finished
/// orders leave the window about 2,000 commands after they finish, all through the measured
/// phase.
const WINDOW_NS: u64 = 2_000;

/// Room for every order finished inside the window plus the live ones, so the stream is not
/// mostly `capacity` rejects.
fn config() -> EngineConfig {
    EngineConfig {
        retired_ids_max: 1 << 16,
        dedup_window_ns: WINDOW_NS,
        ..EngineConfig::default()
    }
}

fn new_order(
    rng: &mut Rng,
    n: usize,
    account: AccountId,
    symbol: Symbol,
    price: Price,
    qty: Qty,
) -> NewOrder {
    let (ord_type, tif) = match rng.below(10) {
        0 => (OrdType::Market, Tif::Ioc),
        1 => (OrdType::Limit, Tif::Ioc),
        2 => (OrdType::Limit, Tif::Fok),
        _ => (OrdType::Limit, Tif::Gtc),
    };
    NewOrder {
        account,
        order_id: OrderId::new(&format!("o{n}")).unwrap(),
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
        session: rng.below(SESSIONS),
    }
}

/// One command on an order sent before (`sent` grows by the new id of a replace).
fn on_sent(
    rng: &mut Rng,
    n: usize,
    roll: u64,
    sent: &mut Vec<(AccountId, OrderId, Symbol)>,
    price: Price,
    qty: Qty,
) -> CommandKind {
    let (account, order_id, symbol) =
        sent[sent.len() - 1 - rng.below(sent.len().min(60) as u64) as usize];
    match roll {
        30..=41 => CommandKind::Cancel(CancelOrder {
            account,
            symbol,
            order_id,
        }),
        42..=87 => {
            // A quarter are replaces (FIX cancel/replace): the order goes by a new id.
            let new_order_id = (rng.below(4) == 0).then(|| OrderId::new(&format!("r{n}")).unwrap());
            if let Some(new_id) = new_order_id {
                sent.push((account, new_id, symbol));
            }
            CommandKind::Amend(AmendOrder {
                account,
                symbol,
                order_id,
                price: (rng.below(4) != 0).then_some(price),
                qty: (rng.below(3) == 0).then_some(qty),
                new_order_id,
            })
        }
        88..=92 => CommandKind::CancelAfter(CancelAfter {
            account,
            session: rng.below(SESSIONS),
            timeout_ns: if rng.below(5) == 0 {
                0
            } else {
                1 + rng.below(500)
            },
        }),
        93..=95 => CommandKind::Clock,
        96..=97 => CommandKind::MassCancel(MassCancel {
            account,
            symbol: (rng.below(2) == 0).then_some(symbol),
            session: (rng.below(2) == 0).then(|| rng.below(SESSIONS)),
        }),
        98 => CommandKind::TradingStatus(SetTradingStatus {
            symbol: (rng.below(2) == 0).then_some(symbol),
            status: if rng.below(8) == 0 {
                TradingStatus::CancelOnly
            } else {
                TradingStatus::Open
            },
        }),
        _ => CommandKind::KillSwitch(KillSwitch {
            account,
            // Mostly off, so a few accounts at a time are disabled.
            on: rng.below(8) == 0,
        }),
    }
}

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
            let order = new_order(&mut rng, n, account, symbol, price, qty);
            sent.push((account, order.order_id, symbol));
            CommandKind::New(order)
        } else {
            on_sent(&mut rng, n, roll, &mut sent, price, qty)
        };
        commands.push(Command::new(ts, kind));
    }
    commands
}

/// How many orders `event` finishes: a cancel, a trade that leaves the maker or the taker with
/// nothing open, an amend that gives up an id (the old id is `replaced`) or leaves nothing open.
fn finishes(event: &Event) -> u64 {
    match event.kind {
        EventKind::Cancelled { .. } => 1,
        EventKind::Trade {
            maker_leaves,
            taker_leaves,
            ..
        } => u64::from(maker_leaves.0 == 0) + u64::from(taker_leaves.0 == 0),
        EventKind::Amended {
            leaves,
            new_order_id,
            ..
        } => u64::from(new_order_id.is_some()) + u64::from(leaves.0 == 0),
        _ => 0,
    }
}

/// Event counts by kind: accepted, trades, cancelled, amended, rejected, cancelled `expired`,
/// `cancel_after`, `kill_switch`, others.
fn tally_slot(event: &Event) -> usize {
    match event.kind {
        EventKind::Accepted { .. } => 0,
        EventKind::Trade { .. } => 1,
        EventKind::Cancelled {
            reason: CancelReason::Expired,
            ..
        } => 5,
        EventKind::Cancelled { .. } => 2,
        EventKind::Amended { .. } => 3,
        EventKind::Rejected { .. } => 4,
        EventKind::CancelAfter { .. } => 6,
        EventKind::KillSwitch { .. } => 7,
        _ => 8,
    }
}

/// Phase 1: `Engine::apply` on the calling thread.
fn bare_engine_allocates_nothing() {
    let mut engine = Engine::new(config()).unwrap();
    let commands = stream(400_000, 7);
    let (warm_up, measured) = commands.split_at(100_000);
    // A sink big enough for any one command of this stream (a mass cancel of every order).
    let mut events: Vec<Event> = Vec::with_capacity(1 << 16);
    for cmd in warm_up {
        events.clear();
        engine.apply(cmd, &mut events);
    }
    let finished_before = u64::from(engine.stats().finished);

    let mut tally = [0u64; 9];
    let mut finished = 0u64;
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for cmd in measured {
        events.clear();
        engine.apply(cmd, &mut events);
        for event in &events {
            tally[tally_slot(event)] += 1;
            finished += finishes(event);
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    engine.check_invariants().unwrap();
    // The stream really exercised the paths it claims to.
    let [accepted, trades, cancelled, amended, rejected, expired, armed, kills, _] = tally;
    assert!(accepted > 50_000 && trades > 20_000, "{tally:?}");
    assert!(
        cancelled > 20_000 && amended > 15_000 && rejected > 1_000,
        "{tally:?}"
    );
    assert!(
        expired > 1_000 && armed > 10_000 && kills > 1_000,
        "{tally:?}"
    );
    // Finished orders left their window all along: of those remembered before and those that
    // finished since, only the ones inside the window at the end are still remembered.
    let remembered = u64::from(engine.stats().finished);
    let forgotten = finished_before + finished - remembered;
    assert!(
        forgotten > 50_000 && forgotten > finished / 2,
        "{forgotten} of {finished_before} + {finished} forgotten"
    );
    let now = engine.stats().clock.0;
    for order in engine.orders() {
        if let Some(at) = order.finished_at {
            assert!(
                at.0 + WINDOW_NS > now,
                "{order:?} outlived its window at {now}"
            );
        }
    }
    println!(
        "{} commands, events {tally:?} (accepted, trades, cancelled, amended, rejected, \
         expired, cancel_after, kill_switch, other), {finished} finished, {forgotten} \
         forgotten: {allocations} allocations",
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
    let commands = stream(400_000, 11);
    let total = commands.len();
    let engine = Engine::new(config()).unwrap();
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

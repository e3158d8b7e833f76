//! The engine runner: input ring → matcher thread → output ring.
//!
//! One thread owns the [`Engine`]. It takes commands from the input ring in batches, applies
//! each, and stages its events into the output ring followed by an [`Emitted::Applied`] marker
//! (the command's log position and the command itself, so a consumer knows where each
//! command's events end), publishing once per batch. After each batch it calls the observer
//! with the engine and the next log position: that is where a node takes snapshots and state
//! hashes, between commands, without stopping the pipeline for longer than the copy. When the output
//! ring is full the matcher publishes what it has and waits for room (backpressure: nothing is
//! dropped). When the input ring is closed, the matcher applies every command still in it,
//! publishes the last events, closes the output ring and hands the engine back.
//!
//! Waiting (for input, or for output room) follows a [`WaitStrategy`]. Nothing on this path
//! allocates, takes a lock or does I/O.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::ring::{ring, Consumer, Pop, Producer};
use crate::sync::{spin_loop, yield_now};

/// How a thread waits for its ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WaitStrategy {
    /// Spin on the CPU: lowest latency, one core always busy.
    BusySpin,
    /// Spin `spins` times, then yield the CPU between checks.
    SpinThenYield { spins: u32 },
    /// Spin, yield, then sleep `park_us` microseconds between checks: low CPU when idle, at
    /// the price of up to `park_us` of added latency after a quiet spell.
    Park {
        spins: u32,
        yields: u32,
        park_us: u32,
    },
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::SpinThenYield { spins: 1000 }
    }
}

/// One thread's progress through a [`WaitStrategy`] while it waits.
#[derive(Debug)]
pub struct Waiter {
    strategy: WaitStrategy,
    rounds: u32,
}

impl Waiter {
    pub fn new(strategy: WaitStrategy) -> Waiter {
        Waiter {
            strategy,
            rounds: 0,
        }
    }

    /// Waits a little, longer the more rounds in a row came back empty.
    #[inline]
    pub fn wait(&mut self) {
        self.rounds = self.rounds.saturating_add(1);
        match self.strategy {
            WaitStrategy::BusySpin => spin_loop(),
            WaitStrategy::SpinThenYield { spins } => {
                if self.rounds <= spins {
                    spin_loop()
                } else {
                    yield_now()
                }
            }
            WaitStrategy::Park {
                spins,
                yields,
                park_us,
            } => {
                if self.rounds <= spins {
                    spin_loop()
                } else if self.rounds <= spins.saturating_add(yields) {
                    yield_now()
                } else {
                    std::thread::park_timeout(Duration::from_micros(u64::from(park_us)))
                }
            }
        }
    }

    /// Progress was made: the next wait starts from the beginning.
    #[inline]
    pub fn reset(&mut self) {
        self.rounds = 0;
    }
}

/// How the runner runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerConfig {
    /// Most commands taken from the input ring per batch (events are published per batch).
    pub batch_max: u32,
    /// How the matcher waits for commands and for room for events.
    pub wait: WaitStrategy,
    /// Pin the matcher thread to this CPU core.
    pub core: Option<usize>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_max: 64,
            wait: WaitStrategy::default(),
            core: None,
        }
    }
}

/// What the matcher did, returned when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunnerStats {
    pub commands: u64,
    pub events: u64,
    pub batches: u64,
    /// Times the matcher found the output ring full and waited.
    pub output_full_waits: u64,
    /// Events and markers that could not be delivered because the output consumer was dropped.
    pub events_abandoned: u64,
    /// Whether the requested core pinning took effect.
    pub pinned: bool,
}

/// The running matcher thread.
pub struct Runner {
    thread: JoinHandle<(Engine, RunnerStats)>,
}

impl Runner {
    /// Starts a matcher thread owning `engine`, whose first command is at log position
    /// `first_position`. Returns the command producer (close or drop it to stop the runner once
    /// it has applied everything), the output consumer, and the runner.
    #[allow(clippy::type_complexity)]
    pub fn spawn<const IN: usize, const OUT: usize>(
        engine: Engine,
        config: RunnerConfig,
        first_position: u64,
        observer: impl Observer,
    ) -> io::Result<(Producer<Command, IN>, Consumer<Emitted, OUT>, Runner)> {
        let (commands_tx, commands_rx) = ring::<Command, IN>();
        let (events_tx, events_rx) = ring::<Emitted, OUT>();
        let thread = std::thread::Builder::new()
            .name("matcher".into())
            .spawn(move || {
                run(
                    engine,
                    config,
                    (first_position, observer),
                    commands_rx,
                    events_tx,
                )
            })?;
        Ok((commands_tx, events_rx, Runner { thread }))
    }

    /// Waits for the matcher to finish (after the command producer is closed) and returns the
    /// engine with what it did.
    pub fn join(self) -> std::thread::Result<(Engine, RunnerStats)> {
        self.thread.join()
    }
}

/// What the matcher puts in the output ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// One event, in engine order.
    Event(Event),
    /// The command at `position` is fully applied: every event it caused came before this.
    Applied { position: u64, command: Command },
}

/// Called by the matcher thread after each command with the engine and the log position of
/// the next command. It runs on the matcher thread, so it must be quick in the common case (a
/// comparison); when it does work (encoding a snapshot, hashing the state), it hands the
/// result to another thread rather than writing files.
pub trait Observer: Send + 'static {
    fn after_command(&mut self, engine: &Engine, next_position: u64);
}

/// No observer.
impl Observer for () {
    #[inline]
    fn after_command(&mut self, _engine: &Engine, _next_position: u64) {}
}

/// Stages events into the output ring, waiting for room when it is full.
struct RingSink<'a, const OUT: usize> {
    out: &'a mut Producer<Emitted, OUT>,
    waiter: Waiter,
    stats: &'a mut RunnerStats,
}

impl<const OUT: usize> EventSink for RingSink<'_, OUT> {
    #[inline]
    fn push(&mut self, event: Event) {
        self.stats.events += 1;
        self.emit(Emitted::Event(event));
    }
}

impl<const OUT: usize> RingSink<'_, OUT> {
    #[inline]
    fn emit(&mut self, item: Emitted) {
        let mut event = item;
        loop {
            match self.out.stage(event) {
                Ok(()) => {
                    self.waiter.reset();
                    return;
                }
                Err(back) => {
                    if self.out.is_abandoned() {
                        self.stats.events_abandoned += 1;
                        return;
                    }
                    // Let the consumer see what is staged, then wait for it to make room.
                    self.out.publish();
                    self.stats.output_full_waits += 1;
                    self.waiter.wait();
                    event = back;
                }
            }
        }
    }
}

fn pin(core: Option<usize>) -> bool {
    core.is_some_and(|id| core_affinity::set_for_current(core_affinity::CoreId { id }))
}

/// The matcher loop.
fn run<const IN: usize, const OUT: usize>(
    mut engine: Engine,
    config: RunnerConfig,
    (mut position, mut observer): (u64, impl Observer),
    mut commands: Consumer<Command, IN>,
    mut events: Producer<Emitted, OUT>,
) -> (Engine, RunnerStats) {
    let mut stats = RunnerStats {
        pinned: pin(config.core),
        ..RunnerStats::default()
    };
    let mut idle = Waiter::new(config.wait);
    let batch_max = config.batch_max.max(1) as usize;
    loop {
        let mut sink = RingSink {
            out: &mut events,
            waiter: Waiter::new(config.wait),
            stats: &mut stats,
        };
        let taken = commands.pop_batch(batch_max, |command| {
            engine.apply(&command, &mut sink);
            sink.emit(Emitted::Applied { position, command });
            position += 1;
            observer.after_command(&engine, position);
        });
        if taken > 0 {
            events.publish();
            stats.commands += taken as u64;
            stats.batches += 1;
            idle.reset();
            continue;
        }
        match commands.empty_or_closed() {
            Pop::Closed => break,
            Pop::Empty | Pop::Item(_) => idle.wait(),
        }
    }
    // Dropping `events` publishes the last batch and closes the output ring.
    drop(events);
    (engine, stats)
}

/// Drains `output` in batches of at most `batch_max` items, handing each batch to `each` in
/// order and waiting per `wait` while it is empty, until its producer has closed it and every
/// item was read. A node's pump drains a matcher's output this way.
pub fn drain<T: Copy + Send, const N: usize>(
    mut output: Consumer<T, N>,
    batch_max: usize,
    wait: WaitStrategy,
    mut each: impl FnMut(&[T]),
) {
    let mut waiter = Waiter::new(wait);
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        if output.pop_batch(batch_max, |item| batch.push(item)) > 0 {
            each(&batch);
            batch.clear();
            waiter.reset();
            continue;
        }
        match output.empty_or_closed() {
            Pop::Closed => return,
            Pop::Empty | Pop::Item(_) => waiter.wait(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::command::{AddSymbol, CommandKind, NewOrder};
    use crate::config::EngineConfig;
    use crate::event::EventKind;
    use crate::types::{AccountId, OrdType, OrderId, Price, Qty, Side, Stp, Symbol, Tif};

    fn commands(count: u64) -> Vec<Command> {
        let symbol = Symbol::new("BTC-USD").unwrap();
        let mut out = vec![Command::new(
            0,
            CommandKind::AddSymbol(AddSymbol {
                symbol,
                tick: Price(1),
                lot: Qty(1),
            }),
        )];
        out.extend((0..count).map(|n| {
            Command::new(
                n + 1,
                CommandKind::New(NewOrder {
                    account: AccountId(n % 7),
                    order_id: OrderId::new(&format!("o{n}")).unwrap(),
                    symbol,
                    side: if n % 2 == 0 { Side::Buy } else { Side::Sell },
                    ord_type: OrdType::Limit,
                    price: Some(Price(100 + (n % 5) as i64)),
                    qty: Qty(1 + (n % 3) as i64),
                    tif: Tif::Gtc,
                    post_only: false,
                    stp: Stp::None,
                    session: 0,
                }),
            )
        }));
        out
    }

    /// The runner produces exactly what the bare engine produces, through rings far smaller
    /// than the stream (so both backpressure and wrap-around happen), for every strategy.
    #[test]
    fn the_runner_emits_what_the_bare_engine_emits() {
        let stream = commands(20_000);
        let mut bare = Engine::new(EngineConfig::default()).unwrap();
        let mut expected = Vec::new();
        for cmd in &stream {
            bare.apply(cmd, &mut expected);
        }
        let strategies = [
            WaitStrategy::BusySpin,
            WaitStrategy::SpinThenYield { spins: 10 },
            WaitStrategy::Park {
                spins: 10,
                yields: 10,
                park_us: 20,
            },
        ];
        for wait in strategies {
            let config = RunnerConfig {
                batch_max: 16,
                wait,
                core: None,
            };
            let engine = Engine::new(EngineConfig::default()).unwrap();
            let (mut tx, mut rx, runner) = Runner::spawn::<64, 32>(engine, config, 10, ()).unwrap();
            let feed = stream.clone();
            let feeder = std::thread::spawn(move || {
                let mut waiter = Waiter::new(wait);
                for cmd in feed {
                    let mut cmd = cmd;
                    while let Err(back) = tx.try_push(cmd) {
                        cmd = back;
                        waiter.wait();
                    }
                    waiter.reset();
                }
            });
            let mut got = Vec::with_capacity(expected.len());
            let mut next_position = 10;
            let mut waiter = Waiter::new(wait);
            loop {
                match rx.pop() {
                    Pop::Item(Emitted::Event(event)) => {
                        got.push(event);
                        waiter.reset();
                    }
                    Pop::Item(Emitted::Applied { position, command }) => {
                        assert_eq!(position, next_position);
                        assert_eq!(command, stream[(position - 10) as usize]);
                        next_position += 1;
                        waiter.reset();
                    }
                    Pop::Empty => waiter.wait(),
                    Pop::Closed => break,
                }
            }
            feeder.join().unwrap();
            let (engine, stats) = runner.join().unwrap();
            assert_eq!(got, expected, "{wait:?}");
            assert_eq!(next_position, 10 + stream.len() as u64);
            assert_eq!(engine.state_hash(), bare.state_hash());
            assert_eq!(stats.commands, stream.len() as u64);
            assert_eq!(stats.events, expected.len() as u64);
            assert_eq!(stats.events_abandoned, 0);
            assert!(got
                .iter()
                .any(|e| matches!(e.kind, EventKind::Trade { .. })));
        }
    }

    #[test]
    fn a_runner_whose_event_reader_left_still_stops_cleanly() {
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let (mut tx, rx, runner) =
            Runner::spawn::<1024, 2>(engine, RunnerConfig::default(), 0, ()).unwrap();
        drop(rx);
        for cmd in commands(100) {
            tx.try_push(cmd).unwrap();
        }
        drop(tx);
        let (engine, stats) = runner.join().unwrap();
        assert_eq!(stats.commands, 101);
        assert!(stats.events_abandoned > 0);
        assert_eq!(engine.stats().clock, crate::types::TimestampNs(100));
    }
}

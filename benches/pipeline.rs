//! The pipeline's hand-offs, measured in one run beside the usual alternatives:
//!
//! 1. ring hand-off latency: ping-pong between two threads (one-way latency = round trip / 2),
//!    p50/p99/p99.9 with HdrHistogram, for `engine::ring`, `crossbeam::queue::ArrayQueue` and
//!    `std::sync::mpsc::sync_channel`;
//! 2. ring throughput: one producer thread, one consumer thread, `u64` items, items/s; ours
//!    both item by item and batched (stage 64, publish once; pop up to 64 at once);
//! 3. the runner end to end: the exchange-core mix through input ring → matcher thread →
//!    output ring, commands/s, beside the bare engine applying the same stream on one thread.
//!
//! Every thread busy-spins; the machine has 2 cores, so each measurement uses exactly two
//! threads (the runner's feeder and event reader are one thread). Run with
//! `cargo bench --bench pipeline` (about a minute).

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use engine::ring::{ring, Pop};
use engine::runner::{Emitted, Runner, RunnerConfig, WaitStrategy};
use engine::{Engine, Event};
use flow::{FlowConfig, FlowGenerator};
use hdrhistogram::Histogram;

const PING_PONGS: usize = 200_000;
const ITEMS: u64 = 20_000_000;
const RUNNER_COMMANDS: usize = 2_000_000;

/// Something that carries `u64`s from one thread to another, both ways built at once.
trait Channel: Send + 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    fn pair() -> (Self::Tx, Self::Rx);
    fn send(tx: &mut Self::Tx, item: u64);
    fn recv(rx: &mut Self::Rx) -> u64;
}

struct OurRing;
impl Channel for OurRing {
    type Tx = engine::ring::Producer<u64, 1024>;
    type Rx = engine::ring::Consumer<u64, 1024>;
    fn pair() -> (Self::Tx, Self::Rx) {
        ring()
    }
    fn send(tx: &mut Self::Tx, item: u64) {
        while tx.try_push(item).is_err() {
            std::hint::spin_loop();
        }
    }
    fn recv(rx: &mut Self::Rx) -> u64 {
        loop {
            if let Pop::Item(item) = rx.pop() {
                return item;
            }
            std::hint::spin_loop();
        }
    }
}

struct CrossbeamArrayQueue;
impl Channel for CrossbeamArrayQueue {
    type Tx = Arc<ArrayQueue<u64>>;
    type Rx = Arc<ArrayQueue<u64>>;
    fn pair() -> (Self::Tx, Self::Rx) {
        let queue = Arc::new(ArrayQueue::new(1024));
        (queue.clone(), queue)
    }
    fn send(tx: &mut Self::Tx, item: u64) {
        while tx.push(item).is_err() {
            std::hint::spin_loop();
        }
    }
    fn recv(rx: &mut Self::Rx) -> u64 {
        loop {
            if let Some(item) = rx.pop() {
                return item;
            }
            std::hint::spin_loop();
        }
    }
}

struct StdMpsc;
impl Channel for StdMpsc {
    type Tx = mpsc::SyncSender<u64>;
    type Rx = mpsc::Receiver<u64>;
    fn pair() -> (Self::Tx, Self::Rx) {
        mpsc::sync_channel(1024)
    }
    fn send(tx: &mut Self::Tx, item: u64) {
        let mut item = item;
        loop {
            match tx.try_send(item) {
                Ok(()) => return,
                Err(mpsc::TrySendError::Full(back)) => item = back,
                Err(mpsc::TrySendError::Disconnected(_)) => panic!("receiver gone"),
            }
            std::hint::spin_loop();
        }
    }
    fn recv(rx: &mut Self::Rx) -> u64 {
        loop {
            match rx.try_recv() {
                Ok(item) => return item,
                Err(mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(mpsc::TryRecvError::Disconnected) => panic!("sender gone"),
            }
        }
    }
}

/// One-way hand-off latency in nanoseconds (round trip / 2).
fn ping_pong<C: Channel>() -> Histogram<u64> {
    let (mut ping_tx, mut ping_rx) = C::pair();
    let (mut pong_tx, mut pong_rx) = C::pair();
    let echo = thread::spawn(move || {
        for _ in 0..PING_PONGS {
            let item = C::recv(&mut ping_rx);
            C::send(&mut pong_tx, item);
        }
    });
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
    for n in 0..PING_PONGS as u64 {
        let start = Instant::now();
        C::send(&mut ping_tx, n);
        let back = C::recv(&mut pong_rx);
        let one_way = start.elapsed().as_nanos() as u64 / 2;
        assert_eq!(back, n);
        // The first tenth warms caches and wakes both cores up.
        if n >= PING_PONGS as u64 / 10 {
            histogram.record(one_way.max(1)).expect("in bounds");
        }
    }
    echo.join().expect("echo thread");
    histogram
}

/// Items per second from one producer thread to one consumer thread.
fn throughput<C: Channel>() -> f64 {
    let (mut tx, mut rx) = C::pair();
    let start = Instant::now();
    let producer = thread::spawn(move || {
        for n in 0..ITEMS {
            C::send(&mut tx, n);
        }
    });
    let mut sum = 0u64;
    for _ in 0..ITEMS {
        sum = sum.wrapping_add(C::recv(&mut rx));
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    ITEMS as f64 / elapsed.as_secs_f64()
}

/// Our ring with batching on both sides: the producer stages up to 64 items per publish, the
/// consumer takes up to 64 per acquire.
fn throughput_batched() -> f64 {
    let (mut tx, mut rx) = ring::<u64, 1024>();
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut n = 0;
        while n < ITEMS {
            let mut staged = 0;
            while staged < 64 && n < ITEMS && tx.stage(n).is_ok() {
                n += 1;
                staged += 1;
            }
            tx.publish();
            if staged == 0 {
                std::hint::spin_loop();
            }
        }
    });
    let (mut sum, mut received) = (0u64, 0u64);
    while received < ITEMS {
        let taken = rx.pop_batch(64, |item| sum = sum.wrapping_add(item));
        if taken == 0 {
            std::hint::spin_loop();
        }
        received += taken as u64;
    }
    let elapsed = start.elapsed();
    producer.join().expect("producer");
    assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
    ITEMS as f64 / elapsed.as_secs_f64()
}

fn flow() -> (FlowConfig, Vec<engine::Command>) {
    let config = FlowConfig {
        seed: 0x00c0_ffee,
        symbols: 1,
        accounts: 1000,
        book_depth: 1000,
        ..FlowConfig::default()
    };
    let mut generator = FlowGenerator::new(config);
    let mut commands = generator.setup();
    commands.extend(generator.generate(RUNNER_COMMANDS));
    (config, commands)
}

/// The bare engine: commands/s on this thread, events into a reserved vector.
fn bare_engine(config: &FlowConfig, commands: &[engine::Command]) -> (f64, engine::StateHash) {
    let mut engine = Engine::new(config.engine_config()).expect("config");
    let mut sink: Vec<Event> = Vec::with_capacity(1 << 12);
    let start = Instant::now();
    for cmd in commands {
        sink.clear();
        engine.apply(black_box(cmd), &mut sink);
    }
    let rate = commands.len() as f64 / start.elapsed().as_secs_f64();
    (rate, engine.state_hash())
}

/// The runner: this thread feeds commands and reads events; the matcher thread applies.
fn runner(config: &FlowConfig, commands: &[engine::Command]) -> (f64, engine::StateHash, u64) {
    let engine = Engine::new(config.engine_config()).expect("config");
    let runner_config = RunnerConfig {
        batch_max: 64,
        wait: WaitStrategy::BusySpin,
        core: None,
    };
    let (mut tx, mut rx, runner) =
        Runner::spawn::<4096, 8192>(engine, runner_config, 0, ()).expect("spawn the matcher");
    let start = Instant::now();
    let mut events = 0u64;
    let mut next = commands.iter();
    let mut pending = next.next();
    while pending.is_some() {
        // Feed a batch, then drain what the matcher produced.
        let mut staged = 0;
        while staged < 256 {
            match pending {
                Some(cmd) if tx.stage(*cmd).is_ok() => {
                    staged += 1;
                    pending = next.next();
                }
                _ => break,
            }
        }
        tx.publish();
        rx.pop_batch(usize::MAX, |item| {
            events += u64::from(matches!(item, Emitted::Event(_)));
            black_box(item);
        });
    }
    drop(tx);
    loop {
        let taken = rx.pop_batch(usize::MAX, |item| {
            events += u64::from(matches!(item, Emitted::Event(_)));
            black_box(item);
        });
        if taken == 0 && rx.empty_or_closed() == Pop::Closed {
            break;
        }
    }
    let elapsed = start.elapsed();
    let (engine, stats) = runner.join().expect("matcher thread");
    assert_eq!(stats.events, events);
    let rate = commands.len() as f64 / elapsed.as_secs_f64();
    (rate, engine.state_hash(), stats.output_full_waits)
}

type LatencyRow = (&'static str, fn() -> Histogram<u64>);
type ThroughputRow = (&'static str, fn() -> f64);

fn micros(histogram: &Histogram<u64>, quantile: f64) -> String {
    format!(
        "{:.3}",
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    )
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: keep that quick.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("pipeline bench: run with `cargo bench --bench pipeline`");
        return;
    }
    println!("ring hand-off latency, one way (ping-pong / 2), microseconds");
    println!("{:<28} {:>8} {:>8} {:>8}", "queue", "p50", "p99", "p99.9");
    let rows: [LatencyRow; 3] = [
        ("engine::ring (SPSC)", ping_pong::<OurRing>),
        ("crossbeam ArrayQueue", ping_pong::<CrossbeamArrayQueue>),
        ("std mpsc::sync_channel", ping_pong::<StdMpsc>),
    ];
    for (name, run) in rows {
        let h = run();
        println!(
            "{name:<28} {:>8} {:>8} {:>8}",
            micros(&h, 0.5),
            micros(&h, 0.99),
            micros(&h, 0.999)
        );
    }

    println!("\nring throughput, one producer and one consumer thread, u64 items");
    println!("{:<36} {:>14}", "queue", "M items/s");
    let rows: [ThroughputRow; 4] = [
        ("engine::ring, batched (64)", throughput_batched),
        ("engine::ring, item by item", throughput::<OurRing>),
        ("crossbeam ArrayQueue", throughput::<CrossbeamArrayQueue>),
        ("std mpsc::sync_channel", throughput::<StdMpsc>),
    ];
    for (name, run) in rows {
        println!("{name:<36} {:>14.1}", run() / 1e6);
    }

    println!("\nrunner end to end, exchange-core mix, 1 symbol ({RUNNER_COMMANDS} commands)");
    let (config, commands) = flow();
    let (bare, bare_hash) = bare_engine(&config, &commands);
    let (piped, piped_hash, full_waits) = runner(&config, &commands);
    assert_eq!(
        bare_hash, piped_hash,
        "the runner must reach the bare engine's state"
    );
    println!("{:<36} {:>14}", "path", "M commands/s");
    println!(
        "{:<36} {:>14.2}",
        "bare Engine::apply (one thread)",
        bare / 1e6
    );
    println!(
        "{:<36} {:>14.2}",
        "runner (rings + matcher thread)",
        piped / 1e6
    );
    println!(
        "runner / bare = {:.0}% (output ring full {full_waits} times)",
        100.0 * piped / bare
    );
}

//! loom models of the SPSC ring: every interleaving (up to the preemption bound) of a producer
//! and a consumer thread over the ordering-sensitive paths. Tiny on purpose.
//!
//! Run (CI does, from `.ci/run`):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p engine --release --test loom_ring`
#![cfg(loom)]

use engine::ring::{ring, Consumer, Pop, Producer};
use loom::thread;

/// Pushes `items`, retrying while the ring is full.
fn push_all<const N: usize>(tx: &mut Producer<u32, N>, items: &[u32]) {
    for &item in items {
        while tx.try_push(item).is_err() {
            thread::yield_now();
        }
    }
}

/// Pops until closed, checking that nothing is lost, duplicated or reordered.
fn drain<const N: usize>(rx: &mut Consumer<u32, N>, expected: &[u32]) {
    let mut got = Vec::new();
    loop {
        match rx.pop() {
            Pop::Item(item) => got.push(item),
            Pop::Empty => thread::yield_now(),
            Pop::Closed => break,
        }
    }
    assert_eq!(got, expected);
}

/// Push and pop across threads with wrap-around (3 items through 2 slots) and a full ring.
#[test]
fn push_pop_wraps_around_a_full_ring() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::<u32, 2>();
        let producer = thread::spawn(move || push_all(&mut tx, &[1, 2, 3]));
        drain(&mut rx, &[1, 2, 3]);
        producer.join().unwrap();
    });
}

/// Staged items become visible together at `publish`; a batch pop takes what is published.
#[test]
fn batch_publish_and_batch_consume() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::<u32, 4>();
        let producer = thread::spawn(move || {
            tx.stage(1).unwrap();
            tx.stage(2).unwrap();
            tx.publish();
            tx.stage(3).unwrap();
            // Dropping publishes the staged 3 and closes.
        });
        let mut got = Vec::new();
        loop {
            let taken = rx.pop_batch(4, |item| got.push(item));
            if taken == 0 {
                match rx.empty_or_closed() {
                    Pop::Closed => break,
                    _ => thread::yield_now(),
                }
            }
        }
        assert_eq!(got, [1, 2, 3]);
        producer.join().unwrap();
    });
}

/// The consumer never sees `Closed` before it has read every item pushed before the close.
#[test]
fn close_is_seen_only_after_the_last_item() {
    loom::model(|| {
        let (mut tx, mut rx) = ring::<u32, 2>();
        let producer = thread::spawn(move || {
            tx.try_push(7).unwrap();
            tx.close();
        });
        drain(&mut rx, &[7]);
        producer.join().unwrap();
    });
}

/// A dropped consumer is seen by the producer, which then stops waiting for room.
#[test]
fn the_producer_learns_that_the_consumer_left() {
    loom::model(|| {
        let (mut tx, rx) = ring::<u32, 2>();
        let consumer = thread::spawn(move || drop(rx));
        let mut pushed = 0;
        while !tx.is_abandoned() {
            if tx.try_push(pushed).is_ok() {
                pushed += 1;
            }
            thread::yield_now();
        }
        // Nobody read, so no push beyond the two slots succeeded.
        assert!(pushed <= 2);
        consumer.join().unwrap();
    });
}

//! A bounded single-producer single-consumer ring: the hand-off between the log reader, the
//! matcher and the gateways' egress. The only module of the engine with `unsafe`.
//!
//! - Capacity `N` is a power of two, checked at compile time; slots are allocated once, in
//!   [`ring`], and never again.
//! - Positions are ever-increasing `usize` counters (slot = position mod `N`); the consumer
//!   publishes `head` (next to read), the producer publishes `tail` (next to write), each in
//!   its own cache line. Each side caches the other's position and reloads it only when the
//!   ring looks full or empty.
//! - Batching: the producer can [`Producer::stage`] several items and [`Producer::publish`]
//!   them with one release store; the consumer takes a whole batch with one acquire load and
//!   one release store ([`Consumer::pop_batch`]).
//! - Items are `Copy` (commands and events are), so nothing in the ring ever needs dropping.
//! - Shutdown: dropping (or [`Producer::close`]-ing) the producer publishes what it staged and
//!   marks the ring closed; the consumer drains everything, then sees [`Pop::Closed`].
//!   Dropping the consumer tells the producer nobody will read ([`Producer::is_abandoned`]).
//!
//! Memory ordering, in one place: a slot is written by the producer before the release store
//! of `tail` that covers it, and read by the consumer after the acquire load of `tail` that
//! covers it; the consumer's reads of a slot happen before its release store of `head` past it,
//! which the producer acquires before writing that slot again. `closed` is stored with release
//! after the final `tail`, and loaded with acquire before the final `tail` is read. The loom
//! models in `engine/tests/loom_ring.rs` check these paths.

#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::{Arc, AtomicBool, AtomicUsize, Ordering, UnsafeCell};

struct Shared<T, const N: usize> {
    /// Next position the consumer reads; written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next position the producer writes (published part); written only by the producer.
    tail: CachePadded<AtomicUsize>,
    producer_closed: AtomicBool,
    consumer_closed: AtomicBool,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the ring moves `T` values from one thread to another, so `T: Send` is required and
// sufficient; every slot is accessed by one side at a time, as the module docs explain.
unsafe impl<T: Send, const N: usize> Sync for Shared<T, N> {}
// SAFETY: as above; the slots hold plain `T` values.
unsafe impl<T: Send, const N: usize> Send for Shared<T, N> {}

impl<T, const N: usize> Shared<T, N> {
    const MASK: usize = {
        assert!(
            N.is_power_of_two() && N >= 2,
            "ring capacity must be a power of two >= 2"
        );
        N - 1
    };
}

/// Reads how many published items a ring holds, from any thread (a metrics gauge). Not
/// built under loom, whose `Arc` cannot hold a trait object (and no model needs a gauge).
#[cfg(not(loom))]
#[derive(Clone)]
pub struct RingDepth(Arc<dyn Occupancy + Send + Sync>);

#[cfg(not(loom))]
trait Occupancy {
    fn occupancy(&self) -> usize;
}

#[cfg(not(loom))]
impl<T, const N: usize> Occupancy for Shared<T, N> {
    fn occupancy(&self) -> usize {
        // Two relaxed loads: a momentary, approximate figure, which is all a gauge needs.
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Relaxed);
        tail.saturating_sub(head)
    }
}

#[cfg(not(loom))]
impl RingDepth {
    /// Published items not yet read (approximate while both ends run).
    pub fn get(&self) -> usize {
        self.0.occupancy()
    }
}

/// The writing end.
pub struct Producer<T: Copy + Send, const N: usize> {
    shared: Arc<Shared<T, N>>,
    /// Next position to write; ahead of the published `tail` while items are staged.
    tail: usize,
    /// Last `head` seen.
    head_cache: usize,
}

/// The reading end.
pub struct Consumer<T: Copy + Send, const N: usize> {
    shared: Arc<Shared<T, N>>,
    /// Next position to read.
    head: usize,
    /// Last `tail` seen.
    tail_cache: usize,
}

/// What a pop found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop<T> {
    Item(T),
    /// Nothing yet; the producer is still there.
    Empty,
    /// The producer is gone and every item has been read.
    Closed,
}

/// A ring of `N` slots, as its two ends.
pub fn ring<T: Copy + Send, const N: usize>() -> (Producer<T, N>, Consumer<T, N>) {
    let _mask = Shared::<T, N>::MASK;
    let slots = (0..N)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        producer_closed: AtomicBool::new(false),
        consumer_closed: AtomicBool::new(false),
        slots,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

impl<T: Copy + Send, const N: usize> Producer<T, N> {
    /// Slots in the ring.
    pub const CAPACITY: usize = N;

    /// Writes `item` into the next slot without making it visible; `Err(item)` when the ring is
    /// full (staged items count). Call [`Producer::publish`] to hand staged items over.
    #[inline]
    pub fn stage(&mut self, item: T) -> Result<(), T> {
        if self.tail - self.head_cache == N {
            self.head_cache = self.shared.head.load(Ordering::Acquire);
            if self.tail - self.head_cache == N {
                return Err(item);
            }
        }
        let slot = &self.shared.slots[self.tail & Shared::<T, N>::MASK];
        // SAFETY: position `tail` is at or past the published tail, so the consumer does not
        // read this slot; and `tail < head + N` with `head` acquired above (or earlier), so the
        // consumer's last read of the slot (position `tail - N`) happened before.
        slot.with_mut(|cell| unsafe { (*cell).write(item) });
        self.tail += 1;
        Ok(())
    }

    /// Makes every staged item visible to the consumer.
    #[inline]
    pub fn publish(&mut self) {
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    /// Stages and publishes one item; `Err(item)` when full.
    #[inline]
    pub fn try_push(&mut self, item: T) -> Result<(), T> {
        self.stage(item)?;
        self.publish();
        Ok(())
    }

    /// A gauge of the ring's occupancy.
    #[cfg(not(loom))]
    pub fn depth(&self) -> RingDepth
    where
        T: 'static,
    {
        RingDepth(self.shared.clone())
    }

    /// Items staged but not yet published.
    pub fn staged(&self) -> usize {
        self.tail - self.shared.tail.load(Ordering::Relaxed)
    }

    /// Whether the consumer is gone (nothing pushed will ever be read).
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_closed.load(Ordering::Acquire)
    }

    /// Publishes what is staged and closes the ring: the consumer reads everything, then
    /// [`Pop::Closed`]. Dropping the producer does the same.
    pub fn close(self) {}
}

impl<T: Copy + Send, const N: usize> Drop for Producer<T, N> {
    fn drop(&mut self) {
        self.publish();
        self.shared.producer_closed.store(true, Ordering::Release);
    }
}

impl<T: Copy + Send, const N: usize> Consumer<T, N> {
    /// Slots in the ring.
    pub const CAPACITY: usize = N;

    /// A gauge of the ring's occupancy.
    #[cfg(not(loom))]
    pub fn depth(&self) -> RingDepth
    where
        T: 'static,
    {
        RingDepth(self.shared.clone())
    }

    /// Published items not yet read, refreshing the producer's tail when fewer than `wanted`
    /// are known.
    #[inline]
    fn available(&mut self, wanted: usize) -> usize {
        if self.tail_cache - self.head < wanted {
            self.tail_cache = self.shared.tail.load(Ordering::Acquire);
        }
        self.tail_cache - self.head
    }

    /// Reads the item at `position`.
    #[inline]
    fn read(&self, position: usize) -> T {
        let slot = &self.shared.slots[position & Shared::<T, N>::MASK];
        // SAFETY: `position < tail_cache`, a tail acquired from the producer, so the slot was
        // initialised and published; the producer will not rewrite it before our release store
        // of a `head` past it.
        slot.with(|cell| unsafe { (*cell).assume_init_read() })
    }

    /// Takes one item.
    #[inline]
    pub fn pop(&mut self) -> Pop<T> {
        let mut item = None;
        match self.pop_batch(1, |it| item = Some(it)) {
            0 => self.empty_or_closed(),
            _ => Pop::Item(item.expect("one item was popped")),
        }
    }

    /// Takes up to `max` items, oldest first, handing each to `each`; returns how many. One
    /// acquire load and one release store for the whole batch.
    #[inline]
    pub fn pop_batch(&mut self, max: usize, mut each: impl FnMut(T)) -> usize {
        let count = self.available(max).min(max);
        for i in 0..count {
            each(self.read(self.head + i));
        }
        if count > 0 {
            self.head += count;
            self.shared.head.store(self.head, Ordering::Release);
        }
        count
    }

    /// `Closed` when the producer is gone and everything was read, else `Empty`. Call after a
    /// pop found nothing.
    pub fn empty_or_closed(&mut self) -> Pop<T> {
        // `producer_closed` first: its acquire makes the producer's final `tail` visible.
        if self.shared.producer_closed.load(Ordering::Acquire) && self.available(1) == 0 {
            Pop::Closed
        } else {
            Pop::Empty
        }
    }
}

impl<T: Copy + Send, const N: usize> Drop for Consumer<T, N> {
    fn drop(&mut self) {
        self.shared.consumer_closed.store(true, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_across_wrap_around() {
        let (mut tx, mut rx) = ring::<u64, 4>();
        let mut next_out = 0;
        for n in 0..100u64 {
            tx.try_push(n).unwrap();
            if n % 3 == 2 {
                while let Pop::Item(item) = rx.pop() {
                    assert_eq!(item, next_out);
                    next_out += 1;
                }
            }
        }
        drop(tx);
        while let Pop::Item(item) = rx.pop() {
            assert_eq!(item, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, 100);
        assert_eq!(rx.pop(), Pop::Closed);
    }

    #[test]
    fn a_full_ring_refuses_and_staged_items_are_invisible_until_published() {
        let (mut tx, mut rx) = ring::<u32, 4>();
        for n in 0..4 {
            tx.stage(n).unwrap();
        }
        assert_eq!(tx.stage(9), Err(9));
        assert_eq!(tx.staged(), 4);
        assert_eq!(rx.pop(), Pop::Empty);
        tx.publish();
        let mut seen = Vec::new();
        assert_eq!(rx.pop_batch(3, |n| seen.push(n)), 3);
        assert_eq!(seen, [0, 1, 2]);
        tx.try_push(4).unwrap();
        assert_eq!(rx.pop_batch(10, |n| seen.push(n)), 2);
        assert_eq!(seen, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn dropping_the_producer_publishes_staged_items_then_closes() {
        let (mut tx, mut rx) = ring::<u8, 8>();
        tx.stage(1).unwrap();
        tx.stage(2).unwrap();
        tx.close();
        assert_eq!(rx.pop(), Pop::Item(1));
        assert_eq!(rx.pop(), Pop::Item(2));
        assert_eq!(rx.pop(), Pop::Closed);
    }

    #[test]
    fn dropping_the_consumer_abandons_the_ring() {
        let (tx, rx) = ring::<u8, 2>();
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
    }

    #[test]
    fn items_cross_threads_in_order() {
        let (mut tx, mut rx) = ring::<u64, 64>();
        let producer = std::thread::spawn(move || {
            for n in 0..200_000u64 {
                let mut item = n;
                while let Err(back) = tx.try_push(item) {
                    item = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        loop {
            match rx.pop() {
                Pop::Item(n) => {
                    assert_eq!(n, expected);
                    expected += 1;
                }
                Pop::Empty => std::hint::spin_loop(),
                Pop::Closed => break,
            }
        }
        producer.join().unwrap();
        assert_eq!(expected, 200_000);
    }
}

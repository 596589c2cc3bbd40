//! A bounded, lock-free, multi-producer single-consumer ring.
//!
//! This is Dmitry Vyukov's bounded queue with the consumer side specialised: any
//! number of threads push, exactly one [`Consumer`] pops (ownership enforces it),
//! so popping needs no compare-and-swap.
//!
//! ### Layout
//! - `tail` packs the next push position and the closed mark:
//!   `tail = position << 1 | CLOSED`. Producers claim a position by a CAS on it; once
//!   the mark is set no CAS can succeed, so the ring's contents are final.
//! - `head` is the next pop position, written only by the consumer.
//! - Each slot carries a `stamp`:
//!   `stamp == pos` means "free for the push at `pos`",
//!   `stamp == pos + 1` means "holds the value pushed at `pos`",
//!   and a pop at `pos` frees the slot for `pos + capacity`.
//!
//! Positions are `usize` and only grow; at one push per nanosecond a 63-bit position
//! lasts about 292 years, so wrap-around is not handled.

use std::fmt;
use std::mem::MaybeUninit;

use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering, UnsafeCell};

const CLOSED: usize = 1;

/// Why a push did not take the value; the value is handed back.
#[derive(PartialEq, Eq)]
pub enum PushError<T> {
    /// Every slot holds a value the consumer has not taken yet.
    Full(T),
    /// [`Ring::close`] was called; no push will ever succeed again.
    Closed(T),
}

impl<T> PushError<T> {
    /// Gives the rejected value back.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Closed(v) => v,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// What [`Consumer::pop`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<T> {
    /// The oldest value.
    Item(T),
    /// Nothing is queued and the ring is open.
    Empty,
    /// A producer has claimed the next slot but not finished writing it; try again.
    Busy,
    /// Nothing is queued and the ring is closed: nothing will ever arrive.
    Closed,
}

struct Slot<T> {
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The shared half of the ring: push from any thread.
pub struct Ring<T> {
    head: CachePadded<AtomicUsize>,
    tail: CachePadded<AtomicUsize>,
    /// INVARIANT: `slots.len()` is a power of two and at least 2, `mask == len - 1`.
    slots: Box<[Slot<T>]>,
    mask: usize,
}

// SAFETY: a value is written by the one producer that won the CAS for its position and
// read by the one consumer after it saw the producer's Release store of the stamp, so
// every value is accessed by one thread at a time; values cross threads, hence `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns its values and may drop them on any thread.
unsafe impl<T: Send> Send for Ring<T> {}

/// The single popping half of a [`Ring`]. It is not `Clone`, so one thread pops.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
}

impl<T> Ring<T> {
    /// Makes a ring holding at least `capacity` values (rounded up to a power of two,
    /// at least 2) and its only consumer.
    pub fn with_consumer(capacity: usize) -> (Arc<Ring<T>>, Consumer<T>) {
        let ring = Arc::new(Ring::new(capacity));
        let consumer = Consumer { ring: Arc::clone(&ring) };
        (ring, consumer)
    }

    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2).next_power_of_two();
        let slots = (0..capacity)
            .map(|i| Slot { stamp: AtomicUsize::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) })
            .collect();
        Ring {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            slots,
            mask: capacity - 1,
        }
    }

    /// How many values fit.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Appends `value`, or hands it back if the ring is full or closed. Never blocks.
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        let mut tail = self.tail.load(Ordering::Relaxed);
        let mut contended = 0u32;
        loop {
            if tail & CLOSED != 0 {
                return Err(PushError::Closed(value));
            }
            let pos = tail >> 1;
            let slot = &self.slots[pos & self.mask];
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == pos {
                let next = (pos + 1) << 1;
                match self.tail.compare_exchange_weak(tail, next, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => {
                        self.fill(slot, pos, value);
                        return Ok(());
                    }
                    Err(current) => {
                        // Another producer won the slot: back off before retrying, so
                        // that producers stop taking the cache line from each other.
                        backoff(&mut contended);
                        tail = current;
                    }
                }
            } else if (stamp as isize).wrapping_sub(pos as isize) < 0 {
                // The slot still holds the value pushed one lap ago.
                return Err(PushError::Full(value));
            } else {
                // Our `tail` was stale: another producer already filled `pos`.
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    fn fill(&self, slot: &Slot<T>, pos: usize, value: T) {
        // SAFETY: our CAS moved `tail` past `pos`, so no other producer writes this slot,
        // and the consumer reads it only after the stamp store below.
        slot.value.with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
        slot.stamp.store(pos + 1, Ordering::Release);
    }

    /// Marks the ring closed: later pushes fail with [`PushError::Closed`]; values
    /// already pushed stay and can be popped. Returns `false` if it was closed already.
    pub fn close(&self) -> bool {
        self.tail.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    /// Whether [`Ring::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.tail.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// The number of queued values at this instant (a snapshot, for statistics).
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::SeqCst) >> 1;
        tail.saturating_sub(self.head.load(Ordering::SeqCst))
    }

    /// Whether [`Ring::len`] is zero at this instant.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pops the oldest value.
    ///
    /// # Safety
    /// No other thread may run `pop` on this ring at the same time.
    unsafe fn pop(&self) -> Pop<T> {
        let head = self.head.load(Ordering::Relaxed);
        let slot = &self.slots[head & self.mask];
        if slot.stamp.load(Ordering::Acquire) == head + 1 {
            // SAFETY: the Acquire load saw the producer's Release store of `head + 1`,
            // so the value is fully written, and the caller guarantees we are the only reader.
            let value = slot.value.with_mut(|p| unsafe { p.read().assume_init() });
            slot.stamp.store(head + self.capacity(), Ordering::Release);
            self.head.store(head + 1, Ordering::Release);
            return Pop::Item(value);
        }
        let tail = self.tail.load(Ordering::SeqCst);
        match (tail >> 1 == head, tail & CLOSED != 0) {
            (false, _) => Pop::Busy,
            (true, false) => Pop::Empty,
            (true, true) => Pop::Closed,
        }
    }
}

impl<T> Consumer<T> {
    /// Pops the oldest value; see [`Pop`] for what else it may find.
    pub fn pop(&mut self) -> Pop<T> {
        // SAFETY: `Consumer` is the only caller of `Ring::pop`, there is one per ring
        // (made in `with_consumer`, not `Clone`) and `&mut self` serialises its calls.
        unsafe { self.ring.pop() }
    }

    /// The ring this consumer pops from.
    pub fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left, so plain stamp checks are exact.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed) >> 1;
        for pos in head..tail {
            let slot = &self.slots[pos & self.mask];
            if slot.stamp.load(Ordering::Relaxed) == pos + 1 {
                // SAFETY: the stamp says the slot holds an initialised value nobody popped.
                slot.value.with_mut(|p| unsafe { p.read().assume_init_drop() });
            }
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("ring", &self.ring).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_full_and_closed() {
        let (ring, mut consumer) = Ring::with_consumer(3);
        assert_eq!(ring.capacity(), 4);
        for i in 0..4 {
            ring.push(i).expect("ring has room");
        }
        assert_eq!(ring.push(9), Err(PushError::Full(9)));
        assert_eq!(consumer.pop(), Pop::Item(0));
        ring.push(4).expect("a pop made room");
        assert!(ring.close());
        assert!(!ring.close());
        assert_eq!(ring.push(5), Err(PushError::Closed(5)));
        for i in 1..5 {
            assert_eq!(consumer.pop(), Pop::Item(i));
        }
        assert_eq!(consumer.pop(), Pop::Closed);
    }

    #[test]
    fn empty_then_wraps_many_laps() {
        let (ring, mut consumer) = Ring::with_consumer(2);
        assert_eq!(consumer.pop(), Pop::Empty);
        for i in 0..100u32 {
            ring.push(i).expect("one value at a time fits");
            assert_eq!(consumer.pop(), Pop::Item(i));
        }
        assert!(ring.is_empty());
    }

    #[test]
    fn drop_releases_unpopped_values() {
        let marker = std::sync::Arc::new(());
        let (ring, mut consumer) = Ring::with_consumer(4);
        for _ in 0..3 {
            ring.push(std::sync::Arc::clone(&marker)).expect("room for three");
        }
        assert!(matches!(consumer.pop(), Pop::Item(_)));
        drop((ring, consumer));
        assert_eq!(std::sync::Arc::strong_count(&marker), 1);
    }

    #[test]
    fn threads_push_each_value_once() {
        let (ring, mut consumer) = Ring::with_consumer(64);
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        let mut v = p * 1_000_000 + i;
                        while let Err(PushError::Full(back)) = ring.push(v) {
                            v = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        let mut seen = 0;
        while seen < 8_000 {
            if let Pop::Item(v) = consumer.pop() {
                let (p, i) = ((v / 1_000_000) as usize, v % 1_000_000);
                assert_eq!(next[p], i, "producer {p} out of order");
                next[p] += 1;
                seen += 1;
            }
        }
        producers.into_iter().for_each(|h| h.join().expect("producer panicked"));
        assert_eq!(consumer.pop(), Pop::Empty);
    }
}

/// Spins 1, 2, 4, ... 64 times on successive calls (exponential backoff, as
/// crossbeam's `Backoff::spin`).
fn backoff(step: &mut u32) {
    for _ in 0..1u32 << (*step).min(6) {
        std::hint::spin_loop();
    }
    *step += 1;
}

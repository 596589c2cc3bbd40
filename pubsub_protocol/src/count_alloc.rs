//! A counting global allocator for measurements, behind the `count-alloc` feature:
//! [`Counting`] wraps [`System`] and counts every allocation and its bytes, so
//! `bench mqtt --count` can report allocations per delivered message. The binary
//! installs it (`src/main.rs`); the broker publishes the totals as the retained
//! `$SYS/broker/heap/allocations` and `$SYS/broker/heap/bytes`.
//!
//! The counters are relaxed atomics: they are totals read long after the fact, so no
//! other memory is ordered by them, and a relaxed `fetch_add` costs a few nanoseconds
//! next to `malloc`. A reallocation counts as one allocation of its new size (as
//! `malloc` + copy + `free` would have); frees are not counted.
//!
//! This is the only `unsafe` in the crate: a `GlobalAlloc` cannot be written without
//! it, and the feature is off in every normal build, where `lib.rs` forbids
//! `unsafe_code` outright.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting. Install it with
/// `#[global_allocator] static A: Counting = Counting;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counting;

impl Counting {
    fn count(size: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees (and the caller's obligations) carry over; counting touches
// only two atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (including reallocations) since the process started.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes requested by those allocations.
pub fn bytes() -> u64 {
    BYTES.load(Ordering::Relaxed)
}

/// The `$SYS/broker/` topics of the totals, and their values now.
pub(crate) fn sys_topics() -> [(&'static str, u64); 2] {
    [("heap/allocations", allocations()), ("heap/bytes", bytes())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_it_is_asked_for() {
        let (n, b) = (allocations(), bytes());
        let layout = Layout::from_size_align(100, 8).expect("a valid layout");
        // SAFETY: a non-zero-size layout, freed with the same layout.
        unsafe {
            let p = Counting.alloc(layout);
            assert!(!p.is_null());
            Counting.dealloc(p, layout);
        }
        // Tests do not install `Counting`, so nothing else touches the counters.
        assert_eq!((allocations(), bytes()), (n + 1, b + 100));
    }
}

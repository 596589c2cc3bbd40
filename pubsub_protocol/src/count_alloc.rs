//! A counting global allocator for measurements, behind the `count-alloc` feature:
//! `stats_alloc`'s instrumented system allocator, so that `bench mqtt --count` can
//! report allocations per delivered message (no `unsafe` of ours: the crate holds
//! the `GlobalAlloc` implementation). The binary installs it (`src/main.rs`); the
//! broker publishes the totals as the retained `$SYS/broker/heap/allocations` and
//! `$SYS/broker/heap/bytes`. A reallocation counts as one allocation of its new size
//! (as `malloc` + copy + `free` would have); frees are not counted.

use std::alloc::System;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

/// The allocator type the binary installs.
pub type Counting = &'static StatsAlloc<System>;

/// The instance to install: `#[global_allocator] static A: Counting = COUNTING;`.
pub const COUNTING: Counting = &INSTRUMENTED_SYSTEM;

/// Allocations (including reallocations) since the process started.
pub fn allocations() -> u64 {
    let stats = INSTRUMENTED_SYSTEM.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// Bytes requested by those allocations (a reallocation counts its growth).
pub fn bytes() -> u64 {
    let stats = INSTRUMENTED_SYSTEM.stats();
    (stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize) as u64
}

/// The `$SYS/broker/` topics of the totals, and their values now.
pub(crate) fn sys_topics() -> [(&'static str, u64); 2] {
    [("heap/allocations", allocations()), ("heap/bytes", bytes())]
}

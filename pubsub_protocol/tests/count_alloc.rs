//! The `count-alloc` feature's allocator counts what this process allocates (the test
//! installs it as `pubsub` does). Run by `.ci/test` with `--features count-alloc`;
//! without the feature this file holds no test.
#![cfg(feature = "count-alloc")]

use pubsub_protocol::count_alloc::{allocations, bytes, Counting, COUNTING};

#[global_allocator]
static ALLOCATOR: Counting = COUNTING;

#[test]
fn allocations_and_their_bytes_are_counted() {
    let (n, b) = (allocations(), bytes());
    let kept: Vec<Box<[u8; 1000]>> = (0..10).map(|_| Box::new([0u8; 1000])).collect();
    let (n2, b2) = (allocations(), bytes());
    assert!(n2 >= n + 11, "11 allocations (ten boxes and the vector): {n} → {n2}");
    assert!(b2 >= b + 10_000, "at least 10,000 bytes: {b} → {b2}");
    drop(kept);
}

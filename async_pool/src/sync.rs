//! The one place that chooses between `std` and `loom` primitives.
//!
//! Every atomic, lock and thread of this crate goes through here, so that
//! `RUSTFLAGS="--cfg loom"` model-checks the real code rather than a copy.

#[cfg(loom)]
pub(crate) use loom::{
    hint,
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
};

#[cfg(not(loom))]
pub(crate) use std::{
    hint,
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
};

/// `UnsafeCell` with loom's closure-based API, so both builds share one call shape.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `UnsafeCell` with loom's closure-based API, so both builds share one call shape.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Keeps a value on its own cache line (128 bytes: adjacent-line prefetch on x86
/// pairs lines), so that producers hammering one field do not slow readers of another.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Locks a mutex, ignoring poisoning: our critical sections never panic half-way
/// (they only move values in and out of a `VecDeque`).
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

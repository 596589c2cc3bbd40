//! The only `unsafe` of this crate: `fork(2)`.

use nix::unistd::ForkResult;

/// Threads of this process, from `/proc/self/status` (0 if it cannot be read).
pub(crate) fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Forks this process.
pub(crate) fn fork() -> nix::Result<ForkResult> {
    // SAFETY: `supervise` checked that this process has exactly one thread and only it
    // calls here, so no lock or allocator state can be held by a thread missing from
    // the child; the child goes on to build its own threads and exits via `exit`.
    unsafe { nix::unistd::fork() }
}

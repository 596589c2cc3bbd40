//! What this crate needs from the OS beyond `std`, in one place so a port knows where
//! to look: Unix file permissions, for the warning about credential files others may
//! read. The broker itself is portable Rust; the framework under it is not.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "pubsub_protocol needs Linux: it runs on protocol_server (Linux-only), and \
     pubsub_protocol/src/sys.rs reads Unix permission bits (std::os::unix PermissionsExt)"
);

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Whether users other than the owner and group may read or write `path`; false if it
/// cannot be read.
pub(crate) fn others_may_access(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o007 != 0)
}

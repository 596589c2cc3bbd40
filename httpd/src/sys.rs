//! What this crate needs from Linux, in one place so a port knows where to look:
//! how a file is opened and read, how a request's bytes become a path, and which
//! errno means "out of descriptors". The rest of the crate is portable Rust.

#[cfg(not(target_os = "linux"))]
compile_error!(
    "httpd needs Linux: it runs on protocol_server (Linux-only), and httpd/src/sys.rs uses \
     open(O_NONBLOCK | O_NOFOLLOW), pread (std::os::unix FileExt), byte paths (OsStrExt) and \
     the EMFILE/ENFILE errno numbers"
);

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::libc::{EMFILE, ENFILE};

/// Opens `path` for reading with `O_NONBLOCK | O_NOFOLLOW` (`OpenFile::open` says why).
pub(crate) fn open_no_follow(path: &Path) -> io::Result<File> {
    let flags = OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW;
    std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(path)
}

/// Fills `buf` from `offset` without moving the file's position (`pread(2)`).
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// A path segment as the bytes it is on disk (no UTF-8 required).
pub(crate) fn os_str(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// The process (`EMFILE`) or the system (`ENFILE`) is out of descriptors.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

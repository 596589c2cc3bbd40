//! The only `unsafe` of this crate: process-wide signal disposition.

use nix::sys::signal::{signal, SigHandler, Signal};

/// Makes writes to a closed socket fail with `EPIPE` instead of killing the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler code, so there is nothing to make
    // async-signal-safe; replacing whatever disposition was there is the intent.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) } {
        log::warn!("reactor: cannot ignore SIGPIPE: {e}");
    }
}

/// Binds a listening TCP socket with `SO_REUSEADDR` and the given backlog (the kernel
/// caps it at `net.core.somaxconn`). `mio` and `std` hard-code 128, which a burst of
/// connections overflows: the excess then waits for SYN retransmits (a second or more).
pub(crate) fn bind_listener(
    addr: std::net::SocketAddr,
    backlog: i32,
) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};

    let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd = socket::socket(family, SockType::Stream, flags, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

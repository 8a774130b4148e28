//! The crate's only calls into libc, each with its SAFETY reasoning: raise
//! the open-files limit at start (`getrlimit`, `setrlimit`), signal a
//! running server for `revurb restart` (`kill`), and read how much a
//! closing socket's kernel buffer still holds (`ioctl(SIOCOUTQ)`), and for
//! `revurb upgrade` let the handed-over sockets survive `execve`
//! (`fcntl(F_SETFD)`) and adopt them in the new image (`getsockopt`, then
//! `FromRawFd`). The rest of the crate is
//! `#![deny(unsafe_code)]`; this module is the one exception, so a reviewer
//! reads every `unsafe` block here and nowhere else.
//!
//! It does not decide anything: the callers choose the signal and log the
//! limits.

#![allow(unsafe_code)]

use std::io;

/// Raise the open-files soft limit to the hard limit; returns (old soft, new soft, hard).
pub fn raise_nofile_limit() -> io::Result<(u64, u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass, which is a valid,
    // properly aligned `rlimit` that lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let new = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass, valid for the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim = new;
    }
    Ok((old, lim.rlim_cur, lim.rlim_max))
}

/// Send `sig` to process `pid`.
pub fn signal_process(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes in a TCP socket's send queue that the peer has not acknowledged
/// yet (Linux `SIOCOUTQ`, spelled `TIOCOUTQ` in libc); `None` on error or
/// on other systems, where a closing connection is simply not extended.
#[cfg(target_os = "linux")]
pub fn unsent_bytes(fd: std::os::fd::RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int into `n`, a valid, aligned local
    // that outlives the call; an invalid or non-TCP fd only makes it fail.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r != 0 {
        return None;
    }
    usize::try_from(n).ok()
}

#[cfg(not(target_os = "linux"))]
pub fn unsent_bytes(_fd: std::os::fd::RawFd) -> Option<usize> {
    None
}

/// Whether `fd` is closed by `execve` (`FD_CLOEXEC`). `keep`: clear the
/// flag, so the descriptor survives the upgrade's exec; otherwise set it.
/// One call per descriptor (an upgrade makes one per connection):
/// `FD_CLOEXEC` is the only descriptor flag, so the flags are set whole.
pub fn set_keep_on_exec(fd: std::os::fd::RawFd, keep: bool) -> io::Result<()> {
    let flags = if keep { 0 } else { libc::FD_CLOEXEC };
    // SAFETY: fcntl(F_SETFD) takes plain integers and touches no memory of
    // ours; on a closed fd it fails with EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An integer socket option of `fd`.
fn sockopt(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, a valid,
    // aligned c_int that outlives the call, and writes the length back
    // into `len`, also a valid local; a bad fd only makes it fail.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Check that `fd` is an open stream socket and not one of the standard
/// streams; a listener is also checked to be TCP (IPv4 or IPv6) and
/// listening. (A connection gets the one call: an upgrade adopts one per
/// client, and what soundness needs is only that it is open, which any
/// call proves.)
fn check_tcp(fd: std::os::fd::RawFd, listening: bool) -> io::Result<()> {
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {fd}: {what}"),
        )
    };
    if fd <= 2 {
        return Err(bad("a standard stream"));
    }
    if sockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(bad("not a stream socket"));
    }
    if !listening {
        return Ok(());
    }
    let domain = sockopt(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Err(bad("not a TCP socket"));
    }
    if sockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 0 {
        return Err(bad("not listening"));
    }
    Ok(())
}

/// Take ownership of a listening TCP socket the previous image of this
/// process handed over across `execve` (`revurb upgrade`), close-on-exec
/// again.
///
/// The caller must call this (and [`adopt_stream`]) at most once per
/// descriptor number, before this process has opened any descriptor of its
/// own: `event_loop::resume` does it first, and the hand-over's check
/// refuses a number given twice.
pub fn adopt_listener(fd: std::os::fd::RawFd) -> io::Result<std::net::TcpListener> {
    use std::os::fd::FromRawFd;
    check_tcp(fd, true)?;
    set_keep_on_exec(fd, false)?;
    // SAFETY: FromRawFd needs an open descriptor that nothing else owns.
    // It is open and a listening TCP socket (checked above). Nothing else
    // in this process owns it: it was inherited across execve, so no
    // `OwnedFd` of this image was made from it; the kernel gives a new
    // descriptor the lowest free number, never an open one, so nothing
    // this image opened can share its number; and the caller adopts each
    // number once (see above). The returned listener is now its only owner.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// Take ownership of a connected socket handed over across `execve`;
/// the same contract as [`adopt_listener`].
pub fn adopt_stream(fd: std::os::fd::RawFd) -> io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    check_tcp(fd, false)?;
    set_keep_on_exec(fd, false)?;
    // SAFETY: as in `adopt_listener`: open, a stream socket (checked), inherited
    // across execve and adopted once, so this stream is its only owner.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

//! The crate's only calls into libc, each with its SAFETY reasoning: raise
//! the open-files limit at start (`getrlimit`, `setrlimit`), signal a
//! running server for `revurb restart` (`kill`), and read how much a
//! closing socket's kernel buffer still holds (`ioctl(SIOCOUTQ)`). The rest of the crate is
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

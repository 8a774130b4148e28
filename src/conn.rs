//! One client socket's state: its transport (plain or TLS), its [`Phase`],
//! the bytes read but not yet handled, and a bounded write queue.
//!
//! The phases follow the life the event loop drives (see `event_loop`):
//! [`Phase::Http`] from [`Conn::new`] (which listener accepted it, the
//! request deadline) → [`Phase::WebSocket`] after an upgrade (the frame
//! decoder and the app's message limit; no loop deadline) →
//! [`Phase::Closing`] from [`Conn::begin_closing`] (the close deadline and
//! whether the write side is shut, by [`Conn::shut_write_when_closing`]) →
//! dropped by the loop. Each phase holds only what is valid in it, so a
//! WebSocket has no request deadline and only a closing connection can
//! have its write side shut.
//!
//! Memory: an idle connection holds no buffers. Bytes are read into the event
//! loop's shared scratch buffer and handled there; only an incomplete tail is
//! copied into `pending`, which is freed as soon as it is handled. The write
//! queue holds shared frames (`Rc<[u8]>`), so a broadcast costs a pointer per
//! recipient, and is written with one `writev` per turn.
//!
//! What it does not do: decide anything about the bytes (parsers, router
//! and hub do), or know about other connections, timers or the poll.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;

use mio::net::TcpStream;
use std::os::fd::AsRawFd;

use crate::router::Listener;
use crate::sys;
use crate::websocket::Decoder;

/// Most slices handed to one `writev` call.
const MAX_IOV: usize = 64;

#[derive(Debug)]
pub enum Chunk {
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

/// Where a connection is in its life; each phase holds only what is valid
/// in it, and a change of phase moves the parts by value.
#[derive(Debug)]
pub enum Phase {
    /// Reading HTTP requests (keep-alive) until one upgrades. `listener`
    /// says which routes exist; `deadline` (loop clock, ms) is when the
    /// current request must be complete.
    Http { listener: Listener, deadline: u64 },
    /// A WebSocket known to the hub; `max_message` is its app's limit. The
    /// hub's pings and pruning are its deadlines.
    WebSocket {
        decoder: Decoder,
        max_message: usize,
    },
    /// Flushing the last bytes; then the write side is shut and input is
    /// drained until EOF or the deadline.
    Closing(Closing),
}

/// The closing phase: what is left of a connection saying goodbye.
#[derive(Debug)]
pub struct Closing {
    /// When the connection is dropped if the peer has not closed (loop clock, ms).
    pub deadline: u64,
    /// The queue was flushed and the write side shut: nothing more is sent.
    pub write_shut: bool,
    /// The deadline is never moved past this (see [`Conn::extend_close`]).
    until: u64,
    /// Bytes handed to the kernel since closing began, plus what its send
    /// queue held then; less what it still holds, that is what the peer
    /// has acknowledged since.
    sent: usize,
    /// The peer's acknowledged bytes at the last check.
    acked: usize,
}

impl Phase {
    /// The deadline the loop keeps for this phase, if any; a timer entry
    /// that does not match it is stale.
    pub fn deadline(&self) -> Option<u64> {
        match self {
            Phase::Http { deadline, .. } | Phase::Closing(Closing { deadline, .. }) => {
                Some(*deadline)
            }
            Phase::WebSocket { .. } => None,
        }
    }
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// The TLS session when the listener speaks TLS.
    pub tls: Option<Box<rustls::ServerConnection>>,
    pub phase: Phase,
    /// Unhandled input (an incomplete request or frame). Empty when idle.
    pub pending: Vec<u8>,
    out: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    out_offset: usize,
    out_bytes: usize,
    /// Last known writability (mio is edge-triggered).
    pub writable: bool,
    /// In the loop's dirty list, to be flushed at the end of this turn.
    pub dirty: bool,
    /// TLS produced bytes while reading (a handshake step) that need a flush.
    pub needs_flush: bool,
}

impl Conn {
    /// A connection `listener` accepted, reading its first request until `deadline`.
    pub fn new(stream: TcpStream, listener: Listener, deadline: u64) -> Conn {
        Conn {
            stream,
            tls: None,
            phase: Phase::Http { listener, deadline },
            pending: Vec::new(),
            out: VecDeque::new(),
            out_offset: 0,
            out_bytes: 0,
            writable: false,
            dirty: false,
            needs_flush: false,
        }
    }

    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// Bytes queued behind the message being written: what the write-queue
    /// limit measures, so one message larger than the limit still goes out
    /// to a reader that drains it (issue 11).
    pub fn backlog(&self) -> usize {
        let front = self
            .out
            .front()
            .map_or(0, |c| c.bytes().len() - self.out_offset);
        self.out_bytes - front
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing(_))
    }

    /// Enter the closing phase (unless already in it): what is queued still
    /// goes out, unhandled input is dropped. Returns false if it was closing.
    pub fn begin_closing(&mut self, deadline: u64, until: u64) -> bool {
        if self.is_closing() {
            return false;
        }
        self.phase = Phase::Closing(Closing {
            deadline,
            write_shut: false,
            until,
            sent: sys::unsent_bytes(self.stream.as_raw_fd()).unwrap_or(0),
            acked: 0,
        });
        self.pending = Vec::new();
        true
    }

    /// Count bytes written to the socket (for [`Conn::extend_close`]).
    pub fn note_sent(&mut self, written: usize) {
        if let Phase::Closing(closing) = &mut self.phase {
            closing.sent = closing.sent.saturating_add(written);
        }
    }

    /// The close deadline has come while our last bytes (the 4100 error and
    /// close frame of a slow consumer, say) are still queued here behind a
    /// full kernel buffer. If the peer has acknowledged bytes since the last
    /// check, it is reading: move the deadline to `next` (at most `until`)
    /// and return it, so the reason reaches a slow reader (issue 11) while
    /// one that does not read is still dropped on time. A socket buffer
    /// cap was the other way; it would limit every client's throughput on
    /// long links and still leave the client's own receive buffer ahead of
    /// the reason.
    pub fn extend_close(&mut self, now: u64, next: u64) -> Option<u64> {
        let unsent = sys::unsent_bytes(self.stream.as_raw_fd());
        let Phase::Closing(closing) = &mut self.phase else {
            return None;
        };
        if closing.write_shut || now >= closing.until {
            return None;
        }
        let acked = closing.sent.saturating_sub(unsent?);
        if acked <= closing.acked {
            return None;
        }
        closing.acked = acked;
        closing.deadline = next.min(closing.until);
        Some(closing.deadline)
    }

    /// Closing and everything flushed: say goodbye (TLS close_notify) and
    /// shut the write side, once. Input is still read until EOF, so the
    /// peer's last bytes do not turn into a reset.
    pub fn shut_write_when_closing(&mut self) {
        let Phase::Closing(closing) = &mut self.phase else {
            return;
        };
        if closing.write_shut {
            return;
        }
        closing.write_shut = true;
        self.tls_close_notify();
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.bytes().len();
        let shut = matches!(
            self.phase,
            Phase::Closing(Closing {
                write_shut: true,
                ..
            })
        );
        if len == 0 || shut {
            return;
        }
        self.out_bytes += len;
        self.out.push_back(chunk);
    }

    /// Drop everything queued (a slow reader being disconnected).
    /// Drop everything queued that has not started to go out. The unsent
    /// rest of a frame the socket has partly taken is kept, so the stream
    /// stays well-formed for what follows (the 4100 error and close).
    pub fn clear_queue(&mut self) {
        let partial = if self.out_offset > 0 {
            self.out.pop_front()
        } else {
            None
        };
        self.out = VecDeque::new();
        self.out_bytes = 0;
        if let Some(chunk) = partial {
            let rest = chunk.bytes()[self.out_offset..].to_vec();
            self.out_bytes = rest.len();
            self.out.push_back(Chunk::Owned(rest));
        }
        self.out_offset = 0;
    }

    /// Read plaintext into `buf`: `Ok(0)` is end of stream, `WouldBlock`
    /// means nothing more for now. With TLS this feeds records to rustls and
    /// returns what it decrypts.
    pub fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.stream.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer sent close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // try to tell the peer why before giving up
                let _ = tls.write_tls(&mut self.stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if tls.wants_write() {
                // handshake messages to send: the loop flushes dirty connections
                self.needs_flush = true;
            }
        }
    }

    /// Queue a TLS close_notify (before the write side is shut).
    fn tls_close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = tls.write_tls(&mut self.stream);
        }
    }

    /// Write as much of the queue as the socket takes. Returns whether the
    /// queue is empty afterwards, and the bytes written.
    pub fn flush(&mut self) -> io::Result<(bool, usize)> {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        let mut total = 0;
        while !self.out.is_empty() {
            if !self.writable {
                return Ok((false, total));
            }
            // The common case (one frame waiting) is a plain write; several
            // frames go out together in one writev.
            let result = if self.out.len() == 1 {
                let b = self
                    .out
                    .front()
                    .map_or(&[][..], |c| &c.bytes()[self.out_offset..]);
                self.stream.write(b)
            } else {
                let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (i, chunk) in self.out.iter().take(MAX_IOV).enumerate() {
                    let b = chunk.bytes();
                    iov[i] = IoSlice::new(if i == 0 { &b[self.out_offset..] } else { b });
                    n += 1;
                }
                self.stream.write_vectored(&iov[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    self.out_bytes -= written;
                    total += written;
                    while written > 0 {
                        let Some(front) = self.out.front() else { break };
                        let left = front.bytes().len() - self.out_offset;
                        if written >= left {
                            written -= left;
                            self.out_offset = 0;
                            self.out.pop_front();
                        } else {
                            self.out_offset += written;
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok((false, total));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > 16 {
            // give back the memory of a burst
            self.out = VecDeque::new();
        }
        Ok((true, total))
    }

    /// TLS: move queued plaintext into rustls (bounded by its buffer limit)
    /// and write records until the socket is full or nothing is left.
    fn flush_tls(&mut self) -> io::Result<(bool, usize)> {
        self.needs_flush = false;
        let Some(tls) = self.tls.as_mut() else {
            return Ok((true, 0));
        };
        let mut total = 0;
        loop {
            while let Some(front) = self.out.front() {
                let bytes = &front.bytes()[self.out_offset..];
                let n = tls.writer().write(bytes)?;
                if n == 0 {
                    break; // rustls buffer full: write records first
                }
                self.out_bytes -= n;
                if n == bytes.len() {
                    self.out_offset = 0;
                    self.out.pop_front();
                } else {
                    self.out_offset += n;
                }
            }
            if !tls.wants_write() {
                return Ok((self.out.is_empty(), total));
            }
            if !self.writable {
                return Ok((false, total));
            }
            match tls.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok((false, total));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

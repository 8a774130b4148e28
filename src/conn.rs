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
//! Memory: an idle connection holds no buffers, not even a write queue:
//! one is lent from a bounded spare list while bytes wait. Bytes are read into the event
//! loop's shared scratch buffer and handled there; only an incomplete tail is
//! copied into `pending`, which is freed as soon as it is handled. The write
//! queue holds shared frames (`Rc<[u8]>`), so a broadcast costs a pointer per
//! recipient, and is written with one `writev` per turn.
//!
//! TLS: rustls drives the handshake ([`Tls::Session`]). Once a TLS 1.3
//! session is quiet (everything written, nothing half-read, see
//! [`Conn::flush`]) it hands its traffic keys over and is dropped: the
//! connection keeps a [`Records`] layer (about 1.2 KB, the two AEAD keys)
//! instead of rustls's state (about 7 KB). [`Framing`] watches the bytes
//! given to rustls so the hand-over never happens in the middle of a
//! record. TLS 1.2 sessions stay with rustls.
//!
//! What it does not do: decide anything about the bytes (parsers, router
//! and hub do), or know about other connections, timers or the poll.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;

use mio::net::TcpStream;
use std::os::fd::AsRawFd;

use crate::router::Listener;
use crate::sys;
use crate::tls_record::{self, Records};
use crate::websocket::Decoder;

/// Most slices handed to one `writev` call.
const MAX_IOV: usize = 64;
/// Most sealed TLS bytes waiting for the socket before more are sealed.
const SEAL_AHEAD: usize = 64 * 1024;

/// A connection's TLS state (boxed: plain connections pay one pointer).
#[derive(Debug)]
pub enum Tls {
    /// rustls: the handshake, and for good if the session is TLS 1.2.
    Session {
        conn: rustls::ServerConnection,
        framing: Framing,
    },
    /// TLS 1.3 after the hand-over: the traffic keys only.
    Records(Records),
    /// The hand-over failed; the connection is dropped.
    Broken,
}

impl Tls {
    pub fn new(conn: rustls::ServerConnection) -> Tls {
        Tls::Session {
            conn,
            framing: Framing::default(),
        }
    }
}

/// Where the bytes handed to rustls stand in the TLS record framing, so
/// that the hand-over happens only between records (rustls would take an
/// incomplete record's first bytes with it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Framing {
    header: [u8; tls_record::HEADER],
    /// Bytes of the current header seen.
    have: u8,
    /// Bytes of the current record's body still to come.
    left: usize,
}

impl Framing {
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let k = self.left.min(bytes.len());
                self.left -= k;
                bytes = &bytes[k..];
                continue;
            }
            let have = self.have as usize;
            let k = (tls_record::HEADER - have).min(bytes.len());
            self.header[have..have + k].copy_from_slice(&bytes[..k]);
            self.have += k as u8;
            bytes = &bytes[k..];
            if self.have as usize == tls_record::HEADER {
                self.left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.have = 0;
            }
        }
    }

    /// Every byte seen belongs to a complete record.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

/// The socket as rustls reads it, with the framing watched.
struct Watched<'a> {
    stream: &'a mut TcpStream,
    framing: &'a mut Framing,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.framing.observe(&buf[..n]);
        Ok(n)
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

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

/// Queued output: shared or owned frames, the bytes of the front one
/// already written, and the total still to write.
#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    offset: usize,
    bytes: usize,
}

impl Queue {
    /// What is left of the front chunk.
    fn front(&self) -> Option<&[u8]> {
        self.chunks.front().map(|c| &c.bytes()[self.offset..])
    }

    /// `n` bytes from the front went out.
    fn consume(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.chunks.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

/// Most spare write queues kept for reuse (about 150 KB at most).
const SPARE_QUEUES: usize = 1024;
/// Largest queue (in chunks it has room for) kept for reuse.
const SPARE_CHUNKS: usize = 4;

thread_local! {
    /// Emptied write queues, lent to the next connection that sends: a
    /// delivery to an idle connection then allocates nothing (the event
    /// loop is the only thread that touches connections). Boxed: the box
    /// itself is what a connection holds, so it is what is reused.
    #[allow(clippy::vec_box)]
    static SPARE: RefCell<Vec<Box<Queue>>> = const { RefCell::new(Vec::new()) };
}

/// An empty write queue, reused if one is spare.
fn spare_queue() -> Box<Queue> {
    SPARE.with_borrow_mut(Vec::pop).unwrap_or_default()
}

/// Keep an emptied queue for reuse (small ones, up to `SPARE_QUEUES`).
fn recycle(queue: Option<Box<Queue>>) {
    let Some(mut q) = queue else {
        return;
    };
    if q.chunks.capacity() > SPARE_CHUNKS {
        return;
    }
    q.chunks.clear();
    q.offset = 0;
    q.bytes = 0;
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < SPARE_QUEUES {
            spare.push(q);
        }
    });
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
    /// The TLS state when the listener speaks TLS.
    pub tls: Option<Box<Tls>>,
    pub phase: Phase,
    /// Unhandled input (an incomplete request or frame). Empty when idle.
    pub pending: Vec<u8>,
    /// The write queue, allocated only while bytes wait (an idle
    /// connection pays one pointer).
    out: Option<Box<Queue>>,
    /// Last known writability (mio is edge-triggered).
    pub writable: bool,
    /// In the loop's dirty list, to be flushed at the end of this turn.
    pub dirty: bool,
    /// TLS produced bytes while reading (a handshake step) that need a flush.
    pub needs_flush: bool,
    /// Counted among the loop's TLS handshakes in progress.
    pub in_handshake: bool,
}

impl Conn {
    /// A connection `listener` accepted, reading its first request until `deadline`.
    pub fn new(stream: TcpStream, listener: Listener, deadline: u64) -> Conn {
        Conn {
            stream,
            tls: None,
            phase: Phase::Http { listener, deadline },
            pending: Vec::new(),
            out: None,
            writable: false,
            dirty: false,
            needs_flush: false,
            in_handshake: false,
        }
    }

    /// A TLS handshake is in progress.
    pub fn tls_handshaking(&self) -> bool {
        matches!(self.tls.as_deref(), Some(Tls::Session { conn, .. }) if conn.is_handshaking())
    }

    pub fn queued_bytes(&self) -> usize {
        self.out.as_ref().map_or(0, |q| q.bytes)
    }

    /// Bytes queued behind the message being written: what the write-queue
    /// limit measures, so one message larger than the limit still goes out
    /// to a reader that drains it (issue 11).
    pub fn backlog(&self) -> usize {
        let Some(q) = self.out.as_deref() else {
            return 0;
        };
        q.bytes - q.front().map_or(0, <[u8]>::len)
    }

    /// Every queued byte not yet written, in order (`revurb upgrade`
    /// hands them over; the new process queues them first).
    pub fn unsent(&self) -> Vec<u8> {
        let Some(q) = self.out.as_deref() else {
            return Vec::new();
        };
        let mut v = Vec::with_capacity(q.bytes);
        for (i, c) in q.chunks.iter().enumerate() {
            let b = c.bytes();
            v.extend_from_slice(if i == 0 { &b[q.offset..] } else { b });
        }
        v
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
        let q = self.out.get_or_insert_with(spare_queue);
        q.bytes += len;
        q.chunks.push_back(chunk);
    }

    /// Drop everything queued (a slow reader being disconnected).
    /// Drop everything queued that has not started to go out. The unsent
    /// rest of a frame the socket has partly taken is kept, so the stream
    /// stays well-formed for what follows (the 4100 error and close).
    pub fn clear_queue(&mut self) {
        let Some(q) = self.out.take() else {
            return;
        };
        if q.offset > 0
            && let Some(rest) = q.front()
        {
            let rest = rest.to_vec();
            self.out = Some(Box::new(Queue {
                bytes: rest.len(),
                chunks: VecDeque::from([Chunk::Owned(rest)]),
                offset: 0,
            }));
        }
    }

    /// Read plaintext into `buf`: `Ok(0)` is end of stream, `WouldBlock`
    /// means nothing more for now. With TLS this feeds records to rustls and
    /// returns what it decrypts.
    /// `buf` must be longer than [`tls_record::MAX_RECORD`] for TLS.
    pub fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.read(buf);
        };
        let (tls, framing) = match tls {
            Tls::Session { conn, framing } => (conn, framing),
            Tls::Records(records) => return read_records(records, &mut self.stream, buf),
            Tls::Broken => return Err(invalid("TLS session lost")),
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer sent close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let mut watched = Watched {
                stream: &mut self.stream,
                framing,
            };
            if tls.read_tls(&mut watched)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                // try to tell the peer why before giving up
                let _ = tls.write_tls(&mut self.stream);
                return Err(invalid(e));
            }
            if tls.wants_write() {
                // handshake messages to send: the loop flushes dirty connections
                self.needs_flush = true;
            }
        }
    }

    /// `revurb upgrade`: move a quiet TLS 1.3 session to its [`Records`]
    /// layer now (see `hand_over_tls`), so that it can be handed over.
    pub fn settle_tls(&mut self) -> io::Result<()> {
        if self.out.as_ref().is_none_or(|q| q.chunks.is_empty()) {
            self.hand_over_tls()?;
        }
        Ok(())
    }

    /// Whether this connection is TLS not (yet) in a [`Records`] layer:
    /// its session cannot survive an exec.
    pub fn tls_session(&self) -> bool {
        matches!(self.tls.as_deref(), Some(Tls::Session { .. } | Tls::Broken))
    }

    /// The [`Records`] layer as plain data, for the hand-over.
    pub fn records_export(&self) -> Option<tls_record::RecordsExport> {
        match self.tls.as_deref() {
            Some(Tls::Records(r)) => Some(r.export()),
            _ => None,
        }
    }

    /// A quiet TLS 1.3 session hands its keys over to a [`Records`] layer
    /// and rustls's state is dropped. Quiet: the handshake is over,
    /// rustls has nothing to write and no plaintext to give, every byte it
    /// was given belongs to a complete record, and the peer has not
    /// closed. Otherwise nothing changes (a later flush tries again).
    /// An error means the session is lost and the connection must go.
    fn hand_over_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        let Tls::Session { conn, framing } = tls else {
            return Ok(());
        };
        if conn.is_handshaking()
            || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
            || conn.wants_write()
            || !framing.at_boundary()
        {
            return Ok(());
        }
        match conn.process_new_packets() {
            Ok(io) if io.plaintext_bytes_to_read() == 0 && !io.peer_has_closed() => {}
            _ => return Ok(()),
        }
        let Tls::Session { conn, .. } = std::mem::replace(tls, Tls::Broken) else {
            return Ok(());
        };
        let secrets = conn.dangerous_extract_secrets().map_err(invalid)?;
        *tls = Tls::Records(Records::new(secrets).map_err(invalid)?);
        Ok(())
    }

    /// Queue a TLS close_notify (before the write side is shut).
    fn tls_close_notify(&mut self) {
        match self.tls.as_deref_mut() {
            Some(Tls::Session { conn, .. }) => {
                conn.send_close_notify();
                let _ = conn.write_tls(&mut self.stream);
            }
            Some(Tls::Records(records)) => {
                if records.seal_close_notify().is_ok()
                    && let Ok(n) = self.stream.write(records.unsent())
                {
                    records.sent(n);
                }
            }
            Some(Tls::Broken) | None => {}
        }
    }

    /// Write as much of the queue as the socket takes. Returns whether the
    /// queue is empty afterwards, and the bytes written.
    pub fn flush(&mut self) -> io::Result<(bool, usize)> {
        match self.tls.as_deref() {
            Some(Tls::Records(_)) => return self.flush_records(),
            Some(_) => return self.flush_tls(),
            None => {}
        }
        let mut total = 0;
        while let Some(q) = self.out.as_deref_mut().filter(|q| !q.chunks.is_empty()) {
            if !self.writable {
                return Ok((false, total));
            }
            // The common case (one frame waiting) is a plain write; several
            // frames go out together in one writev.
            let result = if q.chunks.len() == 1 {
                self.stream.write(q.front().unwrap_or_default())
            } else {
                let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (i, chunk) in q.chunks.iter().take(MAX_IOV).enumerate() {
                    let b = chunk.bytes();
                    iov[i] = IoSlice::new(if i == 0 { &b[q.offset..] } else { b });
                    n += 1;
                }
                self.stream.write_vectored(&iov[..n])
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    q.consume(written);
                    total += written;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok((false, total));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // an idle connection holds no queue memory
        recycle(self.out.take());
        Ok((true, total))
    }

    /// TLS: move queued plaintext into rustls (bounded by its buffer limit)
    /// and write records until the socket is full or nothing is left.
    fn flush_tls(&mut self) -> io::Result<(bool, usize)> {
        self.needs_flush = false;
        let Some(Tls::Session { conn: tls, .. }) = self.tls.as_deref_mut() else {
            return Ok((true, 0));
        };
        let mut total = 0;
        loop {
            while let Some(q) = self.out.as_deref_mut()
                && let Some(bytes) = q.front()
            {
                let n = tls.writer().write(bytes)?;
                if n == 0 {
                    break; // rustls buffer full: write records first
                }
                q.consume(n);
            }
            if !tls.wants_write() {
                let empty = self.out.as_ref().is_none_or(|q| q.chunks.is_empty());
                if empty {
                    recycle(self.out.take());
                    if !matches!(self.phase, Phase::Closing(_)) {
                        self.hand_over_tls()?;
                    }
                }
                return Ok((empty, total));
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

    /// TLS after the hand-over: seal queued plaintext (at most
    /// `SEAL_AHEAD` bytes waiting) and write records until the socket is
    /// full or nothing is left; the sealed bytes' buffer is freed once sent.
    fn flush_records(&mut self) -> io::Result<(bool, usize)> {
        self.needs_flush = false;
        let Some(Tls::Records(records)) = self.tls.as_deref_mut() else {
            return Ok((true, 0));
        };
        let mut total = 0;
        loop {
            while records.unsent().len() < SEAL_AHEAD
                && let Some(q) = self.out.as_deref_mut()
                && let Some(bytes) = q.front()
            {
                let n = bytes.len().min(SEAL_AHEAD);
                records.seal(&bytes[..n]).map_err(invalid)?;
                q.consume(n);
            }
            if records.unsent().is_empty() {
                recycle(self.out.take());
                return Ok((true, total));
            }
            if !self.writable {
                return Ok((false, total));
            }
            match self.stream.write(records.unsent()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    records.sent(n);
                    total += n;
                }
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

/// Read and decrypt with the [`Records`] layer: the incomplete record kept
/// from the last read goes first in `buf`, then what the socket has; whole
/// records are opened in place and an incomplete one is kept again.
fn read_records(
    records: &mut Records,
    stream: &mut TcpStream,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        if records.peer_closed {
            return Ok(0);
        }
        let held = records.partial.len();
        if buf.len() <= held {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read buffer smaller than a TLS record",
            ));
        }
        buf[..held].copy_from_slice(&records.partial);
        let n = stream.read(&mut buf[held..])?;
        if n == 0 {
            return Ok(0);
        }
        let len = held + n;
        let opened = records.open(&mut buf[..len]).map_err(invalid)?;
        records.partial = if opened.closed || opened.consumed == len {
            Vec::new()
        } else {
            buf[opened.consumed..len].to_vec()
        };
        records.peer_closed = opened.closed;
        if opened.plain > 0 || opened.closed {
            return Ok(opened.plain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        crate::tls_record::tests::configs(versions, None)
    }

    /// A server `Conn` and a rustls client over a loopback socket pair.
    fn pair(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Conn, rustls::ClientConnection, std::net::TcpStream) {
        let (server, client) = configs(versions);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_nonblocking(true).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut conn = Conn::new(TcpStream::from_std(accepted), Listener::Main, 0);
        conn.tls = Some(Box::new(Tls::new(
            rustls::ServerConnection::new(server).unwrap(),
        )));
        conn.writable = true;
        let name = ServerName::try_from("localhost").unwrap();
        let client = rustls::ClientConnection::new(client, name).unwrap();
        (conn, client, peer)
    }

    /// Move bytes both ways until `done` or a second has passed; returns
    /// the plaintext the server read.
    fn drive(
        conn: &mut Conn,
        client: &mut rustls::ClientConnection,
        peer: &mut std::net::TcpStream,
        done: impl Fn(&Conn, &mut rustls::ClientConnection, &[u8]) -> bool,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + Duration::from_secs(2);
        while !done(conn, client, &got) {
            assert!(Instant::now() < until, "stuck: {:?}", conn.tls);
            while client.wants_write() {
                if client.write_tls(peer).is_err() {
                    break;
                }
            }
            loop {
                match conn.read_into(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("server read: {e}"),
                }
            }
            conn.flush().unwrap();
            if let Ok(n) = client.read_tls(peer)
                && n > 0
            {
                client.process_new_packets().unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    fn client_read(client: &mut rustls::ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = client.reader().read_to_end(&mut out);
        out
    }

    #[test]
    fn a_quiet_tls13_session_hands_over_its_keys() {
        let (mut conn, mut client, mut peer) = pair(&[&rustls::version::TLS13]);
        assert!(conn.tls_handshaking());
        client
            .writer()
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let got = drive(&mut conn, &mut client, &mut peer, |_, _, got| {
            got.len() == 18
        });
        assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
        assert!(!conn.tls_handshaking());
        // the answer goes out, and once all is written the keys are handed over
        conn.push(Chunk::Owned(b"HTTP/1.1 101 ok\r\n\r\n".to_vec()));
        drive(&mut conn, &mut client, &mut peer, |c, _, _| {
            matches!(c.tls.as_deref(), Some(Tls::Records(_)))
        });
        let _ = drive(&mut conn, &mut client, &mut peer, |_, cl, _| {
            cl.process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() >= 19)
        });
        assert_eq!(client_read(&mut client), b"HTTP/1.1 101 ok\r\n\r\n");
        let Some(Tls::Records(r)) = conn.tls.as_deref() else {
            panic!("not handed over")
        };
        assert!(r.partial.capacity() == 0 && r.out.capacity() == 0);
        assert!(conn.out.is_none(), "an idle connection holds no queue");
        // the emptied queue was kept for the next send, and is lent again
        let spare = SPARE.with_borrow(|s| s.last().map(|q| &**q as *const Queue));
        assert!(spare.is_some());
        conn.push(Chunk::Owned(b"x".to_vec()));
        assert_eq!(conn.out.as_deref().map(|q| q as *const Queue), spare);
        conn.clear_queue();

        // after the hand-over: both ways, a message larger than a record
        let big = vec![b'z'; 40_000];
        client.writer().write_all(&big).unwrap();
        let got = drive(&mut conn, &mut client, &mut peer, |_, _, got| {
            got.len() == big.len()
        });
        assert_eq!(got, big);
        conn.push(Chunk::Shared(Rc::from(&big[..])));
        let mut back = Vec::new();
        drive(&mut conn, &mut client, &mut peer, |_, cl, _| {
            cl.process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() > 0)
        });
        let until = Instant::now() + Duration::from_secs(2);
        while back.len() < big.len() && Instant::now() < until {
            back.extend(client_read(&mut client));
            if let Ok(n) = client.read_tls(&mut peer)
                && n > 0
            {
                client.process_new_packets().unwrap();
            }
        }
        assert_eq!(back, big);

        // the client's close_notify is the end of the stream
        client.send_close_notify();
        while client.wants_write() {
            client.write_tls(&mut peer).unwrap();
        }
        let mut buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            match conn.read_into(&mut buf) {
                Ok(0) => break,
                Ok(n) => panic!("{n} bytes after close_notify"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < until, "no end of stream");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        // and ours reaches the client
        conn.begin_closing(0, 0);
        conn.shut_write_when_closing();
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(n) = client.read_tls(&mut peer)
                && n > 0
                && client.process_new_packets().unwrap().peer_has_closed()
            {
                break;
            }
            assert!(Instant::now() < until, "no close_notify from the server");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn tls12_sessions_stay_with_rustls() {
        let (mut conn, mut client, mut peer) = pair(&[&rustls::version::TLS12]);
        client.writer().write_all(b"ping").unwrap();
        let got = drive(&mut conn, &mut client, &mut peer, |_, _, got| {
            got.len() == 4
        });
        assert_eq!(got, b"ping");
        conn.push(Chunk::Owned(b"pong".to_vec()));
        drive(&mut conn, &mut client, &mut peer, |_, cl, _| {
            cl.process_new_packets()
                .is_ok_and(|s| s.plaintext_bytes_to_read() == 4)
        });
        assert_eq!(client_read(&mut client), b"pong");
        assert!(matches!(conn.tls.as_deref(), Some(Tls::Session { .. })));
    }

    #[test]
    fn framing_follows_records_cut_anywhere() {
        let records = [
            vec![23, 3, 3, 0, 3, 1, 2, 3],
            vec![23, 3, 3, 0, 0],
            vec![22, 3, 3, 1, 0],
        ];
        let mut wire: Vec<u8> = records.concat();
        wire.extend(vec![0u8; 256]);
        for cut in 0..wire.len() {
            let mut f = Framing::default();
            f.observe(&wire[..cut]);
            let boundary = [0, 8, 13, wire.len()].contains(&cut);
            assert_eq!(f.at_boundary(), boundary, "cut {cut}");
            f.observe(&wire[cut..]);
            assert!(f.at_boundary());
        }
    }
}

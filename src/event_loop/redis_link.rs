//! The sockets of the two Redis connections (subscriber and publisher), in
//! the same mio loop as the clients. The protocol is in `redis::client`;
//! this part connects (plain or TLS), moves bytes, and logs outages once:
//! the first failure of an outage at WARN, retries at DEBUG, and the
//! recovery at WARN with how long it took.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;

use crate::redis::Target;
use crate::redis::client::{Client, Event, Role};
use crate::tls_record::{Records, RecordsExport};
use crate::{log_debug, log_info, log_warn};

/// Bytes read from Redis per call.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from Redis per loop turn before the clients get their go.
const READ_BUDGET: usize = 1024 * 1024;

/// TLS to Redis: rustls, or, for a subscriber an upgrade handed over, the
/// TLS 1.3 record layer the previous image extracted from its session.
enum LinkTls {
    Session(Box<rustls::ClientConnection>),
    Records(Box<Records>),
}

pub struct Link {
    pub client: Client,
    token: Token,
    target: Target,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    sock: Option<TcpStream>,
    tls: Option<LinkTls>,
    tcp_up: bool,
    /// When the current outage began (`None` while up or before the first connect).
    outage_since: Option<u64>,
    ever_up: bool,
    pub reconnects: u64,
    pub bytes_in: u64,
    /// The read budget ran out with input left: read again next turn.
    pub more_to_read: bool,
}

impl Link {
    pub fn new(
        role: Role,
        token: Token,
        target: &Target,
        channel: &str,
        tls_config: Option<Arc<rustls::ClientConfig>>,
    ) -> Link {
        Link {
            client: Client::new(role, target, channel),
            token,
            target: target.clone(),
            tls_config,
            sock: None,
            tls: None,
            tcp_up: false,
            outage_since: None,
            ever_up: false,
            reconnects: 0,
            bytes_in: 0,
            more_to_read: false,
        }
    }

    /// Take over a subscriber connection the previous process image set up
    /// (`revurb upgrade`), plain or with its TLS 1.3 record layer; see
    /// [`Client::adopt_ready`].
    pub fn adopt(
        &mut self,
        now: u64,
        mut sock: TcpStream,
        registry: &Registry,
        unread: Vec<u8>,
        messages: Vec<Vec<u8>>,
        tls: Option<&RecordsExport>,
    ) -> io::Result<()> {
        let tls = match tls {
            Some(x) => Some(LinkTls::Records(Box::new(
                Records::import(x).map_err(io::Error::other)?,
            ))),
            None => None,
        };
        registry.register(
            &mut sock,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.sock = Some(sock);
        self.tls = tls;
        self.tcp_up = true;
        self.ever_up = true;
        self.outage_since = None;
        self.client.adopt_ready(now, unread, messages);
        // what arrived since the previous image last read
        self.more_to_read = true;
        Ok(())
    }

    fn name(&self) -> &'static str {
        self.client.role().name()
    }

    /// Connect when the back-off allows, and run the client's timers.
    pub fn tick(&mut self, now: u64, registry: &Registry) -> Vec<Rc<[u8]>> {
        if self.client.should_connect(now)
            && let Err(e) = self.connect(now, registry)
        {
            return self.fail(now, &e, registry);
        }
        if let Err(e) = self.client.handle_timeout(now) {
            return self.fail(now, &e.0, registry);
        }
        Vec::new()
    }

    fn connect(&mut self, now: u64, registry: &Registry) -> Result<(), String> {
        let addr = resolve(&self.target)?;
        let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
        registry
            .register(
                &mut sock,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("cannot register the socket: {e}"))?;
        self.sock = Some(sock);
        self.tcp_up = false;
        self.client.connecting(now);
        Ok(())
    }

    /// Readiness on our token. Returns payloads to re-publish if it failed.
    pub fn ready(
        &mut self,
        now: u64,
        readable: bool,
        writable: bool,
        registry: &Registry,
    ) -> Vec<Rc<[u8]>> {
        if self.sock.is_none() {
            return Vec::new();
        }
        if writable && !self.tcp_up {
            match self.finish_connect(now) {
                Ok(true) => {}
                Ok(false) => return Vec::new(),
                Err(e) => return self.fail(now, &e, registry),
            }
        }
        let rustls_wants = matches!(&self.tls, Some(LinkTls::Session(t)) if t.wants_read());
        if (readable || rustls_wants)
            && let Err(e) = self.read(now)
        {
            return self.fail(now, &e, registry);
        }
        Vec::new()
    }

    /// A non-blocking connect finished: did it work?
    fn finish_connect(&mut self, now: u64) -> Result<bool, String> {
        let Some(sock) = &self.sock else {
            return Ok(false);
        };
        if let Ok(Some(e)) | Err(e) = sock.take_error() {
            return Err(format!("connect: {e}"));
        }
        match sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(format!("connect: {e}")),
        }
        let _ = sock.set_nodelay(true);
        self.tcp_up = true;
        if let Some(cfg) = &self.tls_config {
            let name = ServerName::try_from(self.target.host.clone()).map_err(|e| {
                format!("{:?} is not a valid TLS server name: {e}", self.target.host)
            })?;
            let conn = rustls::ClientConnection::new(cfg.clone(), name)
                .map_err(|e| format!("TLS setup: {e}"))?;
            self.tls = Some(LinkTls::Session(Box::new(conn)));
        } else {
            self.client.connected(now);
        }
        Ok(true)
    }

    fn read(&mut self, now: u64) -> Result<(), String> {
        self.more_to_read = false;
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 {
                // readiness is edge-triggered: come back next turn
                self.more_to_read = true;
                return Ok(());
            }
            let Some(sock) = self.sock.as_mut() else {
                return Ok(());
            };
            let n = match &mut self.tls {
                Some(LinkTls::Records(r)) => {
                    let Some(n) = read_records(r, sock, &mut buf, &mut self.client, now)? else {
                        return Ok(());
                    };
                    budget = budget.saturating_sub(n);
                    self.bytes_in += n as u64;
                    continue;
                }
                None => match sock.read(&mut buf) {
                    Ok(0) => return Err("Redis closed the connection".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("read: {e}")),
                },
                // plaintext rustls already holds first, then more records
                Some(LinkTls::Session(tls)) => match tls.reader().read(&mut buf) {
                    Ok(0) => return Err("Redis closed the TLS session".into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match tls.read_tls(sock) {
                            Ok(0) => return Err("Redis closed the connection".into()),
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(format!("read: {e}")),
                        }
                        tls.process_new_packets()
                            .map_err(|e| format!("TLS with Redis failed: {e}"))?;
                        if !tls.is_handshaking() && self.client.is_connecting() {
                            self.client.connected(now);
                        }
                        continue;
                    }
                    Err(e) => return Err(format!("TLS read: {e}")),
                },
            };
            budget = budget.saturating_sub(n);
            self.bytes_in += n as u64;
            self.client.received(now, &buf[..n]).map_err(|e| e.0)?;
        }
    }

    /// Write what the client has queued. Returns payloads to re-publish on failure.
    pub fn flush(&mut self, now: u64, registry: &Registry) -> Vec<Rc<[u8]>> {
        if !self.tcp_up {
            return Vec::new();
        }
        match self.write() {
            Ok(()) => Vec::new(),
            Err(e) => self.fail(now, &e, registry),
        }
    }

    fn write(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        match &mut self.tls {
            None => {
                while !self.client.output().is_empty() {
                    match sock.write(self.client.output()) {
                        Ok(0) => return Err("write returned 0".into()),
                        Ok(n) => self.client.wrote(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
            Some(LinkTls::Records(r)) => loop {
                if r.unsent().is_empty() {
                    let out = self.client.output();
                    if out.is_empty() {
                        break;
                    }
                    let n = out.len().min(crate::tls_record::MAX_PLAINTEXT * 4);
                    r.seal(&out[..n])
                        .map_err(|e| format!("TLS with Redis failed: {e}"))?;
                    self.client.wrote(n);
                }
                match sock.write(r.unsent()) {
                    Ok(0) => return Err("write returned 0".into()),
                    Ok(n) => r.sent(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            },
            Some(LinkTls::Session(tls)) => {
                if !tls.is_handshaking() && !self.client.output().is_empty() {
                    let n = tls
                        .writer()
                        .write(self.client.output())
                        .map_err(|e| format!("TLS write: {e}"))?;
                    self.client.wrote(n);
                }
                while tls.wants_write() {
                    match tls.write_tls(sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
        }
        Ok(())
    }

    /// Drop the socket and schedule a reconnect; returns unacknowledged publishes.
    pub fn fail(&mut self, now: u64, why: &str, registry: &Registry) -> Vec<Rc<[u8]>> {
        if let Some(mut s) = self.sock.take() {
            let _ = registry.deregister(&mut s);
        }
        self.tls = None;
        self.tcp_up = false;
        self.more_to_read = false;
        let was_ready = self.client.is_ready();
        let back = self.client.disconnected(now);
        let retry_in = self.client.poll_timeout().saturating_sub(now);
        if self.outage_since.is_none() {
            self.outage_since = Some(now);
            if self.ever_up || was_ready {
                log_warn!(
                    "Redis {} connection to {} lost: {why}; serving local clients only, reconnecting (next try in {retry_in} ms)",
                    self.name(),
                    self.target
                );
            } else {
                log_warn!(
                    "Redis {} cannot reach {}: {why}; serving local clients only, retrying (next try in {retry_in} ms)",
                    self.name(),
                    self.target
                );
            }
        } else {
            log_debug!(
                "Redis {} still unreachable: {why}; next try in {retry_in} ms",
                self.name()
            );
        }
        back
    }

    /// Events from the client, with outage bookkeeping on `Ready`.
    pub fn poll_event(&mut self, now: u64) -> Option<Event> {
        let e = self.client.poll_event()?;
        if e == Event::Ready {
            match self.outage_since.take() {
                Some(since) if self.ever_up => {
                    self.reconnects += 1;
                    log_warn!(
                        "Redis {} connection to {} restored after {:.1} s",
                        self.name(),
                        self.target,
                        (now - since) as f64 / 1000.0
                    );
                }
                Some(since) => log_warn!(
                    "Redis {} connected to {} after {:.1} s of retrying",
                    self.name(),
                    self.target,
                    (now - since) as f64 / 1000.0
                ),
                None => log_info!("Redis {} connected to {}", self.name(), self.target),
            }
            self.ever_up = true;
        }
        Some(e)
    }
}

/// One read with the record layer into `buf`, whole records opened in
/// place and their plaintext handed to `client`; the bytes read, or `None`
/// when the socket has nothing more. Only an incomplete record is copied
/// (into `partial`, which goes first the next time).
fn read_records(
    r: &mut Records,
    sock: &mut TcpStream,
    buf: &mut [u8],
    client: &mut Client,
    now: u64,
) -> Result<Option<usize>, String> {
    let n = loop {
        match sock.read(buf) {
            Ok(0) => return Err("Redis closed the connection".into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let mut joined;
    let records: &mut [u8] = if r.partial.is_empty() {
        &mut buf[..n]
    } else {
        joined = std::mem::take(&mut r.partial);
        joined.extend_from_slice(&buf[..n]);
        &mut joined
    };
    let opened = r
        .open(records)
        .map_err(|e| format!("TLS with Redis failed: {e}"))?;
    if opened.closed {
        return Err("Redis closed the TLS session".into());
    }
    if opened.consumed < records.len() {
        r.partial = records[opened.consumed..].to_vec();
    }
    client
        .received(now, &records[..opened.plain])
        .map_err(|e| e.0)?;
    Ok(Some(n))
}

fn resolve(t: &Target) -> Result<SocketAddr, String> {
    // Name lookups block; they happen only when (re)connecting to Redis.
    (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", t.host))
}

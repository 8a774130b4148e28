//! The webhook transport: the sockets of the webhook HTTP/1.1 client, in
//! the same `mio` poll as everything else. The bytes of a request come
//! encoded ([`crate::webhook::http::encode_request`]) and its answer is read
//! by [`ResponseParser`]; this part connects (plain or rustls), moves bytes,
//! keeps connections for reuse, resolves names off the loop and keeps the
//! deadlines. What to send, when, and what to do about a failure is the
//! dispatcher's (`webhook::dispatch`).
//!
//! # How the loop drives it
//!
//! - [`Transport::send`] starts one request, already encoded, to the URL's
//!   origin (scheme, host, port); every request sent gets exactly one
//!   outcome from [`Transport::poll_done`]: [`Outcome::Status`] (the
//!   receiver answered) or [`Outcome::Failed`] with a [`Failure`] worded
//!   for a log line.
//! - Its tokens are [`TOKEN_BASE`] and up, far above the loop's;
//!   [`Transport::owns`] says whether a token is the transport's, and
//!   [`Transport::ready`] takes its readiness events.
//! - [`Transport::poll_timeout`] is its next deadline and
//!   [`Transport::handle_timeout`] fires what is due; a spurious call does
//!   nothing.
//! - Drain [`Transport::poll_done`] after each of these calls.
//!
//! Changes from the API first sketched: `ready` takes no `mio` event (every
//! readiness leads to the same attempt to read and write until
//! `WouldBlock`), and `handle_timeout` takes the registry (a deadline frees
//! a connection that a waiting request may open at once).
//!
//! # Connections
//!
//! A request takes an idle keep-alive connection to its origin if there is
//! one (the most recently used, so spare ones idle out), else opens one, at
//! most [`Limits::per_origin`] per origin and [`Limits::total`] in all (an
//! idle connection to another origin is closed to make room). One request
//! per connection at a time: no pipelining. Beyond that, requests wait in
//! the origin's queue, at most [`Limits::queue_per_origin`] of them and
//! [`Limits::bytes_in_flight`] bytes of requests (queued or on a
//! connection) in all; past either, the request fails at once with
//! [`Failure::QueueFull`] so the caller counts it.
//!
//! A connection's life: connecting (TCP, then the TLS handshake for
//! `https://`, within [`Limits::connect_timeout_ms`]; a refused address
//! moves on to the next address of the name), busy (the request is written;
//! the response must be complete within [`Limits::response_timeout_ms`] of
//! the last byte written), idle (closed after [`Limits::idle_timeout_ms`],
//! when the receiver closes it, or when it sends anything unasked).
//!
//! A request on a reused connection that breaks before any byte of the
//! response is sent again, once, on a fresh connection: the receiver may
//! have closed the idle connection just as the request went out. A timeout
//! is not retried here (the receiver may have acted on the request); the
//! dispatcher decides.
//!
//! Once the status line is in, the status is the outcome even if the rest
//! of the response then fails (too large, cut short, too slow): the
//! receiver has answered, and sending the events again would duplicate
//! them. The connection is closed instead of reused.
//!
//! # TLS
//!
//! `https://` uses a rustls `ClientConnection` with the configuration given
//! to [`Transport::new`] (the loop passes `tls::webhook_client_config`: the
//! CA roots of `SSL_CERT_FILE` or the system bundle, ALPN `http/1.1`; tests
//! pass their own CA). Without roots, https requests fail at once with
//! [`Failure::Tls`] saying so, and http ones still work.
//! [`Transport::set_tls`] swaps the configuration for new connections (on
//! SIGHUP).
//!
//! # Name resolution
//!
//! `getaddrinfo` blocks, for seconds when a DNS server is slow, so the loop
//! never calls it: one small thread (`revurb-dns`), started on the first
//! host name (IP literals skip it; a server without webhooks never starts
//! it), takes names from a bounded channel, calls `ToSocketAddrs` and sends
//! the addresses back on another bounded channel, waking the loop through a
//! `mio::Waker` (the poll's only one). Answers are cached for
//! [`Limits::dns_ttl_ms`] (getaddrinfo does not tell the record's TTL) and
//! forgotten when connecting to them fails, so a receiver that moves is
//! found again. A lookup that takes longer than [`Limits::dns_timeout_ms`]
//! fails the requests waiting for it. Resolving at start and on reload
//! instead would have kept the process single-threaded, but a name that
//! does not resolve at start would then hold up the start (or need this
//! machinery anyway), and a receiver whose address changes would be lost
//! until the next reload.
//!
//! # Limits
//!
//! Everything is bounded: connections (per origin and in all), requests
//! waiting (per origin) and their bytes, the response (16 KiB of head,
//! 64 KiB of body: [`crate::webhook::http`]), the read per event (the
//! parser stops past its limits), names waiting for the resolver
//! ([`LOOKUPS_WAITING`]) and cached ([`DNS_CACHE`]). [`Transport::stats`]
//! gives the figures for the metrics.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token, Waker};
use rustls::pki_types::ServerName;

use crate::webhook::Url;
use crate::webhook::http::{Failure, Outcome, Response, ResponseParser};

/// The transport's first token (the resolver's waker); connection slot `n`
/// is `TOKEN_BASE + 1 + n`. The loop's own tokens are a handful of fixed
/// ones and one per client connection, far below.
pub const TOKEN_BASE: usize = 1 << (usize::BITS - 4);
const WAKER: Token = Token(TOKEN_BASE);
/// Names waiting for the resolver thread, and answers waiting for the loop.
pub const LOOKUPS_WAITING: usize = 64;
/// Names whose addresses are kept.
pub const DNS_CACHE: usize = 256;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The transport's bounds and deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open to one origin (connecting, busy or idle).
    pub per_origin: usize,
    /// Connections open in all.
    pub total: usize,
    /// Requests waiting for a connection to one origin.
    pub queue_per_origin: usize,
    /// Bytes of requests accepted and not yet answered, in all.
    pub bytes_in_flight: usize,
    /// TCP connect and TLS handshake.
    pub connect_timeout_ms: u64,
    /// From the last byte of the request written to the end of the response.
    pub response_timeout_ms: u64,
    /// An unused keep-alive connection is closed after this long.
    pub idle_timeout_ms: u64,
    /// A name lookup that takes longer fails its requests.
    pub dns_timeout_ms: u64,
    /// How long resolved addresses are used.
    pub dns_ttl_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_origin: 4,
            total: 128,
            queue_per_origin: 1024,
            bytes_in_flight: 32 * 1024 * 1024,
            connect_timeout_ms: 5_000,
            response_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            dns_timeout_ms: 5_000,
            dns_ttl_ms: 60_000,
        }
    }
}

/// Figures for the metrics: gauges (now) and counters (since start).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Gauge: connections open (connecting, busy or idle).
    pub connections_open: u64,
    /// Gauge: requests on a connection (connecting or busy).
    pub requests_active: u64,
    /// Gauge: requests waiting for a connection.
    pub requests_queued: u64,
    /// Gauge: bytes of requests accepted and not yet answered.
    pub bytes_in_flight: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Requests sent on a connection that had carried one before.
    pub requests_reused: u64,
    /// Requests sent again on a fresh connection after a reused one broke.
    pub requests_retried: u64,
    /// Answered requests (any status).
    pub responses: u64,
    /// Failed requests, by [`Failure::kind`] in the order of [`Failure::KINDS`].
    pub failures: [u64; Failure::KINDS.len()],
    /// Names given to the resolver thread.
    pub lookups: u64,
}

impl Stats {
    /// Failures by label (the metrics count them in the dispatcher, by try).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn failures(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Failure::KINDS
            .iter()
            .copied()
            .zip(self.failures.iter().copied())
    }
}

/// A request accepted and not yet answered.
#[derive(Debug)]
struct Request {
    id: u64,
    bytes: Vec<u8>,
    /// Must go on a new connection (it broke on a reused one).
    fresh: bool,
    /// Already sent again once.
    retried: bool,
}

/// One origin: its waiting requests and the count of its connections.
#[derive(Debug)]
struct Origin {
    tls: bool,
    host: Rc<str>,
    port: u16,
    queue: VecDeque<Request>,
    /// Connections open to it.
    conns: usize,
    /// Its idle connections (slots), the most recently used last.
    idle: Vec<usize>,
}

/// A request on a connection.
#[derive(Debug)]
struct Busy {
    req: Request,
    /// Request bytes written (to the socket, or to rustls).
    written: usize,
    parser: ResponseParser,
    reused: bool,
    /// The response, complete; the connection is read until it would
    /// block, and anything more makes it unfit for reuse.
    answer: Option<Response>,
}

#[derive(Debug)]
enum State {
    /// TCP connect, then the TLS handshake; the request waits.
    Connecting(Request),
    Busy(Busy),
    Idle,
}

/// One connection to an origin.
struct Conn {
    origin: Rc<str>,
    host: Rc<str>,
    https: bool,
    sock: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    /// The address connected to, and those to try if it fails (in order,
    /// the next one last).
    addr: SocketAddr,
    more_addrs: Vec<SocketAddr>,
    tcp_up: bool,
    state: State,
    /// Of the state: connect, response or idle deadline.
    deadline: u64,
}

/// What a round of reading and writing on a connection came to.
enum Step {
    /// Waiting for the socket.
    Wait,
    /// The TLS handshake has just finished.
    Handshaken,
    /// The response is complete.
    Answered(Response),
    /// The connection is broken; the request (if any) gets this failure.
    Broken(Failure),
    /// An idle connection was closed by the receiver (or it sent bytes
    /// nobody asked for).
    Gone,
}

/// The webhook client's connections, their waiting requests and the
/// resolver; see the module docs for how the loop drives it.
pub struct Transport {
    limits: Limits,
    tls: Result<Arc<rustls::ClientConfig>, String>,
    /// Connection slots; slot `n` has token `TOKEN_BASE + 1 + n`.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    origins: HashMap<Rc<str>, Origin>,
    resolver: Resolver,
    done: VecDeque<(u64, Outcome)>,
    /// Origins that may be able to start a waiting request.
    dirty: Vec<Rc<str>>,
    /// Connections to read and write now.
    kicked: Vec<usize>,
    /// A connection closed: every origin with waiting requests may go.
    pump_all: bool,
    bytes: usize,
    stats: Stats,
    scratch: Vec<u8>,
}

impl Transport {
    /// A transport with these bounds; `tls` is the client configuration for
    /// `https://`, or why there is none.
    pub fn new(tls: Result<Arc<rustls::ClientConfig>, String>, limits: Limits) -> Transport {
        Transport {
            resolver: Resolver::new(limits.dns_ttl_ms, limits.dns_timeout_ms),
            limits,
            tls,
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            origins: HashMap::new(),
            done: VecDeque::new(),
            dirty: Vec::new(),
            kicked: Vec::new(),
            pump_all: false,
            bytes: 0,
            stats: Stats::default(),
            scratch: vec![0; READ_CHUNK],
        }
    }

    /// Use this TLS configuration for connections opened from now on.
    pub fn set_tls(&mut self, tls: Result<Arc<rustls::ClientConfig>, String>) {
        self.tls = tls;
    }

    /// Whether a readiness token is the transport's.
    pub fn owns(token: Token) -> bool {
        token.0 >= TOKEN_BASE
    }

    /// The figures for the metrics.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.connections_open = self.open as u64;
        s.requests_active = self
            .conns
            .iter()
            .flatten()
            .filter(|c| !matches!(c.state, State::Idle))
            .count() as u64;
        s.requests_queued = self.origins.values().map(|o| o.queue.len() as u64).sum();
        s.bytes_in_flight = self.bytes as u64;
        s.lookups = self.resolver.asked;
        s
    }

    /// Start one request (`request`: the encoded bytes) to `url`'s origin;
    /// its outcome comes out of [`Transport::poll_done`] with `id`.
    pub fn send(&mut self, now: u64, registry: &Registry, id: u64, url: &Url, request: Vec<u8>) {
        if url.tls
            && let Err(e) = &self.tls
        {
            let f = Failure::Tls(e.clone());
            self.report(id, Outcome::Failed(f));
            return;
        }
        let key: Rc<str> = url.origin().into();
        let queue_full = self
            .origins
            .get(&key)
            .is_some_and(|o| o.queue.len() >= self.limits.queue_per_origin);
        if queue_full || self.bytes + request.len() > self.limits.bytes_in_flight {
            self.report(id, Outcome::Failed(Failure::QueueFull));
            return;
        }
        self.bytes += request.len();
        let origin = self.origins.entry(key.clone()).or_insert_with(|| Origin {
            tls: url.tls,
            host: url.host.as_str().into(),
            port: url.port,
            queue: VecDeque::new(),
            conns: 0,
            idle: Vec::new(),
        });
        origin.queue.push_back(Request {
            id,
            bytes: request,
            fresh: false,
            retried: false,
        });
        self.mark(key);
        self.settle(now, registry);
    }

    /// The next finished request and its outcome.
    pub fn poll_done(&mut self) -> Option<(u64, Outcome)> {
        self.done.pop_front()
    }

    /// Requests accepted and not yet reported.
    pub fn pending(&self) -> usize {
        self.conns
            .iter()
            .flatten()
            .filter(|c| !matches!(c.state, State::Idle))
            .count()
            + self.origins.values().map(|o| o.queue.len()).sum::<usize>()
    }

    /// The earliest deadline: a connect, a response, an idle connection to
    /// close, a name lookup to give up on.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.conns
            .iter()
            .flatten()
            .map(|c| c.deadline)
            .chain(self.resolver.next_deadline())
            .min()
    }

    /// Fire the deadlines that are due.
    pub fn handle_timeout(&mut self, now: u64, registry: &Registry) {
        for slot in 0..self.conns.len() {
            let Some(c) = &self.conns[slot] else {
                continue;
            };
            if c.deadline > now {
                continue;
            }
            match c.state {
                State::Connecting(_) => self.broken(registry, slot, Failure::ConnectTimeout),
                State::Busy(_) => self.broken(registry, slot, Failure::ResponseTimeout),
                State::Idle => self.close(registry, slot),
            }
        }
        for host in self.resolver.expired(now) {
            let why = format!(
                "looking up {host} took longer than {} ms",
                self.limits.dns_timeout_ms
            );
            self.lookup_failed(&host, &why);
        }
        self.settle(now, registry);
    }

    /// A readiness event on one of the transport's tokens.
    pub fn ready(&mut self, now: u64, registry: &Registry, token: Token) {
        if token == WAKER {
            for (host, answer) in self.resolver.answers(now) {
                match answer {
                    Ok(()) => {
                        let keys: Vec<Rc<str>> = self
                            .origins
                            .iter()
                            .filter(|(_, o)| *o.host == *host)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in keys {
                            self.mark(k);
                        }
                    }
                    Err(e) => self.lookup_failed(&host, &e),
                }
            }
        } else if let Some(slot) = token.0.checked_sub(TOKEN_BASE + 1)
            && self.conns.get(slot).is_some_and(Option::is_some)
        {
            self.kicked.push(slot);
        }
        self.settle(now, registry);
    }

    // ---- the work list ------------------------------------------------------

    fn mark(&mut self, key: Rc<str>) {
        if !self.dirty.contains(&key) {
            self.dirty.push(key);
        }
    }

    /// Drive the kicked connections and start what waits, until nothing
    /// moves.
    fn settle(&mut self, now: u64, registry: &Registry) {
        loop {
            if let Some(slot) = self.kicked.pop() {
                self.drive(now, registry, slot);
            } else if let Some(key) = self.dirty.pop() {
                self.pump(now, registry, &key);
            } else if std::mem::take(&mut self.pump_all) {
                let waiting: Vec<Rc<str>> = self
                    .origins
                    .iter()
                    .filter(|(_, o)| !o.queue.is_empty())
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in waiting {
                    self.mark(k);
                }
            } else {
                return;
            }
        }
    }

    /// Start the origin's waiting requests while connections allow.
    fn pump(&mut self, now: u64, registry: &Registry, key: &Rc<str>) {
        loop {
            let Some(o) = self.origins.get_mut(key) else {
                return;
            };
            let Some(front) = o.queue.front() else {
                if o.conns == 0 {
                    self.origins.remove(key);
                }
                return;
            };
            let fresh = front.fresh;
            if !fresh && let Some(slot) = o.idle.pop() {
                if let Some(req) = o.queue.pop_front() {
                    self.reuse(now, key, slot, req);
                }
                continue;
            }
            if o.conns >= self.limits.per_origin {
                // a request that must go on a fresh connection takes the
                // place of an idle one
                match (fresh, o.idle.first().copied()) {
                    (true, Some(slot)) => {
                        self.close(registry, slot);
                        continue;
                    }
                    _ => return,
                }
            }
            let (host, port, tls) = (o.host.clone(), o.port, o.tls);
            match self.resolver.lookup(now, registry, &host) {
                Lookup::Pending => return,
                Lookup::Failed(e) => {
                    self.fail_queue(key, &Failure::Dns(e));
                    return;
                }
                Lookup::Ready(_) if self.open >= self.limits.total => {
                    // room from an idle connection (of this origin only
                    // when the request must go on a fresh one), or wait:
                    // `pump_all` comes back when one closes or idles
                    match self.any_idle() {
                        Some(slot) => self.close(registry, slot),
                        None => return,
                    }
                }
                Lookup::Ready(ips) => {
                    let Some(req) = self.origins.get_mut(key).and_then(|o| o.queue.pop_front())
                    else {
                        return;
                    };
                    let addrs = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
                    self.connect(now, registry, key, &host, tls, addrs, req);
                }
            }
        }
    }

    /// An idle connection (the longest idle of its origin), to close for
    /// room.
    fn any_idle(&self) -> Option<usize> {
        self.origins.values().find_map(|o| o.idle.first().copied())
    }

    /// Every request waiting for `key` fails.
    fn fail_queue(&mut self, key: &Rc<str>, f: &Failure) {
        let Some(o) = self.origins.get_mut(key) else {
            return;
        };
        let reqs: Vec<Request> = o.queue.drain(..).collect();
        for req in reqs {
            self.finish(req, Outcome::Failed(f.clone()));
        }
    }

    /// A name did not resolve: the requests of its origins that have no
    /// connection to wait for fail.
    fn lookup_failed(&mut self, host: &str, why: &str) {
        let keys: Vec<Rc<str>> = self
            .origins
            .iter()
            .filter(|(_, o)| *o.host == *host && o.conns == 0)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.fail_queue(&k, &Failure::Dns(why.to_string()));
            self.mark(k);
        }
    }

    fn report(&mut self, id: u64, outcome: Outcome) {
        match &outcome {
            Outcome::Status(_) => self.stats.responses += 1,
            Outcome::Failed(f) => {
                if let Some(i) = Failure::KINDS.iter().position(|k| *k == f.kind()) {
                    self.stats.failures[i] += 1;
                }
            }
        }
        self.done.push_back((id, outcome));
    }

    /// The request is over: release its bytes and report.
    fn finish(&mut self, req: Request, outcome: Outcome) {
        self.bytes = self.bytes.saturating_sub(req.bytes.len());
        self.report(req.id, outcome);
    }

    // ---- connections --------------------------------------------------------

    /// Put `req` on the idle connection in `slot`.
    fn reuse(&mut self, now: u64, key: &Rc<str>, slot: usize, req: Request) {
        let timeout = self.limits.response_timeout_ms;
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            // idle lists only hold open slots; should one not be, the
            // request waits for the next connection
            if let Some(o) = self.origins.get_mut(key) {
                o.queue.push_front(req);
            }
            return;
        };
        c.state = State::Busy(Busy {
            req,
            written: 0,
            parser: ResponseParser::new(),
            reused: true,
            answer: None,
        });
        c.deadline = now + timeout;
        self.stats.requests_reused += 1;
        self.kicked.push(slot);
    }

    /// Open a connection for `req` to the first of `addrs` that takes a
    /// connect.
    #[allow(clippy::too_many_arguments)] // the origin's parts, taken apart by the caller
    fn connect(
        &mut self,
        now: u64,
        registry: &Registry,
        key: &Rc<str>,
        host: &Rc<str>,
        tls: bool,
        mut addrs: Vec<SocketAddr>,
        req: Request,
    ) {
        addrs.reverse(); // the next to try last
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let mut last = Failure::Dns(format!("{host} has no address"));
        while let Some(addr) = addrs.pop() {
            match open_socket(registry, slot, addr) {
                Ok(sock) => {
                    self.conns[slot] = Some(Conn {
                        origin: key.clone(),
                        host: host.clone(),
                        https: tls,
                        sock,
                        tls: None,
                        addr,
                        more_addrs: addrs,
                        tcp_up: false,
                        state: State::Connecting(req),
                        deadline: now + self.limits.connect_timeout_ms,
                    });
                    self.open += 1;
                    self.stats.connections_opened += 1;
                    if let Some(o) = self.origins.get_mut(key) {
                        o.conns += 1;
                    }
                    // the writable event says when TCP is up; TLS starts then
                    return;
                }
                Err(e) => last = connect_failure(addr, &e),
            }
        }
        self.free.push(slot);
        self.resolver.forget(host);
        self.finish(req, Outcome::Failed(last));
    }

    /// Read and write on a connection until the socket would block, and
    /// act on what came of it.
    fn drive(&mut self, now: u64, registry: &Registry, slot: usize) {
        let response_timeout = self.limits.response_timeout_ms;
        loop {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            if !c.tcp_up {
                match c.tcp_connected() {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(e) => {
                        self.connect_failed(registry, slot, &e);
                        return;
                    }
                }
                c.tcp_up = true;
                let _ = c.sock.set_nodelay(true);
                if c.https {
                    let started = match &self.tls {
                        Ok(cfg) => start_tls(cfg, &c.host),
                        Err(e) => Err(e.clone()),
                    };
                    match started {
                        Ok(t) => c.tls = Some(t),
                        Err(e) => {
                            self.broken(registry, slot, Failure::Tls(e));
                            return;
                        }
                    }
                } else {
                    c.begin(now, response_timeout);
                }
            }
            match c.io(now, response_timeout, &mut self.scratch) {
                Step::Wait => return,
                Step::Handshaken => c.begin(now, response_timeout),
                Step::Answered(r) => {
                    self.answered(now, registry, slot, r);
                    return;
                }
                Step::Broken(f) => {
                    self.broken(registry, slot, f);
                    return;
                }
                Step::Gone => {
                    self.close(registry, slot);
                    return;
                }
            }
        }
    }

    /// TCP connect failed: the next address, or the request fails.
    fn connect_failed(&mut self, registry: &Registry, slot: usize, e: &io::Error) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut last = connect_failure(c.addr, e);
        // the name may have moved: look it up again next time
        self.resolver.forget(&c.host);
        while let Some(addr) = c.more_addrs.pop() {
            let _ = registry.deregister(&mut c.sock);
            match open_socket(registry, slot, addr) {
                Ok(sock) => {
                    c.sock = sock;
                    c.addr = addr;
                    return;
                }
                Err(e) => last = connect_failure(addr, &e),
            }
        }
        self.broken(registry, slot, last);
    }

    /// The response is complete: report it, keep the connection or close it.
    fn answered(&mut self, now: u64, registry: &Registry, slot: usize, r: Response) {
        let idle_timeout = self.limits.idle_timeout_ms;
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let State::Busy(busy) = std::mem::replace(&mut c.state, State::Idle) else {
            return;
        };
        c.deadline = now + idle_timeout;
        let key = c.origin.clone();
        self.finish(busy.req, Outcome::Status(r.status));
        if r.keep_alive
            && let Some(o) = self.origins.get_mut(&key)
        {
            o.idle.push(slot);
            self.mark(key);
            // at the cap, another origin may be waiting for this one to
            // idle (and be closed for room)
            self.pump_all |= self.open >= self.limits.total;
        } else {
            self.close(registry, slot);
        }
    }

    /// The connection cannot go on: its request gets its outcome (or one
    /// more try on a fresh connection) and the connection is closed.
    fn broken(&mut self, registry: &Registry, slot: usize, f: Failure) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let key = c.origin.clone();
        match std::mem::replace(&mut c.state, State::Idle) {
            State::Idle => {}
            State::Connecting(req) => self.finish(req, Outcome::Failed(f)),
            State::Busy(mut busy) => {
                let again = busy.reused
                    && !busy.req.retried
                    && !busy.parser.started()
                    && matches!(f, Failure::Closed(_));
                if again && let Some(o) = self.origins.get_mut(&key) {
                    busy.req.fresh = true;
                    busy.req.retried = true;
                    o.queue.push_front(busy.req);
                    self.stats.requests_retried += 1;
                } else if let Some(status) = busy.parser.status() {
                    self.finish(busy.req, Outcome::Status(status));
                } else {
                    self.finish(busy.req, Outcome::Failed(f));
                }
            }
        }
        self.close(registry, slot);
    }

    /// Deregister and drop the connection in `slot` (its request, if any,
    /// has had its outcome).
    fn close(&mut self, registry: &Registry, slot: usize) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let State::Connecting(req) | State::Busy(Busy { req, .. }) =
            std::mem::replace(&mut c.state, State::Idle)
        {
            // callers settle the request first; never lose one
            self.finish(req, Outcome::Failed(Failure::Closed("dropped".into())));
        }
        if let Some(t) = &mut c.tls {
            t.send_close_notify();
            let _ = t.write_tls(&mut c.sock);
        }
        let _ = registry.deregister(&mut c.sock);
        self.free.push(slot);
        self.open -= 1;
        if let Some(o) = self.origins.get_mut(&c.origin) {
            o.conns -= 1;
            o.idle.retain(|s| *s != slot);
        }
        self.mark(c.origin.clone());
        self.pump_all = true;
    }
}

fn open_socket(registry: &Registry, slot: usize, addr: SocketAddr) -> io::Result<TcpStream> {
    let mut sock = TcpStream::connect(addr)?;
    registry.register(
        &mut sock,
        Token(TOKEN_BASE + 1 + slot),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(sock)
}

fn connect_failure(addr: SocketAddr, e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failure::Refused(addr.to_string())
    } else {
        Failure::Connect(format!("{addr}: {e}"))
    }
}

fn start_tls(
    cfg: &Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<Box<rustls::ClientConnection>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
    let mut t =
        rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| format!("TLS setup: {e}"))?;
    // what rustls holds beyond the socket: a request is written to it only
    // as fast as the socket takes it
    t.set_buffer_limit(Some(64 * 1024));
    Ok(Box::new(t))
}

impl Conn {
    /// Whether a non-blocking connect has finished (error if it failed).
    fn tcp_connected(&self) -> io::Result<bool> {
        if let Some(e) = self.sock.take_error()? {
            return Err(e);
        }
        match self.sock.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The connection is ready: the waiting request starts.
    fn begin(&mut self, now: u64, response_timeout: u64) {
        if let State::Connecting(req) = std::mem::replace(&mut self.state, State::Idle) {
            self.state = State::Busy(Busy {
                req,
                written: 0,
                parser: ResponseParser::new(),
                reused: false,
                answer: None,
            });
            self.deadline = now + response_timeout;
        }
    }

    /// Write what there is to write, read what there is to read.
    fn io(&mut self, now: u64, response_timeout: u64, buf: &mut [u8]) -> Step {
        if let Err(f) = self.write(now, response_timeout) {
            return Step::Broken(f);
        }
        let step = self.read(buf);
        if !matches!(step, Step::Wait) {
            return step;
        }
        // reading may have queued TLS records to send (handshake, alerts)
        match self.write(now, response_timeout) {
            Ok(()) => Step::Wait,
            Err(f) => Step::Broken(f),
        }
    }

    /// Write the request (plain, or through rustls) and rustls's records.
    fn write(&mut self, now: u64, response_timeout: u64) -> Result<(), Failure> {
        let broke = |e: io::Error| Failure::Closed(format!("write: {e}"));
        loop {
            let mut progress = false;
            if let State::Busy(b) = &mut self.state
                && b.written < b.req.bytes.len()
            {
                let rest = &b.req.bytes[b.written..];
                let n = match &mut self.tls {
                    None => match self.sock.write(rest) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(broke(e)),
                    },
                    // rustls takes what its buffer limit allows
                    Some(t) => t.writer().write(rest).map_err(broke)?,
                };
                if n > 0 {
                    b.written += n;
                    progress = true;
                    if self.tls.is_none() {
                        self.deadline = now + response_timeout;
                    }
                }
            }
            if let Some(t) = &mut self.tls {
                while t.wants_write() {
                    match t.write_tls(&mut self.sock) {
                        Ok(0) => break,
                        Ok(_) => {
                            progress = true;
                            if matches!(self.state, State::Busy(_)) {
                                self.deadline = now + response_timeout;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(broke(e)),
                    }
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Read until the socket would block, feeding the response parser.
    fn read(&mut self, buf: &mut [u8]) -> Step {
        loop {
            let got = match &mut self.tls {
                None => match self.sock.read(buf) {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.drained(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.read_error(e),
                },
                Some(t) => match t.reader().read(buf) {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // no plaintext: take records from the socket
                        match t.read_tls(&mut self.sock) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                return self.drained();
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return self.read_error(e),
                        }
                        if let Err(e) = t.process_new_packets() {
                            // send the alert if the socket takes it
                            let _ = t.write_tls(&mut self.sock);
                            return Step::Broken(Failure::Tls(e.to_string()));
                        }
                        if matches!(self.state, State::Connecting(_)) && !t.is_handshaking() {
                            return Step::Handshaken;
                        }
                        continue;
                    }
                    Err(e) => return Step::Broken(Failure::Tls(e.to_string())),
                },
            };
            match got {
                Some(n) => {
                    if let Some(step) = self.received(&buf[..n]) {
                        return step;
                    }
                }
                None => return self.eof(),
            }
        }
    }

    /// The socket has nothing more for now.
    fn drained(&self) -> Step {
        match &self.state {
            State::Busy(Busy {
                answer: Some(r), ..
            }) => Step::Answered(*r),
            _ => Step::Wait,
        }
    }

    /// Response bytes: `Some` once the connection's fate is known.
    fn received(&mut self, bytes: &[u8]) -> Option<Step> {
        let State::Busy(b) = &mut self.state else {
            // bytes nobody asked for, on an idle (or still connecting)
            // connection: not to be trusted with a request
            return Some(match self.state {
                State::Idle => Step::Gone,
                _ => Step::Broken(Failure::Closed("the receiver spoke first".into())),
            });
        };
        if let Some(mut r) = b.answer {
            // more after a complete response
            r.keep_alive = false;
            return Some(Step::Answered(r));
        }
        match b.parser.feed(bytes) {
            Ok(None) => None,
            // read on: what follows decides whether it may be reused
            Ok(Some(r)) if r.keep_alive => {
                b.answer = Some(r);
                None
            }
            Ok(Some(r)) => Some(Step::Answered(r)),
            Err(e) => Some(Step::Broken(Failure::BadResponse(e))),
        }
    }

    /// The receiver closed its side.
    fn eof(&mut self) -> Step {
        if let Some(step) = self.ended() {
            return step;
        }
        match &mut self.state {
            State::Idle => Step::Gone,
            State::Connecting(_) if self.tls.is_some() => Step::Broken(Failure::Tls(
                "the receiver closed the connection during the handshake".into(),
            )),
            State::Connecting(_) => Step::Broken(Failure::Closed("closed at once".into())),
            State::Busy(b) => match b.parser.eof() {
                Ok(r) => Step::Answered(r),
                Err(_) if !b.parser.started() => {
                    Step::Broken(Failure::Closed("closed by the receiver".into()))
                }
                Err(e) => Step::Broken(Failure::BadResponse(e)),
            },
        }
    }

    fn read_error(&mut self, e: io::Error) -> Step {
        self.ended()
            .unwrap_or_else(|| Step::Broken(Failure::Closed(format!("read: {e}"))))
    }

    /// What the end of the stream means whatever ended it: nothing for an
    /// idle connection, the status for one already answered (never reused).
    fn ended(&self) -> Option<Step> {
        match &self.state {
            State::Idle => Some(Step::Gone),
            State::Busy(Busy {
                answer: Some(r), ..
            }) => Some(Step::Answered(Response {
                keep_alive: false,
                ..*r
            })),
            _ => None,
        }
    }
}

// ---- name resolution --------------------------------------------------------

enum Lookup {
    Ready(Vec<IpAddr>),
    Pending,
    Failed(String),
}

/// The resolver thread's two ends, as the loop holds them.
struct ResolverThread {
    ask: SyncSender<String>,
    answers: Receiver<(String, Result<Vec<IpAddr>, String>)>,
    /// Kept so the thread can wake the poll.
    _waker: Arc<Waker>,
}

/// Addresses by name: a cache, the names being looked up, and the thread
/// that looks them up (started on the first name).
struct Resolver {
    thread: Option<ResolverThread>,
    cache: HashMap<Rc<str>, (Vec<IpAddr>, u64)>,
    /// Names asked, with the time to give up on each.
    pending: HashMap<Rc<str>, u64>,
    ttl_ms: u64,
    timeout_ms: u64,
    /// Names given to the thread, ever.
    asked: u64,
}

impl Resolver {
    fn new(ttl_ms: u64, timeout_ms: u64) -> Resolver {
        Resolver {
            thread: None,
            cache: HashMap::new(),
            pending: HashMap::new(),
            ttl_ms,
            timeout_ms,
            asked: 0,
        }
    }

    /// The addresses of `host`, or that the answer comes later (as a
    /// readiness event on the waker's token), or why there is none.
    fn lookup(&mut self, now: u64, registry: &Registry, host: &Rc<str>) -> Lookup {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Lookup::Ready(vec![ip]);
        }
        if let Some((ips, until)) = self.cache.get(host)
            && *until > now
        {
            return Lookup::Ready(ips.clone());
        }
        if self.pending.contains_key(host) {
            return Lookup::Pending;
        }
        let thread = match &mut self.thread {
            Some(t) => t,
            None => match ResolverThread::start(registry) {
                Ok(t) => self.thread.insert(t),
                Err(e) => return Lookup::Failed(e),
            },
        };
        match thread.ask.try_send(host.to_string()) {
            Ok(()) => {
                self.asked += 1;
                self.pending.insert(host.clone(), now + self.timeout_ms);
                Lookup::Pending
            }
            Err(TrySendError::Full(_)) => Lookup::Failed(format!(
                "{LOOKUPS_WAITING} names are already waiting for the resolver"
            )),
            Err(TrySendError::Disconnected(_)) => {
                self.thread = None;
                Lookup::Failed("the resolver thread stopped".into())
            }
        }
    }

    /// Answers that have come: cached, and returned by name (the error in
    /// words when the name did not resolve).
    fn answers(&mut self, now: u64) -> Vec<(Rc<str>, Result<(), String>)> {
        let mut out = Vec::new();
        let Some(t) = &self.thread else {
            return out;
        };
        loop {
            match t.answers.try_recv() {
                Ok((host, answer)) => {
                    let host: Rc<str> = host.into();
                    self.pending.remove(&host);
                    match answer {
                        Ok(ips) => {
                            if self.cache.len() >= DNS_CACHE {
                                self.cache.retain(|_, (_, until)| *until > now);
                            }
                            if self.cache.len() >= DNS_CACHE {
                                self.cache.clear();
                            }
                            self.cache.insert(host.clone(), (ips, now + self.ttl_ms));
                            out.push((host, Ok(())));
                        }
                        Err(e) => out.push((host, Err(e))),
                    }
                }
                Err(TryRecvError::Empty) => return out,
                Err(TryRecvError::Disconnected) => {
                    self.thread = None;
                    for (host, _) in self.pending.drain() {
                        out.push((host, Err("the resolver thread stopped".into())));
                    }
                    return out;
                }
            }
        }
    }

    /// Names whose lookup took too long (the thread's late answer still
    /// fills the cache).
    fn expired(&mut self, now: u64) -> Vec<Rc<str>> {
        let late: Vec<Rc<str>> = self
            .pending
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &late {
            self.pending.remove(h);
        }
        late
    }

    /// Connecting to `host`'s addresses failed: look it up again next time.
    fn forget(&mut self, host: &str) {
        self.cache.remove(host);
    }

    fn next_deadline(&self) -> Option<u64> {
        self.pending.values().min().copied()
    }
}

impl ResolverThread {
    fn start(registry: &Registry) -> Result<ResolverThread, String> {
        let waker = Arc::new(
            Waker::new(registry, WAKER).map_err(|e| format!("cannot start the resolver: {e}"))?,
        );
        let (ask, asked) = mpsc::sync_channel::<String>(LOOKUPS_WAITING);
        let (answer, answers) = mpsc::sync_channel(LOOKUPS_WAITING);
        let wake = waker.clone();
        std::thread::Builder::new()
            .name("revurb-dns".into())
            .spawn(move || {
                // Only getaddrinfo runs here; it ends when the loop drops
                // its end of the channel.
                while let Ok(host) = asked.recv() {
                    let result = resolve(&host);
                    if answer.send((host, result)).is_err() {
                        return;
                    }
                    let _ = wake.wake();
                }
            })
            .map_err(|e| format!("cannot start the resolver thread: {e}"))?;
        Ok(ResolverThread {
            ask,
            answers,
            _waker: waker,
        })
    }
}

/// getaddrinfo: the addresses of `host`, in its order, without repeats.
fn resolve(host: &str) -> Result<Vec<IpAddr>, String> {
    let addrs = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in addrs {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    if ips.is_empty() {
        return Err(format!("{host} has no address"));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests;

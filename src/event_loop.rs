//! The only module that calls mio: one `Poll`, the listeners, the client
//! sockets, the Redis sockets (`cluster`, `redis_link`), signals and timers.
//! It moves bytes and carries out decisions made elsewhere: routing is
//! [`crate::router`]'s, the Pusher protocol is [`crate::pusher::Hub`]'s, the
//! publish policy of scaling is [`crate::scaling`]'s, the `restart` command
//! is [`crate::restart`]'s.
//!
//! # The life of a connection
//!
//! 1. **Accept.** [`Server::run`]'s loop sees a listener readable;
//!    `accept` takes sockets until `WouldBlock` and `admit` gives each one
//!    its TLS session (main listener only), a slot in the `Slab` (which
//!    names it by a `ConnId`: slot and generation), its token and a request
//!    deadline. It starts in `Phase::Http`, which records the
//!    [`Listener`] kind that accepted it.
//! 2. **HTTP.** `read` fills the shared scratch buffer (at most
//!    `READ_BUDGET` per turn), `handle_bytes` keeps an incomplete tail in
//!    `Conn::pending`, and `process` runs `http::parse`. A complete request
//!    goes to `request`, which asks [`router::route`] and hands the
//!    [`Action`] to `carry_out`: `respond` queues the bytes and either
//!    closes or re-arms the request deadline (keep-alive). An unparsable
//!    request ([`router::refuse`]) or a missed deadline (`expire`,
//!    [`router::timed_out`]) is answered and closed.
//! 3. **Upgrade.** `upgrade` queues the `101` handshake, moves the
//!    connection to `Phase::WebSocket` (no loop deadline: the hub's pings
//!    and pruning take over) and opens it in the hub (`Hub::open`), which
//!    answers with `pusher:connection_established` or an error and close.
//! 4. **WebSocket.** `process` runs the frame decoder and `ws_event` hands
//!    messages, pings, pongs and closes to the hub. The hub's outputs come
//!    out of one door, `Hub::poll_output`, which `drain_hub` empties after
//!    every input: `Send` queues a shared frame (`queue`), `Close` starts
//!    closing (`close_ws`), the cluster's outputs go to `cluster::Scaling`.
//!    `flush_dirty` writes every connection with queued bytes once per turn.
//! 5. **Closing.** `close_ws` queues a close frame; `begin_close` moves the
//!    connection to `Phase::Closing` with a close deadline. Once its queue
//!    is flushed the write side is shut (`Conn::shut_write_when_closing`);
//!    input is read and discarded until EOF. At the deadline a peer that
//!    has acknowledged bytes since the last look gets another
//!    `CLOSE_TIMEOUT_MS`, up to `CLOSE_MAX_MS` (`Conn::extend_close`), so
//!    a slow reader still gets its 4100 reason (issue 11).
//! 6. **Dropped.** EOF, a socket error or the close deadline (`expire`)
//!    lead to `drop_conn`: deregister, remove from the slab (the slot's
//!    generation moves on) and tell the hub (`Hub::close`). Every id still
//!    held elsewhere (a timer, the dirty list, the hub's queued output) is
//!    stale from then on and finds nothing.
//!
//! # Rules the loop keeps
//!
//! - Accept and read until `WouldBlock`, but give one connection at most
//!   `READ_BUDGET` bytes per turn; the rest waits for the next turn (the
//!   poll does not sleep meanwhile), so a flood from one client cannot
//!   starve the others.
//! - Sockets are registered once for read and write; writability is
//!   remembered (edge-triggered) and queued output is flushed with one
//!   `writev` per connection at the end of each turn.
//! - Every incomplete request has a deadline, every close has a deadline,
//!   and a client whose write queue passes the limit is dropped with 4100.
//!   The limit is measured after trying to write, on what waits behind the
//!   message being written (`check_backlog`), so one large message still
//!   reaches a reader that drains it (issue 11).
//! - Deadlines are data: `timers` holds (when, `ConnId`) and an entry that
//!   does not match the connection's current phase deadline is skipped;
//!   the poll timeout is the earliest of the loop's, the hub's and the
//!   Redis links' deadlines.
//! - Shutdown (SIGTERM, SIGINT, or a restart over Redis): stop accepting,
//!   close every WebSocket with 4200 and every HTTP connection, and exit
//!   once they are gone or `SHUTDOWN_GRACE_MS` has passed. SIGHUP re-reads
//!   the apps (`reload`).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::cli::Flags;
use crate::config::Config;
use crate::conn::{Chunk, Conn, Phase};
use crate::http::{self, Parse, Request};
use crate::metrics::Metrics;
use crate::pusher::{ConnId, Hub, Output, PusherError};
use crate::router::{self, Action, Listener};
use crate::websocket::{self, Event, Step};
use crate::{log_debug, log_error, log_info, log_warn};

mod cluster;
mod redis_link;
mod slab;
mod timers;

use slab::Slab;
use timers::Timers;

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const METRICS: Token = Token(2);
const REDIS_PUB: Token = Token(3);
const REDIS_SUB: Token = Token(4);
const FIRST_CONN: usize = 5;

/// Bytes read from one connection per turn before others get their go.
const READ_BUDGET: usize = 256 * 1024;
/// Size of the shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// How long a closing connection may take to say goodbye.
const CLOSE_TIMEOUT_MS: u64 = 2_000;
/// The longest a closing connection that keeps reading is kept so that
/// its last bytes get out (`Conn::extend_close`).
const CLOSE_MAX_MS: u64 = 30_000;
/// How long shutdown waits for clients to take their close frames.
const SHUTDOWN_GRACE_MS: u64 = 2_000;
/// Pause accepting this long when out of file descriptors.
const ACCEPT_BACKOFF_MS: u64 = 100;

pub struct Server {
    poll: Poll,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    signals: Signals,
    cfg: Config,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The command line, kept to re-read the configuration on SIGHUP.
    flags: Flags,
    metrics: Metrics,
    hub: Hub,
    /// The client connections; a `ConnId` names a slot and its generation,
    /// so an id kept past its connection finds nothing.
    conns: Slab<Conn>,
    /// Loop deadlines: (when, conn); an entry whose connection is gone or
    /// whose phase deadline is another is stale and skipped, and the stale
    /// ones are compacted away (size bounded by the connections, issue 11).
    timers: Timers,
    /// Connections with queued output to flush this turn.
    dirty: Vec<ConnId>,
    /// Connections that used their read budget and still have input.
    more_to_read: Vec<ConnId>,
    scratch: Vec<u8>,
    start: Instant,
    accept_paused_until: Option<u64>,
    shutting_down: Option<u64>,
    scaling: Option<cluster::Scaling>,
}

/// Bind the listeners and build the server; the caller prints the address.
pub fn bind(cfg: Config, flags: Flags) -> io::Result<Server> {
    let tls = match &cfg.tls {
        Some(files) => Some(crate::tls::server_config(files).map_err(io::Error::other)?),
        None => None,
    };
    let addr = cfg.bind_addr();
    let mut listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let metrics_listener = match cfg.metrics {
        None => None,
        Some(addr) => bind_metrics(addr, &poll)?,
    };
    if let Some(p) = &cfg.pid_file {
        write_pid_file(p)?;
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    let mut hub = Hub::new(cfg.apps.clone(), seed, cfg.debug);
    let scaling = match &cfg.scaling {
        None => None,
        Some(sc) => Some(cluster::Scaling::start(sc, seed, &mut hub)?),
    };
    Ok(Server {
        scaling,
        poll,
        listener,
        metrics_listener,
        signals,
        cfg,
        flags,
        tls,
        metrics: Metrics::default(),
        hub,
        conns: Slab::default(),
        timers: Timers::default(),
        dirty: Vec::new(),
        more_to_read: Vec::new(),
        scratch: vec![0; SCRATCH],
        start: Instant::now(),
        accept_paused_until: None,
        shutting_down: None,
    })
}

/// The metrics listener. The service matters more than its metrics: a
/// taken metrics port is logged, not fatal (an old instance may still hold it).
fn bind_metrics(addr: SocketAddr, poll: &Poll) -> io::Result<Option<TcpListener>> {
    match TcpListener::bind(addr) {
        Ok(mut l) => {
            poll.registry()
                .register(&mut l, METRICS, Interest::READABLE)?;
            Ok(Some(l))
        }
        Err(e) => {
            log_error!(
                "cannot listen for metrics on {addr}: {e}; metrics are off (--metrics-port 0 turns them off quietly)"
            );
            Ok(None)
        }
    }
}

fn write_pid_file(p: &std::path::Path) -> io::Result<()> {
    std::fs::write(p, format!("{}\n", std::process::id())).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write pid file {}: {e}", p.display()),
        )
    })
}

impl Server {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Run until SIGTERM or SIGINT has closed every connection.
    pub fn run(mut self) -> io::Result<()> {
        let result = self.run_loop();
        if let Some(p) = &self.cfg.pid_file {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    /// One turn per wake-up: readiness, then the work every turn does.
    fn run_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                self.ready(event);
            }
            if self.turn() {
                return Ok(());
            }
        }
    }

    /// One readiness event: whose token it is decides who moves the bytes.
    fn ready(&mut self, event: &mio::event::Event) {
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        match event.token() {
            LISTENER => self.accept(Listener::Main),
            METRICS => self.accept(Listener::Metrics),
            SIGNALS => self.signal(),
            token @ (REDIS_PUB | REDIS_SUB) => {
                let now = self.now();
                self.redis_ready(now, token, readable, event.is_writable());
            }
            Token(t) => {
                let Some(id) = self.conns.id_at(t - FIRST_CONN) else {
                    return; // dropped earlier in this batch
                };
                if event.is_writable()
                    && let Some(c) = self.conn_mut(id)
                {
                    c.writable = true;
                    self.mark_dirty(id);
                }
                if readable {
                    self.read(id);
                }
            }
        }
    }

    /// The end of every turn: what the read budget left, deadlines, the
    /// hub's timers, Redis, then one flush per dirty connection. Returns
    /// true when a shutdown is complete.
    fn turn(&mut self) -> bool {
        for id in std::mem::take(&mut self.more_to_read) {
            self.read(id);
        }
        let now = self.now();
        self.expire(now);
        self.hub.handle_timeout(now);
        self.drain_hub();
        self.redis_turn(now);
        self.drain_hub();
        self.flush_dirty();
        let Some(since) = self.shutting_down else {
            return false;
        };
        let open = self.conns.len();
        if open == 0 || now >= since + SHUTDOWN_GRACE_MS {
            log_info!("shutdown complete ({open} connections still open were dropped)");
            return true;
        }
        false
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.more_to_read.is_empty()
            || self
                .scaling
                .as_ref()
                .is_some_and(cluster::Scaling::more_to_read)
        {
            return Some(Duration::ZERO);
        }
        let now = self.now();
        let mut next = [
            self.timers.next(),
            self.hub.poll_timeout(),
            self.accept_paused_until,
            self.shutting_down.map(|s| s + SHUTDOWN_GRACE_MS),
            self.scaling.as_ref().map(cluster::Scaling::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()?;
        next = next.max(now);
        // +1 ms so we wake after the deadline, not just before it
        Some(Duration::from_millis(next - now + 1))
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Wake up at `at` to check the connection's phase deadline (which the
    /// caller has set to `at`).
    fn arm_timer(&mut self, id: ConnId, at: u64) {
        let conns = &self.conns;
        self.timers
            .arm(id, at, conns.len(), |at, id| is_current(conns, at, id));
    }

    /// Give back the timer entries of connections that are gone.
    fn tidy_timers(&mut self) {
        let conns = &self.conns;
        self.timers
            .tidy(conns.len(), |at, id| is_current(conns, at, id));
    }

    // ---- accept -------------------------------------------------------------

    fn accept(&mut self, listener: Listener) {
        if self.shutting_down.is_some() {
            return;
        }
        if listener == Listener::Metrics && self.metrics_listener.is_none() {
            return;
        }
        if let Some(until) = self.accept_paused_until {
            if self.now() < until {
                return;
            }
            self.accept_paused_until = None;
        }
        loop {
            let accepted = match (listener, &self.metrics_listener) {
                (Listener::Metrics, Some(l)) => l.accept(),
                _ => self.listener.accept(),
            };
            match accepted {
                Ok((stream, _peer)) => self.admit(listener, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE and friends: try again shortly, with the
                    // listener's backlog holding the callers meanwhile.
                    log_warn!(
                        "accept failed: {e}; raise the open files limit (ulimit -n) if this repeats"
                    );
                    self.accept_paused_until = Some(self.now() + ACCEPT_BACKOFF_MS);
                    return;
                }
            }
        }
    }

    /// Give an accepted socket a slot, a token and its first request
    /// deadline: the start of its life, in the HTTP phase.
    fn admit(&mut self, listener: Listener, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let deadline = self.now() + self.cfg.request_timeout * 1000;
        // The TLS session first, so that its failure leaves nothing to undo.
        let tls = match (listener, &self.tls) {
            (Listener::Main, Some(cfg)) => match rustls::ServerConnection::new(cfg.clone()) {
                Ok(mut t) => {
                    // bound what rustls buffers; the rest waits in our queue
                    t.set_buffer_limit(Some(64 * 1024));
                    Some(Box::new(t))
                }
                Err(e) => {
                    log_warn!("cannot start a TLS session: {e}");
                    return;
                }
            },
            _ => None,
        };
        let registry = self.poll.registry();
        let added = self.conns.insert_with(|id| {
            registry.register(
                &mut stream,
                Token(id.slot() + FIRST_CONN),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let mut conn = Conn::new(stream, listener, deadline);
            conn.tls = tls;
            Ok::<_, io::Error>(conn)
        });
        match added {
            Ok(id) => self.arm_timer(id, deadline),
            Err(e) => log_warn!("cannot register a new connection: {e}"),
        }
    }

    // ---- signals ------------------------------------------------------------

    fn signal(&mut self) {
        let mut stop = false;
        let mut reload = false;
        for sig in self.signals.pending() {
            match sig {
                SIGTERM | SIGINT => stop = true,
                SIGHUP => reload = true,
                _ => {}
            }
        }
        if reload && !stop {
            self.reload();
        }
        if stop {
            log_info!("signal received: closing every connection with 4200 and stopping");
            self.begin_shutdown();
        }
    }

    /// Close every connection with 4200, stop accepting, and exit once they
    /// are gone or the grace period is over.
    fn begin_shutdown(&mut self) {
        if self.shutting_down.is_none() {
            let now = self.now();
            self.shutting_down = Some(now);
            let _ = self.poll.registry().deregister(&mut self.listener);
            self.hub.shutdown(now);
            self.hub.cluster_goodbye(now);
            self.drain_hub();
            // HTTP connections are simply closed.
            let http: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| matches!(c.phase, Phase::Http { .. }))
                .map(|(id, _)| id)
                .collect();
            for id in http {
                self.begin_close(id, now);
            }
        }
    }

    /// SIGHUP: read the configuration again and swap in the new app list.
    /// Server options (address, path, limits) need a restart to change.
    fn reload(&mut self) {
        match Config::from_process(&self.flags) {
            Ok(new) => {
                let now = self.now();
                let (kept, added, removed) = self.hub.reload_apps(now, new.apps.clone());
                self.cfg.apps = new.apps;
                log_warn!(
                    "configuration reloaded: {kept} apps kept, {added} added, {removed} removed"
                );
                self.drain_hub();
            }
            Err(e) => log_error!("configuration reload failed, keeping the old apps: {e}"),
        }
    }

    // ---- reading ------------------------------------------------------------

    fn read(&mut self, id: ConnId) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(c) = self.conns.get_mut(id) else {
                return;
            };
            if budget == 0 {
                self.more_to_read.push(id);
                return;
            }
            let want = budget.min(self.scratch.len());
            let result = c.read_into(&mut self.scratch[..want]);
            if c.needs_flush {
                c.needs_flush = false;
                self.mark_dirty(id);
            }
            match result {
                Ok(0) => {
                    self.drop_conn(id);
                    return;
                }
                Ok(n) => {
                    budget -= n;
                    self.metrics.bytes_received += n as u64;
                    if !self.handle_bytes(id, n) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.drop_conn(id);
                    return;
                }
            }
        }
    }

    /// Handle `n` fresh bytes in the scratch buffer. Returns false when the
    /// connection is gone or no more input should be read now.
    fn handle_bytes(&mut self, id: ConnId, n: usize) -> bool {
        let now = self.now();
        let Some(c) = self.conns.get_mut(id) else {
            return false;
        };
        if c.is_closing() {
            return true; // discard while waiting for EOF
        }
        // Work on the scratch buffer directly when nothing is pending.
        let mut buf = std::mem::take(&mut c.pending);
        let from_scratch = buf.is_empty();
        if from_scratch {
            buf = std::mem::take(&mut self.scratch);
        } else {
            buf.extend_from_slice(&self.scratch[..n]);
        }
        let len = if from_scratch { n } else { buf.len() };
        let used = self.process(id, &mut buf[..len], now);
        let alive = self.conns.get(id).is_some();
        if let Some(c) = self.conns.get_mut(id)
            && !c.is_closing()
            && used < len
        {
            c.pending = buf[used..len].to_vec();
        }
        if from_scratch {
            self.scratch = buf;
        }
        self.drain_hub();
        alive
    }

    /// Run the parsers over `buf`; returns how many bytes were consumed.
    fn process(&mut self, id: ConnId, buf: &mut [u8], now: u64) -> usize {
        let mut used = 0;
        loop {
            let Some(c) = self.conns.get_mut(id) else {
                return used;
            };
            match &mut c.phase {
                Phase::Closing(_) => return buf.len(),
                Phase::Http { .. } => match http::parse(&buf[used..], self.cfg.max_request_size) {
                    Parse::Incomplete => return used,
                    Parse::Error(e) => {
                        self.carry_out(id, router::refuse(&e), now);
                        return buf.len();
                    }
                    Parse::Complete(req, n) => {
                        used += n;
                        self.request(id, req, now);
                    }
                },
                Phase::WebSocket {
                    decoder,
                    max_message,
                } => {
                    let max = *max_message;
                    match decoder.decode(&mut buf[used..], max) {
                        Ok(Step::Incomplete) => return used,
                        Ok(Step::Frame { used: n, event }) => {
                            if let Some(event) = event {
                                self.ws_event(id, event, now);
                            }
                            used += n;
                        }
                        Err(e) => {
                            log_debug!("WebSocket error: {e}");
                            self.hub.close(now, id);
                            self.close_ws(id, e.close_code(), e.reason(), now);
                            return buf.len();
                        }
                    }
                }
            }
        }
    }

    fn ws_event(&mut self, id: ConnId, event: Event<'_>, now: u64) {
        match event {
            Event::Text(text) => self.hub.message(now, id, &text),
            // Reverb hands binary frames to the same handler; they are not
            // Pusher messages, so the hub answers 4200 unless they are JSON.
            Event::Binary(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => self.hub.message(now, id, text),
                Err(_) => self.hub.message(now, id, ""),
            },
            Event::Ping(payload) => {
                let pong = websocket::pong_frame(payload);
                self.queue(id, Chunk::Owned(pong));
                self.hub.control(now, id);
            }
            Event::Pong => self.hub.control(now, id),
            Event::Close(code, _reason) => {
                // Echo the close (RFC 6455 5.5.1) and forget the connection.
                self.hub.close(now, id);
                self.close_ws(id, websocket::close_reply_code(code), "", now);
            }
        }
        self.drain_hub();
    }

    // ---- HTTP ---------------------------------------------------------------

    /// A complete request: the router decides, the loop carries it out.
    fn request(&mut self, id: ConnId, req: Request, now: u64) {
        let Some(Conn {
            phase: Phase::Http { listener, .. },
            ..
        }) = self.conns.get(id)
        else {
            return;
        };
        let listener = *listener;
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.metrics.timer_entries = self.timers.len() as u64;
        let ctx = router::Ctx {
            prefix: &self.cfg.path,
            draining: self.shutting_down.is_some(),
            hub: &mut self.hub,
            metrics: &mut self.metrics,
            now,
            unix,
        };
        let action = router::route(listener, &req, ctx);
        self.carry_out(id, action, now);
    }

    fn carry_out(&mut self, id: ConnId, action: Action<'_>, now: u64) {
        match action {
            Action::Respond { bytes, close } => self.respond(id, bytes, close, now),
            Action::Upgrade {
                handshake,
                key,
                origin,
            } => self.upgrade(id, handshake, key, origin, now),
        }
    }

    fn respond(&mut self, id: ConnId, bytes: Vec<u8>, close: bool, now: u64) {
        self.queue(id, Chunk::Owned(bytes));
        if close {
            self.begin_close(id, now);
            return;
        }
        // the next request on this keep-alive connection gets a fresh deadline
        let at = now + self.cfg.request_timeout * 1000;
        if let Some(Conn {
            phase: Phase::Http { deadline, .. },
            ..
        }) = self.conn_mut(id)
            && *deadline != at
        {
            // pipelined requests answered in the same millisecond share one
            // entry; a changed deadline makes the old entry stale (issue 11)
            *deadline = at;
            self.arm_timer(id, at);
        }
    }

    fn upgrade(
        &mut self,
        id: ConnId,
        handshake: Vec<u8>,
        key: &str,
        origin: Option<&str>,
        now: u64,
    ) {
        self.queue(id, Chunk::Owned(handshake));
        if let Some(c) = self.conn_mut(id) {
            // the hub's ping/prune takes over from the request deadline
            c.phase = Phase::WebSocket {
                decoder: Default::default(),
                max_message: 0,
            };
        }
        if let Some(opened) = self.hub.open(now, id, key, origin)
            && let Some(Conn {
                phase: Phase::WebSocket { max_message, .. },
                ..
            }) = self.conn_mut(id)
        {
            *max_message = opened.max_message_size;
        }
        self.drain_hub();
    }

    // ---- output ---------------------------------------------------------------

    fn queue(&mut self, id: ConnId, chunk: Chunk) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.push(chunk);
        let over = c.queued_bytes() > self.cfg.write_queue_limit && !c.is_closing();
        self.mark_dirty(id);
        if over {
            self.check_backlog(id);
        }
    }

    /// The queue passed the limit. The limit is for readers that fall
    /// behind, not for large messages (issue 11: a 600 KiB event or a large
    /// API answer was never delivered), so write what the socket takes now
    /// and measure what waits behind the message being written; a reader
    /// that passes the limit even so is closed with 4100.
    fn check_backlog(&mut self, id: ConnId) {
        let limit = self.cfg.write_queue_limit;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match c.flush() {
            Ok((_, written)) => self.metrics.bytes_sent += written as u64,
            Err(_) => {
                self.drop_conn(id);
                return;
            }
        }
        if c.backlog() <= limit {
            return;
        }
        log_warn!("a client stopped reading: over {limit} bytes queued; closing it with 4100");
        self.metrics.slow_consumers_dropped += 1;
        c.clear_queue();
        let ws = matches!(c.phase, Phase::WebSocket { .. });
        let now = self.now();
        if ws {
            self.hub.kick(now, id, PusherError::OverCapacity);
        } else {
            self.begin_close(id, now);
        }
    }

    /// Carry out the hub's outputs.
    fn drain_hub(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                // a stale id (its connection is gone) finds nothing in the slab
                Output::Send(id, frame) => self.queue(id, Chunk::Shared(frame)),
                Output::Close(id, err) => {
                    let now = self.now();
                    self.close_ws(id, err.code(), err.message(), now);
                }
                // The cluster's outputs go to the publish policy.
                out @ (Output::Publish { .. } | Output::Backlog { .. } | Output::Restart) => {
                    let now = self.now();
                    if let Some(sc) = self.scaling.as_mut() {
                        sc.output(now, out, &self.hub);
                    }
                }
            }
        }
    }

    /// Queue a close frame and start closing.
    fn close_ws(&mut self, id: ConnId, code: u16, reason: &str, now: u64) {
        if self.conns.get(id).is_some_and(|c| !c.is_closing()) {
            self.queue(id, Chunk::Owned(websocket::close_frame(code, reason)));
            self.begin_close(id, now);
        }
    }

    /// After the queue is flushed the write side is shut; input is drained
    /// until EOF or the close deadline.
    fn begin_close(&mut self, id: ConnId, now: u64) {
        let deadline = now + CLOSE_TIMEOUT_MS;
        let until = now + CLOSE_MAX_MS;
        if self
            .conn_mut(id)
            .is_some_and(|c| c.begin_closing(deadline, until))
        {
            self.arm_timer(id, deadline);
            self.mark_dirty(id);
        }
    }

    fn flush_dirty(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.dirty = false;
            match c.flush() {
                Ok((empty, written)) => {
                    self.metrics.bytes_sent += written as u64;
                    c.note_sent(written);
                    if empty {
                        c.shut_write_when_closing();
                    }
                }
                Err(_) => self.drop_conn(id),
            }
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            if c.phase.deadline() != Some(at) {
                continue; // a newer deadline or phase replaced this one
            }
            match c.phase {
                Phase::Closing(_) => match c.extend_close(now, now + CLOSE_TIMEOUT_MS) {
                    Some(next) => self.arm_timer(id, next),
                    None => self.drop_conn(id),
                },
                Phase::Http { .. } => self.carry_out(id, router::timed_out(), now),
                Phase::WebSocket { .. } => {}
            }
        }
        self.tidy_timers();
    }

    /// Forget a socket now (EOF, error, or the close deadline passed).
    fn drop_conn(&mut self, id: ConnId) {
        let now = self.now();
        if let Some(mut c) = self.conns.remove(id) {
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.hub.close(now, id);
            self.drain_hub();
            self.tidy_timers();
        }
    }
}

/// Whether a timer entry is still its connection's phase deadline.
fn is_current(conns: &Slab<Conn>, at: u64, id: ConnId) -> bool {
    conns
        .get(id)
        .is_some_and(|c| c.phase.deadline() == Some(at))
}

/// Write the start line to stdout and flush it, so a supervisor or a test
/// reading the first line sees it at once.
pub fn announce(addr: SocketAddr, metrics: Option<SocketAddr>, cfg: &Config) {
    let mut line = format!("revurb: listening on {addr}");
    if cfg.tls.is_some() {
        line.push_str(" (secure)");
    }
    if let Some(m) = metrics {
        line.push_str(&format!(" (metrics on {m})"));
    }
    if !cfg.path.is_empty() {
        line.push_str(&format!(" (path {})", cfg.path));
    }
    if let Some(h) = &cfg.hostname {
        line.push_str(&format!(" ({h})"));
    }
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        log_error!("cannot write the start line to stdout");
    }
}

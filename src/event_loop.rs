//! The only module that calls mio: one `Poll`, the listeners, the client
//! sockets, the Redis sockets (`cluster`, `redis_link`), the webhook
//! client's sockets (`webhook`), signals and timers.
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
//!    closing (`close_ws`), the cluster's outputs go to `cluster::Scaling`,
//!    a `Webhook` to `delivery::Delivery` (the dispatcher's queues; the
//!    requests leave in `turn`, on the transport's own sockets).
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
//! - A stop drains first (SIGTERM, `revurb restart`, a restart over
//!   Redis; `begin_stop`): the WebSockets are closed with 4200 one after
//!   another, evenly over `drain_window`, by `begin_drain` and the
//!   schedule of [`drain`] (its docs tell how, and how another caller
//!   drains some connections and goes on serving). Meanwhile the listener
//!   stays open so that `/up` and new upgrades are answered 503 (the
//!   router's `draining`), and each turn's `drain_turn` closes what is due;
//!   the drain's next close is in the poll timeout.
//! - Shutdown (the end of a drain, SIGINT, or SIGTERM during a drain;
//!   `begin_shutdown`): stop accepting, close every WebSocket left with
//!   4200 and every HTTP connection, and exit
//!   once they are gone (and no webhook request can still go out) or
//!   `SHUTDOWN_GRACE_MS` has passed; webhook events still waiting then are
//!   dropped, counted and logged. SIGHUP re-reads the apps (`reload`) and
//!   their webhooks. SIGUSR2 upgrades in place (`upgrade`: the preflight,
//!   the drain of what cannot be handed over, the exec, and `resume` in
//!   the new image).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
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
mod delivery;
pub mod drain;
mod redis_link;
mod slab;
mod timers;
mod upgrade;
pub mod webhook;

use delivery::Delivery;
pub use drain::AfterDrain;
use drain::Spread;
use slab::Slab;
use timers::Timers;
pub use upgrade::resume;

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
/// Most TLS handshakes in progress at once (each holds about 10 KB of
/// rustls state until it completes); further callers wait in the
/// listener's backlog until one finishes or is dropped.
pub const MAX_HANDSHAKES: usize = 256;

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
    /// TLS handshakes in progress (connections with `Conn::in_handshake`).
    handshakes: usize,
    /// Accepting stopped at `MAX_HANDSHAKES`; resumed in `turn`.
    accept_waiting: bool,
    shutting_down: Option<u64>,
    /// The drain under way, if any: its schedule and what follows it.
    drain: Option<(Spread, AfterDrain)>,
    scaling: Option<cluster::Scaling>,
    /// Webhooks: the dispatcher and the transport's sockets.
    delivery: Delivery,
    /// An upgrade under way (`upgrade`): the preflight, then the drain of
    /// what cannot be handed over.
    upgrade: Option<upgrade::Upgrade>,
    /// The path the binary was started from, resolved at start: what an
    /// upgrade executes.
    exe: Option<std::path::PathBuf>,
}

/// Bind the listeners and build the server; the caller prints the address.
pub fn bind(cfg: Config, flags: Flags) -> io::Result<Server> {
    let addr = cfg.bind_addr();
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    assemble(cfg, flags, listener, None, Instant::now(), None)
}

/// Build the server around its main listener: the poll, the signals, the
/// metrics listener (`metrics`, handed over by an upgrade, or bound now),
/// the pid file, the hub, webhooks and scaling. `start` is the loop
/// clock's origin; `node` keeps the cluster identity of an upgrade.
fn assemble(
    cfg: Config,
    flags: Flags,
    mut listener: TcpListener,
    metrics: Option<TcpListener>,
    start: Instant,
    node: Option<String>,
) -> io::Result<Server> {
    let tls = match &cfg.tls {
        Some(files) => Some(crate::tls::server_config(files).map_err(io::Error::other)?),
        None => None,
    };
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR2])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let metrics_listener = match (cfg.metrics, metrics) {
        (None, _) => None,
        (Some(_), Some(mut l)) => {
            poll.registry()
                .register(&mut l, METRICS, Interest::READABLE)?;
            Some(l)
        }
        (Some(addr), None) => bind_metrics(addr, &poll)?,
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
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let delivery = Delivery::new(unix_ms, &cfg.apps);
    let scaling = match &cfg.scaling {
        None => None,
        Some(sc) => Some(cluster::Scaling::start(sc, seed, node, &mut hub)?),
    };
    Ok(Server {
        scaling,
        delivery,
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
        start,
        accept_paused_until: None,
        handshakes: 0,
        accept_waiting: false,
        shutting_down: None,
        drain: None,
        upgrade: None,
        exe: crate::upgrade::start_path(),
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
            token if Delivery::owns(token) => {
                let now = self.now();
                self.delivery.ready(now, self.poll.registry(), token);
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
        if self.accept_waiting && self.handshakes < MAX_HANDSHAKES {
            // handshakes finished: take the callers the backlog held
            self.accept_waiting = false;
            self.accept(Listener::Main);
        }
        let now = self.now();
        self.expire(now);
        self.hub.handle_timeout(now);
        self.drain_hub();
        self.drain_turn(now);
        self.redis_turn(now);
        self.drain_hub();
        self.delivery.turn(now, self.poll.registry());
        self.flush_dirty();
        if self.upgrade.is_some() {
            self.upgrade_turn(now);
        }
        let Some(since) = self.shutting_down else {
            return false;
        };
        let open = self.conns.len();
        if (open == 0 && self.delivery.settled()) || now >= since + SHUTDOWN_GRACE_MS {
            self.delivery.abandon();
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
            self.drain.as_ref().and_then(|(d, _)| d.poll_timeout()),
            self.scaling.as_ref().map(cluster::Scaling::poll_timeout),
            self.delivery.poll_timeout(),
            self.upgrade_poll_timeout(),
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
        if listener == Listener::Main && self.tls.is_some() && self.upgrade_draining() {
            // the kernel's backlog holds them for the new process
            return;
        }
        if let Some(until) = self.accept_paused_until {
            if self.now() < until {
                return;
            }
            self.accept_paused_until = None;
        }
        loop {
            if listener == Listener::Main && self.tls.is_some() && self.handshakes >= MAX_HANDSHAKES
            {
                self.accept_waiting = true;
                return;
            }
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
                    Some(Box::new(crate::conn::Tls::new(t)))
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
            conn.in_handshake = tls.is_some();
            conn.tls = tls;
            Ok::<_, io::Error>(conn)
        });
        match added {
            Ok(id) => {
                if self.conns.get(id).is_some_and(|c| c.in_handshake) {
                    self.handshakes += 1;
                }
                self.arm_timer(id, deadline)
            }
            Err(e) => log_warn!("cannot register a new connection: {e}"),
        }
    }

    // ---- signals ------------------------------------------------------------

    /// SIGTERM drains and stops (`begin_stop`); SIGINT, or SIGTERM during
    /// a drain, stops at once; SIGHUP reloads.
    fn signal(&mut self) {
        let mut term = false;
        let mut int = false;
        let mut reload = false;
        let mut upgrade = false;
        for sig in self.signals.pending() {
            match sig {
                SIGTERM => term = true,
                SIGINT => int = true,
                SIGHUP => reload = true,
                SIGUSR2 => upgrade = true,
                _ => {}
            }
        }
        if upgrade && !term && !int {
            self.begin_upgrade();
        }
        if reload && !term && !int {
            self.reload();
        }
        if int || (term && self.stopping()) {
            log_info!("signal received: closing every connection with 4200 and stopping");
            self.begin_shutdown();
        } else if term {
            self.begin_stop(false);
        }
    }

    /// Whether the server is on its way out (draining to stop, or
    /// stopping): `/up` answers 503, upgrades are refused with 503, and
    /// every HTTP answer closes its connection.
    fn stopping(&self) -> bool {
        self.shutting_down.is_some() || matches!(self.drain, Some((_, AfterDrain::Stop)))
    }

    /// The gentle stop (SIGTERM, `revurb restart`, a restart over Redis):
    /// close every WebSocket with 4200 spread over `drain_window`, then
    /// stop. New connections are still accepted meanwhile, to be told 503.
    pub(crate) fn begin_stop(&mut self, over_redis: bool) {
        if self.stopping() {
            return;
        }
        let window = self.cfg.drain_window;
        let n = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::WebSocket { .. }))
            .count();
        if over_redis {
            log_info!(
                "restart signal received over Redis: closing {n} WebSocket connections with 4200 over {window} s (drain_window), then stopping"
            );
        } else {
            log_info!(
                "signal received: closing {n} WebSocket connections with 4200 over {window} s (drain_window), then stopping"
            );
        }
        self.begin_drain(
            window.saturating_mul(1000),
            |c| matches!(c.phase, Phase::WebSocket { .. }),
            AfterDrain::Stop,
        );
    }

    /// Close the connections for which `which` holds, spread evenly over
    /// `window_ms` (see [`drain`]), then do what `then` says. A WebSocket
    /// is closed with 4200 (`pusher:error` and close frame), any other
    /// connection simply closed. A drain already under way is replaced:
    /// the connections it had not closed yet join this one, and
    /// [`AfterDrain::Stop`] wins. Connections accepted later are not part
    /// of it.
    pub fn begin_drain(&mut self, window_ms: u64, which: impl Fn(&Conn) -> bool, then: AfterDrain) {
        if self.shutting_down.is_some() {
            return; // everything is being closed already
        }
        let now = self.now();
        let mut ids: Vec<ConnId> = Vec::new();
        let mut then = then;
        if let Some((old, old_then)) = self.drain.take() {
            ids.extend(
                old.remaining()
                    .iter()
                    .filter(|id| self.conns.get(**id).is_some()),
            );
            if old_then == AfterDrain::Stop {
                then = AfterDrain::Stop;
            }
        }
        let taken: std::collections::HashSet<ConnId> = ids.iter().copied().collect();
        for (id, c) in self.conns.iter() {
            if !c.is_closing() && which(c) && !taken.contains(&id) {
                ids.push(id);
            }
        }
        self.drain = Some((Spread::new(now, window_ms, ids), then));
        self.drain_turn(now);
    }

    /// Close the connections the drain has due now; after the last one,
    /// carry out what follows the drain.
    fn drain_turn(&mut self, now: u64) {
        let Some((spread, _)) = self.drain.as_mut() else {
            return;
        };
        let due = spread.take(now).to_vec();
        for id in due {
            match self.conns.get(id).map(|c| &c.phase) {
                Some(Phase::WebSocket { .. }) => self.hub.kick(now, id, PusherError::Shutdown),
                Some(Phase::Http { .. }) => self.begin_close(id, now),
                Some(Phase::Closing(_)) | None => {} // closing or gone already
            }
        }
        self.drain_hub();
        if self.drain.as_ref().is_some_and(|(d, _)| d.is_done())
            && let Some((spread, then)) = self.drain.take()
        {
            log_info!(
                "drain complete: {} connections closed over {} ms",
                spread.len(),
                now.saturating_sub(spread.start())
            );
            if then == AfterDrain::Stop {
                self.begin_shutdown();
            }
        }
    }

    /// Close every connection with 4200, stop accepting, and exit once they
    /// are gone or the grace period is over.
    fn begin_shutdown(&mut self) {
        if self.shutting_down.is_none() {
            let now = self.now();
            self.shutting_down = Some(now);
            self.drain = None;
            let _ = self.poll.registry().deregister(&mut self.listener);
            self.hub.shutdown(now);
            self.hub.cluster_goodbye(now);
            self.drain_hub();
            self.delivery.shutdown();
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
                self.delivery.reconfigure(&self.cfg.apps);
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
            // at least a whole TLS record fits (the budget may run a little over)
            let want = budget
                .max(2 * crate::tls_record::MAX_RECORD)
                .min(self.scratch.len());
            let result = c.read_into(&mut self.scratch[..want]);
            if c.in_handshake && !c.tls_handshaking() {
                c.in_handshake = false;
                self.handshakes -= 1;
            }
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
                    budget = budget.saturating_sub(n);
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
        if listener == Listener::Metrics {
            self.metrics.webhooks = self.delivery.figures();
        }
        let ctx = router::Ctx {
            prefix: &self.cfg.path,
            draining: self.stopping(),
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
                // The app is looked up now: its index means this app list.
                Output::Webhook { app, event } => {
                    let now = self.now();
                    if let Some(app) = self.hub.apps().nth(app) {
                        self.delivery.push(now, app, event);
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
            if c.in_handshake {
                self.handshakes -= 1;
            }
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

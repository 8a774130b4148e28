//! The loop's side of `revurb upgrade` (issue 14; the format and the
//! command are [`crate::upgrade`]'s).
//!
//! SIGUSR2 starts it ([`Server::begin_upgrade`]); each turn
//! ([`Server::upgrade_turn`]) moves it on, and nothing blocks the loop:
//!
//! 1. **Preflight.** The hand-over as it stands is written to a file and
//!    the binary at the start path runs `upgrade-check` on it with the
//!    server's flags; the loop polls the child (`try_wait`) and kills it at
//!    [`crate::upgrade::CHECK_TIMEOUT`]. A failure is logged, written to
//!    the status file, and the server goes on as if nothing happened.
//! 2. **Drain.** The exec waits (at most `WEBHOOK_WAIT_MS`) for the
//!    webhook requests under way and the events ready to go. A TLS 1.3
//!    connection that is quiet moves to its record layer now
//!    (`Conn::settle_tls`): its traffic keys and sequence numbers are
//!    plain data ([`crate::tls_record::RecordsExport`]) and it is handed
//!    over like a plain one. What cannot be handed over is closed gently:
//!    TLS sessions still in rustls (a handshake under way, TLS 1.2, one
//!    busy at that instant) get 4200 spread evenly over `drain_window`,
//!    never all in one instant (the loop's drain, `Server::begin_drain`
//!    with `AfterDrain::Continue`), and the main TLS listener stops
//!    accepting (the kernel's backlog holds new connections for the new
//!    image). The exec waits until they are gone, or the window and a
//!    close timeout have passed. Without such sessions there is no drain.
//! 3. **Exec.** The hub's output is carried out and every connection
//!    flushed as far as its socket takes without blocking; the hand-over
//!    is written (what is still queued travels in it: each connection's
//!    unsent bytes, the webhook events not yet delivered, and the cluster
//!    deliveries not known to have reached Redis); the listeners and
//!    handed-over connections lose `FD_CLOEXEC`; the binary is executed
//!    with the same arguments, the file named in `REVURB_UPGRADE_STATE`.
//!    Everything else (the poll, the signal pipe, the Redis and webhook
//!    sockets, TLS sessions still open) is close-on-exec and goes. The old
//!    image seals nothing after the export, so the new one's first record
//!    uses the next sequence number and no nonce is used twice. If `execve`
//!    fails, the flags are set back and the old image goes on serving.
//! 4. **Resume** ([`resume`]), in the new image: adopt the descriptors
//!    before opening anything, rebuild the loop around them (same slots and
//!    generations, same tokens), queue the held cluster deliveries before
//!    anything new, take over the webhook events, import the hub, write
//!    `ok` to the status file and run.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::drain::AfterDrain;
use super::{FIRST_CONN, Server, assemble};
use crate::cli::Flags;
use crate::config::Config;
use crate::conn::{Chunk, Conn, Phase, Tls};
use crate::pusher::{ConnId, PusherError};
use crate::redis::client::{Client as RedisClient, Event as RedisEvent, Role as RedisRole};
use crate::router::Listener;
use crate::sys;
use crate::tls_record::Records;
use crate::upgrade::{self as format, ConnHandover, Handover, PhaseHandover, RedisHandover};
use crate::websocket::Decoder;
use crate::{log_debug, log_error, log_warn};

/// How long the exec waits at most for webhook requests under way and
/// events ready to go (what is left then is lost, and logged).
const WEBHOOK_WAIT_MS: u64 = 2_000;
/// How long the old image may wait for Redis to subscribe the connection
/// it hands over.
const BRIDGE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the loop looks at the preflight's child.
const CHECK_POLL_MS: u64 = 10;

/// An upgrade under way.
pub(super) enum Upgrade {
    /// The new binary is checking the hand-over and the configuration.
    Checking {
        child: Child,
        state: PathBuf,
        exe: PathBuf,
        started: u64,
    },
    /// The TLS connections are being closed over the drain window, and
    /// the webhook requests under way finish.
    Draining {
        exe: PathBuf,
        /// The drain's end; the exec waits a close timeout more at most.
        until: u64,
        /// The exec waits for the webhooks until then at most.
        hooks_until: u64,
    },
}

impl Server {
    /// SIGUSR2: start an upgrade (unless one is under way or the server is
    /// stopping).
    pub(super) fn begin_upgrade(&mut self) {
        if self.upgrade.is_some() {
            log_warn!("upgrade: one is already under way; ignoring SIGUSR2");
            return;
        }
        if self.stopping() {
            self.upgrade_failed("the server is stopping");
            return;
        }
        let Some(exe) = self.exe.clone() else {
            self.upgrade_failed("the path the server was started from is unknown");
            return;
        };
        let now = self.now();
        self.drain_hub();
        let state = format::state_path();
        let handover = self.handover(now);
        if let Err(e) = format::write_state(&state, &handover) {
            self.upgrade_failed(&e);
            return;
        }
        let child = Command::new(&exe)
            .arg(format::CHECK_COMMAND)
            .args(self.command_flags())
            .env(format::ENV_STATE, &state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        match child {
            Ok(child) => {
                log_warn!(
                    "upgrade: checking {} ({} connections to hand over)",
                    exe.display(),
                    handover.conns.len()
                );
                self.upgrade = Some(Upgrade::Checking {
                    child,
                    state,
                    exe,
                    started: now,
                });
            }
            Err(e) => {
                let _ = std::fs::remove_file(&state);
                self.upgrade_failed(&format!("cannot run {}: {e}", exe.display()));
            }
        }
    }

    /// Whether TLS connections are being closed before an exec.
    pub(super) fn upgrade_draining(&self) -> bool {
        matches!(self.upgrade, Some(Upgrade::Draining { .. }))
    }

    pub(super) fn upgrade_poll_timeout(&self) -> Option<u64> {
        match &self.upgrade {
            None => None,
            Some(Upgrade::Checking { .. }) => Some(self.now() + CHECK_POLL_MS),
            // the drain's own deadlines close them; look again now and then
            Some(Upgrade::Draining { .. }) => Some(self.now() + CHECK_POLL_MS),
        }
    }

    /// Move an upgrade on (every turn while one is under way).
    pub(super) fn upgrade_turn(&mut self, now: u64) {
        if self.stopping() {
            // a stop came first: it wins
            if let Some(Upgrade::Checking {
                mut child, state, ..
            }) = self.upgrade.take()
            {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&state);
            }
            self.upgrade = None;
            self.upgrade_failed("the server is stopping");
            return;
        }
        match self.upgrade.take() {
            None => {}
            Some(Upgrade::Checking {
                mut child,
                state,
                exe,
                started,
            }) => match child.try_wait() {
                Ok(None) if now < started + format::CHECK_TIMEOUT.as_millis() as u64 => {
                    self.upgrade = Some(Upgrade::Checking {
                        child,
                        state,
                        exe,
                        started,
                    });
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_file(&state);
                    self.upgrade_failed(&format!(
                        "{} did not pass the check within {} s",
                        exe.display(),
                        format::CHECK_TIMEOUT.as_secs()
                    ));
                }
                Ok(Some(status)) => {
                    let _ = std::fs::remove_file(&state);
                    if status.success() {
                        self.start_drain(now, exe);
                    } else {
                        let why = child_stderr(&mut child);
                        let what = match status.code() {
                            Some(code) => format!("exited with status {code}"),
                            None => "was killed by a signal".to_string(),
                        };
                        self.upgrade_failed(&format!("{} {what}: {why}", exe.display()));
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&state);
                    self.upgrade_failed(&format!("cannot wait for the check: {e}"));
                }
            },
            Some(Upgrade::Draining {
                exe,
                until,
                hooks_until,
            }) => {
                let open = self.conns.iter().any(|(_, c)| c.tls_session());
                let tls_done = !open || now >= until + super::CLOSE_TIMEOUT_MS;
                let hooks_done = self.delivery.settled() || now >= hooks_until;
                if tls_done && hooks_done {
                    self.exec_upgrade(now, exe);
                } else {
                    self.upgrade = Some(Upgrade::Draining {
                        exe,
                        until,
                        hooks_until,
                    });
                }
            }
        }
    }

    /// The check passed: close the TLS sessions that cannot be handed over
    /// over the drain window,
    /// or exec now if there are none.
    fn start_drain(&mut self, now: u64, exe: PathBuf) {
        // a quiet TLS 1.3 session moves to its record layer now, which is
        // handed over like a plain connection
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.tls_session())
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(id)
                && let Err(e) = c.settle_tls()
            {
                log_debug!("upgrade: TLS connection {}: {e}", id.slot());
            }
        }
        let n = self.conns.iter().filter(|(_, c)| c.tls_session()).count();
        if n == 0 && self.delivery.settled() {
            self.exec_upgrade(now, exe);
            return;
        }
        let window = if n == 0 {
            0
        } else {
            self.cfg.drain_window.saturating_mul(1000)
        };
        if n > 0 {
            log_warn!(
                "upgrade: closing {n} TLS connections with 4200 over {} s (drain_window) first",
                self.cfg.drain_window
            );
            self.begin_drain(window, |c| c.tls_session(), AfterDrain::Continue);
        }
        self.upgrade = Some(Upgrade::Draining {
            exe,
            until: now + window,
            hooks_until: now + WEBHOOK_WAIT_MS,
        });
    }

    /// Log why an upgrade did not happen and tell `revurb upgrade`.
    fn upgrade_failed(&mut self, reason: &str) {
        log_error!("upgrade refused, going on with this binary: {reason}");
        format::write_status(self.cfg.pid_file.as_deref(), Err(reason));
    }

    /// The server's flags as given, for the check and the exec: the
    /// arguments after the command word.
    fn command_flags(&self) -> Vec<std::ffi::OsString> {
        std::env::args_os().skip(2).collect()
    }

    /// Flush, write the hand-over, keep the descriptors and exec. Returns
    /// (having set everything back) only if the exec failed.
    fn exec_upgrade(&mut self, now: u64, exe: PathBuf) {
        // A second subscriber first, then what the first one holds: every
        // message the others publish is in one or the other (the new hub
        // drops what it gets twice, by seq).
        let bridge = match self.redis_bridge() {
            Ok(b) => b,
            Err(e) => {
                log_warn!(
                    "upgrade: no Redis subscriber to hand over ({e}); the new binary subscribes again"
                );
                None
            }
        };
        if bridge.is_some()
            && let Some(sc) = self.scaling.as_mut()
        {
            sc.read_subscriber_now(&mut self.hub, &mut self.metrics, now, self.poll.registry());
        }
        self.drain_hub();
        // what the hub published goes to Redis, as far as the socket takes it
        self.redis_turn(now);
        self.drain_hub();
        self.flush_dirty();
        let mut handover = self.handover(now);
        handover.webhooks = self.delivery.export(now);
        if let Some(sc) = self.scaling.as_ref() {
            handover.publishes = sc.held_publishes().iter().map(hex::encode).collect();
        }
        handover.redis = bridge.as_ref().map(|b| RedisHandover {
            fd: b.tcp.as_raw_fd(),
            unread: hex::encode(&b.unread),
            messages: b.messages.iter().map(hex::encode).collect(),
            tls: b.tls.clone(),
        });
        let state = format::state_path();
        if let Err(e) = format::write_state(&state, &handover) {
            self.upgrade_failed(&e);
            return;
        }
        let fds: Vec<i32> = std::iter::once(handover.listener)
            .chain(handover.metrics_listener)
            .chain(handover.redis.as_ref().map(|r| r.fd))
            .chain(handover.conns.iter().map(|c| c.fd))
            .collect();
        let mut kept = Vec::with_capacity(fds.len());
        let mut failed = None;
        for fd in fds {
            match sys::set_keep_on_exec(fd, true) {
                Ok(()) => kept.push(fd),
                Err(e) => {
                    failed = Some(format!("cannot keep descriptor {fd} across exec: {e}"));
                    break;
                }
            }
        }
        if failed.is_none() {
            log_warn!(
                "upgrade: handing {} connections over to {}",
                handover.conns.len(),
                exe.display()
            );
            let mut cmd = Command::new(&exe);
            if let Some(argv0) = std::env::args_os().next() {
                cmd.arg0(argv0);
            }
            let err = cmd
                .args(std::env::args_os().skip(1))
                .env(format::ENV_STATE, &state)
                .exec();
            failed = Some(format!("cannot execute {}: {err}", exe.display()));
        }
        for fd in kept {
            let _ = sys::set_keep_on_exec(fd, false);
        }
        let _ = std::fs::remove_file(&state);
        if let Some(reason) = failed {
            self.upgrade_failed(&reason);
        }
    }

    /// With scaling, a new subscriber connection, set up with blocking
    /// calls bounded by [`BRIDGE_TIMEOUT`] (the loop waits: one round trip
    /// or two to Redis, at the switch): the socket, the bytes of an
    /// incomplete reply, the messages it received after subscribing, and
    /// over `rediss://` its TLS 1.3 record layer. `None` without scaling.
    fn redis_bridge(&self) -> Result<Option<Bridge>, String> {
        use std::io::{Read, Write};
        use std::net::ToSocketAddrs;
        let Some(sc) = self.cfg.scaling.as_ref() else {
            return Ok(None);
        };
        if self.scaling.is_none() {
            return Ok(None);
        }
        let target = &sc.redis;
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", target.host))?;
        let mut tcp = std::net::TcpStream::connect_timeout(&addr, BRIDGE_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(BRIDGE_TIMEOUT))
            .and_then(|_| tcp.set_write_timeout(Some(BRIDGE_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let mut tls = if target.tls {
            Some(BridgeTls::handshake(&mut tcp, &target.host)?)
        } else {
            None
        };
        let mut c = RedisClient::new(RedisRole::Subscriber, target, &sc.channel);
        c.connecting(0);
        c.connected(0);
        let deadline = Instant::now() + BRIDGE_TIMEOUT;
        let mut messages = Vec::new();
        let mut ready = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if !c.output().is_empty() {
                match tls.as_mut() {
                    Some(t) => t.write_all(&mut tcp, c.output())?,
                    None => tcp
                        .write_all(c.output())
                        .map_err(|e| format!("write: {e}"))?,
                }
                let n = c.output().len();
                c.wrote(n);
            }
            while let Some(e) = c.poll_event() {
                match e {
                    RedisEvent::Ready => ready = true,
                    RedisEvent::Message(m) => messages.push(m),
                    RedisEvent::Published(_) => {}
                }
            }
            if ready {
                let records = match tls {
                    Some(t) => Some(t.into_records(&mut c, &mut messages)?),
                    None => None,
                };
                return Ok(Some(Bridge {
                    tcp,
                    unread: c.unread().to_vec(),
                    messages,
                    tls: records,
                }));
            }
            if Instant::now() > deadline {
                return Err("Redis did not confirm the subscription in time".into());
            }
            let plain = match tls.as_mut() {
                Some(t) => t.read(&mut tcp)?,
                None => {
                    let n = tcp.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                    if n == 0 {
                        return Err("Redis closed the connection".into());
                    }
                    buf[..n].to_vec()
                }
            };
            c.received(0, &plain).map_err(|e| e.0)?;
        }
    }

    /// The loop's state as plain data: the plain connections (TLS ones are
    /// left out), the listeners and the hub. The hub's output must have
    /// been drained.
    fn handover(&self, now: u64) -> Handover {
        let conns = self
            .conns
            .iter()
            .filter(|(_, c)| !c.tls_session())
            .map(|(id, c)| ConnHandover {
                slot: id.slot() as u32,
                generation: id.generation(),
                fd: c.stream.as_raw_fd(),
                phase: match &c.phase {
                    Phase::Http { listener, deadline } => PhaseHandover::Http {
                        metrics: *listener == Listener::Metrics,
                        deadline: *deadline,
                    },
                    Phase::WebSocket {
                        decoder,
                        max_message,
                    } => PhaseHandover::WebSocket {
                        max_message: *max_message,
                        fragments: decoder
                            .fragments()
                            .map(|(f, binary)| (hex::encode(f), binary)),
                    },
                    Phase::Closing(closing) => PhaseHandover::Closing {
                        deadline: closing.deadline,
                        write_shut: closing.write_shut,
                    },
                },
                pending: hex::encode(&c.pending),
                unsent: hex::encode(c.unsent()),
                writable: c.writable,
                tls: c.records_export(),
            })
            .collect();
        Handover {
            version: format::VERSION,
            clock_ms: now,
            unix_ms: unix_ms(),
            listener: self.listener.as_raw_fd(),
            metrics_listener: self.metrics_listener.as_ref().map(|l| l.as_raw_fd()),
            conns,
            hub: self.hub.export(),
            redis: None,
            publishes: Vec::new(),
            webhooks: Vec::new(),
        }
    }
}

/// What the check's child said on stderr (its last line, bounded).
fn child_stderr(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(err) = child.stderr.as_mut() {
        let _ = err.take(64 * 1024).read_to_string(&mut text);
    }
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let line: String = line.chars().take(500).collect();
    if line.is_empty() {
        "no reason given".to_string()
    } else {
        line
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The new image: take over the hand-over at `path` (named by
/// `REVURB_UPGRADE_STATE`). The file is removed once read.
pub fn resume(cfg: Config, flags: Flags, path: &std::path::Path) -> io::Result<Server> {
    let t0 = Instant::now();
    let read = format::read_state(path);
    let _ = std::fs::remove_file(path);
    let mut h = read.map_err(io::Error::other)?;
    // Adopt every descriptor before this image opens one of its own (the
    // contract of `sys::adopt_*`); `Handover::check` refused duplicates.
    let listener = sys::adopt_listener(h.listener)?;
    listener.set_nonblocking(true)?;
    let wanted = cfg.bind_addr();
    if let Ok(have) = listener.local_addr()
        && wanted.port() != 0
        && have != wanted
    {
        log_warn!(
            "upgrade: keeping the listener on {have}; the configuration's {wanted} takes effect at the next restart"
        );
    }
    let metrics = match h.metrics_listener {
        Some(fd) => {
            let l = sys::adopt_listener(fd)?;
            l.set_nonblocking(true)?;
            Some(TcpListener::from_std(l))
        }
        None => None,
    };
    let mut streams = Vec::with_capacity(h.conns.len());
    for c in &h.conns {
        match sys::adopt_stream(c.fd) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                streams.push(Some(TcpStream::from_std(s)));
            }
            Err(e) => {
                log_warn!("upgrade: connection {} not taken over: {e}", c.slot);
                streams.push(None);
            }
        }
    }
    let redis = match &h.redis {
        Some(r) => match sys::adopt_stream(r.fd).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
            Ok(s) => {
                let unhex = |t: &str| hex::decode(t).unwrap_or_default();
                let messages = r.messages.iter().map(|m| unhex(m)).collect();
                Some((
                    TcpStream::from_std(s),
                    unhex(&r.unread),
                    messages,
                    r.tls.clone(),
                ))
            }
            Err(e) => {
                log_warn!("upgrade: the Redis subscriber was not taken over: {e}");
                None
            }
        },
        None => None,
    };
    let t_read_adopt = t0.elapsed();
    let written = h.unix_ms;
    // the loop's clock goes on from where the old image's was
    let gap = unix_ms().saturating_sub(h.unix_ms).min(60_000);
    let start = Instant::now()
        .checked_sub(Duration::from_millis(h.clock_ms + gap))
        .unwrap_or_else(Instant::now);
    let node = h.hub.cluster.as_ref().map(|c| c.node.clone());
    let webhooks = std::mem::take(&mut h.webhooks);
    let publishes: Vec<Vec<u8>> = std::mem::take(&mut h.publishes)
        .iter()
        .filter_map(|p| hex::decode(p).ok())
        .collect();
    let mut server = assemble(
        cfg,
        flags,
        TcpListener::from_std(listener),
        metrics,
        start,
        node,
    )?;
    let now = server.now();
    if let (Some((sock, unread, messages, tls)), Some(sc)) = (redis, server.scaling.as_mut())
        && let Err(e) = sc.adopt_subscriber(
            now,
            sock,
            server.poll.registry(),
            unread,
            messages,
            tls.as_ref(),
        )
    {
        log_warn!("upgrade: the Redis subscriber was not taken over: {e}");
    }
    if let Some(sc) = server.scaling.as_mut() {
        if !publishes.is_empty() {
            log_warn!(
                "upgrade: {} publishes the previous binary held go to Redis first",
                publishes.len()
            );
        }
        sc.carry_publishes(publishes);
    }
    let hooks = server.delivery.import(now, webhooks);
    if hooks > 0 {
        log_warn!("upgrade: {hooks} webhook events not yet delivered taken over");
    }
    let count = h.conns.len();
    let t1 = Instant::now();
    for (c, stream) in h.conns.into_iter().zip(streams) {
        let Some(stream) = stream else { continue };
        server.restore_conn(c, stream);
    }
    server.conns.rebuild_free();
    let t_register = t1.elapsed();
    let t2 = Instant::now();
    let in_hub: Vec<ConnId> = h
        .hub
        .conns
        .iter()
        .map(|c| ConnId::new(c.slot, c.generation))
        .collect();
    let imported = server.hub.import(now, h.hub).map_err(io::Error::other)?;
    log_debug!(
        "upgrade: read and adopted in {} ms, registered in {} ms, hub imported in {} ms",
        t_read_adopt.as_millis(),
        t_register.as_millis(),
        t2.elapsed().as_millis()
    );
    // the hub knows no connection it did not import: close the rest
    let known: Vec<ConnId> = server.conns.iter().map(|(id, _)| id).collect();
    for id in known {
        let ws = server
            .conns
            .get(id)
            .is_some_and(|c| matches!(c.phase, Phase::WebSocket { .. }));
        if ws && !server.hub.is_open(id) {
            server.close_ws(
                id,
                PusherError::Shutdown.code(),
                PusherError::Shutdown.message(),
                now,
            );
        }
    }
    // and a connection the loop could not take back (its descriptor or its
    // TLS keys) is gone: the hub lets it go as any closed connection
    for id in in_hub {
        if server.hub.is_open(id) && server.conns.get(id).is_none() {
            server.hub.close(now, id);
        }
    }
    if !imported.orphans.is_empty() {
        log_warn!(
            "upgrade: {} connections of apps the configuration no longer has were closed with 4200",
            imported.orphans.len()
        );
    }
    server.drain_hub();
    log_warn!(
        "upgrade: took over {} connections (of {count}) from the previous binary, pid {}, {} ms after it wrote the hand-over",
        server.conns.len(),
        std::process::id(),
        unix_ms().saturating_sub(written)
    );
    format::write_status(server.cfg.pid_file.as_deref(), Ok(()));
    Ok(server)
}

impl Server {
    /// One handed-over connection back in its slot, under its token.
    fn restore_conn(&mut self, c: ConnHandover, mut stream: TcpStream) {
        let id = ConnId::new(c.slot, c.generation);
        let token = Token(id.slot() + FIRST_CONN);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log_warn!("upgrade: cannot register connection {}: {e}", c.slot);
            return;
        }
        let bytes = |h: &str| hex::decode(h).unwrap_or_default();
        let (listener, http_deadline) = match &c.phase {
            PhaseHandover::Http { metrics, deadline } => (
                if *metrics {
                    Listener::Metrics
                } else {
                    Listener::Main
                },
                *deadline,
            ),
            _ => (Listener::Main, 0),
        };
        let mut conn = Conn::new(stream, listener, http_deadline);
        let sealed_waiting = c.tls.as_ref().is_some_and(|t| !t.unsent.is_empty());
        if let Some(x) = &c.tls {
            match Records::import(x) {
                Ok(r) => conn.tls = Some(Box::new(Tls::Records(r))),
                Err(e) => {
                    log_warn!("upgrade: TLS connection {} not taken over: {e}", c.slot);
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                    return;
                }
            }
        }
        conn.writable = c.writable;
        conn.pending = bytes(&c.pending);
        let unsent = bytes(&c.unsent);
        let mut deadline = None;
        match c.phase {
            PhaseHandover::Http { deadline: at, .. } => deadline = Some(at),
            PhaseHandover::WebSocket {
                max_message,
                fragments,
            } => {
                let decoder = match fragments {
                    Some((f, binary)) => Decoder::resume(bytes(&f), binary),
                    None => Decoder::default(),
                };
                conn.phase = Phase::WebSocket {
                    decoder,
                    max_message,
                };
            }
            PhaseHandover::Closing {
                deadline: at,
                write_shut,
            } => {
                conn.push(Chunk::Owned(unsent.clone()));
                conn.begin_closing(at, at + super::CLOSE_MAX_MS);
                if write_shut {
                    conn.shut_write_when_closing();
                }
                deadline = Some(at);
            }
        }
        if !matches!(conn.phase, Phase::Closing(_)) {
            conn.push(Chunk::Owned(unsent));
        }
        let has_output = conn.queued_bytes() > 0 || sealed_waiting;
        match self.conns.restore(id, conn) {
            Ok(()) => {
                if let Some(at) = deadline {
                    self.arm_timer(id, at);
                }
                if has_output {
                    self.mark_dirty(id);
                }
            }
            Err(mut conn) => {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// The subscriber connection an upgrade hands over (see
/// [`Server::redis_bridge`]).
struct Bridge {
    tcp: std::net::TcpStream,
    unread: Vec<u8>,
    messages: Vec<Vec<u8>>,
    tls: Option<crate::tls_record::RecordsExport>,
}

/// The bridge's TLS over a blocking socket. rustls is only ever given
/// whole records, so that once the subscription is confirmed no partial
/// record is left inside it and its traffic keys and sequence numbers are
/// all the new binary needs to go on ([`BridgeTls::into_records`]).
struct BridgeTls {
    conn: rustls::ClientConnection,
}

impl BridgeTls {
    fn handshake(tcp: &mut std::net::TcpStream, host: &str) -> Result<BridgeTls, String> {
        let cfg = crate::tls::client_config_for_handover()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
        let conn =
            rustls::ClientConnection::new(cfg, name).map_err(|e| format!("TLS setup: {e}"))?;
        let mut t = BridgeTls { conn };
        while t.conn.is_handshaking() {
            t.flush(tcp)?;
            if t.conn.is_handshaking() {
                t.feed_record(tcp)?;
            }
        }
        t.flush(tcp)?;
        if t.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Err("Redis negotiated TLS 1.2, whose session cannot be handed over".into());
        }
        Ok(t)
    }

    fn flush(&mut self, tcp: &mut std::net::TcpStream) -> Result<(), String> {
        while self.conn.wants_write() {
            self.conn
                .write_tls(tcp)
                .map_err(|e| format!("TLS write: {e}"))?;
        }
        Ok(())
    }

    /// Read exactly one record from the socket and give it to rustls.
    fn feed_record(&mut self, tcp: &mut std::net::TcpStream) -> Result<(), String> {
        use std::io::Read;
        let mut header = [0u8; crate::tls_record::HEADER];
        tcp.read_exact(&mut header)
            .map_err(|e| format!("read: {e}"))?;
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if crate::tls_record::HEADER + len > crate::tls_record::MAX_RECORD {
            return Err("malformed TLS record from Redis".into());
        }
        let mut record = header.to_vec();
        record.resize(crate::tls_record::HEADER + len, 0);
        tcp.read_exact(&mut record[crate::tls_record::HEADER..])
            .map_err(|e| format!("read: {e}"))?;
        let mut rd = &record[..];
        while !rd.is_empty() {
            self.conn
                .read_tls(&mut rd)
                .map_err(|e| format!("TLS read: {e}"))?;
        }
        self.conn
            .process_new_packets()
            .map_err(|e| format!("TLS with Redis failed: {e}"))?;
        Ok(())
    }

    fn write_all(&mut self, tcp: &mut std::net::TcpStream, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        self.conn
            .writer()
            .write_all(bytes)
            .map_err(|e| format!("TLS write: {e}"))?;
        self.flush(tcp)
    }

    /// The plaintext of the next record (empty for a record without any).
    fn read(&mut self, tcp: &mut std::net::TcpStream) -> Result<Vec<u8>, String> {
        use std::io::Read;
        self.feed_record(tcp)?;
        let mut plain = Vec::new();
        match self.conn.reader().read_to_end(&mut plain) {
            Ok(_) => return Err("Redis closed the TLS session".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("TLS read: {e}")),
        }
        Ok(plain)
    }

    /// Hand the session's keys over: what rustls still holds as plaintext
    /// goes to the client first (and so to `messages`), then the record
    /// layer is exported.
    fn into_records(
        mut self,
        c: &mut RedisClient,
        messages: &mut Vec<Vec<u8>>,
    ) -> Result<crate::tls_record::RecordsExport, String> {
        use std::io::Read;
        let mut plain = Vec::new();
        match self.conn.reader().read_to_end(&mut plain) {
            Ok(_) => return Err("Redis closed the TLS session".into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("TLS read: {e}")),
        }
        if !plain.is_empty() {
            c.received(0, &plain).map_err(|e| e.0)?;
            while let Some(e) = c.poll_event() {
                if let RedisEvent::Message(m) = e {
                    messages.push(m);
                }
            }
        }
        if self.conn.wants_write() {
            return Err("the TLS session has more to send".into());
        }
        let secrets = self
            .conn
            .dangerous_extract_secrets()
            .map_err(|e| format!("cannot take the TLS keys: {e}"))?;
        let records = crate::tls_record::Records::new(secrets)
            .map_err(|e| format!("cannot take the TLS keys: {e}"))?;
        Ok(records.export())
    }
}

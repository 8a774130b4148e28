//! The single-threaded mio engine: WebSocket clients, HTTP publishers, schedules.
//!
//! A mode drives it phase by phase: it sets plans (connections to open, publishes or
//! client events to send) and calls [`Bench::run_until`] with a condition and a
//! deadline; every loop here is bounded by a count or by that deadline.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{Value, json};

use crate::proto::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::stats::Bitset;
use crate::tls;

/// Tokens at or above this are HTTP connections.
const HTTP_BASE: usize = 1 << 28;
/// Error messages kept for the report.
const MAX_ERRORS: usize = 20;
/// Reconnections of HTTP connections allowed per run.
const MAX_HTTP_RECONNECTS: u64 = 200;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WsState {
    Connecting,
    Upgrading,
    Open,
    Subscribing,
    Subscribed,
    Closed,
}

pub struct Ws {
    sock: Option<TcpStream>,
    /// The TLS session (`--tls`).
    tls: Option<Box<rustls::ClientConnection>>,
    pub state: WsState,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    started: Instant,
    /// Connect start to `pusher:connection_established`.
    pub open_after: Option<Duration>,
    /// Connect start to `pusher_internal:subscription_succeeded`.
    pub sub_after: Option<Duration>,
    pub group: usize,
    /// Index into [`Bench::targets`]: the server this client connects to.
    pub target: usize,
    socket_id: String,
    pub slow: bool,
    pub paused: bool,
    /// When this client stopped reading.
    pub paused_at: Option<Instant>,
    pub close_code: Option<u16>,
    pub error_code: Option<i64>,
    /// How and when the connection ended, as seen by us.
    pub ended: Option<(Instant, String)>,
    /// When TCP_INFO first showed the connection not ESTABLISHED (checked while paused).
    pub tcp_gone: Option<(Instant, u8)>,
    pub seen: Bitset,
    /// Sequence numbers this client sent itself (client events).
    pub own: Bitset,
    pub received: u64,
    pub dups: u64,
    pub echoes: u64,
    pub pings: u64,
}

enum Req {
    Publish { group: usize, seq: u64, ts: u64 },
    Probe { ts: u64 },
}

struct Http {
    sock: Option<TcpStream>,
    /// The TLS session (`--tls`).
    tls: Option<Box<rustls::ClientConnection>>,
    connected: bool,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    inflight: Option<Req>,
    probe: bool,
}

/// Open connections at a bounded rate.
pub struct ConnPlan {
    pub start: Instant,
    pub rate: f64,
    pub count: usize,
    pub issued: usize,
    pub groups: usize,
    pub slow: bool,
    pub max_pending: usize,
}

/// Publish through the HTTP API: `rate` per second, or as fast as responses come (`None`).
pub struct PubPlan {
    pub start: Instant,
    pub rate: Option<f64>,
    pub stop: Instant,
    pub issued: u64,
    pub groups: usize,
}

/// Client events: `rate` per second, round-robin over groups and their members.
pub struct CePlan {
    pub start: Instant,
    pub rate: f64,
    pub stop: Instant,
    pub issued: u64,
    pub groups: usize,
    pub group_size: usize,
    pub skipped: u64,
}

/// Ask the server for its connection count every `every`.
pub struct ProbePlan {
    pub every: Duration,
    pub next: Instant,
    pub samples: Vec<(f64, u64)>,
}

pub struct Settings {
    /// The server of the HTTP connections, and of the clients unless
    /// [`Bench::set_targets`] says otherwise.
    pub server: SocketAddr,
    pub app_id: String,
    pub app_key: String,
    pub secret: String,
    /// Source-address offset (see [`proto::source_ip`]).
    pub salt: usize,
    /// Subscribe to `private-` channels (signing the auth).
    pub private: bool,
    pub payload: usize,
    /// Receive buffer of clients that stop reading.
    pub slow_rcvbuf: usize,
    /// `--tls`: every connection speaks TLS with this configuration.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A pause between deliveries longer than this is recorded in `Bench::gaps`.
pub const GAP_MS: u64 = 50;

pub struct Bench {
    poll: Poll,
    events: Events,
    pub set: Settings,
    pub base: Instant,
    pub ws: Vec<Ws>,
    http: Vec<Http>,
    /// Servers the clients connect to (`targets[0]` is `set.server` unless set).
    pub targets: Vec<SocketAddr>,
    /// Targets (indexes) that new clients are spread over, round-robin.
    spread: Vec<usize>,
    /// Delivery latencies (ns) per target of the receiving client; empty unless
    /// [`Bench::set_targets`] was called.
    pub lat_by_target: Vec<Vec<u64>>,
    tmp: Vec<u8>,
    pub conn_plan: Option<ConnPlan>,
    pub pub_plan: Option<PubPlan>,
    pub ce_plan: Option<CePlan>,
    pub probe: Option<ProbePlan>,
    next_slow_check: Instant,
    /// Clients that stopped reading, watched through TCP_INFO.
    slow_watch: Vec<usize>,
    /// Connections opened but neither subscribed nor closed.
    pub pending: usize,
    pub connect_failures: u64,
    pub errors: Vec<String>,
    pub error_count: u64,
    /// Per group: next sequence number, and the ones the server accepted.
    pub group_seq: Vec<u64>,
    pub accepted: Vec<Bitset>,
    /// Normal (not slow) subscribed clients per group.
    pub live_subs: Vec<u64>,
    /// Deliveries the server should have made so far, and unique ones received.
    pub expected_live: u64,
    pub delivered: u64,
    pub phase: usize,
    /// Delivery latencies (ns) per phase.
    pub lat: Vec<Vec<u64>>,
    pub first_delivery: Option<Instant>,
    pub last_delivery: Option<Instant>,
    /// Pauses between two deliveries (to anyone) longer than [`GAP_MS`]:
    /// (last delivery before, first after); at most 1000 kept.
    pub gaps: Vec<(Instant, Instant)>,
    pub statuses: BTreeMap<u16, u64>,
    pub req_lat: Vec<u64>,
    pub http_errors: u64,
    http_reconnects: u64,
    /// Client events subtract the sender from the receivers.
    pub sender_excluded: bool,
    /// `pusher_internal:subscription_count` messages received, all clients.
    pub counts_received: u64,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Bench {
    pub fn new(set: Settings, groups: usize) -> io::Result<Bench> {
        let now = Instant::now();
        Ok(Bench {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            base: now,
            ws: Vec::new(),
            http: Vec::new(),
            targets: vec![set.server],
            spread: vec![0],
            lat_by_target: Vec::new(),
            tmp: vec![0; 256 * 1024],
            conn_plan: None,
            pub_plan: None,
            ce_plan: None,
            probe: None,
            next_slow_check: now,
            slow_watch: Vec::new(),
            pending: 0,
            connect_failures: 0,
            errors: Vec::new(),
            error_count: 0,
            group_seq: vec![0; groups.max(1)],
            accepted: vec![Bitset::default(); groups.max(1)],
            live_subs: vec![0; groups.max(1)],
            expected_live: 0,
            delivered: 0,
            phase: 0,
            lat: vec![Vec::new()],
            first_delivery: None,
            last_delivery: None,
            gaps: Vec::new(),
            statuses: BTreeMap::new(),
            req_lat: Vec::new(),
            http_errors: 0,
            http_reconnects: 0,
            sender_excluded: false,
            counts_received: 0,
            set,
        })
    }

    pub fn note(&mut self, msg: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(msg);
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn set_phase(&mut self, phase: usize) {
        self.phase = phase;
        while self.lat.len() <= phase {
            self.lat.push(Vec::new());
        }
    }

    pub fn channel_name(&self, group: usize) -> String {
        if self.set.private {
            format!("private-bench-{group}")
        } else {
            format!("bench-{group}")
        }
    }

    /// Clients connect to `targets` (HTTP connections stay on `set.server`): the `k`-th
    /// client opened subscribes to group `k % groups` on target
    /// `spread[(k / groups) % spread.len()]`, so each group is spread over those targets.
    /// Latencies are then also kept per target, in `lat_by_target`.
    pub fn set_targets(&mut self, targets: Vec<SocketAddr>, spread: Vec<usize>) {
        assert!(!spread.is_empty() && spread.iter().all(|&t| t < targets.len()));
        self.lat_by_target = vec![Vec::new(); targets.len()];
        self.targets = targets;
        self.spread = spread;
    }

    /// The target of the `k`-th client of a plan over `groups` groups.
    fn target_of(&self, k: usize, groups: usize) -> usize {
        self.spread[(k / groups.max(1)) % self.spread.len()]
    }

    fn socket(
        &self,
        index: usize,
        dst: SocketAddr,
        rcvbuf: Option<usize>,
    ) -> io::Result<TcpStream> {
        let SocketAddr::V4(server) = dst else {
            return Err(io::Error::other("IPv4 only"));
        };
        nonblocking_connect(proto::source_ip(index, self.set.salt), server, rcvbuf)
    }

    // ---- WebSocket clients ---------------------------------------------------------

    /// Start one client subscribing to `group` on `targets[target]`; returns its index.
    pub fn open_ws(&mut self, group: usize, slow: bool, target: usize) -> usize {
        let i = self.ws.len();
        let now = Instant::now();
        let mut ws = Ws {
            sock: None,
            tls: None,
            state: WsState::Connecting,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            started: now,
            open_after: None,
            sub_after: None,
            group,
            target,
            socket_id: String::new(),
            slow,
            paused: false,
            paused_at: None,
            close_code: None,
            error_code: None,
            ended: None,
            tcp_gone: None,
            seen: Bitset::default(),
            own: Bitset::default(),
            received: 0,
            dups: 0,
            echoes: 0,
            pings: 0,
        };
        let rcvbuf = slow.then_some(self.set.slow_rcvbuf);
        let opened = self
            .socket(i, self.targets[target], rcvbuf)
            .and_then(|mut s| {
                if let Some(config) = &self.set.tls {
                    ws.tls = Some(tls::connect(config)?);
                }
                self.poll.registry().register(
                    &mut s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                Ok(s)
            });
        match opened {
            Ok(s) => {
                ws.sock = Some(s);
                self.pending += 1;
            }
            Err(e) => {
                ws.state = WsState::Closed;
                ws.ended = Some((now, format!("connect: {e}")));
                self.connect_failures += 1;
                self.note(format!("client {i}: connect: {e}"));
            }
        }
        self.ws.push(ws);
        i
    }

    fn close_ws(&mut self, i: usize, how: String) {
        let ws = &mut self.ws[i];
        if ws.state == WsState::Closed {
            return;
        }
        if let Some(mut s) = ws.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        ws.tls = None;
        let was = ws.state;
        ws.state = WsState::Closed;
        ws.ended = Some((Instant::now(), how.clone()));
        ws.rbuf = Vec::new();
        ws.wbuf = Vec::new();
        if was == WsState::Subscribed {
            if !ws.slow {
                self.live_subs[ws.group] -= 1;
            }
        } else {
            self.pending -= 1;
            self.connect_failures += 1;
            self.note(format!("client {i}: closed before subscribing: {how}"));
        }
    }

    fn ws_send(&mut self, i: usize, bytes: &[u8]) {
        self.ws[i].wbuf.extend_from_slice(bytes);
        self.ws_flush(i);
    }

    fn ws_flush(&mut self, i: usize) {
        let ws = &mut self.ws[i];
        let Some(s) = ws.sock.as_mut() else { return };
        let mut done = 0;
        let mut err = None;
        while let Some(session) = ws.tls.as_mut() {
            match tls::write(session, s, &ws.wbuf[done..]) {
                Ok(n) => {
                    done += n;
                    if n == 0 || done == ws.wbuf.len() {
                        break;
                    }
                }
                Err(e) => {
                    err = Some(format!("tls write: {e}"));
                    break;
                }
            }
        }
        while ws.tls.is_none() && done < ws.wbuf.len() {
            match s.write(&ws.wbuf[done..]) {
                Ok(0) => {
                    err = Some("write returned 0".to_string());
                    break;
                }
                Ok(n) => done += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(format!("write: {e}"));
                    break;
                }
            }
        }
        ws.wbuf.drain(..done);
        if let Some(e) = err {
            self.close_ws(i, e);
        }
    }

    fn ws_event(&mut self, i: usize, readable: bool) {
        if self.ws[i].state == WsState::Closed {
            return;
        }
        if self.ws[i].state == WsState::Connecting {
            let s = self.ws[i].sock.as_ref().expect("open socket");
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.close_ws(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => {
                    self.ws[i].state = WsState::Upgrading;
                    let server = self.targets[self.ws[i].target];
                    let req = proto::upgrade_request(server, &self.set.app_key);
                    self.ws[i].wbuf.extend_from_slice(&req);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.close_ws(i, format!("connect: {e}")),
            }
        }
        self.ws_flush(i);
        if readable && !self.ws[i].paused {
            self.ws_read(i);
        }
    }

    fn ws_read(&mut self, i: usize) {
        let ws = &mut self.ws[i];
        if let (Some(session), Some(s)) = (ws.tls.as_mut(), ws.sock.as_mut()) {
            let end = match tls::read(session, s, &mut ws.rbuf) {
                Ok(false) => None,
                Ok(true) => Some("eof".to_string()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some("reset".into()),
                Err(e) => Some(format!("tls read: {e}")),
            };
            self.ws_process(i);
            if let Some(how) = end {
                self.close_ws(i, how);
            }
            return;
        }
        let mut tmp = std::mem::take(&mut self.tmp);
        let mut end = None;
        while let Some(s) = self.ws[i].sock.as_mut() {
            match s.read(&mut tmp) {
                Ok(0) => {
                    end = Some("eof".to_string());
                    break;
                }
                Ok(n) => {
                    self.ws[i].rbuf.extend_from_slice(&tmp[..n]);
                    if n < tmp.len() {
                        // Most likely drained; process before reading on so that
                        // latencies are taken close to arrival.
                        self.ws_process(i);
                    }
                }
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    end = Some("reset".to_string());
                    break;
                }
                Err(e) => {
                    end = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        self.tmp = tmp;
        self.ws_process(i);
        if let Some(how) = end {
            self.close_ws(i, how);
        }
    }

    fn ws_process(&mut self, i: usize) {
        if self.ws[i].state == WsState::Closed {
            return;
        }
        let mut buf = std::mem::take(&mut self.ws[i].rbuf);
        let mut off = 0;
        if self.ws[i].state == WsState::Upgrading {
            match proto::parse_http_head(&buf) {
                Ok(None) => {
                    self.ws[i].rbuf = buf;
                    return;
                }
                Ok(Some(h)) if h.status == 101 => {
                    off = h.head_len;
                    self.ws[i].state = WsState::Open;
                }
                Ok(Some(h)) => return self.close_ws(i, format!("upgrade: HTTP {}", h.status)),
                Err(e) => return self.close_ws(i, format!("upgrade: {e}")),
            }
        }
        let now = Instant::now();
        let now_ns = self.now_ns();
        loop {
            if self.ws[i].state == WsState::Closed {
                return;
            }
            match proto::parse_frame(&buf[off..]) {
                Ok(None) => break,
                Err(e) => return self.close_ws(i, format!("frame: {e}")),
                Ok(Some(f)) => {
                    let payload = &buf[off + f.start..off + f.end];
                    match f.opcode {
                        OP_TEXT if f.fin => self.on_text(i, payload, now, now_ns),
                        OP_PING => {
                            let pong = proto::masked_frame(OP_PONG, payload, [9, 8, 7, 6]);
                            self.ws_send(i, &pong);
                        }
                        OP_CLOSE => {
                            let code = proto::close_code(payload);
                            self.ws[i].close_code = code;
                            let echo = proto::masked_frame(
                                OP_CLOSE,
                                &payload[..payload.len().min(2)],
                                [1, 1, 1, 1],
                            );
                            self.ws_send(i, &echo);
                            return self.close_ws(
                                i,
                                format!("close {}", code.map_or("-".into(), |c| c.to_string())),
                            );
                        }
                        OP_PONG => {}
                        op => self.note(format!(
                            "client {i}: unexpected opcode {op} (fin {})",
                            f.fin
                        )),
                    }
                    off += f.end;
                }
            }
        }
        buf.drain(..off);
        if self.ws[i].state != WsState::Closed {
            self.ws[i].rbuf = buf;
        }
    }

    fn on_text(&mut self, i: usize, msg: &[u8], now: Instant, now_ns: u64) {
        if let Some((seq, ts)) = proto::parse_bench(msg) {
            let ws = &mut self.ws[i];
            if ws.slow {
                ws.received += 1;
                return;
            }
            if ws.own.get(seq) {
                ws.echoes += 1;
                return;
            }
            if ws.seen.set(seq) {
                ws.dups += 1;
                return;
            }
            ws.received += 1;
            self.delivered += 1;
            let latency = now_ns.saturating_sub(ts);
            self.lat[self.phase].push(latency);
            if let Some(v) = self.lat_by_target.get_mut(ws.target) {
                v.push(latency);
            }
            self.first_delivery.get_or_insert(now);
            if let Some(prev) = self.last_delivery
                && now.duration_since(prev) > Duration::from_millis(GAP_MS)
                && self.gaps.len() < 1000
            {
                self.gaps.push((prev, now));
            }
            self.last_delivery = Some(now);
            return;
        }
        let v: Value = match serde_json::from_slice(msg) {
            Ok(v) => v,
            Err(e) => return self.note(format!("client {i}: bad JSON from the server: {e}")),
        };
        match v["event"].as_str().unwrap_or("") {
            "pusher:connection_established" => {
                let data: Value = v["data"]
                    .as_str()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(Value::Null);
                let channel = self.channel_name(self.ws[i].group);
                let ws = &mut self.ws[i];
                ws.socket_id = data["socket_id"].as_str().unwrap_or("").to_string();
                ws.open_after = Some(now - ws.started);
                ws.state = WsState::Subscribing;
                let mut sub = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
                if self.set.private {
                    sub["data"]["auth"] = json!(proto::channel_auth(
                        &self.set.app_key,
                        &self.set.secret,
                        &self.ws[i].socket_id,
                        &channel
                    ));
                }
                let frame = proto::masked_frame(OP_TEXT, sub.to_string().as_bytes(), [3, 1, 4, 1]);
                self.ws_send(i, &frame);
            }
            "pusher_internal:subscription_succeeded" => {
                let ws = &mut self.ws[i];
                if ws.state == WsState::Subscribing {
                    ws.state = WsState::Subscribed;
                    ws.sub_after = Some(now - ws.started);
                    self.pending -= 1;
                    if ws.slow {
                        ws.paused = true;
                        ws.paused_at = Some(now);
                        self.slow_watch.push(i);
                        // Keep only writable edges: no wake-ups for data we will not read.
                        if let Some(s) = ws.sock.as_mut() {
                            let _ =
                                self.poll
                                    .registry()
                                    .reregister(s, Token(i), Interest::WRITABLE);
                        }
                    } else {
                        self.live_subs[ws.group] += 1;
                    }
                }
            }
            "pusher:ping" => {
                self.ws[i].pings += 1;
                let pong = proto::masked_frame(
                    OP_TEXT,
                    br#"{"event":"pusher:pong","data":{}}"#,
                    [5, 6, 7, 8],
                );
                self.ws_send(i, &pong);
            }
            "pusher:error" => {
                let data = match &v["data"] {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                    d => d.clone(),
                };
                self.ws[i].error_code = data["code"].as_i64();
                if !self.ws[i].slow {
                    self.note(format!("client {i}: pusher:error {data}"));
                }
            }
            "pusher:subscription_error" => {
                self.close_ws(i, format!("subscription_error {}", v["data"]));
            }
            "pusher_internal:subscription_count" => self.counts_received += 1,
            _ => {}
        }
    }

    /// Let slow clients read again (to collect how the server ended them).
    pub fn resume_slow(&mut self) {
        for i in 0..self.ws.len() {
            let ws = &mut self.ws[i];
            if !ws.paused {
                continue;
            }
            ws.paused = false;
            if let Some(s) = ws.sock.as_mut() {
                let _ = self.poll.registry().reregister(
                    s,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                );
            }
            self.ws_read(i);
        }
    }

    fn check_slow(&mut self, now: Instant) {
        let ws = &mut self.ws;
        self.slow_watch.retain(|&i| {
            let w = &mut ws[i];
            if !w.paused || w.tcp_gone.is_some() {
                return false;
            }
            if let Some(s) = w.sock.as_ref()
                && let Some(state) = tcp_state(s)
                && state != 1
            {
                w.tcp_gone = Some((now, state));
                return false;
            }
            true
        });
    }

    // ---- HTTP publishers -------------------------------------------------------------

    pub fn open_http(&mut self, probe: bool) {
        let j = self.http.len();
        self.http.push(Http {
            sock: None,
            tls: None,
            connected: false,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            inflight: None,
            probe,
        });
        self.connect_http(j);
    }

    fn connect_http(&mut self, j: usize) {
        let opened = self.socket(0, self.set.server, None).and_then(|mut s| {
            if let Some(config) = &self.set.tls {
                self.http[j].tls = Some(tls::connect(config)?);
            }
            self.poll.registry().register(
                &mut s,
                Token(HTTP_BASE + j),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match opened {
            Ok(s) => self.http[j].sock = Some(s),
            Err(e) => {
                self.http_errors += 1;
                self.note(format!("http {j}: connect: {e}"));
            }
        }
    }

    fn close_http(&mut self, j: usize, why: &str) {
        let h = &mut self.http[j];
        if let Some(mut s) = h.sock.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        h.connected = false;
        h.tls = None;
        h.rbuf.clear();
        h.wbuf.clear();
        if h.inflight.take().is_some() {
            self.http_errors += 1;
            self.note(format!("http {j}: request lost: {why}"));
        }
        if self.http_reconnects < MAX_HTTP_RECONNECTS {
            self.http_reconnects += 1;
            self.connect_http(j);
        }
    }

    /// Every HTTP connection is connected.
    pub fn http_ready(&self) -> bool {
        self.http.iter().all(|h| h.connected)
    }

    pub fn http_inflight(&self) -> usize {
        self.http.iter().filter(|h| h.inflight.is_some()).count()
    }

    fn http_event(&mut self, j: usize) {
        let Some(s) = self.http[j].sock.as_ref() else {
            return;
        };
        if !self.http[j].connected {
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.close_http(j, &format!("connect: {e}")),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => self.http[j].connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.close_http(j, &format!("connect: {e}")),
            }
        }
        if let Err(e) = self.http_flush(j) {
            return self.close_http(j, &e);
        }
        let mut tmp = std::mem::take(&mut self.tmp);
        let mut end = None;
        let h = &mut self.http[j];
        if let (Some(session), Some(s)) = (h.tls.as_mut(), h.sock.as_mut()) {
            match tls::read(session, s, &mut h.rbuf) {
                Ok(false) => {}
                Ok(true) => end = Some("eof".to_string()),
                Err(e) => end = Some(format!("tls read: {e}")),
            }
        }
        let plain = self.http[j].tls.is_none();
        while let Some(s) = self.http[j].sock.as_mut().filter(|_| plain) {
            match s.read(&mut tmp) {
                Ok(0) => {
                    end = Some("eof".to_string());
                    break;
                }
                Ok(n) => self.http[j].rbuf.extend_from_slice(&tmp[..n]),
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    end = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        self.tmp = tmp;
        if let Err(e) = self.http_process(j) {
            return self.close_http(j, &e);
        }
        if let Some(why) = end {
            self.close_http(j, &why);
        }
    }

    fn http_flush(&mut self, j: usize) -> Result<(), String> {
        let h = &mut self.http[j];
        let Some(s) = h.sock.as_mut() else {
            return Ok(());
        };
        let mut done = 0;
        let mut res = Ok(());
        while let Some(session) = h.tls.as_mut() {
            match tls::write(session, s, &h.wbuf[done..]) {
                Ok(n) => {
                    done += n;
                    if n == 0 || done == h.wbuf.len() {
                        break;
                    }
                }
                Err(e) => {
                    res = Err(format!("tls write: {e}"));
                    break;
                }
            }
        }
        while h.tls.is_none() && done < h.wbuf.len() {
            match s.write(&h.wbuf[done..]) {
                Ok(0) => {
                    res = Err("write returned 0".into());
                    break;
                }
                Ok(n) => done += n,
                Err(e) if would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    res = Err(format!("write: {e}"));
                    break;
                }
            }
        }
        h.wbuf.drain(..done);
        res
    }

    fn http_process(&mut self, j: usize) -> Result<(), String> {
        loop {
            let h = &mut self.http[j];
            let Some(head) = proto::parse_http_head(&h.rbuf)? else {
                return Ok(());
            };
            let total = head.head_len + head.content_length.unwrap_or(0);
            if h.rbuf.len() < total {
                return Ok(());
            }
            let body: Vec<u8> = h.rbuf[head.head_len..total].to_vec();
            h.rbuf.drain(..total);
            let now_ns = self.now_ns();
            match self.http[j].inflight.take() {
                Some(Req::Publish { group, seq, ts }) => {
                    *self.statuses.entry(head.status).or_default() += 1;
                    self.req_lat.push(now_ns.saturating_sub(ts));
                    if head.status == 200 {
                        self.accept(group, seq);
                    } else if self.statuses[&head.status] <= 3 {
                        let text = String::from_utf8_lossy(&body).into_owned();
                        self.note(format!("publish: HTTP {}: {text}", head.status));
                    }
                }
                Some(Req::Probe { ts }) => {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    if let (Some(p), Some(n)) = (self.probe.as_mut(), v["connections"].as_u64()) {
                        p.samples.push((ts as f64 / 1e6, n));
                    }
                }
                None => return Err("response without a request".into()),
            }
            if head.close {
                return Err("server closed the keep-alive connection".into());
            }
        }
    }

    fn accept(&mut self, group: usize, seq: u64) {
        if !self.accepted[group].set(seq) {
            let mut receivers = self.live_subs[group];
            if self.sender_excluded {
                receivers = receivers.saturating_sub(1);
            }
            self.expected_live += receivers;
        }
    }

    fn http_request(&mut self, j: usize, req: Vec<u8>, what: Req) {
        self.http[j].wbuf.extend_from_slice(&req);
        self.http[j].inflight = Some(what);
        if let Err(e) = self.http_flush(j) {
            self.close_http(j, &e);
        }
    }

    fn publish(&mut self, j: usize, group: usize) {
        let seq = self.group_seq[group];
        self.group_seq[group] += 1;
        let path = format!("/apps/{}/events", self.set.app_id);
        let ts = self.now_ns();
        let body = json!({
            "name": "bench",
            "channel": self.channel_name(group),
            "data": proto::bench_data(seq, ts, self.set.payload),
        })
        .to_string();
        let query = revurb::auth::sign_api_request(
            "POST",
            &path,
            &[],
            body.as_bytes(),
            &self.set.app_key,
            &self.set.secret,
            unix_now(),
        );
        let req = format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.set.server,
            body.len()
        );
        self.http_request(j, req.into_bytes(), Req::Publish { group, seq, ts });
    }

    fn send_probe(&mut self, j: usize) {
        let path = format!("/apps/{}/connections", self.set.app_id);
        let query = revurb::auth::sign_api_request(
            "GET",
            &path,
            &[],
            b"",
            &self.set.app_key,
            &self.set.secret,
            unix_now(),
        );
        let req = format!(
            "GET {path}?{query} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.set.server
        );
        let ts = self.now_ns();
        self.http_request(j, req.into_bytes(), Req::Probe { ts });
    }

    // ---- schedules -------------------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        if let Some(p) = &self.conn_plan {
            let due = due_count(p.start, p.rate, now).min(p.count as u64) as usize;
            let (mut issued, max_pending, groups, slow) =
                (p.issued, p.max_pending, p.groups, p.slow);
            while issued < due && self.pending < max_pending {
                let target = self.target_of(issued, groups);
                self.open_ws(issued % groups, slow, target);
                issued += 1;
            }
            if let Some(p) = self.conn_plan.as_mut() {
                p.issued = issued;
            }
        }
        if let Some(p) = &self.pub_plan
            && now < p.stop
        {
            let due = match p.rate {
                Some(r) => due_count(p.start, r, now),
                None => u64::MAX,
            };
            let (mut issued, groups) = (p.issued, p.groups);
            while issued < due {
                let Some(j) = self
                    .http
                    .iter()
                    .position(|h| !h.probe && h.connected && h.inflight.is_none())
                else {
                    break;
                };
                self.publish(j, (issued % groups as u64) as usize);
                issued += 1;
            }
            if let Some(p) = self.pub_plan.as_mut() {
                p.issued = issued;
            }
        }
        if let Some(p) = &self.ce_plan
            && now < p.stop
        {
            let due = due_count(p.start, p.rate, now);
            let (mut issued, groups, size) = (p.issued, p.groups, p.group_size);
            let mut skipped = 0;
            while issued < due {
                let g = (issued % groups as u64) as usize;
                let m = ((issued / groups as u64) % size as u64) as usize;
                issued += 1;
                let i = g + m * groups;
                if self.ws.get(i).map(|w| w.state) != Some(WsState::Subscribed) {
                    skipped += 1;
                    continue;
                }
                self.client_event(i, g);
            }
            if let Some(p) = self.ce_plan.as_mut() {
                p.issued = issued;
                p.skipped += skipped;
            }
        }
        if let Some(p) = &self.probe
            && now >= p.next
        {
            let every = p.every;
            if let Some(j) = self
                .http
                .iter()
                .position(|h| h.probe && h.connected && h.inflight.is_none())
            {
                self.send_probe(j);
            }
            if let Some(p) = self.probe.as_mut() {
                p.next = now + every;
            }
        }
        if !self.slow_watch.is_empty() && now >= self.next_slow_check {
            self.check_slow(now);
            self.next_slow_check = now + Duration::from_millis(10);
        }
    }

    fn client_event(&mut self, i: usize, g: usize) {
        let seq = self.group_seq[g];
        self.group_seq[g] += 1;
        let ts = self.now_ns();
        let msg = format!(
            "{{\"event\":\"client-bench\",\"channel\":\"{}\",\"data\":{}}}",
            self.channel_name(g),
            proto::bench_data(seq, ts, self.set.payload)
        );
        self.ws[i].own.set(seq);
        let frame = proto::masked_frame(OP_TEXT, msg.as_bytes(), [7, 7, 7, 7]);
        self.ws_send(i, &frame);
        // No acknowledgement exists for client events: a sent one is expected.
        self.accept(g, seq);
    }

    /// When the next timed action is due.
    fn next_due(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(p) = &self.conn_plan
            && p.issued < p.count
            && self.pending < p.max_pending
        {
            consider(p.start + Duration::from_secs_f64(p.issued as f64 / p.rate));
        }
        if let Some(p) = &self.pub_plan
            && now < p.stop
        {
            match p.rate {
                Some(r) => consider(p.start + Duration::from_secs_f64(p.issued as f64 / r)),
                None => consider(now + Duration::from_millis(1)),
            }
        }
        if let Some(p) = &self.ce_plan
            && now < p.stop
        {
            consider(p.start + Duration::from_secs_f64(p.issued as f64 / p.rate));
        }
        if let Some(p) = &self.probe {
            consider(p.next);
        }
        if !self.slow_watch.is_empty() {
            consider(self.next_slow_check);
        }
        next
    }

    /// Run the loop until `done` holds (true) or `deadline` passes (false).
    pub fn run_until(&mut self, deadline: Instant, done: impl Fn(&Bench) -> bool) -> bool {
        loop {
            let now = Instant::now();
            self.tick(now);
            if done(self) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            let wake = self.next_due(now).unwrap_or(deadline).min(deadline);
            let timeout = wake
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                self.note(format!("poll: {e}"));
            }
            for ev in events.iter() {
                let t = ev.token().0;
                if t >= HTTP_BASE {
                    self.http_event(t - HTTP_BASE);
                } else if t < self.ws.len() {
                    self.ws_event(t, ev.is_readable() || ev.is_read_closed() || ev.is_error());
                }
            }
            self.events = events;
        }
    }

    /// Connections currently subscribed (normal, slow).
    pub fn subscribed(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for w in &self.ws {
            if w.state == WsState::Subscribed {
                if w.slow {
                    n.1 += 1;
                } else {
                    n.0 += 1;
                }
            }
        }
        n
    }

    /// Final loss accounting over normal clients that subscribed:
    /// (expected, received unique, lost, duplicates, unexpected, echoes).
    pub fn loss_report(&self) -> Value {
        self.loss_report_where(|_| true)
    }

    /// [`Bench::loss_report`] over the clients `keep` selects.
    pub fn loss_report_where(&self, keep: impl Fn(&Ws) -> bool) -> Value {
        let (mut expected, mut got, mut dups, mut unexpected, mut echoes) = (0u64, 0, 0, 0, 0);
        for w in &self.ws {
            if w.slow || w.sub_after.is_none() || !keep(w) {
                continue;
            }
            let acc = &self.accepted[w.group];
            expected += acc.count() - w.own.count_and(acc);
            let inside = w.seen.count_and(acc);
            got += inside;
            unexpected += w.seen.count() - inside;
            dups += w.dups;
            echoes += w.echoes;
        }
        json!({
            "expected": expected,
            "received": got,
            "lost": expected.saturating_sub(got),
            "duplicates": dups,
            "unexpected": unexpected,
            "echoed_to_sender": echoes,
        })
    }
}

/// How many actions at `rate` per second are due `now` since `start` (the first at `start`).
pub fn due_count(start: Instant, rate: f64, now: Instant) -> u64 {
    if now < start || rate <= 0.0 {
        return 0;
    }
    (now.duration_since(start).as_secs_f64() * rate).floor() as u64 + 1
}

/// A non-blocking TCP connection from `src` (port chosen at connect) to `dst`, in progress.
fn nonblocking_connect(
    src: std::net::Ipv4Addr,
    dst: std::net::SocketAddrV4,
    rcvbuf: Option<usize>,
) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    fn sockaddr(a: std::net::SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        }
    }
    fn check(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns; every pointer refers to
    // a live local of the size passed with it. The descriptor is handed to a std TcpStream
    // (which closes it) before any early return after its creation.
    unsafe {
        let fd = check(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            int_len,
        ))?;
        // Choose the port at connect() time from the whole 4-tuple: binding port 0 would
        // search the bind table (slow with thousands of sockets) and use up one port per
        // socket for every destination.
        check(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            int_len,
        ))?;
        if let Some(n) = rcvbuf {
            let n = n.min(i32::MAX as usize) as libc::c_int;
            check(libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&n as *const libc::c_int).cast(),
                int_len,
            ))?;
        }
        let from = sockaddr(std::net::SocketAddrV4::new(src, 0));
        check(libc::bind(
            fd,
            (&from as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        let to = sockaddr(dst);
        if libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(stream))
    }
}

/// The TCP state (`tcpi_state`, 1 = ESTABLISHED) of a socket.
fn tcp_state(s: &TcpStream) -> Option<u8> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (r == 0).then_some(info.tcpi_state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts() {
        let t0 = Instant::now();
        assert_eq!(due_count(t0, 100.0, t0), 1);
        assert_eq!(due_count(t0, 100.0, t0 + Duration::from_millis(5)), 1);
        assert_eq!(due_count(t0, 100.0, t0 + Duration::from_millis(10)), 2);
        assert_eq!(due_count(t0, 100.0, t0 + Duration::from_secs(1)), 101);
        assert_eq!(due_count(t0 + Duration::from_secs(1), 100.0, t0), 0);
        assert_eq!(due_count(t0, 0.0, t0 + Duration::from_secs(1)), 0);
    }

    #[test]
    fn targets_spread_each_group_over_the_nodes() {
        let set = Settings {
            server: "127.0.0.1:1".parse().unwrap(),
            app_id: "a".into(),
            app_key: "k".into(),
            secret: "s".into(),
            salt: 0,
            private: false,
            payload: 10,
            slow_rcvbuf: 4096,
            tls: None,
        };
        let mut b = Bench::new(set, 2).unwrap();
        assert_eq!(b.targets.len(), 1);
        assert_eq!(b.target_of(7, 2), 0);
        assert!(b.lat_by_target.is_empty());
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
            .collect();
        // Nodes 2 and 3 (targets 1 and 2), two groups: k -> (group k % 2, target).
        b.set_targets(addrs, vec![1, 2]);
        let placed: Vec<(usize, usize)> = (0..8).map(|k| (k % 2, b.target_of(k, 2))).collect();
        assert_eq!(
            placed,
            [
                (0, 1),
                (1, 1),
                (0, 2),
                (1, 2),
                (0, 1),
                (1, 1),
                (0, 2),
                (1, 2)
            ]
        );
        assert_eq!(b.lat_by_target.len(), 3);
    }
}

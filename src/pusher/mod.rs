//! The Pusher protocol core (`Hub`), sans-IO.
//!
//! It owns apps, connections, channels, presence members, cached events and
//! its view of the other nodes. It never touches a socket or the clock, so
//! tests drive hours of pings in microseconds. Frames are built here once per
//! message and shared between recipients as `Rc<[u8]>` (a broadcast costs one
//! pointer per subscriber).
//!
//! # The contract
//!
//! Like quinn-proto's `Connection`, the hub is a state machine with one
//! caller (the event loop) and four kinds of public methods:
//!
//! - **Inputs** change state and may queue output. Connections:
//!   [`Hub::open`], [`Hub::message`], [`Hub::control`], [`Hub::close`],
//!   [`Hub::kick`], [`Hub::shutdown`], [`Hub::reload_apps`]. The HTTP API:
//!   [`Hub::trigger`], [`Hub::terminate_user`]. The cluster:
//!   [`Hub::remote`] (a message from another node), [`Hub::cluster_link`]
//!   (the Redis link went up or down), [`Hub::flush_cluster`] (send the
//!   counts that changed), [`Hub::cluster_goodbye`] (before exiting).
//! - **Outputs** leave by one door: [`Hub::poll_output`] yields every
//!   [`Output`] (a frame to send, a connection to close, a message to
//!   publish to the cluster, the outage-backlog gate, a restart, a webhook
//!   event) in the order they were queued.
//! - **Timers**: [`Hub::poll_timeout`] is the earliest deadline (pings,
//!   prunes, cache expiry, heartbeats, silent nodes, the resync deadline,
//!   the time connections have to authorize, watchlist reports and
//!   subscription counts: due at once after an input changed a watched
//!   user's status or a counted channel, so that the end of the turn
//!   reports it, or when a delay or throttle ends; webhook delays and the
//!   end of the turn's webhook events);
//!   [`Hub::handle_timeout`] does what is due.
//! - **Queries** take `&self` and change nothing: apps, channel attributes,
//!   channel lists, presence users, counts (`query`), [`Hub::cluster_nodes`],
//!   [`Hub::cluster_connection_count`], and the counters in [`Hub::stats`].
//!
//! Call order. Set up with [`Hub::new`] and, with scaling,
//! [`Hub::enable_cluster`] before any input. Then, on every turn of the
//! loop:
//!
//! 1. feed the inputs as their events arrive, each with `now`, the loop's
//!    monotonic clock in milliseconds (never decreasing);
//! 2. after each input, drain [`Hub::poll_output`] until `None` and carry
//!    every output out in order (the loop may drain after a batch of inputs
//!    instead, but before it sleeps and before it reuses a connection slot);
//! 3. once the deadline of [`Hub::poll_timeout`] has passed, call
//!    [`Hub::handle_timeout`] (late is fine; early does nothing), then drain;
//! 4. with scaling, call [`Hub::flush_cluster`] once per turn (it coalesces
//!    the turn's count changes into one message per app), then drain;
//! 5. sleep until the next event or [`Hub::poll_timeout`].
//!
//! Queries may be called at any time between inputs.
//!
//! A connection is a [`ConnId`]: the loop's slot and a generation the loop
//! changes whenever the slot changes hands. The hub ignores input for a generation
//! that is not the slot's live one and never emits output for it, and the
//! loop drops any output whose generation is not its slot's, so a late
//! output never reaches the next connection in the slot. After a
//! [`Output::Close`] the hub has already forgotten the connection; the loop
//! does not call [`Hub::close`] for it (doing so is harmless).
//!
//! # Liveness
//!
//! A connection silent for `ping_interval` seconds is pinged (a
//! `pusher:ping`, or a WebSocket PING once it has used control frames); if it
//! is still silent `ping_interval` seconds after that it is pruned with 4201.
//! Every open connection is tracked, subscribed or not (port decisions).
//!
//! # Where things are
//!
//! `client` handles what a client sends (subscribe in its steps, signin,
//! client events, the rate limit); `events` delivers events (API triggers,
//! terminations); `query` answers the API and the metrics; `cluster` is
//! horizontal scaling and its wire format (`cluster::envelope`);
//! `authorized` closes the connections that do not authorize in time when an
//! app asks for it; `watchlist` tells signed-in users when the users they
//! watch come and go; `counts` tells subscribers their channel's
//! cluster-wide count; `webhooks` decides what the apps' webhooks are told,
//! and when (once per cluster); `channel`, `app`, `message` and `error` are
//! the plain data they share.

pub mod app;
mod authorized;
pub mod channel;
mod client;
pub mod cluster;
pub mod counts;
mod error;
mod events;
pub mod handover;
pub mod message;
mod query;
mod watchlist;
mod webhooks;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;

pub use app::{App, ClientEvents, RateLimit};
use channel::Channel;
pub use error::PusherError;

use crate::websocket;

/// A complete WebSocket frame, shared between recipients.
pub type Frame = Rc<[u8]>;
/// Index of an app in the hub.
pub type AppId = usize;

/// Most channels one connection may be subscribed to at once.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 100;

/// The event loop's handle for a connection: the slot of its slab, and a
/// generation the loop changes whenever the slot changes hands. The hub keeps the
/// generation it was opened with and ignores input for, and never emits
/// output to, any other, so a late output for a closed connection can never
/// reach the next connection in its slot.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    generation: u32,
}

impl ConnId {
    pub const fn new(slot: u32, generation: u32) -> ConnId {
        ConnId { slot, generation }
    }

    /// The slab index the loop gave this connection.
    pub const fn slot(self) -> usize {
        self.slot as usize
    }

    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.slot, self.generation)
    }
}

/// What the event loop must do: the hub's one output door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Queue this frame on the connection.
    Send(ConnId, Frame),
    /// Send a close frame with this error's code and message, then close the
    /// socket. The hub has already forgotten the connection.
    Close(ConnId, PusherError),
    /// Publish this message on the cluster channel. `durable`: it must
    /// survive a Redis outage (held in the outage queue and sent once the
    /// backlog opens); otherwise it goes out now or never.
    Publish { payload: Rc<[u8]>, durable: bool },
    /// Whether publishes held through an outage may go out now: every node
    /// known before the link came back has spoken since, or `node_timeout`
    /// has passed. Emitted whenever it changes (closed until the link is up).
    Backlog { open: bool },
    /// `revurb restart` arrived over the cluster channel: close every
    /// connection with 4200 and stop.
    Restart,
    /// Tell the app's webhooks (those that want it) about this event: the
    /// hub has applied the delay and decided this node is the one to send it.
    Webhook {
        app: AppId,
        event: crate::webhook::Event,
    },
}

impl Output {
    /// The connection a `Send` or `Close` is for.
    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Output::Send(c, _) | Output::Close(c, _) => Some(*c),
            _ => None,
        }
    }
}

/// What the loop needs to know about an accepted WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub max_message_size: usize,
}

#[derive(Debug)]
struct Conn {
    /// The id it was opened with (its slot's live generation).
    id: ConnId,
    app: AppId,
    socket_id: u64,
    last_seen: u64,
    /// When the server pinged it, if it has not answered since.
    pinged_at: Option<u64>,
    /// The client has sent a WebSocket control frame, so ping with one.
    control_frames: bool,
    channels: Vec<Rc<str>>,
    /// The user id of a `pusher:signin`.
    user: Option<Rc<str>>,
    rate_window_start: u64,
    rate_count: u32,
}

struct AppState {
    config: App,
    channels: HashMap<Rc<str>, Channel>,
    connections: u64,
    /// Who watches whom (watchlist events).
    watch: watchlist::Watchlists,
    /// Webhook state; `None` when the app has no webhooks.
    hooks: Option<Box<webhooks::AppHooks>>,
    /// What the subscribers of each channel were told of its count.
    counts: counts::Counts,
}

/// Counters the metrics module reads.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub errors_sent: HashMap<u16, u64>,
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Webhook events owned by another node whose record was dropped
    /// (over `webhooks::MAX_HANDOFFS`): not sent if that node dies.
    pub webhook_handoffs_dropped: u64,
}

pub struct Hub {
    apps: Vec<AppState>,
    conns: Vec<Option<Conn>>,
    by_socket: HashMap<u64, ConnId>,
    /// (deadline, conn, socket id): one entry per live connection; an entry
    /// whose connection moved on is re-filed when it comes up (lazy deletion).
    timers: BinaryHeap<Reverse<(u64, ConnId, u64)>>,
    out: VecDeque<Output>,
    rng: u64,
    ping_json: Frame,
    ping_control: Frame,
    pong_json: Frame,
    pub stats: Stats,
    debug: bool,
    /// When the earliest cached event expires (to drop dead cache channels).
    next_cache_sweep: Option<u64>,
    /// Horizontal scaling: the other nodes and what goes to Redis.
    cluster: Option<Box<cluster::Cluster>>,
    /// Connections that must still sign in or join a private or presence
    /// channel (authorized connections).
    authorization: authorized::Authorization,
    /// What the webhooks are told and when (`webhooks`).
    webhooks: webhooks::Webhooks,
}

impl Hub {
    // ---- setup -----------------------------------------------------------------

    /// A hub serving `apps`, with no connections. `seed` seeds the socket
    /// ids (the loop passes the time and pid); `debug` logs every message.
    pub fn new(apps: Vec<App>, seed: u64, debug: bool) -> Hub {
        Hub {
            apps: apps.into_iter().map(AppState::new).collect(),
            conns: Vec::new(),
            by_socket: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            rng: seed | 1,
            ping_json: websocket::text_frame(br#"{"event":"pusher:ping"}"#).into(),
            ping_control: websocket::ping_frame(b"").into(),
            pong_json: websocket::text_frame(br#"{"event":"pusher:pong"}"#).into(),
            stats: Stats::default(),
            debug,
            next_cache_sweep: None,
            cluster: None,
            authorization: authorized::Authorization::default(),
            webhooks: webhooks::Webhooks::default(),
        }
    }

    // ---- inputs: connections (the event loop) ----------------------------------
    // A connection's messages are in `client`, the HTTP API's inputs in
    // `events`, the other nodes' in `cluster`.

    /// A WebSocket handshake for `/app/{app_key}` completed. Either the
    /// connection is accepted (`connection_established` queued) or an error and
    /// a close are queued and `None` is returned.
    pub fn open(
        &mut self,
        now: u64,
        conn: ConnId,
        app_key: &str,
        origin: Option<&str>,
    ) -> Option<Opened> {
        // Whatever the slot held before is gone: the loop only reuses a slot
        // for a new connection (a new generation), or reopens one it never
        // closed. Either way its queued output must not reach this one.
        if let Some(old) = self.conns.get(conn.slot()).and_then(Option::as_ref) {
            let old = old.id;
            self.close(now, old);
            self.out.retain(|o| o.conn() != Some(old));
        }
        let app = match self.admit(app_key, origin) {
            Ok(app) => app,
            Err(err) => {
                self.send_error(conn, err);
                self.out.push_back(Output::Close(conn, err));
                return None;
            }
        };
        let socket_id = self.new_socket_id();
        if self.conns.len() <= conn.slot() {
            self.conns.resize_with(conn.slot() + 1, || None);
        }
        self.conns[conn.slot()] = Some(Conn {
            id: conn,
            app,
            socket_id,
            last_seen: now,
            pinged_at: None,
            control_frames: false,
            channels: Vec::new(),
            user: None,
            rate_window_start: 0,
            rate_count: 0,
        });
        self.by_socket.insert(socket_id, conn);
        self.apps[app].connections += 1;
        self.stats.connections_opened += 1;
        self.cluster_dirty(app, None);
        let cfg = &self.apps[app].config;
        let (ping_interval, activity_timeout, max_message_size) = (
            cfg.ping_interval,
            cfg.activity_timeout,
            cfg.max_message_size,
        );
        self.timers
            .push(Reverse((now + ping_interval * 1000, conn, socket_id)));
        self.arm_authorization(now, conn, app);
        let sid = format_socket_id(socket_id);
        crate::log_debug!("Connection Established {sid}");
        self.send_json(
            conn,
            &message::connection_established(&sid, activity_timeout),
        );
        Some(Opened { max_message_size })
    }

    /// The socket closed (or the loop closed it): unsubscribe from everything.
    pub fn close(&mut self, now: u64, conn: ConnId) {
        if self.conn(conn).is_none() {
            return; // not open, or an older generation of its slot
        }
        let Some(c) = self.conns.get_mut(conn.slot()).and_then(Option::take) else {
            return;
        };
        crate::log_debug!("Connection Closed {}", format_socket_id(c.socket_id));
        self.by_socket.remove(&c.socket_id);
        self.authorization.forget(conn);
        self.unwatch(c.app, conn);
        self.apps[c.app].connections -= 1;
        self.stats.connections_closed += 1;
        self.cluster_dirty(c.app, None);
        for name in &c.channels {
            self.leave_channel(now, c.app, name, conn);
        }
    }

    /// Close one connection from the loop's side (for example a slow reader
    /// over its write-queue limit) with a Pusher error.
    pub fn kick(&mut self, now: u64, conn: ConnId, err: PusherError) {
        if self.conn(conn).is_some() {
            // Frames still waiting for it must not follow the clear: the
            // stream would skip events and then go on.
            self.out
                .retain(|o| !matches!(o, Output::Send(c, _) if *c == conn));
            self.send_error(conn, err);
            self.terminate(now, conn, err);
        }
    }

    /// Close every connection with 4200 (shutdown or restart).
    pub fn shutdown(&mut self, now: u64) {
        for conn in self.live_ids() {
            self.send_error(conn, PusherError::Shutdown);
            self.terminate(now, conn, PusherError::Shutdown);
        }
        self.hooks_shutdown(now);
    }

    /// Replace the app list (SIGHUP). Apps are matched by id: one that still
    /// exists keeps its connections and channels and takes the new settings;
    /// the connections of a removed app are closed with 4200 (they reconnect
    /// and learn the app is gone); new apps start empty. Returns
    /// (kept, added, removed).
    pub fn reload_apps(&mut self, now: u64, apps: Vec<App>) -> (usize, usize, usize) {
        let mut old: Vec<Option<AppState>> = std::mem::take(&mut self.apps)
            .into_iter()
            .map(Some)
            .collect();
        let mut mapping: Vec<Option<AppId>> = vec![None; old.len()];
        let mut kept = 0;
        for (new_id, config) in apps.into_iter().enumerate() {
            let found = old
                .iter()
                .position(|a| a.as_ref().is_some_and(|a| a.config.id == config.id));
            match found.and_then(|i| old[i].take().map(|state| (i, state))) {
                Some((i, mut state)) => {
                    state.config = config;
                    mapping[i] = Some(new_id);
                    kept += 1;
                    self.apps.push(state);
                }
                None => self.apps.push(AppState::new(config)),
            }
        }
        let added = self.apps.len() - kept;
        // Removed apps: keep their state reachable just long enough to close
        // their connections cleanly.
        let removed: Vec<AppState> = old.into_iter().flatten().collect();
        let removed_count = removed.len();
        let first_removed = self.apps.len();
        let unmapped = mapping.iter_mut().filter(|m| m.is_none());
        for (index, m) in (first_removed..).zip(unmapped) {
            *m = Some(index);
        }
        self.apps.extend(removed);
        for c in self.conns.iter_mut().flatten() {
            if let Some(Some(new)) = mapping.get(c.app) {
                c.app = *new;
            }
        }
        let doomed: Vec<ConnId> = self
            .conns
            .iter()
            .flatten()
            .filter(|c| c.app >= first_removed)
            .map(|c| c.id)
            .collect();
        for conn in doomed {
            self.send_error(conn, PusherError::Shutdown);
            self.terminate(now, conn, PusherError::Shutdown);
        }
        self.apps.truncate(first_removed);
        self.hooks_reloaded();
        self.cluster_rekey();
        self.cluster_resend_state(now);
        (kept, added, removed_count)
    }

    // ---- outputs ---------------------------------------------------------------

    /// The next thing the loop must do, oldest first; `None` when there is
    /// nothing. Drain it after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- timers ----------------------------------------------------------------

    /// The earliest deadline (ms) at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ping = self.timers.peek().map(|Reverse((t, _, _))| *t);
        let hooks = self.hooks_poll_timeout();
        [
            ping,
            self.next_cache_sweep,
            self.cluster_poll_timeout(),
            self.authorization.next(),
            hooks,
        ]
        .into_iter()
        .chain(self.apps.iter().map(|a| a.watch.next()))
        .chain(self.apps.iter().map(|a| a.counts.next()))
        .flatten()
        .min()
    }

    /// Pings and prunes that are due.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.next_cache_sweep.is_some_and(|t| t <= now) {
            self.sweep_caches(now);
        }
        self.cluster_timeout(now);
        self.cluster_backlog_gate(now);
        self.authorization_timeout(now);
        self.watchlist_timeout(now);
        self.hooks_timeout(now);
        self.counts_timeout(now);
        while let Some(&Reverse((deadline, conn, sid))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.conn(conn).filter(|c| c.socket_id == sid) else {
                continue; // closed since
            };
            let interval = self.apps[c.app].config.ping_interval * 1000;
            match c.pinged_at {
                None if c.last_seen + interval > now => {
                    let at = c.last_seen + interval;
                    self.timers.push(Reverse((at, conn, sid)));
                }
                None => {
                    let frame = if c.control_frames {
                        self.ping_control.clone()
                    } else {
                        self.ping_json.clone()
                    };
                    crate::log_debug!("Connection Pinged {}", format_socket_id(sid));
                    if let Some(c) = self.conn_mut(conn) {
                        c.pinged_at = Some(now);
                    }
                    self.send(conn, frame);
                    self.timers.push(Reverse((now + interval, conn, sid)));
                }
                Some(at) if at + interval > now => {
                    self.timers.push(Reverse((at + interval, conn, sid)));
                }
                Some(_) => {
                    crate::log_debug!("Connection Pruned {}", format_socket_id(sid));
                    self.send_error(conn, PusherError::PongTimeout);
                    self.terminate(now, conn, PusherError::PongTimeout);
                }
            }
        }
    }

    /// Drop cache channels whose event expired and who have no subscribers,
    /// forget expired events, and schedule the next sweep.
    fn sweep_caches(&mut self, now: u64) {
        let mut next: Option<u64> = None;
        for a in &mut self.apps {
            a.channels.retain(|_, c| !c.is_dead(now));
            for c in a.channels.values_mut() {
                if c.cache.as_ref().is_some_and(|k| k.expires_at <= now) {
                    c.cache = None;
                }
                if let Some(k) = &c.cache {
                    next = Some(next.map_or(k.expires_at, |n| n.min(k.expires_at)));
                }
            }
        }
        self.next_cache_sweep = next;
    }

    // ---- internals -------------------------------------------------------------

    /// The app a new connection to `/app/{app_key}` joins, or why it may not.
    fn admit(&self, app_key: &str, origin: Option<&str>) -> Result<AppId, PusherError> {
        let Some(app) = self.app_by_key(app_key) else {
            crate::log_debug!("Connection refused: unknown app key {app_key:?}");
            return Err(PusherError::AppNotFound);
        };
        // the quota counts the app's connections on every node
        let open = self.cluster_connection_count(app);
        let cfg = &self.apps[app].config;
        if cfg.max_connections.is_some_and(|max| open >= max) {
            return Err(PusherError::OverQuota);
        }
        if !cfg.origin_allowed(origin) {
            return Err(PusherError::Origin);
        }
        Ok(app)
    }

    /// A fresh socket id: two random numbers of 1 to 10^9, as Pusher's look,
    /// that no open connection has.
    fn new_socket_id(&mut self) -> u64 {
        loop {
            let r = self.next_random();
            let hi = 1 + (r >> 32) % 1_000_000_000;
            let lo = 1 + (r & 0xFFFF_FFFF) % 1_000_000_000;
            let id = (hi << 32) | lo;
            if !self.by_socket.contains_key(&id) {
                return id;
            }
        }
    }

    /// The subscribers of `app`'s channel `name` changed, here (or, through
    /// [`Hub::remote_subscribers_changed`], on another node). The features
    /// that follow a channel's subscribers note it and act at the end of the
    /// turn ([`Hub::handle_timeout`]): a `#server-to-user-` channel is its
    /// user's online status, for the watchlists; other channels have
    /// subscription counts.
    pub(super) fn subscribers_changed(&mut self, app: AppId, name: &str) {
        if let Some(user) = name.strip_prefix(channel::SERVER_TO_USER_PREFIX) {
            self.apps[app].watch.note(user);
        } else {
            self.note_count(app, name);
        }
    }

    /// What another node holds of `app_id`'s channel `name` changed.
    pub(super) fn remote_subscribers_changed(&mut self, app_id: &str, name: &str) {
        if let Some(app) = self.app_by_id(app_id) {
            self.subscribers_changed(app, name);
        }
    }

    /// Forget a connection and tell the loop to close it with `code`.
    fn terminate(&mut self, now: u64, conn: ConnId, err: PusherError) {
        if self.conn(conn).is_some() {
            self.close(now, conn);
            self.out.push_back(Output::Close(conn, err));
        }
    }

    fn next_random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    fn send(&mut self, conn: ConnId, frame: Frame) {
        self.stats.messages_sent += 1;
        self.out.push_back(Output::Send(conn, frame));
    }

    fn send_json(&mut self, conn: ConnId, json: &[u8]) {
        if self.debug {
            crate::log_debug!(
                "Message Sent to {}: {}",
                self.socket_id_of(conn),
                String::from_utf8_lossy(json)
            );
        }
        self.send(conn, websocket::text_frame(json).into());
    }

    fn send_error(&mut self, conn: ConnId, err: PusherError) {
        *self.stats.errors_sent.entry(err.code()).or_default() += 1;
        self.send_json(conn, &message::error(err.code(), err.message()));
    }

    fn socket_id_of(&self, conn: ConnId) -> String {
        self.conn(conn)
            .map_or_else(|| "?".to_string(), |c| format_socket_id(c.socket_id))
    }

    /// The live connection `conn`, if its slot holds that generation.
    fn conn(&self, conn: ConnId) -> Option<&Conn> {
        self.conns
            .get(conn.slot())
            .and_then(Option::as_ref)
            .filter(|c| c.id == conn)
    }

    fn conn_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(conn.slot())
            .and_then(Option::as_mut)
            .filter(|c| c.id == conn)
    }

    /// The ids of every live connection, in slot order.
    fn live_ids(&self) -> Vec<ConnId> {
        self.conns.iter().flatten().map(|c| c.id).collect()
    }
}

impl AppState {
    fn new(config: App) -> AppState {
        AppState {
            hooks: webhooks::AppHooks::for_app(&config),
            config,
            channels: HashMap::new(),
            connections: 0,
            watch: watchlist::Watchlists::default(),
            counts: counts::Counts::default(),
        }
    }
}

/// The next number of the splitmix64 generator whose state is `state`
/// (socket ids, node ids).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `"<hi>.<lo>"`, Pusher's socket id format.
pub fn format_socket_id(id: u64) -> String {
    format!("{}.{}", id >> 32, id & 0xFFFF_FFFF)
}

/// The numeric form of a socket id we issued; `None` for anything else.
pub fn parse_socket_id(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('.')?;
    if hi.is_empty() || lo.is_empty() || !hi.bytes().chain(lo.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hi, lo): (u64, u64) = (hi.parse().ok()?, lo.parse().ok()?);
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn truncate_bytes(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(max)]).into_owned()
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

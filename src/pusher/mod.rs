//! The Pusher protocol core (`Hub`), sans-IO.
//!
//! It owns apps, connections, channels, presence members and cached events.
//! Inputs come in as method calls with the current time in milliseconds
//! (`open`, `message`, `control`, `close`, `handle_timeout`, and the HTTP API
//! calls); everything that must go out (frames, closes, cluster publishes,
//! the outage-backlog gate, a restart) is queued as one [`Output`] enum for
//! the event loop to carry out (`poll_output`), and the next deadline is
//! `poll_timeout`. A connection is a [`ConnId`] (slot and generation): input
//! for a generation that is not the slot's live one is ignored.
//!
//! It never touches a socket or the clock, so tests drive hours of pings in
//! microseconds. Frames are built here once per message and shared between
//! recipients as `Rc<[u8]>` (a broadcast costs one pointer per subscriber).
//!
//! Liveness: a connection silent for `ping_interval` seconds is pinged (a
//! `pusher:ping`, or a WebSocket PING once it has used control frames); if it
//! is still silent `ping_interval` seconds after that it is pruned with 4201.
//! Every open connection is tracked, subscribed or not (port decisions).

pub mod app;
pub mod channel;
pub mod cluster;
mod error;
pub mod message;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};

pub use app::{App, ClientEvents, RateLimit};
use channel::{Auth, CACHE_TTL_MS, Cached, Channel, Member, SERVER_TO_USER_PREFIX};
pub use error::PusherError;

use crate::websocket;

/// A complete WebSocket frame, shared between recipients.
pub type Frame = Rc<[u8]>;
/// Index of an app in the hub.
pub type AppId = usize;

/// Most channels one connection may be subscribed to at once.
pub const MAX_CHANNELS_PER_CONNECTION: usize = 100;

/// The event loop's handle for a connection: the slot of its slab, and a
/// generation the loop bumps each time it reuses the slot. The hub keeps the
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
}

/// Counters the metrics module reads.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub errors_sent: HashMap<u16, u64>,
    pub connections_opened: u64,
    pub connections_closed: u64,
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
}

impl Hub {
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
        }
    }

    // ---- apps -------------------------------------------------------------

    pub fn app_by_id(&self, id: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.config.id == id)
    }

    pub fn app_by_key(&self, key: &str) -> Option<AppId> {
        self.apps.iter().position(|a| a.config.key == key)
    }

    pub fn app(&self, app: AppId) -> &App {
        &self.apps[app].config
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.iter().map(|a| &a.config)
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
        self.cluster_resend_state(now);
        (kept, added, removed_count)
    }

    /// Open WebSockets of an app on this node.
    pub fn connection_count(&self, app: AppId) -> u64 {
        self.apps[app].connections
    }

    // ---- outputs and time -------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The earliest deadline (ms) at which `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let ping = self.timers.peek().map(|Reverse((t, _, _))| *t);
        [ping, self.next_cache_sweep, self.cluster_poll_timeout()]
            .into_iter()
            .flatten()
            .min()
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

    // ---- connection lifecycle ---------------------------------------------

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
        let refuse = |hub: &mut Hub, err: PusherError| {
            hub.send_error(conn, err);
            hub.out.push_back(Output::Close(conn, err));
            None
        };
        let Some(app) = self.app_by_key(app_key) else {
            crate::log_debug!("Connection refused: unknown app key {app_key:?}");
            return refuse(self, PusherError::AppNotFound);
        };
        // the quota counts the app's connections on every node
        let open = self.cluster_connection_count(app);
        if self.apps[app]
            .config
            .max_connections
            .is_some_and(|max| open >= max)
        {
            return refuse(self, PusherError::OverQuota);
        }
        if !self.apps[app].config.origin_allowed(origin) {
            return refuse(self, PusherError::Origin);
        }
        let socket_id = loop {
            let r = self.next_random();
            let hi = 1 + (r >> 32) % 1_000_000_000;
            let lo = 1 + (r & 0xFFFF_FFFF) % 1_000_000_000;
            let id = (hi << 32) | lo;
            if !self.by_socket.contains_key(&id) {
                break id;
            }
        };
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
        let sid = format_socket_id(socket_id);
        crate::log_debug!("Connection Established {sid}");
        self.send_json(
            conn,
            &message::connection_established(&sid, activity_timeout),
        );
        Some(Opened { max_message_size })
    }

    /// The socket closed (or the loop closed it): unsubscribe from everything.
    pub fn close(&mut self, _now: u64, conn: ConnId) {
        if self.conn(conn).is_none() {
            return; // not open, or an older generation of its slot
        }
        let Some(c) = self.conns.get_mut(conn.slot()).and_then(Option::take) else {
            return;
        };
        crate::log_debug!("Connection Closed {}", format_socket_id(c.socket_id));
        self.by_socket.remove(&c.socket_id);
        self.apps[c.app].connections -= 1;
        self.stats.connections_closed += 1;
        self.cluster_dirty(c.app, None);
        for name in &c.channels {
            self.leave_channel(c.app, name, conn);
        }
    }

    /// Forget a connection and tell the loop to close it with `code`.
    fn terminate(&mut self, now: u64, conn: ConnId, err: PusherError) {
        if self.conn(conn).is_some() {
            self.close(now, conn);
            self.out.push_back(Output::Close(conn, err));
        }
    }

    /// Close every connection with 4200 (shutdown or restart).
    pub fn shutdown(&mut self, now: u64) {
        for conn in self.live_ids() {
            self.send_error(conn, PusherError::Shutdown);
            self.terminate(now, conn, PusherError::Shutdown);
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

    /// Pings and prunes that are due.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.next_cache_sweep.is_some_and(|t| t <= now) {
            self.sweep_caches(now);
        }
        self.cluster_timeout(now);
        self.cluster_backlog_gate(now);
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

    fn touch(&mut self, now: u64, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.last_seen = now;
            c.pinged_at = None;
        }
    }

    /// A WebSocket PING or PONG control frame arrived (the loop answers PINGs).
    pub fn control(&mut self, now: u64, conn: ConnId) {
        self.touch(now, conn);
        if let Some(c) = self.conn_mut(conn) {
            c.control_frames = true;
        }
    }

    // ---- messages -----------------------------------------------------------

    /// A whole text message from a client.
    pub fn message(&mut self, now: u64, conn: ConnId, text: &str) {
        let Some(c) = self.conn(conn) else { return };
        let (app, sid) = (c.app, c.socket_id);
        self.stats.messages_received += 1;
        if self.debug {
            crate::log_debug!(
                "Message Received from {}: {}",
                format_socket_id(sid),
                truncate(text, 200)
            );
        }
        self.touch(now, conn);
        if !self.within_rate_limit(now, conn, app) {
            return;
        }
        let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text) else {
            return self.send_error(conn, PusherError::InvalidMessage);
        };
        // Reverb decodes a `data` string that holds JSON (its PR #352).
        if let Some(Value::String(s)) = msg.get("data")
            && let Ok(decoded) = serde_json::from_str::<Value>(s)
        {
            msg.insert("data".into(), decoded);
        }
        let event = match msg.get("event") {
            Some(Value::String(e)) => e.clone(),
            _ => return self.send_error(conn, PusherError::InvalidMessage),
        };
        let data = msg.remove("data").unwrap_or(Value::Null);
        let result = match event.as_str() {
            "pusher:ping" => {
                let pong = self.pong_json.clone();
                self.send(conn, pong);
                Ok(())
            }
            "pusher:pong" => Ok(()),
            "pusher:subscribe" => self.subscribe(now, conn, app, &data),
            "pusher:unsubscribe" => self.unsubscribe(conn, app, &data),
            "pusher:signin" => self.signin(now, conn, app, &data),
            "pusher:connection_established" => {
                // Reverb re-sends the acknowledgement.
                let ack = message::connection_established(
                    &self.socket_id_of(conn),
                    self.apps[app].config.activity_timeout,
                );
                self.send_json(conn, &ack);
                Ok(())
            }
            e if e.starts_with("client-") => {
                self.client_event(now, conn, app, &event, msg.get("channel"), data)
            }
            e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {
                Err(PusherError::InvalidMessage)
            }
            // Any other name: checked like a client event, then ignored (Reverb).
            _ => match (msg.get("channel"), &data) {
                (Some(Value::String(_)), Value::Null | Value::Object(_) | Value::Array(_)) => {
                    Ok(())
                }
                _ => Err(PusherError::InvalidMessage),
            },
        };
        if let Err(err) = result {
            self.send_error(conn, err);
        }
    }

    /// Reverb's fixed-window limiter; every data message counts.
    fn within_rate_limit(&mut self, now: u64, conn: ConnId, app: AppId) -> bool {
        let Some(limit) = self.apps[app].config.rate_limit.clone() else {
            return true;
        };
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        let window_open =
            c.rate_count > 0 && now < c.rate_window_start + limit.decay_seconds * 1000;
        if window_open && c.rate_count >= limit.max_attempts {
            self.send_error(conn, PusherError::RateLimit);
            if limit.terminate_on_limit {
                self.terminate(now, conn, PusherError::RateLimit);
            }
            return false;
        }
        if !window_open {
            c.rate_window_start = now;
            c.rate_count = 0;
        }
        c.rate_count += 1;
        true
    }

    fn subscribe(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        data: &Value,
    ) -> Result<(), PusherError> {
        let Value::Object(data) = data else {
            return Err(PusherError::InvalidMessage);
        };
        let Some(Value::String(name)) = data.get("channel") else {
            return Err(PusherError::InvalidMessage);
        };
        let auth = match data.get("auth") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.as_str()),
            Some(_) => return Err(PusherError::InvalidMessage),
        };
        let channel_data = match data.get("channel_data") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => Some((s.as_str(), v)),
                Err(_) => return Err(PusherError::InvalidMessage),
            },
            Some(_) => return Err(PusherError::InvalidMessage),
        };
        if !channel::valid_name(name) && !channel::valid_api_name(name) {
            return Err(PusherError::InvalidChannel);
        }
        let kind = channel::Kind::of(name);
        let socket_id = self.socket_id_of(conn);
        let cfg = &self.apps[app].config;
        let mut member = None;
        match kind.auth {
            Auth::Public => {}
            Auth::ServerToUser => {
                // pusher-js subscribes to its own #server-to-user-<id> after a
                // signin; the server already put it there, so just confirm.
                let own = self
                    .conn(conn)
                    .and_then(|c| c.user.as_deref())
                    .is_some_and(|u| name.strip_prefix(SERVER_TO_USER_PREFIX) == Some(u));
                if !own {
                    return Err(PusherError::InvalidChannel);
                }
                self.send_json(
                    conn,
                    &message::event(
                        "pusher_internal:subscription_succeeded",
                        Some("{}"),
                        Some(name),
                    ),
                );
                return Ok(());
            }
            Auth::Private | Auth::Presence => {
                let signed_data = if kind.auth == Auth::Presence {
                    channel_data.as_ref().map(|(raw, _)| *raw)
                } else {
                    None
                };
                if !crate::auth::verify_channel_auth(
                    &cfg.key,
                    &cfg.secret,
                    &socket_id,
                    name,
                    signed_data,
                    auth,
                ) {
                    return Err(PusherError::Unauthorized);
                }
                if kind.auth == Auth::Presence {
                    let Some((_, Value::Object(cd))) = channel_data else {
                        return Err(PusherError::Unauthorized);
                    };
                    let Some(key) = cd.get("user_id").and_then(channel::user_key) else {
                        return Err(PusherError::Unauthorized);
                    };
                    if let Some(info) = cd.get("user_info")
                        && info.to_string().len() > cfg.max_user_info_size
                    {
                        return Err(PusherError::UserInfoTooBig);
                    }
                    member = Some(Rc::new(Member {
                        user_id: cd.get("user_id").cloned().unwrap_or(Value::Null),
                        key,
                        data: Value::Object(cd),
                    }));
                }
            }
        }
        let max_members = cfg.max_presence_members;
        let Some(c) = self.conn(conn) else {
            return Ok(());
        };
        let already = c.channels.iter().any(|n| &**n == name.as_str());
        // the server-managed #server-to-user- channel of a signin does not count
        let used = c.channels.iter().filter(|n| !n.starts_with('#')).count();
        if !already && used >= MAX_CHANNELS_PER_CONNECTION {
            return Err(PusherError::TooManyChannels);
        }
        // A full presence channel admits only users already in it.
        if let Some(m) = &member {
            let here = self.apps[app]
                .channels
                .get(name.as_str())
                .and_then(|ch| ch.presence.as_ref())
                .is_some_and(|p| p.has_user(&m.key));
            if !here
                && !self.remote_has_user(app, name, &m.key)
                && self.cluster_members(app, name).len() >= max_members
            {
                return Err(PusherError::PresenceFull);
            }
        }
        let mut replaced = false;
        if already
            && kind.is_presence()
            && let Some(m) = &member
            && self.apps[app]
                .channels
                .get_mut(name.as_str())
                .and_then(|ch| ch.presence.as_mut())
                .is_some_and(|p| p.replace_same_user(conn, m.clone()))
        {
            // Re-subscribing as the same user: Reverb overwrites the entry and
            // nobody else hears anything (other nodes take the new user_info).
            replaced = true;
            let body = cluster::join_body(&self.apps[app].config.id, name, m);
            self.publish(body);
        } else if already && kind.is_presence() {
            // re-subscribing as another user: the old membership leaves first
            self.leave_channel(app, name, conn);
            if let Some(c) = self.conn_mut(conn) {
                c.channels.retain(|n| &**n != name.as_str());
            }
        }
        let key = self.channel_key(app, name);
        let ch = self.apps[app]
            .channels
            .entry(key.clone())
            .or_insert_with(|| Channel::new(name));
        ch.add(conn);
        let mut added = None;
        if let (Some(p), Some(m), false) = (ch.presence.as_mut(), member, replaced)
            && p.add(conn, m.clone())
        {
            added = Some(m);
        }
        let is_presence = ch.presence.is_some();
        let cached = if kind.cache {
            Some(ch.cached(now).map(|c| c.message.clone()))
        } else {
            None
        };
        let succeeded_data = if is_presence {
            channel::snapshot(self.cluster_members(app, name).iter().map(|m| &**m))
        } else {
            "{}".to_string()
        };
        self.cluster_dirty(app, Some(&key));
        if let Some(c) = self.conn_mut(conn)
            && !c.channels.iter().any(|n| **n == *key)
        {
            c.channels.push(key);
        }
        self.send_json(
            conn,
            &message::event(
                "pusher_internal:subscription_succeeded",
                Some(&succeeded_data),
                Some(name),
            ),
        );
        match cached {
            Some(Some(frame)) => self.send(conn, frame),
            Some(None) => {
                self.send_json(conn, &message::event("pusher:cache_miss", None, Some(name)))
            }
            None => {}
        }
        if let Some(m) = added {
            // a member of the cluster already if another node has the user
            if !self.remote_has_user(app, name, &m.key) {
                self.announce_member(app, name, &m, true, Some(conn));
            }
            let body = cluster::join_body(&self.apps[app].config.id, name, &m);
            self.publish(body);
        }
        Ok(())
    }

    /// The shared `Rc<str>` for a channel name (the map's key if it exists).
    fn channel_key(&self, app: AppId, name: &str) -> Rc<str> {
        self.apps[app]
            .channels
            .get_key_value(name)
            .map_or_else(|| Rc::from(name), |(k, _)| k.clone())
    }

    fn unsubscribe(&mut self, conn: ConnId, app: AppId, data: &Value) -> Result<(), PusherError> {
        let Some(Value::String(name)) = data.get("channel") else {
            return Err(PusherError::InvalidMessage);
        };
        if channel::Kind::of(name).auth == Auth::ServerToUser {
            return Ok(()); // only the server manages these
        }
        let Some(c) = self.conn_mut(conn) else {
            return Ok(());
        };
        let before = c.channels.len();
        c.channels.retain(|n| &**n != name.as_str());
        if c.channels.len() != before {
            self.leave_channel(app, name, conn);
        }
        Ok(())
    }

    /// Remove `conn` from a channel: `member_removed` after a user's last
    /// connection, and the channel dropped once empty (unless it holds a cache).
    fn leave_channel(&mut self, app: AppId, name: &str, conn: ConnId) {
        let Some(ch) = self.apps[app].channels.get_mut(name) else {
            return;
        };
        ch.remove(conn);
        let removed = ch.presence.as_mut().and_then(|p| p.remove(conn));
        if let Some(m) = removed {
            if !self.remote_has_user(app, name, &m.key) {
                self.announce_member(app, name, &m, false, None);
            }
            self.publish(cluster::leave_body(&self.apps[app].config.id, name, &m));
        }
        let key = self.channel_key(app, name);
        self.cluster_dirty(app, Some(&key));
        let ch = &self.apps[app].channels[name];
        if ch.is_empty() && ch.cache.is_none() {
            self.apps[app].channels.remove(name);
        }
    }

    fn signin(
        &mut self,
        _now: u64,
        conn: ConnId,
        app: AppId,
        data: &Value,
    ) -> Result<(), PusherError> {
        let (Some(Value::String(auth)), Some(Value::String(user_data))) =
            (data.get("auth"), data.get("user_data"))
        else {
            return Err(PusherError::InvalidMessage);
        };
        let cfg = &self.apps[app].config;
        let socket_id = self.socket_id_of(conn);
        let user_id = serde_json::from_str::<Value>(user_data)
            .ok()
            .and_then(|u| u.get("id").and_then(channel::user_key));
        let ok = crate::auth::verify_user_auth(&cfg.key, &cfg.secret, &socket_id, user_data, auth);
        let (true, Some(user_id)) = (ok, user_id) else {
            // port decisions: failed signin is 4009 and the connection closes
            self.send_error(conn, PusherError::Unauthorized);
            self.terminate(0, conn, PusherError::Unauthorized);
            return Ok(());
        };
        let channel = format!("{SERVER_TO_USER_PREFIX}{user_id}");
        let already = self.conn(conn).and_then(|c| c.user.clone());
        if let Some(old) = already {
            let old_channel = format!("{SERVER_TO_USER_PREFIX}{old}");
            if let Some(c) = self.conn_mut(conn) {
                c.channels.retain(|n| **n != *old_channel);
            }
            self.leave_channel(app, &old_channel, conn);
        }
        let key = self.channel_key(app, &channel);
        self.apps[app]
            .channels
            .entry(key.clone())
            .or_insert_with(|| Channel::new(&channel))
            .add(conn);
        self.cluster_dirty(app, Some(&key));
        if let Some(c) = self.conn_mut(conn) {
            c.user = Some(Rc::from(user_id.as_str()));
            if !c.channels.contains(&key) {
                c.channels.push(key);
            }
        }
        let reply = serde_json::json!({ "user_data": user_data }).to_string();
        self.send_json(
            conn,
            &message::event("pusher:signin_success", Some(&reply), None),
        );
        Ok(())
    }

    fn client_event(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        event: &str,
        channel: Option<&Value>,
        data: Value,
    ) -> Result<(), PusherError> {
        let Some(Value::String(name)) = channel else {
            return Err(PusherError::InvalidMessage);
        };
        if !matches!(data, Value::Null | Value::Object(_) | Value::Array(_)) {
            return Err(PusherError::InvalidMessage);
        }
        let mode = self.apps[app].config.accept_client_events_from;
        if mode == ClientEvents::None {
            return Err(PusherError::ClientEventsOff);
        }
        let kind = channel::Kind::of(name);
        if !matches!(kind.auth, Auth::Private | Auth::Presence) || kind.encrypted {
            return Err(PusherError::ClientEventsChannel);
        }
        let ch = self.apps[app].channels.get(name.as_str());
        let member = ch.is_some_and(|ch| ch.contains(conn));
        if mode == ClientEvents::Members && !member {
            return Err(PusherError::NotMember);
        }
        let user_id = ch
            .and_then(|ch| ch.presence.as_ref())
            .and_then(|p| p.by_conn.get(&conn))
            .map(|m| m.user_id.clone());
        let json = message::client_event(event, name, &data, user_id.as_ref());
        self.deliver(now, app, name, &json, Some(conn), Some((event, &data)));
        if self.cluster.is_some() {
            self.publish(cluster::envelope::Body::Client {
                app: self.apps[app].config.id.clone(),
                channel: name.clone(),
                event: event.to_string(),
                data,
                user_id,
            });
        }
        Ok(())
    }

    /// Send `json` to every subscriber of `name` except `except`, and keep it
    /// as the cached event of a cache channel.
    fn deliver(
        &mut self,
        now: u64,
        app: AppId,
        name: &str,
        json: &[u8],
        except: Option<ConnId>,
        cache_as: Option<(&str, &Value)>,
    ) -> usize {
        let kind = channel::Kind::of(name);
        let frame: Frame = websocket::text_frame(json).into();
        if kind.cache {
            let key = self.channel_key(app, name);
            let ch = self.apps[app]
                .channels
                .entry(key)
                .or_insert_with(|| Channel::new(name));
            let (event, data) = cache_as.map_or((String::new(), String::new()), |(e, d)| {
                let data = match d {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (e.to_string(), data)
            });
            ch.cache = Some(Box::new(Cached {
                event,
                data,
                message: frame.clone(),
                expires_at: now + CACHE_TTL_MS,
            }));
            let expiry = now + CACHE_TTL_MS;
            self.next_cache_sweep = Some(self.next_cache_sweep.map_or(expiry, |t| t.min(expiry)));
        }
        let Some(ch) = self.apps[app].channels.get(name) else {
            return 0;
        };
        if self.debug {
            crate::log_debug!(
                "Broadcasting To {name} ({} connections): {}",
                ch.len(),
                truncate_bytes(json, 200)
            );
        }
        let mut n = 0;
        for &s in &ch.subs {
            if Some(s) != except {
                self.out.push_back(Output::Send(s, frame.clone()));
                n += 1;
            }
        }
        self.stats.messages_sent += n as u64;
        n
    }

    // ---- HTTP API -----------------------------------------------------------

    /// Trigger `event` on each channel (`POST /events`, `/batch_events`,
    /// `sendToUser`). `except` is a socket id to leave out. Returns deliveries.
    pub fn trigger(
        &mut self,
        now: u64,
        app: AppId,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let n = self.trigger_local(now, app, channels, event, data, except);
        if self.cluster.is_some() {
            self.publish(cluster::envelope::Body::Event {
                app: self.apps[app].config.id.clone(),
                channels: channels.to_vec(),
                event: event.to_string(),
                data: data.to_string(),
                socket_id: except.map(str::to_string),
            });
        }
        n
    }

    /// [`Hub::trigger`] for this node's subscribers only.
    fn trigger_local(
        &mut self,
        now: u64,
        app: AppId,
        channels: &[String],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let except = except
            .and_then(parse_socket_id)
            .and_then(|id| self.by_socket.get(&id).copied());
        let mut n = 0;
        for name in channels {
            let json = message::event(event, Some(data), Some(name));
            n += self.deliver(
                now,
                app,
                name,
                &json,
                except,
                Some((event, &Value::String(data.to_string()))),
            );
        }
        n
    }

    /// Channel attributes for `info` (reference 4.4): `occupied`,
    /// `user_count` (presence only), `subscription_count` (non-presence only),
    /// `cache` (cache channels with a fresh cached event).
    pub fn channel_info(
        &self,
        now: u64,
        app: AppId,
        name: &str,
        info: &[&str],
    ) -> Map<String, Value> {
        let mut out = Map::new();
        let ch = self.apps[app].channels.get(name);
        let local = ch.map_or(0, |c| c.len() as u64);
        let remote = self.remote_subs(app, name);
        let occupied = local + remote > 0;
        if info.contains(&"occupied") {
            out.insert("occupied".into(), Value::Bool(occupied));
        }
        let kind = channel::Kind::of(name);
        if occupied && info.contains(&"user_count") && kind.is_presence() {
            let users = self.cluster_members(app, name).len();
            out.insert("user_count".into(), Value::from(users));
        }
        if occupied && info.contains(&"subscription_count") && !kind.is_presence() {
            out.insert("subscription_count".into(), Value::from(local + remote));
        }
        if info.contains(&"cache")
            && let Some(c) = ch.and_then(|c| c.cached(now))
        {
            let ttl = (c.expires_at.saturating_sub(now)).div_ceil(1000);
            out.insert(
                "cache".into(),
                serde_json::json!({ "event": c.event, "data": c.data, "ttl": ttl }),
            );
        }
        out
    }

    /// Occupied channels whose names start with `prefix`, with `info` attributes.
    pub fn channels(
        &self,
        now: u64,
        app: AppId,
        prefix: &str,
        info: &[&str],
    ) -> Map<String, Value> {
        let mut names: Vec<String> = self.apps[app]
            .channels
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(n, _)| n.to_string())
            .collect();
        names.extend(self.remote_channels(app));
        names.retain(|n| n.starts_with(prefix) && channel::Kind::of(n).auth != Auth::ServerToUser);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| {
                let info = self.channel_info(now, app, &n, info);
                (n, Value::Object(info))
            })
            .collect()
    }

    /// Users of a presence channel: `Err(404)` when it does not exist,
    /// `Err(400)` when it is not a presence channel.
    pub fn channel_users(&self, app: AppId, name: &str) -> Result<Vec<Value>, u16> {
        if !channel::Kind::of(name).is_presence() {
            return Err(400);
        }
        let local = self.apps[app].channels.get(name).map_or(0, |c| c.len());
        if local == 0 && self.remote_subs(app, name) == 0 {
            return Err(404);
        }
        Ok(self
            .cluster_members(app, name)
            .iter()
            .map(|m| serde_json::json!({ "id": m.user_id }))
            .collect())
    }

    /// Close every connection of `user_id`: signed in as that user, or a
    /// presence member with that `user_id` on any channel. Returns how many.
    pub fn terminate_user(&mut self, now: u64, app: AppId, user_id: &str) -> usize {
        let n = self.terminate_user_local(now, app, user_id);
        if self.cluster.is_some() {
            self.publish(cluster::envelope::Body::Terminate {
                app: self.apps[app].config.id.clone(),
                user_id: user_id.to_string(),
            });
        }
        n
    }

    /// [`Hub::terminate_user`] for this node's connections only.
    fn terminate_user_local(&mut self, now: u64, app: AppId, user_id: &str) -> usize {
        let mut victims = Vec::new();
        for c in self.conns.iter().flatten() {
            let id = c.id;
            if c.app != app {
                continue;
            }
            let signed_in = c.user.as_deref() == Some(user_id);
            let presence = || {
                c.channels.iter().any(|n| {
                    self.apps[app]
                        .channels
                        .get(n)
                        .and_then(|ch| ch.presence.as_ref())
                        .and_then(|p| p.by_conn.get(&id))
                        .is_some_and(|m| m.key == user_id)
                })
            };
            if signed_in || presence() {
                victims.push(id);
            }
        }
        for &conn in &victims {
            self.send_error(conn, PusherError::Terminated);
            self.terminate(now, conn, PusherError::Terminated);
        }
        victims.len()
    }

    /// How many channels of each type exist (for metrics).
    pub fn channel_counts(&self) -> HashMap<&'static str, u64> {
        let mut out = HashMap::new();
        for a in &self.apps {
            for c in a.channels.values().filter(|c| !c.is_empty()) {
                *out.entry(c.kind.label()).or_default() += 1;
            }
        }
        out
    }

    /// Drop cache channels whose event expired and who have no subscribers,
    /// forget expired events, and schedule the next sweep.
    pub fn sweep_caches(&mut self, now: u64) {
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
}

impl AppState {
    fn new(config: App) -> AppState {
        AppState {
            config,
            channels: HashMap::new(),
            connections: 0,
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
mod tests;

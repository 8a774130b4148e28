//! What the structured core targets share: the apps, the operations a
//! client, the clock and the HTTP API perform on a hub, and a harness that
//! plays the event loop around one hub and checks invariants on every
//! output.
//!
//! Invariants checked on each output:
//! - no frame or close for a connection the harness does not hold open
//!   (never opened, closed by the harness, or already closed by the hub);
//! - every frame is one complete server frame, and a text frame is JSON;
//! - the hub's connection count is the harness's open connections;
//! - a deadline handled is gone (`poll_timeout` moves past `now`).
//!
//! And when every connection is gone: no app has a connection or an
//! occupied channel (`channels`, `channel_counts`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::rc::Rc;

use arbitrary::Arbitrary;
use revurb::auth::hmac_sha256_hex;
use revurb::pusher::{App, ClientEvents, ConnId, Hub, Output, PusherError, RateLimit};
use revurb::websocket;
use serde_json::{Value, json};

/// (id, key, secret) of the two apps; a third key names no app.
pub const APPS: [(&str, &str, &str); 2] = [("1", "key-a", "secret-a"), ("2", "key-b", "secret-b")];
pub const SLOTS: u8 = 8;

/// App 0 has Reverb's defaults; app 1 has a webhook for every event type
/// (1 s delay), subscription counts and authorized connections, so the
/// operations reach that code too.
pub fn app(i: usize) -> App {
    let (id, key, secret) = APPS[i];
    let mut a = App::new(id, key, secret);
    if i == 1 {
        a.webhooks = vec![revurb::webhook::Webhook {
            url: revurb::webhook::Url::parse("http://127.0.0.1:9/hook").expect("a URL"),
            event_types: revurb::webhook::Kind::ALL.into_iter().collect(),
            filter: Default::default(),
            headers: Vec::new(),
            batching: false,
        }];
        a.webhook_delay_ms = 1000;
        a.enable_subscription_count = true;
        a.enable_user_authentication = true;
        a.user_authentication_timeout = 5;
    }
    a
}

/// The app lists a reload may install.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Apps {
    Both,
    OnlyA,
    OnlyB,
    /// A with every limit small: client events off or members only, two
    /// presence members, 16 bytes of user_info, a rate limit, short pings.
    Tight {
        client_events_off: bool,
        terminate_on_limit: bool,
    },
    None,
}

impl Apps {
    pub fn list(self) -> Vec<App> {
        match self {
            Apps::Both => vec![app(0), app(1)],
            Apps::OnlyA => vec![app(0)],
            Apps::OnlyB => vec![app(1)],
            Apps::Tight {
                client_events_off,
                terminate_on_limit,
            } => {
                let mut a = app(0);
                a.accept_client_events_from = if client_events_off {
                    ClientEvents::None
                } else {
                    ClientEvents::Members
                };
                a.max_presence_members = 2;
                a.max_user_info_size = 16;
                a.max_message_size = 256;
                a.ping_interval = 1;
                a.activity_timeout = 1;
                a.max_connections = Some(3);
                a.rate_limit = Some(RateLimit {
                    max_attempts: 3,
                    decay_seconds: 1,
                    terminate_on_limit,
                });
                vec![a, app(1)]
            }
            Apps::None => vec![],
        }
    }
}

/// A channel name: mostly from small pools so that connections meet.
#[derive(Debug, Clone, Arbitrary)]
pub enum Name {
    Public(u8),
    Private(u8),
    Presence(u8),
    Cache(u8),
    PrivateCache(u8),
    PresenceCache(u8),
    Encrypted(u8),
    UserChannel(UserId),
    Raw(String),
}

impl Name {
    pub fn text(&self) -> String {
        match self {
            Name::Public(n) => format!("room-{}", n % 3),
            Name::Private(n) => format!("private-room-{}", n % 3),
            Name::Presence(n) => format!("presence-room-{}", n % 3),
            Name::Cache(n) => format!("cache-room-{}", n % 3),
            Name::PrivateCache(n) => format!("private-cache-room-{}", n % 3),
            Name::PresenceCache(n) => format!("presence-cache-room-{}", n % 3),
            Name::Encrypted(n) => format!("private-encrypted-room-{}", n % 3),
            Name::UserChannel(u) => format!("#server-to-user-{}", u.key_text()),
            Name::Raw(s) => s.clone(),
        }
    }
}

/// A user id: from a pool, any string or number, long, or raw JSON text.
#[derive(Debug, Clone, Arbitrary)]
pub enum UserId {
    Pool(u8),
    Str(String),
    Num(i64),
    Long(u16),
    Json(String),
}

impl UserId {
    /// As JSON text inside `channel_data` or `user_data`.
    pub fn json(&self) -> String {
        match self {
            UserId::Pool(n) => format!("\"u{}\"", n % 4),
            UserId::Str(s) => Value::from(s.as_str()).to_string(),
            UserId::Num(n) => n.to_string(),
            UserId::Long(n) => format!("\"{}\"", "x".repeat(usize::from(*n % 300))),
            UserId::Json(raw) => raw.clone(),
        }
    }
    /// As the identity the API and user channels name.
    pub fn key_text(&self) -> String {
        match serde_json::from_str::<Value>(&self.json()) {
            Ok(Value::String(s)) => s,
            Ok(v) => v.to_string(),
            Err(_) => self.json(),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Info {
    Small(u8),
    Big(u16),
    Raw(String),
}

impl Info {
    pub fn json(&self) -> String {
        match self {
            Info::Small(n) => json!({ "name": format!("n{n}") }).to_string(),
            Info::Big(n) => json!({ "name": "y".repeat(usize::from(*n % 3000)) }).to_string(),
            Info::Raw(s) => s.clone(),
        }
    }
}

/// Event data: an object, a string, a large string, a number.
#[derive(Debug, Clone, Arbitrary)]
pub enum Data {
    Obj(Vec<(String, String)>),
    Str(String),
    Big(u16),
    Num(i64),
}

impl Data {
    pub fn json(&self) -> Value {
        match self {
            Data::Obj(kv) => Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            ),
            Data::Str(s) => Value::from(s.as_str()),
            Data::Big(n) => Value::from("z".repeat(usize::from(*n))),
            Data::Num(n) => Value::from(*n),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Auth {
    /// Signed with the connection's app key and secret.
    Good,
    /// Signed for the socket id of the connection in another slot.
    OtherSocket(u8),
    WrongSecret,
    Raw(String),
    Missing,
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ChannelData {
    pub user_id: Option<UserId>,
    pub user_info: Option<Info>,
    pub raw: Option<String>,
}

impl ChannelData {
    pub fn text(&self) -> String {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        let mut parts = Vec::new();
        if let Some(u) = &self.user_id {
            parts.push(format!("\"user_id\":{}", u.json()));
        }
        if let Some(i) = &self.user_info {
            parts.push(format!("\"user_info\":{}", i.json()));
        }
        format!("{{{}}}", parts.join(","))
    }
}

/// What a client sends.
#[derive(Debug, Clone, Arbitrary)]
pub enum Msg {
    Subscribe {
        channel: Name,
        auth: Auth,
        channel_data: Option<ChannelData>,
    },
    Unsubscribe(Name),
    ClientEvent {
        channel: Name,
        event: String,
        data: Data,
    },
    Signin {
        user: UserId,
        info: Option<Info>,
        auth: Auth,
    },
    Ping,
    Pong,
    /// Any event name and data.
    Event {
        event: String,
        data: Data,
    },
    Raw(String),
}

/// One step of the world around a hub.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A WebSocket handshake on `/app/{key}` (app 0, 1, or an unknown key);
    /// a connection in the slot closes first.
    Open {
        slot: u8,
        app: u8,
        origin: Option<String>,
    },
    Send {
        slot: u8,
        msg: Msg,
    },
    /// A WebSocket control frame (PING or PONG) arrived.
    Control {
        slot: u8,
    },
    /// The socket closed.
    Close {
        slot: u8,
    },
    /// The loop cut it off (write queue over its limit).
    Kick {
        slot: u8,
    },
    /// The clock moves on (in ms), firing whatever is due.
    Clock {
        ms: u32,
    },
    Trigger {
        app: u8,
        channels: Vec<Name>,
        event: String,
        data: String,
        /// Leave out the connection in this slot.
        except: Option<u8>,
    },
    Terminate {
        app: u8,
        user: UserId,
    },
    Reload(Apps),
    Shutdown,
}

/// An open connection as the harness holds it.
#[derive(Debug, Clone)]
pub struct Open {
    pub id: ConnId,
    /// From `connection_established`.
    pub socket_id: Option<String>,
    /// The app's (key, secret) at open time.
    pub key: String,
    pub secret: String,
}

/// The event loop around one hub.
pub struct Harness {
    pub hub: Hub,
    pub now: u64,
    pub open: HashMap<u8, Open>,
    generations: HashMap<u8, u32>,
    /// Publishes for the cluster, in order.
    pub published: Vec<Rc<[u8]>>,
    pub restarts: usize,
    /// Frames delivered so far.
    pub frames: u64,
    /// Webhook events the hub asked to send.
    pub webhooks: u64,
}

pub fn sign(secret: &str, msg: &str) -> String {
    hmac_sha256_hex(secret.as_bytes(), msg.as_bytes())
}

/// A text frame (opcode 1) by its first byte.
fn is_text(first_byte: u8) -> bool {
    first_byte & 0x0f == 1
}

impl Harness {
    pub fn new(hub: Hub) -> Harness {
        // warnings (a silent node, a bad remote message) are expected here
        revurb::log::set_level(revurb::log::Level::Error);
        Harness {
            hub,
            now: 0,
            open: HashMap::new(),
            generations: HashMap::new(),
            published: Vec::new(),
            restarts: 0,
            frames: 0,
            webhooks: 0,
        }
    }

    fn slot_of(&self, id: ConnId) -> Option<u8> {
        self.open.iter().find(|(_, o)| o.id == id).map(|(s, _)| *s)
    }

    /// Take every output, as the loop does, checking each.
    pub fn drain(&mut self) {
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Send(id, frame) => {
                    let slot = self
                        .slot_of(id)
                        .unwrap_or_else(|| panic!("a frame for {id}, which is not open"));
                    let (_, payload, used) =
                        websocket::split_frame(&frame).expect("a complete server frame");
                    assert_eq!(used, frame.len(), "one frame per output");
                    self.frames += 1;
                    if is_text(frame[0]) {
                        let v: Value = serde_json::from_slice(payload).unwrap_or_else(|e| {
                            panic!("not JSON ({e}): {}", String::from_utf8_lossy(payload))
                        });
                        if v["event"] == "pusher:connection_established" {
                            let data: Value =
                                serde_json::from_str(v["data"].as_str().expect("data text"))
                                    .expect("data JSON");
                            let sid = data["socket_id"].as_str().expect("socket_id").to_string();
                            self.open.get_mut(&slot).unwrap().socket_id = Some(sid);
                        }
                    }
                }
                Output::Close(id, _) => {
                    let slot = self
                        .slot_of(id)
                        .unwrap_or_else(|| panic!("a close for {id}, which is not open"));
                    self.open.remove(&slot);
                }
                Output::Publish { payload, .. } => self.published.push(payload),
                Output::Backlog { .. } => {}
                Output::Restart => self.restarts += 1,
                Output::Webhook { app, event } => {
                    let cfg = self.hub.apps().nth(app).unwrap_or_else(|| {
                        panic!("a webhook for app {app}, which the hub does not have")
                    });
                    assert!(
                        cfg.wants_webhook(event.kind, &event.channel),
                        "a {} webhook on {} that no webhook of app {} wants",
                        event.kind.name(),
                        event.channel,
                        cfg.id
                    );
                    self.webhooks += 1;
                }
            }
        }
        let counted: u64 = (0..self.hub.apps().count())
            .map(|a| self.hub.connection_count(a))
            .sum();
        assert_eq!(counted, self.open.len() as u64, "connection counts");
    }

    fn id(&self, slot: u8) -> Option<ConnId> {
        self.open.get(&(slot % SLOTS)).map(|o| o.id)
    }

    /// The app index of app `i` (0 or 1) in the hub now, if it is served.
    pub fn app_index(&self, i: u8) -> Option<usize> {
        let (id, _, _) = APPS[usize::from(i) % 2];
        self.hub.app_by_id(id)
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        let mut rounds = 0;
        while let Some(t) = self.hub.poll_timeout() {
            if t > self.now {
                break;
            }
            self.hub.handle_timeout(self.now);
            self.drain();
            rounds += 1;
            assert!(
                rounds < 10_000,
                "handle_timeout does not retire deadline {t}"
            );
        }
    }

    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Open { slot, app, origin } => {
                let slot = slot % SLOTS;
                if let Some(old) = self.open.remove(&slot) {
                    self.hub.close(self.now, old.id);
                    self.drain();
                }
                let generation = self.generations.entry(slot).or_default();
                *generation += 1;
                let id = ConnId::new(u32::from(slot), *generation);
                let (_, key, secret) = match app % 3 {
                    2 => ("0", "no-such-key", "x"),
                    i => APPS[usize::from(i)],
                };
                // what the hub holds now under that key
                let secret = self
                    .hub
                    .app_by_key(key)
                    .map_or(secret.to_string(), |a| self.hub.app(a).secret.clone());
                self.open.insert(
                    slot,
                    Open {
                        id,
                        socket_id: None,
                        key: key.to_string(),
                        secret,
                    },
                );
                let opened = self.hub.open(self.now, id, key, origin.as_deref());
                self.drain();
                if opened.is_none() {
                    assert!(!self.open.contains_key(&slot), "refused but not closed");
                }
            }
            Op::Send { slot, msg } => {
                if let Some(o) = self.open.get(&(slot % SLOTS)).cloned() {
                    let text = self.message_text(&o, msg);
                    self.hub.message(self.now, o.id, &text);
                }
            }
            Op::Control { slot } => {
                if let Some(id) = self.id(*slot) {
                    self.hub.control(self.now, id);
                }
            }
            Op::Close { slot } => {
                if let Some(o) = self.open.remove(&(slot % SLOTS)) {
                    self.hub.close(self.now, o.id);
                }
            }
            Op::Kick { slot } => {
                if let Some(id) = self.id(*slot) {
                    self.hub.kick(self.now, id, PusherError::OverCapacity);
                }
            }
            Op::Clock { ms } => self.advance(u64::from(*ms % 200_000)),
            Op::Trigger {
                app,
                channels,
                event,
                data,
                except,
            } => {
                if let Some(a) = self.app_index(*app) {
                    let channels: Vec<String> = channels.iter().take(10).map(Name::text).collect();
                    let except = except
                        .and_then(|s| self.open.get(&(s % SLOTS)))
                        .and_then(|o| o.socket_id.clone());
                    self.hub
                        .trigger(self.now, a, &channels, event, data, except.as_deref());
                }
            }
            Op::Terminate { app, user } => {
                if let Some(a) = self.app_index(*app) {
                    self.hub.terminate_user(self.now, a, &user.key_text());
                }
            }
            Op::Reload(apps) => {
                self.hub.reload_apps(self.now, apps.list());
            }
            Op::Shutdown => self.hub.shutdown(self.now),
        }
        self.drain();
    }

    fn message_text(&self, o: &Open, msg: &Msg) -> String {
        let sid = o.socket_id.clone().unwrap_or_default();
        let auth_for = |auth: &Auth, what: &str| -> Option<String> {
            match auth {
                Auth::Good => Some(format!(
                    "{}:{}",
                    o.key,
                    sign(&o.secret, &format!("{sid}{what}"))
                )),
                Auth::OtherSocket(s) => {
                    let other = self
                        .open
                        .get(&(s % SLOTS))
                        .and_then(|x| x.socket_id.clone())
                        .unwrap_or_default();
                    Some(format!(
                        "{}:{}",
                        o.key,
                        sign(&o.secret, &format!("{other}{what}"))
                    ))
                }
                Auth::WrongSecret => Some(format!(
                    "{}:{}",
                    o.key,
                    sign("wrong", &format!("{sid}{what}"))
                )),
                Auth::Raw(s) => Some(s.clone()),
                Auth::Missing => None,
            }
        };
        match msg {
            Msg::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                let name = channel.text();
                let cd = channel_data.as_ref().map(ChannelData::text);
                let signed = match &cd {
                    Some(d) if !d.is_empty() => format!(":{name}:{d}"),
                    _ => format!(":{name}"),
                };
                let mut data = serde_json::Map::new();
                data.insert("channel".into(), Value::from(name));
                if let Some(a) = auth_for(auth, &signed) {
                    data.insert("auth".into(), Value::from(a));
                }
                if let Some(d) = cd {
                    data.insert("channel_data".into(), Value::from(d));
                }
                json!({ "event": "pusher:subscribe", "data": data }).to_string()
            }
            Msg::Unsubscribe(channel) => {
                json!({ "event": "pusher:unsubscribe", "data": { "channel": channel.text() } })
                    .to_string()
            }
            Msg::ClientEvent {
                channel,
                event,
                data,
            } => json!({
                "event": format!("client-{event}"),
                "channel": channel.text(),
                "data": data.json(),
            })
            .to_string(),
            Msg::Signin { user, info, auth } => {
                let mut user_data = format!("{{\"id\":{}", user.json());
                if let Some(i) = info {
                    user_data.push_str(&format!(",\"user_info\":{}", i.json()));
                }
                user_data.push('}');
                let mut data = serde_json::Map::new();
                data.insert("user_data".into(), Value::from(user_data.as_str()));
                if let Some(a) = auth_for(auth, &format!("::user::{user_data}")) {
                    data.insert("auth".into(), Value::from(a));
                }
                json!({ "event": "pusher:signin", "data": data }).to_string()
            }
            Msg::Ping => r#"{"event":"pusher:ping","data":{}}"#.to_string(),
            Msg::Pong => r#"{"event":"pusher:pong","data":{}}"#.to_string(),
            Msg::Event { event, data } => {
                json!({ "event": event, "data": data.json() }).to_string()
            }
            Msg::Raw(s) => s.clone(),
        }
    }

    /// Close every connection the harness holds.
    pub fn close_all(&mut self) {
        let slots: Vec<u8> = self.open.keys().copied().collect();
        for s in slots {
            self.apply(&Op::Close { slot: s });
        }
        assert!(self.open.is_empty());
    }

    /// With every connection gone, nothing is left occupied on this node.
    /// (`channels` counts the other nodes' subscribers too; `remote` says
    /// whether other nodes may still have some.)
    pub fn check_empty(&self, remote: bool) {
        for a in 0..self.hub.apps().count() {
            assert_eq!(self.hub.connection_count(a), 0);
            if !remote {
                let left = self.hub.channels(self.now, a, "", &[]);
                assert!(left.is_empty(), "occupied with no connection: {left:?}");
            }
        }
        let counts = self.hub.channel_counts();
        assert!(
            counts.values().all(|n| *n == 0),
            "channel counts left: {counts:?}"
        );
    }
}

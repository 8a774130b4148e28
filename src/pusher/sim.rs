//! The scenario simulator both test suites of the core drive (`tests` for
//! one node, `cluster::tests` for several): a simulated clock, simulated
//! clients, and for a cluster a simulated Redis channel between the hubs.
//!
//! Each [`Node`] is what the event loop is to one `Hub`: it hands out
//! connection ids (a slot named by the test, with a new generation each
//! time the slot is opened again), takes every output and sorts it by kind
//! (client frames decoded to text, publishes, the backlog gate, restarts),
//! and checks that no output is for a connection that is not live.
//! [`Sim::pump`] plays Redis; [`Sim::advance_to`] moves the clock, firing
//! every deadline on the way.
//!
//! A connection is an [`At`]: a bare slot means node 0 (`sim.connect(1)`),
//! a pair names the node (`sim.connect((B, 1))`). Assertions are on the
//! exact JSON text a client receives; the fixtures for that text are at the
//! end. Nothing here is compiled outside tests.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;

use serde_json::{Map, Value, json};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::channel::{self, Auth};
use super::cluster::Bus;
use super::{App, AppId, ConnId, Hub, Opened, Output};
use crate::websocket::client::parse_server_frame;

pub(super) const KEY: &str = "reverb-key";
pub(super) const SECRET: &str = "reverb-secret";
pub(super) const APP_ID: &str = "123456";
/// The node timeout of every node of a cluster; heartbeats go out every 1 s.
pub(super) const TIMEOUT: u64 = 4000;
/// The wall clock (Unix ms) at sim time 0: messages are signed with, and
/// checked against, `UNIX0 + now`.
pub(super) const UNIX0: u64 = 1_795_000_000_000;
/// The Redis channel the simulated nodes share (part of the bus key).
pub(super) const CHANNEL: &str = "reverb";

/// The bus of a node started at sim time `at`, keyed from its apps.
pub(super) fn bus(at: u64) -> Bus {
    Bus {
        channel: CHANNEL.into(),
        secret: None,
        started: UNIX0 + at,
    }
}

/// Reverb's first test app (`123456`, `reverb-key`, `reverb-secret`).
pub(super) fn app() -> App {
    App::new(APP_ID, KEY, SECRET)
}

/// A simulated connection: a node and the slot the test named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct At {
    pub node: usize,
    pub conn: usize,
}

/// A bare slot is on node 0 (the only node of a one-node test).
impl From<usize> for At {
    fn from(conn: usize) -> At {
        At { node: 0, conn }
    }
}

impl From<(usize, usize)> for At {
    fn from((node, conn): (usize, usize)) -> At {
        At { node, conn }
    }
}

/// A one-node test compares with its bare slots.
impl PartialEq<usize> for At {
    fn eq(&self, conn: &usize) -> bool {
        *self == At::from(*conn)
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.conn)
    }
}

/// What one client received: a text frame as its text, a PING frame as
/// `<PING>`, a close as `<CLOSE code reason>`.
pub(super) type Out = (At, String);

/// How a node is attached to the simulated Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// Sends and receives.
    Up,
    /// The node knows its link is down (`cluster_link(false)`): deliveries
    /// wait in the outage queue, anything else is dropped.
    Held,
    /// A partition the node does not know about: what it publishes is lost
    /// and it hears nothing.
    Cut,
}

/// One hub and what the event loop keeps for it.
pub(super) struct Node {
    pub hub: Hub,
    pub sids: HashMap<usize, String>,
    /// The live generation of each slot, as the event loop keeps it.
    generations: HashMap<usize, u32>,
    pub link: Link,
    /// Driven by the clock (false: the process is gone).
    pub running: bool,
    /// Deliveries waiting for the link (the event loop's outage queue).
    pub held: Vec<Rc<[u8]>>,
    /// Messages that need not survive an outage, published while `Held`.
    pub dropped: Vec<Rc<[u8]>>,
    /// Client outputs (slot, text) taken from the hub and not yet drained.
    out: VecDeque<(usize, String)>,
    /// Publishes (payload, durable) taken from the hub and not yet pumped.
    publishes: VecDeque<(Rc<[u8]>, bool)>,
    /// The hub's backlog gate, as last told (`Output::Backlog`).
    pub backlog_open: bool,
    /// Restarts the hub asked for and nobody took yet.
    restarts: usize,
    /// Webhook events the hub asked to send: (app, event).
    pub webhooks: Vec<(AppId, crate::webhook::Event)>,
}

impl Node {
    fn new(hub: Hub) -> Node {
        Node {
            hub,
            sids: HashMap::new(),
            generations: HashMap::new(),
            link: Link::Up,
            running: true,
            held: Vec::new(),
            dropped: Vec::new(),
            out: VecDeque::new(),
            publishes: VecDeque::new(),
            backlog_open: false,
            restarts: 0,
            webhooks: Vec::new(),
        }
    }

    /// The hub's id of the live connection in slot `conn`.
    pub fn id(&self, conn: usize) -> ConnId {
        let generation = self.generations.get(&conn).copied().unwrap_or(0);
        ConnId::new(conn as u32, generation)
    }

    /// Take every output of the hub and sort it by kind, as the loop does.
    pub fn poll(&mut self) {
        while let Some(o) = self.hub.poll_output() {
            match o {
                Output::Send(conn, frame) => {
                    let slot = self.slot(conn);
                    self.out.push_back((slot, decode(&frame)));
                }
                Output::Close(conn, e) => {
                    let slot = self.slot(conn);
                    self.out.push_back((slot, close(e.code(), e.message())));
                }
                Output::Publish { payload, durable } => {
                    self.publishes.push_back((payload, durable));
                }
                Output::Backlog { open } => self.backlog_open = open,
                Output::Restart => self.restarts += 1,
                Output::Webhook { app, event } => self.webhooks.push((app, event)),
            }
        }
    }

    /// The slot of an output's connection, which must be the live one.
    fn slot(&self, id: ConnId) -> usize {
        assert_eq!(id, self.id(id.slot()), "output for a stale connection");
        id.slot()
    }
}

/// The simulation: its nodes, the clock, and the bus between the nodes.
pub(super) struct Sim {
    pub nodes: Vec<Node>,
    pub now: u64,
    /// Redis delivers a message to its publisher too.
    pub echo: bool,
    /// Every message that reached the bus: (sender, JSON text as the hub
    /// made it, before the loop signed it).
    pub wire: Vec<(usize, String)>,
    /// The same messages as they went over the bus, signed.
    pub sealed: Vec<(usize, Rc<[u8]>)>,
    /// Outputs taken from the hubs by `connect` and not yet drained.
    pending: Vec<Out>,
}

impl Sim {
    // ---- one node ---------------------------------------------------------

    /// One node, without scaling, serving the test app.
    pub fn new() -> Sim {
        Sim::with_apps(vec![app()])
    }

    /// One node whose app is configured by `f`.
    pub fn with(f: impl FnOnce(&mut App)) -> Sim {
        let mut a = app();
        f(&mut a);
        Sim::with_apps(vec![a])
    }

    pub fn with_apps(apps: Vec<App>) -> Sim {
        Sim::of(vec![Node::new(Hub::new(apps, 0x5eed, false))])
    }

    fn of(nodes: Vec<Node>) -> Sim {
        Sim {
            nodes,
            now: 0,
            echo: true,
            wire: Vec::new(),
            sealed: Vec::new(),
            pending: Vec::new(),
        }
    }

    // ---- a cluster --------------------------------------------------------

    /// `n` nodes serving the test app, linked and in sync.
    pub fn cluster(n: usize) -> Sim {
        Sim::cluster_with(n, |_| {})
    }

    /// `n` nodes whose app is configured by `f`, linked and in sync.
    pub fn cluster_with(n: usize, f: impl Fn(&mut App)) -> Sim {
        Sim::build(n, |_| {
            let mut a = app();
            f(&mut a);
            vec![a]
        })
    }

    /// `n` nodes, node `i` with the apps `apps(i)` (the helpers use its
    /// first app), linked and in sync.
    pub fn build(n: usize, apps: impl Fn(usize) -> Vec<App>) -> Sim {
        Sim::build_keyed(n, apps, None)
    }

    /// [`Sim::build`] with the bus keyed by a dedicated `secret` (when
    /// given) rather than by the apps.
    pub fn build_keyed(n: usize, apps: impl Fn(usize) -> Vec<App>, secret: Option<&str>) -> Sim {
        let nodes = (0..n)
            .map(|i| {
                let mut hub = Hub::new(apps(i), 0x1000 * (i as u64 + 1) + 1, false);
                let bus = Bus {
                    secret: secret.map(str::to_string),
                    ..bus(0)
                };
                hub.enable_cluster(format!("node{i}"), TIMEOUT, bus);
                hub.cluster_link(0, true);
                Node::new(hub)
            })
            .collect();
        let mut sim = Sim::of(nodes);
        sim.pump();
        for p in &sim.nodes {
            assert_eq!(p.hub.cluster_nodes(), n);
        }
        assert_eq!(sim.drain(), vec![]);
        sim.wire.clear();
        sim
    }

    pub fn hub(&mut self, node: usize) -> &mut Hub {
        &mut self.nodes[node].hub
    }

    /// Play Redis until no node has anything to publish. Each node's side is
    /// what the event loop does: a message that need not survive an outage
    /// goes out now or never; a delivery waits in the outage queue while the
    /// link is down, or while older ones wait, and that queue goes out once
    /// the hub opens the backlog gate (`Output::Backlog`).
    pub fn pump(&mut self) {
        for _ in 0..1000 {
            let mut batch: Vec<(usize, Rc<[u8]>)> = Vec::new();
            for (i, p) in self.nodes.iter_mut().enumerate() {
                if !p.running {
                    continue;
                }
                p.hub.flush_cluster();
                p.poll();
                let up = p.link == Link::Up;
                while let Some((msg, durable)) = p.publishes.pop_front() {
                    match p.link {
                        Link::Cut => {} // Redis takes it; nobody gets it
                        _ if !durable => {
                            if up {
                                batch.push((i, msg));
                            } else {
                                p.dropped.push(msg);
                            }
                        }
                        _ if up && p.held.is_empty() => batch.push((i, msg)),
                        _ => p.held.push(msg),
                    }
                }
                if up && p.backlog_open {
                    batch.extend(p.held.drain(..).map(|m| (i, m)));
                }
            }
            if batch.is_empty() {
                return;
            }
            self.deliver(batch);
        }
        panic!("the bus never went quiet");
    }

    /// Hand each message to every running, linked node (the sender too
    /// when Redis echoes).
    /// Each is signed as it goes, as the loop signs what it hands to Redis.
    fn deliver(&mut self, batch: Vec<(usize, Rc<[u8]>)>) {
        for (from, msg) in batch {
            self.wire
                .push((from, String::from_utf8(msg.to_vec()).unwrap()));
            let signed: Rc<[u8]> = self.sign(from, &msg).into();
            self.sealed.push((from, signed.clone()));
            let unix = self.unix();
            for (j, p) in self.nodes.iter_mut().enumerate() {
                if p.running && p.link == Link::Up && (j != from || self.echo) {
                    p.hub.remote(self.now, unix, &signed);
                }
            }
        }
    }

    /// The wall clock now.
    pub fn unix(&self) -> u64 {
        UNIX0 + self.now
    }

    /// `msg` signed now with `node`'s bus key.
    pub fn sign(&self, node: usize, msg: &[u8]) -> Vec<u8> {
        let seal = self.nodes[node]
            .hub
            .cluster()
            .expect("a cluster node")
            .seal();
        seal.seal(msg, self.unix())
    }

    /// Hand `node` a message signed now with its own key, as if from a
    /// node holding the same key.
    pub fn remote(&mut self, node: usize, msg: &[u8]) {
        let signed = self.sign(node, msg);
        let (now, unix) = (self.now, self.unix());
        self.hub(node).remote(now, unix, &signed);
    }

    /// Hand `node` exactly these bytes, now.
    pub fn remote_raw(&mut self, node: usize, wire: &[u8]) {
        let (now, unix) = (self.now, self.unix());
        self.hub(node).remote(now, unix, wire);
    }

    /// Move the clock by `ms` (see [`Sim::advance_to`]).
    pub fn advance(&mut self, ms: u64) {
        self.advance_to(self.now + ms);
    }

    /// Move the clock to `t`, firing every node's deadlines on the way as
    /// the loop would (and carrying what they publish, heartbeats included).
    pub fn advance_to(&mut self, t: u64) {
        assert!(t >= self.now);
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .filter(|p| p.running)
                .filter_map(|p| p.hub.poll_timeout())
                .min();
            let Some(deadline) = next.filter(|&d| d <= t) else {
                self.now = t;
                for p in self.nodes.iter_mut().filter(|p| p.running) {
                    p.hub.handle_timeout(t);
                }
                self.pump();
                return;
            };
            self.now = self.now.max(deadline);
            let now = self.now;
            for p in self.nodes.iter_mut().filter(|p| p.running) {
                if p.hub.poll_timeout().is_some_and(|d| d <= now) {
                    p.hub.handle_timeout(now);
                }
            }
            self.pump();
        }
        panic!("deadlines stuck at {}", self.now);
    }

    /// The node's link goes down (it knows).
    pub fn link_down(&mut self, node: usize) {
        let now = self.now;
        self.hub(node).cluster_link(now, false);
        self.nodes[node].link = Link::Held;
    }

    pub fn link_up(&mut self, node: usize) {
        let now = self.now;
        self.nodes[node].link = Link::Up;
        self.hub(node).cluster_link(now, true);
    }

    /// The next message `node` published and nobody pumped yet.
    pub fn poll_publish(&mut self, node: usize) -> Option<(Rc<[u8]>, bool)> {
        let p = &mut self.nodes[node];
        p.poll();
        p.publishes.pop_front()
    }

    /// Whether `node`'s hub asked for a restart since the last call.
    pub fn take_restart(&mut self, node: usize) -> bool {
        let p = &mut self.nodes[node];
        p.poll();
        std::mem::take(&mut p.restarts) > 0
    }

    /// Start one more node at the current time, serving node 0's apps,
    /// linked; its first messages are pumped. Returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.add_node_unlinked();
        self.link_up(i);
        self.pump();
        i
    }

    /// Start one more node at the current time whose Redis link is not up
    /// yet (`link_up` brings it). Returns its index.
    pub fn add_node_unlinked(&mut self) -> usize {
        let i = self.nodes.len();
        let apps: Vec<App> = self.nodes[0].hub.apps().cloned().collect();
        let mut hub = Hub::new(apps, 0x1000 * (i as u64 + 1) + 1, false);
        hub.enable_cluster(format!("node{i}"), TIMEOUT, bus(self.now));
        hub.handle_timeout(self.now); // the loop's first turn
        let mut node = Node::new(hub);
        node.link = Link::Held;
        self.nodes.push(node);
        i
    }

    /// The webhook events every node's hub asked to send since the last
    /// call, as (node, event), node by node.
    pub fn take_webhooks(&mut self) -> Vec<(usize, crate::webhook::Event)> {
        let mut out = Vec::new();
        for (i, p) in self.nodes.iter_mut().enumerate() {
            p.poll();
            out.extend(p.webhooks.drain(..).map(|e| (i, e.1)));
        }
        out
    }

    // ---- clients ----------------------------------------------------------

    /// The hub's id of the live connection `at`.
    pub fn id(&self, at: impl Into<At>) -> ConnId {
        let at = at.into();
        self.nodes[at.node].id(at.conn)
    }

    /// Raw `open` of a new connection in slot `at` (a new generation if the
    /// slot was used before), for the refusal cases.
    pub fn open(&mut self, at: impl Into<At>, key: &str, origin: Option<&str>) -> Option<Opened> {
        let at = at.into();
        let now = self.now;
        let p = &mut self.nodes[at.node];
        let generation = p.generations.get(&at.conn).map_or(0, |g| g.wrapping_add(1));
        p.generations.insert(at.conn, generation);
        let id = p.id(at.conn);
        p.hub.open(now, id, key, origin)
    }

    /// Open `at` on the test app and return its socket id; asserts that it
    /// got only its `connection_established` (what others got stays to be
    /// drained).
    pub fn connect(&mut self, at: impl Into<At>) -> String {
        self.connect_to(at, KEY)
    }

    pub fn connect_to(&mut self, at: impl Into<At>, key: &str) -> String {
        let at = at.into();
        let opened = self.open(at, key, None);
        assert!(opened.is_some(), "connection {at} refused");
        let (mine, rest): (Vec<Out>, Vec<Out>) =
            self.drain().into_iter().partition(|(a, _)| *a == at);
        self.pending = rest;
        assert_eq!(mine.len(), 1, "{mine:?}");
        let v: Value = serde_json::from_str(&mine[0].1).unwrap();
        assert_eq!(v["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        let sid = data["socket_id"].as_str().unwrap().to_string();
        let hub = &self.nodes[at.node].hub;
        let app = hub.app_by_key(key).expect("the app of an accepted key");
        assert_eq!(mine[0].1, established(&sid, hub.app(app).activity_timeout));
        self.nodes[at.node].sids.insert(at.conn, sid.clone());
        sid
    }

    /// Every client output of every node, oldest first, node by node.
    pub fn drain(&mut self) -> Vec<Out> {
        let mut out = std::mem::take(&mut self.pending);
        for (i, p) in self.nodes.iter_mut().enumerate() {
            p.poll();
            out.extend(
                p.out
                    .drain(..)
                    .map(|(conn, text)| (At { node: i, conn }, text)),
            );
        }
        out
    }

    /// Drain, sorted (for outputs of several nodes whose order is not defined).
    pub fn drain_sorted(&mut self) -> Vec<Out> {
        let mut out = self.drain();
        out.sort();
        out
    }

    /// Drain, and return only what `at` received.
    pub fn drain_for(&mut self, at: impl Into<At>) -> Vec<String> {
        only(&self.drain(), at)
    }

    pub fn send(&mut self, at: impl Into<At>, text: &str) {
        let at = at.into();
        let (now, id) = (self.now, self.id(at));
        self.hub(at.node).message(now, id, text);
    }

    pub fn send_json(&mut self, at: impl Into<At>, v: Value) {
        self.send(at, &v.to_string());
    }

    /// A WebSocket PING or PONG control frame from the client.
    pub fn control(&mut self, at: impl Into<At>) {
        let at = at.into();
        let (now, id) = (self.now, self.id(at));
        self.hub(at.node).control(now, id);
    }

    /// The client's socket closed.
    pub fn close(&mut self, at: impl Into<At>) {
        let at = at.into();
        let (now, id) = (self.now, self.id(at));
        self.hub(at.node).close(now, id);
    }

    pub fn sid(&self, at: impl Into<At>) -> String {
        let at = at.into();
        self.nodes[at.node].sids[&at.conn].clone()
    }

    /// The app config of an open connection.
    pub fn app_of(&self, at: impl Into<At>) -> &App {
        let at = at.into();
        let hub = &self.nodes[at.node].hub;
        let c = hub.conn(self.id(at)).expect("connection is open");
        hub.app(c.app)
    }

    pub fn is_open(&self, at: impl Into<At>) -> bool {
        let at = at.into();
        self.nodes[at.node].hub.conn(self.id(at)).is_some()
    }

    /// Valid channel auth for `at`: `"<key>:<hmac(socket:channel[:data])>"`.
    pub fn auth(&self, at: impl Into<At>, channel: &str, channel_data: Option<&str>) -> String {
        let at = at.into();
        let a = self.app_of(at);
        sign(&a.key, &a.secret, &self.sid(at), channel, channel_data)
    }

    /// `pusher:subscribe` without auth.
    pub fn subscribe(&mut self, at: impl Into<At>, channel: &str) {
        self.send(at, &subscribe_msg(channel, None, None));
    }

    pub fn subscribe_private(&mut self, at: impl Into<At>, channel: &str) {
        let at = at.into();
        let auth = self.auth(at, channel, None);
        self.send(at, &subscribe_msg(channel, Some(&auth), None));
    }

    pub fn subscribe_presence(&mut self, at: impl Into<At>, channel: &str, channel_data: &str) {
        let at = at.into();
        let auth = self.auth(at, channel, Some(channel_data));
        self.send(at, &subscribe_msg(channel, Some(&auth), Some(channel_data)));
    }

    /// Subscribe with valid auth for the channel's type (presence as `user`,
    /// a `channel_data` JSON text).
    pub fn subscribe_signed(&mut self, at: impl Into<At>, channel: &str, user: Option<&str>) {
        match (channel::Kind::of(channel).auth, user) {
            (Auth::Presence, Some(cd)) => self.subscribe_presence(at, channel, cd),
            (Auth::Presence, None) => {
                let at = at.into();
                let auth = self.auth(at, channel, None);
                self.send(at, &subscribe_msg(channel, Some(&auth), None));
            }
            (Auth::Private, _) => self.subscribe_private(at, channel),
            _ => self.subscribe(at, channel),
        }
    }

    /// Subscribe with valid auth and drain (without pumping); asserts the
    /// subscriber got `subscription_succeeded` first. Returns everything
    /// that was sent.
    pub fn join(&mut self, at: impl Into<At>, channel: &str, user: Option<&str>) -> Vec<Out> {
        let at = at.into();
        self.subscribe_signed(at, channel, user);
        let out = self.drain();
        let mine = only(&out, at);
        assert!(
            mine.first()
                .is_some_and(|m| m
                    .starts_with(r#"{"event":"pusher_internal:subscription_succeeded","data":"#)),
            "{at} joining {channel}: {out:?}"
        );
        out
    }

    /// `pusher:signin` with valid auth for `user_data` (a JSON text).
    pub fn signin(&mut self, at: impl Into<At>, user_data: &str) {
        let at = at.into();
        let a = self.app_of(at);
        let msg = signin_msg(&a.key, &a.secret, &self.sid(at), user_data);
        self.send(at, &msg);
    }

    pub fn whisper(&mut self, at: impl Into<At>, channel: &str, event: &str, data: Value) {
        self.send_json(
            at,
            json!({"event": event, "channel": channel, "data": data}),
        );
    }

    // ---- the HTTP API -----------------------------------------------------

    /// `POST /events` on node 0's first app.
    pub fn trigger(
        &mut self,
        channels: &[&str],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        self.trigger_on(0, channels, event, data, except)
    }

    /// `POST /events` on `node`'s first app.
    pub fn trigger_on(
        &mut self,
        node: usize,
        channels: &[&str],
        event: &str,
        data: &str,
        except: Option<&str>,
    ) -> usize {
        let now = self.now;
        let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
        self.hub(node)
            .trigger(now, 0, &channels, event, data, except)
    }

    /// `channel_info` of node 0 as the JSON text the HTTP API would put in
    /// its body.
    pub fn info(&self, app: AppId, channel: &str, info: &[&str]) -> String {
        Value::Object(self.nodes[0].hub.channel_info(self.now, app, channel, info)).to_string()
    }

    /// `channel_info` of `node`'s first app.
    pub fn info_on(&self, node: usize, channel: &str, info: &[&str]) -> String {
        Value::Object(
            self.nodes[node]
                .hub
                .channel_info(self.now, 0, channel, info),
        )
        .to_string()
    }

    /// `GET /channels` of node 0.
    pub fn channels(&self, app: AppId, prefix: &str, info: &[&str]) -> String {
        Value::Object(self.nodes[0].hub.channels(self.now, app, prefix, info)).to_string()
    }

    /// `GET /channels` of `node`'s first app, every prefix.
    pub fn channels_on(&self, node: usize, info: &[&str]) -> String {
        Value::Object(self.nodes[node].hub.channels(self.now, 0, "", info)).to_string()
    }

    pub fn users(&self, node: usize, channel: &str) -> Result<Vec<Value>, u16> {
        self.nodes[node].hub.channel_users(0, channel)
    }

    /// Open connections of `node`'s first app on every node.
    pub fn connections(&self, node: usize) -> u64 {
        self.nodes[node].hub.cluster_connection_count(0)
    }

    /// Names in node 0's channel map of `app` (including unoccupied cache
    /// holders).
    pub fn channel_names(&self, app: AppId) -> Vec<String> {
        let mut v: Vec<String> = self.nodes[0].hub.apps[app]
            .channels
            .keys()
            .map(|k| k.to_string())
            .collect();
        v.sort();
        v
    }

    // ---- the bus ----------------------------------------------------------

    /// The `type` of every message `from` put on the bus since `mark`.
    pub fn wire_types(&self, from: usize, mark: usize) -> Vec<String> {
        self.wire[mark..]
            .iter()
            .filter(|(f, _)| *f == from)
            .map(|(_, m)| envelope(m)["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// The last message of type `ty` that `from` put on the bus, signed as
    /// it went.
    pub fn last_sealed(&self, from: usize, ty: &str) -> Vec<u8> {
        self.sealed
            .iter()
            .rev()
            .find(|(f, m)| *f == from && serde_json::from_slice::<Value>(m).unwrap()["type"] == ty)
            .map(|(_, m)| m.to_vec())
            .unwrap_or_else(|| panic!("no {ty} from node {from}"))
    }

    /// The last message of type `ty` that `from` put on the bus.
    pub fn last_wire(&self, from: usize, ty: &str) -> String {
        self.wire
            .iter()
            .rev()
            .find(|(f, m)| *f == from && envelope(m)["type"] == ty)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no {ty} from node {from}"))
    }
}

// ---- fixtures -------------------------------------------------------------------

/// A message of the bus as JSON.
pub(super) fn envelope(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// One whole frame as `Out` shows it.
pub(super) fn decode(frame: &[u8]) -> String {
    let (opcode, payload, used) = parse_server_frame(frame).expect("a whole frame");
    assert_eq!(used, frame.len(), "one frame per output");
    match opcode {
        OpCode::Data(Data::Text) => String::from_utf8(payload).unwrap(),
        OpCode::Control(Control::Ping) => {
            assert!(payload.is_empty());
            "<PING>".to_string()
        }
        other => panic!("unexpected frame {other:?}"),
    }
}

/// What `at` received, in order.
pub(super) fn only(out: &[Out], at: impl Into<At>) -> Vec<String> {
    let at = at.into();
    out.iter()
        .filter(|(a, _)| *a == at)
        .map(|(_, m)| m.clone())
        .collect()
}

/// An expected output.
pub(super) fn o(at: impl Into<At>, s: &str) -> Out {
    (at.into(), s.to_string())
}

/// Channel auth: `"<key>:<hmac(socket:channel[:data])>"`.
pub(super) fn sign(
    key: &str,
    secret: &str,
    sid: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let mut msg = format!("{sid}:{channel}");
    if let Some(d) = channel_data {
        msg.push(':');
        msg.push_str(d);
    }
    format!(
        "{key}:{}",
        crate::auth::hmac_sha256_hex(secret.as_bytes(), msg.as_bytes())
    )
}

pub(super) fn subscribe_msg(
    channel: &str,
    auth: Option<&str>,
    channel_data: Option<&str>,
) -> String {
    let mut data = Map::new();
    data.insert("channel".into(), channel.into());
    if let Some(a) = auth {
        data.insert("auth".into(), a.into());
    }
    if let Some(cd) = channel_data {
        data.insert("channel_data".into(), cd.into());
    }
    json!({"event": "pusher:subscribe", "data": data}).to_string()
}

/// `pusher:signin` signed with `key` and `secret` for socket `sid`.
pub(super) fn signin_msg(key: &str, secret: &str, sid: &str, user_data: &str) -> String {
    let sig = crate::auth::hmac_sha256_hex(
        secret.as_bytes(),
        format!("{sid}::user::{user_data}").as_bytes(),
    );
    json!({"event": "pusher:signin", "data": {"auth": format!("{key}:{sig}"), "user_data": user_data}})
        .to_string()
}

pub(super) fn established(sid: &str, activity_timeout: u64) -> String {
    format!(
        r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"{sid}\",\"activity_timeout\":{activity_timeout}}}"}}"#
    )
}

pub(super) fn err(code: u16, message: &str) -> String {
    format!(r#"{{"event":"pusher:error","data":"{{\"code\":{code},\"message\":\"{message}\"}}"}}"#)
}

pub(super) fn close(code: u16, reason: &str) -> String {
    format!("<CLOSE {code} {reason}>")
}

pub(super) fn succeeded(channel: &str) -> String {
    format!(
        r#"{{"event":"pusher_internal:subscription_succeeded","data":"{{}}","channel":"{channel}"}}"#
    )
}

/// `channel_data` of a presence member; `id` is raw JSON (`1` or `"abc"`).
pub(super) fn member(id: &str, name: &str) -> String {
    format!(r#"{{"user_id":{id},"user_info":{{"name":"{name}"}}}}"#)
}

//! The hub's side of horizontal scaling: what this node tells the others
//! through Redis, and its view of every other live node. Sans-IO like the rest
//! of the hub: messages come in as bytes ([`Hub::remote`]), go out as
//! [`Output::Publish`] through the hub's `poll_output`, and time is a
//! parameter. Carrying them over Redis pub/sub, and holding durable ones
//! through an outage, is the event loop's (`scaling`); what operators can
//! rely on is revurb-scaling(7).
//!
//! # The design
//!
//! Every node keeps a copy of what each other node holds (open connections
//! per app, subscribers per channel, presence members per channel) and
//! answers the API's queries (`/channels`, `/users`, `/connections`,
//! `user_count`) from it at once: there is no scatter-gather and no waiting
//! on other nodes.
//!
//! Presence is one set per channel across the cluster: a user is a member
//! while any node has a connection of theirs in the channel. Every node tells
//! its own subscribers `member_added` when a user becomes a member of the
//! cluster and `member_removed` when they stop being one, so each subscriber
//! hears each change once, whichever nodes the user's connections are on.
//!
//! Events are delivered by the node that received them to its own clients at
//! once, then published; other nodes deliver to theirs.
//!
//! # The protocol
//!
//! One JSON message per publish, in the [`envelope`] format (`v`, `node`,
//! `seq`, `type`), signed by the loop as it goes to Redis ([`seal`]: `ts`
//! and `mac` appended). What arrives is checked before it is read
//! ([`Hub::remote`]): a message not signed with this node's key, or signed
//! more than [`MAX_SKEW_MS`] away from this node's clock or before it
//! started, is refused and counted in `refused`. When a node sends each type:
//!
//! - `state` (everything it holds, cached events up to 1 MiB): when its link
//!   comes up, with `reply: true` so every node answers with its own
//!   `state`; when asked by a `want`; after a reload changed its apps;
//! - `want {to}`: when it hears from a node it did not know (unless that
//!   message was the node's `state`);
//! - `counts`: at most once per loop turn per app (`flush_cluster`), the
//!   absolute numbers that changed since the last one;
//! - `join` and `leave`: a user's first connection here joined a presence
//!   channel, or their last one here left it;
//! - `event`, `client`, `terminate`: as the API or a client makes them;
//! - `heartbeat`: every quarter of `node_timeout` while the link is up;
//! - `bye`: once, when the node shuts down, after its connections closed;
//! - `restart`: only `revurb restart` sends it.
//!
//! Deliveries (`event`, `client`, `terminate`, `restart`) are durable: they
//! survive an outage in the loop's queue and go out in order once the hub
//! opens the backlog gate ([`Output::Backlog`]): every node known before the
//! link came back has spoken since (so it is subscribed again), or
//! `node_timeout` has passed. Everything else goes now or never, since the
//! `state` sent on reconnect replaces it. A receiver drops a delivery whose
//! `seq` it has already seen from that node (one re-sent after a reconnect
//! that had in fact arrived), also for nodes it dropped lately. The other
//! messages are never re-sent, but a replayed one must not apply twice
//! either (an old `join` would bring a member back): they have their own
//! seq mark, since a `state` may overtake queued deliveries. Together with
//! the time bound on signatures, a signed message replayed from the
//! channel is never taken twice.
//!
//! # Liveness
//!
//! A node heard from within `node_timeout` is alive. A node that falls
//! silent is dropped, and its members leave (with `member_removed`); one that
//! says `bye` is dropped at once. While this node's own Redis link is down
//! its view is frozen (nobody is dropped); when the link comes back every
//! known node gets a fresh `node_timeout` to speak.
//!
//! Silence only proves a node dead if the bus still works, and a link can be
//! up while Redis delivers nothing: a stalled server (a fork for a save, a
//! paused VM) answers the idle `PING` only after its 10 s reply deadline,
//! and `node_timeout` is shorter; or this process itself was stalled. Redis
//! hands every publish back to its sender's subscriber, so each node checks
//! its own messages: once one has come back since the link came up, none
//! for `node_timeout /` [`DEAF_FRACTION`] (two of its own heartbeats) makes
//! the node *deaf*, and a deaf node drops nobody: its view stays frozen, as
//! with the link down, and it goes on publishing. A bus that stops for
//! everyone thus makes no node drop another (no storm of `member_removed`,
//! `channel_vacated` and back when it returns), while a node really gone is
//! still dropped by those that still hear themselves.
//!
//! The first own message to come back ends it like a reconnect: every
//! known node gets a fresh `node_timeout`, and the node sends a `heartbeat`
//! and then a `state` with `reply: true` to catch up on what it missed. A
//! node that had dropped it (it was cut off alone, or stalled alone) hears
//! the heartbeat from a node it does not know and answers with a `want`;
//! that tells the node it was dropped, and only then do its webhooks settle
//! again as after a long link outage (`Hub::hooks_link`). Deafness alone
//! does not mute its webhooks: in a stall everything published arrives late,
//! not lost, and nobody reports its channels. Where Redis never hands a node
//! its own messages back, the check never starts.
//!
//! What the channel can make a node remember is bounded: at most
//! [`MAX_NODES`] nodes, only apps this node has, only valid channel names,
//! members only of presence channels; anything else is counted in
//! `bad_messages` and logged in bursts.

pub mod envelope;
pub mod seal;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use super::channel::{self, Member};
use super::{AppId, ConnId, Frame, Hub, Output, message};
use crate::websocket;
use envelope::{AppState as WireApp, Body, CachedEvent, Envelope};
use seal::{Refusal, Seal};

/// Log at most this many ignored messages in a row before going quiet.
const BAD_MESSAGE_LOG_BURST: u64 = 10;
/// Most nodes one cluster may have (a bound on what the channel can make
/// a node remember).
pub const MAX_NODES: usize = 1024;
/// Dropped nodes whose last seq is remembered.
const RETIRED_NODES: usize = 256;
/// How far a message's `ts` may be from this node's clock, either way
/// (clock skew between nodes plus Redis latency); older is a replay.
pub const MAX_SKEW_MS: u64 = 30_000;
/// Bytes of cached events one `state` message carries at most; a node with
/// more cache channels shares the rest only as new events arrive.
const STATE_CACHE_BYTES: usize = 1024 * 1024;
/// A node whose own messages have not come back for `node_timeout /
/// DEAF_FRACTION` is deaf (see Liveness). Heartbeats go every quarter of
/// `node_timeout`, so that is two of them missed; and it is under
/// `node_timeout` by a quarter, so deafness is noticed before any node
/// silent since the same moment would be dropped.
pub const DEAF_FRACTION: u64 = 2;

pub struct Cluster {
    pub node: String,
    /// How our own messages start (`{"v":1,"node":"<id>",`): Redis echoes
    /// every publish back, and these are skipped without parsing.
    own_prefix: Vec<u8>,
    seq: u64,
    timeout_ms: u64,
    heartbeat_ms: u64,
    link_up: bool,
    next_heartbeat: u64,
    /// When one of this node's own messages last came back from Redis,
    /// since the link came up (`None`: none yet, the check is off).
    echo_at: Option<u64>,
    /// Since when this node has been deaf (see Liveness).
    deaf_since: Option<u64>,
    /// Back from a deaf spell that began at `.0`: until `.1`, a `want` for
    /// this node means a node had dropped it.
    undeaf: Option<(u64, u64)>,
    nodes: HashMap<String, Node>,
    /// Apps whose counts changed since the last flush, with the channels.
    dirty: HashMap<AppId, HashSet<Rc<str>>>,
    /// The backlog gate as last told to the loop (`Output::Backlog`).
    backlog_open: bool,
    /// After the link came back: nodes known before that have not spoken
    /// since, and until when to wait for them before sending the backlog.
    resync: HashSet<String>,
    resync_until: u64,
    /// The seqs of nodes dropped as silent, in case they were only cut off
    /// and re-send what had arrived, or their messages are replayed
    /// (bounded, oldest forgotten; older messages are past [`MAX_SKEW_MS`]).
    retired: VecDeque<(String, Seqs)>,
    /// The bus key, and what it is made from (the apps, when no secret).
    seal: Rc<Seal>,
    bus: Bus,
    pub bad_messages: u64,
    pub duplicates: u64,
    /// Messages refused as unsigned, badly signed or out of their time.
    pub refused: u64,
}

/// How this node's bus is keyed and when it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    /// The Redis channel (part of the key).
    pub channel: String,
    /// `REVERB_SCALING_SECRET`; `None`: the key comes from the apps.
    pub secret: Option<String>,
    /// Unix time (ms) at which this node started: nothing signed before
    /// is accepted, so a message captured earlier cannot be replayed to it.
    pub started: u64,
}

/// The highest seqs seen from a node. Each kind arrives in order (a node
/// publishes the ones that need not survive an outage at once, and the
/// deliveries in order through its queue), but a state may overtake queued
/// deliveries, so each kind has its own mark.
#[derive(Debug, Clone, Copy, Default)]
struct Seqs {
    durable: u64,
    live: u64,
}

struct Node {
    last_seen: u64,
    seqs: Seqs,
    apps: HashMap<String, RemoteApp>,
}

#[derive(Default)]
struct RemoteApp {
    connections: u64,
    subs: HashMap<String, u64>,
    members: HashMap<String, Vec<Rc<Member>>>,
}

impl Cluster {
    pub fn new(node: String, timeout_ms: u64, bus: Bus, seal: Seal) -> Cluster {
        let own_prefix = format!(
            "{{\"v\":{},\"node\":{},",
            envelope::VERSION,
            serde_json::Value::String(node.clone())
        )
        .into_bytes();
        Cluster {
            own_prefix,
            node,
            seq: 0,
            timeout_ms,
            heartbeat_ms: (timeout_ms / 4).max(250),
            link_up: false,
            next_heartbeat: 0,
            echo_at: None,
            deaf_since: None,
            undeaf: None,
            nodes: HashMap::new(),
            dirty: HashMap::new(),
            backlog_open: false,
            resync: HashSet::new(),
            resync_until: 0,
            retired: VecDeque::new(),
            seal: Rc::new(seal),
            bus,
            bad_messages: 0,
            duplicates: 0,
            refused: 0,
        }
    }

    /// The key the loop signs this node's publishes with as they go to
    /// Redis (it changes on a reload when it comes from the apps).
    pub fn seal(&self) -> Rc<Seal> {
        self.seal.clone()
    }

    /// Remember the seqs of a node dropped from the view (the oldest
    /// forgotten past [`RETIRED_NODES`]).
    fn retire(&mut self, id: String, seqs: Seqs) {
        if self.retired.len() >= RETIRED_NODES {
            self.retired.pop_front();
        }
        self.retired.push_back((id, seqs));
    }

    /// Count a refused message; whether to log it (the first, then at
    /// powers of two: a forger must not be able to flood the log).
    fn count_refused(&mut self) -> bool {
        self.refused += 1;
        self.refused.is_power_of_two()
    }

    fn remote_apps<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a RemoteApp> + 'a {
        self.nodes.values().filter_map(move |n| n.apps.get(app_id))
    }

    /// Count a message ignored as bad; whether to log it (the first few,
    /// then at powers of two, so a noisy channel does not flood the log).
    fn count_bad_message(&mut self) -> bool {
        self.bad_messages += 1;
        self.bad_messages <= BAD_MESSAGE_LOG_BURST || self.bad_messages.is_power_of_two()
    }

    /// The envelope of a signed message from the channel, or `None` when it
    /// is refused: unsigned, signed with another key, or signed outside
    /// [`MAX_SKEW_MS`] of `unix` or before this node started (a replay).
    fn open(&mut self, unix: u64, payload: &[u8]) -> Option<Vec<u8>> {
        let why = match self.seal.open(payload) {
            Ok((envelope, ts)) => {
                let fresh = ts >= self.bus.started
                    && ts.saturating_add(MAX_SKEW_MS) >= unix
                    && ts <= unix.saturating_add(MAX_SKEW_MS);
                if fresh {
                    return Some(envelope);
                }
                format!(
                    "signed at {ts}, {} ms from this node's clock or before it started \
                     (a replay, or clocks out of step)",
                    i128::from(ts) - i128::from(unix)
                )
            }
            Err(Refusal::Unsigned) => "not signed".to_string(),
            Err(Refusal::BadSignature) => "signed with another key (is REVERB_SCALING_SECRET, \
                or without it the app list, the same on every node?)"
                .to_string(),
        };
        if self.count_refused() {
            crate::log_warn!(
                "cluster: refused a message on the Redis channel ({} so far): {why}: {}",
                self.refused,
                super::truncate_bytes(payload, 120)
            );
        }
        None
    }

    /// Whether a node other than `skip` has `key` in `channel`.
    fn has_user(&self, app_id: &str, channel: &str, key: &str, skip: Option<&str>) -> bool {
        self.nodes
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != skip)
            .filter_map(|(_, n)| n.apps.get(app_id))
            .filter_map(|a| a.members.get(channel))
            .any(|ms| ms.iter().any(|m| m.key == key))
    }
}

/// What the webhooks (`super::webhooks`) read of the view.
impl Cluster {
    /// The other live nodes.
    pub(super) fn peers(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// When `node` was last heard from; `None` when it is not in the view.
    pub(super) fn last_heard(&self, node: &str) -> Option<u64> {
        self.nodes.get(node).map(|n| n.last_seen)
    }

    pub(super) fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// Whether `node` has subscribers or members in `channel`.
    pub(super) fn node_occupies(&self, node: &str, app_id: &str, channel: &str) -> bool {
        let Some(a) = self.nodes.get(node).and_then(|n| n.apps.get(app_id)) else {
            return false;
        };
        a.subs.get(channel).is_some_and(|n| *n > 0) || a.members.contains_key(channel)
    }

    /// Whether `node` has user `key` in `channel`.
    pub(super) fn node_has_member(
        &self,
        node: &str,
        app_id: &str,
        channel: &str,
        key: &str,
    ) -> bool {
        self.nodes
            .get(node)
            .and_then(|n| n.apps.get(app_id))
            .and_then(|a| a.members.get(channel))
            .is_some_and(|ms| ms.iter().any(|m| m.key == key))
    }
}

fn member_from(data: &Value) -> Option<Rc<Member>> {
    let key = data.get("user_id").and_then(channel::user_key)?;
    Some(Rc::new(Member {
        user_id: data.get("user_id").cloned().unwrap_or(Value::Null),
        key,
        data: data.clone(),
    }))
}

impl Hub {
    /// Turn on scaling with this node id, its bus signed with a key from
    /// `bus` (see [`seal`]).
    pub fn enable_cluster(&mut self, node: String, timeout_ms: u64, bus: Bus) {
        let seal = self.bus_seal(&bus);
        crate::log_debug!("cluster: bus key from {:?}", seal.origin);
        self.cluster = Some(Box::new(Cluster::new(node, timeout_ms, bus, seal)));
        self.hooks_cluster_enabled();
        // the loop learns the gate's first state (closed: the link is down)
        self.out.push_back(Output::Backlog { open: false });
    }

    fn bus_seal(&self, bus: &Bus) -> Seal {
        let apps = self.apps.iter().map(|a| &a.config);
        Seal::new(&bus.channel, bus.secret.as_deref(), apps)
    }

    /// After a reload: a key derived from the apps follows them. Nodes
    /// whose apps differ no longer hear each other until they match again.
    pub(super) fn cluster_rekey(&mut self) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let seal = self.bus_seal(&c.bus);
        if seal.same_key(&c.seal) {
            return;
        }
        crate::log_warn!(
            "cluster: the apps changed, and with them the key that signs the Redis channel; \
             nodes with other apps no longer hear this one (REVERB_SCALING_SECRET sets a key that does not change)"
        );
        if let Some(c) = self.cluster.as_mut() {
            c.seal = Rc::new(seal);
        }
    }

    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_deref()
    }

    /// Live nodes including this one (1 without scaling).
    pub fn cluster_nodes(&self) -> usize {
        1 + self.cluster.as_ref().map_or(0, |c| c.nodes.len())
    }

    /// Tell the loop (`Output::Backlog`) when the gate on publishes held
    /// through an outage changes: open once every node known before the link
    /// came back has spoken since (so it is subscribed again), or
    /// node_timeout has passed; closed while the link is down. Called at the
    /// end of every input that can move it.
    pub(super) fn cluster_backlog_gate(&mut self, now: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.resync.is_empty() && now >= c.resync_until {
            c.resync.clear();
        }
        let open = c.link_up && c.resync.is_empty();
        if open != c.backlog_open {
            c.backlog_open = open;
            self.out.push_back(Output::Backlog { open });
        }
    }

    /// Both Redis connections are up (`true`) or one went down (`false`).
    /// Up: announce the full state and ask every node for theirs. Down: the
    /// view of the others is frozen until the link is back.
    pub fn cluster_link(&mut self, now: u64, up: bool) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.link_up == up {
            return;
        }
        c.link_up = up;
        c.echo_at = None;
        c.deaf_since = None;
        c.undeaf = None;
        if up {
            for n in c.nodes.values_mut() {
                n.last_seen = now; // they get a fresh chance to speak
            }
            c.resync = c.nodes.keys().cloned().collect();
            c.resync_until = now + c.timeout_ms;
            c.dirty.clear();
            c.next_heartbeat = now + c.heartbeat_ms;
            let apps = self.local_state(now);
            self.publish(Body::State { apps, reply: true });
        }
        self.hooks_link(now, up);
        self.cluster_backlog_gate(now);
    }

    /// One of this node's own messages came back from Redis: the bus works.
    /// After a deaf spell, catch up as after a reconnect.
    fn own_echo(&mut self, now: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.link_up {
            return;
        }
        c.echo_at = Some(now);
        let Some(since) = c.deaf_since.take() else {
            return;
        };
        crate::log_warn!(
            "cluster: this node's messages come back from Redis again after {} s; catching up with the other nodes",
            now.saturating_sub(since) / 1000
        );
        for n in c.nodes.values_mut() {
            n.last_seen = now; // they get a fresh chance to speak
        }
        c.dirty.clear();
        c.undeaf = Some((since, now + c.timeout_ms));
        // a heartbeat first: a node that dropped this one answers it with a
        // `want` (see Liveness), which a `state` would not get
        self.publish(Body::Heartbeat);
        let apps = self.local_state(now);
        self.publish(Body::State { apps, reply: true });
    }

    /// A `want` for this node: if it came soon after a deaf spell, a node
    /// had dropped this one, and its webhooks settle as after an outage
    /// that began with the spell.
    fn wanted_after_deafness(&mut self, now: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some((since, until)) = c.undeaf.take() else {
            return;
        };
        if now <= until {
            crate::log_info!("cluster: another node had dropped this one while it was deaf");
            self.hooks_dropped_while_deaf(now, since);
        }
    }

    /// Whether this node is deaf (see Liveness): true from the moment its
    /// own messages have been missing for too long, until one comes back.
    pub fn cluster_deaf(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.deaf_since.is_some())
    }

    pub(super) fn publish(&mut self, body: Body) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let durable = body.durable();
        if !durable && !c.link_up {
            return; // the full state sent on reconnect replaces it
        }
        c.seq += 1;
        let payload = Envelope::new(&c.node, c.seq, body).encode().into();
        self.out.push_back(Output::Publish { payload, durable });
    }

    /// Tell the others everything again (after the app list changed).
    pub(super) fn cluster_resend_state(&mut self, now: u64) {
        if self.cluster.as_ref().is_some_and(|c| c.link_up) {
            if let Some(c) = self.cluster.as_mut() {
                c.dirty.clear(); // its app ids may be stale; the state covers them
            }
            let apps = self.local_state(now);
            self.publish(Body::State { apps, reply: false });
        }
    }

    /// This node is shutting down (after its connections were closed): send
    /// what changed, then say goodbye so the others forget it at once.
    pub fn cluster_goodbye(&mut self, now: u64) {
        if self.cluster.as_ref().is_some_and(|c| c.link_up) {
            self.flush_cluster();
            self.publish(Body::Bye);
            if let Some(c) = self.cluster.as_mut() {
                c.link_up = false; // nothing after the goodbye but deliveries
            }
            self.cluster_backlog_gate(now);
        }
    }

    /// Note that counts of `app` (and `channel`) changed.
    pub(super) fn cluster_dirty(&mut self, app: AppId, channel: Option<&Rc<str>>) {
        if let Some(ch) = channel {
            self.subscribers_changed(app, ch);
        }
        if let Some(c) = self.cluster.as_mut()
            && c.link_up
        {
            let set = c.dirty.entry(app).or_default();
            if let Some(ch) = channel {
                set.insert(ch.clone());
            }
        }
    }

    /// Send the counts that changed since the last call (once per loop turn).
    pub fn flush_cluster(&mut self) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut c.dirty);
        for (app, names) in dirty {
            let Some(state) = self.apps.get(app) else {
                continue;
            };
            let channels = names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        state.channels.get(n).map_or(0, |c| c.len() as u64),
                    )
                })
                .collect();
            let body = Body::Counts {
                app: state.config.id.clone(),
                connections: state.connections,
                channels,
            };
            self.publish(body);
        }
    }

    /// Everything this node holds, for a `state` message.
    fn local_state(&self, now: u64) -> BTreeMap<String, WireApp> {
        let mut out = BTreeMap::new();
        let mut cache_bytes = 0;
        for a in &self.apps {
            let mut w = WireApp {
                connections: a.connections,
                ..WireApp::default()
            };
            for (name, ch) in &a.channels {
                if let Some(c) = ch.cached(now)
                    && let Some(message) = websocket::frame_payload(&c.message)
                    && cache_bytes + message.len() <= STATE_CACHE_BYTES
                {
                    cache_bytes += message.len();
                    let cached = CachedEvent {
                        event: c.event.clone(),
                        data: c.data.clone(),
                        message: String::from_utf8_lossy(message).into_owned(),
                        ttl_ms: c.expires_at - now,
                    };
                    w.cache.insert(name.to_string(), cached);
                }
                if ch.is_empty() {
                    continue;
                }
                w.channels.insert(name.to_string(), ch.len() as u64);
                if let Some(p) = &ch.presence {
                    let ms = p.users.iter().map(|(m, _)| m.data.clone()).collect();
                    w.members.insert(name.to_string(), ms);
                }
            }
            out.insert(a.config.id.clone(), w);
        }
        out
    }

    // ---- what the API and the protocol ask about the cluster ---------------

    /// Open connections of `app` on every node.
    pub fn cluster_connection_count(&self, app: AppId) -> u64 {
        let id = &self.apps[app].config.id;
        self.apps[app].connections
            + self
                .cluster
                .as_ref()
                .map_or(0, |c| c.remote_apps(id).map(|a| a.connections).sum())
    }

    /// Subscribers of `channel` on other nodes.
    pub(super) fn remote_subs(&self, app: AppId, channel: &str) -> u64 {
        let id = &self.apps[app].config.id;
        self.cluster.as_ref().map_or(0, |c| {
            c.remote_apps(id)
                .map(|a| {
                    let subs = a.subs.get(channel).copied().unwrap_or(0);
                    // a join can arrive before the counts that go with it
                    let members = a.members.get(channel).map_or(0, |m| m.len() as u64);
                    subs.max(members)
                })
                .sum()
        })
    }

    /// Channels occupied on other nodes.
    pub(super) fn remote_channels(&self, app: AppId) -> HashSet<String> {
        let id = &self.apps[app].config.id;
        let mut out = HashSet::new();
        if let Some(c) = &self.cluster {
            for a in c.remote_apps(id) {
                out.extend(
                    a.subs
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, _)| k.clone()),
                );
                out.extend(a.members.keys().cloned());
            }
        }
        out
    }

    /// Whether another node has user `key` in `channel`.
    pub(super) fn remote_has_user(&self, app: AppId, channel: &str, key: &str) -> bool {
        let id = &self.apps[app].config.id;
        self.cluster
            .as_ref()
            .is_some_and(|c| c.has_user(id, channel, key, None))
    }

    /// The members of a presence channel across the cluster, one per user:
    /// this node's first, then the others'.
    pub(super) fn cluster_members(&self, app: AppId, channel: &str) -> Vec<Rc<Member>> {
        let mut out: Vec<Rc<Member>> = self.apps[app]
            .channels
            .get(channel)
            .and_then(|c| c.presence.as_ref())
            .map_or_else(Vec::new, |p| {
                p.users.iter().map(|(m, _)| m.clone()).collect()
            });
        if let Some(c) = &self.cluster {
            let mut seen: HashSet<String> = out.iter().map(|m| m.key.clone()).collect();
            let id = &self.apps[app].config.id;
            let mut nodes: Vec<&String> = c.nodes.keys().collect();
            nodes.sort(); // the same order on every call
            for n in nodes {
                if let Some(ms) = c.nodes[n].apps.get(id).and_then(|a| a.members.get(channel)) {
                    for m in ms {
                        if seen.insert(m.key.clone()) {
                            out.push(m.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Tell this node's subscribers of `channel` that a user joined or left.
    pub(super) fn announce_member(
        &mut self,
        now: u64,
        app: AppId,
        channel: &str,
        member: &Member,
        added: bool,
        except: Option<ConnId>,
    ) {
        self.hook_member(now, app, channel, member, added);
        let Some(ch) = self.apps[app].channels.get(channel) else {
            return;
        };
        if ch.is_empty() {
            return;
        }
        let (event, data) = if added {
            ("pusher_internal:member_added", member.data.to_string())
        } else {
            (
                "pusher_internal:member_removed",
                serde_json::json!({ "user_id": member.user_id }).to_string(),
            )
        };
        let frame: Frame =
            websocket::text_frame(&message::event(event, Some(&data), Some(channel))).into();
        let subs: Vec<ConnId> = ch
            .subs
            .iter()
            .copied()
            .filter(|&s| Some(s) != except)
            .collect();
        for s in subs {
            self.send(s, frame.clone());
        }
    }

    // ---- messages from other nodes -------------------------------------------

    /// One message from the Redis channel, received at Unix time `unix`
    /// (ms; the wall clock, since it is compared with the sender's).
    pub fn remote(&mut self, now: u64, unix: u64, payload: &[u8]) {
        self.remote_message(now, unix, payload);
        self.cluster_backlog_gate(now);
    }

    fn remote_message(&mut self, now: u64, unix: u64, payload: &[u8]) {
        // Only the prefix is checked, not the signature: a forged echo can
        // at most keep this node from going deaf, which is how it behaved
        // before the check existed; it cannot make it drop anyone.
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| payload.starts_with(&c.own_prefix))
        {
            return self.own_echo(now);
        }
        let Some(env) = self.decode_remote(unix, payload) else {
            return;
        };
        // Neither makes the sender a node of the cluster (`revurb restart`
        // is not one, and a node saying goodbye is leaving).
        match env.body {
            Body::Restart => {
                crate::log_debug!("cluster: restart message from {}", env.node);
                self.out.push_back(Output::Restart);
                return;
            }
            Body::Bye => return self.node_left(now, &env.node),
            _ => {}
        }
        let Some(known) = self.hear_from(now, &env) else {
            return;
        };
        if !known {
            crate::log_info!("cluster: node {} joined", env.node);
            if !matches!(env.body, Body::State { .. }) {
                self.publish(Body::Want {
                    to: env.node.clone(),
                });
            }
        }
        self.apply(now, &env.node, env.body);
    }

    /// The envelope of a message from another node; `None` for our own
    /// echo and for anything that is not a revurb message (counted, and
    /// logged in bursts).
    fn decode_remote(&mut self, unix: u64, payload: &[u8]) -> Option<Envelope> {
        let c = self.cluster.as_mut()?;
        if payload.starts_with(&c.own_prefix) {
            return None; // our own echo, already delivered here
        }
        let envelope = c.open(unix, payload)?;
        match Envelope::decode(&envelope) {
            Ok(env) if env.node == c.node => None, // our own, already delivered here
            Ok(env) => Some(env),
            Err(e) => {
                if c.count_bad_message() {
                    crate::log_warn!(
                        "ignored a message on the Redis channel ({} so far): {e}: {}",
                        c.bad_messages,
                        super::truncate_bytes(payload, 120)
                    );
                }
                None
            }
        }
    }

    /// A node said goodbye: forget it and its members now.
    fn node_left(&mut self, now: u64, node: &str) {
        if self
            .cluster
            .as_ref()
            .is_some_and(|c| c.nodes.contains_key(node))
        {
            crate::log_info!("cluster: node {node} left");
            self.replace_state(now, node, BTreeMap::new());
            if let Some(c) = self.cluster.as_mut() {
                // remembered, so its messages replayed do not bring it back
                if let Some(n) = c.nodes.remove(node) {
                    c.retire(node.to_string(), n.seqs);
                }
                c.resync.remove(node);
            }
            self.hooks_nodes_gone(now, Some(node));
        }
    }

    /// Note that the sender of `env` is alive (adding it to the view if
    /// new). Returns whether it was known before, or `None` when the message
    /// must be ignored: a delivery already seen, or a new node past
    /// [`MAX_NODES`].
    fn hear_from(&mut self, now: u64, env: &Envelope) -> Option<bool> {
        let c = self.cluster.as_mut()?;
        let known = c.nodes.contains_key(&env.node);
        if !known && c.nodes.len() + 1 >= MAX_NODES {
            if c.count_bad_message() {
                crate::log_warn!(
                    "ignored a message from node {}: already {MAX_NODES} nodes in the cluster",
                    env.node
                );
            }
            return None;
        }
        let retired = if known {
            None
        } else {
            c.retired
                .iter()
                .position(|(id, _)| *id == env.node)
                .and_then(|i| c.retired.remove(i))
                .map(|(_, seqs)| seqs)
        };
        let node = c.nodes.entry(env.node.clone()).or_insert_with(|| Node {
            last_seen: now,
            seqs: retired.unwrap_or_default(),
            apps: HashMap::new(),
        });
        // Each kind comes in order: a delivery re-sent after a reconnect
        // that had in fact arrived, or any message replayed, has a seq
        // already seen.
        let mark = if env.body.durable() {
            &mut node.seqs.durable
        } else {
            &mut node.seqs.live
        };
        if env.seq <= *mark {
            c.duplicates += 1;
            if !known {
                c.nodes.remove(&env.node); // not heard from after all
                if let Some(seqs) = retired {
                    c.retire(env.node.clone(), seqs);
                }
            }
            return None;
        }
        *mark = env.seq;
        node.last_seen = now;
        c.resync.remove(&env.node);
        Some(known)
    }

    /// What a message from a live node says, applied to this node's view
    /// and clients.
    fn apply(&mut self, now: u64, node: &str, body: Body) {
        match body {
            Body::Heartbeat => {}
            Body::Event {
                app,
                channels,
                event,
                data,
                socket_id,
            } => {
                let Some(app) = self.known_app(&app) else {
                    return;
                };
                self.trigger_local(now, app, &channels, &event, &data, socket_id.as_deref());
            }
            Body::Client {
                app,
                channel,
                event,
                data,
                user_id,
            } => {
                let Some(app) = self.known_app(&app) else {
                    return;
                };
                let json = message::client_event(&event, &channel, &data, user_id.as_ref());
                self.deliver(now, app, &channel, &json, None, Some((&event, &data)));
            }
            body @ (Body::Join { .. } | Body::Leave { .. }) => self.apply_presence(now, node, body),
            Body::Counts {
                app,
                connections,
                channels,
            } => self.apply_counts(now, node, &app, connections, channels),
            Body::State { apps, reply } => {
                self.adopt_caches(now, &apps);
                self.replace_state(now, node, apps);
                self.hooks_state_from(node);
                if reply {
                    let apps = self.local_state(now);
                    self.publish(Body::State { apps, reply: false });
                }
            }
            Body::Want { to } => {
                if self.cluster.as_ref().is_some_and(|c| c.node == to) {
                    self.wanted_after_deafness(now);
                    let apps = self.local_state(now);
                    self.publish(Body::State { apps, reply: false });
                }
            }
            Body::Terminate { app, user_id } => {
                if let Some(app) = self.known_app(&app) {
                    self.terminate_user_local(now, app, &user_id);
                }
            }
            Body::Restart | Body::Bye => {} // handled in `remote`
        }
    }

    /// A `join` or `leave` of a user on `node`.
    fn apply_presence(&mut self, now: u64, node: &str, body: Body) {
        match body {
            Body::Join { channel, .. } | Body::Leave { channel, .. }
                if !channel::Kind::of(&channel).is_presence() =>
            {
                crate::log_warn!(
                    "ignored a presence message from node {node} for {channel:?}, not a presence channel"
                );
            }
            Body::Join {
                app,
                channel,
                member,
            } => {
                let Some(m) = member_from(&member) else {
                    crate::log_warn!("ignored a join from node {node} without a user_id");
                    return;
                };
                let mut ms = self.node_members(node, &app, &channel);
                ms.retain(|x| x.key != m.key);
                ms.push(m);
                self.set_members(now, node, &app, &channel, ms);
                self.hook_remote_count(now, &app, &channel);
            }
            Body::Leave {
                app,
                channel,
                user_id,
            } => {
                let Some(key) = channel::user_key(&user_id) else {
                    return;
                };
                let mut ms = self.node_members(node, &app, &channel);
                ms.retain(|x| x.key != key);
                self.set_members(now, node, &app, &channel, ms);
                self.hook_remote_count(now, &app, &channel);
            }
            _ => {}
        }
    }

    /// `counts` from `node`: its open connections of an app and the
    /// subscribers of the channels that changed (0: gone there).
    fn apply_counts(
        &mut self,
        now: u64,
        node: &str,
        app: &str,
        connections: u64,
        channels: BTreeMap<String, u64>,
    ) {
        let hooked = self.hooks_app(app);
        if let Some(a) = self.remote_app_mut(node, app) {
            a.connections = connections;
            for (name, &n) in &channels {
                if !channel::valid_api_name(name) {
                    continue;
                }
                if n == 0 {
                    a.subs.remove(name);
                } else {
                    a.subs.insert(name.clone(), n);
                }
            }
            for name in channels.keys() {
                self.remote_subscribers_changed(app, name);
            }
            if let Some(hooked) = hooked {
                for name in channels.keys() {
                    self.hook_count(now, hooked, name);
                }
            }
        }
    }

    fn known_app(&self, app_id: &str) -> Option<AppId> {
        let found = self.app_by_id(app_id);
        if found.is_none() {
            crate::log_debug!(
                "cluster: a message for app {app_id:?}, which this node does not have"
            );
        }
        found
    }

    /// What `node` holds of an app this node also has (others are ignored,
    /// so nothing on the channel can grow the view without bound).
    fn remote_app_mut(&mut self, node: &str, app_id: &str) -> Option<&mut RemoteApp> {
        self.app_by_id(app_id)?;
        let n = self.cluster.as_mut()?.nodes.get_mut(node)?;
        Some(n.apps.entry(app_id.to_string()).or_default())
    }

    fn node_members(&self, node: &str, app_id: &str, channel: &str) -> Vec<Rc<Member>> {
        self.cluster
            .as_ref()
            .and_then(|c| c.nodes.get(node))
            .and_then(|n| n.apps.get(app_id))
            .and_then(|a| a.members.get(channel))
            .cloned()
            .unwrap_or_default()
    }

    /// Replace what `node` has in a presence channel, telling local
    /// subscribers about users who became or stopped being members.
    fn set_members(
        &mut self,
        now: u64,
        node: &str,
        app_id: &str,
        channel: &str,
        new: Vec<Rc<Member>>,
    ) {
        let old = self.node_members(node, app_id, channel);
        let local = self.app_by_id(app_id);
        let elsewhere = |hub: &Hub, key: &str| {
            let here = local.is_some_and(|app| {
                hub.apps[app]
                    .channels
                    .get(channel)
                    .and_then(|c| c.presence.as_ref())
                    .is_some_and(|p| p.has_user(key))
            });
            here || hub
                .cluster
                .as_ref()
                .is_some_and(|c| c.has_user(app_id, channel, key, Some(node)))
        };
        let mut changes = Vec::new();
        for m in &new {
            if !old.iter().any(|o| o.key == m.key) && !elsewhere(self, &m.key) {
                changes.push((m.clone(), true));
            }
        }
        for o in &old {
            if !new.iter().any(|m| m.key == o.key) && !elsewhere(self, &o.key) {
                changes.push((o.clone(), false));
            }
        }
        if let Some(a) = self.remote_app_mut(node, app_id) {
            if new.is_empty() {
                a.members.remove(channel);
            } else {
                a.members.insert(channel.to_string(), new);
            }
        }
        if let Some(app) = local {
            for (m, added) in changes {
                self.announce_member(now, app, channel, &m, added, None);
            }
        }
    }

    /// The channels `node` has, of apps with webhooks (their counts change
    /// when its view is replaced).
    fn hooks_node_channels(&self, node: &str) -> Vec<(AppId, String)> {
        let mut out = Vec::new();
        let Some(n) = self.cluster.as_ref().and_then(|c| c.nodes.get(node)) else {
            return out;
        };
        for (id, a) in &n.apps {
            if let Some(app) = self.hooks_app(id) {
                let names = a.subs.keys().chain(a.members.keys());
                out.extend(names.map(|ch| (app, ch.clone())));
            }
        }
        out
    }

    /// Take the cached events of another node's state that are newer than
    /// ours (they expire later), so a node that joins late has them too.
    fn adopt_caches(&mut self, now: u64, apps: &BTreeMap<String, WireApp>) {
        for (app_id, w) in apps {
            let Some(app) = self.app_by_id(app_id) else {
                continue;
            };
            for (name, c) in &w.cache {
                let kind = channel::Kind::of(name);
                if !kind.cache || !channel::valid_name(name) {
                    continue;
                }
                let expires_at = now + c.ttl_ms.min(channel::CACHE_TTL_MS);
                let key = self.channel_key(app, name);
                let ch = self.apps[app]
                    .channels
                    .entry(key)
                    .or_insert_with(|| channel::Channel::new(name));
                if ch
                    .cached(now)
                    .is_some_and(|mine| mine.expires_at >= expires_at)
                {
                    continue;
                }
                ch.cache = Some(Box::new(channel::Cached {
                    event: c.event.clone(),
                    data: c.data.clone(),
                    message: websocket::text_frame(c.message.as_bytes()).into(),
                    expires_at,
                }));
                self.next_cache_sweep = Some(
                    self.next_cache_sweep
                        .map_or(expires_at, |t| t.min(expires_at)),
                );
            }
        }
    }

    /// A full state from `node`: replace its view.
    fn replace_state(&mut self, now: u64, node: &str, apps: BTreeMap<String, WireApp>) {
        // the channels it had before and has now may have changed
        let mut touched: Vec<(String, String)> = Vec::new();
        if let Some(n) = self.cluster.as_ref().and_then(|c| c.nodes.get(node)) {
            for (app, a) in &n.apps {
                touched.extend(a.subs.keys().map(|ch| (app.clone(), ch.clone())));
            }
        }
        for (app, a) in &apps {
            touched.extend(a.channels.keys().map(|ch| (app.clone(), ch.clone())));
        }
        // and, of apps with webhooks, their members' channels too
        let mut recount = self.hooks_node_channels(node);
        for (id, a) in &apps {
            if let Some(app) = self.hooks_app(id) {
                let names = a.channels.keys().chain(a.members.keys());
                recount.extend(names.map(|ch| (app, ch.clone())));
            }
        }
        self.replace_view(now, node, apps);
        for (app, ch) in touched {
            self.remote_subscribers_changed(&app, &ch);
        }
        recount.sort();
        recount.dedup();
        for (app, ch) in recount {
            self.hook_count(now, app, &ch);
        }
    }

    fn replace_view(&mut self, now: u64, node: &str, apps: BTreeMap<String, WireApp>) {
        // presence channels it had before or has now
        let mut channels: Vec<(String, String)> = Vec::new();
        if let Some(n) = self.cluster.as_ref().and_then(|c| c.nodes.get(node)) {
            for (app, a) in &n.apps {
                channels.extend(a.members.keys().map(|ch| (app.clone(), ch.clone())));
            }
        }
        for (app, a) in &apps {
            let presence = a
                .members
                .keys()
                .filter(|ch| channel::Kind::of(ch).is_presence());
            channels.extend(presence.map(|ch| (app.clone(), ch.clone())));
        }
        channels.sort();
        channels.dedup();
        for (app, ch) in channels {
            let ms = apps
                .get(&app)
                .and_then(|a| a.members.get(&ch))
                .map(|ms| ms.iter().filter_map(member_from).collect())
                .unwrap_or_default();
            self.set_members(now, node, &app, &ch, ms);
        }
        let keep: HashSet<&String> = apps.keys().collect();
        if let Some(n) = self.cluster.as_mut().and_then(|c| c.nodes.get_mut(node)) {
            n.apps.retain(|id, _| keep.contains(id)); // apps it no longer has
        }
        for (app_id, w) in apps {
            if let Some(a) = self.remote_app_mut(node, &app_id) {
                a.connections = w.connections;
                a.subs = w
                    .channels
                    .into_iter()
                    .filter(|(name, n)| *n > 0 && channel::valid_api_name(name))
                    .collect();
            }
        }
    }

    /// Drop nodes not heard from within the timeout, and send heartbeats.
    pub(super) fn cluster_timeout(&mut self, now: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.link_up {
            return;
        }
        if now >= c.next_heartbeat {
            c.next_heartbeat = now + c.heartbeat_ms;
            self.publish(Body::Heartbeat);
        }
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let timeout = c.timeout_ms;
        if let Some(echo) = c.echo_at
            && c.deaf_since.is_none()
            && now >= echo + timeout / DEAF_FRACTION
        {
            c.deaf_since = Some(echo);
            crate::log_warn!(
                "cluster: none of this node's messages came back from Redis for {} ms; dropping no node until they do (is Redis, a proxy before it, or this process stalled?)",
                now - echo
            );
            return;
        }
        if c.deaf_since.is_some() {
            return; // the view stays frozen until our messages come back
        }
        let dead: Vec<String> = c
            .nodes
            .iter()
            .filter(|(_, n)| n.last_seen + timeout <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut gone = false;
        for id in dead {
            crate::log_warn!(
                "cluster: node {id} silent for {} s; its connections and members are gone",
                timeout / 1000
            );
            self.replace_state(now, &id, BTreeMap::new());
            if let Some(c) = self.cluster.as_mut()
                && let Some(n) = c.nodes.remove(&id)
            {
                c.retire(id, n.seqs);
            }
            gone = true;
        }
        if gone {
            self.hooks_nodes_gone(now, None);
        }
    }

    pub(super) fn cluster_poll_timeout(&self) -> Option<u64> {
        let c = self.cluster.as_ref()?;
        if !c.link_up {
            return None;
        }
        let expiry = match (c.deaf_since, c.echo_at) {
            (Some(_), _) => None, // nobody expires while deaf
            (None, echo) => {
                let nodes = c.nodes.values().map(|n| n.last_seen + c.timeout_ms);
                nodes
                    .chain(echo.map(|t| t + c.timeout_ms / DEAF_FRACTION))
                    .min()
            }
        };
        let resync = (!c.resync.is_empty()).then_some(c.resync_until);
        [Some(c.next_heartbeat), expiry, resync]
            .into_iter()
            .flatten()
            .min()
    }
}

/// This node's cluster identity and its view of the others as plain data,
/// for the upgrade's hand-over (`handover`): the new process keeps the node
/// id and goes on with the seq counter, so the others see no departure and
/// take its messages as new; it keeps what it knew of each node, so their
/// `state` replies change nothing that clients would hear.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterExport {
    pub node: String,
    pub seq: u64,
    /// When the node first started (Unix ms): the new image keeps it, so
    /// that what the others signed during the switch is not refused as
    /// older than the node (replays are refused by the seq marks kept).
    #[serde(default)]
    pub started: u64,
    pub nodes: Vec<NodeExport>,
    /// (node, durable seq, live seq) of nodes dropped lately.
    pub retired: Vec<(String, u64, u64)>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeExport {
    pub id: String,
    pub last_seen: u64,
    pub durable: u64,
    pub live: u64,
    /// (app id, connections, (channel, subscribers), (channel, members' channel_data))
    pub apps: Vec<RemoteAppExport>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteAppExport {
    pub app: String,
    pub connections: u64,
    pub subs: Vec<(String, u64)>,
    pub members: Vec<(String, Vec<Value>)>,
}

impl Hub {
    pub(super) fn cluster_export(&self) -> Option<ClusterExport> {
        let c = self.cluster.as_ref()?;
        let mut nodes: Vec<NodeExport> = c
            .nodes
            .iter()
            .map(|(id, n)| {
                let mut apps: Vec<RemoteAppExport> = n
                    .apps
                    .iter()
                    .map(|(app, a)| RemoteAppExport {
                        app: app.clone(),
                        connections: a.connections,
                        subs: a.subs.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                        members: a
                            .members
                            .iter()
                            .map(|(k, ms)| (k.clone(), ms.iter().map(|m| m.data.clone()).collect()))
                            .collect(),
                    })
                    .collect();
                apps.sort_by(|a, b| a.app.cmp(&b.app));
                NodeExport {
                    id: id.clone(),
                    last_seen: n.last_seen,
                    durable: n.seqs.durable,
                    live: n.seqs.live,
                    apps,
                }
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Some(ClusterExport {
            node: c.node.clone(),
            seq: c.seq,
            started: c.bus.started,
            nodes,
            retired: c
                .retired
                .iter()
                .map(|(id, s)| (id.clone(), s.durable, s.live))
                .collect(),
        })
    }

    /// Take the identity and view of the hand-over (scaling must be on;
    /// the bus and key are this process's). At most [`MAX_NODES`] nodes,
    /// only valid members; the rest is dropped.
    pub(super) fn cluster_import(&mut self, e: &ClusterExport) {
        let Some(old) = self.cluster.take() else {
            return;
        };
        let old = *old;
        let seal = Rc::try_unwrap(old.seal).unwrap_or_else(|rc| (*rc).clone());
        let mut bus = old.bus;
        if e.started > 0 {
            bus.started = bus.started.min(e.started);
        }
        let mut c = Cluster::new(e.node.clone(), old.timeout_ms, bus, seal);
        c.seq = e.seq;
        for n in e.nodes.iter().take(MAX_NODES) {
            if n.id == e.node {
                continue;
            }
            let mut apps = HashMap::new();
            for a in &n.apps {
                let members = a
                    .members
                    .iter()
                    .map(|(ch, ms)| (ch.clone(), ms.iter().filter_map(member_from).collect()))
                    .collect();
                let remote = RemoteApp {
                    connections: a.connections,
                    subs: a.subs.iter().cloned().collect(),
                    members,
                };
                apps.insert(a.app.clone(), remote);
            }
            let node = Node {
                last_seen: n.last_seen,
                seqs: Seqs {
                    durable: n.durable,
                    live: n.live,
                },
                apps,
            };
            c.nodes.insert(n.id.clone(), node);
        }
        for (id, durable, live) in e.retired.iter().take(RETIRED_NODES) {
            c.retired.push_back((
                id.clone(),
                Seqs {
                    durable: *durable,
                    live: *live,
                },
            ));
        }
        self.cluster = Some(Box::new(c));
    }
}

/// The `join` message for a user's first connection here.
pub(super) fn join_body(app_id: &str, channel: &str, m: &Member) -> Body {
    Body::Join {
        app: app_id.to_string(),
        channel: channel.to_string(),
        member: m.data.clone(),
    }
}

/// The `leave` message for a user's last connection here.
pub(super) fn leave_body(app_id: &str, channel: &str, m: &Member) -> Body {
    Body::Leave {
        app: app_id.to_string(),
        channel: channel.to_string(),
        user_id: m.user_id.clone(),
    }
}

#[cfg(test)]
mod tests;

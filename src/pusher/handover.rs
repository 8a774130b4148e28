//! The hub as plain data, for `revurb upgrade` (issue 14): [`Hub::export`]
//! turns every live connection and what the hub knows of it into a
//! [`HubState`], and [`Hub::import`] rebuilds a fresh hub from one, so the
//! new process goes on where the old one stopped: the same `ConnId`s
//! (slot and generation, which the loop's slab restores too) and socket
//! ids, the channels in their subscriber order, each presence membership
//! with its `channel_data` and the users in order of arrival, the signed-in
//! user and the watchlists, the rate-limit windows, the ping and
//! authorization deadlines, the cache channels' last events, the webhook
//! state machines and the node's cluster identity and view.
//!
//! Times are the loop's clock: the new process starts its clock where the
//! old one was (`event_loop`'s hand-over carries it), so a deadline needs
//! no conversion.
//!
//! What the hub does not carry: the output queue (the loop drains it before
//! exporting, so it is empty), the subscription counts last told to
//! subscribers (the next change sends the count again), the per-turn cache
//! misses and the hand-off records of webhook events other nodes own, and
//! the statistics (counters start again, as after any start).
//!
//! Importing fires nothing: no `member_added`, no webhook, no cluster
//! message. The file is read as untrusted input: [`HubState::check`]
//! refuses another version, a slot or generation out of range, a slot or
//! socket id twice, a subscriber that is not a live connection and
//! anything over the bounds below, so a corrupt file fails the upgrade's
//! preflight instead of the new process.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
use super::App;
use super::channel::{self, Cached, Channel, Member, Presence};
use super::cluster::ClusterExport;
use super::watchlist::{WatchExport, Watchlists};
use super::webhooks::HooksExport;
use super::{Conn, ConnId, Hub, MAX_CHANNELS_PER_CONNECTION, format_socket_id};

/// The version of [`HubState`]; another is refused.
pub const VERSION: u32 = 1;
/// Highest slot a handed-over connection may have: the loop's slab has
/// no more slots than connections were ever open at once, which is below
/// the open-files limit, which Linux caps at `nr_open` (1 048 576 unless
/// raised). It bounds what a corrupt file can make the new image allocate.
pub const MAX_SLOT: u32 = 1 << 20;
/// Longest channel name accepted (the hub's own are far shorter).
const MAX_CHANNEL_NAME_BYTES: usize = 4096;
/// Largest cached frame carried (the API's own limits are far below).
const MAX_CACHED_FRAME: usize = 16 * 1024 * 1024;

/// Everything the hub hands over (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubState {
    pub version: u32,
    pub rng: u64,
    pub conns: Vec<ConnState>,
    pub apps: Vec<AppChannels>,
    /// (slot, generation, deadline) of connections that must still authorize.
    pub authorization: Vec<(u32, u32, u64)>,
    /// Webhook settling is over; the Redis link has been up.
    pub hooks_settled: bool,
    pub hooks_linked: bool,
    pub cluster: Option<ClusterExport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnState {
    pub slot: u32,
    pub generation: u32,
    /// The app's id (not its index: the new configuration may order apps
    /// differently).
    pub app: String,
    pub socket_id: u64,
    pub last_seen: u64,
    pub pinged_at: Option<u64>,
    pub control_frames: bool,
    pub channels: Vec<String>,
    pub user: Option<String>,
    pub rate_window_start: u64,
    pub rate_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppChannels {
    pub app: String,
    pub channels: Vec<ChannelState>,
    pub watch: WatchExport,
    pub hooks: Option<HooksExport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelState {
    pub name: String,
    /// Subscribers in their order in the channel's dense list.
    pub subs: Vec<(u32, u32)>,
    /// Presence: each subscriber's `channel_data`.
    pub members: Vec<((u32, u32), Value)>,
    /// Presence: user keys in order of arrival.
    pub users: Vec<String>,
    pub cache: Option<CacheState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheState {
    pub event: String,
    pub data: String,
    /// The frame replayed to new subscribers, hex.
    pub frame: String,
    pub expires_at: u64,
}

/// What [`Hub::import`] could not take: connections of apps the new
/// configuration no longer has, for the loop to close with 4200.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub orphans: Vec<ConnId>,
}

impl HubState {
    /// Refuse what this version cannot take safely (see the module docs).
    pub fn check(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "hand-over format version {} (this binary reads version {VERSION})",
                self.version
            ));
        }
        let mut slots = HashSet::new();
        let mut sockets = HashSet::new();
        for c in &self.conns {
            if c.slot >= MAX_SLOT {
                return Err(format!("connection slot {} out of range", c.slot));
            }
            if !slots.insert(c.slot) {
                return Err(format!("connection slot {} twice", c.slot));
            }
            if !sockets.insert(c.socket_id) {
                return Err(format!("socket id {} twice", format_socket_id(c.socket_id)));
            }
            if c.channels.len() > MAX_CHANNELS_PER_CONNECTION + 1 {
                return Err(format!("connection {} has too many channels", c.slot));
            }
        }
        let live: HashSet<(u32, u32)> = self.conns.iter().map(|c| (c.slot, c.generation)).collect();
        for a in &self.apps {
            for ch in &a.channels {
                // any name the hub may hold (a signed-in user's channel
                // carries the user id as given), bounded
                if ch.name.is_empty() || ch.name.len() > MAX_CHANNEL_NAME_BYTES {
                    return Err(format!("invalid channel name {:?}", ch.name));
                }
                if let Some(id) = ch
                    .subs
                    .iter()
                    .chain(ch.members.iter().map(|(id, _)| id))
                    .find(|id| !live.contains(id))
                {
                    return Err(format!("channel {} names no connection {id:?}", ch.name));
                }
                if ch
                    .cache
                    .as_ref()
                    .is_some_and(|c| c.frame.len() > 2 * MAX_CACHED_FRAME)
                {
                    return Err(format!("cached event of {} too large", ch.name));
                }
            }
        }
        Ok(())
    }
}

impl Hub {
    /// Whether `conn` is a live connection of the hub (the loop closes a
    /// handed-over WebSocket the hub did not take).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conn(conn).is_some()
    }

    /// The hub as plain data. The loop drains [`Hub::poll_output`] first:
    /// queued output is not part of it.
    pub fn export(&self) -> HubState {
        let id = |c: ConnId| (c.slot() as u32, c.generation());
        let conns = self
            .conns
            .iter()
            .flatten()
            .map(|c| ConnState {
                slot: c.id.slot() as u32,
                generation: c.id.generation(),
                app: self.apps[c.app].config.id.clone(),
                socket_id: c.socket_id,
                last_seen: c.last_seen,
                pinged_at: c.pinged_at,
                control_frames: c.control_frames,
                channels: c.channels.iter().map(|n| n.to_string()).collect(),
                user: c.user.as_ref().map(|u| u.to_string()),
                rate_window_start: c.rate_window_start,
                rate_count: c.rate_count,
            })
            .collect();
        let apps = (0..self.apps.len())
            .map(|app| {
                let a = &self.apps[app];
                let mut channels: Vec<ChannelState> = a
                    .channels
                    .iter()
                    .map(|(name, ch)| {
                        let (members, users) = match &ch.presence {
                            Some(p) => {
                                let mut members: Vec<_> = p
                                    .by_conn
                                    .iter()
                                    .map(|(c, m)| (id(*c), m.data.clone()))
                                    .collect();
                                members.sort_by_key(|(c, _)| *c);
                                let users = p.users.iter().map(|(m, _)| m.key.clone()).collect();
                                (members, users)
                            }
                            None => (Vec::new(), Vec::new()),
                        };
                        ChannelState {
                            name: name.to_string(),
                            subs: ch.subs.iter().map(|c| id(*c)).collect(),
                            members,
                            users,
                            cache: ch.cache.as_ref().map(|k| CacheState {
                                event: k.event.clone(),
                                data: k.data.clone(),
                                frame: hex::encode(&k.message),
                                expires_at: k.expires_at,
                            }),
                        }
                    })
                    .collect();
                channels.sort_by(|a, b| a.name.cmp(&b.name));
                AppChannels {
                    app: a.config.id.clone(),
                    channels,
                    watch: a.watch.export(),
                    hooks: self.hooks_export(app),
                }
            })
            .collect();
        let mut authorization: Vec<(u32, u32, u64)> = self
            .authorization
            .waiting()
            .map(|(c, t)| (c.slot() as u32, c.generation(), t))
            .collect();
        authorization.sort();
        let (hooks_settled, hooks_linked) = self.hooks_export_flags();
        HubState {
            version: VERSION,
            rng: self.rng,
            conns,
            apps,
            authorization,
            hooks_settled,
            hooks_linked,
            cluster: self.cluster_export(),
        }
    }

    /// Take over a hand-over into this fresh hub (no connections yet; its
    /// apps, and scaling if on, come from the new configuration). Nothing
    /// is sent. Connections of an app the configuration no longer has are
    /// returned for the loop to close.
    pub fn import(&mut self, now: u64, state: HubState) -> Result<Imported, String> {
        state.check()?;
        if self.conns.iter().any(Option::is_some) {
            return Err("the hub already has connections".into());
        }
        let _ = now;
        self.rng = state.rng;
        let mut imported = Imported::default();
        let mut live: HashMap<(u32, u32), usize> = HashMap::new();
        let mut lists: Vec<(ConnId, usize, Vec<String>)> = Vec::new();
        for c in state.conns {
            let conn = ConnId::new(c.slot, c.generation);
            let Some(app) = self.app_by_id(&c.app) else {
                imported.orphans.push(conn);
                continue;
            };
            if self.conns.len() <= conn.slot() {
                self.conns.resize_with(conn.slot() + 1, || None);
            }
            self.conns[conn.slot()] = Some(Conn {
                id: conn,
                app,
                socket_id: c.socket_id,
                last_seen: c.last_seen,
                pinged_at: c.pinged_at,
                control_frames: c.control_frames,
                channels: Vec::new(),
                user: c.user.as_deref().map(Rc::from),
                rate_window_start: c.rate_window_start,
                rate_count: c.rate_count,
            });
            self.by_socket.insert(c.socket_id, conn);
            self.apps[app].connections += 1;
            let interval = self.apps[app].config.ping_interval * 1000;
            let due = c.pinged_at.unwrap_or(c.last_seen) + interval;
            self.timers
                .push(std::cmp::Reverse((due, conn, c.socket_id)));
            live.insert((c.slot, c.generation), app);
            lists.push((conn, app, c.channels));
        }
        let mut hooks = vec![None; self.apps.len()];
        for a in state.apps {
            let Some(app) = self.app_by_id(&a.app) else {
                continue;
            };
            for ch in a.channels {
                self.import_channel(app, ch, &live);
            }
            let alive = |c: ConnId| live.get(&(c.slot() as u32, c.generation())) == Some(&app);
            self.apps[app].watch = Watchlists::import(&a.watch, alive);
            hooks[app] = a.hooks;
        }
        // each connection's channels in its own order, those it is in
        for (conn, app, names) in lists {
            let keys: Vec<Rc<str>> = names
                .iter()
                .filter_map(|n| self.apps[app].channels.get_key_value(n.as_str()))
                .filter(|(_, ch)| ch.contains(conn))
                .map(|(k, _)| k.clone())
                .collect();
            if let Some(c) = self.conns.get_mut(conn.slot()).and_then(Option::as_mut) {
                c.channels = keys;
            }
        }
        for (slot, generation, deadline) in state.authorization {
            if live.contains_key(&(slot, generation)) {
                self.authorization
                    .resume(ConnId::new(slot, generation), deadline);
            }
        }
        if let Some(c) = &state.cluster {
            self.cluster_import(c);
        }
        self.hooks_import(state.hooks_settled, state.hooks_linked, hooks);
        self.next_cache_sweep = self
            .apps
            .iter()
            .flat_map(|a| a.channels.values())
            .filter_map(|c| c.cache.as_ref().map(|k| k.expires_at))
            .min();
        // whatever the rebuilding queued is not for anyone
        self.out.clear();
        Ok(imported)
    }

    /// One channel of the hand-over: its subscribers that are live
    /// connections of `app`, in order, with their presence entries.
    fn import_channel(&mut self, app: usize, ch: ChannelState, live: &HashMap<(u32, u32), usize>) {
        let key: Rc<str> = Rc::from(ch.name.as_str());
        let mut channel = Channel::new(&ch.name);
        let mine = |id: &(u32, u32)| live.get(id) == Some(&app);
        for id in ch.subs.iter().filter(|id| mine(id)) {
            channel.add(ConnId::new(id.0, id.1));
        }
        if channel.presence.is_some() {
            let mut by_key: HashMap<String, (Rc<Member>, u32)> = HashMap::new();
            let mut presence = Presence::default();
            for (id, data) in ch.members.iter().filter(|(id, _)| mine(id)) {
                let conn = ConnId::new(id.0, id.1);
                let Some(key) = data.get("user_id").and_then(channel::user_key) else {
                    continue;
                };
                if !channel.contains(conn) {
                    continue;
                }
                let entry = by_key.entry(key.clone()).or_insert_with(|| {
                    let m = Rc::new(Member {
                        user_id: data.get("user_id").cloned().unwrap_or(Value::Null),
                        key,
                        data: data.clone(),
                    });
                    (m, 0)
                });
                entry.1 += 1;
                presence.by_conn.insert(conn, entry.0.clone());
            }
            for user in &ch.users {
                if let Some(entry) = by_key.remove(user) {
                    presence.users.push(entry);
                }
            }
            // users the order did not name go last
            let mut rest: Vec<_> = by_key.into_values().collect();
            rest.sort_by(|a, b| a.0.key.cmp(&b.0.key));
            presence.users.extend(rest);
            channel.presence = Some(Box::new(presence));
        }
        if let Some(k) = ch.cache
            && let Ok(frame) = hex::decode(&k.frame)
        {
            channel.cache = Some(Box::new(Cached {
                event: k.event,
                data: k.data,
                message: frame.into(),
                expires_at: k.expires_at,
            }));
        }
        if !channel.is_empty() || channel.cache.is_some() {
            self.apps[app].channels.insert(key, channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::*;
    use super::*;

    const ALICE: &str = r#"{"user_id":"1","user_info":{"name":"Alice"}}"#;
    const BOB: &str = r#"{"user_id":2,"user_info":{"name":"Bob"}}"#;

    /// A hub with a connection on every kind of channel, a signed-in user
    /// watching another, a cached event and a ping in flight.
    fn busy() -> Sim {
        let mut sim = Sim::with(|a| a.webhooks = Vec::new());
        for c in 1..=5 {
            sim.connect(c);
        }
        sim.join(1, "public", None);
        sim.join(2, "presence-room", Some(ALICE));
        sim.join(3, "presence-room", Some(BOB));
        sim.join(4, "private-encrypted-x", None);
        sim.join(1, "cache-news", None);
        sim.signin(5, r#"{"id":"9","watchlist":["1","2"]}"#);
        sim.trigger(&["cache-news"], "breaking", "{}", None);
        sim.advance(1000);
        sim.drain();
        sim
    }

    /// Swap node 0's hub for a fresh one that imported the old one's export.
    fn upgrade(sim: &mut Sim) -> HubState {
        let state = sim.hub(0).export();
        let text = serde_json::to_string(&state).expect("serializes");
        let back: HubState = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, state, "the JSON round trip loses nothing");
        let mut fresh = Hub::new(vec![app()], 0xfeed, false);
        let now = sim.now;
        let imported = fresh.import(now, back).expect("imports");
        assert_eq!(imported, Imported::default());
        *sim.hub(0) = fresh;
        state
    }

    #[test]
    fn an_imported_hub_exports_the_same_state() {
        let mut sim = busy();
        let before = upgrade(&mut sim);
        assert_eq!(sim.hub(0).export(), before);
    }

    #[test]
    fn an_imported_hub_sends_nothing_and_behaves_the_same() {
        let mut sim = busy();
        let sids: Vec<String> = (1..=5).map(|c| sim.sid(c)).collect();
        let users = sim.users(0, "presence-room");
        let info = sim.info(0, "presence-room", &["user_count", "subscription_count"]);
        upgrade(&mut sim);
        assert_eq!(sim.drain(), vec![], "no member events, nothing at all");
        // the same socket ids answer to the same connections
        for (c, sid) in (1..=5).zip(&sids) {
            assert_eq!(
                sim.hub(0)
                    .export()
                    .conns
                    .iter()
                    .find(|s| s.slot == c as u32)
                    .map(|s| format_socket_id(s.socket_id)),
                Some(sid.clone())
            );
        }
        assert_eq!(sim.users(0, "presence-room"), users);
        assert_eq!(
            sim.info(0, "presence-room", &["user_count", "subscription_count"]),
            info
        );
        // an event reaches the subscribers, once
        sim.trigger(&["presence-room"], "e", "{}", None);
        let out = sim.drain();
        assert_eq!(out.len(), 2, "{out:?}");
        // a newcomer sees both members and the cached event
        sim.connect(6);
        let joined = sim.join(6, "presence-room", Some(r#"{"user_id":"3"}"#));
        let mine = only(&joined, At::from(6));
        assert!(mine[0].contains(r#"\"count\":3"#), "{mine:?}");
        sim.join(6, "cache-news", None);
        sim.drain();
        // leaving is heard as before the upgrade
        sim.close(3);
        let out = sim.drain();
        assert!(
            out.iter()
                .any(|(at, m)| *at == 2 && m.contains("member_removed")),
            "{out:?}"
        );
    }

    #[test]
    fn pings_are_due_when_they_were() {
        let mut a = busy();
        let mut b = busy();
        upgrade(&mut b);
        assert_eq!(a.hub(0).poll_timeout(), b.hub(0).poll_timeout());
        let ping = a.app_of(1).ping_interval * 1000;
        a.advance(ping);
        b.advance(ping);
        let (mut x, mut y) = (a.drain(), b.drain());
        x.sort();
        y.sort();
        assert!(!x.is_empty());
        assert_eq!(x, y);
    }

    #[test]
    fn another_version_or_a_corrupt_state_is_refused() {
        let mut sim = busy();
        let mut state = sim.hub(0).export();
        state.version = VERSION + 1;
        let mut fresh = Hub::new(vec![app()], 1, false);
        assert!(
            fresh
                .import(0, state.clone())
                .unwrap_err()
                .contains("version")
        );
        state.version = VERSION;
        let mut twice = state.clone();
        let dup = twice.conns[0].clone();
        twice.conns.push(dup);
        assert!(fresh.import(0, twice).is_err());
        let mut stray = state.clone();
        stray.apps[0].channels[0].subs.push((999, 0));
        assert!(fresh.import(0, stray).is_err());
        for bad in ["", "{", "[]", r#"{"version":1}"#] {
            assert!(serde_json::from_str::<HubState>(bad).is_err());
        }
    }

    #[test]
    fn connections_of_a_removed_app_are_returned() {
        let mut sim = busy();
        let state = sim.hub(0).export();
        let mut other = App::new("other", "k", "s");
        other.webhooks = Vec::new();
        let mut fresh = Hub::new(vec![other], 1, false);
        let imported = fresh.import(sim.now, state).expect("imports");
        assert_eq!(imported.orphans.len(), 5);
        assert!(fresh.poll_output().is_none());
    }

    #[test]
    fn a_node_upgraded_in_a_cluster_keeps_its_identity_and_nobody_hears_a_thing() {
        let mut sim = Sim::cluster(2);
        sim.connect((0, 1));
        sim.connect((1, 1));
        sim.join((0, 1), "presence-room", Some(ALICE));
        sim.pump();
        sim.join((1, 1), "presence-room", Some(BOB));
        sim.pump();
        sim.advance(100);
        sim.drain();
        let state = sim.hub(0).export();
        let cluster = state.cluster.clone().expect("scaling is on");
        assert_eq!(cluster.node, "node0");
        assert!(cluster.seq > 0);
        assert_eq!(cluster.nodes.len(), 1, "{cluster:?}");
        // the new image: a fresh hub with a fresh node id, then the import
        let now = sim.now;
        let mut fresh = Hub::new(vec![app()], 0xfeed, false);
        fresh.enable_cluster("fresh".into(), TIMEOUT, bus(now));
        fresh.import(now, state).expect("imports");
        assert_eq!(fresh.cluster().map(|c| c.node.as_str()), Some("node0"));
        *sim.hub(0) = fresh;
        // the link comes up: state both ways, and no client hears anything
        sim.link_up(0);
        sim.pump();
        sim.advance(TIMEOUT);
        assert_eq!(sim.drain(), vec![], "no member events on either node");
        assert_eq!(sim.hub(1).cluster_nodes(), 2);
        // events flow both ways, once
        sim.trigger_on(1, &["presence-room"], "e", "{}", None);
        sim.pump();
        let out = sim.drain();
        assert_eq!(out.len(), 2, "{out:?}");
        sim.trigger_on(0, &["presence-room"], "f", "{}", None);
        sim.pump();
        let out = sim.drain();
        assert_eq!(out.len(), 2, "{out:?}: node 1 takes node0's new seqs");
    }

    #[test]
    fn webhook_delays_carry_over_and_nothing_is_reported_again() {
        use crate::webhook::{Filter, Kind, Url, Webhook};
        let hooked = || {
            let mut a = app();
            a.webhooks = vec![Webhook {
                url: Url::parse("http://127.0.0.1:9/hook").expect("url"),
                event_types: [
                    Kind::ChannelOccupied,
                    Kind::ChannelVacated,
                    Kind::MemberAdded,
                    Kind::MemberRemoved,
                ]
                .into_iter()
                .collect(),
                filter: Filter::default(),
                headers: Vec::new(),
                batching: false,
            }];
            a.webhook_delay_ms = 3000;
            a
        };
        let mut sim = Sim::with_apps(vec![hooked()]);
        sim.connect(1);
        sim.connect(2);
        sim.join(1, "presence-room", Some(ALICE));
        sim.join(2, "public", None);
        sim.advance(10);
        let first: Vec<_> = sim.take_webhooks();
        assert_eq!(first.len(), 3, "{first:?}");
        sim.close(2);
        sim.advance(1000);
        assert_eq!(sim.take_webhooks(), vec![], "vacated waits for its delay");
        let now = sim.now;
        let state = sim.hub(0).export();
        let mut fresh = Hub::new(vec![hooked()], 7, false);
        fresh.import(now, state).expect("imports");
        *sim.hub(0) = fresh;
        sim.advance(10);
        assert_eq!(sim.take_webhooks(), vec![], "nothing reported again");
        sim.advance(2000);
        let late = sim.take_webhooks();
        assert_eq!(late.len(), 1, "{late:?}");
        assert_eq!(late[0].1.kind, Kind::ChannelVacated);
        assert_eq!(&*late[0].1.channel, "public");
    }

    /// Found by the `handover` fuzz target: a signed-in user's id may hold
    /// any character, and its channel's name must not fail the check.
    #[test]
    fn any_user_id_a_signin_accepts_is_handed_over() {
        let mut sim = Sim::new();
        sim.connect(1);
        let id = format!("{}\n;x", "f".repeat(200));
        sim.signin(1, &serde_json::json!({ "id": id }).to_string());
        sim.drain();
        let state = sim.hub(0).export();
        assert_eq!(state.check(), Ok(()));
        assert_eq!(state.conns[0].user.as_deref(), Some(id.as_str()));
    }
}

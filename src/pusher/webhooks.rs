//! What the app's webhooks are told, and when: the hub's half of webhooks.
//! It decides *what* happened and *when* and yields
//! [`Output::Webhook`]; how it is sent (queues, batching, retries, the HTTP
//! client) is `crate::webhook`'s and the loop's.
//!
//! Nothing here exists for an app without webhooks: its `AppState::hooks` is
//! `None`, every hook returns at that check, and nothing is allocated. For
//! an app with webhooks, state is kept only for what one of them wants
//! (`App::wants_webhook`: its event types and its channel filter).
//!
//! # The events
//!
//! - `channel_occupied` when a channel's subscriber count, cluster-wide
//!   (this node's subscribers and those of every other node in its view),
//!   goes from 0 to 1 or more; `channel_vacated` when it reaches 0 and stays
//!   0 for the app's `webhook_delay_ms`. Occupied again within the delay,
//!   neither the vacate nor the occupied that follows is sent: a page
//!   reload sends nothing.
//! - `member_added` / `member_removed` (`user_id`: the user id as a
//!   string) when a user becomes or stops being a member of a presence
//!   channel cluster-wide: the transitions the hub already computes for
//!   `pusher_internal:member_added/removed`, so a user with two connections
//!   (on one node or on two) is added once and removed once. A removal waits
//!   the delay and is dropped, with the add that follows, if the user is back
//!   within it.
//! - `client_event` (`event`, `data` as JSON text, `socket_id`, and
//!   `user_id` on presence channels): by the node whose client sent it, at
//!   once; nodes that get it over Redis say nothing.
//! - `cache_miss`: a subscription to a cache channel (`cache-`,
//!   `private-cache-`, `private-encrypted-cache-`, `presence-cache-`) with no
//!   cached event, by the node of the subscriber; several misses on one
//!   channel in one loop turn make one event (Pusher de-duplicates them).
//! - `subscription_count` (`subscription_count`): the cluster-wide count
//!   changed. Decided by `counts`, which sends the subscribers' own
//!   `pusher_internal:subscription_count`: the same count at the same
//!   moments (one per channel per loop turn at most, the latest, 0
//!   included, only when it differs from the last one; above 100
//!   subscribers at most one per 30 s), handed here through
//!   `Hub::hook_subscription_count`. Not for presence channels (their
//!   members are counted by the member events).
//!
//! `#server-to-user-` channels (signed-in users) are the server's own and
//! have no webhooks. Events of one channel come out in order: occupied
//! before its first member's `member_added`, `member_removed` before
//! `channel_vacated` (same deadline, removals first).
//!
//! # Timers
//!
//! A pending vacate is the channel's `Room::vacate_at`, a pending removal a
//! `MemberState::Leaving`; both have one entry in the app's `timers` (an ordered
//! set, so a cancelled one is removed at once and the set holds exactly what
//! is pending). `Hub::poll_timeout` includes the first; `Hub::handle_timeout`
//! fires what is due. The per-turn events (counts and cache misses) set a
//! deadline of "now", so the loop's end-of-turn `handle_timeout` sends them.
//! Maps that emptied out are shrunk, so a burst's memory is given back.
//!
//! # Once per cluster
//!
//! Every node runs the same state machines for every channel of the apps
//! that have webhooks, from its cluster-wide view (the counts and members
//! `cluster` keeps of every other node), so the "reported" state (which
//! channels are occupied, which users are members, what is pending) is the
//! same on every node. Only one node sends an event: the channel's *owner*,
//! chosen by rendezvous hashing of node id, app id and channel name over
//! this node and the nodes in its view (the highest score wins; FNV-1a
//! and a splitmix64 finish, the same on every build). All events of a
//! channel have the same owner, so they leave one node in order. When two
//! nodes see the first subscribe or the last leave at the same instant,
//! both run the transition and only the owner sends.
//!
//! **Hand-off.** A node that decides an event another node owns keeps a
//! record of it (at most [`MAX_HANDOFFS`], oldest dropped and counted in
//! `Stats::webhook_handoffs_dropped`) until it has heard from the owner at
//! least [`HANDOFF_MARGIN_MS`] after the decision (the owner was alive
//! after making the same decision: it sent it). If the owner leaves the
//! view first (dropped after `node_timeout`, or `bye`), the record goes to
//! the channel's new owner: this node sends it, or records it for the new
//! owner. So an owner that dies between a transition and its next message
//! (a heartbeat comes every quarter of `node_timeout`) costs a late event,
//! not a lost one.
//!
//! **A node that dies.** The others drop it after `node_timeout` (their
//! view of it is gone): its channels' counts fall and its users stop being
//! members, so the usual state machines report its channels vacated and
//! its members removed after the delay, by their owners among the
//! survivors. A node that says `bye` (shutdown) is dropped at once, the
//! same way.
//!
//! **Start-up (settling).** A node that starts does not know what the
//! cluster has already reported. Until it has settled (half of
//! `node_timeout` after its Redis link first came up, or `node_timeout`
//! after start if it did not by then) it sends nothing that ownership decides: a
//! channel that becomes occupied or a user that becomes a member is *held*.
//! The first `state` of each other node is taken as already reported:
//! held channels and members that node has are released silently (that
//! node's cluster reported them). At settling, what is still held is
//! reported by its owner (channels that only this node's own clients, or
//! nodes it learned about later, brought). Vacates and removals due while
//! settling wait for the end of it. Counts changed while settling are
//! noted, not reported.
//!
//! **Reload (SIGHUP).** Webhooks newly configured, or with new event
//! types or filters, start from the present: channels already occupied and
//! members already present are taken as reported (no burst of
//! `channel_occupied`); their vacate and removal are reported. Webhooks
//! removed drop their state, pending vacates and removals included. The
//! configuration is meant to be the same on every node; while a rolling
//! reload is half done, a channel's events follow its owner's configuration.
//!
//! **Link outages.** See the last section: a node whose link has been down
//! for `node_timeout` is muted; one back after `node_timeout` and the delay
//! settles again.
//!
//! **Shutdown.** A node alone (no other node in its view) sends its pending
//! vacates and removals at once when it shuts down, since nobody else will.
//! In a cluster the others have the same pending timers and send them.
//!
//! # What is guaranteed
//!
//! In steady state (every node hears every other, views agree): each
//! `channel_occupied`, `channel_vacated`, `member_added` and
//! `member_removed` is sent exactly once for the cluster, in order per
//! channel, with the delay and its suppression applied; each
//! `client_event` exactly once and each `cache_miss` once per channel and
//! loop turn, by the node of the client.
//!
//! What can go wrong, and only in these windows:
//!
//! - *An owner dies after sending and before its next message reaches the
//!   others* (at most a heartbeat interval): the others send its last
//!   events again when they drop it (a duplicate). An owner that dies before
//!   sending costs nothing but time: the new owner sends after `node_timeout`.
//!   What a dead node had queued for delivery is lost with it (the
//!   dispatcher's queues are in memory).
//! - *Views disagree* (a node joining or leaving, during the Redis round
//!   trip in which one node knows and another does not): an event can be
//!   sent by two nodes, or, rarely, by none.
//! - *A node's Redis link goes down* (it knows: its view is frozen, so it
//!   reports no vacated storm). Shorter than `node_timeout`: nobody is
//!   dropped, and the states exchanged when it is back report what changed,
//!   once. Longer: the others drop it and report its channels vacated and
//!   its users removed; from `node_timeout` into the outage it is *muted*
//!   (sends nothing that ownership decides: the others report for it).
//!   Back after longer than `node_timeout` plus the delay, it settles again
//!   with everything held: what the others have is taken as reported, what
//!   only it has is reported again (`channel_occupied`, `member_added`),
//!   once. Between those bounds, and for what it decided in the
//!   `node_timeout` before it was muted, events can be lost or repeated.
//! - *At start-up*: a channel that became occupied on another node within
//!   a Redis round trip of this node's first `state` can be lost or sent
//!   twice. A node whose Redis link is down at start settles alone after
//!   `node_timeout` and reports what its clients do; when its link comes up
//!   it settles again with everything held (as after a long outage), so
//!   the others' channels are not reported again, but what it reported
//!   alone may be reported again by their owners.
//! - `subscription_count` has no hand-off: a change decided by an owner
//!   that dies is lost, and the next change carries the latest count.
//! - *Redis stalls without a link noticing* (the connections stay up but
//!   nothing is delivered, for longer than `node_timeout` and less than
//!   the ~12 s a Redis client takes to call the link down): the nodes drop
//!   each other as dead, each alone reports the others' channels vacated
//!   and users removed, and when Redis delivers again each reports them
//!   occupied and added again. (The cluster's liveness, not this module,
//!   decides who is dead.)
//! - *The whole cluster restarts* (`revurb restart`): pending vacates and
//!   removals die with the nodes, and channels are reported occupied (and
//!   members added) again as the clients come back.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use serde_json::Value;

use super::channel::{self, Member};
use super::{App, AppId, ConnId, Hub, Output, format_socket_id, splitmix64};
use crate::webhook::{Event, Kind};

/// Most hand-off records a hub keeps (each a few pointers); past it the
/// oldest is dropped and counted.
pub const MAX_HANDOFFS: usize = 16_384;
/// A hand-off record is done once its owner has been heard from this long
/// after the decision (covers the difference between the owner's and this
/// node's arrival times of the message that caused it).
pub const HANDOFF_MARGIN_MS: u64 = 1000;

/// The hub's webhook state that is not per app.
#[derive(Debug, Default)]
pub(super) struct Webhooks {
    /// While this node settles (cluster only).
    warm: Option<Warm>,
    /// When the per-turn events (counts, cache misses) are due.
    flush_at: Option<u64>,
    /// When hand-off records are next checked.
    sweep_at: Option<u64>,
    /// Since when the Redis link is down (cluster only).
    down_since: Option<u64>,
    /// The Redis link has been up at least once.
    linked: bool,
}

#[derive(Debug)]
struct Warm {
    /// When settling ends; `None` until the hub first sees the clock
    /// (then `node_timeout` later, unless the link comes up first).
    until: Option<u64>,
    /// Nodes whose first `state` was taken.
    synced: HashSet<String>,
}

/// One app's webhook state; exists only while the app has webhooks.
#[derive(Debug, Default)]
pub(super) struct AppHooks {
    /// Channels tracked for occupancy, occupied or pending.
    rooms: HashMap<Rc<str>, Room>,
    /// (channel, user) held at start-up, or leaving.
    members: HashMap<(Rc<str>, Rc<str>), MemberState>,
    /// Pending vacates and removals, by deadline.
    timers: BTreeSet<(u64, Due)>,
    /// Cache channels that missed this turn.
    misses: BTreeSet<Rc<str>>,
    /// Events another node owns, until it proved alive after them.
    handoffs: VecDeque<Handoff>,
}

#[derive(Debug)]
struct Room {
    /// Subscribers cluster-wide, as last seen.
    count: u64,
    /// Count 0, vacated at this time unless occupied again before.
    vacate_at: Option<u64>,
    /// Occupied while settling, not yet reported (nor taken as reported).
    held: bool,
}

impl Room {
    fn idle(&self) -> bool {
        self.count == 0 && self.vacate_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    Held,
    Leaving(u64),
}

/// What a timer fires. Removals sort before vacates of the same deadline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Remove(Rc<str>, Rc<str>),
    Vacate(Rc<str>),
}

#[derive(Debug)]
struct Handoff {
    owner: String,
    since: u64,
    event: Event,
}

impl AppHooks {
    /// The state of an app with this configuration: none without webhooks.
    pub(super) fn for_app(config: &App) -> Option<Box<AppHooks>> {
        (!config.webhooks.is_empty()).then(Box::default)
    }

    /// Nothing tracked, pending or recorded.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.members.is_empty()
            && self.timers.is_empty()
            && self.misses.is_empty()
            && self.handoffs.is_empty()
    }

    /// Give back the memory of maps a burst left mostly empty.
    fn tidy(&mut self) {
        fn shrink<K, V>(m: &mut HashMap<K, V>)
        where
            K: std::hash::Hash + Eq,
        {
            if m.capacity() > 64 && m.len() * 4 < m.capacity() {
                m.shrink_to_fit();
            }
        }
        shrink(&mut self.rooms);
        shrink(&mut self.members);
        if self.handoffs.capacity() > 64 && self.handoffs.len() * 4 < self.handoffs.capacity() {
            self.handoffs.shrink_to_fit();
        }
    }

    /// After a reload: drop the state of channels and members no webhook
    /// wants any more, with their timers.
    fn keep_wanted(&mut self, cfg: &App) {
        self.rooms.retain(|ch, _| tracked(cfg, ch));
        self.members.retain(|(ch, _), _| wants_members(cfg, ch));
        let (rooms, members) = (&self.rooms, &self.members);
        self.timers.retain(|(at, due)| match due {
            Due::Vacate(ch) => rooms.get(ch).is_some_and(|r| r.vacate_at == Some(*at)),
            Due::Remove(ch, u) => {
                members.get(&(ch.clone(), u.clone())) == Some(&MemberState::Leaving(*at))
            }
        });
        self.misses
            .retain(|ch| cfg.wants_webhook(Kind::CacheMiss, ch));
        self.rooms.retain(|_, r| !r.idle());
        self.tidy();
    }

    fn cancel_vacate(&mut self, key: &Rc<str>, at: u64) {
        self.timers.remove(&(at, Due::Vacate(key.clone())));
    }
}

/// One app's webhook state as plain data, for the upgrade's hand-over
/// (`handover`): each tracked channel's count, pending vacate and whether
/// it is held, and each held or leaving member. The timers are derived
/// from these; the per-turn cache misses and the hand-off records of
/// events other nodes own are not carried (revurb(1) NOTES).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HooksExport {
    /// (channel, count, vacate at, held)
    pub rooms: Vec<(String, u64, Option<u64>, bool)>,
    /// (channel, user, leaving at; `None`: held)
    pub members: Vec<(String, String, Option<u64>)>,
}

impl AppHooks {
    pub(super) fn export(&self) -> HooksExport {
        let mut rooms: Vec<_> = self
            .rooms
            .iter()
            .map(|(ch, r)| (ch.to_string(), r.count, r.vacate_at, r.held))
            .collect();
        rooms.sort();
        let mut members: Vec<_> = self
            .members
            .iter()
            .map(|((ch, u), state)| {
                let at = match state {
                    MemberState::Held => None,
                    MemberState::Leaving(at) => Some(*at),
                };
                (ch.to_string(), u.to_string(), at)
            })
            .collect();
        members.sort();
        HooksExport { rooms, members }
    }

    pub(super) fn import(e: &HooksExport) -> AppHooks {
        let mut h = AppHooks::default();
        for (ch, count, vacate_at, held) in &e.rooms {
            let key: Rc<str> = Rc::from(ch.as_str());
            if let Some(at) = vacate_at {
                h.timers.insert((*at, Due::Vacate(key.clone())));
            }
            let room = Room {
                count: *count,
                vacate_at: *vacate_at,
                held: *held,
            };
            h.rooms.insert(key, room);
        }
        for (ch, user, leaving) in &e.members {
            let (ch, user): (Rc<str>, Rc<str>) = (Rc::from(ch.as_str()), Rc::from(user.as_str()));
            let state = match leaving {
                None => MemberState::Held,
                Some(at) => {
                    h.timers
                        .insert((*at, Due::Remove(ch.clone(), user.clone())));
                    MemberState::Leaving(*at)
                }
            };
            h.members.insert((ch, user), state);
        }
        h
    }
}

impl Hub {
    /// Whether settling is over and the link has been up (the hand-over
    /// carries both, so an upgraded node does not settle again).
    pub(super) fn hooks_export_flags(&self) -> (bool, bool) {
        (self.webhooks.warm.is_none(), self.webhooks.linked)
    }

    /// An app's webhook state for the hand-over.
    pub(super) fn hooks_export(&self, app: AppId) -> Option<HooksExport> {
        self.apps[app].hooks.as_deref().map(AppHooks::export)
    }

    /// Resume the webhook state of the hand-over: `apps` by app index
    /// (`None`: nothing was handed over for it), then take whatever is
    /// occupied and has no state yet as reported, as after a reload.
    pub(super) fn hooks_import(
        &mut self,
        settled: bool,
        linked: bool,
        apps: Vec<Option<HooksExport>>,
    ) {
        if settled {
            self.webhooks.warm = None;
        }
        self.webhooks.linked = linked;
        for (app, e) in apps.into_iter().enumerate() {
            if let (Some(e), Some(a)) = (e, self.apps.get_mut(app))
                && a.hooks.is_some()
            {
                let mut h = Box::new(AppHooks::import(&e));
                h.keep_wanted(&a.config);
                a.hooks = Some(h);
            }
        }
        self.hooks_reloaded();
    }
}

/// Whether the app's webhooks want a channel's occupancy (its counts are
/// `counts`', which calls [`Hub::hook_subscription_count`]).
fn tracked(cfg: &App, channel: &str) -> bool {
    !channel.starts_with('#')
        && (cfg.wants_webhook(Kind::ChannelOccupied, channel)
            || cfg.wants_webhook(Kind::ChannelVacated, channel))
}

fn wants_members(cfg: &App, channel: &str) -> bool {
    cfg.wants_webhook(Kind::MemberAdded, channel) || cfg.wants_webhook(Kind::MemberRemoved, channel)
}

/// A node's rendezvous score for a channel: FNV-1a over node, app and
/// channel (separated by 0xff, which UTF-8 never has), finished with
/// splitmix64. The same on every node and build.
pub fn owner_score(node: &str, app: &str, channel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = node
        .bytes()
        .chain([0xff])
        .chain(app.bytes())
        .chain([0xff])
        .chain(channel.bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(&mut h)
}

/// The owner among `nodes`: the highest score, the smallest id on a tie.
pub fn owner_of<'a>(
    nodes: impl Iterator<Item = &'a str>,
    app: &str,
    channel: &str,
) -> Option<&'a str> {
    nodes
        .map(|n| (owner_score(n, app, channel), n))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
        .map(|(_, n)| n)
}

impl Hub {
    // ---- hooks the rest of the hub calls ------------------------------------

    /// Scaling was turned on: settle before sending what ownership decides.
    pub(super) fn hooks_cluster_enabled(&mut self) {
        self.webhooks.warm = Some(Warm {
            until: None,
            synced: HashSet::new(),
        });
    }

    /// The Redis link went up or down: settling ends half a node timeout
    /// after it first came up.
    ///
    /// Down for longer than `node_timeout`, the others have dropped this
    /// node: it is muted (see [`Hub::hooks_muted`]). Back after longer
    /// than `node_timeout` and an app's delay, the others have also
    /// reported its channels vacated and its users removed: it settles
    /// again as at start-up, with everything of that app held, so that
    /// what the others have is taken as reported and what only it has is
    /// reported again, by the owner.
    pub(super) fn hooks_link(&mut self, now: u64, up: bool) {
        let timeout = self.cluster.as_ref().map_or(0, |c| c.timeout_ms());
        if !up {
            self.webhooks.down_since.get_or_insert(now);
            return;
        }
        let down = self.webhooks.down_since.take();
        let first = !std::mem::replace(&mut self.webhooks.linked, true);
        if let Some(w) = self.webhooks.warm.as_mut() {
            if first {
                w.until = Some(now + timeout / 2);
            }
            return;
        }
        // first link after settling alone (Redis was away at start), or
        // back from a long outage
        let apps: Vec<AppId> = (0..self.apps.len())
            .filter(|&a| self.apps[a].hooks.is_some())
            .filter(|&a| {
                first
                    || down.is_some_and(|since| {
                        now >= since + timeout + self.apps[a].config.webhook_delay_ms
                    })
            })
            .collect();
        if apps.is_empty() {
            return;
        }
        self.webhooks.warm = Some(Warm {
            until: Some(now + timeout / 2),
            synced: HashSet::new(),
        });
        for app in apps {
            self.hooks_hold_all(app);
        }
    }

    /// Back from a deaf spell that began at `since`, this node learnt that
    /// another had dropped it (see the Liveness section of `cluster`): it
    /// settles as if its link had been down since then.
    pub(super) fn hooks_dropped_while_deaf(&mut self, now: u64, since: u64) {
        self.webhooks.down_since = Some(since);
        self.hooks_link(now, true);
    }

    /// Hold every occupied channel and present member of `app` (settling
    /// again after a long outage).
    fn hooks_hold_all(&mut self, app: AppId) {
        let mut presence: Vec<Rc<str>> = self.apps[app]
            .channels
            .iter()
            .filter(|(_, c)| c.presence.is_some() && !c.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        presence.extend(
            self.remote_channels(app)
                .into_iter()
                .filter(|ch| channel::Kind::of(ch).is_presence())
                .map(Rc::from),
        );
        presence.sort();
        presence.dedup();
        let cfg = &self.apps[app].config;
        let presence: Vec<(Rc<str>, Vec<Rc<Member>>)> = presence
            .into_iter()
            .filter(|ch| wants_members(cfg, ch))
            .map(|ch| {
                let ms = self.cluster_members(app, &ch);
                (ch, ms)
            })
            .collect();
        let a = &mut self.apps[app];
        let Some(h) = a.hooks.as_deref_mut() else {
            return;
        };
        for (ch, room) in &mut h.rooms {
            if room.count > 0 && tracked(&a.config, ch) {
                room.held = true;
            }
        }
        for (ch, ms) in presence {
            for m in ms {
                h.members
                    .entry((ch.clone(), Rc::from(m.key.as_str())))
                    .or_insert(MemberState::Held);
            }
        }
    }

    /// Whether this node's link has been down for longer than
    /// `node_timeout`: the others have dropped it and report its channels;
    /// it sends nothing that ownership decides (its state still follows).
    fn hooks_muted(&self, now: u64) -> bool {
        let timeout = self.cluster.as_ref().map_or(0, |c| c.timeout_ms());
        self.webhooks
            .down_since
            .is_some_and(|since| now >= since + timeout)
    }

    /// `node`'s `state` was applied: while settling, its first one releases
    /// the held channels and members it has (it had them before this node
    /// came: they were reported).
    pub(super) fn hooks_state_from(&mut self, node: &str) {
        if self.apps.iter().all(|a| a.hooks.is_none()) {
            return; // a reload that adds webhooks takes what exists as reported
        }
        let Some(w) = self.webhooks.warm.as_mut() else {
            return;
        };
        if !w.synced.insert(node.to_string()) {
            return;
        }
        let Some(c) = self.cluster.as_deref() else {
            return;
        };
        for a in &mut self.apps {
            let Some(h) = a.hooks.as_deref_mut() else {
                continue;
            };
            let id = a.config.id.as_str();
            for (ch, room) in h.rooms.iter_mut().filter(|(_, r)| r.held) {
                if c.node_occupies(node, id, ch) {
                    room.held = false;
                }
            }
            h.members.retain(|(ch, user), s| {
                *s != MemberState::Held || !c.node_has_member(node, id, ch, user)
            });
        }
    }

    /// The cluster-wide count of `channel` may have changed: occupied,
    /// vacated (after the delay), cancelled vacate.
    pub(super) fn hook_count(&mut self, now: u64, app: AppId, channel: &str) {
        let a = &self.apps[app];
        let Some(h) = a.hooks.as_deref() else {
            return;
        };
        if !tracked(&a.config, channel) {
            return;
        }
        let old = h.rooms.get(channel).map(|r| r.count);
        let n = self.subscription_count(app, channel);
        if old == Some(n) || (old.is_none() && n == 0) {
            return;
        }
        let key = self.channel_key(app, channel);
        let warming = self.webhooks.warm.is_some();
        let delay = self.apps[app].config.webhook_delay_ms;
        let Some(h) = self.apps[app].hooks.as_deref_mut() else {
            return;
        };
        let mut occupied = false;
        match h.rooms.get_mut(&key) {
            None => {
                // 0 -> n: occupied (held while settling)
                occupied = !warming;
                let room = Room {
                    count: n,
                    vacate_at: None,
                    held: warming,
                };
                h.rooms.insert(key.clone(), room);
            }
            Some(room) => {
                let was = room.count;
                room.count = n;
                if was == 0 && n > 0 {
                    // back within the delay: neither vacated nor occupied
                    if let Some(at) = room.vacate_at.take() {
                        h.cancel_vacate(&key, at);
                    }
                } else if was > 0 && n == 0 {
                    if room.held {
                        room.held = false; // never reported: nothing to vacate
                    } else {
                        let at = now + delay;
                        room.vacate_at = Some(at);
                        h.timers.insert((at, Due::Vacate(key.clone())));
                    }
                }
            }
        }
        if h.rooms.get(&key).is_some_and(Room::idle) {
            h.rooms.remove(&key);
        }
        if occupied {
            self.hook_emit(now, app, Event::new(Kind::ChannelOccupied, key));
        }
    }

    /// A user became (`added`) or stopped being a member of a presence
    /// channel cluster-wide (called where the hub tells its subscribers).
    pub(super) fn hook_member(
        &mut self,
        now: u64,
        app: AppId,
        channel: &str,
        m: &Member,
        added: bool,
    ) {
        let a = &self.apps[app];
        if a.hooks.is_none() || !wants_members(&a.config, channel) {
            return;
        }
        if added {
            self.hook_count(now, app, channel); // occupied goes first
        }
        let key = (
            self.channel_key(app, channel),
            Rc::<str>::from(m.key.as_str()),
        );
        let warming = self.webhooks.warm.is_some();
        let delay = self.apps[app].config.webhook_delay_ms;
        let Some(h) = self.apps[app].hooks.as_deref_mut() else {
            return;
        };
        let state = h.members.remove(&key);
        let emit = match (added, state) {
            (true, Some(MemberState::Leaving(at))) => {
                // back within the delay: neither removed nor added
                h.timers
                    .remove(&(at, Due::Remove(key.0.clone(), key.1.clone())));
                false
            }
            (true, None) if warming => {
                h.members.insert(key.clone(), MemberState::Held);
                false
            }
            (true, None) => true,
            (false, Some(MemberState::Held)) => false, // never reported
            (false, None) => {
                let at = now + delay;
                h.timers
                    .insert((at, Due::Remove(key.0.clone(), key.1.clone())));
                h.members.insert(key.clone(), MemberState::Leaving(at));
                false
            }
            // the hub does not repeat a transition; keep what was there
            (_, Some(s)) => {
                h.members.insert(key.clone(), s);
                false
            }
        };
        if emit {
            let mut e = Event::new(Kind::MemberAdded, key.0);
            e.user_id = Some(key.1);
            self.hook_emit(now, app, e);
        }
    }

    /// A client of this node sent a client event (not one from another
    /// node: the node of the sender reports it).
    pub(super) fn hook_client_event(
        &mut self,
        app: AppId,
        channel: &str,
        event: &str,
        data: &Value,
        conn: ConnId,
        user_id: Option<&Value>,
    ) {
        let cfg = &self.apps[app].config;
        if cfg.webhooks.is_empty() || !cfg.wants_webhook(Kind::ClientEvent, channel) {
            return;
        }
        let Some(sid) = self.conn(conn).map(|c| format_socket_id(c.socket_id)) else {
            return;
        };
        let mut e = Event::new(Kind::ClientEvent, self.channel_key(app, channel));
        e.event = Some(event.into());
        e.data = Some(data.to_string().into());
        e.socket_id = Some(sid.into());
        e.user_id = user_id.and_then(channel::user_key).map(Rc::from);
        self.out.push_back(Output::Webhook { app, event: e });
    }

    /// A subscriber of this node found no cached event.
    pub(super) fn hook_cache_miss(&mut self, now: u64, app: AppId, channel: &str) {
        let cfg = &self.apps[app].config;
        if cfg.webhooks.is_empty() || !cfg.wants_webhook(Kind::CacheMiss, channel) {
            return;
        }
        let key = self.channel_key(app, channel);
        if let Some(h) = self.apps[app].hooks.as_deref_mut() {
            h.misses.insert(key);
            self.webhooks.flush_at.get_or_insert(now);
        }
    }

    /// The apps were reloaded: state for apps that gained webhooks (taking
    /// what is occupied now as reported), none for those that lost them,
    /// and rooms and members only for what is still wanted.
    pub(super) fn hooks_reloaded(&mut self) {
        for app in 0..self.apps.len() {
            let a = &mut self.apps[app];
            if a.config.webhooks.is_empty() {
                a.hooks = None;
                continue;
            }
            let mut h = a.hooks.take().unwrap_or_default();
            h.keep_wanted(&a.config);
            a.hooks = Some(h);
            self.hooks_adopt(app);
        }
    }

    /// Take every channel occupied now that the app's webhooks track and
    /// that has no state yet as reported (no burst after a reload).
    fn hooks_adopt(&mut self, app: AppId) {
        let mut names: Vec<Rc<str>> = self.apps[app]
            .channels
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        names.extend(self.remote_channels(app).into_iter().map(Rc::from));
        for ch in names {
            let o = tracked(&self.apps[app].config, &ch);
            let n = self.subscription_count(app, &ch);
            let Some(h) = self.apps[app].hooks.as_deref_mut() else {
                return;
            };
            if o && n > 0 && !h.rooms.contains_key(&ch) {
                let room = Room {
                    count: n,
                    vacate_at: None,
                    held: false,
                };
                h.rooms.insert(ch, room);
            }
        }
    }

    /// Nodes left the view (dropped or said `bye`): the events they owned
    /// and may not have sent go to the new owners. `bye`: the node that said
    /// goodbye, which had sent what it decided well before.
    pub(super) fn hooks_nodes_gone(&mut self, now: u64, bye: Option<&str>) {
        self.hooks_sweep(now, bye);
    }

    /// The node shuts down. Alone, it sends its pending vacates and
    /// removals now (nobody else will); in a cluster the others have them.
    pub(super) fn hooks_shutdown(&mut self, now: u64) {
        if self.cluster_nodes() > 1 {
            return;
        }
        self.webhooks.warm = None;
        self.hooks_fire(u64::MAX, now);
    }

    // ---- timers ----------------------------------------------------------------

    pub(super) fn hooks_poll_timeout(&self) -> Option<u64> {
        let w = &self.webhooks;
        let timers = self
            .apps
            .iter()
            .filter_map(|a| a.hooks.as_deref())
            .filter_map(|h| h.timers.first().map(|(t, _)| *t))
            .min();
        let (timers, settle) = match &w.warm {
            Some(warm) => match warm.until {
                Some(until) => (timers.map(|t| t.max(until)), Some(until)),
                None => (None, None),
            },
            None => (timers, None),
        };
        [timers, settle, w.flush_at, w.sweep_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn hooks_timeout(&mut self, now: u64) {
        let timeout = self.cluster.as_ref().map_or(0, |c| c.timeout_ms());
        if let Some(w) = self.webhooks.warm.as_mut() {
            let until = *w.until.get_or_insert(now + timeout);
            if until <= now {
                self.hooks_settle(now);
            }
        }
        if self.webhooks.flush_at.is_some_and(|t| t <= now) {
            self.webhooks.flush_at = None;
            self.hooks_flush();
        }
        if self.webhooks.warm.is_none() {
            self.hooks_fire(now, now);
        }
        if self.webhooks.sweep_at.is_some_and(|t| t <= now) {
            self.hooks_sweep(now, None);
        }
    }

    /// The app with this id, if it has webhooks.
    pub(super) fn hooks_app(&self, app_id: &str) -> Option<AppId> {
        self.app_by_id(app_id)
            .filter(|&app| self.apps[app].hooks.is_some())
    }

    /// A `join` or `leave` from another node may have changed a count.
    pub(super) fn hook_remote_count(&mut self, now: u64, app_id: &str, channel: &str) {
        if let Some(app) = self.hooks_app(app_id) {
            self.hook_count(now, app, channel);
        }
    }

    // ---- internals -------------------------------------------------------------

    /// The node that sends the events of `channel`: `None` for this one.
    fn hook_owner(&self, app: AppId, channel: &str) -> Option<String> {
        let c = self.cluster.as_deref()?;
        let me = c.node.as_str();
        let nodes = std::iter::once(me).chain(c.peers());
        let owner = owner_of(nodes, &self.apps[app].config.id, channel)?;
        (owner != me).then(|| owner.to_string())
    }

    /// Send `event` if this node owns its channel; otherwise keep it until
    /// the owner proves alive after it (counts: no record).
    fn hook_emit(&mut self, now: u64, app: AppId, event: Event) {
        if !self.apps[app]
            .config
            .wants_webhook(event.kind, &event.channel)
        {
            return;
        }
        if self.hooks_muted(now) {
            return;
        }
        let Some(owner) = self.hook_owner(app, &event.channel) else {
            self.out.push_back(Output::Webhook { app, event });
            return;
        };
        if event.kind == Kind::SubscriptionCount {
            return;
        }
        self.hook_record(now, app, owner, event);
    }

    fn hook_record(&mut self, now: u64, app: AppId, owner: String, event: Event) {
        let Some(h) = self.apps[app].hooks.as_deref_mut() else {
            return;
        };
        if h.handoffs.len() >= MAX_HANDOFFS {
            h.handoffs.pop_front();
            self.stats.webhook_handoffs_dropped += 1;
            let n = self.stats.webhook_handoffs_dropped;
            if n.is_power_of_two() {
                crate::log_warn!(
                    "webhooks: dropped the oldest record of an event another node owns \
                     ({n} so far, over {MAX_HANDOFFS} waiting): if that node dies the event is not sent"
                );
            }
        }
        h.handoffs.push_back(Handoff {
            owner,
            since: now,
            event,
        });
        self.webhooks
            .sweep_at
            .get_or_insert(now + HANDOFF_MARGIN_MS);
    }

    /// Check the hand-off records: done once the owner was heard from after
    /// the margin; to the new owner once the owner left the view.
    fn hooks_sweep(&mut self, now: u64, bye: Option<&str>) {
        self.webhooks.sweep_at = None;
        let mut left = false;
        for app in 0..self.apps.len() {
            let Some(h) = self.apps[app].hooks.as_deref_mut() else {
                continue;
            };
            if h.handoffs.is_empty() {
                continue;
            }
            let records = std::mem::take(&mut h.handoffs);
            let mut keep = VecDeque::new();
            for mut r in records {
                let heard = self.cluster.as_deref().and_then(|c| c.last_heard(&r.owner));
                match heard {
                    Some(t) if t >= r.since + HANDOFF_MARGIN_MS => {} // sent by its owner
                    Some(_) => keep.push_back(r),
                    None if bye == Some(r.owner.as_str()) && r.since + HANDOFF_MARGIN_MS <= now => {
                    }
                    None => match self.hook_owner(app, &r.event.channel) {
                        None => {
                            if self.apps[app]
                                .config
                                .wants_webhook(r.event.kind, &r.event.channel)
                            {
                                self.out.push_back(Output::Webhook {
                                    app,
                                    event: r.event,
                                });
                            }
                        }
                        Some(owner) => {
                            r.owner = owner;
                            r.since = now;
                            keep.push_back(r);
                        }
                    },
                }
            }
            left |= !keep.is_empty();
            if let Some(h) = self.apps[app].hooks.as_deref_mut() {
                // records made while sending (none today) go after the old
                keep.extend(h.handoffs.drain(..));
                h.handoffs = keep;
                h.tidy();
            }
        }
        if left {
            self.webhooks.sweep_at = Some(now + HANDOFF_MARGIN_MS);
        }
    }

    /// Fire the vacates and removals due at `due` (`u64::MAX`: all).
    fn hooks_fire(&mut self, due: u64, now: u64) {
        for app in 0..self.apps.len() {
            let mut events = Vec::new();
            let Some(h) = self.apps[app].hooks.as_deref_mut() else {
                continue;
            };
            while let Some((at, _)) = h.timers.first()
                && *at <= due
            {
                let Some((at, d)) = h.timers.pop_first() else {
                    break;
                };
                match d {
                    Due::Vacate(ch) => {
                        let Some(room) = h.rooms.get_mut(&ch) else {
                            continue;
                        };
                        if room.vacate_at != Some(at) {
                            continue;
                        }
                        room.vacate_at = None;
                        if room.idle() {
                            h.rooms.remove(&ch);
                        }
                        events.push(Event::new(Kind::ChannelVacated, ch));
                    }
                    Due::Remove(ch, user) => {
                        let key = (ch, user);
                        if h.members.get(&key) != Some(&MemberState::Leaving(at)) {
                            continue;
                        }
                        h.members.remove(&key);
                        let mut e = Event::new(Kind::MemberRemoved, key.0);
                        e.user_id = Some(key.1);
                        events.push(e);
                    }
                }
            }
            if !events.is_empty() {
                h.tidy();
            }
            for e in events {
                self.hook_emit(now, app, e);
            }
        }
    }

    /// Settling is over: report what is still held, by its owner.
    fn hooks_settle(&mut self, now: u64) {
        self.webhooks.warm = None;
        for app in 0..self.apps.len() {
            let Some(h) = self.apps[app].hooks.as_deref_mut() else {
                continue;
            };
            let mut rooms: Vec<Rc<str>> = h
                .rooms
                .iter_mut()
                .filter(|(_, r)| r.held)
                .map(|(ch, r)| {
                    r.held = false;
                    ch.clone()
                })
                .collect();
            rooms.sort();
            let mut members: Vec<(Rc<str>, Rc<str>)> = h
                .members
                .iter()
                .filter(|(_, s)| **s == MemberState::Held)
                .map(|(k, _)| k.clone())
                .collect();
            members.sort();
            h.members.retain(|_, s| *s != MemberState::Held);
            for ch in rooms {
                self.hook_emit(now, app, Event::new(Kind::ChannelOccupied, ch));
            }
            for (ch, user) in members {
                let mut e = Event::new(Kind::MemberAdded, ch);
                e.user_id = Some(user);
                self.hook_emit(now, app, e);
            }
        }
    }

    /// The per-turn events: cache misses.
    fn hooks_flush(&mut self) {
        for app in 0..self.apps.len() {
            let Some(h) = self.apps[app].hooks.as_deref_mut() else {
                continue;
            };
            let misses = std::mem::take(&mut h.misses);
            for ch in misses {
                let event = Event::new(Kind::CacheMiss, ch);
                self.out.push_back(Output::Webhook { app, event });
            }
        }
    }

    /// `counts` decided that `channel`'s count `n` goes out (the count and
    /// throttle of `pusher_internal:subscription_count`): the webhook, by
    /// the channel's owner, unless this node is settling (then the count is
    /// taken as reported: the others reported it).
    pub(super) fn hook_subscription_count(
        &mut self,
        now: u64,
        app: AppId,
        channel: Rc<str>,
        n: u64,
    ) {
        if self.apps[app].hooks.is_none() || self.webhooks.warm.is_some() {
            return;
        }
        let mut e = Event::new(Kind::SubscriptionCount, channel);
        e.subscription_count = Some(n);
        self.hook_emit(now, app, e);
    }
}

#[cfg(test)]
mod tests;

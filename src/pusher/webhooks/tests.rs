//! Scenario tests of the hub's webhooks on the simulated clock
//! (`pusher::sim`): one node first (each event type with its fields, the
//! delay and its suppression, filters, reloads, no webhooks at all), then
//! clusters (exactly once when nodes see a change at the same instant,
//! dead nodes, reloads across nodes, nodes joining, hand-off).
//!
//! `hooks` ends the loop turn (`advance(0)`: the per-turn events go out)
//! and returns what every node asked to send, one line per event:
//! `"<name> <channel> [field=value ...]"`, prefixed with `"<node>: "` in
//! the cluster tests.

use std::fmt::Write as _;

use serde_json::json;

use super::super::App;
use super::super::sim::*;
use super::*;
use crate::webhook::{Filter, Url, Webhook};

// ---- fixtures ----------------------------------------------------------------

const DELAY: u64 = 3000;

fn webhook(kinds: &[Kind]) -> Webhook {
    Webhook {
        url: Url::parse("http://127.0.0.1:9/hook").unwrap(),
        event_types: kinds.iter().copied().collect(),
        filter: Filter::default(),
        headers: Vec::new(),
        batching: false,
    }
}

/// The test app with one webhook for `kinds` and the default delay.
fn hooked(kinds: &[Kind]) -> impl Fn(&mut App) {
    let kinds = kinds.to_vec();
    move |a: &mut App| {
        a.webhooks = vec![webhook(&kinds)];
        a.webhook_delay_ms = DELAY;
    }
}

const OCCUPANCY: &[Kind] = &[Kind::ChannelOccupied, Kind::ChannelVacated];
const MEMBERS: &[Kind] = &[Kind::MemberAdded, Kind::MemberRemoved];
const PRESENCE: &[Kind] = &[
    Kind::ChannelOccupied,
    Kind::ChannelVacated,
    Kind::MemberAdded,
    Kind::MemberRemoved,
];

fn text(e: &Event) -> String {
    let mut s = format!("{} {}", e.kind.name(), e.channel);
    let fields = [
        ("user_id", &e.user_id),
        ("event", &e.event),
        ("data", &e.data),
        ("socket_id", &e.socket_id),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            let _ = write!(s, " {k}={v}");
        }
    }
    if let Some(n) = e.subscription_count {
        let _ = write!(s, " count={n}");
    }
    s
}

/// End the turn, and what node 0 asked to send (one node).
fn hooks(sim: &mut Sim) -> Vec<String> {
    sim.advance(0);
    sim.take_webhooks()
        .iter()
        .map(|(node, e)| {
            assert_eq!(*node, 0);
            text(e)
        })
        .collect()
}

/// End the turn, and what every node asked to send, `"<node>: <event>"`.
fn cluster_hooks(sim: &mut Sim) -> Vec<String> {
    sim.advance(0);
    sim.take_webhooks()
        .iter()
        .map(|(node, e)| format!("{node}: {}", text(e)))
        .collect()
}

/// The events of [`cluster_hooks`] without the node.
fn events(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = lines
        .iter()
        .map(|l| l.split_once(": ").map_or(l.clone(), |(_, e)| e.to_string()))
        .collect();
    v.sort();
    v
}

/// The app state of node `node`'s first app (`None`: no webhooks).
fn state(sim: &Sim, node: usize) -> Option<&AppHooks> {
    sim.nodes[node].hub.apps[0].hooks.as_deref()
}

/// The index of the node that owns `channel` among nodes `0..n`.
fn owner(n: usize, channel: &str) -> usize {
    let names: Vec<String> = (0..n).map(|i| format!("node{i}")).collect();
    let o = owner_of(names.iter().map(String::as_str), APP_ID, channel).unwrap();
    names.iter().position(|x| x == o).unwrap()
}

/// A channel name `<prefix><i>` owned by `node` among nodes `0..n`.
fn owned_by(node: usize, n: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|ch| owner(n, ch) == node)
        .unwrap()
}

// ---- one node: occupancy --------------------------------------------------------

#[test]
fn occupied_at_the_first_subscriber_and_vacated_after_the_delay() {
    let mut sim = Sim::with(hooked(OCCUPANCY));
    sim.connect(1);
    sim.join(1, "news", None);
    assert_eq!(hooks(&mut sim), ["channel_occupied news"]);
    sim.connect(2);
    sim.join(2, "news", None);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());

    sim.advance_to(100);
    sim.close(1);
    sim.advance_to(200);
    sim.send(
        2,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#,
    );
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    // the vacate is the hub's next deadline
    assert_eq!(sim.hub(0).poll_timeout(), Some(200 + DELAY));
    sim.advance_to(200 + DELAY - 1);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(200 + DELAY);
    assert_eq!(hooks(&mut sim), ["channel_vacated news"]);
    // and nothing is left
    assert!(state(&sim, 0).unwrap().is_empty());
    sim.advance_to(50_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn the_event_json_is_pushers() {
    let mut sim = Sim::with(hooked(OCCUPANCY));
    sim.connect(1);
    sim.join(1, "news", None);
    sim.advance(0);
    let got = sim.take_webhooks();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0);
    assert_eq!(
        got[0].1.to_json(),
        json!({"name": "channel_occupied", "channel": "news"})
    );
}

#[test]
fn a_reload_within_the_delay_sends_nothing() {
    let mut sim = Sim::with(hooked(OCCUPANCY));
    sim.connect(1);
    sim.join(1, "news", None);
    assert_eq!(hooks(&mut sim), ["channel_occupied news"]);
    // the page reloads: the old connection goes, a new one comes 2.9 s later
    sim.advance_to(1000);
    sim.close(1);
    sim.advance_to(1000 + DELAY - 100);
    sim.connect(2);
    sim.join(2, "news", None);
    // neither the vacate nor the occupied that follows
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(20_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    // the timer went with the vacate
    assert!(state(&sim, 0).unwrap().timers.is_empty());
    // leaving for good is reported once, after the delay
    sim.close(2);
    sim.advance_to(20_000 + DELAY);
    assert_eq!(hooks(&mut sim), ["channel_vacated news"]);
}

#[test]
fn occupied_only_is_not_repeated_after_a_reload() {
    let mut sim = Sim::with(hooked(&[Kind::ChannelOccupied]));
    sim.connect(1);
    sim.join(1, "news", None);
    assert_eq!(hooks(&mut sim), ["channel_occupied news"]);
    sim.close(1);
    sim.advance_to(DELAY - 1);
    sim.connect(2);
    sim.join(2, "news", None);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    // gone for longer than the delay: vacated (not wanted), then occupied again
    sim.close(2);
    sim.advance_to(10_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.connect(3);
    sim.join(3, "news", None);
    assert_eq!(hooks(&mut sim), ["channel_occupied news"]);
}

#[test]
fn the_delay_is_the_apps() {
    let mut sim = Sim::with(|a| {
        hooked(OCCUPANCY)(a);
        a.webhook_delay_ms = 500;
    });
    sim.connect(1);
    sim.join(1, "news", None);
    sim.close(1);
    assert_eq!(hooks(&mut sim), ["channel_occupied news"]);
    sim.advance_to(499);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(500);
    assert_eq!(hooks(&mut sim), ["channel_vacated news"]);
}

// ---- one node: members ----------------------------------------------------------

#[test]
fn member_added_and_removed_after_the_delay() {
    let mut sim = Sim::with(hooked(MEMBERS));
    sim.connect(1);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    assert_eq!(hooks(&mut sim), ["member_added presence-room user_id=1"]);
    sim.connect(2);
    sim.join(2, "presence-room", Some(&member(r#""bob""#, "Bob")));
    assert_eq!(hooks(&mut sim), ["member_added presence-room user_id=bob"]);
    sim.advance_to(1000);
    sim.close(2);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(1000 + DELAY - 1);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(1000 + DELAY);
    assert_eq!(
        hooks(&mut sim),
        ["member_removed presence-room user_id=bob"]
    );
    let got = {
        sim.close(1);
        sim.advance_to(10_000);
        sim.take_webhooks()
    };
    assert_eq!(
        got[0].1.to_json(),
        json!({"name": "member_removed", "channel": "presence-room", "user_id": "1"})
    );
    assert!(state(&sim, 0).unwrap().is_empty());
}

#[test]
fn a_member_back_within_the_delay_sends_nothing() {
    let mut sim = Sim::with(hooked(PRESENCE));
    sim.connect(1);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    assert_eq!(
        hooks(&mut sim),
        [
            "channel_occupied presence-room",
            "member_added presence-room user_id=1"
        ]
    );
    sim.close(1);
    sim.advance_to(2000);
    sim.connect(2);
    sim.join(2, "presence-room", Some(&member("1", "Ann")));
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(30_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    // leaving: the member first, then the channel, at the same deadline
    sim.close(2);
    sim.advance_to(30_000 + DELAY);
    assert_eq!(
        hooks(&mut sim),
        [
            "member_removed presence-room user_id=1",
            "channel_vacated presence-room"
        ]
    );
}

#[test]
fn a_user_with_two_connections_is_one_member() {
    let mut sim = Sim::with(hooked(MEMBERS));
    for c in [1, 2] {
        sim.connect(c);
        sim.join(c, "presence-room", Some(&member("7", "Sam")));
    }
    assert_eq!(hooks(&mut sim), ["member_added presence-room user_id=7"]);
    sim.close(1);
    sim.advance_to(10_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.close(2);
    sim.advance_to(10_000 + DELAY);
    assert_eq!(hooks(&mut sim), ["member_removed presence-room user_id=7"]);
}

// ---- one node: client events, cache misses, counts -------------------------------

#[test]
fn client_event_with_every_field() {
    let mut sim = Sim::with(hooked(&[Kind::ClientEvent]));
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-chat", None);
    sim.join(2, "private-chat", None);
    sim.whisper(1, "private-chat", "client-typing", json!({"x": 1}));
    sim.drain();
    let sid = sim.sid(1);
    assert_eq!(
        hooks(&mut sim),
        [format!(
            r#"client_event private-chat event=client-typing data={{"x":1}} socket_id={sid}"#
        )]
    );
    // on a presence channel, with the sender's user id
    sim.join(1, "presence-room", Some(&member("42", "Ann")));
    sim.join(2, "presence-room", Some(&member("43", "Bob")));
    sim.send_json(
        1,
        json!({"event": "client-moved", "channel": "presence-room", "data": "{\"to\":[1,2]}"}),
    );
    sim.advance(0);
    let got = sim.take_webhooks();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].1.to_json(),
        json!({"name": "client_event", "channel": "presence-room", "event": "client-moved",
            "data": "{\"to\":[1,2]}", "socket_id": sid, "user_id": "42"})
    );
    // a refused client event is not reported
    sim.whisper(1, "news", "client-x", json!({}));
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn cache_miss_once_per_turn_and_never_with_a_cached_event() {
    let mut sim = Sim::with(hooked(&[Kind::CacheMiss]));
    sim.connect(1);
    sim.join(1, "cache-a", None);
    assert_eq!(hooks(&mut sim), ["cache_miss cache-a"]);
    // three subscribers in one turn: one event per channel
    for c in [2, 3] {
        sim.connect(c);
        sim.join(c, "cache-b", None);
        sim.join(c, "private-cache-c", None);
    }
    sim.connect(4);
    sim.join(4, "presence-cache-d", Some(&member("1", "Ann")));
    assert_eq!(
        hooks(&mut sim),
        [
            "cache_miss cache-b",
            "cache_miss presence-cache-d",
            "cache_miss private-cache-c"
        ]
    );
    // a cached event: no miss; a plain channel never misses
    sim.trigger(&["cache-b"], "e", "{}", None);
    sim.connect(5);
    sim.join(5, "cache-b", None);
    sim.join(5, "news", None);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn subscription_count_coalesced_per_turn_with_the_latest_count() {
    let mut sim = Sim::with(hooked(&[Kind::SubscriptionCount]));
    for c in [1, 2, 3] {
        sim.connect(c);
        sim.join(c, "news", None);
    }
    assert_eq!(hooks(&mut sim), ["subscription_count news count=3"]);
    // one leaves and one comes in the same turn: the count did not change
    sim.close(1);
    sim.connect(4);
    sim.join(4, "news", None);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.close(2);
    assert_eq!(hooks(&mut sim), ["subscription_count news count=2"]);
    sim.close(3);
    sim.close(4);
    assert_eq!(hooks(&mut sim), ["subscription_count news count=0"]);
    assert!(state(&sim, 0).unwrap().is_empty());
    // not for presence channels
    sim.connect(5);
    sim.join(5, "presence-room", Some(&member("1", "Ann")));
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
}

// ---- one node: filters, configuration, no webhooks ------------------------------

#[test]
fn filters_and_event_types_choose_what_is_sent_and_kept() {
    let mut sim = Sim::with(|a| {
        let mut private = webhook(&[Kind::ChannelOccupied]);
        private.filter.starts_with = Some("private-".into());
        let mut rooms = webhook(&[Kind::MemberAdded]);
        rooms.filter.ends_with = Some("-room".into());
        a.webhooks = vec![private, rooms];
    });
    sim.connect(1);
    sim.join(1, "news", None);
    sim.join(1, "private-x", None);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    sim.join(1, "presence-hall", Some(&member("1", "Ann")));
    sim.whisper(1, "private-x", "client-e", json!({}));
    assert_eq!(
        hooks(&mut sim),
        [
            "channel_occupied private-x",
            "member_added presence-room user_id=1"
        ]
    );
    // state only for the channel a webhook tracks
    let h = state(&sim, 0).unwrap();
    let rooms: Vec<&str> = h.rooms.keys().map(|k| &**k).collect();
    assert_eq!(rooms, ["private-x"]);
    sim.close(1);
    sim.advance_to(10_000);
    // no vacated (not wanted) and no member_removed (not wanted) ...
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    assert!(state(&sim, 0).unwrap().is_empty());
}

#[test]
fn without_webhooks_there_is_no_output_and_no_state() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    for c in [1, 2] {
        sim.join(c, "news", None);
        sim.join(c, "cache-x", None);
        sim.join(c, "private-chat", None);
        sim.join(c, "presence-room", Some(&member(&c.to_string(), "U")));
    }
    sim.whisper(1, "private-chat", "client-e", json!({}));
    sim.close(1);
    sim.advance_to(10_000);
    sim.drain();
    assert!(sim.take_webhooks().is_empty());
    let hub = &sim.nodes[0].hub;
    assert!(hub.apps[0].hooks.is_none());
    let w = &hub.webhooks;
    assert!(w.warm.is_none() && w.flush_at.is_none() && w.sweep_at.is_none());
    assert_eq!(hub.hooks_poll_timeout(), None);
}

#[test]
fn webhooks_added_by_a_reload_start_from_the_present() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.join(1, "news", None);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    // SIGHUP: the app now has webhooks. No burst for what exists.
    let mut a = app();
    a.webhooks = vec![webhook(&[
        Kind::ChannelOccupied,
        Kind::ChannelVacated,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::SubscriptionCount,
    ])];
    sim.hub(0).reload_apps(0, vec![a.clone()]);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    sim.connect(2);
    sim.join(2, "news", None);
    assert_eq!(hooks(&mut sim), ["subscription_count news count=2"]);
    // what existed is vacated and removed when it goes
    sim.close(1);
    sim.close(2);
    sim.advance_to(DELAY);
    assert_eq!(
        events(&hooks(&mut sim)),
        [
            "channel_vacated news",
            "channel_vacated presence-room",
            "member_removed presence-room user_id=1",
            "subscription_count news count=0",
        ]
    );
}

#[test]
fn webhooks_removed_by_a_reload_drop_what_was_pending() {
    let mut sim = Sim::with(hooked(PRESENCE));
    sim.connect(1);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    assert_eq!(hooks(&mut sim).len(), 2);
    sim.close(1);
    sim.hub(0).reload_apps(0, vec![app()]);
    sim.advance_to(10_000);
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    assert!(state(&sim, 0).is_none());
    // a filter narrowed by a reload drops the channels it no longer covers
    let mut sim = Sim::with(hooked(OCCUPANCY));
    sim.connect(1);
    sim.join(1, "news", None);
    sim.join(1, "private-x", None);
    assert_eq!(hooks(&mut sim).len(), 2);
    sim.close(1);
    let mut a = app();
    let mut w = webhook(OCCUPANCY);
    w.filter.starts_with = Some("private-".into());
    a.webhooks = vec![w];
    sim.hub(0).reload_apps(0, vec![a]);
    sim.advance_to(10_000);
    assert_eq!(hooks(&mut sim), ["channel_vacated private-x"]);
    assert!(state(&sim, 0).unwrap().is_empty());
}

#[test]
fn a_node_alone_sends_what_is_pending_when_it_shuts_down() {
    let mut sim = Sim::with(hooked(PRESENCE));
    sim.connect(1);
    sim.join(1, "presence-room", Some(&member("1", "Ann")));
    sim.connect(2);
    sim.join(2, "news", None);
    assert_eq!(hooks(&mut sim).len(), 3);
    sim.close(2);
    sim.advance_to(1000);
    sim.hub(0).shutdown(1000);
    sim.nodes[0].poll();
    assert_eq!(
        sim.take_webhooks()
            .iter()
            .map(|(_, e)| text(e))
            .collect::<Vec<_>>(),
        [
            "channel_vacated news",
            "member_removed presence-room user_id=1",
            "channel_vacated presence-room"
        ]
    );
}

#[test]
fn server_to_user_channels_have_no_webhooks() {
    let mut sim = Sim::with(hooked(&Kind::ALL));
    sim.connect(1);
    sim.signin(1, r#"{"id":"u1"}"#);
    sim.drain();
    assert_eq!(hooks(&mut sim), Vec::<String>::new());
    assert!(state(&sim, 0).unwrap().is_empty());
}

#[test]
fn memory_is_given_back_after_a_burst() {
    let mut sim = Sim::with(hooked(&Kind::ALL));
    sim.connect(1);
    for i in 0..50 {
        sim.join(1, &format!("news-{i}"), None);
        sim.join(1, &format!("presence-{i}"), Some(&member("1", "Ann")));
    }
    sim.drain();
    // news: occupied and count; presence: occupied and member_added
    assert_eq!(hooks(&mut sim).len(), 50 * 4);
    sim.close(1);
    sim.advance_to(DELAY);
    assert_eq!(hooks(&mut sim).len(), 50 * 4);
    let h = state(&sim, 0).unwrap();
    assert!(h.is_empty());
    assert!(h.rooms.capacity() <= 64, "{}", h.rooms.capacity());
    assert!(h.members.capacity() <= 64, "{}", h.members.capacity());
}

// ---- a cluster ------------------------------------------------------------------

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// `n` nodes with webhooks for `kinds`, settled, nothing sent yet.
fn cluster(n: usize, kinds: &[Kind]) -> Sim {
    let mut sim = Sim::cluster_with(n, hooked(kinds));
    sim.advance_to(TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim
}

/// A channel `owner` owns among nodes `0..n`, occupied by a client on A
/// (A/1), and its `channel_occupied` sent by the owner.
fn occupied_from_a(sim: &mut Sim, owner: usize, n: usize) -> String {
    let ch = owned_by(owner, n, "room-");
    sim.connect((A, 1));
    sim.join((A, 1), &ch, None);
    sim.pump();
    assert_eq!(
        cluster_hooks(sim),
        [format!("{owner}: channel_occupied {ch}")]
    );
    ch
}

#[test]
fn first_subscribers_on_two_nodes_at_the_same_instant_make_one_occupied() {
    let mut sim = cluster(2, OCCUPANCY);
    let channels: Vec<String> = (0..20).map(|i| format!("news-{i}")).collect();
    sim.connect((A, 1));
    sim.connect((B, 1));
    for ch in &channels {
        sim.join((A, 1), ch, None);
        sim.join((B, 1), ch, None);
    }
    sim.pump();
    let got = cluster_hooks(&mut sim);
    let mut want: Vec<String> = channels
        .iter()
        .map(|ch| format!("{}: channel_occupied {ch}", owner(2, ch)))
        .collect();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
    // both owners are used
    assert!(got.iter().any(|l| l.starts_with("0:")) && got.iter().any(|l| l.starts_with("1:")));
    // nothing more once the records are settled
    sim.advance(3 * TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    for node in [A, B] {
        assert!(state(&sim, node).unwrap().handoffs.is_empty());
    }
}

#[test]
fn last_leaves_on_two_nodes_at_the_same_instant_make_one_vacated() {
    let mut sim = cluster(2, OCCUPANCY);
    sim.connect((A, 1));
    sim.connect((B, 1));
    for ch in ["a-news", "b-news"] {
        sim.join((A, 1), ch, None);
        sim.join((B, 1), ch, None);
    }
    sim.pump();
    assert_eq!(cluster_hooks(&mut sim).len(), 2);
    sim.advance_to(10_000);
    sim.close((A, 1));
    sim.close((B, 1));
    sim.pump();
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(10_000 + DELAY - 1);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(10_000 + DELAY);
    let got = cluster_hooks(&mut sim);
    let mut want = vec![
        format!("{}: channel_vacated a-news", owner(2, "a-news")),
        format!("{}: channel_vacated b-news", owner(2, "b-news")),
    ];
    want.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, want);
    sim.advance(3 * TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn a_user_on_two_nodes_is_added_and_removed_once() {
    let mut sim = cluster(2, MEMBERS);
    let ch = "presence-room";
    sim.connect((A, 1));
    sim.connect((B, 1));
    sim.join((A, 1), ch, Some(&member("5", "Five")));
    sim.join((B, 1), ch, Some(&member("5", "Five")));
    sim.pump();
    let o = owner(2, ch);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{o}: member_added presence-room user_id=5")]
    );
    // one tab closes: still a member
    sim.advance_to(10_000);
    sim.close((A, 1));
    sim.pump();
    sim.advance_to(20_000);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim.close((B, 1));
    sim.pump();
    sim.advance_to(20_000 + DELAY);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{o}: member_removed presence-room user_id=5")]
    );
}

#[test]
fn a_reload_onto_another_node_within_the_delay_sends_nothing() {
    let mut sim = cluster(2, PRESENCE);
    let ch = "presence-room";
    sim.connect((A, 1));
    sim.join((A, 1), ch, Some(&member("5", "Five")));
    sim.pump();
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 2);
    // the page reloads and the new connection lands on the other node
    sim.advance_to(10_000);
    sim.close((A, 1));
    sim.pump();
    sim.advance_to(10_000 + DELAY - 200);
    sim.connect((B, 2));
    sim.join((B, 2), ch, Some(&member("5", "Five")));
    sim.pump();
    sim.advance_to(40_000);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    for node in [A, B] {
        assert!(state(&sim, node).unwrap().timers.is_empty());
    }
}

#[test]
fn a_dead_node_has_its_channels_vacated_and_members_removed_once() {
    let mut sim = cluster(3, PRESENCE);
    let dead = C;
    sim.connect((dead, 1));
    sim.join((dead, 1), "presence-room", Some(&member("9", "Nine")));
    for i in 0..10 {
        sim.join((dead, 1), &format!("news-{i}"), None);
    }
    // a channel also occupied on a survivor stays occupied
    sim.connect((A, 1));
    sim.join((A, 1), "news-0", None);
    sim.pump();
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 12);
    // its heartbeats confirm it sent what it owned
    sim.advance(2 * HANDOFF_MARGIN_MS);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());

    sim.nodes[dead].running = false;
    let died = sim.now;
    // dropped after the node timeout (last heard at its last heartbeat),
    // then the delay
    sim.advance_to(died + TIMEOUT - 1);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(died + TIMEOUT + DELAY + 1);
    let got = cluster_hooks(&mut sim);
    let mut want = vec![
        "channel_vacated presence-room".to_string(),
        "member_removed presence-room user_id=9".to_string(),
    ];
    want.extend((1..10).map(|i| format!("channel_vacated news-{i}")));
    want.sort();
    assert_eq!(events(&got), want);
    // each by the channel's owner among the survivors
    for line in &got {
        let ch = line.split(' ').nth(2).unwrap();
        let survivors = ["node0", "node1"];
        let o = owner_of(survivors.into_iter(), APP_ID, ch).unwrap();
        assert!(line.starts_with(&format!("{}:", &o[4..])), "{line}");
    }
    sim.advance(3 * TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn an_owner_that_dies_right_after_sending_is_repeated_by_the_survivors() {
    // the documented window: the survivors cannot tell "sent, then died"
    // from "died before sending" when nothing came from the owner since
    let mut sim = cluster(2, OCCUPANCY);
    let ch = occupied_from_a(&mut sim, B, 2);
    sim.nodes[B].running = false;
    sim.advance(TIMEOUT + 1);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("0: channel_occupied {ch}")]
    );
}

#[test]
fn client_event_is_sent_once_by_the_receiving_node() {
    let mut sim = cluster(3, &[Kind::ClientEvent]);
    for node in [A, B, C] {
        sim.connect((node, 1));
        sim.join((node, 1), "private-chat", None);
    }
    sim.pump();
    sim.whisper((B, 1), "private-chat", "client-hi", json!({"a": "b"}));
    sim.pump();
    sim.drain();
    let sid = sim.sid((B, 1));
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!(
            r#"1: client_event private-chat event=client-hi data={{"a":"b"}} socket_id={sid}"#
        )]
    );
}

#[test]
fn subscription_count_is_sent_once_per_change_by_the_owner() {
    let mut sim = cluster(2, &[Kind::SubscriptionCount]);
    let ch = "news";
    let o = owner(2, ch);
    sim.connect((A, 1));
    sim.join((A, 1), ch, None);
    sim.pump();
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{o}: subscription_count news count=1")]
    );
    sim.connect((B, 1));
    sim.connect((B, 2));
    sim.join((B, 1), ch, None);
    sim.join((B, 2), ch, None);
    sim.pump();
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{o}: subscription_count news count=3")]
    );
}

#[test]
fn an_owner_that_dies_mid_delay_hands_its_vacate_to_the_survivors() {
    let mut sim = cluster(3, OCCUPANCY);
    // a channel C owns, whose subscriber is on A
    let ch = occupied_from_a(&mut sim, C, 3);
    sim.advance_to(10_000);
    sim.close((A, 1));
    sim.pump();
    // C dies before the vacate is due; at the deadline A and B still count
    // it alive, and keep the event for it
    sim.advance_to(10_500);
    sim.nodes[C].running = false;
    sim.advance_to(10_000 + DELAY);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    for node in [A, B] {
        assert_eq!(state(&sim, node).unwrap().handoffs.len(), 1);
    }
    // once C is dropped the new owner sends it, once
    sim.advance_to(10_500 + TIMEOUT + 1);
    let survivors = ["node0", "node1"];
    let o = owner_of(survivors.into_iter(), APP_ID, &ch).unwrap();
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{}: channel_vacated {ch}", &o[4..])]
    );
    sim.advance(3 * TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    for node in [A, B] {
        assert!(state(&sim, node).unwrap().handoffs.is_empty());
    }
}

#[test]
fn an_owner_that_says_bye_has_its_pending_events_sent_by_the_others() {
    let mut sim = cluster(2, OCCUPANCY);
    let ch = occupied_from_a(&mut sim, B, 2);
    sim.advance_to(10_000);
    sim.close((A, 1));
    sim.pump();
    // B shuts down before the vacate is due: A is left, and sends it
    sim.advance_to(11_000);
    let now = sim.now;
    sim.hub(B).shutdown(now);
    sim.hub(B).cluster_goodbye(now);
    sim.pump();
    sim.nodes[B].running = false;
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    sim.advance_to(10_000 + DELAY);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("0: channel_vacated {ch}")]
    );
}

#[test]
fn a_node_that_joins_does_not_report_again_what_was_reported() {
    let mut sim = cluster(2, PRESENCE);
    let channels: Vec<String> = (0..20).map(|i| format!("news-{i}")).collect();
    sim.connect((A, 1));
    for ch in &channels {
        sim.join((A, 1), ch, None);
    }
    sim.connect((B, 1));
    sim.join((B, 1), "presence-room", Some(&member("5", "Five")));
    sim.pump();
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 22);

    // a third node starts, with a client of its own on a new channel
    sim.advance_to(10_000);
    let c = sim.add_node();
    sim.connect((c, 1));
    sim.join((c, 1), "fresh", None);
    sim.join((c, 1), "news-0", None);
    sim.join((c, 1), "presence-room", Some(&member("6", "Six")));
    sim.connect((c, 2));
    sim.join((c, 2), "presence-room", Some(&member("5", "Five")));
    sim.pump();
    sim.advance_to(10_000 + TIMEOUT);
    // only what is new, once, whoever owns it
    assert_eq!(
        events(&cluster_hooks(&mut sim)),
        [
            "channel_occupied fresh",
            "member_added presence-room user_id=6"
        ]
    );
    // ownership moved: every vacate is sent once, some by the new node
    sim.close((c, 1));
    sim.close((c, 2));
    sim.pump();
    sim.advance(DELAY);
    assert_eq!(
        events(&cluster_hooks(&mut sim)),
        [
            "channel_vacated fresh",
            "member_removed presence-room user_id=6"
        ]
    );
    sim.close((A, 1));
    sim.pump();
    sim.advance(DELAY);
    let got = cluster_hooks(&mut sim);
    let want: Vec<String> = {
        let mut w: Vec<String> = channels
            .iter()
            .map(|ch| format!("channel_vacated {ch}"))
            .collect();
        w.sort();
        w
    };
    assert_eq!(events(&got), want);
    for line in &got {
        let ch = line.split(' ').nth(2).unwrap();
        assert!(line.starts_with(&format!("{}:", owner(3, ch))), "{line}");
    }
    assert!(got.iter().any(|l| l.starts_with("2:")), "{got:?}");
}

#[test]
fn a_node_without_redis_at_start_reports_alone_then_joins_without_a_burst() {
    let mut sim = cluster(2, OCCUPANCY);
    sim.connect((A, 1));
    for i in 0..20 {
        sim.join((A, 1), &format!("news-{i}"), None);
    }
    sim.pump();
    assert_eq!(cluster_hooks(&mut sim).len(), 20);
    // a third node starts while Redis is away from it
    sim.advance_to(10_000);
    let c = sim.add_node_unlinked();
    sim.connect((c, 1));
    sim.join((c, 1), "solo", None);
    sim.advance_to(10_000 + TIMEOUT - 1);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    // settled alone, it reports its own clients
    sim.advance_to(10_000 + TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), ["2: channel_occupied solo"]);
    // linked at last: the cluster's 20 channels are not reported again
    sim.advance_to(20_000);
    sim.link_up(c);
    sim.pump();
    sim.advance(TIMEOUT);
    let got = cluster_hooks(&mut sim);
    assert!(
        got.iter().all(|l| l.ends_with(" solo")),
        "only solo may be repeated (by its owner, who did not know): {got:?}"
    );
}

#[test]
fn a_short_link_outage_freezes_the_view_without_a_vacated_storm() {
    let mut sim = cluster(2, PRESENCE);
    sim.connect((B, 1));
    sim.join((B, 1), "presence-room", Some(&member("5", "Five")));
    for i in 0..10 {
        sim.join((B, 1), &format!("news-{i}"), None);
    }
    sim.connect((A, 1));
    sim.join((A, 1), "a-news", None);
    sim.pump();
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 13);
    // A's link goes down for less than the node timeout: nobody is dropped,
    // nothing is reported
    sim.advance_to(10_000);
    sim.link_down(A);
    sim.advance_to(10_000 + TIMEOUT - 100);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    // meanwhile B's client leaves a channel: reported once the link is back
    sim.send(
        (B, 1),
        r#"{"event":"pusher:unsubscribe","data":{"channel":"news-0"}}"#,
    );
    sim.pump();
    sim.link_up(A);
    sim.pump();
    sim.advance(DELAY + TIMEOUT);
    assert_eq!(events(&cluster_hooks(&mut sim)), ["channel_vacated news-0"]);
}

#[test]
fn a_bus_that_stops_delivering_to_every_node_reports_nothing() {
    let mut sim = cluster(3, PRESENCE);
    sim.connect((A, 1));
    sim.join((A, 1), "a-news", None);
    sim.connect((B, 1));
    sim.join((B, 1), "presence-room", Some(&member("5", "Five")));
    sim.join((B, 1), "b-news", None);
    sim.connect((C, 1));
    sim.join((C, 1), "presence-room", Some(&member("6", "Six")));
    sim.pump();
    sim.advance(DELAY);
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 5);
    // Redis stalls with every connection up: no node hears anything, not
    // even itself, so none reports another's channels vacated or members
    // removed, neither during the stall nor when it ends
    for n in [A, B, C] {
        sim.nodes[n].link = Link::Cut;
    }
    sim.advance(4 * TIMEOUT + DELAY);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    for n in [A, B, C] {
        sim.nodes[n].link = Link::Up;
    }
    sim.advance(2 * TIMEOUT + DELAY);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
    // what changes afterwards is reported once, as before the stall
    sim.send(
        (B, 1),
        r#"{"event":"pusher:unsubscribe","data":{"channel":"b-news"}}"#,
    );
    sim.pump();
    sim.advance(DELAY + 100);
    assert_eq!(events(&cluster_hooks(&mut sim)), ["channel_vacated b-news"]);
}

#[test]
fn what_changes_during_a_stall_is_reported_once() {
    let mut sim = cluster(2, OCCUPANCY);
    let mine = owned_by(A, 2, "mine-");
    let theirs = owned_by(B, 2, "theirs-");
    sim.connect((A, 1));
    sim.join((A, 1), &mine, None);
    sim.join((A, 1), &theirs, None);
    sim.pump();
    sim.advance(DELAY);
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 2);
    for n in [A, B] {
        sim.nodes[n].link = Link::Cut;
    }
    sim.advance(TIMEOUT);
    assert!(sim.hub(A).cluster_deaf());
    // A's client leaves both; A owns one and sends it, the other waits for
    // its owner, who hears of it once the bus is back
    for ch in [&mine, &theirs] {
        sim.send(
            (A, 1),
            &json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}).to_string(),
        );
    }
    sim.pump();
    sim.advance(DELAY + 100);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("0: channel_vacated {mine}")]
    );
    for n in [A, B] {
        sim.nodes[n].link = Link::Up;
    }
    sim.advance(2 * TIMEOUT + DELAY);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("1: channel_vacated {theirs}")]
    );
    sim.advance(3 * TIMEOUT);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn a_node_cut_off_alone_is_reported_gone_and_back_once() {
    let mut sim = cluster(3, OCCUPANCY);
    sim.connect((B, 1));
    sim.join((B, 1), "b-only", None);
    sim.join((B, 1), "shared", None);
    sim.connect((A, 1));
    sim.join((A, 1), "shared", None);
    sim.pump();
    sim.advance(DELAY);
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 2);
    // B is cut off without knowing it, long enough for the others to drop
    // it and report its channel; B, deaf, reports nothing
    sim.nodes[B].link = Link::Cut;
    sim.advance(TIMEOUT + DELAY + 100);
    let got = cluster_hooks(&mut sim);
    assert_eq!(events(&got), ["channel_vacated b-only"]);
    assert!(!got[0].starts_with("1:"), "{got:?}");
    assert!(sim.hub(B).cluster_deaf());
    // back: the others' `want` tells B it was dropped; it settles again and
    // its channel is occupied again, once
    sim.nodes[B].link = Link::Up;
    sim.advance(2 * TIMEOUT);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{}: channel_occupied b-only", owner(3, "b-only"))]
    );
    assert!(!sim.hub(B).cluster_deaf());
    sim.advance(3 * TIMEOUT + DELAY);
    assert_eq!(cluster_hooks(&mut sim), Vec::<String>::new());
}

#[test]
fn a_long_link_outage_is_reported_as_the_node_leaving_and_coming_back() {
    let mut sim = cluster(2, OCCUPANCY);
    sim.connect((B, 1));
    for i in 0..10 {
        sim.join((B, 1), &format!("news-{i}"), None);
    }
    sim.connect((A, 1));
    sim.join((A, 1), "a-news", None);
    sim.join((A, 1), "a-gone", None);
    sim.pump();
    assert_eq!(events(&cluster_hooks(&mut sim)).len(), 12);
    // A's link goes down for longer than the node timeout and the delay
    sim.advance_to(10_000);
    sim.link_down(A);
    // B's clients change things meanwhile
    sim.advance_to(11_000);
    let unsubscribe =
        |ch: &str| json!({"event": "pusher:unsubscribe", "data": {"channel": ch}}).to_string();
    sim.send((B, 1), &unsubscribe("news-0"));
    sim.join((B, 1), "b-new", None);
    sim.pump();
    // and so do A's, once the others have dropped it
    sim.advance_to(10_000 + TIMEOUT + 500);
    sim.send((A, 1), &unsubscribe("a-gone"));
    sim.advance_to(10_000 + 3 * TIMEOUT);
    // B, alone, reported everything; A, cut off, nothing
    assert_eq!(
        cluster_hooks(&mut sim),
        [
            "1: channel_occupied b-new",
            "1: channel_vacated news-0",
            "1: channel_vacated a-gone",
            "1: channel_vacated a-news",
        ]
    );
    // back: A's channel is occupied again, once; nothing else is repeated
    sim.link_up(A);
    sim.pump();
    sim.advance(TIMEOUT);
    assert_eq!(
        cluster_hooks(&mut sim),
        [format!("{}: channel_occupied a-news", owner(2, "a-news"))]
    );
    // and from then on, as usual
    sim.close((A, 1));
    sim.close((B, 1));
    sim.pump();
    sim.advance(DELAY + TIMEOUT);
    let mut want: Vec<String> = (1..10)
        .map(|i| format!("channel_vacated news-{i}"))
        .collect();
    want.push("channel_vacated a-news".into());
    want.push("channel_vacated b-new".into());
    want.sort();
    assert_eq!(events(&cluster_hooks(&mut sim)), want);
}

#[test]
fn the_owner_spreads_over_the_nodes_and_views_agree() {
    let mut sim = cluster(3, OCCUPANCY);
    let mut by_node = [0; 3];
    for node in 0..3 {
        sim.connect((node, 1));
    }
    for i in 0..60 {
        let ch = format!("c-{i}");
        let node = i % 3;
        sim.join((node, 1), &ch, None);
        by_node[owner(3, &ch)] += 1;
    }
    sim.pump();
    let got = cluster_hooks(&mut sim);
    assert_eq!(got.len(), 60);
    for node in 0..3 {
        let sent = got
            .iter()
            .filter(|l| l.starts_with(&format!("{node}:")))
            .count();
        assert_eq!(sent, by_node[node]);
        assert!(sent > 5, "{by_node:?}");
    }
}

#[test]
fn rendezvous_is_stable_and_moves_only_a_leaving_nodes_channels() {
    let nodes = ["a", "b", "c"];
    let mut owners = std::collections::HashMap::new();
    for i in 0..300 {
        let ch = format!("chan-{i}");
        let o1 = owner_of(nodes.iter().copied(), "app", &ch).unwrap();
        let o2 = owner_of(nodes.iter().rev().copied(), "app", &ch).unwrap();
        assert_eq!(o1, o2);
        *owners.entry(o1).or_insert(0) += 1;
        let after = owner_of(["a", "b"].into_iter(), "app", &ch).unwrap();
        if o1 != "c" {
            assert_eq!(o1, after);
        }
    }
    for n in nodes {
        assert!(owners[n] > 60, "{owners:?}");
    }
    // a fixed value: every node and build must compute the same
    assert_eq!(
        owner_score("node0", "123456", "news"),
        0x82c2_3a56_7f10_7740
    );
    assert_eq!(owner_of(std::iter::empty(), "a", "c"), None);
}

//! Scenario tests: several hubs joined by a simulated Redis channel, driven
//! by the simulator `pusher::tests` uses too (`pusher::sim`).
//!
//! Each node is a whole `Hub` with the same app; `Sim::pump` plays Redis: it
//! takes what every node published and hands it to every other node (and back
//! to the sender, as Redis pub/sub does), round after round, until nobody has
//! anything left to say. The clock is shared and simulated. A connection is
//! `(node, slot)`. Assertions are on the exact JSON text each client
//! receives, as in `pusher::tests`.

use super::super::App;
use super::super::sim::*;
use super::*;
use serde_json::json;

// ---- fixtures ----------------------------------------------------------------

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

// ---- expected messages ---------------------------------------------------------

/// `s` as a JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// An API event as clients receive it.
fn event(name: &str, data: &str, channel: &str) -> String {
    format!(
        r#"{{"event":"{name}","data":{},"channel":"{channel}"}}"#,
        quoted(data)
    )
}

/// `member_added` for a member whose `channel_data` is `cd`.
fn added(channel: &str, cd: &str) -> String {
    format!(
        r#"{{"event":"pusher_internal:member_added","data":{},"channel":"{channel}"}}"#,
        quoted(cd)
    )
}

/// `member_removed`; `id` is raw JSON.
fn removed(channel: &str, id: &str) -> String {
    format!(
        r#"{{"event":"pusher_internal:member_removed","data":{},"channel":"{channel}"}}"#,
        quoted(&format!(r#"{{"user_id":{id}}}"#))
    )
}

const ROOM: &str = "presence-room";

/// Connection `obs` on each node (A: 10, B: 20, C: 30) as user 100, 200, 300
/// in `ROOM`, in sync and drained.
fn observers(sim: &mut Sim) {
    for node in [A, B, C] {
        let conn = 10 * (node + 1);
        sim.connect((node, conn));
        sim.join(
            (node, conn),
            ROOM,
            Some(&member(&(conn * 10).to_string(), "obs")),
        );
        sim.pump();
        sim.drain();
    }
}

/// Three nodes with their observers, and user 9 also in ROOM on B (B/21);
/// everything so far delivered and drained.
fn observed_with_nine_on_b() -> Sim {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    sim.connect((B, 21));
    sim.join((B, 21), ROOM, Some(&member("9", "Nine")));
    sim.pump();
    sim.drain();
    sim
}

// ---- 1. API events -------------------------------------------------------------

#[test]
fn api_event_reaches_every_node_once_and_the_echo_is_ignored() {
    let mut sim = Sim::cluster(3);
    for (node, conn) in [(A, 1), (B, 2), (C, 3)] {
        sim.connect((node, conn));
        sim.join((node, conn), "news", None);
    }
    sim.connect((B, 4));
    sim.join((B, 4), "sport", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![]);
    let mark = sim.wire.len();

    assert_eq!(
        sim.trigger_on(A, &["news", "sport"], "update", r#"{"x":1}"#, None),
        1
    );
    let news = event("update", r#"{"x":1}"#, "news");
    assert_eq!(
        news,
        r#"{"event":"update","data":"{\"x\":1}","channel":"news"}"#
    );
    // A's own subscriber at once, before anything went over the bus
    assert_eq!(sim.drain(), vec![o((A, 1), &news)]);

    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((B, 2), &news),
            o((B, 4), &event("update", r#"{"x":1}"#, "sport")),
            o((C, 3), &news),
        ]
    );
    // one message on the bus, and the wire form is the envelope's
    assert_eq!(sim.wire_types(A, mark), vec!["event"]);
    let msg = sim.last_wire(A, "event");
    let env = Envelope::decode(msg.as_bytes()).unwrap();
    assert_eq!(env.node, "node0");
    assert_eq!(
        env.body,
        Body::Event {
            app: APP_ID.into(),
            channels: vec!["news".into(), "sport".into()],
            event: "update".into(),
            data: r#"{"x":1}"#.into(),
            socket_id: None,
        }
    );
    // the echo Redis gives the publisher (already fed by the pump) delivered
    // nothing; once more by hand to be sure
    sim.remote(A, msg.as_bytes());
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.hub(A).cluster().unwrap().duplicates, 0);
    assert_eq!(sim.hub(A).cluster().unwrap().bad_messages, 0);
    assert_eq!(sim.poll_publish(A), None);
}

#[test]
fn without_an_echo_the_same_deliveries_happen() {
    let mut sim = Sim::cluster(2);
    sim.echo = false;
    sim.connect((A, 1));
    sim.join((A, 1), "news", None);
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.pump();
    sim.trigger_on(B, &["news"], "e", "d", None);
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((A, 1), &event("e", "d", "news")),
            o((B, 2), &event("e", "d", "news"))
        ]
    );
}

// ---- 2. socket_id exclusion ----------------------------------------------------

#[test]
fn except_socket_id_of_a_connection_on_another_node() {
    let mut sim = Sim::cluster(3);
    for (node, conn) in [(A, 1), (B, 2), (B, 3), (C, 4)] {
        sim.connect((node, conn));
        sim.join((node, conn), "news", None);
    }
    sim.pump();
    let ev = event("e", "d", "news");

    let b2 = sim.sid((B, 2));
    assert_eq!(sim.trigger_on(A, &["news"], "e", "d", Some(&b2)), 1);
    assert_eq!(sim.drain(), vec![o((A, 1), &ev)]);
    sim.pump();
    assert_eq!(sim.drain_sorted(), vec![o((B, 3), &ev), o((C, 4), &ev)]);
    assert_eq!(
        envelope(&sim.last_wire(A, "event"))["socket_id"],
        Value::String(b2)
    );

    // a local socket id is left out locally and nowhere else
    let a1 = sim.sid((A, 1));
    assert_eq!(sim.trigger_on(A, &["news"], "e", "d", Some(&a1)), 0);
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![o((B, 2), &ev), o((B, 3), &ev), o((C, 4), &ev)]
    );
}

// ---- 3. client events ----------------------------------------------------------

#[test]
fn client_events_cross_nodes_with_the_exact_shape() {
    let mut sim = Sim::cluster(3);
    for (node, conn) in [(A, 1), (A, 5), (B, 2), (C, 3)] {
        sim.connect((node, conn));
        sim.join((node, conn), "private-chat", None);
    }
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    sim.whisper((A, 1), "private-chat", "client-typing", json!({"x": 1}));
    let typing = r#"{"event":"client-typing","channel":"private-chat","data":{"x":1}}"#;
    // the other local subscriber at once, never the sender
    assert_eq!(sim.drain(), vec![o((A, 5), typing)]);
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![o((B, 2), typing), o((C, 3), typing)]
    );

    // presence: user_id travels with it, as given (a string here)
    sim.join((A, 1), ROOM, Some(&member(r#""u1""#, "A")));
    sim.join((B, 2), ROOM, Some(&member("2", "B")));
    sim.pump();
    sim.drain();
    sim.whisper((A, 1), ROOM, "client-wave", json!([1, "two"]));
    assert_eq!(sim.drain(), vec![]);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o(
            (B, 2),
            r#"{"event":"client-wave","channel":"presence-room","data":[1,"two"],"user_id":"u1"}"#
        )]
    );
    // and back from B, with a numeric user_id
    sim.whisper((B, 2), ROOM, "client-wave", json!({"k": null}));
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o(
            (A, 1),
            r#"{"event":"client-wave","channel":"presence-room","data":{"k":null},"user_id":2}"#
        )]
    );
}

// ---- 4. presence ---------------------------------------------------------------

#[test]
fn presence_members_on_two_nodes() {
    let mut sim = Sim::cluster(2);
    sim.connect((A, 1));
    sim.connect((B, 2));
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    sim.subscribe_signed(
        (B, 2),
        ROOM,
        Some(r#"{"user_id":"u2","user_info":{"n":1},"extra":true}"#),
    );
    // this node's members first, then the others'
    assert_eq!(
        sim.drain(),
        vec![o(
            (B, 2),
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[\"u2\",1],\"hash\":{\"u2\":{\"n\":1},\"1\":{\"name\":\"A\"}}}}","channel":"presence-room"}"#
        )]
    );
    sim.pump();
    // the whole channel_data, key order and extra keys kept
    assert_eq!(
        sim.drain(),
        vec![o(
            (A, 1),
            r#"{"event":"pusher_internal:member_added","data":"{\"user_id\":\"u2\",\"user_info\":{\"n\":1},\"extra\":true}","channel":"presence-room"}"#
        )]
    );
    sim.pump();
    assert_eq!(sim.drain(), vec![], "once");

    sim.close((B, 2));
    assert_eq!(sim.drain(), vec![]);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o(
            (A, 1),
            r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":\"u2\"}","channel":"presence-room"}"#
        )]
    );
}

#[test]
fn one_user_with_tabs_on_two_nodes_is_one_member() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    let one = member("1", "Joe");

    // first tab, on A: A's observer at once, the others after the bus
    sim.connect((A, 11));
    let out = sim.join((A, 11), ROOM, Some(&one));
    assert_eq!(out[1..], [o((A, 10), &added(ROOM, &one))]);
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((B, 20), &added(ROOM, &one)),
            o((C, 30), &added(ROOM, &one))
        ]
    );

    // second tab, on B: nobody hears anything
    sim.connect((B, 21));
    let out = sim.join((B, 21), ROOM, Some(&one));
    assert_eq!(
        out,
        vec![o(
            (B, 21),
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":4,\"ids\":[200,1,100,300],\"hash\":{\"200\":{\"name\":\"obs\"},\"1\":{\"name\":\"Joe\"},\"100\":{\"name\":\"obs\"},\"300\":{\"name\":\"obs\"}}}}","channel":"presence-room"}"#
        )]
    );
    sim.pump();
    assert_eq!(sim.drain(), vec![]);
    for node in [A, B, C] {
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":4}"#
        );
    }

    // closing the A tab: the user is still a member through B
    sim.close((A, 11));
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    // closing the B tab: removed once on every node
    sim.close((B, 21));
    assert_eq!(sim.drain(), vec![o((B, 20), &removed(ROOM, "1"))]);
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((A, 10), &removed(ROOM, "1")),
            o((C, 30), &removed(ROOM, "1"))
        ]
    );
    for node in [A, B, C] {
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":3}"#
        );
    }
}

#[test]
fn concurrent_joins_and_leaves_of_one_user_are_announced_once() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    let one = member("1", "Joe");

    // the same user joins on A and B before either hears of the other
    sim.connect((A, 11));
    sim.connect((B, 21));
    sim.subscribe_signed((A, 11), ROOM, Some(&one));
    sim.subscribe_signed((B, 21), ROOM, Some(&one));
    sim.pump();
    let out = sim.drain();
    let mut members: Vec<Out> = out
        .iter()
        .filter(|(at, _)| ![11, 21].contains(&at.conn))
        .cloned()
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            o((A, 10), &added(ROOM, &one)),
            o((B, 20), &added(ROOM, &one)),
            o((C, 30), &added(ROOM, &one)),
        ]
    );
    assert_eq!(only(&out, (A, 11)).len(), 1, "{out:?}");
    assert_eq!(only(&out, (B, 21)).len(), 1, "{out:?}");
    for node in [A, B, C] {
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":4}"#
        );
    }

    // both tabs close before either hears of the other
    sim.close((A, 11));
    sim.close((B, 21));
    assert_eq!(sim.drain(), vec![], "each still sees the other tab");
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((A, 10), &removed(ROOM, "1")),
            o((B, 20), &removed(ROOM, "1")),
            o((C, 30), &removed(ROOM, "1")),
        ]
    );
    for node in [A, B, C] {
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":3}"#
        );
    }
}

// ---- 5. queries ------------------------------------------------------------------

/// Longer than most: one story whose every step starts from the state the
/// step before left; split, each part would have to replay the story so far.
#[test]
fn queries_are_cluster_wide_and_not_double_counted() {
    let mut sim = Sim::cluster(3);
    for (node, conn) in [(A, 1), (A, 2), (B, 3), (B, 4), (C, 5)] {
        sim.connect((node, conn));
    }
    for (node, conn) in [(A, 1), (A, 2), (B, 3)] {
        sim.join((node, conn), "news", None);
    }
    sim.join((A, 1), ROOM, Some(&member("1", "Joe")));
    sim.join((B, 3), ROOM, Some(&member(r#""1""#, "Joe"))); // the same user
    sim.join((B, 4), ROOM, Some(&member("2", "Ann")));
    sim.pump();
    sim.drain();

    for node in [A, B, C] {
        assert_eq!(sim.connections(node), 5, "node {node}");
        assert_eq!(
            sim.info_on(
                node,
                "news",
                &["occupied", "subscription_count", "user_count"]
            ),
            r#"{"occupied":true,"subscription_count":3}"#,
            "node {node}"
        );
        assert_eq!(
            sim.info_on(
                node,
                ROOM,
                &["occupied", "user_count", "subscription_count"]
            ),
            r#"{"occupied":true,"user_count":2}"#,
            "node {node}"
        );
        assert_eq!(
            sim.info_on(node, "nothing", &["occupied", "subscription_count"]),
            r#"{"occupied":false}"#
        );
        assert_eq!(
            sim.channels_on(node, &["user_count"]),
            r#"{"news":{},"presence-room":{"user_count":2}}"#,
            "node {node}"
        );
        let users = sim.users(node, ROOM).unwrap();
        assert_eq!(users.len(), 2, "node {node}: {users:?}");
        let mut keys: Vec<String> = users
            .iter()
            .map(|u| channel::user_key(&u["id"]).unwrap())
            .collect();
        keys.sort();
        assert_eq!(keys, vec!["1", "2"], "node {node}");
        assert_eq!(sim.users(node, "news"), Err(400));
        assert_eq!(sim.users(node, "presence-empty"), Err(404));
    }
    assert_eq!(
        sim.users(C, ROOM),
        Ok(vec![json!({"id": 1}), json!({"id": 2})]),
        "by node id, the first node's entry of a user"
    );
    assert_eq!(sim.nodes[C].hub.connection_count(0), 1);

    // user 1 keeps A's connection; B's connection 3 goes
    sim.close((B, 3));
    sim.pump();
    assert_eq!(sim.drain(), vec![]);
    for node in [A, B, C] {
        assert_eq!(sim.connections(node), 4);
        assert_eq!(
            sim.info_on(node, "news", &["subscription_count"]),
            r#"{"subscription_count":2}"#
        );
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":2}"#
        );
    }
    // A's connections go: news is empty everywhere, user 1 is gone
    sim.close((A, 1));
    sim.close((A, 2));
    sim.pump();
    for node in [A, B, C] {
        assert_eq!(sim.connections(node), 2);
        assert_eq!(
            sim.info_on(node, "news", &["occupied"]),
            r#"{"occupied":false}"#
        );
        assert_eq!(
            sim.channels_on(node, &["user_count"]),
            r#"{"presence-room":{"user_count":1}}"#
        );
        assert_eq!(sim.users(node, ROOM), Ok(vec![json!({"id": 2})]));
    }
}

#[test]
fn connection_quota_counts_every_node() {
    let mut sim = Sim::cluster_with(3, |a| a.max_connections = Some(2));
    sim.connect((A, 1));
    sim.connect((B, 2));
    sim.pump();
    assert!(sim.open((C, 3), KEY, None).is_none());
    assert_eq!(
        sim.drain(),
        vec![
            o((C, 3), &err(4004, "Application is over connection quota")),
            o((C, 3), &close(4004, "Application is over connection quota")),
        ]
    );
    sim.close((A, 1));
    sim.pump();
    sim.connect((C, 3));
}

// ---- 6. node death and return ----------------------------------------------------

#[test]
fn heartbeats_keep_an_idle_cluster_together() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    let mark = sim.wire.len();
    sim.advance_to(50_000);
    assert_eq!(sim.drain(), vec![]);
    for node in [A, B, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 3);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":3}"#
        );
        // 1 s heartbeats (a quarter of the timeout), nothing else
        let sent = sim.wire_types(node, mark);
        assert_eq!(sent, vec!["heartbeat"; 50], "node {node}");
    }
}

#[test]
fn a_silent_node_is_dropped_with_its_members() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    sim.connect((B, 21));
    sim.join((B, 21), ROOM, Some(&member("9", "Nine")));
    sim.join((B, 21), "news", None);
    // user 100 (A's observer) also has a tab on B: not removed with B
    sim.connect((B, 22));
    sim.join((B, 22), ROOM, Some(&member("100", "obs")));
    sim.pump();
    sim.drain();
    assert_eq!(sim.connections(A), 5);

    // B crashes at 0: it was last heard at 0
    sim.nodes[B].running = false;
    sim.advance_to(TIMEOUT - 1);
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 3);
    assert_eq!(
        sim.info_on(A, "news", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );

    sim.advance_to(TIMEOUT);
    let mut out = sim.drain();
    out.sort();
    // user 200 (B's observer) and user 9 leave; user 100 stays (on A)
    let mut want = vec![
        o((A, 10), &removed(ROOM, "200")),
        o((A, 10), &removed(ROOM, "9")),
        o((C, 30), &removed(ROOM, "200")),
        o((C, 30), &removed(ROOM, "9")),
    ];
    want.sort();
    assert_eq!(out, want);
    for node in [A, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 2);
        assert_eq!(sim.connections(node), 2);
        assert_eq!(
            sim.info_on(node, "news", &["occupied"]),
            r#"{"occupied":false}"#
        );
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":2}"#
        );
        assert_eq!(sim.channels_on(node, &[]), r#"{"presence-room":{}}"#);
    }
    assert_eq!(
        sim.users(A, ROOM),
        Ok(vec![json!({"id": 100}), json!({"id": 300})])
    );
    // nothing more later
    sim.advance_to(3 * TIMEOUT);
    assert_eq!(sim.drain(), vec![]);
}

#[test]
fn the_backlog_gate_opens_when_every_known_node_spoke_or_at_the_deadline() {
    let mut sim = Sim::cluster(3);
    for p in &mut sim.nodes {
        p.poll();
        assert!(p.backlog_open, "open once linked and in sync");
    }
    sim.link_down(A);
    sim.nodes[A].poll();
    assert!(!sim.nodes[A].backlog_open, "closed while the link is down");

    // B hears A come back and answers; C is cut off and stays silent
    sim.nodes[C].link = Link::Cut;
    let back = sim.now + 100;
    sim.advance_to(back);
    sim.link_up(A);
    sim.pump();
    assert!(!sim.nodes[A].backlog_open, "C has not spoken since");
    // the deadline is one of the hub's timers, so the loop wakes for it
    let deadline = back + TIMEOUT;
    assert!(sim.hub(A).poll_timeout().is_some_and(|t| t <= deadline));
    sim.advance_to(deadline - 1);
    assert!(!sim.nodes[A].backlog_open);
    sim.advance_to(deadline);
    assert!(sim.nodes[A].backlog_open, "node_timeout passed");
}

#[test]
fn a_partitioned_node_is_dropped_then_restored_when_heard_again() {
    let mut sim = observed_with_nine_on_b();

    // B is cut off without knowing it; A and C, who still hear themselves,
    // give up on B at 4 s. B hears not even its own messages: it is deaf,
    // keeps its view and drops nobody
    sim.nodes[B].link = Link::Cut;
    sim.advance_to(TIMEOUT);
    let mut want = vec![
        o((A, 10), &removed(ROOM, "200")),
        o((A, 10), &removed(ROOM, "9")),
        o((C, 30), &removed(ROOM, "200")),
        o((C, 30), &removed(ROOM, "9")),
    ];
    want.sort();
    assert_eq!(sim.drain_sorted(), want);
    assert!(sim.hub(B).cluster_deaf());
    assert!(!sim.hub(A).cluster_deaf());
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 2);
    assert_eq!(sim.nodes[B].hub.cluster_nodes(), 3);
    assert_eq!(sim.connections(B), 4, "B still counts the others");
    // no timer of a deaf node is due at once (the loop would spin)
    sim.advance_to(3 * TIMEOUT);
    assert!(sim.hub(B).poll_timeout().is_some_and(|t| t > sim.now));
    assert_eq!(sim.drain(), vec![]);

    // B also gets a new member while cut off
    sim.connect((B, 22));
    sim.join((B, 22), ROOM, Some(&member("8", "Eight")));

    // healed: B hears itself again and asks for everyone's state; the others
    // hear B as a new node; everyone is a member again, once, and B's
    // clients, whose view never changed, hear nothing
    sim.nodes[B].link = Link::Up;
    sim.advance_to(3 * TIMEOUT + 1000);
    assert!(!sim.hub(B).cluster_deaf());
    let out = sim.drain();
    for (node, conn) in [(A, 10), (C, 30)] {
        let mut got = only(&out, (node, conn));
        got.sort();
        let mut want = vec![
            added(ROOM, &member("200", "obs")),
            added(ROOM, &member("9", "Nine")),
            added(ROOM, &member("8", "Eight")),
        ];
        want.sort();
        assert_eq!(got, want, "{node}/{conn}: {out:?}");
    }
    assert_eq!(out.len(), 6, "{out:?}");
    for node in [A, B, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 3);
        assert_eq!(sim.connections(node), 5);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":5}"#
        );
    }
    sim.advance_to(6 * TIMEOUT);
    assert_eq!(sim.drain(), vec![]);
}

#[test]
fn a_bus_that_stops_delivering_to_everyone_drops_nobody() {
    let mut sim = observed_with_nine_on_b();
    // Redis (or a proxy before it) stalls: every link stays up, nothing is
    // delivered, not even a node's own messages
    for n in [A, B, C] {
        sim.nodes[n].link = Link::Cut;
    }
    sim.advance_to(5 * TIMEOUT);
    assert_eq!(sim.drain(), vec![], "no member_removed anywhere");
    for n in [A, B, C] {
        assert!(sim.hub(n).cluster_deaf(), "node {n}");
        assert_eq!(sim.nodes[n].hub.cluster_nodes(), 3);
        assert_eq!(sim.connections(n), 4);
    }
    // back: nothing changed, so nobody hears anything, and events flow
    for n in [A, B, C] {
        sim.nodes[n].link = Link::Up;
    }
    sim.advance_to(6 * TIMEOUT);
    assert_eq!(sim.drain(), vec![]);
    for n in [A, B, C] {
        assert!(!sim.hub(n).cluster_deaf(), "node {n}");
    }
    sim.trigger_on(A, &[ROOM], "e", "d", None);
    sim.pump();
    let got = sim.drain_sorted();
    assert_eq!(got.len(), 4, "{got:?}");
    // and a node that really dies is still dropped
    sim.nodes[C].running = false;
    sim.advance_to(8 * TIMEOUT);
    let got = sim.drain_sorted();
    assert_eq!(
        got,
        vec![
            o((A, 10), &removed(ROOM, "300")),
            o((B, 20), &removed(ROOM, "300")),
            o((B, 21), &removed(ROOM, "300")),
        ]
    );
}

#[test]
fn a_node_stalled_past_the_timeout_drops_nobody_when_it_wakes() {
    let mut sim = observed_with_nine_on_b();
    // A's process stops (a stall, a paused VM); the others, who still hear
    // themselves, drop it and its member 100
    let t0 = sim.now;
    sim.nodes[A].running = false;
    sim.advance_to(t0 + 3 * TIMEOUT);
    let mut want = vec![
        o((B, 20), &removed(ROOM, "100")),
        o((B, 21), &removed(ROOM, "100")),
        o((C, 30), &removed(ROOM, "100")),
    ];
    want.sort();
    assert_eq!(sim.drain_sorted(), want);
    // A wakes with every deadline long past: it has heard nothing, not even
    // itself, so it is deaf and drops nobody; its clients hear nothing
    sim.nodes[A].running = true;
    let woke = sim.now + 1;
    sim.advance_to(woke);
    assert!(!sim.hub(A).cluster_deaf(), "its own heartbeat came back");
    sim.advance_to(woke + 2 * TIMEOUT);
    let out = sim.drain();
    assert_eq!(only(&out, (A, 10)), Vec::<String>::new(), "{out:?}");
    // the others hear A again: its member is back, once
    for at in [(B, 20), (B, 21), (C, 30)] {
        assert_eq!(
            only(&out, at),
            vec![added(ROOM, &member("100", "obs"))],
            "{at:?}: {out:?}"
        );
    }
    for node in [A, B, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 3);
    }
}

#[test]
fn without_an_echo_from_redis_a_silent_node_is_still_dropped() {
    let mut sim = Sim::cluster(2);
    // Redis that never hands a node its own messages, from the link's start
    sim.echo = false;
    for n in [A, B] {
        sim.link_down(n);
        sim.link_up(n);
    }
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "One")));
    sim.connect((B, 2));
    sim.join((B, 2), ROOM, Some(&member("2", "Two")));
    sim.pump();
    sim.drain();
    // with no echo the check never starts: silence drops the other node
    sim.nodes[B].link = Link::Cut;
    sim.advance_to(2 * TIMEOUT);
    assert!(!sim.hub(A).cluster_deaf());
    assert!(!sim.hub(B).cluster_deaf());
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((A, 1), &removed(ROOM, "2")),
            o((B, 2), &removed(ROOM, "1"))
        ]
    );
}

#[test]
fn link_down_freezes_the_view_and_link_up_resyncs() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    sim.connect((B, 21));
    sim.join((B, 21), ROOM, Some(&member("201", "leaves")));
    sim.connect((B, 22));
    sim.join((B, 22), "news", None);
    sim.pump();
    sim.drain();

    sim.link_down(A);
    assert_eq!(sim.nodes[A].hub.cluster_poll_timeout(), None);
    let seq_before = sim.nodes[A].hub.cluster().unwrap().seq;

    // while A is down: a member joins on A, A triggers an event, B changes
    sim.connect((A, 11));
    let out = sim.join((A, 11), ROOM, Some(&member("101", "new")));
    assert_eq!(
        out,
        vec![
            o(
                (A, 11),
                r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":5,\"ids\":[100,101,200,201,300],\"hash\":{\"100\":{\"name\":\"obs\"},\"101\":{\"name\":\"new\"},\"200\":{\"name\":\"obs\"},\"201\":{\"name\":\"leaves\"},\"300\":{\"name\":\"obs\"}}}}","channel":"presence-room"}"#
            ),
            o((A, 10), &added(ROOM, &member("101", "new"))),
        ]
    );
    sim.trigger_on(A, &["news"], "e", "d", None);
    sim.close((B, 21));
    assert_eq!(sim.drain(), vec![o((B, 20), &removed(ROOM, "201"))]);
    sim.connect((B, 23));
    sim.subscribe_signed((B, 23), ROOM, Some(&member("202", "joins")));
    sim.pump();
    // only the event waits to be sent: no join, no counts were even made
    let held: Vec<Value> = sim.nodes[A]
        .held
        .iter()
        .map(|m| envelope(std::str::from_utf8(m).unwrap()))
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["type"], "event");
    assert!(sim.nodes[A].dropped.is_empty());
    assert_eq!(sim.nodes[A].hub.cluster().unwrap().seq, seq_before + 1);
    let out = sim.drain();
    assert_eq!(
        out[1..],
        [
            o((B, 20), &added(ROOM, &member("202", "joins"))),
            o((C, 30), &removed(ROOM, "201")),
            o((C, 30), &added(ROOM, &member("202", "joins"))),
        ],
        "A hears none of it"
    );

    // long past the timeout: A's view stays as it was; B and C drop A
    sim.advance_to(10_000);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 3);
    assert_eq!(sim.info_on(A, ROOM, &["user_count"]), r#"{"user_count":5}"#);
    assert_eq!(sim.connections(A), 6, "A: 2 + B's 3 + C's 1, as last heard");
    let mut want = vec![
        o((B, 20), &removed(ROOM, "100")),
        o((B, 23), &removed(ROOM, "100")),
        o((C, 30), &removed(ROOM, "100")),
    ];
    want.sort();
    assert_eq!(sim.drain_sorted(), want);

    // back: A's state asking for everyone's; once both answered (they are
    // listening again), the held event
    let mark = sim.wire.len();
    sim.link_up(A);
    sim.pump();
    assert_eq!(sim.wire_types(A, mark), vec!["state", "event"]);
    assert_eq!(envelope(&sim.last_wire(A, "state"))["reply"], true);
    assert_eq!(sim.wire_types(B, mark), vec!["state"]);
    assert_eq!(sim.wire_types(C, mark), vec!["state"]);
    assert_eq!(envelope(&sim.last_wire(B, "state"))["reply"], false);

    let out = sim.drain();
    assert_eq!(only(&out, (B, 22)), vec![event("e", "d", "news")]);
    for (node, conn) in [(B, 20), (B, 23), (C, 30)] {
        assert_eq!(
            only(&out, (node, conn)),
            vec![
                added(ROOM, &member("100", "obs")),
                added(ROOM, &member("101", "new")),
            ],
            "{node}/{conn}"
        );
    }
    for conn in [10, 11] {
        let mut got = only(&out, (A, conn));
        got.sort();
        let mut want = vec![removed(ROOM, "201"), added(ROOM, &member("202", "joins"))];
        want.sort();
        assert_eq!(got, want, "A/{conn}");
    }
    assert_eq!(out.len(), 1 + 3 * 2 + 2 * 2, "{out:?}");
    for node in [A, B, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 3);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":5}"#
        );
        assert_eq!(sim.connections(node), 6);
    }
    sim.advance_to(20_000);
    assert_eq!(sim.drain(), vec![]);
}

#[test]
fn a_short_link_flap_changes_nothing_but_what_changed() {
    let mut sim = Sim::cluster(3);
    observers(&mut sim);
    sim.connect((B, 21));
    sim.join((B, 21), ROOM, Some(&member("201", "leaves")));
    sim.pump();
    sim.drain();

    sim.link_down(A);
    sim.link_down(A); // twice is once
    sim.advance_to(1500);
    sim.close((B, 21));
    sim.pump();
    assert_eq!(
        sim.drain_sorted(),
        vec![
            o((B, 20), &removed(ROOM, "201")),
            o((C, 30), &removed(ROOM, "201"))
        ]
    );
    sim.advance_to(2500);
    sim.link_up(A);
    sim.link_up(A);
    sim.pump();
    // nobody dropped A; only the member who left while A was away is news to A
    assert_eq!(sim.drain(), vec![o((A, 10), &removed(ROOM, "201"))]);
    // and the nodes A had frozen get a fresh timeout from now
    sim.advance_to(2500 + TIMEOUT + 1);
    assert_eq!(sim.drain(), vec![]);
    for node in [A, B, C] {
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 3);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":3}"#
        );
    }
}

// ---- 8. duplicates --------------------------------------------------------------

#[test]
fn a_message_delivered_twice_is_delivered_once() {
    let mut sim = Sim::cluster(2);
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.connect((B, 3));
    sim.join((B, 3), ROOM, Some(&member("3", "B")));
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.pump();
    sim.drain();

    sim.trigger_on(A, &["news"], "e", "d", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "d", "news"))]);
    let ev = sim.last_wire(A, "event");
    let now = sim.now;
    sim.remote(B, ev.as_bytes());
    sim.remote(B, ev.as_bytes());
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().duplicates, 2);

    // an older delivery again changes nothing either
    let first = sim
        .wire
        .iter()
        .position(|(f, m)| *f == A && envelope(m)["type"] == "event");
    sim.trigger_on(A, &["news"], "e2", "d", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e2", "d", "news"))]);
    let first = sim.wire[first.unwrap()].1.clone();
    assert_eq!(first, ev);
    sim.remote(B, first.as_bytes());
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().duplicates, 3);

    // client events and terminations are deduplicated the same way
    sim.whisper((A, 1), ROOM, "client-x", json!({}));
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o(
            (B, 3),
            r#"{"event":"client-x","channel":"presence-room","data":{},"user_id":1}"#
        )]
    );
    let whisper = sim.last_wire(A, "client");
    sim.remote(B, whisper.as_bytes());
    assert_eq!(sim.drain(), vec![]);
    sim.hub(A).terminate_user(now, 0, "3");
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![
            o((A, 1), &removed(ROOM, "3")),
            o((B, 3), &err(4009, "Connection terminated")),
            o((B, 3), &close(4009, "Connection terminated")),
        ]
    );
    sim.connect((B, 5));
    sim.join((B, 5), ROOM, Some(&member("3", "again")));
    sim.pump();
    sim.drain();
    let terminate = sim.last_wire(A, "terminate");
    sim.remote(B, terminate.as_bytes());
    assert_eq!(sim.drain(), vec![], "user 3's new connection stays");
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().duplicates, 5);

    // presence updates are not re-sent, so they carry no such check; a join
    // seen twice is harmless
    let join = sim.last_wire(A, "join");
    sim.remote(B, join.as_bytes());
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().bad_messages, 0);
}

// ---- 9. bad data ---------------------------------------------------------------

#[test]
fn what_the_channel_can_make_a_node_remember_is_bounded() {
    let mut sim = Sim::cluster(1);
    // a flood of made-up nodes stops at MAX_NODES
    for i in 0..MAX_NODES + 10 {
        let hb = Envelope::new(&format!("fake{i}"), 1, Body::Heartbeat).encode();
        sim.remote(A, &hb);
    }
    assert_eq!(sim.hub(A).cluster_nodes(), MAX_NODES);
    assert_eq!(sim.hub(A).cluster().unwrap().bad_messages, 11);
    while sim.poll_publish(A).is_some() {}

    // counts for an app this node does not have, or channel names no client
    // could use, are not kept
    let mut sim = Sim::cluster(1);
    let counts = |seq, app: &str, name: &str| {
        Envelope::new(
            "other",
            seq,
            Body::Counts {
                app: app.into(),
                connections: 7,
                channels: [(name.to_string(), 3u64)].into_iter().collect(),
            },
        )
        .encode()
    };
    sim.remote(A, &counts(1, "no-such-app", "news"));
    assert_eq!(sim.connections(A), 0);
    assert_eq!(sim.channels_on(A, &[]), "{}");
    sim.remote(A, &counts(2, APP_ID, "bad name!"));
    assert_eq!(sim.connections(A), 7);
    assert_eq!(sim.channels_on(A, &[]), "{}");
    // members for a channel that is not a presence channel are not kept
    let mut apps = BTreeMap::new();
    apps.insert(
        APP_ID.to_string(),
        WireApp {
            connections: 1,
            channels: [("news".to_string(), 1u64)].into_iter().collect(),
            members: [("news".to_string(), vec![json!({"user_id": 1})])]
                .into_iter()
                .collect(),
            cache: BTreeMap::new(),
        },
    );
    let state = Envelope::new("other", 3, Body::State { apps, reply: false }).encode();
    sim.remote(A, &state);
    assert_eq!(sim.users(A, "news"), Err(400));
    assert_eq!(
        sim.info_on(A, "news", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );
    assert_eq!(sim.drain(), vec![]);
}

/// Longer than most: one story whose every step starts from the state the
/// step before left; split, each part would have to replay the story so far.
#[test]
fn bad_messages_are_counted_and_ignored() {
    let mut sim = Sim::cluster(2);
    sim.connect((A, 1));
    sim.join((A, 1), "news", None);
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.pump();
    sim.drain();

    let undecodable: [&[u8]; 5] = [
        b"garbage",
        br#"{"v":2,"node":"x","seq":1,"type":"heartbeat"}"#,
        br#"{"v":1,"node":"x","seq":1,"type":"nope"}"#,
        br#"{"type":"message","application":"O:26:...","payload":{}}"#,
        b"\xff\xfe",
    ];
    for bad in undecodable {
        sim.remote(A, bad);
    }
    assert_eq!(sim.nodes[A].hub.cluster().unwrap().bad_messages, 5);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 2);

    // well-formed, but for an app this node does not have, or unusable
    let stranger = |seq, body| Envelope::new("stranger", seq, body).encode();
    let msgs = [
        stranger(
            1,
            Body::Event {
                app: "nope".into(),
                channels: vec!["news".into()],
                event: "e".into(),
                data: "d".into(),
                socket_id: None,
            },
        ),
        stranger(
            2,
            Body::Client {
                app: "nope".into(),
                channel: "private-x".into(),
                event: "client-x".into(),
                data: json!({}),
                user_id: None,
            },
        ),
        stranger(
            3,
            Body::Terminate {
                app: "nope".into(),
                user_id: "1".into(),
            },
        ),
        stranger(
            4,
            Body::Join {
                app: "nope".into(),
                channel: ROOM.into(),
                member: json!({"user_id": 5}),
            },
        ),
        // no usable user_id
        stranger(
            5,
            Body::Join {
                app: APP_ID.into(),
                channel: ROOM.into(),
                member: json!({"user_info": {}}),
            },
        ),
        stranger(
            6,
            Body::Leave {
                app: APP_ID.into(),
                channel: ROOM.into(),
                user_id: Value::Null,
            },
        ),
        // our own node id: ignored as our own echo
        Envelope::new("node0", 999, Body::Restart).encode(),
    ];
    for m in &msgs {
        sim.remote(A, m);
    }
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[A].hub.cluster().unwrap().bad_messages, 5);
    assert!(!sim.take_restart(A));
    assert_eq!(sim.info_on(A, ROOM, &["user_count"]), r#"{"user_count":1}"#);
    assert_eq!(sim.channels_on(A, &[]), r#"{"news":{},"presence-room":{}}"#);
    // A heard of a new node and asked it for its state
    let want = sim.poll_publish(A).expect("a want");
    assert_eq!(
        Envelope::decode(&want.0).unwrap().body,
        Body::Want {
            to: "stranger".into()
        }
    );
    assert!(!want.1);
    sim.pump();
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().bad_messages, 0);
    // the stranger never speaks again and is forgotten
    sim.advance_to(TIMEOUT + 1);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 2);
    assert_eq!(sim.drain(), vec![]);
}

// ---- 10. terminate ---------------------------------------------------------------

#[test]
fn terminate_user_closes_connections_on_other_nodes() {
    let mut sim = Sim::cluster(3);
    sim.connect((A, 10));
    sim.join((A, 10), ROOM, Some(&member("100", "obs")));
    sim.connect((B, 20));
    sim.join((B, 20), ROOM, Some(&member("9", "Nine")));
    sim.connect((C, 30));
    sim.connect((C, 31));
    sim.signin((C, 30), r#"{"id":"9"}"#);
    sim.signin((C, 31), r#"{"id":"10"}"#);
    sim.pump();
    let out = sim.drain();
    assert!(
        only(&out, (C, 30))[0].starts_with(r#"{"event":"pusher:signin_success""#),
        "{out:?}"
    );
    assert_eq!(sim.connections(A), 4);

    let now = sim.now;
    assert_eq!(sim.hub(A).terminate_user(now, 0, "9"), 0);
    assert_eq!(sim.drain(), vec![]);
    sim.pump();
    let terminated = err(4009, "Connection terminated");
    let closed = close(4009, "Connection terminated");
    let out = sim.drain();
    assert_eq!(
        only(&out, (B, 20)),
        vec![terminated.clone(), closed.clone()]
    );
    assert_eq!(only(&out, (C, 30)), vec![terminated, closed]);
    assert_eq!(only(&out, (A, 10)), vec![removed(ROOM, "9")]);
    assert_eq!(out.len(), 5, "{out:?}");
    for node in [A, B, C] {
        assert_eq!(sim.connections(node), 2);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":1}"#
        );
    }
    // the terminate message is durable
    let t = sim.last_wire(A, "terminate");
    assert_eq!(
        Envelope::decode(t.as_bytes()).unwrap().body,
        Body::Terminate {
            app: APP_ID.into(),
            user_id: "9".into()
        }
    );
    assert!(Envelope::decode(t.as_bytes()).unwrap().body.durable());
}

// ---- 11. restart ---------------------------------------------------------------

#[test]
fn a_restart_message_is_taken_once() {
    let mut sim = Sim::cluster(2);
    let msg = Envelope::new("revurb-cli", 1, Body::Restart).encode();
    assert!(!sim.take_restart(A));
    sim.remote(A, &msg);
    assert!(sim.take_restart(A));
    assert!(!sim.take_restart(A));
    assert!(!sim.take_restart(B));
    // `revurb restart` is not a node: it is not counted, nobody asks it
    // for its state, and a second restart simply asks again (the shutdown
    // it starts is idempotent)
    let nodes = sim.hub(A).cluster_nodes();
    sim.remote(A, &msg);
    assert!(sim.take_restart(A));
    assert_eq!(sim.hub(A).cluster_nodes(), nodes);
    assert!(sim.poll_publish(A).is_none());
    assert_eq!(sim.drain(), vec![]);
}

// ---- 12. cache channels --------------------------------------------------------

#[test]
fn cache_channel_event_is_cached_on_every_node() {
    let mut sim = Sim::cluster(3);
    assert_eq!(sim.trigger_on(A, &["cache-x"], "ev", "1", None), 0);
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    sim.connect((B, 2));
    let out = sim.join((B, 2), "cache-x", None);
    assert_eq!(
        out,
        vec![
            o((B, 2), &succeeded("cache-x")),
            o((B, 2), r#"{"event":"ev","data":"1","channel":"cache-x"}"#),
        ]
    );
    sim.pump();
    assert_eq!(
        sim.info_on(C, "cache-x", &["occupied", "cache"]),
        r#"{"occupied":true,"cache":{"event":"ev","data":"1","ttl":1800}}"#
    );

    // a client event on a private cache channel is cached remotely too
    sim.connect((A, 1));
    sim.join((A, 1), "private-cache-y", None);
    sim.whisper((A, 1), "private-cache-y", "client-pos", json!({"x": 1}));
    sim.pump();
    sim.connect((C, 3));
    let out = sim.join((C, 3), "private-cache-y", None);
    assert_eq!(
        out,
        vec![
            o((C, 3), &succeeded("private-cache-y")),
            o(
                (C, 3),
                r#"{"event":"client-pos","channel":"private-cache-y","data":{"x":1}}"#
            ),
        ]
    );
}

#[test]
fn a_node_that_was_away_gets_the_cached_events_in_the_state() {
    let mut sim = Sim::cluster(3);
    sim.link_down(C);
    sim.trigger_on(A, &["cache-x"], "ev", "1", None);
    sim.pump();
    sim.now += 60_000;
    // C heard nothing of it
    assert_eq!(sim.info_on(C, "cache-x", &["cache"]), "{}");
    sim.link_up(C);
    sim.pump();
    assert_eq!(sim.drain(), vec![]);
    // the state A sent back carries the event, with what is left of its ttl
    assert_eq!(
        sim.info_on(C, "cache-x", &["cache"]),
        r#"{"cache":{"event":"ev","data":"1","ttl":1740}}"#
    );
    sim.connect((C, 3));
    let out = sim.join((C, 3), "cache-x", None);
    assert_eq!(
        out,
        vec![
            o((C, 3), &succeeded("cache-x")),
            o((C, 3), r#"{"event":"ev","data":"1","channel":"cache-x"}"#),
        ]
    );
    // an older copy does not replace a newer one
    sim.trigger_on(A, &["cache-x"], "ev", "2", None);
    sim.pump();
    sim.drain();
    sim.link_down(B);
    sim.link_up(B);
    sim.pump();
    for node in [A, B, C] {
        assert_eq!(
            sim.info_on(node, "cache-x", &["cache"]),
            r#"{"cache":{"event":"ev","data":"2","ttl":1800}}"#
        );
    }
}

// ---- 13. presence limit ----------------------------------------------------------

#[test]
fn presence_limit_is_cluster_wide() {
    let mut sim = Sim::cluster_with(3, |a| a.max_presence_members = 2);
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.connect((B, 2));
    sim.join((B, 2), ROOM, Some(&member("2", "B")));
    sim.pump();
    sim.drain();

    sim.connect((C, 3));
    sim.subscribe_signed((C, 3), ROOM, Some(&member("3", "C")));
    assert_eq!(
        sim.drain(),
        vec![o(
            (C, 3),
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Presence channel is full.\"}"}"#
        )]
    );
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    // a user already in it elsewhere may add a tab here
    let out = sim.join((C, 3), ROOM, Some(&member("1", "A")));
    assert_eq!(out.len(), 1, "{out:?}");
    sim.pump();
    assert_eq!(sim.drain(), vec![]);

    // once user 2 leaves on B, user 3 gets in on C
    sim.close((B, 2));
    sim.pump();
    sim.drain();
    sim.connect((C, 4));
    let out = sim.join((C, 4), ROOM, Some(&member("3", "C")));
    assert_eq!(out[1..], [o((C, 3), &added(ROOM, &member("3", "C")))]);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o((A, 1), &added(ROOM, &member("3", "C")))]
    );
}

// ---- more: users, reloads ------------------------------------------------------

#[test]
fn send_to_user_reaches_a_signed_in_user_on_another_node() {
    let mut sim = Sim::cluster(2);
    sim.connect((B, 2));
    sim.signin((B, 2), r#"{"id":"42"}"#);
    sim.pump();
    sim.drain();
    sim.trigger_on(A, &["#server-to-user-42"], "hello", "{}", None);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o((B, 2), &event("hello", "{}", "#server-to-user-42"))]
    );
    // server-to-user channels are never listed, but asked for by name they
    // answer the same on every node
    assert_eq!(sim.channels_on(A, &[]), "{}");
    let info = ["occupied", "subscription_count"];
    for node in [A, B] {
        assert_eq!(
            sim.info_on(node, "#server-to-user-42", &info),
            r#"{"occupied":true,"subscription_count":1}"#
        );
    }
}

// A node's reload that drops an app closes that app's connections there; the
// other nodes (which still have the app) must stop counting them.
#[test]
fn removing_an_app_on_reload_clears_its_counts_on_the_other_nodes() {
    // a dedicated secret: with a key derived from the apps, B would leave
    // the cluster (`a_reload_that_changes_the_apps_changes_the_derived_key`)
    let mut sim = Sim::build_keyed(2, |_| vec![app()], Some("bus secret"));
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.join((B, 2), ROOM, Some(&member("2", "B")));
    sim.pump();
    sim.drain();
    assert_eq!(sim.connections(A), 2);

    let now = sim.now;
    sim.hub(B).reload_apps(now, vec![]);
    assert_eq!(
        sim.drain(),
        vec![
            o((B, 2), &err(4200, "Server shutting down")),
            o((B, 2), &close(4200, "Server shutting down")),
        ]
    );
    sim.pump();
    // the member's leave does get through
    assert_eq!(sim.drain(), vec![o((A, 1), &removed(ROOM, "2"))]);
    // but not the counts
    assert_eq!(sim.connections(A), 1, "B closed its connection of the app");
    assert_eq!(
        sim.info_on(A, "news", &["occupied"]),
        r#"{"occupied":false}"#
    );
    assert_eq!(sim.channels_on(A, &[]), r#"{"presence-room":{}}"#);
}

/// A delivers an event to B; its link goes down and, as the Redis client
/// does with a publish it had no acknowledgement for, the event goes back
/// into A's outage queue; after `outage` ms the link comes back and it is
/// sent again. B must deliver it only once.
fn resend_after_an_outage(outage: u64) -> Sim {
    let mut sim = Sim::cluster(2);
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.pump();
    sim.trigger_on(A, &["news"], "e", "d", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "d", "news"))]);
    let ev: Rc<[u8]> = sim.last_wire(A, "event").into_bytes().into();

    sim.link_down(A);
    sim.nodes[A].held.push(ev);
    sim.advance_to(outage);
    let b_knows_a = if outage >= TIMEOUT { 1 } else { 2 };
    assert_eq!(
        sim.hub(B).cluster_nodes(),
        b_knows_a,
        "B gives up on A only after the timeout"
    );
    sim.link_up(A);
    sim.pump();
    assert_eq!(
        sim.wire_types(A, 0).last().map(String::as_str),
        Some("event"),
        "the event was sent again"
    );
    assert_eq!(sim.drain(), vec![], "B already delivered it");
    sim
}

#[test]
fn a_delivery_resent_after_a_short_outage_is_delivered_once() {
    let mut sim = resend_after_an_outage(TIMEOUT / 2);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().duplicates, 1);
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
}

// B drops A meanwhile (and forgets its view), but not the last seq it saw.
#[test]
fn a_delivery_resent_after_a_long_outage_is_delivered_once() {
    let mut sim = resend_after_an_outage(2 * TIMEOUT);
    assert_eq!(sim.nodes[B].hub.cluster().unwrap().duplicates, 1);
    // A is back in B's view
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
}

#[test]
fn apps_are_matched_by_id_whatever_their_order_on_each_node() {
    let other = || App::new("654321", "reverb-key-2", "reverb-secret-2");
    let mut sim = Sim::build(2, |i| {
        if i == A {
            vec![app(), other()]
        } else {
            vec![other(), app()]
        }
    });
    // on B the first app is the other one
    sim.connect_to((B, 2), "reverb-key-2");
    sim.send((B, 2), &subscribe_msg("news", None, None));
    sim.connect_to((B, 3), KEY);
    sim.send((B, 3), &subscribe_msg("news", None, None));
    sim.pump();
    sim.drain();

    let now = sim.now;
    let channels = vec!["news".to_string()];
    sim.hub(A)
        .trigger(now, 1, &channels, "for-other", "1", None);
    sim.hub(A).trigger(now, 0, &channels, "for-main", "2", None);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![
            o((B, 2), &event("for-other", "1", "news")),
            o((B, 3), &event("for-main", "2", "news")),
        ]
    );
    assert_eq!(sim.nodes[A].hub.cluster_connection_count(0), 1);
    assert_eq!(sim.nodes[A].hub.cluster_connection_count(1), 1);
    assert_eq!(sim.nodes[B].hub.cluster_connection_count(0), 1);
}

#[test]
fn resubscribing_as_another_user_is_a_leave_and_a_join_everywhere() {
    let mut sim = Sim::cluster(2);
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "A")));
    sim.connect((B, 2));
    sim.join((B, 2), ROOM, Some(&member("9", "obs")));
    sim.pump();
    sim.drain();

    sim.subscribe_signed((A, 1), ROOM, Some(&member("5", "five")));
    sim.pump();
    let out = sim.drain();
    assert_eq!(
        only(&out, (B, 2)),
        vec![removed(ROOM, "1"), added(ROOM, &member("5", "five"))]
    );
    assert_eq!(
        sim.users(B, ROOM),
        Ok(vec![json!({"id": 9}), json!({"id": 5})])
    );
}

// Re-subscribing as the same user replaces the member's entry (Reverb); a
// subscriber arriving later sees the new user_info on the same node.
#[test]
fn resubscribing_as_the_same_user_updates_user_info_everywhere() {
    let mut sim = Sim::cluster(2);
    sim.connect((A, 1));
    sim.join((A, 1), ROOM, Some(&member("1", "old")));
    sim.pump();
    sim.subscribe_signed((A, 1), ROOM, Some(&member("1", "new")));
    sim.pump();
    sim.drain();

    sim.connect((A, 3));
    sim.subscribe_signed((A, 3), ROOM, Some(&member("3", "C")));
    sim.connect((B, 2));
    sim.subscribe_signed((B, 2), ROOM, Some(&member("2", "B")));
    let out = sim.drain();
    assert_eq!(
        only(&out, (A, 3)),
        vec![
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[1,3],\"hash\":{\"1\":{\"name\":\"new\"},\"3\":{\"name\":\"C\"}}}}","channel":"presence-room"}"#
        ]
    );
    assert_eq!(
        only(&out, (B, 2)),
        vec![
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[2,1],\"hash\":{\"2\":{\"name\":\"B\"},\"1\":{\"name\":\"new\"}}}}","channel":"presence-room"}"#
        ]
    );
}

#[test]
fn a_node_shutting_down_removes_its_members_at_once() {
    let mut sim = observed_with_nine_on_b();

    let now = sim.now;
    sim.hub(B).shutdown(now);
    sim.pump();
    let out = sim.drain();
    for (node, conn) in [(A, 10), (C, 30)] {
        let mut got = only(&out, (node, conn));
        got.sort();
        assert_eq!(got, vec![removed(ROOM, "200"), removed(ROOM, "9")]);
    }
    for node in [A, C] {
        assert_eq!(sim.connections(node), 2);
        assert_eq!(
            sim.info_on(node, ROOM, &["user_count"]),
            r#"{"user_count":2}"#
        );
    }
    // the process goes; its node entry times out later with nothing to remove
    sim.nodes[B].running = false;
    sim.advance_to(2 * TIMEOUT);
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 2);
}

#[test]
fn a_node_that_says_goodbye_is_forgotten_at_once() {
    let mut sim = observed_with_nine_on_b();
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 3);

    let now = sim.now;
    sim.hub(B).shutdown(now);
    sim.hub(B).cluster_goodbye(now);
    sim.pump();
    let out = sim.drain();
    for (node, conn) in [(A, 10), (C, 30)] {
        let mut got = only(&out, (node, conn));
        got.sort();
        // each member leaves once, though both the leave and the goodbye say so
        assert_eq!(got, vec![removed(ROOM, "200"), removed(ROOM, "9")]);
        assert_eq!(sim.nodes[node].hub.cluster_nodes(), 2);
        assert_eq!(sim.connections(node), 2);
    }
    // its state replayed does not bring it, or its member, back
    let state = sim.last_sealed(B, "state");
    sim.remote_raw(A, &state);
    assert_eq!(sim.nodes[A].hub.cluster_nodes(), 2);
    assert_eq!(sim.drain(), vec![]);
    // nothing is heard from it afterwards, and nothing times out later
    assert!(sim.poll_publish(B).is_none());
    sim.nodes[B].running = false;
    sim.advance_to(2 * TIMEOUT);
    assert_eq!(sim.drain(), vec![]);
}

// ---- 14. a signed bus ------------------------------------------------------------

/// An event for "news" of the test app from a node calling itself `node`.
fn event_from(node: &str, seq: u64, data: &str) -> Vec<u8> {
    let body = Body::Event {
        app: APP_ID.into(),
        channels: vec!["news".into()],
        event: "e".into(),
        data: data.into(),
        socket_id: None,
    };
    Envelope::new(node, seq, body).encode()
}

fn refused(sim: &Sim, node: usize) -> u64 {
    sim.nodes[node].hub.cluster().unwrap().refused
}

/// Two nodes, B with a subscriber of "news" in slot 2.
fn news_on_b() -> Sim {
    let mut sim = Sim::cluster(2);
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.pump();
    sim.drain();
    sim
}

#[test]
fn unsigned_and_wrongly_signed_messages_are_refused() {
    let mut sim = news_on_b();
    let unix = sim.unix();
    let guessed = Seal::new(CHANNEL, Some("a guess"), []);
    let other_channel = Seal::new("other-channel", None, [&app()]);
    let other_secret = Seal::new(CHANNEL, None, [&App::new(APP_ID, KEY, "not the secret")]);
    let restart = |seq| Envelope::new("evil", seq, Body::Restart).encode();
    let forged = [
        event_from("evil", 1, "unsigned"),
        guessed.seal(&event_from("evil", 2, "guessed"), unix),
        other_channel.seal(&event_from("evil", 3, "other channel"), unix),
        other_secret.seal(&event_from("evil", 4, "other secret"), unix),
        restart(5),
        guessed.seal(&restart(6), unix),
        other_secret.seal(&restart(7), unix),
    ];
    for m in &forged {
        sim.remote_raw(B, m);
    }
    assert_eq!(sim.drain(), vec![]);
    assert!(!sim.take_restart(B), "no restart");
    assert_eq!(refused(&sim, B), forged.len() as u64);
    assert_eq!(sim.hub(B).cluster_nodes(), 2, "no node was made up");
    assert!(
        sim.poll_publish(B).is_none(),
        "nobody was asked for a state"
    );
    assert_eq!(sim.hub(B).cluster().unwrap().bad_messages, 0);

    // the nodes' own traffic still flows
    sim.trigger_on(A, &["news"], "e", "real", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "real", "news"))]);
    assert_eq!(refused(&sim, B), forged.len() as u64);
}

#[test]
fn a_tampered_message_is_refused() {
    let mut sim = news_on_b();
    sim.trigger_on(A, &["news"], "e", "real", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "real", "news"))]);
    let real = String::from_utf8(sim.last_sealed(A, "event")).unwrap();
    let seq = envelope(&real)["seq"].as_u64().unwrap();
    let ts = envelope(&real)["ts"].as_u64().unwrap();
    let tampered = [
        real.replace("\"real\"", "\"fake\""),
        // a higher seq would get past the duplicate rule
        real.replace(&format!("\"seq\":{seq}"), &format!("\"seq\":{}", seq + 1)),
        // a later time would get past the time window
        real.replace(&format!("\"ts\":{ts}"), &format!("\"ts\":{}", ts + 60_000)),
        real.replace("\"news\"", "\"private-x\""),
    ];
    for t in &tampered {
        assert_ne!(t, &real);
        sim.remote_raw(B, t.as_bytes());
    }
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(refused(&sim, B), tampered.len() as u64);
}

#[test]
fn a_replayed_message_is_not_delivered_again() {
    let mut sim = Sim::cluster(3);
    sim.connect((B, 2));
    sim.join((B, 2), "news", None);
    sim.connect((B, 3));
    sim.join((B, 3), ROOM, Some(&member("3", "B")));
    sim.connect((C, 4));
    sim.join((C, 4), ROOM, Some(&member("4", "C")));
    sim.pump();
    sim.drain();
    sim.trigger_on(A, &["news"], "e", "once", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "once", "news"))]);

    // a delivery: the seq rule
    let ev = sim.last_sealed(A, "event");
    sim.remote_raw(B, &ev);
    assert_eq!(sim.drain(), vec![]);
    // a presence change, which is never re-sent, replayed after the leave
    let join = sim.last_sealed(C, "join");
    sim.close((C, 4));
    sim.pump();
    assert_eq!(sim.drain(), vec![o((B, 3), &removed(ROOM, "4"))]);
    sim.remote_raw(B, &join);
    assert_eq!(sim.drain(), vec![], "no member_added for a user who left");
    assert_eq!(sim.info_on(B, ROOM, &["user_count"]), r#"{"user_count":1}"#);
    // a dead node's state does not bring it, or its members, back
    let state = sim.last_sealed(C, "state");
    sim.nodes[C].running = false;
    let t = sim.now + TIMEOUT + 1;
    sim.advance_to(t);
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
    sim.remote_raw(B, &state);
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(refused(&sim, B), 0, "all caught by the seq rules so far");

    // once older than the time window, refused before it is read
    let t = sim.now + MAX_SKEW_MS;
    sim.advance_to(t);
    sim.remote_raw(B, &ev);
    sim.remote_raw(B, &state);
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(refused(&sim, B), 2);
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
    // and so is one signed too far ahead (a clock out of step)
    let ahead = sim.nodes[B].hub.cluster().unwrap().seal();
    let m = ahead.seal(&event_from("ahead", 1, "x"), sim.unix() + MAX_SKEW_MS + 1);
    sim.remote_raw(B, &m);
    assert_eq!(sim.drain(), vec![]);
    assert_eq!(refused(&sim, B), 3);
}

#[test]
fn a_restart_replayed_to_a_node_started_after_it_is_refused() {
    let mut sim = Sim::cluster(2);
    let restart = sim.sign(A, &Envelope::new("restart-1", 1, Body::Restart).encode());
    sim.remote_raw(A, &restart);
    assert!(sim.take_restart(A));
    // A's supervisor starts it again: a new node, that never saw it
    sim.advance(1000);
    let t = sim.now;
    let mut fresh = Hub::new(vec![app()], 7, false);
    fresh.enable_cluster("node0-again".into(), TIMEOUT, bus(t));
    fresh.cluster_link(t, true);
    let restarts = |hub: &mut Hub| {
        std::iter::from_fn(|| hub.poll_output())
            .filter(|o| matches!(o, Output::Restart))
            .count()
    };
    fresh.remote(t, sim.unix(), &restart);
    assert_eq!(restarts(&mut fresh), 0);
    assert_eq!(fresh.cluster().unwrap().refused, 1);
    // `revurb restart` run again now is taken
    let again = sim.sign(A, &Envelope::new("restart-2", 1, Body::Restart).encode());
    fresh.remote(t, sim.unix(), &again);
    assert_eq!(restarts(&mut fresh), 1);
}

#[test]
fn a_reload_that_changes_the_apps_changes_the_derived_key() {
    let mut sim = news_on_b();
    let apps = vec![app(), App::new("2", "key2", "secret2")];
    let now = sim.now;
    sim.hub(A).reload_apps(now, apps.clone());
    sim.pump();
    assert_eq!(refused(&sim, B), 1, "A's state after the reload");
    sim.trigger_on(A, &["news"], "e", "apart", None);
    sim.pump();
    assert_eq!(sim.drain(), vec![], "B no longer hears A");
    assert_eq!(refused(&sim, B), 2);

    // once B has the same apps they hear each other again
    sim.hub(B).reload_apps(now, apps);
    sim.pump();
    sim.trigger_on(A, &["news"], "e", "together", None);
    sim.pump();
    assert_eq!(
        sim.drain(),
        vec![o((B, 2), &event("e", "together", "news"))]
    );
    assert_eq!(sim.hub(A).cluster_nodes(), 2);
}

#[test]
fn a_delivery_held_longer_than_the_time_window_is_still_taken() {
    let mut sim = news_on_b();
    sim.link_down(A);
    sim.trigger_on(A, &["news"], "e", "held", None);
    let t = sim.now + MAX_SKEW_MS + TIMEOUT;
    sim.advance_to(t);
    assert_eq!(sim.hub(B).cluster_nodes(), 1, "B gave up on A");
    sim.link_up(A);
    sim.pump();
    // signed as it finally goes, not when it was made
    assert_eq!(sim.drain(), vec![o((B, 2), &event("e", "held", "news"))]);
    assert_eq!(refused(&sim, B), 0);
    assert_eq!(sim.hub(B).cluster_nodes(), 2);
}

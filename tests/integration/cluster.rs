//! Horizontal scaling over Redis pub/sub (issue 6): several real `revurb`
//! nodes share one throw-away `redis-server`, and a client on any node sees
//! exactly what it would see if every client were on one node. Events,
//! client events, exclusion, presence, counts, terminate and restart across
//! nodes; a killed node; Redis stopped and started again; garbage on the
//! Redis channel.
//!
//! Without `redis-server` on PATH cargo reports these tests as ignored, with
//! the reason (build.rs sets `cfg(no_redis)`), except under CI (`CI=true`)
//! where they run and fail.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_support::{
    FORM_DEADLINE, NODE_TIMEOUT_SECS, Reply, SILENCE, SYNC_DEADLINE, close_ws, event_text,
    expect_member_added, expect_member_removed, expect_member_removed_within, expect_once,
    expect_text_within, form_cluster, join_presence, presence_ids, scaling_env, signin,
    start_cluster, start_node, start_redis, stderr_since, subscribe_private, timed_json,
    wait_connections_everywhere, wait_everywhere, wait_stderr, wait_users_everywhere,
};
use crate::support::{
    APP_ENV, Server, TempDir, Ws, pusher_error, run_binary_in, subscription_succeeded, wait_until,
};

/// How long a node whose Redis came back may take to reconnect (its
/// back-off caps at about 5 s), re-subscribe and flush what it held.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(15);

/// A client on `node` subscribed to the public `channel`.
fn subscriber(node: &Server, channel: &str) -> Ws {
    let (mut ws, _) = node.pusher();
    ws.subscribe(channel);
    ws
}

/// POST /events on `node` with `body`; asserts 200 `{}`.
fn post_event(node: &Server, body: Value) {
    let r = node.signed_post("/apps/app-id/events", &body.to_string());
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "{}"),
        "POST /events {body}"
    );
}

// ---- the harness itself ---------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_harness_redis_pings_publishes_stops_and_starts_again() {
    let mut redis = start_redis();
    assert!(redis.ping());
    assert_eq!(redis.publish("reverb", b"nobody listens"), 0);

    let mut sub = redis.subscriber("reverb");
    assert_eq!(redis.numsub("reverb"), 1);
    assert_eq!(redis.publish("reverb", b"hello\r\nworld"), 1);
    let (channel, payload) = sub.next_message(Duration::from_secs(5)).unwrap();
    assert_eq!(
        (channel.as_str(), payload.as_slice()),
        ("reverb", &b"hello\r\nworld"[..])
    );

    let port = redis.port();
    redis.stop();
    assert!(!redis.ping());
    // the subscriber's connection is gone with the server
    assert!(sub.next_message(Duration::from_secs(5)).is_err());
    redis.start_again();
    assert_eq!(redis.port(), port);
    assert!(redis.ping());
    assert_eq!(
        redis.numsub("reverb"),
        0,
        "a fresh server has no subscribers"
    );
    assert_eq!(
        redis.command(&[b"SET", b"k", b"v"]),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        redis.command(&[b"GET", b"k"]),
        Reply::Bulk(Some(b"v".to_vec()))
    );
}

// ---- events ---------------------------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_api_event_reaches_subscribers_on_every_node_exactly_once() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "news");
    let mut on_b = subscriber(b, "news");

    // triggered on A: A's subscriber at once, B's through Redis; once each
    a.trigger("news", "headline", "from A");
    let from_a = event_text("headline", "from A", "news");
    assert_eq!(on_a.recv_text(), from_a);
    assert_eq!(on_b.recv_text(), from_a);
    on_a.expect_silence(SILENCE);
    on_b.expect_silence(SILENCE);

    // and the other way round
    b.trigger("news", "headline", "from B");
    let from_b = event_text("headline", "from B", "news");
    expect_once(&mut on_a, &from_b);
    expect_once(&mut on_b, &from_b);

    // a channels array with a channel only B has
    let mut sports_b = subscriber(b, "sports");
    post_event(
        a,
        json!({ "name": "score", "channels": ["news", "sports"], "data": "1-0" }),
    );
    expect_once(&mut on_a, &event_text("score", "1-0", "news"));
    expect_once(&mut on_b, &event_text("score", "1-0", "news"));
    expect_once(&mut sports_b, &event_text("score", "1-0", "sports"));

    // batch events reach B too, in order
    let body = json!({ "batch": [
        { "name": "one", "channel": "news", "data": "1" },
        { "name": "two", "channel": "sports", "data": "2" },
        { "name": "three", "channel": "news", "data": "3" },
    ]});
    let r = a.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"batch":{}}"#));
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(ws.recv_text(), event_text("one", "1", "news"));
        assert_eq!(ws.recv_text(), event_text("three", "3", "news"));
        ws.expect_silence(SILENCE);
    }
    expect_once(&mut sports_b, &event_text("two", "2", "sports"));
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_socket_id_exclusion_works_across_nodes() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "chat");
    let (mut sender_b, sender_id) = b.pusher();
    sender_b.subscribe("chat");
    let mut other_b = subscriber(b, "chat");

    // triggered on A on behalf of a connection that lives on B
    post_event(
        a,
        json!({ "name": "said", "channel": "chat", "data": "hi", "socket_id": sender_id }),
    );
    post_event(
        a,
        json!({ "name": "later", "channel": "chat", "data": "x" }),
    );
    let said = event_text("said", "hi", "chat");
    let later = event_text("later", "x", "chat");
    for ws in [&mut on_a, &mut other_b] {
        assert_eq!(ws.recv_text(), said);
        assert_eq!(ws.recv_text(), later);
    }
    // the excluded connection's first message is the later event
    expect_once(&mut sender_b, &later);

    // the same through batch_events
    let body = json!({ "batch": [
        { "name": "skip", "channel": "chat", "data": "1", "socket_id": sender_id },
        { "name": "keep", "channel": "chat", "data": "2" },
    ]});
    let r = a.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"batch":{}}"#));
    let skip = event_text("skip", "1", "chat");
    let keep = event_text("keep", "2", "chat");
    for ws in [&mut on_a, &mut other_b] {
        assert_eq!(ws.recv_text(), skip);
        assert_eq!(ws.recv_text(), keep);
        ws.expect_silence(SILENCE);
    }
    expect_once(&mut sender_b, &keep);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_client_events_cross_nodes_and_are_not_echoed() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);

    // private channel: alice on A, bob on B
    let (mut alice, alice_id) = a.pusher();
    subscribe_private(&mut alice, &alice_id, "private-chat");
    let (mut bob, bob_id) = b.pusher();
    subscribe_private(&mut bob, &bob_id, "private-chat");

    alice.send_json(&json!({
        "event": "client-typing",
        "channel": "private-chat",
        "data": { "who": "alice", "typing": true },
    }));
    expect_once(
        &mut bob,
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"alice","typing":true}}"#,
    );
    // not echoed back to the sender, neither locally nor through Redis
    alice.expect_silence(SILENCE);

    bob.send_json(&json!({
        "event": "client-typing",
        "channel": "private-chat",
        "data": { "who": "bob", "typing": false },
    }));
    expect_once(
        &mut alice,
        r#"{"event":"client-typing","channel":"private-chat","data":{"who":"bob","typing":false}}"#,
    );
    bob.expect_silence(SILENCE);

    // presence channel: the event carries the sender's user_id
    let (mut p1, p1_id) = a.pusher();
    join_presence(&mut p1, &p1_id, "presence-chat", 1, "One");
    wait_users_everywhere(&nodes, "presence-chat", &[1], SYNC_DEADLINE);
    let (mut p2, p2_id) = b.pusher();
    join_presence(&mut p2, &p2_id, "presence-chat", 2, "Two");
    expect_member_added(&mut p1, "presence-chat", 2, "Two");

    p1.send_json(&json!({
        "event": "client-typing",
        "channel": "presence-chat",
        "data": { "typing": true },
    }));
    expect_once(
        &mut p2,
        r#"{"event":"client-typing","channel":"presence-chat","data":{"typing":true},"user_id":1}"#,
    );
    p1.expect_silence(SILENCE);

    p2.send_json(&json!({
        "event": "client-typing",
        "channel": "presence-chat",
        "data": { "typing": false },
    }));
    expect_once(
        &mut p1,
        r#"{"event":"client-typing","channel":"presence-chat","data":{"typing":false},"user_id":2}"#,
    );
    p2.expect_silence(SILENCE);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_send_to_user_reaches_a_user_signed_in_on_another_node() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let (mut user_on_b, b_id) = b.pusher();
    signin(&mut user_on_b, &b_id, r#"{"id":"42"}"#);
    // the same user in a second tab on A, and another user on A
    let (mut user_on_a, a_id) = a.pusher();
    signin(
        &mut user_on_a,
        &a_id,
        r#"{"id":"42","user_info":{"tab":2}}"#,
    );
    let (mut other_user, o_id) = a.pusher();
    signin(&mut other_user, &o_id, r#"{"id":"43"}"#);

    post_event(
        a,
        json!({ "name": "notify", "channels": ["#server-to-user-42"], "data": "hello 42" }),
    );
    let expected = event_text("notify", "hello 42", "#server-to-user-42");
    expect_once(&mut user_on_b, &expected);
    expect_once(&mut user_on_a, &expected);

    // user 43 did not get user 42's event: its own is its first message
    post_event(
        b,
        json!({ "name": "notify", "channels": ["#server-to-user-43"], "data": "hello 43" }),
    );
    expect_once(
        &mut other_user,
        &event_text("notify", "hello 43", "#server-to-user-43"),
    );
    user_on_a.expect_silence(SILENCE);
    user_on_b.expect_silence(SILENCE);
}

// ---- presence ---------------------------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_presence_members_join_and_leave_once_across_nodes() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // user 1 on A, then user 2 on B: B's subscription lists both
    let room = "presence-room";
    let (mut one, one_id) = a.pusher();
    let presence = join_presence(&mut one, &one_id, room, 1, "One");
    assert_eq!(presence["count"], 1, "{presence}");
    wait_users_everywhere(&nodes, room, &[1], SYNC_DEADLINE);

    let (mut two, two_id) = b.pusher();
    let presence = join_presence(&mut two, &two_id, room, 2, "Two");
    assert_eq!(presence["count"], 2, "{presence}");
    assert_eq!(presence_ids(&presence), ["1", "2"], "{presence}");
    assert_eq!(
        presence["hash"],
        json!({ "1": { "name": "One" }, "2": { "name": "Two" } }),
        "{presence}"
    );
    // A's member hears of user 2 exactly once; user 2 hears nothing of itself
    expect_member_added(&mut one, room, 2, "Two");
    one.expect_silence(SILENCE);
    two.expect_silence(SILENCE);

    // one user with a connection on A and one on B is one member
    let twice = "presence-twice";
    let (mut observer, observer_id) = c.pusher();
    join_presence(&mut observer, &observer_id, twice, 100, "Observer");
    wait_users_everywhere(&nodes, twice, &[100], SYNC_DEADLINE);

    let (mut three_a, three_a_id) = a.pusher();
    let presence = join_presence(&mut three_a, &three_a_id, twice, 3, "Three");
    assert_eq!(presence_ids(&presence), ["100", "3"], "{presence}");
    expect_member_added(&mut observer, twice, 3, "Three");
    wait_users_everywhere(&nodes, twice, &[3, 100], SYNC_DEADLINE);

    let (mut three_b, three_b_id) = b.pusher();
    let presence = join_presence(&mut three_b, &three_b_id, twice, 3, "Three");
    assert_eq!(presence["count"], 2, "{presence}");
    assert_eq!(presence_ids(&presence), ["100", "3"], "{presence}");
    // no second member_added anywhere
    observer.expect_silence(SILENCE);
    three_a.expect_silence(SILENCE);

    // /users and user_count are cluster-wide and unique on every node
    wait_connections_everywhere(&nodes, 5, SYNC_DEADLINE);
    for node in &nodes {
        let users = timed_json(node, &format!("/apps/app-id/channels/{twice}/users"), &[]);
        let mut ids: Vec<String> = users["users"]
            .as_array()
            .unwrap_or_else(|| panic!("{users}"))
            .iter()
            .map(|u| u["id"].to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, ["100", "3"], "/users on {}: {users}", node.addr());
        let info = timed_json(
            node,
            &format!("/apps/app-id/channels/{twice}"),
            &[("info", "user_count")],
        );
        assert_eq!(
            info,
            json!({ "occupied": true, "user_count": 2 }),
            "on {}",
            node.addr()
        );
        let info = timed_json(
            node,
            &format!("/apps/app-id/channels/{room}"),
            &[("info", "user_count")],
        );
        assert_eq!(
            info,
            json!({ "occupied": true, "user_count": 2 }),
            "on {}",
            node.addr()
        );
    }

    // user 3 closes the tab on A: still a member through B, no member_removed
    close_ws(three_a);
    wait_connections_everywhere(&nodes, 4, SYNC_DEADLINE);
    observer.expect_silence(SILENCE);
    three_b.expect_silence(SILENCE);
    wait_users_everywhere(&nodes, twice, &[3, 100], SYNC_DEADLINE);

    // and then on B: now user 3 has left, once
    close_ws(three_b);
    expect_member_removed(&mut observer, twice, 3);
    observer.expect_silence(SILENCE);
    wait_users_everywhere(&nodes, twice, &[100], SYNC_DEADLINE);
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "user_count of presence-twice",
        json!({ "occupied": true, "user_count": 1 }),
        |n| {
            n.signed_get(
                &format!("/apps/app-id/channels/{twice}"),
                &[("info", "user_count")],
            )
            .json()
        },
    );

    // user 2 leaves room: A's member hears it once
    close_ws(two);
    expect_member_removed(&mut one, room, 2);
    one.expect_silence(SILENCE);
    wait_users_everywhere(&nodes, room, &[1], SYNC_DEADLINE);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_killed_node_members_are_removed_within_the_node_timeout() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let room = "presence-kill";
    let (mut observer, observer_id) = a.pusher();
    join_presence(&mut observer, &observer_id, room, 8, "Observer");
    wait_users_everywhere(&nodes, room, &[8], SYNC_DEADLINE);

    let (mut nine, nine_id) = b.pusher();
    join_presence(&mut nine, &nine_id, room, 9, "Nine");
    expect_member_added(&mut observer, room, 9, "Nine");
    let (_plain_b, _) = b.pusher();
    wait_connections_everywhere(&nodes, 3, SYNC_DEADLINE);
    wait_users_everywhere(&nodes, room, &[8, 9], SYNC_DEADLINE);

    // SIGKILL: B says goodbye to nobody; A must notice it stopped heart-beating
    let killed = Instant::now();
    b.signal(9);
    let window = Duration::from_secs(NODE_TIMEOUT_SECS + 3);
    expect_member_removed_within(&mut observer, room, 9, window);
    let survivors = &nodes[..1];
    let left = window.saturating_sub(killed.elapsed());
    wait_users_everywhere(survivors, room, &[8], left);
    let left = window.saturating_sub(killed.elapsed());
    wait_connections_everywhere(survivors, 1, left);
    assert!(
        killed.elapsed() <= window,
        "took {:?} after the kill",
        killed.elapsed()
    );
    // exactly once, and the observer's own connection is fine
    observer.expect_silence(SILENCE);
    observer.sync();
    let info = timed_json(
        a,
        &format!("/apps/app-id/channels/{room}"),
        &[("info", "user_count")],
    );
    assert_eq!(info, json!({ "occupied": true, "user_count": 1 }));
}

// ---- counts ---------------------------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_counts_and_queries_are_cluster_wide_and_fast() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 3);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut a1 = subscriber(a, "chan-a");
    let a2 = subscriber(a, "chan-a");
    let b1 = subscriber(b, "chan-a");
    let c1 = subscriber(c, "chan-a");

    // every query is timed (under 1 s) while polling, too
    let chan_count = |n: &Server| {
        timed_json(
            n,
            "/apps/app-id/channels/chan-a",
            &[("info", "subscription_count")],
        )
    };
    let channels = |n: &Server| {
        timed_json(
            n,
            "/apps/app-id/channels",
            &[("info", "subscription_count")],
        )
    };
    let connections = |n: &Server| timed_json(n, "/apps/app-id/connections", &[]);

    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "chan-a",
        json!({ "occupied": true, "subscription_count": 4 }),
        chan_count,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "channels",
        json!({ "channels": { "chan-a": { "subscription_count": 4 } } }),
        channels,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "connections",
        json!({ "connections": 4 }),
        connections,
    );
    // and once settled, every node gives the same answer each time
    for node in &nodes {
        assert_eq!(
            chan_count(node),
            json!({ "occupied": true, "subscription_count": 4 })
        );
        assert_eq!(
            timed_json(node, "/apps/app-id/channels", &[]),
            json!({ "channels": { "chan-a": {} } })
        );
        assert_eq!(connections(node), json!({ "connections": 4 }));
    }

    // one of A's subscribers unsubscribes (its connection stays)
    a1.send_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"chan-a"}}"#);
    a1.sync();
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "chan-a after an unsubscribe",
        json!({ "occupied": true, "subscription_count": 3 }),
        chan_count,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "connections after an unsubscribe",
        json!({ "connections": 4 }),
        connections,
    );

    // C's subscriber closes
    close_ws(c1);
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "chan-a after C's close",
        json!({ "occupied": true, "subscription_count": 2 }),
        chan_count,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "connections after C's close",
        json!({ "connections": 3 }),
        connections,
    );

    // everyone gone: the channel is vacant everywhere
    close_ws(a2);
    close_ws(b1);
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "chan-a when empty",
        json!({ "occupied": false }),
        chan_count,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "channels when empty",
        json!({ "channels": {} }),
        channels,
    );
    wait_everywhere(
        &nodes,
        SYNC_DEADLINE,
        "connections when only a1 is left",
        json!({ "connections": 1 }),
        connections,
    );
    drop(a1);
}

// ---- terminate and restart -------------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_terminate_connections_reaches_the_users_connections_on_other_nodes() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let room = "presence-term";
    let (mut bystander, bystander_id) = a.pusher();
    join_presence(&mut bystander, &bystander_id, room, 78, "Bystander");
    wait_users_everywhere(&nodes, room, &[78], SYNC_DEADLINE);

    // user 77 signed in on B (and a presence member there), and on A too
    let (mut victim_b, victim_b_id) = b.pusher();
    signin(&mut victim_b, &victim_b_id, r#"{"id":"77"}"#);
    join_presence(&mut victim_b, &victim_b_id, room, 77, "Victim");
    expect_member_added(&mut bystander, room, 77, "Victim");
    let (mut victim_a, victim_a_id) = a.pusher();
    signin(&mut victim_a, &victim_a_id, r#"{"id":"77"}"#);
    let (mut other_b, other_b_id) = b.pusher();
    signin(&mut other_b, &other_b_id, r#"{"id":"79"}"#);
    wait_connections_everywhere(&nodes, 4, SYNC_DEADLINE);

    let r = a.signed_post("/apps/app-id/users/77/terminate_connections", "{}");
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));

    // what a single node sends (see api.rs ref_terminate_1_2)
    for victim in [&mut victim_b, &mut victim_a] {
        assert_eq!(
            victim.recv_text(),
            pusher_error(4009, "Connection terminated")
        );
        assert_eq!(victim.recv_close().0, 4009);
        victim.expect_eof(Duration::from_secs(3));
    }
    expect_member_removed(&mut bystander, room, 77);
    bystander.expect_silence(SILENCE);
    bystander.sync();
    other_b.sync();
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
    wait_users_everywhere(&nodes, room, &[78], SYNC_DEADLINE);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_restart_reaches_every_node() {
    let redis = start_redis();
    let mut nodes = start_cluster(&redis, 3);
    let mut clients: Vec<Ws> = nodes.iter().map(|n| subscriber(n, "chan")).collect();
    wait_connections_everywhere(&nodes, 3, SYNC_DEADLINE);

    // no pid file: with scaling on, restart goes through Redis
    let env: Vec<(String, String)> = APP_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(scaling_env(&redis))
        .collect();
    let restart = thread::spawn(move || {
        let dir = TempDir::new("cluster-restart");
        let env = crate::cluster_support::str_pairs(&env);
        run_binary_in(Some(dir.path()), &env, &["restart"])
    });
    // restart publishes and exits; its output explains a failure best
    let (status, out, err) = restart.join().unwrap();
    assert_eq!(status.code(), Some(0), "restart: {out}{err}");
    for ws in &mut clients {
        assert_eq!(
            ws.recv_text(),
            pusher_error(4200, "Server shutting down"),
            "restart said: {out}{err}"
        );
        assert_eq!(ws.recv_close(), (4200, "Server shutting down".to_string()));
        ws.expect_eof(Duration::from_secs(3));
    }
    drop(clients);
    for node in &mut nodes {
        let exit = node.wait_exit(Duration::from_secs(5));
        assert_eq!(exit.code(), Some(0), "node exit {exit:?}");
    }
}

// ---- faults ----------------------------------------------------------------------------

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_redis_outage_keeps_local_service_and_catches_up_after_reconnect() {
    let mut redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "news");
    let mut on_b = subscriber(b, "news");
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
    let a_log = a.stderr_text().len();
    let b_log = b.stderr_text().len();

    redis.stop();
    // both nodes notice and say so
    wait_stderr(a, a_log, "redis", SYNC_DEADLINE);
    wait_stderr(b, b_log, "redis", SYNC_DEADLINE);

    // during the outage each node serves its own clients at once
    let started = Instant::now();
    a.trigger("news", "during", "from A");
    let during_a = event_text("during", "from A", "news");
    expect_text_within(
        &mut on_a,
        &during_a,
        Duration::from_secs(1),
        "A's own event during the outage, on A",
    );
    b.trigger("news", "during", "from B");
    let during_b = event_text("during", "from B", "news");
    expect_text_within(
        &mut on_b,
        &during_b,
        Duration::from_secs(1),
        "B's own event during the outage, on B",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the API stalled during the outage: {:?}",
        started.elapsed()
    );
    // a presence member joins A while B cannot hear of it
    let (mut five, five_id) = a.pusher();
    let presence = join_presence(&mut five, &five_id, "presence-outage", 5, "Five");
    assert_eq!(presence["count"], 1, "{presence}");
    // nothing crosses while Redis is down
    on_a.expect_silence(SILENCE);
    on_b.expect_silence(SILENCE);

    redis.start_again();
    // what was published during the outage was held and arrives once
    expect_text_within(
        &mut on_b,
        &during_a,
        RECONNECT_DEADLINE,
        "A's event held during the outage, on B after the reconnect",
    );
    expect_text_within(
        &mut on_a,
        &during_b,
        RECONNECT_DEADLINE,
        "B's event held during the outage, on A after the reconnect",
    );
    on_a.expect_silence(SILENCE);
    on_b.expect_silence(SILENCE);

    // presence and counts are re-synchronised
    wait_users_everywhere(&nodes, "presence-outage", &[5], RECONNECT_DEADLINE);
    wait_connections_everywhere(&nodes, 3, RECONNECT_DEADLINE);

    // and new events flow both ways
    a.trigger("news", "after", "from A");
    expect_once(&mut on_a, &event_text("after", "from A", "news"));
    expect_once(&mut on_b, &event_text("after", "from A", "news"));
    b.trigger("news", "after", "from B");
    expect_once(&mut on_a, &event_text("after", "from B", "news"));
    expect_once(&mut on_b, &event_text("after", "from B", "news"));
    five.expect_silence(SILENCE);

    for (node, offset) in [(a, a_log), (b, b_log)] {
        let log = stderr_since(node, offset);
        assert!(
            log.to_ascii_lowercase().contains("redis"),
            "stderr of {} does not mention Redis:\n{log}",
            node.addr()
        );
    }
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_bad_data_on_the_redis_channel_is_ignored_with_a_log_line() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut on_a = subscriber(a, "chan");
    let mut on_b = subscriber(b, "chan");
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
    let logs: Vec<usize> = nodes.iter().map(|n| n.stderr_text().len()).collect();

    let garbage: [&[u8]; 10] = [
        b"not json",
        br#"{"v":1}"#,
        br#"{"v":1,"app":"no-such-app","type":"event","channel":"chan","event":"evil","data":"x"}"#,
        br#"{"v":1,"app_id":"no-such-app","type":"event","channel":"chan","event":"evil","data":"x"}"#,
        br#"{"type":"message","application":"O:8:\"stdClass\":0:{}","payload":{"event":"evil","channel":"chan","data":"x"}}"#,
        br#"{"v":1,"app":"app-id""#,
        b"",
        b"null",
        b"[1,2,3]",
        b"\xff\xfe\x00garbage",
    ];
    for payload in garbage {
        let receivers = redis.publish("reverb", payload);
        assert!(
            receivers >= 2,
            "only {receivers} subscriber(s) on \"reverb\" got {:?}",
            String::from_utf8_lossy(payload)
        );
    }
    // nothing reaches a client
    on_a.expect_silence(SILENCE);
    on_b.expect_silence(SILENCE);

    // every node says it refused something (none of it is signed)
    for (node, offset) in nodes.iter().zip(&logs) {
        wait_stderr(node, *offset, "refused", SYNC_DEADLINE);
    }

    // and the cluster still works
    a.trigger("chan", "real", "from A");
    expect_once(&mut on_a, &event_text("real", "from A", "chan"));
    expect_once(&mut on_b, &event_text("real", "from A", "chan"));
    b.trigger("chan", "real", "from B");
    expect_once(&mut on_a, &event_text("real", "from B", "chan"));
    expect_once(&mut on_b, &event_text("real", "from B", "chan"));
    wait_connections_everywhere(&nodes, 2, SYNC_DEADLINE);
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_cache_channel_last_event_is_shared() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 2);
    let (a, b) = (&nodes[0], &nodes[1]);
    // B hears A's publishes in order: once this marker arrives on B, so has
    // everything A published before it
    let mut marker_b = subscriber(b, "marker");

    a.trigger("cache-news", "headline", "first");
    a.trigger("cache-news", "headline", "second");
    a.trigger("marker", "m", "1");
    expect_once(&mut marker_b, &event_text("m", "1", "marker"));

    let (mut late_b, _) = b.pusher();
    late_b.send_json(&json!({ "event": "pusher:subscribe", "data": { "channel": "cache-news" } }));
    assert_eq!(late_b.recv_text(), subscription_succeeded("cache-news"));
    expect_once(&mut late_b, &event_text("headline", "second", "cache-news"));
    // B's channel query shows the cached event as it would on one node
    let info = timed_json(b, "/apps/app-id/channels/cache-news", &[("info", "cache")]);
    assert_eq!(info["cache"]["event"], "headline", "{info}");
    assert_eq!(info["cache"]["data"], "second", "{info}");

    // the other way round: B's newer event becomes the cached one on A
    b.trigger("cache-news", "headline", "third");
    expect_once(&mut late_b, &event_text("headline", "third", "cache-news"));
    let mut marker_a = subscriber(a, "marker");
    b.trigger("marker", "m", "2");
    expect_once(&mut marker_a, &event_text("m", "2", "marker"));
    expect_once(&mut marker_b, &event_text("m", "2", "marker"));
    let (mut late_a, _) = a.pusher();
    late_a.send_json(&json!({ "event": "pusher:subscribe", "data": { "channel": "cache-news" } }));
    assert_eq!(late_a.recv_text(), subscription_succeeded("cache-news"));
    expect_once(&mut late_a, &event_text("headline", "third", "cache-news"));

    // a cache channel nothing was published on is a miss on every node
    for node in &nodes {
        let (mut ws, _) = node.pusher();
        ws.send_json(&json!({ "event": "pusher:subscribe", "data": { "channel": "cache-empty" } }));
        assert_eq!(ws.recv_text(), subscription_succeeded("cache-empty"));
        expect_once(
            &mut ws,
            r#"{"event":"pusher:cache_miss","channel":"cache-empty"}"#,
        );
    }

    // a node started now learns the cached event from the others' state
    let c = start_node(&redis, &[]);
    wait_until(
        FORM_DEADLINE,
        || format!("node C at {} to have the cached event", c.addr()),
        || {
            let info = timed_json(&c, "/apps/app-id/channels/cache-news", &[("info", "cache")]);
            (info["cache"]["data"] == "third").then_some(())
        },
    );
    let (mut late_c, _) = c.pusher();
    late_c.send_json(&json!({ "event": "pusher:subscribe", "data": { "channel": "cache-news" } }));
    assert_eq!(late_c.recv_text(), subscription_succeeded("cache-news"));
    expect_once(&mut late_c, &event_text("headline", "third", "cache-news"));
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_three_nodes_deliver_once_to_each() {
    let redis = start_redis();
    let nodes = start_cluster(&redis, 3);
    let mut subs: Vec<Ws> = nodes.iter().map(|n| subscriber(n, "all")).collect();
    for (i, origin) in nodes.iter().enumerate() {
        let data = format!("from node {i}");
        origin.trigger("all", "hello", &data);
        let expected = event_text("hello", &data, "all");
        for ws in &mut subs {
            assert_eq!(ws.recv_text(), expected, "event {data}");
        }
        for ws in &mut subs {
            ws.expect_silence(SILENCE);
        }
    }
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn cluster_custom_scaling_channel_separates_clusters_in_one_redis() {
    let redis = start_redis();
    // three nodes on the channel "other"; the third finds Redis through
    // REDIS_URL instead of REDIS_HOST/REDIS_PORT
    let other = [("REVERB_SCALING_CHANNEL", "other")];
    let url = redis.url();
    let others = vec![
        start_node(&redis, &other),
        start_node(&redis, &other),
        Server::start_with(
            &APP_ENV,
            &[
                ("REVERB_SCALING_ENABLED", "true"),
                ("REDIS_URL", &url),
                ("REVERB_SCALING_CHANNEL", "other"),
                (
                    "REVERB_SCALING_NODE_TIMEOUT",
                    &NODE_TIMEOUT_SECS.to_string(),
                ),
            ],
            &[],
        ),
    ];
    form_cluster(&others);
    // and a node on the default channel "reverb" in the same Redis
    let default = [start_node(&redis, &[])];
    let d = &default[0];
    wait_until(
        FORM_DEADLINE,
        || "the default-channel node to subscribe to \"reverb\"".into(),
        || (redis.numsub("reverb") >= 1).then_some(()),
    );

    let mut subs: Vec<Ws> = others.iter().map(|n| subscriber(n, "chan")).collect();
    let mut on_d = subscriber(d, "chan");
    wait_connections_everywhere(&others, 3, SYNC_DEADLINE);
    wait_connections_everywhere(&default, 1, SYNC_DEADLINE);

    others[0].trigger("chan", "e", "from A");
    for ws in &mut subs {
        expect_once(ws, &event_text("e", "from A", "chan"));
    }
    d.trigger("chan", "e", "from D");
    expect_once(&mut on_d, &event_text("e", "from D", "chan"));
    // neither crossed between the two channels
    for ws in &mut subs {
        ws.expect_silence(SILENCE);
    }

    // counts stay apart as well
    for node in &others {
        assert_eq!(
            timed_json(
                node,
                "/apps/app-id/channels/chan",
                &[("info", "subscription_count")]
            ),
            json!({ "occupied": true, "subscription_count": 3 }),
            "on {}",
            node.addr()
        );
    }
    assert_eq!(
        timed_json(
            d,
            "/apps/app-id/channels/chan",
            &[("info", "subscription_count")]
        ),
        json!({ "occupied": true, "subscription_count": 1 })
    );
}

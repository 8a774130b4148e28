//! Scenario tests for the sans-IO Pusher core on one node: the shared
//! simulator (`sim`) drives the `Hub` with a simulated clock and a few
//! simulated clients, and every assertion is on the exact JSON text a client
//! would receive. Test names follow the Reverb test they map to
//! (reference section 9) where one exists: `ref_server_N_*` is
//! tests/Feature/.../ServerTest.php, `ref_unit_server_N_*` is
//! tests/Unit/Protocols/Pusher/ServerTest.php, and so on.

use super::sim::*;
use super::*;
use channel::CACHE_TTL_MS;
use serde_json::{Value, json};

// ---- fixtures ----------------------------------------------------------------

/// Reverb's second test app.
fn app2() -> App {
    App::new("654321", "reverb-key-2", "reverb-secret-2")
}

fn signin_msg(key: &str, secret: &str, sid: &str, user_data: &str) -> String {
    let sig = crate::auth::hmac_sha256_hex(
        secret.as_bytes(),
        format!("{sid}::user::{user_data}").as_bytes(),
    );
    json!({"event": "pusher:signin", "data": {"auth": format!("{key}:{sig}"), "user_data": user_data}})
        .to_string()
}

// ---- expected messages ---------------------------------------------------------

fn cache_miss(channel: &str) -> String {
    format!(r#"{{"event":"pusher:cache_miss","channel":"{channel}"}}"#)
}

const PING: &str = r#"{"event":"pusher:ping"}"#;
const PONG: &str = r#"{"event":"pusher:pong"}"#;
const UNAUTHORIZED: &str = r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection is unauthorized\"}"}"#;
const INVALID_MESSAGE: &str =
    r#"{"event":"pusher:error","data":"{\"code\":4200,\"message\":\"Invalid message format\"}"}"#;
const INVALID_CHANNEL: &str =
    r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Invalid channel name.\"}"}"#;
const NOT_MEMBER: &str = r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"The client is not a member of the specified channel.\"}"}"#;
const CHANNEL_TYPE: &str = r#"{"event":"pusher:error","data":"{\"code\":4301,\"message\":\"Client events are only allowed on private and presence channels.\"}"}"#;

fn is_socket_id(s: &str) -> bool {
    let Some((a, b)) = s.split_once('.') else {
        return false;
    };
    !a.is_empty()
        && !b.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.bytes().all(|c| c.is_ascii_digit())
}

// ---- connections ----------------------------------------------------------------

// reference 9, unit ServerTest 1 / EventTest 1
#[test]
fn ref_unit_server_1_connection_established_shape_and_socket_id() {
    let mut sim = Sim::new();
    assert_eq!(
        sim.open(1, KEY, None),
        Some(Opened {
            max_message_size: 10_000
        })
    );
    let out = sim.drain();
    assert_eq!(out.len(), 1);
    let sid = {
        let text = &out[0].1;
        let start = text.find(r#"socket_id\":\""#).unwrap() + 14;
        let end = start + text[start..].find('\\').unwrap();
        text[start..end].to_string()
    };
    assert!(is_socket_id(&sid), "{sid}");
    assert_eq!(out, vec![o(1, &established(&sid, 30))]);
    assert!(parse_socket_id(&sid).is_some());
    // both halves are 1..=1e9 like Reverb's random_int(1, 1e9)
    let (hi, lo) = sid.split_once('.').unwrap();
    for half in [hi, lo] {
        let n: u64 = half.parse().unwrap();
        assert!((1..=1_000_000_000).contains(&n));
    }
}

#[test]
fn socket_ids_are_unique_and_well_formed() {
    let mut sim = Sim::new();
    let mut seen = std::collections::HashSet::new();
    for conn in 0..500 {
        let sid = sim.connect(conn);
        assert!(is_socket_id(&sid), "{sid}");
        assert!(seen.insert(sid));
    }
    assert_eq!(sim.nodes[0].hub.connection_count(0), 500);
}

#[test]
fn activity_timeout_is_advertised_from_config() {
    let mut sim = Sim::with(|a| a.activity_timeout = 45);
    sim.open(1, KEY, None).unwrap();
    let out = sim.drain();
    assert!(
        out[0].1.ends_with(r#"\",\"activity_timeout\":45}"}"#),
        "{out:?}"
    );
}

// reference 9, ServerTest 1
#[test]
fn ref_server_1_can_handle_connections_to_different_applications() {
    let mut a3 = App::new("987654", "reverb-key-3", "reverb-secret-3");
    a3.allowed_origins = vec!["laravel.com".into()];
    let mut sim = Sim::with_apps(vec![app(), app2(), a3]);
    sim.connect_to(1, "reverb-key-2");
    assert!(
        sim.open(2, "reverb-key-3", Some("http://laravel.com"))
            .is_some()
    );
    let out = sim.drain();
    assert_eq!(out.len(), 1);
    assert!(
        out[0]
            .1
            .starts_with(r#"{"event":"pusher:connection_established""#)
    );
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    assert_eq!(sim.nodes[0].hub.connection_count(1), 1);
    assert_eq!(sim.nodes[0].hub.connection_count(2), 1);
}

// reference 9, ServerTest 28; port decisions: error, then a close frame 4001
#[test]
fn ref_server_28_unknown_app_key_gets_4001_then_close() {
    let mut sim = Sim::new();
    assert_eq!(sim.open(7, "invalid-key", None), None);
    assert_eq!(
        sim.drain(),
        vec![
            o(
                7,
                r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"Application does not exist\"}"}"#
            ),
            o(7, "<CLOSE 4001 Application does not exist>"),
        ]
    );
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    // the hub never knew it: messages and a close from the loop are no-ops
    sim.send(7, r#"{"event":"pusher:ping"}"#);
    sim.close(7);
    assert!(sim.drain().is_empty());
    assert_eq!(sim.nodes[0].hub.poll_timeout(), None);
}

// reference 9, ServerTest 31 and unit ServerTest 13; port decisions: closed with 4009
#[test]
fn ref_server_31_invalid_origin_gets_4009_then_close() {
    let mut sim = Sim::with(|a| a.allowed_origins = vec!["laravel.com".into()]);
    for (conn, origin) in [
        (1, None),
        (2, Some("http://localhost")),
        (3, Some("http://sub.laravel.com")),
        (4, Some("http://Laravel.com")),
    ] {
        assert_eq!(sim.open(conn, KEY, origin), None);
        assert_eq!(
            sim.drain(),
            vec![
                o(
                    conn,
                    r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Origin not allowed\"}"}"#
                ),
                o(conn, "<CLOSE 4009 Origin not allowed>"),
            ],
            "{origin:?}"
        );
    }
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    // reference 9, ServerTest 32 / unit 14
    assert!(sim.open(5, KEY, Some("https://laravel.com:8443")).is_some());
    assert_eq!(sim.drain().len(), 1);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
}

// reference 9, ServerTest 33 and unit 15; port decisions: every open
// connection counts (subscribed or not), and a refused one is closed with 4004
#[test]
fn ref_server_33_max_connections_counts_every_open_connection() {
    let mut sim = Sim::with(|a| a.max_connections = Some(2));
    sim.connect(1); // never subscribes
    sim.connect(2);
    sim.join(2, "test-channel", None);
    assert_eq!(sim.open(3, KEY, None), None);
    let quota = vec![
        o(
            3,
            r#"{"event":"pusher:error","data":"{\"code\":4004,\"message\":\"Application is over connection quota\"}"}"#,
        ),
        o(3, "<CLOSE 4004 Application is over connection quota>"),
    ];
    assert_eq!(sim.drain(), quota);
    // the loop closing the refused socket changes nothing
    sim.close(3);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 2);
    // a slot frees when one (even the unsubscribed one) closes
    sim.close(1);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
    sim.connect(3);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 2);
    assert_eq!(sim.open(4, KEY, None), None);
    assert_eq!(sim.drain().len(), 2);
}

#[test]
fn max_connections_is_per_app() {
    let mut a = app();
    a.max_connections = Some(1);
    let mut sim = Sim::with_apps(vec![a, app2()]);
    sim.connect(1);
    sim.connect_to(2, "reverb-key-2");
    sim.connect_to(3, "reverb-key-2");
    assert_eq!(sim.open(4, KEY, None), None);
    assert_eq!(
        sim.drain()[1],
        o(4, "<CLOSE 4004 Application is over connection quota>")
    );
}

// reference 9, ConnectionsController 1, 2 (port decisions: all open sockets count)
#[test]
fn ref_connections_1_2_connection_count() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 2);
    sim.join(1, "test-channel", None);
    sim.join(1, "test-channel-two", None);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 2);
    sim.close(2);
    sim.close(2); // idempotent
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
}

// reference 9, unit ServerTest 2 / 10-12: a disconnect leaves every channel
#[test]
fn ref_unit_server_10_12_disconnect_unsubscribes_from_everything() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "test-channel", None);
    sim.join(1, "private-test-channel", None);
    sim.join(1, "presence-test-channel", Some(&member("1", "A")));
    sim.join(2, "test-channel", None);
    sim.close(1);
    assert!(sim.drain().is_empty());
    assert_eq!(sim.channel_names(0), vec!["test-channel"]);
    assert_eq!(
        sim.info(0, "test-channel", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );
}

#[test]
fn reopening_a_reused_conn_id_forgets_the_old_connection() {
    let mut sim = Sim::new();
    let old = sim.connect(1);
    sim.join(1, "test-channel", None);
    let new = sim.connect(1);
    assert_ne!(old, new);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
    assert_eq!(
        sim.info(0, "test-channel", &["occupied"]),
        r#"{"occupied":false}"#
    );
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", Some(&old)), 0);
}

#[test]
fn input_for_an_old_generation_of_a_slot_is_ignored() {
    let mut sim = Sim::new();
    sim.connect(1);
    let old = sim.id(1);
    sim.close(1);
    sim.connect(1);
    sim.join(1, "test-channel", None);
    // the old connection's late input reaches nobody and closes nothing
    let now = sim.now;
    sim.nodes[0]
        .hub
        .message(now, old, r#"{"event":"pusher:ping"}"#);
    sim.nodes[0].hub.message(now, old, "not json");
    sim.nodes[0].hub.control(now, old);
    sim.nodes[0].hub.kick(now, old, PusherError::OverCapacity);
    sim.nodes[0].hub.close(now, old);
    assert_eq!(sim.drain(), vec![]);
    assert!(sim.is_open(1));
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", None), 1);
    assert_eq!(
        sim.drain(),
        vec![o(1, r#"{"event":"e","data":"d","channel":"test-channel"}"#)]
    );
}

#[test]
fn a_reused_slot_never_gets_the_old_connections_output() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "test-channel", None);
    sim.join(2, "test-channel", None);
    let old = sim.id(1);
    // output for the old connection is waiting when the loop reuses its
    // slot without having closed it
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", None), 2);
    let new = ConnId::new(1, old.generation() + 1);
    let now = sim.now;
    assert!(sim.nodes[0].hub.open(now, new, KEY, None).is_some());
    let out: Vec<Output> = std::iter::from_fn(|| sim.nodes[0].hub.poll_output()).collect();
    assert!(out.iter().all(|o| o.conn() != Some(old)), "{out:?}");
    assert_eq!(out.iter().filter(|o| o.conn() == Some(new)).count(), 1);
    // and the old connection left its channel: events go to 2 only
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", None), 1);
    let out: Vec<Output> = std::iter::from_fn(|| sim.nodes[0].hub.poll_output()).collect();
    assert!(out.iter().all(|o| o.conn() == Some(sim.id(2))), "{out:?}");
}

#[test]
fn conn_ids_compare_by_slot_and_generation() {
    let a = ConnId::new(3, 7);
    assert_eq!((a.slot(), a.generation()), (3, 7));
    assert_ne!(a, ConnId::new(3, 8));
    assert_ne!(a, ConnId::new(4, 7));
    assert_eq!(a.to_string(), "3#7");
}

#[test]
fn client_resending_connection_established_gets_the_ack_again() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    sim.send(1, r#"{"event":"pusher:connection_established"}"#);
    assert_eq!(sim.drain(), vec![o(1, &established(&sid, 30))]);
}

// ---- public channels ---------------------------------------------------------------

// reference 9, ServerTest 2 and unit EventTest 2
#[test]
fn ref_server_2_can_subscribe_to_a_channel() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.send(
        1,
        r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"test-channel"}}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"test-channel"}"#
        )]
    );
    assert_eq!(
        sim.info(0, "test-channel", &["occupied", "subscription_count"]),
        r#"{"occupied":true,"subscription_count":1}"#
    );
}

// reference 9, unit ServerTest 3, 5: auth is ignored on a public channel; the
// `data` may also come as a JSON string (Reverb PR #352)
#[test]
fn ref_unit_server_3_public_channel_ignores_auth_and_accepts_string_data() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.send(
        1,
        r#"{"event":"pusher:subscribe","data":{"channel":"test-channel","auth":"nonsense"}}"#,
    );
    sim.send(
        1,
        r#"{"event":"pusher:subscribe","data":"{\"channel\":\"other\",\"auth\":null}"}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![o(1, &succeeded("test-channel")), o(1, &succeeded("other"))]
    );
}

// reference 9, unit EventTest 4 and ServerTest 35
#[test]
fn ref_server_35_unsubscribe_sends_nothing_and_removes_the_empty_channel() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "test-channel", None);
    sim.join(2, "test-channel", None);
    let unsub = r#"{"event":"pusher:unsubscribe","data":{"channel":"test-channel"}}"#;
    sim.send(1, unsub);
    assert!(sim.drain().is_empty());
    assert_eq!(
        sim.info(0, "test-channel", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );
    sim.send(2, unsub);
    assert!(sim.drain().is_empty());
    assert!(sim.channel_names(0).is_empty());
    assert_eq!(
        sim.info(0, "test-channel", &["occupied"]),
        r#"{"occupied":false}"#
    );
    // twice, or from a channel never joined: still nothing
    sim.send(2, unsub);
    sim.send(
        2,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"nope"}}"#,
    );
    assert!(sim.drain().is_empty());
    // no longer receives the channel's events
    assert_eq!(sim.trigger(&["test-channel"], "e", "{}", None), 0);
    assert!(sim.drain().is_empty());
}

#[test]
fn resubscribe_replies_again_and_counts_once() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.subscribe(1, "test-channel");
    sim.subscribe(1, "test-channel");
    assert_eq!(
        sim.drain(),
        vec![
            o(1, &succeeded("test-channel")),
            o(1, &succeeded("test-channel"))
        ]
    );
    assert_eq!(
        sim.info(0, "test-channel", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );
    assert_eq!(sim.trigger(&["test-channel"], "e", "{}", None), 1);
    sim.drain();
    sim.send(
        1,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"test-channel"}}"#,
    );
    sim.subscribe(1, "test-channel");
    assert_eq!(sim.drain(), vec![o(1, &succeeded("test-channel"))]);
    assert_eq!(sim.trigger(&["test-channel"], "e", "{}", None), 1);
}

// port decisions: Pusher's channel name rule, 4009 "Invalid channel name."
#[test]
fn invalid_channel_names_get_4009() {
    let mut sim = Sim::new();
    sim.connect(1);
    let long = "a".repeat(165);
    for name in [
        "",
        "has space",
        long.as_str(),
        "#server-to-user-1",
        "caf\u{e9}",
        "a/b",
    ] {
        sim.subscribe(1, name);
        assert_eq!(sim.drain(), vec![o(1, INVALID_CHANNEL)], "{name:?}");
    }
    // a private- name is checked before its auth
    sim.send(1, &subscribe_msg("private-a b", Some("x:y"), None));
    assert_eq!(sim.drain(), vec![o(1, INVALID_CHANNEL)]);
    assert!(sim.channel_names(0).is_empty());
    // the connection stays usable; 164 characters and every allowed symbol pass
    let max = "b".repeat(164);
    sim.subscribe(1, &max);
    sim.subscribe(1, "chat.1=@,;_-Z9");
    assert_eq!(
        sim.drain(),
        vec![o(1, &succeeded(&max)), o(1, &succeeded("chat.1=@,;_-Z9"))]
    );
    assert!(sim.is_open(1));
}

#[test]
fn per_connection_channel_cap() {
    let mut sim = Sim::new();
    sim.connect(1);
    for i in 0..MAX_CHANNELS_PER_CONNECTION {
        sim.subscribe(1, &format!("c{i}"));
    }
    assert_eq!(sim.drain().len(), MAX_CHANNELS_PER_CONNECTION);
    sim.subscribe(1, "one-too-many");
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher:error","data":"{\"code\":4300,\"message\":\"Too many channels for one connection.\"}"}"#
        )]
    );
    assert_eq!(
        sim.info(0, "one-too-many", &["occupied"]),
        r#"{"occupied":false}"#
    );
    // re-subscribing to one it has is fine
    sim.subscribe(1, "c5");
    assert_eq!(sim.drain(), vec![o(1, &succeeded("c5"))]);
    // leaving one frees a place
    sim.send(
        1,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"c5"}}"#,
    );
    sim.subscribe(1, "one-too-many");
    assert_eq!(sim.drain(), vec![o(1, &succeeded("one-too-many"))]);
    assert!(sim.is_open(1));
}

// reference 9, ServerTest 22, 23
#[test]
fn ref_server_22_23_multiple_connections_on_multiple_channels() {
    let mut sim = Sim::new();
    for c in 1..=2 {
        sim.connect(c);
    }
    for ch in [
        "test-channel-1",
        "test-channel-2",
        "test-channel-3",
        "test-channel-4",
    ] {
        sim.join(1, ch, None);
    }
    sim.join(2, "test-channel-1", None);
    sim.join(2, "test-channel-3", None);
    let counts: Vec<String> = (1..=4)
        .map(|i| sim.info(0, &format!("test-channel-{i}"), &["subscription_count"]))
        .collect();
    assert_eq!(
        counts,
        [
            r#"{"subscription_count":2}"#,
            r#"{"subscription_count":1}"#,
            r#"{"subscription_count":2}"#,
            r#"{"subscription_count":1}"#
        ]
    );
}

// ---- private channels ---------------------------------------------------------------

// reference 9, ServerTest 3, unit ServerTest 6
#[test]
fn ref_server_3_can_subscribe_to_a_private_channel() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.subscribe_private(1, "private-test-channel");
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{}","channel":"private-test-channel"}"#
        )]
    );
}

// reference 9, ServerTest 24, 26, 36 and PrivateChannelTest 4, 5
#[test]
fn ref_server_24_26_36_private_auth_failures_get_4009_and_stay_open() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    let other_sid = "1.2";
    for channel in ["private-test-channel", "private-cache-test-channel"] {
        let bad: Vec<Value> = vec![
            Value::from("reverb-key:invalid-signature"), // invalid signature
            Value::Null,                                 // null auth
            Value::from(""),                             // empty
            Value::from(sign("wrong-key", SECRET, &sid, channel, None)), // wrong key prefix
            Value::from(
                sign(KEY, SECRET, &sid, channel, None)
                    .split_once(':')
                    .unwrap()
                    .1
                    .to_string(),
            ), // no key prefix at all
            Value::from(sign(KEY, "wrong-secret", &sid, channel, None)),
            Value::from(sign(KEY, SECRET, other_sid, channel, None)), // another socket
            Value::from(sign(KEY, SECRET, &sid, "private-other", None)), // another channel
        ];
        for auth in bad {
            sim.send_json(
                1,
                json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
            );
            assert_eq!(sim.drain(), vec![o(1, UNAUTHORIZED)], "{channel} {auth}");
        }
        // missing auth altogether
        sim.subscribe(1, channel);
        assert_eq!(sim.drain(), vec![o(1, UNAUTHORIZED)]);
        assert_eq!(sim.info(0, channel, &["occupied"]), r#"{"occupied":false}"#);
    }
    assert!(sim.is_open(1));
    sim.subscribe_private(1, "private-test-channel");
    assert_eq!(sim.drain(), vec![o(1, &succeeded("private-test-channel"))]);
}

#[test]
fn private_encrypted_channels_use_the_same_auth() {
    let mut sim = Sim::new();
    sim.connect(1);
    for ch in ["private-encrypted-test", "private-encrypted-cache-test"] {
        sim.send(1, &subscribe_msg(ch, Some("reverb-key:bad"), None));
        assert_eq!(sim.drain(), vec![o(1, UNAUTHORIZED)]);
        sim.subscribe_private(1, ch);
        let mut want = vec![o(1, &succeeded(ch))];
        if ch.contains("cache") {
            want.push(o(1, &cache_miss(ch)));
        }
        assert_eq!(sim.drain(), want);
    }
}

// ---- presence channels ----------------------------------------------------------------

// reference 9, ServerTest 4
#[test]
fn ref_server_4_can_subscribe_to_a_presence_channel() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.subscribe_presence(1, "presence-test-channel", &member("1", "Test User"));
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":1,\"ids\":[1],\"hash\":{\"1\":{\"name\":\"Test User\"}}}}","channel":"presence-test-channel"}"#
        )]
    );
    assert_eq!(
        sim.info(
            0,
            "presence-test-channel",
            &["occupied", "user_count", "subscription_count"]
        ),
        r#"{"occupied":true,"user_count":1}"#
    );
}

// reference 9, ServerTest 8 and PresenceChannelTest 6, 7
#[test]
fn ref_server_8_member_added_goes_to_the_others_not_the_joiner() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.connect(3);
    sim.join(
        1,
        "presence-test-channel",
        Some(&member("1", "Test User 1")),
    );
    sim.join(3, "test-channel", None); // not in the presence channel
    sim.subscribe_presence(2, "presence-test-channel", &member("2", "Test User 2"));
    assert_eq!(
        sim.drain(),
        vec![
            o(
                2,
                r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[1,2],\"hash\":{\"1\":{\"name\":\"Test User 1\"},\"2\":{\"name\":\"Test User 2\"}}}}","channel":"presence-test-channel"}"#
            ),
            o(
                1,
                r#"{"event":"pusher_internal:member_added","data":"{\"user_id\":2,\"user_info\":{\"name\":\"Test User 2\"}}","channel":"presence-test-channel"}"#
            ),
        ]
    );
}

// reference 9, ServerTest 9 and PresenceChannelTest 8
#[test]
fn ref_server_9_member_removed_when_a_member_leaves() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
        sim.join(
            c,
            "presence-test-channel",
            Some(&member(&c.to_string(), "U")),
        );
    }
    sim.close(3);
    let removed = r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":3}","channel":"presence-test-channel"}"#;
    let mut out = sim.drain();
    out.sort();
    assert_eq!(out, vec![o(1, removed), o(2, removed)]);
    // unsubscribing does the same
    sim.send(
        2,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"presence-test-channel"}}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":2}","channel":"presence-test-channel"}"#
        )]
    );
}

// reference 9, ServerTest 43 and PresenceChannelTest 9, 10
#[test]
fn ref_server_43_unique_users_and_one_added_removed_per_user() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
    }
    let ch = "presence-test-channel";
    sim.join(3, ch, Some(&member("\"watcher\"", "W")));
    sim.join(1, ch, Some(&member("1", "Joe")));
    // the same user again, on a second connection, with user_id as a string
    sim.subscribe_presence(2, ch, &member("\"1\"", "Joe"));
    assert_eq!(
        sim.drain(),
        vec![o(
            2,
            r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[\"watcher\",1],\"hash\":{\"watcher\":{\"name\":\"W\"},\"1\":{\"name\":\"Joe\"}}}}","channel":"presence-test-channel"}"#
        )],
        "no member_added for a second connection of a user"
    );
    assert_eq!(sim.info(0, ch, &["user_count"]), r#"{"user_count":2}"#);
    assert_eq!(
        sim.nodes[0].hub.channel_users(0, ch),
        Ok(vec![json!({"id": "watcher"}), json!({"id": 1})])
    );
    sim.close(1);
    assert!(sim.drain().is_empty(), "user 1 still has connection 2");
    sim.close(2);
    assert_eq!(
        sim.drain(),
        vec![o(
            3,
            r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":\"1\"}","channel":"presence-test-channel"}"#
        )]
    );
}

// reference 9, ServerTest 25, 27, 37; port decisions: channel_data and user_id are required
#[test]
fn ref_server_25_27_37_presence_auth_failures_get_4009() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    for ch in ["presence-test-channel", "presence-cache-test-channel"] {
        let cd = member("1", "A");
        // signature that does not cover channel_data
        sim.send(
            1,
            &subscribe_msg(ch, Some(&sign(KEY, SECRET, &sid, ch, None)), Some(&cd)),
        );
        // invalid signature, null auth
        sim.send(1, &subscribe_msg(ch, Some("reverb-key:invalid"), Some(&cd)));
        sim.send(1, &subscribe_msg(ch, None, Some(&cd)));
        // a valid signature without channel_data (Reverb accepts this)
        sim.send(
            1,
            &subscribe_msg(ch, Some(&sign(KEY, SECRET, &sid, ch, None)), None),
        );
        // signed channel_data without a usable user_id
        for cd in [
            r#"{"user_info":{"name":"A"}}"#,
            r#"{"user_id":""}"#,
            r#"{"user_id":null}"#,
            "[1]",
            "5",
        ] {
            sim.send(
                1,
                &subscribe_msg(ch, Some(&sign(KEY, SECRET, &sid, ch, Some(cd))), Some(cd)),
            );
        }
        assert_eq!(sim.drain(), vec![o(1, UNAUTHORIZED); 9], "{ch}");
        assert_eq!(sim.info(0, ch, &["occupied"]), r#"{"occupied":false}"#);
    }
    assert!(sim.is_open(1));
}

#[test]
fn presence_member_limit() {
    let mut sim = Sim::with(|a| a.max_presence_members = 2);
    let ch = "presence-room";
    for c in 1..=4 {
        sim.connect(c);
    }
    sim.join(1, ch, Some(&member("1", "A")));
    sim.join(2, ch, Some(&member("2", "B")));
    sim.subscribe_presence(3, ch, &member("3", "C"));
    assert_eq!(
        sim.drain(),
        vec![o(
            3,
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Presence channel is full.\"}"}"#
        )]
    );
    // a user already in it may add a connection
    let out = sim.join(4, ch, Some(&member("1", "A")));
    assert_eq!(out.len(), 1);
    // when one leaves, the next one gets in
    sim.close(2);
    sim.drain();
    let out = sim.join(3, ch, Some(&member("3", "C")));
    assert_eq!(
        out.len(),
        3,
        "succeeded + member_added to connections 1 and 4: {out:?}"
    );
    assert_eq!(sim.info(0, ch, &["user_count"]), r#"{"user_count":2}"#);
}

#[test]
fn presence_user_info_size_limit() {
    let mut sim = Sim::new();
    sim.connect(1);
    // user_info `{"name":"…"}` is 11 bytes + the name
    let fits = member("1", &"x".repeat(2048 - 11));
    let too_big = member("1", &"x".repeat(2048 - 10));
    sim.subscribe_presence(1, "presence-a", &too_big);
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Presence user_info is too large.\"}"}"#
        )]
    );
    sim.join(1, "presence-a", Some(&fits));
}

#[test]
fn presence_user_id_over_128_characters_is_refused() {
    let mut sim = Sim::new();
    sim.connect(1);
    // 129 characters (multi-byte: the limit counts characters, not bytes)
    let too_long = member(&format!("\"{}\"", "é".repeat(129)), "x");
    sim.subscribe_presence(1, "presence-a", &too_long);
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection is unauthorized\"}"}"#
        )]
    );
    assert!(sim.is_open(1));
    assert!(sim.channel_names(0).is_empty());
    // 128 is fine
    sim.join(
        1,
        "presence-a",
        Some(&member(&format!("\"{}\"", "é".repeat(128)), "x")),
    );
}

#[test]
fn presence_member_without_user_info_has_null_in_hash_and_keeps_extra_keys() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "presence-a", Some(r#"{"user_id":"u1"}"#));
    sim.subscribe_presence(
        2,
        "presence-a",
        r#"{"user_id":7,"user_info":{"n":1},"extra":true}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![
            o(
                2,
                r#"{"event":"pusher_internal:subscription_succeeded","data":"{\"presence\":{\"count\":2,\"ids\":[\"u1\",7],\"hash\":{\"u1\":null,\"7\":{\"n\":1}}}}","channel":"presence-a"}"#
            ),
            o(
                1,
                r#"{"event":"pusher_internal:member_added","data":"{\"user_id\":7,\"user_info\":{\"n\":1},\"extra\":true}","channel":"presence-a"}"#
            ),
        ]
    );
}

// Reverb overwrites the entry of a socket that subscribes again and, since the
// user is already present, tells nobody. Pusher clients never see a member
// leave and come back when it did not.
#[test]
fn presence_resubscribe_on_same_connection_is_silent_for_others() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    let ch = "presence-test-channel";
    sim.join(1, ch, Some(&member("1", "A")));
    sim.join(2, ch, Some(&member("2", "B")));
    sim.subscribe_presence(1, ch, &member("1", "A"));
    let out = sim.drain();
    assert_eq!(only(&out, 2), Vec::<String>::new(), "{out:?}");
    assert_eq!(only(&out, 1).len(), 1);
}

// ---- cache channels ------------------------------------------------------------------

const CACHE_CHANNELS: [&str; 4] = [
    "cache-test-channel",
    "private-cache-test-channel",
    "presence-cache-test-channel",
    "private-encrypted-cache-test-channel",
];

// reference 9, ServerTest 13-15, unit ServerTest 8
#[test]
fn ref_server_13_15_cache_miss() {
    let mut sim = Sim::new();
    sim.connect(1);
    for ch in CACHE_CHANNELS {
        let out = sim.join(1, ch, Some(&member("1", "A")));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], o(1, &cache_miss(ch)));
    }
    assert_eq!(
        cache_miss("cache-test-channel"),
        r#"{"event":"pusher:cache_miss","channel":"cache-test-channel"}"#
    );
}

// reference 9, ServerTest 10-12, unit ServerTest 9
#[test]
fn ref_server_10_12_cached_event_replayed_after_subscription_succeeded() {
    let mut sim = Sim::new();
    sim.connect(1);
    for ch in CACHE_CHANNELS {
        sim.connect(2);
        sim.join(2, ch, Some(&member("2", "B")));
        assert_eq!(
            sim.trigger(&[ch], r"App\Events\TestEvent", r#"{"foo":"bar"}"#, None),
            1
        );
        sim.drain();
        let out = sim.join(1, ch, Some(&member("1", "A")));
        let mine = only(&out, 1);
        assert_eq!(
            mine[1],
            format!(
                r#"{{"event":"App\\Events\\TestEvent","data":"{{\"foo\":\"bar\"}}","channel":"{ch}"}}"#
            )
        );
        assert_eq!(mine.len(), 2);
        sim.close(2);
        sim.drain();
    }
    assert_eq!(
        sim.drain_for(1),
        Vec::<String>::new(),
        "nothing pending after the replays"
    );
}

#[test]
fn cache_survives_without_subscribers() {
    let mut sim = Sim::new();
    sim.connect(1);
    // triggered on a channel nobody ever joined: still cached (port decisions)
    assert_eq!(sim.trigger(&["cache-a"], "ev", "1", None), 0);
    assert_eq!(
        sim.channels(0, "", &[]),
        "{}",
        "an empty cache holder is not listed"
    );
    let out = sim.join(1, "cache-a", None);
    assert_eq!(
        out[1],
        o(1, r#"{"event":"ev","data":"1","channel":"cache-a"}"#)
    );
    // the last subscriber leaves: the cache stays
    sim.send(
        1,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"cache-a"}}"#,
    );
    assert_eq!(sim.channel_names(0), vec!["cache-a"]);
    let out = sim.join(1, "cache-a", None);
    assert_eq!(
        out[1],
        o(1, r#"{"event":"ev","data":"1","channel":"cache-a"}"#)
    );
    // a newer event replaces it
    sim.trigger(&["cache-a"], "ev2", "2", None);
    sim.drain();
    sim.connect(2);
    let out = sim.join(2, "cache-a", None);
    assert_eq!(
        out[1],
        o(2, r#"{"event":"ev2","data":"2","channel":"cache-a"}"#)
    );
}

#[test]
fn cache_expires_after_30_minutes() {
    // a long ping interval so the clock can run without pruning
    let mut sim = Sim::with(|a| a.ping_interval = 100_000);
    sim.advance_to(1_000);
    sim.trigger(&["cache-a"], "ev", "1", None);
    sim.advance_to(1_000 + 30 * 60 * 1000 - 1);
    sim.connect(1);
    let out = sim.join(1, "cache-a", None);
    assert_eq!(
        out[1],
        o(1, r#"{"event":"ev","data":"1","channel":"cache-a"}"#)
    );
    sim.advance(1);
    sim.connect(2);
    let out = sim.join(2, "cache-a", None);
    assert_eq!(
        out,
        vec![o(2, &succeeded("cache-a")), o(2, &cache_miss("cache-a"))]
    );
}

// port decisions: member_added / member_removed are never the cached payload
#[test]
fn member_events_are_never_cached() {
    let mut sim = Sim::new();
    let ch = "presence-cache-room";
    for c in 1..=3 {
        sim.connect(c);
    }
    sim.join(1, ch, Some(&member("1", "A")));
    sim.join(2, ch, Some(&member("2", "B")));
    sim.close(2);
    assert_eq!(sim.drain().len(), 1, "member_removed to 1");
    let out = sim.join(3, ch, Some(&member("3", "C")));
    assert_eq!(only(&out, 3)[1], cache_miss(ch));
    sim.trigger(&[ch], "ev", "x", None);
    sim.close(3);
    sim.drain();
    sim.connect(4);
    let out = sim.join(4, ch, Some(&member("4", "D")));
    assert_eq!(
        only(&out, 4)[1],
        format!(r#"{{"event":"ev","data":"x","channel":"{ch}"}}"#)
    );
}

// Reverb: client events on cache channels update the cache (broadcast())
#[test]
fn client_events_update_the_cache() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-cache-a", None);
    sim.whisper(1, "private-cache-a", "client-typing", json!({"x": 1}));
    assert!(sim.drain().is_empty());
    let out = sim.join(2, "private-cache-a", None);
    assert_eq!(
        out[1],
        o(
            2,
            r#"{"event":"client-typing","channel":"private-cache-a","data":{"x":1}}"#
        )
    );
    assert_eq!(
        sim.info(0, "private-cache-a", &["cache"]),
        r#"{"cache":{"event":"client-typing","data":"{\"x\":1}","ttl":1800}}"#
    );
}

// reference 9, ChannelControllerTest 3; port decisions: {event, data, ttl}
#[test]
fn ref_channel_3_cache_attribute_with_ttl() {
    let mut sim = Sim::with(|a| a.ping_interval = 100_000);
    sim.connect(1);
    sim.join(1, "cache-a", None);
    assert_eq!(
        sim.info(0, "cache-a", &["occupied", "subscription_count", "cache"]),
        r#"{"occupied":true,"subscription_count":1}"#,
        "no cache yet"
    );
    assert_eq!(
        sim.trigger(&["cache-a"], "ev", r#"{"some":"data"}"#, None),
        1
    );
    sim.drain();
    assert_eq!(
        sim.info(0, "cache-a", &["occupied", "subscription_count", "cache"]),
        r#"{"occupied":true,"subscription_count":1,"cache":{"event":"ev","data":"{\"some\":\"data\"}","ttl":1800}}"#
    );
    sim.advance(1);
    assert!(sim.info(0, "cache-a", &["cache"]).contains(r#""ttl":1800"#));
    sim.advance(999);
    assert!(sim.info(0, "cache-a", &["cache"]).contains(r#""ttl":1799"#));
    sim.close(1);
    // unoccupied but cached
    assert_eq!(
        sim.info(0, "cache-a", &["occupied", "subscription_count", "cache"]),
        r#"{"occupied":false,"cache":{"event":"ev","data":"{\"some\":\"data\"}","ttl":1799}}"#
    );
    sim.advance_to(30 * 60 * 1000 - 1);
    assert!(sim.info(0, "cache-a", &["cache"]).contains(r#""ttl":1}"#));
    sim.advance(1);
    assert_eq!(
        sim.info(0, "cache-a", &["occupied", "cache"]),
        r#"{"occupied":false}"#
    );
    // cache is only asked for on cache channels
    sim.connect(2);
    sim.join(2, "plain", None);
    sim.trigger(&["plain"], "ev", "d", None);
    assert_eq!(sim.info(0, "plain", &["cache"]), "{}");
}

#[test]
fn sweep_caches_drops_expired_empty_cache_channels() {
    let mut sim = Sim::with(|a| a.ping_interval = 100_000);
    sim.trigger(&["cache-a"], "ev", "1", None);
    sim.connect(1);
    sim.join(1, "cache-b", None);
    sim.trigger(&["cache-b"], "ev", "1", None);
    sim.nodes[0].hub.sweep_caches(CACHE_TTL_MS - 1);
    assert_eq!(sim.channel_names(0), vec!["cache-a", "cache-b"]);
    sim.nodes[0].hub.sweep_caches(CACHE_TTL_MS);
    assert_eq!(sim.channel_names(0), vec!["cache-b"], "cache-b is occupied");
}

// Nothing but `sweep_caches` ever drops an expired, unoccupied cache channel,
// and nothing calls it: not `handle_timeout`, and not the event loop (grep
// event_loop.rs). Every distinct cache-* name triggered through the HTTP API
// while nobody listens stays in memory forever.
#[test]
fn expired_unoccupied_cache_channels_are_dropped_by_the_hub_timers() {
    let mut sim = Sim::new();
    for i in 0..100 {
        sim.trigger(&[format!("cache-{i}").as_str()], "ev", "1", None);
    }
    sim.advance_to(CACHE_TTL_MS + 60_000);
    assert!(
        sim.channel_names(0).is_empty(),
        "{} channels",
        sim.channel_names(0).len()
    );
}

// ---- client events --------------------------------------------------------------------

// reference 9, ClientEventTest 1, 6 and ServerTest 21 (private: no user_id)
#[test]
fn ref_client_event_1_members_mode_private_channel() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
        sim.join(c, "private-test-channel", None);
    }
    sim.whisper(
        1,
        "private-test-channel",
        "client-start-typing",
        json!({"id":123,"name":"Joe Dixon"}),
    );
    let msg = r#"{"event":"client-start-typing","channel":"private-test-channel","data":{"id":123,"name":"Joe Dixon"}}"#;
    let mut out = sim.drain();
    out.sort();
    assert_eq!(out, vec![o(2, msg), o(3, msg)], "no echo to the sender");
}

// reference 9, ClientEventTest 1: presence adds the sender's user_id, as given
#[test]
fn ref_client_event_1_presence_adds_user_id() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "presence-a", Some(&member("\"1\"", "A")));
    sim.join(2, "presence-a", Some(&member("2", "B")));
    sim.drain();
    sim.whisper(1, "presence-a", "client-x", json!({"a": 1}));
    sim.whisper(2, "presence-a", "client-x", json!([1, 2]));
    assert_eq!(
        sim.drain(),
        vec![
            o(
                2,
                r#"{"event":"client-x","channel":"presence-a","data":{"a":1},"user_id":"1"}"#
            ),
            o(
                1,
                r#"{"event":"client-x","channel":"presence-a","data":[1,2],"user_id":2}"#
            ),
        ]
    );
}

// reference 9, ClientEventTest 3
#[test]
fn ref_client_event_3_non_member_gets_4009() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(2, "private-test-channel", None);
    sim.whisper(1, "private-test-channel", "client-x", json!({}));
    assert_eq!(sim.drain(), vec![o(1, NOT_MEMBER)]);
    // also for a channel that does not exist at all
    sim.whisper(1, "presence-nothing", "client-x", json!({}));
    assert_eq!(sim.drain(), vec![o(1, NOT_MEMBER)]);
    assert!(sim.is_open(1));
}

// reference 9, ClientEventTest 4
#[test]
fn ref_client_event_4_mode_none_gets_4301() {
    let mut sim = Sim::with(|a| a.accept_client_events_from = ClientEvents::None);
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-test-channel", None);
    sim.join(2, "private-test-channel", None);
    sim.whisper(1, "private-test-channel", "client-x", json!({}));
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher:error","data":"{\"code\":4301,\"message\":\"The app does not have client messaging enabled.\"}"}"#
        )]
    );
}

// port decisions: client events need a private or presence channel
#[test]
fn client_events_on_public_or_encrypted_channels_get_4301() {
    for mode in [ClientEvents::Members, ClientEvents::All] {
        let mut sim = Sim::with(|a| a.accept_client_events_from = mode);
        sim.connect(1);
        sim.connect(2);
        for ch in [
            "test-channel",
            "cache-test",
            "private-encrypted-x",
            "private-encrypted-cache-x",
        ] {
            sim.join(1, ch, None);
            sim.join(2, ch, None);
            sim.whisper(1, ch, "client-x", json!({"a": 1}));
            assert_eq!(sim.drain(), vec![o(1, CHANNEL_TYPE)], "{mode:?} {ch}");
        }
        sim.whisper(1, "#server-to-user-2", "client-x", json!({}));
        assert_eq!(sim.drain(), vec![o(1, CHANNEL_TYPE)]);
    }
}

// reference 9, ClientEventTest 5; port decisions: rebuilt, no spoofed user_id
#[test]
fn ref_client_event_5_mode_all_forwards_from_non_members() {
    let mut sim = Sim::with(|a| a.accept_client_events_from = ClientEvents::All);
    sim.connect(1);
    sim.connect(2);
    sim.join(2, "presence-a", Some(&member("2", "B")));
    sim.send(
        1,
        r#"{"event":"client-x","channel":"presence-a","data":{"a":1},"user_id":"admin","extra":1}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            2,
            r#"{"event":"client-x","channel":"presence-a","data":{"a":1}}"#
        )]
    );
    // to a channel that does not exist: nothing, and no error
    sim.whisper(1, "private-none", "client-x", json!({}));
    assert!(sim.drain().is_empty());
}

// reference 9, unit ServerTest 25: absent data is allowed; it goes out as null
#[test]
fn ref_unit_server_25_client_event_without_data() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-a", None);
    sim.join(2, "private-a", None);
    sim.send(1, r#"{"event":"client-x","channel":"private-a"}"#);
    sim.send(
        1,
        r#"{"event":"client-y","channel":"private-a","data":null}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![
            o(
                2,
                r#"{"event":"client-x","channel":"private-a","data":null}"#
            ),
            o(
                2,
                r#"{"event":"client-y","channel":"private-a","data":null}"#
            ),
        ]
    );
}

// Reverb PR #352: a JSON string `data` is decoded; a scalar is refused
#[test]
fn client_event_data_string_is_decoded_and_scalars_refused() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-a", None);
    sim.join(2, "private-a", None);
    sim.send(
        1,
        r#"{"event":"client-x","channel":"private-a","data":"{\"a\":[1]}"}"#,
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            2,
            r#"{"event":"client-x","channel":"private-a","data":{"a":[1]}}"#
        )]
    );
    for data in [r#""plain""#, r#""\"quoted\"""#, "5", "true", r#""7""#] {
        sim.send(
            1,
            &format!(r#"{{"event":"client-x","channel":"private-a","data":{data}}}"#),
        );
        assert_eq!(sim.drain(), vec![o(1, INVALID_MESSAGE)], "{data}");
    }
}

// port decisions: pusher: and pusher_internal: names from clients are never broadcast
#[test]
fn pusher_names_from_clients_are_never_broadcast() {
    let mut sim = Sim::with(|a| a.accept_client_events_from = ClientEvents::All);
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "presence-a", Some(&member("1", "A")));
    sim.join(2, "presence-a", Some(&member("2", "B")));
    for ev in [
        "pusher_internal:member_added",
        "pusher_internal:member_removed",
        "pusher:error",
        "pusher:cache_miss",
        "pusher_internal:subscription_succeeded",
    ] {
        sim.send_json(
            1,
            json!({"event": ev, "channel": "presence-a", "data": {"user_id": 9}}),
        );
        assert_eq!(sim.drain(), vec![o(1, INVALID_MESSAGE)], "{ev}");
    }
}

// reference 9, ClientEventTest 7 and §1.3: other names are checked, then ignored
#[test]
fn ref_client_event_7_other_event_names_are_ignored() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "private-a", None);
    sim.join(2, "private-a", None);
    sim.send(
        1,
        r#"{"event":"typing","channel":"private-a","data":{"a":1}}"#,
    );
    sim.send(1, r#"{"event":"typing","channel":"private-a"}"#);
    assert!(sim.drain().is_empty());
    sim.send(1, r#"{"event":"typing","data":{}}"#);
    sim.send(1, r#"{"event":"typing","channel":"private-a","data":"x"}"#);
    assert_eq!(
        sim.drain(),
        vec![o(1, INVALID_MESSAGE), o(1, INVALID_MESSAGE)]
    );
}

// ---- invalid messages -------------------------------------------------------------------

// reference 9, unit ServerTest 4, 16-21
#[test]
fn ref_unit_server_4_16_21_invalid_messages_get_4200() {
    let mut sim = Sim::new();
    sim.connect(1);
    let cases = [
        "Hi",                                                                            // 4: not JSON
        "",                                                                              // empty
        "[]",                                                               // not an object
        r#""pusher:ping""#,                                                 // a string
        r#"{"data":{}}"#,                                                   // no event
        r#"{"event":[]}"#,                                                  // 16
        r#"{"event":null}"#,                                                //
        r#"{"event":"pusher:subscribe","data":"sfsfsfs"}"#,                 // 17
        r#"{"event":"pusher:subscribe"}"#,                                  // no data
        r#"{"event":"pusher:subscribe","data":{"channel":[]}}"#,            // 18
        r#"{"event":"pusher:subscribe","data":{"channel":null}}"#,          // 18
        r#"{"event":"pusher:subscribe","data":{}}"#,                        //
        r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":[]}}"#, // 19
        r#"{"event":"pusher:subscribe","data":{"channel":"a","channel_data":[]}}"#, // 20
        r#"{"event":"pusher:subscribe","data":{"channel":"a","channel_data":"Hello"}}"#, // 20
        r#"{"event":"pusher:unsubscribe","data":{"channel":[]}}"#,
        r#"{"event":"client-x","channel":[],"data":{}}"#, // 21
        r#"{"event":"client-x","data":{}}"#,
        r#"{"event":"pusher:foo"}"#, // unknown pusher:
        r#"{"event":"pusher_internal:foo","data":{}}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
    ];
    for text in cases {
        sim.send(1, text);
        assert_eq!(sim.drain(), vec![o(1, INVALID_MESSAGE)], "{text:?}");
    }
    assert!(sim.channel_names(0).is_empty());
    // nothing else happens: still open, still works
    assert!(sim.is_open(1));
    sim.join(1, "a", None);
}

// ---- ping, pong and pruning --------------------------------------------------------------

// reference 9, ServerTest 18 and unit EventTest 5
#[test]
fn ref_server_18_can_respond_to_a_ping() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    sim.send(1, r#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(sim.drain(), vec![o(1, PONG), o(1, PONG)]);
    assert_eq!(PONG, r#"{"event":"pusher:pong"}"#);
}

// reference 9, ServerTest 19, 46: a JSON ping after exactly ping_interval of silence
#[test]
fn ref_server_19_46_pings_after_exactly_ping_interval() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.join(1, "test-channel", None);
    assert_eq!(sim.nodes[0].hub.poll_timeout(), Some(60_000));
    sim.advance_to(59_999);
    assert!(sim.drain().is_empty());
    sim.advance(1);
    assert_eq!(sim.drain(), vec![o(1, PING)]);
    assert_eq!(PING, r#"{"event":"pusher:ping"}"#);
    // once only
    sim.advance(59_999);
    assert!(sim.drain().is_empty());
}

#[test]
fn activity_resets_the_ping_timer() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.advance_to(30_000);
    sim.subscribe(1, "test-channel");
    sim.drain();
    sim.advance_to(89_999);
    assert!(sim.drain().is_empty());
    sim.advance(1);
    assert_eq!(sim.drain(), vec![o(1, PING)]);
}

#[test]
fn custom_ping_interval() {
    let mut sim = Sim::with(|a| a.ping_interval = 10);
    sim.connect(1);
    sim.advance_to(9_999);
    assert!(sim.drain().is_empty());
    sim.advance(1);
    assert_eq!(sim.drain(), vec![o(1, PING)]);
    sim.advance(9_999);
    assert!(sim.drain().is_empty());
    sim.advance(1);
    assert_eq!(
        sim.drain(),
        vec![
            o(
                1,
                r#"{"event":"pusher:error","data":"{\"code\":4201,\"message\":\"Pong reply not received in time\"}"}"#
            ),
            o(1, "<CLOSE 4201 Pong reply not received in time>"),
        ]
    );
}

// reference 9, ServerTest 20: pruned exactly ping_interval after the ping
#[test]
fn ref_server_20_disconnects_inactive_subscribers() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.join(1, "test-channel", None);
    sim.advance_to(60_000);
    assert_eq!(sim.drain(), vec![o(1, PING)]);
    sim.advance_to(119_999);
    assert!(sim.drain().is_empty());
    assert!(sim.is_open(1));
    sim.advance(1);
    assert_eq!(
        sim.drain(),
        vec![
            o(
                1,
                r#"{"event":"pusher:error","data":"{\"code\":4201,\"message\":\"Pong reply not received in time\"}"}"#
            ),
            o(1, "<CLOSE 4201 Pong reply not received in time>"),
        ]
    );
    assert!(!sim.is_open(1));
    assert!(sim.channel_names(0).is_empty());
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    // the loop then closes the socket: no double count
    sim.close(1);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    sim.advance(1_000_000);
    assert!(sim.drain().is_empty());
}

// port decisions: a connection that never subscribed is pinged and pruned too
#[test]
fn unsubscribed_connections_are_pinged_and_pruned() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.advance_to(60_000);
    assert_eq!(sim.drain(), vec![o(1, PING)]);
    sim.advance_to(120_000);
    assert_eq!(
        sim.drain_for(1).last().map(String::as_str),
        Some("<CLOSE 4201 Pong reply not received in time>")
    );
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
}

// reference 9, ServerTest 47: after a control frame, the ping is a PING frame
#[test]
fn ref_server_47_uses_control_frames_when_the_client_does() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.control(1);
    sim.advance_to(60_000);
    let mut out = sim.drain();
    out.sort();
    assert_eq!(out, vec![o(1, "<PING>"), o(2, PING)]);
}

// reference 9, ServerTest 44, 45: control frames count as activity
#[test]
fn ref_server_44_45_control_frames_touch_the_connection() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.advance_to(50_000);
    sim.control(1);
    sim.advance_to(109_999);
    assert!(sim.drain().is_empty());
    sim.advance(1);
    assert_eq!(sim.drain(), vec![o(1, "<PING>")]);
}

#[test]
fn a_pong_after_the_ping_cancels_the_prune() {
    for how in ["message", "control", "other message"] {
        let mut sim = Sim::new();
        sim.connect(1);
        sim.advance_to(60_000);
        assert_eq!(sim.drain().len(), 1);
        sim.advance_to(100_000);
        match how {
            "message" => sim.send(1, r#"{"event":"pusher:pong"}"#),
            "control" => sim.control(1),
            _ => sim.subscribe(1, "test-channel"),
        }
        if how != "other message" {
            assert!(sim.drain().is_empty(), "no reply to a pong");
        }
        sim.drain();
        sim.advance_to(159_999);
        assert!(sim.drain().is_empty(), "{how}: not pruned, not pinged yet");
        assert!(sim.is_open(1));
        sim.advance(1);
        let ping = if how == "control" { "<PING>" } else { PING };
        assert_eq!(sim.drain(), vec![o(1, ping)], "{how}");
    }
}

#[test]
fn prune_of_a_presence_member_tells_the_others() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "presence-a", Some(&member("1", "A")));
    sim.join(2, "presence-a", Some(&member("2", "B")));
    // 2 keeps talking, 1 goes silent
    for t in [50_000, 100_000] {
        sim.advance_to(t);
        sim.send(2, r#"{"event":"pusher:ping"}"#);
    }
    sim.advance_to(119_999);
    assert_eq!(sim.drain(), vec![o(2, PONG), o(1, PING), o(2, PONG)]);
    sim.advance(1);
    assert_eq!(
        sim.drain(),
        vec![
            o(
                1,
                r#"{"event":"pusher:error","data":"{\"code\":4201,\"message\":\"Pong reply not received in time\"}"}"#
            ),
            o(
                2,
                r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":1}","channel":"presence-a"}"#
            ),
            o(1, "<CLOSE 4201 Pong reply not received in time>"),
        ]
    );
}

#[test]
fn many_connections_each_on_their_own_schedule() {
    let mut sim = Sim::new();
    for c in 0..10 {
        sim.advance_to(c as u64 * 1_000);
        sim.connect(c);
    }
    sim.advance_to(60_000);
    assert_eq!(sim.drain(), vec![o(0, PING)]);
    sim.advance_to(69_000);
    assert_eq!(sim.drain().len(), 9);
    sim.advance_to(120_000);
    assert_eq!(sim.drain().len(), 2, "error + close for connection 0");
    assert_eq!(sim.nodes[0].hub.connection_count(0), 9);
    sim.advance_to(129_000);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
}

// ---- rate limiting -----------------------------------------------------------------------

fn rate_limited(max: u32, decay: u64, terminate: bool) -> Sim {
    Sim::with(|a| {
        a.rate_limit = Some(RateLimit {
            max_attempts: max,
            decay_seconds: decay,
            terminate_on_limit: terminate,
        })
    })
}

const RATE_LIMIT: &str =
    r#"{"event":"pusher:error","data":"{\"code\":4301,\"message\":\"Rate limit exceeded\"}"}"#;

// reference 9, unit ServerTest 22
#[test]
fn ref_unit_server_22_rate_limit_rejects_4th_message() {
    let mut sim = rate_limited(3, 10, false);
    sim.connect(1);
    for _ in 0..3 {
        sim.send(1, r#"{"event":"pusher:ping"}"#);
    }
    assert_eq!(sim.drain(), vec![o(1, PONG); 3]);
    sim.subscribe(1, "test-channel");
    assert_eq!(sim.drain(), vec![o(1, RATE_LIMIT)], "not processed");
    assert_eq!(
        sim.info(0, "test-channel", &["occupied"]),
        r#"{"occupied":false}"#
    );
    assert!(sim.is_open(1));
    // still limited until the window ends, then a fresh window
    sim.advance_to(9_999);
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    assert_eq!(sim.drain(), vec![o(1, RATE_LIMIT)]);
    sim.advance_to(10_000);
    sim.subscribe(1, "test-channel");
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    assert_eq!(
        sim.drain(),
        vec![
            o(1, &succeeded("test-channel")),
            o(1, PONG),
            o(1, PONG),
            o(1, RATE_LIMIT)
        ]
    );
}

// reference §3.6: every data message counts, invalid ones too
#[test]
fn rate_limit_counts_invalid_messages() {
    let mut sim = rate_limited(2, 60, false);
    sim.connect(1);
    sim.send(1, "Hi");
    sim.send(1, "{}");
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    assert_eq!(
        sim.drain(),
        vec![
            o(1, INVALID_MESSAGE),
            o(1, INVALID_MESSAGE),
            o(1, RATE_LIMIT)
        ]
    );
    // control frames do not count
    sim.control(1);
    assert!(sim.drain().is_empty());
}

// reference 9, unit ServerTest 23
#[test]
fn ref_unit_server_23_rate_limit_terminates_when_configured() {
    let mut sim = rate_limited(1, 60, true);
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "presence-a", Some(&member("1", "A")));
    sim.join(2, "presence-a", Some(&member("2", "B")));
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    assert_eq!(
        sim.drain(),
        vec![
            o(1, RATE_LIMIT),
            o(
                2,
                r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":1}","channel":"presence-a"}"#
            ),
            o(1, "<CLOSE 4301 Rate limit exceeded>"),
        ]
    );
    assert!(!sim.is_open(1));
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
}

// reference 9, unit ServerTest 24
#[test]
fn ref_unit_server_24_no_rate_limit_by_default() {
    let mut sim = Sim::new();
    sim.connect(1);
    for i in 0..10 {
        sim.subscribe(1, &format!("test-channel-{i}"));
    }
    sim.send(1, r#"{"event":"pusher:ping"}"#);
    assert_eq!(sim.drain().len(), 11);
    assert_eq!(sim.nodes[0].hub.stats.messages_received, 11);
}

// ---- trigger (HTTP API core) ----------------------------------------------------------------

// reference 9, ServerTest 16 and EventsControllerTest 1
#[test]
fn ref_server_16_trigger_reaches_every_subscriber() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
        sim.join(c, "test-channel", None);
    }
    sim.connect(4);
    sim.join(4, "other", None);
    assert_eq!(
        sim.trigger(&["test-channel"], "NewEvent", r#"{"some":"data"}"#, None),
        3
    );
    let msg = r#"{"event":"NewEvent","data":"{\"some\":\"data\"}","channel":"test-channel"}"#;
    let mut out = sim.drain();
    out.sort();
    assert_eq!(out, vec![o(1, msg), o(2, msg), o(3, msg)]);
}

#[test]
fn trigger_shares_one_frame_between_recipients() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
        sim.join(c, "test-channel", None);
    }
    sim.trigger(&["test-channel"], "e", "d", None);
    let mut frames = Vec::new();
    while let Some(out) = sim.nodes[0].hub.poll_output() {
        let Output::Send(_, f) = out else { panic!() };
        frames.push(f);
    }
    assert_eq!(frames.len(), 3);
    assert!(Rc::ptr_eq(&frames[0], &frames[1]));
    assert!(Rc::ptr_eq(&frames[0], &frames[2]));
}

// reference 9, ServerTest 17
#[test]
fn ref_server_17_trigger_on_a_presence_channel() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.join(1, "presence-test-channel", Some(&member("1", "A")));
    assert_eq!(
        sim.trigger(&["presence-test-channel"], "NewEvent", "{}", None),
        1
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"NewEvent","data":"{}","channel":"presence-test-channel"}"#
        )]
    );
}

// reference 9, EventsControllerTest 5, 8
#[test]
fn ref_events_5_8_socket_id_exclusion() {
    let mut sim = Sim::new();
    sim.connect(1);
    let sid2 = sim.connect(2);
    sim.join(1, "test-channel", None);
    sim.join(2, "test-channel", None);
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", Some(&sid2)), 1);
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", None), 2);
    let out = sim.drain();
    assert_eq!(
        only(&out, 2).len(),
        1,
        "received exactly once across two triggers"
    );
    assert_eq!(only(&out, 1).len(), 2);
    for bad in ["invalid-socket-id", "1.2", "", ".", "1.", "99999999999.1"] {
        assert_eq!(
            sim.trigger(&["test-channel"], "e", "d", Some(bad)),
            2,
            "{bad}"
        );
    }
}

#[test]
fn trigger_to_multiple_channels() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "a", None);
    sim.join(1, "b", None);
    sim.join(2, "b", None);
    assert_eq!(sim.trigger(&["a", "b", "nobody-here"], "e", "d", None), 3);
    assert_eq!(
        sim.drain(),
        vec![
            o(1, r#"{"event":"e","data":"d","channel":"a"}"#),
            o(1, r#"{"event":"e","data":"d","channel":"b"}"#),
            o(2, r#"{"event":"e","data":"d","channel":"b"}"#),
        ]
    );
    assert_eq!(
        sim.channel_names(0),
        vec!["a", "b"],
        "no channel created by a trigger"
    );
}

#[test]
fn trigger_data_is_escaped_as_a_json_string() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.join(1, "a", None);
    sim.trigger(&["a"], "e\"v", "line\n\"q\" \\ é", None);
    let out = sim.drain();
    assert_eq!(
        out,
        vec![o(
            1,
            r#"{"event":"e\"v","data":"line\n\"q\" \\ é","channel":"a"}"#
        )]
    );
    let v: Value = serde_json::from_str(&out[0].1).unwrap();
    assert_eq!(v["data"], "line\n\"q\" \\ é");
}

// ---- channel info, users, terminate, shutdown --------------------------------------------------

// reference 9, ChannelControllerTest 1, 2, 4, 5 and §4.4
#[test]
fn ref_channel_1_5_channel_info_attribute_rules() {
    let mut sim = Sim::new();
    for c in 1..=2 {
        sim.connect(c);
        sim.join(c, "test-channel", None);
        sim.join(c, "presence-a", Some(&member("123", "Same")));
    }
    let all = ["occupied", "user_count", "subscription_count", "cache"];
    assert_eq!(
        sim.info(0, "test-channel", &all),
        r#"{"occupied":true,"subscription_count":2}"#
    );
    assert_eq!(
        sim.info(0, "presence-a", &all),
        r#"{"occupied":true,"user_count":1}"#
    );
    assert_eq!(sim.info(0, "test-channel", &["cache"]), "{}");
    assert_eq!(
        sim.info(0, "test-channel", &["occupied"]),
        r#"{"occupied":true}"#
    );
    assert_eq!(sim.info(0, "test-channel", &[]), "{}");
    assert_eq!(sim.info(0, "test-channel", &["bogus"]), "{}");
    assert_eq!(sim.info(0, "nope", &all), r#"{"occupied":false}"#);
    assert_eq!(sim.info(0, "nope", &["user_count"]), "{}");
}

// reference 9, ChannelsControllerTest 1, 3, 4 and §4.3
#[test]
fn ref_channels_1_4_lists_occupied_channels() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    assert_eq!(sim.channels(0, "", &["user_count"]), "{}");
    sim.join(1, "test-channel-one", None);
    sim.join(2, "presence-test-channel-two", Some(&member("1", "A")));
    sim.join(2, "test-channel-three", None);
    sim.send(1, &signin_msg(KEY, SECRET, &sim.sid(1), r#"{"id":"5"}"#));
    sim.trigger(&["cache-empty"], "e", "d", None);
    sim.drain();
    assert_eq!(
        sim.channels(0, "", &["user_count"]),
        r#"{"presence-test-channel-two":{"user_count":1},"test-channel-one":{},"test-channel-three":{}}"#
    );
    assert_eq!(
        sim.channels(0, "", &[]),
        r#"{"presence-test-channel-two":{},"test-channel-one":{},"test-channel-three":{}}"#
    );
    assert_eq!(
        sim.channels(0, "test-", &["subscription_count", "user_count"]),
        r#"{"test-channel-one":{"subscription_count":1},"test-channel-three":{"subscription_count":1}}"#
    );
    assert_eq!(
        sim.channels(0, "presence-", &["user_count"]),
        r#"{"presence-test-channel-two":{"user_count":1}}"#
    );
    sim.send(
        2,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"test-channel-three"}}"#,
    );
    sim.send(
        2,
        r#"{"event":"pusher:unsubscribe","data":{"channel":"presence-test-channel-two"}}"#,
    );
    assert_eq!(sim.channels(0, "", &[]), r#"{"test-channel-one":{}}"#);
}

// reference 9, ChannelUsersControllerTest 1-4
#[test]
fn ref_channel_users_1_4() {
    let mut sim = Sim::new();
    assert_eq!(sim.nodes[0].hub.channel_users(0, "test-channel"), Err(400));
    assert_eq!(sim.nodes[0].hub.channel_users(0, "presence-none"), Err(404));
    for (c, id) in [(1, "3"), (2, "2"), (3, "3"), (4, "\"x\"")] {
        sim.connect(c);
        sim.join(c, "presence-a", Some(&member(id, "N")));
    }
    assert_eq!(
        Value::Array(sim.nodes[0].hub.channel_users(0, "presence-a").unwrap()).to_string(),
        r#"[{"id":3},{"id":2},{"id":"x"}]"#
    );
    sim.join(1, "test-channel", None);
    assert_eq!(sim.nodes[0].hub.channel_users(0, "test-channel"), Err(400));
    for c in 1..=4 {
        sim.close(c);
    }
    assert_eq!(sim.nodes[0].hub.channel_users(0, "presence-a"), Err(404));
}

// reference 9, UsersTerminateControllerTest 2; port decisions: signed-in user
// or presence user_id on any channel, closed with 4009
#[test]
fn ref_users_terminate_2_terminate_user() {
    let mut sim = Sim::new();
    for c in 1..=3 {
        sim.connect(c);
    }
    // 1: signed in as 456 only
    sim.send(1, &signin_msg(KEY, SECRET, &sim.sid(1), r#"{"id":"456"}"#));
    // 2: public channel first, then presence as 456 (a number)
    sim.join(2, "test-channel", None);
    sim.join(2, "presence-a", Some(&member("456", "T")));
    // 3: another user on both channels, and a public subscription with spoofed channel_data
    sim.join(3, "test-channel", None);
    sim.join(3, "presence-a", Some(&member("789", "U")));
    sim.send(
        3,
        &subscribe_msg("public-b", None, Some(r#"{"user_id":456}"#)),
    );
    sim.drain();
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "456"), 2);
    let terminated = r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Connection terminated\"}"}"#;
    assert_eq!(
        sim.drain(),
        vec![
            o(1, terminated),
            o(1, "<CLOSE 4009 Connection terminated>"),
            o(2, terminated),
            o(
                3,
                r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":456}","channel":"presence-a"}"#
            ),
            o(2, "<CLOSE 4009 Connection terminated>"),
        ]
    );
    assert_eq!(
        sim.info(0, "test-channel", &["subscription_count"]),
        r#"{"subscription_count":1}"#
    );
    assert_eq!(
        sim.info(0, "presence-a", &["user_count"]),
        r#"{"user_count":1}"#
    );
    assert!(sim.is_open(3));
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "456"), 0);
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "nobody"), 0);
    assert!(sim.drain().is_empty());
}

// issue 14: a drain (`event_loop::drain::Spread`, driven as the loop drives
// it: once per turn, a kick with 4200 for each id due) closes the members of
// a presence channel one after another over the window; each departure
// reaches the members left at its own moment, and they go on receiving
// what the channel sends until their turn.
#[test]
fn a_drain_closes_presence_members_one_by_one_over_the_window() {
    use crate::event_loop::drain::Spread;
    let mut sim = Sim::new();
    for c in 1..=10 {
        sim.connect(c);
        sim.join(c, "presence-room", Some(&member(&c.to_string(), "x")));
    }
    sim.drain();
    let ids = (1..=10).map(|c| sim.nodes[0].id(c)).collect();
    let start = sim.now;
    let mut spread = Spread::new(start, 1_000, ids);
    let mut closes = Vec::new();
    let mut removed = 0;
    while !spread.is_done() {
        let now = sim.now;
        for id in spread.take(now).to_vec() {
            sim.nodes[0].hub.kick(now, id, PusherError::Shutdown);
        }
        for (at, text) in sim.drain() {
            if text == "<CLOSE 4200 Server shutting down>" {
                closes.push((at.conn, now - start));
            } else if text.contains("pusher_internal:member_removed") {
                // only members not closed yet hear it, and only of earlier ones
                let gone: usize = serde_json::from_str::<Value>(&text).unwrap()["data"]
                    .as_str()
                    .and_then(|d| serde_json::from_str::<Value>(d).ok())
                    .and_then(|d| d["user_id"].as_u64())
                    .unwrap() as usize;
                assert!(at.conn > gone, "{} told of {gone}", at.conn);
                removed += 1;
            }
        }
        sim.advance(10);
    }
    // one every 100 ms, the first at once, in order
    let planned: Vec<(usize, u64)> = (1..=10).map(|c| (c, (c as u64 - 1) * 100)).collect();
    assert_eq!(closes, planned);
    assert_eq!(removed, 9 + 8 + 7 + 6 + 5 + 4 + 3 + 2 + 1);
    assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
    assert!(sim.channel_names(0).is_empty());
}

// port decisions: shutdown closes everyone with 4200
#[test]
fn shutdown_closes_everyone_with_4200() {
    let mut sim = Sim::with_apps(vec![app(), app2()]);
    sim.connect(1);
    sim.connect(2);
    sim.connect_to(3, "reverb-key-2");
    sim.join(1, "presence-a", Some(&member("1", "A")));
    sim.join(2, "presence-a", Some(&member("2", "B")));
    sim.nodes[0].hub.shutdown(sim.now);
    let out = sim.drain();
    let shutting =
        r#"{"event":"pusher:error","data":"{\"code\":4200,\"message\":\"Server shutting down\"}"}"#;
    for c in 1..=3 {
        let mine = only(&out, c);
        assert_eq!(
            mine[mine.len() - 2..],
            [
                shutting.to_string(),
                "<CLOSE 4200 Server shutting down>".to_string()
            ],
            "{c}: {mine:?}"
        );
    }
    assert_eq!(
        sim.nodes[0].hub.connection_count(0) + sim.nodes[0].hub.connection_count(1),
        0
    );
    assert!(sim.channel_names(0).is_empty());
    sim.advance(1_000_000);
    assert!(sim.drain().is_empty());
}

#[test]
fn kick_closes_one_connection_with_the_given_error() {
    let mut sim = Sim::new();
    sim.connect(1);
    sim.connect(2);
    let id = sim.id(1);
    sim.nodes[0]
        .hub
        .kick(sim.now, id, PusherError::OverCapacity);
    assert_eq!(
        sim.drain(),
        vec![
            o(1, &err(4100, "Over capacity")),
            o(1, "<CLOSE 4100 Over capacity>"),
        ]
    );
    let id = sim.id(1);
    sim.nodes[0]
        .hub
        .kick(sim.now, id, PusherError::OverCapacity);
    assert!(sim.drain().is_empty());
    assert_eq!(sim.nodes[0].hub.connection_count(0), 1);
}

// ---- pusher:signin and server-to-user channels --------------------------------------------------

#[test]
fn signin_then_send_to_user() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    sim.connect(2);
    let user_data = r#"{"id":"42","name":"Ann"}"#;
    sim.send(1, &signin_msg(KEY, SECRET, &sid, user_data));
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r#"{"event":"pusher:signin_success","data":"{\"user_data\":\"{\\\"id\\\":\\\"42\\\",\\\"name\\\":\\\"Ann\\\"}\"}"}"#
        )]
    );
    // the data string decodes to {"user_data": <the string sent>}
    assert_eq!(
        sim.trigger(&["#server-to-user-42"], "notice", "hi", None),
        1
    );
    assert_eq!(
        sim.drain(),
        vec![o(
            1,
            r##"{"event":"notice","data":"hi","channel":"#server-to-user-42"}"##
        )]
    );
    // a second connection of the same user gets it too
    let sid2 = sim.sid(2).to_string();
    sim.send(2, &signin_msg(KEY, SECRET, &sid2, r#"{"id":"42"}"#));
    sim.drain();
    assert_eq!(
        sim.trigger(&["#server-to-user-42"], "notice", "hi", None),
        2
    );
    sim.drain();
    // clients cannot leave (or join) it themselves; it is not listed
    sim.send(
        1,
        r##"{"event":"pusher:unsubscribe","data":{"channel":"#server-to-user-42"}}"##,
    );
    assert!(sim.drain().is_empty());
    assert_eq!(
        sim.trigger(&["#server-to-user-42"], "notice", "hi", None),
        2
    );
    sim.drain();
    assert_eq!(sim.channels(0, "", &[]), "{}");
    assert_eq!(sim.channels(0, "#", &[]), "{}");
    // closing leaves it
    sim.close(1);
    sim.close(2);
    assert_eq!(
        sim.trigger(&["#server-to-user-42"], "notice", "hi", None),
        0
    );
    assert!(sim.channel_names(0).is_empty());
}

#[test]
fn signin_as_another_user_moves_the_connection() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    sim.send(1, &signin_msg(KEY, SECRET, &sid, r#"{"id":"1"}"#));
    sim.send(1, &signin_msg(KEY, SECRET, &sid, r#"{"id":2}"#));
    assert_eq!(sim.drain().len(), 2);
    assert_eq!(sim.trigger(&["#server-to-user-1"], "e", "d", None), 0);
    assert_eq!(sim.trigger(&["#server-to-user-2"], "e", "d", None), 1);
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "1"), 0);
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "2"), 1);
}

// port decisions: a failed signin is 4009 and the connection closes
#[test]
fn signin_failures_get_4009_and_close() {
    let denied = vec![
        o(1, UNAUTHORIZED),
        o(1, "<CLOSE 4009 Connection is unauthorized>"),
    ];
    let cases: [fn(&str) -> String; 6] = [
        // wrong secret
        |sid| signin_msg(KEY, "bad-secret", sid, r#"{"id":"1"}"#),
        // another app's key before the colon
        |sid| signin_msg("other-key", SECRET, sid, r#"{"id":"1"}"#),
        // signed for another socket
        |_| signin_msg(KEY, SECRET, "1.1", r#"{"id":"1"}"#),
        // correctly signed but without an id, or not JSON
        |sid| signin_msg(KEY, SECRET, sid, r#"{"name":"x"}"#),
        |sid| signin_msg(KEY, SECRET, sid, "not json"),
        // empty auth
        |_| {
            json!({"event":"pusher:signin","data":{"auth":"","user_data":"{\"id\":\"1\"}"}})
                .to_string()
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut sim = Sim::new();
        let sid = sim.connect(1);
        sim.join(1, "presence-a", Some(&member("1", "A")));
        sim.send(1, &case(&sid));
        assert_eq!(sim.drain(), denied, "case {i}");
        assert!(!sim.is_open(1));
        assert_eq!(sim.nodes[0].hub.connection_count(0), 0);
        assert!(sim.channel_names(0).is_empty());
    }
}

// The per-connection cap is about the channels a client subscribes to; the
// server-managed `#server-to-user-` channel of a signed-in user takes one of
// its 100 places.
#[test]
fn signin_does_not_use_up_a_subscription_slot() {
    let mut sim = Sim::new();
    let sid = sim.connect(1);
    sim.send(1, &signin_msg(KEY, SECRET, &sid, r#"{"id":"1"}"#));
    sim.drain();
    for i in 0..MAX_CHANNELS_PER_CONNECTION {
        sim.subscribe(1, &format!("c{i}"));
    }
    let out = sim.drain();
    assert_eq!(out.last(), Some(&o(1, &succeeded("c99"))));
}

// ---- apps are separate -------------------------------------------------------------------------

#[test]
fn channels_never_leak_between_apps() {
    let mut sim = Sim::with_apps(vec![app(), app2()]);
    sim.connect(1);
    sim.connect_to(2, "reverb-key-2");
    for c in [1, 2] {
        sim.join(c, "test-channel", None);
        sim.join(c, "private-a", None);
        sim.join(c, "presence-a", Some(&member(&c.to_string(), "N")));
    }
    // no member_added across apps: each sees only itself
    assert_eq!(
        sim.info(0, "presence-a", &["user_count"]),
        r#"{"user_count":1}"#
    );
    assert_eq!(
        sim.info(1, "presence-a", &["user_count"]),
        r#"{"user_count":1}"#
    );
    // HTTP triggers stay in their app
    assert_eq!(sim.trigger(&["test-channel"], "e", "d", None), 1);
    assert_eq!(
        sim.drain(),
        vec![o(1, r#"{"event":"e","data":"d","channel":"test-channel"}"#)]
    );
    let n = sim.nodes[0]
        .hub
        .trigger(sim.now, 1, &["test-channel".into()], "e", "d", None);
    assert_eq!(n, 1);
    assert_eq!(sim.drain_for(2).len(), 1);
    // client events stay in their app
    sim.whisper(1, "private-a", "client-x", json!({}));
    assert!(sim.drain().is_empty());
    // auth signed with the other app's credentials is refused
    let sid = sim.sid(1).to_string();
    let auth = sign("reverb-key-2", "reverb-secret-2", &sid, "private-b", None);
    sim.send(1, &subscribe_msg("private-b", Some(&auth), None));
    assert_eq!(sim.drain(), vec![o(1, UNAUTHORIZED)]);
    // caches, users and terminate are per app
    sim.trigger(&["cache-x"], "e", "d", None);
    assert_eq!(sim.info(1, "cache-x", &["cache"]), "{}");
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 1, "1"), 0);
    assert_eq!(sim.nodes[0].hub.terminate_user(sim.now, 0, "2"), 0);
    assert_eq!(
        sim.channels(1, "", &[]),
        r#"{"presence-a":{},"private-a":{},"test-channel":{}}"#
    );
    sim.close(1);
    sim.drain();
    assert_eq!(sim.channels(0, "", &[]), "{}");
    assert_eq!(sim.nodes[0].hub.connection_count(1), 1);
}

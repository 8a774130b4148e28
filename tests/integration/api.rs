//! The Pusher HTTP API: events, batch_events, channel queries, connections,
//! terminate_connections, validation and request signatures.

use serde_json::{Value, json};

use revurb::auth::sign_api_request;

use crate::support::{APP_KEY, APP_SECRET, Server, Ws, pusher_error, unix_now};

const TEST_EVENT: &str =
    r#"{"event":"App\\Events\\TestEvent","data":"{\"foo\":\"bar\"}","channel":"test-channel"}"#;

fn test_event_body(extra: Value) -> String {
    let mut body = json!({
        "name": "App\\Events\\TestEvent",
        "channel": "test-channel",
        "data": "{\"foo\":\"bar\"}",
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body.to_string()
}

fn assert_json(r: &crate::support::Resp, status: u16, body: &str) {
    assert_eq!(
        (r.status, r.text().as_str()),
        (status, body),
        "unexpected response"
    );
    assert_eq!(
        r.header("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[test]
fn ref_server_16_ref_events_1_16_trigger_reaches_three_subscribers() {
    let s = Server::start(&[], &[]);
    let mut clients: Vec<Ws> = (0..3)
        .map(|_| {
            let (mut ws, _) = s.pusher();
            ws.subscribe("test-channel");
            ws
        })
        .collect();
    let r = s.signed_post("/apps/app-id/events", &test_event_body(json!({})));
    assert_json(&r, 200, "{}");
    assert_eq!(r.header("content-length"), Some("2"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    for ws in &mut clients {
        assert_eq!(ws.recv_text(), TEST_EVENT);
    }
}

#[test]
fn ref_events_2_trigger_on_a_channels_array() {
    let s = Server::start(&[], &[]);
    let (mut one, _) = s.pusher();
    one.subscribe("test-channel-one");
    let (mut two, _) = s.pusher();
    two.subscribe("test-channel-two");
    let body = json!({
        "name": "e",
        "channels": ["test-channel-one", "test-channel-two", "nobody-here"],
        "data": "payload",
    });
    let r = s.signed_post("/apps/app-id/events", &body.to_string());
    assert_json(&r, 200, "{}");
    assert_eq!(
        one.recv_text(),
        r#"{"event":"e","data":"payload","channel":"test-channel-one"}"#
    );
    assert_eq!(
        two.recv_text(),
        r#"{"event":"e","data":"payload","channel":"test-channel-two"}"#
    );
    // each socket got only its own channel's message
    one.sync();
    two.sync();
}

#[test]
fn ref_events_5_socket_id_is_excluded() {
    let s = Server::start(&[], &[]);
    let (mut sender, sender_id) = s.pusher();
    sender.subscribe("test-channel");
    let (mut other, _) = s.pusher();
    other.subscribe("test-channel");

    let body =
        json!({ "name": "first", "channel": "test-channel", "data": "1", "socket_id": sender_id });
    assert_json(
        &s.signed_post("/apps/app-id/events", &body.to_string()),
        200,
        "{}",
    );
    let body = json!({ "name": "second", "channel": "test-channel", "data": "2" });
    assert_json(
        &s.signed_post("/apps/app-id/events", &body.to_string()),
        200,
        "{}",
    );
    assert_eq!(
        other.recv_text(),
        r#"{"event":"first","data":"1","channel":"test-channel"}"#
    );
    assert_eq!(
        other.recv_text(),
        r#"{"event":"second","data":"2","channel":"test-channel"}"#
    );
    // the excluded socket's first message is the second event
    assert_eq!(
        sender.recv_text(),
        r#"{"event":"second","data":"2","channel":"test-channel"}"#
    );
}

#[test]
fn ref_events_8_invalid_socket_id_does_not_fail() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    for sid in ["invalid-socket-id", "1234.5678"] {
        let r = s.signed_post(
            "/apps/app-id/events",
            &test_event_body(json!({ "socket_id": sid })),
        );
        assert_json(&r, 200, "{}");
        assert_eq!(ws.recv_text(), TEST_EVENT);
    }
}

/// A presence member on `presence-test-channel-one` and a public subscriber
/// on `test-channel-two`.
fn presence_and_public(s: &Server) -> (Ws, Ws) {
    let (mut p, sid) = s.pusher();
    p.subscribe_presence(&sid, "presence-test-channel-one", 1);
    let (mut q, _) = s.pusher();
    q.subscribe("test-channel-two");
    (p, q)
}

#[test]
fn ref_events_3_info_user_count() {
    let s = Server::start(&[], &[]);
    let _subs = presence_and_public(&s);
    let body = json!({
        "name": "e",
        "channels": ["presence-test-channel-one", "test-channel-two"],
        "data": "{}",
        "info": "user_count",
    });
    let r = s.signed_post("/apps/app-id/events", &body.to_string());
    assert_json(
        &r,
        200,
        r#"{"channels":{"presence-test-channel-one":{"user_count":1},"test-channel-two":{}}}"#,
    );
}

#[test]
fn ref_events_4_info_subscription_count() {
    let s = Server::start(&[], &[]);
    let _subs = presence_and_public(&s);
    let body = json!({
        "name": "e",
        "channels": ["presence-test-channel-one", "test-channel-two"],
        "data": "{}",
        "info": "subscription_count",
    });
    let r = s.signed_post("/apps/app-id/events", &body.to_string());
    assert_json(
        &r,
        200,
        r#"{"channels":{"presence-test-channel-one":{},"test-channel-two":{"subscription_count":1}}}"#,
    );
}

#[test]
fn ref_events_9_validation_errors_are_422() {
    let s = Server::start(&[], &[]);
    let cases = [
        (json!({ "name": "e", "channel": "test-channel" }), "data"),
        (json!({ "name": "e", "channels": ["test-channel"] }), "data"),
        (
            json!({ "name": "e", "channel": "test-channel", "data": "{}", "socket_id": 1234 }),
            "socket_id",
        ),
        (
            json!({ "name": "e", "channel": "test-channel", "data": "{}", "info": 1234 }),
            "info",
        ),
        (json!({ "channel": "test-channel", "data": "{}" }), "name"),
        (json!({ "name": "e", "data": "{}" }), "channels"),
    ];
    for (body, field) in cases {
        let r = s.signed_post("/apps/app-id/events", &body.to_string());
        assert_eq!(r.status, 422, "{body} -> {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        let msgs = v[field]
            .as_array()
            .unwrap_or_else(|| panic!("{body} -> {v}"));
        assert!(
            !msgs.is_empty() && msgs.iter().all(Value::is_string),
            "{body} -> {v}"
        );
    }
}

#[test]
fn ref_events_14_body_not_json_is_400_with_json_error() {
    let s = Server::start(&[], &[]);
    for body in ["not json", "", "[1,2]"] {
        let r = s.signed_post("/apps/app-id/events", body);
        assert_eq!(r.status, 400, "{body:?} -> {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v = r.json();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body:?} -> {v}"
        );
    }
    let r = s.signed_post("/apps/app-id/batch_events", "{oops");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string());
}

#[test]
fn ref_events_15_unknown_app_is_404() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    let q = crate::support::signed_post_query("/apps/654321/events", &body);
    let r = s.request(
        "POST",
        &format!("/apps/654321/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), "No matching application for ID [654321].");
}

#[test]
fn ref_events_17_unsigned_request_is_401() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    let r = s.request("POST", "/apps/app-id/events", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    // (the exact text for a request with no auth_key at all is reported
    // separately; see unsigned_request_says_signature_invalid)
    assert!(!r.body.is_empty());
    for path in [
        "/apps/app-id/channels",
        "/apps/app-id/channels/test-channel",
        "/apps/app-id/channels/presence-x/users",
        "/apps/app-id/connections",
    ] {
        assert_eq!(s.get(path).status, 401, "GET {path}");
    }
}

#[test]
fn unsigned_request_says_signature_invalid() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    let r = s.request("POST", "/apps/app-id/events", &[], body.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(r.text(), "Authentication signature invalid.");
}

#[test]
fn bad_or_missing_signature_with_valid_key_is_401_signature_invalid() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    let now = unix_now();
    let base = format!("auth_key={APP_KEY}&auth_timestamp={now}&auth_version=1.0");
    for q in [base.clone(), format!("{base}&auth_signature=deadbeef")] {
        let r = s.request(
            "POST",
            &format!("/apps/app-id/events?{q}"),
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 401, "{q}");
        assert_eq!(r.text(), "Authentication signature invalid.", "{q}");
    }
    // a body changed after signing fails too (its body_md5 no longer matches)
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        body.as_bytes(),
        APP_KEY,
        APP_SECRET,
        now,
    );
    let other = test_event_body(json!({ "name": "tampered" }));
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        other.as_bytes(),
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "body_md5 does not match the MD5 of the request body.")
    );
    // signed with the wrong secret
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        body.as_bytes(),
        APP_KEY,
        "wrong-secret",
        now,
    );
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "Authentication signature invalid.")
    );
}

#[test]
fn wrong_auth_key_is_401_unknown_auth_key() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        body.as_bytes(),
        "other-key",
        APP_SECRET,
        unix_now(),
    );
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (401, "Unknown auth_key."));
}

#[test]
fn auth_timestamp_700_s_old_is_401_timestamp_expired() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    for ts in [unix_now() - 700, unix_now() + 700] {
        let q = sign_api_request(
            "POST",
            "/apps/app-id/events",
            &[],
            body.as_bytes(),
            APP_KEY,
            APP_SECRET,
            ts,
        );
        let r = s.request(
            "POST",
            &format!("/apps/app-id/events?{q}"),
            &[],
            body.as_bytes(),
        );
        assert_eq!(r.status, 401);
        assert!(r.text().starts_with("Timestamp expired"), "{}", r.text());
        assert!(r.text().contains(&format!("({ts})")), "{}", r.text());
    }
    // 500 s off is within the window
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        body.as_bytes(),
        APP_KEY,
        APP_SECRET,
        unix_now() - 500,
    );
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn wrong_method_on_api_route_is_405() {
    let s = Server::start(&[], &[]);
    let r = s.get("/apps/app-id/events");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = s.request("POST", "/apps/app-id/channels", &[], b"{}");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

// ---- batch_events ---------------------------------------------------------------

#[test]
fn ref_batch_1_2_5_batch_without_info_returns_empty_object() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    let body = json!({ "batch": [
        { "name": "one", "channel": "test-channel", "data": "1" },
        { "name": "two", "channel": "test-channel", "data": "2" },
    ]});
    let r = s.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_json(&r, 200, r#"{"batch":{}}"#);
    assert_eq!(r.header("content-length"), Some("12"));
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"one","data":"1","channel":"test-channel"}"#
    );
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"two","data":"2","channel":"test-channel"}"#
    );
}

#[test]
fn ref_batch_3_info_for_each_item_is_a_list() {
    let s = Server::start(&[], &[]);
    let (mut p, sid) = s.pusher();
    p.subscribe_presence(&sid, "presence-test-channel", 1);
    let (mut q, _) = s.pusher();
    q.subscribe("test-channel");
    q.subscribe("test-channel-two");
    let body = json!({ "batch": [
        { "name": "e", "channel": "presence-test-channel", "data": "{}", "info": "user_count" },
        { "name": "e", "channel": "test-channel", "data": "{}", "info": "subscription_count" },
        { "name": "e", "channel": "test-channel-two", "data": "{}", "info": "subscription_count,user_count" },
    ]});
    let r = s.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_json(
        &r,
        200,
        r#"{"batch":[{"user_count":1},{"subscription_count":1},{"subscription_count":1}]}"#,
    );
}

#[test]
fn ref_batch_4_info_for_some_items() {
    let s = Server::start(&[], &[]);
    let (mut p, sid) = s.pusher();
    p.subscribe_presence(&sid, "presence-test-channel", 1);
    let (mut q, _) = s.pusher();
    q.subscribe("test-channel");
    let body = json!({ "batch": [
        { "name": "e", "channel": "presence-test-channel", "data": "{}", "info": "user_count" },
        { "name": "e", "channel": "test-channel", "data": "{}" },
    ]});
    let r = s.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_json(&r, 200, r#"{"batch":[{"user_count":1},{}]}"#);
}

#[test]
fn ref_batch_6_batch_excludes_socket_id() {
    let s = Server::start(&[], &[]);
    let (mut a, a_id) = s.pusher();
    a.subscribe("test-channel");
    let body = json!({ "batch": [
        { "name": "skip", "channel": "test-channel", "data": "1", "socket_id": a_id },
        { "name": "keep", "channel": "test-channel", "data": "2" },
    ]});
    let r = s.signed_post("/apps/app-id/batch_events", &body.to_string());
    assert_json(&r, 200, r#"{"batch":{}}"#);
    assert_eq!(
        a.recv_text(),
        r#"{"event":"keep","data":"2","channel":"test-channel"}"#
    );
}

#[test]
fn batch_validation_is_422() {
    let s = Server::start(&[], &[]);
    for body in [
        json!({}),
        json!({ "batch": "x" }),
        json!({ "batch": [{ "name": "e", "channel": "c" }] }),
    ] {
        let r = s.signed_post("/apps/app-id/batch_events", &body.to_string());
        assert_eq!(r.status, 422, "{body} -> {}", r.text());
        assert!(r.json().is_object());
    }
}

// ---- channel queries ----------------------------------------------------------------

#[test]
fn ref_channels_1_3_4_channels_lists_occupied_channels() {
    let s = Server::start(&[], &[]);
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_json(&r, 200, r#"{"channels":{}}"#);

    let (mut a, _) = s.pusher();
    a.subscribe("test-channel-one");
    let (mut b, sid) = s.pusher();
    b.subscribe_presence(&sid, "presence-test-channel-two", 1);

    let r = s.signed_get("/apps/app-id/channels", &[("info", "user_count")]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"channels":{"test-channel-one":{},"presence-test-channel-two":{"user_count":1}}})
    );
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );

    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_eq!(
        r.json(),
        json!({"channels":{"test-channel-one":{},"presence-test-channel-two":{}}})
    );

    let r = s.signed_get(
        "/apps/app-id/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    );
    assert_json(
        &r,
        200,
        r#"{"channels":{"presence-test-channel-two":{"user_count":1}}}"#,
    );

    // only occupied channels: after `a` unsubscribes its channel is gone
    a.send_text(r#"{"event":"pusher:unsubscribe","data":{"channel":"test-channel-one"}}"#);
    a.sync();
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_json(&r, 200, r#"{"channels":{"presence-test-channel-two":{}}}"#);
}

#[test]
fn ref_channel_1_2_5_single_channel_always_has_occupied() {
    let s = Server::start(&[], &[]);
    let (mut a, _) = s.pusher();
    a.subscribe("test-channel");
    let (mut b, _) = s.pusher();
    b.subscribe("test-channel");

    let r = s.signed_get(
        "/apps/app-id/channels/test-channel",
        &[("info", "user_count,subscription_count,cache")],
    );
    assert_json(&r, 200, r#"{"occupied":true,"subscription_count":2}"#);
    assert_eq!(r.header("content-length"), Some("40"));

    let r = s.signed_get("/apps/app-id/channels/test-channel", &[("info", "cache")]);
    assert_json(&r, 200, r#"{"occupied":true}"#);

    let r = s.signed_get("/apps/app-id/channels/test-channel", &[]);
    assert_json(&r, 200, r#"{"occupied":true}"#);

    let r = s.signed_get(
        "/apps/app-id/channels/nobody-here",
        &[("info", "subscription_count")],
    );
    assert_json(&r, 200, r#"{"occupied":false}"#);
}

#[test]
fn ref_channel_4_presence_channel_counts_unique_users() {
    let s = Server::start(&[], &[]);
    let (mut a, a_id) = s.pusher();
    a.subscribe_presence(&a_id, "presence-test-channel", 123);
    let (mut b, b_id) = s.pusher();
    b.subscribe_presence(&b_id, "presence-test-channel", 123);
    let r = s.signed_get(
        "/apps/app-id/channels/presence-test-channel",
        &[("info", "user_count,subscription_count")],
    );
    assert_json(&r, 200, r#"{"occupied":true,"user_count":1}"#);
}

#[test]
fn ref_users_1_2_3_4_presence_users() {
    let s = Server::start(&[], &[]);
    let (mut public, _) = s.pusher();
    public.subscribe("test-channel");
    let r = s.signed_get("/apps/app-id/channels/test-channel/users", &[]);
    assert_json(&r, 400, "{}");
    let r = s.signed_get("/apps/app-id/channels/presence-nobody/users", &[]);
    assert_json(&r, 404, "{}");

    let mut members = Vec::new();
    for user in [3u64, 2, 3] {
        let (mut ws, sid) = s.pusher();
        ws.subscribe_presence(&sid, "presence-test-channel", user);
        members.push(ws);
    }
    let r = s.signed_get("/apps/app-id/channels/presence-test-channel/users", &[]);
    assert_json(&r, 200, r#"{"users":[{"id":3},{"id":2}]}"#);

    let (mut ws, sid) = s.pusher();
    ws.subscribe_presence(&sid, "presence-test-channel", 1);
    let r = s.signed_get("/apps/app-id/channels/presence-test-channel/users", &[]);
    assert_json(&r, 200, r#"{"users":[{"id":3},{"id":2},{"id":1}]}"#);
}

#[test]
fn ref_connections_1_2_counts_every_open_socket() {
    let s = Server::start(&[], &[]);
    let r = s.signed_get("/apps/app-id/connections", &[]);
    assert_json(&r, 200, r#"{"connections":0}"#);

    let (mut a, _) = s.pusher();
    a.subscribe("test-channel-one");
    a.subscribe("test-channel-two");
    let r = s.signed_get("/apps/app-id/connections", &[]);
    assert_json(&r, 200, r#"{"connections":1}"#);
    assert_eq!(r.header("content-length"), Some("17"));

    // port decision: a socket that never subscribed is counted too
    let (_b, _) = s.pusher();
    let r = s.signed_get("/apps/app-id/connections", &[]);
    assert_json(&r, 200, r#"{"connections":2}"#);
}

#[test]
fn ref_terminate_1_2_terminate_connections_closes_the_users_sockets() {
    let s = Server::start(&[], &[]);
    let (mut victim, v_id) = s.pusher();
    victim.subscribe("test-channel");
    victim.subscribe_presence(&v_id, "presence-test-channel", 456);
    let (mut bystander, b_id) = s.pusher();
    bystander.subscribe_presence(&b_id, "presence-test-channel", 789);
    // the victim sees the bystander join
    let added = victim.recv_json();
    assert_eq!(added["event"], "pusher_internal:member_added");

    let r = s.signed_post("/apps/app-id/users/456/terminate_connections", "{}");
    assert_json(&r, 200, "{}");
    assert_eq!(r.header("content-length"), Some("2"));

    assert_eq!(
        victim.recv_text(),
        pusher_error(4009, "Connection terminated")
    );
    assert_eq!(victim.recv_close().0, 4009);
    victim.expect_eof(std::time::Duration::from_secs(3));

    assert_eq!(
        bystander.recv_text(),
        r#"{"event":"pusher_internal:member_removed","data":"{\"user_id\":456}","channel":"presence-test-channel"}"#
    );
    bystander.sync();
    let r = s.signed_get("/apps/app-id/connections", &[]);
    assert_json(&r, 200, r#"{"connections":1}"#);
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_json(&r, 200, r#"{"channels":{"presence-test-channel":{}}}"#);

    // an unknown user is fine
    let r = s.signed_post("/apps/app-id/users/nobody/terminate_connections", "{}");
    assert_json(&r, 200, "{}");
    // reference UsersTerminateControllerTest 1: an unmatched route
    let r = s.signed_post(
        "/apps/app-id/channels/users/not-a-user/terminate_connections",
        "{}",
    );
    assert_eq!(r.status, 404);
}

/// The MD5 of the empty body, which the official Python SDK (`pusher` 3.3.4) signs as
/// `body_md5` on every GET.
const EMPTY_BODY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

#[test]
fn gets_that_sign_the_md5_of_the_empty_body_are_answered() {
    let s = Server::start(&[], &[]);
    let (mut member, id) = s.pusher();
    member.subscribe_presence(&id, "presence-room", 7);
    let md5 = ("body_md5", EMPTY_BODY_MD5);
    let r = s.signed_get("/apps/app-id/channels", &[md5, ("info", "user_count")]);
    assert_json(
        &r,
        200,
        r#"{"channels":{"presence-room":{"user_count":1}}}"#,
    );
    let info = ("info", "subscription_count,user_count");
    // a presence channel counts users, other channels subscriptions
    let r = s.signed_get("/apps/app-id/channels/presence-room", &[md5, info]);
    assert_json(&r, 200, r#"{"occupied":true,"user_count":1}"#);
    member.subscribe("room");
    let r = s.signed_get("/apps/app-id/channels/room", &[md5, info]);
    assert_json(&r, 200, r#"{"occupied":true,"subscription_count":1}"#);
    let r = s.signed_get("/apps/app-id/channels/presence-room/users", &[md5]);
    assert_json(&r, 200, r#"{"users":[{"id":7}]}"#);
    // a body_md5 that is not the MD5 of the (empty) body is refused
    let wrong = ("body_md5", "99914b932bd37a50b983c5e7c90ae93b");
    let r = s.signed_get("/apps/app-id/channels", &[wrong]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, "body_md5 does not match the MD5 of the request body.")
    );
}

#[test]
fn a_post_whose_body_is_not_signed_is_401() {
    let s = Server::start(&[], &[]);
    let body = test_event_body(json!({}));
    // signed as if there were no body: nothing binds the body to the signature
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        b"",
        APP_KEY,
        APP_SECRET,
        unix_now(),
    );
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(r.text().starts_with("Missing body_md5"), "{}", r.text());
}

/// The Python SDK's `terminate_user_connections` posts to `/users/{id}/terminate_connections`
/// without `/apps/{app_id}`; the signed `auth_key` names the app.
#[test]
fn terminate_connections_without_the_apps_prefix_closes_the_users_sockets() {
    let s = Server::start(&[], &["--path", "ws"]);
    let (mut victim, v_id) = Ws::pusher_at(s.addr(), "/ws/app/app-key");
    victim.subscribe_presence(&v_id, "presence-room", 456);
    let r = s
        .http()
        .signed_post_prefixed("/ws", "/users/456/terminate_connections", "{}");
    assert_json(&r, 200, "{}");
    assert_eq!(
        victim.recv_text(),
        pusher_error(4009, "Connection terminated")
    );
    assert_eq!(victim.recv_close().0, 4009);
    // signed with a key no app has
    let q = sign_api_request(
        "POST",
        "/users/456/terminate_connections",
        &[],
        b"{}",
        "other-key",
        APP_SECRET,
        unix_now(),
    );
    let r = s.request(
        "POST",
        &format!("/ws/users/456/terminate_connections?{q}"),
        &[],
        b"{}",
    );
    assert_eq!((r.status, r.text().as_str()), (401, "Unknown auth_key."));
}

//! Authorized connections, watchlist events and subscription counts (issue
//! 13) against the real binary: what a client sees on the wire, with the
//! settings given the way an operator gives them.

use std::time::{Duration, Instant};

use crate::cluster_support::signin;
use crate::support::{Server, channel_auth, pusher_error, subscription_succeeded};

const AUTH_TIMEOUT: &str = "Connection not authorized within timeout: sign in or subscribe to a private or presence channel.";

#[test]
fn authorized_connections_close_the_idle_with_4009_and_keep_the_authorized() {
    let s = Server::start(
        &[
            ("REVERB_APP_ENABLE_USER_AUTHENTICATION", "true"),
            ("REVERB_APP_USER_AUTHENTICATION_TIMEOUT", "1"),
        ],
        &[],
    );
    let start = Instant::now();
    let (mut idle, _) = s.pusher();
    idle.subscribe("news"); // a public channel does not authorize
    let (mut signed, signed_id) = s.pusher();
    signin(&mut signed, &signed_id, r#"{"id":"1"}"#);
    let (mut private, private_id) = s.pusher();
    private.send_json(&serde_json::json!({
        "event": "pusher:subscribe",
        "data": {"channel": "private-a", "auth": channel_auth(&private_id, "private-a", None)},
    }));
    assert_eq!(private.recv_text(), subscription_succeeded("private-a"));

    assert_eq!(idle.recv_text(), pusher_error(4009, AUTH_TIMEOUT));
    assert_eq!(idle.recv_close(), (4009, AUTH_TIMEOUT.to_string()));
    idle.expect_eof(Duration::from_secs(3));
    assert!(start.elapsed() >= Duration::from_millis(900));
    // the others are still served well past the timeout
    std::thread::sleep(Duration::from_millis(1200));
    signed.sync();
    private.sync();
    assert_eq!(s.connections(), 2);
}

#[test]
fn authorized_connections_are_off_by_default() {
    let s = Server::start(&[("REVERB_APP_USER_AUTHENTICATION_TIMEOUT", "1")], &[]);
    let (mut ws, _) = s.pusher();
    ws.expect_silence(Duration::from_millis(1500));
    ws.sync();
}

/// `pusher:signin` as `user_data`, signed; does not wait for the answer.
fn send_signin(ws: &mut crate::support::Ws, socket_id: &str, user_data: &str) {
    let msg = format!("{socket_id}::user::{user_data}");
    let auth = format!(
        "{}:{}",
        crate::support::APP_KEY,
        revurb::auth::hmac_sha256_hex(crate::support::APP_SECRET.as_bytes(), msg.as_bytes())
    );
    ws.send_json(&serde_json::json!({
        "event": "pusher:signin",
        "data": { "auth": auth, "user_data": user_data },
    }));
}

fn watchlist_events(groups: &[(&str, &[&str])]) -> String {
    let events: Vec<serde_json::Value> = groups
        .iter()
        .map(|(name, ids)| serde_json::json!({"name": name, "user_ids": ids}))
        .collect();
    let data = serde_json::json!({ "events": events }).to_string();
    serde_json::json!({"event": "pusher_internal:watchlist_events", "data": data}).to_string()
}

#[test]
fn watchlist_online_then_offline_after_the_delay() {
    let s = Server::start(&[("REVERB_APP_WEBHOOK_DELAY", "1")], &[]);
    let (mut bob, bob_id) = s.pusher();
    signin(&mut bob, &bob_id, r#"{"id":"bob"}"#);
    let (mut ann, ann_id) = s.pusher();
    signin(
        &mut ann,
        &ann_id,
        r#"{"id":"ann","watchlist":["bob","cid"]}"#,
    );
    assert_eq!(
        ann.recv_text(),
        watchlist_events(&[("online", &["bob"]), ("offline", &["cid"])])
    );
    let (mut cid, cid_id) = s.pusher();
    signin(&mut cid, &cid_id, r#"{"id":"cid"}"#);
    assert_eq!(ann.recv_text(), watchlist_events(&[("online", &["cid"])]));
    let gone = Instant::now();
    drop(bob);
    assert_eq!(ann.recv_text(), watchlist_events(&[("offline", &["bob"])]));
    assert!(gone.elapsed() >= Duration::from_millis(900));
}

#[test]
fn watchlist_over_100_gets_4302_and_a_bad_one_closes_with_4009() {
    let s = Server::start(&[], &[]);
    let (mut ws, id) = s.pusher();
    let list: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let user_data = serde_json::json!({"id": "ann", "watchlist": list}).to_string();
    signin(&mut ws, &id, &user_data);
    assert_eq!(
        ws.recv_text(),
        pusher_error(
            4302,
            "Watchlist limit exceeded. Only the first 100 user IDs are accepted."
        )
    );
    let first_100: Vec<&str> = list[..100].iter().map(String::as_str).collect();
    assert_eq!(ws.recv_text(), watchlist_events(&[("offline", &first_100)]));
    ws.sync();

    let (mut bad, bad_id) = s.pusher();
    send_signin(&mut bad, &bad_id, r#"{"id":"bob","watchlist":"ann"}"#);
    let why = "The watchlist in user_data must be an array of user id strings.";
    assert_eq!(bad.recv_text(), pusher_error(4009, why));
    assert_eq!(bad.recv_close(), (4009, why.to_string()));
    bad.expect_eof(Duration::from_secs(3));
}

fn count(channel: &str, n: u64) -> String {
    let data = serde_json::json!({ "subscription_count": n }).to_string();
    serde_json::json!({"event": "pusher_internal:subscription_count", "data": data, "channel": channel})
        .to_string()
}

#[test]
fn subscription_counts_go_to_every_subscriber_when_they_change() {
    let s = Server::start(&[("REVERB_APP_ENABLE_SUBSCRIPTION_COUNT", "true")], &[]);
    let (mut a, _) = s.pusher();
    a.subscribe("news");
    assert_eq!(a.recv_text(), count("news", 1));
    let (mut b, _) = s.pusher();
    b.subscribe("news");
    assert_eq!(b.recv_text(), count("news", 2));
    assert_eq!(a.recv_text(), count("news", 2));
    drop(b);
    assert_eq!(a.recv_text(), count("news", 1));
    // presence channels have none
    let (mut p, p_id) = s.pusher();
    p.subscribe_presence(&p_id, "presence-room", 1);
    p.sync();
    a.sync();
}

#[test]
fn subscription_counts_are_off_by_default() {
    let s = Server::start(&[], &[]);
    let (mut a, _) = s.pusher();
    a.subscribe("news");
    let (mut b, _) = s.pusher();
    b.subscribe("news");
    a.sync();
    b.sync();
}

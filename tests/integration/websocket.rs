//! WebSocket: handshake, connection_established, refusals (4001, 4004, 4009),
//! message size, framing, control frames, server pings and pruning.

use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::support::{Msg, Server, WS_ACCEPT, pusher_error, subscription_succeeded};

#[test]
fn ref_server_48_upgrade_sets_x_powered_by_and_accept() {
    let s = Server::start(&[], &[]);
    let mut ws = s.ws(
        "/app/app-key?protocol=7&client=js&version=8.4.0&flash=false",
        &[],
    );
    assert_eq!(ws.head.status, 101);
    assert_eq!(ws.head.header("x-powered-by"), Some("revurb"));
    assert_eq!(ws.head.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert_eq!(
        ws.head.header("upgrade").map(str::to_ascii_lowercase),
        Some("websocket".to_string())
    );
    ws.established();
}

#[test]
fn connection_established_carries_socket_id_and_activity_timeout_from_env() {
    let s = Server::start(&[("REVERB_APP_ACTIVITY_TIMEOUT", "42")], &[]);
    let mut ws = s.ws("/app/app-key", &[]);
    assert_eq!(ws.head.status, 101);
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher:connection_established");
    assert!(v.get("channel").is_none(), "{v}");
    let data_str = v["data"].as_str().expect("data is a JSON string");
    let data: serde_json::Value = serde_json::from_str(data_str).unwrap();
    assert_eq!(data["activity_timeout"], 42);
    let sid = data["socket_id"].as_str().unwrap();
    let (a, b) = sid.split_once('.').expect("socket id is <n>.<n>");
    assert!(
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()),
        "{sid}"
    );
    assert_eq!(
        data_str,
        format!(r#"{{"socket_id":"{sid}","activity_timeout":42}}"#)
    );
    // a second connection gets another socket id
    let (_ws2, sid2) = s.pusher();
    assert_ne!(sid, sid2);
}

#[test]
fn default_activity_timeout_is_30() {
    let s = Server::start(&[], &[]);
    let mut ws = s.ws("/app/app-key", &[]);
    let v = ws.recv_json();
    let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["activity_timeout"], 30);
}

#[test]
fn ref_server_28_unknown_app_key_gets_4001_then_close() {
    let s = Server::start(&[], &[]);
    let mut ws = s.ws("/app/invalid-key", &[]);
    assert_eq!(ws.head.status, 101);
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"pusher:error","data":"{\"code\":4001,\"message\":\"Application does not exist\"}"}"#
    );
    assert_eq!(
        ws.recv_close(),
        (4001, "Application does not exist".to_string())
    );
    ws.expect_eof(Duration::from_secs(3));
}

fn assert_origin_refused(s: &Server, headers: &[(&str, &str)]) {
    let mut ws = s.ws("/app/app-key", headers);
    assert_eq!(ws.head.status, 101, "{headers:?}");
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"pusher:error","data":"{\"code\":4009,\"message\":\"Origin not allowed\"}"}"#,
        "{headers:?}"
    );
    assert_eq!(ws.recv_close(), (4009, "Origin not allowed".to_string()));
    ws.expect_eof(Duration::from_secs(3));
}

#[test]
fn ref_server_31_missing_or_wrong_origin_gets_4009_then_close() {
    let s = Server::start(&[("REVERB_ALLOWED_ORIGINS", "laravel.com")], &[]);
    assert_origin_refused(&s, &[]);
    assert_origin_refused(&s, &[("Origin", "http://example.com")]);
    // the host must match exactly: no suffix or sub-domain match
    assert_origin_refused(&s, &[("Origin", "https://www.laravel.com")]);
    assert_origin_refused(&s, &[("Origin", "https://laravel.com.evil.test")]);
    assert_eq!(s.connections(), 0, "refused sockets are not counted");
}

#[test]
fn ref_server_32_ref_server_1_allowed_origin_connects() {
    let s = Server::start(&[("REVERB_ALLOWED_ORIGINS", "laravel.com")], &[]);
    for origin in ["http://laravel.com", "https://laravel.com:8443"] {
        let mut ws = s.ws("/app/app-key", &[("Origin", origin)]);
        assert_eq!(ws.head.status, 101);
        ws.established();
        ws.subscribe("test-channel");
    }
}

#[test]
fn allowed_origin_wildcard_pattern() {
    let s = Server::start(&[("REVERB_ALLOWED_ORIGINS", "*.laravel.com")], &[]);
    let mut ws = s.ws("/app/app-key", &[("Origin", "https://app.laravel.com")]);
    ws.established();
    // `*.laravel.com` does not match `laravel.com` (reference 3.2)
    assert_origin_refused(&s, &[("Origin", "https://laravel.com")]);
}

#[test]
fn ref_server_33_over_max_connections_gets_4004_and_a_slot_frees_on_disconnect() {
    let s = Server::start(&[("REVERB_APP_MAX_CONNECTIONS", "1")], &[]);
    let (mut first, _) = s.pusher();
    first.subscribe("test-channel");

    let mut second = s.ws("/app/app-key", &[]);
    assert_eq!(second.head.status, 101);
    assert_eq!(
        second.recv_text(),
        r#"{"event":"pusher:error","data":"{\"code\":4004,\"message\":\"Application is over connection quota\"}"}"#
    );
    assert_eq!(
        second.recv_close(),
        (4004, "Application is over connection quota".to_string())
    );
    second.expect_eof(Duration::from_secs(3));

    // the first one still works
    first.sync();
    first.send_close(1000, "");
    assert!(matches!(first.recv(), Msg::Close(1000, _)));
    drop(first);
    s.wait_connections(0, Duration::from_secs(5));

    let (mut third, _) = s.pusher();
    third.subscribe("test-channel");
}

#[test]
fn ref_server_34_message_over_tiny_max_message_size_closes_1009() {
    let s = Server::start(&[("REVERB_APP_MAX_MESSAGE_SIZE", "1")], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_text(r#"{"event":"pusher:ping"}"#);
    assert_eq!(
        ws.recv_close(),
        (1009, "Maximum message size exceeded".to_string())
    );
    ws.expect_eof(Duration::from_secs(3));
}

#[test]
fn ref_server_38_message_over_10_kb_on_default_app_closes_1009() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    // exactly the limit is fine (only strictly greater fails)
    let pad = "x".repeat(10_000 - r#"{"event":"pusher:ping","pad":""}"#.len());
    let msg = format!(r#"{{"event":"pusher:ping","pad":"{pad}"}}"#);
    assert_eq!(msg.len(), 10_000);
    ws.send_text(&msg);
    assert_eq!(ws.recv_text(), r#"{"event":"pusher:pong"}"#);
    let msg = format!(r#"{{"event":"pusher:ping","pad":"{pad}x"}}"#);
    ws.send_text(&msg);
    assert_eq!(
        ws.recv_close(),
        (1009, "Maximum message size exceeded".to_string())
    );
    ws.expect_eof(Duration::from_secs(3));
}

#[test]
fn message_size_limit_counts_all_fragments() {
    let s = Server::start(&[("REVERB_APP_MAX_MESSAGE_SIZE", "100")], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Data(Data::Text), false, &[b'x'; 60]);
    ws.send_frame(OpCode::Data(Data::Continue), true, &[b'x'; 60]);
    assert_eq!(
        ws.recv_close(),
        (1009, "Maximum message size exceeded".to_string())
    );
}

#[test]
fn ref_server_39_large_message_within_raised_limit_subscribes() {
    let s = Server::start(&[("REVERB_APP_MAX_MESSAGE_SIZE", "1000000")], &[]);
    let (mut ws, _) = s.pusher();
    let pad = "x".repeat(20_000);
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": "test-channel", "pad": pad },
    }));
    assert_eq!(ws.recv_text(), subscription_succeeded("test-channel"));
}

#[test]
fn fragmented_subscribe_is_reassembled_with_a_ping_in_between() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    let msg = br#"{"event":"pusher:subscribe","data":{"channel":"test-channel"}}"#;
    let (a, rest) = msg.split_at(10);
    let (b, c) = rest.split_at(25);
    ws.send_frame(OpCode::Data(Data::Text), false, a);
    ws.send_frame(OpCode::Data(Data::Continue), false, b);
    ws.send_ping(b"mid");
    ws.send_frame(OpCode::Data(Data::Continue), true, c);
    assert_eq!(ws.recv(), Msg::Pong(b"mid".to_vec()));
    assert_eq!(ws.recv_text(), subscription_succeeded("test-channel"));
}

#[test]
fn invalid_utf8_text_closes_1007() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Data(Data::Text), true, &[b'{', 0xff, 0xfe, b'}']);
    let (code, _) = ws.recv_close();
    assert_eq!(code, 1007);
    ws.expect_eof(Duration::from_secs(3));
}

#[test]
fn invalid_utf8_split_across_fragments_closes_1007() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    // "é" is C3 A9; end the message after C3
    ws.send_frame(OpCode::Data(Data::Text), false, b"{\"a\":\"");
    ws.send_frame(OpCode::Data(Data::Continue), true, &[0xc3]);
    assert_eq!(ws.recv_close().0, 1007);
}

#[test]
fn unmasked_client_frame_closes_1002() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    // FIN + text, no mask bit, 2 bytes
    ws.send_raw(&[0x81, 0x02, b'{', b'}']);
    assert_eq!(ws.recv_close().0, 1002);
}

#[test]
fn ref_server_44_ping_control_frame_gets_pong_with_same_payload() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_ping(b"hello revurb");
    assert_eq!(ws.recv(), Msg::Pong(b"hello revurb".to_vec()));
    ws.send_ping(b"");
    assert_eq!(ws.recv(), Msg::Pong(Vec::new()));
}

#[test]
fn ref_server_45_pong_control_frame_gets_no_reply() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Control(Control::Pong), true, b"x");
    // the very next frame is the answer to this ping: nothing came for the PONG
    ws.sync();
}

#[test]
fn client_close_frame_is_echoed_then_socket_closed() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    ws.send_close(1000, "bye");
    let (code, _) = ws.recv_close();
    assert_eq!(code, 1000);
    ws.expect_eof(Duration::from_secs(3));
    s.wait_connections(0, Duration::from_secs(3));
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_eq!(r.text(), r#"{"channels":{}}"#);
}

#[test]
fn ref_server_18_pusher_ping_gets_pusher_pong() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_text(r#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(ws.recv_text(), r#"{"event":"pusher:pong"}"#);
    ws.send_text(r#"{"event":"pusher:ping"}"#);
    assert_eq!(ws.recv_text(), r#"{"event":"pusher:pong"}"#);
}

#[test]
fn invalid_json_gets_4200_invalid_message_format_and_stays_open() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_text("not json");
    assert_eq!(ws.recv_text(), pusher_error(4200, "Invalid message format"));
    ws.sync();
}

/// Waits for the server's JSON ping; returns when it arrived.
fn expect_json_ping(ws: &mut crate::support::Ws) -> Instant {
    assert_eq!(
        ws.recv_within(Duration::from_secs(4)),
        Msg::Text(r#"{"event":"pusher:ping"}"#.to_string())
    );
    Instant::now()
}

#[test]
fn ref_server_19_20_46_silent_unsubscribed_connection_is_pinged_then_pruned_4201() {
    let s = Server::start(&[("REVERB_APP_PING_INTERVAL", "1")], &[]);
    let (mut idle, _) = s.pusher();
    let opened = Instant::now();
    let (mut sub, _) = s.pusher();
    sub.subscribe("test-channel");

    let pinged = expect_json_ping(&mut idle);
    let since_open = pinged - opened;
    assert!(
        since_open >= Duration::from_millis(800) && since_open < Duration::from_millis(2500),
        "pinged after {since_open:?}"
    );
    assert_eq!(
        idle.recv_within(Duration::from_secs(4)),
        Msg::Text(pusher_error(4201, "Pong reply not received in time"))
    );
    let since_ping = pinged.elapsed();
    assert!(
        since_ping >= Duration::from_millis(800) && since_ping < Duration::from_millis(2500),
        "pruned {since_ping:?} after the ping"
    );
    assert_eq!(
        idle.recv_close(),
        (4201, "Pong reply not received in time".to_string())
    );
    idle.expect_eof(Duration::from_secs(3));

    // the subscribed one too; its channel is gone afterwards (reference 20)
    expect_json_ping(&mut sub);
    assert_eq!(
        sub.recv_within(Duration::from_secs(4)),
        Msg::Text(pusher_error(4201, "Pong reply not received in time"))
    );
    assert_eq!(sub.recv_close().0, 4201);
    sub.expect_eof(Duration::from_secs(3));
    s.wait_connections(0, Duration::from_secs(3));
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_eq!(r.text(), r#"{"channels":{}}"#);
}

#[test]
fn answering_the_server_ping_keeps_the_connection() {
    let s = Server::start(&[("REVERB_APP_PING_INTERVAL", "1")], &[]);
    let (mut ws, _) = s.pusher();
    for _ in 0..3 {
        expect_json_ping(&mut ws);
        ws.send_text(r#"{"event":"pusher:pong"}"#);
    }
    // still alive: a ping is answered
    ws.sync();
}

#[test]
fn ref_server_47_after_a_control_ping_the_server_pings_with_control_frames() {
    let s = Server::start(&[("REVERB_APP_PING_INTERVAL", "1")], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_ping(b"p");
    assert_eq!(ws.recv(), Msg::Pong(b"p".to_vec()));
    // now silent: the server's ping is a PING frame, not JSON
    assert_eq!(
        ws.recv_within(Duration::from_secs(4)),
        Msg::Ping(Vec::new())
    );
    // answering with a PONG frame counts as activity
    ws.send_frame(OpCode::Control(Control::Pong), true, b"");
    assert_eq!(
        ws.recv_within(Duration::from_secs(4)),
        Msg::Ping(Vec::new())
    );
    ws.send_frame(OpCode::Control(Control::Pong), true, b"");
    ws.sync();
}

#[test]
fn binary_frame_that_is_not_json_gets_4200() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Data(Data::Binary), true, &[0, 159, 146, 150]);
    assert_eq!(ws.recv_text(), pusher_error(4200, "Invalid message format"));
    ws.sync();
}

#[test]
fn upgrade_with_wrong_version_or_without_key_is_refused() {
    let s = Server::start(&[], &[]);
    let mut c = crate::support::HttpConn::connect(s.addr());
    let r = c.request(
        "GET",
        "/app/app-key",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", crate::support::WS_KEY),
            ("Sec-WebSocket-Version", "8"),
        ],
        b"",
    );
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    let r = s.request(
        "GET",
        "/app/app-key",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    assert_eq!(r.status, 400);
    let r = s.request(
        "POST",
        "/app/app-key",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", crate::support::WS_KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        b"",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn frame_sent_in_the_same_packet_as_the_upgrade_is_handled() {
    let s = Server::start(&[], &[]);
    let mut c = crate::support::HttpConn::connect(s.addr());
    let mut bytes = format!(
        "GET /app/app-key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        crate::support::WS_KEY
    )
    .into_bytes();
    bytes.extend(revurb::websocket::client::text(
        r#"{"event":"pusher:subscribe","data":{"channel":"test-channel"}}"#,
    ));
    c.send_raw(&bytes);
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 101);
    let mut ws = crate::support::Ws { conn: c, head };
    ws.established();
    assert_eq!(ws.recv_text(), subscription_succeeded("test-channel"));
}

#[test]
fn websocket_is_not_closed_by_the_http_request_timeout() {
    let s = Server::start(&[("REVERB_REQUEST_TIMEOUT", "1")], &[]);
    let (mut ws, _) = s.pusher();
    // proving an absence: nothing (no 408, no close) within 1.5 s
    ws.expect_silence(Duration::from_millis(1500));
    ws.sync();
}

#[test]
fn client_close_without_code_or_with_reserved_code() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Control(Control::Close), true, b"");
    assert_eq!(ws.recv_close().0, 1000);
    ws.expect_eof(Duration::from_secs(3));

    // 1005 must never be sent on the wire: protocol error
    let (mut ws, _) = s.pusher();
    ws.send_close(1005, "");
    assert_eq!(ws.recv_close().0, 1002);
    ws.expect_eof(Duration::from_secs(3));
}

#[test]
fn broken_control_frames_close_1002() {
    let s = Server::start(&[], &[]);
    // a PING longer than 125 bytes
    let (mut ws, _) = s.pusher();
    ws.send_ping(&[b'p'; 126]);
    assert_eq!(ws.recv_close().0, 1002);
    // a fragmented PING
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Control(Control::Ping), false, b"p");
    assert_eq!(ws.recv_close().0, 1002);
    // a continuation with no message started
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Data(Data::Continue), true, b"x");
    assert_eq!(ws.recv_close().0, 1002);
    // a new text frame while a fragmented one is open
    let (mut ws, _) = s.pusher();
    ws.send_frame(OpCode::Data(Data::Text), false, b"{");
    ws.send_frame(OpCode::Data(Data::Text), true, b"}");
    assert_eq!(ws.recv_close().0, 1002);
}

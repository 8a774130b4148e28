//! The write-queue limit (issue 11): it cuts off readers that fall behind,
//! and lets through a single message larger than itself to a reader that
//! drains it.

use std::time::Duration;

use serde_json::json;

use crate::support::{Msg, Server, Ws, channel_auth, pusher_error};

/// `GET /apps/app-id/channels` answering more than the limit (1 KiB here)
/// used to close the API connection with 0 bytes.
#[test]
fn an_api_answer_larger_than_the_write_queue_limit_is_delivered() {
    let s = Server::start(&[("REVERB_WRITE_QUEUE_LIMIT", "1024")], &[]);
    let (mut ws, _) = s.pusher();
    let long = "c".repeat(150);
    for i in 0..20 {
        ws.subscribe(&format!("{long}{i}"));
    }
    let r = s.signed_get("/apps/app-id/channels", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.len() > 3000, "{} bytes", r.body.len());
    let channels = r.json()["channels"].as_object().map(|o| o.len());
    assert_eq!(channels, Some(20));
}

fn join_presence(ws: &mut Ws, socket_id: &str, user: usize, info: &str) -> serde_json::Value {
    let channel = "presence-room";
    let data = json!({ "user_id": format!("u{user}"), "user_info": { "bio": info } }).to_string();
    let auth = channel_auth(socket_id, channel, Some(&data));
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth, "channel_data": data },
    }));
    ws.recv_json()
}

/// A presence subscription reply listing members worth more than the
/// limit used to kick the joiner with 4100.
#[test]
fn a_presence_reply_larger_than_the_write_queue_limit_is_delivered() {
    let s = Server::start(&[("REVERB_WRITE_QUEUE_LIMIT", "1024")], &[]);
    let info = "b".repeat(300);
    let mut members = Vec::new();
    for user in 0..5 {
        let (mut ws, socket_id) = s.pusher();
        let v = join_presence(&mut ws, &socket_id, user, &info);
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
        members.push(ws);
    }
    let (mut joiner, socket_id) = s.pusher();
    let v = join_presence(&mut joiner, &socket_id, 5, &info);
    assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
    let data: serde_json::Value =
        serde_json::from_str(v["data"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(data["presence"]["count"], 6, "{v}");
    joiner.sync();
}

const BIG: usize = 600 * 1024;

fn big_event_server() -> Server {
    // the default write_queue_limit (512 KiB), requests up to 1 MB
    Server::start(&[("REVERB_MAX_REQUEST_SIZE", "1000000")], &[])
}

/// A 600 KiB API event used to kick every subscriber with 4100.
#[test]
fn an_event_larger_than_the_write_queue_limit_reaches_a_reading_subscriber() {
    let s = big_event_server();
    let (mut ws, _) = s.pusher();
    ws.subscribe("big");
    let data = "d".repeat(BIG);
    for i in 0..3 {
        s.trigger("big", &format!("e{i}"), &data);
        let v = ws.recv_json();
        assert_eq!(
            (v["event"].as_str(), v["data"].as_str().map(str::len)),
            (Some(format!("e{i}").as_str()), Some(BIG))
        );
    }
    ws.sync();
}

/// A subscriber that does not read is still cut off: large events pile up
/// behind the one being written until they pass the limit.
#[test]
fn a_subscriber_that_does_not_read_large_events_is_still_cut_off() {
    let s = big_event_server();
    let (mut mute, _) = s.pusher();
    mute.subscribe("big");
    let data = "d".repeat(BIG);
    let mut sent = 0;
    // the kernel buffers hold a few MB before the queue grows at all
    while s.connections() == 1 {
        assert!(sent < 100, "not cut off after {sent} events of {BIG} bytes");
        s.trigger("big", &format!("e{sent}"), &data);
        sent += 1;
    }
    let mut got = 0;
    loop {
        match mute.next(Duration::from_secs(10)) {
            Ok(Msg::Text(t)) if t.starts_with(r#"{"event":"e"#) => got += 1,
            Ok(Msg::Text(t)) => {
                assert_eq!(t, pusher_error(4100, "Over capacity"));
                break;
            }
            other => panic!("after {got} of {sent} events: {other:?}"),
        }
    }
    assert!(got < sent, "all {sent} events delivered");
    assert_eq!(mute.recv_close().0, 4100);
}

/// Issue 11: a slow consumer cut off at its limit saw the stream end
/// without the reason, because the 4100 error and close frame waited
/// behind megabytes in the kernel's buffers and the 2 s close deadline
/// passed before the reader got to them. This one reads, slowly (about
/// 2 MB/s), and must get both.
#[test]
fn a_slow_reader_cut_off_gets_the_4100_error_and_close_frame() {
    let s = Server::start(
        &[
            ("REVERB_WRITE_QUEUE_LIMIT", "65536"),
            ("REVERB_MAX_REQUEST_SIZE", "1000000"),
        ],
        &[],
    );
    let (mut slow, _) = s.pusher();
    slow.subscribe("flood");
    let reader = std::thread::spawn(move || {
        let mut events = 0usize;
        loop {
            match slow.next(Duration::from_secs(10)) {
                Ok(Msg::Text(t)) if t.starts_with(r#"{"event":"e"#) => {
                    events += 1;
                    // the pace of a slow consumer, not a wait for a condition
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(Msg::Text(t)) => return Ok((events, t, slow.next(Duration::from_secs(10)))),
                other => return Err(format!("after {events} events: {other:?}")),
            }
        }
    });
    let data = "d".repeat(10_000);
    let mut api = s.http();
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not cut off after {sent} events"
        );
        let batch: Vec<serde_json::Value> = (sent..sent + 10)
            .map(|i| json!({ "name": format!("e{i}"), "channel": "flood", "data": data }))
            .collect();
        let r = api.signed_post(
            "/apps/app-id/batch_events",
            &json!({ "batch": batch }).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        sent += 10;
        let r = api.signed_get("/apps/app-id/connections", &[]);
        if r.json()["connections"] == 0 {
            break;
        }
    }
    let (events, error, close) = match reader.join() {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => panic!("slow reader: {e} ({sent} sent)"),
        Err(_) => panic!("slow reader panicked"),
    };
    eprintln!("slow reader: {events} of {sent} events, then the reason");
    assert_eq!(error, pusher_error(4100, "Over capacity"));
    assert!(
        matches!(close, Ok(Msg::Close(4100, _))),
        "after the error: {close:?}"
    );
    assert!(events < sent);
}

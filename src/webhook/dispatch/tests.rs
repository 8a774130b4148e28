//! The dispatcher on a simulated clock: batching, retries, order, bounds,
//! isolation, reload and shutdown.

use super::*;
use crate::webhook::{Filter, Kind, Kinds};
use serde_json::Value;

const UNIX0: u64 = 1_700_000_000_000;

fn hook(url: &str, batching: bool) -> Webhook {
    Webhook {
        url: Url::parse(url).unwrap(),
        event_types: Kind::ALL.into_iter().collect(),
        filter: Filter::default(),
        headers: Vec::new(),
        batching,
    }
}

fn app(id: &str, hooks: Vec<Webhook>) -> App {
    let mut a = App::new(id, &format!("key-{id}"), &format!("secret-{id}"));
    a.webhooks = hooks;
    a
}

fn ev(channel: &str) -> Event {
    Event::new(Kind::ChannelOccupied, channel.into())
}

/// A request as the receiver sees it.
#[derive(Debug)]
struct Req {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn parse(bytes: &[u8]) -> Req {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&bytes[..split]).unwrap();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap();
        let path = start
            .strip_prefix("POST ")
            .and_then(|r| r.strip_suffix(" HTTP/1.1"))
            .unwrap()
            .to_string();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        Req {
            path,
            headers,
            body: bytes[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The channels of the events, in order.
    fn channels(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["channel"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Every request due at `now`.
fn take(d: &mut Dispatcher, now: u64) -> Vec<(u64, Url, Req)> {
    std::iter::from_fn(|| d.poll_request(now))
        .map(|(id, url, bytes)| (id, url, Req::parse(&bytes)))
        .collect()
}

fn ok() -> Outcome {
    Outcome::Status(200)
}

fn refused() -> Outcome {
    Outcome::Failed {
        reason: "refused",
        detail: "connection refused".into(),
    }
}

#[test]
fn a_request_carries_the_body_the_signature_and_the_headers() {
    let mut w = hook("http://127.0.0.1:9000/hooks?t=1", false);
    w.headers = vec![("Authorization".into(), "Bearer x".into())];
    let a = app("1", vec![w]);
    let mut d = Dispatcher::new(UNIX0);
    let mut e = Event::new(Kind::MemberAdded, "presence-a".into());
    e.user_id = Some("7".into());
    d.push(5, &a, e);
    let reqs = take(&mut d, 5);
    assert_eq!(reqs.len(), 1);
    let (_, url, r) = &reqs[0];
    assert_eq!(url.to_string(), "http://127.0.0.1:9000/hooks?t=1");
    assert_eq!(r.path, "/hooks?t=1");
    assert_eq!(r.header("x-pusher-key"), Some("key-1"));
    assert_eq!(r.header("authorization"), Some("Bearer x"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sig = crate::auth::hmac_sha256_hex(b"secret-1", &r.body);
    assert_eq!(r.header("x-pusher-signature"), Some(sig.as_str()));
    assert_eq!(
        r.json(),
        serde_json::json!({"time_ms": UNIX0 + 5, "events": [
            {"name": "member_added", "channel": "presence-a", "user_id": "7"}]})
    );
    assert_eq!((d.queued(), d.in_flight()), (1, 1));
    d.done(9, reqs[0].0, ok());
    assert_eq!((d.queued(), d.in_flight()), (0, 0));
    assert_eq!((d.stats().requests_sent, d.stats().events_sent), (1, 1));
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn batching_twenty_events_make_one_request() {
    let a = app("1", vec![hook("http://h/", true)]);
    let mut d = Dispatcher::new(UNIX0);
    for i in 0..25 {
        d.push(100, &a, ev(&format!("c{i}")));
    }
    let reqs = take(&mut d, 100);
    assert_eq!(reqs.len(), 1, "one request at a time");
    let first = reqs[0].2.channels();
    assert_eq!(first.len(), BATCH_MAX_EVENTS);
    assert_eq!(first[0], "c0");
    assert_eq!(first[19], "c19");
    d.done(120, reqs[0].0, ok());
    // the five left were queued at 100: their window closes at 350
    assert!(take(&mut d, 120).is_empty());
    assert_eq!(d.poll_timeout(), Some(100 + BATCH_WINDOW_MS));
    let reqs = take(&mut d, 350);
    assert_eq!(reqs[0].2.channels(), ["c20", "c21", "c22", "c23", "c24"]);
    d.done(360, reqs[0].0, ok());
    assert_eq!((d.stats().requests_sent, d.stats().events_sent), (2, 25));
}

#[test]
fn batching_waits_250_ms_after_the_first_event() {
    let a = app("1", vec![hook("http://h/", true)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(1000, &a, ev("a"));
    assert!(take(&mut d, 1000).is_empty());
    assert_eq!(d.poll_timeout(), Some(1250));
    d.push(1100, &a, ev("b"));
    d.push(1249, &a, ev("c"));
    assert!(take(&mut d, 1249).is_empty());
    assert_eq!(
        d.poll_timeout(),
        Some(1250),
        "the window is the first event's"
    );
    let reqs = take(&mut d, 1250);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].2.channels(), ["a", "b", "c"]);
    assert_eq!(reqs[0].2.json()["time_ms"], UNIX0 + 1250);
}

#[test]
fn without_batching_each_event_goes_alone_at_once() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    for c in ["a", "b", "c"] {
        d.push(0, &a, ev(c));
    }
    let mut seen = Vec::new();
    for t in 0..3 {
        let reqs = take(&mut d, t);
        assert_eq!(reqs.len(), 1, "one in flight at a time");
        seen.extend(reqs[0].2.channels());
        d.done(t, reqs[0].0, Outcome::Status(204));
    }
    assert_eq!(seen, ["a", "b", "c"]);
    assert_eq!((d.stats().requests_sent, d.stats().events_sent), (3, 3));
}

#[test]
fn retries_back_off_and_give_up_after_five_minutes() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("a"));
    let mut tries = Vec::new();
    let mut bytes = Vec::new();
    let mut now = 0;
    loop {
        let Some((id, _, req)) = d.poll_request(now) else {
            match d.poll_timeout() {
                Some(t) => {
                    assert!(t > now);
                    now = t;
                    continue;
                }
                None => break,
            }
        };
        tries.push(now);
        bytes.push(req);
        let outcome = if tries.len() % 2 == 0 {
            Outcome::Status(503)
        } else {
            refused()
        };
        d.done(now, id, outcome);
    }
    assert_eq!(
        tries,
        [
            0, 1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 123_000, 183_000, 243_000
        ]
    );
    assert!(
        bytes.iter().all(|b| *b == bytes[0]),
        "a retry sends the same request"
    );
    let s = d.stats();
    assert_eq!(s.retries, 9);
    assert_eq!(s.dropped_gave_up, 1);
    assert_eq!(s.failures.get("refused"), Some(&5));
    assert_eq!(s.failures.get("http_5xx"), Some(&5));
    assert_eq!((s.requests_sent, d.queued(), d.in_flight()), (0, 0, 0));
}

#[test]
fn the_back_off_doubles_from_one_second_to_a_minute() {
    let waits: Vec<u64> = (1..=9).map(backoff).collect();
    assert_eq!(
        waits,
        [
            1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
        ]
    );
    assert_eq!(backoff(u32::MAX), RETRY_MAX_WAIT_MS);
}

#[test]
fn slow_tries_count_against_the_five_minutes() {
    // each try takes 10 s to time out
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("a"));
    let mut now = 0;
    let mut tries = 0;
    while let Some((id, _, _)) = d.poll_request(now) {
        tries += 1;
        now += 10_000;
        d.done(
            now,
            id,
            Outcome::Failed {
                reason: "timeout",
                detail: "response timeout".into(),
            },
        );
        match d.poll_timeout() {
            Some(t) => now = t,
            None => break,
        }
    }
    assert!(now <= GIVE_UP_AFTER_MS + 10_000, "{now}");
    assert_eq!(d.stats().dropped_gave_up, 1);
    assert!(tries < 10, "{tries}");
}

#[test]
fn order_is_kept_through_retries() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("a"));
    d.push(0, &a, ev("b"));
    let (id, _, r) = take(&mut d, 0).pop().unwrap();
    assert_eq!(r.channels(), ["a"]);
    d.done(10, id, Outcome::Status(500));
    d.push(20, &a, ev("c"));
    assert!(take(&mut d, 20).is_empty(), "b and c wait behind a's retry");
    assert_eq!(d.poll_timeout(), Some(1010));
    let (id, _, r) = take(&mut d, 1010).pop().unwrap();
    assert_eq!(r.channels(), ["a"]);
    d.done(1020, id, Outcome::Status(502));
    let (id, _, r) = take(&mut d, 3020).pop().unwrap();
    assert_eq!(r.channels(), ["a"]);
    d.done(3030, id, ok());
    let mut seen = Vec::new();
    while let Some((id, _, r)) = d.poll_request(3030) {
        seen.extend(Req::parse(&r).channels());
        d.done(3030, id, ok());
    }
    assert_eq!(seen, ["b", "c"]);
    assert_eq!(d.stats().events_sent, 3);
}

#[test]
fn order_is_kept_through_retries_with_batching() {
    let a = app("1", vec![hook("http://h/", true)]);
    let mut d = Dispatcher::new(UNIX0);
    for i in 0..30 {
        d.push(0, &a, ev(&format!("{i:02}")));
    }
    let mut seen = Vec::new();
    let mut now = 0;
    let mut fail = true;
    while seen.len() < 30 {
        match d.poll_request(now) {
            Some((id, _, r)) => {
                let r = Req::parse(&r);
                if fail {
                    d.done(now, id, Outcome::Status(500));
                } else {
                    seen.extend(r.channels());
                    d.done(now, id, ok());
                }
                fail = !fail;
            }
            None => now = d.poll_timeout().unwrap(),
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(d.stats().requests_sent, 2);
}

#[test]
fn a_full_queue_drops_new_events_and_counts_them() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("first"));
    let (_id, _, _) = take(&mut d, 0).pop().unwrap(); // never answered
    for i in 0..QUEUE_MAX_EVENTS + 5 {
        d.push(1, &a, ev(&format!("{i}")));
    }
    assert_eq!(d.stats().dropped_queue_full, 5);
    assert_eq!(d.queued(), 1 + QUEUE_MAX_EVENTS);
    // the summary of the drops after the first line is due in 10 s
    assert_eq!(d.poll_timeout(), Some(1 + LOG_EVERY_MS));
    d.handle_timeout(1 + LOG_EVERY_MS);
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    let big: Rc<str> = "x".repeat(1024 * 1024).into();
    d.push(0, &a, ev("first"));
    let _ = take(&mut d, 0);
    for _ in 0..5 {
        let mut e = Event::new(Kind::ClientEvent, "private-c".into());
        e.data = Some(big.clone());
        d.push(1, &a, e);
    }
    assert_eq!(d.stats().dropped_queue_full, 2);
    assert_eq!(d.queued(), 4);
}

#[test]
fn a_dead_url_does_not_delay_another() {
    let dead = app("1", vec![hook("http://dead/", false)]);
    let live = app(
        "2",
        vec![hook("http://live/a", false), hook("http://dead/b", false)],
    );
    let mut d = Dispatcher::new(UNIX0);
    let mut delivered = 0;
    for t in 0..50 {
        d.push(t, &dead, ev("x"));
        d.push(t, &live, ev("y"));
        for (id, url, _) in take(&mut d, t) {
            if url.host == "live" {
                delivered += 1;
                d.done(t, id, ok());
            }
            // the two hooks on "dead" are never answered
        }
    }
    assert_eq!(delivered, 50);
    assert_eq!(d.in_flight(), 2);
    assert_eq!(d.queued(), 2 * 50);
}

#[test]
fn only_wanted_events_are_queued() {
    let mut w = hook("http://h/", false);
    w.event_types = [Kind::MemberAdded].into_iter().collect::<Kinds>();
    w.filter.starts_with = Some("presence-".into());
    let a = app("1", vec![w]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("presence-x")); // occupied: not wanted
    d.push(0, &a, Event::new(Kind::MemberAdded, "private-x".into()));
    assert_eq!(d.queued(), 0);
    d.push(0, &a, Event::new(Kind::MemberAdded, "presence-x".into()));
    assert_eq!(d.queued(), 1);
    // an app without webhooks costs nothing
    d.push(0, &app("2", vec![]), ev("c"));
    assert_eq!(d.webhooks(), 1);
}

#[test]
fn reconfigure_keeps_kept_webhooks_and_drops_the_others() {
    let a = app(
        "1",
        vec![
            hook("http://keep/", false),
            hook("http://moved/", false),
            hook("http://busy/", false),
        ],
    );
    let gone = app("2", vec![hook("http://gone/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.reconfigure(&[a.clone(), gone.clone()]);
    assert_eq!(d.webhooks(), 4);
    for t in 0..3 {
        d.push(t, &a, ev(&format!("{t}")));
        d.push(t, &gone, ev("g"));
    }
    // one request in flight on each of the four
    let flights = take(&mut d, 3);
    assert_eq!(flights.len(), 4);
    let busy = flights.iter().find(|f| f.1.host == "busy").unwrap().0;
    let keep = flights.iter().find(|f| f.1.host == "keep").unwrap().0;
    assert_eq!(d.queued(), 12);

    let mut a2 = a.clone();
    a2.secret = "new-secret".into();
    a2.webhooks[1] = hook("http://elsewhere/", false);
    a2.webhooks[2].headers = vec![("X-New".into(), "1".into())];
    d.reconfigure(&[a2.clone()]);
    assert_eq!(d.webhooks(), 3);
    // moved: 2 queued dropped (its flight is still out); gone: 2 queued
    assert_eq!(d.stats().dropped_removed, 4);
    assert_eq!(d.queued(), 8);
    // the orphaned flights end: one delivered, one failed (not retried)
    let orphans: Vec<u64> = flights
        .iter()
        .filter(|f| f.1.host == "moved" || f.1.host == "gone")
        .map(|f| f.0)
        .collect();
    d.done(4, orphans[0], ok());
    d.done(4, orphans[1], Outcome::Status(500));
    assert_eq!(d.stats().dropped_removed, 5);
    assert_eq!(d.stats().events_sent, 1);
    assert_eq!(d.queued(), 6);
    // kept webhooks go on with their queues and the new settings
    d.done(5, keep, ok());
    d.done(5, busy, ok());
    let reqs = take(&mut d, 5);
    assert_eq!(reqs.len(), 2);
    for (_, url, r) in &reqs {
        assert_eq!(r.channels(), ["1"], "{url}");
        let sig = crate::auth::hmac_sha256_hex(b"new-secret", &r.body);
        assert_eq!(r.header("x-pusher-signature"), Some(sig.as_str()));
        assert_eq!(r.header("x-new").is_some(), url.host == "busy");
    }
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn an_app_changed_without_reconfigure_is_taken_as_it_is() {
    let a = app("1", vec![hook("http://one/", false)]);
    let b = app("2", vec![hook("http://two/", true)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("a"));
    d.push(0, &b, ev("b"));
    assert_eq!(d.webhooks(), 2);
    let mut a2 = a.clone();
    a2.webhooks.push(hook("http://three/", false));
    d.push(1, &a2, ev("c"));
    assert_eq!(d.webhooks(), 3);
    assert_eq!(d.queued(), 4, "b's queue kept; a's first webhook kept");
}

#[test]
fn shutdown_closes_batch_windows_then_abandons_the_rest() {
    let a = app("1", vec![hook("http://b/", true), hook("http://r/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("x"));
    let (id, url, _) = take(&mut d, 0).pop().unwrap();
    assert_eq!(url.host, "r");
    d.done(1, id, Outcome::Status(500)); // r waits for its retry
    assert!(!d.settled(), "x waits in b's batch window");
    d.push(2, &a, ev("y"));
    d.shutdown();
    assert!(!d.settled());
    let reqs = take(&mut d, 2);
    assert_eq!(reqs.len(), 1, "the batch leaves at once");
    assert!(!d.settled());
    d.done(3, reqs[0].0, ok());
    assert!(d.settled(), "only r's retry is left");
    assert_eq!(d.abandon(), 2);
    assert_eq!(d.stats().dropped_shutdown, 2);
    assert_eq!((d.queued(), d.in_flight()), (0, 0));
}

#[test]
fn late_and_unknown_outcomes_are_ignored() {
    let a = app("1", vec![hook("http://h/", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.push(0, &a, ev("a"));
    let (id, _, _) = take(&mut d, 0).pop().unwrap();
    d.done(1, 999, ok());
    assert_eq!(d.in_flight(), 1);
    d.done(1, id, ok());
    d.done(1, id, Outcome::Status(500));
    assert_eq!(d.stats().requests_sent, 1);
    assert!(d.stats().failures.is_empty());
}

// ---- hand-over (revurb upgrade) ---------------------------------------------------

/// A new image's dispatcher for `apps`, with `hooks` taken over at `now`.
fn taken_over(apps: &[App], now: u64, hooks: Vec<HookExport>) -> (Dispatcher, u64) {
    let mut d = Dispatcher::new(UNIX0);
    d.reconfigure(apps);
    let n = d.import(now, hooks);
    (d, n)
}

#[test]
fn a_retry_and_the_events_behind_it_survive_the_hand_over_in_order() {
    let a = app("1", vec![hook("http://h/hook?token=s3cret", false)]);
    let mut d = Dispatcher::new(UNIX0);
    d.reconfigure(std::slice::from_ref(&a));
    d.push(0, &a, ev("a"));
    let (id, _, first) = take(&mut d, 0).pop().unwrap();
    d.done(10, id, Outcome::Status(503));
    let mut presence = Event::new(Kind::MemberAdded, "presence-room".into());
    presence.user_id = Some("7".into());
    d.push(20, &a, presence);
    d.push(30, &a, ev("c"));
    assert_eq!(d.queued(), 3, "the retry's event and two behind it");

    let hooks = d.export(40);
    assert_eq!(hooks.len(), 1);
    // through the file format
    let json = serde_json::to_string(&hooks).unwrap();
    let hooks: Vec<HookExport> = serde_json::from_str(&json).unwrap();
    let (mut d, n) = taken_over(&[a], 40, hooks);
    assert_eq!(n, 3);
    assert_eq!(d.queued(), 3);
    // the retry keeps its schedule and its bytes: the same request again
    assert_eq!(d.poll_timeout(), Some(1010));
    assert!(take(&mut d, 1009).is_empty());
    let (id, url, again) = take(&mut d, 1010).pop().unwrap();
    assert_eq!(url.to_string(), "http://h/hook?token=s3cret");
    assert_eq!(again.body, first.body);
    assert_eq!(
        again.header("x-pusher-signature"),
        first.header("x-pusher-signature")
    );
    d.done(1020, id, ok());
    let mut seen = Vec::new();
    while let Some((id, _, r)) = d.poll_request(1020) {
        let r = Req::parse(&r);
        seen.push(r.json()["events"][0].clone());
        d.done(1020, id, ok());
    }
    assert_eq!(seen[0]["name"], "member_added");
    assert_eq!(seen[0]["user_id"], "7");
    assert_eq!(seen[1]["channel"], "c");
    assert_eq!(d.stats().events_sent, 3);
    assert!(d.settled());
}

#[test]
fn a_request_in_flight_at_the_switch_is_sent_again_at_once() {
    let a = app("1", vec![hook("http://h/", true)]);
    let mut d = Dispatcher::new(UNIX0);
    d.reconfigure(std::slice::from_ref(&a));
    for ch in ["a", "b"] {
        d.push(0, &a, ev(ch));
    }
    let (_, _, sent) = take(&mut d, 250).pop().unwrap();
    assert_eq!(sent.channels(), ["a", "b"]);
    let (mut d, n) = taken_over(&[a], 300, d.export(300));
    assert_eq!(n, 2);
    let (id, _, again) = take(&mut d, 300).pop().unwrap();
    assert_eq!(again.body, sent.body);
    d.done(310, id, ok());
    assert_eq!(d.stats().events_sent, 2);
    assert_eq!(
        d.stats().retries,
        1,
        "a second try: the first was the old image's"
    );
}

#[test]
fn what_the_new_configuration_lacks_or_cannot_read_is_dropped_and_counted() {
    let old = app(
        "1",
        vec![hook("http://h/a", false), hook("http://h/b", false)],
    );
    let mut d = Dispatcher::new(UNIX0);
    d.reconfigure(std::slice::from_ref(&old));
    d.push(0, &old, ev("x"));
    d.push(0, &old, ev("y"));
    let mut hooks = d.export(0);
    assert_eq!(hooks.len(), 2);
    // a corrupt file: an unknown kind and a request that is not hex
    hooks[0].queue[0].1.kind = "nonsense".into();
    if let Some(a) = hooks[1].current.as_mut() {
        a.request = "zz".into();
    }
    // the new configuration dropped webhook b
    let new = app("1", vec![hook("http://h/a", false)]);
    let (mut d, n) = taken_over(&[new], 0, hooks);
    assert_eq!(n, 1, "only y reaches webhook a");
    assert_eq!(
        d.stats().dropped_removed,
        3,
        "x (unreadable), and b's two events"
    );
    let (_, url, r) = take(&mut d, 0).pop().unwrap();
    assert_eq!(url.to_string(), "http://h/a");
    assert_eq!(r.channels(), ["y"]);
}

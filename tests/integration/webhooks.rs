//! Webhooks end to end (issue 12): the real binary configured through a JSON
//! config file, and a real HTTP receiver in the test (a thread per
//! connection, plain or TLS with a private CA) that checks each request's
//! key and signature and answers as the test scripts it: every event type
//! with its fields, filters, extra headers, batching, a 500 then a 200, a
//! receiver that never answers beside one that does, and a three-node
//! cluster on `redis-server` that sends each webhook once.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use revurb::auth::hmac_sha256_hex;
use serde_json::{Value, json};

use crate::cluster_support::{join_presence, start_node, subscribe_private};
use crate::support::*;

/// How long a webhook may take to arrive (the delay of vacate and remove is
/// 1 s in these tests).
const ARRIVAL: Duration = Duration::from_secs(10);

const B_ID: &str = "app-b";
const B_KEY: &str = "key-b";
const B_SECRET: &str = "secret-b";

const ALL_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

// ---- the receiver --------------------------------------------------------------

/// What the receiver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Status(u16),
    /// Read it and never answer (the connection stays open).
    Never,
}

/// One request as received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
    answer: Answer,
}

impl Hit {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events: {}", self.json()))
            .clone()
    }

    fn delivered(&self) -> bool {
        matches!(self.answer, Answer::Status(s) if (200..300).contains(&s))
    }

    /// Pusher's check: the key, and the HMAC-SHA256 of the raw body with
    /// the secret.
    fn verify(&self, key: &str, secret: &str) {
        assert_eq!(self.header("X-Pusher-Key"), Some(key), "{self:?}");
        let expected = hmac_sha256_hex(secret.as_bytes(), &self.body);
        assert_eq!(
            self.header("X-Pusher-Signature"),
            Some(expected.as_str()),
            "{self:?}"
        );
        assert_eq!(self.header("Content-Type"), Some("application/json"));
        let time_ms = self.json()["time_ms"].as_u64().expect("time_ms");
        let now = unix_now() as u64 * 1000;
        assert!(
            time_ms.abs_diff(now) < 60_000,
            "time_ms {time_ms}, now {now}"
        );
    }
}

#[derive(Default)]
struct Shared {
    hits: Vec<Hit>,
    script: VecDeque<Answer>,
}

struct Receiver {
    port: u16,
    tls: bool,
    shared: Arc<Mutex<Shared>>,
}

impl Receiver {
    /// A plain HTTP receiver answering `default` unless scripted.
    fn start(default: Answer) -> Receiver {
        Self::start_with(default, None)
    }

    /// An HTTPS receiver with this server configuration.
    fn start_tls(default: Answer, tls: Arc<rustls::ServerConfig>) -> Receiver {
        Self::start_with(default, Some(tls))
    }

    fn start_with(default: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let r = Receiver {
            port,
            tls: tls.is_some(),
            shared: shared.clone(),
        };
        // the threads end with the test process; each connection has its own
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = match tls {
                        None => serve(stream, &shared, default),
                        Some(cfg) => match rustls::ServerConnection::new(cfg) {
                            Ok(conn) => {
                                serve(rustls::StreamOwned::new(conn, stream), &shared, default)
                            }
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        r
    }

    /// Answer the next requests with these, then `default` again.
    fn script(&self, answers: &[Answer]) {
        self.shared.lock().unwrap().script.extend(answers);
    }

    fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.shared.lock().unwrap().hits.clone()
    }

    /// The events of every delivered request, in the order they came.
    fn events(&self) -> Vec<Value> {
        self.hits()
            .iter()
            .filter(|h| h.delivered())
            .flat_map(Hit::events)
            .collect()
    }

    /// Wait until `done(events)` holds; returns the events.
    fn wait(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_until(
            ARRIVAL,
            || format!("{what}; received: {:?}", self.events()),
            || {
                let ev = self.events();
                done(&ev).then_some(ev)
            },
        )
    }

    /// Wait for `n` delivered events.
    fn wait_events(&self, n: usize) -> Vec<Value> {
        self.wait(&format!("{n} events"), |ev| ev.len() >= n)
    }
}

/// Read requests from one connection and answer them, until EOF.
fn serve<S: Read + Write>(mut s: S, shared: &Mutex<Shared>, default: Answer) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !fill(&mut s, &mut buf)? {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("");
        let path = start.split(' ').nth(1).unwrap_or("").to_string();
        assert!(start.starts_with("POST "), "not a POST: {start}");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .expect("Content-Length");
        while buf.len() < head_end + 4 + len {
            if !fill(&mut s, &mut buf)? {
                return Ok(());
            }
        }
        let body = buf[head_end + 4..head_end + 4 + len].to_vec();
        buf.drain(..head_end + 4 + len);
        let answer = {
            let mut sh = shared.lock().unwrap();
            let answer = sh.script.pop_front().unwrap_or(default);
            sh.hits.push(Hit {
                path,
                headers,
                body,
                at: Instant::now(),
                answer,
            });
            answer
        };
        match answer {
            Answer::Status(code) => {
                let text = format!("HTTP/1.1 {code} X\r\nContent-Length: 2\r\n\r\nok");
                s.write_all(text.as_bytes())?;
                s.flush()?;
            }
            Answer::Never => {
                // hold the connection: read until the client gives up
                let mut sink = [0u8; 4096];
                while s.read(&mut sink)? > 0 {}
                return Ok(());
            }
        }
    }
}

/// Read more into `buf`; false at EOF.
fn fill<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

// ---- the server ----------------------------------------------------------------

/// An app of the config file.
fn app(id: &str, key: &str, secret: &str, webhooks: Value) -> Value {
    json!({ "app_id": id, "key": key, "secret": secret,
            "webhook_delay": 1, "webhooks": webhooks })
}

/// The default app (the helpers' credentials) with these webhooks.
fn main_app(webhooks: Value) -> Value {
    app(APP_ID, APP_KEY, APP_SECRET, webhooks)
}

/// A server whose apps come from a JSON config file, with metrics on.
struct Hooked {
    server: Server,
    metrics: SocketAddr,
    /// The config file, to rewrite before a SIGHUP.
    cfg: String,
    _dir: TempDir,
}

impl Hooked {
    fn start(apps: Value, env: &[(&str, &str)]) -> Hooked {
        let dir = TempDir::new("webhooks");
        let cfg = dir.write(
            "revurb.json",
            &json!({ "apps": { "apps": apps } }).to_string(),
        );
        let port = free_port();
        let server = Server::start_with(
            &[],
            env,
            &["--config", &cfg, "--metrics-port", &port.to_string()],
        );
        Hooked {
            server,
            metrics: SocketAddr::from(([127, 0, 0, 1], port)),
            cfg,
            _dir: dir,
        }
    }

    /// Rewrite the config file with these apps and send SIGHUP; returns
    /// once the server says it reloaded.
    fn reload(&self, apps: Value) {
        let before = self.server.stderr_text().len();
        std::fs::write(&self.cfg, json!({ "apps": { "apps": apps } }).to_string())
            .expect("rewrite the config");
        self.server.signal(libc::SIGHUP);
        wait_until(
            ARRIVAL,
            || format!("a reload; stderr:\n{}", self.server.stderr_text()),
            || {
                self.server.stderr_text()[before..]
                    .contains("configuration reloaded")
                    .then_some(())
            },
        );
    }

    /// One sample of /metrics (0 when absent).
    fn metric(&self, sample: &str) -> u64 {
        let text = HttpConn::connect(self.metrics)
            .request("GET", "/metrics", &[], b"")
            .text();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }
}

fn subscribe_raw(ws: &mut Ws, channel: &str) {
    ws.send_json(&json!({ "event": "pusher:subscribe", "data": { "channel": channel } }));
}

fn client_event(ws: &mut Ws, channel: &str, event: &str, data: Value) {
    ws.send_json(&json!({ "event": event, "channel": channel, "data": data }));
}

/// The events named `name` on `channel`.
fn named<'a>(events: &'a [Value], name: &str, channel: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["name"] == name && e["channel"] == channel)
        .collect()
}

fn has(events: &[Value], name: &str, channel: &str) -> bool {
    !named(events, name, channel).is_empty()
}

/// The channels of `name` events, in order.
fn channels_of(events: &[Value], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| e["channel"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ---- tests ---------------------------------------------------------------------

#[test]
fn every_event_type_arrives_signed_with_its_fields() {
    let rx = Receiver::start(Answer::Status(200));
    let hooks = json!([{ "url": rx.url("/pusher/webhooks"), "event_types": ALL_TYPES }]);
    let s = Hooked::start(json!([main_app(hooks)]), &[]);

    let (mut a, sid) = s.server.pusher();
    join_presence(&mut a, &sid, "presence-room", 7, "seven");
    client_event(&mut a, "presence-room", "client-typing", json!({ "x": 1 }));
    subscribe_raw(&mut a, "cache-news");
    assert_eq!(a.recv_text(), subscription_succeeded("cache-news"));
    let miss = a.recv_json();
    assert_eq!(miss["event"], "pusher:cache_miss", "{miss}");
    a.subscribe("news");
    let events = rx.wait("occupied, added, client event, miss, count", |ev| {
        has(ev, "channel_occupied", "presence-room")
            && has(ev, "member_added", "presence-room")
            && has(ev, "client_event", "presence-room")
            && has(ev, "cache_miss", "cache-news")
            && has(ev, "subscription_count", "news")
    });
    assert_eq!(
        named(&events, "member_added", "presence-room")[0],
        &json!({ "name": "member_added", "channel": "presence-room", "user_id": "7" })
    );
    let ce = named(&events, "client_event", "presence-room")[0];
    assert_eq!(ce["event"], "client-typing", "{ce}");
    assert_eq!(ce["socket_id"], sid.as_str(), "{ce}");
    assert_eq!(ce["user_id"], "7", "{ce}");
    let data: Value = serde_json::from_str(ce["data"].as_str().expect("data is a string"))
        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {ce}"));
    assert_eq!(data, json!({ "x": 1 }));
    assert_eq!(
        named(&events, "cache_miss", "cache-news")[0],
        &json!({ "name": "cache_miss", "channel": "cache-news" })
    );
    let count = named(&events, "subscription_count", "news");
    assert_eq!(count.last().unwrap()["subscription_count"], 1, "{count:?}");
    assert!(
        !has(&events, "subscription_count", "presence-room"),
        "presence channels are counted with member events: {events:?}"
    );

    // leaving: removed and vacated, after the 1 s delay
    a.shutdown();
    let left = Instant::now();
    let events = rx.wait("removed and vacated", |ev| {
        has(ev, "member_removed", "presence-room")
            && has(ev, "channel_vacated", "presence-room")
            && has(ev, "channel_vacated", "news")
            && has(ev, "channel_vacated", "cache-news")
    });
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "vacated before the delay"
    );
    assert_eq!(
        named(&events, "member_removed", "presence-room")[0],
        &json!({ "name": "member_removed", "channel": "presence-room", "user_id": "7" })
    );
    for name in ["channel_occupied", "channel_vacated"] {
        assert_eq!(
            named(&events, name, "presence-room").len(),
            1,
            "{name}: {events:?}"
        );
    }
    for hit in rx.hits() {
        hit.verify(APP_KEY, APP_SECRET);
        assert_eq!(hit.path, "/pusher/webhooks");
    }
    assert_eq!(
        s.metric("revurb_webhook_events_total"),
        rx.events().len() as u64
    );
    assert_eq!(
        s.metric("revurb_webhook_requests_total"),
        rx.hits().len() as u64,
        "without batching, one request per event"
    );
    assert_eq!(rx.hits().len(), rx.events().len());
}

#[test]
fn filters_and_extra_headers() {
    let rx = Receiver::start(Answer::Status(200));
    let hooks = json!([
        { "url": rx.url("/filtered?token=t"), "event_types": ["channel_occupied"],
          "filter": { "channel_name_starts_with": "private-", "channel_name_ends_with": "-x" },
          "headers": { "Authorization": "Bearer s3cret", "X-Tenant": "acme" } },
        { "url": rx.url("/all"), "event_types": ["channel_occupied", "channel_vacated"] }
    ]);
    let s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, sid) = s.server.pusher();
    subscribe_private(&mut a, &sid, "private-a-x");
    subscribe_private(&mut a, &sid, "private-b");
    a.subscribe("public-x");
    let all_seen = || {
        rx.hits()
            .iter()
            .filter(|h| h.path == "/all")
            .flat_map(Hit::events)
            .count()
    };
    wait_until(
        ARRIVAL,
        || format!("3 occupied at /all: {:?}", rx.events()),
        || (all_seen() == 3).then_some(()),
    );
    // what /filtered would have had comes no later than /all's
    thread::sleep(Duration::from_millis(300));
    let filtered: Vec<Hit> = rx
        .hits()
        .into_iter()
        .filter(|h| h.path == "/filtered?token=t")
        .collect();
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    let hit = &filtered[0];
    hit.verify(APP_KEY, APP_SECRET);
    assert_eq!(
        hit.events(),
        [json!({ "name": "channel_occupied", "channel": "private-a-x" })]
    );
    assert_eq!(hit.header("Authorization"), Some("Bearer s3cret"));
    assert_eq!(hit.header("X-Tenant"), Some("acme"));
    let all: Vec<Hit> = rx.hits().into_iter().filter(|h| h.path == "/all").collect();
    assert!(all.iter().all(|h| h.header("Authorization").is_none()));
    let mut chans = channels_of(
        &all.iter().flat_map(Hit::events).collect::<Vec<_>>(),
        "channel_occupied",
    );
    chans.sort();
    assert_eq!(chans, ["private-a-x", "private-b", "public-x"]);
}

#[test]
fn batching_sends_up_to_twenty_events_per_request_in_order() {
    let rx = Receiver::start(Answer::Status(200));
    let hooks =
        json!([{ "url": rx.url("/batch"), "event_types": ["client_event"], "batching": true }]);
    let s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, sid) = s.server.pusher();
    subscribe_private(&mut a, &sid, "private-chat");
    for i in 0..45 {
        client_event(&mut a, "private-chat", "client-n", json!({ "i": i }));
    }
    a.sync();
    let events = rx.wait_events(45);
    let order: Vec<i64> = events
        .iter()
        .map(|e| {
            let d: Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
            d["i"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(order, (0..45).collect::<Vec<_>>());
    let hits = rx.hits();
    assert!(
        hits.iter().all(|h| h.events().len() <= 20),
        "{:?}",
        hits.iter().map(|h| h.events().len()).collect::<Vec<_>>()
    );
    assert!(hits.len() <= 6, "{} requests for 45 events", hits.len());
    assert!(hits.len() >= 3);
    for h in &hits {
        h.verify(APP_KEY, APP_SECRET);
    }
    assert_eq!(s.metric("revurb_webhook_events_total"), 45);
    assert_eq!(s.metric("revurb_webhook_requests_total"), hits.len() as u64);
}

#[test]
fn a_500_is_retried_after_a_second_and_delivered_once() {
    let rx = Receiver::start(Answer::Status(200));
    rx.script(&[Answer::Status(500)]);
    let hooks = json!([{ "url": rx.url("/flaky"), "event_types": ["channel_occupied"] }]);
    let s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, _) = s.server.pusher();
    a.subscribe("news");
    rx.wait_events(1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].answer, Answer::Status(500));
    assert_eq!(hits[1].answer, Answer::Status(200));
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(5),
        "retried after {gap:?}"
    );
    assert_eq!(hits[0].body, hits[1].body, "the retry is the same request");
    hits[1].verify(APP_KEY, APP_SECRET);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.hits().len(), 2, "delivered once");
    assert_eq!(s.metric("revurb_webhook_retries_total"), 1);
    assert_eq!(
        s.metric("revurb_webhook_failures_total{reason=\"http_5xx\"}"),
        1
    );
    assert_eq!(s.metric("revurb_webhook_events_total"), 1);
    assert_eq!(s.metric("revurb_webhook_queued"), 0);
    let log = s.server.stderr_text();
    assert!(log.contains("answered 500; retrying in 1000 ms"), "{log}");
}

#[test]
fn a_receiver_that_never_answers_holds_only_its_own_queue() {
    let dead = Receiver::start(Answer::Never);
    let live = Receiver::start(Answer::Status(200));
    let apps = json!([
        main_app(
            json!([{ "url": dead.url("/dead"), "event_types": ["client_event", "channel_occupied"] }])
        ),
        app(
            B_ID,
            B_KEY,
            B_SECRET,
            json!([{ "url": live.url("/live"), "event_types": ["channel_occupied"] }])
        ),
    ]);
    let s = Hooked::start(apps, &[]);

    // app A floods its dead webhook: 1 in flight, 1000 queued, the rest dropped
    let (mut a, sid) = s.server.pusher();
    subscribe_private(&mut a, &sid, "private-flood");
    let sent = 1200;
    for i in 0..sent {
        client_event(&mut a, "private-flood", "client-n", json!({ "i": i }));
    }
    a.sync();
    // app B's webhooks go out meanwhile
    let (mut b, _) = Ws::pusher_at(s.server.addr(), &format!("/app/{B_KEY}"));
    for i in 0..10 {
        b.subscribe(&format!("b-{i}"));
    }
    let events = live.wait_events(10);
    assert_eq!(channels_of(&events, "channel_occupied").len(), 10);
    for h in live.hits() {
        h.verify(B_KEY, B_SECRET);
    }

    let queued = s.metric("revurb_webhook_queued");
    let dropped = s.metric("revurb_webhook_dropped_total{reason=\"queue_full\"}");
    // + 1: the occupied of private-flood
    assert_eq!(
        queued + dropped,
        sent + 1,
        "queued {queued}, dropped {dropped}"
    );
    assert!(queued <= 1001, "queued {queued}");
    assert_eq!(s.metric("revurb_webhook_in_flight"), 1);
    assert_eq!(dead.hits().len(), 1, "one request at a time per webhook");
    let log = s.server.stderr_text();
    assert!(log.contains("queue full"), "{log}");
}

/// A CA and a `localhost` certificate it signed: (CA PEM, server config).
fn private_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca = test_ca();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(ca.cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ca.key_der)),
        )
        .expect("server config");
    (ca.ca_pem, Arc::new(cfg))
}

#[test]
fn https_with_a_private_ca_from_ssl_cert_file() {
    let (ca, tls) = private_ca();
    let rx = Receiver::start_tls(Answer::Status(200), tls);
    let dir = TempDir::new("webhook-ca");
    let ca_file = dir.write("ca.pem", &ca);
    let hooks = json!([{ "url": rx.url("/secure"), "event_types": ["channel_occupied"] }]);
    let s = Hooked::start(json!([main_app(hooks)]), &[("SSL_CERT_FILE", &ca_file)]);
    let (mut a, _) = s.server.pusher();
    a.subscribe("secure-news");
    a.subscribe("secure-more");
    let events = rx.wait_events(2);
    assert_eq!(
        channels_of(&events, "channel_occupied"),
        ["secure-news", "secure-more"]
    );
    for h in rx.hits() {
        h.verify(APP_KEY, APP_SECRET);
        assert_eq!(h.path, "/secure");
    }
}

#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server is not on PATH (apt-get install redis-server)"
)]
fn a_three_node_cluster_sends_each_webhook_once() {
    let redis = crate::cluster_support::start_redis();
    let rx = Receiver::start(Answer::Status(200));
    let hooks = json!([{ "url": rx.url("/cluster"), "event_types": ALL_TYPES }]).to_string();
    let env = [
        ("REVERB_APP_WEBHOOKS", hooks.as_str()),
        ("REVERB_APP_WEBHOOK_DELAY", "1"),
    ];
    let nodes: Vec<Server> = (0..3).map(|_| start_node(&redis, &env)).collect();
    crate::cluster_support::form_cluster(&nodes);
    // forming the cluster opened probe connections only: no channel yet
    let before = rx.events().len();

    // the first subscribers of one channel on all three nodes at once
    let mut clients: Vec<(Ws, String)> = nodes.iter().map(Server::pusher).collect();
    for (ws, _) in &mut clients {
        subscribe_raw(ws, "news");
    }
    for (ws, _) in &mut clients {
        assert_eq!(ws.recv_text(), subscription_succeeded("news"));
    }
    // one user on two nodes
    for (ws, sid) in clients.iter_mut().take(2) {
        join_presence(ws, sid, "presence-team", 42, "answer");
    }
    // a client event from node 2 (a member of a private channel there)
    let (ws, sid) = &mut clients[2];
    subscribe_private(ws, sid, "private-talk");
    client_event(ws, "private-talk", "client-hi", json!({ "to": "there" }));
    rx.wait("occupied, added, client event", |ev| {
        has(ev, "channel_occupied", "news")
            && has(ev, "member_added", "presence-team")
            && has(ev, "client_event", "private-talk")
    });
    // then everyone leaves, at once
    for (ws, _) in &clients {
        ws.shutdown();
    }
    drop(clients);
    rx.wait("vacated and removed", |ev| {
        has(ev, "channel_vacated", "news")
            && has(ev, "channel_vacated", "presence-team")
            && has(ev, "member_removed", "presence-team")
    });
    // nothing more comes (the delay is 1 s)
    thread::sleep(Duration::from_millis(2500));
    let events: Vec<Value> = rx.events().split_off(before);
    for (name, channel) in [
        ("channel_occupied", "news"),
        ("channel_vacated", "news"),
        ("channel_occupied", "presence-team"),
        ("member_added", "presence-team"),
        ("member_removed", "presence-team"),
        ("channel_vacated", "presence-team"),
        ("client_event", "private-talk"),
    ] {
        assert_eq!(
            named(&events, name, channel).len(),
            1,
            "{name} on {channel}: {events:#?}"
        );
    }
    for h in rx.hits() {
        h.verify(APP_KEY, APP_SECRET);
    }
}

#[test]
fn sighup_moves_a_webhook_to_its_new_url() {
    let one = Receiver::start(Answer::Status(200));
    let two = Receiver::start(Answer::Status(200));
    let hooks =
        |rx: &Receiver| json!([{ "url": rx.url("/h"), "event_types": ["channel_occupied"] }]);
    let s = Hooked::start(json!([main_app(hooks(&one))]), &[]);
    let (mut a, _) = s.server.pusher();
    a.subscribe("before");
    one.wait_events(1);
    s.reload(json!([main_app(hooks(&two))]));
    a.subscribe("after");
    let events = two.wait_events(1);
    assert_eq!(channels_of(&events, "channel_occupied"), ["after"]);
    assert_eq!(channels_of(&one.events(), "channel_occupied"), ["before"]);
    // and a reload that removes every webhook sends nothing more
    s.reload(json!([main_app(json!([]))]));
    a.subscribe("unheard");
    a.sync();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(two.events().len(), 1);
    assert_eq!(one.events().len(), 1);
}

#[test]
fn stopping_sends_a_waiting_batch_and_does_not_wait_for_a_dead_receiver() {
    // a batch still in its 250 ms window goes out before the process exits
    let rx = Receiver::start(Answer::Status(200));
    let hooks =
        json!([{ "url": rx.url("/b"), "event_types": ["channel_occupied"], "batching": true }]);
    let mut s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, _) = s.server.pusher();
    a.subscribe("last-words");
    a.shutdown();
    s.server.wait_connections(0, ARRIVAL);
    let stop = Instant::now();
    s.server.sigterm();
    assert!(s.server.wait_exit(ARRIVAL).success());
    assert!(
        stop.elapsed() < Duration::from_millis(1500),
        "{:?}",
        stop.elapsed()
    );
    assert_eq!(
        channels_of(&rx.events(), "channel_occupied"),
        ["last-words"]
    );

    // a receiver that never answers holds the exit for the 2 s of grace at
    // most, and what it did not take is counted in the log
    let dead = Receiver::start(Answer::Never);
    let hooks = json!([{ "url": dead.url("/d"), "event_types": ["channel_occupied"] }]);
    let mut s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, _) = s.server.pusher();
    a.subscribe("unheard");
    a.shutdown();
    s.server.wait_connections(0, ARRIVAL);
    wait_until(
        ARRIVAL,
        || "the request to reach the dead receiver".into(),
        || (dead.hits().len() == 1).then_some(()),
    );
    let stop = Instant::now();
    s.server.sigterm();
    assert!(s.server.wait_exit(ARRIVAL).success());
    let took = stop.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // the occupied that was in flight (the hook wants nothing else)
    let log = s.server.stderr_text();
    assert!(
        log.contains("webhooks: 1 events not delivered at shutdown"),
        "{log}"
    );
}

#[test]
fn stopping_alone_sends_the_vacates_and_removals_still_in_their_delay() {
    // A node alone has nobody to report for it: the channel_vacated and
    // member_removed that SIGTERM's closes start are sent at once, not
    // after the 3 s delay (which would outlast the 2 s grace).
    let rx = Receiver::start(Answer::Status(200));
    let hooks = json!([{ "url": rx.url("/bye"),
        "event_types": ["channel_vacated", "member_removed"] }]);
    let mut s = Hooked::start(json!([main_app(hooks)]), &[]);
    let (mut a, sid) = s.server.pusher();
    a.subscribe("news-at-exit");
    join_presence(&mut a, &sid, "presence-exit", 7, "Seven");
    let stop = Instant::now();
    s.server.sigterm();
    assert!(s.server.wait_exit(ARRIVAL).success());
    assert!(
        stop.elapsed() < Duration::from_millis(2500),
        "{:?}",
        stop.elapsed()
    );
    let events = rx.events();
    let mut vacated = channels_of(&events, "channel_vacated");
    vacated.sort();
    assert_eq!(vacated, ["news-at-exit", "presence-exit"], "{events:?}");
    let removed = named(&events, "member_removed", "presence-exit");
    assert_eq!(removed.len(), 1, "{events:?}");
    assert_eq!(removed[0]["user_id"], "7");
}

/// `revurb upgrade` (issue 14): webhook events ready to go when the
/// upgrade comes are sent before the exec, each once; what the webhooks
/// were told stays told (no second channel_occupied or member_added).
#[test]
fn an_upgrade_sends_what_is_waiting_and_nothing_twice() {
    let rx = Receiver::start(Answer::Status(200));
    let hooks = json!([{ "url": rx.url("/hooks"), "batching": true,
        "event_types": ["client_event", "channel_occupied", "member_added"] }]);
    let dir = TempDir::new("webhooks-upgrade");
    let cfg = dir.write(
        "revurb.json",
        &json!({ "apps": { "apps": [main_app(hooks)] } }).to_string(),
    );
    let exe = dir.path().join("revurb");
    std::fs::copy(crate::support::bin(), &exe).expect("copy the binary");
    let pid_file = dir.file("revurb.pid");
    let s = Server::start_program(
        &exe,
        None,
        &[],
        &[],
        &["--config", &cfg, "--pid-file", &pid_file],
    );
    let (mut a, sid) = s.pusher();
    subscribe_private(&mut a, &sid, "private-chat");
    rx.wait("channel_occupied", |e| {
        has(e, "channel_occupied", "private-chat")
    });
    for i in 0..45 {
        client_event(&mut a, "private-chat", "client-n", json!({ "i": i }));
    }
    a.sync();
    let (status, out, err) = crate::support::run_binary(&[], &["upgrade", "--pid-file", &pid_file]);
    assert_eq!(status.code(), Some(0), "{out}\n{err}\n{}", s.stderr_text());
    let events = rx.wait("45 client events", |e| {
        named(e, "client_event", "private-chat").len() >= 45
    });
    assert_eq!(named(&events, "client_event", "private-chat").len(), 45);
    // after the upgrade: another event, and nothing reported again
    client_event(&mut a, "private-chat", "client-n", json!({ "i": 45 }));
    let events = rx.wait("the 46th", |e| {
        named(e, "client_event", "private-chat").len() >= 46
    });
    assert_eq!(named(&events, "client_event", "private-chat").len(), 46);
    assert_eq!(
        named(&events, "channel_occupied", "private-chat").len(),
        1,
        "{events:?}"
    );
    assert!(
        !s.stderr_text()
            .contains("webhook events not yet delivered are lost")
    );
}

#[test]
fn an_upgrade_carries_a_webhook_event_waiting_for_its_retry() {
    let rx = Receiver::start(Answer::Status(200));
    // tries at 0 s and 1 s fail, the one at 3 s succeeds: the switch
    // happens while the event waits for its second try
    rx.script(&[Answer::Status(500), Answer::Status(500)]);
    let hooks = json!([{ "url": rx.url("/later"), "event_types": ["channel_occupied"] }]);
    let dir = TempDir::new("webhook-upgrade");
    let cfg = dir.write(
        "revurb.json",
        &json!({ "apps": { "apps": [main_app(hooks)] } }).to_string(),
    );
    let exe = dir.path().join("revurb");
    std::fs::copy(bin(), &exe).expect("copy the binary");
    let pid_file = dir.file("revurb.pid");
    let server = Server::start_program(
        &exe,
        None,
        &[],
        &[],
        &["--config", &cfg, "--pid-file", &pid_file],
    );
    let (mut a, _) = server.pusher();
    a.subscribe("news");
    wait_until(
        ARRIVAL,
        || format!("a first try; hits: {:?}", rx.hits()),
        || (!rx.hits().is_empty()).then_some(()),
    );
    // deploy a new copy over the binary and upgrade
    let new = dir.path().join("revurb.new");
    std::fs::copy(bin(), &new).expect("copy");
    std::fs::rename(&new, &exe).expect("rename over the binary");
    let (status, out, err) = run_binary(&[], &["upgrade", "--pid-file", &pid_file]);
    assert!(status.success(), "{out}\n{err}\n{}", server.stderr_text());
    let events = rx.wait_events(1);
    assert_eq!(events[0]["name"], "channel_occupied", "{events:?}");
    assert_eq!(events[0]["channel"], "news", "{events:?}");
    let hits = rx.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(
        hits.iter().all(|h| h.body == hits[0].body),
        "the same request each try"
    );
    hits[2].verify(APP_KEY, APP_SECRET);
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.hits().len(), 3, "delivered once");
    let log = server.stderr_text();
    assert!(
        log.contains("1 webhook events not yet delivered taken over"),
        "{log}"
    );
    // the client never noticed
    server.trigger("news", "after", "x");
    let v = a.recv_json();
    assert_eq!(v["event"], "after", "{v}");
}

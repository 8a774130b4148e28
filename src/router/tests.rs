//! Every route, without a socket: raw request bytes are parsed as the loop
//! parses them, routed, and the action is checked byte for byte where the
//! bytes are the contract (status line, headers, body, `Connection: close`).

use super::*;
use crate::http::{self, Parse};
use crate::pusher::App;

const APP_ID: &str = "123456";
const KEY: &str = "reverb-key";
const SECRET: &str = "reverb-secret";
const NOW_UNIX: i64 = 1_700_000_000;

/// What routing reads and changes, owned by the test.
struct World {
    hub: Hub,
    metrics: Metrics,
    prefix: &'static str,
    draining: bool,
}

impl World {
    fn new() -> World {
        World {
            hub: Hub::new(vec![App::new(APP_ID, KEY, SECRET)], 7, false),
            metrics: Metrics::default(),
            prefix: "",
            draining: false,
        }
    }

    fn route<'r>(&mut self, listener: Listener, req: &'r Request) -> Action<'r> {
        let ctx = Ctx {
            prefix: self.prefix,
            draining: self.draining,
            hub: &mut self.hub,
            metrics: &mut self.metrics,
            now: 1_000,
            unix: NOW_UNIX,
        };
        route(listener, req, ctx)
    }

    /// Route on the main listener and expect a response: (status, close, text).
    fn respond(&mut self, raw: &str) -> (u16, bool, String) {
        let req = parse(raw);
        match self.route(Listener::Main, &req) {
            Action::Respond { bytes, close } => (status(&bytes), close, text(bytes)),
            other => panic!("expected a response, got {other:?}"),
        }
    }
}

fn parse(raw: &str) -> Request {
    match http::parse(raw.as_bytes(), 64 * 1024) {
        Parse::Complete(req, used) => {
            assert_eq!(used, raw.len(), "the fixture is one whole request");
            req
        }
        other => panic!("not a complete request: {other:?}"),
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn status(bytes: &[u8]) -> u16 {
    let line = String::from_utf8_lossy(&bytes[..bytes.len().min(12)]).into_owned();
    line[9..12].parse().expect("a status code")
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("responses are text")
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

// ---- the metrics listener ---------------------------------------------------

#[test]
fn metrics_listener_serves_get_metrics() {
    let mut w = World::new();
    let req = parse(&get("/metrics"));
    let Action::Respond { bytes, close } = w.route(Listener::Metrics, &req) else {
        panic!("expected a response");
    };
    let t = text(bytes);
    assert!(t.starts_with("HTTP/1.1 200 OK\r\n"), "{t}");
    assert!(t.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    assert!(t.contains("revurb_connections{app=\"123456\"} 0"), "{t}");
    assert!(!close, "HTTP/1.1 keeps the connection");
}

#[test]
fn metrics_listener_refuses_other_methods_and_paths() {
    let mut w = World::new();
    let req = parse("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let Action::Respond { bytes, .. } = w.route(Listener::Metrics, &req) else {
        panic!("expected a response");
    };
    let t = text(bytes);
    assert!(t.starts_with("HTTP/1.1 405 "), "{t}");
    assert!(t.contains("Allow: GET\r\n"), "{t}");
    // the main listener's routes do not exist here
    for path in ["/up", "/app/reverb-key", "/apps/123456/channels"] {
        let req = parse(&get(path));
        let Action::Respond { bytes, .. } = w.route(Listener::Metrics, &req) else {
            panic!("expected a response");
        };
        let t = text(bytes);
        assert!(t.starts_with("HTTP/1.1 404 "), "{path}: {t}");
        assert!(t.ends_with("Not found. Metrics are at /metrics."), "{t}");
    }
}

#[test]
fn metrics_is_not_a_route_of_the_main_listener() {
    let mut w = World::new();
    let (code, _, _) = w.respond(&get("/metrics"));
    assert_eq!(code, 404);
}

// ---- /up --------------------------------------------------------------------

#[test]
fn up_answers_get() {
    let mut w = World::new();
    let (code, close, t) = w.respond(&get("/up"));
    assert_eq!((code, close), (200, false));
    assert!(t.contains("Content-Type: application/json\r\n"), "{t}");
    assert!(t.ends_with("\r\n\r\n{\"health\":\"OK\"}"), "{t}");
}

#[test]
fn up_answers_head_with_the_get_headers_and_no_body() {
    let mut w = World::new();
    let (_, _, get_text) = w.respond(&get("/up"));
    let (code, close, head_text) = w.respond("HEAD /up HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((code, close), (200, false));
    assert!(
        head_text.ends_with("Content-Length: 15\r\n\r\n"),
        "{head_text}"
    );
    assert_eq!(format!("{head_text}{}", r#"{"health":"OK"}"#), get_text);
}

#[test]
fn up_refuses_other_methods() {
    let mut w = World::new();
    let (code, _, t) = w.respond("POST /up HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(code, 405);
    assert!(t.contains("Allow: GET, HEAD\r\n"), "{t}");
}

// ---- the path prefix ----------------------------------------------------------

#[test]
fn prefix_is_required_and_stripped() {
    let mut w = World::new();
    w.prefix = "/ws";
    assert_eq!(w.respond(&get("/ws/up")).0, 200);
    assert_eq!(w.respond(&get("/up")).0, 404, "without the prefix");
    assert_eq!(
        w.respond(&get("/wsup")).0,
        404,
        "the prefix is a whole segment"
    );
    assert_eq!(
        w.respond(&get("/ws")).0,
        404,
        "the prefix alone is no route"
    );
    let req = parse(&upgrade_request("/ws/app/reverb-key", ""));
    assert!(matches!(
        w.route(Listener::Main, &req),
        Action::Upgrade {
            key: "reverb-key",
            ..
        }
    ));
}

#[test]
fn unknown_paths_are_not_found() {
    let mut w = World::new();
    let (code, close, t) = w.respond(&get("/nothing/here"));
    assert_eq!((code, close), (404, false));
    assert!(t.ends_with("Not found."), "{t}");
}

// ---- /app/{key} ---------------------------------------------------------------

#[test]
fn app_key_upgrades_with_the_handshake_and_the_origin() {
    let mut w = World::new();
    let req = parse(&upgrade_request(
        "/app/reverb-key?protocol=7&client=js",
        "Origin: https://example.com\r\n",
    ));
    let Action::Upgrade {
        handshake,
        key,
        origin,
    } = w.route(Listener::Main, &req)
    else {
        panic!("expected an upgrade");
    };
    assert_eq!((key, origin), ("reverb-key", Some("https://example.com")));
    let t = text(handshake);
    assert!(t.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{t}");
    // RFC 6455 1.3's sample key and answer
    assert!(t.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}

#[test]
fn app_key_upgrade_is_routed_for_unknown_keys_too() {
    // The hub refuses an unknown key with a Pusher error over the WebSocket
    // (4001), as Reverb does, so routing must not answer it with HTTP.
    let mut w = World::new();
    let req = parse(&upgrade_request("/app/no-such-key", ""));
    assert!(matches!(
        w.route(Listener::Main, &req),
        Action::Upgrade {
            key: "no-such-key",
            origin: None,
            ..
        }
    ));
}

#[test]
fn app_key_must_be_one_nonempty_segment() {
    let mut w = World::new();
    for path in ["/app/", "/app/reverb-key/more"] {
        let (code, _, t) = w.respond(&upgrade_request(path, ""));
        assert_eq!(code, 404, "{path}");
        assert!(t.ends_with("Not found."), "{t}");
    }
}

#[test]
fn app_key_with_a_bad_handshake_gets_the_handshake_error() {
    let mut w = World::new();
    let (code, _, t) = w.respond("POST /app/reverb-key HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(code, 405);
    assert!(t.contains("Allow: GET\r\n"), "{t}");
    assert_eq!(
        w.respond(&get("/app/reverb-key")).0,
        400,
        "no Upgrade headers"
    );
    let old = upgrade_request("/app/reverb-key", "").replace("Version: 13", "Version: 8");
    let (code, _, t) = w.respond(&old);
    assert_eq!(code, 426);
    assert!(t.contains("Sec-WebSocket-Version: 13\r\n"), "{t}");
}

// ---- the API ------------------------------------------------------------------

#[test]
fn api_calls_are_dispatched_and_counted() {
    let mut w = World::new();
    let path = "/apps/123456/channels";
    let query = crate::auth::sign_api_request("GET", path, &[], b"", KEY, SECRET, NOW_UNIX);
    let (code, close, t) = w.respond(&get(&format!("{path}?{query}")));
    assert_eq!((code, close), (200, false));
    assert!(t.ends_with(r#"{"channels":{}}"#), "{t}");
    assert_eq!(w.respond(&get(path)).0, 401, "unsigned");
    assert_eq!(w.respond(&get("/apps/999/channels")).0, 404, "no such app");
    assert_eq!(
        w.respond(&get("/apps/123456/nothing")).0,
        404,
        "no such endpoint"
    );
    let counted: Vec<_> = w.metrics.http_requests.into_iter().collect();
    assert_eq!(
        counted,
        [
            (("channels", 200), 1),
            (("channels", 401), 1),
            (("channels", 404), 1),
            (("unknown", 404), 1)
        ]
    );
}

#[test]
fn api_posts_are_dispatched_with_their_body() {
    let mut w = World::new();
    let path = "/apps/123456/events";
    let body = br#"{"name":"e","channel":"c","data":"{}"}"#;
    let query = crate::auth::sign_api_request("POST", path, &[], body, KEY, SECRET, NOW_UNIX);
    let raw = format!(
        "POST {path}?{query} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    let (code, _, t) = w.respond(&raw);
    assert_eq!(code, 200, "{t}");
    assert!(t.ends_with("{}"), "{t}");
    assert_eq!(w.metrics.http_requests.get(&("events", 200)), Some(&1));
}

// ---- keep-alive or close --------------------------------------------------------

#[test]
fn keep_alive_follows_the_request() {
    let mut w = World::new();
    assert!(!w.respond(&get("/up")).1, "HTTP/1.1 keeps alive by default");
    let (_, close, t) = w.respond("GET /up HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(close);
    assert!(t.contains("Connection: close\r\n"), "{t}");
    assert!(
        w.respond("GET /up HTTP/1.0\r\n\r\n").1,
        "HTTP/1.0 closes by default"
    );
    assert!(
        !w.respond("GET /up HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .1
    );
    let (_, close, t) = w.respond("HEAD /up HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert!(close && t.ends_with("Connection: close\r\n\r\n"), "{t}");
}

#[test]
fn draining_closes_every_answer() {
    let mut w = World::new();
    w.draining = true;
    for raw in [get("/up"), get("/nothing"), get("/apps/123456/channels")] {
        let (_, close, t) = w.respond(&raw);
        assert!(close, "{raw}");
        assert!(t.contains("Connection: close\r\n"), "{t}");
    }
    let req = parse(&get("/metrics"));
    assert!(matches!(
        w.route(Listener::Metrics, &req),
        Action::Respond { close: true, .. }
    ));
}

#[test]
fn draining_answers_up_with_503_and_refuses_upgrades_with_503() {
    let mut w = World::new();
    let (code, _, t) = w.respond(&get("/up"));
    assert_eq!(code, 200, "{t}");
    w.draining = true;
    let (code, close, t) = w.respond(&get("/up"));
    assert_eq!((code, close), (503, true), "{t}");
    assert!(t.ends_with("\r\n\r\n{\"health\":\"draining\"}"), "{t}");
    let (code, _, head) = w.respond("HEAD /up HTTP/1.1\r\n\r\n");
    assert_eq!(code, 503);
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    assert_eq!(head.len(), t.len() - r#"{"health":"draining"}"#.len());
    // a valid upgrade, even for an unknown app, is refused before the hub sees it
    for path in ["/app/reverb-key", "/app/no-such-key"] {
        let (code, close, t) = w.respond(&upgrade_request(path, ""));
        assert_eq!((code, close), (503, true), "{t}");
        assert!(t.ends_with(REFUSED_WHILE_DRAINING), "{t}");
    }
    assert_eq!(w.hub.stats.connections_opened, 0);
    // the API still answers (events still reach the clients not yet closed)
    let path = "/apps/123456/channels";
    let query = crate::auth::sign_api_request("GET", path, &[], b"", KEY, SECRET, NOW_UNIX);
    let (code, close, t) = w.respond(&get(&format!("{path}?{query}")));
    assert_eq!((code, close), (200, true), "{t}");
}

#[test]
fn refused_and_timed_out_requests_close() {
    let e = match http::parse(b"BAD\x01 / HTTP/1.1\r\n\r\n", 1024) {
        Parse::Error(e) => e,
        other => panic!("expected a parse error, got {other:?}"),
    };
    let Action::Respond { bytes, close } = refuse(&e) else {
        panic!("expected a response");
    };
    assert!(close);
    assert_eq!(status(&bytes), e.status());
    let Action::Respond { bytes, close } = timed_out() else {
        panic!("expected a response");
    };
    let t = text(bytes);
    assert!(close && t.starts_with("HTTP/1.1 408 "), "{t}");
    assert!(
        t.ends_with("Connection: close\r\n\r\nRequest timeout."),
        "{t}"
    );
}

#[test]
fn api_paths_without_the_app_prefix_reach_the_api() {
    // The Python SDK posts terminate_connections without /apps/{id}; the
    // router must hand it to the API (which finds the app by auth_key),
    // behind the server's prefix like every API path.
    let mut w = World::new();
    w.prefix = "/ws";
    let path = "/users/42/terminate_connections";
    let query = crate::auth::sign_api_request("POST", path, &[], b"", KEY, SECRET, NOW_UNIX);
    let raw = format!("POST /ws{path}?{query} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    let (code, _, t) = w.respond(&raw);
    assert_eq!(code, 200, "{t}");
    assert_eq!(
        w.metrics.http_requests.get(&("terminate_connections", 200)),
        Some(&1)
    );
}

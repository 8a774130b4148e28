//! HTTP transport: health check, routing, keep-alive, size limits, the path
//! prefix, request deadlines and malformed requests.

use std::time::{Duration, Instant};

use crate::support::{HttpConn, Server, Ws};

#[test]
fn head_up_has_no_body_and_keeps_the_connection_usable() {
    let s = Server::start(&[], &[]);
    let mut c = s.http();
    c.send("HEAD", "/up", &[], b"");
    let head = c.read_head().unwrap();
    assert_eq!(head.status, 200);
    // RFC 9110 9.3.2: no content in a response to HEAD; the next response
    // on the connection must start right after the head
    let r = c.request("GET", "/up", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"health":"OK"}"#));
}

#[test]
fn up_ignores_the_query_string() {
    let s = Server::start(&[], &[]);
    let r = s.get("/up?probe=1");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"health":"OK"}"#));
}

const HEALTH: &str = r#"{"health":"OK"}"#;

#[test]
fn ref_health_2_up_returns_ok_with_content_length_15() {
    let s = Server::start(&[], &[]);
    let r = s.get("/up");
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    assert_eq!(r.header("content-length"), Some("15"));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn ref_health_1_nothing_listens_after_the_server_is_gone() {
    let mut s = Server::start(&[], &[]);
    assert_eq!(s.get("/up").status, 200);
    let addr = s.addr();
    s.sigterm();
    assert_eq!(s.wait_exit(Duration::from_secs(5)).code(), Some(0));
    let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .expect_err("something still listens on the old address");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn unknown_path_returns_404_not_found() {
    let s = Server::start(&[], &[]);
    for path in ["/nope", "/", "/apps", "/apps/app-id", "/app/", "/upx"] {
        let r = s.get(path);
        assert_eq!((r.status, r.text().as_str()), (404, "Not found."), "{path}");
        assert_eq!(r.header("content-length"), Some("10"), "{path}");
    }
}

#[test]
fn post_up_returns_405_with_allow_header() {
    let s = Server::start(&[], &[]);
    let r = s.request("POST", "/up", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.text(), "Method not allowed.");
    let allow = r.header("allow").expect("Allow header");
    let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    assert!(methods.contains(&"GET"), "Allow: {allow}");
    assert!(!methods.contains(&"POST"), "Allow: {allow}");
}

#[test]
fn keep_alive_answers_two_requests_on_one_connection() {
    let s = Server::start(&[], &[]);
    let mut c = s.http();
    let r = c.request("GET", "/up", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    assert_eq!(r.header("connection"), None, "HTTP/1.1 stays open");
    let r = c.signed_get("/apps/app-id/connections", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"connections":0}"#));
    let r = c.request("GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    let r = c.request("GET", "/up", &[], b"");
    assert_eq!(r.status, 200);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    let mut c = s.http();
    // three requests in one write: a health check, a 404 and a signed trigger
    let body = r#"{"name":"piped","channel":"test-channel","data":"x"}"#;
    let q = crate::support::signed_post_query("/apps/app-id/events", body);
    let raw = format!(
        "GET /up HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /nope HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /apps/app-id/events?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}\
         GET /up?last HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    );
    c.send_raw(raw.as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "Not found."));
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    assert!(c.buffered().is_empty(), "extra bytes after the 4 responses");
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"piped","data":"x","channel":"test-channel"}"#
    );
    // the connection is still usable
    assert_eq!(c.request("GET", "/up", &[], b"").status, 200);
}

#[test]
fn connection_close_is_honoured() {
    let s = Server::start(&[], &[]);
    for value in ["close", "Close", "keep-alive, close"] {
        let mut c = s.http();
        let r = c.request("GET", "/up", &[("Connection", value)], b"");
        assert_eq!((r.status, r.text().as_str()), (200, HEALTH), "{value}");
        assert_eq!(
            r.header("connection").map(str::to_ascii_lowercase),
            Some("close".to_string()),
            "{value}"
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "Connection: {value}: socket left open"
        );
        assert!(c.buffered().is_empty(), "{value}: bytes after the response");
    }
}

#[test]
fn http_1_0_without_keep_alive_is_closed_after_the_response() {
    let s = Server::start(&[], &[]);
    let mut c = s.http();
    c.send_raw(b"GET /up HTTP/1.0\r\n\r\n");
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "HTTP/1.0 left open"
    );

    // with `Connection: keep-alive` an HTTP/1.0 client may send a second request
    let mut c = s.http();
    c.send_raw(b"GET /up HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 200);
    c.send_raw(b"GET /nope HTTP/1.0\r\n\r\n");
    assert_eq!(c.read_response().unwrap().status, 404);
    assert!(c.closed_within(Duration::from_secs(3)));
}

fn event_with_data(data_len: usize) -> String {
    serde_json::json!({
        "name": "big",
        "channel": "test-channel",
        "data": "x".repeat(data_len),
    })
    .to_string()
}

#[test]
fn ref_events_12_request_over_max_request_size_gets_413() {
    let s = Server::start(&[], &[]);
    let body = event_with_data(11_000);
    let mut c = s.http();
    let r = c.signed_post("/apps/app-id/events", &body);
    assert_eq!((r.status, r.text().as_str()), (413, "Payload too large."));
    assert!(c.closed_within(Duration::from_secs(3)));
    // a head alone over the limit is refused too
    let mut c = s.http();
    let long = format!("/up?{}", "q".repeat(12_000));
    let r = c.request("GET", &long, &[], b"");
    assert_eq!(r.status, 413);
    // the server is fine afterwards
    assert_eq!(s.get("/up").status, 200);
}

#[test]
fn ref_events_13_request_within_raised_max_request_size_is_accepted() {
    let s = Server::start(&[("REVERB_MAX_REQUEST_SIZE", "20000")], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    let body = event_with_data(15_000);
    assert!(body.len() > 10_000);
    let r = s.signed_post("/apps/app-id/events", &body);
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    let v = ws.recv_json();
    assert_eq!(v["event"], "big");
    assert_eq!(v["data"].as_str().map(str::len), Some(15_000));
    // still limited: just over 20 000 in all
    let r = s.signed_post("/apps/app-id/events", &event_with_data(20_000));
    assert_eq!(r.status, 413);
}

#[test]
fn ref_server_40_buffers_a_150_kb_request() {
    let s = Server::start(&[("REVERB_MAX_REQUEST_SIZE", "200000")], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    let body = event_with_data(150_000);
    let q = crate::support::signed_post_query("/apps/app-id/events", &body);
    let mut c = s.http();
    let head = format!(
        "POST /apps/app-id/events?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // head and body in many small writes: the server must buffer them all
    c.send_raw(head.as_bytes());
    for part in body.as_bytes().chunks(7_000) {
        c.send_raw(part);
    }
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    let v = ws.recv_json();
    assert_eq!(v["event"], "big");
    assert_eq!(v["data"].as_str().map(str::len), Some(150_000));
}

#[test]
fn ref_events_18_ref_server_41_path_prefix_api_signed_without_prefix() {
    let s = Server::start(&[], &["--path", "ws"]);
    assert!(s.start_line().contains("(path /ws)"), "{}", s.start_line());
    let (mut ws, _) = Ws::pusher_at(s.addr(), "/ws/app/app-key");
    ws.subscribe("test-channel");
    let body = r#"{"name":"e","channel":"test-channel","data":"prefixed"}"#;
    let r = s
        .http()
        .signed_post_prefixed("/ws", "/apps/app-id/events", body);
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"e","data":"prefixed","channel":"test-channel"}"#
    );
    // signed over the prefixed path instead: the signature does not match
    let q = crate::support::signed_post_query("/ws/apps/app-id/events", body);
    let r = s.request(
        "POST",
        &format!("/ws/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn ref_server_42_path_prefix_required() {
    let s = Server::start(&[], &["--path", "/ws/"]);
    let body = r#"{"name":"e","channel":"test-channel","data":"x"}"#;
    let r = s.signed_post("/apps/app-id/events", body);
    assert_eq!((r.status, r.text().as_str()), (404, "Not found."));
    assert_eq!(s.get("/up").status, 404);
    assert_eq!(s.get("/wsup").status, 404);
    let ws = s.ws("/app/app-key", &[]);
    assert_eq!(ws.head.status, 404, "upgrade without the prefix");
    assert_eq!(s.get("/ws/up").status, 200);
}

#[test]
fn path_prefix_from_reverb_server_path() {
    let s = Server::start(&[("REVERB_SERVER_PATH", "/ws")], &[]);
    let r = s.get("/ws/up");
    assert_eq!((r.status, r.text().as_str()), (200, HEALTH));
    assert_eq!(s.get("/up").status, 404);
    let (mut ws, _) = Ws::pusher_at(s.addr(), "/ws/app/app-key");
    ws.subscribe("test-channel");
    let body = r#"{"name":"e","channel":"test-channel","data":"env"}"#;
    let r = s
        .http()
        .signed_post_prefixed("/ws", "/apps/app-id/events", body);
    assert_eq!(r.status, 200);
    assert_eq!(
        ws.recv_text(),
        r#"{"event":"e","data":"env","channel":"test-channel"}"#
    );
}

#[test]
fn incomplete_request_is_closed_at_the_deadline_while_others_are_served() {
    let s = Server::start(&[("REVERB_REQUEST_TIMEOUT", "1")], &[]);
    let mut half = s.http();
    let opened = Instant::now();
    half.send_raw(
        b"POST /apps/app-id/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na",
    );
    // meanwhile other clients are answered at once, several times
    let mut served = 0;
    while opened.elapsed() < Duration::from_millis(700) {
        let t = Instant::now();
        assert_eq!(s.get("/up").status, 200);
        assert!(t.elapsed() < Duration::from_millis(500), "slow answer");
        served += 1;
    }
    assert!(served >= 2);
    let r = half.read_response().expect("a 408 for the half request");
    let at = opened.elapsed();
    assert_eq!((r.status, r.text().as_str()), (408, "Request timeout."));
    assert!(
        at >= Duration::from_millis(800) && at < Duration::from_secs(3),
        "408 after {at:?}"
    );
    assert!(half.closed_within(Duration::from_secs(3)));
    assert!(opened.elapsed() < Duration::from_secs(4));

    // a head that never ends, too
    let mut half = s.http();
    let opened = Instant::now();
    half.send_raw(b"GET /up HTTP/1.1\r\nHost: x\r\n");
    assert!(half.closed_within(Duration::from_secs(3)));
    assert!(opened.elapsed() >= Duration::from_millis(800));
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_request_timeout() {
    let s = Server::start(&[("REVERB_REQUEST_TIMEOUT", "1")], &[]);
    let mut c = s.http();
    assert_eq!(c.request("GET", "/up", &[], b"").status, 200);
    let idle_from = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "idle keep-alive connection still open after 3 s"
    );
    let after = idle_from.elapsed();
    assert!(
        after >= Duration::from_millis(800),
        "closed after {after:?}"
    );
    // whatever came before the close is at most one whole 408 response
    if !c.buffered().is_empty() {
        let text = String::from_utf8_lossy(c.buffered()).into_owned();
        assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    }
    // a connection that keeps asking is not closed: each request renews the deadline
    let mut c = s.http();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1800) {
        assert_eq!(c.request("GET", "/up", &[], b"").status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn plain_get_on_app_path_without_upgrade_returns_400() {
    let s = Server::start(&[], &[]);
    let r = s.get("/app/app-key");
    assert_eq!(r.status, 400);
    assert!(!r.body.is_empty());
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    // an unknown key without Upgrade is the same 400, not a 4001
    assert_eq!(s.get("/app/other-key").status, 400);
}

#[test]
fn malformed_requests_return_400() {
    let s = Server::start(&[], &[]);
    let cases: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET /up HTTP/9.9\r\n\r\n",
        b"GET /up HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"GET /up HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /up HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /up HTTP/1.1\r\nHost: x\r\n bad folding\r\n\r\n",
    ];
    for raw in cases {
        let mut c = HttpConn::connect(s.addr());
        c.send_raw(raw);
        let shown = String::from_utf8_lossy(raw);
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{shown:?}: no response: {e}"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "Bad request."),
            "{shown:?}"
        );
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "{shown:?}: left open"
        );
    }
    assert_eq!(s.get("/up").status, 200);
}

#[test]
fn chunked_request_gets_411() {
    let s = Server::start(&[], &[]);
    let mut c = s.http();
    c.send_raw(
        b"POST /apps/app-id/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    );
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (411, "Length required."));
    assert!(c.closed_within(Duration::from_secs(3)));
}

/// Issue 11, hole 3: a keep-alive client that pipelines without reading
/// goes over the write-queue limit and is closed; its close deadline (2 s)
/// must not be replaced by `request_timeout` (60 s here) by the answer that
/// crossed the limit. Its writes fail once the server drops it.
#[test]
fn a_pipelining_client_that_does_not_read_is_cut_off_at_the_close_deadline() {
    use std::io::Write;
    let s = Server::start(
        &[
            ("REVERB_WRITE_QUEUE_LIMIT", "1024"),
            ("REVERB_REQUEST_TIMEOUT", "60"),
        ],
        &[],
    );
    let mut c = s.http();
    let batch = b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
    let started = Instant::now();
    let cut_off = loop {
        // generous for a loaded machine, far below request_timeout
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still accepting requests after {:?}",
            started.elapsed()
        );
        match c.stream.write_all(&batch) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break started.elapsed(), // EPIPE / ECONNRESET: dropped
        }
    };
    eprintln!("non-reading pipelining client cut off after {cut_off:?}");
}

//! Operations: TLS, `revurb restart` and the pid file, SIGHUP reload of the
//! apps, the Prometheus metrics listener, and `revurb config` with the
//! configuration sources (`.env`, `revurb.json`, `--config`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use revurb::auth::sign_api_request;
use revurb::websocket::client;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::support::{
    APP_ENV, APP_ID, APP_KEY, APP_SECRET, HttpConn, Msg, READ_TIMEOUT, Resp, Server, TempDir,
    WS_KEY, Ws, free_port, pusher_error, run_binary, run_binary_in, subscription_succeeded,
    unix_now, wait_until,
};

// ---- a small HTTP + WebSocket client over rustls ----------------------------

struct TlsClient {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

fn client_config(
    cert: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("add the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

impl TlsClient {
    /// Connect and finish the TLS handshake (bounded by [`READ_TIMEOUT`]).
    fn connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> TlsClient {
        let c = Self::connect_with(addr, client_config(cert, rustls::DEFAULT_VERSIONS));
        assert_eq!(
            c.tls.conn.alpn_protocol(),
            None,
            "no ALPN was offered, none must be chosen"
        );
        c
    }

    fn connect_with(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> TlsClient {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        sock.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).expect("client");
        let mut tls = rustls::StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .expect("TLS handshake with revurb");
        }
        TlsClient {
            tls,
            buf: Vec::new(),
        }
    }

    /// Connect with TLS 1.2 only.
    fn connect_tls12(addr: SocketAddr, cert: &CertificateDer<'static>) -> TlsClient {
        let c = Self::connect_with(addr, client_config(cert, &[&rustls::version::TLS12]));
        assert_eq!(
            c.tls.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).expect("TLS write");
        self.tls.flush().expect("TLS flush");
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn read_head(&mut self) -> Resp {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or("");
                let status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                return Resp {
                    status,
                    headers,
                    body: Vec::new(),
                };
            }
            match self.fill() {
                Ok(0) => panic!("TLS connection closed before a response head"),
                Ok(_) => {}
                Err(e) => panic!("TLS read: {e}"),
            }
        }
    }

    fn read_response(&mut self) -> Resp {
        let mut r = self.read_head();
        let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < len {
            assert!(self.fill().expect("TLS read") > 0, "EOF inside a body");
        }
        r.body = self.buf.drain(..len).collect();
        r
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if method == "POST" {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
        self.read_response()
    }

    fn signed_post(&mut self, path: &str, body: &str) -> Resp {
        let q = crate::support::signed_post_query(path, body);
        self.request("POST", &format!("{path}?{q}"), body.as_bytes())
    }

    /// Upgrade to a WebSocket on `/app/app-key` and read connection_established.
    fn upgrade(&mut self) {
        let req = format!(
            "GET /app/{APP_KEY} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        self.send(req.as_bytes());
        let head = self.read_head();
        assert_eq!(head.status, 101, "{head:?}");
        let v: Value = serde_json::from_str(&self.recv_text()).unwrap();
        assert_eq!(v["event"], "pusher:connection_established", "{v}");
    }

    fn send_text(&mut self, text: &str) {
        let f = client::text(text);
        self.send(&f);
    }

    fn recv(&mut self) -> Msg {
        let end = Instant::now() + READ_TIMEOUT;
        loop {
            if let Some((op, payload, used)) = client::parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return match op {
                    OpCode::Data(Data::Text) => Msg::Text(String::from_utf8(payload).unwrap()),
                    OpCode::Control(Control::Close) if payload.len() >= 2 => Msg::Close(
                        u16::from_be_bytes([payload[0], payload[1]]),
                        String::from_utf8_lossy(&payload[2..]).into_owned(),
                    ),
                    OpCode::Control(Control::Ping) => Msg::Ping(payload),
                    OpCode::Control(Control::Pong) => Msg::Pong(payload),
                    other => panic!("unexpected frame {other:?}"),
                };
            }
            assert!(Instant::now() < end, "no frame within {READ_TIMEOUT:?}");
            match self.fill() {
                Ok(0) => panic!("TLS WebSocket closed"),
                Ok(_) => {}
                Err(e) => panic!("TLS WebSocket read: {e}"),
            }
        }
    }

    fn recv_text(&mut self) -> String {
        match self.recv() {
            Msg::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn subscribe(&mut self, channel: &str) {
        self.send_text(
            &json!({ "event": "pusher:subscribe", "data": { "channel": channel } }).to_string(),
        );
        assert_eq!(self.recv_text(), subscription_succeeded(channel));
    }
}

/// A throw-away self-signed certificate for `localhost`, written as PEM.
struct TestCert {
    dir: TempDir,
    der: CertificateDer<'static>,
    cert: String,
    key: String,
}

fn test_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let dir = TempDir::new("tls");
    let cert = dir.write("cert.pem", &ck.cert.pem());
    let key = dir.write("key.pem", &ck.signing_key.serialize_pem());
    TestCert {
        der: ck.cert.der().clone(),
        dir,
        cert,
        key,
    }
}

fn tls_server(c: &TestCert, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("REVERB_TLS_CERT", c.cert.as_str()),
        ("REVERB_TLS_KEY", c.key.as_str()),
    ];
    env.extend_from_slice(extra);
    let s = Server::start(&env, &[]);
    assert!(s.start_line().contains("(secure)"), "{}", s.start_line());
    s
}

/// Health check, WebSocket subscribe and a signed trigger, all over TLS.
fn tls_round_trip(s: &Server, c: &TestCert, event: &str) {
    let mut http = TlsClient::connect(s.addr(), &c.der);
    let r = http.request("GET", "/up", b"");
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"health":"OK"}"#));
    let mut ws = TlsClient::connect(s.addr(), &c.der);
    ws.upgrade();
    ws.subscribe("secure-channel");
    ws.send_text(r#"{"event":"pusher:ping"}"#);
    assert_eq!(ws.recv_text(), r#"{"event":"pusher:pong"}"#);
    // the API over the same (keep-alive) TLS connection as the health check
    let body = json!({ "name": event, "channel": "secure-channel", "data": "over tls" });
    let r = http.signed_post("/apps/app-id/events", &body.to_string());
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    assert_eq!(
        ws.recv_text(),
        format!(r#"{{"event":"{event}","data":"over tls","channel":"secure-channel"}}"#)
    );
}

#[test]
fn tls_serves_health_websocket_and_signed_api() {
    let c = test_cert();
    let s = tls_server(&c, &[]);
    tls_round_trip(&s, &c, "first");
    tls_round_trip(&s, &c, "second");
    // a plain-text client on the TLS port gets no HTTP answer
    let mut plain = HttpConn::connect(s.addr());
    plain.send_raw(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.closed_within(Duration::from_secs(3)));
    let got = String::from_utf8_lossy(plain.buffered()).into_owned();
    assert!(!got.contains("HTTP/1.1 200"), "{got:?}");
}

/// At most `MAX_HANDSHAKES` TLS handshakes run at once: with that many
/// silent callers holding their handshakes, the next caller waits in the
/// listen backlog, and is served as soon as one of them goes away.
#[test]
fn tls_handshakes_beyond_the_cap_wait_in_the_backlog() {
    let c = test_cert();
    let s = tls_server(&c, &[]);
    let mut silent: Vec<HttpConn> = (0..revurb::event_loop::MAX_HANDSHAKES)
        .map(|_| HttpConn::connect(s.addr()))
        .collect();
    // let the server accept them all
    thread::sleep(Duration::from_millis(300));
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = s.addr();
    let der = c.der.clone();
    let waiter = thread::spawn(move || {
        let mut http = TlsClient::connect(addr, &der);
        let r = http.request("GET", "/up", b"");
        let _ = tx.send(r.status);
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(1200)).is_err(),
        "a handshake beyond the cap was served"
    );
    drop(silent.pop());
    assert_eq!(rx.recv_timeout(Duration::from_secs(4)), Ok(200));
    waiter.join().expect("the waiting client");
}

#[test]
fn tls_bad_handshakes_do_not_disturb_other_clients() {
    let c = test_cert();
    let s = tls_server(&c, &[("REVERB_REQUEST_TIMEOUT", "1")]);
    // plain HTTP to the TLS port
    let mut plain = HttpConn::connect(s.addr());
    plain.send_raw(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n");
    // a client that opens TCP and sends nothing
    let mut silent = HttpConn::connect(s.addr());
    let silent_since = Instant::now();
    // one that sends the first bytes of a ClientHello and stalls
    let mut partial = HttpConn::connect(s.addr());
    partial.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    let partial_since = Instant::now();

    // meanwhile a good TLS client connects and works
    tls_round_trip(&s, &c, "meanwhile");
    assert!(
        silent_since.elapsed() < Duration::from_millis(900),
        "the good client took too long to prove anything"
    );

    assert!(plain.closed_within(Duration::from_secs(3)));
    for (what, conn, since) in [
        ("silent", &mut silent, silent_since),
        ("partial ClientHello", &mut partial, partial_since),
    ] {
        // REVERB_REQUEST_TIMEOUT (1 s) + the 2 s close deadline, and some slack
        assert!(
            conn.closed_within(Duration::from_secs(4)),
            "{what}: still open"
        );
        let at = since.elapsed();
        assert!(
            at >= Duration::from_millis(800) && at <= Duration::from_millis(3500),
            "{what}: closed after {at:?}"
        );
    }
    // and the server is still fine
    tls_round_trip(&s, &c, "after");
}

/// Encrypt `c.key` with openssl (PKCS#8, AES-256-CBC, passphrase `s3cret`);
/// `None` when openssl is missing outside CI.
fn encrypted_key(c: &TestCert) -> Option<String> {
    let out = c.dir.file("enc.pem");
    let run = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:s3cret",
            "-in",
            &c.key,
            "-out",
            &out,
        ])
        .output();
    match run {
        Ok(o) => {
            assert!(
                o.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Some(out)
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: cannot run openssl ({e})");
            None
        }
        Err(e) => panic!("openssl is needed under CI: {e}"),
    }
}

#[test]
fn tls_encrypted_key_with_passphrase() {
    let c = test_cert();
    let Some(enc) = encrypted_key(&c) else { return };
    let text = std::fs::read_to_string(&enc).unwrap();
    assert!(text.contains("BEGIN ENCRYPTED PRIVATE KEY"), "{text}");

    let s = Server::start(
        &[
            ("REVERB_TLS_CERT", c.cert.as_str()),
            ("REVERB_TLS_KEY", enc.as_str()),
            ("REVERB_TLS_PASSPHRASE", "s3cret"),
        ],
        &[],
    );
    assert!(s.start_line().contains("(secure)"));
    tls_round_trip(&s, &c, "encrypted");

    // a wrong or missing passphrase: the TLS files do not work, exit 1
    // (man page, EXIT STATUS), and the message says why
    for pass in [Some("wrong"), None] {
        let mut env = APP_ENV.to_vec();
        env.extend([
            ("REVERB_METRICS_PORT", "0"),
            ("REVERB_TLS_CERT", c.cert.as_str()),
            ("REVERB_TLS_KEY", enc.as_str()),
        ]);
        if let Some(p) = pass {
            env.push(("REVERB_TLS_PASSPHRASE", p));
        }
        let (status, out, err) = run_binary_in(
            Some(c.dir.path()),
            &env,
            &["start", "--host", "127.0.0.1", "--port", "0"],
        );
        assert_eq!(status.code(), Some(1), "{pass:?}: {err}");
        assert!(err.contains("passphrase"), "{pass:?}: {err}");
        assert!(!out.contains("listening"), "{pass:?}: {out}");
        assert!(!err.contains("s3cret"), "{pass:?}: {err}");
    }
}

// ---- restart and the pid file --------------------------------------------------

#[test]
fn restart_closes_clients_with_4200_and_the_server_exits_0() {
    let dir = TempDir::new("restart");
    let pid_file = dir.file("revurb.pid");
    let mut s = Server::start(&[], &["--pid-file", &pid_file]);
    let written = std::fs::read_to_string(&pid_file).expect("pid file written at start");
    assert_eq!(written.trim(), s.pid().to_string());

    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    let restart = {
        let pid_file = pid_file.clone();
        thread::spawn(move || run_binary(&[], &["restart", "--pid-file", &pid_file]))
    };
    assert_eq!(ws.recv_text(), pusher_error(4200, "Server shutting down"));
    assert_eq!(ws.recv_close(), (4200, "Server shutting down".to_string()));
    ws.expect_eof(Duration::from_secs(3));
    drop(ws);

    let (status, out, err) = restart.join().unwrap();
    assert_eq!(status.code(), Some(0), "restart: {err}");
    assert!(!out.trim().is_empty(), "restart printed nothing");
    assert!(out.contains(&s.pid().to_string()), "{out}");
    let exit = s.wait_exit(Duration::from_secs(5));
    assert_eq!(exit.code(), Some(0), "server exit {exit:?}");
    assert!(
        !std::path::Path::new(&pid_file).exists(),
        "the pid file is left behind"
    );
}

#[test]
fn restart_without_a_usable_pid_file_refuses() {
    let dir = TempDir::new("restart-bad");
    let missing = dir.file("missing.pid");
    let (status, _, err) = run_binary(&[], &["restart", "--pid-file", &missing]);
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains(&missing), "the message names the file: {err}");

    // our own pid: alive, but not revurb
    let me = std::process::id().to_string();
    let not_revurb = dir.write("other.pid", &format!("{me}\n"));
    let (status, _, err) = run_binary(&[], &["restart", "--pid-file", &not_revurb]);
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains("no revurb process"), "{err}");
    assert!(err.contains(&me), "{err}");

    let garbage = dir.write("garbage.pid", "not a pid\n");
    let (status, _, err) = run_binary(&[], &["restart", "--pid-file", &garbage]);
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains(&garbage), "{err}");

    // no pid file given anywhere
    let (status, _, err) = run_binary_in(Some(dir.path()), &APP_ENV, &["restart"]);
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(err.contains("--pid-file"), "{err}");

    // a configuration it cannot read (no app) is a usage error that says so
    let (status, _, err) = run_binary_in(Some(dir.path()), &[], &["restart"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("no app is configured"), "{err}");
}

// ---- SIGHUP reload ---------------------------------------------------------------

const B_ID: &str = "app-b";
const B_KEY: &str = "key-b";
const B_SECRET: &str = "secret-b";

fn apps_file(with_a: bool, with_b: bool) -> String {
    let mut apps = Vec::new();
    if with_a {
        apps.push(json!({ "app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET }));
    }
    if with_b {
        apps.push(json!({ "app_id": B_ID, "key": B_KEY, "secret": B_SECRET }));
    }
    json!({ "apps": { "apps": apps } }).to_string()
}

/// The first message on `/app/<key>`: connection_established or an error.
fn first_event(s: &Server, key: &str) -> (Ws, Value) {
    let mut ws = s.ws(&format!("/app/{key}"), &[]);
    assert_eq!(ws.head.status, 101);
    let v = ws.recv_json();
    (ws, v)
}

fn wait_for_app(s: &Server, key: &str, deadline: Duration) -> Ws {
    let last = std::cell::RefCell::new(Value::Null);
    wait_until(
        deadline,
        || format!("app {key} still unknown: {}", last.borrow()),
        || {
            let (ws, v) = first_event(s, key);
            if v["event"] == "pusher:connection_established" {
                return Some(ws);
            }
            assert_eq!(v["event"], "pusher:error", "{v}");
            *last.borrow_mut() = v;
            None
        },
    )
}

#[test]
fn sighup_reloads_the_apps_from_the_config_file() {
    let dir = TempDir::new("reload");
    let cfg = dir.write("apps.json", &apps_file(true, false));
    let s = Server::start_with(&[], &[], &["--config", &cfg]);
    let (mut a, _) = s.pusher();
    a.subscribe("test-channel");
    let (_, v) = first_event(&s, B_KEY);
    assert_eq!(
        v.to_string(),
        pusher_error(4001, "Application does not exist")
    );

    // add B
    dir.write("apps.json", &apps_file(true, true));
    s.signal(libc::SIGHUP);
    let mut b = wait_for_app(&s, B_KEY, Duration::from_secs(5));
    b.subscribe("b-channel");
    // A's client is still there and still served
    s.trigger("test-channel", "still", "here");
    assert_eq!(
        a.recv_text(),
        r#"{"event":"still","data":"here","channel":"test-channel"}"#
    );
    // B's API answers to B's credentials
    let body = json!({ "name": "for-b", "channel": "b-channel", "data": "b" }).to_string();
    let path = format!("/apps/{B_ID}/events");
    let q = sign_api_request(
        "POST",
        &path,
        &[],
        body.as_bytes(),
        B_KEY,
        B_SECRET,
        unix_now(),
    );
    let r = s.request("POST", &format!("{path}?{q}"), &[], body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    assert_eq!(
        b.recv_text(),
        r#"{"event":"for-b","data":"b","channel":"b-channel"}"#
    );

    // a broken file is refused and the apps are kept
    dir.write("apps.json", "{ not json");
    s.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || "a reload error in the log".into(),
        || s.stderr_text().contains("reload failed").then_some(()),
    );
    a.sync();
    b.sync();

    // remove A: its client is closed with 4200
    dir.write("apps.json", &apps_file(false, true));
    s.signal(libc::SIGHUP);
    assert_eq!(a.recv_text(), pusher_error(4200, "Server shutting down"));
    assert_eq!(a.recv_close().0, 4200);
    a.expect_eof(Duration::from_secs(3));
    b.sync();
    let r = s.signed_get("/apps/app-id/connections", &[]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "No matching application for ID [app-id].")
    );
    let (_, v) = first_event(&s, APP_KEY);
    assert_eq!(
        v.to_string(),
        pusher_error(4001, "Application does not exist")
    );
}

// ---- metrics ------------------------------------------------------------------

/// Parse the exposition text into `name{labels}` -> value; every sample line
/// must be `name[{k="v",...}] number`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number: {line:?}"));
        let (name, labels) = match key.split_once('{') {
            Some((n, rest)) => {
                let labels = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                (n, Some(labels))
            }
            None => (key, None),
        };
        assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line:?}"
        );
        if let Some(labels) = labels {
            for pair in labels.split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label {pair:?}: {line:?}"));
                assert!(
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name: {line:?}"
                );
                assert!(
                    v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                    "bad label value: {line:?}"
                );
            }
        }
        out.push((key.to_string(), value));
    }
    out
}

fn metric(samples: &[(String, f64)], key: &str) -> Option<f64> {
    samples.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

#[test]
fn metrics_listener_serves_prometheus_text() {
    let port = free_port();
    let s = Server::start(&[], &["--metrics-port", &port.to_string()]);
    assert!(
        s.start_line()
            .contains(&format!("(metrics on 127.0.0.1:{port})")),
        "{}",
        s.start_line()
    );
    let (mut a, _) = s.pusher();
    a.subscribe("channel-one");
    let (mut b, _) = s.pusher();
    b.subscribe("channel-two");
    for i in 0..3 {
        s.trigger("channel-one", &format!("e{i}"), "x");
        assert_eq!(
            a.recv_text(),
            format!(r#"{{"event":"e{i}","data":"x","channel":"channel-one"}}"#)
        );
    }
    let r = s.request(
        "POST",
        "/apps/app-id/events",
        &[],
        br#"{"name":"e","channel":"channel-one","data":"x"}"#,
    );
    assert_eq!(r.status, 401);

    let maddr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut m = HttpConn::connect(maddr);
    let r = m.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    let samples = parse_metrics(&text);
    let expect = |key: &str, want: f64| {
        assert_eq!(metric(&samples, key), Some(want), "{key}\n{text}");
    };
    expect(r#"revurb_connections{app="app-id"}"#, 2.0);
    expect("revurb_connections_opened_total", 2.0);
    expect(r#"revurb_channels{type="public"}"#, 2.0);
    expect(r#"revurb_channels{type="presence"}"#, 0.0);
    expect(
        r#"revurb_http_requests_total{endpoint="events",status="200"}"#,
        3.0,
    );
    expect(
        r#"revurb_http_requests_total{endpoint="events",status="401"}"#,
        1.0,
    );
    let positive = |key: &str, min: f64| {
        let v = metric(&samples, key).unwrap_or_else(|| panic!("{key} missing\n{text}"));
        assert!(v >= min, "{key} = {v}\n{text}");
    };
    positive("revurb_messages_received_total", 2.0);
    positive("revurb_messages_sent_total", 3.0);
    positive("revurb_bytes_received_total", 1.0);
    positive("revurb_bytes_sent_total", 1.0);
    positive("process_resident_memory_bytes", 1.0);
    positive("process_open_fds", 1.0);
    expect("revurb_slow_consumers_dropped_total", 0.0);
    // no pusher:error was sent: the family has no sample, or only zeros
    let errors: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("revurb_errors_sent_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "{text}");
    // every family has its TYPE line
    for family in [
        "revurb_connections",
        "revurb_channels",
        "revurb_http_requests_total",
        "revurb_errors_sent_total",
        "process_open_fds",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "no TYPE for {family}"
        );
    }

    // the count follows a disconnect and a pusher:error
    a.send_text("not json");
    assert_eq!(a.recv_text(), pusher_error(4200, "Invalid message format"));
    b.send_close(1000, "");
    assert_eq!(b.recv_close().0, 1000);
    s.wait_connections(1, Duration::from_secs(5));
    let text = m.request("GET", "/metrics", &[], b"").text();
    let samples = parse_metrics(&text);
    assert_eq!(
        metric(&samples, r#"revurb_connections{app="app-id"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&samples, "revurb_connections_closed_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&samples, r#"revurb_errors_sent_total{code="4200"}"#),
        Some(1.0),
        "{text}"
    );

    // only /metrics, only on the metrics port
    assert_eq!(m.request("GET", "/up", &[], b"").status, 404);
    assert_eq!(m.request("GET", "/metricsx", &[], b"").status, 404);
    assert_eq!(m.request("POST", "/metrics", &[], b"").status, 405);
    assert_eq!(s.get("/metrics").status, 404);
}

#[test]
fn metrics_port_0_turns_the_listener_off() {
    let s = Server::start(&[], &["--metrics-port", "0"]);
    assert!(!s.start_line().contains("metrics"), "{}", s.start_line());
}

// ---- configuration sources ---------------------------------------------------------

fn run_config(dir: &TempDir, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let (status, out, err) = run_binary_in(Some(dir.path()), env, args);
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn config_command_shows_sources_and_masks_secrets() {
    let dir = TempDir::new("config");
    let secret = "very-secret-value-123";
    let env = [
        ("REVERB_APP_ID", "app-id"),
        ("REVERB_APP_KEY", "app-key"),
        ("REVERB_APP_SECRET", secret),
        ("REVERB_MAX_REQUEST_SIZE", "20000"),
        ("REVERB_TLS_CERT", "/nonexistent/cert.pem"),
        ("REVERB_TLS_KEY", "/nonexistent/key.pem"),
        ("REVERB_TLS_PASSPHRASE", "hunter2-passphrase"),
    ];
    // `config` prints what it read, then makes start's checks short of
    // binding: the TLS files here do not exist, so it exits 1 naming one.
    let (code, out, err) = run_config(&dir, &env, &["config"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
    assert!(
        out.contains("servers.reverb.port = 8080    # default\n"),
        "{out}"
    );
    assert!(
        out.contains("servers.reverb.max_request_size = 20000    # environment\n"),
        "{out}"
    );
    assert!(out.contains("apps (1 from environment)"), "{out}");
    assert!(out.contains("\"app-id\""), "{out}");
    for hidden in [secret, "hunter2-passphrase"] {
        assert!(!out.contains(hidden), "{hidden} shown:\n{out}");
        assert!(!err.contains(hidden), "{hidden} in stderr:\n{err}");
    }

    let (code, out, err) = run_config(&dir, &env[..4], &["config", "--port", "9"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("servers.reverb.port = 9    # command line\n"),
        "{out}"
    );
}

#[test]
fn config_makes_the_checks_start_makes_before_binding() {
    let dir = TempDir::new("config-preflight");
    let app = [
        ("REVERB_APP_ID", "app-id"),
        ("REVERB_APP_KEY", "app-key"),
        ("REVERB_APP_SECRET", "app-secret"),
    ];
    // TLS files that load pass.
    let c = test_cert();
    let mut env = app.to_vec();
    env.extend([
        ("REVERB_TLS_CERT", c.cert.as_str()),
        ("REVERB_TLS_KEY", c.key.as_str()),
    ]);
    let (code, _, err) = run_config(&dir, &env, &["config"]);
    assert_eq!(code, 0, "{err}");
    // A key that is not a key fails as `start` would, with exit 1.
    let mut env = app.to_vec();
    env.extend([
        ("REVERB_TLS_CERT", c.cert.as_str()),
        ("REVERB_TLS_KEY", c.cert.as_str()),
    ]);
    let (code, _, err) = run_config(&dir, &env, &["config"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("TLS key"), "{err}");
    // A pid file in a directory that does not exist: start could not write it.
    let pid = dir.path().join("missing-dir/revurb.pid");
    let pid = pid.to_str().expect("utf-8 temp path");
    let (code, _, err) = run_config(&dir, &app, &["config", "--pid-file", pid]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("missing-dir"), "{err}");
    let (code, _, err) = run_binary_in(
        Some(dir.path()),
        &app,
        &["start", "--port", "0", "--pid-file", pid],
    );
    assert_eq!(code.code(), Some(1), "{err}");
}

#[test]
fn config_file_with_an_unknown_key_exits_2_naming_it() {
    let dir = TempDir::new("config-bad");
    let cfg = dir.write(
        "bad.json",
        r#"{"servers":{"reverb":{"port":8081,"bogus_option":true}}}"#,
    );
    for cmd in ["config", "start"] {
        let (code, out, err) = run_config(&dir, &APP_ENV, &[cmd, "--config", &cfg]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("servers.reverb.bogus_option"), "{cmd}: {err}");
        assert!(err.contains(&cfg), "{cmd}: names the file: {err}");
        assert!(!out.contains("listening"), "{cmd}: {out}");
    }
    let cfg = dir.write(
        "bad-app.json",
        r#"{"apps":{"apps":[{"app_id":"a","key":"k","secret":"s","colour":"red"}]}}"#,
    );
    let (code, _, err) = run_config(&dir, &[], &["config", "--config", &cfg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn config_refuses_what_start_refuses_with_exit_2() {
    let dir = TempDir::new("config-addr");
    for (flag, value) in [("--metrics-host", "localhost"), ("--host", "not-an-ip")] {
        for cmd in ["config", "start"] {
            let (code, out, err) = run_config(&dir, &APP_ENV, &[cmd, flag, value]);
            assert_eq!(code, 2, "{cmd} {flag} {value}: {err}");
            assert!(
                err.contains(flag) && err.contains("not an IP address"),
                "{cmd}: {err}"
            );
            assert!(!out.contains("listening"), "{cmd}: {out}");
        }
    }
}

#[test]
fn malformed_dotenv_lines_are_warned_about() {
    let dir = TempDir::new("dotenv-bad");
    dir.write(
        ".env",
        "REVERB_APP_ID=app-id\nTHIS IS NOT A VALID LINE\nREVERB_APP_KEY=app-key\n=novar\n\
         REVERB_APP_SECRET=app-secret\n",
    );
    let (code, _, err) = run_config(&dir, &[], &["config"]);
    assert_eq!(code, 0, "{err}");
    for line in [2, 4] {
        assert!(err.contains(&format!(".env line {line}: ")), "{err}");
    }
    assert!(err.contains("WARN"), "{err}");
}

/// `activity_timeout` from connection_established on `/app/<key>`.
fn activity_timeout(s: &Server, key: &str) -> u64 {
    let (_ws, v) = first_event(s, key);
    assert_eq!(v["event"], "pusher:connection_established", "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
    data["activity_timeout"].as_u64().unwrap()
}

#[test]
fn dotenv_in_the_working_directory_is_picked_up_by_start() {
    let dir = TempDir::new("dotenv");
    dir.write(
        ".env",
        "# Laravel's .env\n\
         APP_NAME=Laravel\n\
         REVERB_APP_ID=app-id\n\
         export REVERB_APP_KEY=\"dotenv-key\"\n\
         REVERB_APP_SECRET='app-secret'\n\
         REVERB_APP_ACTIVITY_TIMEOUT=77 # seconds\n",
    );
    let s = Server::start_in(Some(dir.path()), &[], &[], &[]);
    assert_eq!(activity_timeout(&s, "dotenv-key"), 77);
    let (_, v) = first_event(&s, APP_KEY);
    assert_eq!(
        v.to_string(),
        pusher_error(4001, "Application does not exist")
    );
    // the secret from .env signs API requests
    let body = r#"{"name":"e","channel":"c","data":"x"}"#;
    let q = sign_api_request(
        "POST",
        "/apps/app-id/events",
        &[],
        body.as_bytes(),
        "dotenv-key",
        APP_SECRET,
        unix_now(),
    );
    let r = s.request(
        "POST",
        &format!("/apps/app-id/events?{q}"),
        &[],
        body.as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));

    // the real environment wins over .env, variable by variable: its
    // credentials replace those of .env, and the .env activity timeout
    // stays until the environment sets one too
    let s = Server::start_in(Some(dir.path()), &APP_ENV, &[], &[]);
    assert_eq!(activity_timeout(&s, APP_KEY), 77);
    let (_, v) = first_event(&s, "dotenv-key");
    assert_eq!(v["event"], "pusher:error", "{v}");
    let mut env = APP_ENV.to_vec();
    env.push(("REVERB_APP_ACTIVITY_TIMEOUT", "5"));
    let s = Server::start_in(Some(dir.path()), &env, &[], &[]);
    assert_eq!(activity_timeout(&s, APP_KEY), 5);
}

#[test]
fn revurb_json_in_the_working_directory_is_read_without_config() {
    let dir = TempDir::new("json");
    dir.write(
        "revurb.json",
        &json!({
            "servers": { "reverb": { "max_request_size": 20000 } },
            "apps": { "apps": [
                { "app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "activity_timeout": 42 }
            ]},
        })
        .to_string(),
    );
    let s = Server::start_in(Some(dir.path()), &[], &[], &[]);
    assert_eq!(activity_timeout(&s, APP_KEY), 42);
    // the server option from the file applies: 15 KB is within 20 000
    let body = json!({ "name": "e", "channel": "c", "data": "x".repeat(15_000) }).to_string();
    let r = s.signed_post("/apps/app-id/events", &body);
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
    // `revurb config` says where things came from
    let (code, out, err) = run_config(&dir, &[], &["config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revurb.json"), "{out}");
    assert!(
        out.contains("servers.reverb.max_request_size = 20000    # file"),
        "{out}"
    );
}

/// Issue 11: every keep-alive answer re-arms the request deadline; the loop's
/// timer heap used to keep every old entry until it expired (hundreds of MB
/// from one pipelining client). Now it holds about one entry per connection.
#[test]
fn a_pipelining_keep_alive_client_does_not_grow_the_timer_heap() {
    let port = free_port();
    let s = Server::start(&[], &["--metrics-port", &port.to_string()]);
    let mut m = HttpConn::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    let gauges = |m: &mut HttpConn| {
        let samples = parse_metrics(&m.request("GET", "/metrics", &[], b"").text());
        let get = |k: &str| metric(&samples, k).unwrap_or_else(|| panic!("no {k}"));
        (get("revurb_timers"), get("process_resident_memory_bytes"))
    };
    let (_, rss_before) = gauges(&mut m);
    let mut c = s.http();
    let batch = b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n".repeat(500);
    for _ in 0..40 {
        c.send_raw(&batch);
        for i in 0..500 {
            let r = c
                .read_response()
                .unwrap_or_else(|e| panic!("answer {i}: {e}"));
            assert_eq!(r.status, 200);
        }
    }
    let (timers, rss_after) = gauges(&mut m);
    eprintln!(
        "20000 pipelined GET /up: revurb_timers {timers}, RSS {:.1} -> {:.1} MB",
        rss_before / 1e6,
        rss_after / 1e6
    );
    // two connections (the client and this metrics one) and the slack of
    // the compaction; before the fix one entry per answer (20 000)
    assert!(timers <= 100.0, "revurb_timers = {timers}");
}

// ---- webhook configuration ---------------------------------------------------------

/// An apps file: app A with `hooks` as its webhooks, and app B when asked.
fn apps_with_webhooks(hooks: Value, with_b: bool) -> String {
    let mut apps = vec![json!({
        "app_id": APP_ID, "key": APP_KEY, "secret": APP_SECRET,
        "webhook_delay": 1, "webhooks": hooks,
    })];
    if with_b {
        apps.push(json!({ "app_id": B_ID, "key": B_KEY, "secret": B_SECRET }));
    }
    json!({ "apps": { "apps": apps } }).to_string()
}

/// Webhooks that are valid but never fire in these tests (their filter
/// matches no channel used here); their secrets must never be printed.
fn quiet_webhooks() -> Value {
    json!([
        { "url": "http://127.0.0.1:9/hooks?token=hook-secret-in-query",
          "event_types": ["channel_occupied"],
          "filter": { "channel_name_starts_with": "never-" },
          "headers": { "Authorization": "Bearer hook-secret-in-header" } },
        { "url": "https://hooks.example.com/p", "event_types": ["member_added"],
          "filter": { "channel_name_ends_with": "-never" }, "batching": true }
    ])
}

/// The second webhook of `quiet_webhooks` with a third event type that does
/// not exist.
fn bad_webhooks() -> Value {
    let mut hooks = quiet_webhooks();
    hooks[1]["event_types"] = json!(["member_added", "member_removed", "x"]);
    hooks
}

const BAD_EVENT: &str = "apps.apps[0].webhooks[1].event_types[2]: unknown event type \"x\" \
                         (expected one of channel_occupied, channel_vacated, member_added, \
                         member_removed, client_event, cache_miss, subscription_count)";

#[test]
fn config_shows_webhooks_with_their_secrets_masked() {
    let dir = TempDir::new("webhooks-config");
    let cfg = dir.write("apps.json", &apps_with_webhooks(quiet_webhooks(), false));
    let (code, out, err) = run_config(&dir, &[], &["config", "--config", &cfg]);
    assert_eq!(code, 0, "{err}");
    for hidden in ["hook-secret-in-query", "hook-secret-in-header"] {
        assert!(!out.contains(hidden), "{hidden} shown:\n{out}");
        assert!(!err.contains(hidden), "{hidden} in stderr:\n{err}");
    }
    assert!(out.contains("webhook_delay = 1, webhooks = 2\n"), "{out}");
    assert!(
        out.contains(
            r#"    webhooks[0] = {"url":"http://127.0.0.1:9/hooks?token=****","event_types":["channel_occupied"],"filter":{"channel_name_starts_with":"never-"},"headers":{"Authorization":"****"},"batching":false}"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"    webhooks[1] = {"url":"https://hooks.example.com/p","#),
        "{out}"
    );

    // the environment's shorthand
    let mut env = APP_ENV.to_vec();
    env.push((
        "REVERB_APP_WEBHOOK_URL",
        "http://127.0.0.1:9/h?k=env-secret",
    ));
    let (code, out, err) = run_config(&dir, &env, &["config"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("env-secret"), "{out}");
    assert!(
        out.contains(r#"webhooks[0] = {"url":"http://127.0.0.1:9/h?k=****","event_types":["channel_occupied","channel_vacated","member_added","member_removed"],"batching":false}"#),
        "{out}"
    );
}

#[test]
fn a_bad_webhook_is_refused_with_exit_2_naming_the_app_and_the_field() {
    let dir = TempDir::new("webhooks-bad");
    let cfg = dir.write("apps.json", &apps_with_webhooks(bad_webhooks(), false));
    for cmd in ["config", "start"] {
        let (code, out, err) = run_config(&dir, &[], &[cmd, "--config", &cfg, "--port", "0"]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains(&format!("config file {cfg}: {BAD_EVENT}")),
            "{cmd}: {err}"
        );
        assert!(!out.contains("listening"), "{cmd}: {out}");
    }
    // the same from the environment, and both forms at once
    let hooks = bad_webhooks().to_string();
    let mut env = APP_ENV.to_vec();
    env.push(("REVERB_APP_WEBHOOKS", &hooks));
    let (code, _, err) = run_config(&dir, &env, &["start", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "REVERB_APP_WEBHOOKS (environment): [1].event_types[2]: unknown event type \"x\""
        ),
        "{err}"
    );
    env.push(("REVERB_APP_WEBHOOK_URL", "http://127.0.0.1:9/"));
    let (code, _, err) = run_config(&dir, &env, &["start", "--port", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("REVERB_APP_WEBHOOKS (environment): is set and so is REVERB_APP_WEBHOOK_URL (environment)"),
        "{err}"
    );
}

#[test]
fn sighup_with_a_bad_webhook_keeps_the_old_apps() {
    let dir = TempDir::new("webhooks-reload");
    let cfg = dir.write("apps.json", &apps_with_webhooks(quiet_webhooks(), false));
    let s = Server::start_with(&[], &[], &["--config", &cfg]);
    let (mut a, _) = s.pusher();
    a.subscribe("test-channel");

    // B added, but a webhook of A is bad: the whole reload is refused
    dir.write("apps.json", &apps_with_webhooks(bad_webhooks(), true));
    s.signal(libc::SIGHUP);
    wait_until(
        Duration::from_secs(5),
        || {
            format!(
                "a reload error naming the field in the log:\n{}",
                s.stderr_text()
            )
        },
        || {
            let log = s.stderr_text();
            (log.contains("reload failed") && log.contains(BAD_EVENT)).then_some(())
        },
    );
    let (_, v) = first_event(&s, B_KEY);
    assert_eq!(
        v.to_string(),
        pusher_error(4001, "Application does not exist")
    );
    s.trigger("test-channel", "still", "here");
    assert_eq!(
        a.recv_text(),
        r#"{"event":"still","data":"here","channel":"test-channel"}"#
    );
    assert!(
        !s.stderr_text().contains("hook-secret"),
        "{}",
        s.stderr_text()
    );

    // fixed: the reload goes through
    dir.write("apps.json", &apps_with_webhooks(quiet_webhooks(), true));
    s.signal(libc::SIGHUP);
    wait_for_app(&s, B_KEY, Duration::from_secs(5));
    a.sync();
}

/// `revurb upgrade` with TLS: a TLS 1.3 connection's record layer (its
/// traffic keys and sequence numbers) is handed over, so it stays up and
/// goes on both ways; a TLS 1.2 session (rustls keeps those) cannot be and
/// gets 4200 over the drain window; the new binary serves TLS on the same
/// listener.
#[test]
fn upgrade_keeps_tls_1_3_connections_and_closes_tls_1_2_ones_with_4200() {
    let c = test_cert();
    let dir = TempDir::new("upgrade-tls");
    let exe = dir.path().join("revurb");
    std::fs::copy(crate::support::bin(), &exe).expect("copy the binary");
    let pid_file = dir.file("revurb.pid");
    let env = [
        ("REVERB_TLS_CERT", c.cert.as_str()),
        ("REVERB_TLS_KEY", c.key.as_str()),
        ("REVERB_DRAIN_WINDOW", "1"),
    ];
    let s = Server::start_program(&exe, None, &APP_ENV, &env, &["--pid-file", &pid_file]);
    let mut kept: Vec<TlsClient> = (0..3)
        .map(|_| {
            let mut ws = TlsClient::connect(s.addr(), &c.der);
            assert_eq!(
                ws.tls.conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            ws.upgrade();
            ws.subscribe("secure-channel");
            ws
        })
        .collect();
    let mut old = TlsClient::connect_tls12(s.addr(), &c.der);
    old.upgrade();
    old.subscribe("secure-channel");
    // one client has half a frame on the wire at the switch
    let ping = client::text(r#"{"event":"pusher:ping"}"#);
    kept[0].send(&ping[..3]);

    let (status, out, err) = run_binary(&[], &["upgrade", "--pid-file", &pid_file]);
    assert_eq!(status.code(), Some(0), "{out}\n{err}\n{}", s.stderr_text());
    let v: Value = serde_json::from_str(&old.recv_text()).unwrap();
    assert_eq!(v["event"], "pusher:error", "{v}");
    assert!(v["data"].as_str().unwrap_or("").contains("4200"), "{v}");
    assert!(matches!(old.recv(), Msg::Close(4200, _)));
    let log = s.stderr_text();
    assert!(
        log.contains("upgrade: closing 1 TLS connections with 4200"),
        "{log}"
    );
    assert!(
        log.contains("upgrade: took over 3 connections (of 3)"),
        "{log}"
    );

    // the kept ones: the rest of the frame, then both ways as before
    kept[0].send(&ping[3..]);
    assert_eq!(kept[0].recv_text(), r#"{"event":"pusher:pong"}"#);
    let mut api = TlsClient::connect(s.addr(), &c.der);
    let body = json!({ "name": "after", "channel": "secure-channel", "data": "same session" });
    let r = api.signed_post("/apps/app-id/events", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    for ws in &mut kept {
        assert_eq!(
            ws.recv_text(),
            r#"{"event":"after","data":"same session","channel":"secure-channel"}"#
        );
        ws.send_text(r#"{"event":"pusher:ping"}"#);
        assert_eq!(ws.recv_text(), r#"{"event":"pusher:pong"}"#);
    }
    tls_round_trip(&s, &c, "after-upgrade");
}

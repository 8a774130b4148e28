//! Helpers for the integration tests: start the real `revurb` binary on port
//! 0, a tiny HTTP/1.1 client, a hand-rolled WebSocket client and signed API
//! requests. Every wait has a deadline.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use revurb::auth::{hmac_sha256_hex, sign_api_request};
use revurb::websocket::client;
use serde_json::Value;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

pub const APP_ID: &str = "app-id";
pub const APP_KEY: &str = "app-key";
pub const APP_SECRET: &str = "app-secret";

/// Default deadline for one read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The app variables every test server gets.
pub const APP_ENV: [(&str, &str); 3] = [
    ("REVERB_APP_ID", APP_ID),
    ("REVERB_APP_KEY", APP_KEY),
    ("REVERB_APP_SECRET", APP_SECRET),
];

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_revurb")
}

/// The bytes collected from a child's stderr, as text.
fn lossy(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ---- waiting ---------------------------------------------------------------

/// How often [`poll_until`] asks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `f` until it returns `Some`, or gives up with `None` once `deadline` has passed: the
/// one polling loop of the integration tests (no test sleeps to wait for something).
pub fn poll_until<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(POLL_EVERY);
    }
}

/// [`poll_until`], panicking with `what()` (called after the last try) past the deadline.
pub fn wait_until<T>(
    deadline: Duration,
    what: impl FnOnce() -> String,
    f: impl FnMut() -> Option<T>,
) -> T {
    match poll_until(deadline, f) {
        Some(v) => v,
        None => panic!("not within {deadline:?}: {}", what()),
    }
}

// ---- the server process ----------------------------------------------------

pub struct Server {
    child: Child,
    addr: SocketAddr,
    /// Prefix given with `--path` or `REVERB_SERVER_PATH` (informational).
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// The first line the server printed (`revurb: listening on ...`).
    start_line: String,
}

impl Server {
    /// `revurb start --host 127.0.0.1 --port 0 <args>` with the app variables
    /// plus `env` (and nothing inherited), waiting for the start line.
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Server {
        Self::start_with(&APP_ENV, env, args)
    }

    /// Like [`Server::start`] but with an explicit base environment.
    pub fn start_with(base: &[(&str, &str)], env: &[(&str, &str)], args: &[&str]) -> Server {
        Self::start_in(None, base, env, args)
    }

    /// Like [`Server::start_with`], run in working directory `dir` (where
    /// the server looks for `.env` and `revurb.json`).
    pub fn start_in(
        dir: Option<&Path>,
        base: &[(&str, &str)],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        Self::start_program(Path::new(bin()), dir, base, env, args)
    }

    /// Like [`Server::start_in`], running `program` (a copy of the binary
    /// that a test can replace, for `revurb upgrade`).
    pub fn start_program(
        program: &Path,
        dir: Option<&Path>,
        base: &[(&str, &str)],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        Self::start_command(Command::new(program), dir, base, env, args)
    }

    /// Like [`Server::start_in`], with `cmd` as the program (and its first
    /// arguments) instead of this build's binary: a revurb run through an
    /// emulator (`qemu-aarch64 BINARY`).
    pub fn start_command(
        mut cmd: Command,
        dir: Option<&Path>,
        base: &[(&str, &str)],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        if let Some(d) = dir {
            cmd.current_dir(d);
        }
        cmd.args(["start", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env_clear()
            // parallel servers would fight over the default metrics port
            .env("REVERB_METRICS_PORT", "0")
            .envs(base.iter().copied())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A copy of the binary written just now may be "busy" for a moment:
        // another test thread's child, forked before it execs, holds the
        // copy's write descriptor.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(20))
                }
                spawned => break spawned.expect("spawn revurb"),
            }
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = {
            let mut pipe = child.stderr.take().expect("stderr pipe");
            let sink = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        };
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout pipe");
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut first = String::new();
            let _ = lines.read_line(&mut first);
            let _ = tx.send(first);
            // keep draining so the child never blocks on a full pipe
            let mut rest = Vec::new();
            let _ = lines.read_to_end(&mut rest);
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            stderr,
            stderr_thread: Some(stderr_thread),
            status: None,
            start_line: String::new(),
        };
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => l,
            Err(_) => panic!(
                "no start line within 10 s; stderr:\n{}",
                server.stderr_text()
            ),
        };
        let port = parse_port(&line).unwrap_or_else(|| {
            let _ = server.child.kill();
            let _ = server.child.wait();
            // the child is gone: its stderr reader ends at EOF with everything collected
            if let Some(t) = server.stderr_thread.take() {
                let _ = t.join();
            }
            panic!("bad start line {line:?}; stderr:\n{}", server.stderr_text())
        });
        server.addr = SocketAddr::from(([127, 0, 0, 1], port));
        server.start_line = line.trim_end().to_string();
        server
    }

    pub fn start_line(&self) -> &str {
        &self.start_line
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_text(&self) -> String {
        lossy(&self.stderr)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid and a valid signal number
        // has no memory-safety requirements.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid());
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// Wait for the process to exit; panics (with stderr) after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let child = &mut self.child;
        let stderr = &self.stderr;
        let s = wait_until(
            deadline,
            || format!("revurb to exit; stderr:\n{}", lossy(stderr)),
            || child.try_wait().expect("try_wait"),
        );
        self.status = Some(s);
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        s
    }

    // ---- HTTP shortcuts ----

    pub fn http(&self) -> HttpConn {
        HttpConn::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.http().request(method, path, headers, body)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn signed_post(&self, path: &str, body: &str) -> Resp {
        self.http().signed_post(path, body)
    }

    pub fn signed_get(&self, path: &str, params: &[(&str, &str)]) -> Resp {
        self.http().signed_get(path, params)
    }

    /// Trigger `event` with `data` on one channel; asserts 200 `{}`.
    pub fn trigger(&self, channel: &str, event: &str, data: &str) {
        let body = serde_json::json!({ "name": event, "channel": channel, "data": data });
        let r = self.signed_post("/apps/app-id/events", &body.to_string());
        assert_eq!((r.status, r.text().as_str()), (200, "{}"), "trigger failed");
    }

    /// `GET /apps/app-id/connections` as a number.
    pub fn connections(&self) -> u64 {
        let r = self.signed_get("/apps/app-id/connections", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["connections"].as_u64().expect("connections")
    }

    /// Poll `/connections` until it equals `n` or the deadline passes.
    pub fn wait_connections(&self, n: u64, deadline: Duration) {
        let got = std::cell::Cell::new(None);
        wait_until(
            deadline,
            || format!("connections stayed {:?}, expected {n}", got.get()),
            || {
                got.set(Some(self.connections()));
                (got.get() == Some(n)).then_some(())
            },
        );
    }

    pub fn ws(&self, path: &str, headers: &[(&str, &str)]) -> Ws {
        ws_connect(self.addr, path, headers)
    }

    pub fn pusher(&self) -> (Ws, String) {
        connect_pusher(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        if thread::panicking() {
            eprintln!(
                "---- revurb stderr ({}) ----\n{}\n---- end of revurb stderr ----",
                self.addr,
                self.stderr_text()
            );
        }
    }
}

/// The port of `revurb: listening on 127.0.0.1:<port>[ (...)]`.
pub fn parse_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("revurb: listening on ")?;
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Run the binary to completion with the given environment (nothing
/// inherited); returns (status, stdout, stderr). Killed after 10 s.
pub fn run_binary(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String, String) {
    run_binary_in(None, env, args)
}

/// [`run_binary`] in working directory `dir`.
pub fn run_binary_in(
    dir: Option<&Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(bin());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn revurb");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let Some(status) = poll_until(Duration::from_secs(10), || child.try_wait().unwrap()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("revurb {args:?} did not exit within 10 s");
    };
    (status, t_out.join().unwrap(), t_err.join().unwrap())
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "revurb-it-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `dir/name` as a string (for command-line arguments).
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on right now (bound once and released).
/// A private CA and a `localhost` certificate it signed, for TLS tests.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8
    pub key_der: Vec<u8>,
}

/// A fresh [`TestCa`] (rcgen).
pub fn test_ca() -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    TestCa {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

// ---- HTTP ---------------------------------------------------------------------

/// The auth query string of a POST of `body` to `path`, signed now with the
/// test app's key and secret.
pub fn signed_post_query(path: &str, body: &str) -> String {
    sign_api_request(
        "POST",
        path,
        &[],
        body.as_bytes(),
        APP_KEY,
        APP_SECRET,
        unix_now(),
    )
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Parse a response head (status line and headers, without the blank line).
fn parse_head(head: &str) -> Resp {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert!(
        version.starts_with("HTTP/1."),
        "bad status line {status_line:?}"
    );
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Resp {
        status,
        headers,
        body: Vec::new(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A client connection that can carry several requests (keep-alive).
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Write a request with `Host` and `Content-Length` added.
    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.send(method, path, headers, body);
        self.read_response()
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"))
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            // a signal delivered to the test process (EINTR) is no answer
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Read the head only (for a 101); bytes after it stay buffered.
    pub fn read_head(&mut self) -> io::Result<Resp> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Ok(parse_head(&head));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a response head ({} bytes: {:?})",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Read one response with a `Content-Length` body (0 if absent).
    pub fn read_response(&mut self) -> io::Result<Resp> {
        let mut resp = self.read_head()?;
        let len: usize = resp
            .header("content-length")
            .map(|v| v.parse().expect("numeric Content-Length"))
            .unwrap_or(0);
        while self.buf.len() < len {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a body",
                ));
            }
        }
        resp.body = self.buf.drain(..len).collect();
        Ok(resp)
    }

    /// True when the server closes the connection (EOF or reset) within
    /// `deadline`; any bytes read meanwhile are kept.
    pub fn closed_within(&mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.fill() {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn signed_post(&mut self, path: &str, body: &str) -> Resp {
        self.signed_post_prefixed("", path, body)
    }

    /// Sign over `path` (no prefix) and send to `prefix + path`.
    pub fn signed_post_prefixed(&mut self, prefix: &str, path: &str, body: &str) -> Resp {
        let q = signed_post_query(path, body);
        self.request(
            "POST",
            &format!("{prefix}{path}?{q}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn signed_get(&mut self, path: &str, params: &[(&str, &str)]) -> Resp {
        let q = sign_api_request("GET", path, params, b"", APP_KEY, APP_SECRET, unix_now());
        self.request("GET", &format!("{path}?{q}"), &[], b"")
    }
}

// ---- WebSocket ------------------------------------------------------------------

/// The Sec-WebSocket-Key used by every test client and its RFC 6455 answer.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(u16, String),
}

#[derive(Debug)]
pub enum RecvError {
    Timeout,
    /// The server closed the TCP connection (or reset it).
    Eof,
}

pub struct Ws {
    pub conn: HttpConn,
    /// The response head of the upgrade (101 or an error).
    pub head: Resp,
}

/// Send an upgrade request for `path` and read the response head.
pub fn ws_connect(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> Ws {
    let mut conn = HttpConn::connect(addr);
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (n, v) in extra_headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.send_raw(req.as_bytes());
    let head = conn.read_head().expect("upgrade response");
    Ws { conn, head }
}

/// Connect to `/app/app-key` and wait for `connection_established`;
/// returns the socket and its socket id.
pub fn connect_pusher(addr: SocketAddr) -> (Ws, String) {
    Ws::pusher_at(addr, "/app/app-key")
}

impl Ws {
    /// Connect to `path` and wait for `connection_established`.
    pub fn pusher_at(addr: SocketAddr, path: &str) -> (Ws, String) {
        let mut ws = ws_connect(addr, path, &[]);
        assert_eq!(ws.head.status, 101, "upgrade refused: {:?}", ws.head);
        let sid = ws.established();
        (ws, sid)
    }

    pub fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let f = client::frame(opcode, fin, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.send_raw(&f);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.stream.write_all(bytes).expect("write frame");
    }

    pub fn send_text(&mut self, text: &str) {
        let f = client::text(text);
        self.send_raw(&f);
    }

    pub fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    pub fn send_ping(&mut self, payload: &[u8]) {
        self.send_frame(OpCode::Control(Control::Ping), true, payload);
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        self.send_frame(OpCode::Control(Control::Close), true, &p);
    }

    /// The next frame, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Msg, RecvError> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((op, payload, used)) = client::parse_server_frame(self.conn.buffered()) {
                self.conn.buf.drain(..used);
                return Ok(match op {
                    OpCode::Data(Data::Text) => {
                        Msg::Text(String::from_utf8(payload).unwrap_or_else(|e| {
                            let b = e.as_bytes();
                            panic!(
                                "the server sent a text frame that is not UTF-8 \
                                 ({} bytes, valid up to {}): {:?}",
                                b.len(),
                                e.utf8_error().valid_up_to(),
                                String::from_utf8_lossy(&b[..b.len().min(80)])
                            )
                        }))
                    }
                    OpCode::Data(Data::Binary) => Msg::Binary(payload),
                    OpCode::Control(Control::Ping) => Msg::Ping(payload),
                    OpCode::Control(Control::Pong) => Msg::Pong(payload),
                    OpCode::Control(Control::Close) => {
                        if payload.len() >= 2 {
                            let code = u16::from_be_bytes([payload[0], payload[1]]);
                            Msg::Close(code, String::from_utf8_lossy(&payload[2..]).into_owned())
                        } else {
                            Msg::Close(1005, String::new())
                        }
                    }
                    other => panic!("unexpected server opcode {other:?}"),
                });
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            self.conn.stream.set_read_timeout(Some(left)).unwrap();
            match self.conn.fill() {
                Ok(0) => return Err(RecvError::Eof),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvError::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(RecvError::Eof),
            }
        }
    }

    /// The next frame within [`READ_TIMEOUT`]; panics on timeout or EOF.
    pub fn recv(&mut self) -> Msg {
        self.recv_within(READ_TIMEOUT)
    }

    pub fn recv_within(&mut self, timeout: Duration) -> Msg {
        match self.next(timeout) {
            Ok(m) => m,
            Err(e) => panic!("no frame within {timeout:?}: {e:?}"),
        }
    }

    /// The next frame, which must be a text frame.
    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Msg::Text(t) => t,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub fn recv_json(&mut self) -> Value {
        let t = self.recv_text();
        serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"))
    }

    /// The next frame must be a close frame; returns (code, reason).
    pub fn recv_close(&mut self) -> (u16, String) {
        match self.recv() {
            Msg::Close(c, r) => (c, r),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// After a close frame: the server must close the TCP connection.
    pub fn expect_eof(&mut self, timeout: Duration) {
        match self.next(timeout) {
            Err(RecvError::Eof) => {}
            other => panic!("expected the server to close the socket, got {other:?}"),
        }
    }

    /// Read and discard raw bytes until the server closes the socket;
    /// returns how many bytes were read, or `None` if it stays open past
    /// `deadline`.
    pub fn drain_until_eof(&mut self, deadline: Duration) -> Option<usize> {
        let end = Instant::now() + deadline;
        let mut total = std::mem::take(&mut self.conn.buf).len();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.conn.stream.set_read_timeout(Some(left)).unwrap();
            match self.conn.stream.read(&mut chunk) {
                Ok(0) => return Some(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return Some(total),
            }
        }
    }

    /// Nothing must arrive within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        match self.next(wait) {
            Err(RecvError::Timeout) => {}
            other => panic!("expected nothing within {wait:?}, got {other:?}"),
        }
    }

    /// Read `connection_established` and return the socket id.
    pub fn established(&mut self) -> String {
        let v = self.recv_json();
        assert_eq!(v["event"], "pusher:connection_established", "{v}");
        let data: Value =
            serde_json::from_str(v["data"].as_str().expect("data is a string")).unwrap();
        data["socket_id"].as_str().expect("socket_id").to_string()
    }

    /// Subscribe to a public channel and wait for the exact success reply.
    pub fn subscribe(&mut self, channel: &str) {
        self.send_json(&serde_json::json!({
            "event": "pusher:subscribe",
            "data": { "channel": channel },
        }));
        assert_eq!(self.recv_text(), subscription_succeeded(channel));
    }

    /// Subscribe to a presence channel as `user_id`; returns the reply.
    pub fn subscribe_presence(&mut self, socket_id: &str, channel: &str, user_id: u64) -> Value {
        let channel_data = serde_json::json!({ "user_id": user_id }).to_string();
        let auth = channel_auth(socket_id, channel, Some(&channel_data));
        self.send_json(&serde_json::json!({
            "event": "pusher:subscribe",
            "data": { "channel": channel, "auth": auth, "channel_data": channel_data },
        }));
        let v = self.recv_json();
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
        v
    }

    /// Send a `pusher:ping` and wait for the pong: proves every earlier
    /// message from the server has been read.
    pub fn sync(&mut self) {
        self.send_text(r#"{"event":"pusher:ping"}"#);
        assert_eq!(self.recv_text(), r#"{"event":"pusher:pong"}"#);
    }

    pub fn shutdown(&self) {
        let _ = self.conn.stream.shutdown(Shutdown::Both);
    }
}

pub fn subscription_succeeded(channel: &str) -> String {
    format!(
        r#"{{"event":"pusher_internal:subscription_succeeded","data":"{{}}","channel":"{channel}"}}"#
    )
}

/// `pusher:error` exactly as the server sends it.
pub fn pusher_error(code: u16, message: &str) -> String {
    let data = serde_json::json!({ "code": code, "message": message }).to_string();
    serde_json::json!({ "event": "pusher:error", "data": data }).to_string()
}

/// `app-key:<hmac>` for a private or presence subscription.
pub fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let mut msg = format!("{socket_id}:{channel}");
    if let Some(d) = channel_data {
        msg.push(':');
        msg.push_str(d);
    }
    format!(
        "{APP_KEY}:{}",
        hmac_sha256_hex(APP_SECRET.as_bytes(), msg.as_bytes())
    )
}

//! Helpers for the cluster tests (horizontal scaling over Redis, issue 6): a
//! throw-away `redis-server` on a free port that can be stopped and started
//! again, raw RESP commands to it, nodes started with the scaling
//! environment, and waits that poll every node with a deadline.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use revurb::auth::hmac_sha256_hex;
use serde_json::{Value, json};

use crate::support::{
    APP_ENV, APP_KEY, APP_SECRET, Msg, RecvError, Resp, Server, TempDir, Ws, channel_auth,
    free_port, poll_until, wait_until,
};

/// `REVERB_SCALING_NODE_TIMEOUT` for every test node (the minimum): a node
/// not heard from for this long is dead.
pub const NODE_TIMEOUT_SECS: u64 = 2;

/// How long a set of fresh nodes may take to find each other over Redis.
pub const FORM_DEADLINE: Duration = Duration::from_secs(10);

/// How long a cluster-wide view (counts, members) may take to settle after
/// a change on one node.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(5);

/// Proving an absence (no duplicate, no echo): nothing within this long.
pub const SILENCE: Duration = Duration::from_millis(300);

/// A cluster-wide API query must answer within this long.
pub const QUERY_LIMIT: Duration = Duration::from_secs(1);

// ---- redis-server --------------------------------------------------------------

/// `redis-server` on `PATH`, if any.
pub fn redis_server_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
}

/// A fresh `redis-server`. The tests that call this carry
/// `#[cfg_attr(no_redis, ignore = ...)]`: build.rs sets `no_redis` when `redis-server` is not on
/// `PATH` (outside CI), so cargo reports them as ignored. Under `CI=true` they run, and a
/// missing `redis-server` fails them here.
pub fn start_redis() -> Redis {
    start_redis_with(Vec::new())
}

/// [`start_redis`] with more `redis-server` arguments.
pub fn start_redis_with(extra: Vec<String>) -> Redis {
    assert!(
        redis_server_bin().is_some(),
        "redis-server is not on PATH: install it (apt-get install redis-server; .ci/run does). \
         Outside CI, build.rs then marks the Redis tests ignored at the next build."
    );
    Redis::start_with(extra)
}

/// A `redis-server` that also listens for TLS, with a `localhost`
/// certificate from a private CA written to `dir`: the server, its
/// `rediss://localhost:PORT/0` URL and the CA file (for `SSL_CERT_FILE`).
pub fn start_redis_tls(dir: &TempDir) -> (Redis, String, String) {
    let ca = crate::support::test_ca();
    let (ca_file, cert, key) = (
        dir.write("ca.pem", &ca.ca_pem),
        dir.write("cert.pem", &ca.cert_pem),
        dir.write("key.pem", &ca.key_pem),
    );
    let tls_port = free_port();
    let args = [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let redis = start_redis_with(args);
    (redis, format!("rediss://localhost:{tls_port}/0"), ca_file)
}

/// A `redis-server` on 127.0.0.1 and a free port, persistence off, killed on
/// drop. Its log is printed when a test fails.
pub struct Redis {
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    log: Arc<Mutex<Vec<u8>>>,
    /// More `redis-server` arguments (TLS, ACL users), kept for restarts.
    extra: Vec<String>,
}

impl Redis {
    /// Start on a free port (a few tries, in case another test took it
    /// between choosing and binding) and wait until it answers PING.
    pub fn start() -> Redis {
        Redis::start_with(Vec::new())
    }

    /// [`Redis::start`] with more `redis-server` arguments.
    pub fn start_with(extra: Vec<String>) -> Redis {
        let bin = redis_server_bin().expect("redis-server on PATH");
        let mut redis = Redis {
            bin,
            port: 0,
            dir: TempDir::new("redis"),
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            extra,
        };
        for _ in 0..5 {
            redis.port = free_port();
            redis.spawn();
            if redis.wait_ready(Duration::from_secs(5)) {
                return redis;
            }
            redis.kill();
        }
        panic!(
            "redis-server did not come up on a free port; its log:\n{}",
            redis.log_text()
        );
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redis-server");
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = self.log.clone();
            thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
        self.child = Some(child);
    }

    /// True once PING answers PONG; false if the process exits or the
    /// deadline passes first.
    fn wait_ready(&mut self, deadline: Duration) -> bool {
        poll_until(deadline, || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return Some(false);
            }
            self.ping().then_some(true)
        })
        .unwrap_or(false)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// True when the server answers PING with PONG.
    pub fn ping(&self) -> bool {
        matches!(
            self.try_command(&[b"PING"]),
            Ok(Reply::Simple(ref s)) if s == "PONG"
        )
    }

    /// Kill the server (SIGKILL) and wait for it: every connection to it is
    /// dropped at once.
    pub fn stop(&mut self) {
        assert!(self.child.is_some(), "redis-server is not running");
        self.kill();
        assert!(!self.ping(), "redis-server still answers after stop()");
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the server: it keeps its sockets
    /// but answers nothing, like a Redis stuck on a slow disk or a long command.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("redis-server is running").id() as i32;
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) with our own child's pid and a valid signal number
        // has no memory-safety requirements.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Start again on the same port after [`Redis::stop`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        self.spawn();
        if !self.wait_ready(Duration::from_secs(5)) {
            self.kill();
            panic!(
                "redis-server did not come back on port {} within 5 s; its log:\n{}",
                self.port,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// One command on a fresh connection; panics if Redis does not answer.
    pub fn command(&self, args: &[&[u8]]) -> Reply {
        self.try_command(args).unwrap_or_else(|e| {
            panic!(
                "redis {:?}: {e}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            )
        })
    }

    pub fn try_command(&self, args: &[&[u8]]) -> io::Result<Reply> {
        let stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut conn = RespConn {
            reader: BufReader::new(stream),
        };
        conn.send(args)?;
        conn.read_reply()
    }

    /// `PUBLISH channel payload`; returns how many subscribers got it.
    pub fn publish(&self, channel: &str, payload: &[u8]) -> i64 {
        match self.command(&[b"PUBLISH", channel.as_bytes(), payload]) {
            Reply::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub fn numsub(&self, channel: &str) -> i64 {
        match self.command(&[b"PUBSUB", b"NUMSUB", channel.as_bytes()]) {
            Reply::Array(Some(items)) if items.len() == 2 => match items[1] {
                Reply::Int(n) => n,
                ref other => panic!("PUBSUB NUMSUB count is {other:?}"),
            },
            other => panic!("PUBSUB NUMSUB answered {other:?}"),
        }
    }

    /// A raw connection that has subscribed to `channel` (for watching what
    /// the nodes publish).
    pub fn subscriber(&self, channel: &str) -> RespConn {
        let stream =
            TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).expect("connect");
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut conn = RespConn {
            reader: BufReader::new(stream),
        };
        conn.send(&[b"SUBSCRIBE", channel.as_bytes()])
            .expect("SUBSCRIBE");
        let reply = conn
            .read_reply_within(Duration::from_secs(5))
            .expect("SUBSCRIBE reply");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"subscribe".to_vec())),
                Reply::Bulk(Some(channel.as_bytes().to_vec())),
                Reply::Int(1),
            ]))
        );
        conn
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- redis-server log (port {}) ----\n{}\n---- end of redis-server log ----",
                self.port,
                self.log_text()
            );
        }
    }
}

// ---- raw RESP ----------------------------------------------------------------------

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// `*N\r\n$len\r\narg\r\n...`
pub fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A plain blocking connection to Redis.
pub struct RespConn {
    reader: BufReader<TcpStream>,
}

impl RespConn {
    pub fn send(&mut self, args: &[&[u8]]) -> io::Result<()> {
        self.reader.get_mut().write_all(&resp_command(args))
    }

    /// The next reply within `timeout` (of silence before it starts).
    pub fn read_reply_within(&mut self, timeout: Duration) -> io::Result<Reply> {
        self.reader.get_mut().set_read_timeout(Some(timeout))?;
        self.read_reply()
    }

    /// The next pub/sub `message` as (channel, payload).
    pub fn next_message(&mut self, timeout: Duration) -> io::Result<(String, Vec<u8>)> {
        match self.read_reply_within(timeout)? {
            Reply::Array(Some(items)) => match &items[..] {
                [
                    Reply::Bulk(Some(kind)),
                    Reply::Bulk(Some(channel)),
                    Reply::Bulk(Some(payload)),
                ] if kind == b"message" => Ok((
                    String::from_utf8_lossy(channel).into_owned(),
                    payload.clone(),
                )),
                _ => Err(io::Error::other(format!("not a message: {items:?}"))),
            },
            other => Err(io::Error::other(format!("not a message: {other:?}"))),
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::other(format!(
                "RESP line without CRLF: {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(io::Error::other)
    }

    pub fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = |s: &str| {
            s.parse::<i64>()
                .map_err(|e| io::Error::other(format!("bad RESP integer {s:?}: {e}")))
        };
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(int(rest)?),
            "$" => {
                let n = int(rest)?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut body = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut body)?;
                    body.truncate(n as usize);
                    Reply::Bulk(Some(body))
                }
            }
            "*" => {
                let n = int(rest)?;
                if n < 0 {
                    Reply::Array(None)
                } else {
                    let mut items = Vec::with_capacity(n as usize);
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            }
            _ => return Err(io::Error::other(format!("bad RESP reply line {line:?}"))),
        })
    }
}

// ---- nodes ---------------------------------------------------------------------------

/// Borrowed `(name, value)` pairs of an owned environment list, as
/// `Server::start_with` and [`start_node`] take them.
pub fn str_pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The scaling variables for a node using `redis` (host and port form).
pub fn scaling_env(redis: &Redis) -> Vec<(String, String)> {
    vec![
        ("REVERB_SCALING_ENABLED".into(), "true".into()),
        ("REDIS_HOST".into(), "127.0.0.1".into()),
        ("REDIS_PORT".into(), redis.port().to_string()),
        (
            "REVERB_SCALING_NODE_TIMEOUT".into(),
            NODE_TIMEOUT_SECS.to_string(),
        ),
    ]
}

/// `revurb start` with the app, the scaling variables and `extra` (which
/// may override them). Returns at the start line: Redis may not be
/// connected yet (see [`form_cluster`]).
pub fn start_node(redis: &Redis, extra: &[(&str, &str)]) -> Server {
    let env = scaling_env(redis);
    let mut all = str_pairs(&env);
    all.extend_from_slice(extra);
    Server::start_with(&APP_ENV, &all, &[])
}

/// `n` nodes on `redis` that see each other, with no client connected.
pub fn start_cluster(redis: &Redis, n: usize) -> Vec<Server> {
    start_cluster_with(redis, n, &[])
}

pub fn start_cluster_with(redis: &Redis, n: usize, extra: &[(&str, &str)]) -> Vec<Server> {
    let nodes: Vec<Server> = (0..n).map(|_| start_node(redis, extra)).collect();
    form_cluster(&nodes);
    nodes
}

/// Wait until fresh nodes (no clients yet) see each other: one probe
/// connection per node, polled until every node counts all of them (proof
/// that state flows both ways over Redis); then the probes are closed and
/// every node counts 0 again.
pub fn form_cluster(nodes: &[Server]) {
    let probes: Vec<Ws> = nodes.iter().map(|n| n.pusher().0).collect();
    wait_connections_everywhere(nodes, nodes.len() as u64, FORM_DEADLINE);
    for ws in probes {
        close_ws(ws);
    }
    wait_connections_everywhere(nodes, 0, SYNC_DEADLINE);
}

/// Poll until `value(node)` equals `want` on every node; the panic message
/// shows what each node said last.
pub fn wait_everywhere<T: PartialEq + std::fmt::Debug>(
    nodes: &[Server],
    deadline: Duration,
    what: &str,
    want: T,
    value: impl Fn(&Server) -> T,
) {
    let last: Mutex<Vec<String>> = Mutex::new(Vec::new());
    wait_until(
        deadline,
        || {
            format!(
                "{what}: want {want:?} on every node, last answers {:?}",
                last.lock().unwrap()
            )
        },
        || {
            let got: Vec<T> = nodes.iter().map(&value).collect();
            let done = got.iter().all(|g| *g == want);
            *last.lock().unwrap() = got.iter().map(|g| format!("{g:?}")).collect();
            done.then_some(())
        },
    );
}

/// Poll until `GET /connections` is `n` on every node.
pub fn wait_connections_everywhere(nodes: &[Server], n: u64, deadline: Duration) {
    wait_everywhere(nodes, deadline, "GET /connections", n, Server::connections);
}

/// A signed GET that must answer within [`QUERY_LIMIT`].
pub fn timed_get(node: &Server, path: &str, params: &[(&str, &str)]) -> Resp {
    let started = Instant::now();
    let r = node.signed_get(path, params);
    let took = started.elapsed();
    assert!(
        took < QUERY_LIMIT,
        "GET {path} {params:?} on {} took {took:?}",
        node.addr()
    );
    r
}

/// `GET path` as JSON (status 200 required), answered within [`QUERY_LIMIT`].
pub fn timed_json(node: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let r = timed_get(node, path, params);
    assert_eq!(r.status, 200, "GET {path} {params:?}: {}", r.text());
    r.json()
}

/// The sorted user ids (as JSON text) of `GET /channels/{channel}/users`,
/// or `None` on a 404 (no such channel).
pub fn user_ids(node: &Server, channel: &str) -> Option<Vec<String>> {
    let r = node.signed_get(&format!("/apps/app-id/channels/{channel}/users"), &[]);
    if r.status == 404 {
        return None;
    }
    assert_eq!(r.status, 200, "GET users of {channel}: {}", r.text());
    let v = r.json();
    let users = v["users"].as_array().unwrap_or_else(|| panic!("{v}"));
    let mut ids: Vec<String> = users.iter().map(|u| u["id"].to_string()).collect();
    ids.sort();
    Some(ids)
}

/// Poll until `/users` of `channel` lists exactly `ids` (numeric user ids,
/// each once) on every node.
pub fn wait_users_everywhere(nodes: &[Server], channel: &str, ids: &[u64], deadline: Duration) {
    let mut want: Vec<String> = ids.iter().map(u64::to_string).collect();
    want.sort();
    let want = if want.is_empty() { None } else { Some(want) };
    wait_everywhere(nodes, deadline, &format!("users of {channel}"), want, |n| {
        user_ids(n, channel)
    });
}

/// Text of `node`'s stderr after byte `offset` (see [`Server::stderr_text`]).
pub fn stderr_since(node: &Server, offset: usize) -> String {
    let all = node.stderr_text();
    all.get(offset..).unwrap_or(&all).to_string()
}

/// Wait until `node`'s stderr after `offset` contains `needle`
/// (case-insensitive).
pub fn wait_stderr(node: &Server, offset: usize, needle: &str, deadline: Duration) {
    let needle = needle.to_ascii_lowercase();
    wait_until(
        deadline,
        || {
            format!(
                "stderr of {} to mention {needle:?}; it says:\n{}",
                node.addr(),
                stderr_since(node, offset)
            )
        },
        || {
            stderr_since(node, offset)
                .to_ascii_lowercase()
                .contains(&needle)
                .then_some(())
        },
    );
}

// ---- clients -------------------------------------------------------------------------

/// Close a client cleanly: close frame, the server's close, then EOF.
/// Frames that arrive before the close are ignored.
pub fn close_ws(mut ws: Ws) {
    ws.send_close(1000, "");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match ws.next(left) {
            Ok(Msg::Close(..)) => break,
            Ok(_) => {}
            Err(RecvError::Eof) => return,
            Err(RecvError::Timeout) => panic!("no close frame within 5 s"),
        }
    }
    ws.expect_eof(Duration::from_secs(3));
}

/// Subscribe to a private channel with a valid signature.
pub fn subscribe_private(ws: &mut Ws, socket_id: &str, channel: &str) {
    let auth = channel_auth(socket_id, channel, None);
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth },
    }));
    assert_eq!(
        ws.recv_text(),
        crate::support::subscription_succeeded(channel)
    );
}

/// The `channel_data` of a presence member with a name.
pub fn member_data(user_id: u64, name: &str) -> Value {
    json!({ "user_id": user_id, "user_info": { "name": name } })
}

/// Join a presence channel as `user_id` with `user_info` `{"name": name}`;
/// returns the `presence` object of `subscription_succeeded`.
pub fn join_presence(
    ws: &mut Ws,
    socket_id: &str,
    channel: &str,
    user_id: u64,
    name: &str,
) -> Value {
    let channel_data = member_data(user_id, name).to_string();
    let auth = channel_auth(socket_id, channel, Some(&channel_data));
    ws.send_json(&json!({
        "event": "pusher:subscribe",
        "data": { "channel": channel, "auth": auth, "channel_data": channel_data },
    }));
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher_internal:subscription_succeeded", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().expect("data is a string"))
        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {v}"));
    data["presence"].clone()
}

/// The sorted ids of a `presence` object, as JSON text.
pub fn presence_ids(presence: &Value) -> Vec<String> {
    let mut ids: Vec<String> = presence["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids: {presence}"))
        .iter()
        .map(Value::to_string)
        .collect();
    ids.sort();
    ids
}

/// The next frame must be `member_added` for `user_id` with its name.
pub fn expect_member_added(ws: &mut Ws, channel: &str, user_id: u64, name: &str) {
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher_internal:member_added", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().expect("data is a string"))
        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {v}"));
    assert_eq!(data, member_data(user_id, name), "{v}");
}

/// The next frame (within `timeout`) must be `member_removed` for `user_id`.
pub fn expect_member_removed_within(ws: &mut Ws, channel: &str, user_id: u64, timeout: Duration) {
    let t = match ws.recv_within(timeout) {
        Msg::Text(t) => t,
        other => panic!("expected member_removed, got {other:?}"),
    };
    let v: Value = serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
    assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
    assert_eq!(v["channel"], channel, "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().expect("data is a string"))
        .unwrap_or_else(|e| panic!("data is not JSON ({e}): {v}"));
    assert_eq!(data, json!({ "user_id": user_id }), "{v}");
}

pub fn expect_member_removed(ws: &mut Ws, channel: &str, user_id: u64) {
    expect_member_removed_within(ws, channel, user_id, crate::support::READ_TIMEOUT);
}

/// `pusher:signin` as `user_data` (which must carry an `id`), signed with
/// the app secret; waits for `signin_success`.
pub fn signin(ws: &mut Ws, socket_id: &str, user_data: &str) {
    let msg = format!("{socket_id}::user::{user_data}");
    let auth = format!(
        "{APP_KEY}:{}",
        hmac_sha256_hex(APP_SECRET.as_bytes(), msg.as_bytes())
    );
    ws.send_json(&json!({
        "event": "pusher:signin",
        "data": { "auth": auth, "user_data": user_data },
    }));
    let v = ws.recv_json();
    assert_eq!(v["event"], "pusher:signin_success", "{v}");
    let data: Value = serde_json::from_str(v["data"].as_str().expect("data is a string")).unwrap();
    assert_eq!(data["user_data"], user_data, "{v}");
}

/// A public event exactly as subscribers get it.
pub fn event_text(event: &str, data: &str, channel: &str) -> String {
    json!({ "event": event, "data": data, "channel": channel }).to_string()
}

/// The next frame, within `timeout`, must be the text frame `text`; `what`
/// says in a failure which message was awaited.
pub fn expect_text_within(ws: &mut Ws, text: &str, timeout: Duration, what: &str) {
    match ws.next(timeout) {
        Ok(Msg::Text(t)) => assert_eq!(t, text, "{what}"),
        other => panic!("{what}: expected {text} within {timeout:?}, got {other:?}"),
    }
}

/// The next frame must be `text`, and nothing may follow within [`SILENCE`]
/// (no duplicate).
pub fn expect_once(ws: &mut Ws, text: &str) {
    assert_eq!(ws.recv_text(), text);
    ws.expect_silence(SILENCE);
}

//! `cluster` mode: a redis-server and `--nodes` revurb nodes scaling over it.
//!
//! Node 1 takes the publishes (HTTP API), the subscribers sit on nodes 2..N, so every
//! delivery measured went node 1 → Redis → another node. With `--local-too` node 1 gets
//! subscribers as well, and their (same-node) deliveries are reported apart.
//!
//! Every process started here is stopped by a Drop guard, on error paths too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::engine::{ConnPlan, WsState};
use crate::stats::{latency_summary, read_cpu_secs, read_rss, round3};
use crate::{Opts, Run, Server, load_phase, merge, on_path, pin, pinned_command, spawn_server};

/// How long redis-server may take to answer PING.
const REDIS_START: Duration = Duration::from_secs(10);
/// Attempts at starting redis-server (another process may take the free port first).
const REDIS_ATTEMPTS: usize = 3;
/// Between two rounds of connection counts while the cluster forms.
const FORM_POLL: Duration = Duration::from_millis(200);
/// Longest wait for one HTTP answer while the cluster forms.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Inherited variables that would point the nodes at another Redis (REDIS_URL wins over
/// REDIS_HOST/REDIS_PORT); removed unless `--env` sets them.
const REDIS_INHERITED: [&str; 5] = [
    "REDIS_URL",
    "REDIS_SCHEME",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_DB",
];

// ---- redis-server ------------------------------------------------------------------------

/// A redis-server started on a free loopback port; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub pid: u32,
    /// Its stdout and stderr (the log), removed on drop.
    log: PathBuf,
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Redis {
    /// The last lines of its log, on one line.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        match tail_lines(&text, 6) {
            t if t.is_empty() => "(it printed nothing)".into(),
            t => t,
        }
    }

    pub fn alive(&self) -> bool {
        read_rss(self.pid).is_some()
    }
}

/// The last `n` non-empty lines of `text`, joined with ` | `.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Whether `program` (a path, or a name looked up on PATH) exists.
fn check_program(program: &str) -> Result<(), String> {
    if program.contains('/') {
        if Path::new(program).is_file() {
            return Ok(());
        }
        return Err(format!(
            "redis-server not found at {program} (give --redis-server PATH)"
        ));
    }
    if on_path(program) {
        return Ok(());
    }
    Err(format!(
        "{program} not found on PATH: install Redis (e.g. apt-get install redis-server) \
         or give --redis-server PATH"
    ))
}

/// Start `--redis-server` on a free port without persistence, and wait for its PONG.
pub fn start_redis(o: &Opts) -> Result<Redis, String> {
    check_program(&o.redis_server)?;
    let mut last = String::new();
    for _ in 0..REDIS_ATTEMPTS {
        let port = free_port()?;
        let log =
            std::env::temp_dir().join(format!("loadgen-redis-{}-{port}.log", std::process::id()));
        let file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err_file = file
            .try_clone()
            .map_err(|e| format!("creating {}: {e}", log.display()))?;
        let dir = std::env::temp_dir();
        let (mut cmd, pin_later) = pinned_command(&o.redis_server, o.server_cpu);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Nothing is written there (no persistence), but never into the caller's cwd.
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err_file));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&log);
                return Err(format!("cannot start {}: {e}", o.redis_server));
            }
        };
        let mut redis = Redis {
            pid: child.id(),
            child: Some(child),
            port,
            log,
        };
        if let Some(cpu) = pin_later {
            pin(redis.pid, cpu)
                .map_err(|e| format!("cannot pin redis-server to CPU {cpu}: {e}"))?;
        }
        match wait_pong(&mut redis, Instant::now() + REDIS_START) {
            Ok(()) => return Ok(redis),
            Err(e) => {
                let port_taken = e.contains("in use");
                last = e;
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Poll redis with PING until it answers PONG, exits, or `until` passes.
fn wait_pong(redis: &mut Redis, until: Instant) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], redis.port));
    loop {
        if let Some(c) = redis.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            redis.child = None;
            return Err(format!(
                "redis-server exited ({status}) before answering PING on {addr}: {}",
                redis.log_tail()
            ));
        }
        let now = Instant::now();
        let last = match ping(addr, HTTP_TIMEOUT.min(until.saturating_duration_since(now))) {
            Ok(reply) if is_pong(&reply) => return Ok(()),
            Ok(reply) => format!("reply {:?}", String::from_utf8_lossy(&reply)),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= until {
            return Err(format!(
                "redis-server did not answer PING on {addr} within {} s ({last}): {}",
                REDIS_START.as_secs(),
                redis.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One RESP `PING`; returns the first reply line (with its CRLF).
fn ping(addr: SocketAddr, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let timeout = timeout.max(Duration::from_millis(50));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.ends_with(b"\r\n") && reply.len() < 4096 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

fn is_pong(reply: &[u8]) -> bool {
    reply == b"+PONG\r\n"
}

// ---- the nodes ---------------------------------------------------------------------------

/// Start `--nodes` revurb nodes scaling over the redis-server on `redis_port`.
fn spawn_nodes(o: &Opts, redis_port: u16) -> Result<Vec<Server>, String> {
    let port = redis_port.to_string();
    let mut env: Vec<(&str, Option<&str>)> = vec![
        ("REVERB_SCALING_ENABLED", Some("true")),
        ("REDIS_HOST", Some("127.0.0.1")),
        ("REDIS_PORT", Some(&port)),
        ("REVERB_METRICS_PORT", Some("0")),
    ];
    env.extend(REDIS_INHERITED.iter().map(|k| (*k, None)));
    let mut nodes = Vec::with_capacity(o.nodes);
    for k in 1..=o.nodes {
        nodes.push(spawn_server(o, &env).map_err(|e| format!("node {k}: {e}"))?);
    }
    Ok(nodes)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A blocking `GET target` (path and query) to `addr`, answered by `until` at the latest
/// (and within [`HTTP_TIMEOUT`]): (status, body).
fn http_get(addr: SocketAddr, target: &str, until: Instant) -> Result<(u16, Vec<u8>), String> {
    let timeout = HTTP_TIMEOUT
        .min(until.saturating_duration_since(Instant::now()))
        .max(Duration::from_millis(100));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(h) = crate::proto::parse_http_head(&buf)?
            && let Some(len) = h.content_length
            && buf.len() >= h.head_len + len
        {
            return Ok((h.status, buf[h.head_len..h.head_len + len].to_vec()));
        }
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no answer within {} ms", timeout.as_millis()));
            }
            Err(e) => return Err(format!("read: {e}")),
        }
        if buf.len() > 1 << 20 {
            return Err("answer over 1 MiB".into());
        }
    }
    match crate::proto::parse_http_head(&buf)? {
        // Closed without Content-Length: the body is the rest.
        Some(h) if h.content_length.is_none() => Ok((h.status, buf[h.head_len..].to_vec())),
        _ => Err("connection closed before a complete answer".into()),
    }
}

/// The connection count a node reports (`GET /apps/<app>/connections`, signed).
fn connection_count(o: &Opts, addr: SocketAddr, until: Instant) -> Result<u64, String> {
    let path = format!("/apps/{}/connections", o.app_id);
    let query =
        revurb::auth::sign_api_request("GET", &path, &[], b"", &o.app_key, &o.secret, unix_now());
    let (status, body) = http_get(addr, &format!("{path}?{query}"), until)?;
    let text = String::from_utf8_lossy(&body);
    let short: String = text.chars().take(200).collect();
    if status != 200 {
        return Err(format!("HTTP {status} {short}"));
    }
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["connections"].as_u64())
        .ok_or_else(|| format!("no connection count in {short:?}"))
}

/// `None` when every node reports `total` connections; otherwise what is missing, as
/// "node 2 reports 1 connection of 3, node 3: connect: ...".
fn formation_gap(counts: &[Result<u64, String>], total: u64) -> Option<String> {
    let gaps: Vec<String> = counts
        .iter()
        .enumerate()
        .filter_map(|(k, c)| match c {
            Ok(n) if *n == total => None,
            Ok(n) => Some(format!(
                "node {} reports {n} connection{} of {total}",
                k + 1,
                if *n == 1 { "" } else { "s" }
            )),
            Err(e) => Some(format!("node {}: {e}", k + 1)),
        })
        .collect();
    (!gaps.is_empty()).then(|| gaps.join(", "))
}

/// A hint for a cluster that did not form.
fn formation_hint(counts: &[Result<u64, String>], redis_port: u16) -> String {
    if counts.len() > 1 && counts.iter().all(|c| c == &Ok(1)) {
        format!(
            " (every node counts only its own connection: the nodes share nothing through \
             the redis-server on 127.0.0.1:{redis_port}; is scaling implemented and enabled \
             in this revurb build?)"
        )
    } else {
        format!(" (redis-server on 127.0.0.1:{redis_port})")
    }
}

/// Seconds for messages: `15`, `2.5`.
fn secs(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{}", v as u64)
    } else {
        format!("{v}")
    }
}

/// Open one WebSocket per node, then poll every node's connection count until each
/// reports them all; returns the seconds this took.
fn wait_formed(r: &Run, nodes: &[SocketAddr], redis_port: u16) -> Result<f64, String> {
    let o = r.o;
    let t0 = Instant::now();
    let until = (t0 + Duration::from_secs_f64(o.form_timeout)).min(r.deadline);
    let within = format!("within {} s", secs(o.form_timeout));
    let mut b = r.bench(nodes[0], 1, false)?;
    b.set_targets(nodes.to_vec(), (0..nodes.len()).collect());
    b.conn_plan = Some(ConnPlan {
        start: t0,
        rate: o.conn_rate,
        count: nodes.len(),
        issued: 0,
        groups: 1,
        slow: false,
        max_pending: o.max_pending,
    });
    b.run_until(until, |b| {
        b.conn_plan.as_ref().is_some_and(|p| p.issued == p.count) && b.pending == 0
    });
    b.conn_plan = None;
    let failed: Vec<String> =
        b.ws.iter()
            .filter(|w| w.state != WsState::Subscribed)
            .map(|w| format!("node {}", w.target + 1))
            .collect();
    if !failed.is_empty() || b.ws.len() < nodes.len() {
        return Err(format!(
            "cluster did not form {within}: no WebSocket subscribed on {} ({})",
            if failed.is_empty() {
                "every node".to_string()
            } else {
                failed.join(", ")
            },
            b.errors.join("; ")
        ));
    }
    let total = nodes.len() as u64;
    loop {
        let counts: Vec<Result<u64, String>> = nodes
            .iter()
            .map(|&a| connection_count(o, a, until))
            .collect();
        let Some(gap) = formation_gap(&counts, total) else {
            return Ok(t0.elapsed().as_secs_f64());
        };
        if Instant::now() >= until {
            return Err(format!(
                "cluster did not form {within}: {gap}{}",
                formation_hint(&counts, redis_port)
            ));
        }
        // Keep the clients served (pings) while waiting.
        b.run_until((Instant::now() + FORM_POLL).min(until), |_| false);
    }
}

// ---- the mode ----------------------------------------------------------------------------

/// Run the cluster benchmark; every process is stopped before this returns.
pub fn run(o: &Opts, deadline: Instant) -> Result<Value, String> {
    // Declared before the nodes, so dropped after them: the nodes stop first.
    let redis = start_redis(o)?;
    let nodes = spawn_nodes(o, redis.port)?;
    // Let the nodes finish starting before the idle readings.
    std::thread::sleep(Duration::from_millis(200));
    let addrs: Vec<SocketAddr> = nodes.iter().map(|s| s.addr).collect();
    let pids: Vec<u32> = nodes.iter().filter_map(|s| s.pid).collect();
    let rss_idle: Vec<Option<u64>> = pids.iter().map(|&p| read_rss(p)).collect();
    let r = Run {
        o,
        tls: None,
        pid: pids.first().copied(),
        others: pids[1..].to_vec(),
        deadline,
    };
    let formed_s = wait_formed(&r, &addrs, redis.port)?;
    eprintln!(
        "loadgen: cluster of {} node{} formed in {:.3} s (redis-server on 127.0.0.1:{})",
        o.nodes,
        if o.nodes == 1 { "" } else { "s" },
        formed_s,
        redis.port
    );

    let first_sub = if o.local_too { 0 } else { 1 };
    let mut b = r.bench(addrs[0], o.channels, false)?;
    b.set_targets(addrs.clone(), (first_sub..o.nodes).collect());
    let (ready, subscribed) = r.open_publishers_and_subscribers(&mut b);
    let subs_on = |b: &crate::engine::Bench, k: usize| {
        b.ws.iter()
            .filter(|w| w.target == k && w.sub_after.is_some())
            .count()
    };
    let subs_per_node: Vec<usize> = (0..o.nodes).map(|k| subs_on(&b, k)).collect();
    let node_cpu0: Vec<Option<f64>> = pids.iter().map(|&p| read_cpu_secs(p)).collect();
    let redis_cpu0 = read_cpu_secs(redis.pid);
    let mut rep = json!({
        "nodes": o.nodes,
        "local_too": o.local_too,
        "cluster_formed_s": round3(formed_s),
        "subscribers": subscribed,
        "subscribers_cross_node": subs_per_node[1..].iter().sum::<usize>(),
        "subscribers_local": subs_per_node[0],
        "channels": o.channels,
        "rate": o.rate,
        "duration_s": o.duration,
        "payload": o.payload,
        "publishers": o.publishers,
    });
    // Publishes at --rate through node 1; its server_cpu_s sums every node.
    merge(&mut rep, load_phase(&r, &mut b, Some(o.rate), o.channels));
    let node_cpu1: Vec<Option<f64>> = pids.iter().map(|&p| read_cpu_secs(p)).collect();
    let redis_cpu1 = read_cpu_secs(redis.pid);
    let delta = |a: Option<f64>, z: Option<f64>| match (a, z) {
        (Some(a), Some(z)) => Some(round3(z - a)),
        _ => None,
    };

    let loss = b.loss_report_where(|w| w.target != 0);
    let loss_local = b.loss_report_where(|w| w.target == 0);
    let mut cross: Vec<u64> = b.lat_by_target[1..].concat();
    let deliveries_cross = cross.len();
    let latency = latency_summary(&mut cross);
    let mut servers = Vec::new();
    let mut all_alive = true;
    for (k, node) in nodes.iter().enumerate() {
        let alive = node.pid.is_some_and(|p| read_rss(p).is_some());
        all_alive &= alive;
        let role = match (k, o.local_too) {
            (0, false) => "publish",
            (0, true) => "publish+subscribe",
            _ => "subscribe",
        };
        servers.push(json!({
            "node": k + 1,
            "addr": node.addr.to_string(),
            "pid": node.pid,
            "role": role,
            "subscribers": subs_per_node[k],
            "rss_idle_bytes": rss_idle.get(k).copied().flatten(),
            "rss_end_bytes": node.pid.and_then(read_rss),
            "cpu_s": delta(node_cpu0[k], node_cpu1[k]),
            "alive_at_end": alive,
            "latency_ms": (subs_per_node[k] > 0).then(|| latency_summary(&mut b.lat_by_target[k])),
        }));
    }
    let redis_alive = redis.alive();
    let clean = |l: &Value| l["lost"] == 0 && l["duplicates"] == 0;
    rep["ok"] = json!(
        ready && all_alive && redis_alive && clean(&loss) && (!o.local_too || clean(&loss_local))
    );
    rep["deliveries_cross_node"] = json!(deliveries_cross);
    rep["loss"] = loss;
    rep["latency_ms"] = latency;
    if o.local_too {
        rep["loss_local"] = loss_local;
        rep["latency_ms_local"] = latency_summary(&mut b.lat_by_target[0]);
    }
    rep["api_latency_ms"] = latency_summary(&mut b.req_lat);
    rep["subscribers_closed"] = json!(subscribed - b.subscribed().0);
    rep["redis_cpu_s"] = json!(delta(redis_cpu0, redis_cpu1));
    rep["servers"] = json!(servers);
    rep["redis"] = json!({
        "addr": format!("127.0.0.1:{}", redis.port),
        "pid": redis.pid,
        "program": o.redis_server,
        "alive_at_end": redis_alive,
    });
    rep["error_count"] = json!(b.error_count);
    rep["errors"] = json!(b.errors);
    drop(b);
    drop(nodes);
    drop(redis);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formation_messages() {
        let ok3: Vec<Result<u64, String>> = vec![Ok(3), Ok(3), Ok(3)];
        assert_eq!(formation_gap(&ok3, 3), None);
        let alone: Vec<Result<u64, String>> = vec![Ok(1), Ok(1), Ok(1)];
        assert_eq!(
            formation_gap(&alone, 3).unwrap(),
            "node 1 reports 1 connection of 3, node 2 reports 1 connection of 3, \
             node 3 reports 1 connection of 3"
        );
        assert!(formation_hint(&alone, 7000).contains("only its own connection"));
        assert!(formation_hint(&alone, 7000).contains("127.0.0.1:7000"));
        let mixed: Vec<Result<u64, String>> = vec![Ok(3), Ok(2), Err("HTTP 500 x".into())];
        assert_eq!(
            formation_gap(&mixed, 3).unwrap(),
            "node 2 reports 2 connections of 3, node 3: HTTP 500 x"
        );
        assert!(!formation_hint(&mixed, 7000).contains("only its own"));
        assert_eq!(formation_gap(&[Ok(1)], 1), None);
        assert_eq!(secs(15.0), "15");
        assert_eq!(secs(2.5), "2.5");
    }

    #[test]
    fn pong_and_log_tail() {
        assert!(is_pong(b"+PONG\r\n"));
        assert!(!is_pong(b"-LOADING Redis is loading\r\n"));
        assert!(!is_pong(b""));
        assert_eq!(tail_lines("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail_lines("a\n", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn missing_redis_is_a_clear_error() {
        let e = check_program("/nonexistent/redis-server").unwrap_err();
        assert!(e.contains("--redis-server"), "{e}");
        let e = check_program("no-such-redis-server-here").unwrap_err();
        assert!(e.contains("not found on PATH"), "{e}");
    }

    /// A one-shot HTTP server answering `reply` to the first request.
    fn answer_once(reply: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&req);
            assert!(text.starts_with("GET /apps/app-id/connections?auth_key=app-key&"));
            s.write_all(reply.as_bytes()).unwrap();
        });
        addr
    }

    #[test]
    fn connection_counts_over_http() {
        let o = crate::parse_args(&["cluster", "--spawn", "x"].map(String::from)).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let body = "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"connections\":3}";
        assert_eq!(connection_count(&o, answer_once(body), until), Ok(3));
        let no_len = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"connections\":1}";
        assert_eq!(connection_count(&o, answer_once(no_len), until), Ok(1));
        let denied = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}";
        let e = connection_count(&o, answer_once(denied), until).unwrap_err();
        assert!(e.starts_with("HTTP 401"), "{e}");
    }

    #[test]
    fn redis_starts_answers_and_stops() {
        if !on_path("redis-server") {
            eprintln!("redis-server not on PATH: skipped");
            return;
        }
        let o = crate::parse_args(&["cluster", "--spawn", "x"].map(String::from)).unwrap();
        let redis = start_redis(&o).unwrap();
        let (port, pid, log) = (redis.port, redis.pid, redis.log.clone());
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(is_pong(&ping(addr, Duration::from_secs(2)).unwrap()));
        assert!(redis.alive());
        drop(redis);
        assert!(read_rss(pid).is_none(), "redis-server {pid} still running");
        assert!(TcpStream::connect(addr).is_err());
        assert!(!log.exists());
    }
}

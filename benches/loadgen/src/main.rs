//! `loadgen`: a single-threaded Pusher-protocol load generator for revurb (issue 5).
//!
//! ```text
//! loadgen <conns|fanout|clientevents|api|slowconsumer|soak> (--url ws://127.0.0.1:PORT | --spawn PATH) [options]
//! loadgen cluster --spawn PATH --nodes N [--redis-server PATH] [options]
//! ```
//!
//! Prints one JSON line per run on stdout; progress and problems go to stderr.
//! Only loopback addresses are used; every phase is bounded by `--timeout`.

mod cluster;
mod engine;
mod proto;
mod report;
mod soak;
mod stats;
mod tls;
mod webhook;

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use engine::{Bench, CePlan, ConnPlan, ProbePlan, PubPlan, Settings, WsState};
use stats::{latency_summary, read_cpu_secs, read_rss, round3};

const USAGE: &str = "\
usage: loadgen <mode> (--url ws://127.0.0.1:PORT | --spawn PATH_TO_REVURB) [options]
       loadgen cluster --spawn PATH_TO_REVURB [--nodes N] [options]
       loadgen table < results.jsonl   (a markdown table of the JSON lines of runs)
       loadgen soakmd < soak.json      (soak runs: their row and their samples, thinned)
       loadgen countsmd < counts.jsonl (conns runs with subscription counts on and off:
                                        their table and the mean server CPU of each)

modes:
  conns         open --n connections at --rate per second, subscribe each to one of
                --channels channels, hold them --hold seconds; connect times, RSS,
                the server's CPU and the pusher_internal:subscription_count messages
                received (--env REVERB_APP_ENABLE_SUBSCRIPTION_COUNT=true turns them on)
  fanout        --n subscribers over --channels channels, --rate publishes per second
                through the HTTP API for --duration seconds; latency, loss, server CPU
  clientevents  --n members in private channels of --group members, --rate client
                events per second for --duration seconds; latency and loss
  api           as many publishes as --connections keep-alive connections carry for
                --duration seconds, to a channel with one subscriber
  slowconsumer  fanout with --n subscribers, then --slow clients that stop reading;
                when are they dropped, and does everyone else's latency change
  upgrade       fanout (--n subscribers over --channels channels, --rate publishes/s for
                --duration seconds) with SIGUSR2 sent to the server a third of the way in:
                revurb upgrade re-executes the same binary and hands every connection over.
                Reports subscribers dropped, loss and duplicates, the longest pause between
                two deliveries (to anyone) and when the first delivery after the signal came
  cluster       start redis-server and --nodes revurb nodes scaling over it, wait until
                every node counts every node's connection, then fanout with the --n
                subscribers on nodes 2..N and the publishes through node 1's HTTP API:
                every delivery measured crosses Redis (latency, loss, CPU of the nodes
                and of redis-server)
  soak          for --duration (e.g. 60m): --n steady subscribers over --channels
                channels get --rate publishes/s (loss, duplicates), while --churn
                connections churn (connect, subscribe to public, private, presence and
                cache channels, client events, sign-in, then a close frame, a dropped
                socket, a reset, or a drop before subscribing); the server's RSS and
                open fds are read every --sample seconds. ok: nothing lost and RSS and
                fds flat after warm-up (run cut in quarters by time, the first one
                warm-up; drift = last-quarter mean - second-quarter mean;
                |drift| <= --max-rss-drift-mib and --max-fd-drift)

options:
  --url URL            server to load (loopback only)
  --spawn PATH         start this revurb binary (dev app env, --port 0) and stop it after
  --pid PID            server pid for /proc readings when not spawned
  --env K=V            extra server environment when spawning (repeatable; the spawned
                       server gets the app below and REVERB_METRICS_PORT=0 unless overridden)
  --server-cpu N       pin the spawned server to CPU N (taskset -c N when present)
  --cpu N              pin the generator to CPU N
  --app-id/--app-key/--secret   the app (default app-id / app-key / app-secret)
  --n N                clients (default 1000; api: 1)
  --rate R             conns: new connections per second (default 2000);
                       fanout/slowconsumer: publishes/s (100); clientevents: events/s (1000)
  --channels C         channels (default 1; conns 10)
  --hold S             conns: seconds to hold the connections (default 5)
  --duration S         seconds of load (default 10; api 5; slowconsumer: per phase, 5;
                       soak 60m); a number of seconds, or with s, m or h (90s, 60m, 1h)
  --payload BYTES      size of the data string (default 100)
  --publishers K       HTTP keep-alive connections publishing (default 4)
  --connections K      api: keep-alive connections (default 4)
  --slow M             slowconsumer: clients that stop reading (default 5)
  --slow-rcvbuf BYTES  their socket receive buffer (default 4096)
  --group G            clientevents: members per channel (default 2)
  --conn-rate R        new connections per second outside conns mode (default 5000)
  --max-pending N      connections being set up at once (default 500)
  --drain S            seconds to wait for in-flight deliveries (default 5)
  --timeout S          overall deadline (default: computed from the run)
  --webhook TYPES      with --spawn: start a loopback webhook receiver and give the server
                       REVERB_APP_WEBHOOKS for these comma-separated event types
                       (e.g. client_event,member_added); the JSON line gets `webhooks`:
                       requests, events by name, bad signatures, events/s; not ok when a
                       request's signature is wrong or (clientevents) a client event's
                       webhook is missing
  --webhook-batching   the receiver's webhook batches (20 events or 250 ms a request)
  --tls                conns, fanout, upgrade: every connection (clients and publishers) speaks
                       TLS (rustls, no session resumption); with --spawn the generator makes
                       a self-signed certificate for localhost and gives the server
                       REVERB_TLS_CERT and REVERB_TLS_KEY; conns reports handshakes per
                       server CPU-second (established / server CPU of the connect storm)
  --ca FILE            with --tls and --url: the PEM certificate (or CA) to trust

soak options (--n default 500, --channels 10, --rate 20):
  --churn N            churning connection slots (default 200)
  --churn-threads T    threads running them, blocking sockets (default 4)
  --churn-channels C   channels of each kind they join (default 20)
  --life-min/--life-max S   a churning connection's life once set up (default 5 / 15)
  --sample S           seconds between RSS/fd samples (default 5)
  --max-rss-drift-mib M     RSS bound for flat, in MiB (default 2)
  --max-fd-drift F     open-fd bound for flat (default 10)

cluster options (needs --spawn; every node gets the dev app env as above plus
REVERB_SCALING_ENABLED=true, REDIS_HOST=127.0.0.1, REDIS_PORT=<port>; --env wins):
  --nodes N            revurb nodes (default 3; at least 2 unless --local-too)
  --redis-server PATH  the redis-server to start on a free port (default: redis-server)
  --form-timeout S     seconds for the cluster to form (default 15)
  --local-too          spread the subscribers over node 1 too, and report the latency
                       of those same-node deliveries separately
  --server-cpu N       pins every node and redis-server to CPU N
";

#[derive(Debug, Clone, PartialEq)]
struct Opts {
    mode: String,
    url: Option<String>,
    spawn: Option<String>,
    pid: Option<u32>,
    env: Vec<(String, String)>,
    server_cpu: Option<usize>,
    cpu: Option<usize>,
    app_id: String,
    app_key: String,
    secret: String,
    n: usize,
    rate: f64,
    channels: usize,
    hold: f64,
    duration: f64,
    payload: usize,
    publishers: usize,
    connections: usize,
    slow: usize,
    slow_rcvbuf: usize,
    group: usize,
    conn_rate: f64,
    max_pending: usize,
    drain: f64,
    timeout: f64,
    nodes: usize,
    redis_server: String,
    form_timeout: f64,
    local_too: bool,
    churn: usize,
    churn_threads: usize,
    churn_channels: usize,
    life_min: f64,
    life_max: f64,
    sample: f64,
    max_rss_drift_mib: f64,
    max_fd_drift: f64,
    /// `--webhook`: event types the spawned server sends to our receiver.
    webhook: Vec<String>,
    webhook_batching: bool,
    /// `--tls`: every connection speaks TLS.
    tls: bool,
    /// `--ca`: the certificate to trust with `--url` (else the generated one).
    ca: Option<String>,
}

const MODES: [&str; 8] = [
    "upgrade",
    "conns",
    "fanout",
    "clientevents",
    "api",
    "slowconsumer",
    "cluster",
    "soak",
];

/// Seconds from `90`, `90s`, `2.5m`, `60m` or `1h`.
fn parse_secs(flag: &str, v: &str) -> Result<f64, String> {
    let (num, mult) = match v.as_bytes().last() {
        Some(b's') => (&v[..v.len() - 1], 1.0),
        Some(b'm') => (&v[..v.len() - 1], 60.0),
        Some(b'h') => (&v[..v.len() - 1], 3600.0),
        _ => (v, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .map(|n| n * mult)
        .ok_or_else(|| format!("{flag}: {v:?} is not a duration (seconds, or 90s, 60m, 1h)"))
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mode = args.first().ok_or("no mode given")?.clone();
    if !MODES.contains(&mode.as_str()) {
        return Err(format!("unknown mode {mode:?}"));
    }
    let mut o = Opts {
        url: None,
        spawn: None,
        pid: None,
        env: Vec::new(),
        server_cpu: None,
        cpu: None,
        app_id: "app-id".into(),
        app_key: "app-key".into(),
        secret: "app-secret".into(),
        n: match mode.as_str() {
            "api" => 1,
            "soak" => 500,
            _ => 1000,
        },
        rate: match mode.as_str() {
            "conns" => 2000.0,
            "clientevents" => 1000.0,
            "soak" => 20.0,
            _ => 100.0,
        },
        channels: if mode == "conns" || mode == "soak" {
            10
        } else {
            1
        },
        hold: 5.0,
        duration: match mode.as_str() {
            "api" | "slowconsumer" => 5.0,
            "soak" => 3600.0,
            _ => 10.0,
        },
        payload: 100,
        publishers: 4,
        connections: 4,
        slow: 5,
        slow_rcvbuf: 4096,
        group: 2,
        conn_rate: 5000.0,
        max_pending: 500,
        drain: 5.0,
        timeout: 0.0,
        nodes: 3,
        redis_server: "redis-server".into(),
        form_timeout: 15.0,
        local_too: false,
        churn: 200,
        churn_threads: 4,
        churn_channels: 20,
        life_min: 5.0,
        life_max: 15.0,
        sample: 5.0,
        max_rss_drift_mib: 2.0,
        max_fd_drift: 10.0,
        webhook: Vec::new(),
        webhook_batching: false,
        tls: false,
        ca: None,
        mode,
    };
    let mut timeout = None;
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if flag == "--local-too" {
            o.local_too = true;
            continue;
        }
        if flag == "--tls" {
            o.tls = true;
            continue;
        }
        if flag == "--webhook-batching" {
            o.webhook_batching = true;
            continue;
        }
        let val = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?
            .as_str();
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a valid number"))
        }
        match flag.as_str() {
            "--url" => o.url = Some(val.into()),
            "--ca" => o.ca = Some(val.into()),
            "--spawn" => o.spawn = Some(val.into()),
            "--pid" => o.pid = Some(num(flag, val)?),
            "--env" => {
                let (k, v) = val
                    .split_once('=')
                    .ok_or_else(|| format!("--env {val:?}: expected K=V"))?;
                o.env.push((k.into(), v.into()));
            }
            "--server-cpu" => o.server_cpu = Some(num(flag, val)?),
            "--cpu" => o.cpu = Some(num(flag, val)?),
            "--app-id" => o.app_id = val.into(),
            "--app-key" => o.app_key = val.into(),
            "--secret" => o.secret = val.into(),
            "--n" => o.n = num(flag, val)?,
            "--rate" => o.rate = num(flag, val)?,
            "--channels" => o.channels = num(flag, val)?,
            "--hold" => o.hold = num(flag, val)?,
            "--duration" => o.duration = parse_secs(flag, val)?,
            "--payload" => o.payload = num(flag, val)?,
            "--publishers" => o.publishers = num(flag, val)?,
            "--connections" => o.connections = num(flag, val)?,
            "--slow" => o.slow = num(flag, val)?,
            "--slow-rcvbuf" => o.slow_rcvbuf = num(flag, val)?,
            "--group" => o.group = num(flag, val)?,
            "--conn-rate" => o.conn_rate = num(flag, val)?,
            "--max-pending" => o.max_pending = num(flag, val)?,
            "--drain" => o.drain = num(flag, val)?,
            "--timeout" => timeout = Some(num(flag, val)?),
            "--nodes" => o.nodes = num(flag, val)?,
            "--redis-server" => o.redis_server = val.into(),
            "--form-timeout" => o.form_timeout = num(flag, val)?,
            "--churn" => o.churn = num(flag, val)?,
            "--churn-threads" => o.churn_threads = num(flag, val)?,
            "--churn-channels" => o.churn_channels = num(flag, val)?,
            "--life-min" => o.life_min = parse_secs(flag, val)?,
            "--life-max" => o.life_max = parse_secs(flag, val)?,
            "--sample" => o.sample = parse_secs(flag, val)?,
            "--max-rss-drift-mib" => o.max_rss_drift_mib = num(flag, val)?,
            "--max-fd-drift" => o.max_fd_drift = num(flag, val)?,
            "--webhook" => {
                o.webhook = val
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.mode == "cluster" && o.url.is_some() {
        return Err("cluster mode starts its own nodes: give --spawn PATH_TO_REVURB".into());
    }
    if o.url.is_some() == o.spawn.is_some() {
        return Err("give exactly one of --url and --spawn".into());
    }
    if o.tls && !matches!(o.mode.as_str(), "conns" | "fanout" | "upgrade") {
        return Err("--tls is for conns, fanout and upgrade".into());
    }
    if o.ca.is_some() && !o.tls {
        return Err("--ca needs --tls".into());
    }
    if o.tls && o.url.is_some() && o.ca.is_none() {
        return Err("--tls with --url needs --ca FILE (the server's certificate or CA)".into());
    }
    let positive = [
        ("--rate", o.rate),
        ("--conn-rate", o.conn_rate),
        ("--channels", o.channels as f64),
        ("--publishers", o.publishers as f64),
        ("--connections", o.connections as f64),
        ("--group", o.group as f64),
        ("--max-pending", o.max_pending as f64),
        ("--form-timeout", o.form_timeout),
        ("--churn-threads", o.churn_threads as f64),
        ("--churn-channels", o.churn_channels as f64),
        ("--sample", o.sample),
    ];
    for (name, v) in positive {
        if !(v > 0.0 && v.is_finite()) {
            return Err(format!("{name} must be positive"));
        }
    }
    for (name, v) in [
        ("--hold", o.hold),
        ("--duration", o.duration),
        ("--drain", o.drain),
        ("--form-timeout", o.form_timeout),
    ] {
        if !(0.0..=86_400.0).contains(&v) {
            return Err(format!("{name} must be between 0 and 86400 seconds"));
        }
    }
    if o.n > 1_000_000 || o.slow > 100_000 {
        return Err("--n is at most 1000000 and --slow at most 100000".into());
    }
    if o.mode == "cluster" {
        let least = if o.local_too { 1 } else { 2 };
        if o.nodes < least || o.nodes > 64 {
            return Err(format!(
                "--nodes must be between {least} and 64 (node 1 publishes, the others subscribe)"
            ));
        }
        if o.redis_server.is_empty() {
            return Err("--redis-server needs a path".into());
        }
    }
    if o.mode == "soak" {
        if !(0.0..=3600.0).contains(&o.life_min) || !(o.life_min..=3600.0).contains(&o.life_max) {
            return Err("--life-min and --life-max: 0 <= min <= max <= 3600 seconds".into());
        }
        if o.churn > 100_000 || o.churn_threads > 256 {
            return Err("--churn is at most 100000 and --churn-threads at most 256".into());
        }
        if !(o.max_rss_drift_mib >= 0.0 && o.max_fd_drift >= 0.0) {
            return Err("--max-rss-drift-mib and --max-fd-drift must be >= 0".into());
        }
    }
    if o.mode == "clientevents" && o.group < 2 {
        return Err("--group must be at least 2 (a member's events go to the others)".into());
    }
    o.timeout = timeout.unwrap_or_else(|| default_timeout(&o));
    Ok(o)
}

/// Setup at the connection rate (twice over), the load phases, the drain, and a minute
/// (cluster: also the wait for the cluster to form).
fn default_timeout(o: &Opts) -> f64 {
    let rate = if o.mode == "conns" {
        o.rate
    } else {
        o.conn_rate
    };
    let slow = if o.mode == "slowconsumer" { o.slow } else { 0 };
    let setup = 2.0 * (o.n + slow) as f64 / rate;
    let load = match o.mode.as_str() {
        "conns" => o.hold,
        "slowconsumer" => 2.0 * o.duration,
        _ => o.duration,
    };
    let form = if o.mode == "cluster" {
        o.form_timeout
    } else {
        0.0
    };
    60.0 + setup + load + 2.0 * o.drain + form
}

// ---- the server ------------------------------------------------------------------------

struct Server {
    child: Option<Child>,
    _stdout: Option<ChildStdout>,
    pid: Option<u32>,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A command running `path` on CPU `cpu`: through taskset when it exists (it execs, so the
/// pid stays the program's); otherwise the CPU returned is to be pinned once started.
/// The program is killed if the generator dies without running its Drop guards.
fn pinned_command(path: &str, cpu: Option<usize>) -> (Command, Option<usize>) {
    let (mut cmd, later) = match cpu.filter(|_| on_path("taskset")) {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string(), path]);
            (c, None)
        }
        None => (Command::new(path), cpu),
    };
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    (cmd, later)
}

/// Start the server of `--spawn` with the dev app env, then `extra` (`None`: remove the
/// inherited variable), then `--env`.
fn spawn_server(o: &Opts, extra: &[(&str, Option<&str>)]) -> Result<Server, String> {
    let path = o.spawn.as_deref().unwrap_or("revurb");
    let (mut cmd, pin_later) = pinned_command(path, o.server_cpu);
    cmd.args(["start", "--host", "127.0.0.1", "--port", "0"])
        .env("REVERB_APP_ID", &o.app_id)
        .env("REVERB_APP_KEY", &o.app_key)
        .env("REVERB_APP_SECRET", &o.secret)
        // No metrics listener: its fixed port would clash with any other server running
        // (`--env REVERB_METRICS_PORT=9601` brings it back).
        .env("REVERB_METRICS_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    for (k, v) in &o.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {path}: {e}"))?;
    let pid = child.id();
    if let Some(cpu) = pin_later {
        pin(pid, cpu).map_err(|e| format!("cannot pin the server to CPU {cpu}: {e}"))?;
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut server = Server {
        child: Some(child),
        _stdout: None,
        pid: Some(pid),
        addr: "127.0.0.1:0".parse().expect("address"),
    };
    // Read the first line without blocking past a deadline.
    // SAFETY: fcntl on a pipe fd we own.
    unsafe {
        let fd = out.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    while !line.contains(&b'\n') {
        if Instant::now() > deadline || line.len() > 4096 {
            return Err("the server did not print its start line".into());
        }
        match out.read(&mut buf) {
            Ok(0) => {
                let status = server.child.as_mut().and_then(|c| c.wait().ok());
                server.child = None;
                return Err(format!("the server exited before listening ({status:?})"));
            }
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(format!("reading the server's stdout: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    let first = text.lines().next().unwrap_or("");
    let port = proto::parse_listen_line(first)
        .ok_or_else(|| format!("unexpected start line {first:?}"))?;
    server.addr = SocketAddr::from(([127, 0, 0, 1], port));
    server._stdout = Some(out);
    Ok(server)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Pin process `pid` (0: this one) to one CPU.
fn pin(pid: u32, cpu: usize) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET checks the index against the set size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(
            pid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raise the soft open-files limit to the hard one; returns the new soft limit.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit read or write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let new = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim = new;
            }
        }
        lim.rlim_cur
    }
}

// ---- modes -----------------------------------------------------------------------------

struct Run<'a> {
    o: &'a Opts,
    /// `--tls`: the client configuration.
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pid: Option<u32>,
    /// Further server processes whose CPU time counts (the other nodes of a cluster).
    others: Vec<u32>,
    deadline: Instant,
}

impl Run<'_> {
    fn bench(&self, addr: SocketAddr, groups: usize, private: bool) -> Result<Bench, String> {
        let set = Settings {
            server: addr,
            app_id: self.o.app_id.clone(),
            app_key: self.o.app_key.clone(),
            secret: self.o.secret.clone(),
            salt: std::process::id() as usize % 250,
            private,
            payload: self.o.payload,
            slow_rcvbuf: self.o.slow_rcvbuf,
            tls: self.tls.clone(),
        };
        Bench::new(set, groups).map_err(|e| format!("poll: {e}"))
    }

    fn rss(&self) -> Option<u64> {
        self.pid.and_then(read_rss)
    }

    /// CPU seconds of the server (summed over every node of a cluster).
    fn cpu(&self) -> Option<f64> {
        let mut sum = self.pid.and_then(read_cpu_secs)?;
        for &p in &self.others {
            sum += read_cpu_secs(p)?;
        }
        Some(sum)
    }

    /// Open `n` clients over `groups` (normal or slow) and wait until all are set up.
    /// The steady set of the fan-out modes: `--publishers` keep-alive API
    /// connections, then `--n` subscribers over `--channels`; a shortfall is
    /// noted in the report instead of failing the run. Returns whether all
    /// subscribed, and how many did.
    fn open_publishers_and_subscribers(&self, b: &mut Bench) -> (bool, usize) {
        let o = self.o;
        for _ in 0..o.publishers {
            b.open_http(false);
        }
        let ready = self.connect(b, o.n, o.channels, false, o.conn_rate);
        let (subscribed, _) = b.subscribed();
        if !ready {
            b.note(format!(
                "setup incomplete: {subscribed} of {} subscribed",
                o.n
            ));
        }
        (ready, subscribed)
    }

    fn connect(&self, b: &mut Bench, n: usize, groups: usize, slow: bool, rate: f64) -> bool {
        b.conn_plan = Some(ConnPlan {
            start: Instant::now(),
            rate,
            count: n,
            issued: 0,
            groups,
            slow,
            max_pending: self.o.max_pending,
        });
        let ok = b.run_until(self.deadline, |b| {
            b.conn_plan
                .as_ref()
                .is_some_and(|p| p.issued == p.count && b.pending == 0)
                && b.http_ready()
        });
        b.conn_plan = None;
        ok
    }

    /// Wait (bounded by --drain) for answers to publishes and their deliveries.
    fn drain(&self, b: &mut Bench) -> bool {
        let until = (Instant::now() + Duration::from_secs_f64(self.o.drain)).min(self.deadline);
        b.run_until(until, |b| {
            b.http_inflight() == 0 && b.delivered >= b.expected_live
        })
    }
}

fn connect_times(b: &Bench) -> (Value, Value) {
    let mut open: Vec<u64> =
        b.ws.iter()
            .filter_map(|w| w.open_after.map(|d| d.as_nanos() as u64))
            .collect();
    let mut sub: Vec<u64> =
        b.ws.iter()
            .filter_map(|w| w.sub_after.map(|d| d.as_nanos() as u64))
            .collect();
    (latency_summary(&mut open), latency_summary(&mut sub))
}

fn mode_conns(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let mut b = r.bench(addr, o.channels, false)?;
    let rss_before = r.rss();
    let cpu0 = r.cpu();
    let t0 = Instant::now();
    let all = r.connect(&mut b, o.n, o.channels, false, o.rate);
    let setup_s = t0.elapsed().as_secs_f64();
    let cpu_setup = r.cpu();
    let (established, _) = b.subscribed();
    let rss_connected = r.rss();
    let hold_until = (Instant::now() + Duration::from_secs_f64(o.hold)).min(r.deadline);
    b.run_until(hold_until, |_| false);
    let cpu1 = r.cpu();
    let rss_after = r.rss();
    let spent = |a: Option<f64>, z: Option<f64>| match (a, z) {
        (Some(a), Some(z)) => Some(round3(z - a)),
        _ => None,
    };
    let (still, _) = b.subscribed();
    let (open, sub) = connect_times(&b);
    let per_conn = match (rss_before, rss_after) {
        (Some(a), Some(z)) if still > 0 => Some((z as f64 - a as f64) / still as f64),
        _ => None,
    };
    Ok(json!({
        "ok": all && still == o.n,
        "connections": o.n,
        "established": established,
        "still_open_after_hold": still,
        "failures": b.connect_failures,
        "setup_s": round3(setup_s),
        "connect_rate_per_s": round3(established as f64 / setup_s.max(1e-9)),
        "connect_ms": open,
        "subscribe_ms": sub,
        "pings_answered": b.ws.iter().map(|w| w.pings).sum::<u64>(),
        "rss_before_bytes": rss_before,
        "rss_connected_bytes": rss_connected,
        "rss_after_bytes": rss_after,
        "rss_per_conn_bytes": per_conn.map(|v| v.round()),
        // the server's CPU from the first connect to the end of the hold,
        // and of the connect/subscribe storm alone
        "server_cpu_s": spent(cpu0, cpu1),
        "server_cpu_setup_s": spent(cpu0, cpu_setup),
        "subscription_counts_received": b.counts_received,
        "errors": b.errors,
        "tls": o.tls,
        "handshakes_per_server_cpu_s": match (o.tls, spent(cpu0, cpu_setup)) {
            (true, Some(c)) if c > 0.0 => Some((established as f64 / c).round()),
            _ => None,
        },
    }))
}

/// Publish for `duration`, then drain; returns the report of that stretch.
fn load_phase(r: &Run, b: &mut Bench, rate: Option<f64>, groups: usize) -> Value {
    let o = r.o;
    let cpu0 = r.cpu();
    let delivered0 = b.delivered;
    let start = Instant::now();
    let stop = (start + Duration::from_secs_f64(o.duration)).min(r.deadline);
    b.first_delivery = None;
    b.last_delivery = None;
    b.pub_plan = Some(PubPlan {
        start,
        rate,
        stop,
        issued: 0,
        groups,
    });
    b.run_until(stop, |_| false);
    let sent = b.pub_plan.as_ref().map_or(0, |p| p.issued);
    let drained = r.drain(b);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = r.cpu();
    b.pub_plan = None;
    let delivered = b.delivered - delivered0;
    let span = b
        .last_delivery
        .map_or(0.0, |t| t.duration_since(start).as_secs_f64());
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(z)) => Some(z - a),
        _ => None,
    };
    json!({
        "publishes_scheduled": rate.map(|r| (r * o.duration).ceil() as u64),
        "publishes_sent": sent,
        "publish_status": status_map(b),
        "drained": drained,
        "load_elapsed_s": round3(elapsed),
        "deliveries": delivered,
        "deliveries_per_sec": round3(delivered as f64 / span.max(1e-9)),
        "server_cpu_s": cpu.map(round3),
        "deliveries_per_server_cpu_s": cpu.filter(|c| *c > 0.0).map(|c| (delivered as f64 / c).round()),
    })
}

fn status_map(b: &Bench) -> Value {
    Value::Object(
        b.statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

fn mode_fanout(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let mut b = r.bench(addr, o.channels, false)?;
    let (ready, subscribed) = r.open_publishers_and_subscribers(&mut b);
    let mut rep = json!({
        "subscribers": subscribed,
        "channels": o.channels,
        "rate": o.rate,
        "duration_s": o.duration,
        "payload": o.payload,
        "publishers": o.publishers,
        "tls": o.tls,
    });
    merge(&mut rep, load_phase(r, &mut b, Some(o.rate), o.channels));
    let loss = b.loss_report();
    rep["ok"] = json!(ready && loss["lost"] == 0 && loss["duplicates"] == 0);
    rep["loss"] = loss;
    rep["latency_ms"] = latency_summary(&mut b.lat[0]);
    rep["api_latency_ms"] = latency_summary(&mut b.req_lat);
    rep["subscribers_closed"] = json!(subscribed - b.subscribed().0);
    Ok(rep)
}

/// `upgrade`: fanout with SIGUSR2 to the server a third of the way in.
fn mode_upgrade(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let pid = r
        .pid
        .ok_or("upgrade needs the server's pid (--spawn or --pid)")?;
    let mut b = r.bench(addr, o.channels, false)?;
    let (ready, subscribed) = r.open_publishers_and_subscribers(&mut b);
    let start = Instant::now();
    let stop = (start + Duration::from_secs_f64(o.duration)).min(r.deadline);
    b.gaps.clear();
    b.last_delivery = None;
    b.pub_plan = Some(PubPlan {
        start,
        rate: Some(o.rate),
        stop,
        issued: 0,
        groups: o.channels,
    });
    b.run_until(start + Duration::from_secs_f64(o.duration / 3.0), |_| false);
    let signal_at = Instant::now();
    // SAFETY: kill(2) takes plain integers.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGUSR2) } != 0 {
        return Err(format!(
            "cannot signal the server: {}",
            std::io::Error::last_os_error()
        ));
    }
    b.run_until(stop, |_| false);
    let sent = b.pub_plan.as_ref().map_or(0, |p| p.issued);
    let drained = r.drain(&mut b);
    b.pub_plan = None;
    let ms = |d: Duration| round3(d.as_secs_f64() * 1000.0);
    let longest = b
        .gaps
        .iter()
        .map(|(a, z)| z.duration_since(*a))
        .max()
        .unwrap_or_default();
    // the pause the switch made: the longest that ends after the signal
    // (the preflight's copy of the hand-over may make a shorter one)
    let switch = b
        .gaps
        .iter()
        .filter(|(_, z)| *z > signal_at)
        .max_by_key(|(a, z)| z.duration_since(*a))
        .copied();
    let loss = b.loss_report();
    let still = b.subscribed().0;
    Ok(json!({
        "ok": ready && loss["lost"] == 0 && loss["duplicates"] == 0 && still == subscribed,
        "tls": o.tls,
        "subscribers": subscribed,
        "subscribers_dropped": subscribed - still,
        "channels": o.channels,
        "rate": o.rate,
        "duration_s": o.duration,
        "publishes_sent": sent,
        "publish_status": status_map(&b),
        "drained": drained,
        "deliveries": b.delivered,
        "loss": loss,
        "longest_delivery_gap_ms": ms(longest),
        "switch_gap_ms": switch.map(|(a, z)| ms(z.duration_since(a))),
        "signal_to_first_delivery_after_switch_ms": switch.map(|(_, z)| ms(z.duration_since(signal_at))),
        "gaps_over_50ms": b.gaps.len(),
        "latency_ms": latency_summary(&mut b.lat[0]),
        "api_latency_ms": latency_summary(&mut b.req_lat),
    }))
}

fn mode_api(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let mut b = r.bench(addr, 1, false)?;
    for _ in 0..o.connections {
        b.open_http(false);
    }
    let ready = r.connect(&mut b, o.n, 1, false, o.conn_rate);
    let mut rep = json!({
        "connections": o.connections,
        "subscribers": b.subscribed().0,
        "duration_s": o.duration,
        "payload": o.payload,
    });
    let phase = load_phase(r, &mut b, None, 1);
    let answered: u64 = b.statuses.values().sum();
    let ok200 = b.statuses.get(&200).copied().unwrap_or(0);
    rep["requests_per_sec"] = json!(round3(answered as f64 / o.duration.max(1e-9)));
    merge(&mut rep, phase);
    let loss = b.loss_report();
    rep["ok"] = json!(ready && ok200 == answered && b.http_errors == 0 && loss["lost"] == 0);
    rep["requests"] = json!(answered);
    rep["http_errors"] = json!(b.http_errors);
    rep["request_latency_ms"] = latency_summary(&mut b.req_lat);
    rep["delivery_latency_ms"] = latency_summary(&mut b.lat[0]);
    rep["loss"] = loss;
    Ok(rep)
}

fn mode_clientevents(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let groups = (o.n / o.group).max(1);
    let mut b = r.bench(addr, groups, true)?;
    b.sender_excluded = true;
    let ready = r.connect(&mut b, groups * o.group, groups, false, o.conn_rate);
    let (subscribed, _) = b.subscribed();
    let cpu0 = r.cpu();
    let start = Instant::now();
    let stop = (start + Duration::from_secs_f64(o.duration)).min(r.deadline);
    b.ce_plan = Some(CePlan {
        start,
        rate: o.rate,
        stop,
        issued: 0,
        groups,
        group_size: o.group,
        skipped: 0,
    });
    b.run_until(stop, |_| false);
    let drained = r.drain(&mut b);
    let cpu1 = r.cpu();
    let (sent, skipped) = b.ce_plan.as_ref().map_or((0, 0), |p| (p.issued, p.skipped));
    let span = b
        .last_delivery
        .map_or(0.0, |t| t.duration_since(start).as_secs_f64());
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(z)) => Some(z - a),
        _ => None,
    };
    let loss = b.loss_report();
    Ok(json!({
        "ok": ready && loss["lost"] == 0 && loss["duplicates"] == 0 && skipped == 0,
        "members": subscribed,
        "groups": groups,
        "group_size": o.group,
        "rate": o.rate,
        "duration_s": o.duration,
        "events_sent": sent - skipped,
        "events_skipped": skipped,
        "drained": drained,
        "deliveries": b.delivered,
        "deliveries_per_sec": round3(b.delivered as f64 / span.max(1e-9)),
        "server_cpu_s": cpu.map(round3),
        "deliveries_per_server_cpu_s": cpu.filter(|c| *c > 0.0).map(|c| (b.delivered as f64 / c).round()),
        "loss": loss,
        "latency_ms": latency_summary(&mut b.lat[0]),
    }))
}

fn mode_slowconsumer(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let mut b = r.bench(addr, o.channels, false)?;
    for _ in 0..o.publishers {
        b.open_http(false);
    }
    b.open_http(true);
    let ready = r.connect(&mut b, o.n, o.channels, false, o.conn_rate);
    let (subscribed, _) = b.subscribed();
    b.probe = Some(ProbePlan {
        every: Duration::from_millis(50),
        next: Instant::now(),
        samples: Vec::new(),
    });
    // Phase 0: only well-behaved subscribers.
    let start = Instant::now();
    let phase_len = Duration::from_secs_f64(o.duration);
    b.pub_plan = Some(PubPlan {
        start,
        rate: Some(o.rate),
        stop: (start + 2 * phase_len + Duration::from_secs(30)).min(r.deadline),
        issued: 0,
        groups: o.channels,
    });
    b.run_until((start + phase_len).min(r.deadline), |_| false);
    // Phase 1: the slow clients join (and stop reading once subscribed).
    b.set_phase(1);
    let slow_start = Instant::now();
    let first_slow = b.ws.len();
    b.conn_plan = Some(ConnPlan {
        start: slow_start,
        rate: o.conn_rate,
        count: o.slow,
        issued: 0,
        groups: o.channels,
        slow: true,
        max_pending: o.max_pending,
    });
    let phase1_end = (Instant::now() + phase_len).min(r.deadline);
    b.run_until(phase1_end, |_| false);
    b.conn_plan = None;
    if let Some(p) = b.pub_plan.as_mut() {
        p.stop = Instant::now();
    }
    let sent = b.pub_plan.as_ref().map_or(0, |p| p.issued);
    let drained = r.drain(&mut b);
    b.pub_plan = None;
    let samples = b.probe.take().map(|p| p.samples).unwrap_or_default();
    // Collect how the slow clients ended: read what they left unread.
    let resume_at = Instant::now();
    b.resume_slow();
    let until = (Instant::now() + Duration::from_secs(3)).min(r.deadline);
    b.run_until(until, |b| {
        b.ws[first_slow..]
            .iter()
            .all(|w| w.state == WsState::Closed)
    });
    let ms_since =
        |t: Instant, from: Instant| round3(t.saturating_duration_since(from).as_secs_f64() * 1e3);
    let mut slow = Vec::new();
    let mut dropped = 0;
    for w in &b.ws[first_slow..] {
        let paused = w.paused_at;
        let ended_before_resume = w.ended.as_ref().is_some_and(|(t, _)| *t < resume_at);
        let disconnected = w.tcp_gone.is_some()
            || w.close_code.is_some()
            || w.error_code.is_some()
            || w.ended.is_some();
        if disconnected {
            dropped += 1;
        }
        slow.push(json!({
            "subscribed": w.sub_after.is_some(),
            "disconnected": disconnected,
            "pusher_error": w.error_code,
            "close_code": w.close_code,
            "ended": w.ended.as_ref().map(|(_, how)| how.clone()),
            "ended_while_not_reading": ended_before_resume,
            "tcp_state_change_ms": match (w.tcp_gone, paused) {
                (Some((t, _)), Some(p)) => Some(ms_since(t, p)),
                _ => None,
            },
            "tcp_state": w.tcp_gone.map(|(_, s)| s),
            "bench_messages_read_after_resume": w.received,
        }));
    }
    // When did the server's connection count drop back to the normal subscribers?
    let slow_start_ms = slow_start.duration_since(b.base).as_secs_f64() * 1e3;
    let (peak, back) = drop_time(&samples, slow_start_ms, subscribed as u64);
    let (normal_now, _) = b.subscribed();
    let loss = b.loss_report();
    let lat0 = latency_summary(&mut b.lat[0]);
    let lat1 = latency_summary(&mut b.lat[1]);
    Ok(json!({
        "ok": ready && dropped == o.slow && loss["lost"] == 0,
        "subscribers": subscribed,
        "subscribers_at_end": normal_now,
        "channels": o.channels,
        "rate": o.rate,
        "payload": o.payload,
        "phase_s": o.duration,
        "publishes_sent": sent,
        "publish_status": status_map(&b),
        "drained": drained,
        "slow_clients": o.slow,
        "slow_dropped": dropped,
        "slow": slow,
        "server_connections_peak": peak,
        "server_count_back_to_normal_ms_after_slow_start": back.map(|t| round3(t - slow_start_ms)),
        "loss": loss,
        "latency_ms_before_slow": lat0,
        "latency_ms_with_slow": lat1,
    }))
}

/// From (time ms, server connection count) samples: the peak count after `from_ms`, and
/// the first time after that peak when the count is back at or below `normal`.
fn drop_time(samples: &[(f64, u64)], from_ms: f64, normal: u64) -> (Option<u64>, Option<f64>) {
    let after: Vec<&(f64, u64)> = samples.iter().filter(|(t, _)| *t >= from_ms).collect();
    let Some(peak_at) = after
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
    else {
        return (None, None);
    };
    let peak = after[peak_at].1;
    if peak <= normal {
        return (Some(peak), None);
    }
    let back = after[peak_at..]
        .iter()
        .find(|(_, n)| *n <= normal)
        .map(|(t, _)| *t);
    (Some(peak), back)
}

/// The fields every result line starts with.
fn run_head(o: &Opts, nofile: u64, started: Instant, deadline: Instant) -> Value {
    json!({
        "mode": o.mode,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "nofile_limit": nofile,
        "generator_cpu_s": read_cpu_secs(std::process::id()).map(round3),
        "elapsed_s": round3(started.elapsed().as_secs_f64()),
        "timed_out": Instant::now() >= deadline,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("table") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            eprintln!("loadgen: reading stdin: {e}");
            return ExitCode::from(1);
        }
        print!("{}", report::table(&input));
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("countsmd") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            eprintln!("loadgen: reading stdin: {e}");
            return ExitCode::from(1);
        }
        print!("{}", report::counts_md(&input));
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("soakmd") {
        let mut input = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut input) {
            eprintln!("loadgen: reading stdin: {e}");
            return ExitCode::from(1);
        }
        print!("{}", report::soak_samples(&input, 25));
        return ExitCode::SUCCESS;
    }
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    let nofile = raise_nofile();
    if let Some(cpu) = o.cpu
        && let Err(e) = pin(0, cpu)
    {
        eprintln!("loadgen: cannot pin to CPU {cpu}: {e}");
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(o.timeout);
    if o.mode == "cluster" {
        // Redis and the nodes are stopped (Drop guards) before `run` returns.
        let mut rep = match cluster::run(&o, deadline) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(1);
            }
        };
        let mut head = run_head(&o, nofile, started, deadline);
        merge(&mut head, rep.take());
        println!("{head}");
        return ExitCode::SUCCESS;
    }
    if !o.webhook.is_empty() && o.spawn.is_none() {
        eprintln!("loadgen: --webhook needs --spawn (the server must be given the receiver)");
        return ExitCode::from(2);
    }
    let receiver = if o.webhook.is_empty() {
        None
    } else {
        match webhook::Receiver::start(&o.app_key, &o.secret) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(1);
            }
        }
    };
    let hooks_env = receiver
        .as_ref()
        .map(|r| r.env_value(&o.webhook, o.webhook_batching));
    let generated = match (o.tls, &o.ca) {
        (true, None) => match tls::generate() {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    let client_tls = match (&o.ca, &generated) {
        (Some(ca), _) => Some(tls::client_config(std::path::Path::new(ca))),
        (None, Some(g)) => Some(tls::client_config(&g.cert)),
        _ => None,
    };
    let client_tls = match client_tls.transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let mut extra_env: Vec<(&str, Option<&str>)> = Vec::new();
    if let Some(v) = hooks_env.as_deref() {
        extra_env.push(("REVERB_APP_WEBHOOKS", Some(v)));
    }
    if let Some(g) = &generated {
        extra_env.push(("REVERB_TLS_CERT", g.cert.to_str()));
        extra_env.push(("REVERB_TLS_KEY", g.key.to_str()));
    }
    let server = match &o.url {
        Some(url) => match proto::parse_url(url) {
            Ok(addr) => Server {
                child: None,
                _stdout: None,
                pid: o.pid,
                addr,
            },
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(2);
            }
        },
        None => match spawn_server(&o, &extra_env) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("loadgen: {e}");
                return ExitCode::from(1);
            }
        },
    };
    if server.child.is_some() {
        // Let the server finish starting before the idle reading.
        std::thread::sleep(Duration::from_millis(200));
    }
    let rss_idle = server.pid.and_then(read_rss);
    let run = Run {
        o: &o,
        tls: client_tls,
        pid: server.pid,
        others: Vec::new(),
        deadline,
    };
    let result = match o.mode.as_str() {
        "conns" => mode_conns(&run, server.addr),
        "fanout" => mode_fanout(&run, server.addr),
        "upgrade" => mode_upgrade(&run, server.addr),
        "api" => mode_api(&run, server.addr),
        "clientevents" => mode_clientevents(&run, server.addr),
        "soak" => soak::mode_soak(&run, server.addr),
        _ => mode_slowconsumer(&run, server.addr),
    };
    let server_alive = server.pid.is_some_and(|p| read_rss(p).is_some());
    let mut rep = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let mut head = run_head(&o, nofile, started, deadline);
    head["server"] = json!({
        "addr": server.addr.to_string(),
        "pid": server.pid,
        "spawned": server.child.is_some(),
        "rss_idle_bytes": rss_idle,
        "alive_at_end": server_alive,
    });
    merge(&mut head, rep.take());
    if let Some(r) = &receiver {
        // what the server still had to send after the run
        r.settle(
            Duration::from_millis(1000),
            Duration::from_secs_f64(o.drain.max(1.0)),
        );
        let report = r.report();
        let mut ok = report["bad_requests"] == 0;
        if o.mode == "clientevents" && o.webhook.iter().any(|w| w == "client_event") {
            let got = report["by_name"]["client_event"].as_u64().unwrap_or(0);
            let sent = head["events_sent"].as_u64().unwrap_or(0);
            head["webhook_client_events_missing"] = json!(sent.saturating_sub(got));
            ok &= got >= sent;
        }
        if !ok {
            head["ok"] = json!(false);
        }
        head["webhooks"] = report;
    }
    println!("{head}");
    drop(server);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options_and_defaults() {
        let o = parse_args(&args(
            "fanout --spawn ./revurb --n 10000 --rate 5 --env A=b=c",
        ))
        .unwrap();
        assert_eq!(o.mode, "fanout");
        assert_eq!(o.n, 10_000);
        assert_eq!(o.rate, 5.0);
        assert_eq!(o.channels, 1);
        assert_eq!(o.duration, 10.0);
        assert_eq!(o.env, vec![("A".to_string(), "b=c".to_string())]);
        assert_eq!(o.app_key, "app-key");
        // 60 s + setup at 5000/s (twice) + 10 s + two drains.
        assert_eq!(o.timeout, 60.0 + 4.0 + 10.0 + 10.0);
        let c = parse_args(&args("conns --url ws://127.0.0.1:1 --timeout 7")).unwrap();
        assert_eq!((c.channels, c.rate, c.timeout), (10, 2000.0, 7.0));
        let a = parse_args(&args("api --url ws://127.0.0.1:1")).unwrap();
        assert_eq!((a.n, a.duration), (1, 5.0));
        assert_eq!((a.nodes, a.local_too), (3, false));
    }

    #[test]
    fn parses_cluster_options() {
        let o = parse_args(&args(
            "cluster --spawn target/release/revurb --nodes 3 --n 1000 --channels 10 \
             --rate 200 --duration 10",
        ))
        .unwrap();
        assert_eq!(o.mode, "cluster");
        assert_eq!((o.nodes, o.n, o.channels), (3, 1000, 10));
        assert_eq!((o.rate, o.duration), (200.0, 10.0));
        assert_eq!(o.redis_server, "redis-server");
        assert_eq!((o.form_timeout, o.local_too), (15.0, false));
        // The default timeout also covers the 15 s the cluster may take to form.
        assert_eq!(o.timeout, 60.0 + 0.4 + 10.0 + 10.0 + 15.0);
        let l = parse_args(&args(
            "cluster --spawn r --local-too --nodes 2 --redis-server /opt/redis-server \
             --form-timeout 30 --server-cpu 0 --cpu 1",
        ))
        .unwrap();
        assert!(l.local_too);
        assert_eq!((l.nodes, l.form_timeout), (2, 30.0));
        assert_eq!(l.redis_server, "/opt/redis-server");
        assert_eq!((l.server_cpu, l.cpu), (Some(0), Some(1)));
        // --local-too takes no value, wherever it stands.
        let last = parse_args(&args("cluster --spawn r --nodes 1 --local-too")).unwrap();
        assert!(last.local_too && last.nodes == 1);
    }

    #[test]
    fn parses_soak_options() {
        let o = parse_args(&args("soak --spawn r")).unwrap();
        assert_eq!(
            (o.n, o.channels, o.rate, o.duration),
            (500, 10, 20.0, 3600.0)
        );
        assert_eq!((o.churn, o.churn_threads, o.churn_channels), (200, 4, 20));
        assert_eq!((o.life_min, o.life_max, o.sample), (5.0, 15.0, 5.0));
        assert_eq!((o.max_rss_drift_mib, o.max_fd_drift), (2.0, 10.0));
        let o = parse_args(&args(
            "soak --url ws://127.0.0.1:1 --duration 2m --churn 10 --life-min 1s              --life-max 2 --sample 1 --max-rss-drift-mib 8 --max-fd-drift 3",
        ))
        .unwrap();
        assert_eq!(
            (o.duration, o.churn, o.life_min, o.life_max),
            (120.0, 10, 1.0, 2.0)
        );
        assert_eq!(
            (o.sample, o.max_rss_drift_mib, o.max_fd_drift),
            (1.0, 8.0, 3.0)
        );
        assert!(parse_args(&args("soak --spawn r --life-min 5 --life-max 4")).is_err());
        assert!(parse_args(&args("soak --spawn r --sample 0")).is_err());
        assert!(parse_args(&args("soak --spawn r --churn-threads 0")).is_err());
        assert!(parse_args(&args("soak --spawn r --max-fd-drift -1")).is_err());
        assert!(parse_args(&args("soak --spawn r --duration 25h")).is_err());
        assert_eq!(parse_secs("d", "90"), Ok(90.0));
        assert_eq!(parse_secs("d", "90s"), Ok(90.0));
        assert_eq!(parse_secs("d", "2.5m"), Ok(150.0));
        assert_eq!(parse_secs("d", "1h"), Ok(3600.0));
        assert!(parse_secs("d", "m").is_err());
        assert!(parse_secs("d", "5x").is_err());
        assert!(parse_secs("d", "infh").is_err());
    }

    #[test]
    fn drop_times() {
        let s = [
            (1.0, 5),
            (10.0, 5),
            (20.0, 7),
            (30.0, 7),
            (40.0, 6),
            (50.0, 5),
            (60.0, 5),
        ];
        assert_eq!(drop_time(&s, 5.0, 5), (Some(7), Some(50.0)));
        assert_eq!(drop_time(&s, 5.0, 4), (Some(7), None));
        assert_eq!(drop_time(&s[..2], 0.0, 5), (Some(5), None));
        assert_eq!(drop_time(&[], 0.0, 5), (None, None));
        assert_eq!(drop_time(&s, 100.0, 5), (None, None));
    }

    #[test]
    fn rejects_bad_command_lines() {
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&args("bogus --url x")).is_err());
        assert!(parse_args(&args("api")).is_err());
        assert!(parse_args(&args("api --url a --spawn b")).is_err());
        assert!(parse_args(&args("api --url a --n")).is_err());
        assert!(parse_args(&args("api --url a --n x")).is_err());
        assert!(parse_args(&args("api --url a --rate 0")).is_err());
        assert!(parse_args(&args("api --url a --frob 1")).is_err());
        assert!(parse_args(&args("api --url a --env novalue")).is_err());
        assert!(parse_args(&args("clientevents --url a --group 1")).is_err());
        assert!(parse_args(&args("fanout --url a --duration -1")).is_err());
        // cluster starts its own nodes and needs one to publish and one to subscribe.
        assert!(parse_args(&args("cluster --url ws://127.0.0.1:1")).is_err());
        assert!(parse_args(&args("cluster")).is_err());
        assert!(parse_args(&args("cluster --spawn r --nodes 1")).is_err());
        assert!(parse_args(&args("cluster --spawn r --nodes 0 --local-too")).is_err());
        assert!(parse_args(&args("cluster --spawn r --nodes 65")).is_err());
        assert!(parse_args(&args("cluster --spawn r --nodes x")).is_err());
        assert!(parse_args(&args("cluster --spawn r --form-timeout -1")).is_err());
        assert!(parse_args(&args("cluster --spawn r --form-timeout 0")).is_err());
        assert!(parse_args(&args("cluster --spawn r --redis-server")).is_err());
        assert_eq!(parse_args(&args("api --help")), Err(String::new()));
    }
}

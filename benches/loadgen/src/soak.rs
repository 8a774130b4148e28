//! `loadgen soak`: a long run with churn, steady fanout and the server's RSS and fds sampled.
//!
//! - Steady part (the engine's fanout): `--n` subscribers over `--channels` public channels,
//!   `--rate` API publishes per second for `--duration`; every delivery is checked (lost,
//!   duplicates) as in `fanout`.
//! - Churn (blocking sockets on `--churn-threads` threads): `--churn` connection slots; each
//!   connection connects, subscribes to a public, a private, a presence and a cache channel
//!   (of `--churn-channels` of each kind, signed with the app secret), sends a client event
//!   on the private and the presence channel, signs in, lives `--life-min..--life-max`
//!   seconds, and ends by [`churn_plan`]: a close frame (clean), dropping the socket (FIN),
//!   a reset (SO_LINGER 0), or a drop right after `pusher:connection_established`.
//! - Every `--sample` seconds the server's `VmRSS` and open fds (`/proc/PID/fd`) are read.
//!
//! "Flat" ([`Drift`]): the run is cut into quarters by time; the first is warm-up; the drift
//! is the mean of the last quarter minus the mean of the second. RSS is flat when
//! |drift| <= `--max-rss-drift-mib` MiB, fds when |drift| <= `--max-fd-drift`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::engine::PubPlan;
use crate::proto::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use crate::stats::{latency_summary, round3};
use crate::{Run, merge, status_map};

// ---- pure pieces -----------------------------------------------------------------------

/// How a churning connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame (1000), then wait for the server's close frame.
    Clean,
    /// Drop the socket (FIN) without a close frame.
    Fin,
    /// Reset the connection (SO_LINGER 0, then close).
    Rst,
    /// Drop (FIN) right after `pusher:connection_established`, before subscribing.
    Early,
}

/// What the `k`-th churning connection does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnPlan {
    /// Index of the channels (of each kind) it joins.
    pub channel: usize,
    /// How long it stays connected once set up.
    pub life: Duration,
    pub ending: Ending,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The deterministic plan of the `k`-th connection: endings 50 % clean, 25 % FIN, 15 %
/// reset, 10 % early; life uniform in `[life_min, life_max]` seconds; channel uniform.
pub fn churn_plan(k: u64, channels: usize, life_min: f64, life_max: f64) -> ChurnPlan {
    let h = splitmix64(k);
    let ending = match h % 20 {
        0..=9 => Ending::Clean,
        10..=14 => Ending::Fin,
        15..=17 => Ending::Rst,
        _ => Ending::Early,
    };
    let frac = ((h >> 11) & 0xffff) as f64 / 65_535.0;
    let life = life_min + frac * (life_max - life_min).max(0.0);
    let channel = (splitmix64(h) % channels.max(1) as u64) as usize;
    ChurnPlan {
        channel,
        life: Duration::from_secs_f64(life),
        ending,
    }
}

/// Figures of one sampled series after warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub q2_mean: f64,
    pub q4_mean: f64,
    /// `q4_mean - q2_mean`.
    pub drift: f64,
    /// Samples after warm-up.
    pub samples: usize,
}

/// [`Drift`] of `(t, value)` samples over the run `[0, end]`: quarters by time, the first
/// one warm-up; `None` if the second or the last quarter holds no sample.
pub fn drift(samples: &[(f64, f64)], end: f64) -> Option<Drift> {
    let q = end / 4.0;
    let after: Vec<(f64, f64)> = samples.iter().copied().filter(|(t, _)| *t >= q).collect();
    let mean = |lo: f64, hi: f64| {
        let v: Vec<f64> = after
            .iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, v)| *v)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let q2 = mean(q, 2.0 * q)?;
    let q4 = mean(3.0 * q, f64::INFINITY)?;
    Some(Drift {
        min: after.iter().map(|s| s.1).fold(f64::INFINITY, f64::min),
        max: after.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max),
        last: after.last()?.1,
        q2_mean: q2,
        q4_mean: q4,
        drift: q4 - q2,
        samples: after.len(),
    })
}

/// Flat: a drift was measured and its size is within `bound`.
pub fn flat(d: Option<&Drift>, bound: f64) -> bool {
    d.is_some_and(|d| d.drift.abs() <= bound)
}

fn drift_json(d: Option<&Drift>, bound: f64) -> Value {
    match d {
        None => json!({"flat": false, "bound": bound, "note": "too few samples"}),
        Some(d) => json!({
            "min": d.min, "max": d.max, "last": d.last,
            "q2_mean": round3(d.q2_mean), "q4_mean": round3(d.q4_mean),
            "drift": round3(d.drift), "bound": bound, "samples": d.samples,
            "flat": flat(Some(d), bound),
        }),
    }
}

/// Open file descriptors of process `pid`.
pub fn read_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

// ---- churn -----------------------------------------------------------------------------

/// Settings of the churn threads.
#[derive(Clone)]
pub struct ChurnCfg {
    pub server: SocketAddr,
    pub app_key: String,
    pub secret: String,
    pub channels: usize,
    pub life_min: f64,
    pub life_max: f64,
}

/// Churn counters (summed over the threads).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub connects: u64,
    pub established: u64,
    pub subscribed: [u64; 4],
    pub client_events: u64,
    pub signins: u64,
    pub clean_closes: u64,
    /// Clean closes the server answered with its close frame.
    pub close_acked: u64,
    pub fin_drops: u64,
    pub rst_drops: u64,
    pub early_drops: u64,
    /// Connections the server ended while held (not by us).
    pub server_ended: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    pub open: u64,
}

impl Counts {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.error_samples.len() < 10 {
            self.error_samples.push(e);
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "connects": self.connects,
            "established": self.established,
            "subscribed": {
                "public": self.subscribed[0], "private": self.subscribed[1],
                "presence": self.subscribed[2], "cache": self.subscribed[3],
            },
            "client_events_sent": self.client_events,
            "signins": self.signins,
            "clean_closes": self.clean_closes,
            "clean_closes_acked": self.close_acked,
            "abrupt_fin": self.fin_drops,
            "abrupt_rst": self.rst_drops,
            "early_drops": self.early_drops,
            "ended_by_server": self.server_ended,
            "errors": self.errors,
            "error_samples": self.error_samples,
        })
    }
}

/// One blocking WebSocket client.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    mask: u32,
}

const IO_TIMEOUT: Duration = Duration::from_secs(5);

impl Client {
    fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.mask = self
            .mask
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let f = proto::masked_frame(opcode, payload, self.mask.to_be_bytes());
        self.s.write_all(&f)
    }

    fn send_json(&mut self, v: &Value) -> io::Result<()> {
        self.send(OP_TEXT, v.to_string().as_bytes())
    }

    /// The next text message (answering pings), or an error (close frame, EOF, timeout).
    fn next_text(&mut self) -> Result<Vec<u8>, String> {
        loop {
            if let Some(f) = proto::parse_frame(&self.buf)? {
                let payload = self.buf[f.start..f.end].to_vec();
                self.buf.drain(..f.end);
                match f.opcode {
                    OP_TEXT => return Ok(payload),
                    OP_PING => self.send(OP_PONG, &payload).map_err(|e| e.to_string())?,
                    OP_CLOSE => {
                        return Err(format!("close frame {:?}", proto::close_code(&payload)));
                    }
                    _ => {}
                }
                continue;
            }
            let mut tmp = [0u8; 16 * 1024];
            match self.s.read(&mut tmp) {
                Ok(0) => return Err("EOF".into()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Read until a message with `event` (and `channel`, if given) arrives.
    fn wait_for(&mut self, event: &str, channel: Option<&str>) -> Result<Value, String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                return Err(format!("no {event} in time"));
            }
            let text = self.next_text()?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if v["event"] == "pusher:error" {
                return Err(format!("pusher:error {}", v["data"]));
            }
            if v["event"] == event && channel.is_none_or(|c| v["channel"] == c) {
                return Ok(v);
            }
        }
    }

    /// Read what arrived without blocking (answering pings); false once the server ended it.
    fn drain(&mut self) -> bool {
        if self.s.set_nonblocking(true).is_err() {
            return false;
        }
        let mut alive = true;
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => {
                    alive = false;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    alive = false;
                    break;
                }
            }
        }
        let _ = self.s.set_nonblocking(false);
        while let Ok(Some(f)) = proto::parse_frame(&self.buf) {
            let (op, payload) = (f.opcode, self.buf[f.start..f.end].to_vec());
            self.buf.drain(..f.end);
            if op == OP_CLOSE {
                alive = false;
            } else if op == OP_PING {
                let _ = self.send(OP_PONG, &payload);
            } else if op == OP_TEXT && payload.windows(11).any(|w| w == b"pusher:ping") {
                let _ = self.send_json(&json!({"event": "pusher:pong", "data": {}}));
            }
        }
        alive
    }
}

/// The sign-in's `user_data` of the `k`-th connection.
pub fn user_data(k: u64) -> String {
    json!({"id": format!("soak-{k}"), "user_info": {"k": k}}).to_string()
}

/// Connect, set up, and return the client with its plan (or the error).
fn open(cfg: &ChurnCfg, k: u64, plan: &ChurnPlan, c: &Mutex<Counts>) -> Result<Client, String> {
    let s = TcpStream::connect_timeout(&cfg.server, IO_TIMEOUT).map_err(|e| e.to_string())?;
    c.lock().unwrap().connects += 1;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let mut cl = Client {
        s,
        buf: Vec::new(),
        mask: k as u32,
    };
    cl.s.write_all(&proto::upgrade_request(cfg.server, &cfg.app_key))
        .map_err(|e| e.to_string())?;
    let head = loop {
        if let Some(h) = proto::parse_http_head(&cl.buf)? {
            break h;
        }
        let mut tmp = [0u8; 4096];
        match cl.s.read(&mut tmp) {
            Ok(0) => return Err("EOF during the handshake".into()),
            Ok(n) => cl.buf.extend_from_slice(&tmp[..n]),
            Err(e) => return Err(format!("handshake: {e}")),
        }
    };
    if head.status != 101 {
        return Err(format!("upgrade answered {}", head.status));
    }
    cl.buf.drain(..head.head_len);
    let est = cl.wait_for("pusher:connection_established", None)?;
    let data: Value = serde_json::from_str(est["data"].as_str().unwrap_or("")).unwrap_or_default();
    let socket_id = data["socket_id"]
        .as_str()
        .ok_or("no socket_id")?
        .to_string();
    c.lock().unwrap().established += 1;
    if plan.ending == Ending::Early {
        return Ok(cl);
    }
    let ch = plan.channel;
    let (key, secret) = (cfg.app_key.as_str(), cfg.secret.as_str());
    let public = format!("soak-{ch}");
    let private = format!("private-soak-{ch}");
    let presence = format!("presence-soak-{ch}");
    let cache = format!("cache-soak-{ch}");
    let member = json!({"user_id": format!("soak-{k}"), "user_info": {"k": k}}).to_string();
    let subs = [
        json!({"event": "pusher:subscribe", "data": {"channel": public}}),
        json!({"event": "pusher:subscribe", "data": {"channel": private,
            "auth": proto::channel_auth(key, secret, &socket_id, &private)}}),
        json!({"event": "pusher:subscribe", "data": {"channel": presence,
            "auth": proto::presence_auth(key, secret, &socket_id, &presence, &member),
            "channel_data": member}}),
        json!({"event": "pusher:subscribe", "data": {"channel": cache}}),
    ];
    for (i, (sub, name)) in subs
        .iter()
        .zip([&public, &private, &presence, &cache])
        .enumerate()
    {
        cl.send_json(sub).map_err(|e| e.to_string())?;
        cl.wait_for("pusher_internal:subscription_succeeded", Some(name))
            .map_err(|e| format!("subscribe {name}: {e}"))?;
        c.lock().unwrap().subscribed[i] += 1;
    }
    for name in [&private, &presence] {
        cl.send_json(&json!({"event": "client-soak", "channel": name, "data": {"k": k}}))
            .map_err(|e| e.to_string())?;
        c.lock().unwrap().client_events += 1;
    }
    let ud = user_data(k);
    cl.send_json(&json!({"event": "pusher:signin", "data": {
        "user_data": ud, "auth": proto::user_auth(key, secret, &socket_id, &ud)}}))
        .map_err(|e| e.to_string())?;
    cl.wait_for("pusher:signin_success", None)
        .map_err(|e| format!("signin: {e}"))?;
    c.lock().unwrap().signins += 1;
    Ok(cl)
}

fn set_linger_zero(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own with a pointer to a live local of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// End a client as planned.
fn end(mut cl: Client, ending: Ending, c: &Mutex<Counts>) {
    match ending {
        Ending::Clean => {
            let acked = cl.send(OP_CLOSE, &1000u16.to_be_bytes()).is_ok() && {
                let _ = cl.s.set_read_timeout(Some(Duration::from_secs(2)));
                matches!(cl.next_text_until_close(), Ok(true))
            };
            let mut c = c.lock().unwrap();
            c.clean_closes += 1;
            c.close_acked += u64::from(acked);
        }
        Ending::Fin => c.lock().unwrap().fin_drops += 1,
        Ending::Rst => {
            set_linger_zero(&cl.s);
            c.lock().unwrap().rst_drops += 1;
        }
        Ending::Early => c.lock().unwrap().early_drops += 1,
    }
}

impl Client {
    /// After our close frame: Ok(true) once the server's close frame arrives.
    fn next_text_until_close(&mut self) -> Result<bool, String> {
        loop {
            match self.next_text() {
                Ok(_) => continue,
                Err(e) if e.starts_with("close frame") => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }
}

/// One churn thread: `slots` connection slots, connection numbers `first, first + step, ...`.
fn churn_thread(
    cfg: ChurnCfg,
    first: u64,
    step: u64,
    slots: usize,
    stop: Arc<AtomicBool>,
    c: Arc<Mutex<Counts>>,
) {
    struct Slot {
        live: Option<(Client, Ending)>,
        due: Instant,
        generation: u64,
    }
    let start = Instant::now();
    let mut k = first;
    let mut slot: Vec<Slot> = (0..slots)
        .map(|_| Slot {
            live: None,
            due: start,
            generation: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (i, s) in slot.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if now < s.due {
                if let Some((cl, _)) = s.live.as_mut()
                    && !cl.drain()
                {
                    s.live = None;
                    let mut c = c.lock().unwrap();
                    c.server_ended += 1;
                    c.open -= 1;
                    s.due = now;
                }
                continue;
            }
            if let Some((cl, ending)) = s.live.take() {
                end(cl, ending, &c);
                c.lock().unwrap().open -= 1;
            }
            let plan = churn_plan(k, cfg.channels, cfg.life_min, cfg.life_max);
            let res = open(&cfg, k, &plan, &c);
            k += step;
            match res {
                Ok(cl) if plan.ending == Ending::Early => {
                    end(cl, Ending::Early, &c);
                    s.due = Instant::now();
                }
                Ok(cl) => {
                    // The first generation's lives are staggered so the churn is even.
                    let life = if s.generation == 0 {
                        plan.life.mul_f64((i + 1) as f64 / slots as f64)
                    } else {
                        plan.life
                    };
                    s.generation += 1;
                    s.due = Instant::now() + life;
                    s.live = Some((cl, plan.ending));
                    c.lock().unwrap().open += 1;
                }
                Err(e) => {
                    c.lock().unwrap().error(format!("connection {k}: {e}"));
                    s.due = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in slot {
        if let Some((cl, _)) = s.live {
            end(cl, Ending::Clean, &c);
            c.lock().unwrap().open -= 1;
        }
    }
}

// ---- the mode --------------------------------------------------------------------------

pub fn mode_soak(r: &Run, addr: SocketAddr) -> Result<Value, String> {
    let o = r.o;
    let rss_start = r.rss();
    let fds_start = r.pid.and_then(read_fds);
    let mut b = r.bench(addr, o.channels, false)?;
    let (ready, subscribed) = r.open_publishers_and_subscribers(&mut b);
    let rss_steady = r.rss();
    let fds_steady = r.pid.and_then(read_fds);
    // Churn.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let cfg = ChurnCfg {
        server: addr,
        app_key: o.app_key.clone(),
        secret: o.secret.clone(),
        channels: o.churn_channels,
        life_min: o.life_min,
        life_max: o.life_max,
    };
    let threads = o.churn_threads.min(o.churn.max(1));
    let mut handles = Vec::new();
    for t in 0..threads {
        let slots = o.churn / threads + usize::from(t < o.churn % threads);
        if slots == 0 {
            continue;
        }
        let (cfg, stop, c) = (cfg.clone(), stop.clone(), counts.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("churn-{t}"))
                .spawn(move || churn_thread(cfg, t as u64, threads as u64, slots, stop, c))
                .map_err(|e| format!("churn thread: {e}"))?,
        );
    }
    // Steady publishes, sampled.
    let start = Instant::now();
    let stop_at = (start + Duration::from_secs_f64(o.duration)).min(r.deadline);
    b.pub_plan = Some(PubPlan {
        start,
        rate: Some(o.rate),
        stop: stop_at,
        issued: 0,
        groups: o.channels,
    });
    let every = Duration::from_secs_f64(o.sample);
    let mut samples = Vec::new();
    let (mut rss_s, mut fd_s) = (Vec::new(), Vec::new());
    let mut next = start;
    let mut lat_all: Vec<u64> = Vec::new();
    loop {
        b.run_until(next.min(stop_at), |_| false);
        let now = Instant::now();
        let t = now.duration_since(start).as_secs_f64();
        let rss = r.rss();
        let fds = r.pid.and_then(read_fds);
        let c = counts.lock().unwrap().clone();
        let mut lat = std::mem::take(&mut b.lat[0]);
        let window = latency_summary(&mut lat);
        // Keep a bounded sample of the latencies for the run's summary.
        lat_all.extend(lat.iter().step_by((lat.len() / 2000).max(1)));
        if let Some(v) = rss {
            rss_s.push((t, v as f64));
        }
        if let Some(v) = fds {
            fd_s.push((t, v as f64));
        }
        let sample = json!({
            "t_s": round3(t), "rss_bytes": rss, "fds": fds,
            "churn_open": c.open, "churn_connects": c.connects, "churn_errors": c.errors,
            "delivered": b.delivered, "latency_p99_ms": window["p99"],
            "latency_max_ms": window["max"],
        });
        eprintln!("loadgen soak: {sample}");
        samples.push(sample);
        if now >= stop_at {
            break;
        }
        next += every;
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let sent = b.pub_plan.as_ref().map_or(0, |p| p.issued);
    let drained = r.drain(&mut b);
    b.pub_plan = None;
    let elapsed = start.elapsed().as_secs_f64();
    let end_t = stop_at.duration_since(start).as_secs_f64();
    let rss_d = drift(&rss_s, end_t);
    let fd_d = drift(&fd_s, end_t);
    let rss_bound = o.max_rss_drift_mib * 1_048_576.0;
    let rss_flat = flat(rss_d.as_ref(), rss_bound);
    let fd_flat = flat(fd_d.as_ref(), o.max_fd_drift);
    let loss = b.loss_report();
    let c = counts.lock().unwrap().clone();
    let mut rep = json!({
        "ok": ready && loss["lost"] == 0 && loss["duplicates"] == 0 && rss_flat && fd_flat,
        "duration_s": o.duration,
        "sample_s": o.sample,
        "subscribers": subscribed,
        "subscribers_closed": subscribed - b.subscribed().0,
        "channels": o.channels,
        "rate": o.rate,
        "payload": o.payload,
        "churn": o.churn,
        "churn_channels": o.churn_channels,
        "life_s": [o.life_min, o.life_max],
        "flat_means": "quarters by time, the first warm-up; drift = last-quarter mean - second-quarter mean; flat when |drift| <= bound",
        "rss_start_bytes": rss_start,
        "rss_steady_set_up_bytes": rss_steady,
        "fds_start": fds_start,
        "fds_steady_set_up": fds_steady,
        "rss_after_warmup": drift_json(rss_d.as_ref(), rss_bound),
        "fds_after_warmup": drift_json(fd_d.as_ref(), o.max_fd_drift),
        "rss_end_bytes": r.rss(),
        "fds_end": r.pid.and_then(read_fds),
        "publishes_sent": sent,
        "publish_status": status_map(&b),
        "drained": drained,
        "deliveries": b.delivered,
        "loss": loss,
        "latency_ms_sampled": latency_summary(&mut lat_all),
        "churn_counts": c.to_json(),
        "load_elapsed_s": round3(elapsed),
    });
    merge(&mut rep, json!({ "samples": samples }));
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::read_rss;

    #[test]
    fn plans_mix_endings_and_lives() {
        let mut n = [0u32; 4];
        let mut chans = vec![0u32; 7];
        for k in 0..20_000 {
            let p = churn_plan(k, 7, 2.0, 6.0);
            assert!(p.life >= Duration::from_secs(2) && p.life <= Duration::from_secs(6));
            assert_eq!(p, churn_plan(k, 7, 2.0, 6.0), "deterministic");
            chans[p.channel] += 1;
            n[match p.ending {
                Ending::Clean => 0,
                Ending::Fin => 1,
                Ending::Rst => 2,
                Ending::Early => 3,
            }] += 1;
        }
        // 50 / 25 / 15 / 10 %, within 2 points.
        for (got, want) in n.iter().zip([10_000, 5_000, 3_000, 2_000]) {
            assert!((*got as i64 - want).abs() < 400, "{n:?}");
        }
        assert!(chans.iter().all(|&c| c > 2_500), "{chans:?}");
        let fixed = churn_plan(1, 1, 3.0, 3.0);
        assert_eq!((fixed.channel, fixed.life), (0, Duration::from_secs(3)));
        // A zero channel count does not divide by zero.
        assert_eq!(churn_plan(5, 0, 1.0, 2.0).channel, 0);
    }

    #[test]
    fn drift_of_quarters() {
        // 0..100 s, one sample a second: warm-up grows, then flat at 50 except the last
        // quarter at 52.
        let s: Vec<(f64, f64)> = (0..=100)
            .map(|t| {
                let t = t as f64;
                let v = if t < 25.0 {
                    t * 2.0
                } else if t < 75.0 {
                    50.0
                } else {
                    52.0
                };
                (t, v)
            })
            .collect();
        let d = drift(&s, 100.0).unwrap();
        assert_eq!((d.min, d.max, d.last), (50.0, 52.0, 52.0));
        assert_eq!((d.q2_mean, d.q4_mean, d.drift), (50.0, 52.0, 2.0));
        assert_eq!(d.samples, 76);
        assert!(flat(Some(&d), 2.0));
        assert!(!flat(Some(&d), 1.9));
        // A shrink counts as well.
        let down: Vec<(f64, f64)> = s.iter().map(|&(t, v)| (t, -v)).collect();
        assert_eq!(drift(&down, 100.0).unwrap().drift, -2.0);
        assert!(!flat(Some(&drift(&down, 100.0).unwrap()), 1.0));
        // A steady leak of one unit a second shows as the half-run's growth.
        let leak: Vec<(f64, f64)> = (0..=100).map(|t| (t as f64, t as f64)).collect();
        let d = drift(&leak, 100.0).unwrap();
        assert_eq!(d.drift, 87.5 - 37.0);
        // Too few samples: no verdict, not flat.
        assert_eq!(drift(&[(0.0, 1.0), (99.0, 1.0)], 100.0), None);
        assert!(!flat(None, 1e9));
    }

    #[test]
    fn fds_of_this_process() {
        // Stdin, stdout, stderr at least (other tests open and close fds meanwhile).
        assert!(read_fds(std::process::id()).unwrap() >= 3);
        assert_eq!(read_fds(u32::MAX), None);
        assert!(read_rss(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn user_data_is_json() {
        let v: Value = serde_json::from_str(&user_data(7)).unwrap();
        assert_eq!(v["id"], "soak-7");
    }
}

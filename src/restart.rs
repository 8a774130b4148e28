//! `revurb restart`: ask running servers to close every connection with
//! 4200 and exit 0, for their supervisor to start them again.
//!
//! Two ways, chosen by [`run`]:
//! - with scaling on (and no explicit `--pid-file`), a restart message goes
//!   to every node over the Redis scaling channel ([`publish_once`]);
//! - otherwise the server named by the pid file gets SIGTERM, and the
//!   command waits for it to stop: the server's `drain_window` (it closes
//!   its WebSockets spread over it, see `event_loop::drain`) plus 15 s.
//!
//! Either way the server drains: `/up` answers 503 and new WebSockets are
//! refused with 503 while it closes its clients over the window.
//!
//! This is the one place outside the event loop that opens a socket: a
//! blocking, one-shot Redis connection driven by the same sans-IO
//! [`Client`] the server uses. It does not run in the server process.
//!
//! Exit status: 0 sent (and stopped), 1 nothing reached or the signal
//! failed, 2 the configuration cannot be read or names no pid file.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::Flags;
use crate::config::{Config, Key, Scaling};
use crate::pusher::cluster::envelope::{Body, Envelope};
use crate::pusher::cluster::seal::Seal;
use crate::redis::Target;
use crate::redis::client::{self, Client, Role};
use crate::sys;

/// How long a stopped server may take to exit, beyond its drain window.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Redis may take to connect or answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// The `restart` command.
pub fn run(flags: &Flags) -> ExitCode {
    // The server's drain window, as far as this command can tell (the same
    // .env, file and flags); the option's default without a configuration.
    let window = Config::from_process(flags).map_or_else(
        |_| {
            Key::DrainWindow
                .opt()
                .default
                .and_then(|d| d.parse().ok())
                .unwrap_or(0)
        },
        |c| c.drain_window,
    );
    // With scaling on, the signal goes to every node through Redis; an
    // explicit --pid-file restarts just that server.
    if flags.get(Key::PidFile).is_none() {
        match Config::from_process(flags) {
            Ok(cfg) => {
                if let Some(sc) = &cfg.scaling {
                    return restart_cluster(sc, &cfg.apps);
                }
            }
            Err(e) => {
                eprintln!("revurb: cannot read the configuration to find the server(s): {e}");
                return ExitCode::from(2);
            }
        }
    }
    let pid_file = match pid_file(flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let pid = match read_pid(&pid_file) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    if let Err(e) = sys::signal_process(pid, libc::SIGTERM) {
        eprintln!("revurb: cannot signal pid {pid}: {e}");
        return ExitCode::from(1);
    }
    println!("Broadcasting revurb restart signal (pid {pid}).");
    let timeout = STOP_TIMEOUT + Duration::from_secs(window);
    if !wait_until_stopped(pid, timeout) {
        eprintln!(
            "revurb: pid {pid} is still running after {} s",
            timeout.as_secs()
        );
        return ExitCode::from(1);
    }
    println!("The server closed its connections and stopped; its supervisor will start it again.");
    ExitCode::SUCCESS
}

/// `--pid-file`, or the one the configuration names.
pub(crate) fn pid_file(flags: &Flags) -> Result<PathBuf, ExitCode> {
    match (flags.get(Key::PidFile), Config::from_process(flags)) {
        (Some(p), _) => Ok(PathBuf::from(p)),
        (None, Ok(cfg)) => cfg.pid_file.ok_or_else(|| {
            eprintln!(
                "revurb: restart and upgrade need the server's pid file: start the server with --pid-file FILE \
                 (or REVERB_PID_FILE, or servers.reverb.pid_file) and give the same to the command"
            );
            ExitCode::from(2)
        }),
        (None, Err(e)) => {
            eprintln!("revurb: cannot find the pid file: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// The pid in the file, if it names a running revurb.
pub(crate) fn read_pid(pid_file: &PathBuf) -> Result<i32, ExitCode> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        eprintln!(
            "revurb: cannot read pid file {}: {e} (is the server running?)",
            pid_file.display()
        );
        ExitCode::from(1)
    })?;
    let Ok(pid) = text.trim().parse::<i32>() else {
        eprintln!(
            "revurb: pid file {} does not hold a pid: {:?}",
            pid_file.display(),
            text.trim()
        );
        return Err(ExitCode::from(1));
    };
    // a stale pid file may name a process that is not ours
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if pid <= 1 || !comm.trim().starts_with("revurb") {
        eprintln!(
            "revurb: no revurb process with pid {pid} (stale pid file {}?)",
            pid_file.display()
        );
        return Err(ExitCode::from(1));
    }
    Ok(pid)
}

/// Wait for `pid` to exit; false if it is still running after `timeout`.
fn wait_until_stopped(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let running = || {
        // a zombie (exited, not yet reaped by its parent) counts as stopped
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
    };
    while running() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// With scaling: publish a restart message on the scaling channel; every
/// node that receives it closes its connections with 4200 and exits 0 for
/// its supervisor to start it again.
fn restart_cluster(sc: &Scaling, apps: &[crate::pusher::App]) -> ExitCode {
    let node = format!("restart-{}", std::process::id());
    // signed like the nodes' own messages, or they refuse it
    let seal = Seal::new(&sc.channel, sc.secret.as_deref(), apps);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let payload = seal.seal(&Envelope::new(&node, 1, Body::Restart).encode(), unix);
    match publish_once(&sc.redis, &sc.channel, &payload, REDIS_TIMEOUT) {
        Ok(0) => {
            eprintln!(
                "revurb: no node is subscribed to Redis channel {:?} at {}; nothing restarted",
                sc.channel, sc.redis
            );
            ExitCode::from(1)
        }
        Ok(n) => {
            println!(
                "Broadcasting revurb restart signal to {n} node(s) over Redis channel {:?}.",
                sc.channel
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("revurb: cannot send the restart signal: {e}");
            ExitCode::from(1)
        }
    }
}

/// Publish one message and return how many subscribers received it: a
/// blocking, one-shot use of the same [`Client`] the server drives in its
/// event loop.
pub fn publish_once(
    target: &Target,
    channel: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<i64, String> {
    let mut stream = connect(target, timeout)?;
    let mut c = Client::new(Role::Publisher, target, channel);
    c.connecting(0);
    c.connected(0);
    let mut payload = Some(payload);
    let mut chunk = [0u8; 4096];
    loop {
        if !c.output().is_empty() {
            stream
                .write_all(c.output())
                .and_then(|_| stream.flush())
                .map_err(|e| format!("cannot write to Redis at {target}: {e}"))?;
            c.wrote(c.output().len());
        }
        while let Some(event) = c.poll_event() {
            match event {
                client::Event::Ready => {
                    if let Some(p) = payload.take() {
                        c.publish(0, p.into(), true);
                    }
                }
                client::Event::Published(receivers) => return Ok(receivers),
                client::Event::Message(_) => {}
            }
        }
        if !c.output().is_empty() {
            continue;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("no reply from Redis at {target}: {e}"))?;
        if n == 0 {
            return Err(format!("Redis at {target} closed the connection"));
        }
        c.received(0, &chunk[..n]).map_err(|e| e.0)?;
    }
}

/// A blocking connection to Redis (TLS for `rediss://`), with `timeout` on
/// the connect and on every read and write.
fn connect(target: &Target, timeout: Duration) -> Result<Box<dyn ReadWrite>, String> {
    let addr = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", target.host))?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to Redis at {target}: {e}"))?;
    tcp.set_read_timeout(Some(timeout)).ok();
    tcp.set_write_timeout(Some(timeout)).ok();
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let cfg = crate::tls::client_config()?;
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| format!("{:?} is not a valid TLS server name: {e}", target.host))?;
    let conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

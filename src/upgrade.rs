//! `revurb upgrade` (issue 14): a new binary takes over every live
//! connection, in the same process.
//!
//! The pieces, and who owns each:
//!
//! - **The command** ([`run`]): finds the server through its pid file as
//!   `restart` does, removes the old status file, sends SIGUSR2 and waits
//!   for the status file ([`status_path`]: the pid file's name with
//!   `.upgrade` appended) to say how it went: `ok <pid>` written by the new
//!   binary once it has taken over, or `failed: <reason>` written by the old
//!   one, which goes on serving. Exit 0, or 1 with the reason.
//! - **The preflight** (the loop's `event_loop::upgrade`): on SIGUSR2 the
//!   server writes the hand-over as it stands and runs the binary at the
//!   path it was started from ([`start_path`], resolved once at start: after
//!   a deploy renamed a new file over it, that path names the new binary,
//!   while `/proc/self/exe` is still the old inode) as
//!   `revurb upgrade-check` with the server's own flags ([`CHECK_COMMAND`],
//!   hidden, [`check`]): it must run, read this hand-over format and
//!   version, and accept the configuration on disk now, within
//!   [`CHECK_TIMEOUT`]. The loop does not wait for it: it polls the child.
//! - **The hand-over** ([`Handover`]): plain JSON in a 0600 file under the
//!   temporary directory, named to the new image by [`ENV_STATE`] and
//!   removed once read. It holds the loop's clock, the listeners'
//!   descriptors, each connection's descriptor, phase, unread tail,
//!   partial message and unsent bytes, and the hub ([`HubState`]).
//!   Everything is checked on read ([`Handover::check`]), as untrusted.
//! - **The exec** and **the resume**: `event_loop::upgrade`; the only
//!   `unsafe` (descriptors kept across `execve`, then adopted) is
//!   [`crate::sys`]'s.
//!
//! What is not handed over, and what happens to it, is in revurb(1) NOTES.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::Flags;
use crate::pusher::handover::HubState;
use crate::sys;

/// The hidden command the preflight runs on the new binary.
pub const CHECK_COMMAND: &str = "upgrade-check";
/// The environment variable that names the hand-over file to the new image.
pub const ENV_STATE: &str = "REVURB_UPGRADE_STATE";
/// The version of [`Handover`]; another is refused.
pub const VERSION: u32 = 1;
/// How long the new binary may take to pass the preflight.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `revurb upgrade` waits for the outcome.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest hand-over file read (about 50 000 bytes per connection would
/// still fit for 20 000 connections).
pub const MAX_STATE_BYTES: u64 = 1 << 30;
/// Largest unread tail or unsent queue carried per connection (hex doubles it).
const MAX_CONN_BYTES: usize = 64 * 1024 * 1024;
/// Held publishes carried at most: the outage queue's highest limit
/// (`REVERB_SCALING_QUEUE_LIMIT`) plus what the publisher had written.
const MAX_PUBLISHES: usize = 20_000_000;
/// Largest held publish carried.
const MAX_PUBLISH_BYTES: usize = MAX_CONN_BYTES;

/// Everything the old image hands to the new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    pub version: u32,
    /// The loop's clock (ms) when it was written, and the wall clock then:
    /// the new image starts its clock where the old one was, plus the time
    /// the exec took, so every deadline carries over unchanged.
    pub clock_ms: u64,
    pub unix_ms: u64,
    /// The main listener's descriptor, and the metrics listener's.
    pub listener: i32,
    pub metrics_listener: Option<i32>,
    pub conns: Vec<ConnHandover>,
    pub hub: HubState,
    /// With scaling: a subscriber connection the old image opened and
    /// subscribed just before the exec (over `rediss://` with its TLS 1.3
    /// record layer), so that nothing the other nodes publish during the
    /// switch is missed.
    #[serde(default)]
    pub redis: Option<RedisHandover>,
    /// With scaling: the durable publishes not known to have reached Redis
    /// (unsigned envelopes, hex), oldest first; the new image sends them
    /// before its own.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// Webhook events not yet delivered, per webhook.
    #[serde(default)]
    pub webhooks: Vec<crate::webhook::dispatch::HookExport>,
}

/// The subscriber connection an upgrade hands over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisHandover {
    pub fd: i32,
    /// Bytes of a reply not yet complete, hex.
    pub unread: String,
    /// Messages it received after subscribing, each hex.
    pub messages: Vec<String>,
    /// Over `rediss://`: the TLS 1.3 record layer of the connection (the
    /// bytes above are plaintext then).
    #[serde(default)]
    pub tls: Option<crate::tls_record::RecordsExport>,
}

/// One plain (not TLS) connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnHandover {
    pub slot: u32,
    pub generation: u32,
    pub fd: i32,
    pub phase: PhaseHandover,
    /// The unread tail (an incomplete request or frame), hex.
    pub pending: String,
    /// Queued bytes not yet written, hex.
    pub unsent: String,
    pub writable: bool,
    /// A TLS 1.3 connection: its record layer (traffic keys, sequence
    /// numbers, the incomplete incoming record and the sealed bytes not
    /// yet written). `pending` and `unsent` are plaintext then.
    #[serde(default)]
    pub tls: Option<crate::tls_record::RecordsExport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PhaseHandover {
    Http {
        metrics: bool,
        deadline: u64,
    },
    WebSocket {
        max_message: usize,
        /// A fragmented message being joined: its bytes so far (hex) and
        /// whether it is binary.
        fragments: Option<(String, bool)>,
    },
    Closing {
        deadline: u64,
        write_shut: bool,
    },
}

impl Handover {
    /// Refuse what this version cannot take safely: another version, a
    /// descriptor that is a standard stream or given twice, a slot twice,
    /// oversized buffers, and whatever [`HubState::check`] refuses.
    pub fn check(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!(
                "hand-over format version {} (this binary reads version {VERSION})",
                self.version
            ));
        }
        let mut fds = std::collections::HashSet::new();
        let all = std::iter::once(self.listener)
            .chain(self.metrics_listener)
            .chain(self.redis.as_ref().map(|r| r.fd))
            .chain(self.conns.iter().map(|c| c.fd));
        for fd in all {
            if fd <= 2 || !fds.insert(fd) {
                return Err(format!(
                    "descriptor {fd} is a standard stream or given twice"
                ));
            }
        }
        let mut slots = std::collections::HashSet::new();
        for c in &self.conns {
            if c.slot >= crate::pusher::handover::MAX_SLOT || !slots.insert(c.slot) {
                return Err(format!("connection slot {} out of range or twice", c.slot));
            }
            let frag = match &c.phase {
                PhaseHandover::WebSocket {
                    fragments: Some((f, _)),
                    ..
                } => f.len(),
                _ => 0,
            };
            let tls = c
                .tls
                .as_ref()
                .map_or(0, |t| t.unsent.len().max(t.partial.len()));
            if [c.pending.len(), c.unsent.len(), frag, tls]
                .iter()
                .any(|n| *n > 2 * MAX_CONN_BYTES)
            {
                return Err(format!("connection slot {}: buffers too large", c.slot));
            }
        }
        if self.publishes.len() > MAX_PUBLISHES
            || self
                .publishes
                .iter()
                .any(|p| p.len() > 2 * MAX_PUBLISH_BYTES)
        {
            return Err("too many or too large held publishes".into());
        }
        self.hub.check()
    }
}

/// A fresh, private path for a hand-over file.
pub fn state_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "revurb-upgrade-{}-{nanos}.json",
        std::process::id()
    ))
}

/// Write `h` to a new file at `path`, readable by this user only.
pub fn write_state(path: &Path, h: &Handover) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let json = serde_json::to_vec(h).map_err(|e| format!("cannot encode the hand-over: {e}"))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(&json)
        .and_then(|_| f.flush())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Read and check a hand-over file (at most [`MAX_STATE_BYTES`]).
pub fn read_state(path: &Path) -> Result<Handover, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_STATE_BYTES} bytes",
            path.display()
        ));
    }
    let h: Handover = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a hand-over this binary reads: {e}",
            path.display()
        )
    })?;
    h.check()?;
    Ok(h)
}

/// Where the outcome of an upgrade is written: `<pid file>.upgrade`.
pub fn status_path(pid_file: &Path) -> PathBuf {
    let mut s = pid_file.as_os_str().to_owned();
    s.push(".upgrade");
    PathBuf::from(s)
}

/// Record the outcome for `revurb upgrade` (when there is a pid file):
/// `ok <pid>` or `failed: <reason>`.
pub fn write_status(pid_file: Option<&Path>, outcome: Result<(), &str>) {
    let Some(p) = pid_file else {
        return;
    };
    let text = match outcome {
        Ok(()) => format!("ok {}\n", std::process::id()),
        Err(reason) => format!("failed: {reason}\n"),
    };
    let path = status_path(p);
    let tmp = {
        let mut s = path.as_os_str().to_owned();
        s.push(".tmp");
        PathBuf::from(s)
    };
    // written whole, then renamed, so the command never reads half a line
    let written = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        crate::log_error!("cannot write the upgrade status {}: {e}", path.display());
    }
}

/// The path this process was started from, made absolute (not resolved:
/// a symlink a deploy swaps is followed again at the exec). `None` when
/// `argv[0]` is not a path and no `PATH` entry has it.
pub fn start_path() -> Option<PathBuf> {
    let argv0 = PathBuf::from(std::env::args_os().next()?);
    if argv0.components().count() > 1 || argv0.is_absolute() {
        if argv0.is_absolute() {
            return Some(argv0);
        }
        return std::env::current_dir().ok().map(|d| d.join(argv0));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(&argv0))
        .find(|p| p.is_file())
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map_or(p.clone(), |d| d.join(&p))
            }
        })
}

/// `revurb upgrade-check`, run by the old server on the new binary: the
/// configuration on disk loads and passes `revurb config`'s checks
/// (`preflight`, given by `main`), and the hand-over named by
/// [`ENV_STATE`] is one this binary reads. Exit 0, else 1 with the reason
/// on stderr (the old server logs it).
pub fn check(
    flags: &Flags,
    preflight: impl Fn(&crate::config::Config) -> Result<(), String>,
) -> ExitCode {
    let cfg = match crate::config::Config::from_process(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("the configuration does not load: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = preflight(&cfg) {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    let Some(path) = std::env::var_os(ENV_STATE) else {
        eprintln!("{ENV_STATE} is not set");
        return ExitCode::from(1);
    };
    match read_state(Path::new(&path)) {
        Ok(h) => {
            println!(
                "revurb {}: hand-over version {VERSION} with {} connections: ok",
                env!("CARGO_PKG_VERSION"),
                h.conns.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `revurb upgrade [--pid-file FILE]`: signal the server, wait for the
/// outcome. Exit 0 upgraded, 1 refused or failed (the reason on stderr;
/// the old binary is still serving), 2 no pid file configured.
pub fn run(flags: &Flags) -> ExitCode {
    let pid_file = match crate::restart::pid_file(flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let pid = match crate::restart::read_pid(&pid_file) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    let status = status_path(&pid_file);
    if let Err(e) = std::fs::remove_file(&status)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!(
            "revurb: cannot remove the old status file {}: {e}",
            status.display()
        );
        return ExitCode::from(1);
    }
    if let Err(e) = sys::signal_process(pid, libc::SIGUSR2) {
        eprintln!("revurb: cannot signal pid {pid}: {e}");
        return ExitCode::from(1);
    }
    println!("Asked revurb (pid {pid}) to upgrade in place.");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status) {
            let line = text.trim();
            if let Some(rest) = line.strip_prefix("ok ") {
                println!("Upgraded: the new binary serves every connection (pid {rest}).");
                return ExitCode::SUCCESS;
            }
            let reason = line.strip_prefix("failed: ").unwrap_or(line);
            eprintln!("revurb: upgrade refused, the old binary goes on serving: {reason}");
            return ExitCode::from(1);
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("revurb: pid {pid} exited during the upgrade");
            return ExitCode::from(1);
        }
        if Instant::now() > deadline {
            eprintln!(
                "revurb: no outcome from pid {pid} after {} s (see its log)",
                COMMAND_TIMEOUT.as_secs()
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handover {
        Handover {
            version: VERSION,
            clock_ms: 1234,
            unix_ms: 1_800_000_000_000,
            listener: 3,
            metrics_listener: Some(4),
            conns: vec![ConnHandover {
                slot: 0,
                generation: 2,
                fd: 7,
                phase: PhaseHandover::WebSocket {
                    max_message: 10_000,
                    fragments: Some((hex::encode(b"half"), false)),
                },
                pending: hex::encode([0x81, 0x85]),
                unsent: String::new(),
                writable: true,
                tls: None,
            }],
            hub: crate::pusher::Hub::new(vec![], 1, false).export(),
            redis: Some(RedisHandover {
                fd: 9,
                unread: hex::encode(b"*3\r\n"),
                messages: vec![hex::encode(b"{}")],
                tls: None,
            }),
            publishes: vec![hex::encode(br#"{"v":1,"node":"n","seq":3}"#)],
            webhooks: vec![crate::webhook::dispatch::HookExport {
                app: "app-id".into(),
                index: 0,
                url: "http://127.0.0.1:9/hook".into(),
                queue: Vec::new(),
                current: Some(crate::webhook::dispatch::AttemptExport {
                    request: hex::encode(b"POST / HTTP/1.1\r\n\r\n"),
                    events: 1,
                    first_at: 1000,
                    tries: 2,
                    next_at: 3000,
                }),
            }],
        }
    }

    #[test]
    fn a_hand_over_round_trips_through_its_file() {
        let path = state_path();
        let h = sample();
        write_state(&path, &h).expect("writes");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            write_state(&path, &h).is_err(),
            "never over an existing file"
        );
        assert_eq!(read_state(&path), Ok(h));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_hand_overs_are_refused() {
        let mut h = sample();
        h.version = VERSION + 1;
        assert!(h.check().unwrap_err().contains("version"));
        let mut h = sample();
        h.conns[0].fd = 3;
        assert!(h.check().is_err(), "a descriptor twice");
        let mut h = sample();
        if let Some(r) = h.redis.as_mut() {
            r.fd = 7;
        }
        assert!(h.check().is_err(), "the Redis descriptor is a connection's");
        let mut h = sample();
        h.publishes.push("00".repeat(MAX_PUBLISH_BYTES + 1));
        assert!(h.check().unwrap_err().contains("held publishes"));
        let mut h = sample();
        h.listener = 1;
        assert!(h.check().is_err(), "a standard stream");
        let path = state_path();
        std::fs::write(&path, b"{\"version\":1,").expect("writes");
        assert!(read_state(&path).is_err());
        std::fs::write(&path, b"\x00\xff").expect("writes");
        assert!(read_state(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_status_file_sits_beside_the_pid_file() {
        assert_eq!(
            status_path(Path::new("/run/revurb.pid")),
            PathBuf::from("/run/revurb.pid.upgrade")
        );
    }
}

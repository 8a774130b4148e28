//! The static aarch64 binary (`make static-aarch64`) run under
//! `qemu-aarch64` (Debian's `qemu-user`): it serves `/up`, accepts a
//! WebSocket, delivers an event published through the API, and drains and
//! exits 0 on SIGTERM.
//!
//! It runs when `REVURB_AARCH64_BIN` names the binary (`.ci/run` builds it
//! and sets it). Outside CI, without it (or without `qemu-aarch64`), the
//! test says why and passes without running anything; under `CI=true` it
//! fails instead.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{APP_ENV, Server, pusher_error};

/// The ELF machine number of aarch64 (`EM_AARCH64`).
const EM_AARCH64: u16 = 183;

/// The binary and the emulator, or why the test cannot run.
fn setup() -> Result<(String, String), String> {
    let bin = std::env::var("REVURB_AARCH64_BIN").map_err(|_| {
        "REVURB_AARCH64_BIN is not set (make static-aarch64, then \
         REVURB_AARCH64_BIN=target/aarch64-unknown-linux-musl/release/revurb)"
            .to_string()
    })?;
    if !Path::new(&bin).is_file() {
        return Err(format!(
            "REVURB_AARCH64_BIN={bin} is not a file (make static-aarch64)"
        ));
    }
    let qemu = std::env::var("QEMU_AARCH64").unwrap_or_else(|_| "qemu-aarch64".into());
    match Command::new(&qemu).arg("-version").output() {
        Ok(out) if out.status.success() => Ok((bin, qemu)),
        _ => Err(format!("{qemu} does not run (apt-get install qemu-user)")),
    }
}

#[test]
fn aarch64_binary_serves_under_qemu() {
    let (bin, qemu) = match setup() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the aarch64 test must run under CI: {why}")
        }
        Err(why) => {
            eprintln!("aarch64_binary_serves_under_qemu SKIPPED: {why}");
            return;
        }
    };
    // an aarch64 ELF, so that nothing here runs natively by mistake
    let head = std::fs::read(&bin).expect("read the aarch64 binary");
    assert_eq!(&head[..4], b"\x7fELF", "{bin} is not an ELF file");
    assert_eq!(
        u16::from_le_bytes([head[18], head[19]]),
        EM_AARCH64,
        "{bin} is not an aarch64 binary"
    );

    let mut cmd = Command::new(&qemu);
    cmd.arg(&bin);
    let mut s = Server::start_command(cmd, None, &APP_ENV, &[("REVERB_DRAIN_WINDOW", "1")], &[]);
    let up = s.get("/up");
    assert_eq!((up.status, up.text().as_str()), (200, r#"{"health":"OK"}"#));

    let (mut ws, sid) = s.pusher();
    assert!(sid.contains('.'), "socket id {sid}");
    ws.subscribe("arm-channel");
    s.trigger("arm-channel", "greeting", r#"{"from":"the API"}"#);
    let event = ws.recv_json();
    assert_eq!(event["event"], "greeting", "{event}");
    assert_eq!(event["channel"], "arm-channel", "{event}");
    assert_eq!(event["data"], r#"{"from":"the API"}"#, "{event}");

    s.sigterm();
    assert_eq!(ws.recv_text(), pusher_error(4200, "Server shutting down"));
    assert_eq!(ws.recv_close().0, 4200);
    let exit = s.wait_exit(Duration::from_secs(10));
    assert_eq!(
        exit.code(),
        Some(0),
        "exit {exit:?}; stderr:\n{}",
        s.stderr_text()
    );
}

//! Process lifecycle: signals, exit codes, the command line, and dropping a
//! client that stops reading.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    APP_ENV, HttpConn, Msg, RecvError, Server, Ws, pusher_error, run_binary, wait_until,
};

fn shutdown_closes_clients_with_4200_and_exits_0(sig: i32) {
    let mut s = Server::start(&[], &[]);
    let (mut a, _) = s.pusher();
    a.subscribe("test-channel");
    let (mut b, _) = s.pusher();
    let started = Instant::now();
    s.signal(sig);
    for ws in [&mut a, &mut b] {
        assert_eq!(ws.recv_text(), pusher_error(4200, "Server shutting down"));
        assert_eq!(ws.recv_close(), (4200, "Server shutting down".to_string()));
        ws.expect_eof(Duration::from_secs(3));
    }
    drop((a, b));
    let status = s.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // nothing listens any more
    assert!(std::net::TcpStream::connect_timeout(&s.addr(), Duration::from_secs(1)).is_err());
}

#[test]
fn slow_reader_stream_stays_well_formed_until_the_close() {
    let (_s, mut slow, _fast, _sent) = flood_until_slow_reader_dropped();
    // every frame the slow reader gets must be a whole, valid event; the
    // stream ends with the 4100 error and close frame, or with a bare EOF
    let until = Instant::now() + Duration::from_secs(20);
    let mut events = 0usize;
    loop {
        assert!(Instant::now() < until, "slow reader's socket still open");
        match slow.next(Duration::from_secs(5)) {
            Ok(Msg::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t)
                    .unwrap_or_else(|e| panic!("frame {events} is not JSON ({e}): {t:.120}"));
                if v["event"] == "pusher:error" {
                    assert_eq!(t, pusher_error(4100, "Over capacity"));
                    assert_eq!(slow.recv_close().0, 4100);
                    slow.expect_eof(Duration::from_secs(5));
                    break;
                }
                assert_eq!(v["event"], format!("e{events}"), "frame {events}");
                events += 1;
            }
            Ok(Msg::Close(code, _)) => {
                assert_eq!(code, 4100);
                break;
            }
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(RecvError::Eof) => {
                assert!(
                    slow.conn.buffered().is_empty(),
                    "the stream ends inside a frame ({} bytes left)",
                    slow.conn.buffered().len()
                );
                break;
            }
            Err(RecvError::Timeout) => panic!("slow reader: no data and no close within 5 s"),
        }
    }
}

#[test]
fn sigterm_closes_every_client_with_4200_and_exits_0() {
    shutdown_closes_clients_with_4200_and_exits_0(libc::SIGTERM);
}

#[test]
fn sigint_closes_every_client_with_4200_and_exits_0() {
    shutdown_closes_clients_with_4200_and_exits_0(libc::SIGINT);
}

#[test]
fn sigterm_with_a_client_that_never_answers_still_exits_within_5_s() {
    let mut s = Server::start(&[], &[]);
    // a subscriber that will neither read nor answer the close frame
    let (mut mute, _) = s.pusher();
    mute.subscribe("test-channel");
    // an HTTP client stuck half-way through its request, and a bare socket
    let mut half = s.http();
    half.send_raw(b"GET /up HTTP/1.1\r\nHost: x\r\n");
    let bare = HttpConn::connect(s.addr());
    let started = Instant::now();
    s.sigterm();
    let status = s.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // the mute client was still sent the error and the close frame
    assert_eq!(mute.recv_text(), pusher_error(4200, "Server shutting down"));
    assert_eq!(mute.recv_close().0, 4200);
    assert!(half.closed_within(Duration::from_secs(1)));
    drop(bare);
}

/// Run `revurb <args>` in an empty directory (no `.env`, no `revurb.json`).
fn run_isolated(env: &[(&str, &str)], args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let dir = crate::support::TempDir::new("cli");
    crate::support::run_binary_in(Some(dir.path()), env, args)
}

const START: [&str; 5] = ["start", "--host", "127.0.0.1", "--port", "0"];

#[test]
fn start_without_app_env_exits_2_naming_reverb_app_id() {
    let (status, out, err) = run_isolated(&[("REVERB_METRICS_PORT", "0")], &START);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("REVERB_APP_ID"), "{err}");
    assert!(err.starts_with("revurb: "), "{err}");
    assert!(!out.contains("listening"), "{out}");
}

#[test]
fn start_with_incomplete_app_env_exits_2_naming_the_missing_variable() {
    let (status, _, err) = run_isolated(
        &[("REVERB_APP_ID", "app-id"), ("REVERB_APP_KEY", "app-key")],
        &START,
    );
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("REVERB_APP_SECRET"), "{err}");
    assert!(
        !err.contains("REVERB_APP_ID"),
        "only the missing one: {err}"
    );

    let (status, _, err) = run_isolated(&[("REVERB_APP_SECRET", "app-secret")], &START);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(
        err.contains("REVERB_APP_ID") && err.contains("REVERB_APP_KEY"),
        "{err}"
    );
    assert!(!err.contains("app-secret"), "the secret is echoed: {err}");
}

#[test]
fn invalid_numeric_env_exits_2_naming_it() {
    for (var, value) in [
        ("REVERB_MAX_REQUEST_SIZE", "lots"),
        ("REVERB_REQUEST_TIMEOUT", "-1"),
        ("REVERB_SERVER_PORT", "70000"),
        ("REVERB_APP_PING_INTERVAL", "soon"),
        ("REVERB_APP_MAX_MESSAGE_SIZE", "1.5"),
    ] {
        let mut env = APP_ENV.to_vec();
        env.push((var, value));
        env.push(("REVERB_METRICS_PORT", "0"));
        let args: &[&str] = if var == "REVERB_SERVER_PORT" {
            &["start", "--host", "127.0.0.1"]
        } else {
            &START
        };
        let (status, out, err) = run_isolated(&env, args);
        assert_eq!(status.code(), Some(2), "{var}={value}: stderr {err}");
        assert!(err.contains(var), "{var}={value}: {err}");
        assert!(!out.contains("listening"), "{var}={value}: {out}");
    }
    // a bad flag value names the flag
    let mut env = APP_ENV.to_vec();
    env.push(("REVERB_METRICS_PORT", "0"));
    let (status, _, err) = run_isolated(&env, &["start", "--port", "eighty"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--port"), "{err}");
}

#[test]
fn version_prints_name_and_version() {
    let expected = format!("revurb {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"], &["-V"]] {
        let (status, out, err) = run_binary(&[], args);
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(out, expected, "{args:?}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn help_lists_every_flag() {
    let (status, out, err) = run_binary(&[], &["--help"]);
    assert_eq!(status.code(), Some(0), "{err}");
    for (flag, value, help) in revurb::cli::flags() {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
        assert!(
            out.contains(help),
            "--help lacks the help of {flag}:\n{out}"
        );
        if !value.is_empty() {
            assert!(
                out.contains(&format!("{flag} {value}")),
                "--help lacks `{flag} {value}`:\n{out}"
            );
        }
    }
    for (flag, _) in revurb::cli::GLOBAL_FLAGS {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
    for cmd in ["start", "restart", "config"] {
        assert!(out.contains(&format!("revurb {cmd}")), "{cmd}:\n{out}");
    }
    // the other spellings print the same text
    for args in [&["help"][..], &["start", "--help"], &["-h"]] {
        let (status, same, _) = run_binary(&[], args);
        assert_eq!(status.code(), Some(0), "{args:?}");
        assert_eq!(same, out, "{args:?}");
    }
}

#[test]
fn unknown_flag_exits_2() {
    for (args, needle) in [
        (&["start", "--nope"][..], "--nope"),
        (&["--bogus"], "--bogus"),
        (&["stop"], "unknown command"),
        (&[], "no command"),
        (&["start", "--port"], "--port"),
    ] {
        let (status, out, err) = run_isolated(&APP_ENV, args);
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out}");
    }
}

#[test]
fn port_in_use_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut env = APP_ENV.to_vec();
    env.push(("REVERB_METRICS_PORT", "0"));
    let (status, out, err) = run_isolated(
        &env,
        &["start", "--host", "127.0.0.1", "--port", port.as_str()],
    );
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!out.contains("listening"), "{out}");
    drop(taken);
}

/// Poll the server's stderr until it holds every needle (bounded).
fn wait_for_stderr(s: &Server, needles: &[&str], deadline: Duration) -> String {
    wait_until(
        deadline,
        || format!("stderr to hold all of {needles:?}:\n{}", s.stderr_text()),
        || {
            let text = s.stderr_text();
            needles.iter().all(|n| text.contains(n)).then_some(text)
        },
    )
}

#[test]
fn debug_flag_logs_connections_to_stderr() {
    let s = Server::start(&[], &["--debug"]);
    let (mut ws, sid) = s.pusher();
    ws.subscribe("test-channel");
    ws.send_close(1000, "");
    assert_eq!(ws.recv_close().0, 1000);
    ws.expect_eof(Duration::from_secs(3));
    let established = format!("Connection Established {sid}");
    let closed = format!("Connection Closed {sid}");
    let text = wait_for_stderr(&s, &[&established, &closed], Duration::from_secs(5));
    let line = text.lines().find(|l| l.contains(&established)).unwrap();
    assert!(line.contains(" DEBUG "), "{line}");
    // the secret never shows up in the log
    assert!(!text.contains(crate::support::APP_SECRET), "{text}");

    // REVERB_DEBUG=true does the same
    let s = Server::start(&[("REVERB_DEBUG", "true")], &[]);
    let (_ws, sid) = s.pusher();
    wait_for_stderr(
        &s,
        &[&format!("Connection Established {sid}")],
        Duration::from_secs(5),
    );

    // without it nothing of the kind is logged
    let s = Server::start(&[], &[]);
    let (mut ws, _) = s.pusher();
    ws.subscribe("test-channel");
    ws.sync();
    drop(ws);
    s.wait_connections(0, Duration::from_secs(5));
    let text = s.stderr_text();
    assert!(!text.contains("Connection Established"), "{text}");
    assert!(!text.contains(" DEBUG "), "{text}");
}

// ---- a client that stops reading ------------------------------------------------

const FLOOD_CHANNEL: &str = "flood";
const FLOOD_DATA_LEN: usize = 1000;
const FLOOD_BATCH: usize = 10;
const FLOOD_MAX_EVENTS: usize = 40_000;

/// Two subscribers of `flood`: `slow` never reads, `fast` reads on a thread
/// and checks every event (`e0`, `e1`, ... in order). Batches of 10 events of
/// 1 KB are triggered until the server drops the slow one (its write queue
/// passed REVERB_WRITE_QUEUE_LIMIT=65536), seen as `/connections` == 1.
/// Returns the server, both sockets and how many events were sent.
pub(crate) fn flood_until_slow_reader_dropped() -> (Server, Ws, Ws, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let s = Server::start(
        &[
            ("REVERB_WRITE_QUEUE_LIMIT", "65536"),
            ("REVERB_MAX_REQUEST_SIZE", "1000000"),
        ],
        &[],
    );
    let (mut slow, _) = s.pusher();
    slow.subscribe(FLOOD_CHANNEL);
    let (mut fast, _) = s.pusher();
    fast.subscribe(FLOOD_CHANNEL);

    let received = Arc::new(AtomicUsize::new(0));
    let reader = {
        let received = received.clone();
        std::thread::spawn(move || -> Result<(Ws, usize), String> {
            let mut n = 0usize;
            loop {
                let t = match fast.next(Duration::from_secs(10)) {
                    Ok(Msg::Text(t)) => t,
                    other => return Err(format!("fast reader: {other:?} after {n} events")),
                };
                let v: serde_json::Value = serde_json::from_str(&t)
                    .map_err(|e| format!("fast reader: event {n} is not JSON ({e})"))?;
                if v["event"] == "done" {
                    return Ok((fast, n));
                }
                if v["event"] != format!("e{n}").as_str()
                    || v["channel"] != FLOOD_CHANNEL
                    || v["data"].as_str().map(str::len) != Some(FLOOD_DATA_LEN)
                {
                    return Err(format!("fast reader: expected e{n}, got {t:.120}"));
                }
                n += 1;
                received.store(n, Ordering::Release);
            }
        })
    };

    let data = "d".repeat(FLOOD_DATA_LEN);
    let mut api = s.http();
    let mut sent = 0usize;
    let started = Instant::now();
    loop {
        assert!(
            sent < FLOOD_MAX_EVENTS && started.elapsed() < Duration::from_secs(60),
            "the slow reader was not dropped after {sent} events in {:?}",
            started.elapsed()
        );
        let batch: Vec<serde_json::Value> = (sent..sent + FLOOD_BATCH)
            .map(|i| json!({ "name": format!("e{i}"), "channel": FLOOD_CHANNEL, "data": data }))
            .collect();
        let r = api.signed_post(
            "/apps/app-id/batch_events",
            &json!({ "batch": batch }).to_string(),
        );
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"batch":{}}"#));
        sent += FLOOD_BATCH;
        // keep the fast reader at most two batches behind, so only the
        // slow one can pass the limit
        let wait_until = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Acquire) + 2 * FLOOD_BATCH < sent {
            if reader.is_finished() {
                let err = reader.join().unwrap().err().unwrap_or_default();
                panic!("the fast reader stopped: {err}");
            }
            assert!(
                Instant::now() < wait_until,
                "the fast reader is stuck at {} of {sent}",
                received.load(Ordering::Acquire)
            );
            std::thread::yield_now();
        }
        let r = api.signed_get("/apps/app-id/connections", &[]);
        match r.json()["connections"].as_u64() {
            Some(2) => {}
            Some(1) => break,
            other => panic!("connections {other:?} after {sent} events"),
        }
    }
    // the slow one is gone from the channel: the sentinel reaches only `fast`
    s.trigger(FLOOD_CHANNEL, "done", "");
    let (fast, got) = match reader.join().unwrap() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(got, sent, "the fast subscriber missed events");
    (s, slow, fast, sent)
}

#[test]
fn slow_reader_is_dropped_while_others_keep_receiving() {
    let (s, mut slow, mut fast, sent) = flood_until_slow_reader_dropped();
    assert!(sent >= FLOOD_BATCH);
    // the fast subscriber is unaffected
    s.trigger(FLOOD_CHANNEL, "after", "x");
    assert_eq!(
        fast.recv_text(),
        r#"{"event":"after","data":"x","channel":"flood"}"#
    );
    fast.sync();
    assert_eq!(s.connections(), 1);
    // the slow one's socket is closed once it has read what was in flight
    let read = slow
        .drain_until_eof(Duration::from_secs(20))
        .expect("the slow reader's socket is still open");
    assert!(read > 0);
    // the log line may reach our stderr reader after the EOF: wait for it
    wait_for_stderr(&s, &["4100"], Duration::from_secs(10));
    // a new subscriber works normally
    let (mut late, _) = s.pusher();
    late.subscribe(FLOOD_CHANNEL);
    s.trigger(FLOOD_CHANNEL, "late", "y");
    assert_eq!(
        late.recv_text(),
        r#"{"event":"late","data":"y","channel":"flood"}"#
    );
    assert_eq!(
        fast.recv_text(),
        r#"{"event":"late","data":"y","channel":"flood"}"#
    );
}

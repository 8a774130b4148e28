//! The gentle stop (issue 14): `revurb restart` and SIGTERM close the
//! WebSockets with 4200 spread over `drain_window`, `/up` answers 503 and
//! new WebSockets are refused with 503 meanwhile, and the server exits 0 at
//! the end; SIGINT or a second SIGTERM stops at once.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Msg, RecvError, Server, TempDir, Ws, pusher_error, run_binary, ws_connect};

/// What one client saw: when the 4200 arrived, and whether the event
/// published during the drain reached it first.
struct Seen {
    closed_at: Instant,
    got_event: bool,
}

/// Read until the 4200 error, its close frame and EOF; panics on anything
/// else or after `deadline`.
fn until_4200(mut ws: Ws, deadline: Duration) -> Seen {
    let mut got_event = false;
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match ws.next(left) {
            Ok(Msg::Text(t)) if t.contains("\"during-drain\"") => got_event = true,
            Ok(Msg::Text(t)) => {
                assert_eq!(t, pusher_error(4200, "Server shutting down"));
                let closed_at = Instant::now();
                assert_eq!(ws.recv_close(), (4200, "Server shutting down".to_string()));
                ws.expect_eof(Duration::from_secs(3));
                return Seen {
                    closed_at,
                    got_event,
                };
            }
            other => panic!("expected the 4200 error, got {other:?}"),
        }
    }
}

/// The most closes within any `span` of time.
fn densest(times: &[Instant], span: Duration) -> usize {
    let mut best = 0;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u - *t < span).count();
        best = best.max(n);
    }
    best
}

#[test]
fn restart_drains_50_clients_over_a_2_s_window_and_exits_0() {
    const N: usize = 50;
    let dir = TempDir::new("drain");
    let pid_file = dir.file("revurb.pid");
    let mut s = Server::start(&[("REVERB_DRAIN_WINDOW", "2")], &["--pid-file", &pid_file]);
    let (tx, rx) = mpsc::channel();
    for _ in 0..N {
        let (mut ws, _) = s.pusher();
        ws.subscribe("test-channel");
        let tx = tx.clone();
        thread::spawn(move || {
            let _ = tx.send(until_4200(ws, Duration::from_secs(15)));
        });
    }
    drop(tx);
    assert_eq!(s.connections(), N as u64);

    let signalled = Instant::now();
    let restart = {
        let pid_file = pid_file.clone();
        let env = [("REVERB_DRAIN_WINDOW", "2")];
        thread::spawn(move || run_binary(&env, &["restart", "--pid-file", &pid_file]))
    };

    // meanwhile: not healthy, no new WebSocket, the API still delivers
    thread::sleep(Duration::from_millis(700));
    let up = s.get("/up");
    assert_eq!(
        (up.status, up.text().as_str()),
        (503, r#"{"health":"draining"}"#)
    );
    let refused = ws_connect(s.addr(), "/app/app-key", &[]);
    assert_eq!(refused.head.status, 503, "{:?}", refused.head);
    let mut refused = refused;
    assert!(
        matches!(refused.next(Duration::from_secs(2)), Err(RecvError::Eof)),
        "the refused upgrade's connection closes"
    );
    s.trigger("test-channel", "during-drain", "{}");

    let mut seen: Vec<Seen> = rx.iter().collect();
    assert_eq!(seen.len(), N, "every client got its 4200");
    seen.sort_by_key(|c| c.closed_at);
    let times: Vec<Instant> = seen.iter().map(|c| c.closed_at).collect();
    let first = times[0] - signalled;
    let span = times[N - 1] - times[0];
    let dense = densest(&times, Duration::from_millis(100));
    eprintln!(
        "drain of {N} over 2 s: first close after {first:?}, span {span:?}, at most {dense} closes in 100 ms"
    );
    assert!(
        first < Duration::from_millis(500),
        "first close after {first:?}"
    );
    // one every 40 ms: 49 gaps, 1.96 s
    assert!(
        span >= Duration::from_millis(1700) && span <= Duration::from_millis(2600),
        "closes spread over {span:?}"
    );
    // 2.5 in 100 ms on average; never a burst
    assert!(dense <= 8, "{dense} closes within 100 ms");
    // each tenth of the window closed about its share
    for (k, t) in times.iter().enumerate() {
        let expected = span.mul_f64(k as f64 / (N - 1) as f64);
        let at = *t - times[0];
        let off = at.abs_diff(expected);
        assert!(
            off < Duration::from_millis(400),
            "close {k} at {at:?}, planned {expected:?}"
        );
    }
    // the event reached those still open when it was published, not the others
    let with_event = seen.iter().filter(|c| c.got_event).count();
    assert!(
        with_event > 0 && with_event < N,
        "{with_event} clients got the event"
    );
    assert!(
        seen.iter()
            .skip_while(|c| !c.got_event)
            .all(|c| c.got_event),
        "a client closed after the event went out did not get it"
    );

    let (status, out, err) = restart.join().unwrap();
    assert_eq!(status.code(), Some(0), "restart: {out}{err}");
    let exit = s.wait_exit(Duration::from_secs(5));
    assert_eq!(exit.code(), Some(0), "server exit {exit:?}");
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(!std::path::Path::new(&pid_file).exists());
}

#[test]
fn a_second_sigterm_or_a_sigint_during_the_drain_stops_at_once() {
    for second in [libc::SIGTERM, libc::SIGINT] {
        let mut s = Server::start(&[("REVERB_DRAIN_WINDOW", "60")], &[]);
        let mut clients: Vec<Ws> = (0..10).map(|_| s.pusher().0).collect();
        s.sigterm();
        // the first goes at once, the next one only 6 s later
        let first = clients.remove(0);
        let started = Instant::now();
        until_4200(first, Duration::from_secs(3));
        assert_eq!(s.get("/up").status, 503);
        assert!(matches!(
            clients[0].next(Duration::from_millis(300)),
            Err(RecvError::Timeout)
        ));
        s.signal(second);
        for ws in clients {
            until_4200(ws, Duration::from_secs(3));
        }
        let exit = s.wait_exit(Duration::from_secs(5));
        assert_eq!(exit.code(), Some(0), "{exit:?}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}

#[test]
fn a_zero_drain_window_closes_everyone_at_once() {
    let mut s = Server::start(&[], &["--drain-window", "0"]);
    let clients: Vec<Ws> = (0..20).map(|_| s.pusher().0).collect();
    s.sigterm();
    let started = Instant::now();
    let times: Vec<Instant> = clients
        .into_iter()
        .map(|ws| until_4200(ws, Duration::from_secs(3)).closed_at)
        .collect();
    let last = times.iter().max().copied().unwrap_or(started);
    assert!(
        last - started < Duration::from_millis(500),
        "{:?}",
        last - started
    );
    assert_eq!(s.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

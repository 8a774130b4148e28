//! The transport against real receivers: std `TcpListener` threads in the
//! test, plain and TLS (a private CA made by rcgen), driven by a `mio::Poll`
//! the way the event loop drives it. Deadlines are tested by moving the
//! clock the transport is given, not by waiting.

use std::io::{Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::*;
use crate::http::{Parse, parse};
use crate::webhook::http::{ResponseError, encode_request};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The event loop's side, in miniature.
struct Harness {
    poll: Poll,
    events: Events,
    t: Transport,
    start: Instant,
    /// Milliseconds added to the clock: time that passes at once.
    skew: u64,
    done: Vec<(u64, Outcome)>,
}

impl Harness {
    fn new(limits: Limits) -> Harness {
        Harness::with_tls(Err("no CA roots in this test".into()), limits)
    }

    fn with_tls(tls: Result<Arc<rustls::ClientConfig>, String>, limits: Limits) -> Harness {
        Harness {
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(64),
            t: Transport::new(tls, limits),
            start: Instant::now(),
            skew: 0,
            done: Vec::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + self.skew
    }

    fn send(&mut self, id: u64, url: &str) {
        let req = request(id, url);
        let url = Url::parse(url).unwrap();
        let now = self.now();
        self.t.send(now, self.poll.registry(), id, &url, req);
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(d) = self.t.poll_done() {
            assert!(
                self.done.iter().all(|(id, _)| *id != d.0),
                "two outcomes for {}",
                d.0
            );
            self.done.push(d);
        }
    }

    /// One loop turn: poll (no longer than the transport's deadline),
    /// readiness, deadlines.
    fn turn(&mut self, max: Duration) {
        let now = self.now();
        let wait = self.t.poll_timeout().map_or(max, |at| {
            Duration::from_millis(at.saturating_sub(now) + 1).min(max)
        });
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let tokens: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        for token in tokens {
            assert!(Transport::owns(token), "{token:?}");
            let now = self.now();
            self.t.ready(now, self.poll.registry(), token);
        }
        let now = self.now();
        self.t.handle_timeout(now, self.poll.registry());
        self.collect();
    }

    /// Turn until `id` has its outcome (10 s at most).
    fn outcome(&mut self, id: u64) -> Outcome {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.done.iter().position(|(d, _)| *d == id) {
                return self.done.remove(i).1;
            }
            assert!(
                Instant::now() < give_up,
                "no outcome for request {id}: {:?}",
                self.t.stats()
            );
            self.turn(Duration::from_millis(50));
        }
    }

    /// Turn until `cond` holds (10 s at most).
    fn until(&mut self, what: &str, mut cond: impl FnMut(&mut Harness) -> bool) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            assert!(Instant::now() < give_up, "never: {what}");
            self.turn(Duration::from_millis(20));
        }
    }

    /// Let `ms` pass at once.
    fn skip(&mut self, ms: u64) {
        self.skew += ms;
        let now = self.now();
        self.t.handle_timeout(now, self.poll.registry());
        self.collect();
    }
}

/// The request the harness sends as `id` to `url`.
fn request(id: u64, url: &str) -> Vec<u8> {
    let url = Url::parse(url).unwrap();
    encode_request(&url, &[("X-Test".into(), id.to_string())], b"{}")
}

/// A receiver on 127.0.0.1 that runs `serve(n, stream)` for its `n`th
/// connection in a thread of its own.
struct Receiver {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(serve: impl Fn(usize, StdStream) + Send + Sync + 'static) -> Receiver {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let serve = Arc::new(serve);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let serve = serve.clone();
                thread::spawn(move || serve(n, stream));
            }
        });
        Receiver { port, accepted }
    }

    /// Answers every request with `answer`, keeping the connection.
    fn answering(answer: &'static [u8]) -> Receiver {
        Receiver::start(move |_, mut s| {
            let mut buf = Vec::new();
            while read_request(&mut s, &mut buf).is_some() {
                if s.write_all(answer).is_err() {
                    return;
                }
            }
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The next request on `s` (`buf` keeps what came after it); `None` at EOF.
fn read_request(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<crate::http::Request> {
    loop {
        match parse(buf, 1 << 20) {
            Parse::Complete(req, n) => {
                buf.drain(..n);
                return Some(req);
            }
            Parse::Incomplete => {}
            Parse::Error(e) => panic!("the client sent a bad request: {e:?}"),
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn status(s: u16) -> Outcome {
    Outcome::Status(s)
}

#[test]
fn keeps_a_connection_alive_and_reuses_it_then_idles_it_out() {
    let r = Receiver::answering(OK);
    let mut h = Harness::new(Limits::default());
    for id in 1..=3 {
        h.send(id, &r.url());
        assert_eq!(h.outcome(id), status(200));
    }
    assert_eq!(r.accepted(), 1);
    let s = h.t.stats();
    assert_eq!((s.connections_opened, s.requests_reused), (1, 2));
    assert_eq!((s.connections_open, s.responses), (1, 3));
    assert_eq!(
        (s.requests_active, s.requests_queued, s.bytes_in_flight),
        (0, 0, 0)
    );
    // the idle connection has a deadline and goes at it
    assert!(h.t.poll_timeout().is_some());
    h.skip(Limits::default().idle_timeout_ms + 1);
    assert_eq!(h.t.stats().connections_open, 0);
    assert_eq!(h.t.poll_timeout(), None);
}

#[test]
fn at_most_four_connections_to_one_origin() {
    let r = Receiver::start(|_, mut s| {
        let mut buf = Vec::new();
        while read_request(&mut s, &mut buf).is_some() {
            thread::sleep(Duration::from_millis(20));
            if s.write_all(OK).is_err() {
                return;
            }
        }
    });
    let mut h = Harness::new(Limits::default());
    for id in 0..16 {
        h.send(id, &r.url());
    }
    assert_eq!(h.t.stats().connections_open, 4);
    assert_eq!(h.t.stats().requests_queued, 12);
    for id in 0..16 {
        assert_eq!(h.outcome(id), status(200), "request {id}");
    }
    assert_eq!(r.accepted(), 4);
    assert_eq!(h.t.stats().requests_reused, 12);
}

#[test]
fn an_idle_connection_the_receiver_closes_is_dropped() {
    // answers one request, then closes
    let r = Receiver::start(|_, mut s| {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).is_some() {
            let _ = s.write_all(OK);
        }
    });
    let mut h = Harness::new(Limits::default());
    h.send(1, &r.url());
    assert_eq!(h.outcome(1), status(200));
    h.until("the closed connection is dropped", |h| {
        h.t.stats().connections_open == 0
    });
    h.send(2, &r.url());
    assert_eq!(h.outcome(2), status(200));
    assert_eq!(r.accepted(), 2);
    assert_eq!(h.t.stats().requests_retried, 0);
}

#[test]
fn a_request_that_meets_the_close_of_a_reused_connection_goes_again_on_a_fresh_one() {
    // the first connection answers once, then takes the next request and
    // closes without a word (as a server closing an idle connection just
    // as the request arrives); later connections answer
    let r = Receiver::start(|n, mut s| {
        let mut buf = Vec::new();
        if n == 0 {
            if read_request(&mut s, &mut buf).is_some() {
                let _ = s.write_all(OK);
            }
            let _ = read_request(&mut s, &mut buf);
            return;
        }
        while read_request(&mut s, &mut buf).is_some() {
            let _ = s.write_all(OK);
        }
    });
    let mut h = Harness::new(Limits::default());
    h.send(1, &r.url());
    assert_eq!(h.outcome(1), status(200));
    h.send(2, &r.url());
    assert_eq!(h.outcome(2), status(200));
    assert_eq!(r.accepted(), 2);
    let s = h.t.stats();
    assert_eq!((s.requests_retried, s.requests_reused), (1, 1));
    assert_eq!(s.failures().map(|(_, n)| n).sum::<u64>(), 0);
}

#[test]
fn a_fresh_connection_closed_before_a_response_fails() {
    let r = Receiver::start(|_, mut s| {
        let _ = read_request(&mut s, &mut Vec::new());
    });
    let mut h = Harness::new(Limits::default());
    h.send(1, &r.url());
    match h.outcome(1) {
        Outcome::Failed(f @ Failure::Closed(_)) => assert_eq!(f.kind(), "closed"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.accepted(), 1);
    assert_eq!(h.t.stats().requests_retried, 0);
}

#[test]
fn a_refused_port_fails() {
    let port = {
        let l = StdListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut h = Harness::new(Limits::default());
    h.send(1, &format!("http://127.0.0.1:{port}/"));
    assert_eq!(
        h.outcome(1),
        Outcome::Failed(Failure::Refused(format!("127.0.0.1:{port}")))
    );
    assert_eq!(h.t.stats().connections_open, 0);
    let refused = h.t.stats().failures().find(|(k, _)| *k == "refused");
    assert_eq!(refused, Some(("refused", 1)));
}

#[test]
fn a_receiver_that_never_answers_times_out() {
    let (got, request_in) = std::sync::mpsc::channel();
    let r = Receiver::start(move |_, mut s| {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).is_some() {
            let _ = got.send(());
        }
        // hold the connection until the client closes it
        let _ = s.read_to_end(&mut buf);
    });
    let mut h = Harness::new(Limits::default());
    h.send(1, &r.url());
    h.until("the receiver has the request", |_| {
        request_in.try_recv().is_ok()
    });
    h.skip(Limits::default().response_timeout_ms - 100);
    assert!(h.done.is_empty());
    h.skip(200);
    assert_eq!(h.outcome(1), Outcome::Failed(Failure::ResponseTimeout));
    assert_eq!(h.t.stats().connections_open, 0);
}

#[test]
fn chunked_and_close_delimited_responses() {
    let chunked = Receiver::answering(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;ext=1\r\nwell\r\n0\r\nX-Trailer: done\r\n\r\n",
    );
    let mut h = Harness::new(Limits::default());
    h.send(1, &chunked.url());
    assert_eq!(h.outcome(1), status(200));
    h.send(2, &chunked.url());
    assert_eq!(h.outcome(2), status(200));
    assert_eq!(chunked.accepted(), 1);

    let to_close = Receiver::start(|_, mut s| {
        if read_request(&mut s, &mut Vec::new()).is_some() {
            let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\n\r\nwhatever follows, to the close");
        }
    });
    h.send(3, &to_close.url());
    assert_eq!(h.outcome(3), status(202));
    // one connection left: the chunked receiver's
    assert_eq!(h.t.stats().connections_open, 1);
}

#[test]
fn bad_responses_fail_and_a_status_once_known_stands() {
    let garbage = Receiver::answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
    let mut h = Harness::new(Limits::default());
    h.send(1, &garbage.url());
    assert_eq!(
        h.outcome(1),
        Outcome::Failed(Failure::BadResponse(ResponseError::Malformed(
            "not HTTP/1.0 or 1.1"
        )))
    );
    // a 201 whose body is too large: the receiver did answer
    let huge = Receiver::answering(b"HTTP/1.1 201 Created\r\nContent-Length: 100000\r\n\r\n");
    h.send(2, &huge.url());
    assert_eq!(h.outcome(2), status(201));
    // a 500 cut short
    let cut = Receiver::start(|_, mut s| {
        if read_request(&mut s, &mut Vec::new()).is_some() {
            let _ = s.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nabc");
        }
    });
    h.send(3, &cut.url());
    assert_eq!(h.outcome(3), status(500));
    h.until("every connection is closed", |h| {
        h.t.stats().connections_open == 0
    });
}

#[test]
fn queues_are_bounded() {
    let r = Receiver::start(|_, mut s| {
        let _ = s.read_to_end(&mut Vec::new());
    });
    let limits = Limits {
        per_origin: 1,
        queue_per_origin: 2,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    for id in 1..=3 {
        h.send(id, &r.url());
    }
    assert!(h.done.is_empty());
    h.send(4, &r.url());
    assert_eq!(h.done, [(4, Outcome::Failed(Failure::QueueFull))]);
    let s = h.t.stats();
    assert_eq!((s.requests_active, s.requests_queued), (1, 2));
    assert_eq!(h.t.pending(), 3);

    // bytes in flight, across origins
    let other = "http://127.0.0.1:9/other";
    let limits = Limits {
        bytes_in_flight: request(1, &r.url()).len() + request(2, other).len(),
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    h.send(1, &r.url());
    h.send(2, other);
    h.send(3, &r.url());
    assert_eq!(h.done, [(3, Outcome::Failed(Failure::QueueFull))]);
}

#[test]
fn the_connection_cap_closes_an_idle_connection_of_another_origin() {
    let a = Receiver::answering(OK);
    let b = Receiver::answering(OK);
    let limits = Limits {
        total: 1,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    h.send(1, &a.url());
    assert_eq!(h.outcome(1), status(200));
    h.send(2, &b.url());
    assert_eq!(h.outcome(2), status(200));
    h.send(3, &a.url());
    assert_eq!(h.outcome(3), status(200));
    assert_eq!((a.accepted(), b.accepted()), (2, 1));
    assert_eq!(h.t.stats().connections_open, 1);
    // both at once: the second waits for the first to finish and idle
    h.send(4, &b.url());
    h.send(5, &a.url());
    assert_eq!(h.outcome(4), status(200));
    assert_eq!(h.outcome(5), status(200));
    assert_eq!((a.accepted(), b.accepted()), (3, 2));
}

#[test]
fn names_resolve_off_the_loop_and_are_cached() {
    let r = Receiver::answering(OK);
    let mut h = Harness::new(Limits::default());
    let url = format!("http://localhost:{}/", r.port);
    h.send(1, &url);
    assert!(h.done.is_empty(), "the lookup answers later");
    assert_eq!(h.outcome(1), status(200));
    h.send(2, &url);
    assert_eq!(h.outcome(2), status(200));
    assert_eq!(h.t.stats().lookups, 1);

    let limits = Limits {
        dns_timeout_ms: 3_000,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    h.send(3, "http://no-such-host.invalid/");
    match h.outcome(3) {
        Outcome::Failed(Failure::Dns(e)) => assert!(e.contains("no-such-host.invalid"), "{e}"),
        other => panic!("{other:?}"),
    }
}

// ---- TLS ---------------------------------------------------------------------

struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca() -> Ca {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert,
        issuer: Issuer::new(params, key),
    }
}

/// A client configuration that trusts only `ca`.
fn trusting(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    crate::tls::client_config_with_roots(roots, &[b"http/1.1"]).unwrap()
}

/// A TLS receiver for `localhost` and 127.0.0.1, certified by `ca`, that
/// answers every request with `answer`.
fn tls_receiver(ca: &Ca, answer: &'static [u8]) -> Receiver {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    Receiver::start(move |_, s| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut buf = Vec::new();
        while read_request(&mut tls, &mut buf).is_some() {
            if tls.write_all(answer).is_err() {
                return;
            }
        }
    })
}

#[test]
fn https_with_a_private_ca() {
    let ca = ca();
    let r = tls_receiver(&ca, OK);
    let mut h = Harness::with_tls(Ok(trusting(&ca)), Limits::default());
    let url = format!("https://localhost:{}/hook", r.port);
    for id in 1..=2 {
        h.send(id, &url);
        assert_eq!(h.outcome(id), status(200));
    }
    assert_eq!(r.accepted(), 1);
    // an IP address as the server name
    h.send(3, &format!("https://127.0.0.1:{}/hook", r.port));
    assert_eq!(h.outcome(3), status(200));
    assert_eq!(h.t.stats().requests_reused, 1);
}

#[test]
fn https_refuses_a_certificate_from_another_ca() {
    let r = tls_receiver(&ca(), OK);
    let mut h = Harness::with_tls(Ok(trusting(&ca())), Limits::default());
    h.send(1, &format!("https://127.0.0.1:{}/", r.port));
    match h.outcome(1) {
        Outcome::Failed(Failure::Tls(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tls_handshake_that_never_ends_is_a_connect_timeout() {
    // accepts TCP and says nothing
    let r = Receiver::start(|_, mut s| {
        let _ = s.read_to_end(&mut Vec::new());
    });
    let mut h = Harness::with_tls(Ok(trusting(&ca())), Limits::default());
    h.send(1, &format!("https://127.0.0.1:{}/", r.port));
    h.until("TCP is up", |_| r.accepted() == 1);
    h.turn(Duration::from_millis(50));
    h.skip(Limits::default().connect_timeout_ms + 1);
    assert_eq!(h.outcome(1), Outcome::Failed(Failure::ConnectTimeout));
}

#[test]
fn https_without_ca_roots_fails_and_http_still_works() {
    let r = Receiver::answering(OK);
    let mut h = Harness::with_tls(
        Err("https:// webhooks need CA certificates: none found".into()),
        Limits::default(),
    );
    h.send(1, "https://127.0.0.1:1/");
    assert_eq!(
        h.done,
        [(
            1,
            Outcome::Failed(Failure::Tls(
                "https:// webhooks need CA certificates: none found".into()
            ))
        )]
    );
    h.send(2, &r.url());
    assert_eq!(h.outcome(2), status(200));
}

#[test]
fn a_refused_address_moves_on_to_the_next_one_of_the_name() {
    let r = Receiver::answering(OK);
    let mut h = Harness::new(Limits::default());
    // as if the name had resolved to an address where nothing listens,
    // then to the receiver's
    let ips = vec!["127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    h.t.resolver
        .cache
        .insert("two.test".into(), (ips, u64::MAX));
    h.send(1, &format!("http://two.test:{}/", r.port));
    assert_eq!(h.outcome(1), status(200));
    assert_eq!(h.t.stats().lookups, 0);
    // connecting failed on one of its addresses: the name is looked up again
    assert!(!h.t.resolver.cache.contains_key("two.test"));
}

/// How many requests a second one transport gets answered by a local
/// keep-alive receiver (4 connections). A measurement, not a check:
/// `cargo test --release --lib transport_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn transport_throughput() {
    let r = Receiver::answering(OK);
    let mut h = Harness::new(Limits::default());
    let url = r.url();
    let total = 20_000u64;
    let start = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    while answered < total {
        // keep 16 in flight, as 16 webhooks with one request each would
        while sent < total && sent - answered < 16 {
            h.send(sent, &url);
            sent += 1;
        }
        h.turn(Duration::from_millis(50));
        for (_, o) in h.done.drain(..) {
            assert_eq!(o, Outcome::Status(200));
            answered += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{total} requests in {secs:.2} s: {:.0} requests/s over {} connections",
        total as f64 / secs,
        r.accepted()
    );
}

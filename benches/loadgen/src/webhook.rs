//! A webhook receiver for `--webhook`: a loopback HTTP/1.1 server on its own
//! threads (blocking sockets; one thread per connection, at most
//! [`MAX_CONNS`]) that answers every POST with 200, checks each request's
//! `X-Pusher-Key` and `X-Pusher-Signature` against the app, and counts
//! requests, events and when they arrived. The spawned server gets
//! `REVERB_APP_WEBHOOKS` pointing at it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stats::round3;

/// Connections the receiver serves at once (more wait in the backlog).
const MAX_CONNS: usize = 64;
/// Largest request head or body it reads.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub events: AtomicU64,
    /// Requests whose key or signature did not match, or that did not parse.
    pub bad: AtomicU64,
    /// Events by name.
    pub by_name: Mutex<std::collections::BTreeMap<String, u64>>,
    /// First and last arrival.
    pub span: Mutex<Option<(Instant, Instant)>>,
    pub connections: AtomicU64,
}

pub struct Receiver {
    pub port: u16,
    pub counts: Arc<Counts>,
    started: Instant,
}

impl Receiver {
    /// Listen on a free loopback port and serve until the process exits.
    pub fn start(key: &str, secret: &str) -> Result<Receiver, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("webhook receiver: bind: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("webhook receiver: {e}"))?
            .port();
        let counts = Arc::new(Counts::default());
        let (c, key, secret) = (counts.clone(), key.to_string(), secret.to_string());
        std::thread::spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming().flatten() {
                while open.load(Ordering::Acquire) >= MAX_CONNS {
                    std::thread::sleep(Duration::from_millis(5));
                }
                open.fetch_add(1, Ordering::AcqRel);
                c.connections.fetch_add(1, Ordering::Relaxed);
                let (c, key, secret, open) = (c.clone(), key.clone(), secret.clone(), open.clone());
                std::thread::spawn(move || {
                    serve(stream, &c, &key, &secret);
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        Ok(Receiver {
            port,
            counts,
            started: Instant::now(),
        })
    }

    /// The `REVERB_APP_WEBHOOKS` value for these event types.
    pub fn env_value(&self, events: &[String], batching: bool) -> String {
        json!([{
            "url": format!("http://127.0.0.1:{}/webhook", self.port),
            "event_types": events,
            "batching": batching,
        }])
        .to_string()
    }

    /// Wait until no request has arrived for `quiet` (at most `max`).
    pub fn settle(&self, quiet: Duration, max: Duration) {
        let until = Instant::now() + max;
        let mut last = self.counts.requests.load(Ordering::Relaxed);
        let mut since = Instant::now();
        while Instant::now() < until && since.elapsed() < quiet {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.counts.requests.load(Ordering::Relaxed);
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
    }

    /// What arrived, for the JSON line.
    pub fn report(&self) -> Value {
        let c = &self.counts;
        let events = c.events.load(Ordering::Relaxed);
        let span = c.span.lock().ok().and_then(|s| *s);
        let secs = span.map(|(a, z)| z.duration_since(a).as_secs_f64());
        json!({
            "requests": c.requests.load(Ordering::Relaxed),
            "events": events,
            "bad_requests": c.bad.load(Ordering::Relaxed),
            "connections": c.connections.load(Ordering::Relaxed),
            "by_name": c.by_name.lock().map(|m| json!(*m)).unwrap_or(Value::Null),
            "first_s": span.map(|(a, _)| round3(a.duration_since(self.started).as_secs_f64())),
            "events_per_s": secs.filter(|s| *s > 0.0).map(|s| round3(events as f64 / s)),
        })
    }
}

/// Serve one keep-alive connection until it closes or misbehaves.
fn serve(mut s: TcpStream, c: &Counts, key: &str, secret: &str) {
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // a whole request in buf?
        match parse(&buf) {
            Some(Ok((used, req))) => {
                buf.drain(..used);
                count(c, key, secret, &req);
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Err(())) => {
                c.bad.fetch_add(1, Ordering::Relaxed);
                let _ = s.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            None => {}
        }
        if buf.len() > MAX_REQUEST {
            c.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub struct Request {
    pub key: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

/// One request from the front of `buf`: `None` when incomplete.
pub fn parse(buf: &[u8]) -> Option<Result<(usize, Request), ()>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ());
    let Ok(head) = head else {
        return Some(Err(()));
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    if !request_line.starts_with("POST ") {
        return Some(Err(()));
    }
    let (mut len, mut key, mut signature) = (0usize, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Some(Err(()));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => match value.parse() {
                Ok(n) if n <= MAX_REQUEST => len = n,
                _ => return Some(Err(())),
            },
            "transfer-encoding" => return Some(Err(())),
            "x-pusher-key" => key = Some(value.to_string()),
            "x-pusher-signature" => signature = Some(value.to_string()),
            _ => {}
        }
    }
    let start = end + 4;
    if buf.len() < start + len {
        return None;
    }
    Some(Ok((
        start + len,
        Request {
            key,
            signature,
            body: buf[start..start + len].to_vec(),
        },
    )))
}

/// Check and count one request.
fn count(c: &Counts, key: &str, secret: &str, req: &Request) {
    let now = Instant::now();
    if let Ok(mut span) = c.span.lock() {
        *span = Some(span.map_or((now, now), |(a, _)| (a, now)));
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    let expected = revurb::auth::hmac_sha256_hex(secret.as_bytes(), &req.body);
    let signed = req.key.as_deref() == Some(key) && req.signature.as_deref() == Some(&*expected);
    let events = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|v| v.get("events").and_then(Value::as_array).cloned());
    let (true, Some(events)) = (signed, events) else {
        c.bad.fetch_add(1, Ordering::Relaxed);
        return;
    };
    c.events.fetch_add(events.len() as u64, Ordering::Relaxed);
    if let Ok(mut m) = c.by_name.lock() {
        for e in &events {
            let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
            *m.entry(name.to_string()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_whole_and_in_pieces() {
        let body = br#"{"time_ms":1,"events":[{"name":"client_event","channel":"c"}]}"#;
        let req = format!(
            "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pusher-Key: k\r\nX-Pusher-Signature: s\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut all = req.into_bytes();
        all.extend_from_slice(body);
        for cut in 0..all.len() {
            assert!(parse(&all[..cut]).is_none(), "cut {cut}");
        }
        let Some(Ok((used, r))) = parse(&all) else {
            panic!("no request")
        };
        assert_eq!(used, all.len());
        assert_eq!(
            (r.key.as_deref(), r.signature.as_deref()),
            (Some("k"), Some("s"))
        );
        assert_eq!(r.body, body);
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Some(Err(()))));
    }

    #[test]
    fn counts_signed_requests_and_refuses_others() {
        let c = Counts::default();
        let body =
            br#"{"time_ms":1,"events":[{"name":"member_added"},{"name":"member_added"}]}"#.to_vec();
        let sig = revurb::auth::hmac_sha256_hex(b"sec", &body);
        let good = Request {
            key: Some("k".into()),
            signature: Some(sig),
            body: body.clone(),
        };
        count(&c, "k", "sec", &good);
        let forged = Request {
            key: Some("k".into()),
            signature: Some("00".into()),
            body,
        };
        count(&c, "k", "sec", &forged);
        assert_eq!(c.requests.load(Ordering::Relaxed), 2);
        assert_eq!(c.events.load(Ordering::Relaxed), 2);
        assert_eq!(c.bad.load(Ordering::Relaxed), 1);
        assert_eq!(c.by_name.lock().unwrap().get("member_added"), Some(&2));
    }
}

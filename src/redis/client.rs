//! One Redis connection as a sans-IO state machine: the event loop owns the
//! socket (and TLS) and feeds plaintext in; this decides what to send, reads
//! replies in order, and says when to reconnect. No socket and no clock here.
//!
//! A node keeps two: a **subscriber** (`SUBSCRIBE <channel>`, then it only
//! receives) and a **publisher** (`PUBLISH`, one reply per command, pipelined).
//!
//! Life of a connection: `Down` (wait for the back-off) → `Connecting` (the
//! loop opened a socket) → `Handshake` (`AUTH`, `SELECT`, then `SUBSCRIBE` or
//! `PING`, pipelined) → `Ready`. Any failure (EOF, a RESP error, an error
//! reply, a reply that does not come within [`REPLY_TIMEOUT_MS`]) goes back to
//! `Down` with a doubled back-off, from [`BACKOFF_MIN_MS`] up to
//! [`BACKOFF_MAX_MS`]; reaching `Ready` resets it. An idle connection is
//! pinged every [`PING_IDLE_MS`], so a dead peer is noticed without traffic.
//!
//! Publishes written but not yet acknowledged are kept; on a failure
//! [`Client::disconnected`] hands them back so the caller can send them again
//! after the reconnect (receivers drop the ones that had arrived, by `seq`).

use std::collections::VecDeque;
use std::rc::Rc;

use super::Target;
use super::resp::{self, Value};

pub const BACKOFF_MIN_MS: u64 = 250;
pub const BACKOFF_MAX_MS: u64 = 5_000;
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const REPLY_TIMEOUT_MS: u64 = 10_000;
pub const PING_IDLE_MS: u64 = 2_000;
/// Largest reply or message accepted from Redis.
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Subscriber,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Down { retry_at: u64 },
    Connecting { since: u64 },
    Handshake,
    Ready,
}

#[derive(Debug)]
enum Awaiting {
    Auth,
    Select,
    Subscribe,
    Ping,
    /// The payload, and whether to send it again after a reconnect.
    Publish(Rc<[u8]>, bool),
}

/// What happened, for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished: the subscriber is subscribed, or the
    /// publisher may publish.
    Ready,
    /// A message on the subscribed channel.
    Message(Vec<u8>),
    /// Redis acknowledged a PUBLISH: this many subscribers received it.
    Published(i64),
}

/// Why the connection must be dropped; the text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct Client {
    role: Role,
    channel: Vec<u8>,
    username: Option<String>,
    password: Option<String>,
    db: u64,
    state: State,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// Replies expected, oldest first, with when the command was sent.
    awaiting: VecDeque<(Awaiting, u64)>,
    handshake_left: usize,
    last_io: u64,
    backoff: u64,
    events: VecDeque<Event>,
    limits: resp::Limits,
}

impl Client {
    pub fn new(role: Role, target: &Target, channel: &str) -> Client {
        Client {
            role,
            channel: channel.as_bytes().to_vec(),
            username: target.username.clone(),
            password: target.password.clone(),
            db: target.db,
            state: State::Down { retry_at: 0 },
            out: Vec::new(),
            inbuf: Vec::new(),
            awaiting: VecDeque::new(),
            handshake_left: 0,
            last_io: 0,
            backoff: BACKOFF_MIN_MS,
            events: VecDeque::new(),
            limits: resp::Limits {
                max_depth: 4,
                max_bulk: MAX_REPLY,
                max_array: 1024,
            },
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// A socket is open but the handshake has not started (TLS still going).
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting { .. })
    }

    pub fn is_down(&self) -> bool {
        matches!(self.state, State::Down { .. })
    }

    /// The back-off has passed: the loop should open a socket now.
    pub fn should_connect(&self, now: u64) -> bool {
        matches!(self.state, State::Down { retry_at } if now >= retry_at)
    }

    /// A subscriber connection the previous process image subscribed and
    /// handed over (`revurb upgrade`): ready at once, with `unread` (the
    /// start of a reply not yet complete) kept and `messages` (received
    /// before the exec) given out after the `Ready` event.
    pub fn adopt_ready(&mut self, now: u64, unread: Vec<u8>, messages: Vec<Vec<u8>>) {
        self.state = State::Ready;
        self.last_io = now;
        self.backoff = BACKOFF_MIN_MS;
        self.handshake_left = 0;
        self.awaiting.clear();
        self.out.clear();
        self.inbuf = unread;
        self.events.push_back(Event::Ready);
        self.events.extend(messages.into_iter().map(Event::Message));
    }

    /// Bytes received that do not make a whole reply yet (the hand-over
    /// of an upgrade carries them).
    pub fn unread(&self) -> &[u8] {
        &self.inbuf
    }

    /// The loop started a non-blocking connect.
    pub fn connecting(&mut self, now: u64) {
        self.state = State::Connecting { since: now };
    }

    /// The socket (and TLS, if any) is up: queue the handshake.
    pub fn connected(&mut self, now: u64) {
        self.state = State::Handshake;
        self.last_io = now;
        self.handshake_left = 0;
        if let Some(password) = self.password.clone() {
            match self.username.clone() {
                Some(user) => self.command(&[b"AUTH", user.as_bytes(), password.as_bytes()], now),
                None => self.command(&[b"AUTH", password.as_bytes()], now),
            }
            self.awaiting.push_back((Awaiting::Auth, now));
            self.handshake_left += 1;
        }
        if self.db != 0 {
            let db = self.db.to_string();
            self.command(&[b"SELECT", db.as_bytes()], now);
            self.awaiting.push_back((Awaiting::Select, now));
            self.handshake_left += 1;
        }
        match self.role {
            Role::Subscriber => {
                let channel = std::mem::take(&mut self.channel);
                self.command(&[b"SUBSCRIBE", &channel], now);
                self.channel = channel;
                self.awaiting.push_back((Awaiting::Subscribe, now));
            }
            Role::Publisher => {
                self.command(&[b"PING"], now);
                self.awaiting.push_back((Awaiting::Ping, now));
            }
        }
        self.handshake_left += 1;
    }

    fn command(&mut self, args: &[&[u8]], now: u64) {
        self.out.reserve(resp::encoded_len(args));
        self.out.extend_from_slice(&resp::encode_command(args));
        self.last_io = now;
    }

    /// Publish `payload` (only when ready; the caller holds it otherwise).
    /// A `durable` one is handed back by [`Client::disconnected`] if Redis
    /// had not acknowledged it.
    pub fn publish(&mut self, now: u64, payload: Rc<[u8]>, durable: bool) {
        debug_assert!(self.is_ready());
        let channel = std::mem::take(&mut self.channel);
        self.command(&[b"PUBLISH", &channel, &payload], now);
        self.channel = channel;
        self.awaiting
            .push_back((Awaiting::Publish(payload, durable), now));
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// The loop wrote `n` bytes of [`Client::output`].
    pub fn wrote(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    /// Publishes written or queued, not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.awaiting
            .iter()
            .filter(|(a, _)| matches!(a, Awaiting::Publish(..)))
            .count()
    }

    /// The durable publishes written or queued and not yet acknowledged,
    /// oldest first, left in place (an upgrade carries copies over).
    pub fn unacknowledged_durable(&self) -> Vec<Rc<[u8]>> {
        self.awaiting
            .iter()
            .filter_map(|(a, _)| match a {
                Awaiting::Publish(p, true) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes from Redis. An error means the connection must be dropped
    /// (then call [`Client::disconnected`]).
    pub fn received(&mut self, now: u64, bytes: &[u8]) -> Result<(), Failure> {
        self.inbuf.extend_from_slice(bytes);
        let mut used = 0;
        let result = loop {
            match resp::parse(&self.inbuf[used..], &self.limits) {
                Ok(Some((value, n))) => {
                    used += n;
                    if let Err(e) = self.reply(now, value) {
                        break Err(e);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => {
                    break Err(Failure(format!(
                        "Redis sent something that is not RESP2: {e}"
                    )));
                }
            }
        };
        self.inbuf.drain(..used);
        result
    }

    fn reply(&mut self, now: u64, value: Value) -> Result<(), Failure> {
        // Pushed messages on the subscriber are not replies.
        if self.role == Role::Subscriber
            && let Value::Array(Some(items)) = &value
            && let Some(Value::Bulk(Some(kind))) = items.first()
            && kind.as_slice() == b"message"
        {
            return match items.get(2) {
                Some(Value::Bulk(Some(payload))) if self.state == State::Ready => {
                    self.events.push_back(Event::Message(payload.clone()));
                    Ok(())
                }
                _ => Err(Failure("Redis sent a malformed pub/sub message".into())),
            };
        }
        let Some((awaiting, _)) = self.awaiting.pop_front() else {
            return Err(Failure(format!(
                "Redis sent a reply nobody asked for: {}",
                describe(&value)
            )));
        };
        let ok = match (&awaiting, &value) {
            (_, Value::Error(e)) => return Err(self.error_reply(&awaiting, e)),
            (Awaiting::Auth | Awaiting::Select, Value::Simple(_)) => true,
            (Awaiting::Ping, Value::Simple(s)) => s.eq_ignore_ascii_case("PONG"),
            (Awaiting::Ping, Value::Array(Some(items))) => {
                matches!(items.first(), Some(Value::Bulk(Some(k))) if k.eq_ignore_ascii_case(b"pong"))
            }
            (Awaiting::Subscribe, Value::Array(Some(items))) => {
                matches!(items.first(), Some(Value::Bulk(Some(k))) if k.as_slice() == b"subscribe")
            }
            (Awaiting::Publish(..), Value::Integer(n)) => {
                self.events.push_back(Event::Published(*n));
                true
            }
            _ => false,
        };
        if !ok {
            return Err(Failure(format!(
                "unexpected Redis reply {} to {}",
                describe(&value),
                awaiting.command()
            )));
        }
        if self.state == State::Handshake {
            self.handshake_left -= 1;
            if self.handshake_left == 0 {
                self.state = State::Ready;
                self.backoff = BACKOFF_MIN_MS;
                self.events.push_back(Event::Ready);
            }
        }
        self.last_io = self.last_io.max(now);
        Ok(())
    }

    fn error_reply(&self, awaiting: &Awaiting, e: &str) -> Failure {
        let hint = if e.starts_with("NOAUTH") {
            "; Redis wants a password: set REDIS_PASSWORD (and REDIS_USERNAME for an ACL user)"
        } else if e.starts_with("WRONGPASS") || e.contains("invalid password") {
            "; check REDIS_USERNAME and REDIS_PASSWORD"
        } else if matches!(awaiting, Awaiting::Select) {
            "; check REDIS_DB"
        } else if e.starts_with("NOPERM") {
            "; the Redis user needs the PUBLISH, SUBSCRIBE and PING commands and the channel"
        } else {
            ""
        };
        Failure(format!("Redis refused {}: {e}{hint}", awaiting.command()))
    }

    /// The socket failed or closed. Returns the payloads of durable publishes
    /// that were not acknowledged, oldest first, to send again after
    /// reconnecting (the others are state the reconnect replaces).
    pub fn disconnected(&mut self, now: u64) -> Vec<Rc<[u8]>> {
        if self.state == State::Ready {
            self.backoff = BACKOFF_MIN_MS;
        }
        let retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX_MS);
        self.state = State::Down { retry_at };
        self.out = Vec::new();
        self.inbuf = Vec::new();
        self.handshake_left = 0;
        self.events.clear();
        std::mem::take(&mut self.awaiting)
            .into_iter()
            .filter_map(|(a, _)| match a {
                Awaiting::Publish(p, true) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// When [`Client::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> u64 {
        match self.state {
            State::Down { retry_at } => retry_at,
            State::Connecting { since } => since + CONNECT_TIMEOUT_MS,
            State::Handshake | State::Ready => {
                let ping = self.last_io + PING_IDLE_MS;
                match self.awaiting.front() {
                    Some((_, sent)) => (sent + REPLY_TIMEOUT_MS).min(ping),
                    None => ping,
                }
            }
        }
    }

    /// Connect and reply deadlines, and the idle ping.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), Failure> {
        match self.state {
            State::Down { .. } => Ok(()),
            State::Connecting { since } if now >= since + CONNECT_TIMEOUT_MS => Err(Failure(
                format!("no connection within {} s", CONNECT_TIMEOUT_MS / 1000),
            )),
            State::Connecting { .. } => Ok(()),
            State::Handshake | State::Ready => {
                if let Some((a, sent)) = self.awaiting.front()
                    && now >= sent + REPLY_TIMEOUT_MS
                {
                    return Err(Failure(format!(
                        "no reply to {} within {} s",
                        a.command(),
                        REPLY_TIMEOUT_MS / 1000
                    )));
                }
                if self.state == State::Ready && now >= self.last_io + PING_IDLE_MS {
                    self.command(&[b"PING"], now);
                    self.awaiting.push_back((Awaiting::Ping, now));
                }
                Ok(())
            }
        }
    }
}

impl Awaiting {
    fn command(&self) -> &'static str {
        match self {
            Awaiting::Auth => "AUTH",
            Awaiting::Select => "SELECT",
            Awaiting::Subscribe => "SUBSCRIBE",
            Awaiting::Ping => "PING",
            Awaiting::Publish(..) => "PUBLISH",
        }
    }
}

fn describe(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(user: Option<&str>, pass: Option<&str>, db: u64) -> Target {
        Target {
            tls: false,
            host: "h".into(),
            port: 1,
            username: user.map(String::from),
            password: pass.map(String::from),
            db,
        }
    }

    fn take(c: &mut Client) -> String {
        let s = String::from_utf8(c.output().to_vec()).unwrap();
        let n = c.output().len();
        c.wrote(n);
        s
    }

    fn events(c: &mut Client) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn subscriber_handshake_with_acl_auth_and_db() {
        let mut c = Client::new(Role::Subscriber, &target(Some("u"), Some("p"), 3), "reverb");
        assert!(c.should_connect(0));
        c.connecting(0);
        assert!(!c.should_connect(0));
        c.connected(1);
        assert_eq!(
            take(&mut c),
            "*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nreverb\r\n"
        );
        // replies split at every byte still work
        let replies = b"+OK\r\n+OK\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\nreverb\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$6\r\nreverb\r\n$5\r\nhello\r\n";
        for split in 0..replies.len() {
            let mut c = Client::new(Role::Subscriber, &target(Some("u"), Some("p"), 3), "reverb");
            c.connecting(0);
            c.connected(1);
            c.received(2, &replies[..split]).unwrap();
            c.received(2, &replies[split..]).unwrap();
            assert_eq!(
                events(&mut c),
                vec![Event::Ready, Event::Message(b"hello".to_vec())],
                "split at {split}"
            );
            assert!(c.is_ready());
        }
        let _ = c;
    }

    #[test]
    fn publisher_pipelines_and_returns_unacknowledged_on_failure() {
        let mut c = Client::new(Role::Publisher, &target(None, Some("pw"), 0), "ch");
        c.connecting(0);
        c.connected(0);
        assert_eq!(
            take(&mut c),
            "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$4\r\nPING\r\n"
        );
        c.received(1, b"+OK\r\n+PONG\r\n").unwrap();
        assert_eq!(events(&mut c), vec![Event::Ready]);
        c.publish(2, Rc::from(&b"one"[..]), true);
        c.publish(2, Rc::from(&b"two"[..]), true);
        c.publish(2, Rc::from(&b"state"[..]), false);
        assert_eq!(
            take(&mut c),
            "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\none\r\n*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$3\r\ntwo\r\n*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nstate\r\n"
        );
        assert_eq!(c.unacknowledged(), 3);
        c.received(3, b":2\r\n").unwrap();
        assert_eq!(c.unacknowledged(), 2);
        assert_eq!(events(&mut c), vec![Event::Published(2)]);
        // only the durable one comes back: the state would be stale by then
        let back = c.disconnected(4);
        assert_eq!(back, vec![Rc::from(&b"two"[..])]);
        assert!(c.is_down());
        // it was ready, so the first retry is quick
        assert!(!c.should_connect(4 + BACKOFF_MIN_MS - 1));
        assert!(c.should_connect(4 + BACKOFF_MIN_MS));
    }

    #[test]
    fn error_replies_fail_with_a_hint() {
        let mut c = Client::new(Role::Subscriber, &target(None, None, 0), "ch");
        c.connecting(0);
        c.connected(0);
        let e = c
            .received(1, b"-NOAUTH Authentication required.\r\n")
            .unwrap_err();
        assert!(e.0.contains("REDIS_PASSWORD"), "{e}");
        let mut c = Client::new(Role::Publisher, &target(Some("u"), Some("x"), 0), "ch");
        c.connecting(0);
        c.connected(0);
        let e = c
            .received(1, b"-WRONGPASS invalid username-password pair\r\n")
            .unwrap_err();
        assert!(
            e.0.contains("AUTH") && e.0.contains("REDIS_USERNAME"),
            "{e}"
        );
    }

    #[test]
    fn garbage_and_unasked_replies_are_failures() {
        let mut c = Client::new(Role::Publisher, &target(None, None, 0), "ch");
        c.connecting(0);
        c.connected(0);
        assert!(c.received(1, b"?what\r\n").is_err());
        let mut c = Client::new(Role::Publisher, &target(None, None, 0), "ch");
        c.connecting(0);
        c.connected(0);
        c.received(1, b"+PONG\r\n").unwrap();
        assert!(c.received(1, b":1\r\n").is_err());
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_resets_when_ready() {
        let mut c = Client::new(Role::Publisher, &target(None, None, 0), "ch");
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            c.connecting(now);
            c.disconnected(now);
            let at = c.poll_timeout();
            waits.push(at - now);
            now = at;
        }
        assert_eq!(waits, vec![250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        c.connecting(now);
        c.connected(now);
        c.received(now, b"+PONG\r\n").unwrap();
        c.disconnected(now);
        assert_eq!(c.poll_timeout() - now, BACKOFF_MIN_MS);
    }

    #[test]
    fn idle_connections_are_pinged_and_silent_ones_fail() {
        let mut c = Client::new(Role::Subscriber, &target(None, None, 0), "ch");
        c.connecting(0);
        assert!(c.handle_timeout(CONNECT_TIMEOUT_MS - 1).is_ok());
        assert!(c.handle_timeout(CONNECT_TIMEOUT_MS).is_err());
        c.disconnected(CONNECT_TIMEOUT_MS);

        let mut c = Client::new(Role::Subscriber, &target(None, None, 0), "ch");
        c.connecting(0);
        c.connected(0);
        c.received(1, b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
            .unwrap();
        take(&mut c);
        let t = 1 + PING_IDLE_MS;
        assert_eq!(c.poll_timeout(), t);
        c.handle_timeout(t - 1).unwrap();
        assert_eq!(take(&mut c), "");
        c.handle_timeout(t).unwrap();
        assert_eq!(take(&mut c), "*1\r\n$4\r\nPING\r\n");
        // the subscribed-mode answer to PING is an array
        c.received(t + 1, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
            .unwrap();
        let t = t + 1 + PING_IDLE_MS;
        c.handle_timeout(t).unwrap();
        assert_eq!(take(&mut c), "*1\r\n$4\r\nPING\r\n");
        // no answer this time
        assert!(c.handle_timeout(t + REPLY_TIMEOUT_MS - 1).is_ok());
        assert!(c.handle_timeout(t + REPLY_TIMEOUT_MS).is_err());
    }

    #[test]
    fn messages_before_ready_are_a_protocol_error() {
        let mut c = Client::new(Role::Subscriber, &target(None, None, 0), "ch");
        c.connecting(0);
        c.connected(0);
        assert!(
            c.received(1, b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n")
                .is_err()
        );
    }
}

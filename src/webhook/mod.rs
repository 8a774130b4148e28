//! Webhooks: what the application is told about its channels, sent from the
//! event loop without ever blocking it.
//!
//! The parts, all sans-IO but the last:
//!
//! - this module: the configuration of one webhook ([`Webhook`]: URL, event
//!   types, channel filter, extra headers, batching), the events
//!   ([`Event`], [`Kind`]), the request body and its signature;
//! - the hub (`pusher::webhooks`) decides *what* happened and *when*:
//!   occupied and vacated, members added and removed (with the delay that
//!   suppresses a page reload), client events, cache misses and counts, once
//!   per cluster; it yields [`crate::pusher::Output::Webhook`];
//! - `dispatch` decides *how* it is sent: one bounded queue per webhook,
//!   batching, retries with back-off, order per URL;
//! - `http` is the HTTP/1.1 client: the request encoder and an incremental
//!   response parser with limits;
//! - `event_loop::webhook` owns the sockets (plain and TLS, in the same
//!   `mio` poll as everything else) and name resolution;
//! - `event_loop::delivery` joins the dispatcher and the transport for the
//!   loop (events in, requests out, outcomes back, deadlines, reload,
//!   shutdown).

use std::fmt;
use std::rc::Rc;

use serde_json::{Map, Value};

pub mod dispatch;
pub mod http;

/// A webhook event type, by its Pusher name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::ChannelOccupied,
        Kind::ChannelVacated,
        Kind::MemberAdded,
        Kind::MemberRemoved,
        Kind::ClientEvent,
        Kind::CacheMiss,
        Kind::SubscriptionCount,
    ];

    /// The name in the payload and in `event_types`.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::ChannelOccupied => "channel_occupied",
            Kind::ChannelVacated => "channel_vacated",
            Kind::MemberAdded => "member_added",
            Kind::MemberRemoved => "member_removed",
            Kind::ClientEvent => "client_event",
            Kind::CacheMiss => "cache_miss",
            Kind::SubscriptionCount => "subscription_count",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of event types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Kinds(u8);

impl Kinds {
    pub const fn empty() -> Kinds {
        Kinds(0)
    }
    pub fn insert(&mut self, k: Kind) {
        self.0 |= k.bit();
    }
    pub const fn contains(self, k: Kind) -> bool {
        self.0 & k.bit() != 0
    }
    pub const fn union(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl FromIterator<Kind> for Kinds {
    fn from_iter<I: IntoIterator<Item = Kind>>(iter: I) -> Kinds {
        let mut s = Kinds::empty();
        for k in iter {
            s.insert(k);
        }
        s
    }
}

/// An `http://` or `https://` URL, split the way the client needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    pub tls: bool,
    /// A DNS name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an absolute `http://` or `https://` URL. No user info, no
    /// fragment, no whitespace or control characters; the port defaults
    /// to 80 or 443.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{s:?} is not an http:// or https:// URL"));
        };
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!("{s:?} contains whitespace or control characters"));
        }
        if s.contains('#') {
            return Err(format!("{s:?} has a fragment (#), which is never sent"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "{s:?} has user info; put credentials in \"headers\""
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return Err(format!("{s:?}: unclosed [ in the host"));
            };
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if !host_ok {
            return Err(format!("{s:?} has no valid host"));
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{s:?} has an invalid port {p:?}")),
            },
        };
        let path = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            tls,
            host: host.to_ascii_lowercase(),
            port,
            path,
        })
    }

    /// Scheme, host and port: the key connections are reused by.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    /// The `Host` header's value (the port only when not the default).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL for logs and `revurb config`: the value of each query
    /// parameter (a bare one whole) is `****`, since a token there is a
    /// secret. `https://h/p?token=****&v=****`.
    pub fn redacted(&self) -> String {
        let shown = self.to_string();
        let Some((head, query)) = shown.split_once('?') else {
            return shown;
        };
        let masked: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) => format!("{k}=****"),
                None if p.is_empty() => String::new(),
                None => "****".to_string(),
            })
            .collect();
        format!("{head}?{}", masked.join("&"))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// Which channels a webhook is for (soketi's `filter`): both parts must
/// match when both are given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub starts_with: Option<String>,
    pub ends_with: Option<String>,
}

impl Filter {
    pub fn matches(&self, channel: &str) -> bool {
        self.starts_with
            .as_deref()
            .is_none_or(|p| channel.starts_with(p))
            && self
                .ends_with
                .as_deref()
                .is_none_or(|s| channel.ends_with(s))
    }
}

/// One configured webhook of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: Url,
    pub event_types: Kinds,
    pub filter: Filter,
    /// Extra request headers, in the order given.
    pub headers: Vec<(String, String)>,
    /// Up to [`BATCH_MAX_EVENTS`] events or [`BATCH_WINDOW_MS`] per request;
    /// off: one request per event, at once.
    pub batching: bool,
}

/// Pusher's batching: at most this many events in one request...
pub const BATCH_MAX_EVENTS: usize = 20;
/// ... gathered for at most this long.
pub const BATCH_WINDOW_MS: u64 = 250;

impl Webhook {
    /// Whether this webhook wants an event of `kind` on `channel`.
    pub fn wants(&self, kind: Kind, channel: &str) -> bool {
        self.event_types.contains(kind) && self.filter.matches(channel)
    }
}

/// What happened, as the hub reports it. The fields a kind does not have
/// are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    pub channel: Rc<str>,
    /// `member_added`, `member_removed`; `client_event` on presence channels.
    pub user_id: Option<Rc<str>>,
    /// `client_event`: the event name, its data (as the client sent it,
    /// a JSON string) and the sender's socket id.
    pub event: Option<Rc<str>>,
    pub data: Option<Rc<str>>,
    pub socket_id: Option<Rc<str>>,
    /// `subscription_count`.
    pub subscription_count: Option<u64>,
}

impl Event {
    /// An event with only a kind and a channel.
    pub fn new(kind: Kind, channel: Rc<str>) -> Event {
        Event {
            kind,
            channel,
            user_id: None,
            event: None,
            data: None,
            socket_id: None,
            subscription_count: None,
        }
    }

    /// The event as Pusher writes it in `events`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), self.kind.name().into());
        m.insert("channel".into(), Value::from(&*self.channel));
        let mut put = |k: &str, v: &Option<Rc<str>>| {
            if let Some(v) = v {
                m.insert(k.into(), Value::from(&**v));
            }
        };
        put("event", &self.event);
        put("data", &self.data);
        put("socket_id", &self.socket_id);
        put("user_id", &self.user_id);
        if let Some(n) = self.subscription_count {
            m.insert("subscription_count".into(), n.into());
        }
        Value::Object(m)
    }
}

/// The body of one request: `{"time_ms": <ms>, "events": [...]}`.
pub fn body<'a>(time_ms: u64, events: impl IntoIterator<Item = &'a Event>) -> Vec<u8> {
    let events: Vec<Value> = events.into_iter().map(Event::to_json).collect();
    let mut m = Map::new();
    m.insert("time_ms".into(), time_ms.into());
    m.insert("events".into(), Value::Array(events));
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

/// `X-Pusher-Signature`: the hex HMAC-SHA256 of the raw body, keyed with
/// the app secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    crate::auth::hmac_sha256_hex(secret.as_bytes(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_sets() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("channel_existence"), None);
        let s: Kinds = [Kind::MemberAdded, Kind::CacheMiss].into_iter().collect();
        assert!(s.contains(Kind::MemberAdded) && s.contains(Kind::CacheMiss));
        assert!(!s.contains(Kind::ClientEvent));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Kind::MemberAdded, Kind::CacheMiss]
        );
        assert!(Kinds::empty().is_empty());
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://Hooks.Example.com/pusher?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "hooks.example.com", 443)
        );
        assert_eq!(u.path, "/pusher?x=1");
        assert_eq!(u.origin(), "https://hooks.example.com:443");
        assert_eq!(u.host_header(), "hooks.example.com");
        let u = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/");
        let u = Url::parse("http://[::1]:9000/h").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.host_header(), "[::1]:9000");
        assert_eq!(Url::parse("http://h?q").unwrap().path, "/?q");
        let u = Url::parse("https://h:8443/p/a?token=s3cret&v=1&bare&&x=").unwrap();
        assert_eq!(
            u.redacted(),
            "https://h:8443/p/a?token=****&v=****&****&&x=****"
        );
        assert_eq!(Url::parse("http://h/p").unwrap().redacted(), "http://h/p");
        for bad in [
            "ftp://x/",
            "example.com/hook",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://u:p@h/",
            "http://h/a b",
            "http://h/#frag",
            "http://[::1/",
            "http://h\u{e9}/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters() {
        let f = Filter {
            starts_with: Some("presence-".into()),
            ends_with: Some("-room".into()),
        };
        assert!(f.matches("presence-chat-room"));
        assert!(!f.matches("presence-chat"));
        assert!(!f.matches("private-chat-room"));
        assert!(Filter::default().matches("anything"));
    }

    #[test]
    fn event_json_and_body() {
        let mut e = Event::new(Kind::ClientEvent, "presence-a".into());
        e.event = Some("client-typing".into());
        e.data = Some("{\"x\":1}".into());
        e.socket_id = Some("1.2".into());
        e.user_id = Some("7".into());
        assert_eq!(
            e.to_json(),
            serde_json::json!({"name":"client_event","channel":"presence-a",
                "event":"client-typing","data":"{\"x\":1}","socket_id":"1.2","user_id":"7"})
        );
        let mut c = Event::new(Kind::SubscriptionCount, "c".into());
        c.subscription_count = Some(3);
        let b = body(1700, [&c]);
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"time_ms":1700,"events":[{"name":"subscription_count","channel":"c","subscription_count":3}]}"#
        );
    }

    #[test]
    fn signature_is_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! A channel of one app: its type (from the name's prefix), its subscribers,
//! its presence members and its cached last event. No I/O and no clock: the
//! caller passes times in and sends the frames it gets back.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::Value;

use super::ConnId;

/// What a channel's name makes it (port decisions: prefixes with the dash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub auth: Auth,
    pub encrypted: bool,
    pub cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    Private,
    Presence,
    /// `#server-to-user-<id>`: only the server subscribes connections to it.
    ServerToUser,
}

pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";
/// Pusher's limit on channel name length.
pub const MAX_CHANNEL_NAME: usize = 164;

impl Kind {
    pub fn of(name: &str) -> Kind {
        let k = |auth, encrypted, cache| Kind {
            auth,
            encrypted,
            cache,
        };
        if name.starts_with("private-encrypted-cache-") {
            k(Auth::Private, true, true)
        } else if name.starts_with("private-encrypted-") {
            k(Auth::Private, true, false)
        } else if name.starts_with("private-cache-") {
            k(Auth::Private, false, true)
        } else if name.starts_with("private-") {
            k(Auth::Private, false, false)
        } else if name.starts_with("presence-cache-") {
            k(Auth::Presence, false, true)
        } else if name.starts_with("presence-") {
            k(Auth::Presence, false, false)
        } else if name.starts_with("cache-") {
            k(Auth::Public, false, true)
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            k(Auth::ServerToUser, false, false)
        } else {
            k(Auth::Public, false, false)
        }
    }

    pub fn is_presence(self) -> bool {
        self.auth == Auth::Presence
    }

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match (self.auth, self.encrypted, self.cache) {
            (Auth::Presence, _, _) => "presence",
            (Auth::Private, true, _) => "encrypted",
            (Auth::Private, false, _) => "private",
            (Auth::ServerToUser, _, _) => "user",
            (Auth::Public, _, true) => "cache",
            (Auth::Public, _, false) => "public",
        }
    }
}

/// Pusher's channel name rule: 1 to 164 characters of `[A-Za-z0-9_\-=@,.;]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
        })
}

/// A name the HTTP API may publish to: a valid client name, or a server-to-user
/// channel whose user id is 1 to 164 printable characters.
pub fn valid_api_name(name: &str) -> bool {
    if let Some(user) = name.strip_prefix(SERVER_TO_USER_PREFIX) {
        return !user.is_empty()
            && user.len() <= MAX_CHANNEL_NAME
            && !user.chars().any(char::is_control);
    }
    valid_name(name)
}

/// One presence member as its `channel_data` described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// `user_id` as given (a string or a number).
    pub user_id: Value,
    /// `user_id` as a string, the identity used for uniqueness (`1` == `"1"`).
    pub key: String,
    /// The whole decoded `channel_data` object, re-sent in `member_added`.
    pub data: Value,
}

impl Member {
    pub fn user_info(&self) -> Value {
        self.data.get("user_info").cloned().unwrap_or(Value::Null)
    }
}

/// The longest presence `user_id` accepted, in characters (Pusher's limit);
/// a longer one is refused with 4009 "Connection is unauthorized".
pub const MAX_USER_ID_CHARS: usize = 128;

/// `user_id` as the string identity of a user; `None` unless a string or number.
pub fn user_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct Presence {
    /// Each subscribed connection's member entry.
    pub by_conn: HashMap<ConnId, Rc<Member>>,
    /// Unique users in order of arrival, with how many connections each has.
    pub users: Vec<(Rc<Member>, u32)>,
}

impl Presence {
    fn user_pos(&self, key: &str) -> Option<usize> {
        self.users.iter().position(|(m, _)| m.key == key)
    }

    pub fn has_user(&self, key: &str) -> bool {
        self.user_pos(key).is_some()
    }

    /// Add a connection's membership; true if this is the user's first connection.
    pub fn add(&mut self, conn: ConnId, member: Rc<Member>) -> bool {
        self.by_conn.insert(conn, member.clone());
        match self.user_pos(&member.key) {
            Some(i) => {
                self.users[i].1 += 1;
                false
            }
            None => {
                self.users.push((member, 1));
                true
            }
        }
    }

    /// Replace a connection's member entry when it is the same user (a
    /// re-subscribe); false (and nothing changed) otherwise.
    pub fn replace_same_user(&mut self, conn: ConnId, member: Rc<Member>) -> bool {
        let Some(old) = self.by_conn.get(&conn) else {
            return false;
        };
        if old.key != member.key {
            return false;
        }
        if let Some(entry) = self.users.iter_mut().find(|(m, _)| m.key == member.key) {
            entry.0 = member.clone();
        }
        self.by_conn.insert(conn, member);
        true
    }

    /// Remove a connection; returns the member if it was the user's last connection.
    pub fn remove(&mut self, conn: ConnId) -> Option<Rc<Member>> {
        let member = self.by_conn.remove(&conn)?;
        let i = self.user_pos(&member.key)?;
        self.users[i].1 -= 1;
        if self.users[i].1 == 0 {
            self.users.remove(i);
            Some(member)
        } else {
            None
        }
    }

    /// The `subscription_succeeded` data: `{"presence":{"count","ids","hash"}}`;
    /// `hash` is always an object (port decisions).
    pub fn snapshot(&self) -> String {
        snapshot(self.users.iter().map(|(m, _)| &**m))
    }
}

/// `{"presence":{"count","ids","hash"}}` for these members (one per user).
pub fn snapshot<'a>(members: impl Iterator<Item = &'a Member>) -> String {
    let mut ids = Vec::new();
    let mut hash = serde_json::Map::new();
    for m in members {
        ids.push(m.user_id.clone());
        hash.insert(m.key.clone(), m.user_info());
    }
    let mut presence = serde_json::Map::new();
    presence.insert("count".into(), Value::from(ids.len()));
    presence.insert("ids".into(), Value::Array(ids));
    presence.insert("hash".into(), Value::Object(hash));
    let mut outer = serde_json::Map::new();
    outer.insert("presence".into(), Value::Object(presence));
    Value::Object(outer).to_string()
}

/// The last event of a cache channel.
#[derive(Debug, Clone)]
pub struct Cached {
    pub event: String,
    pub data: String,
    /// The whole message as sent, replayed to new subscribers.
    pub message: Rc<[u8]>,
    pub expires_at: u64,
}

/// Pusher keeps a cache channel's last event for 30 minutes.
pub const CACHE_TTL_MS: u64 = 30 * 60 * 1000;

#[derive(Debug)]
pub struct Channel {
    pub kind: Kind,
    /// Subscribers in a dense list, so broadcast is a straight walk.
    pub subs: Vec<ConnId>,
    /// Position of each subscriber in `subs`.
    index: HashMap<ConnId, u32>,
    pub presence: Option<Box<Presence>>,
    pub cache: Option<Box<Cached>>,
}

impl Channel {
    pub fn new(name: &str) -> Channel {
        let kind = Kind::of(name);
        Channel {
            kind,
            subs: Vec::new(),
            index: HashMap::new(),
            presence: kind.is_presence().then(Box::default),
            cache: None,
        }
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.index.contains_key(&conn)
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Add a subscriber; false if it already was one.
    pub fn add(&mut self, conn: ConnId) -> bool {
        if self.index.contains_key(&conn) {
            return false;
        }
        self.index.insert(conn, self.subs.len() as u32);
        self.subs.push(conn);
        true
    }

    /// Remove a subscriber; false if it was not one.
    pub fn remove(&mut self, conn: ConnId) -> bool {
        let Some(pos) = self.index.remove(&conn) else {
            return false;
        };
        let pos = pos as usize;
        self.subs.swap_remove(pos);
        if let Some(&moved) = self.subs.get(pos) {
            self.index.insert(moved, pos as u32);
        }
        if self.subs.is_empty() {
            // give the memory back: an emptied big channel should not keep its tables
            self.subs = Vec::new();
            self.index = HashMap::new();
        }
        true
    }

    /// The cached event if it is still fresh at `now`.
    pub fn cached(&self, now: u64) -> Option<&Cached> {
        self.cache.as_deref().filter(|c| c.expires_at > now)
    }

    /// Unique users for presence channels, else 0.
    pub fn user_count(&self) -> usize {
        self.presence.as_ref().map_or(0, |p| p.users.len())
    }

    /// A channel that can be dropped: nobody subscribed and no fresh cache.
    pub fn is_dead(&self, now: u64) -> bool {
        self.subs.is_empty() && self.cached(now).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // reference 9, ChannelBrokerTest
    #[test]
    fn kinds_by_prefix() {
        assert_eq!(Kind::of("foo").auth, Auth::Public);
        assert_eq!(Kind::of("private-foo").auth, Auth::Private);
        assert_eq!(Kind::of("presence-foo").auth, Auth::Presence);
        assert!(Kind::of("cache-foo").cache);
        let pc = Kind::of("private-cache-foo");
        assert!(pc.cache && pc.auth == Auth::Private);
        let prc = Kind::of("presence-cache-foo");
        assert!(prc.cache && prc.is_presence());
        let enc = Kind::of("private-encrypted-foo");
        assert!(enc.encrypted && !enc.cache);
        let encc = Kind::of("private-encrypted-cache-foo");
        assert!(encc.encrypted && encc.cache);
        // port decision: the dash is needed
        assert_eq!(Kind::of("privatefoo").auth, Auth::Public);
        assert!(!Kind::of("cachefoo").cache);
        assert_eq!(Kind::of("#server-to-user-1").auth, Auth::ServerToUser);
    }

    #[test]
    fn channel_names() {
        assert!(valid_name("private-chat.1=@,;_-"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name("#server-to-user-1"));
        assert!(!valid_name(&"a".repeat(165)));
        assert!(valid_name(&"a".repeat(164)));
        assert!(valid_api_name("#server-to-user-42"));
        assert!(!valid_api_name("#server-to-user-"));
    }

    // reference 9, ChannelTest 1, 2, 5 (add, remove, dense list)
    /// Connection `n` (generation 0).
    fn id(n: u32) -> ConnId {
        ConnId::new(n, 0)
    }

    #[test]
    fn add_remove_keeps_index_consistent() {
        let mut ch = Channel::new("test");
        for c in 0..5 {
            assert!(ch.add(id(c)));
        }
        assert!(!ch.add(id(3)));
        assert!(ch.remove(id(1)));
        assert!(!ch.remove(id(1)));
        assert_eq!(ch.len(), 4);
        for c in [0, 2, 3, 4] {
            assert!(ch.contains(id(c)));
        }
        let mut subs = ch.subs.clone();
        subs.sort();
        assert_eq!(subs, vec![id(0), id(2), id(3), id(4)]);
        for c in [0, 2, 3, 4] {
            assert!(ch.remove(id(c)));
        }
        assert!(ch.is_empty());
    }

    fn member(id: Value, name: &str) -> Rc<Member> {
        let key = user_key(&id).unwrap();
        Rc::new(Member {
            data: serde_json::json!({"user_id": id.clone(), "user_info": {"name": name}}),
            user_id: id,
            key,
        })
    }

    // reference 9, PresenceChannelTest 5, 9, 10 and ServerTest 43
    #[test]
    fn presence_counts_unique_users() {
        let mut p = Presence::default();
        assert!(p.add(id(1), member(Value::from(1), "Joe")));
        assert!(p.add(id(2), member(Value::from(2), "Joe")));
        assert!(!p.add(id(3), member(Value::from("1"), "Joe")));
        assert_eq!(
            p.snapshot(),
            r#"{"presence":{"count":2,"ids":[1,2],"hash":{"1":{"name":"Joe"},"2":{"name":"Joe"}}}}"#
        );
        assert!(p.remove(id(1)).is_none());
        assert_eq!(
            p.remove(id(3)).map(|m| m.key.clone()),
            Some("1".to_string())
        );
        assert!(p.remove(id(3)).is_none());
        assert_eq!(p.users.len(), 1);
    }

    #[test]
    fn empty_presence_hash_is_an_object() {
        assert_eq!(
            Presence::default().snapshot(),
            r#"{"presence":{"count":0,"ids":[],"hash":{}}}"#
        );
    }
}

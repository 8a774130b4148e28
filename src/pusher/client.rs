//! What a client's messages do: `pusher:ping`, `pusher:subscribe` (in its
//! steps: authorize, capacity, join, reply), `pusher:unsubscribe`,
//! `pusher:signin`, client events (whispers), and the per-connection rate
//! limit in front of them all. WebSocket control frames only touch the
//! connection (`control`).
//!
//! Each handler answers the client with frames or a [`PusherError`]; none
//! closes the socket itself (the hub's `terminate` queues the close), reads
//! a clock or touches I/O. Channel auth signatures are checked by
//! `crate::auth`; the channel rules (names, presence sets, cache) are
//! `channel`'s.

use std::rc::Rc;

use serde_json::Value;

use super::channel::{self, Auth, Channel, Member, SERVER_TO_USER_PREFIX};
use super::cluster::{self, envelope::Body};
use super::{
    AppId, ClientEvents, ConnId, Frame, Hub, MAX_CHANNELS_PER_CONNECTION, PusherError,
    format_socket_id, message, truncate, watchlist,
};

/// A `pusher:subscribe` as the client sent it, checked for shape only.
struct SubscribeRequest<'a> {
    name: &'a str,
    auth: Option<&'a str>,
    /// The `channel_data` text as signed, and its JSON.
    channel_data: Option<(&'a str, Value)>,
}

impl<'a> SubscribeRequest<'a> {
    /// The fields of the message's `data`: a 4200 for a wrong shape, a 4009
    /// for a channel name no client may subscribe to.
    fn parse(data: &'a Value) -> Result<SubscribeRequest<'a>, PusherError> {
        let Value::Object(data) = data else {
            return Err(PusherError::InvalidMessage);
        };
        let Some(Value::String(name)) = data.get("channel") else {
            return Err(PusherError::InvalidMessage);
        };
        let auth = match data.get("auth") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) => Some(a.as_str()),
            Some(_) => return Err(PusherError::InvalidMessage),
        };
        let channel_data = match data.get("channel_data") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => Some((s.as_str(), v)),
                Err(_) => return Err(PusherError::InvalidMessage),
            },
            Some(_) => return Err(PusherError::InvalidMessage),
        };
        if !channel::valid_name(name) && !channel::valid_api_name(name) {
            return Err(PusherError::InvalidChannel);
        }
        Ok(SubscribeRequest {
            name,
            auth,
            channel_data,
        })
    }
}

/// What authorization decided.
enum Authorized {
    /// Join, as this presence member on a presence channel.
    Join(Option<Rc<Member>>),
    /// The connection's own `#server-to-user-` channel: it is in it already.
    OwnUserChannel,
}

/// What joining did, for the reply.
struct Joined {
    /// The `data` of `subscription_succeeded` (the presence set, or `{}`).
    succeeded_data: String,
    /// A cache channel's last event (`Some(None)`: none, so `cache_miss`).
    cached: Option<Option<Frame>>,
    /// The member whose user joined the channel with this connection.
    added: Option<Rc<Member>>,
}

impl Hub {
    pub(super) fn touch(&mut self, now: u64, conn: ConnId) {
        if let Some(c) = self.conn_mut(conn) {
            c.last_seen = now;
            c.pinged_at = None;
        }
    }

    /// A WebSocket PING or PONG control frame arrived (the loop answers PINGs).
    pub fn control(&mut self, now: u64, conn: ConnId) {
        self.touch(now, conn);
        if let Some(c) = self.conn_mut(conn) {
            c.control_frames = true;
        }
    }

    /// A whole text message from a client.
    pub fn message(&mut self, now: u64, conn: ConnId, text: &str) {
        let Some(c) = self.conn(conn) else { return };
        let (app, sid) = (c.app, c.socket_id);
        self.stats.messages_received += 1;
        if self.debug {
            crate::log_debug!(
                "Message Received from {}: {}",
                format_socket_id(sid),
                truncate(text, 200)
            );
        }
        self.touch(now, conn);
        if !self.within_rate_limit(now, conn, app) {
            return;
        }
        let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(text) else {
            return self.send_error(conn, PusherError::InvalidMessage);
        };
        // Reverb decodes a `data` string that holds JSON (its PR #352).
        if let Some(Value::String(s)) = msg.get("data")
            && let Ok(decoded) = serde_json::from_str::<Value>(s)
        {
            msg.insert("data".into(), decoded);
        }
        let event = match msg.get("event") {
            Some(Value::String(e)) => e.clone(),
            _ => return self.send_error(conn, PusherError::InvalidMessage),
        };
        let data = msg.remove("data").unwrap_or(Value::Null);
        let result = match event.as_str() {
            "pusher:ping" => {
                let pong = self.pong_json.clone();
                self.send(conn, pong);
                Ok(())
            }
            "pusher:pong" => Ok(()),
            "pusher:subscribe" => self.subscribe(now, conn, app, &data),
            "pusher:unsubscribe" => self.unsubscribe(now, conn, app, &data),
            "pusher:signin" => self.signin(now, conn, app, &data),
            "pusher:connection_established" => {
                // Reverb re-sends the acknowledgement.
                let ack = message::connection_established(
                    &self.socket_id_of(conn),
                    self.apps[app].config.activity_timeout,
                );
                self.send_json(conn, &ack);
                Ok(())
            }
            e if e.starts_with("client-") => {
                self.client_event(now, conn, app, &event, msg.get("channel"), data)
            }
            e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {
                Err(PusherError::InvalidMessage)
            }
            // Any other name: checked like a client event, then ignored (Reverb).
            _ => match (msg.get("channel"), &data) {
                (Some(Value::String(_)), Value::Null | Value::Object(_) | Value::Array(_)) => {
                    Ok(())
                }
                _ => Err(PusherError::InvalidMessage),
            },
        };
        if let Err(err) = result {
            self.send_error(conn, err);
        }
    }

    /// Reverb's fixed-window limiter; every data message counts.
    pub(super) fn within_rate_limit(&mut self, now: u64, conn: ConnId, app: AppId) -> bool {
        let Some(limit) = self.apps[app].config.rate_limit.clone() else {
            return true;
        };
        let Some(c) = self.conn_mut(conn) else {
            return false;
        };
        let window_open =
            c.rate_count > 0 && now < c.rate_window_start + limit.decay_seconds * 1000;
        if window_open && c.rate_count >= limit.max_attempts {
            self.send_error(conn, PusherError::RateLimit);
            if limit.terminate_on_limit {
                self.terminate(now, conn, PusherError::RateLimit);
            }
            return false;
        }
        if !window_open {
            c.rate_window_start = now;
            c.rate_count = 0;
        }
        c.rate_count += 1;
        true
    }

    /// `pusher:subscribe`, in its steps: check the request's shape,
    /// authorize it, check the connection's and the channel's capacity,
    /// join, and reply.
    pub(super) fn subscribe(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        data: &Value,
    ) -> Result<(), PusherError> {
        let req = SubscribeRequest::parse(data)?;
        let name = req.name;
        let member = match self.authorize(conn, app, req)? {
            Authorized::OwnUserChannel => {
                // pusher-js subscribes to its own #server-to-user-<id> after a
                // signin; the server already put it there, so just confirm.
                let reply = message::event(
                    "pusher_internal:subscription_succeeded",
                    Some("{}"),
                    Some(name),
                );
                self.send_json(conn, &reply);
                return Ok(());
            }
            Authorized::Join(member) => member,
        };
        let Some(already) = self.check_capacity(conn, app, name, member.as_deref())? else {
            return Ok(()); // the connection is gone
        };
        let joined = self.join(now, conn, app, name, member, already);
        self.reply_subscribed(now, conn, app, name, joined);
        if matches!(channel::Kind::of(name).auth, Auth::Private | Auth::Presence) {
            self.authorized(conn);
        }
        Ok(())
    }

    /// Whether `req` may join its channel, and as which presence member.
    fn authorize(
        &self,
        conn: ConnId,
        app: AppId,
        req: SubscribeRequest<'_>,
    ) -> Result<Authorized, PusherError> {
        let name = req.name;
        let auth = match channel::Kind::of(name).auth {
            Auth::Public => return Ok(Authorized::Join(None)),
            Auth::ServerToUser => {
                let own = self
                    .conn(conn)
                    .and_then(|c| c.user.as_deref())
                    .is_some_and(|u| name.strip_prefix(SERVER_TO_USER_PREFIX) == Some(u));
                return if own {
                    Ok(Authorized::OwnUserChannel)
                } else {
                    Err(PusherError::InvalidChannel)
                };
            }
            auth => auth,
        };
        let cfg = &self.apps[app].config;
        let signed_data = match auth {
            Auth::Presence => req.channel_data.as_ref().map(|(raw, _)| *raw),
            _ => None,
        };
        let socket_id = self.socket_id_of(conn);
        if !crate::auth::verify_channel_auth(
            &cfg.key,
            &cfg.secret,
            &socket_id,
            name,
            signed_data,
            req.auth,
        ) {
            return Err(PusherError::Unauthorized);
        }
        if auth != Auth::Presence {
            return Ok(Authorized::Join(None));
        }
        let Some((_, Value::Object(cd))) = req.channel_data else {
            return Err(PusherError::Unauthorized);
        };
        // a channel_data without a usable user_id, or with one over Pusher's
        // 128 characters, is refused as Reverb refuses bad channel_data
        let Some(key) = cd
            .get("user_id")
            .and_then(channel::user_key)
            .filter(|k| k.chars().count() <= channel::MAX_USER_ID_CHARS)
        else {
            return Err(PusherError::Unauthorized);
        };
        if let Some(info) = cd.get("user_info")
            && info.to_string().len() > cfg.max_user_info_size
        {
            return Err(PusherError::UserInfoTooBig);
        }
        Ok(Authorized::Join(Some(Rc::new(Member {
            user_id: cd.get("user_id").cloned().unwrap_or(Value::Null),
            key,
            data: Value::Object(cd),
        }))))
    }

    /// Room for the subscription: under the per-connection channel cap, and
    /// a full presence channel admits only users already in it. Returns
    /// whether the connection is already subscribed, `None` if it is gone.
    fn check_capacity(
        &self,
        conn: ConnId,
        app: AppId,
        name: &str,
        member: Option<&Member>,
    ) -> Result<Option<bool>, PusherError> {
        let Some(c) = self.conn(conn) else {
            return Ok(None);
        };
        let already = c.channels.iter().any(|n| &**n == name);
        // the server-managed #server-to-user- channel of a signin does not count
        let used = c.channels.iter().filter(|n| !n.starts_with('#')).count();
        if !already && used >= MAX_CHANNELS_PER_CONNECTION {
            return Err(PusherError::TooManyChannels);
        }
        if let Some(m) = member {
            let here = self.apps[app]
                .channels
                .get(name)
                .and_then(|ch| ch.presence.as_ref())
                .is_some_and(|p| p.has_user(&m.key));
            if !here
                && !self.remote_has_user(app, name, &m.key)
                && self.cluster_members(app, name).len()
                    >= self.apps[app].config.max_presence_members
            {
                return Err(PusherError::PresenceFull);
            }
        }
        Ok(Some(already))
    }

    /// Put the connection in the channel (and its member in the presence
    /// set), and gather what the reply needs.
    fn join(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        name: &str,
        member: Option<Rc<Member>>,
        already: bool,
    ) -> Joined {
        let kind = channel::Kind::of(name);
        let mut replaced = false;
        if already
            && kind.is_presence()
            && let Some(m) = &member
            && self.apps[app]
                .channels
                .get_mut(name)
                .and_then(|ch| ch.presence.as_mut())
                .is_some_and(|p| p.replace_same_user(conn, m.clone()))
        {
            // Re-subscribing as the same user: Reverb overwrites the entry and
            // nobody else hears anything (other nodes take the new user_info).
            replaced = true;
            let body = cluster::join_body(&self.apps[app].config.id, name, m);
            self.publish(body);
        } else if already && kind.is_presence() {
            // re-subscribing as another user: the old membership leaves first
            self.leave_channel(now, app, name, conn);
            if let Some(c) = self.conn_mut(conn) {
                c.channels.retain(|n| &**n != name);
            }
        }
        let key = self.channel_key(app, name);
        let ch = self.apps[app]
            .channels
            .entry(key.clone())
            .or_insert_with(|| Channel::new(name));
        ch.add(conn);
        let mut added = None;
        if let (Some(p), Some(m), false) = (ch.presence.as_mut(), member, replaced)
            && p.add(conn, m.clone())
        {
            added = Some(m);
        }
        let is_presence = ch.presence.is_some();
        let cached = kind
            .cache
            .then(|| ch.cached(now).map(|c| c.message.clone()));
        let succeeded_data = if is_presence {
            channel::snapshot(self.cluster_members(app, name).iter().map(|m| &**m))
        } else {
            "{}".to_string()
        };
        self.cluster_dirty(app, Some(&key));
        self.hook_count(now, app, &key);
        if let Some(c) = self.conn_mut(conn)
            && !c.channels.iter().any(|n| **n == *key)
        {
            // exactly as long as needed: most connections hold one channel
            c.channels.reserve_exact(1);
            c.channels.push(key);
        }
        Joined {
            succeeded_data,
            cached,
            added,
        }
    }

    /// `subscription_succeeded`, then the cached event or `cache_miss` of a
    /// cache channel, then `member_added` for the others and the `join` for
    /// the other nodes when a new user joined.
    fn reply_subscribed(&mut self, now: u64, conn: ConnId, app: AppId, name: &str, joined: Joined) {
        self.send_json(
            conn,
            &message::event(
                "pusher_internal:subscription_succeeded",
                Some(&joined.succeeded_data),
                Some(name),
            ),
        );
        match joined.cached {
            Some(Some(frame)) => self.send(conn, frame),
            Some(None) => {
                self.send_json(conn, &message::event("pusher:cache_miss", None, Some(name)));
                self.hook_cache_miss(now, app, name);
            }
            None => {}
        }
        if let Some(m) = joined.added {
            // a member of the cluster already if another node has the user
            if !self.remote_has_user(app, name, &m.key) {
                self.announce_member(now, app, name, &m, true, Some(conn));
            }
            let body = cluster::join_body(&self.apps[app].config.id, name, &m);
            self.publish(body);
        }
    }

    /// The shared `Rc<str>` for a channel name (the map's key if it exists).
    pub(super) fn channel_key(&self, app: AppId, name: &str) -> Rc<str> {
        self.apps[app]
            .channels
            .get_key_value(name)
            .map_or_else(|| Rc::from(name), |(k, _)| k.clone())
    }

    pub(super) fn unsubscribe(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        data: &Value,
    ) -> Result<(), PusherError> {
        let Some(Value::String(name)) = data.get("channel") else {
            return Err(PusherError::InvalidMessage);
        };
        if channel::Kind::of(name).auth == Auth::ServerToUser {
            return Ok(()); // only the server manages these
        }
        let Some(c) = self.conn_mut(conn) else {
            return Ok(());
        };
        let before = c.channels.len();
        c.channels.retain(|n| &**n != name.as_str());
        if c.channels.len() != before {
            self.leave_channel(now, app, name, conn);
        }
        Ok(())
    }

    /// Remove `conn` from a channel: `member_removed` after a user's last
    /// connection, and the channel dropped once empty (unless it holds a cache).
    pub(super) fn leave_channel(&mut self, now: u64, app: AppId, name: &str, conn: ConnId) {
        let Some(ch) = self.apps[app].channels.get_mut(name) else {
            return;
        };
        ch.remove(conn);
        let removed = ch.presence.as_mut().and_then(|p| p.remove(conn));
        if let Some(m) = removed {
            if !self.remote_has_user(app, name, &m.key) {
                self.announce_member(now, app, name, &m, false, None);
            }
            self.publish(cluster::leave_body(&self.apps[app].config.id, name, &m));
        }
        let key = self.channel_key(app, name);
        self.cluster_dirty(app, Some(&key));
        self.hook_count(now, app, &key);
        let ch = &self.apps[app].channels[name];
        if ch.is_empty() && ch.cache.is_none() {
            self.apps[app].channels.remove(name);
        }
    }

    pub(super) fn signin(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        data: &Value,
    ) -> Result<(), PusherError> {
        let (Some(Value::String(auth)), Some(Value::String(user_data))) =
            (data.get("auth"), data.get("user_data"))
        else {
            return Err(PusherError::InvalidMessage);
        };
        let cfg = &self.apps[app].config;
        let socket_id = self.socket_id_of(conn);
        let fields = serde_json::from_str::<Value>(user_data).ok();
        let user_id = fields
            .as_ref()
            .and_then(|u| u.get("id").and_then(channel::user_key));
        let ok = crate::auth::verify_user_auth(&cfg.key, &cfg.secret, &socket_id, user_data, auth);
        let (true, Some(user_id)) = (ok, user_id) else {
            // port decisions: failed signin is 4009 and the connection closes
            self.send_error(conn, PusherError::Unauthorized);
            self.terminate(0, conn, PusherError::Unauthorized);
            return Ok(());
        };
        // a malformed watchlist refuses the signin as bad user_data does
        let watchlist = match watchlist::parse(fields.as_ref().and_then(|u| u.get("watchlist"))) {
            Ok(list) => list,
            Err(err) => {
                self.send_error(conn, err);
                self.terminate(0, conn, err);
                return Ok(());
            }
        };
        let channel = format!("{SERVER_TO_USER_PREFIX}{user_id}");
        let already = self.conn(conn).and_then(|c| c.user.clone());
        if let Some(old) = already {
            let old_channel = format!("{SERVER_TO_USER_PREFIX}{old}");
            if let Some(c) = self.conn_mut(conn) {
                c.channels.retain(|n| **n != *old_channel);
            }
            self.leave_channel(now, app, &old_channel, conn);
        }
        let key = self.channel_key(app, &channel);
        self.apps[app]
            .channels
            .entry(key.clone())
            .or_insert_with(|| Channel::new(&channel))
            .add(conn);
        self.cluster_dirty(app, Some(&key));
        if let Some(c) = self.conn_mut(conn) {
            c.user = Some(Rc::from(user_id.as_str()));
            if !c.channels.contains(&key) {
                // exactly as long as needed: most connections hold one channel
                c.channels.reserve_exact(1);
                c.channels.push(key);
            }
        }
        let reply = serde_json::json!({ "user_data": user_data }).to_string();
        self.send_json(
            conn,
            &message::event("pusher:signin_success", Some(&reply), None),
        );
        self.authorized(conn);
        let (list, over) = watchlist.map_or((None, false), |(l, over)| (Some(l), over));
        if over {
            self.send_error(conn, PusherError::WatchlistLimit);
        }
        self.watch(conn, app, list);
        Ok(())
    }

    pub(super) fn client_event(
        &mut self,
        now: u64,
        conn: ConnId,
        app: AppId,
        event: &str,
        channel: Option<&Value>,
        data: Value,
    ) -> Result<(), PusherError> {
        let Some(Value::String(name)) = channel else {
            return Err(PusherError::InvalidMessage);
        };
        if !matches!(data, Value::Null | Value::Object(_) | Value::Array(_)) {
            return Err(PusherError::InvalidMessage);
        }
        let mode = self.apps[app].config.accept_client_events_from;
        if mode == ClientEvents::None {
            return Err(PusherError::ClientEventsOff);
        }
        let kind = channel::Kind::of(name);
        if !matches!(kind.auth, Auth::Private | Auth::Presence) || kind.encrypted {
            return Err(PusherError::ClientEventsChannel);
        }
        let ch = self.apps[app].channels.get(name.as_str());
        let member = ch.is_some_and(|ch| ch.contains(conn));
        if mode == ClientEvents::Members && !member {
            return Err(PusherError::NotMember);
        }
        let user_id = ch
            .and_then(|ch| ch.presence.as_ref())
            .and_then(|p| p.by_conn.get(&conn))
            .map(|m| m.user_id.clone());
        let json = message::client_event(event, name, &data, user_id.as_ref());
        self.deliver(now, app, name, &json, Some(conn), Some((event, &data)));
        self.hook_client_event(app, name, event, &data, conn, user_id.as_ref());
        if self.cluster.is_some() {
            self.publish(Body::Client {
                app: self.apps[app].config.id.clone(),
                channel: name.clone(),
                event: event.to_string(),
                data,
                user_id,
            });
        }
        Ok(())
    }
}

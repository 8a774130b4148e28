//! Watchlist events (Pusher's "Watchlist events"): a `pusher:signin` whose
//! `user_data` carries `"watchlist": [user ids]` watches those users, and
//! the connection is told when they come online and go offline with
//! `pusher_internal:watchlist_events`, whose data is
//! `{"events":[{"name":"online","user_ids":[...]},{"name":"offline","user_ids":[...]}]}`
//! (pusher-js raises each entry on `pusher.user.watchlist` by its name).
//!
//! # The rules
//!
//! - A user is online while signed in on at least one connection on any node
//!   of the cluster: while their `#server-to-user-<id>` channel has a
//!   subscriber here or, as the cluster's counts say, on another node. Two
//!   tabs closing one leaves them online.
//! - Right after the signin the watcher gets its list's current state in one
//!   message: the online users, then the offline ones (a group with nobody
//!   in it is left out; an empty list gets nothing). Then every change.
//! - Coming online is reported at once. Going offline waits the app's
//!   `webhook_delay` (the delay of `member_removed` webhooks, 3 s by default)
//!   and is not reported at all if the user is back within it, so a page
//!   reload reports nothing. What every watcher of a user hears is the same:
//!   a watcher that signs in during the delay is told the user is online,
//!   and then offline with the others when the delay ends.
//! - At most [`MAX_WATCHLIST`] users, duplicates dropped: over that the first
//!   100 are kept, the signin still succeeds and a `pusher:error` 4302 says
//!   so (Pusher's rule). A `watchlist` that is not an array of user id
//!   strings (1 to 128 characters) refuses the signin as any malformed
//!   `user_data` is: a `pusher:error` 4009 that says what is wrong, and the
//!   connection closes.
//!
//! # How
//!
//! Per app: each watched user with its watchers and what they were last
//! told, each watching connection's list, the users whose status may have
//! changed since the last turn, and a heap of pending offline reports. The
//! hub notes a possible change whenever a `#server-to-user-` channel's
//! subscribers change, here or on another node ([`Hub::subscribers_changed`]
//! and its remote twin); the next [`Hub::handle_timeout`] (the end of the
//! loop's turn: [`Hub::poll_timeout`] is due at once while anything is
//! noted) looks at those users only, so a change costs nothing for users
//! nobody watches. Each report is built once and shared by its watchers.
//!
//! Bounds: lists of at most 100 users, one per live connection; a watched
//! user is forgotten with their last watcher; the heap is compacted past
//! twice the watched users plus 64 entries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use serde_json::Value;

use super::channel::{MAX_USER_ID_CHARS, SERVER_TO_USER_PREFIX};
use super::{AppId, ConnId, Frame, Hub, PusherError, message};
use crate::websocket;

/// Most users one watchlist keeps (Pusher's default limit).
pub const MAX_WATCHLIST: usize = 100;
/// Heap entries allowed beyond twice the watched users before stale ones go.
const SLACK: usize = 64;

/// One app's watchlists.
#[derive(Debug, Default)]
pub(super) struct Watchlists {
    /// Each watched user: who watches them, and what they were told.
    watched: HashMap<Rc<str>, Watched>,
    /// Each watching connection's list.
    lists: HashMap<ConnId, Box<[Rc<str>]>>,
    /// Watched users whose status may have changed since the last turn.
    dirty: HashSet<Rc<str>>,
    /// (when, user): offline reports waiting out the delay; an entry whose
    /// user is back, or no longer watched, is stale and skipped.
    offline: BinaryHeap<Reverse<(u64, Rc<str>)>>,
}

#[derive(Debug)]
struct Watched {
    watchers: HashSet<ConnId>,
    /// What the watchers were last told: online or offline.
    online: bool,
    /// Going offline is reported then, unless the user is back first.
    offline_at: Option<u64>,
}

impl Watchlists {
    /// The earliest time there is work: now if a status may have changed,
    /// else the first pending offline report.
    pub(super) fn next(&self) -> Option<u64> {
        if !self.dirty.is_empty() {
            return Some(0);
        }
        self.offline.peek().map(|Reverse((t, _))| *t)
    }

    /// Note that `user` may have come online or gone offline (if anyone
    /// watches them).
    pub(super) fn note(&mut self, user: &str) {
        if let Some((key, _)) = self.watched.get_key_value(user)
            && !self.dirty.contains(user)
        {
            self.dirty.insert(key.clone());
        }
    }

    fn schedule_offline(&mut self, at: u64, user: Rc<str>) {
        self.offline.push(Reverse((at, user)));
        if self.offline.len() > 2 * self.watched.len() + SLACK {
            let watched = &self.watched;
            self.offline
                .retain(|Reverse((t, u))| watched.get(u).is_some_and(|w| w.offline_at == Some(*t)));
            self.offline.shrink_to(2 * self.offline.len() + SLACK);
        }
    }
}

/// One app's watchlists as plain data, for the upgrade's hand-over
/// (`handover`): each watching connection's list, and each watched user's
/// last reported status and pending offline report. Watchers and the
/// offline heap are derived from these on import.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WatchExport {
    pub lists: Vec<((u32, u32), Vec<String>)>,
    /// (user, online as last told, offline report due at)
    pub watched: Vec<(String, bool, Option<u64>)>,
    pub dirty: Vec<String>,
}

impl Watchlists {
    pub(super) fn export(&self) -> WatchExport {
        let mut lists: Vec<((u32, u32), Vec<String>)> = self
            .lists
            .iter()
            .map(|(c, l)| {
                let id = (c.slot() as u32, c.generation());
                (id, l.iter().map(|u| u.to_string()).collect())
            })
            .collect();
        lists.sort();
        let mut watched: Vec<(String, bool, Option<u64>)> = self
            .watched
            .iter()
            .map(|(u, w)| (u.to_string(), w.online, w.offline_at))
            .collect();
        watched.sort();
        let mut dirty: Vec<String> = self.dirty.iter().map(|u| u.to_string()).collect();
        dirty.sort();
        WatchExport {
            lists,
            watched,
            dirty,
        }
    }

    /// Rebuild from an export; `live` says which connections exist (lists
    /// of others are dropped), users nobody watches are dropped.
    pub(super) fn import(e: &WatchExport, live: impl Fn(ConnId) -> bool) -> Watchlists {
        let mut w = Watchlists::default();
        for ((slot, generation), list) in &e.lists {
            let conn = ConnId::new(*slot, *generation);
            if !live(conn) || list.is_empty() {
                continue;
            }
            let list: Vec<Rc<str>> = list
                .iter()
                .take(MAX_WATCHLIST)
                .map(|u| Rc::from(u.as_str()))
                .collect();
            for u in &list {
                w.watched
                    .entry(u.clone())
                    .or_insert_with(|| Watched {
                        watchers: HashSet::new(),
                        online: false,
                        offline_at: None,
                    })
                    .watchers
                    .insert(conn);
            }
            w.lists.insert(conn, list.into_boxed_slice());
        }
        for (user, online, offline_at) in &e.watched {
            let key = w
                .watched
                .get_key_value(user.as_str())
                .map(|(k, _)| k.clone());
            if let Some(key) = key {
                if let Some(entry) = w.watched.get_mut(&key) {
                    entry.online = *online;
                    entry.offline_at = *offline_at;
                }
                if let Some(at) = offline_at {
                    w.schedule_offline(*at, key);
                }
            }
        }
        for user in &e.dirty {
            w.note(user);
        }
        w
    }
}

/// A signin's checked watchlist: the users to watch (duplicates dropped, at
/// most [`MAX_WATCHLIST`]), and whether more were given.
pub(super) type Checked = (Vec<Rc<str>>, bool);

/// A signin's `watchlist`, checked; `None` when the signin has none.
pub(super) fn parse(v: Option<&Value>) -> Result<Option<Checked>, PusherError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(PusherError::InvalidWatchlist),
    };
    let mut users: Vec<Rc<str>> = Vec::new();
    let mut seen = HashSet::new();
    let mut over = false;
    for v in list {
        let Value::String(id) = v else {
            return Err(PusherError::InvalidWatchlist);
        };
        if id.is_empty() || id.chars().count() > MAX_USER_ID_CHARS {
            return Err(PusherError::InvalidWatchlist);
        }
        if seen.insert(id.as_str()) {
            if users.len() < MAX_WATCHLIST {
                users.push(Rc::from(id.as_str()));
            } else {
                over = true;
            }
        }
    }
    Ok(Some((users, over)))
}

/// `pusher_internal:watchlist_events` with these groups (empty ones left out).
fn events_frame(groups: &[(&str, &[Rc<str>])]) -> Option<Frame> {
    let events: Vec<Value> = groups
        .iter()
        .filter(|(_, users)| !users.is_empty())
        .map(|(name, users)| {
            let ids = users.iter().map(|u| Value::from(&**u)).collect();
            serde_json::json!({ "name": name, "user_ids": Value::Array(ids) })
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    let data = serde_json::json!({ "events": events }).to_string();
    let json = message::event("pusher_internal:watchlist_events", Some(&data), None);
    Some(websocket::text_frame(&json).into())
}

impl Hub {
    /// Whether `user` is signed in on some connection of `app`, here or on
    /// another node.
    pub(super) fn user_online(&self, app: AppId, user: &str) -> bool {
        let name = format!("{SERVER_TO_USER_PREFIX}{user}");
        self.apps[app]
            .channels
            .get(name.as_str())
            .is_some_and(|c| !c.is_empty())
            || self.remote_subs(app, &name) > 0
    }

    /// `conn` signed in with this watchlist (`None`: without one): it
    /// replaces any list the connection had, and the connection is told the
    /// current state of its users.
    pub(super) fn watch(&mut self, conn: ConnId, app: AppId, list: Option<Vec<Rc<str>>>) {
        self.unwatch(app, conn);
        let Some(list) = list else {
            return;
        };
        // the status of users nobody watched yet is what it is now
        let fresh: Vec<(Rc<str>, bool)> = list
            .iter()
            .filter(|u| !self.apps[app].watch.watched.contains_key(&***u))
            .map(|u| (u.clone(), self.user_online(app, u)))
            .collect();
        let w = &mut self.apps[app].watch;
        for (user, online) in fresh {
            w.watched.insert(
                user,
                Watched {
                    watchers: HashSet::new(),
                    online,
                    offline_at: None,
                },
            );
        }
        let (mut online, mut offline) = (Vec::new(), Vec::new());
        for user in &list {
            if let Some(entry) = w.watched.get_mut(user) {
                entry.watchers.insert(conn);
                if entry.online {
                    online.push(user.clone());
                } else {
                    offline.push(user.clone());
                }
            }
        }
        if !list.is_empty() {
            w.lists.insert(conn, list.into_boxed_slice());
        }
        if let Some(frame) = events_frame(&[("online", &online), ("offline", &offline)]) {
            self.send(conn, frame);
        }
    }

    /// `conn` (of `app`) no longer watches anyone: it closed, or signed in
    /// again.
    pub(super) fn unwatch(&mut self, app: AppId, conn: ConnId) {
        let w = &mut self.apps[app].watch;
        if w.lists.is_empty() {
            return;
        }
        let Some(list) = w.lists.remove(&conn) else {
            return;
        };
        for user in list.iter() {
            if let Some(entry) = w.watched.get_mut(user) {
                entry.watchers.remove(&conn);
                if entry.watchers.is_empty() {
                    w.watched.remove(user);
                    w.dirty.remove(user);
                }
            }
        }
    }

    /// The end of a turn for the watchlists of every app: report the users
    /// who came online, start the delay of those who went offline, and
    /// report those whose delay is over.
    pub(super) fn watchlist_timeout(&mut self, now: u64) {
        for app in 0..self.apps.len() {
            if self.apps[app].watch.next().is_some_and(|t| t <= now) {
                self.watchlist_turn(now, app);
            }
        }
    }

    fn watchlist_turn(&mut self, now: u64, app: AppId) {
        let delay = self.apps[app].config.webhook_delay_ms;
        let dirty = std::mem::take(&mut self.apps[app].watch.dirty);
        let status: Vec<(Rc<str>, bool)> = dirty
            .into_iter()
            .map(|u| {
                let online = self.user_online(app, &u);
                (u, online)
            })
            .collect();
        let mut came = Vec::new();
        for (user, online) in status {
            let w = &mut self.apps[app].watch;
            let Some(entry) = w.watched.get_mut(&user) else {
                continue;
            };
            match (online, entry.online, entry.offline_at) {
                // back within the delay: nothing to report
                (true, true, Some(_)) => entry.offline_at = None,
                (true, false, _) => {
                    entry.online = true;
                    came.push(user);
                }
                (false, true, None) => {
                    entry.offline_at = Some(now + delay);
                    w.schedule_offline(now + delay, user);
                }
                _ => {}
            }
        }
        let mut went = Vec::new();
        loop {
            let w = &mut self.apps[app].watch;
            let Some(Reverse((t, _))) = w.offline.peek() else {
                break;
            };
            if *t > now {
                break;
            }
            let Some(Reverse((t, user))) = w.offline.pop() else {
                break;
            };
            if let Some(entry) = w.watched.get_mut(&user)
                && entry.offline_at == Some(t)
            {
                entry.offline_at = None;
                entry.online = false;
                went.push(user);
            }
        }
        for user in came {
            self.report(app, &user, "online");
        }
        for user in went {
            self.report(app, &user, "offline");
        }
    }

    /// Tell every watcher of `user` that they went `online` or `offline`.
    fn report(&mut self, app: AppId, user: &Rc<str>, name: &str) {
        let Some(entry) = self.apps[app].watch.watched.get(user) else {
            return;
        };
        let Some(frame) = events_frame(&[(name, std::slice::from_ref(user))]) else {
            return;
        };
        let mut watchers: Vec<ConnId> = entry.watchers.iter().copied().collect();
        watchers.sort_unstable(); // the same order every time
        for conn in watchers {
            self.send(conn, frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::*;
    use super::*;
    use serde_json::json;

    /// `pusher_internal:watchlist_events` with these groups, as sent.
    fn events(groups: &[(&str, &[&str])]) -> String {
        let events: Vec<Value> = groups
            .iter()
            .map(|(name, ids)| json!({"name": name, "user_ids": ids}))
            .collect();
        let data = json!({ "events": events }).to_string();
        json!({"event": "pusher_internal:watchlist_events", "data": data}).to_string()
    }

    fn online(ids: &[&str]) -> String {
        events(&[("online", ids)])
    }

    fn offline(ids: &[&str]) -> String {
        events(&[("offline", ids)])
    }

    fn signed_in(user_data: &str) -> String {
        let data = json!({ "user_data": user_data }).to_string();
        json!({"event": "pusher:signin_success", "data": data}).to_string()
    }

    /// Sign `at` in as `id`, watching `list`; returns what it received.
    fn sign_in(sim: &mut Sim, at: impl Into<At>, id: &str, list: &[&str]) -> Vec<String> {
        let at = at.into();
        let user_data = json!({"id": id, "watchlist": list}).to_string();
        sim.signin(at, &user_data);
        let out = sim.drain_for(at);
        assert_eq!(out.first(), Some(&signed_in(&user_data)), "{out:?}");
        out[1..].to_vec()
    }

    /// Sign `at` in as `id` without a watchlist.
    fn sign_in_plain(sim: &mut Sim, at: impl Into<At>, id: &str) {
        let at = at.into();
        sim.signin(at, &json!({ "id": id }).to_string());
        sim.drain_for(at);
    }

    /// The end of the loop's turn (what `handle_timeout` does at once).
    fn turn(sim: &mut Sim) {
        sim.advance(0);
    }

    #[test]
    fn a_signin_gets_the_online_users_of_its_list_then_the_offline_ones() {
        let mut sim = Sim::new();
        sim.connect(1);
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "bob");
        turn(&mut sim);
        assert_eq!(
            sign_in(&mut sim, 1, "ann", &["carl", "bob", "dora"]),
            vec![events(&[
                ("online", &["bob"]),
                ("offline", &["carl", "dora"])
            ])]
        );
        // all online, all offline, none
        sim.connect(3);
        assert_eq!(
            sign_in(&mut sim, 3, "x", &["bob", "ann"]),
            vec![online(&["bob", "ann"])]
        );
        sim.connect(4);
        assert_eq!(sign_in(&mut sim, 4, "y", &["zed"]), vec![offline(&["zed"])]);
        sim.connect(5);
        assert!(sign_in(&mut sim, 5, "z", &[]).is_empty());
        turn(&mut sim);
        assert!(sim.drain().is_empty(), "nobody's status changed");
    }

    #[test]
    fn coming_online_is_reported_at_the_end_of_the_turn_to_every_watcher() {
        let mut sim = Sim::new();
        for c in 1..=3 {
            sim.connect(c);
        }
        sign_in(&mut sim, 1, "ann", &["bob"]);
        assert_eq!(
            sign_in(&mut sim, 2, "carl", &["bob", "ann"]),
            vec![events(&[("online", &["ann"]), ("offline", &["bob"])])]
        );
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        sign_in_plain(&mut sim, 3, "bob");
        turn(&mut sim);
        assert_eq!(
            sim.drain(),
            vec![o(1, &online(&["bob"])), o(2, &online(&["bob"]))]
        );
    }

    #[test]
    fn a_user_with_two_tabs_stays_online_until_the_last_one_goes_then_after_the_delay() {
        let mut sim = Sim::new();
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob"]);
        for c in [2, 3] {
            sim.connect(c);
            sign_in_plain(&mut sim, c, "bob");
        }
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o(1, &online(&["bob"]))]);
        sim.close(2);
        sim.advance(10_000);
        assert!(sim.drain().is_empty(), "bob still has a tab open");
        sim.close(3);
        sim.advance(2_999);
        assert!(sim.drain().is_empty(), "offline waits the webhook delay");
        sim.advance(1);
        assert_eq!(sim.drain(), vec![o(1, &offline(&["bob"]))]);
        sim.advance(10_000);
        assert!(sim.drain().is_empty());
    }

    #[test]
    fn a_page_reload_within_the_delay_reports_nothing() {
        let mut sim = Sim::new();
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob"]);
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "bob");
        turn(&mut sim);
        sim.drain();
        sim.close(2);
        sim.advance(2_000);
        sim.connect(3);
        sign_in_plain(&mut sim, 3, "bob");
        sim.advance(10_000);
        assert!(sim.drain().is_empty());
        // a real departure still is reported
        sim.close(3);
        sim.advance(3_000);
        assert_eq!(sim.drain(), vec![o(1, &offline(&["bob"]))]);
    }

    #[test]
    fn the_offline_delay_is_the_apps_webhook_delay() {
        let mut sim = Sim::with(|a| a.webhook_delay_ms = 0);
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob"]);
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "bob");
        turn(&mut sim);
        sim.drain();
        sim.close(2);
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o(1, &offline(&["bob"]))]);
    }

    #[test]
    fn a_watcher_who_signs_in_during_the_delay_hears_what_the_others_hear() {
        let mut sim = Sim::new();
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob"]);
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "bob");
        turn(&mut sim);
        sim.drain();
        sim.close(2);
        sim.advance(1_000);
        sim.connect(3);
        assert_eq!(
            sign_in(&mut sim, 3, "carl", &["bob"]),
            vec![online(&["bob"])]
        );
        sim.advance(2_000);
        assert_eq!(
            sim.drain(),
            vec![o(1, &offline(&["bob"])), o(3, &offline(&["bob"]))]
        );
    }

    #[test]
    fn signing_in_as_someone_else_or_without_a_list_replaces_the_list() {
        let mut sim = Sim::new();
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob"]);
        sign_in(&mut sim, 1, "ann", &["carl"]);
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "bob");
        sim.connect(3);
        sign_in_plain(&mut sim, 3, "carl");
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o(1, &online(&["carl"]))]);
        sign_in_plain(&mut sim, 1, "ann");
        sim.close(3);
        sim.advance(5_000);
        assert!(sim.drain().is_empty());
        assert!(sim.hub(0).apps[0].watch.watched.is_empty());
    }

    #[test]
    fn over_100_users_the_first_100_are_kept_with_a_4302_and_the_signin_succeeds() {
        let mut sim = Sim::new();
        sim.connect(1);
        let ids: Vec<String> = (0..150).map(|i| format!("u{i}")).collect();
        let mut list: Vec<&str> = ids.iter().map(String::as_str).collect();
        list.insert(1, "u0"); // a duplicate does not take a place
        let out = sign_in(&mut sim, 1, "ann", &list);
        let e = PusherError::WatchlistLimit;
        let first_100: Vec<&str> = ids[..100].iter().map(String::as_str).collect();
        assert_eq!(out, vec![err(e.code(), e.message()), offline(&first_100)]);
        assert!(sim.is_open(1));
        assert_eq!(sim.trigger(&["#server-to-user-ann"], "e", "d", None), 1);
        // u100 and later are not watched
        sim.connect(2);
        sign_in_plain(&mut sim, 2, "u100");
        sim.connect(3);
        sign_in_plain(&mut sim, 3, "u99");
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o(1, &online(&["u99"]))]);
        // exactly 100 is fine
        sim.connect(4);
        let out = sign_in(&mut sim, 4, "bob", &first_100);
        assert_eq!(out.len(), 1, "no 4302: {out:?}");
    }

    #[test]
    fn a_watchlist_that_is_not_a_list_of_user_ids_refuses_the_signin() {
        let e = PusherError::InvalidWatchlist;
        for bad in [
            json!("bob"),
            json!({"bob": true}),
            json!([1, 2]),
            json!(["bob", null]),
            json!([""]),
            json!(["a".repeat(129)]),
            json!(7),
        ] {
            let mut sim = Sim::new();
            sim.connect(1);
            sim.signin(1, &json!({"id": "ann", "watchlist": bad}).to_string());
            assert_eq!(
                sim.drain(),
                vec![
                    o(1, &err(e.code(), e.message())),
                    o(1, &close(e.code(), e.message()))
                ],
                "{bad}"
            );
            assert!(!sim.is_open(1));
            assert_eq!(sim.trigger(&["#server-to-user-ann"], "e", "d", None), 0);
        }
        // null is no list; a 128-character id is one
        let mut sim = Sim::new();
        sim.connect(1);
        assert!(sign_in_null(&mut sim));
        sim.connect(2);
        let long = "a".repeat(128);
        assert_eq!(
            sign_in(&mut sim, 2, "bob", &[&long]),
            vec![offline(&[&long])]
        );
    }

    fn sign_in_null(sim: &mut Sim) -> bool {
        let user_data = json!({"id": "ann", "watchlist": null}).to_string();
        sim.signin(1, &user_data);
        sim.drain_for(1) == vec![signed_in(&user_data)]
    }

    #[test]
    fn a_closed_watcher_is_forgotten_and_its_users_with_it() {
        let mut sim = Sim::new();
        sim.connect(1);
        sign_in(&mut sim, 1, "ann", &["bob", "carl"]);
        sim.connect(2);
        sign_in(&mut sim, 2, "dora", &["bob"]);
        sim.close(1);
        let w = &sim.hub(0).apps[0].watch;
        assert_eq!(w.lists.len(), 1);
        assert_eq!(w.watched.len(), 1);
        sim.close(2);
        let w = &sim.hub(0).apps[0].watch;
        assert!(w.lists.is_empty() && w.watched.is_empty());
        sim.connect(3);
        sign_in_plain(&mut sim, 3, "bob");
        turn(&mut sim);
        assert!(sim.drain().is_empty());
    }

    // ---- across a cluster ------------------------------------------------------

    #[test]
    fn a_watched_user_online_on_another_node_is_online() {
        let mut sim = Sim::cluster(2);
        sim.connect((0, 1));
        sign_in(&mut sim, (0, 1), "ann", &["bob"]);
        sim.connect((1, 1));
        sign_in_plain(&mut sim, (1, 1), "bob");
        sim.pump();
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o((0, 1), &online(&["bob"]))]);
        // a new watcher on either node sees bob online at once
        sim.connect((0, 2));
        assert_eq!(
            sign_in(&mut sim, (0, 2), "carl", &["bob"]),
            vec![online(&["bob"])]
        );
        sim.connect((1, 2));
        assert_eq!(
            sign_in(&mut sim, (1, 2), "dora", &["bob"]),
            vec![online(&["bob"])]
        );
        // a second tab on node 0, then the first one closes: still online
        sim.connect((0, 3));
        sign_in_plain(&mut sim, (0, 3), "bob");
        sim.close((1, 1));
        sim.pump();
        sim.advance(5_000);
        assert!(sim.drain().is_empty());
        // the last one: offline on both nodes after the delay
        sim.close((0, 3));
        sim.pump();
        sim.advance(2_999);
        assert!(sim.drain().is_empty());
        sim.advance(1);
        assert_eq!(
            sim.drain_sorted(),
            vec![
                o((0, 1), &offline(&["bob"])),
                o((0, 2), &offline(&["bob"])),
                o((1, 2), &offline(&["bob"])),
            ]
        );
    }

    #[test]
    fn a_reload_onto_another_node_reports_nothing() {
        let mut sim = Sim::cluster(2);
        sim.connect((0, 1));
        sign_in(&mut sim, (0, 1), "ann", &["bob"]);
        sim.connect((0, 2));
        sign_in_plain(&mut sim, (0, 2), "bob");
        turn(&mut sim);
        sim.drain();
        sim.close((0, 2));
        sim.pump();
        sim.advance(1_000);
        sim.connect((1, 1));
        sign_in_plain(&mut sim, (1, 1), "bob");
        sim.pump();
        sim.advance(10_000);
        assert!(sim.drain().is_empty());
    }

    #[test]
    fn the_users_of_a_node_that_dies_go_offline_after_its_timeout_and_the_delay() {
        let mut sim = Sim::cluster(2);
        sim.connect((0, 1));
        sign_in(&mut sim, (0, 1), "ann", &["bob"]);
        sim.connect((1, 1));
        sign_in_plain(&mut sim, (1, 1), "bob");
        sim.pump();
        turn(&mut sim);
        assert_eq!(sim.drain(), vec![o((0, 1), &online(&["bob"]))]);
        sim.nodes[1].running = false;
        // node 1 is dropped after TIMEOUT of silence, bob leaves the delay later
        sim.advance(TIMEOUT + 2_999);
        assert!(sim.drain().is_empty());
        sim.advance(1_001);
        assert_eq!(sim.drain(), vec![o((0, 1), &offline(&["bob"]))]);
    }
}

//! Authorized connections (Pusher's feature of that name, soketi's and
//! sockudo's `enable_user_authentication`): per app, off by default. When
//! on, a connection that has neither signed in (`pusher:signin`) nor
//! subscribed to a private or presence channel within the app's
//! `user_authentication_timeout` is closed with 4009 and a message saying
//! why ([`PusherError::AuthorizationTimeout`]), so anyone who only knows the
//! public key cannot hold connections open.
//!
//! The rule is checked when the connection opens: turning it on with a
//! reload leaves the connections already open alone (as Pusher does), and
//! turning it off spares the ones still waiting.
//!
//! State: the connections still waiting, with their deadline, and a heap of
//! those deadlines. An entry of the heap whose connection authorized or
//! closed is skipped when it comes up, and the heap is compacted whenever it
//! holds more than twice the waiting connections plus 64, so its size is
//! bounded by the connections however fast they come and go. No I/O and no
//! clock: the hub's inputs pass `now`, and the deadlines join
//! [`Hub::poll_timeout`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::{AppId, ConnId, Hub, PusherError};

/// Heap entries allowed beyond twice the waiting connections before the
/// stale ones are dropped.
const SLACK: usize = 64;

/// The connections that must still authorize (one per hub).
#[derive(Debug, Default)]
pub(super) struct Authorization {
    /// Each waiting connection and its deadline (ms).
    waiting: HashMap<ConnId, u64>,
    /// (deadline, connection), earliest first; stale entries are skipped.
    deadlines: BinaryHeap<Reverse<(u64, ConnId)>>,
}

impl Authorization {
    /// The earliest deadline, stale or not (a spurious wake-up is harmless).
    pub(super) fn next(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// `conn` is authorized (or gone): it no longer waits.
    pub(super) fn forget(&mut self, conn: ConnId) {
        if !self.waiting.is_empty() {
            self.waiting.remove(&conn);
        }
    }

    fn arm(&mut self, conn: ConnId, deadline: u64) {
        self.waiting.insert(conn, deadline);
        self.deadlines.push(Reverse((deadline, conn)));
        if self.deadlines.len() > 2 * self.waiting.len() + SLACK {
            let waiting = &self.waiting;
            self.deadlines
                .retain(|Reverse((t, c))| waiting.get(c) == Some(t));
            self.deadlines.shrink_to(2 * self.deadlines.len() + SLACK);
        }
    }

    /// Each waiting connection and its deadline (the upgrade's hand-over).
    pub(super) fn waiting(&self) -> impl Iterator<Item = (ConnId, u64)> + '_ {
        self.waiting.iter().map(|(c, t)| (*c, *t))
    }

    /// Make `conn` wait until `deadline` (the upgrade's hand-over).
    pub(super) fn resume(&mut self, conn: ConnId, deadline: u64) {
        self.arm(conn, deadline);
    }

    /// The next connection whose deadline is at or before `now`, taken off
    /// the waiting list.
    fn pop_due(&mut self, now: u64) -> Option<ConnId> {
        while let Some(&Reverse((t, conn))) = self.deadlines.peek() {
            if t > now {
                return None;
            }
            self.deadlines.pop();
            if self.waiting.get(&conn) == Some(&t) {
                self.waiting.remove(&conn);
                return Some(conn);
            }
        }
        None
    }

    /// Heap entries held (for tests of the bound).
    #[cfg(test)]
    pub(super) fn entries(&self) -> usize {
        self.deadlines.len()
    }
}

impl Hub {
    /// A connection of `app` opened: if the app wants authorized
    /// connections, it has until `user_authentication_timeout` from now.
    pub(super) fn arm_authorization(&mut self, now: u64, conn: ConnId, app: AppId) {
        let cfg = &self.apps[app].config;
        if cfg.enable_user_authentication {
            let deadline = now + cfg.user_authentication_timeout * 1000;
            self.authorization.arm(conn, deadline);
        }
    }

    /// `conn` signed in or joined a private or presence channel.
    pub(super) fn authorized(&mut self, conn: ConnId) {
        self.authorization.forget(conn);
    }

    /// Close the connections whose time to authorize is up (unless their
    /// app no longer asks for it).
    pub(super) fn authorization_timeout(&mut self, now: u64) {
        while let Some(conn) = self.authorization.pop_due(now) {
            let Some(c) = self.conn(conn) else {
                continue;
            };
            if !self.apps[c.app].config.enable_user_authentication {
                continue;
            }
            crate::log_debug!(
                "Connection {} not authorized in time",
                super::format_socket_id(c.socket_id)
            );
            self.send_error(conn, PusherError::AuthorizationTimeout);
            self.terminate(now, conn, PusherError::AuthorizationTimeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::*;
    use super::*;

    fn timeout_error() -> String {
        let e = PusherError::AuthorizationTimeout;
        err(e.code(), e.message())
    }

    fn closed() -> String {
        let e = PusherError::AuthorizationTimeout;
        close(e.code(), e.message())
    }

    /// One node whose app wants authorized connections within 10 s.
    fn required() -> Sim {
        Sim::with(|a| {
            a.enable_user_authentication = true;
            a.user_authentication_timeout = 10;
        })
    }

    #[test]
    fn off_by_default_an_idle_connection_stays() {
        let mut sim = Sim::new();
        sim.connect(1);
        sim.advance(59_000);
        assert!(sim.drain().is_empty());
        assert!(sim.is_open(1));
    }

    #[test]
    fn a_connection_that_does_nothing_is_closed_with_4009_at_the_timeout() {
        let mut sim = required();
        sim.connect(1);
        sim.advance(9_999);
        assert!(sim.drain().is_empty());
        assert!(sim.is_open(1));
        sim.advance(1);
        assert_eq!(sim.drain(), vec![o(1, &timeout_error()), o(1, &closed())]);
        assert!(!sim.is_open(1));
        assert_eq!(sim.hub(0).connection_count(0), 0);
    }

    #[test]
    fn public_channels_and_pings_do_not_authorize() {
        let mut sim = required();
        sim.connect(1);
        sim.join(1, "news", None);
        sim.advance(5_000);
        sim.send(1, r#"{"event":"pusher:ping"}"#);
        sim.drain();
        sim.advance(5_000);
        assert_eq!(sim.drain(), vec![o(1, &timeout_error()), o(1, &closed())]);
    }

    #[test]
    fn a_signin_or_a_private_or_presence_subscription_authorizes() {
        let mut sim = required();
        for c in 1..=4 {
            sim.connect(c);
        }
        sim.signin(1, r#"{"id":"1"}"#);
        sim.join(2, "private-a", None);
        sim.join(3, "presence-a", Some(&member("3", "C")));
        sim.join(4, "private-encrypted-a", None);
        sim.drain();
        sim.advance(59_000);
        assert!(sim.drain().is_empty());
        assert!((1..=4).all(|c| sim.is_open(c)));
    }

    #[test]
    fn a_refused_subscription_does_not_authorize() {
        let mut sim = required();
        sim.connect(1);
        sim.send(1, &subscribe_msg("private-a", Some("reverb-key:bad"), None));
        sim.drain();
        sim.advance(10_000);
        assert_eq!(sim.drain(), vec![o(1, &timeout_error()), o(1, &closed())]);
    }

    #[test]
    fn each_connection_has_its_own_deadline() {
        let mut sim = required();
        sim.connect(1);
        sim.advance(4_000);
        sim.connect(2);
        sim.advance(6_000);
        assert_eq!(sim.drain(), vec![o(1, &timeout_error()), o(1, &closed())]);
        sim.advance(4_000);
        assert_eq!(sim.drain(), vec![o(2, &timeout_error()), o(2, &closed())]);
    }

    #[test]
    fn a_reload_that_turns_it_off_spares_the_waiting_and_one_that_turns_it_on_spares_the_open() {
        let mut sim = required();
        sim.connect(1);
        sim.advance(5_000);
        let now = sim.now;
        sim.hub(0).reload_apps(now, vec![app()]);
        sim.advance(20_000);
        assert!(sim.drain().is_empty());
        assert!(sim.is_open(1));
        // on again: only connections opened from now on must authorize
        let mut on = app();
        on.enable_user_authentication = true;
        on.user_authentication_timeout = 10;
        let now = sim.now;
        sim.hub(0).reload_apps(now, vec![on]);
        sim.connect(2);
        sim.advance(10_000);
        assert_eq!(sim.drain(), vec![o(2, &timeout_error()), o(2, &closed())]);
        assert!(sim.is_open(1));
    }

    #[test]
    fn deadlines_of_closed_connections_do_not_pile_up() {
        let mut sim = required();
        sim.connect(1);
        for _ in 0..10_000 {
            sim.connect(2);
            sim.close(2);
        }
        // compacted past twice the waiting connections (two at most) plus 64
        assert!(sim.hub(0).authorization.entries() <= 2 * 2 + SLACK);
        sim.advance(10_000);
        assert_eq!(sim.drain(), vec![o(1, &timeout_error()), o(1, &closed())]);
        assert_eq!(sim.hub(0).authorization.next(), None);
    }
}

//! Subscription counts (Pusher's "Subscription count event"): per app, off
//! by default (`enable_subscription_count`). When on, every subscriber of a
//! public or private channel (cache and encrypted ones included; not
//! presence channels, whose members have their own events, nor the
//! server's `#server-to-user-` channels) gets
//! `{"event":"pusher_internal:subscription_count","data":"{\"subscription_count\":N}","channel":...}`
//! when the channel's count changes, and pusher-js raises
//! `pusher:subscription_count` on the channel.
//!
//! # The count and when it goes out
//!
//! The count is cluster-wide: this node's subscribers plus those of every
//! other node in its view (`cluster`'s counts), the number
//! `GET /channels/{name}?info=subscription_count` answers
//! ([`Hub::subscription_count`]). Every node tells its own subscribers.
//!
//! Changes are noted as they happen (`Hub::subscribers_changed`, here or
//! on another node) and looked at once per loop turn, at the turn's
//! [`Hub::handle_timeout`], so a turn's subscribes and unsubscribes make one
//! count, and a turn that ends where it began makes none. A count is sent
//! only when it differs from the last one sent. Pusher's rule for large
//! channels: above [`THROTTLE_ABOVE`] subscribers at most one count per
//! [`THROTTLE_MS`] goes out (the latest, when the time comes, if it still
//! differs), so a storm of 10 000 subscribes to one channel costs the
//! channel's first 100 counts (5 050 frames) and then one broadcast every
//! 30 s while the count keeps moving, not 10 000 frames per subscribe. A
//! new subscriber of such a channel gets the next count with everyone else.
//! Each count's frame is built once and shared by the subscribers.
//!
//! # The `subscription_count` webhook
//!
//! The app's `subscription_count` webhooks get the same counts at the same
//! moments, from this one decision: when a count goes out it is also handed
//! to `webhooks` (`Hub::hook_subscription_count`), which has the channel's
//! owner node send it. So a channel is counted when its subscribers here
//! are to be told, or when a webhook wants it (then also with no
//! subscriber here, down to a last 0), with or without
//! `enable_subscription_count`.
//!
//! State: one entry per counted channel that has subscribers here, or
//! anywhere for a webhook (dropped with the last one, after its 0), the
//! channels noted this turn, and a heap of throttled sends (one entry per
//! channel waiting; an entry whose channel sent or went is stale and
//! skipped, compacted past twice the channels plus 64). No I/O and no
//! clock: times are parameters.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use super::channel::{Auth, Kind};
use super::{App, AppId, Frame, Hub, Output, message};
use crate::{webhook, websocket};

/// Above this many subscribers a channel's counts are throttled.
pub const THROTTLE_ABOVE: u64 = 100;
/// At most one count per this many ms on a throttled channel.
pub const THROTTLE_MS: u64 = 30_000;
/// Heap entries allowed beyond twice the channels before stale ones go.
const SLACK: usize = 64;

/// One app's subscription counts.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Channels with subscribers here: what they were last told.
    channels: HashMap<Rc<str>, Sent>,
    /// Channels whose count may have changed since the last turn.
    dirty: HashSet<Rc<str>>,
    /// (when, channel): throttled counts waiting for their time.
    due: BinaryHeap<Reverse<(u64, Rc<str>)>>,
}

#[derive(Debug, Default)]
struct Sent {
    /// The count last sent, and when.
    count: Option<u64>,
    at: u64,
    /// A throttled count goes out then.
    due_at: Option<u64>,
}

impl Counts {
    /// The earliest time there is work: now if a count may have changed,
    /// else the first throttled send.
    pub(super) fn next(&self) -> Option<u64> {
        if !self.dirty.is_empty() {
            return Some(0);
        }
        self.due.peek().map(|Reverse((t, _))| *t)
    }
}

impl Counts {
    /// Drop the stale entries of the heap once it holds more than twice the
    /// channels plus 64.
    fn compact(&mut self) {
        if self.due.len() > 2 * self.channels.len() + SLACK {
            let channels = &self.channels;
            self.due
                .retain(|Reverse((t, ch))| channels.get(ch).is_some_and(|s| s.due_at == Some(*t)));
            self.due.shrink_to(2 * self.due.len() + SLACK);
        }
    }
}

/// Whether any of the app's webhooks wants `subscription_count` events.
fn hooked(cfg: &App) -> bool {
    cfg.webhooks
        .iter()
        .any(|w| w.event_types.contains(webhook::Kind::SubscriptionCount))
}

/// Whether a channel of this kind has subscription counts.
pub fn counted(kind: Kind) -> bool {
    matches!(kind.auth, Auth::Public | Auth::Private)
}

/// `pusher_internal:subscription_count` for `channel` at `n`.
fn count_frame(channel: &str, n: u64) -> Frame {
    let data = format!("{{\"subscription_count\":{n}}}");
    let json = message::event(
        "pusher_internal:subscription_count",
        Some(&data),
        Some(channel),
    );
    websocket::text_frame(&json).into()
}

impl Hub {
    /// Subscribers of `app`'s channel `name` on every node.
    pub fn subscription_count(&self, app: AppId, name: &str) -> u64 {
        let local = self.apps[app]
            .channels
            .get(name)
            .map_or(0, |c| c.len() as u64);
        local + self.remote_subs(app, name)
    }

    /// Note that `name`'s count may have changed (if the app counts and
    /// the channel has subscribers here to tell, or a webhook wants it).
    pub(super) fn note_count(&mut self, app: AppId, name: &str) {
        let a = &mut self.apps[app];
        if !counted(Kind::of(name)) || a.counts.dirty.contains(name) {
            return;
        }
        let hooked = a
            .config
            .wants_webhook(webhook::Kind::SubscriptionCount, name);
        if !a.config.enable_subscription_count && !hooked {
            return;
        }
        // the channel map's name, shared; a channel with nobody here has
        // nobody to tell, and only a webhook to count it for
        let key = match (
            a.channels.get_key_value(name),
            a.counts.channels.get_key_value(name),
        ) {
            (Some((k, _)), _) | (None, Some((k, _))) => k.clone(),
            (None, None) if hooked => Rc::from(name),
            (None, None) => return,
        };
        a.counts.dirty.insert(key);
    }

    /// The end of a turn for the counts of every app: send the counts that
    /// changed and may go now, and the throttled ones whose time came.
    pub(super) fn counts_timeout(&mut self, now: u64) {
        for app in 0..self.apps.len() {
            let a = &mut self.apps[app];
            if !a.counts.channels.is_empty()
                && !a.config.enable_subscription_count
                && !hooked(&a.config)
            {
                a.counts = Counts::default(); // turned off by a reload
            }
            if self.apps[app].counts.next().is_some_and(|t| t <= now) {
                self.counts_turn(now, app);
            }
        }
    }

    fn counts_turn(&mut self, now: u64, app: AppId) {
        let dirty = std::mem::take(&mut self.apps[app].counts.dirty);
        for name in dirty {
            self.count_changed(now, app, name);
        }
        loop {
            let c = &mut self.apps[app].counts;
            let Some(Reverse((t, _))) = c.due.peek() else {
                break;
            };
            if *t > now {
                break;
            }
            let Some(Reverse((t, name))) = c.due.pop() else {
                break;
            };
            if let Some(sent) = c.channels.get_mut(&name)
                && sent.due_at == Some(t)
            {
                sent.due_at = None;
                self.count_changed(now, app, name);
            }
        }
    }

    /// Send `name`'s count now if it changed and may go, else wait for its
    /// time; forget a channel nobody here subscribes to and no webhook
    /// counts, or one a webhook was told is empty.
    fn count_changed(&mut self, now: u64, app: AppId, name: Rc<str>) {
        let cfg = &self.apps[app].config;
        let here = self.apps[app]
            .channels
            .get(&name)
            .is_some_and(|c| !c.is_empty());
        let tell = here && cfg.enable_subscription_count;
        let hook = cfg.wants_webhook(webhook::Kind::SubscriptionCount, &name);
        if !tell && !hook {
            self.apps[app].counts.channels.remove(&name);
            return;
        }
        let n = self.subscription_count(app, &name);
        let c = &mut self.apps[app].counts;
        let sent = c.channels.entry(name.clone()).or_default();
        if sent.count == Some(n) || (sent.count.is_none() && n == 0) {
            sent.due_at = None; // back where it was: nothing to send
            if n == 0 && !here {
                c.channels.remove(&name);
            }
            return;
        }
        let free_at = sent.at + THROTTLE_MS;
        if n > THROTTLE_ABOVE && sent.count.is_some() && now < free_at {
            if sent.due_at.is_none() {
                sent.due_at = Some(free_at);
                c.due.push(Reverse((free_at, name)));
                c.compact();
            }
            return;
        }
        sent.count = Some(n);
        sent.at = now;
        sent.due_at = None;
        if n == 0 && !here {
            c.channels.remove(&name);
        }
        if tell {
            self.broadcast_count(app, &name, n);
        }
        if hook {
            self.hook_subscription_count(now, app, name, n);
        }
    }

    /// Tell every subscriber of `name` here that the count is `n` (one
    /// frame for all).
    fn broadcast_count(&mut self, app: AppId, name: &str, n: u64) {
        let frame = count_frame(name, n);
        let Some(ch) = self.apps[app].channels.get(name) else {
            return;
        };
        if self.debug {
            crate::log_debug!("Subscription count of {name}: {n} ({} here)", ch.len());
        }
        for &s in &ch.subs {
            self.out.push_back(Output::Send(s, frame.clone()));
        }
        self.stats.messages_sent += ch.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::super::sim::*;
    use super::*;

    fn count(channel: &str, n: u64) -> String {
        format!(
            r#"{{"event":"pusher_internal:subscription_count","data":"{{\"subscription_count\":{n}}}","channel":"{channel}"}}"#
        )
    }

    /// Every connection in `conns` got exactly `count(channel, n)`.
    fn all_told(conns: impl IntoIterator<Item = usize>, channel: &str, n: u64) -> Vec<Out> {
        conns
            .into_iter()
            .map(|c| o(c, &count(channel, n)))
            .collect()
    }

    /// One node counting, whose clients are not pinged during a test.
    fn counting() -> Sim {
        Sim::with(|a| {
            a.enable_subscription_count = true;
            a.ping_interval = 86_400;
        })
    }

    /// The end of the loop's turn.
    fn turn(sim: &mut Sim) {
        sim.advance(0);
    }

    #[test]
    fn off_by_default() {
        let mut sim = Sim::new();
        sim.connect(1);
        sim.join(1, "news", None);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
    }

    #[test]
    fn every_subscriber_gets_the_count_when_it_changes() {
        let mut sim = counting();
        sim.connect(1);
        sim.join(1, "news", None);
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told([1], "news", 1));
        sim.connect(2);
        sim.join(2, "news", None);
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told([1, 2], "news", 2));
        sim.send(
            1,
            r#"{"event":"pusher:unsubscribe","data":{"channel":"news"}}"#,
        );
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told([2], "news", 1));
        sim.close(2);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        assert!(sim.hub(0).apps[0].counts.channels.is_empty());
    }

    #[test]
    fn one_count_per_turn_and_none_when_a_turn_ends_where_it_began() {
        let mut sim = counting();
        for c in 1..=3 {
            sim.connect(c);
            sim.join(c, "news", None);
        }
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told([1, 2, 3], "news", 3));
        sim.connect(4);
        sim.join(4, "news", None);
        sim.close(4);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        // re-subscribing changes nothing either
        sim.subscribe(1, "news");
        sim.drain();
        turn(&mut sim);
        assert!(sim.drain().is_empty());
    }

    #[test]
    fn public_private_cache_and_encrypted_channels_count_presence_and_user_channels_do_not() {
        let mut sim = counting();
        sim.connect(1);
        for ch in ["news", "private-a", "cache-a", "private-encrypted-a"] {
            sim.join(1, ch, None);
        }
        sim.join(1, "presence-a", Some(&member("1", "A")));
        sim.signin(1, r#"{"id":"1"}"#);
        sim.drain();
        turn(&mut sim);
        let mut got = sim.drain_for(1);
        got.sort();
        let mut want: Vec<String> = ["news", "private-a", "cache-a", "private-encrypted-a"]
            .iter()
            .map(|ch| count(ch, 1))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn above_100_subscribers_at_most_one_count_per_30_s_while_it_changes() {
        let mut sim = counting();
        for c in 1..=100 {
            sim.connect(c);
            sim.join(c, "big", None);
        }
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told(1..=100, "big", 100));
        // 101 and 102 within the window: nothing until 30 s after the last count
        sim.advance(1_000);
        for c in [101, 102] {
            sim.connect(c);
            sim.join(c, "big", None);
        }
        turn(&mut sim);
        sim.advance(10_000);
        assert!(sim.drain().is_empty());
        sim.advance(18_999);
        assert!(sim.drain().is_empty());
        sim.advance(1);
        assert_eq!(sim.drain(), all_told(1..=102, "big", 102));
        // one more at once: the next window
        sim.connect(103);
        sim.join(103, "big", None);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        sim.advance(30_000);
        assert_eq!(sim.drain(), all_told(1..=103, "big", 103));
        // a window in which the count comes back to the last one sent: nothing
        sim.advance(5_000);
        sim.close(103);
        sim.connect(104);
        sim.join(104, "big", None);
        sim.advance(60_000);
        assert!(sim.drain().is_empty());
        // no changes: nothing more
        sim.advance(120_000);
        assert!(sim.drain().is_empty());
    }

    #[test]
    fn falling_to_100_is_told_at_once() {
        let mut sim = counting();
        for c in 1..=101 {
            sim.connect(c);
            sim.join(c, "big", None);
        }
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told(1..=101, "big", 101));
        sim.close(101);
        turn(&mut sim);
        assert_eq!(sim.drain(), all_told(1..=100, "big", 100));
        // and back above it: throttled again from that count
        sim.connect(101);
        sim.join(101, "big", None);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        sim.advance(THROTTLE_MS);
        assert_eq!(sim.drain(), all_told(1..=101, "big", 101));
    }

    #[test]
    fn a_storm_of_subscribes_costs_the_first_100_counts_then_one_per_window() {
        let mut sim = counting();
        let mut frames = 0;
        for c in 1..=1000 {
            sim.connect(c);
            sim.join(c, "storm", None);
            turn(&mut sim); // the worst case: one subscribe per turn
            frames += sim.drain().len();
        }
        assert_eq!(frames, (1..=100).sum::<usize>());
        sim.advance(THROTTLE_MS);
        assert_eq!(sim.drain().len(), 1000);
        assert_eq!(sim.hub(0).apps[0].counts.due.len(), 0);
    }

    #[test]
    fn a_reload_that_turns_counts_off_stops_them() {
        let mut sim = counting();
        sim.connect(1);
        sim.join(1, "news", None);
        turn(&mut sim);
        sim.drain();
        let now = sim.now;
        sim.hub(0).reload_apps(now, vec![app()]);
        sim.connect(2);
        sim.join(2, "news", None);
        turn(&mut sim);
        assert!(sim.drain().is_empty());
        assert!(sim.hub(0).apps[0].counts.channels.is_empty());
    }

    #[test]
    fn the_http_api_answers_the_same_count() {
        let mut sim = counting();
        for c in 1..=2 {
            sim.connect(c);
            sim.join(c, "news", None);
        }
        assert_eq!(
            sim.info(0, "news", &["subscription_count"]),
            r#"{"subscription_count":2}"#
        );
        assert_eq!(sim.hub(0).subscription_count(0, "news"), 2);
    }

    // ---- the subscription_count webhook: the same counts -------------------------

    /// A webhook for `subscription_count` only.
    fn count_hook(a: &mut App) {
        a.webhooks = vec![crate::webhook::Webhook {
            url: crate::webhook::Url::parse("http://127.0.0.1:9/hook").unwrap(),
            event_types: [webhook::Kind::SubscriptionCount].into_iter().collect(),
            filter: crate::webhook::Filter::default(),
            headers: Vec::new(),
            batching: false,
        }];
        a.ping_interval = 86_400;
    }

    /// The webhook counts each node asked to send: (node, channel, count).
    fn hooked_counts(sim: &mut Sim) -> Vec<(usize, String, u64)> {
        sim.take_webhooks()
            .into_iter()
            .map(|(node, e)| {
                assert_eq!(e.kind, webhook::Kind::SubscriptionCount);
                (node, e.channel.to_string(), e.subscription_count.unwrap())
            })
            .collect()
    }

    #[test]
    fn the_webhook_gets_the_counts_the_subscribers_get_throttle_included() {
        let mut sim = Sim::with(|a| {
            count_hook(a);
            a.enable_subscription_count = true;
        });
        for c in 1..=100 {
            sim.connect(c);
            sim.join(c, "big", None);
        }
        turn(&mut sim);
        assert_eq!(sim.drain().len(), 100);
        assert_eq!(hooked_counts(&mut sim), vec![(0, "big".into(), 100)]);
        for c in [101, 102] {
            sim.connect(c);
            sim.join(c, "big", None);
            turn(&mut sim);
        }
        sim.advance(THROTTLE_MS - 1);
        assert!(sim.drain().is_empty());
        assert!(hooked_counts(&mut sim).is_empty());
        sim.advance(1);
        assert_eq!(sim.drain(), all_told(1..=102, "big", 102));
        assert_eq!(hooked_counts(&mut sim), vec![(0, "big".into(), 102)]);
        // all gone: the webhook hears 0 (the subscribers are gone), and the
        // channel is forgotten
        for c in 1..=102 {
            sim.close(c);
        }
        turn(&mut sim);
        assert_eq!(hooked_counts(&mut sim), vec![(0, "big".into(), 0)]);
        assert!(sim.hub(0).apps[0].counts.channels.is_empty());
    }

    #[test]
    fn the_webhook_counts_without_client_counts() {
        let mut sim = Sim::with(count_hook);
        sim.connect(1);
        sim.join(1, "news", None);
        turn(&mut sim);
        assert!(sim.drain().is_empty(), "enable_subscription_count is off");
        assert_eq!(hooked_counts(&mut sim), vec![(0, "news".into(), 1)]);
        sim.close(1);
        turn(&mut sim);
        assert_eq!(hooked_counts(&mut sim), vec![(0, "news".into(), 0)]);
        assert!(sim.hub(0).apps[0].counts.channels.is_empty());
    }

    #[test]
    fn in_a_cluster_one_node_sends_each_count_even_one_without_subscribers() {
        let mut sim = Sim::cluster_with(2, count_hook);
        sim.advance_to(TIMEOUT); // the nodes' webhooks have settled
        sim.take_webhooks();
        let channels: Vec<String> = (0..8).map(|i| format!("news-{i}")).collect();
        sim.connect((1, 1));
        for ch in &channels {
            sim.join((1, 1), ch, None);
        }
        sim.pump();
        turn(&mut sim);
        let mut sent = hooked_counts(&mut sim);
        sent.sort();
        // each channel's count once, by one node (its owner); some by node
        // 0, which has no subscriber of it
        let mut names: Vec<&String> = sent.iter().map(|(_, ch, _)| ch).collect();
        names.dedup();
        assert_eq!(names.len(), channels.len(), "{sent:?}");
        assert_eq!(sent.len(), channels.len(), "{sent:?}");
        assert!(sent.iter().all(|(_, _, n)| *n == 1), "{sent:?}");
        assert!(sent.iter().any(|(node, _, _)| *node == 0), "{sent:?}");
        assert!(sent.iter().any(|(node, _, _)| *node == 1), "{sent:?}");
        // and when the subscriber goes, each 0 once
        sim.close((1, 1));
        sim.pump();
        turn(&mut sim);
        let sent = hooked_counts(&mut sim);
        assert_eq!(sent.len(), channels.len(), "{sent:?}");
        assert!(sent.iter().all(|(_, _, n)| *n == 0), "{sent:?}");
        for node in 0..2 {
            assert!(sim.hub(node).apps[0].counts.channels.is_empty());
        }
    }

    // ---- across a cluster ------------------------------------------------------

    #[test]
    fn counts_are_summed_across_nodes_and_every_node_tells_its_own() {
        let mut sim = Sim::cluster_with(3, |a| a.enable_subscription_count = true);
        sim.connect((0, 1));
        sim.join((0, 1), "news", None);
        sim.connect((0, 2));
        sim.join((0, 2), "news", None);
        sim.connect((1, 1));
        sim.join((1, 1), "news", None);
        sim.pump();
        turn(&mut sim);
        // node 2 has no subscriber: it tells nobody
        assert_eq!(
            sim.drain_sorted(),
            vec![
                o((0, 1), &count("news", 3)),
                o((0, 2), &count("news", 3)),
                o((1, 1), &count("news", 3)),
            ]
        );
        // a subscriber on node 2 makes 4 for everyone
        sim.connect((2, 1));
        sim.join((2, 1), "news", None);
        sim.pump();
        turn(&mut sim);
        assert_eq!(
            sim.drain_sorted(),
            vec![
                o((0, 1), &count("news", 4)),
                o((0, 2), &count("news", 4)),
                o((1, 1), &count("news", 4)),
                o((2, 1), &count("news", 4)),
            ]
        );
        for node in 0..3 {
            assert_eq!(sim.hub(node).subscription_count(0, "news"), 4);
        }
        // a node that dies takes its subscribers out of the count
        sim.nodes[1].running = false;
        sim.advance(TIMEOUT);
        assert_eq!(
            sim.drain_sorted(),
            vec![
                o((0, 1), &count("news", 3)),
                o((0, 2), &count("news", 3)),
                o((2, 1), &count("news", 3)),
            ]
        );
    }
}

//! The publish policy of horizontal scaling, sans-IO: what the hub wants
//! published to the other nodes, and when it goes to the Redis publisher.
//!
//! The event loop owns the two Redis sockets (`event_loop::redis_link`) and
//! the [`Client`] state machines inside them. Its Redis part
//! (`event_loop::cluster`) hands this module the hub's publishes
//! (`Output::Publish` → [`Policy::publish`], as they leave the hub), the
//! hub's backlog gate (`Output::Backlog` → [`Policy::backlog`]), the links'
//! readiness ([`Policy::links`], whose changes go back to the hub) and what
//! a failed publisher had not had acknowledged ([`Policy::requeue`]), and
//! once per turn lets it send what waited ([`Policy::drain`]). It does not read or
//! write sockets, look at the clock, or decode what the other nodes say
//! (that is the hub's cluster part).
//!
//! The rules:
//! - **Durable** publishes (deliveries, terminations, restarts) are never
//!   reordered: one goes to Redis at once only when the publisher is ready,
//!   not too far ahead of Redis ([`PUB_OUT_LIMIT`]) and nothing older waits;
//!   else it waits in the **outage queue**, oldest first.
//! - **Non-durable** publishes (state, counts, heartbeats) go now or never:
//!   the whole state is sent again when the link comes back, and they need
//!   no order with the deliveries queued before them.
//! - The queue holds at most `limit` publishes (`REVERB_SCALING_QUEUE_LIMIT`).
//!   A publish that finds it full is dropped and counted; so are the newest
//!   queued ones when publishes handed back by a failed publisher go to the
//!   front and push the queue over. Drops are logged at 1, 2, 4, 8, ... so an
//!   outage does not flood the log.
//! - What waited is sent only while the hub's **backlog gate** is open: every
//!   node known before the outage is listening again (or had its
//!   `node_timeout` to come back), so the backlog is not published to nobody.
//! - Every publish is **signed as it goes to the publisher** ([`Signer`]),
//!   not when the hub made it: its `ts` is when it left, so a delivery held
//!   through an outage of any length is not refused as old by the others.
//!   The queue holds unsigned envelopes; what a failed publisher hands back
//!   is stripped of its signature and signed again when it goes again.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::log_error;
use crate::pusher::cluster::seal::{self, Seal};
use crate::redis::client::Client;

/// Signs publishes as they go to Redis: the hub's bus key and the wall
/// clock (Unix ms) of this turn.
pub struct Signer<'a> {
    pub seal: &'a Seal,
    pub unix: u64,
}

impl Signer<'_> {
    fn sign(&self, envelope: &[u8]) -> Rc<[u8]> {
        self.seal.seal(envelope, self.unix).into()
    }
}

/// Bytes of commands the publisher may hold unwritten; past this, publishes
/// wait in the outage queue (Redis is slow, not gone).
pub const PUB_OUT_LIMIT: usize = 1024 * 1024;

/// The outage queue and the publish counters.
#[derive(Debug)]
pub struct Policy {
    /// Durable publishes waiting for the publisher, oldest first.
    queue: VecDeque<Rc<[u8]>>,
    limit: usize,
    /// Both links ready, as last told to the hub.
    up: bool,
    /// The hub's backlog gate: the queue may be sent.
    gate_open: bool,
    /// Publishes handed to the publisher.
    pub published: u64,
    /// Durable publishes lost to a full queue.
    pub dropped: u64,
}

impl Policy {
    /// An empty queue of at most `limit` publishes; the links start down and
    /// the gate open (nothing has been missed yet).
    pub fn new(limit: usize) -> Policy {
        Policy {
            queue: VecDeque::new(),
            limit,
            up: false,
            gate_open: true,
            published: 0,
            dropped: 0,
        }
    }

    /// Publishes waiting in the outage queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether both links were ready at the last [`Policy::links`].
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The links' readiness this turn. Returns `Some(up)` when it changed
    /// and the hub must be told (`Hub::cluster_link`).
    pub fn links(&mut self, sub_ready: bool, pub_ready: bool) -> Option<bool> {
        let up = sub_ready && pub_ready;
        (up != self.up).then(|| {
            self.up = up;
            up
        })
    }

    /// The hub opened or closed its backlog gate.
    pub fn backlog(&mut self, open: bool) {
        self.gate_open = open;
    }

    /// One publish from the hub: send it now (signed), queue it, or drop it.
    pub fn publish(
        &mut self,
        now: u64,
        publ: &mut Client,
        payload: Rc<[u8]>,
        durable: bool,
        signer: &Signer,
    ) {
        let ready = can_take(publ);
        if !durable {
            if ready {
                publ.publish(now, signer.sign(&payload), false);
                self.published += 1;
            }
        } else if ready && self.queue.is_empty() {
            publ.publish(now, signer.sign(&payload), true);
            self.published += 1;
        } else if self.queue.len() < self.limit {
            self.queue.push_back(payload);
        } else {
            self.count_drop();
        }
    }

    /// Durable publishes a failed publisher had not had acknowledged, oldest
    /// first: they are older than anything queued, so they go first; if that
    /// passes the limit the newest are dropped.
    pub fn requeue(&mut self, back: Vec<Rc<[u8]>>) {
        for p in back.into_iter().rev() {
            self.queue.push_front(seal::strip(&p).into());
        }
        while self.queue.len() > self.limit {
            self.queue.pop_back();
            self.count_drop();
        }
    }

    /// The outage queue, oldest first, left in place (unsigned envelopes).
    pub fn queued_payloads(&self) -> impl Iterator<Item = &Rc<[u8]>> {
        self.queue.iter()
    }

    /// Send what waited, oldest first (signed now), while the gate is open
    /// and the publisher takes more.
    pub fn drain(&mut self, now: u64, publ: &mut Client, signer: &Signer) {
        while self.gate_open && can_take(publ) {
            let Some(payload) = self.queue.pop_front() else {
                break;
            };
            publ.publish(now, signer.sign(&payload), true);
            self.published += 1;
        }
    }

    fn count_drop(&mut self) {
        self.dropped += 1;
        let n = self.dropped;
        if n.is_power_of_two() {
            log_error!(
                "Redis outage queue is full ({} publishes): {n} dropped so far; \
                 raise REVERB_SCALING_QUEUE_LIMIT or bring Redis back",
                self.limit
            );
        }
    }
}

/// The publisher is ready and not too far ahead of Redis.
fn can_take(publ: &Client) -> bool {
    publ.is_ready() && publ.output().len() < PUB_OUT_LIMIT
}

#[cfg(test)]
mod tests;

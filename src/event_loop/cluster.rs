//! The Redis side of the event loop: the two links (the subscriber and
//! publisher sockets, `redis_link`) and the publish policy they serve
//! ([`scaling::Policy`]).
//!
//! This part only moves things: bytes between the sockets and the
//! `redis::client` state machines, messages from the subscriber to the hub
//! ([`Hub::remote`]), the hub's cluster outputs (`Output::Publish`,
//! `Output::Backlog`, `Output::Restart`) to the policy, and the links'
//! readiness to both. What is published when is the policy's; what a
//! message means is the hub's.

use std::io;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use mio::Token;

use super::{REDIS_PUB, REDIS_SUB, Server, redis_link};
use crate::config;
use crate::log_info;
use crate::metrics::Metrics;
use crate::pusher::cluster::Bus;
use crate::pusher::{Hub, Output};
use crate::redis::client::{Event, Role};
use crate::scaling;

/// The links and the policy, present when scaling is on.
pub struct Scaling {
    sub: redis_link::Link,
    publ: redis_link::Link,
    policy: scaling::Policy,
    /// The hub asked for a restart (`Output::Restart`); carried out at the
    /// end of the Redis turn.
    restart: bool,
}

impl Scaling {
    /// Make this node a cluster member: its id, the hub's cluster part and
    /// the two links (which connect on the first turn).
    /// `node`: the identity to keep (an upgrade); otherwise one is drawn
    /// from `seed`.
    pub fn start(
        sc: &config::Scaling,
        seed: u64,
        node: Option<String>,
        hub: &mut Hub,
    ) -> io::Result<Scaling> {
        let tls = if sc.redis.tls {
            Some(crate::tls::client_config().map_err(io::Error::other)?)
        } else {
            None
        };
        let node = node
            .unwrap_or_else(|| format!("{:016x}", crate::pusher::splitmix64(&mut seed.clone())));
        log_info!(
            "scaling: node {node}, Redis {}, channel {:?}",
            sc.redis,
            sc.channel
        );
        let bus = Bus {
            channel: sc.channel.clone(),
            secret: sc.secret.clone(),
            started: unix_ms(),
        };
        hub.enable_cluster(node, sc.node_timeout_ms, bus);
        let link =
            |role, token, tls| redis_link::Link::new(role, token, &sc.redis, &sc.channel, tls);
        Ok(Scaling {
            sub: link(Role::Subscriber, REDIS_SUB, tls.clone()),
            publ: link(Role::Publisher, REDIS_PUB, tls),
            policy: scaling::Policy::new(sc.queue_limit),
            restart: false,
        })
    }

    /// One of the hub's cluster outputs (`Send` and `Close` are the loop's).
    pub fn output(&mut self, now: u64, out: Output, hub: &Hub) {
        match out {
            Output::Publish { payload, durable } => {
                let Some(seal) = hub.cluster().map(|c| c.seal()) else {
                    return; // no cluster, no publishes
                };
                let signer = scaling::Signer {
                    seal: &seal,
                    unix: unix_ms(),
                };
                self.policy
                    .publish(now, &mut self.publ.client, payload, durable, &signer);
            }
            Output::Backlog { open } => self.policy.backlog(open),
            Output::Restart => self.restart = true,
            Output::Send(..) | Output::Close(..) | Output::Webhook { .. } => {}
        }
    }

    /// A link used its read budget: the loop polls without waiting.
    pub fn more_to_read(&self) -> bool {
        self.sub.more_to_read || self.publ.more_to_read
    }

    /// The links' next deadline (connect, reply, ping, back-off).
    pub fn poll_timeout(&self) -> u64 {
        self.sub
            .client
            .poll_timeout()
            .min(self.publ.client.poll_timeout())
    }

    /// Messages from the subscriber go to the hub; the publisher's events
    /// (readiness, acknowledgements) need nothing more.
    fn events(&mut self, hub: &mut Hub, metrics: &mut Metrics, now: u64) {
        while let Some(e) = self.sub.poll_event(now) {
            if let Event::Message(payload) = e {
                metrics.redis_received += 1;
                hub.remote(now, unix_ms(), &payload);
            }
        }
        while self.publ.poll_event(now).is_some() {}
    }

    /// `revurb upgrade`, the old image: every durable publish not known to
    /// have reached Redis (the publisher's unacknowledged ones, then the
    /// outage queue), oldest first, as unsigned envelopes. Left in place in
    /// case the exec fails. Sent again by the new image, a publish that had
    /// in fact arrived is dropped by the other nodes (its seq, which the
    /// node keeps, is one they have seen).
    pub(super) fn held_publishes(&self) -> Vec<Vec<u8>> {
        let sent = self.publ.client.unacknowledged_durable();
        sent.iter()
            .map(|p| crate::pusher::cluster::seal::strip(p))
            .chain(self.policy.queued_payloads().map(|p| p.to_vec()))
            .collect()
    }

    /// `revurb upgrade`, the new image: the old image's held publishes go
    /// first, before anything this image publishes.
    pub(super) fn carry_publishes(&mut self, payloads: Vec<Vec<u8>>) {
        self.policy
            .requeue(payloads.into_iter().map(Rc::from).collect());
    }

    /// `revurb upgrade`, the new image: the subscriber connection the old
    /// one handed over.
    pub(super) fn adopt_subscriber(
        &mut self,
        now: u64,
        sock: mio::net::TcpStream,
        registry: &mio::Registry,
        unread: Vec<u8>,
        messages: Vec<Vec<u8>>,
        tls: Option<&crate::tls_record::RecordsExport>,
    ) -> io::Result<()> {
        self.sub.adopt(now, sock, registry, unread, messages, tls)
    }

    /// `revurb upgrade`, the old image: read what the subscriber socket
    /// holds now and hand it to the hub (a bridge connection is subscribed
    /// by then, so nothing published falls between the two).
    pub(super) fn read_subscriber_now(
        &mut self,
        hub: &mut Hub,
        metrics: &mut Metrics,
        now: u64,
        registry: &mio::Registry,
    ) {
        for _ in 0..64 {
            let back = self.sub.ready(now, true, false, registry);
            self.policy.requeue(back);
            self.events(hub, metrics, now);
            if !self.sub.more_to_read {
                break;
            }
        }
    }

    /// The gauges and counters `/metrics` shows.
    fn report(&self, metrics: &mut Metrics) {
        metrics.redis_published = self.policy.published;
        metrics.redis_dropped = self.policy.dropped;
        metrics.redis_queued = self.policy.queued() as u64;
        metrics.redis_up = self.policy.is_up();
        metrics.redis_reconnects = self.sub.reconnects + self.publ.reconnects;
    }
}

impl Server {
    /// Readiness on a Redis socket: move bytes and hand messages to the hub.
    pub(super) fn redis_ready(&mut self, now: u64, token: Token, readable: bool, writable: bool) {
        let Some(sc) = self.scaling.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        let link = if token == REDIS_SUB {
            &mut sc.sub
        } else {
            &mut sc.publ
        };
        let back = link.ready(now, readable, writable, registry);
        sc.policy.requeue(back);
        sc.events(&mut self.hub, &mut self.metrics, now);
    }

    /// Once per loop turn: read what the budget left, connect and time out,
    /// follow the link state, let the policy send what waited, write; then
    /// carry out a restart the hub asked for.
    pub(super) fn redis_turn(&mut self, now: u64) {
        let Some(sc) = self.scaling.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        if sc.sub.more_to_read {
            sc.sub.ready(now, true, false, registry); // nothing to re-send
        }
        if sc.publ.more_to_read {
            let back = sc.publ.ready(now, true, false, registry);
            sc.policy.requeue(back);
        }
        let back = sc.sub.tick(now, registry);
        sc.policy.requeue(back);
        let back = sc.publ.tick(now, registry);
        sc.policy.requeue(back);
        sc.events(&mut self.hub, &mut self.metrics, now);
        let ready = (sc.sub.client.is_ready(), sc.publ.client.is_ready());
        if let Some(up) = sc.policy.links(ready.0, ready.1) {
            self.hub.cluster_link(now, up);
        }
        self.hub.flush_cluster();
        // the link change and the flush may have moved the backlog gate and
        // published: the policy hears of it before it sends what waited
        self.drain_hub();
        let Some(sc) = self.scaling.as_mut() else {
            return;
        };
        if let Some(seal) = self.hub.cluster().map(|c| c.seal()) {
            let signer = scaling::Signer {
                seal: &seal,
                unix: unix_ms(),
            };
            sc.policy.drain(now, &mut sc.publ.client, &signer);
        }
        let registry = self.poll.registry();
        let back = sc.publ.flush(now, registry);
        sc.policy.requeue(back);
        let back = sc.sub.flush(now, registry);
        sc.policy.requeue(back);
        sc.report(&mut self.metrics);
        if std::mem::take(&mut sc.restart) {
            self.begin_stop(true);
        }
    }
}

/// The wall clock in Unix milliseconds: what a message's `ts` is compared
/// with on other nodes (the loop's own clock starts at 0 with the process).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

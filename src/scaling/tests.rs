//! Scenario tests for the publish policy: a real publisher [`Client`] with a
//! simulated Redis (its replies are fed in as bytes) and a simulated hub that
//! publishes, and every assertion is on the PUBLISH commands that would reach
//! the socket, in order.

use super::*;
use crate::redis::Target;
use crate::redis::client::Role;
use crate::redis::resp::{self, Value};

/// The policy, the publisher it feeds, and the loop's clock.
struct Sim {
    policy: Policy,
    publ: Client,
    now: u64,
    seal: Seal,
}

impl Sim {
    fn new(limit: usize) -> Sim {
        let target = Target::from_url("redis://127.0.0.1:6379").expect("a valid URL");
        let mut sim = Sim {
            policy: Policy::new(limit),
            publ: Client::new(Role::Publisher, &target, "reverb"),
            now: 1_000,
            seal: Seal::new("reverb", Some("bus secret"), []),
        };
        sim.redis_up();
        sim
    }

    /// The publisher connects and Redis answers its PING.
    fn redis_up(&mut self) {
        self.now += 10;
        self.publ.connecting(self.now);
        self.publ.connected(self.now);
        self.publ
            .received(self.now, b"+PONG\r\n")
            .expect("PONG finishes the handshake");
        while self.publ.poll_event().is_some() {}
        assert_eq!(self.policy.links(true, true), Some(true));
        self.written(); // the PING
    }

    /// The publisher's socket fails: what Redis had not acknowledged comes back.
    fn redis_down(&mut self) {
        self.now += 10;
        let back = self.publ.disconnected(self.now);
        self.policy.requeue(back);
        assert_eq!(self.policy.links(true, false), Some(false));
    }

    /// The hub publishes.
    fn hub(&mut self, payload: &str, durable: bool) {
        let payload: Rc<[u8]> = serde_json::json!({ "p": payload })
            .to_string()
            .as_bytes()
            .into();
        let signer = Signer {
            seal: &self.seal,
            unix: self.now,
        };
        self.policy
            .publish(self.now, &mut self.publ, payload, durable, &signer);
    }

    /// The loop's turn: send what waited.
    fn drain(&mut self) {
        let signer = Signer {
            seal: &self.seal,
            unix: self.now,
        };
        self.policy.drain(self.now, &mut self.publ, &signer);
    }

    /// Redis acknowledges `n` publishes.
    fn ack(&mut self, n: usize) {
        let replies = ":1\r\n".repeat(n);
        self.publ
            .received(self.now, replies.as_bytes())
            .expect("acknowledgements");
        while self.publ.poll_event().is_some() {}
    }

    /// The socket takes everything the publisher holds: the payloads of the
    /// PUBLISH commands in it, in order (a PING is skipped), each checked
    /// to be signed at the time it was written.
    fn written(&mut self) -> Vec<String> {
        let out = self.publ.output().to_vec();
        self.publ.wrote(out.len());
        let limits = resp::Limits {
            max_depth: 2,
            max_bulk: usize::MAX,
            max_array: 8,
        };
        let mut used = 0;
        let mut payloads = Vec::new();
        while used < out.len() {
            let (value, n) = match resp::parse(&out[used..], &limits) {
                Ok(Some(parsed)) => parsed,
                other => panic!("the publisher wrote bad RESP: {other:?}"),
            };
            used += n;
            let Value::Array(Some(args)) = value else {
                panic!("a command is an array");
            };
            match args.as_slice() {
                [Value::Bulk(Some(cmd)), _, Value::Bulk(Some(p))] if cmd == b"PUBLISH" => {
                    let (envelope, ts) = self.seal.open(p).expect("a signed publish");
                    assert_eq!(ts, self.now, "signed as it is written");
                    let v: serde_json::Value =
                        serde_json::from_slice(&envelope).expect("the hub's JSON");
                    payloads.push(v["p"].as_str().expect("a test payload").to_string());
                }
                [Value::Bulk(Some(cmd))] if cmd == b"PING" => {}
                other => panic!("unexpected command {other:?}"),
            }
        }
        payloads
    }
}

#[test]
fn publishes_go_at_once_while_redis_is_up() {
    let mut s = Sim::new(10);
    s.hub("d1", true);
    s.hub("state", false);
    s.hub("d2", true);
    assert_eq!(s.written(), ["d1", "state", "d2"]);
    assert_eq!((s.policy.published, s.policy.queued()), (3, 0));
}

#[test]
fn redis_down_then_up_sends_what_waited_in_order() {
    let mut s = Sim::new(10);
    s.redis_down();
    s.hub("d1", true);
    s.hub("d2", true);
    s.hub("d3", true);
    s.drain();
    assert_eq!(s.policy.queued(), 3);
    assert!(s.written().is_empty(), "nothing reaches a closed socket");
    s.redis_up();
    s.drain();
    assert_eq!(s.written(), ["d1", "d2", "d3"]);
    assert_eq!((s.policy.published, s.policy.queued()), (3, 0));
}

#[test]
fn non_durable_publishes_are_now_or_never() {
    let mut s = Sim::new(10);
    s.redis_down();
    s.hub("state", false);
    s.hub("heartbeat", false);
    assert_eq!(s.policy.queued(), 0, "state is not queued");
    s.redis_up();
    s.drain();
    assert!(s.written().is_empty(), "nor sent later");
    assert_eq!((s.policy.published, s.policy.dropped), (0, 0));
}

#[test]
fn order_is_kept_behind_a_waiting_backlog() {
    let mut s = Sim::new(10);
    s.redis_down();
    s.hub("d1", true);
    s.redis_up();
    s.policy.backlog(false); // the hub waits for the other nodes
    s.hub("d2", true);
    s.hub("state", false);
    // the new durable publish waits behind the old one; state needs no order
    assert_eq!(s.written(), ["state"]);
    s.policy.backlog(true);
    s.drain();
    assert_eq!(s.written(), ["d1", "d2"]);
}

#[test]
fn backlog_gate_closed_then_open() {
    let mut s = Sim::new(10);
    s.redis_down();
    s.hub("d1", true);
    s.hub("d2", true);
    s.policy.backlog(false);
    s.redis_up();
    for _ in 0..3 {
        s.drain();
    }
    assert!(s.written().is_empty(), "the gate holds the backlog");
    assert_eq!(s.policy.queued(), 2);
    s.policy.backlog(true);
    s.drain();
    assert_eq!(s.written(), ["d1", "d2"]);
}

#[test]
fn full_queue_drops_the_newest_and_counts() {
    let mut s = Sim::new(2);
    s.redis_down();
    for d in ["d1", "d2", "d3", "d4"] {
        s.hub(d, true);
    }
    assert_eq!((s.policy.queued(), s.policy.dropped), (2, 2));
    s.redis_up();
    s.drain();
    assert_eq!(s.written(), ["d1", "d2"]);
    assert_eq!(s.policy.published, 2);
}

#[test]
fn unacknowledged_publishes_are_sent_again_first() {
    let mut s = Sim::new(10);
    s.hub("d1", true);
    s.hub("d2", true);
    s.hub("state", false);
    assert_eq!(s.written(), ["d1", "d2", "state"]);
    s.ack(1); // Redis acknowledged d1 only
    s.redis_down();
    s.hub("d3", true);
    assert_eq!(s.policy.queued(), 2, "d2 came back, state did not");
    s.redis_up();
    s.drain();
    assert_eq!(s.written(), ["d2", "d3"]);
}

#[test]
fn handed_back_publishes_push_the_newest_out_of_a_full_queue() {
    let mut s = Sim::new(3);
    let big = "x".repeat(PUB_OUT_LIMIT);
    s.hub("d1", true);
    s.hub(&big, true); // not yet written: the publisher is full
    s.hub("d3", true);
    s.hub("d4", true);
    s.hub("d5", true);
    assert_eq!(s.policy.queued(), 3, "d3.. wait behind the full publisher");
    s.redis_down(); // d1 and the big one come back, older than d3..d5
    assert_eq!((s.policy.queued(), s.policy.dropped), (3, 2));
    s.redis_up();
    s.drain();
    let sent = s.written();
    assert_eq!(
        (sent.len(), sent[0].as_str()),
        (2, "d1"),
        "then the publisher is full"
    );
    s.drain();
    assert_eq!(s.written(), ["d3"], "d4 and d5 were dropped");
}

#[test]
fn a_publisher_far_ahead_of_redis_holds_publishes_back() {
    let mut s = Sim::new(10);
    let big = "x".repeat(PUB_OUT_LIMIT);
    s.hub(&big, true);
    s.hub("d2", true);
    s.hub("state", false);
    s.drain();
    assert_eq!(s.policy.queued(), 1, "d2 waits, state is skipped");
    assert_eq!(s.written().len(), 1, "only the big one was in the output");
    s.drain();
    assert_eq!(s.written(), ["d2"]);
    assert_eq!(s.policy.published, 2);
}

#[test]
fn links_report_changes_only() {
    let mut p = Policy::new(1);
    assert_eq!(p.links(true, false), None, "down, as it started");
    assert_eq!(p.links(true, true), Some(true));
    assert_eq!(p.links(true, true), None);
    assert!(p.is_up());
    assert_eq!(p.links(false, true), Some(false));
}

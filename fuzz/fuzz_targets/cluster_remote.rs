//! The cluster: two clustered hubs that hear each other through a simulated
//! Redis channel (every publish is signed as the loop signs it and reaches
//! both, the sender too, as Redis does), each driven by the core operations
//! of `hub_ops`, and between them remote messages from anyone: any bytes
//! (an outsider), and envelopes built from fuzzed bodies (events, client
//! events, joins, leaves, counts, states, wants, heartbeats, terminations,
//! restarts, goodbyes) from real or made-up nodes, signed with the bus key
//! (an insider) at a fuzzed time, or not. The link goes down and up.
//!
//! Checked: the harness's checks on both nodes, every envelope decoding the
//! same after an encode, and at the end, with every connection closed and
//! the other nodes timed out (three node timeouts in heartbeat steps),
//! nothing occupied anywhere.
#![no_main]

mod common;

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use common::{APPS, Apps, Data, Harness, Name, Op, UserId};
use libfuzzer_sys::fuzz_target;
use revurb::pusher::Hub;
use revurb::pusher::cluster::Bus;
use revurb::pusher::cluster::envelope::{AppState, Body, CachedEvent, Envelope};
use serde_json::Value;

/// The node timeout of both hubs.
const TIMEOUT: u64 = 4000;
/// The wall clock (Unix ms) when the hub clock is 0.
const UNIX0: u64 = 1_700_000_000_000;

#[derive(Debug, Arbitrary)]
enum FakeBody {
    Event {
        channels: Vec<Name>,
        event: String,
        data: String,
        socket_id: Option<String>,
    },
    Client {
        channel: Name,
        event: String,
        data: Data,
        user_id: Option<UserId>,
    },
    Join {
        channel: Name,
        user_id: Option<UserId>,
        info: Data,
    },
    Leave {
        channel: Name,
        user_id: UserId,
    },
    Counts {
        connections: u64,
        channels: Vec<(Name, u64)>,
    },
    State {
        connections: u64,
        channels: Vec<(Name, u64)>,
        members: Vec<(Name, Vec<UserId>)>,
        cache: Vec<(Name, String, String, u32)>,
        reply: bool,
    },
    Want(u8),
    Heartbeat,
    Terminate(UserId),
    Restart,
    Bye,
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// A core operation on node 0 or 1.
    On(bool, Op),
    /// Redis delivers what is waiting.
    Pump,
    /// Every node sends the counts that changed (once per loop turn).
    Flush,
    /// A message from another node: any bytes, signed with the bus key or
    /// not.
    RawRemote(bool, bool, Vec<u8>),
    /// A message from node `from` (0, 1: a real node's name; else a made-up
    /// one) about app `app`.
    Remote {
        to: bool,
        from: u8,
        seq: u16,
        app: u8,
        body: FakeBody,
        /// Signed with the bus key, this many seconds off the clock.
        signed: Option<i8>,
    },
    Link(bool, bool),
}

fn node_name(n: u8) -> String {
    match n % 4 {
        0 => "node0".into(),
        1 => "node1".into(),
        i => format!("other{i}"),
    }
}

fn user_json(u: &UserId) -> Value {
    serde_json::from_str(&u.json()).unwrap_or_else(|_| Value::from(u.json()))
}

fn body(app: &str, b: &FakeBody) -> Body {
    let channels = |list: &[(Name, u64)]| -> BTreeMap<String, u64> {
        list.iter()
            .take(16)
            .map(|(n, c)| (n.text(), *c % 8))
            .collect()
    };
    match b {
        FakeBody::Event {
            channels,
            event,
            data,
            socket_id,
        } => Body::Event {
            app: app.into(),
            channels: channels.iter().take(10).map(Name::text).collect(),
            event: event.clone(),
            data: data.clone(),
            socket_id: socket_id.clone(),
        },
        FakeBody::Client {
            channel,
            event,
            data,
            user_id,
        } => Body::Client {
            app: app.into(),
            channel: channel.text(),
            event: event.clone(),
            data: data.json(),
            user_id: user_id.as_ref().map(user_json),
        },
        FakeBody::Join {
            channel,
            user_id,
            info,
        } => {
            let mut member = serde_json::Map::new();
            if let Some(u) = user_id {
                member.insert("user_id".into(), user_json(u));
            }
            member.insert("user_info".into(), info.json());
            Body::Join {
                app: app.into(),
                channel: channel.text(),
                member: Value::Object(member),
            }
        }
        FakeBody::Leave { channel, user_id } => Body::Leave {
            app: app.into(),
            channel: channel.text(),
            user_id: user_json(user_id),
        },
        FakeBody::Counts {
            connections,
            channels: list,
        } => Body::Counts {
            app: app.into(),
            connections: *connections % 16,
            channels: channels(list),
        },
        FakeBody::State {
            connections,
            channels: list,
            members,
            cache,
            reply,
        } => {
            let state = AppState {
                connections: *connections % 16,
                channels: channels(list),
                members: members
                    .iter()
                    .take(8)
                    .map(|(n, users)| {
                        let list = users
                            .iter()
                            .take(8)
                            .map(|u| serde_json::json!({ "user_id": user_json(u) }))
                            .collect();
                        (n.text(), list)
                    })
                    .collect(),
                cache: cache
                    .iter()
                    .take(4)
                    .map(|(n, event, data, ttl)| {
                        let message = serde_json::json!({
                            "event": event, "channel": n.text(), "data": data
                        })
                        .to_string();
                        (
                            n.text(),
                            CachedEvent {
                                event: event.clone(),
                                data: data.clone(),
                                message,
                                ttl_ms: u64::from(*ttl % 2_000_000),
                            },
                        )
                    })
                    .collect(),
            };
            Body::State {
                apps: BTreeMap::from([(app.to_string(), state)]),
                reply: *reply,
            }
        }
        FakeBody::Want(n) => Body::Want { to: node_name(*n) },
        FakeBody::Heartbeat => Body::Heartbeat,
        FakeBody::Terminate(u) => Body::Terminate {
            app: app.into(),
            user_id: u.key_text(),
        },
        FakeBody::Restart => Body::Restart,
        FakeBody::Bye => Body::Bye,
    }
}

/// `msg` signed at `unix` with node `h`'s bus key, as its loop signs.
fn sign(h: &Harness, msg: &[u8], unix: u64) -> Vec<u8> {
    h.hub.cluster().expect("clustered").seal().seal(msg, unix)
}

/// Redis: every waiting publish, signed, reaches both nodes; until quiet.
fn pump(nodes: &mut [Harness; 2], up: &[bool; 2]) {
    for _ in 0..64 {
        let mut msgs = Vec::new();
        for (i, h) in nodes.iter_mut().enumerate() {
            h.hub.flush_cluster();
            h.drain();
            let unix = UNIX0 + h.now;
            for p in std::mem::take(&mut h.published) {
                if up[i] {
                    msgs.push(sign(h, &p, unix));
                }
            }
        }
        if msgs.is_empty() {
            return;
        }
        for p in &msgs {
            for (i, h) in nodes.iter_mut().enumerate() {
                if up[i] {
                    h.hub.remote(h.now, UNIX0 + h.now, p);
                    h.drain();
                }
            }
        }
    }
}

fn new_node(i: usize, apps: Apps) -> Harness {
    let mut hub = Hub::new(apps.list(), 0x1000 * (i as u64 + 1) + 1, false);
    let bus = Bus {
        channel: "reverb".into(),
        secret: None,
        started: UNIX0,
    };
    hub.enable_cluster(format!("node{i}"), TIMEOUT, bus);
    hub.cluster_link(0, true);
    Harness::new(hub)
}

fuzz_target!(|input: (Apps, Vec<Step>)| {
    let (apps, steps) = input;
    let mut nodes = [new_node(0, apps), new_node(1, apps)];
    let mut up = [true, true];
    pump(&mut nodes, &up);
    for step in steps.iter().take(128) {
        match step {
            Step::On(n, op) => {
                let h = &mut nodes[usize::from(*n)];
                // both clocks move together
                if let Op::Clock { ms } = op {
                    let ms = u64::from(*ms % 20_000);
                    for h in nodes.iter_mut() {
                        h.advance(ms);
                    }
                } else {
                    h.apply(op);
                }
            }
            Step::Pump => pump(&mut nodes, &up),
            Step::Flush => {
                for h in nodes.iter_mut() {
                    h.hub.flush_cluster();
                    h.drain();
                }
            }
            Step::RawRemote(n, signed, bytes) => {
                let h = &mut nodes[usize::from(*n)];
                let unix = UNIX0 + h.now;
                let wire = if *signed {
                    sign(h, bytes, unix)
                } else {
                    bytes.clone()
                };
                h.hub.remote(h.now, unix, &wire);
                h.drain();
            }
            Step::Remote {
                to,
                from,
                seq,
                app,
                body: b,
                signed,
            } => {
                let (id, _, _) = APPS[usize::from(*app) % 2];
                let env = Envelope::new(&node_name(*from), u64::from(*seq), body(id, b));
                let bytes = env.encode();
                assert_eq!(Envelope::decode(&bytes).as_ref(), Ok(&env), "round trip");
                let h = &mut nodes[usize::from(*to)];
                let unix = UNIX0 + h.now;
                let wire = match signed {
                    Some(skew) => {
                        let at = unix.saturating_add_signed(i64::from(*skew) * 1000);
                        sign(h, &bytes, at)
                    }
                    None => bytes,
                };
                h.hub.remote(h.now, unix, &wire);
                h.drain();
            }
            Step::Link(n, state) => {
                let i = usize::from(*n);
                up[i] = *state;
                let h = &mut nodes[i];
                h.hub.cluster_link(h.now, *state);
                h.drain();
            }
        }
    }
    // Everyone leaves; the link comes back; made-up nodes time out.
    for (i, h) in nodes.iter_mut().enumerate() {
        h.close_all();
        if !up[i] {
            up[i] = true;
            h.hub.cluster_link(h.now, true);
            h.drain();
        }
    }
    pump(&mut nodes, &up);
    // time passes as in a live loop: a step at each heartbeat, Redis
    // delivering in between (one jump of a whole timeout would be a stall,
    // after which a node is deaf and rightly drops nobody)
    for _ in 0..12 {
        for h in nodes.iter_mut() {
            h.advance(TIMEOUT / 4);
        }
        pump(&mut nodes, &up);
    }
    for h in &nodes {
        h.check_empty(false);
    }
});

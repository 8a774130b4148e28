//! The JSON messages revurb nodes exchange over the Redis channel.
//!
//! Every message is one JSON object: `{"v":1,"node":"<id>","seq":N,"type":...}`
//! plus the fields of its type. It names an app by `app_id` and never carries
//! a secret (port decisions, "Horizontal scaling"). revurb nodes talk only to
//! each other: Reverb's PHP-serialised envelope is not understood.
//!
//! On the wire the object also ends with `"ts"` and `"mac"`, the signature
//! (`seal`), which is checked and taken off before a message is decoded
//! here.
//!
//! `node` is a random id chosen at start; a node ignores its own messages.
//! `seq` grows by one per message of a node, so a message re-sent after a
//! Redis reconnect that had in fact arrived is recognised and dropped.
//!
//! Anything else on the channel (another program's messages, a newer
//! version, malformed JSON) decodes to an error the caller logs and ignores.
//!
//! It is the wire form of the hub's cluster part (`pusher::cluster`), which
//! encodes what it publishes and decodes what arrives; it knows nothing of
//! the transport. Carrying the bytes over Redis pub/sub is the event loop's
//! (`redis`, `scaling`); `revurb restart` uses it to say `restart`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The envelope version this node speaks.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub node: String,
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// An HTTP API event (`/events`, `/batch_events`, `sendToUser`): deliver
    /// to local subscribers of each channel except the `socket_id`.
    Event {
        app: String,
        channels: Vec<String>,
        event: String,
        data: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        socket_id: Option<String>,
    },
    /// A client event (whisper) from a connection on the sending node.
    Client {
        app: String,
        channel: String,
        event: String,
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<Value>,
    },
    /// A user's first connection on the sending node joined a presence channel.
    Join {
        app: String,
        channel: String,
        /// The member's `channel_data` object (`user_id`, `user_info`).
        member: Value,
    },
    /// A user's last connection on the sending node left a presence channel.
    Leave {
        app: String,
        channel: String,
        user_id: Value,
    },
    /// Absolute counts of the sending node that changed: open connections of
    /// an app and subscribers per channel (0: the channel is gone there).
    Counts {
        app: String,
        connections: u64,
        channels: BTreeMap<String, u64>,
    },
    /// Everything the sending node holds. `reply`: the sender has just
    /// (re)joined and asks every node for its own `state`.
    State {
        apps: BTreeMap<String, AppState>,
        #[serde(default)]
        reply: bool,
    },
    /// Ask node `to` for its `state` (a node heard from an unknown node).
    Want { to: String },
    /// "I am alive"; sent every heartbeat interval.
    Heartbeat,
    /// Close the connections of a user (`terminate_connections`).
    Terminate { app: String, user_id: String },
    /// `revurb restart`: every node closes its connections and exits.
    Restart,
    /// The sender is shutting down: forget it now rather than after
    /// `node_timeout`.
    Bye,
}

/// One app's part of a node's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppState {
    pub connections: u64,
    /// Subscribers per channel.
    #[serde(default)]
    pub channels: BTreeMap<String, u64>,
    /// Members (their `channel_data` objects) per presence channel.
    #[serde(default)]
    pub members: BTreeMap<String, Vec<Value>>,
    /// The last event of cache channels, for a node that joins later.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache: BTreeMap<String, CachedEvent>,
}

/// A cache channel's last event as a node holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedEvent {
    /// `event` and `data` as `info=cache` shows them.
    pub event: String,
    pub data: String,
    /// The message exactly as subscribers get it.
    pub message: String,
    /// Milliseconds it stays fresh.
    pub ttl_ms: u64,
}

impl Body {
    /// Whether a message must survive a Redis outage (held in the queue and
    /// sent on reconnect). State messages are not: the full state sent on
    /// reconnect replaces them.
    pub fn durable(&self) -> bool {
        matches!(
            self,
            Body::Event { .. } | Body::Client { .. } | Body::Terminate { .. } | Body::Restart
        )
    }
}

/// Why a message from the channel was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    NotJson(String),
    /// Valid JSON, but not a revurb envelope of a version we speak.
    NotOurs(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotJson(e) => write!(f, "not JSON ({e})"),
            DecodeError::NotOurs(e) => write!(f, "not a revurb v{VERSION} message ({e})"),
        }
    }
}

impl Envelope {
    pub fn new(node: &str, seq: u64, body: Body) -> Envelope {
        Envelope {
            v: VERSION,
            node: node.to_string(),
            seq,
            body,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        match value.get("v").and_then(Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(DecodeError::NotOurs(format!("version {v}"))),
            None => return Err(DecodeError::NotOurs("no \"v\"".into())),
        }
        serde_json::from_value(value).map_err(|e| DecodeError::NotOurs(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(body: Body) {
        let e = Envelope::new("n1", 7, body);
        let bytes = e.encode();
        assert_eq!(
            Envelope::decode(&bytes).unwrap(),
            e,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(Body::Event {
            app: "a".into(),
            channels: vec!["c1".into(), "c2".into()],
            event: "e".into(),
            data: "{\"x\":1}".into(),
            socket_id: Some("1.2".into()),
        });
        round_trip(Body::Client {
            app: "a".into(),
            channel: "private-c".into(),
            event: "client-x".into(),
            data: json!({"k": [1, 2]}),
            user_id: Some(json!(5)),
        });
        round_trip(Body::Join {
            app: "a".into(),
            channel: "presence-c".into(),
            member: json!({"user_id": "u", "user_info": {"n": 1}}),
        });
        round_trip(Body::Leave {
            app: "a".into(),
            channel: "presence-c".into(),
            user_id: json!("u"),
        });
        round_trip(Body::Counts {
            app: "a".into(),
            connections: 3,
            channels: [("c".to_string(), 2u64)].into_iter().collect(),
        });
        let mut apps = BTreeMap::new();
        apps.insert(
            "a".to_string(),
            AppState {
                connections: 2,
                channels: [("presence-c".to_string(), 2u64)].into_iter().collect(),
                members: [("presence-c".to_string(), vec![json!({"user_id": 1})])]
                    .into_iter()
                    .collect(),
                cache: [(
                    "cache-c".to_string(),
                    CachedEvent {
                        event: "e".into(),
                        data: "d".into(),
                        message: r#"{"event":"e","data":"d","channel":"cache-c"}"#.into(),
                        ttl_ms: 1000,
                    },
                )]
                .into_iter()
                .collect(),
            },
        );
        round_trip(Body::State { apps, reply: true });
        round_trip(Body::Want { to: "n2".into() });
        round_trip(Body::Heartbeat);
        round_trip(Body::Terminate {
            app: "a".into(),
            user_id: "9".into(),
        });
        round_trip(Body::Restart);
        round_trip(Body::Bye);
    }

    #[test]
    fn the_wire_form_is_flat_json_without_secrets() {
        let e = Envelope::new(
            "abc",
            1,
            Body::Event {
                app: "app-id".into(),
                channels: vec!["news".into()],
                event: "e".into(),
                data: "d".into(),
                socket_id: None,
            },
        );
        assert_eq!(
            String::from_utf8(e.encode()).unwrap(),
            r#"{"v":1,"node":"abc","seq":1,"type":"event","app":"app-id","channels":["news"],"event":"e","data":"d"}"#
        );
    }

    #[test]
    fn foreign_and_malformed_messages_are_errors() {
        for bad in [&b"not json"[..], b"", b"{\"v\":1", b"\xff\xfe"] {
            assert!(matches!(
                Envelope::decode(bad),
                Err(DecodeError::NotJson(_))
            ));
        }
        for foreign in [
            &br#"{"type":"message","application":"O:26:...","payload":{}}"#[..],
            br#"{"v":2,"node":"x","seq":1,"type":"heartbeat"}"#,
            br#"{"v":1,"node":"x","seq":1,"type":"nope"}"#,
            br#"{"v":1,"node":"x","seq":1,"type":"event","app":"a"}"#,
            br#"{"v":1,"seq":1,"type":"heartbeat"}"#,
            br#"[1,2,3]"#,
            br#"{"v":"1"}"#,
        ] {
            assert!(
                matches!(Envelope::decode(foreign), Err(DecodeError::NotOurs(_))),
                "{}",
                String::from_utf8_lossy(foreign)
            );
        }
    }

    #[test]
    fn only_deliveries_survive_an_outage() {
        assert!(Body::Restart.durable());
        assert!(
            Body::Terminate {
                app: "a".into(),
                user_id: "u".into()
            }
            .durable()
        );
        assert!(!Body::Heartbeat.durable());
        assert!(
            !Body::State {
                apps: BTreeMap::new(),
                reply: false
            }
            .durable()
        );
    }
}

//! The HTTP API handler (`api::handle`) on a hub with connections: requests
//! with any method, path (the API's routes with fuzzed parts, or any path),
//! query, body, signed with the app's secret or not, between the core
//! operations of `hub_ops`.
//!
//! Checked: every response is a valid HTTP response whose 200 bodies are
//! JSON; what a request delivers passes the harness's checks.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::{APPS, Apps, Harness, Name, Op, UserId};
use libfuzzer_sys::fuzz_target;
use revurb::http::Request;
use revurb::pusher::Hub;
use serde_json::{Value, json};

#[derive(Debug, Arbitrary)]
enum Path {
    Events,
    BatchEvents,
    Channels,
    Channel(Name),
    ChannelUsers(Name),
    Terminate(UserId),
    Connections,
    /// Any app id.
    OtherApp(String, u8),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Body {
    Empty,
    Event {
        name: String,
        data: String,
        channels: Vec<Name>,
        socket_id: Option<String>,
        info: Option<String>,
    },
    Batch(Vec<(String, String, Name, Option<String>)>),
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct ApiRequest {
    post: bool,
    /// App 0 or 1 (their ids in the path, their key to sign), 2: a bad key.
    app: u8,
    path: Path,
    /// Extra query parameters (`info`, `filter_by_prefix`, anything).
    query: Vec<(String, String)>,
    body: Body,
    signed: bool,
    /// Seconds off the server's clock for `auth_timestamp`.
    skew: i16,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Op(Op),
    Api(ApiRequest),
}

const NOW_UNIX: i64 = 1_700_000_000;

/// Percent-encode everything but unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn request(r: &ApiRequest) -> (Request, String) {
    let (id, key, secret) = match r.app % 3 {
        2 => ("9", "bad-key", "bad-secret"),
        i => APPS[usize::from(i)],
    };
    let path = match &r.path {
        Path::Events => format!("/apps/{id}/events"),
        Path::BatchEvents => format!("/apps/{id}/batch_events"),
        Path::Channels => format!("/apps/{id}/channels"),
        Path::Channel(n) => format!("/apps/{id}/channels/{}", enc(&n.text())),
        Path::ChannelUsers(n) => format!("/apps/{id}/channels/{}/users", enc(&n.text())),
        Path::Terminate(u) => format!(
            "/apps/{id}/users/{}/terminate_connections",
            enc(&u.key_text())
        ),
        Path::Connections => format!("/apps/{id}/connections"),
        Path::OtherApp(other, n) => match n % 3 {
            0 => format!("/apps/{other}/channels"),
            1 => format!("/apps/{other}/events"),
            _ => format!("/apps/{other}"),
        },
        Path::Raw(p) => p.clone(),
    };
    let body = match &r.body {
        Body::Empty => Vec::new(),
        Body::Event {
            name,
            data,
            channels,
            socket_id,
            info,
        } => {
            let mut v = json!({
                "name": name,
                "data": data,
                "channels": channels.iter().take(120).map(Name::text).collect::<Vec<_>>(),
            });
            if let Some(s) = socket_id {
                v["socket_id"] = Value::from(s.as_str());
            }
            if let Some(i) = info {
                v["info"] = Value::from(i.as_str());
            }
            v.to_string().into_bytes()
        }
        Body::Batch(items) => {
            let batch: Vec<Value> = items
                .iter()
                .take(20)
                .map(|(name, data, channel, sid)| {
                    let mut v = json!({ "name": name, "data": data, "channel": channel.text() });
                    if let Some(s) = sid {
                        v["socket_id"] = Value::from(s.as_str());
                    }
                    v
                })
                .collect();
            json!({ "batch": batch }).to_string().into_bytes()
        }
        Body::Raw(b) => b.clone(),
    };
    let method = if r.post { "POST" } else { "GET" };
    let extra: Vec<(&str, &str)> = r
        .query
        .iter()
        .take(8)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = if r.signed {
        revurb::auth::sign_api_request(
            method,
            &path,
            &extra,
            &body,
            key,
            secret,
            NOW_UNIX + i64::from(r.skew),
        )
    } else {
        extra
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    (
        Request {
            method: method.to_string(),
            path: path.clone(),
            query,
            version_minor: 1,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        },
        path,
    )
}

fuzz_target!(|input: (Apps, Vec<Step>)| {
    let (apps, steps) = input;
    let mut h = Harness::new(Hub::new(apps.list(), 0xa91, false));
    for step in steps.iter().take(128) {
        match step {
            Step::Op(op) => h.apply(op),
            Step::Api(r) => {
                let (req, path) = request(r);
                let (_, resp) = revurb::api::handle(&req, &path, &mut h.hub, h.now, NOW_UNIX);
                h.drain();
                let bytes = resp.to_bytes(false);
                // the answer is one well-formed HTTP response
                assert!(
                    bytes.starts_with(b"HTTP/1.1 "),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
                let text = String::from_utf8_lossy(&bytes);
                let status: u16 = text[9..12].parse().expect("a status");
                assert!((200..600).contains(&status));
                let body_at = text.find("\r\n\r\n").expect("end of head") + 4;
                if status == 200 {
                    let body = &bytes[body_at..];
                    serde_json::from_slice::<Value>(body).unwrap_or_else(|e| {
                        panic!(
                            "200 with a body that is not JSON ({e}): {}",
                            String::from_utf8_lossy(body)
                        )
                    });
                }
            }
        }
    }
    h.close_all();
    h.check_empty(false);
});

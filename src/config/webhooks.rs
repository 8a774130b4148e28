//! An app's webhooks, as configured: the `webhooks` list of an app object
//! (soketi's field names, so its users can paste theirs), the same list as
//! JSON text in `REVERB_APP_WEBHOOKS`, or the shorthand pair
//! `REVERB_APP_WEBHOOK_URL` + `REVERB_APP_WEBHOOK_EVENTS` for one webhook.
//!
//! ```json
//! "webhooks": [{ "url": "https://example.com/pusher?token=x",
//!                "event_types": ["channel_occupied", "member_added"],
//!                "filter": { "channel_name_starts_with": "presence-",
//!                            "channel_name_ends_with": "-room" },
//!                "headers": { "Authorization": "Bearer x" },
//!                "batching": false }]
//! ```
//!
//! Everything is checked here, once, at start and on every reload, so the
//! hub and the dispatcher can trust a [`Webhook`]: a URL the client can
//! reach, known event types, a filter of two strings, headers that cannot
//! break the request (no CR or LF, a valid name, none of the headers the
//! client writes itself), and at most [`MAX_WEBHOOKS`] webhooks of at most
//! [`MAX_HEADERS`] headers each. A refusal names the field down to the list
//! index ([`Bad::path`], joined to the option's [`Source`] by
//! [`Bad::at`]): `config file app.json:
//! apps.apps[0].webhooks[1].event_types[2]: unknown event type "x"
//! (expected one of channel_occupied, ...)`.
//!
//! `revurb config` shows a webhook with [`describe`]: the URL with its query
//! values masked, header names with their values masked.
//!
//! This module reads no source (`apps.rs` hands it the value and where it
//! came from) and knows nothing of delivery (`crate::webhook`).

use serde_json::{Map, Value};

use super::sources::{ConfigError, Source};
use crate::webhook::{Filter, Kind, Kinds, Url, Webhook};

/// Webhooks per app, at most.
pub const MAX_WEBHOOKS: usize = 10;
/// Extra headers per webhook, at most.
pub const MAX_HEADERS: usize = 32;
/// Bytes of one header value, at most.
pub const MAX_HEADER_VALUE: usize = 4096;
/// Bytes of a webhook URL, at most.
pub const MAX_URL: usize = 2048;

/// The event types of a webhook that does not list them: every channel and
/// member event (the table's default for `REVERB_APP_WEBHOOK_EVENTS`, and
/// for an absent `event_types`).
pub const DEFAULT_EVENTS: &str = "channel_occupied,channel_vacated,member_added,member_removed";

/// Headers the client writes itself, refused in `headers` (any case).
pub const RESERVED_HEADERS: &[&str] = &[
    "Host",
    "Content-Length",
    "Content-Type",
    "Transfer-Encoding",
    "Connection",
    "X-Pusher-Key",
    "X-Pusher-Signature",
];

/// The keys of one webhook object.
const KEYS: &[&str] = &["url", "event_types", "filter", "headers", "batching"];
/// The keys of `filter`.
const FILTER_KEYS: &[&str] = &["channel_name_starts_with", "channel_name_ends_with"];

/// A refused value: where inside the option's value (`[1].event_types[2]`,
/// empty for the value itself) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    pub path: String,
    pub why: String,
}

impl Bad {
    fn new(path: impl Into<String>, why: impl Into<String>) -> Bad {
        Bad {
            path: path.into(),
            why: why.into(),
        }
    }

    /// The error for a value from `source`: a file's key grows by the path
    /// (`apps.apps[0].webhooks[1].url`); a variable's message starts with it
    /// (`REVERB_APP_WEBHOOKS (environment): [1].url: ...`).
    pub fn at(self, source: Source) -> ConfigError {
        match source {
            Source::File { path, key } => ConfigError::Invalid {
                source: Source::File {
                    path,
                    key: format!("{key}{}", self.path),
                },
                why: self.why,
            },
            source if self.path.is_empty() => ConfigError::Invalid {
                source,
                why: self.why,
            },
            source => ConfigError::Invalid {
                source,
                why: format!("{}: {}", self.path, self.why),
            },
        }
    }
}

/// The path of key `k` inside the object at `at`: `[1].headers.X-Team`, or
/// `[1].headers["X A"]` (quoted and escaped) when `k` is not a plain name, so
/// that no control character from the file reaches a message.
fn key_path(at: &str, k: &str) -> String {
    if is_token(k) {
        format!("{at}.{k}")
    } else {
        format!("{at}[{k:?}]")
    }
}

/// Every event type, for messages: `channel_occupied, channel_vacated, ...`.
fn expected_kinds() -> String {
    Kind::ALL.map(Kind::name).join(", ")
}

/// One event type by name.
fn kind(name: &str) -> Result<Kind, String> {
    Kind::parse(name).ok_or_else(|| {
        format!(
            "unknown event type {name:?} (expected one of {})",
            expected_kinds()
        )
    })
}

/// The default event types as a set.
pub fn default_kinds() -> Kinds {
    DEFAULT_EVENTS.split(',').filter_map(Kind::parse).collect()
}

/// The `webhooks` list of an app (from the file, or `REVERB_APP_WEBHOOKS`).
pub fn parse_list(v: &Value) -> Result<Vec<Webhook>, Bad> {
    let Value::Array(list) = v else {
        return Err(Bad::new(
            "",
            format!("expected a list of webhook objects, got {v}"),
        ));
    };
    if list.len() > MAX_WEBHOOKS {
        return Err(Bad::new(
            "",
            format!(
                "{} webhooks; an app may have at most {MAX_WEBHOOKS}",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, w)| parse_one(w, &format!("[{i}]")))
        .collect()
}

/// Why a key of a webhook object is refused.
fn unknown_key(k: &str) -> String {
    match k {
        "filters" => "unknown key (the channel filter's key is filter)".into(),
        "lambda_function" | "lambda" | "region" => {
            "AWS Lambda webhooks are not supported; give a url".into()
        }
        _ => format!("unknown key (expected {})", KEYS.join(", ")),
    }
}

/// One webhook object; `at` is its path (`[1]`).
fn parse_one(v: &Value, at: &str) -> Result<Webhook, Bad> {
    let Value::Object(obj) = v else {
        return Err(Bad::new(at, format!("expected a webhook object, got {v}")));
    };
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(Bad::new(key_path(at, k), unknown_key(k)));
    }
    // JSON null is "not set", as everywhere in the file.
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let url = match field("url") {
        None => return Err(Bad::new(format!("{at}.url"), "is required")),
        Some(Value::String(s)) => url(s).map_err(|why| Bad::new(format!("{at}.url"), why))?,
        Some(v) => {
            return Err(Bad::new(
                format!("{at}.url"),
                format!("expected a string, got {v}"),
            ));
        }
    };
    let event_types = match field("event_types") {
        None => default_kinds(),
        Some(v) => event_types(v, &format!("{at}.event_types"))?,
    };
    let filter = match field("filter") {
        None => Filter::default(),
        Some(v) => filter(v, &format!("{at}.filter"))?,
    };
    let headers = match field("headers") {
        None => Vec::new(),
        Some(v) => headers(v, &format!("{at}.headers"))?,
    };
    let batching = match field("batching") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(Bad::new(
                format!("{at}.batching"),
                format!("expected true or false, got {v}"),
            ));
        }
    };
    Ok(Webhook {
        url,
        event_types,
        filter,
        headers,
        batching,
    })
}

/// A webhook URL: `http://` or `https://`, bounded in length.
fn url(s: &str) -> Result<Url, String> {
    if s.len() > MAX_URL {
        return Err(format!(
            "is {} bytes long; a webhook URL may have at most {MAX_URL}",
            s.len()
        ));
    }
    Url::parse(s)
}

fn event_types(v: &Value, at: &str) -> Result<Kinds, Bad> {
    let Value::Array(list) = v else {
        return Err(Bad::new(
            at,
            format!("expected a list of event types, got {v}"),
        ));
    };
    if list.is_empty() {
        return Err(Bad::new(
            at,
            format!(
                "is empty: give at least one of {} (or leave it out for {DEFAULT_EVENTS})",
                expected_kinds()
            ),
        ));
    }
    let mut kinds = Kinds::empty();
    for (i, item) in list.iter().enumerate() {
        let path = format!("{at}[{i}]");
        let Value::String(name) = item else {
            return Err(Bad::new(
                path,
                format!("expected an event type as a string, got {item}"),
            ));
        };
        kinds.insert(kind(name).map_err(|why| Bad::new(path, why))?);
    }
    Ok(kinds)
}

fn filter(v: &Value, at: &str) -> Result<Filter, Bad> {
    let Value::Object(obj) = v else {
        return Err(Bad::new(
            at,
            format!(
                "expected an object with {}, got {v}",
                FILTER_KEYS.join(" and/or ")
            ),
        ));
    };
    let mut f = Filter::default();
    for (k, v) in obj {
        let path = key_path(at, k);
        let slot = match k.as_str() {
            "channel_name_starts_with" => &mut f.starts_with,
            "channel_name_ends_with" => &mut f.ends_with,
            _ => {
                return Err(Bad::new(
                    path,
                    format!("unknown key (expected {})", FILTER_KEYS.join(" or ")),
                ));
            }
        };
        *slot = match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            v => return Err(Bad::new(path, format!("expected a string, got {v}"))),
        };
    }
    Ok(f)
}

/// An HTTP header name: a token (RFC 9110 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn headers(v: &Value, at: &str) -> Result<Vec<(String, String)>, Bad> {
    let Value::Object(obj) = v else {
        return Err(Bad::new(
            at,
            format!("expected an object of header names and string values, got {v}"),
        ));
    };
    check_headers(obj, at)?;
    Ok(obj
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect())
}

fn check_headers(obj: &Map<String, Value>, at: &str) -> Result<(), Bad> {
    if obj.len() > MAX_HEADERS {
        return Err(Bad::new(
            at,
            format!(
                "{} headers; a webhook may have at most {MAX_HEADERS}",
                obj.len()
            ),
        ));
    }
    let mut seen: Vec<String> = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        let path = key_path(at, name);
        if !is_token(name) {
            return Err(Bad::new(
                path,
                "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)",
            ));
        }
        if let Some(r) = RESERVED_HEADERS
            .iter()
            .find(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(Bad::new(
                path,
                format!("{r} is written by revurb and cannot be set"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(Bad::new(path, "is given twice (header names ignore case)"));
        }
        seen.push(lower);
        let Value::String(value) = value else {
            return Err(Bad::new(path, format!("expected a string, got {value}")));
        };
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Bad::new(
                path,
                "holds a control character (CR, LF, NUL, ...); header values cannot",
            ));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(Bad::new(
                path,
                format!(
                    "is {} bytes long; a header value may have at most {MAX_HEADER_VALUE}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The one webhook of `REVERB_APP_WEBHOOK_URL` and `REVERB_APP_WEBHOOK_EVENTS`
/// (comma-separated names, already split): no filter, no extra headers, no
/// batching. A refusal says which of the two variables it is about.
pub fn from_pair(url_text: &str, events: &[String]) -> Result<Webhook, (PairField, String)> {
    let url = url(url_text).map_err(|why| (PairField::Url, why))?;
    if events.is_empty() {
        return Err((
            PairField::Events,
            format!(
                "is empty: give at least one of {} (or leave it unset for {DEFAULT_EVENTS})",
                expected_kinds()
            ),
        ));
    }
    let event_types = events
        .iter()
        .map(|e| kind(e))
        .collect::<Result<Kinds, String>>()
        .map_err(|why| (PairField::Events, why))?;
    Ok(Webhook {
        url,
        event_types,
        filter: Filter::default(),
        headers: Vec::new(),
        batching: false,
    })
}

/// Which variable of the shorthand pair a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairField {
    Url,
    Events,
}

/// One webhook as `revurb config` shows it, in the file's shape: query
/// values and header values masked.
pub fn describe(w: &Webhook) -> String {
    let mut m = Map::new();
    m.insert("url".into(), w.url.redacted().into());
    m.insert(
        "event_types".into(),
        w.event_types
            .iter()
            .map(Kind::name)
            .collect::<Vec<_>>()
            .into(),
    );
    let mut f = Map::new();
    if let Some(s) = &w.filter.starts_with {
        f.insert("channel_name_starts_with".into(), s.as_str().into());
    }
    if let Some(s) = &w.filter.ends_with {
        f.insert("channel_name_ends_with".into(), s.as_str().into());
    }
    if !f.is_empty() {
        m.insert("filter".into(), Value::Object(f));
    }
    if !w.headers.is_empty() {
        let h: Map<String, Value> = w
            .headers
            .iter()
            .map(|(k, _)| (k.clone(), "****".into()))
            .collect();
        m.insert("headers".into(), Value::Object(h));
    }
    m.insert("batching".into(), w.batching.into());
    Value::Object(m).to_string()
}

//! The option tables: every server option ([`OPTIONS`], named by [`Key`]) and
//! every per-app option ([`APP_OPTIONS`], named by [`AppKey`]) defined once,
//! with its JSON key, environment variable, flag, kind, default and help.
//! Parsing from every source, `--help`, `revurb config` and the docs test all
//! read these tables; code names an option by its enum variant, so a typo is
//! a compile error rather than a silent `None`.
//!
//! This module only describes options and checks single values against their
//! kind ([`Kind::parse_text`], [`Kind::parse_json`]). It reads no source and
//! knows no precedence (see `sources.rs`), and it does not check options
//! against each other (see `mod.rs` and `apps.rs`).

use std::net::IpAddr;

use serde_json::Value;

/// The kind of value an option takes; it decides how text and JSON parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// Unsigned integer in `min..=max`.
    Int(u64, u64),
    Bool,
    /// An IP address, v4 or v6 (brackets around a v6 address are accepted).
    Ip,
    /// A list: comma-separated in text, a JSON array (or one string) in a file.
    List,
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A structured value: JSON text in a variable, any JSON in a file. Its
    /// shape is checked by the code that reads the option (`webhooks.rs`).
    Json,
}

/// How `revurb config` shows a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    Shown,
    /// Never shown: `"****"`.
    Secret,
    /// A Redis URL: shown with its password masked.
    Url,
}

/// A command-line flag: its name and the name of its value (`""` for a
/// switch that takes none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub value: &'static str,
}

/// One option. `K` is [`Key`] for server options, [`AppKey`] for app options.
#[derive(Debug)]
pub struct Opt<K: 'static> {
    pub key: K,
    /// Dotted JSON key: from the file's root for server options, inside one
    /// `apps.apps[]` object for app options.
    pub json: &'static str,
    /// Environment variable, also read from `.env`.
    pub env: &'static str,
    pub flag: Option<Flag>,
    pub kind: Kind,
    /// The built-in default as text (parsed like an environment value);
    /// `None` when the option is unset by default.
    pub default: Option<&'static str>,
    pub mask: Mask,
    pub help: &'static str,
}

impl<K> Opt<K> {
    /// Whether the JSON file can set this option under its key. A key with
    /// `[]` (`webhooks[].url`) names a field of each element of a list
    /// option: its variable is a shorthand for one element, and the file
    /// gives the whole list under the list's own key instead.
    pub fn in_file(&self) -> bool {
        !self.json.contains("[]")
    }

    /// The default as the docs and `--help` show it: `none` when unset or empty.
    pub fn default_text(&self) -> &'static str {
        match self.default {
            None | Some("") => "none",
            Some(d) => d,
        }
    }
}

/// A checked value of some [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Str(String),
    Int(u64),
    Bool(bool),
    Ip(IpAddr),
    List(Vec<String>),
    Json(Value),
}

impl Val {
    /// As `revurb config` shows it: strings quoted, numbers and booleans bare.
    pub fn display(&self) -> String {
        match self {
            Val::Str(s) => format!("{s:?}"),
            Val::Int(n) => n.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Ip(ip) => format!("\"{ip}\""),
            Val::List(l) => format!("{l:?}"),
            Val::Json(v) => v.to_string(),
        }
    }
}

impl Kind {
    /// Parse a value given as text (flag, environment, `.env`, default).
    pub fn parse_text(self, v: &str) -> Result<Val, String> {
        match self {
            Kind::Str => Ok(Val::Str(v.to_string())),
            Kind::Int(min, max) => number(v, min, max).map(Val::Int),
            Kind::Bool => boolean(v).map(Val::Bool),
            Kind::Ip => ip(v).map(Val::Ip),
            Kind::List => Ok(Val::List(
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            )),
            Kind::OneOf(words) => one_of(v, words).map(Val::Str),
            Kind::Json => serde_json::from_str(v)
                .map(Val::Json)
                .map_err(|e| format!("is not valid JSON: {e}")),
        }
    }

    /// Parse a value given in a JSON file.
    pub fn parse_json(self, v: &Value) -> Result<Val, String> {
        match (self, v) {
            (Kind::Str, Value::String(s)) => Ok(Val::Str(s.clone())),
            (Kind::Str, v) => Err(format!("expected a string, got {v}")),
            (Kind::Int(min, max), Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(Val::Int(v)),
                _ => Err(format!("{n} is out of range ({min} to {max})")),
            },
            (Kind::Int(..), v) => Err(format!("expected a whole number, got {v}")),
            (Kind::Bool, Value::Bool(b)) => Ok(Val::Bool(*b)),
            (Kind::Bool, v) => Err(format!("expected true or false, got {v}")),
            (Kind::Ip, Value::String(s)) => ip(s).map(Val::Ip),
            (Kind::Ip, v) => Err(format!("expected an IP address as a string, got {v}")),
            (Kind::List, Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or("must hold strings"))
                .collect::<Result<_, _>>()
                .map(Val::List)
                .map_err(str::to_string),
            (Kind::List, Value::String(s)) => Ok(Val::List(vec![s.clone()])),
            (Kind::List, v) => Err(format!("expected a list of hosts, got {v}")),
            (Kind::OneOf(words), Value::String(s)) => one_of(s, words).map(Val::Str),
            (Kind::OneOf(_), v) => Err(format!("expected a string, got {v}")),
            (Kind::Json, v) => Ok(Val::Json(v.clone())),
        }
    }
}

/// Laravel's `env()` casts: `null`, `(null)` and the empty string are "not set".
pub fn is_null(v: &str) -> bool {
    matches!(v, "" | "null" | "(null)")
}

/// An unsigned integer within `min..=max`.
fn number(v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("{v} is out of range ({min} to {max})")),
        Err(_) => Err(format!("{v:?} is not a whole number")),
    }
}

/// Laravel's boolean casts: true/false, (true)/(false), 1/0, yes/no, on/off.
fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "(true)" | "1" | "yes" | "on" => Ok(true),
        "false" | "(false)" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// `0.0.0.0`, `::`, `[::1]`: the listeners bind IP addresses, not names.
fn ip(v: &str) -> Result<IpAddr, String> {
    let t = v.trim();
    let bare = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    bare.parse::<IpAddr>()
        .map_err(|_| format!("{v:?} is not an IP address (for example 0.0.0.0, 127.0.0.1 or ::)"))
}

fn one_of(v: &str, words: &[&str]) -> Result<String, String> {
    let t = v.trim();
    if words.contains(&t) {
        Ok(t.to_string())
    } else {
        Err(format!("{v:?} is not one of {}", words.join(", ")))
    }
}

/// The server options, in the order of [`OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    Host,
    Port,
    Path,
    Hostname,
    MaxRequestSize,
    WriteQueueLimit,
    RequestTimeout,
    DrainWindow,
    PidFile,
    MetricsHost,
    MetricsPort,
    TlsCert,
    TlsKey,
    TlsPassphrase,
    ScalingEnabled,
    ScalingChannel,
    ScalingNodeTimeout,
    ScalingQueueLimit,
    ScalingSecret,
    RedisUrl,
    RedisScheme,
    RedisHost,
    RedisPort,
    RedisUsername,
    RedisPassword,
    RedisDb,
    RedisTimeout,
    Debug,
}

impl Key {
    /// This option's definition.
    pub fn opt(self) -> &'static Opt<Key> {
        &OPTIONS[self as usize]
    }
}

/// The per-app options, in the order of [`APP_OPTIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppKey {
    AppId,
    Key,
    Secret,
    PingInterval,
    ActivityTimeout,
    MaxConnections,
    MaxMessageSize,
    AllowedOrigins,
    AcceptClientEventsFrom,
    RateLimitingEnabled,
    RateLimitMaxAttempts,
    RateLimitDecaySeconds,
    RateLimitTerminate,
    MaxPresenceMembers,
    MaxUserInfoSize,
    Webhooks,
    WebhookUrl,
    WebhookEvents,
    WebhookDelay,
    EnableUserAuthentication,
    UserAuthenticationTimeout,
    EnableSubscriptionCount,
}

impl AppKey {
    /// This option's definition.
    pub fn opt(self) -> &'static Opt<AppKey> {
        &APP_OPTIONS[self as usize]
    }
}

const fn flag(name: &'static str, value: &'static str) -> Option<Flag> {
    Some(Flag { name, value })
}

/// Every server option, indexed by [`Key`].
pub const OPTIONS: &[Opt<Key>] = &[
    Opt {
        key: Key::Host,
        json: "servers.reverb.host",
        env: "REVERB_SERVER_HOST",
        flag: flag("--host", "HOST"),
        kind: Kind::Ip,
        default: Some("0.0.0.0"),
        mask: Mask::Shown,
        help: "IP address to listen on",
    },
    Opt {
        key: Key::Port,
        json: "servers.reverb.port",
        env: "REVERB_SERVER_PORT",
        flag: flag("--port", "PORT"),
        kind: Kind::Int(0, 65_535),
        default: Some("8080"),
        mask: Mask::Shown,
        help: "port to listen on; 0 picks a free port",
    },
    Opt {
        key: Key::Path,
        json: "servers.reverb.path",
        env: "REVERB_SERVER_PATH",
        flag: flag("--path", "PATH"),
        kind: Kind::Str,
        default: Some(""),
        mask: Mask::Shown,
        help: "prefix for every route, e.g. /ws",
    },
    Opt {
        key: Key::Hostname,
        json: "servers.reverb.hostname",
        env: "REVERB_HOST",
        flag: flag("--hostname", "HOST"),
        kind: Kind::Str,
        default: None,
        mask: Mask::Shown,
        help: "public host name, shown in the start line",
    },
    Opt {
        key: Key::MaxRequestSize,
        json: "servers.reverb.max_request_size",
        env: "REVERB_MAX_REQUEST_SIZE",
        flag: None,
        kind: Kind::Int(256, 1 << 30),
        default: Some("10000"),
        mask: Mask::Shown,
        help: "largest HTTP request (head and body) in bytes; larger gets 413",
    },
    Opt {
        key: Key::WriteQueueLimit,
        json: "servers.reverb.write_queue_limit",
        env: "REVERB_WRITE_QUEUE_LIMIT",
        flag: None,
        kind: Kind::Int(1024, 1 << 32),
        default: Some("524288"),
        mask: Mask::Shown,
        help: "bytes queued for a client that does not read before it is dropped with 4100",
    },
    Opt {
        key: Key::RequestTimeout,
        json: "servers.reverb.request_timeout",
        env: "REVERB_REQUEST_TIMEOUT",
        flag: None,
        kind: Kind::Int(1, 3600),
        default: Some("10"),
        mask: Mask::Shown,
        help: "seconds an HTTP request or idle keep-alive connection may take",
    },
    Opt {
        key: Key::DrainWindow,
        json: "servers.reverb.drain_window",
        env: "REVERB_DRAIN_WINDOW",
        flag: flag("--drain-window", "SECONDS"),
        kind: Kind::Int(0, 600),
        default: Some("5"),
        mask: Mask::Shown,
        help: "seconds over which SIGTERM and `revurb restart` spread closing the WebSockets (4200); 0 closes all at once",
    },
    Opt {
        key: Key::PidFile,
        json: "servers.reverb.pid_file",
        env: "REVERB_PID_FILE",
        flag: flag("--pid-file", "FILE"),
        kind: Kind::Str,
        default: None,
        mask: Mask::Shown,
        help: "file the server writes its pid to, and `revurb restart` reads",
    },
    Opt {
        key: Key::MetricsHost,
        json: "servers.reverb.metrics.host",
        env: "REVERB_METRICS_HOST",
        flag: flag("--metrics-host", "HOST"),
        kind: Kind::Ip,
        default: Some("127.0.0.1"),
        mask: Mask::Shown,
        help: "IP address of the Prometheus metrics listener",
    },
    Opt {
        key: Key::MetricsPort,
        json: "servers.reverb.metrics.port",
        env: "REVERB_METRICS_PORT",
        flag: flag("--metrics-port", "PORT"),
        kind: Kind::Int(0, 65_535),
        default: Some("9601"),
        mask: Mask::Shown,
        help: "port of the metrics listener; 0 turns it off",
    },
    Opt {
        key: Key::TlsCert,
        json: "servers.reverb.options.tls.cert",
        env: "REVERB_TLS_CERT",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Shown,
        help: "PEM certificate chain; with tls.key, the server speaks TLS (wss://, https://)",
    },
    Opt {
        key: Key::TlsKey,
        json: "servers.reverb.options.tls.key",
        env: "REVERB_TLS_KEY",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Shown,
        help: "PEM private key (PKCS#8, PKCS#1, SEC1, or encrypted PKCS#8)",
    },
    Opt {
        key: Key::TlsPassphrase,
        json: "servers.reverb.options.tls.passphrase",
        env: "REVERB_TLS_PASSPHRASE",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Secret,
        help: "passphrase of an encrypted PKCS#8 key",
    },
    Opt {
        key: Key::ScalingEnabled,
        json: "servers.reverb.scaling.enabled",
        env: "REVERB_SCALING_ENABLED",
        flag: None,
        kind: Kind::Bool,
        default: Some("false"),
        mask: Mask::Shown,
        help: "share events, presence and counts with other nodes through Redis pub/sub",
    },
    Opt {
        key: Key::ScalingChannel,
        json: "servers.reverb.scaling.channel",
        env: "REVERB_SCALING_CHANNEL",
        flag: None,
        kind: Kind::Str,
        default: Some("reverb"),
        mask: Mask::Shown,
        help: "the Redis pub/sub channel the nodes of one cluster share",
    },
    Opt {
        key: Key::ScalingNodeTimeout,
        json: "servers.reverb.scaling.node_timeout",
        env: "REVERB_SCALING_NODE_TIMEOUT",
        flag: None,
        kind: Kind::Int(2, 300),
        default: Some("5"),
        mask: Mask::Shown,
        help: "seconds without a heartbeat after which a node counts as dead and its members leave",
    },
    Opt {
        key: Key::ScalingQueueLimit,
        json: "servers.reverb.scaling.queue_limit",
        env: "REVERB_SCALING_QUEUE_LIMIT",
        flag: None,
        kind: Kind::Int(0, 10_000_000),
        default: Some("10000"),
        mask: Mask::Shown,
        help: "publishes held while Redis is unreachable; more are dropped, counted and logged",
    },
    Opt {
        key: Key::ScalingSecret,
        json: "servers.reverb.scaling.secret",
        env: "REVERB_SCALING_SECRET",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Secret,
        help: "the key that signs messages between nodes; unset: derived from every app's id and secret",
    },
    Opt {
        key: Key::RedisUrl,
        json: "servers.reverb.scaling.server.url",
        env: "REDIS_URL",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Url,
        help: "redis://[user[:password]@]host[:port][/db] or rediss:// (TLS); wins over the fields below",
    },
    Opt {
        key: Key::RedisScheme,
        json: "servers.reverb.scaling.server.scheme",
        env: "REDIS_SCHEME",
        flag: None,
        kind: Kind::Str,
        default: Some("tcp"),
        mask: Mask::Shown,
        help: "tcp, or tls to reach Redis over TLS",
    },
    Opt {
        key: Key::RedisHost,
        json: "servers.reverb.scaling.server.host",
        env: "REDIS_HOST",
        flag: None,
        kind: Kind::Str,
        default: Some("127.0.0.1"),
        mask: Mask::Shown,
        help: "Redis host name or address",
    },
    Opt {
        key: Key::RedisPort,
        json: "servers.reverb.scaling.server.port",
        env: "REDIS_PORT",
        flag: None,
        kind: Kind::Int(1, 65_535),
        default: Some("6379"),
        mask: Mask::Shown,
        help: "Redis port",
    },
    Opt {
        key: Key::RedisUsername,
        json: "servers.reverb.scaling.server.username",
        env: "REDIS_USERNAME",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Shown,
        help: "Redis ACL user name (AUTH user password)",
    },
    Opt {
        key: Key::RedisPassword,
        json: "servers.reverb.scaling.server.password",
        env: "REDIS_PASSWORD",
        flag: None,
        kind: Kind::Str,
        default: None,
        mask: Mask::Secret,
        help: "Redis password (AUTH)",
    },
    Opt {
        key: Key::RedisDb,
        json: "servers.reverb.scaling.server.database",
        env: "REDIS_DB",
        flag: None,
        kind: Kind::Int(0, 1_000_000),
        default: Some("0"),
        mask: Mask::Shown,
        help: "Redis database number (SELECT)",
    },
    Opt {
        key: Key::RedisTimeout,
        json: "servers.reverb.scaling.server.timeout",
        env: "REDIS_TIMEOUT",
        flag: None,
        kind: Kind::Int(0, 1_000_000),
        default: None,
        mask: Mask::Shown,
        help: "accepted for Reverb compatibility and not used: revurb retries Redis for as long as it is away",
    },
    Opt {
        key: Key::Debug,
        json: "servers.reverb.debug",
        env: "REVERB_DEBUG",
        flag: flag("--debug", ""),
        kind: Kind::Bool,
        default: Some("false"),
        mask: Mask::Shown,
        help: "log every message to stderr",
    },
];

/// The words `accept_client_events_from` takes.
pub const CLIENT_EVENTS: &[&str] = &["all", "members", "none"];

/// Every per-app option, indexed by [`AppKey`]. The JSON key is inside one
/// `apps.apps[]` object; the environment variables describe one app.
pub const APP_OPTIONS: &[Opt<AppKey>] = &[
    app(
        AppKey::AppId,
        "app_id",
        "REVERB_APP_ID",
        Kind::Str,
        None,
        "the app's id, used in API paths (required)",
    ),
    app(
        AppKey::Key,
        "key",
        "REVERB_APP_KEY",
        Kind::Str,
        None,
        "the app's public key, used by clients (required)",
    ),
    Opt {
        mask: Mask::Secret,
        ..app(
            AppKey::Secret,
            "secret",
            "REVERB_APP_SECRET",
            Kind::Str,
            None,
            "the app's secret, which signs channel, user and API requests (required)",
        )
    },
    app(
        AppKey::PingInterval,
        "ping_interval",
        "REVERB_APP_PING_INTERVAL",
        Kind::Int(1, 86_400),
        Some("60"),
        "seconds of silence before a ping, and again before a prune",
    ),
    app(
        AppKey::ActivityTimeout,
        "activity_timeout",
        "REVERB_APP_ACTIVITY_TIMEOUT",
        Kind::Int(1, 86_400),
        Some("30"),
        "activity_timeout advertised to clients",
    ),
    app(
        AppKey::MaxConnections,
        "max_connections",
        "REVERB_APP_MAX_CONNECTIONS",
        Kind::Int(0, u64::MAX),
        None,
        "open connections allowed for the app; none is unlimited",
    ),
    app(
        AppKey::MaxMessageSize,
        "max_message_size",
        "REVERB_APP_MAX_MESSAGE_SIZE",
        Kind::Int(1, 1 << 30),
        Some("10000"),
        "largest WebSocket message in bytes",
    ),
    app(
        AppKey::AllowedOrigins,
        "allowed_origins",
        "REVERB_ALLOWED_ORIGINS",
        Kind::List,
        Some("*"),
        "origin hosts, * wildcards; env: comma-separated",
    ),
    app(
        AppKey::AcceptClientEventsFrom,
        "accept_client_events_from",
        "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
        Kind::OneOf(CLIENT_EVENTS),
        Some("members"),
        "all, members or none",
    ),
    app(
        AppKey::RateLimitingEnabled,
        "rate_limiting.enabled",
        "REVERB_APP_RATE_LIMITING_ENABLED",
        Kind::Bool,
        Some("false"),
        "limit messages per connection",
    ),
    app(
        AppKey::RateLimitMaxAttempts,
        "rate_limiting.max_attempts",
        "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS",
        Kind::Int(1, u32::MAX as u64),
        Some("60"),
        "messages per window",
    ),
    app(
        AppKey::RateLimitDecaySeconds,
        "rate_limiting.decay_seconds",
        "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
        Kind::Int(1, 86_400),
        Some("60"),
        "window length in seconds",
    ),
    app(
        AppKey::RateLimitTerminate,
        "rate_limiting.terminate_on_limit",
        "REVERB_APP_RATE_LIMIT_TERMINATE",
        Kind::Bool,
        Some("false"),
        "close the connection at the limit",
    ),
    app(
        AppKey::MaxPresenceMembers,
        "max_presence_members",
        "REVERB_APP_MAX_PRESENCE_MEMBERS",
        Kind::Int(1, 1_000_000),
        Some("100"),
        "unique users per presence channel",
    ),
    app(
        AppKey::MaxUserInfoSize,
        "max_user_info_size",
        "REVERB_APP_MAX_USER_INFO_SIZE",
        Kind::Int(2, 1 << 20),
        Some("2048"),
        "bytes of presence user_info JSON",
    ),
    app(
        AppKey::Webhooks,
        "webhooks",
        "REVERB_APP_WEBHOOKS",
        Kind::Json,
        None,
        "the app's webhooks: a list of {url, event_types, filter, headers, batching} (env: the same JSON)",
    ),
    app(
        AppKey::WebhookUrl,
        "webhooks[].url",
        "REVERB_APP_WEBHOOK_URL",
        Kind::Str,
        None,
        "env only: one webhook to this http:// or https:// URL (instead of REVERB_APP_WEBHOOKS)",
    ),
    app(
        AppKey::WebhookEvents,
        "webhooks[].event_types",
        "REVERB_APP_WEBHOOK_EVENTS",
        Kind::List,
        Some(super::webhooks::DEFAULT_EVENTS),
        "event types a webhook is sent for; env: comma-separated, for REVERB_APP_WEBHOOK_URL",
    ),
    app(
        AppKey::WebhookDelay,
        "webhook_delay",
        "REVERB_APP_WEBHOOK_DELAY",
        Kind::Int(0, 60),
        Some("3"),
        "seconds channel_vacated and member_removed wait (dropped if undone meanwhile)",
    ),
    app(
        AppKey::EnableUserAuthentication,
        "enable_user_authentication",
        "REVERB_APP_ENABLE_USER_AUTHENTICATION",
        Kind::Bool,
        Some("false"),
        "authorized connections: close with 4009 a connection that neither signs in nor joins a private or presence channel in time",
    ),
    app(
        AppKey::UserAuthenticationTimeout,
        "user_authentication_timeout",
        "REVERB_APP_USER_AUTHENTICATION_TIMEOUT",
        Kind::Int(1, 86_400),
        Some("30"),
        "seconds a connection has to authorize when enable_user_authentication is on",
    ),
    app(
        AppKey::EnableSubscriptionCount,
        "enable_subscription_count",
        "REVERB_APP_ENABLE_SUBSCRIPTION_COUNT",
        Kind::Bool,
        Some("false"),
        "tell subscribers of public and private channels their count (pusher:subscription_count)",
    ),
];

const fn app(
    key: AppKey,
    json: &'static str,
    env: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    help: &'static str,
) -> Opt<AppKey> {
    Opt {
        key,
        json,
        env,
        flag: None,
        kind,
        default,
        mask: Mask::Shown,
        help,
    }
}

/// The server option a flag sets, if any.
pub fn by_flag(name: &str) -> Option<&'static Opt<Key>> {
    OPTIONS
        .iter()
        .find(|o| o.flag.is_some_and(|f| f.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_indexed_by_their_keys() {
        for (i, o) in OPTIONS.iter().enumerate() {
            assert_eq!(o.key as usize, i, "{}", o.json);
        }
        for (i, o) in APP_OPTIONS.iter().enumerate() {
            assert_eq!(o.key as usize, i, "{}", o.json);
        }
    }

    #[test]
    fn every_default_parses_as_its_kind() {
        for o in OPTIONS {
            if let Some(d) = o.default {
                assert!(o.kind.parse_text(d).is_ok(), "{}: {d:?}", o.json);
            }
        }
        for o in APP_OPTIONS {
            if let Some(d) = o.default {
                assert!(o.kind.parse_text(d).is_ok(), "{}: {d:?}", o.json);
            }
        }
    }

    #[test]
    fn names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for name in OPTIONS
            .iter()
            .flat_map(|o| [o.json, o.env].into_iter().chain(o.flag.map(|f| f.name)))
            .chain(APP_OPTIONS.iter().flat_map(|o| [o.json, o.env]))
        {
            assert!(seen.insert(name), "{name} is defined twice");
        }
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(
            Kind::Ip.parse_text("[::1]"),
            Ok(Val::Ip("::1".parse().unwrap()))
        );
        assert!(Kind::Ip.parse_text("localhost").is_err());
        assert!(Kind::Ip.parse_json(&Value::from(1)).is_err());
    }
}

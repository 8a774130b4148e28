//! The effective configuration, one story. Each option has one name in the
//! JSON file and one environment variable (and some a CLI flag). Precedence,
//! highest first: CLI flags, `--config FILE`, environment variables, `.env`
//! in the working directory, `./revurb.json`, built-in defaults.
//!
//! Apps come whole from the highest source that defines any: the `--config`
//! file's `apps.apps[]`, else the environment (`REVERB_APP_*`, also from
//! `.env`), else `./revurb.json`.
//!
//! Errors name the field and where it came from. Unknown keys in a file, bad
//! types and bad values are errors (exit 2). Values follow Laravel's `env()`
//! casts: `null`, `(null)` and the empty string mean "not set".

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::Flags;
use crate::pusher::{App, ClientEvents, RateLimit};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Route prefix: `""` or `/something` (no trailing slash).
    pub path: String,
    pub hostname: Option<String>,
    /// Largest HTTP request (head and body) in bytes.
    pub max_request_size: usize,
    /// Bytes queued for one slow reader before it is dropped with 4100.
    pub write_queue_limit: usize,
    /// Seconds an HTTP request (or WebSocket handshake) may take to arrive.
    pub request_timeout: u64,
    pub debug: bool,
    pub pid_file: Option<PathBuf>,
    /// TLS certificate and key, from the options or a Herd/Valet lookup.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `host:port` of the metrics listener, `None` when off.
    pub metrics: Option<(String, u16)>,
    pub apps: Vec<App>,
    /// The config file the apps came from, re-read on reload.
    pub config_file: Option<PathBuf>,
    /// Redis pub/sub scaling, `None` when off.
    pub scaling: Option<Scaling>,
    /// Where each value came from, for `revurb config`.
    pub sources: Vec<(&'static str, String, Source)>,
    pub apps_source: Source,
}

/// Horizontal scaling settings (`servers.reverb.scaling.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    pub channel: String,
    pub redis: crate::redis::Target,
    /// Milliseconds without a heartbeat before a node counts as dead.
    pub node_timeout_ms: u64,
    /// Publishes held while Redis is away.
    pub queue_limit: usize,
}

/// A configuration error: what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    DotEnv,
    Env,
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::DotEnv => f.write_str(".env"),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// The kind of value an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// Unsigned integer in `min..=max`.
    Int(u64, u64),
    Bool,
}

/// One server option: its JSON path, environment variable, CLI flag, kind,
/// default and meaning. The README and the man page list exactly these.
pub struct Opt {
    pub json: &'static str,
    pub env: &'static str,
    pub flag: Option<&'static str>,
    pub kind: Kind,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

pub const OPTIONS: &[Opt] = &[
    Opt {
        json: "servers.reverb.host",
        env: "REVERB_SERVER_HOST",
        flag: Some("--host"),
        kind: Kind::Str,
        default: Some("0.0.0.0"),
        help: "address to listen on",
    },
    Opt {
        json: "servers.reverb.port",
        env: "REVERB_SERVER_PORT",
        flag: Some("--port"),
        kind: Kind::Int(0, 65_535),
        default: Some("8080"),
        help: "port to listen on; 0 picks a free port",
    },
    Opt {
        json: "servers.reverb.path",
        env: "REVERB_SERVER_PATH",
        flag: Some("--path"),
        kind: Kind::Str,
        default: Some(""),
        help: "prefix for every route, e.g. /ws",
    },
    Opt {
        json: "servers.reverb.hostname",
        env: "REVERB_HOST",
        flag: Some("--hostname"),
        kind: Kind::Str,
        default: None,
        help: "public host name, shown in the start line",
    },
    Opt {
        json: "servers.reverb.max_request_size",
        env: "REVERB_MAX_REQUEST_SIZE",
        flag: None,
        kind: Kind::Int(256, 1 << 30),
        default: Some("10000"),
        help: "largest HTTP request (head and body) in bytes; larger gets 413",
    },
    Opt {
        json: "servers.reverb.write_queue_limit",
        env: "REVERB_WRITE_QUEUE_LIMIT",
        flag: None,
        kind: Kind::Int(1024, 1 << 32),
        default: Some("524288"),
        help: "bytes queued for a client that does not read before it is dropped with 4100",
    },
    Opt {
        json: "servers.reverb.request_timeout",
        env: "REVERB_REQUEST_TIMEOUT",
        flag: None,
        kind: Kind::Int(1, 3600),
        default: Some("10"),
        help: "seconds an HTTP request or idle keep-alive connection may take",
    },
    Opt {
        json: "servers.reverb.pid_file",
        env: "REVERB_PID_FILE",
        flag: Some("--pid-file"),
        kind: Kind::Str,
        default: None,
        help: "file the server writes its pid to, and `revurb restart` reads",
    },
    Opt {
        json: "servers.reverb.metrics.host",
        env: "REVERB_METRICS_HOST",
        flag: Some("--metrics-host"),
        kind: Kind::Str,
        default: Some("127.0.0.1"),
        help: "address of the Prometheus metrics listener",
    },
    Opt {
        json: "servers.reverb.metrics.port",
        env: "REVERB_METRICS_PORT",
        flag: Some("--metrics-port"),
        kind: Kind::Int(0, 65_535),
        default: Some("9601"),
        help: "port of the metrics listener; 0 turns it off",
    },
    Opt {
        json: "servers.reverb.options.tls.cert",
        env: "REVERB_TLS_CERT",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "PEM certificate chain; with tls.key, the server speaks TLS (wss://, https://)",
    },
    Opt {
        json: "servers.reverb.options.tls.key",
        env: "REVERB_TLS_KEY",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "PEM private key (PKCS#8, PKCS#1, SEC1, or encrypted PKCS#8)",
    },
    Opt {
        json: "servers.reverb.options.tls.passphrase",
        env: "REVERB_TLS_PASSPHRASE",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "passphrase of an encrypted PKCS#8 key",
    },
    Opt {
        json: "servers.reverb.scaling.enabled",
        env: "REVERB_SCALING_ENABLED",
        flag: None,
        kind: Kind::Bool,
        default: Some("false"),
        help: "share events, presence and counts with other nodes through Redis pub/sub",
    },
    Opt {
        json: "servers.reverb.scaling.channel",
        env: "REVERB_SCALING_CHANNEL",
        flag: None,
        kind: Kind::Str,
        default: Some("reverb"),
        help: "the Redis pub/sub channel the nodes of one cluster share",
    },
    Opt {
        json: "servers.reverb.scaling.node_timeout",
        env: "REVERB_SCALING_NODE_TIMEOUT",
        flag: None,
        kind: Kind::Int(2, 300),
        default: Some("5"),
        help: "seconds without a heartbeat after which a node counts as dead and its members leave",
    },
    Opt {
        json: "servers.reverb.scaling.queue_limit",
        env: "REVERB_SCALING_QUEUE_LIMIT",
        flag: None,
        kind: Kind::Int(0, 10_000_000),
        default: Some("10000"),
        help: "publishes held while Redis is unreachable; more are dropped, counted and logged",
    },
    Opt {
        json: "servers.reverb.scaling.server.url",
        env: "REDIS_URL",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "redis://[user[:password]@]host[:port][/db] or rediss:// (TLS); wins over the fields below",
    },
    Opt {
        json: "servers.reverb.scaling.server.scheme",
        env: "REDIS_SCHEME",
        flag: None,
        kind: Kind::Str,
        default: Some("tcp"),
        help: "tcp, or tls to reach Redis over TLS",
    },
    Opt {
        json: "servers.reverb.scaling.server.host",
        env: "REDIS_HOST",
        flag: None,
        kind: Kind::Str,
        default: Some("127.0.0.1"),
        help: "Redis host name or address",
    },
    Opt {
        json: "servers.reverb.scaling.server.port",
        env: "REDIS_PORT",
        flag: None,
        kind: Kind::Int(1, 65_535),
        default: Some("6379"),
        help: "Redis port",
    },
    Opt {
        json: "servers.reverb.scaling.server.username",
        env: "REDIS_USERNAME",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "Redis ACL user name (AUTH user password)",
    },
    Opt {
        json: "servers.reverb.scaling.server.password",
        env: "REDIS_PASSWORD",
        flag: None,
        kind: Kind::Str,
        default: None,
        help: "Redis password (AUTH)",
    },
    Opt {
        json: "servers.reverb.scaling.server.database",
        env: "REDIS_DB",
        flag: None,
        kind: Kind::Int(0, 1_000_000),
        default: Some("0"),
        help: "Redis database number (SELECT)",
    },
    Opt {
        json: "servers.reverb.scaling.server.timeout",
        env: "REDIS_TIMEOUT",
        flag: None,
        kind: Kind::Int(0, 1_000_000),
        default: None,
        help: "accepted for Reverb compatibility and not used: revurb retries Redis for as long as it is away",
    },
    Opt {
        json: "servers.reverb.debug",
        env: "REVERB_DEBUG",
        flag: Some("--debug"),
        kind: Kind::Bool,
        default: Some("false"),
        help: "log every message to stderr",
    },
];

/// Per-app settings: (JSON key in `apps.apps[]`, environment variable, meaning).
pub const APP_OPTIONS: &[(&str, &str, &str)] = &[
    ("app_id", "REVERB_APP_ID", "the app's id (required)"),
    ("key", "REVERB_APP_KEY", "the app's key (required)"),
    ("secret", "REVERB_APP_SECRET", "the app's secret (required)"),
    (
        "ping_interval",
        "REVERB_APP_PING_INTERVAL",
        "seconds of silence before a ping, and again before a prune (60)",
    ),
    (
        "activity_timeout",
        "REVERB_APP_ACTIVITY_TIMEOUT",
        "activity_timeout advertised to clients (30)",
    ),
    (
        "max_connections",
        "REVERB_APP_MAX_CONNECTIONS",
        "open connections allowed for the app (unlimited)",
    ),
    (
        "max_message_size",
        "REVERB_APP_MAX_MESSAGE_SIZE",
        "largest WebSocket message in bytes (10000)",
    ),
    (
        "allowed_origins",
        "REVERB_ALLOWED_ORIGINS",
        "origin hosts, * wildcards; env: comma-separated (*)",
    ),
    (
        "accept_client_events_from",
        "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
        "all, members or none (members)",
    ),
    (
        "rate_limiting.enabled",
        "REVERB_APP_RATE_LIMITING_ENABLED",
        "limit messages per connection (false)",
    ),
    (
        "rate_limiting.max_attempts",
        "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS",
        "messages per window (60)",
    ),
    (
        "rate_limiting.decay_seconds",
        "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
        "window length in seconds (60)",
    ),
    (
        "rate_limiting.terminate_on_limit",
        "REVERB_APP_RATE_LIMIT_TERMINATE",
        "close the connection at the limit (false)",
    ),
    (
        "max_presence_members",
        "REVERB_APP_MAX_PRESENCE_MEMBERS",
        "unique users per presence channel (100)",
    ),
    (
        "max_user_info_size",
        "REVERB_APP_MAX_USER_INFO_SIZE",
        "bytes of presence user_info JSON (2048)",
    ),
];

/// Keys accepted in an app object that the server does not use (Laravel's
/// side reads them to reach the server).
const IGNORED_APP_KEYS: &[&str] = &["options"];

/// The file read when `--config` is not given and it exists.
pub const DEFAULT_FILE: &str = "revurb.json";

/// The inputs to [`Config::load`], so tests need no real environment.
pub struct Inputs<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub flags: &'a Flags,
    /// Directory holding `.env` and `revurb.json` (the working directory).
    pub dir: &'a Path,
}

/// A raw value from some source.
enum Raw {
    Text(String),
    Json(Value),
}

impl Config {
    /// Load from the real process environment and working directory.
    pub fn from_process(flags: &Flags) -> Result<Config, ConfigError> {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Config::load(&Inputs {
            env: &|k| std::env::var(k).ok(),
            flags,
            dir: &dir,
        })
    }

    pub fn load(inputs: &Inputs<'_>) -> Result<Config, ConfigError> {
        let flags = inputs.flags;
        let dotenv_path = inputs.dir.join(".env");
        let dotenv = match std::fs::read_to_string(&dotenv_path) {
            Ok(text) => parse_dotenv(&text),
            Err(_) => HashMap::new(),
        };
        let explicit = flags.config.as_ref().map(PathBuf::from);
        let default_file = inputs.dir.join(DEFAULT_FILE);
        let file_path = match &explicit {
            Some(p) => Some(p.clone()),
            None if default_file.is_file() => Some(default_file),
            None => None,
        };
        let file = match &file_path {
            Some(p) => Some(read_file(p)?),
            None => None,
        };
        let file_source = file_path.clone().map(Source::File);

        // Lookup of one server option through the layers, highest first.
        let env_get = |name: &str| {
            (inputs.env)(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !is_null(v))
        };
        let dotenv_get = |name: &str| {
            dotenv
                .get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !is_null(v))
        };
        let lookup = |opt: &Opt| -> Option<(Raw, Source)> {
            if let Some(v) = flag_value(flags, opt) {
                return Some((v, Source::Flag));
            }
            let from_file = || {
                file.as_ref()
                    .and_then(|f| json_path(f, opt.json))
                    .filter(|v| !v.is_null())
                    .map(|v| {
                        (
                            Raw::Json(v.clone()),
                            file_source.clone().unwrap_or(Source::Default),
                        )
                    })
            };
            if explicit.is_some()
                && let Some(v) = from_file()
            {
                return Some(v);
            }
            if let Some(v) = env_get(opt.env) {
                return Some((Raw::Text(v), Source::Env));
            }
            if let Some(v) = dotenv_get(opt.env) {
                return Some((Raw::Text(v), Source::DotEnv));
            }
            if explicit.is_none()
                && let Some(v) = from_file()
            {
                return Some(v);
            }
            opt.default
                .map(|d| (Raw::Text(d.to_string()), Source::Default))
        };

        let mut sources = Vec::new();
        let mut values: HashMap<&'static str, Option<Value>> = HashMap::new();
        for opt in OPTIONS {
            match lookup(opt) {
                Some((raw, source)) => {
                    let v = convert(opt.kind, &raw).map_err(|why| {
                        ConfigError(format!("{} ({}): {why}", name_in(opt, &source), source))
                    })?;
                    let shown =
                        if opt.json.ends_with("passphrase") || opt.json.ends_with("password") {
                            "\"****\"".to_string()
                        } else if opt.json.ends_with("server.url") {
                            display(&Value::String(crate::redis::mask_url(
                                v.as_str().unwrap_or_default(),
                            )))
                        } else {
                            display(&v)
                        };
                    sources.push((opt.json, shown, source));
                    values.insert(opt.json, Some(v));
                }
                None => {
                    values.insert(opt.json, None);
                    sources.push((opt.json, "(not set)".into(), Source::Default));
                }
            }
        }
        let s = |k: &str| {
            values
                .get(k)
                .cloned()
                .flatten()
                .and_then(|v| v.as_str().map(str::to_string))
        };
        let n = |k: &str| {
            values
                .get(k)
                .cloned()
                .flatten()
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
        };
        let b = |k: &str| {
            values
                .get(k)
                .cloned()
                .flatten()
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        };

        // Apps: the --config file, else the environment, else ./revurb.json.
        let file_apps = match (&file, &file_path) {
            (Some(f), Some(p)) => apps_from_file(f, p)?,
            _ => None,
        };
        let env_app = app_from_env(&env_get, Source::Env)?;
        let dotenv_app = if env_app.is_none() {
            app_from_env(&dotenv_get, Source::DotEnv)?
        } else {
            None
        };
        let (apps, apps_source) = match (explicit.is_some(), file_apps, env_app.or(dotenv_app)) {
            (true, Some(apps), _) => (apps, file_source.clone().unwrap_or(Source::Default)),
            (_, _, Some((app, src))) => (vec![app], src),
            (false, Some(apps), None) => (apps, file_source.clone().unwrap_or(Source::Default)),
            (_, None, None) => (Vec::new(), Source::Default),
        };
        if apps.is_empty() {
            return Err(ConfigError(format!(
                "no app is configured: set REVERB_APP_ID, REVERB_APP_KEY and REVERB_APP_SECRET \
                 (for example REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret), \
                 or list apps under apps.apps in {DEFAULT_FILE} or a --config file"
            )));
        }
        check_unique(&apps)?;

        let host = s("servers.reverb.host").unwrap_or_default();
        if host.is_empty() {
            return Err(ConfigError(
                "servers.reverb.host (REVERB_SERVER_HOST, --host) must not be empty".into(),
            ));
        }
        let tls = match (
            s("servers.reverb.options.tls.cert"),
            s("servers.reverb.options.tls.key"),
        ) {
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                Some(crate::tls::TlsFiles {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                    passphrase: s("servers.reverb.options.tls.passphrase")
                        .filter(|p| !p.is_empty()),
                })
            }
            (Some(c), None) if !c.is_empty() => {
                return Err(ConfigError("servers.reverb.options.tls.cert (REVERB_TLS_CERT) is set but the key (REVERB_TLS_KEY) is not".into()));
            }
            (None, Some(k)) if !k.is_empty() => {
                return Err(ConfigError("servers.reverb.options.tls.key (REVERB_TLS_KEY) is set but the certificate (REVERB_TLS_CERT) is not".into()));
            }
            _ => {
                // Reverb turns TLS on when the hostname has a Herd or Valet certificate.
                let home = (inputs.env)("HOME").map(PathBuf::from);
                match (s("servers.reverb.hostname"), home) {
                    (Some(h), Some(home)) => crate::tls::herd_valet_certificate(&home, &h),
                    _ => None,
                }
            }
        };
        let scaling = if b("servers.reverb.scaling.enabled") {
            let channel = s("servers.reverb.scaling.channel").unwrap_or_default();
            if channel.is_empty() {
                return Err(ConfigError(
                    "servers.reverb.scaling.channel (REVERB_SCALING_CHANNEL) must not be empty"
                        .into(),
                ));
            }
            let redis = match s("servers.reverb.scaling.server.url") {
                Some(url) => crate::redis::Target::from_url(&url).map_err(|e| {
                    ConfigError(format!(
                        "servers.reverb.scaling.server.url (REDIS_URL): {e}"
                    ))
                })?,
                None => {
                    let tls = match s("servers.reverb.scaling.server.scheme")
                        .unwrap_or_default()
                        .as_str()
                    {
                        "tcp" | "redis" | "" => false,
                        "tls" | "rediss" => true,
                        other => {
                            return Err(ConfigError(format!(
                                "servers.reverb.scaling.server.scheme (REDIS_SCHEME): {other:?} is not tcp or tls"
                            )));
                        }
                    };
                    let username =
                        s("servers.reverb.scaling.server.username").filter(|u| !u.is_empty());
                    let password =
                        s("servers.reverb.scaling.server.password").filter(|p| !p.is_empty());
                    if username.is_some() && password.is_none() {
                        return Err(ConfigError(
                            "servers.reverb.scaling.server.username (REDIS_USERNAME) is set but the password (REDIS_PASSWORD) is not; Redis logs a user in with both".into(),
                        ));
                    }
                    let host = s("servers.reverb.scaling.server.host").unwrap_or_default();
                    if host.is_empty() {
                        return Err(ConfigError(
                            "servers.reverb.scaling.server.host (REDIS_HOST) must not be empty"
                                .into(),
                        ));
                    }
                    crate::redis::Target {
                        tls,
                        host,
                        port: n("servers.reverb.scaling.server.port") as u16,
                        username,
                        password,
                        db: n("servers.reverb.scaling.server.database"),
                    }
                }
            };
            Some(Scaling {
                channel,
                redis,
                node_timeout_ms: n("servers.reverb.scaling.node_timeout") * 1000,
                queue_limit: n("servers.reverb.scaling.queue_limit") as usize,
            })
        } else {
            None
        };
        Ok(Config {
            scaling,
            host,
            port: n("servers.reverb.port") as u16,
            path: normalize_path(&s("servers.reverb.path").unwrap_or_default()),
            hostname: s("servers.reverb.hostname").filter(|h| !h.is_empty()),
            max_request_size: n("servers.reverb.max_request_size") as usize,
            write_queue_limit: n("servers.reverb.write_queue_limit") as usize,
            request_timeout: n("servers.reverb.request_timeout"),
            debug: b("servers.reverb.debug"),
            tls,
            pid_file: s("servers.reverb.pid_file")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            metrics: match n("servers.reverb.metrics.port") {
                0 => None,
                port => Some((
                    s("servers.reverb.metrics.host").unwrap_or_default(),
                    port as u16,
                )),
            },
            apps,
            config_file: file_path,
            sources,
            apps_source,
        })
    }

    /// `host:port` to bind.
    pub fn bind_address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The effective configuration for `revurb config`: every value, where it
    /// came from, secrets masked.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (key, value, source) in &self.sources {
            out.push_str(&format!("{key} = {value}    # {source}\n"));
        }
        out.push_str(&format!(
            "apps ({} from {}):\n",
            self.apps.len(),
            self.apps_source
        ));
        for a in &self.apps {
            out.push_str(&format!(
                "  - app_id = {:?}, key = {:?}, secret = {}, ping_interval = {}, activity_timeout = {}, \
                 max_connections = {}, max_message_size = {}, allowed_origins = {:?}, \
                 accept_client_events_from = {}, rate_limiting = {}, max_presence_members = {}, max_user_info_size = {}\n",
                a.id,
                a.key,
                mask(&a.secret),
                a.ping_interval,
                a.activity_timeout,
                a.max_connections.map_or_else(|| "unlimited".to_string(), |m| m.to_string()),
                a.max_message_size,
                a.allowed_origins,
                a.accept_client_events_from.as_str(),
                a.rate_limit.as_ref().map_or_else(
                    || "off".to_string(),
                    |r| format!(
                        "{} per {} s{}",
                        r.max_attempts,
                        r.decay_seconds,
                        if r.terminate_on_limit { ", terminate" } else { "" }
                    )
                ),
                a.max_presence_members,
                a.max_user_info_size,
            ));
        }
        out
    }
}

/// `abcd…` style masking: never more than the first 2 characters.
pub fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(2).collect();
    format!("{head}****")
}

fn name_in(opt: &Opt, source: &Source) -> String {
    match source {
        Source::Flag => opt.flag.unwrap_or(opt.env).to_string(),
        Source::File(_) => opt.json.to_string(),
        _ => opt.env.to_string(),
    }
}

fn flag_value(flags: &Flags, opt: &Opt) -> Option<Raw> {
    let text = |v: &Option<String>| v.clone().map(Raw::Text);
    match opt.flag? {
        "--host" => text(&flags.host),
        "--port" => text(&flags.port),
        "--path" => text(&flags.path),
        "--hostname" => text(&flags.hostname),
        "--pid-file" => text(&flags.pid_file),
        "--metrics-host" => text(&flags.metrics_host),
        "--metrics-port" => text(&flags.metrics_port),
        "--debug" => flags.debug.then(|| Raw::Json(Value::Bool(true))),
        _ => None,
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Check and convert a raw value into a JSON value of the option's kind.
fn convert(kind: Kind, raw: &Raw) -> Result<Value, String> {
    match (kind, raw) {
        (Kind::Str, Raw::Text(s)) => Ok(Value::String(s.clone())),
        (Kind::Str, Raw::Json(Value::String(s))) => Ok(Value::String(s.clone())),
        (Kind::Str, Raw::Json(v)) => Err(format!("expected a string, got {v}")),
        (Kind::Int(min, max), Raw::Text(s)) => number(s, min, max).map(Value::from),
        (Kind::Int(min, max), Raw::Json(Value::Number(n))) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(Value::from(v)),
            _ => Err(format!("{n} is out of range ({min} to {max})")),
        },
        (Kind::Int(..), Raw::Json(v)) => Err(format!("expected a whole number, got {v}")),
        (Kind::Bool, Raw::Text(s)) => boolean(s).map(Value::Bool),
        (Kind::Bool, Raw::Json(Value::Bool(b))) => Ok(Value::Bool(*b)),
        (Kind::Bool, Raw::Json(v)) => Err(format!("expected true or false, got {v}")),
    }
}

fn is_null(v: &str) -> bool {
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

/// `ws`, `/ws`, `/ws/` all become `/ws`; `""` and `/` become `""`.
pub fn normalize_path(p: &str) -> String {
    let t = p.trim().trim_matches('/');
    if t.is_empty() {
        String::new()
    } else {
        format!("/{t}")
    }
}

fn json_path<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, k| v.get(k))
}

/// Read and check a JSON config file: every key must be known.
fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let name = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {name}: {e}")))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {name} is not valid JSON: {e}")))?;
    if !root.is_object() {
        return Err(ConfigError(format!(
            "config file {name}: the top level must be a JSON object"
        )));
    }
    check_keys(&root, "", &name.to_string())?;
    Ok(root)
}

/// Walk the file and refuse keys that are not options.
fn check_keys(v: &Value, prefix: &str, file: &str) -> Result<(), ConfigError> {
    let Value::Object(map) = v else { return Ok(()) };
    for (k, child) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if path == "apps.apps" || path == "apps.provider" || path == "default" {
            continue; // checked by apps_from_file
        }
        let is_leaf = OPTIONS.iter().any(|o| o.json == path);
        let is_branch = OPTIONS
            .iter()
            .any(|o| o.json.starts_with(&format!("{path}.")))
            || path == "apps";
        match (is_leaf, is_branch) {
            (true, _) => {}
            (false, true) if child.is_object() => check_keys(child, &path, file)?,
            (false, true) => {
                return Err(ConfigError(format!(
                    "config file {file}: {path} must be an object"
                )));
            }
            (false, false) => {
                return Err(ConfigError(format!(
                    "config file {file}: unknown key {path}"
                )));
            }
        }
    }
    Ok(())
}

fn apps_from_file(root: &Value, path: &Path) -> Result<Option<Vec<App>>, ConfigError> {
    let file = path.display().to_string();
    let err =
        |field: String, why: String| ConfigError(format!("config file {file}: {field}: {why}"));
    if let Some(p) = json_path(root, "apps.provider")
        && p != "config"
    {
        return Err(err(
            "apps.provider".into(),
            "only \"config\" is supported".into(),
        ));
    }
    if let Some(d) = root.get("default")
        && d != "reverb"
    {
        return Err(err("default".into(), "only \"reverb\" is supported".into()));
    }
    let Some(list) = json_path(root, "apps.apps") else {
        return Ok(None);
    };
    let Value::Array(list) = list else {
        return Err(err(
            "apps.apps".into(),
            "must be a list of app objects".into(),
        ));
    };
    let mut apps = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = |k: &str| format!("apps.apps[{i}].{k}");
        let Value::Object(obj) = item else {
            return Err(err(format!("apps.apps[{i}]"), "must be an object".into()));
        };
        for k in obj.keys() {
            let known = APP_OPTIONS
                .iter()
                .any(|(j, _, _)| j == k || j.starts_with(&format!("{k}.")))
                || IGNORED_APP_KEYS.contains(&k.as_str());
            if !known {
                return Err(err(at(k), "unknown key".into()));
            }
        }
        if let Some(Value::Object(rl)) = obj.get("rate_limiting") {
            for k in rl.keys() {
                if !APP_OPTIONS
                    .iter()
                    .any(|(j, _, _)| *j == format!("rate_limiting.{k}"))
                {
                    return Err(err(at(&format!("rate_limiting.{k}")), "unknown key".into()));
                }
            }
        }
        let get = |key: &str| -> Option<Raw> {
            match json_path(item, key) {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(Raw::Json(Value::Array(list.clone()))),
                Some(v) => Some(Raw::Json(v.clone())),
            }
        };
        let app = build_app(&get, &|k| at(k))
            .map_err(|e| ConfigError(format!("config file {file}: {}", e.0)))?;
        apps.push(app);
    }
    Ok(Some(apps))
}

fn app_from_env(
    get: &dyn Fn(&str) -> Option<String>,
    source: Source,
) -> Result<Option<(App, Source)>, ConfigError> {
    let required = ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"];
    let present: Vec<bool> = required.iter().map(|v| get(v).is_some()).collect();
    if present.iter().all(|p| !p) {
        return Ok(None);
    }
    if !present.iter().all(|p| *p) {
        let missing: Vec<&str> = required
            .iter()
            .zip(&present)
            .filter(|(_, p)| !**p)
            .map(|(v, _)| *v)
            .collect();
        let from = if source == Source::DotEnv {
            " in .env"
        } else {
            ""
        };
        return Err(ConfigError(format!(
            "incomplete app{from}: {} not set",
            missing.join(", ")
        )));
    }
    let lookup = |json_key: &str| -> Option<Raw> {
        let env = APP_OPTIONS
            .iter()
            .find(|(j, _, _)| *j == json_key)
            .map(|(_, e, _)| *e)?;
        get(env).map(Raw::Text)
    };
    let name = |json_key: &str| {
        APP_OPTIONS
            .iter()
            .find(|(j, _, _)| *j == json_key)
            .map_or(json_key.to_string(), |(_, e, _)| e.to_string())
    };
    let app = build_app(&lookup, &name)?;
    Ok(Some((app, source)))
}

/// Build one app from a lookup by JSON key; `name` says how to call a field in errors.
fn build_app(
    get: &dyn Fn(&str) -> Option<Raw>,
    name: &dyn Fn(&str) -> String,
) -> Result<App, ConfigError> {
    let fail = |k: &str, why: String| ConfigError(format!("{}: {why}", name(k)));
    let string = |k: &str| -> Result<Option<String>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some(Raw::Text(s)) => Ok(Some(s)),
            Some(Raw::Json(Value::String(s))) => Ok(Some(s)),
            Some(Raw::Json(Value::Number(n))) => Ok(Some(n.to_string())),
            Some(Raw::Json(v)) => Err(fail(k, format!("expected a string, got {v}"))),
        }
    };
    let int = |k: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some(raw) => convert(Kind::Int(min, max), &raw)
                .map(|v| v.as_u64())
                .map_err(|why| fail(k, why)),
        }
    };
    let flag = |k: &str| -> Result<Option<bool>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some(raw) => convert(Kind::Bool, &raw)
                .map(|v| v.as_bool())
                .map_err(|why| fail(k, why)),
        }
    };
    let required = |k: &str| -> Result<String, ConfigError> {
        match string(k)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(fail(k, "is required".into())),
        }
    };
    let mut app = App::new(
        &required("app_id")?,
        &required("key")?,
        &required("secret")?,
    );
    if let Some(v) = int("ping_interval", 1, 86_400)? {
        app.ping_interval = v;
    }
    if let Some(v) = int("activity_timeout", 1, 86_400)? {
        app.activity_timeout = v;
    }
    app.max_connections = int("max_connections", 0, u64::MAX)?;
    if let Some(v) = int("max_message_size", 1, 1 << 30)? {
        app.max_message_size = v as usize;
    }
    match get("allowed_origins") {
        None => {}
        Some(Raw::Text(s)) => {
            app.allowed_origins = s
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }
        Some(Raw::Json(Value::Array(list))) => {
            app.allowed_origins = list
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail("allowed_origins", "must hold strings".into()))
                })
                .collect::<Result<_, _>>()?;
        }
        Some(Raw::Json(Value::String(s))) => app.allowed_origins = vec![s],
        Some(Raw::Json(v)) => {
            return Err(fail(
                "allowed_origins",
                format!("expected a list of hosts, got {v}"),
            ));
        }
    }
    if app.allowed_origins.is_empty() {
        return Err(fail(
            "allowed_origins",
            "give at least one origin host, or *".into(),
        ));
    }
    if let Some(v) = string("accept_client_events_from")? {
        app.accept_client_events_from = ClientEvents::parse(&v).ok_or_else(|| {
            fail(
                "accept_client_events_from",
                format!("{v:?} is not one of all, members, none"),
            )
        })?;
    }
    if flag("rate_limiting.enabled")?.unwrap_or(false) {
        app.rate_limit = Some(RateLimit {
            max_attempts: int("rate_limiting.max_attempts", 1, u32::MAX as u64)?.unwrap_or(60)
                as u32,
            decay_seconds: int("rate_limiting.decay_seconds", 1, 86_400)?.unwrap_or(60),
            terminate_on_limit: flag("rate_limiting.terminate_on_limit")?.unwrap_or(false),
        });
    }
    if let Some(v) = int("max_presence_members", 1, 1_000_000)? {
        app.max_presence_members = v as usize;
    }
    if let Some(v) = int("max_user_info_size", 2, 1 << 20)? {
        app.max_user_info_size = v as usize;
    }
    Ok(app)
}

fn check_unique(apps: &[App]) -> Result<(), ConfigError> {
    for (i, a) in apps.iter().enumerate() {
        for b in &apps[..i] {
            if a.id == b.id {
                return Err(ConfigError(format!(
                    "two apps have the app_id {:?}; each needs its own",
                    a.id
                )));
            }
            if a.key == b.key {
                return Err(ConfigError(format!(
                    "two apps have the key {:?}; each needs its own",
                    a.key
                )));
            }
        }
    }
    Ok(())
}

/// Parse a `.env` file as Laravel (phpdotenv) does for simple cases:
/// `KEY=value`, `export KEY=value`, `#` comments, single quotes (literal),
/// double quotes (with `\n`, `\"` escapes and `${VAR}` from earlier lines).
pub fn parse_dotenv(text: &str) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            continue;
        }
        let value = value.trim();
        let parsed = if let Some(rest) = value.strip_prefix('\'') {
            rest.split_once('\'').map_or(rest, |(v, _)| v).to_string()
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(other) => out.push(other),
                        None => break,
                    },
                    _ => out.push(c),
                }
            }
            interpolate(&out, &vars)
        } else {
            let bare = value.split(" #").next().unwrap_or("").trim();
            interpolate(bare, &vars)
        };
        vars.insert(key.to_string(), parsed);
    }
    vars
}

fn interpolate(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
                rest = &rest[start + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;

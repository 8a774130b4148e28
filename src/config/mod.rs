//! The effective configuration, one story. Each option is defined once in
//! [`options`]: its JSON key, its environment variable (also read from
//! `.env`), its flag if it has one, its kind and its default. Precedence,
//! highest first: flags, the `--config FILE`, the real environment, `.env`
//! in the working directory, `./revurb.json` (only without `--config`),
//! defaults. The real environment beats `.env` for every variable, server
//! and app alike.
//!
//! Apps come whole from the highest source that defines any: the `--config`
//! file's `apps.apps[]`, else the `REVERB_APP_*` variables (each from the
//! real environment, else `.env`), else `./revurb.json`.
//!
//! [`Config::load`] runs every check short of binding: kinds and ranges,
//! IP addresses, options that need each other, unique apps. So `revurb
//! config` refuses exactly what `revurb start` refuses, with exit status 2
//! and a [`ConfigError`] that names where the bad value came from. Values
//! follow Laravel's `env()` casts: `null`, `(null)` and the empty string
//! mean "not set".
//!
//! Split by concern: [`options`] (the tables), [`sources`] (reading and
//! ranking the sources, the errors), [`apps`] (building apps), [`webhooks`]
//! (an app's webhooks, checked field by field), [`dotenv`] (the `.env`
//! syntax). This module puts them together into [`Config`]; it
//! opens no socket and does not load the TLS files (that is `start`'s job).

pub mod apps;
pub mod dotenv;
pub mod options;
pub mod sources;
pub mod webhooks;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub use options::{APP_OPTIONS, AppKey, Key, Kind, Mask, OPTIONS, Opt, Val};
pub use sources::{ConfigError, Source};

use crate::cli::Flags;
use crate::pusher::App;
use sources::{DotEnvFile, Layers, Raw};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
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
    /// Seconds over which a stop (SIGTERM, `revurb restart`) spreads
    /// closing the WebSockets.
    pub drain_window: u64,
    pub debug: bool,
    pub pid_file: Option<PathBuf>,
    /// TLS certificate and key, from the options or a Herd/Valet lookup.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Address of the metrics listener, `None` when off.
    pub metrics: Option<SocketAddr>,
    pub apps: Vec<App>,
    /// The config file the apps came from, re-read on reload.
    pub config_file: Option<PathBuf>,
    /// Redis pub/sub scaling, `None` when off.
    pub scaling: Option<Scaling>,
    /// (JSON key, value as shown, where it came from) for every server
    /// option, for `revurb config`; secrets are masked.
    pub sources: Vec<(&'static str, String, Source)>,
    pub apps_source: AppsSource,
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
    /// The key that signs the bus; `None`: derived from the apps.
    pub secret: Option<String>,
}

/// Where the apps came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppsSource {
    File(PathBuf),
    /// `REVERB_APP_*`, all from the real environment.
    Env,
    /// `REVERB_APP_*`, all from `.env`.
    DotEnv,
    /// `REVERB_APP_*`, some from each.
    EnvAndDotEnv,
}

impl fmt::Display for AppsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppsSource::File(p) => write!(f, "file {}", p.display()),
            AppsSource::Env => f.write_str("environment"),
            AppsSource::DotEnv => f.write_str(".env"),
            AppsSource::EnvAndDotEnv => f.write_str("environment and .env"),
        }
    }
}

/// The file read when `--config` is not given and it exists.
pub const DEFAULT_FILE: &str = "revurb.json";

/// The inputs to [`Config::load`], so tests need no real environment.
pub struct Inputs<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub flags: &'a Flags,
    /// Directory holding `.env` and `revurb.json` (the working directory).
    pub dir: &'a Path,
    /// Told about what is skipped but not fatal (malformed `.env` lines).
    pub warn: &'a dyn Fn(&str),
}

/// Every server option, resolved and checked, indexed by [`Key`].
struct Values {
    vals: Vec<Option<Val>>,
    sources: Vec<Source>,
}

impl Values {
    fn resolve(layers: &Layers<'_>) -> Result<Values, ConfigError> {
        let mut vals = Vec::with_capacity(OPTIONS.len());
        let mut sources = Vec::with_capacity(OPTIONS.len());
        for opt in OPTIONS {
            match layers.server(opt) {
                Some((raw, source)) => {
                    let parsed = match &raw {
                        Raw::Text(t) => opt.kind.parse_text(t),
                        Raw::Json(v) => opt.kind.parse_json(v),
                    };
                    match parsed {
                        Ok(v) => vals.push(Some(v)),
                        Err(why) => return Err(ConfigError::Invalid { source, why }),
                    }
                    sources.push(source);
                }
                None => {
                    vals.push(None);
                    sources.push(Source::Default(opt.json));
                }
            }
        }
        Ok(Values { vals, sources })
    }

    fn get(&self, k: Key) -> Option<&Val> {
        self.vals[k as usize].as_ref()
    }
    /// A string option; empty counts as unset.
    fn str(&self, k: Key) -> Option<String> {
        match self.get(k) {
            Some(Val::Str(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
    fn int(&self, k: Key) -> u64 {
        match self.get(k) {
            Some(Val::Int(n)) => *n,
            _ => 0,
        }
    }
    fn bool(&self, k: Key) -> bool {
        matches!(self.get(k), Some(Val::Bool(true)))
    }
    fn ip(&self, k: Key) -> Option<IpAddr> {
        match self.get(k) {
            Some(Val::Ip(ip)) => Some(*ip),
            _ => None,
        }
    }
    fn source(&self, k: Key) -> Source {
        self.sources[k as usize].clone()
    }
    /// An error about option `k`'s value.
    fn invalid(&self, k: Key, why: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            source: self.source(k),
            why: why.into(),
        }
    }

    /// (JSON key, value as shown, source) for `revurb config`.
    fn shown(&self) -> Vec<(&'static str, String, Source)> {
        OPTIONS
            .iter()
            .map(|opt| {
                let shown = match (self.get(opt.key), opt.mask) {
                    (None, _) => "(not set)".to_string(),
                    (Some(_), Mask::Secret) => "\"****\"".to_string(),
                    (Some(Val::Str(url)), Mask::Url) => {
                        format!("{:?}", crate::redis::mask_url(url))
                    }
                    (Some(v), _) => v.display(),
                };
                (opt.json, shown, self.source(opt.key))
            })
            .collect()
    }
}

/// Both names of an option other than the one in hand, for messages about
/// options that need each other: `REVERB_TLS_KEY, servers.reverb.options.tls.key`.
fn names(k: Key) -> String {
    let o = k.opt();
    format!("{}, {}", o.env, o.json)
}

impl Config {
    /// Load from the real process environment and working directory; what
    /// is skipped (malformed `.env` lines) is logged as a warning.
    pub fn from_process(flags: &Flags) -> Result<Config, ConfigError> {
        let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        Config::load(&Inputs {
            env: &|k| std::env::var(k).ok(),
            flags,
            dir: &dir,
            warn: &|w| crate::log_warn!("{w}"),
        })
    }

    pub fn load(inputs: &Inputs<'_>) -> Result<Config, ConfigError> {
        let layers = read_layers(inputs)?;
        let values = Values::resolve(&layers)?;
        let (apps, apps_source) = choose_apps(&layers)?;
        let tls = tls(&values, inputs)?;
        let scaling = scaling(&values)?;
        let metrics = match values.int(Key::MetricsPort) {
            0 => None,
            port => values
                .ip(Key::MetricsHost)
                .map(|ip| SocketAddr::new(ip, port as u16)),
        };
        Ok(Config {
            scaling,
            host: values
                .ip(Key::Host)
                .ok_or_else(|| values.invalid(Key::Host, "must be an IP address"))?,
            port: values.int(Key::Port) as u16,
            path: normalize_path(&values.str(Key::Path).unwrap_or_default()),
            hostname: values.str(Key::Hostname),
            max_request_size: values.int(Key::MaxRequestSize) as usize,
            write_queue_limit: values.int(Key::WriteQueueLimit) as usize,
            request_timeout: values.int(Key::RequestTimeout),
            drain_window: values.int(Key::DrainWindow),
            debug: values.bool(Key::Debug),
            tls,
            pid_file: values.str(Key::PidFile).map(PathBuf::from),
            metrics,
            apps,
            config_file: layers.file.as_ref().map(|f| f.path.clone()),
            sources: values.shown(),
            apps_source,
        })
    }

    /// The address to listen on.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The effective configuration for `revurb config`: every value, where it
    /// came from, secrets masked.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (key, value, source) in &self.sources {
            out.push_str(&format!("{key} = {value}    # {}\n", source.label()));
        }
        out.push_str(&format!(
            "apps ({} from {}):\n",
            self.apps.len(),
            self.apps_source
        ));
        for a in &self.apps {
            out.push_str(&describe_app(a));
        }
        out
    }
}

fn describe_app(a: &App) -> String {
    format!(
        "  - app_id = {:?}, key = {:?}, secret = {}, ping_interval = {}, activity_timeout = {}, \
         max_connections = {}, max_message_size = {}, allowed_origins = {:?}, \
         accept_client_events_from = {}, rate_limiting = {}, max_presence_members = {}, max_user_info_size = {}, \
         user_authentication = {}, subscription_count = {}, webhook_delay = {}, webhooks = {}\n{}",
        a.id,
        a.key,
        mask(&a.secret),
        a.ping_interval,
        a.activity_timeout,
        a.max_connections
            .map_or_else(|| "unlimited".to_string(), |m| m.to_string()),
        a.max_message_size,
        a.allowed_origins,
        a.accept_client_events_from.as_str(),
        a.rate_limit.as_ref().map_or_else(
            || "off".to_string(),
            |r| format!(
                "{} per {} s{}",
                r.max_attempts,
                r.decay_seconds,
                if r.terminate_on_limit {
                    ", terminate"
                } else {
                    ""
                }
            )
        ),
        a.max_presence_members,
        a.max_user_info_size,
        if a.enable_user_authentication {
            format!("within {} s", a.user_authentication_timeout)
        } else {
            "off".to_string()
        },
        if a.enable_subscription_count {
            "on"
        } else {
            "off"
        },
        a.webhook_delay_ms / 1000,
        a.webhooks.len(),
        a.webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| format!("    webhooks[{i}] = {}\n", webhooks::describe(w)))
            .collect::<String>(),
    )
}

/// Read `.env` and the JSON file (the `--config` one, else `./revurb.json`
/// when it exists); warn about `.env` lines that are skipped.
fn read_layers<'a>(inputs: &Inputs<'a>) -> Result<Layers<'a>, ConfigError> {
    let dotenv_path = inputs.dir.join(".env");
    let dotenv = std::fs::read_to_string(&dotenv_path)
        .ok()
        .map(|text| DotEnvFile {
            parsed: dotenv::parse(&text),
            path: dotenv_path,
        });
    if let Some(d) = &dotenv {
        for (line, why) in &d.parsed.malformed {
            (inputs.warn)(&format!(
                "{} line {line}: {why}; the line is ignored",
                d.path.display()
            ));
        }
    }
    let default_file = inputs.dir.join(DEFAULT_FILE);
    let file = match &inputs.flags.config {
        Some(p) => Some(sources::read_file(Path::new(p), true)?),
        None if default_file.is_file() => Some(sources::read_file(&default_file, false)?),
        None => None,
    };
    Ok(Layers {
        flags: inputs.flags,
        file,
        env: inputs.env,
        dotenv,
    })
}

/// The apps: the `--config` file's, else the `REVERB_APP_*` app, else
/// `./revurb.json`'s. Each source is checked even when a higher one wins.
fn choose_apps(layers: &Layers<'_>) -> Result<(Vec<App>, AppsSource), ConfigError> {
    let file_apps = match &layers.file {
        Some(f) => apps::from_file(f)?.map(|list| (list, AppsSource::File(f.path.clone()))),
        None => None,
    };
    let env_app = apps::from_env(layers)?.map(|b| (vec![b], env_apps_source(layers)));
    let explicit = layers.file.as_ref().is_some_and(|f| f.explicit);
    let chosen = if explicit {
        file_apps.or(env_app)
    } else {
        env_app.or(file_apps)
    };
    let Some((built, source)) = chosen else {
        return Err(ConfigError::NoApp);
    };
    if built.is_empty() {
        return Err(ConfigError::NoApp);
    }
    apps::check_unique(&built)?;
    Ok((built.into_iter().map(|b| b.app).collect(), source))
}

/// Whether the `REVERB_APP_*` values came from the environment, `.env` or both.
fn env_apps_source(layers: &Layers<'_>) -> AppsSource {
    let found: Vec<Source> = APP_OPTIONS
        .iter()
        .filter_map(|o| layers.env_var(o.env).map(|(_, s)| s))
        .collect();
    let env = found.iter().any(|s| matches!(s, Source::Env(_)));
    let dotenv = found.iter().any(|s| matches!(s, Source::DotEnv { .. }));
    match (env, dotenv) {
        (true, true) => AppsSource::EnvAndDotEnv,
        (false, true) => AppsSource::DotEnv,
        _ => AppsSource::Env,
    }
}

/// TLS files: both or neither; with neither, a Herd or Valet certificate
/// for the hostname, as Reverb does.
fn tls(v: &Values, inputs: &Inputs<'_>) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    match (v.str(Key::TlsCert), v.str(Key::TlsKey)) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
            passphrase: v.str(Key::TlsPassphrase),
        })),
        (Some(_), None) => Err(v.invalid(
            Key::TlsCert,
            format!("is set but the key ({}) is not", names(Key::TlsKey)),
        )),
        (None, Some(_)) => Err(v.invalid(
            Key::TlsKey,
            format!(
                "is set but the certificate ({}) is not",
                names(Key::TlsCert)
            ),
        )),
        (None, None) => {
            let home = (inputs.env)("HOME").map(PathBuf::from);
            Ok(match (v.str(Key::Hostname), home) {
                (Some(h), Some(home)) => crate::tls::herd_valet_certificate(&home, &h),
                _ => None,
            })
        }
    }
}

/// Scaling settings, checked only when scaling is on.
fn scaling(v: &Values) -> Result<Option<Scaling>, ConfigError> {
    if !v.bool(Key::ScalingEnabled) {
        return Ok(None);
    }
    let channel = v
        .str(Key::ScalingChannel)
        .ok_or_else(|| v.invalid(Key::ScalingChannel, "must not be empty"))?;
    let redis = match v.str(Key::RedisUrl) {
        Some(url) => {
            crate::redis::Target::from_url(&url).map_err(|e| v.invalid(Key::RedisUrl, e))?
        }
        None => redis_fields(v)?,
    };
    Ok(Some(Scaling {
        channel,
        redis,
        node_timeout_ms: v.int(Key::ScalingNodeTimeout) * 1000,
        queue_limit: v.int(Key::ScalingQueueLimit) as usize,
        secret: v.str(Key::ScalingSecret),
    }))
}

/// The Redis server from its separate fields (no `REDIS_URL`).
fn redis_fields(v: &Values) -> Result<crate::redis::Target, ConfigError> {
    let tls = match v.str(Key::RedisScheme).unwrap_or_default().as_str() {
        "tcp" | "redis" | "" => false,
        "tls" | "rediss" => true,
        other => {
            return Err(v.invalid(Key::RedisScheme, format!("{other:?} is not tcp or tls")));
        }
    };
    let username = v.str(Key::RedisUsername);
    let password = v.str(Key::RedisPassword);
    if username.is_some() && password.is_none() {
        return Err(v.invalid(
            Key::RedisUsername,
            format!(
                "is set but the password ({}) is not; Redis logs a user in with both",
                names(Key::RedisPassword)
            ),
        ));
    }
    let host = v
        .str(Key::RedisHost)
        .ok_or_else(|| v.invalid(Key::RedisHost, "must not be empty"))?;
    Ok(crate::redis::Target {
        tls,
        host,
        port: v.int(Key::RedisPort) as u16,
        username,
        password,
        db: v.int(Key::RedisDb),
    })
}

/// `abcd…` style masking: never more than the first 2 characters.
pub fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(2).collect();
    format!("{head}****")
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

#[cfg(test)]
mod tests;

//! The effective configuration: built-in defaults, then the environment
//! (`REVERB_*`, as Laravel Reverb reads them), then command-line flags,
//! validated into one [`Config`]. Errors name the variable or flag at fault.
//!
//! Values follow Laravel's `env()` casts: `null`, `(null)` and the empty
//! string mean "not set".

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
    pub apps: Vec<App>,
}

/// A configuration error: what is wrong and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The variables that must be set for the one app read from the environment.
pub const APP_VARS: [&str; 3] = ["REVERB_APP_ID", "REVERB_APP_KEY", "REVERB_APP_SECRET"];

/// Every environment variable revurb reads, with its meaning (README, man page and `--help`).
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        "REVERB_SERVER_HOST",
        "address to listen on (default 0.0.0.0)",
    ),
    ("REVERB_SERVER_PORT", "port to listen on (default 8080)"),
    ("REVERB_SERVER_PATH", "route prefix (default none)"),
    ("REVERB_HOST", "public host name (--hostname)"),
    (
        "REVERB_MAX_REQUEST_SIZE",
        "largest HTTP request in bytes (default 10000)",
    ),
    (
        "REVERB_WRITE_QUEUE_LIMIT",
        "bytes queued for a slow client before it is dropped with 4100 (default 524288)",
    ),
    (
        "REVERB_REQUEST_TIMEOUT",
        "seconds an HTTP request may take to arrive (default 10)",
    ),
    ("REVERB_APP_ID", "the app's id (required)"),
    ("REVERB_APP_KEY", "the app's key (required)"),
    ("REVERB_APP_SECRET", "the app's secret (required)"),
    (
        "REVERB_APP_PING_INTERVAL",
        "seconds of silence before a ping, and again before a prune (default 60)",
    ),
    (
        "REVERB_APP_ACTIVITY_TIMEOUT",
        "activity_timeout advertised to clients (default 30)",
    ),
    (
        "REVERB_APP_MAX_CONNECTIONS",
        "open connections allowed for the app (default unlimited)",
    ),
    (
        "REVERB_APP_MAX_MESSAGE_SIZE",
        "largest WebSocket message in bytes (default 10000)",
    ),
    (
        "REVERB_ALLOWED_ORIGINS",
        "comma-separated origin hosts, * wildcards (default *)",
    ),
    (
        "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM",
        "all, members or none (default members)",
    ),
    (
        "REVERB_APP_RATE_LIMITING_ENABLED",
        "limit messages per connection (default false)",
    ),
    (
        "REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS",
        "messages per window (default 60)",
    ),
    (
        "REVERB_APP_RATE_LIMIT_DECAY_SECONDS",
        "window length in seconds (default 60)",
    ),
    (
        "REVERB_APP_RATE_LIMIT_TERMINATE",
        "close the connection at the limit (default false)",
    ),
    (
        "REVERB_APP_MAX_PRESENCE_MEMBERS",
        "unique users per presence channel (default 100)",
    ),
    (
        "REVERB_APP_MAX_USER_INFO_SIZE",
        "bytes of presence user_info (default 2048)",
    ),
];

impl Config {
    /// Build the configuration from an environment lookup and the CLI flags.
    pub fn load(
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Flags,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !is_null(v))
        };
        let mut cfg = Config {
            host: "0.0.0.0".into(),
            port: 8080,
            path: String::new(),
            hostname: None,
            max_request_size: 10_000,
            write_queue_limit: 512 * 1024,
            request_timeout: 10,
            debug: false,
            apps: Vec::new(),
        };
        if let Some(v) = get("REVERB_SERVER_HOST") {
            cfg.host = v;
        }
        if let Some(v) = get("REVERB_SERVER_PORT") {
            cfg.port = number("REVERB_SERVER_PORT", &v, 0, 65_535)? as u16;
        }
        if let Some(v) = get("REVERB_SERVER_PATH") {
            cfg.path = normalize_path(&v);
        }
        cfg.hostname = get("REVERB_HOST");
        if let Some(v) = get("REVERB_MAX_REQUEST_SIZE") {
            cfg.max_request_size = number("REVERB_MAX_REQUEST_SIZE", &v, 256, 1 << 30)? as usize;
        }
        if let Some(v) = get("REVERB_WRITE_QUEUE_LIMIT") {
            cfg.write_queue_limit = number("REVERB_WRITE_QUEUE_LIMIT", &v, 1024, 1 << 32)? as usize;
        }
        if let Some(v) = get("REVERB_REQUEST_TIMEOUT") {
            cfg.request_timeout = number("REVERB_REQUEST_TIMEOUT", &v, 1, 3600)?;
        }
        if let Some(app) = app_from_env(&get)? {
            cfg.apps.push(app);
        }

        if let Some(h) = &flags.host {
            cfg.host = h.clone();
        }
        if let Some(p) = &flags.port {
            cfg.port = number("--port", p, 0, 65_535)? as u16;
        }
        if let Some(p) = &flags.path {
            cfg.path = normalize_path(p);
        }
        if let Some(h) = &flags.hostname {
            cfg.hostname = Some(h.clone());
        }
        cfg.debug = flags.debug;

        if cfg.host.is_empty() {
            return Err(ConfigError(
                "--host / REVERB_SERVER_HOST must not be empty".into(),
            ));
        }
        if cfg.apps.is_empty() {
            return Err(ConfigError(format!(
                "no app is configured: set {} (for example REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret)",
                APP_VARS.join(", ")
            )));
        }
        Ok(cfg)
    }

    /// `host:port` to bind.
    pub fn bind_address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn app_from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<App>, ConfigError> {
    let [id, key, secret] = APP_VARS.map(get);
    let (id, key, secret) = match (id, key, secret) {
        (None, None, None) => return Ok(None),
        (Some(id), Some(key), Some(secret)) => (id, key, secret),
        _ => {
            let missing: Vec<&str> = APP_VARS
                .iter()
                .copied()
                .filter(|v| get(v).is_none())
                .collect();
            return Err(ConfigError(format!(
                "incomplete app: {} not set",
                missing.join(", ")
            )));
        }
    };
    let mut app = App::new(&id, &key, &secret);
    if let Some(v) = get("REVERB_APP_PING_INTERVAL") {
        app.ping_interval = number("REVERB_APP_PING_INTERVAL", &v, 1, 86_400)?;
    }
    if let Some(v) = get("REVERB_APP_ACTIVITY_TIMEOUT") {
        app.activity_timeout = number("REVERB_APP_ACTIVITY_TIMEOUT", &v, 1, 86_400)?;
    }
    if let Some(v) = get("REVERB_APP_MAX_CONNECTIONS") {
        app.max_connections = Some(number("REVERB_APP_MAX_CONNECTIONS", &v, 0, u64::MAX)?);
    }
    if let Some(v) = get("REVERB_APP_MAX_MESSAGE_SIZE") {
        app.max_message_size = number("REVERB_APP_MAX_MESSAGE_SIZE", &v, 1, 1 << 30)? as usize;
    }
    if let Some(v) = get("REVERB_ALLOWED_ORIGINS") {
        let origins: Vec<String> = v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if origins.is_empty() {
            return Err(ConfigError(
                "REVERB_ALLOWED_ORIGINS: give at least one origin host, or *".into(),
            ));
        }
        app.allowed_origins = origins;
    }
    if let Some(v) = get("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM") {
        app.accept_client_events_from = ClientEvents::parse(&v).ok_or_else(|| {
            ConfigError(format!(
                "REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM: {v:?} is not one of all, members, none"
            ))
        })?;
    }
    if boolean(
        "REVERB_APP_RATE_LIMITING_ENABLED",
        get("REVERB_APP_RATE_LIMITING_ENABLED"),
    )? {
        let mut limit = RateLimit {
            max_attempts: 60,
            decay_seconds: 60,
            terminate_on_limit: false,
        };
        if let Some(v) = get("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS") {
            limit.max_attempts =
                number("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", &v, 1, u32::MAX as u64)? as u32;
        }
        if let Some(v) = get("REVERB_APP_RATE_LIMIT_DECAY_SECONDS") {
            limit.decay_seconds = number("REVERB_APP_RATE_LIMIT_DECAY_SECONDS", &v, 1, 86_400)?;
        }
        limit.terminate_on_limit = boolean(
            "REVERB_APP_RATE_LIMIT_TERMINATE",
            get("REVERB_APP_RATE_LIMIT_TERMINATE"),
        )?;
        app.rate_limit = Some(limit);
    }
    if let Some(v) = get("REVERB_APP_MAX_PRESENCE_MEMBERS") {
        app.max_presence_members =
            number("REVERB_APP_MAX_PRESENCE_MEMBERS", &v, 1, 1_000_000)? as usize;
    }
    if let Some(v) = get("REVERB_APP_MAX_USER_INFO_SIZE") {
        app.max_user_info_size = number("REVERB_APP_MAX_USER_INFO_SIZE", &v, 2, 1 << 20)? as usize;
    }
    Ok(Some(app))
}

fn is_null(v: &str) -> bool {
    matches!(v, "" | "null" | "(null)")
}

/// An unsigned integer within `min..=max`, or an error naming `name`.
pub fn number(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(ConfigError(format!(
            "{name}: {v} is out of range ({min} to {max})"
        ))),
        Err(_) => Err(ConfigError(format!("{name}: {v:?} is not a whole number"))),
    }
}

/// Laravel's boolean casts: true/false, (true)/(false), 1/0, yes/no, on/off.
pub fn boolean(name: &str, v: Option<String>) -> Result<bool, ConfigError> {
    match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(false),
        Some("true" | "(true)" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "(false)" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError(format!(
            "{name}: {other:?} is not true or false"
        ))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], flags: Flags) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&|k| map.get(k).cloned(), &flags)
    }

    const APP: [(&str, &str); 3] = [
        ("REVERB_APP_ID", "app-id"),
        ("REVERB_APP_KEY", "app-key"),
        ("REVERB_APP_SECRET", "app-secret"),
    ];

    #[test]
    fn defaults() {
        let c = load(&APP, Flags::default()).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("0.0.0.0", 8080, "")
        );
        assert_eq!(c.max_request_size, 10_000);
        let a = &c.apps[0];
        assert_eq!(
            (a.id.as_str(), a.key.as_str(), a.secret.as_str()),
            ("app-id", "app-key", "app-secret")
        );
        assert_eq!(
            (a.ping_interval, a.activity_timeout, a.max_message_size),
            (60, 30, 10_000)
        );
        assert_eq!(a.max_connections, None);
        assert_eq!(a.allowed_origins, vec!["*"]);
        assert_eq!(a.accept_client_events_from, ClientEvents::Members);
    }

    #[test]
    fn environment_and_flags() {
        let mut vars = APP.to_vec();
        vars.extend([
            ("REVERB_SERVER_HOST", "127.0.0.1"),
            ("REVERB_SERVER_PORT", "9000"),
            ("REVERB_SERVER_PATH", "ws/"),
            ("REVERB_APP_PING_INTERVAL", "5"),
            ("REVERB_APP_MAX_CONNECTIONS", "3"),
            ("REVERB_ALLOWED_ORIGINS", "laravel.com, *.laravel.com"),
            ("REVERB_APP_RATE_LIMITING_ENABLED", "true"),
            ("REVERB_APP_RATE_LIMIT_MAX_ATTEMPTS", "3"),
            ("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "all"),
        ]);
        let flags = Flags {
            port: Some("0".into()),
            debug: true,
            ..Flags::default()
        };
        let c = load(&vars, flags).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str(), c.debug),
            ("127.0.0.1", 0, "/ws", true)
        );
        let a = &c.apps[0];
        assert_eq!(a.ping_interval, 5);
        assert_eq!(a.max_connections, Some(3));
        assert_eq!(a.allowed_origins, vec!["laravel.com", "*.laravel.com"]);
        assert_eq!(a.rate_limit.as_ref().map(|r| r.max_attempts), Some(3));
        assert_eq!(a.accept_client_events_from, ClientEvents::All);
    }

    #[test]
    fn null_means_unset() {
        let mut vars = APP.to_vec();
        vars.push(("REVERB_APP_MAX_CONNECTIONS", "null"));
        assert_eq!(
            load(&vars, Flags::default()).unwrap().apps[0].max_connections,
            None
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let e = load(&[], Flags::default()).unwrap_err().0;
        assert!(
            e.contains("REVERB_APP_ID") && e.contains("REVERB_APP_SECRET"),
            "{e}"
        );
        let e = load(&APP[..2], Flags::default()).unwrap_err().0;
        assert!(e.contains("REVERB_APP_SECRET not set"), "{e}");
        let mut vars = APP.to_vec();
        vars.push(("REVERB_SERVER_PORT", "eighty"));
        assert!(
            load(&vars, Flags::default())
                .unwrap_err()
                .0
                .contains("REVERB_SERVER_PORT")
        );
        let flags = Flags {
            port: Some("70000".into()),
            ..Flags::default()
        };
        assert!(load(&APP, flags).unwrap_err().0.contains("--port"));
        let mut vars = APP.to_vec();
        vars.push(("REVERB_APP_ACCEPT_CLIENT_EVENTS_FROM", "everyone"));
        assert!(
            load(&vars, Flags::default())
                .unwrap_err()
                .0
                .contains("ACCEPT_CLIENT_EVENTS_FROM")
        );
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path("ws"), "/ws");
        assert_eq!(normalize_path("/ws/"), "/ws");
        assert_eq!(normalize_path("/"), "");
        assert_eq!(normalize_path(""), "");
    }
}

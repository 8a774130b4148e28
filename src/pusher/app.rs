//! One application's settings (`apps.apps[]` in Reverb's config): its id, key
//! and secret, and the per-app limits the core enforces. Pure data.

/// Who may send client events (`accept_client_events_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvents {
    /// Any connection, member or not, on private and presence channels.
    All,
    /// Only connections subscribed to the channel (Reverb's default).
    Members,
    /// Nobody: 4301 "The app does not have client messaging enabled."
    None,
}

impl ClientEvents {
    pub fn parse(s: &str) -> Option<ClientEvents> {
        match s {
            "all" => Some(ClientEvents::All),
            "members" => Some(ClientEvents::Members),
            "none" => Some(ClientEvents::None),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ClientEvents::All => "all",
            ClientEvents::Members => "members",
            ClientEvents::None => "none",
        }
    }
}

/// Per-connection message rate limit (Reverb's `rate_limiting`): a fixed
/// window of `decay_seconds` that starts at the first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub max_attempts: u32,
    pub decay_seconds: u64,
    pub terminate_on_limit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    /// Seconds of silence before the server pings a connection; the same
    /// again without an answer and it is pruned with 4201.
    pub ping_interval: u64,
    /// Advertised to clients in `connection_established`.
    pub activity_timeout: u64,
    /// Open WebSockets of this app on this node; `None` is unlimited.
    pub max_connections: Option<u64>,
    /// Largest WebSocket message in bytes (all fragments together).
    pub max_message_size: usize,
    /// Origin host patterns (`*` wildcard); `["*"]` allows every origin.
    pub allowed_origins: Vec<String>,
    pub accept_client_events_from: ClientEvents,
    pub rate_limit: Option<RateLimit>,
    /// Unique users per presence channel (Pusher's limit is 100).
    pub max_presence_members: usize,
    /// Bytes of `user_info` JSON per presence member (Pusher's limit is 1 KB, revurb 2 KB).
    pub max_user_info_size: usize,
    /// Where the app's webhooks go (`webhooks` in the JSON config).
    pub webhooks: Vec<crate::webhook::Webhook>,
    /// How long `channel_vacated` and `member_removed` wait (and are
    /// dropped if the channel is occupied again or the user is back).
    pub webhook_delay_ms: u64,
    /// Authorized connections: a connection must sign in or join a private
    /// or presence channel within `user_authentication_timeout` seconds, or
    /// it is closed with 4009 (soketi's name for Pusher's feature).
    pub enable_user_authentication: bool,
    /// Seconds a connection has to authorize when that is required.
    pub user_authentication_timeout: u64,
    /// Tell the subscribers of public and private channels their
    /// cluster-wide count (`pusher_internal:subscription_count`).
    pub enable_subscription_count: bool,
}

impl App {
    /// An app with Reverb's defaults for everything but the credentials.
    pub fn new(id: &str, key: &str, secret: &str) -> App {
        App {
            id: id.to_string(),
            key: key.to_string(),
            secret: secret.to_string(),
            ping_interval: 60,
            activity_timeout: 30,
            max_connections: None,
            max_message_size: 10_000,
            allowed_origins: vec!["*".to_string()],
            accept_client_events_from: ClientEvents::Members,
            rate_limit: None,
            max_presence_members: 100,
            max_user_info_size: 2048,
            webhooks: Vec::new(),
            webhook_delay_ms: 3000,
            enable_user_authentication: false,
            user_authentication_timeout: 30,
            enable_subscription_count: false,
        }
    }

    /// Reverb's origin rule (`Server::verifyOrigin`): the host of the Origin
    /// header, without scheme or port, matched case-sensitively against each
    /// pattern, where `*` matches any run of characters. No Origin is refused
    /// unless `*` is allowed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.iter().any(|p| p == "*") {
            return true;
        }
        let Some(host) = origin.and_then(origin_host) else {
            return false;
        };
        self.allowed_origins.iter().any(|p| glob_match(p, host))
    }

    /// Whether any of the app's webhooks wants an event of `kind` on
    /// `channel` (the hub builds none that nobody wants).
    pub fn wants_webhook(&self, kind: crate::webhook::Kind, channel: &str) -> bool {
        self.webhooks.iter().any(|w| w.wants(kind, channel))
    }
}

/// The host part of an Origin URL such as `https://sub.example.com:8443`.
pub fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then_some(host)
}

/// Anchored wildcard match where `*` matches any (possibly empty) run.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(origins: &[&str]) -> App {
        let mut a = App::new("1", "k", "s");
        a.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        a
    }

    // reference 9, unit ServerTest 13 "rejects an invalid origin"
    #[test]
    fn rejects_invalid_origins() {
        assert!(!app(&["laravel.com"]).origin_allowed(Some("http://localhost")));
        assert!(!app(&["laravel.com"]).origin_allowed(Some("http://sub.laravel.com")));
        assert!(!app(&["*.laravel.com"]).origin_allowed(Some("http://laravel.com")));
        assert!(!app(&["laravel.com"]).origin_allowed(None));
    }

    // reference 9, unit ServerTest 14 "accepts a valid origin"
    #[test]
    fn accepts_valid_origins() {
        assert!(app(&["localhost"]).origin_allowed(Some("http://localhost")));
        assert!(app(&["localhost", "*.localhost"]).origin_allowed(Some("http://sub.localhost")));
        assert!(app(&["laravel.com"]).origin_allowed(Some("https://laravel.com:8443/path")));
        assert!(app(&["*"]).origin_allowed(None));
    }

    #[test]
    fn origin_host_forms() {
        assert_eq!(origin_host("http://a.b:80"), Some("a.b"));
        assert_eq!(origin_host("https://[::1]:8080"), Some("::1"));
        assert_eq!(origin_host("null"), Some("null"));
        assert_eq!(origin_host("http://"), None);
    }

    #[test]
    fn glob() {
        assert!(glob_match("*.x.com", "a.x.com"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(!glob_match("a*c", "abbbd"));
        assert!(glob_match("**", ""));
        assert!(!glob_match("Laravel.com", "laravel.com"));
    }
}

//! Redis for horizontal scaling: where to find the server ([`Target`]), the
//! RESP2 codec (`resp`) and a sans-IO client connection (`client`). Only
//! `event_loop` opens sockets (and the `restart` command, in its own
//! process). What the nodes say to each other over it is not Redis's
//! business: that envelope belongs to the hub (`pusher::cluster::envelope`).

pub mod client;
pub mod resp;

use std::fmt;

/// Where Redis is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `rediss://` or `REDIS_SCHEME=tls`: speak TLS.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u64,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never print the password
        write!(f, "Target({self})")
    }
}

/// `redis://host:port/db` (or `rediss://`), without credentials: for logs.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "{scheme}://{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

impl Target {
    /// Parse `redis://[user[:password]@]host[:port][/db]` or `rediss://...`.
    /// User and password may be percent-encoded; a query string is ignored.
    pub fn from_url(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else {
            return Err(format!(
                "{:?} must start with redis:// or rediss://",
                mask_url(url)
            ));
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user)?, decode(pass)?),
                None => (decode(u)?, None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed [ in the host".to_string())?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            None | Some("") => 6379,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{p:?} is not a port number")),
            },
        };
        let db = match path.trim_end_matches('/') {
            "" => 0,
            d => d
                .parse::<u64>()
                .map_err(|_| format!("{d:?} is not a database number"))?,
        };
        Ok(Target {
            tls,
            host,
            port,
            username,
            password,
            db,
        })
    }
}

/// Percent-decode one URL component; empty becomes `None`.
fn decode(s: &str) -> Result<Option<String>, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a bad %-escape in the user or password".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).map_err(|_| "the user or password is not UTF-8".to_string())?;
    Ok((!s.is_empty()).then_some(s))
}

/// The URL with any password replaced by `****`, for `revurb config` and errors.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let after = &url[scheme_end + 3..];
    let authority_end = after.find('/').unwrap_or(after.len());
    match after[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &after[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                "****".to_string() // a lone value is a password to Redis clients
            };
            format!("{}{masked}{}", &url[..scheme_end + 3], &after[at..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = Target::from_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.db),
            (false, "127.0.0.1", 6380, 2)
        );
        assert_eq!((t.username, t.password), (None, None));

        let t = Target::from_url("rediss://u%40x:p%3Ass@redis.example:7000").unwrap();
        assert!(t.tls);
        assert_eq!(t.username.as_deref(), Some("u@x"));
        assert_eq!(t.password.as_deref(), Some("p:ss"));
        assert_eq!((t.port, t.db), (7000, 0));

        let t = Target::from_url("redis://:secret@localhost").unwrap();
        assert_eq!((t.username, t.password.as_deref()), (None, Some("secret")));
        assert_eq!(t.port, 6379);

        let t = Target::from_url("redis://[::1]:6379/0?timeout=5").unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.to_string(), "redis://[::1]:6379/0");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "redis://",
            "redis://h:0",
            "redis://h:99999",
            "redis://h/x",
            "redis://u:%zz@h",
            "unix:///tmp/redis.sock",
        ] {
            assert!(Target::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn never_shows_the_password() {
        assert_eq!(mask_url("redis://u:pw@h:1/0"), "redis://u:****@h:1/0");
        assert_eq!(mask_url("redis://:pw@h"), "redis://:****@h");
        assert_eq!(mask_url("redis://h:1"), "redis://h:1");
        let t = Target::from_url("redis://u:pw@h:1").unwrap();
        assert!(!format!("{t:?} {t}").contains("pw"));
        let e = Target::from_url("http://u:pw@h").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }
}

//! The Pusher protocol errors the server sends a client: one variant per
//! error, each with its code and its message exactly as Reverb and Pusher send
//! them (clients and tests match the text).
//!
//! This module only names the errors; when one is sent, and whether the
//! connection closes after it, is the hub's decision.

/// An error the server sends as `pusher:error` (and, for some, as the close
/// code and reason that follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PusherError {
    /// 4001: no app has the key of `/app/{key}`.
    AppNotFound,
    /// 4004: the app's `max_connections` is reached (on every node).
    OverQuota,
    /// 4009: the `Origin` header is not in the app's allowed origins.
    Origin,
    /// 4009: a private or presence subscription, or a signin, with bad auth.
    Unauthorized,
    /// 4009: a client event on a channel the connection is not in.
    NotMember,
    /// 4009: a channel name no client may subscribe to.
    InvalidChannel,
    /// 4100: the client stopped reading and its write queue overflowed.
    OverCapacity,
    /// 4200: a message that is not a Pusher message.
    InvalidMessage,
    /// 4200: the server is stopping or the app was removed.
    Shutdown,
    /// 4201: no answer to a ping within the ping interval.
    PongTimeout,
    /// 4301: over the app's rate limit.
    RateLimit,
    /// 4301: client events are off for the app.
    ClientEventsOff,
    /// 4301: a client event on a public or encrypted channel.
    ClientEventsChannel,
    /// 4300: a subscription past the per-connection channel cap.
    TooManyChannels,
    /// 4009: a new user on a presence channel at its member limit.
    PresenceFull,
    /// 4009: presence `user_info` larger than the app allows.
    UserInfoTooBig,
    /// 4009: closed by `terminate_connections` for its user.
    Terminated,
    /// 4009: a `pusher:signin` whose `watchlist` is not a list of user ids
    /// (the signin is refused and the connection closes).
    InvalidWatchlist,
    /// 4009: the app wants authorized connections and this one neither
    /// signed in nor joined a private or presence channel in time.
    AuthorizationTimeout,
    /// 4302: a watchlist over 100 user ids; the first 100 are kept and the
    /// signin succeeds (Pusher's rule).
    WatchlistLimit,
}

impl PusherError {
    /// Every variant, so a test can check each one is documented.
    pub const ALL: [PusherError; 20] = [
        PusherError::AppNotFound,
        PusherError::OverQuota,
        PusherError::Origin,
        PusherError::Unauthorized,
        PusherError::NotMember,
        PusherError::InvalidChannel,
        PusherError::OverCapacity,
        PusherError::InvalidMessage,
        PusherError::Shutdown,
        PusherError::PongTimeout,
        PusherError::RateLimit,
        PusherError::ClientEventsOff,
        PusherError::ClientEventsChannel,
        PusherError::TooManyChannels,
        PusherError::PresenceFull,
        PusherError::UserInfoTooBig,
        PusherError::Terminated,
        PusherError::InvalidWatchlist,
        PusherError::AuthorizationTimeout,
        PusherError::WatchlistLimit,
    ];

    /// The Pusher error code (also the WebSocket close code when it closes).
    pub const fn code(self) -> u16 {
        match self {
            PusherError::AppNotFound => 4001,
            PusherError::OverQuota => 4004,
            PusherError::Origin
            | PusherError::Unauthorized
            | PusherError::NotMember
            | PusherError::InvalidChannel
            | PusherError::PresenceFull
            | PusherError::UserInfoTooBig
            | PusherError::Terminated
            | PusherError::InvalidWatchlist
            | PusherError::AuthorizationTimeout => 4009,
            PusherError::OverCapacity => 4100,
            PusherError::InvalidMessage | PusherError::Shutdown => 4200,
            PusherError::PongTimeout => 4201,
            PusherError::TooManyChannels => 4300,
            PusherError::WatchlistLimit => 4302,
            PusherError::RateLimit
            | PusherError::ClientEventsOff
            | PusherError::ClientEventsChannel => 4301,
        }
    }

    /// The message, word for word as Reverb sends it.
    pub const fn message(self) -> &'static str {
        match self {
            PusherError::AppNotFound => "Application does not exist",
            PusherError::OverQuota => "Application is over connection quota",
            PusherError::Origin => "Origin not allowed",
            PusherError::Unauthorized => "Connection is unauthorized",
            PusherError::NotMember => "The client is not a member of the specified channel.",
            PusherError::InvalidChannel => "Invalid channel name.",
            PusherError::OverCapacity => "Over capacity",
            PusherError::InvalidMessage => "Invalid message format",
            PusherError::Shutdown => "Server shutting down",
            PusherError::PongTimeout => "Pong reply not received in time",
            PusherError::RateLimit => "Rate limit exceeded",
            PusherError::ClientEventsOff => "The app does not have client messaging enabled.",
            PusherError::ClientEventsChannel => {
                "Client events are only allowed on private and presence channels."
            }
            PusherError::TooManyChannels => "Too many channels for one connection.",
            PusherError::PresenceFull => "Presence channel is full.",
            PusherError::UserInfoTooBig => "Presence user_info is too large.",
            PusherError::Terminated => "Connection terminated",
            PusherError::InvalidWatchlist => {
                "The watchlist in user_data must be an array of user id strings."
            }
            PusherError::AuthorizationTimeout => {
                "Connection not authorized within timeout: sign in or subscribe to a private or presence channel."
            }
            PusherError::WatchlistLimit => {
                "Watchlist limit exceeded. Only the first 100 user IDs are accepted."
            }
        }
    }
}

impl std::fmt::Display for PusherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::PusherError;

    #[test]
    fn all_lists_every_variant_once() {
        let mut seen = std::collections::HashSet::new();
        for e in PusherError::ALL {
            assert!(seen.insert(e), "{e:?} twice");
            // a match without a wildcard: a new variant fails to compile here
            // until it is added to ALL (and counted below)
            match e {
                PusherError::AppNotFound
                | PusherError::OverQuota
                | PusherError::Origin
                | PusherError::Unauthorized
                | PusherError::NotMember
                | PusherError::InvalidChannel
                | PusherError::OverCapacity
                | PusherError::InvalidMessage
                | PusherError::Shutdown
                | PusherError::PongTimeout
                | PusherError::RateLimit
                | PusherError::ClientEventsOff
                | PusherError::ClientEventsChannel
                | PusherError::TooManyChannels
                | PusherError::PresenceFull
                | PusherError::UserInfoTooBig
                | PusherError::Terminated
                | PusherError::InvalidWatchlist
                | PusherError::AuthorizationTimeout
                | PusherError::WatchlistLimit => {}
            }
        }
        assert_eq!(seen.len(), 20);
    }

    #[test]
    fn codes_are_in_the_pusher_ranges() {
        for e in PusherError::ALL {
            assert!((4000..4400).contains(&e.code()), "{e}");
            assert!(!e.message().is_empty());
            // a close frame's reason has room for 123 bytes (RFC 6455 5.5)
            assert!(e.message().len() <= 123, "{e}");
        }
    }
}

//! Server and client settings, and how a quality of service finds its channel.

use std::time::Duration;

use crate::{ChannelLayout, MessageError};

/// A per-player limit on incoming messages: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Messages per second refilled.
    pub per_second: f64,
    /// Messages that may arrive at once (the bucket's size).
    pub burst: f64,
}

/// A limit on authentication attempts per source address, kept across connections: a token
/// bucket per source and a backoff after consecutive failures.
///
/// A *source* is the remote IP address cut to a prefix ([`ipv4_prefix`](Self::ipv4_prefix),
/// [`ipv6_prefix`](Self::ipv6_prefix)): every connection from it, however often it reconnects,
/// draws on one budget. An attempt over the budget is not shown to the
/// [`Authenticator`](crate::Authenticator): the client is sent away with
/// [`DisconnectReason::AuthThrottled`](crate::DisconnectReason::AuthThrottled), which says when
/// to try again, and the server counts it in
/// [`ServerStats::auth_throttled`](crate::ServerStats::auth_throttled).
///
/// After [`backoff_after`](Self::backoff_after) failed attempts in a row, each further failure
/// bars the source for [`backoff_base`](Self::backoff_base), doubling with every failure up to
/// [`backoff_max`](Self::backoff_max); an accepted attempt clears the count. Throttled attempts
/// do not lengthen the bar. Local (host-mode) clients are never throttled.
///
/// Clients behind one NAT share a budget, so the default burst lets a group log in at once.
/// Test rigs that connect many clients from one address should raise the limits or turn the
/// throttle off (`auth_throttle: None`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthThrottle {
    /// Attempts per second refilled to each source's bucket (at least 0.001, at most a
    /// million).
    pub per_second: f64,
    /// Attempts a source may make at once: the bucket's size (1 to a million).
    pub burst: u32,
    /// Failed attempts in a row a source may make before the backoff starts (at most a
    /// million; 0 backs off from the first failure).
    pub backoff_after: u32,
    /// The first bar after [`backoff_after`](Self::backoff_after) failures; it doubles with
    /// every further failure (at most `backoff_max`).
    pub backoff_base: Duration,
    /// The longest bar (at most a day).
    pub backoff_max: Duration,
    /// How many leading bits of an IPv4 address make one source (0 to 32; 32: each address).
    pub ipv4_prefix: u8,
    /// How many leading bits of an IPv6 address make one source (0 to 128; the default 64
    /// is one subnet, which one customer usually holds whole).
    pub ipv6_prefix: u8,
    /// The most sources remembered (1 to 2^24). A source's record is forgotten once it has
    /// been quiet for twice the longer of `backoff_max` and the time to refill its bucket;
    /// when the table is full, the source heard from least recently is forgotten first.
    /// Each record takes on the order of a hundred bytes.
    pub max_sources: usize,
    /// Whether loopback sources (`127.0.0.0/8`, `::1`) are exempt, as they are from the
    /// transport's address limits: a test rig or a bot swarm on the developer's own machine
    /// logs in unthrottled. Default `true`. Set it to `false` when something on the same
    /// machine forwards remote players (a proxy or relay that presents them all from
    /// loopback), or better, give the server their real addresses.
    pub exempt_loopback: bool,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            per_second: 1.0,
            burst: 10,
            backoff_after: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ipv4_prefix: 32,
            ipv6_prefix: 64,
            max_sources: 65_536,
            exempt_loopback: true,
        }
    }
}

impl AuthThrottle {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MessageError> {
        let bad = |field, reason| Err(MessageError::Config { field, reason });
        if !(self.per_second >= 1e-3 && self.per_second <= 1e6) {
            return bad("auth_throttle.per_second", "must be between 0.001 and 1,000,000");
        }
        if !(1..=1_000_000).contains(&self.burst) {
            return bad("auth_throttle.burst", "must be between 1 and 1,000,000");
        }
        if self.backoff_after > 1_000_000 {
            return bad("auth_throttle.backoff_after", "must be at most 1,000,000");
        }
        if self.backoff_max > Duration::from_secs(86_400) {
            return bad("auth_throttle.backoff_max", "must be at most a day");
        }
        if self.backoff_base > self.backoff_max {
            return bad("auth_throttle.backoff_base", "must be at most backoff_max");
        }
        if self.ipv4_prefix > 32 {
            return bad("auth_throttle.ipv4_prefix", "must be at most 32 bits");
        }
        if self.ipv6_prefix > 128 {
            return bad("auth_throttle.ipv6_prefix", "must be at most 128 bits");
        }
        if !(1..=1 << 24).contains(&self.max_sources) {
            return bad("auth_throttle.max_sources", "must be between 1 and 2^24");
        }
        Ok(())
    }
}

/// Settings of a [`NetworkServer`](crate::NetworkServer).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's name in its logs: everything it (and its transport) logs happens inside a
    /// `tracing` span `endpoint{name=…}`, so two endpoints in one process are told apart.
    pub name: String,
    /// The channels of every connection; clients and the transport must use the same.
    pub channels: ChannelLayout,
    /// The largest encoded message (id included) accepted from a player or sent; larger
    /// incoming ones are dropped and counted.
    pub max_message_size: usize,
    /// How long a connected player has to authenticate before it is disconnected.
    pub auth_timeout: Duration,
    /// The limit on messages from each remote player (`None`: unlimited). Messages over it are
    /// dropped and counted against the error budget.
    pub rate_limit: Option<RateLimit>,
    /// The limit on authentication attempts per source address, across connections (`None`:
    /// unlimited).
    pub auth_throttle: Option<AuthThrottle>,
    /// How many bad messages (unknown, undecodable, oversized, over the rate limit or sent
    /// before authentication) a player may send before it is disconnected.
    pub error_budget: u32,
    /// How long a player that is sent away with a reason (rejected, kicked) keeps its
    /// connection, so the reason reaches it, unless it closes first.
    pub kick_linger: Duration,
    /// Transport events handled per [`update`](crate::NetworkServer::update), so a flood cannot
    /// keep the call from returning.
    pub max_events_per_update: usize,
    /// The server's ticks per second (1 to 1000): its tick at a moment is its clock times
    /// this, rounded down ([`ServerContext::server_tick`](crate::ServerContext::server_tick)),
    /// and clients learn it with the time
    /// ([`ClientContext::server_tick`](crate::ClientContext::server_tick)). Default 60: one
    /// tick per frame of a 60 Hz game, and 16.7 ms, coarser than a synchronised client's error
    /// of a few milliseconds, so server and clients agree on the tick but near its edges.
    pub tick_rate: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "server".to_string(),
            channels: ChannelLayout::default(),
            max_message_size: 256 * 1024,
            auth_timeout: Duration::from_secs(10),
            rate_limit: Some(RateLimit { per_second: 1000.0, burst: 2000.0 }),
            auth_throttle: Some(AuthThrottle::default()),
            error_budget: 20,
            kick_linger: Duration::from_secs(1),
            max_events_per_update: 65_536,
            tick_rate: 60,
        }
    }
}

impl ServerConfig {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MessageError> {
        validate_common(&self.channels, self.max_message_size, self.max_events_per_update)?;
        if let Some(limit) = self.rate_limit {
            if !(limit.per_second > 0.0 && limit.burst >= 1.0) {
                return Err(MessageError::Config {
                    field: "rate_limit",
                    reason: "needs a positive rate and a burst of at least 1",
                });
            }
        }
        if let Some(throttle) = &self.auth_throttle {
            throttle.validate()?;
        }
        if !(1..=crate::time::MAX_TICK_RATE).contains(&self.tick_rate) {
            return Err(MessageError::Config {
                field: "tick_rate",
                reason: "must be between 1 and 1000 ticks per second",
            });
        }
        if self.kick_linger > Duration::from_secs(3600) {
            return Err(MessageError::Config {
                field: "kick_linger",
                reason: "must be at most an hour",
            });
        }
        if self.auth_timeout.is_zero() || self.auth_timeout > Duration::from_secs(86_400) {
            return Err(MessageError::Config {
                field: "auth_timeout",
                reason: "must be positive and at most a day",
            });
        }
        Ok(())
    }
}

/// Settings of a [`NetworkClient`](crate::NetworkClient).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client's name in its logs (see [`ServerConfig::name`]).
    pub name: String,
    /// The channels of the connection; the server and the transport must use the same.
    pub channels: ChannelLayout,
    /// The largest encoded message (id included) sent or accepted.
    pub max_message_size: usize,
    /// Transport events handled per [`update`](crate::NetworkClient::update).
    pub max_events_per_update: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            name: "client".to_string(),
            channels: ChannelLayout::default(),
            max_message_size: 256 * 1024,
            max_events_per_update: 65_536,
        }
    }
}

impl ClientConfig {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MessageError> {
        validate_common(&self.channels, self.max_message_size, self.max_events_per_update)
    }
}

fn validate_common(
    channels: &ChannelLayout,
    max_message_size: usize,
    max_events: usize,
) -> Result<(), MessageError> {
    channels.control()?;
    if max_message_size < 2 {
        return Err(MessageError::Config {
            field: "max_message_size",
            reason: "must hold at least the two-byte id",
        });
    }
    if max_events == 0 {
        return Err(MessageError::Config {
            field: "max_events_per_update",
            reason: "must be at least 1",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &ServerConfig) -> Option<&'static str> {
        match config.validate() {
            Ok(()) => None,
            Err(MessageError::Config { field, .. }) => Some(field),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    /// Every throttle field has bounds, and the bad one is named.
    #[test]
    fn auth_throttle_fields_are_bounded() {
        assert_eq!(field_of(&ServerConfig::default()), None);
        assert_eq!(
            field_of(&ServerConfig { auth_throttle: None, ..ServerConfig::default() }),
            None
        );
        let day = Duration::from_secs(86_400);
        let bad: [(AuthThrottle, &str); 11] = [
            (AuthThrottle { per_second: 0.0, ..Default::default() }, "per_second"),
            (AuthThrottle { per_second: f64::NAN, ..Default::default() }, "per_second"),
            (AuthThrottle { per_second: f64::INFINITY, ..Default::default() }, "per_second"),
            (AuthThrottle { burst: 0, ..Default::default() }, "burst"),
            (AuthThrottle { burst: u32::MAX, ..Default::default() }, "burst"),
            (AuthThrottle { backoff_after: u32::MAX, ..Default::default() }, "backoff_after"),
            (AuthThrottle { backoff_max: day * 2, ..Default::default() }, "backoff_max"),
            (AuthThrottle { backoff_base: day, ..Default::default() }, "backoff_base"),
            (AuthThrottle { ipv4_prefix: 33, ..Default::default() }, "ipv4_prefix"),
            (AuthThrottle { ipv6_prefix: 129, ..Default::default() }, "ipv6_prefix"),
            (AuthThrottle { max_sources: 0, ..Default::default() }, "max_sources"),
        ];
        for (throttle, name) in bad {
            let config = ServerConfig { auth_throttle: Some(throttle), ..ServerConfig::default() };
            let field = field_of(&config).unwrap_or_else(|| panic!("{throttle:?} validated"));
            assert_eq!(field.strip_prefix("auth_throttle."), Some(name), "{throttle:?}");
        }
        // The extremes that validate.
        let edge = AuthThrottle {
            per_second: 1e-3,
            burst: 1_000_000,
            backoff_after: 0,
            backoff_base: day,
            backoff_max: day,
            ipv4_prefix: 0,
            ipv6_prefix: 128,
            max_sources: 1 << 24,
            exempt_loopback: false,
        };
        assert_eq!(
            field_of(&ServerConfig { auth_throttle: Some(edge), ..Default::default() }),
            None
        );
    }
}

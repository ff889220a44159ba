//! Server and client settings, and how a quality of service finds its channel.

use std::time::Duration;

use sturnus_transport::{ChannelId, EndpointConfig, HostError, Qos};

use crate::MessageError;

/// The transport settings the message layer uses by default: the transport's defaults with one
/// channel of each of the eleven [`Qos`] kinds (channel *i* is `Qos::ALL[i]`), so any message
/// can name any kind.
pub fn default_transport() -> EndpointConfig {
    EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() }
}

/// A per-player limit on incoming messages: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Messages per second refilled.
    pub per_second: f64,
    /// Messages that may arrive at once (the bucket's size).
    pub burst: f64,
}

/// Settings of a [`NetworkServer`](crate::NetworkServer).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The transport's settings; both sides must use the same channel layout.
    pub transport: EndpointConfig,
    /// The largest encoded message (id included) accepted from a player or sent; larger
    /// incoming ones are dropped and counted.
    pub max_message_size: usize,
    /// How long a connected player has to authenticate before it is disconnected.
    pub auth_timeout: Duration,
    /// The limit on messages from each remote player (`None`: unlimited). Messages over it are
    /// dropped and counted against the error budget.
    pub rate_limit: Option<RateLimit>,
    /// How many bad messages (unknown, undecodable, oversized, over the rate limit or sent
    /// before authentication) a player may send before it is disconnected.
    pub error_budget: u32,
    /// How long a player that is sent away with a reason (rejected, kicked) keeps its
    /// connection, so the reason reaches it, unless it closes first.
    pub kick_linger: Duration,
    /// Transport events handled per [`update`](crate::NetworkServer::update), so a flood cannot
    /// keep the call from returning.
    pub max_events_per_update: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            transport: default_transport(),
            max_message_size: 256 * 1024,
            auth_timeout: Duration::from_secs(10),
            rate_limit: Some(RateLimit { per_second: 1000.0, burst: 2000.0 }),
            error_budget: 20,
            kick_linger: Duration::from_secs(1),
            max_events_per_update: 65_536,
        }
    }
}

impl ServerConfig {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MessageError> {
        validate_common(&self.transport, self.max_message_size, self.max_events_per_update)?;
        if let Some(limit) = self.rate_limit {
            if !(limit.per_second > 0.0 && limit.burst >= 1.0) {
                return Err(MessageError::Config {
                    field: "rate_limit",
                    reason: "needs a positive rate and a burst of at least 1",
                });
            }
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
    /// The transport's settings; both sides must use the same channel layout.
    pub transport: EndpointConfig,
    /// The largest encoded message (id included) sent or accepted.
    pub max_message_size: usize,
    /// Transport events handled per [`update`](crate::NetworkClient::update).
    pub max_events_per_update: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            transport: default_transport(),
            max_message_size: 256 * 1024,
            max_events_per_update: 65_536,
        }
    }
}

impl ClientConfig {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), MessageError> {
        validate_common(&self.transport, self.max_message_size, self.max_events_per_update)
    }
}

fn validate_common(
    transport: &EndpointConfig,
    max_message_size: usize,
    max_events: usize,
) -> Result<(), MessageError> {
    transport.validate().map_err(HostError::from)?;
    if !transport.channels.contains(&INTERNAL_QOS) {
        return Err(MessageError::Config {
            field: "transport.channels",
            reason: "must include a ReliableFragmentedSequenced channel (the message layer's own)",
        });
    }
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

/// The kind of channel the layer's own messages (authentication, goodbyes) use.
pub(crate) const INTERNAL_QOS: Qos = Qos::ReliableFragmentedSequenced;

/// The first channel of each kind.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    by_kind: [Option<ChannelId>; Qos::ALL.len()],
}

impl Channels {
    pub(crate) fn new(channels: &[Qos]) -> Self {
        let mut by_kind = [None; Qos::ALL.len()];
        for (index, qos) in channels.iter().enumerate().rev() {
            let kind = kind_index(*qos);
            let id = u8::try_from(index).expect("validated: at most 255 channels");
            by_kind[kind] = Some(ChannelId(id));
        }
        Self { by_kind }
    }

    pub(crate) fn get(&self, qos: Qos) -> Result<ChannelId, MessageError> {
        self.by_kind[kind_index(qos)].ok_or(MessageError::NoChannel(qos))
    }
}

fn kind_index(qos: Qos) -> usize {
    Qos::ALL.iter().position(|q| *q == qos).expect("Qos::ALL lists every kind")
}

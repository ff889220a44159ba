//! Endpoint configuration: every tunable of the protocol, with documented defaults.

use std::time::Duration;

use crate::proto::packet::MAX_HEADER_LEN;
use crate::{ChannelId, ConfigError, Qos};

/// The largest record header a fragment can need: channel (1) + tagged length (3) + message
/// number (2) + fragment index (3) + fragment count (3).
pub const MAX_FRAGMENT_RECORD_OVERHEAD: usize = 12;
/// The most channels a connection can have (ids 0 to 254).
pub const MAX_CHANNELS: usize = 255;
/// The most connections one endpoint can hold (connection ids are 16-bit slots).
pub const MAX_CONNECTIONS_LIMIT: usize = 65_535;

/// Everything an endpoint can be tuned with. Fields marked *must match* are part of the
/// handshake's configuration fingerprint: a peer with different values is rejected with a
/// config-mismatch reason, as UNET required.
///
/// ```
/// use sturnus_transport::{EndpointConfig, Qos};
/// let mut config = EndpointConfig::default();
/// assert_eq!(config.channels, [Qos::ReliableSequenced, Qos::Unreliable]);
/// config.channels.push(Qos::StateUpdate);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Application and version identifier; peers with another id are rejected with a version
    /// mismatch. *Must match.*
    pub protocol_id: u64,
    /// The channels of every connection, by id (index 0 is channel 0). At most 255. *Must match.*
    /// Default: UNET's high-level layout, 0 = `ReliableSequenced`, 1 = `Unreliable`.
    pub channels: Vec<Qos>,
    /// The largest datagram sent, in bytes. 1200 keeps clear of fragmentation on every common
    /// path, IPv6 included. *Must match.*
    pub max_packet_size: usize,
    /// Payload bytes per fragment of a split message. *Must match.*
    pub fragment_size: usize,
    /// The most fragments one message may have; with `fragment_size` this sets the largest
    /// message of a fragmented channel. *Must match.*
    pub max_fragments: usize,
    /// Bytes one connection may hold for messages it cannot deliver yet: partial fragmented
    /// messages, and reliable messages waiting for an earlier one. Past it, unreliable partial
    /// messages are given up oldest first and new reliable data is refused (not acknowledged,
    /// so the sender resends it later); the next message in order is always admitted.
    pub max_reassembly_bytes: usize,
    /// How long a partly reassembled unreliable message waits for its missing pieces.
    pub reassembly_timeout: Duration,
    /// The most connections (incoming and outgoing) this endpoint holds; a connect request past
    /// it is rejected with "server full".
    pub max_connections: usize,
    /// Interval between connect-request retries while connecting.
    pub connect_retry_interval: Duration,
    /// Connect attempts before giving up with a timeout.
    pub connect_attempts: u32,
    /// Silence after which a connection is declared lost. *Must match.*
    pub disconnect_timeout: Duration,
    /// Idle time after which a keepalive is sent so the peer does not time the connection out.
    pub keepalive_interval: Duration,
    /// How long the acknowledgement of an ack-soon packet may wait for outgoing data to ride on
    /// before it is sent alone (other packets wait for `unreliable_ack_every` instead).
    pub ack_delay: Duration,
    /// Ack-soon packets (those with reliable data, and round-trip probes) that may arrive
    /// unacknowledged before an acknowledgement goes out at once instead of waiting
    /// `ack_delay` for data to ride on. A sender's congestion window
    /// is clocked by acknowledgements, so a stream should not wait on the delay; a ping-pong
    /// (one packet each way) still carries its acks on the replies.
    pub ack_every: u32,
    /// Packets carrying only unreliable messages that may arrive unacknowledged before an
    /// acknowledgement goes out at once. Until then such packets are acknowledged only by
    /// packets that go out anyway: nothing is resent for them, so a prompt ack would buy
    /// nothing but statistics, and a server echoing many quiet clients would receive one ack
    /// packet per message. At most 33 (an ack covers 33 packets, and loss is counted from
    /// acks).
    pub unreliable_ack_every: u32,
    /// How often a connection that sends only unreliable data asks for one packet to be
    /// acknowledged at once, for a round-trip time sample (packets with reliable data always
    /// are).
    pub rtt_probe_interval: Duration,
    /// Messages each channel may queue for sending; past it `send` returns a backpressure error.
    pub send_queue_capacity: usize,
    /// Packets carrying reliable data that may be unacknowledged at once.
    pub max_in_flight_packets: usize,
    /// Reliable messages a channel may have between the oldest unacknowledged one and the
    /// newest sent; the receiver buffers at most this many out of order. *Must match.*
    pub reliable_window: u16,
    /// Congestion window at the start of a connection, in packets carrying messages (of any
    /// kind); this much may go out at once, before the first acknowledgement.
    pub initial_congestion_window: usize,
    /// The window never falls below this many packets (nor below twice
    /// `unreliable_ack_every`, what a receiver may leave unacknowledged).
    pub min_congestion_window: usize,
    /// Copies of the disconnect notice sent when a connection is closed (it is not
    /// acknowledged, so it is repeated to survive loss).
    pub disconnect_copies: u32,
    /// Spacing of those copies.
    pub disconnect_copy_interval: Duration,
    /// How long a challenge cookie stays valid.
    pub cookie_lifetime: Duration,
    /// Whether this endpoint accepts incoming connections (a pure client sets `false`).
    pub accept_connections: bool,
    /// Round-trip time assumed before the first measurement. The resend timeout before then is
    /// three times this: the default (333 ms, QUIC's) gives about a second, RFC 6298's initial
    /// timeout, so the first packets on a slow path (a 300 ms round trip) are not all resent
    /// before their first acknowledgement can arrive.
    pub initial_rtt: Duration,
    /// Floor of the resend timeout.
    pub min_resend_timeout: Duration,
    /// Ceiling of the resend timeout.
    pub max_resend_timeout: Duration,
    /// The longest an unacknowledged unit waits between resends once its timeout has doubled
    /// with each resend (the wait never falls below the resend timeout itself). It bounds how
    /// long delivery takes to resume when a link comes back from a blackout.
    pub max_resend_backoff: Duration,
    /// Fixed resend interval of `AllCostDelivery` channels.
    pub all_cost_resend_interval: Duration,
    /// Seed of the endpoint's random numbers (connection salts, cookie key). `None` draws one
    /// from the operating system when the endpoint is made; tests set it for repeatable runs.
    pub seed: Option<u64>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            protocol_id: 0x5354_524E_0000_0001, // "STRN" v1
            channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
            max_packet_size: 1200,
            fragment_size: 1150,
            max_fragments: 1024,
            max_reassembly_bytes: 4 * 1024 * 1024,
            reassembly_timeout: Duration::from_secs(5),
            max_connections: 1024,
            connect_retry_interval: Duration::from_millis(250),
            connect_attempts: 20,
            disconnect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(1),
            ack_delay: Duration::from_millis(5),
            ack_every: 2,
            unreliable_ack_every: 8,
            rtt_probe_interval: Duration::from_secs(1),
            send_queue_capacity: 4096,
            max_in_flight_packets: 1024,
            reliable_window: 4096,
            initial_congestion_window: 32,
            min_congestion_window: 4,
            disconnect_copies: 8,
            disconnect_copy_interval: Duration::from_millis(10),
            cookie_lifetime: Duration::from_secs(10),
            accept_connections: true,
            initial_rtt: Duration::from_millis(333),
            min_resend_timeout: Duration::from_millis(20),
            max_resend_timeout: Duration::from_secs(2),
            max_resend_backoff: Duration::from_millis(250),
            all_cost_resend_interval: Duration::from_millis(20),
            seed: None,
        }
    }
}

impl EndpointConfig {
    /// The QoS of channel `id`, if the connection has it.
    pub fn qos(&self, id: ChannelId) -> Option<Qos> {
        self.channels.get(usize::from(id.0)).copied()
    }

    /// The largest message a channel of kind `qos` accepts.
    pub fn max_message_size(&self, qos: Qos) -> usize {
        if qos.is_fragmented() {
            self.fragment_size * self.max_fragments
        } else {
            // One record in one packet: header, channel, a 3-byte tagged length and a number.
            self.max_packet_size - MAX_HEADER_LEN - 6
        }
    }

    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return invalid("channels", "must have between 1 and 255 channels");
        }
        if !(64..=65_507).contains(&self.max_packet_size) {
            return invalid("max_packet_size", "must be between 64 and 65507 bytes");
        }
        if self.fragment_size == 0
            || self.fragment_size + MAX_HEADER_LEN + MAX_FRAGMENT_RECORD_OVERHEAD
                > self.max_packet_size
        {
            return invalid(
                "fragment_size",
                "must be positive and leave 20 bytes of header room in max_packet_size",
            );
        }
        if !(2..=usize::from(u16::MAX)).contains(&self.max_fragments) {
            return invalid("max_fragments", "must be between 2 and 65535");
        }
        if self.max_reassembly_bytes < self.fragment_size * self.max_fragments
            && self.channels.iter().any(|q| q.is_fragmented())
        {
            return invalid(
                "max_reassembly_bytes",
                "must hold at least one largest message (fragment_size × max_fragments)",
            );
        }
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return invalid("max_connections", "must be between 1 and 65535");
        }
        if self.connect_attempts == 0 {
            return invalid("connect_attempts", "must be at least 1");
        }
        if self.connect_retry_interval.is_zero() {
            return invalid("connect_retry_interval", "must be positive");
        }
        if self.keepalive_interval.is_zero() || self.keepalive_interval >= self.disconnect_timeout {
            return invalid(
                "keepalive_interval",
                "must be positive and shorter than disconnect_timeout",
            );
        }
        if self.ack_delay >= self.disconnect_timeout {
            return invalid("ack_delay", "must be shorter than disconnect_timeout");
        }
        if self.ack_every == 0 {
            return invalid("ack_every", "must be at least 1");
        }
        if !(1..=33).contains(&self.unreliable_ack_every) {
            return invalid("unreliable_ack_every", "must be between 1 and 33");
        }
        if self.rtt_probe_interval.is_zero() {
            return invalid("rtt_probe_interval", "must be positive");
        }
        // Queued message numbers must stay within half the 16-bit number space of the oldest.
        if !(1..=16_384).contains(&self.send_queue_capacity) {
            return invalid("send_queue_capacity", "must be between 1 and 16384");
        }
        // Half the 14-bit packet number space: beyond it, acks become ambiguous.
        if !(1..=8_192).contains(&self.max_in_flight_packets) {
            return invalid("max_in_flight_packets", "must be between 1 and 8192");
        }
        if !(2..=16_384).contains(&self.reliable_window) {
            return invalid("reliable_window", "must be between 2 and 16384");
        }
        if self.min_congestion_window == 0
            || self.min_congestion_window > self.initial_congestion_window
            || self.initial_congestion_window > self.max_in_flight_packets
        {
            return invalid(
                "initial_congestion_window",
                "must satisfy 1 <= min_congestion_window <= initial_congestion_window <= max_in_flight_packets",
            );
        }
        if self.disconnect_copies == 0 {
            return invalid("disconnect_copies", "must be at least 1");
        }
        if self.cookie_lifetime < Duration::from_secs(1) {
            return invalid("cookie_lifetime", "must be at least one second");
        }
        if self.min_resend_timeout.is_zero() || self.min_resend_timeout > self.max_resend_timeout {
            return invalid(
                "min_resend_timeout",
                "must be positive and at most max_resend_timeout",
            );
        }
        if self.max_resend_backoff.is_zero() {
            return invalid("max_resend_backoff", "must be positive");
        }
        if self.all_cost_resend_interval.is_zero() {
            return invalid("all_cost_resend_interval", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: &EndpointConfig) -> &'static str {
        match config.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn the_default_is_valid_and_unet_shaped() {
        let config = EndpointConfig::default();
        config.validate().unwrap();
        assert_eq!(config.qos(ChannelId(0)), Some(Qos::ReliableSequenced));
        assert_eq!(config.qos(ChannelId(1)), Some(Qos::Unreliable));
        assert_eq!(config.qos(ChannelId(2)), None);
        assert!(config.max_message_size(Qos::ReliableFragmented) >= 1024 * 1024);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let base = EndpointConfig::default();
        let cases: Vec<(EndpointConfig, &str)> = vec![
            (EndpointConfig { channels: vec![], ..base.clone() }, "channels"),
            (EndpointConfig { channels: vec![Qos::Reliable; 256], ..base.clone() }, "channels"),
            (EndpointConfig { max_packet_size: 20, ..base.clone() }, "max_packet_size"),
            (EndpointConfig { ack_every: 0, ..base.clone() }, "ack_every"),
            (EndpointConfig { unreliable_ack_every: 34, ..base.clone() }, "unreliable_ack_every"),
            (
                EndpointConfig { rtt_probe_interval: Duration::ZERO, ..base.clone() },
                "rtt_probe_interval",
            ),
            (EndpointConfig { fragment_size: 1190, ..base.clone() }, "fragment_size"),
            (EndpointConfig { max_fragments: 1, ..base.clone() }, "max_fragments"),
            (
                EndpointConfig {
                    channels: vec![Qos::ReliableFragmented],
                    max_reassembly_bytes: 1000,
                    ..base.clone()
                },
                "max_reassembly_bytes",
            ),
            (EndpointConfig { max_connections: 70_000, ..base.clone() }, "max_connections"),
            (EndpointConfig { connect_attempts: 0, ..base.clone() }, "connect_attempts"),
            (
                EndpointConfig { keepalive_interval: Duration::from_secs(60), ..base.clone() },
                "keepalive_interval",
            ),
            (
                EndpointConfig { max_in_flight_packets: 10_000, ..base.clone() },
                "max_in_flight_packets",
            ),
            (
                EndpointConfig { min_resend_timeout: Duration::from_secs(5), ..base.clone() },
                "min_resend_timeout",
            ),
            (
                EndpointConfig { max_resend_backoff: Duration::ZERO, ..base.clone() },
                "max_resend_backoff",
            ),
            (
                EndpointConfig { all_cost_resend_interval: Duration::ZERO, ..base.clone() },
                "all_cost_resend_interval",
            ),
        ];
        for (config, field) in &cases {
            assert_eq!(field_of(config), *field);
        }
        // 255 channels and 32,000 connections are allowed.
        EndpointConfig { channels: vec![Qos::Unreliable; 255], max_connections: 32_000, ..base }
            .validate()
            .unwrap();
    }
}

//! Endpoint configuration: every tunable of the protocol, with documented defaults.

use std::time::Duration;

use crate::proto::packet::MAX_HEADER_LEN;
use crate::{ChannelId, ConfigError, Qos};

/// The largest record header a fragment can need: channel (1) + tagged length (3) + message
/// number (2) + fragment index (3) + fragment count (3).
pub const MAX_FRAGMENT_RECORD_OVERHEAD: usize = 12;
/// The most channels a connection can have (ids 0 to 254).
pub const MAX_CHANNELS: usize = 255;
/// The most connections one endpoint can hold: 16,777,216 (2^24). Connection ids have 32-bit
/// slots; the bound only keeps a mistyped setting from meaning "unbounded" (nothing is
/// allocated up front, so a high limit costs nothing until connections arrive).
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 24;
/// The longest duration any field of [`EndpointConfig`] may hold. Deadlines are instants plus
/// these durations (sometimes multiplied by a small backoff), and an hour keeps every such sum
/// far from overflowing while leaving room for any timeout a game can want.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(3600);
/// The longest [`EndpointConfig::read_interval`]: past it, every message would wait longer
/// than a game tolerates for the sake of fewer system calls.
pub const MAX_READ_INTERVAL: Duration = Duration::from_millis(100);
/// The most bytes any byte budget of [`EndpointConfig`] (reassembly, buffer pool) may hold:
/// 1 GiB. Larger values are mistakes, and sums of them must not overflow.
pub const MAX_MEMORY_SETTING: usize = 1 << 30;
/// The largest repetition count (`connect_attempts`, `disconnect_copies`, `ack_every`).
pub const MAX_REPEAT_COUNT: u32 = 1000;

/// Whether a byte budget exceeds [`MAX_MEMORY_SETTING`].
fn too_big(bytes: usize) -> bool {
    bytes > MAX_MEMORY_SETTING
}

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
    /// Whether connections that peers open to us are trusted from the start. The transport
    /// alone cannot tell who a peer is, so by default (`true`) every connection gets
    /// `max_reassembly_bytes`, as a network engineer using the transport directly expects. A
    /// layer that authenticates its peers sets it to `false` and calls
    /// [`Endpoint::set_trusted`](crate::Endpoint::set_trusted) (or [`Host::set_trusted`](crate::Host::set_trusted),
    /// [`ThreadedHost::set_trusted`](crate::ThreadedHost::set_trusted)) once a peer has proven itself;
    /// until then the untrusted budgets below hold (the message layer's `NetworkServer` needs
    /// this: it refuses a transport that trusts incoming connections, and trusts a connection
    /// when its player authenticates; `ChannelLayout::endpoint_config` sets it).
    pub trust_incoming: bool,
    /// The same budget for a connection that is not yet *trusted*. A connection we opened
    /// ourselves is trusted from the start; one a peer opened to us is trusted from the start
    /// when `trust_incoming` is set, and otherwise once the application calls
    /// [`Endpoint::set_trusted`](crate::Endpoint::set_trusted) (typically after the peer has
    /// authenticated). Until then the peer has proven only that it can
    /// receive at its address, so it may make us hold little: unreliable partial messages past
    /// this budget are dropped, and reliable data past it is refused and resent later, as for
    /// `max_reassembly_bytes` (the next message in order is still always admitted, so an
    /// untrusted peer can send messages of any size in order). The smaller of this and
    /// `max_reassembly_bytes` applies.
    pub max_reassembly_bytes_untrusted: usize,
    /// Bytes all untrusted connections together may hold for undeliverable messages (see
    /// `max_reassembly_bytes_untrusted`), so any number of connections that never
    /// authenticate cannot make the endpoint hold more than this. Once it is reached, their
    /// new unreliable partial messages are dropped and reliable data out of order is refused
    /// (resent later); the next message in order is still admitted, and if it takes them past
    /// this budget the untrusted connection that has held memory the longest is closed
    /// (`DisconnectReason::ReassemblyBudget`, counted in `EndpointStats::untrusted_evictions`;
    /// the peer is told). Must hold one largest message (`fragment_size × max_fragments`) when
    /// a channel is fragmented.
    pub untrusted_reassembly_bytes_total: usize,
    /// Bytes of free buffers the endpoint keeps for reuse (message copies, reassembly
    /// buffers). Beyond it, returned buffers are freed, so memory taken in a burst or an
    /// attack goes back to the system afterwards.
    pub buffer_pool_bytes: usize,
    /// Buffers with more capacity than this are freed when done rather than kept for reuse
    /// (reassembly buffers of large messages).
    pub buffer_pool_max_buffer: usize,
    /// How long a partly reassembled unreliable message waits for its missing pieces.
    pub reassembly_timeout: Duration,
    /// The most connections (incoming and outgoing) this endpoint holds; a connect request past
    /// it is rejected with "server full".
    pub max_connections: usize,
    /// Limits on what one source address, or one network prefix, may take of the endpoint:
    /// connections, and handshakes completed per second. See [`AddressLimits`].
    pub address_limits: AddressLimits,
    /// Wait before the first connect retry while connecting. Each retry that is still
    /// unanswered doubles the wait, up to `connect_retry_max_interval`, and every wait is cut
    /// by a random quarter at most (fixed per connection and attempt), so a crowd that
    /// connects at once (a server restart, a match start) spreads its retries out instead of
    /// repeating the storm in lockstep.
    pub connect_retry_interval: Duration,
    /// The longest wait between connect retries. At least `connect_retry_interval`.
    pub connect_retry_max_interval: Duration,
    /// Connect attempts before giving up with a timeout. The defaults (12 attempts, waits of
    /// 250 ms doubling to 1 s) give up after about 8 to 11 seconds (before the backoff: 20
    /// attempts 250 ms apart, 5 s; set `connect_retry_max_interval` to `connect_retry_interval`
    /// and `connect_attempts` to 20 for that).
    pub connect_attempts: u32,
    /// Silence after which a connection is declared lost. *Must match.*
    pub disconnect_timeout: Duration,
    /// Idle time after which a keepalive is sent so the peer does not time the connection out
    /// (2 s: a fifth of the default `disconnect_timeout`, so four keepalives in a row may be
    /// lost; not 1 s, which equals the period of clients that send once a second, whose
    /// server then sent a keepalive whenever a message came a little late). Also how long a
    /// packet may wait for its acknowledgement before the next asks the peer to answer at once
    /// (if it does not, the path is silent). *Should match.*
    pub keepalive_interval: Duration,
    /// How long the acknowledgement of an ack-soon packet may wait for outgoing data to ride on
    /// before it is sent alone (other packets wait for `unreliable_ack_every` instead).
    pub ack_delay: Duration,
    /// Ack-soon packets (those with reliable data, and probes of a silent path) that may arrive
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
    /// How often each side tells the other how long it held the acknowledgement of the peer's
    /// newest packet (the ack-delay record, 2–6 bytes on a packet that goes out anyway): how
    /// often a connection without reliable data (which is timed on every packet) samples its
    /// round trip. 1 s. No datagram is sent for it, so a server echoing 100,000 quiet clients
    /// receives nothing but their messages.
    pub rtt_probe_interval: Duration,
    /// Messages each channel may queue for sending; past it `send` returns a backpressure error.
    pub send_queue_capacity: usize,
    /// Packets carrying messages (of any kind) that may be unacknowledged at once. At least
    /// twice `unreliable_ack_every`: a receiver acknowledges packets with only unreliable
    /// messages once that many have arrived (or on its next packet), so a smaller cap would
    /// hold a one-way unreliable stream to a packet per resend timeout and keepalive.
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
    /// The shortest time between the starts of two drains of the socket (a drain reads until
    /// the socket is empty), for the drivers that own one ([`Host`](crate::Host),
    /// [`ThreadedHost`](crate::ThreadedHost) and the netcode `SecureHost`; the sans-IO
    /// endpoint and the in-process transports do not read this field). After a drain that
    /// found datagrams, the driver leaves the socket alone until this much time has passed,
    /// so what arrives meanwhile is read, handled and answered as one batch: fewer system
    /// calls and wake-ups per message, for up to this much delay on each message on its way
    /// in (and so on what the application sends in answer; a `ThreadedHost`'s I/O thread
    /// sleeps out the interval too, so the application's sends and `stop` may wait for it).
    /// UNET's fixed-rate reactor made the same trade. Protocol timers and the caller's timeout
    /// still end a wait on time, a drain that stopped at its budget with datagrams left does
    /// not hold the next, and one that found nothing starts no interval, so a quiet host
    /// answers at once. Round-trip samples include the wait, so keep it well below the round
    /// trips and `min_resend_timeout`. Zero (the default) reads as soon as a datagram arrives;
    /// a server of tens of thousands of clients sets about 1 ms (see `benches/README.md`). At
    /// most [`MAX_READ_INTERVAL`].
    pub read_interval: Duration,
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
            trust_incoming: true,
            max_reassembly_bytes_untrusted: 256 * 1024,
            untrusted_reassembly_bytes_total: 32 * 1024 * 1024,
            buffer_pool_bytes: 8 * 1024 * 1024,
            buffer_pool_max_buffer: 64 * 1024,
            reassembly_timeout: Duration::from_secs(5),
            max_connections: 1024,
            address_limits: AddressLimits::default(),
            connect_retry_interval: Duration::from_millis(250),
            connect_retry_max_interval: Duration::from_secs(1),
            connect_attempts: 12,
            disconnect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(2),
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
            read_interval: Duration::ZERO,
        }
    }
}

impl EndpointConfig {
    /// The QoS of channel `id`, if the connection has it.
    pub fn qos(&self, id: ChannelId) -> Option<Qos> {
        self.channels.get(usize::from(id.0)).copied()
    }

    /// The largest message `channel` accepts (`None`: no such channel).
    pub fn channel_max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.qos(channel).map(|qos| self.max_message_size(qos))
    }

    /// Whether connections peers open are trusted before the application says so: an
    /// endpoint that accepts connections with `trust_incoming` set.
    pub fn trusts_incoming(&self) -> bool {
        self.accept_connections && self.trust_incoming
    }

    /// The largest message a channel of kind `qos` accepts.
    pub fn max_message_size(&self, qos: Qos) -> usize {
        if qos.is_fragmented() {
            self.fragment_size.saturating_mul(self.max_fragments)
        } else {
            // One record in one packet: header, channel, a 3-byte tagged length and a number.
            self.max_packet_size - MAX_HEADER_LEN - 6
        }
    }

    /// Checks every field, naming the first that is out of range.
    ///
    /// Every duration is at most [`MAX_CONFIG_DURATION`] and every size and count has an upper
    /// bound, so a configuration that validates never overflows a deadline or an allocation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        let durations = [
            ("reassembly_timeout", self.reassembly_timeout),
            ("connect_retry_interval", self.connect_retry_interval),
            ("connect_retry_max_interval", self.connect_retry_max_interval),
            ("disconnect_timeout", self.disconnect_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("ack_delay", self.ack_delay),
            ("rtt_probe_interval", self.rtt_probe_interval),
            ("disconnect_copy_interval", self.disconnect_copy_interval),
            ("cookie_lifetime", self.cookie_lifetime),
            ("initial_rtt", self.initial_rtt),
            ("min_resend_timeout", self.min_resend_timeout),
            ("max_resend_timeout", self.max_resend_timeout),
            ("all_cost_resend_interval", self.all_cost_resend_interval),
            ("max_resend_backoff", self.max_resend_backoff),
        ];
        for (field, value) in durations {
            if value > MAX_CONFIG_DURATION {
                return invalid(field, "must be at most one hour (MAX_CONFIG_DURATION)");
            }
        }
        let counts = [
            ("connect_attempts", self.connect_attempts),
            ("disconnect_copies", self.disconnect_copies),
            ("ack_every", self.ack_every),
        ];
        for (field, value) in counts {
            if value > MAX_REPEAT_COUNT {
                return invalid(field, "must be at most 1000 (MAX_REPEAT_COUNT)");
            }
        }
        if self.read_interval > MAX_READ_INTERVAL {
            return invalid("read_interval", "must be at most 100 ms (MAX_READ_INTERVAL)");
        }
        if self.reassembly_timeout.is_zero() {
            return invalid("reassembly_timeout", "must be positive");
        }
        if self.initial_rtt.is_zero() {
            return invalid("initial_rtt", "must be positive");
        }
        if self.disconnect_copy_interval.is_zero() {
            return invalid("disconnect_copy_interval", "must be positive");
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return invalid("channels", "must have between 1 and 255 channels");
        }
        if !(64..=65_507).contains(&self.max_packet_size) {
            return invalid("max_packet_size", "must be between 64 and 65507 bytes");
        }
        if self.fragment_size == 0
            || self.fragment_size.saturating_add(MAX_HEADER_LEN + MAX_FRAGMENT_RECORD_OVERHEAD)
                > self.max_packet_size
        {
            return invalid(
                "fragment_size",
                "must be positive and leave 24 bytes of header room in max_packet_size",
            );
        }
        if !(2..=usize::from(u16::MAX)).contains(&self.max_fragments) {
            return invalid("max_fragments", "must be between 2 and 65535");
        }
        if self.max_reassembly_bytes < self.fragment_size.saturating_mul(self.max_fragments)
            && self.channels.iter().any(|q| q.is_fragmented())
        {
            return invalid(
                "max_reassembly_bytes",
                "must hold at least one largest message (fragment_size × max_fragments)",
            );
        }
        if too_big(self.max_reassembly_bytes) {
            return invalid("max_reassembly_bytes", "must be at most 1 GiB (MAX_MEMORY_SETTING)");
        }
        if too_big(self.max_reassembly_bytes_untrusted) {
            return invalid(
                "max_reassembly_bytes_untrusted",
                "must be at most 1 GiB (MAX_MEMORY_SETTING)",
            );
        }
        if too_big(self.untrusted_reassembly_bytes_total)
            || self.untrusted_reassembly_bytes_total
                < self.fragment_size.saturating_mul(self.max_fragments)
                && self.channels.iter().any(|q| q.is_fragmented())
        {
            return invalid(
                "untrusted_reassembly_bytes_total",
                "must be at most 1 GiB (MAX_MEMORY_SETTING) and hold one largest message (fragment_size × max_fragments)",
            );
        }
        if too_big(self.buffer_pool_bytes) {
            return invalid("buffer_pool_bytes", "must be at most 1 GiB (MAX_MEMORY_SETTING)");
        }
        if too_big(self.buffer_pool_max_buffer) {
            return invalid("buffer_pool_max_buffer", "must be at most 1 GiB (MAX_MEMORY_SETTING)");
        }
        self.address_limits.validate()?;
        if self.max_connections == 0 || self.max_connections > MAX_CONNECTIONS_LIMIT {
            return invalid("max_connections", "must be between 1 and 16777216");
        }
        if self.connect_attempts == 0 {
            return invalid("connect_attempts", "must be at least 1");
        }
        if self.connect_retry_interval.is_zero() {
            return invalid("connect_retry_interval", "must be positive");
        }
        if self.connect_retry_max_interval < self.connect_retry_interval {
            return invalid(
                "connect_retry_max_interval",
                "must be at least connect_retry_interval",
            );
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
        if self.max_in_flight_packets < 2 * self.unreliable_ack_every as usize {
            return invalid(
                "max_in_flight_packets",
                "must be at least twice unreliable_ack_every (what a receiver may leave unacknowledged)",
            );
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

/// Limits on what one source address, or one network prefix (a /24 of IPv4, a /64 of IPv6 by
/// default), may take of an endpoint that accepts connections. A value of 0 turns a limit off.
///
/// The handshake is a stateless cookie exchange, so a handshake in progress costs the server
/// only the challenge it sends, which is smaller than the request (no amplification). The
/// source of a request is not proven, so nothing is charged to it: the rate limit applies
/// where the cookie proves that the client receives at its address, to the handshakes a prefix
/// completes (connect responses with a valid cookie), with a token bucket of
/// `handshake_burst_per_prefix` tokens refilled at `handshakes_per_second_per_prefix`. A
/// response past it is dropped without an answer (the client repeats it while its cookie is
/// valid) and counted in `EndpointStats::handshakes_throttled`. So a spoofer who forges
/// requests from a victim's prefix cannot spend the victim's handshakes. Established
/// connections are capped per address (same IP, any port) and per prefix; an attempt past a
/// cap is rejected with [`RejectReason::TooManyFromAddress`](crate::RejectReason) and counted
/// in `EndpointStats::address_limit_rejections`. Only connections peers open to us count;
/// ours to them do not.
///
/// Loopback sources (`127.0.0.0/8`, `::1`) are exempt by default, so a benchmark or a test
/// that runs every client on one machine is not limited; set `exempt_loopback` to `false` to
/// limit them too. IPv4-mapped IPv6 addresses count as their IPv4 address.
///
/// Limits by address do not stop an attacker who controls many addresses (many IPv6 /64s are
/// easy to come by); they stop one host, or one small network, from taking every slot.
///
/// ```
/// use sturnus_transport::{AddressLimits, EndpointConfig};
/// // A server behind a proxy that presents every client from one address: no limits.
/// let config = EndpointConfig { address_limits: AddressLimits::UNLIMITED, ..Default::default() };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Connections one IP address (any port) may hold. Default 32; 0 = unlimited.
    pub connections_per_ip: u32,
    /// Connections one prefix may hold. Default 128; 0 = unlimited.
    pub connections_per_prefix: u32,
    /// Handshakes (connect responses with a valid cookie) one prefix may complete per second,
    /// in the long run. Default 20; 0 = unlimited.
    pub handshakes_per_second_per_prefix: u32,
    /// Handshakes one prefix may complete in a burst before the rate applies. Default 64; at
    /// least 1 when the rate is limited.
    pub handshake_burst_per_prefix: u32,
    /// Length of an IPv4 prefix, in bits (1 to 32). Default 24.
    pub ipv4_prefix_len: u8,
    /// Length of an IPv6 prefix, in bits (1 to 128). Default 64.
    pub ipv6_prefix_len: u8,
    /// Whether loopback sources are exempt from every limit. Default `true`.
    pub exempt_loopback: bool,
}

impl AddressLimits {
    /// No limit by address at all.
    pub const UNLIMITED: AddressLimits = AddressLimits {
        connections_per_ip: 0,
        connections_per_prefix: 0,
        handshakes_per_second_per_prefix: 0,
        handshake_burst_per_prefix: 0,
        ipv4_prefix_len: 24,
        ipv6_prefix_len: 64,
        exempt_loopback: true,
    };

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        let most = u32::try_from(MAX_CONNECTIONS_LIMIT).unwrap_or(u32::MAX);
        if self.connections_per_ip > most {
            return invalid("address_limits.connections_per_ip", "must be at most 16777216");
        }
        if self.connections_per_prefix > most {
            return invalid("address_limits.connections_per_prefix", "must be at most 16777216");
        }
        if self.handshakes_per_second_per_prefix > 1_000_000 {
            return invalid(
                "address_limits.handshakes_per_second_per_prefix",
                "must be at most 1000000",
            );
        }
        if self.handshake_burst_per_prefix > 1_000_000
            || self.handshakes_per_second_per_prefix > 0 && self.handshake_burst_per_prefix == 0
        {
            return invalid(
                "address_limits.handshake_burst_per_prefix",
                "must be at most 1000000, and at least 1 when the rate is limited",
            );
        }
        if !(1..=32).contains(&self.ipv4_prefix_len) {
            return invalid("address_limits.ipv4_prefix_len", "must be between 1 and 32");
        }
        if !(1..=128).contains(&self.ipv6_prefix_len) {
            return invalid("address_limits.ipv6_prefix_len", "must be between 1 and 128");
        }
        Ok(())
    }
}

impl Default for AddressLimits {
    fn default() -> Self {
        Self {
            connections_per_ip: 32,
            connections_per_prefix: 128,
            handshakes_per_second_per_prefix: 20,
            handshake_burst_per_prefix: 64,
            ..Self::UNLIMITED
        }
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
            (
                EndpointConfig { read_interval: Duration::from_millis(101), ..base.clone() },
                "read_interval",
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
            (EndpointConfig { max_connections: (1 << 24) + 1, ..base.clone() }, "max_connections"),
            (
                EndpointConfig { max_reassembly_bytes_untrusted: usize::MAX, ..base.clone() },
                "max_reassembly_bytes_untrusted",
            ),
            (
                EndpointConfig {
                    channels: vec![Qos::ReliableFragmented],
                    untrusted_reassembly_bytes_total: 1000,
                    ..base.clone()
                },
                "untrusted_reassembly_bytes_total",
            ),
            (EndpointConfig { buffer_pool_bytes: usize::MAX, ..base.clone() }, "buffer_pool_bytes"),
            (
                EndpointConfig { buffer_pool_max_buffer: usize::MAX, ..base.clone() },
                "buffer_pool_max_buffer",
            ),
            (
                EndpointConfig {
                    address_limits: AddressLimits {
                        connections_per_ip: 20_000_000,
                        ..AddressLimits::default()
                    },
                    ..base.clone()
                },
                "address_limits.connections_per_ip",
            ),
            (
                EndpointConfig {
                    address_limits: AddressLimits {
                        handshake_burst_per_prefix: 0,
                        ..AddressLimits::default()
                    },
                    ..base.clone()
                },
                "address_limits.handshake_burst_per_prefix",
            ),
            (
                EndpointConfig {
                    address_limits: AddressLimits {
                        ipv4_prefix_len: 33,
                        ..AddressLimits::default()
                    },
                    ..base.clone()
                },
                "address_limits.ipv4_prefix_len",
            ),
            (EndpointConfig { connect_attempts: 0, ..base.clone() }, "connect_attempts"),
            (
                EndpointConfig {
                    connect_retry_max_interval: Duration::from_millis(100),
                    ..base.clone()
                },
                "connect_retry_max_interval",
            ),
            (
                EndpointConfig { keepalive_interval: Duration::from_secs(60), ..base.clone() },
                "keepalive_interval",
            ),
            (
                EndpointConfig { max_in_flight_packets: 10_000, ..base.clone() },
                "max_in_flight_packets",
            ),
            (
                EndpointConfig {
                    max_in_flight_packets: 20,
                    initial_congestion_window: 20,
                    unreliable_ack_every: 11,
                    ..base.clone()
                },
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
            (
                EndpointConfig { disconnect_timeout: Duration::MAX, ..base.clone() },
                "disconnect_timeout",
            ),
            (
                EndpointConfig { cookie_lifetime: Duration::from_secs(3601), ..base.clone() },
                "cookie_lifetime",
            ),
            (EndpointConfig { initial_rtt: Duration::ZERO, ..base.clone() }, "initial_rtt"),
            (EndpointConfig { connect_attempts: u32::MAX, ..base.clone() }, "connect_attempts"),
            (
                EndpointConfig { max_reassembly_bytes: usize::MAX, ..base.clone() },
                "max_reassembly_bytes",
            ),
        ];
        for (config, field) in &cases {
            assert_eq!(field_of(config), *field);
        }
        // 255 channels and 16,777,216 connections are allowed.
        EndpointConfig { channels: vec![Qos::Unreliable; 255], max_connections: 1 << 24, ..base }
            .validate()
            .unwrap();
    }
}

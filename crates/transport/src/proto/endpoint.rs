//! The endpoint: many connections behind one socket, as a sans-IO state machine.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::addr_hash::AddrHashBuilder;
use super::addr_table::AddrTable;
use super::codec::Writer;
use super::connection::{
    Connecting, Connection, ConnectionStats, PacketScratch, PacketVerdict, Phase,
    RESPONSES_PER_COOKIE,
};
use super::control::{Control, Cookie, RejectReason};
use super::limits::{SourceLimits, Verdict};
use super::packet::CONTROL_BIT;
use super::pool::BufPool;
use super::prefetch;
use super::secrets::Secrets;
use super::siphash::SipHasher;
use super::time::Tick;
use crate::{ChannelId, ConfigError, ConnectError, EndpointConfig, Qos, SendError};

/// Stateless replies waiting to be sent; beyond this a flood of requests is answered only in
/// part (the rest are dropped and counted).
const MAX_PENDING_REPLIES: usize = 1024;
/// Buffers the endpoint keeps for reuse, at most (their bytes are bounded by the config).
const POOL_LIMIT: usize = 65_536;
/// Capacity of the buffer of pending data events kept after they have all been handed out;
/// beyond it the buffer is shrunk, so one burst of large messages does not pin its size.
const DATA_KEEP: usize = 1024 * 1024;

/// How long a connecting client waits after the `attempt`-th of its packets unanswered in a row
/// (1 for the first) before repeating it: `connect_retry_interval` doubled per attempt, capped at
/// `connect_retry_max_interval`, less up to a quarter chosen from the connection's salt and the
/// attempt (random across clients, the same on every replay of a test).
fn retry_wait(config: &EndpointConfig, attempt: u32, client_salt: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    let wait = config
        .connect_retry_interval
        .saturating_mul(1 << doublings)
        .min(config.connect_retry_max_interval);
    let mix = (client_salt ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xD6E8_FEB8_6659_FD93);
    // The top 8 bits: a cut of 0 to 255/1024 of the wait.
    let cut = u32::try_from(mix >> 56).unwrap_or(0);
    wait - wait * cut / 1024
}

/// Identifies a connection of an [`Endpoint`]. Ids of closed connections are never confused
/// with new ones: the slot is reused with a new generation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    pub(crate) fn new(slot: u32, generation: u32) -> Self {
        Self(u64::from(generation) << 32 | u64::from(slot))
    }

    /// The connection's slot: ids of open connections have distinct slots, and a closed
    /// connection's slot is reused (with a new generation).
    pub(crate) fn slot(self) -> usize {
        self.slot_index() as usize
    }

    /// The slot as stored in the endpoint's tables.
    #[expect(clippy::cast_possible_truncation, reason = "the slot is the low 32 bits")]
    fn slot_index(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        u32::try_from(self.0 >> 32).expect("the high half of a u64 fits in a u32")
    }

    /// The id as a number (stable for the connection's life; for logs and maps).
    pub fn to_bits(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.slot(), self.generation())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a connection ended (or never began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Nothing was heard from the peer for the disconnect timeout.
    Timeout,
    /// The server never answered the connection attempt.
    ConnectTimeout,
    /// The server turned the connection attempt down.
    Rejected(RejectReason),
    /// The peer closed the connection.
    ClosedByPeer,
    /// The peer connected again from the same address; this older connection is gone.
    Reconnected,
    /// Both peers connected to each other at once; this attempt gave way to the peer's, which
    /// arrives as a new [`Event::Connected`].
    CrossedConnect,
    /// The connection was not trusted, and was closed to keep the memory all untrusted
    /// connections hold for partial messages within `untrusted_reassembly_bytes_total`: it had
    /// held such memory the longest (see [`Endpoint::set_trusted`]). The peer is told.
    ReassemblyBudget,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Timeout => f.write_str("timed out"),
            DisconnectReason::ConnectTimeout => f.write_str("connection attempt timed out"),
            DisconnectReason::Rejected(reason) => write!(f, "rejected: {reason}"),
            DisconnectReason::ClosedByPeer => f.write_str("closed by the peer"),
            DisconnectReason::Reconnected => f.write_str("the peer reconnected"),
            DisconnectReason::CrossedConnect => {
                f.write_str("the peer connected to us at the same time; its connection is kept")
            }
            DisconnectReason::ReassemblyBudget => {
                f.write_str("closed to keep untrusted peers' reassembly memory within its budget")
            }
        }
    }
}

/// Something the application should know about.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A connection is established: one we asked for, or one a peer opened to us.
    Connected(ConnectionId),
    /// A message arrived. The payload is lent until the next call on the endpoint.
    Data {
        /// The connection.
        conn: ConnectionId,
        /// The channel it came on.
        channel: ChannelId,
        /// The message.
        payload: &'a [u8],
    },
    /// A connection ended, or an attempt failed. The id is no longer valid.
    Disconnected {
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
}

/// A datagram written by [`Endpoint::poll_transmit`] into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Its length at the start of the buffer.
    pub len: usize,
}

/// Counters of the endpoint as a whole (per-connection ones are in [`ConnectionStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to [`Endpoint::handle_datagram`].
    pub datagrams_received: u64,
    /// Datagrams that could not be decoded or broke the protocol.
    pub malformed: u64,
    /// Data packets from addresses with no connection.
    pub unknown_source: u64,
    /// Data packets dropped by a connection's stray-packet checks or not acknowledged.
    pub rejected_packets: u64,
    /// Connect requests received.
    pub connect_requests: u64,
    /// Connect responses whose cookie was forged, stale or for another address.
    pub invalid_cookies: u64,
    /// Rejections sent.
    pub rejections_sent: u64,
    /// Stateless replies dropped because too many were pending.
    pub replies_dropped: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connect responses (with a valid cookie, so from a proven source) dropped unanswered
    /// because their network prefix had completed too many handshakes lately (see
    /// [`AddressLimits`](crate::AddressLimits)).
    pub handshakes_throttled: u64,
    /// Connection attempts rejected because their address or prefix held as many connections
    /// as it may ([`RejectReason::TooManyFromAddress`]).
    pub address_limit_rejections: u64,
    /// Untrusted connections closed because all untrusted connections together held more than
    /// `untrusted_reassembly_bytes_total` ([`DisconnectReason::ReassemblyBudget`]).
    pub untrusted_evictions: u64,
}

/// One line: `received 1180 datagrams (0 malformed, 0 unknown) · handshakes 12 accepted of 12
/// requests · refused: 0 throttled, 0 by address limits · 0 untrusted evicted`.
impl fmt::Display for EndpointStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "received {} datagrams ({} malformed, {} unknown) · handshakes {} accepted of {} \
             requests · refused: {} throttled, {} by address limits · {} untrusted evicted",
            self.datagrams_received,
            self.malformed,
            self.unknown_source,
            self.accepted,
            self.connect_requests,
            self.handshakes_throttled,
            self.address_limit_rejections,
            self.untrusted_evictions
        )
    }
}

#[derive(Debug)]
enum Pending {
    Connected(ConnectionId),
    Data { conn: ConnectionId, channel: ChannelId, start: usize, len: usize, superseded: bool },
    Disconnected { conn: ConnectionId, reason: DisconnectReason },
}

impl Pending {
    /// The slot of the event's connection.
    fn slot(&self) -> u32 {
        match self {
            Self::Connected(conn) | Self::Data { conn, .. } | Self::Disconnected { conn, .. } => {
                conn.slot_index()
            }
        }
    }
}

/// One cache line (64 bytes, aligned): a message touches its slot, and a slot that straddled
/// two lines would cost two misses at a crowd's scale.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    generation: u32,
    /// The deadline registered in `timers` for this slot's connection, if any: the earliest
    /// entry there that is not stale.
    scheduled: Option<Tick>,
    /// The connection's next deadline as of its last visit (`schedule`). Every change to a
    /// connection ends in a visit, so until then nothing falls due before it: a registration
    /// that comes due earlier (activity since moved the deadline later, as every message moves
    /// a keepalive) is filed again at `deadline` without touching the connection. Kept here,
    /// beside `scheduled`, so a timer that only moves costs one slot, not a visit.
    deadline: Tick,
    conn: Option<Box<Connection>>,
    /// Per channel (by id) of the connection in this slot, the index of its newest data event
    /// on a state-update channel (the older one still queued is superseded): kept per slot, so
    /// a state costs no hashing and closing a connection touches only its own entries.
    newest_state: Vec<Option<u64>>,
}

#[derive(Debug)]
struct Closing {
    to: SocketAddr,
    token: u64,
    remaining: u32,
    next_at: Tick,
}

/// Decides, per incoming connection, whether to accept it.
pub type AcceptFilter = Box<dyn FnMut(SocketAddr) -> bool + Send>;

/// Many connections behind one socket: the sans-IO protocol core.
///
/// The endpoint never touches a socket, a thread or the clock. It is driven from outside:
///
/// - **inputs**: [`handle_datagram`](Self::handle_datagram) for each datagram received,
///   [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout) says so,
///   and the application's [`connect`](Self::connect), [`send`](Self::send) and
///   [`disconnect`](Self::disconnect);
/// - **outputs**: [`poll_transmit`](Self::poll_transmit) (datagrams to send),
///   [`poll_event`](Self::poll_event) (connects, data, disconnects) and
///   [`poll_timeout`](Self::poll_timeout) (when to call `handle_timeout` next).
///
/// The contract: `now` never goes backwards; after every input, drain `poll_transmit` until it
/// returns `None` and `poll_event` until it returns `None`, then sleep until the next datagram
/// or `poll_timeout`. Network input never panics the endpoint: malformed datagrams are dropped
/// and counted in [`stats`](Self::stats).
///
/// ```
/// use std::time::Instant;
/// use sturnus_transport::{ChannelId, Endpoint, EndpointConfig, Event};
///
/// let now = Instant::now();
/// let config = EndpointConfig::default();
/// let mut server = Endpoint::new(config.clone(), now).unwrap();
/// let mut client = Endpoint::new(config, now).unwrap();
/// let (server_addr, client_addr) = ("127.0.0.1:7000".parse().unwrap(), "127.0.0.1:7001".parse().unwrap());
///
/// let conn = client.connect(now, server_addr).unwrap();
/// client.send(conn, ChannelId(0), b"hello").unwrap();
///
/// // A perfect, instant network: shuttle datagrams until both sides are quiet.
/// let mut buf = [0u8; 1500];
/// let mut received = Vec::new();
/// for _ in 0..10 {
///     while let Some(t) = client.poll_transmit(now, &mut buf) {
///         server.handle_datagram(now, client_addr, &buf[..t.len]);
///     }
///     while let Some(t) = server.poll_transmit(now, &mut buf) {
///         client.handle_datagram(now, server_addr, &buf[..t.len]);
///     }
///     while let Some(event) = server.poll_event() {
///         if let Event::Data { payload, .. } = event {
///             received.push(payload.to_vec());
///         }
///     }
/// }
/// assert_eq!(received, [b"hello".to_vec()]);
/// ```
// In declaration order (`repr(C)`): what `poll_timeout` and every message touch first, so the
// hot fields share a few cache lines (a crowd of client endpoints meets each cold), and the
// configuration, secrets and per-source limits after them.
#[repr(C)]
pub struct Endpoint {
    epoch: Instant,
    /// The instant last converted to a [`Tick`], and that tick: a driver passes one instant
    /// for a whole batch of datagrams and transmits, and comparing it costs less than
    /// converting it again.
    last_instant: Instant,
    last_tick: Tick,
    /// The connection whose last packet `poll_transmit` handed out without registering its next
    /// deadline yet: working that out (resend timers of every busy channel) waits until the
    /// driver has sent the packet and calls `handle_timeout` (which `poll_timeout` asks for).
    unscheduled: Option<u32>,
    replies: VecDeque<(SocketAddr, Control)>,
    /// Connections that may have something to send, in turn order. `poll_transmit` visits only
    /// these, so an endpoint with many idle connections does no work for them.
    ready: VecDeque<u32>,
    closing: VecDeque<Closing>,
    /// Connection deadlines (slot, time), earliest first; entries whose time is not their
    /// slot's `scheduled` are stale and skipped. Timers cost O(log n) per change instead
    /// of a scan of every connection per poll.
    timers: BinaryHeap<Reverse<(Tick, u32)>>,
    events: VecDeque<Pending>,
    events_popped: u64,
    /// Payloads of pending data events, back to back; reused from the start once every event
    /// has been handed out (when more data arrives, or when the empty queue is polled).
    data: Vec<u8>,
    live: usize,
    /// The source of the last datagram that named a connection, and its slot: a peer whose
    /// datagrams come in a row (a client's one server, a bulk transfer) skips the table's hash
    /// and probe. Cleared whenever `by_addr` changes what that address or slot maps to.
    last_source: Option<(SocketAddr, u32)>,
    slots: Vec<Slot>,
    by_addr: AddrTable,
    free: Vec<u32>,
    pool: BufPool,
    scratch: PacketScratch,
    stats: EndpointStats,
    /// Bytes held by untrusted connections together, against
    /// `untrusted_reassembly_bytes_total`.
    untrusted_held: usize,
    fingerprint: u64,
    config: EndpointConfig,
    /// Where the cookie key and the connection salts come from: the operating system, unless a
    /// test asked for repeatable ones.
    secrets: Secrets,
    cookie_key: (u64, u64),
    accept_filter: Option<AcceptFilter>,
    /// Per-source connection caps and handshake rate.
    limits: SourceLimits,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.live)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The keys an endpoint derives from its secret cookie key, each a keyed hash (SipHash-2-4
/// under the cookie key) of a label of its own: as secret as the cookie key, and no key is
/// related to another in a way an attacker could use (a cookie MAC hashes at least 18 bytes,
/// a label 8, so no label collides with a MAC either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DerivedKeys {
    /// The key of the hash of the table of connections by address.
    addr_key: u64,
    /// The key of the hash that finds a prefix's handshake bucket.
    limits_key: (u64, u64),
}

impl DerivedKeys {
    fn of(cookie_key: (u64, u64)) -> Self {
        let derive = |label: &[u8; 8]| {
            SipHasher::new(cookie_key.0, cookie_key.1)
                .write_u64(u64::from_le_bytes(*label))
                .finish()
        };
        Self {
            addr_key: derive(b"addr-tbl"),
            limits_key: (derive(b"limits-0"), derive(b"limits-1")),
        }
    }
}

/// A fingerprint of the settings both peers must share.
fn fingerprint(config: &EndpointConfig) -> u64 {
    let mut h = SipHasher::new(0x7374_7572, 0x006e_7573);
    h.write_u64(config.max_packet_size as u64)
        .write_u64(config.fragment_size as u64)
        .write_u64(config.max_fragments as u64)
        .write_u64(u64::try_from(config.disconnect_timeout.as_millis()).unwrap_or(u64::MAX))
        .write_u64(u64::from(config.reliable_window));
    for qos in &config.channels {
        let code = Qos::ALL.iter().position(|q| q == qos).expect("every QoS is in ALL");
        h.write(&[u8::try_from(code).expect("eleven kinds")]);
    }
    h.finish()
}

impl Endpoint {
    /// Creates an endpoint; `now` is its starting time. Its secrets (the key of its handshake
    /// cookies and the salts of its connections, from which their packet tags and disconnect
    /// tokens derive) come from the operating system's random number generator.
    pub fn new(config: EndpointConfig, now: Instant) -> Result<Self, ConfigError> {
        Self::with_secrets(config, now, Secrets::Os)
    }

    /// Creates an endpoint whose "secrets" all follow from `seed`, so that a simulation
    /// replays exactly. **Never use this outside tests**: anyone who knows or guesses the seed
    /// can forge the endpoint's cookies and its connections' packets and disconnects.
    #[doc(hidden)]
    pub fn with_deterministic_secrets_for_tests(
        config: EndpointConfig,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        Self::with_secrets(config, now, Secrets::Deterministic { seed, counter: 0 })
    }

    fn with_secrets(
        config: EndpointConfig,
        now: Instant,
        mut secrets: Secrets,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let cookie_key = (secrets.u64()?, secrets.u64()?);
        let DerivedKeys { addr_key, limits_key } = DerivedKeys::of(cookie_key);
        let pool =
            BufPool::new(config.buffer_pool_bytes, config.buffer_pool_max_buffer, POOL_LIMIT);
        let limits = SourceLimits::new(config.address_limits, limits_key);
        Ok(Self {
            fingerprint: fingerprint(&config),
            config,
            epoch: now,
            last_instant: now,
            last_tick: Tick::EPOCH,
            secrets,
            cookie_key,
            slots: Vec::new(),
            free: Vec::new(),
            last_source: None,
            by_addr: AddrTable::new(AddrHashBuilder::new(addr_key)),
            live: 0,
            replies: VecDeque::new(),
            closing: VecDeque::new(),
            events: VecDeque::new(),
            events_popped: 0,
            data: Vec::new(),
            pool,
            accept_filter: None,
            ready: VecDeque::new(),
            timers: BinaryHeap::new(),
            unscheduled: None,
            scratch: PacketScratch::default(),
            stats: EndpointStats::default(),
            limits,
            untrusted_held: 0,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Endpoint-wide counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Open connections (connecting ones included).
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// Lets the application accept or refuse each incoming connection (refused clients get a
    /// [`RejectReason::Refused`]). Without a filter every connection is accepted.
    pub fn set_accept_filter(&mut self, filter: impl FnMut(SocketAddr) -> bool + Send + 'static) {
        self.accept_filter = Some(Box::new(filter));
    }

    /// Trusts a connection a peer opened to us, typically once it has authenticated: its
    /// reassembly budget becomes `max_reassembly_bytes` instead of
    /// `max_reassembly_bytes_untrusted`, and it no longer draws on
    /// `untrusted_reassembly_bytes_total` (see [`EndpointConfig`]). Connections we open are
    /// trusted from the start. Returns `false` if the connection does not exist.
    pub fn set_trusted(&mut self, id: ConnectionId) -> bool {
        let Some(conn) = self.conn_mut(id) else { return false };
        if !conn.trusted {
            conn.trusted = true;
            conn.held_cap = usize::MAX;
            let held = conn.held_bytes();
            self.untrusted_held -= held;
        }
        true
    }

    /// Whether a connection is trusted (see [`set_trusted`](Self::set_trusted)).
    pub fn is_trusted(&self, id: ConnectionId) -> bool {
        self.conn(id).is_some_and(|c| c.trusted)
    }

    /// Bytes all untrusted connections hold for messages they cannot deliver yet (bounded by
    /// `untrusted_reassembly_bytes_total`).
    pub fn untrusted_held_bytes(&self) -> usize {
        self.untrusted_held
    }

    fn conn(&self, id: ConnectionId) -> Option<&Connection> {
        let slot = self.slots.get(id.slot())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.conn.as_deref()
    }

    fn conn_mut(&mut self, id: ConnectionId) -> Option<&mut Connection> {
        let slot = self.slots.get_mut(id.slot())?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.conn.as_deref_mut()
    }

    fn id_of(&self, slot: u32) -> ConnectionId {
        ConnectionId::new(slot, self.slots[slot as usize].generation)
    }

    /// The peer address of a connection.
    pub fn remote_address(&self, id: ConnectionId) -> Option<SocketAddr> {
        self.conn(id).map(|c| c.addr)
    }

    /// Whether the connection is established (not still connecting).
    pub fn is_connected(&self, id: ConnectionId) -> bool {
        self.conn(id).is_some_and(Connection::is_connected)
    }

    /// A connection's counters and estimates.
    pub fn connection_stats(&self, id: ConnectionId) -> Option<ConnectionStats> {
        self.conn(id).map(|conn| conn.stats(&self.config))
    }

    /// Messages waiting on a channel of a connection (queued, or sent and unacknowledged).
    pub fn queue_depth(&self, id: ConnectionId, channel: ChannelId) -> Option<usize> {
        self.conn(id)?.queue_depth(channel)
    }

    fn insert(&mut self, conn: Connection) -> Option<ConnectionId> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Slot {
                    generation: 0,
                    scheduled: None,
                    deadline: Tick::EPOCH,
                    conn: None,
                    newest_state: Vec::new(),
                });
                slot
            }
        };
        self.by_addr.insert(self.by_addr.tag(&conn.addr), slot);
        self.last_source = None;
        self.slots[slot as usize].conn = Some(Box::new(conn));
        self.live += 1;
        self.mark_ready(slot);
        Some(self.id_of(slot))
    }

    /// The slot of the connection with peer address `addr`, if any: a tag in the table,
    /// confirmed against the connection's address.
    fn lookup(&self, addr: SocketAddr) -> Option<u32> {
        let slots = &self.slots;
        self.by_addr.find(self.by_addr.tag(&addr), |slot| {
            slots[slot as usize].conn.as_deref().is_some_and(|conn| conn.addr == addr)
        })
    }

    /// The slot of the connection with peer address `from`, if any (see `last_source`).
    fn slot_of(&mut self, from: SocketAddr) -> Option<u32> {
        if let Some((addr, slot)) = self.last_source {
            if addr == from {
                return Some(slot);
            }
        }
        let slot = self.lookup(from)?;
        self.last_source = Some((from, slot));
        Some(slot)
    }

    /// Something about connection `slot` changed: queue it for `poll_transmit`, unless it is
    /// queued already. That visit sends what is due and then registers the connection's next
    /// deadline, so a burst of datagrams costs one deadline computation, not one each (until
    /// then `poll_timeout` says "now").
    fn mark_ready(&mut self, slot: u32) {
        if let Some(conn) = self.slots[slot as usize].conn.as_deref_mut() {
            if !conn.ready {
                conn.ready = true;
                self.ready.push_back(slot);
            }
        }
    }

    /// Pops the next deadline due by `now` that is still live, clears its registration and
    /// returns its connection's slot. Stale entries (closed connections, deadlines since
    /// re-registered) are dropped on the way, and a registration whose connection's deadline
    /// has since moved later is filed again at that deadline (see [`Slot::deadline`]).
    fn pop_due(&mut self, now: Tick) -> Option<u32> {
        while let Some(&Reverse((at, slot))) = self.timers.peek() {
            if at > now {
                return None;
            }
            let _ = self.timers.pop();
            let entry = &mut self.slots[slot as usize];
            if entry.conn.is_none() || entry.scheduled != Some(at) {
                continue;
            }
            if entry.deadline > at {
                entry.scheduled = Some(entry.deadline);
                self.timers.push(Reverse((entry.deadline, slot)));
                continue;
            }
            entry.scheduled = None;
            return Some(slot);
        }
        None
    }

    fn remove(&mut self, id: ConnectionId) -> Option<Box<Connection>> {
        let slot = self.slots.get_mut(id.slot())?;
        if slot.generation != id.generation() {
            return None;
        }
        let mut conn = slot.conn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        slot.scheduled = None;
        slot.newest_state.clear();
        self.free.push(id.slot_index());
        let removed = self.by_addr.remove(self.by_addr.tag(&conn.addr), id.slot_index());
        debug_assert!(removed, "every live connection has its entry in the address table");
        self.last_source = None;
        self.live -= 1;
        if !conn.trusted {
            self.untrusted_held -= conn.held_bytes();
        }
        if conn.address_counted {
            self.limits.closed(conn.addr.ip());
        }
        conn.release(&mut self.pool);
        Some(conn)
    }

    /// Closes untrusted connections, longest holder first, until they hold no more than
    /// `untrusted_reassembly_bytes_total`. Only the next message in order on a reliable channel
    /// can take them past it (everything else is refused or dropped at the budget), and it
    /// cannot be refused without stalling its channel: so one who has held memory longest
    /// (an honest peer completes its messages) makes room, with a notice to the peer. Each
    /// eviction costs the attacker a handshake, which the address limits ration.
    fn evict_untrusted(&mut self, now: Tick) {
        while self.untrusted_held > self.config.untrusted_reassembly_bytes_total {
            let oldest = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let c = s.conn.as_deref()?;
                    (!c.trusted).then_some(())?;
                    Some((c.held_since?, i))
                })
                .min();
            let Some((_, slot)) = oldest else { return };
            let id = self.id_of(u32::try_from(slot).expect("slots are u32"));
            tracing::debug!(conn = %id, "untrusted reassembly budget full: closing the longest holder");
            self.stats.untrusted_evictions += 1;
            self.disconnect_at(now, id);
            self.events.push_back(Pending::Disconnected {
                conn: id,
                reason: DisconnectReason::ReassemblyBudget,
            });
        }
    }

    fn close_with_event(&mut self, id: ConnectionId, reason: DisconnectReason) {
        if self.remove(id).is_some() {
            tracing::debug!(conn = %id, %reason, "connection closed");
            self.events.push_back(Pending::Disconnected { conn: id, reason });
        }
    }

    /// Whether a new connection with `remote` may be made: none exists with it, and the
    /// endpoint is not full.
    fn room_for(&self, remote: SocketAddr) -> Result<(), ConnectError> {
        if self.lookup(remote).is_some() {
            return Err(ConnectError::AlreadyConnected(remote));
        }
        if self.live >= self.config.max_connections {
            return Err(ConnectError::TooManyConnections(self.config.max_connections));
        }
        Ok(())
    }

    /// Starts connecting to `remote`. The result arrives as [`Event::Connected`] or
    /// [`Event::Disconnected`]. Messages may be queued with [`send`](Self::send) at once; they go
    /// out when the connection is established.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.tick(now);
        self.room_for(remote)?;
        let client_salt = self.secrets.u64()?;
        let phase = Phase::Connecting(Box::new(Connecting {
            cookie: None,
            responses: 0,
            attempts: 0,
            next_attempt: now,
            below: false,
        }));
        let conn = Connection::new(&self.config, remote, phase, client_salt, 0, true, now);
        let id = self
            .insert(conn)
            .ok_or(ConnectError::TooManyConnections(self.config.max_connections))?;
        tracing::debug!(conn = %id, %remote, "connecting");
        Ok(id)
    }

    /// Queues a message on a channel of a connection.
    pub fn send(
        &mut self,
        id: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let Self { slots, config, pool, .. } = self;
        let slot = slots.get_mut(id.slot()).filter(|s| s.generation == id.generation());
        let conn = slot.and_then(|s| s.conn.as_deref_mut()).ok_or(SendError::UnknownConnection)?;
        conn.enqueue(channel, payload, config, pool)?;
        self.mark_ready(id.slot_index());
        Ok(())
    }

    /// Closes a connection. The peer is told (the notice is repeated to survive loss); no event
    /// is reported locally. Unsent and unacknowledged messages are dropped.
    pub fn disconnect(&mut self, now: Instant, id: ConnectionId) {
        let now = self.tick(now);
        self.disconnect_at(now, id);
    }

    fn disconnect_at(&mut self, now: Tick, id: ConnectionId) {
        if let Some(conn) = self.remove(id) {
            if conn.is_connected() {
                self.closing.push_back(Closing {
                    to: conn.addr,
                    token: conn.token(),
                    remaining: self.config.disconnect_copies,
                    next_at: now,
                });
            }
        }
    }

    /// Starts a connection to `remote` that a transport below this endpoint makes (a secure
    /// transport with a handshake of its own): nothing is sent and no timer runs until
    /// [`establish_below`](Self::establish_below) hands over what that handshake agreed.
    /// Messages may be queued at once, as with [`connect`](Self::connect). The transport below
    /// reports a failure with [`close_below`](Self::close_below).
    pub fn connect_below(
        &mut self,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.tick(now);
        self.room_for(remote)?;
        let below =
            Connecting { cookie: None, responses: 0, attempts: 0, next_attempt: now, below: true };
        let phase = Phase::Connecting(Box::new(below));
        let conn = Connection::new(&self.config, remote, phase, 0, 0, true, now);
        let id = self
            .insert(conn)
            .ok_or(ConnectError::TooManyConnections(self.config.max_connections))?;
        tracing::debug!(conn = %id, %remote, "connecting through the transport below");
        Ok(id)
    }

    /// The transport below connected `id` (from [`connect_below`](Self::connect_below)) to
    /// `remote` (which may differ from the address first given: a token lists several servers)
    /// and agreed the two salts with the peer; they must be secret to the two peers and fresh
    /// for the connection, as the handshake's are. [`Event::Connected`] follows and queued
    /// messages go out. Returns `false` (and changes nothing) if `id` is not a connection
    /// waiting below, or `remote` is taken by another connection.
    pub fn establish_below(
        &mut self,
        now: Instant,
        id: ConnectionId,
        remote: SocketAddr,
        client_salt: u64,
        server_salt: u64,
    ) -> bool {
        let now = self.tick(now);
        let Some(conn) = self.conn(id) else { return false };
        if !conn.phase.is_below() {
            return false;
        }
        let old = conn.addr;
        let slot = id.slot_index();
        if old != remote {
            if self.lookup(remote).is_some() {
                return false;
            }
            self.by_addr.remove(self.by_addr.tag(&old), slot);
            self.by_addr.insert(self.by_addr.tag(&remote), slot);
            self.last_source = None;
        }
        let conn = self.conn_mut(id).expect("checked above");
        conn.establish_below(remote, client_salt, server_salt, now);
        tracing::debug!(conn = %id, %remote, "connected through the transport below");
        self.events.push_back(Pending::Connected(id));
        self.mark_ready(slot);
        true
    }

    /// A peer connected to us through a transport below this endpoint (one that authenticated
    /// it and agreed the two salts with it, which must be secret to the two peers and fresh
    /// for the connection): the connection is established at once, with no handshake of this
    /// endpoint's own, and [`Event::Connected`] follows. The limits of `max_connections` and
    /// the accept filter apply; the per-address limits do not (the transport below admits
    /// peers its own way).
    pub fn accept_below(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        client_salt: u64,
        server_salt: u64,
    ) -> Result<ConnectionId, ConnectError> {
        let now = self.tick(now);
        self.room_for(remote)?;
        if self.accept_filter.as_mut().is_some_and(|accept| !accept(remote)) {
            return Err(ConnectError::Refused(remote));
        }
        let conn = Connection::new(
            &self.config,
            remote,
            Phase::Connected,
            client_salt,
            server_salt,
            false,
            now,
        );
        let id = self
            .insert(conn)
            .ok_or(ConnectError::TooManyConnections(self.config.max_connections))?;
        self.stats.accepted += 1;
        tracing::debug!(conn = %id, %remote, "accepted through the transport below");
        self.events.push_back(Pending::Connected(id));
        Ok(id)
    }

    /// The transport below ended connection `id` (the peer left, timed out, or the attempt
    /// failed): it is forgotten without a packet of this endpoint's own, and
    /// [`Event::Disconnected`] with `reason` follows, unless `reason` is `None` (the
    /// application asked, and expects no event). Returns whether `id` was a connection.
    pub fn close_below(&mut self, id: ConnectionId, reason: Option<DisconnectReason>) -> bool {
        match reason {
            Some(reason) => {
                let known = self.conn(id).is_some();
                self.close_with_event(id, reason);
                known
            }
            None => self.remove(id).is_some(),
        }
    }

    /// Whether [`poll_event`](Self::poll_event) has something to return.
    pub fn has_events(&self) -> bool {
        self.events.iter().any(|e| !matches!(e, Pending::Data { superseded: true, .. }))
    }

    /// The next event, if any. A data event's payload is lent until the next call.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        loop {
            let Some(pending) = self.events.pop_front() else {
                self.data.clear();
                return None;
            };
            self.events_popped += 1;
            // The application answers an event on its connection, most often: ask for the
            // next events' connections.
            self.prefetch_next(self.events.iter().map(Pending::slot));
            return Some(match pending {
                Pending::Connected(conn) => Event::Connected(conn),
                Pending::Disconnected { conn, reason } => Event::Disconnected { conn, reason },
                Pending::Data { superseded: true, .. } => continue,
                Pending::Data { conn, channel, start, len, superseded: false } => {
                    Event::Data { conn, channel, payload: &self.data[start..start + len] }
                }
            });
        }
    }

    fn cookie_mac(&self, addr: SocketAddr, client_salt: u64, issued: u32) -> u64 {
        let mut h = SipHasher::new(self.cookie_key.0, self.cookie_key.1);
        match addr.ip() {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        };
        h.write(&addr.port().to_le_bytes()).write_u64(client_salt).write(&issued.to_le_bytes());
        h.finish()
    }

    /// `now` on this endpoint's clock (see [`Tick`]): each public call with an instant
    /// converts it once, here (and a run of calls with the same instant, once for all).
    fn tick(&mut self, now: Instant) -> Tick {
        if now != self.last_instant {
            self.last_instant = now;
            self.last_tick = Tick::since(self.epoch, now);
        }
        self.last_tick
    }

    fn seconds_since_start(&self, now: Tick) -> u32 {
        u32::try_from(now.saturating_duration_since(Tick::EPOCH).as_secs()).unwrap_or(u32::MAX)
    }

    fn cookie_is_valid(
        &self,
        now: Tick,
        addr: SocketAddr,
        client_salt: u64,
        cookie: Cookie,
    ) -> bool {
        let current = self.seconds_since_start(now);
        let lifetime = u32::try_from(self.config.cookie_lifetime.as_secs()).unwrap_or(u32::MAX);
        cookie.issued <= current
            && current - cookie.issued <= lifetime
            && cookie.mac == self.cookie_mac(addr, client_salt, cookie.issued)
    }

    fn reply(&mut self, to: SocketAddr, packet: Control) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.replies_dropped += 1;
            return;
        }
        if matches!(packet, Control::Reject { .. }) {
            self.stats.rejections_sent += 1;
        }
        self.replies.push_back((to, packet));
    }

    /// Prefetch stage `stage` (below [`PREFETCH_STAGES`](prefetch::PREFETCH_STAGES)) for a
    /// datagram from `from` that [`handle_datagram`](Self::handle_datagram) will get soon:
    /// stage 0 asks for its line of the address table, stage 1 for the slots it names, stage 2
    /// for their connections, stage 3 for the channels those connections last used and their
    /// packet records.
    /// Each stage reads only what the stages before it asked for, so run them in order, with
    /// some work between them: a [`Pipeline`](prefetch::Pipeline) over a received batch does.
    /// A server at a crowd's scale meets every connection cold, and its handling of a batch
    /// then overlaps those reads instead of waiting for each. A hint only: it changes nothing
    /// the endpoint does.
    pub fn prefetch_source(&self, from: SocketAddr, stage: usize) {
        let tag = self.by_addr.tag(&from);
        if stage == 0 {
            self.by_addr.prefetch(tag);
            return;
        }
        for slot in self.by_addr.candidates(tag) {
            self.prefetch_slot(slot, stage);
        }
    }

    /// Stage `stage` (1 to 3) of [`prefetch_source`](Self::prefetch_source) for the connection
    /// in `slot`.
    fn prefetch_slot(&self, slot: u32, stage: usize) {
        let Some(slot) = self.slots.get(slot as usize) else { return };
        match (stage, slot.conn.as_deref()) {
            (1, _) => prefetch::value(slot),
            (2, Some(conn)) => prefetch::value(conn),
            (3, Some(conn)) => conn.prefetch_parts(),
            _ => {}
        }
    }

    /// Asks for the state of the connections next in `slots` (the queue of what may send, or
    /// of events, with the next first), each a stage further the nearer it is: the same
    /// pipeline as a driver's over a batch, for the endpoint's own queues. Only at a crowd's
    /// scale ([`PREFETCH_FROM_CONNECTIONS`](prefetch::PREFETCH_FROM_CONNECTIONS)).
    fn prefetch_next(&self, mut slots: impl Iterator<Item = u32>) {
        if self.live < prefetch::PREFETCH_FROM_CONNECTIONS {
            return;
        }
        for stage in [3, 2, 1] {
            let Some(slot) = slots.next() else { return };
            self.prefetch_slot(slot, stage);
        }
    }

    /// Prefetch stage `stage` (below [`PREFETCH_STAGES`](prefetch::PREFETCH_STAGES)) for a call
    /// on this endpoint coming soon, for a driver that runs many endpoints in one thread (a
    /// load generator, a simulation of many clients): stage 0 asks for the endpoint itself,
    /// stage 1 for its queues and its first slot, stages 2 and 3 for the connection in that
    /// slot (a client's only one) as [`prefetch_source`](Self::prefetch_source) does. Run the
    /// stages in order with some work between them, as a [`Pipeline`](prefetch::Pipeline)
    /// over the endpoints due next does. A hint only.
    pub fn prefetch(&self, stage: usize) {
        // Each stage reads only what earlier stages asked for: stage 0 not even `slots`.
        match stage {
            0 => prefetch::value(self),
            1 => {
                if let Some(slot) = self.slots.first() {
                    prefetch::value(slot);
                }
                prefetch::front(self.timers.as_slice());
                prefetch::front(self.events.as_slices().0);
                prefetch::front(self.ready.as_slices().0);
                prefetch::front(&self.data);
                self.scratch.prefetch();
            }
            2 | 3 => self.prefetch_slot(0, stage),
            _ => {}
        }
    }

    /// Feeds one received datagram.
    ///
    /// An acknowledgement covers the newest 33 packets of a connection, so a driver reading a
    /// long burst should send what [`poll_transmit`](Self::poll_transmit) has at least every 32
    /// datagrams; otherwise the peer never sees the older ones acknowledged and resends them.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.tick(now);
        self.stats.datagrams_received += 1;
        if self.events.is_empty() {
            // Every payload has been handed out (the last one was lent only until this call):
            // start the buffer over, or a receiver that never polls an empty queue (as `Host`
            // never does under steady load) would see it grow by every message.
            self.data.clear();
            if self.data.capacity() > DATA_KEEP {
                self.data.shrink_to(DATA_KEEP);
            }
        }
        let Some(&first) = datagram.first() else {
            self.stats.malformed += 1;
            return;
        };
        if first & CONTROL_BIT != 0 {
            match Control::decode(datagram) {
                Ok(packet) => {
                    self.handle_control(now, from, packet);
                    if let Some(slot) = self.slot_of(from) {
                        self.mark_ready(slot);
                    }
                }
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        let Some(slot) = self.slot_of(from) else {
            self.stats.unknown_source += 1;
            return;
        };
        let id = self.id_of(slot);
        let Self {
            slots, config, pool, events, data, events_popped, scratch, untrusted_held, ..
        } = self;
        let Slot { conn, newest_state, .. } = &mut slots[slot as usize];
        let conn = conn.as_deref_mut().expect("by_addr names live slots");
        let held_before = conn.held_bytes();
        if !conn.trusted {
            let room = config.untrusted_reassembly_bytes_total.saturating_sub(*untrusted_held);
            conn.held_cap = held_before + room;
        }
        let verdict =
            conn.on_packet(now, datagram, config, pool, scratch, &mut |channel, payload| {
                let index = *events_popped + events.len() as u64;
                if config.qos(channel).is_some_and(Qos::is_state_update) {
                    // Only the newest state is delivered: an older one still queued is dropped.
                    let ch = usize::from(channel.0);
                    if newest_state.len() <= ch {
                        newest_state.resize(config.channels.len().max(ch + 1), None);
                    }
                    if let Some(older) = newest_state[ch].replace(index) {
                        if let Some(i) = older.checked_sub(*events_popped) {
                            if let Some(Pending::Data { superseded, .. }) =
                                events.get_mut(usize::try_from(i).unwrap_or(usize::MAX))
                            {
                                *superseded = true;
                            }
                        }
                    }
                }
                let start = data.len();
                data.extend_from_slice(payload);
                events.push_back(Pending::Data {
                    conn: id,
                    channel,
                    start,
                    len: payload.len(),
                    superseded: false,
                });
            });
        if !conn.trusted {
            *untrusted_held = *untrusted_held - held_before + conn.held_bytes();
            track_holding(conn, now);
        }
        if verdict == PacketVerdict::Rejected {
            self.stats.rejected_packets += 1;
        }
        self.mark_ready(slot);
        if self.untrusted_held > self.config.untrusted_reassembly_bytes_total {
            self.evict_untrusted(now);
        }
    }

    fn handle_control(&mut self, now: Tick, from: SocketAddr, packet: Control) {
        let existing = self.slot_of(from).map(|slot| self.id_of(slot));
        match packet {
            Control::ConnectRequest { protocol_id, fingerprint, client_salt } => {
                self.stats.connect_requests += 1;
                if !self.config.accept_connections {
                    return;
                }
                // The source is not proven yet (anyone can forge it), so nothing here may be
                // charged to it: a spoofer could spend a victim's handshake rate. Every answer
                // is smaller than the request, and MAX_PENDING_REPLIES bounds the work.
                if let Some(reason) = self.refusal(protocol_id, fingerprint, existing) {
                    self.reply(from, Control::Reject { client_salt, reason });
                    return;
                }
                if existing.is_none() && !self.limits.may_connect(from.ip()) {
                    self.stats.address_limit_rejections += 1;
                    let reason = RejectReason::TooManyFromAddress;
                    self.reply(from, Control::Reject { client_salt, reason });
                    return;
                }
                let issued = self.seconds_since_start(now);
                let cookie = Cookie { issued, mac: self.cookie_mac(from, client_salt, issued) };
                self.reply(from, Control::Challenge { client_salt, cookie });
            }
            Control::ConnectResponse { protocol_id, fingerprint, client_salt, cookie } => {
                if !self.config.accept_connections {
                    return;
                }
                if !self.cookie_is_valid(now, from, client_salt, cookie) {
                    self.stats.invalid_cookies += 1;
                    return;
                }
                let mut replaced = DisconnectReason::Reconnected;
                if let Some(id) = existing {
                    let conn = self.conn(id).expect("live");
                    if conn.client_salt == client_salt && !conn.is_client {
                        // Our accept was lost: say it again.
                        let server_salt = conn.server_salt;
                        self.reply(from, Control::Accept { client_salt, server_salt });
                        return;
                    }
                    if conn.is_client {
                        // We are connecting (or connected) to this peer ourselves. When both
                        // sides connect at once, the attempt with the larger salt wins on both
                        // sides; a response with a smaller salt is the losing attempt (or a late
                        // copy of it) and is ignored.
                        if conn.client_salt > client_salt {
                            return;
                        }
                        if !conn.is_connected() {
                            replaced = DisconnectReason::CrossedConnect;
                        }
                    }
                }
                if let Some(reason) = self.refusal(protocol_id, fingerprint, existing) {
                    self.reply(from, Control::Reject { client_salt, reason });
                    return;
                }
                // The cookie proves the source receives at its address: from here on its
                // prefix pays. Handshakes completed per prefix are rate-limited (an attempt past
                // the rate is dropped unanswered; the client repeats its response).
                let verdict = self.limits.on_handshake(now, from.ip());
                if verdict == Verdict::Throttle {
                    self.stats.handshakes_throttled += 1;
                    return;
                }
                if verdict == Verdict::Full && existing.is_none() {
                    self.stats.address_limit_rejections += 1;
                    let reason = RejectReason::TooManyFromAddress;
                    self.reply(from, Control::Reject { client_salt, reason });
                    return;
                }
                if self.accept_filter.as_mut().is_some_and(|accept| !accept(from)) {
                    self.reply(
                        from,
                        Control::Reject { client_salt, reason: RejectReason::Refused },
                    );
                    return;
                }
                let server_salt = match self.secrets.u64() {
                    Ok(salt) => salt,
                    Err(error) => {
                        // No connection without a secret salt; the client asks again.
                        tracing::warn!(remote = %from, %error, "connection not accepted");
                        return;
                    }
                };
                if let Some(old) = existing {
                    // The same address connects anew: the old connection is stale (or our own
                    // attempt gives way to the peer's).
                    self.close_with_event(old, replaced);
                }
                let mut conn = Connection::new(
                    &self.config,
                    from,
                    Phase::Connected,
                    client_salt,
                    server_salt,
                    false,
                    now,
                );
                conn.address_counted = true;
                let Some(id) = self.insert(conn) else {
                    self.reply(
                        from,
                        Control::Reject { client_salt, reason: RejectReason::ServerFull },
                    );
                    return;
                };
                self.stats.accepted += 1;
                self.limits.opened(from.ip());
                tracing::debug!(conn = %id, remote = %from, "accepted");
                self.events.push_back(Pending::Connected(id));
                self.reply(from, Control::Accept { client_salt, server_salt });
            }
            Control::Challenge { client_salt, cookie } => {
                let Some(id) = existing else { return };
                let conn = self.conn_mut(id).expect("live");
                if conn.client_salt != client_salt {
                    return;
                }
                if let Phase::Connecting(connecting) = &mut conn.phase {
                    if connecting.below {
                        return;
                    }
                    connecting.cookie = Some(cookie);
                    connecting.responses = 0;
                    // Answer at once rather than at the next retry.
                    connecting.next_attempt = now;
                }
            }
            Control::Accept { client_salt, server_salt } => {
                let Some(id) = existing else { return };
                let conn = self.conn_mut(id).expect("live");
                if conn.client_salt != client_salt || !conn.phase.is_handshaking() {
                    return;
                }
                conn.establish_as_client(server_salt, now);
                tracing::debug!(conn = %id, "connected");
                self.events.push_back(Pending::Connected(id));
            }
            Control::Reject { client_salt, reason } => {
                let Some(id) = existing else { return };
                let conn = self.conn(id).expect("live");
                if conn.client_salt == client_salt && conn.phase.is_handshaking() {
                    self.close_with_event(id, DisconnectReason::Rejected(reason));
                }
            }
            Control::Disconnect { token: received } => {
                let Some(id) = existing else { return };
                let conn = self.conn(id).expect("live");
                if conn.is_connected() && conn.token() == received {
                    self.close_with_event(id, DisconnectReason::ClosedByPeer);
                }
            }
        }
    }

    /// Why a connection attempt must be turned down, if it must.
    fn refusal(
        &self,
        protocol_id: u64,
        fingerprint: u64,
        existing: Option<ConnectionId>,
    ) -> Option<RejectReason> {
        if protocol_id != self.config.protocol_id {
            Some(RejectReason::VersionMismatch)
        } else if fingerprint != self.fingerprint {
            Some(RejectReason::ConfigMismatch)
        } else if existing.is_none() && self.live >= self.config.max_connections {
            Some(RejectReason::ServerFull)
        } else {
            None
        }
    }

    /// Writes the next datagram to send into `buf` (at least `max_packet_size` bytes), or
    /// returns `None` when there is nothing to send now. Send what it returns, then check
    /// [`poll_timeout`](Self::poll_timeout): the connection's next deadline is worked out after
    /// the send, by [`handle_timeout`](Self::handle_timeout).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.tick(now);
        if let Some((destination, packet)) = self.replies.pop_front() {
            return Some(Transmit { destination, len: encode_control(&packet, buf) });
        }
        if self.closing.front().is_some_and(|c| c.next_at <= now) {
            let mut closing = self.closing.pop_front().expect("front exists");
            let len = encode_control(&Control::Disconnect { token: closing.token }, buf);
            closing.remaining -= 1;
            closing.next_at = now + self.config.disconnect_copy_interval;
            let destination = closing.to;
            if closing.remaining > 0 {
                self.closing.push_back(closing);
            }
            return Some(Transmit { destination, len });
        }
        self.wake_due(now);
        // Each connection that sent goes to the back of the queue, so all get their turn.
        while let Some(slot) = self.ready.pop_front() {
            self.prefetch_next(self.ready.iter().copied());
            let Some(conn) = self.slots[slot as usize].conn.as_deref_mut() else { continue };
            conn.ready = false;
            if let Some((transmit, more)) = self.transmit_for(slot as usize, now, buf) {
                // A full packet leaves more to send: back in the queue. Otherwise the
                // connection's next deadline is all there is to know, and it can wait until
                // the packet is on its way (an interactive flow's latency does not pay for it).
                if more {
                    self.mark_ready(slot);
                } else if let Some(earlier) = self.unscheduled.replace(slot) {
                    self.schedule(earlier, now);
                }
                return Some(transmit);
            }
            // Nothing to send now; a timer, a datagram or a send queues it again.
            self.schedule(slot, now);
        }
        None
    }

    /// Queues the connections whose deadline has passed, so a due resend, acknowledgement or
    /// keepalive goes out even when the driver polls for transmits before running timers. A
    /// deadline that also needs `handle_timeout` (a connection timeout, an expired partial
    /// message) is registered again when the connection is visited.
    fn wake_due(&mut self, now: Tick) {
        while let Some(slot) = self.pop_due(now) {
            self.mark_ready(slot);
        }
    }

    /// Notes connection `slot`'s next deadline, and registers it if it moved earlier than the
    /// one registered (a later one is filed when the earlier comes due: see [`Slot::deadline`]).
    fn schedule(&mut self, slot: u32, now: Tick) {
        let Slot { conn, scheduled, deadline, .. } = &mut self.slots[slot as usize];
        let Some(conn) = conn.as_deref_mut() else { return };
        if conn.phase.is_below() {
            // No timer of its own: the transport below keeps the time until it connects.
            return;
        }
        let at = conn.next_timeout(&self.config).max(now);
        *deadline = at;
        if scheduled.is_none_or(|s| at < s) {
            *scheduled = Some(at);
            self.timers.push(Reverse((at, slot)));
        }
    }

    /// The next datagram of connection `slot`, and whether it has more ready to go.
    fn transmit_for(&mut self, slot: usize, now: Tick, buf: &mut [u8]) -> Option<(Transmit, bool)> {
        let Self { slots, config, pool, scratch, fingerprint, .. } = self;
        let conn = slots[slot].conn.as_deref_mut()?;
        match &mut conn.phase {
            Phase::Connecting(connecting) => {
                let Connecting { cookie, responses, attempts, next_attempt, below } =
                    &mut **connecting;
                if *below || *next_attempt > now || *attempts >= config.connect_attempts {
                    return None;
                }
                *attempts += 1;
                if cookie.is_some() {
                    if *responses >= RESPONSES_PER_COOKIE {
                        // Unanswered with this cookie: it may be stale by now; start over.
                        *cookie = None;
                        *responses = 0;
                    } else {
                        *responses += 1;
                    }
                }
                // Back off over the packets unanswered in a row: requests until a challenge
                // comes, then responses with its cookie.
                let wait = match *cookie {
                    None => retry_wait(config, *attempts, conn.client_salt),
                    // A cookie lives `cookie_lifetime`: its few responses must fit in it.
                    Some(_) => retry_wait(config, *responses, conn.client_salt)
                        .min(config.cookie_lifetime / RESPONSES_PER_COOKIE),
                };
                *next_attempt = now + wait;
                let (protocol_id, fingerprint, client_salt) =
                    (config.protocol_id, *fingerprint, conn.client_salt);
                let packet = match *cookie {
                    None => Control::ConnectRequest { protocol_id, fingerprint, client_salt },
                    Some(cookie) => {
                        Control::ConnectResponse { protocol_id, fingerprint, client_salt, cookie }
                    }
                };
                Some((
                    Transmit { destination: conn.addr, len: encode_control(&packet, buf) },
                    false,
                ))
            }
            Phase::Connected => {
                let (len, more) = conn.build_packet(now, buf, config, pool, scratch)?;
                Some((Transmit { destination: conn.addr, len }, more))
            }
        }
    }

    /// Handles timers: connection timeouts, failed connection attempts, stale partial messages,
    /// and due resends, acknowledgements and keepalives (which `poll_transmit` then sends).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        if let Some(slot) = self.unscheduled.take() {
            self.schedule(slot, now);
        }
        while let Some(slot) = self.pop_due(now) {
            let id = self.id_of(slot);
            let Self { slots, config, pool, untrusted_held, .. } = self;
            let conn = slots[slot as usize].conn.as_deref_mut().expect("pop_due: live");
            let held_before = conn.held_bytes();
            let reason = match conn.phase {
                Phase::Connecting(ref connecting) => {
                    let Connecting { attempts, next_attempt, below, .. } = **connecting;
                    (!below && attempts >= config.connect_attempts && now >= next_attempt)
                        .then_some(DisconnectReason::ConnectTimeout)
                }
                Phase::Connected => {
                    conn.handle_timeout(now, config, pool).then_some(DisconnectReason::Timeout)
                }
            };
            if !conn.trusted {
                // Expired partial messages released memory.
                *untrusted_held = *untrusted_held - held_before + conn.held_bytes();
                track_holding(conn, now);
            }
            match reason {
                Some(reason) => self.close_with_event(id, reason),
                // Due: let `poll_transmit` visit it (which also registers its next deadline;
                // doing that here could find the same deadline due again, forever).
                None => self.mark_ready(slot),
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) (and then `poll_transmit`) should next be
    /// called; `None` when nothing is scheduled. An instant in the past means "now": after a
    /// datagram or a send, `poll_transmit` has work; after `poll_transmit` handed out a packet,
    /// `handle_timeout` registers the deadline it left for after the send. It may come early
    /// (a deadline that moved later, or a closed connection's); `handle_timeout` then does
    /// nothing but reschedule.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.replies.is_empty() || !self.ready.is_empty() || self.unscheduled.is_some() {
            // Something to send, or a connection whose deadline is yet to be registered.
            return Some(self.epoch);
        }
        let closing = self.closing.front().map(|c| c.next_at);
        let conns = self.timers.peek().map(|Reverse((at, _))| *at);
        closing.into_iter().chain(conns).min().map(|at| at.instant(self.epoch))
    }

    /// How long until [`poll_timeout`](Self::poll_timeout), from `now` (zero if due).
    pub fn time_until_timeout(&self, now: Instant) -> Option<Duration> {
        self.poll_timeout().map(|at| at.saturating_duration_since(now))
    }
}

/// Keeps `held_since` of an untrusted connection after its held bytes changed.
fn track_holding(conn: &mut Connection, now: Tick) {
    if conn.held_bytes() == 0 {
        conn.held_since = None;
    } else if conn.held_since.is_none() {
        conn.held_since = Some(now);
    }
}

fn encode_control(packet: &Control, buf: &mut [u8]) -> usize {
    let mut w = Writer::new(buf);
    packet.encode(&mut w).expect("the transmit buffer holds at least max_packet_size (64+) bytes");
    w.len()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::{Endpoint, Secrets, retry_wait};
    use crate::{ConfigError, ConnectError, EndpointConfig};

    #[expect(clippy::disallowed_methods, reason = "any instant will do as an origin")]
    fn origin() -> Instant {
        Instant::now()
    }

    /// An endpoint whose secrets follow from `seed`, so a test replays exactly.
    fn seeded(config: EndpointConfig, now: Instant, seed: u64) -> Endpoint {
        Endpoint::with_deterministic_secrets_for_tests(config, now, seed).unwrap()
    }

    /// Shuttles datagrams between the two until both are quiet; returns the server's events.
    fn exchange(client: &mut Endpoint, server: &mut Endpoint, now: Instant) -> Vec<String> {
        let (client_addr, server_addr): (SocketAddr, SocketAddr) =
            ("10.0.0.2:1".parse().unwrap(), "10.0.0.1:1".parse().unwrap());
        let mut buf = [0u8; 1500];
        let mut events = Vec::new();
        for _ in 0..4 {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                server.handle_datagram(now, client_addr, &buf[..t.len]);
            }
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                client.handle_datagram(now, server_addr, &buf[..t.len]);
            }
            while let Some(event) = server.poll_event() {
                events.push(format!("{event:?}"));
            }
        }
        events
    }

    /// Moves datagrams between a client at `client_addr` and the server at 10.0.0.1:1 until
    /// both are quiet; the server's events are left queued.
    fn shuttle(client: &mut Endpoint, client_addr: &str, server: &mut Endpoint, now: Instant) {
        let client_addr: SocketAddr = client_addr.parse().unwrap();
        let server_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut buf = [0u8; 1500];
        for _ in 0..4 {
            client.handle_timeout(now);
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                server.handle_datagram(now, client_addr, &buf[..t.len]);
            }
            server.handle_timeout(now);
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                client.handle_datagram(now, server_addr, &buf[..t.len]);
            }
            while client.poll_event().is_some() {}
        }
    }

    #[test]
    fn a_reused_slot_does_not_inherit_the_newest_states_of_its_last_connection() {
        let now = origin();
        let config =
            EndpointConfig { channels: vec![crate::Qos::StateUpdate], ..EndpointConfig::default() };
        let endpoint = |seed| seeded(config.clone(), now, seed);
        let (mut server, mut a, mut b) = (endpoint(1), endpoint(2), endpoint(3));
        let server_addr = "10.0.0.1:1".parse().unwrap();
        let conn_a = a.connect(now, server_addr).unwrap();
        shuttle(&mut a, "10.0.0.2:1", &mut server, now);
        // A sends a state and leaves; the server's application has not polled meanwhile.
        a.send(conn_a, crate::ChannelId(0), b"state of a").unwrap();
        shuttle(&mut a, "10.0.0.2:1", &mut server, now);
        a.disconnect(now, conn_a);
        shuttle(&mut a, "10.0.0.2:1", &mut server, now);
        assert_eq!(server.connection_count(), 0);
        // B gets A's slot, and sends a state on the same channel.
        let conn_b = b.connect(now, server_addr).unwrap();
        shuttle(&mut b, "10.0.0.3:1", &mut server, now);
        b.send(conn_b, crate::ChannelId(0), b"state of b").unwrap();
        shuttle(&mut b, "10.0.0.3:1", &mut server, now);
        let mut states = Vec::new();
        let mut ids = Vec::new();
        while let Some(event) = server.poll_event() {
            match event {
                super::Event::Data { conn, payload, .. } => {
                    states.push(payload.to_vec());
                    ids.push(conn);
                }
                super::Event::Connected(conn) => ids.push(conn),
                _ => {}
            }
        }
        assert_eq!(states, [b"state of a".to_vec(), b"state of b".to_vec()]);
        assert_eq!(ids[0].slot(), ids[2].slot(), "B reused A's slot: {ids:?}");
    }

    /// A connection a transport below accepted was never counted against the address limits
    /// (they do not apply to it): closing it must not uncount a handshake's connection from
    /// the same address, or that address gets one connection more than its limit.
    #[test]
    fn a_connection_accepted_below_leaves_the_address_limits_as_they_were() {
        let now = origin();
        let limits = crate::AddressLimits { connections_per_ip: 1, ..Default::default() };
        let config = EndpointConfig { address_limits: limits, ..EndpointConfig::default() };
        let endpoint = |seed| seeded(config.clone(), now, seed);
        let (mut server, mut a, mut b) = (endpoint(1), endpoint(2), endpoint(3));
        let server_addr = "10.0.0.1:1".parse().unwrap();
        a.connect(now, server_addr).unwrap();
        shuttle(&mut a, "10.0.0.2:1", &mut server, now);
        assert_eq!(server.connection_count(), 1);
        let below = server.accept_below(now, "10.0.0.2:2".parse().unwrap(), 1, 2).unwrap();
        assert!(server.close_below(below, None));
        // The handshake's connection from 10.0.0.2 is still there: a second is over the limit.
        b.connect(now, server_addr).unwrap();
        shuttle(&mut b, "10.0.0.2:3", &mut server, now);
        assert_eq!(server.connection_count(), 1, "10.0.0.2 went over its limit of 1");
        assert_eq!(server.stats().address_limit_rejections, 1);
    }

    /// The endpoint remembers the last source that named a connection; once that connection
    /// is gone, a late datagram from the old source is from an unknown source, both while its
    /// slot is empty and once another connection (here, one accepted below, which sends
    /// nothing first) has taken it.
    #[test]
    fn a_reused_slot_does_not_take_datagrams_from_its_last_connections_address() {
        let now = origin();
        let endpoint = |seed| seeded(EndpointConfig::default(), now, seed);
        let (mut server, mut a) = (endpoint(1), endpoint(2));
        let (server_addr, a_addr) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let conn_a = a.connect(now, server_addr).unwrap();
        shuttle(&mut a, "10.0.0.2:1", &mut server, now);
        let Some(super::Event::Connected(on_server)) = server.poll_event() else {
            panic!("the server accepted a")
        };
        a.send(conn_a, crate::ChannelId(0), b"late").unwrap();
        let mut buf = [0u8; 1500];
        let t = a.poll_transmit(now, &mut buf).unwrap();
        let late = buf[..t.len].to_vec();
        server.handle_datagram(now, a_addr, &late);
        server.disconnect(now, on_server);
        let unknown = server.stats().unknown_source;
        server.handle_datagram(now, a_addr, &late);
        assert_eq!(server.stats().unknown_source, unknown + 1, "the slot is empty");
        let below = server.accept_below(now, "10.0.0.9:1".parse().unwrap(), 1, 2).unwrap();
        assert_eq!(below.slot(), on_server.slot(), "the new connection took the old slot");
        let before = server.stats();
        server.handle_datagram(now, a_addr, &late);
        let after = server.stats();
        assert_eq!(after.unknown_source, before.unknown_source + 1, "the slot is another's");
        assert_eq!(after.rejected_packets, before.rejected_packets);
    }

    /// A slot is what every message touches first: one aligned cache line, so a new field that
    /// would make it two needs a reason.
    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!((size_of::<super::Slot>(), align_of::<super::Slot>()), (64, 64));
    }

    /// A transport below may connect to another address than the one first given (a token
    /// lists several servers): the connection then sends to the new address, takes datagrams
    /// from it and no longer from the old one, and an address another connection holds is
    /// refused without changing anything.
    #[test]
    fn establishing_below_at_another_address_moves_the_connection_to_it() {
        let now = origin();
        let endpoint = |seed| seeded(EndpointConfig::default(), now, seed);
        let (mut client, mut server) = (endpoint(1), endpoint(2));
        let first: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let second: SocketAddr = "10.0.0.5:1".parse().unwrap();
        let held: SocketAddr = "10.0.0.7:1".parse().unwrap();
        let client_addr: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let other = client.connect_below(now, held).unwrap();
        let id = client.connect_below(now, first).unwrap();
        client.send(id, crate::ChannelId(0), b"queued").unwrap();
        // Taken by the other connection: refused, and `id` still waits at its first address.
        assert!(!client.establish_below(now, id, held, 7, 8));
        assert_eq!(client.connection_count(), 2);
        assert!(client.establish_below(now, id, second, 7, 8));
        assert!(!client.establish_below(now, id, second, 7, 8), "established already");
        let on_server = server.accept_below(now, client_addr, 7, 8).unwrap();
        let mut buf = [0u8; 1500];
        let t = client.poll_transmit(now, &mut buf).unwrap();
        assert_eq!(t.destination, second);
        server.handle_datagram(now, client_addr, &buf[..t.len]);
        let mut got = Vec::new();
        while let Some(event) = server.poll_event() {
            if let super::Event::Data { payload, .. } = event {
                got.push(payload.to_vec());
            }
        }
        assert_eq!(got, [b"queued".to_vec()]);
        // The server answers; from the old address the same datagram is a stranger's.
        server.send(on_server, crate::ChannelId(0), b"answer").unwrap();
        let t = server.poll_transmit(now, &mut buf).unwrap();
        let answer = buf[..t.len].to_vec();
        let unknown = client.stats().unknown_source;
        client.handle_datagram(now, first, &answer);
        assert_eq!(client.stats().unknown_source, unknown + 1);
        client.handle_datagram(now, second, &answer);
        let mut got = Vec::new();
        while let Some(event) = client.poll_event() {
            if let super::Event::Data { conn, payload, .. } = event {
                got.push((conn, payload.to_vec()));
            }
        }
        assert_eq!(got, [(id, b"answer".to_vec())]);
        // The other connection still holds its own address.
        assert!(client.establish_below(now, other, held, 9, 10));
    }

    #[test]
    fn the_derived_keys_are_keyed_hashes_not_related_keys_of_the_cookie_key() {
        use super::DerivedKeys;
        let keys: Vec<((u64, u64), DerivedKeys)> =
            [(1, 2), (3, 4), (1, 3)].into_iter().map(|k| (k, DerivedKeys::of(k))).collect();
        for &(cookie, derived) in &keys {
            let halves = [cookie.0, cookie.1];
            let outputs = [derived.addr_key, derived.limits_key.0, derived.limits_key.1];
            for (i, a) in outputs.iter().enumerate() {
                assert!(!halves.contains(a), "{derived:?} reuses a half of {cookie:?}");
                assert!(outputs[i + 1..].iter().all(|b| a != b), "{derived:?}");
            }
        }
        // No fixed relation to the cookie key: the XOR of a derived key with any half of the
        // cookie key differs from one cookie key to another.
        for pick in [
            |d: &DerivedKeys| d.addr_key,
            |d: &DerivedKeys| d.limits_key.0,
            |d: &DerivedKeys| d.limits_key.1,
        ] {
            for half in [|k: (u64, u64)| k.0, |k: (u64, u64)| k.1] {
                let xors: Vec<u64> = keys.iter().map(|(k, d)| pick(d) ^ half(*k)).collect();
                assert!(xors.windows(2).all(|w| w[0] != w[1]), "{xors:x?}");
            }
        }
    }

    #[test]
    fn connect_retries_double_to_the_cap_each_cut_by_at_most_a_quarter() {
        let config = EndpointConfig::default();
        let ms = Duration::from_millis;
        for (attempt, full) in [(1, 250), (2, 500), (3, 1000), (4, 1000), (1000, 1000)] {
            let mut waits = std::collections::BTreeSet::new();
            for salt in 0..1000u64 {
                let salt = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let wait = retry_wait(&config, attempt, salt);
                assert!(
                    wait <= ms(full) && wait * 4 >= ms(full) * 3,
                    "attempt {attempt}: {wait:?} outside [0.75, 1] x {full} ms"
                );
                assert_eq!(wait, retry_wait(&config, attempt, salt), "the same every time");
                waits.insert(wait);
            }
            assert!(
                waits.len() > 100,
                "attempt {attempt}: 1,000 clients share {} waits",
                waits.len()
            );
        }
        assert!(retry_wait(&config, u32::MAX, 7) <= config.connect_retry_max_interval);
    }

    #[test]
    fn without_the_os_generator_there_is_no_endpoint_and_no_connection_but_no_panic() {
        let now = origin();
        let config = EndpointConfig::default();
        let made = Endpoint::with_secrets(config.clone(), now, Secrets::Failing);
        assert!(matches!(made, Err(ConfigError::Randomness(_))), "{made:?}");

        let mut server = Endpoint::with_deterministic_secrets_for_tests(config.clone(), now, 1)
            .expect("valid config");
        let mut client =
            Endpoint::with_deterministic_secrets_for_tests(config, now, 2).expect("valid config");
        server.secrets = Secrets::Failing;
        let connect = server.connect(now, "10.0.0.9:1".parse().unwrap());
        assert!(matches!(connect, Err(ConnectError::Randomness(_))), "{connect:?}");
        assert_eq!(server.connection_count(), 0);

        // A client's handshake reaches the accept, which needs a salt: none, no connection.
        let _ = client.connect(now, "10.0.0.1:1".parse().unwrap()).unwrap();
        assert_eq!(exchange(&mut client, &mut server, now), Vec::<String>::new());
        assert_eq!(server.connection_count(), 0);
        // The generator is back: the client's next attempt gets in.
        server.secrets = Secrets::Deterministic { seed: 1, counter: 10 };
        let later = now + server.config.connect_retry_interval;
        let events = exchange(&mut client, &mut server, later);
        assert!(matches!(events.as_slice(), [e] if e.starts_with("Connected")), "{events:?}");
    }

    /// A crowd of clients through connect, messages, a disconnect and a reconnect that reuses
    /// the slot; returns everything the server sent and its events. With `prefetch`, every
    /// call is preceded by prefetches of every stage (and some past the last), in and out of
    /// order, for the sender, for the other clients, for an address with no connection and
    /// for the closed connection's: hints must change nothing.
    fn crowd_transcript(prefetch: bool) -> (Vec<u8>, Vec<String>) {
        let now = origin();
        let config = EndpointConfig::default();
        let endpoint = |seed| seeded(config.clone(), now, seed);
        let mut server = endpoint(1);
        let addrs: Vec<SocketAddr> = (0..24)
            .map(|i| format!("10.0.{}.{}:7", i / 200, i % 200 + 1).parse().unwrap())
            .collect();
        let mut clients: Vec<Endpoint> =
            (0..addrs.len() as u64).map(|i| endpoint(10 + i)).collect();
        let server_addr: SocketAddr = "10.9.9.9:1".parse().unwrap();
        let nobody: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let hint = |server: &Endpoint, clients: &[Endpoint], from: SocketAddr| {
            if prefetch {
                for stage in [3, 0, 1, 2, 3, 7] {
                    for addr in [from, nobody, addrs[0], addrs[addrs.len() - 1]] {
                        server.prefetch_source(addr, stage);
                    }
                    for client in clients {
                        client.prefetch(stage);
                    }
                }
            }
        };
        let (mut wire, mut events) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 1500];
        let mut conns: Vec<_> =
            clients.iter_mut().map(|c| Some(c.connect(now, server_addr).unwrap())).collect();
        for round in 0..10u32 {
            let at = now + Duration::from_millis(u64::from(round) * 50);
            for (i, client) in clients.iter_mut().enumerate() {
                if let Some(conn) = conns[i] {
                    match (round, i) {
                        (3, 5) => {
                            client.disconnect(at, conn);
                            conns[i] = None;
                        }
                        (2.., _) => {
                            let fill = u8::try_from(i).unwrap();
                            client.send(conn, crate::ChannelId(0), &[fill; 40]).unwrap();
                        }
                        _ => {}
                    }
                } else if round == 5 {
                    conns[i] = Some(client.connect(at, server_addr).unwrap());
                }
                client.handle_timeout(at);
                while let Some(t) = client.poll_transmit(at, &mut buf) {
                    hint(&server, &[], addrs[i]);
                    server.handle_datagram(at, addrs[i], &buf[..t.len]);
                }
            }
            server.handle_timeout(at);
            while let Some(event) = server.poll_event() {
                events.push(format!("{event:?}"));
            }
            while let Some(t) = server.poll_transmit(at, &mut buf) {
                wire.extend_from_slice(&buf[..t.len]);
                let i = addrs.iter().position(|a| *a == t.destination).unwrap();
                hint(&server, &clients, t.destination);
                clients[i].handle_datagram(at, server_addr, &buf[..t.len]);
                while clients[i].poll_event().is_some() {}
            }
        }
        (wire, events)
    }

    #[test]
    fn prefetching_in_any_order_for_any_address_changes_nothing() {
        let plain = crowd_transcript(false);
        let hinted = crowd_transcript(true);
        assert!(
            plain.1.iter().filter(|e| e.starts_with("Connected")).count() > 24,
            "{:?}",
            plain.1
        );
        assert!(plain.1.iter().any(|e| e.starts_with("Data")), "{:?}", plain.1);
        assert!(plain.1.iter().any(|e| e.starts_with("Disconnected")), "{:?}", plain.1);
        assert_eq!(plain, hinted);
    }
}

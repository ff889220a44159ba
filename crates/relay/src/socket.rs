//! The game side: [`RelaySocket`], a [`Socket`] whose datagrams go through a relay.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use sturnus_socket::{
    Readiness, RecvMeta, SendStatus, Socket, SocketError, SocketFactory, SocketStats, SocketWaker,
    UdpSocket, UdpSocketFactory,
};

use crate::token::{Allocation, HOST_SLOT};
use crate::wire::{self, BIND_LEN, ErrorCode, HEADER_LEN, Header, Kind};

/// How often an unanswered BIND is sent again.
const BIND_RESEND: Duration = Duration::from_millis(250);
/// How long a silent socket waits before it pings the relay by default (the relay forgets a
/// binding after 10 s of silence by default).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(3);
/// The first 48 bits of the virtual addresses of a host's peers: `fd53:7475:726e::/48`, a
/// unique-local IPv6 prefix ("Stu" "rn").
const VIRTUAL_PREFIX: [u16; 3] = [0xfd53, 0x7475, 0x726e];

#[expect(
    clippy::disallowed_methods,
    reason = "the relay socket is a driver: it keeps the binding alive"
)]
fn now() -> Instant {
    Instant::now()
}

#[expect(clippy::disallowed_methods, reason = "BIND counters start at the wall clock")]
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
}

/// What a [`RelaySocket`] saw of the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelaySocketStats {
    /// BINDs sent (first bind, resends, and rebinds after the relay forgot the binding).
    pub binds_sent: u64,
    /// BOUND answers received.
    pub bound: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// PEER_GONE notices received (the host left, for a client; a client left, for the host).
    pub peer_gone: u64,
    /// ERRORs received from the relay.
    pub errors: u64,
    /// The last error code received (`wire::ErrorCode::to_byte`), 0 if none.
    pub last_error: u8,
    /// Datagrams dropped on receipt: not from the relay, no relay header, another session.
    pub dropped_foreign: u64,
    /// Sends dropped because the destination is not a peer of this socket.
    pub dropped_unknown_peer: u64,
}

/// A [`Socket`] that carries datagrams through a relay, on one [`Allocation`].
///
/// It binds the allocation (BIND until BOUND), then keeps the binding alive (a PING after 3 s
/// without sending, [`set_keepalive`](Self::set_keepalive)), binds again when the relay says
/// it forgot the binding (NOT_BOUND), and adds and strips the 8-byte relay header. It reads the clock inside
/// socket calls to do so: it is a driver.
///
/// - **Host** (slot 0): each client slot appears as its own address,
///   [`peer_address`](Self::peer_address)`(session, slot)`; sending to one reaches that client.
///   [`local_addr`](Socket::local_addr) is the relay's address, so a netcode server whose public
///   address is "the socket's" lists the relay in its tokens.
/// - **Client**: every send goes to the host, whatever the destination; everything received
///   comes from the relay's address. A netcode connect token that names the relay as the
///   server works unchanged.
///
/// A PEER_GONE notice (the host left, or a client did) is counted in
/// [`relay_stats`](Self::relay_stats) and queued for [`take_peer_gone`](Self::take_peer_gone);
/// the game's own connection timeout also ends the connection.
pub struct RelaySocket {
    udp: UdpSocket,
    allocation: Allocation,
    bound: bool,
    counter: u64,
    last_bind: Option<Instant>,
    last_sent: Instant,
    keepalive: Duration,
    send_buf: Box<[u8]>,
    recv_buf: Box<[u8]>,
    gone: VecDeque<u16>,
    stats: RelaySocketStats,
}

impl std::fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySocket")
            .field("allocation", &self.allocation)
            .field("bound", &self.bound)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn refused(what: &'static str) -> SocketError {
    SocketError::io("relay bind", io::Error::new(io::ErrorKind::ConnectionRefused, what))
}

impl RelaySocket {
    /// A relay socket over `udp` (a socket that can reach `allocation.relay`); sends the first
    /// BIND. It is usable at once, but datagrams sent before BOUND arrives are dropped by the
    /// relay: see [`connect`](Self::connect).
    pub fn new(allocation: Allocation, udp: UdpSocket) -> Result<Self, SocketError> {
        let mut socket = Self {
            udp,
            allocation,
            bound: false,
            counter: unix_micros(),
            last_bind: None,
            last_sent: now(),
            keepalive: DEFAULT_KEEPALIVE,
            send_buf: vec![0; 65_536].into_boxed_slice(),
            recv_buf: vec![0; 65_536].into_boxed_slice(),
            gone: VecDeque::new(),
            stats: RelaySocketStats::default(),
        };
        socket.send_bind(now())?;
        Ok(socket)
    }

    /// A relay socket over `udp` that is bound: BINDs until the relay answers BOUND, for at
    /// most `timeout`. A refusal (bad or expired token, replayed counter, relay full) or no
    /// answer is an error.
    pub fn connect(
        allocation: Allocation,
        udp: UdpSocket,
        timeout: Duration,
    ) -> Result<Self, SocketError> {
        let mut socket = Self::new(allocation, udp)?;
        let deadline = now() + timeout;
        let mut buf = [0; 2048];
        while !socket.bound {
            let left = deadline.saturating_duration_since(now());
            if left.is_zero() {
                return Err(SocketError::io(
                    "relay bind",
                    io::Error::new(io::ErrorKind::TimedOut, "the relay did not answer the BIND"),
                ));
            }
            socket.wait_readable(Some(left.min(BIND_RESEND)))?;
            let errors = socket.stats.errors;
            // DATA that races ahead of BOUND is dropped here: nothing can be waiting for it.
            while socket.recv_from(&mut buf)?.is_some() {}
            if socket.stats.errors > errors && !socket.bound {
                return Err(match ErrorCode::from_byte(socket.stats.last_error) {
                    Some(ErrorCode::BadToken) => refused("the relay refused the token"),
                    Some(ErrorCode::Expired) => refused("the allocation expired"),
                    Some(ErrorCode::Replayed) => refused("the relay saw a later BIND"),
                    Some(ErrorCode::Full) => refused("the relay is full"),
                    Some(ErrorCode::AddressTaken) => refused("this address is bound elsewhere"),
                    Some(ErrorCode::SlotTaken) => {
                        refused("another allocation holds this session and slot")
                    }
                    _ => refused("the relay refused the BIND"),
                });
            }
        }
        Ok(socket)
    }

    /// The allocation.
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    /// Pings the relay after `keepalive` without sending (default [`DEFAULT_KEEPALIVE`]);
    /// keep it well below the relay's idle timeout.
    pub fn set_keepalive(&mut self, keepalive: Duration) {
        self.keepalive = keepalive.max(Duration::from_millis(10));
    }

    /// Whether the relay has answered BOUND (and not said NOT_BOUND since).
    pub fn is_bound(&self) -> bool {
        self.bound
    }

    /// What this socket saw of the relay.
    pub fn relay_stats(&self) -> RelaySocketStats {
        self.stats
    }

    /// The next PEER_GONE notice: the slot that left (0: the host).
    pub fn take_peer_gone(&mut self) -> Option<u16> {
        self.gone.pop_front()
    }

    /// The virtual address under which a host sees the client in `slot` of `session`:
    /// `[fd53:7475:726e:<slot>::<session hi>:<session lo>]:1`. The slot is the subnet field,
    /// so each client is its own /64: limits a transport keeps per address or per prefix
    /// apply per client, not to the relay as a whole.
    pub fn peer_address(session: u32, slot: u16) -> SocketAddr {
        let [p0, p1, p2] = VIRTUAL_PREFIX;
        let [s0, s1, s2, s3] = session.to_be_bytes();
        let ip = Ipv6Addr::new(
            p0,
            p1,
            p2,
            slot,
            0,
            0,
            u16::from_be_bytes([s0, s1]),
            u16::from_be_bytes([s2, s3]),
        );
        SocketAddr::new(IpAddr::V6(ip), 1)
    }

    /// The slot of a virtual address of `session` (see [`peer_address`](Self::peer_address)).
    pub fn slot_of(session: u32, addr: SocketAddr) -> Option<u16> {
        let slot = match addr.ip() {
            IpAddr::V6(ip) => ip.segments()[3],
            IpAddr::V4(_) => return None,
        };
        (Self::peer_address(session, slot) == addr).then_some(slot)
    }

    /// Closes the binding at the relay (CLOSE). The relay tells the peers (PEER_GONE). Also
    /// done on drop.
    pub fn close(&mut self) {
        if self.bound {
            let header = Header::new(Kind::Close, self.allocation.slot, self.allocation.session);
            let _ = self.udp.send_to(&header.to_bytes(), self.allocation.relay);
            self.bound = false;
        }
    }

    fn send_bind(&mut self, now: Instant) -> Result<(), SocketError> {
        self.counter += 1;
        let mut bind = [0; BIND_LEN];
        wire::write_bind(
            &mut bind,
            self.allocation.session,
            self.allocation.slot,
            &self.allocation.sealed,
            &self.allocation.bind_key,
            self.counter,
        );
        let _ = self.udp.send_to(&bind, self.allocation.relay)?;
        self.stats.binds_sent += 1;
        self.last_bind = Some(now);
        self.last_sent = now;
        Ok(())
    }

    /// When [`maintain`](Self::maintain) next has work.
    fn next_due(&self) -> Instant {
        if self.bound {
            self.last_sent + self.keepalive
        } else {
            self.last_bind.map_or(self.last_sent, |at| at + BIND_RESEND)
        }
    }

    /// Resends an unanswered BIND, or pings a binding that has been silent.
    fn maintain(&mut self, now: Instant) -> Result<(), SocketError> {
        if now < self.next_due() {
            return Ok(());
        }
        if !self.bound {
            return self.send_bind(now);
        }
        let ping = Header::new(Kind::Ping, self.allocation.slot, self.allocation.session);
        let _ = self.udp.send_to(&ping.to_bytes(), self.allocation.relay)?;
        self.stats.pings_sent += 1;
        self.last_sent = now;
        Ok(())
    }

    /// Handles a control datagram from the relay.
    fn control(&mut self, header: Header) -> Result<(), SocketError> {
        match header.kind {
            Kind::Bound => {
                self.bound = true;
                self.stats.bound += 1;
            }
            Kind::PeerGone => {
                self.stats.peer_gone += 1;
                if self.gone.len() < 65_536 {
                    self.gone.push_back(header.slot);
                }
            }
            Kind::Error => {
                self.stats.errors += 1;
                self.stats.last_error = header.flags;
                if ErrorCode::from_byte(header.flags) == Some(ErrorCode::NotBound) && self.bound {
                    // The relay forgot us (idle, restarted): bind again at once.
                    self.bound = false;
                    self.send_bind(now())?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.close();
    }
}

impl Socket for RelaySocket {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        let now = now();
        self.maintain(now)?;
        let slot = if self.allocation.slot == HOST_SLOT {
            match Self::slot_of(self.allocation.session, to) {
                Some(slot) if slot != HOST_SLOT => slot,
                _ => {
                    self.stats.dropped_unknown_peer += 1;
                    return Ok(SendStatus::Dropped);
                }
            }
        } else {
            HOST_SLOT
        };
        let len = HEADER_LEN + payload.len();
        let Some(out) = self.send_buf.get_mut(..len) else {
            return Err(SocketError::DatagramTooLarge {
                len: payload.len(),
                max: self.send_buf.len() - HEADER_LEN,
            });
        };
        Header::new(Kind::Data, slot, self.allocation.session).write(out);
        out[HEADER_LEN..].copy_from_slice(payload);
        let status = self.udp.send_to(out, self.allocation.relay)?;
        if status == SendStatus::Sent {
            self.last_sent = now;
        }
        Ok(status)
    }

    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        self.maintain(now())?;
        loop {
            let Some(meta) = self.udp.recv_from(&mut self.recv_buf)? else { return Ok(None) };
            let datagram = &self.recv_buf[..meta.len];
            let header = match Header::parse(datagram) {
                Some(header)
                    if meta.from == self.allocation.relay
                        && header.session == self.allocation.session =>
                {
                    header
                }
                _ => {
                    self.stats.dropped_foreign += 1;
                    continue;
                }
            };
            if header.kind != Kind::Data {
                self.control(header)?;
                continue;
            }
            let from = if self.allocation.slot == HOST_SLOT {
                Self::peer_address(self.allocation.session, header.slot)
            } else {
                self.allocation.relay
            };
            let payload = &datagram[HEADER_LEN..];
            let len = payload.len().min(buf.len());
            buf[..len].copy_from_slice(&payload[..len]);
            return Ok(Some(RecvMeta { len, from }));
        }
    }

    fn local_addr(&self) -> SocketAddr {
        if self.allocation.slot == HOST_SLOT {
            self.allocation.relay
        } else {
            self.udp.local_addr()
        }
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        let now = now();
        self.maintain(now)?;
        let due = self.next_due().saturating_duration_since(now);
        let wait = timeout.map_or(due, |timeout| timeout.min(due));
        let readiness = self.udp.wait_readable(Some(wait))?;
        self.maintain(self::now())?;
        if readiness == Readiness::TimedOut && timeout.is_none_or(|timeout| wait < timeout) {
            // Woken for the keep-alive, not by the caller's timeout: a spurious wake-up.
            return Ok(Readiness::Readable);
        }
        Ok(readiness)
    }

    fn stats(&self) -> SocketStats {
        self.udp.stats()
    }

    fn waker(&self) -> Option<SocketWaker> {
        self.udp.waker()
    }
}

/// Makes [`RelaySocket`]s on one [`Allocation`]: give it to `SecureHost::bind` (the host's
/// allocation) or `SecureHost::client` (a client's), or to the transport's `Host::bind`.
///
/// Both `server_socket` and `client_socket` open a UDP socket of the relay's address family on
/// a free port (the address passed is ignored: the relay is where the socket goes) and bind
/// the allocation, waiting up to `bind_timeout` for BOUND. One allocation serves one socket:
/// a second socket would take the binding over from the first.
#[derive(Debug, Clone)]
pub struct RelaySocketFactory {
    allocation: Allocation,
    udp: UdpSocketFactory,
    bind_timeout: Duration,
    keepalive: Duration,
}

impl RelaySocketFactory {
    /// A factory for `allocation` over default UDP sockets, waiting up to 5 s for BOUND.
    pub fn new(allocation: Allocation) -> Self {
        Self {
            allocation,
            udp: UdpSocketFactory::default(),
            bind_timeout: Duration::from_secs(5),
            keepalive: DEFAULT_KEEPALIVE,
        }
    }

    /// The same, over sockets of `udp`.
    pub fn with_udp(mut self, udp: UdpSocketFactory) -> Self {
        self.udp = udp;
        self
    }

    /// The same, waiting up to `timeout` for BOUND.
    pub fn with_bind_timeout(mut self, timeout: Duration) -> Self {
        self.bind_timeout = timeout;
        self
    }

    /// The same, with sockets pinging the relay after `keepalive` of silence
    /// ([`RelaySocket::set_keepalive`]).
    pub fn with_keepalive(mut self, keepalive: Duration) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// The allocation.
    pub fn allocation(&self) -> &Allocation {
        &self.allocation
    }

    fn open(&self) -> Result<RelaySocket, SocketError> {
        let udp = self.udp.client_socket(self.allocation.relay)?;
        let mut socket = RelaySocket::connect(self.allocation.clone(), udp, self.bind_timeout)?;
        socket.set_keepalive(self.keepalive);
        Ok(socket)
    }
}

impl SocketFactory for RelaySocketFactory {
    type Socket = RelaySocket;

    fn server_socket(&self, _bind: SocketAddr) -> Result<RelaySocket, SocketError> {
        self.open()
    }

    fn client_socket(&self, _remote: SocketAddr) -> Result<RelaySocket, SocketError> {
        self.open()
    }
}

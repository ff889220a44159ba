//! The UDP drivers: the only place here that owns sockets, lists interfaces and reads the clock.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use if_addrs::{IfAddr, Ifv4Addr};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info};

use crate::{Advertisement, DEFAULT_PORT, FoundHost, MULTICAST_V6, REQUEST_LEN, Responder, Search};

/// The interfaces discovery goes out on: every one that is up (running) and not loopback.
#[derive(Debug, Default)]
struct LanInterfaces {
    /// The IPv4 subnets' broadcast addresses.
    broadcasts: Vec<Ipv4Addr>,
    /// The indexes of the interfaces with IPv6.
    v6_indexes: Vec<u32>,
}

fn lan_interfaces() -> LanInterfaces {
    let mut lan = LanInterfaces::default();
    let list = match if_addrs::get_if_addrs() {
        Ok(list) => list,
        Err(err) => {
            debug!(%err, "the interfaces could not be listed: the default ones only");
            return lan;
        }
    };
    for interface in list {
        if interface.is_loopback() || !interface.is_oper_up() {
            continue;
        }
        match &interface.addr {
            IfAddr::V4(addr) => {
                if let Some(broadcast) = broadcast_of(addr, interface.is_p2p()) {
                    if !lan.broadcasts.contains(&broadcast) {
                        lan.broadcasts.push(broadcast);
                    }
                }
            }
            IfAddr::V6(_) => {
                if let Some(index) = interface.index.filter(|i| *i != 0) {
                    if !lan.v6_indexes.contains(&index) {
                        lan.v6_indexes.push(index);
                    }
                }
            }
        }
    }
    debug!(?lan, "LAN interfaces");
    lan
}

/// A subnet's broadcast address: the interface's, or computed from its netmask; none for a
/// point-to-point link or a /31 or /32.
fn broadcast_of(addr: &Ifv4Addr, point_to_point: bool) -> Option<Ipv4Addr> {
    if let Some(broadcast) = addr.broadcast {
        return Some(broadcast);
    }
    if point_to_point || addr.prefixlen >= 31 {
        return None;
    }
    Some(Ipv4Addr::from(u32::from(addr.ip) | !u32::from(addr.netmask)))
}

/// A host advertising its game: answers searches on the discovery port. Non-blocking: call
/// [`poll`](Self::poll) every frame.
#[derive(Debug)]
pub struct LanAdvertiser {
    sockets: Vec<UdpSocket>,
    responder: Responder,
    buf: Vec<u8>,
    multicast_interfaces: Vec<u32>,
}

/// A UDP socket on `addr` that other advertisers on this machine may share (a broadcast
/// reaches each of them).
fn shared_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl LanAdvertiser {
    /// Listens on `port` (use [`DEFAULT_PORT`]) on every IPv4 address (broadcasts reach it)
    /// and, where the host has IPv6, on every IPv6 address, in the [`MULTICAST_V6`] group of
    /// every interface that is up now (one that comes up later is not joined: bind again).
    ///
    /// # Errors
    /// The IPv4 socket could not be bound (the IPv6 one is skipped if it cannot be).
    pub fn bind(port: u16, ad: Advertisement) -> io::Result<Self> {
        let mut sockets = vec![shared_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?];
        let mut multicast_interfaces = Vec::new();
        match shared_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
            Ok(socket) => {
                let mut indexes = lan_interfaces().v6_indexes;
                if indexes.is_empty() {
                    indexes.push(0); // the system's choice
                }
                for index in indexes {
                    match socket.join_multicast_v6(&MULTICAST_V6, index) {
                        Ok(()) => multicast_interfaces.push(index),
                        Err(err) => debug!(index, %err, "the discovery group was not joined"),
                    }
                }
                sockets.push(socket);
            }
            Err(err) => debug!(%err, "LAN discovery without IPv6"),
        }
        info!(port, ?multicast_interfaces, "advertising on the LAN");
        Ok(Self {
            sockets,
            responder: Responder::new(ad),
            buf: vec![0; 2048],
            multicast_interfaces,
        })
    }

    /// Listens on `addr` only (one interface, or loopback in a test), in no multicast group.
    ///
    /// # Errors
    /// The socket could not be bound.
    pub fn bind_addr(addr: SocketAddr, ad: Advertisement) -> io::Result<Self> {
        let socket = shared_socket(addr)?;
        Ok(Self {
            sockets: vec![socket],
            responder: Responder::new(ad),
            buf: vec![0; 2048],
            multicast_interfaces: Vec::new(),
        })
    }

    /// The address of its first socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.first().and_then(|s| s.local_addr().ok())
    }

    /// The indexes of the interfaces whose [`MULTICAST_V6`] group it joined (0: the system's
    /// choice).
    pub fn multicast_interfaces(&self) -> &[u32] {
        &self.multicast_interfaces
    }

    /// The protocol's side: the advertisement (to update its info) and what it counted.
    pub fn responder_mut(&mut self) -> &mut Responder {
        &mut self.responder
    }

    /// Answers every request waiting; returns how many it answered.
    ///
    /// # Errors
    /// A socket failed other than by having nothing to read.
    pub fn poll(&mut self) -> io::Result<usize> {
        let mut answered = 0;
        for socket in &self.sockets {
            loop {
                let (len, from) = match socket.recv_from(&mut self.buf) {
                    Ok(got) => got,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    // A datagram's ICMP error, say: not the advertiser's failure.
                    Err(err) if transient(&err) => continue,
                    Err(err) => return Err(err),
                };
                if let Some(answer) = self.responder.handle(&self.buf[..len]) {
                    if let Err(err) = socket.send_to(answer, from) {
                        debug!(%from, %err, "a discovery answer was not sent");
                    } else {
                        answered += 1;
                    }
                }
            }
        }
        Ok(answered)
    }
}

/// An error of one datagram (an ICMP error of an earlier send, an interrupted call), not of the
/// socket.
fn transient(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// What a search looks for, where, and for how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LanSearchConfig {
    /// The game.
    pub game_id: u64,
    /// Its version: hosts of another version do not answer.
    pub game_version: u32,
    /// The discovery port hosts listen on.
    pub port: u16,
    /// How long to gather answers (1 s by default: the discovery window).
    pub timeout: Duration,
    /// How often the request is sent again while the search lasts (250 ms by default), in case
    /// one is lost.
    pub resend_every: Duration,
    /// Whether the default targets include IPv4 broadcast (yes by default).
    pub ipv4: bool,
    /// Whether the default targets include IPv6 multicast (yes by default).
    pub ipv6: bool,
    /// Where to send the request; empty (the default): on every interface that is up, to each
    /// IPv4 subnet's broadcast address and `255.255.255.255` (if [`ipv4`](Self::ipv4)), and to
    /// [`MULTICAST_V6`] on each interface with IPv6 (if [`ipv6`](Self::ipv6)), on `port`.
    pub targets: Vec<SocketAddr>,
}

impl LanSearchConfig {
    /// A search for `game_id` at `game_version` on the default port, for one second.
    pub fn new(game_id: u64, game_version: u32) -> Self {
        Self {
            game_id,
            game_version,
            port: DEFAULT_PORT,
            timeout: Duration::from_secs(1),
            resend_every: Duration::from_millis(250),
            ipv4: true,
            ipv6: true,
            targets: Vec::new(),
        }
    }

    /// Where the requests go: the explicit targets, or the default ones.
    fn targets(&self) -> Vec<SocketAddr> {
        if !self.targets.is_empty() {
            return self.targets.clone();
        }
        let lan = lan_interfaces();
        let mut targets = Vec::new();
        if self.ipv4 {
            for broadcast in lan.broadcasts.iter().copied().chain([Ipv4Addr::BROADCAST]) {
                targets.push(SocketAddr::V4(SocketAddrV4::new(broadcast, self.port)));
            }
        }
        if self.ipv6 {
            let mut indexes = lan.v6_indexes;
            if indexes.is_empty() {
                indexes.push(0); // the system's choice
            }
            for index in indexes {
                targets.push(SocketAddr::V6(SocketAddrV6::new(MULTICAST_V6, self.port, 0, index)));
            }
        }
        targets
    }
}

/// A search in progress, non-blocking (for a game's frame loop): [`start`](Self::start) sends
/// the request, [`poll`](Self::poll) each frame sends it again when due and reads the answers.
#[derive(Debug)]
pub struct LanSearch {
    search: Search,
    sockets: Vec<UdpSocket>,
    targets: Vec<SocketAddr>,
    resend_every: Duration,
    next_send: Instant,
    deadline: Instant,
    found: Vec<FoundHost>,
    buf: Vec<u8>,
}

impl LanSearch {
    /// Starts a search: lists the interfaces, opens the sockets and sends the first request.
    ///
    /// # Errors
    /// No socket could be opened, or the request could not be sent anywhere.
    #[expect(clippy::disallowed_methods, reason = "the driver's deadline reads the clock")]
    pub fn start(config: &LanSearchConfig) -> io::Result<Self> {
        let now = Instant::now();
        let targets = config.targets();
        let mut sockets = Vec::new();
        for v6 in [false, true] {
            if !targets.iter().any(|t| t.is_ipv6() == v6) {
                continue;
            }
            let any: SocketAddr = if v6 {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            };
            match UdpSocket::bind(any) {
                Ok(socket) => {
                    socket.set_nonblocking(true)?;
                    if !v6 {
                        socket.set_broadcast(true)?;
                    }
                    sockets.push(socket);
                }
                Err(err) if v6 && !sockets.is_empty() => debug!(%err, "searching without IPv6"),
                Err(err) => return Err(err),
            }
        }
        let mut search = Self {
            search: Search::new(config.game_id, config.game_version, now),
            sockets,
            targets,
            resend_every: config.resend_every.max(Duration::from_millis(10)),
            next_send: now,
            deadline: now + config.timeout,
            found: Vec::new(),
            buf: vec![0; REQUEST_LEN + 64],
        };
        if search.send(now) == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "the discovery request could not be sent anywhere",
            ));
        }
        Ok(search)
    }

    /// Sends the request to every target; returns to how many it went.
    fn send(&mut self, now: Instant) -> usize {
        let request = self.search.request();
        let mut sent = 0;
        for target in &self.targets {
            let Some(socket) = self
                .sockets
                .iter()
                .find(|s| s.local_addr().is_ok_and(|local| local.is_ipv6() == target.is_ipv6()))
            else {
                continue;
            };
            match socket.send_to(&request, target) {
                Ok(_) => sent += 1,
                Err(err) => debug!(%target, %err, "a discovery request was not sent"),
            }
        }
        self.next_send = now + self.resend_every;
        sent
    }

    /// Sends the request again if it is due, and reads every answer waiting; returns how many
    /// new hosts it found. Does nothing once the search is [`done`](Self::is_done).
    ///
    /// # Errors
    /// A socket failed other than by having nothing to read.
    #[expect(clippy::disallowed_methods, reason = "the driver's deadline reads the clock")]
    pub fn poll(&mut self) -> io::Result<usize> {
        let now = Instant::now();
        if now >= self.deadline {
            return Ok(0);
        }
        if now >= self.next_send {
            self.send(now);
        }
        let mut new = 0;
        for socket in &self.sockets {
            loop {
                let (len, from) = match socket.recv_from(&mut self.buf) {
                    Ok(got) => got,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if transient(&err) => continue,
                    Err(err) => return Err(err),
                };
                let at = Instant::now();
                if let Some(host) = self.search.handle_answer(at, from, &self.buf[..len]) {
                    if !self.found.iter().any(|h| h.addr == host.addr) {
                        debug!(addr = %host.addr, after = ?host.found_after, "host found");
                        self.found.push(host);
                        new += 1;
                    }
                }
            }
        }
        Ok(new)
    }

    /// Whether the search's time is up.
    #[expect(clippy::disallowed_methods, reason = "the driver's deadline reads the clock")]
    pub fn is_done(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The time left.
    #[expect(clippy::disallowed_methods, reason = "the driver's deadline reads the clock")]
    pub fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The hosts found so far, each once, in the order they answered.
    pub fn found(&self) -> &[FoundHost] {
        &self.found
    }

    /// The hosts found.
    pub fn into_found(self) -> Vec<FoundHost> {
        self.found
    }
}

/// Searches the local network (see [`LanSearch`]): sends the request to every target, again
/// every [`resend_every`](LanSearchConfig::resend_every), and gathers the hosts that answer
/// until the timeout (each host once). Blocks for the timeout.
///
/// # Errors
/// No socket could be opened, the request could not be sent anywhere, or a socket failed.
#[expect(clippy::disallowed_methods, reason = "a blocking driver: it waits between polls")]
pub fn lan_search(config: &LanSearchConfig) -> io::Result<Vec<FoundHost>> {
    let mut search = LanSearch::start(config)?;
    loop {
        search.poll()?;
        let left = search.time_left();
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(2)));
    }
    Ok(search.into_found())
}

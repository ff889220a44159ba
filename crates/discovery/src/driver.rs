//! The UDP drivers: the only place here that owns sockets and reads the clock.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, info};

use crate::{Advertisement, DEFAULT_PORT, FoundHost, MULTICAST_V6, REQUEST_LEN, Responder, Search};

/// A host advertising its game: answers searches on the discovery port. Non-blocking: call
/// [`poll`](Self::poll) every frame.
#[derive(Debug)]
pub struct LanAdvertiser {
    sockets: Vec<UdpSocket>,
    responder: Responder,
    buf: Vec<u8>,
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
    /// Listens on `port` (use [`DEFAULT_PORT`]) on every IPv4 address (broadcasts) and, where
    /// the host has IPv6, on every IPv6 address in the [`MULTICAST_V6`] group.
    ///
    /// # Errors
    /// The IPv4 socket could not be bound (the IPv6 one is skipped if it cannot be).
    pub fn bind(port: u16, ad: Advertisement) -> io::Result<Self> {
        let mut sockets = vec![shared_socket(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?];
        let v6 = shared_socket(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            .and_then(|s| s.join_multicast_v6(&MULTICAST_V6, 0).map(|()| s));
        match v6 {
            Ok(socket) => sockets.push(socket),
            Err(err) => debug!(%err, "LAN discovery without IPv6"),
        }
        info!(port, "advertising on the LAN");
        Ok(Self { sockets, responder: Responder::new(ad), buf: vec![0; 2048] })
    }

    /// Listens on `addr` only (one interface, or loopback in a test).
    ///
    /// # Errors
    /// The socket could not be bound.
    pub fn bind_addr(addr: SocketAddr, ad: Advertisement) -> io::Result<Self> {
        let socket = shared_socket(addr)?;
        Ok(Self { sockets: vec![socket], responder: Responder::new(ad), buf: vec![0; 2048] })
    }

    /// The address of its first socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.first().and_then(|s| s.local_addr().ok())
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
                    Err(err) if err.kind() == io::ErrorKind::ConnectionReset => continue,
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

/// What [`lan_search`] looks for, where, and for how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LanSearchConfig {
    /// The game.
    pub game_id: u64,
    /// Its version: hosts of another version do not answer.
    pub game_version: u32,
    /// The discovery port hosts listen on.
    pub port: u16,
    /// How long to gather answers.
    pub timeout: Duration,
    /// Where to send the request; empty (the default): IPv4 broadcast and IPv6 link-local
    /// multicast on `port`.
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
            targets: Vec::new(),
        }
    }
}

/// Searches the local network: sends one request to each target and gathers the hosts that
/// answer until the timeout (each host once). Blocks for the timeout.
///
/// # Errors
/// No socket could be opened.
#[expect(clippy::disallowed_methods, reason = "the driver's deadline reads the clock")]
pub fn lan_search(config: &LanSearchConfig) -> io::Result<Vec<FoundHost>> {
    let search = Search::new(config.game_id, config.game_version);
    let request = search.request();
    let targets = if config.targets.is_empty() {
        vec![
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, config.port)),
            SocketAddr::V6(SocketAddrV6::new(MULTICAST_V6, config.port, 0, 0)),
        ]
    } else {
        config.targets.clone()
    };
    let mut sockets = Vec::new();
    for v6 in [false, true] {
        if !targets.iter().any(|t| t.is_ipv6() == v6) {
            continue;
        }
        let any: SocketAddr =
            if v6 { (Ipv6Addr::UNSPECIFIED, 0).into() } else { (Ipv4Addr::UNSPECIFIED, 0).into() };
        match UdpSocket::bind(any) {
            Ok(socket) => {
                let _ = socket.set_broadcast(!v6);
                for target in targets.iter().filter(|t| t.is_ipv6() == v6) {
                    if let Err(err) = socket.send_to(&request, target) {
                        debug!(%target, %err, "a discovery request was not sent");
                    }
                }
                sockets.push(socket);
            }
            Err(err) if v6 => debug!(%err, "searching without IPv6"),
            Err(err) => return Err(err),
        }
    }
    let deadline = Instant::now() + config.timeout;
    let mut found: Vec<FoundHost> = Vec::new();
    let mut buf = [0_u8; REQUEST_LEN + 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Share the time left between the sockets in short slices.
        let slice = (left / 4).max(Duration::from_millis(1)).min(Duration::from_millis(20));
        for socket in &sockets {
            socket.set_read_timeout(Some(slice))?;
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                if let Some(host) = search.handle_answer(from, &buf[..len]) {
                    if !found.iter().any(|h| h.addr == host.addr) {
                        found.push(host);
                    }
                }
            }
        }
    }
    Ok(found)
}

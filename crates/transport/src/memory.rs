//! An in-process network with perfect delivery: [`MemoryNetwork`] and its [`MemoryTransport`]s.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::link::Transport;
use crate::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, DisconnectReason, Event, HostError,
    Qos, SendError,
};

/// The largest message a memory transport carries (any channel): as much as the default
/// transport configuration allows on a fragmenting channel.
pub const MEMORY_MAX_MESSAGE: usize = 1024 * 1024;

/// What an inbox holds: events, with the payloads of data events back to back in one buffer.
#[derive(Debug, Default)]
struct Inbox {
    items: VecDeque<Item>,
    data: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Connected(ConnectionId),
    Data { conn: ConnectionId, channel: ChannelId, start: usize, len: usize },
    Disconnected(ConnectionId, DisconnectReason),
}

impl Inbox {
    fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
    }
}

#[derive(Debug)]
struct Station {
    accepts: bool,
    inbox: Inbox,
    /// This station's connections: their peer's address and the peer's id for them.
    peers: HashMap<ConnectionId, (SocketAddr, ConnectionId)>,
    next_slot: u32,
    generation: u32,
}

impl Station {
    fn new(accepts: bool) -> Self {
        Self {
            accepts,
            inbox: Inbox::default(),
            peers: HashMap::new(),
            next_slot: 0,
            generation: 0,
        }
    }

    fn new_id(&mut self) -> ConnectionId {
        // Slots are handed out in turn; a wrap starts a new generation, so an id is not reused
        // within 2^64 connections.
        if self.next_slot == u32::MAX {
            self.next_slot = 0;
            self.generation = self.generation.wrapping_add(1);
        }
        self.next_slot += 1;
        ConnectionId::new(self.next_slot, self.generation)
    }
}

#[derive(Debug, Default)]
struct Hub {
    stations: HashMap<SocketAddr, Station>,
    next_port: u16,
}

/// An in-process network: make endpoints on it with [`bind`](Self::bind) (accepting
/// connections, at a chosen address) and [`endpoint`](Self::endpoint) (a client at a fresh
/// address). Clones share the network.
///
/// Every message arrives, whole, in the order sent, at the receiver's next
/// [`poll_event`](Transport::poll_event), whatever its channel's quality of service: the
/// network of a single-process game, a test that is about the layers above rather than about
/// loss, or an engine that simulates its own conditions. Nothing is packetised, so nothing is
/// resent and there are no timers; a message is copied once, into the receiver's inbox, and lent
/// from there.
///
/// The endpoints of one network share it through a mutex, held only for the moment a message is
/// appended or an inbox is swapped out, so they may live on different threads.
///
/// ```
/// use std::time::Instant;
/// use sturnus_transport::{ChannelId, Event, MemoryNetwork, Qos, Transport};
///
/// let network = MemoryNetwork::new();
/// let channels = vec![Qos::ReliableSequenced, Qos::Unreliable];
/// let mut server = network.bind("10.0.0.1:7777".parse().unwrap(), channels.clone()).unwrap();
/// let mut client = network.endpoint(channels);
/// # #[expect(clippy::disallowed_methods, reason = "an example's starting instant")]
/// let now = Instant::now();
/// let conn = client.connect(now, server.local_addr().unwrap()).unwrap();
/// assert_eq!(client.poll_event(now).unwrap(), Some(Event::Connected(conn)));
/// client.send(conn, ChannelId(1), b"hello").unwrap();
/// let Some(Event::Connected(from)) = server.poll_event(now).unwrap() else { panic!() };
/// assert_eq!(
///     server.poll_event(now).unwrap(),
///     Some(Event::Data { conn: from, channel: ChannelId(1), payload: b"hello" })
/// );
/// ```
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    hub: Arc<Mutex<Hub>>,
}

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryNetwork").field("endpoints", &lock(&self.hub).stations.len()).finish()
    }
}

fn lock(hub: &Mutex<Hub>) -> MutexGuard<'_, Hub> {
    // Nothing done under the lock can leave the hub half-changed, so a panic elsewhere while it
    // was held does not make it unusable.
    hub.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// An endpoint at `addr` that accepts connections, with the channel layout `channels`.
    /// Fails with [`ConnectError::AlreadyConnected`] if the address is taken.
    pub fn bind(
        &self,
        addr: SocketAddr,
        channels: Vec<Qos>,
    ) -> Result<MemoryTransport, ConnectError> {
        let mut hub = lock(&self.hub);
        if hub.stations.contains_key(&addr) {
            return Err(ConnectError::AlreadyConnected(addr));
        }
        hub.stations.insert(addr, Station::new(true));
        Ok(self.transport(addr, channels))
    }

    /// An endpoint at a fresh address (`127.2.x.y`) that does not accept connections: a
    /// client.
    pub fn endpoint(&self, channels: Vec<Qos>) -> MemoryTransport {
        let mut hub = lock(&self.hub);
        let addr = loop {
            hub.next_port = hub.next_port.wrapping_add(1).max(1);
            let [hi, lo] = hub.next_port.to_be_bytes();
            let addr = SocketAddr::from((Ipv4Addr::new(127, 2, hi, lo), 1));
            if !hub.stations.contains_key(&addr) {
                break addr;
            }
        };
        hub.stations.insert(addr, Station::new(false));
        drop(hub);
        self.transport(addr, channels)
    }

    fn transport(&self, addr: SocketAddr, channels: Vec<Qos>) -> MemoryTransport {
        MemoryTransport {
            network: self.clone(),
            addr,
            channels,
            reading: Inbox::default(),
            emptied: false,
        }
    }
}

/// One endpoint of a [`MemoryNetwork`]. Dropping it closes its connections (peers see
/// [`DisconnectReason::ClosedByPeer`]).
pub struct MemoryTransport {
    network: MemoryNetwork,
    addr: SocketAddr,
    channels: Vec<Qos>,
    /// The inbox taken out of the hub, being handed out.
    reading: Inbox,
    /// Whether the items of `reading` handed out so far have been dropped from its front.
    emptied: bool,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("addr", &self.addr)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// How many connections this endpoint has open.
    pub fn connection_count(&self) -> usize {
        lock(&self.network.hub).stations.get(&self.addr).map_or(0, |s| s.peers.len())
    }
}

impl Transport for MemoryTransport {
    fn channels(&self) -> &[Qos] {
        &self.channels
    }

    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.channels.get(usize::from(channel.0)).map(|_| MEMORY_MAX_MESSAGE)
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    fn connect(&mut self, _now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        let mut guard = lock(&self.network.hub);
        let hub = &mut *guard;
        let already = hub
            .stations
            .get(&self.addr)
            .is_some_and(|s| s.peers.values().any(|(addr, _)| *addr == remote));
        if already {
            return Err(ConnectError::AlreadyConnected(remote));
        }
        let me = hub.stations.get_mut(&self.addr).ok_or(ConnectError::HostStopped)?;
        let mine = me.new_id();
        let accepted = remote != self.addr && hub.stations.get(&remote).is_some_and(|s| s.accepts);
        if !accepted {
            let me = hub.stations.get_mut(&self.addr).ok_or(ConnectError::HostStopped)?;
            me.inbox.items.push_back(Item::Disconnected(mine, DisconnectReason::ConnectTimeout));
            return Ok(mine);
        }
        let them = hub.stations.get_mut(&remote).ok_or(ConnectError::HostStopped)?;
        let theirs = them.new_id();
        them.peers.insert(theirs, (self.addr, mine));
        them.inbox.items.push_back(Item::Connected(theirs));
        let me = hub.stations.get_mut(&self.addr).ok_or(ConnectError::HostStopped)?;
        me.peers.insert(mine, (remote, theirs));
        me.inbox.items.push_back(Item::Connected(mine));
        Ok(mine)
    }

    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if usize::from(channel.0) >= self.channels.len() {
            return Err(SendError::UnknownChannel(channel));
        }
        if payload.len() > MEMORY_MAX_MESSAGE {
            return Err(SendError::MessageTooLarge {
                channel,
                len: payload.len(),
                max: MEMORY_MAX_MESSAGE,
            });
        }
        let mut hub = lock(&self.network.hub);
        let peer = hub.stations.get(&self.addr).and_then(|s| s.peers.get(&conn)).copied();
        let Some((addr, theirs)) = peer else { return Err(SendError::UnknownConnection) };
        let Some(them) = hub.stations.get_mut(&addr) else {
            return Err(SendError::UnknownConnection);
        };
        let start = them.inbox.data.len();
        them.inbox.data.extend_from_slice(payload);
        them.inbox.items.push_back(Item::Data { conn: theirs, channel, start, len: payload.len() });
        Ok(())
    }

    fn disconnect(&mut self, _now: Instant, conn: ConnectionId) {
        let mut hub = lock(&self.network.hub);
        close(&mut hub, self.addr, conn);
    }

    fn set_trusted(&mut self, _conn: ConnectionId) {}

    fn poll_event(&mut self, _now: Instant) -> Result<Option<Event<'_>>, HostError> {
        if self.emptied || self.reading.items.is_empty() {
            // Everything taken was handed out: swap in what has arrived since.
            self.reading.clear();
            self.emptied = false;
            let mut hub = lock(&self.network.hub);
            let Some(me) = hub.stations.get_mut(&self.addr) else { return Ok(None) };
            std::mem::swap(&mut me.inbox, &mut self.reading);
        }
        let Some(item) = self.reading.items.pop_front() else { return Ok(None) };
        self.emptied = self.reading.items.is_empty();
        Ok(Some(match item {
            Item::Connected(conn) => Event::Connected(conn),
            Item::Data { conn, channel, start, len } => {
                Event::Data { conn, channel, payload: &self.reading.data[start..start + len] }
            }
            Item::Disconnected(conn, reason) => Event::Disconnected { conn, reason },
        }))
    }

    fn flush(&mut self, _now: Instant) -> Result<(), HostError> {
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn wait(&mut self, _timeout: Duration) -> Result<(), HostError> {
        Ok(())
    }

    fn connection_stats(&self, _conn: ConnectionId) -> Option<ConnectionStats> {
        None
    }

    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        let hub = lock(&self.network.hub);
        Some(hub.stations.get(&self.addr)?.peers.get(&conn)?.0)
    }
    /// In-process: nothing crosses a network, so nothing can be read or altered on the way.
    fn is_secure(&self) -> bool {
        true
    }
}

/// Closes `conn` of the station at `addr`; its peer sees `ClosedByPeer`.
fn close(hub: &mut Hub, addr: SocketAddr, conn: ConnectionId) {
    let Some((peer, theirs)) = hub.stations.get_mut(&addr).and_then(|s| s.peers.remove(&conn))
    else {
        return;
    };
    if let Some(them) = hub.stations.get_mut(&peer) {
        if them.peers.remove(&theirs).is_some() {
            them.inbox.items.push_back(Item::Disconnected(theirs, DisconnectReason::ClosedByPeer));
        }
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut hub = lock(&self.network.hub);
        let conns: Vec<ConnectionId> = hub
            .stations
            .get(&self.addr)
            .map(|s| s.peers.keys().copied().collect())
            .unwrap_or_default();
        for conn in conns {
            close(&mut hub, self.addr, conn);
        }
        hub.stations.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[expect(clippy::disallowed_methods, reason = "any instant will do: the network has no timers")]
    fn now() -> Instant {
        Instant::now()
    }

    fn kinds() -> Vec<Qos> {
        vec![Qos::ReliableSequenced, Qos::Unreliable]
    }

    /// Every event of `t`, with payloads copied out.
    fn drain(t: &mut MemoryTransport) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(event) = t.poll_event(now()).unwrap() {
            out.push(match event {
                Event::Connected(_) => "connected".to_string(),
                Event::Data { channel, payload, .. } => {
                    format!("{}:{}", channel.0, String::from_utf8_lossy(payload))
                }
                Event::Disconnected { reason, .. } => format!("gone:{reason:?}"),
            });
        }
        out
    }

    #[test]
    fn messages_arrive_in_order_on_their_channels_both_ways() {
        let net = MemoryNetwork::new();
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut server = net.bind(addr, kinds()).unwrap();
        let mut client = net.endpoint(kinds());
        let conn = client.connect(now(), addr).unwrap();
        assert_eq!(drain(&mut client), ["connected"]);
        for text in ["a", "b", "c"] {
            client.send(conn, ChannelId(u8::from(text == "b")), text.as_bytes()).unwrap();
        }
        assert_eq!(drain(&mut server), ["connected", "0:a", "1:b", "0:c"]);
        let from = server.remote_address(first_conn(&server)).unwrap();
        assert_eq!(Some(from), client.local_addr());
        server.send(first_conn(&server), ChannelId(0), b"back").unwrap();
        assert_eq!(drain(&mut client), ["0:back"]);
        // A message larger than a packet is fine: nothing is packetised.
        client.send(conn, ChannelId(0), &[7; 100_000]).unwrap();
        let mut got = 0;
        while let Some(event) = server.poll_event(now()).unwrap() {
            if let Event::Data { payload, .. } = event {
                got = payload.len();
            }
        }
        assert_eq!(got, 100_000);
    }

    fn first_conn(t: &MemoryTransport) -> ConnectionId {
        let hub = lock(&t.network.hub);
        *hub.stations[&t.addr].peers.keys().next().unwrap()
    }

    #[test]
    fn closing_and_dropping_tell_the_peer() {
        let net = MemoryNetwork::new();
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut server = net.bind(addr, kinds()).unwrap();
        let mut a = net.endpoint(kinds());
        let mut b = net.endpoint(kinds());
        let conn = a.connect(now(), addr).unwrap();
        b.connect(now(), addr).unwrap();
        assert_eq!(drain(&mut server), ["connected", "connected"]);
        a.disconnect(now(), conn);
        assert_eq!(a.send(conn, ChannelId(0), b"x").unwrap_err(), SendError::UnknownConnection);
        assert_eq!(drain(&mut server), ["gone:ClosedByPeer"]);
        drop(b);
        assert_eq!(drain(&mut server), ["gone:ClosedByPeer"]);
        assert_eq!(server.connection_count(), 0);
        drop(server);
        // The address is free again.
        assert!(net.bind(addr, kinds()).is_ok());
    }

    #[test]
    fn connecting_to_nobody_fails_as_an_event_and_misuse_is_an_error() {
        let net = MemoryNetwork::new();
        let mut client = net.endpoint(kinds());
        let nobody: SocketAddr = "10.9.9.9:9".parse().unwrap();
        client.connect(now(), nobody).unwrap();
        assert_eq!(drain(&mut client), ["gone:ConnectTimeout"]);
        // A client does not accept.
        let mut other = net.endpoint(kinds());
        other.connect(now(), client.local_addr().unwrap()).unwrap();
        assert_eq!(drain(&mut other), ["gone:ConnectTimeout"]);
        let addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let _server = net.bind(addr, kinds()).unwrap();
        assert!(matches!(net.bind(addr, kinds()), Err(ConnectError::AlreadyConnected(_))));
        let conn = client.connect(now(), addr).unwrap();
        assert!(matches!(client.connect(now(), addr), Err(ConnectError::AlreadyConnected(_))));
        assert_eq!(
            client.send(conn, ChannelId(2), b"x").unwrap_err(),
            SendError::UnknownChannel(ChannelId(2))
        );
        let big = vec![0; MEMORY_MAX_MESSAGE + 1];
        assert!(matches!(
            client.send(conn, ChannelId(0), &big),
            Err(SendError::MessageTooLarge { .. })
        ));
    }
}

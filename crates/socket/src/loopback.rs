//! An in-process datagram network.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::socket::loopback_of;
use crate::{
    Readiness, RecvMeta, SendStatus, Socket, SocketError, SocketFactory, SocketStats, SocketWaker,
};

/// First port handed out when a loopback socket binds port 0 (the IANA dynamic range).
const FIRST_EPHEMERAL_PORT: u16 = 49_152;

/// Options of a [`LoopbackNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackConfig {
    /// Datagrams each socket's receive queue holds; further arrivals are dropped and counted in
    /// the receiver's [`SocketStats::dropped_queue_full`], as a real NIC would.
    pub queue_capacity: usize,
    /// The largest datagram accepted by `send_to`.
    pub max_datagram_size: usize,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        Self { queue_capacity: 4096, max_datagram_size: crate::MAX_UDP_PAYLOAD_V4 }
    }
}

/// The most datagrams a loopback socket's queue may be configured to hold.
pub const MAX_LOOPBACK_QUEUE: usize = 1 << 20;

impl LoopbackConfig {
    /// Checks every field, naming the first that is out of range.
    /// [`LoopbackNetwork::with_config`] calls it.
    pub fn validate(&self) -> Result<(), SocketError> {
        let invalid = |field, reason| Err(SocketError::InvalidConfig { field, reason });
        if !(1..=MAX_LOOPBACK_QUEUE).contains(&self.queue_capacity) {
            return invalid("queue_capacity", "must be between 1 and 1048576 datagrams");
        }
        if !(1..=crate::MAX_UDP_PAYLOAD_V6).contains(&self.max_datagram_size) {
            return invalid("max_datagram_size", "must be between 1 and 65527 bytes");
        }
        Ok(())
    }
}

/// A network that lives in this process: sockets are addressed by [`SocketAddr`] and datagrams
/// are copied from the sender to the receiver's bounded queue. Cloning gives another handle to
/// the same network; sockets and handles may be used from any thread.
///
/// Addresses are labels: any IP may be bound, so a test can give each simulated host its own.
/// A socket bound to an unspecified IP (`0.0.0.0:p` or `[::]:p`) receives datagrams sent to any
/// IP of its family at port `p`, and its datagrams come from the loopback IP of its family
/// (`127.0.0.1:p` or `[::1]:p`), so peers should address it there. IPv4 and IPv6 are separate
/// (there is no dual-stack here).
#[derive(Debug, Clone, Default)]
pub struct LoopbackNetwork {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    config: LoopbackConfig,
    sockets: Mutex<Bindings>,
    undeliverable: AtomicU64,
}

/// The bound sockets, by address and by (family, port), so binding and routing cost O(1)
/// however many sockets a test binds.
#[derive(Debug, Default)]
struct Bindings {
    by_addr: HashMap<SocketAddr, Arc<Inbox>>,
    /// The IPs bound on each (is IPv4, port).
    by_port: HashMap<(bool, u16), Vec<IpAddr>>,
    /// Where the search for a free ephemeral port starts next.
    next_ephemeral: u16,
}

impl Bindings {
    /// Whether binding `addr` would clash with a bound socket: same family and port, and the
    /// same IP or either side unspecified.
    fn conflicts(&self, addr: SocketAddr) -> bool {
        self.by_port.get(&(addr.is_ipv4(), addr.port())).is_some_and(|ips| {
            ips.iter()
                .any(|ip| *ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified())
        })
    }

    /// A free ephemeral port for `addr`'s IP, searching on from the last one handed out.
    fn free_port(&mut self, addr: SocketAddr) -> Option<u16> {
        let span = u16::MAX - FIRST_EPHEMERAL_PORT + 1;
        let start = self.next_ephemeral.saturating_sub(FIRST_EPHEMERAL_PORT) % span;
        let port = (0..span)
            .map(|i| FIRST_EPHEMERAL_PORT + (start + i) % span)
            .find(|&port| !self.conflicts(with_port(addr, port)))?;
        self.next_ephemeral = port.wrapping_add(1).max(FIRST_EPHEMERAL_PORT);
        Some(port)
    }

    fn insert(&mut self, addr: SocketAddr, inbox: Arc<Inbox>) {
        self.by_addr.insert(addr, inbox);
        self.by_port.entry((addr.is_ipv4(), addr.port())).or_default().push(addr.ip());
    }

    fn remove(&mut self, addr: SocketAddr) {
        self.by_addr.remove(&addr);
        let key = (addr.is_ipv4(), addr.port());
        if let Some(ips) = self.by_port.get_mut(&key) {
            ips.retain(|ip| *ip != addr.ip());
            if ips.is_empty() {
                self.by_port.remove(&key);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inbox {
    state: Mutex<InboxState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct InboxState {
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Buffers of received datagrams, kept for the next sends so that steady traffic does not
    /// allocate.
    spare: Vec<Vec<u8>>,
    dropped_queue_full: u64,
    /// Set by the socket's waker; ends the current or next wait.
    woken: bool,
}

impl LoopbackNetwork {
    /// A new, empty network with default options.
    pub fn new() -> Self {
        Self::from_valid(LoopbackConfig::default())
    }

    /// A new, empty network, or the field of `config` that is out of range.
    pub fn with_config(config: LoopbackConfig) -> Result<Self, SocketError> {
        config.validate()?;
        Ok(Self::from_valid(config))
    }

    fn from_valid(config: LoopbackConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                sockets: Mutex::default(),
                undeliverable: AtomicU64::new(0),
            }),
        }
    }

    /// The network's options.
    pub fn config(&self) -> &LoopbackConfig {
        &self.shared.config
    }

    /// Binds a socket to `addr`; port 0 picks a free port at or above 49152.
    pub fn bind(&self, addr: SocketAddr) -> Result<LoopbackSocket, SocketError> {
        let mut sockets = self.shared.sockets.lock();
        let addr = if addr.port() == 0 {
            let port = sockets.free_port(addr).ok_or(SocketError::AddressInUse(addr))?;
            with_port(addr, port)
        } else if sockets.conflicts(addr) {
            return Err(SocketError::AddressInUse(addr));
        } else {
            addr
        };
        let inbox = Arc::new(Inbox::default());
        sockets.insert(addr, Arc::clone(&inbox));
        let source = if addr.ip().is_unspecified() {
            with_port(loopback_of(addr), addr.port())
        } else {
            addr
        };
        Ok(LoopbackSocket {
            network: self.clone(),
            local: addr,
            source,
            inbox,
            stats: SocketStats::default(),
        })
    }

    /// Datagrams sent to an address no socket was bound to (lost, as UDP would lose them).
    pub fn undeliverable(&self) -> u64 {
        self.shared.undeliverable.load(Ordering::Relaxed)
    }

    fn route(&self, to: SocketAddr) -> Option<Arc<Inbox>> {
        let sockets = self.shared.sockets.lock();
        let by_addr = &sockets.by_addr;
        by_addr
            .get(&to)
            .or_else(|| by_addr.get(&with_port(crate::socket::unspecified_of(to), to.port())))
            .cloned()
    }
}

fn with_port(mut addr: SocketAddr, port: u16) -> SocketAddr {
    addr.set_port(port);
    addr
}

/// A socket on a [`LoopbackNetwork`]. Dropping it frees its address.
///
/// ```
/// use sturnus_socket::{LoopbackNetwork, Socket};
///
/// let net = LoopbackNetwork::new();
/// let mut a = net.bind("10.0.0.1:7000".parse().unwrap()).unwrap();
/// let mut b = net.bind("10.0.0.2:7000".parse().unwrap()).unwrap();
/// let _ = a.send_to(b"hi", b.local_addr()).unwrap();
/// let mut buf = [0u8; 16];
/// let meta = b.recv_from(&mut buf).unwrap().unwrap();
/// assert_eq!((&buf[..meta.len], meta.from), (&b"hi"[..], a.local_addr()));
/// ```
#[derive(Debug)]
pub struct LoopbackSocket {
    network: LoopbackNetwork,
    local: SocketAddr,
    /// The address receivers see: `local`, or the loopback IP when bound to an unspecified one.
    source: SocketAddr,
    inbox: Arc<Inbox>,
    stats: SocketStats,
}

impl LoopbackSocket {
    /// The network this socket is on.
    pub fn network(&self) -> &LoopbackNetwork {
        &self.network
    }
}

impl Socket for LoopbackSocket {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        let max = self.network.shared.config.max_datagram_size;
        if payload.len() > max {
            return Err(SocketError::DatagramTooLarge { len: payload.len(), max });
        }
        if to.is_ipv4() != self.local.is_ipv4() {
            return Err(SocketError::AddressFamily { local: self.local, to });
        }
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        let Some(inbox) = self.network.route(to) else {
            self.network.shared.undeliverable.fetch_add(1, Ordering::Relaxed);
            return Ok(SendStatus::Sent);
        };
        let mut state = inbox.state.lock();
        if state.queue.len() >= self.network.shared.config.queue_capacity {
            state.dropped_queue_full += 1;
            return Ok(SendStatus::Sent);
        }
        let mut buf = state.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        state.queue.push_back((self.source, buf));
        drop(state);
        inbox.ready.notify_one();
        Ok(SendStatus::Sent)
    }

    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        let mut state = self.inbox.state.lock();
        let Some((from, data)) = state.queue.pop_front() else {
            return Ok(None);
        };
        let len = data.len().min(buf.len());
        buf[..len].copy_from_slice(&data[..len]);
        if state.spare.len() < self.network.shared.config.queue_capacity {
            state.spare.push(data);
        }
        drop(state);
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += len as u64;
        Ok(Some(RecvMeta { len, from }))
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        let mut state = self.inbox.state.lock();
        match timeout {
            None => {
                while state.queue.is_empty() && !state.woken {
                    self.inbox.ready.wait(&mut state);
                }
            }
            Some(timeout) => {
                if state.queue.is_empty() && !state.woken {
                    // One wait: an early return is reported as a timeout, which the contract
                    // allows the caller to treat like any other wake-up.
                    let _ = self.inbox.ready.wait_for(&mut state, timeout);
                }
            }
        }
        let woken = std::mem::take(&mut state.woken);
        Ok(if state.queue.is_empty() && !woken { Readiness::TimedOut } else { Readiness::Readable })
    }

    fn waker(&self) -> Option<SocketWaker> {
        let inbox = Arc::clone(&self.inbox);
        Some(SocketWaker::new(move || {
            inbox.state.lock().woken = true;
            inbox.ready.notify_all();
        }))
    }

    fn stats(&self) -> SocketStats {
        SocketStats { dropped_queue_full: self.inbox.state.lock().dropped_queue_full, ..self.stats }
    }
}

impl Drop for LoopbackSocket {
    fn drop(&mut self) {
        let mut sockets = self.network.shared.sockets.lock();
        if sockets.by_addr.get(&self.local).is_some_and(|inbox| Arc::ptr_eq(inbox, &self.inbox)) {
            sockets.remove(self.local);
        }
    }
}

/// Makes sockets on one [`LoopbackNetwork`]. Client sockets are bound to the loopback IP of the
/// remote's family (`127.0.0.1` or `::1`) on a free port.
#[derive(Debug, Clone, Default)]
pub struct LoopbackSocketFactory {
    network: LoopbackNetwork,
}

impl LoopbackSocketFactory {
    /// A factory on a new network with default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// A factory making sockets on `network` (share one network between a server's and its
    /// clients' factories).
    pub fn on(network: LoopbackNetwork) -> Self {
        Self { network }
    }

    /// The network the sockets are made on.
    pub fn network(&self) -> &LoopbackNetwork {
        &self.network
    }
}

impl SocketFactory for LoopbackSocketFactory {
    type Socket = LoopbackSocket;

    fn server_socket(&self, bind: SocketAddr) -> Result<LoopbackSocket, SocketError> {
        self.network.bind(bind)
    }

    fn client_socket(&self, remote: SocketAddr) -> Result<LoopbackSocket, SocketError> {
        self.network.bind(loopback_of(remote))
    }
}

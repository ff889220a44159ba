//! The socket traits and the types they exchange.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::SocketError;

/// What happened to a datagram handed to [`Socket::send_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a datagram that was not sent may need to be resent or counted as lost"]
pub enum SendStatus {
    /// The datagram left the socket.
    Sent,
    /// The socket's send buffer is full; nothing was sent. Try again later, or treat it as lost.
    WouldBlock,
    /// A transient error (such as an ICMP port-unreachable reported by the OS) prevented this
    /// send; it was counted in [`SocketStats::send_dropped`]. Treat the datagram as lost.
    Dropped,
}

/// Where a received datagram came from and how long it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes written into the caller's buffer.
    pub len: usize,
    /// The sender. IPv4 senders reaching a dual-stack IPv6 socket are reported as plain IPv4
    /// addresses, not as IPv4-mapped IPv6 ones.
    pub from: SocketAddr,
}

/// The outcome of [`Socket::wait_readable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// A datagram may be waiting. Wake-ups can be spurious: [`Socket::recv_from`] may still
    /// return `None`.
    Readable,
    /// The timeout passed with nothing to read.
    TimedOut,
}

/// One datagram of a [`Socket::send_batch`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The destination.
    pub to: SocketAddr,
    /// The bytes to send.
    pub payload: &'a [u8],
}

/// Wakes a thread blocked in [`Socket::wait_readable`] from another thread (for example when a
/// background I/O thread has new work to send). Cheap to clone.
#[derive(Clone)]
pub struct SocketWaker(Arc<dyn Fn() + Send + Sync>);

impl SocketWaker {
    /// A waker that calls `wake`.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(wake))
    }

    /// Makes the socket's current or next `wait_readable` return (as a spurious wake-up).
    pub fn wake(&self) {
        (self.0)();
    }
}

impl fmt::Debug for SocketWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SocketWaker")
    }
}

/// Counters kept by every socket. Each counts datagrams unless named `bytes_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Datagrams that left the socket.
    pub datagrams_sent: u64,
    /// Bytes that left the socket.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Sends refused because the send buffer was full.
    pub send_would_block: u64,
    /// Sends abandoned because of a transient error (ICMP unreachable and the like).
    pub send_dropped: u64,
    /// Transient receive errors skipped (ICMP unreachable reported on receive and the like).
    pub recv_errors: u64,
    /// System calls interrupted by a signal and retried.
    pub interrupted: u64,
    /// Datagrams that reached this socket but were dropped because its receive queue was full
    /// (kept by sockets that can see this: the loopback socket, and the UDP socket on Linux,
    /// which asks the kernel for its count each time it waits for datagrams).
    pub dropped_queue_full: u64,
    /// Datagrams received coalesced with others of the same sender in one system call (UDP
    /// GRO); also counted in `datagrams_received`.
    pub datagrams_coalesced: u64,
    /// Times the socket switched a receive offload off for an interactive flow or back on for
    /// a burst (UDP GRO on Linux).
    pub offload_switches: u64,
}

/// One line: `sent 120 datagrams (48000 B), received 118 (47200 B) · 0 would block, 0 dropped,
/// 0 receive errors, 0 interrupted, 0 dropped (queue full) · 12 coalesced, 1 offload switches`.
impl fmt::Display for SocketStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} datagrams ({} B), received {} ({} B) · {} would block, {} dropped, {} \
             receive errors, {} interrupted, {} dropped (queue full) · {} coalesced, {} offload \
             switches",
            self.datagrams_sent,
            self.bytes_sent,
            self.datagrams_received,
            self.bytes_received,
            self.send_would_block,
            self.send_dropped,
            self.recv_errors,
            self.interrupted,
            self.dropped_queue_full,
            self.datagrams_coalesced,
            self.offload_switches
        )
    }
}

/// A datagram socket: bytes in, bytes out, nothing about what they mean.
///
/// Every call is non-blocking except [`wait_readable`](Self::wait_readable), which lets a driver
/// sleep until there is something to read or a timer is due. Implementations absorb and count
/// transient conditions (see [`SendStatus`] and [`SocketStats`]) instead of returning errors, so
/// an `Err` always means something the caller has to act on.
///
/// The crate has three implementations: [`UdpSocket`](crate::UdpSocket),
/// [`LoopbackSocket`](crate::LoopbackSocket) and
/// [`ConditionedSocket`](crate::ConditionedSocket); implement the trait to carry Sturnus over
/// anything else that moves datagrams (a relay, a browser transport, a radio).
pub trait Socket: Send {
    /// Sends one datagram to `to` without blocking.
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError>;

    /// Receives one datagram into `buf` without blocking; `None` when nothing is waiting.
    ///
    /// As with UDP, bytes that do not fit in `buf` are discarded; lend a buffer one byte larger
    /// than the largest datagram you accept and a full buffer tells you a datagram was too long.
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError>;

    /// The address this socket is bound to.
    fn local_addr(&self) -> SocketAddr;

    /// Blocks until a datagram may be readable or `timeout` passes (`None` waits without limit;
    /// `Some(Duration::ZERO)` only checks).
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError>;

    /// The socket's counters.
    fn stats(&self) -> SocketStats;

    /// Sends several datagrams, in order, stopping at the first one that would block.
    ///
    /// Returns how many datagrams were consumed (sent, or dropped as by [`SendStatus::Dropped`]);
    /// the rest were not attempted. The default calls [`send_to`](Self::send_to) for each.
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> Result<usize, SocketError> {
        for (done, datagram) in batch.iter().enumerate() {
            if self.send_to(datagram.payload, datagram.to)? == SendStatus::WouldBlock {
                return Ok(done);
            }
        }
        Ok(batch.len())
    }

    /// Receives as many waiting datagrams as fit in `batch` (which is cleared first) and returns
    /// how many. The default calls [`recv_from`](Self::recv_from) for each slot.
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        batch.fill_with(|buf| self.recv_from(buf))
    }

    /// A handle that wakes [`wait_readable`](Self::wait_readable) from another thread, if this
    /// socket has one (the UDP and loopback sockets do). Without one, a driver that must react
    /// to other threads bounds its waits instead.
    fn waker(&self) -> Option<SocketWaker> {
        None
    }
}

impl<S: Socket + ?Sized> Socket for Box<S> {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        (**self).send_to(payload, to)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        (**self).recv_from(buf)
    }
    fn local_addr(&self) -> SocketAddr {
        (**self).local_addr()
    }
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        (**self).wait_readable(timeout)
    }
    fn stats(&self) -> SocketStats {
        (**self).stats()
    }
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> Result<usize, SocketError> {
        (**self).send_batch(batch)
    }
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        (**self).recv_batch(batch)
    }
    fn waker(&self) -> Option<SocketWaker> {
        (**self).waker()
    }
}

/// Makes sockets of one kind: a server socket bound to a local address, or a client socket for
/// reaching a remote one. Code above the socket layer takes a factory, so switching from UDP to
/// loopback (or to your own socket) changes one line.
pub trait SocketFactory {
    /// The kind of socket made.
    type Socket: Socket;

    /// A socket bound to `bind`, for accepting peers (port 0 picks a free port).
    fn server_socket(&self, bind: SocketAddr) -> Result<Self::Socket, SocketError>;

    /// A socket suitable for reaching `remote`: bound to a free local port of the same address
    /// family.
    fn client_socket(&self, remote: SocketAddr) -> Result<Self::Socket, SocketError>;
}

/// A reusable set of receive buffers for [`Socket::recv_batch`]: one contiguous allocation of
/// `slots × slot_size` bytes, made once and lent to the socket on every call.
pub struct RecvBatch {
    pub(crate) data: Vec<u8>,
    pub(crate) slot_size: usize,
    pub(crate) meta: Vec<RecvMeta>,
}

impl RecvBatch {
    /// Room for `slots` datagrams of up to `slot_size` bytes each.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        Self { data: vec![0; slots * slot_size], slot_size, meta: Vec::with_capacity(slots) }
    }

    /// How many datagrams fit.
    pub fn capacity(&self) -> usize {
        self.meta.capacity()
    }

    /// The size of each slot.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// How many datagrams the last receive filled in.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the last receive found nothing.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Forgets the received datagrams (the buffers are kept).
    pub fn clear(&mut self) {
        self.meta.clear();
    }

    /// The `index`-th received datagram and its sender.
    pub fn get(&self, index: usize) -> Option<(SocketAddr, &[u8])> {
        let meta = self.meta.get(index)?;
        let start = index * self.slot_size;
        Some((meta.from, &self.data[start..start + meta.len]))
    }

    /// The received datagrams, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Clears the batch, then calls `recv` with each free slot in turn until it returns `None`
    /// or the batch is full. For implementors of [`Socket::recv_batch`].
    pub fn fill_with<E>(
        &mut self,
        mut recv: impl FnMut(&mut [u8]) -> Result<Option<RecvMeta>, E>,
    ) -> Result<usize, E> {
        self.meta.clear();
        let capacity = self.meta.capacity();
        while self.meta.len() < capacity {
            let start = self.meta.len() * self.slot_size;
            match recv(&mut self.data[start..start + self.slot_size])? {
                Some(meta) => self.meta.push(meta),
                None => break,
            }
        }
        Ok(self.meta.len())
    }
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size)
            .field("len", &self.len())
            .finish()
    }
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) back into the IPv4 address it stands for.
pub(crate) fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The loopback address of `addr`'s family.
pub(crate) fn loopback_of(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
    }
}

/// The unspecified ("any") address of `addr`'s family, port 0.
pub(crate) fn unspecified_of(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_read_as_one_line() {
        let stats = SocketStats {
            datagrams_sent: 3,
            bytes_sent: 300,
            datagrams_received: 2,
            bytes_received: 200,
            send_would_block: 1,
            ..SocketStats::default()
        };
        assert_eq!(
            stats.to_string(),
            "sent 3 datagrams (300 B), received 2 (200 B) · 1 would block, 0 dropped, 0 receive \
             errors, 0 interrupted, 0 dropped (queue full) · 0 coalesced, 0 offload switches"
        );
    }

    #[test]
    fn unmap_turns_mapped_addresses_into_ipv4_only() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:99".parse().unwrap();
        assert_eq!(unmap(mapped), "10.1.2.3:99".parse::<SocketAddr>().unwrap());
        let v6: SocketAddr = "[::1]:99".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }

    #[test]
    fn recv_batch_fills_until_none_or_full() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut batch = RecvBatch::new(3, 8);
        let mut left = 5u8;
        let n = batch
            .fill_with(|buf| -> Result<_, ()> {
                if left == 0 {
                    return Ok(None);
                }
                left -= 1;
                buf[0] = left;
                Ok(Some(RecvMeta { len: 1, from }))
            })
            .unwrap();
        assert_eq!(n, 3);
        let got: Vec<u8> = batch.iter().map(|(_, p)| p[0]).collect();
        assert_eq!(got, [4, 3, 2]);
        let n = batch.fill_with(|_| -> Result<_, ()> { Ok(None) }).unwrap();
        assert_eq!((n, batch.is_empty()), (0, true));
    }
}

//! UDP sockets on mio (readiness) and socket2 (options).

use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Type};

use crate::socket::{unmap, unspecified_of};
use crate::{
    Outgoing, Readiness, RecvBatch, RecvMeta, SendStatus, Socket, SocketError, SocketFactory,
    SocketStats, SocketWaker,
};

/// The largest UDP payload over IPv4 (65,535 − 8-byte UDP header − 20-byte IP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// The largest UDP payload over IPv6 without jumbograms (65,535 − 8-byte UDP header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// Options of [`UdpSocket`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Requested kernel send buffer in bytes (`None` keeps the OS default). Large buffers absorb
    /// bursts from a busy server; the kernel may grant less (see [`UdpSocket::buffer_sizes`]).
    pub send_buffer_size: Option<usize>,
    /// Requested kernel receive buffer in bytes (`None` keeps the OS default).
    pub recv_buffer_size: Option<usize>,
    /// On Linux, where the kernel caps a buffer below the size asked for (at
    /// `net.core.rmem_max` / `wmem_max`), force the size asked for (`SO_RCVBUFFORCE` /
    /// `SO_SNDBUFFORCE`; only a process with `CAP_NET_ADMIN` may, others keep the capped size).
    /// Off by default: the caps are the administrator's; a dedicated server that must ride out
    /// stalls with a large queue (100,000 clients' messages arrive at 100,000 a second) turns
    /// it on, or has the caps raised.
    pub force_buffer_sizes: bool,
    /// For IPv6 sockets: accept only IPv6. The default, `false`, makes an IPv6 socket bound to
    /// `[::]` dual-stack, so IPv4 clients reach it too.
    pub ipv6_only: bool,
    /// Sets `SO_REUSEADDR` before binding.
    pub reuse_address: bool,
    /// On Linux, send runs of equal-sized datagrams to one destination as one segmented send
    /// (UDP GSO) in [`Socket::send_batch`]: a bulk transfer then costs the kernel one trip
    /// through its stack per 64 datagrams. If the kernel refuses it, the socket falls back to
    /// one datagram per message by itself. On by default.
    pub segmentation_offload: bool,
    /// On Linux, let the kernel coalesce datagrams of one sender on receive (UDP GRO, Linux
    /// 5.0+). The socket splits them again, so callers still receive one datagram at a time;
    /// it costs one copy per datagram and 64 KiB of (lazily touched) buffer per batch slot, and
    /// saves the kernel's per-datagram work on bulk flows (from a GSO sender on loopback, or
    /// from a NIC that aggregates). A kernel without it is detected at bind time and the
    /// socket receives plainly. While the flow is interactive (64 receives in a row of one
    /// datagram each) the socket switches GRO off, as learning the segment size makes every
    /// receive dearer; it switches it back on at the first burst from one sender (see
    /// [`SocketStats::offload_switches`](crate::SocketStats::offload_switches)). On by default.
    pub receive_offload: bool,
    /// On Linux, send every datagram with the IP don't-fragment bit and never fragment
    /// (`IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER` = `PMTUDISC_PROBE`, as QUIC stacks do). The
    /// transport splits messages into packets of at most `max_packet_size` (1,200 B by
    /// default, under any Internet path's MTU), so this changes nothing on the wire unless that
    /// is raised past a path's MTU. Then a datagram that would have gone out in IP fragments
    /// (and been lost whole with any one of them) is dropped instead: by a router on the path,
    /// or here, counted in [`SocketStats::send_dropped`](crate::SocketStats::send_dropped),
    /// when it is larger than the interface's MTU. With the bit set the kernel also skips
    /// choosing an IP ID per datagram, about 2 % of a busy server's CPU. On by default; off
    /// keeps the kernel's default (fragment datagrams too large for the path).
    pub dont_fragment: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            send_buffer_size: Some(4 * 1024 * 1024),
            recv_buffer_size: Some(4 * 1024 * 1024),
            force_buffer_sizes: false,
            ipv6_only: false,
            reuse_address: false,
            segmentation_offload: true,
            receive_offload: true,
            dont_fragment: true,
        }
    }
}

/// The largest kernel buffer a [`UdpConfig`] may ask for (1 GiB); the kernel caps requests far
/// below it, and the system call takes a C `int`.
pub const MAX_SOCKET_BUFFER_SIZE: usize = 1 << 30;

impl UdpConfig {
    /// Checks every field, naming the first that is out of range. [`UdpSocket::bind`] calls it.
    ///
    /// ```
    /// use sturnus_socket::UdpConfig;
    /// UdpConfig::default().validate().unwrap();
    /// let huge = UdpConfig { recv_buffer_size: Some(usize::MAX), ..UdpConfig::default() };
    /// assert!(huge.validate().unwrap_err().to_string().contains("recv_buffer_size"));
    /// ```
    pub fn validate(&self) -> Result<(), SocketError> {
        let sizes = [
            ("send_buffer_size", self.send_buffer_size),
            ("recv_buffer_size", self.recv_buffer_size),
        ];
        for (field, size) in sizes {
            if size.is_some_and(|size| size == 0 || size > MAX_SOCKET_BUFFER_SIZE) {
                return Err(SocketError::InvalidConfig {
                    field,
                    reason: "must be between 1 byte and 1 GiB (or None for the OS default)",
                });
            }
        }
        Ok(())
    }
}

/// Kernel buffer sizes as reported by the OS after the request (Linux reports twice the usable
/// size and caps requests at `net.core.{w,r}mem_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_SNDBUF` as granted.
    pub send: usize,
    /// `SO_RCVBUF` as granted.
    pub recv: usize,
}

/// Makes [`UdpSocket`]s with one [`UdpConfig`].
///
/// ```
/// use sturnus_socket::{Socket, SocketFactory, UdpSocketFactory};
///
/// let factory = UdpSocketFactory::default();
/// let mut server = factory.server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
/// let mut client = factory.client_socket(server.local_addr()).unwrap();
/// let _ = client.send_to(b"ping", server.local_addr()).unwrap();
/// let mut buf = [0u8; 1500];
/// let meta = loop {
///     if let Some(meta) = server.recv_from(&mut buf).unwrap() {
///         break meta;
///     }
///     server.wait_readable(None).unwrap();
/// };
/// assert_eq!(&buf[..meta.len], b"ping");
/// // The client socket is bound to 0.0.0.0; the server sees the IP it was sent from.
/// assert_eq!(meta.from.port(), client.local_addr().port());
/// ```
#[derive(Debug, Clone, Default)]
pub struct UdpSocketFactory {
    config: UdpConfig,
}

impl UdpSocketFactory {
    /// A factory whose sockets use `config`.
    pub fn new(config: UdpConfig) -> Self {
        Self { config }
    }

    /// The options given to every socket.
    pub fn config(&self) -> &UdpConfig {
        &self.config
    }
}

impl SocketFactory for UdpSocketFactory {
    type Socket = UdpSocket;

    fn server_socket(&self, bind: SocketAddr) -> Result<UdpSocket, SocketError> {
        UdpSocket::bind(bind, &self.config)
    }

    fn client_socket(&self, remote: SocketAddr) -> Result<UdpSocket, SocketError> {
        // An IPv4-mapped destination is reached from an IPv4 socket.
        UdpSocket::bind(unspecified_of(unmap(remote)), &self.config)
    }
}

/// A non-blocking UDP socket (IPv4, IPv6 or dual-stack).
///
/// On a dual-stack IPv6 socket, IPv4 peers appear as plain IPv4 addresses and can be sent to as
/// such; the socket maps them to and from `::ffff:a.b.c.d` itself.
pub struct UdpSocket {
    io: mio::net::UdpSocket,
    poll: Poll,
    events: Events,
    local: SocketAddr,
    buffers: BufferSizes,
    /// False only after a receive found the queue empty. mio is edge-triggered, so a wait is
    /// only safe once the queue has been drained.
    maybe_readable: bool,
    stats: SocketStats,
    waker: std::sync::Arc<mio::Waker>,
    /// Whether the kernel took [`UdpConfig::dont_fragment`].
    dont_fragment: bool,
    /// Whether a datagram over the link's MTU has been reported (once per socket; the rest are
    /// counted).
    warned_oversized: bool,
    /// Whether batches may use UDP GSO (configured, and not refused by the kernel so far).
    #[cfg(target_os = "linux")]
    gso: bool,
    #[cfg(target_os = "linux")]
    scratch: crate::sys::MmsgScratch,
    /// With UDP GRO on: coalesced receives not yet handed out.
    #[cfg(target_os = "linux")]
    gro: Option<crate::gro::GroQueue>,
    /// With `gro`: whether GRO is on now (off while the flow is interactive).
    #[cfg(target_os = "linux")]
    gro_mode: crate::gro::GroMode,
    /// The last batch receive found at most one datagram waiting: the flow is interactive, so
    /// the next one asks the kernel for a single datagram, which costs it less work than a
    /// batch (a ping-pong saves about half a microsecond per receive). Two successes in a row
    /// switch back to batches: more is arriving than one at a time.
    #[cfg(target_os = "linux")]
    lone: bool,
    /// Single receives in a row that found a datagram (see `lone`).
    #[cfg(target_os = "linux")]
    lone_hits: u8,
}

/// The poll token of the socket's [`SocketWaker`] (the socket itself is token 0).
const WAKER: Token = Token(1);

/// How many transient receive errors one `recv_from` call skips before giving up for now.
const MAX_SKIPPED_ERRORS: usize = 64;

impl UdpSocket {
    /// Binds a socket to `addr` with `config`.
    pub fn bind(addr: SocketAddr, config: &UdpConfig) -> Result<Self, SocketError> {
        config.validate()?;
        let socket =
            socket2::Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
                .map_err(|e| SocketError::io("socket", e))?;
        if addr.is_ipv6() {
            socket.set_only_v6(config.ipv6_only).map_err(|e| SocketError::io("IPV6_V6ONLY", e))?;
        }
        if config.reuse_address {
            socket.set_reuse_address(true).map_err(|e| SocketError::io("SO_REUSEADDR", e))?;
        }
        // A smaller buffer than requested is not fatal: the kernel caps requests, and the grant
        // is reported.
        if let Some(size) = config.send_buffer_size {
            if let Err(e) = socket.set_send_buffer_size(size) {
                tracing::warn!(size, error = %e, "could not set the UDP send buffer size");
            }
        }
        if let Some(size) = config.recv_buffer_size {
            if let Err(e) = socket.set_recv_buffer_size(size) {
                tracing::warn!(size, error = %e, "could not set the UDP receive buffer size");
            }
        }
        let mut buffers = BufferSizes {
            send: socket.send_buffer_size().map_err(|e| SocketError::io("SO_SNDBUF", e))?,
            recv: socket.recv_buffer_size().map_err(|e| SocketError::io("SO_RCVBUF", e))?,
        };
        // The kernel caps a request at net.core.rmem_max / wmem_max (4 MiB is common; a
        // server of many clients may want more to ride out a stall). Where forcing is asked
        // for, a process allowed to (CAP_NET_ADMIN) gets what it asked for; one that is not
        // keeps the capped size, and the log says which sysctl raises the cap.
        #[cfg(target_os = "linux")]
        if config.force_buffer_sizes {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            for (receive, wanted, granted, sysctl) in [
                (true, config.recv_buffer_size, &mut buffers.recv, "net.core.rmem_max"),
                (false, config.send_buffer_size, &mut buffers.send, "net.core.wmem_max"),
            ] {
                let Some(wanted) = wanted.filter(|&w| w > *granted) else { continue };
                match crate::sys::force_buffer_size(fd, receive, wanted) {
                    Ok(()) => {
                        let now = if receive {
                            socket.recv_buffer_size()
                        } else {
                            socket.send_buffer_size()
                        };
                        *granted = now.unwrap_or(*granted);
                    }
                    Err(_) => tracing::debug!(
                        wanted,
                        granted = *granted,
                        "the kernel capped a UDP buffer below the size asked for; raise {sysctl} \
                         to grant it"
                    ),
                }
            }
        }
        #[cfg(target_os = "linux")]
        let dont_fragment = config.dont_fragment && {
            use std::os::fd::AsRawFd;
            // Without it datagrams go out as before (fragmentable): not a reason to fail.
            crate::sys::set_dont_fragment(socket.as_raw_fd(), addr.is_ipv6())
                .inspect_err(|e| {
                    tracing::debug!(%addr, error = %e, "could not set the don't-fragment bit");
                })
                .is_ok()
        };
        #[cfg(not(target_os = "linux"))]
        let dont_fragment = false;
        socket.set_nonblocking(true).map_err(|e| SocketError::io("set_nonblocking", e))?;
        socket.bind(&addr.into()).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => SocketError::AddressInUse(addr),
            _ => SocketError::io("bind", e),
        })?;

        let mut io = mio::net::UdpSocket::from_std(socket.into());
        let poll = Poll::new().map_err(|e| SocketError::io("poll", e))?;
        poll.registry()
            .register(&mut io, Token(0), Interest::READABLE)
            .map_err(|e| SocketError::io("register", e))?;
        let waker =
            mio::Waker::new(poll.registry(), WAKER).map_err(|e| SocketError::io("waker", e))?;
        let local = io.local_addr().map_err(|e| SocketError::io("local_addr", e))?;
        #[cfg(target_os = "linux")]
        let gro = config.receive_offload.then(|| {
            use std::os::fd::AsRawFd;
            crate::sys::enable_gro(io.as_raw_fd())
                .inspect_err(|e| tracing::debug!(%local, error = %e, "UDP GRO not available"))
                .ok()
                .map(|()| crate::gro::GroQueue::default())
        });
        tracing::debug!(%local, ?buffers, "UDP socket bound");
        Ok(Self {
            io,
            poll,
            events: Events::with_capacity(4),
            local,
            buffers,
            maybe_readable: true,
            stats: SocketStats::default(),
            waker: std::sync::Arc::new(waker),
            dont_fragment,
            warned_oversized: false,
            #[cfg(target_os = "linux")]
            gso: config.segmentation_offload,
            #[cfg(target_os = "linux")]
            scratch: crate::sys::MmsgScratch::new(),
            #[cfg(target_os = "linux")]
            gro: gro.flatten(),
            #[cfg(target_os = "linux")]
            gro_mode: crate::gro::GroMode::default(),
            #[cfg(target_os = "linux")]
            lone: false,
            #[cfg(target_os = "linux")]
            lone_hits: 0,
        })
    }

    /// The kernel buffer sizes granted.
    pub fn buffer_sizes(&self) -> BufferSizes {
        self.buffers
    }

    /// Whether datagrams go out with the don't-fragment bit (configured with
    /// [`UdpConfig::dont_fragment`], and accepted by the kernel).
    pub fn dont_fragment(&self) -> bool {
        self.dont_fragment
    }

    /// Counts a datagram refused as larger than the link's MTU, and says so the first time: it
    /// is a configuration to fix (a transport's `max_packet_size` over the path's MTU), and
    /// every full-size packet after it goes the same way.
    fn drop_oversized(&mut self, len: usize, to: SocketAddr) {
        self.stats.send_dropped += 1;
        if !self.warned_oversized {
            self.warned_oversized = true;
            tracing::warn!(
                len,
                %to,
                "a datagram is larger than the link's MTU and may not be fragmented: dropped \
                 (lower the transport's max_packet_size, or turn off UdpConfig::dont_fragment); \
                 later ones are only counted in send_dropped"
            );
        }
    }

    /// The largest payload this socket sends in one datagram: the protocol's limit. With
    /// [`UdpConfig::dont_fragment`] (the default) the link's MTU bounds it too: a larger
    /// datagram is dropped and counted in [`SocketStats::send_dropped`] (about 1,472 bytes on
    /// Ethernet over IPv4, 1,452 over IPv6; 65,488 over IPv6 loopback).
    pub fn max_datagram_size(&self) -> usize {
        if self.local.is_ipv6() { MAX_UDP_PAYLOAD_V6 } else { MAX_UDP_PAYLOAD_V4 }
    }

    /// Puts `to` into the form this socket's family can send to.
    fn destination(&self, to: SocketAddr) -> Result<SocketAddr, SocketError> {
        destination_for(self.local, to)
    }

    /// Whether the socket receives with UDP GRO (configured, and accepted by the kernel).
    pub fn receive_offload(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.gro.is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// Tells the GRO policy what a receive found, and switches GRO when it says so.
    #[cfg(target_os = "linux")]
    fn adapt_gro(&mut self, found: usize, run: usize) {
        use std::os::fd::AsRawFd;
        let Some(on) = self.gro_mode.after_receive(found, run) else { return };
        match crate::sys::set_gro(self.io.as_raw_fd(), on) {
            Ok(()) => {
                self.gro_mode.switched(on);
                self.stats.offload_switches += 1;
                tracing::trace!(local = %self.local, on, "UDP GRO switched");
            }
            Err(e) => {
                self.gro_mode.refused();
                tracing::debug!(local = %self.local, on, error = %e, "UDP GRO switch refused");
            }
        }
    }

    /// Receives up to `slots` (coalesced) messages into the GRO queue, which must be empty.
    /// Returns how many arrived.
    #[cfg(target_os = "linux")]
    fn refill_gro(&mut self, slots: usize) -> Result<usize, SocketError> {
        use std::os::fd::AsRawFd;
        let fd = self.io.as_raw_fd();
        let Some(queue) = self.gro.as_mut() else { return Ok(0) };
        queue.prepare(slots);
        let received = recv_retrying(
            fd,
            &mut self.scratch,
            &mut self.stats,
            (&mut queue.buf, crate::gro::GRO_SLOT, slots),
            &mut queue.meta,
            Some(&mut queue.segments),
        )?;
        // Fewer than asked for: the kernel's queue is empty.
        self.maybe_readable = received.is_none_or(|n| n == slots);
        Ok(received.unwrap_or(0))
    }

    /// One `recvfrom`, as a socket without GRO receives.
    fn recv_plain(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        for _ in 0..MAX_SKIPPED_ERRORS {
            match self.io.recv_from(buf) {
                Ok((len, from)) => {
                    self.stats.datagrams_received += 1;
                    self.stats.bytes_received += len as u64;
                    return Ok(Some(RecvMeta { len, from: unmap(from) }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.stats.interrupted += 1,
                Err(e) if is_transient(e.kind()) => {
                    tracing::trace!(error = %e, "transient UDP receive error");
                    self.stats.recv_errors += 1;
                }
                Err(e) => return Err(SocketError::io("recv_from", e)),
            }
        }
        // Still readable as far as we know: the next wait must not sleep.
        self.maybe_readable = true;
        Ok(None)
    }

    /// One message straight into `buf` (the GRO queue must be empty): a lone datagram needs
    /// no copy; the other datagrams of a coalesced message wait in the queue.
    #[cfg(target_os = "linux")]
    fn recv_lone_gro(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        use std::os::fd::AsRawFd;
        let fd = self.io.as_raw_fd();
        let Some(queue) = self.gro.as_mut() else { return Ok(None) };
        queue.prepare(1);
        let first = buf.len().min(crate::gro::GRO_SLOT);
        // `Err` when transient errors used up the retries: the queue may still hold data.
        let received = 'call: {
            for _ in 0..MAX_SKIPPED_ERRORS {
                match crate::sys::recv_gro_one(
                    fd,
                    &mut buf[..first],
                    &mut queue.buf[..crate::gro::GRO_SLOT - first],
                ) {
                    Ok(got) => break 'call Ok(got),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => self.stats.interrupted += 1,
                    Err(e) if is_transient(e.kind()) => {
                        tracing::trace!(error = %e, "transient UDP receive error");
                        self.stats.recv_errors += 1;
                    }
                    Err(e) => return Err(SocketError::io("recvmsg", e)),
                }
            }
            Err(())
        };
        // Only a receive that found the queue empty makes waiting safe.
        self.maybe_readable = !matches!(received, Ok(None));
        let Ok(Some((len, from, segment))) = received else { return Ok(None) };
        let Some(segment) = segment else {
            // One datagram, already in place (cut to `buf`, as UDP does).
            let len = len.min(first);
            self.stats.datagrams_received += 1;
            self.stats.bytes_received += len as u64;
            return Ok(Some(RecvMeta { len, from: unmap(from) }));
        };
        // Coalesced: put the message back together in the queue and hand it out from there.
        let head = len.min(first);
        queue.buf.copy_within(..len - head, first);
        queue.buf[..head].copy_from_slice(&buf[..head]);
        queue.meta.push(RecvMeta { len, from });
        queue.segments.push(segment);
        Ok(self.pop_gro(buf))
    }

    /// The next datagram of the GRO queue, copied into `buf`.
    #[cfg(target_os = "linux")]
    fn pop_gro(&mut self, buf: &mut [u8]) -> Option<RecvMeta> {
        let (len, from, coalesced) = self.gro.as_mut()?.pop(buf)?;
        self.stats.datagrams_received += 1;
        self.stats.datagrams_coalesced += u64::from(coalesced);
        self.stats.bytes_received += len as u64;
        Some(RecvMeta { len, from: unmap(from) })
    }

    /// Whether the GRO queue holds datagrams not yet handed out.
    fn gro_pending(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.gro.as_ref().is_some_and(crate::gro::GroQueue::pending);
        #[cfg(not(target_os = "linux"))]
        return false;
    }
}

/// Puts `to` into the form a socket bound to `local` can send to.
fn destination_for(local: SocketAddr, to: SocketAddr) -> Result<SocketAddr, SocketError> {
    match (local, to) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            Ok(SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0)))
        }
        (SocketAddr::V4(_), SocketAddr::V6(_)) => match unmap(to) {
            v4 @ SocketAddr::V4(_) => Ok(v4),
            SocketAddr::V6(_) => Err(SocketError::AddressFamily { local, to }),
        },
        _ => Ok(to),
    }
}

/// The kernel refused a datagram as larger than the interface's MTU (`EMSGSIZE`): with
/// [`UdpConfig::dont_fragment`] on it may not be fragmented, so that datagram is dropped and
/// the socket goes on.
fn exceeds_link_mtu(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    return e.raw_os_error() == Some(libc::EMSGSIZE);
    #[cfg(not(target_os = "linux"))]
    return false;
}

/// Errors that a datagram socket reports because of an earlier datagram or a passing network
/// condition, not because this socket is broken.
fn is_transient(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Errors a send reports because of where it was going (port 0, a broadcast address, an
/// address the kernel will not route), not because this socket is broken. A peer can make us
/// answer such an address by forging its source, so they must not stop the caller.
fn refuses_destination(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::InvalidInput
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::AddrNotAvailable
    )
}

impl Socket for UdpSocket {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        let max = self.max_datagram_size();
        if payload.len() > max {
            return Err(SocketError::DatagramTooLarge { len: payload.len(), max });
        }
        let to = self.destination(to)?;
        loop {
            match self.io.send_to(payload, to) {
                Ok(sent) => {
                    self.stats.datagrams_sent += 1;
                    self.stats.bytes_sent += sent as u64;
                    return Ok(SendStatus::Sent);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_would_block += 1;
                    return Ok(SendStatus::WouldBlock);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.stats.interrupted += 1,
                Err(e) if self.dont_fragment && exceeds_link_mtu(&e) => {
                    self.drop_oversized(payload.len(), to);
                    return Ok(SendStatus::Dropped);
                }
                Err(e) if is_transient(e.kind()) || refuses_destination(e.kind()) => {
                    tracing::trace!(%to, error = %e, "UDP send dropped");
                    self.stats.send_dropped += 1;
                    return Ok(SendStatus::Dropped);
                }
                Err(e) => return Err(SocketError::io("send_to", e)),
            }
        }
    }

    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        #[cfg(target_os = "linux")]
        if self.gro.is_some() {
            if self.gro_pending() {
                return Ok(self.pop_gro(buf));
            }
            let got = if self.gro_mode.needs_segment_size() {
                self.recv_lone_gro(buf)?
            } else {
                self.recv_plain(buf)?
            };
            let found = usize::from(got.is_some());
            self.adapt_gro(found, found);
            return Ok(got);
        }
        self.recv_plain(buf)
    }

    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        if self.maybe_readable || self.gro_pending() {
            return Ok(Readiness::Readable);
        }
        // About to sleep: ask the kernel what it dropped for a full receive queue (one system
        // call beside the poll, so `stats` stays a plain copy).
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            if let Ok(drops) = crate::sys::socket_drops(self.io.as_raw_fd()) {
                self.stats.dropped_queue_full = drops;
            }
        }
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                // A signal: report a (spurious) wake-up and let the caller loop.
                self.stats.interrupted += 1;
                self.maybe_readable = true;
                return Ok(Readiness::Readable);
            }
            Err(e) => return Err(SocketError::io("poll", e)),
        }
        if self.events.is_empty() {
            Ok(Readiness::TimedOut)
        } else {
            // A wake-up by the waker alone is reported as a (spurious) readable.
            if self.events.iter().any(|e| e.token() != WAKER) {
                self.maybe_readable = true;
            }
            Ok(Readiness::Readable)
        }
    }

    fn stats(&self) -> SocketStats {
        self.stats
    }

    fn waker(&self) -> Option<SocketWaker> {
        let waker = std::sync::Arc::clone(&self.waker);
        Some(SocketWaker::new(move || {
            // Failing to wake only delays the waiter until its timeout.
            let _ = waker.wake();
        }))
    }

    /// On Linux, one `sendmmsg` call per run of datagrams the kernel takes (a lone datagram
    /// goes out with `sendto`, which the kernel handles with less work).
    #[cfg(target_os = "linux")]
    fn send_batch(&mut self, batch: &[Outgoing<'_>]) -> Result<usize, SocketError> {
        use std::os::fd::AsRawFd;
        if let [only] = batch {
            // A dropped datagram is done with, as in a batch; only a full buffer leaves it.
            return Ok(match self.send_to(only.payload, only.to)? {
                SendStatus::WouldBlock => 0,
                SendStatus::Sent | SendStatus::Dropped => 1,
            });
        }
        // Datagrams this socket cannot send at all go through `send_to`, which reports them.
        let max = self.max_datagram_size();
        let valid = batch
            .iter()
            .position(|d| d.payload.len() > max || self.destination(d.to).is_err())
            .unwrap_or(batch.len());
        let local = self.local;
        let mut done = 0;
        let mut gso = self.gso;
        // Set when a segmented send failed and the same datagrams are being tried one by one:
        // if that works, the kernel (or the device) refused segmentation itself.
        let mut plain_retry = false;
        while done < valid {
            let fd = self.io.as_raw_fd();
            let rest = &batch[done..valid];
            let map = |to| destination_for(local, to).unwrap_or(to);
            match crate::sys::send_batch(fd, &mut self.scratch, rest, map, gso) {
                Ok(n) => {
                    if plain_retry && n > 0 {
                        tracing::debug!(local = %self.local, "UDP GSO refused; sending datagrams singly");
                        self.gso = false;
                    }
                    plain_retry = false;
                    gso = self.gso;
                    self.stats.datagrams_sent += n as u64;
                    self.stats.bytes_sent +=
                        rest[..n].iter().map(|d| d.payload.len() as u64).sum::<u64>();
                    done += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_would_block += 1;
                    return Ok(done);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.stats.interrupted += 1,
                Err(e) if gso && crate::sys::starts_segmented_run(rest) => {
                    tracing::trace!(error = %e, "segmented UDP send failed; retrying singly");
                    gso = false;
                    plain_retry = true;
                }
                Err(e) if self.dont_fragment && exceeds_link_mtu(&e) => {
                    self.drop_oversized(rest[0].payload.len(), rest[0].to);
                    plain_retry = false;
                    gso = self.gso;
                    done += 1;
                }
                Err(e) if is_transient(e.kind()) || refuses_destination(e.kind()) => {
                    tracing::trace!(to = %rest[0].to, error = %e, "UDP send dropped");
                    self.stats.send_dropped += 1;
                    plain_retry = false;
                    gso = self.gso;
                    done += 1;
                }
                Err(e) => return Err(SocketError::io("sendmmsg", e)),
            }
        }
        if valid < batch.len() {
            let bad = &batch[valid];
            // Returns the error that stopped the batch.
            let _ = self.send_to(bad.payload, bad.to)?;
            return Ok(valid + 1);
        }
        Ok(done)
    }

    /// On Linux, one `recvmmsg` call fills as much of the batch as is waiting; an interactive
    /// flow (one datagram at a time) gets one `recvfrom` per call instead, and GRO is used only
    /// while datagrams come in bursts (see [`UdpConfig::receive_offload`]).
    #[cfg(target_os = "linux")]
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        batch.meta.clear();
        if self.gro.is_some() {
            // Only a receive without GRO can see a burst that GRO would have coalesced.
            let (n, run) = if self.gro_pending() || self.gro_mode.needs_segment_size() {
                let n = self.recv_batch_gro(batch)?;
                (n, n.min(1))
            } else {
                let n = self.recv_batch_plain(batch)?;
                (n, if n > 1 { longest_run(&batch.meta) } else { n })
            };
            self.adapt_gro(n, run);
            return Ok(n);
        }
        self.recv_batch_plain(batch)
    }
}

#[cfg(target_os = "linux")]
impl UdpSocket {
    /// [`Socket::recv_batch`] without GRO: one `recvmmsg`, or one `recvfrom` for an
    /// interactive flow.
    fn recv_batch_plain(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        use std::os::fd::AsRawFd;
        let capacity = batch.meta.capacity();
        if self.lone && capacity > 0 {
            let slot = batch.slot_size;
            return Ok(match self.recv_plain(&mut batch.data[..slot])? {
                Some(meta) => {
                    batch.meta.push(meta);
                    // The second in a row: datagrams are coming faster than one at a time.
                    // (After one, the next receive usually finds the queue empty, and an empty
                    // `recvfrom` costs the kernel less than an empty `recvmmsg`.)
                    self.lone_hits += 1;
                    if self.lone_hits >= 2 {
                        self.lone = false;
                        self.lone_hits = 0;
                    }
                    // More may have arrived behind it: the next wait must not sleep.
                    self.maybe_readable = true;
                    1
                }
                None => {
                    self.lone_hits = 0;
                    0
                }
            });
        }
        let received = recv_retrying(
            self.io.as_raw_fd(),
            &mut self.scratch,
            &mut self.stats,
            (&mut batch.data, batch.slot_size, capacity),
            &mut batch.meta,
            None,
        )?;
        for meta in &mut batch.meta {
            meta.from = unmap(meta.from);
            self.stats.bytes_received += meta.len as u64;
        }
        self.stats.datagrams_received += batch.meta.len() as u64;
        // A batch that did not fill up emptied the queue; the next arrival wakes the poll
        // again, so waiting is safe.
        self.maybe_readable = received.is_none_or(|n| n == capacity);
        self.lone = received.is_some_and(|n| n <= 1);
        Ok(received.unwrap_or(0))
    }
}

/// The most datagrams in a row in `received` from one sender.
#[cfg(target_os = "linux")]
fn longest_run(received: &[RecvMeta]) -> usize {
    let (mut longest, mut run) = (0, 0);
    let mut previous = None;
    for meta in received {
        run = if previous == Some(meta.from) { run + 1 } else { 1 };
        previous = Some(meta.from);
        longest = longest.max(run);
    }
    longest
}

/// One `recvmmsg` into `slots` slots of `slot_size` bytes of `data` (see `sys::recv_batch`),
/// skipping transient errors and retrying interrupted calls. `None` when too many transient
/// errors in a row left the queue unread.
#[cfg(target_os = "linux")]
fn recv_retrying(
    fd: std::os::fd::RawFd,
    scratch: &mut crate::sys::MmsgScratch,
    stats: &mut SocketStats,
    (data, slot_size, slots): (&mut [u8], usize, usize),
    meta: &mut Vec<RecvMeta>,
    mut segments: Option<&mut Vec<usize>>,
) -> Result<Option<usize>, SocketError> {
    for _ in 0..MAX_SKIPPED_ERRORS {
        match crate::sys::recv_batch(
            fd,
            scratch,
            data,
            slot_size,
            slots,
            meta,
            segments.as_deref_mut(),
        ) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => stats.interrupted += 1,
            Err(e) if is_transient(e.kind()) => {
                tracing::trace!(error = %e, "transient UDP receive error");
                stats.recv_errors += 1;
            }
            Err(e) => return Err(SocketError::io("recvmmsg", e)),
        }
    }
    Ok(None)
}

#[cfg(target_os = "linux")]
impl UdpSocket {
    /// [`Socket::recv_batch`] with UDP GRO: hands out what the queue holds, and refills it
    /// once (with up to a batch's worth of coalesced messages, whose leftovers wait for the
    /// next call) if it runs dry first.
    fn recv_batch_gro(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        let capacity = batch.meta.capacity();
        let slot = batch.slot_size;
        let mut refilled = !self.gro_pending() && self.lone && capacity > 0;
        if refilled {
            // An interactive flow: one message straight into the first slot.
            let Some(meta) = self.recv_lone_gro(&mut batch.data[..slot])? else { return Ok(0) };
            batch.meta.push(meta);
            // Something came: the next call reads a batch (more may be behind it).
            self.lone = false;
            self.maybe_readable = true;
        }
        loop {
            while batch.meta.len() < capacity {
                let start = batch.meta.len() * slot;
                let Some(meta) = self.pop_gro(&mut batch.data[start..start + slot]) else { break };
                batch.meta.push(meta);
            }
            if batch.meta.len() == capacity {
                // More may be queued here or in the kernel.
                self.maybe_readable = true;
                return Ok(capacity);
            }
            if refilled {
                return Ok(batch.meta.len());
            }
            let slots = if self.lone { 1 } else { capacity };
            let got = self.refill_gro(slots)?;
            // As without GRO: a lone receive that found something switches to batches; a
            // batch that found at most one datagram (a coalesced message counts its segments)
            // switches to lone receives.
            self.lone = if slots == 1 {
                got == 0
            } else {
                self.gro.as_ref().map_or(0, crate::gro::GroQueue::queued) <= 1
            };
            if got == 0 {
                return Ok(batch.meta.len());
            }
            refilled = true;
        }
    }
}

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local", &self.local)
            .field("buffers", &self.buffers)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io;
    use std::os::fd::AsRawFd;

    use super::{UdpConfig, UdpSocket, exceeds_link_mtu};
    use crate::{Outgoing, SendStatus, Socket};

    #[test]
    fn dont_fragment_sets_the_probe_mode_for_ipv4_and_dual_stack_sockets_and_off_leaves_it() {
        for addr in ["127.0.0.1:0", "[::]:0"] {
            let on = UdpSocket::bind(addr.parse().unwrap(), &UdpConfig::default()).unwrap();
            assert!(on.dont_fragment(), "{addr}");
            let mode = crate::sys::mtu_discover(on.io.as_raw_fd()).unwrap();
            assert_eq!(mode, libc::IP_PMTUDISC_PROBE, "{addr}");

            let config = UdpConfig { dont_fragment: false, ..UdpConfig::default() };
            let off = UdpSocket::bind(addr.parse().unwrap(), &config).unwrap();
            assert!(!off.dont_fragment(), "{addr}");
            let mode = crate::sys::mtu_discover(off.io.as_raw_fd()).unwrap();
            assert_ne!(mode, libc::IP_PMTUDISC_PROBE, "{addr}");
        }
    }

    /// IPv6 loopback's MTU (65,536) leaves 65,488 bytes of payload, under the protocol's
    /// 65,527: with don't-fragment a larger datagram is dropped and counted, singly and in a
    /// batch, and the socket goes on; without it the kernel fragments it and it arrives.
    #[test]
    fn a_datagram_over_the_link_mtu_is_dropped_and_counted_with_dont_fragment_and_sent_without() {
        let Ok(mut receiver) = UdpSocket::bind("[::1]:0".parse().unwrap(), &UdpConfig::default())
        else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let to = receiver.local_addr();
        let big = vec![7u8; 65_500];
        let mut buf = vec![0u8; 65_536];

        let mut on = UdpSocket::bind("[::1]:0".parse().unwrap(), &UdpConfig::default()).unwrap();
        assert_eq!(on.send_to(&big, to).unwrap(), SendStatus::Dropped);
        let batch = [Outgoing { payload: &big, to }, Outgoing { payload: &big, to }];
        assert_eq!(on.send_batch(&batch).unwrap(), 2, "both are done with");
        assert_eq!(on.stats().send_dropped, 3);
        assert_eq!(on.send_to(b"small", to).unwrap(), SendStatus::Sent);
        let _ = receiver.wait_readable(Some(std::time::Duration::from_secs(5))).unwrap();
        let got = receiver.recv_from(&mut buf).unwrap().expect("the small one arrives");
        assert_eq!(&buf[..got.len], b"small");

        let config = UdpConfig { dont_fragment: false, ..UdpConfig::default() };
        let mut off = UdpSocket::bind("[::1]:0".parse().unwrap(), &config).unwrap();
        assert_eq!(off.send_to(&big, to).unwrap(), SendStatus::Sent);
        let _ = receiver.wait_readable(Some(std::time::Duration::from_secs(5))).unwrap();
        let got = receiver.recv_from(&mut buf).unwrap().expect("the fragmented one arrives");
        assert_eq!(got.len, big.len());
        assert_eq!(off.stats().send_dropped, 0);
        assert!(exceeds_link_mtu(&io::Error::from_raw_os_error(libc::EMSGSIZE)));
    }
}

//! One real UDP socket that speaks for a crowd of loopback addresses (Linux).
//!
//! A server test or benchmark with tens of thousands of clients needs tens of thousands of
//! distinct peer addresses. A socket per client costs a file descriptor each (past the usual
//! limits) and a system call per datagram. Every address of `127.0.0.0/8` is local on Linux, so
//! one socket bound to the wildcard address can send *from* any of them (the source chosen per
//! datagram with `IP_PKTINFO`) and receive what is sent *to* any of them (the destination
//! reported with `IP_PKTINFO`), in batches of [`BATCH`] datagrams per system call
//! (`sendmmsg`/`recvmmsg`). Client `i` is `127.16.0.0 + i` at the socket's port, so the server
//! sees each client as its own host.
//!
//! The clients themselves are sans-IO endpoints driven by the test: [`CrowdSocket::queue`]
//! what they transmit, [`CrowdSocket::flush`], and [`CrowdSocket::recv`] hands each datagram
//! to the client it is addressed to.

#![allow(
    clippy::cast_possible_truncation,
    reason = "FFI: sizes of small C structs, and C constants, passed as the C types the calls take"
)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Datagrams per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;
/// The largest datagram the socket sends or receives whole (larger ones are dropped and
/// counted).
pub const MAX_DATAGRAM: usize = 2048;
/// The first client's address; client `i` is this plus `i`.
const BASE: u32 = u32::from_be_bytes([127, 16, 0, 0]);
/// Clients one socket can speak for: up to `127.255.255.254`.
pub const MAX_CLIENTS: u32 = u32::from_be_bytes([127, 255, 255, 254]) - BASE + 1;
/// The socket buffers asked for (forced past `rmem_max` where the process may).
const BUFFER_BYTES: libc::c_int = 32 * 1024 * 1024;
/// Room for one `IP_PKTINFO` control message.
const CMSG_ROOM: usize = 64;

/// Counters of a [`CrowdSocket`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrowdStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received for one of the crowd's addresses.
    pub received: u64,
    /// Datagrams that could not be sent (the send buffer stayed full, or an error).
    pub send_failed: u64,
    /// Datagrams received that were truncated, lacked their destination, or were addressed
    /// to no client of the crowd: dropped.
    pub recv_dropped: u64,
    /// Datagrams dropped before they were read because the receive queue was full (the
    /// kernel's `SO_RXQ_OVFL` count; a run that must be loss-free checks it is 0).
    pub queue_overflows: u64,
}

/// Aligned storage for control messages.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Cmsg([u8; CMSG_ROOM]);

/// The header arrays of one `sendmmsg` or `recvmmsg` call: per datagram its address, its
/// payload's vector and its control bytes. Headers point into the struct itself, so it stays
/// where it is between [`wire`](Self::wire) and the call.
struct Headers {
    names: [libc::sockaddr_in; BATCH],
    cmsgs: [Cmsg; BATCH],
    iovs: [libc::iovec; BATCH],
    msgs: [libc::mmsghdr; BATCH],
}

impl Headers {
    fn zeroed() -> Self {
        // SAFETY: every field is plain old data, for which all-zero is a valid value.
        unsafe { zeroed() }
    }

    /// Points header `i` at `payload`, its address slot and `control` bytes of its control
    /// slot (at most `CMSG_ROOM`); returns it.
    fn wire(&mut self, i: usize, payload: &mut [u8], control: usize) -> &mut libc::msghdr {
        self.iovs[i] =
            libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
        let hdr = &mut self.msgs[i].msg_hdr;
        hdr.msg_name = (&raw mut self.names[i]).cast();
        hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdr.msg_iov = &raw mut self.iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
        hdr.msg_controllen = control.min(CMSG_ROOM) as _;
        hdr
    }
}

/// One UDP socket sending from, and receiving for, many loopback addresses. See the
/// [module documentation](self).
pub struct CrowdSocket {
    fd: OwnedFd,
    port: u16,
    /// Datagrams queued for the next `sendmmsg`: payloads, lengths, sources and destinations.
    out: Vec<[u8; MAX_DATAGRAM]>,
    out_len: Vec<usize>,
    out_from: Vec<Ipv4Addr>,
    out_to: Vec<SocketAddrV4>,
    queued: usize,
    /// Receive buffers.
    inb: Vec<[u8; MAX_DATAGRAM]>,
    /// The datagrams of the last [`recv_batch`](CrowdSocket::recv_batch) that are for a
    /// client: (client index, sender, buffer in `inb`, length).
    received: Vec<(u32, SocketAddr, usize, usize)>,
    stats: CrowdStats,
}

impl std::fmt::Debug for CrowdSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrowdSocket")
            .field("port", &self.port)
            .field("queued", &self.queued)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn set_int(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: `value` is a live c_int and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr = libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() };
    sa
}

impl CrowdSocket {
    /// A nonblocking socket on the wildcard address and a free port, with `IP_PKTINFO` on and
    /// large buffers.
    pub fn bind() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor this function owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if !set_int(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, 1) {
            return Err(io::Error::last_os_error());
        }
        // Don't-fragment, as the library's sockets send by default (`UdpConfig::dont_fragment`):
        // the kernel then skips choosing an IP ID per datagram.
        let _ = set_int(raw, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE);
        // Count what the kernel drops for a full receive queue.
        let _ = set_int(raw, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
        for (force, plain) in
            [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
        {
            if !set_int(raw, libc::SOL_SOCKET, force, BUFFER_BYTES) {
                let _ = set_int(raw, libc::SOL_SOCKET, plain, BUFFER_BYTES);
            }
        }
        let any = sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        // SAFETY: `any` is a valid sockaddr_in of the length given.
        check(unsafe {
            libc::bind(
                raw,
                (&raw const any).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        })?;
        // SAFETY: zeroed sockaddr_in is valid; getsockname writes at most `len` bytes.
        let mut bound: libc::sockaddr_in = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `bound` and `len` are live and describe a buffer of `len` bytes.
        check(unsafe { libc::getsockname(raw, (&raw mut bound).cast(), &raw mut len) })?;
        Ok(Self {
            fd,
            port: u16::from_be(bound.sin_port),
            out: vec![[0; MAX_DATAGRAM]; BATCH],
            out_len: vec![0; BATCH],
            out_from: vec![Ipv4Addr::UNSPECIFIED; BATCH],
            out_to: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            queued: 0,
            inb: vec![[0; MAX_DATAGRAM]; BATCH],
            received: Vec::with_capacity(BATCH),
            stats: CrowdStats::default(),
        })
    }

    /// The port every client of the crowd uses.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Client `index`'s IP address (`None` past [`MAX_CLIENTS`]).
    pub fn ip_of(index: u32) -> Option<Ipv4Addr> {
        (index < MAX_CLIENTS).then(|| Ipv4Addr::from(BASE + index))
    }

    /// Which client an IP address is, if it is one.
    pub fn index_of(ip: Ipv4Addr) -> Option<u32> {
        u32::from(ip).checked_sub(BASE).filter(|&i| i < MAX_CLIENTS)
    }

    /// Client `index`'s full address, as the server sees it.
    pub fn addr_of(&self, index: u32) -> Option<SocketAddr> {
        Some(SocketAddr::V4(SocketAddrV4::new(Self::ip_of(index)?, self.port)))
    }

    /// The counters so far.
    pub fn stats(&self) -> CrowdStats {
        self.stats
    }

    /// A buffer to write client `index`'s next datagram to `to` into; [`commit`](Self::commit)
    /// it with the length written. Flushes first if the batch is full.
    pub fn next_buffer(&mut self) -> io::Result<&mut [u8; MAX_DATAGRAM]> {
        if self.queued == BATCH {
            self.flush()?;
        }
        Ok(&mut self.out[self.queued])
    }

    /// Queues the datagram written into [`next_buffer`](Self::next_buffer): `len` bytes from
    /// client `index` to `to` (IPv4). A datagram for a client past the crowd, for an IPv6
    /// destination, or longer than [`MAX_DATAGRAM`] is counted as failed.
    pub fn commit(&mut self, index: u32, to: SocketAddr, len: usize) {
        let (Some(from), SocketAddr::V4(to)) = (Self::ip_of(index), to) else {
            self.stats.send_failed += 1;
            return;
        };
        if len > MAX_DATAGRAM || self.queued == BATCH {
            self.stats.send_failed += 1;
            return;
        }
        self.out_len[self.queued] = len;
        self.out_from[self.queued] = from;
        self.out_to[self.queued] = to;
        self.queued += 1;
    }

    /// Queues a copy of `datagram` from client `index` to `to`.
    pub fn queue(&mut self, index: u32, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        let buf = self.next_buffer()?;
        let len = datagram.len().min(MAX_DATAGRAM);
        buf[..len].copy_from_slice(&datagram[..len]);
        self.commit(index, to, datagram.len());
        Ok(())
    }

    /// Sends everything queued. A full send buffer is waited out (up to a second in all);
    /// what still cannot go is counted in [`CrowdStats::send_failed`].
    pub fn flush(&mut self) -> io::Result<()> {
        let n = self.queued;
        if n == 0 {
            return Ok(());
        }
        let mut h = Headers::zeroed();
        let space = pktinfo_space();
        for i in 0..n {
            h.names[i] = sockaddr(self.out_to[i]);
            let hdr = h.wire(i, &mut self.out[i][..self.out_len[i]], space);
            // SAFETY: msg_control points to CMSG_ROOM aligned bytes, at least `space`, so the
            // first header and its data (an in_pktinfo) fit.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(hdr);
                (*cmsg).cmsg_level = libc::IPPROTO_IP;
                (*cmsg).cmsg_type = libc::IP_PKTINFO;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(self.out_from[i]).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast(), info);
            }
        }
        let mut done = 0;
        let mut skipped = 0;
        let mut waited = Duration::ZERO;
        while done < n {
            // SAFETY: h.msgs[done..n] are fully initialised headers whose pointers (into `h`
            // and self.out) stay alive and unmoved for the call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    h.msgs[done..n].as_mut_ptr(),
                    u32::try_from(n - done).unwrap_or(0),
                    0,
                )
            };
            if rc >= 0 {
                done += usize::try_from(rc).unwrap_or(0);
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock if waited < Duration::from_secs(1) => {
                    let _ = self.wait_for(libc::POLLOUT, Duration::from_millis(10))?;
                    waited += Duration::from_millis(10);
                }
                _ => {
                    // This datagram cannot go (a full buffer for too long, or an error for its
                    // destination): skip it, send the rest.
                    skipped += 1;
                    done += 1;
                }
            }
        }
        self.stats.sent += (n - skipped) as u64;
        self.stats.send_failed += skipped as u64;
        self.queued = 0;
        Ok(())
    }

    /// Reads one batch of waiting datagrams, handing each to `deliver(client index, sender,
    /// datagram)`; returns how many were read (0: none waiting).
    pub fn recv(
        &mut self,
        mut deliver: impl FnMut(u32, SocketAddr, &mut [u8]),
    ) -> io::Result<usize> {
        let read = self.recv_batch()?;
        for i in 0..self.received.len() {
            let (index, from, datagram) = self.received(i);
            deliver(index, from, datagram);
        }
        Ok(read)
    }

    /// How many datagrams of the last [`recv_batch`](Self::recv_batch) are for a client.
    pub fn received_len(&self) -> usize {
        self.received.len()
    }

    /// The client index the `i`-th datagram of the last batch is for (`i` below
    /// [`received_len`](Self::received_len)): to look ahead in the batch.
    pub fn received_index(&self, i: usize) -> u32 {
        self.received[i].0
    }

    /// The `i`-th datagram of the last batch for a client: (client index, sender, datagram).
    pub fn received(&mut self, i: usize) -> (u32, SocketAddr, &mut [u8]) {
        let (index, from, buf, len) = self.received[i];
        (index, from, &mut self.inb[buf][..len])
    }

    /// Reads one batch of waiting datagrams and keeps those for a client, to be taken with
    /// [`received`](Self::received) (in arrival order) until the next read; returns how many
    /// were read (0: none waiting).
    pub fn recv_batch(&mut self) -> io::Result<usize> {
        self.received.clear();
        let mut h = Headers::zeroed();
        for (i, buf) in self.inb.iter_mut().enumerate() {
            let _ = h.wire(i, buf, CMSG_ROOM);
        }
        let rc = loop {
            // SAFETY: every header points at live buffers of the sizes given, unmoved for the
            // call; a null timeout makes recvmmsg return what is waiting (MSG_DONTWAIT).
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    h.msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                break usize::try_from(rc).unwrap_or(0);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(0),
                // An ICMP error queued for an earlier send: skip it.
                io::ErrorKind::ConnectionRefused => {}
                _ => return Err(err),
            }
        };
        for i in 0..rc {
            let hdr = &mut h.msgs[i].msg_hdr;
            let mut to = None;
            // SAFETY: the kernel filled msg_control up to msg_controllen; the CMSG macros walk
            // within it, and the data of an IP_PKTINFO message is an in_pktinfo (read
            // unaligned). SO_RXQ_OVFL's data is a u32 drop count.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::IPPROTO_IP
                        && (*cmsg).cmsg_type == libc::IP_PKTINFO
                    {
                        let info: libc::in_pktinfo =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        to = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                    } else if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL
                    {
                        let dropped: u32 = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                        self.stats.queue_overflows = u64::from(dropped);
                    }
                    cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
                }
            }
            let len = h.msgs[i].msg_len as usize;
            let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
            let from = SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(h.names[i].sin_addr.s_addr)),
                u16::from_be(h.names[i].sin_port),
            ));
            match to.and_then(Self::index_of) {
                Some(index) if !truncated && len <= MAX_DATAGRAM => {
                    self.stats.received += 1;
                    self.received.push((index, from, i, len));
                }
                _ => self.stats.recv_dropped += 1,
            }
        }
        Ok(rc)
    }

    /// Waits until a datagram can be read, at most `timeout`; returns whether one can.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        self.wait_for(libc::POLLIN, timeout)
    }

    fn wait_for(&self, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis().max(u128::from(!timeout.is_zero())))
            .unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
            if rc >= 0 {
                return Ok(rc > 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// `CMSG_SPACE` of one `in_pktinfo`.
fn pktinfo_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_both_ways() {
        assert_eq!(CrowdSocket::ip_of(0), Some(Ipv4Addr::new(127, 16, 0, 0)));
        assert_eq!(CrowdSocket::ip_of(65_537), Some(Ipv4Addr::new(127, 17, 0, 1)));
        assert_eq!(CrowdSocket::index_of(Ipv4Addr::new(127, 17, 0, 1)), Some(65_537));
        assert_eq!(CrowdSocket::index_of(Ipv4Addr::LOCALHOST), None);
        assert_eq!(CrowdSocket::ip_of(MAX_CLIENTS), None);
        assert_eq!(CrowdSocket::ip_of(MAX_CLIENTS - 1), Some(Ipv4Addr::new(127, 255, 255, 254)));
    }

    /// Two crowds talk: each datagram leaves from the client it was queued for and arrives
    /// for the client it was sent to.
    #[test]
    fn datagrams_carry_their_client_addresses() {
        let mut a = CrowdSocket::bind().unwrap();
        let mut b = CrowdSocket::bind().unwrap();
        for i in 0..200u32 {
            let to = b.addr_of(1000 + i).unwrap();
            a.queue(i, to, &i.to_le_bytes()).unwrap();
        }
        a.flush().unwrap();
        let mut got = Vec::new();
        while got.len() < 200 {
            assert!(b.wait(Duration::from_secs(5)).unwrap(), "nothing arrived");
            let _ = b
                .recv(|index, from, data| {
                    got.push((index, from, u32::from_le_bytes(data.try_into().unwrap())));
                })
                .unwrap();
        }
        for (index, from, payload) in got {
            assert_eq!(index, 1000 + payload, "delivered to the addressee");
            assert_eq!(from, a.addr_of(payload).unwrap(), "sent from the client it was queued for");
        }
        assert_eq!((a.stats().sent, b.stats().received, b.stats().recv_dropped), (200, 200, 0));
    }
}

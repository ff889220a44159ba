//! Batched datagram I/O on Linux: `recvmmsg` and `sendmmsg` move many datagrams per system call.
//! The only unsafe code of the crate lives here, one `SAFETY` comment per block.
//!
//! The header arrays the kernel reads and writes are kept in [`MmsgScratch`] and reused, so a
//! batch allocates nothing once the scratch has grown to the batch size.
#![allow(
    unsafe_code,
    reason = "the system calls take raw pointers; each block says why it is sound"
)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use socket2::SockAddr;

use crate::socket::{Outgoing, RecvMeta};

/// Reused header arrays for one socket's batched calls: one set for receiving, one for sending.
pub(crate) struct MmsgScratch {
    recv_headers: Vec<libc::mmsghdr>,
    recv_iovecs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    /// Control buffers for the receive headers (the `UDP_GRO` segment size), when asked for.
    recv_cmsgs: Vec<SegmentCmsg>,
    /// The receive buffer the receive headers point into (address, slot size, whether control
    /// buffers are attached): a repeated receive into the same buffer reuses the headers.
    recv_layout: Option<(usize, usize, bool)>,
    /// How many receive headers point into `recv_layout`'s buffer.
    recv_prepared: usize,
    /// How many receive headers, from the first, the kernel may have written to since they
    /// were last reset: the datagrams of the last call and the one after them.
    recv_dirty: usize,
    send_headers: Vec<libc::mmsghdr>,
    send_iovecs: Vec<libc::iovec>,
    destinations: Vec<SockAddr>,
    /// Runs of the batch being sent: (first datagram, datagrams).
    runs: Vec<(usize, usize)>,
    cmsgs: Vec<SegmentCmsg>,
}

// SAFETY: the raw pointers inside the headers point only into the scratch itself or into
// buffers borrowed for one call; they are re-derived whenever those may have moved, and the
// scratch shares nothing with another thread.
unsafe impl Send for MmsgScratch {}

impl MmsgScratch {
    pub(crate) fn new() -> Self {
        Self {
            recv_headers: Vec::new(),
            recv_iovecs: Vec::new(),
            names: Vec::new(),
            recv_cmsgs: Vec::new(),
            recv_layout: None,
            recv_prepared: 0,
            recv_dirty: 0,
            send_headers: Vec::new(),
            send_iovecs: Vec::new(),
            destinations: Vec::new(),
            runs: Vec::new(),
            cmsgs: Vec::new(),
        }
    }
}

/// C structs for which all zero bytes are a valid (empty) value.
///
/// # Safety
///
/// An implementor must be plain data: no references, no non-nullable pointers, no enums or
/// other types with invalid bit patterns, so that [`mem::zeroed`] makes a valid value.
unsafe trait Zeroable: Sized {
    fn zeroed() -> Self {
        // SAFETY: the trait's contract: all zero bytes are a valid value of `Self`.
        unsafe { mem::zeroed() }
    }
}

// SAFETY: integers, raw pointers (null is valid for a raw pointer) and a nested `iovec`.
unsafe impl Zeroable for libc::mmsghdr {}
// SAFETY: a raw pointer (null) and a length.
unsafe impl Zeroable for libc::iovec {}
// SAFETY: integers and byte padding only.
unsafe impl Zeroable for libc::sockaddr_storage {}
// SAFETY: integers and raw pointers, like `mmsghdr`'s `msg_hdr`.
unsafe impl Zeroable for libc::msghdr {}

/// Grows `v` to `n` zeroed entries (never shrinks). Only for [`Zeroable`] types, so it is sound
/// whatever `T` a caller picks.
fn grow_zeroed<T: Zeroable>(v: &mut Vec<T>, n: usize) {
    while v.len() < n {
        v.push(T::zeroed());
    }
}

impl std::fmt::Debug for MmsgScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgScratch")
            .field("recv_capacity", &self.recv_headers.len())
            .field("send_capacity", &self.send_headers.len())
            .finish()
    }
}

/// Receives up to `slots` datagrams, each into its own `slot_size` part of `data`, without
/// blocking. Returns how many arrived (their metadata appended to `meta`); `Ok(0)` when none
/// were waiting.
///
/// With `segments`, the socket has `UDP_GRO` on: a slot may hold several datagrams of one
/// sender coalesced by the kernel, all of the segment size pushed for it (the last may be
/// shorter); a slot holding one datagram gets its own length.
pub(crate) fn recv_batch(
    fd: RawFd,
    scratch: &mut MmsgScratch,
    data: &mut [u8],
    slot_size: usize,
    slots: usize,
    meta: &mut Vec<RecvMeta>,
    mut segments: Option<&mut Vec<usize>>,
) -> io::Result<usize> {
    let slots = slots.min(data.len() / slot_size.max(1));
    if slots == 0 {
        return Ok(0);
    }
    let base = data.as_mut_ptr();
    let control = segments.is_some();
    // SAFETY: CMSG_SPACE only computes a size.
    let control_len = if control { (unsafe { libc::CMSG_SPACE(4) }) as usize } else { 0 };
    let layout = (base as usize, slot_size, control);
    if scratch.recv_layout != Some(layout) {
        scratch.recv_layout = Some(layout);
        scratch.recv_prepared = 0;
        scratch.recv_dirty = 0;
    }
    // Only what the kernel wrote since the last call needs resetting: an empty poll resets
    // nothing, and switching between a single slot and a whole batch re-derives no pointers.
    for header in &mut scratch.recv_headers[..scratch.recv_dirty] {
        header.msg_hdr.msg_namelen = socklen(size_of::<libc::sockaddr_storage>());
        header.msg_hdr.msg_controllen = control_len;
        header.msg_hdr.msg_flags = 0;
        header.msg_len = 0;
    }
    scratch.recv_dirty = 0;
    if scratch.recv_prepared < slots {
        grow_zeroed(&mut scratch.recv_headers, slots);
        grow_zeroed(&mut scratch.recv_iovecs, slots);
        grow_zeroed(&mut scratch.names, slots);
        if control && scratch.recv_cmsgs.len() < slots {
            scratch.recv_cmsgs.resize(slots, SegmentCmsg::default());
        }
        // Growing may have moved the arrays: point every header again.
        for i in 0..slots {
            // SAFETY: `i * slot_size + slot_size <= data.len()` (slots was capped above), so
            // the offset stays inside `data`.
            let slot = unsafe { base.add(i * slot_size) };
            scratch.recv_iovecs[i] = libc::iovec { iov_base: slot.cast(), iov_len: slot_size };
            let header = &mut scratch.recv_headers[i];
            header.msg_hdr.msg_name = (&raw mut scratch.names[i]).cast();
            header.msg_hdr.msg_namelen = socklen(size_of::<libc::sockaddr_storage>());
            header.msg_hdr.msg_iov = &raw mut scratch.recv_iovecs[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = if control {
                (&raw mut scratch.recv_cmsgs[i]).cast()
            } else {
                std::ptr::null_mut()
            };
            header.msg_hdr.msg_controllen = control_len;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // The arrays only grow here, so the pointers set stay valid until the layout changes
        // or a larger batch grows them again (which comes back here).
        scratch.recv_prepared = slots;
    }
    let vlen = u32::try_from(slots).unwrap_or(u32::MAX);
    // SAFETY: the first `slots` headers each point to one iovec over a distinct, writable
    // `slot_size` region of `data`, to a writable sockaddr_storage with its size and, with
    // `control`, to a writable 32-byte control buffer with a smaller length; all of them
    // outlive the call, and the kernel writes no further than those lengths.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            scratch.recv_headers.as_mut_ptr(),
            vlen,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        // A failed first receive may have written its header before failing.
        scratch.recv_dirty = 1;
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(0) } else { Err(e) };
    }
    let n = usize::try_from(n).expect("a non-negative count");
    // The kernel wrote the headers of the datagrams it returned, and may have written the next
    // one's before the receive that stopped the batch failed.
    scratch.recv_dirty = (n + 1).min(slots);
    for i in 0..n {
        let header = &scratch.recv_headers[i];
        let len = usize::try_from(header.msg_len).expect("u32 fits in usize").min(slot_size);
        // A datagram whose sender cannot be decoded (not IPv4 or IPv6) is reported from the
        // unspecified address; no peer can be at it, so the layers above drop it.
        let from = to_socket_addr(&scratch.names[i], header.msg_hdr.msg_namelen)
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        meta.push(RecvMeta { len, from });
        if let Some(segments) = segments.as_deref_mut() {
            segments.push(gro_segment(&header.msg_hdr).unwrap_or(len));
        }
    }
    Ok(n)
}

/// One message from a socket with `UDP_GRO` on: `recvmsg` (one call, no batch set-up) into
/// `first` and, for what does not fit there, `rest`. A lone datagram that fits lands in `first`
/// and needs no copy; a coalesced message continues into `rest`. Returns the message's length
/// (at most `first.len() + rest.len()`), its sender, and its segment size if the kernel
/// coalesced several datagrams into it; `Ok(None)` when none was waiting.
pub(crate) fn recv_gro_one(
    fd: RawFd,
    first: &mut [u8],
    rest: &mut [u8],
) -> io::Result<Option<(usize, SocketAddr, Option<usize>)>> {
    let mut iovecs = [
        libc::iovec { iov_base: first.as_mut_ptr().cast(), iov_len: first.len() },
        libc::iovec { iov_base: rest.as_mut_ptr().cast(), iov_len: rest.len() },
    ];
    let mut name = libc::sockaddr_storage::zeroed();
    let mut control = SegmentCmsg::default();
    let mut header = libc::msghdr::zeroed();
    header.msg_name = (&raw mut name).cast();
    header.msg_namelen = socklen(size_of::<libc::sockaddr_storage>());
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = 2;
    header.msg_control = (&raw mut control).cast();
    // SAFETY: CMSG_SPACE only computes a size.
    header.msg_controllen = (unsafe { libc::CMSG_SPACE(4) }) as usize;
    // SAFETY: the header points to two iovecs over the writable `first` and `rest`, to a
    // writable sockaddr_storage with its size and to a 32-byte control buffer with a smaller
    // length, all of which outlive the call; the kernel writes no further than those lengths.
    let n = unsafe { libc::recvmsg(fd, &raw mut header, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    let len = usize::try_from(n).expect("a non-negative length").min(first.len() + rest.len());
    let from = to_socket_addr(&name, header.msg_namelen)
        .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let segment = gro_segment(&header).filter(|&segment| segment < len);
    Ok(Some((len, from, segment)))
}

/// The `UDP_GRO` segment size the kernel attached to a received message, if any.
fn gro_segment(header: &libc::msghdr) -> Option<usize> {
    // SAFETY: `header` was just filled in by recvmmsg, so its control pointer and length
    // describe the cmsgs the kernel wrote into our buffer; CMSG_FIRSTHDR and CMSG_NXTHDR stay
    // within that length, and a UDP_GRO cmsg carries a 4-byte int, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|&s| s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

/// `UDP_GRO` (Linux 5.0+): the socket option (and cmsg) of generic receive offload, with which
/// the kernel hands over several datagrams of one sender in one receive.
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to coalesce datagrams on receive (UDP GRO); an error means it cannot.
pub(crate) fn enable_gro(fd: RawFd) -> io::Result<()> {
    set_gro(fd, true)
}

/// Turns UDP GRO on or off. Off, the kernel splits what reaches the socket coalesced (a
/// segmented send over loopback) into single datagrams again; messages it queued coalesced
/// before stay coalesced.
pub(crate) fn set_gro(fd: RawFd, on: bool) -> io::Result<()> {
    set_int_option(fd, libc::SOL_UDP, UDP_GRO, libc::c_int::from(on))
}

/// `setsockopt` of an option whose value is a C `int`.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            socklen(size_of::<libc::c_int>()),
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Sets the don't-fragment bit on every datagram this socket sends and keeps the kernel from
/// fragmenting them (`IP_PMTUDISC_PROBE`: DF set, path-MTU cache ignored), for IPv4 and, on an
/// IPv6 socket, for IPv6 too (a dual-stack socket sends IPv4 with the IPv4 setting). A datagram
/// larger than the interface's MTU is then refused (`EMSGSIZE`) rather than fragmented.
pub(crate) fn set_dont_fragment(fd: RawFd, ipv6: bool) -> io::Result<()> {
    let v4 = set_int_option(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE);
    if !ipv6 {
        return v4;
    }
    // An IPv6 socket's own setting decides: where the IPv4 one failed, only the IPv4 peers of
    // a dual-stack socket keep the kernel's default.
    set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
}

/// The socket's `IP_MTU_DISCOVER` mode (what [`set_dont_fragment`] sets), for tests.
#[cfg(test)]
pub(crate) fn mtu_discover(fd: RawFd) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = socklen(size_of::<libc::c_int>());
    // SAFETY: `value` and `len` are live and describe a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc == 0 { Ok(value) } else { Err(io::Error::last_os_error()) }
}

/// Sets a buffer size past `net.core.rmem_max` / `wmem_max` with `SO_RCVBUFFORCE` or
/// `SO_SNDBUFFORCE` (`receive` picks which), as a process with `CAP_NET_ADMIN` may. Fails
/// (`EPERM`) for one without.
pub(crate) fn force_buffer_size(fd: RawFd, receive: bool, size: usize) -> io::Result<()> {
    let name = if receive { libc::SO_RCVBUFFORCE } else { libc::SO_SNDBUFFORCE };
    // The kernel doubles the value for its bookkeeping and reports the doubled size back:
    // ask for half, so the grant (as getsockopt reports it) is `size`.
    let value = libc::c_int::try_from(size / 2).unwrap_or(libc::c_int::MAX);
    set_int_option(fd, libc::SOL_SOCKET, name, value)
}

/// Datagrams the kernel dropped for this socket, its receive queue being full (or the like):
/// `SK_MEMINFO_DROPS` of `SO_MEMINFO` (Linux 4.x+).
pub(crate) fn socket_drops(fd: RawFd) -> io::Result<u64> {
    /// `SK_MEMINFO_DROPS`, the ninth of the `SK_MEMINFO_*` values.
    const DROPS: usize = 8;
    let mut info = [0u32; 16];
    let mut len = socklen(size_of::<[u32; 16]>());
    // SAFETY: `info` and `len` are live; the kernel writes at most `len` bytes and updates it.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < (DROPS + 1) * size_of::<u32>() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "SO_MEMINFO without drops"));
    }
    Ok(u64::from(info[DROPS]))
}

/// `UDP_SEGMENT` (Linux 4.18+): the cmsg that asks the kernel to split one send into datagrams
/// of the given size (generic segmentation offload). Not in the `libc` crate for glibc targets.
const UDP_SEGMENT: libc::c_int = 103;
/// The most datagrams one segmented send may carry (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// The most payload bytes one segmented send may carry.
const MAX_SEGMENTED_BYTES: usize = 65_000;
/// The fewest datagrams worth a segmented send. Segmentation pays off on bulk runs; a server
/// answering many peers sends runs of one or two (a reply and an ack), and measured with
/// 32,000 clients, segmenting those lost echoes to receive-buffer overflows that plain sends
/// did not (`benches/README.md`).
const MIN_SEGMENTED_RUN: usize = 4;

/// A cmsg buffer for one `UDP_SEGMENT` option, aligned for `cmsghdr`.
#[derive(Clone, Copy, Default)]
#[repr(C, align(8))]
struct SegmentCmsg([u8; 32]);

/// How many datagrams from `start` one segmented send could carry: the same destination, equal
/// sizes, the last possibly shorter.
fn run_len(batch: &[Outgoing<'_>], start: usize) -> usize {
    let size = batch[start].payload.len();
    let (mut count, mut total) = (1, size);
    if size == 0 {
        return 1;
    }
    while let Some(next) = batch.get(start + count) {
        let len = next.payload.len();
        if next.to != batch[start].to
            || len > size
            || len == 0
            || count == MAX_SEGMENTS
            || total + len > MAX_SEGMENTED_BYTES
        {
            break;
        }
        count += 1;
        total += len;
        if len < size {
            break; // a shorter datagram ends its run
        }
    }
    count
}

/// Whether `batch` starts with a run that goes out as one segmented send.
pub(crate) fn starts_segmented_run(batch: &[Outgoing<'_>]) -> bool {
    !batch.is_empty() && run_len(batch, 0) >= MIN_SEGMENTED_RUN
}

/// Splits `batch` into runs that one segmented send will carry, of at least
/// [`MIN_SEGMENTED_RUN`] datagrams. Without `gso` every datagram is a run of its own.
fn plan_runs(batch: &[Outgoing<'_>], gso: bool, runs: &mut Vec<(usize, usize)>) {
    runs.clear();
    let mut start = 0;
    while start < batch.len() {
        let count = if gso { run_len(batch, start) } else { 1 };
        if count < MIN_SEGMENTED_RUN {
            runs.extend((start..start + count).map(|i| (i, 1)));
        } else {
            runs.push((start, count));
        }
        start += count;
    }
}

/// Sends `batch` without blocking, each datagram to `destination(to)`. With `gso`, runs of
/// equal-sized datagrams to one destination go out as one segmented send each (UDP GSO), so a
/// bulk transfer costs one system call per 64 datagrams and the kernel walks its stack once per
/// run. Returns how many datagrams left; fewer than `batch.len()` when the send buffer filled
/// (or an error stopped a send after the first, which the next call reports). An error means
/// the first datagram was not sent.
pub(crate) fn send_batch(
    fd: RawFd,
    scratch: &mut MmsgScratch,
    batch: &[Outgoing<'_>],
    mut destination: impl FnMut(SocketAddr) -> SocketAddr,
    gso: bool,
) -> io::Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    plan_runs(batch, gso, &mut scratch.runs);
    let runs = scratch.runs.len();
    grow_zeroed(&mut scratch.send_headers, runs);
    grow_zeroed(&mut scratch.send_iovecs, batch.len());
    if scratch.cmsgs.len() < runs {
        scratch.cmsgs.resize(runs, SegmentCmsg::default());
    }
    for (i, datagram) in batch.iter().enumerate() {
        // The kernel only reads through `iov_base` for a send.
        scratch.send_iovecs[i] = libc::iovec {
            iov_base: datagram.payload.as_ptr().cast_mut().cast(),
            iov_len: datagram.payload.len(),
        };
    }
    scratch.destinations.clear();
    scratch.destinations.extend(
        scratch.runs.iter().map(|&(start, _)| SockAddr::from(destination(batch[start].to))),
    );
    for (r, &(start, count)) in scratch.runs.iter().enumerate() {
        let header = &mut scratch.send_headers[r];
        header.msg_hdr.msg_name = scratch.destinations[r].as_ptr().cast_mut().cast();
        header.msg_hdr.msg_namelen = scratch.destinations[r].len();
        header.msg_hdr.msg_iov = &raw mut scratch.send_iovecs[start];
        header.msg_hdr.msg_iovlen = count;
        header.msg_hdr.msg_control = std::ptr::null_mut();
        header.msg_hdr.msg_controllen = 0;
        header.msg_hdr.msg_flags = 0;
        header.msg_len = 0;
        if count > 1 {
            let segment = u16::try_from(batch[start].payload.len()).expect("runs stay under 64 KB");
            let cmsg_buf = &raw mut scratch.cmsgs[r];
            header.msg_hdr.msg_control = cmsg_buf.cast();
            // SAFETY: CMSG_SPACE only computes a size.
            header.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as usize;
            // SAFETY: the header's control buffer is a 32-byte, 8-aligned `SegmentCmsg`, larger
            // than CMSG_SPACE(2), so CMSG_FIRSTHDR returns a pointer to its start, and the cmsg
            // header and its 2 data bytes written through it stay inside the buffer.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&raw const header.msg_hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(2) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
            }
        }
    }
    let vlen = u32::try_from(runs).unwrap_or(u32::MAX);
    // SAFETY: the first `runs` headers each point to their run's iovecs (payloads borrowed for
    // this call), a socket address with its length, and for runs of several datagrams a
    // well-formed UDP_SEGMENT cmsg, all alive until the call returns; sendmmsg only reads them.
    let n =
        unsafe { libc::sendmmsg(fd, scratch.send_headers.as_mut_ptr(), vlen, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let sent_runs = usize::try_from(n).expect("a non-negative count");
    Ok(scratch.runs[..sent_runs].iter().map(|&(_, count)| count).sum())
}

fn socklen(n: usize) -> libc::socklen_t {
    libc::socklen_t::try_from(n).expect("a sockaddr size fits in socklen_t")
}

/// Decodes an IPv4 or IPv6 socket address written by the kernel.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in (and has
            // no stricter alignment than) sockaddr_storage.
            let sin = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

//! The client side of the single-connection workloads (throughput, latency, large) over either
//! stack, through the [`Link`] trait.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_socket::{SendStatus, Socket, SocketFactory, UdpSocket};
use sturnus_transport::{ChannelId, ConnectionId, Host, HostEvent, Qos, SendError};

use crate::report::{Record, percentile};
use crate::wire::{self, Control, Report};
use crate::{
    BenchResult, CONTROL_CHANNEL, Spec, bench_config, channel_of, now, probe, raw_factory,
    udp_factory,
};

/// How long a client waits for the server's answer to a control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the raw-UDP client repeats an unanswered control request.
const RAW_CONTROL_RETRY: Duration = Duration::from_millis(50);
/// A ping not echoed within this is counted as lost (only the raw-UDP baseline loses them).
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// One client connection of either stack.
pub(crate) trait Link {
    /// Sends (or queues) one message; `false` when flow control refuses it for now.
    fn try_send(&mut self, msg: &[u8]) -> BenchResult<bool>;
    /// Does the I/O that is due and hands each data message that arrived to `on_data`.
    fn drive(&mut self, on_data: &mut dyn FnMut(&[u8])) -> BenchResult<()>;
    /// Sleeps until something may have arrived, at most `max`.
    fn wait(&mut self, max: Duration) -> BenchResult<()>;
    /// Sends a control message: reliably where the stack can (then `true`); a plain datagram
    /// otherwise (`false`: resend it until answered).
    fn send_control(&mut self, msg: &[u8]) -> BenchResult<bool>;
    /// The last control answer received, if not yet taken.
    fn take_reply(&mut self) -> Option<Report>;
    /// Bytes this client's socket has sent.
    fn bytes_sent(&self) -> u64;
}

/// A Sturnus connection through a [`Host`].
pub(crate) struct SturnusLink {
    host: Host<UdpSocket>,
    conn: ConnectionId,
    channel: ChannelId,
    reply: Option<Report>,
}

impl SturnusLink {
    pub(crate) fn connect(server: SocketAddr, qos: Qos) -> BenchResult<Self> {
        let (host, conn) = Host::connect_to(bench_config(), &udp_factory(), server)?;
        let mut link = Self { host, conn, channel: channel_of(qos), reply: None };
        let deadline = now() + CONTROL_TIMEOUT;
        loop {
            match link.host.receive()? {
                HostEvent::Connect(_) => return Ok(link),
                HostEvent::Disconnect(_, reason) => {
                    return Err(format!("could not connect to {server}: {reason:?}").into());
                }
                HostEvent::Nothing if now() > deadline => {
                    return Err(format!("no answer from {server}").into());
                }
                HostEvent::Nothing => link.host.wait(Some(Duration::from_millis(5)))?,
                _ => {}
            }
        }
    }
}

fn is_reply(msg: &[u8]) -> bool {
    matches!(msg.first(), Some(&(wire::STARTED | wire::REPORT)))
}

impl Link for SturnusLink {
    fn try_send(&mut self, msg: &[u8]) -> BenchResult<bool> {
        match self.host.send(self.conn, self.channel, msg) {
            Ok(()) => Ok(true),
            Err(SendError::QueueFull { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn drive(&mut self, on_data: &mut dyn FnMut(&[u8])) -> BenchResult<()> {
        loop {
            match self.host.receive()? {
                HostEvent::Data { payload, .. } if is_reply(payload) => {
                    self.reply = Report::decode(payload);
                }
                HostEvent::Data { payload, .. } => on_data(payload),
                HostEvent::Disconnect(_, reason) => {
                    return Err(format!("connection lost: {reason:?}").into());
                }
                HostEvent::Nothing => return Ok(()),
                _ => {}
            }
        }
    }

    fn wait(&mut self, max: Duration) -> BenchResult<()> {
        Ok(self.host.wait(Some(max))?)
    }

    fn send_control(&mut self, msg: &[u8]) -> BenchResult<bool> {
        while !matches!(self.host.send(self.conn, CONTROL_CHANNEL, msg), Ok(())) {
            self.drive(&mut |_| {})?;
        }
        Ok(true)
    }

    fn take_reply(&mut self) -> Option<Report> {
        self.reply.take()
    }

    fn bytes_sent(&self) -> u64 {
        self.host.socket().stats().bytes_sent
    }
}

/// The baseline: plain UDP datagrams, one message each.
pub(crate) struct RawLink {
    socket: UdpSocket,
    server: SocketAddr,
    buf: Vec<u8>,
    reply: Option<Report>,
}

impl RawLink {
    pub(crate) fn connect(server: SocketAddr) -> BenchResult<Self> {
        let socket = raw_factory().client_socket(server)?;
        Ok(Self { socket, server, buf: vec![0; 65_536], reply: None })
    }
}

impl Link for RawLink {
    fn try_send(&mut self, msg: &[u8]) -> BenchResult<bool> {
        Ok(self.socket.send_to(msg, self.server)? != SendStatus::WouldBlock)
    }

    fn drive(&mut self, on_data: &mut dyn FnMut(&[u8])) -> BenchResult<()> {
        while let Some(meta) = self.socket.recv_from(&mut self.buf)? {
            let msg = &self.buf[..meta.len];
            if is_reply(msg) {
                self.reply = Report::decode(msg);
            } else {
                on_data(msg);
            }
        }
        Ok(())
    }

    fn wait(&mut self, max: Duration) -> BenchResult<()> {
        self.socket.wait_readable(Some(max))?;
        Ok(())
    }

    fn send_control(&mut self, msg: &[u8]) -> BenchResult<bool> {
        let _ = self.socket.send_to(msg, self.server)?;
        Ok(false)
    }

    fn take_reply(&mut self) -> Option<Report> {
        self.reply.take()
    }

    fn bytes_sent(&self) -> u64 {
        self.socket.stats().bytes_sent
    }
}

/// Sends a control request and waits for the answer tagged `reply` of the same run (resending
/// the request where the link cannot send it reliably).
pub(crate) fn request(link: &mut dyn Link, control: Control, reply: u8) -> BenchResult<Report> {
    let msg = control.encode();
    let deadline = now() + CONTROL_TIMEOUT;
    let mut resend_at = None;
    loop {
        if resend_at.is_none_or(|at| now() >= at) {
            let reliable = link.send_control(&msg)?;
            resend_at = if reliable { Some(deadline) } else { Some(now() + RAW_CONTROL_RETRY) };
        }
        link.drive(&mut |_| {})?;
        if let Some(r) = link.take_reply().filter(|r| r.tag == reply && r.run == control.run) {
            return Ok(r);
        }
        if now() > deadline {
            return Err("the server did not answer".into());
        }
        link.wait(Duration::from_millis(1))?;
    }
}

fn start(link: &mut dyn Link, run: u32, busy_poll: bool) -> BenchResult<Report> {
    let control = Control { tag: wire::START, run, busy_poll, expected: 0, reliable: false };
    request(link, control, wire::STARTED)
}

fn finish(
    link: &mut dyn Link,
    run: u32,
    expected: u64,
    qos: Qos,
    raw: bool,
) -> BenchResult<Report> {
    // Only the newest state of a state-update channel is promised, so not every message.
    let reliable = !raw && qos.is_reliable() && !qos.is_state_update();
    let control = Control { tag: wire::DONE, run, busy_poll: false, expected, reliable };
    request(link, control, wire::REPORT)
}

/// Sends `messages` data messages of `size` bytes as fast as flow control allows.
pub(crate) fn throughput(link: &mut dyn Link, spec: &Spec, run: u32) -> BenchResult<Record> {
    let raw = spec.raw;
    let _ = start(link, run, false)?;
    let mut msg = vec![0u8; spec.size];
    let bytes_before = link.bytes_sent();
    let allocations_before = probe::allocations();
    for seq in 0..spec.messages {
        wire::write_data(&mut msg, wire::DATA, seq);
        while !link.try_send(&msg)? {
            link.drive(&mut |_| {})?;
        }
        // Let acknowledgements in now and then, so the window never runs dry while we queue.
        if seq % 256 == 255 {
            link.drive(&mut |_| {})?;
        }
    }
    link.drive(&mut |_| {})?;
    let client_allocations = probe::allocations() - allocations_before;
    let report = finish(link, run, spec.messages, spec.qos, raw)?;
    let mut record = Record::new(spec);
    record.messages_sent = spec.messages;
    record.fill_from_report(&report);
    record.wire_bytes_per_msg =
        Some((link.bytes_sent() - bytes_before + report.bytes_sent) as f64 / spec.messages as f64);
    record.alloc_per_msg =
        Some((client_allocations + report.allocations) as f64 / spec.messages as f64);
    Ok(record)
}

/// Ping-pong: one message echoed at a time; round-trip times from send to echo.
pub(crate) fn latency(link: &mut dyn Link, spec: &Spec, run: u32) -> BenchResult<Record> {
    let _ = start(link, run, true)?;
    let warmup = (spec.messages / 10).min(1000);
    let total = warmup + spec.messages;
    let mut msg = vec![0u8; spec.size];
    let mut rtts = Vec::with_capacity(usize::try_from(spec.messages).unwrap_or(0));
    let mut lost = 0u64;
    let bytes_before = link.bytes_sent();
    let allocations_before = probe::allocations();
    for seq in 0..total {
        wire::write_data(&mut msg, wire::ECHO, seq);
        let sent_at = now();
        while !link.try_send(&msg)? {
            link.drive(&mut |_| {})?;
        }
        let mut echoed: Option<Instant> = None;
        loop {
            link.drive(&mut |m| {
                if wire::read_data(m).is_some_and(|(_, s)| s == seq) {
                    echoed = Some(now());
                }
            })?;
            if echoed.is_some() {
                break;
            }
            if now() - sent_at > PING_TIMEOUT {
                lost += 1;
                break;
            }
        }
        if let (Some(at), true) = (echoed, seq >= warmup) {
            rtts.push(at - sent_at);
        }
    }
    let client_allocations = probe::allocations() - allocations_before;
    let report = finish(link, run, total, spec.qos, spec.raw)?;
    let mut record = Record::new(spec);
    record.messages_sent = total;
    record.fill_from_report(&report);
    record.messages_received = total - lost;
    record.wire_bytes_per_msg =
        Some((link.bytes_sent() - bytes_before + report.bytes_sent) as f64 / total as f64);
    record.alloc_per_msg = Some((client_allocations + report.allocations) as f64 / total as f64);
    rtts.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    record.rtt_p50_us = percentile(&rtts, 0.50).map(us);
    record.rtt_p99_us = percentile(&rtts, 0.99).map(us);
    record.rtt_max_us = rtts.last().copied().map(us);
    record.msgs_per_s = None;
    record.mb_per_s = None;
    Ok(record)
}

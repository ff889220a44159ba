//! The client side of the single-connection workloads (throughput, latency, large) over either
//! stack, through the [`Link`] trait.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::transport::SecureHost;
use sturnus_netem::LinkConfig;
use sturnus_socket::{ConditionedSocket, SendStatus, Socket, SocketFactory, UdpSocket};
use sturnus_transport::{ChannelId, ConnectionId, Event, Host, Qos, SendError};

use crate::report::{Record, percentile};
use crate::wire::{self, Control, Report};
use crate::{
    BenchHost, BenchResult, CONTROL_CHANNEL, Netem, Secure, Spec, bench_config, channel_of, now,
    probe, raw_factory, udp_factory,
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
    /// Prints the connection's statistics when `STURNUS_BENCH_DEBUG` is set.
    fn debug(&self) {}
}

/// A Sturnus connection through a [`Host`], or a [`SecureHost`] (the netcode mode).
pub(crate) struct SturnusLink<H: BenchHost = Host<UdpSocket>> {
    host: H,
    conn: ConnectionId,
    channel: ChannelId,
    reply: Option<Report>,
}

/// The client's socket behind an emulated link, both ways.
pub(crate) type NetemSocket = ConditionedSocket<UdpSocket>;

impl Netem {
    /// One direction of the link: half the round trip, the loss, and (on the way out, where
    /// the bulk goes) the rate with a 64 KiB tail-drop queue.
    fn direction(&self, outgoing: bool) -> LinkConfig {
        let rate = (self.rate_mbit * 1e6 / 8.0) as u64;
        LinkConfig {
            latency: Duration::from_secs_f64(self.rtt_ms / 2e3),
            loss: self.loss,
            bandwidth: outgoing.then_some(rate),
            queue_limit: 64 * 1024,
            ..LinkConfig::perfect()
        }
    }
}

impl SturnusLink<Host<UdpSocket>> {
    pub(crate) fn connect(server: SocketAddr, qos: Qos) -> BenchResult<Self> {
        let (host, conn) = Host::connect_to(bench_config(), &udp_factory(), server)?;
        Self { host, conn, channel: channel_of(qos), reply: None }.established(server)
    }
}

impl SturnusLink<SecureHost<UdpSocket>> {
    /// A connection in the netcode mode, with a token minted for `server` (or read from the
    /// token file).
    pub(crate) fn connect_secure(
        server: SocketAddr,
        qos: Qos,
        secure: &Secure,
        client_id: u64,
    ) -> BenchResult<Self> {
        let token = secure.token(server, client_id)?;
        let mut host = SecureHost::client(&bench_config(), token, &udp_factory(), server)?;
        let conn = sturnus_transport::Transport::connect(&mut host, now(), server)?;
        Self { host, conn, channel: channel_of(qos), reply: None }.established(server)
    }
}

impl SturnusLink<Host<NetemSocket>> {
    /// A connection whose traffic crosses the emulated link `netem` (seeded with `seed`).
    pub(crate) fn connect_netem(
        server: SocketAddr,
        qos: Qos,
        netem: &Netem,
        seed: u64,
    ) -> BenchResult<Self> {
        let socket = udp_factory().client_socket(server)?;
        let socket = ConditionedSocket::new(socket, netem.direction(true), seed)?
            .with_incoming(netem.direction(false), seed ^ 0x5eed)?;
        let mut host = Host::new(bench_config(), socket)?;
        let conn = host.connect(server)?;
        Self { host, conn, channel: channel_of(qos), reply: None }.established(server)
    }

    /// Cuts the link both ways (`on`), or restores it.
    pub(crate) fn blackout(&mut self, on: bool, netem: &Netem) -> BenchResult<()> {
        let (out, inc) = if on {
            (LinkConfig::dead(), LinkConfig::dead())
        } else {
            (netem.direction(true), netem.direction(false))
        };
        let socket = self.host.socket_mut();
        socket.set_outgoing(out)?;
        socket.set_incoming(inc, 0)?;
        Ok(())
    }
}

impl<H: BenchHost> SturnusLink<H> {
    /// Waits for the handshake to finish.
    fn established(self, server: SocketAddr) -> BenchResult<Self> {
        let mut link = self;
        let deadline = now() + CONTROL_TIMEOUT;
        loop {
            match link.host.poll_event(now())? {
                Some(Event::Connected(_)) => return Ok(link),
                Some(Event::Disconnected { reason, .. }) => {
                    return Err(format!("could not connect to {server}: {reason:?}").into());
                }
                None if now() > deadline => {
                    return Err(format!("no answer from {server}").into());
                }
                None => {
                    link.host.flush(now())?;
                    link.host.wait(Duration::from_millis(5))?;
                }
                _ => {}
            }
        }
    }
}

fn is_reply(msg: &[u8]) -> bool {
    matches!(msg.first(), Some(&(wire::STARTED | wire::REPORT)))
}

impl<H: BenchHost> Link for SturnusLink<H> {
    fn try_send(&mut self, msg: &[u8]) -> BenchResult<bool> {
        match self.host.send(self.conn, self.channel, msg) {
            Ok(()) => Ok(true),
            Err(SendError::QueueFull { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn drive(&mut self, on_data: &mut dyn FnMut(&[u8])) -> BenchResult<()> {
        loop {
            match self.host.poll_event(now())? {
                Some(Event::Data { payload, .. }) if is_reply(payload) => {
                    self.reply = Report::decode(payload);
                }
                Some(Event::Data { payload, .. }) => on_data(payload),
                Some(Event::Disconnected { reason, .. }) => {
                    return Err(format!("connection lost: {reason:?}").into());
                }
                None => return Ok(()),
                _ => {}
            }
        }
    }

    fn wait(&mut self, max: Duration) -> BenchResult<()> {
        self.host.flush(now())?;
        Ok(self.host.wait(max)?)
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
        self.host.bytes_sent()
    }

    fn debug(&self) {
        if std::env::var_os("STURNUS_BENCH_DEBUG").is_some() {
            let s = self.host.connection_stats(self.conn).unwrap_or_default();
            eprintln!(
                "{:?} sent {} in_flight {} cwnd {} pace {} bw {} rtt {:?} rto {:?} resends {} lost {}",
                now(),
                s.packets_sent,
                s.bytes_in_flight,
                s.congestion_window,
                s.pacing_rate,
                s.bandwidth_estimate,
                s.rtt,
                s.resend_timeout,
                s.resends,
                s.packets_lost_out
            );
        }
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
    link.debug();
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

/// How often the blackout workload sends a message.
const BLACKOUT_INTERVAL: Duration = Duration::from_millis(10);
/// How long it runs before the link goes dark, and at most after it returns.
const BLACKOUT_MARGIN: Duration = Duration::from_secs(1);

/// Blackout: an ordered message every 10 ms, echoed by the server, over the emulated link;
/// after a second the link goes dark both ways for `spec.blackout_s`, then comes back. Reports
/// (as `resume_ms`) how long after the link came back the first echo arrived: an upper bound on
/// when the first message reached the server, since its echo needs the way back too.
pub(crate) fn blackout(
    link: &mut SturnusLink<Host<NetemSocket>>,
    spec: &Spec,
    netem: &Netem,
    run: u32,
) -> BenchResult<Record> {
    let _ = start(link, run, false)?;
    let mut msg = vec![0u8; spec.size];
    let begin = now();
    let dark_at = begin + BLACKOUT_MARGIN;
    let back_at = dark_at + Duration::from_secs_f64(spec.blackout_s);
    let (mut dark, mut back) = (false, false);
    let mut resumed: Option<Duration> = None;
    let mut stop_at = back_at + BLACKOUT_MARGIN;
    let mut seq = 0u64;
    let mut next_send = begin;
    loop {
        let t = now();
        if !dark && t >= dark_at {
            link.blackout(true, netem)?;
            dark = true;
        }
        if dark && !back && t >= back_at {
            link.blackout(false, netem)?;
            back = true;
        }
        if t >= stop_at {
            break;
        }
        if t >= next_send {
            wire::write_data(&mut msg, wire::ECHO, seq);
            if link.try_send(&msg)? {
                seq += 1;
            }
            next_send += BLACKOUT_INTERVAL;
        }
        let mut echoed = false;
        link.drive(&mut |m| echoed |= wire::read_data(m).is_some())?;
        if echoed && back && resumed.is_none() {
            let after = now().saturating_duration_since(back_at);
            resumed = Some(after);
            // Watch the backlog drain for a while longer.
            stop_at = stop_at.max(now() + BLACKOUT_MARGIN);
        }
        if back && resumed.is_none() && t >= back_at + Duration::from_secs(10) {
            break;
        }
        link.wait(Duration::from_millis(1))?;
    }
    let report = finish(link, run, seq, spec.qos, false)?;
    let mut record = Record::new(spec);
    record.messages_sent = seq;
    record.fill_from_report(&report);
    record.msgs_per_s = None;
    record.mb_per_s = None;
    record.resume_ms = resumed.map(|d| d.as_secs_f64() * 1e3);
    Ok(record)
}

//! The server side: counts data messages, checks their order, echoes what asks to be echoed,
//! and reports what it measured. One bookkeeper ([`Tally`]) serves both stacks.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netcode::server::ServerConfig;
use sturnus_netcode::transport::SecureHost;
use sturnus_socket::{Socket, SocketFactory};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Event, Host, ReadPacer};

use crate::wire::{self, Control, Report};
use crate::{
    BenchHost, BenchResult, CONTROL_CHANNEL, Secure, bench_config, now, probe, raw_factory_with,
    udp_factory_with,
};

/// How long the server waits after `DONE` for stragglers of an unreliable run.
const UNRELIABLE_GRACE: Duration = Duration::from_millis(100);
/// How long it waits for the rest of a reliable run once arrivals stop.
const RELIABLE_GRACE: Duration = Duration::from_secs(3);
/// How long a server sleeps between checks during a run that is not busy-polled.
const IDLE_WAIT: Duration = Duration::from_millis(1);
/// How long it sleeps between runs (a datagram wakes it at once). `local` runs both servers
/// on one CPU: the idle one must not keep interrupting the one being measured.
const BETWEEN_RUNS_WAIT: Duration = Duration::from_millis(50);

/// A multiply-rotate hasher for the small integer keys of the stream table (the default
/// SipHash would cost more than the transport's own work per message).
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// What the server loop should do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    Echo,
    Start(Control),
    Done(Control),
}

/// The server's counters for the current run.
pub(crate) struct Tally<K> {
    run: u32,
    busy_poll: bool,
    started_at: Option<Instant>,
    cpu_at_start: Duration,
    allocations_at_start: u64,
    bytes_sent_at_start: u64,
    received: u64,
    bytes_received: u64,
    in_order: bool,
    /// Data arrived since `last_arrival` was stamped (stamped when the loop next goes idle,
    /// so the clock is not read per message).
    unstamped: bool,
    last_arrival: Option<Instant>,
    echoes: u64,
    echo_failures: u64,
    /// The next sequence number each (peer, channel) stream must exceed.
    streams: HashMap<(K, u8), u64, BuildHasherDefault<FastHasher>>,
    /// Each peer's channels with a stream (bit per channel id), so forgetting a peer costs
    /// O(its channels), not a scan of every stream.
    channels: HashMap<K, [u64; 4], BuildHasherDefault<FastHasher>>,
    pending_done: Option<(K, Control, Instant)>,
    last_report: Option<(K, [u8; Report::LEN])>,
}

impl<K: Copy + Eq + Hash> Tally<K> {
    pub(crate) fn new() -> Self {
        Self {
            run: 0,
            busy_poll: false,
            started_at: None,
            cpu_at_start: Duration::ZERO,
            allocations_at_start: 0,
            bytes_sent_at_start: 0,
            received: 0,
            bytes_received: 0,
            in_order: true,
            unstamped: false,
            last_arrival: None,
            echoes: 0,
            echo_failures: 0,
            streams: HashMap::default(),
            channels: HashMap::default(),
            pending_done: None,
            last_report: None,
        }
    }

    /// Whether the loop should poll without sleeping.
    pub(crate) fn busy_poll(&self) -> bool {
        self.busy_poll
    }

    /// How long the loop may sleep when idle: briefly during a run (arrivals are stamped and
    /// the report falls due on time), longer between runs.
    pub(crate) fn idle_wait(&self) -> Duration {
        let running = self.started_at.is_some() && self.last_report.is_none();
        if running || self.pending_done.is_some() { IDLE_WAIT } else { BETWEEN_RUNS_WAIT }
    }

    /// Counts one message from `peer` on `channel` and says what to do with it.
    pub(crate) fn on_message(&mut self, peer: K, channel: u8, msg: &[u8]) -> Action {
        match msg.first() {
            Some(&(wire::DATA | wire::ECHO)) => {
                let Some((tag, seq)) = wire::read_data(msg) else { return Action::Nothing };
                self.received += 1;
                self.bytes_received += msg.len() as u64;
                self.unstamped = true;
                let next = self.streams.entry((peer, channel)).or_insert_with(|| {
                    let bits = self.channels.entry(peer).or_default();
                    bits[usize::from(channel / 64)] |= 1 << (channel % 64);
                    0
                });
                if seq < *next {
                    self.in_order = false;
                }
                *next = (*next).max(seq + 1);
                if tag == wire::ECHO { Action::Echo } else { Action::Nothing }
            }
            Some(&wire::START) => Control::decode(msg).map_or(Action::Nothing, Action::Start),
            Some(&wire::DONE) => Control::decode(msg).map_or(Action::Nothing, Action::Done),
            _ => Action::Nothing,
        }
    }

    /// Counts the outcome of an echo.
    pub(crate) fn echoed(&mut self, queued: bool) {
        if queued {
            self.echoes += 1;
        } else {
            self.echo_failures += 1;
        }
    }

    /// Starts run `control.run` (a repeated `START` of the current run only answers again).
    pub(crate) fn start(&mut self, control: Control, bytes_sent: u64) -> [u8; Report::LEN] {
        if control.run != self.run || self.started_at.is_none() {
            let run = control.run;
            *self = Self {
                streams: std::mem::take(&mut self.streams),
                channels: std::mem::take(&mut self.channels),
                ..Self::new()
            };
            self.streams.clear();
            self.channels.clear();
            self.run = run;
            self.busy_poll = control.busy_poll;
            self.started_at = Some(now());
            self.cpu_at_start = probe::cpu_time();
            self.allocations_at_start = probe::allocations();
            self.bytes_sent_at_start = bytes_sent;
        }
        Report {
            tag: wire::STARTED,
            run: self.run,
            rss_kib: probe::rss_kib().unwrap_or(0),
            ..Report::default()
        }
        .encode()
    }

    /// Notes that the run's sender is done; the report follows from [`due_report`](Self::due_report).
    /// A repeated `DONE` of a run already reported returns the report again.
    pub(crate) fn done(&mut self, peer: K, control: Control) -> Option<[u8; Report::LEN]> {
        if let Some((_, report)) = self.last_report.filter(|_| control.run == self.run) {
            return Some(report);
        }
        if control.run == self.run && self.pending_done.is_none() {
            self.pending_done = Some((peer, control, now()));
        }
        None
    }

    /// Stamps the last arrival time if data came since the last stamp. Call when idle.
    pub(crate) fn stamp(&mut self, at: Instant) {
        if self.unstamped {
            self.unstamped = false;
            self.last_arrival = Some(at);
        }
    }

    /// The report of a finished run, once every expected message arrived or the stragglers'
    /// grace time passed: to whom, and the bytes.
    pub(crate) fn due_report(
        &mut self,
        at: Instant,
        bytes_sent: u64,
    ) -> Option<(K, [u8; Report::LEN])> {
        let (peer, control, done_at) = self.pending_done?;
        let grace = if control.reliable { RELIABLE_GRACE } else { UNRELIABLE_GRACE };
        let quiet_since = self.last_arrival.map_or(done_at, |t| t.max(done_at));
        if self.received < control.expected && at < quiet_since + grace {
            return None;
        }
        self.pending_done = None;
        let started = self.started_at.unwrap_or(at);
        let report = Report {
            tag: wire::REPORT,
            run: self.run,
            received: self.received,
            bytes_received: self.bytes_received,
            in_order: self.in_order,
            window: self
                .last_arrival
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(started)),
            wall: at.saturating_duration_since(started),
            cpu: probe::cpu_time().saturating_sub(self.cpu_at_start),
            rss_kib: probe::rss_kib().unwrap_or(0),
            bytes_sent: bytes_sent - self.bytes_sent_at_start,
            allocations: probe::allocations() - self.allocations_at_start,
            echoes: self.echoes,
            echo_failures: self.echo_failures,
        }
        .encode();
        self.last_report = Some((peer, report));
        self.busy_poll = false;
        Some((peer, report))
    }

    /// Forgets a peer's streams (it disconnected).
    pub(crate) fn forget(&mut self, peer: K) {
        let Some(bits) = self.channels.remove(&peer) else { return };
        for channel in 0..=u8::MAX {
            if bits[usize::from(channel / 64)] & (1 << (channel % 64)) != 0 {
                let _ = self.streams.remove(&(peer, channel));
            }
        }
    }
}

/// Prints the bound address for whoever started the server (`sturnus-bench local` reads it).
fn announce(addr: SocketAddr) -> BenchResult<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening {addr}")?;
    out.flush()?;
    Ok(())
}

/// The Sturnus server: a [`Host`] with the bench's channel layout, or its netcode transport
/// mode when `secure` is given.
pub(crate) fn serve_sturnus(
    bind: SocketAddr,
    duration: Option<Duration>,
    secure: Option<&Secure>,
    recv_buffer: Option<usize>,
    read_interval: Duration,
) -> BenchResult<()> {
    let factory = udp_factory_with(recv_buffer);
    let config = EndpointConfig { read_interval, ..bench_config() };
    match secure {
        None => serve(Host::bind(config, &factory, bind)?, duration),
        Some(secure) => {
            // Port 0 in the public address: the host takes the bound one.
            let mut netcode = ServerConfig::new(secure.protocol_id, secure.key, bind);
            netcode.max_clients = MAX_NETCODE_CLIENTS;
            let host = SecureHost::bind(&config, &netcode, &factory, bind)?;
            serve(host, duration)
        }
    }
}

/// Clients a secure bench server takes (the `clients` workload's largest runs).
const MAX_NETCODE_CLIENTS: usize = 100_000;

fn serve<H: BenchHost>(mut host: H, duration: Option<Duration>) -> BenchResult<()> {
    announce(host.local_addr().ok_or("the transport has no address")?)?;
    let deadline = duration.map(|d| now() + d);
    let mut tally = Tally::<ConnectionId>::new();
    let mut next_trace = now();
    // STURNUS_BENCH_TRACE=1: the counters every second, to watch a run (a connect storm).
    let trace = std::env::var_os("STURNUS_BENCH_TRACE").is_some();
    let mut scratch =
        vec![
            0u8;
            bench_config().max_message_size(sturnus_transport::Qos::ReliableFragmentedSequenced)
        ];
    // Both hosts read their own clock (a driver on real time); the instant given is read when
    // idle, as the raw-UDP server reads it, not once an event.
    let mut at = now();
    loop {
        let (conn, channel, action, len) = match host.poll_event(at)? {
            Some(Event::Data { conn, channel, payload }) => {
                let action = tally.on_message(conn, channel.0, payload);
                if action == Action::Echo {
                    scratch[..payload.len()].copy_from_slice(payload);
                }
                (conn, channel, action, payload.len())
            }
            Some(Event::Disconnected { conn, .. }) => {
                tally.forget(conn);
                continue;
            }
            None => {
                at = now();
                if trace && at >= next_trace {
                    eprintln!("sturnus-bench server: {}", host.counters());
                    next_trace = at + Duration::from_secs(1);
                }
                tally.stamp(at);
                if let Some((peer, report)) = tally.due_report(at, host.bytes_sent()) {
                    let _ = host.send(peer, CONTROL_CHANNEL, &report);
                    eprintln!("sturnus-bench server: {}", host.counters());
                }
                if deadline.is_some_and(|d| at >= d) {
                    return Ok(());
                }
                host.flush(at)?;
                if !tally.busy_poll() {
                    host.wait(tally.idle_wait())?;
                }
                continue;
            }
            _ => continue,
        };
        match action {
            Action::Nothing => {}
            Action::Echo => {
                let queued = host.send(conn, channel, &scratch[..len]).is_ok();
                tally.echoed(queued);
            }
            Action::Start(control) => {
                let started = tally.start(control, host.bytes_sent());
                let _ = host.send(conn, ChannelId(CONTROL_CHANNEL.0), &started);
            }
            Action::Done(control) => {
                if let Some(report) = tally.done(conn, control) {
                    let _ = host.send(conn, CONTROL_CHANNEL, &report);
                }
            }
        }
    }
}

/// The baseline server: plain UDP datagrams, one message each, on the same socket type.
pub(crate) fn serve_raw(
    bind: SocketAddr,
    duration: Option<Duration>,
    recv_buffer: Option<usize>,
    read_interval: Duration,
) -> BenchResult<()> {
    let mut socket = raw_factory_with(recv_buffer).server_socket(bind)?;
    announce(socket.local_addr())?;
    let deadline = duration.map(|d| now() + d);
    let mut tally = Tally::<SocketAddr>::new();
    let mut buf = vec![0u8; 65_536];
    // Paced as the Sturnus server is: drains of the socket start at least `read_interval`
    // apart (the socket is read one datagram at a time, with no budget, so every drain
    // empties it).
    let mut pacer = ReadPacer::new(read_interval)?;
    let (mut drain_started, mut drained, mut may_read) = (now(), 0, true);
    loop {
        let meta = if may_read { socket.recv_from(&mut buf)? } else { None };
        let Some(meta) = meta else {
            let at = now();
            if may_read {
                pacer.on_drained(drain_started, drained);
                drained = 0;
            }
            tally.stamp(at);
            if let Some((peer, report)) = tally.due_report(at, socket.stats().bytes_sent) {
                let _ = socket.send_to(&report, peer)?;
                eprintln!("sturnus-bench raw server: socket: {}", socket.stats());
            }
            if deadline.is_some_and(|d| at >= d) {
                return Ok(());
            }
            if !tally.busy_poll() {
                pacer.wait(&mut socket, Some(tally.idle_wait()))?;
            }
            drain_started = now();
            may_read = pacer.may_read(drain_started);
            continue;
        };
        drained += 1;
        let msg = &buf[..meta.len];
        match tally.on_message(meta.from, 0, msg) {
            Action::Nothing => {}
            Action::Echo => {
                let sent = socket.send_to(msg, meta.from)?;
                tally.echoed(sent == sturnus_socket::SendStatus::Sent);
            }
            Action::Start(control) => {
                let started = tally.start(control, socket.stats().bytes_sent);
                let _ = socket.send_to(&started, meta.from)?;
            }
            Action::Done(control) => {
                if let Some(report) = tally.done(meta.from, control) {
                    let _ = socket.send_to(&report, meta.from)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(tag: u8, seq: u64) -> Vec<u8> {
        let mut m = vec![0; 32];
        wire::write_data(&mut m, tag, seq);
        m
    }

    #[test]
    fn counts_orders_and_echoes() {
        let mut t = Tally::<u32>::new();
        let start =
            Control { tag: wire::START, run: 1, busy_poll: false, expected: 0, reliable: false };
        let _ = t.start(start, 0);
        assert_eq!(t.on_message(1, 0, &data(wire::DATA, 0)), Action::Nothing);
        assert_eq!(t.on_message(1, 0, &data(wire::ECHO, 1)), Action::Echo);
        // Another stream has its own numbering.
        assert_eq!(t.on_message(2, 0, &data(wire::DATA, 0)), Action::Nothing);
        assert!(t.in_order);
        let _ = t.on_message(1, 0, &data(wire::DATA, 1));
        assert!(!t.in_order, "a repeated sequence number is out of order");
        assert_eq!(t.received, 4);
    }

    #[test]
    fn forgetting_a_peer_drops_only_its_streams() {
        let mut t = Tally::<u32>::new();
        for (peer, channel) in [(1, 0), (1, 200), (2, 0)] {
            let _ = t.on_message(peer, channel, &data(wire::DATA, 5));
        }
        t.forget(1);
        assert_eq!(t.streams.len(), 1);
        assert!(t.streams.contains_key(&(2, 0)));
        // Peer 1 starts afresh: sequence 0 is not "out of order" any more.
        let _ = t.on_message(1, 200, &data(wire::DATA, 0));
        assert!(t.in_order);
    }

    #[test]
    fn reports_once_everything_expected_arrived() {
        let mut t = Tally::<u32>::new();
        let _ = t.start(
            Control { tag: wire::START, run: 9, busy_poll: true, expected: 0, reliable: true },
            100,
        );
        let _ = t.on_message(1, 0, &data(wire::DATA, 0));
        let done =
            Control { tag: wire::DONE, run: 9, busy_poll: false, expected: 2, reliable: true };
        assert_eq!(t.done(1, done), None);
        assert_eq!(t.due_report(now(), 150), None, "one of two reliable messages is missing");
        let _ = t.on_message(1, 0, &data(wire::DATA, 1));
        let (peer, bytes) = t.due_report(now(), 150).expect("all arrived");
        let report = Report::decode(&bytes).unwrap();
        assert_eq!((peer, report.run, report.received, report.bytes_sent), (1, 9, 2, 50));
        assert!(report.in_order);
        // A repeated DONE gets the same report.
        assert_eq!(t.done(1, done), Some(bytes));
    }
}

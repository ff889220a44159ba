//! Connect storms over the real loopback (issue 20's test): one server `Host` on a UDP socket,
//! and a crowd of clients that all call `connect` in the same instant. Each client is its own
//! sans-IO `Endpoint` at its own address (`127.16.0.0 + i`), all of them speaking through one
//! `CrowdSocket`, so the server sees thousands of distinct hosts and the test needs two
//! sockets, not thousands.
//!
//! Nothing here is timed: the clients are driven until every one has connected (or given up),
//! then until every echo is back, with a hang guard far beyond any plausible run. What is
//! asserted is the outcome: who connected, who was turned away and why, what the server
//! counted. The 100,000-client run, with rates and memory, is `sturnus-bench`'s `clients`
//! workload (see `benches/README.md`).

#![cfg(target_os = "linux")]
#![expect(
    clippy::print_stdout,
    reason = "a storm's timeline and counters are its report, shown when it fails (or with --nocapture)"
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sturnus_socket::{Socket, SocketStats, UdpSocket, UdpSocketFactory};
use sturnus_testkit::crowd::{BATCH, CrowdSocket, CrowdStats};
use sturnus_transport::{
    AddressLimits, ChannelId, ConnectionId, ConnectionStats, DisconnectReason, Endpoint,
    EndpointConfig, EndpointStats, Event, Host, HostEvent, HostStats, Qos, RejectReason,
    address_prefix,
};

/// Wall time after which a storm is declared hung. Far beyond what any run needs (a debug
/// build on a loaded two-core machine finishes the 20,000-client storm in seconds): it only
/// turns a hang into a failure that says where it stopped.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Datagrams read, or client timers run, before the crowd turns to the other.
const SLICE: usize = 16 * BATCH;

/// How often a storm prints where it stands.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The reliable channel the echo goes on.
const RELIABLE: ChannelId = ChannelId(0);

/// Settings both sides share (the channel layout and the disconnect timeout must match).
///
/// The protocol's defaults, but for how long anyone waits. A client gives up connecting after
/// `connect_attempts` tries (waits of 250 ms doubling to 1 s: 8 to 11 s by default), and a
/// connection is lost after `disconnect_timeout` of silence (10 s): wall-clock limits, so with
/// them this test would assert that a debug build on a shared machine gets through the storm
/// fast enough. The 20,000 clients connected in 3 to 5 s with this file's three storms running
/// at once, and in 12 to 42 s with two copies of the file running (and the throttled clients of
/// the negative control gave up before they were told no, under the old 5 s limit). Here both
/// wait as long as the hang guard, so every outcome is decided by the protocol, not by the
/// machine's speed.
fn base_config() -> EndpointConfig {
    let defaults = EndpointConfig::default();
    let longest_wait = defaults.connect_retry_max_interval;
    EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        connect_attempts: u32::try_from(HANG_GUARD.as_millis() / longest_wait.as_millis()).unwrap(),
        disconnect_timeout: HANG_GUARD,
        ..defaults
    }
}

/// A client: connects only, one connection.
fn client_config() -> EndpointConfig {
    EndpointConfig { accept_connections: false, max_connections: 1, ..base_config() }
}

/// A server for `clients` connections with `address_limits`.
fn server_config(clients: usize, address_limits: AddressLimits) -> EndpointConfig {
    EndpointConfig { max_connections: clients, address_limits, ..base_config() }
}

#[expect(clippy::disallowed_methods, reason = "the test drives real sockets: it owns the clock")]
fn now() -> Instant {
    Instant::now()
}

/// Client `i`'s message: its index, then bytes that depend on it.
fn message(i: u32) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..44u32).map(|k| u8::try_from((i.wrapping_mul(31) + k * 7) % 251).unwrap()));
    m
}

/// Sums of the connections' counters, to see what a storm cost beyond the handshakes.
#[derive(Debug, Default)]
struct Totals {
    packets_sent: u64,
    resends: u64,
    packets_lost_out: u64,
    packets_duplicate: u64,
    /// The largest resend timeout of any connection at the end.
    max_resend_timeout: Duration,
}

impl Totals {
    fn add(&mut self, stats: &ConnectionStats) {
        self.packets_sent += stats.packets_sent;
        self.resends += stats.resends;
        self.packets_lost_out += stats.packets_lost_out;
        self.packets_duplicate += stats.packets_duplicate;
        self.max_resend_timeout = self.max_resend_timeout.max(stats.resend_timeout);
    }
}

// ---------------------------------------------------------------------------------------------
// The server: a `Host` on its own thread, echoing every message on its channel.

/// What the server saw and counted, read when it stops.
#[derive(Debug)]
struct ServerReport {
    endpoint: EndpointStats,
    host: HostStats,
    socket: SocketStats,
    /// `Connect` events.
    connects: usize,
    /// `Disconnect` events, by reason.
    disconnects: BTreeMap<String, usize>,
    /// Connections held when it stopped.
    connections: usize,
    /// Messages echoed.
    echoed: usize,
    /// Over the connections it held at the end.
    totals: Totals,
    /// The kernel's count of datagrams dropped at this socket (`/proc/net/udp`, "drops": a
    /// full receive queue, mostly), if it could be read.
    kernel_drops: Option<u64>,
}

/// The running server; stops it when dropped (so a failed assertion does not leave it
/// spinning).
struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<ServerReport>>,
}

impl Server {
    fn start(config: EndpointConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("storm-server".into())
            .spawn(move || {
                let factory = UdpSocketFactory::default();
                let host = Host::bind(config, &factory, "127.0.0.1:0".parse().unwrap())
                    .expect("bind the server");
                tx.send(host.local_addr()).unwrap();
                serve(host, &flag)
            })
            .unwrap();
        let addr = rx.recv().expect("the server started");
        Self { addr, stop, thread: Some(thread) }
    }

    fn finish(mut self) -> ServerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("the server thread panicked")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut host: Host<UdpSocket>, stop: &AtomicBool) -> ServerReport {
    let mut conns = Vec::new();
    let mut echoed = 0;
    let mut disconnects = BTreeMap::new();
    let mut echo = Vec::new();
    loop {
        let (conn, channel) = match host.receive().expect("server receive") {
            HostEvent::Nothing => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                host.wait(Some(Duration::from_millis(10))).expect("server wait");
                continue;
            }
            HostEvent::Connect(conn) => {
                conns.push(conn);
                continue;
            }
            HostEvent::Disconnect(_, reason) => {
                *disconnects.entry(format!("{reason:?}")).or_default() += 1;
                continue;
            }
            HostEvent::Data { conn, channel, payload } => {
                echo.clear();
                echo.extend_from_slice(payload);
                (conn, channel)
            }
            _ => continue,
        };
        host.send(conn, channel, &echo).expect("queue the echo");
        echoed += 1;
    }
    let port = host.local_addr().port();
    let mut totals = Totals::default();
    for stats in conns.iter().filter_map(|&conn| host.connection_stats(conn)) {
        totals.add(&stats);
    }
    ServerReport {
        endpoint: host.endpoint().stats(),
        host: host.stats(),
        socket: host.socket().stats(),
        connects: conns.len(),
        disconnects,
        connections: host.endpoint().connection_count(),
        echoed,
        totals,
        kernel_drops: kernel_drops(port),
    }
}

/// The "drops" column of the server socket's line in `/proc/net/udp` (bound to 127.0.0.1 at
/// `port`). Read once, at the end: the table lists every UDP socket of the machine, and
/// reading it twice a second for a progress line, while a 100,000-client benchmark ran beside
/// the test, took most of the crowd's time.
fn kernel_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str())).then(|| fields.last()?.parse().ok())?
    })
}

// ---------------------------------------------------------------------------------------------
// The crowd: sans-IO client endpoints behind one `CrowdSocket`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Echo {
    NotSent,
    Sent,
    Back,
}

struct Client {
    endpoint: Endpoint,
    /// Its connection, once `connect` was called.
    conn: Option<ConnectionId>,
    connected: bool,
    failed: Option<DisconnectReason>,
    echo: Echo,
    /// The deadline registered in the crowd's timer heap (older heap entries are stale).
    timer: Option<Instant>,
    /// Queued for a visit in this round.
    touched: bool,
}

struct Crowd {
    socket: CrowdSocket,
    server: SocketAddr,
    clients: Vec<Client>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    touched: Vec<u32>,
    connected: usize,
    failed: usize,
    echoes_back: usize,
    /// Clients whose echo came back wrong, or came twice.
    bad_echoes: Vec<u32>,
    /// Datagrams from an address other than the server, or for an address past the crowd
    /// (there must be none).
    strays: u64,
}

impl Crowd {
    /// `count` client endpoints, none connecting yet.
    fn new(count: u32, server: SocketAddr) -> Self {
        let socket = CrowdSocket::bind().expect("bind the crowd socket");
        let start = now();
        let clients = (0..count)
            .map(|_| Client {
                endpoint: Endpoint::new(client_config(), start).unwrap(),
                conn: None,
                connected: false,
                failed: None,
                echo: Echo::NotSent,
                timer: None,
                touched: false,
            })
            .collect();
        Self {
            socket,
            server,
            clients,
            timers: BinaryHeap::new(),
            touched: Vec::new(),
            connected: 0,
            failed: 0,
            echoes_back: 0,
            bad_echoes: Vec::new(),
            strays: 0,
        }
    }

    fn len(&self) -> usize {
        self.clients.len()
    }

    fn touch(&mut self, i: u32) {
        let client = &mut self.clients[i as usize];
        if !client.touched {
            client.touched = true;
            self.touched.push(i);
        }
    }

    /// The storm: every client calls `connect` with the same instant, then everything they
    /// send goes out as fast as the socket takes it.
    fn connect_all(&mut self) {
        let at = now();
        for i in 0..self.clients.len() {
            let client = &mut self.clients[i];
            client.conn = Some(client.endpoint.connect(at, self.server).expect("connect"));
            self.touch(u32::try_from(i).unwrap());
        }
        self.visit_touched(at);
    }

    /// Every connected client sends its message on the reliable channel.
    fn send_all(&mut self) {
        let at = now();
        for i in 0..self.clients.len() {
            let client = &mut self.clients[i];
            if let (true, Some(conn)) = (client.connected, client.conn) {
                let index = u32::try_from(i).unwrap();
                client.endpoint.send(conn, RELIABLE, &message(index)).expect("send");
                client.echo = Echo::Sent;
                self.touch(index);
            }
        }
        self.visit_touched(at);
    }

    /// Drives the crowd until `done`, or panics after the hang guard with `what` and where
    /// things stand.
    fn run_until(&mut self, what: &str, started: Instant, done: impl Fn(&Self) -> bool) {
        let mut progress_at = now();
        loop {
            if done(self) {
                return;
            }
            let at = now();
            if at >= progress_at {
                // A timeline, shown with the output of a failed (or `--nocapture`) run.
                progress_at = at + PROGRESS_EVERY;
                self.progress(what, at.duration_since(started));
            }
            assert!(
                at.duration_since(started) < HANG_GUARD,
                "hung while {what}: {} of {} connected, {} failed, {} echoes back; crowd {:?}",
                self.connected,
                self.len(),
                self.failed,
                self.echoes_back,
                self.socket.stats()
            );
            // What has arrived first, so an answer reaches its client about as soon as it
            // would reach a client on a machine of its own; then the timers that are due. Both
            // in slices, so neither waits long for the other: a driver that ran all 20,000
            // retry timers between reads left answers queued for a second, and the clients,
            // hearing nothing, repeated their requests until both sockets overflowed.
            let mut read = 0;
            loop {
                let Self { socket, clients, touched, server, strays, .. } = self;
                let n = socket
                    .recv(|index, from, datagram| {
                        let Some(client) = clients.get_mut(index as usize) else {
                            *strays += 1;
                            return;
                        };
                        if from != *server {
                            *strays += 1;
                            return;
                        }
                        client.endpoint.handle_datagram(at, from, datagram);
                        if !client.touched {
                            client.touched = true;
                            touched.push(index);
                        }
                    })
                    .expect("crowd receive");
                read += n;
                if n < BATCH || read >= SLICE {
                    break;
                }
            }
            self.visit_touched(at);
            let mut fired = 0;
            while fired < SLICE {
                let Some(&Reverse((due, i))) = self.timers.peek() else { break };
                if due > at {
                    break;
                }
                self.timers.pop();
                if self.clients[i as usize].timer == Some(due) {
                    self.clients[i as usize].timer = None;
                    self.touch(i);
                    fired += 1;
                }
            }
            self.visit_touched(at);
            if read == 0 && fired == 0 {
                let next = self.timers.peek().map(|Reverse((due, _))| *due);
                let sleep = next
                    .map_or(Duration::from_millis(10), |due| due.saturating_duration_since(at))
                    .min(Duration::from_millis(10));
                let _ = self.socket.wait(sleep).expect("crowd wait");
            }
        }
    }

    fn progress(&self, what: &str, elapsed: Duration) {
        let s = self.socket.stats();
        println!(
            "{elapsed:>8.2?} {what}: {} connected, {} failed, {} echoes back · crowd sent {}, \
             received {}, {} lost to its full queue",
            self.connected, self.failed, self.echoes_back, s.sent, s.received, s.queue_overflows,
        );
    }

    /// Drives every touched client: timers, transmits, events; then sends the batch.
    fn visit_touched(&mut self, at: Instant) {
        let touched = std::mem::take(&mut self.touched);
        for &i in &touched {
            self.visit(i, at);
        }
        self.touched = touched;
        self.touched.clear();
        self.socket.flush().expect("crowd flush");
    }

    fn visit(&mut self, i: u32, at: Instant) {
        let Self { socket, clients, timers, .. } = self;
        let client = &mut clients[i as usize];
        client.touched = false;
        let endpoint = &mut client.endpoint;
        // As `Host` does: timers that are due, what is to send, then the timers the sends left.
        for _ in 0..2 {
            if endpoint.poll_timeout().is_some_and(|due| due <= at) {
                endpoint.handle_timeout(at);
            }
            loop {
                let buf = socket.next_buffer().expect("crowd send");
                let Some(transmit) = endpoint.poll_transmit(at, buf) else { break };
                socket.commit(i, transmit.destination, transmit.len);
            }
        }
        while let Some(event) = endpoint.poll_event() {
            match event {
                Event::Connected(_) => {
                    client.connected = true;
                    self.connected += 1;
                }
                Event::Data { channel, payload, .. } => {
                    if channel == RELIABLE && payload == message(i) && client.echo == Echo::Sent {
                        client.echo = Echo::Back;
                        self.echoes_back += 1;
                    } else {
                        self.bad_echoes.push(i);
                    }
                }
                Event::Disconnected { reason, .. } => {
                    if client.connected {
                        client.connected = false;
                        self.connected -= 1;
                    }
                    client.failed = Some(reason);
                    self.failed += 1;
                }
                _ => {}
            }
        }
        if let Some(due) = endpoint.poll_timeout() {
            if client.timer != Some(due) {
                client.timer = Some(due);
                timers.push(Reverse((due, i)));
            }
        }
    }

    /// Clients that failed, by reason.
    fn failures(&self) -> BTreeMap<String, usize> {
        let mut by_reason = BTreeMap::new();
        for reason in self.clients.iter().filter_map(|c| c.failed) {
            *by_reason.entry(format!("{reason:?}")).or_default() += 1;
        }
        by_reason
    }
}

/// What a storm came to.
struct Outcome {
    crowd: Crowd,
    server: ServerReport,
    crowd_stats: CrowdStats,
    connect_time: Duration,
    echo_time: Duration,
}

/// `clients` clients connect at once to a server configured with `server_config`; once every
/// client has connected or failed, the connected ones each send a message and wait for its
/// echo.
fn storm(clients: u32, server_config: EndpointConfig) -> Outcome {
    let server = Server::start(server_config);
    let mut crowd = Crowd::new(clients, server.addr);
    let started = now();
    crowd.connect_all();
    crowd.run_until("connecting", started, |c| c.connected + c.failed == c.len());
    let connect_time = started.elapsed();
    let echo_start = now();
    crowd.send_all();
    crowd.run_until("echoing", started, |c| c.echoes_back == c.connected);
    let echo_time = echo_start.elapsed();
    let server = server.finish();
    let crowd_stats = crowd.socket.stats();
    let outcome = Outcome { crowd, server, crowd_stats, connect_time, echo_time };
    outcome.print();
    outcome
}

impl Outcome {
    fn print(&self) {
        let (crowd, server) = (&self.crowd, &self.server);
        println!(
            "{} clients: {} connected in {:.2?}, {} failed {:?}; {} echoes back in {:.2?}",
            crowd.len(),
            crowd.connected,
            self.connect_time,
            crowd.failed,
            crowd.failures(),
            crowd.echoes_back,
            self.echo_time,
        );
        println!(
            "server endpoint: {} · {} stateless replies dropped, {} rejections sent",
            server.endpoint, server.endpoint.replies_dropped, server.endpoint.rejections_sent
        );
        println!("server host: {}", server.host);
        println!("server socket: {}", server.socket);
        println!(
            "server: {} connects, {} held, {} echoed, disconnects {:?}, kernel drops {:?}",
            server.connects,
            server.connections,
            server.echoed,
            server.disconnects,
            server.kernel_drops
        );
        println!("server connections: {:?}", server.totals);
        let mut clients = Totals::default();
        for client in &crowd.clients {
            if let Some(stats) = client.conn.and_then(|c| client.endpoint.connection_stats(c)) {
                clients.add(&stats);
            }
        }
        println!("client connections: {clients:?}");
        println!("crowd socket: {:?}", self.crowd_stats);
    }

    /// The crowd socket lost nothing on its side and nothing strange arrived.
    fn assert_clean_crowd_socket(&self) {
        let s = self.crowd_stats;
        assert_eq!((s.send_failed, s.recv_dropped), (0, 0), "the crowd socket lost datagrams");
        assert_eq!(self.crowd.strays, 0, "datagrams from someone other than the server");
        assert!(self.crowd.bad_echoes.is_empty(), "wrong echoes: {:?}", self.crowd.bad_echoes);
    }
}

/// The cheaper version of the 100,000-client goal: 20,000 clients, all connecting at
/// once, every one connects (no failed handshake), every echo returns on a reliable channel,
/// and the server turned nobody away.
#[test]
fn twenty_thousand_clients_connect_at_once_and_echo() {
    const CLIENTS: u32 = 20_000;
    let n = CLIENTS as usize;
    // Loopback is exempt from the address limits by default: the crowd is one machine.
    let out = storm(CLIENTS, server_config(n, AddressLimits::default()));
    let (crowd, server) = (&out.crowd, &out.server);

    assert_eq!(crowd.failures(), BTreeMap::new(), "failed handshakes (client side)");
    assert_eq!(crowd.connected, n, "every client connected");
    assert_eq!(crowd.echoes_back, n, "every echo came back");
    out.assert_clean_crowd_socket();

    let e = server.endpoint;
    assert_eq!(e.accepted, u64::from(CLIENTS), "the server accepted each client once");
    assert_eq!(
        (e.rejections_sent, e.handshakes_throttled, e.address_limit_rejections),
        (0, 0, 0),
        "the server turned clients away"
    );
    assert_eq!(e.replies_dropped, 0, "handshake replies dropped for too many pending");
    assert_eq!((e.malformed, e.invalid_cookies), (0, 0));
    assert!(server.disconnects.is_empty(), "the server lost connections: {:?}", server.disconnects);
    assert_eq!(server.connects, n, "connections the server reported");
    assert_eq!(server.connections, n, "connections the server held at the end");
    assert_eq!(server.echoed, n, "messages the server received (and echoed)");
    // What the server sent, it sent: nothing refused by its socket, nothing oversized.
    assert_eq!((server.host.datagrams_unsent, server.host.datagrams_oversized), (0, 0));
    assert_eq!((server.socket.send_would_block, server.socket.send_dropped), (0, 0));
}

/// Limits an operator sets for a crowd of `per_prefix` clients in each /24 who may all
/// connect at once.
fn limits_for_a_crowd(per_prefix: u32) -> AddressLimits {
    AddressLimits {
        exempt_loopback: false,
        // Every client has its own address.
        connections_per_ip: 1,
        connections_per_prefix: per_prefix,
        handshakes_per_second_per_prefix: per_prefix,
        // A whole prefix at once. Prefixes find their token bucket by a keyed hash into a
        // fixed table (4,096 buckets), so two prefixes of the crowd share one with
        // probability 1 in 4,096 per pair (about 5 % for 20 prefixes): room for four.
        handshake_burst_per_prefix: 4 * per_prefix,
        ..AddressLimits::default()
    }
}

/// Crowd of the address-limit tests: 5,000 clients are 20 /24 prefixes (19 full, one of 136
/// clients), enough for limits per prefix to act on many prefixes at once; the 20,000 storm
/// above already covers size.
const LIMITED_CLIENTS: u32 = 5_000;

/// The storm with the address limits applied to loopback, set for the crowd: everyone
/// connects, nothing is throttled or rejected.
#[test]
fn a_crowd_fits_address_limits_configured_for_it() {
    let n = LIMITED_CLIENTS as usize;
    let out = storm(LIMITED_CLIENTS, server_config(n, limits_for_a_crowd(256)));
    let (crowd, server) = (&out.crowd, &out.server);
    assert_eq!(crowd.failures(), BTreeMap::new(), "failed handshakes (client side)");
    assert_eq!((crowd.connected, crowd.echoes_back), (n, n));
    out.assert_clean_crowd_socket();
    let e = server.endpoint;
    assert_eq!(e.accepted, u64::from(LIMITED_CLIENTS));
    assert_eq!(
        (e.rejections_sent, e.handshakes_throttled, e.address_limit_rejections),
        (0, 0, 0),
        "the limits turned the crowd away"
    );
    assert_eq!((server.connects, server.connections, server.echoed), (n, n, n));
}

/// The negative control: the same storm against the default limits, not exempt. They are
/// live: every /24 of the crowd fills up to its cap of 128 connections and not one more, and
/// every other client is rejected for its address (the clients keep trying until they are let
/// in or told no, so the outcome does not depend on timing). Those let in still get their
/// echoes.
#[test]
fn default_address_limits_turn_the_same_crowd_away() {
    let n = LIMITED_CLIENTS as usize;
    let limits = AddressLimits { exempt_loopback: false, ..AddressLimits::default() };
    let out = storm(LIMITED_CLIENTS, server_config(n, limits));
    let (crowd, server) = (&out.crowd, &out.server);
    let prefix_of = |i: usize| {
        let ip = CrowdSocket::ip_of(u32::try_from(i).unwrap()).unwrap().into();
        address_prefix(ip, limits.ipv4_prefix_len, limits.ipv6_prefix_len)
    };
    let (mut size, mut admitted) = (BTreeMap::new(), BTreeMap::new());
    for (i, client) in crowd.clients.iter().enumerate() {
        *size.entry(prefix_of(i)).or_insert(0u32) += 1;
        *admitted.entry(prefix_of(i)).or_insert(0u32) += u32::from(client.connected);
    }
    assert_eq!(size.len(), 20, "5,000 clients span 20 prefixes");
    let cap = limits.connections_per_prefix;
    let expected: BTreeMap<_, _> = size.iter().map(|(&p, &k)| (p, k.min(cap))).collect();
    assert_eq!(admitted, expected, "each prefix filled up to its cap, and no further");
    let admitted: u32 = expected.values().sum();
    let turned_away = LIMITED_CLIENTS - admitted;
    let rejected = format!("{:?}", DisconnectReason::Rejected(RejectReason::TooManyFromAddress));
    assert_eq!(
        crowd.failures(),
        BTreeMap::from([(rejected, turned_away as usize)]),
        "everyone not let in was rejected for their address"
    );
    let e = server.endpoint;
    assert_eq!(e.accepted, u64::from(admitted));
    assert!(
        e.address_limit_rejections >= turned_away.into(),
        "rejections by address limits counted: {e}"
    );
    assert_eq!(crowd.echoes_back, admitted as usize, "a client let in lost its echo");
    out.assert_clean_crowd_socket();
}

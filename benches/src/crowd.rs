//! The `clients` workload: many client connections in one process, each sending small echo
//! messages at a fixed rate. Every client has its own address (`127.16.0.0 + i`), so the server
//! sees distinct hosts, but they all share one socket ([`CrowdSocket`]: the source chosen per
//! datagram, batched system calls) and a timer wheel wakes each client only when its next
//! send or protocol timer is due, so the client process stays cheap enough to simulate a
//! hundred thousand.

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use sturnus_netcode::transport::SecureEndpoint;
use sturnus_testkit::crowd::{CrowdSocket, MAX_DATAGRAM};
use sturnus_transport::proto::prefetch::{Pipeline, Step};
use sturnus_transport::{
    ChannelId, ConnectError, ConnectionId, Endpoint, EndpointConfig, Event, SendError, Transmit,
};

use crate::client::Link;
use crate::report::Record;
use crate::wheel::Wheel;
use crate::wire::{self, Control};
use crate::{BenchResult, Spec, bench_config, channel_of, now};

/// How long to wait for every client to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// After the last send, how long to wait for the last echoes.
const DRAIN: Duration = Duration::from_millis(300);
/// Receive batches read per turn at most, so due sends are not starved by a flood of arrivals.
const RECV_BATCHES_PER_TURN: usize = 16;
/// Due clients run per turn at most, so a wave of due timers does not starve the reads.
const TIMERS_PER_TURN: usize = 1024;

/// What every client shares: scratch buffers, the socket, and the run's counters.
struct Shared {
    server: SocketAddr,
    socket: CrowdSocket,
    msg: Vec<u8>,
    channel: ChannelId,
    period: Duration,
    sending: bool,
    /// Messages scheduled from this instant on are not sent (the run's end).
    send_until: Instant,
    sent: u64,
    /// Messages of the schedule not sent because the client fell a period behind.
    skipped: u64,
    /// Messages the endpoint refused (not connected, or its send queue full).
    refused: u64,
    echoes: u64,
    connected: usize,
    lost: usize,
    /// Why connections ended, for the error a failed connect phase reports.
    lost_reasons: Vec<String>,
}

/// One simulated client of either stack. `index` is its address's index in the crowd socket.
trait Peer {
    /// Takes a datagram that arrived for this client from `from` (the run's server is
    /// `server`); returns whether it was an echo the client counts on arrival (the raw
    /// stack's; a Sturnus client counts its echoes as events).
    fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        server: SocketAddr,
    ) -> bool;
    /// Runs due timers, sends what is due; returns when to come back.
    fn service(&mut self, index: u32, now: Instant, shared: &mut Shared) -> Option<Instant>;
    /// Ends the client's connection (politely, where there is one).
    fn close(&mut self, index: u32, now: Instant, shared: &mut Shared);
    /// When the client sends its next message.
    fn set_next_send(&mut self, at: Instant);
    /// When the client sends its next message, if it is sending (connected).
    fn next_send(&self) -> Option<Instant>;
    /// Prefetch stage `stage` of the client's state, for a call coming soon.
    fn prefetch(&self, _stage: usize) {}
}

/// Sends one echo message if it is time; returns the next send time.
fn send_due(
    next_send: &mut Instant,
    seq: &mut u64,
    now: Instant,
    shared: &mut Shared,
    mut send: impl FnMut(&[u8], &mut CrowdSocket) -> bool,
) {
    if shared.sending && *next_send <= now && *next_send < shared.send_until {
        wire::write_data(&mut shared.msg, wire::ECHO, *seq);
        if send(&shared.msg, &mut shared.socket) {
            *seq += 1;
            shared.sent += 1;
        } else {
            shared.refused += 1;
        }
        *next_send += shared.period;
        if *next_send < now {
            // Fell behind (a stall): skip ahead rather than burst, and count what was skipped.
            while *next_send < now && *next_send < shared.send_until {
                *next_send += shared.period;
                shared.skipped += 1;
            }
        }
    }
}

/// The sans-IO endpoint of a Sturnus client: plaintext ([`Endpoint`]) or the netcode mode
/// ([`SecureEndpoint`]).
trait ClientEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]);
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_event(&mut self, now: Instant) -> Option<Event<'_>>;
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, m: &[u8]) -> Result<(), SendError>;
    fn connect(&mut self, now: Instant, to: SocketAddr) -> Result<ConnectionId, ConnectError>;
    fn disconnect(&mut self, now: Instant, conn: ConnectionId);
    /// Prefetch stage `stage` for a call coming soon (see [`Endpoint::prefetch`]); the
    /// netcode mode's endpoint has none.
    fn prefetch(&self, _stage: usize) {}
}

impl ClientEndpoint for Endpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        Endpoint::handle_datagram(self, now, from, datagram);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }
    fn poll_event(&mut self, _: Instant) -> Option<Event<'_>> {
        Endpoint::poll_event(self)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        Endpoint::poll_transmit(self, now, buf)
    }
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, m: &[u8]) -> Result<(), SendError> {
        Endpoint::send(self, conn, channel, m)
    }
    fn connect(&mut self, now: Instant, to: SocketAddr) -> Result<ConnectionId, ConnectError> {
        Endpoint::connect(self, now, to)
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        Endpoint::disconnect(self, now, conn);
    }
    fn prefetch(&self, stage: usize) {
        Endpoint::prefetch(self, stage);
    }
}

impl ClientEndpoint for SecureEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &mut [u8]) {
        SecureEndpoint::handle_datagram(self, now, from, datagram);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        SecureEndpoint::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        SecureEndpoint::handle_timeout(self, now);
    }
    fn poll_event(&mut self, now: Instant) -> Option<Event<'_>> {
        SecureEndpoint::poll_event(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        SecureEndpoint::poll_transmit(self, now, buf)
    }
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, m: &[u8]) -> Result<(), SendError> {
        SecureEndpoint::send(self, conn, channel, m)
    }
    fn connect(&mut self, now: Instant, to: SocketAddr) -> Result<ConnectionId, ConnectError> {
        SecureEndpoint::connect(self, now, to)
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        SecureEndpoint::disconnect(self, now, conn);
    }
}

struct SturnusPeer<E> {
    endpoint: E,
    conn: Option<ConnectionId>,
    connected: bool,
    next_send: Instant,
    seq: u64,
}

impl<E: ClientEndpoint> SturnusPeer<E> {
    /// Moves what the endpoint has to send into the crowd socket, written in place.
    fn transmit(&mut self, index: u32, now: Instant, socket: &mut CrowdSocket) {
        loop {
            let Ok(buf) = socket.next_buffer() else { return };
            let Some(t) = self.endpoint.poll_transmit(now, &mut buf[..MAX_DATAGRAM]) else {
                return;
            };
            socket.commit(index, t.destination, t.len);
        }
    }
}

impl<E: ClientEndpoint> Peer for SturnusPeer<E> {
    fn receive(&mut self, now: Instant, from: SocketAddr, d: &mut [u8], _: SocketAddr) -> bool {
        self.endpoint.handle_datagram(now, from, d);
        false
    }

    fn service(&mut self, index: u32, now: Instant, shared: &mut Shared) -> Option<Instant> {
        if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
        while let Some(event) = self.endpoint.poll_event(now) {
            match event {
                Event::Connected(_) => {
                    self.connected = true;
                    shared.connected += 1;
                }
                Event::Data { .. } => shared.echoes += 1,
                Event::Disconnected { reason, .. } => {
                    self.connected = false;
                    self.conn = None;
                    shared.lost += 1;
                    if shared.lost_reasons.len() < 8 {
                        shared.lost_reasons.push(format!("{reason:?}"));
                    }
                }
                _ => {}
            }
        }
        if let (Some(conn), true) = (self.conn, self.connected) {
            let (endpoint, channel) = (&mut self.endpoint, shared.channel);
            send_due(&mut self.next_send, &mut self.seq, now, shared, |m, _| {
                endpoint.send(conn, channel, m).is_ok()
            });
        }
        self.transmit(index, now, &mut shared.socket);
        // The endpoint works out a connection's next deadline after its packet is sent.
        if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
        let timer = self.endpoint.poll_timeout();
        let send = (shared.sending && self.connected).then_some(self.next_send);
        match (timer, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn set_next_send(&mut self, at: Instant) {
        self.next_send = at;
    }

    fn next_send(&self) -> Option<Instant> {
        self.connected.then_some(self.next_send)
    }

    fn prefetch(&self, stage: usize) {
        self.endpoint.prefetch(stage);
    }

    fn close(&mut self, index: u32, now: Instant, shared: &mut Shared) {
        if let Some(conn) = self.conn.take() {
            self.endpoint.disconnect(now, conn);
            self.transmit(index, now, &mut shared.socket);
        }
    }
}

struct RawPeer {
    next_send: Instant,
    seq: u64,
}

impl Peer for RawPeer {
    fn receive(&mut self, _: Instant, from: SocketAddr, d: &mut [u8], server: SocketAddr) -> bool {
        // Only echoes from our server count.
        from == server && d.first() == Some(&wire::ECHO)
    }

    fn service(&mut self, index: u32, now: Instant, shared: &mut Shared) -> Option<Instant> {
        let server = shared.server;
        send_due(&mut self.next_send, &mut self.seq, now, shared, |m, socket| {
            socket.queue(index, server, m).is_ok()
        });
        shared.sending.then_some(self.next_send)
    }

    fn set_next_send(&mut self, at: Instant) {
        self.next_send = at;
    }

    fn next_send(&self) -> Option<Instant> {
        Some(self.next_send)
    }

    fn close(&mut self, _: u32, _: Instant, _: &mut Shared) {}
}

/// Clients, their shared socket, and their deadlines.
struct Crowd<P> {
    /// The crowd socket's index of `peers[0]`.
    first: u32,
    peers: Vec<P>,
    scheduled: Vec<Option<Instant>>,
    wheel: Wheel,
    /// Peers that received datagrams in this turn (each once), to service after the reads.
    touched: Vec<usize>,
    /// Peers whose timers fell due in this turn, to service in order.
    due: Vec<usize>,
    is_touched: Vec<bool>,
    /// Whether a turn runs due clients only once the socket is drained (while connecting).
    reads_first: bool,
    shared: Shared,
}

impl<P: Peer> Crowd<P> {
    fn new(first: u32, shared: Shared) -> Self {
        Self {
            first,
            peers: Vec::new(),
            scheduled: Vec::new(),
            wheel: Wheel::new(now()),
            touched: Vec::new(),
            due: Vec::new(),
            is_touched: Vec::new(),
            reads_first: false,
            shared,
        }
    }

    fn add(&mut self, peer: P) {
        self.peers.push(peer);
        self.scheduled.push(None);
        self.is_touched.push(false);
    }

    fn index(&self, peer: usize) -> u32 {
        self.first + u32::try_from(peer).unwrap_or(u32::MAX)
    }

    fn service(&mut self, peer: usize, now: Instant) {
        let index = self.index(peer);
        let next = self.peers[peer].service(index, now, &mut self.shared);
        self.schedule(peer, next);
    }

    fn schedule(&mut self, peer: usize, at: Option<Instant>) {
        if at != self.scheduled[peer] {
            self.scheduled[peer] = at;
            if let Some(at) = at {
                self.wheel.push(at, peer);
            }
        }
    }

    /// Runs clients with datagrams waiting, then due ones, a bounded number of each (so
    /// neither starves the other: a crowd whose retries all fall due at once must still read
    /// the answers), sleeping at most `max` when there is nothing to do.
    fn turn(&mut self, max: Duration) -> io::Result<()> {
        let now = now();
        let mut read = 0;
        // A hundred thousand clients' state is far past the caches: each is asked for a few
        // clients ahead ([`Pipeline`]), so the misses of several overlap.
        for _ in 0..RECV_BATCHES_PER_TURN {
            let Self { first, peers, touched, is_touched, shared, .. } = self;
            let Shared { socket, server, echoes, .. } = shared;
            let n = socket.recv_batch()?;
            let peer_of = |index: u32| index.checked_sub(*first).map(|p| p as usize);
            for step in Pipeline::new(socket.received_len()) {
                match step {
                    Step::Prefetch { item, stage } => {
                        if let Some(p) =
                            peer_of(socket.received_index(item)).and_then(|peer| peers.get(peer))
                        {
                            p.prefetch(stage);
                        }
                    }
                    Step::Handle(item) => {
                        let (index, from, datagram) = socket.received(item);
                        let Some(peer) = peer_of(index) else { continue };
                        let Some(p) = peers.get_mut(peer) else { continue };
                        if p.receive(now, from, datagram, *server) {
                            *echoes += 1;
                        }
                        if !is_touched[peer] {
                            is_touched[peer] = true;
                            touched.push(peer);
                        }
                    }
                }
            }
            read += n;
            if n < sturnus_testkit::crowd::BATCH {
                break;
            }
        }
        let touched = std::mem::take(&mut self.touched);
        for &peer in &touched {
            self.is_touched[peer] = false;
            self.service(peer, now);
        }
        self.touched = touched;
        self.touched.clear();
        // While connecting, reads first: while answers keep coming, due timers (retries,
        // mostly) wait for a turn that drains the socket, so an overloaded crowd completes
        // handshakes rather than adding to the storm. Once running, sends are as due as reads.
        let drained =
            !self.reads_first || read < RECV_BATCHES_PER_TURN * sturnus_testkit::crowd::BATCH;
        let mut due = std::mem::take(&mut self.due);
        while due.len() < TIMERS_PER_TURN && drained {
            let Some((at, peer)) = self.wheel.pop_due(now) else { break };
            if self.scheduled[peer] == Some(at) {
                self.scheduled[peer] = None;
                due.push(peer);
            }
        }
        for step in Pipeline::new(due.len()) {
            match step {
                Step::Prefetch { item, stage } => self.peers[due[item]].prefetch(stage),
                Step::Handle(item) => self.service(due[item], now),
            }
        }
        let ran = due.len();
        due.clear();
        self.due = due;
        self.shared.socket.flush()?;
        if read == 0 && ran < TIMERS_PER_TURN {
            let sleep = self.wheel.wait(now, max);
            if !sleep.is_zero() {
                let _ = self.shared.socket.wait(sleep)?;
            }
        }
        Ok(())
    }

    /// Sends from every client for `duration`, then waits for the last echoes.
    fn run(
        &mut self,
        duration: Duration,
        tick: &mut dyn FnMut() -> BenchResult<()>,
    ) -> BenchResult<()> {
        let start = now();
        let count = self.peers.len().max(1) as u32;
        self.shared.sending = true;
        for peer in 0..self.peers.len() {
            // Spread the clients' first sends evenly over one period.
            let offset = self.shared.period * u32::try_from(peer).unwrap_or(0) / count;
            self.peers[peer].set_next_send(start + offset);
            self.schedule(peer, Some(start + offset));
        }
        let end = start + duration;
        self.shared.send_until = end;
        while now() < end {
            self.turn(Duration::from_millis(5))?;
            tick()?;
        }
        // Sends that fell due before the end but waited for their turn still go (a bounded
        // number of clients run per turn), for up to a period: a crowd further behind than
        // that counts what it did not send as skipped, as it does during the run.
        let catch_up = end + DRAIN.max(self.shared.period);
        while self.wheel.next().is_some_and(|at| at < end) && now() < catch_up {
            self.turn(Duration::ZERO)?;
            tick()?;
        }
        self.shared.sending = false;
        let period = self.shared.period.as_nanos().max(1);
        for peer in &self.peers {
            if let Some(at) = peer.next_send().filter(|&at| at < end) {
                let behind = (end - at).as_nanos().div_ceil(period);
                self.shared.skipped += u64::try_from(behind).unwrap_or(u64::MAX);
            }
        }
        let end = now() + DRAIN;
        while now() < end {
            self.turn(Duration::from_millis(5))?;
            tick()?;
        }
        let stats = self.shared.socket.stats();
        eprintln!(
            "sturnus-bench clients: {} messages sent ({} skipped behind schedule, {} refused), \
             {} echoes, {} connections lost · socket: {} datagrams sent, {} received, {} unsent, \
             {} dropped (queue full)",
            self.shared.sent,
            self.shared.skipped,
            self.shared.refused,
            self.shared.echoes,
            self.shared.lost,
            stats.sent,
            stats.received,
            stats.send_failed,
            stats.queue_overflows
        );
        Ok(())
    }
}

fn shared(spec: &Spec, server: SocketAddr, socket: CrowdSocket) -> Shared {
    Shared {
        server,
        socket,
        msg: vec![0; spec.size],
        channel: channel_of(spec.qos),
        period: Duration::from_secs_f64(1.0 / spec.rate),
        sending: false,
        send_until: now(),
        sent: 0,
        skipped: 0,
        refused: 0,
        echoes: 0,
        connected: 0,
        lost: 0,
        lost_reasons: Vec::new(),
    }
}

fn start(control: &mut dyn Link, run: u32) -> BenchResult<wire::Report> {
    let c = Control { tag: wire::START, run, busy_poll: false, expected: 0, reliable: false };
    crate::client::request(control, c, wire::STARTED)
}

fn finish(control: &mut dyn Link, run: u32, expected: u64) -> BenchResult<wire::Report> {
    let c = Control { tag: wire::DONE, run, busy_poll: false, expected, reliable: false };
    crate::client::request(control, c, wire::REPORT)
}

/// Clients of either stack, connected and ready to send.
enum AnyCrowd {
    Sturnus(Crowd<SturnusPeer<Endpoint>>),
    Secure(Crowd<SturnusPeer<SecureEndpoint>>),
    Raw(Crowd<RawPeer>),
}

impl AnyCrowd {
    /// Makes clients `first..first + count` of `spec`'s stack on one crowd socket (client `i`
    /// at `127.16.0.0 + i`), not yet connected.
    fn bind(spec: &Spec, server: SocketAddr, first: u64, count: u64) -> BenchResult<Self> {
        let begin = now();
        let too_many = || format!("at most {} clients", sturnus_testkit::crowd::MAX_CLIENTS);
        let first = u32::try_from(first).map_err(|_| too_many())?;
        let end = u64::from(first) + count;
        if end > u64::from(sturnus_testkit::crowd::MAX_CLIENTS) {
            return Err(too_many().into());
        }
        let shared = shared(spec, server, CrowdSocket::bind()?);
        if spec.raw {
            let mut crowd = Crowd::<RawPeer>::new(first, shared);
            for _ in 0..count {
                crowd.add(RawPeer { next_send: begin, seq: 0 });
            }
            return Ok(Self::Raw(crowd));
        }
        // A client acknowledges what asks for a prompt acknowledgement (every echo, in a
        // reliable-QoS run) at once rather than after `ack_delay` (the same datagrams on the
        // wire, 5 ms sooner): one timer wake-up less each keeps the crowd's thread on schedule.
        let config = EndpointConfig {
            accept_connections: false,
            max_connections: 1,
            ack_delay: Duration::ZERO,
            ..bench_config()
        };
        if let Some(secure) = &spec.secure {
            let unix = crate::unix_now();
            let endpoints = (0..count).map(|i| {
                let token = secure.token(server, u64::from(first) + i)?;
                Ok(SecureEndpoint::client(&config, token, begin, unix)?)
            });
            return Ok(Self::Secure(bind_all(shared, first, begin, endpoints)?));
        }
        let endpoints = (0..count).map(|_| Ok(Endpoint::new(config.clone(), begin)?));
        Ok(Self::Sturnus(bind_all(shared, first, begin, endpoints)?))
    }

    /// Connects every client, `at_once` attempts in flight at a time (0: all at once); returns
    /// how long it took from the first attempt to the last client connected. Fails on the
    /// first connection that does not complete.
    fn connect(
        &mut self,
        at_once: usize,
        tick: &mut dyn FnMut() -> BenchResult<()>,
    ) -> BenchResult<Duration> {
        match self {
            Self::Raw(_) => Ok(Duration::ZERO),
            Self::Sturnus(crowd) => connect_all(crowd, at_once, tick),
            Self::Secure(crowd) => connect_all(crowd, at_once, tick),
        }
    }

    /// Keeps the clients going (reads, acks, keepalives; nothing is sent from the schedule)
    /// until `ready` says so.
    fn wait_for(&mut self, ready: &mut dyn FnMut() -> BenchResult<bool>) -> BenchResult<()> {
        let turn = Duration::from_millis(5);
        loop {
            match self {
                Self::Raw(crowd) => crowd.turn(turn)?,
                Self::Sturnus(crowd) => crowd.turn(turn)?,
                Self::Secure(crowd) => crowd.turn(turn)?,
            }
            if ready()? {
                return Ok(());
            }
        }
    }

    /// Sends for `duration` and waits for the last echoes; returns (sent, echoes). Calls
    /// `tick` between turns (to keep a control connection alive).
    fn run(
        &mut self,
        duration: Duration,
        tick: &mut dyn FnMut() -> BenchResult<()>,
    ) -> BenchResult<(u64, u64)> {
        let shared = match self {
            Self::Raw(crowd) => crowd.run(duration, tick).map(|()| &crowd.shared),
            Self::Sturnus(crowd) => crowd.run(duration, tick).map(|()| &crowd.shared),
            Self::Secure(crowd) => crowd.run(duration, tick).map(|()| &crowd.shared),
        }?;
        Ok((shared.sent, shared.echoes))
    }

    /// Closes every connection (after the run's report, so the server's figures are of the
    /// load alone, not of a hundred thousand disconnects at once).
    fn close(self) -> BenchResult<()> {
        match self {
            Self::Raw(_) => Ok(()),
            Self::Sturnus(crowd) => close_all(crowd),
            Self::Secure(crowd) => close_all(crowd),
        }
    }
}

/// Closes every connection of a Sturnus crowd.
fn close_all<E: ClientEndpoint>(mut crowd: Crowd<SturnusPeer<E>>) -> BenchResult<()> {
    let close_at = now();
    for (peer, index) in crowd.peers.iter_mut().zip(crowd.first..) {
        peer.close(index, close_at, &mut crowd.shared);
    }
    crowd.shared.socket.flush()?;
    Ok(())
}

/// Makes a Sturnus client of each endpoint.
fn bind_all<E: ClientEndpoint>(
    shared: Shared,
    first: u32,
    begin: Instant,
    endpoints: impl Iterator<Item = BenchResult<E>>,
) -> BenchResult<Crowd<SturnusPeer<E>>> {
    let mut crowd = Crowd::<SturnusPeer<E>>::new(first, shared);
    for endpoint in endpoints {
        crowd.add(SturnusPeer {
            endpoint: endpoint?,
            conn: None,
            connected: false,
            next_send: begin,
            seq: 0,
        });
    }
    Ok(crowd)
}

/// Connects every client of `crowd`, at most `at_once` attempts in flight (0: all at once).
fn connect_all<E: ClientEndpoint>(
    crowd: &mut Crowd<SturnusPeer<E>>,
    at_once: usize,
    tick: &mut dyn FnMut() -> BenchResult<()>,
) -> BenchResult<Duration> {
    let at_once = if at_once == 0 { usize::MAX } else { at_once };
    let server = crowd.shared.server;
    let begin = now();
    let deadline = begin + CONNECT_TIMEOUT;
    let mut cursor = 0;
    crowd.reads_first = true;
    while crowd.shared.connected < crowd.peers.len() {
        let mut busy = cursor - crowd.shared.connected - crowd.shared.lost;
        let at = now();
        while busy < at_once && cursor < crowd.peers.len() {
            // The attempt starts now; its first packet goes out with the next turn's due
            // clients (a bounded number a turn, between reads of the answers).
            crowd.peers[cursor].conn = Some(crowd.peers[cursor].endpoint.connect(at, server)?);
            crowd.schedule(cursor, Some(at));
            cursor += 1;
            busy += 1;
        }
        crowd.turn(Duration::from_millis(5))?;
        tick()?;
        if now() > deadline || crowd.shared.lost > 0 {
            return Err(format!(
                "{} of {} clients connected ({} failed: {}); client socket: {:?}",
                crowd.shared.connected,
                crowd.peers.len(),
                crowd.shared.lost,
                if crowd.shared.lost_reasons.is_empty() {
                    "timed out".to_owned()
                } else {
                    crowd.shared.lost_reasons.join(", ")
                },
                crowd.shared.socket.stats()
            )
            .into());
        }
    }
    crowd.reads_first = false;
    Ok(now() - begin)
}

/// Clients per process: all of them in this one, unless it may run on several CPUs, when a
/// worker process per CPU takes a share (the clients of one process run on one thread).
fn clients_per_process(wanted: u64) -> u64 {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    wanted.div_ceil(cpus as u64).max(1)
}

/// The clients workload: `spec.clients` clients, in this process or, where it may use several
/// CPUs, spread over worker processes (`sturnus-bench crowd-worker`). Every client exists before
/// the first connects, so the connect phase (reported) is the handshakes alone; with
/// `--connect-at-once all` (the default) every process starts every attempt at once.
pub(crate) fn clients(
    spec: &Spec,
    server: SocketAddr,
    control: &mut dyn Link,
    run: u32,
) -> BenchResult<Record> {
    let baseline = first_rss_kib(server, start(control, run)?.rss_kib);
    let measured = run + 1;
    let duration = Duration::from_secs_f64(spec.duration_s);
    let per_process = clients_per_process(spec.clients);
    // The server's figures (CPU, memory) are read at its report, before the clients close.
    let (connect, sent, echoes, report) = if spec.clients <= per_process {
        let mut crowd = AnyCrowd::bind(spec, server, 0, spec.clients)?;
        let connect = crowd.connect(spec.connect_at_once, &mut || control.drive(&mut |_| {}))?;
        let _ = start(control, measured)?;
        let (sent, echoes) = crowd.run(duration, &mut || control.drive(&mut |_| {}))?;
        let report = finish(control, measured, sent)?;
        if let Err(e) = crowd.close() {
            // The run's figures are in hand: report them, and the failure beside them.
            eprintln!("sturnus-bench: closing the clients' connections failed: {e}");
        }
        (connect, sent, echoes, report)
    } else {
        let mut workers = Workers::spawn(spec, server, per_process)?;
        let _ = workers.gather("bound", control)?;
        let begin = now();
        workers.say("connect")?;
        let _ = workers.gather("ready", control)?;
        let connect = now() - begin;
        let _ = start(control, measured)?;
        workers.say("go")?;
        let mut totals = (0, 0);
        for line in workers.gather("done", control)? {
            let mut numbers = line.split_whitespace().map(str::parse::<u64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(s)), Some(Ok(e))) => totals = (totals.0 + s, totals.1 + e),
                _ => return Err(format!("unexpected worker output `done {line}`").into()),
            }
        }
        let report = finish(control, measured, totals.0)?;
        if let Err(e) = workers.say("close") {
            eprintln!("sturnus-bench: telling the workers to close failed: {e}");
        }
        (connect, totals.0, totals.1, report)
    };
    if !spec.raw {
        // The server takes the crowd's disconnects (about 0.1 s of its CPU at 100,000) before
        // whatever runs next, the raw-UDP server of a paired run, has its core.
        #[expect(clippy::disallowed_methods, reason = "a pause between two measured runs")]
        std::thread::sleep(CLOSE_SETTLE);
    }
    let mut record = Record::new(spec);
    record.fill_from_report(&report);
    record.clients = Some(spec.clients);
    record.messages_sent = sent;
    record.messages_received = echoes;
    record.echo_loss = Some(sent.saturating_sub(echoes));
    record.msgs_per_s = None;
    record.mb_per_s = None;
    record.rss_per_conn_bytes =
        Some(report.rss_kib.saturating_sub(baseline) as f64 * 1024.0 / spec.clients.max(1) as f64);
    if !spec.raw {
        record.connect_s = Some(connect.as_secs_f64());
        record.connects_per_s =
            (connect > Duration::ZERO).then(|| spec.clients as f64 / connect.as_secs_f64());
    }
    Ok(record)
}

/// How long a Sturnus crowd's run waits after closing its connections.
const CLOSE_SETTLE: Duration = Duration::from_secs(2);

/// The server's RSS before its first crowd (`rss_kib` the first time a server is asked about):
/// a repeated run's server still holds the memory the previous crowd's connections used (the
/// allocator keeps it), so the figure per connection is against the server before any.
fn first_rss_kib(server: SocketAddr, rss_kib: u64) -> u64 {
    static FIRST: std::sync::Mutex<Vec<(SocketAddr, u64)>> = std::sync::Mutex::new(Vec::new());
    let mut first = FIRST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&(_, kib)) = first.iter().find(|(addr, _)| *addr == server) {
        return kib;
    }
    first.push((server, rss_kib));
    rss_kib
}

/// A line from a worker, or `None` when its output ended.
type WorkerLine = (usize, Option<io::Result<String>>);

/// The worker processes of a run, and their output, merged.
struct Workers {
    children: Vec<Child>,
    lines: std::sync::mpsc::Receiver<WorkerLine>,
}

impl Workers {
    /// Starts workers for `spec.clients` clients, `per_process` each at most.
    fn spawn(spec: &Spec, server: SocketAddr, per_process: u64) -> BenchResult<Self> {
        let (tx, lines) = std::sync::mpsc::channel();
        let mut children = Vec::new();
        let mut left = spec.clients;
        while left > 0 {
            let count = left.min(per_process);
            let mut child = worker_command(spec, server, spec.clients - left, count)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let stdout: ChildStdout = child.stdout.take().ok_or("no worker stdout")?;
            let (tx, index) = (tx.clone(), children.len());
            let _ = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send((index, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((index, None));
            });
            children.push(child);
            left -= count;
        }
        Ok(Self { children, lines })
    }

    /// Waits for every worker to say `word`, keeping the control connection alive meanwhile;
    /// returns what followed the word on each line.
    fn gather(&mut self, word: &str, control: &mut dyn Link) -> BenchResult<Vec<String>> {
        let mut said: Vec<Option<String>> = vec![None; self.children.len()];
        while said.iter().any(Option::is_none) {
            control.drive(&mut |_| {})?;
            match self.lines.recv_timeout(Duration::from_millis(5)) {
                Ok((index, Some(line))) => {
                    let line = line?;
                    match line.strip_prefix(word) {
                        Some(rest) => said[index] = Some(rest.trim().to_owned()),
                        None => return Err(format!("worker {index} said `{line}`").into()),
                    }
                }
                // A worker that has said its last word ends.
                Ok((index, None)) if said[index].is_some() => {}
                Ok((index, None)) => {
                    let status = self.children[index].wait()?;
                    return Err(
                        format!("worker {index} ended ({status}) before saying `{word}`").into()
                    );
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("every worker ended early".into());
                }
            }
        }
        Ok(said.into_iter().flatten().collect())
    }

    /// Tells every worker `word`.
    fn say(&mut self, word: &str) -> BenchResult<()> {
        for child in &mut self.children {
            let stdin = child.stdin.as_mut().ok_or("no worker stdin")?;
            writeln!(stdin, "{word}")?;
            stdin.flush()?;
        }
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            // A worker still waiting for a word ends when its stdin closes.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// The command line of a worker holding clients `first..first + count`.
fn worker_command(spec: &Spec, server: SocketAddr, first: u64, count: u64) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| "sturnus-bench".into());
    let mut cmd = Command::new(exe);
    cmd.args(["crowd-worker", "--connect", &server.to_string(), "--workload", "clients"])
        .args(["--first", &first.to_string()])
        .args(["--clients", &count.to_string(), "--rate", &spec.rate.to_string()])
        .args(["--size", &spec.size.to_string(), "--qos", spec.qos.name()])
        .args(["--duration-s", &spec.duration_s.to_string()]);
    let at_once = match spec.connect_at_once {
        0 => "all".to_owned(),
        n => n.to_string(),
    };
    let _ = cmd.args(["--connect-at-once", &at_once]);
    if spec.raw {
        let _ = cmd.args(["--baseline", "raw-udp"]);
    }
    if let Some(secure) = &spec.secure {
        let hex: String = secure.key.iter().map(|b| format!("{b:02x}")).collect();
        let _ = cmd.args(["--netcode-key", &hex, "--protocol-id", &secure.protocol_id.to_string()]);
    }
    cmd
}

/// Reads one line from standard input and checks it is `word`.
fn expect_word(word: &str) -> BenchResult<()> {
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line)?;
    if line.trim() == word {
        Ok(())
    } else {
        Err(format!("expected `{word}`, got `{}`", line.trim()).into())
    }
}

/// The worker side: make `spec.clients` clients and say `bound`; on `connect`, connect them
/// all and say `ready`; on `go`, run, and say `done SENT ECHOES`; on `close`, close them.
pub(crate) fn worker(spec: &Spec, server: SocketAddr, first: u64) -> BenchResult<()> {
    let mut crowd = AnyCrowd::bind(spec, server, first, spec.clients)?;
    println!("bound");
    expect_word("connect")?;
    let connect = crowd.connect(spec.connect_at_once, &mut || Ok(()))?;
    println!("ready {:.3}", connect.as_secs_f64());
    // Keep the clients answering (acks, keepalives) until every worker is ready.
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = io::stdin().read_line(&mut line);
        let _ = tx.send(line);
    });
    crowd.wait_for(&mut || match rx.try_recv() {
        Ok(line) if line.trim() == "go" => Ok(true),
        Ok(line) => Err(format!("expected `go`, got `{}`", line.trim()).into()),
        Err(std::sync::mpsc::TryRecvError::Empty) => Ok(false),
        Err(std::sync::mpsc::TryRecvError::Disconnected) => Err("no `go` came".into()),
    })?;
    let (sent, echoes) = crowd.run(Duration::from_secs_f64(spec.duration_s), &mut || Ok(()))?;
    println!("done {sent} {echoes}");
    expect_word("close")?;
    crowd.close()
}

//! The two state-update kinds keep the promises of their definitions:
//!
//! - sender: of the states queued before a packet goes out, only the youngest is sent;
//! - receiver: of the states that arrived before the application polls, only the youngest is
//!   delivered (and an older one arriving after a newer one never is);
//! - `ReliableStateUpdate`: a resend carries the newest state, never the lost older one.
//!
//! Each is checked on the sans-IO endpoint in virtual time, then through `Host` and
//! `ThreadedHost` over the in-process loopback network. Every state is large enough to need a
//! packet of its own, so a state the sender should have skipped would show up on the wire as a
//! datagram of its own; the observing receiver polls after every single datagram, so what it
//! reports is what the wire carried.

mod realtime;
use sturnus_testkit::sim;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use realtime::{deadline, past};
use sim::{Owned, Sim};
use sturnus_netem::LinkConfig;
use sturnus_socket::{
    LoopbackSocket, LoopbackSocketFactory, Readiness, RecvBatch, RecvMeta, SendStatus, Socket,
    SocketError, SocketFactory, SocketStats, SocketWaker,
};
use sturnus_transport::{
    ChannelId, ConnectionId, EndpointConfig, Host, HostEvent, Qos, ThreadedHost,
};

/// The state channel.
const STATE: ChannelId = ChannelId(0);
/// A reliable channel for markers.
const TICK: ChannelId = ChannelId(1);
/// Bytes of a state: more than half of a 1,200-byte packet, so two never share one.
const STATE_LEN: usize = 700;
const KINDS: [Qos; 2] = [Qos::StateUpdate, Qos::ReliableStateUpdate];

fn config(kind: Qos) -> EndpointConfig {
    EndpointConfig { channels: vec![kind, Qos::ReliableSequenced], ..EndpointConfig::default() }
}

/// State number `n`.
fn state(n: u32) -> Vec<u8> {
    let mut p = vec![u8::try_from(n % 251).unwrap(); STATE_LEN];
    p[..4].copy_from_slice(&n.to_le_bytes());
    p
}

fn number(payload: &[u8]) -> u32 {
    assert_eq!(payload.len(), STATE_LEN, "a state arrives whole");
    u32::from_le_bytes(payload[..4].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// The endpoint, in virtual time.

/// Connects a client to a server over perfect links.
fn connected(kind: Qos) -> (Sim, usize, usize, ConnectionId) {
    let mut sim =
        Sim::new(LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() }, 1);
    let server = sim.add(config(kind));
    let client = sim.add(config(kind));
    let (conn, _) = sim.connect(client, server);
    (sim, server, client, conn)
}

/// Everything `node` has to send now, taken off the wire (not delivered).
fn transmit(sim: &mut Sim, node: usize) -> Vec<Vec<u8>> {
    sim.capture(node).into_iter().map(|(_, datagram)| datagram).collect()
}

/// Hands `datagrams` from `from` to `to`, then polls `to`'s events; returns the states it
/// delivered.
fn deliver(sim: &mut Sim, from: usize, to: usize, datagrams: &[Vec<u8>]) -> Vec<u32> {
    let (now, addr) = (sim.now, sim.addr(from));
    let endpoint = &mut sim.nodes[to].endpoint;
    for datagram in datagrams {
        endpoint.handle_datagram(now, addr, datagram);
    }
    let mut states = Vec::new();
    while let Some(event) = endpoint.poll_event() {
        if let sturnus_transport::Event::Data { channel: STATE, payload, .. } = event {
            states.push(number(payload));
        }
    }
    states
}

#[test]
fn endpoint_sender_sends_only_the_youngest_queued_state() {
    for kind in KINDS {
        let (mut sim, server, client, conn) = connected(kind);
        for n in 0..3 {
            sim.nodes[client].endpoint.send(conn, STATE, &state(n)).unwrap();
        }
        let wire = transmit(&mut sim, client);
        // Delivered one datagram at a time, so the receiver cannot merge anything.
        let seen: Vec<u32> = wire
            .iter()
            .flat_map(|d| deliver(&mut sim, client, server, std::slice::from_ref(d)))
            .collect();
        assert_eq!(seen, [2], "{kind}: the wire carried only the youngest state");
    }
}

#[test]
fn endpoint_receiver_delivers_only_the_youngest_arrived_state() {
    for kind in KINDS {
        let (mut sim, server, client, conn) = connected(kind);
        // Three states, each sent before the next is queued: three datagrams.
        let mut wire = Vec::new();
        for n in 0..3 {
            sim.nodes[client].endpoint.send(conn, STATE, &state(n)).unwrap();
            let sent = transmit(&mut sim, client);
            assert_eq!(sent.len(), 1, "{kind}: one datagram per state");
            wire.extend(sent);
        }
        // All three arrive before the application polls: only the youngest is delivered.
        assert_eq!(deliver(&mut sim, client, server, &wire), [2], "{kind}: arrived together");

        // Older states arriving after a newer one was delivered are dropped.
        let mut wire = Vec::new();
        for n in 3..6 {
            sim.nodes[client].endpoint.send(conn, STATE, &state(n)).unwrap();
            wire.extend(transmit(&mut sim, client));
        }
        assert_eq!(deliver(&mut sim, client, server, &wire[2..]), [5]);
        assert_eq!(
            deliver(&mut sim, client, server, &wire[..2]),
            [0u32; 0],
            "{kind}: older after newer"
        );
    }
}

#[test]
fn endpoint_reliable_state_update_resends_the_newest_state_not_the_lost_one() {
    let (mut sim, server, client, conn) = connected(Qos::ReliableStateUpdate);
    // A blackout from client to server: three states are sent, 20 ms apart, and all lost.
    sim.set_link(client, server, LinkConfig { loss: 1.0, ..LinkConfig::perfect() });
    for n in 0..3 {
        sim.nodes[client].endpoint.send(conn, STATE, &state(n)).unwrap();
        let at = sim.now + Duration::from_millis(20);
        sim.advance_to(at);
    }
    assert!(sim.received(server, STATE).is_empty(), "the blackout lost every state");
    sim.set_link(
        client,
        server,
        LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() },
    );
    // Once the link is back, what arrives is resent (each state's first copy was lost), and
    // it is the newest state only, however long we watch.
    assert!(sim.run_until(Duration::from_secs(30), |sim| !sim.received(server, STATE).is_empty()));
    sim.run_for(Duration::from_secs(5));
    let got: Vec<u32> = sim.received(server, STATE).iter().map(|p| number(p)).collect();
    assert_eq!(got, [2], "only the newest state was resent");
    let stats = sim.nodes[client].endpoint.connection_stats(conn).unwrap();
    assert!(stats.resends > 0, "the state arrived by a resend");
    assert!(!sim.nodes[server].events.iter().any(|e| matches!(e, Owned::Disconnected { .. })));
}

// ---------------------------------------------------------------------------------------------
// The drivers, over the loopback network, in real time (only ever waiting for a condition).

/// A loopback socket that can read one datagram per call (so its host hands out what each
/// datagram carried before reading the next) and can black out its sending side.
#[derive(Debug)]
struct TestSocket {
    inner: LoopbackSocket,
    one_at_a_time: bool,
    blackout: Arc<AtomicBool>,
    /// Datagrams of state size dropped by the blackout.
    dropped_states: Arc<AtomicUsize>,
}

impl TestSocket {
    fn new(inner: LoopbackSocket) -> Self {
        Self {
            inner,
            one_at_a_time: false,
            blackout: Arc::default(),
            dropped_states: Arc::default(),
        }
    }
}

impl Socket for TestSocket {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        if self.blackout.load(Ordering::SeqCst) {
            if payload.len() >= STATE_LEN {
                self.dropped_states.fetch_add(1, Ordering::SeqCst);
            }
            return Ok(SendStatus::Sent);
        }
        self.inner.send_to(payload, to)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        self.inner.recv_from(buf)
    }
    fn recv_batch(&mut self, batch: &mut RecvBatch) -> Result<usize, SocketError> {
        let mut budget = if self.one_at_a_time { 1 } else { usize::MAX };
        batch.fill_with(|buf| {
            if budget == 0 {
                return Ok(None);
            }
            budget -= 1;
            self.inner.recv_from(buf)
        })
    }
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        self.inner.wait_readable(timeout)
    }
    fn stats(&self) -> SocketStats {
        self.inner.stats()
    }
    fn waker(&self) -> Option<SocketWaker> {
        self.inner.waker()
    }
}

/// What the tests need of a driver.
trait Driver {
    fn connect(&mut self, remote: SocketAddr) -> ConnectionId;
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, payload: &[u8]);
    fn flush(&mut self);
    fn next(&mut self) -> Option<Owned>;
    fn pause(&mut self);
}

fn owned(event: HostEvent<'_>) -> Option<Owned> {
    match event {
        HostEvent::Nothing => None,
        HostEvent::Connect(conn) => Some(Owned::Connected(conn)),
        HostEvent::Data { conn, channel, payload } => {
            Some(Owned::Data { conn, channel, payload: payload.to_vec() })
        }
        HostEvent::Disconnect(conn, reason) => Some(Owned::Disconnected { conn, reason }),
        other => panic!("unexpected {other:?}"),
    }
}

impl<S: Socket> Driver for Host<S> {
    fn connect(&mut self, remote: SocketAddr) -> ConnectionId {
        Host::connect(self, remote).unwrap()
    }
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, payload: &[u8]) {
        Host::send(self, conn, channel, payload).unwrap();
    }
    fn flush(&mut self) {
        Host::flush(self).unwrap();
    }
    fn next(&mut self) -> Option<Owned> {
        owned(self.receive().unwrap())
    }
    fn pause(&mut self) {
        self.wait(Some(Duration::from_millis(1))).unwrap();
    }
}

impl Driver for ThreadedHost {
    fn connect(&mut self, remote: SocketAddr) -> ConnectionId {
        ThreadedHost::connect(self, remote).unwrap()
    }
    fn send(&mut self, conn: ConnectionId, channel: ChannelId, payload: &[u8]) {
        ThreadedHost::send(self, conn, channel, payload).unwrap();
    }
    fn flush(&mut self) {
        ThreadedHost::flush(self);
    }
    fn next(&mut self) -> Option<Owned> {
        owned(self.receive().unwrap())
    }
    fn pause(&mut self) {
        self.wait(Some(Duration::from_millis(1)));
    }
}

/// Drives every host until `done` holds, collecting each one's events.
fn drive(
    hosts: &mut [&mut dyn Driver],
    events: &mut [Vec<Owned>],
    mut done: impl FnMut(&[Vec<Owned>]) -> bool,
) {
    let end = deadline();
    loop {
        for (host, events) in hosts.iter_mut().zip(events.iter_mut()) {
            while let Some(event) = host.next() {
                if let Owned::Disconnected { conn, reason } = event {
                    panic!("{conn} lost: {reason:?}");
                }
                events.push(event);
            }
        }
        if done(events) {
            return;
        }
        assert!(!past(end), "gave up waiting: {events:?}");
        hosts[0].pause();
    }
}

fn states(events: &[Owned]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Owned::Data { channel: STATE, payload, .. } => Some(number(payload)),
            _ => None,
        })
        .collect()
}

fn connected_to(events: &[Owned]) -> Option<ConnectionId> {
    events.iter().find_map(|e| match e {
        Owned::Connected(conn) => Some(*conn),
        _ => None,
    })
}

/// An observer bound at `addr` that hands out what each datagram carried before reading the
/// next, and a socket for a peer of it (with a blackout switch and a counter).
fn observer(
    kind: Qos,
    factory: &LoopbackSocketFactory,
    addr: &str,
) -> (Host<TestSocket>, TestSocket) {
    let mut socket = TestSocket::new(factory.server_socket(addr.parse().unwrap()).unwrap());
    socket.one_at_a_time = true;
    let observer = Host::new(config(kind), socket).unwrap();
    let peer = TestSocket::new(factory.client_socket(observer.local_addr()).unwrap());
    (observer, peer)
}

/// The sender side of each test, as either driver.
fn sender(threaded: bool, kind: Qos, socket: TestSocket) -> Box<dyn Driver> {
    let config = EndpointConfig { accept_connections: false, ..config(kind) };
    if threaded {
        Box::new(ThreadedHost::new(config, socket).unwrap())
    } else {
        Box::new(Host::new(config, socket).unwrap())
    }
}

/// A sender (of either driver) over `socket`, connected to `observer`.
fn connected_sender(
    threaded: bool,
    kind: Qos,
    socket: TestSocket,
    observer: &mut Host<TestSocket>,
) -> (Box<dyn Driver>, ConnectionId) {
    let mut sender = sender(threaded, kind, socket);
    let conn = sender.connect(observer.local_addr());
    let mut events = [Vec::new(), Vec::new()];
    drive(&mut [&mut *sender, observer], &mut events, |e| {
        connected_to(&e[0]).is_some() && connected_to(&e[1]).is_some()
    });
    (sender, conn)
}

#[test]
fn drivers_send_only_the_youngest_queued_state() {
    for threaded in [false, true] {
        for kind in KINDS {
            let factory = LoopbackSocketFactory::new();
            let (mut observer, socket) = observer(kind, &factory, "10.0.0.1:1");
            let (mut sender, conn) = connected_sender(threaded, kind, socket, &mut observer);
            for n in 0..3 {
                sender.send(conn, STATE, &state(n));
            }
            sender.flush();
            let mut events = [Vec::new(), Vec::new()];
            drive(&mut [&mut observer, &mut *sender], &mut events, |e| states(&e[0]).contains(&2));
            let context = if threaded { "ThreadedHost" } else { "Host" };
            assert_eq!(states(&events[0]), [2], "{context}, {kind}: only the youngest was sent");
        }
    }
}

#[test]
fn drivers_resend_the_newest_reliable_state_not_the_lost_one() {
    let kind = Qos::ReliableStateUpdate;
    for threaded in [false, true] {
        let factory = LoopbackSocketFactory::new();
        let (mut observer, socket) = observer(kind, &factory, "10.0.0.1:1");
        let (blackout, dropped) =
            (Arc::clone(&socket.blackout), Arc::clone(&socket.dropped_states));
        let (mut sender, conn) = connected_sender(threaded, kind, socket, &mut observer);
        // Three states go out, one after the other, and are lost.
        blackout.store(true, Ordering::SeqCst);
        let mut events = [Vec::new(), Vec::new()];
        for n in 0..3 {
            let before = dropped.load(Ordering::SeqCst);
            sender.send(conn, STATE, &state(n));
            sender.flush();
            drive(&mut [&mut *sender, &mut observer], &mut events, |_| {
                dropped.load(Ordering::SeqCst) > before
            });
        }
        blackout.store(false, Ordering::SeqCst);
        // Whatever arrives now is a resend: it must be the newest state, and nothing older
        // may come before it.
        drive(&mut [&mut observer, &mut *sender], &mut events, |e| states(&e[0]).contains(&2));
        let context = if threaded { "ThreadedHost" } else { "Host" };
        assert_eq!(states(&events[0]), [2], "{context}: the resend carried the newest state");
    }
}

#[test]
fn a_host_that_polls_late_gets_only_the_youngest_state() {
    for kind in KINDS {
        let factory = LoopbackSocketFactory::new();
        let mut reader = Host::bind(config(kind), &factory, "10.0.0.1:1".parse().unwrap()).unwrap();
        let (mut sender, conn) =
            Host::connect_to(config(kind), &factory, reader.local_addr()).unwrap();
        let mut events = [Vec::new(), Vec::new()];
        drive(&mut [&mut reader, &mut sender], &mut events, |e| {
            connected_to(&e[0]).is_some() && connected_to(&e[1]).is_some()
        });
        // Each state leaves in a datagram of its own (the loopback network delivers at once)
        // while the reader does not poll.
        for n in 0..3 {
            Host::send(&mut sender, conn, STATE, &state(n)).unwrap();
            Host::flush(&mut sender).unwrap();
        }
        let mut events = [Vec::new()];
        drive(&mut [&mut reader], &mut events, |e| !states(&e[0]).is_empty());
        assert_eq!(states(&events[0]), [2], "{kind}: a late reader gets the youngest state");
    }
}

#[test]
fn a_threaded_host_that_polls_late_gets_only_the_youngest_state() {
    for kind in KINDS {
        let factory = LoopbackSocketFactory::new();
        let mut reader =
            ThreadedHost::bind(config(kind), &factory, "10.0.0.1:1".parse().unwrap()).unwrap();
        let (mut sender, conn) =
            Host::connect_to(config(kind), &factory, reader.local_addr()).unwrap();
        let mut events = [Vec::new(), Vec::new()];
        drive(&mut [&mut reader, &mut sender], &mut events, |e| {
            connected_to(&e[0]).is_some() && connected_to(&e[1]).is_some()
        });
        // The reader's I/O thread takes each state out of its endpoint before the next one
        // arrives (so the endpoint has nothing to supersede): each state rides with a reliable
        // tick, and the next is sent only once that packet is acknowledged, which the I/O
        // thread does only after it has taken the packet's messages.
        for n in 0..3 {
            Host::send(&mut sender, conn, STATE, &state(n)).unwrap();
            Host::send(&mut sender, conn, TICK, &n.to_le_bytes()).unwrap();
            Host::flush(&mut sender).unwrap();
            let end = deadline();
            while sender.connection_stats(conn).unwrap().in_flight > 0 {
                while let HostEvent::Connect(_) | HostEvent::Data { .. } = sender.receive().unwrap()
                {
                }
                assert!(!past(end), "{kind}: tick {n} was never acknowledged");
                sender.wait(Some(Duration::from_millis(1))).unwrap();
            }
        }
        // A round trip through the I/O thread, which takes commands only between the rounds
        // that publish events: everything it took before is now in the handoff.
        let sender_addr = sender.local_addr();
        assert!(ThreadedHost::connect(&mut reader, sender_addr).is_err(), "already connected");
        let mut events = [Vec::new()];
        drive(&mut [&mut reader], &mut events, |e| !states(&e[0]).is_empty());
        // Drain what else is there.
        while let Some(event) = Driver::next(&mut reader) {
            events[0].push(event);
        }
        assert_eq!(states(&events[0]), [2], "{kind}: a late reader gets the youngest state");
    }
}

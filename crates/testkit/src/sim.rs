//! The transport-level simulation: [`Sim`], endpoints on a [`SimNet`] driven by the harness
//! itself, with their events copied out into [`Node::events`].
//!
//! The clock jumps straight to the next delivery or timer; each [`step`](Sim::step) delivers
//! what is due, runs due timers and sends what that made due. A transport test acts on
//! `sim.nodes[i].endpoint` (an [`Endpoint`](sturnus_transport::Endpoint) through
//! [`SimEndpoint`]) between steps and asserts on what arrived.
//!
//! ```
//! use sturnus_netem::LinkConfig;
//! use sturnus_testkit::sim::{self, Sim};
//! use sturnus_transport::{EndpointConfig, Qos};
//!
//! let mut sim = Sim::new(LinkConfig::perfect(), 1);
//! let config = EndpointConfig { channels: vec![Qos::ReliableSequenced], ..Default::default() };
//! let server = sim.add(config.clone());
//! let client = sim.add(config);
//! let (conn, _) = sim.connect(client, server);
//! sim.nodes[client].endpoint.send(conn, sim::channel(0), b"hi").unwrap();
//! sim.run_for(std::time::Duration::from_millis(100));
//! assert_eq!(sim.received(server, sim::channel(0)), vec![b"hi".to_vec()]);
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netem::{LinkConfig, LinkStats};
use sturnus_transport::proto::codec::Reader;
use sturnus_transport::proto::packet::{ACK_DELAY_RECORD, CONTROL_BIT, DataHeader, RecordHeader};
use sturnus_transport::{ChannelId, ConnectionId, DisconnectReason, EndpointConfig, Event, Qos};

use crate::net::{SimEndpoint, SimNet};

/// An event with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    /// [`Event::Connected`].
    Connected(ConnectionId),
    /// [`Event::Data`].
    Data {
        /// The connection.
        conn: ConnectionId,
        /// The channel.
        channel: ChannelId,
        /// The message.
        payload: Vec<u8>,
    },
    /// [`Event::Disconnected`].
    Disconnected {
        /// The connection.
        conn: ConnectionId,
        /// Why.
        reason: DisconnectReason,
    },
}

impl Owned {
    /// The event, its payload copied.
    ///
    /// # Panics
    ///
    /// On a kind of event this harness does not know yet.
    #[must_use]
    pub fn from_event(event: &Event<'_>) -> Self {
        match *event {
            Event::Connected(conn) => Self::Connected(conn),
            Event::Data { conn, channel, payload } => {
                Self::Data { conn, channel, payload: payload.to_vec() }
            }
            Event::Disconnected { conn, reason } => Self::Disconnected { conn, reason },
            ref other => panic!("unexpected event {other:?}"),
        }
    }
}

/// One endpoint of a [`Sim`].
#[derive(Debug)]
pub struct Node {
    /// Its address (`10.0.0.N:7777`, or the one given to [`Sim::add_at`]).
    pub addr: SocketAddr,
    /// The endpoint (it dereferences to the sans-IO [`Endpoint`](sturnus_transport::Endpoint)).
    pub endpoint: SimEndpoint,
    /// Every event it reported, in order (tests may take them out).
    pub events: Vec<Owned>,
}

/// Endpoints on a [`SimNet`], stepped by the harness: see the [module documentation](self).
///
/// The fields `now`, `start` and `sent` mirror the net; they are brought up to date by every
/// method that moves the clock or sends.
#[derive(Debug)]
pub struct Sim {
    /// The virtual time.
    pub now: Instant,
    /// The virtual time the simulation started at.
    pub start: Instant,
    /// The endpoints, by index.
    pub nodes: Vec<Node>,
    /// Per node: datagrams sent and their bytes.
    pub sent: Vec<(u64, u64)>,
    net: SimNet,
}

impl Sim {
    /// A simulation whose links default to `link`; `seed` seeds the links (and, mixed with the
    /// node index, the endpoints).
    #[must_use]
    pub fn new(link: LinkConfig, seed: u64) -> Self {
        let net = SimNet::new(link, seed);
        Self { now: net.now(), start: net.start(), nodes: Vec::new(), sent: Vec::new(), net }
    }

    /// The network underneath.
    #[must_use]
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Adds an endpoint; returns its index.
    ///
    /// # Panics
    ///
    /// If `config` is not valid.
    pub fn add(&mut self, config: EndpointConfig) -> usize {
        let endpoint = self.net.endpoint(config);
        self.push(endpoint)
    }

    /// Adds an endpoint at `addr` (see [`SimNet::endpoint_at`]); returns its index.
    ///
    /// # Panics
    ///
    /// If `config` is not valid or `addr` is taken.
    pub fn add_at(&mut self, addr: SocketAddr, config: EndpointConfig) -> usize {
        let endpoint = self.net.endpoint_at(addr, config);
        self.push(endpoint)
    }

    fn push(&mut self, endpoint: SimEndpoint) -> usize {
        self.nodes.push(Node { addr: endpoint.addr(), endpoint, events: Vec::new() });
        self.sent.push((0, 0));
        self.nodes.len() - 1
    }

    /// Drops the nodes from index `len` on (their endpoints leave the net, which frees their
    /// links) and gives back the memory that held them, so that the nodes left are what a heap
    /// measurement sees of the simulation (besides the net's few bytes per endpoint it had).
    pub fn truncate(&mut self, len: usize) {
        self.nodes.truncate(len);
        self.nodes.shrink_to_fit();
        self.sent.truncate(len);
        self.sent.shrink_to_fit();
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        self.net.set_link(self.addr(from), self.addr(to), config);
    }

    /// The counters of the link from `from` to `to`, if it has carried anything.
    #[must_use]
    pub fn link_stats(&self, from: usize, to: usize) -> Option<LinkStats> {
        self.net.link_stats(self.addr(from), self.addr(to))
    }

    /// The address of node `node`.
    #[must_use]
    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// Virtual time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Brings the mirrored fields up to date.
    fn sync(&mut self) {
        self.now = self.net.now();
        for (sent, node) in self.sent.iter_mut().zip(&self.nodes) {
            let count = self.net.sent(node.addr);
            *sent = (count.datagrams, count.bytes);
        }
    }

    /// Sends what every endpoint has to send and collects their events.
    fn flush(&mut self) {
        let now = self.now;
        for node in &mut self.nodes {
            node.endpoint.transmit(now);
            while let Some(event) = node.endpoint.poll_event() {
                node.events.push(Owned::from_event(&event));
            }
        }
        self.sync();
    }

    /// Handles every delivery and timer due up to `at`, then sets the clock to `at` (for
    /// tests that act at exact times).
    pub fn advance_to(&mut self, at: Instant) {
        loop {
            self.flush();
            if self.net.next_deadline().is_none_or(|next| next > at) || !self.step() {
                break;
            }
        }
        self.net.advance_to(at);
        self.sync();
    }

    /// Advances to the next delivery or timer and handles it. Returns `false` when nothing is
    /// scheduled at all.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.net.next_deadline() else {
            return false;
        };
        self.net.advance_to(next);
        self.now = self.net.now();
        let now = self.now;
        for node in &mut self.nodes {
            node.endpoint.receive(now);
        }
        for node in &mut self.nodes {
            node.endpoint.run_timers(now);
        }
        self.flush();
        true
    }

    /// Steps until `done` holds or `limit` of simulated time has passed; returns whether `done`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= deadline || !self.step() {
                return done(self);
            }
        }
    }

    /// Runs for `duration` of simulated time (at least; it stops at the first step past it, or
    /// when nothing is scheduled).
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        while self.now < deadline {
            if !self.step() {
                break;
            }
        }
    }

    /// Connects `client` to `server` and runs until both report it. Returns (client-side id,
    /// server-side id); both `Connected` events are taken out of the nodes' events.
    ///
    /// # Panics
    ///
    /// If the connection is not established within 30 s of simulated time.
    pub fn connect(&mut self, client: usize, server: usize) -> (ConnectionId, ConnectionId) {
        let addr = self.addr(server);
        let now = self.now;
        let id = self.nodes[client].endpoint.connect(now, addr).expect("room to connect");
        let ok = self.run_until(Duration::from_secs(30), |sim| {
            sim.nodes[client].events.contains(&Owned::Connected(id))
                && sim.nodes[server].events.iter().any(|e| matches!(e, Owned::Connected(_)))
        });
        assert!(ok, "the connection was not established: {:?}", self.nodes[client].events);
        let server_id = self.nodes[server]
            .events
            .iter()
            .find_map(|e| match e {
                Owned::Connected(c) => Some(*c),
                _ => None,
            })
            .expect("checked above");
        self.nodes[client].events.retain(|e| *e != Owned::Connected(id));
        self.nodes[server].events.retain(|e| *e != Owned::Connected(server_id));
        (id, server_id)
    }

    /// Payloads received by `node` on `channel`, in delivery order.
    #[must_use]
    pub fn received(&self, node: usize, channel: ChannelId) -> Vec<Vec<u8>> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                Owned::Data { channel: c, payload, .. } if *c == channel => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    /// Everything `node` has to send now, taken off the wire (not delivered, not counted as
    /// sent): (destination, datagram).
    pub fn capture(&mut self, node: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let now = self.now;
        self.nodes[node].endpoint.capture(now)
    }
}

/// Channel `i`.
///
/// # Panics
///
/// Past 255.
#[must_use]
pub fn channel(i: usize) -> ChannelId {
    ChannelId(u8::try_from(i).expect("at most 256 channels"))
}

/// The channel of kind `qos` in a layout of all kinds in `Qos::ALL` order.
#[must_use]
pub fn channel_of(qos: Qos) -> ChannelId {
    channel(Qos::ALL.iter().position(|q| *q == qos).expect("every kind is in Qos::ALL"))
}

/// Whether a datagram is a data packet carrying the last fragment of a message (for wires
/// that drop those, so that messages stay partial).
#[must_use]
pub fn carries_a_last_fragment(datagram: &[u8], channels: &[Qos]) -> bool {
    if datagram.first().is_none_or(|b| b & CONTROL_BIT != 0) {
        return false;
    }
    let mut r = Reader::new(datagram);
    if DataHeader::decode(&mut r).is_err() {
        return false;
    }
    while !r.is_empty() && r.peek() != Some(ACK_DELAY_RECORD) {
        let Ok((record, _)) = RecordHeader::decode(&mut r, channels) else { return false };
        if record.fragment.is_some_and(|f| f.index + 1 == f.count) {
            return true;
        }
    }
    false
}

//! A deterministic network simulation: endpoints joined by sturnus-netem links, on a virtual
//! clock that jumps straight to the next delivery or timer. No sockets, no sleeping, no wall
//! time: a run depends only on its seeds.
#![allow(dead_code, reason = "each test file uses the part of the harness it needs")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netem::{Link, LinkConfig};
use sturnus_transport::proto::codec::Reader;
use sturnus_transport::proto::packet::{CONTROL_BIT, DataHeader, RecordHeader};
use sturnus_transport::{
    ChannelId, ConnectionId, DisconnectReason, Endpoint, EndpointConfig, Event, Qos,
};

/// An event with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owned {
    Connected(ConnectionId),
    Data { conn: ConnectionId, channel: ChannelId, payload: Vec<u8> },
    Disconnected { conn: ConnectionId, reason: DisconnectReason },
}

pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    pub(crate) endpoint: Endpoint,
    pub(crate) events: Vec<Owned>,
}

pub(crate) struct Sim {
    pub(crate) now: Instant,
    pub(crate) start: Instant,
    pub(crate) nodes: Vec<Node>,
    links: HashMap<(usize, usize), Link<Vec<u8>>>,
    default_link: LinkConfig,
    seed: u64,
    buf: Vec<u8>,
    /// Datagrams each node sent, and their bytes.
    pub(crate) sent: Vec<(u64, u64)>,
}

#[expect(clippy::disallowed_methods, reason = "the virtual clock needs a starting instant")]
fn origin() -> Instant {
    Instant::now()
}

impl Sim {
    /// A simulation whose links default to `link`; `seed` seeds the links (and, mixed with the
    /// node index, the endpoints).
    pub(crate) fn new(link: LinkConfig, seed: u64) -> Self {
        let start = origin();
        Self {
            now: start,
            start,
            nodes: Vec::new(),
            links: HashMap::new(),
            default_link: link,
            seed,
            buf: vec![0; 65_536],
            sent: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, config: EndpointConfig) -> usize {
        let index = self.nodes.len();
        let secrets_seed = self.seed.wrapping_mul(0x9E37_79B9).wrapping_add(index as u64);
        let addr: SocketAddr = format!("10.0.0.{}:7777", index + 1).parse().unwrap();
        self.nodes.push(Node {
            addr,
            endpoint: Endpoint::with_deterministic_secrets_for_tests(
                config,
                self.now,
                secrets_seed,
            )
            .unwrap(),
            events: Vec::new(),
        });
        self.sent.push((0, 0));
        index
    }

    /// Sets the link from `from` to `to` (one direction).
    pub(crate) fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        match self.links.get_mut(&(from, to)) {
            Some(link) => link.set_config(config).unwrap(),
            None => {
                let seed = self.seed ^ ((from as u64) << 32 | to as u64);
                self.links.insert((from, to), Link::new(config, seed).unwrap());
            }
        }
    }

    fn link(&mut self, from: usize, to: usize) -> &mut Link<Vec<u8>> {
        let seed = self.seed ^ ((from as u64) << 32 | to as u64);
        let config = self.default_link.clone();
        self.links.entry((from, to)).or_insert_with(|| Link::new(config, seed).unwrap())
    }

    /// The counters of the link from `from` to `to`, if it has carried anything.
    pub(crate) fn link_stats(&self, from: usize, to: usize) -> Option<sturnus_netem::LinkStats> {
        self.links.get(&(from, to)).map(Link::stats)
    }

    pub(crate) fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Sends what every endpoint has to send and collects their events.
    fn flush(&mut self) {
        for from in 0..self.nodes.len() {
            loop {
                let now = self.now;
                let Some(t) = self.nodes[from].endpoint.poll_transmit(now, &mut self.buf) else {
                    break;
                };
                self.sent[from].0 += 1;
                self.sent[from].1 += t.len as u64;
                let datagram = self.buf[..t.len].to_vec();
                if let Some(to) = self.nodes.iter().position(|n| n.addr == t.destination) {
                    let _ = self.link(from, to).send(now, datagram);
                }
            }
            let node = &mut self.nodes[from];
            while let Some(event) = node.endpoint.poll_event() {
                node.events.push(match event {
                    Event::Connected(conn) => Owned::Connected(conn),
                    Event::Data { conn, channel, payload } => {
                        Owned::Data { conn, channel, payload: payload.to_vec() }
                    }
                    Event::Disconnected { conn, reason } => Owned::Disconnected { conn, reason },
                    other => panic!("unexpected event {other:?}"),
                });
            }
        }
    }

    /// When the next delivery or timer is due, if any.
    fn next_event(&self) -> Option<Instant> {
        let next_link = self.links.values().filter_map(Link::poll_timeout).min();
        let next_timer = self.nodes.iter().filter_map(|n| n.endpoint.poll_timeout()).min();
        next_link.into_iter().chain(next_timer).min()
    }

    /// Handles every delivery and timer due up to `at`, then sets the clock to `at` (for
    /// tests that act at exact times).
    pub(crate) fn advance_to(&mut self, at: Instant) {
        loop {
            self.flush();
            if self.next_event().is_none_or(|next| next > at) || !self.step() {
                break;
            }
        }
        self.now = self.now.max(at);
    }

    /// Advances to the next delivery or timer and handles it. Returns `false` when nothing is
    /// scheduled at all.
    pub(crate) fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let keys: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (from, to) in keys {
            while let Some(datagram) = self.links.get_mut(&(from, to)).unwrap().poll_deliver(now) {
                let addr = self.nodes[from].addr;
                self.nodes[to].endpoint.handle_datagram(now, addr, &datagram);
            }
        }
        for node in &mut self.nodes {
            if node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                node.endpoint.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Steps until `done` holds or `limit` of simulated time has passed; returns whether `done`.
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
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

    /// Runs for `duration` of simulated time.
    pub(crate) fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        while self.now < deadline {
            if !self.step() {
                break;
            }
            // Timers keep the simulation alive (keepalives); stop exactly at the deadline.
        }
    }

    /// Connects `client` to `server` and runs until both report it. Returns (client-side id,
    /// server-side id).
    pub(crate) fn connect(&mut self, client: usize, server: usize) -> (ConnectionId, ConnectionId) {
        let addr = self.addr(server);
        let now = self.now;
        let id = self.nodes[client].endpoint.connect(now, addr).unwrap();
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
            .unwrap();
        self.nodes[client].events.retain(|e| *e != Owned::Connected(id));
        self.nodes[server].events.retain(|e| *e != Owned::Connected(server_id));
        (id, server_id)
    }

    /// Payloads received by `node` on `channel`, in delivery order.
    pub(crate) fn received(&self, node: usize, channel: ChannelId) -> Vec<Vec<u8>> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                Owned::Data { channel: c, payload, .. } if *c == channel => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Channel `i` (panics past 254).
pub(crate) fn channel(i: usize) -> ChannelId {
    ChannelId(u8::try_from(i).expect("at most 255 channels"))
}

/// The channel of kind `qos` in a layout of all kinds in `Qos::ALL` order.
pub(crate) fn channel_of(qos: Qos) -> ChannelId {
    channel(Qos::ALL.iter().position(|q| *q == qos).expect("every kind"))
}

/// Whether a datagram is a data packet carrying the last fragment of a message (for wires
/// that drop those, so that messages stay partial).
pub(crate) fn carries_a_last_fragment(datagram: &[u8], channels: &[Qos]) -> bool {
    if datagram.first().is_none_or(|b| b & CONTROL_BIT != 0) {
        return false;
    }
    let mut r = Reader::new(datagram);
    if DataHeader::decode(&mut r).is_err() {
        return false;
    }
    while !r.is_empty() {
        let Ok((record, _)) = RecordHeader::decode(&mut r, channels) else { return false };
        if record.fragment.is_some_and(|f| f.index + 1 == f.count) {
            return true;
        }
    }
    false
}

//! [`Pair`]: two connected endpoints and a lossless wire that allocates nothing: for the
//! zero-allocation test, the criterion benchmarks and the fuzz harness, which measure or
//! attack the protocol itself rather than a network.
//!
//! Endpoint `a` connects to endpoint `b`. Datagrams move only when asked
//! ([`deliver`](Pair::deliver)), straight from one endpoint's `poll_transmit` buffer into the
//! other's `handle_datagram`, at the pair's own clock [`now`](Pair::now), which moves only when
//! the caller moves it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_transport::{ConnectionId, Endpoint, EndpointConfig, Event};

use crate::net::{origin, sim_addr};

/// Rounds of the handshake at most: it takes three exchanges on a lossless wire.
const HANDSHAKE_ROUNDS: usize = 16;

/// One of the two endpoints of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The endpoint that connected.
    A,
    /// The endpoint that accepted.
    B,
}

impl Side {
    /// The other side.
    #[must_use]
    pub fn peer(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// Two connected endpoints and a lossless in-memory wire. See the [module documentation](self).
#[derive(Debug)]
pub struct Pair {
    /// The pair's clock: the caller moves it.
    pub now: Instant,
    /// The endpoint that connected (at `10.0.0.1:7777`).
    pub a: Endpoint,
    /// The endpoint that accepted (at `10.0.0.2:7777`).
    pub b: Endpoint,
    /// `a`'s address.
    pub a_addr: SocketAddr,
    /// `b`'s address.
    pub b_addr: SocketAddr,
    /// The connection as `a` knows it.
    pub a_conn: ConnectionId,
    /// The connection as `b` knows it.
    pub b_conn: ConnectionId,
    buf: Vec<u8>,
}

impl Pair {
    /// `a` (with `a_config` and test secrets from `seeds.0`) connects to `b` (`b_config`,
    /// `seeds.1`) at `now`; the handshake completes without the clock moving.
    ///
    /// # Panics
    ///
    /// If a configuration is not valid or the handshake does not complete.
    #[must_use]
    pub fn connect(
        now: Instant,
        a_config: EndpointConfig,
        b_config: EndpointConfig,
        seeds: (u64, u64),
    ) -> Self {
        let mut a = Endpoint::with_deterministic_secrets_for_tests(a_config, now, seeds.0)
            .expect("a valid configuration for a");
        let b = Endpoint::with_deterministic_secrets_for_tests(b_config, now, seeds.1)
            .expect("a valid configuration for b");
        let (a_addr, b_addr) = (sim_addr(0), sim_addr(1));
        let a_conn = a.connect(now, b_addr).expect("room for a connection");
        let mut pair = Self {
            now,
            a,
            b,
            a_addr,
            b_addr,
            a_conn,
            // Replaced below, when b reports the connection.
            b_conn: a_conn,
            buf: vec![0; 65_536],
        };
        let (mut a_up, mut b_conn) = (false, None);
        for _ in 0..HANDSHAKE_ROUNDS {
            pair.deliver(Side::A);
            pair.deliver(Side::B);
            pair.drain(|side, event| match (side, event) {
                (Side::A, Event::Connected(id)) if id == a_conn => a_up = true,
                (Side::B, Event::Connected(id)) => b_conn = Some(id),
                _ => {}
            });
            if a_up && b_conn.is_some() {
                break;
            }
        }
        assert!(a_up, "a did not connect");
        pair.b_conn = b_conn.expect("b did not report the connection");
        pair
    }

    /// Two endpoints with the same `config` and secrets seeded 1 and 2, connected at a fresh
    /// virtual origin.
    ///
    /// # Panics
    ///
    /// If `config` is not valid.
    #[must_use]
    pub fn new(config: EndpointConfig) -> Self {
        Self::connect(origin(), config.clone(), config, (1, 2))
    }

    /// One side's endpoint.
    pub fn endpoint(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Moves everything `from` has to send now to its peer, as a driver's flush does;
    /// datagrams to other addresses are dropped. Returns how many were delivered.
    pub fn deliver(&mut self, from: Side) -> usize {
        self.deliver_where(from, |_, _| true)
    }

    /// Sends everything `from` has to send now into the void. Returns how many datagrams.
    pub fn discard(&mut self, from: Side) -> usize {
        let mut n = 0;
        self.deliver_where(from, |_, _| {
            n += 1;
            false
        });
        n
    }

    /// Like [`deliver`](Self::deliver), but each datagram (with its destination) is first shown
    /// to `keep`, and delivered only if it returns `true` (and is addressed to the peer).
    pub fn deliver_where(
        &mut self,
        from: Side,
        mut keep: impl FnMut(SocketAddr, &[u8]) -> bool,
    ) -> usize {
        let now = self.now;
        let (sender, receiver, from_addr, to_addr) = match from {
            Side::A => (&mut self.a, &mut self.b, self.a_addr, self.b_addr),
            Side::B => (&mut self.b, &mut self.a, self.b_addr, self.a_addr),
        };
        let mut n = 0;
        while let Some(t) = sender.poll_transmit(now, &mut self.buf) {
            let datagram = &self.buf[..t.len];
            if keep(t.destination, datagram) && t.destination == to_addr {
                receiver.handle_datagram(now, from_addr, datagram);
                n += 1;
            }
        }
        n
    }

    /// Takes everything `from` has to send now off the wire, undelivered, in order: for tests
    /// that hold datagrams back, reorder or repeat them, and hand them over with
    /// [`inject`](Self::inject). Allocates (one `Vec` a datagram).
    pub fn capture(&mut self, from: Side) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.deliver_where(from, |_, datagram| {
            out.push(datagram.to_vec());
            false
        });
        out
    }

    /// Hands `datagram` to `from`'s peer now, as if `from` had sent it (a held-back, repeated
    /// or forged datagram).
    pub fn inject(&mut self, from: Side, datagram: &[u8]) {
        let now = self.now;
        let from_addr = match from {
            Side::A => self.a_addr,
            Side::B => self.b_addr,
        };
        self.endpoint(from.peer()).handle_datagram(now, from_addr, datagram);
    }

    /// Runs `side`'s timers if they are due now; returns whether they were.
    pub fn run_timers(&mut self, side: Side) -> bool {
        let now = self.now;
        let endpoint = self.endpoint(side);
        let due = endpoint.poll_timeout().is_some_and(|at| at <= now);
        if due {
            endpoint.handle_timeout(now);
        }
        due
    }

    /// Hands every pending event to `on_event`, `a`'s first, the way `Host` does: taking events
    /// only while there are some, never polling an empty queue, so that lent payload buffers
    /// are recycled as a driver's would be.
    pub fn drain(&mut self, mut on_event: impl FnMut(Side, Event<'_>)) {
        for side in [Side::A, Side::B] {
            let endpoint = self.endpoint(side);
            while endpoint.has_events() {
                if let Some(event) = endpoint.poll_event() {
                    on_event(side, event);
                }
            }
        }
    }

    /// One round of a game loop on a lossless wire: the clock moves on by `tick`, each side's
    /// datagrams go to the other (`a`'s first), events are drained into `on_event`, and due
    /// timers run.
    pub fn round(&mut self, tick: Duration, on_event: impl FnMut(Side, Event<'_>)) {
        self.now += tick;
        self.deliver(Side::A);
        self.deliver(Side::B);
        self.drain(on_event);
        self.run_timers(Side::A);
        self.run_timers(Side::B);
    }
}

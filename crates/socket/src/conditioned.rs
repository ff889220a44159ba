//! A socket wrapper that passes traffic through an emulated link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sturnus_netem::{Link, LinkConfig, LinkStats, Packet};

use crate::{Readiness, RecvMeta, SendStatus, Socket, SocketError, SocketStats};

/// A source of the current time for [`ConditionedSocket`].
pub trait Clock: Send {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

/// The OS monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "this is the one real clock of the socket layer")]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, shared by its clones: for deterministic tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Instant>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Instant) -> Self {
        Self { now: Arc::new(Mutex::new(start)) }
    }

    /// Moves the clock (and all its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock()
    }
}

/// A datagram held by the link: its peer address and its bytes.
#[derive(Debug, Clone)]
struct Held {
    peer: SocketAddr,
    data: Vec<u8>,
}

impl Packet for Held {
    fn wire_len(&self) -> usize {
        self.data.len()
    }
}

/// Wraps any [`Socket`] and passes what it sends (and, optionally, what it receives) through a
/// [`sturnus_netem::Link`], for trying a game over a bad network without leaving the machine.
///
/// Delayed datagrams are released by later calls on the socket: [`send_to`](Socket::send_to),
/// [`recv_from`](Socket::recv_from) and [`wait_readable`](Socket::wait_readable) all flush what is
/// due, and `wait_readable` wakes up in time for the next one. This is a test tool: it copies
/// each datagram it holds.
///
/// ```
/// use std::time::Duration;
/// use sturnus_netem::Preset;
/// use sturnus_socket::{ConditionedSocket, LoopbackNetwork, Socket};
///
/// let net = LoopbackNetwork::new();
/// let raw = net.bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// let mut lossy = ConditionedSocket::new(raw, Preset::Mobile4g.config(), 7).unwrap();
/// let mut peer = net.bind("127.0.0.1:0".parse().unwrap()).unwrap();
/// let _ = lossy.send_to(b"hello", peer.local_addr()).unwrap();
/// // About 40 ms later (give or take the jitter) the datagram is released.
/// let _ = lossy.wait_readable(Some(Duration::from_millis(150))).unwrap();
/// assert_eq!(lossy.outgoing_stats().sent, 1);
/// ```
pub struct ConditionedSocket<S, C = SystemClock> {
    inner: S,
    clock: C,
    outgoing: Link<Held>,
    incoming: Option<Link<Held>>,
    scratch: Vec<u8>,
}

impl<S: Socket> ConditionedSocket<S, SystemClock> {
    /// Conditions what `inner` sends with the link `outgoing`, seeded with `seed`.
    pub fn new(inner: S, outgoing: LinkConfig, seed: u64) -> Result<Self, SocketError> {
        Self::with_clock(inner, outgoing, seed, SystemClock)
    }
}

impl<S: Socket, C: Clock> ConditionedSocket<S, C> {
    /// Like [`new`](ConditionedSocket::new), reading time from `clock`.
    pub fn with_clock(
        inner: S,
        outgoing: LinkConfig,
        seed: u64,
        clock: C,
    ) -> Result<Self, SocketError> {
        Ok(Self {
            inner,
            clock,
            outgoing: Link::new(outgoing, seed)?,
            incoming: None,
            scratch: vec![0; 64 * 1024],
        })
    }

    /// Also conditions what the socket receives, with its own link and seed.
    pub fn with_incoming(mut self, incoming: LinkConfig, seed: u64) -> Result<Self, SocketError> {
        self.incoming = Some(Link::new(incoming, seed)?);
        Ok(self)
    }

    /// The outgoing link's counters.
    pub fn outgoing_stats(&self) -> LinkStats {
        self.outgoing.stats()
    }

    /// The incoming link's counters, when incoming traffic is conditioned.
    pub fn incoming_stats(&self) -> Option<LinkStats> {
        self.incoming.as_ref().map(Link::stats)
    }

    /// Changes the outgoing link's parameters from now on.
    pub fn set_outgoing(&mut self, config: LinkConfig) -> Result<(), SocketError> {
        Ok(self.outgoing.set_config(config)?)
    }

    /// Changes the incoming link's parameters from now on; conditions incoming traffic from
    /// now on if it was not.
    pub fn set_incoming(&mut self, config: LinkConfig, seed: u64) -> Result<(), SocketError> {
        match self.incoming.as_mut() {
            Some(link) => Ok(link.set_config(config)?),
            None => {
                self.incoming = Some(Link::new(config, seed)?);
                Ok(())
            }
        }
    }

    /// The wrapped socket.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The wrapped socket, mutably.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the socket; datagrams still held by the links are discarded.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Sends every outgoing datagram that is due.
    fn flush_outgoing(&mut self, now: Instant) -> Result<(), SocketError> {
        while let Some(held) = self.outgoing.poll_deliver(now) {
            // A full send buffer loses the datagram, as the network would; the inner socket
            // counts it.
            let _ = self.inner.send_to(&held.data, held.peer)?;
        }
        Ok(())
    }

    /// Moves everything the inner socket has received into the incoming link.
    fn pump_incoming(&mut self, now: Instant) -> Result<(), SocketError> {
        let Some(link) = self.incoming.as_mut() else {
            return Ok(());
        };
        while let Some(meta) = self.inner.recv_from(&mut self.scratch)? {
            let _ =
                link.send(now, Held { peer: meta.from, data: self.scratch[..meta.len].to_vec() });
        }
        Ok(())
    }
}

impl<S: Socket, C: Clock> Socket for ConditionedSocket<S, C> {
    fn send_to(&mut self, payload: &[u8], to: SocketAddr) -> Result<SendStatus, SocketError> {
        let now = self.clock.now();
        let _ = self.outgoing.send(now, Held { peer: to, data: payload.to_vec() });
        self.flush_outgoing(now)?;
        Ok(SendStatus::Sent)
    }

    fn recv_from(&mut self, buf: &mut [u8]) -> Result<Option<RecvMeta>, SocketError> {
        let now = self.clock.now();
        self.flush_outgoing(now)?;
        if self.incoming.is_none() {
            return self.inner.recv_from(buf);
        }
        self.pump_incoming(now)?;
        let Some(held) = self.incoming.as_mut().and_then(|link| link.poll_deliver(now)) else {
            return Ok(None);
        };
        let len = held.data.len().min(buf.len());
        buf[..len].copy_from_slice(&held.data[..len]);
        Ok(Some(RecvMeta { len, from: held.peer }))
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<Readiness, SocketError> {
        let deadline = timeout.map(|t| self.clock.now() + t);
        loop {
            let now = self.clock.now();
            self.flush_outgoing(now)?;
            self.pump_incoming(now)?;
            let incoming_due = self.incoming.as_ref().and_then(Link::poll_timeout);
            if incoming_due.is_some_and(|due| due <= now) {
                return Ok(Readiness::Readable);
            }
            if deadline.is_some_and(|d| d <= now) {
                return Ok(Readiness::TimedOut);
            }
            // Sleep until the next thing this wrapper must do, or the caller's deadline.
            let wake =
                [self.outgoing.poll_timeout(), incoming_due, deadline].into_iter().flatten().min();
            let wait = wake.map(|w| w.saturating_duration_since(now));
            match self.inner.wait_readable(wait)? {
                Readiness::Readable if self.incoming.is_none() => return Ok(Readiness::Readable),
                // A clock that did not move while we slept (a `ManualClock`) cannot bring
                // anything due: give control back to whoever moves it.
                Readiness::TimedOut if self.clock.now() == now => return Ok(Readiness::TimedOut),
                _ => {}
            }
        }
    }

    fn stats(&self) -> SocketStats {
        self.inner.stats()
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for ConditionedSocket<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionedSocket")
            .field("inner", &self.inner)
            .field("outgoing", &self.outgoing.stats())
            .field("incoming", &self.incoming.as_ref().map(Link::stats))
            .finish_non_exhaustive()
    }
}

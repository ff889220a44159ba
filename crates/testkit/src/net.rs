//! The shared virtual network: [`SimNet`] and its [`SimEndpoint`]s.
//!
//! A [`SimNet`] owns a virtual clock and a [`sturnus_netem::Link`] for each direction between
//! two of its endpoints. A [`SimEndpoint`] is a sans-IO [`Endpoint`] at an address of the net
//! (`10.0.0.N:7777`, N = 1, 2, … in creation order, or one the test chooses with
//! [`SimNet::endpoint_at`]) that implements [`Transport`]: any layer that runs over a transport
//! runs over the simulated network, lossy, delayed and reordered as its links say, in virtual
//! time.
//!
//! Attack tests forge traffic two ways: from endpoints at chosen addresses (many prefixes, one
//! address on many ports), whose sent datagrams a [`SimNet::set_send_filter`] may thin out;
//! and from addresses that are no endpoint at all, by handing the target a datagram directly
//! (`handle_datagram(now, forged_source, bytes)` through [`SimEndpoint`]'s `DerefMut`), at
//! the current virtual time.
//!
//! Nothing here reads the wall clock (but [`origin`], once per net), sleeps, or iterates a
//! hash map: the same seed gives the same run, datagram for datagram.
//!
//! ```
//! use std::time::Duration;
//! use sturnus_netem::LinkConfig;
//! use sturnus_testkit::SimNet;
//! use sturnus_transport::{ChannelId, EndpointConfig, Event, Qos, Transport};
//!
//! let net = SimNet::new(LinkConfig { latency: Duration::from_millis(20), ..LinkConfig::perfect() }, 1);
//! let config = EndpointConfig { channels: vec![Qos::ReliableSequenced], ..Default::default() };
//! let mut server = net.endpoint(config.clone());
//! let mut client = net.endpoint(config);
//! let conn = client.connect(net.now(), server.addr()).unwrap();
//! client.send(conn, ChannelId(0), b"hello").unwrap();
//! let mut got = None;
//! let done = net.run_until(Duration::from_secs(5), None, |now| {
//!     while let Some(_) = client.poll_event(now).unwrap() {}
//!     while let Some(event) = server.poll_event(now).unwrap() {
//!         if let Event::Data { payload, .. } = event {
//!             got = Some(payload.to_vec());
//!         }
//!     }
//!     client.flush(now).unwrap();
//!     server.flush(now).unwrap();
//!     got.is_some()
//! });
//! assert!(done);
//! assert_eq!(got.as_deref(), Some(&b"hello"[..]));
//! // A handshake (two round trips) and the message: virtual time, no waiting.
//! assert!(net.elapsed() >= Duration::from_millis(40));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sturnus_netem::{Link, LinkConfig, LinkStats};
use sturnus_transport::{
    ChannelId, ConnectError, ConnectionId, ConnectionStats, Endpoint, EndpointConfig, Event,
    HostError, Qos, SendError, Transport,
};

/// The port of every simulated endpoint.
pub const SIM_PORT: u16 = 7777;

/// How many times in a row [`SimNet::run_until`] calls its step again at the same instant for a
/// deadline that is due, before it concludes that the step does not service it.
const MAX_CALLS_AT_ONE_INSTANT: u32 = 8;

/// The origin of a virtual clock: the one place the harness reads the wall clock. Any instant
/// would do; only differences from it matter.
#[must_use]
pub fn origin() -> Instant {
    #[expect(
        clippy::disallowed_methods,
        reason = "the virtual clock needs a starting instant; nothing measures time against it"
    )]
    Instant::now()
}

/// The address of the net's `index`-th endpoint (0-based): `10.0.0.{index + 1}:7777`.
///
/// # Panics
///
/// Past the 254th endpoint (the address would leave the /24).
#[must_use]
pub fn sim_addr(index: usize) -> SocketAddr {
    let host = u8::try_from(index + 1).ok().filter(|&h| h < 255).expect("at most 254 endpoints");
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), SIM_PORT))
}

/// Datagrams and bytes an endpoint put on the net.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SentCount {
    /// Datagrams sent (whatever became of them on the link).
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A datagram a link handed to its receiver (recorded once
/// [`record_deliveries`](SimNet::record_deliveries) is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Virtual time since the net's start.
    pub at: Duration,
    /// The sender's address.
    pub from: SocketAddr,
    /// The receiver's address.
    pub to: SocketAddr,
    /// The datagram's length.
    pub len: usize,
}

#[derive(Debug)]
struct Host {
    addr: SocketAddr,
    /// The endpoint's `poll_timeout`, as of its last call through the net (`None` once the
    /// endpoint is dropped).
    timer: Option<Instant>,
    sent: SentCount,
    alive: bool,
}

/// Whether a datagram an endpoint sends (to the given address) goes on the link: see
/// [`SimNet::set_send_filter`].
pub type SendFilter = Box<dyn FnMut(SocketAddr, &[u8]) -> bool>;

struct Shared {
    start: Instant,
    now: Instant,
    seed: u64,
    default_link: LinkConfig,
    hosts: Vec<Host>,
    /// Host index by address.
    by_addr: BTreeMap<SocketAddr, usize>,
    /// By (receiver index, sender index): a deterministic order, and a receiver's links side by
    /// side. A dropped endpoint's links are removed (see [`SimEndpoint`]'s `Drop`).
    links: BTreeMap<(usize, usize), Link<Vec<u8>>>,
    /// By sender index.
    filters: BTreeMap<usize, SendFilter>,
    deliveries: Option<Vec<Delivery>>,
}

impl Shared {
    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    fn link_seed(&self, from: usize, to: usize) -> u64 {
        self.seed ^ ((from as u64) << 32 | to as u64)
    }

    fn link(&mut self, from: usize, to: usize) -> &mut Link<Vec<u8>> {
        let seed = self.link_seed(from, to);
        let config = &self.default_link;
        self.links
            .entry((to, from))
            .or_insert_with(|| Link::new(config.clone(), seed).expect("validated at SimNet::new"))
    }
}

/// A simulated network: a virtual clock, endpoints at `10.0.0.N:7777`, and a
/// [`sturnus_netem`] link for each direction between two of them. Clones share the network.
/// See the [module documentation](self).
#[derive(Clone)]
pub struct SimNet {
    shared: Rc<RefCell<Shared>>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared.borrow();
        f.debug_struct("SimNet")
            .field("elapsed", &(shared.now - shared.start))
            .field("endpoints", &shared.hosts.len())
            .field("links", &shared.links.len())
            .finish()
    }
}

impl SimNet {
    /// A network whose links default to `link`; `seed` seeds the links (each mixed with its
    /// two ends) and the endpoints' test secrets (mixed with the endpoint's index).
    ///
    /// # Panics
    ///
    /// If `link` is not a valid link configuration.
    #[must_use]
    pub fn new(link: LinkConfig, seed: u64) -> Self {
        link.validate().expect("a valid default link configuration");
        let start = origin();
        Self {
            shared: Rc::new(RefCell::new(Shared {
                start,
                now: start,
                seed,
                default_link: link,
                hosts: Vec::new(),
                by_addr: BTreeMap::new(),
                links: BTreeMap::new(),
                filters: BTreeMap::new(),
                deliveries: None,
            })),
        }
    }

    /// A new endpoint on the network, at the next address (`10.0.0.N:7777` for the N-th
    /// endpoint), built with [`Endpoint::with_deterministic_secrets_for_tests`] at the current
    /// virtual time.
    ///
    /// # Panics
    ///
    /// If `config` is not valid, past 254 endpoints, or if [`endpoint_at`](Self::endpoint_at)
    /// already took that address.
    #[must_use]
    pub fn endpoint(&self, config: EndpointConfig) -> SimEndpoint {
        let index = self.shared.borrow().hosts.len();
        self.endpoint_at(sim_addr(index), config)
    }

    /// A new endpoint on the network at `addr`, for tests that need their peers at chosen
    /// addresses (many sources in many prefixes, one address on many ports); otherwise as
    /// [`endpoint`](Self::endpoint). Its links are made with the default configuration, like
    /// any other's.
    ///
    /// # Panics
    ///
    /// If `config` is not valid, or an endpoint of this net (dropped or not) has had `addr`.
    #[must_use]
    pub fn endpoint_at(&self, addr: SocketAddr, config: EndpointConfig) -> SimEndpoint {
        let mut shared = self.shared.borrow_mut();
        let index = shared.hosts.len();
        assert!(
            shared.by_addr.insert(addr, index).is_none(),
            "{addr} is already an endpoint's address on this net"
        );
        let secrets_seed = shared.seed.wrapping_mul(0x9E37_79B9).wrapping_add(index as u64);
        let endpoint =
            Endpoint::with_deterministic_secrets_for_tests(config, shared.now, secrets_seed)
                .expect("a valid endpoint configuration");
        shared.hosts.push(Host {
            addr,
            timer: endpoint.poll_timeout(),
            sent: SentCount::default(),
            alive: true,
        });
        drop(shared);
        SimEndpoint { endpoint, index, addr, net: self.clone(), buf: vec![0; 65_536] }
    }

    /// The virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.shared.borrow().now
    }

    /// The virtual time the network started at.
    #[must_use]
    pub fn start(&self) -> Instant {
        self.shared.borrow().start
    }

    /// Virtual time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        let shared = self.shared.borrow();
        shared.now - shared.start
    }

    /// Moves the clock on to `at` (never backwards: an earlier `at` leaves it). Nothing is
    /// delivered or run by this: the endpoints take what is due when they are next called.
    pub fn advance_to(&self, at: Instant) {
        let mut shared = self.shared.borrow_mut();
        shared.now = shared.now.max(at);
    }

    /// The earliest of every link's next delivery and every endpoint's timer (as of the
    /// endpoint's last call through [`Transport`] or [`SimEndpoint::refresh`]), if anything is
    /// scheduled. It may be in the past: a timer nobody has serviced yet.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest_deadline(|_| true)
    }

    /// Runs a test in virtual time: calls `step(now)`, in which the test drives its endpoints
    /// (or the servers and clients built on them) at `now` and says whether it is done; then
    /// moves the clock to the earliest of [`next_deadline`](Self::next_deadline) and
    /// `now + max_step` (a game's frame tick, if it has one); and again, until `step` returns
    /// `true` or `limit` of virtual time has passed. Returns whether `step` returned `true`.
    ///
    /// A deadline that is already due calls `step` again at the same instant; if it is still
    /// due after a few such calls (an endpoint the test does not poll), it is passed over, and
    /// the clock moves to the next deadline after `now`. With nothing scheduled and no
    /// `max_step`, the clock jumps to the limit (and `step` runs there once more).
    pub fn run_until(
        &self,
        limit: Duration,
        max_step: Option<Duration>,
        mut step: impl FnMut(Instant) -> bool,
    ) -> bool {
        let end = self.now() + limit;
        let mut same_instant = 0;
        loop {
            let now = self.now();
            if step(now) {
                return true;
            }
            if now >= end {
                return false;
            }
            let tick = max_step.map(|d| now + d);
            let due = self.next_deadline().filter(|&at| at <= now).is_some();
            let next = if due && same_instant < MAX_CALLS_AT_ONE_INSTANT {
                same_instant += 1;
                now
            } else {
                same_instant = 0;
                self.earliest_deadline(|at| at > now)
                    .into_iter()
                    .chain(tick)
                    .min()
                    .unwrap_or(end)
                    .min(end)
            };
            self.advance_to(next);
        }
    }

    /// The earliest deadline (as [`next_deadline`](Self::next_deadline)) that passes `filter`.
    fn earliest_deadline(&self, filter: impl Fn(Instant) -> bool) -> Option<Instant> {
        let shared = self.shared.borrow();
        // Datagrams in flight to a dropped endpoint are never taken: they schedule nothing.
        let links = shared
            .links
            .iter()
            .filter(|((to, _), _)| shared.hosts[*to].alive)
            .filter_map(|(_, link)| link.poll_timeout());
        let timers = shared.hosts.iter().filter_map(|h| h.timer);
        links.chain(timers).filter(|&at| filter(at)).min()
    }

    /// Sets the link from `from` to `to` (one direction; the reverse keeps its own).
    ///
    /// # Panics
    ///
    /// If either address is not an endpoint of this net, or `config` is not valid.
    pub fn set_link(&self, from: SocketAddr, to: SocketAddr, config: LinkConfig) {
        let mut shared = self.shared.borrow_mut();
        let (Some(f), Some(t)) = (shared.index_of(from), shared.index_of(to)) else {
            panic!("set_link({from}, {to}): not endpoints of this net");
        };
        shared.link(f, t).set_config(config).expect("a valid link configuration");
    }

    /// The counters of the link from `from` to `to`, once it has been used or set.
    #[must_use]
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> Option<LinkStats> {
        let shared = self.shared.borrow();
        let key = (shared.index_of(to)?, shared.index_of(from)?);
        shared.links.get(&key).map(Link::stats)
    }

    /// What the endpoint at `addr` has sent (zero for an address not on the net).
    #[must_use]
    pub fn sent(&self, addr: SocketAddr) -> SentCount {
        let shared = self.shared.borrow();
        shared.index_of(addr).map(|i| shared.hosts[i].sent).unwrap_or_default()
    }

    /// Sets (`Some`) or clears (`None`) a filter on what the endpoint at `from` sends: each
    /// datagram, with its destination, goes on its link only if the filter returns `true`; a
    /// dropped one counts as sent, like a datagram a link loses. For wires that lose chosen
    /// datagrams (the last fragment of every message, say) rather than random ones. The filter
    /// goes with the endpoint when it is dropped. It runs while the net is borrowed: it must
    /// not call the net.
    ///
    /// # Panics
    ///
    /// If `from` is not an endpoint of this net.
    pub fn set_send_filter(&self, from: SocketAddr, filter: Option<SendFilter>) {
        let mut shared = self.shared.borrow_mut();
        let Some(index) = shared.index_of(from) else {
            panic!("set_send_filter({from}): not an endpoint of this net");
        };
        match filter {
            Some(filter) => shared.filters.insert(index, filter),
            None => shared.filters.remove(&index),
        };
    }

    /// Starts (`true`, clearing what was recorded) or stops recording every delivery.
    pub fn record_deliveries(&self, on: bool) {
        self.shared.borrow_mut().deliveries = on.then(Vec::new);
    }

    /// The deliveries recorded so far, in order.
    #[must_use]
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.borrow().deliveries.clone().unwrap_or_default()
    }

    /// Puts a datagram from endpoint `from` on the link to `to` at `now` (dropped, but counted
    /// as sent, when no endpoint of the net is at `to`).
    fn send(&self, now: Instant, from: usize, to: SocketAddr, datagram: &[u8]) {
        let mut shared = self.shared.borrow_mut();
        let sent = &mut shared.hosts[from].sent;
        sent.datagrams += 1;
        sent.bytes += datagram.len() as u64;
        if let Some(keep) = shared.filters.get_mut(&from)
            && !keep(to, datagram)
        {
            return;
        }
        if let Some(to) = shared.index_of(to).filter(|&i| shared.hosts[i].alive) {
            let _ = shared.link(from, to).send(now, datagram.to_vec());
        }
    }

    /// The next datagram due at `to` by `now`, with its sender's address: the links in order of
    /// their sender. A dropped sender's link goes once it is empty.
    fn take_due(&self, now: Instant, to: usize) -> Option<(SocketAddr, Vec<u8>)> {
        let mut shared = self.shared.borrow_mut();
        let shared = &mut *shared;
        let mut taken = None;
        for (&(_, from), link) in shared.links.range_mut((to, 0)..=(to, usize::MAX)) {
            if let Some(datagram) = link.poll_deliver(now) {
                let spent = !shared.hosts[from].alive && link.in_flight() == 0;
                taken = Some((from, datagram, spent));
                break;
            }
        }
        let (from, datagram, spent) = taken?;
        if spent {
            shared.links.remove(&(to, from));
        }
        let from = shared.hosts[from].addr;
        if let Some(log) = &mut shared.deliveries {
            let to = shared.hosts[to].addr;
            log.push(Delivery { at: now - shared.start, from, to, len: datagram.len() });
        }
        Some((from, datagram))
    }

    fn set_timer(&self, index: usize, timer: Option<Instant>) {
        self.shared.borrow_mut().hosts[index].timer = timer;
    }
}

/// A sans-IO [`Endpoint`] on a [`SimNet`], driven through [`Transport`].
///
/// It dereferences to its [`Endpoint`] so that transport tests can call it directly (as
/// [`endpoint_mut`](Self::endpoint_mut) does). The net learns the endpoint's next timer at
/// every call through [`Transport`] and the methods here; after changing the endpoint
/// directly, call one of them (or [`refresh`](Self::refresh)) before the net's clock moves on.
pub struct SimEndpoint {
    endpoint: Endpoint,
    index: usize,
    addr: SocketAddr,
    net: SimNet,
    buf: Vec<u8>,
}

impl fmt::Debug for SimEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimEndpoint")
            .field("addr", &self.addr)
            .field("connections", &self.endpoint.connection_count())
            .finish()
    }
}

/// The endpoint leaves the net: its links and send filter are freed (a link from it once the
/// datagrams in flight on it are delivered), so that a test that measures the heap sees the
/// net keep only a few bytes of bookkeeping per endpoint it ever had.
impl Drop for SimEndpoint {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.net.shared.try_borrow_mut() {
            let index = self.index;
            let host = &mut shared.hosts[index];
            host.timer = None;
            host.alive = false;
            shared.filters.remove(&index);
            // Nothing will take what is in flight to it; what it sent may still arrive.
            shared
                .links
                .retain(|&(to, from), link| to != index && (from != index || link.in_flight() > 0));
        }
    }
}

impl Deref for SimEndpoint {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl DerefMut for SimEndpoint {
    fn deref_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }
}

impl SimEndpoint {
    /// Its address on the net.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The net it is on.
    #[must_use]
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The endpoint, to act on directly (see the type's documentation about timers).
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// Tells the net the endpoint's next timer.
    pub fn refresh(&self) {
        self.net.set_timer(self.index, self.endpoint.poll_timeout());
    }

    /// Puts everything the endpoint has to send at `now` on the links; returns how many
    /// datagrams.
    pub fn transmit(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(t) = self.endpoint.poll_transmit(now, &mut self.buf) {
            self.net.send(now, self.index, t.destination, &self.buf[..t.len]);
            n += 1;
        }
        self.refresh();
        n
    }

    /// Takes everything the endpoint has to send at `now` off the wire instead: (destination,
    /// datagram), not delivered (but counted as sent nowhere).
    pub fn capture(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit(now, &mut self.buf) {
            out.push((t.destination, self.buf[..t.len].to_vec()));
        }
        self.refresh();
        out
    }

    /// Hands the endpoint every datagram its links have due by `now`; returns how many.
    pub fn receive(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((from, datagram)) = self.net.take_due(now, self.index) {
            self.endpoint.handle_datagram(now, from, &datagram);
            n += 1;
        }
        self.refresh();
        n
    }

    /// Runs the endpoint's timers if they are due at `now`; returns whether they were.
    pub fn run_timers(&mut self, now: Instant) -> bool {
        let due = self.endpoint.poll_timeout().is_some_and(|at| at <= now);
        if due {
            self.endpoint.handle_timeout(now);
        }
        self.refresh();
        due
    }
}

/// The simulated transport: [`poll_event`](Transport::poll_event) sends what is queued, takes
/// the datagrams due, runs due timers, then hands out the endpoint's events.
impl Transport for SimEndpoint {
    fn channels(&self) -> &[Qos] {
        &self.endpoint.config().channels
    }

    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        let config = self.endpoint.config();
        config.qos(channel).map(|qos| config.max_message_size(qos))
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }

    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        let result = self.endpoint.connect(now, remote);
        self.refresh();
        result
    }

    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let result = self.endpoint.send(conn, channel, payload);
        self.refresh();
        result
    }

    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        self.endpoint.disconnect(now, conn);
        self.refresh();
    }

    fn set_trusted(&mut self, conn: ConnectionId) {
        let _ = self.endpoint.set_trusted(conn);
    }

    fn trusts_incoming(&self) -> bool {
        self.endpoint.config().trusts_incoming()
    }

    fn poll_event(&mut self, now: Instant) -> Result<Option<Event<'_>>, HostError> {
        if !self.endpoint.has_events() {
            self.transmit(now);
            self.receive(now);
            self.run_timers(now);
        }
        Ok(self.endpoint.poll_event())
    }

    fn flush(&mut self, now: Instant) -> Result<(), HostError> {
        self.transmit(now);
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    fn wait(&mut self, _timeout: Duration) -> Result<(), HostError> {
        Ok(())
    }

    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        self.endpoint.connection_stats(conn)
    }

    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        self.endpoint.remote_address(conn)
    }
}

//! The `Host`: an [`Endpoint`] driven over a socket, with UNET's poll-style API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::proto::prefetch::{PREFETCH_FROM_CONNECTIONS, Pipeline, Step};
use sturnus_socket::{Outgoing, RecvBatch, Socket, SocketError, SocketFactory};

use crate::{
    ChannelId, ConfigError, ConnectError, ConnectionId, ConnectionStats, DisconnectReason,
    Endpoint, EndpointConfig, Event, HostError, MAX_READ_INTERVAL, SendError,
};

/// Datagrams read per [`Host::receive`] before events are handed out, so a flood cannot keep
/// the application from its events.
const RECV_BUDGET: usize = 1024;
/// Datagrams moved per socket call (one `recvmmsg`/`sendmmsg` on Linux).
const BATCH: usize = 32;

/// What [`Host::receive`] found.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvent<'a> {
    /// A connection is established (incoming, or one asked for with [`Host::connect`]).
    Connect(ConnectionId),
    /// A message arrived; the payload is lent until the next call on the host.
    Data {
        /// The connection.
        conn: ConnectionId,
        /// The channel.
        channel: ChannelId,
        /// The message.
        payload: &'a [u8],
    },
    /// A connection ended, or an attempt to connect failed.
    Disconnect(ConnectionId, DisconnectReason),
    /// Nothing happened.
    Nothing,
}

/// Counters of the host's own I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams the socket could not take (full send buffer or a transient error); the
    /// protocol treats them as lost and resends what was reliable.
    pub datagrams_unsent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams longer than the configured packet size, dropped unread.
    pub datagrams_oversized: u64,
}

/// One line: `sent 1200 datagrams (0 unsent) · received 1180 (0 oversized)`.
impl std::fmt::Display for HostStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} datagrams ({} unsent) · received {} ({} oversized)",
            self.datagrams_sent,
            self.datagrams_unsent,
            self.datagrams_received,
            self.datagrams_oversized
        )
    }
}

/// An endpoint bound to one socket: the low-level API's workflow.
///
/// 1. make one with [`Host::bind`] (a server, or a peer that accepts) or [`Host::new`] over
///    any socket;
/// 2. [`connect`](Self::connect) to peers;
/// 3. [`send`](Self::send) messages on channels (they go out on the next
///    [`receive`](Self::receive) or [`flush`](Self::flush), so several share a packet);
/// 4. call [`receive`](Self::receive) until it returns [`HostEvent::Nothing`], then
///    [`wait`](Self::wait) to sleep until a datagram arrives or a protocol timer is due.
///
/// A host accepts and connects at once, so peer-to-peer topologies need nothing more. It reads
/// the clock and does socket I/O on the calling thread; no thread is started.
///
/// ```
/// use std::time::Duration;
/// use sturnus_socket::LoopbackSocketFactory;
/// use sturnus_transport::{ChannelId, EndpointConfig, Host, HostEvent};
///
/// let factory = LoopbackSocketFactory::new();
/// let mut server = Host::bind(EndpointConfig::default(), &factory, "127.0.0.1:7777".parse().unwrap()).unwrap();
/// let (mut client, conn) = Host::connect_to(EndpointConfig::default(), &factory, server.local_addr()).unwrap();
/// client.send(conn, ChannelId(0), b"hello").unwrap();
///
/// let mut got = None;
/// for _ in 0..100 {
///     while let HostEvent::Connect(_) = client.receive().unwrap() {}
///     match server.receive().unwrap() {
///         HostEvent::Data { payload, .. } => { got = Some(payload.to_vec()); break; }
///         HostEvent::Nothing => server.wait(Some(Duration::from_millis(5))).unwrap(),
///         _ => {}
///     }
/// }
/// assert_eq!(got.as_deref(), Some(&b"hello"[..]));
/// ```
#[derive(Debug)]
pub struct Host<S> {
    endpoint: Endpoint,
    socket: S,
    /// `BATCH` packet-sized slots for outgoing datagrams, and where each goes.
    send_buf: Vec<u8>,
    send_meta: Vec<(usize, SocketAddr)>,
    /// Slots one byte longer than a packet, to tell oversized datagrams apart.
    recv: RecvBatch,
    stats: HostStats,
    pacer: ReadPacer,
}

#[expect(clippy::disallowed_methods, reason = "the host is the driver: it owns the real clock")]
fn now() -> Instant {
    Instant::now()
}

/// Keeps the drains of a driver's socket at least [`EndpointConfig::read_interval`] apart:
/// the one place that setting is carried out, for [`Host`] and every other driver that owns a
/// socket (the netcode `SecureHost`).
///
/// A drain is the run of reads (one system call each, a batch at most) that a driver makes
/// until the socket is empty. The driver starts one only when [`may_read`](Self::may_read)
/// says so (its timers run on time regardless), reports each that emptied the socket with
/// [`on_drained`](Self::on_drained) (one that stopped at a budget with datagrams left does not
/// hold the next), and waits with [`wait`](Self::wait) instead of the socket's own
/// `wait_readable`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sturnus_transport::ReadPacer;
///
/// let mut pacer = ReadPacer::new(Duration::from_millis(1)).unwrap();
/// let start = Instant::now();
/// assert_eq!(pacer.hold(start, None), Duration::ZERO); // nothing read yet
/// pacer.on_drained(start, 5);
/// let later = start + Duration::from_micros(300);
/// assert_eq!(pacer.hold(later, None), Duration::from_micros(700));
/// assert_eq!(pacer.hold(later, Some(Duration::from_micros(200))), Duration::from_micros(200));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReadPacer {
    interval: Duration,
    /// When the latest drain that found datagrams started.
    last_read: Option<Instant>,
}

impl ReadPacer {
    /// A pacer that keeps drains `interval` apart; zero never holds one back. An interval
    /// over [`MAX_READ_INTERVAL`] is refused, naming `read_interval`, as
    /// [`EndpointConfig::validate`] refuses it.
    pub fn new(interval: Duration) -> Result<Self, ConfigError> {
        if interval > MAX_READ_INTERVAL {
            return Err(ConfigError::Invalid {
                field: "read_interval",
                reason: "must be at most 100 ms (MAX_READ_INTERVAL)",
            });
        }
        Ok(Self { interval, last_read: None })
    }

    /// The interval reads are kept apart by.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether a drain of the socket may start at `now`: no interval is running.
    pub fn may_read(&self, now: Instant) -> bool {
        self.hold(now, None).is_zero()
    }

    /// Notes a drain that started at `now`, found `datagrams` and emptied the socket. One that
    /// found nothing does not start an interval: the next datagram is read as soon as it
    /// arrives.
    pub fn on_drained(&mut self, now: Instant, datagrams: usize) {
        if datagrams > 0 && !self.interval.is_zero() {
            self.last_read = Some(now);
        }
    }

    /// How long a wait that starts at `now` sleeps before it looks at the socket: until the
    /// interval since the latest drain that found datagrams has passed, and never longer than
    /// `limit` (the caller's timeout or the next protocol timer).
    pub fn hold(&self, now: Instant, limit: Option<Duration>) -> Duration {
        let Some(last) = self.last_read else { return Duration::ZERO };
        let hold = self.interval.saturating_sub(now.saturating_duration_since(last));
        limit.map_or(hold, |limit| hold.min(limit))
    }

    /// Blocks as a driver's wait does: sleeps out the [`hold`](Self::hold), then waits for
    /// `socket` to become readable for what is left of `limit` (`None`: without limit).
    #[expect(clippy::disallowed_methods, reason = "the pacer is the drivers': they wait")]
    pub fn wait<S: Socket + ?Sized>(
        &self,
        socket: &mut S,
        limit: Option<Duration>,
    ) -> Result<(), SocketError> {
        let start = now();
        let hold = self.hold(start, limit);
        if hold.is_zero() {
            socket.wait_readable(limit)?;
            return Ok(());
        }
        std::thread::sleep(hold);
        // What is left of the limit, less however long the sleep overran.
        let rest = limit.map(|limit| limit.saturating_sub(now().saturating_duration_since(start)));
        if rest != Some(Duration::ZERO) {
            socket.wait_readable(rest)?;
        }
        Ok(())
    }
}

impl<S: Socket> Host<S> {
    /// A host over `socket`.
    pub fn new(config: EndpointConfig, socket: S) -> Result<Self, HostError> {
        let packet = config.max_packet_size;
        let pacer = ReadPacer::new(config.read_interval)?;
        let endpoint = Endpoint::new(config, now())?;
        Ok(Self {
            endpoint,
            socket,
            send_buf: vec![0; packet * BATCH],
            send_meta: Vec::with_capacity(BATCH),
            recv: RecvBatch::new(BATCH, packet + 1),
            stats: HostStats::default(),
            pacer,
        })
    }

    /// A host on a server socket of `factory` bound to `addr`.
    pub fn bind<F>(config: EndpointConfig, factory: &F, addr: SocketAddr) -> Result<Self, HostError>
    where
        F: SocketFactory<Socket = S>,
    {
        Self::new(config, factory.server_socket(addr)?)
    }

    /// A client host on a socket of `factory`, already connecting to `remote`.
    pub fn connect_to<F>(
        config: EndpointConfig,
        factory: &F,
        remote: SocketAddr,
    ) -> Result<(Self, ConnectionId), HostError>
    where
        F: SocketFactory<Socket = S>,
    {
        let config = EndpointConfig { accept_connections: false, ..config };
        let mut host = Self::new(config, factory.client_socket(remote)?)?;
        let conn = host.connect(remote)?;
        Ok((host, conn))
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr()
    }

    /// Starts connecting to `remote`; [`HostEvent::Connect`] or [`HostEvent::Disconnect`]
    /// follows.
    pub fn connect(&mut self, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.endpoint.connect(now(), remote)
    }

    /// Queues a message; it goes out on the next [`receive`](Self::receive) or
    /// [`flush`](Self::flush).
    pub fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.endpoint.send(conn, channel, payload)
    }

    /// Closes a connection (the peer is told).
    pub fn disconnect(&mut self, conn: ConnectionId) {
        self.endpoint.disconnect(now(), conn);
    }

    /// Trusts a connection a peer opened to us, typically once it has authenticated; see
    /// [`Endpoint::set_trusted`]. Returns `false` if the connection does not exist.
    pub fn set_trusted(&mut self, conn: ConnectionId) -> bool {
        self.endpoint.set_trusted(conn)
    }

    /// Sends everything the protocol has to send now, in batches.
    pub fn flush(&mut self) -> Result<(), HostError> {
        let now = now();
        self.flush_at(now)?;
        self.settle(now);
        Ok(())
    }

    /// Runs the protocol's timers if any is due. After a flush, that registers the deadlines
    /// the endpoint left for after the send, so a following [`wait`](Self::wait) can sleep.
    fn settle(&mut self, now: Instant) {
        if self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
    }

    fn flush_at(&mut self, now: Instant) -> Result<(), HostError> {
        let packet = self.endpoint.config().max_packet_size;
        loop {
            self.send_meta.clear();
            for slot in self.send_buf.chunks_exact_mut(packet) {
                let Some(transmit) = self.endpoint.poll_transmit(now, slot) else { break };
                self.send_meta.push((transmit.len, transmit.destination));
            }
            let count = self.send_meta.len();
            if count == 0 {
                return Ok(());
            }
            let done = if count == 1 {
                // The usual case of an interactive flow: no batch to set up.
                let (len, to) = self.send_meta[0];
                self.socket.send_batch(&[Outgoing { to, payload: &self.send_buf[..len] }])?
            } else {
                let mut batch = [Outgoing { to: self.send_meta[0].1, payload: &[] }; BATCH];
                for (i, (&(len, to), slot)) in
                    self.send_meta.iter().zip(self.send_buf.chunks_exact(packet)).enumerate()
                {
                    batch[i] = Outgoing { to, payload: &slot[..len] };
                }
                let mut done = 0;
                while done < count {
                    let n = self.socket.send_batch(&batch[done..count])?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                done
            };
            // What the socket would not take is lost to the protocol, which resends what was
            // reliable.
            self.stats.datagrams_sent += done as u64;
            self.stats.datagrams_unsent += (count - done) as u64;
            if count < BATCH {
                return Ok(());
            }
        }
    }

    /// Sends what is due, reads what has arrived, runs due timers, and returns the next event
    /// (or [`HostEvent::Nothing`]). What the read makes due (acknowledgements, answers the
    /// application queues while handling the events) goes out on the next call, so call
    /// again until `Nothing` (or [`flush`](Self::flush)) before sleeping.
    pub fn receive(&mut self) -> Result<HostEvent<'_>, HostError> {
        Ok(match self.next_event()? {
            None => HostEvent::Nothing,
            Some(Event::Connected(conn)) => HostEvent::Connect(conn),
            Some(Event::Data { conn, channel, payload }) => {
                HostEvent::Data { conn, channel, payload }
            }
            Some(Event::Disconnected { conn, reason }) => HostEvent::Disconnect(conn, reason),
        })
    }

    /// [`receive`](Self::receive) in the endpoint's own terms.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event<'_>>, HostError> {
        if !self.endpoint.has_events() {
            self.pump()?;
        }
        Ok(self.endpoint.poll_event())
    }

    fn pump(&mut self) -> Result<(), HostError> {
        let now = now();
        self.flush_at(now)?;
        let limit = self.recv.slot_size() - 1;
        let (mut read, mut drained) = (0, false);
        // Within a read interval the socket waits (timers and the host's sends do not).
        let budget = if self.pacer.may_read(now) { RECV_BUDGET } else { 0 };
        while read < budget {
            let n = self.socket.recv_batch(&mut self.recv)?;
            read += n;
            drained = n < self.recv.capacity();
            // At a crowd's scale every sender's state is cold: ask for it a few datagrams
            // ahead, so the batch's memory reads overlap. A smaller server's is in cache, and
            // asking would only cost.
            let prefetch = self.endpoint.connection_count() >= PREFETCH_FROM_CONNECTIONS;
            for step in Pipeline::new(self.recv.len()) {
                match step {
                    Step::Prefetch { item, stage } if prefetch => {
                        if let Some((from, _)) = self.recv.get(item) {
                            self.endpoint.prefetch_source(from, stage);
                        }
                    }
                    Step::Prefetch { .. } => {}
                    Step::Handle(item) => {
                        let Some((from, datagram)) = self.recv.get(item) else { continue };
                        if datagram.len() > limit {
                            self.stats.datagrams_oversized += 1;
                            continue;
                        }
                        self.stats.datagrams_received += 1;
                        self.endpoint.handle_datagram(now, from, datagram);
                    }
                }
            }
            // A batch that did not fill up found the queue empty (or was a single receive of
            // an interactive flow): the next call reads on.
            if drained {
                break;
            }
            // More is waiting. Send the acks this batch made due before reading on: an ack
            // covers only the newest 33 packets, so acking once after a long burst would leave
            // the sender to time out (and resend) packets that arrived.
            self.flush_at(now)?;
        }
        if drained {
            // A read that stopped at its budget left a backlog: the next one goes at once.
            self.pacer.on_drained(now, read);
        }
        self.settle(now);
        if self.endpoint.has_events() {
            // Hand the events out first: what they made due (an ack, most often) goes out at
            // the start of the next call, with whatever the application sends in answer, in
            // the same packet. The application calls again until `Nothing` anyway.
            return Ok(());
        }
        self.flush_at(now)?;
        self.settle(now);
        Ok(())
    }

    /// Sleeps until a datagram may have arrived, the next protocol timer is due, or `timeout`
    /// passes (`None`: no limit of its own). With a
    /// [`read_interval`](EndpointConfig::read_interval), it first sleeps until that long after
    /// the latest read that found datagrams.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<(), HostError> {
        let protocol = self.endpoint.time_until_timeout(now());
        let wait = match (timeout, protocol) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.pacer.wait(&mut self.socket, wait)?;
        Ok(())
    }

    /// A connection's counters and estimates (RTT, loss each way, resends, …).
    pub fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        self.endpoint.connection_stats(conn)
    }

    /// The host's I/O counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The protocol endpoint (for its statistics and settings).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The protocol endpoint, mutably (to set an accept filter, for example).
    pub fn endpoint_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    /// The socket.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// The socket, mutably (to retune a conditioned socket's link, for instance).
    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    fn a_pacer_holds_reads_only_after_one_that_found_datagrams() {
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut pacer = ReadPacer::new(ms * 10).unwrap();
        pacer.on_drained(start, 0);
        assert!(pacer.may_read(start + ms), "an empty read starts no interval");
        pacer.on_drained(start, 3);
        assert!(!pacer.may_read(start + ms * 9));
        assert_eq!(pacer.hold(start + ms * 4, None), ms * 6);
        assert_eq!(pacer.hold(start + ms * 4, Some(ms * 2)), ms * 2, "a timer ends the hold");
        assert!(pacer.may_read(start + ms * 10));
        assert_eq!(pacer.hold(start + ms * 30, None), Duration::ZERO);

        let mut unpaced = ReadPacer::new(Duration::ZERO).unwrap();
        unpaced.on_drained(start, 3);
        assert!(unpaced.may_read(start));
        assert_eq!(ReadPacer::new(MAX_READ_INTERVAL).unwrap().interval(), MAX_READ_INTERVAL);
        let too_long = ReadPacer::new(MAX_READ_INTERVAL + Duration::from_nanos(1)).unwrap_err();
        assert!(too_long.to_string().contains("read_interval"), "{too_long}");
    }

    /// A socket with `waiting` junk datagrams to read (from an address no connection has),
    /// recording the timeouts it is asked to wait for.
    #[derive(Debug, Default)]
    struct Fake {
        waiting: usize,
        waits: Vec<Option<Duration>>,
    }

    impl Socket for Fake {
        fn send_to(
            &mut self,
            _: &[u8],
            _: SocketAddr,
        ) -> Result<sturnus_socket::SendStatus, SocketError> {
            Ok(sturnus_socket::SendStatus::Sent)
        }
        fn recv_from(
            &mut self,
            buf: &mut [u8],
        ) -> Result<Option<sturnus_socket::RecvMeta>, SocketError> {
            if self.waiting == 0 {
                return Ok(None);
            }
            self.waiting -= 1;
            buf[..4].copy_from_slice(b"junk");
            Ok(Some(sturnus_socket::RecvMeta {
                len: 4,
                from: SocketAddr::from(([10, 0, 0, 1], 9)),
            }))
        }
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 9))
        }
        fn wait_readable(
            &mut self,
            timeout: Option<Duration>,
        ) -> Result<sturnus_socket::Readiness, SocketError> {
            self.waits.push(timeout);
            Ok(sturnus_socket::Readiness::TimedOut)
        }
        fn stats(&self) -> sturnus_socket::SocketStats {
            sturnus_socket::SocketStats::default()
        }
    }

    #[test]
    fn a_wait_within_an_interval_sleeps_only_to_its_limit_then_waits_for_the_rest() {
        let ms = Duration::from_millis(1);
        let mut pacer = ReadPacer::new(ms * 100).unwrap();
        let mut socket = Fake::default();
        // No drain yet: straight to the socket, with the whole limit.
        pacer.wait(&mut socket, Some(ms * 3)).unwrap();
        assert_eq!(socket.waits, [Some(ms * 3)]);
        // Within the interval, a limit shorter than the hold ends the wait at the limit: the
        // socket is not waited on at all.
        pacer.on_drained(now(), 1);
        pacer.wait(&mut socket, Some(ms * 2)).unwrap();
        assert_eq!(socket.waits.len(), 1, "the wait went on past its limit: {:?}", socket.waits);
        // Once the interval is over, the socket is waited on for what is left (less than the
        // 200 ms asked for, as the interval's rest was slept first).
        pacer.on_drained(now(), 1);
        pacer.wait(&mut socket, Some(ms * 200)).unwrap();
        let rest = socket.waits[1].expect("a limit was given");
        assert!(rest <= ms * 100, "waited on the socket for {rest:?} of 200 ms after the hold");
    }

    #[test]
    fn a_drain_cut_short_by_its_budget_does_not_hold_the_rest_back() {
        let waiting = RECV_BUDGET + 100;
        let config =
            EndpointConfig { read_interval: MAX_READ_INTERVAL, ..EndpointConfig::default() };
        let mut host = Host::new(config, Fake { waiting, ..Fake::default() }).unwrap();
        assert_eq!(host.receive().unwrap(), HostEvent::Nothing);
        assert_eq!(host.stats().datagrams_received, RECV_BUDGET as u64);
        // The backlog is read on the next call, not an interval later.
        assert_eq!(host.receive().unwrap(), HostEvent::Nothing);
        assert_eq!(host.stats().datagrams_received, waiting as u64);
        // That drain emptied the socket: the next waits out the interval.
        host.socket_mut().waiting = 5;
        assert_eq!(host.receive().unwrap(), HostEvent::Nothing);
        assert_eq!(host.stats().datagrams_received, waiting as u64);
    }
}

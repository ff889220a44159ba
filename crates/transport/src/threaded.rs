//! [`ThreadedHost`]: a [`Host`] whose socket I/O and protocol timers run on a thread of its own
//! (UNET's default), talking to the application through two batch handoffs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sturnus_socket::{Socket, SocketFactory, SocketWaker};

use crate::handoff::{Batch, Handoff};
use crate::{
    ChannelId, ConnectError, ConnectionId, DisconnectReason, EndpointConfig, Host, HostError,
    HostEvent, QueueLimit, SendError,
};

/// How long the I/O thread sleeps at most when its socket has no waker, or while commands wait
/// for room in a send queue.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Bytes of messages the application may have queued for the I/O thread before `send` pushes
/// back.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Op {
    Send { conn: ConnectionId, channel: ChannelId, start: usize, len: usize },
    Disconnect(ConnectionId),
    Connect(SocketAddr),
    SetTrusted(ConnectionId),
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    /// A connection is up, with its peer's address.
    Connect(ConnectionId, Option<SocketAddr>),
    Data {
        conn: ConnectionId,
        channel: ChannelId,
        start: usize,
        len: usize,
        /// State-update channels: the serial of the previous state of this connection and
        /// channel, if it was published in an earlier batch (it is superseded if it is still
        /// in the handoff when this one joins it).
        older: Option<u64>,
        /// A newer state of the same connection and channel follows: not delivered.
        superseded: bool,
    },
    Disconnect(ConnectionId, DisconnectReason),
}

/// An item of a [`Frames`] batch that may own a payload in the batch's byte buffer.
trait Framed: Copy {
    /// Where the item's payload starts in the batch's bytes, if it has one.
    fn start_mut(&mut self) -> Option<&mut usize>;

    /// The serial of an earlier item this one supersedes, if any.
    fn supersedes(&self) -> Option<u64> {
        None
    }

    /// Marks the item as superseded by a later one.
    fn supersede(&mut self) {}
}

impl Framed for Op {
    fn start_mut(&mut self) -> Option<&mut usize> {
        match self {
            Op::Send { start, .. } => Some(start),
            _ => None,
        }
    }
}

impl Framed for Ev {
    fn start_mut(&mut self) -> Option<&mut usize> {
        match self {
            Ev::Data { start, .. } => Some(start),
            _ => None,
        }
    }

    fn supersedes(&self) -> Option<u64> {
        match *self {
            Ev::Data { older, .. } => older,
            _ => None,
        }
    }

    fn supersede(&mut self) {
        if let Ev::Data { superseded, .. } = self {
            *superseded = true;
        }
    }
}

/// A batch of items whose payloads sit back to back in one byte buffer: commands
/// (application → I/O thread) and events (I/O thread → application).
///
/// Events are numbered (serials) in the order the I/O thread reports them, so that a newer
/// state update can find the older one of its connection and channel in the handoff and
/// supersede it, in place, without a search or an allocation.
#[derive(Debug)]
struct Frames<T> {
    items: Vec<T>,
    data: Vec<u8>,
    /// The serial of `items[0]` (meaningful while there are items); item `i` is `first + i`.
    first: u64,
}

impl<T> Default for Frames<T> {
    fn default() -> Self {
        Self { items: Vec::new(), data: Vec::new(), first: 0 }
    }
}

impl<T: Framed> Frames<T> {
    /// Adds `payload` and the item `make` builds from where it starts.
    fn push_with(&mut self, payload: &[u8], make: impl FnOnce(usize) -> T) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.items.push(make(start));
    }

    /// Marks the item with serial `serial` superseded, if it is in this batch.
    fn supersede_serial(&mut self, serial: u64) {
        let Some(i) = serial.checked_sub(self.first) else { return };
        if let Some(item) = usize::try_from(i).ok().and_then(|i| self.items.get_mut(i)) {
            item.supersede();
        }
    }

    /// Drops the first `items` items and the first `bytes` bytes (the payloads of those
    /// items), keeping the rest's payload positions right.
    fn drop_front(&mut self, items: usize, bytes: usize) {
        let _ = self.items.drain(..items);
        let _ = self.data.drain(..bytes);
        for item in &mut self.items {
            if let Some(start) = item.start_mut() {
                *start -= bytes;
            }
        }
    }
}

impl<T: Framed> Batch for Frames<T> {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
    }
    fn append(&mut self, other: &mut Self) {
        if self.items.is_empty() {
            self.first = other.first;
        }
        // Events: `other` continues this batch's serials (the I/O thread publishes in order,
        // and a take empties the handoff), so a serial locates its item here.
        let base = self.data.len();
        for mut item in other.items.drain(..) {
            if let Some(start) = item.start_mut() {
                *start += base;
            }
            if let Some(older) = item.supersedes() {
                // The older state is superseded if it is still here (not yet taken).
                self.supersede_serial(older);
            }
            self.items.push(item);
        }
        self.data.append(&mut other.data);
    }
}

type Commands = Frames<Op>;
type Events = Frames<Ev>;

/// State both threads share.
#[derive(Debug, Default)]
struct Shared {
    commands: Handoff<Commands>,
    events: Handoff<Events>,
    connect_reply: Mutex<Option<Result<ConnectionId, ConnectError>>>,
    connect_done: Condvar,
    /// Bytes of messages the I/O thread holds but the endpoint has not taken yet.
    backlog: AtomicUsize,
    stop: AtomicBool,
    /// A span the I/O thread is to log in from its next round on (see
    /// [`ThreadedHost::set_log_span`]), and whether one is waiting.
    log_span: Mutex<Option<tracing::Span>>,
    log_span_set: AtomicBool,
}

/// A [`Host`] driven by a background I/O thread: the socket is read, acknowledgements and
/// resends are sent and timers run whether or not the application is polling, so a slow frame
/// never delays an ack. The application's calls only move batches through two handoffs (one
/// lock per batch, buffers reused), and the I/O thread sleeps in the socket's wait until a
/// datagram, a timer or the application's [`flush`](Self::flush) wakes it.
///
/// The API mirrors [`Host`], and so do the QoS promises: of the states of a state-update
/// channel that arrived since the application last took events, only the newest is delivered,
/// however many rounds of the I/O thread they came in. Use `Host` itself for UNET's "main
/// thread only" mode.
///
/// ```
/// use std::time::Duration;
/// use sturnus_socket::LoopbackSocketFactory;
/// use sturnus_transport::{ChannelId, EndpointConfig, HostEvent, ThreadedHost};
///
/// let factory = LoopbackSocketFactory::new();
/// let mut server = ThreadedHost::bind(EndpointConfig::default(), &factory, "127.0.0.1:7000".parse().unwrap()).unwrap();
/// let (mut client, conn) = ThreadedHost::connect_to(EndpointConfig::default(), &factory, server.local_addr()).unwrap();
/// client.send(conn, ChannelId(0), b"hello").unwrap();
/// client.flush();
/// let got = loop {
///     match server.receive().unwrap() {
///         HostEvent::Data { payload, .. } => break payload.to_vec(),
///         HostEvent::Nothing => server.wait(Some(Duration::from_millis(10))),
///         _ => {}
///     }
/// };
/// assert_eq!(got, b"hello");
/// ```
#[derive(Debug)]
pub struct ThreadedHost {
    shared: Arc<Shared>,
    waker: Option<SocketWaker>,
    config: EndpointConfig,
    local_addr: SocketAddr,
    outgoing: Commands,
    incoming: Events,
    next: usize,
    /// The peer address of each connection reported up and not yet down.
    addresses: HashMap<ConnectionId, SocketAddr>,
    thread: Option<JoinHandle<Result<(), HostError>>>,
}

impl ThreadedHost {
    /// Starts an I/O thread driving a host over `socket`.
    pub fn new<S: Socket + 'static>(config: EndpointConfig, socket: S) -> Result<Self, HostError> {
        let waker = socket.waker();
        let host = Host::new(config.clone(), socket)?;
        let local_addr = host.local_addr();
        let shared = Arc::new(Shared::default());
        // Until told otherwise, the I/O thread logs in a span naming the endpoint by its
        // address, inside whatever span the host was made in.
        let span = tracing::info_span!("endpoint", name = %local_addr);
        let thread = {
            let shared = Arc::clone(&shared);
            let bounded = waker.is_none();
            std::thread::Builder::new()
                .name("sturnus-io".into())
                .spawn(move || io_thread(host, &shared, bounded, span))
                .map_err(|e| HostError::Socket(sturnus_socket::SocketError::io("spawn", e)))?
        };
        Ok(Self {
            shared,
            waker,
            config,
            local_addr,
            outgoing: Commands::default(),
            incoming: Events::default(),
            next: 0,
            addresses: HashMap::new(),
            thread: Some(thread),
        })
    }

    /// A threaded host on a server socket of `factory` bound to `addr`.
    pub fn bind<F>(config: EndpointConfig, factory: &F, addr: SocketAddr) -> Result<Self, HostError>
    where
        F: SocketFactory,
        F::Socket: 'static,
    {
        Self::new(config, factory.server_socket(addr)?)
    }

    /// A threaded client host on a socket of `factory`, already connecting to `remote`.
    pub fn connect_to<F>(
        config: EndpointConfig,
        factory: &F,
        remote: SocketAddr,
    ) -> Result<(Self, ConnectionId), HostError>
    where
        F: SocketFactory,
        F::Socket: 'static,
    {
        let config = EndpointConfig { accept_connections: false, ..config };
        let mut host = Self::new(config, factory.client_socket(remote)?)?;
        let conn = host.connect(remote)?;
        Ok((host, conn))
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts connecting to `remote` (a round trip to the I/O thread, which assigns the id).
    pub fn connect(&mut self, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.outgoing.items.push(Op::Connect(remote));
        self.flush();
        let mut reply = lock(&self.shared.connect_reply);
        loop {
            if let Some(result) = reply.take() {
                return result;
            }
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(ConnectError::HostStopped);
            }
            reply = self
                .shared
                .connect_done
                .wait_timeout(reply, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Queues a message for the I/O thread; it is handed over on the next
    /// [`flush`](Self::flush) or [`receive`](Self::receive). A message for a connection that
    /// has meanwhile closed is dropped (its Disconnect event is on the way).
    ///
    /// Pushes back with [`SendError::QueueFull`] and [`QueueLimit::PendingBytes`] when 8 MiB of
    /// messages already wait for the I/O thread (which holds them back while a channel's own
    /// queue is full).
    pub fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let qos = self.config.qos(channel).ok_or(SendError::UnknownChannel(channel))?;
        let max = self.config.max_message_size(qos);
        if payload.len() > max {
            return Err(SendError::MessageTooLarge { channel, len: payload.len(), max });
        }
        let pending = self.outgoing.data.len() + self.shared.backlog.load(Ordering::Relaxed);
        if pending + payload.len() > MAX_PENDING_BYTES {
            return Err(SendError::QueueFull {
                channel,
                limit: QueueLimit::PendingBytes(MAX_PENDING_BYTES),
            });
        }
        let len = payload.len();
        self.outgoing.push_with(payload, |start| Op::Send { conn, channel, start, len });
        Ok(())
    }

    /// Closes a connection (the peer is told); no event follows.
    pub fn disconnect(&mut self, conn: ConnectionId) {
        self.addresses.remove(&conn);
        self.outgoing.items.push(Op::Disconnect(conn));
        self.flush();
    }

    /// Trusts a connection a peer opened to us, typically once it has authenticated (see
    /// [`Endpoint::set_trusted`](crate::Endpoint::set_trusted)): its reassembly budget becomes
    /// `max_reassembly_bytes`. Needed when `trust_incoming` is `false`, or the connection stays
    /// held to the untrusted budgets. Applied by the I/O thread in order with the commands
    /// before it and after it (a message sent after this call is handled under trust); a
    /// connection that has meanwhile closed is ignored.
    pub fn set_trusted(&mut self, conn: ConnectionId) {
        self.outgoing.items.push(Op::SetTrusted(conn));
        self.flush();
    }

    /// Hands what was queued to the I/O thread and wakes it.
    pub fn flush(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        self.shared.commands.publish(&mut self.outgoing);
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }

    /// Flushes, then returns the next event the I/O thread reported (or
    /// [`HostEvent::Nothing`]). An error means the I/O thread stopped on a socket error.
    pub fn receive(&mut self) -> Result<HostEvent<'_>, HostError> {
        self.flush();
        loop {
            if self.next >= self.incoming.items.len() {
                self.next = 0;
                if !self.shared.events.take(&mut self.incoming) {
                    self.incoming.clear();
                    if self.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                        return self.join().map(|()| HostEvent::Nothing);
                    }
                    return Ok(HostEvent::Nothing);
                }
            }
            let ev = self.incoming.items[self.next];
            self.next += 1;
            return Ok(match ev {
                Ev::Connect(conn, address) => {
                    if let Some(address) = address {
                        self.addresses.insert(conn, address);
                    }
                    HostEvent::Connect(conn)
                }
                // A newer state of this connection and channel follows in this batch.
                Ev::Data { superseded: true, .. } => continue,
                Ev::Data { conn, channel, start, len, .. } => HostEvent::Data {
                    conn,
                    channel,
                    payload: &self.incoming.data[start..start + len],
                },
                Ev::Disconnect(conn, reason) => {
                    self.addresses.remove(&conn);
                    HostEvent::Disconnect(conn, reason)
                }
            });
        }
    }

    /// The peer address of a connection reported by [`receive`](Self::receive) and not yet
    /// closed.
    pub fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        self.addresses.get(&conn).copied()
    }

    /// The `tracing` span the I/O thread logs in from its next round on (connections opened,
    /// accepted, closed; refused handshakes). By default it is `endpoint{name=<local address>}`;
    /// the message layer hands over its own `endpoint{name=…}` span when it is given the host,
    /// so the I/O thread's logs carry the server's or client's name.
    pub fn set_log_span(&self, span: tracing::Span) {
        *lock(&self.shared.log_span) = Some(span);
        self.shared.log_span_set.store(true, Ordering::Release);
    }

    /// The channel layout and limits it was made with.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Sleeps until the I/O thread reports events or `timeout` passes (`None`: no limit).
    pub fn wait(&self, timeout: Option<Duration>) {
        // What is left of the batch in hand ends with a live event (a superseded state is
        // always followed by its successor in the same batch).
        if self.next < self.incoming.items.len() {
            return;
        }
        self.shared.events.wait(timeout);
    }

    /// Stops the I/O thread (connections are dropped without notice; disconnect them first
    /// to tell peers) and returns its error, if it stopped on one.
    pub fn stop(mut self) -> Result<(), HostError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), HostError> {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(waker) = &self.waker {
            waker.wake();
        }
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(HostError::IoThreadPanicked)),
            None => Ok(()),
        }
    }
}

impl Drop for ThreadedHost {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The I/O thread: applies commands, pumps the host, publishes events, sleeps.
fn io_thread<S: Socket>(
    mut host: Host<S>,
    shared: &Shared,
    bounded: bool,
    mut span: tracing::Span,
) -> Result<(), HostError> {
    let mut taken = Commands::default();
    let mut backlog = Commands::default();
    let mut events = Events::default();
    let mut reporter = Reporter::new(host.endpoint().config());
    while !shared.stop.load(Ordering::Acquire) {
        if shared.log_span_set.swap(false, Ordering::Acquire) {
            if let Some(named) = lock(&shared.log_span).take() {
                span = named;
            }
        }
        let _entered = span.enter();
        if shared.commands.take(&mut taken) {
            backlog.append(&mut taken);
        }
        let applied = apply(&mut host, &mut backlog, shared, &mut reporter);
        loop {
            match host.receive()? {
                HostEvent::Nothing => break,
                HostEvent::Connect(conn) => {
                    let address = host.endpoint().remote_address(conn);
                    reporter.report(HostEvent::Connect(conn), address, &mut events);
                }
                event => reporter.report(event, None, &mut events),
            }
        }
        shared.events.publish(&mut events);
        shared.backlog.store(backlog.data.len(), Ordering::Relaxed);
        if applied && (bounded || !backlog.is_empty()) {
            host.wait(Some(POLL_INTERVAL))?;
        } else if applied {
            host.wait(None)?;
        }
    }
    // What was handed over before the stop (last messages, disconnects that tell the peers)
    // still goes out.
    let _entered = span.enter();
    if shared.commands.take(&mut taken) {
        backlog.append(&mut taken);
    }
    apply(&mut host, &mut backlog, shared, &mut reporter);
    host.flush()
}

/// Numbers the events the I/O thread reports and keeps, per connection and state-update
/// channel, the serial of the newest state, so that an older state still waiting in the
/// handoff is superseded: a reader that polls late gets only the newest state, as from a
/// [`Host`].
///
/// The serials are kept per connection slot (open connections have distinct slots), so what
/// is kept is bounded by the endpoint's connections whether or not a connection is forgotten,
/// a state costs no hashing, and forgetting a connection touches only its own entry.
#[derive(Debug)]
struct Reporter {
    /// Whether each channel (by id) is of a state-update kind.
    state_channels: Vec<bool>,
    /// Per connection slot, the serials of the newest states of the connection that used it
    /// last.
    newest: Vec<SlotStates>,
    /// The serial of the next event (serials run on across batches).
    next: u64,
}

/// The newest states of the connection in one slot.
#[derive(Debug, Default)]
struct SlotStates {
    /// The connection they belong to; `None` once it is forgotten (the serials are then
    /// meaningless and are reset by the next connection in the slot).
    conn: Option<ConnectionId>,
    /// Per channel (by id), the serial of its newest state, if any.
    serials: Vec<Option<u64>>,
}

impl Reporter {
    fn new(config: &EndpointConfig) -> Self {
        Self {
            state_channels: config.channels.iter().map(|q| q.is_state_update()).collect(),
            newest: Vec::new(),
            next: 0,
        }
    }

    /// Records `serial` as the newest state of `conn` on `channel`; returns the previous one.
    fn replace_newest(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        serial: u64,
    ) -> Option<u64> {
        let slot = conn.slot();
        if self.newest.len() <= slot {
            self.newest.resize_with(slot + 1, SlotStates::default);
        }
        let states = &mut self.newest[slot];
        if states.conn != Some(conn) {
            // A new connection in this slot: nothing of the old one's applies.
            states.conn = Some(conn);
            states.serials.clear();
            states.serials.resize(self.state_channels.len(), None);
        }
        states.serials.get_mut(usize::from(channel.0))?.replace(serial)
    }

    /// Forgets a connection that is gone (closed by either side): O(1).
    fn forget(&mut self, conn: ConnectionId) {
        if let Some(states) = self.newest.get_mut(conn.slot()) {
            if states.conn == Some(conn) {
                states.conn = None;
            }
        }
    }

    /// Newest states remembered, over all connections (for tests).
    #[cfg(all(test, not(loom)))]
    fn remembered(&self) -> usize {
        self.newest
            .iter()
            .filter(|s| s.conn.is_some())
            .map(|s| s.serials.iter().flatten().count())
            .sum()
    }

    /// Adds `event` to `events`, the batch the I/O thread publishes next. A state update
    /// supersedes the previous state of its connection and channel: at once if that is in
    /// `events` too, or (if it is still there) when `events` joins the handoff.
    /// `address` is the peer's, for a `Connect`.
    fn report(&mut self, event: HostEvent<'_>, address: Option<SocketAddr>, events: &mut Events) {
        if event == HostEvent::Nothing {
            return;
        }
        if events.items.is_empty() {
            events.first = self.next;
        }
        let serial = self.next;
        self.next += 1;
        match event {
            HostEvent::Connect(conn) => events.items.push(Ev::Connect(conn, address)),
            HostEvent::Data { conn, channel, payload } => {
                let mut older = None;
                if self.state_channels.get(usize::from(channel.0)).copied().unwrap_or(false) {
                    older = self.replace_newest(conn, channel, serial);
                    if let Some(serial) = older.filter(|&s| s >= events.first) {
                        events.supersede_serial(serial);
                        older = None;
                    }
                }
                let len = payload.len();
                events.push_with(payload, |start| Ev::Data {
                    conn,
                    channel,
                    start,
                    len,
                    older,
                    superseded: false,
                });
            }
            HostEvent::Disconnect(conn, reason) => {
                self.forget(conn);
                events.items.push(Ev::Disconnect(conn, reason));
            }
            HostEvent::Nothing => {}
        }
    }
}

/// Applies queued commands in order, stopping at a send its channel has no room for (kept,
/// with everything after it, for the next round). Returns whether the thread may sleep: false
/// when commands were applied, so the pump runs once more to send them.
fn apply<S: Socket>(
    host: &mut Host<S>,
    backlog: &mut Commands,
    shared: &Shared,
    reporter: &mut Reporter,
) -> bool {
    let mut done = 0;
    for op in &backlog.items {
        match *op {
            Op::Send { conn, channel, start, len } => {
                // A closed connection's message is dropped (the sender validated the rest);
                // a full queue keeps this and everything after it for the next round.
                let payload = &backlog.data[start..start + len];
                if let Err(SendError::QueueFull { .. }) = host.send(conn, channel, payload) {
                    break;
                }
            }
            Op::Disconnect(conn) => {
                // What was sent before the disconnect goes out first, as from a `Host` flushed
                // in between (closing a connection drops what it has not sent). A socket error
                // here shows at the next receive.
                let _ = host.flush();
                // No event follows a local disconnect: forget the connection's states here.
                host.disconnect(conn);
                reporter.forget(conn);
            }
            Op::Connect(remote) => {
                *lock(&shared.connect_reply) = Some(host.connect(remote));
                shared.connect_done.notify_all();
            }
            Op::SetTrusted(conn) => {
                // False for a connection closed meanwhile: its Disconnect event is on the way.
                let _ = host.set_trusted(conn);
            }
        }
        done += 1;
    }
    if done == 0 {
        return true;
    }
    if done == backlog.items.len() {
        backlog.clear();
    } else {
        // The first op left is the send that found its queue full.
        let first_data = match backlog.items[done] {
            Op::Send { start, .. } => start,
            _ => 0,
        };
        backlog.drop_front(done, first_data);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Endpoint, Qos};

    fn payloads(frames: &Commands) -> Vec<&[u8]> {
        frames
            .items
            .iter()
            .filter_map(|op| match *op {
                Op::Send { start, len, .. } => Some(&frames.data[start..start + len]),
                _ => None,
            })
            .collect()
    }

    /// The payloads of the live (not superseded) data events of a batch, in order.
    fn delivered(events: &Events) -> Vec<&[u8]> {
        events
            .items
            .iter()
            .filter_map(|ev| match *ev {
                Ev::Data { start, len, superseded: false, .. } => {
                    Some(&events.data[start..start + len])
                }
                _ => None,
            })
            .collect()
    }

    /// Two connection ids, and a config with a state-update channel (0) and a reliable one
    /// (1).
    fn setup() -> ([ConnectionId; 2], EndpointConfig) {
        let config = EndpointConfig {
            channels: vec![Qos::StateUpdate, Qos::Reliable],
            ..EndpointConfig::default()
        };
        let mut endpoint = Endpoint::new(config.clone(), crate_now()).unwrap();
        let mut conn = |addr: &str| endpoint.connect(crate_now(), addr.parse().unwrap()).unwrap();
        ([conn("10.0.0.1:1"), conn("10.0.0.2:1")], config)
    }

    fn data(conn: ConnectionId, channel: u8, payload: &[u8]) -> HostEvent<'_> {
        HostEvent::Data { conn, channel: ChannelId(channel), payload }
    }

    #[test]
    fn appended_and_trimmed_frames_keep_their_payloads() {
        let conn = setup().0[0];
        let send = |frames: &mut Commands, payload: &[u8]| {
            let len = payload.len();
            frames.push_with(payload, |start| Op::Send { conn, channel: ChannelId(0), start, len });
        };
        let (mut a, mut b) = (Commands::default(), Commands::default());
        send(&mut a, b"one");
        a.items.push(Op::Disconnect(conn));
        send(&mut b, b"two");
        send(&mut b, b"three");
        a.append(&mut b);
        assert!(b.is_empty());
        assert_eq!(payloads(&a), [&b"one"[..], b"two", b"three"]);
        // Drop "one" and the disconnect: the rest still point at their bytes.
        a.drop_front(2, 3);
        assert_eq!(payloads(&a), [&b"two"[..], b"three"]);
        assert_eq!(a.data, b"twothree");
    }

    #[cfg(not(loom))]
    #[test]
    fn handoff_keeps_only_the_newest_state_that_was_not_taken() {
        let ([conn, other], config) = setup();
        let mut reporter = Reporter::new(&config);
        let handoff = Handoff::<Events>::default();
        let (mut local, mut out) = (Events::default(), Events::default());
        // Published in separate batches, none taken: only the newest state is left, and the
        // reliable message between them is untouched.
        reporter.report(data(conn, 0, b"s0"), None, &mut local);
        handoff.publish(&mut local);
        reporter.report(data(conn, 0, b"s1"), None, &mut local);
        reporter.report(data(conn, 1, b"r0"), None, &mut local);
        handoff.publish(&mut local);
        reporter.report(data(conn, 0, b"s2"), None, &mut local);
        handoff.publish(&mut local);
        assert!(handoff.take(&mut out));
        assert_eq!(delivered(&out), [&b"r0"[..], b"s2"]);
        // Several in one batch.
        for s in [&b"s3"[..], b"s4", b"s5"] {
            reporter.report(data(conn, 0, s), None, &mut local);
        }
        handoff.publish(&mut local);
        assert!(handoff.take(&mut out));
        assert_eq!(delivered(&out), [b"s5"]);
        // A state taken already is not the handoff's any more; the next one is delivered.
        reporter.report(data(conn, 0, b"s6"), None, &mut local);
        handoff.publish(&mut local);
        assert!(handoff.take(&mut out));
        assert_eq!(delivered(&out), [b"s6"]);
        // Another connection's state is its own.
        reporter.report(data(conn, 0, b"a"), None, &mut local);
        reporter.report(data(other, 0, b"b"), None, &mut local);
        reporter.report(HostEvent::Disconnect(conn, DisconnectReason::Timeout), None, &mut local);
        handoff.publish(&mut local);
        assert!(handoff.take(&mut out));
        assert_eq!(delivered(&out), [&b"a"[..], b"b"]);
        assert_eq!(reporter.remembered(), 1, "the closed connection's entry is gone");
    }

    /// A connection the application closes gets no Disconnect event, so `apply` forgets its
    /// newest states: a peer that connects, sends a state and is kicked, over and over, leaves
    /// nothing behind.
    #[cfg(not(loom))]
    #[test]
    fn a_local_disconnect_forgets_the_connections_newest_states() {
        let config = setup().1;
        let factory = sturnus_socket::LoopbackSocketFactory::new();
        let socket = factory.server_socket("10.0.0.1:1".parse().unwrap()).unwrap();
        let mut host = Host::new(config.clone(), socket).unwrap();
        let shared = Shared::default();
        let mut reporter = Reporter::new(&config);
        let mut events = Events::default();
        let mut backlog = Commands::default();
        for round in 0..50u8 {
            for i in 0..4u8 {
                let conn = host.connect(format!("10.1.{round}.{i}:1").parse().unwrap()).unwrap();
                reporter.report(data(conn, 0, b"state"), None, &mut events);
                reporter.report(data(conn, 1, b"reliable"), None, &mut events);
                backlog.items.push(Op::Disconnect(conn));
            }
            assert_eq!(reporter.remembered(), 4);
            assert!(!apply(&mut host, &mut backlog, &shared, &mut reporter));
            assert_eq!(reporter.remembered(), 0, "round {round}");
            events.clear();
        }
        // The slots were reused: what the reporter keeps is bounded by the connections.
        assert!(reporter.newest.len() <= 4, "{}", reporter.newest.len());
    }

    /// Every interleaving of the I/O thread reporting three states of one channel, each in a
    /// batch of its own, and the application taking and waiting: the application never gets
    /// an older state after a newer one, always gets the newest, and gets only the newest when
    /// it takes after the last publication.
    #[cfg(loom)]
    #[test]
    fn handoff_never_delivers_an_older_state_and_never_loses_the_newest() {
        let ([conn, _], config) = setup();
        loom::model(move || {
            let handoff = loom::sync::Arc::new(Handoff::<Events>::default());
            let producer = {
                let handoff = loom::sync::Arc::clone(&handoff);
                let config = config.clone();
                loom::thread::spawn(move || {
                    let mut reporter = Reporter::new(&config);
                    let mut local = Events::default();
                    for n in 0..3u8 {
                        reporter.report(data(conn, 0, &[n]), None, &mut local);
                        handoff.publish(&mut local);
                    }
                })
            };
            let mut seen = Vec::new();
            let mut out = Events::default();
            while seen.last() != Some(&2) {
                if handoff.take(&mut out) {
                    seen.extend(delivered(&out).iter().map(|p| p[0]));
                } else {
                    handoff.wait(None);
                }
            }
            producer.join().unwrap();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "older after newer: {seen:?}");
        });
    }

    #[expect(clippy::disallowed_methods, reason = "a starting instant for an endpoint")]
    fn crate_now() -> std::time::Instant {
        std::time::Instant::now()
    }
}

//! The high-level workloads (`sturnus-bench layers`): what the message and object layers cost
//! per message on top of the transport, measured beside the transport's own figure for the
//! same traffic in the same run.
//!
//! Both sides run in this process, each on its own thread (pinned to its own CPU when there are
//! two), over UDP on 127.0.0.1 with a `Host` on each side. Every repeat runs the layer and then
//! the transport alone, carrying the same messages (the same number, the same bytes per
//! message, on the same channel) with the same loop:
//!
//! - **messages**: a `NetworkClient` sends `N` messages of a 32-byte type (`[u8; 32]`, 34 bytes
//!   with the id) to a `NetworkServer`, whose handler checks their order; against `N`
//!   34-byte payloads from one `Host` to the other through the same `Transport` calls.
//! - **objects**: a `ServerObjectManager` holds `K` objects whose one `SyncVar<f32>` changes
//!   every tick (sync interval zero), for `T` ticks; a `ClientObjectManager` applies the
//!   updates. Against `K × T` transport messages of the update's size (measured on the layer
//!   run), sent `K` per tick.
//!
//! The sender keeps at most a window of messages in flight (2,048; three ticks of objects),
//! told by the receiver through an atomic counter and woken when it moves, so neither run
//! depends on how its send queue fills. The figures: `cpu_ns_per_msg`, the CPU time of both
//! threads over the messages; `msgs_per_s`, the messages over the time from the first send to
//! the last receive; `vs_transport_cpu` and `vs_transport_time`, the layer's figures over the
//! transport's of the same repeat.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sturnus_message::{
    ChannelId, ChannelLayout, ClientConfig, Message, MessageError, MessageId, NetworkClient,
    NetworkServer, Player, Qos, ServerConfig, ServerEvent, Transport,
};
use sturnus_object::{
    ClientObjectManager, NetId, NetworkBehaviour, ObjectConfig, PrefabId, ServerObjectManager,
    SyncVar,
};
use sturnus_socket::{SocketFactory, UdpSocket};
use sturnus_transport::{ConnectionId, Event, Host, SendError};

use crate::report::Record;
use crate::{BenchResult, now, probe, udp_factory};

/// The typed message of the messages workload, shaped like a movement update: a sequence
/// number and six floats, 32 bytes (34 with the id) whatever their values, since postcard
/// writes floats and a `fixint` integer at their full width. (A `[u8; 32]` of the same size
/// costs more: serde handles an array element by element.)
#[derive(Serialize, Deserialize, Message)]
struct Payload {
    #[serde(with = "postcard::fixint::le")]
    seq: u64,
    position: (f32, f32, f32),
    velocity: (f32, f32, f32),
}

impl Payload {
    fn new(seq: u64) -> Self {
        // Cheap values that vary with the sequence number.
        #[expect(clippy::cast_precision_loss, reason = "any value will do")]
        let x = (seq & 0xFFFF) as f32;
        Self { seq, position: (x, 1.0, 2.0), velocity: (0.5, x, 0.0) }
    }
}

const PAYLOAD: usize = 32;
/// What the message layer hands the transport for one [`Payload`]: its id, then the bytes.
const PAYLOAD_WIRE: usize = 2 + PAYLOAD;

/// The object of the objects workload: one synchronised field, changed every tick.
#[derive(Default, NetworkBehaviour)]
struct Mover {
    #[sync]
    x: SyncVar<f32>,
}

const MOVER: PrefabId = PrefabId::of_name("bench-mover");

/// Messages in flight at most, in the messages workload.
const MESSAGE_WINDOW: u64 = 2048;
/// Ticks in flight at most, in the objects workload (the transport queues 4,096 per channel).
const TICK_WINDOW: u64 = 3;
/// The most objects: three ticks of updates must fit the transport's send queue.
pub(crate) const MAX_OBJECTS: u64 = 4096 / TICK_WINDOW;
/// How long the two sides may take to connect (and spawn the objects).
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a run may take once it started.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Messages,
    Objects,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Messages => "messages",
            Kind::Objects => "objects",
        }
    }
}

/// The sizes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    /// Messages (messages workload).
    pub(crate) messages: u64,
    /// Objects (objects workload).
    pub(crate) objects: u64,
    /// Ticks (objects workload).
    pub(crate) ticks: u64,
    /// Pin the server's thread to the last CPU and the client's to the first.
    pub(crate) pin: bool,
}

impl Plan {
    /// Messages the run carries.
    fn total(&self) -> u64 {
        match self.kind {
            Kind::Messages => self.messages,
            Kind::Objects => self.objects * self.ticks,
        }
    }

    /// Messages one `produce` makes.
    fn batch(&self) -> u64 {
        match self.kind {
            Kind::Messages => 1,
            Kind::Objects => self.objects,
        }
    }

    fn window(&self) -> u64 {
        match self.kind {
            Kind::Messages => MESSAGE_WINDOW,
            Kind::Objects => self.objects * TICK_WINDOW,
        }
    }
}

/// What the two threads share.
#[derive(Default)]
struct Shared {
    /// Sides done setting up; both start at 2.
    ready: AtomicU32,
    /// A side failed: the other gives up.
    failed: AtomicBool,
    /// Messages the receiver has had so far.
    consumed: AtomicU64,
    /// The sender, woken when `consumed` moves.
    producer: OnceLock<Thread>,
    /// When the first message was made.
    start: OnceLock<Instant>,
    /// The server's address.
    addr: Mutex<Option<SocketAddr>>,
}

impl Shared {
    fn check(&self) -> BenchResult<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err("the other side failed".into());
        }
        Ok(())
    }
}

/// The side that sends.
trait Producer {
    /// Makes the next batch of messages (one message, or one tick's updates, sent); returns
    /// how many (0: the transport refuses more for now).
    fn produce(&mut self) -> BenchResult<u64>;
    /// Does the I/O that is due: handles what arrived (acks), sends what is queued.
    fn drive(&mut self) -> BenchResult<()>;
}

/// The side that receives.
trait Consumer {
    /// Handles what arrived; returns the messages received so far.
    fn drive(&mut self) -> BenchResult<u64>;
    /// Sleeps until something may have arrived, at most a millisecond.
    fn wait(&mut self) -> BenchResult<()>;
}

/// What one side measured.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    cpu: Duration,
    /// Receiver: when the last message arrived.
    end: Option<Instant>,
    /// Receiver: process allocations over the run.
    allocations: u64,
    /// Receiver: whether everything arrived in order and intact.
    in_order: bool,
    /// Sender: messages and bytes handed to the transport during the run.
    sent: (u64, u64),
    /// Datagrams this side's socket sent during the run.
    datagrams: u64,
}

/// A UDP `Host` that counts the workload's messages it is given to send (messages and bytes:
/// those on the data channel, less the layer's own, such as network-time requests and
/// answers, whose number depends on how long a run takes) and the datagrams it sent, for the
/// thread that drives it.
#[derive(Debug)]
struct Counted {
    inner: Host<UdpSocket>,
    counts: Rc<Counts>,
    data: ChannelId,
}

#[derive(Debug, Default)]
struct Counts {
    sent: Cell<(u64, u64)>,
    datagrams: Cell<u64>,
}

impl Counted {
    fn new(inner: Host<UdpSocket>) -> (Self, Rc<Counts>) {
        let counts = Rc::new(Counts::default());
        (Self { inner, counts: Rc::clone(&counts), data: data_channel() }, counts)
    }
}

impl Transport for Counted {
    fn channels(&self) -> &[Qos] {
        Transport::channels(&self.inner)
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        Transport::max_message_size(&self.inner, channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        Transport::local_addr(&self.inner)
    }
    fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<ConnectionId, sturnus_transport::ConnectError> {
        Transport::connect(&mut self.inner, now, remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        payload: &[u8],
    ) -> Result<(), SendError> {
        Transport::send(&mut self.inner, conn, channel, payload)?;
        if channel == self.data
            && !MessageId::of_payload(payload).is_some_and(MessageId::is_internal)
        {
            let (messages, bytes) = self.counts.sent.get();
            self.counts.sent.set((messages + 1, bytes + payload.len() as u64));
        }
        Ok(())
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        Transport::disconnect(&mut self.inner, now, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        Transport::set_trusted(&mut self.inner, conn);
    }
    fn poll_event(
        &mut self,
        now: Instant,
    ) -> Result<Option<Event<'_>>, sturnus_transport::HostError> {
        self.counts.datagrams.set(self.inner.stats().datagrams_sent);
        Transport::poll_event(&mut self.inner, now)
    }
    fn flush(&mut self, now: Instant) -> Result<(), sturnus_transport::HostError> {
        let flushed = Transport::flush(&mut self.inner, now);
        self.counts.datagrams.set(self.inner.stats().datagrams_sent);
        flushed
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Transport::poll_timeout(&self.inner)
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), sturnus_transport::HostError> {
        Transport::wait(&mut self.inner, timeout)
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<sturnus_transport::ConnectionStats> {
        Transport::connection_stats(&self.inner, conn)
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        Transport::remote_address(&self.inner, conn)
    }
}

fn layout() -> ChannelLayout {
    ChannelLayout::default()
}

/// The channel both workloads' messages go on: the first typed reliable-fragmented-sequenced
/// one (a message's default, and the objects').
fn data_channel() -> ChannelId {
    layout().first_of(Qos::ReliableFragmentedSequenced).expect("the default layout has one")
}

fn server_host() -> BenchResult<Host<UdpSocket>> {
    let socket = udp_factory().server_socket("127.0.0.1:0".parse()?)?;
    Ok(Host::new(layout().endpoint_config(), socket)?)
}

fn client_host(server: SocketAddr) -> BenchResult<Host<UdpSocket>> {
    Ok(Host::new(layout().endpoint_config(), udp_factory().client_socket(server)?)?)
}

/// Publishes the server's address.
fn publish(shared: &Shared, addr: Option<SocketAddr>) -> BenchResult<()> {
    let addr = addr.ok_or("a UDP host has an address")?;
    *shared.addr.lock().map_err(|_| "poisoned")? = Some(addr);
    Ok(())
}

/// Waits for the server's address.
fn server_addr(shared: &Shared) -> BenchResult<SocketAddr> {
    let deadline = now() + SETUP_TIMEOUT;
    loop {
        shared.check()?;
        if let Some(addr) = *shared.addr.lock().map_err(|_| "poisoned")? {
            return Ok(addr);
        }
        if now() > deadline {
            return Err("the server never started".into());
        }
        thread::yield_now();
    }
}

/// Drives `step` (which returns whether this side is set up) until both sides are; this side
/// counts itself ready once.
fn set_up(shared: &Shared, mut step: impl FnMut() -> BenchResult<bool>) -> BenchResult<()> {
    let deadline = now() + SETUP_TIMEOUT;
    let mut counted = false;
    loop {
        shared.check()?;
        if !counted && step()? {
            counted = true;
            shared.ready.fetch_add(1, Ordering::AcqRel);
        } else if counted {
            step()?;
        }
        if shared.ready.load(Ordering::Acquire) == 2 {
            return Ok(());
        }
        if now() > deadline {
            return Err("the two sides did not connect in time".into());
        }
    }
}

/// The sender's loop: keeps the window full, and sleeps while it is.
fn produce(p: &mut dyn Producer, shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let _ = shared.producer.set(thread::current());
    let (total, batch, window) = (plan.total(), plan.batch(), plan.window());
    let cpu = probe::thread_cpu_time();
    let start = now();
    let _ = shared.start.set(start);
    let mut produced = 0;
    loop {
        if shared.consumed.load(Ordering::Acquire) >= total {
            break;
        }
        while produced < total
            && produced + batch <= shared.consumed.load(Ordering::Acquire) + window
        {
            match p.produce()? {
                0 => break,
                n => produced += n,
            }
        }
        p.drive()?;
        if produced == total || produced + batch > shared.consumed.load(Ordering::Acquire) + window
        {
            thread::park_timeout(Duration::from_millis(1));
        }
        shared.check()?;
        if now() - start > RUN_TIMEOUT {
            return Err(format!("only {produced} of {total} messages made in time").into());
        }
    }
    Ok(Side { cpu: probe::thread_cpu_time() - cpu, ..Side::default() })
}

/// The receiver's loop: publishes its count and wakes the sender as it moves.
fn consume(c: &mut dyn Consumer, shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let total = plan.total();
    let (cpu, allocations, started) = (probe::thread_cpu_time(), probe::allocations(), now());
    let mut last = 0;
    loop {
        let got = c.drive()?;
        if got > last {
            last = got;
            shared.consumed.store(got, Ordering::Release);
            if let Some(producer) = shared.producer.get() {
                producer.unpark();
            }
            if got >= total {
                break;
            }
        } else {
            c.wait()?;
        }
        shared.check()?;
        if now() - started > RUN_TIMEOUT {
            return Err(format!("only {last} of {total} messages arrived in time").into());
        }
    }
    Ok(Side {
        cpu: probe::thread_cpu_time() - cpu,
        end: Some(now()),
        allocations: probe::allocations() - allocations,
        in_order: true,
        ..Side::default()
    })
}

// ---- The messages workload, over the message layer. ----

struct MessageSender {
    client: NetworkClient,
    seq: u64,
}

impl Producer for MessageSender {
    fn produce(&mut self) -> BenchResult<u64> {
        match self.client.send(&Payload::new(self.seq)) {
            Ok(()) => {
                self.seq += 1;
                Ok(1)
            }
            Err(MessageError::Send(SendError::QueueFull { .. })) => Ok(0),
            Err(err) => Err(err.into()),
        }
    }
    fn drive(&mut self) -> BenchResult<()> {
        Ok(self.client.update(sturnus_message::driver::now())?)
    }
}

struct MessageReceiver {
    server: NetworkServer,
    count: std::sync::Arc<AtomicU64>,
}

impl Consumer for MessageReceiver {
    fn drive(&mut self) -> BenchResult<u64> {
        self.server.update(sturnus_message::driver::now())?;
        Ok(self.count.load(Ordering::Relaxed))
    }
    fn wait(&mut self) -> BenchResult<()> {
        Ok(self.server.wait(Duration::from_millis(1))?)
    }
}

fn message_layer_server(shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let config = ServerConfig { rate_limit: None, ..ServerConfig::default() };
    let mut server = NetworkServer::new(config)?;
    // The handler checks the order; only this thread writes the counters, so plain loads and
    // stores do (no read-modify-write on the hot path).
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let disorder = std::sync::Arc::new(AtomicBool::new(false));
    let (counter, wrong) = (std::sync::Arc::clone(&count), std::sync::Arc::clone(&disorder));
    server.register_handler(move |_: Player<'_>, Payload { seq, .. }| {
        let next = counter.load(Ordering::Relaxed);
        if seq != next {
            wrong.store(true, Ordering::Relaxed);
        }
        counter.store(next + 1, Ordering::Relaxed);
    })?;
    let (transport, counts) = Counted::new(server_host()?);
    let addr = server.start(sturnus_message::driver::now(), transport)?;
    publish(shared, addr)?;
    let mut authenticated = false;
    set_up(shared, || {
        server.update(sturnus_message::driver::now())?;
        while let Some(event) = server.poll_event() {
            authenticated |= matches!(event, ServerEvent::Authenticated(_));
        }
        if !authenticated {
            server.wait(Duration::from_millis(1))?;
        }
        Ok(authenticated)
    })?;
    let datagrams = counts.datagrams.get();
    let mut receiver = MessageReceiver { server, count };
    let side = consume(&mut receiver, shared, plan)?;
    let datagrams = counts.datagrams.get() - datagrams;
    Ok(Side { in_order: !disorder.load(Ordering::Relaxed), datagrams, ..side })
}

fn message_layer_client(shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let addr = server_addr(shared)?;
    let mut client = NetworkClient::new(ClientConfig::default())?;
    let (transport, counts) = Counted::new(client_host(addr)?);
    client.connect(sturnus_message::driver::now(), transport, addr)?;
    set_up(shared, || {
        client.update(sturnus_message::driver::now())?;
        if !client.is_authenticated() {
            client.wait(Duration::from_millis(1))?;
        }
        Ok(client.is_authenticated())
    })?;
    let (before, datagrams) = (counts.sent.get(), counts.datagrams.get());
    let mut sender = MessageSender { client, seq: 0 };
    let side = produce(&mut sender, shared, plan)?;
    let after = counts.sent.get();
    let datagrams = counts.datagrams.get() - datagrams;
    Ok(Side { sent: (after.0 - before.0, after.1 - before.1), datagrams, ..side })
}

// ---- The messages workload, over the transport alone. ----

/// A `Host` and its one connection, driven through the `Transport` calls the layers use.
struct Raw {
    host: Host<UdpSocket>,
    conn: Option<ConnectionId>,
    channel: ChannelId,
    buf: Vec<u8>,
    size: usize,
    /// Sender: messages queued.
    seq: u64,
    /// Receiver: messages received, and whether each carried the next sequence number (only
    /// the messages workload numbers them).
    received: u64,
    numbered: bool,
    in_order: bool,
    /// Objects: a tick was just sent and flushed.
    fresh: bool,
    /// Objects: messages per tick.
    per_tick: u64,
}

impl Raw {
    fn new(host: Host<UdpSocket>, size: usize) -> Self {
        Self {
            host,
            conn: None,
            channel: data_channel(),
            buf: vec![0; size.max(8)],
            size,
            seq: 0,
            received: 0,
            numbered: false,
            in_order: true,
            fresh: false,
            per_tick: 1,
        }
    }

    /// Handles everything that arrived, then sends what is queued: a layer's `update`, without
    /// the layer.
    fn pump(&mut self) -> BenchResult<()> {
        let t = sturnus_message::driver::now();
        loop {
            match Transport::poll_event(&mut self.host, t)? {
                None => break,
                Some(Event::Connected(conn)) => self.conn = Some(conn),
                Some(Event::Data { payload, .. }) => {
                    if self.numbered {
                        let seq = payload.get(..8).and_then(|s| s.try_into().ok());
                        if seq.map(u64::from_le_bytes) != Some(self.received) {
                            self.in_order = false;
                        }
                    }
                    self.received += 1;
                }
                Some(_) => {}
            }
        }
        Transport::flush(&mut self.host, t)?;
        Ok(())
    }

    fn send_one(&mut self) -> BenchResult<bool> {
        let conn = self.conn.ok_or("not connected")?;
        self.buf[..8].copy_from_slice(&self.seq.to_le_bytes());
        match Transport::send(&mut self.host, conn, self.channel, &self.buf[..self.size]) {
            Ok(()) => {
                self.seq += 1;
                Ok(true)
            }
            Err(SendError::QueueFull { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }
}

/// The transport's sender: one message per `produce` (messages), or a tick's worth, sent and
/// flushed (objects).
impl Producer for Raw {
    fn produce(&mut self) -> BenchResult<u64> {
        if self.per_tick == 1 {
            return Ok(u64::from(self.send_one()?));
        }
        for _ in 0..self.per_tick {
            if !self.send_one()? {
                return Err("the transport refused an update within the window".into());
            }
        }
        self.pump()?;
        self.fresh = true;
        Ok(self.per_tick)
    }
    fn drive(&mut self) -> BenchResult<()> {
        if std::mem::take(&mut self.fresh) {
            return Ok(());
        }
        self.pump()
    }
}

impl Raw {
    /// Pumps until the connection is up (the set-up phase both sides share).
    fn wait_connected(&mut self, shared: &Shared) -> BenchResult<()> {
        set_up(shared, || {
            self.pump()?;
            if self.conn.is_none() {
                Transport::wait(&mut self.host, Duration::from_millis(1))?;
            }
            Ok(self.conn.is_some())
        })
    }

    /// Sends the whole run, and reports what was sent.
    fn produce_all(&mut self, shared: &Shared, plan: &Plan) -> BenchResult<Side> {
        let side = produce(self, shared, plan)?;
        Ok(Side { sent: (self.seq, self.seq * self.size as u64), ..side })
    }
}

impl Consumer for Raw {
    fn drive(&mut self) -> BenchResult<u64> {
        self.pump()?;
        Ok(self.received)
    }
    fn wait(&mut self) -> BenchResult<()> {
        Ok(Transport::wait(&mut self.host, Duration::from_millis(1))?)
    }
}

/// The transport's server: receives (messages) or sends (objects) `size`-byte messages.
fn raw_server(shared: &Shared, plan: &Plan, size: usize) -> BenchResult<Side> {
    let mut raw = Raw::new(server_host()?, size);
    publish(shared, Some(raw.host.local_addr()))?;
    raw.wait_connected(shared)?;
    let datagrams = raw.host.stats().datagrams_sent;
    let side = match plan.kind {
        Kind::Messages => {
            raw.numbered = true;
            let side = consume(&mut raw, shared, plan)?;
            Side { in_order: raw.in_order, ..side }
        }
        Kind::Objects => {
            raw.per_tick = plan.objects;
            raw.produce_all(shared, plan)?
        }
    };
    Ok(Side { datagrams: raw.host.stats().datagrams_sent - datagrams, ..side })
}

/// The transport's client: sends (messages) or receives (objects) `size`-byte messages.
fn raw_client(shared: &Shared, plan: &Plan, size: usize) -> BenchResult<Side> {
    let addr = server_addr(shared)?;
    let mut raw = Raw::new(client_host(addr)?, size);
    Transport::connect(&mut raw.host, sturnus_message::driver::now(), addr)?;
    raw.wait_connected(shared)?;
    let datagrams = raw.host.stats().datagrams_sent;
    let side = match plan.kind {
        Kind::Messages => raw.produce_all(shared, plan)?,
        Kind::Objects => consume(&mut raw, shared, plan)?,
    };
    Ok(Side { datagrams: raw.host.stats().datagrams_sent - datagrams, ..side })
}

// ---- The objects workload, over the object layer. ----

struct ObjectSender {
    server: ServerObjectManager,
    ids: Vec<NetId>,
    tick: u32,
    fresh: bool,
}

impl Producer for ObjectSender {
    fn produce(&mut self) -> BenchResult<u64> {
        self.tick += 1;
        let x = self.tick as f32;
        for id in &self.ids {
            self.server.get_mut::<Mover>(*id).ok_or("an object vanished")?.x.set(x);
        }
        self.server.update(sturnus_message::driver::now())?;
        self.fresh = true;
        Ok(self.ids.len() as u64)
    }
    fn drive(&mut self) -> BenchResult<()> {
        if std::mem::take(&mut self.fresh) {
            return Ok(());
        }
        Ok(self.server.update(sturnus_message::driver::now())?)
    }
}

struct ObjectReceiver {
    client: ClientObjectManager,
    base: u64,
}

impl Consumer for ObjectReceiver {
    fn drive(&mut self) -> BenchResult<u64> {
        self.client.update(sturnus_message::driver::now())?;
        Ok(self.client.stats().updates_applied - self.base)
    }
    fn wait(&mut self) -> BenchResult<()> {
        Ok(self.client.client_mut().wait(Duration::from_millis(1))?)
    }
}

fn object_layer_server(shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let config = ServerConfig { rate_limit: None, ..ServerConfig::default() };
    let mut objects = ObjectConfig::default();
    objects.sync_interval = Duration::ZERO;
    let mut server = ServerObjectManager::with_config(NetworkServer::new(config)?, objects)?;
    let (transport, counts) = Counted::new(server_host()?);
    let addr = server.start(sturnus_message::driver::now(), transport)?;
    publish(shared, addr)?;
    let (mut player, mut ids) = (None, Vec::new());
    set_up(shared, || {
        server.update(sturnus_message::driver::now())?;
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Authenticated(id) = event {
                player = Some(id);
            }
        }
        if ids.is_empty() && player.is_some_and(|p| server.is_ready(p)) {
            for _ in 0..plan.objects {
                ids.push(server.spawn(MOVER, Mover::default(), None)?);
            }
        }
        server.server_mut().wait(Duration::from_millis(1))?;
        Ok(!ids.is_empty())
    })?;
    let (before, datagrams) = (counts.sent.get(), counts.datagrams.get());
    let mut sender = ObjectSender { server, ids, tick: 0, fresh: false };
    let side = produce(&mut sender, shared, plan)?;
    let after = counts.sent.get();
    let datagrams = counts.datagrams.get() - datagrams;
    Ok(Side { sent: (after.0 - before.0, after.1 - before.1), datagrams, ..side })
}

fn object_layer_client(shared: &Shared, plan: &Plan) -> BenchResult<Side> {
    let addr = server_addr(shared)?;
    let mut client = ClientObjectManager::new(NetworkClient::new(ClientConfig::default())?)?;
    client.register_prefab(MOVER, Mover::default);
    let (transport, counts) = Counted::new(client_host(addr)?);
    client.connect(sturnus_message::driver::now(), transport, addr)?;
    let wanted = usize::try_from(plan.objects)?;
    set_up(shared, || {
        client.update(sturnus_message::driver::now())?;
        if client.object_count() < wanted {
            client.client_mut().wait(Duration::from_millis(1))?;
        }
        Ok(client.object_count() == wanted)
    })?;
    let (base, datagrams) = (client.stats().updates_applied, counts.datagrams.get());
    let mut receiver = ObjectReceiver { client, base };
    let side = consume(&mut receiver, shared, plan)?;
    let datagrams = counts.datagrams.get() - datagrams;
    // Every object ends at the last tick's value.
    let last = plan.ticks as f32;
    let client = &receiver.client;
    let intact = client.objects().all(|id| client.get::<Mover>(id).is_some_and(|m| *m.x == last));
    Ok(Side { in_order: side.in_order && intact, datagrams, ..side })
}

// ---- Running and reporting. ----

/// Which stack a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// The message or object layer.
    Layer,
    /// The transport alone, with messages of this many bytes.
    Transport(usize),
}

/// Runs one workload once on two threads; returns its record and the bytes per message the
/// sender handed the transport.
fn run_once(plan: &Plan, stack: Stack) -> BenchResult<(Record, usize)> {
    let shared = Shared::default();
    let cpus = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pin = plan.pin && cpus >= 2;
    let side = |server: bool| {
        let shared = &shared;
        move || -> Result<Side, String> {
            if pin && !probe::pin_to([if server { cpus - 1 } else { 0 }]) {
                shared.failed.store(true, Ordering::Relaxed);
                return Err("could not pin a thread".into());
            }
            let result = match (plan.kind, stack, server) {
                (Kind::Messages, Stack::Layer, true) => message_layer_server(shared, plan),
                (Kind::Messages, Stack::Layer, false) => message_layer_client(shared, plan),
                (Kind::Objects, Stack::Layer, true) => object_layer_server(shared, plan),
                (Kind::Objects, Stack::Layer, false) => object_layer_client(shared, plan),
                (_, Stack::Transport(size), true) => raw_server(shared, plan, size),
                (_, Stack::Transport(size), false) => raw_client(shared, plan, size),
            };
            result.map_err(|err| {
                shared.failed.store(true, Ordering::Relaxed);
                err.to_string()
            })
        }
    };
    let (server, client) = thread::scope(|scope| {
        let server = scope.spawn(side(true));
        let client = scope.spawn(side(false));
        (server.join(), client.join())
    });
    let server = server.map_err(|_| "the server thread panicked")??;
    let client = client.map_err(|_| "the client thread panicked")??;
    let (sender, receiver) = match plan.kind {
        Kind::Messages => (client, server),
        Kind::Objects => (server, client),
    };
    let total = plan.total();
    let start = *shared.start.get().ok_or("the run never started")?;
    let seconds = receiver.end.ok_or("the receiver never finished")?.duration_since(start);
    let cpu = sender.cpu + receiver.cpu;
    let size = match stack {
        Stack::Transport(size) => size,
        Stack::Layer => {
            let (messages, bytes) = sender.sent;
            if messages != total {
                return Err(format!("the layer sent {messages} messages for {total}").into());
            }
            usize::try_from((bytes + messages / 2) / messages.max(1))?
        }
    };
    let record = Record {
        stack: match (stack, plan.kind) {
            (Stack::Transport(_), _) => "sturnus-transport",
            (Stack::Layer, Kind::Messages) => "sturnus-message",
            (Stack::Layer, Kind::Objects) => "sturnus-object",
        },
        workload: plan.kind.name(),
        qos: Qos::ReliableFragmentedSequenced.name().to_owned(),
        size,
        runs: 1,
        messages_sent: total,
        messages_received: shared.consumed.load(Ordering::Acquire),
        in_order: Some(receiver.in_order),
        seconds: seconds.as_secs_f64(),
        msgs_per_s: Some(total as f64 / seconds.as_secs_f64()),
        alloc_per_msg: Some(receiver.allocations as f64 / total as f64),
        cpu_ns_per_msg: Some(cpu.as_nanos() as f64 / total as f64),
        sender_datagrams: Some(sender.datagrams),
        receiver_datagrams: Some(receiver.datagrams),
        ..Record::default()
    };
    Ok((record, size))
}

/// Runs a workload `repeat` times, each the layer then the transport with the same traffic,
/// printing each result and then the medians.
pub(crate) fn run(plan: &Plan, repeat: u32) -> BenchResult<()> {
    let (mut layers, mut transports) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        let (mut layer, size) = run_once(plan, Stack::Layer)?;
        if plan.kind == Kind::Messages && size != PAYLOAD_WIRE {
            return Err(format!("a message took {size} bytes, not {PAYLOAD_WIRE}").into());
        }
        let (transport, _) = run_once(plan, Stack::Transport(size))?;
        let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        layer.vs_transport_cpu = ratio(layer.cpu_ns_per_msg, transport.cpu_ns_per_msg);
        layer.vs_transport_time = ratio(transport.msgs_per_s, layer.msgs_per_s);
        println!("{}", layer.to_json());
        println!("{}", transport.to_json());
        layers.push(layer);
        transports.push(transport);
    }
    if repeat > 1 {
        for runs in [&layers, &transports] {
            if let Some(median) = Record::median(runs) {
                println!("{}", median.to_json());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both workloads run end to end on both stacks, in order, every message counted, and the
    /// layer's message is the size the transport run copies.
    #[test]
    fn both_workloads_run_on_both_stacks() {
        for plan in [
            Plan { kind: Kind::Messages, messages: 5000, objects: 0, ticks: 0, pin: false },
            Plan { kind: Kind::Objects, messages: 0, objects: 50, ticks: 40, pin: false },
        ] {
            let (layer, size) = run_once(&plan, Stack::Layer).unwrap();
            let (transport, _) = run_once(&plan, Stack::Transport(size)).unwrap();
            for record in [&layer, &transport] {
                assert_eq!(record.in_order, Some(true), "{}", record.to_json());
                assert_eq!(record.messages_received, plan.total(), "{}", record.to_json());
                assert_eq!(record.size, size);
            }
            if plan.kind == Kind::Messages {
                assert_eq!(size, PAYLOAD_WIRE);
            }
        }
    }
}

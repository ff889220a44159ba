//! Channels by id: raw and typed channels on one connection, messages that name their
//! channel, layouts the transport must match, and the poll style.

mod common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Path, Raw, World, auth_request, memory_server_addr, server_config};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{
    ChannelId, ChannelLayout, ClientConfig, Message, MessageError, NetworkClient, NetworkServer,
    Player, PlayerId, Qos, ServerConfig, ServerEvent, Transport, driver,
};
use sturnus_transport::{
    ConnectError, ConnectionId, ConnectionStats, Event, HostError, MemoryNetwork, SendError,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Say(u32);

/// The default layout plus a raw channel (id 11).
fn raw_layout() -> (ChannelLayout, ChannelId) {
    let mut layout = ChannelLayout::default();
    let raw = layout.add_raw(Qos::ReliableSequenced).unwrap();
    (layout, raw)
}

type Seen = Arc<Mutex<Vec<(ChannelId, Vec<u8>)>>>;

/// Raw bytes and typed messages share one connection, both ways: each raw handler sees exactly
/// the bytes sent, in order, each typed handler its messages; a typed message on a raw channel
/// and raw bytes on a typed one are refused with their own errors.
#[test]
fn raw_bytes_and_typed_messages_mix_on_one_connection() {
    for path in
        [Path::Local, Path::Memory, Path::Udp, Path::Threaded, Path::Sim { seed: 1, loss: 0.1 }]
    {
        let (layout, raw) = raw_layout();
        let config = ServerConfig { channels: layout, ..server_config() };
        let at_server: Seen = Arc::default();
        let said: Arc<Mutex<Vec<(PlayerId, u32)>>> = Arc::default();
        let (seen, heard) = (Arc::clone(&at_server), Arc::clone(&said));
        let mut world = World::new(path, config, |server| {
            server
                .register_raw_handler(raw, move |mut player: Player<'_>, channel, bytes: &[u8]| {
                    seen.lock().push((channel, bytes.to_vec()));
                    // Raw back, reversed, and a typed message beside it.
                    let back: Vec<u8> = bytes.iter().rev().copied().collect();
                    player.send_raw(raw, &back).unwrap();
                    player.send(&Say(u32::try_from(bytes.len()).unwrap())).unwrap();
                })
                .unwrap();
            server
                .register_handler(move |player: Player<'_>, Say(n)| {
                    heard.lock().push((player.id(), n));
                })
                .unwrap();
        });
        let at_client: Seen = Arc::default();
        let typed_at_client: Arc<Mutex<Vec<u32>>> = Arc::default();
        let (seen, typed) = (Arc::clone(&at_client), Arc::clone(&typed_at_client));
        world.add_client(None::<&()>, |client| {
            client
                .register_raw_handler(raw, move |_, channel, bytes: &[u8]| {
                    seen.lock().push((channel, bytes.to_vec()));
                })
                .unwrap();
            client.register_handler(move |_, Say(n)| typed.lock().push(n)).unwrap();
        });
        world.authenticate_all();
        let sent: Vec<Vec<u8>> = (0..10u8).map(|i| (0..=i).collect()).collect();
        for (i, bytes) in sent.iter().enumerate() {
            world.clients[0].send_raw(raw, bytes).unwrap();
            world.clients[0].send(&Say(100 + u32::try_from(i).unwrap())).unwrap();
        }
        let done = world.run_until(|_| at_client.lock().len() == 10 && said.lock().len() == 10);
        assert!(done, "{path:?}: {:?} {:?}", at_client.lock(), said.lock());
        let expect: Vec<(ChannelId, Vec<u8>)> = sent.iter().map(|b| (raw, b.clone())).collect();
        assert_eq!(*at_server.lock(), expect, "{path:?}: the server's raw handler");
        let back: Vec<(ChannelId, Vec<u8>)> =
            sent.iter().map(|b| (raw, b.iter().rev().copied().collect())).collect();
        assert_eq!(*at_client.lock(), back, "{path:?}: the client's raw handler");
        let ns: Vec<u32> = said.lock().iter().map(|(_, n)| *n).collect();
        assert_eq!(ns, (100..110).collect::<Vec<_>>(), "{path:?}");
        world.run_until(|_| typed_at_client.lock().len() == 10);
        assert_eq!(*typed_at_client.lock(), (1..=10).collect::<Vec<_>>(), "{path:?}");
        let id = world.server.players().next().unwrap();
        let stats = world.server.player_stats(id).unwrap();
        // The credentials, 20 messages, and the time requests the server answered.
        let handled = 21 + world.server.stats().time_requests;
        assert_eq!((stats.dropped(), stats.messages_handled), (0, handled), "{path:?}: {stats:?}");

        // The wrong kind of channel, either side.
        let client = &mut world.clients[0];
        assert!(
            matches!(client.send_on(&Say(1), raw), Err(MessageError::RawChannel(c)) if c == raw)
        );
        let typed = ChannelId(0);
        assert!(
            matches!(client.send_raw(typed, b"x"), Err(MessageError::TypedChannel(c)) if c == typed)
        );
        assert!(matches!(
            client.send_raw(ChannelId(12), b"x"),
            Err(MessageError::UnknownChannel(ChannelId(12)))
        ));
        let server = &mut world.server;
        assert!(matches!(server.send_on(id, &Say(1), raw), Err(MessageError::RawChannel(_))));
        assert!(matches!(server.send_raw(id, typed, b"x"), Err(MessageError::TypedChannel(_))));
        assert!(matches!(
            server.register_raw_handler(typed, |_, _, _| {}),
            Err(MessageError::TypedChannel(_))
        ));
    }
}

/// Raw bytes from a client that has not authenticated are dropped and counted, never handed
/// to the raw handler; once it has, they are.
#[test]
fn raw_bytes_before_authentication_are_dropped_and_counted() {
    let (layout, raw) = raw_layout();
    let config = ServerConfig { channels: layout, ..server_config() };
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let mut world = World::new(Path::Memory, config, |server| {
        server
            .register_raw_handler(raw, move |_, channel, bytes: &[u8]| {
                log.lock().push((channel, bytes.to_vec()));
            })
            .unwrap();
    });
    let mut attacker = Raw::connect(&world);
    assert!(world.run_until(|w| {
        attacker.pump(w.now());
        attacker.connected
    }));
    for i in 0..4u8 {
        attacker.send(raw, &[i; 3]);
    }
    let id = world.server.players().next().unwrap();
    let dropped = |w: &World| w.server.player_stats(id).map(|s| s.dropped_unauthenticated);
    assert!(world.run_until(|w| {
        attacker.pump(w.now());
        dropped(w) == Some(4)
    }));
    assert!(seen.lock().is_empty());
    let control = ChannelLayout::default().first_of(Qos::ReliableFragmentedSequenced).unwrap();
    attacker.send(control, &auth_request(&()));
    attacker.send(raw, b"now");
    assert!(world.run_until(|w| {
        attacker.pump(w.now());
        !seen.lock().is_empty()
    }));
    assert_eq!(*seen.lock(), [(raw, b"now".to_vec())]);
    let stats = world.server.player_stats(id).unwrap();
    assert_eq!((stats.dropped(), stats.messages_handled), (4, 2), "{stats:?}");
}

/// Two channels of one kind, the second named by the message type.
fn two_of_a_kind() -> ChannelLayout {
    ChannelLayout::typed(&[
        Qos::ReliableFragmentedSequenced,
        Qos::ReliableSequenced,
        Qos::ReliableSequenced,
    ])
}

/// Goes on channel 2, though channel 1 is the first of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(qos = ReliableSequenced, channel = 2)]
struct Pinned(u32);

/// Goes on the first channel of its kind: 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
#[message(qos = ReliableSequenced)]
struct Unpinned(u32);

/// A transport that records the channel of every message it delivers.
#[derive(Debug)]
struct Tap<T> {
    inner: T,
    channels: Rc<RefCell<Vec<ChannelId>>>,
}

impl<T: Transport> Transport for Tap<T> {
    fn channels(&self) -> &[Qos] {
        self.inner.channels()
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.inner.max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr()
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.inner.connect(now, remote)
    }
    fn send(
        &mut self,
        conn: ConnectionId,
        channel: ChannelId,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        self.inner.send(conn, channel, bytes)
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        self.inner.disconnect(now, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        self.inner.set_trusted(conn);
    }
    fn poll_event(&mut self, now: Instant) -> Result<Option<Event<'_>>, HostError> {
        let event = self.inner.poll_event(now)?;
        if let Some(Event::Data { channel, .. }) = &event {
            self.channels.borrow_mut().push(*channel);
        }
        Ok(event)
    }
    fn flush(&mut self, now: Instant) -> Result<(), HostError> {
        self.inner.flush(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        self.inner.wait(timeout)
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        self.inner.connection_stats(conn)
    }
    fn remote_address(&self, conn: ConnectionId) -> Option<SocketAddr> {
        self.inner.remote_address(conn)
    }
}

/// Steps a server and its clients on a virtual clock, a millisecond a round, for `rounds`.
fn rounds(
    server: &mut NetworkServer,
    clients: &mut [&mut NetworkClient],
    now: &mut Instant,
    n: usize,
) {
    for _ in 0..n {
        server.update(*now).unwrap();
        for client in clients.iter_mut() {
            client.update(*now).unwrap();
        }
        *now += Duration::from_millis(1);
    }
}

/// A message with `#[message(channel = N)]` travels on channel N, both ways; one without goes
/// on the first channel of its kind.
#[test]
fn a_message_that_names_its_channel_goes_on_it() {
    assert_eq!(Pinned::CHANNEL, Some(ChannelId(2)));
    let layout = two_of_a_kind();
    let network = MemoryNetwork::new();
    let at_server = Rc::new(RefCell::new(Vec::new()));
    let at_client = Rc::new(RefCell::new(Vec::new()));
    let server_transport = Tap {
        inner: network.bind(memory_server_addr(), layout.kinds().to_vec()).unwrap(),
        channels: Rc::clone(&at_server),
    };
    let client_transport =
        Tap { inner: network.endpoint(layout.kinds().to_vec()), channels: Rc::clone(&at_client) };
    let mut server =
        NetworkServer::new(ServerConfig { channels: layout.clone(), ..server_config() }).unwrap();
    server.register_handler(|mut p: Player<'_>, m: Pinned| p.send(&m).unwrap()).unwrap();
    server.register_handler(|mut p: Player<'_>, m: Unpinned| p.send(&m).unwrap()).unwrap();
    let mut client =
        NetworkClient::new(ClientConfig { channels: layout, ..ClientConfig::default() }).unwrap();
    client.register_queue::<Pinned>().unwrap();
    client.register_queue::<Unpinned>().unwrap();
    let mut now = driver::now();
    server.start(now, server_transport).unwrap();
    client.connect(now, client_transport, memory_server_addr()).unwrap();
    rounds(&mut server, &mut [&mut client], &mut now, 5);
    assert!(client.is_authenticated());
    at_server.borrow_mut().clear();
    at_client.borrow_mut().clear();
    client.send(&Pinned(1)).unwrap();
    rounds(&mut server, &mut [&mut client], &mut now, 5);
    client.send(&Unpinned(2)).unwrap();
    rounds(&mut server, &mut [&mut client], &mut now, 5);
    assert_eq!(client.poll_message::<Pinned>(), Some(Pinned(1)));
    assert_eq!(client.poll_message::<Unpinned>(), Some(Unpinned(2)));
    assert_eq!(*at_server.borrow(), [ChannelId(2), ChannelId(1)], "client to server");
    assert_eq!(*at_client.borrow(), [ChannelId(2), ChannelId(1)], "server to client");
}

/// A transport whose channels are not the layout's is refused when the server starts and when
/// the client connects, naming both; the right one then works.
#[test]
fn a_transport_with_other_channels_is_refused() {
    let layout = two_of_a_kind();
    let network = MemoryNetwork::new();
    let wrong = vec![Qos::ReliableFragmentedSequenced, Qos::ReliableSequenced];
    let mut server =
        NetworkServer::new(ServerConfig { channels: layout.clone(), ..server_config() }).unwrap();
    let now = driver::now();
    let bad = network.bind("10.0.0.2:1".parse().unwrap(), wrong.clone()).unwrap();
    match server.start(now, bad) {
        Err(MessageError::ChannelMismatch { layout: l, transport: t }) => {
            assert_eq!((l.as_slice(), t.as_slice()), (layout.kinds(), wrong.as_slice()));
        }
        other => panic!("expected a channel mismatch, got {other:?}"),
    }
    assert!(!server.is_running());
    let good = network.bind(memory_server_addr(), layout.kinds().to_vec()).unwrap();
    server.start(now, good).unwrap();

    let mut client =
        NetworkClient::new(ClientConfig { channels: layout.clone(), ..ClientConfig::default() })
            .unwrap();
    let err = client.connect(now, network.endpoint(wrong.clone()), memory_server_addr());
    assert!(matches!(err, Err(MessageError::ChannelMismatch { .. })), "{err:?}");
    assert_eq!(client.state(), sturnus_message::ClientState::Disconnected);
    // Nothing reached the server.
    server.update(now).unwrap();
    assert_eq!(server.player_count(), 0);
    client.connect(now, network.endpoint(layout.kinds().to_vec()), memory_server_addr()).unwrap();
    let mut now = now;
    rounds(&mut server, &mut [&mut client], &mut now, 5);
    assert!(client.is_authenticated());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Message)]
struct Said {
    client: usize,
    n: u32,
}

/// The poll style: typed queues deliver every message once, in the order each sender sent
/// them, with the sender's id; the client's queue likewise.
#[test]
fn typed_queues_deliver_in_order_with_the_senders_id() {
    for path in [Path::Local, Path::Memory, Path::Udp, Path::Sim { seed: 2, loss: 0.1 }] {
        let mut world = World::new(path, server_config(), |server| {
            server.register_queue::<Said>().unwrap();
        });
        for _ in 0..3 {
            world.add_client(None::<&()>, |client| client.register_queue::<Said>().unwrap());
        }
        world.authenticate_all();
        // Which player each client is: by address where clients have one (a lossy path may
        // connect them in any order); local clients connect in the clients' order.
        let connected: Vec<PlayerId> = world
            .log
            .server
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Connected(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(connected.len(), 3, "{path:?}");
        let ids: Vec<PlayerId> = world
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| match c.local_addr() {
                Some(mine) => *connected
                    .iter()
                    .find(|id| {
                        // A UDP client is bound to 0.0.0.0: its port tells it apart.
                        world.server.player(**id).and_then(|p| p.address()).is_some_and(|a| {
                            a.port() == mine.port()
                                && (mine.ip().is_unspecified() || a.ip() == mine.ip())
                        })
                    })
                    .unwrap_or_else(|| panic!("{path:?}: no player at {mine}")),
                None => connected[i],
            })
            .collect();
        for n in 0..20 {
            for (client, c) in world.clients.iter_mut().enumerate() {
                c.send(&Said { client, n }).unwrap();
            }
            if n % 7 == 0 {
                world.step();
            }
        }
        let mut polled: Vec<(PlayerId, Said)> = Vec::new();
        let done = world.run_until(|w| {
            while let Some(message) = w.server.poll_message::<Said>() {
                polled.push(message);
            }
            polled.len() == 60
        });
        assert!(done, "{path:?}: {} polled", polled.len());
        for (client, id) in ids.iter().enumerate() {
            let from: Vec<(PlayerId, u32)> =
                polled.iter().filter(|(_, m)| m.client == client).map(|(p, m)| (*p, m.n)).collect();
            let expect: Vec<(PlayerId, u32)> = (0..20).map(|n| (*id, n)).collect();
            assert_eq!(from, expect, "{path:?}: client {client}");
        }
        // Replies, polled by each client in order.
        for (client, id) in ids.iter().enumerate() {
            for n in 0..5 {
                world.server.send(*id, &Said { client, n }).unwrap();
            }
        }
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); 3];
        let done = world.run_until(|w| {
            for (i, c) in w.clients.iter_mut().enumerate() {
                while let Some(Said { client, n }) = c.poll_message::<Said>() {
                    assert_eq!(client, i, "{path:?}: a reply reached the wrong client");
                    got[i].push(n);
                }
            }
            got.iter().all(|g| g.len() == 5)
        });
        assert!(done, "{path:?}: {got:?}");
        assert!(got.iter().all(|g| *g == [0, 1, 2, 3, 4]), "{path:?}: {got:?}");
        assert_eq!(world.server.poll_message::<Said>(), None);
    }
}

/// A server refuses a transport that would trust unauthenticated peers from the start (their
/// reassembly budget would be a trusted peer's), and takes the same transport built from the
/// layout's settings.
#[test]
fn a_transport_that_trusts_strangers_is_refused() {
    use sturnus_socket::{SocketFactory, UdpSocketFactory};
    let config = server_config();
    let factory = UdpSocketFactory::default();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let trusting = sturnus_transport::EndpointConfig {
        trust_incoming: true,
        ..config.channels.endpoint_config()
    };
    let host = sturnus_transport::Host::new(trusting, factory.server_socket(any).unwrap()).unwrap();
    let mut server = NetworkServer::new(config.clone()).unwrap();
    let now = driver::now();
    let err = server.start(now, host).unwrap_err();
    assert!(matches!(err, MessageError::TrustsIncoming), "{err}");
    assert!(!server.is_running());
    let host = sturnus_transport::Host::new(
        config.channels.endpoint_config(),
        factory.server_socket(any).unwrap(),
    )
    .unwrap();
    server.start(now, host).unwrap();
    assert!(server.is_running());
}

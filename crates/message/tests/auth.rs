//! Authentication: accept with data, reject with a reason, time out, and nothing before it.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Path, Raw, World, auth_request, client_config, default_channel, frame, memory_server_addr,
    paths, server_config,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sturnus_message::{
    Authenticator, ChannelId, ClientEvent, DisconnectReason, Login, Message, NetworkClient,
    NetworkServer, PasswordAuthenticator, Player, Qos, ServerConfig, ServerEvent,
    TokenAuthenticator, Transport, driver,
};
use sturnus_transport::{
    ConnectError, ConnectionId, ConnectionStats, Event, HostError, MemoryNetwork, MemoryTransport,
    SendError,
};

#[derive(Debug, Serialize, Deserialize, Message)]
struct Whoami;

#[derive(Debug, PartialEq, Serialize, Deserialize, Message)]
struct YouAre(String);

fn login(name: &str, password: &str) -> Login {
    Login { name: name.into(), password: password.into() }
}

/// Accepted players carry the authenticator's data; rejected ones learn why, on every path.
#[test]
fn accept_with_data_and_reject_with_reason() {
    for path in paths(4) {
        let mut world = World::new(path, server_config(), |server| {
            server.set_authenticator(PasswordAuthenticator::new("sesame").allow_plaintext());
            server
                .register_handler(|mut player: Player<'_>, Whoami| {
                    let name = player.auth_data::<String>().cloned().unwrap();
                    player.send(&YouAre(name)).unwrap();
                })
                .unwrap();
        });
        let answer: Arc<Mutex<Option<YouAre>>> = Arc::default();
        let seen = Arc::clone(&answer);
        world.add_client(Some(&login("ada", "sesame")), |client| {
            client.register_handler(move |_, you: YouAre| *seen.lock() = Some(you)).unwrap();
        });
        world.add_client(Some(&login("eve", "guess")), |_| {});
        // A client that sends no credentials at all (the default `()`) is malformed here.
        world.add_client(None::<&()>, |_| {});

        assert!(world.run_until(|w| w.clients[0].is_authenticated()), "{path:?}");
        world.clients[0].send(&Whoami).unwrap();
        assert!(world.run_until(|_| answer.lock().is_some()), "{path:?}");
        assert_eq!(*answer.lock(), Some(YouAre("ada".into())));

        let rejected = |w: &mut World, i: usize| w.log.clients[i].last().cloned();
        assert!(world.run_until(|w| {
            rejected(w, 1).is_some_and(|e| matches!(e, ClientEvent::Disconnected(_)))
                && rejected(w, 2).is_some_and(|e| matches!(e, ClientEvent::Disconnected(_)))
        }));
        let log = &world.log;
        assert_eq!(
            log.clients[1],
            [
                ClientEvent::Connected,
                ClientEvent::Disconnected(DisconnectReason::AuthRejected("wrong password".into()))
            ],
            "{path:?}"
        );
        assert_eq!(
            log.clients[2].last(),
            Some(&ClientEvent::Disconnected(DisconnectReason::AuthRejected(
                "malformed credentials".into()
            ))),
            "{path:?}"
        );
        let rejections = log
            .server
            .iter()
            .filter(|e| {
                matches!(e, ServerEvent::Disconnected(_, DisconnectReason::AuthRejected(_)))
            })
            .count();
        assert_eq!(rejections, 2, "{path:?}: {:?}", log.server);
        let authenticated =
            log.server.iter().filter(|e| matches!(e, ServerEvent::Authenticated(_))).count();
        assert_eq!(authenticated, 1, "{path:?}");
    }
}

fn quiet_server(auth_timeout: Duration) -> ServerConfig {
    ServerConfig { auth_timeout, ..server_config() }
}

/// A connection that never authenticates is closed after `auth_timeout`.
#[test]
fn authentication_times_out() {
    let timeout = Duration::from_millis(200);
    let mut world = World::new(Path::Memory, quiet_server(timeout), |_| {});
    let mut raw = Raw::connect(&world);
    let timed_out = |w: &mut World| {
        w.log
            .server
            .iter()
            .any(|e| matches!(e, ServerEvent::Disconnected(_, DisconnectReason::AuthTimeout)))
    };
    let connected_at = world.now();
    assert!(world.run_until(|w| {
        raw.pump(w.now());
        timed_out(w)
    }));
    assert!(raw.connected);
    // Not before the timeout, and not long after it (virtual time: one tick).
    let waited = world.now() - connected_at;
    assert!(waited >= timeout && waited <= timeout + world.tick, "{waited:?}");
    // The server says why before it closes the connection.
    assert!(world.run_until(|w| {
        raw.pump(w.now());
        raw.closed.is_some()
    }));
    let goodbye = sturnus_message::MessageId::of_path("sturnus_message::auth::Goodbye");
    assert!(
        raw.received.iter().any(|(_, m)| m[..2] == goodbye.0.to_le_bytes()),
        "{:?}",
        raw.received
    );
    assert_eq!(world.server.player_count(), 0);
}

#[derive(Debug, Serialize, Deserialize, Message)]
struct Note(u32);

/// Messages before authentication are dropped and counted, never handled; after it, they are.
#[test]
fn nothing_before_authentication() {
    let path = Path::Memory;
    let handled = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&handled);
    let mut world = World::new(path, server_config(), |server| {
        server
            .register_handler(move |_, Note(_)| {
                calls.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
    });
    let mut raw = Raw::connect(&world);
    assert!(world.run_until(|w| {
        raw.pump(w.now());
        raw.connected
    }));
    for n in 0..5 {
        raw.send(default_channel(Qos::ReliableSequenced), &frame(Note::ID, &Note(n)));
    }
    let dropped = |w: &World| {
        let id = w.server.players().next()?;
        Some(w.server.player_stats(id)?.dropped_unauthenticated)
    };
    assert!(world.run_until(|w| {
        raw.pump(w.now());
        dropped(w) == Some(5)
    }));
    let id = world.server.players().next().unwrap();
    assert_eq!(handled.load(Ordering::Relaxed), 0);
    // Credentials and a note on the same ordered channel: the note is handled.
    let control = default_channel(Qos::ReliableFragmentedSequenced);
    raw.send(control, &auth_request(&()));
    raw.send(control, &frame(Note::ID, &Note(9)));
    assert!(world.run_until(|w| {
        raw.pump(w.now());
        handled.load(Ordering::Relaxed) == 1
    }));
    let stats = world.server.player_stats(id).unwrap();
    assert_eq!((stats.dropped(), stats.messages_handled), (5, 2), "{stats:?}");
}

/// A remote player's connection is untrusted by the transport (held to its small reassembly
/// budgets) until the player authenticates, and trusted from then on: over UDP and over the
/// lossy simulated network.
#[test]
fn the_transport_trusts_a_connection_once_its_player_authenticates() {
    for path in [Path::Udp, Path::Sim { seed: 1, loss: 0.1 }, Path::Sim { seed: 2, loss: 0.1 }] {
        let trust: Arc<Mutex<Vec<(&'static str, bool)>>> = Arc::default();
        let seen = Arc::clone(&trust);
        let mut world = World::new(path, server_config(), move |server| {
            server.set_authenticator(PasswordAuthenticator::new("sesame").allow_plaintext());
            server.on_event(move |ctx, event| {
                let (when, id) = match event {
                    ServerEvent::Connected(id) => ("connected", *id),
                    ServerEvent::Authenticated(id) => ("authenticated", *id),
                    _ => return,
                };
                let stats = ctx.player(id).and_then(|p| p.connection_stats());
                seen.lock().push((when, stats.expect("a remote player has a connection").trusted));
            });
        });
        world.add_client(Some(&login("ada", "sesame")), |_| {});
        assert!(world.run_until(|w| w.clients[0].is_authenticated()), "{path:?}");
        assert!(world.run_until(|_| trust.lock().len() == 2), "{path:?}");
        assert_eq!(*trust.lock(), [("connected", false), ("authenticated", true)], "{path:?}");
    }
}

/// A password never crosses a plaintext connection to another host: the client keeps it and
/// disconnects, and a server that receives one anyway (from a client told to send it) refuses
/// it. Over UDP on 127.0.0.1 (this machine) and in host mode both are fine.
#[test]
fn a_password_does_not_cross_a_plaintext_network() {
    let sim = Path::Sim { seed: 3, loss: 0.0 };
    let mut world = World::new(sim, server_config(), |server| {
        server.set_authenticator(PasswordAuthenticator::new("sesame"));
    });
    let guarded = world.add_client(Some(&login("ada", "sesame")), |client| {
        client.allow_plaintext_credentials(false);
    });
    let careless = world.add_client(Some(&login("bob", "sesame")), |_| {});
    assert!(world.run_until(|w| {
        w.log.clients[guarded].iter().any(|e| matches!(e, ClientEvent::Disconnected(_)))
            && w.log.clients[careless].iter().any(|e| matches!(e, ClientEvent::Disconnected(_)))
    }));
    assert_eq!(
        world.log.clients[guarded].last(),
        Some(&ClientEvent::Disconnected(DisconnectReason::InsecureCredentials))
    );
    assert!(
        matches!(
            world.log.clients[careless].last(),
            Some(ClientEvent::Disconnected(DisconnectReason::AuthRejected(why))) if why.contains("encrypted")
        ),
        "{:?}",
        world.log.clients[careless]
    );
    assert_eq!(world.server.stats().auth_accepted, 0);

    for path in [Path::Udp, Path::Local] {
        let mut world = World::new(path, server_config(), |server| {
            server.set_authenticator(PasswordAuthenticator::new("sesame"));
        });
        world.add_client(Some(&login("ada", "sesame")), |client| {
            client.allow_plaintext_credentials(false);
        });
        assert!(world.run_until(|w| w.clients[0].is_authenticated()), "{path:?}");
    }
}

/// A plaintext transport that knows no remote addresses (a relay, say; `remote_address` may
/// answer `None`), over the in-process network.
#[derive(Debug)]
struct NoAddresses(MemoryTransport);

impl Transport for NoAddresses {
    fn channels(&self) -> &[Qos] {
        self.0.channels()
    }
    fn max_message_size(&self, channel: ChannelId) -> Option<usize> {
        self.0.max_message_size(channel)
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr()
    }
    fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionId, ConnectError> {
        self.0.connect(now, remote)
    }
    fn send(&mut self, conn: ConnectionId, ch: ChannelId, bytes: &[u8]) -> Result<(), SendError> {
        self.0.send(conn, ch, bytes)
    }
    fn disconnect(&mut self, now: Instant, conn: ConnectionId) {
        self.0.disconnect(now, conn);
    }
    fn set_trusted(&mut self, conn: ConnectionId) {
        self.0.set_trusted(conn);
    }
    fn trusts_incoming(&self) -> bool {
        self.0.trusts_incoming()
    }
    fn poll_event(&mut self, now: Instant) -> Result<Option<Event<'_>>, HostError> {
        self.0.poll_event(now)
    }
    fn flush(&mut self, now: Instant) -> Result<(), HostError> {
        self.0.flush(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn wait(&mut self, timeout: Duration) -> Result<(), HostError> {
        self.0.wait(timeout)
    }
    fn connection_stats(&self, conn: ConnectionId) -> Option<ConnectionStats> {
        self.0.connection_stats(conn)
    }
    fn remote_address(&self, _: ConnectionId) -> Option<SocketAddr> {
        None
    }
    fn is_secure(&self) -> bool {
        false
    }
}

/// Runs a server on a plaintext transport without addresses with `authenticator`, and one
/// remote client presenting `credentials`; returns whether the server let it in.
fn admitted_without_an_address<C: Serialize + 'static>(
    authenticator: impl Authenticator,
    credentials: &C,
) -> bool {
    let network = MemoryNetwork::new();
    let config = server_config();
    let kinds = config.channels.kinds().to_vec();
    let mut server = NetworkServer::new(config).unwrap();
    server.set_authenticator(authenticator);
    let mut now = driver::now();
    let transport = NoAddresses(network.bind(memory_server_addr(), kinds.clone()).unwrap());
    server.start(now, transport).unwrap();
    let mut client = NetworkClient::new(client_config()).unwrap();
    client.set_credentials(credentials).unwrap();
    client.allow_plaintext_credentials(true);
    client.connect(now, network.endpoint(kinds), memory_server_addr()).unwrap();
    for _ in 0..100 {
        now += Duration::from_millis(10);
        server.update(now).unwrap();
        client.update(now).unwrap();
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
    }
    let stats = server.stats();
    assert_eq!(stats.auth_accepted + stats.auth_rejected, 1, "one verdict: {stats:?}");
    stats.auth_accepted == 1
}

/// A remote player is not the host's own player because its transport knows no address: a
/// token-only server does not let it in as client 0 without a token, and a password it sent
/// in the clear is refused.
#[test]
fn a_remote_player_without_an_address_is_not_a_local_one() {
    assert!(!admitted_without_an_address(TokenAuthenticator, &()));
    assert!(!admitted_without_an_address(
        PasswordAuthenticator::new("sesame"),
        &login("ada", "sesame")
    ));
    // The guard is about the address, not the plumbing: allowed plaintext, it lets ada in.
    assert!(admitted_without_an_address(
        PasswordAuthenticator::new("sesame").allow_plaintext(),
        &login("ada", "sesame")
    ));
}

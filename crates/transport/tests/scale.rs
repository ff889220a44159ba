//! Scale without timing: one server `Host` with 5,000 connections over the in-process loopback
//! network, every client sending one 64-byte unreliable message that the server echoes. All
//! clients connect, every echo comes back, and the server keeps every connection. (The 32,000
//! connection run over real UDP, with CPU and memory figures, is `sturnus-bench`'s `clients`
//! workload; see `benches/README.md`.)

use std::time::Duration;

use sturnus_socket::{
    LoopbackConfig, LoopbackNetwork, LoopbackSocket, LoopbackSocketFactory, Socket,
};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Host, HostEvent, Qos};

const CLIENTS: usize = 5_000;

fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::Unreliable],
        max_connections: CLIENTS + 1,
        // Host runs on the wall clock, and one round over 5,000 clients can take seconds on a
        // loaded machine: give up on nothing for a minute, so speed is not what is tested.
        connect_attempts: 240,
        disconnect_timeout: Duration::from_secs(60),
        ..EndpointConfig::default()
    }
}

/// Runs the server until it has nothing to do, echoing every message.
fn serve(server: &mut Host<LoopbackSocket>, echoed: &mut usize, connected: &mut usize) {
    let mut echo = Vec::new();
    loop {
        let (conn, channel) = match server.receive().unwrap() {
            HostEvent::Nothing => return,
            HostEvent::Connect(_) => {
                *connected += 1;
                continue;
            }
            HostEvent::Data { conn, channel, payload } => {
                echo.clear();
                echo.extend_from_slice(payload);
                (conn, channel)
            }
            HostEvent::Disconnect(conn, reason) => panic!("{conn} lost: {reason:?}"),
            _ => continue,
        };
        server.send(conn, channel, &echo).unwrap();
        *echoed += 1;
    }
}

#[test]
fn one_host_serves_5000_connections_without_losing_an_echo() {
    // Queues deep enough for every client's handshake at once; loss is not the subject here.
    let network = LoopbackNetwork::with_config(LoopbackConfig {
        queue_capacity: 4 * CLIENTS,
        ..LoopbackConfig::default()
    })
    .unwrap();
    let factory = LoopbackSocketFactory::on(network);
    let mut server = Host::bind(config(), &factory, "10.0.0.1:9000".parse().unwrap()).unwrap();
    let server_addr = server.local_addr();
    let mut clients: Vec<(Host<LoopbackSocket>, ConnectionId, bool)> = (0..CLIENTS)
        .map(|_| {
            let (host, conn) = Host::connect_to(config(), &factory, server_addr).unwrap();
            (host, conn, false)
        })
        .collect();

    let (mut connected, mut echoed, mut sent, mut received) = (0, 0, 0, 0);
    for _round in 0..2_000 {
        for (i, (client, conn, has_sent)) in clients.iter_mut().enumerate() {
            loop {
                match client.receive().unwrap() {
                    HostEvent::Nothing => break,
                    HostEvent::Connect(_) if !*has_sent => {
                        let mut message = [0u8; 64];
                        message[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        client.send(*conn, ChannelId(0), &message).unwrap();
                        client.flush().unwrap();
                        *has_sent = true;
                        sent += 1;
                    }
                    HostEvent::Data { payload, .. } => {
                        assert_eq!(payload.len(), 64);
                        assert_eq!(
                            payload[..8],
                            (i as u64).to_le_bytes(),
                            "client {i} got another's echo"
                        );
                        received += 1;
                    }
                    HostEvent::Disconnect(c, reason) => panic!("client {i} ({c}) lost: {reason:?}"),
                    _ => {}
                }
            }
        }
        serve(&mut server, &mut echoed, &mut connected);
        if received == CLIENTS {
            break;
        }
        server.wait(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(connected, CLIENTS, "every client connected");
    assert_eq!((sent, echoed, received), (CLIENTS, CLIENTS, CLIENTS), "no echo lost");
    assert_eq!(server.endpoint().connection_count(), CLIENTS);
    assert_eq!(server.socket().stats().dropped_queue_full, 0);
}

/// Past the old limit of 65,535 connections (connection ids had 16-bit slots): a server
/// endpoint holds 70,000 connections, and a client endpoint holds 70,000 connections to 70,000
/// servers. Both are the same two sans-IO endpoints: the harness gives connection `i` its own
/// address on each side (the client's datagrams to server address `i` reach the one server as
/// if from client address `i`, and back), so each endpoint sees 70,000 distinct peers.
#[test]
fn one_endpoint_holds_70000_connections_each_way() {
    use std::net::{Ipv4Addr, SocketAddr};
    use sturnus_transport::{Endpoint, Event};

    const N: u32 = 70_000;
    let base = u32::from(Ipv4Addr::new(10, 1, 0, 0));
    let addr = |i: u32| SocketAddr::from((Ipv4Addr::from(base + i), 9000));
    let index = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => u32::from(*v4.ip()) - base,
        SocketAddr::V6(_) => unreachable!("the harness uses IPv4"),
    };
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced],
        max_connections: N as usize,
        // Capacity is the subject; the limits per address are tested elsewhere.
        address_limits: sturnus_transport::AddressLimits::UNLIMITED,
        ..EndpointConfig::default()
    };
    let now = sturnus_testkit::origin();
    let mut server = Endpoint::new(config.clone(), now).unwrap();
    let mut client =
        Endpoint::new(EndpointConfig { accept_connections: false, ..config }, now).unwrap();
    let conns: Vec<ConnectionId> = (0..N).map(|i| client.connect(now, addr(i)).unwrap()).collect();
    let mut buf = vec![0u8; 1500];
    let (mut client_connected, mut server_connected) = (0, 0);
    for _ in 0..10 {
        // Client → server: the datagram for server address i comes from client address i. The
        // server's answers are drained every 256 datagrams, as a driver does between batches
        // (it queues at most 1,024 stateless replies).
        let mut more = true;
        while more {
            for _ in 0..256 {
                let Some(t) = client.poll_transmit(now, &mut buf) else {
                    more = false;
                    break;
                };
                let from = addr(index(t.destination));
                server.handle_datagram(now, from, &buf[..t.len]);
            }
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                let from = addr(index(t.destination));
                client.handle_datagram(now, from, &buf[..t.len]);
            }
        }
        while let Some(event) = client.poll_event() {
            assert!(matches!(event, Event::Connected(_)), "client: {event:?}");
            client_connected += 1;
        }
        while let Some(event) = server.poll_event() {
            assert!(matches!(event, Event::Connected(_)), "server: {event:?}");
            server_connected += 1;
        }
    }
    assert_eq!((client_connected, server_connected), (N, N));
    assert_eq!((client.connection_count(), server.connection_count()), (N as usize, N as usize));
    // The ids past slot 65,535 are live and distinct: each names its own peer, and each
    // carries its own message to it.
    for (i, &conn) in (0u32..).zip(&conns) {
        assert_eq!(client.remote_address(conn), Some(addr(i)), "connection {i}'s id");
        client.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
    }
    while let Some(t) = client.poll_transmit(now, &mut buf) {
        let from = addr(index(t.destination));
        server.handle_datagram(now, from, &buf[..t.len]);
    }
    let mut seen = vec![false; N as usize];
    while let Some(event) = server.poll_event() {
        if let Event::Data { conn, payload, .. } = event {
            let i = u32::from_le_bytes(payload.try_into().unwrap());
            assert_eq!(server.remote_address(conn), Some(addr(i)), "message {i} on another's id");
            let i = i as usize;
            assert!(!seen[i], "message {i} twice");
            seen[i] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "every connection's message arrived");
}

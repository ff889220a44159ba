//! The background I/O thread: a `ThreadedHost` exchanges every QoS over real UDP, keeps the
//! protocol running (acks, resends) while the application does not poll, pushes back without
//! losing anything, and stops cleanly.

mod realtime;

use std::time::Duration;

use realtime::{deadline, past};
use sturnus_netem::LinkConfig;
use sturnus_socket::{ConditionedSocket, LoopbackSocketFactory, SocketFactory, UdpSocketFactory};
use sturnus_transport::{
    ChannelId, ConnectionId, EndpointConfig, Host, HostEvent, Qos, QueueLimit, SendError,
    ThreadedHost,
};

fn all_channels() -> EndpointConfig {
    EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() }
}

/// Polls `host` until `n` data events arrived; returns their (channel, payload).
fn collect(host: &mut ThreadedHost, n: usize) -> Vec<(ChannelId, Vec<u8>)> {
    let mut got = Vec::new();
    let end = deadline();
    while got.len() < n {
        match host.receive().unwrap() {
            HostEvent::Data { channel, payload, .. } => got.push((channel, payload.to_vec())),
            HostEvent::Nothing => {
                assert!(!past(end), "only {} of {n} messages arrived", got.len());
                host.wait(Some(Duration::from_millis(10)));
            }
            HostEvent::Disconnect(conn, reason) => panic!("{conn} lost: {reason:?}"),
            _ => {}
        }
    }
    got
}

fn accepted(server: &mut ThreadedHost) -> ConnectionId {
    let end = deadline();
    loop {
        match server.receive().unwrap() {
            HostEvent::Connect(conn) => return conn,
            HostEvent::Nothing => {
                assert!(!past(end), "no connection");
                server.wait(Some(Duration::from_millis(10)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn threaded_hosts_exchange_every_qos_over_udp_both_ways() {
    let factory = UdpSocketFactory::default();
    let mut server =
        ThreadedHost::bind(all_channels(), &factory, "127.0.0.1:0".parse().unwrap()).unwrap();
    let (mut client, conn) =
        ThreadedHost::connect_to(all_channels(), &factory, server.local_addr()).unwrap();
    let server_conn = accepted(&mut server);
    // The peer's address is known from the connection on (the authentication throttle above
    // needs it), and forgotten once the connection is closed.
    let seen = server.remote_address(server_conn).map(|a| a.port());
    assert_eq!(seen, Some(client.local_addr().port()));
    let message = |i: usize| vec![u8::try_from(i).unwrap(); 100 + i];
    for i in 0..Qos::ALL.len() {
        let channel = ChannelId(u8::try_from(i).unwrap());
        client.send(conn, channel, &message(i)).unwrap();
        server.send(server_conn, channel, &message(i)).unwrap();
    }
    client.flush();
    server.flush();
    for host in [&mut server, &mut client] {
        let mut got = collect(host, Qos::ALL.len());
        got.sort();
        let want: Vec<_> = (0..Qos::ALL.len())
            .map(|i| (ChannelId(u8::try_from(i).unwrap()), message(i)))
            .collect();
        assert_eq!(got, want);
    }
    server.disconnect(server_conn);
    assert_eq!(server.remote_address(server_conn), None);
    client.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn the_io_thread_resends_under_loss_while_the_application_does_not_poll() {
    let config =
        EndpointConfig { channels: vec![Qos::ReliableSequenced], ..EndpointConfig::default() };
    let factory = LoopbackSocketFactory::new();
    let mut server = Host::bind(config.clone(), &factory, "10.0.0.1:1".parse().unwrap()).unwrap();
    // The client's datagrams cross a link that loses a quarter of them.
    let lossy = LinkConfig { loss: 0.25, ..LinkConfig::perfect() };
    let socket =
        ConditionedSocket::new(factory.client_socket(server.local_addr()).unwrap(), lossy, 7)
            .unwrap();
    let mut client =
        ThreadedHost::new(EndpointConfig { accept_connections: false, ..config }, socket).unwrap();
    let conn = client.connect(server.local_addr()).unwrap();
    for i in 0..200u32 {
        client.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
    }
    client.flush();
    // From here on the application never calls `receive`: only its I/O thread can resend.
    let mut got = Vec::new();
    let end = deadline();
    while got.len() < 200 {
        match server.receive().unwrap() {
            HostEvent::Data { payload, .. } => {
                got.push(u32::from_le_bytes(payload.try_into().unwrap()))
            }
            HostEvent::Nothing => {
                assert!(!past(end), "{} of 200 arrived", got.len());
                server.wait(Some(Duration::from_millis(5))).unwrap();
            }
            HostEvent::Disconnect(c, reason) => panic!("{c} lost: {reason:?}"),
            _ => {}
        }
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>(), "all of them, in order");
    // A quarter of the client's datagrams were lost, so only resends can have completed it.
    client.stop().unwrap();
}

#[test]
fn sends_push_back_when_the_io_thread_is_far_behind_and_stop_is_clean() {
    let factory = LoopbackSocketFactory::new();
    let mut host =
        ThreadedHost::bind(EndpointConfig::default(), &factory, "10.0.0.2:1".parse().unwrap())
            .unwrap();
    let conn = host.connect("10.0.0.3:1".parse().unwrap()).unwrap();
    // Nothing is flushed, so the pending bytes only grow: 8 MiB is the limit.
    let chunk = [0u8; 1024];
    let accepted =
        (0..10_000).take_while(|_| host.send(conn, ChannelId(0), &chunk).is_ok()).count();
    assert_eq!(accepted, 8 * 1024);
    // The error names the limit that tripped: the host's pending bytes, not a channel's queue.
    assert_eq!(
        host.send(conn, ChannelId(0), &chunk),
        Err(SendError::QueueFull {
            channel: ChannelId(0),
            limit: QueueLimit::PendingBytes(8 * 1024 * 1024)
        })
    );
    assert_eq!(
        host.send(conn, ChannelId(0), &chunk).unwrap_err().to_string(),
        "the send queue of channel 0 is full (8388608 bytes of messages waiting for the I/O thread)"
    );
    assert!(matches!(host.send(conn, ChannelId(9), b"x"), Err(SendError::UnknownChannel(_))));
    host.stop().unwrap();
}

#[test]
fn a_connection_the_application_trusts_may_send_past_the_untrusted_budget() {
    // Untrusted peers may hold 1,000 bytes of partial messages: a 5,000-byte unreliable
    // message in five fragments is dropped unless the server trusts its sender.
    let config = EndpointConfig {
        channels: vec![Qos::Reliable, Qos::UnreliableFragmented],
        fragment_size: 1000,
        trust_incoming: false,
        max_reassembly_bytes_untrusted: 1000,
        ..EndpointConfig::default()
    };
    let factory = LoopbackSocketFactory::new();
    let mut server =
        ThreadedHost::bind(config.clone(), &factory, "10.0.0.4:1".parse().unwrap()).unwrap();
    let (mut client, conn) =
        ThreadedHost::connect_to(config, &factory, server.local_addr()).unwrap();
    let server_conn = accepted(&mut server);
    server.set_trusted(server_conn);
    // The I/O thread applies commands in order: once "go" is out, the trust is in force.
    server.send(server_conn, ChannelId(0), b"go").unwrap();
    server.flush();
    assert_eq!(collect(&mut client, 1), [(ChannelId(0), b"go".to_vec())]);
    let big = vec![7u8; 5000];
    client.send(conn, ChannelId(1), &big).unwrap();
    client.flush();
    assert_eq!(collect(&mut server, 1), [(ChannelId(1), big)]);
    client.stop().unwrap();
    server.stop().unwrap();
}

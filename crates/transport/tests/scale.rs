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

//! Two `Host`s over real UDP sockets, on 127.0.0.1 and on ::1, exchanging messages on every
//! QoS in both directions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use sturnus_socket::{LoopbackSocketFactory, Socket, SocketFactory, UdpSocketFactory};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Host, HostEvent, Qos};

fn config() -> EndpointConfig {
    EndpointConfig { channels: Qos::ALL.to_vec(), ..EndpointConfig::default() }
}

fn message(channel: usize, i: usize) -> Vec<u8> {
    // Channels of fragmented kinds get one message several packets long.
    let len = if Qos::ALL[channel].is_fragmented() && i == 0 { 10_000 } else { 16 + i };
    (0..len).map(|k| u8::try_from((k * 7 + channel * 13 + i) % 256).unwrap()).collect()
}

/// Drives both hosts until `done` or the (generous) iteration budget runs out; collects data.
fn pump<S: Socket>(
    hosts: &mut [&mut Host<S>; 2],
    received: &mut [HashMap<u8, Vec<Vec<u8>>>; 2],
    connects: &mut [Vec<ConnectionId>; 2],
    mut done: impl FnMut(&[HashMap<u8, Vec<Vec<u8>>>; 2], &[Vec<ConnectionId>; 2]) -> bool,
) {
    for _ in 0..20_000 {
        for side in 0..2 {
            loop {
                match hosts[side].receive().unwrap() {
                    HostEvent::Nothing => break,
                    HostEvent::Connect(conn) => connects[side].push(conn),
                    HostEvent::Data { channel, payload, .. } => {
                        received[side].entry(channel.0).or_default().push(payload.to_vec());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        if done(received, connects) {
            return;
        }
        hosts[0].wait(Some(Duration::from_millis(1))).unwrap();
    }
    panic!("did not finish: {connects:?}");
}

fn exchange<F: SocketFactory>(factory: &F, bind: SocketAddr) {
    let mut server = Host::bind(config(), factory, bind).unwrap();
    let (mut client, conn) = Host::connect_to(config(), factory, server.local_addr()).unwrap();
    let mut received = [HashMap::new(), HashMap::new()];
    let mut connects = [Vec::new(), Vec::new()];
    pump(&mut [&mut server, &mut client], &mut received, &mut connects, |_, c| {
        !c[0].is_empty() && !c[1].is_empty()
    });
    let server_conn = connects[0][0];
    assert_eq!(connects[1], [conn]);

    const PER_CHANNEL: usize = 5;
    for i in 0..PER_CHANNEL {
        for channel in 0..Qos::ALL.len() {
            let id = ChannelId(u8::try_from(channel).unwrap());
            client.send(conn, id, &message(channel, i)).unwrap();
            server.send(server_conn, id, &message(channel, i)).unwrap();
        }
    }
    pump(&mut [&mut server, &mut client], &mut received, &mut connects, |r, _| {
        // Loopback does not lose datagrams: everything arrives, on every kind.
        r.iter().all(|side| {
            (0..Qos::ALL.len()).all(|ch| {
                let need = if Qos::ALL[ch].is_state_update() { 1 } else { PER_CHANNEL };
                side.get(&u8::try_from(ch).unwrap()).is_some_and(|m| m.len() >= need)
            })
        })
    });
    for side in &received {
        for (channel, qos) in Qos::ALL.iter().enumerate() {
            let got = &side[&u8::try_from(channel).unwrap()];
            if qos.is_state_update() {
                assert_eq!(got.last(), Some(&message(channel, PER_CHANNEL - 1)), "{qos}");
            } else {
                let mut expected: Vec<Vec<u8>> =
                    (0..PER_CHANNEL).map(|i| message(channel, i)).collect();
                let mut got = got.clone();
                if !qos.is_sequenced() {
                    got.sort();
                    expected.sort();
                }
                assert_eq!(got, expected, "{qos}");
            }
        }
    }
    let stats = client.connection_stats(conn).unwrap();
    assert!(stats.packets_sent > 0 && stats.packets_received > 0);
}

#[test]
fn hosts_exchange_every_qos_over_udp_ipv4() {
    exchange(&UdpSocketFactory::default(), "127.0.0.1:0".parse().unwrap());
}

#[test]
fn hosts_exchange_every_qos_over_udp_ipv6() {
    exchange(&UdpSocketFactory::default(), "[::1]:0".parse().unwrap());
}

#[test]
fn hosts_exchange_every_qos_over_the_loopback_network() {
    exchange(&LoopbackSocketFactory::new(), "127.0.0.1:7000".parse().unwrap());
}

#[test]
fn a_host_accepts_and_connects_at_the_same_time() {
    // B accepts A's connection while connecting to C itself: a peer-to-peer chain A → B → C.
    let factory = LoopbackSocketFactory::new();
    let bind = |port: u16| {
        Host::bind(config(), &factory, SocketAddr::from(([127, 0, 0, 1], port))).unwrap()
    };
    let (mut a, mut b, mut c) = (bind(7001), bind(7002), bind(7003));
    let a_to_b = a.connect(b.local_addr()).unwrap();
    let b_to_c = b.connect(c.local_addr()).unwrap();
    a.send(a_to_b, ChannelId(0), b"from a").unwrap();
    b.send(b_to_c, ChannelId(0), b"from b").unwrap();

    let mut got: [Vec<(ConnectionId, Vec<u8>)>; 3] = Default::default();
    let mut connects: [Vec<ConnectionId>; 3] = Default::default();
    for _ in 0..20_000 {
        for (i, host) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
            loop {
                match host.receive().unwrap() {
                    HostEvent::Nothing => break,
                    HostEvent::Connect(conn) => connects[i].push(conn),
                    HostEvent::Data { conn, payload, .. } => got[i].push((conn, payload.to_vec())),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        if !got[1].is_empty() && !got[2].is_empty() {
            break;
        }
        a.wait(Some(Duration::from_millis(1))).unwrap();
    }
    assert_eq!(connects[0], [a_to_b]);
    assert_eq!(connects[1].len(), 2, "B has its outgoing and its incoming connection");
    assert!(connects[1].contains(&b_to_c));
    let b_from_a = *connects[1].iter().find(|&&c| c != b_to_c).unwrap();
    assert_eq!(got[1], [(b_from_a, b"from a".to_vec())]);
    assert_eq!(got[2].len(), 1);
    assert_eq!(got[2][0].1, b"from b");
    assert_eq!(b.endpoint().connection_count(), 2);
}

#[test]
fn a_burst_read_in_one_receive_is_acknowledged_whole() {
    // An ack covers the newest 33 packets. A host that reads a long burst in one `receive`
    // must ack as it goes, or the sender sees most of the burst unacknowledged and resends
    // packets that arrived.
    let factory = LoopbackSocketFactory::new();
    let config = EndpointConfig { initial_congestion_window: 256, ..config() };
    let mut server =
        Host::bind(config.clone(), &factory, "127.0.0.1:7010".parse().unwrap()).unwrap();
    let (mut client, conn) = Host::connect_to(config, &factory, server.local_addr()).unwrap();
    let mut received = [HashMap::new(), HashMap::new()];
    let mut connects = [Vec::new(), Vec::new()];
    pump(&mut [&mut server, &mut client], &mut received, &mut connects, |_, c| {
        !c[0].is_empty() && !c[1].is_empty()
    });

    const BURST: usize = 200;
    let channel = ChannelId(
        u8::try_from(Qos::ALL.iter().position(|q| *q == Qos::ReliableSequenced).unwrap()).unwrap(),
    );
    for i in 0..BURST {
        // Each message fills most of a packet, so the burst is 200 datagrams.
        client.send(conn, channel, &vec![u8::try_from(i % 256).unwrap(); 1000]).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.connection_stats(conn).unwrap().in_flight, BURST);
    let mut delivered = 0;
    loop {
        match server.receive().unwrap() {
            HostEvent::Data { .. } => delivered += 1,
            HostEvent::Nothing => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delivered, BURST, "the whole burst is read in one go");
    assert!(matches!(client.receive().unwrap(), HostEvent::Nothing));
    let stats = client.connection_stats(conn).unwrap();
    assert_eq!((stats.in_flight, stats.packets_lost_out, stats.resends), (0, 0, 0));
}

//! The in-process loopback network.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use sturnus_socket::{
    LoopbackConfig, LoopbackNetwork, LoopbackSocketFactory, Readiness, Socket, SocketError,
    SocketFactory,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn several_threads_send_to_one_socket_and_nothing_is_lost_or_reordered() {
    const SENDERS: u8 = 4;
    const PER_SENDER: u32 = 2_000;
    let net = LoopbackNetwork::with_config(LoopbackConfig {
        queue_capacity: SENDERS as usize * PER_SENDER as usize,
        ..LoopbackConfig::default()
    })
    .unwrap();
    let factory = LoopbackSocketFactory::on(net.clone());
    let mut server = factory.server_socket(addr("127.0.0.1:9000")).unwrap();
    let target = server.local_addr();

    let senders: Vec<_> = (0..SENDERS)
        .map(|id| {
            let factory = factory.clone();
            thread::spawn(move || {
                let mut socket = factory.client_socket(target).unwrap();
                for seq in 0..PER_SENDER {
                    let mut msg = [0u8; 5];
                    msg[0] = id;
                    msg[1..].copy_from_slice(&seq.to_le_bytes());
                    let _ = socket.send_to(&msg, target).unwrap();
                }
                // Wait for the server's "done" so the socket stays bound until it has replied.
                assert_eq!(socket.wait_readable(None).unwrap(), Readiness::Readable);
                let mut buf = [0u8; 8];
                let meta = socket.recv_from(&mut buf).unwrap().unwrap();
                assert_eq!((&buf[..meta.len], meta.from), (&b"done"[..], target));
                socket.local_addr()
            })
        })
        .collect();

    let mut next = [0u32; SENDERS as usize];
    let mut origin = [None; SENDERS as usize];
    let mut buf = [0u8; 16];
    let mut received = 0;
    while received < u32::from(SENDERS) * PER_SENDER {
        server.wait_readable(None).unwrap();
        while let Some(meta) = server.recv_from(&mut buf).unwrap() {
            let id = usize::from(buf[0]);
            let seq = u32::from_le_bytes(buf[1..5].try_into().unwrap());
            assert_eq!(seq, next[id], "sender {id} out of order");
            next[id] += 1;
            origin[id] = Some(meta.from);
            received += 1;
        }
    }
    for from in origin {
        let _ = server.send_to(b"done", from.unwrap()).unwrap();
    }
    let mut addrs: Vec<SocketAddr> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), usize::from(SENDERS), "each client got its own address");
    assert_eq!(server.stats().dropped_queue_full, 0);
    assert_eq!(server.stats().datagrams_received, u64::from(received));
}

#[test]
fn a_full_receive_queue_drops_and_counts() {
    let net = LoopbackNetwork::with_config(LoopbackConfig {
        queue_capacity: 8,
        ..LoopbackConfig::default()
    })
    .unwrap();
    let mut rx = net.bind(addr("10.0.0.1:1")).unwrap();
    let mut tx = net.bind(addr("10.0.0.2:1")).unwrap();
    for i in 0u8..20 {
        let _ = tx.send_to(&[i], rx.local_addr()).unwrap();
    }
    assert_eq!(rx.stats().dropped_queue_full, 12);
    let mut buf = [0u8; 4];
    let got: Vec<u8> =
        std::iter::from_fn(|| rx.recv_from(&mut buf).unwrap().map(|_| buf[0])).collect();
    assert_eq!(got, (0..8).collect::<Vec<_>>(), "the first eight were kept, in order");
    // Room again after draining.
    let _ = tx.send_to(&[99], rx.local_addr()).unwrap();
    assert_eq!(rx.recv_from(&mut buf).unwrap().map(|m| (m.len, buf[0])), Some((1, 99)));
}

#[test]
fn binding_an_address_in_use_is_an_error_until_the_socket_is_dropped() {
    let net = LoopbackNetwork::new();
    let first = net.bind(addr("127.0.0.1:7777")).unwrap();
    assert!(
        matches!(net.bind(addr("127.0.0.1:7777")), Err(SocketError::AddressInUse(a)) if a == addr("127.0.0.1:7777"))
    );
    // The wildcard of the same family and port clashes too; another port or family does not.
    assert!(matches!(net.bind(addr("0.0.0.0:7777")), Err(SocketError::AddressInUse(_))));
    let _other_port = net.bind(addr("127.0.0.1:7778")).unwrap();
    let _v6 = net.bind(addr("[::1]:7777")).unwrap();
    drop(first);
    let _again = net.bind(addr("127.0.0.1:7777")).unwrap();
}

#[test]
fn port_zero_picks_distinct_free_ports() {
    let net = LoopbackNetwork::new();
    let a = net.bind(addr("127.0.0.1:0")).unwrap();
    let b = net.bind(addr("127.0.0.1:0")).unwrap();
    assert_ne!(a.local_addr(), b.local_addr());
    assert!(a.local_addr().port() >= 49_152);
}

#[test]
fn a_wildcard_server_receives_on_any_ip_and_answers_from_loopback() {
    let factory = LoopbackSocketFactory::new();
    let mut server = factory.server_socket(addr("0.0.0.0:5000")).unwrap();
    let target = addr("127.0.0.1:5000");
    let mut client = factory.client_socket(target).unwrap();
    assert_eq!(client.local_addr().ip(), addr("127.0.0.1:0").ip());
    let _ = client.send_to(b"hi", target).unwrap();
    let mut buf = [0u8; 8];
    let meta = server.recv_from(&mut buf).unwrap().unwrap();
    assert_eq!(meta.from, client.local_addr());
    let _ = server.send_to(b"yo", meta.from).unwrap();
    let meta = client.recv_from(&mut buf).unwrap().unwrap();
    assert_eq!(meta.from, target, "the reply comes from the address the client sent to");
}

#[test]
fn datagrams_to_nowhere_are_counted_as_undeliverable() {
    let net = LoopbackNetwork::new();
    let mut socket = net.bind(addr("127.0.0.1:0")).unwrap();
    let _ = socket.send_to(b"void", addr("127.0.0.1:1")).unwrap();
    assert_eq!(net.undeliverable(), 1);
}

#[test]
fn waiting_returns_on_data_from_another_thread_and_times_out_without() {
    let net = LoopbackNetwork::new();
    let mut rx = net.bind(addr("127.0.0.1:0")).unwrap();
    assert_eq!(rx.wait_readable(Some(Duration::from_millis(10))).unwrap(), Readiness::TimedOut);
    let target = rx.local_addr();
    let sender = {
        let net = net.clone();
        thread::spawn(move || {
            let mut tx = net.bind(addr("127.0.0.1:0")).unwrap();
            #[expect(
                clippy::disallowed_methods,
                reason = "a real delay before the other thread acts: this tests blocking waits"
            )]
            thread::sleep(Duration::from_millis(20));
            let _ = tx.send_to(b"ding", target).unwrap();
        })
    };
    assert_eq!(rx.wait_readable(None).unwrap(), Readiness::Readable);
    let mut buf = [0u8; 8];
    assert_eq!(rx.recv_from(&mut buf).unwrap().map(|m| m.len), Some(4));
    sender.join().unwrap();
}

#[test]
fn oversized_datagrams_and_family_mismatches_are_refused() {
    let net = LoopbackNetwork::with_config(LoopbackConfig {
        max_datagram_size: 100,
        ..LoopbackConfig::default()
    })
    .unwrap();
    let mut socket = net.bind(addr("127.0.0.1:0")).unwrap();
    let to = socket.local_addr();
    assert!(matches!(
        socket.send_to(&[0; 101], to),
        Err(SocketError::DatagramTooLarge { len: 101, max: 100 })
    ));
    assert!(matches!(
        socket.send_to(&[0; 1], addr("[::1]:1")),
        Err(SocketError::AddressFamily { .. })
    ));
}

#[test]
fn a_short_buffer_truncates_like_udp() {
    let net = LoopbackNetwork::new();
    let mut a = net.bind(addr("127.0.0.1:0")).unwrap();
    let mut b = net.bind(addr("127.0.0.1:0")).unwrap();
    let _ = a.send_to(b"0123456789", b.local_addr()).unwrap();
    let mut buf = [0u8; 4];
    let meta = b.recv_from(&mut buf).unwrap().unwrap();
    assert_eq!((meta.len, &buf), (4, b"0123"));
    assert_eq!(b.recv_from(&mut buf).unwrap(), None, "the rest is discarded");
}

#[test]
fn every_ephemeral_port_can_be_bound_then_the_range_is_exhausted_until_one_is_freed() {
    let net = LoopbackNetwork::new();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut sockets: Vec<_> = (49_152..=u16::MAX).map(|_| net.bind(any).unwrap()).collect();
    let mut ports: Vec<u16> = sockets.iter().map(|s| s.local_addr().port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 16_384, "all distinct");
    assert!(matches!(net.bind(any), Err(SocketError::AddressInUse(_))));
    // Another IP has its own ports.
    assert!(net.bind("127.0.0.2:0".parse().unwrap()).is_ok());
    let freed = sockets.swap_remove(1234).local_addr().port();
    assert_eq!(net.bind(any).unwrap().local_addr().port(), freed);
}

#[test]
fn a_waker_ends_a_wait_from_another_thread() {
    let net = LoopbackNetwork::new();
    let mut socket = net.bind(addr("127.0.0.1:5000")).unwrap();
    let waker = socket.waker().expect("loopback sockets have a waker");
    let waking = thread::spawn(move || {
        #[expect(
            clippy::disallowed_methods,
            reason = "a real delay before the other thread acts: this tests blocking waits"
        )]
        thread::sleep(Duration::from_millis(20));
        waker.wake();
    });
    assert_eq!(socket.wait_readable(None).unwrap(), Readiness::Readable);
    // The wake-up is used up: the next wait times out.
    assert_eq!(socket.wait_readable(Some(Duration::from_millis(10))).unwrap(), Readiness::TimedOut);
    waking.join().unwrap();
}

#[test]
fn an_out_of_range_config_is_refused_by_name() {
    for (config, field) in [
        (LoopbackConfig { queue_capacity: 0, ..LoopbackConfig::default() }, "queue_capacity"),
        (
            LoopbackConfig { queue_capacity: usize::MAX, ..LoopbackConfig::default() },
            "queue_capacity",
        ),
        (
            LoopbackConfig { max_datagram_size: 70_000, ..LoopbackConfig::default() },
            "max_datagram_size",
        ),
    ] {
        match LoopbackNetwork::with_config(config) {
            Err(SocketError::InvalidConfig { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
}

//! Real UDP sockets on 127.0.0.1 and ::1. These tests are about the sockets themselves, so they
//! use the OS; they wait for data with generous upper bounds but never assert on elapsed time.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use sturnus_socket::{
    Outgoing, Readiness, RecvBatch, SendStatus, Socket, SocketError, SocketFactory, UdpConfig,
    UdpSocket, UdpSocketFactory,
};

/// Long enough never to matter on a working machine; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Receives one datagram, waiting for it.
fn recv_one(socket: &mut impl Socket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    loop {
        if let Some(meta) = socket.recv_from(&mut buf).unwrap() {
            return (buf[..meta.len].to_vec(), meta.from);
        }
        assert_eq!(
            socket.wait_readable(Some(PATIENCE)).unwrap(),
            Readiness::Readable,
            "no datagram"
        );
    }
}

fn exchange_on(bind: &str) {
    let factory = UdpSocketFactory::default();
    let mut server = factory.server_socket(addr(bind)).unwrap();
    let mut client = factory.client_socket(server.local_addr()).unwrap();
    assert_eq!(server.local_addr().is_ipv6(), bind.starts_with('['));
    for i in 0u8..3 {
        assert_eq!(client.send_to(&[i; 100], server.local_addr()).unwrap(), SendStatus::Sent);
    }
    for i in 0u8..3 {
        let (data, from) = recv_one(&mut server);
        assert_eq!(data, [i; 100]);
        assert_eq!(from.port(), client.local_addr().port());
        let _ = server.send_to(&[i + 100; 10], from).unwrap();
    }
    for i in 0u8..3 {
        let (data, from) = recv_one(&mut client);
        assert_eq!((data, from), (vec![i + 100; 10], server.local_addr()));
    }
    let (c, s) = (client.stats(), server.stats());
    assert_eq!(
        (c.datagrams_sent, c.bytes_sent, c.datagrams_received, c.bytes_received),
        (3, 300, 3, 30)
    );
    assert_eq!((s.datagrams_sent, s.datagrams_received), (3, 3));
}

#[test]
fn send_and_receive_over_ipv4() {
    exchange_on("127.0.0.1:0");
}

#[test]
fn send_and_receive_over_ipv6() {
    exchange_on("[::1]:0");
}

#[test]
fn a_dual_stack_ipv6_server_is_reachable_from_ipv4_and_reports_plain_ipv4_addresses() {
    let factory = UdpSocketFactory::default();
    let mut server = factory.server_socket(addr("[::]:0")).unwrap();
    let port = server.local_addr().port();
    let v4_target = addr(&format!("127.0.0.1:{port}"));
    let mut client = factory.client_socket(v4_target).unwrap();
    assert!(client.local_addr().is_ipv4());
    let _ = client.send_to(b"from v4", v4_target).unwrap();
    let (data, from) = recv_one(&mut server);
    assert_eq!(data, b"from v4");
    assert!(from.is_ipv4(), "expected a plain IPv4 sender, got {from}");
    assert_eq!(from.port(), client.local_addr().port());
    // Replying to the plain IPv4 address works from the IPv6 socket.
    let _ = server.send_to(b"back to v4", from).unwrap();
    let (data, from) = recv_one(&mut client);
    assert_eq!((data.as_slice(), from), (&b"back to v4"[..], v4_target));
}

#[test]
fn an_ipv6_only_server_is_not_reachable_from_ipv4() {
    let factory = UdpSocketFactory::new(UdpConfig { ipv6_only: true, ..UdpConfig::default() });
    let mut server = factory.server_socket(addr("[::]:0")).unwrap();
    let v4_target = addr(&format!("127.0.0.1:{}", server.local_addr().port()));
    let mut client = UdpSocketFactory::default().client_socket(v4_target).unwrap();
    let _ = client.send_to(b"lost", v4_target).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(server.recv_from(&mut buf).unwrap(), None);
    assert_eq!(
        server.wait_readable(Some(Duration::from_millis(200))).unwrap(),
        Readiness::TimedOut
    );
}

#[test]
fn batches_go_out_and_come_in_whole_and_in_order() {
    let factory = UdpSocketFactory::default();
    let mut server = factory.server_socket(addr("127.0.0.1:0")).unwrap();
    let mut client = factory.client_socket(server.local_addr()).unwrap();
    let payloads: Vec<Vec<u8>> = (0u8..40).map(|i| vec![i; 1 + usize::from(i) * 10]).collect();
    let batch: Vec<Outgoing<'_>> =
        payloads.iter().map(|p| Outgoing { to: server.local_addr(), payload: p }).collect();
    assert_eq!(client.send_batch(&batch).unwrap(), 40);

    let mut received = Vec::new();
    let mut slots = RecvBatch::new(16, 1500);
    while received.len() < 40 {
        let n = server.recv_batch(&mut slots).unwrap();
        assert!(n <= 16);
        received.extend(slots.iter().map(|(from, data)| {
            assert_eq!(from.port(), client.local_addr().port());
            data.to_vec()
        }));
        if n == 0 {
            assert_eq!(server.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
        }
    }
    assert_eq!(received, payloads);
}

#[test]
fn waiting_times_out_when_nothing_arrives() {
    let mut socket = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let mut buf = [0u8; 64];
    // Drain first: a fresh socket does not know whether something is queued.
    assert_eq!(socket.recv_from(&mut buf).unwrap(), None);
    assert_eq!(socket.wait_readable(Some(Duration::from_millis(20))).unwrap(), Readiness::TimedOut);
    assert_eq!(socket.wait_readable(Some(Duration::ZERO)).unwrap(), Readiness::TimedOut);
}

#[test]
fn waiting_returns_when_a_datagram_arrives() {
    let factory = UdpSocketFactory::default();
    let mut server = factory.server_socket(addr("127.0.0.1:0")).unwrap();
    let target = server.local_addr();
    let mut buf = [0u8; 64];
    assert_eq!(server.recv_from(&mut buf).unwrap(), None);
    let sender = thread::spawn(move || {
        let mut client = UdpSocketFactory::default().client_socket(target).unwrap();
        #[expect(
            clippy::disallowed_methods,
            reason = "a real delay before the other thread acts: this tests blocking waits"
        )]
        thread::sleep(Duration::from_millis(50));
        let _ = client.send_to(b"wake up", target).unwrap();
    });
    assert_eq!(server.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
    let meta = server.recv_from(&mut buf).unwrap().expect("the datagram that woke us");
    assert_eq!(&buf[..meta.len], b"wake up");
    sender.join().unwrap();
}

#[test]
fn binding_an_address_in_use_is_a_typed_error() {
    let first = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let taken = first.local_addr();
    match UdpSocket::bind(taken, &UdpConfig::default()) {
        Err(SocketError::AddressInUse(a)) => assert_eq!(a, taken),
        other => panic!("expected AddressInUse, got {other:?}"),
    }
}

#[test]
fn oversized_datagrams_and_wrong_families_are_refused_with_typed_errors() {
    let mut v4 = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let to = v4.local_addr();
    match v4.send_to(&vec![0; 70_000], to) {
        Err(SocketError::DatagramTooLarge { len: 70_000, max: 65_507 }) => {}
        other => panic!("expected DatagramTooLarge, got {other:?}"),
    }
    assert!(matches!(v4.send_to(b"x", addr("[::1]:9")), Err(SocketError::AddressFamily { .. })));
}

#[test]
fn sending_to_a_closed_port_is_never_fatal() {
    let closed = {
        let s = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
        s.local_addr()
    };
    let mut socket = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..20 {
        // ICMP port-unreachable may surface on a later call as connection-refused: absorbed.
        let _ = socket.send_to(b"anyone?", closed).unwrap();
        assert_eq!(socket.recv_from(&mut buf).unwrap(), None);
    }
    let stats = socket.stats();
    assert_eq!(stats.datagrams_sent + stats.send_dropped, 20);
}

#[test]
fn kernel_buffer_sizes_are_requested_and_reported() {
    let small = UdpConfig {
        send_buffer_size: Some(64 * 1024),
        recv_buffer_size: Some(64 * 1024),
        ..UdpConfig::default()
    };
    let large = UdpConfig::default();
    let s = UdpSocket::bind(addr("127.0.0.1:0"), &small).unwrap().buffer_sizes();
    let l = UdpSocket::bind(addr("127.0.0.1:0"), &large).unwrap().buffer_sizes();
    assert!(s.send > 0 && s.recv > 0);
    // The kernel may cap the large request, but never grants it less than the small one.
    assert!(l.recv >= s.recv && l.send >= s.send, "{s:?} vs {l:?}");
}

#[test]
fn sends_the_kernel_refuses_for_their_destination_are_dropped_not_errors() {
    let factory = UdpSocketFactory::default();
    let mut socket = factory.server_socket(addr("127.0.0.1:0")).unwrap();
    // A forged source of port 0 (or a broadcast address) must not make the caller fail.
    assert_eq!(socket.send_to(b"x", addr("127.0.0.1:0")).unwrap(), SendStatus::Dropped);
    assert_eq!(socket.stats().send_dropped, 1);
    // The socket still works.
    let mut peer = factory.server_socket(addr("127.0.0.1:0")).unwrap();
    assert_eq!(socket.send_to(b"ok", peer.local_addr()).unwrap(), SendStatus::Sent);
    assert_eq!(recv_one(&mut peer).0, b"ok");
}

/// Receives until `n` datagrams arrived, in batches of up to `slots`.
fn recv_batches(
    socket: &mut UdpSocket,
    n: usize,
    slots: usize,
    slot_size: usize,
) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut received = Vec::new();
    let mut batch = RecvBatch::new(slots, slot_size);
    while received.len() < n {
        if socket.recv_batch(&mut batch).unwrap() == 0 {
            assert_eq!(socket.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
        }
        received.extend(batch.iter().map(|(from, data)| (from, data.to_vec())));
    }
    received
}

#[test]
fn a_batch_skips_a_refused_destination_and_sends_the_rest() {
    let factory = UdpSocketFactory::default();
    let mut server = factory.server_socket(addr("127.0.0.1:0")).unwrap();
    let mut client = factory.client_socket(server.local_addr()).unwrap();
    let to = server.local_addr();
    let batch = [
        Outgoing { to, payload: b"one" },
        // Port 0 cannot be sent to (EINVAL on Linux): dropped and counted, not an error.
        Outgoing { to: addr("127.0.0.1:0"), payload: b"nowhere" },
        Outgoing { to, payload: b"two" },
    ];
    assert_eq!(client.send_batch(&batch).unwrap(), 3);
    let stats = client.stats();
    assert_eq!((stats.datagrams_sent, stats.send_dropped, stats.bytes_sent), (2, 1, 6));
    let got: Vec<Vec<u8>> =
        recv_batches(&mut server, 2, 8, 64).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(server.stats().datagrams_received, 2);
}

#[test]
fn batches_work_dual_stack_and_truncate_long_datagrams_to_the_slot() {
    let factory = UdpSocketFactory::default();
    let Ok(mut server) = factory.server_socket(addr("[::]:0")) else {
        return; // no IPv6 on this machine
    };
    let port = server.local_addr().port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let mut client = factory.client_socket(target).unwrap();
    let long = vec![7u8; 100];
    let batch =
        [Outgoing { to: target, payload: b"short" }, Outgoing { to: target, payload: &long }];
    assert_eq!(client.send_batch(&batch).unwrap(), 2);
    let got = recv_batches(&mut server, 2, 4, 32);
    // The IPv4 sender is reported as IPv4, not as ::ffff:127.0.0.1.
    assert_eq!(got[0].0, SocketAddr::from(([127, 0, 0, 1], client.local_addr().port())));
    assert_eq!(got[0].1, b"short");
    assert_eq!(got[1].1, vec![7u8; 32], "cut to the slot, which tells the reader it was too long");
    // Answer the IPv4 peer from the dual-stack socket in a batch too.
    assert_eq!(server.send_batch(&[Outgoing { to: got[0].0, payload: b"back" }]).unwrap(), 1);
    let back = recv_batches(&mut client, 1, 4, 32);
    assert_eq!(back[0].1, b"back");
}

#[test]
fn a_waker_ends_a_wait_from_another_thread() {
    let mut socket = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(socket.recv_from(&mut buf).unwrap(), None);
    let waker = socket.waker().expect("UDP sockets have a waker");
    let waking = thread::spawn(move || {
        #[expect(
            clippy::disallowed_methods,
            reason = "a real delay before the other thread acts: this tests blocking waits"
        )]
        thread::sleep(Duration::from_millis(20));
        waker.wake();
    });
    // Without the waker this would block forever: nothing is ever sent to the socket.
    assert_eq!(socket.wait_readable(None).unwrap(), Readiness::Readable);
    assert_eq!(socket.recv_from(&mut buf).unwrap(), None, "a spurious wake-up, no datagram");
    waking.join().unwrap();
}

/// Equal-sized runs to one destination go out segmented (UDP GSO) and may arrive coalesced (UDP
/// GRO) where the kernel allows; whatever the combination, and whether the receiver reads in
/// batches smaller than a coalesced receive or one datagram at a time, it must see the same
/// datagrams, whole and in order.
#[test]
fn segmented_batches_arrive_as_the_same_datagrams_with_or_without_offload() {
    for (gso, gro, batched) in [
        (true, true, true),
        (true, true, false),
        (true, false, true),
        (false, true, true),
        (false, false, true),
    ] {
        let sender = UdpConfig { segmentation_offload: gso, ..UdpConfig::default() };
        let receiver = UdpConfig { receive_offload: gro, ..UdpConfig::default() };
        let mut a = UdpSocket::bind(addr("127.0.0.1:0"), &receiver).unwrap();
        let mut b = UdpSocket::bind(addr("127.0.0.1:0"), &receiver).unwrap();
        let mut client = UdpSocket::bind(addr("127.0.0.1:0"), &sender).unwrap();
        // 40 × 1200 B and a 700-B tail to `a`, then 3 to `b`, then 5 more to `a`.
        let mut payloads: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        for i in 0..40u8 {
            payloads.push((a.local_addr(), vec![i; 1200]));
        }
        payloads.push((a.local_addr(), vec![40; 700]));
        for i in 41..44u8 {
            payloads.push((b.local_addr(), vec![i; 1200]));
        }
        for i in 44..49u8 {
            payloads.push((a.local_addr(), vec![i; 300]));
        }
        let batch: Vec<Outgoing<'_>> =
            payloads.iter().map(|(to, p)| Outgoing { to: *to, payload: p }).collect();
        let mut sent = 0;
        while sent < batch.len() {
            sent += client.send_batch(&batch[sent..]).unwrap();
        }
        assert_eq!(client.stats().datagrams_sent, 49);
        assert_eq!(client.stats().bytes_sent, 40 * 1200 + 700 + 3 * 1200 + 5 * 300);
        let receive = |socket: &mut UdpSocket, n: usize| -> Vec<Vec<u8>> {
            if batched {
                recv_batches(socket, n, 16, 1500).into_iter().map(|(_, d)| d).collect()
            } else {
                (0..n).map(|_| recv_one(socket).0).collect()
            }
        };
        let at_a = receive(&mut a, 46);
        let at_b = receive(&mut b, 3);
        let want = |to: SocketAddr| -> Vec<Vec<u8>> {
            payloads.iter().filter(|(t, _)| *t == to).map(|(_, p)| p.clone()).collect()
        };
        let case = format!("gso {gso}, gro {gro}, batched {batched}");
        assert_eq!(at_a, want(a.local_addr()), "{case}");
        assert_eq!(at_b, want(b.local_addr()), "{case}");
        assert_eq!(a.stats().datagrams_received, 46, "{case}");
        assert_eq!(a.receive_offload(), gro, "{case}: this kernel supports GRO");
        // On loopback a segmented send stays one buffer up to a GRO receiver: the kernel does
        // the work once per run, not once per datagram.
        let coalesced = a.stats().datagrams_coalesced;
        if gso && gro {
            assert!(coalesced >= 40, "{case}: {coalesced} coalesced");
        } else {
            assert_eq!(coalesced, 0, "{case}");
        }
        assert_eq!(a.recv_from(&mut [0; 1500]).unwrap(), None, "{case}: nothing left over");
    }
}

/// Receives `n` more datagrams into `received` through one reused batch, waiting for them.
fn receive_more(
    server: &mut UdpSocket,
    slots: &mut RecvBatch,
    received: &mut Vec<Vec<u8>>,
    n: usize,
) {
    let goal = received.len() + n;
    while received.len() < goal {
        if server.recv_batch(slots).unwrap() == 0 {
            assert_eq!(server.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
        }
        received.extend(slots.iter().map(|(_, data)| data.to_vec()));
    }
}

/// The receive headers are reused from call to call and only what the kernel wrote is reset:
/// a lone datagram (no GRO control message, so the kernel shrinks the control length to 0), then
/// a coalesced run, then a lone one again, over and over on one socket, must each come out whole.
#[test]
fn lone_and_coalesced_receives_alternate_on_one_socket_without_losing_segments() {
    for gso in [false, true] {
        let config = UdpConfig { segmentation_offload: gso, ..UdpConfig::default() };
        let mut server = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
        let mut client = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
        let to = server.local_addr();
        let mut expected = Vec::new();
        let mut received = Vec::new();
        // One batch throughout, so the headers pointing into it are reused.
        let mut slots = RecvBatch::new(16, 1500);
        for round in 0..6u8 {
            let lone = vec![round; 64];
            let _ = client.send_to(&lone, to).unwrap();
            expected.push(lone);
            receive_more(&mut server, &mut slots, &mut received, 1);
            let run: Vec<Vec<u8>> = (0..8u8).map(|i| vec![round * 10 + i; 1000]).collect();
            let batch: Vec<Outgoing<'_>> =
                run.iter().map(|p| Outgoing { to, payload: p }).collect();
            let mut sent = 0;
            while sent < batch.len() {
                sent += client.send_batch(&batch[sent..]).unwrap();
            }
            expected.extend(run.iter().cloned());
            receive_more(&mut server, &mut slots, &mut received, 8);
        }
        assert_eq!(received, expected, "gso {gso}");
        assert_eq!(server.stats().datagrams_received, 6 * 9, "gso {gso}");
        if gso && server.receive_offload() {
            assert!(server.stats().datagrams_coalesced >= 6 * 8, "gso {gso}: runs were coalesced");
        }
    }
}

/// A socket that may use UDP GRO turns it off for an interactive flow (it only costs there) and
/// back on at the first burst; across both switches every datagram arrives whole and in order.
#[test]
fn gro_goes_off_for_an_interactive_flow_and_back_on_for_a_burst_without_losing_datagrams() {
    let config = UdpConfig::default();
    let mut server = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
    let mut client = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
    if !server.receive_offload() {
        return; // This kernel has no UDP GRO: nothing to switch.
    }
    let to = server.local_addr();
    let mut slots = RecvBatch::new(32, 1500);
    let mut received: Vec<Vec<u8>> = Vec::new();
    let mut expected: Vec<Vec<u8>> = Vec::new();
    // A ping-pong's receive side: one datagram at a time.
    for i in 0..100u32 {
        let lone = i.to_le_bytes().repeat(10);
        let _ = client.send_to(&lone, to).unwrap();
        expected.push(lone);
        receive_more(&mut server, &mut slots, &mut received, 1);
    }
    assert_eq!(server.stats().offload_switches, 1, "off after a run of single datagrams");
    // Long enough that a message coalesced before the switch can no longer be waiting.
    for _ in 0..2000 {
        assert_eq!(server.recv_batch(&mut slots).unwrap(), 0);
    }
    // Two segmented bursts: the first arrives as single datagrams and switches GRO back on,
    // the second may arrive coalesced again.
    for burst in 0..2u8 {
        let run: Vec<Vec<u8>> = (0..40u8).map(|i| vec![burst * 64 + i; 1200]).collect();
        let batch: Vec<Outgoing<'_>> = run.iter().map(|p| Outgoing { to, payload: p }).collect();
        let mut sent = 0;
        while sent < batch.len() {
            sent += client.send_batch(&batch[sent..]).unwrap();
        }
        expected.extend(run.iter().cloned());
        receive_more(&mut server, &mut slots, &mut received, 40);
        if burst == 0 {
            assert_eq!(server.stats().offload_switches, 2, "on again for the burst");
        }
    }
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "every datagram whole and in order");
    assert_eq!(server.stats().datagrams_received, 180);
    assert_eq!(server.recv_batch(&mut slots).unwrap(), 0, "nothing left over");
}

#[test]
fn after_a_lone_datagram_singles_are_taken_until_two_in_a_row_then_batches_and_nothing_is_lost() {
    for gro in [false, true] {
        let config = UdpConfig { receive_offload: gro, ..UdpConfig::default() };
        let mut server = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
        let mut client = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
        let to = server.local_addr();
        let mut slots = RecvBatch::new(16, 1500);
        let mut received = Vec::new();
        let mut take = |server: &mut UdpSocket, received: &mut Vec<Vec<u8>>| {
            let n = server.recv_batch(&mut slots).unwrap();
            received.extend(slots.iter().map(|(_, data)| data.to_vec()));
            n
        };
        let mut marker = UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap();
        // A lone datagram: the flow looks interactive.
        let _ = client.send_to(&[0; 100], to).unwrap();
        assert_eq!(server.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
        while take(&mut server, &mut received) == 0 {}
        assert_eq!(received.len(), 1);
        // Four more, queued before a marker to another socket arrives (loopback delivers one
        // sender's datagrams in order through the same backlog).
        for i in 1..5u8 {
            let _ = client.send_to(&[i; 100], to).unwrap();
        }
        let _ = client.send_to(b"marker", marker.local_addr()).unwrap();
        assert_eq!(recv_one(&mut marker).0, b"marker");
        let first = take(&mut server, &mut received);
        if gro {
            // They may have been coalesced into one message, which comes out whole.
            assert!((1..=4).contains(&first), "{first}");
        } else {
            assert_eq!(first, 1, "the first is taken singly");
            assert_eq!(take(&mut server, &mut received), 1, "and the second");
            assert_eq!(take(&mut server, &mut received), 2, "two in a row: a batch for the rest");
        }
        while received.len() < 5 {
            let n = take(&mut server, &mut received);
            if n == 0 {
                assert_eq!(server.wait_readable(Some(PATIENCE)).unwrap(), Readiness::Readable);
            }
        }
        if !gro {
            assert_eq!(server.stats().datagrams_received, 5);
        }
        let expected: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100]).collect();
        assert_eq!(received, expected, "gro {gro}");
        assert_eq!(take(&mut server, &mut received), 0, "nothing more");
    }
}

#[test]
fn an_out_of_range_buffer_size_is_refused_by_name_before_binding() {
    for (config, field) in [
        (UdpConfig { send_buffer_size: Some(0), ..UdpConfig::default() }, "send_buffer_size"),
        (
            UdpConfig { recv_buffer_size: Some(usize::MAX), ..UdpConfig::default() },
            "recv_buffer_size",
        ),
    ] {
        match UdpSocket::bind(addr("127.0.0.1:0"), &config) {
            Err(SocketError::InvalidConfig { field: named, .. }) => assert_eq!(named, field),
            other => panic!("expected {field} to be refused, got {other:?}"),
        }
    }
}

/// What the kernel drops for a full receive queue is counted (Linux: `SO_MEMINFO`, read when
/// the socket waits), so a server that falls behind sees its losses instead of guessing them.
#[cfg(target_os = "linux")]
#[test]
fn drops_at_a_full_receive_queue_are_counted() {
    let small =
        UdpConfig { recv_buffer_size: Some(4096), receive_offload: false, ..UdpConfig::default() };
    let mut server = UdpSocketFactory::new(small).server_socket(addr("127.0.0.1:0")).unwrap();
    let mut client = UdpSocketFactory::default().client_socket(server.local_addr()).unwrap();
    let to = server.local_addr();
    // Far more than a few KiB of queue holds, never read while sending.
    for i in 0..2000u32 {
        let _ = client.send_to(&i.to_le_bytes(), to).unwrap();
    }
    let mut read = 0u64;
    let mut buf = [0u8; 64];
    loop {
        while server.recv_from(&mut buf).unwrap().is_some() {
            read += 1;
        }
        // Drained: the wait refreshes the count (and returns at once if more arrived).
        if server.wait_readable(Some(Duration::from_millis(50))).unwrap() == Readiness::TimedOut {
            break;
        }
    }
    let dropped = server.stats().dropped_queue_full;
    assert!(dropped > 0, "nothing counted as dropped ({read} read)");
    // The loopback's own backlog may drop some before they reach the socket (not counted).
    assert!(read + dropped <= 2000, "{read} read + {dropped} dropped of 2000 sent");
    assert!(read > 0);
}

/// Whether this process may force socket buffers past the kernel's caps (`CAP_NET_ADMIN`, bit
/// 12 of the effective capabilities).
#[cfg(target_os = "linux")]
fn may_force_buffers() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// A buffer larger than the kernel's cap (`net.core.rmem_max`) is granted when forcing is asked
/// for and the process may (`CAP_NET_ADMIN`, as root in CI); otherwise the cap holds.
#[cfg(target_os = "linux")]
#[test]
fn a_receive_buffer_past_the_cap_is_granted_only_when_forced_and_allowed() {
    let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("net.core.rmem_max");
    let wanted = cap * 4;
    if wanted > 256 << 20 {
        // A cap this high leaves nothing to force within reason.
        return;
    }
    let bind = |force: bool| {
        let config = UdpConfig {
            recv_buffer_size: Some(wanted),
            force_buffer_sizes: force,
            ..UdpConfig::default()
        };
        UdpSocket::bind(addr("127.0.0.1:0"), &config).unwrap().buffer_sizes().recv
    };
    // The kernel reports twice the size it holds to (its bookkeeping): the cap reads as 2 × cap.
    assert!(bind(false) <= cap * 2, "the cap holds unless forcing is asked for");
    if may_force_buffers() {
        assert!(bind(true) >= wanted, "forced, a privileged process gets {wanted}");
    } else {
        assert!(bind(true) <= cap * 2, "without CAP_NET_ADMIN the cap holds");
    }
}

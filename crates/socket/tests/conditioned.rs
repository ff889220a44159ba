//! `ConditionedSocket` over the loopback network, on a manual clock (deterministic) and on the
//! real one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_netem::LinkConfig;
use sturnus_socket::{
    ConditionedSocket, LoopbackNetwork, ManualClock, Readiness, Socket, UdpConfig, UdpSocket,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[expect(clippy::disallowed_methods, reason = "a starting point for the manual clock")]
fn start() -> Instant {
    Instant::now()
}

#[test]
fn outgoing_datagrams_are_released_after_the_link_latency() {
    let net = LoopbackNetwork::new();
    let clock = ManualClock::new(start());
    let latency = LinkConfig { latency: Duration::from_millis(50), ..LinkConfig::perfect() };
    let raw = net.bind(addr("127.0.0.1:1")).unwrap();
    let mut slow = ConditionedSocket::with_clock(raw, latency, 1, clock.clone()).unwrap();
    let mut peer = net.bind(addr("127.0.0.1:2")).unwrap();
    let mut buf = [0u8; 16];

    let _ = slow.send_to(b"late", peer.local_addr()).unwrap();
    assert_eq!(peer.recv_from(&mut buf).unwrap(), None);
    clock.advance(Duration::from_millis(49));
    assert_eq!(slow.wait_readable(Some(Duration::ZERO)).unwrap(), Readiness::TimedOut);
    assert_eq!(peer.recv_from(&mut buf).unwrap(), None, "not before its time");
    clock.advance(Duration::from_millis(1));
    assert_eq!(slow.recv_from(&mut buf).unwrap(), None); // any call releases what is due
    let meta = peer.recv_from(&mut buf).unwrap().expect("released at 50 ms");
    assert_eq!((&buf[..meta.len], meta.from), (&b"late"[..], slow.local_addr()));
    assert_eq!(slow.outgoing_stats().delivered, 1);
}

#[test]
fn incoming_conditioning_applies_loss_and_delay_to_what_arrives() {
    let net = LoopbackNetwork::new();
    let clock = ManualClock::new(start());
    let raw = net.bind(addr("127.0.0.1:1")).unwrap();
    let incoming =
        LinkConfig { latency: Duration::from_millis(10), loss: 0.5, ..LinkConfig::perfect() };
    let mut socket = ConditionedSocket::with_clock(raw, LinkConfig::perfect(), 1, clock.clone())
        .unwrap()
        .with_incoming(incoming, 2)
        .unwrap();
    let mut peer = net.bind(addr("127.0.0.1:2")).unwrap();
    for i in 0u16..1000 {
        let _ = peer.send_to(&i.to_le_bytes(), socket.local_addr()).unwrap();
    }
    let mut buf = [0u8; 4];
    assert_eq!(socket.recv_from(&mut buf).unwrap(), None, "everything is still 10 ms away");
    clock.advance(Duration::from_millis(10));
    assert_eq!(socket.wait_readable(Some(Duration::ZERO)).unwrap(), Readiness::Readable);
    let mut got = Vec::new();
    while let Some(meta) = socket.recv_from(&mut buf).unwrap() {
        assert_eq!(meta.from, peer.local_addr());
        got.push(u16::from_le_bytes([buf[0], buf[1]]));
    }
    let stats = socket.incoming_stats().unwrap();
    assert_eq!(got.len() as u64, 1000 - stats.lost);
    assert!((400..600).contains(&got.len()), "about half should survive, got {}", got.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "no jitter, so no reordering");
}

#[test]
fn a_dead_outgoing_link_sends_nothing() {
    let net = LoopbackNetwork::new();
    let raw = net.bind(addr("127.0.0.1:1")).unwrap();
    let mut socket = ConditionedSocket::new(raw, LinkConfig::dead(), 1).unwrap();
    let mut peer = net.bind(addr("127.0.0.1:2")).unwrap();
    for _ in 0..10 {
        let _ = socket.send_to(b"x", peer.local_addr()).unwrap();
    }
    let mut buf = [0u8; 4];
    assert_eq!(peer.recv_from(&mut buf).unwrap(), None);
    assert_eq!(socket.outgoing_stats().lost, 10);
    assert_eq!(socket.stats().datagrams_sent, 0, "the inner socket sent nothing");
}

#[test]
fn waiting_on_the_real_clock_releases_delayed_datagrams_in_time() {
    let raw = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let delayed = LinkConfig { latency: Duration::from_millis(20), ..LinkConfig::perfect() };
    let mut socket = ConditionedSocket::new(raw, delayed, 1).unwrap();
    let mut peer = UdpSocket::bind(addr("127.0.0.1:0"), &UdpConfig::default()).unwrap();
    let _ = socket.send_to(b"soon", peer.local_addr()).unwrap();
    // Drain first: a fresh socket does not know whether something is queued and would wake at
    // once.
    let mut buf = [0u8; 8];
    assert_eq!(socket.recv_from(&mut buf).unwrap(), None);
    // The wrapper's wait sleeps until the datagram is due and sends it, then times out.
    assert_eq!(
        socket.wait_readable(Some(Duration::from_millis(100))).unwrap(),
        Readiness::TimedOut
    );
    assert_eq!(socket.outgoing_stats().delivered, 1);
    assert_eq!(peer.wait_readable(Some(Duration::from_secs(10))).unwrap(), Readiness::Readable);
    let mut meta = peer.recv_from(&mut buf).unwrap();
    while meta.is_none() {
        peer.wait_readable(Some(Duration::from_secs(10))).unwrap();
        meta = peer.recv_from(&mut buf).unwrap();
    }
    assert_eq!(&buf[..meta.unwrap().len], b"soon");
}

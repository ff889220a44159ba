//! The virtual network itself: determinism, virtual time, and the transport contract of a
//! [`SimEndpoint`].

use std::time::Duration;

use sturnus_netem::LinkConfig;
use sturnus_testkit::{Delivery, SimEndpoint, SimNet};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Event, Qos, Transport};

fn config() -> EndpointConfig {
    EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    }
}

fn lossy() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        loss: 0.1,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(20),
        ..LinkConfig::perfect()
    }
}

/// Drives both endpoints at `now` as a game loop would; returns the messages `server` received
/// on channel 0 and on channel 1.
fn drive(
    now: std::time::Instant,
    client: &mut SimEndpoint,
    server: &mut SimEndpoint,
) -> [usize; 2] {
    let mut got = [0; 2];
    while client.poll_event(now).unwrap().is_some() {}
    while let Some(event) = server.poll_event(now).unwrap() {
        if let Event::Data { channel, .. } = event {
            got[usize::from(channel.0)] += 1;
        }
    }
    client.flush(now).unwrap();
    server.flush(now).unwrap();
    got
}

/// A client connects to a server over lossy links and sends 200 messages, 10 per 20 ms frame,
/// on both channels; returns every delivery and how many messages arrived on each channel.
fn transcript(seed: u64) -> (Vec<Delivery>, [usize; 2]) {
    let net = SimNet::new(lossy(), seed);
    net.record_deliveries(true);
    let mut server = net.endpoint(config());
    let mut client = net.endpoint(config());
    let conn = client.connect(net.now(), server.addr()).unwrap();
    let (mut sent, mut received) = (0u32, [0; 2]);
    let mut connected = false;
    let done = net.run_until(Duration::from_secs(30), Some(Duration::from_millis(20)), |now| {
        connected |= client.is_connected(conn);
        if connected && sent < 200 {
            for _ in 0..10 {
                client.send(conn, ChannelId(0), &sent.to_le_bytes()).unwrap();
                client.send(conn, ChannelId(1), &sent.to_le_bytes()).unwrap();
                sent += 1;
            }
        }
        let [reliable, unreliable] = drive(now, &mut client, &mut server);
        received[0] += reliable;
        received[1] += unreliable;
        received[0] == 200
    });
    assert!(done, "the exchange did not finish");
    (net.deliveries(), received)
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let (first, received) = transcript(5);
    assert!(first.len() > 20, "{} deliveries", first.len());
    // Every reliable message, and most of the unreliable ones (10% loss).
    assert_eq!(received[0], 200);
    assert!((100..200).contains(&received[1]), "{received:?}");
    assert_eq!(transcript(5).0, first, "same seed, same deliveries at the same times");
    assert_ne!(transcript(6).0, first, "another seed, another run");
}

#[test]
fn run_until_jumps_from_deadline_to_deadline() {
    // A connection idle for a minute: only keepalives (every second by default) and their acks
    // happen, and virtual time jumps between them.
    let net =
        SimNet::new(LinkConfig { latency: Duration::from_millis(50), ..LinkConfig::perfect() }, 1);
    let mut server = net.endpoint(config());
    let mut client = net.endpoint(config());
    let conn = client.connect(net.now(), server.addr()).unwrap();
    let mut steps = 0;
    let done = net.run_until(Duration::from_secs(60), None, |now| {
        steps += 1;
        drive(now, &mut client, &mut server);
        false
    });
    assert!(!done);
    assert_eq!(net.elapsed(), Duration::from_secs(60));
    assert!(client.is_connected(conn), "keepalives held the connection for a minute");
    let keepalives = 60 * 1000 / config().keepalive_interval.as_millis();
    assert!(
        (keepalives as usize..keepalives as usize * 8).contains(&steps),
        "{steps} steps for {keepalives} keepalive intervals"
    );

    // With a frame tick, the clock stops at least every tick.
    let start = net.now();
    let mut frames = 0;
    net.run_until(Duration::from_secs(1), Some(Duration::from_millis(16)), |_| {
        frames += 1;
        false
    });
    assert!(frames >= 1000 / 16, "{frames} frames in a second");
    assert_eq!(net.now() - start, Duration::from_secs(1));
}

#[test]
fn a_dropped_endpoint_is_gone_from_the_net_and_its_peer_times_out() {
    let net =
        SimNet::new(LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() }, 2);
    let mut server = net.endpoint(config());
    let mut client = net.endpoint(config());
    let conn = client.connect(net.now(), server.addr()).unwrap();
    assert!(net.run_until(Duration::from_secs(5), None, |now| {
        drive(now, &mut client, &mut server);
        client.is_connected(conn)
    }));
    drop(server);
    let mut lost: Option<ConnectionId> = None;
    let timeout = config().disconnect_timeout;
    assert!(net.run_until(timeout * 2, None, |now| {
        while let Some(event) = client.poll_event(now).unwrap() {
            if let Event::Disconnected { conn, .. } = event {
                lost = Some(conn);
            }
        }
        client.flush(now).unwrap();
        lost.is_some()
    }));
    assert_eq!(lost, Some(conn));
    assert!(net.elapsed() >= timeout, "{:?}", net.elapsed());
}

#[test]
fn sent_counts_and_link_stats_follow_the_traffic() {
    let net = SimNet::new(LinkConfig::perfect(), 3);
    let mut server = net.endpoint(config());
    let mut client = net.endpoint(config());
    assert_eq!(
        (server.addr().to_string(), client.addr().to_string()),
        ("10.0.0.1:7777".into(), "10.0.0.2:7777".into())
    );
    net.set_link(client.addr(), server.addr(), LinkConfig::dead());
    let _ = client.connect(net.now(), server.addr()).unwrap();
    net.run_until(Duration::from_secs(2), None, |now| {
        drive(now, &mut client, &mut server);
        false
    });
    let sent = net.sent(client.addr());
    let stats = net.link_stats(client.addr(), server.addr()).unwrap();
    assert!(sent.datagrams >= 2, "connection requests are retried: {sent:?}");
    assert_eq!(stats.sent, sent.datagrams);
    assert_eq!(stats.delivered, 0, "a dead link delivers nothing");
    assert_eq!(net.sent(server.addr()).datagrams, 0, "the server heard nothing to answer");
}

#[test]
fn a_filter_drops_the_datagrams_it_picks_until_lifted() {
    let net = SimNet::new(LinkConfig::perfect(), 4);
    let mut server = net.endpoint(config());
    let mut client = net.endpoint(config());
    let conn = client.connect(net.now(), server.addr()).unwrap();
    assert!(net.run_until(Duration::from_secs(5), None, |now| {
        drive(now, &mut client, &mut server);
        client.is_connected(conn)
    }));
    // Drop every datagram carrying the byte 0xAB (the messages below, not the acks).
    let picked = std::rc::Rc::new(std::cell::Cell::new(0));
    let count = std::rc::Rc::clone(&picked);
    let filter = move |_to: std::net::SocketAddr, d: &[u8]| {
        let hit = d.contains(&0xAB);
        count.set(count.get() + usize::from(hit));
        !hit
    };
    net.set_send_filter(client.addr(), Some(Box::new(filter)));
    client.send(conn, ChannelId(0), &[0xAB; 4]).unwrap();
    let mut got = 0;
    net.run_until(Duration::from_secs(1), None, |now| {
        got += drive(now, &mut client, &mut server)[0];
        false
    });
    assert_eq!(got, 0, "the filtered message arrived");
    assert!(picked.get() >= 2, "the message was resent into the filter: {}", picked.get());
    let before = net.link_stats(client.addr(), server.addr()).unwrap();
    net.set_send_filter(client.addr(), None);
    assert!(net.run_until(Duration::from_secs(5), None, |now| {
        got += drive(now, &mut client, &mut server)[0];
        got == 1
    }));
    let after = net.link_stats(client.addr(), server.addr()).unwrap();
    assert!(after.delivered > before.delivered);
    assert_eq!(net.sent(client.addr()).datagrams, after.sent + picked.get() as u64);
}

//! Congestion control and pacing, on virtual time: random loss does not collapse the sending
//! rate, unreliable traffic is paced to what the path carries, delivery resumes promptly after
//! a blackout, and a long round trip causes no spurious resends.

mod sim;

use std::time::{Duration, Instant};

use sim::{Owned, Sim};
use sturnus_netem::{LinkConfig, Preset};
use sturnus_transport::{ChannelId, ConnectionId, EndpointConfig, Qos, SendError};

/// 100 Mbit/s in bytes per second.
const LINK_RATE: u64 = 100_000_000 / 8;

/// One direction of a 100 Mbit/s path with a 10 ms round trip (5 ms each way) and a 64 KiB
/// tail-drop queue, losing `loss` of its datagrams at random.
fn path(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(5),
        bandwidth: Some(LINK_RATE),
        queue_limit: 64 * 1024,
        loss,
        ..LinkConfig::perfect()
    }
}

fn config(qos: Qos) -> EndpointConfig {
    EndpointConfig { channels: vec![qos], ..EndpointConfig::default() }
}

/// A client and a server over `link` (both ways), connected.
fn pair(qos: Qos, link: LinkConfig, seed: u64) -> (Sim, usize, usize, ConnectionId) {
    let mut sim = Sim::new(link, seed);
    let server = sim.add(config(qos));
    let client = sim.add(config(qos));
    let (conn, _) = sim.connect(client, server);
    (sim, client, server, conn)
}

/// Keeps the client's queue full of `size`-byte messages for `duration`; returns how many the
/// channel accepted.
fn saturate(
    sim: &mut Sim,
    client: usize,
    conn: ConnectionId,
    size: usize,
    duration: Duration,
) -> u64 {
    let mut accepted = 0;
    let message = vec![7u8; size];
    let end = sim.now + duration;
    while sim.now < end {
        loop {
            match sim.nodes[client].endpoint.send(conn, ChannelId(0), &message) {
                Ok(()) => accepted += 1,
                Err(SendError::QueueFull { .. }) => break,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        let next = sim.now + Duration::from_millis(1);
        sim.advance_to(next);
    }
    accepted
}

/// Bytes the server received (and clears its events, which would pile up).
fn take_bytes(sim: &mut Sim, node: usize) -> u64 {
    let bytes = sim.nodes[node]
        .events
        .iter()
        .map(|e| match e {
            Owned::Data { payload, .. } => payload.len() as u64,
            _ => 0,
        })
        .sum();
    sim.nodes[node].events.clear();
    bytes
}

/// Bytes of reliable 1 KB messages delivered in `seconds` of bulk sending over the path.
fn bulk_reliable(loss: f64, seconds: u64) -> u64 {
    let (mut sim, client, server, conn) = pair(Qos::ReliableSequenced, path(loss), 11);
    let mut delivered = 0;
    for _ in 0..seconds * 10 {
        saturate(&mut sim, client, conn, 1000, Duration::from_millis(100));
        delivered += take_bytes(&mut sim, server);
    }
    delivered
}

#[test]
fn random_loss_does_not_collapse_reliable_throughput() {
    // A loss-driven window halves at every loss: 5 % random loss on a 10 ms path held it to a
    // few percent of the link. The rate model must tell random loss from congestion.
    let clean = bulk_reliable(0.0, 3);
    let lossy = bulk_reliable(0.05, 3);
    let capacity = LINK_RATE * 3;
    assert!(clean > capacity / 2, "loss-free, only {clean} of {capacity} bytes");
    assert!(
        lossy * 2 >= clean,
        "at 5 % random loss, {lossy} bytes against {clean} loss-free ({:.1} %)",
        lossy as f64 * 100.0 / clean as f64
    );
}

#[test]
fn unreliable_traffic_is_paced_to_the_bottleneck() {
    // A sender that is never held back overflows the 64 KiB queue of the 100 Mbit/s link and
    // loses most of what it sends. Paced, it loses next to nothing and still fills the link.
    let (mut sim, client, server, conn) = pair(Qos::Unreliable, path(0.0), 5);
    let seconds = 2;
    let accepted = saturate(&mut sim, client, conn, 500, Duration::from_secs(seconds));
    let in_time = sim.received(server, ChannelId(0)).len() as u64;
    // Let the queue drain and the last packets land.
    let end = sim.now + Duration::from_secs(2);
    sim.advance_to(end);
    let queued = sim.nodes[client].endpoint.queue_depth(conn, ChannelId(0)).unwrap() as u64;
    let sent = accepted - queued;
    let received = sim.received(server, ChannelId(0)).len() as u64;
    let lost = sent - received;
    assert!(
        lost * 100 <= sent,
        "{lost} of {sent} unreliable messages lost ({:.1} %)",
        lost as f64 * 100.0 / sent as f64
    );
    let capacity = LINK_RATE * seconds;
    assert!(in_time * 500 > capacity / 2, "{in_time} × 500 B delivered of {capacity} B capacity");
}

#[test]
fn ordered_delivery_resumes_within_a_second_of_a_blackout_ending() {
    // Ordered fragmented messages every 10 ms; the path goes dark for 5 s, then comes back.
    let qos = Qos::ReliableFragmentedSequenced;
    let (mut sim, client, server, conn) = pair(qos, path(0.0), 9);
    let message = vec![3u8; 3000];
    let send_for = |sim: &mut Sim, duration: Duration| {
        let end = sim.now + duration;
        while sim.now < end {
            sim.nodes[client].endpoint.send(conn, ChannelId(0), &message).unwrap();
            let next = sim.now + Duration::from_millis(10);
            sim.advance_to(next);
        }
    };
    send_for(&mut sim, Duration::from_secs(1));
    let before = sim.received(server, ChannelId(0)).len();
    assert!(before > 90, "only {before} messages before the blackout");
    sim.set_link(client, server, LinkConfig::dead());
    sim.set_link(server, client, LinkConfig::dead());
    send_for(&mut sim, Duration::from_secs(5));
    sim.nodes[server].events.clear();
    let back: Instant = sim.now;
    sim.set_link(client, server, path(0.0));
    sim.set_link(server, client, path(0.0));
    let resumed = sim.run_until(Duration::from_secs(5), |sim| {
        sim.nodes[server].events.iter().any(|e| matches!(e, Owned::Data { .. }))
    });
    assert!(resumed, "nothing delivered in the 5 s after the blackout");
    let after = sim.now - back;
    assert!(after <= Duration::from_secs(1), "the first message came {after:?} after the link");
    // And the whole backlog follows soon after.
    sim.run_for(Duration::from_secs(1));
    let backlog = sim.received(server, ChannelId(0)).len();
    let expected = 600 - before;
    assert_eq!(backlog, expected, "{backlog} of {expected} held-up messages delivered a second on");
}

#[test]
fn a_long_round_trip_causes_no_spurious_resends() {
    // `transport_echo --link bad` without the loss: a 300 ms (± 100 ms) round trip, all 500
    // messages queued at once. A resend timeout shorter than the round trip resends them all
    // although none is lost.
    let link = LinkConfig {
        loss: 0.0,
        burst_loss: None,
        duplicate: 0.0,
        reorder: 0.0,
        ..Preset::Bad.config()
    };
    let (mut sim, client, server, conn) = pair(Qos::ReliableSequenced, link, 4);
    for i in 0..500u32 {
        sim.nodes[client].endpoint.send(conn, ChannelId(0), &i.to_le_bytes()).unwrap();
    }
    let done = sim
        .run_until(Duration::from_secs(30), |sim| sim.received(server, ChannelId(0)).len() == 500);
    assert!(done, "only {} delivered", sim.received(server, ChannelId(0)).len());
    sim.run_for(Duration::from_secs(2));
    let stats = sim.nodes[client].endpoint.connection_stats(conn).unwrap();
    assert_eq!(stats.packets_lost_out, 0);
    assert_eq!(stats.resends, 0, "resends with nothing lost (rtt {:?})", stats.rtt);
}

//! Connection lifecycle and channel timing on the simulated network: timeouts, graceful
//! disconnect under loss, AllCostDelivery's fixed resend interval, channel independence.

use sturnus_testkit::sim;

use std::time::Duration;

use sim::{Owned, Sim};
use sturnus_netem::LinkConfig;
use sturnus_transport::{ChannelId, DisconnectReason, EndpointConfig, Qos, QueueLimit};

fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(3),
        loss,
        ..LinkConfig::perfect()
    }
}

#[test]
fn a_dead_link_disconnects_both_sides_exactly_at_the_configured_timeout() {
    for seed in 0..10 {
        // A keepalive each second (its grid an eighth of that): the last packet heard before
        // the cut is at most 1.125 s old, which the lower bound below allows for.
        let config = EndpointConfig {
            disconnect_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(1),
            ..EndpointConfig::default()
        };
        let mut sim = Sim::new(lossy(0.0), seed);
        let server = sim.add(config.clone());
        let client = sim.add(config.clone());
        let (conn, server_conn) = sim.connect(client, server);
        sim.run_for(Duration::from_millis(500));
        let cut = sim.now;
        sim.set_link(client, server, LinkConfig::dead());
        sim.set_link(server, client, LinkConfig::dead());
        let done = sim.run_until(Duration::from_secs(10), |sim| {
            sim.nodes[client].events.iter().any(|e| matches!(e, Owned::Disconnected { .. }))
        });
        assert!(done, "seed {seed}: no disconnect");
        let after = sim.now - cut;
        // Silence is measured from the last packet heard, which came shortly before the cut.
        assert!(after <= config.disconnect_timeout, "seed {seed}: took {after:?}");
        assert!(
            after + config.keepalive_interval + Duration::from_millis(100)
                >= config.disconnect_timeout
        );
        assert!(
            sim.nodes[client]
                .events
                .contains(&Owned::Disconnected { conn, reason: DisconnectReason::Timeout })
        );
        sim.run_for(Duration::from_secs(1));
        assert!(sim.nodes[server].events.contains(&Owned::Disconnected {
            conn: server_conn,
            reason: DisconnectReason::Timeout
        }));
    }
}

#[test]
fn a_graceful_disconnect_is_seen_by_the_peer_under_20_percent_loss() {
    for seed in 0..50 {
        let mut sim = Sim::new(lossy(0.2), seed);
        let server = sim.add(EndpointConfig::default());
        let client = sim.add(EndpointConfig::default());
        let (conn, server_conn) = sim.connect(client, server);
        let now = sim.now;
        sim.nodes[client].endpoint.disconnect(now, conn);
        let seen = sim.run_until(Duration::from_secs(1), |sim| {
            sim.nodes[server].events.contains(&Owned::Disconnected {
                conn: server_conn,
                reason: DisconnectReason::ClosedByPeer,
            })
        });
        assert!(seen, "seed {seed}: the server did not see the disconnect");
        assert_eq!(sim.nodes[server].endpoint.connection_count(), 0);
    }
}

/// Datagrams the client sends in `window` while the server's acknowledgements are all lost,
/// after one message on a channel of kind `qos`.
fn sends_without_acks(qos: Qos, window: Duration) -> u64 {
    let config = EndpointConfig {
        channels: vec![qos],
        min_resend_timeout: Duration::from_millis(20),
        all_cost_resend_interval: Duration::from_millis(10),
        ..EndpointConfig::default()
    };
    let mut sim = Sim::new(lossy(0.0), 1);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);
    sim.run_for(Duration::from_millis(200));
    sim.set_link(server, client, LinkConfig::dead());
    let before = sim.sent[client].0;
    sim.nodes[client].endpoint.send(conn, ChannelId(0), b"important").unwrap();
    sim.run_for(window);
    sim.sent[client].0 - before
}

#[test]
fn all_cost_delivery_resends_on_its_fixed_interval_while_reliable_backs_off() {
    let window = Duration::from_millis(200);
    let all_cost = sends_without_acks(Qos::AllCostDelivery, window);
    let reliable = sends_without_acks(Qos::Reliable, window);
    // Every 10 ms for 200 ms: the first send and about 20 resends.
    assert!((19..=22).contains(&all_cost), "all-cost sent {all_cost} datagrams");
    // RTT-based with doubling backoff: far fewer.
    assert!(reliable <= 6, "reliable sent {reliable} datagrams");
}

#[test]
fn a_loss_on_one_channel_does_not_delay_another() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::ReliableSequenced],
        ..EndpointConfig::default()
    };
    let mut sim = Sim::new(lossy(0.0), 4);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);
    sim.run_for(Duration::from_millis(100));
    // The packet carrying A is lost...
    sim.set_link(client, server, LinkConfig::dead());
    sim.nodes[client].endpoint.send(conn, ChannelId(0), b"A").unwrap();
    sim.step();
    sim.set_link(client, server, lossy(0.0));
    // ...and B, sent just after on the other channel, is delivered before A's resend.
    sim.nodes[client].endpoint.send(conn, ChannelId(1), b"B").unwrap();
    sim.run_for(Duration::from_secs(2));
    let order: Vec<Vec<u8>> = sim.nodes[server]
        .events
        .iter()
        .filter_map(|e| match e {
            Owned::Data { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, [b"B".to_vec(), b"A".to_vec()]);
}

#[test]
fn send_refuses_oversized_messages_and_full_queues_without_dropping_anything() {
    use sturnus_transport::SendError;
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::ReliableFragmented],
        send_queue_capacity: 8,
        ..EndpointConfig::default()
    };
    let mut sim = Sim::new(lossy(0.0), 5);
    let server = sim.add(config.clone());
    let client = sim.add(config.clone());
    let (conn, _) = sim.connect(client, server);
    let ep = &mut sim.nodes[client].endpoint;
    let max = config.max_message_size(Qos::ReliableSequenced);
    assert_eq!(
        ep.send(conn, ChannelId(0), &vec![0; max + 1]),
        Err(SendError::MessageTooLarge { channel: ChannelId(0), len: max + 1, max })
    );
    let frag_max = config.max_message_size(Qos::ReliableFragmented);
    assert!(matches!(
        ep.send(conn, ChannelId(1), &vec![0; frag_max + 1]),
        Err(SendError::MessageTooLarge { .. })
    ));
    assert_eq!(ep.send(conn, ChannelId(9), b"x"), Err(SendError::UnknownChannel(ChannelId(9))));
    for i in 0..8u8 {
        ep.send(conn, ChannelId(0), &[i]).unwrap();
    }
    assert_eq!(
        ep.send(conn, ChannelId(0), b"one too many"),
        Err(SendError::QueueFull { channel: ChannelId(0), limit: QueueLimit::Messages(8) })
    );
    // Backpressure, not loss: the eight queued messages all arrive, and the queue drains.
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.received(server, ChannelId(0)), (0..8u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(sim.nodes[client].endpoint.queue_depth(conn, ChannelId(0)), Some(0));
    sim.nodes[client].endpoint.send(conn, ChannelId(0), b"room again").unwrap();
}

#[test]
fn steady_two_way_traffic_on_a_clean_link_measures_rtt_and_never_resends() {
    let config =
        EndpointConfig { channels: vec![Qos::ReliableSequenced], ..EndpointConfig::default() };
    let link = LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() };
    let mut sim = Sim::new(link, 11);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, server_conn) = sim.connect(client, server);
    // Uneven rates on each side mix data packets, pure acks and keepalives in both directions.
    for tick in 0..600u32 {
        if tick % 3 == 0 {
            sim.nodes[client].endpoint.send(conn, ChannelId(0), b"ping").unwrap();
        }
        if tick % 7 == 0 {
            sim.nodes[server].endpoint.send(server_conn, ChannelId(0), b"pong").unwrap();
        }
        sim.run_for(Duration::from_millis(1));
    }
    sim.run_for(Duration::from_millis(200));
    for (node, id) in [(client, conn), (server, server_conn)] {
        let stats = sim.nodes[node].endpoint.connection_stats(id).unwrap();
        assert_eq!((stats.resends, stats.packets_lost_out), (0, 0), "{stats:?}");
        // 20 ms of latency plus at most the 5 ms ack delay.
        assert!(
            stats.rtt >= Duration::from_millis(20) && stats.rtt <= Duration::from_millis(26),
            "{stats:?}"
        );
    }
    assert_eq!(sim.received(server, ChannelId(0)).len(), 200);
    assert_eq!(sim.received(client, ChannelId(0)).len(), 86);
}

#[test]
fn two_peers_connecting_to_each_other_at_once_end_with_one_connection() {
    for seed in 0..20 {
        let mut sim = Sim::new(lossy(0.0), seed);
        let a = sim.add(EndpointConfig::default());
        let b = sim.add(EndpointConfig::default());
        let (addr_a, addr_b, now) = (sim.addr(a), sim.addr(b), sim.now);
        let a_to_b = sim.nodes[a].endpoint.connect(now, addr_b).unwrap();
        let b_to_a = sim.nodes[b].endpoint.connect(now, addr_a).unwrap();
        sim.run_for(Duration::from_secs(1));
        let live = |sim: &Sim, node: usize| -> Vec<sturnus_transport::ConnectionId> {
            let mut ids: Vec<_> = sim.nodes[node]
                .events
                .iter()
                .filter_map(|e| match e {
                    Owned::Connected(c) => Some(*c),
                    _ => None,
                })
                .collect();
            ids.retain(|id| sim.nodes[node].endpoint.is_connected(*id));
            ids
        };
        let (live_a, live_b) = (live(&sim, a), live(&sim, b));
        assert_eq!(
            (live_a.len(), live_b.len()),
            (1, 1),
            "seed {seed}: {:?} / {:?}",
            sim.nodes[a].events,
            sim.nodes[b].events
        );
        assert_eq!(sim.nodes[a].endpoint.connection_count(), 1);
        assert_eq!(sim.nodes[b].endpoint.connection_count(), 1);
        // Exactly one side's own attempt survived; the other gave way with the reason.
        let gave_way = [(a, a_to_b), (b, b_to_a)]
            .iter()
            .filter(|(node, id)| {
                sim.nodes[*node].events.contains(&Owned::Disconnected {
                    conn: *id,
                    reason: DisconnectReason::CrossedConnect,
                })
            })
            .count();
        assert_eq!(gave_way, 1, "seed {seed}");
        // The surviving connection carries data both ways.
        sim.nodes[a].endpoint.send(live_a[0], ChannelId(0), b"hi b").unwrap();
        sim.nodes[b].endpoint.send(live_b[0], ChannelId(0), b"hi a").unwrap();
        sim.run_for(Duration::from_millis(200));
        assert_eq!(sim.received(b, ChannelId(0)), [b"hi b".to_vec()]);
        assert_eq!(sim.received(a, ChannelId(0)), [b"hi a".to_vec()]);
    }
}

/// `poll_transmit` hands a packet out before working out the connection's next deadline; until
/// `handle_timeout` runs, `poll_timeout` says "now", and afterwards it names the resend
/// deadline, at which a packet that got no acknowledgement goes out again.
#[test]
fn the_deadline_left_for_after_a_send_is_registered_by_handle_timeout_and_keeps_resends() {
    // A resend timeout (300 ms before any sample) well before the keepalive falls due.
    let config = EndpointConfig {
        channels: vec![Qos::Reliable],
        initial_rtt: Duration::from_millis(100),
        ..EndpointConfig::default()
    };
    let mut sim = Sim::new(LinkConfig::perfect(), 5);
    let server = sim.add(config.clone());
    let client = sim.add(config);
    let (conn, _) = sim.connect(client, server);
    sim.run_for(Duration::from_millis(50));
    let now = sim.now;
    let endpoint = &mut sim.nodes[client].endpoint;
    endpoint.send(conn, ChannelId(0), b"lost on the way").unwrap();
    let mut buf = [0u8; 1500];
    let first = endpoint.poll_transmit(now, &mut buf).expect("the message goes out");
    let packet = buf[..first.len].to_vec();
    assert!(endpoint.poll_timeout().is_some_and(|at| at <= now), "call handle_timeout now");
    endpoint.handle_timeout(now);
    assert!(endpoint.poll_transmit(now, &mut buf).is_none(), "nothing else to send");
    let resend_at = endpoint.poll_timeout().expect("a resend timer runs");
    assert!(resend_at > now, "the resend deadline lies ahead");
    // The packet is dropped; at the deadline (not before) it goes out again.
    let before = resend_at - Duration::from_micros(1);
    endpoint.handle_timeout(before);
    assert!(endpoint.poll_transmit(before, &mut buf).is_none(), "not resent early");
    endpoint.handle_timeout(resend_at);
    let again = endpoint.poll_transmit(resend_at, &mut buf).expect("resent at the deadline");
    assert_eq!(again.destination, first.destination);
    assert!(buf[..again.len].windows(15).any(|w| w == b"lost on the way"), "same message");
    assert_ne!(buf[..again.len], packet[..], "in a new packet");
    let stats = endpoint.connection_stats(conn).unwrap();
    assert_eq!(stats.resends, 1);
}

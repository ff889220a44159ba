//! What attack tests need of the harness: endpoints at chosen addresses, filters on what an
//! endpoint sends, a dropped endpoint's links freed, and a `Pair` whose datagrams can be held
//! back and handed over later.

use std::net::SocketAddr;
use std::time::Duration;

use sturnus_netem::LinkConfig;
use sturnus_testkit::sim::{self, Sim};
use sturnus_testkit::{Pair, Side, SimNet, sim_addr};
use sturnus_transport::{EndpointConfig, Event, Qos};

fn config() -> EndpointConfig {
    EndpointConfig { channels: vec![Qos::ReliableSequenced], ..EndpointConfig::default() }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn an_endpoint_at_a_chosen_address_is_seen_from_it() {
    let mut sim = Sim::new(LinkConfig::perfect(), 1);
    let server = sim.add_at(addr("192.0.2.1:9000"), config());
    let a = sim.add_at(addr("198.51.100.7:5000"), config());
    let b = sim.add_at(addr("198.51.100.7:5001"), config());
    // The automatic addresses go on by index and do not collide with chosen ones.
    let c = sim.add(config());
    assert_eq!(sim.addr(c), sim_addr(3));
    for client in [a, b, c] {
        let (_, server_conn) = sim.connect(client, server);
        let remote = sim.nodes[server].endpoint.remote_address(server_conn);
        assert_eq!(remote, Some(sim.addr(client)));
    }
    assert_eq!(sim.nodes[server].endpoint.connection_count(), 3);
}

#[test]
#[should_panic(expected = "already an endpoint's address")]
fn an_address_is_taken_once() {
    let net = SimNet::new(LinkConfig::perfect(), 1);
    let _first = net.endpoint_at(addr("192.0.2.1:9000"), config());
    let _second = net.endpoint_at(addr("192.0.2.1:9000"), config());
}

#[test]
fn a_send_filter_drops_what_it_refuses_and_counts_it_as_sent() {
    let mut sim = Sim::new(LinkConfig::perfect(), 2);
    let server = sim.add(config());
    let client = sim.add(config());
    let (conn, _) = sim.connect(client, server);
    let (server_addr, client_addr) = (sim.addr(server), sim.addr(client));
    // Drop every datagram whose last byte is 0xEE (the end of the payload below).
    sim.net().set_send_filter(
        client_addr,
        Some(Box::new(move |to, datagram| {
            assert_eq!(to, server_addr);
            datagram.last() != Some(&0xEE)
        })),
    );
    sim.nodes[client].endpoint.send(conn, sim::channel(0), &[1, 0xEE]).unwrap();
    sim.run_for(Duration::from_millis(100));
    assert!(sim.received(server, sim::channel(0)).is_empty(), "the filter dropped it");
    let sent = sim.net().sent(client_addr).datagrams;
    let on_link = sim.link_stats(client, server).unwrap().sent;
    assert!(sent > on_link, "{sent} sent, {on_link} on the link");
    // Without the filter, the resend gets through.
    sim.net().set_send_filter(client_addr, None);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.received(server, sim::channel(0)), [vec![1, 0xEE]]);
}

#[test]
fn a_dropped_endpoints_links_are_freed_once_nothing_is_in_flight_on_them() {
    let link = LinkConfig { latency: Duration::from_millis(10), ..LinkConfig::perfect() };
    let mut sim = Sim::new(link, 3);
    let server = sim.add(config());
    let client = sim.add(config());
    let (conn, _) = sim.connect(client, server);
    let (server_addr, client_addr) = (sim.addr(server), sim.addr(client));
    sim.nodes[client].endpoint.send(conn, sim::channel(0), b"last words").unwrap();
    let now = sim.now;
    assert_eq!(sim.nodes[client].endpoint.transmit(now), 1);
    sim.truncate(1);
    assert_eq!(sim.nodes.len(), 1);
    // The link to it is gone at once; the one from it carries its last datagram, then goes.
    assert!(sim.net().link_stats(server_addr, client_addr).is_none());
    assert!(sim.net().link_stats(client_addr, server_addr).is_some());
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.received(server, sim::channel(0)), [b"last words".to_vec()]);
    assert!(sim.net().link_stats(client_addr, server_addr).is_none());
}

#[test]
fn a_pair_can_hold_datagrams_back_and_hand_them_over_later() {
    let config = EndpointConfig {
        channels: vec![Qos::ReliableSequenced, Qos::Unreliable],
        ..EndpointConfig::default()
    };
    let mut pair = Pair::new(config);
    let conn = pair.a_conn;
    pair.a.send(conn, sim::channel(1), b"first").unwrap();
    let first = pair.capture(Side::A);
    pair.a.send(conn, sim::channel(1), b"second").unwrap();
    let second = pair.capture(Side::A);
    assert_eq!((first.len(), second.len()), (1, 1));
    assert!(pair.capture(Side::A).is_empty(), "captured datagrams are taken off the wire");
    // Out of order, and one twice.
    pair.inject(Side::A, &second[0]);
    pair.inject(Side::A, &first[0]);
    pair.inject(Side::A, &first[0]);
    let mut got = Vec::new();
    pair.drain(|side, event| {
        if let (Side::B, Event::Data { payload, .. }) = (side, event) {
            got.push(payload.to_vec());
        }
    });
    assert_eq!(got, [b"second".to_vec(), b"first".to_vec()], "unreliable: once each, as they came");
}

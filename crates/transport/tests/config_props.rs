//! Any configuration that validates runs: a property test that draws endpoint configurations
//! from the edges of every field's range (zero, one, the bounds, `Duration::MAX`), keeps those
//! that `validate()` accepts, and plays a connect / send / disconnect scenario with each on the
//! virtual clock: a few messages of every size, then a stream of small ones with a blackout in
//! the middle, over a perfect or a lossy link. A panic anywhere (an overflowing deadline, an
//! allocation sized from a field, a division by a field or by a rate derived from one) fails
//! the property.

use sturnus_testkit::sim;

use std::time::Duration;

use proptest::prelude::*;
use sim::{Owned, Sim, channel};
use sturnus_netem::LinkConfig;
use sturnus_transport::{EndpointConfig, Qos};

/// Durations: mostly in range, often at its edges (a nanosecond, exactly an hour), and now and
/// then past it (zero, just over an hour, `Duration::MAX`) so the validation is exercised too.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        12 => (1u64..2_000).prop_map(Duration::from_millis),
        4 => (1u64..3600).prop_map(Duration::from_secs),
        3 => Just(Duration::from_nanos(1)),
        3 => Just(Duration::from_secs(3600)),
        1 => proptest::sample::select(vec![
            Duration::ZERO,
            Duration::from_secs(3600) + Duration::from_nanos(1),
            Duration::MAX,
        ]),
    ]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        12 => 1u32..64,
        4 => Just(1),
        4 => Just(1000),
        1 => proptest::sample::select(vec![0, 1001, u32::MAX]),
    ]
}

fn size(ordinary: std::ops::Range<usize>) -> impl Strategy<Value = usize> {
    let top = ordinary.end - 1;
    prop_oneof![16 => ordinary, 4 => Just(top), 1 => proptest::sample::select(vec![0, usize::MAX])]
}

fn qos() -> impl Strategy<Value = Qos> {
    proptest::sample::select(Qos::ALL.to_vec())
}

/// Sizes and counts.
#[derive(Debug, Clone)]
struct Sizes {
    channels: Vec<Qos>,
    max_packet_size: usize,
    fragment_size: usize,
    max_fragments: usize,
    max_reassembly_bytes: usize,
    max_connections: usize,
    connect_attempts: u32,
    ack_every: u32,
    unreliable_ack_every: u32,
    send_queue_capacity: usize,
    max_in_flight_packets: usize,
    reliable_window: u16,
    initial_congestion_window: usize,
    min_congestion_window: usize,
    disconnect_copies: u32,
}

prop_compose! {
    fn sizes()(
        (channels, max_packet_size, fragment_size, max_fragments, max_reassembly_bytes) in (
            proptest::collection::vec(qos(), 1..5),
            prop_oneof![2 => Just(64usize), 8 => 64usize..2000, 2 => Just(65_507), 1 => Just(65_508)],
            prop_oneof![size(1..1200), Just(65_475)],
            size(2..3000),
            prop_oneof![size(1..8_000_000), Just(1 << 30)],
        ),
        (max_connections, connect_attempts, ack_every, unreliable_ack_every, send_queue_capacity)
            in (size(1..8), count(), count(), 1u32..=34, size(1..16_385)),
        (max_in_flight_packets, reliable_window, initial_congestion_window, min_congestion_window,
            disconnect_copies) in
            (size(1..8_193), 1u16..16_385, size(1..100), size(1..10), count()),
    ) -> Sizes {
        Sizes {
            channels, max_packet_size, fragment_size, max_fragments, max_reassembly_bytes,
            max_connections, connect_attempts, ack_every, unreliable_ack_every,
            send_queue_capacity, max_in_flight_packets, reliable_window,
            initial_congestion_window, min_congestion_window, disconnect_copies,
        }
    }
}

prop_compose! {
    fn fields()(
        s in sizes(),
        (reassembly_timeout, connect_retry_interval, disconnect_timeout, keepalive_interval)
            in (duration(), duration(), duration(), duration()),
        (ack_delay, rtt_probe_interval, disconnect_copy_interval, cookie_lifetime)
            in (duration(), duration(), duration(), duration()),
        (initial_rtt, min_resend_timeout, max_resend_timeout, all_cost_resend_interval)
            in (duration(), duration(), duration(), duration()),
        max_resend_backoff in duration(),
    ) -> EndpointConfig {
        EndpointConfig {
            channels: s.channels,
            max_packet_size: s.max_packet_size,
            fragment_size: s.fragment_size,
            max_fragments: s.max_fragments,
            max_reassembly_bytes: s.max_reassembly_bytes,
            reassembly_timeout,
            max_connections: s.max_connections,
            connect_retry_interval,
            // Another drawn duration, mended to be at least the first wait.
            connect_retry_max_interval: connect_retry_interval.max(max_resend_backoff),
            connect_attempts: s.connect_attempts,
            disconnect_timeout,
            keepalive_interval,
            ack_delay,
            ack_every: s.ack_every,
            unreliable_ack_every: s.unreliable_ack_every,
            rtt_probe_interval,
            send_queue_capacity: s.send_queue_capacity,
            max_in_flight_packets: s.max_in_flight_packets,
            reliable_window: s.reliable_window,
            initial_congestion_window: s.initial_congestion_window,
            min_congestion_window: s.min_congestion_window,
            disconnect_copies: s.disconnect_copies,
            disconnect_copy_interval,
            cookie_lifetime,
            initial_rtt,
            min_resend_timeout,
            max_resend_timeout,
            all_cost_resend_interval,
            max_resend_backoff,
            ..EndpointConfig::default()
        }
    }
}

/// Draws whole configurations. Fields are drawn one by one, so most draws would break a rule
/// between two fields (keepalive shorter than the timeout, min below max); those are mended
/// here, which leaves the single-field edges (and some invalid draws) to the property.
fn config() -> impl Strategy<Value = EndpointConfig> {
    fields().prop_map(|mut c| {
        if c.min_resend_timeout > c.max_resend_timeout {
            std::mem::swap(&mut c.min_resend_timeout, &mut c.max_resend_timeout);
        }
        if c.keepalive_interval >= c.disconnect_timeout {
            c.keepalive_interval = c.disconnect_timeout / 2;
        }
        if c.ack_delay >= c.disconnect_timeout {
            c.ack_delay = c.disconnect_timeout / 2;
        }
        c.cookie_lifetime = c.cookie_lifetime.max(Duration::from_secs(1));
        if c.max_packet_size > 20 {
            c.fragment_size = c.fragment_size.min(c.max_packet_size - 20);
        }
        let largest = c.fragment_size.saturating_mul(c.max_fragments);
        c.max_reassembly_bytes = c.max_reassembly_bytes.max(largest);
        c.untrusted_reassembly_bytes_total = c.untrusted_reassembly_bytes_total.max(largest);
        let mut windows =
            [c.min_congestion_window, c.initial_congestion_window, c.max_in_flight_packets];
        windows.sort_unstable();
        [c.min_congestion_window, c.initial_congestion_window, c.max_in_flight_packets] = windows;
        c.max_in_flight_packets = c.max_in_flight_packets.max(2 * c.unreliable_ack_every as usize);
        c
    })
}

/// The links a scenario runs over.
#[derive(Debug, Clone, Copy)]
enum Link {
    Perfect,
    Lossy,
    Crawling,
}

/// A connected-or-not pair: connect, send a small and (where the channel fragments) a larger
/// message on every channel, run, disconnect, run again. Bounded in steps, not in virtual time,
/// so a configuration with nanosecond timers cannot make the test slow.
fn scenario(config: EndpointConfig, link: Link) -> usize {
    let lossy =
        LinkConfig { loss: 0.1, latency: Duration::from_millis(20), ..LinkConfig::default() };
    let link = match link {
        Link::Perfect => LinkConfig::default(),
        Link::Lossy => lossy,
        // A few bytes per second once connected: bandwidth estimates that small make pacing
        // rates that round to zero.
        Link::Crawling => LinkConfig { bandwidth: Some(2), queue_limit: 4096, ..lossy },
    };
    let handshake = if link.bandwidth.is_some() { LinkConfig::default() } else { link.clone() };
    let mut sim = Sim::new(handshake, 7);
    let client = sim.add(config.clone());
    let server = sim.add(config.clone());
    let addr = sim.addr(server);
    let now = sim.now;
    let conn = sim.nodes[client].endpoint.connect(now, addr).expect("the first connection");
    for _ in 0..2_000 {
        if sim.nodes[client].events.contains(&Owned::Connected(conn)) || !sim.step() {
            break;
        }
    }
    sim.set_link(client, server, link.clone());
    sim.set_link(server, client, link.clone());
    for (i, qos) in config.channels.iter().enumerate() {
        let largest = config.max_message_size(*qos);
        for len in [0, 1, 100.min(largest), largest.min(5_000), largest.saturating_add(1)] {
            // Refusals (too large, a full queue) are typed errors; only a panic fails.
            let _ = sim.nodes[client].endpoint.send(conn, channel(i), &vec![7u8; len]);
        }
    }
    // Then a stream of small messages on every channel, with a blackout in the middle: the
    // congestion controller's model, its silence and probes, and loss detection all run.
    let mut steps = 0usize;
    while steps < 3_000 && sim.step() {
        steps += 1;
        if steps % 8 == 0 {
            for i in 0..config.channels.len() {
                let _ = sim.nodes[client].endpoint.send(conn, channel(i), &steps.to_le_bytes());
            }
        }
        if steps == 1_000 || steps == 2_000 {
            let link = if steps == 1_000 { LinkConfig::dead() } else { link.clone() };
            sim.set_link(client, server, link.clone());
            sim.set_link(server, client, link);
        }
    }
    let now = sim.now;
    sim.nodes[client].endpoint.disconnect(now, conn);
    while steps < 6_000 && sim.step() {
        steps += 1;
    }
    steps
}

/// Runs the property on a thread with a large stack: the strategy's nested types make deep
/// frames in debug builds.
fn check_property(cases: u32) -> u32 {
    std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(move || {
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases,
                max_global_rejects: 1_000_000,
                max_local_rejects: 1_000_000,
                ..ProptestConfig::default()
            });
            let ran = std::cell::Cell::new(0);
            let links = proptest::sample::select(vec![Link::Perfect, Link::Lossy, Link::Crawling]);
            let result = runner.run(&(config(), links), |(config, link)| {
                prop_assume!(config.validate().is_ok());
                scenario(config, link);
                ran.set(ran.get() + 1);
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
            ran.get()
        })
        .expect("a test thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

#[test]
fn a_configuration_that_validates_never_panics() {
    assert_eq!(check_property(200), 200);
}

/// The case the issue found: a `disconnect_timeout` of `Duration::MAX` used to validate and then
/// panic in the connection's deadline arithmetic. It is refused by name now.
#[test]
fn durations_past_the_bound_are_refused_by_name() {
    let config = EndpointConfig { disconnect_timeout: Duration::MAX, ..EndpointConfig::default() };
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("disconnect_timeout"), "{err}");
}

/// The property is not vacuous: a good share of the drawn configurations validate (and are run
/// by the property), and a good share do not (so the edges are drawn).
#[test]
fn the_strategy_draws_both_sides_of_the_bounds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let valid = std::thread::Builder::new()
        .stack_size(64 * 1024 * 1024)
        .spawn(|| {
            let mut runner = TestRunner::deterministic();
            let strategy = config();
            (0..2_000)
                .filter(|_| strategy.new_tree(&mut runner).unwrap().current().validate().is_ok())
                .count()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!((100..1_900).contains(&valid), "{valid} of 2000 drawn configurations validate");
}

/// A case the property finds now and then, kept: an initial round trip of an hour (so the
/// pacing floor of a packet per initial round trip is 0 bytes/s with 64-byte packets) and a
/// link of 2 bytes/s (so the bandwidth estimate times the drain gain is 0 too). The pacer
/// divided by that rate.
#[test]
fn an_hour_long_initial_round_trip_on_a_crawling_link_runs() {
    let config = EndpointConfig {
        channels: vec![Qos::Unreliable, Qos::ReliableSequenced],
        initial_rtt: Duration::from_secs(3600),
        disconnect_timeout: Duration::from_secs(3600),
        keepalive_interval: Duration::from_secs(10),
        max_packet_size: 64,
        fragment_size: 40,
        ..EndpointConfig::default()
    };
    config.validate().unwrap();
    // The stream ran its 3000 steps (then the disconnect ended the run).
    assert!(scenario(config, Link::Crawling) >= 3_000);
}

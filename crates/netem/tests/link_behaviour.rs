//! Behaviour of the link model over many datagrams: what arrives, how often, when and in which
//! order. Everything runs on a virtual clock, so the results do not depend on the machine.

use std::time::{Duration, Instant};

use sturnus_netem::{Fate, GilbertElliott, Link, LinkConfig, Preset};

#[expect(clippy::disallowed_methods, reason = "a base instant for the virtual clock")]
fn t0() -> Instant {
    Instant::now()
}

/// Sends `count` numbered datagrams, one every `spacing`, and drains the link on a virtual clock
/// that jumps to each event. Returns the numbers in delivery order with their delivery times
/// (measured from the first send).
fn run(link: &mut Link<Vec<u8>>, count: u32, spacing: Duration) -> Vec<(u32, Duration)> {
    let start = t0();
    let mut delivered = Vec::new();
    let mut drain = |link: &mut Link<Vec<u8>>, now: Instant| {
        while let Some(p) = link.poll_deliver(now) {
            delivered.push((u32::from_le_bytes(p[..4].try_into().unwrap()), now - start));
        }
    };
    for i in 0..count {
        let now = start + spacing * i;
        // Deliver everything due before this send, at its own due time.
        while let Some(due) = link.poll_timeout().filter(|&due| due <= now) {
            drain(link, due);
        }
        let mut payload = vec![0u8; 100];
        payload[..4].copy_from_slice(&i.to_le_bytes());
        link.send(now, payload);
    }
    while let Some(due) = link.poll_timeout() {
        drain(link, due);
    }
    delivered
}

fn inversions(order: &[u32]) -> usize {
    order.windows(2).filter(|w| w[1] < w[0]).count()
}

#[test]
fn without_loss_or_duplication_every_datagram_arrives_exactly_once() {
    let config = LinkConfig {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        reorder: 0.1,
        reorder_delay: Duration::from_millis(15),
        bandwidth: Some(10_000_000),
        queue_limit: 10_000_000,
        ..LinkConfig::perfect()
    };
    let mut link = Link::new(config, 11).unwrap();
    let delivered = run(&mut link, 10_000, Duration::from_micros(100));
    let mut ids: Vec<u32> = delivered.iter().map(|&(id, _)| id).collect();
    assert!(inversions(&ids) > 0, "jitter and reordering should have reordered something");
    ids.sort_unstable();
    assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
    let stats = link.stats();
    assert_eq!((stats.sent, stats.delivered, stats.lost, stats.duplicated), (10_000, 10_000, 0, 0));
}

#[test]
fn the_same_seed_gives_the_same_outcome() {
    let run_with = |seed| {
        let mut link = Link::new(Preset::Bad.config(), seed).unwrap();
        let out = run(&mut link, 5_000, Duration::from_millis(1));
        (out, link.stats())
    };
    let (a, stats_a) = run_with(1234);
    let (b, stats_b) = run_with(1234);
    let (c, _) = run_with(1235);
    assert!(a == b, "the same seed gave different deliveries");
    assert_eq!(stats_a, stats_b);
    assert!(a != c, "another seed should give another outcome");
}

#[test]
fn uniform_loss_over_100k_datagrams_is_within_one_point_of_the_configured_rate() {
    for (seed, rate) in [(1, 0.01), (2, 0.05), (3, 0.2), (4, 0.5)] {
        let config = LinkConfig { loss: rate, ..LinkConfig::perfect() };
        let mut link = Link::new(config, seed).unwrap();
        let delivered = run(&mut link, 100_000, Duration::from_micros(10)).len();
        let measured = 1.0 - delivered as f64 / 100_000.0;
        assert!((measured - rate).abs() <= 0.01, "configured {rate}, measured {measured}");
        assert_eq!(link.stats().lost, 100_000 - delivered as u64);
    }
}

#[test]
fn burst_loss_matches_its_stationary_rate_and_comes_in_bursts() {
    let ge = GilbertElliott { good_to_bad: 0.01, bad_to_good: 0.1, loss_good: 0.0, loss_bad: 0.8 };
    let config = LinkConfig { burst_loss: Some(ge), ..LinkConfig::perfect() };
    let expected = config.mean_loss();
    let mut link = Link::new(config, 77).unwrap();
    let mut lost = Vec::with_capacity(100_000);
    let now = t0();
    for _ in 0..100_000 {
        lost.push(link.send(now, vec![0; 10]) == Fate::Lost);
    }
    let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
    assert!((rate - expected).abs() <= 0.01, "expected {expected}, measured {rate}");
    // Bursty: a loss is far more likely right after a loss than on average.
    let after_loss: Vec<bool> = lost.windows(2).filter(|w| w[0]).map(|w| w[1]).collect();
    let conditional = after_loss.iter().filter(|&&l| l).count() as f64 / after_loss.len() as f64;
    assert!(conditional > 3.0 * rate, "P(loss | loss) = {conditional}, P(loss) = {rate}");
}

#[test]
fn duplication_rate_is_as_configured_and_copies_are_identical() {
    let config = LinkConfig { duplicate: 0.1, ..LinkConfig::perfect() };
    let mut link = Link::new(config, 5).unwrap();
    let delivered = run(&mut link, 100_000, Duration::from_micros(10));
    let extra = delivered.len() - 100_000;
    assert!((extra as f64 / 100_000.0 - 0.1).abs() <= 0.01, "{extra} duplicates");
    assert_eq!(link.stats().duplicated, extra as u64);
    let mut ids: Vec<u32> = delivered.iter().map(|&(id, _)| id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100_000, "every datagram still arrives");
}

#[test]
fn jitter_reorders_and_no_jitter_keeps_order() {
    let base = LinkConfig { latency: Duration::from_millis(50), ..LinkConfig::perfect() };
    let jittery = LinkConfig { jitter: Duration::from_millis(20), ..base.clone() };

    let mut steady = Link::new(base, 8).unwrap();
    let order: Vec<u32> =
        run(&mut steady, 1_000, Duration::from_millis(1)).iter().map(|x| x.0).collect();
    assert_eq!(inversions(&order), 0);

    let mut shaky = Link::new(jittery, 8).unwrap();
    let delivered = run(&mut shaky, 1_000, Duration::from_millis(1));
    let order: Vec<u32> = delivered.iter().map(|x| x.0).collect();
    assert!(inversions(&order) > 50, "only {} inversions", inversions(&order));
    // Every delay stays within latency ± jitter.
    let stats = shaky.stats();
    let mean = stats.total_delay / 1_000;
    assert!(mean > Duration::from_millis(45) && mean < Duration::from_millis(55), "{mean:?}");
}

#[test]
fn delays_stay_within_latency_plus_minus_jitter() {
    let config = LinkConfig {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        ..LinkConfig::perfect()
    };
    let mut link = Link::new(config, 21).unwrap();
    let start = t0();
    for i in 0..1_000u32 {
        link.send(start, i.to_le_bytes().to_vec());
    }
    let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
    while let Some(due) = link.poll_timeout() {
        while link.poll_deliver(due).is_some() {
            min = min.min(due - start);
            max = max.max(due - start);
        }
    }
    assert!(
        min >= Duration::from_millis(30) && max <= Duration::from_millis(50),
        "{min:?}..{max:?}"
    );
    assert!(
        min < Duration::from_millis(32) && max > Duration::from_millis(48),
        "jitter spans its range"
    );
}

#[test]
fn the_bandwidth_limit_holds() {
    const RATE: u64 = 100_000; // bytes per second
    let config = LinkConfig {
        latency: Duration::from_millis(10),
        bandwidth: Some(RATE),
        queue_limit: 20_000,
        ..LinkConfig::perfect()
    };
    let mut link = Link::new(config, 3).unwrap();
    let start = t0();
    // Offer twice the rate for 10 simulated seconds: 1000-byte datagrams every 5 ms.
    let mut per_second = [0u64; 12];
    let step = Duration::from_millis(5);
    for tick in 0..2_400u32 {
        let now = start + step * tick;
        if tick < 2_000 {
            link.send(now, vec![0; 1_000]);
        }
        while let Some(p) = link.poll_deliver(now) {
            per_second[usize::try_from((now - start).as_secs()).unwrap()] += p.len() as u64;
        }
    }
    // No simulated second carries more than the rate (plus one datagram of rounding).
    for (second, &bytes) in per_second.iter().enumerate() {
        assert!(bytes <= RATE + 1_000, "second {second}: {bytes} bytes");
    }
    // And the link is kept busy: the full seconds run at the rate.
    for &bytes in &per_second[1..10] {
        assert!(bytes >= RATE - 1_000, "an under-used second: {per_second:?}");
    }
    // The excess was dropped at the queue, not lost in flight.
    let stats = link.stats();
    assert!(stats.dropped_queue_full >= 900, "{stats:?}");
    assert_eq!(stats.lost, 0);
}

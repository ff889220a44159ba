//! Zero heap allocations per message in steady state: two endpoints exchange messages on every
//! kind of channel through the testkit's lossless wire ([`Pair`]), under a global allocator that
//! counts what the test's own thread allocates.

use std::time::Duration;

use sturnus_testkit::counting::{Counting, allocations_in, live_bytes};
use sturnus_testkit::{Pair, Side};
use sturnus_transport::{ChannelId, EndpointConfig, Event, Qos};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A connected pair with one channel of every kind, and what `b` received.
struct Wire {
    pair: Pair,
    received: u64,
    expect_len: usize,
}

impl Wire {
    fn new() -> Wire {
        let config = EndpointConfig {
            channels: Qos::ALL.to_vec(),
            send_queue_capacity: 16_384,
            ..EndpointConfig::default()
        };
        let mut wire = Wire { pair: Pair::new(config), received: 0, expect_len: 0 };
        for _ in 0..8 {
            wire.round();
        }
        assert!(wire.pair.a.is_connected(wire.pair.a_conn));
        wire
    }

    /// Moves every datagram both ways, drains events and runs due timers, one millisecond on.
    /// Events are taken the way `Host` takes them (while there are some, never asking an empty
    /// queue, so the endpoint is never told that every lent payload is done with).
    fn round(&mut self) {
        let Self { pair, received, expect_len } = self;
        pair.round(Duration::from_millis(1), |side, event| {
            if let (Side::B, Event::Data { payload, .. }) = (side, event) {
                assert_eq!(payload.len(), *expect_len);
                *received += 1;
            }
        });
    }

    /// Sends `n` messages of `LEN` bytes on `channel`, a batch per round, and delivers them.
    fn exchange<const LEN: usize>(&mut self, channel: ChannelId, n: u64) {
        let payload = [7u8; LEN];
        self.expect_len = LEN;
        let target = self.received + n;
        let mut sent = 0;
        while sent < n {
            for _ in 0..(64 * 32 / LEN as u64).clamp(1, 64).min(n - sent) {
                self.pair.a.send(self.pair.a_conn, channel, &payload).unwrap();
                sent += 1;
            }
            self.round();
        }
        for _ in 0..100 {
            if self.received >= target {
                break;
            }
            self.round();
        }
        // Lossless wire: everything arrives, except state updates, which keep only the newest.
        let qos = Qos::ALL[usize::from(channel.0)];
        if !qos.is_state_update() {
            assert_eq!(self.received, target, "{qos:?}");
        }
        self.received = target;
    }
}

#[test]
fn sending_and_receiving_allocates_nothing_per_message_on_every_kind() {
    let mut wire = Wire::new();
    for (index, qos) in Qos::ALL.iter().enumerate() {
        let channel = ChannelId(u8::try_from(index).unwrap());
        // Warm-up: queues, pools and windows reach their working size.
        wire.exchange::<32>(channel, 20_000);
        let small = allocations_in(|| wire.exchange::<32>(channel, 10_000));
        let large = allocations_in(|| wire.exchange::<32>(channel, 100_000));
        assert!(
            large <= small + 8 && large < 100,
            "{qos:?}: {small} allocations for 10,000 messages, {large} for 100,000"
        );
        if qos.is_fragmented() {
            // Messages of three fragments: reassembly buffers come from the pool.
            wire.exchange::<3000>(channel, 2_000);
            let small = allocations_in(|| wire.exchange::<3000>(channel, 1_000));
            let large = allocations_in(|| wire.exchange::<3000>(channel, 10_000));
            assert!(
                large <= small + 8 && large < 100,
                "{qos:?}: {small} allocations for 1,000 fragmented messages, {large} for 10,000"
            );
        }
    }
}

#[test]
fn memory_stays_bounded_while_messages_keep_arriving() {
    let mut wire = Wire::new();
    let channel = ChannelId(0);
    wire.exchange::<32>(channel, 20_000);
    let before = live_bytes();
    // 6.4 MB of payload through a receiver whose event queue empties between rounds but is
    // never polled empty: the payload buffer must be reused, not kept growing.
    wire.exchange::<32>(channel, 200_000);
    let grown = live_bytes() - before;
    assert!(grown < 256 * 1024, "{grown} bytes more held after 200,000 messages");
}

/// The counter is installed and counts this thread: without it the tests above would pass
/// whatever the endpoints allocate.
#[test]
fn the_counter_sees_this_threads_allocations() {
    let n = allocations_in(|| {
        for _ in 0..100 {
            std::hint::black_box(vec![0u8; 32]);
        }
    });
    assert!(n >= 100, "{n}");
}

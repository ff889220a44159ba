//! Zero heap allocations per message in steady state: two endpoints exchange messages on every
//! kind of channel through an in-memory wire, under a global allocator that counts what the
//! test's own thread allocates.

use sturnus_testkit::counting;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use counting::{allocations_in, live_bytes};
use sturnus_transport::{ChannelId, ConnectionId, Endpoint, EndpointConfig, Event, Qos};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[expect(clippy::disallowed_methods, reason = "a starting instant for the virtual clock")]
fn start() -> Instant {
    Instant::now()
}

/// Two connected endpoints and a lossless in-memory wire, with buffers made up front.
struct Wire {
    now: Instant,
    a: Endpoint,
    b: Endpoint,
    conn: ConnectionId,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    buf: Vec<u8>,
    received: u64,
    expect_len: usize,
}

impl Wire {
    fn new() -> Wire {
        let now = start();
        let config = EndpointConfig {
            channels: Qos::ALL.to_vec(),
            send_queue_capacity: 16_384,
            ..EndpointConfig::default()
        };
        let mut a = Endpoint::with_deterministic_secrets_for_tests(config.clone(), now, 1).unwrap();
        let b = Endpoint::with_deterministic_secrets_for_tests(config, now, 2).unwrap();
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let conn = a.connect(now, b_addr).unwrap();
        let mut wire = Wire {
            now,
            a,
            b,
            conn,
            a_addr,
            b_addr,
            buf: vec![0; 1500],
            received: 0,
            expect_len: 0,
        };
        for _ in 0..8 {
            wire.round();
        }
        assert!(wire.a.is_connected(conn));
        wire
    }

    /// Moves every datagram both ways, drains events, and runs due timers, one millisecond on.
    fn round(&mut self) {
        self.now += Duration::from_millis(1);
        while let Some(t) = self.a.poll_transmit(self.now, &mut self.buf) {
            self.b.handle_datagram(self.now, self.a_addr, &self.buf[..t.len]);
        }
        while let Some(t) = self.b.poll_transmit(self.now, &mut self.buf) {
            self.a.handle_datagram(self.now, self.b_addr, &self.buf[..t.len]);
        }
        // As `Host` does: take events while there are some, never asking an empty queue (so
        // the endpoint is never told that every lent payload is done with).
        while self.b.has_events() {
            if let Some(Event::Data { payload, .. }) = self.b.poll_event() {
                assert_eq!(payload.len(), self.expect_len);
                self.received += 1;
            }
        }
        while self.a.poll_event().is_some() {}
        for endpoint in [&mut self.a, &mut self.b] {
            if endpoint.poll_timeout().is_some_and(|at| at <= self.now) {
                endpoint.handle_timeout(self.now);
            }
        }
    }

    /// Sends `n` messages of `LEN` bytes on `channel`, a batch per round, and delivers them.
    fn exchange<const LEN: usize>(&mut self, channel: ChannelId, n: u64) {
        let payload = [7u8; LEN];
        self.expect_len = LEN;
        let target = self.received + n;
        let mut sent = 0;
        while sent < n {
            for _ in 0..(64 * 32 / LEN as u64).clamp(1, 64).min(n - sent) {
                self.a.send(self.conn, channel, &payload).unwrap();
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

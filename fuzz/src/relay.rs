//! The relay's input: datagrams from bound and unknown addresses (headers of every type,
//! BINDs of real allocations with bytes flipped, anything else), with time passing between
//! them so rates refill, bindings time out and are bound again. A reply is never longer than
//! the datagram it answers, and the counters account for every datagram.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_relay::wire::{self, BIND_LEN, Header, Kind};
use sturnus_relay::{Allocation, AllocationSpec, Relay, RelayConfig, RelayKey};

const UNIX: u64 = 1_800_000_000;
const SESSION: u32 = 7;
/// The allocations bound at the start (session 7, slots 0 to 3), and a fifth never bound.
const SLOTS: u16 = 5;

/// The sender of a record: its low three bits (0 to 3 are bound at the start).
fn address(from: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, from % 8], 4000))
}

/// The relay fed by the fuzzer.
#[derive(Debug)]
pub struct RelayHarness {
    relay: Relay,
    start: Instant,
    now: Instant,
    allocations: Vec<Allocation>,
    counter: u64,
    replies: u64,
    forwarded: u64,
}

impl Default for RelayHarness {
    fn default() -> Self {
        Self::new()
    }
}

fn allocations() -> Vec<Allocation> {
    let key = RelayKey::from_bytes([3; 32]);
    let relay: SocketAddr = "192.0.2.1:7000".parse().unwrap();
    (0..SLOTS)
        .map(|slot| {
            let spec = AllocationSpec {
                session: SESSION,
                slot,
                // The fifth, never bound at the start, expires after a second.
                expires_unix: if slot == 4 { UNIX + 1 } else { UNIX + 3_600 },
                packets_per_sec: if slot == 2 { 50 } else { 0 },
                bytes_per_sec: if slot == 3 { 5_000 } else { 0 },
            };
            Allocation::mint(&spec, &key, relay, UNIX).unwrap()
        })
        .collect()
}

impl RelayHarness {
    /// A relay holding four bindings of one session.
    #[expect(clippy::disallowed_methods, reason = "any instant will do as the origin")]
    pub fn new() -> Self {
        let config = RelayConfig {
            max_allocations: 16,
            idle_timeout: Duration::from_secs(2),
            ..RelayConfig::default()
        };
        let relay = Relay::new(config, RelayKey::from_bytes([3; 32])).unwrap();
        let now = Instant::now();
        let mut harness = Self {
            relay,
            start: now,
            now,
            allocations: allocations(),
            counter: 1,
            replies: 0,
            forwarded: 0,
        };
        for slot in 0..4u8 {
            let mut bind = harness.bind(usize::from(slot));
            assert!(harness.relay.handle(now, UNIX, address(slot), &mut bind).is_some());
        }
        harness
    }

    /// A BIND of allocation `index` with the current counter.
    fn bind(&self, index: usize) -> [u8; BIND_LEN] {
        let a = &self.allocations[index % self.allocations.len()];
        let mut bind = [0; BIND_LEN];
        wire::write_bind(&mut bind, a.session, a.slot, &a.sealed, &a.bind_key, self.counter);
        bind
    }

    /// Feeds `data` as records (see `records`): header `[from, op]`, then a payload. `from`
    /// picks the sender (low bits) and a header's slot (high bits); `op` what the payload
    /// becomes and how much time passes first.
    pub fn feed(&mut self, data: &[u8]) {
        for ([from, op], payload) in crate::records::<2>(data) {
            // Mostly small steps; now and then past the idle timeout.
            self.now += match op {
                0xff => Duration::from_secs(3),
                _ => Duration::from_millis(u64::from(op >> 6) * 20),
            };
            // The wall clock moves with the monotonic one.
            let unix = UNIX + (self.now - self.start).as_secs();
            let mut datagram = match op & 7 {
                // A BIND of a real allocation, its counter moving on or not, maybe altered.
                0 | 1 => {
                    self.counter += u64::from(op & 1);
                    let mut bind = self.bind(usize::from(from));
                    if let (Some(&at), Some(&bits)) = (payload.first(), payload.get(1)) {
                        bind[usize::from(at) % BIND_LEN] ^= bits;
                    }
                    bind.to_vec()
                }
                // A header of any type before the payload.
                2..=4 => {
                    let kind = Kind::from_nibble(op >> 5).unwrap_or(Kind::Data);
                    let slot = u16::from((from >> 3) % 6);
                    let session = if op & 4 == 0 { SESSION } else { u32::from(from) };
                    let mut bytes = Header::new(kind, slot, session).to_bytes().to_vec();
                    bytes.extend_from_slice(payload);
                    bytes
                }
                _ => payload.to_vec(),
            };
            let len = datagram.len();
            if let Some(out) = self.relay.handle(self.now, unix, address(from), &mut datagram) {
                assert!(out.len <= len, "a reply longer than its request");
                if out.to == address(from) {
                    self.replies += 1;
                } else {
                    self.forwarded += 1;
                }
            }
            self.relay.handle_timeout(self.now, unix);
            while self.relay.poll_transmit().is_some() {}
        }
        let stats = self.relay.stats();
        assert!(stats.forwarded <= stats.received);
        assert!(stats.allocations <= 16 && stats.bindings <= stats.allocations);
    }

    /// A starting corpus: each BIND, a DATA each way, a PING and a CLOSE.
    pub fn seeds() -> Vec<Vec<u8>> {
        let record = |from: u8, op: u8, payload: &[u8]| crate::record([from, op], payload);
        vec![
            record(1, 0, &[]),
            record(1, 2, b"to the host"),
            record(8, 2, b"host to slot 1"),
            (0..60).map(|_| record(2, 2, b"fast")).collect::<Vec<_>>().concat(),
            [record(0, 2, b"to slot 0?"), record(0, 3, b"x")].concat(),
            record(2, 0x62, &[]),
            record(3, 0xa2, &[]),
            record(4, 1, &[3, 0x40]),
            record(5, 7, &[0xb0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3]),
        ]
    }

    /// What the inputs reached.
    pub fn report(&self) -> String {
        format!(
            "forwarded {}, replies {}, relay {:?}",
            self.forwarded,
            self.replies,
            self.relay.stats()
        )
    }
}

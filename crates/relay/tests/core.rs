//! The sans-IO relay core: binding, forwarding and its rules, tokens that must be refused,
//! rate limits, endings and PEER_GONE, 10,000 allocations on one port, random input.
#![expect(
    clippy::cast_possible_truncation,
    reason = "random test input: keeping the low bits of a random word is the point"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sturnus_relay::wire::{self, BIND_LEN, ErrorCode, HEADER_LEN, Header, Kind};
use sturnus_relay::{Allocation, AllocationSpec, Relay, RelayConfig, RelayKey};

const UNIX: u64 = 1_800_000_000;
const SESSION: u32 = 0x0102_0304;

#[expect(clippy::disallowed_methods, reason = "one base instant; time then advances virtually")]
fn base() -> Instant {
    Instant::now()
}

fn relay_addr() -> SocketAddr {
    "192.0.2.1:7000".parse().unwrap()
}

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 40_000))
}

fn spec(session: u32, slot: u16) -> AllocationSpec {
    AllocationSpec { session, slot, expires_unix: UNIX + 60, packets_per_sec: 0, bytes_per_sec: 0 }
}

fn mint(key: &RelayKey, spec: AllocationSpec) -> Allocation {
    Allocation::mint(&spec, key, relay_addr(), UNIX).unwrap()
}

fn bind_bytes(allocation: &Allocation, counter: u64) -> [u8; BIND_LEN] {
    let mut bind = [0; BIND_LEN];
    wire::write_bind(
        &mut bind,
        allocation.session,
        allocation.slot,
        &allocation.sealed,
        &allocation.bind_key,
        counter,
    );
    bind
}

struct Bed {
    relay: Relay,
    key: RelayKey,
    now: Instant,
    unix: u64,
}

impl Bed {
    fn new(config: RelayConfig) -> Self {
        let key = RelayKey::generate().unwrap();
        Self { relay: Relay::new(config, key.clone()).unwrap(), key, now: base(), unix: UNIX }
    }

    /// Sends `datagram` from `from`; the reply or forward, as (destination, bytes).
    fn send(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = datagram.to_vec();
        let out = self.relay.handle(self.now, self.unix, from, &mut buf)?;
        Some((out.to, buf[..out.len].to_vec()))
    }

    /// Binds and returns the reply's header.
    fn bind(&mut self, from: SocketAddr, allocation: &Allocation, counter: u64) -> Option<Header> {
        let (to, reply) = self.send(from, &bind_bytes(allocation, counter))?;
        assert_eq!(to, from, "replies go to the sender");
        assert_eq!(reply.len(), HEADER_LEN);
        Header::parse(&reply)
    }

    fn bound(&mut self, from: SocketAddr, allocation: &Allocation, counter: u64) {
        let header = self.bind(from, allocation, counter).expect("an answer");
        assert_eq!(header.kind, Kind::Bound, "{header:?}");
    }

    fn data(
        &mut self,
        from: SocketAddr,
        session: u32,
        to_slot: u16,
        payload: &[u8],
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let mut datagram = Header::new(Kind::Data, to_slot, session).to_bytes().to_vec();
        datagram.extend_from_slice(payload);
        self.send(from, &datagram)
    }

    fn control(&mut self, from: SocketAddr, kind: Kind, slot: u16) -> Option<Header> {
        let (_, reply) = self.send(from, &Header::new(kind, slot, SESSION).to_bytes())?;
        Header::parse(&reply)
    }
}

fn error_code(header: Option<Header>) -> Option<ErrorCode> {
    let header = header?;
    assert_eq!(header.kind, Kind::Error);
    ErrorCode::from_byte(header.flags)
}

#[test]
fn forwards_between_host_and_clients_with_the_sender_slot() {
    let mut bed = Bed::new(RelayConfig::default());
    let host = mint(&bed.key, spec(SESSION, 0));
    let one = mint(&bed.key, spec(SESSION, 1));
    let two = mint(&bed.key, spec(SESSION, 2));
    bed.bound(addr(100), &host, 1);
    bed.bound(addr(1), &one, 1);
    bed.bound(addr(2), &two, 1);
    assert_eq!(bed.relay.bound_address(SESSION, 2), Some(addr(2)));

    // A client reaches the host; the host sees the client's slot.
    let (to, out) = bed.data(addr(1), SESSION, 0, b"hello host").unwrap();
    assert_eq!(to, addr(100));
    let header = Header::parse(&out).unwrap();
    assert_eq!((header.kind, header.slot, header.session), (Kind::Data, 1, SESSION));
    assert_eq!(&out[HEADER_LEN..], b"hello host");

    // The host reaches a client, which sees slot 0.
    let (to, out) = bed.data(addr(100), SESSION, 2, b"hi two").unwrap();
    assert_eq!((to, Header::parse(&out).unwrap().slot), (addr(2), 0));
    assert_eq!(&out[HEADER_LEN..], b"hi two");

    // Forbidden: a client to another client, the host to itself.
    assert!(bed.data(addr(1), SESSION, 2, b"psst").is_none());
    assert!(bed.data(addr(100), SESSION, 0, b"me").is_none());
    assert_eq!(bed.relay.stats().dropped_forbidden_slot, 2);
    // Another session's id, from a bound address.
    assert!(bed.data(addr(1), SESSION + 1, 0, b"x").is_none());
    assert_eq!(bed.relay.stats().dropped_wrong_session, 1);
    // To a slot nobody holds.
    assert!(bed.data(addr(100), SESSION, 3, b"x").is_none());
    assert_eq!(bed.relay.stats().dropped_no_peer, 1);
    // A stranger is told it is not bound, in a reply no longer than its datagram.
    let (to, reply) = bed.data(addr(9), SESSION, 0, b"").unwrap();
    assert_eq!((to, reply.len()), (addr(9), HEADER_LEN));
    assert_eq!(error_code(Header::parse(&reply)), Some(ErrorCode::NotBound));
    // PING → PONG; relay-only types are dropped.
    assert_eq!(bed.control(addr(1), Kind::Ping, 1).unwrap().kind, Kind::Pong);
    assert!(bed.control(addr(1), Kind::Bound, 1).is_none());
    assert!(bed.send(addr(1), &[0xB0, 0, 0]).is_none());
    let stats = bed.relay.stats();
    assert_eq!((stats.forwarded, stats.dropped_unexpected, stats.dropped_bad_header), (2, 1, 1));
    assert_eq!((stats.binds, stats.bindings, stats.allocations), (3, 3, 3));
}

#[test]
fn forged_altered_and_mismatched_tokens_are_refused() {
    let mut bed = Bed::new(RelayConfig::default());
    // Sealed under another key.
    let stranger = RelayKey::generate().unwrap();
    let forged = mint(&stranger, spec(SESSION, 0));
    assert_eq!(error_code(bed.bind(addr(1), &forged, 1)), Some(ErrorCode::BadToken));
    // Altered in any byte of the sealed part.
    let good = mint(&bed.key, spec(SESSION, 0));
    let mut altered = good.clone();
    altered.sealed[40] ^= 1;
    assert_eq!(error_code(bed.bind(addr(1), &altered, 1)), Some(ErrorCode::BadToken));
    // A header that claims another session or slot than the token.
    let mut claims = good.clone();
    claims.slot = 5;
    assert_eq!(error_code(bed.bind(addr(1), &claims, 1)), Some(ErrorCode::BadToken));
    // The right token with a tag made by someone without the bind key.
    let mut thief = good.clone();
    thief.bind_key = [7; 32];
    assert_eq!(bed.bind(addr(1), &thief, 1), None);
    // Truncated.
    assert!(bed.send(addr(1), &bind_bytes(&good, 1)[..BIND_LEN - 1]).is_none());
    let stats = bed.relay.stats();
    assert_eq!(stats.dropped_bad_token, 3);
    assert_eq!((stats.dropped_bad_bind_tag, stats.dropped_malformed_bind), (1, 1));
    assert_eq!((stats.binds, stats.bindings), (0, 0));
    bed.bound(addr(1), &good, 1);
}

#[test]
fn an_expired_token_cannot_be_bound() {
    let mut bed = Bed::new(RelayConfig::default());
    let allocation = mint(&bed.key, spec(SESSION, 0));
    bed.unix = UNIX + 60;
    assert_eq!(error_code(bed.bind(addr(1), &allocation, 1)), Some(ErrorCode::Expired));
    assert_eq!(bed.relay.stats().dropped_expired, 1);
    bed.unix = UNIX + 59;
    bed.bound(addr(1), &allocation, 1);
}

#[test]
fn a_captured_bind_cannot_move_the_binding() {
    let mut bed = Bed::new(RelayConfig::default());
    let host = mint(&bed.key, spec(SESSION, 0));
    let client = mint(&bed.key, spec(SESSION, 1));
    bed.bound(addr(100), &host, 1);
    bed.bound(addr(1), &client, 10);
    // The same BIND again from the bound address (a duplicate) is answered again.
    bed.bound(addr(1), &client, 10);
    // The captured BIND from the attacker's address: refused, the binding stays.
    assert_eq!(error_code(bed.bind(addr(66), &client, 10)), Some(ErrorCode::Replayed));
    assert_eq!(error_code(bed.bind(addr(66), &client, 9)), Some(ErrorCode::Replayed));
    assert_eq!(bed.relay.bound_address(SESSION, 1), Some(addr(1)));
    // The holder moves (a NAT rebinding) with a larger counter: the binding follows.
    bed.bound(addr(2), &client, 11);
    assert_eq!(bed.relay.bound_address(SESSION, 1), Some(addr(2)));
    assert!(bed.data(addr(1), SESSION, 0, b"old address").is_some_and(|(to, _)| to == addr(1)));
    assert_eq!(bed.data(addr(2), SESSION, 0, b"new").unwrap().0, addr(100));
    // After the binding ends, its counter is remembered: the last BIND replayed is refused.
    assert!(bed.control(addr(2), Kind::Close, 1).is_none());
    assert_eq!(bed.relay.bound_address(SESSION, 1), None);
    assert_eq!(error_code(bed.bind(addr(66), &client, 11)), Some(ErrorCode::Replayed));
    bed.bound(addr(3), &client, 12);
    // An address bound to one allocation cannot bind another.
    let other = mint(&bed.key, spec(SESSION, 2));
    assert_eq!(error_code(bed.bind(addr(3), &other, 1)), Some(ErrorCode::AddressTaken));
    let stats = bed.relay.stats();
    assert_eq!((stats.dropped_replayed, stats.rebinds, stats.bind_repeats), (3, 1, 1));
    assert_eq!(stats.dropped_address_taken, 1);
}

#[test]
fn rates_are_held_to_the_token() {
    let mut bed = Bed::new(RelayConfig::default());
    let host = mint(&bed.key, spec(SESSION, 0));
    let slow = AllocationSpec { packets_per_sec: 10, bytes_per_sec: 0, ..spec(SESSION, 1) };
    let thin = AllocationSpec { packets_per_sec: 0, bytes_per_sec: 1_000, ..spec(SESSION, 2) };
    let (slow, thin) = (mint(&bed.key, slow), mint(&bed.key, thin));
    bed.bound(addr(100), &host, 1);
    bed.bound(addr(1), &slow, 1);
    bed.bound(addr(2), &thin, 1);
    // A one-second burst of 10 packets, then nothing until the bucket refills.
    let passed = (0..50).filter(|_| bed.data(addr(1), SESSION, 0, b"x").is_some()).count();
    assert_eq!(passed, 10);
    bed.now += Duration::from_millis(100);
    let passed = (0..50).filter(|_| bed.data(addr(1), SESSION, 0, b"x").is_some()).count();
    assert_eq!(passed, 1);
    // 1,000 bytes per second: nine 100-byte datagrams (108 bytes each with the header).
    let payload = [0; 100];
    let passed = (0..50).filter(|_| bed.data(addr(2), SESSION, 0, &payload).is_some()).count();
    assert_eq!(passed, 9);
    // Whole seconds later, a full burst again (never more).
    bed.now += Duration::from_secs(5);
    let passed = (0..50).filter(|_| bed.data(addr(1), SESSION, 0, b"x").is_some()).count();
    assert_eq!(passed, 10);
    // The host's own token is unlimited.
    assert!((0..1_000).all(|_| bed.data(addr(100), SESSION, 1, b"x").is_some()));
    assert_eq!(bed.relay.stats().dropped_rate_limited, 40 + 49 + 41 + 40);
}

#[test]
fn a_leaving_host_is_announced_to_its_clients() {
    let mut bed = Bed::new(RelayConfig::default());
    let host = mint(&bed.key, spec(SESSION, 0));
    let one = mint(&bed.key, spec(SESSION, 1));
    let two = mint(&bed.key, spec(SESSION, 2));
    let elsewhere = mint(&bed.key, spec(SESSION + 1, 1));
    bed.bound(addr(100), &host, 1);
    bed.bound(addr(1), &one, 1);
    bed.bound(addr(2), &two, 1);
    bed.bound(addr(3), &elsewhere, 1);
    // A client leaves: the host hears which.
    assert!(bed.control(addr(2), Kind::Close, 2).is_none());
    let (to, notice) = bed.relay.poll_transmit().unwrap();
    let header = Header::parse(&notice).unwrap();
    assert_eq!((to, header.kind, header.slot), (addr(100), Kind::PeerGone, 2));
    assert!(bed.relay.poll_transmit().is_none());
    // The host leaves: every remaining client of its session hears it, no one else.
    assert!(bed.control(addr(100), Kind::Close, 0).is_none());
    let (to, notice) = bed.relay.poll_transmit().unwrap();
    let header = Header::parse(&notice).unwrap();
    assert_eq!(
        (to, header.kind, header.slot, header.session),
        (addr(1), Kind::PeerGone, 0, SESSION)
    );
    assert!(bed.relay.poll_transmit().is_none());
    assert!(bed.data(addr(1), SESSION, 0, b"anyone?").is_none());
    assert_eq!(bed.relay.stats().closed, 2);
}

#[test]
fn silent_bindings_time_out_and_expired_ones_are_forgotten() {
    let mut bed = Bed::new(RelayConfig::default());
    let host = mint(&bed.key, spec(SESSION, 0));
    let one = mint(&bed.key, spec(SESSION, 1));
    bed.bound(addr(100), &host, 1);
    bed.bound(addr(1), &one, 1);
    // The client keeps talking, the host falls silent.
    for _ in 0..11 {
        bed.now += Duration::from_secs(1);
        assert_eq!(bed.control(addr(1), Kind::Ping, 1).unwrap().kind, Kind::Pong);
        bed.relay.handle_timeout(bed.now, bed.unix);
    }
    assert_eq!(bed.relay.bound_address(SESSION, 0), None);
    assert_eq!(bed.relay.bound_address(SESSION, 1), Some(addr(1)));
    let (to, notice) = bed.relay.poll_transmit().unwrap();
    assert_eq!((to, Header::parse(&notice).unwrap().kind), (addr(1), Kind::PeerGone));
    let stats = bed.relay.stats();
    assert_eq!((stats.timed_out, stats.bindings, stats.allocations), (1, 1, 2));
    // The host's token expires: its allocation is forgotten; the client's binding outlives
    // its token while it talks.
    bed.unix = UNIX + 60;
    bed.now += Duration::from_secs(1);
    bed.relay.handle_timeout(bed.now, bed.unix);
    let stats = bed.relay.stats();
    assert_eq!((stats.bindings, stats.allocations), (1, 1));
}

#[test]
fn ten_thousand_allocations_on_one_port() {
    let mut bed = Bed::new(RelayConfig::default());
    let mut allocations = Vec::new();
    for session in 0..1_000u32 {
        for slot in 0..10u16 {
            allocations.push(mint(&bed.key, spec(session, slot)));
        }
    }
    for (n, allocation) in (0u32..).zip(&allocations) {
        bed.bound(addr(n), allocation, 1);
    }
    let stats = bed.relay.stats();
    assert_eq!((stats.bindings, stats.allocations), (10_000, 10_000));
    // Every client reaches its own host, and nobody else's.
    for (n, allocation) in (0u32..).zip(&allocations) {
        if allocation.slot == 0 {
            continue;
        }
        let (to, out) = bed.data(addr(n), allocation.session, 0, &n.to_le_bytes()).unwrap();
        assert_eq!(to, addr(n - u32::from(allocation.slot)));
        assert_eq!(Header::parse(&out).unwrap().slot, allocation.slot);
    }
    assert_eq!(bed.relay.stats().forwarded, 9_000);
}

#[test]
fn the_allocation_limit_is_kept() {
    let config = RelayConfig { max_allocations: 3, ..RelayConfig::default() };
    let mut bed = Bed::new(config);
    for slot in 0..3 {
        let allocation = mint(&bed.key, spec(SESSION, slot));
        bed.bound(addr(u32::from(slot)), &allocation, 1);
    }
    let fourth = mint(&bed.key, spec(SESSION, 3));
    assert_eq!(error_code(bed.bind(addr(3), &fourth, 1)), Some(ErrorCode::Full));
    assert_eq!(bed.relay.stats().dropped_full, 1);
    assert!(
        Relay::new(RelayConfig { max_allocations: 0, ..RelayConfig::default() }, bed.key.clone())
            .is_err()
    );
    assert!(
        Relay::new(RelayConfig { max_datagram: 100, ..RelayConfig::default() }, bed.key.clone())
            .is_err()
    );
}

/// A small xorshift: the inputs are part of the test, not a secret.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_input_never_panics_and_is_counted() {
    let config = RelayConfig { max_allocations: 64, ..RelayConfig::default() };
    let mut bed = Bed::new(config);
    let allocations: Vec<Allocation> =
        (0..8).map(|slot| mint(&bed.key, spec(SESSION, slot))).collect();
    for (n, allocation) in (0u32..).zip(&allocations) {
        bed.bound(addr(n), allocation, 1);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 2_000];
    for round in 0..100_000u64 {
        let len = rng.below(if round % 4 == 0 { 200 } else { 1_600 }) as usize;
        for byte in &mut buf[..len] {
            *byte = rng.next() as u8;
        }
        // Often a plausible header, sometimes a real BIND with a flipped byte.
        match rng.below(4) {
            0 if len >= HEADER_LEN => {
                let kind = Kind::from_nibble(rng.below(8) as u8).unwrap();
                let slot = rng.below(10) as u16;
                let session = if rng.below(2) == 0 { SESSION } else { rng.next() as u32 };
                Header::new(kind, slot, session).write(&mut buf);
            }
            1 => {
                let allocation = &allocations[rng.below(8) as usize];
                let bind = bind_bytes(allocation, rng.next());
                buf[..BIND_LEN].copy_from_slice(&bind);
                buf[rng.below(BIND_LEN as u64) as usize] ^= 1 << rng.below(8);
                let len = BIND_LEN;
                let from = addr(rng.below(16) as u32);
                let _ = bed.relay.handle(bed.now, bed.unix, from, &mut buf[..len]);
                continue;
            }
            _ => {}
        }
        let from = addr(rng.below(16) as u32);
        if let Some(out) = bed.relay.handle(bed.now, bed.unix, from, &mut buf[..len]) {
            assert!(out.len <= len, "a reply is never longer than the request");
        }
        if round % 1_000 == 0 {
            bed.now += Duration::from_millis(300);
            bed.relay.handle_timeout(bed.now, bed.unix);
            while bed.relay.poll_transmit().is_some() {}
        }
    }
    let stats = bed.relay.stats();
    let dropped = stats.dropped_oversized
        + stats.dropped_bad_header
        + stats.dropped_unknown_sender
        + stats.dropped_malformed_bind
        + stats.dropped_bad_token
        + stats.dropped_bad_bind_tag
        + stats.dropped_expired
        + stats.dropped_replayed
        + stats.dropped_full
        + stats.dropped_address_taken
        + stats.dropped_wrong_session
        + stats.dropped_forbidden_slot
        + stats.dropped_no_peer
        + stats.dropped_rate_limited
        + stats.dropped_unexpected;
    let accepted = stats.binds + stats.rebinds + stats.bind_repeats + stats.closed + stats.pongs;
    assert_eq!(stats.received, 100_008);
    assert_eq!(stats.received, stats.forwarded + accepted + dropped, "{stats:?}");
    assert!(dropped > 50_000 && stats.forwarded > 0 && stats.pongs > 0, "{stats:?}");
}

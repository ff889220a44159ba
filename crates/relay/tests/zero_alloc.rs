//! Forwarding allocates nothing: once the bindings exist, DATA both ways, PINGs and repeated
//! BINDs run without a single allocation.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sturnus_relay::wire::{self, BIND_LEN, Header, Kind};
use sturnus_relay::{Allocation, AllocationSpec, Relay, RelayConfig, RelayKey};
use sturnus_testkit::counting::{Counting, allocations_in};

#[global_allocator]
static GLOBAL: Counting = Counting;

const UNIX: u64 = 1_800_000_000;

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + n), 40_000))
}

#[test]
fn forwarding_allocates_nothing() {
    let key = RelayKey::generate().unwrap();
    let mut relay = Relay::new(RelayConfig::default(), key.clone()).unwrap();
    #[expect(clippy::disallowed_methods, reason = "the virtual clock's origin")]
    let mut now = Instant::now();
    let relay_addr: SocketAddr = "192.0.2.1:7000".parse().unwrap();
    let mut binds = Vec::new();
    for slot in 0..32u16 {
        let spec = AllocationSpec {
            session: 9,
            slot,
            expires_unix: UNIX + 600,
            packets_per_sec: 1_000_000,
            bytes_per_sec: 1_000_000_000,
        };
        let allocation = Allocation::mint(&spec, &key, relay_addr, UNIX).unwrap();
        let mut bind = [0; BIND_LEN];
        wire::write_bind(&mut bind, 9, slot, &allocation.sealed, &allocation.bind_key, 1);
        assert!(relay.handle(now, UNIX, addr(u32::from(slot)), &mut bind.clone()).is_some());
        binds.push(bind);
    }
    let mut datagram = [0u8; 1_200];
    let mut forwarded = 0;
    let mut round = |now: Instant, relay: &mut Relay| {
        for slot in 1..32u16 {
            Header::new(Kind::Data, 0, 9).write(&mut datagram);
            forwarded += usize::from(
                relay.handle(now, UNIX, addr(u32::from(slot)), &mut datagram).is_some(),
            );
            Header::new(Kind::Data, slot, 9).write(&mut datagram);
            forwarded += usize::from(relay.handle(now, UNIX, addr(0), &mut datagram).is_some());
            let mut ping = Header::new(Kind::Ping, slot, 9).to_bytes();
            assert!(relay.handle(now, UNIX, addr(u32::from(slot)), &mut ping).is_some());
            let mut bind = binds[usize::from(slot)];
            assert!(relay.handle(now, UNIX, addr(u32::from(slot)), &mut bind).is_some());
        }
        relay.handle_timeout(now, UNIX);
    };
    round(now, &mut relay);
    let allocations = allocations_in(|| {
        for _ in 0..1_000 {
            now += Duration::from_millis(1);
            round(now, &mut relay);
        }
    });
    assert_eq!(allocations, 0);
    assert_eq!(forwarded, 1_001 * 62);
}

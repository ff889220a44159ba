//! LAN discovery over real UDP on loopback (unicast to the advertiser's address: this machine's
//! network namespaces and broadcast are not exercised here), and the protocol's filters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use sturnus_discovery::{
    Advertisement, DiscoveryError, LanAdvertiser, LanSearchConfig, MAX_INFO, REQUEST_LEN,
    Responder, Search, lan_search,
};

const GAME: u64 = 0x5354_5552_4e55_5301;

/// An advertiser on loopback, answering on its own thread until the returned flag is set.
#[expect(clippy::disallowed_methods, reason = "the advertiser's thread is a driver: it waits")]
fn advertise(version: u32, port: u16, info: &[u8]) -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let ad = Advertisement::new(GAME, version, port, info.to_vec()).unwrap();
    let mut host = LanAdvertiser::bind_addr("127.0.0.1:0".parse().unwrap(), ad).unwrap();
    let addr = host.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            host.poll().unwrap();
            thread::sleep(Duration::from_millis(1));
        }
    });
    (addr, stop)
}

fn search(version: u32, targets: Vec<std::net::SocketAddr>) -> Vec<sturnus_discovery::FoundHost> {
    let mut config = LanSearchConfig::new(GAME, version);
    config.targets = targets;
    config.timeout = Duration::from_millis(300);
    lan_search(&config).unwrap()
}

#[test]
fn a_search_finds_the_hosts_of_its_game_and_version_only() {
    let (a, stop_a) = advertise(3, 7777, b"Alice");
    let (b, stop_b) = advertise(3, 7778, b"Bob");
    let (old, stop_old) = advertise(2, 7779, b"an older build");
    let mut found = search(3, vec![a, b, old]);
    found.sort_by(|x, y| x.info.cmp(&y.info));
    // Both hosts of version 3, within the 300 ms search, each at the advertised game port.
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].info, b"Alice");
    assert_eq!(found[1].info, b"Bob");
    assert_eq!((found[0].addr.port(), found[1].addr.port()), (7777, 7778));
    assert!(found.iter().all(|h| h.addr.ip().is_loopback()));
    // Another game id finds nothing.
    let mut other = LanSearchConfig::new(GAME + 1, 3);
    other.targets = vec![a, b];
    other.timeout = Duration::from_millis(200);
    assert!(lan_search(&other).unwrap().is_empty());
    for stop in [stop_a, stop_b, stop_old] {
        stop.store(true, Ordering::Relaxed);
    }
}

#[test]
#[expect(clippy::disallowed_methods, reason = "the search's start; the protocol reads no clock")]
fn answers_are_never_longer_than_requests_and_junk_is_counted() {
    let ad = Advertisement::new(GAME, 1, 9000, vec![7; MAX_INFO]).unwrap();
    let mut host = Responder::new(ad);
    let start = std::time::Instant::now();
    let search = Search::new(GAME, 1, start);
    let request = search.request();
    assert_eq!(request.len(), REQUEST_LEN);
    let answer = host.handle(&request).unwrap().to_vec();
    assert!(answer.len() <= REQUEST_LEN, "{} > {REQUEST_LEN}", answer.len());
    let from = "10.0.0.9:47777".parse().unwrap();
    assert_eq!(search.handle_answer(start, from, &answer).unwrap().info, vec![7; MAX_INFO]);
    // A truncated or padded request, or another magic, is not answered (no reflection of
    // short datagrams), and counted.
    assert!(host.handle(&request[..REQUEST_LEN - 1]).is_none());
    let mut long = request.to_vec();
    long.push(0);
    assert!(host.handle(&long).is_none());
    let mut bad = request;
    bad[0] ^= 1;
    assert!(host.handle(&bad).is_none());
    assert_eq!(host.stats().malformed, 3);
    assert_eq!(host.stats().answered, 1);
    // Another search's answer, or a forged one, is not taken.
    assert!(Search::new(GAME, 1, start).handle_answer(start, from, &answer).is_none());
    let mut forged = answer.clone();
    forged.truncate(forged.len() - 1);
    assert!(search.handle_answer(start, from, &forged).is_none());
    // Info too long for an answer is refused.
    assert_eq!(
        Advertisement::new(GAME, 1, 9000, vec![0; MAX_INFO + 1]),
        Err(DiscoveryError::InfoTooLong(MAX_INFO + 1))
    );
}

//! LAN discovery across two network namespaces joined by a bridge: the advertiser runs in
//! namespace A, the search in namespace B, and the bridge in a third namespace, so the requests
//! really are IPv4 broadcasts and IPv6 link-local multicasts crossing a link (veth pairs), not
//! loopback.
//!
//! Each namespace also has a decoy interface that is up, comes first and carries the default
//! routes (IPv4 and IPv6) into nothing: a search that sends only where the routing table
//! points, or an advertiser that joins the multicast group only on the system's default
//! interface, finds nothing.
//!
//! Creating namespaces needs root and iproute2's `ip`. Without them the tests say so on
//! standard error and run a loopback variant (unicast to the advertiser's address) instead —
//! unless `STURNUS_REQUIRE_NETNS=1` (CI sets it), when they fail.
//!
//! Code runs inside a namespace on a thread of its own that enters it with `setns(2)`; sockets
//! keep the namespace they were opened in, whichever thread uses them later.
#![allow(
    clippy::print_stderr,
    reason = "the tests say on standard error whether they fell back, and each latency found"
)]

use std::fs::File;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use sturnus_discovery::{
    Advertisement, DEFAULT_PORT, FoundHost, LanAdvertiser, LanSearchConfig, MAX_INFO, MULTICAST_V6,
    REQUEST_LEN, ResponderStats, Search, lan_search,
};

const GAME: u64 = 0x5354_5552_4e55_5302;
const VERSION: u32 = 3;
const GAME_PORT: u16 = 7777;
/// The discovery window the issue asks for: a host is found within it.
const WINDOW: Duration = Duration::from_secs(1);

const A_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const SUBNET_BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 255);
const A_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa);

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("`ip` could not be run: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Three namespaces (A, B, and the bridge's), deleted when dropped — their interfaces go with
/// them — even when a test fails.
struct Lan {
    a: String,
    b: String,
    switch: String,
    /// The index of B's interface on the bridge (the scope of the link-local addresses B sees).
    b_index: u32,
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.switch] {
            // Names that were never created fail here harmlessly.
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

impl Lan {
    fn new() -> Result<Self, String> {
        static RUN: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("{}-{}", std::process::id(), RUN.fetch_add(1, Ordering::Relaxed));
        let mut lan = Self {
            a: format!("sturnus-lan-{tag}-a"),
            b: format!("sturnus-lan-{tag}-b"),
            switch: format!("sturnus-lan-{tag}-s"),
            b_index: 0,
        };
        for ns in [&lan.a, &lan.b, &lan.switch] {
            ip(&["netns", "add", ns])?;
        }
        let s = lan.switch.clone();
        ip(&["-n", &s, "link", "add", "br0", "type", "bridge", "forward_delay", "0"])?;
        // No snooping: the bridge floods the multicast group, as a plain switch does.
        ip(&["-n", &s, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        ip(&["-n", &s, "link", "set", "br0", "up"])?;
        for (ns, port, last) in [(&lan.a, "pa", 1_u8), (&lan.b, "pb", 2)] {
            let n = ns.as_str();
            ip(&["-n", n, "link", "set", "lo", "up"])?;
            // The decoy first: it takes the default routes and the first place.
            ip(&["-n", n, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])?;
            for dev in ["d0", "d1"] {
                ip(&["-n", n, "link", "set", dev, "addrgenmode", "none"])?;
                ip(&["-n", n, "link", "set", dev, "up"])?;
            }
            ip(&["-n", n, "addr", "add", &format!("192.0.2.{last}/24"), "brd", "+", "dev", "d0"])?;
            ip(&["-n", n, "addr", "add", &format!("fe80::d{last}/64"), "dev", "d0", "nodad"])?;
            ip(&["-n", n, "route", "add", "default", "dev", "d0"])?;
            ip(&["-n", n, "-6", "route", "add", "default", "dev", "d0"])?;
            // The interface on the bridge.
            ip(&["-n", &s, "link", "add", port, "type", "veth", "peer", "name", "e0", "netns", n])?;
            ip(&["-n", &s, "link", "set", port, "master", "br0", "up"])?;
            ip(&["-n", n, "link", "set", "e0", "addrgenmode", "none"])?;
            ip(&["-n", n, "addr", "add", &format!("10.77.0.{last}/24"), "brd", "+", "dev", "e0"])?;
            let v6 = format!("fe80::{}/64", if last == 1 { "a" } else { "b" });
            ip(&["-n", n, "addr", "add", &v6, "dev", "e0", "nodad"])?;
            ip(&["-n", n, "link", "set", "e0", "up"])?;
        }
        lan.b_index = ip(&["-n", &lan.b, "-o", "link", "show", "dev", "e0"])?
            .split(':')
            .next()
            .and_then(|index| index.trim().parse().ok())
            .ok_or("B's interface index")?;
        lan.wait_until_up()?;
        Ok(lan)
    }

    /// The links are up and the bridge forwards (a property of the test network, not of the
    /// code under test: waited for before any search starts its clock).
    #[expect(clippy::disallowed_methods, reason = "polls the kernel's link state")]
    fn wait_until_up(&self) -> Result<(), String> {
        for _ in 0..500 {
            let mut up = true;
            for (ns, dev) in [(&self.a, "e0"), (&self.b, "e0")] {
                up &= ip(&["-n", ns, "link", "show", "dev", dev])?.contains("LOWER_UP");
            }
            for port in ["pa", "pb"] {
                up &= ip(&["-n", &self.switch, "-d", "link", "show", "dev", port])?
                    .contains("state forwarding");
            }
            if up {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        Err("the links did not come up within 5 s".into())
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(format!("/run/netns/{ns}")).expect("the namespace's file");
    thread::spawn(move || {
        // SAFETY: `setns` only reads the descriptor, which `file` keeps open for the call; it
        // moves this thread alone (a fresh one, used for nothing else) into the namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace")
}

/// Where the test runs: the namespaces, or loopback when they cannot be made.
enum Net {
    Namespaces(Lan),
    Loopback,
}

impl Net {
    fn new(test: &str) -> Self {
        match Lan::new() {
            Ok(lan) => Net::Namespaces(lan),
            Err(reason) if std::env::var("STURNUS_REQUIRE_NETNS").as_deref() == Ok("1") => {
                panic!(
                    "{test}: network namespaces are required (STURNUS_REQUIRE_NETNS=1): {reason}"
                )
            }
            Err(reason) => {
                // Straight to standard error, past the test harness's capture: a fallback is
                // seen even when the test passes.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: NO NETWORK NAMESPACES ({reason}): FELL BACK to the loopback \
                     variant (unicast to the advertiser; broadcast and multicast not exercised)"
                );
                Net::Loopback
            }
        }
    }

    /// An advertiser of `ad`, answering on its own thread: on the default port in namespace A,
    /// or on loopback ports.
    fn advertise(&self, ad: Advertisement) -> Advertiser {
        let sockets = match self {
            Net::Namespaces(lan) => {
                let bound = in_netns(&lan.a, move || LanAdvertiser::bind(DEFAULT_PORT, ad));
                vec![bound.expect("the advertiser in A")]
            }
            Net::Loopback => ["127.0.0.1:0", "[::1]:0"]
                .iter()
                .filter_map(|addr| LanAdvertiser::bind_addr(addr.parse().unwrap(), ad.clone()).ok())
                .collect(),
        };
        Advertiser::start(sockets)
    }

    /// Runs `f` where the search runs: in namespace B, or here.
    fn at_b<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        match self {
            Net::Namespaces(lan) => in_netns(&lan.b, f),
            Net::Loopback => f(),
        }
    }

    /// A search from B with `config` (on loopback: to the advertiser's addresses).
    fn search(&self, mut config: LanSearchConfig, advertiser: &Advertiser) -> Vec<FoundHost> {
        if matches!(self, Net::Loopback) {
            config.targets = advertiser
                .addrs
                .iter()
                .copied()
                .filter(|a| (a.is_ipv4() && config.ipv4) || (a.is_ipv6() && config.ipv6))
                .collect();
        }
        self.at_b(move || lan_search(&config).expect("the search"))
    }

    /// Where B sends by hand: the subnet's broadcast and the group on B's interface.
    fn raw_targets(&self, advertiser: &Advertiser) -> Vec<SocketAddr> {
        match self {
            Net::Namespaces(lan) => vec![
                (SUBNET_BROADCAST, DEFAULT_PORT).into(),
                SocketAddrV6::new(MULTICAST_V6, DEFAULT_PORT, 0, lan.b_index).into(),
            ],
            Net::Loopback => advertiser.addrs.clone(),
        }
    }

    /// Where the host is reached from B, over IPv4 and over IPv6.
    fn host_addrs(&self, advertiser: &Advertiser) -> (SocketAddr, SocketAddr) {
        match self {
            Net::Namespaces(lan) => (
                (A_V4, GAME_PORT).into(),
                SocketAddrV6::new(A_V6, GAME_PORT, 0, lan.b_index).into(),
            ),
            Net::Loopback => {
                let with_port = |v6: bool| {
                    let addr = advertiser.addrs.iter().find(|a| a.is_ipv6() == v6).copied();
                    let mut addr = addr.unwrap_or_else(|| "[::1]:0".parse().unwrap());
                    addr.set_port(GAME_PORT);
                    addr
                };
                (with_port(false), with_port(true))
            }
        }
    }
}

/// Advertisers polled on a thread of their own until dropped.
struct Advertiser {
    shared: Arc<Mutex<Vec<LanAdvertiser>>>,
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Advertiser {
    #[expect(clippy::disallowed_methods, reason = "the advertiser's thread is a driver: it waits")]
    fn start(advertisers: Vec<LanAdvertiser>) -> Self {
        let addrs = advertisers.iter().filter_map(LanAdvertiser::local_addr).collect();
        let shared = Arc::new(Mutex::new(advertisers));
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, done) = (shared.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for advertiser in polled.lock().unwrap().iter_mut() {
                    advertiser.poll().expect("the advertiser's sockets");
                }
                thread::sleep(Duration::from_millis(1));
            }
        });
        Self { shared, addrs, stop, thread: Some(thread) }
    }

    /// What the advertisers counted, summed.
    fn stats(&self) -> ResponderStats {
        let mut sum = ResponderStats::default();
        for advertiser in self.shared.lock().unwrap().iter_mut() {
            let stats = advertiser.responder_mut().stats();
            sum.answered += stats.answered;
            sum.other_game += stats.other_game;
            sum.malformed += stats.malformed;
        }
        sum
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn ad(info: &[u8]) -> Advertisement {
    Advertisement::new(GAME, VERSION, GAME_PORT, info.to_vec()).unwrap()
}

/// A search of one family, given the window and a margin past it, so a late answer is
/// reported with its latency rather than missed.
fn config(game: u64, version: u32, ipv4: bool, ipv6: bool) -> LanSearchConfig {
    let mut config = LanSearchConfig::new(game, version);
    config.timeout = WINDOW * 2;
    config.ipv4 = ipv4;
    config.ipv6 = ipv6;
    config
}

/// The host is found at `expected`, once, with its info, within the window (the search's own
/// measure: from its start to the answer).
fn assert_found_within_window(found: &[FoundHost], expected: SocketAddr, how: &str) {
    assert_eq!(found.len(), 1, "{how}: exactly the one host: {found:?}");
    let host = &found[0];
    assert_eq!(host.addr, expected, "{how}: the host's address, with the game port");
    assert_eq!(host.info, b"the host in A");
    assert!(
        host.found_after <= WINDOW,
        "{how}: found after {:?}, outside the {WINDOW:?} discovery window",
        host.found_after
    );
    eprintln!("{how}: found {} after {:?}", host.addr, host.found_after);
}

#[test]
fn ipv4_broadcast_finds_the_host_within_the_window() {
    let net = Net::new("ipv4_broadcast_finds_the_host_within_the_window");
    let advertiser = net.advertise(ad(b"the host in A"));
    let found = net.search(config(GAME, VERSION, true, false), &advertiser);
    assert_found_within_window(&found, net.host_addrs(&advertiser).0, "IPv4 broadcast");
}

#[test]
fn ipv6_multicast_finds_the_host_within_the_window() {
    let net = Net::new("ipv6_multicast_finds_the_host_within_the_window");
    let advertiser = net.advertise(ad(b"the host in A"));
    let found = net.search(config(GAME, VERSION, false, true), &advertiser);
    assert_found_within_window(&found, net.host_addrs(&advertiser).1, "IPv6 multicast");
}

#[test]
fn another_game_or_version_finds_nothing() {
    let net = Net::new("another_game_or_version_finds_nothing");
    let advertiser = net.advertise(ad(b"the host in A"));
    for (game, version) in [(GAME + 1, VERSION), (GAME, VERSION + 1)] {
        for (ipv4, ipv6) in [(true, false), (false, true)] {
            let before = advertiser.stats().other_game;
            let mut config = config(game, version, ipv4, ipv6);
            config.timeout = WINDOW;
            let found = net.search(config, &advertiser);
            assert!(found.is_empty(), "game {game:x} v{version}: {found:?}");
            // The requests did reach the host, which ignored them: nothing was lost on the way.
            let after = advertiser.stats().other_game;
            assert!(after > before, "game {game:x} v{version} (ipv4 {ipv4}): no request arrived");
        }
    }
    assert_eq!(advertiser.stats().answered, 0);
}

#[test]
#[expect(clippy::disallowed_methods, reason = "waits for answers on a socket")]
fn answers_on_the_wire_are_never_longer_than_requests() {
    let net = Net::new("answers_on_the_wire_are_never_longer_than_requests");
    // The longest answer there is.
    let advertiser = net.advertise(ad(&[0x5a; MAX_INFO]));
    let targets = net.raw_targets(&advertiser);
    for target in targets.clone() {
        let (answer, short_answer) = net.at_b(move || {
            let any: SocketAddr = if target.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = UdpSocket::bind(any).unwrap();
            socket.set_broadcast(target.is_ipv4()).unwrap();
            socket.set_read_timeout(Some(WINDOW * 2)).unwrap();
            let request = Search::new(GAME, VERSION, std::time::Instant::now()).request();
            socket.send_to(&request, target).unwrap();
            let mut buf = [0_u8; 2048];
            let (len, _) = socket.recv_from(&mut buf).expect("an answer");
            let answer = buf[..len].to_vec();
            // A short request (a valid header, cut to half) gets nothing back: no reflection.
            socket.send_to(&request[..REQUEST_LEN / 2], target).unwrap();
            socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            let short_answer = socket.recv_from(&mut buf).ok().map(|(len, _)| len);
            (answer, short_answer)
        });
        assert!(answer.len() <= REQUEST_LEN, "to {target}: {} > {REQUEST_LEN}", answer.len());
        assert!(answer.len() > MAX_INFO, "to {target}: the whole info came back");
        assert_eq!(short_answer, None, "to {target}: a short request was answered");
    }
    let stats = advertiser.stats();
    let sent = targets.len() as u64;
    assert_eq!((stats.answered, stats.malformed), (sent, sent), "{stats:?}");
}

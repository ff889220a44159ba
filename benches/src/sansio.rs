//! `sturnus-bench sansio`: what the protocol itself costs per echoed message at a crowd's
//! scale, with no socket and no kernel in the figure. One server `Endpoint` and `N` client
//! `Endpoint`s (the settings of the clients workload) run in this thread; datagrams go from one
//! to the other by hand, on a virtual clock that moves `1/N` s per message, so each client
//! sends one 64-byte message a (virtual) second and the server echoes it, as in
//! `local --workload clients`. The clients go in batches of [`BATCH`] (what a server's paced
//! read finds at 100,000 messages a second): the batch's clients send, the server handles
//! their datagrams and echoes, the clients handle the echoes; each step is timed, so the
//! figures are this thread's nanoseconds per message on each side. With prefetching on, the
//! clients' endpoints and the server's connections are asked for a few ahead
//! ([`Pipeline`]), as the crowd and the `Host` do; `--prefetch both` alternates rounds with
//! and without it, a ratio from one run. The cache misses of 100,000 connections are in them; the system
//! calls, and the other process's load on a shared machine, are not: a figure to compare
//! builds by, where the two-process runs drift 5–25 %.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sturnus_transport::proto::prefetch::{Pipeline, Step};
use sturnus_transport::{ConnectionId, Endpoint, EndpointConfig, Event, Qos};

use crate::{BenchResult, bench_config, channel_of, now, probe};

/// What a run does.
pub(crate) struct Plan {
    pub(crate) clients: usize,
    pub(crate) rounds: u32,
    pub(crate) pin: bool,
    pub(crate) prefetch: Prefetch,
}

/// Whether the rounds prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefetch {
    On,
    Off,
    /// Rounds alternate, starting with prefetching off; each half has its own figures.
    Both,
}

/// Clients per batch: the datagrams a server reads at once (the `Host`'s batch).
const BATCH: usize = 64;

/// The server's address as the clients see it.
const SERVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 9000);
/// The most clients: `127.16.0.0` plus the index, up to `127.255.255.255`.
pub(crate) const MAX_CLIENTS: usize = 240 << 16;

/// Client `i`'s address, as the crowd socket gives it.
fn client_addr(i: usize) -> SocketAddr {
    let [_, a, b, c] = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from(([127, 16 + a, b, c], 40_000))
}

/// Which client has address `addr`.
fn client_of(addr: SocketAddr) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else { return None };
    let [x, a, b, c] = v4.ip().octets();
    (x == 127 && a >= 16).then(|| usize::from(a - 16) << 16 | usize::from(b) << 8 | usize::from(c))
}

/// Datagrams in flight one way, back to back in one buffer (kept between messages, so
/// handing a datagram over allocates nothing): each with its client's index.
#[derive(Default)]
struct Mailbox {
    bytes: Vec<u8>,
    datagrams: Vec<(usize, std::ops::Range<usize>)>,
}

impl Mailbox {
    fn push(&mut self, client: usize, datagram: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(datagram);
        self.datagrams.push((client, start..self.bytes.len()));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.datagrams.clear();
    }
}

struct Crowd {
    server: Endpoint,
    clients: Vec<(Endpoint, ConnectionId)>,
    buf: Vec<u8>,
    /// Datagrams for the server, copied out of the clients' transmit buffer.
    to_server: Mailbox,
    /// Datagrams for clients, copied out of the server's transmit buffer.
    to_clients: Mailbox,
    echo: Vec<u8>,
    echoes: u64,
    /// Which clients are connected.
    in_: Vec<bool>,
}

impl Crowd {
    /// Copies out what client `i` has to send.
    fn client_sends(&mut self, i: usize, now: Instant) {
        let Self { clients, buf, to_server, .. } = self;
        let client = &mut clients[i].0;
        while let Some(t) = client.poll_transmit(now, buf) {
            to_server.push(i, &buf[..t.len]);
        }
    }

    /// Hands the clients' datagrams to the server, runs its due timers and its events (echoing
    /// data), then copies out what it sends.
    fn serve(&mut self, now: Instant, prefetch: bool) {
        let Self { server, buf, to_server, to_clients, echo, .. } = self;
        for step in Pipeline::new(to_server.datagrams.len()) {
            match step {
                Step::Prefetch { item, stage } if prefetch => {
                    server.prefetch_source(client_addr(to_server.datagrams[item].0), stage);
                }
                Step::Prefetch { .. } => {}
                Step::Handle(item) => {
                    let (i, range) = &to_server.datagrams[item];
                    server.handle_datagram(now, client_addr(*i), &to_server.bytes[range.clone()]);
                }
            }
        }
        to_server.clear();
        if server.poll_timeout().is_some_and(|at| at <= now) {
            server.handle_timeout(now);
        }
        while let Some(event) = server.poll_event() {
            if let Event::Data { conn, channel, payload } = event {
                echo.clear();
                echo.extend_from_slice(payload);
                let _ = server.send(conn, channel, echo);
            }
        }
        while let Some(t) = server.poll_transmit(now, buf) {
            if let Some(i) = client_of(t.destination) {
                to_clients.push(i, &buf[..t.len]);
            }
        }
    }

    /// Hands the server's datagrams to their clients and runs their events; returns how many
    /// clients connected.
    fn deliver(&mut self, now: Instant) -> usize {
        let mut connected = 0;
        let Self { clients, to_clients, echoes, in_, .. } = self;
        for (i, range) in &to_clients.datagrams {
            let client = &mut clients[*i].0;
            client.handle_datagram(now, SERVER, &to_clients.bytes[range.clone()]);
            while let Some(event) = client.poll_event() {
                match event {
                    Event::Connected(_) => {
                        connected += 1;
                        in_[*i] = true;
                    }
                    Event::Data { .. } => *echoes += 1,
                    _ => {}
                }
            }
        }
        to_clients.clear();
        connected
    }
}

/// Runs the plan and prints its figures.
pub(crate) fn run(plan: &Plan) -> BenchResult<()> {
    if plan.pin {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let _ = probe::pin_to([cpus - 1]);
    }
    let n = plan.clients;
    let mut clock = now();
    let client_config = EndpointConfig {
        accept_connections: false,
        max_connections: 1,
        ack_delay: Duration::ZERO,
        ..bench_config()
    };
    let mut crowd = Crowd {
        server: Endpoint::new(bench_config(), clock)?,
        clients: Vec::with_capacity(n),
        buf: vec![0; bench_config().max_packet_size],
        to_server: Mailbox::default(),
        to_clients: Mailbox::default(),
        echo: Vec::new(),
        echoes: 0,
        in_: vec![false; n],
    };
    for _ in 0..n {
        let mut client = Endpoint::new(client_config.clone(), clock)?;
        let conn = client.connect(clock, SERVER)?;
        crowd.clients.push((client, conn));
    }
    // Connect: move datagrams until everyone is in, a virtual millisecond a pass (only the
    // clients not yet in take part: retries are theirs).
    let mut connected = 0;
    for _ in 0..30_000 {
        for i in 0..n {
            if crowd.in_[i] {
                continue;
            }
            let client = &mut crowd.clients[i].0;
            if client.poll_timeout().is_some_and(|at| at <= clock) {
                client.handle_timeout(clock);
            }
            crowd.client_sends(i, clock);
        }
        crowd.serve(clock, false);
        connected += crowd.deliver(clock);
        if connected == n {
            break;
        }
        clock += Duration::from_millis(1);
    }
    if connected < n {
        return Err(format!("{connected} of {n} clients connected").into());
    }
    let channel = channel_of(Qos::Unreliable);
    let msg = [7u8; 64];
    let step_time = Duration::from_secs(1) / u32::try_from(n).unwrap_or(u32::MAX).max(1);
    // Per half ([off, on]): client ns, server ns, messages.
    let mut figures = [(0u128, 0u128, 0u64); 2];
    crowd.echoes = 0;
    let messages = n as u64 * u64::from(plan.rounds);
    for round in 0..plan.rounds {
        let prefetch = match plan.prefetch {
            Prefetch::On => true,
            Prefetch::Off => false,
            Prefetch::Both => round % 2 == 1,
        };
        let (client_ns, server_ns, sent) = &mut figures[usize::from(prefetch)];
        let mut first = 0;
        while first < n {
            let batch = first..(first + BATCH).min(n);
            let t0 = now();
            for step in Pipeline::new(batch.len()) {
                match step {
                    Step::Prefetch { item, stage } if prefetch => {
                        crowd.clients[first + item].0.prefetch(stage);
                    }
                    Step::Prefetch { .. } => {}
                    Step::Handle(item) => {
                        let i = first + item;
                        clock += step_time;
                        let (client, conn) = &mut crowd.clients[i];
                        if client.poll_timeout().is_some_and(|at| at <= clock) {
                            client.handle_timeout(clock);
                        }
                        client.send(*conn, channel, &msg)?;
                        crowd.client_sends(i, clock);
                        // As the crowd does: the endpoint works out the connection's next
                        // deadline once its packet is out (while its state is still in cache).
                        let client = &mut crowd.clients[i].0;
                        if client.poll_timeout().is_some_and(|at| at <= clock) {
                            client.handle_timeout(clock);
                        }
                    }
                }
            }
            let t1 = now();
            crowd.serve(clock, prefetch);
            let t2 = now();
            crowd.deliver(clock);
            let t3 = now();
            // The server's copying out of its datagrams is the driver's work, not the
            // protocol's, but it is a few ns beside the rest.
            *client_ns += (t1 - t0).as_nanos() + (t3 - t2).as_nanos();
            *server_ns += (t2 - t1).as_nanos();
            *sent += batch.len() as u64;
            first = batch.end;
        }
    }
    for (half, (client_ns, server_ns, sent)) in figures.into_iter().enumerate() {
        if sent == 0 {
            continue;
        }
        let per = |ns: u128| ns as f64 / sent as f64;
        println!(
            "sturnus-bench sansio: {n} clients, {} rounds, {} echoes of {messages}; prefetching \
             {}: server {:.0} ns a message, clients {:.0} ns a message",
            plan.rounds,
            crowd.echoes,
            if half == 1 { "on" } else { "off" },
            per(server_ns),
            per(client_ns)
        );
    }
    if crowd.echoes != messages {
        return Err(format!("{} echoes of {messages}", crowd.echoes).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_map_back_to_their_index() {
        for i in [0, 1, 255, 256, 65_535, 65_536, 99_999, MAX_CLIENTS - 1] {
            assert_eq!(client_of(client_addr(i)), Some(i), "{i}");
        }
        assert_eq!(client_of(SERVER), None);
    }

    #[test]
    fn a_small_crowd_echoes_every_message() {
        run(&Plan { clients: 150, rounds: 3, pin: false, prefetch: Prefetch::Both }).unwrap();
    }
}

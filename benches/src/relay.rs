//! `sturnus-bench relay`: the relay against direct UDP in one run, on loopback (issue 19).
//!
//! 1. **Raw one-way UDP**: a sender thread blasts `--size`-byte datagrams in batches of 64
//!    (`sendmmsg`) at a receiver thread (`recvmmsg`) for `--duration-s`; datagrams received
//!    per second.
//! 2. **Relayed one-way**: the same sender and receiver, bound as a client (slot 1) and the
//!    host (slot 0) of one session, through a [`RelayServer`] on its own thread; datagrams
//!    delivered per second, and datagrams forwarded per CPU-second of the relay thread.
//! 3. **Latency**: `--pings` ping-pongs (one datagram in flight) direct, then through the relay
//!    (client → relay → host echo → relay → client); RTT p50/p99 of each, and the difference
//!    (what the relay adds to a round trip, which crosses it twice).
//!
//! Every socket is the library's UDP socket with the bench's offload settings (see
//! `udp_factory`; the latency phase uses `raw_factory`, no offloads, for both paths).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sturnus_relay::wire::{self, BIND_LEN, HEADER_LEN, Header, Kind};
use sturnus_relay::{Allocation, AllocationSpec, RelayConfig, RelayKey, RelayServer, RelayStats};
use sturnus_socket::{Outgoing, Readiness, RecvBatch, Socket, SocketFactory, UdpSocket};

use crate::{BenchResult, now, probe, raw_factory, udp_factory};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) duration: Duration,
    pub(crate) size: usize,
    pub(crate) pings: usize,
    /// How long the relay polls after its last datagram before it sleeps.
    pub(crate) busy_poll: Duration,
}

const SESSION: u32 = 19;
const BATCH: usize = 64;
/// Sending starts this long before the measured window, so it is in a steady state.
const WARM_UP: Duration = Duration::from_millis(300);

#[expect(clippy::disallowed_methods, reason = "tokens expire by the wall clock")]
fn unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A relay on its own thread.
struct Running {
    addr: SocketAddr,
    key: RelayKey,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(RelayStats, Duration), String>>,
}

impl Running {
    fn start(max_datagram: usize, busy_poll: Duration) -> BenchResult<Self> {
        let key = RelayKey::generate()?;
        let config =
            RelayConfig { max_datagram: max_datagram.max(BIND_LEN), ..RelayConfig::default() };
        let mut server = RelayServer::bind(&udp_factory(), loopback(), config, key.clone())?;
        server.set_busy_poll(busy_poll);
        let addr = server.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || -> Result<(RelayStats, Duration), String> {
            let cpu = probe::thread_cpu_time();
            server.run(&flag).map_err(|e| e.to_string())?;
            Ok((server.stats(), probe::thread_cpu_time() - cpu))
        });
        Ok(Self { addr, key, stop, thread })
    }

    /// A socket of `factory` bound to `slot` of the session (BIND until BOUND).
    fn bind(
        &self,
        factory: &sturnus_socket::UdpSocketFactory,
        slot: u16,
    ) -> BenchResult<UdpSocket> {
        let spec = AllocationSpec {
            session: SESSION,
            slot,
            expires_unix: unix() + 600,
            packets_per_sec: 0,
            bytes_per_sec: 0,
        };
        let allocation = Allocation::mint(&spec, &self.key, self.addr, unix())?;
        let mut socket = factory.client_socket(self.addr)?;
        let mut bind = [0; BIND_LEN];
        wire::write_bind(&mut bind, SESSION, slot, &allocation.sealed, &allocation.bind_key, 1);
        let mut buf = [0; 64];
        for _ in 0..40 {
            let _ = socket.send_to(&bind, self.addr)?;
            socket.wait_readable(Some(Duration::from_millis(50)))?;
            while let Some(meta) = socket.recv_from(&mut buf)? {
                if Header::parse(&buf[..meta.len]).is_some_and(|h| h.kind == Kind::Bound) {
                    return Ok(socket);
                }
            }
        }
        Err("the relay did not answer BIND".into())
    }

    fn finish(self) -> BenchResult<(RelayStats, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.thread.join().map_err(|_| "the relay thread panicked")??)
    }
}

/// Blasts `datagram` at `to` from a thread until `stop`.
fn blast(mut socket: UdpSocket, to: SocketAddr, datagram: Vec<u8>, stop: Arc<AtomicBool>) {
    let batch = [Outgoing { to, payload: &datagram }; BATCH];
    while !stop.load(Ordering::Relaxed) {
        match socket.send_batch(&batch) {
            Ok(0) => std::thread::yield_now(),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Counts datagrams received in the window `[start + WARM_UP, start + WARM_UP + duration]`.
fn count(
    socket: &mut UdpSocket,
    size: usize,
    start: Instant,
    duration: Duration,
) -> BenchResult<u64> {
    let (from, until) = (start + WARM_UP, start + WARM_UP + duration);
    let mut batch = RecvBatch::new(BATCH, size + HEADER_LEN + 1);
    let mut received = 0;
    loop {
        let at = now();
        if at >= until {
            return Ok(received);
        }
        socket.wait_readable(Some(until - at))?;
        let n = socket.recv_batch(&mut batch)?;
        if now() >= from {
            received += n as u64;
        }
    }
}

fn one_way_raw(plan: Plan) -> BenchResult<f64> {
    let mut receiver = udp_factory().server_socket(loopback())?;
    let sender = udp_factory().client_socket(receiver.local_addr())?;
    let stop = Arc::new(AtomicBool::new(false));
    let to = receiver.local_addr();
    let flag = stop.clone();
    let datagram = vec![0x5a; plan.size];
    let start = now();
    let thread = std::thread::spawn(move || blast(sender, to, datagram, flag));
    let received = count(&mut receiver, plan.size, start, plan.duration);
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    Ok(received? as f64 / plan.duration.as_secs_f64())
}

/// Delivered datagrams per second, and the relay's counters and thread CPU time.
fn one_way_relayed(plan: Plan) -> BenchResult<(f64, RelayStats, Duration)> {
    let relay = Running::start(plan.size + HEADER_LEN, plan.busy_poll)?;
    let mut host = relay.bind(&udp_factory(), 0)?;
    let client = relay.bind(&udp_factory(), 1)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut datagram = vec![0x5a; HEADER_LEN + plan.size];
    Header::new(Kind::Data, 0, SESSION).write(&mut datagram);
    let to = relay.addr;
    let start = now();
    let thread = std::thread::spawn(move || blast(client, to, datagram, flag));
    let received = count(&mut host, plan.size, start, plan.duration);
    stop.store(true, Ordering::Relaxed);
    let _ = thread.join();
    let (stats, cpu) = relay.finish()?;
    Ok((received? as f64 / plan.duration.as_secs_f64(), stats, cpu))
}

/// Echoes every datagram back to its sender until `stop`.
fn echo(mut socket: UdpSocket, stop: Arc<AtomicBool>) -> Result<(), String> {
    let mut buf = [0; 2048];
    while !stop.load(Ordering::Relaxed) {
        let ready = socket.wait_readable(Some(Duration::from_millis(20)));
        if ready.map_err(|e| e.to_string())? == Readiness::TimedOut {
            continue;
        }
        while let Some(meta) = socket.recv_from(&mut buf).map_err(|e| e.to_string())? {
            // Through the relay the header names the client's slot: the same bytes go back.
            let _ = socket.send_to(&buf[..meta.len], meta.from).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Round-trip times of `pings` ping-pongs from `client` to `to` (after 1,000 unmeasured).
fn ping(
    client: &mut UdpSocket,
    to: SocketAddr,
    datagram: &mut [u8],
    pings: usize,
) -> BenchResult<Vec<Duration>> {
    let mut rtts = Vec::with_capacity(pings);
    let mut buf = [0; 2048];
    let offset = datagram.len() - 8;
    for i in 0..pings + 1_000 {
        datagram[offset..].copy_from_slice(&(i as u64).to_le_bytes());
        let sent = now();
        let _ = client.send_to(datagram, to)?;
        loop {
            if client.wait_readable(Some(Duration::from_secs(1)))? == Readiness::TimedOut {
                return Err(format!("ping {i} got no answer").into());
            }
            let Some(meta) = client.recv_from(&mut buf)? else { continue };
            if buf[..meta.len] == *datagram {
                break;
            }
        }
        if i >= 1_000 {
            rtts.push(now() - sent);
        }
    }
    rtts.sort();
    Ok(rtts)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn latency(plan: Plan) -> BenchResult<([f64; 2], [f64; 2])> {
    let size = plan.size.max(8);
    // Direct.
    let server = raw_factory().server_socket(loopback())?;
    let to = server.local_addr();
    let mut client = raw_factory().client_socket(to)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || echo(server, flag));
    let direct = ping(&mut client, to, &mut vec![0x5a; size], plan.pings);
    stop.store(true, Ordering::Relaxed);
    thread.join().map_err(|_| "the echo thread panicked")??;
    let direct = direct?;
    // Through the relay.
    let relay = Running::start(size + HEADER_LEN, plan.busy_poll)?;
    let host = relay.bind(&raw_factory(), 0)?;
    let mut client = relay.bind(&raw_factory(), 1)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || echo(host, flag));
    let mut datagram = vec![0x5a; HEADER_LEN + size];
    Header::new(Kind::Data, 0, SESSION).write(&mut datagram);
    let relayed = ping(&mut client, relay.addr, &mut datagram, plan.pings);
    stop.store(true, Ordering::Relaxed);
    thread.join().map_err(|_| "the echo thread panicked")??;
    relay.finish()?;
    let relayed = relayed?;
    Ok((
        [percentile(&direct, 0.5), percentile(&direct, 0.99)],
        [percentile(&relayed, 0.5), percentile(&relayed, 0.99)],
    ))
}

/// Runs the three phases and prints one JSON line.
pub(crate) fn run(plan: Plan) -> BenchResult<()> {
    let raw = one_way_raw(plan)?;
    let (relayed, stats, relay_cpu) = one_way_relayed(plan)?;
    let ([direct_p50, direct_p99], [relayed_p50, relayed_p99]) = latency(plan)?;
    let per_core = stats.forwarded as f64 / relay_cpu.as_secs_f64().max(1e-9);
    println!(
        "{{\"workload\":\"relay\",\"size\":{},\"seconds\":{},\"busy_poll_us\":{},\"raw_udp_datagrams_per_s\":{:.0},\
         \"relayed_datagrams_per_s\":{:.0},\"relayed_vs_raw\":{:.3},\
         \"relay_forwarded\":{},\"relay_cpu_s\":{:.3},\"relay_forwarded_per_cpu_s\":{:.0},\
         \"relay_not_forwarded\":{},\"pings\":{},\"direct_rtt_p50_us\":{:.1},\
         \"direct_rtt_p99_us\":{:.1},\"relayed_rtt_p50_us\":{:.1},\"relayed_rtt_p99_us\":{:.1},\
         \"added_p50_us\":{:.1},\"added_p99_us\":{:.1}}}",
        plan.size,
        plan.duration.as_secs_f64(),
        plan.busy_poll.as_micros(),
        raw,
        relayed,
        relayed / raw.max(1.0),
        stats.forwarded,
        relay_cpu.as_secs_f64(),
        per_core,
        stats.received - stats.forwarded,
        plan.pings,
        direct_p50,
        direct_p99,
        relayed_p50,
        relayed_p99,
        relayed_p50 - direct_p50,
        relayed_p99 - direct_p99,
    );
    Ok(())
}

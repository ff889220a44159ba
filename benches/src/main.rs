//! `sturnus-bench`: the standard workloads of Sturnus over real UDP, with a plain-UDP baseline
//! measured in the same run. One JSON line per result. See `benches/README.md`.
//!
//! ```text
//! sturnus-bench server --bind ADDR [--duration-s D] [--baseline raw-udp]
//!                      [--netcode-key HEX64 --protocol-id ID]
//! sturnus-bench client --connect ADDR --workload throughput|latency|large|clients|blackout
//!                      [--qos QOS] [--messages N] [--size S]
//!                      [--clients C --rate R --duration-s D] [--baseline raw-udp] [--repeat K]
//!                      [--link netem [--rate-mbit M] [--rtt-ms T] [--loss P]
//!                       [--blackout-s B] [--baseline loss-free]]
//!                      [--netcode-key HEX64 --protocol-id ID [--netcode-token-file F]
//!                       [--baseline plaintext]]
//! sturnus-bench local  --workload ... (as client; runs the server(s) as child processes)
//! sturnus-bench layers [--workload messages|objects] [--messages N] [--objects K] [--ticks T]
//!                      [--repeat R] [--pin on|off]
//! sturnus-bench local  --workload cubes [--clients N] [--objects K] [--rate HZ]
//!                      [--budget-kbps B] [--duration-s D] [--seed S] [--plot DIR]
//!                      [--link netem|perfect [--rtt-ms T] [--jitter-ms J] [--loss P]
//!                       [--rate-mbit M]] [--interest-radius R]
//! sturnus-bench relay  [--duration-s D] [--size S] [--pings N] [--busy-poll-us U]
//! ```
//!
//! `cubes` runs in this process, in virtual time (see `cubes.rs`). `relay` runs raw UDP, the
//! relay and their latencies in this process, on threads (see `relay.rs`).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports on the terminal"
)]
#![allow(
    clippy::cast_possible_truncation,
    reason = "rates and percentages are reported as floats; precision loss there is harmless"
)]

mod client;
mod crowd;
mod cubes;
mod layers;
mod probe;
mod relay;
mod report;
mod sansio;
mod server;
mod services;
mod wheel;
mod wire;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sturnus_transport::{ChannelId, EndpointConfig, Qos};

use crate::client::{Link, NetemSocket, RawLink, SturnusLink};
use crate::report::Record;

#[global_allocator]
static GLOBAL: sturnus_testkit::counting::Counting = sturnus_testkit::counting::Counting;

pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The channel of control messages (START, DONE and their answers).
pub(crate) const CONTROL_CHANNEL: ChannelId = channel_of(Qos::ReliableSequenced);

/// Both sides' transport settings: one channel of every kind, room for many connections.
pub(crate) fn bench_config() -> EndpointConfig {
    EndpointConfig {
        channels: Qos::ALL.to_vec(),
        max_connections: sturnus_transport::MAX_CONNECTIONS_LIMIT,
        ..EndpointConfig::default()
    }
}

/// The Sturnus sockets' options: the library's defaults (UDP GSO and GRO on), unless
/// `STURNUS_BENCH_OFFLOAD` says otherwise (`none`, `gso`, `gro` or `both`), for both processes
/// of a `local` run, to compare them.
pub(crate) fn udp_factory() -> sturnus_socket::UdpSocketFactory {
    udp_factory_with(None)
}

/// [`udp_factory`] with a receive buffer of `recv_buffer` bytes, where given.
pub(crate) fn udp_factory_with(recv_buffer: Option<usize>) -> sturnus_socket::UdpSocketFactory {
    let defaults = sturnus_socket::UdpConfig::default();
    let (gso, gro) = match std::env::var("STURNUS_BENCH_OFFLOAD").as_deref() {
        Ok("none") => (false, false),
        Ok("gso") => (true, false),
        Ok("gro") => (false, true),
        Ok("both") => (true, true),
        _ => (defaults.segmentation_offload, defaults.receive_offload),
    };
    sturnus_socket::UdpSocketFactory::new(sturnus_socket::UdpConfig {
        segmentation_offload: gso,
        receive_offload: gro,
        recv_buffer_size: recv_buffer.or(defaults.recv_buffer_size),
        force_buffer_sizes: recv_buffer.is_some(),
        ..defaults
    })
}

/// The raw-UDP baseline's sockets: no offloads, so a lone datagram is one `sendto` and one
/// `recvfrom` (with GRO on, a receive needs `recvmsg` for the segment size, which costs more).
pub(crate) fn raw_factory() -> sturnus_socket::UdpSocketFactory {
    raw_factory_with(None)
}

/// [`raw_factory`] with a receive buffer of `recv_buffer` bytes, where given.
pub(crate) fn raw_factory_with(recv_buffer: Option<usize>) -> sturnus_socket::UdpSocketFactory {
    let defaults = sturnus_socket::UdpConfig::default();
    sturnus_socket::UdpSocketFactory::new(sturnus_socket::UdpConfig {
        segmentation_offload: false,
        receive_offload: false,
        recv_buffer_size: recv_buffer.or(defaults.recv_buffer_size),
        force_buffer_sizes: recv_buffer.is_some(),
        ..defaults
    })
}

/// The receive buffer a `local` clients run gives both servers: 32 MiB, about 40,000 queued
/// datagrams, a third of a second of 100,000 clients' messages, so a server stalled by the
/// machine (another process, the hypervisor) does not drop them. Forced past
/// `net.core.rmem_max` where the process may (`CAP_NET_ADMIN`); elsewhere raise the sysctl.
const CLIENTS_RECV_BUFFER_MIB: usize = 32;
/// The read interval a `local` clients run gives both servers (`--read-interval-us`, 0 to
/// read at once): 1 ms, what a server of tens of thousands of clients is configured with
/// (`EndpointConfig::read_interval`), so each read takes a batch of their messages.
const CLIENTS_READ_INTERVAL_US: u64 = 1000;

/// How a `local` run sets up its server processes.
#[derive(Debug, Clone, Copy, Default)]
struct ServerTuning {
    cpu: Option<usize>,
    recv_buffer_mib: Option<usize>,
    read_interval_us: Option<u64>,
}

/// The channel of kind `qos` in [`bench_config`].
pub(crate) const fn channel_of(qos: Qos) -> ChannelId {
    let mut i = 0;
    while i < Qos::ALL.len() {
        if Qos::ALL[i] as u8 == qos as u8 {
            return ChannelId(i as u8);
        }
        i += 1;
    }
    panic!("every kind has a channel")
}

#[expect(clippy::disallowed_methods, reason = "the bench measures real time")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// The four workloads of DESIGN §7, and the blackout of issue 14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    Throughput,
    Latency,
    Large,
    Clients,
    /// Ordered messages every 10 ms across an emulated link that goes dark for a while.
    Blackout,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Throughput => "throughput",
            Workload::Latency => "latency",
            Workload::Large => "large",
            Workload::Clients => "clients",
            Workload::Blackout => "blackout",
        }
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Workload::Throughput,
            Workload::Latency,
            Workload::Large,
            Workload::Clients,
            Workload::Blackout,
        ]
        .into_iter()
        .find(|w| w.name() == s)
        .ok_or_else(|| {
            format!("unknown workload `{s}` (throughput, latency, large, clients, blackout)")
        })
    }
}

/// What one client run does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub(crate) workload: Workload,
    pub(crate) qos: Qos,
    pub(crate) messages: u64,
    pub(crate) size: usize,
    pub(crate) clients: u64,
    pub(crate) rate: f64,
    pub(crate) duration_s: f64,
    /// Plain UDP datagrams instead of Sturnus.
    pub(crate) raw: bool,
    /// The client's traffic crosses an emulated link (Sturnus only).
    pub(crate) netem: Option<Netem>,
    /// Blackout: how long the link stays dark.
    pub(crate) blackout_s: f64,
    /// The netcode transport mode instead of plaintext Sturnus.
    pub(crate) secure: Option<Secure>,
    /// Clients: connection attempts in flight at once per process (0: all at once, a storm).
    pub(crate) connect_at_once: usize,
}

/// The netcode 1.02 settings of a secure run: the key and protocol id the server shares with
/// whoever mints tokens (the client mints its own with them, unless given a token file).
#[derive(Clone, PartialEq)]
pub(crate) struct Secure {
    pub(crate) key: sturnus_netcode::Key,
    pub(crate) protocol_id: u64,
    /// A token minted elsewhere (2048 bytes, the standard's format).
    pub(crate) token_file: Option<String>,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure").field("protocol_id", &self.protocol_id).finish_non_exhaustive()
    }
}

impl Secure {
    /// The client's token: read from the token file, or minted for `server` now.
    pub(crate) fn token(
        &self,
        server: SocketAddr,
        client_id: u64,
    ) -> BenchResult<sturnus_netcode::ConnectToken> {
        if let Some(path) = &self.token_file {
            return Ok(sturnus_netcode::ConnectToken::read(&std::fs::read(path)?[..])?);
        }
        let spec = sturnus_netcode::token::TokenSpec {
            protocol_id: self.protocol_id,
            client_id,
            server_addresses: vec![server],
            expire_seconds: 600,
            timeout_seconds: 10,
            user_data: [0; sturnus_netcode::USER_DATA_BYTES],
        };
        Ok(sturnus_netcode::ConnectToken::generate(&spec, &self.key, unix_now())?)
    }
}

#[expect(clippy::disallowed_methods, reason = "tokens expire by the wall clock")]
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses 64 hexadecimal digits into a key.
fn parse_key(hex: &str) -> Result<sturnus_netcode::Key, String> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(format!("--netcode-key needs 64 hex digits, not {}", bytes.len()));
    }
    let digit = |c: u8| (c as char).to_digit(16).ok_or("--netcode-key: not a hex digit");
    let mut key = [0; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = (digit(bytes[2 * i])? * 16 + digit(bytes[2 * i + 1])?) as u8;
    }
    Ok(key)
}

/// A transport the bench server and the single-connection client run over: plaintext
/// Sturnus ([`Host`](sturnus_transport::Host)) or its netcode mode
/// ([`SecureHost`](sturnus_netcode::transport::SecureHost)).
pub(crate) trait BenchHost: sturnus_transport::Transport {
    /// Bytes the socket has sent.
    fn bytes_sent(&self) -> u64;
    /// The endpoint's and the socket's counters, one line (where handshakes went, what the
    /// socket dropped).
    fn counters(&self) -> String;
}

impl<S: sturnus_socket::Socket + std::fmt::Debug> BenchHost for sturnus_transport::Host<S> {
    fn bytes_sent(&self) -> u64 {
        self.socket().stats().bytes_sent
    }
    fn counters(&self) -> String {
        format!("{} · socket: {}", self.endpoint().stats(), self.socket().stats())
    }
}

impl<S: sturnus_socket::Socket> BenchHost for sturnus_netcode::transport::SecureHost<S> {
    fn bytes_sent(&self) -> u64 {
        self.socket().stats().bytes_sent
    }
    fn counters(&self) -> String {
        let endpoint = self.endpoint();
        format!(
            "{} · {:?} · socket: {}",
            endpoint.sturnus().stats(),
            endpoint.stats(),
            self.socket().stats()
        )
    }
}

/// An emulated link on the client's side, both ways: a rate limit (with a 64 KiB tail-drop
/// queue) on the way out, half the round trip each way, and random loss each way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Netem {
    pub(crate) rate_mbit: f64,
    pub(crate) rtt_ms: f64,
    pub(crate) loss: f64,
}

impl Netem {
    pub(crate) fn describe(&self) -> String {
        format!("netem {} Mbit/s {} ms {} % loss", self.rate_mbit, self.rtt_ms, self.loss * 100.0)
    }
}

/// `--name value` options.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let name =
                arg.strip_prefix("--").ok_or_else(|| format!("unexpected argument `{arg}`"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), value.clone()));
        }
        Ok(Self(pairs))
    }

    fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.iter().rev().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, v)) => v.parse().map(Some).map_err(|e| format!("--{name} {v}: {e}")),
        }
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(n, _)| !known.contains(&n.as_str())) {
            Some((n, _)) => Err(format!("unknown option --{n}")),
            None => Ok(()),
        }
    }

    fn baseline(&self) -> Result<bool, String> {
        match self.get::<String>("baseline")?.as_deref() {
            None | Some("loss-free" | "plaintext") => Ok(false),
            Some("raw-udp") => Ok(true),
            Some(other) => {
                Err(format!("unknown baseline `{other}` (raw-udp, loss-free, plaintext)"))
            }
        }
    }

    /// `--baseline plaintext`: the same run over plaintext Sturnus (a secure run's baseline).
    fn plaintext_baseline(&self) -> Result<bool, String> {
        let plaintext = self.get::<String>("baseline")?.as_deref() == Some("plaintext");
        if plaintext && self.get::<String>("netcode-key")?.is_none() {
            return Err("--baseline plaintext compares a secure run: give --netcode-key".into());
        }
        Ok(plaintext)
    }

    /// `--netcode-key` and `--protocol-id` (and `--netcode-token-file`).
    fn secure(&self) -> Result<Option<Secure>, String> {
        let Some(key) = self.get::<String>("netcode-key")? else {
            if self.get::<String>("netcode-token-file")?.is_some() {
                return Err("--netcode-token-file needs --netcode-key and --protocol-id".into());
            }
            return Ok(None);
        };
        let key = parse_key(&key)?;
        let protocol_id = self
            .get::<u64>("protocol-id")?
            .ok_or("--netcode-key needs --protocol-id (the game's, as a decimal u64)")?;
        Ok(Some(Secure { key, protocol_id, token_file: self.get("netcode-token-file")? }))
    }

    /// `--baseline loss-free`: the same run over the same link without its loss.
    fn loss_free_baseline(&self) -> Result<bool, String> {
        Ok(self.get::<String>("baseline")?.as_deref() == Some("loss-free"))
    }

    fn spec(&self) -> Result<Spec, String> {
        let workload: Workload = self
            .get("workload")?
            .ok_or("--workload is required (throughput, latency, large, clients)")?;
        let (qos, messages, size) = match workload {
            Workload::Throughput => (Qos::ReliableSequenced, 1_000_000, 32),
            Workload::Latency => (Qos::ReliableSequenced, 10_000, 32),
            Workload::Large => (Qos::ReliableFragmentedSequenced, 100, 256 * 1024),
            Workload::Clients => (Qos::Unreliable, 0, 64),
            Workload::Blackout => (Qos::ReliableFragmentedSequenced, 0, 3000),
        };
        let qos = match self.get::<String>("qos")? {
            Some(name) => name.parse::<Qos>().map_err(|e| e.to_string())?,
            None => qos,
        };
        let spec = Spec {
            workload,
            qos,
            messages: self.get("messages")?.unwrap_or(messages),
            size: self.get("size")?.unwrap_or(size),
            clients: self.get("clients")?.unwrap_or(1000),
            rate: self.get("rate")?.unwrap_or(10.0),
            duration_s: self.get("duration-s")?.unwrap_or(10.0),
            raw: false,
            secure: self.secure()?,
            netem: match self.get::<String>("link")?.as_deref() {
                None => None,
                Some("netem") => Some(Netem {
                    rate_mbit: self.get("rate-mbit")?.unwrap_or(100.0),
                    rtt_ms: self.get("rtt-ms")?.unwrap_or(10.0),
                    loss: self.get("loss")?.unwrap_or(0.0),
                }),
                Some(other) => return Err(format!("unknown link `{other}` (netem)")),
            },
            blackout_s: self.get("blackout-s")?.unwrap_or(5.0),
            connect_at_once: match self.get::<String>("connect-at-once")?.as_deref() {
                None | Some("all") => 0,
                Some(n) => match n.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("--connect-at-once {n}: a positive number or `all`")),
                },
            },
        };
        if let Some(n) = &spec.netem {
            if !(n.rate_mbit > 0.0 && n.rtt_ms >= 0.0 && (0.0..1.0).contains(&n.loss)) {
                return Err("--rate-mbit > 0, --rtt-ms >= 0, 0 <= --loss < 1".into());
            }
            if !matches!(spec.workload, Workload::Throughput | Workload::Large | Workload::Blackout)
            {
                return Err(
                    "--link netem is for the throughput, large and blackout workloads".into()
                );
            }
        }
        if spec.workload == Workload::Blackout && spec.netem.is_none() {
            return Err("the blackout workload needs --link netem".into());
        }
        if spec.blackout_s.is_nan() || spec.blackout_s <= 0.0 {
            return Err("--blackout-s must be positive".into());
        }
        if self.loss_free_baseline()? && spec.netem.is_none() {
            return Err("--baseline loss-free needs --link netem".into());
        }
        if spec.size < wire::DATA_HEADER {
            return Err(format!(
                "--size must be at least {} (tag and sequence number)",
                wire::DATA_HEADER
            ));
        }
        let max = bench_config().max_message_size(qos);
        if spec.size > max {
            return Err(format!(
                "--size {} exceeds the {max}-byte limit of {}",
                spec.size,
                qos.name()
            ));
        }
        if !(spec.rate > 0.0 && spec.duration_s > 0.0) {
            return Err("--rate and --duration-s must be positive".into());
        }
        let token_file = spec.secure.as_ref().is_some_and(|s| s.token_file.is_some());
        if token_file && spec.workload == Workload::Clients {
            // A token opens one connection; the clients workload makes many.
            return Err("--netcode-token-file connects one client: not for --workload clients \
                        (its clients mint their own tokens with --netcode-key)"
                .into());
        }
        Ok(spec)
    }
}

const CLIENT_OPTIONS: &[&str] = &[
    "connect",
    "workload",
    "qos",
    "messages",
    "size",
    "clients",
    "rate",
    "duration-s",
    "baseline",
    "repeat",
    "link",
    "rate-mbit",
    "rtt-ms",
    "loss",
    "blackout-s",
    "connect-at-once",
    "netcode-key",
    "protocol-id",
    "netcode-token-file",
];

/// The raw-UDP version of a workload: messages are single datagrams, so a large message is
/// sent as the 1200-byte datagrams it would take.
fn raw_spec(spec: &Spec) -> Spec {
    let mut raw = Spec { raw: true, secure: None, ..spec.clone() };
    if spec.workload == Workload::Large {
        let datagram = bench_config().max_packet_size;
        raw.messages = spec.messages * spec.size.div_ceil(datagram) as u64;
        raw.size = datagram;
    }
    raw
}

/// The plaintext-Sturnus version of a secure run.
fn plaintext_spec(spec: &Spec) -> Spec {
    Spec { secure: None, ..spec.clone() }
}

/// The loss-free version of a run over an emulated link.
fn loss_free_spec(spec: &Spec) -> Spec {
    let netem = spec.netem.clone().map(|n| Netem { loss: 0.0, ..n });
    Spec { netem, ..spec.clone() }
}

/// Runs one workload once against `server`.
fn run_once(spec: &Spec, server: SocketAddr, run: u32) -> BenchResult<Record> {
    if let Some(netem) = spec.netem.as_ref().filter(|_| !spec.raw) {
        if spec.secure.is_some() {
            return Err("--link netem runs plaintext Sturnus only (for now)".into());
        }
        let mut link: SturnusLink<sturnus_transport::Host<NetemSocket>> =
            SturnusLink::connect_netem(server, spec.qos, netem, u64::from(run))?;
        return match spec.workload {
            Workload::Blackout => client::blackout(&mut link, spec, netem, run),
            _ => client::throughput(&mut link, spec, run),
        };
    }
    let mut link: Box<dyn Link> = if spec.raw {
        Box::new(RawLink::connect(server)?)
    } else if let Some(secure) = &spec.secure {
        Box::new(SturnusLink::connect_secure(server, spec.qos, secure, u64::from(run))?)
    } else {
        Box::new(SturnusLink::connect(server, spec.qos)?)
    };
    match spec.workload {
        Workload::Throughput | Workload::Large => client::throughput(link.as_mut(), spec, run),
        Workload::Latency => client::latency(link.as_mut(), spec, run),
        Workload::Clients => crowd::clients(spec, server, link.as_mut(), run),
        Workload::Blackout => Err("the blackout workload needs --link netem".into()),
    }
}

/// Runs `specs` against their servers `repeat` times, alternating, printing each result and
/// then the medians.
fn run_all(targets: &[(Spec, SocketAddr)], repeat: u32) -> BenchResult<()> {
    let mut results: Vec<Vec<Record>> = vec![Vec::new(); targets.len()];
    let mut run = (std::process::id() & 0xFFFF) << 16;
    for _ in 0..repeat {
        for (i, (spec, server)) in targets.iter().enumerate() {
            run += 2;
            let record = run_once(spec, *server, run)?;
            println!("{}", record.to_json());
            results[i].push(record);
        }
    }
    let summaries: Vec<Option<Record>> = results.iter().map(|runs| Record::median(runs)).collect();
    if repeat > 1 {
        for median in summaries.iter().flatten() {
            println!("{}", median.to_json());
        }
    }
    // The server's CPU against the raw-UDP server's at the same load: the ratio of each pair
    // of runs (back to back, so the machine's drift between repeats cancels), and their median.
    if let [Some(first), Some(raw), ..] = summaries.as_slice() {
        if let (true, Some(a), Some(b)) =
            (raw.stack == "raw-udp", first.server_cpu_pct, raw.server_cpu_pct)
        {
            let mut ratios: Vec<f64> = results[0]
                .iter()
                .zip(&results[1])
                .filter_map(|(x, y)| Some(x.server_cpu_pct? / y.server_cpu_pct?))
                .collect();
            ratios.sort_by(f64::total_cmp);
            let pairs = if ratios.len() > 1 {
                let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
                format!(" (pairs: {})", each.join(", "))
            } else {
                String::new()
            };
            eprintln!(
                "sturnus-bench: server CPU {a:.1} % ({}, {} messages) against {b:.1} % (raw-udp, {} \
                 messages): {:.2}x{pairs}",
                first.stack,
                first.messages_received,
                raw.messages_received,
                ratios.get(ratios.len() / 2).copied().unwrap_or(a / b),
            );
        }
    }
    Ok(())
}

/// A server child process; killed when dropped.
struct ServerProcess(Child, SocketAddr);

impl ServerProcess {
    fn spawn(raw: bool, secure: Option<&Secure>, tuning: ServerTuning) -> BenchResult<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["server", "--bind", "127.0.0.1:0"]);
        if let Some(mib) = tuning.recv_buffer_mib {
            cmd.args(["--recv-buffer-mib", &mib.to_string()]);
        }
        if let Some(us) = tuning.read_interval_us {
            cmd.args(["--read-interval-us", &us.to_string()]);
        }
        if raw {
            cmd.args(["--baseline", "raw-udp"]);
        }
        if let Some(secure) = secure {
            let hex: String = secure.key.iter().map(|b| format!("{b:02x}")).collect();
            cmd.args(["--netcode-key", &hex, "--protocol-id", &secure.protocol_id.to_string()]);
        }
        if let Some(cpu) = tuning.cpu {
            cmd.args(["--cpu", &cpu.to_string()]);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().ok_or("no server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| format!("unexpected server output `{}`", line.trim()))?
            .parse()?;
        Ok(Self(child, addr))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  sturnus-bench server --bind ADDR [--duration-s D] [--baseline raw-udp] [--cpu N] [--netcode-key HEX64 --protocol-id ID]\n  \
         sturnus-bench client --connect ADDR --workload throughput|latency|large|clients|blackout [--qos QOS] \
         [--messages N] [--size S] [--clients C --rate R --duration-s D [--connect-at-once N|all]] [--baseline raw-udp] [--repeat K] \
         [--link netem [--rate-mbit M] [--rtt-ms T] [--loss P] [--blackout-s B] [--baseline loss-free]] \
         [--netcode-key HEX64 --protocol-id ID [--netcode-token-file F] [--baseline plaintext]]\n  \
         sturnus-bench local --workload ... [--pin on|off] (the client options but --connect; starts the servers itself)\n  \
         sturnus-bench layers [--workload messages|objects] [--messages N] [--objects K] [--ticks T] [--repeat R] \
         [--pin on|off] (the message and object layers beside the transport, in this process)\n  \
         sturnus-bench local --workload cubes [--clients N] [--objects K] [--rate HZ] [--budget-kbps B] \
         [--duration-s D] [--seed S] [--plot DIR] [--link netem|perfect [--rtt-ms T] [--jitter-ms J] [--loss P] \
         [--rate-mbit M]] [--interest-radius R] (NetworkTransform state sync, in this process, in \
         virtual time)\n  \
         sturnus-bench relay [--duration-s D] [--size S] [--pings N] [--busy-poll-us U] (raw one-way UDP, the same \
         through the relay, and ping-pong latency direct and relayed, in this process)\n  \
         sturnus-bench services --lobby URL [--store NAME] [--matches N] [--threads T] [--duration-s D] \
         [--racers R] [--races K] [--only lobby|race] (the matchmaker's lobby mix and join race against a \
         running sturnusd; `cargo xtask bench-services` starts one per store)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else { return usage() };
    let options = match Options::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sturnus-bench: {e}");
            return usage();
        }
    };
    let result = match command.as_str() {
        "server" => server_command(&options),
        "client" => client_command(&options),
        "local" => local_command(&options),
        "crowd-worker" => worker_command(&options),
        "layers" => layers_command(&options),
        "sansio" => sansio_command(&options),
        "relay" => relay_command(&options),
        "services" => services_command(&options),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sturnus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn server_command(options: &Options) -> BenchResult<()> {
    options.check_known(&[
        "bind",
        "duration-s",
        "baseline",
        "cpu",
        "netcode-key",
        "protocol-id",
        "recv-buffer-mib",
        "read-interval-us",
    ])?;
    let bind: SocketAddr = options.get("bind")?.ok_or("--bind is required")?;
    if let Some(cpu) = options.get::<usize>("cpu")? {
        if !probe::pin_to([cpu]) {
            return Err(format!("could not pin the server to CPU {cpu}").into());
        }
    }
    let duration = options.get::<f64>("duration-s")?.map(Duration::from_secs_f64);
    let recv_buffer = options.get::<usize>("recv-buffer-mib")?.map(|mib| mib << 20);
    let read_interval = read_interval(options)?.unwrap_or(Duration::ZERO);
    if options.baseline()? {
        server::serve_raw(bind, duration, recv_buffer, read_interval)
    } else {
        let secure = options.secure()?;
        server::serve_sturnus(bind, duration, secure.as_ref(), recv_buffer, read_interval)
    }
}

/// `--read-interval-us`, checked as the transport checks it.
fn read_interval(options: &Options) -> BenchResult<Option<Duration>> {
    let Some(us) = options.get::<u64>("read-interval-us")? else { return Ok(None) };
    let interval = Duration::from_micros(us);
    sturnus_transport::ReadPacer::new(interval)
        .map_err(|e| format!("--read-interval-us {us}: {e}"))?;
    Ok(Some(interval))
}

fn client_command(options: &Options) -> BenchResult<()> {
    if options.get::<String>("workload")?.as_deref() == Some("cubes") {
        return Err("the cubes workload runs in one process: use `sturnus-bench local`".into());
    }
    options.check_known(CLIENT_OPTIONS)?;
    let server: SocketAddr = options.get("connect")?.ok_or("--connect is required")?;
    let spec = options.spec()?;
    let mut targets = vec![(spec.clone(), server)];
    if options.plaintext_baseline()? {
        return Err("--baseline plaintext needs a plaintext server: use `local`, or run the \
                    plaintext client against one yourself"
            .into());
    }
    if options.loss_free_baseline()? {
        targets.push((loss_free_spec(&spec), server));
    } else if options.baseline()? {
        targets[0].0 = raw_spec(&spec);
    }
    run_all(&targets, options.get("repeat")?.unwrap_or(1))
}

/// The hidden worker of a `clients` run on several CPUs (one worker process per CPU).
fn worker_command(options: &Options) -> BenchResult<()> {
    let server: SocketAddr = options.get("connect")?.ok_or("--connect is required")?;
    let spec = options.spec()?;
    let spec = Spec { raw: options.baseline()?, ..spec };
    crowd::worker(&spec, server, options.get("first")?.unwrap_or(0))
}

/// Runs both sides on this machine. With two CPUs or more (and unless `--pin off`), each server
/// runs on the last CPU and the client side on the others: left to the scheduler, the two
/// sometimes share a core and sometimes not, and the server's CPU time (W4) then varies by 2x
/// between runs of the same build.
fn local_command(options: &Options) -> BenchResult<()> {
    if options.get::<String>("workload")?.as_deref() == Some("cubes") {
        return cubes_command(options);
    }
    let known: Vec<&str> =
        CLIENT_OPTIONS[1..].iter().copied().chain(["pin", "read-interval-us"]).collect();
    options.check_known(&known)?;
    let spec = options.spec()?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pin = match options.get::<String>("pin")?.as_deref() {
        None | Some("on") => cpus >= 2,
        Some("off") => false,
        Some(other) => return Err(format!("--pin {other}: on or off").into()),
    };
    if pin && !probe::pin_to(0..cpus - 1) {
        return Err("could not pin the client side to its CPUs".into());
    }
    let clients = spec.workload == Workload::Clients;
    let tuning = ServerTuning {
        cpu: pin.then_some(cpus - 1),
        recv_buffer_mib: clients.then_some(CLIENTS_RECV_BUFFER_MIB),
        read_interval_us: read_interval(options)?
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .or(clients.then_some(CLIENTS_READ_INTERVAL_US)),
    };
    let sturnus = ServerProcess::spawn(false, spec.secure.as_ref(), tuning)?;
    let mut targets = vec![(spec.clone(), sturnus.1)];
    let raw =
        if options.baseline()? { Some(ServerProcess::spawn(true, None, tuning)?) } else { None };
    if let Some(raw) = &raw {
        targets.push((raw_spec(&spec), raw.1));
    }
    let plaintext = if options.plaintext_baseline()? {
        Some(ServerProcess::spawn(false, None, tuning)?)
    } else {
        None
    };
    if let Some(plaintext) = &plaintext {
        targets.push((plaintext_spec(&spec), plaintext.1));
    }
    if options.loss_free_baseline()? {
        targets.push((loss_free_spec(&spec), sturnus.1));
    }
    run_all(&targets, options.get("repeat")?.unwrap_or(1))
}

/// The cubes workload (issue 18): NetworkTransform state sync of Gaffer's 901 cubes, the
/// server and its clients in this process over a simulated netem link in virtual time.
fn cubes_command(options: &Options) -> BenchResult<()> {
    options.check_known(&[
        "workload",
        "clients",
        "objects",
        "rate",
        "budget-kbps",
        "duration-s",
        "seed",
        "plot",
        "link",
        "rtt-ms",
        "jitter-ms",
        "loss",
        "rate-mbit",
        "interest-radius",
    ])?;
    let defaults = cubes::Plan::defaults();
    let link = match options.get::<String>("link")?.as_deref() {
        None | Some("netem") => {
            let rtt_ms: f64 = options.get("rtt-ms")?.unwrap_or(100.0);
            let jitter_ms: f64 = options.get("jitter-ms")?.unwrap_or(5.0);
            let loss: f64 = options.get("loss")?.unwrap_or(0.01);
            let rate: Option<f64> = options.get("rate-mbit")?;
            let valid = rtt_ms >= 0.0
                && jitter_ms >= 0.0
                && jitter_ms <= rtt_ms / 2.0
                && (0.0..1.0).contains(&loss)
                && rate.is_none_or(|r| r > 0.0);
            if !valid {
                return Err("--rtt-ms >= 0, 0 <= --jitter-ms <= half the RTT, 0 <= --loss < 1, \
                            --rate-mbit > 0"
                    .into());
            }
            cubes::netem_link(rtt_ms, jitter_ms, loss, rate)
        }
        Some("perfect") => sturnus_netem::LinkConfig::perfect(),
        Some(other) => return Err(format!("unknown link `{other}` (netem, perfect)").into()),
    };
    let plan = cubes::Plan {
        clients: options.get("clients")?.unwrap_or(defaults.clients),
        objects: options.get("objects")?.unwrap_or(defaults.objects),
        rate: options.get("rate")?.unwrap_or(defaults.rate),
        budget_kbps: options.get("budget-kbps")?.unwrap_or(defaults.budget_kbps),
        duration_s: options.get("duration-s")?.unwrap_or(defaults.duration_s),
        seed: options.get("seed")?.unwrap_or(defaults.seed),
        link_name: cubes::describe_link(&link),
        link,
        plot: options.get::<String>("plot")?.map(std::path::PathBuf::from),
        interest_radius: options.get("interest-radius")?,
    };
    let outcome = cubes::run(&plan)?;
    println!("{}", outcome.to_json());
    eprintln!("{}", outcome.summary());
    Ok(())
}

/// The high-level workloads: the message and object layers, each beside the transport carrying
/// the same traffic, both sides in this process (see `layers.rs`).
/// `sturnus-bench services --lobby URL`: the matchmaker's lobby mix and join race against a
/// running `sturnusd` (`cargo xtask bench-services` starts one per store).
fn services_command(options: &Options) -> BenchResult<()> {
    options.check_known(&[
        "lobby",
        "store",
        "matches",
        "threads",
        "duration-s",
        "racers",
        "races",
        "seed",
        "only",
    ])?;
    let settings = services::Settings {
        lobby: options.get::<String>("lobby")?.ok_or("--lobby URL is required")?,
        matches: options.get("matches")?.unwrap_or(100_000),
        threads: options.get("threads")?.unwrap_or(32),
        duration: Duration::from_secs_f64(options.get("duration-s")?.unwrap_or(20.0)),
        racers: options.get("racers")?.unwrap_or(1000),
        races: options.get("races")?.unwrap_or(5),
        seed: options.get("seed")?.unwrap_or(19),
    };
    let store = options.get::<String>("store")?.unwrap_or_else(|| "unknown".into());
    let only = options.get::<String>("only")?;
    if only.as_deref() != Some("race") {
        services::lobby_mix(&settings, &store)?;
    }
    if only.as_deref() != Some("lobby") {
        services::join_race(&settings, &store)?;
    }
    Ok(())
}

fn sansio_command(options: &Options) -> BenchResult<()> {
    options.check_known(&["clients", "rounds", "pin", "prefetch"])?;
    let clients: usize = options.get("clients")?.unwrap_or(100_000);
    let rounds: u32 = options.get("rounds")?.unwrap_or(10);
    if clients == 0 || clients > sansio::MAX_CLIENTS || rounds == 0 {
        return Err(
            format!("--clients from 1 to {}, --rounds positive", sansio::MAX_CLIENTS).into()
        );
    }
    let pin = match options.get::<String>("pin")?.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(format!("--pin {other}: on or off").into()),
    };
    let prefetch = match options.get::<String>("prefetch")?.as_deref() {
        None | Some("both") => sansio::Prefetch::Both,
        Some("on") => sansio::Prefetch::On,
        Some("off") => sansio::Prefetch::Off,
        Some(other) => return Err(format!("--prefetch {other}: on, off or both").into()),
    };
    sansio::run(&sansio::Plan { clients, rounds, pin, prefetch })
}

fn layers_command(options: &Options) -> BenchResult<()> {
    options.check_known(&["workload", "messages", "objects", "ticks", "repeat", "pin"])?;
    let kinds = match options.get::<String>("workload")?.as_deref() {
        None => vec![layers::Kind::Messages, layers::Kind::Objects],
        Some("messages") => vec![layers::Kind::Messages],
        Some("objects") => vec![layers::Kind::Objects],
        Some(other) => {
            return Err(format!("unknown layers workload `{other}` (messages, objects)").into());
        }
    };
    let pin = match options.get::<String>("pin")?.as_deref() {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(format!("--pin {other}: on or off").into()),
    };
    let messages = options.get("messages")?.unwrap_or(1_000_000);
    let objects = options.get("objects")?.unwrap_or(1000);
    let ticks = options.get("ticks")?.unwrap_or(1000);
    if messages == 0 || objects == 0 || ticks == 0 {
        return Err("--messages, --objects and --ticks must be positive".into());
    }
    if objects > layers::MAX_OBJECTS {
        return Err(format!("--objects is at most {}", layers::MAX_OBJECTS).into());
    }
    if ticks > u64::from(u16::MAX) {
        return Err("--ticks is at most 65535 (an f32 counts them exactly)".into());
    }
    let repeat = options.get("repeat")?.unwrap_or(1);
    for kind in kinds {
        layers::run(&layers::Plan { kind, messages, objects, ticks, pin }, repeat)?;
    }
    Ok(())
}

fn relay_command(options: &Options) -> BenchResult<()> {
    options.check_known(&["duration-s", "size", "pings", "busy-poll-us"])?;
    let duration = options.get::<f64>("duration-s")?.unwrap_or(3.0);
    if !(duration.is_finite() && duration > 0.0 && duration <= 3600.0) {
        return Err("--duration-s must be between 0 and 3600".into());
    }
    let size = options.get("size")?.unwrap_or(64);
    if !(8..=1400).contains(&size) {
        return Err("--size must be between 8 and 1400".into());
    }
    let pings = options.get("pings")?.unwrap_or(20_000);
    if pings == 0 {
        return Err("--pings must be positive".into());
    }
    let busy_poll = Duration::from_micros(options.get("busy-poll-us")?.unwrap_or(0));
    if busy_poll > Duration::from_millis(100) {
        return Err("--busy-poll-us is at most 100000".into());
    }
    relay::run(relay::Plan { duration: Duration::from_secs_f64(duration), size, pings, busy_poll })
}

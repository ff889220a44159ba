//! Helpers shared by the example programs in `src/bin`.

use std::fmt::Display;
use std::net::SocketAddr;
use std::process::ExitCode;

use std::time::Duration;
use sturnus_message::ChannelLayout;

use sturnus_netem::{LinkConfig, LinkStats, Preset};
use sturnus_socket::{
    ConditionedSocket, Socket, SocketError, SocketFactory, UdpSocket, UdpSocketFactory,
};
use sturnus_transport::{Host, HostError};

/// Sends the library's logs to standard error, filtered by `RUST_LOG` (the facade's; every
/// example calls it first).
pub use sturnus::init_logging;

/// The flag that Ctrl-C (`SIGINT`) or `SIGTERM` sets (the facade's), for a long-running
/// example to leave gracefully: its loop checks the flag, disconnects its peers (so they see
/// the disconnect at once rather than after a timeout), and exits with success. A second
/// signal, once the flag is set, ends the process at once (status 130).
pub use sturnus::manager::interrupt_flag;

/// The UDP transport of a server: a [`Host`] bound to `bind` (port 0 picks a free one) with
/// `layout`'s channels, ready for `NetworkServer::start`.
pub fn udp_server(layout: &ChannelLayout, bind: SocketAddr) -> Result<Host<UdpSocket>, HostError> {
    let socket = UdpSocketFactory::default().server_socket(bind)?;
    Host::new(layout.endpoint_config(), socket)
}

/// The UDP transport of a client that will connect to `server`: a [`Host`] on a free port of
/// the same address family, with `layout`'s channels, ready for `NetworkClient::connect`.
pub fn udp_client(
    layout: &ChannelLayout,
    server: SocketAddr,
) -> Result<Host<UdpSocket>, HostError> {
    let socket = UdpSocketFactory::default().client_socket(server)?;
    Host::new(layout.endpoint_config(), socket)
}

/// The command line of the echo examples:
/// `[--count N] [--link perfect|lan|wifi|4g|bad] [--seed N] [--ipv6]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoOptions {
    /// How many messages to send.
    pub count: u32,
    /// A link-emulator preset for the client's traffic, if any.
    pub link: Option<Preset>,
    /// The link emulator's seed: its outgoing link uses `seed`, its incoming one `seed + 1`.
    /// The same seed draws the same losses and delays for the same sequence of datagrams.
    pub seed: u64,
    /// Use `::1` instead of `127.0.0.1`.
    pub ipv6: bool,
}

impl EchoOptions {
    /// Parses the process arguments; `Err` holds the message to print (usage included).
    pub fn from_args(program: &str) -> Result<Self, String> {
        Self::parse(program, std::env::args().skip(1))
    }

    /// Parses `args` (without the program name).
    pub fn parse(program: &str, args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut options = Self { count: 5, link: None, seed: 1, ipv6: false };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--count" => {
                    let value = args.next().ok_or("--count needs a number")?;
                    options.count = value.parse().map_err(|_| format!("bad --count {value}"))?;
                }
                "--link" => {
                    let value = args.next().ok_or("--link needs a preset name")?;
                    options.link = Some(value.parse().map_err(|e| format!("{e}"))?);
                }
                "--seed" => {
                    let value = args.next().ok_or("--seed needs a number")?;
                    options.seed = value.parse().map_err(|_| format!("bad --seed {value}"))?;
                }
                "--ipv6" => options.ipv6 = true,
                "-h" | "--help" => return Err(echo_usage(program)),
                other => return Err(format!("unknown argument {other} (try --help)")),
            }
        }
        Ok(options)
    }

    /// The address a server binds: an ephemeral port on the loopback IP of the chosen family.
    pub fn bind_addr(&self) -> SocketAddr {
        if self.ipv6 {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
        } else {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
        }
    }
}

/// The client socket of an echo example behind the link emulator, both ways, with `preset`:
/// the outgoing link seeded with `seed`, the incoming one with `seed + 1`.
pub fn conditioned<S: Socket>(
    socket: S,
    preset: Preset,
    seed: u64,
) -> Result<ConditionedSocket<S>, SocketError> {
    ConditionedSocket::new(socket, preset.config(), seed)?
        .with_incoming(preset.config(), seed.wrapping_add(1))
}

/// Parses a link description for the link emulator: a preset name (`perfect`, `lan`, `wifi`,
/// `4g`, `bad`), `key=value` settings, or a preset followed by settings that change it, all
/// separated by commas — `4g`, `delay=50ms,jitter=10ms,loss=5%`, `wifi,loss=10%`. The keys:
/// `delay` (one-way latency), `jitter` (half-width of the uniform jitter added to it), `loss`,
/// `dup` (duplication) and `reorder` (the chance a datagram is held back by an extra `delay`);
/// durations take `ms`, `us` or `s` (a bare number is milliseconds), probabilities a `%` or a
/// fraction. Settings alone start from a perfect link. `Err` says what is wrong.
pub fn parse_link(spec: &str) -> Result<LinkConfig, String> {
    let mut config = LinkConfig::perfect();
    for (i, part) in spec.split(',').map(str::trim).enumerate() {
        let Some((key, value)) = part.split_once('=') else {
            if i > 0 {
                return Err(format!("link: `{part}` is not key=value (a preset comes first)"));
            }
            config = part.parse::<Preset>().map_err(|e| format!("link: {e}"))?.config();
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "delay" | "latency" => config.latency = parse_duration(value)?,
            "jitter" => config.jitter = parse_duration(value)?,
            "loss" => config.loss = parse_probability(value)?,
            "dup" | "duplicate" => config.duplicate = parse_probability(value)?,
            "reorder" => {
                config.reorder = parse_probability(value)?;
                if config.reorder_delay.is_zero() {
                    config.reorder_delay = Duration::from_millis(20);
                }
            }
            other => {
                return Err(format!(
                    "link: unknown key `{other}` (delay, jitter, loss, dup, reorder)"
                ));
            }
        }
    }
    config.validate().map_err(|e| format!("link: {e}"))?;
    Ok(config)
}

/// `50ms`, `250us`, `0.5s`, or a bare number of milliseconds.
fn parse_duration(value: &str) -> Result<Duration, String> {
    let (number, unit) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else {
        (value, 1e-3)
    };
    let number: f64 = number.trim().parse().map_err(|_| format!("link: bad duration `{value}`"))?;
    Duration::try_from_secs_f64(number * unit).map_err(|_| format!("link: bad duration `{value}`"))
}

/// `5%` or `0.05`, between 0 and 1.
fn parse_probability(value: &str) -> Result<f64, String> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (value, 1.0),
    };
    let p = number.trim().parse::<f64>().map_err(|_| format!("link: bad probability `{value}`"))?;
    let p = p * scale;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("link: probability `{value}` is not between 0 and 100 %"))
    }
}

/// A client socket behind the link emulator, both ways, with `config`: the outgoing link
/// seeded with `seed`, the incoming one with `seed + 1`.
pub fn conditioned_with<S: Socket>(
    socket: S,
    config: &LinkConfig,
    seed: u64,
) -> Result<ConditionedSocket<S>, SocketError> {
    ConditionedSocket::new(socket, config.clone(), seed)?
        .with_incoming(config.clone(), seed.wrapping_add(1))
}

/// One direction of the emulated link, counted in packets (datagrams, whatever they carry):
/// how many entered it, were lost or duplicated, and came out, and the sum of the delays drawn
/// for them. The same seed and the same datagrams give the same draws.
pub fn link_summary(direction: &str, stats: &LinkStats) -> String {
    format!(
        "link {direction}: packets: {} entered, {} lost, {} duplicated, {} came out; \
         delays drawn: {:?} in all",
        stats.sent, stats.lost, stats.duplicated, stats.delivered, stats.total_delay
    )
}

/// Whether the command line asks for help (`-h` or `--help`): an example then prints its usage
/// to standard output and exits with success.
pub fn wants_help() -> bool {
    std::env::args().skip(1).any(|arg| arg == "-h" || arg == "--help")
}

/// The usage line of the echo examples.
pub fn echo_usage(program: &str) -> String {
    format!(
        "usage: {program} [--count N] [--link perfect|lan|wifi|4g|bad] [--seed N] [--ipv6]\n\
         \n  --count N   messages to send (default 5)\
         \n  --link P    send the client's traffic through the link emulator with preset P\
         \n  --seed N    the link emulator's seed (default 1): the same seed draws the same\
         \n              losses and delays for the same sequence of packets\
         \n  --ipv6      use ::1 instead of 127.0.0.1"
    )
}

/// The `main` of an echo example: parses the options, runs `run`, and turns the outcome into
/// an exit code (2 for a bad command line, 1 for an error), printing what went wrong.
pub fn echo_main<E: Display>(
    program: &str,
    run: impl FnOnce(&EchoOptions) -> Result<(), E>,
) -> ExitCode {
    if wants_help() {
        #[allow(clippy::print_stdout, reason = "a command-line program prints its usage")]
        {
            println!("{}", echo_usage(program));
        }
        return ExitCode::SUCCESS;
    }
    let options = match EchoOptions::from_args(program) {
        Ok(options) => options,
        Err(message) => {
            #[allow(clippy::print_stderr, reason = "a command-line program reports its usage")]
            {
                eprintln!("{message}");
            }
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr, reason = "a command-line program reports its error")]
            {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<EchoOptions, String> {
        EchoOptions::parse("x", args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_every_option_and_rejects_unknown_ones() {
        assert_eq!(
            parse(&["--count", "9", "--link", "4g", "--seed", "42", "--ipv6"]),
            Ok(EchoOptions { count: 9, link: Some(Preset::Mobile4g), seed: 42, ipv6: true })
        );
        assert_eq!(parse(&[]).unwrap().seed, 1);
        assert_eq!(parse(&[]).unwrap().bind_addr(), "127.0.0.1:0".parse().unwrap());
        assert!(parse(&["--count", "many"]).is_err());
        assert!(parse(&["--link", "mars"]).is_err());
        assert!(parse(&["--seed", "-1"]).is_err());
        assert!(parse(&["--seed"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--help"]).unwrap_err().starts_with("usage: x"));
    }

    #[test]
    fn parses_presets_settings_and_both() {
        let custom = parse_link("delay=50ms,jitter=10,loss=5%,dup=0.01").unwrap();
        assert_eq!(custom.latency, Duration::from_millis(50));
        assert_eq!(custom.jitter, Duration::from_millis(10));
        assert!((custom.loss - 0.05).abs() < 1e-12);
        assert!((custom.duplicate - 0.01).abs() < 1e-12);
        assert_eq!(custom.burst_loss, None);
        assert_eq!(parse_link("4g").unwrap(), Preset::Mobile4g.config());
        let changed = parse_link("bad, loss=0").unwrap();
        assert_eq!(changed.loss, 0.0);
        assert_eq!(changed.latency, Preset::Bad.config().latency);
        assert_eq!(parse_link("delay=0.25s").unwrap().latency, Duration::from_millis(250));
        assert_eq!(parse_link("delay=500us").unwrap().latency, Duration::from_micros(500));
        for bad in ["mars", "loss=150%", "loss=-1", "delay=soon", "loss=5%,4g", "speed=1"] {
            assert!(parse_link(bad).is_err(), "{bad} was accepted");
        }
    }
}

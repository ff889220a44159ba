//! `sturnusd`'s configuration: a TOML file, overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::http::Limits;
use crate::matchmaker::Rules;

/// Everything `sturnusd` can be told. Every field has a default: `sturnusd` with no file and no
/// flag serves the matchmaker on 127.0.0.1:7780 and the relay on 127.0.0.1:7781 with the
/// memory store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API, health, metrics and status page listen.
    pub http: SocketAddr,
    /// Where the relay listens (UDP); `None`: no relay, relayed matches are refused.
    pub relay: Option<SocketAddr>,
    /// Where players reach the relay, when it differs from `relay` (bound to 0.0.0.0, or
    /// behind a NAT). Tokens list it.
    pub relay_public: Option<SocketAddr>,
    /// A file holding the relay's 32-byte key as 64 hex digits, shared by every node that
    /// mints allocations for the same relays. Without one, a key is drawn at start (one node).
    pub relay_key_file: Option<PathBuf>,
    /// `memory` (the default: everything on this machine, gone when it stops) or
    /// `redis://host:port/db` (matches outlive the process, several nodes share them).
    pub store: String,
    /// Log lines as JSON objects (one per line) instead of text.
    pub log_json: bool,
    /// How long a graceful stop waits for requests in flight (seconds) before it stops anyway.
    pub shutdown_grace_seconds: u64,
    /// The matchmaker's rules.
    pub rules: Rules,
    /// Per-address limits.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: SocketAddr::from(([127, 0, 0, 1], 7780)),
            relay: Some(SocketAddr::from(([127, 0, 0, 1], 7781))),
            relay_public: None,
            relay_key_file: None,
            store: "memory".into(),
            log_json: false,
            shutdown_grace_seconds: 10,
            rules: Rules::default(),
            limits: Limits::default(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Serve with this configuration.
    Serve(Box<Config>),
    /// Print the help.
    Help,
    /// Print the effective configuration as TOML.
    PrintConfig(Box<Config>),
    /// Print the version.
    Version,
}

/// The help text.
pub const HELP: &str = "\
sturnusd: Sturnus's matchmaker and relay

USAGE:
    sturnusd [OPTIONS]

With no option it serves everything on this machine: the matchmaker's HTTP API on
127.0.0.1:7780 (status page at /, /healthz, /metrics) and the relay on UDP 127.0.0.1:7781,
with matches kept in memory.

OPTIONS:
    --config FILE          read settings from a TOML file (see --print-config); flags override it
    --http ADDR            where the HTTP API listens            [default: 127.0.0.1:7780]
    --relay ADDR|off       where the relay listens (UDP)         [default: 127.0.0.1:7781]
    --relay-public ADDR    where players reach the relay, if not --relay (0.0.0.0, NAT)
    --relay-key-file FILE  the relay key (64 hex digits) shared by every node of a deployment
    --store SPEC           memory | redis://[USER:PASSWORD@]HOST:PORT[/DB] | redis+unix:///PATH
                           (no TLS: rediss:// is refused)        [default: memory]
    --no-limits            no per-address request limits (benchmarks; a proxy that limits)
    --log-json             log lines as JSON
    --print-config         print the effective configuration as TOML and exit
    -h, --help             print this help
    -V, --version          print the version

Logs go to standard error, filtered by RUST_LOG (default: info). SIGTERM or Ctrl-C stops it
gracefully: in-flight requests get shutdown_grace_seconds (10) to finish; with Redis, matches
stay for the other nodes.
";

fn value<'a>(
    flag: &str,
    args: &mut impl Iterator<Item = &'a String>,
) -> Result<&'a String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value (see --help)"))
}

fn addr(flag: &str, raw: &str) -> Result<SocketAddr, String> {
    raw.parse().map_err(|_| format!("{flag}: `{raw}` is not an address like 127.0.0.1:7780"))
}

/// Parses the command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    // The file first, so flags override it wherever they are.
    let mut config = Config::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            let path = value(arg, &mut iter)?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--config: cannot read {path}: {e}"))?;
            config = toml::from_str(&text).map_err(|e| format!("--config {path}: {e}"))?;
        }
    }
    let mut print = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => {
                value(arg, &mut iter)?;
            }
            "--http" => config.http = addr(arg, value(arg, &mut iter)?)?,
            "--relay" => {
                let raw = value(arg, &mut iter)?;
                config.relay = if raw == "off" { None } else { Some(addr(arg, raw)?) };
            }
            "--relay-public" => config.relay_public = Some(addr(arg, value(arg, &mut iter)?)?),
            "--relay-key-file" => {
                config.relay_key_file = Some(PathBuf::from(value(arg, &mut iter)?));
            }
            "--store" => {
                let spec = value(arg, &mut iter)?;
                if !crate::store::is_store_spec(spec) {
                    return Err(format!("--store: `{spec}` is neither memory nor redis://…"));
                }
                config.store.clone_from(spec);
            }
            "--no-limits" => config.limits = Limits::unlimited(),
            "--log-json" => config.log_json = true,
            "--print-config" => print = true,
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if let (Some(relay), None) = (config.relay, config.relay_public)
        && relay.ip().is_unspecified()
    {
        return Err(
            "--relay binds an unspecified address: say where players reach it with --relay-public"
                .into(),
        );
    }
    Ok(if print {
        Command::PrintConfig(Box::new(config))
    } else {
        Command::Serve(Box::new(config))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_override_the_file_and_defaults() {
        let Command::Serve(c) = parse(&[]).unwrap() else { panic!() };
        assert_eq!(*c, Config::default());
        let dir = std::env::temp_dir().join(format!("sturnusd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sturnusd.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:9000\"\nstore = \"redis://127.0.0.1:1/\"\n[rules]\nmax_match_size = 16\n",
        )
        .unwrap();
        let file = file.to_string_lossy().into_owned();
        let Command::Serve(c) =
            parse(&args(&["--http", "127.0.0.1:9001", "--config", &file])).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.http, "127.0.0.1:9001".parse().unwrap(), "the flag wins over the file");
        assert_eq!(c.store, "redis://127.0.0.1:1/");
        assert_eq!(c.rules.max_match_size, 16);
        assert_eq!(c.rules.heartbeat_seconds, Rules::default().heartbeat_seconds);
        std::fs::write(dir.join("bad.toml"), "htp = 1\n").unwrap();
        let bad = dir.join("bad.toml").to_string_lossy().into_owned();
        assert!(parse(&args(&["--config", &bad])).unwrap_err().contains("unknown field"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse(&args(&["--http"])).unwrap_err().contains("needs a value"));
        assert!(parse(&args(&["--http", "nowhere"])).unwrap_err().contains("not an address"));
        assert!(parse(&args(&["--store", "postgres://x"])).unwrap_err().contains("neither"));
        assert!(parse(&args(&["--frobnicate"])).unwrap_err().contains("unknown option"));
        assert!(parse(&args(&["--relay", "0.0.0.0:7781"])).unwrap_err().contains("--relay-public"));
        let Command::Serve(c) = parse(&args(&["--relay", "off", "--no-limits"])).unwrap() else {
            panic!()
        };
        assert_eq!(c.relay, None);
        assert_eq!(c.limits, Limits::unlimited());
        assert!(matches!(parse(&args(&["--help"])).unwrap(), Command::Help));
    }

    /// `--store` takes every store spec the store reads (a Unix socket, `rediss://`, which
    /// then says it has no TLS), as the configuration file's `store` does.
    #[test]
    fn the_store_flag_takes_every_redis_url() {
        for spec in ["rediss://redis.example:6380", "redis+unix:///run/redis.sock", "MEMORY"] {
            let Command::Serve(c) = parse(&args(&["--store", spec])).unwrap() else { panic!() };
            assert_eq!(c.store, spec);
        }
    }
}

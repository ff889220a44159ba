//! Real `sturnusd` processes for the tests: started on free ports, stopped (SIGTERM) when
//! dropped.
#![allow(dead_code, reason = "each test file uses part of it")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// A running `sturnusd`.
pub(crate) struct Sturnusd {
    child: Child,
    /// Its HTTP address.
    pub(crate) http: SocketAddr,
    /// Its relay's address, if it runs one.
    pub(crate) relay: Option<SocketAddr>,
}

impl Sturnusd {
    /// Starts `sturnusd` with `args` (plus `--http 127.0.0.1:0` and, unless `args` say
    /// otherwise, `--relay 127.0.0.1:0`), and waits until it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sturnusd"));
        command.args(["--http", "127.0.0.1:0"]);
        if !args.contains(&"--relay") {
            command.args(["--relay", "127.0.0.1:0"]);
        }
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("sturnusd starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(|a| a.parse().unwrap())
        };
        let http = field("http=").unwrap_or_else(|| panic!("sturnusd said {line:?}"));
        Self { child, http, relay: field("relay=") }
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// A client of it.
    pub(crate) fn lobby(&self) -> sturnus_lobby::LobbyClient {
        sturnus_lobby::LobbyClient::new(&self.url()).unwrap()
    }

    /// Ends it with SIGKILL: no graceful anything (a node that dies).
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Ends it with SIGTERM and returns whether it exited with success.
    pub(crate) fn terminate(mut self) -> bool {
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        unsafe { libc::kill(i32::try_from(self.child.id()).unwrap(), libc::SIGTERM) };
        self.child.wait().unwrap().success()
    }
}

impl Drop for Sturnusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The party example end to end, as separate processes: `sturnusd` (matchmaker and relay), a
//! host that creates a relayed match, and two players who join it by code. Shouts go both
//! ways through the relay; then the host leaves and the players see it go.
#![allow(
    clippy::disallowed_methods,
    reason = "real processes and sockets: the test waits on the wall clock (never asserts on it)"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

const PARTY: &str = env!("CARGO_BIN_EXE_party");

/// `sturnusd` from the same target directory (the workspace builds it with the examples).
fn sturnusd() -> PathBuf {
    let path = PathBuf::from(PARTY).with_file_name("sturnusd");
    assert!(path.exists(), "{} is missing: cargo build -p sturnus-services", path.display());
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn first_line(child: &mut Child) -> (String, BufReader<std::process::ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    (line, out)
}

#[test]
fn a_relayed_party_joined_by_code() {
    let mut service = Command::new(sturnusd())
        .args(["--http", "127.0.0.1:0", "--relay", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line, _service_out) = first_line(&mut service);
    let service = Killed(service);
    let http = line.split_whitespace().find_map(|w| w.strip_prefix("http=")).unwrap();
    let lobby = format!("http://{http}");

    let mut host = Command::new(PARTY)
        .args(["--lobby", &lobby, "--host", "--shouts", "2", "--quit-after-ms", "60000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (line, host_out) = first_line(&mut host);
    let host = Killed(host);
    let code = line.trim().strip_prefix("[code ").and_then(|s| s.strip_suffix(']')).unwrap();

    let players: Vec<Child> = ["ada", "bob"]
        .iter()
        .map(|name| {
            Command::new(PARTY)
                .args(["--lobby", &lobby, "--join", code, "--name", name])
                .args(["--quit-after-ms", "60000"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = players
        .into_iter()
        .map(|p| {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let mut host = host;
    assert!(host.0.wait().unwrap().success());
    let host_lines: Vec<String> = host_out.lines().map(Result::unwrap).collect();
    for (name, out) in ["ada", "bob"].iter().zip(&outputs) {
        assert!(out.contains("via the relay]"), "{name} joined through the relay: {out}");
        assert!(out.contains("[connected]"), "{out}");
        // Player → host → everyone, through the relay both ways.
        assert!(out.contains(&format!(": hello from {name}")), "{name} heard its own shout: {out}");
        // Told at once by the host, not found out by a timeout.
        assert!(out.contains("[host left: ServerStopped]"), "{name} saw the host leave: {out}");
        assert!(host_lines.iter().any(|l| l.ends_with(&format!("shouts: hello from {name}"))));
    }
    assert_eq!(host_lines.last().map(String::as_str), Some("[host leaving]"));
    // Everything went through the relay (it publishes its counters every 100 ms).
    let lobby = sturnus::services::LobbyClient::new(&lobby).unwrap();
    let mut status = lobby.status().unwrap();
    for _ in 0..100 {
        if status.relay_forwarded > 0 && status.matches == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        status = lobby.status().unwrap();
    }
    assert!(status.relay_forwarded >= 8, "the relay forwarded the game: {status:?}");
    assert_eq!(status.matches, 0, "the host destroyed its match on leaving");
    drop(service);
}

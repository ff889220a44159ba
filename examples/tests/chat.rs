//! The chat example end to end: a server and a client as separate processes over UDP, and a
//! host on its own. Lines go through the room's polled `Say` queue, actions (`/me …`) through
//! its raw channel. Each process leaves once its lines have come back, or when the test sends
//! it a signal, with a cap far above what that takes. No test measures time: a graceful
//! departure is told from a timeout by the reason the other side prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

const CHAT: &str = env!("CARGO_BIN_EXE_chat");

fn output_of(args: &[&str]) -> String {
    let out = Command::new(CHAT).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_host_chats_with_itself() {
    let out = output_of(&[
        "--host",
        "bob",
        "--bind",
        "127.0.0.1:0",
        "--say",
        "hi",
        "--say",
        "/me waves",
        "--quit-after-ms",
        "20000",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let expected =
        ["[connected; logging in]", "[in the room]", "* bob joined", "bob: hi", "* bob waves"];
    for expected in expected {
        assert!(lines.contains(&expected), "missing {expected:?} in {out}");
    }
}

#[test]
fn a_client_joins_a_server_and_a_wrong_password_is_turned_away() {
    let mut server = Command::new(CHAT)
        .args(["--server", "--bind", "127.0.0.1:0", "--quit-after-ms", "30000"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr =
        first.trim().strip_prefix("[room open on ").and_then(|s| s.strip_suffix(']')).unwrap();

    let ada = output_of(&[
        "--client",
        "ada",
        "--connect",
        addr,
        "--say",
        "hello",
        "--say",
        "/me waves",
        "--say",
        "bye",
        "--quit-after-ms",
        "20000",
    ]);
    let heard: Vec<&str> = ada.lines().collect();
    let at = |line: &str| heard.iter().position(|l| *l == line);
    // Lines keep their order; the action is on a channel of its own, which may overtake them.
    assert!(at("ada: hello").is_some() && at("ada: hello") < at("ada: bye"), "{ada}");
    assert!(at("* ada waves").is_some(), "{ada}");
    // A rejected login is a failure of the program, with the reason.
    let eve = Command::new(CHAT)
        .args(["--client", "eve", "--connect", addr, "--password", "guess"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!eve.status.success(), "a rejected login exited with success");
    let (out, err) = (String::from_utf8_lossy(&eve.stdout), String::from_utf8_lossy(&eve.stderr));
    assert!(out.contains("[disconnected: authentication rejected: wrong password]"), "{out}");
    assert!(err.contains("left the room: authentication rejected"), "{err}");

    server.kill().unwrap();
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let _ = server.wait();
    assert!(log.contains("[ada joined]") && log.contains("[ada left"), "{log}");
    assert!(!log.contains("eve"), "{log}");
}

/// A chat process whose standard input stays open (so it leaves only when told: a signal, or
/// the test closing its input) and whose output the test reads line by line. Killed if the test
/// fails first.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Every line read so far, for failure messages.
    seen: String,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(CHAT)
            .args(args)
            .args(["--quit-after-ms", "30000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdin, stdout, seen: String::new() }
    }

    /// A room on a free port, and its address.
    fn server(role: &[&str]) -> (Self, String) {
        let mut server = Self::start(&[role, &["--bind", "127.0.0.1:0"]].concat());
        let first = server.read_until(|line| line.starts_with("[room open on "));
        let addr = first.strip_prefix("[room open on ").and_then(|s| s.strip_suffix(']'));
        (server, addr.unwrap().to_string())
    }

    /// A player `name` in the room at `addr`, once it is in.
    fn player(name: &str, addr: &str) -> Self {
        let mut player = Self::start(&["--client", name, "--connect", addr]);
        player.read_until(|line| line == "[in the room]");
        player
    }

    /// Reads lines until one matches, and returns it; fails at the end of the output.
    fn read_until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let mut line = String::new();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(read > 0, "the output ended without the line wanted:\n{}", self.seen);
            self.seen.push_str(&line);
            let line = line.trim_end();
            if wanted(line) {
                return line.to_string();
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: `kill` only sends a signal; `pid` is our own child, not yet waited for.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill failed");
    }

    /// Closes the input and waits for the exit: the status, the rest of the output, and the
    /// error output.
    fn finish(mut self) -> (ExitStatus, String, String) {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut err = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.seen) + &rest, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctrl_c_on_a_client_leaves_the_room_at_once_and_exits_zero() {
    let (mut server, addr) = Running::server(&["--server"]);
    let ada = Running::player("ada", &addr);
    server.read_until(|line| line == "[ada joined]");

    ada.signal(libc::SIGINT);
    let (status, out, err) = ada.finish();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    assert!(out.contains("[interrupted; leaving]"), "{out}");
    // The server heard ada go: her close notice, not a timeout (which would say
    // "[ada left (timed out)]" ten seconds later).
    let left = server.read_until(|line| line.starts_with("[ada left"));
    assert_eq!(left, "[ada left (closed by the peer)]");
}

#[test]
fn sigterm_on_a_server_or_host_tells_its_players_at_once_and_exits_zero() {
    for role in [&["--server"][..], &["--host", "cy"]] {
        let (server, addr) = Running::server(role);
        let mut bob = Running::player("bob", &addr);

        server.signal(libc::SIGTERM);
        let (status, out, err) = server.finish();
        assert!(status.success(), "{role:?}: {status:?}\n{out}\n{err}");
        assert!(out.contains("[interrupted; leaving]"), "{out}");
        // Bob is told the server stopped; a timeout would say "timed out" ten seconds later.
        let ended = bob.read_until(|line| line.starts_with("[disconnected"));
        assert_eq!(ended, "[disconnected: the server stopped]", "{role:?}");
        let (status, _, err) = bob.finish();
        assert!(!status.success() && err.contains("left the room: the server stopped"), "{err}");
    }
}

#[test]
fn a_name_already_in_the_room_is_turned_away_until_its_player_leaves() {
    let (_server, addr) = Running::server(&["--server"]);
    let ada = Running::player("ada", &addr);

    let second = Command::new(CHAT)
        .args(["--client", "ada", "--connect", &addr, "--say", "hi", "--quit-after-ms", "20000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second ada was let in");
    let err = String::from_utf8_lossy(&second.stderr);
    let reason = "authentication rejected: the name ada is taken in this room";
    assert!(err.contains(&format!("left the room: {reason}")), "{err}");
    // Another name is let in meanwhile.
    output_of(&["--client", "bob", "--connect", &addr, "--say", "hi", "--quit-after-ms", "20000"]);

    // Once ada has left, her name is free again.
    let (status, _, _) = ada.finish();
    assert!(status.success());
    output_of(&["--client", "ada", "--connect", &addr, "--say", "hi", "--quit-after-ms", "20000"]);
}

#[test]
fn a_line_too_long_is_refused_and_the_player_stays() {
    let (mut server, addr) = Running::server(&["--server"]);
    // A scripted action over the one-packet limit of the raw action channel is refused (and
    // the script still ends); the error says the limit.
    let probe = Command::new(CHAT)
        .args(["--client", "probe", "--connect", &addr, "--quit-after-ms", "20000", "--say"])
        .arg(format!("/me {}", "z".repeat(1300)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&probe.stderr);
    assert!(probe.status.success(), "{err}");
    let action_limit: usize = err
        .trim()
        .strip_prefix("chat: line not sent: 1300 bytes, over the ")
        .and_then(|rest| rest.strip_suffix("-byte limit"))
        .and_then(|limit| limit.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));

    let mut ada = Running::player("ada", &addr);
    // Over the room's 4 KiB message limit: refused by the message layer's size check.
    ada.type_line(&"x".repeat(5000));
    // Over the one-packet limit of the raw action channel: refused by the transport's.
    ada.type_line(&format!("/me {}", "z".repeat(1300)));
    // A `Say` of 2 + 2 + 4090 bytes fits the 4096-byte limit, but not once the server adds
    // "ada" to relay it as a `Line` (2 + 1 + 1 + 3 + 2 + 4090): the room tells ada instead.
    ada.type_line(&"w".repeat(4090));
    // An action that fits the channel, but not once the server puts "ada" and a zero byte in
    // front of it: the room tells ada too.
    ada.type_line(&format!("/me {}", "v".repeat(action_limit - 2)));
    ada.type_line("still here");
    let heard = ada.read_until(|line| line.starts_with("ada: ") || line.starts_with("* ada v"));
    assert_eq!(heard, "ada: still here");
    // The action went on a channel of its own, so its notice may come after the line.
    const TOLD: &str = "* your last line was too long to relay";
    if ada.seen.lines().filter(|line| *line == TOLD).count() < 2 {
        ada.read_until(|line| line == TOLD || line.starts_with("* ada v"));
    }
    assert_eq!(ada.seen.lines().filter(|line| *line == TOLD).count(), 2, "{}", ada.seen);

    let (status, out, err) = ada.finish();
    assert!(status.success(), "{status:?}\n{out}\n{err}");
    let refused: Vec<&str> =
        err.lines().filter(|line| line.starts_with("chat: line not sent: ")).collect();
    assert_eq!(refused.len(), 2, "{err}");
    assert!(refused[0].starts_with("chat: line not sent: 5004 bytes, over the 4096-byte"), "{err}");
    assert!(refused[1].starts_with("chat: line not sent: 1300 bytes"), "{err}");
    // The room went on, and saw ada leave of her own accord.
    assert_eq!(
        server.read_until(|line| line.starts_with("[ada left")),
        "[ada left (closed by the peer)]"
    );
}

#[test]
fn a_server_with_a_hud_shows_its_players() {
    let mut server = Command::new(CHAT)
        .args(["--server", "--bind", "127.0.0.1:0", "--quit-after-ms", "30000", "--hud", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("[room open on ").and_then(|s| s.strip_suffix(']'));
    let addr = addr.unwrap().to_owned();
    // Ada stays (her standard input stays open) until the server's HUD has shown her.
    let mut ada = Command::new(CHAT)
        .args(["--client", "ada", "--connect", &addr, "--quit-after-ms", "30000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut hud = BufReader::new(server.stderr.take().unwrap()).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    let mut player_lines = Vec::new();
    for line in hud.by_ref() {
        seen.push(line.clone());
        // A player's line: its id and address, its round-trip time, loss and rates (from the
        // second render on).
        if line.trim_start().starts_with("player ") && line.contains("127.0.0.1:") {
            player_lines.push(line);
            if player_lines.len() == 2 {
                break;
            }
        }
    }
    let _ = (ada.kill(), server.kill(), ada.wait(), server.wait());
    let seen = seen.join("\n");
    assert!(seen.contains(&format!("sturnus server · {addr} · 0 players")), "{seen}");
    assert!(seen.contains(&format!("sturnus server · {addr} · 1 player")), "{seen}");
    let second = player_lines.get(1).map_or("", String::as_str);
    // The round-trip time in ms, or µs on a fast loopback.
    let rtt_shown = second.contains("ms") || second.contains("µs");
    assert!(rtt_shown && second.contains("B/s"), "{seen}");
}

//! The chat example end to end: a server and a client as separate processes over UDP, and a
//! host on its own. Each process leaves once its lines have come back, with a cap far above
//! what that takes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

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
        "--quit-after-ms",
        "20000",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    for expected in ["[connected; logging in]", "[in the room]", "* bob joined", "bob: hi"] {
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

    let ada = output_of(&["--client", "ada", "--connect", addr, "--say", "hello", "--say", "bye"]);
    assert!(ada.contains("ada: hello\nada: bye\n"), "{ada}");
    let eve = output_of(&["--client", "eve", "--connect", addr, "--password", "guess"]);
    assert!(eve.contains("[disconnected: authentication rejected: wrong password]"), "{eve}");

    server.kill().unwrap();
    let mut log = String::new();
    stdout.read_to_string(&mut log).unwrap();
    let _ = server.wait();
    assert!(log.contains("[ada joined]") && log.contains("[ada left"), "{log}");
    assert!(!log.contains("eve"), "{log}");
}

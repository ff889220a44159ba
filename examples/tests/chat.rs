//! The chat example end to end: a server and a client as separate processes over UDP, and a
//! host on its own. Lines go through the room's polled `Say` queue, actions (`/me …`) through
//! its raw channel. Each process leaves once its lines have come back, with a cap far above
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

//! The echo examples' `--seed` and closing statistics: `transport_echo --link bad --seed N`
//! runs with that seed and tells messages (what the application sent and got back) from
//! packets (the datagrams that carried them); the seed decides the link emulator's draws.

use std::process::Command;

const TRANSPORT_ECHO: &str = env!("CARGO_BIN_EXE_transport_echo");
const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp_echo");

fn stdout_of(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{args:?}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn line_starting<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("{start}: {text}"))
}

#[test]
fn transport_echo_takes_a_seed_and_tells_packets_from_messages() {
    let out = stdout_of(TRANSPORT_ECHO, &["--link", "bad", "--seed", "7", "--count", "2"]);
    assert!(out.contains("with the `bad` link preset, seed 7\n"), "{out}");
    // Messages: the reliable ones all come back, however lossy the link.
    let messages = line_starting(&out, "client: messages: ");
    assert!(messages.starts_with("client: messages: reliable 2 sent, 2 echoed back; "), "{out}");
    assert!(messages.contains("; unreliable 2 sent, "), "{out}");
    // Packets: the connection's, and the link emulator's in each direction.
    let packets = line_starting(&out, "client: packets: ");
    assert!(packets.contains(" sent, ") && packets.contains(" reliable messages resent"), "{out}");
    line_starting(&out, "link out: packets: ");
    line_starting(&out, "link in : packets: ");
}

/// What the seed decides in `udp_echo`'s outgoing link: how many pings entered it, were lost
/// or duplicated, and the delays drawn for them (how many came out by the end is left out: a
/// late duplicate may still be on its way).
fn outgoing_draws(seed: &str) -> String {
    let out = stdout_of(UDP_ECHO, &["--link", "bad", "--seed", seed, "--count", "3"]);
    let line = line_starting(&out, "link out: packets: ");
    let (packets, delays) = line.split_once("; ").unwrap();
    let counts: Vec<&str> = packets.split(", ").take(3).collect();
    format!("{}; {delays}", counts.join(", "))
}

#[test]
fn the_seed_decides_the_link_emulators_draws() {
    let seven = outgoing_draws("7");
    assert!(seven.starts_with("link out: packets: 3 entered, "), "{seven}");
    assert_eq!(outgoing_draws("7"), seven, "the same seed drew differently");
    assert_ne!(outgoing_draws("8"), seven, "another seed drew the same");
}

//! Every example answers `--help` with its usage on standard output and success, and a wrong
//! argument with its usage (or a pointer to `--help`) on standard error and failure.

use std::process::Command;

const EXAMPLES: [&str; 6] = [
    env!("CARGO_BIN_EXE_chat"),
    env!("CARGO_BIN_EXE_minimal"),
    env!("CARGO_BIN_EXE_objects"),
    env!("CARGO_BIN_EXE_swarm"),
    env!("CARGO_BIN_EXE_transport_echo"),
    env!("CARGO_BIN_EXE_udp_echo"),
];

#[test]
fn help_exits_zero_with_the_usage() {
    for example in EXAMPLES {
        for flag in ["--help", "-h"] {
            let out = Command::new(example).arg(flag).output().unwrap();
            assert!(out.status.success(), "{example} {flag}: {:?}", out.status);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.starts_with("usage: "), "{example} {flag}: {stdout}");
        }
        let out = Command::new(example).arg("--no-such-flag").output().unwrap();
        assert!(!out.status.success(), "{example} accepted a wrong argument");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("usage") || stderr.contains("--help"), "{example}: {stderr}");
    }
}

#[test]
fn the_echo_examples_document_their_seed() {
    for example in [env!("CARGO_BIN_EXE_transport_echo"), env!("CARGO_BIN_EXE_udp_echo")] {
        let out = Command::new(example).arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.lines().next().unwrap_or_default().contains("[--seed N]"), "{stdout}");
        assert!(stdout.contains("--seed N    the link emulator's seed"), "{stdout}");
    }
}
